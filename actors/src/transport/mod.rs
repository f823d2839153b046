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
//! A frame *leaves the process* here, so here it waits for durability
//! (`STORAGE.md`): each queued frame carries the journal position written
//! when it was queued — past every record it can depend on — and the
//! writer sends nothing before the store's journal is durable there. Hops
//! inside the process never wait; frames queued meanwhile go out together
//! with one write.
//!
//! Owns: connections, framing and their limits. Must not touch: frame
//! checks (the broker and the members verify what a link carries).

pub mod node;
pub mod uplink;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use switchboard_core::journal::Position;
use switchboard_core::store::Store;

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

/// Reads frames from `r` into `to` until the connection ends, each at most
/// `max` bytes (shared: the node's end raises it once the member logged in).
async fn read_frames(mut r: LinkRead, max: Arc<AtomicUsize>, to: Recipient<Wire>) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        loop {
            match codec::check(&buf, max.load(Ordering::Relaxed)) {
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

/// A frame queued for a link: its bytes, and the journal position it may
/// leave the process at.
pub(crate) type Outgoing = (Vec<u8>, Position);

/// The most bytes written to a connection at once.
const WRITE_CHUNK: usize = 256 * 1024;

/// Writes queued frames to `w` until the queue closes: what is queued
/// together goes out in one write, once `gate`'s journal is durable past
/// all of it. When the journal fails nothing more is sent.
async fn write_frames(mut w: LinkWrite, mut queue: mpsc::Receiver<Outgoing>, gate: Option<Store>) {
    while let Some((mut buf, mut upto)) = queue.recv().await {
        while buf.len() < WRITE_CHUNK {
            let Ok((b, p)) = queue.try_recv() else { break };
            buf.extend_from_slice(&b);
            upto = upto.max(p);
        }
        if let Some(store) = &gate {
            if let Err(e) = store.writer().durable_past(upto).await {
                tracing::error!(error = %e, "the journal is not durable; the link sends no more");
                return;
            }
        }
        if w.write_all(&buf).await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

/// Frames a link may hold unwritten (each end). The writer waits for the
/// journal before each write, so a group commit's worth of frames queues up
/// meanwhile: at 4 096 in flight a message's five frames filled a queue of
/// 4 096 within one commit and frames were dropped (the gateway's end) or
/// the link closed (the node's), and throughput fell to 500 msgs/s while
/// timeouts recovered them. A peer that reads nothing is still found: at
/// ≈ 300 B a frame this is ≈ 20 MB.
pub(crate) const LINK_QUEUE: usize = 65_536;

/// Starts the reader and writer of a connection for actor `ctx`; returns
/// the write queue. Frames wait for `gate`'s journal (none: they don't).
pub(crate) fn wire_up<A>(
    (r, w): (LinkRead, LinkWrite),
    max: Arc<AtomicUsize>,
    queue: usize,
    gate: Option<Store>,
    ctx: &mut Context<A>,
) -> mpsc::Sender<Outgoing>
where
    A: Actor<Context = Context<A>> + Handler<Wire>,
{
    let (tx, rx) = mpsc::channel(queue);
    let reader = read_frames(r, max, ctx.address().recipient());
    // The reader ends with the actor; the writer outlives it until the
    // queue is drained (a last `Refused` still reaches the peer), then
    // closes the connection.
    ctx.spawn(actix::fut::wrap_future::<_, A>(reader));
    tokio::task::spawn_local(write_frames(w, rx, gate));
    tx
}
