//! The DNS filter: answers A/AAAA for allowlisted names (through the injected resolver or a
//! `[network.resolve]` pin), NXDOMAIN for every other name, and never forwards a query
//! anywhere: other record types for allowed names get an empty answer (TXT, MX, … are
//! exfiltration channels and nothing inside the sandbox needs them, since names reach the
//! network only through the proxy). Queries with random-looking labels under a wildcard are
//! flagged, or refused when `refuse_random_labels` is set. A new name under a wildcard counts
//! against the session's budget for that pattern (`wildcard_names_max`, shared with the proxy)
//! and is refused, before any lookup, once the budget is used up.
//!
//! [`plan`] and [`answer`] are pure (bytes in, bytes and an audit event out); the server loops
//! at the bottom do the I/O.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use airlock_audit::{AuditEvent, Decision, Detail};
use airlock_policy::network::{Host, NetworkPolicy};
use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::state::Shared;

/// TTL of the answers we give: short, so that a reload takes effect quickly.
const TTL: u32 = 30;
/// At most this many addresses per answer (keeps UDP answers under 512 bytes).
const MAX_ANSWERS: usize = 8;

/// A parsed, answerable question.
#[derive(Debug, Clone)]
pub struct Question {
    metadata: Metadata,
    query: Query,
    edns: bool,
    /// The normalised name.
    pub name: String,
    pub qtype: RecordType,
}

/// One audit record of the filter.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsEvent {
    pub decision: Decision,
    pub name: String,
    pub qtype: String,
    pub flag: Option<String>,
    pub rule: String,
    pub reason: String,
}

impl DnsEvent {
    fn to_audit(&self, session: Option<&str>) -> AuditEvent {
        let mut ev = AuditEvent::now(
            self.decision,
            Detail::Dns {
                name: self.name.clone(),
                qtype: self.qtype.clone(),
                flag: self.flag.clone(),
            },
        )
        .rule(self.rule.clone())
        .reason(self.reason.clone());
        ev.session = session.map(str::to_string);
        ev
    }
}

/// What to do with one packet.
#[derive(Debug)]
pub enum Plan {
    /// Not a query we answer (a response, or too short to carry an id): drop it.
    Ignore,
    /// Answer at once.
    Reply {
        bytes: Vec<u8>,
        event: Option<DnsEvent>,
    },
    /// The name is allowed: look up its addresses, then call [`answer`].
    Lookup {
        question: Question,
        rule: String,
        flag: Option<String>,
    },
}

fn respond(
    metadata: &Metadata,
    query: Option<&Query>,
    edns: bool,
    rcode: ResponseCode,
    answers: Vec<Record>,
) -> Vec<u8> {
    let mut m = Message::response(metadata.id, metadata.op_code);
    m.metadata = Metadata::response_from_request(metadata);
    m.metadata.recursion_available = true;
    m.metadata.response_code = rcode;
    if let Some(q) = query {
        m.add_query(q.clone());
    }
    m.add_answers(answers);
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.edns = Some(e);
    }
    m.to_vec().unwrap_or_else(|_| {
        // Cannot happen for the messages built here; answer with a bare SERVFAIL header.
        let id = metadata.id.to_be_bytes();
        vec![id[0], id[1], 0x81, 0x82, 0, 0, 0, 0, 0, 0, 0, 0]
    })
}

fn event(
    decision: Decision,
    name: &str,
    qtype: RecordType,
    flag: Option<String>,
    rule: impl Into<String>,
    reason: impl Into<String>,
) -> Option<DnsEvent> {
    Some(DnsEvent {
        decision,
        name: name.chars().take(255).collect(),
        qtype: qtype.to_string(),
        flag,
        rule: rule.into(),
        reason: reason.into(),
    })
}

