//! pip: nothing in pip's cache is promoted, and each file says why. pip keeps downloads only in
//! its HTTP cache (`http-v2/…/KEY` and `KEY.body`, cachecontrol's format): the body is the wheel
//! or sdist, but the entry that binds it to a URL is the key (the SHA-224 of the URL, which
//! cannot be turned back into the URL to ask PyPI for that file's hash) and a record of response
//! headers the agent wrote, which pip would trust on the host. `wheels/` holds wheels built on
//! the machine, which no index can vouch for. uv's cache holds unpacked archives. Promoting any
//! of these would mean trusting something the agent wrote.

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
