//! The hash chain and its signed checkpoints (COMPLIANCE.md):
//! `chain_i = SHA-256("sb-archive" ‖ chain_{i-1} ‖ seq ‖ record_hash)`,
//! `chain_0` all zeroes; a checkpoint signs `"sb-archive-checkpoint" ‖ seq ‖
//! at ‖ chain_seq` with the archive's Ed25519 key. Entries are fixed-size,
//! big-endian numbers.

use sha2::{Digest, Sha256};

use super::keys::ArchiveKey;

/// Bytes of a [`Link`]: seq, the record's hash, the chain value.
pub const LINK_LEN: usize = 8 + 32 + 32;
/// Bytes of a [`Checkpoint`]: seq, time, chain value, signature.
pub const CHECKPOINT_LEN: usize = 8 + 8 + 32 + 64;

/// One record's place in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// The record's seq (from 1).
    pub seq: u64,
    /// SHA-256 of the record as stored.
    pub record_hash: [u8; 32],
    /// The chain value after it.
    pub chain: [u8; 32],
}

impl Link {
    /// Before the first record.
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            record_hash: [0; 32],
            chain: [0; 32],
        }
    }

    /// The link of the next record, whose hash is `record_hash`.
    pub fn next(&self, record_hash: [u8; 32]) -> Self {
        let seq = self.seq + 1;
        Self {
            seq,
            record_hash,
            chain: chain_value(&self.chain, seq, &record_hash),
        }
    }

    /// As stored.
    pub fn to_bytes(&self) -> [u8; LINK_LEN] {
        let mut b = [0; LINK_LEN];
        b[..8].copy_from_slice(&self.seq.to_be_bytes());
        b[8..40].copy_from_slice(&self.record_hash);
        b[40..].copy_from_slice(&self.chain);
        b
    }

    /// From its stored bytes.
    pub fn from_bytes(b: &[u8; LINK_LEN]) -> Self {
        let mut seq = [0; 8];
        seq.copy_from_slice(&b[..8]);
        let (mut record_hash, mut chain) = ([0; 32], [0; 32]);
        record_hash.copy_from_slice(&b[8..40]);
        chain.copy_from_slice(&b[40..]);
        Self {
            seq: u64::from_be_bytes(seq),
            record_hash,
            chain,
        }
    }
}

/// `SHA-256("sb-archive" ‖ prev ‖ seq ‖ record_hash)`.
pub fn chain_value(prev: &[u8; 32], seq: u64, record_hash: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"sb-archive");
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(record_hash);
    h.finalize().into()
}

/// A signed statement that the chain had value `chain` at `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last record it covers.
    pub seq: u64,
    /// When it was signed (ms).
    pub at_ms: u64,
    /// The chain value at `seq`.
    pub chain: [u8; 32],
    /// Ed25519 over [`Checkpoint::message`].
    pub signature: [u8; 64],
}

impl Checkpoint {
    /// What is signed.
    pub fn message(seq: u64, at_ms: u64, chain: &[u8; 32]) -> Vec<u8> {
        let mut m = b"sb-archive-checkpoint".to_vec();
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(&at_ms.to_be_bytes());
        m.extend_from_slice(chain);
        m
    }

    /// Signed with `key`.
    pub fn sign(key: &ArchiveKey, seq: u64, at_ms: u64, chain: [u8; 32]) -> Self {
        Self {
            seq,
            at_ms,
            chain,
            signature: key.sign(&Self::message(seq, at_ms, &chain)),
        }
    }

    /// Whether `public` (the archive key's public half) signed it.
    pub fn verifies(&self, public: &[u8; 32]) -> bool {
        super::keys::verify(
            public,
            &Self::message(self.seq, self.at_ms, &self.chain),
            &self.signature,
        )
    }

    /// As stored.
    pub fn to_bytes(&self) -> [u8; CHECKPOINT_LEN] {
        let mut b = [0; CHECKPOINT_LEN];
        b[..8].copy_from_slice(&self.seq.to_be_bytes());
        b[8..16].copy_from_slice(&self.at_ms.to_be_bytes());
        b[16..48].copy_from_slice(&self.chain);
        b[48..].copy_from_slice(&self.signature);
        b
    }

    /// From its stored bytes.
    pub fn from_bytes(b: &[u8; CHECKPOINT_LEN]) -> Self {
        let (mut seq, mut at) = ([0; 8], [0; 8]);
        seq.copy_from_slice(&b[..8]);
        at.copy_from_slice(&b[8..16]);
        let mut chain = [0; 32];
        chain.copy_from_slice(&b[16..48]);
        let mut signature = [0; 64];
        signature.copy_from_slice(&b[48..]);
        Self {
            seq: u64::from_be_bytes(seq),
            at_ms: u64::from_be_bytes(at),
            chain,
            signature,
        }
    }
}

/// Bytes of a [`Tombstone`]: seq, time, the record's hash, signature.
pub const TOMBSTONE_LEN: usize = 8 + 8 + 32 + 64;

/// A signed statement that record `seq`, whose hash was `record_hash`, was
/// purged at `at_ms` (retention let it go): its link still verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tombstone {
    /// The record purged.
    pub seq: u64,
    /// When (ms).
    pub at_ms: u64,
    /// Its hash (the one its link has).
    pub record_hash: [u8; 32],
    /// Ed25519 over [`Tombstone::message`].
    pub signature: [u8; 64],
}

impl Tombstone {
    /// What is signed.
    pub fn message(seq: u64, at_ms: u64, record_hash: &[u8; 32]) -> Vec<u8> {
        let mut m = b"sb-archive-tombstone".to_vec();
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(&at_ms.to_be_bytes());
        m.extend_from_slice(record_hash);
        m
    }

    /// Signed with `key`.
    pub fn sign(key: &ArchiveKey, seq: u64, at_ms: u64, record_hash: [u8; 32]) -> Self {
        Self {
            seq,
            at_ms,
            record_hash,
            signature: key.sign(&Self::message(seq, at_ms, &record_hash)),
        }
    }

    /// Whether `public` signed it.
    pub fn verifies(&self, public: &[u8; 32]) -> bool {
        super::keys::verify(
            public,
            &Self::message(self.seq, self.at_ms, &self.record_hash),
            &self.signature,
        )
    }

    /// As stored.
    pub fn to_bytes(&self) -> [u8; TOMBSTONE_LEN] {
        let mut b = [0; TOMBSTONE_LEN];
        b[..8].copy_from_slice(&self.seq.to_be_bytes());
        b[8..16].copy_from_slice(&self.at_ms.to_be_bytes());
        b[16..48].copy_from_slice(&self.record_hash);
        b[48..].copy_from_slice(&self.signature);
        b
    }

    /// From its stored bytes.
    pub fn from_bytes(b: &[u8; TOMBSTONE_LEN]) -> Self {
        let (mut seq, mut at) = ([0; 8], [0; 8]);
        seq.copy_from_slice(&b[..8]);
        at.copy_from_slice(&b[8..16]);
        let mut record_hash = [0; 32];
        record_hash.copy_from_slice(&b[16..48]);
        let mut signature = [0; 64];
        signature.copy_from_slice(&b[48..]);
        Self {
            seq: u64::from_be_bytes(seq),
            at_ms: u64::from_be_bytes(at),
            record_hash,
            signature,
        }
    }
}
