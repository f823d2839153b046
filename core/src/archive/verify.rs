//! Verifying an archive from its files alone, trusting nothing but the
//! signing key's public half: every record's bytes against its link, the
//! chain from its start, every content file against its record, and every
//! checkpoint's signature and chain value. What a checkpoint proves: the
//! records up to its seq are those that existed when it was signed — a
//! window rewritten since, even with its links recomputed, no longer
//! matches. What it does not: when it was signed (no external time
//! authority), nor anything after the last checkpoint beyond the chain.

use std::path::Path;

use super::chain::{
    chain_value, Checkpoint, Link, Tombstone, CHECKPOINT_LEN, LINK_LEN, TOMBSTONE_LEN,
};
use super::log::{read_fixed, read_records};
use super::record::{self, ArchiveRecord};
use super::{files, ArchiveError};

/// What is wrong, at the first place it is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The record's bytes are not those its link was made from.
    #[error("record {seq} was changed (its hash is not the one in the fingerprints)")]
    Changed {
        /// The record.
        seq: u64,
    },
    /// The chain has the record; the archive does not.
    #[error("record {seq} was deleted")]
    Deleted {
        /// The first record missing.
        seq: u64,
    },
    /// The record's content file is missing or not the content it names.
    #[error("the content of record {seq} was changed or removed")]
    Content {
        /// The record.
        seq: u64,
    },
    /// Bytes after record `after` that are no whole record.
    #[error("unreadable bytes after record {after}")]
    Unreadable {
        /// The last whole record before them.
        after: u64,
    },
    /// A record the fingerprints do not have.
    #[error("record {seq} has no fingerprint (written outside the archive, or the node stopped mid-append: open the archive once to link it)")]
    Unlinked {
        /// The record.
        seq: u64,
    },
    /// A link does not follow from the one before.
    #[error("the fingerprint of record {seq} does not follow from the one before")]
    Chain {
        /// The link.
        seq: u64,
    },
    /// A checkpoint does not verify: its signature, or the chain at its seq
    /// is not the one it signed (the window since the checkpoint before was
    /// rewritten).
    #[error("checkpoint at record {seq} does not verify: records {from} to {seq} were rewritten")]
    Checkpoint {
        /// The last record it covers.
        seq: u64,
        /// The first record of its window.
        from: u64,
    },
}

impl Problem {
    /// The record it is about (checkpoints: the window's first).
    pub fn seq(&self) -> u64 {
        match *self {
            Self::Changed { seq }
            | Self::Deleted { seq }
            | Self::Content { seq }
            | Self::Unlinked { seq }
            | Self::Chain { seq } => seq,
            Self::Unreadable { after } => after + 1,
            Self::Checkpoint { from, .. } => from,
        }
    }
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records read.
    pub records: u64,
    /// Records purged, each under a signed tombstone.
    pub purged: u64,
    /// Checkpoints that verified.
    pub checkpoints: u64,
    /// The last seq a verified checkpoint covers (those before the first
    /// that fails).
    pub covered: u64,
    /// What is wrong, in seq order (empty: it all holds).
    pub problems: Vec<Problem>,
}

/// Verifies the archive in `dir` with its fingerprints in `fingerprints`
/// under the public key `public`.
///
/// # Errors
/// [`ArchiveError::Io`] when a file cannot be read at all.
pub fn verify(
    dir: &Path,
    fingerprints: &Path,
    public: &[u8; 32],
) -> Result<Verified, ArchiveError> {
    let (stored, torn) = read_records(&dir.join(files::RECORDS))?;
    let links: Vec<Link> = read_fixed::<LINK_LEN>(&fingerprints.join(files::CHAIN))?
        .iter()
        .map(Link::from_bytes)
        .collect();
    let checkpoints: Vec<Checkpoint> =
        read_fixed::<CHECKPOINT_LEN>(&fingerprints.join(files::CHECKPOINTS))?
            .iter()
            .map(Checkpoint::from_bytes)
            .collect();
    // Purged records: a tombstone the key signed, for the hash the link
    // has. Any other tombstone is nobody's word.
    let purged: std::collections::HashSet<u64> =
        read_fixed::<TOMBSTONE_LEN>(&fingerprints.join(files::TOMBSTONES))?
            .iter()
            .map(Tombstone::from_bytes)
            .filter(|t| {
                t.verifies(public)
                    && links
                        .get((t.seq as usize).wrapping_sub(1))
                        .is_some_and(|l| l.record_hash == t.record_hash)
            })
            .map(|t| t.seq)
            .collect();
    let contents = super::contents::ContentReader::open(dir)?;
    let mut problems = Vec::new();

    // The chain from its start, as the links say.
    let mut chain = Vec::with_capacity(links.len());
    let mut prev = [0u8; 32];
    for (i, l) in links.iter().enumerate() {
        let seq = i as u64 + 1;
        let value = chain_value(&prev, seq, &l.record_hash);
        if l.seq != seq || l.chain != value {
            problems.push(Problem::Chain { seq });
        }
        chain.push(value);
        prev = value;
    }

    // Each record against its link, by the seq the record says.
    let mut expected = 1u64;
    let mut last_whole = 0u64;
    for bytes in &stored {
        let hash = record::hash(bytes);
        let rec = ArchiveRecord::decode(bytes).ok();
        // Skip what was purged before this record.
        while purged.contains(&expected) && rec.as_ref().is_none_or(|r| r.seq != expected) {
            expected += 1;
        }
        let link = |seq: u64| links.get((seq as usize).wrapping_sub(1));
        match link(expected) {
            Some(l) if l.record_hash == hash => {}
            // Records before this one are gone: it matches a later link.
            _ if rec.as_ref().is_some_and(|r| {
                r.seq > expected && link(r.seq).is_some_and(|l| l.record_hash == hash)
            }) =>
            {
                problems.push(Problem::Deleted { seq: expected });
                expected = rec.as_ref().map_or(expected, |r| r.seq);
            }
            Some(_) => problems.push(Problem::Changed { seq: expected }),
            None => problems.push(Problem::Unlinked { seq: expected }),
        }
        if let Some(r) = &rec {
            let content = contents.read(&r.content_sha256).ok();
            let intact = content.is_some_and(|c| {
                record::hex(&crate::protocol::mac::sha256(&c)) == r.content_sha256
            });
            if !intact {
                problems.push(Problem::Content { seq: expected });
            }
        }
        last_whole = expected;
        expected += 1;
    }
    if torn {
        problems.push(Problem::Unreadable { after: last_whole });
    }
    while purged.contains(&expected) {
        expected += 1;
    }
    if (links.len() as u64) >= expected {
        problems.push(Problem::Deleted { seq: expected });
    }

    // Each checkpoint: signed by the key, over the chain at its seq.
    let mut verified = 0;
    let mut covered = 0;
    for c in &checkpoints {
        let from = covered + 1;
        let holds = c.verifies(public)
            && c.seq >= from
            && chain.get((c.seq as usize).wrapping_sub(1)) == Some(&c.chain);
        if !holds {
            // The ones after it fail with it (the chain goes on from it).
            problems.push(Problem::Checkpoint { seq: c.seq, from });
            break;
        }
        verified += 1;
        covered = c.seq;
    }
    problems.sort_by_key(Problem::seq);
    problems.dedup();
    Ok(Verified {
        records: stored.len() as u64,
        purged: purged.len() as u64,
        checkpoints: verified,
        covered,
        problems,
    })
}
