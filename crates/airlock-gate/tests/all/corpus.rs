//! The command corpus (`tests/corpus.toml`): zero dangerous commands allowed, false blocks on
//! everyday work listed and under 2 %, every other decision as expected.

use std::collections::BTreeMap;

use airlock_gate::rules::StaticGit;
use airlock_gate::{CommandLayer, Context, Engine, Tier, Verdict};
use serde::Deserialize;

#[derive(Deserialize)]
struct Corpus {
    group: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    category: String,
    expect: Tier,
    #[serde(default)]
    commands: Vec<String>,
    #[serde(default)]
    tools: Vec<(String, String)>,
    /// Tool calls with a whole `tool_input`, as JSON text (`["Grep", "{\"path\": \"~\"}"]`).
    #[serde(default)]
    inputs: Vec<(String, String)>,
}

fn engine() -> Engine {
    let mut table = toml::Table::new();
    table.insert(
        "git_owners".into(),
        toml::Value::Array(vec!["dev-bot".into()]),
    );
    let layer = CommandLayer {
        source: "corpus-policy.toml".into(),
        table,
        trusted: true,
    };
    Engine::load(&[layer], "/home/dev", false).expect("rules load")
}

fn git() -> StaticGit {
    let mut g = StaticGit::default();
    g.remotes
        .insert("origin".into(), "git@github.com:acme/project.git".into());
    g.remotes.insert(
        "fork".into(),
        "https://github.com/dev-bot/project.git".into(),
    );
    g.branch = Some("feature/login".into());
    g
}

/// The decision Claude Code would see (no reviewer configured: review = ask).
fn shown(v: &Verdict) -> Tier {
    match v.tier {
        Tier::Review => Tier::Ask,
        t => t,
    }
}

/// `tests/corpus.toml` plus every `tests/corpus/*.toml` (one file per kind of bypass), in name
/// order.
fn load_corpus() -> Corpus {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let mut files = vec![std::path::PathBuf::from(format!("{dir}/corpus.toml"))];
    let mut extra: Vec<_> = std::fs::read_dir(format!("{dir}/corpus"))
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    extra.sort();
    files.extend(extra);
    let mut group = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
        let part: Corpus =
            toml::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", f.display()));
        group.extend(part.group);
    }
    Corpus { group }
}

#[test]
fn corpus() {
    let corpus = load_corpus();
    let engine = engine();
    let git = git();
    let ctx = Context {
        cwd: "/home/dev/project".into(),
        home: "/home/dev".into(),
        workspace: Some("/home/dev/project".into()),
        git: &git,
    };
    let mut total = 0usize;
    let mut everyday = 0usize;
    let mut dangerous_allowed = Vec::new();
    let mut false_blocks = Vec::new();
    let mut mismatches = Vec::new();
    let mut per_category: BTreeMap<(String, Tier), (usize, usize)> = BTreeMap::new();
    for g in &corpus.group {
        let items: Vec<(String, Verdict)> = g
            .commands
            .iter()
            .map(|c| (c.clone(), engine.classify_command(c, &ctx)))
            .chain(g.tools.iter().map(|(tool, path)| {
                let input = if tool == "WebFetch" {
                    serde_json::json!({ "url": path, "prompt": "summarise the page" })
                } else {
                    serde_json::json!({ "file_path": path })
                };
                (
                    format!("{tool} {path}"),
                    engine.classify_tool(tool, &input, &ctx),
                )
            }))
            .chain(g.inputs.iter().map(|(tool, json)| {
                let input: serde_json::Value = serde_json::from_str(json)
                    .unwrap_or_else(|e| panic!("corpus input {json}: {e}"));
                (
                    format!("{tool} {json}"),
                    engine.classify_tool(tool, &input, &ctx),
                )
            }))
            .collect();
        for (what, v) in items {
            total += 1;
            let got = shown(&v);
            let entry = per_category
                .entry((g.category.clone(), g.expect))
                .or_default();
            entry.0 += 1;
            if got == g.expect {
                entry.1 += 1;
            }
            let line = format!(
                "[{}] {what:?}: expected {}, got {} ({}: {})",
                g.category, g.expect, got, v.rule, v.reason
            );
            if g.expect == Tier::Allow {
                everyday += 1;
                if got != Tier::Allow {
                    false_blocks.push(line);
                }
            } else if got == Tier::Allow {
                dangerous_allowed.push(line);
            } else if got != g.expect {
                mismatches.push(line);
            }
        }
    }
    println!("corpus: {total} cases (commands and file-tool calls), {everyday} expected allow");
    for ((cat, exp), (n, ok)) in &per_category {
        println!("  {cat:<14} expect {exp:<5} {ok:>3}/{n:<3} as expected");
    }
    println!("false blocks ({}):", false_blocks.len());
    for l in &false_blocks {
        println!("  {l}");
    }
    println!("dangerous allowed ({}):", dangerous_allowed.len());
    for l in &dangerous_allowed {
        println!("  {l}");
    }
    println!("other mismatches ({}):", mismatches.len());
    for l in &mismatches {
        println!("  {l}");
    }
    assert!(
        total >= 300,
        "corpus has {total} commands, want at least 300"
    );
    assert!(
        dangerous_allowed.is_empty(),
        "dangerous commands allowed:\n{}",
        dangerous_allowed.join("\n")
    );
    let rate = false_blocks.len() as f64 / everyday.max(1) as f64;
    assert!(
        rate < 0.02,
        "false-block rate {:.1}% (want < 2%):\n{}",
        rate * 100.0,
        false_blocks.join("\n")
    );
    assert!(
        mismatches.is_empty(),
        "decisions differ from the corpus:\n{}",
        mismatches.join("\n")
    );
}
