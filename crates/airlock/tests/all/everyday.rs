//! The everyday commands through the real binary: `ls` (newest first; by default running
//! sessions and those with unmerged changes), `run --rm`, bind-mode sessions that changed
//! nothing, `prune`, `policy show` / `policy check`, completions and man pages, and one-line
//! errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::bin;
use airlock_test_support::{stderr, stdout, Run, RunExt, Workspace};
use serde_json::Value;

/// A workspace with its session store, and a private XDG_CONFIG_HOME.
struct Env {
    ws: Workspace,
    home: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            ws: Workspace::new("airlock-everyday").with_file("hello.txt", "hello\n"),
            home: tempfile::Builder::new()
                .prefix("airlock-everyday-home-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    fn airlock(&self, args: &[&str]) -> Run {
        self.ws
            .command(&bin())
            .env("XDG_CONFIG_HOME", self.home.path().join("config"))
            .args(args)
            .run()
    }

    /// `airlock run [flags] --workspace WS -- sh -c SCRIPT`, which must succeed.
    fn run(&self, flags: &[&str], script: &str) -> Run {
        let ws = self.ws.path().to_str().expect("utf-8").to_string();
        let mut args = vec!["run"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--workspace", &ws, "--", "sh", "-c", script]);
        let o = self.airlock(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        o
    }

    fn ls_json(&self, all: bool) -> Vec<Value> {
        let o = if all {
            self.airlock(&["ls", "--all", "--json"])
        } else {
            self.airlock(&["ls", "--json"])
        };
        o.assert_code(0);
        let v: Value = serde_json::from_slice(&o.stdout).expect("ls json");
        v.as_array().expect("array").clone()
    }
}

fn names(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["name"].as_str().unwrap_or("-").to_string())
        .collect()
}

#[test]
fn ls_is_newest_first_and_by_default_shows_what_still_needs_you() {
    let env = Env::new();
    env.run(&["--name", "x"], "true");
    env.run(&["--name", "y"], "echo new > made.txt");
    env.run(&["--name", "z"], "true");
    assert_eq!(names(&env.ls_json(true)), ["z", "y", "x"]);
    let shown = env.ls_json(false);
    assert_eq!(names(&shown), ["y"]);
    assert_eq!(shown[0]["unmerged"]["files"], 1, "{shown:?}");
    let o = env.airlock(&["ls"]);
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.lines().nth(1).is_some_and(|l| l.contains(" y ")),
        "{out}"
    );
    assert!(stderr(&o).contains("2 ended session(s)"), "{}", stderr(&o));
    let out = stdout(&env.airlock(&["ls", "--all"]));
    let order: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(order, ["z", "y", "x"], "{out}");
    // Once merged, y needs nothing more.
    let o = env.airlock(&["merge", "y"]);
    o.assert_code(0);
    assert!(env.ls_json(false).is_empty());
    assert!(stdout(&env.airlock(&["ls"])).contains("airlock ls --all"));
}

#[test]
fn run_rm_removes_a_clean_session_and_refuses_to_lose_changes() {
    let env = Env::new();
    env.run(&["--rm", "--name", "clean"], "true");
    assert!(env.ls_json(true).is_empty(), "a clean --rm session is gone");
    let o = env.run(&["--rm", "--name", "dirty"], "echo x > f.txt");
    assert!(
        stderr(&o).contains("session")
            && stderr(&o).contains("kept")
            && stderr(&o).contains("unmerged"),
        "{}",
        stderr(&o)
    );
    assert_eq!(names(&env.ls_json(false)), ["dirty"]);
    env.run(
        &["--rm", "--discard-changes", "--name", "gone"],
        "echo x > g.txt",
    );
    assert_eq!(names(&env.ls_json(true)), ["dirty"]);
    // The exit status is still the command's.
    let ws = env.ws.path().to_str().expect("utf-8");
    let o = env.airlock(&["run", "--rm", "--workspace", ws, "--", "sh", "-c", "exit 3"]);
    o.assert_code(3);
    assert_eq!(names(&env.ls_json(true)), ["dirty"]);
    let o = env.airlock(&["run", "--discard-changes", "--", "true"]);
    o.assert_code(125);
    assert_eq!(stderr(&o).trim_end().lines().count(), 1, "{}", stderr(&o));
}

