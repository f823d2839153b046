//! A WebSocket session's outgoing queue, bounded in bytes: what the hub,
//! the receipts and the session itself push for the client waits here until
//! the socket takes it. A client that does not read fills it; then nothing
//! more is queued, the session is told to close (1013), and the messages it
//! did not get stay unread in the inbox for its next connection — a slow
//! reader costs the node at most [`SESSION_QUEUE_BYTES`].
//!
//! Owns: the bytes queued per session. Must not touch: what the frames are.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

/// The most bytes a session may have queued for its client.
pub const SESSION_QUEUE_BYTES: usize = 4 * 1024 * 1024;

struct Shared {
    queued: AtomicUsize,
    limit: usize,
    over: AtomicBool,
    told: Notify,
}

/// Where a session's frames are pushed (cloned by whoever pushes).
#[derive(Clone)]
pub struct Outbound {
    tx: mpsc::UnboundedSender<String>,
    shared: Arc<Shared>,
}

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum NotQueued {
    /// The session is gone.
    Closed,
    /// The client is not reading: the session closes.
    Full,
}

impl Outbound {
    /// Queues `text`, unless the session is gone or its queue full (which
    /// tells the session to close).
    ///
    /// # Errors
    /// [`NotQueued`].
    pub fn send(&self, text: String) -> Result<(), NotQueued> {
        let s = &self.shared;
        if s.over.load(Ordering::Relaxed) {
            return Err(NotQueued::Full);
        }
        let len = text.len();
        if s.queued.fetch_add(len, Ordering::Relaxed) + len > s.limit {
            s.queued.fetch_sub(len, Ordering::Relaxed);
            s.over.store(true, Ordering::Relaxed);
            s.told.notify_one();
            return Err(NotQueued::Full);
        }
        self.tx.send(text).map_err(|_| {
            s.queued.fetch_sub(len, Ordering::Relaxed);
            NotQueued::Closed
        })
    }

    /// Bytes queued now.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// The queue's limit.
    pub fn limit(&self) -> usize {
        self.shared.limit
    }
}

/// The session's end of its queue.
pub struct Inbound {
    rx: mpsc::UnboundedReceiver<String>,
    shared: Arc<Shared>,
}

impl Inbound {
    /// The next frame; `None` once every [`Outbound`] is gone.
    pub async fn recv(&mut self) -> Option<String> {
        let t = self.rx.recv().await?;
        self.taken(&t);
        Some(t)
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Option<String> {
        let t = self.rx.try_recv().ok()?;
        self.taken(&t);
        Some(t)
    }

    fn taken(&self, t: &str) {
        self.shared.queued.fetch_sub(t.len(), Ordering::Relaxed);
    }

    /// What tells when the queue overflowed.
    pub fn watch(&self) -> Overflow {
        Overflow(self.shared.clone())
    }
}

/// Tells when a session's queue overflowed ([`Inbound::watch`]).
pub struct Overflow(Arc<Shared>);

impl Overflow {
    /// Resolves once the queue overflowed (the client does not read).
    pub async fn happened(&self) {
        loop {
            let told = self.0.told.notified();
            if self.0.over.load(Ordering::Relaxed) {
                return;
            }
            told.await;
        }
    }
}

/// A session's queue of at most `limit` bytes.
pub fn channel(limit: usize) -> (Outbound, Inbound) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        queued: AtomicUsize::new(0),
        limit,
        over: AtomicBool::new(false),
        told: Notify::new(),
    });
    (
        Outbound {
            tx,
            shared: shared.clone(),
        },
        Inbound { rx, shared },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn a_queue_takes_up_to_its_bytes_then_says_full_once_and_for_all() {
        let (tx, mut rx) = channel(10);
        tx.send("12345".into()).unwrap();
        tx.send("6789".into()).unwrap();
        assert_eq!(tx.queued(), 9);
        assert_eq!(rx.recv().await.as_deref(), Some("12345"));
        assert_eq!(tx.queued(), 4);
        tx.send("abcdef".into()).unwrap();
        assert_eq!(tx.send("x".into()), Err(NotQueued::Full));
        rx.watch().happened().await;
        // Once full, full: the session closes; nothing more is queued.
        assert_eq!(rx.recv().await.as_deref(), Some("6789"));
        assert_eq!(tx.send("y".into()), Err(NotQueued::Full));
        drop(rx);
        let (tx, rx) = channel(10);
        drop(rx);
        assert_eq!(tx.send("z".into()), Err(NotQueued::Closed));
        assert_eq!(tx.queued(), 0);
    }
}
