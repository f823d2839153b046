//! Meta information: the IMI a gateway extracts from a message (no content),
//! and the broker IMI (`imi'`) that adds the route and the attempt.

use serde::{Deserialize, Serialize};

use super::ids::{Address, MediumKind, MemberId, TxnId};

/// Message priority; selects a delivery manager configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Low.
    Low,
    /// Normal (the default).
    #[default]
    Normal,
    /// Urgent.
    Urgent,
}

impl Priority {
    /// The priority's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::Urgent => "urgent",
        }
    }
}

/// Who a message is for: a logical user, or an address on a medium.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum To {
    /// A user of the directory, by id.
    User(String),
    /// An address on a medium (may or may not belong to a user).
    Address(Address),
}

impl To {
    /// Parses the API's `to` field: `bob`, `im:bob`, `sms:+49…`, `email:x@y`,
    /// `fax:+49…`. A bare word is a user id.
    pub fn parse(s: &str) -> Option<To> {
        let s = s.trim();
        if s.is_empty() || s.len() > 320 || s.chars().any(char::is_control) {
            return None;
        }
        match s.split_once(':') {
            Some((m, rest)) => {
                let medium: MediumKind = m.parse().ok()?;
                if rest.is_empty() {
                    return None;
                }
                Some(match medium {
                    MediumKind::Im => To::User(rest.to_string()),
                    _ => To::Address(Address::new(medium, rest)),
                })
            }
            None => Some(To::User(s.to_string())),
        }
    }
}

impl std::fmt::Display for To {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            To::User(u) => f.write_str(u),
            To::Address(a) => a.fmt(f),
        }
    }
}

/// The Unified Instant Message's meta information. Never carries content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imi {
    /// Transaction id (chosen by the originator).
    pub txn: TxnId,
    /// The originating gateway.
    pub originator: MemberId,
    /// The sender's address on the originating medium.
    pub sender: Address,
    /// The sender's user id, when the sender is a user of the directory.
    pub sender_user: Option<String>,
    /// The recipient.
    pub recipient: To,
    /// MIME content type of the content.
    pub content_type: String,
    /// Content length in bytes.
    pub content_len: u64,
    /// SHA-256 of the content.
    pub content_sha256: [u8; 32],
    /// Subject line, if the medium has one (meta, not content).
    pub subject: Option<String>,
    /// Priority.
    pub priority: Priority,
    /// Expiry, ms since the epoch.
    pub expires_at_ms: u64,
    /// Creation time, ms since the epoch.
    pub created_at_ms: u64,
    /// Whether the sender wants receipts.
    pub receipt: bool,
    /// Free attributes.
    pub attributes: Vec<(String, String)>,
}

/// The route the broker chose for one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The delivery mechanism.
    pub mechanism: MediumKind,
    /// The recipient's address on that medium.
    pub address: String,
    /// The recipient's user id, when known.
    pub recipient_user: Option<String>,
    /// The destination gateway.
    pub destination: MemberId,
    /// Processors the content passes through, in order.
    pub processors: Vec<MemberId>,
    /// The archive that receives a copy, if any.
    pub archive: Option<MemberId>,
    /// Deliver into the recipient's mailbox even though presence says they
    /// are away (every mechanism was skipped for presence).
    pub store_and_forward: bool,
}

impl Route {
    /// Every hop that needs a grant: processors, the destination, the archive.
    pub fn hops(&self) -> impl Iterator<Item = &MemberId> {
        self.processors
            .iter()
            .chain(std::iter::once(&self.destination))
            .chain(self.archive.iter())
    }
}

/// The broker IMI (`imi'`): the IMI plus route, attempt and policy tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerImi {
    /// The originator's IMI, unchanged.
    pub imi: Imi,
    /// The route of this attempt.
    pub route: Route,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Policy tags (rule ids and versions) that applied.
    pub tags: Vec<String>,
}
