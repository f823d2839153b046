//! The journals against their contract: order, durability, recovery to a
//! prefix after a torn or flipped last batch, segments let go of and reused.

use std::collections::BTreeMap;
use std::path::Path;

use super::file::FileJournal;
use super::frame::{FRAME_HEADER, SEGMENT_HEADER};
use super::sled_log::SledJournal;
use super::{wait_durable, Journal, JournalError};

/// Small segments, so a few batches span several.
const SEG: u64 = 4096;

fn batch(i: u32) -> Vec<u8> {
    let mut b = format!("batch {i} ").into_bytes();
    b.resize(100 + (i as usize * 37) % 300, b'.');
    b
}

fn all(j: &dyn Journal) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    j.replay(0, &mut |_, b| got.push(b.to_vec())).unwrap();
    got
}

fn fill(j: &dyn Journal, n: u32) -> u64 {
    let mut end = 0;
    for i in 0..n {
        end = j.append(&batch(i)).unwrap();
    }
    end
}

/// How many files of `dir` start with `prefix`.
fn segs(dir: &Path, prefix: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(prefix)
        })
        .count()
}

async fn durable(j: &dyn Journal, pos: u64) {
    wait_durable(j, pos).await.unwrap();
    assert!(j.durable() >= pos);
}

#[tokio::test]
async fn batches_come_back_in_order_across_segments_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let j = FileJournal::open(dir.path(), SEG).unwrap();
        let end = fill(&j, 200);
        durable(&j, end).await;
        assert_eq!(all(&j).len(), 200);
    }
    let j = FileJournal::open(dir.path(), SEG).unwrap();
    let want: Vec<Vec<u8>> = (0..200).map(batch).collect();
    assert_eq!(all(&j), want, "after a restart");
    // Appends go on after the recovered tail.
    let end = j.append(b"after the restart").unwrap();
    durable(&j, end).await;
    let got = all(&j);
    assert_eq!(got.len(), 201);
    assert_eq!(got[200], b"after the restart");
    let files = segs(dir.path(), "seg-");
    assert!(files > 10, "{files} segments");
}

#[tokio::test]
async fn concurrent_appenders_each_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let j = std::sync::Arc::new(FileJournal::open(dir.path(), SEG * 16).unwrap());
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let j = j.clone();
            std::thread::spawn(move || {
                let mut end = 0;
                for i in 0..500u32 {
                    end = end.max(j.append(&[&[t][..], &i.to_be_bytes()].concat()).unwrap());
                }
                end
            })
        })
        .collect();
    let end = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .max()
        .unwrap();
    durable(&*j, end).await;
    let mut seen: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
    for b in all(&*j) {
        seen.entry(b[0])
            .or_default()
            .push(u32::from_be_bytes(b[1..5].try_into().unwrap()));
    }
    for (t, v) in seen {
        assert_eq!(v, (0..500).collect::<Vec<_>>(), "appender {t}");
    }
}

/// The last segment file of `dir` and the start of its last frame.
fn last_frame(dir: &Path, j: &FileJournal) -> (std::path::PathBuf, u64, u64) {
    let mut last = (0, 0);
    j.replay(0, &mut |end, b| {
        last = (end - (FRAME_HEADER + b.len()) as u64, end)
    })
    .unwrap();
    let id = last.0 / SEG;
    (
        dir.join(format!("seg-{id:016x}")),
        last.0 % SEG,
        last.1 - id * SEG,
    )
}

