//! Approval while the agent runs (`[approvals] mode = "ask"`), the supervisor's side: the
//! requests the proxy holds ([`airlock_net::approval`]) wait here for the user's answer, given
//! with `airlock approve` / `airlock deny` over the session's control socket (`control.rs`),
//! which only the user can reach (the session directory is hidden from the sandbox).
//!
//! Fail closed: a request nobody answers is refused when the proxy's timeout ends (its waiter
//! is dropped and removed here); an answer that cannot be carried out (the project policy file
//! cannot be written) refuses the request and reports why; at most [`MAX_PENDING`] distinct
//! destinations wait at once, others are refused at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use airlock_net::approval::{Answer, AnswerFuture, Approver};
use airlock_policy::network::DEFAULT_PORTS;
use airlock_sandbox::notice::NoticeSender;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// Distinct destinations held at once; more are refused without asking.
pub(crate) const MAX_PENDING: usize = 32;

/// How long an answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scope {
    /// The requests held now.
    Once,
    /// This host and port until the session ends.
    Session,
    /// As `session`, and written to the user's per-project policy file for later sessions.
    Project,
}

impl Scope {
    /// The name on the command line and the control socket.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scope::Once => "once",
            Scope::Session => "session",
            Scope::Project => "project",
        }
    }

    fn parse(s: &str) -> Option<Scope> {
        match s {
            "once" => Some(Scope::Once),
            "session" => Some(Scope::Session),
            "project" => Some(Scope::Project),
            _ => None,
        }
    }
}

/// One held destination as `airlock approvals` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PendingView {
    pub(crate) session: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) rule: String,
    /// When the first request was held (RFC 3339).
    pub(crate) since: String,
    /// Requests waiting for this destination.
    pub(crate) waiting: usize,
}

#[derive(Debug)]
struct Pending {
    view: PendingView,
    waiters: Vec<(u64, oneshot::Sender<Answer>)>,
}

type ReloadFn = dyn Fn() -> Result<()> + Send + Sync;

/// The session's held requests.
pub(crate) struct Approvals {
    session: String,
    pending: Mutex<BTreeMap<(String, u16), Pending>>,
    next: AtomicU64,
    /// The per-project policy file `--for project` writes (`policy_load::project_policy_path`).
    project_file: Option<PathBuf>,
    timeout_secs: u64,
    notices: NoticeSender,
    /// `[notify]`: "waiting" when a destination is first held.
    notify: Option<crate::notify::Notifier>,
    /// Re-reads the policy after the project file changed.
    reload: Box<ReloadFn>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("session", &self.session)
            .field("project_file", &self.project_file)
            .finish_non_exhaustive()
    }
}

