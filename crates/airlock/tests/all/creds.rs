//! Credentials the agent can use but never read, end to end through the real binary: local TLS
//! upstreams on loopback (their own test CA given through `[tls] extra_roots`, names pinned
//! with `[network.resolve]`), curl and git inside `airlock run`. The test script runs this module
//! as root and again as an unprivileged user.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bin;
use airlock_test_support::tls::TestCa;
use airlock_test_support::Pinned;
use airlock_test_support::{stderr, stdout, Run, RunExt};

/// The push guard (`[git] push`) with git's own smart-HTTP server.
#[path = "creds/gitpush.rs"]
mod gitpush;
/// Per-request rules (`[[network.rules]]`) on credential hosts.
#[path = "creds/rules.rs"]
mod rules;

/// A random secret shaped like an API key.
fn secret(tag: &str) -> String {
    format!("sk-{tag}-{}", airlock_test_support::random_alnum(24))
}

/// A per-test directory readable by the unprivileged user, holding the workspace, the session
/// data, the policy and the test CA.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("airlock-creds-")
            .tempdir()
            .expect("tempdir");
        for d in ["ws", "data"] {
            std::fs::create_dir(dir.path().join(d)).expect("mkdir");
        }
        Env { dir }
    }

    fn ws(&self) -> PathBuf {
        self.dir.path().join("ws")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn airlock(&self) -> Command {
        let mut c = Command::new(bin());
        c.current_dir(self.ws())
            .stdin(Stdio::null())
            .env("XDG_DATA_HOME", self.path("data"))
            .env("XDG_CONFIG_HOME", self.path("config"));
        for v in [
            "ANTHROPIC_API_KEY",
            "CLAUDE_CODE_OAUTH_TOKEN",
            "GH_TOKEN",
            "GITHUB_TOKEN",
            "OPENAI_API_KEY",
        ] {
            c.env_remove(v);
        }
        c
    }

    /// `airlock run --mode bind --policy POLICY -- sh -c SCRIPT` with `vars` in the host env.
    fn run(&self, policy: &Path, vars: &[(&str, &str)], script: &str) -> Run {
        let mut c = self.airlock();
        c.args(["run", "--mode", "bind", "--policy"])
            .arg(policy)
            .args(["--", "sh", "-c", script]);
        for (k, v) in vars {
            c.env(k, v);
        }
        c.run()
    }

    fn audit(&self, session: &str) -> Vec<serde_json::Value> {
        let o = self.airlock().args(["audit", session, "--json"]).run();
        stdout(&o)
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }
}

/// A test CA; `trusted` ones are written to `ca.pem` for `[tls] extra_roots`.
fn test_ca() -> TestCa {
    TestCa::new("airlock test upstream CA")
}

/// What an upstream received: each request's head and body, as text.
type Seen = Arc<Mutex<Vec<String>>>;

/// A TLS upstream on 127.0.0.1 speaking just enough HTTP/1.1 (keep-alive, Content-Length):
/// `/echo` returns the request head and body; `/sse` streams three events, the second only
/// once the file `signal` exists (or 8 s have passed, then it says TIMEOUT); `/basic` and
/// `/repo.git/...` want `Authorization: Basic` with `want` as the password (git's smart HTTP
/// discovery with an empty repository).
struct Upstream {
    port: u16,
    seen: Seen,
}

fn upstream(config: Arc<rustls::ServerConfig>, want: String, signal: PathBuf) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (config, seen, want, signal) =
                (config.clone(), seen2.clone(), want.clone(), signal.clone());
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut s = rustls::StreamOwned::new(conn, tcp);
                while let Some((head, body)) = read_request(&mut s) {
                    seen.lock()
                        .expect("lock")
                        .push(format!("{head}\r\n\r\n{}", String::from_utf8_lossy(&body)));
                    if respond(&mut s, &head, &body, &want, &signal).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Upstream { port, seen }
}

fn read_request(s: &mut impl Read) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&buf[..buf.len() - 4]).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    Some((head, body))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

fn respond(
    s: &mut impl Write,
    head: &str,
    body: &[u8],
    want: &str,
    signal: &Path,
) -> std::io::Result<()> {
    let path = head.split(' ').nth(1).unwrap_or("/");
    let send = |s: &mut dyn Write, status: &str, extra: &str, body: &[u8]| {
        write!(
            s,
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\n{extra}\r\n",
            body.len()
        )?;
        s.write_all(body)?;
        s.flush()
    };
    let basic_ok = || {
        use base64::Engine as _;
        header(head, "authorization")
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .is_some_and(|d| String::from_utf8_lossy(&d).ends_with(&format!(":{want}")))
    };
    if path.starts_with("/echo") {
        let mut out = head.as_bytes().to_vec();
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
        let echo_header = header(head, "x-api-key").unwrap_or("none").to_string();
        send(s, "200 OK", &format!("x-echo: {echo_header}\r\n"), &out)
    } else if path.starts_with("/sse") {
        let chunk = |s: &mut dyn Write, data: &str| {
            write!(s, "{:x}\r\n{data}\r\n", data.len())?;
            s.flush()
        };
        write!(
            s,
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        )?;
        chunk(s, &format!("data: first {want}\n\n"))?;
        let start = Instant::now();
        while !signal.exists() && start.elapsed() < Duration::from_secs(8) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let second = if signal.exists() {
            "after-signal"
        } else {
            "TIMEOUT"
        };
        chunk(s, &format!("data: second {second}\n\n"))?;
        // The secret split across two chunks.
        let (a, b) = want.split_at(want.len() / 2);
        chunk(s, &format!("data: third {a}"))?;
        std::thread::sleep(Duration::from_millis(50));
        chunk(s, &format!("{b} end\n\n"))?;
        write!(s, "0\r\n\r\n")?;
        s.flush()
    } else if path.starts_with("/gzip") {
        // Claims gzip although airlock asked for identity: the body could hide the secret.
        send(s, "200 OK", "content-encoding: gzip\r\n", want.as_bytes())
    } else if path.starts_with("/v1/oauth/token") {
        if !String::from_utf8_lossy(body).contains(want) {
            return send(s, "400 Bad Request", "", b"{\"error\":\"invalid_grant\"}");
        }
        let out = format!(
            "{{\"token_type\":\"Bearer\",\"access_token\":\"{}\",\"refresh_token\":\"{}\",\"expires_in\":3600}}",
            rotated(want, "access2"),
            rotated(want, "refresh2")
        );
        send(
            s,
            "200 OK",
            "content-type: application/json\r\n",
            out.as_bytes(),
        )
    } else if path.starts_with("/basic") {
        if basic_ok() {
            send(s, "200 OK", "", b"basic-ok")
        } else {
            send(
                s,
                "401 Unauthorized",
                "www-authenticate: Basic realm=\"t\"\r\n",
                b"no",
            )
        }
    } else if path.starts_with("/repo.git/info/refs") {
        if !basic_ok() {
            return send(
                s,
                "401 Unauthorized",
                "www-authenticate: Basic realm=\"git\"\r\n",
                b"auth required",
            );
        }
        let pkt = |l: &str| format!("{:04x}{l}", l.len() + 4);
        let body = format!(
            "{}0000{}0000",
            pkt("# service=git-upload-pack\n"),
            pkt("0000000000000000000000000000000000000000 capabilities^{}\0agent=airlock-test\n")
        );
        send(
            s,
            "200 OK",
            "content-type: application/x-git-upload-pack-advertisement\r\ncache-control: no-cache\r\n",
            body.as_bytes(),
        )
    } else {
        send(s, "404 Not Found", "", b"not found")
    }
}

