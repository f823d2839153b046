//! The storage facade: one tree per concern. A write is one append to the
//! node's journal, group-committed with a real `fdatasync`, and visible at
//! once through an overlay ([`write`](mod@write)); sled is the store of
//! record, written by the checkpointer off the critical path
//! ([`checkpoint`]); reads look at the overlay, then sled ([`read`]); the
//! persisted record types are in [`records`]. No actix here.
//!
//! Nothing outside this module touches sled or the journal's files, so a
//! clustered store (NATS KV and streams, see CLUSTER.md) can take its place
//! behind the same calls.
//!
//! Owns: the trees, their keys and records, and the one writer. Must not
//! touch: what the records mean to their owners (each owner keeps its own
//! retention: dedupe keys 7 days, SMS records a day once final and 8 days
//! unreceipted, SMS reply mappings 30 days, sent email a day past the longest
//! message lifetime).

pub mod checkpoint;
#[cfg(test)]
mod cluster_tests;
mod migrate;
mod overlay;
#[cfg(test)]
mod power_cut;
pub mod read;
pub mod records;
mod replica;
pub mod takeover;
pub mod write;

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::cluster::Engine;
use crate::journal::file::FileJournal;
use crate::journal::jetstream::JetStreamJournal;
use crate::journal::{self, Journal, JournalError, Position};

pub use records::{
    AccountingRecord, AttemptRecord, EventRecord, InboxEntry, OutboxEntry, TxnRecord, TxnStatus,
};
pub use replica::{Listener, RemoteChange};
pub use write::{WriteBatch, WriteCounts, WriteHandle, WriteStats};

/// How long [`Store::open`] waits for another process to release the database.
pub use crate::journal::sled_log::LOCK_WAIT;

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
    /// Enterprise policy (JSON): `d \0 domain` → a domain's settings,
    /// `g \0 name` → a group, `r \0 id` → a rule with its version.
    Policy,
}

impl Tree {
    /// Every tree.
    pub const ALL: [Tree; 15] = [
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
        Tree::Policy,
    ];

    /// Every tree's name (the cluster's store-of-record buckets, one each).
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|t| t.name()).collect()
    }

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
            Tree::Policy => "policy",
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
    /// The journal failed: nothing more is acknowledged.
    #[error("journal: {0}")]
    Journal(String),
    /// The writer has stopped (the node is shutting down).
    #[error("storage is closed")]
    Closed,
    /// The cluster's store of record (JetStream KV) failed or did not
    /// answer.
    #[error("cluster store: {0}")]
    Cluster(String),
}

impl From<JournalError> for StoreError {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Closed => StoreError::Closed,
            e => StoreError::Journal(e.to_string()),
        }
    }
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Sled(e.to_string())
    }
}

/// Ids one journal record reserves ([`Store::next_id`]).
const ID_BLOCK: u64 = 1 << 20;

/// Where the end of the last reserved id block is, in [`Tree::Meta`].
const ID_KEY: &[u8] = b"ids.reserved";

/// The id allocator of [`Store::next_id`].
#[derive(Debug, Default)]
struct Ids {
    next: AtomicU64,
    reserved: AtomicU64,
    reserving: Mutex<()>,
}

/// The default journal segment size (16 MiB): a segment is prepared
/// (zero-filled) ahead of its use and recycled once a checkpoint covers it.
pub const DEFAULT_SEGMENT: u64 = 16 * 1024 * 1024;

/// How long a clustered journal's round may wait for JetStream before the
/// store counts as unavailable (a leader election takes one to a few
/// seconds).
pub const STALLED: std::time::Duration = std::time::Duration::from_secs(2);

/// The node's database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    writer: WriteHandle,
    // Dropped last: runs the last checkpoint and closes the journal.
    _checkpointer: checkpoint::Checkpointer,
}

