//! The HTTP egress proxy: CONNECT tunnels and plain-HTTP forwarding (absolute-form requests,
//! keep-alive, chunked bodies, upgrades), served by hyper on a listener the sandbox handed over.
//!
//! Each request goes through named phases, in order (after pingora's `ProxyHttp`):
//!
//! ```text
//! accept ─▶ parse ─▶ policy ─▶ resolve ─▶ connect ─▶ [CONNECT: inspect] ─▶ relay ─▶ log
//! ```
//!
//! - **accept**: bounded by `max_connections`; the client stream gets an idle timeout, hyper a
//!   header size limit and a header read timeout (slowloris).
//! - **parse**: the request target becomes a policy [`Host`] and port ([`crate::target`]).
//! - **policy**: allow/deny/port/random-label rules, then the session's budget of distinct names
//!   under each wildcard (`wildcard_names_max`, shared with the DNS filter); a refusal never
//!   reaches a resolver.
//! - **resolve**: `[network.resolve]` pin or the injected resolver, then the private-range rule
//!   on every address (DNS rebinding). The connection goes to a checked address, never to a name
//!   resolved again later.
//! - **connect**: TCP to the first reachable checked address, with a timeout.
//! - **inspect** (CONNECT to a TLS port, 443 by default): the TLS ClientHello is read (bounded,
//!   timed) and its SNI must equal the CONNECT host. A tunnel to a credential's host is then
//!   handed to the credential proxy ([`crate::creds`]): TLS ends here with the session CA and
//!   each request is rewritten; every other tunnel is relayed untouched.
//! - **relay**: bytes both ways with half-close and an idle timeout.
//! - **log**: one audit event per decision, written when the exchange ends (with bytes and
//!   duration), or at once for refusals (rate-limited per destination).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use airlock_audit::{AuditEvent, Decision, Detail};
use airlock_policy::network::{Host, NetworkPolicy, Verdict};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE, HOST, UPGRADE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::creds::{mitm, Injector};
use crate::error::ProxyError;
use crate::io::{Counted, Counters, IdleIo};
use crate::sni::{self, Hello};
use crate::state::Shared;
use crate::{target, Limits};

pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;
type Tunnel = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A fatal TLS alert (access_denied), sent when the ClientHello is refused so the agent's TLS
/// library reports an error instead of hanging.
const TLS_ALERT_ACCESS_DENIED: [u8; 7] = [21, 3, 3, 0, 2, 2, 49];

/// Relay buffer per direction (tokio's default is 8 KiB; larger buffers mean fewer syscalls).
const RELAY_BUF: usize = 64 * 1024;

/// Per client connection: the tunnel to run once hyper hands the connection over (CONNECT or
/// an upgrade), and upstream connection drivers. Both die with the client connection.
#[derive(Default)]
struct ConnState {
    tunnel: Mutex<Option<Tunnel>>,
    background: Mutex<JoinSet<()>>,
}

impl std::fmt::Debug for ConnState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnState").finish_non_exhaustive()
    }
}

impl ConnState {
    fn set_tunnel(&self, t: Tunnel) {
        *self.tunnel.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
    }

    fn spawn_background(&self, f: impl Future<Output = ()> + Send + 'static) {
        let mut set = self.background.lock().unwrap_or_else(|e| e.into_inner());
        while set.try_join_next().is_some() {}
        set.spawn(f);
    }
}

/// Phase `accept`: serves the listener until the task is dropped. Connection tasks live in a
/// `JoinSet` owned by this future, so if it dies (panic, abort) every tunnel dies with it and
/// the listener is closed: the sandbox is left with no network, not an open one.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let sem = Arc::new(Semaphore::new(shared.limits.max_connections));
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    #[cfg(test)]
                    if shared.panic_on_accept.load(std::sync::atomic::Ordering::Relaxed) {
                        panic!("injected fault in the proxy accept loop");
                    }
                    match sem.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let shared = shared.clone();
                            conns.spawn(async move {
                                serve_conn(stream, peer, shared).await;
                                drop(permit);
                            });
                        }
                        Err(_) => refuse_overload(&stream, &shared),
                    }
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("airlock: proxy accept failed: {e}; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(r) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = r {
                    if e.is_panic() {
                        tracing::error!("airlock: a proxy connection task panicked: {e}");
                    }
                }
            }
        }
    }
}

