//! Broker throughput: whole transactions through the in-process flow — every
//! MIAP phase with every MAC, sled on a temp dir, the IM inbox as destination —
//! with a window of messages in flight; one broker shard on its own (submit
//! to release); the MAC work of one transaction; the codec; the store's
//! group commit and one message's write set. Reports messages/s; asserts
//! nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use switchboard::bench::{inproc_core, originate};
use switchboard_actors::gateway::Receipt;
use switchboard_core::protocol::Outcome;

/// Messages in flight at once.
const WINDOW: usize = 256;
/// Message size.
const SIZE: usize = 256;

struct Delivered(Arc<AtomicUsize>);

impl Actor for Delivered {
    type Context = Context<Self>;
}

impl Handler<Receipt> for Delivered {
    type Result = ();
    fn handle(&mut self, r: Receipt, _: &mut Context<Self>) {
        if r.outcome == Outcome::Delivered {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn full_transactions(c: &mut Criterion) {
    full_transactions_with(c, false);
}

/// The same with the compliance archive on and every message archived (the
/// bench's users in a domain that archives): side by side with the runs
/// above (`cargo bench --bench broker -- full_transaction`).
fn full_transactions_archived(c: &mut Criterion) {
    full_transactions_with(c, true);
}

fn full_transactions_with(c: &mut Criterion, archived: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let runner = actix_rt::System::new();
    let delivered = Arc::new(AtomicUsize::new(0));
    let core = runner.block_on(async {
        let counter = Delivered(delivered.clone()).start();
        inproc_core(dir.path(), counter.recipient(), archived)
            .await
            .expect("core starts")
    });

    let mut g = c.benchmark_group("broker");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    let run = |iters: u64| {
        runner.block_on(async {
            let target = delivered.load(Ordering::Relaxed) + iters as usize;
            let window = Arc::new(tokio::sync::Semaphore::new(WINDOW));
            let start = Instant::now();
            for _ in 0..iters {
                let permit = window.clone().acquire_owned().await.expect("semaphore");
                let im = core.im.clone();
                actix_rt::spawn(async move {
                    let r = im.send(originate(SIZE, 0)).await;
                    assert!(matches!(r, Ok(Ok(_))), "message refused: {r:?}");
                    drop(permit);
                });
            }
            while delivered.load(Ordering::Relaxed) < target {
                actix_rt::time::sleep(Duration::from_micros(200)).await;
            }
            start.elapsed()
        })
    };
    let name = format!(
        "full_transaction_{SIZE}B_window_{WINDOW}_shards_{}{}",
        core.broker.handle.shards(),
        if archived { "_archived" } else { "" }
    );
    g.bench_function(&name, |b| b.iter_custom(run));
    if archived {
        g.finish();
        runner.block_on(core.stop(Duration::from_secs(5)));
        return;
    }
    // The same with five content rules (none matches the bench's text): the
    // content filter is a hop on every route — side by side with the run
    // above.
    runner.block_on(async {
        let book = core.directory.policy();
        let rules = [
            r#"{"id": "c1", "priority": 50, "stage": "content", "when": {"contains": ["Project X", "Project Y"]}, "action": {"type": "deny"}}"#,
            r#"{"id": "c2", "priority": 40, "stage": "content", "when": {"regex": "\\b\\d{4}-\\d{4}-\\d{4}-\\d{4}\\b"}, "action": {"type": "quarantine"}}"#,
            r#"{"id": "c3", "priority": 30, "stage": "content", "when": {"contains": ["confidential"]}, "action": {"type": "tag", "tag": "conf"}}"#,
            r#"{"id": "c4", "priority": 20, "stage": "content", "when": {"content_type": "image/"}, "action": {"type": "deny"}}"#,
            r#"{"id": "c5", "priority": 10, "stage": "content", "when": {"larger_than": 1048576}, "action": {"type": "deny"}}"#,
        ];
        for r in rules {
            let rule = switchboard_core::policy::Rule::parse(r.as_bytes()).expect("rule");
            book.put_rule(rule).await.expect("rule stored");
        }
    });
    g.bench_function(format!("{name}_content_filter_5_rules"), |b| {
        b.iter_custom(run)
    });
    g.finish();
    runner.block_on(core.stop(Duration::from_secs(5)));
}

/// A member that originates only: logs in, then submits what it is told
/// and counts the broker's `Release`s (it never transmits, so the broker's
/// part is all that is measured).
struct Originator {
    link: switchboard_actors::member_session::MemberSession,
    released: Arc<AtomicUsize>,
}

impl Actor for Originator {
    type Context = Context<Self>;
    fn started(&mut self, _: &mut Context<Self>) {
        self.link.login();
    }
}

impl Handler<switchboard_actors::bus::MiapFrame> for Originator {
    type Result = ();
    fn handle(&mut self, m: switchboard_actors::bus::MiapFrame, _: &mut Context<Self>) {
        use switchboard_core::protocol::Frame;
        match m.frame {
            Frame::LoginAck(a) => self.link.on_login_ack(&a).expect("login"),
            Frame::Release(_) => {
                self.released.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// Submit `n` fresh messages.
#[derive(Message)]
#[rtype(result = "bool")]
struct Submit(u64);

impl Handler<Submit> for Originator {
    type Result = bool;
    fn handle(&mut self, Submit(n): Submit, _: &mut Context<Self>) -> bool {
        use switchboard_core::protocol::{
            frames, mac::sha256, Address, Frame, Imi, MediumKind, Priority, To, TxnId,
        };
        let Ok(s) = self.link.session() else {
            return false;
        };
        let now = self.link.now();
        let content = vec![b'x'; SIZE];
        for _ in 0..n {
            let imi = Imi {
                txn: TxnId::generate(now),
                originator: self.link.cfg.id.clone(),
                sender: Address::new(MediumKind::Fax, "+4930555"),
                sender_user: None,
                recipient: To::User("bench-b".into()),
                content_type: "text/plain".into(),
                content_len: SIZE as u64,
                content_sha256: sha256(&content),
                subject: None,
                priority: Priority::Normal,
                expires_at_ms: now + 3_600_000,
                created_at_ms: now,
                receipt: true,
                attributes: Vec::new(),
            };
            self.link
                .to_broker(Frame::Submit(frames::make_submit(&s.current, imi)));
        }
        true
    }
}

/// One broker shard on its own: verify a `Submit`, choose the manager and
/// route, write the transaction record, compute the release's `ID`, outer
/// MAC and grant, send the `Release` — everything between a member's submit
/// and its release, on one shard.
fn one_broker_shard(c: &mut Criterion) {
    use switchboard_actors::member_session::{MemberConfig, MemberSession};
    use switchboard_core::protocol::{MediumKind, MemberId, MemberKeys};
    // One shard (the process's environment is the bench's own).
    std::env::set_var("SWITCHBOARD_BROKER__SHARDS", "1");
    let dir = tempfile::tempdir().expect("temp dir");
    let runner = actix_rt::System::new();
    let released = Arc::new(AtomicUsize::new(0));
    let (core, origin) = runner.block_on(async {
        let sink = Delivered(Arc::default()).start();
        let core = inproc_core(dir.path(), sink.recipient(), false)
            .await
            .expect("core starts");
        let id = MemberId::new("bench-origin");
        let keys = MemberKeys::generate(id.clone(), Some(MediumKind::Fax));
        let (key_id, key) = keys.current();
        let key = key.clone();
        core.directory.put_member(keys).await.expect("member");
        let link = MemberSession::new(
            MemberConfig {
                id: id.clone(),
                key_id,
                key,
                broker_id: "broker-1".into(),
                session_ttl_ms: 3_600_000,
            },
            core.broker.handle.clone(),
            core.clock.clone(),
        );
        let ctx = Context::<Originator>::new();
        core.members
            .connect(id, Some(MediumKind::Fax), ctx.address().recipient(), 0);
        let origin = ctx.run(Originator {
            link,
            released: released.clone(),
        });
        (core, origin)
    });
    std::env::remove_var("SWITCHBOARD_BROKER__SHARDS");

    let mut g = c.benchmark_group("broker");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    let run = |iters: u64| {
        runner.block_on(async {
            while !origin.send(Submit(0)).await.expect("originator") {
                actix_rt::time::sleep(Duration::from_millis(5)).await;
            }
            let target = released.load(Ordering::Relaxed) + iters as usize;
            let start = Instant::now();
            origin.do_send(Submit(iters));
            while released.load(Ordering::Relaxed) < target {
                actix_rt::time::sleep(Duration::from_micros(100)).await;
            }
            start.elapsed()
        })
    };
    g.bench_function("one_shard_submit_to_release", |b| b.iter_custom(run));
    // The same with enterprise policy's meta stage walking five rules (one
    // matches and tags every message) and a domain that denies outside
    // messages: side by side with the run above.
    runner.block_on(async {
        let book = core.directory.policy();
        let closed = switchboard_core::policy::Domain {
            external: switchboard_core::policy::External::Deny,
            ..Default::default()
        };
        book.put_domain("corp.example", &closed).await.expect("domain");
        book.put_group("legal", &Default::default()).await.expect("group");
        let rules = [
            r#"{"id": "r1", "priority": 50, "stage": "meta", "when": {"from": {"group": "legal"}, "to": {"external": true}}, "action": {"type": "deny"}}"#,
            r#"{"id": "r2", "priority": 40, "stage": "meta", "when": {"medium": "sms"}, "action": {"type": "tag", "tag": "sms"}}"#,
            r#"{"id": "r3", "priority": 30, "stage": "meta", "when": {"priority": "urgent"}, "action": {"type": "tag", "tag": "urgent"}}"#,
            r#"{"id": "r4", "priority": 20, "stage": "meta", "when": {"from": {"attr": {"country": "DE"}}}, "action": {"type": "strip_p2p"}}"#,
            r#"{"id": "r5", "priority": 10, "stage": "meta", "when": {}, "action": {"type": "tag", "tag": "seen"}}"#,
        ];
        for r in rules {
            let rule = switchboard_core::policy::Rule::parse(r.as_bytes()).expect("rule");
            book.put_rule(rule).await.expect("rule stored");
        }
    });
    g.bench_function("one_shard_submit_to_release_5_meta_rules", |b| {
        b.iter_custom(run)
    });
    g.finish();
    runner.block_on(core.stop(Duration::from_secs(5)));
}

fn macs_of_one_transaction(c: &mut Criterion) {
    use switchboard_core::protocol::mac::{mac, step_key};
    use switchboard_core::protocol::TxnId;
    let k = [7u8; 32];
    let imi = vec![0u8; 200];
    let txn = TxnId::generate(0);
    let mut g = c.benchmark_group("miap");
    g.throughput(Throughput::Elements(1));
    g.bench_function("macs_of_one_transaction", |b| {
        b.iter(|| {
            // submit, inner ID, outer, grant, report, notify, and their step keys.
            let mut acc = 0u8;
            for step in [1u8, 2, 4, 5] {
                let c = step_key(&k, &txn, step);
                acc ^= mac(&k, "step-bound", &[&imi, &c])[0];
            }
            let id = mac(&k, "inner", &[&imi]);
            acc ^= mac(&k, "outer", &[&imi, &id])[0];
            acc ^= mac(&k, "grant", &[&imi, &id])[0];
            std::hint::black_box(acc)
        })
    });
    g.finish();
}

fn codec_of_a_transmit(c: &mut Criterion) {
    use switchboard_core::protocol::codec;
    use switchboard_core::protocol::{Frame, TransmitAck, TxnId};
    // A frame as it crosses MIAP/TCP: length prefix and bincode.
    let f = Frame::TransmitAck(TransmitAck {
        txn: TxnId::generate(1),
        attempt: 1,
    });
    let bytes = codec::frame_bytes(&f, codec::DEFAULT_MAX_FRAME).expect("encodes");
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_transmit_ack", |b| {
        b.iter(|| codec::frame_bytes(std::hint::black_box(&f), codec::DEFAULT_MAX_FRAME))
    });
    g.bench_function("decode_transmit_ack", |b| {
        b.iter(|| codec::parse(std::hint::black_box(&bytes), bytes.len()))
    });
    let content = vec![b'x'; SIZE];
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.bench_function("encode_256B_content", |b| {
        b.iter(|| codec::encode(std::hint::black_box(&content)))
    });
    g.finish();
}

fn store_group_commit(c: &mut Criterion) {
    use switchboard_core::protocol::TxnId;
    use switchboard_core::store::{Store, Tree, WriteBatch};
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let runner = actix_rt::System::new();
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    let mut n = 0u64;
    // `window` durable writes of one record each, in flight together: they
    // share flushes (group commit). The wider window is sled's ceiling for
    // durable records on this machine, however many share a flush.
    for window in [WINDOW, 16 * WINDOW] {
        g.bench_function(format!("durable_writes_window_{window}"), |b| {
            b.iter_custom(|iters| durable_records(&runner, &store, window, iters, SIZE, &mut n))
        });
    }
    // One in-process message's store writes, replayed without the actors: the
    // sizes `switchboard bench --target inproc` measures (`store_per_msg`,
    // 2026-11-23: 7 sled operations, ≈ 1.55 KB) — the gateway's outbox entry
    // (durable) and later its removal, the transaction record twice, the inbox
    // entry with its index (durable), the accounting record — pipelined as in
    // the real flow (a message's later writes come W/2 and W messages after its
    // first). Beside it, the same bytes as one appended record per message: what
    // a log-structured store would pay. The gap between the two is what the
    // storage layout costs; the first is the ceiling of the current flow.
    let key = |prefix: &[u8], rest: &[u8]| [prefix, rest].concat();
    let mut ids: Vec<TxnId> = Vec::new();
    let mut msgs = 0usize;
    g.bench_function(format!("write_set_of_a_message_window_{WINDOW}"), |b| {
        b.iter_custom(|iters| {
            runner.block_on(async {
                let start = Instant::now();
                let mut pending = Vec::with_capacity(2 * WINDOW);
                for _ in 0..iters {
                    let now = start.elapsed().as_millis() as u64 + 1_700_000_000_000;
                    ids.push(TxnId::generate(now));
                    let i = msgs;
                    msgs += 1;
                    // Submitted: outbox entry (durable), first record.
                    let t = ids[i].0;
                    let mut out = WriteBatch::new();
                    out.insert(Tree::Outbox, key(b"gw-im-1\0", &t), vec![1u8; 400]);
                    pending.push(store.writer().write(out));
                    let mut rec = WriteBatch::new();
                    rec.insert(Tree::Txn, t.to_vec(), vec![2u8; 300]);
                    store.writer().write_nowait(rec);
                    // Delivered, W/2 messages later: inbox entry and index
                    // (durable), the record again, accounting.
                    if let Some(j) = i.checked_sub(WINDOW / 2) {
                        let t = ids[j].0;
                        let seq = (j as u64).to_be_bytes();
                        let mut inbox = WriteBatch::new();
                        inbox.insert(Tree::Inbox, key(b"bench-b\0m", &seq), vec![3u8; 320]);
                        inbox.insert(Tree::Inbox, key(b"bench-b\0i", &t), seq.to_vec());
                        pending.push(store.writer().write(inbox));
                        let mut rest = WriteBatch::new();
                        rest.insert(Tree::Txn, t.to_vec(), vec![4u8; 334]);
                        rest.insert(Tree::Accounting, key(&now.to_be_bytes(), &t), vec![5u8; 73]);
                        store.writer().write_nowait(rest);
                    }
                    // Notified, W messages later: the outbox entry goes.
                    if let Some(j) = i.checked_sub(WINDOW) {
                        let mut gone = WriteBatch::new();
                        gone.remove(Tree::Outbox, key(b"gw-im-1\0", &ids[j].0));
                        store.writer().write_nowait(gone);
                    }
                    if pending.len() >= 2 * WINDOW {
                        for p in pending.drain(..) {
                            p.await.expect("written");
                        }
                    }
                }
                for p in pending.drain(..) {
                    p.await.expect("written");
                }
                start.elapsed()
            })
        })
    });
    // Sequence keys far from the write set's (`Meta`, from 2^40).
    let mut seq = 1u64 << 40;
    g.bench_function(
        format!("one_appended_record_per_message_window_{WINDOW}"),
        |b| b.iter_custom(|iters| durable_records(&runner, &store, WINDOW, iters, 1543, &mut seq)),
    );
    g.finish();
}

/// `iters` durable writes of one `size`-byte record each under sequence
/// keys after `seq`, `window` in flight; the time they took.
fn durable_records(
    runner: &actix_rt::SystemRunner,
    store: &switchboard_core::store::Store,
    window: usize,
    iters: u64,
    size: usize,
    seq: &mut u64,
) -> Duration {
    use switchboard_core::store::{Tree, WriteBatch};
    runner.block_on(async {
        let start = Instant::now();
        let mut pending = Vec::with_capacity(window);
        for _ in 0..iters {
            *seq += 1;
            let mut batch = WriteBatch::new();
            batch.insert(Tree::Meta, seq.to_be_bytes().to_vec(), vec![0u8; size]);
            pending.push(store.writer().write(batch));
            if pending.len() == window {
                for p in pending.drain(..) {
                    p.await.expect("written");
                }
            }
        }
        for p in pending.drain(..) {
            p.await.expect("written");
        }
        start.elapsed()
    })
}

/// The floor under any durable store on this machine: one message's bytes
/// (1 551, as `store_per_msg` measures them) appended to a plain file, with
/// one `fdatasync` per window — group commit with no index, no B-tree and no
/// page cache of its own. What a log-structured store could approach.
fn disk_append_log(c: &mut Criterion) {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut file = std::fs::File::create(dir.path().join("log")).expect("log file");
    let record = vec![7u8; 1551];
    let mut g = c.benchmark_group("disk");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    for window in [WINDOW as u64, 16 * WINDOW as u64] {
        g.bench_function(format!("append_1551B_fdatasync_per_{window}"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for i in 1..=iters {
                    file.write_all(&record).expect("appended");
                    if i % window == 0 || i == iters {
                        file.sync_data().expect("synced");
                    }
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}

/// The journal's two backends side by side (`docs/STORAGE.md`): messages'
/// facts of 550 B (the minimal write set), appended as batches of 1 or 64
/// messages from two appender threads without waiting, then the last one
/// waited for durable — so the writer's group commit decides how many
/// appends one `fdatasync` covers.
fn journal_backends(c: &mut Criterion) {
    use switchboard_core::journal::{file::FileJournal, sled_log::SledJournal, Journal};
    fn run(j: &dyn Journal, iters: u64, per_batch: usize) -> Duration {
        let batch = vec![7u8; 550 * per_batch];
        let batches = iters.div_ceil(per_batch as u64).max(1);
        let start = Instant::now();
        let last = std::thread::scope(|s| {
            let halves = [batches / 2, batches - batches / 2];
            let handles: Vec<_> = halves
                .into_iter()
                .map(|n| {
                    let batch = &batch;
                    s.spawn(move || {
                        let mut end = 0;
                        for _ in 0..n {
                            end = end.max(j.append(batch).expect("appended"));
                        }
                        end
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("appender"))
                .max()
                .unwrap_or(0)
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(switchboard_core::journal::wait_durable(j, last))
            .expect("durable");
        start.elapsed()
    }
    let mut g = c.benchmark_group("journal");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    for per_batch in [1usize, 64] {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = FileJournal::open(dir.path(), 64 * 1024 * 1024).expect("file journal");
        g.bench_function(format!("segment_files_550B_x{per_batch}"), |b| {
            b.iter_custom(|iters| run(&file, iters, per_batch))
        });
        drop(file);
        let dir = tempfile::tempdir().expect("temp dir");
        let sled = SledJournal::open(dir.path()).expect("sled journal");
        g.bench_function(format!("sled_records_550B_x{per_batch}"), |b| {
            b.iter_custom(|iters| run(&sled, iters, per_batch))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    full_transactions,
    full_transactions_archived,
    one_broker_shard,
    macs_of_one_transaction,
    codec_of_a_transmit,
    store_group_commit,
    disk_append_log,
    journal_backends
);
criterion_main!(benches);
