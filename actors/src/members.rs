//! Who is connected: the live members (gateways, processors) and how to
//! reach them, and how members reach the broker's shards. Every party speaks
//! the same typed message, [`MiapFrame`], so a remote member's `Link` can
//! stand in for a local actor.

use std::sync::Arc;

use actix::prelude::*;
use dashmap::DashMap;

use crate::protocol::{Frame, MediumKind, MemberId};

/// One MIAP frame from `from`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct MiapFrame {
    /// The sending party (a member id, or the broker's id).
    pub from: MemberId,
    /// The frame.
    pub frame: Frame,
}

/// A connected member.
#[derive(Clone)]
pub struct LiveMember {
    /// The medium it serves, if a gateway.
    pub medium: Option<MediumKind>,
    /// The medium it converts content for, if a processor.
    pub converts_for: Option<MediumKind>,
    /// Where frames for it go.
    pub recipient: Recipient<MiapFrame>,
    /// Whether it has completed TSCS (and so may be routed to).
    pub logged_in: bool,
    /// Whether its medium reports healthy.
    pub healthy: bool,
    /// When it was last heard from (ms).
    pub last_seen_ms: u64,
}

/// The registry of connected members (the "delivery mechanism database").
/// Cheap to clone.
#[derive(Clone, Default)]
pub struct MemberRegistry {
    inner: Arc<DashMap<MemberId, LiveMember>>,
}

impl MemberRegistry {
    /// Registers (or replaces) a member's connection; it is not routable
    /// until it logs in.
    pub fn connect(
        &self,
        id: MemberId,
        medium: Option<MediumKind>,
        recipient: Recipient<MiapFrame>,
        now_ms: u64,
    ) {
        self.inner.insert(
            id,
            LiveMember {
                medium,
                converts_for: None,
                recipient,
                logged_in: false,
                healthy: true,
                last_seen_ms: now_ms,
            },
        );
    }

    /// Registers a processor that converts content for `target`.
    pub fn connect_processor(
        &self,
        id: MemberId,
        target: MediumKind,
        recipient: Recipient<MiapFrame>,
        now_ms: u64,
    ) {
        self.connect(id.clone(), None, recipient, now_ms);
        if let Some(mut m) = self.inner.get_mut(&id) {
            m.converts_for = Some(target);
        }
    }

    /// A live processor converting for `medium`, if any.
    pub fn live_processor(&self, medium: MediumKind) -> Option<MemberId> {
        self.inner
            .iter()
            .filter(|m| m.converts_for == Some(medium) && m.logged_in && m.healthy)
            .map(|m| m.key().clone())
            .min()
    }

    /// `id` when it is a live processor.
    pub fn live_processor_id(&self, id: &MemberId) -> Option<MemberId> {
        self.inner
            .get(id)
            .filter(|m| m.converts_for.is_some() && m.logged_in)
            .map(|m| m.key().clone())
    }

    /// Removes a member's connection.
    pub fn disconnect(&self, id: &MemberId) {
        self.inner.remove(id);
    }

    /// Marks a member logged in (or not).
    pub fn set_logged_in(&self, id: &MemberId, v: bool, now_ms: u64) {
        if let Some(mut m) = self.inner.get_mut(id) {
            m.logged_in = v;
            m.last_seen_ms = now_ms;
        }
    }

    /// Records a member's health.
    pub fn set_healthy(&self, id: &MemberId, v: bool) {
        if let Some(mut m) = self.inner.get_mut(id) {
            m.healthy = v;
        }
    }

    /// Sends `frame` from `from` to member `to`; false when it is not connected.
    pub fn send(&self, to: &MemberId, from: &MemberId, frame: Frame) -> bool {
        match self.inner.get(to) {
            Some(m) => {
                m.recipient.do_send(MiapFrame {
                    from: from.clone(),
                    frame,
                });
                true
            }
            None => false,
        }
    }

    /// A live (logged in, healthy) gateway of `medium`, if any.
    pub fn live_gateway(&self, medium: MediumKind) -> Option<MemberId> {
        self.inner
            .iter()
            .filter(|m| m.medium == Some(medium) && m.logged_in && m.healthy)
            .map(|m| m.key().clone())
            .min()
    }

    /// A snapshot of every connected member, by id.
    pub fn snapshot(&self) -> Vec<MemberStatus> {
        let mut v: Vec<_> = self
            .inner
            .iter()
            .map(|m| MemberStatus {
                id: m.key().clone(),
                medium: m.medium,
                logged_in: m.logged_in,
                healthy: m.healthy,
                last_seen_ms: m.last_seen_ms,
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

/// A connected member's state, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// The member.
    pub id: MemberId,
    /// Its medium, if a gateway.
    pub medium: Option<MediumKind>,
    /// Whether it completed TSCS.
    pub logged_in: bool,
    /// Whether its medium reports healthy.
    pub healthy: bool,
    /// When it was last heard from (ms).
    pub last_seen_ms: u64,
}

/// How members reach the broker: one recipient per shard; a transaction's
/// frames always go to the same shard (by the txn's hash), session frames by
/// the member's id. Cheap to clone.
#[derive(Clone)]
pub struct BrokerHandle {
    shards: Arc<Vec<Recipient<MiapFrame>>>,
}

impl BrokerHandle {
    /// A handle over `shards` (at least one).
    pub fn new(shards: Vec<Recipient<MiapFrame>>) -> Self {
        assert!(!shards.is_empty(), "a broker has at least one shard");
        Self {
            shards: Arc::new(shards),
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
        self.shards[i].do_send(MiapFrame { from, frame });
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }
}
