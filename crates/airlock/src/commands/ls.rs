//! The session list and its upkeep: `airlock ls` (newest first; by default what still needs
//! you: running sessions and those with unmerged changes), the removal of a session with what
//! it freed (used by `airlock prune`, in prune.rs), and the end of a session run with `--rm` or
//! in bind mode (`finish_session`).

use std::io::Write;
use std::path::{Path, PathBuf};

use airlock_session::merge::is_git_internal;
use airlock_session::{SessionMode, SessionRow, SessionState, Store};
use anyhow::{Context, Result};
use serde::Serialize;

use super::rm::remove_tree;
use super::session::{review, state_word};
use crate::backends;
use crate::cli::LsArgs;
use crate::review_out::ReviewOut;
use crate::session_dir;

/// What a session holds that has not reached the workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) struct Unmerged {
    /// Changed files in the overlay's upper layer (git internals and ignored paths not counted).
    pub(crate) files: usize,
    /// Changes under paths the workspace's own ignore rules ignore (build output such as
    /// `target/`): listed for information, never counted as unmerged.
    #[serde(default)]
    pub(crate) ignored: usize,
    /// New commits in the overlay.
    pub(crate) commits: usize,
    /// A worktree kept because it had changes (worktree mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) worktree: Option<PathBuf>,
    /// The changes could not be read (the workspace is gone, a layer is unreadable): treated as
    /// unmerged, so nothing is thrown away on a guess.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) unknown: Option<String>,
}

impl Unmerged {
    /// Nothing to lose.
    pub(crate) fn is_empty(&self) -> bool {
        self.files == 0 && self.commits == 0 && self.worktree.is_none() && self.unknown.is_none()
    }

    /// `3 file(s), 1 commit(s)`, `a worktree at ...`, or why it is unknown.
    pub(crate) fn describe(&self) -> String {
        if let Some(why) = &self.unknown {
            return format!("changes that cannot be read ({why})");
        }
        if let Some(w) = &self.worktree {
            return format!(
                "a worktree with changes at {}",
                airlock_session::quote::path(w)
            );
        }
        format!("{} file(s), {} commit(s)", self.files, self.commits)
    }
}

/// Where an ended session's [`Unmerged`] is kept (its upper layer no longer changes).
const UNMERGED_CACHE: &str = "unmerged.json";

/// What session `r` holds unmerged. A merged session, a bind-mode session (its writes went to
/// the workspace itself) and an overlay without changes (an empty upper layer, whether or not the
/// workspace is still there) hold nothing; changes the workspace's
/// own ignore rules ignore do not count. Computed once for an ended session, then read from
/// its directory.
pub(crate) fn unmerged(r: &SessionRow) -> Unmerged {
    let mut u = Unmerged::default();
    if r.merged {
        return u;
    }
    match r.mode {
        SessionMode::Overlay => {
            let upper = r.dir.join("upper");
            let empty = std::fs::read_dir(&upper).is_ok_and(|mut d| d.next().is_none());
            if !upper.is_dir() || empty {
                return u;
            }
            let cache = r.dir.join(UNMERGED_CACHE);
            let ended = r.state != SessionState::Running;
            if ended {
                if let Some(c) = std::fs::read(&cache)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Unmerged>(&b).ok())
                {
                    return c;
                }
            }
            match review(r) {
                Ok(rv) => {
                    let mut ignores = HostIgnores::new(&r.workspace);
                    for c in rv.files.iter().filter(|c| !is_git_internal(&c.path)) {
                        if ignores.ignored(&c.path, c.dir) {
                            u.ignored += 1;
                        } else {
                            u.files += 1;
                        }
                    }
                    u.commits = rv.commits.len();
                    if ended {
                        if let Ok(bytes) = serde_json::to_vec(&u) {
                            let _ = std::fs::write(&cache, bytes);
                        }
                    }
                }
                Err(e) => u.unknown = Some(format!("{e:#}")),
            }
        }
        SessionMode::Worktree => {
            let kept = session_dir::sessions_root()
                .ok()
                .and_then(|s| s.parent().map(|p| p.join("worktrees").join(&r.id)));
            if let Some(w) = kept.filter(|w| w.exists()) {
                u.worktree = Some(w);
            }
        }
        SessionMode::Bind => {}
    }
    u
}

