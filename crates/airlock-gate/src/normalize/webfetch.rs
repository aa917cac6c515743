//! WebFetch: whether a URL is a documentation page that may be read without asking.

use crate::glob::Glob;

use super::Normalizer;

impl Normalizer {
    /// Whether WebFetch may read `url` without asking: https, no credentials or port in the
    /// URL, a short query, and either a documentation host (`webfetch_docs`) or the shape of a
    /// documentation page on any named host: a documentation path segment (`/docs/`,
    /// `/en/stable/`, `/reference/`; a host name alone proves nothing), no query, and no path segment that
    /// could carry data out (long, or a run of base64/hex-looking characters).
    pub fn is_doc_url(&self, url: &str) -> bool {
        let Some(rest) = url.strip_prefix("https://") else {
            return false;
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let host = rest[..end].to_ascii_lowercase();
        let query = rest.split_once('?').map_or("", |(_, q)| q);
        if url.len() > 2048 || query.len() > 200 || host.contains(['@', ':']) || host.is_empty() {
            return false;
        }
        self.webfetch_docs
            .get_or_init(|| {
                let docs = &self.tables.webfetch_docs;
                docs.iter().map(|g| Glob::new(g)).collect()
            })
            .iter()
            .any(|g| g.matches(&host))
            || query.is_empty() && doc_page_shape(&host, &rest[end..])
    }
}

/// Path segments that name documentation (`example.org/docs/…`, `example.org/en/stable/…`).
pub(super) const DOC_WORDS: &[&str] = &[
    "docs",
    "doc",
    "documentation",
    "developer",
    "developers",
    "devdocs",
    "learn",
    "wiki",
    "reference",
    "guide",
    "guides",
    "manual",
    "tutorial",
    "tutorials",
    "how-to",
    "howto",
    "handbook",
    "book",
    "stable",
    "latest",
    "en",
    "en-us",
    "api-reference",
    "faq",
    "blog",
    "getting-started",
    "man",
    "manpages",
    "spec",
    "specs",
    "rfc",
];

/// Whether a URL on `host` with `path` (from the first `/`, `#…` allowed, no query) looks like a
/// documentation page rather than a channel for data: a named host (not an IP literal), a
/// documentation path segment, and no path segment over 48 characters or holding 24
/// or more base64/hex-looking characters in a row.
pub(super) fn doc_page_shape(host: &str, path: &str) -> bool {
    if host.parse::<std::net::Ipv4Addr>().is_ok() || host.starts_with('[') || !host.contains('.') {
        return false;
    }
    let path = path.split('#').next().unwrap_or("");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let opaque = |s: &str| {
        let mut run = 0usize;
        for c in s.chars() {
            if c.is_ascii_alphanumeric() || matches!(c, '+' | '=' | '%') {
                run += 1;
                if run >= 24 {
                    return true;
                }
            } else {
                run = 0;
            }
        }
        false
    };
    if segments.iter().any(|s| s.len() > 48 || opaque(s)) {
        return false;
    }
    segments
        .iter()
        .any(|s| DOC_WORDS.contains(&s.to_ascii_lowercase().as_str()))
}
