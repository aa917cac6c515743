//! `airlock cache promote`: what may go from a session's cache layers back into the host's
//! caches. The agent could write everything in its layer, its copy of the registry index and its
//! lock files included, so nothing there is believed: an artifact is promoted only when its
//! bytes hash to the digest the ecosystem publishes for it, read from a source the agent could
//! not write (the host's own cache of the registry index, or the registry itself over verified
//! TLS from this host process). Everything else is listed with the reason it stayed.
//!
//! The steps: walk the layer without following links ([`walk`]), hand each regular file to its
//! ecosystem's verifier (`cargo.rs`, `npm.rs`, `pip.rs`, `maven.rs`, `go.rs`; `unverified.rs` says
//! why uv's cache has none), which names the artifact and its trusted digest
//! ([`Claim`]); then hash the file before anything is written on the host, copy it ([`copy`])
//! through a temporary file in the host directory, hashing the bytes copied, and link it into
//! place only if they match, never over an existing file. Files airlock writes itself (pip's
//! response records) go through the same temporary-file-and-link step.

mod cargo;
mod copy;
mod go;
mod gosumdb;
mod maven;
mod npm;
mod pip;
mod registry;
mod unverified;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::caches::LayerRecord;
pub(crate) use registry::Registry;

/// The largest artifact promoted, in bytes (crates.io allows 10 MiB per crate; npm and PyPI
/// files are larger, a few hundred MiB at most).
pub(crate) const MAX_ARTIFACT: u64 = 1 << 30;

/// What happened to one entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub(crate) enum Outcome {
    /// Verified and copied into the host cache (or, with `--dry-run`, would be).
    Promoted {
        /// Where it went in the host cache.
        #[serde(serialize_with = "quoted")]
        to: PathBuf,
        /// What it was verified against.
        verified_by: String,
    },
    /// Verified, and the host cache already holds a file by that name (left as it is).
    Present {
        #[serde(serialize_with = "quoted")]
        to: PathBuf,
    },
    /// An artifact that did not verify: its bytes differ from what the registry publishes, or
    /// the registry could not vouch for it.
    Refused { reason: String },
    /// Not an artifact (index files, unpacked sources, links, special files): never promoted.
    Skipped { reason: String },
}

/// One entry of a layer and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Entry {
    /// The entry as the agent saw it (under the cache's place, `~/.cargo/...`); in JSON quoted
    /// as every sandbox-chosen name is (`airlock_session::quote`), so a name that is not UTF-8
    /// or holds control characters prints safely.
    #[serde(serialize_with = "quoted")]
    pub(crate) path: PathBuf,
    #[serde(flatten)]
    pub(crate) outcome: Outcome,
}

fn quoted<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&airlock_session::quote::path(p))
}

/// A verifier's answer for one file: the artifact it is, where it belongs in the host cache and
/// the digest its bytes must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    /// Relative to the host cache's root.
    pub(crate) dest: PathBuf,
    pub(crate) digest: Digest,
    /// The trust source, for the report (`index.crates.io`, `the host's registry index`).
    pub(crate) verified_by: String,
    /// What lands at `dest`.
    pub(crate) content: Content,
    /// A file airlock makes itself and places beside the artifact once the artifact is in the
    /// host cache (pip's response record): its path relative to the host cache's root, and its
    /// bytes. Never written over an existing file either.
    pub(crate) companion: Option<(PathBuf, Vec<u8>)>,
}

/// What a claim puts in the host cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Content {
    /// The layer's file, copied if its bytes have the claim's digest.
    Layer,
    /// Bytes airlock built from verified parts (pip's old response record around a verified
    /// body); the claim's digest is theirs.
    Built(Vec<u8>),
}

impl Claim {
    /// A claim that the layer's file, with `digest`, belongs at `dest`.
    pub(crate) fn layer(dest: PathBuf, digest: Digest, verified_by: String) -> Claim {
        Claim {
            dest,
            digest,
            verified_by,
            content: Content::Layer,
            companion: None,
        }
    }
}

/// A digest the bytes must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Digest {
    /// Maven repositories that publish nothing stronger (`.sha1`).
    Sha1([u8; 20]),
    Sha256([u8; 32]),
    Sha512(Box<[u8; 64]>),
}

