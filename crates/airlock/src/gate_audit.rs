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
//! Held asks: in a detached session with `[approvals] mode = "ask"`, nobody sees the agent's
//! own permission prompt, so an `ask` event is held as a pending approval
//! (`crate::approvals::Approvals::hold_command`, listed by `airlock approvals`). The supervisor
//! answers `hold ID SECS` instead of `ok` (logged, and held for at most SECS seconds), then one
//! more line once it is decided: `allow` (the user approved it; that decision is logged first),
//! `deny`, or `ask` (no answer in time, or the list is full: the agent asks as it would have).
//! The hook ([`send`]) waits at most SECS + [`HOLD_GRACE_SECS`] and takes anything but `allow`
//! or `deny` as `ask`, and applies an answer only to an `ask` it sent: an answer never turns a
//! deny into an allow. A hook that goes away stops the hold.
//!
//! Who can answer: only the supervisor holds the listening socket (bound in the sandbox's
//! network namespace before the agent starts, without `SO_REUSEPORT`), so nothing inside can
//! listen on the port in its place while the session runs; the user's answer reaches the
//! supervisor over the control socket, which the sandbox cannot reach.
//!
//! What it does not prove: anything in the sandbox can connect here, so the agent can add
//! command events of its own. It cannot remove, rewrite or reorder the log, nor write events of
//! another kind (network, session, credentials): only `command` events are accepted, and the
//! session id is the supervisor's. Likewise it can put asks of its own in the user's approvals
//! list (labelled as commands, made printable, at most `approvals::MAX_PENDING` held at once):
//! approving one only answers its own connection, which allows nothing; filling the list makes
//! other requests refused (or asked) at once, never allowed.

use std::sync::Arc;

use airlock_audit::{AuditEvent, AuditLog, Decision, Detail};

use crate::approvals::Approvals;
use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// The port inside the sandbox (loopback of its own network namespace).
pub(crate) const HOOK_AUDIT_PORT: u16 = 3129;

/// The longest event accepted, in bytes.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// How much longer than the hold the hook waits for the supervisor's last line.
pub(crate) const HOLD_GRACE_SECS: u64 = 10;

/// What the channel serves with.
#[derive(Debug)]
pub(crate) struct Served {
    pub(crate) audit: Arc<AuditLog>,
    pub(crate) session: String,
    /// Refusals are copied here (live denials).
    pub(crate) denials: Option<std::sync::mpsc::SyncSender<AuditEvent>>,
    /// The agent's own events go to `[notify]`.
    pub(crate) notify: Option<crate::notify::Notifier>,
    /// Where `ask` decisions are held (a detached session with approvals on).
    pub(crate) hold: Option<Arc<Approvals>>,
}

/// Where the gate's audit channel's connections arrive: a listener made in the sandbox's network
/// namespace and handed out, or the host unix socket a relay inside forwards them to (gVisor,
/// [`airlock_sandbox::RelayedNet`]); each connection is served the same way.
#[derive(Debug)]
pub(crate) enum AuditListener {
    Tcp(std::net::TcpListener),
    Relayed(std::os::unix::net::UnixListener),
}

/// Serves the channel on `rt` until the runtime shuts down.
pub(crate) fn serve(
    rt: &tokio::runtime::Runtime,
    listener: AuditListener,
    served: Served,
) -> Result<()> {
    let _guard = rt.enter();
    let limiter = Arc::new(std::sync::Mutex::new(LastSent::new()));
    let served = Arc::new(served);
    let prepare = "cannot prepare the gate's audit channel";
    match listener {
        AuditListener::Tcp(l) => {
            l.set_nonblocking(true).context(prepare)?;
            let l = tokio::net::TcpListener::from_std(l).context(prepare)?;
            rt.spawn(async move {
                while let Ok((stream, _)) = l.accept().await {
                    let (served, limiter) = (served.clone(), limiter.clone());
                    tokio::spawn(async move { connection(stream, &served, &limiter).await });
                }
            });
        }
        AuditListener::Relayed(l) => {
            l.set_nonblocking(true).context(prepare)?;
            let l = tokio::net::UnixListener::from_std(l).context(prepare)?;
            rt.spawn(async move {
                while let Ok((stream, _)) = l.accept().await {
                    let (served, limiter) = (served.clone(), limiter.clone());
                    tokio::spawn(async move { connection(stream, &served, &limiter).await });
                }
            });
        }
    }
    Ok(())
}

