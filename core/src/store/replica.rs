//! The store of record in a cluster (`CLUSTER.md`): one JetStream KV bucket
//! per tree. A node's checkpointer puts what its rounds fold (after its
//! local sled has it, before the journal lets go of it), and every node
//! watches every bucket into its local sled, which in a cluster is a cache
//! of the buckets: a write on one node is read on the others a round later
//! (≈ [`super::checkpoint::INTERVAL`] plus a publish).
//!
//! A bucket key is `k` + the tree key in hex (KV keys allow few
//! characters); a value is `tag length u8 ‖ the writing node's id ‖ the
//! tree value`, so a node's watcher skips its own puts (its sled has them
//! already, and a late echo must not overwrite a newer local value) —
//! except while it fills a fresh cache. Node-local bookkeeping in
//! [`Tree::Meta`] (the journal cut, the id blocks, the watchers'
//! revisions) never leaves the node.
//!
//! Keys are written by one node at a time (a transaction's by the node
//! running it, a user's by whoever an operator asked, an inbox entry by the
//! node that delivered it): what a round puts is the latest value of keys
//! it owns, so no compare-and-set is needed on this path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_nats::jetstream::kv;
use async_nats::jetstream::message::PublishMessage;
use futures_util::StreamExt;

use super::overlay::Generation;
use super::{Shared, StoreError, Tree};
use crate::cluster::{names, Engine};
use crate::journal::lock;

/// Meta keys that no tree put carries: a node's own bookkeeping, and the
/// cluster's id blocks (kept by compare-and-set, not by the rounds).
pub(super) fn node_local(t: Tree, key: &[u8]) -> bool {
    t == Tree::Meta
        && [&b"journal."[..], b"ids.", b"kv.rev.", b"cluster."]
            .iter()
            .any(|p| key.starts_with(p))
}

/// The bucket key of a tree key.
pub(super) fn bucket_key(key: &[u8]) -> String {
    let mut s = String::with_capacity(1 + 2 * key.len());
    s.push('k');
    for b in key {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The tree key of a bucket key (`None`: not one of ours).
fn tree_key(key: &str) -> Option<Vec<u8>> {
    let hex = key.strip_prefix('k')?.as_bytes();
    if hex.len() % 2 != 0 {
        return None;
    }
    hex.chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok())
        .collect()
}

/// `tag ‖ value`.
fn tagged(node: &str, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + node.len() + value.len());
    v.push(node.len() as u8);
    v.extend_from_slice(node.as_bytes());
    v.extend_from_slice(value);
    v
}

/// (the writer's id, the value) of a tagged value.
fn untag(v: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = *v.first()? as usize;
    Some((v.get(1..1 + n)?, v.get(1 + n..)?))
}

/// A key and its value.
pub(super) type KeyValue = (Vec<u8>, Vec<u8>);

/// Called for every change another node made, once the local cache has it.
/// The directory refreshes its cached users and member keys by it; the IM
/// sessions push what another node put into their users' inboxes.
pub type Listener = Arc<dyn Fn(&RemoteChange<'_>) + Send + Sync>;

/// A change another node made.
#[derive(Debug, Clone, Copy)]
pub struct RemoteChange<'a> {
    /// The tree.
    pub tree: Tree,
    /// The key.
    pub key: &'a [u8],
    /// The value this node had before (`None`: none).
    pub old: Option<&'a [u8]>,
    /// The value now (`None`: removed).
    pub new: Option<&'a [u8]>,
}

/// The buckets and the watchers.
pub(crate) struct Replica {
    engine: Engine,
    node: String,
    listeners: Mutex<Vec<Listener>>,
    /// Per tree: whether its watcher has caught up with the bucket.
    caught_up: Mutex<HashMap<Tree, bool>>,
    caught_up_cv: std::sync::Condvar,
    /// When a round's puts last went through.
    published: Mutex<std::time::Instant>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn kv_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Cluster(e.to_string())
}

/// The revision of `bucket`'s last change (0: none).
async fn last_revision(bucket: &kv::Store) -> Result<u64, StoreError> {
    Ok(bucket
        .status()
        .await
        .map_err(kv_err)?
        .info
        .state
        .last_sequence)
}

/// `t`'s bucket.
async fn bucket(engine: &Engine, t: Tree) -> Result<kv::Store, StoreError> {
    engine
        .js()
        .get_key_value(names::tree_bucket(t.name()))
        .await
        .map_err(|e| kv_err(format!("bucket of {}: {e}", t.name())))
}

/// Publishes in flight at most, per round.
const IN_FLIGHT: usize = 1024;

