//! Host git processes that look at what a sandbox wrote: the one way airlock runs `git` on the
//! host for worktree sessions (`airlock run --mode worktree`) and for reading or importing an
//! agent's commits (`airlock diff`, `airlock merge`).
//!
//! The sandbox chooses the bytes such a process reads, so every process started here:
//! - ignores the environment's, the system's and the user's git configuration
//!   (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`, every other `GIT_*` variable
//!   removed), never honours replace refs (`GIT_NO_REPLACE_OBJECTS=1`), and runs with hooks,
//!   fsmonitor and reflogs off;
//! - has stdin closed unless the caller wires it, and no signal blocked (airlock blocks the
//!   supervised signals in every thread and a child inherits that mask across `exec`,
//!   sigprocmask(2), so git would otherwise ignore Ctrl-C);
//! - is killed after a time limit ([`QUICK`] or [`SLOW`]): a FIFO in an object directory makes
//!   git block in open(2) forever (fifo(7));
//! - has bounded memory ([`Bounds`]): a 16 KB pack can hold a delta whose result is any size,
//!   and git builds each object it resolves in memory. Its data limit (RLIMIT_DATA) caps all it
//!   allocates, `GIT_ALLOC_LIMIT` (git(1): "the largest allocation git attempts") refuses a
//!   single object over a quarter of it before touching the memory, files over
//!   `core.bigFileThreshold` (a 32nd of it) are streamed, not loaded (git-config(1)), and packs
//!   are indexed and written by one thread (`pack.threads=1`). [`MEMORY_VAR`] sets the bound.
//!
//! [`plain_tree`] refuses an object directory holding anything but directories and regular
//! files before git is pointed at it.

use std::io::Read;
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::SessionError;

/// Environment variables that would redirect or configure a host git process (git(1),
/// "ENVIRONMENT VARIABLES").
const GIT_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_COMMON_DIR",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_EXTERNAL_DIFF",
    "GIT_EXEC_PATH",
    "GIT_REFLOG_ACTION",
];

/// The environment variable that sets the memory bound of every host git airlock runs, in MiB
/// (default [`DEFAULT_MEMORY_MIB`], at least [`MIN_MEMORY_MIB`]).
pub const MEMORY_VAR: &str = "AIRLOCK_GIT_MEMORY_MIB";
/// The default memory bound of a host git, in MiB.
pub const DEFAULT_MEMORY_MIB: u64 = 1024;
/// The smallest memory bound [`MEMORY_VAR`] can set, in MiB (git itself needs some).
pub const MIN_MEMORY_MIB: u64 = 64;

/// The memory bounds of a host git, in bytes, all derived from one figure ([`MEMORY_VAR`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Everything the process allocates (RLIMIT_DATA, setrlimit(2)).
    pub memory: u64,
    /// The largest single object (allocation) git builds: `GIT_ALLOC_LIMIT`, a quarter of
    /// `memory`. Also the largest object airlock lets the agent's git data declare.
    pub object: u64,
    /// `core.bigFileThreshold`: larger files are streamed, never held whole (a 32nd of
    /// `memory`, below `object` so the largest plain blobs never need an allocation).
    pub big_file: u64,
}

/// The bounds from [`MEMORY_VAR`] (in MiB; unset, empty or not a number: the default; under
/// [`MIN_MEMORY_MIB`]: that minimum).
pub fn bounds() -> Bounds {
    let mib = std::env::var(MEMORY_VAR)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_MEMORY_MIB)
        .clamp(MIN_MEMORY_MIB, 1 << 24);
    let memory = mib << 20;
    Bounds {
        memory,
        object: memory / 4,
        big_file: memory / 32,
    }
}

