//! The credential injector (`docs/credentials.md`): the sandbox holds per-session placeholders;
//! for CONNECT tunnels to a credential's hosts the proxy terminates TLS with the session CA
//! ([`SessionCa`]), opens its own verified TLS to the real upstream, swaps placeholder ->
//! secret on the way out (headers, `Basic` credentials, the request target, and bodies when a
//! credential opts in) and secret -> placeholder on the way back (headers and streamed bodies).
//! Other hosts stay plain tunnels. A placeholder seen on its way to a host outside its
//! credential's scope is left alone and audited.

mod ca;
pub(crate) mod gitpack;
pub(crate) mod gitpush;
pub(crate) mod mitm;
mod placeholder;
pub(crate) mod reqrules;
pub(crate) mod swap;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use airlock_policy::git::GitPushPolicy;
use airlock_policy::network::{DomainPattern, Host};
use airlock_policy::rules::RequestRules;
use base64::Engine as _;
use hyper::header::HeaderName;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

pub use ca::SessionCa;
pub use placeholder::placeholder_for;

use swap::Pairs;

/// Token fields of an OAuth token response (RFC 6749 §5.1, OpenID Connect Core §3.1.3.3).
const OAUTH_TOKEN_FIELDS: &[&str] = &["access_token", "refresh_token", "id_token"];

/// Secret/placeholder pairs kept per credential across OAuth rotations.
const MAX_VERSIONS: usize = 8;

/// Path prefix of the reverse-proxy mode on the proxy's own address.
pub const REVERSE_PREFIX: &str = "/airlock/cred/";

/// Errors setting up the credential injector; each names the credential, file or host.
#[derive(Debug, thiserror::Error)]
pub enum CredError {
    #[error("credential {name}: {message}")]
    Invalid { name: String, message: String },
    #[error("[tls] extra_roots: cannot use {path}: {message}; fix the file or remove it from extra_roots")]
    Root { path: PathBuf, message: String },
    #[error("airlock: cannot create the session certificate authority: {0}; this is an airlock bug, retrying will not help")]
    Ca(String),
    #[error("airlock: cannot mint a certificate for {host}: {message}; this is an airlock bug")]
    Leaf { host: String, message: String },
    #[error("no roots to verify credential hosts against: the host has no CA certificates ({0}) and [tls] extra_roots is empty; install ca-certificates or set extra_roots")]
    NoRoots(String),
}

