//! Approval while the agent waits (`[approvals] mode = "ask"`): a request the allow list or the
//! port rule refused is held while an [`Approver`] asks the user, for at most
//! [`crate::EgressConfig::approval_timeout`]; then it is refused as it would have been. Only
//! those two rules can be lifted: a `deny` entry, the private-range rule (still checked on every
//! address after an approval), the TLS SNI check and the wildcard budget never are.
//!
//! Fail closed: an approver that errs, answers late, or is dropped refuses; nothing is allowed
//! without an answer. An approval "for the session" is kept here (per host and port, across
//! policy reloads) and lifts the proxy's refusal only; the DNS filter follows the policy (an
//! approval "for the project" is written to a policy file and reloaded, so it covers both).

use std::future::Future;
use std::pin::Pin;

/// The user's answer to one held request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Allow the requests held now for this host and port.
    Once,
    /// Allow this host and port for the rest of the session.
    Session,
    /// Refuse, as the policy said.
    Refuse,
}

/// What [`Approver::ask`] returns.
pub type AnswerFuture = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// Asks the user about a refused destination. The future may take as long as it likes: the
/// proxy stops waiting after the approval timeout (dropping it) and refuses.
pub trait Approver: Send + Sync + std::fmt::Debug {
    /// `host` (normalised) and `port` were refused by `rule`.
    fn ask(&self, host: &str, port: u16, rule: &str) -> AnswerFuture;
}

/// Whether a refusal by `rule` may be put to the user: the allow list and the port rule only.
pub fn approvable(rule: &str) -> bool {
    rule.starts_with("network.allow:") || rule.starts_with("network.ports")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_allow_list_and_ports_can_be_lifted() {
        for r in [
            "network.allow: no pattern matches",
            "network.allow: empty (no network)",
            "network.allow: ip literal not listed",
            "network.ports: default=[80, 443]",
            "network.ports[x.test]=[22]",
        ] {
            assert!(approvable(r), "{r}");
        }
        for r in [
            "network.deny[0]=x.test",
            "network.allow_private: 127.0.0.1 is loopback (127.0.0.0/8)",
            "network.allow[0]=x.test",
            "network.refuse_random_labels",
            "network.wildcard_names_max=64 (*.x.test)",
            "tls.sni: mismatch",
            "agent: bad request",
        ] {
            assert!(!approvable(r), "{r}");
        }
    }
}
