//! pip: wheels and sdists in pip's HTTP cache (cachecontrol's file cache, as pip vendors it). An
//! entry's file names are the SHA-224 of the URL it was fetched from (cachecontrol's
//! `CacheController.cache_url`: scheme and host lowercased, the fragment dropped), spread over
//! five one-character directories (`a/b/c/d/e/KEY`, pip's `SafeFileCache._get_cache_path`).
//! From pip 23.3 (`http-v2/`) `KEY` is the response record (`cc=4,` and msgpack) and `KEY.body`
//! the bytes; before, (`http/`) the body sits inside the record.
//!
//! A body is promoted when the host's configured index (`index-url` and `extra-index-url` of
//! the host's pip configuration or `PIP_INDEX_URL`, else PyPI) lists, on the project's page of
//! its simple API (PEP 691 JSON, or PEP 503 HTML with `#sha256=` fragments), a file whose
//! `sha256` is the body's SHA-256 **and** whose URL hashes to the entry's key: the bytes are a published file, and pip on the host will find
//! them under that file's URL and no other. Which project to ask for is read from the body
//! (a wheel's `NAME-VERSION.dist-info/`, an sdist's top directory), only a claim: a wrong name
//! finds no such file.
//!
//! The response record is the agent's: its headers (content encoding, freshness, vary) would
//! steer pip on the host. It is never promoted, not even parsed for `http-v2`; airlock writes
//! its own record for each promoted body, with only the headers pip needs to use the entry
//! (status 200, length, date, `Cache-Control: max-age=365000000, immutable, public`, what PyPI
//! sends for its files, which never change at a given URL). For `http/` the body is taken out
//! of the agent's record and put into airlock's own.
//!
//! `wheels/` holds wheels built on the machine, which no index publishes a digest for: never
//! promoted. So are `selfcheck/` and everything else.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::Digest as _;

use super::registry::{Answer, Registry};
use super::{copy, Candidate, Claim, Content, Digest, Verdict, MAX_ARTIFACT};

/// PyPI's simple index.
const PYPI: &str = "https://pypi.org/simple/";

/// The simple API's forms, JSON (PEP 691) preferred, as pip asks.
const ACCEPT: &str = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; \
                      q=0.1, text/html; q=0.01";

/// cachecontrol's serialization version that pip reads (`Serializer._loads_v4`).
const RECORD_PREFIX: &[u8] = b"cc=4,";

/// The pip verifier of one layer.
#[derive(Debug)]
pub(super) struct Pip {
    /// Index base URLs, ending in `/`.
    indexes: Vec<String>,
}

/// The two layouts of pip's HTTP cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// pip ≥ 23.3: `http-v2/…/KEY.body` beside the record `KEY`.
    Separate,
    /// pip < 23.3: `http/…/KEY`, the body inside the record.
    Inline,
}

/// What a body is, from the index.
struct Published {
    url: String,
    page: String,
}

impl Pip {
    /// Reads the host's pip configuration (never the session's).
    pub(super) fn new(home: &Path) -> Pip {
        Pip {
            indexes: indexes(home),
        }
    }

