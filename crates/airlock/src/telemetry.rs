//! OpenTelemetry export to the user's own collector (`[telemetry]`, `docs/telemetry.md`).
//!
//! Two parts:
//! - airlock's own audit events leave as OTLP/HTTP log records (`opentelemetry-otlp` with the
//!   SDK's batch processor and the exporter's retries), attached to the session's [`AuditLog`]
//!   as an [`AuditSink`]. The sink never blocks the writer: an event goes into a bounded queue
//!   or is counted as dropped; a dead or slow collector costs the proxy and the agent nothing.
//!   What did not reach the collector is written to the audit log as a `telemetry` event.
//! - the agent's own OpenTelemetry export (Claude Code's `CLAUDE_CODE_ENABLE_TELEMETRY` and the
//!   standard `OTEL_*` variables) is switched on towards the same collector, through the proxy,
//!   whose policy allows the collector's host and port automatically ([`allow_collector`]).
//!
//! HTTP goes through a small hyper client of our own (plain TCP, or rustls with the tree's one
//! crypto provider, ring) run on a dedicated one-thread tokio runtime, so no second TLS stack or
//! HTTP client enters the build.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use airlock_audit::{AuditEvent, AuditLog, AuditSink, Decision, Detail};
use airlock_policy::{HeaderValue, Policy, DEFAULT_TELEMETRY_QUEUE};
use anyhow::{anyhow, bail, Context, Result};
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::KeyValue;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{
    BatchConfigBuilder, BatchLogProcessor, LogBatch, LogExporter, SdkLogger, SdkLoggerProvider,
};

/// The host name the sandbox uses for a collector given as an IP address or `localhost`:
/// inside, 127.0.0.1 is the sandbox's own loopback (and in `NO_PROXY`), so the agent reaches
/// the collector by this name through the proxy, which resolves it statically.
pub(crate) const COLLECTOR_NAME: &str = "otlp-collector.airlock.internal";

/// How long one export request (connect, send, answer) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the end of a session waits for the last batch at most.
const FINISH_TIMEOUT: Duration = Duration::from_secs(3);
/// The least time between two `telemetry` audit events reporting losses.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// Largest collector answer read.
const MAX_ANSWER: usize = 1 << 20;

/// The parts of `otlp_endpoint` (`http[s]://host[:port][/path]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) https: bool,
    /// Host name or address (without IPv6 brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Path prefix without a trailing `/` (often empty).
    pub(crate) path: String,
}

impl Endpoint {
    /// Parses an endpoint URL; the error says what is wrong with it.
    pub(crate) fn parse(url: &str) -> Result<Endpoint> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| anyhow!("[telemetry] otlp_endpoint '{url}' is not a URL ({e})"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => bail!("[telemetry] otlp_endpoint '{url}' must start with http:// or https://"),
        };
        let host = uri
            .host()
            .ok_or_else(|| anyhow!("[telemetry] otlp_endpoint '{url}' has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Endpoint {
            https,
            host,
            port,
            path: uri.path().trim_end_matches('/').to_string(),
        })
    }

    /// The collector's address when the host is a literal address (or `localhost`).
    fn address(&self) -> Option<IpAddr> {
        if self.host.eq_ignore_ascii_case("localhost") {
            return Some(IpAddr::from([127, 0, 0, 1]));
        }
        self.host.parse().ok()
    }

    /// The host the sandbox uses to reach the collector through the proxy.
    fn inside_host(&self) -> &str {
        if self.address().is_some() {
            COLLECTOR_NAME
        } else {
            &self.host
        }
    }

    /// The base URL the agent's exporter uses.
    fn inside_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!(
            "{scheme}://{}:{}{}",
            self.inside_host(),
            self.port,
            self.path
        )
    }

    /// The URL airlock posts log records to.
    fn logs_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let host = match self.address() {
            Some(IpAddr::V6(a)) => format!("[{a}]"),
            _ => self.host.clone(),
        };
        format!("{scheme}://{host}:{}{}/v1/logs", self.port, self.path)
    }
}

