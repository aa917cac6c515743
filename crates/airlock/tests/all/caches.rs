//! Host caches shared with sessions (`--preset`) and `airlock cache promote`, driven through the
//! real binary against a package registry on loopback over real TLS (a test CA, `[tls]
//! extra_roots`): downloads stay in the session until promoted; promote copies only what
//! verifies against the registry's own integrity data, never what the agent rewrote; offline
//! builds use a warm host cache and leave it as it was. The test script runs this module as root
//! and again as an unprivileged user.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use sha2::Digest as _;

use crate::bin;
use airlock_test_support::registry::*;
use airlock_test_support::RunExt;

/// A real download in a session (npm through airlock's proxy from the loopback registry) lands
/// in the session's layer and not in the host's cache; `promote --dry-run` writes nothing;
/// `promote` copies the tarball, verified against the registry's packument, and nothing else
/// (index entries, logs); a second run finds it present; a later session installs it offline
/// from the host cache with the registry gone.
#[test]
fn a_download_stays_in_the_session_until_promoted() {
    assert!(have("npm"), "npm is needed on PATH for this test");
    let reg = Registry::start();
    let pkg = npm_package("leftish", "1.0.0", 42);
    reg.publish_npm("leftish", "1.0.0", &pkg);
    let home = Home::new(&reg, bin());
    let policy = home.policy(
        &reg,
        &format!(
            "npm_config_registry = \"{}\", npm_config_cafile = \"{}\"",
            reg.session_url(),
            home.ws().join("ca.pem").display()
        ),
    );
    let before = snapshot(&home.path().join(".npm"));
    std::fs::create_dir_all(home.ws().join("app")).expect("app");
    std::fs::write(
        home.ws().join("app/package.json"),
        "{\"name\":\"app\",\"version\":\"0.0.0\",\"private\":true}",
    )
    .expect("package.json");
    let o = home.run(
        &[
            "--preset",
            "node",
            "--policy",
            policy.to_str().expect("utf-8"),
        ],
        "cd app && npm install --no-audit --no-fund leftish@1.0.0 >/dev/null && \
         node -e 'console.log(require(\"leftish\"))'",
    );
    assert_eq!(stdout(&o).trim(), "42", "{}{}", stdout(&o), stderr(&o));
    assert!(
        reg.requests()
            .iter()
            .any(|p| p.ends_with("leftish-1.0.0.tgz")),
        "{:?}",
        reg.requests()
    );
    // The host's cache is untouched; the session's layer has the tarball.
    assert_eq!(snapshot(&home.path().join(".npm")), before);
    let id = home.last_session();
    let (dry, _) = home.promote(&id, &["--dry-run"]);
    assert_eq!(dry["promoted"], 1, "{dry:#}");
    assert_eq!(snapshot(&home.path().join(".npm")), before, "dry run wrote");
    let o = home
        .airlock()
        .args(["cache", "promote", &id, "--dry-run"])
        .run();
    let text = stdout(&o);
    assert!(
        text.lines().any(|l| l.starts_with("would promote")
            && l.contains(&cacache_path(&pkg).display().to_string())),
        "{text}{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("1 would promote"), "{}", stderr(&o));
    assert_eq!(snapshot(&home.path().join(".npm")), before, "dry run wrote");
    let (report, o) = home.promote(&id, &[]);
    assert_eq!(report["promoted"], 1, "{report:#}");
    assert_eq!(report["refused"], 0, "{report:#}");
    let blob = home.path().join(".npm").join(cacache_path(&pkg));
    assert_eq!(std::fs::read(&blob).expect("promoted blob"), pkg);
    let (what, by) = outcome(&report, &cacache_path(&pkg).display().to_string());
    assert_eq!(what, "promoted");
    assert!(
        by.contains("leftish@1.0.0") && by.contains(&reg.url()),
        "{by}"
    );
    // Index entries and everything else stayed behind, each with a reason.
    let after = snapshot(&home.path().join(".npm"));
    let new: Vec<&PathBuf> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert!(
        new.iter()
            .all(|p| cacache_path(&pkg).starts_with(p) || **p == cacache_path(&pkg)),
        "{new:?}"
    );
    assert!(
        report["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter(|e| e["outcome"] == "skipped")
            .all(|e| !e["reason"].as_str().unwrap_or("").is_empty()),
        "{report:#}"
    );
    assert!(
        stderr(&o).is_empty() || !stderr(&o).contains("error"),
        "{}",
        stderr(&o)
    );
    let (again, _) = home.promote(&id, &[]);
    assert_eq!(
        (again["promoted"].clone(), again["present"].clone()),
        (0.into(), 1.into())
    );
    // With the registry gone, a new session installs from the lock file offline, from the
    // promoted host cache.
    drop(reg);
    std::fs::remove_dir_all(home.ws().join("app/node_modules")).expect("node_modules");
    let o = home.run(
        &["--preset", "node"],
        "cd app && npm ci --offline --no-audit --no-fund >/dev/null && \
         node -e 'console.log(require(\"leftish\"))'",
    );
    assert_eq!(stdout(&o).trim(), "42", "{}{}", stdout(&o), stderr(&o));
}

/// What the agent plants in its cargo layer, and what promote makes of it: genuine crates are
/// promoted (verified by the registry's sparse index, or by the host's own index cache); a
/// crate whose bytes were changed is refused, also when the agent rewrote its own index copy
/// and Cargo.lock to match, and when it names a crate or registry nobody vouches for; links
/// (to a file, to a directory of genuine crates) and FIFOs are skipped; unpacked sources and
/// index files are not artifacts. The host cache gains exactly the genuine crates.
#[test]
fn cargo_promote_refuses_tampered_crates_links_and_special_files() {
    let reg = Registry::start();
    let foo = crate_file("foo", "1.0.0", 1);
    let foo_101 = crate_file("foo", "1.0.1", 2);
    let baz = crate_file("baz", "1.0.0", 3);
    let bar = crate_file("bar", "2.0.0", 4);
    let evil = crate_file("foo", "1.0.1", 666);
    let evil_baz = crate_file("baz", "1.0.0", 666);
    let evil_qux = crate_file("qux", "1.0.0", 666);
    reg.publish_crates(&[
        ("foo", "1.0.0", &foo),
        ("foo", "1.0.1", &foo_101),
        ("baz", "1.0.0", &baz),
    ]);
    let home = Home::new(&reg, bin());
    let cargo = home.path().join(".cargo");
    // bar is not in the registry, only in the host's own index cache (cargo's `.cache` format).
    let host_index = cargo.join("registry/index").join(CRATE_DIR).join(".cache");
    let bar_line = format!(
        "{{\"name\":\"bar\",\"vers\":\"2.0.0\",\"deps\":[],\"cksum\":\"{}\",\"features\":{{}}}}",
        sha256_hex(&bar)
    );
    std::fs::create_dir_all(host_index.join("3/b")).expect("index");
    let mut cache_file = vec![3u8, 2, 0, 0, 0];
    cache_file.extend_from_slice(b"etag\x002.0.0\x00");
    cache_file.extend_from_slice(bar_line.as_bytes());
    cache_file.push(0);
    std::fs::write(host_index.join("3/b/bar"), &cache_file).expect("bar index");
    // The agent's plant: prepared in the workspace, copied into the layer from inside.
    let plant = home.ws().join("plant");
    let pc = plant.join("registry/cache").join(CRATE_DIR);
    std::fs::create_dir_all(&pc).expect("plant");
    std::fs::write(pc.join("foo-1.0.0.crate"), &foo).expect("foo");
    std::fs::write(pc.join("bar-2.0.0.crate"), &bar).expect("bar");
    std::fs::write(pc.join("foo-1.0.1.crate"), &evil).expect("evil");
    std::fs::write(pc.join("baz-1.0.0.crate"), &evil_baz).expect("evil baz");
    std::fs::write(pc.join("qux-1.0.0.crate"), &evil_qux).expect("evil qux");
    let other = plant.join("registry/cache/evil.example-0123456789abcdef");
    std::fs::create_dir_all(&other).expect("other");
    std::fs::write(other.join("foo-1.0.0.crate"), &foo).expect("other foo");
    std::fs::create_dir_all(plant.join("registry/src").join(CRATE_DIR).join("foo-1.0.0"))
        .expect("src");
    std::fs::write(
        plant
            .join("registry/src")
            .join(CRATE_DIR)
            .join("foo-1.0.0/lib.rs"),
        "x",
    )
    .expect("src file");
    // Names that are not UTF-8, or that would drive the terminal or forge a line.
    {
        use std::os::unix::ffi::OsStrExt;
        let odd = std::ffi::OsStr::from_bytes(b"bad\xff-1.0.0.crate");
        std::fs::write(pc.join(odd), &foo).expect("odd name");
        std::fs::write(pc.join("foo-1.0.0\x1b[2J\npromoted  x.crate"), &foo).expect("esc name");
        std::fs::write(pc.join("foo-1\x1b]0;owned\x07\n.crate"), &foo).expect("esc version");
    }
    // Its own index copy and lock file, rewritten to match its evil bytes.
    let pi = plant.join("registry/index").join(CRATE_DIR).join(".cache");
    for (name, bytes) in [("baz", &evil_baz), ("qux", &evil_qux), ("foo", &evil)] {
        let dir = pi.join(index_path(name)).parent().expect("p").to_path_buf();
        std::fs::create_dir_all(&dir).expect("index dir");
        let vers = if name == "foo" { "1.0.1" } else { "1.0.0" };
        let line = format!(
            "{{\"name\":\"{name}\",\"vers\":\"{vers}\",\"deps\":[],\"cksum\":\"{}\",\"features\":{{}}}}",
            sha256_hex(bytes)
        );
        let mut f = vec![3u8, 2, 0, 0, 0];
        f.extend_from_slice(format!("etag\0{vers}\0{line}\0").as_bytes());
        std::fs::write(pi.join(index_path(name)), f).expect("index file");
    }
    std::fs::write(
        home.ws().join("Cargo.lock"),
        format!(
            "version = 3\n[[package]]\nname = \"baz\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{}\"\n",
            sha256_hex(&evil_baz)
        ),
    )
    .expect("lock");
    // A directory of genuine crates outside, reached by a link in the layer.
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("foo-1.0.1.crate"), &foo_101).expect("outside crate");
    let script = format!(
        "set -e; cp -a plant/. ~/.cargo/; \
         c=~/.cargo/registry/cache/{CRATE_DIR}; \
         ln -s /etc/passwd $c/link-1.0.0.crate; \
         ln -s {} ~/.cargo/registry/cache/127.0.0.1-fedcba9876543210; \
         mkfifo $c/fifo-1.0.0.crate; echo planted",
        outside.path().display()
    );
    let before = snapshot(&cargo);
    let o = home.run(&["--preset", "rust"], &script);
    assert_eq!(stdout(&o).trim(), "planted", "{}", stderr(&o));
    assert_eq!(
        snapshot(&cargo),
        before,
        "the session wrote the host's cache"
    );
    let id = home.last_session();
    let (report, _) = home.promote(&id, &[]);
    let cases = [
        ("foo-1.0.0.crate", "promoted", "/3/f/foo"),
        ("bar-2.0.0.crate", "promoted", "host's index cache"),
        ("foo-1.0.1.crate", "refused", "content does not match"),
        ("baz-1.0.0.crate", "refused", "content does not match"),
        ("qux-1.0.0.crate", "refused", "qux 1.0.0 is not in"),
        (
            "evil.example-0123456789abcdef/foo-1.0.0.crate",
            "refused",
            "no sparse registry for evil.example",
        ),
        ("link-1.0.0.crate", "skipped", "symbolic link"),
        ("127.0.0.1-fedcba9876543210", "skipped", "symbolic link"),
        ("fifo-1.0.0.crate", "skipped", "only regular files"),
        ("foo-1.0.0/lib.rs", "skipped", "not a downloaded crate"),
        (".cache/3/b/baz", "skipped", "not a downloaded crate"),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(suffix, want, why)| {
            let (got, reason) = outcome(&report, suffix);
            (got != *want || !reason.contains(why))
                .then(|| format!("{suffix}: {got} ({reason}), expected {want} ({why})"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The text report carries no control character the agent chose, and no line it forged.
    let o = home
        .airlock()
        .args(["cache", "promote", &id, "--dry-run"])
        .run();
    let text = stdout(&o);
    assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
    assert!(
        !text.lines().any(|l| l.starts_with("promoted  x.crate")),
        "{text}"
    );
    assert!(text.contains("bad\\377-1.0.0.crate"), "{text}");
    // The host cache gained exactly the two genuine crates.
    let after = snapshot(&cargo);
    let new: Vec<PathBuf> = after
        .keys()
        .filter(|k| !before.contains_key(*k))
        .cloned()
        .collect();
    let dir = PathBuf::from("registry/cache").join(CRATE_DIR);
    assert_eq!(
        new,
        [dir.join("bar-2.0.0.crate"), dir.join("foo-1.0.0.crate")],
        "{report:#}"
    );
    assert_eq!(
        std::fs::read(cargo.join(dir.join("foo-1.0.0.crate"))).expect("foo"),
        foo
    );
    for (k, v) in &before {
        assert_eq!(after.get(k), Some(v), "{k:?} changed");
    }
}

/// npm blobs the agent tampered with: changed bytes at the genuine package's content address,
/// and a tarball of its own at its own address with a cache entry (and a package-lock.json)
/// claiming it is the published package. Both are refused; the host cache is unchanged.
#[test]
fn npm_promote_refuses_tampered_tarballs() {
    let reg = Registry::start();
    let pkg = npm_package("leftish", "1.0.0", 42);
    let evil = npm_package("leftish", "1.0.0", 666);
    reg.publish_npm("leftish", "1.0.0", &pkg);
    let home = Home::new(&reg, bin());
    let plant = home.ws().join("plant");
    // Variant 1: the genuine address, other bytes.
    let genuine = plant.join(cacache_path(&pkg));
    std::fs::create_dir_all(genuine.parent().expect("p")).expect("dir");
    std::fs::write(&genuine, &evil).expect("write");
    // Variant 2: its own address, and an index entry and a lock file claiming the package.
    let own = plant.join(cacache_path(&evil));
    std::fs::create_dir_all(own.parent().expect("p")).expect("dir");
    std::fs::write(&own, &evil).expect("write");
    let url = format!("{}leftish/-/leftish-1.0.0.tgz", reg.url());
    for bytes in [&pkg, &evil] {
        let entry = serde_json::json!({
            "key": format!("make-fetch-happen:request-cache:{url}"),
            "integrity": sri(bytes), "time": 0, "size": bytes.len(), "metadata": {}
        })
        .to_string();
        let bucket = plant.join(format!(
            "_cacache/index-v5/aa/bb/{}",
            &sri(bytes)[7..15].replace('/', "_")
        ));
        std::fs::create_dir_all(bucket.parent().expect("p")).expect("bucket dir");
        std::fs::write(
            &bucket,
            format!(
                "\n{}\t{entry}",
                hex::encode(sha2::Sha256::digest(entry.as_bytes()))
            ),
        )
        .expect("bucket");
    }
    std::fs::write(
        home.ws().join("package-lock.json"),
        serde_json::json!({"lockfileVersion": 3, "packages": {"node_modules/leftish": {
            "version": "1.0.0", "resolved": url, "integrity": sri(&evil)}}})
        .to_string(),
    )
    .expect("lock");
    let before = snapshot(&home.path().join(".npm"));
    let o = home.run(
        &["--preset", "node"],
        "cp -a plant/. ~/.npm/ && echo planted",
    );
    assert_eq!(stdout(&o).trim(), "planted", "{}", stderr(&o));
    let id = home.last_session();
    let (report, _) = home.promote(&id, &[]);
    let (got, reason) = outcome(&report, &cacache_path(&pkg).display().to_string());
    assert_eq!(got, "refused", "{reason}");
    assert!(reason.contains("content does not match"), "{reason}");
    let (got, reason) = outcome(&report, &cacache_path(&evil).display().to_string());
    assert_eq!(got, "refused", "{reason}");
    assert!(reason.contains("content is not leftish@1.0.0"), "{reason}");
    assert_eq!(report["promoted"], 0, "{report:#}");
    assert_eq!(snapshot(&home.path().join(".npm")), before);
}

/// Clear errors: an unknown session, a session still running, a session without cache layers.
#[test]
fn promote_errors_name_the_session_and_what_to_do() {
    let reg = Registry::start();
    let home = Home::new(&reg, bin());
    let o = home
        .airlock()
        .args(["cache", "promote", "nosuchsession"])
        .run();
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("nosuchsession"), "{}", stderr(&o));
    // Without a preset: no cache layers.
    let o = home.run(&[], "touch changed");
    o.assert_code(0);
    let id = home.last_session();
    let o = home.airlock().args(["cache", "promote", &id]).run();
    o.assert_code(125);
    assert!(
        stderr(&o).contains("has no cache layers") && stderr(&o).contains("--preset"),
        "{}",
        stderr(&o)
    );
    // Still running.
    let mut child = home
        .airlock()
        .args(["run", "--mode", "bind", "--preset", "rust", "--workspace"])
        .arg(home.ws())
        .args(["--", "sh", "-c", "echo ready; sleep 60"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line, "ready\n");
    let id = home.last_session();
    let o = home.airlock().args(["cache", "promote", &id]).run();
    let _ = child.kill();
    let _ = child.wait();
    o.assert_code(125);
    assert!(
        stderr(&o).contains("still running") && stderr(&o).contains(&id),
        "{}",
        stderr(&o)
    );
}

/// The directory holding `cargo` and `rustc` for this user: `AIRLOCK_TEST_TOOLCHAIN` (the test
/// script links a toolchain where an unprivileged user can read it), else rustup's active one,
/// else `cargo` on `PATH`.
fn toolchain() -> PathBuf {
    if let Some(t) = std::env::var_os("AIRLOCK_TEST_TOOLCHAIN") {
        return PathBuf::from(t);
    }
    for probe in ["rustup which cargo", "command -v cargo"] {
        let o = Command::new("sh").args(["-c", probe]).output();
        if let Ok(o) = o {
            let p = PathBuf::from(stdout(&o).trim());
            if o.status.success() && p.is_absolute() {
                return p.parent().expect("bin dir").to_path_buf();
            }
        }
    }
    panic!(
        "no cargo for this user: put one on PATH or set AIRLOCK_TEST_TOOLCHAIN to a toolchain's \
         bin directory (scripts/test.sh does)"
    );
}

/// With the host caches warm (filled by the user's own cargo and npm from the loopback
/// registry, which is then shut down), `cargo build --offline` and `npm ci --offline` inside
/// `airlock run --preset rust --preset node` succeed from them, with no registry reachable, and
/// the host caches are exactly as they were afterwards.
#[test]
fn offline_builds_use_the_warm_host_cache_and_leave_it_unchanged() {
    assert!(have("npm"), "npm is needed on PATH for this test");
    let tc = toolchain();
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", tc.display());
    let reg = Registry::start();
    let foo = crate_file("foo", "1.0.0", 7);
    reg.publish_crates(&[("foo", "1.0.0", &foo)]);
    let pkg = npm_package("leftish", "1.0.0", 42);
    reg.publish_npm("leftish", "1.0.0", &pkg);
    let home = Home::new(&reg, bin());
    // The project, in the workspace.
    let ws = home.ws();
    std::fs::create_dir_all(ws.join("src")).expect("src");
    std::fs::write(
        ws.join("Cargo.toml"),
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
         [dependencies]\nfoo = \"1.0.0\"\n[workspace]\n",
    )
    .expect("Cargo.toml");
    std::fs::write(
        ws.join("src/main.rs"),
        "fn main() { println!(\"answer={}\", foo::answer()); }\n",
    )
    .expect("main.rs");
    std::fs::create_dir_all(ws.join("app")).expect("app");
    std::fs::write(
        ws.join("app/package.json"),
        "{\"name\":\"app\",\"version\":\"0.0.0\",\"private\":true}",
    )
    .expect("package.json");
    // Warm the host caches with the user's own tools (outside any sandbox).
    let host = |cmd: &str| {
        let o = Command::new("sh")
            .args(["-c", cmd])
            .current_dir(ws)
            .env_clear()
            .env("HOME", home.path())
            .env("PATH", &path)
            .run();
        assert!(o.status.success(), "{cmd}: {}{}", stdout(&o), stderr(&o));
    };
    host("cargo fetch -q");
    host(
        "cd app && npm install --no-audit --no-fund leftish@1.0.0 >/dev/null && rm -r node_modules",
    );
    assert!(ws.join("Cargo.lock").is_file() && ws.join("app/package-lock.json").is_file());
    drop(reg);
    let cargo_before = snapshot(&home.path().join(".cargo"));
    let npm_before = snapshot(&home.path().join(".npm"));
    assert!(
        cargo_before.keys().any(|k| k.ends_with("foo-1.0.0.crate")),
        "the host cache is not warm: {cargo_before:?}"
    );
    // The toolchain's root (its lib/ too, not only the bin/ on PATH) is made visible the way a
    // user would for a toolchain outside their home.
    let policy = home.data().join("toolchain.toml");
    std::fs::write(
        &policy,
        format!(
            "[filesystem]\nread_only = [\"{}\"]\n",
            tc.parent().expect("toolchain root").display()
        ),
    )
    .expect("policy");
    let o = home
        .airlock()
        .env("PATH", &path)
        .args([
            "run", "--mode", "bind", "--preset", "rust", "--preset", "node", "--policy",
        ])
        .arg(&policy)
        .arg("--workspace")
        .arg(ws)
        .args([
            "--",
            "sh",
            "-c",
            "cargo build --offline -q && ./target/debug/app && \
             cd app && npm ci --offline --no-audit --no-fund >/dev/null && \
             node -e 'console.log(\"leftish=\" + require(\"leftish\"))'",
        ])
        .run();
    assert_eq!(
        stdout(&o).lines().collect::<Vec<_>>(),
        ["answer=7", "leftish=42"],
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    assert_eq!(snapshot(&home.path().join(".cargo")), cargo_before);
    assert_eq!(snapshot(&home.path().join(".npm")), npm_before);
    // The control: without the rust preset the warm cache is not there, and the same offline
    // build cannot find the crate.
    std::fs::remove_dir_all(ws.join("target")).expect("target");
    let o = home
        .airlock()
        .env("PATH", &path)
        .args(["run", "--mode", "bind", "--policy"])
        .arg(&policy)
        .arg("--workspace")
        .arg(ws)
        .args(["--", "sh", "-c", "cargo build --offline -q"])
        .run();
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("foo"), "{}", stderr(&o));
}

/// A registry whose certificate the host does not trust vouches for nothing: with the test CA
/// gone from `[tls] extra_roots`, a genuine crate is refused with the TLS error, and the host
/// cache is unchanged.
#[test]
fn an_unverified_registry_vouches_for_nothing() {
    let reg = Registry::start();
    let foo = crate_file("foo", "1.0.0", 1);
    reg.publish_crates(&[("foo", "1.0.0", &foo)]);
    let home = Home::new(&reg, bin());
    std::fs::write(home.path().join(".config/airlock/config.toml"), "").expect("config");
    let plant = home.ws().join("plant/registry/cache").join(CRATE_DIR);
    std::fs::create_dir_all(&plant).expect("plant");
    std::fs::write(plant.join("foo-1.0.0.crate"), &foo).expect("foo");
    let o = home.run(
        &["--preset", "rust"],
        "cp -a plant/. ~/.cargo/ && echo planted",
    );
    assert_eq!(stdout(&o).trim(), "planted", "{}", stderr(&o));
    let before = snapshot(&home.path().join(".cargo"));
    let (report, _) = home.promote(&home.last_session(), &[]);
    let (got, reason) = outcome(&report, "foo-1.0.0.crate");
    assert_eq!(got, "refused", "{reason}");
    assert!(reason.to_lowercase().contains("certificate"), "{reason}");
    assert_eq!(snapshot(&home.path().join(".cargo")), before);
}
