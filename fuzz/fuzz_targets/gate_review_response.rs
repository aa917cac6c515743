//! The LLM reviewer's response parsing (HTTP/1.1 head, identity and chunked bodies, the
//! Messages API JSON, the reviewer's answer) on arbitrary bytes from the reviewer or the proxy
//! in front of it: no panic; an answer is allow, ask or deny with a bounded reason; and the
//! same bytes as a body read the same whole or chunked (cut where the input says).
#![no_main]

use airlock_gate::review::parse_response;
use airlock_gate::Tier;

/// Longest reason an answer carries: the `reviewer: ` prefix and 300 characters.
const MAX_REASON_CHARS: usize = "reviewer: ".len() + 300;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check_answer(data);
    check_chunked_is_whole(data);
});

fn check_answer(raw: &[u8]) {
    if let Ok(o) = parse_response(raw) {
        assert!(
            matches!(o.tier, Tier::Allow | Tier::Ask | Tier::Deny),
            "the reviewer may only answer allow, ask or deny: {:?}",
            o.tier
        );
        assert!(o.reason.chars().count() <= MAX_REASON_CHARS, "{}", o.reason);
    }
}

/// The first up to 4 bytes give chunk lengths (cycled); the rest is the body.
fn check_chunked_is_whole(data: &[u8]) {
    let (sizes, body) = data.split_at(data.len().min(4));
    let whole = [
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
        body,
    ]
    .concat();
    let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let size = sizes.get(i % sizes.len().max(1)).map_or(rest.len(), |s| usize::from(*s) + 1);
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
        rest = tail;
        i += 1;
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (a, b) = (parse_response(&whole), parse_response(&chunked));
    assert_eq!(a.is_ok(), b.is_ok(), "whole {a:?} / chunked {b:?}");
    assert_eq!(a.ok(), b.ok());
}
