//! Go: the module download cache (`$GOMODCACHE/cache/download/MODULE/@v/VERSION.zip` and
//! `.mod`, MODULE and VERSION in Go's case encoding, `!x` for `X`). A file is promoted when its
//! `h1:` hash (golang.org/x/mod/sumdb/dirhash `Hash1`: the SHA-256 of the lines `SHA256HEX  NAME\n`
//! of its files sorted by name; for a zip, its entries, each under `MODULE@VERSION/`; for a
//! `.mod`, the one file `go.mod`) is the one the Go checksum database records for that module
//! and version (`GOSUMDB`, asked over verified TLS: [`super::gosumdb`]). A module the database
//! does not cover (`GONOSUMDB`/`GOPRIVATE`, or `GOSUMDB=off`) is refused. No `go.sum` is a
//! trust anchor: any go.sum in a workspace may hold lines an agent wrote, in this session or an
//! earlier one whose changes were merged (red-team Y1 and Y1b). The go.sum an overlay
//! session's workspace had when it started (kept in the session directory,
//! `caches::GO_SUM_FILE`) is only checked against: a line there that disagrees with the
//! database refuses the module. The promoted bytes are
//! the very bytes hashed (the copy checks their SHA-256 again). Beside a promoted zip airlock
//! writes its own `.ziphash` (the verified `h1:`), as go does. `.info`, `.lock`, the agent's
//! `.ziphash`, `list` files, the checksum database cache and the extracted module trees are not
//! promoted: go extracts a module again from its verified zip, and asks for the rest.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::Digest as _;

use super::gosumdb::SumDb;
use super::registry::{Answer, Registry};
use super::{copy, Candidate, Claim, Content, Digest, Verdict, MAX_ARTIFACT};

use crate::caches::MAX_GO_SUM;

/// The Go verifier of one layer.
#[derive(Debug)]
pub(super) struct Go {
    /// The checksum database asked.
    sumdb: SumDb,
    /// The go.sum the workspace had when the session started (overlay sessions): `(module,
    /// version)` (version `vX/go.mod` for a `.mod`) to its `h1:`, checked against; empty
    /// when there is none.
    start: HashMap<(String, String), String>,
}

impl Go {
    /// `go_sum`: the go.sum kept at the session's start, if it has one; `sumdb`: the checksum
    /// database to ask.
    pub(super) fn new(go_sum: Option<&Path>, sumdb: SumDb) -> Go {
        Go {
            sumdb,
            start: go_sum.and_then(|p| read_go_sum(p).ok()).unwrap_or_default(),
        }
    }

    pub(super) fn verify(&mut self, c: &Candidate<'_>, registry: &mut Registry) -> Verdict {
        let Some(parts) = c.parts() else {
            return Verdict::Skipped("not a module download (not UTF-8)".into());
        };
        let (module, file) = match parts.as_slice() {
            ["cache", "download", "sumdb", ..] => {
                return Verdict::Skipped("go's cache of the checksum database: not promoted".into())
            }
            ["cache", "download", module @ .., "@v", file] if !module.is_empty() => {
                (module.join("/"), *file)
            }
            ["cache", ..] => return Verdict::Skipped("not a module download".into()),
            _ => {
                return Verdict::Skipped(
                    "an extracted module tree or build cache: not promoted (go extracts a module \
                     again from its promoted zip)"
                        .into(),
                )
            }
        };
        let (kind, escaped_version) = match file.rsplit_once('.') {
            Some((v, "zip")) => (Kind::Zip, v),
            Some((v, "mod")) => (Kind::Mod, v),
            _ => {
                return Verdict::Skipped(
                    "not a module's .zip or .mod (go fetches .info and list files again; \
                     airlock writes the .ziphash of a promoted zip itself)"
                        .into(),
                )
            }
        };
        let (Some(path), Some(version)) = (unescape(&module), unescape(escaped_version)) else {
            return Verdict::Refused(format!(
                "{module}@{escaped_version} is not a case-encoded module path and version"
            ));
        };
        let key_version = match kind {
            Kind::Zip => version.clone(),
            Kind::Mod => format!("{version}/go.mod"),
        };
        let (want, source) =
            match self.database_h1(&module, escaped_version, &path, &key_version, registry) {
                Ok(found) => found,
                Err(why) => return Verdict::Refused(why),
            };
        if let Some(start) = self.start.get(&(path.clone(), key_version.clone())) {
            if *start != want {
                return Verdict::Refused(format!(
                    "the go.sum the workspace had as the session started says {start} for \
                     {path} {key_version}, {source} says {want}"
                ));
            }
        }
        let want = &want;
        let bytes = match copy::read_bounded(c.path, MAX_ARTIFACT) {
            Ok(b) => b,
            Err(e) => return Verdict::Skipped(e),
        };
        let got = match kind {
            Kind::Zip => hash_zip(&bytes, &format!("{path}@{version}/")),
            Kind::Mod => Ok(hash1(&[("go.mod".to_string(), bytes.clone())])),
        };
        match got {
            Ok(h) if &h == want => {}
            Ok(h) => {
                return Verdict::Refused(format!(
                    "content does not match: its h1 is {h}, {source} says {want}"
                ))
            }
            Err(e) => return Verdict::Refused(e),
        }
        let dest = PathBuf::from(parts[..parts.len() - 1].join("/")).join(file);
        let companion = (kind == Kind::Zip).then(|| {
            (
                dest.with_file_name(format!("{escaped_version}.ziphash")),
                want.clone().into_bytes(),
            )
        });
        Verdict::Claim(Claim {
            dest,
            digest: Digest::Sha256(sha2::Sha256::digest(&bytes).into()),
            verified_by: format!("{path} {key_version} {want} from {source}"),
            content: Content::Layer,
            companion,
        })
    }
}