/// Decides what to do with one DNS packet (UDP payload or TCP message without its length).
pub fn plan(policy: &NetworkPolicy, packet: &[u8]) -> Plan {
    let msg = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(_) if packet.len() >= 12 && packet[2] & 0x80 == 0 => {
            // A query we cannot parse: FORMERR with its id, nothing else echoed.
            let mut md = Metadata::new(
                u16::from_be_bytes([packet[0], packet[1]]),
                MessageType::Query,
                OpCode::Query,
            );
            md.recursion_desired = packet[2] & 1 == 1;
            return Plan::Reply {
                bytes: respond(&md, None, false, ResponseCode::FormErr, Vec::new()),
                event: None,
            };
        }
        Err(_) => return Plan::Ignore,
    };
    let md = msg.metadata;
    if md.message_type != MessageType::Query {
        return Plan::Ignore;
    }
    let edns = msg.edns.is_some();
    if md.op_code != OpCode::Query {
        return Plan::Reply {
            bytes: respond(
                &md,
                msg.queries.first(),
                edns,
                ResponseCode::NotImp,
                Vec::new(),
            ),
            event: None,
        };
    }
    let [query] = msg.queries.as_slice() else {
        return Plan::Reply {
            bytes: respond(&md, None, edns, ResponseCode::FormErr, Vec::new()),
            event: None,
        };
    };
    let qtype = query.query_type();
    let raw = query.name().to_ascii();
    let reply = |rcode, ev| Plan::Reply {
        bytes: respond(&md, Some(query), edns, rcode, Vec::new()),
        event: ev,
    };
    let host = match Host::parse(&raw) {
        Ok(Host::Name(n)) => n,
        Ok(Host::Ip(_)) | Err(_) => {
            return reply(
                ResponseCode::NXDomain,
                event(
                    Decision::Deny,
                    &raw,
                    qtype,
                    None,
                    "dns: not a host name",
                    "the query name is an address or not a valid host name",
                ),
            );
        }
    };
    if query.query_class() != DNSClass::IN {
        return reply(
            ResponseCode::Refused,
            event(
                Decision::Deny,
                &host,
                qtype,
                None,
                "dns: class not IN",
                "only class IN is answered",
            ),
        );
    }
    let verdict = policy.check_host(&Host::Name(host.clone()));
    if !verdict.allow {
        return reply(
            ResponseCode::NXDomain,
            event(
                Decision::Deny,
                &host,
                qtype,
                None,
                verdict.rule,
                verdict.reason,
            ),
        );
    }
    let flag = policy
        .random_label(&host)
        .map(|l| format!("random-label:{}", l.chars().take(64).collect::<String>()));
    if flag.is_some() && policy.refuses_random_labels() {
        return reply(
            ResponseCode::Refused,
            event(
                Decision::Deny,
                &host,
                qtype,
                flag,
                "network.refuse_random_labels",
                "a label under a wildcard looks like encoded data (dns exfiltration)",
            ),
        );
    }
    if !matches!(qtype, RecordType::A | RecordType::AAAA) {
        return reply(
            ResponseCode::NoError,
            event(
                Decision::Allow,
                &host,
                qtype,
                flag,
                verdict.rule,
                "allowed name; only A and AAAA are answered, nothing is forwarded",
            ),
        );
    }
    Plan::Lookup {
        question: Question {
            metadata: md,
            query: query.clone(),
            edns,
            name: host,
            qtype,
        },
        rule: verdict.rule,
        flag,
    }
}

/// Builds the answer for an allowed question from the lookup's outcome. Every address must
/// pass the private-range rule (DNS rebinding), else the query is refused.
pub fn answer(
    policy: &NetworkPolicy,
    q: &Question,
    ips: io::Result<Vec<IpAddr>>,
    rule: String,
    flag: Option<String>,
) -> (Vec<u8>, DnsEvent) {
    let host = Host::Name(q.name.clone());
    let ev = |decision, rule: String, reason: String, flag: Option<String>| DnsEvent {
        decision,
        name: q.name.clone(),
        qtype: q.qtype.to_string(),
        flag,
        rule,
        reason,
    };
    let ips = match ips {
        Ok(ips) => ips,
        Err(e) => {
            let rcode = if e.kind() == io::ErrorKind::NotFound {
                ResponseCode::NXDomain
            } else {
                ResponseCode::ServFail
            };
            return (
                respond(&q.metadata, Some(&q.query), q.edns, rcode, Vec::new()),
                ev(
                    Decision::Allow,
                    rule,
                    format!("upstream: lookup failed: {e}"),
                    flag,
                ),
            );
        }
    };
    if !ips.is_empty() {
        let v = policy.check_addresses(&host, &ips);
        if !v.allow {
            return (
                respond(
                    &q.metadata,
                    Some(&q.query),
                    q.edns,
                    ResponseCode::Refused,
                    Vec::new(),
                ),
                ev(Decision::Deny, v.rule, v.reason, flag),
            );
        }
    }
    let name = q.query.name().clone();
    let records: Vec<Record> = ips
        .iter()
        .filter_map(|ip| match (ip.to_canonical(), q.qtype) {
            (IpAddr::V4(v4), RecordType::A) => Some(RData::A(A(v4))),
            (IpAddr::V6(v6), RecordType::AAAA) => Some(RData::AAAA(AAAA(v6))),
            _ => None,
        })
        .take(MAX_ANSWERS)
        .map(|rd| Record::from_rdata(name.clone(), TTL, rd))
        .collect();
    let reason = format!("answered {} address(es)", records.len());
    (
        respond(
            &q.metadata,
            Some(&q.query),
            q.edns,
            ResponseCode::NoError,
            records,
        ),
        ev(Decision::Allow, rule, reason, flag),
    )
}

