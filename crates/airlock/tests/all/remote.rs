//! `airlock run --backend podman-box`: `airlock serve` for real, as the first process of a
//! local Podman container (the remote path of docs/remote.md on this machine), rootful as root
//! and rootless as an unprivileged user (scripts/test.sh re-runs this module as one). Needs the
//! box image scripts/container-setup.sh builds (`localhost/airlock-box`: busybox, tmux, git,
//! curl, openssl, user `airlock`); a host without Podman skips with the reason printed.
//!
//! The upstream servers live in the box's own network namespace (the box has `--network none`:
//! only its loopback): the tests start them there with `podman exec` once the box exists, and
//! the agent's command waits for them. The agent, in the native sandbox inside the box, has a
//! loopback of its own, so it reaches them only through `airlock serve`'s proxy.
//!
//! The tests run one at a time (a lock): the "nothing left behind" checks look at every box.

use std::io::Write as _;
use std::path::Path;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BOX_IMAGE: &str = "localhost/airlock-box:latest";
const BOX_LABEL: &str = "airlock.box";

use crate::bin;

mod clone;
use airlock_test_support::{is_root, Run, RunExt, Workspace};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn podman(args: &[&str]) -> Run {
    Command::new("podman")
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .run()
}

fn podman_in(args: &[&str], input: &[u8]) -> Run {
    let mut cmd = Command::new("podman");
    cmd.args(args)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let command = airlock_test_support::run::describe(&cmd);
    let mut c = cmd.spawn().expect("podman");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write");
    Run::new(command, c.wait_with_output().expect("podman"))
}

/// Whether this host can run the tests; panics when Podman is there but not set up.
fn ready() -> bool {
    let Ok(o) = Command::new("podman")
        .args(["image", "exists", BOX_IMAGE])
        .current_dir("/")
        .output()
    else {
        airlock_test_support::skip(
            "podman is not installed (scripts/container-setup.sh installs it)",
        );
        return false;
    };
    assert!(
        o.status.success(),
        "podman has no image {BOX_IMAGE}: run scripts/container-setup.sh (as root) first; {}",
        text(&o.stderr)
    );
    true
}

/// The boxes that exist (names).
fn boxes() -> Vec<String> {
    let o = podman(&[
        "ps",
        "-a",
        "--filter",
        &format!("label={BOX_LABEL}"),
        "--format",
        "{{.Names}}",
    ]);
    text(&o.stdout).lines().map(String::from).collect()
}

/// Waits for the one box of the running test to run.
fn wait_box() -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = podman(&[
            "ps",
            "--filter",
            &format!("label={BOX_LABEL}"),
            "--filter",
            "status=running",
            "--format",
            "{{.Names}}",
        ]);
        if let Some(b) = text(&o.stdout).lines().next() {
            return b.to_string();
        }
        assert!(Instant::now() < deadline, "no box appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_no_box(what: &str) {
    let left = boxes();
    assert!(left.is_empty(), "{what}: boxes left behind: {left:?}");
}

/// Removes every box, now and when dropped (a failed test must not leave its box to the next).
struct Boxes;

impl Boxes {
    fn clean() -> Boxes {
        remove_boxes();
        Boxes
    }
}

impl Drop for Boxes {
    fn drop(&mut self) {
        remove_boxes();
    }
}

fn remove_boxes() {
    for b in boxes() {
        podman(&["rm", "-f", "-t", "0", &b]);
    }
}

/// The test's workspace and session store ([`Workspace`]), with this module's helpers.
struct Ws(Workspace);

impl std::ops::Deref for Ws {
    type Target = Workspace;

    fn deref(&self) -> &Workspace {
        &self.0
    }
}

impl Ws {
    fn new() -> Ws {
        Ws(Workspace::with_container_store("airlock-box"))
    }

    fn airlock(&self) -> Command {
        self.command(&bin())
    }

    fn git(&self, args: &[&str]) {
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
            .current_dir(self.path())
            .run();
        assert!(o.status.success(), "git {args:?}: {}", text(&o.stderr));
    }

