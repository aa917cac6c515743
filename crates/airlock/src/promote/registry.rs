//! The host side's requests to package registries for their integrity data: `https://` only,
//! verified against the host's roots plus `[tls] extra_roots` (`airlock_net::outbound`), from this process on
//! the host's network (never through a sandbox), each answer read once and kept for the run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;

/// The largest registry answer read, in bytes (the biggest npm abbreviated packuments and
/// crates.io index files are a few MiB).
const MAX_ANSWER: usize = 64 << 20;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What a registry said about one URL.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    Found(Bytes),
    /// 404 or 410: the registry does not have it.
    NotFound,
}

/// A registry client for one promotion.
pub(crate) struct Registry {
    tls: Arc<rustls::ClientConfig>,
    rt: tokio::runtime::Runtime,
    seen: HashMap<(String, &'static str), Result<Answer, String>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// A client trusting the host's roots and `extra`.
    ///
    /// # Errors
    /// A root that is not usable; the runtime cannot start.
    pub(crate) fn new(extra: Vec<rustls::pki_types::CertificateDer<'static>>) -> Result<Registry> {
        Ok(Registry {
            tls: airlock_net::outbound::tls_config(extra)?,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the registry client")?,
            seen: HashMap::new(),
        })
    }

    /// GET `url` (`https://` only) with `accept`; the error says who failed.
    pub(crate) fn get(&mut self, url: &str, accept: &'static str) -> Result<Answer, String> {
        let key = (url.to_string(), accept);
        if let Some(a) = self.seen.get(&key) {
            return a.clone();
        }
        let answer = self.fetch(url, accept);
        self.seen.insert(key, answer.clone());
        answer
    }

    fn fetch(&self, url: &str, accept: &'static str) -> Result<Answer, String> {
        if !url.starts_with("https://") {
            return Err(format!(
                "{url}: integrity data is only read over https:// (a plain answer could be forged)"
            ));
        }
        let request = http::Request::get(url)
            .header(http::header::ACCEPT, accept)
            .header(http::header::USER_AGENT, "airlock-cache-promote")
            .body(Bytes::new())
            .map_err(|e| format!("{url}: {e}"))?;
        let sent = self.rt.block_on(async {
            tokio::time::timeout(
                TIMEOUT,
                airlock_net::outbound::send(&self.tls, request, MAX_ANSWER),
            )
            .await
        });
        let response = match sent {
            Err(_) => return Err(format!("{url}: no answer within {}s", TIMEOUT.as_secs())),
            Ok(Err(e)) => return Err(format!("{url}: {e}")),
            Ok(Ok(r)) => r,
        };
        match response.status().as_u16() {
            200 => Ok(Answer::Found(response.into_body())),
            404 | 410 => Ok(Answer::NotFound),
            s => Err(format!("{url}: the registry answered {s}")),
        }
    }
}