fn refuse_overload(stream: &TcpStream, shared: &Shared) {
    let body = format!(
        "airlock: too many proxy connections (limit {}); retrying later may help\n",
        shared.limits.max_connections
    );
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\nx-airlock-reason: airlock: max_connections\r\n\
         x-airlock-blame: airlock\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(resp.as_bytes());
    tracing::warn!("airlock: proxy connection refused: too many connections");
}

async fn serve_conn(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    serve_io(stream, peer, shared).await;
}

/// Serves one client connection (any byte stream: a socket, or memory when fuzzing).
pub(crate) async fn serve_io<S>(stream: S, peer: SocketAddr, shared: Arc<Shared>)
where
    S: AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let st = Arc::new(ConnState::default());
    let io = TokioIo::new(IdleIo::new(stream, shared.limits.idle_timeout));
    let svc = {
        let (shared, st) = (shared.clone(), st.clone());
        service_fn(move |req| {
            let (shared, st) = (shared.clone(), st.clone());
            async move { Ok::<_, Infallible>(handle(req, shared, st).await) }
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.header_read_timeout)
        .max_buf_size(shared.limits.max_header_bytes.max(8192))
        .keep_alive(true);
    if let Err(e) = builder.serve_connection(io, svc).with_upgrades().await {
        tracing::debug!(%peer, "proxy connection ended: {e}");
    }
    let tunnel = st.tunnel.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(t) = tunnel {
        t.await;
    }
}

/// The destination of one request, as logged.
#[derive(Debug, Clone)]
struct Target {
    host: String,
    port: u16,
    method: Option<String>,
}

impl Target {
    fn unparsed(raw: &str, method: Option<String>) -> Self {
        Target {
            host: raw.chars().take(200).collect(),
            port: 0,
            method,
        }
    }

    fn display(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    st: Arc<ConnState>,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let r = if req.method() == Method::CONNECT {
        connect(req, &shared, &st, start).await
    } else {
        forward(req, &shared, &st, start).await
    };
    match r {
        Ok(resp) => resp,
        Err((t, e)) => {
            log_refusal(&shared, &t, &e, start);
            error_response(&e)
        }
    }
}

/// Phases `policy`, `resolve` and `connect` for one destination.
async fn open_upstream(
    shared: &Shared,
    policy: &NetworkPolicy,
    host: &Host,
    port: u16,
) -> Result<(TcpStream, Verdict), ProxyError> {
    let verdict = match phase_policy(policy, host, port) {
        // Held while the user is asked, if approvals are on and the rule can be lifted.
        Err(ProxyError::Denied { target, verdict }) => match shared.ask(host, port, &verdict).await
        {
            Some(approved) => approved,
            None => return Err(ProxyError::Denied { target, verdict }),
        },
        other => other?,
    };
    shared
        .charge_wildcard(policy, host)
        .map_err(|verdict| ProxyError::Denied {
            target: format!("{host}:{port}"),
            verdict,
        })?;
    let addrs = phase_resolve(shared, policy, host, port).await?;
    let stream = phase_connect(&shared.limits, host, port, &addrs).await?;
    Ok((stream, verdict))
}

/// Phase `policy`: decided on the name alone, before anything is resolved.
fn phase_policy(policy: &NetworkPolicy, host: &Host, port: u16) -> Result<Verdict, ProxyError> {
    let target = format!("{host}:{port}");
    let verdict = policy.check_destination(host, port);
    if !verdict.allow {
        return Err(ProxyError::Denied { target, verdict });
    }
    if let Some(label) = host.name().and_then(|n| policy.random_label(n)) {
        tracing::warn!(%host, label, "proxy request with a random-looking label");
        if policy.refuses_random_labels() {
            return Err(ProxyError::Denied {
                target,
                verdict: Verdict {
                    allow: false,
                    rule: "network.refuse_random_labels".into(),
                    reason: format!("a label of {host} looks like encoded data"),
                    hint: None,
                },
            });
        }
    }
    Ok(verdict)
}

/// Phase `resolve`: pin or resolver, then the private-range rule on every address.
async fn phase_resolve(
    shared: &Shared,
    policy: &NetworkPolicy,
    host: &Host,
    port: u16,
) -> Result<Vec<SocketAddr>, ProxyError> {
    let ips = match host {
        Host::Ip(ip) => vec![*ip],
        Host::Name(name) => match policy.pinned(name) {
            Some(pinned) => pinned.to_vec(),
            None => {
                let r = tokio::time::timeout(
                    shared.limits.resolve_timeout,
                    shared.resolver.resolve(name),
                )
                .await;
                match r {
                    Ok(Ok(ips)) => ips,
                    Ok(Err(e)) => {
                        return Err(ProxyError::Resolve {
                            host: name.clone(),
                            message: e.to_string(),
                        })
                    }
                    Err(_) => {
                        return Err(ProxyError::Timeout {
                            target: name.clone(),
                            what: "name resolution",
                        })
                    }
                }
            }
        },
    };
    if ips.is_empty() {
        return Err(ProxyError::Resolve {
            host: host.to_string(),
            message: "no addresses".into(),
        });
    }
    let verdict = policy.check_addresses(host, &ips);
    if !verdict.allow {
        return Err(ProxyError::Denied {
            target: format!("{host}:{port}"),
            verdict,
        });
    }
    Ok(ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

/// Phase `connect`: the first checked address that accepts.
async fn phase_connect(
    limits: &Limits,
    host: &Host,
    port: u16,
    addrs: &[SocketAddr],
) -> Result<TcpStream, ProxyError> {
    let target = format!("{host}:{port}");
    let mut last = String::from("no addresses");
    for addr in addrs {
        match tokio::time::timeout(limits.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: timed out"),
        }
    }
    Err(ProxyError::Connect {
        target,
        message: last,
    })
}

/// A refusal found while inspecting the tunnel's first bytes.
#[derive(Debug)]
struct Refusal {
    rule: &'static str,
    reason: String,
}

/// Phase `inspect`: reads the ClientHello (bounded in size and time) and checks its SNI
/// against the CONNECT host. Returns the bytes read, to be sent upstream first.
async fn phase_inspect<S: AsyncRead + Unpin>(
    client: &mut S,
    host: &Host,
    limits: &Limits,
) -> Result<Vec<u8>, Refusal> {
    let max = limits.client_hello_max_bytes;
    let mut buf = Vec::with_capacity(2048);
    let read = async {
        loop {
            match sni::parse_client_hello(&buf) {
                Ok(Hello::Complete { sni }) => return Ok(sni),
                Ok(Hello::Incomplete) => {}
                Err(e) => {
                    return Err(Refusal {
                        rule: "tls: bad client hello",
                        reason: format!("tunnel to {host}: {e}"),
                    })
                }
            }
            let room = max.saturating_sub(buf.len());
            if room == 0 {
                return Err(Refusal {
                    rule: "tls: client hello too large",
                    reason: format!("tunnel to {host}: no complete client hello in {max} bytes"),
                });
            }
            let limit = u64::try_from(room).unwrap_or(u64::MAX).min(16 * 1024);
            buf.reserve(4096);
            match (&mut *client).take(limit).read_buf(&mut buf).await {
                Ok(0) => {
                    return Err(Refusal {
                        rule: "tls: no client hello",
                        reason: format!("tunnel to {host} closed before a tls client hello"),
                    })
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(Refusal {
                        rule: "tls: no client hello",
                        reason: format!("tunnel to {host}: reading the client hello failed: {e}"),
                    })
                }
            }
        }
    };
    let sni = match tokio::time::timeout(limits.client_hello_timeout, read).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(Refusal {
                rule: "tls: client hello timeout",
                reason: format!(
                    "tunnel to {host}: no tls client hello within {}s",
                    limits.client_hello_timeout.as_secs_f32()
                ),
            })
        }
    };
    match (sni, host) {
        (Some(s), _) => match Host::parse(&s) {
            Ok(h) if &h == host => Ok(buf),
            _ => Err(Refusal {
                rule: "tls.sni: mismatch",
                reason: format!(
                    "tls sni '{}' does not match the CONNECT host {host} (domain fronting)",
                    s.chars().take(100).collect::<String>()
                ),
            }),
        },
        // Clients never send an SNI for an address; a listed IP literal is reached without one.
        (None, Host::Ip(_)) => Ok(buf),
        (None, Host::Name(_)) => Err(Refusal {
            rule: "tls.sni: missing",
            reason: format!("the tls client hello for {host} carries no sni"),
        }),
    }
}

async fn connect(
    mut req: Request<Incoming>,
    shared: &Arc<Shared>,
    st: &ConnState,
    start: Instant,
) -> Result<Response<ProxyBody>, (Target, ProxyError)> {
    // Phase `parse`.
    let raw = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_else(|| req.uri().to_string());
    let unparsed = Target::unparsed(&raw, Some("CONNECT".into()));
    let (host, port) = target::parse_authority(&raw, None).map_err(|m| {
        (
            unparsed.clone(),
            ProxyError::BadRequest(format!("CONNECT target {m}")),
        )
    })?;
    let t = Target {
        host: host.to_string(),
        port,
        method: None,
    };
    let policy = shared.policy();
    let (stream, verdict) = open_upstream(shared, &policy, &host, port)
        .await
        .map_err(|e| (t.clone(), e))?;
    drop(policy);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let shared = shared.clone();
    let tunnel = async move {
        let counters = Arc::new(Counters::default());
        let mut log = LogGuard::new(shared.clone(), t, verdict, counters.clone(), start);
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                log.reason = format!("agent: tunnel not established: {e}");
                return;
            }
        };
        let mut client = TokioIo::new(upgraded);
        // A credential's hosts are always spoken to over TLS, whatever the port.
        let injector = intercepting(&shared, &host);
        let first = if shared.limits.tls_ports.contains(&port) || injector.is_some() {
            match phase_inspect(&mut client, &host, &shared.limits).await {
                Ok(bytes) => bytes,
                Err(refusal) => {
                    let _ = client.write_all(&TLS_ALERT_ACCESS_DENIED).await;
                    let _ = client.shutdown().await;
                    log.deny(refusal.rule, refusal.reason);
                    return;
                }
            }
        } else {
            Vec::new()
        };
        // Phase `inspect`, continued: tunnels to a credential's hosts are intercepted.
        if let Some(injector) = injector {
            run_intercepted(
                client, first, stream, &host, port, &shared, injector, counters, &mut log,
            )
            .await;
            return;
        }
        // Phase `relay`.
        if let Err(e) = relay_tunnel(client, first, stream, &shared, counters).await {
            log.reason = e;
        }
    };
    st.set_tunnel(Box::pin(tunnel));
    Ok(Response::new(empty()))
}

