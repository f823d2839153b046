//! Two nodes' stores over one real three-server JetStream cluster: what
//! one writes the other reads, a node lost before its checkpoint loses
//! nothing, ids stay unique across nodes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Store, Tree, WriteBatch};
use crate::cluster::testkit::NatsCluster;
use crate::cluster::{init, Engine, Settings};

/// A change another node made, as a listener is told of it.
type Changed = (Tree, Vec<u8>);

fn engine(c: &NatsCluster, node: &str) -> Engine {
    engine_with(&Settings::new(node, &c.urls(), 3))
}

fn engine_with(settings: &Settings) -> Engine {
    let e = Engine::connect(settings, Duration::from_secs(10)).unwrap();
    let one = e.clone();
    e.run(async move {
        init::wait_ready(&one, Duration::from_secs(20)).await?;
        init::ensure(&one, &Tree::names()).await
    })
    .unwrap()
    .unwrap();
    e
}

/// Polls `f` until it holds (bounded: 10 s).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn put(s: &Store, t: Tree, k: &[u8], v: &[u8]) {
    let mut b = WriteBatch::new();
    b.insert(t, k.to_vec(), v.to_vec());
    futures_block(s.writer().write(b)).unwrap();
}

fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn what_one_node_writes_the_other_reads_and_is_told_of() {
    let c = NatsCluster::start(3);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Store::open_clustered(da.path(), &engine(&c, "a")).unwrap();
    let b = Store::open_clustered(db.path(), &engine(&c, "b")).unwrap();
    assert!(a.clustered());
    let told: Arc<Mutex<Vec<Changed>>> = Arc::default();
    let t = told.clone();
    b.on_remote_change(Arc::new(move |c| {
        t.lock().unwrap().push((c.tree, c.key.to_vec()))
    }));
    put(&a, Tree::Profiles, b"alice", b"{\"v\":1}");
    eventually("b reads alice", || {
        b.get(Tree::Profiles, b"alice").unwrap().as_deref() == Some(&b"{\"v\":1}"[..])
    });
    assert!(told
        .lock()
        .unwrap()
        .contains(&(Tree::Profiles, b"alice".to_vec())));
    // A change and a removal travel the same way; b's own write goes to a.
    put(&a, Tree::Profiles, b"alice", b"{\"v\":2}");
    put(&b, Tree::Inbox, b"bob\0m\0\0\0\x01", b"hello");
    eventually("b reads the change", || {
        b.get(Tree::Profiles, b"alice").unwrap().as_deref() == Some(&b"{\"v\":2}"[..])
    });
    eventually("a reads b's write", || {
        a.get(Tree::Inbox, b"bob\0m\0\0\0\x01").unwrap().is_some()
    });
    let mut rm = WriteBatch::new();
    rm.remove(Tree::Profiles, b"alice".to_vec());
    futures_block(a.writer().write(rm)).unwrap();
    eventually("b sees the removal", || {
        b.get(Tree::Profiles, b"alice").unwrap().is_none()
    });
    // Node-local bookkeeping stays home: b's journal cut is b's.
    assert!(told
        .lock()
        .unwrap()
        .iter()
        .all(|(t, k)| *t != Tree::Meta || !k.starts_with(b"journal.")));
    // Ids are the cluster's: two nodes never hand out the same one.
    let ia: Vec<u64> = (0..5).map(|_| a.next_id().unwrap()).collect();
    let ib: Vec<u64> = (0..5).map(|_| b.next_id().unwrap()).collect();
    assert!(ia.iter().all(|i| !ib.contains(i)), "{ia:?} {ib:?}");
    // A third node starting with an empty cache gets everything.
    let dc = tempfile::tempdir().unwrap();
    let c3 = Store::open_clustered(dc.path(), &engine(&c, "c")).unwrap();
    assert!(c3.get(Tree::Inbox, b"bob\0m\0\0\0\x01").unwrap().is_some());
    assert!(c3.get(Tree::Profiles, b"alice").unwrap().is_none());
}

