//! Walking and deleting trees a sandboxed agent wrote (its upper layer, its git data, its
//! session directory). The agent chooses their shape: a `mkdir d; cd d` loop makes a tree
//! thousands of levels deep, each level a 1-byte name, so nothing inside the sandbox stops it.
//! A walker that recurses per level runs out of stack (an abort), and one that holds a
//! descriptor per level runs out of descriptors (`EMFILE` at `RLIMIT_NOFILE`, 1,024 for most
//! users). So:
//!
//! - walkers are iterative (an explicit list of directories still to read, each listing read
//!   whole and closed before the next), and refuse a tree deeper than [`MAX_DEPTH`] levels
//!   with [`too_deep`]: an error naming the path and the bound (fails closed: nothing merged);
//! - [`remove_all`] deletes any tree, however deep, without following a link and with a
//!   bounded number of descriptors: it descends through descriptors opened with `O_NOFOLLOW`
//!   (`openat(2)`), at most `OPEN_CHAIN` deep, and moves a directory found deeper up into the
//!   root (`renameat2(2)`), so no path and no descriptor chain grows with the depth.

use crate::SessionError;
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{renameat2, OFlag, RenameFlags};
use nix::sys::stat::{fchmodat, fstatat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The deepest directory nesting (levels below the walked root) airlock's walkers follow.
/// Far more than any real source tree (the deepest `node_modules` seen in practice are a few
/// dozen levels); a deeper tree is refused by [`too_deep`].
pub const MAX_DEPTH: usize = 1024;

/// The refusal for a tree nested deeper than [`MAX_DEPTH`] levels at `path`.
#[must_use]
pub fn too_deep(path: &Path) -> SessionError {
    SessionError::Refused(format!(
        "{} is nested deeper than {MAX_DEPTH} directory levels, the most airlock walks; \
         nothing was read or merged from it (delete the session with `airlock rm --force`)",
        elided(path)
    ))
}

/// `path` quoted, its middle left out when it is longer than 240 bytes (a path 1,024 levels
/// deep is thousands of bytes): the start says where, the end what.
fn elided(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() <= 240 {
        return crate::quote::path(path).into_owned();
    }
    let head = Path::new(OsStr::from_bytes(&bytes[..160]));
    let tail = Path::new(OsStr::from_bytes(&bytes[bytes.len() - 60..]));
    format!("{}…{}", crate::quote::path(head), crate::quote::path(tail))
}

/// [`too_deep`] when `rel` (a path below a walked root, shown as `shown`) has more than
/// [`MAX_DEPTH`] components.
///
/// # Errors
/// [`SessionError::Refused`] from [`too_deep`].
pub fn check_depth(rel: &Path, shown: &Path) -> Result<(), SessionError> {
    if rel.components().count() > MAX_DEPTH {
        return Err(too_deep(shown));
    }
    Ok(())
}

/// Deletes `root` and everything below it, like `rm -rf` but iterative: no recursion, at most
/// `OPEN_CHAIN` + 2 descriptors open, no link followed (a link is deleted, never what it
/// points to), and directories the owner left without permissions (mode 000, as overlayfs
/// leaves `work/work`) made accessible first (`fchmodat(2)` without following a link). A
/// directory deeper than `OPEN_CHAIN` levels is moved up into `root` under a fresh name
/// (`.airlock-rm-N`, `RENAME_NOREPLACE`) and emptied from there, so depth costs neither stack,
/// descriptors nor path length.
///
/// # Errors
/// `root` does not exist (`NotFound`, like `std::fs::remove_dir_all`), or an entry cannot be
/// deleted (the first error, naming nothing: callers name `root`). A mount point below `root`
/// fails with `EXDEV`/`EBUSY` rather than being crossed.
pub fn remove_all(root: &Path) -> std::io::Result<()> {
    let m = std::fs::symlink_metadata(root)?;
    if !m.is_dir() {
        return std::fs::remove_file(root);
    }
    let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let top = match Dir::open(root, dir_flags, Mode::empty()) {
        Ok(d) => d,
        Err(Errno::EACCES) => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
            Dir::open(root, dir_flags, Mode::empty())?
        }
        Err(e) => return Err(e.into()),
    };
    let todo = names_in(&top)?;
    let mut frames = vec![Frame {
        dir: top,
        name: OsString::new(),
        todo,
    }];
    let mut fresh = 0u64;
    while let Some(f) = frames.last_mut() {
        if let Some(n) = f.todo.pop() {
            step(&mut frames, n, &mut fresh)?;
            continue;
        }
        if frames.len() == 1 {
            // Everything listed is gone; what was hoisted was queued. Done when empty.
            let again = names_in(&frames[0].dir)?;
            if again.is_empty() {
                break;
            }
            frames[0].todo = again;
            continue;
        }
        let Some(done) = frames.pop() else { break };
        drop(done.dir);
        if let Some(p) = frames.last_mut() {
            match unlinkat(
                p.dir.as_fd(),
                done.name.as_os_str(),
                UnlinkatFlags::RemoveDir,
            ) {
                Ok(()) | Err(Errno::ENOENT) => {}
                // Not empty after all (written meanwhile): read it again.
                Err(Errno::ENOTEMPTY | Errno::EEXIST) => p.todo.push(done.name),
                Err(e) => return Err(e.into()),
            }
        }
    }
    drop(frames);
    std::fs::remove_dir(root)
}

