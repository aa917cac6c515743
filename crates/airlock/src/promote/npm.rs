//! npm: package tarballs in npm's content-addressed cache (`~/.npm/_cacache/content-v2/sha512/
//! AA/BB/REST`, cacache's layout, the path being the hex SHA-512 of the content). Which package
//! a blob is comes from the session's cache index (`_cacache/index-v5`, agent-written, so only a
//! claim: the key names the tarball's URL); the claim is promoted only when the registry's
//! packument gives that name and version a `dist.integrity` (Subresource Integrity, SHA-512)
//! equal to the blob's digest, and the blob's bytes hash to it. The registry is the host's
//! `~/.npmrc` `registry=` (or `@scope:registry=` for a scope), else registry.npmjs.org.
//! Index entries and packuments are not promoted: npm finds a tarball by the integrity its
//! lock file records (`npm ci --offline`, `--prefer-offline`).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;

use super::registry::{Answer, Registry};
use super::{Candidate, Claim, Digest, Verdict};

/// The public npm registry.
const NPM_REGISTRY: &str = "https://registry.npmjs.org/";

/// The abbreviated packument (smaller; it carries `dist.integrity`).
const ACCEPT: &str = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8";

/// The largest index bucket read from the layer, in bytes.
const MAX_BUCKET: u64 = 16 << 20;

/// The npm verifier of one layer.
#[derive(Debug)]
pub(super) struct Npm {
    /// The session's index claims: SRI SHA-512 (base64) -> keys naming it.
    claims: HashMap<String, Vec<String>>,
    /// `registry=` and `@scope:registry=` of the host's `~/.npmrc`.
    registries: Registries,
}

#[derive(Debug, Default)]
struct Registries {
    default: Option<String>,
    scoped: HashMap<String, String>,
}

impl Npm {
    /// Reads the layer's index claims (`upper/_cacache/index-v5`) and the host's `~/.npmrc`.
    pub(super) fn new(upper: &Path, home: &Path) -> Npm {
        Npm {
            claims: claims(&upper.join("_cacache/index-v5")),
            registries: npmrc(home),
        }
    }

    pub(super) fn verify(&mut self, c: &Candidate<'_>, registry: &mut Registry) -> Verdict {
        let Some(hex_digest) = content_address(c.rel) else {
            return Verdict::Skipped(
                "not package content (only _cacache/content-v2/sha512/... blobs are promoted; \
                 index entries and temporary files are not)"
                    .into(),
            );
        };
        let mut digest = [0u8; 64];
        if hex::decode_to_slice(&hex_digest, &mut digest).is_err() {
            return Verdict::Skipped("not a SHA-512 content address".into());
        }
        let sri = base64::engine::general_purpose::STANDARD.encode(digest);
        let keys = self.claims.get(&sri).cloned().unwrap_or_default();
        let tarballs: Vec<(String, String)> =
            keys.iter().filter_map(|k| tarball_of_key(k)).collect();
        if tarballs.is_empty() {
            return Verdict::Skipped(if keys.is_empty() {
                "no cache entry names this content (not a package tarball)".into()
            } else {
                "not a package tarball (a cached registry answer)".into()
            });
        }
        let mut problems = Vec::new();
        for (name, version) in tarballs {
            match self.integrity(&name, &version, registry) {
                Ok((want, url)) if want.contains(&digest) => {
                    return Verdict::Claim(Claim::layer(
                        PathBuf::from("_cacache/content-v2/sha512")
                            .join(&hex_digest[..2])
                            .join(&hex_digest[2..4])
                            .join(&hex_digest[4..]),
                        Digest::Sha512(Box::new(digest)),
                        format!("{name}@{version}'s dist.integrity at {url}"),
                    ))
                }
                Ok((_, url)) => problems.push(format!(
                    "content is not {name}@{version}: {url} gives it another integrity"
                )),
                Err(e) => problems.push(e),
            }
        }
        Verdict::Refused(problems.join("; "))
    }