/// The token the fake OAuth endpoint hands out for refresh token `want`.
fn rotated(want: &str, kind: &str) -> String {
    let tail: String = want
        .chars()
        .rev()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("sk-{kind}-{tail}")
}

/// Two upstreams: `api.creds.test` (certificate from the trusted test CA) and
/// `bad.creds.test` (from a CA airlock is not told about).
struct Fixture {
    env: Env,
    good: Upstream,
    bad: Upstream,
    policy: PathBuf,
    a: String,
    b: String,
    c: String,
}

fn fixture() -> Fixture {
    let env = Env::new();
    let (a, b, c) = (secret("alpha"), secret("beta"), secret("gamma"));
    let trusted = test_ca();
    let untrusted = test_ca();
    let signal = env.ws().join("sse-got-first");
    let good = upstream(
        trusted.server_config(&["api.creds.test"]),
        a.clone(),
        signal.clone(),
    );
    let bad = upstream(
        untrusted.server_config(&["bad.creds.test"]),
        c.clone(),
        signal,
    );
    std::fs::write(env.path("ca.pem"), trusted.pem()).expect("ca");
    let policy = env.path("policy.toml");
    std::fs::write(
        &policy,
        Pinned::new()
            .pin("api.creds.test", "127.0.0.1", &[good.port])
            .pin("bad.creds.test", "127.0.0.1", &[bad.port])
            .policy_toml()
            + &format!(
                r#"
[[credentials]]
name = "test-alpha"
env = "AIRLOCK_TEST_SECRET_A"
hosts = ["api.creds.test"]
body = true

[[credentials]]
name = "test-beta"
env = "AIRLOCK_TEST_SECRET_B"
hosts = ["other.creds.test"]

[[credentials]]
name = "test-gamma"
env = "AIRLOCK_TEST_SECRET_C"
hosts = ["bad.creds.test"]

[tls]
extra_roots = ["{ca}"]
"#,
                ca = env.path("ca.pem").display()
            ),
    )
    .expect("policy");
    make_readable(env.dir.path());
    Fixture {
        env,
        good,
        bad,
        policy,
        a,
        b,
        c,
    }
}

/// The unprivileged user must be able to use the per-test directory.
fn make_readable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
}

impl Fixture {
    fn vars(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("AIRLOCK_TEST_SECRET_A", self.a.as_str()),
            ("AIRLOCK_TEST_SECRET_B", self.b.as_str()),
            ("AIRLOCK_TEST_SECRET_C", self.c.as_str()),
        ]
    }

    fn run(&self, script: &str) -> Run {
        self.env.run(&self.policy, &self.vars(), script)
    }

    /// Fails if any secret appears in what the sandbox produced.
    fn assert_no_secret(&self, text: &str) {
        for s in [&self.a, &self.b, &self.c] {
            assert!(
                !text.contains(s.as_str()),
                "a secret reached the sandbox: {text}"
            );
        }
    }

    fn good_seen(&self) -> String {
        self.good.seen.lock().expect("lock").join("\n----\n")
    }
}

fn value_of<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {out}"))
}

