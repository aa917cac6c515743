//! pip: nothing in pip's cache is promoted, and each file says why. pip keeps downloads only in
//! its HTTP cache (`http-v2/…/KEY` and `KEY.body`, cachecontrol's format): the body is the wheel
//! or sdist, but the entry that binds it to a URL is the key (the SHA-224 of the URL, which
//! cannot be turned back into the URL to ask PyPI for that file's hash) and a record of response
//! headers the agent wrote, which pip would trust on the host. `wheels/` holds wheels built on
//! the machine, which no index can vouch for. uv's cache holds unpacked archives. Promoting any
//! of these would mean trusting something the agent wrote. (The format also depends on pip's
//! version: before 23.3 the body sits inside the msgpack record, `http/`; from 23.3 beside it,
//! `http-v2/`.) What would make it verifiable: the package name from the wheel's
//! `*.dist-info/`, the index's PEP 691 file list, an entry kept only when the SHA-224 of a listed
//! file's URL is its key and the SHA-256 of its body is that file's hash, and a response record
//! airlock writes itself instead of the agent's.

use super::{Candidate, Verdict};

pub(super) fn verify(c: &Candidate<'_>) -> Verdict {
    let first = c
        .rel
        .components()
        .next()
        .map(|p| p.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    Verdict::Skipped(match first.as_str() {
        "http" | "http-v2" => "pip's HTTP cache: an entry is bound to its URL only by a key and \
                               response headers the agent wrote, so it cannot be verified"
            .into(),
        "wheels" => "a wheel built in the session: no index vouches for it".into(),
        _ => "not a downloaded artifact".into(),
    })
}
