//! [`JetStreamJournal`]: a node's journal in a cluster — its subject of the
//! replicated `SB_JOURNAL` stream (`CLUSTER.md`). A round of appends is one
//! published message; JetStream's acknowledgement (a quorum of servers has
//! it, written with `sync_interval: always` in the shipped configs) is the
//! commit, so the durable position advances only then.
//!
//! A publish whose acknowledgement does not come (a leader election, no
//! quorum) is retried with the same `Nats-Msg-Id` until it is taken: the
//! stream's duplicate window stores it once whatever happened to the first
//! try. Meanwhile the journal is *stalled* ([`JetStreamJournal::waiting`])
//! and nothing behind the round is acknowledged; it never fails for that,
//! so traffic resumes when the quorum is back. Each publish also expects
//! the subject's last sequence to be the one this writer saw last, so a
//! second process with the same node id is refused instead of interleaving
//! with the first.
//!
//! Positions count batches (the first append ends at 1), as the sled
//! journal's do; a message holds a run of them: `first u64 ‖ count u32`,
//! then `len u32 ‖ bytes` per batch, big-endian.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use tokio::sync::{watch, Notify};

use super::{lock, Durability, Journal, JournalError, Position};
use crate::cluster::{names, ClusterError, Engine};

/// Room left in a message for its headers.
const HEADROOM: usize = 4096;

/// The longest pause between two tries of a publish.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

struct Pending {
    /// The position of the last append.
    last: Position,
    /// Appended, not yet taken by the writer: (position, batch).
    batches: Vec<(Position, Vec<u8>)>,
}

struct Shared {
    engine: Engine,
    subject: String,
    /// This writer's random id: a round's `Nats-Msg-Id` is
    /// `subject-writer-first position`, so a retry is known as ours and a
    /// second writer's round (same positions) is not.
    writer_id: u64,
    stream: String,
    max_message: usize,
    pending: Mutex<Pending>,
    wake: Notify,
    durability: Durability,
    /// The last batch position of each stored message → its stream
    /// sequence (what truncation purges by).
    index: Mutex<BTreeMap<Position, u64>>,
    /// When the round in flight was first published.
    stalled: Mutex<Option<Instant>>,
    /// The stream sequence of this subject's last message (0: none).
    last_stored: Mutex<u64>,
    /// Tests: throw the next acknowledgement away, as if it were lost.
    #[cfg(test)]
    lose_ack: std::sync::atomic::AtomicBool,
}

/// A node's journal on JetStream.
pub struct JetStreamJournal {
    shared: Arc<Shared>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for JetStreamJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamJournal")
            .field("subject", &self.shared.subject)
            .finish_non_exhaustive()
    }
}

fn js_err(e: impl std::fmt::Display) -> JournalError {
    JournalError::Io(format!("JetStream: {e}"))
}

impl From<ClusterError> for JournalError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::Stopped => JournalError::Closed,
            e => JournalError::Io(e.to_string()),
        }
    }
}

/// A message's batches: (first position, the batches).
fn decode(payload: &[u8]) -> Result<(Position, Vec<&[u8]>), JournalError> {
    let bad = || JournalError::Io("a journal message that does not decode".into());
    let head = payload.get(..12).ok_or_else(bad)?;
    let first = u64::from_be_bytes(head[..8].try_into().map_err(|_| bad())?);
    let count = u32::from_be_bytes(head[8..12].try_into().map_err(|_| bad())?);
    let mut rest = &payload[12..];
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = u32::from_be_bytes(
            rest.get(..4)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        ) as usize;
        out.push(rest.get(4..4 + len).ok_or_else(bad)?);
        rest = &rest[4 + len..];
    }
    if !rest.is_empty() || first == 0 {
        return Err(bad());
    }
    Ok((first, out))
}

fn encode(batches: &[(Position, Vec<u8>)]) -> Vec<u8> {
    let size = 12 + batches.iter().map(|b| 4 + b.1.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&batches[0].0.to_be_bytes());
    out.extend_from_slice(&(batches.len() as u32).to_be_bytes());
    for (_, b) in batches {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    }
    out
}

