//! The command gate's audit channel: `airlock hook claude` runs inside the sandbox, which
//! cannot write the session's audit log (it lives in the session directory, invisible inside).
//! The init stage listens on `127.0.0.1:`[`HOOK_AUDIT_PORT`] in the sandbox's network
//! namespace and hands the listener to the supervisor, which appends what the hook sends.
//!
//! Protocol: one connection per decision; the hook sends one JSON audit event (a `command`
//! event, at most [`MAX_LINE`] bytes) and a newline; the supervisor answers `ok` once the event
//! is in the log, or `error: WHY`. The hook treats anything but `ok` as "not logged" (an allow
//! becomes ask), so a decision is never acted on unrecorded.
//!
//! What it does not prove: anything in the sandbox can connect here, so the agent can add
//! command events of its own. It cannot remove, rewrite or reorder the log, nor write events of
//! another kind (network, session, credentials): only `command` events are accepted, and the
//! session id is the supervisor's.

use std::sync::Arc;

use airlock_audit::{AuditEvent, AuditLog, Decision, Detail};
use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// The port inside the sandbox (loopback of its own network namespace).
pub(crate) const HOOK_AUDIT_PORT: u16 = 3129;

/// The longest event accepted, in bytes.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// Serves the channel on `rt` until the runtime shuts down.
pub(crate) fn serve(
    rt: &tokio::runtime::Runtime,
    listener: std::net::TcpListener,
    audit: Arc<AuditLog>,
    session: String,
    denials: Option<std::sync::mpsc::SyncSender<AuditEvent>>,
    notify: Option<crate::notify::Notifier>,
) -> Result<()> {
    listener
        .set_nonblocking(true)
        .context("cannot prepare the gate's audit channel")?;
    let _guard = rt.enter();
    let listener = tokio::net::TcpListener::from_std(listener)
        .context("cannot prepare the gate's audit channel")?;
    let limiter = Arc::new(std::sync::Mutex::new(LastSent::new()));
    rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (audit, session, denials) = (audit.clone(), session.clone(), denials.clone());
            let (notify, limiter) = (notify.clone(), limiter.clone());
            tokio::spawn(async move {
                let (rd, mut wr) = stream.into_split();
                let mut line = String::new();
                let mut rd = tokio::io::BufReader::new(rd.take(MAX_LINE as u64 + 1));
                let read = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    rd.read_line(&mut line),
                )
                .await;
                let answer = match read {
                    Ok(Ok(_)) => match accept(&line, &session) {
                        Ok(ev) => {
                            // A refusal is also a live notice (labelled as the sandbox's report).
                            if let (Decision::Deny, Some(tx)) = (ev.decision, &denials) {
                                let _ = tx.try_send(ev.clone());
                            }
                            if let (Detail::Agent { event, message }, Some(n)) =
                                (&ev.detail, &notify)
                            {
                                agent_event(n, &limiter, &session, event, message.as_deref());
                            }
                            let audit = audit.clone();
                            match tokio::task::spawn_blocking(move || audit.append(&ev)).await {
                                Ok(Ok(())) => "ok\n".to_string(),
                                Ok(Err(e)) => format!("error: {e}\n"),
                                Err(e) => format!("error: {e}\n"),
                            }
                        }
                        Err(e) => format!("error: {e}\n"),
                    },
                    _ => "error: no event received\n".to_string(),
                };
                let _ = wr.write_all(answer.as_bytes()).await;
            });
        }
    });
    Ok(())
}

/// When each kind of agent event was last passed on.
type LastSent = std::collections::HashMap<String, std::time::Instant>;

