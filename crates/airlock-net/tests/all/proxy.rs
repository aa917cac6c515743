//! The proxy against real servers on 127.0.0.1: allowed names reachable over plain HTTP and
//! CONNECT+TLS, refusals (denied name before any DNS lookup, IP literals, private answers, SNI
//! mismatch or absence, ports), the answers the agent sees, audit events, and reload.

use crate::common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use airlock_audit::{AuditEvent, Decision, Detail};
use airlock_net::{StaticResolver, UdpDnsResolver};
use common::*;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn net_host(e: &airlock_audit::AuditEvent) -> Option<(&str, u16)> {
    match &e.detail {
        Detail::Net { host, port, .. } => Some((host.as_str(), *port)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_forwarded_with_keep_alive_chunked_bodies_and_audit() {
    let (up, conns) = http_upstream().await;
    let p = pinned("web.test", &[up.port()]);
    let env = start(p, Arc::new(StaticResolver::new()), quick_limits(1));
    let port = up.port();
    let mut s = tokio::net::TcpStream::connect(env.proxy)
        .await
        .expect("connect");
    // 1: a GET with a proxy credential header that must not be forwarded.
    s.write_all(
        format!(
            "GET http://web.test:{port}/hello?x=1 HTTP/1.1\r\nHost: evil.test\r\n\
             Proxy-Authorization: Basic c2VjcmV0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let r1 = read_response(&mut s).await;
    assert!(r1.starts_with("HTTP/1.1 200"), "{r1}");
    assert!(
        r1.contains(&format!("GET /hello host=web.test:{port} len=0")),
        "{r1}"
    );
    assert!(r1.contains("proxy-auth=false"), "{r1}");
    // 2: a chunked POST on the same (kept-alive) connection.
    s.write_all(
        format!(
            "POST http://web.test:{port}/upload HTTP/1.1\r\nHost: web.test\r\n\
             Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let r2 = read_response(&mut s).await;
    assert!(r2.contains("POST /upload"), "{r2}");
    assert!(r2.contains("len=11 body=hello world"), "{r2}");
    // 3: a chunked response comes back whole.
    s.write_all(format!("GET http://web.test:{port}/chunked HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut s3 = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&s3).contains("0\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        assert!(n > 0, "connection closed early");
        s3.extend_from_slice(&buf[..n]);
    }
    let r3 = String::from_utf8_lossy(&s3);
    assert!(
        r3.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{r3}"
    );
    assert!(r3.contains("one,") && r3.contains("three"), "{r3}");
    assert!(conns.load(Ordering::SeqCst) >= 1);
    drop(s);
    let ev = env
        .wait_event(|e| {
            matches!(&e.detail, Detail::Net { method: Some(m), bytes_up, bytes_down, .. }
                if m == "POST" && *bytes_up > 0 && *bytes_down > 0)
        })
        .await;
    assert_eq!(ev.decision, Decision::Allow);
    assert_eq!(ev.rule.as_deref(), Some("network.allow[0]=web.test"));
    assert_eq!(ev.session.as_deref(), Some("test-session"));
    assert_eq!(net_host(&ev), Some(("web.test", port)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tls_to_an_allowed_name_works_end_to_end() {
    let tls = tls_upstream("tls.test").await;
    let port = tls.addr.port();
    let p = pinned("tls.test", &[port]);
    let env = start(p, Arc::new(StaticResolver::new()), quick_limits(port));
    let (s, resp) = connect(env.proxy, &format!("tls.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let mut tls_stream = tls_connector(&tls.cert, true)
        .connect(ServerName::try_from("tls.test").expect("name"), s)
        .await
        .expect("tls handshake through the tunnel");
    let mut greet = [0u8; 15];
    tls_stream.read_exact(&mut greet).await.expect("greeting");
    assert_eq!(&greet, b"hello from tls\n");
    tls_stream.write_all(b"ping").await.expect("write");
    let mut pong = [0u8; 4];
    tls_stream.read_exact(&mut pong).await.expect("echo");
    assert_eq!(&pong, b"ping");
    drop(tls_stream);
    let ev = env
        .wait_event(|e| net_host(e) == Some(("tls.test", port)))
        .await;
    assert_eq!(ev.decision, Decision::Allow);
    let Detail::Net {
        bytes_up,
        bytes_down,
        method,
        ..
    } = ev.detail
    else {
        unreachable!()
    };
    assert!(
        bytes_up > 100 && bytes_down > 100,
        "{bytes_up} {bytes_down}"
    );
    assert_eq!(method, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_name_is_refused_before_any_dns_lookup_with_a_clear_403() {
    let (dns, asked) = logging_dns().await;
    let echo = echo_upstream().await;
    let port = echo.addr.port();
    let p = policy(&format!(
        r#"allow = ["good.test", "*.wild.test"]
           deny = ["bad.wild.test"]
           allow_private = ["127.0.0.1"]
           [ports]
           "good.test" = [{port}]"#
    ));
    let env = start(p, Arc::new(UdpDnsResolver::new(dns)), quick_limits(1));
    // Allowed: resolved through the logging upstream (proving the log works).
    let (_s, resp) = connect(env.proxy, &format!("good.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(asked
        .lock()
        .expect("lock")
        .contains(&"good.test".to_string()));
    // Denied by the allow list and by deny: 403 with the rule, never looked up.
    let (_s, resp) = connect(env.proxy, "evil.test:443").await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert_eq!(
        header(&resp, "x-airlock-reason"),
        Some("network.allow: no pattern matches")
    );
    assert_eq!(header(&resp, "x-airlock-blame"), Some("policy"));
    assert!(resp.contains("--allow-domain evil.test"), "{resp}");
    assert!(resp.contains("retrying will not help"), "{resp}");
    let resp = raw(env.proxy, b"GET http://bad.wild.test/ HTTP/1.1\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert_eq!(
        header(&resp, "x-airlock-reason"),
        Some("network.deny[0]=bad.wild.test")
    );
    let asked = asked.lock().expect("lock").clone();
    assert!(
        !asked
            .iter()
            .any(|n| n.contains("evil") || n.contains("bad.wild")),
        "denied names reached the resolver: {asked:?}"
    );
    let denied = env.denied();
    assert!(denied
        .iter()
        .any(|e| net_host(e) == Some(("evil.test", 443))));
    assert!(denied.iter().any(|e| matches!(&e.detail,
        Detail::Net { host, method: Some(m), .. } if host == "bad.wild.test" && m == "GET")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_literals_are_refused_in_every_spelling_unless_listed() {
    let echo = echo_upstream().await;
    let port = echo.addr.port();
    let p = policy(&format!(
        r#"allow = ["web.test"]
           allow_private = ["127.0.0.1"]
           [ports]
           "127.0.0.1" = [{port}]"#
    ));
    let env = start(p, Arc::new(StaticResolver::new()), quick_limits(1));
    for target in [
        format!("127.0.0.1:{port}"),
        format!("127.1:{port}"),
        format!("2130706433:{port}"),
        format!("0x7f.0.0.1:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        format!("[::1]:{port}"),
    ] {
        let (_s, resp) = connect(env.proxy, &target).await;
        assert!(resp.starts_with("HTTP/1.1 403"), "{target}: {resp}");
        assert_eq!(
            header(&resp, "x-airlock-reason"),
            Some("network.allow: ip literal not listed"),
            "{target}"
        );
    }
    let resp = raw(
        env.proxy,
        format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 0);
    // Listed: reachable.
    env.egress.reload(policy(&format!(
        r#"allow = ["127.0.0.1"]
           allow_private = ["127.0.0.1"]
           [ports]
           "127.0.0.1" = [{port}]"#
    )));
    let (mut s, resp) = connect(env.proxy, &format!("127.1:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    s.write_all(b"x").await.expect("write");
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.expect("echo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_resolving_to_private_ranges_are_refused_unless_allow_private() {
    let echo = echo_upstream().await;
    let port = echo.addr.port();
    let resolver = StaticResolver::new()
        .with("rebind.test", &[LOCALHOST])
        .with("meta.test", &["169.254.169.254".parse().expect("ip")])
        .with("mapped.test", &["::ffff:10.0.0.1".parse().expect("ip")]);
    let p = policy(&format!(
        r#"allow = ["rebind.test", "meta.test", "mapped.test"]
           [ports]
           "rebind.test" = [{port}]
           "mapped.test" = [{port}]"#
    ));
    let env = start(p, Arc::new(resolver), quick_limits(1));
    let (_s, resp) = connect(env.proxy, &format!("rebind.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    let reason = header(&resp, "x-airlock-reason").expect("reason");
    assert!(
        reason.starts_with("network.allow_private: 127.0.0.1 is loopback"),
        "{reason}"
    );
    assert!(resp.contains("dns rebinding"), "{resp}");
    let resp = raw(
        env.proxy,
        b"GET http://meta.test/latest/meta-data HTTP/1.1\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(resp.contains("cloud metadata"), "{resp}");
    let (_s, resp) = connect(env.proxy, &format!("mapped.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert_eq!(
        echo.accepted.load(Ordering::SeqCst),
        0,
        "nothing reached upstream"
    );
    // The same name with allow_private naming the address: reachable.
    env.egress.reload(policy(&format!(
        r#"allow = ["rebind.test"]
           allow_private = ["127.0.0.0/8"]
           [ports]
           "rebind.test" = [{port}]"#
    )));
    let (_s, resp) = connect(env.proxy, &format!("rebind.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_must_be_present_and_match_the_connect_host() {
    let tls = tls_upstream("tls.test").await;
    let port = tls.addr.port();
    let p = policy(&format!(
        r#"allow = ["tls.test", "other.test"]
           allow_private = ["127.0.0.1"]
           [resolve]
           "tls.test" = "127.0.0.1"
           [ports]
           "tls.test" = [{port}]"#
    ));
    let env = start(p, Arc::new(StaticResolver::new()), quick_limits(port));
    // Mismatch: CONNECT tls.test but SNI other.test (domain fronting).
    let (s, resp) = connect(env.proxy, &format!("tls.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let err = tls_connector(&tls.cert, true)
        .connect(ServerName::try_from("other.test").expect("name"), s)
        .await
        .expect_err("sni mismatch must fail");
    assert!(err.to_string().to_lowercase().contains("access"), "{err}");
    // Missing SNI.
    let (s, _) = connect(env.proxy, &format!("tls.test:{port}")).await;
    tls_connector(&tls.cert, false)
        .connect(ServerName::try_from("tls.test").expect("name"), s)
        .await
        .expect_err("no sni must fail");
    assert_eq!(
        tls.handshakes.load(Ordering::SeqCst),
        0,
        "no handshake reached upstream"
    );
    let denied = env.denied();
    assert!(
        denied
            .iter()
            .any(|e| e.rule.as_deref() == Some("tls.sni: mismatch")),
        "{denied:#?}"
    );
    assert!(denied
        .iter()
        .any(|e| e.rule.as_deref() == Some("tls.sni: missing")));
    // And a matching SNI still works on the same proxy.
    let (s, _) = connect(env.proxy, &format!("tls.test:{port}")).await;
    let mut ok = tls_connector(&tls.cert, true)
        .connect(ServerName::try_from("tls.test").expect("name"), s)
        .await
        .expect("matching sni");
    let mut greet = [0u8; 15];
    ok.read_exact(&mut greet).await.expect("greeting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_default_to_80_and_443() {
    let p = policy(r#"allow = ["web.test"]"#);
    let env = start(p, Arc::new(StaticResolver::new()), quick_limits(1));
    let (_s, resp) = connect(env.proxy, "web.test:22").await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert_eq!(
        header(&resp, "x-airlock-reason"),
        Some("network.ports: default=[80, 443]")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_and_upstream_errors_say_who_failed() {
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_port = dead.local_addr().expect("addr").port();
    drop(dead);
    let p = pinned("dead.test", &[dead_port]);
    let env = start(p, Arc::new(StaticResolver::new()), quick_limits(1));
    let (_s, resp) = connect(env.proxy, &format!("dead.test:{dead_port}")).await;
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    assert_eq!(header(&resp, "x-airlock-blame"), Some("upstream"));
    assert_eq!(header(&resp, "x-airlock-retry"), Some("may-help"));
    let resp = raw(env.proxy, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert_eq!(header(&resp, "x-airlock-blame"), Some("agent"));
    assert!(resp.contains("absolute-form"), "{resp}");
    let resp = raw(env.proxy, b"GET https://dead.test/ HTTP/1.1\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("use CONNECT"), "{resp}");
    let resp = raw(env.proxy, b"CONNECT dead.test HTTP/1.1\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    let resp = raw(env.proxy, b"CONNECT user@dead.test:443 HTTP/1.1\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_upgrade_is_relayed() {
    let (up, _) = http_upstream().await;
    let port = up.port();
    let p = pinned("web.test", &[port]);
    let env = start(p, Arc::new(StaticResolver::new()), quick_limits(1));
    let mut s = tokio::net::TcpStream::connect(env.proxy)
        .await
        .expect("connect");
    s.write_all(
        format!(
            "GET http://web.test:{port}/ws HTTP/1.1\r\nHost: web.test\r\n\
             Connection: Upgrade\r\nUpgrade: echo\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 101"), "{resp}");
    s.write_all(b"frame-1").await.expect("write");
    let mut b = [0u8; 7];
    s.read_exact(&mut b)
        .await
        .expect("echo through the upgrade");
    assert_eq!(&b, b"frame-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_changes_decisions_but_keeps_established_tunnels() {
    let echo = echo_upstream().await;
    let port = echo.addr.port();
    let allow = format!(
        r#"allow = ["echo.test"]
           allow_private = ["127.0.0.1"]
           [resolve]
           "echo.test" = "127.0.0.1"
           [ports]
           "echo.test" = [{port}]"#
    );
    let env = start(
        policy(&allow),
        Arc::new(StaticResolver::new()),
        quick_limits(1),
    );
    let (mut tunnel, resp) = connect(env.proxy, &format!("echo.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    tunnel.write_all(b"before").await.expect("write");
    let mut b = [0u8; 6];
    tunnel.read_exact(&mut b).await.expect("echo");
    env.egress.reload(policy(&format!(
        r#"allow = ["echo.test"]
           deny = ["echo.test"]
           [ports]
           "echo.test" = [{port}]"#
    )));
    let (_s, resp) = connect(env.proxy, &format!("echo.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert_eq!(
        header(&resp, "x-airlock-reason"),
        Some("network.deny[0]=echo.test")
    );
    // The tunnel opened under the old policy still works.
    tunnel.write_all(b"after!").await.expect("write");
    tunnel.read_exact(&mut b).await.expect("echo after reload");
    assert_eq!(&b, b"after!");
    env.egress.reload(policy(&allow));
    let (_s, resp) = connect(env.proxy, &format!("echo.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_egress_closes_listener_and_tunnels() {
    let (env, _echo, port) = echo_behind_egress(&[], |_| quick_limits(1)).await;
    let (mut tunnel, resp) = connect(env.proxy, &format!("echo.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let proxy = env.proxy;
    let Env { egress, .. } = env;
    assert!(egress.is_running());
    egress.shutdown();
    let (_, eof) = read_to_end_timeout(&mut tunnel, Duration::from_secs(3)).await;
    assert!(eof, "the established tunnel must be cut");
    let mut refused = false;
    for _ in 0..50 {
        match tokio::net::TcpStream::connect(proxy).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(
        refused,
        "the proxy port must refuse connections once egress is gone"
    );
}

/// Every refusal, whatever phase decided it (name, port, private address, plain HTTP, DNS), is
/// copied to the denial channel with its rule; allowed exchanges and upstream failures are not;
/// a receiver that stopped reading never holds a refusal up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_copied_to_the_denial_channel_and_nothing_else_is() {
    let echo = echo_upstream().await;
    let port = echo.addr.port();
    let p = policy(&format!(
        r#"allow = ["good.test", "web.test", "private.test"]
           allow_private = ["127.0.0.1"]
           [resolve]
           "good.test" = "127.0.0.1"
           "private.test" = "10.0.0.1"
           [ports]
           "good.test" = [{port}]"#
    ));
    let env = start(p, Arc::new(StaticResolver::new()), quick_limits(1));
    let (_s, resp) = connect(env.proxy, &format!("good.test:{port}")).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let refused = [
        ("evil.test", 443, "network.allow: no pattern matches"),
        ("web.test", 22, "network.ports: default=[80, 443]"),
        ("private.test", 443, "network.allow_private: 10.0.0.1"),
        ("127.0.0.1", 443, "network.allow: ip literal not listed"),
    ];
    for (host, port, _) in refused {
        let (_s, resp) = connect(env.proxy, &format!("{host}:{port}")).await;
        assert!(resp.starts_with("HTTP/1.1 403"), "{host}: {resp}");
    }
    let resp = raw(env.proxy, b"GET http://plain.test/x HTTP/1.1\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    let m = dns_query(env.dns, "dns.test.", hickory_proto::rr::RecordType::A).await;
    assert!(m.answers.is_empty());
    let copies: Vec<AuditEvent> = tokio::task::block_in_place(|| {
        std::iter::from_fn(|| env.denials.recv_timeout(Duration::from_secs(2)).ok())
            .take(6)
            .collect()
    });
    assert_eq!(copies.len(), 6, "{copies:#?}");
    assert!(copies
        .iter()
        .all(|e| e.decision == Decision::Deny && e.session.as_deref() == Some("test-session")));
    for (host, port, rule) in refused {
        assert!(
            copies.iter().any(|e| net_host(e) == Some((host, port))
                && e.rule.as_deref().is_some_and(|r| r.starts_with(rule))),
            "{host}:{port} {rule}: {copies:#?}"
        );
    }
    assert!(copies
        .iter()
        .any(|e| net_host(e) == Some(("plain.test", 80))));
    assert!(copies
        .iter()
        .any(|e| matches!(&e.detail, Detail::Dns { name, .. } if name == "dns.test")));
    // Nothing for the allowed tunnel, even once it has ended and been logged.
    drop(_s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(env.denials.try_recv().is_err());
    // A receiver that stopped reading (channel full, 64): refusals still answered at once.
    let started = std::time::Instant::now();
    for i in 0..100 {
        let (_s, resp) = connect(env.proxy, &format!("flood{i}.test:443")).await;
        assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}
