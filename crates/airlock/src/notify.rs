//! Notifications (`[notify]`): a session says "finished", "failed", "blocked" (the first
//! refusal of a host) or "waiting" (a request held for approval) through a desktop
//! notification, a command run on the host and/or a webhook the supervisor POSTs to
//! (ntfy-style: the body is the message, the `Title` header the event). The supervisor reaches
//! the webhook directly from the host: its host is never allowed for the agent.
//!
//! The desktop notification is the freedesktop Notifications interface
//! (`org.freedesktop.Notifications.Notify` on the session bus, Desktop Notifications
//! Specification 1.2), sent by spawning `notify-send` (libnotify) rather than speaking D-Bus
//! here: on by default when `DBUS_SESSION_BUS_ADDRESS` names a bus and `notify-send` is on
//! `PATH` ([`desktop`]), off with `[notify] desktop = false`. The body may be read as markup
//! by the notification server, so `&`, `<` and `>` are escaped: what the sandbox named is shown,
//! never interpreted (no links, no images).
//!
//! Deliveries run on a thread of their own, one at a time, each bounded (the command is killed
//! after [`COMMAND_TIMEOUT`], the webhook gets [`WEBHOOK_TIMEOUT`]); a full queue drops an event.
//! A failure is reported once per target on stderr and never affects the session.

use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use airlock_policy::NotifyConfig;
use anyhow::{anyhow, bail, Context, Result};

/// A command still running after this is killed.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Connecting to and answering a webhook, in all.
pub(crate) const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Events waiting to be delivered; more are dropped.
const QUEUE: usize = 16;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Finished,
    Failed,
    Blocked,
    Waiting,
}

impl Event {
    /// The name in `[notify] events` and `AIRLOCK_EVENT`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Event::Finished => "finished",
            Event::Failed => "failed",
            Event::Blocked => "blocked",
            Event::Waiting => "waiting",
        }
    }
}

/// The sending side; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Notifier {
    tx: SyncSender<Msg>,
}

#[derive(Debug)]
enum Msg {
    Event(Event, String),
    /// Answered once everything queued before it was delivered.
    Flush(std::sync::mpsc::Sender<()>),
}

