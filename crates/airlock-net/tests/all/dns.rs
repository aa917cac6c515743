//! The DNS filter over real UDP and TCP sockets, with a logging DNS server as the upstream:
//! allowed names answered, denied names answered NXDOMAIN and never forwarded, private answers
//! refused, random labels flagged or refused, garbage survived, reload honoured.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use airlock_audit::{Decision, Detail};
use airlock_net::UdpDnsResolver;
use common::*;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_names_answer_and_denied_names_never_reach_upstream() {
    let (upstream, asked) = logging_dns().await;
    let p = policy(
        r#"allow = ["good.test", "*.wild.test", "pinned.test"]
           deny = ["bad.wild.test"]
           allow_private = ["127.0.0.1"]
           [resolve]
           "pinned.test" = "127.0.0.1""#,
    );
    let env = start(p, Arc::new(UdpDnsResolver::new(upstream)), quick_limits(1));
    let m = dns_query(env.dns, "good.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.metadata.id, 0x4242);
    assert_eq!(a_records(&m), vec![LOCALHOST]);
    let m = dns_query(env.dns, "api.wild.test.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![LOCALHOST]);
    // Pinned names are answered without asking upstream.
    let m = dns_query(env.dns, "pinned.test.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![LOCALHOST]);
    for denied in ["evil.test.", "bad.wild.test.", "wild.test.", "x.evil.test."] {
        let m = dns_query(env.dns, denied, RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{denied}");
        assert!(m.answers.is_empty());
    }
    // TXT for an allowed name: empty, and not forwarded either.
    let m = dns_query(env.dns, "good.test.", RecordType::TXT).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    let asked = asked.lock().expect("lock").clone();
    assert!(asked.contains(&"good.test".to_string()), "{asked:?}");
    assert!(!asked.contains(&"pinned.test".to_string()), "{asked:?}");
    assert!(
        !asked
            .iter()
            .any(|n| n.contains("evil") || n.starts_with("bad.") || n == "wild.test"),
        "denied names were forwarded: {asked:?}"
    );
    assert_eq!(
        asked.iter().filter(|n| *n == "good.test").count(),
        2,
        "A and AAAA lookups for the A query only; TXT not forwarded: {asked:?}"
    );
    let events = env.events();
    assert!(events.iter().any(|e| e.decision == Decision::Deny
        && matches!(&e.detail, Detail::Dns { name, .. } if name == "evil.test")));
    assert!(events.iter().any(|e| e.decision == Decision::Allow
        && e.rule.as_deref() == Some("network.allow[0]=good.test")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_answers_are_refused_without_allow_private() {
    let (upstream, _) = logging_dns().await;
    let env = start(
        policy(r#"allow = ["good.test"]"#),
        Arc::new(UdpDnsResolver::new(upstream)),
        quick_limits(1),
    );
    let m = dns_query(env.dns, "good.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty());
    let ev = env.wait_event(|e| e.decision == Decision::Deny).await;
    assert!(ev
        .rule
        .as_deref()
        .unwrap_or_default()
        .starts_with("network.allow_private: 127.0.0.1 is loopback"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_labels_under_wildcards_are_flagged_and_optionally_refused() {
    let (upstream, asked) = logging_dns().await;
    let p = policy(
        r#"allow = ["*.wild.test"]
           allow_private = ["127.0.0.1"]"#,
    );
    let env = start(p, Arc::new(UdpDnsResolver::new(upstream)), quick_limits(1));
    let exfil = "4a6f686e20446f652070617373776f7264.wild.test.";
    let m = dns_query(env.dns, exfil, RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let ev = env
        .wait_event(|e| matches!(&e.detail, Detail::Dns { flag: Some(_), .. }))
        .await;
    assert_eq!(ev.decision, Decision::Allow);
    env.egress.reload(policy(
        r#"allow = ["*.wild.test"]
           allow_private = ["127.0.0.1"]
           refuse_random_labels = true"#,
    ));
    asked.lock().expect("lock").clear();
    let m = dns_query(env.dns, "0badc0ffee0ddf00d1234.wild.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(
        asked.lock().expect("lock").is_empty(),
        "refused name was forwarded"
    );
    // Ordinary names under the wildcard still resolve.
    let m = dns_query(env.dns, "api.wild.test.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![LOCALHOST]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_queries_work_and_garbage_does_not_stop_the_filter() {
    let (upstream, _) = logging_dns().await;
    let p = policy(
        r#"allow = ["good.test"]
           allow_private = ["127.0.0.1"]"#,
    );
    let env = start(p, Arc::new(UdpDnsResolver::new(upstream)), quick_limits(1));
    // Garbage over UDP: short, truncated, a response, random bytes.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    for junk in [
        &b""[..],
        b"x",
        &[0u8; 12],
        &[0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0],
        &[0xff; 600],
    ] {
        sock.send_to(junk, env.dns).await.expect("send");
    }
    let mut formerr = [0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0].to_vec();
    formerr.extend_from_slice(&[63, b'a']);
    sock.send_to(&formerr, env.dns).await.expect("send");
    let mut buf = [0u8; 512];
    // Some of the garbage may be answered too (a bare header gets FORMERR with id 0), in any
    // order: wait for the answer to the malformed query itself.
    let m = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            let (n, _) = sock.recv_from(&mut buf).await.expect("recv");
            if let Ok(m) = Message::from_vec(&buf[..n]) {
                if m.metadata.id == 0xabcd {
                    return m;
                }
            }
        }
    })
    .await
    .expect("a FORMERR answer");
    assert_eq!(m.metadata.id, 0xabcd);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // Still serving over UDP.
    let m = dns_query(env.dns, "good.test.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![LOCALHOST]);
    // TCP: two queries on one connection.
    let mut s = tokio::net::TcpStream::connect(env.dns_tcp)
        .await
        .expect("connect");
    for (name, want) in [
        ("good.test.", ResponseCode::NoError),
        ("evil.test.", ResponseCode::NXDomain),
    ] {
        let mut q = Message::new(7, MessageType::Query, OpCode::Query);
        q.add_query(Query::query(
            Name::from_ascii(name).expect("name"),
            RecordType::A,
        ));
        let bytes = q.to_vec().expect("encode");
        let len = u16::try_from(bytes.len()).expect("len").to_be_bytes();
        s.write_all(&len).await.expect("write");
        s.write_all(&bytes).await.expect("write");
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.expect("len");
        let mut resp = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut resp).await.expect("resp");
        let m = Message::from_vec(&resp).expect("decode");
        assert_eq!(m.metadata.response_code, want, "{name}");
    }
    // A TCP client that sends nothing is dropped after the idle timeout.
    let mut idle = tokio::net::TcpStream::connect(env.dns_tcp)
        .await
        .expect("connect");
    let (_, eof) = read_to_end_timeout(&mut idle, Duration::from_secs(4)).await;
    assert!(eof, "idle dns tcp connection must be closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_changes_dns_decisions() {
    let (upstream, _) = logging_dns().await;
    let env = start(
        policy(
            r#"allow = ["good.test"]
                  allow_private = ["127.0.0.1"]"#,
        ),
        Arc::new(UdpDnsResolver::new(upstream)),
        quick_limits(1),
    );
    let m = dns_query(env.dns, "later.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    env.egress.reload(policy(
        r#"allow = ["good.test", "later.test"]
           allow_private = ["127.0.0.1"]"#,
    ));
    let m = dns_query(env.dns, "later.test.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![LOCALHOST]);
}
