//! Upstream servers on loopback for proxy and DNS tests, started inside the calling test's
//! tokio runtime (pingora `server_utils.rs` style): plain HTTP/1.1 (with chunked bodies and an
//! upgrade), TLS for a name with a self-signed certificate, a raw TCP echo that records what it
//! got, and a DNS server that logs the names asked. Each binds 127.0.0.1 on a free port.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use hickory_proto::op::{Message, OpCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

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

/// A hyper HTTP/1.1 server on 127.0.0.1; returns its address and the count of accepted
/// connections. It answers `METHOD PATH host=… len=… body=… proxy-auth=…`, `/chunked` with a
/// chunked body, and `/ws` with an upgrade to an echo.
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

/// A running [`tls_upstream`].
#[derive(Debug)]
pub struct TlsUpstream {
    /// Where it listens (127.0.0.1).
    pub addr: SocketAddr,
    /// Its self-signed certificate, for the client's roots.
    pub cert: rustls::pki_types::CertificateDer<'static>,
    /// TCP connections accepted.
    pub accepted: Arc<AtomicUsize>,
    /// TLS handshakes completed.
    pub handshakes: Arc<AtomicUsize>,
}

/// The one crypto provider of the tree (rustls with ring).
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

/// A running [`echo_upstream`].
#[derive(Debug)]
pub struct Echo {
    /// Where it listens (127.0.0.1).
    pub addr: SocketAddr,
    /// Every byte received, over all connections.
    pub received: Arc<Mutex<Vec<u8>>>,
    /// TCP connections accepted.
    pub accepted: Arc<AtomicUsize>,
}

/// A TCP server on 127.0.0.1 that echoes until EOF, then writes "bye" and closes.
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

/// A DNS server on 127.0.0.1 (UDP) that answers every A query with 127.0.0.1; returns its
/// address and the names asked, in order.
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

/// A plain HTTP server on 127.0.0.1 in a thread of its own (no runtime needed) that answers
/// every request with 200 and `body`, then closes; returns its port. For tests that drive the
/// airlock binary, whose sandboxed commands reach it through the proxy.
pub fn answering_http(body: &'static str) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("local address").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    port
}
