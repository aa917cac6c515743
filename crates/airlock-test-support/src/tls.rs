//! A throw-away certificate authority for tests that stand up TLS servers on loopback (an
//! upstream behind the credential proxy, a git smart-HTTP server, an OTLP collector): one CA per
//! test, leaf certificates for the names the test uses, rustls server configs on the tree's one
//! crypto provider (ring).

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A self-signed CA that signs leaf certificates.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

impl TestCa {
    /// A new CA whose certificate's common name is `name` (shown in TLS errors).
    ///
    /// # Panics
    /// When rcgen cannot make a key or certificate (a test fixture: panics are the report).
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate, PEM (for `[tls] extra_roots` or `SSL_CERT_FILE`).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The CA certificate, DER (for a rustls root store).
    pub fn der(&self) -> CertificateDer<'static> {
        self.der.clone()
    }

    /// A rustls server config presenting a new leaf certificate for `names` (DNS names or IP
    /// addresses), signed by this CA.
    ///
    /// # Panics
    /// When the names are not valid subject alternative names.
    pub fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let leaf = CertificateParams::new(names)
            .expect("leaf params")
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
        Arc::new(config)
    }
}

impl TestCa {
    /// A new leaf certificate for `names` signed by this CA, as PEM (certificate, PKCS#8 key),
    /// for a server in another process (`openssl s_server` in a box).
    ///
    /// # Panics
    /// When the names are not valid subject alternative names.
    pub fn leaf_pem(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let leaf = CertificateParams::new(names)
            .expect("leaf params")
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        (leaf.pem(), key.serialize_pem())
    }
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}
