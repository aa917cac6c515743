//! The parts of git's push protocol the push guard reads, parsed from hostile bytes: the
//! pkt-line update requests at the head of a `git-receive-pack` request body
//! (gitprotocol-pack(5) "Reference Update Request and Packfile Transfer", gitprotocol-common(5)
//! pkt-line) and the commits of the packfile that follows (gitformat-pack(5)), for proving
//! fast-forwards. Anything it does not understand is an error: the guard refuses, never
//! forwards, what it cannot parse.

use std::collections::{HashMap, HashSet, VecDeque};

use flate2::{Decompress, FlushDecompress, Status};
use sha1::{Digest, Sha1};

/// A SHA-1 object id.
pub(crate) type Oid = [u8; 20];

/// The largest pkt-line (gitprotocol-common(5): 65520 bytes including the 4-byte length).
const MAX_PKT: usize = 65520;
/// The most the commits of one pack may take in memory while proving fast-forwards.
const MAX_COMMIT_BYTES: usize = 64 << 20;

/// One ref update command: `old-oid new-oid refname` (hex ids as sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Command {
    pub(crate) old: String,
    pub(crate) new: String,
    pub(crate) refname: String,
}

impl Command {
    /// The all-zero id: `old` zero is a creation, `new` zero a deletion.
    pub(crate) fn is_zero(hex: &str) -> bool {
        hex.bytes().all(|b| b == b'0')
    }
}

/// The head of a push request: everything before the packfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) commands: Vec<Command>,
    /// The capabilities after the NUL of the first command.
    pub(crate) caps: Vec<String>,
    /// Bytes of the body the head took; the packfile (if any) starts here.
    pub(crate) len: usize,
}

impl Head {
    /// Whether the client asked for capability `name`.
    pub(crate) fn has_cap(&self, name: &str) -> bool {
        self.caps.iter().any(|c| c == name)
    }
}

/// One pkt-line: a data line, or a flush (`0000`).
enum Pkt<'a> {
    Flush,
    Data(&'a [u8]),
}

/// Reads one pkt-line at `buf[*pos..]`: `Ok(None)` when more bytes are needed.
fn pkt<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Option<Pkt<'a>>, String> {
    let Some(len_hex) = buf.get(*pos..*pos + 4) else {
        return Ok(None);
    };
    let len_str = std::str::from_utf8(len_hex)
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| "a pkt-line length that is not 4 hex digits".to_string())?;
    let len = usize::from_str_radix(len_str, 16).map_err(|e| e.to_string())?;
    match len {
        0 => {
            *pos += 4;
            Ok(Some(Pkt::Flush))
        }
        1..=4 => Err(format!(
            "a special pkt-line ({len_str}) where commands belong"
        )),
        n if n > MAX_PKT => Err(format!("a pkt-line of {n} bytes (at most {MAX_PKT})")),
        n => {
            let Some(data) = buf.get(*pos + 4..*pos + n) else {
                return Ok(None);
            };
            *pos += n;
            Ok(Some(Pkt::Data(data)))
        }
    }
}

/// Parses the update requests at the head of `buf`: optional `shallow` lines, the command list
/// (capabilities after a NUL on the first), a flush, and with the `push-options` capability the
/// options and their flush. `Ok(None)`: more bytes are needed. A push certificate, a malformed
/// command or id, or a refname with bytes outside printable ASCII is an error.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut pos = 0;
    let mut commands = Vec::new();
    let mut caps = Vec::new();
    loop {
        let line = match pkt(buf, &mut pos)? {
            None => return Ok(None),
            Some(Pkt::Flush) => break,
            Some(Pkt::Data(d)) => d.strip_suffix(b"\n").unwrap_or(d),
        };
        if commands.is_empty() && line.starts_with(b"shallow ") {
            continue;
        }
        if line.starts_with(b"push-cert") {
            return Err("signed pushes (push certificates) are not supported".into());
        }
        let (cmd, cap) = match line.iter().position(|&b| b == 0) {
            Some(i) if commands.is_empty() => (&line[..i], Some(&line[i + 1..])),
            Some(_) => return Err("a NUL in a command after the first".into()),
            None => (line, None),
        };
        if let Some(cap) = cap {
            let cap = std::str::from_utf8(cap).map_err(|_| "capabilities not UTF-8".to_string())?;
            caps = cap
                .split(' ')
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect();
        }
        commands.push(parse_command(cmd)?);
    }
    let head = Head {
        commands,
        caps,
        len: pos,
    };
    if head.has_cap("push-options") && !head.commands.is_empty() {
        loop {
            match pkt(buf, &mut pos)? {
                None => return Ok(None),
                Some(Pkt::Flush) => break,
                Some(Pkt::Data(_)) => {}
            }
        }
    }
    Ok(Some(Head { len: pos, ..head }))
}