    pub(super) fn verify(&mut self, c: &Candidate<'_>, registry: &mut Registry) -> Verdict {
        let Some(parts) = c.parts() else {
            return Verdict::Skipped("not a pip cache entry (not UTF-8)".into());
        };
        let (layout, key) =
            match parts.as_slice() {
                ["http-v2", a, b, cc, d, e, file] => match file.strip_suffix(".body") {
                    Some(key) if placed(key, [a, b, cc, d, e]) => (Layout::Separate, key),
                    None if placed(file, [a, b, cc, d, e]) => return Verdict::Skipped(
                        "pip's response record, written in the session: never promoted (airlock \
                         writes its own beside each promoted body)"
                            .into(),
                    ),
                    _ => return Verdict::Refused(not_placed()),
                },
                ["http", a, b, cc, d, e, key] if placed(key, [a, b, cc, d, e]) => {
                    (Layout::Inline, *key)
                }
                ["http" | "http-v2", ..] => return Verdict::Refused(not_placed()),
                ["wheels", ..] => {
                    return Verdict::Skipped(
                        "a wheel built in the session: no index publishes a digest for it".into(),
                    )
                }
                _ => return Verdict::Skipped("not a downloaded package file".into()),
            };
        let body = match layout {
            Layout::Separate => None,
            Layout::Inline => match inline_body(c.path) {
                Ok(b) => Some(b),
                Err(e) => return Verdict::Skipped(e),
            },
        };
        let inspected = match &body {
            Some(b) => inspect(std::io::Cursor::new(b.as_slice())),
            None => airlock_session::changes::open_regular(c.path)
                .map_err(|e| e.to_string())
                .and_then(|(f, _)| inspect(f)),
        };
        let (sha256, names) = match inspected {
            Ok(x) => x,
            Err(e) => return Verdict::Skipped(e),
        };
        let found = match self.find(key, &sha256, &names, registry) {
            Ok(p) => p,
            Err(e) => return Verdict::Refused(e),
        };
        let verified_by = format!("the sha256 of {} in {}", found.url, found.page);
        let dir = PathBuf::from(parts[..6].join("/"));
        match body {
            None => Verdict::Claim(Claim {
                dest: dir.join(format!("{key}.body")),
                digest: Digest::Sha256(sha256),
                verified_by,
                content: Content::Layer,
                companion: Some((dir.join(key), record(&[], body_len(c.path)))),
            }),
            Some(b) => {
                let built = record(&b, b.len() as u64);
                Verdict::Claim(Claim {
                    dest: dir.join(key),
                    digest: Digest::Sha256(sha2::Sha256::digest(&built).into()),
                    verified_by,
                    content: Content::Built(built),
                    companion: None,
                })
            }
        }
    }

    /// The index file whose URL hashes to `key` and whose sha256 is `sha256`, under one of
    /// `names` on one of the configured indexes.
    fn find(
        &self,
        key: &str,
        sha256: &[u8; 32],
        names: &[String],
        registry: &mut Registry,
    ) -> Result<Published, String> {
        let want = hex::encode(sha256);
        let mut problems = Vec::new();
        for base in &self.indexes {
            for name in names {
                let page = format!("{base}{name}/");
                let files = match project_files(&page, registry) {
                    Ok(f) => f,
                    Err(e) => {
                        problems.push(e);
                        continue;
                    }
                };
                let same_bytes: Vec<&(String, String)> =
                    files.iter().filter(|(_, h)| *h == want).collect();
                if let Some((url, _)) = same_bytes.iter().find(|(u, _)| url_key(u) == key) {
                    return Ok(Published {
                        url: url.clone(),
                        page,
                    });
                }
                problems.push(match same_bytes.first() {
                    Some((url, _)) => format!(
                        "the entry's key is not the key of {url}, the file {page} gives these \
                         bytes (the entry was stored under another URL)"
                    ),
                    None => format!("{page} lists no file with the sha256 {want}"),
                });
            }
        }
        if problems.is_empty() {
            problems.push("no index is configured".into());
        }
        Err(problems.join("; "))
    }
}

/// The key's directories are its first five characters, and it is a SHA-224 in lowercase hex.
fn placed(key: &str, dirs: [&&str; 5]) -> bool {
    key.len() == 56
        && key
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        && dirs
            .iter()
            .zip(key.chars())
            .all(|(d, k)| d.len() == 1 && d.starts_with(k))
}

fn not_placed() -> String {
    "not at the place pip's cache gives its key (a/b/c/d/e/SHA224): pip would not find it".into()
}