/// The upstream sees the real secret (header, Basic credentials, opted-in body) while the
/// sandbox only ever holds the placeholder, and an upstream that echoes the request (headers,
/// body, a response header) hands the agent back only the placeholder.
#[test]
fn upstream_gets_the_secret_and_the_sandbox_only_the_placeholder() {
    let f = fixture();
    let port = f.good.port;
    let script = format!(
        "echo PH_A=$AIRLOCK_TEST_SECRET_A; echo SESSION=$AIRLOCK_SESSION; \
         curl -sS -m 10 -D - https://api.creds.test:{port}/echo \
           -H \"x-api-key: $AIRLOCK_TEST_SECRET_A\" -H \"authorization: Bearer $AIRLOCK_TEST_SECRET_A\" \
           --data-binary \"{{\\\"key\\\":\\\"$AIRLOCK_TEST_SECRET_A\\\"}}\"; echo; \
         curl -sS -m 10 -u \"user:$AIRLOCK_TEST_SECRET_A\" https://api.creds.test:{port}/basic; echo; \
         echo BASIC_EXIT=$?"
    );
    let o = f.run(&script);
    let out = stdout(&o);
    let err = stderr(&o);
    o.assert_code(0);
    f.assert_no_secret(&out);
    f.assert_no_secret(&err);
    let ph = value_of(&out, "PH_A");
    assert!(
        ph.starts_with("sk-alpha-") && ph.len() == f.a.len() && ph != f.a,
        "{ph}"
    );
    // The echo came back with the placeholder in every place the secret was.
    assert!(out.contains(&format!("x-echo: {ph}")), "{out}");
    assert!(out.contains(&format!("x-api-key: {ph}")), "{out}");
    assert!(
        out.contains(&format!("authorization: Bearer {ph}")),
        "{out}"
    );
    assert!(out.contains(&format!("{{\"key\":\"{ph}\"}}")), "{out}");
    assert!(out.contains("basic-ok"), "{out}");
    // The upstream saw the real value everywhere and never the placeholder.
    let seen = f.good_seen();
    assert!(seen.contains(&format!("x-api-key: {}", f.a)), "{seen}");
    assert!(
        seen.contains(&format!("authorization: Bearer {}", f.a)),
        "{seen}"
    );
    assert!(seen.contains(&format!("{{\"key\":\"{}\"}}", f.a)), "{seen}");
    assert!(!seen.contains(ph), "{seen}");
    // Compressed answers could not be scrubbed: airlock asked for none.
    assert!(
        seen.to_ascii_lowercase()
            .contains("accept-encoding: identity"),
        "{seen}"
    );
}

/// Server-sent events stay streaming through the swap: the upstream sends the second event only
/// after the sandbox has received the first (it writes a file the upstream waits for), and a
/// secret split across two chunks is still replaced.
#[test]
fn sse_events_arrive_one_by_one_and_are_scrubbed() {
    let f = fixture();
    let port = f.good.port;
    let script = format!(
        "echo PH_A=$AIRLOCK_TEST_SECRET_A; \
         curl -sSN -m 20 https://api.creds.test:{port}/sse | while IFS= read -r l; do \
           [ -n \"$l\" ] && echo \"SSE $l\"; \
           case \"$l\" in *first*) : > sse-got-first;; esac; \
         done"
    );
    let start = Instant::now();
    let o = f.run(&script);
    let out = stdout(&o);
    o.assert_code(0);
    f.assert_no_secret(&out);
    let ph = value_of(&out, "PH_A");
    assert!(out.contains(&format!("SSE data: first {ph}")), "{out}");
    assert!(
        out.contains("SSE data: second after-signal"),
        "the first event was held back until the stream went on: {out}"
    );
    assert!(out.contains(&format!("SSE data: third {ph} end")), "{out}");
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
}

/// git over HTTPS with the token as the Basic password: git's first request gets 401, its
/// retry carries `Basic base64(user:placeholder)`, which the upstream receives with the secret.
#[test]
fn git_basic_auth_over_https_carries_the_secret_upstream() {
    let f = fixture();
    let port = f.good.port;
    let script = format!(
        "git -c credential.helper= ls-remote \
           \"https://x-access-token:$AIRLOCK_TEST_SECRET_A@api.creds.test:{port}/repo.git\" \
           && echo GIT_OK"
    );
    let o = f.run(&script);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(out.contains("GIT_OK"), "{out}{err}");
    f.assert_no_secret(&out);
    f.assert_no_secret(&err);
    let seen = f.good_seen();
    use base64::Engine as _;
    let want = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{}", f.a));
    assert!(seen.contains(&format!("Basic {want}")), "{seen}");
    assert!(seen.contains("git/"), "not git's request: {seen}");
}

/// An upstream whose certificate does not verify gets nothing (not even a request), the agent
/// gets a 502 naming the problem, and the audit log has the refusal.
#[test]
fn an_unverifiable_upstream_is_refused_and_audited() {
    let f = fixture();
    let port = f.bad.port;
    let script = format!(
        "echo SESSION=$AIRLOCK_SESSION; \
         curl -sS -m 10 -D - https://bad.creds.test:{port}/echo -H \"x-api-key: $AIRLOCK_TEST_SECRET_C\" | tr -d '\\r'"
    );
    let o = f.run(&script);
    let out = stdout(&o);
    f.assert_no_secret(&out);
    assert!(out.contains("HTTP/1.1 502"), "{out}{}", stderr(&o));
    assert!(
        out.contains("x-airlock-reason: tls.upstream: certificate not verified"),
        "{out}"
    );
    assert!(out.contains("extra_roots"), "{out}");
    assert!(f.bad.seen.lock().expect("lock").is_empty());
    let events = f.env.audit(value_of(&out, "SESSION"));
    assert!(
        events.iter().any(|e| e["decision"] == "deny"
            && e["host"] == "bad.creds.test"
            && e["rule"] == "tls.upstream: certificate not verified"),
        "{events:?}"
    );
}

/// A placeholder sent to a host outside its credential's scope is not replaced (the upstream
/// sees the placeholder) and the attempt is audited with the credential's name and the host.
#[test]
fn a_placeholder_outside_its_scope_is_not_replaced_and_is_audited() {
    let f = fixture();
    let port = f.good.port;
    let script = format!(
        "echo PH_B=$AIRLOCK_TEST_SECRET_B; echo SESSION=$AIRLOCK_SESSION; \
         curl -sS -m 10 -o /dev/null https://api.creds.test:{port}/echo -H \"x-stolen: $AIRLOCK_TEST_SECRET_B\"; \
         curl -sS -m 10 -o /dev/null \"https://api.creds.test:{port}/echo?k=$AIRLOCK_TEST_SECRET_B\"; \
         curl -sS -m 10 -o /dev/null -u \"u:$AIRLOCK_TEST_SECRET_B\" https://api.creds.test:{port}/echo"
    );
    let o = f.run(&script);
    let out = stdout(&o);
    o.assert_code(0);
    let ph = value_of(&out, "PH_B");
    let seen = f.good_seen();
    assert!(!seen.contains(&f.b), "{seen}");
    assert!(seen.contains(&format!("x-stolen: {ph}")), "{seen}");
    assert!(seen.contains(&format!("?k={ph}")), "{seen}");
    let events = f.env.audit(value_of(&out, "SESSION"));
    let scoped: Vec<_> = events
        .iter()
        .filter(|e| {
            e["decision"] == "deny"
                && e["host"] == "api.creds.test"
                && e["rule"].as_str().is_some_and(|r| r.contains("test-beta"))
        })
        .collect();
    assert!(!scoped.is_empty(), "{events:?}");
    assert!(
        scoped[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("test-beta") && r.contains("api.creds.test")),
        "{scoped:?}"
    );
}

