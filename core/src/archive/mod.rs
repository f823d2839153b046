//! The compliance archive's store (COMPLIANCE.md "The archive"): one record
//! per concluded delivery of an archived scope, never changed in place;
//! each content stored once by its hash; a hash chain over the records in a
//! fingerprints store on another path; Ed25519-signed checkpoints every N
//! records or T seconds; and the verification that names the first bad
//! record, a deleted one, or a rewritten window.
//!
//! - [`record`]: what a record says, and its hash (of the bytes as stored);
//! - [`chain`]: the chain and checkpoints, their fixed-size entries;
//! - [`keys`]: the signing key (a 32-byte seed; the shell keeps the file);
//! - [`log`]: the append-only files (length-prefixed records, fixed-size
//!   fingerprint entries), recovered to their last whole entry;
//! - [`verify`]: reading it all back, trusting nothing but the public key;
//! - [`search`]: by participant, time, medium, tag and text;
//! - [`retention`]: how long records are kept, and holds that veto a purge;
//! - [`export`]: a set of records with a manifest that verifies on its own.
//!
//! Owns: the archive's files. Must not touch: the node's store (the archive
//! is apart from it, so purging one never touches the other), search.

pub mod chain;
pub mod contents;
pub mod export;
#[cfg(feature = "search-index")]
pub mod index;
pub mod keys;
pub mod log;
pub mod record;
pub mod retention;
pub mod search;
pub mod verify;

use std::path::{Path, PathBuf};

pub use chain::{Checkpoint, Link, Tombstone};
pub use keys::ArchiveKey;
pub use record::ArchiveRecord;
pub use verify::{verify, Problem, Verified};

/// The files of an archive.
pub mod files {
    /// The records, under `archive.dir`.
    pub const RECORDS: &str = "records.log";
    /// Contents, once per hash, under `archive.dir`.
    pub const CONTENTS: &str = "contents.log";
    /// Contents by hash, one file each, under `archive.dir` (archives
    /// written before `contents.log`; read still, never written).
    pub const CONTENT: &str = "content";
    /// The chain, under `archive.fingerprints_dir`.
    pub const CHAIN: &str = "chain.log";
    /// The signed checkpoints, under `archive.fingerprints_dir`.
    pub const CHECKPOINTS: &str = "checkpoints.log";
    /// The signed tombstones of purged records, under
    /// `archive.fingerprints_dir`.
    pub const TOMBSTONES: &str = "tombstones.log";
    /// Held while the archive is open for appends, under `archive.dir`.
    pub const LOCK: &str = ".lock";
}

/// When a checkpoint is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    /// After this many records since the last one.
    pub every: u64,
    /// Or after this long (ms) with a record not yet covered.
    pub interval_ms: u64,
}

impl Default for Cadence {
    fn default() -> Self {
        Self {
            every: 1000,
            interval_ms: 60_000,
        }
    }
}

/// Why the archive could not do something.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A file could not be read or written.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// A record could not be encoded or decoded.
    #[error("a record: {0}")]
    Record(String),
    /// Another process has the archive open (a running node).
    #[error("{0}: the archive is open in another process (a running node): stop it first")]
    Busy(PathBuf),
    /// The files disagree in a way only tampering makes (the archive will
    /// not append to them: run `switchboard archive verify`).
    #[error("{0}")]
    Inconsistent(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |e| ArchiveError::Io(path.to_path_buf(), e)
}

/// An open archive: appends records (content first, then the record, then
/// its link in the chain, each step on disk before the next) and signs
/// checkpoints.
pub struct Archive {
    dir: PathBuf,
    fingerprints: PathBuf,
    /// Held (an exclusive lock) while this archive is open.
    _lock: std::fs::File,
    contents: contents::Contents,
    records: log::Records,
    chain: log::Fixed<{ chain::LINK_LEN }>,
    checkpoints: log::Fixed<{ chain::CHECKPOINT_LEN }>,
    key: ArchiveKey,
    cadence: Cadence,
    /// The last link (seq 0: none).
    last: Link,
    /// The last checkpoint's seq and time.
    checkpointed: (u64, u64),
    /// The transactions of the last [`RECENT`] delivery records, oldest
    /// first (a delivery is recorded once, also across a crash).
    recent: std::collections::VecDeque<String>,
    recent_set: std::collections::HashSet<String>,
}

