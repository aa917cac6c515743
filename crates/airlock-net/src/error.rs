//! Errors of the egress services: who failed (agent, upstream, policy, airlock), whether
//! retrying helps, and how each becomes an HTTP answer the agent can act on.

use airlock_policy::network::Verdict;
use hyper::StatusCode;

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The agent sent something malformed or unsupported.
    Agent,
    /// The destination failed (refused, timed out, broke the protocol).
    Upstream,
    /// The policy refused the destination.
    Policy,
    /// airlock itself failed.
    Airlock,
}

impl Blame {
    /// Lowercase name, as used in the `X-Airlock-Blame` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Blame::Agent => "agent",
            Blame::Upstream => "upstream",
            Blame::Policy => "policy",
            Blame::Airlock => "airlock",
        }
    }
}

/// Errors starting or running the egress services.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("airlock: cannot use the {what} socket handed over by the sandbox: {error}; this is an airlock bug, retrying will not help")]
    Socket {
        what: &'static str,
        /// The cause, printed in the message (not a `source()`, so a chain never repeats it).
        error: std::io::Error,
    },
    #[error(
        "airlock: the {service} service stopped ({why}); the sandbox has no network from now on"
    )]
    Died { service: &'static str, why: String },
}

/// One refused or failed proxy request.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("policy: {target} refused: {} (rule {}){}; retrying will not help", .verdict.reason, .verdict.rule, hint(.verdict))]
    Denied { target: String, verdict: Verdict },
    #[error("agent: bad request: {0}; retrying will not help")]
    BadRequest(String),
    #[error("upstream: cannot resolve {host}: {message}; retrying may help")]
    Resolve { host: String, message: String },
    #[error("upstream: cannot connect to {target}: {message}; retrying may help")]
    Connect { target: String, message: String },
    #[error("upstream: {target} did not answer in time ({what}); retrying may help")]
    Timeout { target: String, what: &'static str },
    #[error("upstream: {target} broke the connection: {message}; retrying may help")]
    Upstream { target: String, message: String },
    #[error("upstream: {target} presented a certificate airlock cannot verify ({message}); the credential is not sent to it. If it is signed by a private CA, add that CA to [tls] extra_roots; retrying will not help")]
    UpstreamTls { target: String, message: String },
    #[error("agent: the request names {authority} but its tunnel goes to {target}; airlock sends the credential only to the host the tunnel was opened to (no domain fronting). Open a tunnel to {authority} instead; retrying will not help")]
    Misdirected { target: String, authority: String },
}

fn hint(v: &Verdict) -> String {
    v.hint
        .as_ref()
        .map(|h| format!("; to allow it, {h}"))
        .unwrap_or_default()
}

impl ProxyError {
    /// Who failed.
    pub fn blame(&self) -> Blame {
        match self {
            ProxyError::Denied { .. } => Blame::Policy,
            ProxyError::BadRequest(_) | ProxyError::Misdirected { .. } => Blame::Agent,
            ProxyError::Resolve { .. }
            | ProxyError::Connect { .. }
            | ProxyError::Timeout { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::UpstreamTls { .. } => Blame::Upstream,
        }
    }

    /// Whether retrying the same request may succeed.
    pub fn retryable(&self) -> bool {
        !matches!(self, ProxyError::UpstreamTls { .. })
            && matches!(self.blame(), Blame::Upstream | Blame::Airlock)
    }

    /// The HTTP status the agent gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Denied { .. } => StatusCode::FORBIDDEN,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            // RFC 9110 §15.5.20.
            ProxyError::Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Resolve { .. }
            | ProxyError::Connect { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::UpstreamTls { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// The rule for `X-Airlock-Reason` and the audit log.
    pub fn rule(&self) -> String {
        match self {
            ProxyError::Denied { verdict, .. } => verdict.rule.clone(),
            ProxyError::BadRequest(_) => "agent: bad request".into(),
            ProxyError::Resolve { .. } => "upstream: resolve failed".into(),
            ProxyError::Connect { .. } => "upstream: connect failed".into(),
            ProxyError::Timeout { .. } => "upstream: timeout".into(),
            ProxyError::Upstream { .. } => "upstream: protocol error".into(),
            ProxyError::UpstreamTls { .. } => crate::creds::mitm::RULE_UPSTREAM_TLS.into(),
            ProxyError::Misdirected { .. } => crate::creds::mitm::RULE_HOST.into(),
        }
    }
}
