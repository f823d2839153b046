//! The compliance archive as the shell shows it (`docs/ARCHIVE.md`): where
//! its files are (`[archive]`), its signing key's file, and search over the
//! files — for the CLI with the node stopped or running, and for the API.
//! Reading never writes: the running archive appends, these only read.
//!
//! Owns: the archive's views. Must not touch: appending (the archive
//! member's, `switchboard_actors::archive`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use switchboard_core::archive::search::{search, Query};
use switchboard_core::archive::{self, ArchiveKey, ArchiveRecord};
use switchboard_core::cluster::archive::StreamedRecord;

use crate::config::Config;
use crate::http::time::rfc3339;
use crate::secrets::{check_private, write_private};

/// Where an archive's files are.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Records and contents.
    pub dir: PathBuf,
    /// The chain and checkpoints.
    pub fingerprints: PathBuf,
    /// The signing key's file.
    pub key: PathBuf,
}

impl Paths {
    /// Those of `cfg`.
    pub fn of(cfg: &Config) -> Self {
        let (a, data) = (&cfg.archive, &cfg.data.dir);
        Self {
            dir: a.dir(data),
            fingerprints: a.fingerprints(data),
            key: a.key_file(data),
        }
    }
}

/// The signing key in `path`: read (refused when others may read it), or
/// made and written (0600) when there is none.
///
/// # Errors
/// A file that cannot be read or written, or is no key.
pub fn signing_key(path: &Path) -> anyhow::Result<ArchiveKey> {
    if !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let key = ArchiveKey::generate();
        write_private(path, &format!("{}\n", hex(&key.seed())))?;
        tracing::info!(path = %path.display(), public = %hex(&key.public()), "made the archive's signing key");
        return Ok(key);
    }
    check_private(path)?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let seed = unhex(text.trim())
        .with_context(|| format!("{}: not an archive key (64 hex digits)", path.display()))?;
    Ok(ArchiveKey::from_seed(seed))
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    switchboard_core::archive::record::hex(b)
}

/// 32 bytes from 64 hex digits.
pub fn unhex(s: &str) -> Option<[u8; 32]> {
    archive::record::unhex(s)?.try_into().ok()
}

/// One record found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Hit {
    /// Its place in the chain.
    pub seq: u64,
    /// The node whose archive holds it (a cluster search).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `delivery` or `event`.
    pub kind: String,
    /// The transaction.
    pub txn: String,
    /// The sender.
    pub from: String,
    /// The recipient.
    pub to: String,
    /// The mechanism.
    pub medium: String,
    /// RFC 3339: when it concluded.
    pub time: String,
    /// How.
    pub outcome: String,
    /// The subject, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The content as text (text and mail content; else empty).
    pub body: String,
    /// Policy's tags.
    pub tags: Vec<String>,
}

/// A page of results.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Found {
    /// In chain order.
    pub records: Vec<Hit>,
    /// The seq to ask `after` for the next page; none when this is the last.
    pub next: Option<u64>,
}

/// Searches the archive at `paths`.
///
/// # Errors
/// The files cannot be read.
pub fn find(paths: &Paths, q: &Query) -> anyhow::Result<Found> {
    let records = archive::read_records(&paths.dir)?;
    let contents = archive::contents::ContentReader::open(&paths.dir)?;
    #[cfg(feature = "search-index")]
    let indexed = if q.candidates.is_some() {
        q.clone()
    } else {
        // The index narrows to records holding the text's words; an index
        // that cannot be had now (another writer) leaves the scan.
        let mut q = q.clone();
        match archive::index::candidates(&paths.dir, &records, &contents, &q.text) {
            Ok(c) => q.candidates = c,
            Err(e) => tracing::warn!(error = %e, "archive search index unavailable; scanning"),
        }
        q
    };
    #[cfg(feature = "search-index")]
    let q = &indexed;
    let (hits, more) = search(records, q, |hash| contents.read(hash).unwrap_or_default());
    let next = more.then(|| hits.last().map(|(r, _)| r.seq)).flatten();
    let records = hits.into_iter().map(|(r, c)| hit(r, &c, None)).collect();
    Ok(Found { records, next })
}

/// Searches every node's records on the cluster's archive stream: by node,
/// then in each node's chain order, at most `q.limit` in all (`after` is a
/// seq of one node's chain, so a cluster search has no next page: narrow
/// it instead).
pub fn find_streamed(streamed: Vec<StreamedRecord>, q: &Query) -> Found {
    let mut records = Vec::new();
    // One node's records with their contents, in its chain order.
    type Node = (String, Vec<(ArchiveRecord, Vec<u8>)>);
    let mut by_node: Vec<Node> = Vec::new();
    for s in streamed {
        let Ok(r) = ArchiveRecord::decode(&s.record) else {
            continue;
        };
        match by_node.last_mut() {
            Some((node, v)) if *node == s.node => v.push((r, s.content)),
            _ => by_node.push((s.node, vec![(r, s.content)])),
        }
    }
    for (node, recs) in by_node {
        let contents: std::collections::HashMap<String, Vec<u8>> = (recs.iter())
            .map(|(r, c)| (r.content_sha256.clone(), c.clone()))
            .collect();
        let mut q = q.clone();
        q.limit = q.limit.saturating_sub(records.len());
        if q.limit == 0 {
            break;
        }
        let rs = recs.into_iter().map(|(r, _)| r);
        let (hits, _) = search(rs, &q, |h| contents.get(h).cloned().unwrap_or_default());
        records.extend(
            hits.into_iter()
                .map(|(r, c)| hit(r, &c, Some(node.clone()))),
        );
    }
    Found {
        records,
        next: None,
    }
}

