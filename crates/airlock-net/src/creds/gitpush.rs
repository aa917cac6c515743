//! The push guard: a smart-HTTP push (`POST …/git-receive-pack`, gitprotocol-http(5)) to a
//! credential host is read before it is forwarded, and every ref update it asks for is checked
//! against `[git] push` ([`GitPushPolicy`]): branches the patterns grant (the default branch only
//! when named exactly: `main`, `master`, and what the server says its `HEAD` is), no tags, no
//! deletion, and no update that is not a proven fast-forward.
//!
//! Fast-forward rule: receive-pack only applies an update whose old id is the ref's current
//! value (it locks the ref with that old value), so the update is a fast-forward exactly when
//! the old id is an ancestor of the new one. The guard proves that from the pushed packfile
//! alone: it decodes the pack's commits (deltas included), and the walk from the new id
//! through their parents must reach the old id. When it cannot (the new commit is already on
//! the server, the path leaves the pushed commits, a SHA-256 repository, a pack over
//! [`MAX_PUSH`]) the update is refused as a possible force-push: conservative, never wrong in
//! the permissive direction.
//!
//! A refused push is answered in git's own protocol (a report-status with `ng REF reason` per
//! ref, in side-band when the client asked for it, plus a `remote:` message), so `git push`
//! prints why; nothing of it reaches the upstream. A head that does not parse is refused.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use airlock_policy::git::GitPushPolicy;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use airlock_audit::{AuditEvent, Decision, Detail};
use airlock_policy::network::Host;

use super::gitpack::{self, Command, Head};
use crate::error::ProxyError;
use crate::proxy::ProxyBody;
use crate::state::Shared;

/// The most of a push body the guard holds to prove fast-forwards (pushes that only create
/// branches stream through without this bound).
pub(crate) const MAX_PUSH: usize = 64 << 20;
/// The most the command section of a push may take.
const MAX_HEAD: usize = 1 << 20;

/// The audit rule of a refused push; the kind follows (`git.push: force`).
pub(crate) const RULE_PUSH: &str = "git.push";

/// Whether a request is a push: any method but GET/HEAD whose path (percent-decoded, any case)
/// names `git-receive-pack`, or whose content type is receive-pack's.
pub(crate) fn is_push(method: &hyper::Method, path: &str, headers: &hyper::HeaderMap) -> bool {
    let by_type = headers.get(CONTENT_TYPE).is_some_and(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .to_ascii_lowercase()
            .contains("receive-pack")
    });
    let by_path = method != hyper::Method::GET
        && method != hyper::Method::HEAD
        && decoded_fully(path)
            .to_ascii_lowercase()
            .contains("receive-pack");
    by_type || by_path
}