fn parse_command(line: &[u8]) -> Result<Command, String> {
    let text = std::str::from_utf8(line).map_err(|_| "a command that is not UTF-8".to_string())?;
    let mut parts = text.splitn(3, ' ');
    let (Some(old), Some(new), Some(refname)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("a command that is not 'old new ref': {text:?}"));
    };
    for id in [old, new] {
        if !(id.len() == 40 || id.len() == 64) || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("'{id}' is not an object id"));
        }
    }
    if old.len() != new.len() {
        return Err("object ids of different lengths".into());
    }
    if refname.is_empty() || !refname.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(format!(
            "refname {refname:?} has bytes outside printable ASCII"
        ));
    }
    Ok(Command {
        old: old.to_ascii_lowercase(),
        new: new.to_ascii_lowercase(),
        refname: refname.to_string(),
    })
}

/// Whether `name` (a full refname) is one git itself would accept (a conservative subset of
/// git-check-ref-format(1)): `refs/` then components not starting with `.` nor ending with
/// `.lock`, no `..`, `@{`, `//`, no trailing `/` or `.`, none of `~^:?*[\`.
pub(crate) fn refname_ok(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("refs/") else {
        return false;
    };
    !rest.is_empty()
        && !name.contains("..")
        && !name.contains("@{")
        && !name.ends_with('/')
        && !name.ends_with('.')
        && !name
            .bytes()
            .any(|b| b"~^:?*[\\".contains(&b) || b <= 0x20 || b == 0x7f)
        && rest
            .split('/')
            .all(|c| !c.is_empty() && !c.starts_with('.') && !c.ends_with(".lock"))
}

/// The branch a ref advertisement says `HEAD` points to (`symref=HEAD:refs/heads/NAME` among
/// the capabilities of its first ref line, gitprotocol-pack(5)); `None` when it does not say
/// (an empty repository, an old server) or the advertisement does not parse.
pub(crate) fn advertised_head(body: &[u8]) -> Option<String> {
    let mut pos = 0;
    while let Ok(Some(p)) = pkt(body, &mut pos) {
        let Pkt::Data(line) = p else { continue };
        let Some(nul) = line.iter().position(|&b| b == 0) else {
            continue;
        };
        let caps = std::str::from_utf8(&line[nul + 1..]).ok()?;
        return caps
            .split_ascii_whitespace()
            .find_map(|c| c.strip_prefix("symref=HEAD:refs/heads/"))
            .map(str::to_string);
    }
    None
}

/// Decodes a hex object id (40 digits).
pub(crate) fn oid_from_hex(hex: &str) -> Option<Oid> {
    let mut out = [0u8; 20];
    if hex.len() != 40 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The commits of a packfile: each commit's id and its parents. Objects of other types are
/// inflated only to find where they end; deltas are resolved when their base is a commit of
/// this pack (a delta against an object the pack does not hold, as in a thin pack, yields
/// nothing, so a proof that needs it fails). The pack's trailing SHA-1 must match.
pub(crate) fn pack_commits(pack: &[u8]) -> Result<HashMap<Oid, Vec<Oid>>, String> {
    let body_len = pack
        .len()
        .checked_sub(20)
        .filter(|&n| n >= 12)
        .ok_or("a packfile shorter than its header and checksum")?;
    if &pack[..4] != b"PACK" {
        return Err("the data after the commands is not a packfile".into());
    }
    let version = u32::from_be_bytes([pack[4], pack[5], pack[6], pack[7]]);
    if version != 2 && version != 3 {
        return Err(format!("packfile version {version}"));
    }
    if Sha1::digest(&pack[..body_len]).as_slice() != &pack[body_len..] {
        return Err("the packfile's checksum does not match".into());
    }
    let count = u32::from_be_bytes([pack[8], pack[9], pack[10], pack[11]]);
    let mut r = PackReader {
        pack: &pack[..body_len],
        pos: 12,
        types: HashMap::new(),
        commits_at: HashMap::new(),
        commit_oids: HashMap::new(),
        kept: 0,
        graph: HashMap::new(),
    };
    for _ in 0..count {
        r.object()?;
    }
    if r.pos != body_len {
        return Err("bytes after the packfile's last object".into());
    }
    Ok(r.graph)
}

/// An object's type as far as the reader knows it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Commit,
    Other,
    /// A delta against an object not in this pack (or not resolved).
    Unknown,
}