/// The workspace's ignore rules as the host has them (`.git/info/exclude`, then each
/// `.gitignore` from the root down to the changed path, a deeper file overriding), read from the
/// real tree: in overlay mode the agent's writes are in the upper layer, so it cannot add rules
/// that would make its changes look ignored.
struct HostIgnores {
    root: PathBuf,
    loaded: std::collections::HashMap<PathBuf, Option<ignore::gitignore::Gitignore>>,
}

impl HostIgnores {
    fn new(root: &Path) -> HostIgnores {
        HostIgnores {
            root: root.to_path_buf(),
            loaded: std::collections::HashMap::new(),
        }
    }

    /// The matcher of one ignore file, loaded once; `None` when there is none.
    fn matcher(&mut self, file: PathBuf) -> Option<&ignore::gitignore::Gitignore> {
        self.loaded
            .entry(file.clone())
            .or_insert_with(|| {
                file.symlink_metadata()
                    .is_ok_and(|m| m.is_file())
                    .then(|| ignore::gitignore::Gitignore::new(&file).0)
            })
            .as_ref()
    }

    /// Whether `rel` (relative to the workspace) is ignored.
    fn ignored(&mut self, rel: &Path, is_dir: bool) -> bool {
        use ignore::Match;
        let mut verdict = false;
        let mut check = |gi: Option<&ignore::gitignore::Gitignore>, sub: &Path| match gi
            .map(|g| g.matched_path_or_any_parents(sub, is_dir))
        {
            Some(Match::Ignore(_)) => verdict = true,
            Some(Match::Whitelist(_)) => verdict = false,
            _ => {}
        };
        let exclude = self.root.join(".git/info/exclude");
        check(self.matcher(exclude), rel);
        let mut dir = PathBuf::new();
        let parts: Vec<_> = rel.components().collect();
        for (i, part) in parts.iter().enumerate() {
            let file = self.root.join(&dir).join(".gitignore");
            let sub = rel.strip_prefix(&dir).unwrap_or(rel).to_path_buf();
            check(self.matcher(file), &sub);
            if i + 1 < parts.len() {
                dir.push(part);
            }
        }
        verdict
    }
}

/// A listed session: the stored row and what it holds unmerged.
#[derive(Debug, Serialize)]
struct Listed {
    #[serde(flatten)]
    row: SessionRow,
    unmerged: Unmerged,
    /// A remote session's box left in place by `--keep` (deleted by `airlock rm`).
    box_kept: bool,
}

pub(crate) fn ls(args: LsArgs) -> Result<i32> {
    let store = session_dir::store()?;
    let mut rows = store.list()?;
    for (id, why) in store.unreadable()? {
        eprintln!(
            "airlock: warning: session {} is left out: its row cannot be read ({})",
            airlock_session::quote::name(&id),
            airlock_session::quote::name(&why)
        );
    }
    rows.reverse();
    let total = rows.len();
    let listed: Vec<Listed> = rows
        .into_iter()
        .map(|row| Listed {
            unmerged: unmerged(&row),
            box_kept: super::session::box_kept(&row),
            row,
        })
        .filter(|l| {
            args.all || l.row.state == SessionState::Running || !l.unmerged.is_empty() || l.box_kept
        })
        .collect();
    let hidden = total - listed.len();
    let mut out = ReviewOut::stdout();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &listed)?;
        writeln!(out)?;
        return Ok(0);
    }
    if listed.is_empty() {
        match hidden {
            0 => writeln!(out, "no sessions; start one with `airlock run`")?,
            n => writeln!(
                out,
                "nothing needs you: no live session and none with unmerged changes ({n} ended; `airlock ls --all` lists them, `airlock prune` removes them)"
            )?,
        }
        return Ok(0);
    }
    write!(out, "{}", table(&listed))?;
    // A `?` is explained: why that session's changes cannot be read (the others list as usual).
    for l in listed.iter().filter(|l| l.unmerged.unknown.is_some()) {
        eprintln!("airlock: session {}: {}", l.row.id, l.unmerged.describe());
    }
    if hidden > 0 {
        eprintln!(
            "airlock: {hidden} ended session(s) with nothing unmerged not shown; `airlock ls --all` lists them, `airlock prune` removes them"
        );
    }
    Ok(0)
}

