//! airlock audit log: event types, a durable append-only JSON-lines writer with per-key rate limiting,
//! and a reader that tolerates a torn last line (a crash mid-write loses at most that line).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Errors of the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open audit log {path}: {error}")]
    Open {
        path: PathBuf,
        /// The cause, printed in the message (not a `source()`, so a chain never repeats it).
        error: std::io::Error,
    },
    #[error("cannot write audit log {path}: {error}")]
    Write {
        path: PathBuf,
        /// The cause, printed in the message (not a `source()`, so a chain never repeats it).
        error: std::io::Error,
    },
    #[error("cannot read audit log {path}: {error}")]
    Read {
        path: PathBuf,
        /// The cause, printed in the message (not a `source()`, so a chain never repeats it).
        error: std::io::Error,
    },
    #[error("cannot encode audit event")]
    Encode(#[from] serde_json::Error),
}

/// What was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
    Ask,
    /// Informational event (session start/stop, suppressed-count summaries).
    Info,
}

impl Decision {
    /// The lowercase name used in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Ask => "ask",
            Decision::Info => "info",
        }
    }
}

/// What the event is about. Each subsystem owns one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Detail {
    /// One egress proxy decision (a CONNECT tunnel or a plain-HTTP request).
    Net {
        host: String,
        port: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        method: Option<String>,
        #[serde(default)]
        bytes_up: u64,
        #[serde(default)]
        bytes_down: u64,
        #[serde(default)]
        duration_ms: u64,
    },
    /// One DNS filter decision.
    Dns {
        name: String,
        qtype: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        flag: Option<String>,
    },
    /// One command-gate decision (Claude Code hook or `policy explain`).
    Command {
        tool: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cwd: Option<String>,
    },
    /// Session lifecycle: started, exited, stopped, merged.
    Session {
        event: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_status: Option<i32>,
    },
    /// Events dropped by the rate limiter for one key.
    Suppressed { key: String, count: u64 },
    /// A name under an allowed wildcard used for the first time in the session: it counts
    /// against the pattern's budget (`[network] wildcard_names_max`).
    WildcardName {
        /// The pattern, e.g. `*.example.org`.
        pattern: String,
        /// The name, normalised (lowercase, no trailing dot).
        name: String,
        /// Distinct names under `pattern` so far, this one included.
        count: u64,
        /// The budget in force.
        max: u64,
    },
    /// What the terminal filter kept from the user's terminal during one relay (`run` under a
    /// terminal, or one `attach`): control sequences dropped, counted per kind (clipboard,
    /// title-report, decrqss, window-op, …; see `airlock_sandbox::termfilter::DropKind`).
    Terminal {
        relay: String,
        dropped: std::collections::BTreeMap<String, u64>,
    },
    /// The session's OpenTelemetry export (`[telemetry]`): audit events that did not reach the
    /// collector so far, written when the count grows and when the session ends. `dropped`:
    /// refused because the export queue was full (collector slow or down); `failed`: exported
    /// but refused or unreachable after the exporter's retries.
    Telemetry {
        endpoint: String,
        dropped: u64,
        failed: u64,
    },
    /// One of the agent's own events (Claude Code's Notification and Stop hooks), reported from
    /// inside the sandbox: what the agent says, not something airlock decided.
    Agent {
        /// `notification` or `stop`.
        event: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// A connect(2) to a unix socket by path, refused by the sandbox's connect gate.
    Unix {
        /// The path as the sandboxed program gave it.
        path: String,
        /// Host pid (thread id) of the caller.
        pid: u32,
    },
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// RFC 3339 UTC timestamp.
    pub ts: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    pub decision: Decision,
    /// The rule that decided, e.g. `network.allow[0]=*.github.com` or `builtin:rm-outside-workspace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Human-readable reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(flatten)]
    pub detail: Detail,
}

impl AuditEvent {
    /// A new event stamped with the current time.
    pub fn now(decision: Decision, detail: Detail) -> Self {
        AuditEvent {
            ts: now_rfc3339(),
            session: None,
            decision,
            rule: None,
            reason: None,
            detail,
        }
    }