    /// The SHA-512 digests the registry's packument gives `name`@`version`, and its URL.
    fn integrity(
        &self,
        name: &str,
        version: &str,
        registry: &mut Registry,
    ) -> Result<(Vec<[u8; 64]>, String), String> {
        let base = self.registries.for_name(name);
        let url = format!("{base}{}", name.replace('/', "%2f"));
        let body = match registry.get(&url, ACCEPT)? {
            Answer::Found(b) => b,
            Answer::NotFound => return Err(format!("{name} is not in the registry {base}")),
        };
        let doc: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("{url}: not a packument: {e}"))?;
        let Some(sri) = doc
            .pointer(&format!(
                "/versions/{}/dist/integrity",
                pointer_escape(version)
            ))
            .and_then(|v| v.as_str())
        else {
            return Err(format!(
                "{url} gives {name}@{version} no dist.integrity (old packages carry only SHA-1)"
            ));
        };
        let digests = sri
            .split_whitespace()
            .filter_map(|t| t.strip_prefix("sha512-"))
            .filter_map(|b| {
                let b = b.split('?').next().unwrap_or(b);
                base64::engine::general_purpose::STANDARD.decode(b).ok()
            })
            .filter_map(|d| <[u8; 64]>::try_from(d.as_slice()).ok())
            .collect::<Vec<_>>();
        if digests.is_empty() {
            return Err(format!("{url} gives {name}@{version} no sha512 integrity"));
        }
        Ok((digests, url))
    }
}

impl Registries {
    fn for_name(&self, name: &str) -> String {
        let scoped = name
            .split_once('/')
            .filter(|(s, _)| s.starts_with('@'))
            .and_then(|(s, _)| self.scoped.get(s));
        scoped
            .or(self.default.as_ref())
            .cloned()
            .unwrap_or_else(|| NPM_REGISTRY.to_string())
    }
}

/// The hex digest of a `_cacache/content-v2/sha512/AA/BB/REST` path.
fn content_address(rel: &Path) -> Option<String> {
    let parts: Vec<&str> = rel
        .components()
        .map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        ["_cacache", "content-v2", "sha512", a, b, rest]
            if a.len() == 2 && b.len() == 2 && rest.len() == 124 =>
        {
            let h = format!("{a}{b}{rest}");
            h.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
                .then_some(h)
        }
        _ => None,
    }
}

/// The package name and version a cache key's tarball URL names:
/// `make-fetch-happen:request-cache:https://R/NAME/-/BASENAME-VERSION.tgz` (NAME may be
/// `@scope/name` or `@scope%2fname`).
fn tarball_of_key(key: &str) -> Option<(String, String)> {
    let url = key.strip_prefix("make-fetch-happen:request-cache:")?;
    let path = url.split_once("://")?.1.split_once('/')?.1;
    let path = path.split(['?', '#']).next()?;
    let (before, file) = path.rsplit_once("/-/")?;
    let segs: Vec<&str> = before.split('/').collect();
    let name = match segs.as_slice() {
        [.., scope, n] if scope.starts_with('@') => format!("{scope}/{n}"),
        [.., n] => n.replace("%2f", "/").replace("%2F", "/"),
        [] => return None,
    };
    let base = name.rsplit('/').next()?;
    let version = file
        .strip_suffix(".tgz")?
        .strip_prefix(base)?
        .strip_prefix('-')?;
    let ok = !version.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@/._-~".contains(c))
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+-_".contains(c));
    ok.then(|| (name, version.to_string()))
}

/// `~1` and `~0` escapes of RFC 6901 for one JSON pointer token.
fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// The index entries of the layer's `index-v5` buckets: lines `SHA1\tJSON` with `key` and
/// `integrity`; unreadable files, links and bad lines are ignored (they only make claims).
fn claims(index: &Path) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut stack = vec![index.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => stack.push(p),
                Ok(m) if m.is_file() && m.len() <= MAX_BUCKET => read_bucket(&p, &mut out),
                _ => {}
            }
        }
    }
    out
}

