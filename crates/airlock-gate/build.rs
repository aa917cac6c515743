//! Converts the built-in rules (`rules/default.toml`) to JSON at build time: the hook parses the
//! rules on every call, and JSON parses several times faster than TOML. The rules' examples are
//! left out (the test suite checks them from the TOML); the `programs` and `wrappers` tables
//! go to files of their own (`default-programs.rs`, `default-wrappers.rs`: arrays of each
//! entry's JSON text by name), which the hook parses entry by entry. Also writes the sorted list of the
//! program names the built-in data knows (`known-programs.rs`), which the hook would otherwise
//! build on every call.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=rules/default.toml");
    let text = std::fs::read_to_string("rules/default.toml").expect("read rules/default.toml");
    let mut value: toml::Value = toml::from_str(&text).expect("rules/default.toml is valid TOML");
    // The examples are for the test suite (which reads the TOML): the hook need not parse them.
    for (list, keys) in [
        ("rule", &["examples", "not_examples"][..]),
        ("code_option", &["example"][..]),
    ] {
        if let Some(rows) = value.get_mut(list).and_then(|v| v.as_array_mut()) {
            for row in rows.iter_mut().filter_map(|r| r.as_table_mut()) {
                for k in keys {
                    row.remove(*k);
                }
            }
        }
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let known = known_programs(&value);
    // The programs' and wrappers' tables go to files of their own, as Rust arrays of (name,
    // JSON text of the entry) sorted by name: the hook parses an entry only when a command
    // names that program, and finds it without reading the others.
    for table in ["programs", "wrappers"] {
        let t = value.as_table_mut().and_then(|v| v.remove(table));
        let mut rows: Vec<(String, String)> = t
            .as_ref()
            .and_then(|t| t.as_table())
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let json = serde_json::to_string(v).expect("table entry converts to JSON");
                (k.clone(), json)
            })
            .collect();
        rows.sort();
        let text = format!("&{rows:?}");
        std::fs::write(out.join(format!("default-{table}.rs")), text)
            .expect("write the table's entries");
    }
    let json = serde_json::to_string(&value).expect("rules convert to JSON");
    std::fs::write(out.join("default-rules.json"), json).expect("write default-rules.json");
    std::fs::write(out.join("known-programs.rs"), format!("&{known:?}"))
        .expect("write known-programs.rs");
}

/// The program names the built-in data knows, sorted and without duplicates: the literal
/// `program` names of the rules, the keys of `programs` (without the `"git push"` ones) and
/// `wrappers`, and the literal `programs` of `interpreters`. The same list as
/// `Normalizer::known_programs` builds at run time from the loaded rules (a test compares
/// them); built here so that the hook need not.
fn known_programs(data: &toml::Value) -> Vec<String> {
    let strings = |v: Option<&toml::Value>| -> Vec<String> {
        v.and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let keys = |name: &str| -> Vec<String> {
        data.get(name)
            .and_then(|t| t.as_table())
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut known: Vec<String> = Vec::new();
    for rule in data
        .get("rule")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
    {
        known.extend(
            strings(rule.get("program"))
                .into_iter()
                .filter(|p| !p.contains(['*', '?', '['])),
        );
    }
    known.extend(keys("programs").into_iter().filter(|k| !k.contains(' ')));
    known.extend(keys("wrappers"));
    if let Some(t) = data.get("interpreters").and_then(|t| t.as_table()) {
        for spec in t.values() {
            known.extend(
                strings(spec.get("programs"))
                    .into_iter()
                    .filter(|p| !p.contains('*')),
            );
        }
    }
    known.retain(|k| !k.is_empty());
    known.sort();
    known.dedup();
    known
}