impl Notifier {
    /// Starts the delivery thread for `config`; `None` when it names no target (and no
    /// desktop notification is possible).
    pub(crate) fn start(session: &str, config: &NotifyConfig) -> Option<Notifier> {
        let desktop = match desktop(
            config.desktop,
            std::env::var_os("DBUS_SESSION_BUS_ADDRESS"),
            airlock_sandbox::host::which("notify-send"),
        ) {
            Ok(d) => d,
            Err(why) => {
                eprintln!("airlock: warning: [notify] desktop = true, but {why}");
                None
            }
        };
        if config.command.is_none() && config.webhook.is_none() && desktop.is_none() {
            return None;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let worker = Worker {
            session: session.to_string(),
            config: config.clone(),
            desktop,
            warned_command: false,
            warned_webhook: false,
            warned_desktop: false,
        };
        let spawned = std::thread::Builder::new()
            .name("airlock-notify".into())
            .spawn(move || worker.run(rx));
        if let Err(e) = spawned {
            eprintln!("airlock: warning: notifications are off: cannot start their thread: {e}");
            return None;
        }
        Some(Notifier { tx })
    }

    /// Queues an event; a full queue drops it (never blocks the session).
    pub(crate) fn send(&self, event: Event, message: &str) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Msg::Event(event, message.to_string()))
        {
            tracing::warn!("notification dropped: queue full");
        }
    }

    /// Queues the last event and waits (at most `wait`) for everything queued to be delivered.
    pub(crate) fn finish(&self, event: Event, message: &str, wait: Duration) {
        let deadline = Instant::now() + wait;
        let (ack_tx, ack) = std::sync::mpsc::channel();
        for msg in [Msg::Event(event, message.to_string()), Msg::Flush(ack_tx)] {
            let mut msg = msg;
            // The queue may be full of earlier events: wait for room, not past the deadline.
            loop {
                match self.tx.try_send(msg) {
                    Ok(()) => break,
                    Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                        msg = m;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => return,
                }
            }
        }
        let _ = ack.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

/// The `notify-send` to run for desktop notifications, or none: `setting` is `[notify]
/// desktop`, `bus` `DBUS_SESSION_BUS_ADDRESS`, `program` where `notify-send` is. Off when
/// set to false; otherwise on when a bus is named and the program is there. An explicit `true`
/// that cannot be honoured is an error saying what is missing.
pub(crate) fn desktop(
    setting: Option<bool>,
    bus: Option<std::ffi::OsString>,
    program: Option<std::path::PathBuf>,
) -> Result<Option<std::path::PathBuf>, String> {
    if setting == Some(false) {
        return Ok(None);
    }
    let missing = match (bus.filter(|b| !b.is_empty()), program) {
        (Some(_), Some(p)) => return Ok(Some(p)),
        (None, _) => "DBUS_SESSION_BUS_ADDRESS is not set (no session bus to send it on)",
        (Some(_), None) => {
            "notify-send is not on PATH (install libnotify-bin, or your distribution's libnotify)"
        }
    };
    if setting == Some(true) {
        return Err(format!("{missing}; no desktop notifications"));
    }
    Ok(None)
}

/// `text` with the characters the notification body's markup gives a meaning escaped.
fn escape_markup(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

struct Worker {
    session: String,
    config: NotifyConfig,
    /// `notify-send`, when desktop notifications are on.
    desktop: Option<std::path::PathBuf>,
    warned_command: bool,
    warned_webhook: bool,
    warned_desktop: bool,
}

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) {
        for msg in rx {
            let (event, message) = match msg {
                Msg::Event(e, m) => (e, m),
                Msg::Flush(ack) => {
                    let _ = ack.send(());
                    continue;
                }
            };
            let wanted = self
                .config
                .events
                .as_ref()
                .is_none_or(|e| e.iter().any(|x| x == event.as_str()));
            if !wanted {
                continue;
            }
            let message = airlock_sandbox::notice::printable(&message, 1000);
            if let Some(program) = self.desktop.clone() {
                let argv = [
                    program.display().to_string(),
                    "--app-name=airlock".to_string(),
                    "--".to_string(),
                    format!("airlock: {}", event.as_str()),
                ];
                if let Err(e) = run_command(&argv, &self.session, event, &escape_markup(&message)) {
                    if !std::mem::replace(&mut self.warned_desktop, true) {
                        eprintln!(
                            "airlock: desktop notification ({}) failed: {e:#}; the session goes on \
                             (set [notify] desktop = false to stop trying)",
                            program.display()
                        );
                    }
                }
            }
            if let Some(argv) = self.config.command.clone() {
                if let Err(e) = run_command(&argv, &self.session, event, &message) {
                    if !std::mem::replace(&mut self.warned_command, true) {
                        eprintln!(
                            "airlock: notification command {} failed: {e:#}; the session goes on \
                             (check [notify] command)",
                            argv.join(" ")
                        );
                    }
                }
            }
            if let Some(url) = self.config.webhook.clone() {
                if let Err(e) = post(&url, event, &message) {
                    if !std::mem::replace(&mut self.warned_webhook, true) {
                        eprintln!(
                            "airlock: notification webhook {url} failed: {e:#}; the session goes on \
                             (check [notify] webhook)"
                        );
                    }
                }
            }
        }
    }
}

/// Runs `argv` + `message` with `AIRLOCK_EVENT` and `AIRLOCK_SESSION` set, stdin closed,
/// output discarded; killed after [`COMMAND_TIMEOUT`].
fn run_command(argv: &[String], session: &str, event: Event, message: &str) -> Result<()> {
    let (program, args) = argv.split_first().context("[notify] command is empty")?;
    let mut child = Command::new(program)
        .args(args)
        .arg(message)
        .env("AIRLOCK_EVENT", event.as_str())
        .env("AIRLOCK_SESSION", session)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            bail!("it exited with {status}");
        }
        if start.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "it ran longer than {}s and was killed",
                COMMAND_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// POSTs `message` to `url` ([`airlock_net::outbound`]: HTTP/1.1 on a fresh connection, TLS verified
