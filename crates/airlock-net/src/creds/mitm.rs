//! The interception of one CONNECT tunnel to a credential host: TLS from the agent ends here
//! (a leaf of the session CA), TLS to the real upstream starts here (verified against the
//! host's roots plus `[tls] extra_roots`), and hyper speaks HTTP/1.1 on both sides so that
//! each request and response can be rewritten ([`super::swap`]) while bodies keep streaming.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use airlock_audit::{AuditEvent, Decision, Detail};
use airlock_policy::network::Host;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, HOST};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::swap::{self, ReplacingBody};
use super::Injector;
use super::{gitpush, reqrules};
use crate::error::ProxyError;
use crate::io::{Counted, Counters, IdleIo};
use crate::proxy::{error_response, strip_hop_by_hop, wants_upgrade, ProxyBody};
use crate::state::Shared;

/// The audit rule of a refused upstream certificate.
pub(crate) const RULE_UPSTREAM_TLS: &str = "tls.upstream: certificate not verified";
/// The audit rule of a placeholder sent outside its credential's hosts.
pub(crate) const RULE_SCOPE: &str = "credentials.hosts: placeholder outside its scope";

/// The audit rule of a request whose `Host` (or absolute-form authority) is not its tunnel's.
pub(crate) const RULE_HOST: &str = "credentials.host: request host differs from the tunnel's";

/// The audit rule of a placeholder sent where no credential is carried (it was not replaced).
pub(crate) const RULE_MISPLACED: &str =
    "credentials.headers: placeholder outside the headers that carry it";

/// What one intercepted tunnel needs.
pub(crate) struct Tunnel {
    pub(crate) shared: Arc<Shared>,
    pub(crate) injector: Arc<Injector>,
    pub(crate) host: Host,
    pub(crate) port: u16,
    /// The checked address the CONNECT was connected to; reconnections go there only.
    pub(crate) addr: SocketAddr,
    pub(crate) counters: Arc<Counters>,
}

/// How an intercepted tunnel ended, for its audit event.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Served; the string is a note for the log, if any.
    Served(Option<String>),
    /// The upstream's certificate did not verify; every request was answered 502.
    Refused { reason: String },
}

struct Ctx {
    t: Tunnel,
    sender: tokio::sync::Mutex<Option<SendRequest<ProxyBody>>>,
    drivers: Mutex<JoinSet<()>>,
}

/// Serves one intercepted tunnel: `first` is the ClientHello already read by `inspect`,
/// `upstream` the TCP connection already opened to the checked address.
pub(crate) async fn serve<C>(client: C, first: Vec<u8>, upstream: TcpStream, t: Tunnel) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let host_s = t.host.to_string();
    let server = match t.injector.ca().server_config(&host_s) {
        Ok(s) => s,
        Err(e) => return Outcome::Served(Some(format!("airlock: {e}"))),
    };
    let limits = t.shared.limits.clone();
    let accept = TlsAcceptor::from(server).accept(Prefixed::new(first, client));
    let tls = match tokio::time::timeout(limits.client_hello_timeout, accept).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Outcome::Served(Some(format!(
                "agent: tls with airlock's credential proxy failed ({e}); does the client trust \
                 the session CA (SSL_CERT_FILE)?"
            )))
        }
        Err(_) => return Outcome::Served(Some("agent: tls handshake timed out".into())),
    };
    let ctx = Arc::new(Ctx {
        t,
        sender: tokio::sync::Mutex::new(None),
        drivers: Mutex::new(JoinSet::new()),
    });
    // Connect upstream before the first request, so a refused certificate is known at once.
    let refused = match ctx.open_upstream_with(Some(upstream)).await {
        Ok(s) => {
            *ctx.sender.lock().await = Some(s);
            None
        }
        Err(e) => Some(e),
    };
    let outcome = match &refused {
        Some(e @ ProxyError::UpstreamTls { .. }) => Outcome::Refused {
            reason: e.to_string(),
        },
        Some(e) => Outcome::Served(Some(e.to_string())),
        None => Outcome::Served(None),
    };
    let refused = refused.map(Arc::new);
    let svc = {
        let ctx = ctx.clone();
        service_fn(move |req: Request<Incoming>| {
            let (ctx, refused) = (ctx.clone(), refused.clone());
            async move {
                let resp = match refused {
                    Some(e) => error_response(&e),
                    None => match ctx.exchange(req).await {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::debug!(host = %ctx.t.host, "credential proxy: {e}");
                            error_response(&e)
                        }
                    },
                };
                Ok::<_, std::convert::Infallible>(resp)
            }
        })
    };
    let io = TokioIo::new(IdleIo::new(tls, limits.idle_timeout));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    if let Err(e) = builder.serve_connection(io, svc).await {
        tracing::debug!(host = %ctx.t.host, "credential proxy connection ended: {e}");
    }
    outcome
}

