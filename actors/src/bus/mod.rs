//! The bus: the messages several actors exchange, and how members reach
//! the broker's shards. A leaf: it depends on `switchboard-core` only, and
//! every actor imports it instead of importing each other.
//!
//! - [`MiapFrame`]: one MIAP frame in flight between two parties (local
//!   actors, or a TCP link standing for a remote member);
//! - [`BrokerHandle`]: a member's way to the shard that owns a frame;
//! - [`links`]: a link's login, a member back on a new connection, a link
//!   up again;
//! - [`presence`]: presence reports, pushes and subscriptions, and the
//!   limits of what a remote gateway may watch.
//!
//! Owns: message shapes. Must not touch: any actor's state.

pub mod links;
pub mod presence;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use actix::prelude::*;

use switchboard_core::protocol::{Frame, MemberId, ProtocolError, RefuseReason};

pub use links::{LinkLogin, LinkUp, MemberBack};
pub use presence::{AnnouncePresence, PresencePush, Reported, State, Subscribe};

/// One MIAP frame from `from`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct MiapFrame {
    /// The sending party (a member id, or the broker's id).
    pub from: MemberId,
    /// The frame.
    pub frame: Frame,
}

/// How members reach the broker: one recipient per shard; a transaction's
/// frames always go to the same shard (by the txn's hash), session frames by
/// the member's id. Cheap to clone.
#[derive(Clone)]
pub struct BrokerHandle {
    shards: Arc<Vec<Recipient<MiapFrame>>>,
    logins: Arc<Vec<Recipient<LinkLogin>>>,
    backs: Arc<Vec<Recipient<MemberBack>>>,
    /// Counted up per frame sent to a shard; the shard counts down.
    queued: Option<Arc<[AtomicI64]>>,
}

impl BrokerHandle {
    /// A handle over `shards` (at least one).
    pub fn new(shards: Vec<Recipient<MiapFrame>>) -> Self {
        assert!(!shards.is_empty(), "a broker has at least one shard");
        Self {
            shards: Arc::new(shards),
            logins: Arc::new(Vec::new()),
            backs: Arc::new(Vec::new()),
            queued: None,
        }
    }

    /// Counting each frame sent to shard `i` in `queued[i]` (the broker's
    /// queue depth per shard).
    pub fn with_queue_depths(mut self, queued: Arc<[AtomicI64]>) -> Self {
        self.queued = Some(queued);
        self
    }

    /// With every shard's handler of [`MemberBack`].
    pub fn with_member_backs(mut self, backs: Vec<Recipient<MemberBack>>) -> Self {
        self.backs = Arc::new(backs);
        self
    }

    /// Tells every shard that `member` is back on a new connection.
    pub fn member_back(&self, member: MemberId) {
        for b in self.backs.iter() {
            b.do_send(MemberBack(member.clone()));
        }
    }

    /// With the shards' handlers of logins that arrive on links (in the
    /// same order as the shards).
    pub fn with_link_logins(mut self, logins: Vec<Recipient<LinkLogin>>) -> Self {
        self.logins = Arc::new(logins);
        self
    }

    /// Hands a login that arrived on a link to the shard of its member
    /// (refused when this handle has no link logins: a member process).
    pub fn link_login(&self, l: LinkLogin) {
        let i = self.shard_of(&l.login.member, &Frame::Login(l.login.clone()));
        match self.logins.get(i) {
            Some(r) => r.do_send(l),
            None => l.link.do_send(MiapFrame {
                from: l.login.member.clone(),
                frame: Frame::Refused(RefuseReason {
                    error: ProtocolError::WrongParty,
                    txn: None,
                }),
            }),
        }
    }

    /// The shard index for a frame from `from`.
    pub fn shard_of(&self, from: &MemberId, frame: &Frame) -> usize {
        let n = self.shards.len() as u64;
        let h = match frame.txn() {
            Some(t) => t.shard_hash(),
            None => from
                .as_str()
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
                }),
        };
        (h % n) as usize
    }

    /// Sends a frame to the shard that owns it.
    pub fn send(&self, from: MemberId, frame: Frame) {
        let i = self.shard_of(&from, &frame);
        if let Some(q) = self.queued.as_ref().and_then(|q| q.get(i)) {
            q.fetch_add(1, Ordering::Relaxed);
        }
        self.shards[i].do_send(MiapFrame { from, frame });
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }
}
