//! The agent's commits, read without running anything the agent wrote and without following
//! anything the agent pointed at: a scratch bare repository holding copies of the agent's own
//! objects (loose objects and packs from the overlay's upper `.git/objects`, read with no link
//! followed in any path component, each pack re-indexed and hashed by `git index-pack`) and
//! borrowing (git "alternates", written by airlock) only the real `.git/objects`, with a
//! configuration airlock wrote itself. The agent's `.git/config`, hooks, attributes,
//! `objects/info/alternates`, grafts, replace refs and shallow file are never consulted; the
//! agent's `HEAD` and refs are read with no link followed in any component.
//!
//! [`git_refusals`] names what the agent left in its `.git` that would point a host git
//! elsewhere (links, alternates, grafts, replace refs, `commondir`/`gitdir`, `.git` as a link
//! or file): `airlock diff` shows each, `airlock merge` refuses the session with no flag.
//!
//! Memory (REDTEAM4 Y2, Y2b): every git here runs with [`hostgit::bounds`] (a delta or zlib
//! bomb fails git's allocation, naming the bound), the agent's loose objects are refused by
//! their header over the object bound before git reads them, and the commits' files are read
//! one at a time ([`GitView::each_side`]), at most [`MAX_REVIEW_BYTES`] per review.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};

use crate::changes::{ChangeKind, Side};
use crate::hostgit::{self, run};
use crate::review::{classify, Concern, Version, MAX_SHOWN_BYTES};
use crate::SessionError;

fn is_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The most of a ref file or `packed-refs` airlock reads.
const MAX_REF_FILE: u64 = 64 << 20;

/// Reads a regular file the agent may have planted: no link followed, no blocking on a FIFO,
/// bounded in size.
fn read_untrusted(p: &Path) -> Option<String> {
    use std::io::Read;
    let (f, _) = crate::changes::open_regular(p).ok()?;
    let mut s = String::new();
    f.take(MAX_REF_FILE).read_to_string(&mut s).ok()?;
    Some(s)
}

/// Opens `rel` (relative, plain components) below `root` one component at a time with
/// `O_NOFOLLOW` (openat(2)): a link in ANY component fails with `ELOOP` or `ENOTDIR` instead of
/// being followed. `O_NONBLOCK` keeps a FIFO from blocking; the caller checks the type.
fn open_beneath(root: &Path, rel: &Path, dir: bool) -> Result<OwnedFd, Errno> {
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
    let mut cur = openat(
        nix::fcntl::AT_FDCWD,
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let comps: Vec<_> = rel.components().collect();
    for (i, c) in comps.iter().enumerate() {
        let Component::Normal(n) = c else {
            return Err(Errno::EINVAL);
        };
        let last = i + 1 == comps.len();
        let f = if last && !dir {
            flags
        } else {
            flags | OFlag::O_DIRECTORY
        };
        cur = openat(&cur, *n, f, Mode::empty())?;
    }
    Ok(cur)
}

/// The type of `name` in the directory `dir`, not following a link (fstatat(2)
/// `AT_SYMLINK_NOFOLLOW`), and its device number (a whiteout is a character device 0/0).
fn type_at(dir: &OwnedFd, name: &OsStr) -> Result<(SFlag, u64), Errno> {
    let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    Ok((
        SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT,
        st.st_rdev,
    ))
}

/// The directory holding `.git/NAME` in the upper layer, reached with no link followed, and the
/// last component. `Err(ENOENT)` when a directory on the way is missing.
fn agents_parent(upper: &Path, name: &str) -> Result<(OwnedFd, std::ffi::OsString), Errno> {
    let rel = Path::new(".git").join(name);
    let last = rel.file_name().ok_or(Errno::EINVAL)?.to_os_string();
    let parent = rel.parent().ok_or(Errno::EINVAL)?;
    Ok((open_beneath(upper, parent, true)?, last))
}

/// Reads `name` below the agent's `upper/.git` with no link followed in any component (no
/// blocking on a FIFO, bounded in size). `Err(ENOENT)` when the upper layer has no such file;
/// `Ok(None)` for a whiteout (deleted in the agent's view); another error for a link on the way
/// or anything but a regular file.
fn read_agents(upper: &Path, name: &str) -> Result<Option<String>, Errno> {
    use std::io::Read;
    let (dir, last) = agents_parent(upper, name)?;
    match type_at(&dir, &last)? {
        (SFlag::S_IFCHR, 0) => return Ok(None),
        (SFlag::S_IFREG, _) => {}
        _ => return Err(Errno::EPERM),
    }
    let fd = openat(
        &dir,
        last.as_os_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK,
        Mode::empty(),
    )?;
    let st = nix::sys::stat::fstat(&fd)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(Errno::EPERM);
    }
    let mut s = String::new();
    std::fs::File::from(fd)
        .take(MAX_REF_FILE)
        .read_to_string(&mut s)
        .map_err(|_| Errno::EIO)?;
    Ok(Some(s))
}

/// Reads `name` (a file below `.git`) from the agent's view: upper layer first (no link
/// followed in any component), then the real one. Anything in the upper layer but a missing
/// file (a link on the way, a special file) gives `None`, never the real repository's file:
/// [`git_refusals`] names it.
fn read_layered(upper: &Path, lower: &Path, name: &str) -> Option<String> {
    match read_agents(upper, name) {
        Ok(v) => v,
        Err(Errno::ENOENT) => read_untrusted(&lower.join(".git").join(name)),
        Err(_) => None,
    }
}

/// Whether the upper layer has anything (a file, link, whiteout) at `.git/NAME`, looked up with
/// no link followed: a link on the way counts as the agent's.
fn in_upper(upper: &Path, name: &str) -> bool {
    let found = agents_parent(upper, name).and_then(|(dir, last)| type_at(&dir, &last));
    !matches!(found, Err(Errno::ENOENT))
}

/// The commit the agent's `HEAD` points at, if the workspace is a git repository.
pub fn agent_head(upper: &Path, lower: &Path) -> Option<String> {
    let head = read_layered(upper, lower, "HEAD")?;
    let head = head.trim();
    if is_sha(head) {
        return Some(head.to_string());
    }
    let r = head.strip_prefix("ref: ")?.trim();
    if !r.starts_with("refs/") || r.contains("..") {
        return None;
    }
    if let Some(v) = read_layered(upper, lower, r) {
        let v = v.trim();
        return is_sha(v).then(|| v.to_string());
    }
    let packed = read_layered(upper, lower, "packed-refs")?;
    packed.lines().find_map(|l| {
        let (sha, name) = l.split_once(' ')?;
        (name.trim() == r && is_sha(sha)).then(|| sha.to_string())
    })
}

/// The agent's `HEAD` when the agent moved it: some of `HEAD`, the ref it names or
/// `packed-refs` is in the upper layer (written, or deleted as a whiteout, by the session).
/// `None` when every one of them comes from the real repository: commits made there on the
/// host after the session started are the user's, not the agent's.
pub fn agent_moved_head(upper: &Path, lower: &Path) -> Option<String> {
    let mine = |name: &str| in_upper(upper, name);
    let head_file = read_layered(upper, lower, "HEAD")?;
    let named = head_file
        .trim()
        .strip_prefix("ref: ")
        .map(|r| r.trim().to_string());
    let moved = mine("HEAD")
        || mine("packed-refs")
        || named
            .as_deref()
            .is_some_and(|r| r.starts_with("refs/") && !r.contains("..") && mine(r));
    if moved {
        agent_head(upper, lower)
    } else {
        None
    }
}

/// Something the agent left in its `.git` that would make a host git read data from outside
/// the session's own object store, or rewrite the history it shows: merge refuses the session
/// with no flag, and `diff` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRefusal {
    /// The path relative to the workspace (`.git/objects/info/alternates`).
    pub path: PathBuf,
    /// Why it is refused.
    pub why: String,
}

impl std::fmt::Display for GitRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", crate::quote::path(&self.path), self.why)
    }
}

/// How deep [`git_refusals`] walks a `.git` (git's own layout is at most a few levels).
const MAX_GIT_DEPTH: usize = 32;

