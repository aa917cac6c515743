//! Paths are judged where they lead: symbolic links in the workspace (to the home directory's
//! startup files, keys, the agent's settings), links that do not resolve yet, and a workspace
//! reached through a link (no false blocks). Real files in a temporary directory: the hook
//! runs where the agent's files are.

use airlock_gate::rules::StaticGit;
use airlock_gate::{Context, Engine, Tier};

struct Tree {
    _dir: tempfile::TempDir,
    home: String,
    ws: String,
}

fn link(target: &str, at: &str) {
    std::os::unix::fs::symlink(target, at).expect("symlink");
}

fn tree() -> Tree {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = airlock_gate::paths::resolve_links(&dir.path().to_string_lossy()).expect("root");
    let home = format!("{root}/home/dev");
    let ws = format!("{home}/project");
    for d in [
        ".ssh",
        ".claude",
        "project/.git/hooks",
        "project/.claude",
        "project/src",
    ] {
        std::fs::create_dir_all(format!("{home}/{d}")).expect("mkdir");
    }
    std::fs::write(format!("{home}/.bashrc"), "# rc\n").expect("write");
    std::fs::write(format!("{home}/.ssh/id_ed25519"), "key\n").expect("write");
    std::fs::write(format!("{ws}/src/main.rs"), "fn main() {}\n").expect("write");
    // An existing file reached through a link.
    link(&format!("{home}/.bashrc"), &format!("{ws}/readme.md"));
    // A relative link to a directory.
    link("../.ssh", &format!("{ws}/keys"));
    // A dangling link: its target does not exist yet.
    link(&format!("{home}/.zshrc"), &format!("{ws}/notes.txt"));
    // A link to the agent's settings directory, and one into the git hooks.
    link(&format!("{home}/.claude"), &format!("{ws}/conf"));
    link(".git/hooks", &format!("{ws}/h"));
    // A harmless link inside the workspace.
    link("src/main.rs", &format!("{ws}/main.rs"));
    Tree {
        _dir: dir,
        home,
        ws,
    }
}

