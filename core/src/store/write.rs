//! The write side: a [`WriteBatch`] is one append to the node's journal
//! (group-committed with a real `fdatasync`, see [`crate::journal`]) and,
//! in the same step, taken into the overlay readers look at first — so a
//! batch is visible whole the moment it is written, and durable (past a
//! power cut) once the journal's durable position passes it. No sled
//! operation happens here: the checkpointer ([`super::checkpoint`]) folds
//! the overlay into sled off the critical path.
//!
//! A durable write's future completes once the journal is durable past it;
//! `write_nowait` returns the position instead, for a caller that answers
//! later ([`WriteHandle::durable_past`]) or never needs to.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{Shared, StoreError, Tree};
use crate::journal::{self, Journal, Position};

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

/// One write operation, as a batch and the journal hold it.
#[derive(Debug, Clone)]
pub(super) enum Op {
    Insert(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
    /// A change merged into the stored value by the tree's merge
    /// ([`super::records::merge`]), and, when the writer knows it, the
    /// value it makes (not journalled: recovery resolves the merge).
    Merge(Vec<u8>, Vec<u8>, Option<Vec<u8>>),
}

/// One operation as the overlay and sled take it: a merge resolved into
/// the value it makes ([`resolve`]).
#[derive(Debug, Clone)]
pub(super) enum Change {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// A batch's operations as changes: each merge applied to the value the
/// key has at that point — earlier in the batch, else `stored` (the
/// overlay over sled when written, sled when replayed: the same value,
/// since the journal holds the batches in the order they were applied).
///
/// # Errors
/// What the merge or `stored` failed with.
pub(super) fn resolve(
    ops: Vec<(Tree, Op)>,
    mut stored: impl FnMut(Tree, &[u8]) -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<Vec<(Tree, Change)>, StoreError> {
    let mut out: Vec<(Tree, Change)> = Vec::with_capacity(ops.len());
    for (t, op) in ops {
        let c = match op {
            Op::Insert(k, v) => Change::Put(k, v),
            Op::Remove(k) => Change::Delete(k),
            Op::Merge(k, _, Some(v)) => Change::Put(k, v),
            Op::Merge(k, m, None) => {
                // Any key as it is at this point: earlier in the batch, else
                // stored.
                let mut lookup = |u: Tree, j: &[u8]| -> Result<Option<Vec<u8>>, StoreError> {
                    let earlier = out.iter().rev().find_map(|(w, c)| match c {
                        Change::Put(i, v) if *w == u && i.as_slice() == j => Some(Some(v.clone())),
                        Change::Delete(i) if *w == u && i.as_slice() == j => Some(None),
                        _ => None,
                    });
                    match earlier {
                        Some(v) => Ok(v),
                        None => stored(u, j),
                    }
                };
                let old = lookup(t, &k)?;
                let v = super::records::merge(t, old.as_deref(), &m, &mut lookup)?;
                Change::Put(k, v)
            }
        };
        out.push((t, c));
    }
    Ok(out)
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

    /// Merges `delta` into `key`'s value in `tree` (the tree's merge,
    /// [`super::records::merge`]): the journal holds the delta, readers and
    /// sled the merged value.
    pub fn merge(
        &mut self,
        tree: Tree,
        key: impl Into<Vec<u8>>,
        delta: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.ops
            .push((tree, Op::Merge(key.into(), delta.into(), None)));
        self
    }

    /// A merge whose result the caller knows (`value`: it holds the whole
    /// record): the journal holds `merge`, readers and sled `value`, and
    /// recovery resolves `merge` to the same `value` — which the caller
    /// must make sure of (the tests compare both).
    pub fn merge_known(
        &mut self,
        tree: Tree,
        key: impl Into<Vec<u8>>,
        merge: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.ops.push((
            tree,
            Op::Merge(key.into(), merge.into(), Some(value.into())),
        ));
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

    /// The batch as one journal record: per operation a byte (the tree's
    /// index, its top bit set for a removal, the next for a merge), the
    /// key's length (u32 LE) and the key, and for an insert or a merge the
    /// value's (delta's) length and bytes.
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        for (t, op) in &self.ops {
            let mut put = |tag: u8, k: &[u8]| {
                out.push(tag);
                out.extend_from_slice(&(k.len() as u32).to_le_bytes());
                out.extend_from_slice(k);
            };
            match op {
                Op::Insert(k, v) => {
                    put(t.index() as u8, k);
                    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    out.extend_from_slice(v);
                }
                Op::Remove(k) => put(t.index() as u8 | REMOVE, k),
                Op::Merge(k, d, _) => {
                    put(t.index() as u8 | MERGE, k);
                    out.extend_from_slice(&(d.len() as u32).to_le_bytes());
                    out.extend_from_slice(d);
                }
            }
        }
    }

    /// A journal record back as the batch it was.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the bytes are not one [`Self::encode`]
    /// wrote (the frame's checksum passed, so this is a bug or a foreign
    /// file).
    pub(super) fn decode(mut b: &[u8]) -> Result<Self, StoreError> {
        let bad = || StoreError::Corrupt("journal record");
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (h, t) = (b.len() >= n).then(|| b.split_at(n))?;
            *b = t;
            Some(h)
        }
        fn bytes(b: &mut &[u8]) -> Option<Vec<u8>> {
            let n = u32::from_le_bytes(take(b, 4)?.try_into().ok()?) as usize;
            take(b, n).map(<[u8]>::to_vec)
        }
        let mut ops = Vec::new();
        while let Some(&tag) = b.first() {
            b = &b[1..];
            let tree = *Tree::ALL
                .get((tag & !(REMOVE | MERGE)) as usize)
                .ok_or_else(bad)?;
            let key = bytes(&mut b).ok_or_else(bad)?;
            let op = match (tag & REMOVE != 0, tag & MERGE != 0) {
                (false, false) => Op::Insert(key, bytes(&mut b).ok_or_else(bad)?),
                (true, false) => Op::Remove(key),
                (false, true) => Op::Merge(key, bytes(&mut b).ok_or_else(bad)?, None),
                (true, true) => return Err(bad()),
            };
            ops.push((tree, op));
        }
        Ok(Self { ops })
    }

    /// Its operations, taken.
    pub(super) fn into_ops(self) -> Vec<(Tree, Op)> {
        self.ops
    }

    /// Its operations.
    pub(super) fn ops(&self) -> &[(Tree, Op)] {
        &self.ops
    }
}

/// The tag bit of a removal in a journal record.
const REMOVE: u8 = 0x80;
/// The tag bit of a merge.
const MERGE: u8 = 0x40;

/// Writes into the journal and the overlay. Held by the store.
#[derive(Debug)]
pub struct WriteHandle {
    pub(super) shared: Arc<Shared>,
}

impl WriteHandle {
    /// Appends `batch` to the journal and makes it visible; the position
    /// it is durable at.
    fn append(&self, batch: WriteBatch) -> Result<Position, StoreError> {
        let s = &self.shared;
        if batch.is_empty() {
            return Ok(s.appended.load(Ordering::Acquire));
        }
        let mut rec = Vec::with_capacity(64 * batch.len());
        batch.encode(&mut rec);
        let (ops, bytes) = counts(&batch);
        // Merges are resolved before the lock, against the values readers
        // see now (decoding and encoding records under it held every other
        // writer and reader up). That is the value the journal's order gives
        // them because what a merge reads has one writer — a transaction
        // record its shard, an outbox entry its gateway, which removes it
        // only after the outcome, long after the merges that name it — so
        // nothing changes it between here and the append. A merge that
        // fails leaves nothing in the journal.
        let changes = resolve(batch.into_ops(), |t, k| {
            let known = s
                .overlay
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(t, k);
            match known {
                Some(slot) => Ok(slot.map(|v| v.to_vec())),
                None => Ok(s.trees[t.index()].get(k)?.map(|v| v.to_vec())),
            }
        })?;
        // The overlay's lock orders the appends: the journal holds batches
        // in the order readers saw them.
        let mut overlay = s.overlay.write().unwrap_or_else(|p| p.into_inner());
        let pos = s.journal.append(&rec).map_err(StoreError::from)?;
        overlay.apply(changes);
        s.appended.store(pos, Ordering::Release);
        let full = overlay.pending_ops() >= super::checkpoint::OVERLAY_OPS;
        drop(overlay);
        s.stats.add(&ops, &bytes);
        if full {
            s.checkpoints.nudge();
        }
        Ok(pos)
    }

