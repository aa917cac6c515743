//! `airlock policy show` (the effective policy for a workspace and where each value came from:
//! built-in, the user's config, which `--policy` file, which flag) and `airlock policy check
//! FILE` (validates one policy file and points at the line of an error).

use std::io::Write;
use std::path::{Path, PathBuf};

use airlock_policy::{ConfigFile, Policy, PolicyError};
use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::{PolicyCheckArgs, PolicyShowArgs};
use crate::policy_load;
use crate::review_out::ReviewOut;

/// One value of the effective policy and the layer it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Entry {
    /// Dotted key, e.g. `network.allow` or `limits.memory`; list keys repeat once per item.
    key: String,
    value: serde_json::Value,
    /// `built-in`, `user config FILE`, `--policy FILE`, `--policy FILE (untrusted: narrows
    /// only)`, `flag --allow-domain`, `credential NAME`, `telemetry collector`.
    source: String,
}

/// The built-in values, as entries.
fn builtin_entries() -> Vec<Entry> {
    use airlock_policy::config::{
        BUILTIN_ENV_PASS, BUILTIN_HIDE, DEFAULT_HOME, DEFAULT_MEMORY, DEFAULT_PIDS, DEFAULT_TMP,
        DEFAULT_WILDCARD_NAMES_MAX,
    };
    let b = |key: &str, value: serde_json::Value| Entry {
        key: key.into(),
        value,
        source: "built-in".into(),
    };
    let mut out: Vec<Entry> = BUILTIN_HIDE
        .iter()
        .map(|h| b("filesystem.hide", (*h).into()))
        .collect();
    out.extend(BUILTIN_ENV_PASS.iter().map(|v| b("env.pass", (*v).into())));
    let size = |n: u64| serde_json::Value::from(format!("{}G", n >> 30));
    out.push(b("limits.memory", size(DEFAULT_MEMORY)));
    out.push(b("limits.pids", DEFAULT_PIDS.into()));
    out.push(b("limits.tmp_size", size(DEFAULT_TMP)));
    out.push(b("limits.home_size", size(DEFAULT_HOME)));
    out.push(b(
        "network.wildcard_names_max",
        DEFAULT_WILDCARD_NAMES_MAX.into(),
    ));
    out.push(b("terminal.allow_clipboard", false.into()));
    out
}

/// Walks one layer's file as written: lists give one entry per item, tables recurse, scalars
/// are one entry. `[commands]` is summarised (its rules are the gate's; see `policy explain`).
fn flatten(prefix: &str, v: &serde_json::Value, source: &str, out: &mut Vec<Entry>) {
    match v {
        serde_json::Value::Null => {}
        // Summarised by the caller: the rules are the gate's (`policy explain` shows them).
        _ if prefix == "commands" => {}
        serde_json::Value::Array(items) if prefix == "credentials" => {
            for c in items {
                out.push(Entry {
                    key: "credentials".into(),
                    value: c.clone(),
                    source: source.into(),
                });
            }
        }
        serde_json::Value::Array(items) => {
            for i in items {
                out.push(Entry {
                    key: prefix.into(),
                    value: i.clone(),
                    source: source.into(),
                });
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                // Name-keyed tables (resolve, ports, env.set, headers) keep the name in the key.
                flatten(&key, v, source, out);
            }
        }
        other => out.push(Entry {
            key: prefix.into(),
            value: other.clone(),
            source: source.into(),
        }),
    }
}

/// Whether `key` holds a list (items add up across layers) rather than a scalar (later wins).
fn is_list_key(key: &str) -> bool {
    matches!(
        key,
        "network.allow"
            | "network.deny"
            | "network.allow_private"
            | "tls.extra_roots"
            | "filesystem.hide"
            | "filesystem.read_only"
            | "filesystem.read_write"
            | "env.pass"
            | "credentials"
    ) || key.starts_with("network.ports.")
}

