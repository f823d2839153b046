//! TSCS state — time-synchronised communication set-up. One login per link
//! (and per session TTL) establishes a [`Session`] from which every step's
//! key is derived; a party keeps the current session and, during renewal,
//! the previous one ([`SessionPair`]); the broker remembers login nonces
//! ([`NonceCache`]). The `Login`/`LoginAck` frames and their checks are in
//! [`crate::protocol::frames::login`].

use std::collections::{HashMap, VecDeque};

use super::error::ProtocolError;
use super::ids::{MemberId, TxnId};
use super::keys::SecretKey;
use super::mac::{step_key_with, Prekeyed, Tag};

/// An established session between a member and the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The member.
    pub member: MemberId,
    /// The key id used at login.
    pub key_id: u32,
    /// The member key used at login (`K_m`).
    pub key: SecretKey,
    /// The session secret `S`.
    pub secret: Tag,
    /// When the session was established (ms).
    pub established_ms: u64,
    /// `secret`, made ready for the step keys.
    pub(crate) ready: Prekeyed,
}

impl Session {
    /// A session with secret `secret`.
    pub fn new(
        member: MemberId,
        key_id: u32,
        key: SecretKey,
        secret: Tag,
        established_ms: u64,
    ) -> Self {
        Self {
            member,
            key_id,
            key,
            ready: Prekeyed::new(&secret),
            secret,
            established_ms,
        }
    }

    /// The per-step key `C_ack(txn, step)`.
    pub fn step(&self, txn: &TxnId, step: u8) -> Tag {
        step_key_with(&self.ready, txn, step)
    }

    /// Whether the session is older than `ttl_ms` at `now_ms`.
    pub fn expired(&self, now_ms: u64, ttl_ms: u64) -> bool {
        now_ms.saturating_sub(self.established_ms) > ttl_ms
    }
}

/// `(member, nonce)` pairs seen inside the skew window, oldest first.
#[derive(Debug, Default)]
pub struct NonceCache {
    seen: HashMap<(MemberId, [u8; 16]), u64>,
    order: VecDeque<(u64, MemberId, [u8; 16])>,
}

impl NonceCache {
    /// Whether the pair was seen.
    pub fn contains(&self, member: &MemberId, nonce: &[u8; 16]) -> bool {
        self.seen.contains_key(&(member.clone(), *nonce))
    }

    /// Records a pair seen at `ts_ms` (restores persisted entries too).
    pub fn insert(&mut self, member: MemberId, nonce: [u8; 16], ts_ms: u64) {
        if self.seen.insert((member.clone(), nonce), ts_ms).is_none() {
            self.order.push_back((ts_ms, member, nonce));
        }
    }

    /// Forgets pairs older than `window_ms` before `now_ms`.
    pub fn prune(&mut self, now_ms: u64, window_ms: u64) {
        while let Some((ts, _, _)) = self.order.front() {
            if now_ms.saturating_sub(*ts) <= window_ms {
                break;
            }
            if let Some((_, m, n)) = self.order.pop_front() {
                self.seen.remove(&(m, n));
            }
        }
    }

    /// How many pairs are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no pair is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// The current session and the one it replaced.
#[derive(Debug, Clone)]
pub struct SessionPair {
    /// The newest session.
    pub current: Session,
    /// The session it replaced, if any.
    pub previous: Option<Session>,
}

impl SessionPair {
    /// A pair with only `s`.
    pub fn new(s: Session) -> Self {
        Self {
            current: s,
            previous: None,
        }
    }

    /// Makes `s` current, keeping the old current as previous.
    pub fn renew(&mut self, s: Session) {
        let old = std::mem::replace(&mut self.current, s);
        self.previous = Some(old);
    }

    /// Runs `check` on the current session, then on the previous one; the
    /// first that passes is returned.
    ///
    /// # Errors
    /// The current session's error when neither passes.
    pub fn verify(
        &self,
        check: impl Fn(&Session) -> Result<(), ProtocolError>,
    ) -> Result<&Session, ProtocolError> {
        match check(&self.current) {
            Ok(()) => Ok(&self.current),
            Err(e) => match &self.previous {
                Some(p) if check(p).is_ok() => Ok(p),
                _ => Err(e),
            },
        }
    }
}
