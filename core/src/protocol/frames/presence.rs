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

/// `Identify { member, req, token_sha256, ts, mac(S, "identify", req,
/// token_sha256, ts) }`: an IM gateway in another process asks the broker
/// whose API token this is (a client opening a session there). It carries
/// the token's SHA-256, never the token: a captured frame does not give
/// anyone a token the API would take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identify {
    /// The gateway asking.
    pub member: MemberId,
    /// The gateway's request number (the answer carries it).
    pub req: u64,
    /// SHA-256 of the token.
    pub token_sha256: [u8; 32],
    /// When, ms since the epoch.
    pub ts_ms: u64,
    /// The MAC.
    pub mac: Tag,
}

/// `Identity { req, user, contacts, mac(S, "identity", req, token_sha256,
/// user, enc(contacts)) }`: the broker's answer to [`Identify`] — the
/// token's user (or none) and the users whose presence their profile
/// follows. The MAC covers the digest asked about, so an answer cannot be
/// moved to another request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The request answered.
    pub req: u64,
    /// The user the token belongs to; `None` for an unknown token.
    pub user: Option<String>,
    /// The user's contacts (their profile's), whose presence they follow.
    pub contacts: Vec<String>,
    /// The MAC.
    pub mac: Tag,
}

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
