//! The push guard end to end: git's own `git http-backend` as a CGI behind a TLS server on
//! loopback (`git.creds.test`, a credential host), the real git client inside `airlock run`
//! holding only the placeholder. Allowed pushes land; force-push (two kinds), deletion, a tag,
//! the default branch, a branch outside the patterns and a mixed push are refused with the
//! reason in git's output, change nothing on the server, and are audited.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use super::{make_readable, secret, stderr, stdout, test_ca, value_of, Env};
use airlock_test_support::Pinned;
use airlock_test_support::RunExt;

/// A smart-HTTP git server over TLS: every request is handed to `git http-backend` (CGI) for
/// the bare repositories under `root`, if its Basic password is `want`; else 401. `auth`
/// records each request: its request line, the first 200 bytes of its body, its `Authorization`.
struct GitServer {
    port: u16,
    auth: Arc<Mutex<Vec<String>>>,
}

fn git_server(config: Arc<rustls::ServerConfig>, root: PathBuf, want: String) -> GitServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let auth: Arc<Mutex<Vec<String>>> = Arc::default();
    let auth2 = auth.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (config, root, want, auth) =
                (config.clone(), root.clone(), want.clone(), auth2.clone());
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut s = BufReader::new(rustls::StreamOwned::new(conn, tcp));
                while let Some((head, body)) = read_request(&mut s) {
                    let out = serve(&head, &body, &root, &want, &auth);
                    if s.get_mut()
                        .write_all(&out)
                        .and_then(|()| s.get_mut().flush())
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    GitServer { port, auth }
}

/// One request: head lines and the body (Content-Length or chunked).
fn read_request(s: &mut impl BufRead) -> Option<(Vec<String>, Vec<u8>)> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let get = |name: &str| super::header(&head.join("\r\n"), name).map(str::to_string);
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            s.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0u8; n + 2];
            s.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body = vec![0u8; n];
        s.read_exact(&mut body).ok()?;
    }
    Some((head, body))
}

fn serve(
    head: &[String],
    body: &[u8],
    root: &Path,
    want: &str,
    auth: &Mutex<Vec<String>>,
) -> Vec<u8> {
    let joined = head.join("\r\n");
    let authorization = super::header(&joined, "authorization")
        .unwrap_or("")
        .to_string();
    auth.lock().expect("lock").push(format!(
        "{} body={}\n{authorization}",
        head[0],
        String::from_utf8_lossy(&body[..body.len().min(200)])
    ));
    let ok = {
        use base64::Engine as _;
        authorization
            .strip_prefix("Basic ")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .is_some_and(|d| String::from_utf8_lossy(&d).ends_with(&format!(":{want}")))
    };
    let from_guard = super::header(&joined, "user-agent").is_some_and(|u| u.contains("airlock"));
    if from_guard && root.join("no-advertisement").exists() {
        return b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n".to_vec();
    }
    if !ok {
        return b"HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Basic realm=\"git\"\r\ncontent-length: 0\r\n\r\n".to_vec();
    }
    let mut words = head[0].split(' ');
    let method = words.next().unwrap_or("GET");
    let target = words.next().unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut cgi = Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REMOTE_USER", "agent")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env(
            "CONTENT_TYPE",
            super::header(&joined, "content-type").unwrap_or(""),
        )
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("git http-backend");
    let mut stdin = cgi.stdin.take().expect("stdin");
    let body = body.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let out = cgi.wait_with_output().expect("cgi output");
    let _ = feeder.join();
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| {
            out.stdout
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, 2))
        })
        .expect("cgi headers");
    let cgi_head = String::from_utf8_lossy(&out.stdout[..split.0]).into_owned();
    let cgi_body = &out.stdout[split.0 + split.1..];
    let mut status = "200 OK".to_string();
    let mut resp = String::new();
    for line in cgi_head.lines() {
        match line.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some(_) => resp.push_str(&format!("{}\r\n", line.trim_end())),
            None => {}
        }
    }
    let mut bytes = format!(
        "HTTP/1.1 {status}\r\n{resp}content-length: {}\r\n\r\n",
        cgi_body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(cgi_body);
    bytes
}

/// Runs host git (on the test's own repositories, never the sandbox's).
fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .run();
    assert!(o.status.success(), "git {args:?}: {}", stderr(&o));
    stdout(&o).trim().to_string()
}

