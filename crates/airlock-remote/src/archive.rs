//! The tar streams a box exchanges with the local side: the workspace upload
//! ([`crate::ctl::RECEIVE`]) and the session's change layer ([`crate::ctl::EXPORT`], brought home
//! by [`import_changes`]).
//!
//! Both ends face hostile input: the box's export is written from the agent's overlay upper
//! layer, and a box (or whatever sits between it and the local side) may send anything. So
//! unpacking ([`unpack`]) never follows a link and takes only what a tree of source code needs:
//! - paths must be relative, without `..`, and every directory on the way must be a real
//!   directory created or found in the destination (never a symbolic link, so an entry cannot be
//!   written through a link an earlier entry planted);
//! - entry types: regular files, directories and symbolic links (stored as they are, never
//!   followed: the local session's upper layer holds links the agent made in a local run too,
//!   and the review commands read it without following them); in a change layer also overlayfs
//!   whiteouts (a character device 0:0) and opaque directories (the `user.overlay.opaque` xattr,
//!   carried as a PAX `SCHILY.xattr.` record);
//! - refused: hard links (a name for a file outside the tree), block and character devices
//!   (other than a whiteout), FIFOs, sparse and unknown entries, an entry that already exists;
//! - modes lose setuid, setgid and sticky bits; owners are the unpacking user's (or the one
//!   given);
//! - bounded ([`Limits`]): bytes in all and per file (apparent sizes: a sparse file counts with
//!   its length), entries, path length and depth, and the size of a metadata record (GNU long
//!   name/link, PAX header), each checked before anything is allocated or written for the
//!   entry, so a hostile stream can fill neither the local side's memory nor its disk.
//!
//! Writing ([`write_tree`]) walks a directory without following links: regular files are
//! opened with `O_NOFOLLOW` and checked with `fstat`; FIFOs and sockets are left out (they hold
//! no content) and reported.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

mod guard;

pub use guard::{Limits, ENV_FILES, ENV_SIZE};

/// The PAX record carrying a directory's overlayfs opaque mark (GNU tar and bsdtar spell
/// extended attributes `SCHILY.xattr.NAME`).
const PAX_OPAQUE: &str = "SCHILY.xattr.user.overlay.opaque";
/// The same mark as a root-owned overlay writes it.
const PAX_OPAQUE_TRUSTED: &str = "SCHILY.xattr.trusted.overlay.opaque";

/// What a tar stream holds, which decides what [`unpack`] accepts and [`write_tree`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// A workspace (the upload): files, directories, symbolic links.
    Workspace,
    /// An overlay upper layer: also whiteouts and opaque directories.
    Changes,
}