/// What [`Archive::has_delivery`] and [`Archive::has_event`] look up: the
/// transaction of a delivery record, `txn:outcome` of an event's.
fn recent_key(r: &ArchiveRecord) -> String {
    if r.kind == "delivery" {
        r.txn.clone()
    } else {
        format!("{}:{}", r.txn, r.outcome)
    }
}

/// How many of the last records' transactions are remembered.
pub const RECENT: usize = 4096;

impl Archive {
    /// Opens (or makes) the archive in `dir` with its fingerprints in
    /// `fingerprints`: each file recovered to its last whole entry; a record
    /// written before a crash whose link was not is linked now.
    ///
    /// # Errors
    /// [`ArchiveError`]; `Inconsistent` when the chain is longer than the
    /// records or a link does not follow from its record.
    pub fn open(
        dir: &Path,
        fingerprints: &Path,
        key: ArchiveKey,
        cadence: Cadence,
    ) -> Result<Self, ArchiveError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        std::fs::create_dir_all(fingerprints).map_err(io(fingerprints))?;
        let lock_path = dir.join(files::LOCK);
        let lock = std::fs::File::create(&lock_path).map_err(io(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(ArchiveError::Busy(dir.to_path_buf()));
        }
        let contents = contents::Contents::open(dir)?;
        let records = log::Records::open(&dir.join(files::RECORDS))?;
        let mut chain = log::Fixed::open(&fingerprints.join(files::CHAIN))?;
        let checkpoints = log::Fixed::open(&fingerprints.join(files::CHECKPOINTS))?;
        let links: Vec<Link> = chain.entries()?.iter().map(Link::from_bytes).collect();
        let stored = records.entries()?;
        // Purged records have a tombstone instead.
        let stones: std::collections::HashSet<u64> =
            log::read_fixed::<{ chain::TOMBSTONE_LEN }>(&fingerprints.join(files::TOMBSTONES))?
                .iter()
                .map(|b| Tombstone::from_bytes(b).seq)
                .collect();
        let mut last = Link::genesis();
        let mut next = 0;
        for l in &links {
            if stored
                .get(next)
                .is_some_and(|b| record::hash(b) == l.record_hash)
            {
                next += 1;
            } else if !stones.contains(&l.seq) {
                return Err(ArchiveError::Inconsistent(format!(
                    "link {} has neither its record nor a tombstone ({} links, {} records)",
                    l.seq,
                    links.len(),
                    stored.len()
                )));
            }
            last = *l;
        }
        // Every link accounted for: bytes after the last whole record are
        // a torn append nobody was told of.
        records.cut_torn()?;
        for bytes in &stored[next..] {
            // Written, not yet linked (a crash between the two).
            last = last.next(record::hash(bytes));
            chain.append(&[last.to_bytes()])?;
        }
        let mut recent = std::collections::VecDeque::new();
        for bytes in stored.iter().rev() {
            if recent.len() >= RECENT {
                break;
            }
            if let Ok(r) = ArchiveRecord::decode(bytes) {
                recent.push_front(recent_key(&r));
            }
        }
        let recent_set = recent.iter().cloned().collect();
        let checkpointed = checkpoints
            .entries()?
            .last()
            .map(|b| {
                let c = Checkpoint::from_bytes(b);
                (c.seq, c.at_ms)
            })
            .unwrap_or((0, 0));
        Ok(Self {
            contents,
            dir: dir.to_path_buf(),
            fingerprints: fingerprints.to_path_buf(),
            _lock: lock,
            records,
            chain,
            checkpoints,
            key,
            cadence,
            last,
            checkpointed,
            recent,
            recent_set,
        })
    }

    /// Whether transaction `txn` has a delivery record among the last
    /// [`RECENT`].
    pub fn has_delivery(&self, txn: &str) -> bool {
        self.recent_set.contains(txn)
    }

    /// Whether one of the last records is an event of `txn` with
    /// `outcome` (a `read` recorded already).
    pub fn has_event(&self, txn: &str, outcome: &str) -> bool {
        self.recent_set.contains(&format!("{txn}:{outcome}"))
    }

