//! Shared fixtures: the egress services on ephemeral ports, pinned policies, and small
//! raw-socket clients; the real upstream servers on 127.0.0.1 (plain HTTP with chunked bodies
//! and an upgrade endpoint, TLS with an rcgen certificate, a raw echo/recording server, a
//! logging DNS server) come from `airlock_test_support::upstream`.
#![allow(dead_code, unreachable_pub)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use airlock_audit::{read_events, AuditEvent, AuditLog, Decision};
use airlock_net::{Egress, EgressConfig, Limits, Resolve};
use airlock_policy::network::NetworkPolicy;
use airlock_policy::NetworkConfig;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Parses a `[network]` table.
pub fn policy(toml_text: &str) -> NetworkPolicy {
    let c: NetworkConfig = toml::from_str(toml_text).expect("network toml");
    NetworkPolicy::compile(&c).expect("compile policy")
}

/// A policy that allows `name`, pins it to 127.0.0.1 (`[resolve]`, `allow_private`) and opens
/// `ports` for it: how most tests reach their loopback upstream by name.
pub fn pinned(name: &str, ports: &[u16]) -> NetworkPolicy {
    policy(
        &airlock_test_support::Pinned::new()
            .pin_allowed(name, "127.0.0.1", ports)
            .network_toml(),
    )
}

/// An echo upstream on loopback and an egress that reaches it as `echo.test` on its port (and
/// on `extra_ports`), started with `limits(port)`; returns the egress, the upstream and its port.
pub async fn echo_behind_egress(
    extra_ports: &[u16],
    limits: impl FnOnce(u16) -> Limits,
) -> (Env, Echo, u16) {
    let echo = echo_upstream().await;
    let port = echo.addr.port();
    let ports: Vec<u16> = std::iter::once(port)
        .chain(extra_ports.iter().copied())
        .collect();
    let env = start(
        pinned("echo.test", &ports),
        Arc::new(airlock_net::StaticResolver::new()),
        limits(port),
    );
    (env, echo, port)
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

// The loopback upstreams (HTTP, TLS, raw echo, logging DNS) live in the shared test kit.
pub use airlock_test_support::upstream::*;

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
