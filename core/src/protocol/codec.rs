//! The one wire codec: bincode 2 (serde, standard configuration) behind three
//! functions, and the length-prefixed framing of MIAP over TCP (u32
//! big-endian length, then the encoded [`Frame`]). Decoding is two-phase:
//! [`check`] says whether a whole frame is buffered, [`parse`] decodes it.
//!
//! `enc(x)` in MIAP.md is [`encode`]: deterministic, so a MAC over it is
//! reproducible by every party.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ProtocolError;
use super::frames::Frame;

/// Default maximum frame size (16 MiB).
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// The canonical encoding of `value`.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain data structures into a Vec cannot fail.
    bincode::serde::encode_to_vec(value, config()).expect("encoding to a Vec cannot fail")
}

/// Decodes `bytes` allowing at most `LIMIT` bytes of strings and byte
/// buffers (what bincode allocates for before reading them).
fn decode_within<T: DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(bytes, config().with_limit::<LIMIT>())
}

/// Decodes a whole value; trailing bytes are an error. Never panics and
/// never allocates much more than `bytes` holds: a string or byte buffer
/// announcing more than the next size tier above the input's length
/// (its encoding holds its bytes, so a real one never does) is refused
/// before anything is allocated for it.
///
/// # Errors
/// [`ProtocolError::Malformed`] when the bytes are not exactly one `T`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProtocolError> {
    const KIB: usize = 1024;
    let decoded = match bytes.len() {
        0..=4096 => decode_within::<T, { 4 * KIB }>(bytes),
        4097..=65_536 => decode_within::<T, { 64 * KIB }>(bytes),
        65_537..=1_048_576 => decode_within::<T, { KIB * KIB }>(bytes),
        1_048_577..=16_777_216 => decode_within::<T, { 16 * KIB * KIB }>(bytes),
        16_777_217..=268_435_456 => decode_within::<T, { 256 * KIB * KIB }>(bytes),
        _ => decode_within::<T, { isize::MAX as usize }>(bytes),
    };
    let (v, used) = decoded.map_err(|_| ProtocolError::Malformed)?;
    if used != bytes.len() {
        return Err(ProtocolError::Malformed);
    }
    Ok(v)
}

/// What [`check`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// More bytes are needed.
    Incomplete,
    /// A whole frame of this many bytes (prefix included) is buffered.
    Complete(usize),
}

/// Phase one of decoding: is a whole frame buffered?
///
/// # Errors
/// [`ProtocolError::FrameTooLarge`] when the announced length exceeds `max`.
pub fn check(buf: &[u8], max: usize) -> Result<Check, ProtocolError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(Check::Incomplete);
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len > max {
        return Err(ProtocolError::FrameTooLarge);
    }
    if buf.len() < 4 + len {
        return Ok(Check::Incomplete);
    }
    Ok(Check::Complete(4 + len))
}

/// Phase two: decodes the frame whose length [`check`] returned.
///
/// # Errors
/// [`ProtocolError::Malformed`] when the body is not a frame.
pub fn parse(buf: &[u8], len: usize) -> Result<Frame, ProtocolError> {
    decode(&buf[4..len])
}

/// A frame with its length prefix, ready for the wire.
///
/// # Errors
/// [`ProtocolError::FrameTooLarge`] when the frame exceeds `max`.
pub fn frame_bytes(frame: &Frame, max: usize) -> Result<Vec<u8>, ProtocolError> {
    let body = encode(frame);
    if body.len() > max {
        return Err(ProtocolError::FrameTooLarge);
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frames::TransmitAck;
    use crate::protocol::ids::TxnId;

    fn sample() -> Frame {
        Frame::TransmitAck(TransmitAck {
            txn: TxnId([3; 16]),
            attempt: 2,
        })
    }

    /// Frames a hostile peer can send before logging in: every variant,
    /// then plausible bytes with one maximal length (a varint of `width`
    /// `0xff` bytes after its marker) at each position. Decoding refuses
    /// or decodes; it never panics nor allocates what was announced.
    #[test]
    fn a_maximal_length_anywhere_is_refused_never_a_panic() {
        let mut cases = 0;
        for variant in 0u8..40 {
            for (marker, width) in [(253u8, 8usize), (252, 4), (251, 2)] {
                for at in 1..24 {
                    for fill in [0x00u8, 0x01, 0x20] {
                        let mut body = vec![fill; 34];
                        body[0] = variant;
                        body[at] = marker;
                        for b in &mut body[at + 1..at + 1 + width] {
                            *b = 0xff;
                        }
                        let r = std::panic::catch_unwind(|| decode::<Frame>(&body).is_ok());
                        assert!(r.is_ok(), "panicked on {body:02x?}");
                        cases += 1;
                    }
                }
            }
        }
        assert!(cases > 8000);
    }

    #[test]
    fn round_trip_and_exact_bytes() {
        let bytes = frame_bytes(&sample(), DEFAULT_MAX_FRAME).unwrap();
        // Variant index 8 (TransmitAck), 16 txn bytes, attempt 2 as varint.
        let mut expected = vec![0, 0, 0, 18, 8];
        expected.extend_from_slice(&[3; 16]);
        expected.push(2);
        assert_eq!(bytes, expected);
        assert_eq!(check(&bytes, 1024), Ok(Check::Complete(bytes.len())));
        assert_eq!(parse(&bytes, bytes.len()), Ok(sample()));
    }

    #[test]
    fn incomplete_is_a_variant_not_an_error() {
        let bytes = frame_bytes(&sample(), DEFAULT_MAX_FRAME).unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(
                check(&bytes[..cut], 1024),
                Ok(Check::Incomplete),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn oversized_and_garbage_are_refused() {
        assert_eq!(
            check(&[0xff, 0xff, 0xff, 0xff], 1024),
            Err(ProtocolError::FrameTooLarge)
        );
        let garbage = [0, 0, 0, 3, 200, 1, 2];
        assert_eq!(check(&garbage, 1024), Ok(Check::Complete(7)));
        assert_eq!(parse(&garbage, 7), Err(ProtocolError::Malformed));
        let mut trailing = frame_bytes(&sample(), 1024).unwrap();
        trailing.push(0);
        trailing[3] += 1;
        assert_eq!(
            parse(&trailing, trailing.len()),
            Err(ProtocolError::Malformed)
        );
        assert_eq!(frame_bytes(&sample(), 4), Err(ProtocolError::FrameTooLarge));
    }
}
