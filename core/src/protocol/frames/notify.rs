//! Phase 5: the broker's `Notify` of the outcome and the originator's
//! `NotifyAck`.

use serde::{Deserialize, Serialize};

use crate::protocol::codec::encode;
use crate::protocol::error::ProtocolError;
use crate::protocol::ids::{MediumKind, TxnId};
use crate::protocol::mac::{self, label, Tag};
use crate::protocol::tscs::Session;
use crate::protocol::verify::{check, step};

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

/// `Notify { txn, outcome, mechanism, at, mac }` to the originator.
pub fn make_notify(
    session_o: &Session,
    txn: TxnId,
    outcome: Outcome,
    mechanism: Option<MediumKind>,
    at_ms: u64,
) -> Notify {
    let c = session_o.step(&txn, step::NOTIFY);
    let mac = mac::mac(
        session_o.key.bytes(),
        label::NOTIFY,
        &[
            txn.as_bytes(),
            &encode(&(&outcome, mechanism)),
            &at_ms.to_be_bytes(),
            &c,
        ],
    );
    Notify {
        txn,
        outcome,
        mechanism,
        at_ms,
        mac,
    }
}

/// Originator: checks a `Notify`.
///
/// # Errors
/// [`ProtocolError::BadMac`].
pub fn check_notify(session: &Session, n: &Notify) -> Result<(), ProtocolError> {
    let c = session.step(&n.txn, step::NOTIFY);
    check(
        mac::verify(
            session.key.bytes(),
            label::NOTIFY,
            &[
                n.txn.as_bytes(),
                &encode(&(&n.outcome, n.mechanism)),
                &n.at_ms.to_be_bytes(),
                &c,
            ],
            &n.mac,
        ),
        ProtocolError::BadMac,
    )
}

/// `NotifyAck`.
pub fn make_notify_ack(session_o: &Session, txn: TxnId, outcome: Outcome) -> NotifyAck {
    let c = session_o.step(&txn, step::NOTIFY);
    let mac = mac::mac(
        session_o.key.bytes(),
        label::NOTIFY_ACK,
        &[txn.as_bytes(), &encode(&outcome), &c],
    );
    NotifyAck { txn, outcome, mac }
}

/// Broker: checks a `NotifyAck`.
///
/// # Errors
/// [`ProtocolError::BadMac`].
pub fn check_notify_ack(session: &Session, a: &NotifyAck) -> Result<(), ProtocolError> {
    let c = session.step(&a.txn, step::NOTIFY);
    check(
        mac::verify(
            session.key.bytes(),
            label::NOTIFY_ACK,
            &[a.txn.as_bytes(), &encode(&a.outcome), &c],
            &a.mac,
        ),
        ProtocolError::BadMac,
    )
}
