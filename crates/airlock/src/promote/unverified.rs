//! The caches airlock has no upstream-verifiable form for: every file is listed as not
//! promoted, with the precise reason, and the tool fetches (and verifies) it again on the host.
//!
//! - uv (`~/.cache/uv`): uv keeps wheels unpacked (`archive-v0/ID/`) and its HTTP cache records
//!   (`wheels-v*/…/*.msgpack`, `*.http`) point at those directories; the archive bytes whose
//!   SHA-256 the index publishes are not kept, so nothing in the cache can be checked against
//!   the index.

use super::{Candidate, Verdict};

pub(super) fn uv(_c: &Candidate<'_>) -> Verdict {
    Verdict::Skipped(
        "uv's cache is not promoted: uv keeps wheels unpacked and its records point at those \
         directories, so no file here has the sha256 the index publishes; uv downloads it \
         again on the host"
            .into(),
    )
}
