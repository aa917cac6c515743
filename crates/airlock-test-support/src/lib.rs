//! airlock test fixtures shared by integration tests
#![forbid(unsafe_code)]

pub mod gitbomb;
pub mod otlp;
pub mod policy;
pub mod presets;
pub mod registry;
pub mod run;
pub mod tls;
pub mod upstream;
pub mod workspace;

pub use policy::Pinned;
pub use run::{stderr, stdout, Run, RunExt};
pub use workspace::{airlock_bin, docker_lock, podman_lock, Workspace};

/// `n` random characters from `[A-Za-z0-9]` (from /dev/urandom): the tail of a test secret
/// shaped like an API key.
///
/// # Panics
/// When /dev/urandom cannot be read.
pub fn random_alnum(n: usize) -> String {
    use std::io::Read;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("urandom");
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// Says that the running test skipped its check (or a variant of it) and why, so a skip is
/// never a silent pass: on stderr (shown by `cargo test` only on failure), and as one line
/// `TEST: REASON` appended to the file named by `AIRLOCK_TEST_SKIPS` when it is set;
/// `scripts/test.sh` sets it and prints every line in its summary. The test's name is the
/// test harness's name for the current thread.
pub fn skip(reason: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let line = format!("{}: {reason}\n", thread.name().unwrap_or("(unnamed test)"));
    eprint!("skipping: {line}");
    if let Some(path) = std::env::var_os("AIRLOCK_TEST_SKIPS") {
        // One write on an O_APPEND file: lines of parallel tests do not interleave.
        let _ = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
}

/// Points a test's private `XDG_DATA_HOME` (`data`) at the invoking user's container store
/// (`$XDG_DATA_HOME/containers`, else `~/.local/share/containers`): rootless Podman keeps its
/// images there, so a session run with the private data directory still finds them. Root's
/// store is elsewhere (`/var/lib/containers`), so nothing is linked for root.
///
/// # Panics
/// When `HOME` is unset or the link cannot be made.
pub fn link_container_store(data: &std::path::Path) {
    if is_root() {
        return;
    }
    let real = std::env::var_os("XDG_DATA_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".local/share")))
        .expect("HOME");
    std::os::unix::fs::symlink(real.join("containers"), data.join("containers"))
        .expect("link the container store");
}

/// Whether the tests run as root (effective uid 0), read from `/proc/self/status`.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