/// Plans, looks up if needed, answers, and writes the audit event.
pub(crate) async fn handle_packet(shared: &Shared, packet: &[u8]) -> Option<Vec<u8>> {
    let policy = shared.policy();
    match plan(&policy, packet) {
        Plan::Ignore => None,
        Plan::Reply { bytes, event } => {
            if let Some(ev) = event {
                log(shared, &ev);
            }
            Some(bytes)
        }
        Plan::Lookup {
            question,
            rule,
            flag,
        } => {
            if let Err(v) = shared.charge_wildcard(&policy, &Host::Name(question.name.clone())) {
                let bytes = respond(
                    &question.metadata,
                    Some(&question.query),
                    question.edns,
                    ResponseCode::Refused,
                    Vec::new(),
                );
                // Rate-limited per pattern: every refused name is new, so a per-name key
                // would not limit a flood.
                let key = format!("dns:deny:{}", v.rule);
                let ev = DnsEvent {
                    decision: Decision::Deny,
                    name: question.name.clone(),
                    qtype: question.qtype.to_string(),
                    flag,
                    rule: v.rule,
                    reason: v.reason,
                };
                shared.record(ev.to_audit(shared.session.as_deref()), Some(&key));
                return Some(bytes);
            }
            let ips = match policy.pinned(&question.name) {
                Some(p) => Ok(p.to_vec()),
                None => tokio::time::timeout(
                    shared.limits.resolve_timeout,
                    shared.resolver.resolve(&question.name),
                )
                .await
                .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))),
            };
            let (bytes, ev) = answer(&policy, &question, ips, rule, flag);
            log(shared, &ev);
            Some(bytes)
        }
    }
}

fn log(shared: &Shared, ev: &DnsEvent) {
    if ev.flag.is_some() {
        tracing::warn!(name = %ev.name, flag = ?ev.flag, "dns query flagged");
    }
    let key = format!("dns:{}:{}", ev.decision.as_str(), ev.name);
    shared.record(ev.to_audit(shared.session.as_deref()), Some(&key));
}

