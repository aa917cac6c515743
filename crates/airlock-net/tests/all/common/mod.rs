//! Shared fixtures: real upstream servers on 127.0.0.1 (plain HTTP with chunked bodies and an
//! upgrade endpoint, TLS with an rcgen certificate, a raw echo/recording server, a logging DNS
//! server), the egress services on ephemeral ports, and small raw-socket clients.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use airlock_audit::{read_events, AuditEvent, AuditLog, Decision};
use airlock_net::{Egress, EgressConfig, Limits, Resolve};
use airlock_policy::network::NetworkPolicy;
use airlock_policy::NetworkConfig;
use bytes::Bytes;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Parses a `[network]` table.
pub fn policy(toml_text: &str) -> NetworkPolicy {
    let c: NetworkConfig = toml::from_str(toml_text).expect("network toml");
    NetworkPolicy::compile(&c).expect("compile policy")
}

/// A running egress with its audit log.
pub struct Env {
    pub egress: Egress,
    pub proxy: SocketAddr,
    pub dns: SocketAddr,
    pub dns_tcp: SocketAddr,
    pub audit_path: PathBuf,
    /// Copies of refusals ([`EgressConfig::denials`]).
    pub denials: std::sync::mpsc::Receiver<AuditEvent>,
    _dir: tempfile::TempDir,
}

impl Env {
    pub fn events(&self) -> Vec<AuditEvent> {
        read_events(&self.audit_path).expect("read audit").0
    }

    pub fn denied(&self) -> Vec<AuditEvent> {
        self.events()
            .into_iter()
            .filter(|e| e.decision == Decision::Deny)
            .collect()
    }

    /// Waits until the audit log holds an event matching `f` (events are written when an
    /// exchange ends, which may be just after the client saw it end).
    pub async fn wait_event(&self, f: impl Fn(&AuditEvent) -> bool) -> AuditEvent {
        for _ in 0..100 {
            if let Some(e) = self.events().into_iter().find(|e| f(e)) {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        panic!("no matching audit event in {:#?}", self.events());
    }
}

pub fn start(policy: NetworkPolicy, resolver: Arc<dyn Resolve>, limits: Limits) -> Env {
    start_with(policy, resolver, limits, |_| {})
}

/// [`start`], with `more` changing the config before the services start.
pub fn start_with(
    policy: NetworkPolicy,
    resolver: Arc<dyn Resolve>,
    limits: Limits,
    more: impl FnOnce(&mut EgressConfig),
) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit_path = dir.path().join("audit.jsonl");
    let audit = Arc::new(AuditLog::open(&audit_path).expect("audit"));
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let dns_udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind dns");
    let dns_tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind dns tcp");
    let dns_tcp_addr = dns_tcp.local_addr().expect("addr");
    let mut cfg = EgressConfig::new(proxy, policy, audit);
    cfg.dns_udp = Some(dns_udp);
    cfg.dns_tcp = Some(dns_tcp);
    cfg.resolver = resolver;
    cfg.limits = limits;
    cfg.session = Some("test-session".into());
    let (denials_tx, denials) = std::sync::mpsc::sync_channel(64);
    cfg.denials = Some(denials_tx);
    more(&mut cfg);
    let egress = Egress::start(cfg, &tokio::runtime::Handle::current()).expect("start");
    Env {
        proxy: egress.proxy_addr(),
        dns: egress.dns_addr().expect("dns addr"),
        dns_tcp: dns_tcp_addr,
        egress,
        audit_path,
        denials,
        _dir: dir,
    }
}

/// Limits with short timeouts and `tls_port` inspected as TLS.
pub fn quick_limits(tls_port: u16) -> Limits {
    Limits {
        tls_ports: vec![443, tls_port],
        header_read_timeout: Duration::from_secs(1),
        client_hello_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        ..Limits::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP upstream.

/// A response body sent in chunks, with no length: hyper frames it as chunked.
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

type UpBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

async fn http_handler(mut req: Request<Incoming>) -> Result<Response<UpBody>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/ws" {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut resp = Response::new(Full::new(Bytes::new()).boxed_unsync());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        resp.headers_mut()
            .insert("upgrade", "echo".parse().expect("hv"));
        resp.headers_mut()
            .insert("connection", "upgrade".parse().expect("hv"));
        return Ok(resp);
    }
    if path == "/chunked" {
        let chunks = [&b"one,"[..], b"two,", b"three"]
            .into_iter()
            .map(Bytes::from_static)
            .collect();
        return Ok(Response::new(Chunks(chunks).boxed_unsync()));
    }
    let method = req.method().to_string();
    let host = req
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let proxy_hdr = req.headers().contains_key("proxy-authorization");
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = format!(
        "{method} {path} host={host} len={} body={} proxy-auth={proxy_hdr}",
        body.len(),
        String::from_utf8_lossy(&body)
    );
    Ok(Response::new(Full::new(Bytes::from(text)).boxed_unsync()))
}

/// A hyper HTTP/1.1 server; counts accepted connections.
pub async fn http_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), hyper::service::service_fn(http_handler))
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, count)
}

