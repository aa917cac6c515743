//! `airlock serve ctl clone`: the box's workspace as a `git clone` of the spec's URL
//! ([`airlock_remote::WorkspaceSource::Git`]), made by the supervisor before the command
//! starts (docs/remote.md, "Workspace from git").
//!
//! - git runs as the session's user, with no configuration of its own (no system or global
//!   file, hooks off, https only), and reaches the network only through an egress proxy that
//!   `airlock serve` starts for the clone with the session's policy: a host the policy does not
//!   allow is refused there (and before, by name).
//! - A credential whose hosts cover the clone's host is swapped in by that proxy: git sends
//!   `Authorization: Basic base64(USER:PLACEHOLDER)` (an `http.extraHeader` given through
//!   `GIT_CONFIG_*` variables, never written to a file or passed on the command line), the
//!   proxy replaces the placeholder inside the TLS it terminates with the session CA, for that
//!   credential's hosts only. The secret stays in the supervisor's memory: it is never in the
//!   box's environment, a file git or the agent can read, `.git/config` (whose `origin` is the
//!   URL as given, which holds no token: `--clone` refuses one) or the audit log.
//! - Bounded: git is stopped once the workspace passes the spec's `max_bytes`; its progress is
//!   passed on to the local side line by line as it comes.
//! - The checkout is detached at the commit, so every commit the agent makes moves `HEAD` in
//!   the overlay's upper layer, where the local review reads it.

use std::io::{BufRead as _, Read as _, Write};
use std::os::unix::fs::DirBuilderExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_net::creds::{Credential, Injector};
use airlock_net::{Egress, EgressConfig};
use airlock_policy::network::{Host, NetworkPolicy};
use airlock_remote::{layout, BoxSpec};
use anyhow::{anyhow, bail, Context, Result};

use crate::gitclone::{self, CloneSource, DEFAULT_USERNAME};

/// The clone's audit log in the box (`ctl audit` sends it before the session's).
pub(super) const CLONE_AUDIT: &str = "/var/lib/airlock/clone-audit.jsonl";
/// How often the workspace's size is measured while git runs.
const SIZE_EVERY: Duration = Duration::from_millis(300);
/// At most one `\r`-redrawn progress line is passed on per this interval.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// git's last lines kept for an error message.
const KEPT_LINES: usize = 12;

/// Who git runs as and where.
#[derive(Debug, Clone)]
pub(super) struct CloneUser {
    pub(super) uid: u32,
    pub(super) gid: u32,
    /// An empty directory of the user's for git's `HOME` and the trust bundle.
    pub(super) scratch: PathBuf,
}

/// Clones the spec's repository into [`layout::WORKSPACE`], writing git's progress lines to
/// `out`; returns the commit checked out.
///
/// # Errors
/// A URL `--clone` would refuse; a host the policy denies (naming the rule); the host
/// unreachable, refusing the credential (401/403), missing the repository or the ref; the
/// bound passed. Each names the host, the credential or the ref, and what to change.
pub(super) fn clone(
    spec: &BoxSpec,
    secrets: &[(String, Vec<u8>)],
    user: &CloneUser,
    out: &mut dyn Write,
) -> Result<String> {
    let airlock_remote::WorkspaceSource::Git {
        url,
        rev,
        max_bytes,
    } = &spec.workspace
    else {
        bail!("this session's workspace is an upload (`ctl receive`), not a clone");
    };
    let text = match rev {
        Some(r) => format!("{url}#{r}"),
        None => url.clone(),
    };
    let src = gitclone::parse(&text)?;
    let network = NetworkPolicy::compile(&spec.policy.network)
        .map_err(|e| anyhow!("the session's [network] policy does not compile: {e}"))?;
    gitclone::check_allowed(&network, &src)?;
    let (injector, cred) = injector(spec, secrets, &src)?;
    let bundle = user.scratch.join("ca.pem");
    write_bundle(&bundle, &injector, spec, user)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the clone's proxy runtime")?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot listen on the box's loopback for the clone's proxy")?;
    let audit = Arc::new(
        airlock_audit::AuditLog::open(CLONE_AUDIT)
            .with_context(|| format!("cannot open {CLONE_AUDIT}"))?,
    );
    let mut config = EgressConfig::new(listener, network, audit);
    config.session = Some(spec.session.clone());
    let placeholder = cred.as_ref().map(|(_, ph)| ph.clone());
    let cred_name = cred.map(|(n, _)| n);
    if !injector.credentials().is_empty() {
        config.credentials = Some(Arc::new(injector));
    }
    let egress = Egress::start(config, rt.handle()).context("cannot start the clone's proxy")?;
    let proxy = format!("http://{}", egress.proxy_addr());
    let max = max_bytes.unwrap_or(airlock_remote::CLONE_MAX_BYTES);
    let git = Git {
        user,
        proxy: &proxy,
        bundle: &bundle,
        auth: placeholder.map(|ph| basic(&src, &ph)),
    };
    let ws = Path::new(layout::WORKSPACE);
    writeln!(
        out,
        "cloning {} in the box (through airlock's proxy{})",
        src.url,
        match &cred_name {
            Some(n) => format!(", credential {n}"),
            None => String::new(),
        }
    )?;
    let result = git
        .run_bounded(
            &[
                "clone",
                "--progress",
                "--no-checkout",
                "--",
                &src.url,
                layout::WORKSPACE,
            ],
            ws,
            max,
            out,
        )
        .map_err(|e| explain(e, &src, cred_name.as_deref()))
        .and_then(|()| checkout(&git, &src, ws, max, out, cred_name.as_deref()));
    drop(egress);
    rt.shutdown_background();
    result
}

