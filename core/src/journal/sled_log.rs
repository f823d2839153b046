//! [`SledJournal`]: the journal as records of a sled tree, one per append,
//! group-committed by a writer thread that calls sled's `flush` and then
//! `fdatasync`s sled's `db` file (sled's flush ends in
//! `sync_file_range`, which neither writes metadata nor flushes the disk's
//! cache). Kept so the choice of [`super::file::FileJournal`] stays
//! measured (`cargo bench --bench broker -- journal/`); the node does not
//! use it.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::watch;

use super::{lock, Durability, Journal, JournalError, Position};

/// The last sequence number given, and the batches not yet written.
type Pending = (u64, Vec<(u64, Vec<u8>)>);

struct Shared {
    db: sled::Db,
    tree: sled::Tree,
    db_file: File,
    pending: Mutex<Pending>,
    wake: Condvar,
    durability: Durability,
}

/// The journal in a sled tree.
pub struct SledJournal {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// How long opening a sled database waits for another holder to release it.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the sled database `cfg` names, waiting up to `wait` while another
/// holder (an instance that is exiting, or one just dropped whose threads
/// still hold it) keeps its lock.
///
/// # Errors
/// What sled says, once the wait is over or for any other failure.
pub(crate) fn open_waiting(
    cfg: &sled::Config,
    wait: std::time::Duration,
) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match cfg.open() {
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

impl SledJournal {
    /// Opens (or creates) a sled database in `dir` holding the journal.
    ///
    /// # Errors
    /// When sled cannot open it.
    pub fn open(dir: &Path) -> Result<Self, JournalError> {
        let io = |e: sled::Error| JournalError::Io(e.to_string());
        let db = open_waiting(
            &sled::Config::new()
                .path(dir)
                .mode(sled::Mode::HighThroughput)
                .flush_every_ms(Some(1000)),
            LOCK_WAIT,
        )
        .map_err(io)?;
        let tree = db.open_tree("journal").map_err(io)?;
        let last = tree.last().map_err(io)?.map_or(0, |(k, _)| seq_of(&k));
        let db_file = File::open(dir.join("db"))?;
        let shared = Arc::new(Shared {
            db,
            tree,
            db_file,
            pending: Mutex::new((last, Vec::new())),
            wake: Condvar::new(),
            durability: Durability::new(last),
        });
        let s = shared.clone();
        let writer = std::thread::Builder::new()
            .name("journal-sled".into())
            .spawn(move || writer(&s))?;
        Ok(Self {
            shared,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Writes what is pending and stops the writer.
    pub fn close(&self) {
        self.shared.durability.close();
        // Under the writer's lock, so its wait cannot miss the wake-up.
        drop(lock(&self.shared.pending));
        self.shared.wake.notify_all();
        if let Some(t) = lock(&self.writer).take() {
            let _ = t.join();
        }
        self.shared.durability.wake();
    }
}

impl Drop for SledJournal {
    fn drop(&mut self) {
        self.close();
    }
}

fn seq_of(key: &[u8]) -> u64 {
    key.try_into().map_or(0, u64::from_be_bytes)
}

fn writer(s: &Shared) {
    loop {
        let batches = {
            let mut p = lock(&s.pending);
            while p.1.is_empty() {
                if s.durability.is_closed() {
                    return;
                }
                p = s.wake.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            std::mem::take(&mut p.1)
        };
        let last = batches.last().map_or(0, |b| b.0);
        let mut b = sled::Batch::default();
        for (seq, bytes) in batches {
            b.insert(&seq.to_be_bytes(), bytes);
        }
        let done = s
            .tree
            .apply_batch(b)
            .and_then(|()| s.db.flush().map(|_| ()))
            .map_err(|e| JournalError::Io(e.to_string()))
            .and_then(|()| s.db_file.sync_data().map_err(JournalError::from));
        match done {
            Ok(()) => s.durability.publish(last),
            Err(e) => {
                s.durability.fail(e);
                return;
            }
        }
    }
}

impl Journal for SledJournal {
    fn append(&self, batch: &[u8]) -> Result<Position, JournalError> {
        let s = &self.shared;
        let mut p = lock(&s.pending);
        if let Some(e) = s.durability.refusal() {
            return Err(e);
        }
        p.0 += 1;
        let seq = p.0;
        p.1.push((seq, batch.to_vec()));
        drop(p);
        s.wake.notify_one();
        Ok(seq)
    }

    fn durable(&self) -> Position {
        self.shared.durability.durable()
    }

    fn watch(&self) -> watch::Receiver<Position> {
        self.shared.durability.watch()
    }

    fn failed(&self) -> Option<JournalError> {
        self.shared.durability.failed()
    }

    fn replay(
        &self,
        from: Position,
        each: &mut dyn FnMut(Position, &[u8]),
    ) -> Result<Position, JournalError> {
        let mut last = from;
        for kv in self.shared.tree.range((from + 1).to_be_bytes()..) {
            let (k, v) = kv.map_err(|e| JournalError::Io(e.to_string()))?;
            last = seq_of(&k);
            each(last, &v);
        }
        Ok(last)
    }

    fn truncate_before(&self, pos: Position) -> Result<(), JournalError> {
        let mut b = sled::Batch::default();
        for kv in self.shared.tree.range(..=pos.to_be_bytes()) {
            let (k, _) = kv.map_err(|e| JournalError::Io(e.to_string()))?;
            b.remove(k);
        }
        self.shared
            .tree
            .apply_batch(b)
            .map_err(|e| JournalError::Io(e.to_string()))
    }

    fn close(&self) {
        SledJournal::close(self);
    }
}
