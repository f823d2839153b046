//! Phase 4: the destination's `Report` (or a processor's, when it stopped
//! the content) and the broker's `ReportAck`.

use serde::{Deserialize, Serialize};

use super::transmit::Attestation;
use crate::protocol::codec::encode;
use crate::protocol::error::ProtocolError;
use crate::protocol::ids::TxnId;
use crate::protocol::mac::{self, label, Tag};
use crate::protocol::tscs::Session;
use crate::protocol::verify::{check, step};

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
    /// Delivered, with how when that is worth listing in the attempt (in a
    /// cluster: the node whose gateway delivered it, and why that was not
    /// the recipient's home node). Appended last: older encodings decode.
    DeliveredVia(String),
    /// Held for review by a content rule (a content filter's report; the
    /// rule's code, `policy:<rule>`). Appended last.
    Quarantined(String),
}

impl ReportStatus {
    /// Whether it says the recipient's medium accepted the message.
    pub fn is_delivered(&self) -> bool {
        matches!(self, Self::Delivered | Self::DeliveredVia(_))
    }
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

fn report_fields(
    r_txn: &TxnId,
    attempt: u32,
    id: &Tag,
    status: &ReportStatus,
    c: &Tag,
) -> Vec<Vec<u8>> {
    vec![
        r_txn.as_bytes().to_vec(),
        attempt.to_be_bytes().to_vec(),
        id.to_vec(),
        encode(status),
        c.to_vec(),
    ]
}

fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(Vec::as_slice).collect()
}

/// `Report { txn, attempt, ID, status, attestations, mac }` from the destination.
pub fn make_report(
    session_d: &Session,
    txn: TxnId,
    attempt: u32,
    id: Tag,
    status: ReportStatus,
    attestations: Vec<Attestation>,
) -> Report {
    let c = session_d.step(&txn, step::REPORT);
    let mac = mac::mac(
        session_d.key.bytes(),
        label::REPORT,
        &refs(&report_fields(&txn, attempt, &id, &status, &c)),
    );
    Report {
        txn,
        attempt,
        id,
        status,
        attestations,
        mac,
    }
}

/// Broker: checks a report's MAC with the destination's session, and that
/// the `ID` it returns is the one the broker stored for that attempt.
///
/// # Errors
/// [`ProtocolError::BadMac`], [`ProtocolError::IdMismatch`].
pub fn check_report(session_d: &Session, r: &Report, stored_id: &Tag) -> Result<(), ProtocolError> {
    let c = session_d.step(&r.txn, step::REPORT);
    check(
        mac::verify(
            session_d.key.bytes(),
            label::REPORT,
            &refs(&report_fields(&r.txn, r.attempt, &r.id, &r.status, &c)),
            &r.mac,
        ),
        ProtocolError::BadMac,
    )?;
    check(mac::ct_eq(&r.id, stored_id), ProtocolError::IdMismatch)
}

/// `ReportAck`.
pub fn make_report_ack(session_d: &Session, txn: TxnId, attempt: u32) -> ReportAck {
    let c = session_d.step(&txn, step::REPORT);
    let mac = mac::mac(
        session_d.key.bytes(),
        label::REPORT_ACK,
        &[txn.as_bytes(), &attempt.to_be_bytes(), &c],
    );
    ReportAck { txn, attempt, mac }
}

/// Destination: checks a `ReportAck`.
///
/// # Errors
/// [`ProtocolError::BadMac`].
pub fn check_report_ack(session: &Session, a: &ReportAck) -> Result<(), ProtocolError> {
    let c = session.step(&a.txn, step::REPORT);
    check(
        mac::verify(
            session.key.bytes(),
            label::REPORT_ACK,
            &[a.txn.as_bytes(), &a.attempt.to_be_bytes(), &c],
            &a.mac,
        ),
        ProtocolError::BadMac,
    )
}