/// At most one agent event of each kind per this interval (the sandbox can send them in a loop).
const AGENT_EVENT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Passes one of the agent's own events to `[notify]`: Notification as "waiting", Stop as
/// "finished" (the agent's turn ended), labelled as the agent's; rate-limited per kind.
fn agent_event(
    notify: &crate::notify::Notifier,
    last: &std::sync::Mutex<LastSent>,
    session: &str,
    event: &str,
    message: Option<&str>,
) {
    let now = std::time::Instant::now();
    {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let kind = if event == "stop" {
            "stop"
        } else {
            "notification"
        };
        if last
            .get(kind)
            .is_some_and(|t| now.duration_since(*t) < AGENT_EVENT_INTERVAL)
        {
            return;
        }
        last.insert(kind.to_string(), now);
    }
    let (kind, text) = match event {
        "stop" => (
            crate::notify::Event::Finished,
            "the agent finished its turn".to_string(),
        ),
        _ => (
            crate::notify::Event::Waiting,
            format!(
                "the agent says: {}",
                message.unwrap_or("it needs your attention")
            ),
        ),
    };
    notify.send(kind, &format!("airlock: session {session}: {text}"));
}

/// Checks one line from the sandbox: a complete `command` event; the session is set here.
fn accept(line: &str, session: &str) -> Result<AuditEvent, String> {
    if line.len() > MAX_LINE || !line.ends_with('\n') {
        return Err(format!(
            "an event must be one line of at most {MAX_LINE} bytes"
        ));
    }
    let mut ev: AuditEvent =
        serde_json::from_str(line.trim_end()).map_err(|e| format!("not an audit event: {e}"))?;
    match &ev.detail {
        Detail::Command { .. } => {}
        // What the agent says about itself (its Notification and Stop hooks), for `[notify]`.
        Detail::Agent { .. } if ev.decision == Decision::Info => {}
        _ => return Err("only command and agent events are taken from the sandbox".into()),
    }
    ev.session = Some(session.to_string());
    Ok(ev)
}

/// Sends `ev` to the supervisor from inside the sandbox and waits for it to be logged.
pub(crate) fn send(ev: &AuditEvent) -> Result<()> {
    use std::io::{BufRead, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], HOOK_AUDIT_PORT));
    let timeout = std::time::Duration::from_secs(10);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).with_context(|| {
        format!(
            "cannot reach the supervisor's audit channel at {addr} (is this an airlock session?)"
        )
    })?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_string(ev)?;
    line.push('\n');
    s.write_all(line.as_bytes())
        .context("cannot send the decision to the supervisor's audit log")?;
    let mut answer = String::new();
    std::io::BufReader::new(&s)
        .read_line(&mut answer)
        .context("no answer from the supervisor's audit log")?;
    match answer.trim_end() {
        "ok" => Ok(()),
        other => anyhow::bail!("the supervisor did not log the decision: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_audit::Decision;

    #[test]
    fn only_complete_command_events_are_taken_and_the_session_is_ours() {
        let ev = AuditEvent::now(
            Decision::Deny,
            Detail::Command {
                tool: "Bash".into(),
                command: Some("rm -rf ~".into()),
                cwd: None,
            },
        )
        .session("forged");
        let line = format!("{}\n", serde_json::to_string(&ev).expect("json"));
        let got = accept(&line, "s1").expect("accepted");
        assert_eq!(got.session.as_deref(), Some("s1"));
        assert!(accept(line.trim_end(), "s1").is_err(), "no newline");
        assert!(accept("{}\n", "s1").is_err());
        let net = AuditEvent::now(
            Decision::Allow,
            Detail::Session {
                event: "exited".into(),
                exit_status: Some(0),
            },
        );
        let line = format!("{}\n", serde_json::to_string(&net).expect("json"));
        assert!(accept(&line, "s1").is_err(), "only command events");
        // The agent's own events, as information only.
        let mut agent = AuditEvent::now(
            Decision::Info,
            Detail::Agent {
                event: "notification".into(),
                message: Some("waiting".into()),
            },
        );
        let line = format!("{}\n", serde_json::to_string(&agent).expect("json"));
        assert!(accept(&line, "s1").is_ok());
        for d in [Decision::Deny, Decision::Allow, Decision::Ask] {
            agent.decision = d;
            let line = format!("{}\n", serde_json::to_string(&agent).expect("json"));
            assert!(accept(&line, "s1").is_err(), "{d:?}");
        }
        let long = format!("{}\n", "x".repeat(MAX_LINE + 1));
        assert!(accept(&long, "s1").is_err());
    }
}
