//! `airlock audit`: a session's decisions, as lines or JSON.

use anyhow::Result;
use std::io::Write;

use airlock_audit::{read_events, AuditEvent, Decision, Detail};

use crate::cli::AuditArgs;
use crate::review_out::ReviewOut;
use crate::session_dir;
use airlock_session::quote::name as q;

pub(crate) fn audit(args: AuditArgs) -> Result<i32> {
    let info = session_dir::find(args.id.as_deref())?;
    let path = info.dir.join("audit.jsonl");
    let (events, bad) = read_events(&path)?;
    let mut out = ReviewOut::stdout();
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
            format!(
                "net  {} {}:{port} up={bytes_up}B down={bytes_down}B {duration_ms}ms",
                q(m),
                q(host)
            )
        }
        Detail::Dns { name, qtype, flag } => {
            let f = flag
                .as_deref()
                .map(|f| format!(" [{f}]"))
                .unwrap_or_default();
            format!("dns  {} {}{}", q(qtype), q(name), q(&f))
        }
        Detail::Command { tool, command, .. } => {
            format!("cmd  {}: {}", q(tool), q(command.as_deref().unwrap_or("")))
        }
        Detail::Session { event, exit_status } => match exit_status {
            Some(s) => format!("session {} (status {s})", q(event)),
            None => format!("session {}", q(event)),
        },
        Detail::Suppressed { key, count } => format!("({count} more like {} not logged)", q(key)),
        Detail::WildcardName {
            pattern,
            name,
            count,
            max,
        } => format!("name {}: {count} of {max} under {}", q(name), q(pattern)),
        Detail::Terminal { relay, dropped } => {
            let kinds: Vec<String> = dropped.iter().map(|(k, n)| format!("{k}={n}")).collect();
            format!("term {relay}: dropped {}", kinds.join(" "))
        }
        Detail::Unix { path, pid } => format!("unix connect {} (pid {pid})", q(path)),
        Detail::Telemetry {
            endpoint,
            dropped,
            failed,
        } => format!(
            "telemetry {}: {dropped} events dropped (queue full), {failed} not accepted",
            q(endpoint)
        ),
        Detail::Agent { event, message } => {
            format!("agent {} {}", q(event), q(message.as_deref().unwrap_or("")))
        }
    };
    let rule = e
        .rule
        .as_deref()
        .map(|r| format!("  [{}]", q(r)))
        .unwrap_or_default();
    format!("{} {:5} {what}{rule}", q(&e.ts), e.decision.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Audit details the sandbox chose (a refused unix connect path, a DNS name, a command)
    /// are printed quoted: no control byte reaches the terminal, no line is forged.
    #[test]
    fn sandbox_chosen_details_are_quoted() {
        let attacks = [
            "/tmp/s\u{1b}]52;c;ZXZpbA==\u{7}.sock",
            "x\u{1b}[21t",
            "\u{1b}P$qm\u{1b}\\",
            "a\n2026-01-01T00:00:00Z allow forged",
            "c1\u{9b}21t",
        ];
        for a in attacks {
            let details = [
                Detail::Unix {
                    path: a.to_string(),
                    pid: 7,
                },
                Detail::Dns {
                    name: a.to_string(),
                    qtype: "A".into(),
                    flag: Some(a.to_string()),
                },
                Detail::Command {
                    tool: "Bash".into(),
                    command: Some(a.to_string()),
                    cwd: None,
                },
            ];
            for d in details {
                let line = human(&AuditEvent::now(Decision::Deny, d).rule(a));
                assert!(!line.chars().any(|c| c.is_control()), "{a:?} -> {line:?}");
            }
        }
        let line = human(&AuditEvent::now(
            Decision::Deny,
            Detail::Unix {
                path: attacks[0].into(),
                pid: 7,
            },
        ));
        assert!(
            line.contains(r#"unix connect "/tmp/s\033]52;c;ZXZpbA==\a.sock" (pid 7)"#),
            "{line}"
        );
    }
}
