//! The journal's bytes: segment headers and frames, and the scan that finds
//! the valid prefix of a segment. Pure functions over byte slices, so every
//! torn or flipped byte can be tested without a file.
//!
//! A segment is a fixed-size file: a [`SEGMENT_HEADER`]-byte header (magic,
//! version, the segment's id, a CRC), then frames. A frame is
//!
//! ```text
//! len: u32 LE | crc: u32 LE | pos: u64 LE | payload (len bytes)
//! ```
//!
//! where `pos` is the frame's own position (the segment's id × the segment
//! size + its offset) and `crc` is CRC-32 over the segment's salt, `len`,
//! `pos` and the payload. The salt is derived from the journal's key and
//! the segment's id, so a frame left over from an earlier use of a recycled
//! file, or bytes inside a payload that look like a frame, never pass. A
//! frame with `len` = [`END_OF_SEGMENT`] and no payload says "the log goes
//! on at the next segment's start"; when fewer than [`FRAME_HEADER`] bytes
//! are left in a segment, the log goes on there too.

use sha2::{Digest, Sha256};

/// Bytes of a segment's header.
pub const SEGMENT_HEADER: usize = 32;
/// Bytes of a frame's header.
pub const FRAME_HEADER: usize = 16;
/// The `len` of an end-of-segment marker.
pub const END_OF_SEGMENT: u32 = u32::MAX;

const MAGIC: &[u8; 4] = b"SBJ1";
const VERSION: u32 = 1;

/// The salt of segment `id` of the journal whose key is `key`.
pub fn salt(key: &[u8; 32], id: u64) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(b"switchboard journal segment");
    h.update(key);
    h.update(id.to_le_bytes());
    let d = h.finalize();
    let mut s = [0u8; 8];
    s.copy_from_slice(&d[..8]);
    s
}