/// Adds to git's message `err` what to do when it is one of git's memory failures (an
/// allocation over `GIT_ALLOC_LIMIT`, or over the process's data limit): the bound and the
/// variable that raises it.
pub fn explain(err: &str) -> String {
    let err = err.trim();
    let hit = [
        "over limit",
        "Out of memory",
        "out of memory",
        "Cannot allocate memory",
    ]
    .iter()
    .any(|m| err.contains(m));
    if !hit {
        return err.to_string();
    }
    let b = bounds();
    format!(
        "{err} (the agent's git data holds an object or work larger than a host git may take: \
         {} MiB in all, {} MiB for one object; refused as a possible delta or zlib bomb. If \
         the data is genuine, raise the bound with {MEMORY_VAR}=<MiB>)",
        b.memory >> 20,
        b.object >> 20
    )
}

/// How long a host git call that reads metadata may take.
pub const QUICK: Duration = Duration::from_secs(60);
/// How long packing or indexing an agent's commits may take.
pub const SLOW: Duration = Duration::from_secs(30 * 60);

/// A host `git` with nothing from the environment, the system or the user's global config,
/// hooks and fsmonitor off, reflogs not written, no terminal prompt, stdin closed.
pub fn command() -> Command {
    let mut c = Command::new("git");
    c.stdin(Stdio::null());
    for k in GIT_ENV {
        c.env_remove(k);
    }
    // Every other GIT_* variable too (GIT_GRAFT_FILE, GIT_REPLACE_REF_BASE, GIT_SHALLOW_FILE,
    // GIT_CONFIG_KEY_n, ...): none of them may steer a git that reads what a sandbox wrote.
    for (k, _) in std::env::vars_os() {
        if k.as_encoded_bytes().starts_with(b"GIT_") {
            c.env_remove(&k);
        }
    }
    c.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_NO_REPLACE_OBJECTS", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .args([
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.logAllRefUpdates=false",
        ]);
    bound_memory(&mut c);
    c
}

/// Applies [`bounds`] to a git command: its data limit, `GIT_ALLOC_LIMIT`, the big-file
/// threshold, one thread for packs, and caches well under the limit.
fn bound_memory(c: &mut Command) {
    let b = bounds();
    airlock_sandbox::limit_data_in_child(c, b.memory);
    c.env("GIT_ALLOC_LIMIT", b.object.to_string()).args([
        "-c".to_string(),
        format!("core.bigFileThreshold={}", b.big_file),
        "-c".to_string(),
        "pack.threads=1".to_string(),
        "-c".to_string(),
        format!("core.deltaBaseCacheLimit={}", b.memory / 16),
        "-c".to_string(),
        format!("pack.deltaCacheSize={}", b.memory / 16),
        "-c".to_string(),
        format!("pack.windowMemory={}", b.memory / 8),
    ]);
}

/// Starts `c` with stdout and stderr captured and no signal blocked.
///
/// # Errors
/// [`SessionError::Refused`] naming `what` when git cannot be started.
pub fn spawn(c: &mut Command, what: &str) -> Result<Child, SessionError> {
    airlock_sandbox::unblock_signals_in_child(c);
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| SessionError::Refused(format!("cannot run git to {what}: {e}")))
}

/// Waits for `child` up to `limit`; kills it (it is ours) when the time is up.
///
/// # Errors
/// [`SessionError::Refused`] when waiting fails or the time is up.
pub fn wait_bounded(
    child: &mut Child,
    limit: Duration,
    what: &str,
) -> Result<ExitStatus, SessionError> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Ok(s),
            Ok(None) => {}
            Err(e) => {
                return Err(SessionError::Refused(format!(
                    "cannot wait for git to {what}: {e}"
                )))
            }
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(SessionError::Refused(format!(
                "git took longer than {}s to {what} and was stopped (a FIFO or a huge file in \
                 the session's git directory?)",
                limit.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads a pipe to its end on a thread of its own, so a full stderr never blocks stdout.
fn drain<R: Read + Send + 'static>(p: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut p) = p {
            let _ = p.read_to_end(&mut v);
        }
        v
    })
}