/// How many directories below the root [`remove_all`] keeps open at once; a directory found
/// deeper is moved up into the root (one rename per this many levels).
const OPEN_CHAIN: usize = 32;

/// A directory [`remove_all`] is emptying: open, its name in its parent, entries left to delete.
struct Frame {
    dir: Dir,
    name: OsString,
    todo: Vec<OsString>,
}

/// Deletes entry `n` of the innermost frame: a non-directory is unlinked, an empty directory
/// removed; a directory with entries becomes a new frame. A directory [`OPEN_CHAIN`] deep is
/// moved up into the root frame instead.
fn step(frames: &mut Vec<Frame>, n: OsString, fresh: &mut u64) -> std::io::Result<()> {
    let i = frames.len() - 1;
    let cur = &frames[i].dir;
    match is_dir_at(cur, &n)? {
        None => return Ok(()),
        Some(false) => {
            return gone_ok(unlinkat(
                cur.as_fd(),
                n.as_os_str(),
                UnlinkatFlags::NoRemoveDir,
            ))
        }
        Some(true) => {}
    }
    if i >= OPEN_CHAIN {
        let moved = match hoist(cur, &n, &frames[0].dir, fresh) {
            Err(Errno::EACCES) => {
                // Moving a directory to another parent rewrites its `..`: it must be
                // writable (rename(2), EACCES).
                accessible(cur, &n);
                hoist(cur, &n, &frames[0].dir, fresh)?
            }
            r => r?,
        };
        frames[0].todo.push(moved);
        return Ok(());
    }
    let open = || {
        Dir::openat(
            cur.as_fd(),
            n.as_os_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    };
    // A directory the owner cannot read or write (mode 000): made accessible first.
    accessible_if_locked(cur, &n)?;
    let sub = open()?;
    let todo = names_in(&sub)?;
    if todo.is_empty() {
        // Listing first: on ext4 a failing rmdir(2) of a full directory costs a journal
        // transaction, several times what the listing does.
        drop(sub);
        return gone_ok(unlinkat(
            cur.as_fd(),
            n.as_os_str(),
            UnlinkatFlags::RemoveDir,
        ));
    }
    frames.push(Frame {
        dir: sub,
        name: n,
        todo,
    });
    Ok(())
}

/// Gives the owner full access to directory `name` of `dir` unless it has it already.
fn accessible_if_locked(dir: &Dir, name: &OsStr) -> std::io::Result<()> {
    let st = fstatat(dir.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if st.st_mode & 0o700 != 0o700 {
        accessible(dir, name);
    }
    Ok(())
}

/// The names in the directory open as `d` (without `.` and `..`), read from the start.
fn names_in(d: &Dir) -> std::io::Result<Vec<OsString>> {
    // A fresh descriptor per listing: a `Dir` iterator reads on from where it stopped.
    let mut again = Dir::openat(
        d.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for e in again.iter() {
        let e = e?;
        let n = OsStr::from_bytes(e.file_name().to_bytes());
        if n != "." && n != ".." {
            names.push(n.to_os_string());
        }
    }
    Ok(names)
}

/// Whether `name` in `dir` is a directory (not following a link); `None` when it is gone.
fn is_dir_at(dir: &Dir, name: &OsStr) -> std::io::Result<Option<bool>> {
    match fstatat(dir.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(
            SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR,
        )),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Moves directory `name` of `from` into `top` under a fresh `.airlock-rm-N` name, returned.
fn hoist(from: &Dir, name: &OsStr, top: &Dir, fresh: &mut u64) -> nix::Result<OsString> {
    loop {
        *fresh += 1;
        let to = format!(".airlock-rm-{fresh}");
        match renameat2(
            from.as_fd(),
            name,
            top.as_fd(),
            to.as_str(),
            RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) | Err(Errno::ENOENT) => return Ok(to.into()),
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Gives the owner full access to directory `name` of `dir` (not following a link); a failure
/// shows up as the next step's error.
fn accessible(dir: &Dir, name: &OsStr) {
    let _ = fchmodat(
        dir.as_fd(),
        name,
        Mode::S_IRWXU,
        FchmodatFlags::NoFollowSymlink,
    );
}

/// Success when the entry was already gone.
fn gone_ok(r: nix::Result<()>) -> std::io::Result<()> {
    match r {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Makes `depth` nested `d` directories below `root` with a file at the bottom, without
    /// ever naming a path longer than two components (as an agent's `mkdir d; cd d` loop does).
    pub(crate) fn nest(root: &Path, depth: usize) {
        let mut d = Dir::open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())
            .expect("open root");
        for _ in 0..depth {
            nix::sys::stat::mkdirat(d.as_fd(), "d", Mode::S_IRWXU).expect("mkdirat");
            d = Dir::openat(
                d.as_fd(),
                "d",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                Mode::empty(),
            )
            .expect("openat");
        }
        let f = nix::fcntl::openat(
            d.as_fd(),
            "leaf.txt",
            OFlag::O_WRONLY | OFlag::O_CREAT,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )
        .expect("create leaf");
        drop(f);
    }

    #[test]
    fn deep_trees_are_deleted_with_few_descriptors() {
        for depth in [1, 40, 3_000] {
            let t = tempfile::tempdir().expect("tempdir");
            let root = t.path().join("s");
            std::fs::create_dir(&root).expect("mkdir");
            nest(&root, depth);
            // 3,000 levels: more descriptors than the usual RLIMIT_NOFILE (1,024) for a walker
            // that holds one per level (`std::fs::remove_dir_all` fails with EMFILE). 40: the
            // hoisting past OPEN_CHAIN.
            remove_all(&root).unwrap_or_else(|e| panic!("depth {depth}: {e}"));
            assert!(!root.exists(), "depth {depth}");
        }
    }

    #[test]
    fn links_are_deleted_not_followed_and_locked_directories_opened() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().expect("tempdir");
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        std::fs::write(outside.join("keep"), "x").expect("write");
        let root = t.path().join("s");
        std::fs::create_dir_all(root.join("a/b/c")).expect("mkdir");
        std::os::unix::fs::symlink(&outside, root.join("a/b/link")).expect("symlink");
        std::os::unix::fs::symlink(&outside, root.join("toplink")).expect("symlink");
        std::fs::write(root.join("a/b/c/f"), "x").expect("write");
        nix::unistd::mkfifo(&root.join("a/fifo"), Mode::S_IRWXU).expect("mkfifo");
        // A name the hoisting would pick, already taken.
        std::fs::create_dir_all(root.join(".airlock-rm-1/x")).expect("mkdir");
        std::fs::set_permissions(root.join("a/b"), std::fs::Permissions::from_mode(0o000))
            .expect("chmod");
        std::fs::set_permissions(root.join("a"), std::fs::Permissions::from_mode(0o000))
            .expect("chmod");
        remove_all(&root).expect("removed");
        assert!(!root.exists());
        assert!(outside.join("keep").exists(), "a link was followed");
        // A file or link as root is deleted itself.
        std::os::unix::fs::symlink(&outside, t.path().join("l")).expect("symlink");
        remove_all(&t.path().join("l")).expect("link removed");
        assert!(outside.join("keep").exists());
        assert_eq!(
            remove_all(&t.path().join("missing"))
                .expect_err("missing")
                .kind(),
            std::io::ErrorKind::NotFound
        );
    }
}