#[test]
fn a_node_lost_before_its_checkpoint_loses_nothing() {
    let c = NatsCluster::start(3);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let b = Store::open_clustered(db.path(), &engine(&c, "b")).unwrap();
    let a = Store::open_clustered(da.path(), &engine(&c, "a")).unwrap();
    // a's rounds never run: what it acknowledged is in its journal only.
    a.faults().hold_timer(true);
    for i in 0..50u8 {
        put(&a, Tree::Txn, &[b't', i], &[i; 40]);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        b.get(Tree::Txn, b"t\x01").unwrap().is_none(),
        "no round ran"
    );
    // The machine is gone (its disk too); a is started again elsewhere.
    std::mem::forget(a);
    let da2 = tempfile::tempdir().unwrap();
    let a2 = Store::open_clustered(da2.path(), &engine(&c, "a")).unwrap();
    for i in 0..50u8 {
        assert_eq!(a2.get(Tree::Txn, &[b't', i]).unwrap(), Some(vec![i; 40]));
    }
    eventually("b reads what a acknowledged", || {
        (0..50u8).all(|i| b.get(Tree::Txn, &[b't', i]).unwrap().is_some())
    });
}

/// Beats `node`'s heartbeat record, last seen at `at_ms`.
fn beat(e: &Engine, node: &str, at_ms: u64) {
    let r = crate::cluster::status::NodeRecord {
        id: node.into(),
        http: String::new(),
        started_ms: at_ms,
        last_seen_ms: at_ms,
        open_txns: 0,
        heartbeat_ms: 1000,
        left: false,
        mediums: Vec::new(),
    };
    let one = e.clone();
    e.run(async move { crate::cluster::status::beat(&one, &r).await })
        .unwrap()
        .unwrap();
}

fn claim_on(e: &Engine, node: &str) -> Option<(crate::cluster::takeover::Claim, u64)> {
    let (one, id) = (e.clone(), node.to_owned());
    e.run(async move { crate::cluster::takeover::read(&one, &id).await })
        .unwrap()
        .unwrap()
}

fn now_ms() -> u64 {
    crate::protocol::clock::Clock::now_ms(&crate::protocol::clock::SystemClock)
}