/// against the host's roots for `https://`) within [`WEBHOOK_TIMEOUT`]; a status other than 2xx
/// is an error.
fn post(url: &str, event: Event, message: &str) -> Result<()> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("not an http:// or https:// URL");
    }
    let request = http::Request::post(url)
        .header("user-agent", "airlock")
        .header("title", format!("airlock: {}", event.as_str()))
        .header("content-type", "text/plain; charset=utf-8")
        .body(bytes::Bytes::from(message.to_string()))
        .with_context(|| format!("bad webhook URL {url}"))?;
    let tls = airlock_net::outbound::tls_config(Vec::new())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the webhook's runtime")?;
    let answer = rt
        .block_on(async {
            tokio::time::timeout(
                WEBHOOK_TIMEOUT,
                airlock_net::outbound::send(&tls, request, 64 * 1024),
            )
            .await
        })
        .map_err(|_| anyhow!("no answer within {}s", WEBHOOK_TIMEOUT.as_secs()))?
        .map_err(|e| anyhow!("{e}"))?;
    let status = answer.status().as_u16();
    if !(200..300).contains(&status) {
        bail!("it answered {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn receiver() -> (String, std::sync::mpsc::Receiver<String>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/topic", l.local_addr().expect("addr"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let mut s = s;
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                // The head, then Content-Length bytes of body.
                let complete = |got: &[u8]| {
                    let text = String::from_utf8_lossy(got);
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        return false;
                    };
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let l = l.to_ascii_lowercase();
                            l.strip_prefix("content-length: ").map(str::to_string)
                        })
                        .and_then(|n| n.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    body.len() >= len
                };
                while !complete(&got) {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                let _ = tx.send(String::from_utf8_lossy(&got).into_owned());
            }
        });
        (url, rx)
    }

    #[test]
    fn command_and_webhook_receive_the_events_they_ask_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        let (url, hooks) = receiver();
        let config = NotifyConfig {
            command: Some(vec![
                "sh".into(),
                "-c".into(),
                format!(
                    "echo \"$AIRLOCK_SESSION $AIRLOCK_EVENT $1\" >> {}",
                    log.display()
                ),
                "sh".into(),
            ]),
            webhook: Some(url),
            events: Some(vec!["finished".into(), "blocked".into()]),
            desktop: Some(false),
        };
        let n = Notifier::start("s9", &config).expect("notifier");
        n.send(Event::Blocked, "refused evil.test:443");
        n.send(Event::Waiting, "not wanted");
        n.finish(Event::Finished, "exited 0", Duration::from_secs(10));
        let text = std::fs::read_to_string(&log).expect("log");
        assert_eq!(
            text,
            "s9 blocked refused evil.test:443\ns9 finished exited 0\n"
        );
        let first = hooks.recv_timeout(Duration::from_secs(5)).expect("hook");
        assert!(first.starts_with("POST /topic HTTP/1.1"), "{first}");
        assert!(
            first
                .to_ascii_lowercase()
                .contains("title: airlock: blocked"),
            "{first}"
        );
        assert!(first.ends_with("refused evil.test:443"), "{first}");
        let second = hooks.recv_timeout(Duration::from_secs(5)).expect("hook");
        assert!(second.ends_with("exited 0"), "{second}");
        assert!(hooks.recv_timeout(Duration::from_millis(200)).is_err());
    }

    #[test]
    fn failures_are_errors_that_say_what_and_never_hang() {
        let down = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", down.local_addr().expect("addr"));
        drop(down);
        let e = post(&url, Event::Failed, "x").expect_err("down");
        assert!(format!("{e:#}").contains("cannot connect"), "{e:#}");
        let e = run_command(&["false".into()], "s", Event::Failed, "x").expect_err("false");
        assert!(e.to_string().contains("exited"), "{e}");
        let e = run_command(&["/nonexistent/notify".into()], "s", Event::Failed, "x")
            .expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/notify"), "{e}");
        assert!(post("ftp://x/", Event::Failed, "x").is_err());
    }

    #[test]
    fn desktop_notifications_need_a_bus_and_notify_send_and_say_what_is_missing() {
        let bus = || Some(std::ffi::OsString::from("unix:path=/run/user/1/bus"));
        let prog = || Some(std::path::PathBuf::from("/usr/bin/notify-send"));
        assert_eq!(desktop(None, bus(), prog()), Ok(prog()));
        assert_eq!(desktop(Some(true), bus(), prog()), Ok(prog()));
        assert_eq!(desktop(Some(false), bus(), prog()), Ok(None));
        // Unavailable: quietly off by default, an error when asked for.
        assert_eq!(desktop(None, None, prog()), Ok(None));
        assert_eq!(desktop(None, Some("".into()), prog()), Ok(None));
        assert_eq!(desktop(None, bus(), None), Ok(None));
        let e = desktop(Some(true), None, prog()).expect_err("no bus");
        assert!(e.contains("DBUS_SESSION_BUS_ADDRESS"), "{e}");
        let e = desktop(Some(true), bus(), None).expect_err("no program");
        assert!(e.contains("notify-send") && e.contains("libnotify"), "{e}");
        assert_eq!(
            escape_markup("<a href=\"file:///etc\">x</a> & <img src=y>"),
            "&lt;a href=\"file:///etc\"&gt;x&lt;/a&gt; &amp; &lt;img src=y&gt;"
        );
    }
}