/// The server's refs: name -> id.
fn refs(repo: &Path) -> HashMap<String, String> {
    git(repo, &["for-each-ref", "--format=%(refname) %(objectname)"])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(r, o)| (r.to_string(), o.to_string()))
        .collect()
}

/// Every step the agent tries, in order: (name, git command, expected outcome).
const SCRIPT: &str = r#"
set -u
echo "SESSION=$AIRLOCK_SESSION"
echo "PH=$AIRLOCK_TEST_SECRET_G"
export GIT_TERMINAL_PROMPT=0
g() { git -c credential.helper= -c user.name=agent -c user.email=a@b -c advice.detachedHead=false "$@"; }
step() { name=$1; shift; echo "== $name"; if "$@" 2>&1; then echo "RESULT $name ok"; else echo "RESULT $name refused"; fi; }
rm -rf w; g clone -q "https://x-access-token:$AIRLOCK_TEST_SECRET_G@git.creds.test:PORT/repo.git" w >/dev/null 2>clone.err || { echo CLONE_FAILED; cat clone.err; exit 1; }
cd w
echo one > f && g add f && g commit -qm one
step create g push origin HEAD:refs/heads/airlock/feature
head -c 3000000 /dev/urandom > big && g add big && g commit -qm two
step fast-forward g push origin HEAD:refs/heads/airlock/feature
echo "FF_TIP=$(g rev-parse HEAD)"
g reset -q --hard HEAD~1 && echo other >> f && g commit -qam rewritten
step force g push --force origin HEAD:refs/heads/airlock/feature
step rewind g push --force origin HEAD~1:refs/heads/airlock/feature
T=$(g rev-parse 'HEAD^{tree}'); OLD=$(g rev-parse origin/airlock/feature)
W='author x <x@y> 1700000000 +0000
committer x <x@y> 1700000000 +0000'
craft() { name=$1; shift; printf "$@" > "../$name.c"; C=$(g hash-object --literally -t commit -w "../$name.c"); step "$name" g push --force origin "$C:refs/heads/airlock/feature"; }
craft late-parent 'tree %s\n%s\nparent %s\n\nrewritten history\n' "$T" "$W" "$OLD"
craft parent-after-encoding 'tree %s\n%s\nencoding UTF-8\nparent %s\n\nx\n' "$T" "$W" "$OLD"
craft real-and-late-parent 'tree %s\nparent %s\n%s\nparent %s\n\nx\n' "$T" "$(g rev-parse HEAD)" "$W" "$OLD"
craft upper-case-parent 'tree %s\nparent %s\n%s\n\nx\n' "$T" "$(echo "$OLD" | tr a-f A-F)" "$W"
craft parent-twice 'tree %s\nparent %s\nparent %s\n%s\n\nx\n' "$T" "$OLD" "$OLD" "$W"
step delete g push origin :refs/heads/airlock/feature
g tag v1
step tag g push origin refs/tags/v1
g checkout -q -b m origin/main && echo m >> f2 && g add f2 && g commit -qm m
step main g push origin HEAD:refs/heads/main
step other-branch g push origin HEAD:refs/heads/feature
step mixed g push origin HEAD:refs/heads/airlock/second HEAD:refs/heads/main
step notes g push origin HEAD:refs/notes/commits
head -c 3000000 /dev/urandom > big2 && g add big2 && g commit -qm big2
step big-create g push origin HEAD:refs/heads/airlock/big
URL="https://x-access-token:$AIRLOCK_TEST_SECRET_G@git.creds.test:PORT/repo.git"
CT="content-type: application/x-git-receive-pack-request"
step garbage curl -sS -w '%{http_code}\n' --data-binary 0032garbage -H "$CT" "$URL/git-receive-pack"
step encoded-delete curl -sS -w '%{http_code}\n' --data-binary @../del.body "$URL/git%2Dreceive-pack"
step no-type-delete curl -sS -w '%{http_code}\n' --data-binary @../del.body "$URL/GIT-RECEIVE-PACK"
"#;