/// Runs `c` to its end within `limit` and returns its stdout (lossy UTF-8).
///
/// # Errors
/// [`SessionError::Refused`] naming `what` (with git's stderr) on a non-zero exit, when git
/// cannot start, or after `limit` (git is then killed).
pub fn run_for(c: Command, what: &str, limit: Duration) -> Result<String, SessionError> {
    run_bytes_for(c, what, limit).map(|o| String::from_utf8_lossy(&o).into_owned())
}

/// [`run_for`], returning stdout's bytes (paths in `-z` output are bytes, not UTF-8).
///
/// # Errors
/// As [`run_for`].
pub fn run_bytes_for(mut c: Command, what: &str, limit: Duration) -> Result<Vec<u8>, SessionError> {
    let mut child = spawn(&mut c, what)?;
    let out = drain::<ChildStdout>(child.stdout.take());
    let err = drain::<ChildStderr>(child.stderr.take());
    let status = wait_bounded(&mut child, limit, what)?;
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    if !status.success() {
        return Err(SessionError::Refused(format!(
            "git failed to {what}: {}",
            explain(&String::from_utf8_lossy(&err))
        )));
    }
    Ok(out)
}

/// [`run_for`] with the [`QUICK`] limit.
///
/// # Errors
/// As [`run_for`].
pub fn run(c: Command, what: &str) -> Result<String, SessionError> {
    run_for(c, what, QUICK)
}

/// Fails unless everything below `dir` is a plain directory or regular file: a FIFO, socket,
/// device or symbolic link the agent planted in an object store would make git block or read a
/// host file.
///
/// # Errors
/// [`SessionError::Refused`] naming the first such entry, or a directory nested deeper than
/// [`MAX_DEPTH`](crate::tree::MAX_DEPTH) levels; [`SessionError::Io`] when a directory cannot
/// be read.
pub fn plain_tree(dir: &Path) -> Result<(), SessionError> {
    // Iterative, one directory open at a time: the agent chooses the depth.
    let mut todo = vec![(dir.to_path_buf(), 0usize)];
    while let Some((d, depth)) = todo.pop() {
        if depth > crate::tree::MAX_DEPTH {
            return Err(crate::tree::too_deep(&d));
        }
        let rd = std::fs::read_dir(&d).map_err(|e| SessionError::io("cannot read", &d, e))?;
        for e in rd {
            let e = e.map_err(|e| SessionError::io("cannot read", &d, e))?;
            let t = e
                .file_type()
                .map_err(|err| SessionError::io("cannot read", &e.path(), err))?;
            if t.is_dir() {
                todo.push((e.path(), depth + 1));
            } else if !t.is_file() {
                return Err(SessionError::Refused(format!(
                    "{} is not a regular file; the agent's object store is not read",
                    crate::quote::path(&e.path())
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_git_is_stopped_at_the_limit() {
        let t = tempfile::tempdir().expect("tempdir");
        let fifo = t.path().join("f");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        // `git hash-object FILE` opens the FIFO and waits for a writer that never comes.
        let mut c = command();
        c.arg("hash-object").arg(&fifo);
        let start = Instant::now();
        let e = run_for(c, "hash a FIFO", Duration::from_millis(500)).expect_err("stopped");
        assert!(e.to_string().contains("longer than"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn plain_tree_refuses_special_files_and_links() {
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(t.path().join("pack")).expect("mkdir");
        std::fs::write(t.path().join("pack/a"), b"x").expect("write");
        plain_tree(t.path()).expect("plain");
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("pack/l")).expect("symlink");
        assert!(plain_tree(t.path()).is_err());
        std::fs::remove_file(t.path().join("pack/l")).expect("rm");
        nix::unistd::mkfifo(
            &t.path().join("pack/x.idx"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .expect("mkfifo");
        let e = plain_tree(t.path()).expect_err("fifo refused");
        assert!(e.to_string().contains("x.idx"), "{e}");
    }
}
