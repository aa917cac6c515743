//! The per-session budget of distinct names under each allowed wildcard
//! (`[network] wildcard_names_max`): names under `*.suffix` reach the resolver, so their labels
//! can carry data out; past the budget a new name is refused before any lookup, whichever way
//! it arrives (CONNECT, plain HTTP, DNS A/AAAA), with a reason naming the pattern and the
//! setting. A counting resolver shows what left.

use crate::common;

use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use airlock_audit::{AuditEvent, Decision, Detail};
use airlock_net::{Resolve, ResolveFuture};
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// Answers every name with 127.0.0.1 and records each name it was asked.
#[derive(Debug, Default)]
struct Counting {
    asked: Mutex<Vec<String>>,
}

impl Counting {
    fn asked(&self) -> Vec<String> {
        self.asked.lock().expect("lock").clone()
    }

    fn asked_for(&self, name: &str) -> bool {
        self.asked().iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

impl Resolve for Counting {
    fn resolve<'a>(&'a self, name: &'a str) -> ResolveFuture<'a> {
        self.asked.lock().expect("lock").push(name.to_string());
        Box::pin(async { Ok::<_, io::Error>(vec![LOCALHOST]) })
    }
}

/// A `[network]` table allowing `patterns` on `port` with 127.0.0.1 reachable.
fn net(patterns: &[&str], port: u16, max: Option<u64>) -> String {
    let allow: Vec<String> = patterns.iter().map(|p| format!("\"{p}\"")).collect();
    let ports: String = patterns
        .iter()
        .map(|p| format!("\"{p}\" = [{port}, 53]\n"))
        .collect();
    let max = max
        .map(|m| format!("wildcard_names_max = {m}\n"))
        .unwrap_or_default();
    format!(
        "allow = [{}]\nallow_private = [\"127.0.0.1\"]\n{max}[ports]\n{ports}",
        allow.join(", ")
    )
}

fn start_with(table: &str) -> (Env, Arc<Counting>) {
    let resolver = Arc::new(Counting::default());
    let env = start(policy(table), resolver.clone(), quick_limits(1));
    (env, resolver)
}

/// What the three ways in report: Ok(()) when let through, Err(reason text) when refused.
async fn via_connect(env: &Env, name: &str, port: u16) -> Result<(), String> {
    let (_s, resp) = connect(env.proxy, &format!("{name}:{port}")).await;
    if resp.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(resp)
    }
}

/// Plain HTTP: let through means the proxy went upstream (the echo upstream does not speak
/// HTTP, so "went upstream" may end in a 502; only a 403 is a refusal).
async fn via_http(env: &Env, name: &str, port: u16) -> Result<(), String> {
    let req = format!("GET http://{name}:{port}/ HTTP/1.1\r\nHost: {name}:{port}\r\n\r\n");
    let resp = raw(env.proxy, req.as_bytes()).await;
    if !resp.starts_with("HTTP/1.1 403") && !resp.is_empty() {
        Ok(())
    } else {
        Err(resp)
    }
}

async fn via_dns(env: &Env, name: &str, ty: RecordType) -> Result<(), String> {
    let m = dns_query(env.dns, &format!("{name}."), ty).await;
    match m.metadata.response_code {
        ResponseCode::NoError => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// A proxy refusal names the pattern and the setting in the header and the body.
fn assert_budget_refusal(resp: &str, pattern: &str) {
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    let reason = header(resp, "x-airlock-reason").unwrap_or_default();
    assert!(
        reason.contains("wildcard_names_max") && reason.contains(pattern),
        "X-Airlock-Reason: {reason}\n{resp}"
    );
    assert!(
        resp.contains("[network] wildcard_names_max") && resp.contains(pattern),
        "{resp}"
    );
}

fn first_seen(events: &[AuditEvent]) -> Vec<(String, String, u64, u64)> {
    events
        .iter()
        .filter_map(|e| match &e.detail {
            Detail::WildcardName {
                pattern,
                name,
                count,
                max,
            } => Some((pattern.clone(), name.clone(), *count, *max)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_past_the_budget_is_refused_before_resolving() {
    let up = echo_upstream().await;
    let port = up.addr.port();
    let (env, resolver) = start_with(&net(&["*.a.test"], port, Some(3)));
    for i in 0..3 {
        via_connect(&env, &format!("n{i}.a.test"), port)
            .await
            .expect("within the budget");
    }
    // Names seen before cost nothing, in any spelling.
    via_connect(&env, "N0.A.Test", port).await.expect("seen");
    via_connect(&env, "n1.a.test.", port).await.expect("seen");
    let resp = via_connect(&env, "n3.a.test", port)
        .await
        .expect_err("over budget");
    assert_budget_refusal(&resp, "*.a.test");
    assert!(!resolver.asked_for("n3.a.test"), "{:?}", resolver.asked());
    let seen = first_seen(&env.events());
    assert_eq!(
        seen,
        (0..3)
            .map(|i| ("*.a.test".to_string(), format!("n{i}.a.test"), i + 1, 3))
            .collect::<Vec<_>>()
    );
    let denied = env
        .wait_event(|e| {
            e.decision == Decision::Deny
                && matches!(&e.detail, Detail::Net { host, .. } if host == "n3.a.test")
        })
        .await;
    assert!(
        denied
            .rule
            .as_deref()
            .is_some_and(|r| r.contains("wildcard_names_max") && r.contains("*.a.test")),
        "{denied:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_past_the_budget_is_refused_before_resolving() {
    let (up, _) = http_upstream().await;
    let port = up.port();
    let (env, resolver) = start_with(&net(&["*.a.test"], port, Some(2)));
    via_http(&env, "x.a.test", port).await.expect("1");
    via_http(&env, "Y.a.TEST", port).await.expect("2");
    via_http(&env, "y.a.test.", port).await.expect("seen");
    let resp = via_http(&env, "z.a.test", port)
        .await
        .expect_err("over budget");
    assert_budget_refusal(&resp, "*.a.test");
    assert!(!resolver.asked_for("z.a.test"), "{:?}", resolver.asked());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_a_and_aaaa_share_the_budget_and_are_refused_before_resolving() {
    let (env, resolver) = start_with(&net(&["*.a.test"], 443, Some(2)));
    via_dns(&env, "d0.a.test", RecordType::A).await.expect("1");
    // The same name in another case, with AAAA: not a new name.
    via_dns(&env, "D0.A.test", RecordType::AAAA)
        .await
        .expect("seen");
    via_dns(&env, "d1.a.test", RecordType::AAAA)
        .await
        .expect("2");
    via_dns(&env, "d1.A.TEST", RecordType::A)
        .await
        .expect("seen");
    for ty in [RecordType::A, RecordType::AAAA] {
        assert_eq!(
            via_dns(&env, "d2.a.test", ty).await,
            Err("Refused".to_string())
        );
    }
    assert!(!resolver.asked_for("d2.a.test"), "{:?}", resolver.asked());
    let seen = first_seen(&env.events());
    assert_eq!(seen.len(), 2, "{seen:?}");
    let ev = env
        .wait_event(|e| {
            e.decision == Decision::Deny
                && matches!(&e.detail, Detail::Dns { name, .. } if name == "d2.a.test")
        })
        .await;
    let rule = ev.rule.unwrap_or_default();
    let reason = ev.reason.unwrap_or_default();
    assert!(
        rule.contains("wildcard_names_max") && rule.contains("*.a.test"),
        "{rule}"
    );
    assert!(reason.contains("[network] wildcard_names_max"), "{reason}");
}

/// One count per session across the proxy and the DNS filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_and_dns_draw_on_one_budget() {
    let up = echo_upstream().await;
    let port = up.addr.port();
    let (env, resolver) = start_with(&net(&["*.a.test"], port, Some(3)));
    via_dns(&env, "m0.a.test", RecordType::A).await.expect("1");
    via_connect(&env, "m1.a.test", port).await.expect("2");
    via_http(&env, "M2.a.test.", port).await.expect("3");
    // Each way in now sees the budget used up.
    assert!(via_dns(&env, "m3.a.test", RecordType::A).await.is_err());
    assert_budget_refusal(
        &via_connect(&env, "m4.a.test", port).await.expect_err("4"),
        "*.a.test",
    );
    assert_budget_refusal(
        &via_http(&env, "m5.a.test", port).await.expect_err("5"),
        "*.a.test",
    );
    // Names already seen still work everywhere.
    via_connect(&env, "m0.a.test", port).await.expect("seen");
    via_dns(&env, "m2.a.test", RecordType::A)
        .await
        .expect("seen");
    for n in ["m3.a.test", "m4.a.test", "m5.a.test"] {
        assert!(!resolver.asked_for(n), "{n}: {:?}", resolver.asked());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_wildcard_pattern_has_its_own_budget() {
    let up = echo_upstream().await;
    let port = up.addr.port();
    let (env, _) = start_with(&net(
        &["*.a.test", "*.b.test", "*.deep.a.test"],
        port,
        Some(2),
    ));
    via_connect(&env, "1.a.test", port).await.expect("a1");
    via_connect(&env, "2.a.test", port).await.expect("a2");
    assert_budget_refusal(
        &via_connect(&env, "3.a.test", port).await.expect_err("a3"),
        "*.a.test",
    );
    via_connect(&env, "1.b.test", port).await.expect("b1");
    via_dns(&env, "2.b.test", RecordType::A).await.expect("b2");
    assert_budget_refusal(
        &via_connect(&env, "3.b.test", port).await.expect_err("b3"),
        "*.b.test",
    );
    // The more specific pattern counts its own names.
    via_connect(&env, "x.deep.a.test", port)
        .await
        .expect("deep1");
    via_connect(&env, "y.deep.a.test", port)
        .await
        .expect("deep2");
    assert_budget_refusal(
        &via_connect(&env, "z.deep.a.test", port)
            .await
            .expect_err("deep3"),
        "*.deep.a.test",
    );
}

/// The budget is the session's: a reload keeps the names counted so far, and applies the new
/// maximum to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_count() {
    let up = echo_upstream().await;
    let port = up.addr.port();
    let (env, resolver) = start_with(&net(&["*.a.test"], port, Some(2)));
    via_connect(&env, "r0.a.test", port).await.expect("1");
    via_dns(&env, "r1.a.test", RecordType::A).await.expect("2");
    // Same rules, reloaded (and another entry, so the policy really changes).
    env.egress
        .reload(policy(&net(&["*.a.test", "other.test"], port, Some(2))));
    assert_budget_refusal(
        &via_connect(&env, "r2.a.test", port).await.expect_err("3"),
        "*.a.test",
    );
    assert!(via_dns(&env, "r2.a.test", RecordType::A).await.is_err());
    // A larger budget: room for exactly one more.
    env.egress
        .reload(policy(&net(&["*.a.test"], port, Some(3))));
    via_connect(&env, "r2.a.test", port).await.expect("3 of 3");
    assert_budget_refusal(
        &via_connect(&env, "r3.a.test", port).await.expect_err("4"),
        "*.a.test",
    );
    assert!(!resolver.asked_for("r3.a.test"));
    // Back to the default: still one count.
    env.egress.reload(policy(&net(&["*.a.test"], port, None)));
    via_connect(&env, "r3.a.test", port).await.expect("4 of 64");
    let seen = first_seen(&env.events());
    assert_eq!(
        seen.iter().map(|s| s.2).collect::<Vec<_>>(),
        vec![1, 2, 3, 4],
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_names_are_not_counted() {
    let up = echo_upstream().await;
    let port = up.addr.port();
    let exact: Vec<String> = (0..5).map(|i| format!("e{i}.a.test")).collect();
    let mut patterns: Vec<&str> = vec!["*.a.test"];
    patterns.extend(exact.iter().map(String::as_str));
    let (env, _) = start_with(&net(&patterns, port, Some(1)));
    via_connect(&env, "w.a.test", port).await.expect("1 of 1");
    assert!(via_dns(&env, "v.a.test", RecordType::A).await.is_err());
    for name in &exact {
        via_connect(&env, name, port).await.expect("exact");
        via_dns(&env, name, RecordType::A).await.expect("exact");
        via_http(&env, name, port).await.expect("exact");
    }
    let seen = first_seen(&env.events());
    assert_eq!(seen.len(), 1, "{seen:?}");
}

/// The default budget (64) holds without any setting: a flood of distinct names under an
/// allowed wildcard reaches the resolver at most 64 times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_budget_bounds_a_flood_of_names() {
    let (env, resolver) = start_with(&net(&["*.a.test"], 443, None));
    let mut refused = 0;
    for i in 0..100 {
        let ty = if i % 2 == 0 {
            RecordType::A
        } else {
            RecordType::AAAA
        };
        if via_dns(&env, &format!("chunk{i:03}.a.test"), ty)
            .await
            .is_err()
        {
            refused += 1;
        }
    }
    let mut distinct: Vec<String> = resolver
        .asked()
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        64,
        "names resolved upstream: {}",
        distinct.len()
    );
    assert_eq!(refused, 36);
    let ips: Vec<IpAddr> = a_records(&dns_query(env.dns, "chunk000.a.test.", RecordType::A).await);
    assert_eq!(ips, vec![LOCALHOST], "a counted name keeps working");
}