/// One request of the reverse-proxy mode: `req` is already in origin form with the upstream's
/// `Host`; `upstream` is the TCP connection to the checked address. The connection lives as
/// long as the response body.
pub(crate) async fn reverse(
    req: Request<Incoming>,
    upstream: TcpStream,
    t: Tunnel,
) -> Result<Response<ProxyBody>, ProxyError> {
    let ctx = Arc::new(Ctx {
        t,
        sender: tokio::sync::Mutex::new(None),
        drivers: Mutex::new(JoinSet::new()),
    });
    let sender = ctx.open_upstream_with(Some(upstream)).await?;
    *ctx.sender.lock().await = Some(sender);
    let resp = ctx.exchange(req).await?;
    let (parts, body) = resp.into_parts();
    let keep = ctx.clone();
    let body = body
        .map_frame(move |f| {
            let _ = &keep;
            f
        })
        .boxed_unsync();
    Ok(Response::from_parts(parts, body))
}

impl Ctx {
    fn target(&self) -> String {
        format!("{}:{}", self.t.host, self.t.port)
    }

    /// TLS (verified) and an HTTP/1.1 client over `tcp`, or over a new connection to the
    /// checked address.
    async fn open_upstream_with(
        &self,
        tcp: Option<TcpStream>,
    ) -> Result<SendRequest<ProxyBody>, ProxyError> {
        let limits = &self.t.shared.limits;
        let tcp = match tcp {
            Some(s) => s,
            None => {
                match tokio::time::timeout(limits.connect_timeout, TcpStream::connect(self.t.addr))
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        return Err(ProxyError::Connect {
                            target: self.target(),
                            message: format!("{}: {e}", self.t.addr),
                        })
                    }
                    Err(_) => {
                        return Err(ProxyError::Timeout {
                            target: self.target(),
                            what: "connect",
                        })
                    }
                }
            }
        };
        let _ = tcp.set_nodelay(true);
        let name = self.t.host.name().unwrap_or_default().to_string();
        let server_name = ServerName::try_from(name).map_err(|e| {
            ProxyError::BadRequest(format!("{} is not a name tls can verify: {e}", self.t.host))
        })?;
        let io = IdleIo::new(
            Counted::new(tcp, self.t.counters.clone()),
            limits.idle_timeout,
        );
        let connect = TlsConnector::from(self.t.injector.upstream_tls()).connect(server_name, io);
        let tls = match tokio::time::timeout(limits.connect_timeout, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let err = ProxyError::UpstreamTls {
                    target: self.target(),
                    message: e.to_string(),
                };
                return Err(if is_certificate_error(&e) {
                    err
                } else {
                    ProxyError::Upstream {
                        target: self.target(),
                        message: format!("tls handshake failed: {e}"),
                    }
                });
            }
            Err(_) => {
                return Err(ProxyError::Timeout {
                    target: self.target(),
                    what: "tls handshake",
                })
            }
        };
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(limits.max_header_bytes.max(8192))
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ProxyError::Upstream {
                target: self.target(),
                message: e.to_string(),
            })?;
        let mut drivers = self.drivers.lock().unwrap_or_else(|e| e.into_inner());
        while drivers.try_join_next().is_some() {}
        drivers.spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// One request: rewritten, sent upstream, its response rewritten.
    async fn exchange(&self, req: Request<Incoming>) -> Result<Response<ProxyBody>, ProxyError> {
        if wants_upgrade(req.headers()) {
            return Err(ProxyError::BadRequest(format!(
                "protocol upgrades (websocket) are not supported to credential host {}: airlock \
                 could not keep the secret out of the upgraded stream",
                self.t.host
            )));
        }
        if let Err(e) = self.check_authority(&req) {
            self.audit_refused(&e, req.method().as_str());
            return Err(e);
        }
        let inj = &self.t.injector;
        let host = &self.t.host;
        let target = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let at = (host, self.t.port);
        let rules = inj.request_rules();
        let method = req.method().as_str();
        if let Some(refused) =
            reqrules::check(&self.t.shared, at, rules, (method, &target), req.headers())
        {
            return Ok(refused);
        }
        for name in inj.misdirected(host, false, req.headers(), &target) {
            self.audit_misdirected(name, req.method().as_str());
        }
        for name in inj.misplaced(host, req.headers(), &target) {
            audit_misplaced(
                &self.t.shared,
                name,
                host,
                self.t.port,
                req.method().as_str(),
            );
        }
        let (mut parts, body) = req.into_parts();
        // An OAuth token request (RFC 6749 §6): its response may rotate credentials.
        let token_request =
            parts.method == hyper::Method::POST && parts.uri.path().ends_with("/oauth/token");
        strip_hop_by_hop(&mut parts.headers, false);
        // Only credential headers: a placeholder the agent puts elsewhere (path, query, any
        // other header) stays a placeholder, or an echo could hand the secret back encoded.
        inj.swap_request_headers(host, &mut parts.headers);
        parts.uri = Uri::builder()
            .path_and_query(target.as_str())
            .build()
            .map_err(|e| ProxyError::BadRequest(format!("bad request target: {e}")))?;
        for (name, value) in inj.injections(host) {
            if !parts.headers.contains_key(&name) {
                let v = HeaderValue::from_str(&value)
                    .map_err(|_| ProxyError::BadRequest(format!("cannot inject header {name}")))?;
                parts.headers.insert(name, v);
            }
        }
        // Responses must arrive uncompressed to be scrubbed.
        parts
            .headers
            .insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        if !parts.headers.contains_key(HOST) {
            let h = HeaderValue::from_str(&self.host_header())
                .map_err(|e| ProxyError::BadRequest(format!("bad host: {e}")))?;
            parts.headers.insert(HOST, h);
        }
        let body: ProxyBody = if gitpush::is_push(&parts.method, &target, &parts.headers) {
            let at = (host, self.t.port);
            let lookup = |r| self.send(r);
            let push = gitpush::guard(&self.t.shared, at, inj.git_push(), &parts, body, lookup);
            match push.await? {
                Ok(b) => b,
                Err(refused) => return Ok(refused),
            }
        } else {
            body.boxed_unsync()
        };
        let body_pairs = inj.outbound_pairs(host, true);
        let body: ProxyBody = if body_pairs.is_empty() {
            body
        } else {
            if body_pairs.iter().any(|(a, b)| a.len() != b.len()) {
                parts.headers.remove(CONTENT_LENGTH);
            }
            ReplacingBody::new(body, body_pairs).boxed_unsync()
        };
        let req = Request::from_parts(parts, body);
        let resp = self.send(req).await?;
        if token_request && resp.status().is_success() {
            return self.rewrite_token_response(resp).await;
        }
        self.rewrite_response(resp)
    }

    /// Sends one request on the tunnel's upstream connection (reopened if it closed).
    async fn send(&self, req: Request<ProxyBody>) -> Result<Response<Incoming>, ProxyError> {
        Ok({
            let mut guard = self.sender.lock().await;
            if guard.as_ref().is_none_or(|s| s.is_closed()) {
                *guard = Some(self.open_upstream_with(None).await?);
            }
            let sender = guard.as_mut().ok_or_else(|| ProxyError::Upstream {
                target: self.target(),
                message: "no connection".into(),
            })?;
            let upstream_err = |e: hyper::Error| ProxyError::Upstream {
                target: self.target(),
                message: e.to_string(),
            };
            sender.ready().await.map_err(upstream_err)?;
            sender.send_request(req).await.map_err(upstream_err)?
        })
    }

    /// A token endpoint's answer: read whole (bounded), rotated credentials get new
    /// placeholders in place of the new tokens, then scrubbed like any response.
    async fn rewrite_token_response(
        &self,
        resp: Response<Incoming>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        const MAX_TOKEN_RESPONSE: usize = 1 << 20;
        if let Some(enc) = resp.headers().get(CONTENT_ENCODING) {
            if !enc.as_bytes().eq_ignore_ascii_case(b"identity") {
                return self.rewrite_response(resp);
            }
        }
        let (mut parts, body) = resp.into_parts();
        let bytes = http_body_util::Limited::new(body, MAX_TOKEN_RESPONSE)
            .collect()
            .await
            .map_err(|e| ProxyError::Upstream {
                target: self.target(),
                message: format!("reading the token response: {e}"),
            })?
            .to_bytes();
        let mut out = bytes.to_vec();
        if let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            if self
                .t
                .injector
                .apply_token_response(&self.t.host, &mut json)
            {
                out = serde_json::to_vec(&json).map_err(|e| ProxyError::Upstream {
                    target: self.target(),
                    message: e.to_string(),
                })?;
            }
        }
        strip_hop_by_hop(&mut parts.headers, false);
        let inbound = self.t.injector.inbound_pairs();
        swap::swap_header_values(&mut parts.headers, &inbound);
        let out = swap::replace(&out, &inbound).unwrap_or(out);
        parts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
        let body = http_body_util::Full::new(bytes::Bytes::from(out))
            .map_err(|never| match never {})
            .boxed_unsync();
        Ok(Response::from_parts(parts, body))
    }

    /// Refuses a request that names another host than its tunnel's: every `Host` header and an
    /// absolute-form target's authority must be the CONNECT host (ASCII case-insensitive) and
    /// port (absent means 443, RFC 9110 §4.2.2). Otherwise a shared front end would route the
    /// real secret to the named host (domain fronting).
    fn check_authority(&self, req: &Request<Incoming>) -> Result<(), ProxyError> {
        let mut named: Vec<String> = req
            .headers()
            .get_all(HOST)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        if let Some(a) = req.uri().authority() {
            named.push(a.as_str().to_string());
        }
        if req.headers().get_all(HOST).iter().count() > 1 {
            return Err(ProxyError::Misdirected {
                target: self.target(),
                authority: named.join(", "),
            });
        }
        for a in named {
            if !self.is_own_authority(&a) {
                return Err(ProxyError::Misdirected {
                    target: self.target(),
                    authority: a,
                });
            }
        }
        Ok(())
    }

    fn is_own_authority(&self, a: &str) -> bool {
        let Ok(auth) = a.trim().parse::<hyper::http::uri::Authority>() else {
            return false;
        };
        // No userinfo: `user@host` is not a Host value.
        if auth.as_str().contains('@') {
            return false;
        }
        let port = auth.port_u16().unwrap_or(443);
        let own = self.t.host.to_string();
        let name = auth.host().strip_suffix('.').unwrap_or(auth.host());
        port == self.t.port && name.eq_ignore_ascii_case(own.strip_suffix('.').unwrap_or(&own))
    }

    /// Audits a request refused before anything was sent upstream.
    fn audit_refused(&self, e: &ProxyError, method: &str) {
        tracing::debug!(host = %self.t.host, "credential proxy: {e}");
        let ev = AuditEvent::now(
            Decision::Deny,
            Detail::Net {
                host: self.t.host.to_string(),
                port: self.t.port,
                method: Some(method.to_string()),
                bytes_up: 0,
                bytes_down: 0,
                duration_ms: 0,
            },
        )
        .rule(e.rule())
        .reason(e.to_string());
        self.t
            .shared
            .record(ev, Some(&format!("cred-host:{}", self.t.host)));
    }

    fn host_header(&self) -> String {
        if self.t.port == 443 {
            self.t.host.to_string()
        } else {
            self.target()
        }
    }

    fn rewrite_response(
        &self,
        resp: Response<Incoming>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        if let Some(enc) = resp.headers().get(CONTENT_ENCODING) {
            if !enc.as_bytes().eq_ignore_ascii_case(b"identity") {
                return Err(ProxyError::Upstream {
                    target: self.target(),
                    message: format!(
                        "it sent a '{}'-encoded response although airlock asked for identity; \
                         airlock cannot scrub credentials from it, so it is not passed on",
                        String::from_utf8_lossy(enc.as_bytes())
                    ),
                });
            }
        }
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        let inbound = self.t.injector.inbound_pairs();
        swap::swap_header_values(&mut parts.headers, &inbound);
        if inbound.iter().any(|(a, b)| a.len() != b.len()) {
            parts.headers.remove(CONTENT_LENGTH);
        }
        let body = ReplacingBody::new(body, inbound).boxed_unsync();
        Ok(Response::from_parts(parts, body))
    }

    fn audit_misdirected(&self, name: &str, method: &str) {
        audit_misdirected(&self.t.shared, name, &self.t.host, self.t.port, method);
    }
}

