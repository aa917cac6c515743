//! Placeholders: per-session stand-ins for secrets, of the same shape (prefix, length, character
//! classes), so clients that validate a key's format (`sk-ant-…`, `ghp_…`) accept them, and so
//! a swap never changes a header's, a body's or a `Content-Length`'s size.

use rand::Rng;

/// Longest prefix kept verbatim: the vendor tag (`sk-ant-api03-`, `github_pat_`, `ghp_`).
const MAX_PREFIX: usize = 16;

/// Fewest random characters a placeholder carries; shorter secrets get a longer tail of
/// letters and digits instead of a same-length placeholder guessable by brute force.
const MIN_RANDOM: usize = 16;

/// A new placeholder for `secret`: the vendor prefix (up to and including the last `-` or `_`
/// in the first 16 characters, never more than half of the secret), then each remaining
/// character replaced by a random one of the same class (lower, upper, digit; other
/// characters kept). Never equal to the secret, and it never contains it.
pub fn placeholder_for(secret: &str) -> String {
    let mut rng = rand::rng();
    let chars: Vec<char> = secret.chars().collect();
    let window = chars.len().min(MAX_PREFIX).min(chars.len() / 2);
    let prefix_len = chars[..window]
        .iter()
        .rposition(|c| *c == '-' || *c == '_')
        .map_or(0, |i| i + 1);
    let varying = chars[prefix_len..]
        .iter()
        .filter(|c| c.is_ascii_alphanumeric())
        .count();
    for _ in 0..8 {
        let mut out: String = chars[..prefix_len].iter().collect();
        if varying >= MIN_RANDOM {
            out.extend(
                chars[prefix_len..]
                    .iter()
                    .map(|c| random_like(*c, &mut rng)),
            );
        } else {
            // Too little to randomise in place: a longer random tail instead of the same shape.
            out.extend((0..MIN_RANDOM.max(chars.len())).map(|_| random_like('a', &mut rng)));
        }
        if out != secret && !out.contains(secret) {
            return out;
        }
    }
    let tail: String = (0..24).map(|_| random_like('a', &mut rng)).collect();
    format!("airlock-placeholder-{tail}")
}

fn random_like(c: char, rng: &mut impl Rng) -> char {
    let pick = |set: &[u8], rng: &mut dyn rand::RngCore| {
        char::from(set[rand::Rng::random_range(rng, 0..set.len())])
    };
    if c.is_ascii_lowercase() {
        pick(b"abcdefghijklmnopqrstuvwxyz", rng)
    } else if c.is_ascii_uppercase() {
        pick(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", rng)
    } else if c.is_ascii_digit() {
        pick(b"0123456789", rng)
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_shape_as_the_secret() {
        for secret in [
            "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_abcdefghijABCDEFGHIJ-klmnopqrstuvwxyz0123456789AA",
            "sk-ant-oat01-Zy9xWv8uTs7rQp6oNm5lKj4iHg3fEd2cBa1",
            "ghp_0123456789abcdefghijABCDEFGHIJ0123ab",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
            "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
        ] {
            let p = placeholder_for(secret);
            assert_ne!(p, secret);
            assert_eq!(p.len(), secret.len(), "{secret} -> {p}");
            let tag_end = secret[..16].rfind(['-', '_']).map_or(0, |i| i + 1);
            assert_eq!(&p[..tag_end], &secret[..tag_end], "{p}");
            for (a, b) in p.chars().zip(secret.chars()) {
                assert_eq!(a.is_ascii_digit(), b.is_ascii_digit(), "{p}");
                assert_eq!(a.is_ascii_lowercase(), b.is_ascii_lowercase(), "{p}");
                assert_eq!(a.is_ascii_uppercase(), b.is_ascii_uppercase(), "{p}");
            }
            // Unique per call (per session).
            assert_ne!(placeholder_for(secret), p);
        }
    }

    #[test]
    fn short_secrets_get_enough_randomness() {
        for secret in ["abc", "----", "-", "a-b-c-d", "x"] {
            let p = placeholder_for(secret);
            assert!(p.len() >= MIN_RANDOM, "{p}");
            assert!(!p.contains(secret), "{secret} -> {p}");
        }
    }
}
