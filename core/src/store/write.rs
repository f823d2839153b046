//! The write side: one writer thread applies batches in arrival order and
//! commits them in groups — every batch queued while the previous group was
//! flushing is applied and made durable by one `flush`. A durable write's
//! future completes only after the flush that covered it.
//!
//! A group is applied atomically: one sled batch when it touches one tree,
//! one sled transaction across the trees it touches otherwise — so a batch
//! that writes an outbox entry and its dedupe key is recovered with both or
//! neither, and no reader sees one without the other.
//!
//! Writes that need no durability (`write_nowait`) are applied in the same
//! order and become durable with the next group that flushes, or with sled's
//! own periodic flush.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use sled::Transactional;
use tokio::sync::oneshot;

use super::{StoreError, Tree};

/// What the writer has applied since the store opened, per tree: the
/// operations (inserts and removes) and the bytes of their keys and values.
/// Read by the load generator (sled operations per message) and exported as
/// `switchboard_store_ops_total{tree}` / `switchboard_store_bytes_total{tree}`.
#[derive(Debug, Default)]
pub struct WriteStats {
    ops: [AtomicU64; Tree::ALL.len()],
    bytes: [AtomicU64; Tree::ALL.len()],
}

/// A reading of [`WriteStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteCounts {
    /// `(tree, operations, bytes)` for every tree, in [`Tree::ALL`] order.
    pub trees: Vec<(Tree, u64, u64)>,
}

impl WriteStats {
    /// The counts so far.
    pub fn read(&self) -> WriteCounts {
        WriteCounts {
            trees: Tree::ALL
                .iter()
                .map(|&t| {
                    (
                        t,
                        self.ops[t.index()].load(Ordering::Relaxed),
                        self.bytes[t.index()].load(Ordering::Relaxed),
                    )
                })
                .collect(),
        }
    }

    /// Adds one group's per-tree counts.
    fn add(&self, ops: &[u64], bytes: &[u64]) {
        for t in Tree::ALL {
            let (o, b) = (ops[t.index()], bytes[t.index()]);
            if o > 0 {
                self.ops[t.index()].fetch_add(o, Ordering::Relaxed);
                self.bytes[t.index()].fetch_add(b, Ordering::Relaxed);
                metrics::counter!("switchboard_store_ops_total", "tree" => t.name()).increment(o);
                metrics::counter!("switchboard_store_bytes_total", "tree" => t.name()).increment(b);
            }
        }
    }
}

/// The most batches applied by one group commit.
const MAX_GROUP: usize = 4096;

/// One write operation.
#[derive(Debug, Clone)]
enum Op {
    Insert(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
}

/// Writes that are applied together.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    ops: Vec<(Tree, Op)>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value` in `tree`.
    pub fn insert(
        &mut self,
        tree: Tree,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.ops.push((tree, Op::Insert(key.into(), value.into())));
        self
    }

    /// Removes `key` from `tree`.
    pub fn remove(&mut self, tree: Tree, key: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push((tree, Op::Remove(key.into())));
        self
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

type Done = oneshot::Sender<Result<(), StoreError>>;

enum Job {
    Write(WriteBatch, Option<Done>),
    Flush(Done),
    Barrier(Done),
}

/// Sends work to the writer thread. Cheap to clone.
#[derive(Clone, Debug)]
pub struct WriteHandle {
    tx: mpsc::Sender<Job>,
}

impl WriteHandle {
    /// Queues `job` and returns the future of its completion.
    fn request(
        &self,
        job: impl FnOnce(Done) -> Job,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + 'static {
        let (done, rx) = oneshot::channel();
        let sent = self.tx.send(job(done)).is_ok();
        async move {
            if !sent {
                return Err(StoreError::Closed);
            }
            rx.await.unwrap_or(Err(StoreError::Closed))
        }
    }

    /// Applies `batch` and completes once it is durable on disk.
    ///
    /// # Errors
    /// The future yields [`StoreError`] when sled fails or the writer stopped.
    pub fn write(
        &self,
        batch: WriteBatch,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + 'static {
        self.request(|done| Job::Write(batch, Some(done)))
    }

    /// Applies `batch` in order with the other writes, without waiting for it
    /// to be durable.
    pub fn write_nowait(&self, batch: WriteBatch) {
        if self.tx.send(Job::Write(batch, None)).is_err() {
            tracing::warn!("store writer stopped; a write was dropped");
        }
    }

    /// Completes once everything queued before it is applied (visible to
    /// readers), durable or not. A reader that missed a record it has reason
    /// to expect (the broker queued it before answering) waits on this.
    ///
    /// # Errors
    /// The future yields [`StoreError`] when sled fails or the writer stopped.
    pub fn barrier(&self) -> impl std::future::Future<Output = Result<(), StoreError>> + 'static {
        self.request(Job::Barrier)
    }

    /// Completes once everything queued before it is durable.
    ///
    /// # Errors
    /// The future yields [`StoreError`] when sled fails or the writer stopped.
    pub fn flush(&self) -> impl std::future::Future<Output = Result<(), StoreError>> + 'static {
        self.request(Job::Flush)
    }
}

/// Storage failures injected by tests: applying a tree's part of a group
/// fails while its flag is set. Empty outside tests.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    #[cfg(test)]
    fail_applying: [std::sync::atomic::AtomicBool; Tree::ALL.len()],
}

impl Faults {
    /// Whether applying `tree`'s part must fail now.
    fn fails(&self, _tree: usize) -> bool {
        #[cfg(test)]
        {
            self.fail_applying[_tree].load(Ordering::SeqCst)
        }
        #[cfg(not(test))]
        false
    }

