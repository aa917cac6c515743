//! Byte-level swaps between placeholders and secrets: in header values (with `Basic`
//! credentials decoded, swapped and re-encoded, as git sends them) and in streamed bodies, where a needle may be split across chunks (chunked transfer, SSE).

use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine as _;
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::HeaderValue;
use hyper::HeaderMap;

/// Needle -> replacement pairs.
pub(crate) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Replaces every occurrence of each needle in `input`; returns `None` when nothing matched.
pub(crate) fn replace(input: &[u8], pairs: &Pairs) -> Option<Vec<u8>> {
    if !pairs.iter().any(|(f, _)| contains(input, f)) {
        return None;
    }
    let mut r = StreamReplacer::new(pairs.clone());
    let mut out = r.push(input);
    out.extend(r.finish());
    Some(out)
}

/// Whether `needle` occurs in `hay`.
pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Streaming replacement: bytes that could be the start of a needle split across chunks are
/// held back until the next chunk decides; everything else is released at once, so an SSE
/// event (which ends in a newline no secret contains) is never delayed.
#[derive(Debug)]
pub(crate) struct StreamReplacer {
    pairs: Pairs,
    held: Vec<u8>,
}

impl StreamReplacer {
    pub(crate) fn new(pairs: Pairs) -> Self {
        StreamReplacer {
            pairs: pairs.into_iter().filter(|(f, _)| !f.is_empty()).collect(),
            held: Vec::new(),
        }
    }

    /// Feeds a chunk; returns the bytes that can be sent now.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(chunk);
        let buf = &self.held;
        let mut out = Vec::with_capacity(buf.len());
        let mut i = 0;
        'scan: while i < buf.len() {
            let rest = &buf[i..];
            for (from, to) in &self.pairs {
                if rest.starts_with(from) {
                    out.extend_from_slice(to);
                    i += from.len();
                    continue 'scan;
                }
            }
            if self
                .pairs
                .iter()
                .any(|(f, _)| f.len() > rest.len() && f.starts_with(rest))
            {
                break;
            }
            out.push(buf[i]);
            i += 1;
        }
        self.held.drain(..i);
        out
    }

    /// The bytes still held back (a needle's prefix at the very end of the stream).
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

/// A body whose data passes through a [`StreamReplacer`]; frames are forwarded as soon as
/// they arrive.
pub(crate) struct ReplacingBody<B> {
    inner: B,
    replacer: StreamReplacer,
    /// Pairs for trailer values.
    pairs: Pairs,
    done: bool,
    /// Every replacement has its needle's length, so the body's size is unchanged.
    same_len: bool,
}

impl<B> ReplacingBody<B> {
    pub(crate) fn new(inner: B, pairs: Pairs) -> Self {
        ReplacingBody {
            inner,
            replacer: StreamReplacer::new(pairs.clone()),
            same_len: pairs.iter().all(|(a, b)| a.len() == b.len()),
            pairs,
            done: false,
        }
    }
}

impl<B> Body for ReplacingBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let out = this.replacer.push(&data);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                    }
                    Err(frame) => {
                        // Trailers end the body: release what was held, then the trailers.
                        let held = this.replacer.finish();
                        if let Ok(mut trailers) = frame.into_trailers() {
                            swap_header_values(&mut trailers, &this.pairs);
                            this.done = true;
                            if held.is_empty() {
                                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                            }
                            // Rare: emit the held bytes; the trailers are dropped rather than
                            // buffered (HTTP/1.1 clients seldom use them).
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(held)))));
                        }
                    }
                },
                Poll::Ready(None) => {
                    this.done = true;
                    let held = this.replacer.finish();
                    if held.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(held)))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        // Placeholders have the secret's length, so an exact hint usually stays exact.
        if self.same_len {
            self.inner.size_hint()
        } else {
            SizeHint::default()
        }
    }
}

/// Swaps needles in every header value, including inside `Basic` credentials (base64 of
/// `user:password`, RFC 7617). Returns whether anything changed.
pub(crate) fn swap_header_values(headers: &mut HeaderMap, pairs: &Pairs) -> bool {
    let mut changed = false;
    for value in headers.values_mut() {
        changed |= swap_header_value(value, pairs);
    }
    changed
}

/// Swaps needles in one header value (plain, and inside `Basic` credentials). Returns whether
/// it changed.
pub(crate) fn swap_header_value(value: &mut HeaderValue, pairs: &Pairs) -> bool {
    if let Some(new) = swap_value(value.as_bytes(), pairs) {
        if let Ok(v) = HeaderValue::from_bytes(&new) {
            *value = v;
            return true;
        }
    }
    false
}

