//! The relay of tunnels the proxy no longer inspects (splice(2) between the sockets on Linux):
//! bytes intact both ways, including those the agent sent in the same packet as the CONNECT head
//! or its ClientHello (read by the HTTP parser before the tunnel existed), large transfers, the
//! byte counts in the audit log, and half-close.

use crate::common;

use std::time::Duration;

use airlock_audit::Detail;
use airlock_net::sni;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An echo upstream reachable as `echo.test` on its port, inspected as TLS when `tls`.
async fn setup(tls: bool) -> (Env, Echo, u16) {
    echo_behind_egress(&[], |port| quick_limits(if tls { port } else { 443 })).await
}

#[allow(clippy::cast_possible_truncation)] // wrapping on purpose
/// Deterministic bytes that differ across a large transfer.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) ^ ((i >> 11) as u8))
        .collect()
}

/// Writes `head` then `body` to a new connection to the proxy (as one write when `pipelined`,
/// else the body only after the 200), half-closes, and returns everything read back (the
/// response head included) once the proxy closes.
async fn exchange(env: &Env, target: &str, body: &[u8], pipelined: bool) -> Vec<u8> {
    let head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    let mut s = TcpStream::connect(env.proxy).await.expect("connect proxy");
    let mut back = Vec::new();
    if pipelined {
        s.write_all(&[head.as_bytes(), body].concat())
            .await
            .expect("write");
    } else {
        s.write_all(head.as_bytes()).await.expect("write");
        let resp = read_response(&mut s).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        back.extend_from_slice(resp.as_bytes());
    }
    let (mut r, mut w) = s.into_split();
    let body = body.to_vec();
    let send = tokio::spawn(async move {
        if !pipelined {
            w.write_all(&body).await.expect("write body");
        }
        w.shutdown().await.expect("half-close");
        w
    });
    tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut back))
        .await
        .expect("the tunnel finishes")
        .expect("read");
    drop(send.await.expect("sender"));
    back
}

/// Every byte the agent sends reaches the upstream and comes back, then the upstream's reply to
/// the half-close: for bodies sent with the CONNECT head or after it, small and large, on a
/// plain port and on a TLS-inspected one (the body then starts with a ClientHello); the audit
/// event counts exactly the bytes that went up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_bytes_arrive_intact_however_they_were_sent() {
    for tls in [false, true] {
        for pipelined in [true, false] {
            for len in [1usize, 70_000, 6 << 20] {
                let (env, echo, port) = setup(tls).await;
                let mut body = if tls {
                    sni::build_client_hello(Some("echo.test"), 16384)
                } else {
                    Vec::new()
                };
                body.extend(pattern(len, len.to_le_bytes()[0]));
                let back = exchange(&env, &format!("echo.test:{port}"), &body, pipelined).await;
                let what = format!("tls {tls}, pipelined {pipelined}, {len} bytes");
                let start = back
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .unwrap_or_else(|| panic!("{what}: no response head"))
                    + 4;
                assert!(back.starts_with(b"HTTP/1.1 200"), "{what}");
                let echoed = &back[start..];
                assert_eq!(echoed.len(), body.len() + 3, "{what}: length");
                assert!(echoed[..body.len()] == body[..], "{what}: bytes differ");
                assert_eq!(&echoed[body.len()..], b"bye", "{what}");
                assert!(*echo.received.lock().expect("lock") == body, "{what}");
                let ev = env
                    .wait_event(|e| net_host(e) == Some(("echo.test", port)))
                    .await;
                let Detail::Net {
                    bytes_up,
                    bytes_down,
                    ..
                } = ev.detail
                else {
                    unreachable!()
                };
                assert_eq!(bytes_up, body.len() as u64, "{what}: bytes up");
                assert_eq!(bytes_down, body.len() as u64 + 3, "{what}: bytes down");
            }
        }
    }
}

