//! `Watch` (a session gateway → broker): the users whose presence its
//! clients follow.

use serde::{Deserialize, Serialize};

use crate::protocol::codec::encode;
use crate::protocol::error::ProtocolError;
use crate::protocol::ids::MemberId;
use crate::protocol::mac::{self, label, Tag};
use crate::protocol::tscs::Session;
use crate::protocol::verify::check_session_frame;

/// `Watch { member, users, ts, mac(S, "watch", enc(users), ts) }`: an IM
/// gateway in another process wants the presence of `users` (its clients
/// subscribed to them); the broker sends it a `Presence` frame for each of
/// them now and at every change. Each frame adds to what the gateway
/// watches; after a login it sends the whole set again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    /// The gateway.
    pub member: MemberId,
    /// The users.
    pub users: Vec<String>,
    /// When, ms since the epoch.
    pub ts_ms: u64,
    /// The MAC.
    pub mac: Tag,
}

/// IM gateway: follows the presence of `users`.
pub fn make_watch(session: &Session, users: Vec<String>, ts_ms: u64) -> Watch {
    let mac = mac::mac(
        session.key.bytes(),
        label::WATCH,
        &[&encode(&users), &ts_ms.to_be_bytes()],
    );
    Watch {
        member: session.member.clone(),
        users,
        ts_ms,
        mac,
    }
}

/// Broker: checks a watch frame (member, skew, MAC).
///
/// # Errors
/// [`ProtocolError::WrongParty`], [`ProtocolError::SkewExceeded`], [`ProtocolError::BadMac`].
pub fn check_watch(
    session: &Session,
    w: &Watch,
    now_ms: u64,
    skew_ms: u64,
) -> Result<(), ProtocolError> {
    let fields: [&[u8]; 2] = [&encode(&w.users), &w.ts_ms.to_be_bytes()];
    let stamp = (&w.member, w.ts_ms, &w.mac);
    check_session_frame(session, stamp, now_ms, skew_ms, label::WATCH, &fields)
}
