//! State shared by the proxy and the DNS filter: the current policy (swapped whole on reload),
//! the audit log, the resolver and the limits.

use std::sync::{Arc, RwLock};

use airlock_audit::{AuditEvent, AuditLog};
use airlock_policy::network::NetworkPolicy;

use crate::resolve::Resolve;
use crate::Limits;

#[derive(Debug)]
pub(crate) struct Shared {
    policy: RwLock<Arc<NetworkPolicy>>,
    pub(crate) audit: Arc<AuditLog>,
    pub(crate) session: Option<String>,
    pub(crate) resolver: Arc<dyn Resolve>,
    pub(crate) limits: Limits,
    /// The credential injector, when the session has credentials.
    pub(crate) creds: Option<Arc<crate::creds::Injector>>,
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
            creds: None,
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

    /// Writes an audit event; with a key, through the per-key rate limiter (for anything the
    /// agent can trigger in a loop). A failing audit log is reported, not fatal.
    pub(crate) fn record(&self, mut ev: AuditEvent, limited_key: Option<&str>) {
        if ev.session.is_none() {
            ev.session.clone_from(&self.session);
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
