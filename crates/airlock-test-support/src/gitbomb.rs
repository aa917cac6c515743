//! Git data whose objects inflate far beyond its size on disk (REDTEAM4 Y2): packs with a delta
//! whose result is GiBs of zeros (REF_DELTA, OFS_DELTA, a chain of two), and a loose object that
//! is the zlib of GiBs of zeros. Built by hand (gitformat-pack(5), gitformat-loose(5)) so that
//! no test process ever inflates them.

// Byte packing: every cast below is of a value masked or bounded to fit.
#![allow(clippy::cast_possible_truncation)]

use sha1::{Digest, Sha1};

/// The size of the plain zero blob every delta starts from (1 MiB).
pub const BASE: u64 = 1 << 20;

/// How the pack's delta names its base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delta {
    /// By object id (`OBJ_REF_DELTA`, type 7).
    Ref,
    /// By offset back in the pack (`OBJ_OFS_DELTA`, type 6).
    Ofs,
    /// A chain: an OFS_DELTA of 64 MiB on the base, then an OFS_DELTA on that one.
    Chain,
}

/// An entry header: type and inflated size (little-endian groups of 7 bits after the first 4).
fn entry_header(kind: u8, mut size: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut c = (kind << 4) | (size & 15) as u8;
    size >>= 4;
    while size != 0 {
        out.push(c | 0x80);
        c = (size & 0x7f) as u8;
        size >>= 7;
    }
    out.push(c);
    out
}

/// A delta's size field: little-endian groups of 7 bits.
fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let c = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(c);
            return out;
        }
        out.push(c | 0x80);
    }
}

/// A copy instruction of `size` bytes (under 2^24) from offset 0 of the base.
fn copy(size: u64) -> Vec<u8> {
    let mut flags = 0x80u8;
    let mut rest = Vec::new();
    for i in 0..3 {
        let b = ((size >> (8 * i)) & 0xff) as u8;
        if b != 0 {
            flags |= 0x10 << i;
            rest.push(b);
        }
    }
    let mut out = vec![flags];
    out.extend(rest);
    out
}

/// A delta on a base of `src` bytes: `n` copies of its first `piece` bytes.
fn delta(src: u64, n: u64, piece: u64) -> Vec<u8> {
    let mut d = varint(src);
    d.extend(varint(n * piece));
    for _ in 0..n {
        d.extend(copy(piece));
    }
    d
}

fn zlib(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(data).expect("compress");
    z.finish().expect("compress")
}

/// The OFS_DELTA offset encoding of `back` bytes.
fn ofs(mut back: u64) -> Vec<u8> {
    let mut out = vec![(back & 0x7f) as u8];
    back >>= 7;
    while back != 0 {
        back -= 1;
        out.insert(0, 0x80 | (back & 0x7f) as u8);
        back >>= 7;
    }
    out
}

/// A pack (version 2, SHA-1) holding a 1 MiB zero blob and a delta whose result is `mib` MiB
/// of zeros (for [`Delta::Chain`], the second delta's result), a few KiB in all. Returns the
/// pack and its name (`pack-HEX.pack`, HEX its checksum).
pub fn delta_pack(kind: Delta, mib: u64) -> (Vec<u8>, String) {
    let base = vec![0u8; BASE as usize];
    let mut id = Sha1::new();
    id.update(format!("blob {BASE}\0").as_bytes());
    id.update(&base);
    let base_id = id.finalize();
    let mut entries: Vec<Vec<u8>> = Vec::new();
    let mut e = entry_header(3, BASE);
    e.extend(zlib(&base));
    entries.push(e);
    match kind {
        Delta::Ref => {
            let d = delta(BASE, mib, BASE);
            let mut e = entry_header(7, d.len() as u64);
            e.extend(base_id.as_slice());
            e.extend(zlib(&d));
            entries.push(e);
        }
        Delta::Ofs => {
            let d = delta(BASE, mib, BASE);
            let mut e = entry_header(6, d.len() as u64);
            e.extend(ofs(entries[0].len() as u64));
            e.extend(zlib(&d));
            entries.push(e);
        }
        Delta::Chain => {
            let mid = 64u64;
            let d1 = delta(BASE, mid, BASE);
            let mut e1 = entry_header(6, d1.len() as u64);
            e1.extend(ofs(entries[0].len() as u64));
            e1.extend(zlib(&d1));
            let e1_len = e1.len() as u64;
            entries.push(e1);
            let piece = 8 << 20;
            let d2 = delta(mid << 20, mib / 8, piece);
            let mut e2 = entry_header(6, d2.len() as u64);
            e2.extend(ofs(e1_len));
            e2.extend(zlib(&d2));
            entries.push(e2);
        }
    }
    let mut pack = b"PACK".to_vec();
    pack.extend(2u32.to_be_bytes());
    pack.extend((entries.len() as u32).to_be_bytes());
    for e in entries {
        pack.extend(e);
    }
    let sum = Sha1::digest(&pack);
    pack.extend(sum.as_slice());
    (pack, format!("pack-{}.pack", hex::encode(sum)))
}

/// A loose blob object of `mib` MiB of zeros: the zlib stream is built from one compressed MiB
/// repeated (each block ends on a byte boundary, after a sync flush), so making it inflates
/// nothing. About 1 KiB per MiB.
pub fn loose_zeros(mib: u64) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    assert!(mib >= 3, "at least 3 MiB");
    let size = mib << 20;
    let header = format!("blob {size}\0");
    let zeros = vec![0u8; 1 << 20];
    let mut c = Compress::new(Compression::best(), false);
    let mut chunk = |input: &[u8], flush: FlushCompress| {
        let mut out = Vec::with_capacity(64 << 10);
        let mut input = input;
        loop {
            let before_in = c.total_in();
            out.reserve(64 << 10);
            c.compress_vec(input, &mut out, flush).expect("deflate");
            let used = (c.total_in() - before_in) as usize;
            input = &input[used..];
            if input.is_empty() && out.len() < out.capacity() {
                return out;
            }
        }
    };
    let mut first = header.as_bytes().to_vec();
    first.extend(&zeros);
    let a = chunk(&first, FlushCompress::Sync);
    let _ = chunk(&zeros, FlushCompress::Sync);
    // Made with a window of zeros only: valid after any chunk.
    let z = chunk(&zeros, FlushCompress::Sync);
    let end = chunk(&[], FlushCompress::Finish);
    // Adler-32 (RFC 1950) of the header then `size` zeros: zeros leave `a` and add it to `b`
    // once per byte.
    let (mut s1, mut s2) = (1u64, 0u64);
    for b in header.as_bytes() {
        s1 = (s1 + u64::from(*b)) % 65521;
        s2 = (s2 + s1) % 65521;
    }
    s2 = (s2 + (size % 65521) * s1) % 65521;
    let mut out = vec![0x78, 0xda];
    out.extend(a);
    for _ in 1..mib {
        out.extend(&z);
    }
    out.extend(end);
    out.extend(((s2 << 16 | s1) as u32).to_be_bytes());
    out
}
