//! The frames a member signs under its session outside any transaction —
//! `Health`, `Presence`, `Identify`, `Watch` — behind one guard
//! (`BrokerShard::admit`): the sender's session, its clock and the MAC
//! are checked first, then whether this member may send this frame at all.
//! `Health` may come from any gateway (local or remote); the other three
//! only from a session gateway (an IM gateway in another process, reached
//! through a link), since they speak for the users whose sessions it holds.

use switchboard_core::directory::profile::valid_user_id;
use switchboard_core::protocol::frames;
use switchboard_core::protocol::{
    Frame, HealthFrame, Identify, MediumKind, MemberId, PresenceFrame, PresenceState,
    ProtocolError, Session, SessionPair, Watch,
};

use super::watchers::watcher;
use super::BrokerShard;
use crate::bus::presence::MAX_WATCH;
use crate::bus::{Reported, State, Subscribe};

/// Who may send a session frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum May {
    /// Any member serving a medium.
    Gateway,
    /// Only an IM gateway in another process.
    SessionGateway,
    /// A gateway in another process whose clients log in (IM, email).
    TokenAsker,
}

impl BrokerShard {
    /// The one guard: checks a frame `from` signed under its session
    /// (`check(session, now, skew)`, against the current or the previous
    /// session), then that `from` may send it. Returns the sessions.
    fn admit(
        &self,
        from: &MemberId,
        may: May,
        check: impl Fn(&Session, u64, u64) -> Result<(), ProtocolError>,
    ) -> Result<SessionPair, ProtocolError> {
        let now = self.now();
        let session = self.shared.session(from, now)?;
        let skew = self.shared.skew_ms;
        session.verify(|s| check(s, now, skew))?;
        let members = &self.shared.deps.members;
        let allowed = match may {
            May::Gateway => members.is_gateway(from),
            May::SessionGateway => members.is_session_gateway(from),
            May::TokenAsker => members.asks_tokens(from),
        };
        if !allowed {
            return Err(ProtocolError::WrongParty);
        }
        Ok(session)
    }

    /// Whether a gateway's medium can deliver now (a remote gateway's SMSC
    /// or relay, say).
    pub(super) fn health(&mut self, from: &MemberId, h: HealthFrame) -> Result<(), ProtocolError> {
        self.admit(from, May::Gateway, |s, now, skew| {
            frames::check_health(s, &h, now, skew)
        })?;
        tracing::info!(member = %from, up = h.up, detail = %h.detail, "member health");
        self.shared.deps.members.set_healthy(from, h.up);
        Ok(())
    }

    /// A remote gateway asks whose token a client showed it (a WebSocket
    /// session's, an SMTP login's). Only an IM gateway may then hold the
    /// user's session.
    pub(super) fn identify(&mut self, from: &MemberId, f: Identify) -> Result<(), ProtocolError> {
        let session = self.admit(from, May::TokenAsker, |s, now, skew| {
            frames::check_identify(s, &f, now, skew)
        })?;
        let directory = &self.shared.deps.directory;
        let user = directory.authenticate_digest(&f.token_sha256);
        tracing::debug!(member = %from, known = user.is_some(), "identify");
        // A user whose domain requires another node is not served through
        // an IM gateway here: the gateway sends them there. (Mail is a
        // medium any node's gateway takes; its home node delivers it.)
        let im = directory
            .member(from)
            .is_some_and(|m| m.medium == Some(MediumKind::Im));
        let elsewhere = (user.as_deref())
            .filter(|_| im)
            .and_then(|u| self.shared.served_elsewhere(u));
        if let Some((node, http)) = elsewhere {
            tracing::info!(member = %from, user = user.as_deref().unwrap_or(""), node = %node, "identify: served by another node, redirected");
            let r = frames::make_redirect(&session.current, f.req, &f.token_sha256, node, http);
            self.shared.send(from, Frame::Redirect(r));
            return Ok(());
        }
        if let Some(u) = &user {
            self.shared.deps.members.note_identified(from, u);
        }
        let contacts = user
            .as_deref()
            .and_then(|u| directory.profile(u))
            .map(|p| p.contacts.clone())
            .unwrap_or_default();
        let answer =
            frames::make_identity(&session.current, f.req, &f.token_sha256, user, contacts);
        self.shared.send(from, Frame::Identity(answer));
        Ok(())
    }

    /// A session gateway holds (or no longer holds) a user's session: the
    /// user's IM goes there while they are not offline, and what others see
    /// of them follows. It may hold only sessions of users it showed a
    /// token of (`Identify`) on this connection.
    pub(super) fn presence(
        &mut self,
        from: &MemberId,
        p: PresenceFrame,
    ) -> Result<(), ProtocolError> {
        self.admit(from, May::SessionGateway, |s, now, skew| {
            frames::check_presence(s, &p, now, skew)
        })?;
        let held = p.state != PresenceState::Offline;
        // Nothing is reported for a session the registry would not record.
        if !self.shared.deps.members.hold_session(from, &p.user, held) {
            return Err(ProtocolError::WrongParty);
        }
        if let Some(presence) = &self.shared.deps.presence_actor {
            let (state, note) = State::from_frame(&p.state);
            presence.do_send(Reported {
                user: p.user,
                state,
                note,
            });
        }
        Ok(())
    }

    /// A session gateway follows users' presence for its clients: it is
    /// subscribed (as [`watcher`] of itself) and told each one's state now
    /// and at every change.
    pub(super) fn watch(&mut self, from: &MemberId, w: Watch) -> Result<(), ProtocolError> {
        self.admit(from, May::SessionGateway, |s, now, skew| {
            frames::check_watch(s, &w, now, skew)
        })?;
        let valid = w.users.len() <= MAX_WATCH && w.users.iter().all(|u| valid_user_id(u));
        if !valid {
            return Err(ProtocolError::Malformed);
        }
        if let Some(presence) = &self.shared.deps.presence_actor {
            presence.do_send(Subscribe {
                subscriber: watcher(from),
                users: w.users,
            });
        }
        Ok(())
    }
}
