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
    let e = Engine::connect(&Settings::new(node, &c.urls(), 3), Duration::from_secs(10)).unwrap();
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
