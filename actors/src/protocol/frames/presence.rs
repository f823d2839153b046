//! The `Presence` frame.

use serde::{Deserialize, Serialize};

use crate::protocol::ids::MemberId;
use crate::protocol::mac::Tag;

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
