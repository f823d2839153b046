//! What an IM gateway in another process does for its clients' sessions
//! (MIAP.md, "Presence", "Identify", "Watch"): it tells the broker the
//! presence of every user whose session it holds — again after every login,
//! so a restarted node learns where its users are — asks the broker whose
//! API token a client showed it, and follows the presence of the users its
//! clients subscribed to (the broker's `Presence` frames go to the local
//! presence actor).

use std::collections::{HashMap, HashSet};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::Gateway;
use crate::bus::presence::{MAX_WATCH, MAX_WATCHED};
use crate::bus::{AnnouncePresence, Reported, State};
use crate::medium::Medium;
use switchboard_core::protocol::frames;
use switchboard_core::protocol::frames::Redirect;
use switchboard_core::protocol::mac::sha256;
use switchboard_core::protocol::{Frame, Identity, PresenceFrame, PresenceState, ProtocolError};

/// How old a presence frame from the broker may be.
const PRESENCE_SKEW_MS: u64 = 30_000;

/// Whose API token is this? Answered by the broker: the user and their
/// contacts; `Ok(None)` for a token no user has.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Option<Identified>, IdentifyError>")]
pub struct IdentifyToken(pub String);

/// A token's user and their contacts.
pub type Identified = (String, Vec<String>);

/// The gateway's clients follow these users' presence: the broker is asked
/// to tell it (now, and again after every login). Answered with how many
/// of them the gateway could not take: it follows at most
/// [`MAX_WATCHED`] users in all.
#[derive(Message, Debug, Clone)]
#[rtype(result = "usize")]
pub struct WatchUsers(pub Vec<String>);

/// Why a token could not be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifyError {
    /// No session with the broker (the node is unreachable), or the link
    /// dropped before the answer came.
    #[error("the node is not reachable")]
    Unreachable,
    /// The token's user must be served by another node (their domain
    /// requires their home node): that node, and its HTTP API's
    /// `host:port` while it is alive.
    #[error("served by node {node} only")]
    ServedElsewhere {
        /// The home node.
        node: String,
        /// Its HTTP API's `host:port`, while it is alive.
        http: Option<String>,
    },
}

/// What an asker of [`IdentifyToken`] is told.
type Answer = Result<Option<Identified>, IdentifyError>;

/// The gateway's state for its clients' sessions.
#[derive(Default)]
pub(super) struct ClientSessions {
    /// The presence last announced per user (none once offline).
    announced: HashMap<String, PresenceState>,
    /// Identify requests waiting for the broker: the token's digest and the
    /// asker.
    identifying: HashMap<u64, ([u8; 32], oneshot::Sender<Answer>)>,
    /// The token digest each user was identified by: shown to the broker
    /// again after every login, before their presence (the broker takes
    /// presence only for users the gateway identified on that connection).
    digests: HashMap<String, [u8; 32]>,
    /// Those identify requests, answered to no one.
    reidentifying: HashMap<u64, [u8; 32]>,
    next_req: u64,
    /// Users whose presence the clients follow.
    watched: HashSet<String>,
    /// Where the broker's word on their presence goes.
    pub(super) presence: Option<Recipient<Reported>>,
}

impl<M: Medium> Gateway<M> {
    fn send_presence(&self, user: &str, state: &PresenceState) {
        let now = self.now();
        if let Ok(s) = self.tscs.session() {
            let f = frames::make_presence(&s.current, user.to_string(), state.clone(), now);
            self.to_broker(Frame::Presence(f));
        }
    }

    fn send_watch(&self, users: Vec<String>) {
        let now = self.now();
        if let Ok(s) = self.tscs.session() {
            for chunk in users.chunks(MAX_WATCH) {
                let f = frames::make_watch(&s.current, chunk.to_vec(), now);
                self.to_broker(Frame::Watch(f));
            }
        }
    }

    /// Asks the broker whose token has SHA-256 `digest`; the request's id,
    /// or `None` without a session.
    fn send_identify(&mut self, digest: [u8; 32]) -> Option<u64> {
        let now = self.now();
        let s = self.tscs.session().ok()?;
        self.clients.next_req += 1;
        let req = self.clients.next_req;
        let f = frames::make_identify(&s.current, req, digest, now);
        self.to_broker(Frame::Identify(f));
        Some(req)
    }