/// Relays a tunnel the proxy no longer inspects, after sending `first` (the bytes inspection
/// read) upstream: with splice(2) between the two sockets when the agent's side is a socket of
/// ours ([`crate::splice`]), else by copying. Errors are the log's reason.
async fn relay_tunnel(
    client: TokioIo<hyper::upgrade::Upgraded>,
    first: Vec<u8>,
    stream: TcpStream,
    shared: &Shared,
    counters: Arc<Counters>,
) -> Result<(), String> {
    let idle = shared.limits.idle_timeout;
    let mut client = match client.into_inner().downcast::<TokioIo<IdleIo<TcpStream>>>() {
        Ok(parts) => {
            let agent = parts.io.into_inner().into_inner();
            // What hyper read past the CONNECT head and inspection left unread goes first.
            let mut upstream = stream;
            for bytes in [&first[..], &parts.read_buf[..]] {
                upstream
                    .write_all(bytes)
                    .await
                    .map_err(|e| format!("upstream: write failed: {e}"))?;
                counters.written.fetch_add(
                    u64::try_from(bytes.len()).unwrap_or(u64::MAX),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            return crate::splice::relay(&agent, &upstream, idle, &counters)
                .await
                .map_err(|e| format!("tunnel ended: {e}"));
        }
        Err(upgraded) => TokioIo::new(upgraded),
    };
    let mut upstream = IdleIo::new(Counted::new(stream, counters), idle);
    upstream
        .write_all(&first)
        .await
        .map_err(|e| format!("upstream: write failed: {e}"))?;
    tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, RELAY_BUF, RELAY_BUF)
        .await
        .map(|_| ())
        .map_err(|e| format!("tunnel ended: {e}"))
}

/// The credential injector, when a CONNECT to `host` must be intercepted (a credential is
/// scoped to it; any port, since such tunnels must carry TLS).
fn intercepting(shared: &Shared, host: &Host) -> Option<Arc<Injector>> {
    shared
        .creds
        .as_ref()
        .filter(|i| i.intercepts(host))
        .cloned()
}

/// Hands an inspected tunnel to the credential proxy and records how it ended.
#[allow(clippy::too_many_arguments)]
async fn run_intercepted(
    client: TokioIo<hyper::upgrade::Upgraded>,
    first: Vec<u8>,
    stream: TcpStream,
    host: &Host,
    port: u16,
    shared: &Arc<Shared>,
    injector: Arc<Injector>,
    counters: Arc<Counters>,
    log: &mut LogGuard,
) {
    let addr = match stream.peer_addr() {
        Ok(a) => a,
        Err(e) => {
            log.reason = format!("upstream: connection lost before tls: {e}");
            return;
        }
    };
    let t = mitm::Tunnel {
        shared: shared.clone(),
        injector,
        host: host.clone(),
        port,
        addr,
        counters,
    };
    match mitm::serve(client, first, stream, t).await {
        mitm::Outcome::Served(note) => {
            log.reason = match note {
                Some(n) => format!("{}; credential proxy: {n}", log.reason),
                None => format!("{}; credential proxy", log.reason),
            };
        }
        mitm::Outcome::Refused { reason } => log.deny(mitm::RULE_UPSTREAM_TLS, reason),
    }
}

/// The plain-HTTP reverse-proxy mode of a credential: `GET /airlock/cred/NAME/PATH` on the
/// proxy's own address goes to `https://HOST/PATH`, HOST being the credential's first host,
/// through the same policy, resolve and connect phases and the same swaps as an intercepted
/// tunnel (for clients that take a base URL instead of a proxy).
async fn reverse(
    mut req: Request<Incoming>,
    rest: &str,
    shared: &Arc<Shared>,
    start: Instant,
) -> Result<Response<ProxyBody>, (Target, ProxyError)> {
    let method = req.method().to_string();
    let (name, path) = rest.split_once('/').map_or((rest, ""), |(n, p)| (n, p));
    let unparsed = Target::unparsed(
        &format!("{}{rest}", crate::creds::REVERSE_PREFIX),
        Some(method.clone()),
    );
    let Some((injector, host)) = shared
        .creds
        .as_ref()
        .and_then(|i| i.reverse_host(name).map(|h| (i.clone(), h)))
    else {
        return Err((
            unparsed,
            ProxyError::BadRequest(format!(
                "no credential '{name}' with a reverse proxy (set reverse_proxy_env in its [[credentials]] entry)"
            )),
        ));
    };
    // 443, unless `[network.ports]` does not allow it for this host (then its first port).
    let port = {
        let policy = shared.policy();
        let (_, ports) = policy.ports_for(&host);
        if ports.is_empty() || ports.contains(&443) {
            443
        } else {
            ports[0]
        }
    };
    let t = Target {
        host: host.to_string(),
        port,
        method: Some(method),
    };
    let err = |e| (t.clone(), e);
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    *req.uri_mut() = format!("/{path}{query}")
        .parse()
        .map_err(|e| err(ProxyError::BadRequest(format!("bad path: {e}"))))?;
    let host_header = HeaderValue::from_str(&if port == 443 {
        host.to_string()
    } else {
        format!("{host}:{port}")
    })
    .map_err(|e| err(ProxyError::BadRequest(format!("bad host: {e}"))))?;
    req.headers_mut().insert(HOST, host_header);
    let policy = shared.policy();
    let (stream, verdict) = open_upstream(shared, &policy, &host, port)
        .await
        .map_err(err)?;
    drop(policy);
    let addr = stream.peer_addr().map_err(|e| {
        err(ProxyError::Connect {
            target: t.display(),
            message: e.to_string(),
        })
    })?;
    let counters = Arc::new(Counters::default());
    let mut log = LogGuard::new(shared.clone(), t.clone(), verdict, counters.clone(), start);
    log.reason = format!("{}; credential reverse proxy", log.reason);
    let tunnel = mitm::Tunnel {
        shared: shared.clone(),
        injector,
        host,
        port,
        addr,
        counters,
    };
    match mitm::reverse(req, stream, tunnel).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            // The audit event is written when the body is done.
            let body = body
                .map_frame(move |f| {
                    let _ = &log;
                    f
                })
                .boxed_unsync();
            Ok(Response::from_parts(parts, body))
        }
        Err(e) => {
            if matches!(e, ProxyError::UpstreamTls { .. }) {
                log.deny(mitm::RULE_UPSTREAM_TLS, e.to_string());
            }
            drop(log);
            Err(err(e))
        }
    }
}