fn copy(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_last_batch_cut_at_every_byte_or_flipped_recovers_to_a_prefix() {
    let base = tempfile::tempdir().unwrap();
    let (seg_file, start, end) = {
        let j = FileJournal::open(base.path(), SEG).unwrap();
        let e = fill(&j, 30);
        futures_block(durable(&j, e));
        last_frame(base.path(), &j)
    };
    let name = seg_file.file_name().unwrap().to_owned();
    let want: Vec<Vec<u8>> = (0..29).map(batch).collect();
    let check = |damage: &dyn Fn(&mut Vec<u8>), what: String| {
        let dir = tempfile::tempdir().unwrap();
        copy(base.path(), dir.path());
        let path = dir.path().join(&name);
        let mut bytes = std::fs::read(&path).unwrap();
        damage(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        let j = FileJournal::open(dir.path(), SEG).unwrap();
        assert_eq!(all(&j), want, "{what}: the first 29 batches, no more");
        // The journal takes appends after the damaged batch's start, and a
        // second recovery agrees.
        let e = j.append(b"new").unwrap();
        futures_block(wait_durable(&j, e)).unwrap();
        drop(j);
        let j = FileJournal::open(dir.path(), SEG).unwrap();
        let mut after = want.clone();
        after.push(b"new".to_vec());
        assert_eq!(all(&j), after, "{what}: after a second recovery");
    };
    for cut in start..end {
        check(
            &|b: &mut Vec<u8>| b[cut as usize..].fill(0),
            format!("cut at {cut}"),
        );
    }
    for i in start..end {
        check(
            &|b: &mut Vec<u8>| b[i as usize] ^= 0x20,
            format!("byte {i} flipped"),
        );
    }
}

/// Runs a future to completion on a throwaway runtime (the checks above
/// are plain closures).
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[tokio::test]
async fn segments_before_a_checkpoint_are_let_go_of_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let j = FileJournal::open(dir.path(), SEG).unwrap();
    let mut ends = Vec::new();
    for i in 0..100 {
        ends.push(j.append(&batch(i)).unwrap());
    }
    durable(&j, *ends.last().unwrap()).await;
    let before = segs(dir.path(), "seg-");
    j.truncate_before(ends[60]).unwrap();
    assert!(segs(dir.path(), "seg-") < before, "segments let go of");
    // Everything from the checkpoint on is still there.
    let mut got = Vec::new();
    j.replay(ends[60], &mut |_, b| got.push(b.to_vec()))
        .unwrap();
    assert_eq!(got, (61..100).map(batch).collect::<Vec<_>>());
    // New segments reuse the let-go files before any new one is made.
    let freed = segs(dir.path(), "free-") + segs(dir.path(), "spare");
    assert!(freed >= 2, "{freed} files let go of");
    let end = fill(&j, 100);
    durable(&j, end).await;
    assert_eq!(segs(dir.path(), "free-"), 0, "every let-go file was reused");
    drop(j);
    // A restart starts from the first kept segment.
    let j = FileJournal::open(dir.path(), SEG).unwrap();
    let mut got = Vec::new();
    j.replay(ends[60], &mut |_, b| got.push(b.to_vec()))
        .unwrap();
    assert_eq!(got.len(), 39 + 100);
}

#[tokio::test]
async fn too_large_and_closed_are_refused_and_waiters_wake() {
    let dir = tempfile::tempdir().unwrap();
    let j = FileJournal::open(dir.path(), SEG).unwrap();
    let max = j.max_batch();
    assert_eq!(max, SEG as usize - SEGMENT_HEADER - 2 * FRAME_HEADER);
    assert!(matches!(
        j.append(&vec![0; max + 1]),
        Err(JournalError::TooLarge { .. })
    ));
    // The largest batch fits a segment of its own.
    let e = j.append(&vec![1; max]).unwrap();
    durable(&j, e).await;
    j.close();
    assert_eq!(j.append(b"late"), Err(JournalError::Closed));
    assert_eq!(
        wait_durable(&j, u64::MAX).await,
        Err(JournalError::Closed),
        "a waiter past the end wakes with the reason"
    );
}

#[tokio::test]
async fn the_sled_journal_keeps_the_same_contract() {
    let dir = tempfile::tempdir().unwrap();
    {
        let j = SledJournal::open(dir.path()).unwrap();
        let end = fill(&j, 50);
        durable(&j, end).await;
    }
    let j = SledJournal::open(dir.path()).unwrap();
    assert_eq!(all(&j), (0..50).map(batch).collect::<Vec<_>>());
    let mut from_10 = Vec::new();
    let mut ends = Vec::new();
    j.replay(0, &mut |e, _| ends.push(e)).unwrap();
    j.truncate_before(ends[9]).unwrap();
    j.replay(0, &mut |_, b| from_10.push(b.to_vec())).unwrap();
    assert_eq!(from_10, (10..50).map(batch).collect::<Vec<_>>());
}

mod jetstream {
    //! The JetStream journal against real nats-servers.

    use std::time::Duration;

    use super::{all, batch, durable, fill};
    use crate::cluster::testkit::NatsCluster;
    use crate::cluster::{init, names, Engine, Settings};
    use crate::journal::jetstream::JetStreamJournal;
    use crate::journal::{wait_durable, Journal, JournalError};

    fn engine(c: &NatsCluster, node: &str) -> Engine {
        let e = Engine::connect(
            &Settings::new(node, &c.urls(), c.servers.len()),
            Duration::from_secs(10),
        )
        .unwrap();
        let one = e.clone();
        e.run(async move {
            init::wait_ready(&one, Duration::from_secs(20)).await?;
            init::ensure(&one, &[]).await
        })
        .unwrap()
        .unwrap();
        e
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn it_keeps_the_same_contract_across_restarts_and_truncation() {
        let c = NatsCluster::start(3);
        let e = engine(&c, "a");
        {
            let j = JetStreamJournal::open(&e).unwrap();
            let end = fill(&j, 50);
            assert_eq!(end, 50);
            durable(&j, end).await;
        }
        let j = JetStreamJournal::open(&e).unwrap();
        assert_eq!(all(&j), (0..50).map(batch).collect::<Vec<_>>());
        let end = j.append(b"after the restart").unwrap();
        assert_eq!(end, 51, "positions go on after the recovered tail");
        durable(&j, end).await;
        // Another node's journal is its own.
        let other = JetStreamJournal::open(&engine(&c, "b")).unwrap();
        assert!(all(&other).is_empty());
        let e2 = other.append(b"b's").unwrap();
        durable(&other, e2).await;
        assert_eq!(all(&j).len(), 51);
        // Let go of what a checkpoint covers; a replay from there is whole.
        j.truncate_before(10).unwrap();
        let mut from_10 = Vec::new();
        j.replay(9, &mut |_, b| from_10.push(b.to_vec())).unwrap();
        let mut want: Vec<Vec<u8>> = (9..50).map(batch).collect();
        want.push(b"after the restart".to_vec());
        assert_eq!(from_10, want);
        // A batch too large for one message is refused, not split.
        let max = j.max_batch();
        assert!(matches!(
            j.append(&vec![0; max + 1]),
            Err(JournalError::TooLarge { .. })
        ));
        let big = j.append(&vec![7; max]).unwrap();
        durable(&j, big).await;
        j.close();
        assert_eq!(j.append(b"late"), Err(JournalError::Closed));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_publish_retried_after_a_lost_ack_is_stored_once() {
        use async_nats::jetstream::message::PublishMessage;
        let c = NatsCluster::start(1);
        let e = engine(&c, "a");
        // What the writer sends again when an acknowledgement is lost:
        // the same id, expecting the same last sequence.
        let one = e.clone();
        let acks = e
            .run(async move {
                let mut acks = Vec::new();
                for _ in 0..2 {
                    let m = PublishMessage::build()
                        .payload(b"\0\0\0\0\0\0\0\x01\0\0\0\x01\0\0\0\x02hi"[..].into())
                        .message_id("sb.journal.a-1")
                        .expected_last_subject_sequence(0);
                    let ack = one
                        .js()
                        .send_publish(names::journal_subject("a"), m)
                        .await
                        .unwrap()
                        .await;
                    acks.push(ack.map(|a| a.sequence).map_err(|e| e.to_string()));
                }
                acks
            })
            .unwrap();
        // JetStream checks the expected sequence before its duplicate
        // window: the second try is refused as "wrong last sequence", and
        // the writer then finds its own id as the subject's last message.
        assert_eq!(acks.len(), 2);
        assert_eq!(acks[0], Ok(1));
        assert!(
            acks[1]
                .as_ref()
                .is_err_and(|e| e.contains("wrong last sequence")),
            "{acks:?}"
        );
        let j = JetStreamJournal::open(&e).unwrap();
        assert_eq!(all(&j), [b"hi".to_vec()]);
        // The writer's own retry after a lost acknowledgement.
        j.lose_next_ack();
        let next = j.append(b"next").unwrap();
        assert_eq!(next, 2);
        durable(&j, next).await;
        let after = j.append(b"after").unwrap();
        durable(&j, after).await;
        assert_eq!(
            all(&j),
            [b"hi".to_vec(), b"next".to_vec(), b"after".to_vec()],
            "each once"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_second_process_with_the_same_node_id_is_refused() {
        let c = NatsCluster::start(1);
        let e = engine(&c, "a");
        let first = JetStreamJournal::open(&e).unwrap();
        let p = first.append(b"one").unwrap();
        durable(&first, p).await;
        let second = JetStreamJournal::open(&e).unwrap();
        let p2 = second.append(b"two").unwrap();
        durable(&second, p2).await;
        let late = first.append(b"three").unwrap();
        let got = wait_durable(&first, late).await;
        assert!(
            matches!(&got, Err(JournalError::Io(m)) if m.contains("used twice")),
            "{got:?}"
        );
        assert_eq!(all(&second), [b"one".to_vec(), b"two".to_vec()]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn without_a_quorum_nothing_is_acknowledged_and_it_resumes_after() {
        let mut c = NatsCluster::start(3);
        let e = engine(&c, "a");
        let j = JetStreamJournal::open(&e).unwrap();
        let p = j.append(b"before").unwrap();
        durable(&j, p).await;
        c.kill(1);
        c.kill(2);
        let p = j.append(b"during").unwrap();
        let waited = tokio::time::timeout(Duration::from_secs(3), wait_durable(&j, p)).await;
        assert!(waited.is_err(), "acknowledged without a quorum: {waited:?}");
        assert!(
            j.waiting() >= Some(Duration::from_secs(2)),
            "{:?}",
            j.waiting()
        );
        assert_eq!(j.failed(), None, "stalled, not failed");
        c.restart(1);
        tokio::time::timeout(Duration::from_secs(30), wait_durable(&j, p))
            .await
            .expect("durable once the quorum is back")
            .unwrap();
        assert_eq!(j.waiting(), None);
        assert_eq!(
            all(&j),
            [b"before".to_vec(), b"during".to_vec()],
            "stored once"
        );
    }
}
