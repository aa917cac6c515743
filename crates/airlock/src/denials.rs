//! Live denials: what a session refused, told to the user while it runs. The first refusal of
//! each host (each refused command, each refused unix socket) becomes one line naming what was
//! refused, the rule, and the exact fix; lines are rate-limited, and the supervisor prints a
//! summary when the session ends ([`Watcher::summary`]). Nothing here allows anything: a fix
//! is text for the user to apply.
//!
//! Also the one place a refusal becomes a policy change ([`changes_for`]), shared with
//! `airlock policy suggest`.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_audit::{AuditEvent, Decision, Detail};
use airlock_policy::network::{DEFAULT_PORTS, WHERE_TO_EDIT};
use airlock_sandbox::notice::NoticeSender;

/// Lines shown at once before the rate limit applies.
const BURST: u32 = 5;
/// One more line may be shown after each interval of this length.
const REFILL: Duration = Duration::from_secs(6);
/// Refused things named in the end-of-session summary.
const SUMMARY_MAX: usize = 20;
/// Distinct refused things remembered (the rest are counted, not named).
const MAX_KEYS: usize = 1024;

/// The smallest policy change that allows one refused destination, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Change {
    /// `host` in `[network] allow` (a name or an IP literal).
    AllowHost(String),
    /// `port` among `host`'s ports in `[network.ports]`.
    Port { host: String, port: u16 },
    /// `ip` in `[network] allow_private`.
    AllowPrivate { host: String, ip: String },
    /// No entry allows it; the text says what the user could do.
    Manual(String),
}

/// The changes that would have allowed a network refusal of `host` (`port` for the proxy,
/// `None` for a DNS query) decided by `rule` (the rule names of docs/network.md). Empty for
/// rules that are not policy refusals.
pub(crate) fn changes_for(host: &str, port: Option<u16>, rule: &str) -> Vec<Change> {
    let mut out = Vec::new();
    let needs_port = |p: Option<u16>| p.filter(|p| !DEFAULT_PORTS.contains(p));
    if rule.starts_with("network.allow:") || rule.starts_with("network.wildcard_names_max") {
        // An exact entry: a name listed exactly is never charged to a wildcard's budget.
        out.push(Change::AllowHost(host.to_string()));
        if let Some(port) = needs_port(port) {
            out.push(Change::Port {
                host: host.to_string(),
                port,
            });
        }
    } else if rule.starts_with("network.ports") {
        if let Some(port) = port {
            out.push(Change::Port {
                host: host.to_string(),
                port,
            });
        }
    } else if let Some(rest) = rule.strip_prefix("network.allow_private: ") {
        let ip = rest.split(' ').next().unwrap_or(rest);
        out.push(Change::AllowPrivate {
            host: host.to_string(),
            ip: ip.to_string(),
        });
    } else if let Some(entry) = rule.strip_prefix("network.deny") {
        out.push(Change::Manual(format!(
            "{host} is denied by [network] deny{entry}: remove that entry from the file that \
             lists it (deny wins over every allow)"
        )));
    } else if rule == "network.refuse_random_labels" {
        out.push(Change::Manual(format!(
            "a label of {host} looks like encoded data; only if you trust it, list {host} \
             exactly in [network] allow or set refuse_random_labels = false"
        )));
    }
    out
}

/// The fix for one refusal as the user types it: the flag when there is one, then the TOML
/// lines and their file.
pub(crate) fn fix_text(changes: &[Change]) -> Option<String> {
    let mut flag = Vec::new();
    let mut toml = Vec::new();
    for c in changes {
        match c {
            Change::AllowHost(h) => {
                flag.push(format!("--allow-domain {h}"));
                toml.push(format!("allow = [\"{h}\"] under [network]"));
            }
            Change::Port { host, port } => {
                let mut ports = DEFAULT_PORTS.to_vec();
                ports.push(*port);
                toml.push(format!("\"{host}\" = {ports:?} under [network.ports]"));
            }
            Change::AllowPrivate { ip, .. } => {
                toml.push(format!("allow_private = [\"{ip}\"] under [network]"));
            }
            Change::Manual(m) => return Some(m.clone()),
        }
    }
    if toml.is_empty() {
        return None;
    }
    let toml = format!("{} {WHERE_TO_EDIT}", toml.join(" and "));
    // The flag alone is enough only when no other line is needed.
    Some(if flag.len() == 1 && changes.len() == 1 {
        format!("rerun with {}, or add {toml}", flag[0])
    } else {
        format!("add {toml}")
    })
}