// ---------------------------------------------------------------------------------------------
// TLS upstream.

pub struct TlsUpstream {
    pub addr: SocketAddr,
    pub cert: rustls::pki_types::CertificateDer<'static>,
    /// TCP connections accepted.
    pub accepted: Arc<AtomicUsize>,
    /// TLS handshakes completed.
    pub handshakes: Arc<AtomicUsize>,
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS server for `name` that greets with "hello from tls\n" and then echoes.
pub async fn tls_upstream(name: &str) -> TlsUpstream {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("cert");
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let handshakes = Arc::new(AtomicUsize::new(0));
    let (a, h) = (accepted.clone(), handshakes.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let (acceptor, h) = (acceptor.clone(), h.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                h.fetch_add(1, Ordering::SeqCst);
                if tls.write_all(b"hello from tls\n").await.is_err() {
                    return;
                }
                let mut buf = [0u8; 4096];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = tls.shutdown().await;
            });
        }
    });
    TlsUpstream {
        addr,
        cert,
        accepted,
        handshakes,
    }
}

/// A TLS client connector trusting `cert`.
pub fn tls_connector(
    cert: &rustls::pki_types::CertificateDer<'static>,
    sni: bool,
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).expect("root");
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.enable_sni = sni;
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

// ---------------------------------------------------------------------------------------------
// Raw echo upstream: echoes until EOF, then writes "bye" and closes; records what it got.

pub struct Echo {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<u8>>>,
    pub accepted: Arc<AtomicUsize>,
}

pub async fn echo_upstream() -> Echo {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let received = Arc::new(Mutex::new(Vec::new()));
    let accepted = Arc::new(AtomicUsize::new(0));
    let (r, a) = (received.clone(), accepted.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            r.lock().expect("lock").extend_from_slice(&buf[..n]);
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = s.write_all(b"bye").await;
                let _ = s.shutdown().await;
            });
        }
    });
    Echo {
        addr,
        received,
        accepted,
    }
}

// ---------------------------------------------------------------------------------------------
// Logging DNS upstream: answers every A query with 127.0.0.1 and records the names asked.

pub async fn logging_dns() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = s.local_addr().expect("addr");
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok((n, peer)) = s.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut resp = Message::response(q.metadata.id, OpCode::Query);
            for query in &q.queries {
                l.lock()
                    .expect("lock")
                    .push(query.name().to_ascii().trim_end_matches('.').to_string());
                resp.add_query(query.clone());
                if query.query_type() == RecordType::A {
                    resp.add_answer(Record::from_rdata(
                        query.name().clone(),
                        60,
                        RData::A(A(Ipv4Addr::LOCALHOST)),
                    ));
                }
            }
            if let Ok(bytes) = resp.to_vec() {
                let _ = s.send_to(&bytes, peer).await;
            }
        }
    });
    (addr, log)
}

// ---------------------------------------------------------------------------------------------
// Clients.

/// Reads one HTTP response head (and up to `Content-Length` bytes of body, if given).
pub async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !buf.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, s.read(&mut byte)).await {
            Ok(Ok(1)) => buf.push(byte[0]),
            _ => return String::from_utf8_lossy(&buf).into_owned(),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    let _ = tokio::time::timeout_at(deadline, s.read_exact(&mut body)).await;
    head + &String::from_utf8_lossy(&body)
}

/// Sends raw bytes on a fresh connection and returns the first response.
pub async fn raw(proxy: SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy).await.expect("connect proxy");
    s.write_all(req).await.expect("write");
    read_response(&mut s).await
}

/// Opens a CONNECT tunnel; returns the stream and the response text.
pub async fn connect(proxy: SocketAddr, target: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(proxy).await.expect("connect proxy");
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let resp = read_response(&mut s).await;
    (s, resp)
}

/// The value of header `name` in a response text.
pub fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    resp.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads until EOF or `timeout`; returns what was read and whether EOF was seen.
pub async fn read_to_end_timeout(s: &mut TcpStream, timeout: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

/// One DNS query over UDP to `server`; the decoded answer.
pub async fn dns_query(server: SocketAddr, name: &str, ty: RecordType) -> Message {
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), ty));
    s.send_to(&m.to_vec().expect("encode"), server)
        .await
        .expect("send");
    let mut buf = [0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf))
        .await
        .expect("dns answer in time")
        .expect("recv");
    Message::from_vec(&buf[..n]).expect("decode answer")
}

pub fn a_records(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}
