//! Hostile agents: malformed request lines, 1 MB headers, slowloris, garbage instead of a
//! ClientHello, a ClientHello dribbled across segments, half-closed and abandoned tunnels, a
//! connection flood. Each case is bounded in time, and the proxy keeps serving others.

use crate::common;

use std::time::{Duration, Instant};

use airlock_net::{sni, Limits};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn setup() -> (Env, Echo, u16) {
    // `port` is inspected as TLS: the echo server stands in for a TLS server there.
    echo_behind_egress(&[80], quick_limits).await
}

/// The proxy still answers a well-formed request.
async fn still_serving(env: &Env) {
    let resp = raw(env.proxy, b"CONNECT evil.test:443 HTTP/1.1\r\n\r\n").await;
    assert!(
        resp.starts_with("HTTP/1.1 403"),
        "proxy stopped serving: {resp}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_lines_get_400_and_the_proxy_keeps_serving() {
    let (env, _, _) = setup().await;
    for junk in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET  HTTP/1.1\r\n\r\n",
        b"CONNECT HTTP/1.1\r\n\r\n",
        b"CONNECT :443 HTTP/1.1\r\n\r\n",
        b"CONNECT echo.test:99999 HTTP/1.1\r\n\r\n",
        b"G\x00T http://echo.test/ HTTP/1.1\r\n\r\n",
        b"GET http://echo.test/ HTTP/9.9\r\n\r\n",
        b"GET http://ech o.test/ HTTP/1.1\r\n\r\n",
        b"GET http://[::1/ HTTP/1.1\r\n\r\n",
        b"GET http://echo.test/ HTTP/1.1\r\nBad Header\r\n\r\n",
        b"POST http://echo.test/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"POST http://echo.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ] {
        let start = Instant::now();
        let resp = raw(env.proxy, junk).await;
        assert!(
            resp.is_empty() || resp.starts_with("HTTP/1.1 4") || resp.starts_with("HTTP/1.1 5"),
            "{:?} -> {resp}",
            String::from_utf8_lossy(junk)
        );
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "{:?}",
            String::from_utf8_lossy(junk)
        );
    }
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_of_headers_is_refused_quickly() {
    let (env, echo, _) = setup().await;
    let mut s = TcpStream::connect(env.proxy).await.expect("connect");
    let start = Instant::now();
    s.write_all(b"GET http://echo.test/ HTTP/1.1\r\n")
        .await
        .expect("write");
    let line = format!("X-Junk: {}\r\n", "a".repeat(1000));
    let mut sent = 0usize;
    let mut write_failed = false;
    while sent < 1024 * 1024 {
        if s.write_all(line.as_bytes()).await.is_err() {
            write_failed = true;
            break;
        }
        sent += line.len();
    }
    let (resp, eof) = read_to_end_timeout(&mut s, Duration::from_secs(5)).await;
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 431") || write_failed, "{resp}");
    assert!(eof, "connection must be closed");
    assert!(start.elapsed() < Duration::from_secs(6));
    assert_eq!(echo.accepted.load(std::sync::atomic::Ordering::SeqCst), 0);
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_by_the_header_timeout() {
    let (env, _, _) = setup().await;
    let mut slow = TcpStream::connect(env.proxy).await.expect("connect");
    let start = Instant::now();
    let mut closed = false;
    // One header byte every 200 ms: never completes; the 1 s header timeout must fire.
    for b in b"GET http://echo.test/ HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        if slow.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), slow.read(&mut buf)).await
        {
            let _ = n;
            closed = true;
            break;
        }
        // Meanwhile others are served.
        if start.elapsed() > Duration::from_millis(400)
            && start.elapsed() < Duration::from_millis(700)
        {
            still_serving(&env).await;
        }
    }
    assert!(closed, "slowloris connection was never closed");
    let elapsed = start.elapsed();
    assert!(
        elapsed < Duration::from_secs(3),
        "closed after {elapsed:?}, header timeout is 1 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_a_client_hello_is_refused() {
    let (env, echo, port) = setup().await;
    let (mut s, resp) = connect(env.proxy, &format!("echo.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n")
        .await
        .expect("write");
    let (got, eof) = read_to_end_timeout(&mut s, Duration::from_secs(3)).await;
    assert!(eof);
    assert_eq!(got, [21, 3, 3, 0, 2, 2, 49], "a tls access_denied alert");
    assert!(
        echo.received.lock().expect("lock").is_empty(),
        "no byte reached upstream"
    );
    let ev = env
        .wait_event(|e| e.rule.as_deref() == Some("tls: bad client hello"))
        .await;
    assert!(ev
        .reason
        .unwrap_or_default()
        .contains("not a tls handshake"));
    still_serving(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tunnel_times_out_waiting_for_the_client_hello() {
    let (env, _, port) = setup().await;
    let (mut s, resp) = connect(env.proxy, &format!("echo.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let start = Instant::now();
    // Half a ClientHello, then silence.
    let hello = sni::build_client_hello(Some("echo.test"), 16384);
    s.write_all(&hello[..hello.len() / 2]).await.expect("write");
    let (_, eof) = read_to_end_timeout(&mut s, Duration::from_secs(4)).await;
    assert!(eof, "tunnel must be closed");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    env.wait_event(|e| e.rule.as_deref() == Some("tls: client hello timeout"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hello_dribbled_across_segments_is_accepted_and_forwarded_intact() {
    let (env, echo, port) = setup().await;
    let (mut s, resp) = connect(env.proxy, &format!("echo.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    s.set_nodelay(true).expect("nodelay");
    // Split into 9-byte TLS records, sent 40 bytes at a time.
    let hello = sni::build_client_hello(Some("echo.test"), 9);
    for chunk in hello.chunks(40) {
        s.write_all(chunk).await.expect("write");
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let mut back = vec![0u8; hello.len()];
    tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut back))
        .await
        .expect("in time")
        .expect("echoed through the tunnel");
    assert_eq!(back, hello);
    assert_eq!(*echo.received.lock().expect("lock"), hello);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_closed_tunnels_finish_and_abandoned_ones_are_reaped() {
    let (env, _, _) = setup().await;
    // Port 80 is not inspected as TLS: plain bytes pass.
    // Half-close: the agent finishes sending; the upstream still answers, then closes.
    let echo80 = echo_upstream().await;
    let port = echo80.addr.port();
    env.egress.reload(pinned("echo.test", &[port]));
    let (mut s, resp) = connect(env.proxy, &format!("echo.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    s.write_all(b"last words").await.expect("write");
    s.shutdown().await.expect("half-close");
    let (got, eof) = read_to_end_timeout(&mut s, Duration::from_secs(3)).await;
    assert!(eof);
    assert_eq!(got, b"last wordsbye");
    // Abandoned: the tunnel is open, nothing moves; the 2 s idle timeout closes it.
    let (mut s, resp) = connect(env.proxy, &format!("echo.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let start = Instant::now();
    let (_, eof) = read_to_end_timeout(&mut s, Duration::from_secs(6)).await;
    assert!(eof, "idle tunnel must be closed");
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_is_bounded_and_service_recovers() {
    let (env, _echo, _) = echo_behind_egress(&[], |_| Limits {
        max_connections: 4,
        ..quick_limits(1)
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(env.proxy).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resp = raw(env.proxy, b"CONNECT evil.test:443 HTTP/1.1\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert_eq!(
        header(&resp, "x-airlock-reason"),
        Some("airlock: max_connections")
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    still_serving(&env).await;
}