/// The configured endpoint, when telemetry is on.
fn endpoint(policy: &Policy) -> Result<Option<Endpoint>> {
    policy
        .telemetry
        .otlp_endpoint
        .as_deref()
        .map(Endpoint::parse)
        .transpose()
}

/// Whether the agent's own telemetry is switched on (an endpoint and `agent` not false).
fn agent_telemetry(policy: &Policy) -> bool {
    policy.telemetry.otlp_endpoint.is_some() && policy.telemetry.agent != Some(false)
}

/// Lets the sandbox reach the collector through the proxy when the agent's telemetry is on:
/// its host (or [`COLLECTOR_NAME`] resolving statically to its address, which is then allowed
/// despite the private-range rule) on its port only. Called for the session's policy and again
/// on every reload, so a reload keeps the route.
pub(crate) fn allow_collector(policy: &mut Policy) -> Result<()> {
    if !agent_telemetry(policy) {
        return Ok(());
    }
    let Some(ep) = endpoint(policy)? else {
        return Ok(());
    };
    let net = &mut policy.network;
    let host = ep.inside_host().to_string();
    if let Some(addr) = ep.address() {
        net.resolve.insert(host.clone(), addr.to_string());
        if !net.allow_private.contains(&addr.to_string()) {
            net.allow_private.push(addr.to_string());
        }
    }
    let already = net.allow.contains(&host);
    if !already {
        net.allow.push(host.clone());
    }
    match net.ports.get_mut(&host) {
        Some(ports) if !ports.contains(&ep.port) => ports.push(ep.port),
        Some(_) => {}
        // Newly allowed: the collector's port only. Allowed before on 80 and 443: keep those.
        None if !already => {
            net.ports.insert(host, vec![ep.port]);
        }
        None if ep.port != 80 && ep.port != 443 => {
            net.ports.insert(host, vec![80, 443, ep.port]);
        }
        None => {}
    }
    Ok(())
}

/// The sandbox's environment for the agent's own telemetry (empty when it is off): Claude
/// Code's documented switch and the standard OTLP variables, pointing at the collector through
/// the proxy; prompt text and tool details only with `include_prompts = true`. Only literal
/// headers are passed: a header naming a credential is for airlock's exporter alone.
pub(crate) fn agent_env(policy: &Policy, session: &str) -> Result<Vec<(String, String)>> {
    if !agent_telemetry(policy) {
        return Ok(Vec::new());
    }
    let Some(ep) = endpoint(policy)? else {
        return Ok(Vec::new());
    };
    let prompts = if policy.telemetry.include_prompts == Some(true) {
        "1"
    } else {
        "0"
    };
    let mut env: Vec<(String, String)> = [
        ("CLAUDE_CODE_ENABLE_TELEMETRY", "1"),
        ("OTEL_METRICS_EXPORTER", "otlp"),
        ("OTEL_LOGS_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_LOG_USER_PROMPTS", prompts),
        ("OTEL_LOG_TOOL_DETAILS", prompts),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), ep.inside_url()));
    env.push((
        "OTEL_RESOURCE_ATTRIBUTES".into(),
        format!("airlock.session.id={session}"),
    ));
    let literal: Vec<String> = policy
        .telemetry
        .headers
        .iter()
        .filter_map(|(k, v)| match v {
            // The OTEL_EXPORTER_OTLP_HEADERS list (W3C baggage-like): skip what it cannot carry.
            HeaderValue::Literal(s) if !s.contains([',', '=']) => Some(format!("{k}={s}")),
            _ => None,
        })
        .collect();
    if !literal.is_empty() {
        env.push(("OTEL_EXPORTER_OTLP_HEADERS".into(), literal.join(",")));
    }
    Ok(env)
}

/// What every record carries besides the event.
#[derive(Debug, Clone)]
pub(crate) struct SessionAttrs {
    pub(crate) session: String,
    pub(crate) agent: String,
    pub(crate) workspace: String,
}

