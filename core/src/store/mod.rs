//! The storage facade over sled: one tree per concern, writes batched by one
//! writer thread with group commit ([`write`](mod@write)), typed reads ([`read`]) and the
//! persisted record types ([`records`]). No actix here.
//!
//! Nothing outside this module touches sled, so a clustered store (NATS KV and
//! streams, see CLUSTER.md) can take its place behind the same calls.
//!
//! Owns: the trees, their keys and records, and the one writer. Must not
//! touch: what the records mean to their owners (each owner keeps its own
//! retention: dedupe keys 7 days, SMS records a day once final and 8 days
//! unreceipted, SMS reply mappings 30 days, sent email a day past the longest
//! message lifetime).

mod migrate;
pub mod read;
pub mod records;
pub mod write;

use std::path::Path;
use std::sync::Arc;

pub use records::{
    AccountingRecord, AttemptRecord, EventRecord, InboxEntry, OutboxEntry, TxnRecord, TxnStatus,
};
pub use write::{WriteBatch, WriteCounts, WriteHandle, WriteStats};

/// How long [`Store::open`] waits for another process to release the database.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The trees of a node's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tree {
    /// Client profiles (JSON), by user id.
    Profiles,
    /// API tokens: SHA-256 of the token → user id.
    Tokens,
    /// Members and their keys, by member id.
    Members,
    /// Transactions and their trail, by txn id.
    Txn,
    /// Content a gateway originated and has not yet been told the outcome of:
    /// `member \0 txn` → [`OutboxEntry`].
    Outbox,
    /// IM inboxes: `user \0 m seq` → [`InboxEntry`], and in the same tree
    /// (so one atomic batch writes both) `user \0 i txn` → seq, the index
    /// that dedupes by txn.
    Inbox,
    /// Accounting records: `at_ms ‖ txn` → [`AccountingRecord`].
    Accounting,
    /// Seen login nonces: `member \0 nonce` → ts.
    Replay,
    /// Node metadata: the broker key, the admin token hash.
    Meta,
    /// Delivery managers changed at run time: name → JSON (empty: removed).
    Managers,
    /// A gateway's idempotency keys (an HTTP `Idempotency-Key`, a fax
    /// spool file's name): `member \0 key` → txn. Kept 7 days (swept by the
    /// gateway hourly).
    Dedupe,
    /// The SMS gateway's correlation of what it submitted: `member \0 t
    /// txn` → its record (attempt, message ids, state), and `member \0 m
    /// message_id` → txn, the index receipts are read by. A final record is
    /// kept a day, one still waiting for receipts 8 days (swept hourly while
    /// bound).
    SmsRecords,
    /// Where a phone's reply goes: `member \0 number` → when (8 bytes,
    /// ms) ‖ the user who last messaged it. Kept 30 days after the last
    /// message to the number.
    SmsReplies,
    /// Mail the email gateway handed to its relay (so a repeated transmit
    /// is not sent twice): `member \0 txn` → when (ms). Kept a day past
    /// the longest message lifetime.
    SentEmail,
}

impl Tree {
    /// Every tree.
    pub const ALL: [Tree; 14] = [
        Tree::Profiles,
        Tree::Tokens,
        Tree::Members,
        Tree::Txn,
        Tree::Outbox,
        Tree::Inbox,
        Tree::Accounting,
        Tree::Replay,
        Tree::Meta,
        Tree::Managers,
        Tree::Dedupe,
        Tree::SmsRecords,
        Tree::SmsReplies,
        Tree::SentEmail,
    ];

    /// The tree's name in sled and in metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Tree::Profiles => "profiles",
            Tree::Tokens => "tokens",
            Tree::Members => "members",
            Tree::Txn => "txn",
            Tree::Outbox => "outbox",
            Tree::Inbox => "inbox",
            Tree::Accounting => "accounting",
            Tree::Replay => "replay",
            Tree::Meta => "meta",
            Tree::Managers => "managers",
            Tree::Dedupe => "dedupe",
            Tree::SmsRecords => "sms_records",
            Tree::SmsReplies => "sms_replies",
            Tree::SentEmail => "sent_email",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A storage failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// sled reported an error.
    #[error("storage: {0}")]
    Sled(String),
    /// A stored value could not be decoded.
    #[error("stored record is corrupt: {0}")]
    Corrupt(&'static str),
    /// The writer has stopped (the node is shutting down).
    #[error("storage is closed")]
    Closed,
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Sled(e.to_string())
    }
}

/// The node's database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    writer: WriteHandle,
    stats: Arc<WriteStats>,
    // Only tests inject failures; the writer holds its own handle.
    #[cfg_attr(not(test), allow(dead_code))]
    faults: Arc<write::Faults>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database in `dir`.
    ///
    /// # Errors
    /// When sled cannot open the directory (missing permissions, another
    /// process holds it).
    /// A database still locked by a previous instance that is exiting is
    /// waited for, up to [`LOCK_WAIT`].
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            let opened = sled::Config::new()
                .path(dir)
                .cache_capacity(256 * 1024 * 1024)
                .flush_every_ms(Some(1000))
                .mode(sled::Mode::HighThroughput)
                .open();
            match opened {
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => break other?,
            }
        };
        let trees = Tree::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<Result<Vec<_>, _>>()?;
        migrate::legacy_sent(&db, &trees)?;
        let stats = Arc::new(WriteStats::default());
        let faults = Arc::new(write::Faults::default());
        let writer = write::spawn(db.clone(), trees.clone(), stats.clone(), faults.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                trees,
                writer,
                stats,
                faults,
            }),
        })
    }

    pub(crate) fn tree(&self, t: Tree) -> &sled::Tree {
        &self.inner.trees[t.index()]
    }

    /// The writer (group commit).
    pub fn writer(&self) -> &WriteHandle {
        &self.inner.writer
    }

    /// The writer's injected failures (tests).
    #[cfg(test)]
    pub(crate) fn faults(&self) -> &write::Faults {
        &self.inner.faults
    }

    /// What the writer has applied since the store opened.
    pub fn write_counts(&self) -> WriteCounts {
        self.inner.stats.read()
    }

    /// A fresh, monotonically increasing id (inbox cursors).
    ///
    /// # Errors
    /// When sled fails.
    pub fn next_id(&self) -> Result<u64, StoreError> {
        Ok(self.inner.db.generate_id()?)
    }

    /// Flushes everything written so far to disk (blocking).
    ///
    /// # Errors
    /// When sled fails.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.inner.db.flush()?;
        Ok(())
    }

    /// Whether the database answers (readiness).
    pub fn healthy(&self) -> bool {
        self.inner.db.was_recovered() || self.inner.db.size_on_disk().is_ok()
    }
}
