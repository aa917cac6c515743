//! `airlock run --backend podman-box --clone URL[#REF]`: `airlock serve` clones the workspace
//! in the box through its proxy, with the user's token swapped in there (docs/remote.md,
//! "Workspace from git").
//!
//! The git server is this test binary itself ([`git_server`], ignored unless started in a box):
//! smart HTTP (`git upload-pack --stateless-rpc`) over real TLS with a certificate of the
//! test's CA, answering 401 unless the request carries `Basic base64(x-access-token:TOKEN)`.
//! It must listen before the clone starts, in the box's own network namespace (the box has
//! only its loopback), so the tests build an image of their own from the box image
//! (`podman commit`, removed at the end) whose entrypoint starts it and then execs the box's
//! command (`airlock serve`, still the box's first process). The image holds the token only
//! as a SHA-256, so a search of the box for the token finds what airlock put there and nothing
//! the test did.

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{podman, ready, text, wait_box, Boxes, Ws, BOX_IMAGE};
use airlock_test_support::RunExt;

const HOST: &str = "git.clone.test";
const PORT: u16 = 8443;
const TOKEN_VAR: &str = "AIRLOCK_CLONE_TEST_TOKEN";

fn url() -> String {
    format!("https://{HOST}:{PORT}/repo.git")
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex_of(&sha2::Sha256::digest(b))
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn git_in(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .run();
    assert!(o.status.success(), "git {args:?}: {}", text(&o.stderr));
    text(&o.stdout).trim().to_string()
}

/// The repository the box clones (a bare one, served by [`git_server`]), the box image that
/// serves it, and the commits in it.
struct Fixture {
    tmp: tempfile::TempDir,
    image: String,
    main: String,
    feature: String,
    token: String,
}

impl Fixture {
    /// `big`: bytes of random content in one more file on `main` (for the size bound).
    fn new(big: usize) -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("airlock-clone-")
            .tempdir()
            .expect("tmp");
        let work = tmp.path().join("work");
        std::fs::create_dir(&work).expect("work");
        git_in(&work, &["init", "-q", "-b", "main"]);
        std::fs::write(work.join("a.txt"), "base\n").expect("a");
        std::fs::write(work.join("keep.txt"), "kept\n").expect("keep");
        if big > 0 {
            std::fs::write(
                work.join("big.txt"),
                airlock_test_support::random_alnum(big),
            )
            .expect("big");
        }
        git_in(&work, &["add", "."]);
        git_in(&work, &["commit", "-qm", "base"]);
        git_in(&work, &["tag", "v1"]);
        let main = git_in(&work, &["rev-parse", "HEAD"]);
        git_in(&work, &["switch", "-qc", "feature"]);
        std::fs::write(work.join("f.txt"), "feature\n").expect("f");
        git_in(&work, &["add", "."]);
        git_in(&work, &["commit", "-qm", "feature"]);
        let feature = git_in(&work, &["rev-parse", "HEAD"]);
        git_in(&work, &["switch", "-q", "main"]);
        let srv = tmp.path().join("srv");
        std::fs::create_dir(&srv).expect("srv");
        git_in(
            tmp.path(),
            &["clone", "-q", "--bare", "work", "srv/repo.git"],
        );
        let token = format!("gt{}", airlock_test_support::random_alnum(30));
        let ca = airlock_test_support::tls::TestCa::new("airlock clone test CA");
        let (leaf, key) = ca.leaf_pem(&[HOST]);
        let basic = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"))
        };
        for (f, c) in [
            ("leaf.pem", leaf.as_str()),
            ("key.pem", key.as_str()),
            ("ca.pem", ca.pem()),
            ("auth.sha256", &sha256_hex(basic.as_bytes())),
            (
                "start",
                "#!/bin/sh\nAIRLOCK_TEST_GIT_SERVER=/srv /srv/tests remote::clone::git_server \
                 --exact --ignored --test-threads=1 >/srv/server.log 2>&1 &\nexec \"$@\"\n",
            ),
        ] {
            std::fs::write(srv.join(f), c).expect("write");
        }
        let exe = std::env::current_exe().expect("test binary");
        let o = Command::new("objcopy")
            .arg("--strip-debug")
            .arg(&exe)
            .arg(srv.join("tests"))
            .run();
        assert!(o.status.success(), "objcopy: {}", text(&o.stderr));
        let o = Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(tmp.path())
            .run();
        assert!(o.status.success());
        Command::new("chmod")
            .arg("755")
            .arg(srv.join("start"))
            .run();
        let image = format!(
            "localhost/airlock-clonetest-{}",
            airlock_test_support::random_alnum(8).to_lowercase()
        );
        let ctr = format!(
            "airlock-clonetest-build-{}",
            airlock_test_support::random_alnum(8).to_lowercase()
        );
        let o = podman(&["create", "--name", &ctr, BOX_IMAGE, "/bin/true"]);
        assert!(o.status.success(), "create: {}", text(&o.stderr));
        let src = format!("{}/.", srv.display());
        let o = podman(&["cp", &src, &format!("{ctr}:/srv")]);
        let o2 = podman(&[
            "commit",
            "-q",
            "--change",
            "ENTRYPOINT [\"/srv/start\"]",
            &ctr,
            &image,
        ]);
        podman(&["rm", "-f", &ctr]);
        assert!(o.status.success(), "cp: {}", text(&o.stderr));
        assert!(o2.status.success(), "commit: {}", text(&o2.stderr));
        Fixture {
            tmp,
            image,
            main,
            feature,
            token,
        }
    }

    fn bare(&self) -> PathBuf {
        self.tmp.path().join("srv/repo.git")
    }

    /// A policy that allows the git host (pinned to the box's loopback) and, with `cred`, the
    /// token as a credential for it.
    fn policy(&self, ws: &Ws, cred: bool) -> PathBuf {
        let p = ws.data().join("clone-policy.toml");
        let mut t = format!(
            "[network]\nallow = [\"{HOST}\", \"unreachable.clone.test\"]\nallow_private = [\"127.0.0.1\"]\n\
             [network.resolve]\n\"{HOST}\" = \"127.0.0.1\"\n\"unreachable.clone.test\" = \"127.0.0.1\"\n\
             [network.ports]\n\"{HOST}\" = [{PORT}]\n\"unreachable.clone.test\" = [8444]\n\
             [tls]\nextra_roots = [\"/srv/ca.pem\"]\n"
        );
        if cred {
            t.push_str(&format!(
                "[[credentials]]\nname = \"gittoken\"\nenv = \"{TOKEN_VAR}\"\nhosts = [\"{HOST}\"]\n"
            ));
        }
        std::fs::write(&p, t).expect("policy");
        p
    }

    /// `airlock run --backend podman-box --clone ...` in `ws`, spawned.
    fn run(
        &self,
        ws: &Ws,
        clone: &str,
        token: &str,
        cred: bool,
        extra: &[&str],
        script: &str,
    ) -> std::process::Child {
        ws.airlock()
            .env(TOKEN_VAR, token)
            .args([
                "run",
                "--backend",
                "podman-box",
                "--image",
                &self.image,
                "--policy",
            ])
            .arg(self.policy(ws, cred))
            .args(["--clone", clone])
            .args(extra)
            .args(["--", "sh", "-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        super::remove_boxes();
        podman(&["rmi", "-f", &self.image]);
    }
}

/// What the box's git server recorded (`AUTH ok|bad|none METHOD PATH` per request).
fn seen(name: &str) -> String {
    text(&podman(&["exec", name, "cat", "/srv/seen"]).stdout)
}

/// The workspace: a clone of the same URL (made from the bare repository, then pointed at the
/// URL), checked out at main.
fn local_clone(fx: &Fixture) -> Ws {
    let ws = Ws::new();
    let o = Command::new("git")
        .arg("clone")
        .arg("-q")
        .arg(fx.bare())
        .arg(ws.path())
        .run();
    assert!(o.status.success(), "clone: {}", text(&o.stderr));
    git_in(ws.path(), &["remote", "set-url", "origin", &url()]);
    ws
}

fn session_id(ws: &Ws) -> String {
    let s = ws.sessions();
    assert_eq!(s.len(), 1, "{s:?}");
    s[0]["id"].as_str().expect("id").to_string()
}

/// The agent's part: what its clone looks like, a commit and an uncommitted file, then it waits
/// for the test (which searches the box meanwhile) through the git server's `/gate`.
const AGENT: &str = r#"
echo "REMOTE=$(git config --get remote.origin.url)"
echo "HEAD=$(git rev-parse HEAD)"
echo "CONFIG=$(tr '\n' ' ' < .git/config)"
echo "PLACEHOLDER=$AIRLOCK_CLONE_TEST_TOKEN"
echo agent > a.txt
git -c user.name=agent -c user.email=agent@test -c commit.gpgsign=false commit -qam "agent commit" && echo COMMITTED
echo wip > wip.txt
i=0; until curl -sf https://git.clone.test:8443/gate >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 900 ] && break; sleep 0.1; done
echo DONE
"#;

/// The whole path: the clone in the box carries the real token only at the git server, while
/// the box (its files, every process's environment, its `.git/config`, `podman inspect`) and
/// the audit log never hold it; the agent works on the clone at the asked ref; `diff` and
/// `merge` land its commit and its file in the local clone of the same URL, and refuse (naming
/// the fix) while that clone is at another commit or has no remote with the URL.
#[test]
fn a_cloned_workspace_never_holds_the_token_and_its_commits_land() {
    if !ready() {
        return;
    }
    let _l = airlock_test_support::podman_lock();
    let _boxes = Boxes::clean();
    let fx = Fixture::new(0);
    let ws = local_clone(&fx);
    let child = fx.run(&ws, &format!("{}#main", url()), &fx.token, true, &[], AGENT);
    let name = wait_box();
    // The clone is done once the agent runs; its commit is in the upper layer by then.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let o = podman(&[
            "exec",
            &name,
            "sh",
            "-c",
            "cat /var/lib/airlock/home/.local/share/airlock/sessions/*/upper/.git/HEAD 2>/dev/null",
        ]);
        if !text(&o.stdout).trim().is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let log = text(&podman(&["exec", &name, "cat", "/srv/server.log"]).stdout);
            let mut child = child;
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "the agent never committed; server: {}\nlog: {log}\nstdout: {}\nstderr: {}",
                seen(&name),
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The token's tail (never on a command line here) searched in every file of the box and
    // every process's environment.
    let tail = &fx.token[10..];
    let search = format!(
        r#"T="$(printf '{}' | sed 's/../\\x&/g' | xargs -0 printf)"
for d in /*; do case $d in /proc|/sys|/dev|/srv) ;; *) grep -rlF "$T" "$d" 2>/dev/null | sed 's/^/FOUND /';; esac; done
for p in /proc/[0-9]*; do grep -qF "$T" $p/environ 2>/dev/null && echo "ENVIRON $p $(tr '\0' ' ' < $p/cmdline)"; done
echo SEARCHED"#,
        hex_of(tail.as_bytes())
    );
    let o = podman(&["exec", &name, "sh", "-c", &search]);
    let found = text(&o.stdout);
    assert!(found.contains("SEARCHED"), "{found}{}", text(&o.stderr));
    let inspect = text(&podman(&["inspect", &name]).stdout);
    let server = seen(&name);
    podman(&["exec", &name, "touch", "/srv/go"]);
    let out = child.wait_with_output().expect("wait");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        !found.contains("FOUND") && !found.contains("ENVIRON"),
        "the token is in the box: {found}"
    );
    assert!(
        !inspect.contains(tail),
        "the token is in the box's configuration"
    );
    // The server got the real token (its hash matched) and nothing else.
    assert!(
        server.contains("AUTH ok POST /repo.git/git-upload-pack"),
        "{server}"
    );
    assert!(!server.contains("AUTH bad"), "{server}");
    // What the agent saw: the URL as given, the asked commit, a placeholder.
    let lines: Vec<&str> = stdout.lines().map(str::trim_end).collect();
    assert!(
        lines.contains(&format!("REMOTE={}", url()).as_str()),
        "{stdout}"
    );
    assert!(
        lines.contains(&format!("HEAD={}", fx.main).as_str()),
        "{stdout}"
    );
    assert!(
        stdout.contains("COMMITTED") && stdout.contains("DONE"),
        "{stdout}\n{stderr}"
    );
    assert!(
        !stdout.contains(tail) && !stderr.contains(tail),
        "{stdout}{stderr}"
    );
    let ph = lines
        .iter()
        .find_map(|l| l.strip_prefix("PLACEHOLDER="))
        .expect("placeholder");
    assert!(!ph.is_empty() && ph != fx.token, "{ph}");
    // Progress was shown as it came, and the commit named.
    assert!(stderr.contains("airlock: git: "), "{stderr}");
    assert!(
        stderr.contains(&format!("cloned {} at {}", url(), fx.main)),
        "{stderr}"
    );
    // The audit log came home with the clone's proxy events and no token.
    let id = session_id(&ws);
    let dir = ws.data().join("airlock/sessions").join(&id);
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).expect("audit");
    assert!(audit.contains(HOST), "{audit}");
    assert!(!audit.contains(tail), "the token is in the audit log");
    // diff and merge refuse a workspace at another commit, or without the URL as a remote.
    git_in(ws.path(), &["switch", "-q", "--detach", &fx.feature]);
    for verb in ["diff", "merge"] {
        let o = ws.airlock().args([verb, &id]).run();
        assert!(!o.status.success(), "{verb} at another commit");
        let e = text(&o.stderr);
        assert!(
            e.contains(&format!("not at {}", &fx.main[..12])) && e.contains("switch --detach"),
            "{e}"
        );
    }
    git_in(ws.path(), &["switch", "-q", "--detach", &fx.main]);
    git_in(
        ws.path(),
        &[
            "remote",
            "set-url",
            "origin",
            "https://elsewhere.test/other.git",
        ],
    );
    let o = ws.airlock().args(["merge", &id]).run();
    assert!(
        text(&o.stderr).contains("has no remote with that URL"),
        "{}",
        text(&o.stderr)
    );
    git_in(
        ws.path(),
        &[
            "remote",
            "set-url",
            "origin",
            &format!("https://x-access-token@{HOST}:{PORT}/repo"),
        ],
    );
    let o = ws.airlock().args(["diff", &id]).run();
    let d = text(&o.stdout);
    assert!(o.status.success(), "diff: {d}{}", text(&o.stderr));
    assert!(d.contains("agent commit") && d.contains("wip.txt"), "{d}");
    let o = ws.airlock().args(["merge", &id]).run();
    assert!(
        o.status.success(),
        "merge: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("wip.txt")).expect("wip"),
        "wip\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("a.txt")).expect("a"),
        "agent\n"
    );
    let branch = format!("airlock/{id}");
    let log = git_in(ws.path(), &["log", "--format=%s", &branch]);
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        ["agent commit", "base"],
        "{log}"
    );
    drop(fx);
    super::assert_no_box("after the session");
}

/// Runs a clone that must fail before the command starts; returns its stderr, and checks that
/// nothing was left (no box, no session row).
fn failing(fx: &Fixture, clone: &str, token: &str, cred: bool, extra: &[&str]) -> String {
    let ws = Ws::new();
    let child = fx.run(&ws, clone, token, cred, extra, "echo STARTED");
    let out = child.wait_with_output().expect("wait");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(125),
        "{clone}: stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(!stdout.contains("STARTED"), "{stdout}");
    assert!(
        ws.sessions().is_empty(),
        "a row was left: {:?}",
        ws.sessions()
    );
    super::assert_no_box(clone);
    assert!(!stderr.contains(&fx.token[10..]), "{stderr}");
    stderr
}

/// Each way a clone goes wrong in the box fails the session before its command starts, names
/// the host, the credential, the ref or the bound, and leaves nothing: a token the server
/// refuses, no credential for a host that asks for one, a missing ref, an allowed host where
/// nothing listens, a repository over `--clone-max-size`. A tag and a branch other than the
/// default are checked out as asked.
#[test]
fn a_clone_that_fails_names_the_cause_and_leaves_nothing() {
    if !ready() {
        return;
    }
    let _l = airlock_test_support::podman_lock();
    let _boxes = Boxes::clean();
    let fx = Fixture::new(300_000);
    let wrong = format!("gt{}", airlock_test_support::random_alnum(30));
    let e = failing(&fx, &url(), &wrong, true, &[]);
    assert!(
        e.contains(&format!("{HOST}:{PORT} refused the credential gittoken")),
        "{e}"
    );
    assert!(!e.contains(&wrong[10..]), "{e}");
    let e = failing(&fx, &url(), &fx.token, false, &[]);
    assert!(
        e.contains("no [[credentials]] entry covers git.clone.test"),
        "{e}"
    );
    let e = failing(&fx, &format!("{}#nosuch", url()), &fx.token, true, &[]);
    assert!(
        e.contains("no branch, tag or commit \"nosuch\"") && e.contains("feature"),
        "{e}"
    );
    let e = failing(
        &fx,
        "https://unreachable.clone.test:8444/repo.git",
        &fx.token,
        true,
        &[],
    );
    assert!(
        e.contains("unreachable.clone.test:8444 could not be reached"),
        "{e}"
    );
    let e = failing(&fx, &url(), &fx.token, true, &["--clone-max-size", "100K"]);
    assert!(
        e.contains("passed the bound of 102400 bytes") && e.contains("--clone-max-size"),
        "{e}"
    );
    for (rev, want) in [("feature", fx.feature.clone()), ("v1", fx.main.clone())] {
        let ws = Ws::new();
        let child = fx.run(
            &ws,
            &format!("{}#{rev}", url()),
            &fx.token,
            true,
            &[],
            "echo HEAD=$(git rev-parse HEAD)",
        );
        let out = child.wait_with_output().expect("wait");
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains(&format!("HEAD={want}")),
            "{rev}: {stdout}{}",
            text(&out.stderr)
        );
    }
    drop(fx);
    super::assert_no_box("after the failures");
}

/// Refused before anything is created (no Podman needed): a token in the URL (as password, as
/// username, with a ref), ssh (both spellings), git://, plain http, a host the policy does not
/// allow (naming it and the setting), `--clone` without a remote backend. `--dry-run` shows the
/// clone in the box's spec.
#[test]
fn clone_addresses_are_checked_before_anything_is_created() {
    let ws = Ws::new();
    let policy = ws.data().join("p.toml");
    std::fs::write(&policy, "[network]\nallow = [\"github.com\"]\n").expect("policy");
    let secret = "ghp_0123456789abcdefTOKENTAIL";
    for (addr, want) in [
        (
            format!("https://user:{secret}@github.com/me/app.git"),
            "use a credential",
        ),
        (
            format!("https://{secret}@github.com/me/app.git"),
            "credential",
        ),
        (
            format!("https://x-access-token:{secret}@github.com/me/app.git#main"),
            "credential",
        ),
        ("ssh://git@github.com/me/app.git".into(), "ssh is refused"),
        ("git@github.com:me/app.git".into(), "SSH address"),
        ("git://github.com/me/app.git".into(), "git:// is refused"),
        (
            "http://github.com/me/app.git".into(),
            "plain http is refused",
        ),
        (
            "https://gitlab.com/me/app.git".into(),
            "gitlab.com is not in the allow list",
        ),
        (
            "https://github.com:8443/me/app.git".into(),
            "port 8443 is not allowed",
        ),
    ] {
        let o = ws
            .airlock()
            .args(["run", "--backend", "podman-box", "--policy"])
            .arg(&policy)
            .args(["--clone", &addr, "--", "true"])
            .run();
        let e = text(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{addr}: {e}");
        assert!(
            e.contains(want) || (want == "use a credential" && e.contains("credentials")),
            "{addr}: {e}"
        );
        assert!(!e.contains("TOKENTAIL"), "the token is echoed: {e}");
    }
    let o = ws
        .airlock()
        .args([
            "run",
            "--clone",
            "https://github.com/me/app.git",
            "--",
            "true",
        ])
        .run();
    assert!(
        text(&o.stderr).contains("--clone is for the remote backends"),
        "{}",
        text(&o.stderr)
    );
    let o = ws
        .airlock()
        .args(["run", "--backend", "podman-box", "--dry-run", "--policy"])
        .arg(&policy)
        .args(["--clone", "https://github.com/me/app.git#v2", "--", "true"])
        .run();
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{out}{err}");
    assert!(
        err.contains("would clone https://github.com/me/app.git at v2"),
        "{err}"
    );
    // The spec travels JSON-in-JSON (the box's environment): the clone is in it.
    assert!(
        out.contains(r#"\"kind\":\"git\""#) && out.contains(r#"\"rev\":\"v2\""#),
        "{out}"
    );
    assert!(ws.sessions().is_empty());
}

/// The git server the clone tests run inside a box (started by the box image's entrypoint with
/// `AIRLOCK_TEST_GIT_SERVER=/srv`); does nothing elsewhere.
#[test]
#[ignore = "the clone tests' git server, started inside a box"]
fn git_server() {
    let Some(dir) = std::env::var_os("AIRLOCK_TEST_GIT_SERVER") else {
        return;
    };
    serve_git(Path::new(&dir));
}

fn serve_git(dir: &Path) {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("leaf.pem"))
        .expect("leaf")
        .map(|c| c.expect("cert"))
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).expect("key");
    let config = std::sync::Arc::new(
        rustls::ServerConfig::builder_with_provider(airlock_test_support::upstream::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("config"),
    );
    let want = std::fs::read_to_string(dir.join("auth.sha256"))
        .expect("auth")
        .trim()
        .to_string();
    let listener = std::net::TcpListener::bind(("127.0.0.1", PORT)).expect("bind");
    for conn in listener.incoming().flatten() {
        let (config, want, dir) = (config.clone(), want.clone(), dir.to_path_buf());
        std::thread::spawn(move || {
            let Ok(tls) = rustls::ServerConnection::new(config) else {
                return;
            };
            let mut s = rustls::StreamOwned::new(tls, conn);
            let _ = answer(&mut s, &want, &dir);
            s.conn.send_close_notify();
            let _ = s.flush();
        });
    }
}

/// One request: the head, the body (Content-Length or chunked, gzip undone), the answer.
fn answer<S: std::io::Read + std::io::Write>(
    s: &mut S,
    want: &str,
    dir: &Path,
) -> std::io::Result<()> {
    let mut r = std::io::BufReader::new(&mut *s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    if header("content-encoding").is_some_and(|v| v == "gzip") {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain)?;
        body = plain;
    }
    drop(r);
    let path = target.split('?').next().unwrap_or("").to_string();
    if path == "/gate" {
        let ok = dir.join("go").exists();
        return respond(
            s,
            if ok { "200 OK" } else { "404 Not Found" },
            "text/plain",
            b"",
        );
    }
    let auth =
        match header("authorization").and_then(|v| v.strip_prefix("Basic ").map(str::to_string)) {
            Some(b) if sha256_hex(b.trim().as_bytes()) == want => "ok",
            Some(_) => "bad",
            None => "none",
        };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("seen"))
    {
        let _ = writeln!(f, "AUTH {auth} {method} {path}");
    }
    if auth != "ok" {
        let head = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        return s.write_all(head.as_bytes());
    }
    let repo = dir.join("repo.git");
    let upload_pack = |args: &[&str], input: &[u8]| -> Vec<u8> {
        let mut c = Command::new("git")
            .arg("upload-pack")
            .args(args)
            .arg(&repo)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("upload-pack");
        let mut stdin = c.stdin.take().expect("stdin");
        let input = input.to_vec();
        let w = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = c.wait_with_output().expect("upload-pack").stdout;
        let _ = w.join();
        out
    };
    match (method.as_str(), path.as_str()) {
        ("GET", "/repo.git/info/refs") if target.contains("service=git-upload-pack") => {
            let mut b = b"001e# service=git-upload-pack\n0000".to_vec();
            b.extend(upload_pack(&["--stateless-rpc", "--advertise-refs"], b""));
            respond(
                s,
                "200 OK",
                "application/x-git-upload-pack-advertisement",
                &b,
            )
        }
        ("POST", "/repo.git/git-upload-pack") => {
            let b = upload_pack(&["--stateless-rpc"], &body);
            respond(s, "200 OK", "application/x-git-upload-pack-result", &b)
        }
        _ => respond(s, "404 Not Found", "text/plain", b"no such repository\n"),
    }
}

fn respond(
    s: &mut impl std::io::Write,
    status: &str,
    ctype: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nCache-Control: no-cache\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    s.flush()
}