/// A file of a layer, as a verifier sees it: its path relative to the layer, and where it is
/// on the host. Verifiers decide by the path and by trusted data; those that must look inside
/// an artifact to name it (pip) read it through [`copy::read_bounded`], and what they read is
/// only a claim.
#[derive(Debug)]
pub(crate) struct Candidate<'a> {
    pub(crate) rel: &'a Path,
    pub(crate) path: &'a Path,
}

impl Candidate<'_> {
    /// The components of `rel` as text; `None` when one is not UTF-8 (no registry names such a
    /// file) or is not a plain name.
    pub(crate) fn parts(&self) -> Option<Vec<&str>> {
        self.rel
            .components()
            .map(|p| match p {
                std::path::Component::Normal(s) => s.to_str(),
                _ => None,
            })
            .collect()
    }
}

/// A verifier's decision before any copy.
#[derive(Debug)]
pub(crate) enum Verdict {
    Claim(Claim),
    Refused(String),
    Skipped(String),
}

/// Options of one promotion.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) dry_run: bool,
    /// The registry client (host side, verified TLS).
    pub(crate) registry: Registry,
    /// The user's home (for `~/.npmrc`, pip's configuration).
    pub(crate) home: PathBuf,
    /// The go.sum an overlay session's workspace had when it started (kept in its directory:
    /// `caches::GO_SUM_FILE`), which Go modules are checked against; `None` for other modes or
    /// when there was none.
    pub(crate) go_sum: Option<PathBuf>,
}

/// The verifier of a layer, chosen by the cache it sits on.
#[derive(Debug)]
enum Verifier {
    Cargo(cargo::Cargo),
    Npm(npm::Npm),
    Pip(pip::Pip),
    Maven(maven::Maven),
    Go(go::Go),
    Uv,
    None,
}

impl Verifier {
    fn of(layer: &LayerRecord, home: &Path, go_sum: Option<&Path>) -> Verifier {
        let t = &layer.target;
        if t.ends_with(".cargo") {
            Verifier::Cargo(cargo::Cargo::new(&layer.lower))
        } else if t.ends_with(".npm") {
            Verifier::Npm(npm::Npm::new(&layer.upper, home))
        } else if t.ends_with(".cache/pip") {
            Verifier::Pip(pip::Pip::new(home))
        } else if t.ends_with(".m2/repository") {
            Verifier::Maven(maven::Maven::new(home))
        } else if t.ends_with("go/pkg/mod") {
            let env = |k: &str| std::env::var(k).ok();
            Verifier::Go(go::Go::new(go_sum, gosumdb::SumDb::from_env(&env, home)))
        } else if t.ends_with(".cache/uv") {
            Verifier::Uv
        } else {
            Verifier::None
        }
    }

    fn verify(&mut self, c: &Candidate<'_>, registry: &mut Registry, target: &Path) -> Verdict {
        match self {
            Verifier::Cargo(v) => v.verify(c, registry),
            Verifier::Npm(v) => v.verify(c, registry),
            Verifier::Pip(v) => v.verify(c, registry),
            Verifier::Maven(v) => v.verify(c, registry),
            Verifier::Go(v) => v.verify(c, registry),
            Verifier::Uv => unverified::uv(c),
            Verifier::None => Verdict::Skipped(format!(
                "airlock verifies the cargo, npm, pip, Maven and Go caches only; {} is not one",
                target.display()
            )),
        }
    }
}

/// Promotes what verifies in every layer of a session; one entry per file, link or special
/// file of the layers (directories are walked, not listed).
pub(crate) fn promote(layers: &[LayerRecord], opts: &mut Options) -> Vec<Entry> {
    let mut out = Vec::new();
    for layer in layers {
        promote_layer(layer, opts, &mut out);
    }
    out
}

fn promote_layer(layer: &LayerRecord, opts: &mut Options, out: &mut Vec<Entry>) {
    let mut verifier = Verifier::of(layer, &opts.home, opts.go_sum.as_deref());
    for f in walk::walk(&layer.upper) {
        let outcome = match f.problem {
            Some(reason) => Outcome::Skipped { reason },
            None => {
                let path = layer.upper.join(&f.rel);
                let c = Candidate {
                    rel: &f.rel,
                    path: &path,
                };
                let verdict = verifier.verify(&c, &mut opts.registry, &layer.target);
                decide(verdict, &layer.upper.join(&f.rel), &layer.lower, opts)
            }
        };
        out.push(Entry {
            path: layer.target.join(&f.rel),
            outcome,
        });
    }
}

