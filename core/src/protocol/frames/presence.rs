//! `Presence` (a session gateway → broker: it holds the user's session;
//! broker → a watching gateway: a followed user's state).

use serde::{Deserialize, Serialize};

use crate::protocol::codec::encode;
use crate::protocol::error::ProtocolError;
use crate::protocol::ids::MemberId;
use crate::protocol::mac::{self, label, Tag};
use crate::protocol::tscs::Session;
use crate::protocol::verify::check_session_frame;

/// A user's presence state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PresenceState {
    /// Online.
    Online,
    /// Away, with an optional note.
    Away(Option<String>),
    /// Busy.
    Busy,
    /// Offline.
    Offline,
}

/// `Presence { member, user, state, ts, mac(K_m, "presence", user, state, ts) }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceFrame {
    /// The gateway holding the user's session.
    pub member: MemberId,
    /// The user.
    pub user: String,
    /// The new state.
    pub state: PresenceState,
    /// When, ms since the epoch.
    pub ts_ms: u64,
    /// The MAC.
    pub mac: Tag,
}

/// `Presence { member, user, state, ts, mac }`.
pub fn make_presence(
    session: &Session,
    user: String,
    state: PresenceState,
    ts_ms: u64,
) -> PresenceFrame {
    let mac = mac::mac(
        session.key.bytes(),
        label::PRESENCE,
        &[user.as_bytes(), &encode(&state), &ts_ms.to_be_bytes()],
    );
    PresenceFrame {
        member: session.member.clone(),
        user,
        state,
        ts_ms,
        mac,
    }
}

/// Broker: checks a presence frame (MAC and skew).
///
/// # Errors
/// [`ProtocolError::WrongParty`], [`ProtocolError::SkewExceeded`], [`ProtocolError::BadMac`].
pub fn check_presence(
    session: &Session,
    p: &PresenceFrame,
    now_ms: u64,
    skew_ms: u64,
) -> Result<(), ProtocolError> {
    let fields: [&[u8]; 3] = [p.user.as_bytes(), &encode(&p.state), &p.ts_ms.to_be_bytes()];
    let stamp = (&p.member, p.ts_ms, &p.mac);
    check_session_frame(session, stamp, now_ms, skew_ms, label::PRESENCE, &fields)
}