/// Errors of writing or unpacking an archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// An entry the rules refuse; nothing after it was unpacked.
    #[error(
        "archive entry {} refused: {reason}",
        airlock_session::quote::name(path)
    )]
    Refused {
        /// The entry's path as the archive gives it.
        path: String,
        /// Which rule refused it.
        reason: &'static str,
    },
    /// A file or directory could not be read or written.
    #[error("{what} {}: {error}", airlock_session::quote::path(path))]
    Io {
        /// What was being done (`cannot create`, `cannot read`).
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        /// The cause, printed in the message (not a `source()`, so a chain never repeats it).
        error: std::io::Error,
    },
    /// The stream is larger than a bound of [`Limits`]; nothing of the entry was written.
    #[error(
        "archive entry {} refused: its {limit} ({value}) is over the limit of {max}; {raise}",
        airlock_session::quote::name(entry)
    )]
    Limit {
        /// Which bound (`total size of the files`, `size of a file`, ...).
        limit: &'static str,
        /// The entry's path as the archive gives it.
        entry: String,
        /// The entry's value (bytes, entries, components).
        value: u64,
        /// The bound.
        max: u64,
        /// How to raise it (the variable to set), or why it cannot be.
        raise: &'static str,
    },
    /// The stream is not a valid tar archive.
    #[error("cannot read the archive: {0}")]
    Read(std::io::Error),
    /// The stream ended before the archive did (where, as words); nothing of it is kept.
    #[error("the archive ends early ({0}): the stream broke off or was cut")]
    Truncated(&'static str),
    /// The program that sent the stream failed, or sent more than an archive; nothing of it
    /// is kept.
    #[error("{0}")]
    Sender(String),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError {
    let path = path.to_path_buf();
    move |source| ArchiveError::Io {
        what,
        path,
        error: source,
    }
}

/// What [`unpack`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// Entries created (files, directories, links, whiteouts).
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Unpacks the tar stream `input` into `dest` as [`unpack_limited`] with [`Limits::WORKSPACE`]
/// (the workspace upload).
///
/// # Errors
/// As [`unpack_limited`].
pub fn unpack(
    input: impl Read,
    dest: &Path,
    content: Content,
    owner: Option<(u32, u32)>,
) -> Result<Unpacked, ArchiveError> {
    unpack_limited(input, dest, content, owner, &Limits::WORKSPACE)
}

/// Unpacks the tar stream `input` into `dest` (which must exist) by the rules of the module
/// doc for `content`, giving every entry to `owner` (uid, gid) when set, within `limits`.
///
/// # Errors
/// [`ArchiveError::Refused`] for the first entry that breaks a rule and
/// [`ArchiveError::Limit`] for the first that goes over a bound (entries before it stay
/// unpacked: callers unpack into a fresh directory and remove it on error), `Io` when `dest`
/// cannot be written, `Read` for a stream that is not a tar archive.
pub fn unpack_limited(
    input: impl Read,
    dest: &Path,
    content: Content,
    owner: Option<(u32, u32)>,
    limits: &Limits,
) -> Result<Unpacked, ArchiveError> {
    let violation = guard::Violation::default();
    let mut archive = tar::Archive::new(guard::HeaderGuard::new(input, *limits, violation.clone()));
    // A read error caused by the guard is its violation.
    let read = |e: std::io::Error| {
        violation
            .borrow_mut()
            .take()
            .unwrap_or(ArchiveError::Read(e))
    };
    let mut done = Unpacked::default();
    for entry in archive.entries().map_err(read)? {
        let mut entry = entry.map_err(read)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let refused = |reason| ArchiveError::Refused {
            path: raw.clone(),
            reason,
        };
        let over = |limit, value, max| ArchiveError::Limit {
            limit,
            entry: raw.clone(),
            value,
            max,
            raise: RAISE,
        };
        let rel = safe_relative(&entry.path().map_err(read)?).ok_or_else(|| {
            refused("not a relative path inside the tree (absolute, `..` or empty)")
        })?;
        if rel.as_os_str().is_empty() {
            continue; // `./` itself
        }
        check_entry(&entry, &rel, &done, limits, &over, &read)?;
        let target = dest.join(&rel);
        make_parents(dest, &rel, owner).map_err(|e| match e {
            Parent::NotDir => refused("a directory on its path is not a directory"),
            Parent::Io(e) => e,
        })?;
        if fs::symlink_metadata(&target).is_ok() {
            return Err(refused("appears twice (or names an existing entry)"));
        }
        let header = entry.header().clone();
        let mode = header.mode().map_err(read)? & 0o777;
        match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(io("cannot create", &target))?;
                let size = entry.size();
                done.bytes +=
                    std::io::copy(&mut (&mut entry).take(size), &mut f).map_err(
                        |e| match violation.borrow_mut().take() {
                            Some(v) => v,
                            None => io("cannot write", &target)(e),
                        },
                    )?;
                // umask may have narrowed it.
                f.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(io("cannot set the mode of", &target))?;
            }
            tar::EntryType::Directory => {
                fs::create_dir(&target).map_err(io("cannot create", &target))?;
                // The owner keeps the right to fill it.
                fs::set_permissions(&target, fs::Permissions::from_mode(mode | 0o700))
                    .map_err(io("cannot set the mode of", &target))?;
                if content == Content::Changes
                    && is_opaque(&mut entry).map_err(|e| match e {
                        ArchiveError::Read(e) => read(e),
                        e => e,
                    })?
                {
                    xattr::set(&target, "user.overlay.opaque", b"y")
                        .map_err(io("cannot mark opaque", &target))?;
                }
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(read)?
                    .ok_or_else(|| refused("a symbolic link without a target"))?;
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(io("cannot create the link", &target))?;
            }
            tar::EntryType::Char if content == Content::Changes => {
                let dev = (header.device_major(), header.device_minor());
                if !matches!(dev, (Ok(Some(0)), Ok(Some(0)))) {
                    return Err(refused("a character device (only a 0:0 whiteout is taken)"));
                }
                nix::sys::stat::mknod(
                    &target,
                    nix::sys::stat::SFlag::S_IFCHR,
                    nix::sys::stat::Mode::empty(),
                    0,
                )
                .map_err(|e| ArchiveError::Io {
                    what: "cannot create the whiteout",
                    path: target.clone(),
                    error: e.into(),
                })?;
            }
            tar::EntryType::Link => return Err(refused("a hard link")),
            tar::EntryType::Char | tar::EntryType::Block => return Err(refused("a device node")),
            tar::EntryType::Fifo => return Err(refused("a FIFO")),
            _ => return Err(refused("an entry type other than file, directory or link")),
        }
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(&target, Some(uid), Some(gid))
                .map_err(io("cannot change the owner of", &target))?;
        }
        done.entries += 1;
    }
    Ok(done)
}

/// What a [`ArchiveError::Limit`] of a change import says to do.
const RAISE: &str = "set AIRLOCK_IMPORT_MAX_SIZE (bytes, e.g. 8G: total and per file) or AIRLOCK_IMPORT_MAX_FILES (entries) for the command that imports (`airlock run`, `stop`, `rm`) to allow more";