/// From inside, the secrets' bytes appear nowhere the agent can read: its environment, every
/// process's environ and cmdline, the trust bundle, and every readable file outside /proc,
/// /sys and /dev. The sandbox copies what it can read into the workspace; the host searches it
/// (the secret is never given to the sandbox to search for).
#[test]
fn the_secret_is_nowhere_inside() {
    let f = fixture();
    let port = f.good.port;
    let script = format!(
        "curl -sS -m 10 -o /dev/null https://api.creds.test:{port}/echo -H \"x-api-key: $AIRLOCK_TEST_SECRET_A\"; \
         sleep 30 & \
         env > dump-env; cat /proc/[0-9]*/environ > dump-environ 2>/dev/null; \
         cat /proc/[0-9]*/cmdline > dump-cmdline 2>/dev/null; \
         cat \"$SSL_CERT_FILE\" > dump-bundle; \
         echo BUNDLE=$SSL_CERT_FILE NODE=$NODE_EXTRA_CA_CERTS GIT=$GIT_SSL_CAINFO; \
         find / \\( -path /proc -o -path /sys -o -path /dev -o -path \"$PWD\" \\) -prune -o \
           -type f -readable -size -1M -print 2>/dev/null | head -n 200000 > dump-files-list; \
         wc -l < dump-files-list"
    );
    let o = f.run(&script);
    let out = stdout(&o);
    o.assert_code(0);
    assert!(
        out.contains("BUNDLE=/run/airlock/ca-bundle.pem NODE=/run/airlock/ca-bundle.pem GIT=/run/airlock/ca-bundle.pem"),
        "{out}"
    );
    let ws = f.env.ws();
    for dump in ["dump-env", "dump-environ", "dump-cmdline", "dump-bundle"] {
        let bytes = std::fs::read(ws.join(dump)).expect("dump");
        assert!(!bytes.is_empty(), "{dump} is empty");
        let text = String::from_utf8_lossy(&bytes);
        f.assert_no_secret(&text);
    }
    let bundle = std::fs::read_to_string(ws.join("dump-bundle")).expect("bundle");
    assert!(bundle.contains("airlock session CA") && !bundle.contains("PRIVATE KEY"));
    // Files the sandbox can read are the host's files it binds (read here, as the same user,
    // through the same paths) and its own tmpfs; the list says which.
    let list = std::fs::read_to_string(ws.join("dump-files-list")).expect("list");
    assert!(
        list.lines().count() > 100,
        "the file walk found too little: {list}"
    );
    let needles: Vec<&[u8]> = vec![f.a.as_bytes(), f.b.as_bytes(), f.c.as_bytes()];
    for path in list.lines() {
        if let Ok(bytes) = std::fs::read(path) {
            for n in &needles {
                assert!(
                    !bytes.windows(n.len()).any(|w| w == *n),
                    "{path} holds a secret"
                );
            }
        }
    }
}

/// Bad credential configuration is a clear error at start naming the credential and the
/// source, with exit 125, and nothing started (no session directory).
#[test]
fn bad_credential_config_is_a_125_naming_credential_and_source() {
    let env = Env::new();
    let cases = [
        (
            "[[credentials]]\nname = \"unset\"\nenv = \"AIRLOCK_TEST_NEVER_SET\"\nhosts = [\"a.test\"]\n",
            vec!["credential unset", "AIRLOCK_TEST_NEVER_SET"],
        ),
        (
            "[[credentials]]\nname = \"empty\"\nenv = \"AIRLOCK_TEST_EMPTY\"\nhosts = [\"a.test\"]\n",
            vec!["credential empty", "AIRLOCK_TEST_EMPTY", "empty"],
        ),
        (
            "[[credentials]]\nname = \"nofile\"\nfile = \"/nonexistent/key\"\nhosts = [\"a.test\"]\n",
            vec!["credential nofile", "/nonexistent/key"],
        ),
        (
            "[[credentials]]\nname = \"ptr\"\njson = { file = \"JSON\", pointer = \"/a/missing\" }\nhosts = [\"a.test\"]\n",
            vec!["credential ptr", "/a/missing", "finds nothing"],
        ),
        (
            "[[credentials]]\nname = \"pat\"\nenv = \"AIRLOCK_TEST_SET\"\nhosts = [\"*.com\"]\n",
            vec!["credentials[0] (pat)", "hosts[0]"],
        ),
        (
            "[[credentials]]\nname = \"roots\"\nenv = \"AIRLOCK_TEST_SET\"\nhosts = [\"a.test\"]\n[tls]\nextra_roots = [\"/nonexistent/ca.pem\"]\n",
            vec!["extra_roots", "/nonexistent/ca.pem"],
        ),
    ];
    let json = env.path("c.json");
    std::fs::write(&json, "{\"a\": {\"b\": \"x\"}}").expect("json");
    for (text, wants) in cases {
        let policy = env.path("bad.toml");
        std::fs::write(&policy, text.replace("JSON", &json.display().to_string())).expect("write");
        let o = env
            .airlock()
            .args(["run", "--policy"])
            .arg(&policy)
            .args(["--", "sh", "-c", "echo STARTED"])
            .env("AIRLOCK_TEST_EMPTY", "")
            .env("AIRLOCK_TEST_SET", "sk-x-0123456789abcdef0123")
            .run();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(125), "{text}: {err}");
        assert!(!stdout(&o).contains("STARTED"), "{text}");
        for w in wants {
            assert!(err.contains(w), "{text}: want '{w}' in: {err}");
        }
        let sessions = env.path("data/airlock/sessions");
        assert!(
            std::fs::read_dir(&sessions).map_or(true, |d| d.count() == 0),
            "{text}: a session was started"
        );
    }
}

