//! Cargo: the `.crate` files cargo downloads to `$CARGO_HOME/registry/cache/REGISTRY/`, where
//! REGISTRY is `HOST-HASH` of the index they came from. A crate is promoted when the SHA-256 of
//! its bytes is the `cksum` the registry index gives for that name and version (cargo's own
//! check, the registry index format: <https://doc.rust-lang.org/cargo/reference/registry-index.html>).
//! The index entry is read from the host's own cache of the index (`registry/index/REGISTRY/
//! .cache/...`, in the host's `~/.cargo`, which the sandbox saw read-only) when it has the crate,
//! else from the registry's sparse index over verified TLS. The registry is the one the host's
//! `~/.cargo/config.toml` names for that host (crates.io, or its source replacement for
//! crates.io's own directories, or a `[registries]` entry with a `sparse+` index); the
//! session's own index, lock files and config are never read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::registry::{Answer, Registry};
use super::{Candidate, Claim, Digest, Verdict};

/// crates.io's sparse index.
const CRATES_IO_INDEX: &str = "https://index.crates.io/";

/// The cargo verifier of one layer.
#[derive(Debug)]
pub(super) struct Cargo {
    /// The host's cargo home (the layer's lower directory).
    home: PathBuf,
    /// Sparse index base URLs by host, from the host's cargo configuration; a host with two
    /// different bases maps to `None` (ambiguous: refused).
    indexes: HashMap<String, Option<String>>,
}

/// One version's entry in an index.
#[derive(Debug, serde::Deserialize)]
struct IndexEntry {
    name: String,
    vers: String,
    cksum: String,
}

impl Cargo {
    pub(super) fn new(home: &Path) -> Cargo {
        Cargo {
            home: home.to_path_buf(),
            indexes: indexes(home),
        }
    }

    /// Names the crate `c` is and its trusted checksum.
    pub(super) fn verify(&mut self, c: &Candidate<'_>, registry: &mut Registry) -> Verdict {
        let Some(parts) = c.parts() else {
            return Verdict::Skipped("not a registry download (not UTF-8)".into());
        };
        let (dir, file) = match parts.as_slice() {
            ["registry", "cache", dir, file] if file.ends_with(".crate") => (*dir, *file),
            _ => {
                return Verdict::Skipped(
                    "not a downloaded crate (only registry/cache/REGISTRY/NAME-VERSION.crate \
                     files are promoted; indexes, sources and git checkouts are not)"
                        .into(),
                )
            }
        };
        let Some(host) = dir.rsplit_once('-').map(|(h, _)| h) else {
            return Verdict::Refused(format!("{dir} is not a registry directory (HOST-HASH)"));
        };
        let base = match self.indexes.get(host) {
            Some(Some(b)) => b.clone(),
            Some(None) => {
                return Verdict::Refused(format!(
                    "two registries in {} serve {host}; airlock cannot tell which one this \
                     crate came from",
                    self.home.join("config.toml").display()
                ))
            }
            None => {
                return Verdict::Refused(format!(
                    "no sparse registry for {host} in {} (crates.io, its source replacement \
                     or a [registries] entry with a sparse+https:// index)",
                    self.home.join("config.toml").display()
                ))
            }
        };
        let stem = file.trim_end_matches(".crate");
        let splits = name_version_splits(stem);
        if splits.is_empty() {
            return Verdict::Refused(format!("{file} is not NAME-VERSION.crate"));
        }
        let mut problems = Vec::new();
        for (name, vers) in splits {
            match self.checksum(dir, &base, name, vers, registry) {
                Ok(Some((sum, by))) => {
                    return Verdict::Claim(Claim::layer(
                        PathBuf::from("registry/cache").join(dir).join(file),
                        Digest::Sha256(sum),
                        by,
                    ))
                }
                Ok(None) => problems.push(format!("{name} {vers} is not in {base}")),
                Err(e) => problems.push(e),
            }
        }
        Verdict::Refused(problems.join("; "))
    }