struct PackReader<'a> {
    pack: &'a [u8],
    pos: usize,
    types: HashMap<usize, Kind>,
    commits_at: HashMap<usize, Vec<u8>>,
    commit_oids: HashMap<Oid, usize>,
    kept: usize,
    graph: HashMap<Oid, Vec<Oid>>,
}

impl PackReader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.pack.get(self.pos).ok_or("a truncated packfile")?;
        self.pos += 1;
        Ok(b)
    }

    /// One object: its header, its (inflated) data, and if it is a commit, its id and parents.
    fn object(&mut self) -> Result<(), String> {
        let start = self.pos;
        let mut c = self.byte()?;
        let kind = (c >> 4) & 7;
        let mut size = u64::from(c & 15);
        let mut shift = 4;
        while c & 0x80 != 0 {
            c = self.byte()?;
            if shift > 57 {
                return Err("an object size that does not fit 64 bits".into());
            }
            size |= u64::from(c & 0x7f) << shift;
            shift += 7;
        }
        let base = match kind {
            1..=4 => None,
            6 => Some(self.ofs_base(start)?),
            7 => {
                let oid: Oid = self
                    .pack
                    .get(self.pos..self.pos + 20)
                    .and_then(|s| s.try_into().ok())
                    .ok_or("a truncated packfile")?;
                self.pos += 20;
                Some(self.commit_oids.get(&oid).copied())
            }
            k => return Err(format!("a packfile object of type {k}")),
        };
        let base_kind = match base {
            None if kind == 1 => Kind::Commit,
            None => Kind::Other,
            Some(Some(off)) => self.types.get(&off).copied().unwrap_or(Kind::Unknown),
            Some(None) => Kind::Unknown,
        };
        let keep = base_kind == Kind::Commit;
        if keep && size > (MAX_COMMIT_BYTES - self.kept) as u64 {
            return Err("the pushed commits are too large for airlock to check".into());
        }
        let data = self.inflate(size, keep)?;
        self.types.insert(start, base_kind);
        if !keep {
            return Ok(());
        }
        let commit = match base {
            None => data,
            Some(Some(off)) => {
                let base = self
                    .commits_at
                    .get(&off)
                    .ok_or("a delta base went missing")?;
                apply_delta(base, &data, MAX_COMMIT_BYTES - self.kept)?
            }
            Some(None) => return Err("a delta base went missing".into()),
        };
        self.kept += commit.len();
        let oid = commit_oid(&commit);
        if self.graph.contains_key(&oid) {
            // Same id, so the same bytes unless SHA-1 collides; either way not git's view.
            return Err("a packfile holding the same commit twice".into());
        }
        self.graph.insert(oid, parents(&commit)?);
        self.commit_oids.insert(oid, start);
        self.commits_at.insert(start, commit);
        Ok(())
    }

    /// An `OFS_DELTA` base: the offset of an earlier object.
    fn ofs_base(&mut self, start: usize) -> Result<Option<usize>, String> {
        let mut c = self.byte()?;
        let mut ofs = usize::from(c & 0x7f);
        while c & 0x80 != 0 {
            c = self.byte()?;
            ofs = ofs
                .checked_add(1)
                .and_then(|o| o.checked_mul(128))
                .ok_or("a delta offset that overflows")?
                | usize::from(c & 0x7f);
        }
        let base = start
            .checked_sub(ofs)
            .filter(|&b| ofs > 0 && b >= 12)
            .ok_or("a delta offset outside the packfile")?;
        Ok(Some(base))
    }

    /// Inflates one zlib stream at `pos`, which must yield exactly `size` bytes; the bytes are
    /// returned only when `keep`.
    fn inflate(&mut self, size: u64, keep: bool) -> Result<Vec<u8>, String> {
        let mut d = Decompress::new(true);
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let (in0, out0) = (d.total_in(), d.total_out());
            let status = d
                .decompress(&self.pack[self.pos..], &mut buf, FlushDecompress::None)
                .map_err(|e| format!("a packfile object does not inflate: {e}"))?;
            let used = usize::try_from(d.total_in() - in0).map_err(|e| e.to_string())?;
            let made = usize::try_from(d.total_out() - out0).map_err(|e| e.to_string())?;
            self.pos += used;
            if d.total_out() > size {
                return Err("a packfile object larger than its header says".into());
            }
            if keep {
                out.extend_from_slice(&buf[..made]);
            }
            match status {
                Status::StreamEnd => break,
                _ if used == 0 && made == 0 => return Err("a truncated packfile".into()),
                _ => {}
            }
        }
        if d.total_out() != size {
            return Err("a packfile object smaller than its header says".into());
        }
        Ok(out)
    }
}