/// `airlock creds` lists name, source, hosts and presence, and Claude OAuth's expiry and
/// subscription from the file, without printing any secret (human and JSON).
#[test]
fn creds_lists_without_printing_secrets() {
    let env = Env::new();
    let home = env.path("home");
    std::fs::create_dir_all(home.join(".claude")).expect("mkdir");
    let (access, refresh, key) = (
        secret("ant-oat01"),
        secret("ant-ort01"),
        secret("ant-api03"),
    );
    std::fs::write(
        home.join(".claude/.credentials.json"),
        format!(
            r#"{{"claudeAiOauth":{{"accessToken":"{access}","refreshToken":"{refresh}","expiresAt":4102444800000,"scopes":["user:inference"],"subscriptionType":"max"}}}}"#
        ),
    )
    .expect("write");
    let policy = env.path("p.toml");
    std::fs::write(
        &policy,
        "[[credentials]]\nname = \"mine\"\nenv = \"AIRLOCK_TEST_NEVER_SET\"\nhosts = [\"a.test\"]\n",
    )
    .expect("write");
    for json in [false, true] {
        let mut c = env.airlock();
        c.args(["creds", "--policy"]).arg(&policy);
        if json {
            c.arg("--json");
        }
        let o = c.env("HOME", &home).env("ANTHROPIC_API_KEY", &key).run();
        let out = stdout(&o);
        o.assert_code(0);
        for s in [&access, &refresh, &key] {
            assert!(
                !out.contains(s.as_str()) && !stderr(&o).contains(s.as_str()),
                "{out}"
            );
        }
        assert!(
            out.contains("anthropic") && out.contains("ANTHROPIC_API_KEY"),
            "{out}"
        );
        assert!(
            out.contains("claude-oauth-access") && out.contains("claude-oauth-refresh"),
            "{out}"
        );
        assert!(
            out.contains("mine") && out.contains("AIRLOCK_TEST_NEVER_SET"),
            "{out}"
        );
        assert!(out.contains("max"), "{out}");
        if json {
            let rows: Vec<serde_json::Value> = out
                .lines()
                .map(|l| serde_json::from_str(l).expect("json"))
                .collect();
            let mine = rows.iter().find(|r| r["name"] == "mine").expect("mine");
            assert_eq!(mine["present"], false);
            let oauth = rows
                .iter()
                .find(|r| r["name"] == "claude-oauth-access")
                .expect("oauth");
            assert_eq!(oauth["present"], true);
            assert_eq!(oauth["oauth"]["subscription_type"], "max");
            assert_eq!(oauth["oauth"]["expired"], false);
            assert_eq!(oauth["oauth"]["expires_at_ms"], 4102444800000_i64);
            assert!(
                rows.iter().all(|r| r["name"] != "openai"),
                "absent defaults are not listed"
            );
        } else {
            assert!(out.contains("MISSING"), "{out}");
        }
    }
}

/// A plain-HTTP request carrying a placeholder is not given the secret (never over plaintext)
/// and is audited.
#[test]
fn a_placeholder_over_plain_http_is_audited() {
    let f = fixture();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            if let Some((head, _)) = read_request(&mut s) {
                seen2.lock().expect("lock").push(head);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            }
        }
    });
    let policy = f.env.path("plain.toml");
    let text = std::fs::read_to_string(&f.policy)
        .expect("policy")
        .replace(
            "[network.ports]\n",
            &format!("[network.ports]\n\"plain.creds.test\" = [{port}]\n"),
        )
        .replace(
            "[network.resolve]\n",
            "[network.resolve]\n\"plain.creds.test\" = \"127.0.0.1\"\n",
        )
        + "\n[network]\n";
    // A second [network] table is not TOML: put allow in the first one instead.
    let text = text.replacen(
        "[network]\n",
        "[network]\nallow = [\"plain.creds.test\"]\n",
        1,
    );
    let text = text.trim_end_matches("\n[network]\n").to_string() + "\n";
    std::fs::write(&policy, text).expect("write");
    let o = f.env.run(
        &policy,
        &f.vars(),
        &format!(
            "echo SESSION=$AIRLOCK_SESSION; curl -sS -m 10 http://plain.creds.test:{port}/ -H \"x-api-key: $AIRLOCK_TEST_SECRET_A\"; echo"
        ),
    );
    let out = stdout(&o);
    assert!(out.contains("ok"), "{out}{}", stderr(&o));
    let seen = seen.lock().expect("lock").join("\n");
    assert!(!seen.contains(&f.a), "{seen}");
    let events = f.env.audit(value_of(&out, "SESSION"));
    assert!(
        events.iter().any(|e| e["host"] == "plain.creds.test"
            && e["rule"].as_str().is_some_and(|r| r.contains("test-alpha"))),
        "{events:?}"
    );
    let _ = TcpStream::connect(("127.0.0.1", port));
}