    /// Writes `batch` (visible at once) and returns the position it is
    /// durable at, without waiting; an error when the journal refuses it.
    ///
    /// # Errors
    /// When the journal failed or is closed, or the batch is too large.
    pub fn try_write(&self, batch: WriteBatch) -> Result<Position, StoreError> {
        self.append(batch)
    }

    /// Writes `batch` and completes once it is durable (survives a power
    /// cut). It is visible to readers at once.
    ///
    /// # Errors
    /// The future yields [`StoreError`] when the journal fails or is closed.
    pub fn write(
        &self,
        batch: WriteBatch,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + 'static {
        self.durable_past_result(self.append(batch))
    }

    /// Writes `batch` (visible at once) without waiting for it to be
    /// durable; the position to wait for when an answer depends on it.
    pub fn write_nowait(&self, batch: WriteBatch) -> Position {
        match self.append(batch) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "a store write was refused");
                self.shared.appended.load(Ordering::Acquire)
            }
        }
    }

    /// The position after everything written so far: an answer that
    /// depends on any of it waits for [`Self::durable_past`] of this.
    pub fn written(&self) -> Position {
        self.shared.appended.load(Ordering::Acquire)
    }

    /// Whether everything before `pos` is durable already.
    pub fn is_durable(&self, pos: Position) -> bool {
        self.shared.journal.durable() >= pos
    }

    /// Completes once everything before `pos` is durable.
    ///
    /// # Errors
    /// The future yields [`StoreError`] when the journal fails or closes first.
    pub fn durable_past(
        &self,
        pos: Position,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + 'static {
        self.durable_past_result(Ok(pos))
    }

    fn durable_past_result(
        &self,
        pos: Result<Position, StoreError>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + 'static {
        let shared = self.shared.clone();
        async move {
            let pos = pos?;
            if shared.journal.durable() >= pos {
                return Ok(());
            }
            journal::wait_durable(&shared.journal, pos)
                .await
                .map_err(StoreError::from)
        }
    }

    /// Completes once everything written before it is visible to readers —
    /// at once: a write is visible when it returns. Kept for callers that
    /// read what another actor wrote.
    ///
    /// # Errors
    /// Never; the signature matches the other waits.
    pub fn barrier(&self) -> impl std::future::Future<Output = Result<(), StoreError>> + 'static {
        std::future::ready(Ok(()))
    }

    /// Completes once everything written before it is durable.
    ///
    /// # Errors
    /// The future yields [`StoreError`] when the journal fails or is closed.
    pub fn flush(&self) -> impl std::future::Future<Output = Result<(), StoreError>> + 'static {
        self.durable_past(self.written())
    }
}