async fn forward(
    mut req: Request<Incoming>,
    shared: &Arc<Shared>,
    st: &ConnState,
    start: Instant,
) -> Result<Response<ProxyBody>, (Target, ProxyError)> {
    // Phase `parse`.
    let method = req.method().to_string();
    let uri = req.uri().clone();
    let unparsed = Target::unparsed(&uri.to_string(), Some(method.clone()));
    let bad = |m: String| (unparsed.clone(), ProxyError::BadRequest(m));
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(bad(format!(
                "scheme '{other}' is not proxied as absolute-form; use CONNECT for https"
            )))
        }
        None => {
            if let Some(rest) = uri.path().strip_prefix(crate::creds::REVERSE_PREFIX) {
                let rest = rest.to_string();
                return reverse(req, &rest, shared, start).await;
            }
            return Err(bad(
                "this is airlock's egress proxy: send absolute-form requests \
                 (GET http://host/path) or CONNECT host:port"
                    .into(),
            ));
        }
    }
    let authority = uri
        .authority()
        .ok_or_else(|| bad("absolute-form request without a host".into()))?
        .clone();
    let (host, port) = target::parse_authority(authority.as_str(), Some(80)).map_err(bad)?;
    let t = Target {
        host: host.to_string(),
        port,
        method: Some(method),
    };
    let err = |e| (t.clone(), e);
    if let Some(inj) = &shared.creds {
        // Plain HTTP never carries a secret: placeholders stay, and are audited.
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        for name in inj.misdirected(&host, true, req.headers(), target) {
            mitm::audit_misdirected(shared, name, &host, port, req.method().as_str());
        }
    }
    let policy = shared.policy();
    let (stream, verdict) = open_upstream(shared, &policy, &host, port)
        .await
        .map_err(err)?;
    drop(policy);
    let counters = Arc::new(Counters::default());
    let log = LogGuard::new(shared.clone(), t.clone(), verdict, counters.clone(), start);
    let io = IdleIo::new(Counted::new(stream, counters), shared.limits.idle_timeout);
    let upstream_err = |e: hyper::Error| {
        (
            t.clone(),
            ProxyError::Upstream {
                target: t.display(),
                message: e.to_string(),
            },
        )
    };
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(shared.limits.max_header_bytes.max(8192))
        .handshake(TokioIo::new(io))
        .await
        .map_err(upstream_err)?;
    st.spawn_background(async move {
        let _ = conn.with_upgrades().await;
    });

    let upgrade = wants_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers, upgrade);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|e| err(ProxyError::BadRequest(format!("bad path: {e}"))))?;
    parts.version = Version::HTTP_11;
    let host_header = HeaderValue::from_str(authority.as_str())
        .map_err(|e| err(ProxyError::BadRequest(format!("bad host: {e}"))))?;
    parts.headers.insert(HOST, host_header);
    let mut resp = sender
        .send_request(Request::from_parts(parts, body))
        .await
        .map_err(upstream_err)?;

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(err(ProxyError::Upstream {
                target: t.display(),
                message: "101 switching protocols to a request that did not ask to upgrade".into(),
            }));
        };
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        st.set_tunnel(Box::pin(async move {
            let mut log = log;
            match tokio::join!(client_upgrade, upstream_upgrade) {
                (Ok(c), Ok(u)) => {
                    let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
                    if let Err(e) = tokio::io::copy_bidirectional_with_sizes(
                        &mut c, &mut u, RELAY_BUF, RELAY_BUF,
                    )
                    .await
                    {
                        log.reason = format!("upgraded connection ended: {e}");
                    }
                }
                (c, u) => {
                    log.reason = format!(
                        "upgrade failed: agent {:?}, upstream {:?}",
                        c.err().map(|e| e.to_string()),
                        u.err().map(|e| e.to_string())
                    );
                }
            }
        }));
        let (parts, _) = resp.into_parts();
        return Ok(Response::from_parts(parts, empty()));
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    let body = LoggedBody {
        inner: body,
        _log: log,
    };
    Ok(Response::from_parts(parts, body.boxed_unsync()))
}