    /// Sets the rule.
    pub fn rule(mut self, rule: impl Into<String>) -> Self {
        self.rule = Some(rule.into());
        self
    }

    /// Sets the reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Sets the session id.
    pub fn session(mut self, id: impl Into<String>) -> Self {
        self.session = Some(id.into());
        self
    }
}

/// The current UTC time as RFC 3339 with millisecond precision.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// Per-key rate limit: at most `burst` events per key in each `window`.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub burst: u32,
    pub window: Duration,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            burst: 20,
            window: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
struct Bucket {
    start: Instant,
    count: u32,
    suppressed: u64,
}

/// Something that also receives every event written to an [`AuditLog`] (the OpenTelemetry
/// exporter). `record` is called on the writer's thread after the line is written, so it must
/// not block: hand the event to a bounded queue and return.
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Takes one event that has just been written.
    fn record(&self, event: &AuditEvent);
}

/// An append-only JSON-lines audit log. Each event is written with one `write` call on an
/// `O_APPEND` descriptor, so concurrent writers (the proxy, the hook) never interleave lines, and
/// an event is on disk (page cache) as soon as `append` returns. Safe to share between threads.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
    sink: OnceLock<Arc<dyn AuditSink>>,
}

impl AuditLog {
    /// Opens (creating, mode 0600) the log at `path` for appending.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, AuditError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| AuditError::Open {
                path: path.clone(),
                error: source,
            })?;
        }
        let mut opts = OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(&path).map_err(|source| AuditError::Open {
            path: path.clone(),
            error: source,
        })?;
        Ok(AuditLog {
            path,
            file: Mutex::new(file),
            limit: RateLimit::default(),
            buckets: Mutex::new(HashMap::new()),
            sink: OnceLock::new(),
        })
    }

    /// Replaces the rate limit used by [`AuditLog::append_limited`].
    pub fn with_rate_limit(mut self, limit: RateLimit) -> Self {
        self.limit = limit;
        self
    }

    /// Sends every event appended from now on to `sink` as well (once per log; returns false
    /// when a sink was already set).
    pub fn set_sink(&self, sink: Arc<dyn AuditSink>) -> bool {
        self.sink.set(sink).is_ok()
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event.
    pub fn append(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(event)?;
        line.push(b'\n');
        {
            let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
            file.write_all(&line).map_err(|source| AuditError::Write {
                path: self.path.clone(),
                error: source,
            })?;
        }
        if let Some(sink) = self.sink.get() {
            sink.record(event);
        }
        Ok(())
    }

    /// Appends an event unless `key` (e.g. the denied destination) has exceeded its rate limit in
    /// the current window; events dropped that way are summarised by one `suppressed` event when
    /// the key's next window opens. Returns whether the event was written.
    pub fn append_limited(&self, key: &str, event: &AuditEvent) -> Result<bool, AuditError> {
        let now = Instant::now();
        let mut summary = None;
        let write = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            if buckets.len() > 10_000 {
                // Bound memory: forget keys whose window has long closed.
                let window = self.limit.window;
                buckets.retain(|_, b| now.duration_since(b.start) < window);
            }
            let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
                start: now,
                count: 0,
                suppressed: 0,
            });
            if now.duration_since(bucket.start) >= self.limit.window {
                if bucket.suppressed > 0 {
                    summary = Some(bucket.suppressed);
                }
                *bucket = Bucket {
                    start: now,
                    count: 0,
                    suppressed: 0,
                };
            }
            if bucket.count < self.limit.burst {
                bucket.count += 1;
                true
            } else {
                bucket.suppressed += 1;
                false
            }
        };
        if let Some(count) = summary {
            let mut ev = AuditEvent::now(
                Decision::Info,
                Detail::Suppressed {
                    key: key.to_string(),
                    count,
                },
            );
            ev.session = event.session.clone();
            self.append(&ev)?;
        }
        if write {
            self.append(event)?;
        }
        Ok(write)
    }

    /// Flushes the log to stable storage.
    pub fn sync(&self) -> Result<(), AuditError> {
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.sync_data().map_err(|source| AuditError::Write {
            path: self.path.clone(),
            error: source,
        })
    }
}

