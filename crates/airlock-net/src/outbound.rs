//! The supervisor's own outbound HTTP requests (the telemetry collector, a notification
//! webhook, the Fly Machines API): one HTTP/1.1 exchange per request on a fresh connection
//! (hyper's client connection), plain TCP or rustls with the tree's one crypto provider (ring),
//! verified against the host's roots plus any extra roots. The sandbox never reaches these: they
//! leave from the supervisor, on the host's network.

use std::sync::Arc;

use bytes::Bytes;
use hyper::{Request, Response};

/// An error of one exchange (boxed, as `opentelemetry_http::HttpError` is).
pub type HttpError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the TLS client set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A certificate of the extra roots is not usable as a root.
    #[error("[tls] extra_roots: a certificate is not usable as a root: {0}")]
    BadRoot(rustls::Error),
    /// rustls refused the protocol versions (a build without TLS 1.2/1.3).
    #[error("cannot set up TLS for an outbound request: {0}")]
    Setup(rustls::Error),
}

/// rustls with the tree's provider (ring), the host's roots and `extra`.
///
/// # Errors
/// A certificate of `extra` that is not usable as a root; TLS set-up failing.
pub fn tls_config(
    extra: Vec<rustls::pki_types::CertificateDer<'static>>,
) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    for c in extra {
        roots.add(c).map_err(TlsSetupError::BadRoot)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsSetupError::Setup)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(tls))
}

/// Sends `request` (absolute `http://` or `https://` URI) on a new connection and reads at most
/// `max_answer` bytes of the answer's body. The `Host` header is set from the URI; the caller
/// bounds the time (`tokio::time::timeout`).
///
/// # Errors
/// No host in the URI, name resolution, connect, TLS (an unverified certificate included),
/// HTTP errors, or a body over `max_answer`.
pub async fn send(
    tls: &Arc<rustls::ClientConfig>,
    request: Request<Bytes>,
    max_answer: usize,
) -> Result<Response<Bytes>, HttpError> {
    use http_body_util::BodyExt;
    let (mut parts, body) = request.into_parts();
    let host = parts
        .uri
        .host()
        .ok_or("the URL has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let https = match parts.uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("not an http:// or https:// URL".into()),
    };
    let port = parts.uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let authority = parts
        .uri
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_else(|| host.clone());
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    parts.uri = path.parse()?;
    parts
        .headers
        .insert(hyper::header::HOST, authority.parse()?);
    let req = Request::from_parts(parts, http_body_util::Full::new(body));
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let response = if https {
        let name = rustls::pki_types::ServerName::try_from(host.clone())?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await?;
        exchange(stream, req).await?
    } else {
        exchange(tcp, req).await?
    };
    let (parts, body) = response.into_parts();
    let body = http_body_util::Limited::new(body, max_answer)
        .collect()
        .await?
        .to_bytes();
    Ok(Response::from_parts(parts, body))
}

/// One request on a fresh HTTP/1.1 connection.
async fn exchange<S>(
    stream: S,
    req: Request<http_body_util::Full<Bytes>>,
) -> Result<Response<hyper::body::Incoming>, HttpError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender.send_request(req).await?)
}