/// Serves DNS over UDP until the task is dropped.
pub(crate) async fn serve_udp(sock: UdpSocket, shared: Arc<Shared>) {
    let sock = Arc::new(sock);
    let sem = Arc::new(Semaphore::new(shared.limits.dns_max_inflight));
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok((n, peer)) => {
                    let Ok(permit) = sem.clone().try_acquire_owned() else {
                        continue; // overloaded: drop, the client retries
                    };
                    let packet = buf[..n].to_vec();
                    let (sock, shared) = (sock.clone(), shared.clone());
                    tasks.spawn(async move {
                        if let Some(resp) = handle_packet(&shared, &packet).await {
                            let _ = sock.send_to(&resp, peer).await;
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::debug!("dns udp receive failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

/// Serves DNS over TCP until the task is dropped.
pub(crate) async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let sem = Arc::new(Semaphore::new(shared.limits.dns_max_tcp));
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let Ok(permit) = sem.clone().try_acquire_owned() else {
                        continue; // over the limit: close at once
                    };
                    let shared = shared.clone();
                    tasks.spawn(async move {
                        serve_tcp_conn(stream, &shared).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!("dns tcp accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

/// Answers length-prefixed DNS messages (RFC 1035 section 4.2.2) on one byte stream until it
/// ends, idles past `header_read_timeout`, or sends something not worth an answer.
pub(crate) async fn serve_tcp_conn<S>(mut stream: S, shared: &Shared)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let idle = shared.limits.header_read_timeout;
    loop {
        let mut len = [0u8; 2];
        let read = async {
            stream.read_exact(&mut len).await?;
            let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut msg).await?;
            Ok::<_, io::Error>(msg)
        };
        let Ok(Ok(msg)) = tokio::time::timeout(idle, read).await else {
            return;
        };
        let Some(resp) = handle_packet(shared, &msg).await else {
            return;
        };
        let Ok(n) = u16::try_from(resp.len()) else {
            return;
        };
        let mut out = n.to_be_bytes().to_vec();
        out.extend_from_slice(&resp);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_policy::NetworkConfig;

    fn policy() -> NetworkPolicy {
        let c = NetworkConfig {
            allow: vec!["allowed.test".into(), "*.wild.test".into()],
            deny: vec!["bad.wild.test".into()],
            ..NetworkConfig::default()
        };
        NetworkPolicy::compile(&c).expect("policy")
    }

    fn query(name: &str, ty: RecordType) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(
            hickory_proto::rr::Name::from_ascii(name).expect("name"),
            ty,
        ));
        m.to_vec().expect("encode")
    }

    fn rcode(bytes: &[u8]) -> ResponseCode {
        Message::from_vec(bytes)
            .expect("decode")
            .metadata
            .response_code
    }

    #[test]
    fn denied_names_get_nxdomain_without_a_lookup() {
        let p = policy();
        for name in ["evil.test.", "bad.wild.test.", "wild.test.", "127.0.0.1."] {
            match plan(&p, &query(name, RecordType::A)) {
                Plan::Reply { bytes, event } => {
                    assert_eq!(rcode(&bytes), ResponseCode::NXDomain, "{name}");
                    assert_eq!(event.expect("event").decision, Decision::Deny);
                }
                other => panic!("{name}: expected a reply, got {other:?}"),
            }
        }
    }

    #[test]
    fn allowed_names_are_looked_up_and_answered() {
        let p = policy();
        let Plan::Lookup {
            question,
            rule,
            flag,
        } = plan(&p, &query("Allowed.Test.", RecordType::A))
        else {
            panic!("expected lookup");
        };
        assert_eq!(question.name, "allowed.test");
        assert_eq!(rule, "network.allow[0]=allowed.test");
        let ips = vec![
            "93.184.216.34".parse().expect("ip"),
            "2606:2800::1".parse().expect("ip"),
        ];
        let (bytes, ev) = answer(&p, &question, Ok(ips), rule, flag);
        let m = Message::from_vec(&bytes).expect("decode");
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1, "only the A record");
        assert_eq!(ev.decision, Decision::Allow);
    }

    #[test]
    fn private_answers_are_refused() {
        let p = policy();
        let Plan::Lookup {
            question,
            rule,
            flag,
        } = plan(&p, &query("allowed.test.", RecordType::A))
        else {
            panic!("expected lookup");
        };
        let (bytes, ev) = answer(
            &p,
            &question,
            Ok(vec!["10.0.0.1".parse().expect("ip")]),
            rule,
            flag,
        );
        assert_eq!(rcode(&bytes), ResponseCode::Refused);
        assert_eq!(ev.decision, Decision::Deny);
        assert!(ev.rule.starts_with("network.allow_private"), "{}", ev.rule);
    }

    #[test]
    fn other_types_get_an_empty_answer_and_random_labels_are_flagged() {
        let p = policy();
        match plan(&p, &query("allowed.test.", RecordType::TXT)) {
            Plan::Reply { bytes, .. } => {
                let m = Message::from_vec(&bytes).expect("decode");
                assert_eq!(m.metadata.response_code, ResponseCode::NoError);
                assert!(m.answers.is_empty());
            }
            other => panic!("expected reply, got {other:?}"),
        }
        match plan(&p, &query("a3f9c2e1b7d04f6a8e2c.wild.test.", RecordType::A)) {
            Plan::Lookup { flag, .. } => assert!(flag.expect("flag").starts_with("random-label:")),
            other => panic!("expected lookup, got {other:?}"),
        }
        let strict = NetworkPolicy::compile(&NetworkConfig {
            allow: vec!["*.wild.test".into()],
            refuse_random_labels: Some(true),
            ..NetworkConfig::default()
        })
        .expect("policy");
        match plan(
            &strict,
            &query("a3f9c2e1b7d04f6a8e2c.wild.test.", RecordType::A),
        ) {
            Plan::Reply { bytes, event } => {
                assert_eq!(rcode(&bytes), ResponseCode::Refused);
                assert_eq!(event.expect("event").rule, "network.refuse_random_labels");
            }
            other => panic!("expected refusal, got {other:?}"),
        }
    }

    #[test]
    fn malformed_packets_get_formerr_or_nothing() {
        let p = policy();
        assert!(matches!(plan(&p, b"short"), Plan::Ignore));
        match plan(&p, &[0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 99]) {
            Plan::Reply { bytes, .. } => {
                assert_eq!(&bytes[..2], &[0xab, 0xcd]);
                assert_eq!(rcode(&bytes), ResponseCode::FormErr);
            }
            other => panic!("expected formerr, got {other:?}"),
        }
    }
}
