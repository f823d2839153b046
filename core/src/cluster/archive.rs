//! The compliance archive as a replicated stream (CLUSTER.md: "archive
//! records | streams"). Each node's archive member publishes every record
//! it writes — the record's stored bytes and its content — to
//! [`names::ARCHIVE_STREAM`], subject `sb.archive.<node>`, `Nats-Msg-Id`
//! `<node>/<seq>` (a publish tried again is stored once). Any node reads
//! every node's records from it, so a search on one node finds what
//! another archived, also while that node is down. The node's own files
//! stay the archive of record (its chain, checkpoints, `archive verify`);
//! the stream is the copy every node reads, and a reader can check each
//! record against the hash of its node's chain by exporting from that node.

use async_nats::jetstream::{context::PublishErrorKind, stream};
use serde::{Deserialize, Serialize};

use super::{names, ClusterError, Engine};

/// One record on the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamedRecord {
    /// The node whose archive wrote it.
    pub node: String,
    /// Its seq in that node's chain.
    pub seq: u64,
    /// The record as stored there (JSON).
    pub record: Vec<u8>,
    /// Its content.
    pub content: Vec<u8>,
}

fn js(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::JetStream(e.to_string())
}

/// The stream's configuration with `replicas` copies.
pub fn stream_config(replicas: usize) -> stream::Config {
    stream::Config {
        name: names::ARCHIVE_STREAM.into(),
        description: Some("Switchboard: every node's archive records, a subject per node".into()),
        subjects: vec![names::ARCHIVE_SUBJECTS.into()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        duplicate_window: names::DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// Publishes `r` and waits for JetStream's acknowledgement.
///
/// # Errors
/// [`ClusterError::JetStream`]: not taken (no quorum, no stream); the
/// caller publishes it again later.
pub async fn publish(engine: &Engine, r: &StreamedRecord) -> Result<(), ClusterError> {
    use async_nats::jetstream::message::PublishMessage;
    let msg = PublishMessage::build()
        .payload(crate::protocol::codec::encode(r).into())
        .message_id(format!("{}/{}", r.node, r.seq));
    let ack = (engine.js())
        .send_publish(names::archive_subject(&r.node), msg)
        .await
        .map_err(js)?;
    match ack.await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == PublishErrorKind::StreamNotFound => Err(ClusterError::State(
            format!("no {} stream: {e}", names::ARCHIVE_STREAM),
        )),
        Err(e) => Err(js(e)),
    }
}

/// The last seq `node` has on the stream (0: none).
///
/// # Errors
/// [`ClusterError`]: the stream cannot be read.
pub async fn last_published(engine: &Engine, node: &str) -> Result<u64, ClusterError> {
    let s = (engine.js())
        .get_stream(names::ARCHIVE_STREAM)
        .await
        .map_err(js)?;
    match s
        .get_last_raw_message_by_subject(&names::archive_subject(node))
        .await
    {
        Ok(m) => {
            let r: StreamedRecord = crate::protocol::codec::decode(&m.payload).map_err(js)?;
            Ok(r.seq)
        }
        Err(e)
            if matches!(
                e.kind(),
                async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound
            ) =>
        {
            Ok(0)
        }
        Err(e) => Err(js(e)),
    }
}

/// Every record on the stream, by node then seq, each once.
///
/// # Errors
/// [`ClusterError`]: the stream cannot be read.
pub async fn read_all(engine: &Engine) -> Result<Vec<StreamedRecord>, ClusterError> {
    use async_nats::jetstream::consumer::pull;
    use futures_util::StreamExt;
    let mut s = (engine.js())
        .get_stream(names::ARCHIVE_STREAM)
        .await
        .map_err(js)?;
    let last = s.info().await.map_err(js)?.state.last_sequence;
    let mut out: Vec<StreamedRecord> = Vec::new();
    if last > 0 {
        let consumer = s
            .create_consumer(pull::OrderedConfig::default())
            .await
            .map_err(js)?;
        let mut messages = consumer.messages().await.map_err(js)?;
        while let Some(m) = messages.next().await {
            let m = m.map_err(js)?;
            let seq = m.info().map_err(js)?.stream_sequence;
            match crate::protocol::codec::decode::<StreamedRecord>(&m.payload) {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::warn!(seq, error = %e, "an archive stream message that is not a record")
                }
            }
            if seq >= last {
                break;
            }
        }
    }
    out.sort_by(|a, b| (&a.node, a.seq).cmp(&(&b.node, b.seq)));
    out.dedup_by(|a, b| a.node == b.node && a.seq == b.seq);
    Ok(out)
}

/// Starts `node`'s replication: first what its archive in `dir` holds
/// beyond what the stream has (records written while the cluster was
/// away, or before a crash), then each record sent on the returned channel,
/// in order, each published until taken (a second apart while JetStream
/// refuses).
pub fn replicate(
    engine: &Engine,
    node: &str,
    dir: &std::path::Path,
) -> tokio::sync::mpsc::UnboundedSender<StreamedRecord> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<StreamedRecord>();
    let (engine2, node, dir) = (engine.clone(), node.to_owned(), dir.to_path_buf());
    engine.spawn(async move {
        let engine = engine2;
        let mut sent = loop {
            match last_published(&engine, &node).await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(error = %e, "the archive stream cannot be read; trying again");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        };
        for r in local_after(&node, &dir, sent) {
            publish_until_taken(&engine, &r).await;
            sent = r.seq;
        }
        while let Some(r) = rx.recv().await {
            if r.seq > sent {
                publish_until_taken(&engine, &r).await;
                sent = r.seq;
            }
        }
    });
    tx
}

async fn publish_until_taken(engine: &Engine, r: &StreamedRecord) {
    loop {
        match publish(engine, r).await {
            Ok(()) => return,
            Err(e) => {
                metrics::counter!("switchboard_archive_stream_retries_total").increment(1);
                tracing::warn!(seq = r.seq, error = %e, "an archive record not on the stream yet; trying again");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

/// The records of the archive in `dir` after `seq`.
fn local_after(node: &str, dir: &std::path::Path, seq: u64) -> Vec<StreamedRecord> {
    use crate::archive::{contents::ContentReader, files, log, ArchiveRecord};
    let (Ok((stored, _)), Ok(contents)) = (
        log::read_records(&dir.join(files::RECORDS)),
        ContentReader::open(dir),
    ) else {
        tracing::warn!(dir = %dir.display(), "the archive cannot be read to replicate it");
        return Vec::new();
    };
    stored
        .into_iter()
        .filter_map(|bytes| {
            let r = ArchiveRecord::decode(&bytes).ok().filter(|r| r.seq > seq)?;
            Some(StreamedRecord {
                node: node.to_owned(),
                seq: r.seq,
                content: contents.read(&r.content_sha256).unwrap_or_default(),
                record: bytes,
            })
        })
        .collect()
}