pub(crate) fn wants_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(UPGRADE)
        && h.get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those the Connection header names.
pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = h
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        if !(keep_upgrade && n == UPGRADE) {
            h.remove(n);
        }
    }
    for n in [
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        if keep_upgrade && n == "upgrade" {
            continue;
        }
        h.remove(n);
    }
    if keep_upgrade {
        h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

fn full(s: String) -> ProxyBody {
    Full::new(Bytes::from(s))
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn header_value(s: &str) -> HeaderValue {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(300)
        .collect();
    HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("airlock"))
}

/// The answer to a refused or failed request: a status, a plain-text body the agent can show
/// the user, and `X-Airlock-Reason` naming the rule.
pub(crate) fn error_response(e: &ProxyError) -> Response<ProxyBody> {
    let mut resp = Response::new(full(format!("airlock: {e}\n")));
    *resp.status_mut() = e.status();
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert("x-airlock-reason", header_value(&e.rule()));
    h.insert(
        "x-airlock-blame",
        HeaderValue::from_static(e.blame().as_str()),
    );
    h.insert(
        "x-airlock-retry",
        HeaderValue::from_static(if e.retryable() { "may-help" } else { "no" }),
    );
    resp
}

fn log_refusal(shared: &Shared, t: &Target, e: &ProxyError, start: Instant) {
    let decision = match e {
        ProxyError::Denied { .. } | ProxyError::BadRequest(_) => Decision::Deny,
        _ => Decision::Allow,
    };
    let ev = AuditEvent::now(
        decision,
        Detail::Net {
            host: t.host.clone(),
            port: t.port,
            method: t.method.clone(),
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: millis(start),
        },
    )
    .rule(e.rule())
    .reason(e.to_string());
    tracing::info!(target = %t.display(), rule = %e.rule(), "proxy refused: {e}");
    let rule = e.rule();
    // Budget refusals are keyed by pattern: each refused name is new, so a per-host key would
    // not limit a flood.
    let key = if rule.starts_with("network.wildcard_names_max") {
        format!("net:{rule}")
    } else {
        format!("net:{}:{}", t.host, t.port)
    };
    shared.record(ev, Some(&key));
}

fn millis(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Phase `log` for allowed exchanges: writes the event when dropped (the exchange ended,
/// failed, or the proxy is shutting down), with the bytes that crossed the upstream socket.
struct LogGuard {
    shared: Arc<Shared>,
    target: Target,
    decision: Decision,
    rule: String,
    reason: String,
    counters: Arc<Counters>,
    start: Instant,
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogGuard")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl LogGuard {
    fn new(
        shared: Arc<Shared>,
        target: Target,
        verdict: Verdict,
        counters: Arc<Counters>,
        start: Instant,
    ) -> Self {
        LogGuard {
            shared,
            target,
            decision: Decision::Allow,
            rule: verdict.rule,
            reason: verdict.reason,
            counters,
            start,
        }
    }

    fn deny(&mut self, rule: &str, reason: String) {
        self.decision = Decision::Deny;
        self.rule = rule.to_string();
        self.reason = reason;
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let (down, up) = self.counters.get();
        let ev = AuditEvent::now(
            self.decision,
            Detail::Net {
                host: self.target.host.clone(),
                port: self.target.port,
                method: self.target.method.clone(),
                bytes_up: up,
                bytes_down: down,
                duration_ms: millis(self.start),
            },
        )
        .rule(std::mem::take(&mut self.rule))
        .reason(std::mem::take(&mut self.reason));
        if self.decision == Decision::Deny {
            tracing::info!(target = %self.target.display(), "proxy refused tunnel");
            let key = format!("net:{}:{}", self.target.host, self.target.port);
            self.shared.record(ev, Some(&key));
        } else {
            self.shared.record(ev, None);
        }
    }
}

/// A response body that writes the exchange's audit event when it is done.
struct LoggedBody {
    inner: Incoming,
    _log: LogGuard,
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
