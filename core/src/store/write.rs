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
use crate::journal::{self, Position};

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
    /// A value the merge before it makes besides its own key's (a
    /// conclusion's accounting record): applied, never journalled —
    /// recovery derives it again from that merge
    /// ([`super::records::derived`]).
    Derived(Vec<u8>, Vec<u8>),
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
            Op::Merge(k, _, Some(v)) | Op::Derived(k, v) => Change::Put(k, v),
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
                let also = super::records::derived(t, &m, &v)?;
                out.push((t, Change::Put(k, v)));
                if let Some((u, j, w)) = also {
                    out.push((u, Change::Put(j, w)));
                }
                continue;
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

    /// `key`'s `value` in `tree`, made by the merge just before it (a
    /// conclusion's accounting record, [`super::records::Merge::TxnConcluded`]):
    /// readers and sled get it, the journal does not — recovery derives it
    /// from that merge, the same value, which the caller must make sure of
    /// (the tests compare both).
    pub fn derive(
        &mut self,
        tree: Tree,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.ops.push((tree, Op::Derived(key.into(), value.into())));
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
                Op::Derived(..) => {}
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

    /// Keeps the operations on keys `keep` says yes to.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(Tree, &[u8]) -> bool) {
        self.ops.retain(|(t, op)| {
            let k = match op {
                Op::Insert(k, _) | Op::Remove(k) | Op::Merge(k, ..) | Op::Derived(k, _) => k,
            };
            keep(*t, k)
        });
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
        let changes = resolve(batch.into_ops(), |t, k| s.value(t, k))?;
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
            journal::wait_durable(shared.journal.as_ref(), pos)
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

/// A batch's journalled operations and bytes per tree (inserts and merges
/// count key and value, removes their key; derived values are not
/// journalled and not counted).
fn counts(b: &WriteBatch) -> ([u64; Tree::ALL.len()], [u64; Tree::ALL.len()]) {
    let mut ops = [0u64; Tree::ALL.len()];
    let mut bytes = [0u64; Tree::ALL.len()];
    for (t, op) in b.ops() {
        let n = match op {
            Op::Insert(k, v) | Op::Merge(k, v, _) => (k.len() + v.len()) as u64,
            Op::Remove(k) => k.len() as u64,
            Op::Derived(..) => continue,
        };
        ops[t.index()] += 1;
        bytes[t.index()] += n;
    }
    (ops, bytes)
}

/// Storage failures injected by tests: applying a tree's part of a
/// checkpoint fails while its flag is set. Empty outside tests.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    #[cfg(test)]
    fail_applying: [std::sync::atomic::AtomicBool; Tree::ALL.len()],
    /// The checkpointer's timed rounds are held (only explicit rounds run).
    #[cfg(test)]
    timer_held: std::sync::atomic::AtomicBool,
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

    /// Whether the checkpointer's timed rounds are held now.
    pub(super) fn timer_held(&self) -> bool {
        #[cfg(test)]
        {
            self.timer_held.load(Ordering::SeqCst)
        }
        #[cfg(not(test))]
        false
    }

    /// Holds the checkpointer's timed rounds (`true`): a test that counts
    /// what each explicit round applies is not raced by the timer.
    #[cfg(test)]
    pub(crate) fn hold_timer(&self, on: bool) {
        self.timer_held.store(on, Ordering::SeqCst);
    }

    /// Makes applying `tree`'s part fail (`true`) or succeed again.
    #[cfg(test)]
    pub(crate) fn fail_applying(&self, tree: Tree, on: bool) {
        self.fail_applying[tree.index()].store(on, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests;