/// One refusal as the user is told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notice {
    /// What is counted once: the host (with the port for a port refusal), the command, the path.
    pub(crate) key: String,
    /// What was refused, e.g. `registry.npmjs.org:443`.
    pub(crate) what: String,
    pub(crate) rule: String,
    pub(crate) fix: Option<String>,
}

/// The notice for a refusal event; `None` for other events and refusals that are not a
/// policy's (a malformed request, an upstream failure).
pub(crate) fn notice_for(ev: &AuditEvent) -> Option<Notice> {
    if ev.decision != Decision::Deny {
        return None;
    }
    let rule = ev.rule.clone().unwrap_or_default();
    let (key, what, fix) = match &ev.detail {
        Detail::Net { host, port, .. } => {
            if !rule.starts_with("network.") && !rule.starts_with("tls.sni") {
                return None;
            }
            let key = if rule.starts_with("network.ports") {
                format!("net:{host}:{port}")
            } else {
                format!("net:{host}")
            };
            let fix = if rule.starts_with("tls.sni") {
                Some("the agent's TLS client must send the CONNECT host as its SNI; no policy change allows a tunnel that does not".to_string())
            } else {
                fix_text(&changes_for(host, Some(*port), &rule))
            };
            (key, format!("{host}:{port}"), fix)
        }
        Detail::Dns { name, .. } => {
            if !rule.starts_with("network.") {
                return None;
            }
            let fix = fix_text(&changes_for(name, None, &rule));
            (format!("net:{name}"), format!("DNS {name}"), fix)
        }
        Detail::Command { command, tool, .. } => {
            let what = command.clone().unwrap_or_else(|| tool.clone());
            let short: String = what.chars().take(80).collect();
            (
                format!("cmd:{what}"),
                format!("command `{short}` (as the gate inside the sandbox reported it)"),
                Some(format!(
                    "if it should run, add a rule under [commands] {WHERE_TO_EDIT}; \
                     `airlock policy explain -- COMMAND` shows which rule decided"
                )),
            )
        }
        Detail::Unix { path, .. } => (
            format!("unix:{path}"),
            format!("unix socket {path}"),
            Some("a socket outside the sandbox; no policy allows it".to_string()),
        ),
        _ => return None,
    };
    Some(Notice {
        key,
        what,
        rule,
        fix,
    })
}

/// The line shown for a notice.
pub(crate) fn line(n: &Notice, session: &str, hidden: u64) -> String {
    let fix = n
        .fix
        .as_deref()
        .map(|f| format!("; {f}"))
        .unwrap_or_default();
    let more = if hidden > 0 {
        format!(" ({hidden} more refusal(s) not shown: `airlock audit {session} --denied`)")
    } else {
        String::new()
    };
    format!("airlock: refused {} (rule {}){fix}{more}", n.what, n.rule)
}

/// A token bucket: [`BURST`] lines at once, then one per [`REFILL`] (the live denials' lines and
/// the approvals' questions and notifications).
#[derive(Debug)]
pub(crate) struct Limiter {
    tokens: u32,
    last: Instant,
}

impl Limiter {
    pub(crate) fn new(now: Instant) -> Self {
        Limiter {
            tokens: BURST,
            last: now,
        }
    }

    /// Whether one more line may go out at `now` (and takes its token).
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let earned = now.saturating_duration_since(self.last).as_secs() / REFILL.as_secs();
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(BURST);
            self.last = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// What a session refused so far, for the live lines and the summary at its end.
#[derive(Debug)]
pub(crate) struct Watcher {
    session: String,
    /// Refusals per key (first notice, count), in first-seen order by insertion index.
    seen: HashMap<String, (usize, Notice, u64)>,
    limiter: Limiter,
    /// Refusals of new keys the limiter kept off the terminal, not yet mentioned.
    hidden: u64,
    /// Refusals beyond [`MAX_KEYS`] distinct keys.
    overflow: u64,
}

impl Watcher {
    pub(crate) fn new(session: &str, now: Instant) -> Self {
        Watcher {
            session: session.to_string(),
            seen: HashMap::new(),
            limiter: Limiter::new(now),
            hidden: 0,
            overflow: 0,
        }
    }