/// The OAuth refresh flow (as Claude Code does it): the refresh placeholder posted to the token
/// endpoint becomes the real refresh token; the new real tokens in the answer become new
/// placeholders for the agent, and work on the next request; the host's credentials file gets
/// the new real pair (and a new expiry), with its other fields and permissions kept.
#[test]
fn oauth_refresh_rotates_placeholders_and_updates_the_host_file() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let (access, refresh) = (secret("ant-oat01"), secret("ant-ort01"));
    let ca = test_ca();
    let up = upstream(
        ca.server_config(&["api.creds.test"]),
        refresh.clone(),
        env.path("none"),
    );
    std::fs::write(env.path("ca.pem"), ca.pem()).expect("ca");
    let file = env.path("credentials.json");
    std::fs::write(
        &file,
        format!(
            r#"{{"claudeAiOauth":{{"accessToken":"{access}","refreshToken":"{refresh}","expiresAt":1,"subscriptionType":"max"}}}}"#
        ),
    )
    .expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let policy = env.path("policy.toml");
    std::fs::write(
        &policy,
        Pinned::new()
            .pin("api.creds.test", "127.0.0.1", &[up.port])
            .policy_toml()
            + &format!(
                r#"[[credentials]]
name = "t-access"
json = {{ file = "{file}", pointer = "/claudeAiOauth/accessToken" }}
hosts = ["api.creds.test"]
placeholder_env = "T_ACCESS"
[[credentials]]
name = "t-refresh"
json = {{ file = "{file}", pointer = "/claudeAiOauth/refreshToken" }}
hosts = ["api.creds.test"]
body = true
placeholder_env = "T_REFRESH"
[tls]
extra_roots = ["{ca}"]
"#,
                file = file.display(),
                ca = env.path("ca.pem").display()
            ),
    )
    .expect("policy");
    make_readable(env.dir.path());
    let port = up.port;
    let script = format!(
        "echo PH_A=$T_ACCESS; echo PH_R=$T_REFRESH; \
         curl -sS -m 10 https://api.creds.test:{port}/v1/oauth/token -H 'content-type: application/json' \
           --data-binary \"{{\\\"grant_type\\\":\\\"refresh_token\\\",\\\"refresh_token\\\":\\\"$T_REFRESH\\\"}}\" > tok.json; \
         echo; cat tok.json; echo; \
         echo NEW_A=$(python3 -c 'import json;print(json.load(open(\"tok.json\"))[\"access_token\"])'); \
         echo NEW_R=$(python3 -c 'import json;print(json.load(open(\"tok.json\"))[\"refresh_token\"])'); \
         curl -sS -m 10 -o /dev/null https://api.creds.test:{port}/echo -H \"authorization: Bearer $(python3 -c 'import json;print(json.load(open(\"tok.json\"))[\"access_token\"])')\"; \
         echo DONE"
    );
    let o = env.run(&policy, &[], &script);
    let out = stdout(&o);
    assert!(out.contains("DONE"), "{out}{}", stderr(&o));
    let (access2, refresh2) = (rotated(&refresh, "access2"), rotated(&refresh, "refresh2"));
    for s in [&access, &refresh, &access2, &refresh2] {
        assert!(
            !out.contains(s.as_str()) && !stderr(&o).contains(s.as_str()),
            "a secret reached the sandbox: {out}"
        );
    }
    let (ph_a, ph_r) = (value_of(&out, "PH_A"), value_of(&out, "PH_R"));
    let (new_a, new_r) = (value_of(&out, "NEW_A"), value_of(&out, "NEW_R"));
    assert!(
        new_a.starts_with("sk-access2-") && new_a.len() == access2.len(),
        "{out}"
    );
    assert!(new_r.starts_with("sk-refresh2-") && new_r != ph_r, "{out}");
    assert_ne!(new_a, ph_a);
    let seen = up.seen.lock().expect("lock").join("\n----\n");
    assert!(
        seen.contains(&format!("\"refresh_token\":\"{refresh}\"")),
        "{seen}"
    );
    assert!(
        seen.contains(&format!("authorization: Bearer {access2}")),
        "the new placeholder must work: {seen}"
    );
    let host: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
    assert_eq!(host["claudeAiOauth"]["accessToken"], access2.as_str());
    assert_eq!(host["claudeAiOauth"]["refreshToken"], refresh2.as_str());
    assert_eq!(host["claudeAiOauth"]["subscriptionType"], "max");
    assert!(
        host["claudeAiOauth"]["expiresAt"].as_u64() > Some(1_700_000_000_000),
        "{host}"
    );
    let mode = std::fs::metadata(&file).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// With Claude Code's OAuth login on the host (a zero-config default), the agent's own
/// `~/.claude/.credentials.json` holds placeholders of the same shape, keeps the other fields,
/// and is writable (Claude Code stores refreshed tokens there); the real tokens are nowhere in
/// the sandbox or in the agent's state directory on the host.
#[test]
fn claude_code_sees_a_placeholder_credentials_file() {
    let env = Env::new();
    let home = env.path("home");
    std::fs::create_dir_all(home.join(".claude")).expect("mkdir");
    let (access, refresh) = (secret("ant-oat01"), secret("ant-ort01"));
    std::fs::write(
        home.join(".claude/.credentials.json"),
        format!(
            r#"{{"claudeAiOauth":{{"accessToken":"{access}","refreshToken":"{refresh}","expiresAt":4102444800000,"subscriptionType":"max"}},"otherTool":{{"token":"{access}"}}}}"#
        ),
    )
    .expect("write");
    make_readable(env.dir.path());
    let o = env
        .airlock()
        .env("HOME", &home)
        .args([
            "run", "--agent", "claude", "--mode", "bind", "--", "sh", "-c",
        ])
        .arg(
            "cat ~/.claude/.credentials.json; echo; echo '{}' > /dev/null; \
              cp ~/.claude/.credentials.json ~/.claude/.credentials.json.new && \
              mv ~/.claude/.credentials.json.new ~/.claude/.credentials.json && echo WRITABLE",
        )
        .run();
    let out = stdout(&o);
    assert!(out.contains("WRITABLE"), "{out}{}", stderr(&o));
    assert!(!out.contains(&access) && !out.contains(&refresh), "{out}");
    let json_text: String = out
        .lines()
        .take_while(|l| !l.starts_with("WRITABLE"))
        .collect();
    let v: serde_json::Value = serde_json::from_str(&json_text).expect("the file is JSON");
    let a = v["claudeAiOauth"]["accessToken"].as_str().expect("access");
    let r = v["claudeAiOauth"]["refreshToken"]
        .as_str()
        .expect("refresh");
    assert!(
        a.starts_with("sk-ant-oat01-") && a.len() == access.len() && a != access,
        "{a}"
    );
    assert!(
        r.starts_with("sk-ant-ort01-") && r.len() == refresh.len() && r != refresh,
        "{r}"
    );
    assert_eq!(v["claudeAiOauth"]["subscriptionType"], "max");
    assert!(
        v.get("otherTool").is_none(),
        "only claudeAiOauth is copied: {v}"
    );
    // The state directory on the host holds no real token either.
    let state = env.path("data/airlock/state");
    let mut stack = vec![state];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(t) = std::fs::read_to_string(&p) {
                assert!(
                    !t.contains(&access) && !t.contains(&refresh),
                    "{}",
                    p.display()
                );
            }
        }
    }
}

