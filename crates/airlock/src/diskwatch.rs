//! The disk bound of a running session (`[limits] disk`, `--disk`; DESIGN guarantee 6,
//! docs/sandbox.md "Disk"): a supervisor thread measures what the session has written on the
//! host (its session directory: the workspace's upper layer, the cache layers, the output
//! directory; and the growth of a worktree and its private git directory) and, once that is
//! over the limit, stops the session with a line naming it and the limit. Nothing is deleted:
//! what was written stays for `airlock diff` and `merge`.
//!
//! The measure is a walk that charges each inode once (hard links) its allocated blocks
//! (`st_blocks`, so a sparse file counts what it occupies and `fallocate` what it reserved), at
//! least [`MIN_CHARGE`] (so many empty files count too). A walk costs time on a big tree, so it
//! runs every few seconds, and at once when the host file system's free space or free inodes
//! (statvfs(3), polled every [`TICK`]) fell by half the room left since the last walk: a fast
//! writer is caught within a tick or two. One file is bounded by the kernel as well: the
//! sandbox's RLIMIT_FSIZE is the same limit.
//!
//! Fails closed: a tree that cannot be measured (an unreadable directory, a path too long, a
//! tree changing under the walk three times in a row) stops the session too, naming the path.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use airlock_sandbox::notice::NoticeSender;
use anyhow::{Context, Result};

/// How often the host file systems' free space is looked at.
pub(crate) const TICK: Duration = Duration::from_millis(25);
/// The least an inode is charged (one file system block): empty files use inodes.
pub(crate) const MIN_CHARGE: u64 = 4096;
/// Walks of a tree that keeps changing under them before the session is stopped.
const WALK_TRIES: usize = 3;
/// Bounds of the time between two walks when free space does not move (scaled to 20 times
/// the last walk's duration, so a big tree is not walked back to back).
const WALK_EVERY_MIN: Duration = Duration::from_secs(2);
const WALK_EVERY_MAX: Duration = Duration::from_secs(30);

/// A tree the session writes, charged in full (the session directory) or only for what it
/// grows by once the watch starts (a worktree's checkout was there before).
#[derive(Debug, Clone)]
pub(crate) struct Root {
    pub(crate) path: PathBuf,
    pub(crate) growth_only: bool,
}

impl Root {
    /// A tree charged in full.
    pub(crate) fn whole(path: PathBuf) -> Root {
        Root {
            path,
            growth_only: false,
        }
    }

    /// A tree charged only for what it grows by from the watch's start.
    pub(crate) fn growth(path: PathBuf) -> Root {
        Root {
            path,
            growth_only: true,
        }
    }
}

/// The running watch; [`Watch::finish`] ends its thread.
#[derive(Debug)]
pub(crate) struct Watch {
    done: Arc<AtomicBool>,
    reason: Arc<OnceLock<String>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    /// Starts watching `roots` of `session` against `limit` bytes; a session over it is
    /// stopped through `notices` ([`NoticeSender::halt`]).
    ///
    /// # Errors
    /// The thread cannot be started.
    pub(crate) fn start(
        session: &str,
        roots: Vec<Root>,
        limit: u64,
        notices: NoticeSender,
    ) -> Result<Watch> {
        let done = Arc::new(AtomicBool::new(false));
        let reason = Arc::new(OnceLock::new());
        let state = Watcher {
            session: session.to_string(),
            roots,
            bases: Vec::new(),
            limit,
            notices,
            done: done.clone(),
            reason: reason.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("airlock-disk".into())
            .spawn(move || state.run())
            .context("cannot start the session's disk watch")?;
        Ok(Watch {
            done,
            reason,
            thread: Some(thread),
        })
    }

    /// Ends the watch; why it stopped the session, if it did (`session NAME stopped: ...`).
    pub(crate) fn finish(mut self) -> Option<String> {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.reason.get().cloned()
    }
}

struct Watcher {
    session: String,
    roots: Vec<Root>,
    /// Bytes of each root not charged (set when the thread starts).
    bases: Vec<u64>,
    limit: u64,
    notices: NoticeSender,
    done: Arc<AtomicBool>,
    reason: Arc<OnceLock<String>>,
}

/// Free bytes and inodes of each root's file system.
type Free = Vec<(u64, u64)>;

impl Watcher {
    fn run(mut self) {
        // The trees charged for their growth: their size now (one that cannot be measured now
        // is charged in full, the safe side).
        self.bases = self
            .roots
            .iter()
            .map(|r| {
                r.growth_only
                    .then(|| usage(std::slice::from_ref(&r.path)).ok())
                    .flatten()
                    .unwrap_or(0)
            })
            .collect();
        let mut room = 0u64;
        let mut free_then: Free = Vec::new();
        let mut next_walk = Instant::now();
        while !self.done.load(Ordering::Relaxed) {
            let free_now = self.free();
            if Instant::now() >= next_walk || self.shrank(&free_then, &free_now, room) {
                let started = Instant::now();
                free_then = free_now;
                match self.measure() {
                    Ok(used) if used > self.limit => return self.stop(&over(used, self.limit)),
                    Ok(used) => room = self.limit - used,
                    Err(e) => return self.stop(&format!("{e:#}")),
                }
                let every = (started.elapsed() * 20).clamp(WALK_EVERY_MIN, WALK_EVERY_MAX);
                next_walk = Instant::now() + every;
            }
            std::thread::sleep(TICK);
        }
    }

    /// Whether some root's file system lost half the room left (in bytes, or in inodes
    /// charged [`MIN_CHARGE`] each) since the last walk.
    fn shrank(&self, then: &Free, now: &Free, room: u64) -> bool {
        then.iter().zip(now).any(|((b0, i0), (b1, i1))| {
            let bytes = b0.saturating_sub(*b1);
            let inodes = i0.saturating_sub(*i1).saturating_mul(MIN_CHARGE);
            bytes.max(inodes).saturating_mul(2) >= room
        })
    }

