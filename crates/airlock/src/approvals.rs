//! Approval while the agent runs (`[approvals] mode = "ask"`), the supervisor's side: the
//! requests the proxy holds ([`airlock_net::approval`]) and, in a detached session, the command
//! gate's `ask` decisions (`crate::gate_audit`) wait here for the user's answer, given with
//! `airlock approve` / `airlock deny` over the session's control socket (`control.rs`), which
//! only the user can reach (the session directory is hidden from the sandbox), or, when airlock
//! owns the user's terminal, with the prefix key and o/s/p/d ([`TerminalAnswers`],
//! `airlock_sandbox::prompt`).
//!
//! Each held request has a number in its session (`airlock approve SESSION N`); a destination
//! held by several requests at once is one entry.
//!
//! Fail closed: a request nobody answers is refused when the proxy's timeout ends (its waiter
//! is dropped and removed here); a held command nobody answers is left to the agent's own
//! prompt (`ask`), never allowed; an answer that cannot be carried out (the project policy file
//! cannot be written) refuses the request and reports why; at most [`MAX_PENDING`] requests
//! wait at once, others are refused (a command: asked as without approvals) at once.

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

/// Requests held at once; more are refused without asking.
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

/// One held request as `airlock approvals` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PendingView {
    pub(crate) session: String,
    /// Its number in the session (`airlock approve SESSION ID`).
    pub(crate) id: u64,
    /// `host` (a destination the proxy holds) or `command` (the gate's `ask` in a detached
    /// session).
    pub(crate) kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) port: Option<u16>,
    /// The agent's tool (`Bash`, `Write`, ...) of a held command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tool: Option<String>,
    /// The command (or the tool's input as the audit log shows it), made printable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) command: Option<String>,
    pub(crate) rule: String,
    /// When the first request was held (RFC 3339).
    pub(crate) since: String,
    /// Requests waiting for this entry.
    pub(crate) waiting: usize,
}

impl PendingView {
    /// What is held, for a line: `HOST:PORT` or ``the command `CMD` ``.
    pub(crate) fn what(&self) -> String {
        match (&self.host, self.port, &self.command) {
            (Some(h), Some(p), _) => format!("{h}:{p}"),
            (_, _, Some(c)) => format!("the command `{c}`"),
            _ => format!(
                "the {} of request {}",
                self.tool.as_deref().unwrap_or("tool"),
                self.id
            ),
        }
    }

    fn is_command(&self) -> bool {
        self.kind == "command"
    }
}

/// Who waits for an entry's answer.
#[derive(Debug)]
enum Waiters {
    /// Proxy requests for one destination (a waiter id each).
    Host(Vec<(u64, oneshot::Sender<Answer>)>),
    /// One hook call: `true` allows.
    Command(oneshot::Sender<bool>),
}

#[derive(Debug)]
struct Pending {
    view: PendingView,
    waiters: Waiters,
}

impl Pending {
    fn count(&self) -> usize {
        match &self.waiters {
            Waiters::Host(w) => w.len(),
            Waiters::Command(_) => 1,
        }
    }
}

type ReloadFn = dyn Fn() -> Result<()> + Send + Sync;

