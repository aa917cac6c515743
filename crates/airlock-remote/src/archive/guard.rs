//! The bounds [`super::unpack_limited`] keeps, and the reader that enforces the ones tar-rs
//! cannot: tar-rs reads a GNU long-name/long-link record and a PAX record whole into memory
//! before it yields the entry they describe, so a hostile stream can make it allocate any size
//! with a single header. [`HeaderGuard`] sits between the stream and tar-rs, reads every
//! 512-byte header itself (POSIX.1-2001 `pax` format; GNU tar's manual, "Basic Tar Format") and
//! refuses a metadata record larger than [`Limits::meta_bytes`] before tar-rs reads a byte of
//! it.

use std::cell::RefCell;
use std::io::Read;
use std::rc::Rc;

use super::ArchiveError;

/// Bounds on what one unpacking may create or hold. Sizes are apparent sizes in bytes (a sparse
/// file counts with its length, as it is written out whole), counts are entries of any type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of file content, all files together.
    pub total_bytes: u64,
    /// Bytes of one file.
    pub file_bytes: u64,
    /// Entries (files, directories, links, whiteouts).
    pub entries: u64,
    /// Bytes of an entry's path or a link's target (Linux's `PATH_MAX` is 4096).
    pub path_bytes: u64,
    /// Components of an entry's path (directories nested in directories).
    pub depth: u64,
    /// Bytes of one metadata record: a GNU long name/long link or a PAX extended header.
    pub meta_bytes: u64,
}

/// The environment variable raising [`Limits::total_bytes`] and [`Limits::file_bytes`] of a
/// change import (a size: `8G`, `500M`, bytes without a suffix).
pub const ENV_SIZE: &str = "AIRLOCK_IMPORT_MAX_SIZE";
/// The environment variable raising [`Limits::entries`] of a change import.
pub const ENV_FILES: &str = "AIRLOCK_IMPORT_MAX_FILES";

impl Limits {
    /// The bounds of importing a box's change layer: 4 GiB in all, 1 GiB a file (the
    /// podman-box upper layer is a 1 GiB tmpfs, so a bigger file can only be a sparse one),
    /// 500,000 entries, paths of `PATH_MAX`, 256 levels, 64 KiB metadata records.
    pub const CHANGES: Limits = Limits {
        total_bytes: 4 << 30,
        file_bytes: 1 << 30,
        entries: 500_000,
        path_bytes: 4096,
        depth: 256,
        meta_bytes: 64 << 10,
    };

    /// The bounds of a workspace upload (the local side's own tree: sizes unbounded, headers
    /// bounded all the same).
    pub const WORKSPACE: Limits = Limits {
        total_bytes: u64::MAX,
        file_bytes: u64::MAX,
        entries: u64::MAX,
        path_bytes: 4096,
        depth: 1024,
        meta_bytes: 1 << 20,
    };

    /// [`Limits::CHANGES`] raised by [`ENV_SIZE`] (both the total and the per-file bound) and
    /// [`ENV_FILES`] when set.
    ///
    /// # Errors
    /// A value that is not a size or a count, naming the variable.
    pub fn changes_from_env() -> Result<Limits, String> {
        let mut l = Limits::CHANGES;
        if let Ok(v) = std::env::var(ENV_SIZE) {
            let n = airlock_policy::size::parse_size(&v)
                .map_err(|e| format!("{ENV_SIZE}={v:?} is not a size (like 8G): {e}"))?;
            l.total_bytes = n;
            l.file_bytes = n;
        }
        if let Ok(v) = std::env::var(ENV_FILES) {
            l.entries = v
                .parse()
                .map_err(|_| format!("{ENV_FILES}={v:?} is not a count of files"))?;
        }
        Ok(l)
    }
}

/// Where a violation the guard found is kept for [`super::unpack_limited`] (tar-rs turns the
/// reader's error into its own).
pub(super) type Violation = Rc<RefCell<Option<ArchiveError>>>;

const BLOCK: usize = 512;

/// A reader passing a tar stream through unchanged while checking each header's metadata
/// records against [`Limits::meta_bytes`]; on a violation it records the error in `violation`
/// and fails the read.
pub(super) struct HeaderGuard<R> {
    inner: R,
    limits: Limits,
    violation: Violation,
    /// Bytes of the current entry's data (padded) still to pass before the next header.
    data_left: u64,
    /// A header or metadata record read ahead, being handed out.
    out: Vec<u8>,
    out_at: usize,
    /// A PAX `size` for the next entry (it overrides the header's).
    pax_size: Option<u64>,
    /// The end-of-archive block was seen: a stream ending after it ended where it should.
    at_end: bool,
}