/// Applies a git delta (gitformat-pack(5) "Deltified representation") to `base`; the result may
/// be at most `max` bytes.
fn apply_delta(base: &[u8], delta: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let mut pos = 0;
    let varint = |pos: &mut usize| -> Result<usize, String> {
        let (mut v, mut shift) = (0usize, 0);
        loop {
            let c = *delta.get(*pos).ok_or("a truncated delta")?;
            *pos += 1;
            if shift > 56 {
                return Err("a delta size that overflows".into());
            }
            v |= usize::from(c & 0x7f) << shift;
            shift += 7;
            if c & 0x80 == 0 {
                return Ok(v);
            }
        }
    };
    let src = varint(&mut pos)?;
    let dst = varint(&mut pos)?;
    if src != base.len() || dst > max {
        return Err("a delta that does not fit its base".into());
    }
    let mut out = Vec::with_capacity(dst);
    while pos < delta.len() {
        let op = delta[pos];
        pos += 1;
        if op & 0x80 != 0 {
            let mut field = |bits: u8, count: usize| -> Result<usize, String> {
                let mut v = 0usize;
                for i in 0..count {
                    if bits & (1 << i) != 0 {
                        v |= usize::from(*delta.get(pos).ok_or("a truncated delta")?) << (8 * i);
                        pos += 1;
                    }
                }
                Ok(v)
            };
            let offset = field(op, 4)?;
            let size = match field(op >> 4, 3)? {
                0 => 0x10000,
                n => n,
            };
            let piece = offset
                .checked_add(size)
                .and_then(|end| base.get(offset..end))
                .ok_or("a delta copying outside its base")?;
            out.extend_from_slice(piece);
        } else if op != 0 {
            let piece = delta
                .get(pos..pos + usize::from(op))
                .ok_or("a truncated delta")?;
            out.extend_from_slice(piece);
            pos += usize::from(op);
        } else {
            return Err("a delta with the reserved opcode 0".into());
        }
        if out.len() > dst {
            return Err("a delta longer than it says".into());
        }
    }
    if out.len() != dst {
        return Err("a delta shorter than it says".into());
    }
    Ok(out)
}

/// A commit's object id: SHA-1 of `commit LEN\0DATA`.
fn commit_oid(data: &[u8]) -> Oid {
    let mut h = Sha1::new();
    h.update(format!("commit {}\0", data.len()).as_bytes());
    h.update(data);
    h.finalize().into()
}

