//! The caches airlock has no upstream-verifiable form for: every file is listed as not
//! promoted, with the precise reason, and the tool fetches (and verifies) it again on the host.
//!
//! - uv (`~/.cache/uv`): uv keeps wheels unpacked (`archive-v0/ID/`, uv_cache's `CacheBucket`
//!   docs: a large wheel is downloaded, then unzipped into a directory) and its records
//!   (`wheels-v*/…/*.msgpack`, `*.http`) point at those directories with the hashes uv computed
//!   while downloading, which the session wrote. The archive bytes whose SHA-256 the index
//!   publishes are not kept and cannot be rebuilt from the unpacked files (compression,
//!   order and times are gone), and the per-file hashes of a wheel's `RECORD` come from the
//!   wheel itself, not the index: nothing in the cache can be checked against the index.

use super::{Candidate, Verdict};

pub(super) fn uv(_c: &Candidate<'_>) -> Verdict {
    Verdict::Skipped(
        "uv's cache is not promoted: uv keeps wheels unpacked and its records (with hashes the \
         session wrote) point at those directories; the archive whose sha256 the index \
         publishes is not kept and cannot be rebuilt, so uv downloads it again on the host"
            .into(),
    )
}