fn table(listed: &[Listed]) -> String {
    let rows: Vec<[String; 8]> = listed
        .iter()
        .map(|l| {
            let r = &l.row;
            let mut state = state_word(r);
            if r.merged {
                state.push_str(", merged");
            }
            let changes = if l.unmerged.is_empty() {
                "-".to_string()
            } else if l.unmerged.unknown.is_some() {
                "?".to_string()
            } else if l.unmerged.worktree.is_some() {
                "worktree".to_string()
            } else {
                format!("{}f {}c", l.unmerged.files, l.unmerged.commits)
            };
            [
                r.id.clone(),
                r.name.clone().unwrap_or_else(|| "-".into()),
                state,
                r.mode.to_string(),
                backend_word(r),
                changes,
                r.created.get(..19).unwrap_or(&r.created).to_string(),
                airlock_session::quote::path(&r.workspace).into_owned(),
            ]
        })
        .collect();
    let header = [
        "ID",
        "NAME",
        "STATE",
        "MODE",
        "BACKEND",
        "UNMERGED",
        "CREATED",
        "WORKSPACE",
    ]
    .map(String::from);
    render_table(&header, &rows)
}

/// The backend a session runs on, with where when it is remote (`k8s@pod/airlock-1234`).
fn backend_word(r: &airlock_session::SessionRow) -> String {
    match &r.location {
        Some(at) => format!("{}@{}", r.backend, airlock_session::quote::name(at)),
        None => r.backend.to_string(),
    }
}

/// Renders rows as columns two spaces apart, each as wide as its widest cell (the last column is
/// not padded); every line, the last included, ends with a newline.
fn render_table<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in std::iter::once(header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Bytes under `dir` (files' allocated size; links not followed).
pub(crate) fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            total = total.saturating_add(m.blocks().saturating_mul(512));
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// `1.2 GiB`, `340.0 MiB`, `12 KiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Deletes a session: what its backend left (`Backend::clean_up`), its directory and its row;
/// returns the bytes freed.
/// What stays after removing worktree session `r` whose worktree `w` was kept, and how to remove
/// it: one line for standard error.
pub(crate) fn worktree_stays(r: &SessionRow, w: &Path) -> String {
    let branch = format!("airlock/{}", r.name.as_deref().unwrap_or(&r.id));
    format!(
        "airlock: session {} removed; its worktree {} and branch {branch} stay in the repository \
         (`git worktree remove --force {}` and `git branch -D {branch}` in {} remove them)",
        r.id,
        airlock_session::quote::path(w),
        airlock_session::quote::path(w),
        airlock_session::quote::path(&r.workspace)
    )
}

pub(crate) fn remove_session(store: &Store, r: &SessionRow) -> Result<u64> {
    let (backend, session) = backends::of(r);
    backend
        .clean_up(&session)
        .with_context(|| format!("session {} was not removed", r.id))?;
    let mut freed = 0;
    if r.dir.exists() {
        freed = disk_usage(&r.dir);
        remove_tree(&r.dir).with_context(|| format!("cannot delete {}", r.dir.display()))?;
    }
    store.delete(&r.id)?;
    Ok(freed)
}

/// A cheap fingerprint of a bind-mode workspace: every entry's path, inode, size, mtime and
/// ctime (which the sandbox cannot set back), walked without following links. `None` when the
/// tree is larger than [`SNAPSHOT_MAX`] entries (then the session is kept: no guess).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Snapshot(Option<Vec<Stamp>>);

/// One entry of a [`Snapshot`]: path, inode, size, mtime (s, ns), ctime (s, ns).
type Stamp = (PathBuf, u64, u64, i64, i64, i64, i64);

/// Entries walked at most for a bind-mode snapshot.
const SNAPSHOT_MAX: usize = 50_000;

impl Snapshot {
    /// Walks `root` (bind mode only; other modes get an empty snapshot and are not judged by it).
    pub(crate) fn take(root: &Path) -> Snapshot {
        use std::os::unix::fs::MetadataExt;
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let Ok(m) = e.path().symlink_metadata() else {
                    continue;
                };
                out.push((
                    e.path(),
                    m.ino(),
                    m.size(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec(),
                ));
                if out.len() > SNAPSHOT_MAX {
                    return Snapshot(None);
                }
                if m.is_dir() {
                    stack.push(e.path());
                }
            }
        }
        if let Ok(m) = root.symlink_metadata() {
            out.push((
                root.to_path_buf(),
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            ));
        }
        out.sort();
        Snapshot(Some(out))
    }
}

/// What the end of a session does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposal {
    /// Keep it (the default).
    Keep,
    /// `--rm`: remove it unless it holds unmerged changes.
    Remove,
    /// `--rm --discard-changes`: remove it whatever it holds.
    Discard,
}