    /// Makes applying `tree`'s part fail (`true`) or succeed again.
    #[cfg(test)]
    pub(crate) fn fail_applying(&self, tree: Tree, on: bool) {
        self.fail_applying[tree.index()].store(on, Ordering::SeqCst);
    }
}

pub(super) fn spawn(
    db: sled::Db,
    trees: Vec<sled::Tree>,
    stats: Arc<WriteStats>,
    faults: Arc<Faults>,
) -> WriteHandle {
    let (tx, rx) = mpsc::channel::<Job>();
    thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || run(db, trees, rx, &stats, &faults))
        .expect("spawning the store writer thread");
    WriteHandle { tx }
}

fn run(
    db: sled::Db,
    trees: Vec<sled::Tree>,
    rx: mpsc::Receiver<Job>,
    stats: &WriteStats,
    faults: &Faults,
) {
    let mut jobs = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = rx.recv() {
        jobs.push(first);
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let result = commit(&db, &trees, &jobs, stats, faults);
        for job in jobs.drain(..) {
            match job {
                Job::Write(_, Some(done)) | Job::Flush(done) | Job::Barrier(done) => {
                    let _ = done.send(result.clone());
                }
                Job::Write(_, None) => {}
            }
        }
    }
    // Every handle is gone: make what was applied durable before exiting.
    if let Err(e) = db.flush() {
        tracing::error!(error = %e, "final store flush failed");
    }
}

fn commit(
    db: &sled::Db,
    trees: &[sled::Tree],
    jobs: &[Job],
    stats: &WriteStats,
    faults: &Faults,
) -> Result<(), StoreError> {
    let mut batches: Vec<Option<sled::Batch>> = vec![None; trees.len()];
    let mut ops = [0u64; Tree::ALL.len()];
    let mut bytes = [0u64; Tree::ALL.len()];
    let mut durable = false;
    for job in jobs {
        match job {
            Job::Write(batch, done) => {
                durable |= done.is_some();
                for (tree, op) in &batch.ops {
                    let b = batches[tree.index()].get_or_insert_with(sled::Batch::default);
                    ops[tree.index()] += 1;
                    bytes[tree.index()] += match op {
                        Op::Insert(k, v) => {
                            b.insert(k.as_slice(), v.as_slice());
                            (k.len() + v.len()) as u64
                        }
                        Op::Remove(k) => {
                            b.remove(k.as_slice());
                            k.len() as u64
                        }
                    };
                }
            }
            Job::Flush(_) => durable = true,
            Job::Barrier(_) => {}
        }
    }
    let parts: Vec<(usize, sled::Batch)> = batches
        .into_iter()
        .enumerate()
        .filter_map(|(i, b)| Some((i, b?)))
        .collect();
    apply(trees, parts, faults)?;
    if durable {
        let t0 = std::time::Instant::now();
        db.flush()?;
        metrics::histogram!("switchboard_store_flush_seconds").record(t0.elapsed().as_secs_f64());
    }
    stats.add(&ops, &bytes);
    Ok(())
}

/// Applies one group's per-tree batches as one atomic unit.
pub(super) fn apply(
    trees: &[sled::Tree],
    mut parts: Vec<(usize, sled::Batch)>,
    faults: &Faults,
) -> Result<(), StoreError> {
    let injected = || StoreError::Sled("injected failure".into());
    if parts.len() <= 1 {
        let Some((i, batch)) = parts.pop() else {
            return Ok(());
        };
        if faults.fails(i) {
            return Err(injected());
        }
        return Ok(trees[i].apply_batch(batch)?);
    }
    let touched: Vec<sled::Tree> = parts.iter().map(|(i, _)| trees[*i].clone()).collect();
    touched[..]
        .transaction(|views| {
            for (view, (i, batch)) in views.iter().zip(&parts) {
                if faults.fails(*i) {
                    return sled::transaction::abort(injected());
                }
                view.apply_batch(batch)?;
            }
            Ok(())
        })
        .map_err(|e| match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => e.into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// Both parts of a batch that spans trees, or neither: a storage error
    /// (injected) while applying the second tree's part leaves no trace of
    /// the first's — not in the open store, not after reopening it.
    #[tokio::test]
    async fn a_batch_across_trees_is_applied_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let batch = || {
            let mut b = WriteBatch::new();
            b.insert(Tree::Outbox, b"gw\0t1".to_vec(), b"entry".to_vec());
            b.insert(Tree::Dedupe, b"gw\0key".to_vec(), b"t1".to_vec());
            b
        };
        {
            let store = Store::open(dir.path()).unwrap();
            store.faults().fail_applying(Tree::Dedupe, true);
            assert!(store.writer().write(batch()).await.is_err());
            assert_eq!(store.get(Tree::Outbox, b"gw\0t1").unwrap(), None);
            assert_eq!(store.get(Tree::Dedupe, b"gw\0key").unwrap(), None);
            store.faults().fail_applying(Tree::Dedupe, false);
            // A batch in one tree goes through the same gate.
            store.faults().fail_applying(Tree::Outbox, true);
            let mut one = WriteBatch::new();
            one.insert(Tree::Outbox, b"gw\0t2".to_vec(), b"entry".to_vec());
            assert!(store.writer().write(one).await.is_err());
            store.faults().fail_applying(Tree::Outbox, false);
            store.writer().flush().await.unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.get(Tree::Outbox, b"gw\0t1").unwrap(), None);
        assert_eq!(store.get(Tree::Outbox, b"gw\0t2").unwrap(), None);
        // Once the failure is gone the same batch lands whole.
        store.writer().write(batch()).await.unwrap();
        assert!(store.get(Tree::Outbox, b"gw\0t1").unwrap().is_some());
        assert!(store.get(Tree::Dedupe, b"gw\0key").unwrap().is_some());
    }
}
