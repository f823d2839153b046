//! `Health` (gateway → broker): whether the member's medium can deliver.

use serde::{Deserialize, Serialize};

use crate::protocol::error::ProtocolError;
use crate::protocol::ids::MemberId;
use crate::protocol::mac::{self, label, Tag};
use crate::protocol::tscs::Session;
use crate::protocol::verify::check_session_frame;

/// `Health { member, up, detail, ts, mac(K_m, "health", up, detail, ts) }`:
/// whether the member's medium can deliver now (a remote gateway's SMSC or
/// relay, say), so the broker routes around a member that is connected but
/// cannot deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthFrame {
    /// The gateway.
    pub member: MemberId,
    /// Whether its medium can deliver.
    pub up: bool,
    /// Why (for the operator).
    pub detail: String,
    /// When, ms since the epoch.
    pub ts_ms: u64,
    /// The MAC.
    pub mac: Tag,
}

/// Member: a health frame.
pub fn make_health(session: &Session, up: bool, detail: String, ts_ms: u64) -> HealthFrame {
    let mac = mac::mac(
        session.key.bytes(),
        label::HEALTH,
        &[&[u8::from(up)], detail.as_bytes(), &ts_ms.to_be_bytes()],
    );
    HealthFrame {
        member: session.member.clone(),
        up,
        detail,
        ts_ms,
        mac,
    }
}

/// Broker: checks a health frame (MAC and skew).
///
/// # Errors
/// [`ProtocolError::WrongParty`], [`ProtocolError::SkewExceeded`], [`ProtocolError::BadMac`].
pub fn check_health(
    session: &Session,
    h: &HealthFrame,
    now_ms: u64,
    skew_ms: u64,
) -> Result<(), ProtocolError> {
    let fields: [&[u8]; 3] = [
        &[u8::from(h.up)],
        h.detail.as_bytes(),
        &h.ts_ms.to_be_bytes(),
    ];
    let stamp = (&h.member, h.ts_ms, &h.mac);
    check_session_frame(session, stamp, now_ms, skew_ms, label::HEALTH, &fields)
}
