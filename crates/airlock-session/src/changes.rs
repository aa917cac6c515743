//! What an agent changed, read from an overlayfs upper layer against the real tree (the lower
//! layer): added, modified and deleted files, and their rendering as a unified diff.
//!
//! overlayfs marks a deleted file with a whiteout (a character device 0:0) and a directory whose
//! lower contents were replaced with the `user.overlay.opaque` (or `trusted.overlay.opaque`)
//! extended attribute.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::tree::check_depth;
use crate::SessionError;

/// The kind of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

impl ChangeKind {
    /// The stable name, as serialised, written to the merge journal and printed by `merge`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Modified => "modified",
            ChangeKind::Deleted => "deleted",
        }
    }
}

impl std::fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a path is: the agent's version for additions and modifications, the real tree's for
/// deletions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    /// A regular file.
    File,
    /// A symbolic link (never followed).
    Symlink,
    /// A directory.
    Dir,
    /// A FIFO (named pipe): opening it for reading blocks until a writer appears.
    Fifo,
    /// A unix-domain socket.
    Socket,
    /// A character device other than an overlayfs whiteout (0:0).
    CharDevice,
    /// A block device.
    BlockDevice,
}

impl EntryType {
    /// The type of `m` (from `symlink_metadata`, never following a link).
    pub fn of(m: &fs::Metadata) -> EntryType {
        let t = m.file_type();
        if t.is_symlink() {
            EntryType::Symlink
        } else if t.is_dir() {
            EntryType::Dir
        } else if t.is_fifo() {
            EntryType::Fifo
        } else if t.is_socket() {
            EntryType::Socket
        } else if t.is_char_device() {
            EntryType::CharDevice
        } else if t.is_block_device() {
            EntryType::BlockDevice
        } else {
            EntryType::File
        }
    }

    /// FIFOs, sockets and devices: listed by `diff`, never opened, refused by `merge`.
    pub fn is_special(self) -> bool {
        !matches!(self, EntryType::File | EntryType::Symlink | EntryType::Dir)
    }

    /// A phrase for messages ("a FIFO").
    pub fn describe(self) -> &'static str {
        match self {
            EntryType::File => "a regular file",
            EntryType::Symlink => "a symbolic link",
            EntryType::Dir => "a directory",
            EntryType::Fifo => "a FIFO (named pipe)",
            EntryType::Socket => "a unix socket",
            EntryType::CharDevice => "a character device",
            EntryType::BlockDevice => "a block device",
        }
    }
}

/// One changed path, relative to the workspace root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub path: PathBuf,
    pub kind: ChangeKind,
    /// Whether it is (or was, for deletions) a directory.
    pub dir: bool,
    /// What it is (or was, for deletions).
    #[serde(rename = "type")]
    pub entry: EntryType,
    /// For a modification that changes the type (a directory replaced by a file or link, or
    /// the reverse): what the real tree had.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub was: Option<EntryType>,
}

impl Change {
    /// A change of `path` to (or, deleted, from) an entry of type `entry`.
    pub fn new(path: PathBuf, kind: ChangeKind, entry: EntryType) -> Change {
        Change {
            path,
            kind,
            dir: entry == EntryType::Dir,
            entry,
            was: None,
        }
    }
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    ["user.overlay.opaque", "trusted.overlay.opaque"]
        .iter()
        .any(|a| matches!(xattr::get(dir, a), Ok(Some(v)) if v == b"y"))
}

/// Opens a regular file for reading without following a link and without blocking (a FIFO
/// swapped in would otherwise hang `open`), then checks with `fstat` that it is a regular file.
pub fn open_regular(p: &Path) -> Result<(fs::File, fs::Metadata), SessionError> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(p)
        .map_err(|e| SessionError::io("cannot open", p, e))?;
    let m = f
        .metadata()
        .map_err(|e| SessionError::io("cannot stat", p, e))?;
    if !m.is_file() {
        return Err(SessionError::Refused(format!(
            "{} is {}, not a regular file",
            crate::quote::path(&p),
            EntryType::of(&m).describe()
        )));
    }
    Ok((f, m))
}