impl JetStreamJournal {
    /// Opens `engine`'s node's journal: finds the last position it stored
    /// and starts the writer. The stream must exist
    /// ([`crate::cluster::init::ensure`]).
    ///
    /// # Errors
    /// When JetStream does not answer or the last message does not decode.
    pub fn open(engine: &Engine) -> Result<Self, JournalError> {
        let subject = names::journal_subject(&engine.settings().node_id);
        let stream = names::JOURNAL_STREAM.to_owned();
        let e = engine.clone();
        let (subj, name) = (subject.clone(), stream.clone());
        let last = engine.run(async move { last_message(&e, &name, &subj).await })??;
        let (last_pos, last_seq) = last.unwrap_or((0, 0));
        let max_message = engine.client().server_info().max_payload.max(64 * 1024) - HEADROOM;
        let mut index = BTreeMap::new();
        if last_seq > 0 {
            index.insert(last_pos, last_seq);
        }
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| JournalError::Io(e.to_string()))?;
        let shared = Arc::new(Shared {
            engine: engine.clone(),
            subject,
            writer_id: u64::from_be_bytes(id),
            stream,
            max_message,
            pending: Mutex::new(Pending {
                last: last_pos,
                batches: Vec::new(),
            }),
            wake: Notify::new(),
            durability: Durability::new(last_pos),
            index: Mutex::new(index),
            stalled: Mutex::new(None),
            last_stored: Mutex::new(last_seq),
            #[cfg(test)]
            lose_ack: std::sync::atomic::AtomicBool::new(false),
        });
        let s = shared.clone();
        let writer = engine.spawn(async move { writer(&s).await });
        Ok(Self {
            shared,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// The largest batch one append takes.
    pub fn max_batch(&self) -> usize {
        self.shared.max_message - 16
    }

    /// How long the round in flight has waited for JetStream's
    /// acknowledgement (`None`: nothing is in flight). Milliseconds are
    /// normal; a node whose round waits for seconds has lost its quorum
    /// and refuses new work (`cluster_unavailable`).
    pub fn waiting(&self) -> Option<Duration> {
        lock(&self.shared.stalled).map(|t| t.elapsed())
    }

    /// Tests: the next acknowledgement is thrown away, as if lost.
    #[cfg(test)]
    pub(crate) fn lose_next_ack(&self) {
        self.shared
            .lose_ack
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stops taking appends; the writer publishes what it has (while
    /// JetStream takes it) and stops.
    pub fn close(&self) {
        self.shared.durability.close();
        self.shared.wake.notify_one();
        if let Some(w) = lock(&self.writer).take() {
            // Bounded: a writer stuck retrying (no quorum) is let go of;
            // what it held was never acknowledged.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !w.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            w.abort();
        }
        self.shared.durability.wake();
    }
}

impl Drop for JetStreamJournal {
    fn drop(&mut self) {
        self.close();
    }
}

/// Takes what is pending, at most one message's worth.
fn take_round(s: &Shared) -> Vec<(Position, Vec<u8>)> {
    let mut p = lock(&s.pending);
    let mut size = 12;
    let n = p
        .batches
        .iter()
        .take_while(|b| {
            size += 4 + b.1.len();
            size <= s.max_message
        })
        .count()
        .max(1)
        .min(p.batches.len());
    p.batches.drain(..n).collect()
}

async fn writer(s: &Shared) {
    loop {
        let round = take_round(s);
        if round.is_empty() {
            if s.durability.is_closed() {
                return;
            }
            s.wake.notified().await;
            continue;
        }
        let last = round.last().map_or(0, |b| b.0);
        let payload: Bytes = encode(&round).into();
        let id = format!("{}-{:016x}-{}", s.subject, s.writer_id, round[0].0);
        let mut backoff = Duration::from_millis(50);
        *lock(&s.stalled) = Some(Instant::now());
        loop {
            let expected = *lock(&s.last_stored);
            match publish(s, &id, payload.clone(), expected).await {
                Ok(seq) => {
                    let since = lock(&s.stalled).take();
                    if let Some(t) = since {
                        metrics::histogram!("switchboard_cluster_publish_seconds")
                            .record(t.elapsed().as_secs_f64());
                    }
                    *lock(&s.last_stored) = seq;
                    lock(&s.index).insert(last, seq);
                    s.durability.publish(last);
                    break;
                }
                Err(Refused(e)) => {
                    s.durability.fail(e);
                    return;
                }
                Err(Retry(e)) => {
                    metrics::counter!("switchboard_cluster_publish_retries_total").increment(1);
                    let since = lock(&s.stalled).unwrap_or_else(Instant::now);
                    tracing::warn!(
                        subject = %s.subject,
                        waited_ms = since.elapsed().as_millis() as u64,
                        error = %e,
                        "the journal's publish was not acknowledged; retrying"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

enum PublishError {
    /// Try again (no answer, no quorum, a leader election).
    Retry(String),
    /// Never again (another writer, a stream that refuses the message).
    Refused(JournalError),
}
use PublishError::{Refused, Retry};

async fn publish(s: &Shared, id: &str, payload: Bytes, expected: u64) -> Result<u64, PublishError> {
    let msg = PublishMessage::build()
        .payload(payload)
        .message_id(id)
        .expected_last_subject_sequence(expected);
    let ack = s
        .engine
        .js()
        .send_publish(s.subject.clone(), msg)
        .await
        .map_err(|e| Retry(e.to_string()))?;
    match ack.await {
        #[cfg(test)]
        Ok(_) if s.lose_ack.swap(false, std::sync::atomic::Ordering::SeqCst) => {
            Err(Retry("the acknowledgement was lost (test)".into()))
        }
        Ok(a) => Ok(a.sequence),
        Err(e) => {
            let text = e.to_string();
            // JetStream's "wrong last sequence" (10071): the subject's
            // last message is not the one this writer stored last. It is
            // this very round when an earlier try was stored and its
            // acknowledgement lost (JetStream checks the sequence before
            // the duplicate window); else another process appended.
            if text.contains("wrong last sequence") || text.contains("10071") {
                if let Some(seq) = stored_as(s, id).await? {
                    return Ok(seq);
                }
                return Err(Refused(JournalError::Io(format!(
                    "another process writes {} (is node id {:?} used twice?): {text}",
                    s.subject,
                    s.engine.settings().node_id
                ))));
            }
            Err(Retry(text))
        }
    }
}

/// The stream sequence of the subject's last message when it carries
/// `id` (`None`: another message is last).
async fn stored_as(s: &Shared, id: &str) -> Result<Option<u64>, PublishError> {
    let stream = s
        .engine
        .js()
        .get_stream(&s.stream)
        .await
        .map_err(|e| Retry(e.to_string()))?;
    let last = stream
        .get_last_raw_message_by_subject(&s.subject)
        .await
        .map_err(|e| Retry(e.to_string()))?;
    let ours = last
        .headers
        .get(async_nats::header::NATS_MESSAGE_ID)
        .is_some_and(|v| v.as_str() == id);
    Ok(ours.then_some(last.sequence))
}

impl Journal for JetStreamJournal {
    fn append(&self, batch: &[u8]) -> Result<Position, JournalError> {
        let s = &self.shared;
        if batch.len() > self.max_batch() {
            return Err(JournalError::TooLarge {
                len: batch.len(),
                max: self.max_batch(),
            });
        }
        let mut p = lock(&s.pending);
        if let Some(e) = s.durability.refusal() {
            return Err(e);
        }
        p.last += 1;
        let pos = p.last;
        p.batches.push((pos, batch.to_vec()));
        drop(p);
        s.wake.notify_one();
        Ok(pos)
    }

    fn durable(&self) -> Position {
        self.shared.durability.durable()
    }

    fn watch(&self) -> watch::Receiver<Position> {
        self.shared.durability.watch()
    }

    fn failed(&self) -> Option<JournalError> {
        self.shared.durability.failed()
    }

    fn replay(
        &self,
        from: Position,
        each: &mut dyn FnMut(Position, &[u8]),
    ) -> Result<Position, JournalError> {
        let s = &self.shared;
        let last_stored = *lock(&s.last_stored);
        if last_stored == 0 {
            return Ok(from);
        }
        // The messages come over a channel from the engine's thread; the
        // callback runs here.
        // Unbounded: the tail lands in the store's overlay whole anyway,
        // and the engine's thread must never block on this caller.
        let (tx, rx) = std::sync::mpsc::channel::<Result<(u64, Vec<u8>), JournalError>>();
        let (engine, stream, subject) = (s.engine.clone(), s.stream.clone(), s.subject.clone());
        let start = lock(&s.index)
            .range(..=from)
            .next_back()
            .map_or(1, |(_, seq)| *seq);
        s.engine.spawn(async move {
            let got = read_subject(&engine, &stream, &subject, start, last_stored, &tx).await;
            if let Err(e) = got {
                let _ = tx.send(Err(e));
            }
        });
        let mut end = from;
        while let Ok(m) = rx.recv() {
            let (seq, payload) = m?;
            let (first, batches) = decode(&payload)?;
            let last = first + batches.len() as u64 - 1;
            lock(&s.index).insert(last, seq);
            for (i, b) in batches.into_iter().enumerate() {
                let pos = first + i as u64;
                if pos > from {
                    each(pos, b);
                    end = pos;
                }
            }
        }
        Ok(end)
    }

    fn truncate_before(&self, pos: Position) -> Result<(), JournalError> {
        let s = &self.shared;
        // The first message that still holds a batch at or after `pos`.
        let keep_from = {
            let index = lock(&s.index);
            index.range(pos..).next().map(|(_, seq)| *seq)
        };
        let Some(keep_from) = keep_from else {
            return Ok(());
        };
        let (engine, stream, subject) = (s.engine.clone(), s.stream.clone(), s.subject.clone());
        engine.clone().run(async move {
            let st = engine.js().get_stream(&stream).await.map_err(js_err)?;
            st.purge()
                .filter(subject)
                .sequence(keep_from)
                .await
                .map_err(js_err)?;
            Ok::<_, JournalError>(())
        })??;
        lock(&s.index).retain(|last, _| *last >= pos);
        Ok(())
    }

    fn close(&self) {
        JetStreamJournal::close(self);
    }

    fn stalled(&self) -> Option<Duration> {
        self.waiting()
    }
}

/// The last message of `subject`: (its last batch position, its stream
/// sequence); `None` when the subject holds none.
async fn last_message(
    engine: &Engine,
    stream: &str,
    subject: &str,
) -> Result<Option<(Position, u64)>, JournalError> {
    let s = engine.js().get_stream(stream).await.map_err(js_err)?;
    match s.get_last_raw_message_by_subject(subject).await {
        Ok(m) => {
            let (first, batches) = decode(&m.payload)?;
            Ok(Some((first + batches.len() as u64 - 1, m.sequence)))
        }
        Err(err)
            if matches!(
                err.kind(),
                async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound
            ) =>
        {
            Ok(None)
        }
        Err(err) => Err(js_err(err)),
    }
}

/// Another node's journal, read while it is down (a takeover,
/// [`crate::cluster::takeover`]): each batch `node`'s subject holds, in
/// order, to `each`; how many. Blocks: never call it on the engine's
/// thread.
///
/// # Errors
/// When JetStream does not answer or a message does not decode.
pub(crate) fn read_node(
    engine: &Engine,
    node: &str,
    each: &mut dyn FnMut(&[u8]) -> Result<(), JournalError>,
) -> Result<usize, JournalError> {
    let subject = names::journal_subject(node);
    let (e, subj) = (engine.clone(), subject.clone());
    let last =
        engine.run(async move { last_message(&e, names::JOURNAL_STREAM, &subj).await })??;
    let Some((_, last_seq)) = last else {
        return Ok(0);
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let e = engine.clone();
    engine.spawn(async move {
        if let Err(err) = read_subject(&e, names::JOURNAL_STREAM, &subject, 1, last_seq, &tx).await
        {
            let _ = tx.send(Err(err));
        }
    });
    let mut n = 0;
    while let Ok(m) = rx.recv() {
        let (_, payload) = m?;
        for b in decode(&payload)?.1 {
            each(b)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Empties `node`'s subject (its journal, taken over and durable in
/// another node's). Blocks like [`read_node`].
///
/// # Errors
/// When JetStream does not answer.
pub(crate) fn purge_node(engine: &Engine, node: &str) -> Result<(), JournalError> {
    let e = engine.clone();
    let subject = names::journal_subject(node);
    engine.run(async move {
        let st = e
            .js()
            .get_stream(names::JOURNAL_STREAM)
            .await
            .map_err(js_err)?;
        st.purge().filter(subject).await.map_err(js_err)?;
        Ok::<_, JournalError>(())
    })?
}

/// Sends every message of `subject` from stream sequence `start` through
/// `last` to `tx`, in order (an ordered consumer: gaps and redeliveries
/// are the client's to repair).
async fn read_subject(
    engine: &Engine,
    stream: &str,
    subject: &str,
    start: u64,
    last: u64,
    tx: &std::sync::mpsc::Sender<Result<(u64, Vec<u8>), JournalError>>,
) -> Result<(), JournalError> {
    use async_nats::jetstream::consumer::{pull, DeliverPolicy};
    use futures_util::StreamExt;
    let st = engine.js().get_stream(stream).await.map_err(js_err)?;
    let consumer = st
        .create_consumer(pull::OrderedConfig {
            filter_subject: subject.to_owned(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ..Default::default()
        })
        .await
        .map_err(js_err)?;
    let mut messages = consumer.messages().await.map_err(js_err)?;
    while let Some(m) = messages.next().await {
        let m = m.map_err(js_err)?;
        let seq = m.info().map_err(js_err)?.stream_sequence;
        if tx.send(Ok((seq, m.payload.to_vec()))).is_err() {
            return Ok(());
        }
        if seq >= last {
            break;
        }
    }
    Ok(())
}
