//! The checkpointer: folds the overlay into sled off the critical path and
//! lets the journal go of what sled then holds.
//!
//! One round: freeze the overlay's current generation (the journal position
//! after its last batch is the round's *cut*), wait until the journal is
//! durable past the cut (sled never holds what a power cut could take from
//! the journal), apply it to sled one batch
//! per tree, `flush` sled and `fdatasync` its files (sled's own flush ends
//! in `sync_file_range`, which survives `kill -9` but not a power cut), then
//! record the cut in [`Tree::Meta`] and make that durable the same way, and
//! only then truncate the journal before the cut. A crash anywhere in a
//! round leaves the previous cut recorded and the journal whole from it, so
//! recovery ([`recover`]) applies the batches again, in the journal's
//! order, onto a sled that may hold part of the round that died. Plain sets
//! and removals come out the same; a merge may find what it names already
//! changed by that later part: deltas are idempotent (a trail is rebuilt
//! from the position the delta names), and a merge naming an outbox entry
//! the round already removed takes the IMI or text from its own record,
//! which the round wrote first — the outbox tree is applied last in every
//! round, so if an entry's removal reached sled, every record naming it did
//! too.
//!
//! Rounds run every [`INTERVAL`] (short: a round's sled work comes in
//! small bursts, not one the actors would queue behind, and while little
//! waits behind it a round paces its chunks over the interval), sooner
//! when the overlay holds [`OVERLAY_OPS`] operations, and once more when
//! the store closes, so the overlay's memory and the journal's length (and
//! with it restart time) stay bounded by what arrives in about one
//! interval.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::overlay::Generation;
use super::write::{resolve, Change, WriteBatch};
use super::{Shared, StoreError, Tree};
use crate::journal::{lock, Position};

/// How often a round runs at most apart.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// Operations in the overlay that start a round early.
pub const OVERLAY_OPS: usize = 256 * 1024;

/// Where the last round's cut is recorded in [`Tree::Meta`].
const CUT_KEY: &[u8] = b"journal.checkpoint";

/// Wakes the checkpointer thread early, or stops it.
#[derive(Debug, Default)]
pub(super) struct Signal {
    state: Mutex<(bool, bool)>,
    cv: Condvar,
}

impl Signal {
    /// A round should run now (the overlay is full).
    pub(super) fn nudge(&self) {
        lock(&self.state).0 = true;
        self.cv.notify_one();
    }

    fn stop(&self) {
        lock(&self.state).1 = true;
        self.cv.notify_one();
    }

    /// Whether the store is closing (its last round runs unpaced).
    fn stopping(&self) -> bool {
        lock(&self.state).1
    }

    /// Waits up to `d` for a nudge; whether to stop.
    fn wait(&self, d: Duration) -> bool {
        let g = lock(&self.state);
        let (mut g, _) = self
            .cv
            .wait_timeout_while(g, d, |(nudged, stop)| !*nudged && !*stop)
            .unwrap_or_else(|p| p.into_inner());
        g.0 = false;
        g.1
    }
}