impl<R: Read> HeaderGuard<R> {
    pub(super) fn new(inner: R, limits: Limits, violation: Violation) -> Self {
        HeaderGuard {
            inner,
            limits,
            violation,
            data_left: 0,
            out: Vec::new(),
            out_at: 0,
            pax_size: None,
            at_end: false,
        }
    }

    fn refuse(&self, e: ArchiveError) -> std::io::Error {
        let msg = e.to_string();
        *self.violation.borrow_mut() = Some(e);
        std::io::Error::other(msg)
    }

    /// Reads the next header (and a metadata record's body) into `out`; `Ok(false)` at the
    /// stream's end.
    fn next_header(&mut self) -> std::io::Result<bool> {
        let mut block = [0u8; BLOCK];
        let got = read_full(&mut self.inner, &mut block)?;
        if got == 0 && self.at_end {
            return Ok(false);
        }
        // A stream that stops before its end block (a box that died, a connection cut, a
        // hostile sender) would otherwise read as a complete archive with fewer entries.
        if got == 0 {
            return Err(self.refuse(ArchiveError::Truncated(
                "no end-of-archive block after the last entry",
            )));
        }
        if got < BLOCK {
            return Err(self.refuse(ArchiveError::Truncated("inside a header")));
        }
        self.out.clear();
        self.out.extend_from_slice(&block[..got]);
        self.out_at = 0;
        if block.iter().all(|&b| b == 0) {
            self.at_end = true;
            return Ok(true); // the end blocks
        }
        let header = tar::Header::from_byte_slice(&block);
        let name = String::from_utf8_lossy(&header.path_bytes()).into_owned();
        let size = header.entry_size()?;
        let kind = header.entry_type();
        let meta = kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions();
        if kind.is_gnu_sparse() || header.as_gnu().is_some_and(|g| g.is_extended()) {
            return Err(self.refuse(ArchiveError::Refused {
                path: name,
                reason: "a sparse entry",
            }));
        }
        if meta {
            if size > self.limits.meta_bytes {
                return Err(self.refuse(ArchiveError::Limit {
                    limit: "size of a metadata record (GNU long name/link or PAX header)",
                    entry: name,
                    value: size,
                    max: self.limits.meta_bytes,
                    raise: "a box does not need more: the archive is hostile or broken",
                }));
            }
            // Bounded by meta_bytes just above.
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            let padded = size.div_ceil(BLOCK) * BLOCK;
            let at = self.out.len();
            self.out.resize(at + padded, 0);
            let got = read_full(&mut self.inner, &mut self.out[at..])?;
            if got < padded {
                return Err(self.refuse(ArchiveError::Truncated("inside a metadata record")));
            }
            self.out.truncate(at + got);
            if kind.is_pax_local_extensions() {
                let body = &self.out[at..at + size.min(got)];
                self.pax_size = pax_size(body);
            }
            self.data_left = 0;
        } else {
            let size = self.pax_size.take().unwrap_or(size);
            self.data_left = padded(size);
        }
        Ok(true)
    }
}

impl<R: Read> Read for HeaderGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.out_at < self.out.len() {
            let n = buf.len().min(self.out.len() - self.out_at);
            buf[..n].copy_from_slice(&self.out[self.out_at..self.out_at + n]);
            self.out_at += n;
            return Ok(n);
        }
        if self.data_left > 0 {
            let want = buf
                .len()
                .min(usize::try_from(self.data_left).unwrap_or(usize::MAX));
            let n = self.inner.read(&mut buf[..want])?;
            if n == 0 && want > 0 {
                return Err(self.refuse(ArchiveError::Truncated("inside an entry's data")));
            }
            self.data_left -= n as u64;
            return Ok(n);
        }
        if !self.next_header()? {
            return Ok(0);
        }
        self.read(buf)
    }
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut at = 0;
    while at < buf.len() {
        match r.read(&mut buf[at..]) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(at)
}

/// The `size` key of a PAX extended header body (`LEN key=value\n` records).
fn pax_size(body: &[u8]) -> Option<u64> {
    let mut size = None;
    for ext in tar::PaxExtensions::new(body).flatten() {
        if ext.key() == Ok("size") {
            size = ext.value().ok().and_then(|v| v.parse().ok());
        }
    }
    size
}