/// Copies (or, dry, checks) a claimed artifact.
fn decide(verdict: Verdict, src: &Path, lower: &Path, opts: &Options) -> Outcome {
    let claim = match verdict {
        Verdict::Claim(c) => c,
        Verdict::Refused(reason) => return Outcome::Refused { reason },
        Verdict::Skipped(reason) => return Outcome::Skipped { reason },
    };
    let to = lower.join(&claim.dest);
    let source = match &claim.content {
        Content::Layer => copy::Source::File(src),
        Content::Built(bytes) => copy::Source::Bytes(bytes),
    };
    let copied = copy::copy_verified(source, &to, &claim.digest, opts.dry_run);
    if copied.is_ok() {
        if let Err(reason) = place_companion(&claim, lower, opts.dry_run) {
            return Outcome::Skipped { reason };
        }
    }
    match copied {
        Ok(copy::Copied::New) => Outcome::Promoted {
            to,
            verified_by: claim.verified_by,
        },
        Ok(copy::Copied::Present) => Outcome::Present { to },
        Err(copy::CopyError::Mismatch(reason)) => Outcome::Refused {
            reason: format!("{reason} ({})", claim.verified_by),
        },
        Err(copy::CopyError::Other(reason)) => Outcome::Skipped { reason },
    }
}

/// Writes the file airlock makes beside a claim's artifact (pip's record, Go's `.ziphash`)
/// once the artifact is in place, never over an existing file. One that cannot be written
/// leaves an artifact the tool checks again or ignores (it fetches again).
fn place_companion(claim: &Claim, lower: &Path, dry: bool) -> Result<(), String> {
    let Some((rel, bytes)) = &claim.companion else {
        return Ok(());
    };
    let at = lower.join(rel);
    let digest = copy::digest_of(bytes, &claim.digest);
    copy::copy_verified(copy::Source::Bytes(bytes), &at, &digest, dry)
        .map(|_| ())
        .map_err(|e| format!("verified, but {} could not be written: {e}", at.display()))
}

/// Walking a layer without following links.
mod walk {
    use std::path::{Path, PathBuf};

    /// A file of a layer; `problem` says why it is not even looked at.
    #[derive(Debug)]
    pub(super) struct File {
        pub(super) rel: PathBuf,
        pub(super) problem: Option<String>,
    }

    /// Every non-directory entry under `root`, sorted; links and special files come with the
    /// reason they are skipped; directories are entered only when `lstat` says they are
    /// directories (a link to one is an entry, not followed).
    ///
    /// Iterative (one directory open at a time); a directory nested deeper than
    /// [`MAX_DEPTH`](airlock_session::tree::MAX_DEPTH) levels is an entry with that problem, not
    /// read (the agent chooses the depth).
    pub(super) fn walk(root: &Path) -> Vec<File> {
        let mut out = Vec::new();
        let mut todo = vec![PathBuf::new()];
        while let Some(rel) = todo.pop() {
            visit(root, &rel, &mut out, &mut todo);
        }
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        out
    }

    /// The entries of `root/rel` into `out`, its directories into `todo`.
    fn visit(root: &Path, rel: &Path, out: &mut Vec<File>, todo: &mut Vec<PathBuf>) {
        if rel.components().count() > airlock_session::tree::MAX_DEPTH {
            out.push(File {
                rel: rel.to_path_buf(),
                problem: Some(format!(
                    "a directory nested deeper than {} levels: not read",
                    airlock_session::tree::MAX_DEPTH
                )),
            });
            return;
        }
        let dir = root.join(rel);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                out.push(File {
                    rel: rel.to_path_buf(),
                    problem: Some(format!("cannot read the directory: {e}")),
                });
                return;
            }
        };
        for e in entries.flatten() {
            let r = rel.join(e.file_name());
            let problem = match std::fs::symlink_metadata(root.join(&r)) {
                Ok(m) if m.is_dir() => {
                    todo.push(r);
                    continue;
                }
                Ok(m) if m.is_file() => None,
                Ok(m) if m.file_type().is_symlink() => {
                    Some("a symbolic link: links are never promoted".to_string())
                }
                Ok(m) => Some(format!(
                    "{}: only regular files are promoted",
                    airlock_session::changes::EntryType::of(&m).describe()
                )),
                Err(e) => Some(format!("cannot stat: {e}")),
            };
            out.push(File { rel: r, problem });
        }
    }
}

#[cfg(test)]
mod tests;
