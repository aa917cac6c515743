//! The caches airlock has no upstream-verifiable form for yet: every file is listed as not
//! promoted, with the precise reason, and the tool fetches (and verifies) it again on the host.
//!
//! - Go (`$GOMODCACHE`, `go/pkg/mod`): a module's `.zip` and `.mod` are verified by their `h1:`
//!   hashes (golang.org/x/mod/sumdb/dirhash `Hash1`: the SHA-256 of the sorted lines
//!   `SHA256HEX  NAME\n` of the files). The trusted source would be the checksum database, but
//!   its `lookup` answer is bound to the signed tree head only by a tile inclusion proof, which
//!   airlock does not check yet; the project's `go.sum` is no source either, because `promote`
//!   knows no project and a session could have written the workspace's copy.
//! - uv (`~/.cache/uv`): uv keeps wheels unpacked (`archive-v0/ID/`) and its HTTP cache records
//!   (`wheels-v*/…/*.msgpack`, `*.http`) point at those directories; the archive bytes whose
//!   SHA-256 the index publishes are not kept, so nothing in the cache can be checked against
//!   the index.

use super::{Candidate, Verdict};

pub(super) fn go(_c: &Candidate<'_>) -> Verdict {
    Verdict::Skipped(
        "Go's module cache is not promoted: airlock does not yet check the checksum database's \
         inclusion proofs for a module's h1: hash, and go.sum may be the session's own; go \
         downloads and verifies the module again on the host"
            .into(),
    )
}

pub(super) fn uv(_c: &Candidate<'_>) -> Verdict {
    Verdict::Skipped(
        "uv's cache is not promoted: uv keeps wheels unpacked and its records point at those \
         directories, so no file here has the sha256 the index publishes; uv downloads it \
         again on the host"
            .into(),
    )
}