/// The injector for the clone: the credentials scoped to the clone's host (each with its
/// secret from the supervisor's files), and the one whose placeholder git sends.
fn injector(
    spec: &BoxSpec,
    secrets: &[(String, Vec<u8>)],
    src: &CloneSource,
) -> Result<(Injector, Option<(String, String)>)> {
    let host = Host::parse(&src.host).map_err(|e| anyhow!("host {}: {e}", src.host))?;
    let mut creds = Vec::new();
    for c in &spec.policy.credentials {
        let Some((_, value)) = secrets.iter().find(|(n, _)| *n == c.name) else {
            continue;
        };
        let secret = std::str::from_utf8(value)
            .with_context(|| format!("credential {}: the secret is not UTF-8", c.name))?
            .trim();
        let inject = c
            .inject
            .as_ref()
            .map(|i| (i.header.as_str(), i.value.as_str()));
        let cred = Credential::new(&c.name, secret, &c.hosts, inject, c.body)
            .and_then(|k| k.with_headers(&c.headers))
            .map_err(|e| anyhow!("credential {}: {e}", c.name))?;
        if cred.scoped_to(&host) {
            creds.push(cred);
        }
    }
    let chosen = creds
        .first()
        .map(|c| (c.name().to_string(), c.placeholder()));
    let roots: Vec<PathBuf> = spec
        .policy
        .tls_extra_roots
        .iter()
        .map(PathBuf::from)
        .collect();
    let injector = Injector::new(&spec.session, creds, &roots)
        .map_err(|e| anyhow!("cannot set up the clone's credential proxy: {e}"))?;
    Ok((injector, chosen))
}

/// The roots git trusts: the host's and the session CA (the proxy's certificates for credential
/// hosts), then `[tls] extra_roots` (upstreams git verifies itself through a plain tunnel).
fn write_bundle(path: &Path, injector: &Injector, spec: &BoxSpec, user: &CloneUser) -> Result<()> {
    let mut pem = injector.trust_bundle();
    for r in &spec.policy.tls_extra_roots {
        let more = std::fs::read_to_string(r)
            .with_context(|| format!("cannot read [tls] extra_roots {r}"))?;
        pem.push('\n');
        pem.push_str(&more);
    }
    std::fs::write(path, pem).with_context(|| format!("cannot write {}", path.display()))?;
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
        .with_context(|| format!("cannot give {} to the session's user", path.display()))
}

/// `Authorization: Basic base64(USER:PLACEHOLDER)` (RFC 7617), USER from the URL or
/// [`DEFAULT_USERNAME`].
fn basic(src: &CloneSource, placeholder: &str) -> String {
    use base64::Engine as _;
    let user = url::Url::parse(&src.url)
        .ok()
        .map(|u| u.username().to_string())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_USERNAME.to_string());
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{placeholder}"));
    format!("Authorization: Basic {b}")
}

/// Checks out the asked ref (or the remote's default branch) detached; returns its commit.
fn checkout(
    git: &Git<'_>,
    src: &CloneSource,
    ws: &Path,
    max: u64,
    out: &mut dyn Write,
    cred: Option<&str>,
) -> Result<String> {
    let commit = match &src.rev {
        None => git.output(ws, &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]).ok_or_else(|| {
            anyhow!("{} has no default branch (an empty repository?); give one with --clone URL#REF", src.url)
        })?,
        Some(r) => resolve_rev(git, ws, r).ok_or_else(|| {
            let branches = git.output(ws, &["for-each-ref", "--format=%(refname:lstrip=3)", "--count=20", "refs/remotes/origin/"]).unwrap_or_default();
            let tags = git.output(ws, &["for-each-ref", "--format=%(refname:lstrip=2)", "--count=20", "refs/tags/"]).unwrap_or_default();
            anyhow!(
                "{} has no branch, tag or commit {r:?} (branches: {}; tags: {}); give one of them after '#'",
                src.url,
                list(&branches),
                list(&tags)
            )
        })?,
    };
    git.run_bounded(
        &["checkout", "--progress", "--detach", &commit],
        ws,
        max,
        out,
    )
    .map_err(|e| explain(e, src, cred))
    .with_context(|| format!("cannot check out {commit} of {}", src.url))?;
    Ok(commit)
}

