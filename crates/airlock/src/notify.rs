//! Notifications (`[notify]`): a session says "finished", "failed", "blocked" (the first
//! refusal of a host) or "waiting" (a request held for approval) through a command run on the
//! host and/or a webhook the supervisor POSTs to (ntfy-style: the body is the message, the
//! `Title` header the event). The supervisor reaches the webhook directly from the host: its
//! host is never allowed for the agent.
//!
//! Deliveries run on a thread of their own, one at a time, each bounded (the command is killed
//! after [`COMMAND_TIMEOUT`], the webhook gets [`WEBHOOK_TIMEOUT`]); a full queue drops an event.
//! A failure is reported once per target on stderr and never affects the session.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
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
    /// Starts the delivery thread for `config`; `None` when it names no target.
    pub(crate) fn start(session: &str, config: &NotifyConfig) -> Option<Notifier> {
        if config.command.is_none() && config.webhook.is_none() {
            return None;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let worker = Worker {
            session: session.to_string(),
            config: config.clone(),
            warned_command: false,
            warned_webhook: false,
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

struct Worker {
    session: String,
    config: NotifyConfig,
    warned_command: bool,
    warned_webhook: bool,
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

/// POSTs `message` to `url` (HTTP/1.1, `Connection: close`), over TLS verified against the
/// host's roots for `https://`; a status other than 2xx is an error.
fn post(url: &str, event: Event, message: &str) -> Result<()> {
    let (tls, rest) = match url.split_once("://") {
        Some(("http", r)) => (false, r),
        Some(("https", r)) => (true, r),
        _ => bail!("not an http:// or https:// URL"),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = split_authority(authority, if tls { 443 } else { 80 })
        .ok_or_else(|| anyhow!("bad host or port in {url}"))?;
    let deadline = Instant::now() + WEBHOOK_TIMEOUT;
    let addrs: Vec<std::net::SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .with_context(|| format!("cannot resolve {host}"))?
        .collect();
    let mut last = anyhow!("{host} has no address");
    let mut stream = None;
    for a in addrs {
        match std::net::TcpStream::connect_timeout(&a, WEBHOOK_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = anyhow!("cannot connect to {a}: {e}"),
        }
    }
    let stream = stream.ok_or(last)?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    stream.set_read_timeout(Some(left))?;
    stream.set_write_timeout(Some(left))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: airlock\r\nTitle: airlock: {}\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{message}",
        event.as_str(),
        message.len()
    );
    let mut answer = Vec::new();
    if tls {
        let config = tls_config()?;
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|_| anyhow!("{host} is not a valid TLS server name"))?;
        let conn = rustls::ClientConnection::new(config, name)?;
        let mut s = rustls::StreamOwned::new(conn, stream);
        s.write_all(request.as_bytes())?;
        let _ = s.take(64 * 1024).read_to_end(&mut answer);
    } else {
        let mut s = stream;
        s.write_all(request.as_bytes())?;
        let _ = s.take(64 * 1024).read_to_end(&mut answer);
    }
    let head = String::from_utf8_lossy(&answer);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("no HTTP answer"))?;
    if !(200..300).contains(&status) {
        bail!("it answered {status}");
    }
    Ok(())
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_authority(a: &str, default: u16) -> Option<(&str, u16)> {
    let (host, port) = match a.strip_prefix('[') {
        Some(rest) => {
            let (h, after) = rest.split_once(']')?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return None,
            }
        }
        None => match a.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default,
    };
    (!host.is_empty()).then_some((host, port))
}

/// TLS to a webhook: the host's roots, ring.
fn tls_config() -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    if roots.is_empty() {
        bail!("no trusted root certificates on this host");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

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
                        .find_map(|l| l.strip_prefix("Content-Length: "))
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
        };
        let n = Notifier::start("s9", &config).expect("notifier");
        n.send(Event::Blocked, "refused evil.test:443");
        n.send(Event::Waiting, "not wanted");
        n.finish(Event::Finished, "exited 0", Duration::from_secs(10));
        assert_eq!(split_authority("[::1]:8080", 80), Some(("::1", 8080)));
        assert_eq!(split_authority("h.test", 443), Some(("h.test", 443)));
        assert_eq!(split_authority("h.test:x", 443), None);
        let text = std::fs::read_to_string(&log).expect("log");
        assert_eq!(
            text,
            "s9 blocked refused evil.test:443\ns9 finished exited 0\n"
        );
        let first = hooks.recv_timeout(Duration::from_secs(5)).expect("hook");
        assert!(first.starts_with("POST /topic HTTP/1.1"), "{first}");
        assert!(first.contains("Title: airlock: blocked"), "{first}");
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
}
