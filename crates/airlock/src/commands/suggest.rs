//! `airlock policy suggest`: the smallest policy change that would have allowed what a session
//! was refused on the network, from its audit log, as commented TOML to review, paste, or
//! write to a new file with `--write`. Nothing is applied: the user decides.
//!
//! Smallest means: each refused name exactly (`[network] allow`), a `[network.ports]` entry
//! only for a host refused on a port its entry would not open (listing every port the session
//! used with it, so the entry does not close one that worked), `allow_private` only for the
//! addresses a name was refused for. `--wildcards` groups two or more names under one
//! `*.domain` when they share a registrable domain by the Public Suffix List (the `psl` crate),
//! never across one (`a.github.io` and `b.github.io` are different owners).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use airlock_audit::{read_events, AuditEvent, Decision, Detail};
use anyhow::{bail, Context, Result};

use crate::cli::SuggestArgs;
use crate::denials::{changes_for, Change};
use crate::session_dir;

/// What the audit log says about one refused name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    /// Refusals counted (the log's rate limiter may have summarised more).
    pub(crate) count: u64,
    pub(crate) first: String,
    pub(crate) last: String,
    pub(crate) rules: BTreeSet<String>,
}

impl Refused {
    fn add(&mut self, ev: &AuditEvent, rule: &str) {
        if self.count == 0 {
            self.first.clone_from(&ev.ts);
        }
        self.count += 1;
        self.last.clone_from(&ev.ts);
        self.rules.insert(rule.to_string());
    }

    fn comment(&self) -> String {
        let rules: Vec<&str> = self.rules.iter().map(String::as_str).collect();
        let when = if self.count == 1 {
            format!("at {}", self.first)
        } else {
            format!("first {}, last {}", self.first, self.last)
        };
        format!(
            "refused {} time{}, {when} ({})",
            self.count,
            if self.count == 1 { "" } else { "s" },
            rules.join("; ")
        )
    }
}

/// The suggestion, before it is rendered.
#[derive(Debug, Default)]
pub(crate) struct Suggestion {
    /// Entries for `[network] allow`: a name (or `*.domain`) and what was refused under it.
    pub(crate) allow: BTreeMap<String, (Refused, Vec<String>)>,
    /// `[network.ports]`: host -> every port the session used with it.
    pub(crate) ports: BTreeMap<String, (BTreeSet<u16>, Refused)>,
    /// `[network] allow_private`: address -> the names refused for it.
    pub(crate) allow_private: BTreeMap<String, (BTreeSet<String>, Refused)>,
    /// Refusals no entry can allow, with what the user could do.
    pub(crate) manual: BTreeMap<String, Refused>,
}

impl Suggestion {
    fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.ports.is_empty() && self.allow_private.is_empty()
    }
}

/// Builds the suggestion from a session's events.
pub(crate) fn suggest(events: &[AuditEvent], wildcards: bool) -> Suggestion {
    let mut s = Suggestion::default();
    let mut names: BTreeMap<String, Refused> = BTreeMap::new();
    let mut used_ports: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    let mut port_refusals: BTreeMap<String, Refused> = BTreeMap::new();
    for ev in events {
        let (host, port) = match &ev.detail {
            Detail::Net { host, port, .. } => (host, Some(*port)),
            Detail::Dns { name, .. } => (name, None),
            _ => continue,
        };
        let rule = ev.rule.as_deref().unwrap_or_default();
        if ev.decision == Decision::Allow && rule.starts_with("network.allow[") {
            if let Some(p) = port {
                used_ports.entry(host.clone()).or_default().insert(p);
            }
            continue;
        }
        if ev.decision != Decision::Deny {
            continue;
        }
        for change in changes_for(host, port, rule) {
            match change {
                Change::AllowHost(h) => names.entry(h).or_default().add(ev, rule),
                Change::Port { host, port } => {
                    used_ports.entry(host.clone()).or_default().insert(port);
                    port_refusals.entry(host).or_default().add(ev, rule);
                }
                Change::AllowPrivate { host, ip } => {
                    let e = s.allow_private.entry(ip).or_default();
                    e.0.insert(host);
                    e.1.add(ev, rule);
                }
                Change::Manual(m) => s.manual.entry(m).or_default().add(ev, rule),
            }
        }
    }
    // A host refused by name on a default port, then refused nowhere else: no ports entry.
    for (host, refused) in port_refusals {
        let ports = used_ports.remove(&host).unwrap_or_default();
        s.ports.insert(host, (ports, refused));
    }
    s.allow = if wildcards {
        group(names)
    } else {
        names
            .into_iter()
            .map(|(n, r)| (n.clone(), (r, vec![n])))
            .collect()
    };
    s
}