/// Why a regular file at `rel` (relative to `.git`) is an indirection, by its name: object
/// stores it names (`objects/info/alternates`, `http-alternates`; gitrepository-layout(5)),
/// history it rewrites (`info/grafts`, `refs/replace/`; git-replace(1)), another repository it
/// names (`commondir`, `gitdir`).
fn indirection(rel: &Path) -> Option<&'static str> {
    let c: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_lowercase())
        .collect();
    let n = c.len();
    let last = c.last()?.as_str();
    let under = |a: &str, b: &str| n >= 3 && c[n - 3] == a && c[n - 2] == b;
    if matches!(last, "alternates" | "http-alternates") && under("objects", "info") {
        return Some(
            "names other object stores (git alternates): a host git would read any repository \
             on the host through it",
        );
    }
    if last == "grafts" && n >= 2 && c[n - 2] == "info" {
        return Some("rewrites commit parents (git grafts)");
    }
    if matches!(last, "commondir" | "gitdir") {
        return Some("points git at another repository's directory");
    }
    if c.windows(2).any(|w| w[0] == "refs" && w[1] == "replace") {
        return Some("a replace ref swaps one object for another (git-replace(1))");
    }
    None
}

/// The replace refs a `packed-refs` file lists.
fn packed_replace(dir: &OwnedFd, name: &OsStr) -> bool {
    use std::io::Read;
    let Ok(fd) = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK,
        Mode::empty(),
    ) else {
        return true; // cannot be read: refused rather than trusted
    };
    let mut s = String::new();
    if std::fs::File::from(fd)
        .take(MAX_REF_FILE)
        .read_to_string(&mut s)
        .is_err()
    {
        return true;
    }
    s.lines().any(|l| {
        l.split_whitespace()
            .nth(1)
            .is_some_and(|r| r.starts_with("refs/replace/"))
    })
}

/// Walks `dir` (at `rel`, relative to the workspace) without following any link, adding what
/// is refused to `out`.
fn walk_git(
    dir: &OwnedFd,
    rel: &Path,
    depth: usize,
    out: &mut Vec<GitRefusal>,
) -> Result<(), SessionError> {
    let mut refuse = |p: PathBuf, why: String| out.push(GitRefusal { path: p, why });
    if depth > MAX_GIT_DEPTH {
        refuse(rel.to_path_buf(), "nested too deep to be checked".into());
        return Ok(());
    }
    let listing = nix::dir::Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SessionError::io("cannot read", rel, e.into()))?;
    let mut names: Vec<std::ffi::OsString> = Vec::new();
    for e in listing {
        let e = e.map_err(|e| SessionError::io("cannot read", rel, e.into()))?;
        let n = OsStr::from_bytes(e.file_name().to_bytes());
        if n != "." && n != ".." {
            names.push(n.to_os_string());
        }
    }
    names.sort();
    let mut subdirs = Vec::new();
    for n in names {
        let p = rel.join(&n);
        let inner = p.strip_prefix(".git").unwrap_or(&p).to_path_buf();
        let (kind, rdev) =
            type_at(dir, &n).map_err(|e| SessionError::io("cannot stat", &p, e.into()))?;
        match kind {
            SFlag::S_IFDIR => subdirs.push((n, p)),
            SFlag::S_IFREG => {
                if let Some(why) = indirection(&inner) {
                    refuse(p, why.into());
                } else if inner == Path::new("packed-refs") && packed_replace(dir, &n) {
                    refuse(
                        p,
                        "lists replace refs (refs/replace/), which swap objects".into(),
                    );
                }
            }
            SFlag::S_IFCHR if rdev == 0 => {} // a whiteout: deleted in the agent's view
            SFlag::S_IFLNK => {
                let to = nix::fcntl::readlinkat(dir, n.as_os_str())
                    .map(PathBuf::from)
                    .unwrap_or_default();
                refuse(
                    p,
                    format!(
                        "a symbolic link (to {}): a host git would follow it out of the \
                         session's git data",
                        crate::quote::path(&to)
                    ),
                );
            }
            _ => refuse(p, "a special file (FIFO, socket or device)".into()),
        }
    }
    for (n, p) in subdirs {
        let sub = openat(
            dir,
            n.as_os_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SessionError::io("cannot open", &p, e.into()))?;
        walk_git(&sub, &p, depth + 1, out)?;
    }
    Ok(())
}

/// Everything in the agent's `.git` (the overlay's upper layer `upper`) a host git could follow
/// out of the session's own data, each by name: `.git` itself as a link or a `gitdir:` file, a
/// symbolic link or special file anywhere below it, `objects/info/alternates` and
/// `http-alternates`, `info/grafts`, `commondir`/`gitdir` files, replace refs (loose or packed).
/// Nothing is followed while looking. Empty when the agent left none (or has no `.git`).
///
/// # Errors
/// [`SessionError::Io`] when a directory of the upper layer cannot be read.
pub fn git_refusals(upper: &Path) -> Result<Vec<GitRefusal>, SessionError> {
    let mut out = Vec::new();
    let root = openat(
        nix::fcntl::AT_FDCWD,
        upper,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SessionError::io("cannot open", upper, e.into()))?;
    let dotgit = Path::new(".git");
    let (kind, rdev) = match type_at(&root, dotgit.as_os_str()) {
        Ok(t) => t,
        Err(Errno::ENOENT) => return Ok(out),
        Err(e) => {
            return Err(SessionError::io(
                "cannot stat",
                &upper.join(".git"),
                e.into(),
            ))
        }
    };
    let why = match kind {
        SFlag::S_IFDIR => {
            let d = openat(
                &root,
                dotgit,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| SessionError::io("cannot open", &upper.join(".git"), e.into()))?;
            walk_git(&d, dotgit, 0, &mut out)?;
            return Ok(out);
        }
        SFlag::S_IFCHR if rdev == 0 => return Ok(out),
        SFlag::S_IFLNK => "a symbolic link: git would use the repository it leads to",
        SFlag::S_IFREG => "a file (`gitdir:`): git would use the repository it names",
        _ => "a special file",
    };
    out.push(GitRefusal {
        path: dotgit.to_path_buf(),
        why: why.into(),
    });
    Ok(out)
}

/// Whether `name` is all lowercase hex of length `len`.
fn hex_name(name: &OsStr, lens: &[usize]) -> bool {
    let b = name.as_bytes();
    lens.contains(&b.len()) && b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Copies the regular file `name` of `dir` (opened without following a link or blocking) to
/// `to`; anything else is skipped.
fn copy_plain(dir: &OwnedFd, name: &OsStr, to: &Path) -> Result<bool, SessionError> {
    let Ok(fd) = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK,
        Mode::empty(),
    ) else {
        return Ok(false);
    };
    let mut src = std::fs::File::from(fd);
    if !src.metadata().is_ok_and(|m| m.is_file()) {
        return Ok(false);
    }
    let mut dst =
        std::fs::File::create(to).map_err(|e| SessionError::io("cannot create", to, e))?;
    std::io::copy(&mut src, &mut dst).map_err(|e| SessionError::io("cannot write", to, e))?;
    Ok(true)
}

/// The names in `dir` (`.` and `..` left out).
fn names_in(dir: &OwnedFd, shown: &Path) -> Result<Vec<std::ffi::OsString>, SessionError> {
    let listing = nix::dir::Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SessionError::io("cannot read", shown, e.into()))?;
    let mut out = Vec::new();
    for e in listing {
        let e = e.map_err(|e| SessionError::io("cannot read", shown, e.into()))?;
        let n = OsStr::from_bytes(e.file_name().to_bytes());
        if n != "." && n != ".." {
            out.push(n.to_os_string());
        }
    }
    Ok(out)
}

/// The header of the loose object file `path` (zlib of `TYPE SP SIZE NUL CONTENT`,
/// gitformat-loose(5)): its type and declared size, read from its first inflated bytes only.
fn loose_header(path: &Path) -> Result<(String, u64), String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let mut z = flate2::read::ZlibDecoder::new(f).take(64);
    let mut head = Vec::with_capacity(64);
    z.read_to_end(&mut head)
        .map_err(|e| format!("not a zlib stream: {e}"))?;
    let end = head
        .iter()
        .position(|b| *b == 0)
        .ok_or("no object header in its first 64 bytes")?;
    let text = std::str::from_utf8(&head[..end]).map_err(|_| "a header that is not text")?;
    let (kind, size) = text.split_once(' ').ok_or("a malformed header")?;
    let size: u64 = size.parse().map_err(|_| "a malformed size")?;
    Ok((kind.to_string(), size))
}

