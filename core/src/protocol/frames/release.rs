//! Phase 2: the broker's answer to a `Submit` — `Release` (the route, the
//! broker's inner digest `ID`, the outer MAC and one grant per hop) or
//! `Rejected`, or `Held` while a reviewer decides — and the originator's
//! `ReleaseAck`.

use serde::{Deserialize, Serialize};

use crate::protocol::codec::encode;
use crate::protocol::error::ProtocolError;
use crate::protocol::ids::{MemberId, TxnId};
use crate::protocol::imi::BrokerImi;
use crate::protocol::keys::{KeyRing, SecretKey};
use crate::protocol::mac::{self, label, Tag};
use crate::protocol::tscs::Session;
use crate::protocol::verify::{check, step};

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

    /// What the sender is told: the code, and policy's reason with it
    /// (`policy_denied: legal may not message outside`).
    pub fn told(&self) -> String {
        match self {
            Self::PolicyDenied(why) if !why.is_empty() => {
                format!("{}: {}", self.code(), why.replace(['\r', '\n'], " "))
            }
            _ => self.code().to_string(),
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

/// Phase 2, when policy quarantines the message: `Held { txn, reason,
/// mac(K_o, "held", txn, reason, C_ack(txn,2)) }` — it waits for a reviewer;
/// the originator keeps the content and tells its client the message is
/// accepted and held. A `Release` (reviewer released it) or a `Notify`
/// (`blocked`, rejected) follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The transaction.
    pub txn: TxnId,
    /// What the sender is told (`quarantined: <the rule's reason>`).
    pub reason: String,
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

/// The broker's inner digest of an attempt,
/// `ID = mac(K2, "id", txn, attempt, SHA-256(enc(imi')))`: only brokers can
/// make it, and it is the same whenever it is computed, so answering a
/// resubmission needs no stored `ID` (the `outer` MAC binds the session).
pub fn inner_id(k2: &SecretKey, bimi: &BrokerImi) -> Tag {
    mac::mac(
        k2.bytes(),
        label::ID,
        &[
            bimi.imi.txn.as_bytes(),
            &bimi.attempt.to_be_bytes(),
            &mac::sha256(&encode(bimi)),
        ],
    )
}

pub(super) fn grant_mac(key: &SecretKey, bimi_enc: &[u8], id: &Tag) -> Tag {
    mac::mac(key.bytes(), label::GRANT, &[bimi_enc, id])
}

/// `Release { imi', ID, outer, grants }` for the attempt's `ID` (see
/// [`inner_id`]).
///
/// # Errors
/// [`ProtocolError::UnknownMember`] when a hop of the route has no key.
pub fn make_release(
    session_o: &Session,
    ring: &KeyRing,
    bimi: BrokerImi,
    id: Tag,
) -> Result<Release, ProtocolError> {
    let enc = encode(&bimi);
    let c = session_o.step(&bimi.imi.txn, step::RELEASE);
    let outer = mac::mac(session_o.key.bytes(), label::OUTER, &[&enc, &c, &id]);
    let grants = bimi
        .route
        .hops()
        .map(|hop| {
            ring.with(hop, |m| {
                Ok(Grant {
                    member: hop.clone(),
                    mac: grant_mac(m.current().1, &enc, &id),
                })
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Release {
        imi: bimi,
        id,
        outer,
        grants,
    })
}

/// Originator: checks the broker's `outer` digest.
///
/// # Errors
/// [`ProtocolError::BadMac`].
pub fn check_release(session: &Session, r: &Release) -> Result<(), ProtocolError> {
    let c = session.step(&r.imi.imi.txn, step::RELEASE);
    check(
        mac::verify(
            session.key.bytes(),
            label::OUTER,
            &[&encode(&r.imi), &c, &r.id],
            &r.outer,
        ),
        ProtocolError::BadMac,
    )
}

/// `Rejected { txn, reason, mac }`.
pub fn make_rejected(session_o: &Session, txn: TxnId, reason: RejectReason) -> Rejected {
    let c = session_o.step(&txn, step::RELEASE);
    let mac = mac::mac(
        session_o.key.bytes(),
        label::REJECTED,
        &[txn.as_bytes(), &encode(&reason), &c],
    );
    Rejected { txn, reason, mac }
}

/// Originator: checks a `Rejected`.
///
/// # Errors
/// [`ProtocolError::BadMac`].
pub fn check_rejected(session: &Session, r: &Rejected) -> Result<(), ProtocolError> {
    let c = session.step(&r.txn, step::RELEASE);
    check(
        mac::verify(
            session.key.bytes(),
            label::REJECTED,
            &[r.txn.as_bytes(), &encode(&r.reason), &c],
            &r.mac,
        ),
        ProtocolError::BadMac,
    )
}

/// `Held { txn, reason, mac }`.
pub fn make_held(session_o: &Session, txn: TxnId, reason: String) -> Held {
    let c = session_o.step(&txn, step::RELEASE);
    let mac = mac::mac(
        session_o.key.bytes(),
        label::HELD,
        &[txn.as_bytes(), reason.as_bytes(), &c],
    );
    Held { txn, reason, mac }
}

/// Originator: checks a `Held`.
///
/// # Errors
/// [`ProtocolError::BadMac`].
pub fn check_held(session: &Session, h: &Held) -> Result<(), ProtocolError> {
    let c = session.step(&h.txn, step::RELEASE);
    check(
        mac::verify(
            session.key.bytes(),
            label::HELD,
            &[h.txn.as_bytes(), h.reason.as_bytes(), &c],
            &h.mac,
        ),
        ProtocolError::BadMac,
    )
}

/// `ReleaseAck { txn, attempt, mac }`.
pub fn make_release_ack(session: &Session, txn: TxnId, attempt: u32) -> ReleaseAck {
    let c = session.step(&txn, step::RELEASE);
    let mac = mac::mac(
        session.key.bytes(),
        label::RELEASE_ACK,
        &[txn.as_bytes(), &attempt.to_be_bytes(), &c],
    );
    ReleaseAck { txn, attempt, mac }
}

/// Broker: checks a `ReleaseAck`.
///
/// # Errors
/// [`ProtocolError::BadMac`].
pub fn check_release_ack(session: &Session, a: &ReleaseAck) -> Result<(), ProtocolError> {
    let c = session.step(&a.txn, step::RELEASE);
    check(
        mac::verify(
            session.key.bytes(),
            label::RELEASE_ACK,
            &[a.txn.as_bytes(), &a.attempt.to_be_bytes(), &c],
            &a.mac,
        ),
        ProtocolError::BadMac,
    )
}
