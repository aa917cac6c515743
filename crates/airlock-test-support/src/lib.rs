//! airlock test fixtures shared by integration tests
#![forbid(unsafe_code)]

pub mod otlp;
pub mod presets;
pub mod tls;

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