/// The session's held requests, by number (oldest first).
pub(crate) struct Approvals {
    session: String,
    pending: Mutex<BTreeMap<u64, Pending>>,
    /// Waiter ids.
    next: AtomicU64,
    /// Request numbers, from 1.
    next_id: AtomicU64,
    /// The per-project policy file `--for project` writes (`policy_load::project_policy_path`).
    project_file: Option<PathBuf>,
    timeout_secs: u64,
    notices: NoticeSender,
    /// `[notify]`: "waiting" when a request is first held.
    notify: Option<crate::notify::Notifier>,
    /// Re-reads the policy after the project file changed.
    reload: Box<ReloadFn>,
    /// The prefix key's name when the user answers on the terminal airlock owns.
    terminal_key: Option<String>,
    /// Questions and "waiting" notifications are rate-limited like the live denials, so a flood
    /// of held requests (the agent picks the names) cannot flood the terminal or the user's
    /// notifications; the count of those kept back goes with the next that passes.
    announced: Mutex<(crate::denials::Limiter, u64)>,
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
    /// `terminal_key` names the prefix key when the user answers on airlock's terminal (the
    /// notice line then names the keys instead of the commands).
    pub(crate) fn new(
        session: &str,
        project_file: Option<PathBuf>,
        timeout_secs: u64,
        notices: NoticeSender,
        notify: Option<crate::notify::Notifier>,
        reload: Box<ReloadFn>,
        terminal_key: Option<String>,
    ) -> Arc<Approvals> {
        Arc::new(Approvals {
            session: session.to_string(),
            pending: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            project_file,
            timeout_secs,
            notices,
            notify,
            reload,
            terminal_key,
            announced: Mutex::new((crate::denials::Limiter::new(std::time::Instant::now()), 0)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long a request is held, in seconds.
    pub(crate) fn timeout_secs(&self) -> u64 {
        self.timeout_secs
    }

    /// The requests held now, oldest first.
    pub(crate) fn list(&self) -> Vec<PendingView> {
        self.lock()
            .values()
            .map(|p| PendingView {
                waiting: p.count(),
                ..p.view.clone()
            })
            .collect()
    }

    /// Removes one waiter (its request stopped waiting); the entry goes when none is left, and
    /// the user is told it ended unanswered.
    fn forget(&self, id: u64, waiter: u64) {
        let gone = {
            let mut all = self.lock();
            let empty = match all.get_mut(&id).map(|p| &mut p.waiters) {
                Some(Waiters::Host(w)) => {
                    w.retain(|(i, _)| *i != waiter);
                    w.is_empty()
                }
                Some(Waiters::Command(_)) => true,
                None => false,
            };
            if empty {
                all.remove(&id)
            } else {
                None
            }
        };
        if let Some(p) = gone {
            let outcome = if p.view.is_command() {
                "left to the agent's own prompt"
            } else {
                "refused"
            };
            self.notices.send(&format!(
                "airlock: request {} ({}) ended without an answer: {outcome}",
                p.view.id,
                p.view.what()
            ));
            self.ask_next();
        }
    }

    /// On airlock's terminal: the question for the oldest request still held, if any.
    fn ask_next(&self) {
        if self.terminal_key.is_none() {
            return;
        }
        let next = self.lock().values().next().map(|p| p.view.clone());
        if let Some(v) = next {
            self.notices.send(&self.question(&v));
        }
    }

    /// The line that asks about `v`: the keys on airlock's terminal, else the commands.
    fn question(&self, v: &PendingView) -> String {
        let (s, secs, rule, what) = (&self.session, self.timeout_secs, &v.rule, v.what());
        match (&self.terminal_key, v.is_command()) {
            (Some(k), false) => format!(
                "airlock: allow {what}? {k} then o once, s session, p project, d deny ({secs}s; rule {rule})"
            ),
            (Some(k), true) => format!(
                "airlock: run {what}? {k} then o once, d deny ({secs}s; rule {rule})"
            ),
            (None, false) => format!(
                "airlock: session {s} holds {what} (rule {rule}) for {secs}s: \
                 `airlock approve {s} {what} --for once|session|project` or `airlock deny {s} {what}`"
            ),
            (None, true) => format!(
                "airlock: session {s} holds {what} (request {id}, rule {rule}) for {secs}s: \
                 `airlock approve {s} {id}` or `airlock deny {s} {id}`",
                id = v.id
            ),
        }
    }

    /// The ids `target` names: none (the only request held), a request number, or `HOST` /
    /// `HOST:PORT` (every held destination that matches).
    fn select(&self, all: &BTreeMap<u64, Pending>, target: Option<&str>) -> Result<Vec<u64>> {
        let s = &self.session;
        let listed = || {
            all.values()
                .map(|p| format!("{} ({})", p.view.id, p.view.what()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(target) = target else {
            return match all.len() {
                0 => bail!(
                    "session {s} holds no request (a request is refused once its time, {}s, is up)",
                    self.timeout_secs
                ),
                1 => Ok(all.keys().copied().collect()),
                n => bail!("session {s} holds {n} requests; name one: {}", listed()),
            };
        };
        if !target.is_empty() && target.chars().all(|c| c.is_ascii_digit()) {
            match target.parse::<u64>() {
                Ok(id) if all.contains_key(&id) => return Ok(vec![id]),
                _ => bail!(
                    "session {s} holds no request {target}: it was answered, timed out ({}s) or \
                     never held; `airlock approvals` lists the held ones",
                    self.timeout_secs
                ),
            }
        }
        let (host, port) = parse_target(target)?;
        let ids: Vec<u64> = all
            .values()
            .filter(|p| {
                p.view.host.as_deref() == Some(host.as_str())
                    && port.is_none_or(|want| p.view.port == Some(want))
            })
            .map(|p| p.view.id)
            .collect();
        if ids.is_empty() {
            bail!(
                "session {s} holds no request for {target}; `airlock approvals` lists the held ones \
                 (a request is refused once its time, {}s, is up)",
                self.timeout_secs
            );
        }
        Ok(ids)
    }

    /// The user's answer for `target` (see [`Approvals::select`]): `None` refuses. Every
    /// request of the selected entries gets it. Errors name what is wrong; on an error after
    /// the requests were taken, they are refused.
    pub(crate) fn answer(&self, target: Option<&str>, scope: Option<Scope>) -> Result<String> {
        let taken: Vec<Pending> = {
            let mut all = self.lock();
            let ids = self.select(&all, target)?;
            if let (Some(s @ (Scope::Session | Scope::Project)), Some(p)) = (
                scope,
                ids.iter()
                    .filter_map(|i| all.get(i))
                    .find(|p| p.view.is_command()),
            ) {
                bail!(
                    "request {} is a command: it can be allowed once only, not for the {}; \
                     to allow it always, add a rule to [commands] allow",
                    p.view.id,
                    s.as_str()
                );
            }
            ids.iter().filter_map(|k| all.remove(k)).collect()
        };
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
                    let what = describe(&taken);
                    send_all(taken, answer);
                    return Err(e.context(format!(
                        "{what} was refused: the approval could not be recorded"
                    )));
                }
            }
        }
        let what = describe(&taken);
        send_all(taken, answer);
        Ok(match scope {
            None => format!("refused {what}"),
            Some(s) => format!("allowed {what} ({}){note}", s.as_str()),
        })
    }

    /// Adds the destinations to the project policy file; returns its path.
    fn write_project(&self, taken: &[Pending]) -> Result<PathBuf> {
        let Some(path) = &self.project_file else {
            bail!("there is no per-project policy file (no config directory: set HOME or XDG_CONFIG_HOME)");
        };
        let pairs: Vec<(&str, u16)> = taken
            .iter()
            .filter_map(|p| Some((p.view.host.as_deref()?, p.view.port?)))
            .collect();
        add_to_policy_file(path, &pairs)?;
        Ok(path.clone())
    }

    /// The terminal's answer: `scope` (`None` refuses) for the oldest request held. The lines
    /// to show: what was done (or why not), then the next question.
    pub(crate) fn answer_oldest(&self, scope: Option<Scope>) -> Vec<String> {
        let oldest = self.lock().keys().next().copied();
        let Some(id) = oldest else {
            return vec!["airlock: nothing is held any more".to_string()];
        };
        let done = match self.answer(Some(&id.to_string()), scope) {
            Ok(s) => format!("airlock: request {id}: {s}"),
            Err(e) => format!("airlock: request {id}: {e:#}"),
        };
        let next = self.lock().values().next().map(|p| p.view.clone());
        let mut lines = vec![done];
        lines.extend(next.map(|v| self.question(&v)));
        lines
    }
}

/// `HOST:PORT, ...` or ``the command `CMD` `` of taken entries.
fn describe(taken: &[Pending]) -> String {
    taken
        .iter()
        .map(|p| p.view.what())
        .collect::<Vec<_>>()
        .join(", ")
}

fn send_all(taken: Vec<Pending>, answer: Answer) {
    for p in taken {
        match p.waiters {
            Waiters::Host(w) => {
                for (_, tx) in w {
                    let _ = tx.send(answer);
                }
            }
            Waiters::Command(tx) => {
                let _ = tx.send(matches!(answer, Answer::Once | Answer::Session));
            }
        }
    }
}

/// `HOST` or `HOST:PORT` (a bracketed IPv6 literal with a port: `[::1]:443`).
fn parse_target(target: &str) -> Result<(String, Option<u16>)> {
    let bad = || {
        anyhow::anyhow!("'{target}' is not a host or host:port (e.g. registry.npmjs.org:443) or a request number")
    };
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

/// What a held command's wait ends with: `Some(true)` allowed, `Some(false)` refused, `None`
/// no answer (the session is ending).
pub(crate) type CommandAnswer =
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<bool>> + Send>>;

impl Approvals {
    /// Holds a request for `host:port` until the user answers or the future is dropped.
    pub(crate) fn hold(self: &Arc<Self>, host: &str, port: u16, rule: &str) -> AnswerFuture {
        let (tx, rx) = oneshot::channel();
        let waiter = self.next.fetch_add(1, Ordering::Relaxed);
        let (id, first) = {
            let mut all = self.lock();
            let existing = all
                .values()
                .find(|p| p.view.host.as_deref() == Some(host) && p.view.port == Some(port))
                .map(|p| p.view.id);
            let id = match existing {
                Some(id) => id,
                None if all.len() >= MAX_PENDING => {
                    return Box::pin(std::future::ready(Answer::Refuse));
                }
                None => {
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    all.insert(
                        id,
                        Pending {
                            view: self.view(id, "host", rule, Some((host, port)), None),
                            waiters: Waiters::Host(Vec::new()),
                        },
                    );
                    id
                }
            };
            match all.get_mut(&id).map(|p| &mut p.waiters) {
                Some(Waiters::Host(w)) => {
                    w.push((waiter, tx));
                    (id, w.len() == 1)
                }
                _ => return Box::pin(std::future::ready(Answer::Refuse)),
            }
        };
        if first {
            self.announce(id);
        }
        let guard = Forget {
            approvals: Arc::downgrade(self),
            id,
            waiter,
        };
        Box::pin(async move {
            let _guard = guard;
            rx.await.unwrap_or(Answer::Refuse)
        })
    }

    /// Holds the gate's `ask` for `command` (run by `tool`, decided by `rule`) until the user
    /// answers or the future is dropped; `None` when [`MAX_PENDING`] requests are held already.
    pub(crate) fn hold_command(
        self: &Arc<Self>,
        tool: &str,
        command: &str,
        rule: &str,
    ) -> Option<(u64, CommandAnswer)> {
        let (tx, rx) = oneshot::channel();
        let waiter = self.next.fetch_add(1, Ordering::Relaxed);
        let id = {
            let mut all = self.lock();
            if all.len() >= MAX_PENDING {
                return None;
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let command = airlock_sandbox::notice::printable(command, 400);
            all.insert(
                id,
                Pending {
                    view: self.view(id, "command", rule, None, Some((tool, &command))),
                    waiters: Waiters::Command(tx),
                },
            );
            id
        };
        self.announce(id);
        let guard = Forget {
            approvals: Arc::downgrade(self),
            id,
            waiter,
        };
        Some((
            id,
            Box::pin(async move {
                let _guard = guard;
                rx.await.ok()
            }),
        ))
    }

    fn view(
        &self,
        id: u64,
        kind: &str,
        rule: &str,
        dest: Option<(&str, u16)>,
        command: Option<(&str, &str)>,
    ) -> PendingView {
        PendingView {
            session: self.session.clone(),
            id,
            kind: kind.to_string(),
            host: dest.map(|(h, _)| h.to_string()),
            port: dest.map(|(_, p)| p),
            tool: command.map(|(t, _)| airlock_sandbox::notice::printable(t, 64)),
            command: command.map(|(_, c)| c.to_string()),
            rule: airlock_sandbox::notice::printable(rule, 200),
            since: airlock_audit::now_rfc3339(),
            waiting: 0,
        }
    }

    /// Tells the user a request is held: the notice line (the question, on airlock's terminal
    /// only when it is the one the keys answer now) and `[notify]` "waiting".
    fn announce(&self, id: u64) {
        let (view, oldest) = {
            let all = self.lock();
            (
                all.get(&id).map(|p| p.view.clone()),
                all.keys().next().copied(),
            )
        };
        let Some(view) = view else { return };
        let kept_back = {
            let mut a = self.announced.lock().unwrap_or_else(|e| e.into_inner());
            if !a.0.take(std::time::Instant::now()) {
                a.1 += 1;
                return;
            }
            std::mem::take(&mut a.1)
        };
        let mut line = self.question(&view);
        if kept_back > 0 {
            line.push_str(&format!(
                " ({kept_back} more held meanwhile: `airlock approvals` lists them)"
            ));
        }
        if self.terminal_key.is_none() || oldest == Some(id) {
            self.notices.send(&line);
        }
        if let Some(n) = &self.notify {
            n.send(crate::notify::Event::Waiting, &line);
        }
    }
}

/// Removes a waiter from the held list when its request stops waiting (answered, timed out,
/// or the connection went away).
struct Forget {
    approvals: std::sync::Weak<Approvals>,
    id: u64,
    waiter: u64,
}

impl Drop for Forget {
    fn drop(&mut self) {
        if let Some(a) = self.approvals.upgrade() {
            a.forget(self.id, self.waiter);
        }
    }
}

/// The terminal relay's side ([`airlock_sandbox::prompt::KeyAnswers`]): o/s/p/d after the
/// prefix key answer the oldest held request.
#[derive(Debug)]
pub(crate) struct TerminalAnswers(pub(crate) Arc<Approvals>);

impl airlock_sandbox::prompt::KeyAnswers for TerminalAnswers {
    fn pending(&self) -> bool {
        !self.0.lock().is_empty()
    }

    fn prompt(&self) -> Vec<String> {
        let oldest = self.0.lock().values().next().map(|p| p.view.clone());
        oldest.map(|v| self.0.question(&v)).into_iter().collect()
    }

    fn answer(&mut self, answer: u8) -> Vec<String> {
        let scope = match answer {
            b'o' => Some(Scope::Once),
            b's' => Some(Scope::Session),
            b'p' => Some(Scope::Project),
            _ => None,
        };
        self.0.answer_oldest(scope)
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

/// The control-socket side: `approvals`, `approve TARGET SCOPE`, `deny TARGET` (TARGET `-`:
/// the only request held); the answer line.
pub(crate) fn control(a: &Approvals, words: &[&str]) -> String {
    let pick = |t: &str| (t != "-").then(|| t.to_string());
    let r = match words {
        ["approvals"] => serde_json::to_string(&a.list()).map_err(anyhow::Error::from),
        ["approve", target, scope] => match Scope::parse(scope) {
            Some(s) => a.answer(pick(target).as_deref(), Some(s)),
            None => Err(anyhow::anyhow!(
                "unknown scope '{scope}' (once, session or project)"
            )),
        },
        ["deny", target] => a.answer(pick(target).as_deref(), None),
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
            Approvals::new("t1", project, 30, tx, None, Box::new(|| Ok(())), None),
            rx,
        )
    }

    /// A flood of held requests (names the agent chose) gives a few questions and then a count,
    /// not one line and one notification each; every request is still held and listed.
    #[tokio::test]
    async fn a_flood_of_held_requests_is_rate_limited() {
        let (a, mut notices) = approvals(None);
        let held: Vec<_> = (0..20)
            .map(|i| {
                a.hold(
                    &format!("h{i}.flood.test"),
                    443,
                    "network.allow: no pattern matches",
                )
            })
            .collect();
        let lines = notices.read_lines().expect("open");
        assert!(
            !lines.is_empty() && lines.len() <= 5,
            "at most the burst of questions: {lines:?}"
        );
        assert_eq!(a.list().len(), 20, "every request is still held");
        drop(held);
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
            .answer(Some("nosuch.test"), Some(Scope::Once))
            .expect_err("unknown host");
        assert!(
            e.to_string().contains("holds no request for nosuch.test"),
            "{e}"
        );
        let e = a
            .answer(Some("x.test:80"), Some(Scope::Once))
            .expect_err("other port");
        assert!(e.to_string().contains("x.test:80"), "{e}");
        assert!(parse_target("bad host").is_err());
        assert!(a.answer(Some("x.test"), Some(Scope::Once)).is_ok());
        assert_eq!(r1.await, Answer::Once);
        assert_eq!(r2.await, Answer::Once);
        assert_eq!(
            a.answer(Some("y.test:8080"), None).expect("deny"),
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
        a.answer(Some("x.test"), Some(Scope::Project))
            .expect("project");
        a.answer(Some("y.test"), Some(Scope::Project))
            .expect("project");
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
            .answer(Some("z.test"), Some(Scope::Project))
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
            .answer(Some("z.test"), Some(Scope::Project))
            .expect_err("no directory");
        assert!(
            format!("{e:#}").contains("cannot create the directory"),
            "{e:#}"
        );
        assert_eq!(r.await, Answer::Refuse);
    }

    #[tokio::test]
    async fn a_held_command_is_answered_by_its_number_once_and_only_once() {
        let (a, mut notices) = approvals(None);
        let host = a.hold("x.test", 443, "network.allow: no pattern matches");
        let (id, cmd) = a
            .hold_command("Bash", "git push --force \x1b[2J", "ask: force push")
            .expect("held");
        assert_eq!(id, 2, "numbers are per session, in order");
        let list = a.list();
        assert_eq!(list[1].kind, "command");
        assert_eq!(list[1].command.as_deref(), Some("git push --force ?[2J"));
        assert_eq!((list[1].host.as_ref(), list[1].port), (None, None));
        let lines = notices.read_lines().expect("open");
        assert!(
            lines[1].contains("airlock approve t1 2") && lines[1].contains("git push"),
            "{lines:?}"
        );
        // Two held: naming none is ambiguous; a command is never allowed for longer than once.
        let e = a.answer(None, Some(Scope::Once)).expect_err("two held");
        assert!(e.to_string().contains("holds 2 requests"), "{e}");
        for s in [Scope::Session, Scope::Project] {
            let e = a.answer(Some("2"), Some(s)).expect_err("longer");
            assert!(e.to_string().contains("once only"), "{e}");
        }
        for bad in ["7", "0", "99999999999999999999999"] {
            let e = a.answer(Some(bad), Some(Scope::Once)).expect_err(bad);
            assert!(e.to_string().contains("holds no request"), "{bad}: {e}");
        }
        assert_eq!(
            a.answer(Some("2"), Some(Scope::Once)).expect("once"),
            "allowed the command `git push --force ?[2J` (once)"
        );
        assert_eq!(cmd.await, Some(true));
        // Answered already.
        let e = a.answer(Some("2"), None).expect_err("answered");
        assert!(e.to_string().contains("holds no request 2"), "{e}");
        // The only one left may go unnamed.
        assert!(a.answer(None, None).expect("deny").contains("x.test:443"));
        assert_eq!(host.await, Answer::Refuse);
        let (_, denied) = a.hold_command("Bash", "x", "r").expect("held");
        a.answer(Some("3"), None).expect("deny");
        assert_eq!(denied.await, Some(false));
        let e = a.answer(None, None).expect_err("nothing");
        assert!(e.to_string().contains("holds no request"), "{e}");
        // Unanswered: gone from the list, and the user is told.
        let (_, gone) = a.hold_command("Bash", "y", "r").expect("held");
        drop(gone);
        assert!(a.list().is_empty());
        let lines = notices.read_lines().expect("open");
        assert!(
            lines
                .iter()
                .any(|l| l.contains("request 4") && l.contains("without an answer")),
            "{lines:?}"
        );
    }

    #[tokio::test]
    async fn terminal_keys_answer_the_oldest_and_the_line_names_them() {
        use airlock_sandbox::prompt::KeyAnswers;
        let (tx, mut notices) = airlock_sandbox::notice::channel().expect("notices");
        let a = Approvals::new(
            "t1",
            None,
            30,
            tx,
            None,
            Box::new(|| Ok(())),
            Some("C-]".into()),
        );
        let mut keys = TerminalAnswers(a.clone());
        assert!(!keys.pending());
        assert!(keys.prompt().is_empty());
        assert_eq!(keys.answer(b'o'), vec!["airlock: nothing is held any more"]);
        let r1 = a.hold("x.test", 443, "network.allow: no pattern matches");
        let r2 = a.hold("y.test", 443, "network.allow: no pattern matches");
        assert!(keys.pending());
        assert!(keys.prompt()[0].contains("allow x.test:443?"));
        let lines = notices.read_lines().expect("open");
        // Only the one the keys answer is asked about.
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("allow x.test:443? C-] then o once, s session, p project, d deny"),
            "{lines:?}"
        );
        let lines = keys.answer(b's');
        assert!(
            lines[0].contains("allowed x.test:443 (session)"),
            "{lines:?}"
        );
        assert!(lines[1].contains("allow y.test:443?"), "{lines:?}");
        assert_eq!(r1.await, Answer::Session);
        let lines = keys.answer(b'd');
        assert_eq!(lines, vec!["airlock: request 2: refused y.test:443"]);
        assert_eq!(r2.await, Answer::Refuse);
        assert!(!keys.pending());
        // p without a project file: refused, and said why.
        let r3 = a.hold("z.test", 443, "network.allow: no pattern matches");
        let lines = keys.answer(b'p');
        assert!(lines[0].contains("could not be recorded"), "{lines:?}");
        assert_eq!(r3.await, Answer::Refuse);
    }
}
