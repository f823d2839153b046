//! A member's side of its link to the broker: TSCS login, the current and
//! previous session, and sending frames to the broker's shards. Gateways and
//! processors both hold one.
//!
//! Owns: the member's TSCS session and its renewal. Must not touch: the
//! transport (it hands frames to the bus's `BrokerHandle`, local or a link).

use std::time::Duration;

use crate::bus::BrokerHandle;
use crate::registry::MemberRegistry;
use switchboard_core::protocol::clock::SharedClock;
use switchboard_core::protocol::frames::RefuseReason;
use switchboard_core::protocol::frames::{finish_login, start_login, PendingLogin};
use switchboard_core::protocol::SessionPair;
use switchboard_core::protocol::TxnId;
use switchboard_core::protocol::{Frame, LoginAck, MemberId, ProtocolError, SecretKey};

/// How a member is set up.
#[derive(Clone)]
pub struct MemberConfig {
    /// Its member id.
    pub id: MemberId,
    /// Its key id.
    pub key_id: u32,
    /// Its key `K_m`.
    pub key: SecretKey,
    /// The broker's id.
    pub broker_id: String,
    /// Session lifetime (ms): the member renews at half of it.
    pub session_ttl_ms: u64,
}

/// The member's link to the broker.
pub struct MemberSession {
    /// The member's configuration.
    pub cfg: MemberConfig,
    broker: BrokerHandle,
    clock: SharedClock,
    session: Option<SessionPair>,
    pending: Option<PendingLogin>,
}

impl MemberSession {
    /// A link not yet logged in.
    pub fn new(cfg: MemberConfig, broker: BrokerHandle, clock: SharedClock) -> Self {
        Self {
            cfg,
            broker,
            clock,
            session: None,
            pending: None,
        }
    }

    /// Now (ms).
    pub fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Sends `frame` to the broker shard that owns it.
    pub fn to_broker(&self, frame: Frame) {
        self.broker.send(self.cfg.id.clone(), frame);
    }

    /// Whether `from` is the broker.
    pub fn is_broker(&self, from: &MemberId) -> bool {
        from.as_str() == self.cfg.broker_id
    }

    /// Starts a TSCS login (also to renew the session).
    pub fn login(&mut self) {
        let p = start_login(
            self.cfg.id.clone(),
            self.cfg.key_id,
            self.cfg.key.clone(),
            &self.cfg.broker_id,
            self.now(),
        );
        self.to_broker(Frame::Login(p.login.clone()));
        self.pending = Some(p);
    }

    /// Completes the login with the broker's answer.
    ///
    /// # Errors
    /// [`ProtocolError::WrongParty`] without a login in progress,
    /// [`ProtocolError::BadMac`] for a forged answer.
    pub fn on_login_ack(&mut self, ack: &LoginAck) -> Result<(), ProtocolError> {
        let p = self.pending.take().ok_or(ProtocolError::WrongParty)?;
        let s = finish_login(&p, ack, self.now())?;
        match &mut self.session {
            Some(pair) => pair.renew(s),
            None => self.session = Some(SessionPair::new(s)),
        }
        Ok(())
    }

    /// The sessions.
    ///
    /// # Errors
    /// [`ProtocolError::NoSession`] before the first login.
    pub fn session(&self) -> Result<&SessionPair, ProtocolError> {
        self.session.as_ref().ok_or(ProtocolError::NoSession)
    }

    /// Whether a session exists.
    pub fn logged_in(&self) -> bool {
        self.session.is_some()
    }

    /// Forgets the session (the broker no longer knows it).
    pub fn drop_session(&mut self) {
        self.session = None;
    }

    /// Refuses a frame `kind` from `from`: logged, answered with `Refused`,
    /// and told to the broker — for its own frames and, as a security event,
    /// for a hop's (a hop never acts on a failed check).
    pub fn refuse(
        &self,
        members: &MemberRegistry,
        from: &MemberId,
        kind: &str,
        error: ProtocolError,
        txn: Option<TxnId>,
    ) {
        tracing::warn!(member = %self.cfg.id, from = %from, frame = kind, reason = error.code(), "refused MIAP frame");
        let refusal = Frame::Refused(RefuseReason { error, txn });
        if !self.is_broker(from) {
            members.send(from, &self.cfg.id, refusal.clone());
        }
        self.to_broker(refusal);
    }

    /// How often to renew the session.
    pub fn renew_every(&self) -> Duration {
        Duration::from_millis((self.cfg.session_ttl_ms / 2).max(1_000))
    }
}
