//! An exported set of records that verifies on its own (COMPLIANCE.md
//! "Export"): each record's stored bytes (`records/<seq>.json`) and content
//! (`content/<sha256>`), and `manifest.json` — the public key, the hash of
//! every record from the first up to the last checkpoint that covers the
//! set (so the chain can be recomputed), and those checkpoints. A verifier
//! needs nothing else; it should pin the public key it trusts.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::chain::{chain_value, Checkpoint, Link};
use super::record::{self, hex, ArchiveRecord};
use super::{files, io, log, ArchiveError};

/// The manifest's file.
pub const MANIFEST: &str = "manifest.json";

/// One checkpoint, as the manifest has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestCheckpoint {
    /// The last record it covers.
    pub seq: u64,
    /// When it was signed (ms).
    pub at_ms: u64,
    /// The chain value at `seq`, hex.
    pub chain: String,
    /// The Ed25519 signature, hex.
    pub signature: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The archive's public key, hex (pin the one you trust).
    pub public_key: String,
    /// The exported records' seqs.
    pub records: Vec<u64>,
    /// Every record's hash (hex) from seq 1 on, up to the last checkpoint
    /// the set needs.
    pub record_hashes: Vec<String>,
    /// The checkpoints over them.
    pub checkpoints: Vec<ManifestCheckpoint>,
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    record::unhex(s)?.try_into().ok()
}

/// Writes the records `seqs` of the archive (`dir`, `fingerprints`) into
/// `out`, with the manifest: the raw records and their contents, for any
/// format the caller writes beside them. Returns the records exported.
///
/// # Errors
/// [`ArchiveError`]; [`ArchiveError::Inconsistent`] when a record is not
/// yet under a checkpoint (sign one first: a running node does every
/// `checkpoint_interval_s`).
pub fn export(
    dir: &Path,
    fingerprints: &Path,
    public: &[u8; 32],
    seqs: &[u64],
    out: &Path,
) -> Result<Vec<ArchiveRecord>, ArchiveError> {
    let (stored, _) = log::read_records(&dir.join(files::RECORDS))?;
    let links: Vec<Link> =
        log::read_fixed::<{ super::chain::LINK_LEN }>(&fingerprints.join(files::CHAIN))?
            .iter()
            .map(Link::from_bytes)
            .collect();
    let checkpoints: Vec<Checkpoint> = log::read_fixed::<{ super::chain::CHECKPOINT_LEN }>(
        &fingerprints.join(files::CHECKPOINTS),
    )?
    .iter()
    .map(Checkpoint::from_bytes)
    .collect();
    let max = seqs.iter().copied().max().unwrap_or(0);
    let Some(last_cp) = checkpoints.iter().find(|c| c.seq >= max) else {
        return Err(ArchiveError::Inconsistent(format!(
            "record {max} is not under a checkpoint yet"
        )));
    };
    std::fs::create_dir_all(out.join("records")).map_err(io(out))?;
    std::fs::create_dir_all(out.join(files::CONTENT)).map_err(io(out))?;
    let contents = super::contents::ContentReader::open(dir)?;
    let mut exported = Vec::new();
    for bytes in &stored {
        let r = ArchiveRecord::decode(bytes)?;
        if !seqs.contains(&r.seq) {
            continue;
        }
        let path = out.join("records").join(format!("{}.json", r.seq));
        std::fs::write(&path, bytes).map_err(io(&path))?;
        let content = contents.read(&r.content_sha256)?;
        let path = out.join(files::CONTENT).join(&r.content_sha256);
        std::fs::write(&path, content).map_err(io(&path))?;
        exported.push(r);
    }
    let manifest = Manifest {
        public_key: hex(public),
        records: exported.iter().map(|r| r.seq).collect(),
        record_hashes: (links.iter())
            .take(last_cp.seq as usize)
            .map(|l| hex(&l.record_hash))
            .collect(),
        checkpoints: (checkpoints.iter())
            .take_while(|c| c.seq <= last_cp.seq)
            .map(|c| ManifestCheckpoint {
                seq: c.seq,
                at_ms: c.at_ms,
                chain: hex(&c.chain),
                signature: hex(&c.signature),
            })
            .collect(),
    };
    let path = out.join(MANIFEST);
    let body =
        serde_json::to_vec_pretty(&manifest).map_err(|e| ArchiveError::Record(e.to_string()))?;
    std::fs::write(&path, body).map_err(io(&path))?;
    Ok(exported)
}