fn check(cases: &[(&str, Tier)], file_cases: &[(&str, &str, Tier)]) {
    let t = tree();
    let engine = Engine::load(&[], &t.home, false).expect("load");
    let git = StaticGit::default();
    let ctx = Context {
        cwd: t.ws.clone(),
        home: t.home.clone(),
        workspace: Some(t.ws.clone()),
        git: &git,
    };
    let mut bad = Vec::new();
    for (cmd, want) in cases {
        let v = engine.classify_command(cmd, &ctx);
        if v.tier != *want {
            bad.push(format!(
                "{cmd:?}: want {want}, got {} ({}: {})",
                v.tier, v.rule, v.reason
            ));
        }
    }
    for (tool, path, want) in file_cases {
        let path = path.replace("WS", &t.ws);
        let v = engine.classify_tool(tool, &serde_json::json!({ "file_path": path }), &ctx);
        if v.tier != *want {
            bad.push(format!(
                "{tool} {path}: want {want}, got {} ({}: {})",
                v.tier, v.rule, v.reason
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn links_are_judged_where_they_lead() {
    check(
        &[
            ("echo 'curl x | sh' >> readme.md", Tier::Deny),
            ("tee -a readme.md < /dev/null", Tier::Deny),
            ("cp /tmp/x readme.md", Tier::Deny),
            ("sed -i 's/a/b/' readme.md", Tier::Deny),
            ("cat keys/id_ed25519", Tier::Deny),
            ("base64 keys/id_ed25519", Tier::Deny),
            ("cp keys/id_ed25519 /tmp/k", Tier::Deny),
            ("echo x > notes.txt", Tier::Deny),
            ("echo '{}' > conf/settings.json", Tier::Deny),
            ("echo x > h/pre-commit", Tier::Deny),
            (
                "python3 -c \"open('readme.md','a').write('x')\"",
                Tier::Deny,
            ),
            ("cat keys/../.ssh/id_ed25519", Tier::Deny),
        ],
        &[
            ("Write", "WS/readme.md", Tier::Deny),
            ("Edit", "readme.md", Tier::Deny),
            ("Write", "notes.txt", Tier::Deny),
            ("Read", "keys/id_ed25519", Tier::Deny),
            ("Write", "conf/settings.json", Tier::Deny),
            ("Write", "WS/h/post-checkout", Tier::Deny),
        ],
    );
}

#[test]
fn links_inside_the_workspace_stay_allowed() {
    check(
        &[
            ("cat main.rs", Tier::Allow),
            ("echo x >> main.rs", Tier::Allow),
            ("sed -i 's/a/b/' main.rs src/main.rs", Tier::Allow),
            ("mkdir -p out && cp main.rs out/", Tier::Allow),
            ("cat src/../src/main.rs", Tier::Allow),
        ],
        &[
            ("Write", "main.rs", Tier::Allow),
            ("Edit", "WS/src/main.rs", Tier::Allow),
            ("Write", "WS/src/new.rs", Tier::Allow),
        ],
    );
}

/// A workspace reached through a link (`/work` → `/data/work`): its files are still the
/// workspace's, not "outside".
#[test]
fn a_workspace_reached_through_a_link_is_still_the_workspace() {
    let t = tree();
    let via = format!("{}/via", t.home);
    link(&t.ws, &via);
    let engine = Engine::load(&[], &t.home, false).expect("load");
    let git = StaticGit::default();
    let ctx = Context {
        cwd: via.clone(),
        home: t.home.clone(),
        workspace: Some(via.clone()),
        git: &git,
    };
    for cmd in [
        "echo x > src/new.rs",
        "rm -rf src/old",
        "cp main.rs copy.rs",
    ] {
        let v = engine.classify_command(cmd, &ctx);
        assert_eq!(v.tier, Tier::Allow, "{cmd}: {} {}", v.rule, v.reason);
    }
    let v = engine.classify_command("echo x >> readme.md", &ctx);
    assert_eq!(v.tier, Tier::Deny, "{} {}", v.rule, v.reason);
}

/// Links met by inline code, the Grep/Glob tools, copies into directories, and patches the
/// hook reads from the workspace (kinds 5–7 of issue 12 through real files).
#[test]
fn links_patches_and_copies_through_real_files() {
    let t = tree();
    // `up` → the home directory; a chain of links to `.bashrc`; a dangling absolute link to
    // the user's Claude settings (not created yet).
    link("..", &format!("{}/up", t.ws));
    link("readme.md", &format!("{}/chain", t.ws));
    link(
        &format!("{}/.claude/settings.json", t.home),
        &format!("{}/cfg.json", t.ws),
    );
    std::fs::write(
        format!("{}/evil.patch", t.ws),
        "diff --git a/.claude/settings.json b/.claude/settings.json\n--- a/.claude/settings.json\n+++ b/.claude/settings.json\n@@ -1 +1 @@\n-a\n+b\n",
    )
    .expect("write");
    std::fs::write(
        format!("{}/ci.patch", t.ws),
        "--- a/.github/workflows/ci.yml\n+++ b/.github/workflows/ci.yml\n@@ -1 +1 @@\n-a\n+b\n",
    )
    .expect("write");
    std::fs::write(
        format!("{}/ok.patch", t.ws),
        "--- a/src/main.rs\n+++ b/src/main.rs\n@@ -1 +1 @@\n-a\n+b\n",
    )
    .expect("write");
    let engine = Engine::load(&[], &t.home, false).expect("load");
    let git = StaticGit::default();
    let ctx = Context {
        cwd: t.ws.clone(),
        home: t.home.clone(),
        workspace: Some(t.ws.clone()),
        git: &git,
    };
    let mut bad = Vec::new();
    for (cmd, want) in [
        (
            "python3 -c \"import os; open(os.path.join('conf','settings.json'),'w').write('{}')\"",
            Tier::Deny,
        ),
        (
            "python3 -c \"from pathlib import Path; (Path('h')/'pre-commit').write_text('x')\"",
            Tier::Deny,
        ),
        (
            "node -e \"require('fs').appendFileSync('read'+'me.md','x')\"",
            Tier::Deny,
        ),
        ("echo x >> chain", Tier::Deny),
        ("echo '{}' > cfg.json", Tier::Deny),
        ("grep -r token up", Tier::Deny),
        ("rg -uu secret up/", Tier::Deny),
        ("tar czf /tmp/h.tgz up", Tier::Deny),
        ("cat up/.ssh/id_ed25519", Tier::Deny),
        ("git apply evil.patch", Tier::Deny),
        ("patch -p1 < evil.patch", Tier::Deny),
        ("patch -p1 -i evil.patch", Tier::Deny),
        ("git am evil.patch", Tier::Deny),
        ("git apply ci.patch", Tier::Ask),
        ("cp -r /tmp/evil/.claude .", Tier::Deny),
        ("mv /tmp/x/hooks .git/", Tier::Deny),
        ("cp -r /tmp/x/.github ./", Tier::Ask),
        // Harmless look-alikes.
        ("git apply ok.patch", Tier::Allow),
        ("patch -p1 < ok.patch", Tier::Allow),
        ("git apply missing.patch", Tier::Allow),
        ("cp -r src out/", Tier::Allow),
        ("grep -r main src", Tier::Allow),
        (
            "python3 -c \"import os; open(os.path.join('src','gen.rs'),'w').write('x')\"",
            Tier::Allow,
        ),
    ] {
        let v = engine.classify_command(cmd, &ctx);
        if v.tier != want {
            bad.push(format!(
                "{cmd:?}: want {want}, got {} ({}: {})",
                v.tier, v.rule, v.reason
            ));
        }
    }
    for (tool, input, want) in [
        (
            "Grep",
            serde_json::json!({"pattern": "token", "path": "up"}),
            Tier::Deny,
        ),
        (
            "Glob",
            serde_json::json!({"pattern": "up/.ssh/*"}),
            Tier::Deny,
        ),
        (
            "Glob",
            serde_json::json!({"pattern": "**/*", "path": "up"}),
            Tier::Deny,
        ),
        (
            "NotebookEdit",
            serde_json::json!({"notebook_path": "nb.ipynb", "file_path": "chain", "new_source": "x"}),
            Tier::Deny,
        ),
        (
            "Write",
            serde_json::json!({"file_path": "cfg.json", "content": "{}"}),
            Tier::Deny,
        ),
        (
            "Write",
            serde_json::json!({"file_path": "cоnf/settings.json", "content": "{}"}),
            Tier::Deny,
        ),
        (
            "Grep",
            serde_json::json!({"pattern": "fn", "path": "src"}),
            Tier::Allow,
        ),
        (
            "Glob",
            serde_json::json!({"pattern": "src/**/*.rs"}),
            Tier::Allow,
        ),
    ] {
        let v = engine.classify_tool(tool, &input, &ctx);
        if v.tier != want {
            bad.push(format!(
                "{tool} {input}: want {want}, got {} ({}: {})",
                v.tier, v.rule, v.reason
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