/// The running exporter of one session. [`Telemetry::finish`] flushes it (bounded) and writes
/// the final loss count to the audit log.
#[derive(Debug)]
pub(crate) struct Telemetry {
    provider: SdkLoggerProvider,
    sink: Arc<Sink>,
    rt: Option<tokio::runtime::Runtime>,
}

/// What a session's exporter needs, resolved before anything starts.
#[derive(Debug)]
pub(crate) struct Prepared {
    endpoint: Endpoint,
    headers: HashMap<String, String>,
    cap: usize,
    /// `[tls] extra_roots`, trusted for an `https://` collector besides the host's roots.
    roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

/// Resolves `[telemetry]` before the session starts: allows the collector for the agent's
/// telemetry ([`allow_collector`]) and reads the headers, so an unreadable credential stops the
/// run here, naming it. `None` when telemetry is off.
pub(crate) fn prepare(policy: &mut Policy, home: &std::path::Path) -> Result<Option<Prepared>> {
    allow_collector(policy)?;
    let Some(endpoint) = endpoint(policy)? else {
        return Ok(None);
    };
    let roots = if endpoint.https {
        extra_roots(policy, home)?
    } else {
        Vec::new()
    };
    Ok(Some(Prepared {
        endpoint,
        headers: headers(policy, home)?,
        cap: policy
            .telemetry
            .queue_size
            .unwrap_or(DEFAULT_TELEMETRY_QUEUE),
        roots,
    }))
}

/// The certificates of `[tls] extra_roots` (`~` is the home); an unreadable file or one without
/// a PEM certificate is an error naming it.
pub(crate) fn extra_roots(
    policy: &Policy,
    home: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let mut out = Vec::new();
    for r in &policy.tls_extra_roots {
        let path = crate::view::expand(r, home)?;
        let data = std::fs::read(&path)
            .with_context(|| format!("[tls] extra_roots: cannot read {}", path.display()))?;
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&data)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                anyhow!(
                    "[tls] extra_roots: {} is not PEM certificates: {e}",
                    path.display()
                )
            })?;
        if certs.is_empty() {
            bail!(
                "[tls] extra_roots: {} holds no PEM certificate",
                path.display()
            );
        }
        out.extend(certs);
    }
    Ok(out)
}

impl Prepared {
    /// Starts exporting every event appended to `audit` from now on. A failure to start (no
    /// thread for the runtime) is reported and the session goes on without export.
    pub(crate) fn start(self, attrs: SessionAttrs, audit: &Arc<AuditLog>) -> Option<Telemetry> {
        let url = self.endpoint.logs_url();
        let started = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("airlock-otlp")
            .enable_all()
            .build()
            .context("cannot start the telemetry exporter's runtime")
            .and_then(|rt| {
                Exporter {
                    url: url.clone(),
                    headers: self.headers,
                    cap: self.cap,
                    attrs,
                    roots: self.roots,
                }
                .build(rt)
            });
        let telemetry = match started {
            Ok(t) => t,
            Err(e) => {
                eprintln!("airlock: warning: no telemetry export to {url} in this session: {e:#}");
                return None;
            }
        };
        audit.set_sink(telemetry.sink.clone());
        *telemetry
            .sink
            .audit
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(audit);
        Some(telemetry)
    }
}

