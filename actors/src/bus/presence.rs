//! Presence messages several actors exchange: a user's state as the API
//! names it, reports from the party that knows (the gateway holding the
//! session, or the broker about a watched user), pushes to subscribers,
//! subscriptions, announcements to the broker, and what a remote gateway
//! may watch.

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use switchboard_core::protocol::PresenceState;

/// A user's presence state as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Online.
    Online,
    /// Away.
    Away,
    /// Busy.
    Busy,
    /// Offline.
    Offline,
}

impl State {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Online => "online",
            State::Away => "away",
            State::Busy => "busy",
            State::Offline => "offline",
        }
    }

    /// From the MIAP frame's state.
    pub fn from_frame(s: &PresenceState) -> (State, Option<String>) {
        match s {
            PresenceState::Online => (State::Online, None),
            PresenceState::Away(n) => (State::Away, n.clone()),
            PresenceState::Busy => (State::Busy, None),
            PresenceState::Offline => (State::Offline, None),
        }
    }

    /// As the MIAP frame's state (only `Away` carries the note).
    pub fn to_frame(self, note: Option<String>) -> PresenceState {
        match self {
            State::Online => PresenceState::Online,
            State::Away => PresenceState::Away(note),
            State::Busy => PresenceState::Busy,
            State::Offline => PresenceState::Offline,
        }
    }
}

/// A presence change for a subscriber.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct PresencePush {
    /// The subscriber to tell.
    pub to: String,
    /// Whose presence.
    pub user: String,
    /// The state.
    pub state: State,
    /// The note.
    pub note: Option<String>,
    /// Since when (ms).
    pub since_ms: u64,
}

/// Presence another party reports: the gateway holding the user's session
/// (at the broker), or the broker about a watched user (at an IM gateway in
/// another process). It sets what others see; it is not announced back.
/// `Offline` does not become the user's chosen state, and does not hide a
/// user who has sessions here.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Reported {
    /// The user.
    pub user: String,
    /// The state.
    pub state: State,
    /// The note.
    pub note: Option<String>,
}

/// `subscriber` wants pushes about `users`; the current state of each is
/// pushed at once.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Subscribe {
    /// Who is told.
    pub subscriber: String,
    /// About whom.
    pub users: Vec<String>,
}

/// A user's presence as the gateway holding their session sees it. Sent to
/// the broker now and after every (re)login; `Offline` is sent once and
/// then forgotten.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct AnnouncePresence {
    /// The user.
    pub user: String,
    /// Their state.
    pub state: PresenceState,
}

/// The most users one `Watch` frame may name.
pub const MAX_WATCH: usize = 1000;

/// The most users a remote IM gateway follows; more are not asked for.
pub const MAX_WATCHED: usize = 100_000;