/// The size of a layer's body, for the record's `Content-Length`.
fn body_len(p: &Path) -> u64 {
    std::fs::symlink_metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// cachecontrol's key of a URL: the SHA-224 (hex) of the URL with its scheme and authority
/// lowercased, an empty path as `/`, the query kept and the fragment dropped
/// (`CacheController._urlnorm`).
pub(super) fn url_key(url: &str) -> String {
    let no_fragment = url.split('#').next().unwrap_or(url);
    let (scheme, rest) = no_fragment.split_once("://").unwrap_or(("", no_fragment));
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let path = if path.is_empty() || path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    let norm = format!(
        "{}://{}{path}",
        scheme.to_ascii_lowercase(),
        authority.to_ascii_lowercase()
    );
    hex::encode(sha2::Sha224::digest(norm.as_bytes()))
}

/// The files a PEP 691 project page lists: (absolute URL, sha256 hex in lowercase).
fn project_files(page: &str, registry: &mut Registry) -> Result<Vec<(String, String)>, String> {
    let body = match registry.get(page, ACCEPT)? {
        Answer::Found(b) => b,
        Answer::NotFound => return Err(format!("{page}: the index has no such project")),
    };
    let base = url::Url::parse(page).map_err(|e| format!("{page}: {e}"))?;
    let listed = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(doc) => json_files(&doc).ok_or_else(|| format!("{page}: no files list"))?,
        Err(_) => html_files(&String::from_utf8_lossy(&body)),
    };
    Ok(listed
        .into_iter()
        .filter_map(|(href, sha)| {
            let url = base.join(&href).ok()?;
            (url.scheme() == "https"
                && sha.len() == 64
                && sha.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| (url.to_string(), sha.to_ascii_lowercase()))
        })
        .collect())
}

/// `(url, sha256)` of a PEP 691 page's `files`.
fn json_files(doc: &serde_json::Value) -> Option<Vec<(String, String)>> {
    let files = doc.get("files")?.as_array()?;
    Some(
        files
            .iter()
            .filter_map(|f| {
                let url = f.get("url")?.as_str()?;
                let sha = f.get("hashes")?.get("sha256")?.as_str()?;
                Some((url.to_string(), sha.to_string()))
            })
            .collect(),
    )
}

/// `(url, sha256)` of a PEP 503 HTML page: each anchor's `href`, whose fragment is
/// `sha256=HEX` (anchors without one vouch for nothing). The page comes from the index over
/// verified TLS, not from the session.
fn html_files(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for tag in text.split('<').skip(1) {
        let Some(attrs) = tag.strip_prefix("a ").or_else(|| tag.strip_prefix("A ")) else {
            continue;
        };
        let attrs = attrs.split('>').next().unwrap_or("");
        let Some(at) = attrs.find("href=") else {
            continue;
        };
        let value = &attrs[at + 5..];
        let Some(quote) = value.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        let Some(href) = value[1..].split(quote).next() else {
            continue;
        };
        let href = href
            .replace("&amp;", "&")
            .replace("&#x3D;", "=")
            .replace("&#61;", "=");
        if let Some((_, sha)) = href.split_once("#sha256=") {
            let sha = sha.split('&').next().unwrap_or(sha).to_string();
            out.push((href.clone(), sha));
        }
    }
    out
}

/// The body of an `http/` record the session wrote: its `response.body` (cachecontrol's
/// version 4: `cc=4,` and a msgpack map). Read with [`record_body`], which walks the record
/// without building it (a record of a million one-byte values would otherwise take gigabytes).
fn inline_body(p: &Path) -> Result<Vec<u8>, String> {
    let data = copy::read_bounded(p, MAX_ARTIFACT)?;
    let Some(packed) = data.strip_prefix(RECORD_PREFIX) else {
        return Err("not a cachecontrol version 4 record".into());
    };
    record_body(packed)
        .map_err(|e| format!("not a cachecontrol record: {e}"))?
        .filter(|b| !b.is_empty())
        .map(<[u8]>::to_vec)
        .ok_or_else(|| "a cachecontrol record without a body".into())
}

/// `response.body` of a msgpack record, found by walking it: at most [`MAX_VALUES`] values,
/// nested at most [`MAX_DEPTH`] deep, every length checked against what is left.
fn record_body(packed: &[u8]) -> Result<Option<&[u8]>, String> {
    let mut w = Walk {
        rest: packed,
        budget: MAX_VALUES,
    };
    let mut body = None;
    for _ in 0..w.map_len()? {
        if w.str()? == b"response" {
            for _ in 0..w.map_len()? {
                if w.str()? == b"body" {
                    body = Some(w.bin()?);
                } else {
                    w.skip(MAX_DEPTH)?;
                }
            }
        } else {
            w.skip(MAX_DEPTH)?;
        }
    }
    Ok(body)
}