fn crc(salt: &[u8; 8], len: u32, pos: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(salt);
    h.update(&len.to_le_bytes());
    h.update(&pos.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Appends the frame of `payload` at position `pos` to `out`.
pub fn encode_frame(out: &mut Vec<u8>, salt: &[u8; 8], pos: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("frames are smaller than a segment");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc(salt, len, pos, payload).to_le_bytes());
    out.extend_from_slice(&pos.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Appends an end-of-segment marker at position `pos` to `out`.
pub fn encode_end(out: &mut Vec<u8>, salt: &[u8; 8], pos: u64) {
    out.extend_from_slice(&END_OF_SEGMENT.to_le_bytes());
    out.extend_from_slice(&crc(salt, END_OF_SEGMENT, pos, &[]).to_le_bytes());
    out.extend_from_slice(&pos.to_le_bytes());
}

/// The header of segment `id`.
pub fn segment_header(id: u64) -> [u8; SEGMENT_HEADER] {
    let mut h = [0u8; SEGMENT_HEADER];
    h[..4].copy_from_slice(MAGIC);
    h[4..8].copy_from_slice(&VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&id.to_le_bytes());
    let c = crc32fast::hash(&h[..16]);
    h[16..20].copy_from_slice(&c.to_le_bytes());
    h
}

/// Whether `bytes` start with the header of segment `id`.
pub fn header_is(bytes: &[u8], id: u64) -> bool {
    bytes.len() >= SEGMENT_HEADER && bytes[..SEGMENT_HEADER] == segment_header(id)
}

/// How a segment's scan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The log goes on at the next segment (an end marker, or no room for
    /// another frame header).
    NextSegment,
    /// The log ends here: the first byte that is not a valid frame (a torn
    /// or flipped frame, zeros, a leftover of an earlier use).
    Tail(u64),
}

/// One valid frame found by [`scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found<'a> {
    /// Where it starts.
    pub pos: u64,
    /// Where the next one starts.
    pub end: u64,
    /// Its payload.
    pub payload: &'a [u8],
}

/// Scans the frames of segment `id` (`bytes` is the whole file, `base` its
/// first position) from offset [`SEGMENT_HEADER`], calling `each` for every
/// valid frame in order, until the first one that is not.
pub fn scan<'a>(
    bytes: &'a [u8],
    id: u64,
    base: u64,
    salt: &[u8; 8],
    mut each: impl FnMut(Found<'a>),
) -> End {
    let size = bytes.len();
    if !header_is(bytes, id) {
        return End::Tail(base + SEGMENT_HEADER as u64);
    }
    let mut off = SEGMENT_HEADER;
    loop {
        if size - off < FRAME_HEADER {
            return End::NextSegment;
        }
        let pos = base + off as u64;
        let h = &bytes[off..off + FRAME_HEADER];
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let stored = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let at = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
        if at != pos {
            return End::Tail(pos);
        }
        if len == END_OF_SEGMENT {
            return if stored == crc(salt, len, pos, &[]) {
                End::NextSegment
            } else {
                End::Tail(pos)
            };
        }
        let body = off + FRAME_HEADER;
        let Some(payload) = bytes.get(body..body + len as usize) else {
            return End::Tail(pos);
        };
        if stored != crc(salt, len, pos, payload) {
            return End::Tail(pos);
        }
        let end = body + len as usize;
        each(Found {
            pos,
            end: base + end as u64,
            payload,
        });
        off = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];
    const SIZE: usize = 4096;

    /// Segment 3 of SIZE bytes holding `payloads`, and each frame's start.
    fn segment(payloads: &[&[u8]]) -> (Vec<u8>, Vec<u64>) {
        let base = 3 * SIZE as u64;
        let s = salt(&KEY, 3);
        let mut bytes = segment_header(3).to_vec();
        let mut starts = Vec::new();
        for p in payloads {
            starts.push(base + bytes.len() as u64);
            let pos = base + bytes.len() as u64;
            encode_frame(&mut bytes, &s, pos, p);
        }
        bytes.resize(SIZE, 0);
        (bytes, starts)
    }

    fn payloads(bytes: &[u8]) -> (Vec<Vec<u8>>, End) {
        let mut got = Vec::new();
        let end = scan(bytes, 3, 3 * SIZE as u64, &salt(&KEY, 3), |f| {
            got.push(f.payload.to_vec())
        });
        (got, end)
    }

    #[test]
    fn frames_come_back_in_order_and_the_tail_is_after_the_last() {
        let (bytes, starts) = segment(&[b"one", b"", b"three"]);
        let (got, end) = payloads(&bytes);
        assert_eq!(got, vec![b"one".to_vec(), vec![], b"three".to_vec()]);
        let last_end = starts[2] + (FRAME_HEADER + 5) as u64;
        assert_eq!(end, End::Tail(last_end));
    }

    #[test]
    fn a_last_frame_cut_at_any_byte_or_with_any_byte_flipped_leaves_the_prefix() {
        let (whole, starts) = segment(&[b"first batch", b"second batch, the last"]);
        let base = 3 * SIZE;
        let last = starts[1] as usize - base;
        let last_end = last + FRAME_HEADER + 22;
        for cut in last..last_end {
            let mut torn = whole.clone();
            torn[cut..].fill(0);
            let (got, end) = payloads(&torn);
            assert_eq!(got, vec![b"first batch".to_vec()], "cut at {cut}");
            assert_eq!(end, End::Tail(starts[1]), "cut at {cut}");
        }
        for i in last..last_end {
            for bit in [0x01u8, 0x80] {
                let mut flipped = whole.clone();
                flipped[i] ^= bit;
                let (got, _) = payloads(&flipped);
                assert_eq!(got, vec![b"first batch".to_vec()], "byte {i} bit {bit:#x}");
            }
        }
    }

    #[test]
    fn another_segments_frames_and_a_forged_frame_in_a_payload_do_not_pass() {
        // The same bytes read as segment 4: its header and salt differ.
        let (bytes, _) = segment(&[b"x"]);
        let mut n = 0;
        let end = scan(&bytes, 4, 4 * SIZE as u64, &salt(&KEY, 4), |_| n += 1);
        assert_eq!(
            (n, end),
            (0, End::Tail(4 * SIZE as u64 + SEGMENT_HEADER as u64))
        );
        // A short frame written over the start of a longer, torn one: the
        // old payload after it holds what would be the next frame, made by
        // someone without the journal's key. It does not pass.
        let base = 3 * SIZE as u64;
        let s3 = salt(&KEY, 3);
        let first = base + SEGMENT_HEADER as u64;
        let next = first + (FRAME_HEADER + 1) as u64;
        let mut fake = Vec::new();
        encode_frame(&mut fake, &salt(&[0; 32], 3), next, b"forged");
        let mut old = vec![b'o'; 1];
        old.extend_from_slice(&fake);
        let mut bytes = segment_header(3).to_vec();
        encode_frame(&mut bytes, &s3, first, &old);
        // Torn: its CRC no longer matches (cut); then "b" overwrites its start.
        let mut short = Vec::new();
        encode_frame(&mut short, &s3, first, b"b");
        bytes[SEGMENT_HEADER..SEGMENT_HEADER + short.len()].copy_from_slice(&short);
        bytes.resize(SIZE, 0);
        assert_eq!(payloads(&bytes), (vec![b"b".to_vec()], End::Tail(next)));
    }

    #[test]
    fn an_end_marker_or_no_room_for_a_header_goes_on_at_the_next_segment() {
        let base = 3 * SIZE as u64;
        let s = salt(&KEY, 3);
        let mut bytes = segment_header(3).to_vec();
        encode_frame(&mut bytes, &s, base + SEGMENT_HEADER as u64, b"a");
        let at = base + bytes.len() as u64;
        encode_end(&mut bytes, &s, at);
        bytes.resize(SIZE, 0);
        assert_eq!(payloads(&bytes), (vec![b"a".to_vec()], End::NextSegment));
        // A frame that fills the segment to within fewer than a header's
        // bytes of its end.
        let fill = SIZE - SEGMENT_HEADER - FRAME_HEADER - 10;
        let big = vec![b'z'; fill];
        let (bytes, _) = segment(&[&big]);
        assert_eq!(payloads(&bytes).1, End::NextSegment);
        // A marker with a wrong CRC is the tail.
        let mut bad = segment_header(3).to_vec();
        encode_end(&mut bad, &salt(&[1; 32], 3), base + SEGMENT_HEADER as u64);
        bad.resize(SIZE, 0);
        assert_eq!(payloads(&bad).1, End::Tail(base + SEGMENT_HEADER as u64));
    }
}