/// The plain-HTTP reverse-proxy mode: a client given `T_BASE_URL` (no proxy, no TLS inside)
/// reaches the credential's host over verified TLS with the same swaps; a name without that
/// mode is refused.
#[test]
fn reverse_proxy_mode_swaps_like_the_tunnel() {
    let f = fixture();
    let policy = f.env.path("reverse.toml");
    let text = std::fs::read_to_string(&f.policy).expect("policy").replace(
        "name = \"test-alpha\"\n",
        "name = \"test-alpha\"\nreverse_proxy_env = \"T_BASE_URL\"\n",
    );
    std::fs::write(&policy, text).expect("write");
    let o = f.env.run(
        &policy,
        &f.vars(),
        "echo PH_A=$AIRLOCK_TEST_SECRET_A; echo BASE=$T_BASE_URL; \
         curl -sS -m 10 \"$T_BASE_URL/echo?x=1\" -H \"x-api-key: $AIRLOCK_TEST_SECRET_A\"; echo; \
         curl -sS -m 10 -o /dev/null -w 'OTHER=%{http_code}\\n' http://127.0.0.1:3128/airlock/cred/test-beta/echo",
    );
    let out = stdout(&o);
    o.assert_code(0);
    f.assert_no_secret(&out);
    let ph = value_of(&out, "PH_A");
    assert_eq!(
        value_of(&out, "BASE"),
        "http://127.0.0.1:3128/airlock/cred/test-alpha"
    );
    assert!(
        out.contains(&format!("x-echo: {ph}")) || out.contains(&format!("x-api-key: {ph}")),
        "{out}"
    );
    assert!(out.contains("GET /echo?x=1 HTTP/1.1"), "{out}");
    assert_eq!(value_of(&out, "OTHER"), "400");
    let seen = f.good_seen();
    assert!(seen.contains(&format!("x-api-key: {}", f.a)), "{seen}");
    assert!(
        seen.to_ascii_lowercase()
            .contains(&format!("host: api.creds.test:{}", f.good.port))
            || seen.contains("host: api.creds.test"),
        "{seen}"
    );
}

/// `inject` adds the header with the real value when the client sends none (and leaves a
/// client's own header alone); a response compressed against airlock's request is refused,
/// since it could not be scrubbed.
#[test]
fn inject_adds_the_header_and_compressed_answers_are_refused() {
    let f = fixture();
    let d = secret("delta");
    let policy = f.env.path("inject.toml");
    let text = std::fs::read_to_string(&f.policy).expect("policy").replace(
        "[tls]\n",
        "[[credentials]]\nname = \"test-delta\"\nenv = \"AIRLOCK_TEST_SECRET_D\"\nhosts = [\"api.creds.test\"]\n\
         inject = { header = \"x-injected\", value = \"Token {}\" }\n\n[tls]\n",
    );
    std::fs::write(&policy, text).expect("write");
    let mut vars = f.vars();
    vars.push(("AIRLOCK_TEST_SECRET_D", d.as_str()));
    let port = f.good.port;
    let o = f.env.run(
        &policy,
        &vars,
        &format!(
            "echo PH_D=$AIRLOCK_TEST_SECRET_D; \
             curl -sS -m 10 https://api.creds.test:{port}/echo/one; echo; \
             curl -sS -m 10 https://api.creds.test:{port}/echo/two -H 'x-injected: mine'; echo; \
             curl -sS -m 10 -o /dev/null -w 'GZIP=%{{http_code}}\\n' https://api.creds.test:{port}/gzip"
        ),
    );
    let out = stdout(&o);
    o.assert_code(0);
    assert!(!out.contains(&d), "{out}");
    f.assert_no_secret(&out);
    let ph = value_of(&out, "PH_D");
    assert!(out.contains(&format!("x-injected: Token {ph}")), "{out}");
    assert!(out.contains("x-injected: mine"), "{out}");
    assert_eq!(value_of(&out, "GZIP"), "502");
    let seen = f.good_seen();
    assert!(
        seen.contains("GET /echo/one HTTP/1.1") && seen.contains(&format!("x-injected: Token {d}")),
        "{seen}"
    );
    assert!(seen.contains("x-injected: mine"), "{seen}");
}

