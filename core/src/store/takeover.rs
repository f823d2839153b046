//! A dead node's work, finished by another (`CLUSTER.md`, behaviour 4;
//! who may take it over is [`crate::cluster::takeover`]'s rule).
//!
//! What a node acknowledged is in two places: what its checkpoints put
//! into the buckets, and what its journal subject holds past its last
//! truncation. The node that takes it over
//! 1. writes the dead node's outbox entries (its gateways' messages not
//!    finished yet, read from the outbox bucket by their writer's tag) into
//!    its own store, so they are its own;
//! 2. replays the dead node's journal through its own writer, in order
//!    (batches are idempotent: a later round's record replaces the earlier,
//!    merges resolve against the record as it is, and node-local
//!    bookkeeping is left out);
//! 3. waits until its own journal has all of it and a checkpoint round
//!    has put it into the buckets as its own, then empties the dead node's
//!    subject.
//!
//! Its gateways then submit the adopted outbox entries to its broker
//! shards, which answer what they know of each transaction and finish the
//! rest — the path a single node takes after a restart.
//!
//! The node that comes back finds the claim done: its cache is stale, so
//! it empties it before it opens its (now empty) journal and fills it from
//! the buckets as a new node would ([`own_journal`]).

use std::time::{Duration, Instant};

use super::{replica, Store, StoreError, Tree, WriteBatch};
use crate::cluster::status::{self, NodeRecord};
use crate::cluster::takeover::{self, Claim, State};
use crate::cluster::Engine;
use crate::journal::jetstream;

/// A node's work taken over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopted {
    /// The dead node.
    pub node: String,
    /// Its outbox entries adopted (from its bucket).
    pub outbox: usize,
    /// Its journal's batches replayed.
    pub batches: usize,
    /// The gateways whose outbox entries were adopted (their member ids).
    pub members: Vec<String>,
    /// How long it took.
    pub took: Duration,
}

/// Outbox entries written per batch.
const CHUNK: usize = 256;

/// How long a takeover waits for this node's cache to hold what the
/// buckets hold.
const CATCH_UP_WAIT: Duration = Duration::from_secs(60);

/// How long a node coming back waits for another node's takeover of it.
const TAKEN_OVER_WAIT: Duration = Duration::from_secs(120);

fn cluster_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Cluster(e.to_string())
}

impl Store {
    /// In a cluster: takes over every node silent for `cluster.ack_wait`
    /// whose claim this node wins ([`takeover::may_claim`]), as the
    /// module says; what it adopted. Blocks (JetStream, the journal):
    /// call it from a thread of its own. Nothing on a single node.
    ///
    /// # Errors
    /// When JetStream does not answer or the journal refuses a batch; a
    /// claim taken stays this node's, and the next call takes it up again.
    pub fn adopt_dead(&self, now_ms: u64) -> Result<Vec<Adopted>, StoreError> {
        let Some(r) = &self.inner.shared.replica else {
            return Ok(Vec::new());
        };
        let engine = r.engine().clone();
        let me = engine.settings().node_id.clone();
        let ack_wait = engine.settings().ack_wait.as_millis() as u64;
        let e = engine.clone();
        let nodes: Vec<NodeRecord> = engine
            .run(async move { status::nodes(&e).await })
            .map_err(cluster_err)?
            .map_err(cluster_err)?;
        let mut out = Vec::new();
        for dead in &nodes {
            if dead.id == me || now_ms.saturating_sub(dead.last_seen_ms) < ack_wait {
                continue;
            }
            let (e, id) = (engine.clone(), dead.id.clone());
            let read = engine
                .run(async move { takeover::read(&e, &id).await })
                .map_err(cluster_err)?
                .map_err(cluster_err)?;
            let claim = read.as_ref().map(|(c, _)| c);
            if !takeover::may_claim(&dead.id, &me, claim, &nodes, now_ms, ack_wait) {
                continue;
            }
            let running = Claim {
                by: me.clone(),
                state: State::Running,
                at_ms: now_ms,
            };
            let Some(rev) = write_claim(&engine, &dead.id, &running, read.map(|(_, rev)| rev))?
            else {
                continue;
            };
            tracing::warn!(node = %dead.id, silent_ms = now_ms.saturating_sub(dead.last_seen_ms), "taking over a silent node's work");
            let adopted = self.adopt(&engine, &dead.id)?;
            let done = Claim {
                state: State::Done,
                ..running
            };
            if write_claim(&engine, &dead.id, &done, Some(rev))?.is_none() {
                tracing::warn!(node = %dead.id, "the takeover's claim changed under it");
            }
            tracing::warn!(node = %dead.id, outbox = adopted.outbox, batches = adopted.batches, took_ms = adopted.took.as_millis() as u64, "took over a silent node's work");
            out.push(adopted);
        }
        Ok(out)
    }