impl Disposal {
    /// From `run --rm [--discard-changes]`.
    pub(crate) fn from_flags(rm: bool, discard_changes: bool) -> Disposal {
        match (rm, discard_changes) {
            (true, true) => Disposal::Discard,
            (true, false) => Disposal::Remove,
            _ => Disposal::Keep,
        }
    }
}

/// At the end of `airlock run`: removes the session with `--rm` (refusing, with a message, when
/// it holds unmerged changes, unless `--discard-changes`), and a bind-mode session whose
/// workspace is exactly as before (`before`) and whose audit log holds nothing but its start
/// and end, so such sessions do not pile up (any network or command decision keeps it for
/// `airlock audit`; nor anything in a preset cache layer). Failures are reported, never fatal: the command's status stands.
/// `store` is the run's own connection (a second one would open and set up the store again).
/// Returns whether the session was removed.
pub(crate) fn finish_session(
    store: &Store,
    session: &str,
    disposal: Disposal,
    before: Option<&Snapshot>,
) -> bool {
    let Ok(r) = store.get(session) else {
        return false;
    };
    let pending = unmerged(&r);
    let remove = match disposal {
        Disposal::Discard => true,
        Disposal::Remove if pending.is_empty() => true,
        Disposal::Remove => {
            eprintln!(
                "airlock: session {session} kept: it holds unmerged changes ({}); review with `airlock diff {session}`, land with `airlock merge {session}`, or discard with `airlock rm --force {session}`",
                pending.describe()
            );
            false
        }
        Disposal::Keep => {
            r.mode == SessionMode::Bind
                && before.is_some_and(|b| b.0.is_some() && *b == Snapshot::take(&r.workspace))
                && audit_is_quiet(&r.dir.join("audit.jsonl"))
                && caches_untouched(&r.dir)
        }
    };
    if !remove {
        return false;
    }
    if let Some(w) = &pending.worktree {
        eprintln!("{}", worktree_stays(&r, w));
    }
    match remove_session(store, &r) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("airlock: warning: cannot remove session {session}: {e:#}");
            false
        }
    }
}