    fn remember(&mut self, rec: &ArchiveRecord) {
        let key = recent_key(rec);
        if !self.recent_set.insert(key.clone()) {
            return;
        }
        self.recent.push_back(key);
        if self.recent.len() > RECENT {
            if let Some(old) = self.recent.pop_front() {
                self.recent_set.remove(&old);
            }
        }
    }

    /// The last record's seq (0: none yet).
    pub fn seq(&self) -> u64 {
        self.last.seq
    }

    /// Appends `batch` (each record with its content): contents stored
    /// once by hash, then the records, then their links — each durable
    /// before the next; a checkpoint when one is due. Returns the seqs.
    ///
    /// # Errors
    /// [`ArchiveError`]; what was not written has no seq.
    pub fn append(
        &mut self,
        batch: Vec<(ArchiveRecord, Vec<u8>)>,
        now_ms: u64,
    ) -> Result<Vec<u64>, ArchiveError> {
        let first = self.last.seq + 1;
        let n = self.append_stored(batch, now_ms)?.len() as u64;
        Ok((first..first + n).collect())
    }

    /// [`Archive::append`], returning each record's seq and stored bytes
    /// (what a replica is sent).
    ///
    /// # Errors
    /// [`ArchiveError`]; what was not written has no seq.
    pub fn append_stored(
        &mut self,
        batch: Vec<(ArchiveRecord, Vec<u8>)>,
        now_ms: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, ArchiveError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // The contents first (one write), then the records naming them.
        (self.contents).append(batch.iter().map(|(_, c)| c.as_slice()))?;
        let mut encoded = Vec::with_capacity(batch.len());
        let mut seq = self.last.seq;
        let mut recs = Vec::with_capacity(batch.len());
        for (mut rec, content) in batch {
            seq += 1;
            rec.seq = seq;
            rec.content_sha256 = record::hex(&crate::protocol::mac::sha256(&content));
            encoded.push(rec.encode()?);
            recs.push(rec);
        }
        self.records.append(&encoded)?;
        for rec in &recs {
            self.remember(rec);
        }
        let mut links = Vec::with_capacity(encoded.len());
        let mut last = self.last;
        for bytes in &encoded {
            last = last.next(record::hash(bytes));
            links.push(last.to_bytes());
        }
        self.chain.append(&links)?;
        let first = self.last.seq + 1;
        self.last = last;
        self.checkpoint_if_due(now_ms)?;
        Ok((first..).zip(encoded).collect())
    }

    /// Signs a checkpoint now when `every` records or `interval` passed
    /// since the last one (and a record is not yet covered).
    ///
    /// # Errors
    /// [`ArchiveError::Io`].
    pub fn checkpoint_if_due(&mut self, now_ms: u64) -> Result<bool, ArchiveError> {
        let (seq, at) = self.checkpointed;
        let uncovered = self.last.seq - seq;
        let due = uncovered >= self.cadence.every
            || (uncovered > 0 && now_ms.saturating_sub(at) >= self.cadence.interval_ms);
        if due {
            self.checkpoint(now_ms)?;
        }
        Ok(due)
    }

    /// Signs a checkpoint over the last link now (nothing when no record is
    /// uncovered).
    ///
    /// # Errors
    /// [`ArchiveError::Io`].
    pub fn checkpoint(&mut self, now_ms: u64) -> Result<(), ArchiveError> {
        if self.last.seq == self.checkpointed.0 {
            return Ok(());
        }
        let c = Checkpoint::sign(&self.key, self.last.seq, now_ms, self.last.chain);
        self.checkpoints.append(&[c.to_bytes()])?;
        self.checkpointed = (c.seq, c.at_ms);
        Ok(())
    }

