//! The one way a file of a session's layer reaches the host cache: opened without following a
//! link or blocking (`airlock_session::changes::open_regular`), bounded in size, copied into a
//! temporary file next to its destination while hashing the very bytes copied, and linked into
//! place only when they match the trusted digest (`link(2)` never replaces an existing file).

use std::io::{Read, Write};
use std::path::Path;

use sha2::Digest as _;

use super::{Digest, MAX_ARTIFACT};

/// What the copy did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Copied {
    /// A new file in the host cache (dry run: would be).
    New,
    /// The host cache has that file already; it was left as it is.
    Present,
}

/// Why nothing was copied.
#[derive(Debug)]
pub(super) enum CopyError {
    /// The bytes do not have the trusted digest.
    Mismatch(String),
    /// Anything else: unreadable, not a regular file, too large, an I/O error on the host side.
    Other(String),
}

/// Where the bytes to place come from.
#[derive(Debug, Clone, Copy)]
pub(super) enum Source<'a> {
    /// A file of a session's layer (opened without following links, each time it is read).
    File(&'a Path),
    /// Bytes airlock built itself.
    Bytes(&'a [u8]),
}

impl<'a> Source<'a> {
    fn open(self) -> Result<Box<dyn Read + 'a>, CopyError> {
        match self {
            Source::File(p) => Ok(Box::new(open_bounded(p)?)),
            Source::Bytes(b) => Ok(Box::new(b)),
        }
    }
}

/// Opens a layer's file: a regular file, not a link, at most [`MAX_ARTIFACT`] bytes.
fn open_bounded(p: &Path) -> Result<std::fs::File, CopyError> {
    let (file, meta) =
        airlock_session::changes::open_regular(p).map_err(|e| CopyError::Other(e.to_string()))?;
    if meta.len() > MAX_ARTIFACT {
        return Err(CopyError::Other(format!(
            "{} bytes, over the {MAX_ARTIFACT}-byte limit",
            meta.len()
        )));
    }
    Ok(file)
}

/// A layer's file read whole (at most `limit` bytes, never through a link), for verifiers
/// that look inside an artifact to name it; what they find there is only a claim.
pub(super) fn read_bounded(p: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let file = open_bounded(p).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    if out.len() as u64 > limit {
        return Err(format!("{} is over {limit} bytes", p.display()));
    }
    Ok(out)
}

/// The digest of `bytes`, of the same kind as `like`.
pub(super) fn digest_of(bytes: &[u8], like: &Digest) -> Digest {
    hash(bytes, std::io::sink(), like).unwrap_or_else(|_| like.clone())
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Mismatch(s) | CopyError::Other(s) => f.write_str(s),
        }
    }
}

/// Copies `src` to `dest` if its bytes have `digest`; `dry` only reads and hashes.
pub(super) fn copy_verified(
    src: Source<'_>,
    dest: &Path,
    digest: &Digest,
    dry: bool,
) -> Result<Copied, CopyError> {
    // Checked once before anything is written on the host (not even a directory), and again
    // on the bytes actually copied.
    let got = hash(src.open()?, std::io::sink(), digest)?;
    check(&got, digest)?;
    if std::fs::symlink_metadata(dest).is_ok() {
        return Ok(Copied::Present);
    }
    if dry {
        return Ok(Copied::New);
    }
    let file = src.open()?;
    let dir = dest
        .parent()
        .ok_or_else(|| CopyError::Other(format!("{} has no parent", dest.display())))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| CopyError::Other(format!("cannot create {}: {e}", dir.display())))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".airlock-promote-")
        .tempfile_in(dir)
        .map_err(|e| CopyError::Other(format!("cannot create a file in {}: {e}", dir.display())))?;
    let got = hash(file, tmp.as_file_mut(), digest)?;
    check(&got, digest)?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| CopyError::Other(format!("cannot write {}: {e}", dir.display())))?;
    set_readable(tmp.path())?;
    match std::fs::hard_link(tmp.path(), dest) {
        Ok(()) => Ok(Copied::New),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Copied::Present),
        Err(e) => Err(CopyError::Other(format!(
            "cannot place {}: {e}",
            dest.display()
        ))),
    }
    // `tmp` is removed when dropped.
}

/// Cache files are readable by everyone and writable by their owner, as the tools make them.
fn set_readable(p: &Path) -> Result<(), CopyError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| CopyError::Other(format!("cannot set the mode of {}: {e}", p.display())))
}

/// Reads `src` to its end (at most [`MAX_ARTIFACT`] bytes), writing each chunk to `out`, and
/// returns the digest of the kind `like` asks for.
fn hash(mut src: impl Read, mut out: impl Write, like: &Digest) -> Result<Digest, CopyError> {
    let mut s1 = sha1::Sha1::new();
    let mut s256 = sha2::Sha256::new();
    let mut s512 = sha2::Sha512::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total: u64 = 0;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Other(format!("cannot read: {e}"))),
        };
        total += n as u64;
        if total > MAX_ARTIFACT {
            return Err(CopyError::Other(format!(
                "over the {MAX_ARTIFACT}-byte limit"
            )));
        }
        let chunk = &buf[..n];
        match like {
            Digest::Sha1(_) => s1.update(chunk),
            Digest::Sha256(_) => s256.update(chunk),
            Digest::Sha512(_) => s512.update(chunk),
        }
        out.write_all(chunk)
            .map_err(|e| CopyError::Other(format!("cannot write: {e}")))?;
    }
    Ok(match like {
        Digest::Sha1(_) => Digest::Sha1(s1.finalize().into()),
        Digest::Sha256(_) => Digest::Sha256(s256.finalize().into()),
        Digest::Sha512(_) => Digest::Sha512(Box::new(s512.finalize().into())),
    })
}

fn check(got: &Digest, want: &Digest) -> Result<(), CopyError> {
    if got == want {
        return Ok(());
    }
    Err(CopyError::Mismatch(format!(
        "content does not match: {} is {}, the registry says {}",
        kind(want),
        show(got),
        show(want)
    )))
}

fn kind(d: &Digest) -> &'static str {
    match d {
        Digest::Sha1(_) => "sha1",
        Digest::Sha256(_) => "sha256",
        Digest::Sha512(_) => "sha512",
    }
}

fn show(d: &Digest) -> String {
    match d {
        Digest::Sha1(b) => hex::encode(b),
        Digest::Sha256(b) => hex::encode(b),
        Digest::Sha512(b) => hex::encode(&b[..]),
    }
}