/// Whether no preset cache layer of the session (`SESSION_DIR/caches/N/upper`) holds anything:
/// what a session downloaded stays reviewable until the user removes it.
fn caches_untouched(dir: &Path) -> bool {
    let Ok(caches) = std::fs::read_dir(dir.join("caches")) else {
        return true;
    };
    caches
        .flatten()
        .all(|c| std::fs::read_dir(c.path().join("upper")).map_or(true, |mut d| d.next().is_none()))
}

/// Whether the audit log records nothing worth keeping: only the session's start and end (no
/// network or command decision, no filtered terminal sequence, no unreadable line).
fn audit_is_quiet(log: &Path) -> bool {
    use airlock_audit::Detail;
    airlock_audit::read_events(log).is_ok_and(|(events, bad)| {
        bad == 0
            && events.iter().all(|e| match &e.detail {
                Detail::Session { .. } | Detail::Telemetry { .. } => true,
                Detail::Terminal { dropped, .. } => dropped.values().all(|n| *n == 0),
                _ => false,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ignore_rules_decide_with_deeper_files_winning() {
        let d = tempfile::tempdir().expect("tempdir");
        let w = d.path();
        std::fs::create_dir_all(w.join(".git/info")).expect("mkdir");
        std::fs::create_dir_all(w.join("sub")).expect("mkdir");
        std::fs::write(w.join(".gitignore"), "/target\n*.log\n").expect("write");
        std::fs::write(w.join("sub/.gitignore"), "!keep.log\nbuild/\n").expect("write");
        std::fs::write(w.join(".git/info/exclude"), "scratch/\n").expect("write");
        let mut ig = HostIgnores::new(w);
        for (path, dir, want) in [
            ("target/debug/x", false, true),
            ("target", true, true),
            ("sub/target/x", false, false),
            ("a.log", false, true),
            ("sub/keep.log", false, false),
            ("sub/other.log", false, true),
            ("sub/build/o.o", false, true),
            ("build/o.o", false, false),
            ("scratch/n", false, true),
            ("src/main.rs", false, false),
        ] {
            assert_eq!(ig.ignored(Path::new(path), dir), want, "{path}");
        }
    }

    #[test]
    fn sizes_read_like_du() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(2048), "2.0 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }

    #[test]
    fn a_snapshot_sees_writes_renames_and_touch_backs() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(d.path().join("a"), "1").expect("write");
        let before = Snapshot::take(d.path());
        assert_eq!(before, Snapshot::take(d.path()));
        // Same size, mtime set back: ctime still moves.
        let m = std::fs::metadata(d.path().join("a")).expect("meta");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(d.path().join("a"), "2").expect("write");
        let f = std::fs::File::options()
            .write(true)
            .open(d.path().join("a"))
            .expect("open");
        f.set_modified(m.modified().expect("mtime"))
            .expect("touch back");
        assert_ne!(before, Snapshot::take(d.path()));
        let before = Snapshot::take(d.path());
        std::fs::rename(d.path().join("a"), d.path().join("b")).expect("rename");
        assert_ne!(before, Snapshot::take(d.path()));
    }

    #[test]
    fn table_columns_fit_their_widest_cell_and_every_line_ends() {
        let header = ["ID", "MODE", "WHERE"].map(String::from);
        let rows = [
            ["a1", "overlay", "/w/one"].map(String::from),
            ["b2", "worktree", "/w/two"].map(String::from),
            ["c3", "bind", "/w/three"].map(String::from),
        ];
        let t = render_table(&header, &rows);
        assert!(t.ends_with("/w/three\n"), "{t:?}");
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        // The last column starts at the same offset on every line, even after `worktree`.
        let col = |l: &str| l.find("/w/").or_else(|| l.find("WHERE"));
        let starts: Vec<_> = lines.iter().map(|l| col(l)).collect();
        assert!(starts.iter().all(|s| *s == starts[0]), "{t}");
        assert_eq!(lines[2], "b2  worktree  /w/two");
        assert!(lines.iter().all(|l| !l.ends_with(' ')), "{t:?}");
    }
}