/// The results of `SCRIPT`: step name -> (ok, the step's output).
fn steps(out: &str) -> HashMap<String, (bool, String)> {
    let mut map = HashMap::new();
    let mut name = String::new();
    let mut text = String::new();
    for line in out.lines() {
        if let Some(n) = line.strip_prefix("== ") {
            name = n.to_string();
            text.clear();
        } else if let Some(r) = line.strip_prefix("RESULT ") {
            let (n, verdict) = r.split_once(' ').expect("result");
            assert_eq!(n, name);
            map.insert(name.clone(), (verdict == "ok", text.clone()));
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    map
}

/// A server with `repo.git` (one commit on `main`), a policy with a credential for it plus
/// `git_policy`, and the refs before anything ran.
struct Setup {
    env: Env,
    token: String,
    repo: PathBuf,
    before: HashMap<String, String>,
    server: GitServer,
    policy: PathBuf,
}

fn setup(git_policy: &str) -> Setup {
    let env = Env::new();
    let token = secret("git");
    let ca = test_ca();
    std::fs::write(env.path("ca.pem"), ca.pem()).expect("ca");
    let root = env.path("srv");
    std::fs::create_dir(&root).expect("srv");
    let repo = root.join("repo.git");
    let seed = env.path("seed");
    std::fs::create_dir(&seed).expect("seed");
    git(&seed, &["init", "-q"]);
    std::fs::write(seed.join("f"), "zero\n").expect("f");
    git(&seed, &["add", "f"]);
    git(&seed, &["commit", "-qm", "zero"]);
    let seed_s = seed.to_str().expect("utf8");
    git(&root, &["clone", "-q", "--bare", seed_s, "repo.git"]);
    git(&repo, &["config", "http.receivepack", "true"]);
    let before = refs(&repo);
    let server = git_server(ca.server_config(&["git.creds.test"]), root, token.clone());
    let policy = env.path("policy.toml");
    std::fs::write(
        &policy,
        Pinned::new()
            .pin("git.creds.test", "127.0.0.1", &[server.port])
            .policy_toml()
            + &format!(
                r#"
[[credentials]]
name = "git-host"
env = "AIRLOCK_TEST_SECRET_G"
hosts = ["git.creds.test"]

[tls]
extra_roots = ["{ca}"]
{git_policy}
"#,
                ca = env.path("ca.pem").display()
            ),
    )
    .expect("policy");
    make_readable(env.dir.path());
    Setup {
        env,
        token,
        repo,
        before,
        server,
        policy,
    }
}

impl Setup {
    /// Runs `script` (PORT replaced) inside; its stdout, stderr and step results.
    fn run(&self, script: &str) -> (String, String, HashMap<String, (bool, String)>) {
        let script = script.replace("PORT", &self.server.port.to_string());
        let o = self.env.run(
            &self.policy,
            &[("AIRLOCK_TEST_SECRET_G", &self.token)],
            &script,
        );
        let (out, err) = (stdout(&o), stderr(&o));
        assert!(
            !out.contains(&self.token) && !err.contains(&self.token),
            "the token reached the sandbox: {out}{err}"
        );
        assert!(!out.contains("CLONE_FAILED"), "{out}{err}");
        let results = steps(&out);
        (out, err, results)
    }
}

/// Allowed pushes land, every refused kind is refused with its reason in git's output and
/// leaves the server's refs as they were, the server saw the real token and the sandbox only
/// the placeholder, and the audit log has each decision with its rule.
#[test]
fn pushes_are_guarded_by_the_git_policy() {
    let t = setup("");
    // A hand-made deletion of airlock/feature, for the spellings git itself never sends.
    let first = format!(
        "{} {} refs/heads/airlock/feature\0report-status",
        "1".repeat(40),
        "0".repeat(40)
    );
    std::fs::write(
        t.env.ws().join("del.body"),
        format!("{:04x}{first}0000", first.len() + 4),
    )
    .expect("body");
    let (out, err, results) = t.run(SCRIPT);
    let (token, repo, before, server, env) = (&t.token, &t.repo, &t.before, &t.server, &t.env);
    let ph = value_of(&out, "PH");
    assert_eq!(ph.len(), token.len());
    assert_ne!(ph, token);
    let after = refs(repo);

    // Allowed: creating and fast-forwarding a branch under airlock/.
    for name in ["create", "fast-forward"] {
        assert!(results[name].0, "{name} was refused: {out}{err}");
    }
    assert_eq!(
        after.get("refs/heads/airlock/feature").map(String::as_str),
        Some(value_of(&out, "FF_TIP")),
        "{out}"
    );

    // Refused, with the reason where the agent reads it.
    let refused = [
        ("force", "not a fast-forward"),
        ("rewind", "not a fast-forward"),
        // R3: commits whose parents git reads otherwise than a lax reader would.
        ("late-parent", "a 'parent' header out of place"),
        ("parent-after-encoding", "a 'parent' header out of place"),
        ("real-and-late-parent", "a 'parent' header out of place"),
        ("upper-case-parent", "not 40 lower-case hex digits"),
        ("parent-twice", "the same parent twice"),
        ("delete", "deleting refs is not allowed"),
        ("tag", "pushing tags is not allowed"),
        ("main", "default branch main is not allowed"),
        ("other-branch", "may only push branches matching airlock/*"),
        ("mixed", "default branch main is not allowed"),
        ("notes", "only branches (refs/heads/) and tags"),
    ];
    for (name, why) in refused {
        let (ok, text) = &results[name];
        assert!(!ok, "{name} was not refused: {text}");
        assert!(
            text.contains(why),
            "{name}: git did not show why ({why}): {text}"
        );
        assert!(text.contains("remote rejected"), "{name}: {text}");
    }
    // Large pushes (over git's 1 MiB post buffer: a probe, then a chunked body) pass: a
    // fast-forward (buffered, proven) above and a creation (streamed).
    assert!(results["big-create"].0, "{out}{err}");
    assert!(after.contains_key("refs/heads/airlock/big"), "{out}");
    // Bodies git would not send: unparsable, or the push path spelled otherwise.
    let (_, garbage) = &results["garbage"];
    assert!(
        garbage.contains("could not be checked") && garbage.contains("403"),
        "{garbage}"
    );
    for name in ["encoded-delete", "no-type-delete"] {
        let text = &results[name].1;
        assert!(
            text.contains("ng refs/heads/airlock/feature airlock: deleting refs is not allowed"),
            "{name}: {text}"
        );
    }
    assert!(
        results["mixed"]
            .1
            .contains("another ref in this push was refused"),
        "{out}"
    );
    // Nothing refused changed the server.
    let mut expected = before.clone();
    expected.insert(
        "refs/heads/airlock/feature".into(),
        value_of(&out, "FF_TIP").to_string(),
    );
    if let Some(big) = after.get("refs/heads/airlock/big") {
        expected.insert("refs/heads/airlock/big".into(), big.clone());
    }
    assert_eq!(after, expected, "{out}");

    // The server saw the real token, never the placeholder.
    use base64::Engine as _;
    let real = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    let fake = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{ph}"));
    let auth = server.auth.lock().expect("lock").join("\n");
    assert!(auth.contains(&real), "{auth}");
    assert!(!auth.contains(&fake), "{auth}");
    // git's probe before a large push (a body of just a flush) went through.
    assert!(
        auth.contains("git-receive-pack HTTP/1.1 body=0000\n"),
        "no probe seen"
    );
    // Refused pushes never reached the server.
    for never in ["garbage", "git%2Dreceive-pack", "GIT-RECEIVE-PACK"] {
        assert!(!auth.contains(never), "{never} reached the server: {auth}");
    }

    // Each decision is in the audit log with its rule.
    let events = env.audit(value_of(&out, "SESSION"));
    for rule in [
        "git.push: force",
        "git.push: delete",
        "git.push: tag",
        "git.push: default-branch",
        "git.push: branch",
        "git.push: ref",
        "git.push: unparsable",
    ] {
        assert!(
            events.iter().any(|e| e["decision"] == "deny"
                && e["rule"] == rule
                && e["host"] == "git.creds.test"),
            "no deny event with rule {rule}: {events:?}"
        );
    }
    assert!(
        events
            .iter()
            .any(|e| e["decision"] == "allow" && e["rule"] == "git.push"),
        "{events:?}"
    );
}

/// What `[git] push` names is allowed: the default branch named exactly, other branches through
/// a wildcard, tags, force-push, deletion; a default branch it does not name (`master`, with a
/// `*` entry) is still refused. Proves the policy reaches the proxy.
#[test]
fn a_wider_git_policy_allows_what_it_names() {
    let t = setup(
        "[git]\npush = { branches = [\"main\", \"*\"], force = true, tags = true, delete = true }",
    );
    let (out, err, results) = t.run(
        r#"
set -u
export GIT_TERMINAL_PROMPT=0
g() { git -c credential.helper= -c user.name=agent -c user.email=a@b "$@"; }
step() { name=$1; shift; echo "== $name"; if "$@" 2>&1; then echo "RESULT $name ok"; else echo "RESULT $name refused"; fi; }
rm -rf w; g clone -q "https://x-access-token:$AIRLOCK_TEST_SECRET_G@git.creds.test:PORT/repo.git" w >/dev/null 2>clone.err || { echo CLONE_FAILED; cat clone.err; exit 1; }
cd w
echo one >> f && g commit -qam one
step main g push origin HEAD:refs/heads/main
step feature g push origin HEAD:refs/heads/feature
g tag v1
step tag g push origin refs/tags/v1
g commit -q --amend -m amended
step force g push --force origin HEAD:refs/heads/main
echo "MAIN=$(g rev-parse HEAD)"
step delete g push origin :refs/heads/feature
step master g push origin HEAD:refs/heads/master
"#,
    );
    for name in ["main", "feature", "tag", "force", "delete"] {
        assert!(results[name].0, "{name} was refused: {out}{err}");
    }
    let (ok, text) = &results["master"];
    assert!(!ok && text.contains("default branch master"), "{text}");
    let after = refs(&t.repo);
    assert_eq!(
        after.get("refs/heads/main").map(String::as_str),
        Some(value_of(&out, "MAIN"))
    );
    assert!(after.contains_key("refs/tags/v1"), "{after:?}");
    assert!(!after.contains_key("refs/heads/feature"), "{after:?}");
    assert!(!after.contains_key("refs/heads/master"), "{after:?}");
}

/// The server's own default branch (here `trunk`) is not granted by a wildcard either: the guard
/// asks the server for its `HEAD`; when it cannot, a wildcard grants nothing.
#[test]
fn the_servers_default_branch_is_learned_and_protected() {
    let t = setup("[git]\npush = { branches = [\"*\"] }");
    git(&t.repo, &["branch", "trunk", "main"]);
    git(&t.repo, &["symbolic-ref", "HEAD", "refs/heads/trunk"]);
    let before = refs(&t.repo);
    let script = r#"
set -u
export GIT_TERMINAL_PROMPT=0
g() { git -c credential.helper= -c user.name=agent -c user.email=a@b "$@"; }
step() { name=$1; shift; echo "== $name"; if "$@" 2>&1; then echo "RESULT $name ok"; else echo "RESULT $name refused"; fi; }
rm -rf w; g clone -q "https://x-access-token:$AIRLOCK_TEST_SECRET_G@git.creds.test:PORT/repo.git" w >/dev/null 2>clone.err || { echo CLONE_FAILED; cat clone.err; exit 1; }
cd w
echo one >> f && g commit -qam one
step trunk g push origin HEAD:refs/heads/trunk
step mixed g push origin HEAD:refs/heads/other HEAD:refs/heads/trunk
step feature g push origin HEAD:refs/heads/feature
"#;
    let (out, err, results) = t.run(script);
    let (ok, text) = &results["trunk"];
    assert!(
        !ok && text.contains("default branch trunk is not allowed"),
        "{text}"
    );
    let (ok, text) = &results["mixed"];
    assert!(
        !ok && text.contains("default branch trunk is not allowed"),
        "{text}"
    );
    assert!(results["feature"].0, "{out}{err}");
    let after = refs(&t.repo);
    assert_eq!(
        after.get("refs/heads/trunk"),
        before.get("refs/heads/trunk")
    );
    assert!(!after.contains_key("refs/heads/other"), "{after:?}");
    assert!(after.contains_key("refs/heads/feature"), "{after:?}");

    // The server will not say: a wildcard grants nothing.
    std::fs::write(t.repo.parent().expect("root").join("no-advertisement"), "").expect("flag");
    let (_, _, results) = t.run(&script.replace("feature", "feature2"));
    let (ok, text) = &results["feature2"];
    assert!(
        !ok && text.contains("could not learn the repository's default branch"),
        "{text}"
    );
    assert!(!refs(&t.repo).contains_key("refs/heads/feature2"));
}