/// `path` percent-decoded until decoding changes nothing (a server that decodes twice reads
/// `git-receive%252Dpack` as `git-receive-pack`), at most 8 rounds.
fn decoded_fully(path: &str) -> String {
    let mut s = path.to_string();
    for _ in 0..8 {
        let next = percent_decode(&s);
        if next == s {
            break;
        }
        s = next;
    }
    s
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the guard decided about one push.
pub(crate) enum Verdict {
    /// Forward this body (the bytes read so far, then the rest) upstream; the string lists
    /// the refs for the audit log (empty for a push with no commands).
    Forward(ProxyBody, String),
    /// Answer the agent with this response; nothing goes upstream.
    Refuse(Refusal),
}

/// A refused push: the answer for git and what the audit log records.
pub(crate) struct Refusal {
    /// `git.push: KIND`.
    pub(crate) rule: String,
    /// Every refused ref with its reason.
    pub(crate) reason: String,
    pub(crate) response: Response<ProxyBody>,
}

/// Why one ref update is refused: the rule kind and a message for git's `ng` line.
struct Refused {
    kind: &'static str,
    message: String,
}

/// Reads the push's head from `body`, decides, and either hands back a body to forward or a
/// refusal (after draining the rest of the request, so git reads the answer).
pub(crate) async fn inspect<L, LF>(
    headers: &hyper::HeaderMap,
    mut body: Incoming,
    policy: &GitPushPolicy,
    default_branch: L,
) -> Result<Verdict, hyper::Error>
where
    L: FnOnce() -> LF,
    LF: Future<Output = Result<Option<String>, String>>,
{
    if let Some(enc) = headers.get(CONTENT_ENCODING) {
        if !enc.as_bytes().eq_ignore_ascii_case(b"identity") {
            drain(&mut body).await?;
            return Ok(Verdict::Refuse(refusal(
                None,
                &[],
                "unparsable",
                "airlock: a compressed push body cannot be checked; it was not forwarded".into(),
            )));
        }
    }
    let mut buf = Vec::new();
    let head = loop {
        match gitpack::parse_head(&buf) {
            Ok(Some(h)) => break h,
            Ok(None) if buf.len() > MAX_HEAD => {
                drain(&mut body).await?;
                return Ok(Verdict::Refuse(unparsable(
                    None,
                    "its commands exceed 1 MiB",
                )));
            }
            Ok(None) => {}
            Err(why) => {
                drain(&mut body).await?;
                return Ok(Verdict::Refuse(unparsable(None, &why)));
            }
        }
        match next_data(&mut body).await? {
            Some(d) => buf.extend_from_slice(&d),
            None => {
                return Ok(Verdict::Refuse(unparsable(
                    None,
                    "the body ends inside the commands",
                )));
            }
        }
    };
    let summary = head
        .commands
        .iter()
        .map(|c| format!("{} {}..{}", c.refname, short(&c.old), short(&c.new)))
        .collect::<Vec<_>>()
        .join(", ");
    let mut refused: Vec<(String, Refused)> = Vec::new();
    let mut to_prove: Vec<&Command> = Vec::new();
    for c in &head.commands {
        match check(c, policy) {
            Err(r) => refused.push((c.refname.clone(), r)),
            Ok(true) => to_prove.push(c),
            Ok(false) => {}
        }
    }
    if refused.is_empty() {
        refused = check_default_branch(&head.commands, policy, default_branch).await;
    }
    if refused.is_empty() && to_prove.is_empty() {
        return Ok(Verdict::Forward(resume(buf, body), summary));
    }
    if refused.is_empty() {
        // Updates to prove: the whole pack, bounded.
        while let Some(d) = next_data(&mut body).await? {
            buf.extend_from_slice(&d);
            if buf.len() > MAX_PUSH {
                drain(&mut body).await?;
                let why = format!(
                    "airlock: this push is over {} MiB, too large to prove it is a fast-forward; \
                     push fewer commits at a time",
                    MAX_PUSH >> 20
                );
                for c in &to_prove {
                    refused.push((
                        c.refname.clone(),
                        Refused {
                            kind: "force",
                            message: why.clone(),
                        },
                    ));
                }
                return Ok(Verdict::Refuse(report(&head, refused)));
            }
        }
        let graph = match gitpack::pack_commits(&buf[head.len..]) {
            Ok(g) => g,
            Err(why) => return Ok(Verdict::Refuse(unparsable(Some(&head), &why))),
        };
        for c in to_prove {
            let proven = match (gitpack::oid_from_hex(&c.new), gitpack::oid_from_hex(&c.old)) {
                (Some(new), Some(old)) => gitpack::descends(&graph, &new, &old),
                _ => false,
            };
            if !proven {
                refused.push((
                    c.refname.clone(),
                    Refused {
                        kind: "force",
                        message: format!(
                            "airlock: not a fast-forward of {} as far as the pushed commits show; \
                             force-push is not allowed ([git] push.force)",
                            short(&c.old)
                        ),
                    },
                ));
            }
        }
        if refused.is_empty() {
            return Ok(Verdict::Forward(full(buf), summary));
        }
        return Ok(Verdict::Refuse(report(&head, refused)));
    }
    drain(&mut body).await?;
    Ok(Verdict::Refuse(report(&head, refused)))
}

/// The server's default branch is never granted by a wildcard: when a command names a branch
/// no `branches` entry names exactly, the repository's `HEAD` is asked of the server (`L`); a
/// command on that branch is refused, and so is every such command when the server cannot be
/// asked (fail closed). A server that does not say (an empty repository) leaves the built-in
/// names (`main`, `master`), already refused by [`check`].
async fn check_default_branch<L, LF>(
    commands: &[Command],
    policy: &GitPushPolicy,
    default_branch: L,
) -> Vec<(String, Refused)>
where
    L: FnOnce() -> LF,
    LF: Future<Output = Result<Option<String>, String>>,
{
    let by_wildcard: Vec<(&Command, &str)> = commands
        .iter()
        .filter_map(|c| Some((c, c.refname.strip_prefix("refs/heads/")?)))
        .filter(|(_, b)| !policy.branches.iter().any(|e| e == b))
        .collect();
    if by_wildcard.is_empty() {
        return Vec::new();
    }
    let refuse = |message: String| Refused {
        kind: "default-branch",
        message,
    };
    match default_branch().await {
        Ok(None) => Vec::new(),
        Ok(Some(def)) => by_wildcard
            .into_iter()
            .filter(|(_, b)| *b == def)
            .map(|(c, b)| {
                let m = format!(
                    "airlock: pushing to the default branch {b} is not allowed (only a [git] \
                     push.branches entry naming it exactly allows it)"
                );
                (c.refname.clone(), refuse(m))
            })
            .collect(),
        Err(why) => by_wildcard
            .into_iter()
            .map(|(c, _)| {
                let m = format!(
                    "airlock: could not learn the repository's default branch ({why}), so a \
                     branch pattern cannot grant this push"
                );
                (c.refname.clone(), refuse(m))
            })
            .collect(),
    }
}

/// Asks the server which branch its `HEAD` is (the upload-pack ref advertisement, with the
/// push's own host and credentials), through `send`: the tunnel's upstream connection.
async fn ask_default_branch<F, Fut>(
    send: F,
    parts: &hyper::http::request::Parts,
) -> Result<Option<String>, String>
where
    F: FnOnce(hyper::Request<ProxyBody>) -> Fut,
    Fut: Future<Output = Result<Response<Incoming>, ProxyError>>,
{
    const MAX_ADVERTISEMENT: usize = 8 << 20;
    let base = parts
        .uri
        .path()
        .strip_suffix("/git-receive-pack")
        .ok_or("the push's path does not end in /git-receive-pack")?;
    let mut req = hyper::Request::get(format!("{base}/info/refs?service=git-upload-pack"))
        .body(full(Vec::new()))
        .map_err(|e| e.to_string())?;
    for name in [hyper::header::HOST, hyper::header::AUTHORIZATION] {
        if let Some(v) = parts.headers.get(&name) {
            req.headers_mut().insert(name, v.clone());
        }
    }
    let h = req.headers_mut();
    h.insert(
        hyper::header::USER_AGENT,
        HeaderValue::from_static("git/airlock-push-guard"),
    );
    h.insert(
        hyper::header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    let resp = send(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("its ref advertisement answered {}", resp.status()));
    }
    let body = http_body_util::Limited::new(resp.into_body(), MAX_ADVERTISEMENT)
        .collect()
        .await
        .map_err(|e| format!("reading its ref advertisement: {e}"))?
        .to_bytes();
    Ok(gitpack::advertised_head(&body))
}

/// One command against the policy: `Ok(true)` when it is allowed only if proven a
/// fast-forward, `Ok(false)` when allowed as is.
fn check(c: &Command, p: &GitPushPolicy) -> Result<bool, Refused> {
    let refuse = |kind, message: String| Err(Refused { kind, message });
    if !gitpack::refname_ok(&c.refname) {
        return refuse("ref", "airlock: not a valid ref name".into());
    }
    let (create, delete) = (Command::is_zero(&c.old), Command::is_zero(&c.new));
    if let Some(branch) = c.refname.strip_prefix("refs/heads/") {
        if !p.grants_branch(branch) {
            if airlock_policy::git::DEFAULT_BRANCH_NAMES.contains(&branch) {
                return refuse(
                    "default-branch",
                    format!(
                        "airlock: pushing to the default branch {branch} is not allowed (only \
                         a [git] push.branches entry naming it exactly allows it)"
                    ),
                );
            }
            return refuse(
                "branch",
                format!(
                    "airlock: the agent may only push branches matching {} ([git] push.branches)",
                    p.branches.join(", ")
                ),
            );
        }
    } else if c.refname.starts_with("refs/tags/") {
        if !p.tags {
            return refuse(
                "tag",
                "airlock: pushing tags is not allowed ([git] push.tags)".into(),
            );
        }
        if !create && !delete && !p.force {
            return refuse(
                "force",
                "airlock: moving an existing tag is a force-push, not allowed ([git] push.force)"
                    .into(),
            );
        }
    } else {
        return refuse(
            "ref",
            "airlock: only branches (refs/heads/) and tags (refs/tags/) may be pushed".into(),
        );
    }
    if delete {
        if create {
            return refuse("ref", "airlock: an update from nothing to nothing".into());
        }
        if !p.delete {
            return refuse(
                "delete",
                "airlock: deleting refs is not allowed ([git] push.delete)".into(),
            );
        }
        return Ok(false);
    }
    Ok(!create && !p.force)
}

fn short(hex: &str) -> &str {
    hex.get(..12).unwrap_or(hex)
}

/// A push whose head or pack could not be read: every command (if known) refused.
fn unparsable(head: Option<&Head>, why: &str) -> Refusal {
    let message = format!("airlock: the push could not be checked ({why}); it was not forwarded");
    let reasons: Vec<(String, String)> = head
        .map(|h| {
            h.commands
                .iter()
                .map(|c| (c.refname.clone(), message.clone()))
                .collect()
        })
        .unwrap_or_default();
    refusal(head, &reasons, "unparsable", message)
}

/// Runs the guard on one request inside an intercepted tunnel and audits the decision: the
/// body to forward, or the answer to give the agent instead.
pub(crate) async fn guard<F, Fut>(
    shared: &Shared,
    (host, port): (&Host, u16),
    policy: &GitPushPolicy,
    parts: &hyper::http::request::Parts,
    body: Incoming,
    send: F,
) -> Result<Result<ProxyBody, Response<ProxyBody>>, ProxyError>
where
    F: FnOnce(hyper::Request<ProxyBody>) -> Fut,
    Fut: Future<Output = Result<Response<Incoming>, ProxyError>>,
{
    let lookup = || ask_default_branch(send, parts);
    let verdict = inspect(&parts.headers, body, policy, lookup)
        .await
        .map_err(|e| ProxyError::BadRequest(format!("reading the push from the agent: {e}")))?;
    let (decision, rule, reason, out) = match verdict {
        Verdict::Forward(b, summary) => (
            Decision::Allow,
            RULE_PUSH.to_string(),
            format!("push forwarded: {summary}"),
            Ok(b),
        ),
        Verdict::Refuse(r) => (Decision::Deny, r.rule, r.reason, Err(r.response)),
    };
    tracing::info!(%host, %rule, "{reason}");
    // Allowed and refused pushes are limited apart, so a flood of one does not hide the other.
    let key = rule.clone();
    let ev = AuditEvent::now(
        decision,
        Detail::Net {
            host: host.to_string(),
            port,
            method: Some("POST".into()),
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0,
        },
    )
    .rule(rule)
    .reason(reason);
    shared.record(ev, Some(&format!("git-push:{host}:{key}")));
    Ok(out)
}

fn report(head: &Head, refused: Vec<(String, Refused)>) -> Refusal {
    let kind = refused.first().map_or("ref", |(_, r)| r.kind);
    let reasons: Vec<(String, String)> = refused
        .into_iter()
        .map(|(name, r)| (name, r.message))
        .collect();
    let reason = reasons
        .iter()
        .map(|(n, m)| format!("{n}: {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    refusal(Some(head), &reasons, kind, reason)
}

/// The answer to a refused push. With `report-status` (v1 or v2) it is a receive-pack result:
/// `unpack ok`, `ng REF REASON` for every command (refused ones with their reason, the others
/// because the push is refused whole), a flush; inside side-band channel 1 when the client
/// negotiated `side-band-64k` or `side-band`, after a channel-2 message git prints as
/// `remote: …`. Without a head (unparsable) or report-status, a 403 with the reason.
fn refusal(
    head: Option<&Head>,
    reasons: &[(String, String)],
    kind: &str,
    reason: String,
) -> Refusal {
    let rule = format!("{RULE_PUSH}: {kind}");
    let reports = head.filter(|h| {
        !h.commands.is_empty() && (h.has_cap("report-status") || h.has_cap("report-status-v2"))
    });
    let Some(head) = reports else {
        let mut resp = Response::new(full(format!("{reason}\n").into_bytes()));
        *resp.status_mut() = StatusCode::FORBIDDEN;
        set(&mut resp, CONTENT_TYPE, "text/plain; charset=utf-8");
        set_reason(&mut resp, &rule);
        return Refusal {
            rule,
            reason,
            response: resp,
        };
    };
    let mut status = pkt(b"unpack ok\n");
    for c in &head.commands {
        let why = reasons
            .iter()
            .find(|(n, _)| n == &c.refname)
            .map_or("airlock: another ref in this push was refused", |(_, m)| {
                m.as_str()
            });
        status.extend(pkt(
            format!("ng {} {}\n", c.refname, one_line(why)).as_bytes()
        ));
    }
    status.extend_from_slice(b"0000");
    let band = if head.has_cap("side-band-64k") {
        Some(65515)
    } else if head.has_cap("side-band") {
        Some(995)
    } else {
        None
    };
    let body = match band {
        None => status,
        Some(max) => {
            let mut out = Vec::new();
            if !head.has_cap("quiet") {
                let msg = format!("airlock: push refused: {}\n", one_line(&reason));
                for piece in msg.as_bytes().chunks(max) {
                    out.extend(pkt(&[&[2u8][..], piece].concat()));
                }
            }
            for piece in status.chunks(max) {
                out.extend(pkt(&[&[1u8][..], piece].concat()));
            }
            out.extend_from_slice(b"0000");
            out
        }
    };
    let mut resp = Response::new(full(body));
    set(
        &mut resp,
        CONTENT_TYPE,
        "application/x-git-receive-pack-result",
    );
    set(&mut resp, CACHE_CONTROL, "no-cache");
    set_reason(&mut resp, &rule);
    Refusal {
        rule,
        reason,
        response: resp,
    }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn set(resp: &mut Response<ProxyBody>, name: hyper::header::HeaderName, value: &'static str) {
    resp.headers_mut()
        .insert(name, HeaderValue::from_static(value));
}

fn set_reason(resp: &mut Response<ProxyBody>, rule: &str) {
    if let Ok(v) = HeaderValue::from_str(rule) {
        resp.headers_mut().insert("x-airlock-reason", v);
    }
}

fn pkt(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:04x}", data.len() + 4).into_bytes();
    out.extend_from_slice(data);
    out
}

fn full(b: Vec<u8>) -> ProxyBody {
    http_body_util::Full::new(Bytes::from(b))
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The next data frame's bytes; trailers are skipped.
async fn next_data(body: &mut Incoming) -> Result<Option<Bytes>, hyper::Error> {
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame?.into_data() {
            return Ok(Some(d));
        }
    }
    Ok(None)
}

/// Reads and discards the rest of a refused push, so the client, which sends the whole body
/// before it reads, gets the answer instead of a reset.
async fn drain(body: &mut Incoming) -> Result<(), hyper::Error> {
    while next_data(body).await?.is_some() {}
    Ok(())
}

/// The bytes read so far, then the rest of the request body as it arrives.
fn resume(read: Vec<u8>, rest: Incoming) -> ProxyBody {
    Resumed {
        read: Some(Bytes::from(read)),
        rest,
    }
    .boxed_unsync()
}

struct Resumed {
    read: Option<Bytes>,
    rest: Incoming,
}

impl Body for Resumed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(b) = self.read.take() {
            if !b.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.read.as_ref().is_none_or(Bytes::is_empty) && self.rest.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const Z: &str = "0000000000000000000000000000000000000000";

    fn cmd(old: &str, new: &str, r: &str) -> Command {
        Command {
            old: old.into(),
            new: new.into(),
            refname: r.into(),
        }
    }

    fn kind(c: Command, p: &GitPushPolicy) -> Result<bool, &'static str> {
        check(&c, p).map_err(|r| r.kind)
    }

    #[test]
    fn default_policy() {
        let p = GitPushPolicy::default();
        assert_eq!(kind(cmd(Z, A, "refs/heads/airlock/x"), &p), Ok(false));
        assert_eq!(kind(cmd(A, B, "refs/heads/airlock/x"), &p), Ok(true));
        assert_eq!(kind(cmd(A, Z, "refs/heads/airlock/x"), &p), Err("delete"));
        assert_eq!(
            kind(cmd(Z, A, "refs/heads/main"), &p),
            Err("default-branch")
        );
        assert_eq!(
            kind(cmd(A, B, "refs/heads/master"), &p),
            Err("default-branch")
        );
        assert_eq!(kind(cmd(Z, A, "refs/heads/feature"), &p), Err("branch"));
        assert_eq!(kind(cmd(Z, A, "refs/tags/v1"), &p), Err("tag"));
        assert_eq!(kind(cmd(Z, A, "refs/notes/commits"), &p), Err("ref"));
        assert_eq!(
            kind(cmd(Z, A, "refs/heads/airlock/../main"), &p),
            Err("ref")
        );
        assert_eq!(kind(cmd(Z, A, "HEAD"), &p), Err("ref"));
        assert_eq!(kind(cmd(Z, Z, "refs/heads/airlock/x"), &p), Err("ref"));
    }

    #[test]
    fn widened_policy() {
        let mut p = GitPushPolicy::default();
        p.merge(&airlock_policy::git::GitPushConfig {
            branches: vec!["main".into()],
            force: Some(true),
            tags: Some(true),
            delete: Some(true),
        });
        assert_eq!(kind(cmd(A, B, "refs/heads/main"), &p), Ok(false));
        assert_eq!(kind(cmd(A, Z, "refs/heads/airlock/x"), &p), Ok(false));
        assert_eq!(kind(cmd(Z, A, "refs/tags/v1"), &p), Ok(false));
        assert_eq!(kind(cmd(A, B, "refs/tags/v1"), &p), Ok(false));
        assert_eq!(kind(cmd(Z, A, "refs/heads/other"), &p), Err("branch"));
    }

    #[test]
    fn pushes_are_recognised_however_spelled() {
        let h = hyper::HeaderMap::new();
        let post = hyper::Method::POST;
        for path in [
            "/r.git/git-receive-pack",
            "/r.git/GIT-RECEIVE-PACK",
            "/r.git/git%2dreceive-pack",
            "/r.git/git-receive%2Dpack",
            "/r.git/git-receive%252Dpack",
            "/r.git/git%25252Dreceive-pack",
            "/r.git/git-receive-pack;x=1",
        ] {
            assert!(is_push(&post, path, &h), "{path}");
        }
        assert!(is_push(&hyper::Method::PUT, "/r.git/git-receive-pack", &h));
        assert!(!is_push(&post, "/r.git/git-upload-pack", &h));
        assert!(!is_push(&hyper::Method::GET, "/r.git/info/refs", &h));
        let mut t = hyper::HeaderMap::new();
        t.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-git-receive-pack-request"),
        );
        assert!(is_push(&post, "/anything", &t));
    }

    #[test]
    fn report_status_in_side_band() {
        let head = Head {
            commands: vec![
                cmd(Z, A, "refs/heads/main"),
                cmd(Z, A, "refs/heads/airlock/x"),
            ],
            caps: vec!["report-status".into(), "side-band-64k".into()],
            len: 0,
        };
        let r = report(
            &head,
            vec![(
                "refs/heads/main".into(),
                Refused {
                    kind: "default-branch",
                    message: "airlock: no".into(),
                },
            )],
        );
        assert_eq!(r.rule, "git.push: default-branch");
        assert_eq!(
            r.response.headers()[CONTENT_TYPE],
            "application/x-git-receive-pack-result"
        );
        let _ = B;
    }
}