/// Domain fronting: inside a tunnel to a credential host, a request naming another host (its
/// `Host` header, a different port, an absolute-form target, two `Host` headers) is refused
/// with 421 and audited, and never reaches the upstream; the tunnel's own name, in any case,
/// still works.
#[test]
fn a_request_naming_another_host_is_refused_with_421() {
    let f = fixture();
    let port = f.good.port;
    let url = format!("https://api.creds.test:{port}/echo");
    let auth = "-H \"authorization: Bearer $AIRLOCK_TEST_SECRET_A\"";
    let code = "-o /dev/null -w '%{http_code}\\n'";
    // curl sends only the first of two Host headers: python's client sends both.
    let two = format!(
        "import http.client,os,ssl; \
         c=http.client.HTTPSConnection('127.0.0.1',3128,context=ssl.create_default_context(),timeout=10); \
         c.set_tunnel('api.creds.test',{port}); \
         c.putrequest('GET','/echo/two',skip_host=True); \
         c.putheader('Host','api.creds.test:{port}'); c.putheader('Host','evil.example'); \
         c.putheader('authorization','Bearer '+os.environ['AIRLOCK_TEST_SECRET_A']); \
         c.endheaders(); print(c.getresponse().status)"
    );
    let script = format!(
        "echo SESSION=$AIRLOCK_SESSION; \
         echo EVIL=$(curl -sS -m 10 {code} {url}/evil -H 'Host: evil.example' {auth}); \
         echo EVILPORT=$(curl -sS -m 10 {code} {url}/evilport -H 'Host: evil.example:{port}' {auth}); \
         echo OTHERPORT=$(curl -sS -m 10 {code} {url}/otherport -H 'Host: api.creds.test:1' {auth}); \
         echo ABSOLUTE=$(curl -sS -m 10 {code} {url}/absolute --request-target 'https://evil.example/echo/absolute' {auth}); \
         echo TWO=$(python3 -c \"{two}\"); \
         echo OWN=$(curl -sS -m 10 {code} {url}/own -H 'Host: API.Creds.Test:{port}' {auth})"
    );
    let o = f.run(&script);
    let out = stdout(&o);
    o.assert_code(0);
    for k in ["EVIL", "EVILPORT", "OTHERPORT", "ABSOLUTE", "TWO"] {
        assert_eq!(value_of(&out, k), "421", "{k}: {out}");
    }
    assert_eq!(value_of(&out, "OWN"), "200", "{out}");
    let seen = f.good_seen();
    for path in ["/evil", "/otherport", "/absolute", "/two"] {
        assert!(!seen.contains(&format!("/echo{path} ")), "{path}: {seen}");
    }
    assert!(
        !seen.to_ascii_lowercase().contains("evil.example"),
        "{seen}"
    );
    assert!(seen.contains("/echo/own "), "{seen}");
    let events = f.env.audit(value_of(&out, "SESSION"));
    assert!(
        events.iter().any(|e| e["decision"] == "deny"
            && e["host"] == "api.creds.test"
            && e["rule"]
                .as_str()
                .is_some_and(|r| r.starts_with("credentials.host"))
            && e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("evil.example"))),
        "{events:?}"
    );
}

/// The secret goes only where credentials are carried: `authorization` (Bearer, Basic),
/// `x-api-key` and a configured `headers` entry get it; a placeholder in any other header, the
/// path or the query reaches the upstream unchanged (so no echo of them, in whatever encoding,
/// can hand the secret back) and is audited as misplaced.
#[test]
fn the_secret_is_swapped_only_into_credential_headers() {
    let f = fixture();
    let policy = f.env.path("headers.toml");
    let text = std::fs::read_to_string(&f.policy).expect("policy").replace(
        "name = \"test-alpha\"\n",
        "name = \"test-alpha\"\nheaders = [\"X-Custom-Key\"]\n",
    );
    std::fs::write(&policy, text).expect("write");
    let port = f.good.port;
    let url = format!("https://api.creds.test:{port}");
    let o = f.env.run(
        &policy,
        &f.vars(),
        &format!(
            "echo PH_A=$AIRLOCK_TEST_SECRET_A; echo SESSION=$AIRLOCK_SESSION; P=$AIRLOCK_TEST_SECRET_A; \
             curl -sS -m 10 -o /dev/null {url}/echo/hdr -H \"x-foo: $P\" -H \"x-echo-me: a${{P}}b\" -H 'x-mark: 1'; \
             curl -sS -m 10 -o /dev/null {url}/echo/path/$P; \
             curl -sS -m 10 -o /dev/null \"{url}/echo/query?k=$P&r=x\"; \
             curl -sS -m 10 -o /dev/null {url}/echo/custom -H \"x-custom-key: $P\"; \
             curl -sS -m 10 -o /dev/null {url}/echo/key -H \"x-api-key: $P\"; \
             curl -sS -m 10 -o /dev/null {url}/echo/bearer -H \"authorization: Bearer $P\"; \
             curl -sS -m 10 -u \"x-access-token:$P\" {url}/basic; echo"
        ),
    );
    let out = stdout(&o);
    o.assert_code(0);
    f.assert_no_secret(&out);
    let ph = value_of(&out, "PH_A").to_string();
    let a = &f.a;
    assert!(out.contains("basic-ok"), "{out}");
    let seen = f.good_seen();
    let request = |path: &str| {
        seen.split("\n----\n")
            .find(|r| r.contains(&format!("GET /echo/{path}")))
            .unwrap_or_else(|| panic!("no request {path}: {seen}"))
            .to_string()
    };
    // Not carried: unchanged.
    let hdr = request("hdr");
    assert!(hdr.contains(&format!("x-foo: {ph}")), "{hdr}");
    assert!(hdr.contains(&format!("x-echo-me: a{ph}b")), "{hdr}");
    assert!(request(&format!("path/{ph}")).contains(&format!("/echo/path/{ph} ")));
    assert!(
        request("query").contains(&format!("?k={ph}&r=x ")),
        "{seen}"
    );
    // Carried: swapped.
    assert!(
        request("custom").contains(&format!("x-custom-key: {a}")),
        "{seen}"
    );
    assert!(
        request("key").contains(&format!("x-api-key: {a}")),
        "{seen}"
    );
    assert!(
        request("bearer").contains(&format!("authorization: Bearer {a}")),
        "{seen}"
    );
    for r in ["hdr", "query"] {
        assert!(!request(r).contains(a.as_str()), "{r}: {seen}");
    }
    assert!(
        !request(&format!("path/{ph}")).contains(a.as_str()),
        "{seen}"
    );
    let events = f.env.audit(value_of(&out, "SESSION"));
    let misplaced: Vec<_> = events
        .iter()
        .filter(|e| {
            e["decision"] == "deny"
                && e["host"] == "api.creds.test"
                && e["rule"].as_str().is_some_and(|r| {
                    r.starts_with("credentials.headers") && r.contains("test-alpha")
                })
        })
        .collect();
    assert!(!misplaced.is_empty(), "{events:?}");
}