/// A batch's operations and bytes per tree (inserts count key and value,
/// removes their key).
fn counts(b: &WriteBatch) -> ([u64; Tree::ALL.len()], [u64; Tree::ALL.len()]) {
    let mut ops = [0u64; Tree::ALL.len()];
    let mut bytes = [0u64; Tree::ALL.len()];
    for (t, op) in b.ops() {
        ops[t.index()] += 1;
        bytes[t.index()] += match op {
            Op::Insert(k, v) | Op::Merge(k, v, _) => (k.len() + v.len()) as u64,
            Op::Remove(k) => k.len() as u64,
        };
    }
    (ops, bytes)
}

/// Storage failures injected by tests: applying a tree's part of a
/// checkpoint fails while its flag is set. Empty outside tests.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    #[cfg(test)]
    fail_applying: [std::sync::atomic::AtomicBool; Tree::ALL.len()],
}

impl Faults {
    /// Whether applying `tree`'s part must fail now.
    pub(super) fn fails(&self, _tree: Tree) -> bool {
        #[cfg(test)]
        {
            self.fail_applying[_tree.index()].load(Ordering::SeqCst)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{dec, enc, Merge, TxnWrite};
    use crate::store::Store;

    fn cross_tree() -> WriteBatch {
        let mut b = WriteBatch::new();
        b.insert(Tree::Outbox, b"gw\0t1".to_vec(), b"entry".to_vec());
        b.insert(Tree::Dedupe, b"gw\0key".to_vec(), b"t1".to_vec());
        b.remove(Tree::Inbox, b"gone".to_vec());
        b
    }

    #[test]
    fn a_batch_round_trips_through_its_journal_record_and_garbage_is_refused() {
        let b = cross_tree();
        let mut rec = Vec::new();
        b.encode(&mut rec);
        let back = WriteBatch::decode(&rec).unwrap();
        assert_eq!(format!("{:?}", back.ops()), format!("{:?}", b.ops()));
        for cut in 0..rec.len() {
            // Every proper prefix that ends inside an operation is refused.
            let r = WriteBatch::decode(&rec[..cut]);
            assert!(r.is_ok() == [0, 19, 36].contains(&cut), "cut {cut}: {r:?}");
        }
        assert!(WriteBatch::decode(&[0x7f, 0, 0, 0, 0]).is_err());
    }

    /// A batch across trees is visible whole the moment it is written;
    /// when the checkpoint that would put it into sled fails part-way (an
    /// injected failure in its second tree), the journal still has it, and
    /// reopening replays it whole.
    #[tokio::test]
    async fn a_batch_across_trees_survives_a_failed_checkpoint_whole() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.faults().fail_applying(Tree::Dedupe, true);
            store.writer().write(cross_tree()).await.unwrap();
            assert!(store.checkpoint().is_err());
            assert_eq!(
                store.get(Tree::Outbox, b"gw\0t1").unwrap(),
                Some(b"entry".to_vec())
            );
            assert_eq!(
                store.get(Tree::Dedupe, b"gw\0key").unwrap(),
                Some(b"t1".to_vec())
            );
            // sled itself has only the first tree's part.
            assert!(store.tree(Tree::Dedupe).get(b"gw\0key").unwrap().is_none());
            // Written after the failure: the retried round must not lose it.
            let mut later = WriteBatch::new();
            later.insert(Tree::Meta, b"later".to_vec(), b"x".to_vec());
            store.writer().write(later).await.unwrap();
            // The last round on close fails too.
        }
        let store = Store::open(dir.path()).unwrap();
        for (t, k, v) in [
            (Tree::Outbox, &b"gw\0t1"[..], &b"entry"[..]),
            (Tree::Dedupe, b"gw\0key", b"t1"),
            (Tree::Meta, b"later", b"x"),
        ] {
            assert_eq!(store.tree(t).get(k).unwrap().as_deref(), Some(v), "{t:?}");
        }
    }