    /// The trusted checksum of `name` `vers`: the host's index cache first, then the registry.
    fn checksum(
        &self,
        dir: &str,
        base: &str,
        name: &str,
        vers: &str,
        registry: &mut Registry,
    ) -> Result<Option<([u8; 32], String)>, String> {
        let rel = index_path(name);
        let local = self
            .home
            .join("registry/index")
            .join(dir)
            .join(".cache")
            .join(&rel);
        if let Ok(bytes) = std::fs::read(&local) {
            if let Some(sum) = find(&bytes, name, vers)? {
                return Ok(Some((
                    sum,
                    format!("the host's index cache {}", local.display()),
                )));
            }
        }
        let url = format!("{base}{rel}");
        match registry.get(&url, "*/*")? {
            Answer::NotFound => Ok(None),
            Answer::Found(body) => {
                Ok(find(&body, name, vers)?.map(|s| (s, format!("the registry index {url}"))))
            }
        }
    }
}

/// The checksum of `name` `vers` among index entries: JSON objects one per line (the sparse
/// index) or NUL-separated (cargo's `.cache` files); anything else between them is ignored.
fn find(bytes: &[u8], name: &str, vers: &str) -> Result<Option<[u8; 32]>, String> {
    for chunk in bytes.split(|b| *b == b'\n' || *b == 0) {
        if chunk.first() != Some(&b'{') {
            continue;
        }
        let Ok(e) = serde_json::from_slice::<IndexEntry>(chunk) else {
            continue;
        };
        if e.name == name && e.vers == vers {
            let mut sum = [0u8; 32];
            hex::decode_to_slice(&e.cksum, &mut sum)
                .map_err(|_| format!("the index's cksum for {name} {vers} is not SHA-256 hex"))?;
            return Ok(Some(sum));
        }
    }
    Ok(None)
}

/// The ways `stem` (`NAME-VERSION`) splits: at each `-` followed by a digit, since names may
/// hold `-` and digits (`md-5-0.10.6`); names of crates.io's characters, versions of semver's.
fn name_version_splits(stem: &str) -> Vec<(&str, &str)> {
    stem.match_indices('-')
        .filter_map(|(i, _)| {
            let (name, rest) = (&stem[..i], &stem[i + 1..]);
            let ok = !name.is_empty()
                && rest.starts_with(|c: char| c.is_ascii_digit())
                && rest
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c))
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            ok.then_some((name, rest))
        })
        .collect()
}

/// A crate's file in a sparse index: `1/a`, `2/ab`, `3/a/abc`, `ab/cd/abcd...` (lowercase).
fn index_path(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    match n.len() {
        1 => format!("1/{n}"),
        2 => format!("2/{n}"),
        3 => format!("3/{}/{n}", &n[..1]),
        _ => format!("{}/{}/{n}", &n[..2], &n[2..4]),
    }
}

/// The sparse indexes the host's cargo configuration knows, by host: crates.io, the source that
/// replaces crates.io (`[source.crates-io] replace-with` naming a `[source.X] registry` or a
/// `[registries.X] index`), and `[registries]` entries with a `sparse+` index. When crates.io is
/// replaced, crates under crates.io's own directories (`index.crates.io-…`, and the old git
/// index's `github.com-…`, whose crates carry the same checksums) are checked against the
/// replacement: the user's configuration says where crates.io's data comes from, and a host
/// behind a mirror may not reach crates.io at all.
fn indexes(home: &Path) -> HashMap<String, Option<String>> {
    let mut out: HashMap<String, Option<String>> = HashMap::new();
    let config = ["config.toml", "config"]
        .iter()
        .find_map(|n| std::fs::read_to_string(home.join(n)).ok())
        .and_then(|t| toml::from_str::<toml::Value>(&t).ok());
    let replaced = config.as_ref().and_then(replacement);
    let crates_io = replaced
        .as_deref()
        .and_then(sparse)
        .unwrap_or_else(|| CRATES_IO_INDEX.to_string());
    let mut add = |base: String| {
        if let Some(host) = host_of(&base) {
            out.entry(host)
                .and_modify(|b| {
                    if b.as_deref() != Some(base.as_str()) {
                        *b = None;
                    }
                })
                .or_insert(Some(base));
        }
    };
    if crates_io != CRATES_IO_INDEX {
        add(crates_io.clone());
    }
    if let Some(regs) = config
        .as_ref()
        .and_then(|c| c.get("registries"))
        .and_then(|r| r.as_table())
    {
        for r in regs.values() {
            if let Some(b) = r.get("index").and_then(|i| i.as_str()).and_then(sparse) {
                add(b);
            }
        }
    }
    for own in ["index.crates.io", "github.com"] {
        out.insert(own.into(), Some(crates_io.clone()));
    }
    out
}