    fn adopt(&self, engine: &Engine, dead: &str) -> Result<Adopted, StoreError> {
        let started = Instant::now();
        let r = self
            .inner
            .shared
            .replica
            .as_ref()
            .ok_or_else(|| cluster_err("not clustered"))?;
        let writer = self.writer();
        r.catch_up(&self.inner.shared, CATCH_UP_WAIT)?;
        tracing::info!(node = %dead, "takeover: this node's cache holds what the buckets hold");
        let entries = r.written_by(Tree::Outbox, dead)?;
        tracing::info!(node = %dead, entries = entries.len(), "takeover: its outbox entries read");
        let mut members: Vec<String> = entries
            .iter()
            .filter_map(|(k, _)| k.split(|b| *b == 0).next())
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect();
        members.sort();
        members.dedup();
        for chunk in entries.chunks(CHUNK) {
            let mut b = WriteBatch::new();
            for (k, v) in chunk {
                b.insert(Tree::Outbox, k.clone(), v.clone());
            }
            writer.try_write(b)?;
        }
        let mut batches = 0;
        jetstream::read_node(engine, dead, &mut |bytes| {
            let mut b = WriteBatch::decode(bytes)
                .map_err(|e| crate::journal::JournalError::Io(format!("{dead}'s journal: {e}")))?;
            b.retain(|t, k| !replica::node_local(t, k));
            if let Err(e) = writer.try_write(b) {
                // Resolving a merge against what the buckets hold failed:
                // the batch's effects are lost, the rest goes on.
                tracing::error!(node = %dead, error = %e, "a taken-over journal batch was not applied");
            }
            batches += 1;
            Ok(())
        })?;
        tracing::info!(node = %dead, batches, "takeover: its journal replayed");
        let flushed = writer.flush();
        engine.run(flushed).map_err(cluster_err)??;
        // Into the buckets, as this node's, before the dead node's journal
        // goes: a node coming back fills its cache from them and must find
        // none of these outbox entries its own.
        self.checkpoint()?;
        tracing::info!(node = %dead, "takeover: durable here and in the buckets");
        jetstream::purge_node(engine, dead)?;
        Ok(Adopted {
            node: dead.to_owned(),
            outbox: entries.len(),
            batches,
            members,
            took: started.elapsed(),
        })
    }
}

fn write_claim(
    engine: &Engine,
    node: &str,
    claim: &Claim,
    rev: Option<u64>,
) -> Result<Option<u64>, StoreError> {
    let (e, id, c) = (engine.clone(), node.to_owned(), claim.clone());
    engine
        .run(async move { takeover::write(&e, &id, &c, rev).await })
        .map_err(cluster_err)?
        .map_err(cluster_err)
}

/// Makes this node the owner of its journal before it opens it, `wipe`
/// emptying its cache when another node took its work over meanwhile
/// (waiting while that takeover runs). The claim written now is young, so
/// no node takes this one over while it starts.
///
/// # Errors
/// When JetStream does not answer, or another node's takeover of this one
/// has not finished within two minutes.
pub(super) fn own_journal(
    engine: &Engine,
    now_ms: impl Fn() -> u64,
    wipe: impl Fn() -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let me = engine.settings().node_id.clone();
    let deadline = Instant::now() + TAKEN_OVER_WAIT;
    loop {
        let (e, id) = (engine.clone(), me.clone());
        let read = engine
            .run(async move { takeover::read(&e, &id).await })
            .map_err(cluster_err)?
            .map_err(cluster_err)?;
        let own = Claim {
            by: me.clone(),
            state: State::Own,
            at_ms: now_ms(),
        };
        let rev = match &read {
            Some((c, _)) if c.by != me && c.state == State::Running => {
                if Instant::now() > deadline {
                    return Err(cluster_err(format!(
                        "node {:?} has been taking this node's work over for over {} s; start again once it is done",
                        c.by,
                        TAKEN_OVER_WAIT.as_secs()
                    )));
                }
                tracing::info!(by = %c.by, "another node is taking this node's work over; waiting");
                std::thread::sleep(Duration::from_millis(250));
                continue;
            }
            Some((c, rev)) => {
                if c.by != me && c.state == State::Done {
                    tracing::warn!(by = %c.by, "another node took this node's work over; emptying the cache and starting afresh");
                    wipe()?;
                }
                Some(*rev)
            }
            None => None,
        };
        if write_claim(engine, &me, &own, rev)?.is_some() {
            return Ok(());
        }
    }
}

/// Empties every tree of `db` (the cache of a node whose work another
/// node took over) and makes that durable.
pub(super) fn wipe(db: &sled::Db) -> Result<(), StoreError> {
    for name in db.tree_names() {
        db.open_tree(&name)?.clear()?;
    }
    db.flush()?;
    Ok(())
}