/// Checks `entry` against `limits` before anything is written for it: its path's length and
/// depth, a link's target, the count of entries and a file's (apparent) size, alone and
/// added to what `done` wrote.
fn check_entry<R: Read>(
    entry: &tar::Entry<'_, R>,
    rel: &Path,
    done: &Unpacked,
    limits: &Limits,
    over: &impl Fn(&'static str, u64, u64) -> ArchiveError,
    read: &impl Fn(std::io::Error) -> ArchiveError,
) -> Result<(), ArchiveError> {
    let path_len = entry.path_bytes().len() as u64;
    if path_len > limits.path_bytes {
        return Err(over("path length in bytes", path_len, limits.path_bytes));
    }
    let depth = rel.components().count() as u64;
    if depth > limits.depth {
        return Err(over("depth in directories", depth, limits.depth));
    }
    if let Some(link) = entry.link_name_bytes() {
        let len = link.len() as u64;
        if len > limits.path_bytes {
            return Err(over("link target length in bytes", len, limits.path_bytes));
        }
    }
    if done.entries >= limits.entries {
        return Err(over("count of entries", done.entries + 1, limits.entries));
    }
    let kind = entry.header().entry_type();
    if matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous) {
        let size = entry.header().entry_size().map_err(read)?.max(entry.size());
        if size > limits.file_bytes {
            return Err(over("size of a file in bytes", size, limits.file_bytes));
        }
        let total = done.bytes.saturating_add(size);
        if total > limits.total_bytes {
            return Err(over(
                "total size of the files in bytes",
                total,
                limits.total_bytes,
            ));
        }
    }
    Ok(())
}

/// `path` as a relative path of normal components only (`.` dropped), or `None` when it is
/// absolute or has a `..`.
fn safe_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

enum Parent {
    NotDir,
    Io(ArchiveError),
}

/// Creates the directories on `rel`'s way under `dest` that do not exist; every one that
/// exists must be a real directory (checked without following a link).
fn make_parents(dest: &Path, rel: &Path, owner: Option<(u32, u32)>) -> Result<(), Parent> {
    let mut at = dest.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for c in parent.components() {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => return Err(Parent::NotDir),
            Err(_) => {
                fs::create_dir(&at).map_err(|e| Parent::Io(io("cannot create", &at)(e)))?;
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::lchown(&at, Some(uid), Some(gid))
                        .map_err(|e| Parent::Io(io("cannot change the owner of", &at)(e)))?;
                }
            }
        }
    }
    Ok(())
}