fn read_bucket(p: &Path, out: &mut HashMap<String, Vec<String>>) {
    use std::io::Read;
    let Ok((f, _)) = airlock_session::changes::open_regular(p) else {
        return;
    };
    let mut text = String::new();
    if f.take(MAX_BUCKET).read_to_string(&mut text).is_err() {
        return;
    }
    for line in text.lines() {
        let Some((_, json)) = line.split_once('\t') else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
            continue;
        };
        let (Some(key), Some(integrity)) = (
            v.get("key").and_then(|k| k.as_str()),
            v.get("integrity").and_then(|i| i.as_str()),
        ) else {
            continue;
        };
        for t in integrity.split_whitespace() {
            if let Some(b) = t.strip_prefix("sha512-") {
                let b = b.split('?').next().unwrap_or(b).to_string();
                out.entry(b).or_default().push(key.to_string());
            }
        }
    }
}

/// `registry=` and `@scope:registry=` of `~/.npmrc` (the host's, never the session's), with
/// `npm_config_registry` from the environment winning as in npm.
fn npmrc(home: &Path) -> Registries {
    let mut r = Registries::default();
    let text = std::fs::read_to_string(home.join(".npmrc")).unwrap_or_default();
    let slash = |u: &str| {
        if u.ends_with('/') {
            u.to_string()
        } else {
            format!("{u}/")
        }
    };
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim().trim_matches('"'));
        if k == "registry" {
            r.default = Some(slash(v));
        } else if let Some(scope) = k.strip_suffix(":registry").filter(|s| s.starts_with('@')) {
            r.scoped.insert(scope.to_string(), slash(v));
        }
    }
    if let Some(v) = std::env::var("npm_config_registry")
        .ok()
        .or_else(|| std::env::var("NPM_CONFIG_REGISTRY").ok())
        .filter(|v| !v.is_empty())
    {
        r.default = Some(slash(&v));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tarball_keys_name_the_package() {
        let k = |u: &str| format!("make-fetch-happen:request-cache:{u}");
        assert_eq!(
            tarball_of_key(&k(
                "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz"
            )),
            Some(("left-pad".into(), "1.3.0".into()))
        );
        assert_eq!(
            tarball_of_key(&k("https://r.test/npm/@types/node/-/node-20.1.0.tgz")),
            Some(("@types/node".into(), "20.1.0".into()))
        );
        assert_eq!(
            tarball_of_key(&k("https://r.test/@s%2fx/-/x-1.0.0-beta.1.tgz")),
            Some(("@s/x".into(), "1.0.0-beta.1".into()))
        );
        assert_eq!(
            tarball_of_key(&k("https://registry.npmjs.org/left-pad")),
            None
        );
        assert_eq!(
            tarball_of_key(&k("https://r.test/a/-/b-1.0.0.tgz")),
            None,
            "the file must be the package's"
        );
        assert_eq!(tarball_of_key("pacote:tarball:x"), None);
    }

    #[test]
    fn content_addresses_are_three_levels_of_lowercase_hex() {
        let rest = "0".repeat(124);
        let p = PathBuf::from(format!("_cacache/content-v2/sha512/ab/cd/{rest}"));
        assert_eq!(content_address(&p), Some(format!("abcd{rest}")));
        let p = PathBuf::from(format!("_cacache/content-v2/sha512/AB/cd/{rest}"));
        assert_eq!(content_address(&p), None);
        let p = PathBuf::from("_cacache/content-v2/sha512/ab/cd/short");
        assert_eq!(content_address(&p), None);
        let p = PathBuf::from(format!("_cacache/content-v2/sha1/ab/cd/{rest}"));
        assert_eq!(content_address(&p), None);
    }
}
