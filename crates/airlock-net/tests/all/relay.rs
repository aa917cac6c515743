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
