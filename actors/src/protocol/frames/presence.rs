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