/// What the writer, the readers and the checkpointer share.
pub(crate) struct Shared {
    dir: PathBuf,
    db: sled::Db,
    trees: Vec<sled::Tree>,
    journal: Box<dyn Journal>,
    /// In a cluster: the store of record's buckets (sled is then a cache).
    replica: Option<std::sync::Arc<replica::Replica>>,
    overlay: RwLock<overlay::Overlay>,
    /// The journal position after the last append.
    appended: AtomicU64,
    stats: WriteStats,
    faults: write::Faults,
    checkpoints: checkpoint::Signal,
    /// Held for a checkpoint round.
    round: Mutex<()>,
    /// The cut of the frozen generation (a failed round retries it).
    frozen_cut: Mutex<Position>,
    /// Blob files already `fdatasync`'d.
    synced_blobs: Mutex<HashSet<OsString>>,
    ids: Ids,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database in `dir`, its journal in
    /// `dir/journal` with [`DEFAULT_SEGMENT`]s, and replays what the last
    /// checkpoint did not cover.
    ///
    /// # Errors
    /// When sled cannot open the directory (missing permissions, another
    /// process holds it), or the journal cannot be read or replayed.
    /// A database still locked by a previous instance that is exiting is
    /// waited for, up to [`LOCK_WAIT`].
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, DEFAULT_SEGMENT)
    }

    /// [`Store::open`] with journal segments of `segment` bytes (a power of
    /// two, at least 4 KiB).
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with(dir: &Path, segment: u64) -> Result<Self, StoreError> {
        // sled holds its directory's lock once open: no other process has
        // the journal then.
        Self::open_on(
            dir,
            |_| Ok(Box::new(FileJournal::open(&dir.join("journal"), segment)?)),
            None,
        )
    }

    /// Opens a cluster node's store: `dir` is its local cache (sled), the
    /// journal is its subject of the cluster's journal stream, the store of
    /// record the cluster's buckets, which are watched into the cache
    /// (caught up before this returns) and put by every checkpoint round.
    /// The streams and buckets must exist ([`crate::cluster::init::ensure`]).
    ///
    /// # Errors
    /// As [`Store::open`], and when JetStream does not answer.
    pub fn open_clustered(dir: &Path, engine: &Engine) -> Result<Self, StoreError> {
        Self::open_on(
            dir,
            |db| {
                takeover::own_journal(
                    engine,
                    || crate::protocol::clock::Clock::now_ms(&crate::protocol::clock::SystemClock),
                    || takeover::wipe(db),
                )?;
                Ok(Box::new(JetStreamJournal::open(engine)?))
            },
            Some(std::sync::Arc::new(replica::Replica::new(engine))),
        )
    }

    fn open_on(
        dir: &Path,
        journal: impl FnOnce(&sled::Db) -> Result<Box<dyn Journal>, StoreError>,
        replica: Option<std::sync::Arc<replica::Replica>>,
    ) -> Result<Self, StoreError> {
        let db = crate::journal::sled_log::open_waiting(
            &sled::Config::new()
                .path(dir)
                .cache_capacity(256 * 1024 * 1024)
                .flush_every_ms(Some(1000))
                .mode(sled::Mode::HighThroughput),
            LOCK_WAIT,
        )?;
        let trees = Tree::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<Result<Vec<_>, _>>()?;
        migrate::legacy_sent(&db, &trees)?;
        let journal = journal(&db)?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            db,
            trees,
            journal,
            replica: replica.clone(),
            overlay: RwLock::new(overlay::Overlay::default()),
            appended: AtomicU64::new(0),
            stats: WriteStats::default(),
            faults: write::Faults::default(),
            checkpoints: checkpoint::Signal::default(),
            round: Mutex::new(()),
            frozen_cut: Mutex::new(0),
            synced_blobs: Mutex::new(HashSet::new()),
            ids: Ids::default(),
        });
        if let Some(r) = &replica {
            // What the other nodes wrote first: a replayed merge resolves
            // against the record's latest value.
            r.watch(&shared)?;
        }
        checkpoint::recover(&shared)?;
        // Past every id a recovered record can hold: the last block
        // reserved, and what sled's own generator handed out before the
        // journal existed. In a cluster, blocks are the cluster's.
        let (start, reserved) = match &replica {
            Some(r) => {
                let start = r.reserve_ids(ID_BLOCK)?;
                (start, start + ID_BLOCK)
            }
            None => {
                let reserved = checkpoint::meta_u64(&shared, ID_KEY)?;
                let start = reserved.max(shared.db.generate_id()?.saturating_add(1));
                (start, start)
            }
        };
        shared.ids.next.store(start, Ordering::SeqCst);
        shared.ids.reserved.store(reserved, Ordering::SeqCst);
        Ok(Self {
            inner: Arc::new(Inner {
                writer: WriteHandle {
                    shared: shared.clone(),
                },
                _checkpointer: checkpoint::Checkpointer::spawn(shared.clone()),
                shared,
            }),
        })
    }

    pub(crate) fn tree(&self, t: Tree) -> &sled::Tree {
        &self.inner.shared.trees[t.index()]
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The writer (group commit).
    pub fn writer(&self) -> &WriteHandle {
        &self.inner.writer
    }

    /// The writer's injected failures (tests).
    #[cfg(test)]
    pub(crate) fn faults(&self) -> &write::Faults {
        &self.inner.shared.faults
    }

    /// What the writer has applied since the store opened.
    pub fn write_counts(&self) -> WriteCounts {
        self.inner.shared.stats.read()
    }

    /// A fresh, monotonically increasing id (inbox cursors), unique across
    /// restarts and crashes: ids are handed out from blocks whose end is
    /// written to the journal before the block's first id is, so a record
    /// that holds an id is never recovered without its block.
    ///
    /// # Errors
    /// When the journal refuses the block's record.
    pub fn next_id(&self) -> Result<u64, StoreError> {
        let s = &self.inner.shared;
        let id = s.ids.next.fetch_add(1, Ordering::SeqCst);
        if id >= s.ids.reserved.load(Ordering::SeqCst) {
            let _one = journal::lock(&s.ids.reserving);
            if id >= s.ids.reserved.load(Ordering::SeqCst) {
                if let Some(r) = &s.replica {
                    // The cluster's next block; ids handed out past the
                    // old block's end move there.
                    let start = r.reserve_ids(ID_BLOCK)?;
                    s.ids.next.store(start + 1, Ordering::SeqCst);
                    s.ids.reserved.store(start + ID_BLOCK, Ordering::SeqCst);
                    return Ok(start);
                }
                let end = id + ID_BLOCK;
                let mut b = WriteBatch::new();
                b.insert(Tree::Meta, ID_KEY.to_vec(), end.to_be_bytes().to_vec());
                self.inner.writer.try_write(b)?;
                s.ids.reserved.store(end, Ordering::SeqCst);
            }
        }
        Ok(id)
    }

    /// Runs a checkpoint round now: everything written so far goes into
    /// sled, durably, and the journal lets go of it (blocking).
    ///
    /// # Errors
    /// When sled or the files fail (everything stays in the journal).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        checkpoint::round(&self.inner.shared)
    }

    /// In a cluster: calls `l` for every change another node made, once
    /// this node's cache has it. Nothing is called on a single node.
    pub fn on_remote_change(&self, l: Listener) {
        if let Some(r) = &self.inner.shared.replica {
            r.listen(l);
        }
    }

    /// Why nothing should be acknowledged now, if so: in a cluster, when the
    /// journal's last round has waited over [`STALLED`] for JetStream (no
    /// quorum). Callers answer `cluster_unavailable` (retryable).
    pub fn unavailable(&self) -> Option<String> {
        let waited = self.inner.shared.journal.stalled()?;
        (waited > STALLED).then(|| {
            format!(
                "no JetStream quorum: the journal has waited {:.1} s for an acknowledgement",
                waited.as_secs_f64()
            )
        })
    }

    /// Resolves once the store counts as [unavailable](Store::unavailable),
    /// with the reason; never on a single node (checked every 100 ms).
    pub async fn lost_quorum(&self) -> String {
        if !self.clustered() {
            return std::future::pending().await;
        }
        loop {
            if let Some(why) = self.unavailable() {
                return why;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// In a cluster: whether this node is the one to initialise the
    /// cluster's keys (the first to ask is; every other node waits for
    /// them to arrive). On a single node: always.
    ///
    /// # Errors
    /// When JetStream does not answer.
    pub fn claim_init(&self) -> Result<bool, StoreError> {
        match &self.inner.shared.replica {
            Some(r) => r.claim_init(),
            None => Ok(true),
        }
    }

    /// Whether this store's journal and store of record are the cluster's.
    pub fn clustered(&self) -> bool {
        self.inner.shared.replica.is_some()
    }

    /// Whether the database answers (readiness).
    pub fn healthy(&self) -> bool {
        self.inner.shared.db.was_recovered() || self.inner.shared.db.size_on_disk().is_ok()
    }
}