#[test]
fn bind_sessions_that_changed_nothing_do_not_pile_up() {
    let env = Env::new();
    env.run(&["--mode", "bind"], "cat hello.txt >/dev/null");
    env.run(&["--mode", "bind"], "true");
    assert!(env.ls_json(true).is_empty(), "{:?}", env.ls_json(true));
    // A write, a touch-back of the same size, a new empty file, a network decision: kept.
    env.run(
        &["--mode", "bind", "--name", "wrote"],
        "echo more >> hello.txt",
    );
    env.run(
        &["--mode", "bind", "--name", "touched"],
        "t=$(stat -c %y hello.txt); echo HELLO > hello.txt; touch -d \"$t\" hello.txt",
    );
    env.run(&["--mode", "bind", "--name", "created"], ": > empty.txt");
    env.run(
        &["--mode", "bind", "--name", "netted"],
        "curl -s -m 5 -o /dev/null http://denied.example/ || true",
    );
    let mut kept = names(&env.ls_json(true));
    kept.sort();
    assert_eq!(kept, ["created", "netted", "touched", "wrote"]);
    // They hold nothing unmerged (their writes are in the workspace): not in the default list.
    assert!(env.ls_json(false).is_empty());
}

#[test]
fn prune_removes_ended_sessions_without_unmerged_changes_and_says_what_it_freed() {
    let env = Env::new();
    env.run(&["--name", "one"], "head -c 300000 /dev/zero > /dev/null");
    env.run(&["--name", "two"], "true");
    env.run(&["--name", "keep"], "echo x > f.txt");
    let o = env.airlock(&["prune", "--older-than", "1d"]);
    o.assert_code(0);
    assert!(
        stdout(&o).contains("removed 0 session(s)"),
        "{}",
        stdout(&o)
    );
    let o = env.airlock(&["prune", "--dry-run"]);
    assert!(
        stdout(&o).contains("would remove 2 session(s)"),
        "{}",
        stdout(&o)
    );
    assert_eq!(env.ls_json(true).len(), 3);
    let o = env.airlock(&["prune", "--json"]);
    o.assert_code(0);
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    let removed: Vec<&str> = v["removed"]
        .as_array()
        .expect("removed")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(removed.len(), 2, "{v}");
    assert!(removed.contains(&"one") && removed.contains(&"two"), "{v}");
    assert!(v["freed_bytes"].as_u64().is_some_and(|b| b > 0), "{v}");
    assert_eq!(v["kept_unmerged"], 1, "{v}");
    assert_eq!(names(&env.ls_json(true)), ["keep"]);
    let o = env.airlock(&["prune"]);
    assert!(
        stdout(&o).contains("removed 0 session(s), freeing 0 B; kept 1 with unmerged changes"),
        "{}",
        stdout(&o)
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn policy_show_says_where_each_value_came_from() {
    let env = Env::new();
    let pol = tempfile::tempdir().expect("tempdir");
    let file = write(
        pol.path(),
        "team.toml",
        "[network]\nallow = [\"crates.io\"]\n[limits]\nmemory = \"2G\"\n",
    );
    std::fs::create_dir_all(env.home.path().join("config/airlock")).expect("mkdir");
    let user = write(
        &env.home.path().join("config/airlock"),
        "config.toml",
        "[network]\nallow = [\"pypi.org\"]\n[limits]\npids = 500\n",
    );
    let f = file.to_str().expect("utf-8");
    let o = env.airlock(&[
        "policy",
        "show",
        "--policy",
        f,
        "--allow-domain",
        "example.org",
        "--pids",
        "99",
    ]);
    o.assert_code(0);
    let out = stdout(&o);
    let line = |needle: &str| {
        out.lines()
            .find(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no {needle}: {out}"))
            .to_string()
    };
    assert!(line("network.allow = \"crates.io\"").ends_with(&format!("# --policy {f}")));
    assert!(line("network.allow = \"pypi.org\"")
        .ends_with(&format!("# user config {}", user.display())));
    assert!(line("network.allow = \"example.org\"").ends_with("# flag --allow-domain"));
    assert!(line("limits.memory = \"2G\"").ends_with(&format!("# --policy {f}")));
    assert!(line("limits.pids = 99").ends_with("# flag --pids"), "{out}");
    assert!(
        !out.contains("limits.pids = 500"),
        "a later layer replaces it: {out}"
    );
    assert!(line("limits.tmp_size").ends_with("# built-in"));
    assert!(line("filesystem.hide = \"~/.ssh\"").ends_with("# built-in"));
    let o = env.airlock(&["policy", "show", "--json", "--policy", f]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(v["values"]
        .as_array()
        .expect("values")
        .iter()
        .any(|e| e["key"] == "network.allow"
            && e["value"] == "crates.io"
            && e["source"] == format!("--policy {f}")));
    assert_eq!(v["policy"]["limits"]["memory_bytes"], 2u64 << 30);
}

#[test]
fn policy_check_points_at_the_line_of_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = Env::new();
    let cases = [
        ("syntax", "[network]\nallow = [\"a\"\n", ":2:"),
        ("value", "[network]\nallow = []\n\n[limits]\npids = 0\n", ":5: limits.pids"),
        ("size", "[limits]\n\nmemory = \"lots\"\n", ":3: limits.memory"),
        ("unknown", "[network]\nallow = []\nalow = [\"x\"]\n", ":3:"),
        (
            "credential",
            "[[credentials]]\nname = \"a\"\nenv = \"A\"\nhosts = [\"a.example\"]\n\n[[credentials]]\nname = \"b\"\nenv = \"B\"\nhosts = []\n",
            ":6: credentials[1]",
        ),
        ("telemetry", "[telemetry]\notlp_endpoint = \"ftp://x\"\n", ":2: telemetry.otlp_endpoint"),
        ("rules", "[commands]\ndeny = [{ match = 3 }]\n", ":1:"),
    ];
    for (name, text, want) in cases {
        let p = write(dir.path(), &format!("{name}.toml"), text);
        let o = env.airlock(&["policy", "check", p.to_str().expect("utf-8")]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: one line: {err}");
        assert!(
            err.starts_with(&format!("{}{want}", p.display())),
            "{name}: want {want}: {err}"
        );
    }
    let ok = write(
        dir.path(),
        "ok.toml",
        "[network]\nallow = [\"crates.io\"]\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\n",
    );
    let o = env.airlock(&["policy", "check", ok.to_str().expect("utf-8")]);
    o.assert_code(0);
    assert_eq!(stdout(&o), format!("{}: ok\n", ok.display()));
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn completions_and_man_pages_come_from_the_clap_definitions() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        let o = env.airlock(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", stderr(&o));
        let text = stdout(&o);
        for word in ["prune", "policy", "older-than"] {
            assert!(text.contains(word), "{shell} completions lack {word}");
        }
        assert!(
            !text.contains("__sandbox-init"),
            "{shell}: internal commands offered"
        );
        if have(shell) {
            let script = env.ws.path().join(format!("c.{shell}"));
            std::fs::write(&script, &text).expect("write");
            let check = Command::new(shell)
                .arg("-n")
                .arg(&script)
                .output()
                .expect(shell);
            assert!(check.status.success(), "{shell} -n: {}", stderr(&check));
        }
    }
    let dir = env.ws.path().join("man");
    let o = env.airlock(&["man", "--out", dir.to_str().expect("utf-8")]);
    o.assert_code(0);
    for page in [
        "airlock.1",
        "airlock-run.1",
        "airlock-ls.1",
        "airlock-prune.1",
        "airlock-policy-show.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
    let run = std::fs::read_to_string(dir.join("airlock-run.1")).expect("run page");
    assert!(run.contains("discard\\-changes"), "{run}");
    if have("groff") {
        for page in std::fs::read_dir(&dir).expect("man dir").flatten() {
            let o = Command::new("groff")
                .args(["-man", "-Tutf8", "-ww", "-z"])
                .arg(page.path())
                .run();
            assert!(
                o.status.success() && o.stderr.is_empty(),
                "{}: {}",
                page.path().display(),
                stderr(&o)
            );
        }
    }
}

#[test]
fn errors_are_one_line_that_says_what_to_do() {
    let env = Env::new();
    for args in [
        vec!["diff", "nosuch"],
        vec!["run", "--workspace", "/nonexistent/dir", "--", "true"],
        vec!["prune", "--older-than", "7y"],
        vec!["policy", "check", "/nonexistent/policy.toml"],
        vec!["ls", "--bogus"],
        vec!["frobnicate"],
        vec!["completions", "tcsh"],
    ] {
        let o = env.airlock(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("airlock: "), "{args:?}: {err}");
    }
}

/// Build output the workspace ignores (`target/` after `cargo test`) is not an unmerged change,
/// so such sessions leave the default list and `prune` takes them; the agent cannot hide real
/// changes by writing ignore rules of its own (they are read from the real tree).
#[test]
fn ignored_build_output_is_not_an_unmerged_change() {
    let env = Env::new();
    std::fs::write(env.ws.path().join(".gitignore"), "/target\n*.log\n").expect("write");
    env.run(
        &["--name", "built"],
        "mkdir -p target/debug && echo bin > target/debug/app && echo l > x.log",
    );
    env.run(
        &["--name", "sneaky"],
        "printf '*\\n' > .gitignore; mkdir -p .git/info && printf '*\\n' > .git/info/exclude; echo evil > payload.txt; mkdir -p sub && printf '*\\n' > sub/.gitignore && echo x > sub/y",
    );
    let shown = env.ls_json(false);
    assert_eq!(names(&shown), ["sneaky"], "{shown:#?}");
    assert!(
        shown[0]["unmerged"]["files"]
            .as_u64()
            .is_some_and(|n| n >= 3),
        "{shown:#?}"
    );
    let all = env.ls_json(true);
    let built = all.iter().find(|r| r["name"] == "built").expect("built");
    assert_eq!(built["unmerged"]["files"], 0, "{built}");
    assert!(
        built["unmerged"]["ignored"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{built}"
    );
    let o = env.airlock(&["prune"]);
    assert!(
        stdout(&o).contains("removed 1 session(s)"),
        "{}",
        stdout(&o)
    );
    assert_eq!(names(&env.ls_json(true)), ["sneaky"]);
}

/// A broken user config stops every run, so `doctor` says not ready and names the file and line;
/// a fixed one is ready again.
#[test]
fn doctor_fails_on_a_broken_config() {
    let env = Env::new();
    let dir = env.home.path().join("config/airlock");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("config.toml"), "[network]\nallow = [\n").expect("write");
    let o = env.airlock(&["doctor", "--json"]);
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["ready"], false, "{v}");
    let detail = v["config"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("config.toml") && detail.contains("line 2"),
        "{v}"
    );
    std::fs::write(
        dir.join("config.toml"),
        "[network]\nallow = [\"crates.io\"]\n",
    )
    .expect("write");
    let v: Value =
        serde_json::from_slice(&env.airlock(&["doctor", "--json"]).stdout).expect("json");
    assert_eq!(v["config"]["ok"], true, "{v}");
}

/// `selftest --only` that matches nothing ran nothing: an error, never "0 failed".
#[test]
fn selftest_only_matching_nothing_is_an_error() {
    let env = Env::new();
    let o = env.airlock(&["selftest", "--only", "no-such-check-anywhere"]);
    o.assert_code(125);
    assert!(stderr(&o).contains("matches no check"), "{}", stderr(&o));
}

#[test]
fn container_settings_in_the_config_do_not_break_native_runs() {
    let env = Env::new();
    let dir = env.home.path().join("config/airlock");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for config in [
        "[container]\nruntime = \"crun\"\n",
        "[container]\nimage = \"docker.io/library/alpine\"\n",
        "[container]\nruntime = \"runsc\"\nimage = \"x\"\n",
        "[k8s]\nnamespace = \"agents\"\ncontext = \"prod\"\nruntime_class = \"gvisor\"\n",
    ] {
        write(&dir, "config.toml", config);
        env.run(&[], "true");
    }
    // Given as a flag (or its variable) to the native backend, each is refused the same way.
    let ws = env.ws.path().to_str().expect("utf-8");
    for flag in [["--runtime", "crun"], ["--image", "alpine"]] {
        let o = env.airlock(&["run", flag[0], flag[1], "--workspace", ws, "--", "true"]);
        assert_eq!(o.status.code(), Some(125), "{flag:?}");
        let e = stderr(&o);
        assert!(
            e.contains(flag[0]) && e.contains("--backend podman"),
            "{flag:?}: {e}"
        );
    }
    // The Kubernetes flags likewise, for every backend that is not k8s.
    for flag in [["--namespace", "agents"], ["--context", "prod"]] {
        let o = env.airlock(&["run", flag[0], flag[1], "--workspace", ws, "--", "true"]);
        assert_eq!(o.status.code(), Some(125), "{flag:?}");
        let e = stderr(&o);
        assert!(
            e.contains(flag[0]) && e.contains("--backend k8s"),
            "{flag:?}: {e}"
        );
    }
}

#[test]
fn policy_check_refuses_what_run_refuses_and_lists_every_bad_entry() {
    let env = Env::new();
    let pol = tempfile::tempdir().expect("tempdir");
    let ws = env.ws.path().to_str().expect("utf-8");
    for (text, bad) in [
        (
            "[network]\nallow = [\"ok.example\", \"*.com\", \"\", \"http://x.com/path\", \"a b\"]\n",
            &["allow[1]", "allow[2]", "allow[3]", "allow[4]"][..],
        ),
        ("[network]\nallow = [\"*\"]\n", &["allow[0]"][..]),
        (
            "[network]\ndeny = [\"*.com\"]\nallow_private = [\"nope\"]\n",
            &["deny[0]", "allow_private[0]"][..],
        ),
    ] {
        let file = write(pol.path(), "p.toml", text);
        let f = file.to_str().expect("utf-8");
        let o = env.airlock(&["policy", "check", f]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{text}: {e}");
        assert!(!stdout(&o).contains("ok"), "{text}: {}", stdout(&o));
        assert_eq!(e.lines().count(), bad.len(), "{text}: {e}");
        for (line, key) in e.lines().zip(bad) {
            assert!(
                line.starts_with(&format!("{f}:")) && line.contains(&format!("network.{key}")),
                "{text}: {e}"
            );
        }
        let o = env.airlock(&["run", "--policy", f, "--workspace", ws, "--", "true"]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(125), "{text}: {e}");
        assert!(e.contains(f) && e.contains(bad[0]), "{text}: {e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    }
}

#[test]
fn a_closed_standard_output_is_a_quiet_exit_not_a_panic() {
    let env = Env::new();
    env.run(&["--name", "one"], "echo x > made.txt");
    let ws = env.ws.path().to_str().expect("utf-8");
    for args in [
        &["run", "--dry-run", "--workspace", ws, "--", "true"][..],
        &["doctor"][..],
        &["doctor", "--json"][..],
        &["creds"][..],
        &["policy", "show"][..],
        &["ls", "--all"][..],
        &["diff", "one"][..],
        &["audit", "one"][..],
        &["man"][..],
        &["completions", "bash"][..],
    ] {
        // The reader of the pipe is gone before airlock writes (as after `| head -1`).
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let o = Command::new(bin())
            .current_dir(env.ws.path())
            .stdin(Stdio::null())
            .stdout(writer)
            .env("XDG_DATA_HOME", env.ws.data())
            .env("XDG_CONFIG_HOME", env.home.path().join("config"))
            .args(args)
            .run();
        let e = stderr(&o);
        assert!(
            !e.contains("panicked") && o.status.code() != Some(101),
            "{args:?}: {e}"
        );
        assert!(e.is_empty(), "{args:?}: {e}");
    }
}

#[test]
fn session_names_that_could_shadow_an_id_or_split_are_refused() {
    let env = Env::new();
    let ws = env.ws.path().to_str().expect("utf-8");
    for name in [
        "3b67",
        "dcdcf088",
        "DEADBEEF",
        "0",
        "a b/c",
        "a/b",
        "a b",
        "tab\there",
        "nl\nx",
        "bell\x07",
        "",
    ] {
        let o = env.airlock(&["run", "--name", name, "--workspace", ws, "--", "true"]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(125), "{name:?}: {e}");
        assert!(e.contains("session name"), "{name:?}: {e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{name:?}: {e}");
    }
    assert!(env.ls_json(true).is_empty());
    for name in ["fix-tests", "cafe-1", "v1.2_x", "g00d"] {
        env.run(&["--name", name], "true");
    }
    assert_eq!(names(&env.ls_json(true)).len(), 4);
}

#[test]
fn sessions_of_a_gone_workspace_are_pruned_when_empty_and_explained_when_not() {
    let env = Env::new();
    let gone = env.ws.path().join("gone");
    std::fs::create_dir(&gone).expect("mkdir");
    std::fs::write(gone.join("a.txt"), "a\n").expect("write");
    let g = gone.to_str().expect("utf-8");
    for (name, script) in [
        ("empty", "true"),
        ("also-empty", "cat a.txt"),
        ("wrote", "echo x > new.txt"),
    ] {
        let o = env.airlock(&[
            "run",
            "--name",
            name,
            "--workspace",
            g,
            "--",
            "sh",
            "-c",
            script,
        ]);
        o.assert_code(0);
    }
    std::fs::remove_dir_all(&gone).expect("rm workspace");
    // As for a session that ended without its summary being written (lost, or older airlock).
    let sessions = env.ws.data().join("airlock/sessions");
    for d in std::fs::read_dir(&sessions).expect("sessions") {
        let _ = std::fs::remove_file(d.expect("entry").path().join("unmerged.json"));
    }
    let rows = env.ls_json(true);
    for r in &rows {
        let unknown = r["unmerged"].get("unknown").is_some();
        assert_eq!(unknown, r["name"] == "wrote", "{r}");
    }
    let o = env.airlock(&["prune"]);
    let out = stdout(&o);
    o.assert_code(0);
    assert!(out.contains("removed 2 session(s)"), "{out}");
    let id = rows
        .iter()
        .find(|r| r["name"] == "wrote")
        .and_then(|r| r["id"].as_str())
        .expect("id")
        .to_string();
    assert!(
        out.contains(&format!("kept {id}")) && out.contains(&format!("airlock rm --force {id}")),
        "{out}"
    );
    assert_eq!(names(&env.ls_json(true)), ["wrote"]);
    let o = env.airlock(&["rm", "--force", &id]);
    o.assert_code(0);
    assert!(env.ls_json(true).is_empty());
}

#[test]
fn rm_of_a_worktree_session_with_changes_refuses_and_says_what_stays() {
    let env = Env::new();
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .current_dir(env.ws.path())
            .run();
        assert!(o.status.success(), "git {args:?}: {}", stderr(&o));
    };
    git(&["init", "-q"]);
    git(&["add", "hello.txt"]);
    git(&["commit", "-qm", "init"]);
    env.run(&["--mode", "worktree", "--name", "wt"], "echo x > f.txt");
    let rows = env.ls_json(false);
    assert_eq!(names(&rows), ["wt"], "{rows:?}");
    let wt = rows[0]["unmerged"]["worktree"]
        .as_str()
        .expect("worktree")
        .to_string();
    for id in ["wt", rows[0]["id"].as_str().expect("id")] {
        let o = env.airlock(&["rm", id]);
        let e = stderr(&o);
        o.assert_code(125);
        assert!(e.contains("unmerged") && e.contains("--force"), "{e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    }
    assert_eq!(names(&env.ls_json(true)), ["wt"]);
    let o = env.airlock(&["rm", "--force", "wt"]);
    let e = stderr(&o);
    o.assert_code(0);
    assert!(
        e.contains(&wt) && e.contains("airlock/wt") && e.contains("git worktree remove"),
        "{e}"
    );
    assert!(env.ls_json(true).is_empty());
}

#[test]
fn limits_too_small_to_start_a_sandbox_are_refused_naming_the_flag_or_file() {
    let env = Env::new();
    let ws = env.ws.path().to_str().expect("utf-8");
    for (flag, value) in [
        ("--cpus", "0"),
        ("--cpus", "0.0"),
        ("--pids", "0"),
        ("--pids", "1"),
        ("--pids", "7"),
        ("--memory", "1"),
        ("--memory", "1M"),
    ] {
        let o = env.airlock(&["run", flag, value, "--workspace", ws, "--", "true"]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(125), "{flag} {value}: {e}");
        assert!(e.contains(flag), "{flag} {value}: {e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    }
    let pol = tempfile::tempdir().expect("tempdir");
    let file = write(pol.path(), "small.toml", "[limits]\npids = 2\n");
    let f = file.to_str().expect("utf-8");
    let o = env.airlock(&["run", "--policy", f, "--workspace", ws, "--", "true"]);
    let e = stderr(&o);
    o.assert_code(125);
    assert!(e.contains(f) && e.contains("limits.pids"), "{e}");
    assert_eq!(env.airlock(&["policy", "check", f]).status.code(), Some(1));
    assert!(env.ls_json(true).is_empty());
    // The smallest allowed values start (--cpus is refused where no cpu cgroup is delegated,
    // as for the unprivileged test user, so it is not tried here).
    env.run(&["--memory", "16M", "--pids", "8"], "true");
}
