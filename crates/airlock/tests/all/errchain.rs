//! Real failures through the binary print one error chain: "airlock:" once, no segment of the
//! message repeated, and the exit status of `docker run` (125 airlock, 126 cannot execute, 127
//! not found). The test script runs this file as root and again as an unprivileged user.

use std::process::{Command, Output, Stdio};

use crate::bin;

/// Runs `airlock ARGS` in a fresh workspace with its own session store.
fn airlock(ws: &std::path::Path, data: &std::path::Path, args: &[&str]) -> Output {
    Command::new(bin())
        .current_dir(ws)
        .stdin(Stdio::null())
        .env("XDG_DATA_HOME", data)
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .args(args)
        .output()
        .expect("run airlock")
}

fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir")
}

/// The one-chain invariant on the error line of `o`, and its exit status.
fn assert_one_chain(o: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("airlock: "))
        .unwrap_or_else(|| panic!("no error line in {stderr:?}"));
    assert!(line.contains(needle), "{needle:?} not in {line:?}");
    assert_eq!(line.matches("airlock:").count(), 1, "{line}");
    // The ": "-separated segments: a long one (a message ending) occurs once in the whole line,
    // a short one (an errno name) not twice as a segment.
    let segments: Vec<&str> = line.split(": ").collect();
    for (n, s) in segments.iter().enumerate() {
        assert!(
            !segments[n + 1..].contains(s),
            "segment {s:?} repeated in {line:?}"
        );
        if s.len() >= 12 {
            assert_eq!(line.matches(s).count(), 1, "{s:?} repeated in {line:?}");
        }
    }
}

#[test]
fn missing_command_is_one_chain_and_127() {
    let (ws, data) = (tempdir("airlock-test-"), tempdir("airlock-test-data-"));
    let o = airlock(
        ws.path(),
        data.path(),
        &["run", "--", "no-such-command-errchain"],
    );
    assert_one_chain(&o, 127, "command not found: no-such-command-errchain");
    let o = airlock(
        ws.path(),
        data.path(),
        &["run", "--", "/no/such/dir/errchain"],
    );
    assert_one_chain(&o, 127, "command not found: /no/such/dir/errchain");
}

#[test]
fn unexecutable_command_is_one_chain_and_126() {
    let (ws, data) = (tempdir("airlock-test-"), tempdir("airlock-test-data-"));
    std::fs::write(ws.path().join("noexec.sh"), "#!/bin/sh\n").expect("write");
    let o = airlock(
        ws.path(),
        data.path(),
        &["run", "--mode", "bind", "--", "./noexec.sh"],
    );
    assert_one_chain(&o, 126, "cannot execute");
}

#[test]
fn unreadable_workspace_is_one_chain_and_125() {
    let data = tempdir("airlock-test-data-");
    let parent = tempdir("airlock-test-");
    let ws = parent.path().join("locked");
    std::fs::create_dir(&ws).expect("mkdir");
    std::fs::set_permissions(&ws, std::os::unix::fs::PermissionsExt::from_mode(0o000))
        .expect("chmod");
    let ws_arg = ws.to_string_lossy().into_owned();
    let o = airlock(
        parent.path(),
        data.path(),
        &[
            "run",
            "--mode",
            "bind",
            "--workspace",
            &ws_arg,
            "--",
            "true",
        ],
    );
    assert_one_chain(&o, 125, &ws_arg);
    std::fs::set_permissions(&ws, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod back");
}

#[test]
fn bad_memory_is_one_chain_and_125() {
    let (ws, data) = (tempdir("airlock-test-"), tempdir("airlock-test-data-"));
    for (value, needle) in [
        ("banana", "invalid size 'banana'"),
        ("5", "too little"),
        ("1.5Q", "--memory"),
    ] {
        let o = airlock(
            ws.path(),
            data.path(),
            &["run", "--memory", value, "--", "true"],
        );
        assert_one_chain(&o, 125, needle);
    }
}
