//! The per-session certificate authority: generated at start with rcgen, its private key held
//! only in this process's memory (never written anywhere, never sent to the sandbox). Leaf
//! certificates for credential hosts are minted on first use and cached for the session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

use super::CredError;

/// The session CA and its cache of per-host TLS server configurations.
pub struct SessionCa {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
    pem: String,
    leaves: Mutex<HashMap<String, Arc<ServerConfig>>>,
}

impl std::fmt::Debug for SessionCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCa").finish_non_exhaustive()
    }
}

impl SessionCa {
    /// A new CA with a fresh ECDSA P-256 key, named after `session`.
    pub fn new(session: &str) -> Result<SessionCa, CredError> {
        let ca_err = |e: rcgen::Error| CredError::Ca(e.to_string());
        let key = KeyPair::generate().map_err(ca_err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(ca_err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "airlock");
        dn.push(
            DnType::CommonName,
            format!("airlock session {session} credential proxy"),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).map_err(ca_err)?;
        Ok(SessionCa {
            pem: cert.pem(),
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
            leaves: Mutex::new(HashMap::new()),
        })
    }

    /// The CA certificate (PEM), for the sandbox's trust bundle.
    pub fn cert_pem(&self) -> &str {
        &self.pem
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// A TLS server configuration presenting a certificate for `host` (a DNS name or an IP
    /// address), minted on first use and cached. ALPN offers only `http/1.1`.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, CredError> {
        let mut leaves = self.leaves.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = leaves.get(host) {
            return Ok(c.clone());
        }
        let leaf_err = |e: String| CredError::Leaf {
            host: host.to_string(),
            message: e,
        };
        let key = KeyPair::generate().map_err(|e| leaf_err(e.to_string()))?;
        let mut params =
            CertificateParams::new(vec![host.to_string()]).map_err(|e| leaf_err(e.to_string()))?;
        params
            .distinguished_name
            .push(DnType::CommonName, host.to_string());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| leaf_err(e.to_string()))?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| leaf_err(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone(), self.cert.clone()], key_der)
            .map_err(|e| leaf_err(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        leaves.insert(host.to_string(), config.clone());
        Ok(config)
    }
}
