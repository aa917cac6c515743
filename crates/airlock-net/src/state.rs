//! State shared by the proxy and the DNS filter: the current policy (swapped whole on reload),
//! the audit log, the resolver and the limits.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use airlock_audit::{AuditEvent, AuditLog, Decision, Detail};
use airlock_policy::network::{Host, NetworkPolicy, Verdict};

use crate::approval::{approvable, Answer, Approver};
use crate::resolve::Resolve;
use crate::Limits;

#[derive(Debug)]
pub(crate) struct Shared {
    policy: RwLock<Arc<NetworkPolicy>>,
    pub(crate) audit: Arc<AuditLog>,
    pub(crate) session: Option<String>,
    pub(crate) resolver: Arc<dyn Resolve>,
    pub(crate) limits: Limits,
    /// Distinct names used under each wildcard pattern this session (`*.suffix` -> names).
    /// Kept across policy reloads: the budget is the session's, not the policy's.
    wildcard_names: Mutex<HashMap<String, HashSet<String>>>,
    /// The credential injector, when the session has credentials.
    pub(crate) creds: Option<Arc<crate::creds::Injector>>,
    /// Copies of refusals for live notices ([`crate::EgressConfig::denials`]).
    pub(crate) denials: Option<std::sync::mpsc::SyncSender<AuditEvent>>,
    /// Asks the user about refused destinations ([`crate::approval`]).
    pub(crate) approver: Option<Arc<dyn Approver>>,
    pub(crate) approval_timeout: Duration,
    /// Host and port pairs approved for the rest of the session.
    approved: Mutex<HashSet<(String, u16)>>,
    /// Test-only fault injection: the proxy's accept loop panics on its next connection.
    #[cfg(test)]
    pub(crate) panic_on_accept: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub(crate) fn new(
        policy: NetworkPolicy,
        audit: Arc<AuditLog>,
        session: Option<String>,
        resolver: Arc<dyn Resolve>,
        limits: Limits,
    ) -> Self {
        Shared {
            policy: RwLock::new(Arc::new(policy)),
            audit,
            session,
            resolver,
            limits,
            wildcard_names: Mutex::new(HashMap::new()),
            creds: None,
            denials: None,
            approver: None,
            approval_timeout: Duration::from_secs(60),
            approved: Mutex::new(HashSet::new()),
            #[cfg(test)]
            panic_on_accept: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The policy in force now. Callers keep the `Arc` for one decision, so a reload never
    /// changes the rules half-way through one.
    pub(crate) fn policy(&self) -> Arc<NetworkPolicy> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_policy(&self, p: NetworkPolicy) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(p);
    }

    /// Charges an allowed `host` to the budget of the wildcard pattern it falls under
    /// ([`NetworkPolicy::wildcard_budget`]), before anything resolves it. A name seen before
    /// costs nothing; a new one is recorded (one audit event) while the pattern has room, and
    /// refused once it has used `[network] wildcard_names_max` names. The proxy (CONNECT and
    /// plain HTTP) and the DNS filter share the count.
    pub(crate) fn charge_wildcard(
        &self,
        policy: &NetworkPolicy,
        host: &Host,
    ) -> Result<(), Verdict> {
        let (Some(pattern), Host::Name(name)) = (policy.wildcard_budget(host), host) else {
            return Ok(());
        };
        let max = policy.wildcard_names_max();
        let count = {
            let mut all = self
                .wildcard_names
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let names = all.entry(pattern.clone()).or_default();
            if names.contains(name) {
                return Ok(());
            }
            let used = u64::try_from(names.len()).unwrap_or(u64::MAX);
            if used >= max {
                return Err(Verdict {
                    allow: false,
                    rule: format!("network.wildcard_names_max={max} ({pattern})"),
                    reason: format!(
                        "{name} would be a new name under {pattern}, which has used all {max} \
                         distinct names this session allows ([network] wildcard_names_max); \
                         names under a wildcard carry data out in DNS labels"
                    ),
                    hint: Some(format!(
                        "raise [network] wildcard_names_max or add \"{name}\" to [network] allow"
                    )),
                });
            }
            names.insert(name.clone());
            used + 1
        };
        let ev = AuditEvent::now(
            Decision::Info,
            Detail::WildcardName {
                pattern: pattern.clone(),
                name: name.clone(),
                count,
                max,
            },
        )
        .rule(format!("network.wildcard_names_max={max} ({pattern})"))
        .reason(format!(
            "first use of {name}: name {count} of {max} under {pattern}"
        ));
        self.record(ev, None);
        Ok(())
    }

    /// A refusal of `host:port` by `verdict` put to the user ([`crate::approval`]): the allow
    /// verdict if it was approved now or earlier in the session; `None` (refuse) if it cannot be
    /// lifted, there is no approver, the answer is no, or none came in time.
    pub(crate) async fn ask(&self, host: &Host, port: u16, verdict: &Verdict) -> Option<Verdict> {
        if !approvable(&verdict.rule) {
            return None;
        }
        let name = host.to_string();
        let key = (name.clone(), port);
        let allowed = |rule: &str| Verdict {
            allow: true,
            rule: rule.to_string(),
            reason: format!(
                "{host}:{port} approved by the user ({rule}); the policy said: {}",
                verdict.reason
            ),
            hint: None,
        };
        if self.approved_for_session(&key) {
            return Some(allowed("approvals: session"));
        }
        let approver = self.approver.as_ref()?;
        let asked = AuditEvent::now(
            Decision::Ask,
            Detail::Net {
                host: name.clone(),
                port,
                method: None,
                bytes_up: 0,
                bytes_down: 0,
                duration_ms: 0,
            },
        )
        .rule(verdict.rule.clone())
        .reason(format!(
            "held for the user's answer (at most {}s)",
            self.approval_timeout.as_secs()
        ));
        self.record(asked, Some(&format!("ask:{name}:{port}")));
        let answer = tokio::time::timeout(
            self.approval_timeout,
            approver.ask(&name, port, &verdict.rule),
        )
        .await
        .unwrap_or(Answer::Refuse);
        match answer {
            Answer::Once => Some(allowed("approvals: once")),
            Answer::Session => {
                self.approved
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key);
                Some(allowed("approvals: session"))
            }
            Answer::Refuse => None,
        }
    }

    /// Whether `host:port` was approved for the rest of the session.
    pub(crate) fn approved_for_session(&self, key: &(String, u16)) -> bool {
        self.approved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    /// Writes an audit event; with a key, through the per-key rate limiter (for anything the
    /// agent can trigger in a loop). A failing audit log is reported, not fatal. A refusal is
    /// also copied to the denial channel, if any (before the rate limiter: the receiver keeps
    /// its own per-host account).
    pub(crate) fn record(&self, mut ev: AuditEvent, limited_key: Option<&str>) {
        if ev.session.is_none() {
            ev.session.clone_from(&self.session);
        }
        if let (Decision::Deny, Some(tx)) = (ev.decision, &self.denials) {
            // Full (the receiver is behind) or closed: the copy is dropped, the event is not.
            let _ = tx.try_send(ev.clone());
        }
        let r = match limited_key {
            Some(k) => self.audit.append_limited(k, &ev).map(drop),
            None => self.audit.append(&ev),
        };
        if let Err(e) = r {
            tracing::error!("airlock: audit event lost: {e}");
        }
    }
}
