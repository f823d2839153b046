//! Phase 1: `Submit` (originator → broker), the IMI under the originator's
//! session.

use serde::{Deserialize, Serialize};

use crate::protocol::codec::encode;
use crate::protocol::error::ProtocolError;
use crate::protocol::imi::Imi;
use crate::protocol::mac::{self, label, Tag};
use crate::protocol::tscs::Session;
use crate::protocol::verify::{check, step};

/// Phase 1: `Submit { imi, mac(K_o, "imi", enc(imi), C_ack(txn,1)) }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submit {
    /// The meta information.
    pub imi: Imi,
    /// The MAC.
    pub mac: Tag,
}

/// `Submit { imi, mac(K_o, "imi", enc(imi), C_ack(txn,1)) }`.
pub fn make_submit(session: &Session, imi: Imi) -> Submit {
    let c = session.step(&imi.txn, step::SUBMIT);
    let mac = mac::mac(session.key.bytes(), label::IMI, &[&encode(&imi), &c]);
    Submit { imi, mac }
}

/// Broker: checks a `Submit` from the originator's session.
///
/// # Errors
/// [`ProtocolError::WrongParty`] when the IMI names another originator,
/// [`ProtocolError::BadMac`], [`ProtocolError::Expired`].
pub fn check_submit(session: &Session, s: &Submit, now_ms: u64) -> Result<(), ProtocolError> {
    check(
        s.imi.originator == session.member,
        ProtocolError::WrongParty,
    )?;
    let c = session.step(&s.imi.txn, step::SUBMIT);
    check(
        mac::verify(
            session.key.bytes(),
            label::IMI,
            &[&encode(&s.imi), &c],
            &s.mac,
        ),
        ProtocolError::BadMac,
    )?;
    check(now_ms <= s.imi.expires_at_ms, ProtocolError::Expired)
}
