//! `airlock audit` (read a session's decisions) and `airlock policy reload` (signal a running
//! session's supervisor to re-read its policy).

use anyhow::{bail, Context, Result};
use std::io::Write;

use airlock_audit::{read_events, AuditEvent, Decision, Detail};

use crate::cli::AuditArgs;
use crate::session_dir;

pub(crate) fn audit(args: AuditArgs) -> Result<i32> {
    let info = session_dir::find(args.id.as_deref())?;
    let path = info.dir.join("audit.jsonl");
    let (events, bad) = read_events(&path)?;
    let mut out = std::io::stdout().lock();
    let shown = events
        .iter()
        .filter(|e| !args.denied || matches!(e.decision, Decision::Deny | Decision::Ask));
    for e in shown {
        if args.json {
            serde_json::to_writer(&mut out, e)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", human(e))?;
        }
    }
    if bad > 0 {
        eprintln!(
            "airlock: {bad} line(s) of {} could not be read (a write cut short by a crash)",
            path.display()
        );
    }
    if !args.json && events.is_empty() {
        eprintln!("airlock: session {} has no audit events yet", info.id);
    }
    Ok(0)
}

fn human(e: &AuditEvent) -> String {
    let what = match &e.detail {
        Detail::Net {
            host,
            port,
            method,
            bytes_up,
            bytes_down,
            duration_ms,
        } => {
            let m = method.as_deref().unwrap_or("CONNECT");
            format!("net  {m} {host}:{port} up={bytes_up}B down={bytes_down}B {duration_ms}ms")
        }
        Detail::Dns { name, qtype, flag } => {
            let f = flag
                .as_deref()
                .map(|f| format!(" [{f}]"))
                .unwrap_or_default();
            format!("dns  {qtype} {name}{f}")
        }
        Detail::Command { tool, command, .. } => {
            format!("cmd  {tool}: {}", command.as_deref().unwrap_or(""))
        }
        Detail::Session { event, exit_status } => match exit_status {
            Some(s) => format!("session {event} (status {s})"),
            None => format!("session {event}"),
        },
        Detail::Suppressed { key, count } => format!("({count} more like {key} not logged)"),
        Detail::WildcardName {
            pattern,
            name,
            count,
            max,
        } => format!("name {name}: {count} of {max} under {pattern}"),
        Detail::Terminal { relay, dropped } => {
            let kinds: Vec<String> = dropped.iter().map(|(k, n)| format!("{k}={n}")).collect();
            format!("term {relay}: dropped {}", kinds.join(" "))
        }
        Detail::Unix { path, pid } => format!("unix connect {path} (pid {pid})"),
    };
    let rule = e
        .rule
        .as_deref()
        .map(|r| format!("  [{r}]"))
        .unwrap_or_default();
    format!("{} {:5} {what}{rule}", e.ts, e.decision.as_str())
}

pub(crate) fn reload(id: Option<&str>) -> Result<i32> {
    let info = session_dir::find(id)?;
    let answer = crate::control::request(&info.dir, "reload")
        .with_context(|| format!("session {} is not running or not answering", info.id))?;
    match answer.strip_prefix("ok") {
        Some(_) => {
            println!("session {}: policy reloaded", info.id);
            Ok(0)
        }
        None => bail!("session {}: {}", info.id, answer.trim()),
    }
}
