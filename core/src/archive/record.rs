//! One archive record: a concluded delivery of an archived scope — who,
//! when, over which medium, the content's hash (the content itself is
//! stored once by it), the hops, the policy decisions and the trail. Stored
//! as JSON; its hash is of the bytes as stored, so no canonical form is
//! needed.

use serde::{Deserialize, Serialize};

use super::ArchiveError;

/// A record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveRecord {
    /// Its place in the archive (from 1; set when appended).
    pub seq: u64,
    /// `delivery` (a concluded delivery, with its content) or `event` (a
    /// later event of one recorded before, such as its read receipt: no
    /// content). Records are never changed: later events are records too.
    pub kind: String,
    /// The archive (scope) it belongs to: a policy rule's `archive`, or the
    /// domain's name.
    pub archive: String,
    /// The transaction.
    pub txn: String,
    /// The sender (user id or address).
    pub from: String,
    /// The recipient (user id or address).
    pub to: String,
    /// The mechanism it was delivered over.
    pub medium: String,
    /// When it was sent (ms).
    pub sent_at_ms: u64,
    /// When it concluded (ms): the delivery time.
    pub at_ms: u64,
    /// How it concluded (`delivered`, `read`, `undeliverable`, `blocked`,
    /// `expired`).
    pub outcome: String,
    /// The subject, if any.
    pub subject: Option<String>,
    /// The content's MIME type.
    pub content_type: String,
    /// SHA-256 of the content, hex (set when appended).
    pub content_sha256: String,
    /// The hops it went through: processors, then the destination gateway.
    pub hops: Vec<String>,
    /// The parties' domains (retention's `domain:` scopes).
    pub domains: Vec<String>,
    /// The parties' groups (retention's `group:` scopes).
    pub groups: Vec<String>,
    /// Policy's tags.
    pub tags: Vec<String>,
    /// Every rule that applied (`rule:v<n>:action`).
    pub policy: Vec<String>,
    /// The acknowledgement trail: `(ms, event)`.
    pub trail: Vec<(u64, String)>,
}

impl ArchiveRecord {
    /// The bytes stored.
    ///
    /// # Errors
    /// [`ArchiveError::Record`].
    pub fn encode(&self) -> Result<Vec<u8>, ArchiveError> {
        serde_json::to_vec(self).map_err(|e| ArchiveError::Record(e.to_string()))
    }

    /// From the bytes stored.
    ///
    /// # Errors
    /// [`ArchiveError::Record`].
    pub fn decode(b: &[u8]) -> Result<Self, ArchiveError> {
        serde_json::from_slice(b).map_err(|e| ArchiveError::Record(e.to_string()))
    }
}

/// SHA-256 of a record's stored bytes.
pub fn hash(stored: &[u8]) -> [u8; 32] {
    crate::protocol::mac::sha256(stored)
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Bytes from hex (either case); `None` for anything else.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// Whether `s` is a SHA-256 in lowercase hex (a content file's name).
pub fn is_hex_digest(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