/// Appends `event` to the audit log of ended session `row` (an event after the session, such as
/// its merge) and, when the user's config sets `[telemetry] otlp_endpoint`, exports it too
/// (waiting [`FINISH_TIMEOUT`] at most). Failures are warnings: the merge itself stands.
pub(crate) fn record_after_session(row: &airlock_session::SessionRow, event: AuditEvent) {
    let audit = match AuditLog::open(row.dir.join("audit.jsonl")) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("airlock: warning: session {}: {e}", row.id);
            return;
        }
    };
    let home = crate::view::Invoker::current().home;
    let exporter = crate::policy_load::load(Some(&row.workspace), &[], &[], None)
        .ok()
        .and_then(|mut p| prepare(&mut p, &home).ok().flatten())
        .and_then(|prepared| {
            prepared.start(
                SessionAttrs {
                    session: row.id.clone(),
                    agent: row.agent.to_string(),
                    workspace: row.workspace.display().to_string(),
                },
                &audit,
            )
        });
    if let Err(e) = audit.append(&event) {
        eprintln!("airlock: warning: session {}: {e}", row.id);
    }
    if let Some(t) = exporter {
        t.finish(&audit);
    }
}

/// The header values for airlock's exporter, credentials read on the host.
fn headers(policy: &Policy, home: &std::path::Path) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (name, v) in &policy.telemetry.headers {
        let value = match v {
            HeaderValue::Literal(s) => s.clone(),
            HeaderValue::Credential { credential, value } => {
                let entry = crate::credentials::effective(policy, home)
                    .into_iter()
                    .find(|e| &e.config.name == credential)
                    .ok_or_else(|| {
                        anyhow!(
                            "[telemetry] headers.{name} names credential '{credential}', which is \
                             not configured: add a [[credentials]] entry with that name"
                        )
                    })?;
                let secret = crate::credentials::read_secret(&entry.config, home).map_err(|e| {
                    anyhow!("[telemetry] headers.{name}: credential '{credential}': {e}")
                })?;
                value.as_deref().unwrap_or("{}").replace("{}", &secret)
            }
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

/// What [`Exporter::build`] needs.
#[derive(Debug)]
pub(crate) struct Exporter {
    /// The full URL log records are posted to (`.../v1/logs`).
    pub(crate) url: String,
    pub(crate) headers: HashMap<String, String>,
    /// Events held for export at most.
    pub(crate) cap: usize,
    pub(crate) attrs: SessionAttrs,
    /// More roots for an `https://` collector.
    pub(crate) roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl Exporter {
    /// Builds the OTLP exporter, the batch processor and the sink on `rt`.
    pub(crate) fn build(self, rt: tokio::runtime::Runtime) -> Result<Telemetry> {
        let inflight = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let client = Client {
            rt: rt.handle().clone(),
            tls: airlock_net::outbound::tls_config(self.roots)?,
        };
        let otlp = opentelemetry_otlp::LogExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(self.url.clone())
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_timeout(REQUEST_TIMEOUT)
            .with_headers(self.headers)
            .with_retry_policy(
                opentelemetry_otlp::RetryPolicy::recommended()
                    .with_max_retries(2)
                    .with_initial_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(2)),
            )
            .build()
            .with_context(|| format!("cannot set up the OTLP exporter for {}", self.url))?;
        let exporter = Counted {
            inner: otlp,
            inflight: inflight.clone(),
            failed: failed.clone(),
        };
        let processor = BatchLogProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    // Never the SDK's own limit: the sink admits at most `cap` at a time.
                    .with_max_queue_size(self.cap + 64)
                    .with_max_export_batch_size(512)
                    .with_scheduled_delay(Duration::from_millis(500))
                    .build(),
            )
            .build();
        let provider = SdkLoggerProvider::builder()
            .with_resource(
                opentelemetry_sdk::Resource::builder_empty()
                    .with_attributes([
                        KeyValue::new("service.name", "airlock"),
                        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                        KeyValue::new("airlock.session.id", self.attrs.session.clone()),
                    ])
                    .build(),
            )
            .with_log_processor(processor)
            .build();
        let sink = Arc::new(Sink {
            logger: provider.logger("airlock"),
            url: self.url,
            attrs: self.attrs,
            cap: self.cap,
            inflight,
            dropped: AtomicU64::new(0),
            failed,
            report: Mutex::new(Report {
                at: Instant::now(),
                dropped: 0,
                failed: 0,
            }),
            audit: Mutex::new(Weak::new()),
        });
        Ok(Telemetry {
            provider,
            sink,
            rt: Some(rt),
        })
    }
}

impl Telemetry {
    /// The sink that takes audit events (`start` attaches it to the audit log).
    #[cfg(test)]
    pub(crate) fn sink(&self) -> Arc<Sink> {
        self.sink.clone()
    }

    /// Flushes what is queued (waiting [`FINISH_TIMEOUT`] at most, whatever the collector
    /// does), stops the exporter and writes the final loss count to `audit` when anything was
    /// lost. Returns `(dropped, failed)`.
    pub(crate) fn finish(mut self, audit: &AuditLog) -> (u64, u64) {
        let provider = self.provider.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("airlock-otlp-end".into())
            .spawn(move || {
                let _ = provider.shutdown_with_timeout(FINISH_TIMEOUT);
                let _ = tx.send(());
            });
        if spawned.is_ok() {
            let _ = rx.recv_timeout(FINISH_TIMEOUT + Duration::from_millis(500));
        }
        // Whatever is still queued now will not be sent.
        let left = self.sink.inflight.load(Ordering::Acquire) as u64;
        self.sink.dropped.fetch_add(left, Ordering::AcqRel);
        let (dropped, failed) = self.sink.losses();
        if dropped + failed > 0 {
            let _ = audit.append(&self.sink.loss_event(dropped, failed));
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
        (dropped, failed)
    }
}

/// Counts of the last `telemetry` audit event.
#[derive(Debug)]
struct Report {
    at: Instant,
    dropped: u64,
    failed: u64,
}

/// The [`AuditSink`]: turns events into log records, admits at most `cap` into the exporter at
/// a time, counts the rest.
#[derive(Debug)]
pub(crate) struct Sink {
    logger: SdkLogger,
    url: String,
    attrs: SessionAttrs,
    cap: usize,
    /// Records admitted and not yet exported (queued, batched or being sent).
    inflight: Arc<AtomicUsize>,
    dropped: AtomicU64,
    /// Records the collector refused or never answered for, after the retries.
    failed: Arc<AtomicU64>,
    report: Mutex<Report>,
    audit: Mutex<Weak<AuditLog>>,
}

impl Sink {
    /// `(dropped, failed)` so far.
    pub(crate) fn losses(&self) -> (u64, u64) {
        (
            self.dropped.load(Ordering::Acquire),
            self.failed.load(Ordering::Acquire),
        )
    }

    fn loss_event(&self, dropped: u64, failed: u64) -> AuditEvent {
        AuditEvent::now(
            Decision::Info,
            Detail::Telemetry {
                endpoint: self.url.clone(),
                dropped,
                failed,
            },
        )
        .session(self.attrs.session.clone())
        .reason(
            "audit events that did not reach the telemetry collector (they are all in this log)",
        )
    }

    /// Writes a `telemetry` event when losses grew and the last one is old enough. The report
    /// lock is released before writing: the write comes back through `record`.
    fn maybe_report(&self) {
        let (dropped, failed) = self.losses();
        {
            let mut r = self.report.lock().unwrap_or_else(|e| e.into_inner());
            if (dropped, failed) == (r.dropped, r.failed) || r.at.elapsed() < REPORT_EVERY {
                return;
            }
            *r = Report {
                at: Instant::now(),
                dropped,
                failed,
            };
        }
        let audit = self
            .audit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade();
        if let Some(audit) = audit {
            let _ = audit.append(&self.loss_event(dropped, failed));
        }
    }

    fn to_record(&self, event: &AuditEvent) -> opentelemetry_sdk::logs::SdkLogRecord {
        let mut rec = self.logger.create_log_record();
        rec.set_timestamp(SystemTime::now());
        rec.set_observed_timestamp(SystemTime::now());
        let (severity, text) = match event.decision {
            Decision::Deny => (Severity::Warn, "WARN"),
            Decision::Ask => (Severity::Warn, "WARN"),
            Decision::Allow | Decision::Info => (Severity::Info, "INFO"),
        };
        rec.set_severity_number(severity);
        rec.set_severity_text(text);
        let json = serde_json::to_value(event).unwrap_or_default();
        let kind = json
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("unknown")
            .to_string();
        rec.set_event_name(event_name(&kind));
        rec.set_body(AnyValue::String(json.to_string().into()));
        let a = &self.attrs;
        rec.add_attributes([
            ("airlock.session.id", a.session.clone()),
            ("airlock.agent", a.agent.clone()),
            ("airlock.workspace", a.workspace.clone()),
            ("airlock.decision", event.decision.as_str().to_string()),
            ("airlock.kind", kind),
        ]);
        for (k, v) in [
            ("airlock.rule", &event.rule),
            ("airlock.reason", &event.reason),
        ] {
            if let Some(v) = v {
                rec.add_attribute(k, v.clone());
            }
        }
        if let Some(obj) = json.as_object() {
            for (k, v) in obj {
                if matches!(
                    k.as_str(),
                    "ts" | "session" | "decision" | "rule" | "reason" | "kind"
                ) {
                    continue;
                }
                let key = format!("airlock.{k}");
                match v {
                    serde_json::Value::String(s) => rec.add_attribute(key, s.clone()),
                    serde_json::Value::Bool(b) => rec.add_attribute(key, *b),
                    serde_json::Value::Number(n) => match n.as_i64() {
                        Some(i) => rec.add_attribute(key, i),
                        None => rec.add_attribute(key, n.to_string()),
                    },
                    serde_json::Value::Null => {}
                    other => rec.add_attribute(key, other.to_string()),
                }
            }
        }
        rec
    }
}

/// The OTLP event name of an audit event kind: `airlock.net`, `airlock.command`, ...
fn event_name(kind: &str) -> &'static str {
    match kind {
        "net" => "airlock.net",
        "dns" => "airlock.dns",
        "command" => "airlock.command",
        "session" => "airlock.session",
        "suppressed" => "airlock.suppressed",
        "wildcardname" => "airlock.wildcard_name",
        "terminal" => "airlock.terminal",
        "unix" => "airlock.unix",
        "telemetry" => "airlock.telemetry",
        _ => "airlock.event",
    }
}

impl AuditSink for Sink {
    fn record(&self, event: &AuditEvent) {
        if self.inflight.fetch_add(1, Ordering::AcqRel) >= self.cap {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::AcqRel);
        } else {
            self.logger.emit(self.to_record(event));
        }
        if !matches!(event.detail, Detail::Telemetry { .. }) {
            self.maybe_report();
        }
    }
}