fn net_host(e: &airlock_audit::AuditEvent) -> Option<(&str, u16)> {
    match &e.detail {
        Detail::Net { host, port, .. } => Some((host.as_str(), *port)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Real TLS through the splice relay: a rustls client, a CONNECT to a TLS-inspected port (so the
// SNI check runs first), and a rustls upstream whose behaviour each test picks.

/// What the TLS upstream does once its handshake is done.
#[derive(Debug, Clone, Copy)]
enum Act {
    /// Reads to the client's end (close_notify and FIN), then sends back what it read and
    /// closes: the client's half-close must reach it while the way back stays open.
    EchoAfterEnd,
    /// Sends this many pattern bytes and closes its sending side, then reads to the end: the
    /// half-close the other way.
    SendThenRead(usize),
    /// Reads this many bytes, then resets the TCP connection (SO_LINGER 0).
    ResetAfterReading(usize),
    /// Sends this many pattern bytes, then resets the TCP connection.
    ResetAfterSending(usize),
    /// Sends until a write fails (the client vanished).
    Flood,
    /// Reads until the stream ends or fails (the client vanished mid-upload).
    Drain,
}

/// How one upstream connection went: the application bytes it read, how its reading and
/// writing ended, and the raw TCP bytes it read and wrote (what the audit log must count).
#[derive(Debug)]
struct Served {
    got: Vec<u8>,
    end: Result<(), std::io::Error>,
    tcp: (u64, u64),
}

/// A TCP stream that counts the bytes read and written through it.
struct Counting {
    inner: TcpStream,
    read: u64,
    written: u64,
}

impl tokio::io::AsyncRead for Counting {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        self.read += (buf.filled().len() - before) as u64;
        r
    }
}

impl tokio::io::AsyncWrite for Counting {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            self.written += *n as u64;
        }
        r
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A TLS upstream for `tls.test` on loopback that serves one connection with `act` and reports
/// how it went.
async fn tls_lab(
    act: Act,
) -> (
    std::net::SocketAddr,
    rustls::pki_types::CertificateDer<'static>,
    tokio::sync::oneshot::Receiver<Served>,
) {
    let ck = rcgen::generate_simple_self_signed(vec!["tls.test".to_string()]).expect("cert");
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.expect("accept");
        let counting = Counting {
            inner: s,
            read: 0,
            written: 0,
        };
        let mut tls = acceptor.accept(counting).await.expect("tls accept");
        let mut got = Vec::new();
        let end = serve_act(&mut tls, act, &mut got).await;
        let c = tls.get_ref().0;
        let tcp = (c.read, c.written);
        let _ = tx.send(Served { got, end, tcp });
    });
    (addr, cert, rx)
}

/// Checks that the TCP stream under a TLS session that got close_notify has reached its end
/// too (the FIN arrived: a half-close was passed on, not only the TLS alert inside the bytes).
async fn tcp_eof(s: &mut TcpStream) -> std::io::Result<()> {
    let mut b = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await {
        Ok(Ok(0)) => Ok(()),
        Ok(Ok(_)) => Err(std::io::Error::other("bytes after close_notify")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::Error::other(
            "no FIN after close_notify: the half-close was not passed on",
        )),
    }
}

async fn serve_act(
    tls: &mut tokio_rustls::server::TlsStream<Counting>,
    act: Act,
    got: &mut Vec<u8>,
) -> std::io::Result<()> {
    let reset = |tls: &mut tokio_rustls::server::TlsStream<Counting>| {
        tls.get_ref().0.inner.set_zero_linger().expect("linger");
    };
    match act {
        Act::EchoAfterEnd => {
            tls.read_to_end(got).await?;
            tcp_eof(&mut tls.get_mut().0.inner).await?;
            let back = got.clone();
            tls.write_all(&back).await?;
            tls.shutdown().await
        }
        Act::SendThenRead(n) => {
            tls.write_all(&pattern(n, 5)).await?;
            tls.shutdown().await?;
            tls.read_to_end(got).await.map(|_| ())
        }
        Act::ResetAfterReading(n) => {
            got.resize(n, 0);
            tls.read_exact(got).await?;
            reset(tls);
            Ok(())
        }
        Act::ResetAfterSending(n) => {
            tls.write_all(&pattern(n, 9)).await?;
            tls.flush().await?;
            reset(tls);
            Ok(())
        }
        Act::Flood => {
            let chunk = pattern(64 << 10, 1);
            loop {
                tls.write_all(&chunk).await?;
            }
        }
        Act::Drain => {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match tls.read(&mut buf).await? {
                    0 => return Ok(()),
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
        }
    }
}

/// An egress that reaches the lab as `tls.test` with its port inspected as TLS (the SNI check
/// runs before the relay) and a long idle timeout, so a tunnel that ends quickly ended because
/// of what a peer did, not by timing out.
fn tls_egress(port: u16) -> Env {
    start(
        pinned("tls.test", &[port]),
        std::sync::Arc::new(airlock_net::StaticResolver::new()),
        airlock_net::Limits {
            idle_timeout: Duration::from_secs(60),
            ..quick_limits(port)
        },
    )
}

/// A TLS session to the lab through a CONNECT tunnel of `env`'s proxy.
async fn tls_through(
    env: &Env,
    port: u16,
    cert: &rustls::pki_types::CertificateDer<'static>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let (s, resp) = connect(env.proxy, &format!("tls.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let name = rustls::pki_types::ServerName::try_from("tls.test").expect("name");
    tls_connector(cert, true)
        .connect(name, s)
        .await
        .expect("tls through the tunnel")
}

/// The lab's report, within `secs` seconds.
async fn served(rx: tokio::sync::oneshot::Receiver<Served>, secs: u64) -> Served {
    tokio::time::timeout(Duration::from_secs(secs), rx)
        .await
        .expect("the upstream's connection ended in time")
        .expect("the upstream reported")
}

/// The audit event of the tunnel to the lab: (bytes up, bytes down, reason).
async fn tunnel_event(env: &Env, port: u16) -> (u64, u64, String) {
    let ev = env
        .wait_event(|e| net_host(e) == Some(("tls.test", port)))
        .await;
    assert_eq!(ev.decision, airlock_audit::Decision::Allow, "{ev:?}");
    let Detail::Net {
        bytes_up,
        bytes_down,
        ..
    } = ev.detail
    else {
        unreachable!()
    };
    (bytes_up, bytes_down, ev.reason.unwrap_or_default())
}

/// Sizes around the relay's pipe (64 KiB, growing to 256 KiB and 1 MiB in a bulk transfer) and its
/// multiples, plus odd ones; TLS records add their own framing on top.
const SIZES: [usize; 10] = [
    1,
    16_383,
    65_536,
    262_143,
    262_144,
    262_145,
    1 << 20,
    (1 << 20) - 1,
    (1 << 20) + 13,
    (6 << 20) + 77,
];

/// A TLS upload through the tunnel, the client's half-close (close_notify, FIN) passed on, and
/// the same bytes back after it: intact at every size, and the audit event counts exactly the
/// TCP bytes the upstream read and wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_through_the_relay_is_intact_at_every_size_and_counted() {
    for len in SIZES {
        let (addr, cert, rx) = tls_lab(Act::EchoAfterEnd).await;
        let env = tls_egress(addr.port());
        let mut tls = tls_through(&env, addr.port(), &cert).await;
        let body = pattern(len, len.to_le_bytes()[0]);
        tls.write_all(&body).await.expect("upload");
        tls.shutdown().await.expect("half-close");
        let mut back = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut back))
            .await
            .expect("the answer arrives")
            .expect("read the answer");
        let s = served(rx, 10).await;
        s.end.expect("the upstream saw a clean end");
        assert!(
            s.got == body,
            "{len} bytes: the upstream got different bytes"
        );
        assert!(
            back == body,
            "{len} bytes: the client got different bytes back"
        );
        let (up, down, reason) = tunnel_event(&env, addr.port()).await;
        assert_eq!((up, down), s.tcp, "{len} bytes: audit counts ({reason})");
    }
}

