//! The WebSocket frame guard: reads each client frame's header as its bytes
//! arrive and ends the connection's input as soon as one declares more than
//! the limit — before its payload is buffered. (The WebSocket codec checks
//! a frame's length only once its whole payload is in: a client declaring a
//! 2^62-byte frame could make the node buffer whatever it streamed.) The
//! limit is shared, so a session raises it once it is authenticated.
//!
//! Owns: frame boundaries as bytes pass. Must not touch: the frames'
//! meaning (the codec's).

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::Stream;

/// Where the guard is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// In a frame header: `have` of its bytes so far.
    Header { have: usize },
    /// In a payload: this many bytes of it left.
    Payload { left: u64 },
}

/// Follows frame headers through a client's bytes (RFC 6455 5.2).
#[derive(Debug)]
pub struct Frames {
    at: At,
    header: [u8; 14],
}

impl Default for Frames {
    fn default() -> Self {
        Self {
            at: At::Header { have: 0 },
            header: [0; 14],
        }
    }
}

impl Frames {
    /// The header's length, once its first two bytes are in.
    fn header_len(&self) -> usize {
        let ext = match self.header[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        2 + ext + mask
    }

    /// The payload length a complete header declares.
    fn declared(&self) -> u64 {
        match self.header[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            127 => u64::from_be_bytes(self.header[2..10].try_into().unwrap_or([0xff; 8])),
            n => u64::from(n),
        }
    }

    /// Takes `bytes`; `Err` with the declared length of the first frame
    /// over `limit`.
    pub fn feed(&mut self, mut bytes: &[u8], limit: usize) -> Result<(), u64> {
        while !bytes.is_empty() {
            match self.at {
                At::Payload { left } => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = &bytes[n..];
                    let left = left - n as u64;
                    self.at = if left == 0 {
                        At::Header { have: 0 }
                    } else {
                        At::Payload { left }
                    };
                }
                At::Header { mut have } => {
                    self.header[have] = bytes[0];
                    bytes = &bytes[1..];
                    have += 1;
                    if have < 2 || have < self.header_len() {
                        self.at = At::Header { have };
                        continue;
                    }
                    let len = self.declared();
                    if len > limit as u64 {
                        return Err(len);
                    }
                    self.at = if len == 0 {
                        At::Header { have: 0 }
                    } else {
                        At::Payload { left: len }
                    };
                }
            }
        }
        Ok(())
    }
}

/// A client's byte stream, ended with [`PayloadError::Overflow`] at the
/// header of a frame over the shared limit.
pub struct Guarded<S> {
    inner: S,
    frames: Frames,
    limit: Arc<AtomicUsize>,
    over: bool,
}

impl<S> Guarded<S> {
    /// `inner`, its frames held to `limit` bytes each.
    pub fn new(inner: S, limit: Arc<AtomicUsize>) -> Self {
        Self {
            inner,
            frames: Frames::default(),
            limit,
            over: false,
        }
    }
}

impl<S> Stream for Guarded<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.over {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                let limit = self.limit.load(Ordering::Relaxed);
                match self.frames.feed(&bytes, limit) {
                    Ok(()) => Poll::Ready(Some(Ok(bytes))),
                    Err(declared) => {
                        tracing::info!(
                            declared,
                            limit,
                            "a WebSocket client declared a frame over the limit"
                        );
                        self.over = true;
                        Poll::Ready(Some(Err(PayloadError::Overflow)))
                    }
                }
            }
            other => other,
        }
    }
}

/// Whether a stream error is the guard's (a frame over the limit).
pub fn is_overflow(e: &actix_ws::ProtocolError) -> bool {
    match e {
        actix_ws::ProtocolError::Overflow => true,
        actix_ws::ProtocolError::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<PayloadError>())
            .is_some_and(|p| matches!(p, PayloadError::Overflow)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame header declaring `len` bytes.
    fn header(len: u64) -> Vec<u8> {
        let mut h = vec![0x81];
        match len {
            0..=125 => h.push(0x80 | len as u8),
            126..=65_535 => {
                h.push(0x80 | 126);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend_from_slice(&len.to_be_bytes());
            }
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    #[test]
    fn frames_within_the_limit_pass_in_any_chunking_and_one_over_it_stops_at_its_header() {
        let mut stream = Vec::new();
        for len in [0u64, 5, 125, 126, 300, 65_535, 70_000] {
            stream.extend(header(len));
            stream.extend(std::iter::repeat_n(7u8, len as usize));
        }
        for chunk in [1, 2, 3, 7, 1000, stream.len()] {
            let mut f = Frames::default();
            for c in stream.chunks(chunk) {
                f.feed(c, 70_000).unwrap();
            }
            assert_eq!(f.at, At::Header { have: 0 }, "chunks of {chunk}");
        }
        // Declared over the limit: refused at the header, whatever follows.
        let mut f = Frames::default();
        f.feed(&header(5), 70_000).unwrap();
        f.feed(&[0; 5], 70_000).unwrap();
        assert_eq!(f.feed(&header(1 << 62), 70_000), Err(1 << 62));
        let mut f = Frames::default();
        let h = header(70_001);
        f.feed(&h[..3], 70_000).unwrap();
        assert_eq!(f.feed(&h[3..], 70_000), Err(70_001));
    }
}