/// Adds `new` to the effective entries: list items once each, scalars replacing the earlier
/// value of their key.
fn merge(into: &mut Vec<Entry>, new: Vec<Entry>) {
    for e in new {
        if is_list_key(&e.key) {
            let same_credential = |x: &Entry| {
                e.key == "credentials"
                    && x.key == "credentials"
                    && x.value["name"] == e.value["name"]
            };
            into.retain(|x| !same_credential(x));
            if !into.iter().any(|x| x.key == e.key && x.value == e.value) {
                into.push(e);
            }
        } else {
            into.retain(|x| x.key != e.key);
            into.push(e);
        }
    }
}

/// The layer's label for `source`.
fn label(layer: &airlock_policy::Layer, user_config: Option<&Path>) -> String {
    if layer.source == Path::new("<command line>") {
        return "flag".into();
    }
    if Some(layer.source.as_path()) == user_config {
        return format!("user config {}", layer.source.display());
    }
    if layer.trusted {
        format!("--policy {}", layer.source.display())
    } else {
        format!(
            "--policy {} (inside the workspace: may only narrow)",
            layer.source.display()
        )
    }
}

/// The effective entries for these arguments, with the policy they make.
fn effective(args: &PolicyShowArgs) -> Result<(Vec<Entry>, Policy)> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let ws_arg = args.workspace.clone().unwrap_or(cwd);
    let workspace = std::fs::canonicalize(&ws_arg)
        .with_context(|| format!("workspace {} cannot be read", ws_arg.display()))?;
    let layers = policy_load::layers(
        Some(&workspace),
        &args.policies,
        &args.trust_policies,
        Some(args.flags.layer()?),
    )?;
    let mut policy = Policy::from_layers(&layers)?;
    let user = policy_load::user_config_path();
    let mut entries = builtin_entries();
    for layer in &layers {
        let source = label(layer, user.as_deref());
        let value = serde_json::to_value(&layer.config)?;
        let mut new = Vec::new();
        flatten("", &value, &source, &mut new);
        if source == "flag" {
            for e in &mut new {
                e.source = format!("flag {}", crate::cli::PolicyFlags::name_of(&e.key));
            }
        }
        // Empty lists and unset options serialise as nothing or empty: only what was written.
        merge(&mut entries, new);
        if layer.config.commands.is_some() {
            entries.push(Entry {
                key: "commands".into(),
                value: "(command-gate rules; `airlock policy explain -- CMD` shows them at work)"
                    .into(),
                source,
            });
        }
    }
    let home = crate::view::Invoker::current().home;
    for c in crate::credentials::effective(&policy, &home) {
        let source = if c.builtin {
            format!(
                "credential {} (built-in default, source present)",
                c.config.name
            )
        } else {
            format!("credential {}", c.config.name)
        };
        let hosts: Vec<Entry> = c
            .config
            .hosts
            .iter()
            .map(|h| Entry {
                key: "network.allow".into(),
                value: h.clone().into(),
                source: source.clone(),
            })
            .collect();
        merge(&mut entries, hosts);
    }
    let before = policy.network.clone();
    crate::telemetry::allow_collector(&mut policy)?;
    for h in policy
        .network
        .allow
        .iter()
        .filter(|h| !before.allow.contains(h))
    {
        entries.push(Entry {
            key: "network.allow".into(),
            value: h.clone().into(),
            source: "telemetry collector ([telemetry] otlp_endpoint)".into(),
        });
    }
    Ok((entries, policy))
}

pub(crate) fn show(args: PolicyShowArgs) -> Result<i32> {
    let (entries, policy) = effective(&args)?;
    let mut out = ReviewOut::stdout();
    if args.json {
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({ "values": entries, "policy": policy }),
        )?;
        writeln!(out)?;
        return Ok(0);
    }
    let rows: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            let v = match &e.value {
                serde_json::Value::String(s) => format!("{s:?}"),
                other => other.to_string(),
            };
            (format!("{} = {v}", e.key), e.source.clone())
        })
        .collect();
    let width = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    for (line, source) in rows {
        writeln!(out, "{line:width$}  # {source}")?;
    }
    Ok(0)
}

