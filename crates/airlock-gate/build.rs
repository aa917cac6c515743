//! Converts the built-in rules (`rules/default.toml`) to JSON at build time: the hook parses the
//! rules on every call, and JSON parses several times faster than TOML. The rules' examples are
//! left out (the test suite checks them from the TOML).

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
    let json = serde_json::to_string(&value).expect("rules convert to JSON");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    std::fs::write(out.join("default-rules.json"), json).expect("write default-rules.json");
}
