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

/// Streaming replacement. How many trailing bytes are held back for the next chunk never
/// depends on the needles' content, or its release timing would be an oracle: an agent that
/// makes an upstream echo guesses would learn, byte by byte, which are a prefix of the secret.
/// Held back is the trailing run of "token" bytes ([`is_token_byte`]), capped at the longest
/// needle's length − 1; if a needle itself holds a non-token byte, always that cap. A needle
/// split across chunks is all token bytes at the chunk's end, so it is held whole; an SSE event
/// (ending in a newline) is released at once.
#[derive(Debug)]
pub(crate) struct StreamReplacer {
    pairs: Pairs,
    held: Vec<u8>,
    /// The longest needle's length − 1.
    max_hold: usize,
    /// Some needle holds a non-token byte: hold `max_hold` bytes whatever they are.
    fixed_hold: bool,
}

/// Whether `b` may be part of a secret-looking run: not ASCII whitespace, not a control byte,
/// not one of `"'<>(){}[],;` (a fixed class, the same for every secret).
pub(crate) fn is_token_byte(b: u8) -> bool {
    !(b.is_ascii_whitespace() || b.is_ascii_control() || b"\"'<>(){}[],;".contains(&b))
}

impl StreamReplacer {
    pub(crate) fn new(pairs: Pairs) -> Self {
        let pairs: Pairs = pairs.into_iter().filter(|(f, _)| !f.is_empty()).collect();
        let max_hold = pairs.iter().map(|(f, _)| f.len() - 1).max().unwrap_or(0);
        let fixed_hold = pairs
            .iter()
            .any(|(f, _)| f.iter().any(|b| !is_token_byte(*b)));
        StreamReplacer {
            pairs,
            held: Vec::new(),
            max_hold,
            fixed_hold,
        }
    }

    /// How many bytes at the end of `buf` to hold back (independent of the needles' content).
    fn hold_len(&self, buf: &[u8]) -> usize {
        if self.fixed_hold {
            return self.max_hold.min(buf.len());
        }
        buf.iter()
            .rev()
            .take(self.max_hold)
            .take_while(|b| is_token_byte(**b))
            .count()
    }

    /// Feeds a chunk; returns the bytes that can be sent now.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(chunk);
        let cut = self.held.len() - self.hold_len(&self.held);
        self.release(cut)
    }

    /// Releases the held bytes before `cut`, needles replaced (a needle starting before `cut`
    /// is replaced whole, even if it runs past it).
    fn release(&mut self, cut: usize) -> Vec<u8> {
        let buf = &self.held;
        let mut out = Vec::with_capacity(buf.len());
        let mut i = 0;
        'scan: while i < cut {
            let rest = &buf[i..];
            for (from, to) in &self.pairs {
                // A whole needle is replaced even if it runs into the held tail.
                if rest.starts_with(from) {
                    out.extend_from_slice(to);
                    i += from.len();
                    continue 'scan;
                }
            }
            out.push(buf[i]);
            i += 1;
        }
        self.held.drain(..i);
        out
    }

    /// The end of the stream: the bytes still held back, needles replaced (a short needle may
    /// lie whole inside the held tail).
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let out = self.release(self.held.len());
        self.held.clear();
        out
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
        // Only a trailing run of token bytes is held, at most the needle's length - 1.
        assert_eq!(r.push(b"data: SECR"), b"data: ".to_vec());
        assert_eq!(r.push(b"ET-abc\n\n"), b"PLACEH-xyz\n\n".to_vec());
        assert_eq!(r.push(b"SECRET-ab"), Vec::<u8>::new());
        assert_eq!(r.push(b"x"), b"S".to_vec());
        assert_eq!(r.push(b"\n"), b"ECRET-abx\n".to_vec());
        assert!(r.finish().is_empty());
    }

    /// Releases per push of `chunks` through a fresh replacer.
    fn releases(pairs: &Pairs, chunks: &[&[u8]]) -> Vec<usize> {
        let mut r = StreamReplacer::new(pairs.clone());
        let mut v: Vec<usize> = chunks.iter().map(|c| r.push(c).len()).collect();
        v.push(r.finish().len());
        v
    }

    #[test]
    fn release_timing_does_not_depend_on_the_secret() {
        // A token-class secret, and one with a byte outside the class (fixed hold).
        for secret in [&b"sk-ant-Q7x9_Zq2.Lm~"[..], &b"pa\"ss,word(1)"[..]] {
            let pairs: Pairs = vec![(secret.to_vec(), vec![b'P'; secret.len()])];
            for n in 1..secret.len() {
                let prefix = &secret[..n];
                // Same length, same class byte by byte, not a prefix of the secret.
                let other: Vec<u8> = prefix
                    .iter()
                    .map(|b| {
                        if is_token_byte(*b) {
                            if *b == b'z' {
                                b'y'
                            } else {
                                b'z'
                            }
                        } else {
                            *b
                        }
                    })
                    .collect();
                assert!(!secret.starts_with(&other));
                for lead in [&b""[..], b"data: ", b"{\"echo\":\"", b"x=abc"] {
                    let a = [lead, prefix].concat();
                    let b = [lead, &other[..]].concat();
                    for cut in 0..=a.len() {
                        let (a1, a2) = a.split_at(cut);
                        let (b1, b2) = b.split_at(cut);
                        for tail in [&b""[..], b"\n\n", b"q", b"more-token-bytes"] {
                            assert_eq!(
                                releases(&pairs, &[a1, a2, tail]),
                                releases(&pairs, &[b1, b2, tail]),
                                "secret {secret:?} prefix {n} lead {lead:?} cut {cut} tail {tail:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_short_needle_inside_the_held_tail_is_replaced_at_the_end() {
        let pairs: Pairs = vec![
            (
                b"LONG-SECRET-0123456789".to_vec(),
                b"LONG-PLACEH-xxxxxxxxxx".to_vec(),
            ),
            (b"short1".to_vec(), b"PLACE1".to_vec()),
        ];
        for text in [
            &b"data: short1"[..],
            b"short1",
            b"xshort1y",
            b"LONG-SECRET-01short1",
        ] {
            let want = replace(text, &pairs).expect("replaced");
            assert!(!contains(&want, b"short1"), "{text:?}");
            let mut r = StreamReplacer::new(pairs.clone());
            let mut out = Vec::new();
            for b in text {
                out.extend(r.push(&[*b]));
            }
            out.extend(r.finish());
            assert_eq!(out, want, "{text:?}");
        }
    }

    #[test]
    fn a_needle_with_a_non_token_byte_is_still_replaced_across_chunks() {
        let pairs: Pairs = vec![(b"ab,cd\"ef".to_vec(), b"PPPPPPPP".to_vec())];
        let text = b"x ab,cd\"ef\nab,cd\"ef";
        for cut in 0..text.len() {
            let mut r = StreamReplacer::new(pairs.clone());
            let mut out = r.push(&text[..cut]);
            out.extend(r.push(&text[cut..]));
            out.extend(r.finish());
            assert_eq!(out, b"x PPPPPPPP\nPPPPPPPP".to_vec(), "cut {cut}");
        }
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