impl Approvals {
    pub(crate) fn new(
        session: &str,
        project_file: Option<PathBuf>,
        timeout_secs: u64,
        notices: NoticeSender,
        notify: Option<crate::notify::Notifier>,
        reload: Box<ReloadFn>,
    ) -> Arc<Approvals> {
        Arc::new(Approvals {
            session: session.to_string(),
            pending: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
            project_file,
            timeout_secs,
            notices,
            notify,
            reload,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, u16), Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The destinations held now.
    pub(crate) fn list(&self) -> Vec<PendingView> {
        self.lock()
            .values()
            .map(|p| PendingView {
                waiting: p.waiters.len(),
                ..p.view.clone()
            })
            .collect()
    }

    /// Removes one waiter (its request stopped waiting); the destination goes when none is left.
    fn forget(&self, key: &(String, u16), id: u64) {
        let mut all = self.lock();
        if let Some(p) = all.get_mut(key) {
            p.waiters.retain(|(i, _)| *i != id);
            if p.waiters.is_empty() {
                all.remove(key);
            }
        }
    }

    /// The user's answer for `target` (`HOST` or `HOST:PORT`): `None` refuses. Every request
    /// held for a matching destination gets it. Errors name what is wrong; on an error after
    /// the requests were found, they are refused.
    pub(crate) fn answer(&self, target: &str, scope: Option<Scope>) -> Result<String> {
        let (host, port) = parse_target(target)?;
        let taken: Vec<Pending> = {
            let mut all = self.lock();
            let keys: Vec<(String, u16)> = all
                .keys()
                .filter(|(h, p)| *h == host && port.is_none_or(|want| want == *p))
                .cloned()
                .collect();
            keys.iter().filter_map(|k| all.remove(k)).collect()
        };
        if taken.is_empty() {
            bail!(
                "session {} holds no request for {target}; `airlock approvals` lists the held ones \
                 (a request is refused once its time, {}s, is up)",
                self.session,
                self.timeout_secs
            );
        }
        let mut answer = match scope {
            None => Answer::Refuse,
            Some(Scope::Once) => Answer::Once,
            Some(Scope::Session | Scope::Project) => Answer::Session,
        };
        let mut note = String::new();
        if scope == Some(Scope::Project) {
            match self.write_project(&taken) {
                Ok(path) => {
                    note = format!("; written to {}", path.display());
                    if let Err(e) = (self.reload)() {
                        note.push_str(&format!(" (reload failed: {e:#})"));
                    }
                }
                Err(e) => {
                    answer = Answer::Refuse;
                    send_all(taken, answer);
                    return Err(e.context(format!(
                        "{target} was refused: the approval could not be recorded"
                    )));
                }
            }
        }
        let what: Vec<String> = taken
            .iter()
            .map(|p| format!("{}:{}", p.view.host, p.view.port))
            .collect();
        send_all(taken, answer);
        Ok(match scope {
            None => format!("refused {}", what.join(", ")),
            Some(s) => format!("allowed {} ({}){note}", what.join(", "), s.as_str()),
        })
    }

    /// Adds the destinations to the project policy file; returns its path.
    fn write_project(&self, taken: &[Pending]) -> Result<PathBuf> {
        let Some(path) = &self.project_file else {
            bail!("there is no per-project policy file (no config directory: set HOME or XDG_CONFIG_HOME)");
        };
        let pairs: Vec<(&str, u16)> = taken
            .iter()
            .map(|p| (p.view.host.as_str(), p.view.port))
            .collect();
        add_to_policy_file(path, &pairs)?;
        Ok(path.clone())
    }
}

fn send_all(taken: Vec<Pending>, answer: Answer) {
    for p in taken {
        for (_, tx) in p.waiters {
            let _ = tx.send(answer);
        }
    }
}

/// `HOST` or `HOST:PORT` (a bracketed IPv6 literal with a port: `[::1]:443`).
fn parse_target(target: &str) -> Result<(String, Option<u16>)> {
    let bad =
        || anyhow::anyhow!("'{target}' is not a host or host:port (e.g. registry.npmjs.org:443)");
    let (host, port) = match target.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty() => {
            (
                h.trim_start_matches('[').trim_end_matches(']'),
                Some(p.parse().map_err(|_| bad())?),
            )
        }
        _ => (target, None),
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    Ok((host.to_ascii_lowercase(), port))
}

/// The proxy's handle on a session's [`Approvals`].
#[derive(Debug, Clone)]
pub(crate) struct Asker(pub(crate) Arc<Approvals>);

impl Approver for Asker {
    fn ask(&self, host: &str, port: u16, rule: &str) -> AnswerFuture {
        self.0.hold(host, port, rule)
    }
}

impl Approvals {
    /// Holds a request for `host:port` until the user answers or the future is dropped.
    pub(crate) fn hold(self: &Arc<Self>, host: &str, port: u16, rule: &str) -> AnswerFuture {
        let (tx, rx) = oneshot::channel();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let key = (host.to_string(), port);
        let first = {
            let mut all = self.lock();
            if !all.contains_key(&key) && all.len() >= MAX_PENDING {
                return Box::pin(std::future::ready(Answer::Refuse));
            }
            let p = all.entry(key.clone()).or_insert_with(|| Pending {
                view: PendingView {
                    session: self.session.clone(),
                    host: host.to_string(),
                    port,
                    rule: rule.to_string(),
                    since: airlock_audit::now_rfc3339(),
                    waiting: 0,
                },
                waiters: Vec::new(),
            });
            p.waiters.push((id, tx));
            p.waiters.len() == 1
        };
        if first {
            let s = &self.session;
            let line = format!(
                "airlock: session {s} holds {host}:{port} (rule {rule}) for {}s: \
                 `airlock approve {s} {host}:{port} --for once|session|project` or `airlock deny {s} {host}`",
                self.timeout_secs
            );
            self.notices.send(&line);
            if let Some(n) = &self.notify {
                n.send(crate::notify::Event::Waiting, &line);
            }
        }
        let guard = Forget {
            approvals: Arc::downgrade(self),
            key,
            id,
        };
        Box::pin(async move {
            let _guard = guard;
            rx.await.unwrap_or(Answer::Refuse)
        })
    }
}

/// Removes a waiter from the held list when its request stops waiting (answered, timed out,
/// or the connection went away).
struct Forget {
    approvals: std::sync::Weak<Approvals>,
    key: (String, u16),
    id: u64,
}

impl Drop for Forget {
    fn drop(&mut self) {
        if let Some(a) = self.approvals.upgrade() {
            a.forget(&self.key, self.id);
        }
    }
}

/// Adds each `(host, port)` to the policy file at `path` (created with its directory if
/// missing): `host` in `[network] allow`, and a port outside the defaults in `[network.ports]`
/// (with the defaults, or added to the host's entry). The file is replaced atomically (a
/// temporary file in the same directory, renamed); one that does not parse is left alone and
/// is an error.
pub(crate) fn add_to_policy_file(path: &Path, pairs: &[(&str, u16)]) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no directory", path.display()))?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut doc: toml::Table = toml::from_str(&old).with_context(|| {
        format!(
            "{} is not valid TOML; fix it, then approve again",
            path.display()
        )
    })?;
    let network = doc
        .entry("network")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .with_context(|| format!("{}: network is not a table", path.display()))?;
    for (host, port) in pairs {
        let allow = network
            .entry("allow")
            .or_insert_with(|| toml::Value::Array(Vec::new()))
            .as_array_mut()
            .with_context(|| format!("{}: network.allow is not a list", path.display()))?;
        if !allow.iter().any(|v| v.as_str() == Some(host)) {
            allow.push(toml::Value::String((*host).to_string()));
        }
        let ports = network
            .entry("ports")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .with_context(|| format!("{}: network.ports is not a table", path.display()))?;
        let has_entry = ports.contains_key(*host);
        if !has_entry && DEFAULT_PORTS.contains(port) {
            continue;
        }
        let list = ports
            .entry((*host).to_string())
            .or_insert_with(|| {
                toml::Value::Array(
                    DEFAULT_PORTS
                        .iter()
                        .map(|p| toml::Value::Integer(i64::from(*p)))
                        .collect(),
                )
            })
            .as_array_mut()
            .with_context(|| format!("{}: network.ports.{host} is not a list", path.display()))?;
        if !list
            .iter()
            .any(|v| v.as_integer() == Some(i64::from(*port)))
        {
            list.push(toml::Value::Integer(i64::from(*port)));
        }
    }
    if network
        .get("ports")
        .and_then(toml::Value::as_table)
        .is_some_and(toml::Table::is_empty)
    {
        network.remove("ports");
    }
    let text = format!(
        "# airlock: this project's policy, kept outside the workspace; `airlock approve --for\n\
         # project` adds to it (comments are not kept). Edit freely.\n{}",
        toml::to_string(&doc).context("cannot encode the policy file")?
    );
    // Checked as airlock will read it, before it replaces anything.
    airlock_policy::ConfigFile::parse(path, &text)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    use std::io::Write;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// The control-socket side: `approvals`, `approve TARGET SCOPE`, `deny TARGET`; the answer line.