/// A commit's parents, read exactly as git reads them (commit.c `parse_commit_buffer`): the
/// first line is `tree <hex>`, the parents are the `parent <hex>` lines that follow it
/// without a gap, and nothing after them is a parent. Where git and this reader could
/// disagree, the commit is refused (an error, so the push is refused as unprovable): a first
/// line that is not a well-formed `tree` line, a `parent` line that is not 40 lower-case hex
/// digits and a newline, the same parent twice, a `parent` header anywhere after the first
/// other header (git ignores it, so it would be a parent here only), no `author` then
/// `committer` right after the parents (git fsck's order), a NUL in the header, or a header
/// with no end.
fn parents(data: &[u8]) -> Result<Vec<Oid>, String> {
    let header_end = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .map_or(data.len(), |i| i + 1);
    let header = &data[..header_end];
    if header.contains(&0) {
        return Err("a commit header with a NUL".into());
    }
    if !header.ends_with(b"\n") {
        return Err("a commit header that does not end in a newline".into());
    }
    let mut lines = header[..header.len() - 1].split(|&b| b == b'\n').peekable();
    let tree = lines.next().and_then(|l| l.strip_prefix(b"tree "));
    if tree.and_then(strict_oid).is_none() {
        return Err("a commit whose first line is not 'tree <id>'".into());
    }
    let mut out: Vec<Oid> = Vec::new();
    let mut seen = HashSet::new();
    while let Some(hex) = lines.peek().and_then(|l| l.strip_prefix(b"parent ")) {
        let oid = strict_oid(hex).ok_or("a commit parent that is not 40 lower-case hex digits")?;
        if !seen.insert(oid) {
            return Err("a commit naming the same parent twice".into());
        }
        out.push(oid);
        lines.next();
    }
    for (want, line) in [("author ", lines.next()), ("committer ", lines.next())] {
        if !line.is_some_and(|l| l.starts_with(want.as_bytes())) {
            return Err(format!(
                "a commit without its '{}' line right after its parents",
                want.trim_end()
            ));
        }
    }
    // Later headers (encoding, gpgsig, mergetag, …) and their continuation lines (which start
    // with a space) are no parents for git; one that looks like a parent header is refused.
    if lines.any(|l| l.starts_with(b"parent")) {
        return Err("a commit with a 'parent' header out of place (git would not read it)".into());
    }
    Ok(out)
}

/// A 40-digit lower-case hex object id (as git writes them; anything else is refused).
fn strict_oid(hex: &[u8]) -> Option<Oid> {
    if hex.len() != 40 || !hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    oid_from_hex(std::str::from_utf8(hex).ok()?)
}