/// Reads every event of the log at `path`. Lines that do not parse (a torn last line after a
/// crash, or a newer event kind) are skipped and counted in the second value.
pub fn read_events(path: impl AsRef<Path>) -> Result<(Vec<AuditEvent>, usize), AuditError> {
    let path = path.as_ref();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(source) => {
            return Err(AuditError::Read {
                path: path.to_path_buf(),
                error: source,
            })
        }
    };
    let mut events = Vec::new();
    let mut bad = 0;
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(|source| AuditError::Read {
            path: path.to_path_buf(),
            error: source,
        })?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice(&line) {
            Ok(ev) => events.push(ev),
            Err(_) => bad += 1,
        }
    }
    Ok((events, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(host: &str) -> AuditEvent {
        AuditEvent::now(
            Decision::Deny,
            Detail::Net {
                host: host.into(),
                port: 443,
                method: None,
                bytes_up: 0,
                bytes_down: 0,
                duration_ms: 0,
            },
        )
        .rule("network.default")
        .reason("not in allow list")
    }

    #[test]
    fn round_trips_and_skips_torn_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).expect("open");
        log.append(&net("evil.example")).expect("append");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"ts\":\"torn"))
            .expect("tear");
        let (events, bad) = read_events(&path).expect("read");
        assert_eq!(events.len(), 1);
        assert_eq!(bad, 1);
        assert_eq!(events[0], net("evil.example").clone_with_ts(&events[0].ts));
        let line = std::fs::read_to_string(&path).expect("read");
        assert!(line.contains("\"kind\":\"net\""), "{line}");
        assert!(line.contains("\"decision\":\"deny\""), "{line}");
    }

    impl AuditEvent {
        fn clone_with_ts(mut self, ts: &str) -> Self {
            self.ts = ts.to_string();
            self
        }
    }

    #[derive(Debug, Default)]
    struct Collect(Mutex<Vec<AuditEvent>>);
    impl AuditSink for Collect {
        fn record(&self, event: &AuditEvent) {
            self.0.lock().expect("lock").push(event.clone());
        }
    }

    #[test]
    fn a_sink_sees_every_written_event_after_the_line_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).expect("open");
        log.append(&net("before")).expect("append");
        let sink = Arc::new(Collect::default());
        assert!(log.set_sink(sink.clone()));
        assert!(!log.set_sink(sink.clone()), "a second sink is refused");
        log.append(&net("after")).expect("append");
        let seen = sink.0.lock().expect("lock").clone();
        assert_eq!(seen.len(), 1);
        assert!(matches!(&seen[0].detail, Detail::Net { host, .. } if host == "after"));
        assert_eq!(read_events(&path).expect("read").0.len(), 2);
    }

    #[test]
    fn rate_limit_caps_a_looping_key_and_summarises() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path)
            .expect("open")
            .with_rate_limit(RateLimit {
                burst: 3,
                window: Duration::from_millis(200),
            });
        let written = (0..100)
            .filter(|_| {
                log.append_limited("evil:443", &net("evil"))
                    .expect("append")
            })
            .count();
        assert_eq!(written, 3);
        // Another key is not starved by the first.
        assert!(log
            .append_limited("other:443", &net("other"))
            .expect("append"));
        std::thread::sleep(Duration::from_millis(250));
        assert!(log
            .append_limited("evil:443", &net("evil"))
            .expect("append"));
        let (events, _) = read_events(&path).expect("read");
        assert_eq!(events.len(), 3 + 1 + 1 + 1);
        assert!(events.iter().any(|e| matches!(
            &e.detail,
            Detail::Suppressed { key, count: 97 } if key == "evil:443"
        )));
    }
}