/// Audits a placeholder sent to its credential's host somewhere it is not replaced (the request
/// target, a header that does not carry the credential).
pub(crate) fn audit_misplaced(shared: &Shared, name: &str, host: &Host, port: u16, method: &str) {
    let reason = format!(
        "the placeholder of credential {name} was sent to {host} outside the headers that carry \
         it (authorization, x-api-key, its inject header or its `headers`); it was not replaced"
    );
    audit_unreplaced(
        shared,
        (RULE_MISPLACED, "cred-misplaced"),
        name,
        (host, port, method),
        reason,
    );
}

/// Audits a placeholder sent outside its credential's hosts (it was not replaced).
pub(crate) fn audit_misdirected(shared: &Shared, name: &str, host: &Host, port: u16, method: &str) {
    let reason = format!(
        "the placeholder of credential {name} was sent to {host}, which is not among its hosts; \
         it was not replaced"
    );
    audit_unreplaced(
        shared,
        (RULE_SCOPE, "cred-scope"),
        name,
        (host, port, method),
        reason,
    );
}

/// One deny event for a placeholder left unreplaced: `rule` names the rule and the rate-limit
/// key's prefix (the agent can trigger this at will, so the record is rate-limited per
/// credential and host, and the log line is quiet).
fn audit_unreplaced(
    shared: &Shared,
    rule: (&str, &str),
    name: &str,
    (host, port, method): (&Host, u16, &str),
    reason: String,
) {
    tracing::debug!(credential = name, %host, "{reason}");
    let ev = AuditEvent::now(
        Decision::Deny,
        Detail::Net {
            host: host.to_string(),
            port,
            method: Some(method.to_string()),
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0,
        },
    )
    .rule(format!("{} ({name})", rule.0))
    .reason(reason);
    shared.record(ev, Some(&format!("{}:{name}:{host}", rule.1)));
}

fn is_certificate_error(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| {
            matches!(
                r,
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::UnsupportedNameType
            )
        })
}

/// A stream that first yields bytes already read from it (the ClientHello `inspect` took).
struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
