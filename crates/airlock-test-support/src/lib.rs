//! airlock test fixtures shared by integration tests
#![forbid(unsafe_code)]

pub mod otlp;
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