/// The 1-based line of `key` (`limits.memory`, `telemetry.headers.x`, `credentials[1] (name)`)
/// in a policy file's text, when it can be found.
fn line_of(text: &str, key: &str) -> Option<usize> {
    let key = key.split(" (").next().unwrap_or(key);
    let (table, rest) = key.split_once('.').unwrap_or((key, ""));
    let (table, index) = match table.split_once('[') {
        Some((t, i)) => (t, i.trim_end_matches(']').parse::<usize>().ok()),
        None => (table, None),
    };
    let lines: Vec<&str> = text.lines().collect();
    let header = |l: &str| {
        let l = l.trim();
        l == format!("[{table}]")
            || l == format!("[[{table}]]")
            || l.starts_with(&format!("[{table}."))
    };
    let starts: Vec<usize> = (0..lines.len()).filter(|i| header(lines[*i])).collect();
    let start = match index {
        Some(n) => *starts.get(n)?,
        None => *starts.first()?,
    };
    let leaf = rest.split('.').next().unwrap_or("");
    if leaf.is_empty() {
        return Some(start + 1);
    }
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        let t = l.trim_start();
        if t.starts_with("[[") || (t.starts_with('[') && !header(t)) {
            break;
        }
        let name = t.split(['=', ' ']).next().unwrap_or("").trim_matches('"');
        if name == leaf {
            return Some(i + 1);
        }
    }
    Some(start + 1)
}

/// `FILE:LINE:COL: message`, from a TOML error's span or the key an invalid value is under.
fn locate(path: &Path, text: &str, err: &PolicyError) -> String {
    match err {
        PolicyError::Parse { message, .. } => {
            // "line L, column C: what" (airlock_policy's one-line form of a TOML error).
            let located = message
                .strip_prefix("line ")
                .and_then(|r| r.split_once(", column "))
                .and_then(|(l, r)| r.split_once(": ").map(|(c, what)| (l, c, what)));
            match located {
                Some((l, c, what)) => format!("{}:{l}:{c}: {what}", path.display()),
                None => format!("{}: {message}", path.display()),
            }
        }
        PolicyError::Invalid { key, message, .. } => match line_of(text, key) {
            Some(l) => format!("{}:{l}: {key}: {message}", path.display()),
            None => format!("{}: {key}: {message}", path.display()),
        },
        other => format!("{}: {other}", path.display()),
    }
}