/// Refuses a loose object of the agent's (`hex`, copied to `path`) that declares more than
/// [`hostgit::Bounds::object`] bytes, before any git inflates it: zlib turns a few MiB of the
/// agent's disk into GiBs of zeros, which git would stream for minutes.
fn check_loose(path: &Path, hex: &str) -> Result<(), SessionError> {
    let limit = hostgit::bounds().object;
    let refuse = |why: String| {
        SessionError::Refused(format!(
            "the agent's loose object {hex} (.git/objects/{}/{}) {why}; its commits are not read",
            &hex[..2.min(hex.len())],
            hex.get(2..).unwrap_or_default()
        ))
    };
    let (_, size) = loose_header(path).map_err(|e| refuse(format!("is unreadable: {e}")))?;
    if size > limit {
        return Err(refuse(format!(
            "declares {size} bytes, over the {} MiB a host git may read as one object (a zlib \
             bomb?); if it is genuine, raise the bound with {}=<MiB> (4 x the object size)",
            limit >> 20,
            hostgit::MEMORY_VAR
        )));
    }
    Ok(())
}

/// Where [`import_agents_objects`] stages the agent's loose objects in the scratch repository.
const LOOSE_STAGING: &str = "agent-loose";

/// Re-packs the loose objects staged in `git_dir/`[`LOOSE_STAGING`] (their ids in `ids`, one a
/// line) into the scratch repository's store: `pack-objects` reads them from the staging
/// directory alone, `index-pack` names every object by the hash of its content, so an object
/// the agent stored under another object's name never answers to that name.
fn pack_loose(git_dir: &Path, ids: &str) -> Result<(), SessionError> {
    use std::process::Stdio;
    let staging = git_dir.join(LOOSE_STAGING);
    let list = git_dir.join("airlock-loose");
    std::fs::write(&list, ids).map_err(|e| SessionError::io("cannot write", &list, e))?;
    let input =
        std::fs::File::open(&list).map_err(|e| SessionError::io("cannot open", &list, e))?;
    let gd = format!("--git-dir={}", git_dir.display());
    let mut c = git(&[&gd, "pack-objects", "--stdout", "-q"]);
    c.env("GIT_OBJECT_DIRECTORY", &staging).stdin(input);
    let mut pack = hostgit::spawn(&mut c, "pack the agent's loose objects")?;
    let Some(out) = pack.stdout.take() else {
        let _ = pack.kill();
        let _ = pack.wait();
        return Err(SessionError::Refused(
            "git pack-objects has no output".into(),
        ));
    };
    let mut index = git(&[&gd, "index-pack", "--stdin"]);
    index.stdin(Stdio::from(out));
    let indexed = hostgit::run_for(index, "index the agent's loose objects", hostgit::SLOW);
    let packed = hostgit::wait_bounded(&mut pack, hostgit::SLOW, "pack the agent's loose objects")?;
    let _ = std::fs::remove_dir_all(&staging);
    let _ = std::fs::remove_file(&list);
    if !packed.success() {
        let mut err = String::new();
        if let Some(mut e) = pack.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        return Err(SessionError::Refused(format!(
            "git failed to read the agent's loose objects (in {}): {}",
            crate::quote::path(&staging),
            hostgit::explain(&err)
        )));
    }
    indexed.map(|_| ())
}

/// Copies the agent's own objects (loose objects `objects/XX/HEX` and packs
/// `objects/pack/pack-HEX.pack`; nothing else, so no `info/alternates`, commit-graph or index
/// the agent wrote is ever read) from `upper/.git/objects` into `objects`, reading through
/// descriptors opened with no link followed in any component. Each pack is indexed afresh by
/// `git index-pack`, which hashes every object in it (the agent's `.idx` is not used); the
/// loose objects are re-packed and indexed the same way ([`pack_loose`]).
fn import_agents_objects(upper: &Path, objects: &Path, git_dir: &Path) -> Result<(), SessionError> {
    let shown = upper.join(".git/objects");
    let top = match open_beneath(upper, Path::new(".git/objects"), true) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => {
            return Err(SessionError::Refused(format!(
                "{} cannot be opened without following a link ({e}); the agent's commits are \
                 not read",
                crate::quote::path(&shown)
            )))
        }
    };
    let mut packs = Vec::new();
    let mut loose = String::new();
    for n in names_in(&top, &shown)? {
        let is_pack = n == "pack";
        if !is_pack && !hex_name(&n, &[2]) {
            continue;
        }
        let Ok(sub) = openat(
            &top,
            n.as_os_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        // Loose objects go to a staging directory, re-packed below; packs into the store.
        let to_dir = if is_pack {
            objects.join(&n)
        } else {
            git_dir.join(LOOSE_STAGING).join(&n)
        };
        std::fs::create_dir_all(&to_dir)
            .map_err(|e| SessionError::io("cannot create", &to_dir, e))?;
        for f in names_in(&sub, &shown.join(&n))? {
            let wanted = if is_pack {
                f.to_str()
                    .and_then(|s| s.strip_prefix("pack-"))
                    .and_then(|s| s.strip_suffix(".pack"))
                    .is_some_and(|h| hex_name(OsStr::new(h), &[40, 64]))
            } else {
                hex_name(&f, &[38, 62])
            };
            if wanted && copy_plain(&sub, &f, &to_dir.join(&f))? {
                if is_pack {
                    packs.push(to_dir.join(&f));
                } else {
                    let hex = format!("{}{}", n.to_string_lossy(), f.to_string_lossy());
                    check_loose(&to_dir.join(&f), &hex)?;
                    loose.push_str(&format!("{}{}\n", n.to_string_lossy(), f.to_string_lossy()));
                }
            }
        }
    }
    let gd = format!("--git-dir={}", git_dir.display());
    if !loose.is_empty() {
        pack_loose(git_dir, &loose)?;
    }
    for p in packs {
        let ps = p.to_string_lossy().into_owned();
        hostgit::run_for(
            git(&[&gd, "index-pack", &ps]),
            &format!("index the agent's pack {}", p.display()),
            hostgit::SLOW,
        )?;
    }
    Ok(())
}

/// A scratch repository seeing the agent's objects.
#[derive(Debug)]
pub struct GitView {
    pub git_dir: PathBuf,
}

/// A host git (see [`hostgit`]) with `args`.
fn git(args: &[&str]) -> Command {
    let mut c = hostgit::command();
    c.args(args);
    c
}

impl GitView {
    /// Builds the scratch repository at `scratch` (recreated): the agent's objects copied in
    /// (see the module docs), the real repository's object store as its only alternate.
    ///
    /// # Errors
    /// When the scratch repository cannot be made, the agent's `.git/objects` cannot be opened
    /// without following a link, or one of its packs fails `git index-pack`.
    pub fn new(scratch: &Path, upper: &Path, lower: &Path) -> Result<GitView, SessionError> {
        let _ = std::fs::remove_dir_all(scratch);
        std::fs::create_dir_all(scratch)
            .map_err(|e| SessionError::io("cannot create", scratch, e))?;
        let s = scratch.to_string_lossy().into_owned();
        run(
            git(&["init", "--quiet", "--bare", &s]),
            "create a scratch repository",
        )?;
        import_agents_objects(upper, &scratch.join("objects"), scratch)?;
        let mut alternates = String::new();
        let real = lower.join(".git/objects");
        if std::fs::symlink_metadata(lower.join(".git")).is_ok_and(|m| m.is_dir())
            && std::fs::symlink_metadata(&real).is_ok_and(|m| m.is_dir())
        {
            alternates.push_str(&format!("{}\n", real.display()));
        }
        let alt = scratch.join("objects/info/alternates");
        std::fs::write(&alt, alternates).map_err(|e| SessionError::io("cannot write", &alt, e))?;
        Ok(GitView {
            git_dir: scratch.to_path_buf(),
        })
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let gd = format!("--git-dir={}", self.git_dir.display());
        let mut all = vec![gd.as_str()];
        all.extend_from_slice(args);
        git(&all)
    }

    /// One line per commit in `base..head`, newest first (`git log --oneline` style).
    pub fn log(&self, base: Option<&str>, head: &str) -> Result<Vec<String>, SessionError> {
        let range = match base {
            Some(b) => format!("{b}..{head}"),
            None => head.to_string(),
        };
        let out = run(
            self.cmd(&[
                "log",
                "--no-decorate",
                "--format=%h %ad %an: %s",
                "--date=short",
                &range,
            ]),
            "list the agent's commits",
        )?;
        Ok(out.lines().map(str::to_string).collect())
    }