    /// Purges the records `seqs` (what retention let go): each gets a
    /// signed tombstone first, then the records file is rewritten without
    /// them, then contents no record names any more are removed. Returns
    /// how many were purged.
    ///
    /// # Errors
    /// [`ArchiveError`]; a crash part-way leaves tombstones for records
    /// still there (a purge run again finishes it).
    pub fn purge(&mut self, seqs: &[u64], now_ms: u64) -> Result<usize, ArchiveError> {
        let gone: std::collections::HashSet<u64> = seqs.iter().copied().collect();
        let stored = self.records.entries()?;
        let mut kept = Vec::with_capacity(stored.len());
        let mut stones = Vec::new();
        let mut purged_txns = Vec::new();
        for bytes in stored {
            let rec = ArchiveRecord::decode(&bytes)?;
            if gone.contains(&rec.seq) {
                let t = Tombstone::sign(&self.key, rec.seq, now_ms, record::hash(&bytes));
                stones.push(t.to_bytes());
                purged_txns.push(rec.txn);
            } else {
                kept.push((bytes, rec.content_sha256));
            }
        }
        if stones.is_empty() {
            return Ok(0);
        }
        let mut tombstones = log::Fixed::<{ chain::TOMBSTONE_LEN }>::open(
            &self.fingerprints.join(files::TOMBSTONES),
        )?;
        tombstones.append(&stones)?;
        let path = self.dir.join(files::RECORDS);
        let tmp = path.with_extension("tmp");
        let mut out = Vec::new();
        for (bytes, _) in &kept {
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        std::fs::write(&tmp, &out).map_err(io(&tmp))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        self.records = log::Records::open(&path)?;
        let named: std::collections::HashSet<&str> = kept.iter().map(|(_, h)| h.as_str()).collect();
        let keep: std::collections::HashSet<[u8; 32]> = (named.iter())
            .filter_map(|h| record::unhex(h)?.try_into().ok())
            .collect();
        self.contents.retain(&keep)?;
        let content_dir = self.dir.join(files::CONTENT);
        for entry in std::fs::read_dir(&content_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().to_string();
            if record::is_hex_digest(&name) && !named.contains(name.as_str()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let purged: std::collections::HashSet<String> = purged_txns.into_iter().collect();
        let of_purged = |k: &String| purged.contains(k.split(':').next().unwrap_or(k));
        self.recent.retain(|k| !of_purged(k));
        self.recent_set.retain(|k| !of_purged(k));
        Ok(stones.len())
    }

    /// The records retention lets go at `now_ms` and no legal hold keeps
    /// (the scopes and holds in this archive's directory), purged unless
    /// `dry_run`.
    ///
    /// # Errors
    /// [`ArchiveError`]; nothing was purged then, or (a crash part-way)
    /// what [`Archive::purge`] says.
    pub fn purge_due(
        &mut self,
        now_ms: u64,
        dry_run: bool,
    ) -> Result<Vec<ArchiveRecord>, ArchiveError> {
        let records = self.records()?;
        let rules = retention::retention(&self.dir)?;
        let due = retention::purgeable(&records, &rules, &retention::holds(&self.dir)?, now_ms);
        if !dry_run {
            self.purge(&due, now_ms)?;
        }
        Ok(records
            .into_iter()
            .filter(|r| due.contains(&r.seq))
            .collect())
    }

    /// Every record, in order.
    ///
    /// # Errors
    /// [`ArchiveError`].
    pub fn records(&self) -> Result<Vec<ArchiveRecord>, ArchiveError> {
        self.records
            .entries()?
            .iter()
            .map(|b| ArchiveRecord::decode(b))
            .collect()
    }

    /// The content of a record, by its hash.
    ///
    /// # Errors
    /// [`ArchiveError`].
    pub fn content(&self, sha256_hex: &str) -> Result<Vec<u8>, ArchiveError> {
        read_content(&self.dir, sha256_hex)
    }
}

/// Every whole record of the archive in `dir`, in order, read without
/// opening it for appends (a running archive may append meanwhile).
///
/// # Errors
/// [`ArchiveError`]: a file cannot be read, a record cannot be decoded.
pub fn read_records(dir: &Path) -> Result<Vec<ArchiveRecord>, ArchiveError> {
    let (stored, _) = log::read_records(&dir.join(files::RECORDS))?;
    stored.iter().map(|b| ArchiveRecord::decode(b)).collect()
}

/// The content with SHA-256 `sha256_hex` of the archive in `dir`.
///
/// # Errors
/// [`ArchiveError`].
pub fn read_content(dir: &Path, sha256_hex: &str) -> Result<Vec<u8>, ArchiveError> {
    contents::ContentReader::open(dir)?.read(sha256_hex)
}

#[cfg(test)]
mod tests;