/// The most values a record may hold (cachecontrol writes a few dozen).
const MAX_VALUES: u32 = 4096;

/// The deepest nesting a record may have (cachecontrol's is 3).
const MAX_DEPTH: u32 = 8;

/// A cursor over msgpack bytes (the format: <https://github.com/msgpack/msgpack/blob/master/spec.md>).
struct Walk<'a> {
    rest: &'a [u8],
    budget: u32,
}

impl<'a> Walk<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.rest.len() {
            return Err("truncated".into());
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn uint(&mut self, n: usize) -> Result<usize, String> {
        let b = self.take(n)?;
        let v = b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
        usize::try_from(v).map_err(|_| "a length too large".to_string())
    }

    fn marker(&mut self) -> Result<rmp::Marker, String> {
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or_else(|| format!("more than {MAX_VALUES} values"))?;
        Ok(rmp::Marker::from_u8(self.take(1)?[0]))
    }

    fn map_len(&mut self) -> Result<usize, String> {
        use rmp::Marker as M;
        match self.marker()? {
            M::FixMap(n) => Ok(usize::from(n)),
            M::Map16 => self.uint(2),
            M::Map32 => self.uint(4),
            _ => Err("a map expected".into()),
        }
    }

    fn str(&mut self) -> Result<&'a [u8], String> {
        use rmp::Marker as M;
        let n = match self.marker()? {
            M::FixStr(n) => usize::from(n),
            M::Str8 => self.uint(1)?,
            M::Str16 => self.uint(2)?,
            M::Str32 => self.uint(4)?,
            _ => return Err("a string key expected".into()),
        };
        self.take(n)
    }

    fn bin(&mut self) -> Result<&'a [u8], String> {
        use rmp::Marker as M;
        let n = match self.marker()? {
            M::Bin8 => self.uint(1)?,
            M::Bin16 => self.uint(2)?,
            M::Bin32 => self.uint(4)?,
            _ => return Err("the body is not binary".into()),
        };
        self.take(n)
    }

    /// Skips one value of any kind.
    fn skip(&mut self, depth: u32) -> Result<(), String> {
        use rmp::Marker as M;
        let depth = depth.checked_sub(1).ok_or("nested too deep")?;
        let (bytes, values) = match self.marker()? {
            M::FixPos(_) | M::FixNeg(_) | M::Null | M::True | M::False => (0, 0),
            M::U8 | M::I8 => (1, 0),
            M::U16 | M::I16 => (2, 0),
            M::U32 | M::I32 | M::F32 => (4, 0),
            M::U64 | M::I64 | M::F64 => (8, 0),
            M::FixStr(n) => (usize::from(n), 0),
            M::Str8 | M::Bin8 => (self.uint(1)?, 0),
            M::Str16 | M::Bin16 => (self.uint(2)?, 0),
            M::Str32 | M::Bin32 => (self.uint(4)?, 0),
            M::FixExt1 => (2, 0),
            M::FixExt2 => (3, 0),
            M::FixExt4 => (5, 0),
            M::FixExt8 => (9, 0),
            M::FixExt16 => (17, 0),
            M::Ext8 => (self.uint(1)? + 1, 0),
            M::Ext16 => (self.uint(2)? + 1, 0),
            M::Ext32 => (self.uint(4)? + 1, 0),
            M::FixArray(n) => (0, usize::from(n)),
            M::Array16 => (0, self.uint(2)?),
            M::Array32 => (0, self.uint(4)?),
            M::FixMap(n) => (0, 2 * usize::from(n)),
            M::Map16 => (0, 2 * self.uint(2)?),
            M::Map32 => (0, 2 * self.uint(4)?),
            M::Reserved => return Err("a reserved marker".into()),
        };
        self.take(bytes)?;
        for _ in 0..values {
            self.skip(depth)?;
        }
        Ok(())
    }
}