fn is_opaque<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<bool, ArchiveError> {
    let Some(exts) = entry.pax_extensions().map_err(ArchiveError::Read)? else {
        return Ok(false);
    };
    for ext in exts {
        let ext = ext.map_err(ArchiveError::Read)?;
        if matches!(ext.key(), Ok(PAX_OPAQUE | PAX_OPAQUE_TRUSTED)) && ext.value_bytes() == b"y" {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Unpacks a box's change layer (the stream of [`crate::ctl::EXPORT`]) into `upper`, a new
/// directory this creates (its parent must exist), so `airlock diff`/`merge` read it as a local
/// session's upper layer, within `limits` (normally [`Limits::changes_from_env`]). On error
/// `upper` is removed again.
///
/// # Errors
/// As [`unpack_limited`] with [`Content::Changes`]; `upper` existing already is an `Io` error.
pub fn import_changes(
    input: impl Read,
    upper: &Path,
    limits: &Limits,
) -> Result<Unpacked, ArchiveError> {
    fs::create_dir(upper).map_err(io("cannot create", upper))?;
    unpack_limited(input, upper, Content::Changes, None, limits).inspect_err(|_| {
        let _ = fs::remove_dir_all(upper);
    })
}

/// Bytes a box may send after its archive's end block (tar pads an archive to a record: 10
/// KiB for GNU tar); more is refused (a sender that goes on is not an export).
pub const MAX_TRAILER: u64 = 1 << 20;

/// Imports the change layer a box's exec sends ([`crate::ctl::EXPORT`]) into `upper` as
/// [`import_changes`] does, as the bytes arrive: at most a few chunks of the stream are in
/// memory at any time, every bound of `limits` is checked before an entry is written, and
/// on any error the exec is given up (the stream dropped, which ends it) and `upper` removed:
/// nothing half-imported stays. After the archive's end, at most [`MAX_TRAILER`] bytes may
/// follow, and the exec must exit 0.
///
/// # Errors
/// As [`import_changes`]; [`ArchiveError::Truncated`] for a stream that stops early;
/// [`ArchiveError::Sender`] when the exec failed or sent more after the archive.
pub fn import_stream(
    mut stream: crate::ExecStream,
    upper: &Path,
    limits: &Limits,
) -> Result<Unpacked, ArchiveError> {
    let done = import_changes(&mut stream, upper, limits)?;
    let mut after = || -> Result<(), ArchiveError> {
        let trailing = std::io::copy(
            &mut (&mut stream).take(MAX_TRAILER + 1),
            &mut std::io::sink(),
        )
        .map_err(ArchiveError::Read)?;
        if trailing > MAX_TRAILER {
            return Err(ArchiveError::Sender(format!(
                "the sender went on for more than {MAX_TRAILER} bytes after the archive's end"
            )));
        }
        Ok(())
    };
    let end = after().and_then(|()| {
        stream
            .finish()
            .map_err(|e| ArchiveError::Sender(e.to_string()))
    });
    let end = end.and_then(|end| {
        if end.status == 0 {
            return Ok(());
        }
        Err(ArchiveError::Sender(format!(
            "the exporting program failed (exit {}): {}",
            end.status,
            airlock_session::quote::visible(String::from_utf8_lossy(&end.stderr).trim())
        )))
    });
    if let Err(e) = end {
        let _ = fs::remove_dir_all(upper);
        return Err(e);
    }
    Ok(done)
}

/// Writes the tree under `root` as a tar stream to `out`, without following links (see the
/// module doc); returns the paths left out (FIFOs, sockets, devices other than whiteouts).
///
/// # Errors
/// A file or directory that cannot be read, a tree nested deeper than
/// [`airlock_session::tree::MAX_DEPTH`] levels (refused by name), or `out` failing.
pub fn write_tree(
    root: &Path,
    out: impl Write,
    content: Content,
) -> Result<Vec<PathBuf>, ArchiveError> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut skipped = Vec::new();
    walk(root, &mut builder, content, &mut skipped)?;
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io("cannot write the archive of", root))?;
    Ok(skipped)
}

/// Appends every entry below `root` to `builder`, sorted, each directory before what it holds.
/// Iterative (a stack of sorted listings, one directory open at a time): the tree may be the
/// agent's, which chooses its depth; deeper than [`airlock_session::tree::MAX_DEPTH`] levels
/// is refused by name.
fn walk<W: Write>(
    root: &Path,
    builder: &mut tar::Builder<W>,
    content: Content,
    skipped: &mut Vec<PathBuf>,
) -> Result<(), ArchiveError> {
    let mut stack = vec![(PathBuf::new(), sorted_names(root, Path::new(""))?)];
    while let Some((dir_rel, names)) = stack.last_mut() {
        let Some(name) = names.pop() else {
            stack.pop();
            continue;
        };
        let rel = dir_rel.join(&name);
        if append(root, &rel, builder, content, skipped)? {
            if rel.components().count() > airlock_session::tree::MAX_DEPTH {
                return Err(ArchiveError::Io {
                    what: "refused to archive",
                    path: root.join(&rel),
                    error: std::io::Error::other(format!(
                        "nested deeper than {} directory levels, the most airlock walks",
                        airlock_session::tree::MAX_DEPTH
                    )),
                });
            }
            let names = sorted_names(root, &rel)?;
            stack.push((rel, names));
        }
    }
    Ok(())
}

/// The names in `root/rel`, sorted in reverse (popped from the end: ascending).
fn sorted_names(root: &Path, rel: &Path) -> Result<Vec<std::ffi::OsString>, ArchiveError> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(io("cannot read", &dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io("cannot read", &dir))?;
    names.sort();
    names.reverse();
    Ok(names)
}

/// Appends entry `rel` of `root` (a directory's header only); true when it is a directory to
/// walk into.
fn append<W: Write>(
    root: &Path,
    rel: &Path,
    builder: &mut tar::Builder<W>,
    content: Content,
    skipped: &mut Vec<PathBuf>,
) -> Result<bool, ArchiveError> {
    let path = root.join(rel);
    let m = fs::symlink_metadata(&path).map_err(io("cannot read", &path))?;
    let ft = m.file_type();
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&m, tar::HeaderMode::Deterministic);
    header.set_mode(m.mode() & 0o777);
    let err = io("cannot archive", &path);
    if ft.is_dir() {
        if content == Content::Changes && is_opaque_dir(&path) {
            builder
                .append_pax_extensions([(PAX_OPAQUE, b"y".as_slice())])
                .map_err(io("cannot archive", &path))?;
        }
        header.set_size(0);
        builder
            .append_data(&mut header, rel, std::io::empty())
            .map_err(err)?;
        return Ok(true);
    } else if ft.is_file() {
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(io("cannot open", &path))?;
        let fm = f.metadata().map_err(io("cannot read", &path))?;
        if !fm.is_file() {
            skipped.push(rel.to_path_buf());
            return Ok(false);
        }
        header.set_size(fm.len());
        builder
            .append_data(&mut header, rel, f.take(fm.len()))
            .map_err(err)?;
    } else if ft.is_symlink() {
        let target = fs::read_link(&path).map_err(io("cannot read the link", &path))?;
        header.set_size(0);
        builder
            .append_link(&mut header, rel, &target)
            .map_err(err)?;
    } else if content == Content::Changes && is_whiteout(&m) {
        header.set_entry_type(tar::EntryType::Char);
        header
            .set_device_major(0)
            .map_err(io("cannot archive", &path))?;
        header
            .set_device_minor(0)
            .map_err(io("cannot archive", &path))?;
        header.set_size(0);
        builder
            .append_data(&mut header, rel, std::io::empty())
            .map_err(err)?;
    } else {
        skipped.push(rel.to_path_buf());
    }
    Ok(false)
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque_dir(dir: &Path) -> bool {
    ["user.overlay.opaque", "trusted.overlay.opaque"]
        .iter()
        .any(|a| matches!(xattr::get(dir, a), Ok(Some(v)) if v == b"y"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw tar entry: name written straight into the header (bypassing the builder's own
    /// path checks, as a hostile box would).
    fn raw(name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_old();
        {
            let bytes = h.as_old_mut();
            bytes.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                bytes.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn archive(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out: Vec<u8> = entries.concat();
        out.extend_from_slice(&[0; 1024]);
        out
    }

    fn device(name: &str, kind: tar::EntryType, major: u32, minor: u32) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).expect("path");
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(0);
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    /// Makes `depth` nested `d` directories below `root`, a file at the bottom.
    fn nest(root: &Path, depth: usize) {
        let mut cwd = std::fs::File::open(root).expect("open");
        for _ in 0..depth {
            nix::sys::stat::mkdirat(&cwd, "d", nix::sys::stat::Mode::S_IRWXU).expect("mkdirat");
            cwd = nix::fcntl::openat(
                &cwd,
                "d",
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
                nix::sys::stat::Mode::empty(),
            )
            .map(std::fs::File::from)
            .expect("openat");
        }
        nix::sys::stat::mknodat(
            &cwd,
            "leaf",
            nix::sys::stat::SFlag::S_IFREG,
            nix::sys::stat::Mode::S_IRUSR,
            0,
        )
        .expect("leaf");
    }

    #[test]
    fn deep_trees_are_archived_within_the_bound_and_refused_beyond() {
        let max = airlock_session::tree::MAX_DEPTH;
        for (depth, ok) in [(max, true), (max + 1, false), (3_000, false)] {
            let t = tempfile::tempdir().expect("tempdir");
            nest(t.path(), depth);
            let mut out = Vec::new();
            match write_tree(t.path(), &mut out, Content::Changes) {
                Ok(_) if ok => {
                    let n = tar::Archive::new(&out[..]).entries().expect("tar").count();
                    assert_eq!(n, depth + 1, "every level and the leaf");
                }
                Err(e) if !ok => {
                    let m = e.to_string();
                    assert!(m.contains("deeper than 1024"), "{m}");
                    assert!(m.contains("/d/d/d"), "names the path: {m}");
                }
                other => panic!("depth {depth}: {other:?}"),
            }
        }
    }

    #[test]
    fn hostile_entries_are_refused_and_nothing_lands_outside() {
        let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
            (
                "dotdot",
                vec![raw("../escaped", tar::EntryType::Regular, None, b"x")],
            ),
            (
                "nested dotdot",
                vec![raw("a/../../escaped", tar::EntryType::Regular, None, b"x")],
            ),
            (
                "absolute",
                vec![raw("/tmp/escaped", tar::EntryType::Regular, None, b"x")],
            ),
            (
                "write through a planted link",
                vec![
                    raw("l", tar::EntryType::Symlink, Some(".."), b""),
                    raw("l/escaped", tar::EntryType::Regular, None, b"x"),
                ],
            ),
            (
                "write through an absolute link",
                vec![
                    raw("l", tar::EntryType::Symlink, Some("/"), b""),
                    raw("l/tmp/escaped", tar::EntryType::Regular, None, b"x"),
                ],
            ),
            (
                "replace a planted link",
                vec![
                    raw("l", tar::EntryType::Symlink, Some("../escaped"), b""),
                    raw("l", tar::EntryType::Regular, None, b"x"),
                ],
            ),
            (
                "hard link",
                vec![raw("h", tar::EntryType::Link, Some("/etc/passwd"), b"")],
            ),
            (
                "block device",
                vec![device("sda", tar::EntryType::Block, 8, 0)],
            ),
            (
                "char device",
                vec![device("mem", tar::EntryType::Char, 1, 1)],
            ),
            ("fifo", vec![raw("p", tar::EntryType::Fifo, None, b"")]),
        ];
        for (what, entries) in cases {
            for content in [Content::Workspace, Content::Changes] {
                let t = tempfile::tempdir().expect("tmp");
                let dest = t.path().join("dest");
                fs::create_dir(&dest).expect("dest");
                let e = unpack(&archive(&entries)[..], &dest, content, None)
                    .expect_err(&format!("{what} ({content:?}) must be refused"));
                assert!(matches!(e, ArchiveError::Refused { .. }), "{what}: {e}");
                assert!(
                    !t.path().join("escaped").exists(),
                    "{what}: a file landed outside"
                );
            }
        }
    }

    #[test]
    fn a_whiteout_is_taken_only_in_a_change_layer() {
        let a = archive(&[device("gone", tar::EntryType::Char, 0, 0)]);
        let t = tempfile::tempdir().expect("tmp");
        let e = unpack(&a[..], t.path(), Content::Workspace, None).expect_err("workspace");
        assert!(e.to_string().contains("device"), "{e}");
        let upper = t.path().join("upper");
        import_changes(&a[..], &upper, &Limits::CHANGES).expect("changes");
        let m = fs::symlink_metadata(upper.join("gone")).expect("whiteout");
        assert!(is_whiteout(&m));
    }

    #[test]
    fn a_change_layer_round_trips() {
        let t = tempfile::tempdir().expect("tmp");
        let src = t.path().join("src");
        fs::create_dir_all(src.join("dir/sub")).expect("dirs");
        fs::write(src.join("dir/sub/f"), b"content").expect("file");
        fs::set_permissions(src.join("dir/sub/f"), fs::Permissions::from_mode(0o4755))
            .expect("mode");
        std::os::unix::fs::symlink("sub/f", src.join("dir/link")).expect("link");
        fs::create_dir(src.join("opaque")).expect("opaque");
        let opaque_ok = xattr::set(src.join("opaque"), "user.overlay.opaque", b"y").is_ok();
        nix::sys::stat::mknod(
            &src.join("gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .expect("whiteout");
        nix::unistd::mkfifo(
            &src.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .expect("fifo");
        let mut tar = Vec::new();
        let skipped = write_tree(&src, &mut tar, Content::Changes).expect("write");
        assert_eq!(skipped, vec![PathBuf::from("fifo")]);
        let upper = t.path().join("upper");
        import_changes(&tar[..], &upper, &Limits::CHANGES).expect("import");
        assert_eq!(
            fs::read(upper.join("dir/sub/f")).expect("f"),
            b"content".to_vec()
        );
        let mode = fs::metadata(upper.join("dir/sub/f")).expect("f").mode();
        assert_eq!(mode & 0o7777, 0o755, "setuid dropped");
        assert_eq!(
            fs::read_link(upper.join("dir/link")).expect("link"),
            PathBuf::from("sub/f")
        );
        assert!(is_whiteout(
            &fs::symlink_metadata(upper.join("gone")).expect("gone")
        ));
        if opaque_ok {
            assert!(is_opaque_dir(&upper.join("opaque")));
        }
        // Importing again into the same place is refused (never merged over).
        assert!(import_changes(&tar[..], &upper, &Limits::CHANGES).is_err());
    }

    #[test]
    fn a_failed_import_leaves_no_upper() {
        let t = tempfile::tempdir().expect("tmp");
        let upper = t.path().join("upper");
        let a = archive(&[
            raw("ok", tar::EntryType::Regular, None, b"x"),
            raw("../bad", tar::EntryType::Regular, None, b"x"),
        ]);
        assert!(import_changes(&a[..], &upper, &Limits::CHANGES).is_err());
        assert!(!upper.exists());
    }

    /// A header of `kind` declaring `size` bytes, without its data (a stream that goes on with
    /// `rest`, lazily): what a hostile box sends to make the local side allocate or write.
    fn declared(name: &str, kind: tar::EntryType, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).expect("path");
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(size);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    /// `head` followed by `len` bytes of `fill` made on demand (never held whole).
    fn lazy(head: Vec<u8>, fill: u8, len: u64) -> impl Read {
        std::io::Cursor::new(head).chain(std::io::repeat(fill).take(len))
    }

    fn assert_limit(e: &ArchiveError, what: &str, entry: &str) {
        let ArchiveError::Limit {
            limit, entry: got, ..
        } = e
        else {
            panic!("{what}: expected a limit error, got {e}");
        };
        assert!(got.contains(entry), "{what}: names {got:?}, not {entry:?}");
        let text = e.to_string();
        assert!(
            text.contains(limit) && text.contains("over the limit"),
            "{what}: {text}"
        );
        if !limit.contains("metadata") {
            assert!(
                text.contains(ENV_SIZE) || text.contains(ENV_FILES),
                "{what}: {text}"
            );
        }
    }

    /// Imports `input` into a fresh upper within `limits`; asserts it is refused by a bound
    /// naming `entry` and that nothing is kept.
    fn refused_by_limit(what: &str, input: impl Read, limits: &Limits, entry: &str) {
        let t = tempfile::tempdir().expect("tmp");
        let upper = t.path().join("upper");
        let e = import_changes(input, &upper, limits).expect_err(what);
        assert_limit(&e, what, entry);
        assert!(!upper.exists(), "{what}: the upper was kept");
    }

    #[test]
    fn metadata_records_over_the_bound_are_refused_before_they_are_read() {
        // tar-rs reads these whole into memory: the guard must refuse at the header. The data
        // is there (lazily), so without the guard tar-rs would read all of it and fail later
        // with its own error (or take it).
        let big = 256 << 20;
        for (what, kind) in [
            ("GNU long name", tar::EntryType::GNULongName),
            ("GNU long link", tar::EntryType::GNULongLink),
            ("PAX header", tar::EntryType::XHeader),
            ("PAX global header", tar::EntryType::XGlobalHeader),
        ] {
            let stream = lazy(declared("././@LongLink", kind, big), b'a', big + 1024);
            refused_by_limit(what, stream, &Limits::CHANGES, "@LongLink");
            // Also for the workspace upload (its bound is larger but there).
            let t = tempfile::tempdir().expect("tmp");
            let stream = lazy(declared("././@LongLink", kind, big), b'a', big + 1024);
            let e = unpack(stream, t.path(), Content::Workspace, None).expect_err(what);
            assert_limit(&e, what, "@LongLink");
        }
    }

    #[test]
    fn a_huge_file_is_refused_before_a_byte_is_written() {
        for (what, size) in [
            ("2 GiB", 2u64 << 30),
            ("100 GiB", 100 << 30),
            ("1 EiB", 1 << 60),
        ] {
            let stream = lazy(declared("big", tar::EntryType::Regular, size), 0, 1 << 20);
            refused_by_limit(what, stream, &Limits::CHANGES, "big");
        }
        // The size given in a PAX record (which overrides the header's) counts too.
        let mut pax = Vec::new();
        {
            let mut b = tar::Builder::new(&mut pax);
            b.append_pax_extensions([("size", b"3221225472".as_slice())])
                .expect("pax");
            b.into_inner().expect("pax");
        }
        pax.truncate(pax.len() - 1024); // no end blocks
        pax.extend(declared("paxbig", tar::EntryType::Regular, 1));
        refused_by_limit(
            "PAX size",
            lazy(pax, 0, 1 << 20),
            &Limits::CHANGES,
            "paxbig",
        );
    }

    #[test]
    fn a_sparse_file_counts_with_its_apparent_size() {
        // write_tree sends a sparse file whole; the import refuses it by its length, reading
        // the stream as it comes (a pipe, never a buffer of it).
        let t = tempfile::tempdir().expect("tmp");
        let src = t.path().join("src");
        fs::create_dir(&src).expect("src");
        fs::File::create(src.join("hole"))
            .and_then(|f| f.set_len(2 << 30))
            .expect("sparse");
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let src2 = src.clone();
        let writer = std::thread::spawn(move || {
            write_tree(&src2, fs::File::from(w), Content::Changes).is_ok()
        });
        refused_by_limit("sparse 2 GiB", fs::File::from(r), &Limits::CHANGES, "hole");
        assert!(
            !writer.join().expect("writer"),
            "the writer saw the refusal"
        );
        // Within the bound it is taken (a small one, read back as zeros).
        fs::File::create(src.join("hole"))
            .and_then(|f| f.set_len(4096))
            .expect("sparse");
        let mut tar = Vec::new();
        write_tree(&src, &mut tar, Content::Changes).expect("write");
        let upper = t.path().join("upper");
        import_changes(&tar[..], &upper, &Limits::CHANGES).expect("small hole");
        assert_eq!(fs::read(upper.join("hole")).expect("hole"), vec![0; 4096]);
    }

    #[test]
    fn the_total_and_the_count_are_bounded() {
        let small = Limits {
            total_bytes: 10,
            file_bytes: 8,
            entries: 1000,
            ..Limits::CHANGES
        };
        let files: Vec<_> = (0..3)
            .map(|i| raw(&format!("f{i}"), tar::EntryType::Regular, None, b"123456"))
            .collect();
        refused_by_limit("total", &archive(&files)[..], &small, "f1");
        let one = [raw("nine", tar::EntryType::Regular, None, b"123456789")];
        refused_by_limit("per file", &archive(&one)[..], &small, "nine");
        // Many small files (empty ones too: they cost inodes, not bytes).
        let many: Vec<_> = (0..1001)
            .map(|i| {
                raw(
                    &format!("d{}/e{i}", i % 10),
                    tar::EntryType::Regular,
                    None,
                    b"",
                )
            })
            .collect();
        refused_by_limit("entries", &archive(&many)[..], &small, "e1000");
        let t = tempfile::tempdir().expect("tmp");
        import_changes(&archive(&many[..1000])[..], &t.path().join("u"), &small)
            .expect("1000 entries are within the bound");
    }

    #[test]
    fn deep_and_long_paths_are_bounded() {
        // A chain of nested directories, one entry per level (each path is short enough for a
        // PAX record but the chain is deeper than the bound).
        let mut chain = Vec::new();
        {
            let mut b = tar::Builder::new(&mut chain);
            let mut path = PathBuf::new();
            for _ in 0..300 {
                path.push("d");
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, &path, std::io::empty()).expect("dir");
            }
            b.into_inner().expect("chain");
        }
        refused_by_limit("nested dirs", &chain[..], &Limits::CHANGES, "d/d/d");
        // A long name within the metadata bound but over PATH_MAX.
        for name in ["x".repeat(5000), format!("{}/f", "y".repeat(4200))] {
            let mut long = Vec::new();
            {
                let mut b = tar::Builder::new(&mut long);
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(1);
                b.append_data(&mut h, &name, &b"x"[..]).expect("long");
                b.into_inner().expect("long");
            }
            refused_by_limit("long name", &long[..], &Limits::CHANGES, &name[..100]);
        }
    }

    /// A box's export as an engine delivers it: `shape` produces chunks on demand (`None`:
    /// its output ends) on a runtime task; the exec then ends with `status`. Returns the
    /// stream and a receiver of how many bytes the sender produced before it stopped.
    fn box_export(
        rt: &tokio::runtime::Runtime,
        mut shape: impl FnMut(u64) -> Option<Vec<u8>> + Send + 'static,
        status: i32,
    ) -> (crate::ExecStream, std::sync::mpsc::Receiver<(u64, bool)>) {
        let (sink, stream) = crate::stream::channel();
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let mut sent = 0u64;
            let mut i = 0;
            while let Some(chunk) = shape(i) {
                i += 1;
                sent += chunk.len() as u64;
                if sink.stdout(bytes::Bytes::from(chunk)).await.is_err() {
                    let _ = tx.send((sent, true));
                    return;
                }
            }
            sink.end(Ok(status));
            let _ = tx.send((sent, false));
        });
        (stream, rx)
    }

    fn file(name: &str, data: &[u8]) -> Vec<u8> {
        let mut e = declared(name, tar::EntryType::Regular, data.len() as u64);
        e.extend_from_slice(data);
        e.resize(e.len().div_ceil(512) * 512, 0);
        e
    }

    const MIB: usize = 1 << 20;

    #[test]
    fn a_hostile_export_stream_is_refused_as_it_arrives_and_the_sender_stopped() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let limits = Limits {
            total_bytes: 8 * MIB as u64,
            file_bytes: 4 * MIB as u64,
            entries: 100,
            ..Limits::CHANGES
        };
        type Shape = Box<dyn FnMut(u64) -> Option<Vec<u8>> + Send>;
        // (what, the stream, what the error says, whether the sender must have been stopped)
        let cases: Vec<(&str, Shape, &str, bool)> = vec![
            (
                "one huge file (declared 64 GiB, endless content)",
                Box::new(|i| {
                    Some(if i == 0 {
                        declared("huge", tar::EntryType::Regular, 64 << 30)
                    } else {
                        vec![0u8; MIB]
                    })
                }),
                "size of a file",
                true,
            ),
            (
                "endless small files, no end block",
                Box::new(|i| Some(file(&format!("f{i}"), b"x"))),
                "count of entries",
                true,
            ),
            (
                "endless 1 MiB files, no end block",
                Box::new(|i| Some(file(&format!("m{i}"), &vec![b'm'; MIB]))),
                "total size of the files",
                true,
            ),
            (
                "a stream that stops inside an entry's data",
                Box::new(|i| match i {
                    0 => Some(file("whole", b"kept?")),
                    1 => {
                        let mut e = declared("cut", tar::EntryType::Regular, 3 * MIB as u64);
                        e.extend_from_slice(&vec![b'c'; MIB]);
                        Some(e)
                    }
                    _ => None,
                }),
                "ends early (inside an entry's data)",
                false,
            ),
            (
                "a stream that stops after an entry, without the end block",
                Box::new(|i| (i == 0).then(|| file("only", b"one"))),
                "ends early (no end-of-archive block",
                false,
            ),
            (
                "a stream that stops inside a header",
                Box::new(|i| match i {
                    0 => Some(file("a", b"a")),
                    1 => Some(declared("b", tar::EntryType::Regular, 1)[..100].to_vec()),
                    _ => None,
                }),
                "ends early (inside a header)",
                false,
            ),
            (
                "an archive followed by endless bytes",
                Box::new(|i| {
                    Some(if i == 0 {
                        archive(&[file("a", b"a")])
                    } else {
                        vec![b'z'; 64 << 10]
                    })
                }),
                "more than 1048576 bytes after the archive's end",
                true,
            ),
        ];
        for (what, shape, says, stopped) in cases {
            let t = tempfile::tempdir().expect("tmp");
            let upper = t.path().join("upper");
            let (stream, sent) = box_export(&rt, shape, 0);
            let e = import_stream(stream, &upper, &limits)
                .expect_err(what)
                .to_string();
            assert!(e.contains(says), "{what}: {e}");
            assert!(!upper.exists(), "{what}: something was kept");
            let (bytes, was_stopped) = sent
                .recv_timeout(std::time::Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("{what}: the sender was never stopped"));
            assert_eq!(was_stopped, stopped, "{what}");
            // What was produced is what the limits allow plus the queue, never the stream.
            assert!(bytes < 32 * MIB as u64, "{what}: {bytes} bytes produced");
        }
        // A complete archive whose program then fails is not taken either.
        let t = tempfile::tempdir().expect("tmp");
        let upper = t.path().join("upper");
        let (stream, _) = box_export(&rt, |i| (i == 0).then(|| archive(&[file("a", b"a")])), 3);
        let e = import_stream(stream, &upper, &limits)
            .expect_err("failed exec")
            .to_string();
        assert!(e.contains("failed (exit 3)"), "{e}");
        assert!(!upper.exists());
        // And a good one is.
        let (stream, _) = box_export(
            &rt,
            |i| (i == 0).then(|| archive(&[file("a", b"a"), file("b", b"bb")])),
            0,
        );
        let done = import_stream(stream, &upper, &limits).expect("import");
        assert_eq!((done.entries, done.bytes), (2, 3));
        assert_eq!(std::fs::read(upper.join("b")).expect("b"), b"bb");
    }
}
