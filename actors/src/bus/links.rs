//! Messages about connections: a login that arrived on a TCP link, a
//! member back on a new connection, and a member process's link to the node
//! up (again).

use actix::prelude::*;

use switchboard_core::protocol::{Login, MediumKind, MemberId};

use super::MiapFrame;

/// A member's `Login` that arrived on a link: the broker answers on `link`,
/// and registers it as the member only when the login is good.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LinkLogin {
    /// The login.
    pub login: Login,
    /// The link it came on.
    pub link: Recipient<MiapFrame>,
    /// The link's id (so only this link is unregistered when it closes).
    pub link_id: u64,
    /// The member's medium, from the directory.
    pub medium: Option<MediumKind>,
}

/// Member `0` (re)connected: open attempts that pass through it are
/// released again to their originators, which transmit again (what was in
/// flight on its old connection may be lost; hops dedupe by transaction).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct MemberBack(pub MemberId);

/// The local gateway's link to the node came (back) up: log in again and
/// resend what is not acknowledged.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct LinkUp;