/// The SHA-256 of a body and the project names it claims: a wheel's `NAME-VERSION.dist-info/`
/// directory, an sdist's `NAME-VERSION/` top directory (each way to split it at a `-` before a
/// digit), normalized as PEP 503 says.
fn inspect<R: Read + Seek>(mut r: R) -> Result<([u8; 32], Vec<String>), String> {
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut (&mut r).take(MAX_ARTIFACT), &mut h)
        .map_err(|e| format!("cannot read: {e}"))?;
    let sha: [u8; 32] = h.finalize().into();
    r.rewind().map_err(|e| format!("cannot read: {e}"))?;
    let names = match wheel_names(&mut r) {
        Some(n) => n,
        None => {
            r.rewind().map_err(|e| format!("cannot read: {e}"))?;
            sdist_names(r).ok_or_else(|| {
                "not a wheel or sdist (an index page or another answer): not promoted".to_string()
            })?
        }
    };
    Ok((sha, names))
}

fn wheel_names<R: Read + Seek>(r: R) -> Option<Vec<String>> {
    let zip = zip::ZipArchive::new(r).ok()?;
    let mut names: Vec<String> = zip
        .file_names()
        .filter_map(|f| f.strip_suffix(".dist-info/METADATA"))
        .filter(|d| !d.contains('/'))
        .filter_map(|d| d.split('-').next())
        .map(normalize)
        .collect();
    names.sort();
    names.dedup();
    (!names.is_empty()).then_some(names)
}

fn sdist_names<R: Read>(r: R) -> Option<Vec<String>> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(r));
    let first = tar.entries().ok()?.next()?.ok()?;
    let path = first.path().ok()?.into_owned();
    let top = path.components().next()?.as_os_str().to_str()?.to_string();
    let names: Vec<String> = top
        .match_indices('-')
        .filter(|(i, _)| top[i + 1..].starts_with(|c: char| c.is_ascii_digit()))
        .map(|(i, _)| normalize(&top[..i]))
        .collect();
    (!names.is_empty()).then_some(names)
}

/// PEP 503: lowercase, runs of `-`, `_`, `.` as one `-`; other characters dropped (a name
/// never carries them, and they never reach a URL).
fn normalize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if "-_.".contains(c) {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        }
    }
    out.trim_matches('-').to_string()
}

/// airlock's own response record for a verified body of `len` bytes (`body` empty when it sits
/// beside the record): cachecontrol's version 4 serialization (`Serializer.dumps`).
fn record(body: &[u8], len: u64) -> Vec<u8> {
    use rmpv::Value;
    let s = |x: &str| Value::from(x);
    let headers = Value::Map(vec![
        (s("Content-Type"), s("application/octet-stream")),
        (s("Content-Length"), Value::from(len.to_string())),
        (
            s("Date"),
            Value::from(httpdate::fmt_http_date(SystemTime::now())),
        ),
        (
            s("Cache-Control"),
            s("max-age=365000000, immutable, public"),
        ),
    ]);
    let response = Value::Map(vec![
        (s("body"), Value::Binary(body.to_vec())),
        (s("headers"), headers),
        (s("status"), Value::from(200)),
        (s("version"), Value::from(11)),
        (s("reason"), s("OK")),
        (s("decode_content"), Value::from(false)),
    ]);
    let doc = Value::Map(vec![
        (s("response"), response),
        (s("vary"), Value::Map(vec![])),
    ]);
    let mut out = RECORD_PREFIX.to_vec();
    // Writing to a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, &doc);
    out
}

