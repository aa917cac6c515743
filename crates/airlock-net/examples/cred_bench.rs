//! Benchmark (not a test): what the credential proxy costs. HTTPS requests through airlock's
//! proxy to a local TLS upstream, once as a plain CONNECT tunnel (TLS end to end) and once as a
//! credential host (TLS ends at the proxy, placeholder swapped, response scrubbed, verified TLS
//! upstream): per-request latency on a kept-alive connection (p50/p99) and time to the first
//! SSE event on a fresh connection (CONNECT + TLS + request + first event, p50/p99), plus this
//! process's peak RSS (client, proxy and upstream together: an upper bound for the proxy).
//! Everything stays on 127.0.0.1.
//!
//! `cargo run --release -p airlock-net --example cred_bench -- [--requests N] [--connections N]`
#![allow(
    clippy::print_stdout,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_audit::AuditLog;
use airlock_net::creds::{Credential, Injector};
use airlock_net::{Egress, EgressConfig, StaticResolver};
use airlock_policy::network::NetworkPolicy;
use airlock_policy::NetworkConfig;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SECRET: &str = "sk-bench-0123456789abcdefghijklmnopqrstuvwxyzABCD";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The upstream: `/ping` answers `pong`, `/sse` one event; both over TLS with a test CA.
async fn upstream() -> Result<(SocketAddr, CertificateDer<'static>, String), BoxError> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec![
        "plain.bench.test".to_string(),
        "cred.bench.test".to_string(),
    ])?
    .signed_by(&key, &issuer)?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let body = if req.uri().path() == "/sse" {
                        "data: {\"type\":\"message_start\"}\n\n"
                    } else {
                        "pong"
                    };
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(body))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Ok((addr, ca_cert.der().clone(), ca_cert.pem()))
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// CONNECT through the proxy, TLS trusting `root`, HTTP/1.1 client.
async fn open(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    root: &CertificateDer<'static>,
) -> Result<Sender, BoxError> {
    let mut s = TcpStream::connect(proxy).await?;
    s.set_nodelay(true)?;
    s.write_all(
        format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).await?;
        head.push(b[0]);
    }
    if !head.starts_with(b"HTTP/1.1 200") {
        return Err(format!("proxy refused: {}", String::from_utf8_lossy(&head)).into());
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone())?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(host.to_string())?, s)
        .await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// `authority` is the tunnel's `host:port`: the credential proxy refuses any other (421).
fn request(authority: &str, path: &str) -> Result<Request<Empty<Bytes>>, BoxError> {
    Ok(Request::builder()
        .uri(path)
        .header("host", authority)
        .header("x-api-key", SECRET)
        .body(Empty::new())?)
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e6
}

async fn measure(
    name: &str,
    proxy: SocketAddr,
    host: &str,
    port: u16,
    root: &CertificateDer<'static>,
    requests: usize,
    connections: usize,
) -> Result<(), BoxError> {
    let authority = format!("{host}:{port}");
    let mut sender = open(proxy, host, port, root).await?;
    let mut rtt = Vec::with_capacity(requests);
    for i in 0..requests + 100 {
        sender.ready().await?;
        let t = Instant::now();
        let resp = sender.send_request(request(&authority, "/ping")?).await?;
        let body = resp.into_body().collect().await?.to_bytes();
        if body.as_ref() != b"pong" {
            return Err("bad answer".into());
        }
        if i >= 100 {
            rtt.push(t.elapsed());
        }
    }
    let mut first = Vec::with_capacity(connections);
    for _ in 0..connections {
        let t = Instant::now();
        let mut sender = open(proxy, host, port, root).await?;
        let resp = sender.send_request(request(&authority, "/sse")?).await?;
        let mut body = resp.into_body();
        loop {
            match body.frame().await {
                Some(Ok(f)) if f.data_ref().is_some_and(|d| !d.is_empty()) => break,
                Some(Ok(_)) => {}
                _ => return Err("no event".into()),
            }
        }
        first.push(t.elapsed());
    }
    println!(
        "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |",
        pct(&mut rtt, 0.5),
        pct(&mut rtt, 0.99),
        pct(&mut first, 0.5),
        pct(&mut first, 0.99),
    );
    Ok(())
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let (mut requests, mut connections) = (5_000usize, 300usize);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--requests" => requests = args.next().ok_or("--requests N")?.parse()?,
            "--connections" => connections = args.next().ok_or("--connections N")?.parse()?,
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    let (up, test_root, test_root_pem) = upstream().await?;
    let dir = std::env::temp_dir().join(format!("airlock-cred-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let root_file = dir.join("ca.pem");
    std::fs::write(&root_file, test_root_pem)?;
    let mut c = NetworkConfig {
        allow: vec!["plain.bench.test".into(), "cred.bench.test".into()],
        allow_private: vec!["127.0.0.1".into()],
        ..NetworkConfig::default()
    };
    for h in ["plain.bench.test", "cred.bench.test"] {
        c.resolve.insert(h.into(), "127.0.0.1".into());
        c.ports.insert(h.into(), vec![up.port()]);
    }
    let cred = Credential::new("bench", SECRET, &["cred.bench.test".into()], None, false)?;
    let injector = Arc::new(Injector::new("bench", vec![cred], &[root_file])?);
    let session_root = injector.ca().cert_der().clone();
    let audit = Arc::new(AuditLog::open(dir.join("audit.jsonl"))?);
    let mut cfg = EgressConfig::new(
        std::net::TcpListener::bind("127.0.0.1:0")?,
        NetworkPolicy::compile(&c)?,
        audit,
    );
    cfg.resolver = Arc::new(StaticResolver::new());
    cfg.credentials = Some(injector);
    let egress = Egress::start(cfg, &tokio::runtime::Handle::current())?;
    let proxy = egress.proxy_addr();
    println!(
        "{requests} requests on one kept-alive HTTPS connection; {connections} fresh connections for the first SSE event"
    );
    println!();
    println!("| path | request p50 µs | request p99 µs | first SSE event p50 µs | p99 µs |");
    println!("|---|---|---|---|---|");
    measure(
        "plain CONNECT tunnel (TLS end to end)",
        proxy,
        "plain.bench.test",
        up.port(),
        &test_root,
        requests,
        connections,
    )
    .await?;
    measure(
        "credential proxy (TLS terminated, swap + scrub)",
        proxy,
        "cred.bench.test",
        up.port(),
        &session_root,
        requests,
        connections,
    )
    .await?;
    println!();
    println!(
        "peak RSS of the whole benchmark process (client + proxy + upstream): {} KiB",
        peak_rss_kb()
    );
    drop(egress);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