/// The one crypto provider of the whole tree (ring).
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// One credential: a secret, its placeholder, and the hosts it may be sent to.
pub struct Credential {
    name: String,
    /// (secret, placeholder) pairs, oldest first; the last is current. An OAuth refresh adds a
    /// pair; older ones keep being swapped both ways, so a late echo of an old token is
    /// scrubbed too.
    versions: RwLock<Vec<(String, String)>>,
    hosts: Vec<DomainPattern>,
    inject: Option<(HeaderName, String)>,
    /// Headers besides `authorization`, `x-api-key` and `inject`'s that carry the credential.
    headers: Vec<HeaderName>,
    body: bool,
    /// Served in the plain-HTTP reverse-proxy mode at `/airlock/cred/NAME/`.
    reverse: bool,
    /// The field of an OAuth token response (RFC 6749 §5.1: `access_token`, `refresh_token`)
    /// whose new value replaces this credential.
    oauth_field: Option<String>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// A credential with a fresh placeholder. `hosts` are exact names or `*.suffix`;
    /// `inject` is a header name and a value template with `{}` for the secret; `body` turns
    /// on the swap in request bodies.
    pub fn new(
        name: &str,
        secret: &str,
        hosts: &[String],
        inject: Option<(&str, &str)>,
        body: bool,
    ) -> Result<Credential, CredError> {
        let invalid = |message: String| CredError::Invalid {
            name: name.to_string(),
            message,
        };
        if secret.is_empty() {
            return Err(invalid("the secret is empty".into()));
        }
        if secret.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(invalid(
                "the secret contains whitespace or control characters".into(),
            ));
        }
        let hosts = hosts
            .iter()
            .map(|h| DomainPattern::parse(h).map_err(|e| invalid(format!("host '{h}' {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let inject = match inject {
            Some((h, v)) => Some((
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|e| invalid(format!("inject.header '{h}': {e}")))?,
                v.to_string(),
            )),
            None => None,
        };
        Ok(Credential {
            name: name.to_string(),
            versions: RwLock::new(vec![(secret.to_string(), placeholder_for(secret))]),
            hosts,
            inject,
            headers: Vec::new(),
            body,
            reverse: false,
            oauth_field: None,
        })
    }

    /// Adds request headers (names, e.g. `x-goog-api-key`) the placeholder is replaced in,
    /// besides `authorization`, `x-api-key` and the `inject` header. A malformed name is an
    /// error naming it.
    pub fn with_headers(mut self, names: &[String]) -> Result<Credential, CredError> {
        for h in names {
            let name = HeaderName::from_bytes(h.as_bytes()).map_err(|e| CredError::Invalid {
                name: self.name.clone(),
                message: format!("headers: '{h}': {e}"),
            })?;
            self.headers.push(name);
        }
        Ok(self)
    }

    /// Whether request header `name` carries this credential: `authorization` (RFC 9110
    /// §11.6.2; Bearer or Basic), `x-api-key`, its `inject` header or one of its `headers`.
    /// Only there is its placeholder replaced by the secret.
    pub fn carried_in(&self, name: &HeaderName) -> bool {
        *name == hyper::header::AUTHORIZATION
            || name.as_str() == "x-api-key"
            || self.inject.as_ref().is_some_and(|(h, _)| h == name)
            || self.headers.contains(name)
    }

    /// Marks the credential as rotated by OAuth token responses: when a POST to
    /// `…/oauth/token` on one of its hosts answers with `field` (e.g. `access_token`), the new
    /// value becomes the secret, the agent gets a new placeholder in its place, and the
    /// injector's rotation hook is told.
    pub fn rotated_by_oauth_field(mut self, field: &str) -> Credential {
        self.oauth_field = Some(field.to_string());
        self
    }

    /// Serves the credential in the plain-HTTP reverse-proxy mode: requests to
    /// `http://127.0.0.1:PROXY_PORT/airlock/cred/NAME/PATH` inside go to `https://HOST/PATH`,
    /// HOST being its first host (which must be an exact name).
    pub fn reverse_proxy(mut self) -> Result<Credential, CredError> {
        match self.hosts.first() {
            Some(DomainPattern::Exact(_)) => {
                self.reverse = true;
                Ok(self)
            }
            _ => Err(CredError::Invalid {
                name: self.name.clone(),
                message: "reverse_proxy_env needs an exact name (not *.suffix) as the first host"
                    .into(),
            }),
        }
    }

    /// The path prefix of this credential's reverse proxy (under the proxy's address).
    pub fn reverse_path(&self) -> Option<String> {
        self.reverse
            .then(|| format!("{REVERSE_PREFIX}{}", self.name))
    }

    fn versions(&self) -> Vec<(String, String)> {
        self.versions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn current(&self) -> (String, String) {
        self.versions().pop().unwrap_or_default()
    }

    /// Adds a new secret and returns its new placeholder.
    fn rotate(&self, secret: &str) -> String {
        let placeholder = placeholder_for(secret);
        let mut v = self.versions.write().unwrap_or_else(|e| e.into_inner());
        v.push((secret.to_string(), placeholder.clone()));
        // Bounded: an agent refreshing in a loop cannot grow this (old tokens are revoked by
        // then anyway).
        if v.len() > MAX_VERSIONS {
            v.remove(0);
        }
        placeholder
    }

    /// The credential's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The placeholder the sandbox sees (the current one).
    pub fn placeholder(&self) -> String {
        self.current().1
    }

    /// Whether the real value may be sent to `host`.
    pub fn scoped_to(&self, host: &Host) -> bool {
        host.name()
            .is_some_and(|n| self.hosts.iter().any(|p| p.matches(n)))
    }
}

/// Every credential of a session, the session CA, and the TLS configuration used towards real
/// upstreams (the host's roots plus `[tls] extra_roots`).
pub struct Injector {
    creds: Vec<Credential>,
    ca: SessionCa,
    upstream_tls: Arc<ClientConfig>,
    host_roots_pem: String,
    on_rotate: Option<RotateHook>,
    git_push: GitPushPolicy,
    rules: RequestRules,
}

/// One credential's new secret after an OAuth refresh.
#[derive(Clone)]
pub struct Rotation {
    /// The credential's name.
    pub credential: String,
    /// Its new real value (never logged: `Debug` leaves it out).
    pub secret: String,
}

impl std::fmt::Debug for Rotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotation")
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

/// Called with the rotated credentials and the new token's lifetime in seconds.
pub type RotateHook = Box<dyn Fn(&[Rotation], Option<u64>) + Send + Sync>;

impl std::fmt::Debug for Injector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injector")
            .field("creds", &self.creds)
            .finish_non_exhaustive()
    }
}

