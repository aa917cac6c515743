//! The blind corpus (`tests/blind/cases.jsonl`, see its README): no dangerous call allowed, no
//! harmless call blocked, judged in a temporary copy of the context it was written for.

use airlock_gate::rules::StaticGit;
use airlock_gate::{Context, Engine, Tier};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    id: u64,
    expect: String,
    kind: String,
    tool_name: String,
    tool_input: serde_json::Value,
}

/// Cases whose expectation the gate deliberately does not follow, with the reason.
const DELIBERATE: &[(u64, &str)] = &[(
    608,
    "`env sudo -n true` is a non-interactive probe that runs `true`: the issue lists `sudo -n true` \
     among the harmless commands that must be allowed",
)];

/// The context the corpus was written for, under a temporary directory: returns the directory
/// (kept alive), and the home that replaces `/home/dev`.
fn fixture() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = airlock_gate::paths::resolve_links(&dir.path().to_string_lossy()).expect("root");
    let home = format!("{root}/home/dev");
    let ws = format!("{home}/project");
    for d in [
        ".ssh",
        ".aws",
        ".claude",
        "Documents",
        "project/.claude",
        "project/docs",
        "project/src",
        "project/tests",
    ] {
        std::fs::create_dir_all(format!("{home}/{d}")).expect("mkdir");
    }
    let files = [
        (".ssh/id_ed25519", "FAKE KEY\n"),
        (".aws/credentials", "[default]\naws_access_key_id=FAKE\n"),
        (".bashrc", "# rc\n"),
        (".claude/settings.json", "{}\n"),
        ("project/.claude/settings.json", "{}\n"),
        ("project/README.md", "# project\n"),
        ("project/src/app.py", "def add(a,b):\n    return a+b\n"),
        ("project/Makefile", "all:\n\techo build\n"),
        (
            "project/package.json",
            "{\"name\":\"project\",\"version\":\"1.0.0\",\"scripts\":{\"test\":\"jest\"}}\n",
        ),
    ];
    for (f, text) in files {
        std::fs::write(format!("{home}/{f}"), text).expect("write");
    }
    std::os::unix::fs::symlink(format!("{home}/.bashrc"), format!("{ws}/docs/notes.md"))
        .expect("link");
    std::os::unix::fs::symlink(format!("{home}/.ssh"), format!("{ws}/link_ssh")).expect("link");
    (dir, home)
}

#[test]
fn blind_corpus() {
    let (_dir, home) = fixture();
    let ws = format!("{home}/project");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/blind/cases.jsonl"
    ))
    .expect("cases");
    let engine = Engine::load(&[], &home, false).expect("rules load");
    let mut git = StaticGit::default();
    git.remotes.insert(
        "origin".into(),
        "https://github.com/acme/project.git".into(),
    );
    git.branch = Some("feature/login".into());
    let ctx = Context {
        cwd: ws.clone(),
        home: home.clone(),
        workspace: Some(ws.clone()),
        git: &git,
    };
    let (mut dangerous_allowed, mut harmless_blocked, mut n) = (Vec::new(), Vec::new(), 0usize);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let line = line.replace("/home/dev", &home);
        let c: Case = serde_json::from_str(&line).expect("case");
        if DELIBERATE.iter().any(|(id, _)| *id == c.id) {
            continue;
        }
        n += 1;
        let v = engine.classify_tool(&c.tool_name, &c.tool_input, &ctx);
        let what = format!(
            "#{} [{}] {} {}: {} ({}: {})",
            c.id, c.kind, c.tool_name, c.tool_input, v.tier, v.rule, v.reason
        );
        match (c.expect.as_str(), v.tier) {
            ("block", Tier::Allow) => dangerous_allowed.push(what),
            ("allow", t) if t != Tier::Allow => harmless_blocked.push(what),
            _ => {}
        }
    }
    println!(
        "blind corpus: {n} cases; {} dangerous allowed, {} harmless blocked",
        dangerous_allowed.len(),
        harmless_blocked.len()
    );
    assert!(n >= 1000, "only {n} cases");
    assert!(
        dangerous_allowed.is_empty(),
        "dangerous calls allowed:\n{}",
        dangerous_allowed.join("\n")
    );
    assert!(
        harmless_blocked.is_empty(),
        "harmless calls blocked:\n{}",
        harmless_blocked.join("\n")
    );
}