/// The upstream ends its side first (close_notify, FIN): the client reads everything to the
/// end, then still sends, and the upstream gets all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_half_close_from_the_upstream_keeps_the_way_up_open() {
    for (down_len, up_len) in [
        (1usize, 262_145usize),
        (262_144, 3),
        ((2 << 20) + 5, 1 << 20),
    ] {
        let (addr, cert, rx) = tls_lab(Act::SendThenRead(down_len)).await;
        let env = tls_egress(addr.port());
        let mut tls = tls_through(&env, addr.port(), &cert).await;
        let mut down = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut down))
            .await
            .expect("the upstream's end arrives")
            .expect("read to the upstream's end");
        assert!(down == pattern(down_len, 5), "{down_len} bytes down differ");
        tcp_eof(tls.get_mut().0)
            .await
            .expect("the upstream's FIN reached the client");
        let up = pattern(up_len, 77);
        tls.write_all(&up)
            .await
            .expect("send after the upstream ended");
        tls.shutdown().await.expect("close");
        let s = served(rx, 30).await;
        s.end.expect("the upstream saw a clean end");
        assert!(s.got == up, "{up_len} bytes up after the half-close differ");
        let (bytes_up, bytes_down, reason) = tunnel_event(&env, addr.port()).await;
        assert_eq!((bytes_up, bytes_down), s.tcp, "audit counts ({reason})");
    }
}

