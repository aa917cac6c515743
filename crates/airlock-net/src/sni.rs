//! TLS ClientHello reader: extracts the server name (SNI) from the first bytes a client sends
//! through a CONNECT tunnel, across TLS records and TCP segments, without trusting any length.
//! Pure and incremental: call [`parse_client_hello`] with everything received so far.

/// Largest ClientHello handshake message accepted (post-quantum key shares are ~1.5 KiB; the
/// protocol allows far more, nobody sends it).
pub const MAX_HELLO_LEN: usize = 32 * 1024;

/// What the first bytes of a tunnel say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// More bytes are needed.
    Incomplete,
    /// A complete ClientHello; the SNI host name if it carried one.
    Complete { sni: Option<String> },
}

/// Why the bytes are not an acceptable ClientHello.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("not a tls handshake (first byte 0x{0:02x})")]
    NotTls(u8),
    #[error("malformed tls client hello: {0}")]
    Malformed(&'static str),
    #[error("tls client hello larger than {MAX_HELLO_LEN} bytes")]
    TooLarge,
}

const RECORD_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const MAX_RECORD: usize = 16384 + 256;

/// Parses the ClientHello at the start of `buf` (the tunnel's first bytes, possibly partial).
pub fn parse_client_hello(buf: &[u8]) -> Result<Hello, HelloError> {
    let mut handshake: Vec<u8> = Vec::new();
    let mut pos = 0;
    loop {
        let Some(header) = buf.get(pos..pos + 5) else {
            return check_prefix(buf, pos);
        };
        if header[0] != RECORD_HANDSHAKE {
            return Err(if pos == 0 {
                HelloError::NotTls(header[0])
            } else {
                HelloError::Malformed("non-handshake record inside the client hello")
            });
        }
        if header[1] != 3 {
            return Err(HelloError::Malformed("unknown record version"));
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 {
            return Err(HelloError::Malformed("empty handshake record"));
        }
        if len > MAX_RECORD {
            return Err(HelloError::Malformed("record longer than tls allows"));
        }
        let Some(body) = buf.get(pos + 5..pos + 5 + len) else {
            return Ok(Hello::Incomplete);
        };
        handshake.extend_from_slice(body);
        pos += 5 + len;
        if handshake.len() < 4 {
            continue;
        }
        if handshake[0] != HANDSHAKE_CLIENT_HELLO {
            return Err(HelloError::Malformed(
                "first handshake message is not a client hello",
            ));
        }
        let mlen = (usize::from(handshake[1]) << 16)
            | (usize::from(handshake[2]) << 8)
            | usize::from(handshake[3]);
        if mlen > MAX_HELLO_LEN {
            return Err(HelloError::TooLarge);
        }
        if handshake.len() >= 4 + mlen {
            return parse_body(&handshake[4..4 + mlen]).map(|sni| Hello::Complete { sni });
        }
        if handshake.len() > MAX_HELLO_LEN + 4 {
            return Err(HelloError::TooLarge);
        }
    }
}

/// A partial record header: reject early what can already be seen not to be TLS.
fn check_prefix(buf: &[u8], pos: usize) -> Result<Hello, HelloError> {
    match buf.get(pos) {
        Some(&b) if b != RECORD_HANDSHAKE => Err(if pos == 0 {
            HelloError::NotTls(b)
        } else {
            HelloError::Malformed("non-handshake record inside the client hello")
        }),
        _ => match buf.get(pos + 1) {
            Some(&v) if v != 3 => Err(HelloError::Malformed("unknown record version")),
            _ => Ok(Hello::Incomplete),
        },
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], HelloError> {
        if self.buf.len() < n {
            return Err(HelloError::Malformed(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, HelloError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, HelloError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn vec8(&mut self, what: &'static str) -> Result<&'a [u8], HelloError> {
        let n = usize::from(self.u8(what)?);
        self.take(n, what)
    }

    fn vec16(&mut self, what: &'static str) -> Result<&'a [u8], HelloError> {
        let n = usize::from(self.u16(what)?);
        self.take(n, what)
    }
}

fn parse_body(body: &[u8]) -> Result<Option<String>, HelloError> {
    let mut r = Reader { buf: body };
    r.take(2 + 32, "truncated version or random")?;
    let sid = r.vec8("truncated session id")?;
    if sid.len() > 32 {
        return Err(HelloError::Malformed("session id longer than 32 bytes"));
    }
    let suites = r.vec16("truncated cipher suites")?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(HelloError::Malformed("bad cipher suite list"));
    }
    if r.vec8("truncated compression methods")?.is_empty() {
        return Err(HelloError::Malformed("no compression methods"));
    }
    if r.buf.is_empty() {
        return Ok(None);
    }
    let exts = r.vec16("truncated extensions")?;
    if !r.buf.is_empty() {
        return Err(HelloError::Malformed("trailing bytes after extensions"));
    }
    let mut e = Reader { buf: exts };
    let mut seen: Vec<u16> = Vec::new();
    let mut sni = None;
    while !e.buf.is_empty() {
        let ty = e.u16("truncated extension")?;
        let data = e.vec16("truncated extension")?;
        if seen.contains(&ty) {
            return Err(HelloError::Malformed("duplicate extension"));
        }
        seen.push(ty);
        if ty == EXT_SERVER_NAME {
            sni = parse_sni(data)?;
        }
    }
    Ok(sni)
}

fn parse_sni(data: &[u8]) -> Result<Option<String>, HelloError> {
    let mut r = Reader { buf: data };
    let list = r.vec16("truncated server name list")?;
    if !r.buf.is_empty() {
        return Err(HelloError::Malformed(
            "trailing bytes after server name list",
        ));
    }
    let mut l = Reader { buf: list };
    let mut host = None;
    while !l.buf.is_empty() {
        let ty = l.u8("truncated server name")?;
        let name = l.vec16("truncated server name")?;
        if ty != 0 {
            continue;
        }
        if host.is_some() {
            return Err(HelloError::Malformed("more than one host name in sni"));
        }
        if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
            return Err(HelloError::Malformed(
                "sni host name is empty or not printable ascii",
            ));
        }
        host = Some(String::from_utf8_lossy(name).into_owned());
    }
    Ok(host)
}

/// Test and fuzz helper: a minimal well-formed ClientHello naming `sni` (if any), split into
/// records of at most `record_len` bytes of handshake data each.
pub fn build_client_hello(sni: Option<&str>, record_len: usize) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&[3, 3]);
    body.extend_from_slice(&[7u8; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01]);
    body.extend_from_slice(&[1, 0]);
    let mut exts = Vec::new();
    if let Some(name) = sni {
        let n = u16::try_from(name.len()).unwrap_or(u16::MAX);
        let mut list = vec![0u8];
        list.extend_from_slice(&n.to_be_bytes());
        list.extend_from_slice(name.as_bytes());
        let list_len = u16::try_from(list.len()).unwrap_or(u16::MAX);
        exts.extend_from_slice(&EXT_SERVER_NAME.to_be_bytes());
        exts.extend_from_slice(&(list_len + 2).to_be_bytes());
        exts.extend_from_slice(&list_len.to_be_bytes());
        exts.extend_from_slice(&list);
    }
    // supported_versions: TLS 1.3
    exts.extend_from_slice(&[0, 43, 0, 3, 2, 3, 4]);
    body.extend_from_slice(&u16::try_from(exts.len()).unwrap_or(u16::MAX).to_be_bytes());
    body.extend_from_slice(&exts);
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes();
    let mut hs = vec![HANDSHAKE_CLIENT_HELLO, len[1], len[2], len[3]];
    hs.extend_from_slice(&body);
    let mut out = Vec::new();
    for chunk in hs.chunks(record_len.max(1)) {
        out.extend_from_slice(&[RECORD_HANDSHAKE, 3, 1]);
        out.extend_from_slice(&u16::try_from(chunk.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sni_from_one_record() {
        let hello = build_client_hello(Some("api.example.com"), 16384);
        assert_eq!(
            parse_client_hello(&hello),
            Ok(Hello::Complete {
                sni: Some("api.example.com".into())
            })
        );
    }

    #[test]
    fn every_prefix_is_incomplete_and_never_an_error() {
        let hello = build_client_hello(Some("api.example.com"), 16384);
        for n in 0..hello.len() {
            assert_eq!(
                parse_client_hello(&hello[..n]),
                Ok(Hello::Incomplete),
                "{n}"
            );
        }
    }

    #[test]
    fn handles_hello_split_across_records() {
        let hello = build_client_hello(Some("split.example.com"), 7);
        assert!(hello.len() > 5 * 10, "really split into many records");
        for n in 0..hello.len() {
            assert_eq!(parse_client_hello(&hello[..n]), Ok(Hello::Incomplete));
        }
        assert_eq!(
            parse_client_hello(&hello),
            Ok(Hello::Complete {
                sni: Some("split.example.com".into())
            })
        );
    }

    #[test]
    fn no_sni_is_reported_as_none() {
        let hello = build_client_hello(None, 16384);
        assert_eq!(
            parse_client_hello(&hello),
            Ok(Hello::Complete { sni: None })
        );
    }

    #[test]
    fn garbage_is_refused_early() {
        assert_eq!(
            parse_client_hello(b"GET / HTTP/1.1\r\n"),
            Err(HelloError::NotTls(b'G'))
        );
        assert_eq!(parse_client_hello(b"G"), Err(HelloError::NotTls(b'G')));
        assert!(parse_client_hello(&[22, 9]).is_err());
        // A handshake record that is not a ClientHello.
        assert!(parse_client_hello(&[22, 3, 1, 0, 4, 2, 0, 0, 0]).is_err());
        // A ClientHello claiming 16 MiB.
        assert_eq!(
            parse_client_hello(&[22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]),
            Err(HelloError::TooLarge)
        );
    }

    #[test]
    fn two_host_names_are_refused() {
        let mut hello = build_client_hello(Some("a.example"), 16384);
        // Corrupt: duplicate the extension block by building a custom hello.
        let good = hello.clone();
        assert!(parse_client_hello(&good).is_ok());
        // Flip the extension type of supported_versions (43) to server_name (0): duplicate.
        let pos = hello
            .windows(4)
            .position(|w| w == [0, 43, 0, 3])
            .expect("supported_versions");
        hello[pos + 1] = 0;
        assert_eq!(
            parse_client_hello(&hello),
            Err(HelloError::Malformed("duplicate extension"))
        );
    }
}
