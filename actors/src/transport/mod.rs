//! The TCP transport: MIAP over TCP, one link actor per connection, on
//! both ends ([`node`] on the node, [`uplink`] in a member's process).
//!
//! The wire is `docs/INTERFACES.md`'s framing — a u32 big-endian length,
//! then the bincode encoding of one [`Frame`] — with nothing around it: a
//! frame's addressee follows from the frame. On the node, a [`NodeLink`]
//! stands for the remote member: what it reads goes to the broker, except a
//! `Transmit` (to the next hop of its route) and a `TransmitAck` (to the
//! member whose `Transmit` it acknowledges); what the node sends the member
//! it writes. It is registered as the member only once the broker accepted
//! the member's `Login` on it ([`crate::bus::LinkLogin`]), so a connection that proves
//! nothing can never take over a member's frames. In the member's process,
//! an [`Uplink`] stands for the node: it is the broker (and every other
//! member) for the local gateway, and reconnects with back-off.
//!
//! Bad input on a link — garbage, an oversized frame, anything before a
//! login, a second member on one connection — is refused with the reason
//! (`Refused`), counted with the broker's refusals and logged; ten bad
//! frames, an oversized one, no login within the login timeout, or silence
//! past the idle timeout close the connection. Unauthenticated connections
//! are bounded per peer address.
//!
//! A [`Wrap`] given by the product shell turns each TCP connection into
//! something else before any frame — TLS on the node's listener and on the
//! member's uplink; a connection whose wrap fails (or takes longer than the
//! login timeout) is closed and counted as malformed.
//!
//! Owns: connections, framing and their limits. Must not touch: frame
//! checks (the broker and the members verify what a link carries).

pub mod node;
pub mod uplink;

use std::sync::Arc;

use actix::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use switchboard_core::protocol::codec::{self, Check};
use switchboard_core::protocol::{Frame, ProtocolError};

pub use node::{serve, LinkDeps, LinkLimits, Links, NodeLink};
pub use uplink::{Uplink, UplinkConfig, PEER};

/// The read half of a link's connection (plain TCP or wrapped).
pub type LinkRead = Box<dyn AsyncRead + Unpin>;

/// The write half of a link's connection.
pub type LinkWrite = Box<dyn AsyncWrite + Unpin>;

/// Turns a fresh TCP connection into a link's halves (a TLS handshake, as
/// server or client).
pub type Wrap = Arc<
    dyn Fn(
            TcpStream,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = std::io::Result<(LinkRead, LinkWrite)>>>,
        > + Send
        + Sync,
>;

/// A plain TCP connection's halves.
pub(crate) fn plain(stream: TcpStream) -> (LinkRead, LinkWrite) {
    let (r, w) = stream.into_split();
    (Box::new(r), Box::new(w))
}

/// One frame, or what went wrong, off the wire.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) enum Wire {
    Frame(Box<Frame>),
    Bad(ProtocolError),
    Closed(String),
}

/// Reads frames from `r` into `to` until the connection ends.
async fn read_frames(mut r: LinkRead, max: usize, to: Recipient<Wire>) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        loop {
            match codec::check(&buf, max) {
                Ok(Check::Complete(n)) => {
                    let parsed = codec::parse(&buf, n);
                    buf.drain(..n);
                    to.do_send(match parsed {
                        Ok(f) => Wire::Frame(Box::new(f)),
                        Err(e) => Wire::Bad(e),
                    });
                }
                Ok(Check::Incomplete) => break,
                Err(e) => {
                    // The stream cannot be trusted past an oversized length.
                    to.do_send(Wire::Bad(e));
                    to.do_send(Wire::Closed("oversized frame".into()));
                    return;
                }
            }
        }
        match r.read(&mut chunk).await {
            Ok(0) => {
                to.do_send(Wire::Closed("closed by the peer".into()));
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => {
                to.do_send(Wire::Closed(format!("read failed: {e}")));
                return;
            }
        }
    }
}

/// Writes queued frames to `w` until the queue closes.
async fn write_frames(mut w: LinkWrite, mut queue: mpsc::Receiver<Vec<u8>>) {
    while let Some(bytes) = queue.recv().await {
        if w.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

/// Starts the reader and writer of a connection for actor `ctx`; returns
/// the write queue.
pub(crate) fn wire_up<A>(
    (r, w): (LinkRead, LinkWrite),
    max: usize,
    queue: usize,
    ctx: &mut Context<A>,
) -> mpsc::Sender<Vec<u8>>
where
    A: Actor<Context = Context<A>> + Handler<Wire>,
{
    let (tx, rx) = mpsc::channel(queue);
    let reader = read_frames(r, max, ctx.address().recipient());
    // The reader ends with the actor; the writer outlives it until the
    // queue is drained (a last `Refused` still reaches the peer), then
    // closes the connection.
    ctx.spawn(actix::fut::wrap_future::<_, A>(reader));
    tokio::task::spawn_local(write_frames(w, rx));
    tx
}