    /// Copies the commits up to `head` into the real repository at `workspace` and points
    /// `refs/heads/BRANCH` at it, without any git process reading that repository's
    /// configuration for a transfer (a merged `.git/config` could rewrite URLs to `ext::`
    /// commands): the objects are packed by the scratch repository and indexed straight into
    /// `.git/objects` with the scratch repository as `GIT_DIR`; the ref is then written by
    /// `update-ref` with hooks and fsmonitor off. An existing branch is left alone unless it
    /// already points at `head`.
    pub fn fetch_into(
        &self,
        workspace: &Path,
        head: &str,
        base: Option<&str>,
        branch: &str,
    ) -> Result<(), SessionError> {
        if !is_sha(head) {
            return Err(SessionError::Refused(format!("bad commit id {head}")));
        }
        let ws_git = workspace.join(".git");
        if !std::fs::symlink_metadata(&ws_git).is_ok_and(|m| m.is_dir()) {
            return Err(SessionError::Refused(format!(
                "{} is not a git directory; the agent's commits were not fetched",
                ws_git.display()
            )));
        }
        let git_dir = format!("--git-dir={}", ws_git.display());
        let refname = format!("refs/heads/{branch}");
        let trusted = |args: &[&str]| {
            let mut all = vec![
                git_dir.as_str(),
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "core.fsmonitor=false",
            ];
            all.extend_from_slice(args);
            let mut c = git(&all);
            c.current_dir(&ws_git);
            c
        };
        let existing = run(
            trusted(&["rev-parse", "--verify", "--quiet", &refname]),
            &format!("look up the branch {branch}"),
        )
        .map(|o| o.trim().to_string())
        .unwrap_or_default();
        if existing == head {
            return Ok(());
        }
        if !existing.is_empty() {
            return Err(SessionError::Refused(format!(
                "the branch {branch} already exists in {} (at {existing}); delete or rename it, \
                 then merge again",
                workspace.display()
            )));
        }
        self.copy_objects(&ws_git.join("objects"), head, base)?;
        run(
            trusted(&["update-ref", "-m", "airlock merge", &refname, head, ""]),
            &format!("create the branch {branch}"),
        )?;
        Ok(())
    }

    /// Packs what `head` reaches (less what `base` reaches) in the scratch repository and
    /// indexes the pack into `objects`.
    fn copy_objects(
        &self,
        objects: &Path,
        head: &str,
        base: Option<&str>,
    ) -> Result<(), SessionError> {
        use std::io::Write;
        use std::process::Stdio;
        let mut revs = format!("{head}\n");
        if let Some(b) = base.filter(|b| is_sha(b) && *b != head) {
            revs.push_str(&format!("^{b}\n"));
        }
        let mut c = self.cmd(&["pack-objects", "--revs", "--stdout", "-q"]);
        c.stdin(Stdio::piped());
        let mut pack = hostgit::spawn(&mut c, "pack the agent's commits")?;
        if let Some(mut stdin) = pack.stdin.take() {
            stdin
                .write_all(revs.as_bytes())
                .map_err(|e| SessionError::Refused(format!("cannot feed git pack-objects: {e}")))?;
        }
        let Some(out) = pack.stdout.take() else {
            let _ = pack.kill();
            let _ = pack.wait();
            return Err(SessionError::Refused(
                "git pack-objects has no output".into(),
            ));
        };
        let gd = self.git_dir.to_string_lossy().into_owned();
        let mut index = git(&["--git-dir", &gd, "index-pack", "--stdin"]);
        index
            .env("GIT_OBJECT_DIRECTORY", objects)
            .current_dir(&self.git_dir)
            .stdin(out);
        let indexed = hostgit::run_for(
            index,
            "copy the agent's commits into the repository",
            hostgit::SLOW,
        );
        let packed = hostgit::wait_bounded(&mut pack, hostgit::QUICK, "pack the agent's commits")?;
        if !packed.success() {
            let mut err = String::new();
            if let Some(mut e) = pack.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            return Err(SessionError::Refused(format!(
                "git failed to pack the agent's commits: {}",
                hostgit::explain(&err)
            )));
        }
        indexed.map(|_| ())
    }
}

/// One path a commit (or the whole range) changes, from `git diff-tree -r -z --raw`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitEntry {
    /// The commit that changes it (`None` for the whole range `base..head`).
    pub commit: Option<String>,
    pub path: PathBuf,
    pub kind: ChangeKind,
    /// git modes (octal `100644`, `100755`, `120000` link, `160000` submodule; 0 when absent).
    pub old_mode: u32,
    pub new_mode: u32,
    pub old_id: String,
    pub new_id: String,
}

/// What the agent's commits change, checked by the same rules as the working tree's files.
/// It holds no file content: `diff` reads the sides of each change one at a time
/// ([`GitView::each_side`]), so airlock's memory stays bounded by one file whatever the
/// commits hold.
#[derive(Debug, Default)]
pub struct CommitReview {
    /// The range's net change (`base..head`), shown by `diff`.
    pub net: Vec<CommitEntry>,
    /// Every concern of every path any commit of the range adds or changes (first commit that
    /// does it), in path order: what `merge` refuses without the matching flag.
    pub concerns: Vec<(CommitEntry, Concern)>,
    /// The blob sizes (by id) of every file the range adds or changes, from
    /// `cat-file --batch-check`.
    sizes: HashMap<String, u64>,
    /// The agent's files (blob ids) past [`MAX_REVIEW_BYTES`]: never read, never shown, each a
    /// [`Concern::Unshown`].
    pub unread: BTreeSet<String>,
}

/// The most of the agent's commits' file content one review reads (and `diff` shows), in
/// bytes (64 MiB): each file after that is a [`Concern::Unshown`] ("not read"), so `merge`
/// refuses it without `--allow-unshown-files`. Files over [`MAX_SHOWN_BYTES`] cost only their
/// first 8 KiB (`HEAD_OF_LARGE`).
pub const MAX_REVIEW_BYTES: u64 = 64 << 20;

/// What is read of a file over [`MAX_SHOWN_BYTES`]: all [`classify`] looks at (the ELF magic,
/// a NUL byte in the first 8 KiB, a `#!` line).
const HEAD_OF_LARGE: u64 = 8192;

/// The kind of an agent's file past [`MAX_REVIEW_BYTES`].
fn unread_kind() -> String {
    format!(
        "not read (past the {} MiB of the commits' files one review reads)",
        MAX_REVIEW_BYTES >> 20
    )
}

const LINK_MODE: u32 = 0o120000;
const GITLINK_MODE: u32 = 0o160000;

/// Parses `git diff-tree -r -z --raw` output (`--stdin` form: a commit id before each diff).
fn parse_raw(out: &[u8], range: bool) -> Vec<CommitEntry> {
    use std::os::unix::ffi::OsStrExt;
    let mut v = Vec::new();
    let mut commit = None;
    let mut it = out.split(|b| *b == 0).filter(|t| !t.is_empty());
    while let Some(tok) = it.next() {
        let Some(meta) = tok.strip_prefix(b":") else {
            let id = String::from_utf8_lossy(tok).trim().to_string();
            commit = (!range && is_sha(&id)).then_some(id);
            continue;
        };
        let Some(path) = it.next() else { break };
        let f: Vec<String> = String::from_utf8_lossy(meta)
            .split(' ')
            .map(str::to_string)
            .collect();
        let [om, nm, oi, ni, st] = f.as_slice() else {
            continue;
        };
        let mode = |m: &str| u32::from_str_radix(m, 8).unwrap_or(0);
        let kind = match st.chars().next() {
            Some('A') => ChangeKind::Added,
            Some('D') => ChangeKind::Deleted,
            _ => ChangeKind::Modified,
        };
        v.push(CommitEntry {
            commit: commit.clone(),
            path: PathBuf::from(std::ffi::OsStr::from_bytes(path)),
            kind,
            old_mode: mode(om),
            new_mode: mode(nm),
            old_id: oi.clone(),
            new_id: ni.clone(),
        });
    }
    v
}

impl GitView {
    /// The empty tree's id in the scratch repository's object format.
    fn empty_tree(&self) -> Result<String, SessionError> {
        let mut c = self.cmd(&["hash-object", "-t", "tree", "--stdin"]);
        c.stdin(std::process::Stdio::null());
        Ok(run(c, "hash the empty tree")?.trim().to_string())
    }

    /// The first `n` bytes of blob `id` (a `cat-file blob` stopped after them: git streams a
    /// file over `core.bigFileThreshold`, see [`hostgit::Bounds`]).
    fn blob_head(&self, id: &str, n: u64) -> Result<Vec<u8>, SessionError> {
        use std::io::Read;
        if !is_sha(id) {
            return Err(SessionError::Refused(format!("bad object id {id}")));
        }
        let mut c = self.cmd(&["cat-file", "blob", id]);
        let mut child = hostgit::spawn(&mut c, "read an agent's file")?;
        let mut head = Vec::new();
        if let Some(out) = child.stdout.take() {
            let _ = out.take(n).read_to_end(&mut head);
        }
        let _ = child.kill();
        let _ = hostgit::wait_bounded(&mut child, hostgit::QUICK, "read an agent's file");
        Ok(head)
    }

