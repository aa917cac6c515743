//! Per-request rules (`[[network.rules]]`, `airlock_policy::rules`) applied inside an
//! intercepted tunnel, where each request's method and path are visible: a refused request is
//! answered 403 and never forwarded; every decision is audited with the deciding rule.

use airlock_audit::{AuditEvent, Decision, Detail};
use airlock_policy::network::Host;
use airlock_policy::rules::{RequestRules, RuleRequest, METHOD_OVERRIDE_HEADERS};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use crate::proxy::ProxyBody;
use crate::state::Shared;

/// Decides `method target` to `host` by `rules`: `None` to go on (no rule names the host, or a
/// rule allows it), or the 403 to answer instead. Method-override headers (any case of their
/// names, every value) and a form body are handed to the rules, which judge the request as
/// each method it could be.
pub(crate) fn check(
    shared: &Shared,
    (host, port): (&Host, u16),
    rules: &RequestRules,
    (method, target): (&str, &str),
    headers: &hyper::HeaderMap,
) -> Option<Response<ProxyBody>> {
    let name = host.to_string();
    let overrides = METHOD_OVERRIDE_HEADERS
        .iter()
        .flat_map(|h| headers.get_all(*h).iter())
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    // Rack reads a form from a POST with no content type too (Rack::Request#form_data?).
    let types = headers.get_all(CONTENT_TYPE);
    let form_body = types.iter().any(|v| {
        let t = String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase();
        t.contains("form")
    }) || (types.iter().next().is_none() && method.eq_ignore_ascii_case("POST"));
    let req = RuleRequest {
        method,
        target,
        overrides,
        form_body,
    };
    let verdict = rules.decide_request(&name, &req)?;
    let path = target.split('?').next().unwrap_or(target);
    let reason = if verdict.allow {
        format!("{method} {path} to {name} allowed by {}", verdict.rule)
    } else {
        format!(
            "{method} {path} to {name} refused by {}; change [[network.rules]] if the agent \
             needs it",
            verdict.rule
        )
    };
    let decision = if verdict.allow {
        Decision::Allow
    } else {
        Decision::Deny
    };
    let ev = AuditEvent::now(
        decision,
        Detail::Net {
            host: name.clone(),
            port,
            method: Some(method.to_string()),
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0,
        },
    )
    .rule(verdict.rule.clone())
    .reason(reason.clone());
    shared.record(ev, Some(&format!("net-rule:{}:{name}", verdict.rule)));
    if verdict.allow {
        return None;
    }
    tracing::debug!(host = %name, "{reason}");
    let body = http_body_util::Full::new(Bytes::from(format!("airlock: {reason}\n")))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::FORBIDDEN;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&verdict.rule) {
        h.insert("x-airlock-reason", v);
    }
    h.insert("x-airlock-blame", HeaderValue::from_static("policy"));
    Some(resp)
}