fn list(lines: &str) -> String {
    let v: Vec<&str> = lines.lines().filter(|l| *l != "HEAD").collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// A branch of origin, a tag or a commit id, as a commit.
fn resolve_rev(git: &Git<'_>, ws: &Path, r: &str) -> Option<String> {
    [
        format!("refs/remotes/origin/{r}"),
        format!("refs/tags/{r}"),
        r.to_string(),
    ]
    .iter()
    .find_map(|name| {
        git.output(
            ws,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{name}^{{commit}}"),
            ],
        )
    })
}

/// How git runs for the clone.
struct Git<'a> {
    user: &'a CloneUser,
    proxy: &'a str,
    bundle: &'a Path,
    /// The `http.extraHeader` carrying the placeholder, when a credential covers the host.
    auth: Option<String>,
}

impl Git<'_> {
    fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("git");
        let mut config: Vec<(&str, &str)> = vec![
            ("core.hooksPath", "/dev/null"),
            ("core.fsmonitor", "false"),
            ("credential.helper", ""),
            ("http.proxy", self.proxy),
            ("protocol.allow", "never"),
            ("protocol.https.allow", "always"),
            ("submodule.recurse", "false"),
        ];
        if let Some(a) = &self.auth {
            config.push(("http.extraHeader", a));
        }
        c.env_clear()
            .env("HOME", &self.user.scratch)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_SSL_CAINFO", self.bundle)
            .env("HTTPS_PROXY", self.proxy)
            .env("GIT_CONFIG_COUNT", config.len().to_string());
        for (i, (k, v)) in config.iter().enumerate() {
            c.env(format!("GIT_CONFIG_KEY_{i}"), k)
                .env(format!("GIT_CONFIG_VALUE_{i}"), v);
        }
        c.args(args)
            .current_dir(dir)
            .uid(self.user.uid)
            .gid(self.user.gid);
        c
    }

    /// A quick query's stdout, trimmed; `None` when it fails.
    fn output(&self, dir: &Path, args: &[&str]) -> Option<String> {
        let o = self
            .command(dir, args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// Runs git with its progress passed on to `out`, stopping it once `ws` holds more than
    /// `max` bytes.
    fn run_bounded(
        &self,
        args: &[&str],
        ws: &Path,
        max: u64,
        out: &mut dyn Write,
    ) -> Result<(), GitFailure> {
        let mut child = self
            .command(
                if args.first() == Some(&"clone") {
                    Path::new("/")
                } else {
                    ws
                },
                args,
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| GitFailure::Other(anyhow!("cannot run git in the box: {e}")))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| GitFailure::Other(anyhow!("git's stderr")))?;
        let over = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let pid = child.id();
        let watcher = {
            let (over, done, ws) = (over.clone(), done.clone(), ws.to_path_buf());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if size_of(&ws, max) > max {
                        over.store(true, Ordering::Relaxed);
                        if let Ok(p) = i32::try_from(pid) {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(p),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                        return;
                    }
                    std::thread::sleep(SIZE_EVERY);
                }
            })
        };
        let kept = pass_progress(stderr, out);
        let status = child.wait();
        done.store(true, Ordering::Relaxed);
        let _ = watcher.join();
        // Also once it has ended: a fast run can pass the bound between two measures.
        if over.load(Ordering::Relaxed) || size_of(ws, max) > max {
            return Err(GitFailure::TooLarge(max));
        }
        match status {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(GitFailure::Failed(s.code().unwrap_or(-1), kept)),
            Err(e) => Err(GitFailure::Other(anyhow!("git: {e}"))),
        }
    }
}