/// Whether `old` is reachable from `new` through the parents in `graph` (commits the pack
/// holds): a proof that moving a ref from `old` to `new` is a fast-forward. A walk that leaves
/// the pack without meeting `old` proves nothing.
pub(crate) fn descends(graph: &HashMap<Oid, Vec<Oid>>, new: &Oid, old: &Oid) -> bool {
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([*new]);
    while let Some(c) = queue.pop_front() {
        if &c == old {
            return true;
        }
        if !seen.insert(c) {
            continue;
        }
        if let Some(ps) = graph.get(&c) {
            queue.extend(ps.iter().copied());
        }
    }
    false
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // test fixtures of known small sizes
mod tests {
    use super::*;
    use std::io::Write;

    fn pkt_line(s: &[u8]) -> Vec<u8> {
        let mut v = format!("{:04x}", s.len() + 4).into_bytes();
        v.extend_from_slice(s);
        v
    }

    const A: &str = "1111111111111111111111111111111111111111";
    const Z: &str = "0000000000000000000000000000000000000000";

    #[test]
    fn head_with_caps_options_and_partial_input() {
        let mut body =
            pkt_line(format!("{Z} {A} refs/heads/x\0report-status push-options").as_bytes());
        body.extend(pkt_line(format!("{A} {Z} refs/heads/y\n").as_bytes()));
        body.extend(b"0000");
        body.extend(pkt_line(b"ci.skip"));
        body.extend(b"0000PACK");
        for cut in 0..body.len() - 4 {
            assert_eq!(parse_head(&body[..cut]), Ok(None), "cut at {cut}");
        }
        let h = parse_head(&body).expect("parse").expect("complete");
        assert_eq!(h.commands.len(), 2);
        assert_eq!(h.commands[1].refname, "refs/heads/y");
        assert!(h.has_cap("report-status"));
        assert_eq!(&body[h.len..], b"PACK");
    }

    #[test]
    fn hostile_heads_are_errors() {
        for bad in [
            b"zzzz".to_vec(),
            b"0001".to_vec(),
            b"0003".to_vec(),
            pkt_line(b"push-cert\0report-status"),
            pkt_line(format!("{Z} {A}").as_bytes()),
            pkt_line(format!("{Z} 12 refs/heads/x").as_bytes()),
            pkt_line(format!("{Z} {A} refs/heads/\x01x").as_bytes()),
            pkt_line(format!("{Z} {A} refs/heads/a b").as_bytes()),
            [
                pkt_line(format!("{Z} {A} refs/heads/a\0x").as_bytes()),
                pkt_line(format!("{Z} {A} refs/heads/b\0y").as_bytes()),
            ]
            .concat(),
            b"fff1".to_vec(),
        ] {
            assert!(
                parse_head(&bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(&bad)
            );
        }
    }

    #[test]
    fn advertised_head_is_read_from_the_first_ref_line() {
        let adv = [
            pkt_line(b"# service=git-upload-pack\n"),
            b"0000".to_vec(),
            pkt_line(
                format!("{A} HEAD\0multi_ack symref=HEAD:refs/heads/trunk agent=git/2\n")
                    .as_bytes(),
            ),
            pkt_line(format!("{A} refs/heads/trunk\n").as_bytes()),
            b"0000".to_vec(),
        ]
        .concat();
        assert_eq!(advertised_head(&adv).as_deref(), Some("trunk"));
        let empty = [
            pkt_line(b"# service=git-upload-pack\n"),
            b"0000".to_vec(),
            pkt_line(format!("{Z} capabilities^{{}}\0agent=git/2\n").as_bytes()),
            b"0000".to_vec(),
        ]
        .concat();
        assert_eq!(advertised_head(&empty), None);
        assert_eq!(advertised_head(b"garbage"), None);
    }

    #[test]
    fn refnames() {
        for ok in ["refs/heads/airlock/x", "refs/tags/v1", "refs/heads/a-b_c"] {
            assert!(refname_ok(ok), "{ok}");
        }
        for bad in [
            "refs/heads/airlock/../main",
            "refs/heads/a.lock",
            "refs/heads/.x",
            "refs/heads//x",
            "refs/heads/x/",
            "refs/heads/x@{1}",
            "refs/heads/a~1",
            "HEAD",
            "refs/",
            "heads/x",
        ] {
            assert!(!refname_ok(bad), "{bad}");
        }
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("deflate");
        e.finish().expect("deflate")
    }

    fn obj_header(kind: u8, size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut c = (kind << 4) | (size & 15) as u8;
        let mut rest = size >> 4;
        while rest != 0 {
            out.push(c | 0x80);
            c = (rest & 0x7f) as u8;
            rest >>= 7;
        }
        out.push(c);
        out
    }

    fn pack(objects: &[Vec<u8>]) -> Vec<u8> {
        let mut p = b"PACK\0\0\0\x02".to_vec();
        p.extend((objects.len() as u32).to_be_bytes());
        for o in objects {
            p.extend(o);
        }
        let sum = Sha1::digest(&p);
        p.extend(sum);
        p
    }

    fn commit(parents: &[Oid]) -> Vec<u8> {
        let mut s = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n".to_string();
        for p in parents {
            s.push_str(&format!("parent {}\n", hex(p)));
        }
        s.push_str("author a <a@b> 0 +0000\ncommitter a <a@b> 0 +0000\n\nmsg\n");
        s.into_bytes()
    }

    fn varint(out: &mut Vec<u8>, mut n: usize) {
        while n >= 0x80 {
            out.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    fn hex(o: &Oid) -> String {
        o.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn commits_plain_and_deltified() {
        let root = [7u8; 20];
        let c1 = commit(&[root]);
        let id1 = commit_oid(&c1);
        let c2 = commit(&[id1]);
        let id2 = commit_oid(&c2);
        // c2 as an OFS_DELTA on c1: copy all of c1 but the parent line, insert the new one.
        let o1 = [obj_header(1, c1.len()), zlib(&c1)].concat();
        let mut delta = Vec::new();
        varint(&mut delta, c1.len());
        varint(&mut delta, c2.len());
        // Copy c1's tree line (46 bytes at offset 0), insert the rest literally.
        delta.extend([0x90, 46]);
        for piece in c2[46..].chunks(127) {
            delta.push(piece.len() as u8);
            delta.extend(piece);
        }
        let ofs = o1.len();
        assert!(ofs < 128, "one-byte offset encoding");
        let o2 = [obj_header(6, delta.len()), vec![ofs as u8], zlib(&delta)].concat();
        let blob = [obj_header(3, 5), zlib(b"hello")].concat();
        let p = pack(&[o1, o2, blob]);
        let g = pack_commits(&p).expect("parse");
        assert!(descends(&g, &id2, &root));
        assert!(descends(&g, &id2, &id1));
        assert!(!descends(&g, &id1, &id2));
        assert!(!descends(&g, &id2, &[9u8; 20]));
        // Any corruption is an error, never a partial graph.
        for i in 0..p.len() {
            let mut bad = p.clone();
            bad[i] ^= 0x40;
            assert!(pack_commits(&bad).is_err(), "flip at {i}");
        }
        assert!(pack_commits(&p[..p.len() - 1]).is_err());
    }

    /// The fuzz entry point on mutations of a valid push (head and pack): never a panic.
    #[test]
    fn mutated_pushes_never_panic() {
        let root = [7u8; 20];
        let c1 = commit(&[root]);
        let o1 = [obj_header(1, c1.len()), zlib(&c1)].concat();
        let blob = [obj_header(3, 5), zlib(b"hello")].concat();
        let p = pack(&[o1, blob]);
        let mut valid = pkt_line(format!("{Z} {A} refs/heads/airlock/x\0report-status").as_bytes());
        valid.extend(b"0000");
        valid.extend(&p);
        crate::fuzzing::git_push(&valid);
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let mut m = valid.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % m.len();
                match next() % 3 {
                    0 => m[i] = next() as u8,
                    1 => {
                        m.truncate(i);
                    }
                    _ => m.insert(i, next() as u8),
                }
                if m.is_empty() {
                    break;
                }
            }
            crate::fuzzing::git_push(&m);
            crate::fuzzing::git_push(&m[m.len().min(80)..]);
        }
    }

    /// R3: a commit is read as git reads it. The red team's force-push (a `parent` header after
    /// `committer`, a root commit for git) and its variants prove nothing: each is refused, in
    /// a pack too; commits git writes keep their parents.
    #[test]
    fn commits_are_read_as_git_reads_them() {
        let old = hex(&[7u8; 20]);
        let other = hex(&[8u8; 20]);
        let tree = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n";
        let who = "author x <x@y> 1700000000 +0000\ncommitter x <x@y> 1700000000 +0000\n";
        let sig = "gpgsig -----BEGIN PGP SIGNATURE-----\n parent 0707070707070707070707070707070707070707\n -----END PGP SIGNATURE-----\n";
        let tag =
            "mergetag object 0707070707070707070707070707070707070707\n type commit\n parent x\n";
        for (text, want) in [
            (format!("{tree}{who}\nroot\n"), vec![]),
            (format!("{tree}parent {old}\n{who}\nmsg\n"), vec![[7u8; 20]]),
            (
                format!("{tree}parent {old}\nparent {other}\n{who}\nmerge\n"),
                vec![[7u8; 20], [8u8; 20]],
            ),
            (
                format!("{tree}{who}encoding ISO-8859-1\n{sig}{tag}\nsigned\n"),
                vec![],
            ),
            (format!("{tree}parent {old}\n{who}"), vec![[7u8; 20]]),
        ] {
            assert_eq!(parents(text.as_bytes()), Ok(want), "{text}");
        }
        let upper = old.to_ascii_uppercase().replace('7', "A");
        for bad in [
            // The attack: git reads no parent, a parent-anywhere reader reads `old`.
            format!("{tree}{who}parent {old}\n\nrewritten\n"),
            format!("{tree}author x <x@y> 0 +0000\nparent {old}\ncommitter x <x@y> 0 +0000\n\nm\n"),
            format!("{tree}{who}encoding UTF-8\nparent {old}\n\nm\n"),
            format!("{tree}{who}parent  {old}\n\nm\n"),
            format!("parent {old}\n{tree}{who}\nm\n"),
            format!("{tree}parent {other}\n{who}parent {old}\n\nm\n"),
            // Malformed parents and trees.
            format!("{tree}parent {upper}\n{who}\nm\n"),
            format!("{tree}parent {old} \n{who}\nm\n"),
            format!("{tree}parent {}\n{who}\nm\n", &old[..39]),
            format!("{tree}parent {old}0\n{who}\nm\n"),
            format!("{tree}parent zz{}\n{who}\nm\n", &old[2..]),
            format!("{tree}parent {old}\nparent {old}\n{who}\nm\n"),
            format!("tree 4B825DC642CB6EB9A060E54BF8D69288FBEE4904\nparent {old}\n{who}\nm\n"),
            format!("tree  4b825dc642cb6eb9a060e54bf8d69288fbee4904\nparent {old}\n{who}\nm\n"),
            format!("\n{tree}parent {old}\n{who}\nm\n"),
            format!("{tree}parent {old}\n\nm\n"),
            format!("{tree}parent {old}\ncommitter x <x@y> 0 +0000\nauthor x <x@y> 0 +0000\n\nm\n"),
            format!(
                "{tree}parent {old}\nauthor x\0 <x@y> 0 +0000\ncommitter x <x@y> 0 +0000\n\nm\n"
            ),
            format!("{tree}parent {old}\nauthor x <x@y> 0 +0000\ncommitter x <x@y> 0 +0000"),
            String::new(),
        ] {
            assert!(parents(bad.as_bytes()).is_err(), "accepted: {bad:?}");
        }
        // An octopus of 200 000 distinct parents is read in linear time (the agent writes it).
        let mut many = tree.to_string();
        for i in 0u32..200_000 {
            let mut id = [0u8; 20];
            id[..4].copy_from_slice(&i.to_be_bytes());
            many.push_str(&format!("parent {}\n", hex(&id)));
        }
        many.push_str(who);
        let t = std::time::Instant::now();
        assert_eq!(parents(many.as_bytes()).map(|p| p.len()), Ok(200_000));
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            t.elapsed()
        );
        // In a pack: the attack commit makes the pack unprovable, never a fast-forward.
        let attack = format!("{tree}{who}parent {old}\n\nrewritten history\n").into_bytes();
        let p = pack(&[[obj_header(1, attack.len()), zlib(&attack)].concat()]);
        assert!(pack_commits(&p).is_err());
    }

    /// What else could make the pack's graph differ from git's: the same commit twice, a
    /// delta against an object the pack does not hold (a thin pack on the old tip), zlib
    /// garbage after an object, an object of another type holding commit text.
    #[test]
    fn packs_that_git_could_read_otherwise_prove_nothing() {
        let root = [7u8; 20];
        let c1 = commit(&[root]);
        let id1 = commit_oid(&c1);
        let o1 = [obj_header(1, c1.len()), zlib(&c1)].concat();
        assert!(pack_commits(&pack(&[o1.clone(), o1.clone()])).is_err());
        // A REF_DELTA on the old tip (not in the pack): no commit comes of it.
        let c2 = commit(&[root]);
        let mut delta = Vec::new();
        varint(&mut delta, 300);
        varint(&mut delta, c2.len());
        for piece in c2.chunks(127) {
            delta.push(piece.len() as u8);
            delta.extend(piece);
        }
        let thin = [obj_header(7, delta.len()), root.to_vec(), zlib(&delta)].concat();
        let g = pack_commits(&pack(&[thin])).expect("thin pack parses");
        assert!(g.is_empty() && !descends(&g, &commit_oid(&c2), &root));
        // Garbage after a zlib stream is not skipped.
        let junk = [obj_header(1, c1.len()), zlib(&c1), b"junk".to_vec()].concat();
        assert!(pack_commits(&pack(&[junk])).is_err());
        // A blob with a commit's bytes is not a commit (its id is another).
        let blob = [obj_header(3, c1.len()), zlib(&c1)].concat();
        let g = pack_commits(&pack(&[blob])).expect("parse");
        assert!(!g.contains_key(&id1) && !descends(&g, &id1, &root));
        // Ids that are not SHA-1 hex prove nothing.
        assert_eq!(oid_from_hex(&"7".repeat(64)), None);
    }

    #[test]
    fn deltas_are_checked() {
        let base = b"0123456789".to_vec();
        // copy 4 bytes at offset 2, insert "xy"
        let ok = [10, 6, 0x91, 2, 4, 2, b'x', b'y'];
        assert_eq!(apply_delta(&base, &ok, 100).expect("apply"), b"2345xy");
        for bad in [
            vec![9, 6, 0x91, 2, 4, 2, b'x', b'y'],  // wrong base size
            vec![10, 6, 0x91, 8, 4, 2, b'x', b'y'], // copy past the base
            vec![10, 6, 0x91, 2, 4, 5, b'x', b'y'], // truncated insert
            vec![10, 6, 0, 2],                      // reserved opcode
            vec![10, 7, 0x91, 2, 4, 2, b'x', b'y'], // shorter than it says
        ] {
            assert!(apply_delta(&base, &bad, 100).is_err(), "{bad:?}");
        }
    }
}