impl Replica {
    pub(super) fn new(engine: &Engine) -> Self {
        Self {
            node: engine.settings().node_id.clone(),
            engine: engine.clone(),
            listeners: Mutex::new(Vec::new()),
            caught_up: Mutex::new(HashMap::new()),
            caught_up_cv: std::sync::Condvar::new(),
            published: Mutex::new(std::time::Instant::now()),
        }
    }

    pub(super) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The latest value of every key of `t`'s bucket that `writer` put
    /// last (a takeover's outbox entries).
    pub(super) fn written_by(&self, t: Tree, writer: &str) -> Result<Vec<KeyValue>, StoreError> {
        let engine = self.engine.clone();
        let writer = writer.as_bytes().to_vec();
        self.engine
            .run(async move {
                let bucket = bucket(&engine, t).await?;
                let mut out = Vec::new();
                if bucket.status().await.map_err(kv_err)?.info.state.messages == 0 {
                    return Ok(out);
                }
                // The last value of each key, then the watch's live tail,
                // which is not wanted: the last of them says `delta` 0.
                let mut w = bucket.watch_with_history(">").await.map_err(kv_err)?;
                while let Some(entry) = w.next().await {
                    let entry = entry.map_err(kv_err)?;
                    if entry.operation == kv::Operation::Put {
                        if let (Some(key), Some((by, value))) =
                            (tree_key(&entry.key), untag(&entry.value))
                        {
                            if by == writer.as_slice() {
                                out.push((key, value.to_vec()));
                            }
                        }
                    }
                    if entry.delta == 0 {
                        break;
                    }
                }
                Ok::<_, StoreError>(out)
            })
            .map_err(kv_err)?
    }