/// The host's indexes: `PIP_INDEX_URL` / `PIP_EXTRA_INDEX_URL`, else `index-url` /
/// `extra-index-url` of the host's pip configuration files (`/etc/pip.conf`,
/// `~/.config/pip/pip.conf`, `~/.pip/pip.conf`, `PIP_CONFIG_FILE`; later ones win, pip's
/// order), else PyPI.
fn indexes(home: &Path) -> Vec<String> {
    let mut index: Option<String> = None;
    let mut extra: Vec<String> = Vec::new();
    let mut files = vec![
        PathBuf::from("/etc/pip.conf"),
        home.join(".pip/pip.conf"),
        home.join(".config/pip/pip.conf"),
    ];
    if let Some(f) = std::env::var_os("PIP_CONFIG_FILE") {
        files.push(PathBuf::from(f));
    }
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.trim().to_string();
                continue;
            }
            if !["global", "install", "download"].contains(&section.as_str()) {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k.trim() {
                "index-url" => index = Some(v.trim().to_string()),
                "extra-index-url" => extra.extend(v.split_whitespace().map(str::to_string)),
                _ => {}
            }
        }
    }
    if let Some(v) = std::env::var("PIP_INDEX_URL")
        .ok()
        .filter(|v| !v.is_empty())
    {
        index = Some(v);
    }
    if let Ok(v) = std::env::var("PIP_EXTRA_INDEX_URL") {
        extra = v.split_whitespace().map(str::to_string).collect();
    }
    std::iter::once(index.unwrap_or_else(|| PYPI.to_string()))
        .chain(extra)
        .map(|u| if u.ends_with('/') { u } else { format!("{u}/") })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_cachecontrols() {
        // cachecontrol: sha224 of the normalized URL; the fragment pip adds is not part of it.
        let u = "https://files.pythonhosted.org/packages/ab/cd/x-1.0-py3-none-any.whl";
        let k = hex::encode(sha2::Sha224::digest(u.as_bytes()));
        assert_eq!(url_key(u), k);
        assert_eq!(url_key(&format!("{u}#sha256=00")), k);
        assert_eq!(
            url_key("HTTPS://Files.PythonHosted.org/packages/ab/cd/x-1.0-py3-none-any.whl"),
            k
        );
        assert_eq!(
            url_key("https://a.test"),
            hex::encode(sha2::Sha224::digest(b"https://a.test/"))
        );
        assert_eq!(
            url_key("https://a.test/x?b=1#f"),
            hex::encode(sha2::Sha224::digest(b"https://a.test/x?b=1"))
        );
    }

    #[test]
    fn html_pages_give_their_anchors_sha256() {
        let sha = "ab".repeat(32);
        let page = format!(
            "<html><body><a href=\"../../files/x-1.0.tar.gz#sha256={sha}\" data-requires-python=\"&gt;=3\">x-1.0.tar.gz</a>\
             <A HREF='nohash.whl'>n</A><a href='https://h.test/y.whl#sha256={sha}'>y</a><a name=x>z</a></body></html>"
        );
        assert_eq!(
            html_files(&page),
            [
                (
                    format!("../../files/x-1.0.tar.gz#sha256={sha}"),
                    sha.clone()
                ),
                (format!("https://h.test/y.whl#sha256={sha}"), sha.clone()),
            ]
        );
    }

    #[test]
    fn names_follow_pep_503() {
        assert_eq!(normalize("Foo_Bar.baz"), "foo-bar-baz");
        assert_eq!(normalize("a__-b"), "a-b");
        assert_eq!(normalize("../x"), "x");
    }

    #[test]
    fn a_hostile_record_is_refused_without_being_built() {
        // A million one-byte values: refused by count, not allocated.
        let mut bomb = vec![0x81, 0xa4];
        bomb.extend_from_slice(b"vary");
        bomb.push(0xdd);
        bomb.extend_from_slice(&1_000_000u32.to_be_bytes());
        bomb.extend(std::iter::repeat_n(0u8, 1_000_000));
        assert!(record_body(&bomb).is_err());
        // Lengths beyond the data, deep nesting, a body that is not binary.
        assert!(
            record_body(&[0x81, 0xa4, b'b', b'o', b'd', b'y', 0xc6, 0xff, 0xff, 0xff, 0xff])
                .is_err()
        );
        let mut deep = vec![0x81, 0xa1, b'x'];
        deep.extend(std::iter::repeat_n(0x91, 20));
        deep.push(0);
        assert!(record_body(&deep).is_err());
        let r = record(b"abc", 3);
        assert_eq!(record_body(&r[5..]).expect("walk"), Some(&b"abc"[..]));
    }

    #[test]
    fn a_record_is_cachecontrol_version_4() {
        let r = record(b"abc", 3);
        assert!(r.starts_with(b"cc=4,"));
        let v = rmpv::decode::read_value(&mut &r[5..]).expect("msgpack");
        let body = v["response"]["body"].as_slice().expect("body");
        assert_eq!(body, b"abc");
        assert_eq!(v["response"]["status"].as_u64(), Some(200));
    }
}