/// The checkpointer thread; dropping it runs a last round and joins it.
#[derive(Debug)]
pub(super) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(super) fn spawn(shared: Arc<Shared>) -> Self {
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || {
                while !s.checkpoints.wait(INTERVAL) {
                    if s.faults.timer_held() {
                        continue;
                    }
                    if let Err(e) = round(&s) {
                        tracing::error!(error = %e, "checkpoint failed; the journal keeps everything since the last one");
                    }
                }
                if let Err(e) = round(&s) {
                    tracing::error!(error = %e, "the last checkpoint failed; recovery replays the journal");
                }
                s.journal.close();
            })
            .expect("spawning the checkpointer thread");
        Self {
            shared,
            thread: Some(thread),
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.checkpoints.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs one round now (in the caller's thread; rounds never overlap).
///
/// # Errors
/// When sled or the files fail; everything stays in the overlay and the
/// journal, and the next round retries.
pub(super) fn round(s: &Shared) -> Result<(), StoreError> {
    let _one = lock(&s.round);
    let t0 = Instant::now();
    let (gen, cut) = {
        let mut o = s.overlay.write().unwrap_or_else(|p| p.into_inner());
        let pending = o.frozen();
        if pending.is_empty() {
            if o.pending_ops() == 0 {
                return Ok(());
            }
            (
                o.freeze(),
                s.appended.load(std::sync::atomic::Ordering::Acquire),
            )
        } else {
            // A failed round's generation goes first; its cut was not
            // recorded, so the one recorded before still holds.
            (pending, *lock(&s.frozen_cut))
        }
    };
    *lock(&s.frozen_cut) = cut;
    // Only what is durable goes into sled: a batch a power cut could still
    // take from the journal must not outlive it there.
    wait_durable(s, cut)?;
    let ops = gen.ops as u64;
    apply_generation(s, &gen)?;
    let applied = t0.elapsed();
    sync(s)?;
    if let Some(r) = &s.replica {
        // The store of record has it before the journal lets go of it.
        r.publish(&gen)?;
    }
    let synced = t0.elapsed();
    record_cut(s, cut)?;
    let recorded = t0.elapsed();
    s.overlay
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .drop_frozen();
    drop(gen);
    s.journal.truncate_before(cut)?;
    tracing::debug!(
        ops,
        apply_ms = applied.as_millis() as u64,
        sync_ms = (synced - applied).as_millis() as u64,
        record_ms = (recorded - synced).as_millis() as u64,
        total_ms = t0.elapsed().as_millis() as u64,
        "checkpoint"
    );
    metrics::histogram!("switchboard_checkpoint_seconds").record(t0.elapsed().as_secs_f64());
    metrics::counter!("switchboard_checkpoint_ops_total").increment(ops);
    Ok(())
}

/// Blocks until the journal is durable past `cut` (a group commit: about
/// a millisecond).
fn wait_durable(s: &Shared, cut: Position) -> Result<(), StoreError> {
    while s.journal.durable() < cut {
        if let Some(e) = s.journal.failed() {
            return Err(e.into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// Operations per sled batch a round applies: sled's `apply_batch` holds
/// a lock every other operation on the database waits for, so a round
/// applies small batches and readers on the actors' threads slip between
/// them (the round needs no atomicity: the overlay keeps the view whole
/// and the journal the recovery).
const APPLY_CHUNK: usize = 256;

/// Applies a generation to sled, in batches of [`APPLY_CHUNK`].
fn apply_generation(s: &Shared, gen: &Generation) -> Result<(), StoreError> {
    // The outbox last: records that name an outbox entry reach sled before
    // the entry's removal can (see the module's notes on recovery).
    let (outbox, rest): (Vec<_>, Vec<_>) = gen.trees().partition(|(t, _)| *t == Tree::Outbox);
    for (t, entries) in rest.into_iter().chain(outbox) {
        if entries.is_empty() {
            continue;
        }
        if s.faults.fails(t) {
            return Err(StoreError::Sled("injected failure".into()));
        }
        let mut entries = entries.iter().peekable();
        while entries.peek().is_some() {
            let mut b = sled::Batch::default();
            for (k, v) in entries.by_ref().take(APPLY_CHUNK) {
                match v {
                    Some(v) => b.insert(k.as_slice(), &v[..]),
                    None => b.remove(k.as_slice()),
                }
            }
            s.trees[t.index()].apply_batch(b)?;
            pace(s);
        }
    }
    Ok(())
}

/// Between two chunks: while little waits behind this round (under an
/// eighth of [`OVERLAY_OPS`]), the round steps aside for [`PACE`] so the
/// actors' threads get the cores — spread over the interval, its sled work
/// no longer stalls them in bursts (at half of peak the p99 latency fell
/// from 31–86 ms to 10–15 ms, `docs/PERFORMANCE.md`). With a backlog it
/// goes on at once, so the overlay stays bounded and the peak is the same;
/// so does the last round when the store closes.
fn pace(s: &Shared) {
    let behind = s
        .overlay
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .pending_ops();
    if behind < OVERLAY_OPS / 8 && !s.checkpoints.stopping() {
        std::thread::sleep(PACE);
    } else {
        std::thread::yield_now();
    }
}

/// How long a round steps aside between chunks when little is behind it
/// (a chunk's sled work takes about as long on this machine).
const PACE: Duration = Duration::from_millis(3);

/// Makes what sled holds survive a power cut: its flush, then `fdatasync`
/// of its data file and of the blob files (values over a quarter segment)
/// that no round has synced yet.
fn sync(s: &Shared) -> Result<(), StoreError> {
    s.db.flush()?;
    let io = |e: std::io::Error| StoreError::Sled(format!("syncing the database: {e}"));
    File::open(s.dir.join("db"))
        .and_then(|f| f.sync_data())
        .map_err(io)?;
    let blobs = s.dir.join("blobs");
    if blobs.is_dir() {
        let mut synced = lock(&s.synced_blobs);
        let mut any = false;
        for e in std::fs::read_dir(&blobs).map_err(io)? {
            let e = e.map_err(io)?;
            let name = e.file_name();
            if !synced.contains(&name) {
                File::open(e.path())
                    .and_then(|f| f.sync_all())
                    .map_err(io)?;
                synced.insert(name);
                any = true;
            }
        }
        if any {
            sync_dir(&blobs).map_err(io)?;
        }
    }
    Ok(())
}

/// Records `cut` in [`Tree::Meta`] and makes it durable (after the data it
/// covers is).
fn record_cut(s: &Shared, cut: Position) -> Result<(), StoreError> {
    let mut b = sled::Batch::default();
    b.insert(CUT_KEY, &cut.to_be_bytes());
    s.trees[Tree::Meta.index()].apply_batch(b)?;
    sync(s)
}

/// A big-endian u64 sled holds in [`Tree::Meta`] under `key` (0 when none).
pub(super) fn meta_u64(s: &Shared, key: &[u8]) -> Result<u64, StoreError> {
    Ok(s.trees[Tree::Meta.index()]
        .get(key)?
        .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// At open: applies to sled every journal batch after the recorded cut,
/// then runs a round so the journal starts short. Returns the batches
/// replayed.
///
/// # Errors
/// When sled or the journal fails, or a batch does not decode.
pub(super) fn recover(s: &Shared) -> Result<usize, StoreError> {
    let cut: Position = meta_u64(s, CUT_KEY)?;
    let mut replayed = 0usize;
    let mut failed = None;
    let mut last = cut;
    // In a cluster, what the replay touched goes to the store of record
    // before the journal lets go of it.
    let mut touched: std::collections::BTreeSet<(usize, Vec<u8>)> = Default::default();
    s.journal
        .replay(cut, &mut |end, bytes| {
            if failed.is_some() {
                return;
            }
            let applied = WriteBatch::decode(bytes).and_then(|b| apply_batch(s, b, &mut touched));
            match applied {
                Ok(()) => {
                    replayed += 1;
                    last = end;
                }
                Err(e) => failed = Some(e),
            }
        })
        .map_err(StoreError::from)?;
    if let Some(e) = failed {
        return Err(e);
    }
    s.appended.store(
        last.max(s.journal.durable()),
        std::sync::atomic::Ordering::Release,
    );
    if replayed > 0 {
        tracing::info!(
            batches = replayed,
            from = cut,
            "replayed the journal into the store"
        );
        sync(s)?;
        if let Some(r) = &s.replica {
            let mut values = Vec::with_capacity(touched.len());
            for (t, k) in &touched {
                values.push((Tree::ALL[*t], k.as_slice(), s.trees[*t].get(k)?));
            }
            r.publish_changes(values.iter().map(|(t, k, v)| (*t, *k, v.as_deref())))?;
        }
        record_cut(s, last)?;
        s.journal.truncate_before(last)?;
    }
    Ok(replayed)
}

/// Applies one replayed batch to sled directly (nothing reads yet).
fn apply_batch(
    s: &Shared,
    b: WriteBatch,
    touched: &mut std::collections::BTreeSet<(usize, Vec<u8>)>,
) -> Result<(), StoreError> {
    let mut per: Vec<Option<sled::Batch>> = vec![None; Tree::ALL.len()];
    let changes = resolve(b.into_ops(), |t, k| {
        Ok(s.trees[t.index()].get(k)?.map(|v| v.to_vec()))
    })?;
    let clustered = s.replica.is_some();
    for (t, c) in changes {
        let batch = per[t.index()].get_or_insert_with(sled::Batch::default);
        let k = match c {
            Change::Put(k, v) => {
                batch.insert(&k[..], v);
                k
            }
            Change::Delete(k) => {
                batch.remove(&k[..]);
                k
            }
        };
        if clustered {
            touched.insert((t.index(), k.to_vec()));
        }
    }
    for (i, b) in per.into_iter().enumerate() {
        if let Some(b) = b {
            s.trees[i].apply_batch(b)?;
        }
    }
    Ok(())
}
