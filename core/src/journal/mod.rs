//! The journal (`STORAGE.md`): every durable fact of the message path is an
//! append to one log per node. One writer thread takes what was appended
//! since its last round, writes it, makes it durable with a real
//! `fdatasync`, then advances the *durable position*; whoever must not
//! answer before a fact is durable waits for the position to pass it
//! ([`Journal::watch`], [`wait_durable`]), and nobody else waits at all.
//! Recovery replays from a position and stops at the first frame whose
//! checksum fails, so what survives a crash is always a prefix.
//!
//! The seam is [`Journal`]; [`file::FileJournal`] (segment files beside the
//! sled database, a CRC per frame) is the one the node uses, and
//! [`sled_log::SledJournal`] (one sled record per append, the database file
//! `fdatasync`'d after sled's flush) is kept to measure against
//! (`cargo bench --bench broker -- journal/`; `docs/STORAGE.md` has the
//! numbers and the reasons). In a cluster the node's journal is
//! [`jetstream::JetStreamJournal`], its subject of a replicated stream.
//!
//! Owns: the log's bytes, its durability and recovery. Must not touch: what
//! the records mean (the callers encode and replay them).

pub mod file;
pub mod frame;
pub mod jetstream;
pub mod sled_log;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

/// A position in the journal: every append ends at a higher one.
pub type Position = u64;

/// A journal failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    /// Reading or writing failed; the journal takes no more appends.
    #[error("journal i/o: {0}")]
    Io(String),
    /// One append is larger than a segment can hold.
    #[error("an append of {len} bytes is larger than the journal's {max}")]
    TooLarge {
        /// The append's size.
        len: usize,
        /// The largest append.
        max: usize,
    },
    /// The journal is closed (the node is shutting down).
    #[error("the journal is closed")]
    Closed,
}

impl From<std::io::Error> for JournalError {
    fn from(e: std::io::Error) -> Self {
        JournalError::Io(e.to_string())
    }
}

/// An append-only, group-committed log.
pub trait Journal: Send + Sync {
    /// Queues `batch` as one frame (applied whole or not at all) and returns
    /// the position after it: once [`Journal::durable`] is at or past it,
    /// the batch survives a power cut. Never blocks on the disk.
    ///
    /// # Errors
    /// [`JournalError::TooLarge`], [`JournalError::Closed`], or an earlier
    /// write failure.
    fn append(&self, batch: &[u8]) -> Result<Position, JournalError>;

    /// Everything before this position is durable.
    fn durable(&self) -> Position;

    /// The durable position, told at every advance (and once more when the
    /// journal fails or closes, so waiters wake up).
    fn watch(&self) -> watch::Receiver<Position>;

    /// Whether the journal failed or closed (the durable position will not
    /// advance again).
    fn failed(&self) -> Option<JournalError>;

    /// Calls `each(end, batch)` for every batch that starts at or after
    /// `from`, in order, and returns the position after the last.
    ///
    /// # Errors
    /// When reading fails.
    fn replay(
        &self,
        from: Position,
        each: &mut dyn FnMut(Position, &[u8]),
    ) -> Result<Position, JournalError>;

    /// Lets go of what lies before `pos` (a checkpoint covers it): its space
    /// is reused. Appends and replays from `pos` on are unaffected.
    ///
    /// # Errors
    /// When the files cannot be moved.
    fn truncate_before(&self, pos: Position) -> Result<(), JournalError>;

    /// Takes no more appends, makes durable what it holds (while it can)
    /// and wakes every waiter.
    fn close(&self);

    /// How long the oldest write not yet durable has waited, when the
    /// journal depends on others to make it durable (a cluster's quorum);
    /// `None` when nothing waits or the journal is local.
    fn stalled(&self) -> Option<std::time::Duration> {
        None
    }
}

/// Waits until `journal`'s durable position is at or past `pos`.
///
/// # Errors
/// The journal's failure, when it fails or closes first.
pub async fn wait_durable(journal: &dyn Journal, pos: Position) -> Result<(), JournalError> {
    let mut rx = journal.watch();
    loop {
        if *rx.borrow_and_update() >= pos {
            return Ok(());
        }
        if let Some(e) = journal.failed() {
            return Err(e);
        }
        if rx.changed().await.is_err() {
            return Err(journal.failed().unwrap_or(JournalError::Closed));
        }
    }
}

/// A lock, also when a holder panicked (what it guards stays consistent:
/// every holder leaves it whole).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What every journal keeps of its durability: the durable position and
/// its watchers, a failure, whether it is closed.
#[derive(Debug)]
pub(crate) struct Durability {
    durable: AtomicU64,
    tx: watch::Sender<Position>,
    failed: Mutex<Option<JournalError>>,
    closed: AtomicBool,
}

impl Durability {
    /// Durable up to `at` (what recovery found).
    pub(crate) fn new(at: Position) -> Self {
        Self {
            durable: AtomicU64::new(at),
            tx: watch::channel(at).0,
            failed: Mutex::new(None),
            closed: AtomicBool::new(false),
        }
    }

    /// Everything before `end` is durable now.
    pub(crate) fn publish(&self, end: Position) {
        self.durable.store(end, Ordering::Release);
        self.tx.send_replace(end);
    }

    /// The journal failed: no more appends, and waiters wake.
    pub(crate) fn fail(&self, e: JournalError) {
        tracing::error!(error = %e, "the journal failed; nothing more is acknowledged");
        *lock(&self.failed) = Some(e);
        self.tx.send_modify(|_| {});
    }

    /// No more appends; waiters wake (after the writer's last round).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Wakes the waiters (after closing).
    pub(crate) fn wake(&self) {
        self.tx.send_modify(|_| {});
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Why an append is refused now, if it is.
    pub(crate) fn refusal(&self) -> Option<JournalError> {
        if self.is_closed() {
            return Some(JournalError::Closed);
        }
        lock(&self.failed).clone()
    }

    pub(crate) fn durable(&self) -> Position {
        self.durable.load(Ordering::Acquire)
    }

    pub(crate) fn watch(&self) -> watch::Receiver<Position> {
        self.tx.subscribe()
    }

    /// The failure, or closed.
    pub(crate) fn failed(&self) -> Option<JournalError> {
        lock(&self.failed)
            .clone()
            .or_else(|| self.is_closed().then_some(JournalError::Closed))
    }
}