/// Groups names that share a registrable domain (two or more, each strictly under it) into
/// `*.domain`; every other name stays exact.
fn group(names: BTreeMap<String, Refused>) -> BTreeMap<String, (Refused, Vec<String>)> {
    let mut by_domain: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in names.keys() {
        if let Some(d) = registrable(n).filter(|d| d != n) {
            by_domain.entry(d).or_default().push(n.clone());
        }
    }
    let mut out = BTreeMap::new();
    let mut grouped = BTreeSet::new();
    for (domain, members) in by_domain.into_iter().filter(|(_, m)| m.len() > 1) {
        let mut total = Refused::default();
        for m in &members {
            let r = &names[m];
            if total.count == 0 || r.first < total.first {
                total.first.clone_from(&r.first);
            }
            if r.last > total.last {
                total.last.clone_from(&r.last);
            }
            total.count += r.count;
            total.rules.extend(r.rules.iter().cloned());
            grouped.insert(m.clone());
        }
        out.insert(format!("*.{domain}"), (total, members));
    }
    for (n, r) in names {
        if !grouped.contains(&n) {
            out.insert(n.clone(), (r, vec![n]));
        }
    }
    out
}

/// The registrable domain of `name` (the public suffix and one label more), by the Public
/// Suffix List; `None` for IP literals and names that are themselves a public suffix.
fn registrable(name: &str) -> Option<String> {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    let d = psl::domain(name.as_bytes())?;
    // A suffix known to the list only: unknown TLDs would make `a.b.test` and `c.b.test`
    // "registrable" under the default rule, which is a guess, not the list.
    if !d.suffix().is_known() {
        return None;
    }
    std::str::from_utf8(d.as_bytes()).ok().map(str::to_string)
}

/// Text for a TOML comment: controls (a newline would end the comment and start a line of
/// TOML) and bidi overrides become `?`. Names come from what the agent asked for.
fn comment_safe(text: &str) -> String {
    airlock_sandbox::notice::printable(text, 4096)
}

/// A TOML basic string on one line (valid as a key and as a value): `"` and `\` escaped,
/// every control character as `\uXXXX` (TOML 1.0, "String").
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The suggestion as commented TOML.
pub(crate) fn render(s: &Suggestion, session: &str, log: &Path) -> String {
    let mut t = format!(
        "# airlock policy suggest {session}: the smallest change that would have allowed what\n\
         # session {session} was refused on the network (from {}).\n\
         # Nothing is applied: review it, then pass it with `airlock run --policy FILE` (kept\n\
         # outside the workspace) or merge it into ~/.config/airlock/config.toml.\n",
        comment_safe(&log.display().to_string())
    );
    for (what, r) in &s.manual {
        let c = format!("{what}; {}", r.comment());
        t.push_str(&format!("# not suggested: {}\n", comment_safe(&c)));
    }
    t.push_str("\n[network]\n");
    if !s.allow.is_empty() {
        t.push_str("allow = [\n");
        for (entry, (r, members)) in &s.allow {
            let mut c = r.comment();
            if members.len() > 1 || members.first() != Some(entry) {
                c.push_str(&format!("; names: {}", members.join(", ")));
            }
            t.push_str(&format!("    {}, # {}\n", quoted(entry), comment_safe(&c)));
        }
        t.push_str("]\n");
    }
    if !s.allow_private.is_empty() {
        t.push_str("allow_private = [\n");
        for (ip, (hosts, r)) in &s.allow_private {
            let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
            let c = format!("{} resolved there; {}", hosts.join(", "), r.comment());
            t.push_str(&format!("    {}, # {}\n", quoted(ip), comment_safe(&c)));
        }
        t.push_str("]\n");
    }
    if !s.ports.is_empty() {
        t.push_str("\n[network.ports]\n");
        for (host, (ports, r)) in &s.ports {
            let ports: Vec<u16> = ports.iter().copied().collect();
            let c = comment_safe(&r.comment());
            t.push_str(&format!("{} = {ports:?} # {c}\n", quoted(host)));
        }
    }
    t
}