    /// Writes `lines` to a file in the scratch repository, for a git command's stdin.
    fn stdin_file(&self, name: &str, lines: &str) -> Result<std::fs::File, SessionError> {
        let p = self.git_dir.join(name);
        std::fs::write(&p, lines).map_err(|e| SessionError::io("cannot write", &p, e))?;
        std::fs::File::open(&p).map_err(|e| SessionError::io("cannot open", &p, e))
    }

    /// The size of every blob in `ids` (`cat-file --batch-check`: no content is read).
    ///
    /// # Errors
    /// When git fails, or an id is not a blob.
    fn sizes(&self, ids: &BTreeSet<String>) -> Result<HashMap<String, u64>, SessionError> {
        let mut out = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let list: String = ids.iter().map(|i| format!("{i}\n")).collect();
        let mut c = self.cmd(&["cat-file", "--batch-check"]);
        c.stdin(self.stdin_file("airlock-blobs", &list)?);
        for l in run(c, "size the agent's files")?.lines() {
            let f: Vec<&str> = l.split(' ').collect();
            let [id, "blob", size] = f.as_slice() else {
                return Err(SessionError::Refused(format!(
                    "the agent's commits name an object git cannot read as a file: {}",
                    crate::quote::name(l)
                )));
            };
            out.insert(id.to_string(), size.parse().unwrap_or(u64::MAX));
        }
        Ok(out)
    }

    /// One side of a commit entry, as `diff` shows it: a submodule's commit, a link's target,
    /// the file's text or what it is. Reads at most [`MAX_SHOWN_BYTES`] + 1 bytes of it
    /// (through `stream`), nothing for a blob in `unread`.
    fn side(
        &self,
        mode: u32,
        id: &str,
        stream: &mut BlobStream,
        sizes: &HashMap<String, u64>,
        unread: &BTreeSet<String>,
    ) -> Result<Side, SessionError> {
        if mode == 0 {
            return Ok(Side::Absent);
        }
        if mode == GITLINK_MODE {
            return Ok(Side::Text(format!("Subproject commit {id}\n")));
        }
        let Some(&size) = sizes.get(id) else {
            return Err(SessionError::Refused(format!(
                "the agent's file {id} was not sized"
            )));
        };
        if unread.contains(id) {
            return Ok(Side::Unshown(crate::review::Unshown {
                kind: unread_kind(),
                len: size,
            }));
        }
        let head = if size > MAX_SHOWN_BYTES + 1 {
            self.blob_head(id, HEAD_OF_LARGE)?
        } else {
            stream.read(id)?
        };
        if mode == LINK_MODE {
            use std::os::unix::ffi::OsStrExt;
            return Ok(Side::Link(PathBuf::from(std::ffi::OsStr::from_bytes(
                &head,
            ))));
        }
        Ok(match classify(&head, size) {
            Ok(t) => Side::Text(t),
            Err(u) => Side::Unshown(u),
        })
    }

    /// Calls `f` with each change of `review.net` and its two sides, read one change at a time
    /// (so airlock holds at most two files of at most [`MAX_SHOWN_BYTES`] each). A file past
    /// [`MAX_REVIEW_BYTES`] (in `review.unread`) is not read.
    ///
    /// # Errors
    /// When git cannot read a file, or `f` fails (its message).
    pub fn each_side(
        &self,
        review: &CommitReview,
        f: &mut dyn FnMut(&CommitEntry, Side, Side) -> Result<(), String>,
    ) -> Result<(), SessionError> {
        let mut stream = BlobStream::start(self)?;
        for e in &review.net {
            let old = self.side(
                e.old_mode,
                &e.old_id,
                &mut stream,
                &review.sizes,
                &review.unread,
            )?;
            let new = self.side(
                e.new_mode,
                &e.new_id,
                &mut stream,
                &review.sizes,
                &review.unread,
            )?;
            f(e, old, new).map_err(SessionError::Refused)?;
        }
        stream.finish()
    }

    /// The changes of every commit in `base..head` (each merge against each parent), and of the
    /// whole range.
    fn entries(
        &self,
        base: Option<&str>,
        head: &str,
    ) -> Result<(Vec<CommitEntry>, Vec<CommitEntry>), SessionError> {
        let from = match base.filter(|b| is_sha(b)) {
            Some(b) => b.to_string(),
            None => self.empty_tree()?,
        };
        let net = hostgit::run_bytes_for(
            self.cmd(&["diff-tree", "-r", "-z", "--no-renames", &from, head]),
            "list what the agent's commits change",
            hostgit::SLOW,
        )?;
        let range = match base.filter(|b| is_sha(b)) {
            Some(b) => format!("{b}..{head}"),
            None => head.to_string(),
        };
        let revs = run(self.cmd(&["rev-list", &range]), "list the agent's commits")?;
        let list = self.git_dir.join("airlock-revs");
        std::fs::write(&list, revs).map_err(|e| SessionError::io("cannot write", &list, e))?;
        let f =
            std::fs::File::open(&list).map_err(|e| SessionError::io("cannot open", &list, e))?;
        let mut c = self.cmd(&[
            "diff-tree",
            "--stdin",
            "-r",
            "-z",
            "--no-renames",
            "--root",
            "-m",
        ]);
        c.stdin(f);
        let each = hostgit::run_bytes_for(c, "list what each agent commit changes", hostgit::SLOW)?;
        Ok((parse_raw(&net, true), parse_raw(&each, false)))
    }

    /// Every path of `head`'s tree (files, links, submodules).
    fn tree_paths(&self, head: &str) -> Result<Vec<PathBuf>, SessionError> {
        use std::os::unix::ffi::OsStrExt;
        let out = hostgit::run_bytes_for(
            self.cmd(&["ls-tree", "-r", "-z", "--name-only", head]),
            "list the agent's tree",
            hostgit::SLOW,
        )?;
        Ok(out
            .split(|b| *b == 0)
            .filter(|t| !t.is_empty())
            .map(|t| PathBuf::from(std::ffi::OsStr::from_bytes(t)))
            .collect())
    }

    /// Reviews the agent's commits `base..head` with the rules of [`crate::review`]: the same
    /// concerns as the working tree's files, for every path any commit adds or changes (a file
    /// added in one commit and removed in the next is still in the branch's history), and the
    /// range's net change with both sides for `diff`. `workspace` is the real workspace (links
    /// are judged against it, git-shaped directories looked up in it too).
    ///
    /// # Errors
    /// When git cannot list or read the commits.
    pub fn review(
        &self,
        workspace: &Path,
        base: Option<&str>,
        head: &str,
    ) -> Result<CommitReview, SessionError> {
        if !is_sha(head) {
            return Err(SessionError::Refused(format!("bad commit id {head}")));
        }
        let (net, each) = self.entries(base, head)?;
        let mut files: BTreeSet<PathBuf> = self.tree_paths(head)?.into_iter().collect();
        files.extend(
            each.iter()
                .filter(|e| e.kind != ChangeKind::Deleted)
                .map(|e| e.path.clone()),
        );
        let has = |p: &Path, dir: bool| {
            let in_tree = if dir {
                files
                    .range(p.to_path_buf()..)
                    .next()
                    .is_some_and(|f| f.starts_with(p) && f != p)
            } else {
                files.contains(p)
            };
            in_tree || crate::changes::exists_in_view(workspace, workspace, p, dir)
        };
        let wanted = |mode: u32, id: &str| {
            (mode != 0 && mode != GITLINK_MODE && is_sha(id) && id.bytes().any(|b| b != b'0'))
                .then(|| id.to_string())
        };
        let ids: BTreeSet<String> = each
            .iter()
            .filter(|e| e.kind != ChangeKind::Deleted)
            .filter_map(|e| wanted(e.new_mode, &e.new_id))
            .chain(net.iter().filter_map(|e| wanted(e.old_mode, &e.old_id)))
            .chain(net.iter().filter_map(|e| wanted(e.new_mode, &e.new_id)))
            .collect();
        let sizes = self.sizes(&ids)?;
        let unread = past_budget(&each, &sizes);
        let mut stream = BlobStream::start(self)?;
        let mut seen = BTreeSet::new();
        let mut concerns = Vec::new();
        for e in &each {
            let version = self.version(e, &mut stream, &sizes, &unread)?;
            let mut found = crate::review::concerns(workspace, &e.path, &version, &has);
            if crate::review::is_git_internal(&e.path) {
                found.push(Concern::Exec(
                    "a .git path inside a commit: git's own repository data".into(),
                ));
            }
            for k in found {
                if seen.insert((e.path.clone(), k.to_string())) {
                    concerns.push((e.clone(), k));
                }
            }
        }
        stream.finish()?;
        concerns.sort_by(|a, b| a.0.path.cmp(&b.0.path));
        Ok(CommitReview {
            net,
            concerns,
            sizes,
            unread,
        })
    }

