//! Entry points for the fuzz targets in `fuzz/` (not a stable API). Each takes arbitrary bytes,
//! must never panic, and never touches the network: the fuzzing policy allows one name whose
//! resolution always fails, so every request ends in a local answer.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use airlock_audit::AuditLog;
use airlock_policy::network::NetworkPolicy;
use airlock_policy::NetworkConfig;
use tokio::io::AsyncWriteExt;

use crate::dns::{self, Plan};
use crate::state::Shared;
use crate::{proxy, sni, target, Limits, StaticResolver};

fn fuzz_policy() -> NetworkPolicy {
    let c = NetworkConfig {
        allow: vec!["a.test".into(), "*.wild.test".into(), "10.0.0.1".into()],
        deny: vec!["no.wild.test".into()],
        allow_private: vec!["127.0.0.0/8".into()],
        ..NetworkConfig::default()
    };
    NetworkPolicy::compile(&c).unwrap_or_else(|_| NetworkPolicy::deny_all())
}

struct Harness {
    rt: tokio::runtime::Runtime,
    shared: Arc<Shared>,
}

thread_local! {
    static HARNESS: RefCell<Option<Harness>> = const { RefCell::new(None) };
}

fn harness() -> Option<Harness> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let audit = Arc::new(AuditLog::open("/dev/null").ok()?);
    let limits = Limits {
        header_read_timeout: Duration::from_millis(50),
        client_hello_timeout: Duration::from_millis(50),
        idle_timeout: Duration::from_millis(100),
        ..Limits::default()
    };
    let shared = Arc::new(Shared::new(
        fuzz_policy(),
        audit,
        None,
        Arc::new(StaticResolver::new()),
        limits,
    ));
    Some(Harness { rt, shared })
}

/// Feeds `data` to the proxy as one client connection (request heads, bodies, CONNECT, and
/// whatever follows), and to the request-target parser.
pub fn request_head(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = target::parse_authority(&text, Some(80));
    let _ = target::parse_authority(&text, None);
    HARNESS.with(|h| {
        let mut h = h.borrow_mut();
        if h.is_none() {
            *h = harness();
        }
        let Some(h) = h.as_ref() else { return };
        let shared = h.shared.clone();
        let data = data.to_vec();
        h.rt.block_on(async move {
            let (mut client, server) = tokio::io::duplex(1 << 20);
            let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1);
            let serve = tokio::spawn(proxy::serve_io(server, peer, shared));
            let _ = client.write_all(&data).await;
            let _ = client.shutdown().await;
            let drain = async {
                let mut sink = tokio::io::sink();
                let _ = tokio::io::copy(&mut client, &mut sink).await;
            };
            let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
            serve.abort();
            let _ = serve.await;
        });
    });
}

/// The ClientHello reader: never panics; a complete hello stays complete with more bytes.
pub fn client_hello(data: &[u8]) {
    if let Ok(sni::Hello::Complete { sni }) = sni::parse_client_hello(data) {
        if let Some(name) = sni {
            let _ = airlock_policy::network::Host::parse(&name);
        }
        let mut more = data.to_vec();
        more.extend_from_slice(b"trailing application data");
        assert!(matches!(
            sni::parse_client_hello(&more),
            Ok(sni::Hello::Complete { .. })
        ));
    }
}

/// The push guard's parsers: the update commands at the head of a push body and the packfile
/// after them never panic; a complete head stays the same with more bytes after it.
pub fn git_push(data: &[u8]) {
    use crate::creds::gitpack;
    if let Ok(Some(head)) = gitpack::parse_head(data) {
        let mut more = data.to_vec();
        more.extend_from_slice(b"PACK");
        assert_eq!(gitpack::parse_head(&more), Ok(Some(head.clone())));
        for c in &head.commands {
            let _ = gitpack::refname_ok(&c.refname);
        }
        let _ = gitpack::pack_commits(&data[head.len..]);
    }
    if let Ok(graph) = gitpack::pack_commits(data) {
        for (oid, parents) in &graph {
            for p in parents {
                let _ = gitpack::descends(&graph, oid, p);
            }
        }
    }
}

/// The DNS filter's pure half: every answer it builds must decode as DNS.
pub fn dns_packet(data: &[u8]) {
    let policy = fuzz_policy();
    let decode = |bytes: &[u8]| {
        assert!(
            hickory_proto::op::Message::from_vec(bytes).is_ok(),
            "the filter built an undecodable answer"
        );
    };
    match dns::plan(&policy, data) {
        Plan::Ignore => {}
        Plan::Reply { bytes, .. } => decode(&bytes),
        Plan::Lookup {
            question,
            rule,
            flag,
        } => {
            let ips = vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            ];
            let (bytes, _) = dns::answer(&policy, &question, Ok(ips), rule.clone(), flag.clone());
            decode(&bytes);
            let err = std::io::Error::other("fuzz");
            let (bytes, _) = dns::answer(&policy, &question, Err(err), rule, flag);
            decode(&bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_entry_points_run_on_sample_inputs() {
        request_head(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n");
        request_head(b"CONNECT a.test:443 HTTP/1.1\r\n\r\n\x16\x03\x01");
        request_head(b"\xff\xfe garbage");
        client_hello(&sni::build_client_hello(Some("a.test"), 5));
        client_hello(b"\x16\x03\x01\x00");
        dns_packet(&[
            0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 4, b't', b'e', b's', b't', 0, 0, 1, 0, 1,
        ]);
        dns_packet(b"junk");
    }
}