    /// Takes one event; the line to show now, if any (a first refusal the limit lets through).
    pub(crate) fn observe(&mut self, ev: &AuditEvent, now: Instant) -> Option<String> {
        let n = notice_for(ev)?;
        if let Some((_, _, count)) = self.seen.get_mut(&n.key) {
            *count += 1;
            return None;
        }
        if self.seen.len() >= MAX_KEYS {
            self.overflow += 1;
            return None;
        }
        let order = self.seen.len();
        self.seen.insert(n.key.clone(), (order, n.clone(), 1));
        if !self.limiter.take(now) {
            self.hidden += 1;
            return None;
        }
        let l = line(&n, &self.session, self.hidden);
        self.hidden = 0;
        Some(l)
    }

    /// The end-of-session summary: every refused thing with its count, and where to go next;
    /// `None` when nothing was refused.
    pub(crate) fn summary(&self) -> Option<String> {
        if self.seen.is_empty() {
            return None;
        }
        let mut all: Vec<&(usize, Notice, u64)> = self.seen.values().collect();
        all.sort_by_key(|(i, _, _)| *i);
        let list: Vec<String> = all
            .iter()
            .take(SUMMARY_MAX)
            .map(|(_, n, c)| format!("{} ({c}x, rule {})", n.what, n.rule))
            .collect();
        let by_kind: BTreeMap<bool, usize> =
            all.iter().fold(BTreeMap::new(), |mut m, (_, n, _)| {
                *m.entry(n.key.starts_with("net:")).or_insert(0) += 1;
                m
            });
        let s = &self.session;
        let mut text = format!("airlock: session {s} refused: {}", list.join(", "));
        let more =
            self.overflow + u64::try_from(all.len().saturating_sub(SUMMARY_MAX)).unwrap_or(0);
        if more > 0 {
            text.push_str(&format!(
                " and {more} more (`airlock audit {s} --denied` lists them)"
            ));
        }
        if by_kind.get(&true).is_some_and(|n| *n > 0) {
            text.push_str(&format!(
                "\nairlock: `airlock policy suggest {s}` prints the policy change that would allow them"
            ));
        }
        Some(text)
    }
}

/// Starts the watcher on a thread of its own: every event on `events` that is a refusal is
/// counted, and shown through `notices` (and sent to `notify` as "blocked") as
/// [`Watcher::observe`] says. The thread ends when
/// every sender is gone; the returned handle reads the summary at any time.
pub(crate) fn spawn(
    session: &str,
    events: Receiver<AuditEvent>,
    notices: NoticeSender,
    notify: Option<crate::notify::Notifier>,
) -> anyhow::Result<Arc<Mutex<Watcher>>> {
    let watcher = Arc::new(Mutex::new(Watcher::new(session, Instant::now())));
    let w = watcher.clone();
    std::thread::Builder::new()
        .name("airlock-denials".into())
        .spawn(move || {
            for ev in events {
                let line = w
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .observe(&ev, Instant::now());
                if let Some(l) = line {
                    notices.send(&l);
                    if let Some(n) = &notify {
                        n.send(crate::notify::Event::Blocked, &l);
                    }
                }
            }
        })
        .map_err(|e| anyhow::anyhow!("cannot start the thread that reports refusals: {e}"))?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(host: &str, port: u16, rule: &str) -> AuditEvent {
        AuditEvent::now(
            Decision::Deny,
            Detail::Net {
                host: host.into(),
                port,
                method: None,
                bytes_up: 0,
                bytes_down: 0,
                duration_ms: 0,
            },
        )
        .rule(rule)
    }

    const NO_MATCH: &str = "network.allow: no pattern matches";

    #[test]
    fn the_first_refusal_of_each_host_is_one_line_with_the_fix() {
        let t0 = Instant::now();
        let mut w = Watcher::new("s1", t0);
        let l = w
            .observe(&net("registry.npmjs.org", 443, NO_MATCH), t0)
            .expect("first");
        assert!(l.contains("refused registry.npmjs.org:443"), "{l}");
        assert!(l.contains("rule network.allow: no pattern matches"), "{l}");
        assert!(l.contains("--allow-domain registry.npmjs.org"), "{l}");
        assert!(
            l.contains("allow = [\"registry.npmjs.org\"] under [network]"),
            "{l}"
        );
        assert!(l.contains("~/.config/airlock/config.toml"), "{l}");
        // Same host again, on another port, by DNS: no new line.
        assert_eq!(
            w.observe(&net("registry.npmjs.org", 443, NO_MATCH), t0),
            None
        );
        assert_eq!(
            w.observe(&net("registry.npmjs.org", 80, NO_MATCH), t0),
            None
        );
        let dns = AuditEvent::now(
            Decision::Deny,
            Detail::Dns {
                name: "registry.npmjs.org".into(),
                qtype: "A".into(),
                flag: None,
            },
        )
        .rule(NO_MATCH);
        assert_eq!(w.observe(&dns, t0), None);
        // Allowed events and non-policy failures never make a line.
        let mut ok = net("other.test", 443, "network.allow[0]=other.test");
        ok.decision = Decision::Allow;
        assert_eq!(w.observe(&ok, t0), None);
        assert_eq!(w.observe(&net("bad", 1, "agent: bad request"), t0), None);
        let s = w.summary().expect("summary");
        assert!(s.contains("registry.npmjs.org:443 (4x"), "{s}");
        assert!(s.contains("airlock policy suggest s1"), "{s}");
    }

    #[test]
    fn a_flood_of_new_hosts_is_rate_limited_and_summarised() {
        let t0 = Instant::now();
        let mut w = Watcher::new("s1", t0);
        let shown = (0..100)
            .filter(|i| {
                w.observe(&net(&format!("h{i}.test"), 443, NO_MATCH), t0)
                    .is_some()
            })
            .count();
        assert_eq!(shown, BURST as usize);
        // Later, one more line, which says how many were not shown.
        let later = t0 + REFILL;
        let l = w
            .observe(&net("late.test", 443, NO_MATCH), later)
            .expect("refilled");
        assert!(l.contains("95 more refusal(s) not shown"), "{l}");
        assert!(l.contains("airlock audit s1 --denied"), "{l}");
        // Distinct keys are bounded.
        for i in 0..5000 {
            w.observe(&net(&format!("x{i}.test"), 443, NO_MATCH), later);
        }
        assert_eq!(w.seen.len(), MAX_KEYS);
        assert!(w.summary().expect("summary").contains("more"));
    }

    #[test]
    fn every_network_rule_gets_its_own_fix() {
        let fix = |host, port, rule| fix_text(&changes_for(host, port, rule)).expect("fix");
        let f = fix("api.test", Some(8443), NO_MATCH);
        assert!(f.contains("allow = [\"api.test\"]"), "{f}");
        assert!(
            f.contains("\"api.test\" = [80, 443, 8443] under [network.ports]"),
            "{f}"
        );
        assert!(
            !f.contains("rerun with"),
            "the flag alone is not enough: {f}"
        );
        let f = fix("api.test", Some(22), "network.ports: default=[80, 443]");
        assert!(f.contains("\"api.test\" = [80, 443, 22]"), "{f}");
        let f = fix(
            "in.test",
            Some(443),
            "network.allow_private: 10.0.0.1 is private (10.0.0.0/8)",
        );
        assert!(f.contains("allow_private = [\"10.0.0.1\"]"), "{f}");
        let f = fix("gist.test", Some(443), "network.deny[0]=gist.test");
        assert!(f.contains("remove that entry"), "{f}");
        let f = fix(
            "a.w.test",
            Some(443),
            "network.wildcard_names_max=64 (*.w.test)",
        );
        assert!(f.contains("--allow-domain a.w.test"), "{f}");
        assert_eq!(
            changes_for("x", Some(443), "upstream: connect failed"),
            vec![]
        );
    }
}
