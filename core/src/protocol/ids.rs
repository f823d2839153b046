//! Identifiers: transactions, members, mediums and addresses.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A transaction id: 128 bits, chosen by the originating gateway, time-ordered
/// (48-bit milliseconds, then 80 random bits, like a ULID). Shown as 32
/// lowercase hex digits, which sort in creation order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TxnId(pub [u8; 16]);

impl TxnId {
    /// A fresh id for a message created at `now_ms`.
    pub fn generate(now_ms: u64) -> Self {
        let mut b = [0u8; 16];
        b[..6].copy_from_slice(&now_ms.to_be_bytes()[2..]);
        crate::protocol::mac::fill_random(&mut b[6..]);
        Self(b)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The creation time encoded in the id.
    pub fn created_ms(&self) -> u64 {
        let mut t = [0u8; 8];
        t[2..].copy_from_slice(&self.0[..6]);
        u64::from_be_bytes(t)
    }

    /// A 64-bit hash for sharding (the random part, so shards fill evenly).
    pub fn shard_hash(&self) -> u64 {
        let mut h = [0u8; 8];
        h.copy_from_slice(&self.0[8..16]);
        u64::from_le_bytes(h)
    }
}

impl fmt::Display for TxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TxnId({self})")
    }
}

/// A string is not a transaction id (32 hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a transaction id (expected 32 hex digits)")]
pub struct BadTxnId;

impl FromStr for TxnId {
    type Err = BadTxnId;
    fn from_str(s: &str) -> Result<Self, BadTxnId> {
        let s = s.as_bytes();
        if s.len() != 32 {
            return Err(BadTxnId);
        }
        let mut b = [0u8; 16];
        for (i, pair) in s.chunks(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16).ok_or(BadTxnId)?;
            let lo = (pair[1] as char).to_digit(16).ok_or(BadTxnId)?;
            b[i] = (hi * 16 + lo) as u8;
        }
        Ok(Self(b))
    }
}

/// A member's stable id (`gw-im-1`, `proc-sms-1`, …).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemberId(pub String);

impl MemberId {
    /// A member id from any string.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberId({})", self.0)
    }
}

/// A node id: 1–64 of `A–Z a–z 0–9 . _ -` (it names NATS subjects and KV
/// keys).
pub fn valid_node_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A communication medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum MediumKind {
    /// Instant messaging (the built-in IM inbox and WebSocket clients).
    Im,
    /// Email over SMTP.
    Email,
    /// SMS over SMPP.
    Sms,
    /// Fax (a stub that renders PDFs into a spool).
    Fax,
}

impl MediumKind {
    /// Every medium, in a stable order.
    pub const ALL: [MediumKind; 4] = [Self::Im, Self::Email, Self::Sms, Self::Fax];

    /// The medium's name as used in addresses (`im`, `email`, `sms`, `fax`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Im => "im",
            Self::Email => "email",
            Self::Sms => "sms",
            Self::Fax => "fax",
        }
    }
}

impl fmt::Display for MediumKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string names no medium.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown medium {0:?} (expected im, email, sms or fax)")]
pub struct UnknownMedium(pub String);

impl FromStr for MediumKind {
    type Err = UnknownMedium;
    fn from_str(s: &str) -> Result<Self, UnknownMedium> {
        match s {
            "im" => Ok(Self::Im),
            "email" => Ok(Self::Email),
            "sms" => Ok(Self::Sms),
            "fax" => Ok(Self::Fax),
            other => Err(UnknownMedium(other.to_string())),
        }
    }
}

/// An address on one medium (`im:bob`, `sms:+4915…`, `email:bob@example.com`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Address {
    /// The medium.
    pub medium: MediumKind,
    /// The address on that medium (user id, phone number, mailbox).
    pub address: String,
}

impl Address {
    /// An address on `medium`.
    pub fn new(medium: MediumKind, address: impl Into<String>) -> Self {
        Self {
            medium,
            address: address.into(),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.medium, self.address)
    }
}
