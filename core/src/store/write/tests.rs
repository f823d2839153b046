//! The write side's tests: batches and their journal records, merges,
//! failed checkpoints, ids and durable positions.

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
    store.faults().hold_timer(true);
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

/// Attempt `n` of the test record, over `m`.
fn attempt(n: u32, m: crate::protocol::MediumKind) -> crate::store::AttemptRecord {
    use crate::protocol::{MemberId, Route};
    crate::store::AttemptRecord {
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
    }
}

/// The change that concluded a transaction carries its usage: the
/// journal holds one operation (no accounting record of its own), readers
/// see the accounting record at once, and recovery from the journal alone
/// derives the same record.
#[tokio::test]
async fn a_conclusion_journals_its_usage_inside_the_change() {
    use crate::store::{AccountingRecord, TxnRecord, TxnStatus};
    let dir = tempfile::tempdir().unwrap();
    let mut rec = txn_record();
    rec.attempts
        .push(attempt(1, crate::protocol::MediumKind::Im));
    let txn = rec.imi.txn;
    let key = TxnRecord::key(&txn).to_vec();
    let first = txn_batch(&mut rec);
    rec.attempts[0].outcome = Some("delivered".into());
    rec.status = TxnStatus::Delivered;
    rec.event(3, "delivered:1");
    let TxnWrite::Delta { whole, delta } = rec.to_write() else {
        panic!("a later write is a delta")
    };
    let a = AccountingRecord::of(&rec, "delivered".into(), 7).unwrap();
    let concluded = Merge::TxnConcluded {
        delta: delta.clone(),
        outcome: a.outcome.clone(),
        at_ms: a.at_ms,
    };
    let mut b = WriteBatch::new();
    b.merge_known(Tree::Txn, key.clone(), concluded.encode(), whole)
        .derive(Tree::Accounting, a.key(), enc(&a));
    let mut journalled = Vec::new();
    b.encode(&mut journalled);
    assert_eq!(WriteBatch::decode(&journalled).unwrap().len(), 1);
    // Smaller than the change and a usage merge beside it.
    let mut apart = WriteBatch::new();
    apart
        .merge(Tree::Txn, key, Merge::Txn(delta).encode())
        .merge(
            Tree::Accounting,
            a.key(),
            Merge::Usage {
                txn,
                outcome: a.outcome.clone(),
                at_ms: a.at_ms,
            }
            .encode(),
        );
    let mut separate = Vec::new();
    apart.encode(&mut separate);
    assert!(journalled.len() < separate.len());
    assert_eq!(counts(&b).0.iter().sum::<u64>(), 1);
    {
        let store = Store::open(dir.path()).unwrap();
        for t in [Tree::Txn, Tree::Accounting] {
            store.faults().fail_applying(t, true);
        }
        store.writer().write(first).await.unwrap();
        store.writer().write(b).await.unwrap();
        assert_eq!(store.accounting(0, u64::MAX).unwrap(), vec![a.clone()]);
        assert!(store.checkpoint().is_err());
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.txn(&txn).unwrap().unwrap(), rec);
    assert_eq!(store.accounting(0, u64::MAX).unwrap(), vec![a]);
}

/// bob's inbox entry for `txn` from alice, delivered, with `body`.
fn inbox_entry(txn: crate::protocol::TxnId, body: &str) -> crate::store::InboxEntry {
    crate::store::InboxEntry {
        txn,
        from: "alice".into(),
        body: body.into(),
        subject: None,
        sent_at_ms: 1,
        attempt: 1,
        id: [1; 32],
        delivered: true,
        read: false,
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
    use crate::protocol::MediumKind;
    use crate::store::{TxnRecord, TxnStatus};
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
    let inbox = inbox_entry(txn, "");
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

/// A round that died after sled took part of it — here all of it, the
/// outbox entry's removal included, but not its cut — leaves recovery
/// replaying merges onto records newer than the ones they were made
/// against: the IMI and the text come from the records the round wrote,
/// and a delta applied again does not repeat the trail (the `kill -9` test
/// found the first; this is it without a process).
#[tokio::test]
async fn merges_replayed_after_a_round_that_got_part_way_come_out_whole() {
    use crate::store::{OutboxEntry, TxnRecord};
    let dir = tempfile::tempdir().unwrap();
    let mut rec = txn_record();
    let txn = rec.imi.txn;
    let outbox_key = OutboxEntry::key(&rec.imi.originator, &txn);
    let txn_key = TxnRecord::key(&txn).to_vec();
    let inbox = inbox_entry(txn, "hi");
    let (final_txn, final_inbox) = {
        let store = Store::open(dir.path()).unwrap();
        let mut b = WriteBatch::new();
        let entry = OutboxEntry {
            imi: rec.imi.clone(),
            content: b"hi".to_vec(),
        };
        b.insert(Tree::Outbox, outbox_key.clone(), enc(&entry));
        store.writer().write(b).await.unwrap();
        store.checkpoint().unwrap();
        // From here no round reaches sled by itself.
        store.faults().fail_applying(Tree::Txn, true);
        rec.event(1, "submitted");
        let TxnWrite::Full { whole, base, .. } = rec.to_write() else {
            panic!("the first write is whole")
        };
        let mut b = WriteBatch::new();
        let m = Merge::TxnOnOutbox {
            outbox: outbox_key.clone(),
            base,
        };
        b.merge_known(Tree::Txn, txn_key.clone(), m.encode(), whole);
        let mut bare = inbox.clone();
        bare.body = String::new();
        let m = Merge::InboxOnOutbox {
            outbox: outbox_key.clone(),
            entry: bare,
        };
        b.merge_known(Tree::Inbox, b"bob".to_vec(), m.encode(), enc(&inbox));
        store.writer().write(b).await.unwrap();
        rec.event(2, "delivered");
        rec.status = crate::store::TxnStatus::Delivered;
        let TxnWrite::Delta { whole, delta } = rec.to_write() else {
            panic!("then deltas")
        };
        let mut b = WriteBatch::new();
        b.merge_known(
            Tree::Txn,
            txn_key.clone(),
            Merge::Txn(delta).encode(),
            whole,
        );
        b.remove(Tree::Outbox, outbox_key.clone());
        store.writer().write(b).await.unwrap();
        // The round that died: sled took every tree's part (the outbox
        // last), the cut was never recorded.
        let (t, i) = (
            store.get(Tree::Txn, &txn_key).unwrap().unwrap(),
            store.get(Tree::Inbox, b"bob").unwrap().unwrap(),
        );
        store.tree(Tree::Txn).insert(&txn_key, t.clone()).unwrap();
        store.tree(Tree::Inbox).insert(b"bob", i.clone()).unwrap();
        store.tree(Tree::Outbox).remove(&outbox_key).unwrap();
        (t, i)
    };
    let store = Store::open(dir.path()).unwrap();
    let got: TxnRecord = store.txn(&txn).unwrap().unwrap();
    assert_eq!(got, rec);
    assert_eq!(got.events.len(), 2, "{:?}", got.events);
    assert_eq!(store.get(Tree::Txn, &txn_key).unwrap().unwrap(), final_txn);
    assert_eq!(
        store.get(Tree::Inbox, b"bob").unwrap().unwrap(),
        final_inbox
    );
    assert!(!store.contains(Tree::Outbox, &outbox_key).unwrap());
}