/// One connection: one event in, its answer out (and a held ask's outcome).
async fn connection<S>(stream: S, served: &Served, limiter: &std::sync::Mutex<LastSent>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite,
{
    let (rd, mut wr) = tokio::io::split(stream);
    let mut line = String::new();
    let mut rd = tokio::io::BufReader::new(rd.take(MAX_LINE as u64 + 1));
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(10), rd.read_line(&mut line)).await;
    let ev = match read {
        Ok(Ok(_)) => accept(&line, &served.session),
        _ => Err("no event received".to_string()),
    };
    let ev = match ev {
        Ok(ev) => ev,
        Err(e) => {
            let _ = wr.write_all(format!("error: {e}\n").as_bytes()).await;
            return;
        }
    };
    // A refusal is also a live notice (labelled as the sandbox's report).
    if let (Decision::Deny, Some(tx)) = (ev.decision, &served.denials) {
        let _ = tx.try_send(ev.clone());
    }
    if let (Detail::Agent { event, message }, Some(n)) = (&ev.detail, &served.notify) {
        agent_event(n, limiter, &served.session, event, message.as_deref());
    }
    let held = match (&served.hold, ev.decision, &ev.detail) {
        (Some(a), Decision::Ask, Detail::Command { .. }) => Some(a.clone()),
        _ => None,
    };
    if let Err(e) = append(&served.audit, ev.clone()).await {
        let _ = wr.write_all(format!("error: {e}\n").as_bytes()).await;
        return;
    }
    match held {
        Some(a) => hold(&a, ev, &served.audit, &mut rd, &mut wr).await,
        None => {
            let _ = wr.write_all(b"ok\n").await;
        }
    }
}

async fn append(audit: &Arc<AuditLog>, ev: AuditEvent) -> Result<(), String> {
    let audit = audit.clone();
    match tokio::task::spawn_blocking(move || audit.append(&ev)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Holds a logged `ask` until the user answers, the time is up or the hook goes away; tells the
/// hook `hold ID SECS`, then `allow`, `deny` or `ask`. An allow is logged before it is sent;
/// if that fails, the hook is told `ask`.
async fn hold(
    approvals: &Arc<Approvals>,
    ev: AuditEvent,
    audit: &Arc<AuditLog>,
    rd: &mut (impl tokio::io::AsyncRead + Unpin),
    wr: &mut (impl tokio::io::AsyncWrite + Unpin),
) {
    let (tool, command) = match &ev.detail {
        Detail::Command { tool, command, .. } => {
            (tool.clone(), command.clone().unwrap_or_default())
        }
        _ => return,
    };
    let rule = ev.rule.clone().unwrap_or_default();
    let Some((id, answer)) = approvals.hold_command(&tool, &command, &rule) else {
        // The list is full: the agent asks as it would have.
        let _ = wr.write_all(b"ok\n").await;
        return;
    };
    let secs = approvals.timeout_secs();
    if wr
        .write_all(format!("hold {id} {secs}\n").as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let mut probe = [0u8; 1];
    let outcome = tokio::select! {
        a = answer => a,
        _ = tokio::time::sleep(std::time::Duration::from_secs(secs)) => None,
        // The hook sends nothing more: data or the end of the stream means it is gone.
        _ = rd.read(&mut probe) => return,
    };
    let (decision, verdict, rule) = match outcome {
        Some(true) => (
            Decision::Allow,
            "allow",
            format!("approvals: once (request {id})"),
        ),
        Some(false) => (
            Decision::Deny,
            "deny",
            format!("approvals: denied (request {id})"),
        ),
        None => (
            Decision::Ask,
            "ask",
            format!("approvals: no answer in {secs}s (request {id})"),
        ),
    };
    let mut done = ev;
    done.decision = decision;
    done.rule = Some(rule);
    done.ts = airlock_audit::now_rfc3339();
    let verdict = match append(audit, done).await {
        Ok(()) => verdict,
        Err(_) if verdict == "allow" => "ask",
        Err(_) => verdict,
    };
    let _ = wr.write_all(format!("{verdict}\n").as_bytes()).await;
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

/// What the supervisor did with a held `ask` ([`send`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Held {
    /// The user approved it (`airlock approve`), request `id`.
    Allow(u64),
    /// The user refused it.
    Deny(u64),
    /// No answer (the time ran out, the supervisor went away, or it said something else):
    /// the agent asks as it would have; the text says why.
    Ask(String),
}

/// Sends `ev` to the supervisor from inside the sandbox and waits for it to be logged; for an
/// `ask` the supervisor holds, waits for the user's answer too. Any failure after the hold began
/// is [`Held::Ask`], never an allow.
pub(crate) fn send(ev: &AuditEvent) -> Result<Option<Held>> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], HOOK_AUDIT_PORT));
    send_to(addr, ev, std::time::Duration::from_secs(HOLD_GRACE_SECS))
}

