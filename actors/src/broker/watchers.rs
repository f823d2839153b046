//! IM gateways in other processes as presence watchers: a gateway's clients
//! follow users whose sessions may be anywhere, so the broker subscribes the
//! gateway itself (as the pseudo-user [`watcher`]) in the presence actor and
//! turns the pushes for it into `Presence` frames ([`PresenceRouter`]).

use std::sync::Arc;

use actix::prelude::*;

use super::BrokerShared;
use crate::bus::PresencePush;
use switchboard_core::protocol::MemberId;

/// A subscriber name no user id can have (user ids have no `:`).
const PREFIX: &str = "member:";

/// The presence subscriber standing for session gateway `member`.
pub fn watcher(member: &MemberId) -> String {
    format!("{PREFIX}{member}")
}

/// Routes presence pushes: those for a watching gateway become frames to
/// it; the rest go to the node's own sessions (`local`).
pub struct PresenceRouter {
    shared: Arc<BrokerShared>,
    local: Recipient<PresencePush>,
}

impl PresenceRouter {
    /// A router over the broker's shared state.
    pub fn new(shared: Arc<BrokerShared>, local: Recipient<PresencePush>) -> Self {
        Self { shared, local }
    }
}

impl Actor for PresenceRouter {
    type Context = Context<Self>;
}

impl Handler<PresencePush> for PresenceRouter {
    type Result = ();

    fn handle(&mut self, p: PresencePush, _: &mut Context<Self>) {
        match p.to.strip_prefix(PREFIX) {
            Some(member) => self.shared.tell_presence(&MemberId::new(member), p),
            None => self.local.do_send(p),
        }
    }
}