/// What a search shows of `r` (with content `c`, from `node`'s archive).
fn hit(r: ArchiveRecord, c: &[u8], node: Option<String>) -> Hit {
    let texty = r.content_type.starts_with("text/") || r.content_type.starts_with("message/");
    Hit {
        seq: r.seq,
        node,
        kind: r.kind,
        txn: r.txn,
        from: r.from,
        to: r.to,
        medium: r.medium,
        time: rfc3339(r.at_ms),
        outcome: r.outcome,
        subject: r.subject,
        body: if texty {
            String::from_utf8_lossy(c).into_owned()
        } else {
            String::new()
        },
        tags: r.tags,
    }
}

/// Whether `paths` has an archive at all.
pub fn exists(paths: &Paths) -> bool {
    paths.dir.join(archive::files::RECORDS).exists()
}

/// The formats `archive export` writes beside the raw records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One RFC 5322 message per record (`eml/<seq>.eml`).
    Eml,
    /// All of them in one mbox (`archive.mbox`).
    Mbox,
    /// One JSON object per line (`records.jsonl`).
    Jsonl,
}

fn header(v: &str) -> String {
    v.replace(['\r', '\n'], " ")
}

/// A record as an RFC 5322 message (CRLF lines).
pub fn eml_of(h: &Hit, sent_at_ms: u64) -> String {
    let mut m = format!(
        "From: {}\r\nTo: {}\r\nDate: {}\r\nSubject: {}\r\nMessage-ID: <{}.{}@switchboard.archive>\r\nX-Switchboard-Seq: {}\r\nX-Switchboard-Txn: {}\r\nX-Switchboard-Medium: {}\r\nX-Switchboard-Outcome: {}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        header(&h.from),
        header(&h.to),
        switchboard_core::time::rfc5322(sent_at_ms),
        header(h.subject.as_deref().unwrap_or("(no subject)")),
        header(&h.txn),
        h.seq,
        h.seq,
        header(&h.txn),
        header(&h.medium),
        header(&h.outcome),
    );
    for line in h.body.lines() {
        m.push_str(line);
        m.push_str("\r\n");
    }
    m
}

/// Exports the records `q` finds into `out` (created if missing): the raw
/// records, their contents and `manifest.json` (they verify on their own:
/// `archive verify --export OUT`), and `format` beside them. Returns how
/// many.
///
/// # Errors
/// The files cannot be read or written, or a record is not under a
/// checkpoint yet.
pub fn export(paths: &Paths, q: &Query, format: Format, out: &Path) -> anyhow::Result<usize> {
    let public = signing_key(&paths.key)?.public();
    let mut all = q.clone();
    all.limit = usize::MAX;
    let found = find(paths, &all)?;
    let seqs: Vec<u64> = found.records.iter().map(|h| h.seq).collect();
    let records = archive::export::export(&paths.dir, &paths.fingerprints, &public, &seqs, out)?;
    let sent: std::collections::HashMap<u64, u64> =
        records.iter().map(|r| (r.seq, r.sent_at_ms)).collect();
    let sent_of = |h: &Hit| sent.get(&h.seq).copied().unwrap_or(0);
    match format {
        Format::Eml => {
            let dir = out.join("eml");
            std::fs::create_dir_all(&dir)?;
            for h in &found.records {
                std::fs::write(dir.join(format!("{}.eml", h.seq)), eml_of(h, sent_of(h)))?;
            }
        }
        Format::Mbox => {
            let mut mbox = String::new();
            for h in &found.records {
                mbox.push_str(&format!(
                    "From switchboard {}\n",
                    switchboard_core::time::rfc5322(sent_of(h))
                ));
                for line in eml_of(h, sent_of(h)).split("\r\n") {
                    if line.trim_start_matches('>').starts_with("From ") {
                        mbox.push('>');
                    }
                    mbox.push_str(line);
                    mbox.push('\n');
                }
            }
            std::fs::write(out.join("archive.mbox"), mbox)?;
        }
        Format::Jsonl => {
            let mut lines = String::new();
            for h in &found.records {
                lines.push_str(&serde_json::to_string(h)?);
                lines.push('\n');
            }
            std::fs::write(out.join("records.jsonl"), lines)?;
        }
    }
    Ok(found.records.len())
}

/// One record a purge lets go (`archive purge`, `POST
/// /v1/admin/archive/purge`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PurgeRow {
    /// Its place in the chain.
    pub seq: u64,
    /// When it concluded (ms).
    pub at_ms: u64,
    /// The sender.
    pub from: String,
    /// The recipient.
    pub to: String,
    /// The transaction.
    pub txn: String,
}

impl PurgeRow {
    /// The row of `r`.
    pub fn of(r: &switchboard_core::archive::ArchiveRecord) -> Self {
        Self {
            seq: r.seq,
            at_ms: r.at_ms,
            from: r.from.clone(),
            to: r.to.clone(),
            txn: r.txn.clone(),
        }
    }
}