pub(crate) fn control(a: &Approvals, words: &[&str]) -> String {
    let r = match words {
        ["approvals"] => serde_json::to_string(&a.list()).map_err(anyhow::Error::from),
        ["approve", target, scope] => match Scope::parse(scope) {
            Some(s) => a.answer(target, Some(s)),
            None => Err(anyhow::anyhow!(
                "unknown scope '{scope}' (once, session or project)"
            )),
        },
        ["deny", target] => a.answer(target, None),
        _ => Err(anyhow::anyhow!("bad approval request")),
    };
    match r {
        Ok(s) => format!("ok {s}\n"),
        Err(e) => format!("error: {}\n", format!("{e:#}").replace('\n', " ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approvals(project: Option<PathBuf>) -> (Arc<Approvals>, airlock_sandbox::notice::Notices) {
        let (tx, rx) = airlock_sandbox::notice::channel().expect("notices");
        (
            Approvals::new("t1", project, 30, tx, None, Box::new(|| Ok(()))),
            rx,
        )
    }

    #[tokio::test]
    async fn an_answer_reaches_every_held_request_and_bad_targets_are_errors() {
        let (a, mut notices) = approvals(None);
        let r1 = a.hold("x.test", 443, "network.allow: no pattern matches");
        let r2 = a.hold("x.test", 443, "network.allow: no pattern matches");
        let r3 = a.hold("y.test", 8080, "network.allow: no pattern matches");
        let list = a.list();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].waiting, 2);
        let lines = notices.read_lines().expect("open");
        assert_eq!(lines.len(), 2, "one notice per destination: {lines:?}");
        assert!(
            lines[0].contains("airlock approve t1 x.test:443"),
            "{lines:?}"
        );
        let e = a
            .answer("nosuch.test", Some(Scope::Once))
            .expect_err("unknown host");
        assert!(
            e.to_string().contains("holds no request for nosuch.test"),
            "{e}"
        );
        let e = a
            .answer("x.test:80", Some(Scope::Once))
            .expect_err("other port");
        assert!(e.to_string().contains("x.test:80"), "{e}");
        assert!(parse_target("bad host").is_err());
        assert!(a.answer("x.test", Some(Scope::Once)).is_ok());
        assert_eq!(r1.await, Answer::Once);
        assert_eq!(r2.await, Answer::Once);
        assert_eq!(
            a.answer("y.test:8080", None).expect("deny"),
            "refused y.test:8080"
        );
        assert_eq!(r3.await, Answer::Refuse);
        assert!(a.list().is_empty());
    }

    #[tokio::test]
    async fn a_request_that_stops_waiting_leaves_the_list_and_the_list_is_bounded() {
        let (a, _n) = approvals(None);
        let r = a.hold("x.test", 443, "network.allow: no pattern matches");
        assert_eq!(a.list().len(), 1);
        drop(r);
        assert!(
            a.list().is_empty(),
            "a timed-out request is not approvable later"
        );
        let held: Vec<AnswerFuture> = (0..MAX_PENDING)
            .map(|i| a.hold(&format!("h{i}.test"), 443, "r"))
            .collect();
        assert_eq!(a.hold("one-too-many.test", 443, "r").await, Answer::Refuse);
        drop(held);
    }

    #[tokio::test]
    async fn project_writes_the_users_file_and_an_unwritable_one_refuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("projects/ws-1.toml");
        let (a, _n) = approvals(Some(file.clone()));
        let r = a.hold("x.test", 8443, "network.allow: no pattern matches");
        let r2 = a.hold("y.test", 443, "network.allow: no pattern matches");
        a.answer("x.test", Some(Scope::Project)).expect("project");
        a.answer("y.test", Some(Scope::Project)).expect("project");
        assert_eq!(r.await, Answer::Session);
        assert_eq!(r2.await, Answer::Session);
        let text = std::fs::read_to_string(&file).expect("file");
        let c = airlock_policy::ConfigFile::parse(&file, &text).expect("valid");
        assert_eq!(c.network.allow, vec!["x.test", "y.test"]);
        assert_eq!(c.network.ports.get("x.test"), Some(&vec![80, 443, 8443]));
        assert_eq!(c.network.ports.len(), 1);
        // A file that cannot be written: the held request is refused, the error names it.
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).expect("mkdir");
        std::fs::write(ro.join("p.toml"), "not = [valid").expect("write");
        let (b, _n) = approvals(Some(ro.join("p.toml")));
        let r = b.hold("z.test", 443, "network.allow: no pattern matches");
        let e = b
            .answer("z.test", Some(Scope::Project))
            .expect_err("broken file");
        let msg = format!("{e:#}");
        assert!(msg.contains("p.toml") && msg.contains("refused"), "{msg}");
        assert_eq!(r.await, Answer::Refuse);
        assert_eq!(
            std::fs::read_to_string(ro.join("p.toml")).expect("kept"),
            "not = [valid"
        );
        // Its directory cannot be created (a file is in the way), as root too.
        let (c, _n) = approvals(Some(ro.join("p.toml/projects/p.toml")));
        let r = c.hold("z.test", 443, "network.allow: no pattern matches");
        let e = c
            .answer("z.test", Some(Scope::Project))
            .expect_err("no directory");
        assert!(
            format!("{e:#}").contains("cannot create the directory"),
            "{e:#}"
        );
        assert_eq!(r.await, Answer::Refuse);
    }
}