/// An upstream that resets the connection, while the client uploads or while it downloads,
/// ends the tunnel at once (long before the idle timeout): the client's reading ends, and the
/// audit event says the tunnel ended with an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_reset_ends_the_tunnel() {
    for act in [
        Act::ResetAfterReading(1),
        Act::ResetAfterReading(300_000),
        Act::ResetAfterSending(1),
        Act::ResetAfterSending((1 << 20) + 3),
    ] {
        let (addr, cert, rx) = tls_lab(act).await;
        let env = tls_egress(addr.port());
        let tls = tls_through(&env, addr.port(), &cert).await;
        let (mut r, mut w) = tokio::io::split(tls);
        // Upload until the tunnel breaks (an upstream that only sends ignores it).
        let upload = tokio::spawn(async move {
            let chunk = pattern(64 << 10, 3);
            for _ in 0..256 {
                if w.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        });
        let mut sink = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(10), r.read_to_end(&mut sink)).await;
        assert!(ended.is_ok(), "{act:?}: the client's side did not end");
        // The upload ends too: with an error once the tunnel is gone, or by running out.
        tokio::time::timeout(Duration::from_secs(20), upload)
            .await
            .expect("the upload ends")
            .expect("task");
        served(rx, 10).await;
        let (_, _, reason) = tunnel_event(&env, addr.port()).await;
        assert!(
            reason.contains("tunnel ended"),
            "{act:?}: the log does not say the tunnel broke: {reason}"
        );
    }
}

/// A client that vanishes mid-transfer (reset, or closed in the middle of a TLS record), while
/// uploading or while downloading: the upstream's side ends at once (not at the idle timeout)
/// and the tunnel is logged with the bytes that went through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_vanishing_mid_transfer_ends_the_tunnel() {
    for (act, reset) in [
        (Act::Drain, true),
        (Act::Drain, false),
        (Act::Flood, true),
        (Act::Flood, false),
    ] {
        let (addr, cert, rx) = tls_lab(act).await;
        let env = tls_egress(addr.port());
        let mut tls = tls_through(&env, addr.port(), &cert).await;
        if matches!(act, Act::Drain) {
            tls.write_all(&pattern((1 << 20) + 7, 1))
                .await
                .expect("upload");
            tls.flush().await.expect("flush");
        } else {
            let mut buf = vec![0u8; 1 << 20];
            tls.read_exact(&mut buf).await.expect("download");
        }
        let (tcp, _) = tls.into_inner();
        if reset {
            tcp.set_zero_linger().expect("linger");
        } else {
            // Half a TLS record: the upstream must not wait for the rest.
            let mut raw = tcp;
            raw.write_all(&[0x17, 0x03, 0x03, 0x40, 0x00, 1, 2, 3])
                .await
                .expect("partial record");
            drop(raw);
            let s = served(rx, 10).await;
            assert!(s.end.is_err(), "{act:?}: a truncated stream ended cleanly");
            tunnel_event(&env, addr.port()).await;
            continue;
        }
        drop(tcp);
        let s = served(rx, 10).await;
        assert!(
            s.end.is_err() || matches!(act, Act::Drain),
            "{act:?}: the flood never failed"
        );
        let (up, down, reason) = tunnel_event(&env, addr.port()).await;
        // The upstream read only what the relay wrote to it; the relay wrote the client only
        // what the upstream sent.
        assert!(up > 0 && down > 0, "{act:?}: {up} {down} ({reason})");
        assert!(up >= s.tcp.0, "{act:?}: {up} counted up, {} read", s.tcp.0);
        assert!(
            down <= s.tcp.1,
            "{act:?}: {down} counted down, {} sent",
            s.tcp.1
        );
    }
}