    fn free(&self) -> Free {
        self.roots
            .iter()
            .map(|r| {
                nix::sys::statvfs::statvfs(&r.path).map_or((0, 0), |s| {
                    (
                        s.blocks_available().saturating_mul(s.fragment_size()),
                        s.files_available(),
                    )
                })
            })
            .collect()
    }

    /// What the session wrote, in bytes, walking each root (retried when the tree changed
    /// under the walk).
    fn measure(&self) -> Result<u64> {
        let mut total = 0u64;
        for (root, base) in self.roots.iter().zip(&self.bases) {
            let mut tries = 0;
            let used = loop {
                match usage(std::slice::from_ref(&root.path)) {
                    Ok(n) => break n,
                    Err(e) if changed(&e) && tries + 1 < WALK_TRIES => tries += 1,
                    Err(e) => {
                        return Err(e.context(format!(
                            "session {}: cannot measure the disk it writes, so it was stopped \
                             (its disk limit cannot be enforced); what it wrote is kept: \
                             `airlock diff {}`",
                            self.session, self.session
                        )))
                    }
                }
            };
            total = total.saturating_add(used.saturating_sub(*base));
        }
        Ok(total)
    }

    fn stop(&self, why: &str) {
        let line = if why.starts_with("session ") {
            why.to_string()
        } else {
            format!(
                "session {} stopped: {why} ([limits] disk, `--disk SIZE`); what it wrote is \
                 kept: review it with `airlock diff {}`",
                self.session, self.session
            )
        };
        let _ = self.reason.set(line);
        let short = format!(
            "airlock: session {} is over its disk limit or cannot be measured: stopping it",
            self.session
        );
        // A full pipe drops the request: asked again until the relay takes it.
        while !self.notices.halt(&short) && !self.done.load(Ordering::Relaxed) {
            std::thread::sleep(TICK);
        }
    }
}

/// "it wrote 9.0 GiB on the host, over its limit of 8.0 GiB".
fn over(used: u64, limit: u64) -> String {
    format!(
        "it wrote {} on the host, over its disk limit of {}",
        human(used),
        human(limit)
    )
}

/// Bytes in binary units with one decimal (`8.0 GiB`, `512.0 KiB`, `12 B`).
pub(crate) fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
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
    format!("{v:.1} {unit}")
}

/// Whether the walk failed because the tree changed under it (an entry gone between listing
/// and looking at it).
fn changed(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::NotFound)
}

/// The bytes `roots` occupy: each inode once, its allocated blocks, at least [`MIN_CHARGE`].
/// Iterative (an explicit stack of paths, one directory open at a time), never following a
/// link. A missing root is empty.
///
/// # Errors
/// A directory that cannot be listed or an entry that cannot be looked at, named.
pub(crate) fn usage(roots: &[PathBuf]) -> Result<u64> {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut total = 0u64;
    let mut stack: Vec<PathBuf> = Vec::new();
    for r in roots {
        match std::fs::symlink_metadata(r) {
            Ok(m) => {
                total = total.saturating_add(charge(&m, &mut seen));
                if m.is_dir() {
                    stack.push(r.clone());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot look at {}", r.display())),
        }
    }
    while let Some(dir) = stack.pop() {
        for entry in read_dir(&dir)? {
            let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
            let path = entry.path();
            let m = std::fs::symlink_metadata(&path)
                .with_context(|| format!("cannot look at {}", path.display()))?;
            total = total.saturating_add(charge(&m, &mut seen));
            if m.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(total)
}

fn read_dir(dir: &Path) -> Result<std::fs::ReadDir> {
    std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))
}

/// What one entry is charged: its blocks once per inode, at least [`MIN_CHARGE`] the first
/// time.
fn charge(m: &std::fs::Metadata, seen: &mut HashSet<(u64, u64)>) -> u64 {
    if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
        return 0;
    }
    m.blocks().saturating_mul(512).max(MIN_CHARGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_blocks_links_once_and_empty_files() {
        let d = tempfile::tempdir().expect("test");
        let root = d.path().join("r");
        std::fs::create_dir(&root).expect("test");
        std::fs::write(root.join("a"), vec![1u8; 100_000]).expect("test");
        std::fs::hard_link(root.join("a"), root.join("b")).expect("test");
        for i in 0..10 {
            std::fs::write(root.join(format!("e{i}")), b"").expect("test");
        }
        let f = std::fs::File::create(root.join("sparse")).expect("test");
        f.set_len(1 << 30).expect("test");
        let n = usage(std::slice::from_ref(&root)).expect("test");
        // the dir, `a` once (100 KB in blocks), 10 empty files, the sparse file (no blocks).
        assert!(n >= 100_000 + 12 * MIN_CHARGE, "{n}");
        assert!(n < 200_000 + 13 * MIN_CHARGE, "{n}");
        assert_eq!(usage(&[d.path().join("missing")]).expect("test"), 0);
    }

    #[test]
    fn a_deep_tree_is_walked_without_recursion() {
        let d = tempfile::tempdir().expect("test");
        let mut p = d.path().to_path_buf();
        for _ in 0..500 {
            p.push("d");
        }
        std::fs::create_dir_all(&p).expect("test");
        assert!(usage(&[d.path().to_path_buf()]).expect("test") >= 500 * MIN_CHARGE);
    }

    #[test]
    fn human_units() {
        assert_eq!(human(12), "12 B");
        assert_eq!(human(8 << 30), "8.0 GiB");
        assert_eq!(human(1536), "1.5 KiB");
    }
}