/// What is wrong with an exported set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportProblem {
    /// The manifest is missing or unreadable.
    #[error("the manifest: {0}")]
    Manifest(String),
    /// The manifest's key is not the one pinned.
    #[error("the manifest's public key is not the one given")]
    Key,
    /// A record's bytes are not the ones its hash says.
    #[error("record {0} was changed")]
    Changed(u64),
    /// A record the manifest lists is not there.
    #[error("record {0} is missing")]
    Missing(u64),
    /// A record's content is missing or changed.
    #[error("the content of record {0} was changed or removed")]
    Content(u64),
    /// A checkpoint does not verify.
    #[error("checkpoint at record {0} does not verify")]
    Checkpoint(u64),
    /// A record no verified checkpoint covers.
    #[error("record {0} is not under a verified checkpoint")]
    Uncovered(u64),
}

/// Verifies the exported set in `out`, under `pinned` (else the manifest's
/// own key). Returns the number of records verified.
///
/// # Errors
/// The first [`ExportProblem`].
pub fn verify_export(out: &Path, pinned: Option<&[u8; 32]>) -> Result<usize, ExportProblem> {
    let m: Manifest = std::fs::read(out.join(MANIFEST))
        .map_err(|e| ExportProblem::Manifest(e.to_string()))
        .and_then(|b| {
            serde_json::from_slice(&b).map_err(|e| ExportProblem::Manifest(e.to_string()))
        })?;
    let public =
        unhex32(&m.public_key).ok_or_else(|| ExportProblem::Manifest("public_key".into()))?;
    if pinned.is_some_and(|p| p != &public) {
        return Err(ExportProblem::Key);
    }
    let hashes: Vec<[u8; 32]> = (m.record_hashes.iter())
        .map(|h| unhex32(h).ok_or_else(|| ExportProblem::Manifest("record_hashes".into())))
        .collect::<Result<_, _>>()?;
    let mut chain = Vec::with_capacity(hashes.len());
    let mut prev = [0u8; 32];
    for (i, h) in hashes.iter().enumerate() {
        prev = chain_value(&prev, i as u64 + 1, h);
        chain.push(prev);
    }
    let mut covered = 0;
    for c in &m.checkpoints {
        let cp = Checkpoint {
            seq: c.seq,
            at_ms: c.at_ms,
            chain: unhex32(&c.chain).ok_or(ExportProblem::Checkpoint(c.seq))?,
            signature: record::unhex(&c.signature)
                .and_then(|v| v.try_into().ok())
                .ok_or(ExportProblem::Checkpoint(c.seq))?,
        };
        let holds =
            cp.verifies(&public) && chain.get((cp.seq as usize).wrapping_sub(1)) == Some(&cp.chain);
        if !holds {
            return Err(ExportProblem::Checkpoint(cp.seq));
        }
        covered = covered.max(cp.seq);
    }
    for &seq in &m.records {
        let bytes = std::fs::read(out.join("records").join(format!("{seq}.json")))
            .map_err(|_| ExportProblem::Missing(seq))?;
        let h = hashes.get((seq as usize).wrapping_sub(1));
        if h != Some(&record::hash(&bytes)) {
            return Err(ExportProblem::Changed(seq));
        }
        if seq > covered {
            return Err(ExportProblem::Uncovered(seq));
        }
        let r = ArchiveRecord::decode(&bytes).map_err(|_| ExportProblem::Changed(seq))?;
        let c = record::is_hex_digest(&r.content_sha256)
            .then(|| std::fs::read(out.join(files::CONTENT).join(&r.content_sha256)).ok())
            .flatten();
        if c.is_none_or(|c| hex(&crate::protocol::mac::sha256(&c)) != r.content_sha256) {
            return Err(ExportProblem::Content(seq));
        }
    }
    Ok(m.records.len())
}