/// The index URL of the source replacing crates.io, if the configuration replaces it.
fn replacement(c: &toml::Value) -> Option<String> {
    let with = c
        .get("source")?
        .get("crates-io")?
        .get("replace-with")?
        .as_str()?;
    let from_source = c
        .get("source")
        .and_then(|s| s.get(with))
        .and_then(|s| s.get("registry"));
    let from_registries = c
        .get("registries")
        .and_then(|r| r.get(with))
        .and_then(|r| r.get("index"));
    from_source
        .or(from_registries)?
        .as_str()
        .map(str::to_string)
}

/// `sparse+https://host/path` as a base URL ending in `/`; other kinds (git indexes) are `None`.
fn sparse(url: &str) -> Option<String> {
    let u = url.strip_prefix("sparse+")?;
    Some(if u.ends_with('/') {
        u.to_string()
    } else {
        format!("{u}/")
    })
}

fn host_of(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    uri.host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_at_each_dash_before_a_digit() {
        assert_eq!(name_version_splits("itoa-1.0.19"), [("itoa", "1.0.19")]);
        assert_eq!(
            name_version_splits("md-5-0.10.6"),
            [("md", "5-0.10.6"), ("md-5", "0.10.6")]
        );
        assert!(name_version_splits("nothing").is_empty());
        assert!(name_version_splits("../x-1.0").is_empty());
        assert!(name_version_splits("x-1.0\x1b[2J").is_empty());
    }

    #[test]
    fn index_paths_follow_the_sparse_layout() {
        assert_eq!(index_path("a"), "1/a");
        assert_eq!(index_path("ab"), "2/ab");
        assert_eq!(index_path("Abc"), "3/a/abc");
        assert_eq!(index_path("itoa"), "it/oa/itoa");
    }

    #[test]
    fn entries_are_found_in_lines_and_cache_files() {
        let sum = "aa".repeat(32);
        let line = format!(r#"{{"name":"x","vers":"1.0.0","cksum":"{sum}","deps":[]}}"#);
        let sparse_file = format!("{line}\n");
        assert!(find(sparse_file.as_bytes(), "x", "1.0.0")
            .expect("find")
            .is_some());
        let mut cache = vec![3u8, 2, 0, 0, 0];
        cache.extend_from_slice(b"etag\x001.0.0\x00");
        cache.extend_from_slice(line.as_bytes());
        cache.push(0);
        assert_eq!(find(&cache, "x", "1.0.0").expect("find"), Some([0xaa; 32]));
        assert_eq!(find(&cache, "x", "1.0.1").expect("find"), None);
        assert_eq!(find(&cache, "y", "1.0.0").expect("find"), None);
    }

    #[test]
    fn the_host_config_names_the_registries() {
        let home = tempfile::tempdir().expect("home");
        std::fs::write(
            home.path().join("config.toml"),
            "[source.crates-io]\nreplace-with = \"m\"\n[source.m]\nregistry = \"sparse+https://127.0.0.1:8443/idx\"\n\
             [registries.a]\nindex = \"sparse+https://a.test/\"\n[registries.b]\nindex = \"sparse+https://a.test/other/\"\n",
        )
        .expect("config");
        let m = indexes(home.path());
        assert_eq!(
            m["127.0.0.1"].as_deref(),
            Some("https://127.0.0.1:8443/idx/")
        );
        // crates.io's own directories are checked against the replacement (a host behind a
        // mirror may not reach crates.io).
        assert_eq!(
            m["index.crates.io"].as_deref(),
            Some("https://127.0.0.1:8443/idx/")
        );
        assert_eq!(
            m["github.com"].as_deref(),
            Some("https://127.0.0.1:8443/idx/")
        );
        assert_eq!(m["a.test"], None);
        // replace-with may name a [registries] entry; without a replacement, crates.io.
        std::fs::write(
            home.path().join("config.toml"),
            "[source.crates-io]\nreplace-with = \"corp\"\n[registries.corp]\nindex = \"sparse+https://corp.test/cargo\"\n",
        )
        .expect("config");
        let m = indexes(home.path());
        assert_eq!(
            m["index.crates.io"].as_deref(),
            Some("https://corp.test/cargo/")
        );
        std::fs::remove_file(home.path().join("config.toml")).expect("rm");
        let m = indexes(home.path());
        assert_eq!(m["index.crates.io"].as_deref(), Some(CRATES_IO_INDEX));
    }
}