    /// A round that failed is retried first, with its own cut, and what was
    /// written meanwhile follows in the next.
    #[tokio::test]
    async fn a_failed_round_is_retried_and_then_everything_reaches_sled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.faults().fail_applying(Tree::Dedupe, true);
        store.writer().write(cross_tree()).await.unwrap();
        assert!(store.checkpoint().is_err());
        let mut later = WriteBatch::new();
        later.insert(Tree::Meta, b"later".to_vec(), b"x".to_vec());
        store.writer().write_nowait(later);
        store.faults().fail_applying(Tree::Dedupe, false);
        store.checkpoint().unwrap();
        assert!(store.tree(Tree::Dedupe).get(b"gw\0key").unwrap().is_some());
        assert!(store.tree(Tree::Meta).get(b"later").unwrap().is_none());
        store.checkpoint().unwrap();
        assert!(store.tree(Tree::Meta).get(b"later").unwrap().is_some());
        assert_eq!(
            store.get(Tree::Meta, b"later").unwrap(),
            Some(b"x".to_vec())
        );
    }

    fn txn_record() -> crate::store::TxnRecord {
        use crate::protocol::{mac, Address, Imi, MediumKind, MemberId, Priority, To, TxnId};
        crate::store::TxnRecord {
            imi: Imi {
                txn: TxnId::generate(1_800_000_000_000),
                originator: MemberId::new("gw"),
                sender: Address::new(MediumKind::Im, "alice"),
                sender_user: Some("alice".into()),
                recipient: To::User("bob".into()),
                content_type: "text/plain".into(),
                content_len: 2,
                content_sha256: mac::sha256(b"hi"),
                subject: None,
                priority: Priority::Normal,
                expires_at_ms: 1_800_000_060_000,
                created_at_ms: 1_800_000_000_000,
                receipt: true,
                attributes: vec![],
            },
            status: crate::store::TxnStatus::Released,
            manager: None,
            attempts: vec![],
            events: vec![],
            closed: false,
            saved: Default::default(),
        }
    }

    fn txn_batch(rec: &mut crate::store::TxnRecord) -> WriteBatch {
        let mut b = WriteBatch::new();
        let key = crate::store::TxnRecord::key(&rec.imi.txn).to_vec();
        match rec.to_write() {
            // Journalled whole, then as deltas the writer resolves itself.
            TxnWrite::Full { whole, .. } => b.insert(Tree::Txn, key, whole),
            TxnWrite::Delta { delta, .. } => b.merge(Tree::Txn, key, Merge::Txn(delta).encode()),
        };
        b
    }

    /// Whatever a step changes — a new attempt, an attempt's outcome, the
    /// manager, the trail, the status — the stored record with every delta
    /// applied is the record the broker holds.
    #[test]
    fn deltas_applied_in_order_rebuild_the_record() {
        use crate::protocol::{MediumKind, MemberId, Route};
        use crate::store::{AttemptRecord, TxnRecord, TxnStatus};
        let attempt = |n: u32, m: MediumKind| AttemptRecord {
            attempt: n,
            route: Route {
                mechanism: m,
                address: "bob".into(),
                recipient_user: Some("bob".into()),
                destination: MemberId::new("gw-d"),
                processors: vec![],
                archive: None,
                store_and_forward: false,
            },
            id: [n as u8; 32],
            started_ms: u64::from(n),
            deadline_ms: u64::from(n) + 10,
            outcome: None,
            reason: None,
        };
        let mut rec = txn_record();
        let mut stored: Option<TxnRecord> = None;
        type Step = Box<dyn Fn(&mut TxnRecord)>;
        let steps: Vec<Step> = vec![
            Box::new(|r| r.event(1, "submitted")),
            Box::new(move |r| {
                r.attempts.push(attempt(1, MediumKind::Im));
                r.event(2, "released:1");
            }),
            Box::new(|r| {
                r.attempts[0].outcome = Some("timeout".into());
                r.attempts[0].reason = Some("no answer".into());
            }),
            Box::new(move |r| {
                r.attempts.push(attempt(2, MediumKind::Sms));
                r.status = TxnStatus::Transmitted;
            }),
            Box::new(|r| {
                r.attempts[1].outcome = Some("delivered".into());
                r.attempts[1].deadline_ms = 99;
                r.status = TxnStatus::Delivered;
            }),
            Box::new(|_| {}),
        ];
        for (i, step) in steps.iter().enumerate() {
            step(&mut rec);
            match rec.to_write() {
                TxnWrite::Full { whole, .. } => {
                    assert_eq!(i, 0, "only the first write is whole");
                    stored = Some(dec(&whole, "txn").unwrap());
                }
                TxnWrite::Delta { whole, delta } => {
                    let s = stored.as_mut().unwrap();
                    s.apply(dec(&enc(&delta), "txn delta").unwrap());
                    assert_eq!(*s, dec::<TxnRecord>(&whole, "txn").unwrap(), "step {i}");
                }
            }
            let s = stored.as_ref().unwrap();
            assert_eq!(
                (&s.attempts, &s.events, &s.status),
                (&rec.attempts, &rec.events, &rec.status),
                "step {i}"
            );
        }
    }

    /// A transaction's later writes journal only what changed; readers see
    /// the merged record at once, after a checkpoint, and after a reopen
    /// that had only the journal (every checkpoint failed) — and a merge
    /// with nothing to merge into is refused whole, journal untouched.
    #[tokio::test]
    async fn a_merge_journals_the_change_and_reads_the_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = txn_record();
        let txn = rec.imi.txn;
        let full = txn_batch(&mut rec);
        rec.event(1, "submitted");
        rec.status = crate::store::TxnStatus::Delivered;
        let delta = txn_batch(&mut rec);
        let (mut full_rec, mut delta_rec) = (Vec::new(), Vec::new());
        full.encode(&mut full_rec);
        delta.encode(&mut delta_rec);
        assert!(
            delta_rec.len() * 3 < full_rec.len(),
            "{} vs {}",
            delta_rec.len(),
            full_rec.len()
        );
        let back = WriteBatch::decode(&delta_rec).unwrap();
        assert_eq!(format!("{:?}", back.ops()), format!("{:?}", delta.ops()));
        {
            let store = Store::open(dir.path()).unwrap();
            store.faults().fail_applying(Tree::Txn, true);
            store.writer().write(full).await.unwrap();
            store.writer().write(delta).await.unwrap();
            assert_eq!(store.txn(&txn).unwrap().unwrap(), rec);
            // Nothing to merge into: refused, and the journal has nothing.
            let mut other = txn_record();
            other.mark_saved();
            let before = store.writer().written();
            assert!(store.writer().try_write(txn_batch(&mut other)).is_err());
            assert_eq!(store.writer().written(), before);
            assert!(store.checkpoint().is_err());
        }
        let store = Store::open(dir.path()).unwrap();
        let stored: crate::store::TxnRecord =
            super::super::records::dec(&store.tree(Tree::Txn).get(txn.0).unwrap().unwrap(), "txn")
                .unwrap();
        assert_eq!(stored, rec);
        assert_eq!(stored.events.len(), 1);
        // Both in one batch: the merge reads the insert before it.
        let mut again = txn_record();
        let mut b = txn_batch(&mut again);
        again.event(2, "released");
        for (t, op) in txn_batch(&mut again).into_ops() {
            b.ops.push((t, op));
        }
        store.writer().write(b).await.unwrap();
        assert_eq!(store.txn(&again.imi.txn).unwrap().unwrap().events.len(), 1);
    }

    /// In process the transaction record's IMI and the inbox entry's text
    /// are the outbox entry's: the journal names the entry, the store holds
    /// the whole records (at once, and rebuilt by recovery from the journal
    /// alone); the usage is made from the transaction. A merge naming an
    /// entry that is not there is refused whole.
    #[tokio::test]
    async fn merges_name_the_outbox_entry_instead_of_repeating_it() {
        use crate::protocol::{MemberId, Route};
        use crate::store::{AccountingRecord, AttemptRecord, InboxEntry, OutboxEntry, TxnRecord};
        let dir = tempfile::tempdir().unwrap();
        let mut rec = txn_record();
        let txn = rec.imi.txn;
        rec.attempts.push(AttemptRecord {
            attempt: 1,
            route: Route {
                mechanism: crate::protocol::MediumKind::Im,
                address: "bob".into(),
                recipient_user: Some("bob".into()),
                destination: MemberId::new("gw-im"),
                processors: vec![],
                archive: None,
                store_and_forward: false,
            },
            id: [1; 32],
            started_ms: 1,
            deadline_ms: 2,
            outcome: Some("delivered".into()),
            reason: None,
        });
        let outbox_key = OutboxEntry::key(&rec.imi.originator, &txn);
        let entry = OutboxEntry {
            imi: rec.imi.clone(),
            content: b"hi".to_vec(),
        };
        let inbox = InboxEntry {
            txn,
            from: "alice".into(),
            body: String::new(),
            subject: None,
            sent_at_ms: 1,
            attempt: 1,
            id: [1; 32],
            delivered: true,
            read: false,
        };
        let usage_key = AccountingRecord::of(&rec, "delivered".into(), 5)
            .unwrap()
            .key();
        let mut first = WriteBatch::new();
        first.insert(Tree::Outbox, outbox_key.clone(), enc(&entry));
        let mut rest = WriteBatch::new();
        rest.merge(
            Tree::Txn,
            TxnRecord::key(&txn).to_vec(),
            Merge::TxnOnOutbox {
                outbox: outbox_key.clone(),
                base: rec.base(),
            }
            .encode(),
        );
        rest.merge(
            Tree::Inbox,
            b"bob".to_vec(),
            Merge::InboxOnOutbox {
                outbox: outbox_key.clone(),
                entry: inbox.clone(),
            }
            .encode(),
        );
        rest.merge(
            Tree::Accounting,
            usage_key.clone(),
            Merge::Usage {
                txn,
                outcome: "delivered".into(),
                at_ms: 5,
            }
            .encode(),
        );
        let mut journalled = Vec::new();
        rest.encode(&mut journalled);
        // The journal does not repeat the IMI.
        let imi = enc(&rec.imi);
        assert!(!journalled.windows(imi.len()).any(|w| w == imi.as_slice()));
        let check = |store: &Store| {
            let got: TxnRecord = store.txn(&txn).unwrap().unwrap();
            assert_eq!(got, rec);
            let i: InboxEntry =
                dec(&store.get(Tree::Inbox, b"bob").unwrap().unwrap(), "inbox").unwrap();
            assert_eq!(i.body, "hi");
            let a = store.accounting(0, u64::MAX).unwrap();
            assert_eq!((a.len(), a[0].sender.as_str(), a[0].bytes), (1, "alice", 2));
        };
        {
            let store = Store::open(dir.path()).unwrap();
            for t in [Tree::Txn, Tree::Inbox, Tree::Accounting] {
                store.faults().fail_applying(t, true);
            }
            store.writer().write(first).await.unwrap();
            store.writer().write(rest).await.unwrap();
            check(&store);
            // The outbox entry gone: a merge naming it is refused whole.
            let mut gone = WriteBatch::new();
            gone.remove(Tree::Outbox, outbox_key.clone());
            store.writer().write(gone).await.unwrap();
            let mut orphan = WriteBatch::new();
            orphan.insert(Tree::Meta, b"half".to_vec(), b"x".to_vec());
            orphan.merge(
                Tree::Inbox,
                b"carol".to_vec(),
                Merge::InboxOnOutbox {
                    outbox: outbox_key.clone(),
                    entry: inbox.clone(),
                }
                .encode(),
            );
            let before = store.writer().written();
            assert!(store.writer().try_write(orphan).is_err());
            assert_eq!(store.writer().written(), before);
            assert_eq!(store.get(Tree::Meta, b"half").unwrap(), None);
            check(&store);
        }
        // Reopened from the journal alone (no checkpoint reached sled).
        let store = Store::open(dir.path()).unwrap();
        check(&store);
        assert!(store.tree(Tree::Inbox).get(b"bob").unwrap().is_some());
    }

    /// Ids stay unique across a reopen whose last checkpoint failed (so
    /// only the journal has the ids' block).
    #[tokio::test]
    async fn ids_are_unique_across_a_reopen_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let before: Vec<u64> = {
            let store = Store::open(dir.path()).unwrap();
            store.faults().fail_applying(Tree::Meta, true);
            (0..3).map(|_| store.next_id().unwrap()).collect()
        };
        assert!(before.windows(2).all(|w| w[0] < w[1]), "{before:?}");
        let store = Store::open(dir.path()).unwrap();
        let after = store.next_id().unwrap();
        assert!(after > before[2], "{after} after {before:?}");
    }

    /// A write's future completes only once the journal is durable past it;
    /// `write_nowait` hands back the position to wait for instead.
    #[tokio::test]
    async fn durable_positions_advance_past_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let w = store.writer();
        let mut last = w.written();
        for i in 0u32..100 {
            let mut b = WriteBatch::new();
            b.insert(Tree::Meta, i.to_be_bytes().to_vec(), b"v".to_vec());
            let pos = w.write_nowait(b);
            assert!(pos > last);
            last = pos;
        }
        w.durable_past(last).await.unwrap();
        assert!(w.is_durable(last));
        let mut b = WriteBatch::new();
        b.insert(Tree::Meta, b"k".to_vec(), b"v".to_vec());
        w.write(b).await.unwrap();
        assert!(w.is_durable(w.written()));
    }
}