#[test]
fn a_silent_nodes_work_is_taken_over_once_by_one_node() {
    use crate::cluster::takeover::State;
    let c = NatsCluster::start(3);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let eb = engine(&c, "b");
    let b = Store::open_clustered(db.path(), &eb).unwrap();
    // a asks whether it was taken over before it publishes after 1 s idle.
    let mut settings = Settings::new("a", &c.urls(), 3);
    settings.ack_wait = Duration::from_secs(2);
    let a = Store::open_clustered(da.path(), &engine_with(&settings)).unwrap();
    // In the buckets: an outbox entry and a record.
    put(&a, Tree::Outbox, b"im\0t1", b"entry 1");
    put(&a, Tree::Txn, b"t1", b"record 1");
    a.checkpoint().unwrap();
    eventually("b reads a's record", || {
        b.get(Tree::Txn, b"t1").unwrap().is_some()
    });
    // Another node's outbox entry is its gateway's, never in b's cache.
    assert_eq!(b.get(Tree::Outbox, b"im\0t1").unwrap(), None);
    // In a's journal only: another entry, one already finished, a
    // record, and node-local bookkeeping.
    a.faults().hold_timer(true);
    put(&a, Tree::Outbox, b"im\0t2", b"entry 2");
    put(&a, Tree::Txn, b"t2", b"record 2");
    put(&a, Tree::Outbox, b"sms\0t3", b"entry 3");
    let mut gone = WriteBatch::new();
    gone.remove(Tree::Outbox, b"sms\0t3".to_vec());
    futures_block(a.writer().write(gone)).unwrap();
    put(&a, Tree::Meta, b"ids.reserved", &999u64.to_be_bytes());
    // a stops (paused, starved: its rounds do not run).
    let now = now_ms();
    beat(&eb, "a", now);
    assert_eq!(
        b.adopt_dead(now + 1000).unwrap(),
        vec![],
        "a is not silent yet"
    );
    let adopted = b.adopt_dead(now + 31_000).unwrap();
    assert_eq!(adopted.len(), 1, "{adopted:?}");
    assert_eq!(
        (
            adopted[0].node.as_str(),
            adopted[0].outbox,
            adopted[0].members.as_slice()
        ),
        ("a", 1, &["im".to_string()][..])
    );
    assert!(adopted[0].batches >= 5, "{adopted:?}");
    assert_eq!(
        b.get(Tree::Outbox, b"im\0t1").unwrap().as_deref(),
        Some(&b"entry 1"[..])
    );
    assert_eq!(
        b.get(Tree::Outbox, b"im\0t2").unwrap().as_deref(),
        Some(&b"entry 2"[..])
    );
    assert_eq!(b.get(Tree::Outbox, b"sms\0t3").unwrap(), None);
    assert_eq!(
        b.get(Tree::Txn, b"t2").unwrap().as_deref(),
        Some(&b"record 2"[..])
    );
    assert_ne!(
        b.get(Tree::Meta, b"ids.reserved").unwrap(),
        Some(999u64.to_be_bytes().to_vec()),
        "a's bookkeeping stays a's"
    );
    let (claim, _) = claim_on(&eb, "a").unwrap();
    assert_eq!((claim.by.as_str(), claim.state), ("b", State::Done));
    // Once: a's subject is empty, its entries are b's in the bucket.
    let mut left = 0;
    crate::journal::jetstream::read_node(&eb, "a", &mut |_| {
        left += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(left, 0);
    assert_eq!(b.adopt_dead(now + 60_000).unwrap(), vec![]);
    let r = b.inner.shared.replica.as_ref().unwrap();
    assert_eq!(r.written_by(Tree::Outbox, "a").unwrap(), vec![]);
    assert_eq!(r.written_by(Tree::Outbox, "b").unwrap().len(), 2);
    // a resumes: having published nothing for over half its ack wait, it
    // asks first, and puts nothing over b's entries.
    std::thread::sleep(Duration::from_millis(1100));
    let refused = a.checkpoint().unwrap_err().to_string();
    assert!(refused.contains("took this node's work over"), "{refused}");
    assert_eq!(r.written_by(Tree::Outbox, "a").unwrap(), vec![]);
}

#[test]
fn a_node_taken_over_comes_back_with_its_cache_emptied() {
    use crate::cluster::takeover::{self, Claim, State};
    let c = NatsCluster::start(3);
    let da = tempfile::tempdir().unwrap();
    let ea = engine(&c, "a");
    let a = Store::open_clustered(da.path(), &ea).unwrap();
    put(&a, Tree::Profiles, b"alice", b"in the bucket");
    a.checkpoint().unwrap();
    // Only in a's cache.
    a.tree(Tree::Profiles).insert(b"stale", b"x").unwrap();
    drop(a);
    let a = Store::open_clustered(da.path(), &ea).unwrap();
    assert!(
        a.get(Tree::Profiles, b"stale").unwrap().is_some(),
        "its own"
    );
    drop(a);
    let (_, rev) = claim_on(&ea, "a").unwrap();
    let done = Claim {
        by: "b".into(),
        state: State::Done,
        at_ms: now_ms(),
    };
    let one = ea.clone();
    ea.run(async move { takeover::write(&one, "a", &done, Some(rev)).await })
        .unwrap()
        .unwrap()
        .unwrap();
    let a = Store::open_clustered(da.path(), &ea).unwrap();
    assert_eq!(a.get(Tree::Profiles, b"stale").unwrap(), None);
    assert_eq!(
        a.get(Tree::Profiles, b"alice").unwrap().as_deref(),
        Some(&b"in the bucket"[..])
    );
    let (claim, _) = claim_on(&ea, "a").unwrap();
    assert_eq!((claim.by.as_str(), claim.state), ("a", State::Own));
}