/// `airlock policy suggest [ID] [--wildcards] [--write FILE]`.
pub(crate) fn run(args: SuggestArgs) -> Result<i32> {
    let info = session_dir::find(args.id.as_deref())?;
    let log = info.dir.join("audit.jsonl");
    let (events, _) = read_events(&log)?;
    let s = suggest(&events, args.wildcards);
    if s.is_empty() && s.manual.is_empty() {
        eprintln!(
            "airlock: session {} was refused nothing on the network; there is nothing to suggest",
            info.id
        );
        return Ok(0);
    }
    let text = render(&s, &info.id, &log);
    match &args.write {
        None => write!(std::io::stdout(), "{text}")?,
        Some(path) => {
            write_new(path, &info.workspace, &text)?;
            eprintln!(
                "airlock: wrote {}; use it with `airlock run --policy {}`",
                path.display(),
                path.display()
            );
        }
    }
    if s.is_empty() {
        eprintln!(
            "airlock: no policy entry would allow what session {} was refused (see the comments)",
            info.id
        );
    }
    Ok(0)
}

/// Writes `text` to a new file at `path`, never over an existing file or link, and never
/// inside `workspace` (a policy file there may only narrow the policy: the agent can write it).
fn write_new(path: &Path, workspace: &Path, text: &str) -> Result<()> {
    let parent = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => p.to_path_buf(),
        None => PathBuf::from("."),
    };
    let dir = std::fs::canonicalize(&parent).with_context(|| {
        format!(
            "cannot write {}: its directory {} does not exist or cannot be read",
            path.display(),
            parent.display()
        )
    })?;
    let ws = std::fs::canonicalize(workspace).unwrap_or_else(|_| workspace.to_path_buf());
    if dir.starts_with(&ws) {
        bail!(
            "{} is inside the session's workspace {}: a policy file there may only narrow the \
             policy (the agent can write it); write it elsewhere, e.g. ~/.config/airlock/",
            path.display(),
            ws.display()
        );
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create {} (it must not exist yet, and its directory must be writable)",
                path.display()
            )
        })?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(decision: Decision, host: &str, port: u16, rule: &str, ts: &str) -> AuditEvent {
        let mut e = AuditEvent::now(
            decision,
            Detail::Net {
                host: host.into(),
                port,
                method: None,
                bytes_up: 0,
                bytes_down: 0,
                duration_ms: 0,
            },
        )
        .rule(rule);
        e.ts = ts.into();
        e
    }

    const NO: &str = "network.allow: no pattern matches";

    fn parsed(s: &Suggestion) -> airlock_policy::ConfigFile {
        let text = render(s, "s1", Path::new("/x/audit.jsonl"));
        airlock_policy::ConfigFile::parse(Path::new("suggested.toml"), &text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn exactly_the_refused_hosts_with_counts_times_and_ports() {
        let events = vec![
            ev(Decision::Deny, "a.test", 443, NO, "T1"),
            ev(Decision::Deny, "a.test", 443, NO, "T2"),
            ev(Decision::Deny, "b.test", 8443, NO, "T3"),
            ev(
                Decision::Allow,
                "c.test",
                443,
                "network.allow[0]=c.test",
                "T4",
            ),
            ev(
                Decision::Allow,
                "c.test",
                443,
                "network.allow[0]=c.test",
                "T4",
            ),
            ev(
                Decision::Deny,
                "c.test",
                22,
                "network.ports: default=[80, 443]",
                "T5",
            ),
            ev(
                Decision::Deny,
                "d.test",
                443,
                "upstream: connect failed",
                "T6",
            ),
            ev(
                Decision::Deny,
                "e.test",
                443,
                "network.deny[0]=e.test",
                "T7",
            ),
            ev(
                Decision::Deny,
                "f.test",
                443,
                "network.allow_private: 10.1.2.3 is private (10.0.0.0/8)",
                "T8",
            ),
        ];
        let s = suggest(&events, false);
        let c = parsed(&s);
        assert_eq!(c.network.allow, vec!["a.test", "b.test"]);
        assert_eq!(c.network.ports.get("b.test"), Some(&vec![8443]));
        // The port entry keeps the port that worked.
        assert_eq!(c.network.ports.get("c.test"), Some(&vec![22, 443]));
        assert_eq!(c.network.ports.len(), 2);
        assert_eq!(c.network.allow_private, vec!["10.1.2.3"]);
        let text = render(&s, "s1", Path::new("/x/audit.jsonl"));
        assert!(
            text.contains("refused 2 times, first T1, last T2"),
            "{text}"
        );
        assert!(text.contains("# not suggested: e.test is denied"), "{text}");
        assert!(!text.contains("d.test"), "{text}");
    }

    /// Names and rules come from what the agent asked for: none can end a comment and add a
    /// line of TOML, under any entry kind.
    #[test]
    fn names_never_inject_toml() {
        let evil = "x.test\n[network]\nallow = [\"*.evil.com\"]\r\n";
        let events = vec![
            ev(
                Decision::Deny,
                evil,
                443,
                NO,
                "T\nallow_private = [\"0.0.0.0/0\"]",
            ),
            ev(
                Decision::Deny,
                evil,
                8443,
                "network.deny[0]=\nallow=[\"a\"]",
                "T",
            ),
            ev(Decision::Deny, evil, 8443, NO, "T"),
            ev(
                Decision::Deny,
                evil,
                443,
                "network.allow_private: 10.0.0.1\nallow=[\"b\"] is private",
                "T",
            ),
            ev(Decision::Deny, "a.evil.co.uk\n#", 443, NO, "T"),
            ev(Decision::Deny, "b.evil.co.uk\n#", 443, NO, "T"),
        ];
        for wildcards in [false, true] {
            let c = parsed(&suggest(&events, wildcards));
            assert_eq!(c.network.allow.len(), 3, "{:?}", c.network.allow);
            assert!(
                c.network.allow.iter().all(|a| a.contains('\n')),
                "only the quoted names, nothing injected: {:?}",
                c.network.allow
            );
            assert_eq!(
                c.network.allow_private.len(),
                1,
                "{:?}",
                c.network.allow_private
            );
            assert!(c.network.allow_private[0].contains('\n'));
            assert_eq!(c.network.ports.len(), 1, "{:?}", c.network.ports);
        }
    }

    #[test]
    fn wildcards_group_only_by_registrable_domain_and_only_when_asked() {
        let hosts = [
            "api.github.com",
            "codeload.github.com",
            "github.com",
            "alice.github.io",
            "bob.github.io",
            "a.b.co.uk",
            "c.b.co.uk",
            "x.co.uk",
            "y.co.uk",
            "registry.npmjs.org",
            "one.internal.test",
            "two.internal.test",
            "192.168.1.1",
        ];
        let events: Vec<AuditEvent> = hosts
            .iter()
            .map(|h| ev(Decision::Deny, h, 443, NO, "T"))
            .collect();
        let plain = parsed(&suggest(&events, false));
        let mut sorted: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        sorted.sort();
        assert_eq!(
            plain.network.allow, sorted,
            "no grouping without --wildcards"
        );
        let grouped = parsed(&suggest(&events, true));
        let want: BTreeSet<&str> = [
            "*.github.com",
            "github.com",
            // github.io is a public suffix: its names belong to different owners.
            "alice.github.io",
            "bob.github.io",
            "*.b.co.uk",
            "x.co.uk",
            "y.co.uk",
            "registry.npmjs.org",
            // .test is not in the list: no guessing.
            "one.internal.test",
            "two.internal.test",
            "192.168.1.1",
        ]
        .into_iter()
        .collect();
        let got: BTreeSet<&str> = grouped.network.allow.iter().map(String::as_str).collect();
        assert_eq!(got, want);
    }
}