    /// What the rules need of the agent's version of `e` (read through `stream`, then dropped).
    fn version(
        &self,
        e: &CommitEntry,
        stream: &mut BlobStream,
        sizes: &HashMap<String, u64>,
        unread: &BTreeSet<String>,
    ) -> Result<Version, SessionError> {
        if e.kind == ChangeKind::Deleted || e.new_mode == 0 {
            return Ok(Version::Deleted);
        }
        Ok(
            match self.side(e.new_mode, &e.new_id, stream, sizes, unread)? {
                Side::Link(t) => Version::Link(t),
                Side::Text(t) if e.new_mode != GITLINK_MODE => Version::File(Ok(t)),
                Side::Unshown(u) => Version::File(Err(u)),
                _ => Version::Other,
            },
        )
    }
}

/// The agent's files (blob ids, in the order the commits change them) past
/// [`MAX_REVIEW_BYTES`]: each file up to [`MAX_SHOWN_BYTES`] + 1 costs its size, a larger one
/// [`HEAD_OF_LARGE`]; the first file over the budget and every later one is left unread.
fn past_budget(each: &[CommitEntry], sizes: &HashMap<String, u64>) -> BTreeSet<String> {
    let mut spent = 0u64;
    let mut counted = BTreeSet::new();
    let mut unread = BTreeSet::new();
    for e in each {
        let Some(&size) = sizes.get(&e.new_id) else {
            continue;
        };
        if !counted.insert(e.new_id.clone()) {
            continue;
        }
        let cost = if size > MAX_SHOWN_BYTES + 1 {
            HEAD_OF_LARGE
        } else {
            size
        };
        spent = spent.saturating_add(cost);
        if spent > MAX_REVIEW_BYTES {
            unread.insert(e.new_id.clone());
        }
    }
    unread
}

/// One `git cat-file --batch` answering one blob at a time (its stdin a pipe: an id is written,
/// its answer read whole before the next), so no more than one file is held.
struct BlobStream {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    out: Option<std::io::BufReader<std::process::ChildStdout>>,
}

impl BlobStream {
    fn start(view: &GitView) -> Result<BlobStream, SessionError> {
        let mut c = view.cmd(&["cat-file", "--batch"]);
        c.stdin(std::process::Stdio::piped());
        let mut child = hostgit::spawn(&mut c, "read the agent's files")?;
        let stdin = child.stdin.take();
        let out = child.stdout.take().map(std::io::BufReader::new);
        Ok(BlobStream { child, stdin, out })
    }