/// The OTLP exporter, counting what leaves the queue and what the collector did not take.
#[derive(Debug)]
struct Counted {
    inner: opentelemetry_otlp::LogExporter,
    inflight: Arc<AtomicUsize>,
    failed: Arc<AtomicU64>,
}

impl LogExporter for Counted {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let n = batch.iter().count();
        let result = self.inner.export(batch).await;
        if result.is_err() {
            self.failed.fetch_add(n as u64, Ordering::AcqRel);
        }
        self.inflight.fetch_sub(n, Ordering::AcqRel);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter's HTTP client: one HTTP/1.1 connection per request on the exporter's runtime,
/// bounded by [`REQUEST_TIMEOUT`]; the batch processor's thread only waits for the task.
#[derive(Debug, Clone)]
struct Client {
    rt: tokio::runtime::Handle,
    tls: Arc<rustls::ClientConfig>,
}

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let this = self.clone();
        let task = self.rt.spawn(async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, this.send(request)).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "telemetry collector did not answer within {}s",
                    REQUEST_TIMEOUT.as_secs()
                )
                .into()),
            }
        });
        task.await.map_err(|e| -> HttpError { Box::new(e) })?
    }
}

impl Client {
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        airlock_net::outbound::send(&self.tls, request, MAX_ANSWER).await
    }
}

#[cfg(test)]
mod tests;