pub(crate) fn check(args: PolicyCheckArgs) -> Result<i32> {
    let path = &args.file;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy file {}", path.display()))?;
    let file = match ConfigFile::parse(path, &text) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{}", locate(path, &text, &e));
            return Ok(1);
        }
    };
    if let Some(commands) = &file.commands {
        let home = crate::view::Invoker::current().home;
        let layer = airlock_gate::CommandLayer {
            source: path.clone(),
            table: commands.clone(),
            trusted: true,
        };
        if let Err(e) = airlock_gate::Engine::load(&[layer], &home.display().to_string(), false) {
            let line = line_of(&text, "commands").map_or(String::new(), |l| format!("{l}:"));
            eprintln!("{}:{line} [commands]: {e}", path.display());
            return Ok(1);
        }
    }
    let layer = airlock_policy::Layer {
        source: PathBuf::from(path),
        trusted: true,
        config: file.clone(),
    };
    // What `airlock run` refuses, every bad entry and not only the first.
    let problems = policy_load::network_problems(&layer);
    for (key, problem) in &problems {
        let at = line_of(&text, key.split('[').next().unwrap_or(key));
        match at.and_then(|l| Some((l, problem.strip_prefix(&format!("{}:", path.display()))?))) {
            Some((l, rest)) => eprintln!("{}:{l}:{rest}", path.display()),
            None => eprintln!("{problem}"),
        }
    }
    if !problems.is_empty() {
        return Ok(1);
    }
    if let Err(e) = Policy::from_layers(&[layer]) {
        eprintln!("{}", locate(path, &text, &e));
        return Ok(1);
    }
    let mut out = ReviewOut::stdout();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "file": path, "ok": true }))?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}: ok", path.display())?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_on_their_line() {
        let text = "# c\n[network]\nallow = [\"a\"]\n\n[limits]\npids = 0\nmemory = \"x\"\n\
                    [[credentials]]\nname = \"a\"\n[[credentials]]\nname = \"b\"\nenv = \"1X\"\n";
        assert_eq!(line_of(text, "limits.memory"), Some(7));
        assert_eq!(line_of(text, "limits.pids"), Some(6));
        assert_eq!(line_of(text, "network.allow"), Some(3));
        assert_eq!(line_of(text, "credentials[1] (b)"), Some(10));
        assert_eq!(line_of(text, "telemetry.x"), None);
    }

    #[test]
    fn later_scalars_win_and_list_items_add_up_once() {
        let e = |k: &str, v: &str, s: &str| Entry {
            key: k.into(),
            value: v.into(),
            source: s.into(),
        };
        let mut all = vec![
            e("limits.pids", "1", "built-in"),
            e("network.allow", "a", "one"),
        ];
        merge(
            &mut all,
            vec![
                e("limits.pids", "2", "two"),
                e("network.allow", "a", "two"),
                e("network.allow", "b", "two"),
            ],
        );
        assert_eq!(
            all,
            vec![
                e("network.allow", "a", "one"),
                e("limits.pids", "2", "two"),
                e("network.allow", "b", "two"),
            ]
        );
    }

    /// The repository root (for the documentation checks).
    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// Every key of the policy file model is in the configuration reference, so it cannot fall
    /// behind the code.
    #[test]
    fn the_configuration_reference_names_every_key() {
        let doc = std::fs::read_to_string(repo().join("docs/configuration.md")).expect("doc");
        let sample = airlock_policy::CredentialConfig {
            name: String::new(),
            env: None,
            file: None,
            json: None,
            hosts: Vec::new(),
            inject: None,
            body: false,
            headers: Vec::new(),
            placeholder_env: None,
            reverse_proxy_env: None,
        };
        let mut keys = Vec::new();
        let file = serde_json::to_value(ConfigFile::default()).expect("json");
        for (table, v) in file.as_object().expect("object") {
            keys.push(table.clone());
            if let Some(fields) = v.as_object() {
                keys.extend(fields.keys().cloned());
            }
        }
        keys.extend(
            serde_json::to_value(sample)
                .expect("json")
                .as_object()
                .expect("object")
                .keys()
                .cloned(),
        );
        for k in keys {
            assert!(
                doc.contains(&format!("`{k}`"))
                    || doc.contains(&format!("`[{k}]`"))
                    || doc.contains(&format!("`[[{k}]]`")),
                "docs/configuration.md does not describe `{k}`"
            );
        }
    }

    /// The README links only to files in the repository (no design file elsewhere, no web
    /// page), and every relative link in docs/ resolves.
    #[test]
    fn readme_and_docs_link_only_to_files_in_the_repository() {
        let root = repo();
        let mut pages = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
        for e in std::fs::read_dir(root.join("docs"))
            .expect("docs")
            .flatten()
        {
            pages.push(e.path());
        }
        for page in pages {
            let raw = std::fs::read_to_string(&page).expect("read");
            // Inline code (`os[x](…)`) is not a link: drop every code span first.
            let text: String = raw
                .lines()
                .map(|l| {
                    l.split('`')
                        .enumerate()
                        .filter(|(i, _)| i % 2 == 0)
                        .map(|(_, part)| part)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect::<Vec<_>>()
                .join("\n");
            let base = page.parent().expect("dir");
            for (i, _) in text.match_indices("](") {
                let rest = &text[i + 2..];
                let target = &rest[..rest.find(')').expect("closing parenthesis")];
                let target = target.split('#').next().unwrap_or("");
                if page.ends_with("README.md") {
                    assert!(
                        !target.contains("://"),
                        "README.md links outside the repository: {target}"
                    );
                }
                if target.is_empty() || target.contains("://") {
                    continue;
                }
                assert!(
                    base.join(target).exists(),
                    "{} links to {target}, which is not in the repository",
                    page.display()
                );
            }
        }
    }
}
