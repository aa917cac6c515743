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
//!   given).
//!
//! Writing ([`write_tree`]) walks a directory without following links: regular files are
//! opened with `O_NOFOLLOW` and checked with `fstat`; FIFOs and sockets are left out (they hold
//! no content) and reported.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

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
    #[error("archive entry {path:?} refused: {reason}")]
    Refused {
        /// The entry's path as the archive gives it.
        path: String,
        /// Which rule refused it.
        reason: &'static str,
    },
    /// A file or directory could not be read or written.
    #[error("{what} {}: {error}", path.display())]
    Io {
        /// What was being done (`cannot create`, `cannot read`).
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        /// The cause, printed in the message (not a `source()`, so a chain never repeats it).
        error: std::io::Error,
    },
    /// The stream is not a valid tar archive (or ended early).
    #[error("cannot read the archive: {0}")]
    Read(std::io::Error),
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

/// Unpacks the tar stream `input` into `dest` (which must exist) by the rules of the module
/// doc for `content`, giving every entry to `owner` (uid, gid) when set.
///
/// # Errors
/// [`ArchiveError::Refused`] for the first entry that breaks a rule (entries before it stay
/// unpacked: callers unpack into a fresh directory and remove it on error), `Io` when `dest`
/// cannot be written, `Read` for a stream that is not a tar archive.
pub fn unpack(
    input: impl Read,
    dest: &Path,
    content: Content,
    owner: Option<(u32, u32)>,
) -> Result<Unpacked, ArchiveError> {
    let mut archive = tar::Archive::new(input);
    let mut done = Unpacked::default();
    for entry in archive.entries().map_err(ArchiveError::Read)? {
        let mut entry = entry.map_err(ArchiveError::Read)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let refused = |reason| ArchiveError::Refused {
            path: raw.clone(),
            reason,
        };
        let rel = safe_relative(&entry.path().map_err(ArchiveError::Read)?).ok_or_else(|| {
            refused("not a relative path inside the tree (absolute, `..` or empty)")
        })?;
        if rel.as_os_str().is_empty() {
            continue; // `./` itself
        }
        let target = dest.join(&rel);
        make_parents(dest, &rel, owner).map_err(|e| match e {
            Parent::NotDir => refused("a directory on its path is not a directory"),
            Parent::Io(e) => e,
        })?;
        if fs::symlink_metadata(&target).is_ok() {
            return Err(refused("appears twice (or names an existing entry)"));
        }
        let header = entry.header().clone();
        let mode = header.mode().map_err(ArchiveError::Read)? & 0o777;
        match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(io("cannot create", &target))?;
                done.bytes +=
                    std::io::copy(&mut entry, &mut f).map_err(io("cannot write", &target))?;
                // umask may have narrowed it.
                f.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(io("cannot set the mode of", &target))?;
            }
            tar::EntryType::Directory => {
                fs::create_dir(&target).map_err(io("cannot create", &target))?;
                // The owner keeps the right to fill it.
                fs::set_permissions(&target, fs::Permissions::from_mode(mode | 0o700))
                    .map_err(io("cannot set the mode of", &target))?;
                if content == Content::Changes && is_opaque(&mut entry)? {
                    xattr::set(&target, "user.overlay.opaque", b"y")
                        .map_err(io("cannot mark opaque", &target))?;
                }
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(ArchiveError::Read)?
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
/// session's upper layer. On error `upper` is removed again.
///
/// # Errors
/// As [`unpack`] with [`Content::Changes`]; `upper` existing already is an `Io` error.
pub fn import_changes(input: impl Read, upper: &Path) -> Result<Unpacked, ArchiveError> {
    fs::create_dir(upper).map_err(io("cannot create", upper))?;
    unpack(input, upper, Content::Changes, None).inspect_err(|_| {
        let _ = fs::remove_dir_all(upper);
    })
}

/// Writes the tree under `root` as a tar stream to `out`, without following links (see the
/// module doc); returns the paths left out (FIFOs, sockets, devices other than whiteouts).
///
/// # Errors
/// A file or directory that cannot be read, or `out` failing.
pub fn write_tree(
    root: &Path,
    out: impl Write,
    content: Content,
) -> Result<Vec<PathBuf>, ArchiveError> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut skipped = Vec::new();
    walk(root, Path::new(""), &mut builder, content, &mut skipped)?;
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io("cannot write the archive of", root))?;
    Ok(skipped)
}

fn walk<W: Write>(
    root: &Path,
    rel: &Path,
    builder: &mut tar::Builder<W>,
    content: Content,
    skipped: &mut Vec<PathBuf>,
) -> Result<(), ArchiveError> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(io("cannot read", &dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io("cannot read", &dir))?;
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let path = root.join(&rel);
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
                .append_data(&mut header, &rel, std::io::empty())
                .map_err(err)?;
            walk(root, &rel, builder, content, skipped)?;
        } else if ft.is_file() {
            let f = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&path)
                .map_err(io("cannot open", &path))?;
            let fm = f.metadata().map_err(io("cannot read", &path))?;
            if !fm.is_file() {
                skipped.push(rel);
                continue;
            }
            header.set_size(fm.len());
            builder
                .append_data(&mut header, &rel, f.take(fm.len()))
                .map_err(err)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(io("cannot read the link", &path))?;
            header.set_size(0);
            builder
                .append_link(&mut header, &rel, &target)
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
                .append_data(&mut header, &rel, std::io::empty())
                .map_err(err)?;
        } else {
            skipped.push(rel);
        }
    }
    Ok(())
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
        import_changes(&a[..], &upper).expect("changes");
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
        import_changes(&tar[..], &upper).expect("import");
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
        assert!(import_changes(&tar[..], &upper).is_err());
    }

    #[test]
    fn a_failed_import_leaves_no_upper() {
        let t = tempfile::tempdir().expect("tmp");
        let upper = t.path().join("upper");
        let a = archive(&[
            raw("ok", tar::EntryType::Regular, None, b"x"),
            raw("../bad", tar::EntryType::Regular, None, b"x"),
        ]);
        assert!(import_changes(&a[..], &upper).is_err());
        assert!(!upper.exists());
    }
}