    /// The content of blob `id` (sized at most [`MAX_SHOWN_BYTES`] + 1 by the caller; at most
    /// that much is kept, the rest of a larger answer read and dropped).
    fn read(&mut self, id: &str) -> Result<Vec<u8>, SessionError> {
        use std::io::{BufRead, Read, Write};
        let broken = |why: String| {
            SessionError::Refused(format!("git failed to read the agent's file {id}: {why}"))
        };
        let (Some(stdin), Some(out)) = (self.stdin.as_mut(), self.out.as_mut()) else {
            return Err(broken("git cat-file is not running".into()));
        };
        stdin
            .write_all(format!("{id}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| broken(e.to_string()))?;
        let mut line = Vec::new();
        out.by_ref()
            .take(256)
            .read_until(b'\n', &mut line)
            .map_err(|e| broken(e.to_string()))?;
        let line = String::from_utf8_lossy(&line).into_owned();
        let f: Vec<&str> = line.split_whitespace().collect();
        let [got, "blob", size] = f.as_slice() else {
            return Err(broken(format!(
                "git answered {}",
                crate::quote::name(&line)
            )));
        };
        let size: u64 = size.parse().map_err(|_| broken("a bad size".into()))?;
        if *got != id {
            return Err(broken(format!("git answered for {got}")));
        }
        let mut body = Vec::new();
        out.by_ref()
            .take(size.min(MAX_SHOWN_BYTES + 1))
            .read_to_end(&mut body)
            .map_err(|e| broken(e.to_string()))?;
        // The rest of the answer, and its newline.
        let rest = size.saturating_sub(MAX_SHOWN_BYTES + 1) + 1;
        std::io::copy(&mut out.by_ref().take(rest), &mut std::io::sink())
            .map_err(|e| broken(e.to_string()))?;
        Ok(body)
    }

    /// Closes git's input and waits for it to end.
    fn finish(mut self) -> Result<(), SessionError> {
        self.stdin.take();
        self.out.take();
        let status =
            hostgit::wait_bounded(&mut self.child, hostgit::QUICK, "read the agent's files")?;
        if !status.success() {
            return Err(SessionError::Refused(
                "git failed to read the agent's files".into(),
            ));
        }
        Ok(())
    }
}

impl Drop for BlobStream {
    fn drop(&mut self) {
        // Still running only after an error: stop it (it is ours).
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `diff-tree --stdin -z -m` output: a commit id before each diff (twice for a merge), raw
    /// entries as meta then path, paths as bytes.
    #[test]
    fn raw_diff_output_is_parsed_per_commit() {
        let a = "a".repeat(40);
        let m = "b".repeat(40);
        let z = "0".repeat(40);
        let out = format!(
            "{a}\0:000000 100644 {z} {a} A\0f\0{m}\0:000000 120000 {z} {m} A\0l\u{e9}\0\
             {m}\0:100644 000000 {a} {z} D\0.git/config\0"
        );
        let v = parse_raw(out.as_bytes(), false);
        assert_eq!(v.len(), 3, "{v:?}");
        assert_eq!(v[0].commit.as_deref(), Some(a.as_str()));
        assert_eq!((v[0].kind, v[0].new_mode), (ChangeKind::Added, 0o100644));
        assert_eq!(v[1].commit.as_deref(), Some(m.as_str()));
        assert_eq!(v[1].new_mode, LINK_MODE);
        assert_eq!(v[2].kind, ChangeKind::Deleted);
        assert_eq!(v[2].path, Path::new(".git/config"));
        let net = parse_raw(out.as_bytes(), true);
        assert!(net.iter().all(|e| e.commit.is_none()));
    }

    #[test]
    fn head_resolution_prefers_the_upper_layer() {
        let t = tempfile::tempdir().expect("tempdir");
        let (up, low) = (t.path().join("u"), t.path().join("l"));
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        std::fs::create_dir_all(low.join(".git/refs/heads")).expect("mkdir");
        std::fs::write(low.join(".git/HEAD"), "ref: refs/heads/main\n").expect("write");
        std::fs::write(low.join(".git/refs/heads/main"), format!("{a}\n")).expect("write");
        assert_eq!(agent_head(&up, &low), Some(a.clone()));
        std::fs::create_dir_all(up.join(".git/refs/heads")).expect("mkdir");
        std::fs::write(up.join(".git/refs/heads/main"), format!("{b}\n")).expect("write");
        assert_eq!(agent_head(&up, &low), Some(b));
        std::fs::write(up.join(".git/HEAD"), "ref: refs/heads/../../x\n").expect("write");
        assert_eq!(agent_head(&up, &low), None);
    }

    /// A FIFO or a link planted as `.git/HEAD` or as a ref is neither waited on nor followed.
    #[test]
    fn planted_fifos_and_links_are_not_read() {
        let t = tempfile::tempdir().expect("tempdir");
        let (up, low) = (t.path().join("u"), t.path().join("l"));
        std::fs::create_dir_all(low.join(".git/refs/heads")).expect("mkdir");
        std::fs::create_dir_all(up.join(".git/refs/heads")).expect("mkdir");
        std::fs::write(low.join(".git/HEAD"), "ref: refs/heads/main\n").expect("write");
        let secret = t.path().join("secret");
        std::fs::write(&secret, format!("{}\n", "c".repeat(40))).expect("write");
        // No loose ref: packed-refs is read, and a FIFO there must not block.
        nix::unistd::mkfifo(&up.join(".git/packed-refs"), nix::sys::stat::Mode::S_IRWXU)
            .expect("mkfifo");
        let start = std::time::Instant::now();
        assert_eq!(agent_head(&up, &low), None);
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        // A loose ref that is a link to a host file is not followed.
        std::os::unix::fs::symlink(&secret, up.join(".git/refs/heads/main")).expect("symlink");
        assert_eq!(agent_head(&up, &low), None, "followed a planted link");
    }

    /// A FIFO the agent planted among its objects (as a pack) is named by [`git_refusals`],
    /// and the scratch repository neither opens nor copies it (no `git` blocks on it).
    #[test]
    fn a_planted_fifo_in_the_object_store_is_refused() {
        let t = tempfile::tempdir().expect("tempdir");
        let (up, low) = (t.path().join("u"), t.path().join("l"));
        let pack = up.join(".git/objects/pack");
        std::fs::create_dir_all(&pack).expect("mkdir");
        std::fs::create_dir_all(low.join(".git/objects")).expect("mkdir");
        let name = format!("pack-{}.pack", "0".repeat(40));
        nix::unistd::mkfifo(&pack.join(&name), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let r = git_refusals(&up).expect("scan");
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].path.ends_with(&name) && r[0].why.contains("special"),
            "{r:?}"
        );
        let start = std::time::Instant::now();
        let v = GitView::new(&t.path().join("scratch"), &up, &low).expect("view");
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        assert!(!v.git_dir.join("objects/pack").join(&name).exists());
    }

    /// The agent's loose objects answer only to the hash of their content: one stored under
    /// another object's name is not read under that name.
    #[test]
    fn a_misnamed_loose_object_is_not_read_under_the_false_name() {
        let t = tempfile::tempdir().expect("tempdir");
        let (up, low) = (t.path().join("u"), t.path().join("l"));
        std::fs::create_dir_all(low.join(".git/objects")).expect("mkdir");
        let src = t.path().join("src");
        let o = std::process::Command::new("git")
            .args(["init", "-q", "--bare"])
            .arg(&src)
            .output()
            .expect("git");
        assert!(o.status.success());
        let hash = |body: &str| {
            let mut c = std::process::Command::new("git");
            c.arg(format!("--git-dir={}", src.display()))
                .args(["hash-object", "-w", "--stdin"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped());
            let mut ch = c.spawn().expect("git");
            use std::io::Write;
            ch.stdin
                .take()
                .expect("stdin")
                .write_all(body.as_bytes())
                .expect("write");
            let out = ch.wait_with_output().expect("git");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let (real, other) = (hash("agent's\n"), hash("claimed\n"));
        let loose = |id: &str| format!("objects/{}/{}", &id[..2], &id[2..]);
        let dst = up.join(".git").join(loose(&other));
        std::fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
        std::fs::copy(src.join(loose(&real)), &dst).expect("copy");
        let real_dst = up.join(".git").join(loose(&real));
        std::fs::create_dir_all(real_dst.parent().expect("parent")).expect("mkdir");
        std::fs::copy(src.join(loose(&real)), &real_dst).expect("copy");
        let v = GitView::new(&t.path().join("scratch"), &up, &low).expect("view");
        let has = |id: &str| {
            v.cmd(&["cat-file", "-e", id])
                .output()
                .expect("git")
                .status
                .success()
        };
        assert!(has(&real), "the agent's own object is read");
        assert!(!has(&other), "an object was read under a name not its hash");
    }

    /// Every kind of indirection in the agent's `.git`, each named; an ordinary `.git` none.
    #[test]
    fn indirections_in_the_agents_git_are_named() {
        let t = tempfile::tempdir().expect("tempdir");
        let up = t.path().join("u");
        let g = up.join(".git");
        std::fs::create_dir_all(g.join("refs/heads")).expect("mkdir");
        std::fs::create_dir_all(g.join("objects/ab")).expect("mkdir");
        std::fs::write(g.join("HEAD"), "ref: refs/heads/main\n").expect("write");
        std::fs::write(g.join("refs/heads/main"), "a".repeat(40)).expect("write");
        std::fs::write(g.join("objects/ab").join("c".repeat(38)), "x").expect("write");
        std::fs::write(
            g.join("packed-refs"),
            format!("{} refs/heads/x\n", "a".repeat(40)),
        )
        .expect("write");
        assert_eq!(git_refusals(&up).expect("scan"), vec![]);
        let planted: &[(&str, &str)] = &[
            ("objects/info/alternates", "/elsewhere/objects\n"),
            ("objects/info/http-alternates", "http://x/\n"),
            ("info/grafts", "a\n"),
            ("commondir", "/elsewhere\n"),
            ("worktrees/w/gitdir", "/elsewhere\n"),
            ("refs/replace/aaaa", "b\n"),
        ];
        for (p, body) in planted {
            let f = g.join(p);
            std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
            std::fs::write(&f, body).expect("write");
        }
        std::os::unix::fs::symlink("/elsewhere/refs/tags", g.join("refs/tags")).expect("ln");
        let r = git_refusals(&up).expect("scan");
        let named: Vec<String> = r.iter().map(|x| x.path.display().to_string()).collect();
        for (p, _) in planted {
            assert!(named.contains(&format!(".git/{p}")), "{p}: {named:?}");
        }
        assert!(named.contains(&".git/refs/tags".to_string()), "{named:?}");
        // Packed replace refs too.
        std::fs::write(
            g.join("packed-refs"),
            format!("{} refs/replace/x\n", "a".repeat(40)),
        )
        .expect("write");
        let r = git_refusals(&up).expect("scan");
        assert!(
            r.iter().any(|x| x.path == Path::new(".git/packed-refs")),
            "{r:?}"
        );
        // `.git` itself as a link or a gitdir file.
        for make in [
            |g: &Path| std::os::unix::fs::symlink("/elsewhere", g).expect("ln"),
            |g: &Path| std::fs::write(g, "gitdir: /elsewhere\n").expect("write"),
        ] {
            let u2 = tempfile::tempdir().expect("tempdir");
            make(&u2.path().join(".git"));
            let r = git_refusals(u2.path()).expect("scan");
            assert_eq!(r.len(), 1, "{r:?}");
            assert_eq!(r[0].path, Path::new(".git"));
        }
    }

    /// A link in any component of the agent's ref path (not only the last) is never followed,
    /// and never falls back to the real repository's file either.
    #[test]
    fn a_link_in_any_component_of_a_ref_is_not_followed() {
        let t = tempfile::tempdir().expect("tempdir");
        let (up, low, other) = (t.path().join("u"), t.path().join("l"), t.path().join("o"));
        std::fs::create_dir_all(low.join(".git/refs/heads")).expect("mkdir");
        std::fs::create_dir_all(other.join(".git/refs/heads")).expect("mkdir");
        std::fs::create_dir_all(up.join(".git/refs")).expect("mkdir");
        std::fs::write(low.join(".git/HEAD"), "ref: refs/heads/main\n").expect("write");
        std::fs::write(low.join(".git/refs/heads/main"), "a".repeat(40)).expect("write");
        std::fs::write(other.join(".git/refs/heads/main"), "c".repeat(40)).expect("write");
        std::os::unix::fs::symlink(other.join(".git/refs/heads"), up.join(".git/refs/heads"))
            .expect("ln");
        assert_eq!(agent_head(&up, &low), None, "followed a linked directory");
        assert_eq!(agent_moved_head(&up, &low), None);
        // `.git` itself a link: HEAD and refs behind it are not read.
        let up2 = t.path().join("u2");
        std::fs::create_dir_all(&up2).expect("mkdir");
        std::fs::write(other.join(".git/HEAD"), "ref: refs/heads/main\n").expect("write");
        std::os::unix::fs::symlink(other.join(".git"), up2.join(".git")).expect("ln");
        assert_eq!(agent_head(&up2, &low), None, "followed a linked .git");
    }

    /// A commit the user makes in the real repository after the session started is not the
    /// agent's: only refs the session wrote count.
    #[test]
    fn only_refs_the_session_wrote_move_the_agents_head() {
        let t = tempfile::tempdir().expect("tempdir");
        let (up, low) = (t.path().join("u"), t.path().join("l"));
        let (a, b) = ("a".repeat(40), "b".repeat(40));
        std::fs::create_dir_all(low.join(".git/refs/heads")).expect("mkdir");
        std::fs::create_dir_all(&up).expect("mkdir");
        std::fs::write(low.join(".git/HEAD"), "ref: refs/heads/main\n").expect("write");
        std::fs::write(low.join(".git/refs/heads/main"), format!("{a}\n")).expect("write");
        // The host commits: the real ref moves, the upper layer has nothing.
        assert_eq!(agent_head(&up, &low), Some(a.clone()));
        assert_eq!(agent_moved_head(&up, &low), None);
        // The agent commits: its ref is in the upper layer.
        std::fs::create_dir_all(up.join(".git/refs/heads")).expect("mkdir");
        std::fs::write(up.join(".git/refs/heads/main"), format!("{b}\n")).expect("write");
        assert_eq!(agent_moved_head(&up, &low), Some(b));
    }

    /// A scratch layout: the agent's upper layer with `.git/objects/pack`, the real repository.
    fn layers(t: &Path) -> (PathBuf, PathBuf) {
        let (up, low) = (t.join("u"), t.join("l"));
        std::fs::create_dir_all(up.join(".git/objects/pack")).expect("mkdir");
        std::fs::create_dir_all(low.join(".git/objects")).expect("mkdir");
        (up, low)
    }

    /// The largest resident size of any child (and its children) waited for so far, in bytes.
    fn children_peak() -> u64 {
        let r = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
            .expect("getrusage");
        u64::try_from(r.max_rss()).unwrap_or(0) * 1024
    }

    /// REDTEAM4 Y2: a pack of a few KiB whose delta makes GiBs (by id, by offset, and a chain of
    /// two deltas whose first stays under the bound) is refused within seconds, naming the pack,
    /// the bound and the variable that raises it; no host git took more than the bound.
    #[test]
    fn a_delta_bomb_pack_is_refused_not_inflated() {
        use airlock_test_support::gitbomb::{delta_pack, Delta};
        let bound = hostgit::bounds().memory;
        for kind in [Delta::Ref, Delta::Ofs, Delta::Chain] {
            let t = tempfile::tempdir().expect("tempdir");
            let (up, low) = layers(t.path());
            let (pack, name) = delta_pack(kind, 4096);
            assert!(pack.len() < 64 << 10, "{kind:?}: {} bytes", pack.len());
            std::fs::write(up.join(".git/objects/pack").join(&name), &pack).expect("write");
            let start = std::time::Instant::now();
            let e = GitView::new(&t.path().join("scratch"), &up, &low)
                .expect_err("a delta bomb is refused");
            let e = e.to_string();
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "{kind:?}: took {:?}",
                start.elapsed()
            );
            assert!(
                e.contains(&name) && e.contains(hostgit::MEMORY_VAR) && e.contains("MiB"),
                "{kind:?}: {e}"
            );
            let peak = children_peak();
            assert!(peak < bound, "{kind:?}: a host git took {} MiB", peak >> 20);
        }
    }

    /// REDTEAM4 Y2, the loose form: the zlib of 4 GiB of zeros (4 MiB on disk) as a loose
    /// object is refused by its header before any git streams it, naming it and the bound.
    #[test]
    fn a_loose_zlib_bomb_is_refused_before_git_reads_it() {
        let t = tempfile::tempdir().expect("tempdir");
        let (up, low) = layers(t.path());
        let obj = up.join(".git/objects/ab");
        std::fs::create_dir_all(&obj).expect("mkdir");
        let bomb = airlock_test_support::gitbomb::loose_zeros(4096);
        assert!(bomb.len() < 8 << 20, "{} bytes", bomb.len());
        std::fs::write(obj.join("c".repeat(38)), &bomb).expect("write");
        let start = std::time::Instant::now();
        let e = GitView::new(&t.path().join("scratch"), &up, &low)
            .expect_err("a zlib bomb is refused")
            .to_string();
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "{e}");
        assert!(
            e.contains(&format!("ab{}", "c".repeat(38)))
                && e.contains("4294967296")
                && e.contains(hostgit::MEMORY_VAR),
            "{e}"
        );
    }

    /// A real repository's commit with a 100 MB file, stored whole and then (a second version)
    /// as a delta on it, still reads: the bounds leave genuine large files alone.
    /// Runs `git ARGS` in `src` with no system or user config; its trimmed stdout (fails the
    /// test when git fails).
    fn git_in(src: &Path, args: &[&str]) -> String {
        let o = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .current_dir(src)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("git");
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    #[test]
    fn a_genuine_large_file_still_reads() {
        let t = tempfile::tempdir().expect("tempdir");
        let (up, low) = layers(t.path());
        let src = t.path().join("src");
        let git = |args: &[&str]| git_in(&src, args);
        std::fs::create_dir_all(&src).expect("mkdir");
        git(&["init", "-q"]);
        let mut big: Vec<u8> = (0..100_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 | 1)
            .collect();
        std::fs::write(src.join("big.bin"), &big).expect("write");
        git(&["add", "big.bin"]);
        git(&["commit", "-qm", "one"]);
        big[5_000_000] = b'x';
        std::fs::write(src.join("big.bin"), &big).expect("write");
        drop(big);
        git(&["commit", "-qam", "two"]);
        git(&["repack", "-adq"]);
        let head = git(&["rev-parse", "HEAD"]);
        for p in std::fs::read_dir(src.join(".git/objects/pack"))
            .expect("ls")
            .flatten()
        {
            if p.path().extension().is_some_and(|e| e == "pack") {
                std::fs::copy(p.path(), up.join(".git/objects/pack").join(p.file_name()))
                    .expect("copy");
            }
        }
        let v = GitView::new(&t.path().join("scratch"), &up, &low).expect("a genuine pack reads");
        let r = v.review(&low, None, &head).expect("review");
        assert_eq!(r.net.len(), 1, "{:?}", r.net);
        assert!(
            r.concerns
                .iter()
                .any(|(e, k)| e.path == Path::new("big.bin") && k.to_string().contains("95.4 MiB")),
            "{:?}",
            r.concerns
        );
    }

    /// Every host git runs with the data limit of [`hostgit::bounds`] (seen by a shell git
    /// starts, which inherits it: `ulimit -d` in KiB).
    #[test]
    fn host_git_runs_with_the_data_limit() {
        let mut c = hostgit::command();
        c.args(["-c", "alias.lim=!ulimit -d", "lim"]);
        let out = hostgit::run(c, "print the data limit").expect("git");
        let want = hostgit::bounds().memory >> 10;
        assert_eq!(out.trim(), want.to_string());
    }

    /// REDTEAM4 Y2b: commits of many compressible files are read one at a time, and past
    /// [`MAX_REVIEW_BYTES`] not at all: each such file is a "not read" concern (merge refuses
    /// it without --allow-unshown-files) and `diff` gets it as not shown.
    #[test]
    fn files_past_the_review_budget_are_not_read() {
        let t = tempfile::tempdir().expect("tempdir");
        let (up, low) = layers(t.path());
        let src = t.path().join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        let git = |args: &[&str]| git_in(&src, args);
        git(&["init", "-q"]);
        let n = (MAX_REVIEW_BYTES / MAX_SHOWN_BYTES) as usize + 4;
        for i in 0..n {
            let mut body = format!("{i}\n").into_bytes();
            body.resize(usize::try_from(MAX_SHOWN_BYTES).expect("fits") - 1, b'x');
            body.push(b'\n');
            std::fs::write(src.join(format!("f{i:03}.txt")), body).expect("write");
        }
        git(&["add", "-A"]);
        git(&["commit", "-qm", "many"]);
        git(&["repack", "-adq"]);
        let head = git(&["rev-parse", "HEAD"]);
        for p in std::fs::read_dir(src.join(".git/objects/pack"))
            .expect("ls")
            .flatten()
        {
            if p.path().extension().is_some_and(|e| e == "pack") {
                std::fs::copy(p.path(), up.join(".git/objects/pack").join(p.file_name()))
                    .expect("copy");
            }
        }
        let v = GitView::new(&t.path().join("scratch"), &up, &low).expect("view");
        let r = v.review(&low, None, &head).expect("review");
        assert_eq!(r.net.len(), n);
        assert!(
            (1..=5).contains(&r.unread.len()),
            "{} unread of {n}",
            r.unread.len()
        );
        let not_read = r
            .concerns
            .iter()
            .filter(|(_, k)| k.to_string().contains("not read"))
            .count();
        assert_eq!(not_read, r.unread.len(), "{:?}", r.concerns);
        let (mut shown, mut unshown) = (0, 0);
        v.each_side(&r, &mut |_, old, new| {
            assert_eq!(old, Side::Absent);
            match new {
                Side::Text(t) => {
                    assert_eq!(t.len() as u64, MAX_SHOWN_BYTES);
                    shown += 1;
                }
                Side::Unshown(u) => {
                    assert!(u.kind.contains("not read"), "{u:?}");
                    unshown += 1;
                }
                other => panic!("{other:?}"),
            }
            Ok(())
        })
        .expect("sides");
        assert_eq!((shown + unshown, unshown), (n, r.unread.len()));
    }
}