    /// After a login: every held session's user identified again, then
    /// its presence, and every followed user.
    pub(super) fn announce_all(&mut self) {
        self.clients.reidentifying.clear();
        let digests: Vec<[u8; 32]> = (self.clients.announced.keys())
            .filter_map(|user| self.clients.digests.get(user).copied())
            .collect();
        for digest in digests {
            if let Some(req) = self.send_identify(digest) {
                self.clients.reidentifying.insert(req, digest);
            }
        }
        for (user, state) in &self.clients.announced {
            self.send_presence(user, state);
        }
        if !self.clients.watched.is_empty() {
            self.send_watch(self.clients.watched.iter().cloned().collect());
        }
    }

    /// The broker's word on a followed user's presence.
    pub(super) fn on_presence(&mut self, p: PresenceFrame) -> Result<(), ProtocolError> {
        let now = self.now();
        self.session()?
            .verify(|s| frames::check_presence(s, &p, now, PRESENCE_SKEW_MS))?;
        if let Some(r) = &self.clients.presence {
            let (state, note) = State::from_frame(&p.state);
            r.do_send(Reported {
                user: p.user,
                state,
                note,
            });
        }
        Ok(())
    }

    /// A new connection: requests sent on the old one get no answer.
    pub(super) fn drop_identify_requests(&mut self) {
        self.clients.identifying.clear();
    }

    pub(super) fn on_identity(&mut self, i: Identity) -> Result<(), ProtocolError> {
        let asked = self.clients.identifying.get(&i.req).map(|(d, _)| *d);
        let Some(digest) = asked.or_else(|| self.clients.reidentifying.get(&i.req).copied()) else {
            return Err(ProtocolError::WrongParty);
        };
        self.session()?
            .verify(|s| frames::check_identity(s, &i, &digest))?;
        self.clients.reidentifying.remove(&i.req);
        if let Some(user) = &i.user {
            self.clients.digests.insert(user.clone(), digest);
        }
        if let Some((_, tx)) = self.clients.identifying.remove(&i.req) {
            let _ = tx.send(Ok(i.user.map(|u| (u, i.contacts))));
        }
        Ok(())
    }

    /// The broker's answer that the token's user is served by another
    /// node: the asker is told where; a session held already is not
    /// shown to the broker again.
    pub(super) fn on_redirect(&mut self, r: Redirect) -> Result<(), ProtocolError> {
        let asked = self.clients.identifying.get(&r.req).map(|(d, _)| *d);
        let Some(digest) = asked.or_else(|| self.clients.reidentifying.get(&r.req).copied()) else {
            return Err(ProtocolError::WrongParty);
        };
        self.session()?
            .verify(|s| frames::check_redirect(s, &r, &digest))?;
        self.clients.reidentifying.remove(&r.req);
        tracing::info!(node = %r.node, "a client is served by another node; sent there");
        if let Some((_, tx)) = self.clients.identifying.remove(&r.req) {
            let _ = tx.send(Err(IdentifyError::ServedElsewhere {
                node: r.node,
                http: r.http,
            }));
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
            self.clients.digests.remove(&m.user);
        } else {
            self.clients.announced.insert(m.user, m.state);
        }
    }
}

impl<M: Medium> Handler<WatchUsers> for Gateway<M> {
    type Result = usize;

    fn handle(&mut self, WatchUsers(users): WatchUsers, _: &mut Context<Self>) -> usize {
        let room = MAX_WATCHED.saturating_sub(self.clients.watched.len());
        let mut new: Vec<String> = users
            .into_iter()
            .filter(|u| !self.clients.watched.contains(u))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let left = new.len().saturating_sub(room);
        new.truncate(room);
        if left > 0 {
            tracing::warn!(
                left,
                watched = self.clients.watched.len(),
                "the gateway follows the most users it may; these are not followed"
            );
        }
        if !new.is_empty() {
            self.clients.watched.extend(new.iter().cloned());
            self.send_watch(new);
        }
        left
    }
}

impl<M: Medium> Handler<IdentifyToken> for Gateway<M> {
    type Result = ResponseFuture<Result<Option<Identified>, IdentifyError>>;

    fn handle(
        &mut self,
        IdentifyToken(token): IdentifyToken,
        _: &mut Context<Self>,
    ) -> Self::Result {
        // Askers that gave up (timed out) wait no more.
        self.clients
            .identifying
            .retain(|_, (_, tx)| !tx.is_closed());
        let digest = sha256(token.as_bytes());
        let Some(req) = self.send_identify(digest) else {
            return Box::pin(async { Err(IdentifyError::Unreachable) });
        };
        let (tx, rx) = oneshot::channel();
        self.clients.identifying.insert(req, (digest, tx));
        Box::pin(async move { rx.await.unwrap_or(Err(IdentifyError::Unreachable)) })
    }
}