    /// Waits (up to `within`) until every tree's watcher has applied what
    /// its bucket holds now: a takeover's replayed merges resolve against
    /// the dead node's last published records.
    pub(super) fn catch_up(&self, shared: &Shared, within: Duration) -> Result<(), StoreError> {
        let engine = self.engine.clone();
        let last = self
            .engine
            .run(async move {
                let mut last = Vec::with_capacity(Tree::ALL.len());
                for t in Tree::ALL {
                    let seq = last_revision(&bucket(&engine, t).await?).await?;
                    last.push((t, seq));
                }
                Ok::<_, StoreError>(last)
            })
            .map_err(kv_err)??;
        let deadline = std::time::Instant::now() + within;
        for (t, seq) in last {
            while super::checkpoint::meta_u64(shared, &rev_key(t))? < seq {
                if std::time::Instant::now() > deadline {
                    return Err(StoreError::Cluster(format!(
                        "the {} watcher did not catch up with its bucket within {} s",
                        t.name(),
                        within.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }

    pub(super) fn listen(&self, l: Listener) {
        lock(&self.listeners).push(l);
    }

    /// Puts a round's generation into the buckets and waits until
    /// JetStream has all of it.
    pub(super) fn publish(&self, gen: &Generation) -> Result<(), StoreError> {
        self.publish_changes(gen.trees().flat_map(|(t, entries)| {
            entries
                .iter()
                .map(move |(k, v)| (t, k.as_slice(), v.as_deref()))
        }))
    }

    /// Puts `(tree, key, value or removed)` into the buckets and waits
    /// until JetStream has all of it.
    pub(super) fn publish_changes<'a>(
        &self,
        changes: impl Iterator<Item = (Tree, &'a [u8], Option<&'a [u8]>)>,
    ) -> Result<(), StoreError> {
        let mut msgs: Vec<(String, PublishMessage)> = Vec::new();
        for (t, k, v) in changes {
            if node_local(t, k) {
                continue;
            }
            let subject = format!("$KV.{}.{}", names::tree_bucket(t.name()), bucket_key(k));
            let m = match v {
                Some(v) => PublishMessage::build().payload(tagged(&self.node, v).into()),
                None => {
                    let mut h = async_nats::HeaderMap::new();
                    h.insert("KV-Operation", "DEL");
                    PublishMessage::build().headers(h)
                }
            };
            msgs.push((subject, m));
        }
        if msgs.is_empty() {
            return Ok(());
        }
        // A node that could not publish for half of `ack_wait` (paused,
        // starved, cut off) may have been taken over meanwhile: its rounds
        // would then put stale values over the taker's (its outbox entries
        // among them), so it asks first.
        if lock(&self.published).elapsed() >= self.engine.settings().ack_wait / 2 {
            self.not_taken_over()?;
        }
        let engine = self.engine.clone();
        self.engine
            .run(async move {
                let mut msgs = msgs.into_iter().peekable();
                while msgs.peek().is_some() {
                    let mut acks = Vec::with_capacity(IN_FLIGHT);
                    for (subject, m) in msgs.by_ref().take(IN_FLIGHT) {
                        acks.push(engine.js().send_publish(subject, m).await.map_err(kv_err)?);
                    }
                    for a in acks {
                        a.await.map_err(kv_err)?;
                    }
                }
                Ok::<_, StoreError>(())
            })
            .map_err(kv_err)??;
        *lock(&self.published) = std::time::Instant::now();
        Ok(())
    }

    /// An error when another node holds this node's claim
    /// ([`crate::cluster::takeover`]).
    fn not_taken_over(&self) -> Result<(), StoreError> {
        let (engine, me) = (self.engine.clone(), self.node.clone());
        let read = self
            .engine
            .run(async move { crate::cluster::takeover::read(&engine, &me).await })
            .map_err(kv_err)?
            .map_err(kv_err)?;
        match read {
            Some((c, _)) if c.by != self.node => Err(StoreError::Cluster(format!(
                "node {:?} took this node's work over; nothing more is published",
                c.by
            ))),
            _ => Ok(()),
        }
    }

    /// Starts one watcher per tree on the engine's thread and waits until
    /// each has caught up with its bucket.
    pub(super) fn watch(self: &Arc<Self>, shared: &Arc<Shared>) -> Result<(), StoreError> {
        for t in Tree::ALL {
            lock(&self.caught_up).insert(t, false);
            let me = self.clone();
            let weak = Arc::downgrade(shared);
            let rev = super::checkpoint::meta_u64(shared, &rev_key(t))?;
            let e = self.engine.clone();
            let bucket = self
                .engine
                .run(async move { bucket(&e, t).await })
                .map_err(kv_err)??;
            self.engine.spawn(async move {
                // A watcher outlives a lost quorum or a reconnect: it starts
                // again from the last revision it applied.
                let mut rev = rev;
                let mut backoff = std::time::Duration::from_millis(100);
                loop {
                    match me.run_watch(t, &bucket, rev, &weak).await {
                        Ok(()) => return,
                        Err(e) => {
                            tracing::warn!(tree = t.name(), error = %e, "a store watcher stopped; starting it again");
                            me.mark_caught_up(t);
                        }
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
                    let Some(s) = weak.upgrade() else { return };
                    rev = super::checkpoint::meta_u64(&s, &rev_key(t)).unwrap_or(rev);
                }
            });
        }
        let mut g = lock(&self.caught_up);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while g.values().any(|c| !c) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(StoreError::Cluster(
                    "the store's buckets did not catch up within 60 s".into(),
                ));
            }
            g = self
                .caught_up_cv
                .wait_timeout(g, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(())
    }

    fn mark_caught_up(&self, t: Tree) {
        lock(&self.caught_up).insert(t, true);
        self.caught_up_cv.notify_all();
    }

    async fn run_watch(
        &self,
        t: Tree,
        bucket: &kv::Store,
        rev: u64,
        shared: &Weak<Shared>,
    ) -> Result<(), StoreError> {
        // A fresh cache takes every key, its own node's too.
        let fresh = rev == 0;
        let mut w = if fresh {
            bucket.watch_with_history(">").await
        } else {
            bucket.watch_all_from_revision(rev + 1).await
        }
        .map_err(kv_err)?;
        // Caught up once the bucket's last revision is applied (at once
        // when there is nothing past `rev`).
        let last = last_revision(bucket).await?;
        if last <= rev {
            self.mark_caught_up(t);
        }
        while let Some(entry) = w.next().await {
            let entry = entry.map_err(kv_err)?;
            let Some(s) = shared.upgrade() else {
                return Ok(());
            };
            let caught_up = entry.delta == 0 || entry.revision >= last;
            self.apply(&s, t, &entry, fresh)?;
            if caught_up {
                self.mark_caught_up(t);
            }
        }
        Ok(())
    }

    fn apply(&self, s: &Shared, t: Tree, e: &kv::Entry, fresh: bool) -> Result<(), StoreError> {
        let meta = &s.trees[Tree::Meta.index()];
        let Some(key) = tree_key(&e.key).filter(|k| !node_local(t, k)) else {
            // Applied as far as this revision all the same (what
            // `catch_up` waits for).
            meta.insert(rev_key(t), &e.revision.to_be_bytes())?;
            return Ok(());
        };
        let tree = &s.trees[t.index()];
        let changed = match e.operation {
            kv::Operation::Put => match untag(&e.value) {
                Some((writer, value)) if takes(t, writer == self.node.as_bytes(), fresh) => {
                    Some((tree.insert(&key[..], value)?, Some(value)))
                }
                Some(_) => None,
                None => {
                    tracing::warn!(tree = t.name(), key = %e.key, "an untagged value in the store's bucket");
                    None
                }
            },
            kv::Operation::Delete | kv::Operation::Purge => {
                tree.remove(&key[..])?.map(|old| (Some(old), None))
            }
        };
        meta.insert(rev_key(t), &e.revision.to_be_bytes())?;
        if let Some((old, new)) = changed {
            let change = RemoteChange {
                tree: t,
                key: &key,
                old: old.as_deref(),
                new,
            };
            for l in lock(&self.listeners).iter() {
                l(&change);
            }
        }
        Ok(())
    }
}

impl Replica {
    /// Reserves `n` ids cluster-wide: the block's first id. One
    /// compare-and-set on the meta bucket per block (a million ids), off
    /// the hot path.
    pub(super) fn reserve_ids(&self, n: u64) -> Result<u64, StoreError> {
        let engine = self.engine.clone();
        self.engine
            .run(async move {
                let kv = bucket(&engine, Tree::Meta).await?;
                let key = bucket_key(CLUSTER_IDS);
                for _ in 0..100 {
                    let entry = kv.entry(&key).await.map_err(kv_err)?;
                    let (start, rev) = match &entry {
                        Some(e) if e.operation == kv::Operation::Put => (
                            e.value
                                .as_ref()
                                .try_into()
                                .map(u64::from_be_bytes)
                                .map_err(|_| kv_err("a corrupt cluster id block"))?,
                            e.revision,
                        ),
                        Some(e) => (1, e.revision),
                        None => (1, 0),
                    };
                    let end = (start + n).to_be_bytes().to_vec();
                    let done = if rev == 0 {
                        kv.create(&key, end.into()).await.is_ok()
                    } else {
                        kv.update(&key, end.into(), rev).await.is_ok()
                    };
                    if done {
                        return Ok(start);
                    }
                }
                Err(kv_err("could not reserve a cluster id block in 100 tries"))
            })
            .map_err(kv_err)?
    }
}

impl Replica {
    /// Claims the cluster's initialisation for this node: `true` for the
    /// one node that first asks (a create on the meta bucket, which fails
    /// when the key exists), `false` for every other.
    pub(super) fn claim_init(&self) -> Result<bool, StoreError> {
        let engine = self.engine.clone();
        let node = self.node.clone();
        self.engine
            .run(async move {
                let kv = bucket(&engine, Tree::Meta).await?;
                match kv
                    .create(bucket_key(CLUSTER_INIT), node.into_bytes().into())
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(kv_err(e)),
                }
            })
            .map_err(kv_err)?
    }
}

/// Whether a watcher puts a value of `t` into the cache: another node's
/// (this node's own are there already), and this node's own only into a
/// fresh cache. Outbox entries are the one exception: only this node's
/// own, and only into a fresh cache — an entry is its gateway's, which
/// resubmits it at start; other nodes' gateways have the same member ids
/// and would resubmit theirs (a takeover adopts a dead node's entries
/// explicitly, [`super::takeover`]).
fn takes(t: Tree, own: bool, fresh: bool) -> bool {
    match t {
        Tree::Outbox => own && fresh,
        _ => fresh || !own,
    }
}

/// The meta bucket's key naming the node that initialised the cluster.
const CLUSTER_INIT: &[u8] = b"cluster.init";

/// The meta bucket's key of the cluster's next free id block (written
/// only by [`Replica::reserve_ids`], never by a tree put: it is not a
/// tree key of any node).
const CLUSTER_IDS: &[u8] = b"cluster.ids";

/// Where a tree's watcher keeps the last revision it applied.
fn rev_key(t: Tree) -> Vec<u8> {
    format!("kv.rev.{}", t.name()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        for k in [&b"alice\0m\x00\x01"[..], b"", b"\xff\xfe"] {
            assert_eq!(tree_key(&bucket_key(k)).as_deref(), Some(k));
        }
        assert_eq!(bucket_key(b"a\0"), "k6100");
        assert_eq!(tree_key("x61"), None);
        assert_eq!(tree_key("k6"), None);
        let v = tagged("node-a", b"value");
        assert_eq!(untag(&v), Some((&b"node-a"[..], &b"value"[..])));
        assert_eq!(untag(&[9, 1]), None);
        assert!(node_local(Tree::Meta, b"journal.checkpoint"));
        assert!(!node_local(Tree::Meta, b"broker.key"));
        assert!(!node_local(Tree::Profiles, b"journal.x"));
    }

    #[test]
    fn outbox_entries_come_into_a_cache_only_from_their_own_node() {
        assert!(takes(Tree::Outbox, true, true));
        assert!(!takes(Tree::Outbox, false, true));
        assert!(!takes(Tree::Outbox, false, false));
        assert!(!takes(Tree::Outbox, true, false));
        assert!(takes(Tree::Txn, false, false));
        assert!(takes(Tree::Txn, true, true));
        assert!(!takes(Tree::Txn, true, false));
    }
}