impl Go {
    /// The `h1:` the checksum database records for `path` `key_version` (asked by the
    /// case-encoded `module`@`escaped_version`), and the lookup's URL; or why there is none.
    fn database_h1(
        &self,
        module: &str,
        escaped_version: &str,
        path: &str,
        key_version: &str,
        registry: &mut Registry,
    ) -> Result<(String, String), String> {
        if let Some(p) = self.sumdb.private_pattern(path) {
            return Err(format!(
                "{path} matches {p} in GONOSUMDB/GOPRIVATE: no checksum database vouches for it \
                 and no go.sum can (an agent may have written it); run `go mod download` on the \
                 host"
            ));
        }
        let Some(base) = &self.sumdb.url else {
            return Err(format!(
                "{}: no checksum database to verify {path} by; run `go mod download` on the host",
                self.sumdb.source
            ));
        };
        let url_safe = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._~/!+".contains(&b))
        };
        if !url_safe(module) || !url_safe(escaped_version) {
            return Err(format!(
                "{module}@{escaped_version} holds characters no module path or version has"
            ));
        }
        let url = format!("{base}/lookup/{module}@{escaped_version}");
        match registry.get(&url, "text/plain")? {
            Answer::Found(body) => super::gosumdb::record(&body, path, key_version)
                .map(|h| (h, url.clone()))
                .map_err(|e| format!("{url}: {e}")),
            Answer::NotFound => Err(format!(
                "{url}: the checksum database does not know {path} {key_version}"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Zip,
    Mod,
}

/// dirhash `Hash1` of named contents: "h1:" and the base64 SHA-256 of the lines
/// `SHA256HEX  NAME\n`, sorted by name.
fn hash1(files: &[(String, Vec<u8>)]) -> String {
    let mut sorted: Vec<&(String, Vec<u8>)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut summary = sha2::Sha256::new();
    for (name, content) in sorted {
        let line = format!("{}  {name}\n", hex::encode(sha2::Sha256::digest(content)));
        summary.update(line.as_bytes());
    }
    format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(summary.finalize())
    )
}

/// dirhash `HashZip` of a module zip whose every entry must be under `prefix`
/// (`MODULE@VERSION/`), without duplicate or newline-holding names.
fn hash_zip(bytes: &[u8], prefix: &str) -> Result<String, String> {
    let mut zip =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| format!("not a zip: {e}"))?;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut total: u64 = 0;
    for i in 0..zip.len() {
        let mut f = zip
            .by_index(i)
            .map_err(|e| format!("unreadable zip entry: {e}"))?;
        let name = f.name().to_string();
        if !name.starts_with(prefix) || name.contains('\n') {
            return Err(format!(
                "the zip holds {}, outside {prefix}",
                name.escape_debug()
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(format!("the zip holds {} twice", name.escape_debug()));
        }
        let mut content = Vec::new();
        (&mut f)
            .take(MAX_ARTIFACT - total + 1)
            .read_to_end(&mut content)
            .map_err(|e| format!("unreadable zip entry {}: {e}", name.escape_debug()))?;
        total += content.len() as u64;
        if total > MAX_ARTIFACT {
            return Err(format!("the zip unpacks to over {MAX_ARTIFACT} bytes"));
        }
        files.push((name, content));
    }
    Ok(hash1(&files))
}

/// Go's case encoding of module paths and versions (golang.org/x/mod/module `UnescapePath`):
/// `!x` is `X`; an uppercase letter or a `!` not before a lowercase letter is invalid.
fn unescape(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut bang = false;
    for c in s.chars() {
        if bang {
            if !c.is_ascii_lowercase() {
                return None;
            }
            out.push(c.to_ascii_uppercase());
            bang = false;
        } else if c == '!' {
            bang = true;
        } else if c.is_ascii_uppercase() || c.is_control() {
            return None;
        } else {
            out.push(c);
        }
    }
    (!bang && !out.is_empty()).then_some(out)
}

/// The `h1:` lines of a `go.sum`: `MODULE VERSION h1:HASH` (VERSION `vX/go.mod` for a go.mod).
fn read_go_sum(p: &Path) -> Result<HashMap<(String, String), String>, String> {
    let f = std::fs::File::open(p).map_err(|e| {
        format!(
            "cannot read {} ({e}): a module is verified only by the project's go.sum",
            p.display()
        )
    })?;
    let mut text = String::new();
    f.take(MAX_GO_SUM)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (m, v, h) = (w.next()?, w.next()?, w.next()?);
            h.starts_with("h1:")
                .then(|| ((m.to_string(), v.to_string()), h.to_string()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_h1_of_a_go_mod_is_dirhash_hash1() {
        // `find . -type f | sort | xargs sha256sum | sha256sum`, as dirhash documents it.
        let content = b"module example.com/m\n".to_vec();
        let line = format!("{}  go.mod\n", hex::encode(sha2::Sha256::digest(&content)));
        let want = format!(
            "h1:{}",
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(line.as_bytes()))
        );
        assert_eq!(hash1(&[("go.mod".into(), content)]), want);
    }

    #[test]
    fn module_paths_are_case_decoded() {
        assert_eq!(
            unescape("github.com/!burnt!sushi/toml").as_deref(),
            Some("github.com/BurntSushi/toml")
        );
        assert_eq!(unescape("github.com/Burnt"), None);
        assert_eq!(unescape("a!"), None);
        assert_eq!(unescape("a!1"), None);
    }
}