fn swap_value(v: &[u8], pairs: &Pairs) -> Option<Vec<u8>> {
    let plain = replace(v, pairs);
    let v = plain.as_deref().unwrap_or(v);
    match swap_basic(v, pairs) {
        Some(b) => Some(b),
        None => plain,
    }
}

/// `Basic <base64>` with a needle inside the decoded credentials: decoded, swapped, re-encoded.
fn swap_basic(v: &[u8], pairs: &Pairs) -> Option<Vec<u8>> {
    let s = std::str::from_utf8(v).ok()?;
    let (scheme, rest) = s.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let swapped = replace(&decoded, pairs)?;
    let enc = base64::engine::general_purpose::STANDARD.encode(swapped);
    Some(format!("{scheme} {enc}").into_bytes())
}

/// Every needle found in header values (plain or inside `Basic` credentials).
pub(crate) fn find_in_headers<'a>(headers: &HeaderMap, needles: &[&'a [u8]]) -> Vec<&'a [u8]> {
    let mut found = Vec::new();
    for v in headers.values() {
        let b = v.as_bytes();
        let decoded = basic_decoded(b);
        for n in needles {
            if (contains(b, n) || decoded.as_deref().is_some_and(|d| contains(d, n)))
                && !found.contains(n)
            {
                found.push(*n);
            }
        }
    }
    found
}

fn basic_decoded(v: &[u8]) -> Option<Vec<u8>> {
    let s = std::str::from_utf8(v).ok()?;
    let (scheme, rest) = s.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs() -> Pairs {
        vec![(b"SECRET-abc".to_vec(), b"PLACEH-xyz".to_vec())]
    }

    #[test]
    fn a_needle_split_anywhere_across_chunks_is_replaced() {
        let text = b"data: {\"echo\":\"SECRET-abc\"}\n\ndata: SECRET-abcSECRET-abc\n\n";
        let want = b"data: {\"echo\":\"PLACEH-xyz\"}\n\ndata: PLACEH-xyzPLACEH-xyz\n\n";
        for cut1 in 0..text.len() {
            for cut2 in cut1..text.len() {
                let mut r = StreamReplacer::new(pairs());
                let mut out = r.push(&text[..cut1]);
                out.extend(r.push(&text[cut1..cut2]));
                out.extend(r.push(&text[cut2..]));
                out.extend(r.finish());
                assert_eq!(out, want.to_vec(), "cuts {cut1} {cut2}");
            }
        }
        // One byte at a time.
        let mut r = StreamReplacer::new(pairs());
        let mut out = Vec::new();
        for b in text {
            out.extend(r.push(&[*b]));
        }
        out.extend(r.finish());
        assert_eq!(out, want.to_vec());
    }

    #[test]
    fn complete_events_are_released_at_once() {
        let mut r = StreamReplacer::new(pairs());
        assert_eq!(r.push(b"data: one\n\n"), b"data: one\n\n".to_vec());
        // Only a possible start of the secret is held.
        assert_eq!(r.push(b"data: SECR"), b"data: ".to_vec());
        assert_eq!(r.push(b"ET-abc\n\n"), b"PLACEH-xyz\n\n".to_vec());
        assert_eq!(r.push(b"SECRET-ab"), Vec::<u8>::new());
        assert_eq!(r.push(b"x"), b"SECRET-abx".to_vec());
        assert!(r.finish().is_empty());
    }

    #[test]
    fn basic_credentials_are_decoded_swapped_and_reencoded() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Basic {}", b64("x-access-token:SECRET-abc")))
                .expect("hv"),
        );
        h.insert("x-api-key", HeaderValue::from_static("SECRET-abc"));
        h.insert("x-other", HeaderValue::from_static("nothing"));
        assert!(swap_header_values(&mut h, &pairs()));
        assert_eq!(
            h["authorization"].to_str().expect("str"),
            format!("Basic {}", b64("x-access-token:PLACEH-xyz"))
        );
        assert_eq!(h["x-api-key"], "PLACEH-xyz");
        assert_eq!(h["x-other"], "nothing");
        assert_eq!(
            find_in_headers(&h, &[b"PLACEH-xyz"]),
            vec![&b"PLACEH-xyz"[..]]
        );
        let mut h2 = HeaderMap::new();
        h2.insert(
            "authorization",
            HeaderValue::from_str(&format!("basic {}", b64("PLACEH-xyz:"))).expect("hv"),
        );
        assert_eq!(find_in_headers(&h2, &[b"PLACEH-xyz"]).len(), 1);
    }
}