/// Passes git's stderr on as lines (a `\r`-redrawn progress line at most every
/// [`PROGRESS_EVERY`], each finished one as it ends); returns the last lines.
fn pass_progress(stderr: impl std::io::Read, out: &mut dyn Write) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    let mut last = Instant::now() - PROGRESS_EVERY;
    let mut reader = std::io::BufReader::new(stderr);
    let mut piece = Vec::new();
    loop {
        piece.clear();
        // Lines end at '\n' or '\r' (git redraws progress with '\r').
        let mut b = [0u8; 1];
        let mut end = None;
        while piece.len() < 4096 {
            match reader.read(&mut b) {
                Ok(1) if b[0] == b'\n' || b[0] == b'\r' => {
                    end = Some(b[0]);
                    break;
                }
                Ok(1) => piece.push(b[0]),
                _ => break,
            }
        }
        if end.is_none() && piece.is_empty() {
            break;
        }
        let line = String::from_utf8_lossy(&piece).trim_end().to_string();
        if line.is_empty() {
            continue;
        }
        let finished = end != Some(b'\r') || line.ends_with(", done.");
        if finished || last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            let _ = writeln!(out, "git: {line}");
            let _ = out.flush();
        }
        if finished {
            kept.push(line);
            if kept.len() > KEPT_LINES {
                kept.remove(0);
            }
        }
    }
    kept
}

/// The bytes under `dir` (apparent sizes, links not followed), counting stops past `max`.
fn size_of(dir: &Path, max: u64) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total = total.saturating_add(m.len());
            }
            if total > max {
                return total;
            }
        }
    }
    total
}

/// How a git run failed.
#[derive(Debug)]
enum GitFailure {
    /// Exit status and git's last lines.
    Failed(i32, Vec<String>),
    /// Stopped over the bound (bytes).
    TooLarge(u64),
    Other(anyhow::Error),
}

impl std::fmt::Display for GitFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitFailure::Failed(code, lines) => {
                write!(f, "git exited with status {code}: {}", lines.join(" / "))
            }
            GitFailure::TooLarge(max) => write!(f, "the clone passed {max} bytes"),
            GitFailure::Other(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for GitFailure {}

/// The clone's failure in words: which host, credential or bound, and what to change. The
/// proxy's own refusals (from the clone's audit log) are named first.
fn explain(e: GitFailure, src: &CloneSource, cred: Option<&str>) -> anyhow::Error {
    let at = format!("{}:{}", src.host, src.port);
    let lines = match &e {
        GitFailure::TooLarge(max) => {
            return anyhow!(
                "the clone of {} was stopped: it passed the bound of {max} bytes in the box; raise it with --clone-max-size (and the box's workspace volume), or clone a smaller repository",
                src.url
            )
        }
        GitFailure::Other(_) => return anyhow!("the clone of {} failed: {e}", src.url),
        GitFailure::Failed(_, lines) => lines.join("\n"),
    };
    let denied = proxy_refusals();
    if !denied.is_empty() {
        return anyhow!(
            "the clone of {} was refused by airlock's proxy in the box: {}",
            src.url,
            denied.join("; ")
        );
    }
    let low = lines.to_ascii_lowercase();
    if low.contains("authentication failed")
        || low.contains("returned error: 401")
        || low.contains("returned error: 403")
        || low.contains("could not read username")
    {
        return match cred {
            Some(n) => anyhow!(
                "{at} refused the credential {n} for {} (authentication failed): the token may be expired, revoked or without read access to the repository; renew it where credential {n} reads it (`airlock creds`)",
                src.url
            ),
            None => anyhow!(
                "{at} asks for authentication for {} and no [[credentials]] entry covers {}: add one (name, env or file, hosts = [\"{}\"]; docs/credentials.md)",
                src.url,
                src.host,
                src.host
            ),
        };
    }
    if low.contains("not found") && low.contains("repository")
        || low.contains("returned error: 404")
    {
        return anyhow!("{at} has no repository at {} (404); check the URL", src.url);
    }
    if low.contains("proxy")
        || low.contains("connect")
        || low.contains("resolve")
        || low.contains("timed out")
    {
        return anyhow!(
            "{at} could not be reached from the box for the clone of {}: {}",
            src.url,
            lines.lines().last().unwrap_or_default()
        );
    }
    anyhow!("the clone of {} failed: {e}", src.url)
}

/// The reasons of the proxy's `deny` events in the clone's audit log.
fn proxy_refusals() -> Vec<String> {
    let Ok(f) = std::fs::File::open(CLONE_AUDIT) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .take(10_000)
    {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v.get("decision").and_then(|d| d.as_str()) == Some("deny") {
            let reason = v.get("reason").and_then(|r| r.as_str()).unwrap_or("denied");
            let rule = v.get("rule").and_then(|r| r.as_str()).unwrap_or("");
            let s = format!("{reason} ({rule})");
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out
}

/// Creates the clone's scratch directory (git's `HOME`, the trust bundle), the session user's.
pub(super) fn scratch_dir(uid: u32, gid: u32) -> Result<PathBuf> {
    let dir = Path::new(layout::STATE_DIR).join("clone");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
        .with_context(|| format!("cannot give {} to the session's user", dir.display()))?;
    Ok(dir)
}
