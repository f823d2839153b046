//! The frames of a transaction's five phases.

use serde::{Deserialize, Serialize};

use crate::protocol::ids::{MediumKind, MemberId, TxnId};
use crate::protocol::imi::{BrokerImi, Imi};
use crate::protocol::mac::Tag;

/// Phase 1: `Submit { imi, mac(K_o, "imi", enc(imi), C_ack(txn,1)) }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submit {
    /// The meta information.
    pub imi: Imi,
    /// The MAC.
    pub mac: Tag,
}

/// A grant for one hop: `mac(K_h, "grant", enc(imi'), ID)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The hop the grant is for.
    pub member: MemberId,
    /// The MAC.
    pub mac: Tag,
}

/// Phase 2: `Release { imi', ID, outer, grants }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The broker IMI.
    pub imi: BrokerImi,
    /// The broker's inner digest `mac(K2, "inner", enc(imi'), C_ack(txn,2))`.
    pub id: Tag,
    /// `mac(K_o, "outer", enc(imi'), C_ack(txn,2), ID)`.
    pub outer: Tag,
    /// One grant per hop of the route.
    pub grants: Vec<Grant>,
}

/// Why the broker refuses to route a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectReason {
    /// The recipient is not in the directory.
    UnknownRecipient,
    /// No mechanism of the recipient has a live gateway.
    NoMechanism,
    /// Enterprise policy forbids it (rule).
    PolicyDenied(String),
    /// The message expired before it could be routed.
    Expired,
}

impl RejectReason {
    /// The API's error code for this reason.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownRecipient => "unknown_recipient",
            Self::NoMechanism => "no_mechanism",
            Self::PolicyDenied(_) => "policy_denied",
            Self::Expired => "expired",
        }
    }
}

/// Phase 2 refusal: `Rejected { txn, reason, mac(K_o, "rejected", txn, enc(reason), C_ack(txn,2)) }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// The transaction.
    pub txn: TxnId,
    /// Why.
    pub reason: RejectReason,
    /// The MAC.
    pub mac: Tag,
}

/// Phase 2 acknowledgement: `mac(K_o, "release-ack", txn, attempt, C_ack(txn,2))`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseAck {
    /// The transaction.
    pub txn: TxnId,
    /// The attempt released.
    pub attempt: u32,
    /// The MAC.
    pub mac: Tag,
}

/// A processor's attestation: `mac(K_p, "attest", ID, digest_in, digest_out, content_type)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// The processor.
    pub member: MemberId,
    /// SHA-256 of the content it received.
    pub digest_in: [u8; 32],
    /// SHA-256 of the content it produced.
    pub digest_out: [u8; 32],
    /// The MIME type of the content it produced.
    pub content_type: String,
    /// The MAC.
    pub mac: Tag,
}

/// Phase 3: `Transmit { imi', ID, grants, content, attestations }`. It carries
/// the grants of every hop still ahead; each hop checks its own and passes
/// the frame on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transmit {
    /// The broker IMI.
    pub imi: BrokerImi,
    /// The broker's inner digest.
    pub id: Tag,
    /// The grants of the hops still ahead (processors, destination, archive).
    pub grants: Vec<Grant>,
    /// The content.
    pub content: Vec<u8>,
    /// Attestations of the processors passed so far.
    pub attestations: Vec<Attestation>,
}

/// Phase 3 transport acknowledgement. Carries no MAC: it only stops the
/// sender's resends and never changes durable state (the truth is phase 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransmitAck {
    /// The transaction.
    pub txn: TxnId,
    /// The attempt.
    pub attempt: u32,
}

/// What the destination reports in phase 4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportStatus {
    /// Accepted by the recipient's medium (for IM: durably in the inbox).
    Delivered,
    /// Read by the recipient.
    Read,
    /// Could not be delivered on this mechanism.
    NonDelivery(String),
    /// Blocked by a content rule.
    Blocked(String),
    /// Expired before delivery.
    Expired,
}

/// Phase 4: `Report { txn, ID, status, attestations, mac(K_d, "report", txn, attempt, ID, enc(status), C_ack(txn,4)) }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The transaction.
    pub txn: TxnId,
    /// The attempt reported on.
    pub attempt: u32,
    /// The broker inner digest the destination received.
    pub id: Tag,
    /// The status.
    pub status: ReportStatus,
    /// The processors' attestations.
    pub attestations: Vec<Attestation>,
    /// The MAC.
    pub mac: Tag,
}

/// Phase 4 acknowledgement: `mac(K_d, "report-ack", txn, attempt, C_ack(txn,4))`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportAck {
    /// The transaction.
    pub txn: TxnId,
    /// The attempt.
    pub attempt: u32,
    /// The MAC.
    pub mac: Tag,
}

/// The outcome told to the originator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Delivered.
    Delivered,
    /// Read.
    Read,
    /// No mechanism reached the recipient.
    Undeliverable,
    /// Blocked by a content rule.
    Blocked(String),
    /// Expired.
    Expired,
}

impl Outcome {
    /// The status name used in the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Undeliverable => "undeliverable",
            Self::Blocked(_) => "blocked",
            Self::Expired => "expired",
        }
    }
}

/// Phase 5: `Notify { txn, outcome, mechanism, at, mac(K_o, "notify", txn, enc(outcome), at, C_ack(txn,5)) }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    /// The transaction.
    pub txn: TxnId,
    /// The outcome.
    pub outcome: Outcome,
    /// The mechanism that reached the recipient, if any.
    pub mechanism: Option<MediumKind>,
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// The MAC.
    pub mac: Tag,
}

/// Phase 5 acknowledgement: `mac(K_o, "notify-ack", txn, enc(outcome), C_ack(txn,5))`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyAck {
    /// The transaction.
    pub txn: TxnId,
    /// The outcome acknowledged.
    pub outcome: Outcome,
    /// The MAC.
    pub mac: Tag,
}