impl Injector {
    /// Creates the session CA and loads the roots: the host's (`rustls-native-certs`: the
    /// distribution bundle, `SSL_CERT_FILE`/`SSL_CERT_DIR`) plus each PEM file of
    /// `extra_roots`, any of which failing to load is an error naming it.
    pub fn new(
        session: &str,
        creds: Vec<Credential>,
        extra_roots: &[PathBuf],
    ) -> Result<Injector, CredError> {
        let native = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let mut host_roots_pem = String::new();
        for c in native.certs {
            if roots.add(c.clone()).is_ok() {
                host_roots_pem.push_str(&pem_cert(&c));
            }
        }
        for path in extra_roots {
            for c in read_pem_certs(path)? {
                roots.add(c).map_err(|e| CredError::Root {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            }
        }
        if roots.is_empty() {
            let why = native
                .errors
                .first()
                .map_or_else(|| "none found".to_string(), ToString::to_string);
            return Err(CredError::NoRoots(why));
        }
        let mut tls = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| CredError::Ca(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Injector {
            creds,
            ca: SessionCa::new(session)?,
            upstream_tls: Arc::new(tls),
            host_roots_pem,
            on_rotate: None,
            git_push: GitPushPolicy::default(),
            rules: RequestRules::default(),
        })
    }

    /// Sets what pushes to credential hosts may do (`[git] push`; the default allows branches
    /// under `airlock/` only, see `gitpush`).
    pub fn set_git_push(&mut self, policy: GitPushPolicy) {
        self.git_push = policy;
    }

    pub(crate) fn git_push(&self) -> &GitPushPolicy {
        &self.git_push
    }

    /// Sets the per-request rules (`[[network.rules]]`, rule presets) for intercepted hosts.
    pub fn set_request_rules(&mut self, rules: RequestRules) {
        self.rules = rules;
    }

    pub(crate) fn request_rules(&self) -> &RequestRules {
        &self.rules
    }

    /// The session's credentials.
    pub fn credentials(&self) -> &[Credential] {
        &self.creds
    }

    /// The session CA.
    pub fn ca(&self) -> &SessionCa {
        &self.ca
    }

    /// A trust bundle for the sandbox (PEM): the host's roots, then the session CA. It holds
    /// certificates only, never a key or a secret.
    pub fn trust_bundle(&self) -> String {
        format!(
            "{}# airlock session CA: TLS to credential hosts ends at airlock's proxy\n{}",
            self.host_roots_pem,
            self.ca.cert_pem()
        )
    }

    /// Whether CONNECT tunnels to `host` are intercepted (some credential is scoped to it).
    pub fn intercepts(&self, host: &Host) -> bool {
        self.creds.iter().any(|c| c.scoped_to(host))
    }

    /// placeholder -> secret for credentials scoped to `host`; with `body_only`, only those
    /// that opted in to body swaps.
    pub(crate) fn outbound_pairs(&self, host: &Host, body_only: bool) -> Pairs {
        self.creds
            .iter()
            .filter(|c| c.scoped_to(host) && (!body_only || c.body))
            .flat_map(|c| c.versions())
            .map(|(secret, ph)| (ph.into_bytes(), secret.into_bytes()))
            .collect()
    }

    /// Replaces placeholders by secrets in the request headers that carry a credential scoped
    /// to `host` ([`Credential::carried_in`]); every other header is left as is.
    pub(crate) fn swap_request_headers(&self, host: &Host, headers: &mut hyper::HeaderMap) {
        let scoped: Vec<&Credential> = self.creds.iter().filter(|c| c.scoped_to(host)).collect();
        if scoped.is_empty() {
            return;
        }
        for (name, value) in headers.iter_mut() {
            let pairs: Pairs = scoped
                .iter()
                .filter(|c| c.carried_in(name))
                .flat_map(|c| c.versions())
                .map(|(secret, ph)| (ph.into_bytes(), secret.into_bytes()))
                .collect();
            if !pairs.is_empty() {
                swap::swap_header_value(value, &pairs);
            }
        }
    }

    /// Credentials scoped to `host` whose placeholder appears where it is not replaced: in
    /// `target` (path and query) or a header that does not carry it. The caller audits each.
    pub(crate) fn misplaced(
        &self,
        host: &Host,
        headers: &hyper::HeaderMap,
        target: &str,
    ) -> Vec<&str> {
        let mut names = Vec::new();
        for c in self.creds.iter().filter(|c| c.scoped_to(host)) {
            let phs: Vec<Vec<u8>> = c
                .versions()
                .into_iter()
                .map(|(_, p)| p.into_bytes())
                .collect();
            let needles: Vec<&[u8]> = phs.iter().map(Vec::as_slice).collect();
            let in_target = needles.iter().any(|n| swap::contains(target.as_bytes(), n));
            let in_other = headers.keys().filter(|k| !c.carried_in(k)).any(|k| {
                let mut one = hyper::HeaderMap::new();
                for v in headers.get_all(k) {
                    one.append(k.clone(), v.clone());
                }
                !swap::find_in_headers(&one, &needles).is_empty()
            });
            if in_target || in_other {
                names.push(c.name.as_str());
            }
        }
        names
    }

    /// secret -> placeholder for every credential (responses never carry a secret back).
    pub(crate) fn inbound_pairs(&self) -> Pairs {
        self.creds
            .iter()
            .flat_map(|c| c.versions())
            .map(|(secret, ph)| (secret.into_bytes(), ph.into_bytes()))
            .collect()
    }

    /// Credentials whose placeholder appears in `headers` or `target` although they are not
    /// scoped to `host` (or the request is plain HTTP, `plain`): they stay placeholders, and
    /// the caller audits each.
    pub(crate) fn misdirected(
        &self,
        host: &Host,
        plain: bool,
        headers: &hyper::HeaderMap,
        target: &str,
    ) -> Vec<&str> {
        let candidates: Vec<(&str, Vec<u8>)> = self
            .creds
            .iter()
            .filter(|c| plain || !c.scoped_to(host))
            .flat_map(|c| {
                c.versions()
                    .into_iter()
                    .map(move |(_, ph)| (c.name.as_str(), ph.into_bytes()))
            })
            .collect();
        if candidates.is_empty() {
            return Vec::new();
        }
        let needles: Vec<&[u8]> = candidates.iter().map(|(_, p)| p.as_slice()).collect();
        let mut found = swap::find_in_headers(headers, &needles);
        for n in &needles {
            if swap::contains(target.as_bytes(), n) && !found.contains(n) {
                found.push(n);
            }
        }
        let mut names: Vec<&str> = candidates
            .iter()
            .filter(|(_, p)| found.contains(&p.as_slice()))
            .map(|(name, _)| *name)
            .collect();
        names.dedup();
        names
    }

    /// Headers to add for `host`: each scoped credential's `inject` header that the request
    /// does not already carry.
    pub(crate) fn injections(&self, host: &Host) -> Vec<(HeaderName, String)> {
        self.creds
            .iter()
            .filter(|c| c.scoped_to(host))
            .filter_map(|c| {
                c.inject
                    .as_ref()
                    .map(|(h, v)| (h.clone(), v.replace("{}", &c.current().0)))
            })
            .collect()
    }

    /// Applies an OAuth token response from `host`: each credential scoped to it whose
    /// `oauth_field` the response carries as a string is rotated, and the field is replaced by
    /// the new placeholder in `response`; token fields no credential takes over are replaced by
    /// `airlock-withheld-FIELD`. Returns whether `response` changed; the rotation hook (if any)
    /// gets the new secrets.
    pub(crate) fn apply_token_response(
        &self,
        host: &Host,
        response: &mut serde_json::Value,
    ) -> bool {
        let mut rotated = Vec::new();
        for c in self.creds.iter().filter(|c| c.scoped_to(host)) {
            let Some(field) = &c.oauth_field else {
                continue;
            };
            let Some(new) = response
                .get(field)
                .and_then(|v| v.as_str())
                .map(str::to_string)
            else {
                continue;
            };
            if new.is_empty() || new.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                continue;
            }
            let placeholder = c.rotate(&new);
            response[field.as_str()] = serde_json::Value::String(placeholder);
            tracing::info!(credential = %c.name, %host, "credential rotated by an oauth token response");
            rotated.push(Rotation {
                credential: c.name.clone(),
                secret: new,
            });
        }
        // Fail closed: a token no credential takes over would reach the agent as a real
        // secret airlock cannot scrub later; it is withheld instead.
        let mut withheld = false;
        for field in OAUTH_TOKEN_FIELDS {
            let taken = rotated.iter().any(|r| {
                self.creds
                    .iter()
                    .any(|c| c.name == r.credential && c.oauth_field.as_deref() == Some(*field))
            });
            if !taken
                && response
                    .get(*field)
                    .is_some_and(serde_json::Value::is_string)
            {
                response[*field] = serde_json::Value::String(format!("airlock-withheld-{field}"));
                tracing::warn!(%host, field, "token response field withheld: no credential takes it over");
                withheld = true;
            }
        }
        if rotated.is_empty() {
            return withheld;
        }
        let expires_in = response
            .get("expires_in")
            .and_then(serde_json::Value::as_u64);
        if let Some(hook) = &self.on_rotate {
            hook(&rotated, expires_in);
        }
        true
    }

    /// Sets the hook told about rotated credentials (new secrets, and the token lifetime in
    /// seconds when the response gives one), e.g. to write them back to the host's file.
    pub fn on_rotate(&mut self, hook: RotateHook) {
        self.on_rotate = Some(hook);
    }

    /// The upstream host of credential `name`'s reverse proxy, if it has one.
    pub(crate) fn reverse_host(&self, name: &str) -> Option<Host> {
        let c = self.creds.iter().find(|c| c.name == name && c.reverse)?;
        match c.hosts.first()? {
            DomainPattern::Exact(h) => Some(Host::Name(h.clone())),
            DomainPattern::Subdomains(_) => None,
        }
    }

    pub(crate) fn upstream_tls(&self) -> Arc<ClientConfig> {
        self.upstream_tls.clone()
    }
}

/// DER -> PEM.
fn pem_cert(c: &CertificateDer<'_>) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(c.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The certificates of a PEM file; none, or an unreadable file, is an error naming it.
fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CredError> {
    use rustls::pki_types::pem::PemObject;
    let err = |message: String| CredError::Root {
        path: path.to_path_buf(),
        message,
    };
    let data = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(err("holds no PEM certificate".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An injector over `creds` with a fresh CA and an upstream TLS config that trusts nothing
    /// (these tests never connect).
    fn test_injector(creds: Vec<Credential>) -> Injector {
        Injector {
            creds,
            ca: SessionCa::new("t").expect("ca"),
            upstream_tls: Arc::new(
                ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .expect("tls")
                    .with_root_certificates(RootCertStore::empty())
                    .with_no_client_auth(),
            ),
            host_roots_pem: String::new(),
            on_rotate: None,
            git_push: GitPushPolicy::default(),
            rules: RequestRules::default(),
        }
    }

    #[test]
    fn scope_and_pairs() {
        let a = Credential::new(
            "a",
            "sk-a-0123456789abcdef",
            &["api.a.test".into()],
            None,
            false,
        )
        .expect("a");
        let b = Credential::new(
            "b",
            "sk-b-0123456789abcdef",
            &["*.b.test".into()],
            Some(("authorization", "Bearer {}")),
            true,
        )
        .expect("b");
        let (pa, pb) = (a.placeholder(), b.placeholder());
        let inj = test_injector(vec![a, b]);
        let host = |s: &str| Host::parse(s).expect("host");
        assert!(inj.intercepts(&host("api.a.test")));
        assert!(inj.intercepts(&host("x.b.test")));
        assert!(!inj.intercepts(&host("b.test")));
        assert!(!inj.intercepts(&host("evil.test")));
        assert_eq!(inj.outbound_pairs(&host("api.a.test"), false).len(), 1);
        assert!(inj.outbound_pairs(&host("api.a.test"), true).is_empty());
        assert_eq!(
            inj.injections(&host("x.b.test"))[0].1,
            "Bearer sk-b-0123456789abcdef"
        );
        let mut h = hyper::HeaderMap::new();
        h.insert("x-key", pb.parse().expect("hv"));
        assert_eq!(
            inj.misdirected(&host("api.a.test"), false, &h, "/"),
            vec!["b"]
        );
        assert!(inj
            .misdirected(&host("x.b.test"), false, &h, "/")
            .is_empty());
        assert_eq!(
            inj.misdirected(
                &host("x.b.test"),
                false,
                &hyper::HeaderMap::new(),
                &format!("/?k={pa}")
            ),
            vec!["a"]
        );
        assert_eq!(inj.misdirected(&host("x.b.test"), true, &h, "/"), vec!["b"]);
        assert!(!format!("{:?}", inj).contains("0123456789abcdef"));
    }

    #[test]
    fn the_secret_goes_only_into_credential_headers() {
        use base64::Engine as _;
        let secret = "sk-c-0123456789abcdef";
        let c = Credential::new(
            "c",
            secret,
            &["api.c.test".into()],
            Some(("x-inject", "Token {}")),
            false,
        )
        .expect("c")
        .with_headers(&["X-Goog-Api-Key".into()])
        .expect("headers");
        assert!(Credential::new("d", "s", &["d.test".into()], None, false)
            .expect("d")
            .with_headers(&["bad header".into()])
            .is_err_and(|e| e.to_string().contains("bad header")));
        let ph = c.placeholder();
        let inj = test_injector(vec![c]);
        let host = Host::parse("api.c.test").expect("host");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let carried = [
            ("authorization", format!("Bearer {ph}")),
            ("x-api-key", ph.clone()),
            ("x-inject", format!("Token {ph}")),
            ("x-goog-api-key", ph.clone()),
        ];
        for (name, value) in &carried {
            let mut h = hyper::HeaderMap::new();
            h.insert(*name, value.parse().expect("hv"));
            assert!(inj.misplaced(&host, &h, "/").is_empty(), "{name}");
            inj.swap_request_headers(&host, &mut h);
            assert_eq!(h[*name], value.replace(&ph, secret), "{name}");
        }
        let mut h = hyper::HeaderMap::new();
        h.insert(
            "authorization",
            format!("Basic {}", b64(&format!("u:{ph}")))
                .parse()
                .expect("hv"),
        );
        inj.swap_request_headers(&host, &mut h);
        assert_eq!(
            h["authorization"],
            format!("Basic {}", b64(&format!("u:{secret}")))
        );
        // Anywhere else: left as is, reported as misplaced.
        for (name, value) in [
            ("x-foo", ph.clone()),
            ("cookie", format!("s={ph}")),
            ("x-echo", format!("Basic {}", b64(&format!("u:{ph}")))),
            ("proxy-authorization", format!("Bearer {ph}")),
        ] {
            let mut h = hyper::HeaderMap::new();
            h.insert(name, value.parse().expect("hv"));
            assert_eq!(inj.misplaced(&host, &h, "/"), vec!["c"], "{name}");
            inj.swap_request_headers(&host, &mut h);
            assert_eq!(h[name], value.as_str(), "{name}");
        }
        for target in [
            format!("/v1/{ph}"),
            format!("/?k={ph}"),
            format!("/a?x=1&k=z{ph}z"),
        ] {
            assert_eq!(
                inj.misplaced(&host, &hyper::HeaderMap::new(), &target),
                vec!["c"],
                "{target}"
            );
        }
        assert!(inj
            .misplaced(&host, &hyper::HeaderMap::new(), "/v1/x")
            .is_empty());
    }

    #[test]
    fn token_responses_rotate_scoped_credentials_only() {
        let access = Credential::new(
            "a",
            "sk-a-0123456789abcdefghij",
            &["auth.test".into()],
            None,
            false,
        )
        .expect("a")
        .rotated_by_oauth_field("access_token");
        let other = Credential::new(
            "o",
            "sk-o-0123456789abcdefghij",
            &["other.test".into()],
            None,
            false,
        )
        .expect("o")
        .rotated_by_oauth_field("refresh_token");
        let first = access.placeholder();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut inj = test_injector(vec![access, other]);
        let seen2 = seen.clone();
        inj.on_rotate(Box::new(move |r, exp| {
            seen2.lock().expect("lock").push((r.to_vec(), exp));
        }));
        let host = Host::parse("auth.test").expect("host");
        let mut resp = serde_json::json!({
            "access_token": "sk-a-NEW0123456789abcdefgh",
            "refresh_token": "sk-o-NEW0123456789abcdefgh",
            "expires_in": 60
        });
        assert!(inj.apply_token_response(&host, &mut resp));
        let new_ph = resp["access_token"].as_str().expect("str").to_string();
        assert_ne!(new_ph, "sk-a-NEW0123456789abcdefgh");
        assert_ne!(new_ph, first);
        // Not scoped to auth.test, so no credential takes the new refresh token over: it is
        // withheld rather than handed to the agent as a real secret.
        assert_eq!(resp["refresh_token"], "airlock-withheld-refresh_token");
        let calls = seen.lock().expect("lock").clone();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].0[0].credential, "a");
        assert_eq!(calls[0].1, Some(60));
        // Both the old and the new pair are swapped.
        let out = inj.outbound_pairs(&host, false);
        assert!(out
            .iter()
            .any(|(p, s)| p == first.as_bytes() && s == b"sk-a-0123456789abcdefghij"));
        assert!(out
            .iter()
            .any(|(p, s)| p == new_ph.as_bytes() && s == b"sk-a-NEW0123456789abcdefgh"));
        for i in 0..20 {
            inj.creds[0].rotate(&format!("sk-a-LOOP{i:02}456789abcdefghij"));
        }
        assert_eq!(inj.creds[0].versions().len(), MAX_VERSIONS);
    }

    #[test]
    fn bad_extra_roots_name_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let missing = dir.path().join("missing.pem");
        let e =
            Injector::new("t", Vec::new(), std::slice::from_ref(&missing)).expect_err("missing");
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").expect("write");
        let e = Injector::new("t", Vec::new(), std::slice::from_ref(&junk)).expect_err("junk");
        assert!(e.to_string().contains("junk.pem"), "{e}");
    }
}