/// Whether two entries have the same type, content and permissions (regular files and links
/// only are opened; anything else is "the same" only if both are directories).
pub fn same(a: &Path, b: &Path) -> Result<bool, SessionError> {
    let (Ok(ma), Ok(mb)) = (fs::symlink_metadata(a), fs::symlink_metadata(b)) else {
        return Ok(false);
    };
    if ma.file_type().is_symlink() || mb.file_type().is_symlink() {
        return Ok(ma.file_type().is_symlink()
            && mb.file_type().is_symlink()
            && fs::read_link(a).ok() == fs::read_link(b).ok());
    }
    if !(ma.is_file() && mb.is_file()) {
        return Ok(ma.is_dir() && mb.is_dir());
    }
    if ma.len() != mb.len() || ma.permissions().mode() != mb.permissions().mode() {
        return Ok(false);
    }
    let (mut fa, _) = open_regular(a)?;
    let (mut fb, _) = open_regular(b)?;
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = fa
            .read(&mut ba)
            .map_err(|e| SessionError::io("cannot read", a, e))?;
        let m =
            read_full(&mut fb, &mut bb[..n]).map_err(|e| SessionError::io("cannot read", b, e))?;
        if n != m || ba[..n] != bb[..n] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// A directory [`changes`] still has to read (an explicit list instead of recursion: the agent
/// chooses how deep its tree is).
enum Task {
    /// `upper/rel` compared with `lower/rel`.
    Walk(PathBuf),
    /// Everything below `upper/rel` is new.
    AllAdded(PathBuf),
    /// Every non-directory below `lower/rel` is deleted; with `unless_above`, only those the
    /// upper layer has nothing at (an opaque directory: replaced wholesale).
    FilesBelow { rel: PathBuf, unless_above: bool },
}

/// Every entry in `lower/rel` that is not a directory, as deletions (for reporting a deleted or
/// replaced directory); its directories are queued. Unreadable directories are skipped (the
/// host's tree, not the agent's).
fn files_below(
    lower: &Path,
    upper: &Path,
    rel: &Path,
    unless_above: bool,
    out: &mut Vec<Change>,
    todo: &mut Vec<Task>,
) -> Result<(), SessionError> {
    check_depth(rel, &lower.join(rel))?;
    let Ok(dir) = fs::read_dir(lower.join(rel)) else {
        return Ok(());
    };
    let entries: Vec<_> = dir.flatten().collect();
    for e in entries {
        let r = rel.join(e.file_name());
        let Ok(m) = fs::symlink_metadata(lower.join(&r)) else {
            continue;
        };
        if m.is_dir() {
            todo.push(Task::FilesBelow {
                rel: r,
                unless_above,
            });
        } else if !unless_above || fs::symlink_metadata(upper.join(&r)).is_err() {
            out.push(Change::new(r, ChangeKind::Deleted, EntryType::of(&m)));
        }
    }
    Ok(())
}

/// The entries of `upper/rel`, sorted by name (so changes come out in a stable order); refused
/// below [`MAX_DEPTH`](crate::tree::MAX_DEPTH) levels.
fn sorted_entries(upper: &Path, rel: &Path) -> Result<Vec<fs::DirEntry>, SessionError> {
    let udir = upper.join(rel);
    check_depth(rel, &udir)?;
    let rd = fs::read_dir(&udir).map_err(|e| SessionError::io("cannot read", &udir, e))?;
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

/// The entries of `upper/rel` as additions (a directory the real tree does not have as a
/// directory): files, links and special files, and empty directories; its directories are
/// queued.
fn all_added(
    upper: &Path,
    rel: &Path,
    out: &mut Vec<Change>,
    todo: &mut Vec<Task>,
) -> Result<(), SessionError> {
    for e in sorted_entries(upper, rel)? {
        let r = rel.join(e.file_name());
        let up = upper.join(&r);
        let um = fs::symlink_metadata(&up).map_err(|e| SessionError::io("cannot read", &up, e))?;
        if is_whiteout(&um) {
            continue;
        }
        if um.is_dir() {
            if fs::read_dir(&up).is_ok_and(|mut d| d.next().is_none()) {
                out.push(Change::new(r.clone(), ChangeKind::Added, EntryType::Dir));
            }
            todo.push(Task::AllAdded(r));
        } else {
            out.push(Change::new(r, ChangeKind::Added, EntryType::of(&um)));
        }
    }
    Ok(())
}

/// The changes recorded in `upper` over `lower`, sorted by path. Directories that merely exist in
/// the upper layer because something below them changed are not reported themselves.
///
/// Iterative (no recursion, one directory open at a time), whatever the depth.
///
/// # Errors
/// A directory of `upper` cannot be read ([`SessionError::Io`] naming it), or either tree is
/// nested deeper than [`MAX_DEPTH`](crate::tree::MAX_DEPTH) levels
/// ([`SessionError::Refused`] naming the path and the bound, from [`crate::tree::too_deep`]).
pub fn changes(lower: &Path, upper: &Path) -> Result<Vec<Change>, SessionError> {
    let mut out = Vec::new();
    let mut todo = vec![Task::Walk(PathBuf::new())];
    while let Some(t) = todo.pop() {
        match t {
            Task::Walk(rel) => walk(lower, upper, &rel, &mut out, &mut todo)?,
            Task::AllAdded(rel) => all_added(upper, &rel, &mut out, &mut todo)?,
            Task::FilesBelow { rel, unless_above } => {
                files_below(lower, upper, &rel, unless_above, &mut out, &mut todo)?;
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Compares the entries of `upper/rel` with `lower/rel`, adding changes to `out` and the
/// directories still to read to `todo`.
fn walk(
    lower: &Path,
    upper: &Path,
    rel: &Path,
    out: &mut Vec<Change>,
    todo: &mut Vec<Task>,
) -> Result<(), SessionError> {
    for e in sorted_entries(upper, rel)? {
        let r = rel.join(e.file_name());
        let up = upper.join(&r);
        let low = lower.join(&r);
        let um = fs::symlink_metadata(&up).map_err(|e| SessionError::io("cannot read", &up, e))?;
        let lm = fs::symlink_metadata(&low).ok();
        if is_whiteout(&um) {
            match lm {
                Some(m) if m.is_dir() => todo.push(Task::FilesBelow {
                    rel: r,
                    unless_above: false,
                }),
                Some(m) => out.push(Change::new(r, ChangeKind::Deleted, EntryType::of(&m))),
                None => {}
            }
            continue;
        }
        let ut = EntryType::of(&um);
        if um.is_dir() {
            match &lm {
                Some(m) if m.is_dir() => {
                    if is_opaque(&up) {
                        // Replaced wholesale: lower files not present above are deleted.
                        todo.push(Task::FilesBelow {
                            rel: r.clone(),
                            unless_above: true,
                        });
                    }
                }
                // A file or link the agent replaced by a directory: overlayfs marks a directory
                // created over a whiteout opaque. Everything in it is new (never compared with
                // what the host's path, maybe a link, leads to).
                Some(m) if is_opaque(&up) => {
                    let mut c = Change::new(r.clone(), ChangeKind::Modified, ut);
                    c.was = Some(EntryType::of(m));
                    out.push(c);
                    todo.push(Task::AllAdded(r));
                    continue;
                }
                // Not opaque: the directory was the host's when the agent wrote in it, and the
                // host has since replaced it with a file or link. Not the agent's change; what
                // it wrote below is walked as usual, and merge refuses to write through the
                // host's link (a conflict, `check_destinations`).
                Some(_) => {}
                None => {
                    if fs::read_dir(&up)
                        .map(|mut d| d.next().is_none())
                        .unwrap_or(false)
                    {
                        out.push(Change::new(r.clone(), ChangeKind::Added, ut));
                    }
                }
            }
            todo.push(Task::Walk(r));
            continue;
        }
        match lm {
            None => out.push(Change::new(r, ChangeKind::Added, ut)),
            Some(m) if m.is_dir() => {
                // A directory replaced by a file or link: its contents are deleted first, then
                // the path changes type (a modification of the host directory, not an addition
                // that would always collide with it).
                todo.push(Task::FilesBelow {
                    rel: r.clone(),
                    unless_above: false,
                });
                let mut c = Change::new(r, ChangeKind::Modified, ut);
                c.was = Some(EntryType::Dir);
                out.push(c);
            }
            Some(m) => {
                if ut.is_special() || !same(&low, &up)? {
                    let mut c = Change::new(r, ChangeKind::Modified, ut);
                    let lt = EntryType::of(&m);
                    c.was = (lt != ut).then_some(lt);
                    out.push(c);
                }
            }
        }
    }
    Ok(())
}

/// What a side of a diff holds: text shown in full, a file diff cannot show (what it is), or
/// nothing (absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    /// No file on this side (added or deleted).
    Absent,
    /// Text shown in full.
    Text(String),
    /// A file `diff` cannot show in full.
    Unshown(crate::review::Unshown),
    /// A symbolic link with this target.
    Link(PathBuf),
}

/// Reads the first [`crate::review::MAX_SHOWN_BYTES`] + 1 bytes of the regular file `path`
/// (never following a link or blocking on a FIFO) and classifies them.
///
/// # Errors
/// When the file cannot be opened or read (named in the message).
pub fn read_content(path: &Path) -> Result<Result<String, crate::review::Unshown>, String> {
    let (f, m) = open_regular(path).map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    f.take(crate::review::MAX_SHOWN_BYTES + 1)
        .read_to_end(&mut head)
        .map_err(|e| format!("cannot read {}: {e}", crate::quote::path(&path)))?;
    Ok(crate::review::classify(&head, m.len()))
}

/// One side of the diff of `path` (in the real tree or the upper layer).
fn side_of(path: &Path) -> Result<Side, String> {
    let Ok(m) = fs::symlink_metadata(path) else {
        return Ok(Side::Absent);
    };
    if m.file_type().is_symlink() {
        return fs::read_link(path)
            .map(Side::Link)
            .map_err(|e| format!("cannot read {}: {e}", crate::quote::path(&path)));
    }
    if !m.is_file() {
        return Ok(Side::Absent);
    }
    Ok(match read_content(path)? {
        Ok(t) => Side::Text(t),
        Err(u) => Side::Unshown(u),
    })
}

/// What the rules need of the agent's version of `c` in `upper` (see [`crate::review::concerns`]).
pub fn version_of(upper: &Path, c: &Change) -> crate::review::Version {
    use crate::review::Version;
    if c.kind == ChangeKind::Deleted {
        return Version::Deleted;
    }
    let p = upper.join(&c.path);
    match c.entry {
        EntryType::Dir => Version::Dir,
        EntryType::Symlink => fs::read_link(&p).map_or(Version::Other, Version::Link),
        EntryType::File => match read_content(&p) {
            Ok(r) => Version::File(r),
            Err(e) => Version::File(Err(crate::review::Unshown {
                kind: format!("unreadable ({e})"),
                len: 0,
            })),
        },
        _ => Version::Other,
    }
}

/// Whether `p` exists in the agent's view of the workspace (the upper layer over `lower`,
/// whiteouts hiding), as a directory when `dir`.
pub fn exists_in_view(lower: &Path, upper: &Path, p: &Path, dir: bool) -> bool {
    let ok = |m: &fs::Metadata| if dir { m.is_dir() } else { !m.is_dir() };
    match fs::symlink_metadata(upper.join(p)) {
        Ok(m) if is_whiteout(&m) => false,
        Ok(m) => ok(&m),
        Err(_) => fs::symlink_metadata(lower.join(p)).is_ok_and(|m| ok(&m)),
    }
}

/// The concerns (see [`crate::review`]) of a change in the upper layer: the rules `diff` marks
/// and `merge` refuses by.
pub fn concerns_of(lower: &Path, upper: &Path, c: &Change) -> Vec<crate::review::Concern> {
    if crate::review::is_git_internal(&c.path) {
        return Vec::new();
    }
    let has = |p: &Path, dir: bool| exists_in_view(lower, upper, p, dir);
    let link_of = |p: &Path| link_in_view(lower, upper, p);
    crate::review::concerns_in(lower, &c.path, &version_of(upper, c), &has, &link_of)
}

/// The target of `p` when it is a link in the agent's view of the workspace (the upper layer
/// over `lower`, whiteouts hiding).
pub fn link_in_view(lower: &Path, upper: &Path, p: &Path) -> Option<PathBuf> {
    let read = |full: PathBuf| {
        fs::read_link(&full)
            .ok()
            .filter(|_| fs::symlink_metadata(&full).is_ok_and(|m| m.file_type().is_symlink()))
    };
    match fs::symlink_metadata(upper.join(p)) {
        Ok(m) if is_whiteout(&m) => None,
        Ok(_) => read(upper.join(p)),
        Err(_) => read(lower.join(p)),
    }
}

fn mode_of(p: &Path) -> Option<u32> {
    fs::symlink_metadata(p)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.permissions().mode() & 0o7777)
}

/// Renders one change as a unified diff (`a/` is the real tree, `b/` the agent's), preceded by a
/// `!!` line per concern (what `merge` refuses, and the flag that lands it).
pub fn unified(lower: &Path, upper: &Path, c: &Change) -> String {
    let mut out = String::new();
    for k in concerns_of(lower, upper, c) {
        out.push_str(&concern_line(&c.path, &k));
    }
    if let Some(note) = note_of(c) {
        out.push_str(&note_line(&c.path, note));
    }
    out + &unified_body(lower, upper, c)
}

/// The note `diff` shows on a change `merge` lands without a flag ([`crate::review::note_reason`]),
/// for a change that is not a deletion.
pub fn note_of(c: &Change) -> Option<&'static str> {
    (c.kind != ChangeKind::Deleted)
        .then(|| crate::review::note_reason(&c.path))
        .flatten()
}

/// The marker line of a note: `!` (one mark; `!!` is what merge refuses).
pub fn note_line(path: &Path, note: &str) -> String {
    format!("!  {}: {note}\n", crate::quote::path(path))
}

/// The marker line of a concern, the same in the working-tree diff and the commits' diff.
pub fn concern_line(path: &Path, k: &crate::review::Concern) -> String {
    format!(
        "!! {}: {k}; merge refuses it without {}\n",
        crate::quote::path(path),
        k.flag()
    )
}

fn unified_body(lower: &Path, upper: &Path, c: &Change) -> String {
    let p = crate::quote::path(&c.path);
    if c.entry.is_special() {
        let what = c.entry.describe();
        return match c.kind {
            ChangeKind::Deleted => format!("deleted special file {p}: {what}\n"),
            _ => format!("special file {p}: {what}; merge refuses it\n"),
        };
    }
    if let Some(was) = c.was {
        let mut head = format!(
            "type changed {p}: {} -> {}\n",
            was.describe(),
            c.entry.describe()
        );
        match side_of(&upper.join(&c.path)) {
            Ok(Side::Link(t)) => head.push_str(&format!("-> {}\n", crate::quote::path(&t))),
            Ok(s @ (Side::Text(_) | Side::Unshown(_))) => {
                head.push_str(&render(
                    &p,
                    Side::Absent,
                    s,
                    ChangeKind::Added,
                    (None, None),
                ));
            }
            _ => {}
        }
        return head;
    }
    if c.dir {
        return match c.kind {
            ChangeKind::Added => format!("new directory {p}\n"),
            ChangeKind::Deleted => format!("deleted directory {p}\n"),
            ChangeKind::Modified => format!("type changed {p}\n"),
        };
    }
    let old = match c.kind {
        ChangeKind::Added => Ok(Side::Absent),
        _ => side_of(&lower.join(&c.path)),
    };
    let new = match c.kind {
        ChangeKind::Deleted => Ok(Side::Absent),
        _ => side_of(&upper.join(&c.path)),
    };
    let (old, new) = match (old, new) {
        (Err(e), _) | (_, Err(e)) => return format!("diff of {p} unavailable: {e}\n"),
        (Ok(o), Ok(n)) => (o, n),
    };
    let modes = (mode_of(&lower.join(&c.path)), mode_of(&upper.join(&c.path)));
    render(&p, old, new, c.kind, modes)
}

/// The note for a change whose new side `diff` cannot show: what both sides are.
fn not_shown(
    mut head: String,
    p: &str,
    old: &Side,
    new: &Side,
    describe: impl Fn(&Side, &str) -> Option<String>,
) -> String {
    head.push_str(&format!(
        "NOT SHOWN: b/{p} cannot be shown in full (binary, over {} MiB or not UTF-8)\n",
        crate::review::MAX_SHOWN_BYTES >> 20
    ));
    head.extend(describe(old, "a/"));
    head.extend(describe(new, "b/"));
    head
}

/// Renders a change from its two sides: a unified diff of text (control characters shown as
/// `^[`), a symbolic link with its target, or a note naming a file diff cannot show (its kind,
/// size and mode). `p` is the quoted path; `modes` the permission bits of the old and new file.
pub fn render(
    p: &str,
    old: Side,
    new: Side,
    kind: ChangeKind,
    modes: (Option<u32>, Option<u32>),
) -> String {
    let mut head = format!("diff --airlock a/{p} b/{p}\n");
    match kind {
        ChangeKind::Added => head.push_str("new file\n"),
        ChangeKind::Deleted => head.push_str("deleted file\n"),
        ChangeKind::Modified => {}
    }
    // Merge lands the permission bits only (`merge.rs`): the mode shown is the one it lands,
    // and setuid, setgid and sticky bits the agent set are named as dropped.
    let dropped = modes.1.filter(|b| b & 0o7000 != 0).map(|b| {
        format!("# the agent set mode {b:o}: merge drops its setuid/setgid/sticky bits\n")
    });
    let modes = (modes.0.map(|a| a & 0o777), modes.1.map(|b| b & 0o777));
    if let (Some(a), Some(b)) = modes {
        if a != b {
            head.push_str(&format!("old mode {a:o}\nnew mode {b:o}\n"));
        }
    } else if let (None, Some(b)) = modes {
        if b & 0o111 != 0 {
            head.push_str(&format!("new mode {b:o}\n"));
        }
    }
    head.push_str(dropped.as_deref().unwrap_or(""));
    let describe = |s: &Side, which: &str| match s {
        Side::Absent => None,
        Side::Text(t) => Some(format!(
            "  {which}{p}: text, {}\n",
            crate::merge::human_size(t.len() as u64)
        )),
        Side::Unshown(u) => Some(format!(
            "  {which}{p}: {}, {}\n",
            u.kind,
            crate::merge::human_size(u.len)
        )),
        Side::Link(t) => Some(format!(
            "  {which}{p}: symbolic link -> {}\n",
            crate::quote::path(t)
        )),
    };
    let text = |s: &Side| match s {
        Side::Absent => Some(String::new()),
        Side::Text(t) => Some(crate::quote::visible(t).into_owned()),
        Side::Link(t) => Some(format!("-> {}\n", crate::quote::path(t))),
        Side::Unshown(_) => None,
    };
    if let (Side::Link(_), _) | (_, Side::Link(_)) = (&old, &new) {
        let what = match (&old, &new) {
            (_, Side::Link(t)) => format!("symbolic link b/{p} -> {}\n", crate::quote::path(t)),
            _ => format!("was a symbolic link a/{p}\n"),
        };
        head.push_str(&what);
    }
    let (o, n) = match (text(&old), text(&new)) {
        (Some(o), Some(n)) => (o, n),
        // The old side cannot be shown but the agent's can: the agent's in full.
        (None, Some(n)) => {
            head.extend(describe(&old, "a/ (not shown)"));
            (String::new(), n)
        }
        _ => {
            return not_shown(head, p, &old, &new, describe);
        }
    };
    let (from, to) = match kind {
        ChangeKind::Added => ("/dev/null".to_string(), format!("b/{p}")),
        ChangeKind::Deleted => (format!("a/{p}"), "/dev/null".to_string()),
        ChangeKind::Modified => (format!("a/{p}"), format!("b/{p}")),
    };
    // A minimal diff of a few MiB can take minutes; past the deadline `similar` settles for a
    // correct but longer one.
    let diff = similar::TextDiff::configure()
        .timeout(std::time::Duration::from_secs(2))
        .diff_lines(&o, &n);
    let body = diff
        .unified_diff()
        .context_radius(3)
        .header(&from, &to)
        .to_string();
    head + &body
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Red-team I3: diff shows the mode merge lands (permission bits only) and says the
    /// setuid/setgid/sticky bits the agent set are dropped.
    #[test]
    fn diff_shows_the_mode_merge_lands() {
        let text = |t: &str| Side::Text(t.to_string());
        for (modes, shown, note) in [
            (
                (Some(0o644), Some(0o4755)),
                "old mode 644\nnew mode 755\n",
                true,
            ),
            ((None, Some(0o6755)), "new mode 755\n", true),
            ((Some(0o755), Some(0o1755)), "", true),
            (
                (Some(0o644), Some(0o755)),
                "old mode 644\nnew mode 755\n",
                false,
            ),
        ] {
            let out = render("f", text("a\n"), text("b\n"), ChangeKind::Modified, modes);
            assert!(out.contains(shown), "{modes:?}: {out}");
            assert!(
                !["new mode 4755", "new mode 6755", "new mode 1755"]
                    .iter()
                    .any(|m| out.contains(m)),
                "{out}"
            );
            assert_eq!(
                out.contains("drops its setuid/setgid/sticky bits"),
                note,
                "{out}"
            );
        }
    }

    #[test]
    fn deep_upper_trees_are_refused_by_name_within_the_bound_walked() {
        use crate::tree::{tests::nest, MAX_DEPTH};
        for (depth, ok) in [(MAX_DEPTH, true), (MAX_DEPTH + 1, false), (3_000, false)] {
            let t = tempfile::tempdir().expect("tempdir");
            let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
            std::fs::create_dir(&lower).expect("mkdir");
            std::fs::create_dir(&upper).expect("mkdir");
            nest(&upper, depth);
            match changes(&lower, &upper) {
                Ok(c) if ok => {
                    assert_eq!(c.len(), 1, "depth {depth}");
                    assert!(c[0].path.ends_with("d/leaf.txt"));
                    assert_eq!(c[0].path.components().count(), depth + 1);
                }
                Err(SessionError::Refused(m)) if !ok => {
                    assert!(m.contains("deeper than 1024"), "{m}");
                    assert!(m.contains("/upper/d/d/"), "names the path: {m}");
                }
                other => panic!("depth {depth}: {other:?}"),
            }
            // The same tree replacing a host file (opaque: all added) and below a whiteout of a
            // deep host directory (all deleted): the same bound.
            if !ok {
                std::fs::write(lower.join("d"), "host file").expect("write");
                let e = changes(&lower, &upper).expect_err("refused");
                assert!(e.to_string().contains("deeper than 1024"), "{e}");
            }
        }
    }

    #[test]
    fn deep_host_trees_below_a_deleted_directory_are_refused_too() {
        use crate::tree::tests::nest;
        let t = tempfile::tempdir().expect("tempdir");
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        std::fs::create_dir(&lower).expect("mkdir");
        std::fs::create_dir(&upper).expect("mkdir");
        nest(&lower, 3_000);
        // The agent replaced the host's deep directory `d` by a file.
        std::fs::write(upper.join("d"), "x").expect("write");
        let e = changes(&lower, &upper).expect_err("refused");
        assert!(e.to_string().contains("deeper than 1024"), "{e}");
        assert!(e.to_string().contains("/lower/d/d/"), "{e}");
    }

    #[test]
    fn change_kind_names_are_pinned() {
        for (kind, name) in [
            (ChangeKind::Added, "added"),
            (ChangeKind::Modified, "modified"),
            (ChangeKind::Deleted, "deleted"),
        ] {
            assert_eq!(kind.as_str(), name);
            assert_eq!(kind.to_string(), name);
            assert_eq!(
                serde_json::to_string(&kind).expect("serialise"),
                format!("\"{name}\"")
            );
        }
    }

    fn write(p: &Path, s: &str) {
        if let Some(d) = p.parent() {
            fs::create_dir_all(d).expect("mkdir");
        }
        fs::write(p, s).expect("write");
    }

    #[test]
    fn added_modified_and_unchanged_copies() {
        let t = tempfile::tempdir().expect("tempdir");
        let (lower, upper) = (t.path().join("l"), t.path().join("u"));
        write(&lower.join("a.txt"), "a\n");
        write(&lower.join("same.txt"), "same\n");
        write(&lower.join("d/x.txt"), "x\n");
        write(&upper.join("a.txt"), "a\nmore\n");
        write(&upper.join("same.txt"), "same\n"); // copied up but unchanged
        write(&upper.join("d/new.txt"), "new\n");
        let c = changes(&lower, &upper).expect("changes");
        let got: Vec<(String, ChangeKind)> = c
            .iter()
            .map(|c| (c.path.display().to_string(), c.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a.txt".to_string(), ChangeKind::Modified),
                ("d/new.txt".to_string(), ChangeKind::Added),
            ]
        );
        let d = unified(&lower, &upper, &c[0]);
        assert!(d.contains("--- a/a.txt") && d.contains("+more"), "{d}");
        let d = unified(&lower, &upper, &c[1]);
        assert!(d.contains("--- /dev/null") && d.contains("+new"), "{d}");
    }

    #[test]
    fn binary_files_are_noted_not_dumped() {
        let t = tempfile::tempdir().expect("tempdir");
        let (lower, upper) = (t.path().join("l"), t.path().join("u"));
        fs::create_dir_all(&lower).expect("mkdir");
        fs::create_dir_all(&upper).expect("mkdir");
        fs::write(lower.join("b.bin"), [0u8, 1, 2]).expect("write");
        fs::write(upper.join("b.bin"), [0u8, 1, 3]).expect("write");
        let c = changes(&lower, &upper).expect("changes");
        assert_eq!(c.len(), 1);
        let d = unified(&lower, &upper, &c[0]);
        assert!(d.contains("NOT SHOWN") && d.contains("binary data"), "{d}");
    }
}