/// [`send`] to `addr`, waiting `grace` past a hold.
fn send_to(
    addr: std::net::SocketAddr,
    ev: &AuditEvent,
    grace: std::time::Duration,
) -> Result<Option<Held>> {
    use std::io::{BufRead, Write};
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
    let mut rd = std::io::BufReader::new(&s);
    let mut answer = String::new();
    rd.read_line(&mut answer)
        .context("no answer from the supervisor's audit log")?;
    let (id, secs) = match answer.trim_end().split(' ').collect::<Vec<_>>()[..] {
        ["ok"] => return Ok(None),
        ["hold", id, secs] if ev.decision == Decision::Ask => match (id.parse(), secs.parse()) {
            (Ok(id), Ok(secs)) => (id, secs),
            _ => {
                return Ok(Some(Held::Ask(format!(
                    "a bad hold from the supervisor: {answer}"
                ))))
            }
        },
        _ => anyhow::bail!(
            "the supervisor did not log the decision: {}",
            answer.trim_end()
        ),
    };
    // Logged and held: wait for the user, never longer than approvals can last.
    let secs: u64 = std::cmp::min(secs, airlock_policy::config::APPROVAL_TIMEOUT_MAX);
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(secs) + grace));
    let mut verdict = String::new();
    Ok(Some(match rd.read_line(&mut verdict) {
        Ok(_) => match verdict.as_str() {
            "allow\n" => Held::Allow(id),
            "deny\n" => Held::Deny(id),
            "ask\n" => Held::Ask(format!("no answer to request {id} within {secs}s")),
            other => Held::Ask(format!(
                "an unexpected answer to request {id}: {:?}",
                other.trim_end()
            )),
        },
        Err(e) => Held::Ask(format!("no answer to request {id}: {e}")),
    }))
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

    /// A stand-in supervisor on loopback that answers one connection with `answer` (then
    /// closes, or stays silent when `linger`).
    fn supervisor(answer: &'static str, linger: bool) -> std::net::SocketAddr {
        use std::io::{BufRead, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((s, _)) = l.accept() {
                let mut line = String::new();
                let _ = std::io::BufReader::new(&s).read_line(&mut line);
                let _ = (&s).write_all(answer.as_bytes());
                if linger {
                    std::thread::sleep(std::time::Duration::from_secs(3));
                }
            }
        });
        addr
    }

    fn event(decision: Decision) -> AuditEvent {
        AuditEvent::now(
            decision,
            Detail::Command {
                tool: "Bash".into(),
                command: Some("curl https://example.org".into()),
                cwd: None,
            },
        )
    }

    /// The hook's side fails closed: after a hold, anything but a clear `allow` or `deny` (the
    /// supervisor gone, silent past the hold, a garbled line) is an ask, and a hold is only
    /// taken for an ask it sent.
    #[test]
    fn a_held_ask_is_only_allowed_by_a_clear_allow() {
        let grace = std::time::Duration::from_millis(200);
        let ask = event(Decision::Ask);
        let send = |answer: &'static str, linger: bool, ev: &AuditEvent| {
            send_to(supervisor(answer, linger), ev, grace)
        };
        assert_eq!(send("ok\n", false, &ask).expect("ok"), None);
        assert_eq!(
            send("hold 3 1\nallow\n", false, &ask).expect("held"),
            Some(Held::Allow(3))
        );
        assert_eq!(
            send("hold 3 1\ndeny\n", false, &ask).expect("held"),
            Some(Held::Deny(3))
        );
        for (answer, linger) in [
            ("hold 3 1\n", false),
            ("hold 3 1\n", true),
            ("hold 3 1\nallow please\n", false),
            ("hold 3 1\nALLOW\n", false),
            ("hold 3 1\nallow", false),
            ("hold 3 1\nask\n", false),
            ("hold x 1\nallow\n", false),
            ("hold 3 -1\nallow\n", false),
        ] {
            let started = std::time::Instant::now();
            match send(answer, linger, &ask).expect(answer) {
                Some(Held::Ask(why)) => assert!(!why.is_empty()),
                other => panic!("{answer:?}: {other:?}"),
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(3),
                "{answer:?}"
            );
        }
        // Not an ask: a hold is a protocol error (the decision stands as the hook made it).
        for d in [Decision::Deny, Decision::Allow] {
            assert!(
                send("hold 3 1\nallow\n", false, &event(d)).is_err(),
                "{d:?}"
            );
        }
        assert!(send("allow\n", false, &ask).is_err());
        assert!(send("", false, &ask).is_err());
    }
}
