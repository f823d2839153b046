//! What an IM gateway in another process does for its clients' sessions
//! (MIAP.md, "Presence" and "Identify"): it tells the broker the presence of
//! every user whose session it holds — again after every login, so a
//! restarted node learns where its users are — and asks the broker whose
//! API token a client showed it.

use std::collections::HashMap;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::Gateway;
use crate::medium::Medium;
use crate::protocol::mac::sha256;
use crate::protocol::verify;
use crate::protocol::{Frame, Identity, PresenceState, ProtocolError};

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

/// Whose API token is this? Answered by the broker; `Ok(None)` for a token
/// no user has.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Option<String>, IdentifyError>")]
pub struct IdentifyToken(pub String);

/// Why a token could not be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentifyError {
    /// No session with the broker (the node is unreachable), or the link
    /// dropped before the answer came.
    #[error("the node is not reachable")]
    Unreachable,
}

/// The gateway's state for its clients' sessions.
#[derive(Default)]
pub(super) struct ClientSessions {
    /// The presence last announced per user (none once offline).
    announced: HashMap<String, PresenceState>,
    /// Identify requests waiting for the broker: the token's digest and the
    /// asker.
    identifying: HashMap<u64, ([u8; 32], oneshot::Sender<Option<String>>)>,
    next_req: u64,
}

impl<M: Medium> Gateway<M> {
    fn send_presence(&self, user: &str, state: &PresenceState) {
        let now = self.now();
        if let Ok(s) = self.link.session() {
            let f = verify::make_presence(&s.current, user.to_string(), state.clone(), now);
            self.to_broker(Frame::Presence(f));
        }
    }

    /// After a login: every held session's presence again.
    pub(super) fn announce_all(&self) {
        for (user, state) in &self.clients.announced {
            self.send_presence(user, state);
        }
    }

    /// A new connection: requests sent on the old one get no answer.
    pub(super) fn drop_identify_requests(&mut self) {
        self.clients.identifying.clear();
    }

    pub(super) fn on_identity(&mut self, i: Identity) -> Result<(), ProtocolError> {
        let Some((digest, _)) = self.clients.identifying.get(&i.req) else {
            return Err(ProtocolError::WrongParty);
        };
        let digest = *digest;
        self.session()?
            .verify(|s| verify::check_identity(s, &i, &digest))?;
        if let Some((_, tx)) = self.clients.identifying.remove(&i.req) {
            let _ = tx.send(i.user);
        }
        Ok(())
    }
}

impl<M: Medium> Handler<AnnouncePresence> for Gateway<M> {
    type Result = ();

    fn handle(&mut self, m: AnnouncePresence, _: &mut Context<Self>) {
        self.send_presence(&m.user, &m.state);
        if m.state == PresenceState::Offline {
            self.clients.announced.remove(&m.user);
        } else {
            self.clients.announced.insert(m.user, m.state);
        }
    }
}

impl<M: Medium> Handler<IdentifyToken> for Gateway<M> {
    type Result = ResponseFuture<Result<Option<String>, IdentifyError>>;

    fn handle(
        &mut self,
        IdentifyToken(token): IdentifyToken,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let now = self.now();
        let Ok(s) = self.link.session() else {
            return Box::pin(async { Err(IdentifyError::Unreachable) });
        };
        // Askers that gave up (timed out) wait no more.
        self.clients
            .identifying
            .retain(|_, (_, tx)| !tx.is_closed());
        self.clients.next_req += 1;
        let req = self.clients.next_req;
        let digest = sha256(token.as_bytes());
        let f = verify::make_identify(&s.current, req, digest, now);
        let (tx, rx) = oneshot::channel();
        self.clients.identifying.insert(req, (digest, tx));
        self.to_broker(Frame::Identify(f));
        Box::pin(async move { rx.await.map_err(|_| IdentifyError::Unreachable) })
    }
}