    fn sessions(&self) -> Vec<serde_json::Value> {
        let o = self.airlock().args(["ls", "--all", "--json"]).run();
        serde_json::from_slice(&o.stdout).expect("ls --json")
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The agent's script: egress allowed and denied through the box's proxy, the credential swap,
/// the escape battery (every probe must be blocked), the namespaces it is in, then changes.
fn agent_script(prefix: &str, tail: &str) -> String {
    format!(
        r#"
P=/run/airlock/bin/airlock
gate() {{ i=0; until wget -q -O- http://web.test:8080/$1 >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 600 ] && break; sleep 0.1; done; }}
gate go
# The secret's tail (never printed, never in this script) anywhere the agent can read.
T="$(printf '{tail_hex}' | sed 's/../\\x&/g' | xargs -0 printf)"
for d in /*; do case $d in /proc|/sys|/dev) ;; *) for f in $(grep -rlF "$T" "$d" 2>/dev/null); do echo "FOUND $f"; done;; esac; done
echo "ALLOWED=$(wget -q -O- http://web.test:8080/airlock-box)"
wget -q -O- http://other.test:8080/airlock-box >/dev/null 2>&1; echo "DENIED=$?"
echo "TOKEN=$AIRLOCK_REMOTE_TEST_TOKEN"
echo "SWAP=$(curl -sS --max-time 30 -H "Authorization: Bearer $AIRLOCK_REMOTE_TEST_TOKEN" https://web.test:8443/x 2>&1)"
gate read
probe() {{ $P __probe "$@" >/dev/null 2>&1; echo "PROBE $? $*"; }}
probe read-file /run/airlock/secrets/demo {prefix}
probe read-file /run/airlock-supervisor/demo {prefix}
probe read-file /run/airlock-supervisor/policy.json {prefix}
probe env {prefix}
probe secret-bytes {tail_hex}
probe connect 127.0.0.1:8080
probe connect 127.0.0.1:8443
probe unix /run/airlock/serve.sock
probe hostname evil
probe mount /tmp/m
probe ptrace
probe syscall bpf
probe syscall keyctl
probe write-file /usr/local/bin/airlock
probe write-file /etc/passwd
for n in net pid mnt user; do echo "NS $n $(readlink /proc/self/ns/$n)"; done
echo changed > a.txt; rm del.txt; mkdir -p d; echo new > d/new.txt
exit 7
"#,
        tail_hex = hex(tail)
    )
}

/// Serves, in the box's own network namespace, `/etc/airlock-box` over HTTP on 8080 and a TLS
/// upstream on 8443 (certificate of `ca` for web.test) that records each request in /srv/seen
/// and answers with `echo` (which holds the real secret: the proxy must scrub it).
fn start_upstreams(name: &str, ca: &airlock_test_support::tls::TestCa, echo: &str) {
    let (leaf, key) = ca.leaf_pem(&["web.test"]);
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{echo}",
        echo.len()
    );
    for (file, content) in [("leaf.pem", &leaf), ("key.pem", &key), ("resp", &resp)] {
        let o = podman_in(
            &[
                "exec",
                "-i",
                name,
                "sh",
                "-c",
                &format!("mkdir -p /srv && cat > /srv/{file}"),
            ],
            content.as_bytes(),
        );
        assert!(o.status.success(), "{file}: {}", text(&o.stderr));
    }
    let o = podman(&[
        "exec",
        "-d",
        name,
        "sh",
        "-c",
        // s_server writes what it reads unbuffered, and sends its stdin: answer once the
        // request is in, so it is read before the connection closes.
        "while :; do rm -f /srv/req; \
         (until grep -qi '^authorization' /srv/req 2>/dev/null; do sleep 0.05; done; cat /srv/resp) \
         | openssl s_server -accept 127.0.0.1:8443 -cert /srv/leaf.pem -key /srv/key.pem \
           -quiet -naccept 1 > /srv/req 2>/dev/null; cat /srv/req >> /srv/seen; done",
    ]);
    assert!(o.status.success(), "s_server: {}", text(&o.stderr));
    // Last; the agent starts once /srv/go exists (the test's controls come first).
    let o = podman(&[
        "exec",
        name,
        "sh",
        "-c",
        "cp /etc/airlock-box /srv/ && busybox httpd -p 127.0.0.1:8080 -h /srv",
    ]);
    assert!(o.status.success(), "httpd: {}", text(&o.stderr));
}

/// The box's view of a namespace (its first process, `airlock serve`).
fn box_ns(name: &str, kind: &str) -> String {
    let o = podman(&["exec", name, "readlink", &format!("/proc/1/ns/{kind}")]);
    text(&o.stdout).trim().to_string()
}

/// One session through the whole remote path: the agent in the box's sandbox reaches an allowed
/// host and not a denied one, only through the proxy; its credential works at the upstream
/// while it holds only a placeholder (and the echoed secret is scrubbed); every escape probe is
/// blocked while its control (the same probe in the box, outside the sandbox) gets through; its
/// namespaces are its own; its exit status, output and changes come home, `diff` and `merge`
/// work as for a local session, and the box is gone afterwards.
#[test]
fn a_box_session_is_confined_and_its_changes_come_home() {
    if !ready() {
        return;
    }
    let _l = airlock_test_support::podman_lock();
    let _boxes = Boxes::clean();
    let ws = Ws::new();
    std::fs::write(ws.path().join("a.txt"), "base\n").expect("a");
    std::fs::write(ws.path().join("del.txt"), "gone\n").expect("del");
    let ca = airlock_test_support::tls::TestCa::new("airlock remote test CA");
    std::fs::write(ws.path().join("ca.pem"), ca.pem()).expect("ca");
    ws.git(&["init", "-q"]);
    ws.git(&["add", "."]);
    ws.git(&["commit", "-qm", "base"]);
    let secret = format!("rt{}", airlock_test_support::random_alnum(24));
    let (prefix, tail) = (&secret[..10], &secret[10..]);
    let policy = ws.data().join("policy.toml");
    std::fs::write(
        &policy,
        r#"
[network]
allow = ["web.test"]
allow_private = ["127.0.0.1"]
[network.resolve]
"web.test" = "127.0.0.1"
"other.test" = "127.0.0.1"
[network.ports]
"web.test" = [8080, 8443]
"other.test" = [8080]
[tls]
extra_roots = ["/workspace/ca.pem"]
[[credentials]]
name = "demo"
env = "AIRLOCK_REMOTE_TEST_TOKEN"
hosts = ["web.test"]
"#,
    )
    .expect("policy");
    let child = ws
        .airlock()
        .env("AIRLOCK_REMOTE_TEST_TOKEN", &secret)
        .args(["run", "--backend", "podman-box", "--policy"])
        .arg(&policy)
        .args(["--", "sh", "-c", &agent_script(prefix, tail)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let name = wait_box();
    start_upstreams(&name, &ca, &format!("echo={secret}\n"));
    // Controls: outside the sandbox (root in the box) the same probes get through (serve
    // removes the secret files once read: the control reads a root-only file of its own).
    podman(&[
        "exec",
        &name,
        "sh",
        "-c",
        &format!("umask 077; echo {prefix} > /run/airlock/control"),
    ]);
    for probe in [
        vec!["read-file", "/run/airlock/control", prefix],
        vec!["connect", "127.0.0.1:8080"],
    ] {
        let mut args = vec!["exec", name.as_str(), "/usr/local/bin/airlock", "__probe"];
        args.extend(probe.iter().copied());
        let o = podman(&args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "control {probe:?}: {}",
            text(&o.stdout)
        );
    }
    let namespaces: Vec<(&str, String)> = ["net", "pid", "mnt", "user"]
        .into_iter()
        .map(|k| (k, box_ns(&name, k)))
        .collect();
    podman(&["exec", &name, "touch", "/srv/go"]);
    // What the upstream received (read before the box is deleted: the agent waits for
    // /srv/seen to go on).
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let o = podman(&[
            "exec",
            &name,
            "sh",
            "-c",
            "cat /srv/seen /srv/req 2>/dev/null",
        ]);
        let s = text(&o.stdout);
        if s.to_ascii_lowercase().contains("authorization") || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    podman(&["exec", &name, "touch", "/srv/read"]);
    let out = child.wait_with_output().expect("wait");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(7),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("ALLOWED=airlock-box recipe"), "{stdout}");
    assert!(stdout.contains("DENIED=1"), "{stdout}");
    assert!(
        seen.to_ascii_lowercase().contains(&format!(
            "authorization: bearer {}",
            secret.to_ascii_lowercase()
        )),
        "the upstream did not get the real secret: {seen}\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("SWAP=echo="), "{stdout}");
    assert!(
        !stdout.contains(tail) && !stderr.contains(tail),
        "the secret reached the agent: {stdout}"
    );
    let token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("TOKEN="))
        .expect("TOKEN");
    assert!(!token.is_empty() && token != secret, "placeholder: {token}");
    assert!(
        !stdout.contains("FOUND "),
        "the secret is readable inside: {stdout}"
    );
    let probes: Vec<&str> = stdout.lines().filter(|l| l.starts_with("PROBE ")).collect();
    assert_eq!(probes.len(), 15, "{stdout}");
    for p in probes {
        assert!(
            p.starts_with("PROBE 1 "),
            "got through (0) or failed (2): {p}"
        );
    }
    for (kind, outer) in namespaces {
        let inner = stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("NS {kind} ")))
            .expect("ns line");
        assert!(
            !outer.is_empty() && inner != outer,
            "{kind}: {inner} is the box's {outer}"
        );
    }
    assert_no_box("after the session");
    // The session row: backend and where it ran; its changes reviewable and mergeable.
    let rows = ws.sessions();
    let row = rows.first().expect("a session");
    assert_eq!(row["backend"], "podman-box", "{row}");
    assert_eq!(row["location"], format!("podman:{name}"), "{row}");
    let id = row["id"].as_str().expect("id").to_string();
    let diff = ws.airlock().args(["diff", &id]).run();
    let d = text(&diff.stdout);
    for f in ["a.txt", "del.txt", "d/new.txt"] {
        assert!(d.contains(f), "diff misses {f}: {d}");
    }
    let m = ws.airlock().args(["merge", &id]).run();
    assert!(m.status.success(), "merge: {}", text(&m.stderr));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("a.txt")).expect("a"),
        "changed\n"
    );
    assert!(!ws.path().join("del.txt").exists());
    assert_eq!(
        std::fs::read_to_string(ws.path().join("d/new.txt")).expect("new"),
        "new\n"
    );
    let audit = ws.airlock().args(["audit", &id, "--json"]).run();
    assert!(
        text(&audit.stdout).contains("other.test"),
        "the box's audit log came home with the denial: {}",
        text(&audit.stdout)
    );
}

/// `--dry-run` prints the box's container request and touches nothing: no box, no session, no
/// secret in it.
#[test]
fn dry_run_renders_the_box_and_creates_nothing() {
    if !ready() {
        return;
    }
    let _l = airlock_test_support::podman_lock();
    let _boxes = Boxes::clean();
    let ws = Ws::new();
    let policy = ws.data().join("policy.toml");
    std::fs::write(
        &policy,
        "[[credentials]]\nname = \"demo\"\nenv = \"AIRLOCK_REMOTE_TEST_TOKEN\"\nhosts = [\"web.test\"]\n",
    )
    .expect("policy");
    let secret = format!("rt{}", airlock_test_support::random_alnum(24));
    let o = ws
        .airlock()
        .env("AIRLOCK_REMOTE_TEST_TOKEN", &secret)
        .args(["run", "--backend", "podman-box", "--dry-run", "--policy"])
        .arg(&policy)
        .args(["--", "true"])
        .run();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(!out.contains(&secret), "the secret is in the rendering");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let host = &v["container"]["HostConfig"];
    assert_eq!(host["NetworkMode"], "none", "{host}");
    assert_eq!(host["CapDrop"][0], "ALL", "{host}");
    assert_eq!(v["secrets"]["names"][0], "demo", "{v}");
    assert!(ws.sessions().is_empty(), "a dry run recorded a session");
    assert_no_box("after a dry run");
}

/// `--dry-run` of the Kubernetes and Fly engines through the real binary, with no cluster and
/// no token: the k8s output parses back into k8s-openapi types, the Pod passes the Pod Security
/// Standard "restricted" checks, the namespace and context flags reach it; the Fly output is
/// the Machines API's create body; neither holds the secret; a k8s run without an image is
/// refused with the fix; the other engine's flags are refused.
#[test]
fn dry_runs_of_the_cluster_engines_need_no_engine_and_hold_no_secret() {
    let ws = Ws::new();
    let policy = ws.data().join("policy.toml");
    std::fs::write(
        &policy,
        "[[credentials]]\nname = \"demo\"\nenv = \"AIRLOCK_REMOTE_TEST_TOKEN\"\nhosts = [\"web.test\"]\n",
    )
    .expect("policy");
    let secret = format!("rt{}", airlock_test_support::random_alnum(24));
    let dry = |args: &[&str]| {
        ws.airlock()
            .env("AIRLOCK_REMOTE_TEST_TOKEN", &secret)
            .env("KUBECONFIG", ws.data().join("no-kubeconfig"))
            .env_remove("FLY_API_TOKEN")
            .args(["run", "--dry-run", "--policy"])
            .arg(&policy)
            .args(args)
            .args(["--", "true"])
            .run()
    };
    let o = dry(&[
        "--backend",
        "k8s",
        "--image",
        "registry.example/airlock:1",
        "--namespace",
        "agents",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(!out.contains(&secret), "the secret is in the k8s rendering");
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&out)
        .map(|d| serde::Deserialize::deserialize(d).expect("a YAML document"))
        .collect();
    let kinds: Vec<_> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["NetworkPolicy", "Secret", "Pod"], "{out}");
    let pod: k8s_openapi::api::core::v1::Pod =
        serde_yaml::from_value(docs[2].clone()).expect("a Pod");
    assert_eq!(pod.metadata.namespace.as_deref(), Some("agents"));
    let spec = pod.spec.expect("pod spec");
    assert_eq!(
        spec.containers[0].image.as_deref(),
        Some("registry.example/airlock:1")
    );
    let violations = airlock_k8s::pss::check(&spec, &pod.metadata.annotations.unwrap_or_default());
    assert!(violations.is_empty(), "restricted profile: {violations:?}");
    // Without the credential's variable here: rendered by name (a dry run reads no secret).
    let o = ws
        .airlock()
        .env_remove("AIRLOCK_REMOTE_TEST_TOKEN")
        .args(["run", "--dry-run", "--policy"])
        .arg(&policy)
        .args(["--backend", "k8s", "--image", "registry.example/airlock:1"])
        .args(["--", "true"])
        .output()
        .expect("dry run");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("credential demo") && text(&o.stderr).contains("by name"),
        "{}",
        text(&o.stderr)
    );
    let secret_doc = serde_yaml::Deserializer::from_str(&text(&o.stdout))
        .map(|d| <serde_yaml::Value as serde::Deserialize>::deserialize(d).expect("YAML"))
        .find(|d| d["kind"] == "Secret")
        .expect("a Secret");
    assert!(
        secret_doc["stringData"]["demo"].is_string(),
        "the secret is not referenced: {secret_doc:?}"
    );
    let o = dry(&["--backend", "k8s"]);
    o.assert_code(125);
    assert!(text(&o.stderr).contains("--image"), "{}", text(&o.stderr));
    let o = dry(&[
        "--backend",
        "fly",
        "--fly-app",
        "my-app",
        "--fly-region",
        "ams",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(!out.contains(&secret), "the secret is in the Fly rendering");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["region"], "ams", "{v}");
    assert_eq!(v["config"]["restart"]["policy"], "no", "{v}");
    assert_eq!(v["config"]["auto_destroy"], true, "{v}");
    let env = v["config"]["env"].as_object().expect("env");
    assert_eq!(env.keys().collect::<Vec<_>>(), ["AIRLOCK_BOX_SPEC"], "{v}");
    // `--keep` of a machine that destroys itself is refused, naming the mode that keeps it.
    let o = dry(&["--backend", "fly", "--fly-app", "my-app", "--keep"]);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("--fly-mode standby"),
        "{}",
        text(&o.stderr)
    );
    let o = dry(&[
        "--backend",
        "fly",
        "--fly-app",
        "my-app",
        "--keep",
        "--fly-mode",
        "standby",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for (flags, engine) in [
        (
            &["--backend", "fly", "--fly-app", "a", "--namespace", "x"][..],
            "k8s",
        ),
        (
            &["--backend", "k8s", "--image", "i", "--fly-app", "a"][..],
            "fly",
        ),
        (&["--fly-region", "ams"][..], "fly"),
    ] {
        let o = dry(flags);
        assert_eq!(o.status.code(), Some(125), "{flags:?}");
        assert!(
            text(&o.stderr).contains(&format!("is for --backend {engine}")),
            "{flags:?}: {}",
            text(&o.stderr)
        );
    }
    assert!(ws.sessions().is_empty(), "a dry run recorded a session");
}

/// A box whose session cannot start (an image without the user `airlock`) fails closed: the
/// command never runs, the error says why, and the box is deleted; an image that does not exist
/// fails before anything is left.
#[test]
fn a_failure_after_create_leaves_no_box() {
    if !ready() {
        return;
    }
    let _l = airlock_test_support::podman_lock();
    let _boxes = Boxes::clean();
    let ws = Ws::new();
    std::fs::write(ws.path().join("a.txt"), "base\n").expect("a");
    for (image, why) in [
        // No libc for airlock, no user `airlock`: serve never answers.
        (
            "localhost/airlock-test-busybox:latest",
            "airlock serve did not answer",
        ),
        // Named with the engine and what to run; not bollard's "Docker responded", not a
        // script of airlock's source tree.
        (
            "localhost/airlock-no-such-image:latest",
            "podman-box: image/localhost/airlock-no-such-image:latest: not in",
        ),
    ] {
        let o = ws
            .airlock()
            .args(["run", "--backend", "podman-box", "--image", image])
            .args(["--", "sh", "-c", "touch STARTED"])
            .run();
        assert_eq!(o.status.code(), Some(125), "{image}: {}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains(why),
            "{image}: {}",
            text(&o.stderr)
        );
        for wrong in ["Docker", "scripts/"] {
            assert!(
                !text(&o.stderr).contains(wrong),
                "{image}: {}",
                text(&o.stderr)
            );
        }
        assert_no_box(image);
        assert!(!ws.path().join("STARTED").exists());
    }
    // The same for a local session whose sandbox could not be set up (the container backend
    // with an image its engine does not have).
    let o = ws
        .airlock()
        .args(["run", "--backend", "podman", "--image"])
        .arg("localhost/airlock-no-such-image:latest")
        .args(["--", "sh", "-c", "touch STARTED"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(125), "{}", text(&o.stderr));
    assert!(!ws.path().join("STARTED").exists());
    // Sessions that never started leave no `failed (125)` rows behind (the error was the
    // whole record), nor their directories.
    let rows = ws.sessions();
    assert!(rows.is_empty(), "sessions: {rows:?}");
    let sessions = ws.data().join("airlock/sessions");
    let left: Vec<_> = std::fs::read_dir(&sessions)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "session directories left: {left:?}");
}

/// A raw tar entry, its name written straight into the header (as a hostile client would).
fn raw_entry(name: &str, kind: u8, link: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[329..337].copy_from_slice(b"0000010\0"); // devmajor 8 (a block device's)
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// The box's spec for `run`'s arguments, from its dry run (to start a box by hand).
fn spec_of(ws: &Ws) -> String {
    spec_for(ws, "touch /tmp/STARTED")
}

/// The box's spec for `sh -c SCRIPT`, from its dry run.
fn spec_for(ws: &Ws, script: &str) -> String {
    let o = ws
        .airlock()
        .args([
            "run",
            "--backend",
            "podman-box",
            "--dry-run",
            "--",
            "sh",
            "-c",
            script,
        ])
        .run();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    v["container"]["Env"][0].as_str().expect("env").to_string()
}

/// The container settings the nested native sandbox needs (docs/remote.md).
const FULL_SETTINGS: &[&str] = &[
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "unmask=/proc/*",
    "--tmpfs",
    "/var/lib/airlock:rw,mode=755",
    "--tmpfs",
    "/workspace:rw,mode=755",
];

/// Starts a box by hand (`airlock serve` with the spec `env`, the airlock binary mounted) with
/// `settings`; returns once its supervisor answers.
fn start_box(name: &str, env: &str, airlock: &str, settings: &[&str]) {
    let label = format!("{BOX_LABEL}=test");
    let mount = format!("{airlock}:/usr/local/bin/airlock:ro");
    let mut args = vec![
        "run",
        "-d",
        "--name",
        name,
        "--label",
        &label,
        "-e",
        env,
        "-v",
        &mount,
        "--network",
        "none",
    ];
    args.extend_from_slice(settings);
    args.extend_from_slice(&[BOX_IMAGE, "/usr/local/bin/airlock", "serve"]);
    let o = podman(&args);
    assert!(o.status.success(), "{name}: {}", text(&o.stderr));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !podman(&["exec", name, "airlock", "serve", "ctl", "status"])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "{name}: serve did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A box without one of the settings the nested sandbox needs fails closed: the command never
/// starts, and the status names the setting to change.
#[test]
fn a_box_that_cannot_nest_the_sandbox_fails_closed_naming_the_setting() {
    if !ready() {
        return;
    }
    let _l = airlock_test_support::podman_lock();
    let _boxes = Boxes::clean();
    let ws = Ws::new();
    let env = spec_of(&ws);
    let airlock = bin().display().to_string();
    let tmpfs = &FULL_SETTINGS[4..];
    let no_seccomp: Vec<&str> = [&FULL_SETTINGS[2..4], tmpfs].concat();
    let no_unmask: Vec<&str> = [&FULL_SETTINGS[..2], tmpfs].concat();
    let no_tmpfs: Vec<&str> = FULL_SETTINGS[..4].to_vec();
    for (what, settings, want) in [
        ("default seccomp profile", no_seccomp, "seccomp=unconfined"),
        ("masked /proc", no_unmask, "unmask=/proc/*"),
        ("state on the overlay root", no_tmpfs, "tmpfs"),
    ] {
        let name = format!(
            "airlock-box-nest-{}",
            airlock_test_support::random_alnum(6).to_lowercase()
        );
        start_box(&name, &env, &airlock, &settings);
        let mut tar = raw_entry("a.txt", b'0', "", b"x");
        tar.extend_from_slice(&[0u8; 1024]);
        let r = podman_in(
            &["exec", "-i", &name, "airlock", "serve", "ctl", "receive"],
            &tar,
        );
        assert!(r.status.success(), "{what}: upload: {}", text(&r.stderr));
        let w = podman(&["exec", &name, "airlock", "serve", "ctl", "wait"]);
        let st: serde_json::Value = serde_json::from_slice(&w.stdout).expect("status");
        assert_eq!(st["state"], "failed", "{what}: {st}");
        assert!(st["started"].is_null(), "{what}: the command started: {st}");
        let e = st["error"].as_str().unwrap_or_default();
        assert!(e.contains(want), "{what}: {e}");
        podman(&["rm", "-f", "-t", "0", &name]);
    }
}

/// `ctl receive` refuses a workspace tar that would write outside /workspace or plant links
/// and devices (each variant in a fresh box), fails the session closed (the command never
/// starts) and takes no second upload.
#[test]
fn a_hostile_upload_is_refused_and_the_session_fails_closed() {
    if !ready() {
        return;
    }
    let _l = airlock_test_support::podman_lock();
    let _boxes = Boxes::clean();
    let ws = Ws::new();
    let env = spec_of(&ws);
    let airlock = bin().display().to_string();
    let variants: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", raw_entry("../escaped", b'0', "", b"x")),
        ("absolute", raw_entry("/escaped", b'0', "", b"x")),
        (
            "write through a link",
            [
                raw_entry("l", b'2', "/", b""),
                raw_entry("l/escaped", b'0', "", b"x"),
            ]
            .concat(),
        ),
        ("hard link", raw_entry("h", b'1', "/etc/passwd", b"")),
        ("block device", raw_entry("sda", b'4', "", b"")),
        ("fifo", raw_entry("p", b'6', "", b"")),
    ];
    for (what, entries) in variants {
        let name = format!(
            "airlock-box-hostile-{}",
            airlock_test_support::random_alnum(6).to_lowercase()
        );
        start_box(&name, &env, &airlock, FULL_SETTINGS);
        let mut tar = entries;
        tar.extend_from_slice(&[0u8; 1024]);
        let r = podman_in(
            &["exec", "-i", &name, "airlock", "serve", "ctl", "receive"],
            &tar,
        );
        assert!(!r.status.success(), "{what}: the upload was taken");
        assert!(
            text(&r.stderr).contains("refused"),
            "{what}: {}",
            text(&r.stderr)
        );
        let st = podman(&["exec", &name, "airlock", "serve", "ctl", "status"]);
        let st: serde_json::Value = serde_json::from_slice(&st.stdout).expect("status");
        assert_eq!(st["state"], "failed", "{what}: {st}");
        assert!(st["started"].is_null(), "{what}: the command started");
        for p in [
            "/escaped",
            "/workspace/../escaped",
            "/tmp/escaped",
            "/workspace/sda",
            "/workspace/p",
        ] {
            let e = podman(&["exec", &name, "test", "-e", p]);
            assert!(!e.status.success(), "{what}: {p} exists");
        }
        let again = podman_in(
            &["exec", "-i", &name, "airlock", "serve", "ctl", "receive"],
            &[0u8; 1024],
        );
        assert!(!again.status.success(), "{what}: a second upload was taken");
        podman(&["rm", "-f", &name]);
    }
    assert_no_box("after the hostile uploads");
}

/// `--detach` leaves the session running in its box; `ls` shows where; `logs` reads its output
/// and `attach` joins its tmux through the engine; `stop` ends it, brings its changes home and
/// deletes the box.
#[test]
fn a_detached_box_session_is_listed_stopped_and_collected() {
    if !ready() {
        return;
    }
    let _l = airlock_test_support::podman_lock();
    let _boxes = Boxes::clean();
    let ws = Ws::new();
    std::fs::write(ws.path().join("a.txt"), "base\n").expect("a");
    let o = ws
        .airlock()
        .args([
            "run",
            "--backend",
            "podman-box",
            "--detach",
            "--name",
            "far",
        ])
        .args([
            "--",
            "sh",
            "-c",
            "echo detached-out; echo x > made.txt; sleep 300",
        ])
        .run();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(boxes().len(), 1, "one box runs");
    let ls = ws.airlock().args(["ls"]).run();
    assert!(
        text(&ls.stdout).contains("podman-box@podman:airlock-box-"),
        "{}",
        text(&ls.stdout)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let l = ws.airlock().args(["logs", "far"]).run();
        if text(&l.stdout).contains("detached-out") {
            break;
        }
        assert!(Instant::now() < deadline, "logs: {}", text(&l.stdout));
        std::thread::sleep(Duration::from_millis(200));
    }
    // attach on a terminal (script(1) makes the pty): the box's tmux screen through the
    // engine's tty exec, then tmux's detach key (C-b d) gives the terminal back.
    let mut script = Command::new("script")
        .args([
            "-qfec",
            &format!("{} attach far", bin().display()),
            "/dev/null",
        ])
        .current_dir(ws.path())
        .env("XDG_DATA_HOME", ws.data())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) (util-linux)");
    let mut keys = script.stdin.take().expect("stdin");
    std::thread::sleep(Duration::from_secs(4));
    keys.write_all(b"\x02d").expect("detach key");
    let waited = Instant::now();
    let out = script.wait_with_output().expect("attach");
    drop(keys);
    let screen = text(&out.stdout);
    assert!(
        waited.elapsed() < Duration::from_secs(20),
        "attach did not detach"
    );
    assert!(screen.contains("detached-out"), "attach showed: {screen}");
    assert!(
        screen.contains("[detached"),
        "attach did not detach: {screen}"
    );
    let s = ws.airlock().args(["stop", "far"]).run();
    assert!(s.status.success(), "stop: {}", text(&s.stderr));
    assert_no_box("after stop");
    let d = ws.airlock().args(["diff", "far"]).run();
    assert!(text(&d.stdout).contains("made.txt"), "{}", text(&d.stdout));
}

/// A command that ends before the box reports it running keeps its own status (0, 1, 127), a
/// signal to the foreground `airlock run` stops the box's command (as it stops a local one),
/// and input on a pipe or from a file reaches the command with its end.
#[test]
fn fast_commands_signals_and_piped_input() {
    if !ready() {
        return;
    }
    let _l = airlock_test_support::podman_lock();
    let _boxes = Boxes::clean();
    let ws = Ws::new();
    for (cmd, want) in [
        (&["echo", "hi"][..], 0),
        (&["false"][..], 1),
        (&["/no/such/program"][..], 127),
    ] {
        let o = ws
            .airlock()
            .args(["run", "--backend", "podman-box", "--"])
            .args(cmd)
            .run();
        assert_eq!(o.status.code(), Some(want), "{cmd:?}: {}", text(&o.stderr));
    }
    assert_no_box("after fast commands");
    let start = std::time::Instant::now();
    let mut child = ws
        .airlock()
        .args(["run", "--backend", "podman-box", "--", "sh", "-c"])
        .arg("sleep 60; echo late > late.txt")
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let name = wait_box();
    // Let the command start, then stop airlock as `timeout` or Ctrl-C would.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let _ = name;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(143), "the command ends by SIGTERM");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(45),
        "the signal did not stop the box's command"
    );
    assert_no_box("after a signal");
    // Piped input reaches the box's command as it arrives, with its end (`cat` ends);
    // every byte of one larger than a FIFO's buffer; a command that does not read it ends
    // all the same; input from a file too.
    let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let run_with = |cmd: &[&str], input: Vec<u8>| {
        let mut child = ws
            .airlock()
            .args(["run", "--backend", "podman-box", "--"])
            .args(cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run");
        let mut w = child.stdin.take().expect("stdin");
        let feeder = std::thread::spawn(move || {
            // The command may end before it has read everything.
            let _ = w.write_all(&input);
        });
        let o = Run::new(
            format!("airlock run --backend podman-box -- {cmd:?} (stdin a pipe)"),
            child.wait_with_output().expect("wait"),
        );
        let _ = feeder.join();
        o
    };
    let o = run_with(&["cat"], b"one\ntwo\n".to_vec());
    o.assert_code(0);
    assert_eq!(
        text(&o.stdout).replace("\r\n", "\n").trim_end(),
        "one\ntwo",
        "{}",
        text(&o.stderr)
    );
    let o = run_with(&["wc", "-c"], big.clone());
    o.assert_code(0);
    assert_eq!(
        text(&o.stdout).trim(),
        big.len().to_string(),
        "{}",
        text(&o.stderr)
    );
    let o = run_with(&["sh", "-c", "exit 3"], big.clone());
    o.assert_code(3);
    let file = ws.data().join("input.txt");
    std::fs::write(&file, b"from a file\n").expect("write");
    let o = ws
        .airlock()
        .args(["run", "--backend", "podman-box", "--", "cat"])
        .stdin(std::fs::File::open(&file).expect("open"))
        .run();
    o.assert_code(0);
    assert!(
        text(&o.stdout).contains("from a file"),
        "{}",
        text(&o.stdout)
    );
    assert_no_box("after piped input");
}

/// Fly's exec takes its whole input in one request: piped input to a Fly box is refused up
/// front, naming why and what to do, before any engine is contacted (no token needed).
#[test]
fn piped_input_to_a_fly_box_is_refused_naming_why() {
    let ws = Ws::new();
    let mut child = ws
        .airlock()
        .args(["run", "--backend", "fly", "--fly-app", "a", "--", "cat"])
        .env_remove("FLY_API_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"data\n")
        .expect("write");
    let o = Run::new(
        "airlock run --backend fly -- cat (stdin a pipe)",
        child.wait_with_output().expect("wait"),
    );
    o.assert_code(125);
    let err = text(&o.stderr);
    assert!(
        err.contains("cannot pass standard input") && err.contains("in a file in the workspace"),
        "{err}"
    );
}

/// The state of session `id` in `ls --all --json`.
fn row_of(ws: &Ws, id: &str) -> serde_json::Value {
    ws.sessions()
        .into_iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no session {id}"))
}

/// `airlock stop` of a foreground remote run goes through the run (which stops the box's
/// command and brings the results home, no export race), and of a detached session whose
/// command already ended stops nothing and still collects; `attach` to an ended session says
/// how it ended in words; a `--keep` box is listed by `ls` until `rm` deletes it.
#[test]
fn stop_keep_and_attach_of_remote_sessions() {
    if !ready() {
        return;
    }
    let _l = airlock_test_support::podman_lock();
    let _boxes = Boxes::clean();
    let ws = Ws::new();
    std::fs::write(ws.path().join("a.txt"), "base\n").expect("a");
    // 1. A foreground run stopped from elsewhere.
    let child = ws
        .airlock()
        .args(["run", "--backend", "podman-box", "--", "sh", "-c"])
        .arg("echo fg > fg.txt; sleep 60")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    wait_box();
    std::thread::sleep(Duration::from_secs(2));
    let id = ws.sessions()[0]["id"].as_str().expect("id").to_string();
    let started = Instant::now();
    let s = ws.airlock().args(["stop", &id]).output().expect("stop");
    assert!(s.status.success(), "stop: {}", text(&s.stderr));
    assert!(
        text(&s.stderr).is_empty(),
        "stop printed an error although it stopped the box: {}",
        text(&s.stderr)
    );
    let out = child.wait_with_output().expect("run");
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));
    // The stop went through the run (which alone collects: no second export racing it).
    assert!(
        text(&out.stderr).contains("SIGTERM received"),
        "stop did not go through the foreground run: {}",
        text(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(45), "stop was slow");
    assert_no_box("after stopping a foreground run");
    let r = row_of(&ws, &id);
    assert_eq!(
        (&r["state"], &r["exit_status"]),
        (&"exited".into(), &143.into()),
        "{r}"
    );
    let d = ws.airlock().args(["diff", &id]).output().expect("diff");
    assert!(text(&d.stdout).contains("fg.txt"), "{}", text(&d.stdout));
    // 2. A detached session whose command has already ended.
    let o = ws
        .airlock()
        .args([
            "run",
            "--backend",
            "podman-box",
            "--detach",
            "--name",
            "quick",
        ])
        .args(["--", "sh", "-c", "echo q > quick.txt"])
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let name = wait_box();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = podman(&["exec", &name, "airlock", "serve", "ctl", "status"]);
        if text(&st.stdout).contains("\"exited\"") {
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&st.stdout));
        std::thread::sleep(Duration::from_millis(200));
    }
    // The session commands load the user's configuration as `run` does, checks included.
    let config = ws.data().join("config");
    std::fs::create_dir_all(config.join("airlock")).expect("config dir");
    std::fs::write(
        config.join("airlock/config.toml"),
        "[network]\nallow = [\"exa mple.com\"]\n",
    )
    .expect("config");
    let s = ws
        .airlock()
        .env("XDG_CONFIG_HOME", &config)
        .args(["stop", "quick"])
        .output()
        .expect("stop");
    assert!(!s.status.success(), "a broken configuration was taken");
    assert!(
        text(&s.stderr).contains("network.allow[0]") && text(&s.stderr).contains("config.toml"),
        "{}",
        text(&s.stderr)
    );
    let s = ws.airlock().args(["stop", "quick"]).output().expect("stop");
    assert!(s.status.success(), "stop: {}", text(&s.stderr));
    assert_no_box("after stopping an ended detached session");
    let d = ws.airlock().args(["diff", "quick"]).output().expect("diff");
    assert!(text(&d.stdout).contains("quick.txt"), "{}", text(&d.stdout));
    // 3. attach to it says how it ended, in words.
    let a = ws
        .airlock()
        .args(["attach", "quick"])
        .output()
        .expect("attach");
    assert!(!a.status.success());
    let e = text(&a.stderr);
    assert!(
        e.contains("has ended: its command finished successfully"),
        "{e}"
    );
    assert!(!e.contains("Exited"), "{e}");
    // 4. --keep: the box stays and `ls` lists it (without --all) until `rm` deletes it.
    let o = ws
        .airlock()
        .args(["run", "--backend", "podman-box", "--keep", "--name", "kept"])
        .args(["--", "sh", "-c", "true"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(boxes().len(), 1, "the kept box");
    let ls = ws.airlock().args(["ls"]).output().expect("ls");
    let kept = text(&ls.stdout)
        .lines()
        .find(|l| l.contains("kept"))
        .map(String::from)
        .unwrap_or_default();
    assert!(kept.contains("box kept"), "ls: {}", text(&ls.stdout));
    let json = ws.sessions();
    assert!(
        json.iter()
            .any(|r| r["name"] == "kept" && r["box_kept"] == true),
        "{json:?}"
    );
    let rm = ws.airlock().args(["rm", "kept"]).output().expect("rm");
    assert!(rm.status.success(), "rm: {}", text(&rm.stderr));
    assert_no_box("after rm of the kept session");
}

/// `airlock doctor` has a remote section: whether a kubeconfig context, a Fly token (never
/// shown) and the podman-box image are found, from files and the environment only (a cluster
/// that does not answer cannot make it hang).
#[test]
fn doctor_reports_the_remote_engines() {
    let ws = Ws::new();
    let home = ws.data().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let kubeconfig = ws.data().join("kubeconfig");
    // A server nothing answers on: doctor must not contact it.
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: dev\nclusters:\n- name: c1\n  cluster:\n    server: https://192.0.2.1:6443\ncontexts:\n- name: dev\n  context:\n    cluster: c1\n    user: u1\nusers:\n- name: u1\n  user:\n    token: abc\n",
    )
    .expect("kubeconfig");
    let token = format!("fo1_{}", airlock_test_support::random_alnum(24));
    let doctor = |kube: Option<&Path>, fly: Option<&str>| {
        let mut c = ws.airlock();
        c.env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env_remove("FLY_API_TOKEN")
            .env_remove("FLY_ACCESS_TOKEN")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .args(["doctor", "--json"]);
        match kube {
            Some(k) => c.env("KUBECONFIG", k),
            None => c.env("KUBECONFIG", home.join("none")),
        };
        if let Some(t) = fly {
            c.env("FLY_API_TOKEN", t);
        }
        let started = Instant::now();
        let o = c.output().expect("doctor");
        assert!(started.elapsed() < Duration::from_secs(30), "doctor hung");
        let out = text(&o.stdout);
        assert!(!out.contains(&token), "doctor showed the Fly token");
        let v: serde_json::Value = serde_json::from_str(&out).expect("doctor --json");
        let by_name = |name: &str| {
            v["remote"]
                .as_array()
                .and_then(|a| a.iter().find(|c| c["name"] == name))
                .cloned()
                .unwrap_or_else(|| panic!("no remote check {name}: {v}"))
        };
        (
            by_name("k8s cluster"),
            by_name("fly token"),
            by_name("podman-box image"),
        )
    };
    let (k8s, fly, _) = doctor(Some(&kubeconfig), Some(&token));
    assert_eq!(k8s["ok"], true, "{k8s}");
    assert!(
        k8s["detail"].as_str().unwrap_or_default().contains("'dev'"),
        "{k8s}"
    );
    assert_eq!(fly["ok"], true, "{fly}");
    assert!(
        fly["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("FLY_API_TOKEN"),
        "{fly}"
    );
    let (k8s, fly, image) = doctor(None, None);
    assert_eq!(k8s["ok"], false, "{k8s}");
    assert!(
        k8s["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("no kubeconfig"),
        "{k8s}"
    );
    assert_eq!(fly["ok"], false, "{fly}");
    assert!(
        fly["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("FLY_API_TOKEN"),
        "{fly}"
    );
    if ready() {
        assert_eq!(image["ok"], true, "{image}");
    }
}

/// `airlock serve` as a non-root user (a pod's `runAsNonRoot` uid; docs/k8s.md "Root in the
/// box", design A) on a box with no capabilities at all: the session runs as that user, its
/// agent in the native sandbox's own user namespace, and the agent reaches neither the control
/// socket nor the supervisor's private directory; the command's status comes back.
#[test]
fn a_non_root_supervisor_runs_the_session_sandboxed() {
    if !ready() {
        return;
    }
    let _l = airlock_test_support::podman_lock();
    let _boxes = Boxes::clean();
    let ws = Ws::new();
    // Exit 0 only when the agent is in the sandbox: its own PID namespace (it is not pid 1's
    // child: pid 1 is the sandbox's init), no control socket, no supervisor directory.
    // With a credential: its secret file is read by the supervisor, never seen by the agent.
    let secret = format!("nr{}", airlock_test_support::random_alnum(24));
    let policy = ws.data().join("policy.toml");
    std::fs::write(
        &policy,
        "[[credentials]]\nname = \"demo\"\nenv = \"AIRLOCK_NONROOT_TOKEN\"\nhosts = [\"web.test\"]\n",
    )
    .expect("policy");
    let script = format!(
        "test -e /run/airlock/serve.sock && exit 9; test -e /run/airlock/supervisor && exit 8; \
         grep -q 'airlock serve' /proc/1/cmdline && exit 7; test -e /run/airlock/secrets && exit 6; \
         env | grep -q {secret} && exit 5; echo ok > /workspace/nonroot.txt"
    );
    let o = ws
        .airlock()
        .env("AIRLOCK_NONROOT_TOKEN", &secret)
        .args(["run", "--backend", "podman-box", "--dry-run", "--policy"])
        .arg(&policy)
        .args(["--", "sh", "-c", &script])
        .output()
        .expect("dry run");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let env = v["container"]["Env"][0].as_str().expect("env").to_string();
    let secret_file = ws.data().join("demo");
    std::fs::write(&secret_file, &secret).expect("secret");
    std::fs::set_permissions(
        &secret_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o444),
    )
    .expect("chmod");
    let secret_mount = format!("{}:/run/airlock/secrets/demo:ro", secret_file.display());
    let airlock = bin().display().to_string();
    let name = format!(
        "airlock-box-nonroot-{}",
        airlock_test_support::random_alnum(6).to_lowercase()
    );
    let settings = [
        "--user",
        "1000:1000",
        "--cap-drop",
        "all",
        "--security-opt",
        "seccomp=unconfined",
        "--security-opt",
        "unmask=/proc/*",
        "--tmpfs",
        "/var/lib/airlock:rw,mode=700,U",
        "--tmpfs",
        // Root's and writable by all, as a pod's emptyDir (the supervisor cannot chown it).
        "/workspace:rw,mode=777",
        "--tmpfs",
        "/run/airlock:rw,mode=700,U",
        "-v",
        &secret_mount,
    ];
    start_box(&name, &env, &airlock, &settings);
    let serve_uid = podman(&["exec", &name, "sh", "-c", "grep ^Uid: /proc/1/status"]);
    assert!(
        text(&serve_uid.stdout).split_whitespace().nth(1) == Some("1000"),
        "serve is not uid 1000: {}",
        text(&serve_uid.stdout)
    );
    let mut tar = raw_entry("a.txt", b'0', "", b"x");
    tar.extend_from_slice(&[0u8; 1024]);
    let r = podman_in(
        &["exec", "-i", &name, "airlock", "serve", "ctl", "receive"],
        &tar,
    );
    assert!(r.status.success(), "upload: {}", text(&r.stderr));
    let w = podman(&["exec", &name, "airlock", "serve", "ctl", "wait"]);
    let st: serde_json::Value = serde_json::from_slice(&w.stdout).expect("status");
    assert_eq!(st["state"], "exited", "{st}");
    assert_eq!(st["exit_status"], 0, "{st}");
    let changes = podman(&["exec", &name, "airlock", "serve", "ctl", "export"]);
    assert!(
        text(&changes.stdout).contains("nonroot.txt"),
        "the session's change did not come back"
    );
    podman(&["rm", "-f", "-t", "0", &name]);
    assert_no_box("after the non-root box");
}

/// X4: `airlock logs` (and `logs -f`) of a session running in a box print the agent's terminal
/// output through the same terminal filter as a local session's: a clipboard write, a title
/// report, a DCS and a C1 CSI (the local test's set of what the filter drops) never reach the
/// terminal, colours do, and what was dropped is said.
#[test]
fn logs_of_a_box_session_go_through_the_terminal_filter() {
    if !ready() {
        return;
    }
    let _l = airlock_test_support::podman_lock();
    let _boxes = Boxes::clean();
    let ws = Ws::new();
    let attacks = crate::sandbox::TERMINAL_ATTACKS;
    let o = ws
        .airlock()
        .args([
            "run",
            "--backend",
            "podman-box",
            "--detach",
            "--name",
            "esc",
        ])
        .args([
            "--",
            "sh",
            "-c",
            &format!("printf 'log-start {attacks} \\033[31mred\\033[0m log-end\\n'; sleep 12"),
        ])
        .run();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let l = ws.airlock().args(["logs", "esc"]).run();
        if text(&l.stdout).contains("log-end") {
            // Piped, the raw log (the attack is there to be filtered).
            assert!(crate::sandbox::has_live_attack(&l.stdout).is_some());
            break;
        }
        assert!(Instant::now() < deadline, "logs: {}", text(&l.stdout));
        std::thread::sleep(Duration::from_millis(200));
    }
    for args in ["logs esc", "logs -f esc"] {
        let out = Command::new("script")
            .args(["-qec", &format!("{} {args}", bin().display()), "/dev/null"])
            .current_dir(ws.path())
            .env("XDG_DATA_HOME", ws.data())
            .stdin(Stdio::null())
            .output()
            .expect("script(1)");
        let screen = text(&out.stdout);
        assert!(screen.contains("log-end"), "{args}: {screen:?}");
        let live = crate::sandbox::has_live_attack(&out.stdout);
        assert!(
            live.is_none(),
            "{args}: {live:?} reached the terminal: {screen:?}"
        );
        assert!(
            screen.contains("\x1b[31mred"),
            "{args}: colours are kept: {screen:?}"
        );
        assert!(
            screen.contains("kept from your terminal"),
            "{args}: {screen:?}"
        );
    }
    // `logs -f` returned because the command ended; stop collects and deletes the box.
    let s = ws.airlock().args(["stop", "esc"]).run();
    assert!(s.status.success(), "stop: {}", text(&s.stderr));
    assert_no_box("after stop");
}

/// Runs `cmd` and samples its peak resident memory (`VmHWM` of /proc/PID/status, proc(5))
/// until it exits; returns its output and the last peak read, in KiB.
fn run_measuring_peak(mut cmd: Command) -> (Run, u64) {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let command = airlock_test_support::run::describe(&cmd);
    let child = cmd.spawn().expect("spawn");
    let status = format!("/proc/{}/status", child.id());
    let waiter = std::thread::spawn(move || child.wait_with_output());
    let mut peak = 0u64;
    while !waiter.is_finished() {
        // A zombie has no VmHWM any more: the last value read stands.
        if let Some(kib) = std::fs::read_to_string(&status).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        }) {
            peak = peak.max(kib);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = waiter.join().expect("thread").expect("wait");
    (Run::new(command, out), peak)
}

/// X1: the changes a box sends home are bounded, and come home as they arrive: a sparse file
/// counts with its length (and the import stops at its header, so `airlock run`'s memory
/// stays far under the file's size: the stream is never held whole), and a flood of files
/// with their count; over a bound, the import is refused naming the bound, the file and the
/// variable that raises it, nothing is kept and no box is left.
#[test]
fn an_export_over_the_import_limits_is_refused_and_nothing_kept() {
    if !ready() {
        return;
    }
    let _l = airlock_test_support::podman_lock();
    let _boxes = Boxes::clean();
    let ws = Ws::new();
    // airlock's own peak on a small session is some 20-40 MiB; the sparse file is 512 MiB.
    const MAX_PEAK_KIB: u64 = 160 << 10;
    for (what, env, script, names) in [
        (
            "sparse file",
            ("AIRLOCK_IMPORT_MAX_SIZE", "64M"),
            "truncate -s 512M hole",
            ["size of a file", "hole", "AIRLOCK_IMPORT_MAX_SIZE"],
        ),
        (
            "many files",
            ("AIRLOCK_IMPORT_MAX_FILES", "50"),
            "mkdir d && cd d && for i in $(seq 1 200); do : > f$i; done",
            ["count of entries", "d/f", "AIRLOCK_IMPORT_MAX_FILES"],
        ),
    ] {
        let mut cmd = ws.airlock();
        cmd.env(env.0, env.1)
            .args(["run", "--backend", "podman-box", "--", "sh", "-c", script]);
        let (o, peak) = run_measuring_peak(cmd);
        let err = text(&o.stderr);
        assert!(!o.status.success(), "{what}: taken: {err}");
        for n in names {
            assert!(
                err.contains(n),
                "{what}: the error does not name {n:?}: {err}"
            );
        }
        assert!(
            peak > 0 && peak < MAX_PEAK_KIB,
            "{what}: airlock run's peak memory was {peak} KiB (at most {MAX_PEAK_KIB})"
        );
        assert_no_box(what);
        let sessions = ws.data().join("airlock/sessions");
        let uppers: Vec<_> = std::fs::read_dir(&sessions)
            .map(|d| d.flatten().map(|e| e.path().join("upper")).collect())
            .unwrap_or_else(|_| Vec::new())
            .into_iter()
            .filter(|u: &std::path::PathBuf| u.exists())
            .collect();
        assert!(
            std::fs::read_dir(&sessions).is_ok_and(|d| d.count() > 0),
            "{what}: no session dir in {sessions:?}"
        );
        assert!(uppers.is_empty(), "{what}: kept {uppers:?}");
    }
}

/// X10: names the agent chose reach the box's own log (`podman logs`, as `kubectl logs` and
/// `fly logs` print it to the user's terminal) quoted, never as live control sequences or as a
/// forged log line: FIFOs (left out of the export, which serve reports) named with an OSC title,
/// a C1 CSI, and a newline followed by a fake serve line.
#[test]
fn agent_chosen_names_in_the_box_log_are_quoted() {
    if !ready() {
        return;
    }
    let _l = airlock_test_support::podman_lock();
    let _boxes = Boxes::clean();
    let ws = Ws::new();
    let o = ws
        .airlock()
        .args(["run", "--backend", "podman-box", "--keep", "--name", "names"])
        .args([
            "--",
            "sh",
            "-c",
            r#"mkfifo "$(printf 'p\033]0;TITLE\007q')" "$(printf 'c1\302\23321t')" "$(printf 'nl\nairlock serve: forged')""#,
        ])
        .run();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let b = boxes();
    assert_eq!(b.len(), 1, "the kept box");
    let log = podman(&["logs", &b[0]]);
    let all = [log.stdout.as_slice(), log.stderr.as_slice()].concat();
    let shown = text(&all);
    let lines: Vec<&str> = shown.lines().filter(|l| l.contains("left out")).collect();
    assert_eq!(lines.len(), 3, "one line per FIFO: {shown:?}");
    assert!(!all.contains(&0x1b), "ESC in the box log: {shown:?}");
    assert!(
        !shown.contains('\u{9b}'),
        "C1 CSI in the box log: {shown:?}"
    );
    assert!(
        !shown
            .lines()
            .any(|l| l.starts_with("airlock serve: forged")),
        "a forged line: {shown:?}"
    );
    assert!(shown.contains(r#""p\033]0;TITLE\aq""#), "{shown:?}");
    // `airlock logs --box` reads the same log through the engine's log API.
    let own = ws.airlock().args(["logs", "--box", "names"]).run();
    assert!(own.status.success(), "logs --box: {}", text(&own.stderr));
    let own = text(&own.stdout);
    assert_eq!(
        own.lines().filter(|l| l.contains("left out")).count(),
        3,
        "logs --box: {own:?}"
    );
    assert!(own.contains(r#""p\033]0;TITLE\aq""#), "logs --box: {own:?}");
    let rm = ws.airlock().args(["rm", "names"]).run();
    assert!(rm.status.success(), "rm: {}", text(&rm.stderr));
    assert_no_box("after rm");
}

/// REDTEAM3 X6 in a box: the agent links `.git/refs/heads` to another repository on the host
/// and names its object store in `objects/info/alternates`; what comes home is refused by name
/// (`diff` loudly, `merge` with no flag) and nothing of that repository lands.
#[test]
fn a_box_session_cannot_point_merge_at_a_host_repository() {
    if !ready() {
        return;
    }
    let _l = airlock_test_support::podman_lock();
    let _boxes = Boxes::clean();
    let secret = tempfile::tempdir().expect("tempdir");
    std::fs::write(secret.path().join("s.txt"), "TOP SECRET\n").expect("write");
    for args in [
        &["init", "-q"][..],
        &["add", "."],
        &[
            "-c",
            "user.name=o",
            "-c",
            "user.email=o@o",
            "commit",
            "-qm",
            "secret commit",
        ],
    ] {
        let o = Command::new("git")
            .args(args)
            .current_dir(secret.path())
            .run();
        assert!(o.status.success(), "git {args:?}: {}", text(&o.stderr));
    }
    let ws = Ws::new();
    std::fs::write(ws.path().join("a.txt"), "base\n").expect("a");
    ws.git(&["init", "-q"]);
    ws.git(&["add", "."]);
    ws.git(&["commit", "-qm", "base"]);
    let s = secret.path().join(".git").display().to_string();
    let o = ws
        .airlock()
        .args([
            "run",
            "--backend",
            "podman-box",
            "--name",
            "g4",
            "--",
            "sh",
            "-c",
        ])
        .arg(format!(
            "rm -rf .git/refs/heads && ln -s {s}/refs/heads .git/refs/heads && \
             mkdir -p .git/objects/info && echo {s}/objects > .git/objects/info/alternates"
        ))
        .run();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let d = ws.airlock().args(["diff", "g4"]).run();
    let shown = text(&d.stdout);
    assert!(
        shown.contains("!! the agent's git data points outside")
            && shown.contains(".git/refs/heads")
            && shown.contains(".git/objects/info/alternates")
            && !shown.contains("secret commit"),
        "{shown}"
    );
    let m = ws
        .airlock()
        .args(["merge", "--allow-exec-files", "g4"])
        .run();
    assert_eq!(m.status.code(), Some(125), "{}", text(&m.stderr));
    assert!(
        text(&m.stderr).contains("no flag lands it"),
        "{}",
        text(&m.stderr)
    );
    let has = Command::new("git")
        .args(["rev-parse", "--verify", "--quiet", "airlock/g4"])
        .current_dir(ws.path())
        .run();
    assert!(!has.status.success(), "a branch was created");
    let _ = ws.airlock().args(["rm", "--force", "g4"]).run();
    assert_no_box("after the X6 session");
}

/// `argv` run in the user's storage view: rootless Podman's files belong to subordinate ids
/// only `podman unshare` can read.
fn in_storage(argv: &[&str]) -> Run {
    let mut cmd = if is_root() {
        Command::new(argv[0])
    } else {
        let mut c = Command::new("podman");
        c.args(["unshare", argv[0]]);
        c
    };
    cmd.args(&argv[1..])
        .current_dir("/")
        .stdin(Stdio::null())
        .run()
}

/// The outside uid the box's uid 0 maps to, from the host's view of its first process.
fn box_root_uid(name: &str) -> u64 {
    let pid = text(&podman(&["inspect", "-f", "{{.State.Pid}}", name]).stdout)
        .trim()
        .to_string();
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).expect("uid_map");
    map.lines()
        .find_map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (f.len() == 3 && f[0] == 0).then_some(f[1])
        })
        .unwrap_or_else(|| panic!("box uid 0 is not mapped: {map}"))
}

/// X5 and X7 of docs/remote.md's box settings: the box's root is not the host's root (a user
/// namespace of its own, rootful too), it cannot write a host sysctl under /proc/sys, and the
/// secret never reaches the host's disk (the container's writable layer): /run/airlock is a
/// 0700 tmpfs, and serve removes the secret files once read.
#[test]
fn box_root_is_not_host_root_and_secrets_stay_off_the_host_disk() {
    if !ready() {
        return;
    }
    let _l = airlock_test_support::podman_lock();
    let _boxes = Boxes::clean();
    let ws = Ws::new();
    let secret = format!("ds{}", airlock_test_support::random_alnum(28));
    let policy = ws.data().join("policy.toml");
    std::fs::write(
        &policy,
        "[[credentials]]\nname = \"demo\"\nenv = \"AIRLOCK_DISK_TOKEN\"\nhosts = [\"web.test\"]\n",
    )
    .expect("policy");
    let o = ws
        .airlock()
        .env("AIRLOCK_DISK_TOKEN", &secret)
        .args(["run", "--backend", "podman-box", "--detach", "--name", "dk"])
        .arg("--policy")
        .arg(&policy)
        .args(["--", "sleep", "300"])
        .run();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let name = wait_box();

    // The box's uid 0 is not the host's (nor, rootless, the user's own uid: any non-zero).
    let root = box_root_uid(&name);
    assert_ne!(root, 0, "the box's root is the host's root");

    // Host sysctls: each write of the value already there fails (a no-op if it got through).
    let sysctls = [
        "kernel/printk_ratelimit",
        "kernel/core_pattern",
        "vm/overcommit_ratio",
        "fs/file-max",
        // (not kernel/pid_max: per PID namespace since Linux 6.14, the box's own)
        "kernel/randomize_va_space",
    ];
    for s in sysctls {
        let script = format!("v=$(cat /proc/sys/{s}) && echo \"$v\" > /proc/sys/{s} && echo WROTE");
        let o = podman(&["exec", &name, "sh", "-c", &script]);
        assert!(
            !text(&o.stdout).contains("WROTE"),
            "box root wrote the host sysctl {s}"
        );
        // Control: the same write from the host's root gets through.
        if is_root() {
            let o = Command::new("sh")
                .args(["-c", &script])
                .current_dir("/")
                .run();
            assert!(text(&o.stdout).contains("WROTE"), "control {s}: {o:?}");
        }
    }

    // /run/airlock: the box's tmpfs, 0700; the secret files gone once serve has them.
    let o = podman(&[
        "exec",
        &name,
        "sh",
        "-c",
        "stat -c '%a' /run/airlock; grep ' /run/airlock ' /proc/self/mountinfo; ls -A /run/airlock/secrets 2>/dev/null",
    ]);
    let out = text(&o.stdout);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("700"), "{out}");
    assert!(
        lines.next().is_some_and(|l| l.contains(" - tmpfs ")),
        "/run/airlock is not a tmpfs: {out}"
    );
    assert_eq!(lines.next(), None, "secret files left in the box: {out}");

    // The container's storage on the host: the secret's bytes are nowhere in it. Control: a
    // marker written to the box's root filesystem is found there by the same search.
    let marker = format!("mk{}", airlock_test_support::random_alnum(20));
    podman(&[
        "exec",
        &name,
        "sh",
        "-c",
        &format!("echo {marker} > /marker"),
    ]);
    let upper = text(&podman(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", &name]).stdout)
        .trim()
        .to_string();
    let layer = Path::new(&upper)
        .parent()
        .expect("the layer directory")
        .display()
        .to_string();
    let found = in_storage(&["grep", "-rl", &marker, &layer]);
    assert!(
        !text(&found.stdout).trim().is_empty(),
        "control: the marker is not found in {layer}: {found:?}"
    );
    let found = in_storage(&["grep", "-rl", &secret, &layer]);
    assert!(
        text(&found.stdout).trim().is_empty(),
        "the secret is on the host's disk: {}",
        text(&found.stdout)
    );
    let s = ws.airlock().args(["stop", "dk"]).run();
    assert!(s.status.success(), "stop: {}", text(&s.stderr));
    assert_no_box("after stop");
}

/// X3: the policy values that can carry a secret (the notify webhook URL, literal telemetry
/// header values) never go into the box's spec (an environment variable) nor the `--dry-run`
/// output of any engine; they travel as secrets (by name in the dry run), and the box's session
/// still gets them (a podman-box runs for real: its container's environment holds neither).
#[test]
fn secret_bearing_policy_values_stay_out_of_the_spec_on_every_engine() {
    let ws = Ws::new();
    let hook = format!("WH{}", airlock_test_support::random_alnum(20));
    let head = format!("HD{}", airlock_test_support::random_alnum(20));
    let policy = ws.data().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[notify]\nwebhook = \"https://hooks.example/services/{hook}\"\ndesktop = false\n\
             [telemetry]\notlp_endpoint = \"https://otlp.example\"\nagent = false\n\
             [telemetry.headers]\n\"x-honeycomb-team\" = \"{head}\"\n\"x-other\" = \"{head}2\"\n"
        ),
    )
    .expect("policy");
    let dry = |args: &[&str]| {
        ws.airlock()
            .env("KUBECONFIG", ws.data().join("no-kubeconfig"))
            .env_remove("FLY_API_TOKEN")
            .args(["run", "--dry-run", "--policy"])
            .arg(&policy)
            .args(args)
            .args(["--", "true"])
            .run()
    };
    for engine in [
        vec!["--backend", "k8s", "--image", "registry.example/airlock:1"],
        vec!["--backend", "fly", "--fly-app", "a"],
        vec!["--backend", "podman-box"],
    ] {
        let o = dry(&engine);
        assert!(o.status.success(), "{engine:?}: {}", text(&o.stderr));
        let out = text(&o.stdout);
        assert!(
            !out.contains(&hook) && !out.contains(&head),
            "{engine:?}: a secret-bearing policy value is in the dry run: {out}"
        );
        // The secrets are there by name (the channel they travel by).
        assert!(
            out.to_ascii_lowercase().contains("policy") && out.contains("webhook"),
            "{engine:?}: the policy's secrets are not rendered by name: {out}"
        );
    }
    if !ready() {
        return;
    }
    let _l = airlock_test_support::podman_lock();
    let _boxes = Boxes::clean();
    let o = ws
        .airlock()
        .args(["run", "--backend", "podman-box", "--detach", "--name", "wh"])
        .arg("--policy")
        .arg(&policy)
        .args(["--", "sleep", "300"])
        .run();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let name = wait_box();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = podman(&[
            "exec",
            &name,
            "/usr/local/bin/airlock",
            "serve",
            "ctl",
            "status",
        ]);
        if text(&st.stdout).contains("running") {
            break;
        }
        assert!(Instant::now() < deadline, "status: {}", text(&st.stdout));
        std::thread::sleep(Duration::from_millis(200));
    }
    let env = podman(&["inspect", "-f", "{{.Config.Env}}", &name]);
    let env = text(&env.stdout);
    assert!(env.contains("AIRLOCK_BOX_SPEC"), "{env}");
    assert!(
        !env.contains(&hook) && !env.contains(&head),
        "a secret-bearing policy value is in the box's environment: {env}"
    );
    let s = ws.airlock().args(["stop", "wh"]).run();
    assert!(s.status.success(), "stop: {}", text(&s.stderr));
    assert_no_box("after stop");
}

/// X2: a `[filesystem] hide` entry inside the workspace holds remotely too: the hidden file or
/// directory is never uploaded (it never leaves this machine), so the agent in the box cannot
/// read it. Variants: a file, a directory (and a file in it), an entry spelled through a
/// symlink outside the workspace that resolves into it; control: a file beside them is there.
#[test]
fn hidden_workspace_paths_are_not_uploaded() {
    if !ready() {
        return;
    }
    let _l = airlock_test_support::podman_lock();
    let _boxes = Boxes::clean();
    let ws = Ws::new();
    let mark = format!("HM{}", airlock_test_support::random_alnum(20));
    std::fs::write(ws.path().join("secret.env"), format!("A={mark}1\n")).expect("f");
    std::fs::create_dir(ws.path().join("private")).expect("d");
    std::fs::write(ws.path().join("private/key"), format!("{mark}2\n")).expect("f");
    std::fs::write(ws.path().join("linked.txt"), format!("{mark}3\n")).expect("f");
    std::fs::write(ws.path().join("visible.txt"), "VISIBLE\n").expect("f");
    let link = ws.data().join("to-linked");
    std::os::unix::fs::symlink(ws.path().join("linked.txt"), &link).expect("symlink");
    let policy = ws.data().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[filesystem]\nhide = [{:?}, {:?}, {:?}]\n",
            ws.path().join("secret.env").display().to_string(),
            ws.path().join("private").display().to_string(),
            link.display().to_string(),
        ),
    )
    .expect("policy");
    let o = ws
        .airlock()
        .args(["run", "--backend", "podman-box", "--policy"])
        .arg(&policy)
        .args([
            "--",
            "sh",
            "-c",
            "cat visible.txt; cat secret.env private/key linked.txt 2>&1; \
             grep -r HM /workspace 2>/dev/null; ls -a /workspace; true",
        ])
        .run();
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", text(&o.stderr));
    assert!(out.contains("VISIBLE"), "control: {out}");
    assert!(
        !out.contains(&mark),
        "a hidden workspace path reached the box: {out}"
    );
    for name in ["secret.env", "private", "linked.txt"] {
        assert!(
            !out.lines().any(|l| l == name),
            "{name} was uploaded: {out}"
        );
    }
    assert_no_box("after the session");
    // The hidden files are untouched here (left out, not deleted).
    assert!(ws.path().join("secret.env").exists() && ws.path().join("private/key").exists());
}

/// `airlock logs --box` of a session without a box (a native one) is refused naming the
/// backend and the command that prints its output; `--box` with `-f` is refused by the CLI.
#[test]
fn box_logs_of_a_session_without_a_box_are_refused_naming_why() {
    let ws = Ws::new();
    let o = ws
        .airlock()
        .args(["run", "--name", "native", "--", "true"])
        .run();
    assert!(o.status.success(), "run: {}", text(&o.stderr));
    let l = ws.airlock().args(["logs", "--box", "native"]).run();
    assert!(!l.status.success(), "logs --box of a native session");
    let err = text(&l.stderr);
    assert!(
        err.contains("native backend, without a box") && err.contains("airlock logs"),
        "{err}"
    );
    let f = ws.airlock().args(["logs", "--box", "-f", "native"]).run();
    assert!(!f.status.success(), "--box -f");
    assert!(
        text(&f.stderr).contains("cannot be used with"),
        "{}",
        text(&f.stderr)
    );
}
