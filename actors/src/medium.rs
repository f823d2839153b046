//! The `Medium` contract: what a medium implementation owes the
//! gateway that drives it. Adding a medium is one folder
//! under `src/gateways/` implementing this trait, plus one line in the
//! registry there; one shared compliance suite runs against every medium.
//!
//! Owns: the contract and the messages a medium sends its gateway. Must not
//! touch: any medium (they live in `src/gateways/`).

use actix::prelude::*;

use futures_like::LocalBoxFuture;

use switchboard_core::protocol::{
    Address, Attestation, MediumKind, MemberId, ReportStatus, Route, Tag, TxnId,
};

/// Tiny local stand-in for `futures::future::LocalBoxFuture`, so the crate
/// needs no extra dependency for one type alias.
pub mod futures_like {
    /// A boxed, non-`Send` future.
    pub type LocalBoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>;
}

/// A message to deliver on a medium.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Delivery {
    /// The transaction (delivery MUST be idempotent on it).
    pub txn: TxnId,
    /// The attempt.
    pub attempt: u32,
    /// The broker's inner digest `ID` of the attempt (kept for later reports,
    /// such as `Read`).
    pub id: Tag,
    /// The sender as shown to the recipient (user id or address).
    pub from: String,
    /// The originating gateway (whose outbox holds the content, when it is
    /// in this process).
    pub originator: MemberId,
    /// The sender's address.
    pub sender: Address,
    /// The sender's user id, when the sender is a user.
    pub sender_user: Option<String>,
    /// The route: mechanism, the recipient's address on it, their user id.
    pub route: Route,
    /// Subject, if any.
    pub subject: Option<String>,
    /// MIME content type.
    pub content_type: String,
    /// The content (already converted for this medium).
    pub content: Vec<u8>,
    /// When the sender sent it (ms).
    pub sent_at_ms: u64,
    /// The processors' attestations on the way. A medium that answers
    /// [`MediumAck::Pending`] hands them back in its later
    /// [`MediumReport`] (a `Delivered` report must carry
    /// them), keeping them as durably as the delivery itself.
    pub attestations: Vec<Attestation>,
    /// Policy's tags on the message (`node:<id>`: a `redirect` rule places
    /// its delivery on that node of the cluster).
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Delivery {
    /// The node a `redirect` rule placed the delivery on, if any.
    pub fn redirected_to(&self) -> Option<&str> {
        self.tags.iter().find_map(|t| t.strip_prefix("node:"))
    }
}

/// What a medium did with a message it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediumAck {
    /// Delivered: the gateway reports `Delivered` now.
    Delivered,
    /// Delivered, and how is worth listing in the attempt (by which node
    /// of a cluster): the gateway reports `DeliveredVia(how)` now.
    DeliveredVia(String),
    /// Held for the recipient (the IM inbox of a user with no open
    /// session): the medium reports `Delivered` later through
    /// [`MediumReport`], and the delivery manager may move
    /// on after the attempt timeout meanwhile.
    Pending,
}

/// Why a medium could not deliver (becomes `NonDelivery(reason)`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NonDelivery(pub String);

/// A medium's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Whether it can deliver now.
    pub up: bool,
    /// A human-readable detail.
    pub detail: String,
}

/// A later event on the medium for a delivered message (the recipient read
/// it): the gateway signs and sends the phase-4 report.
#[derive(Message, Debug, Clone, serde::Serialize, serde::Deserialize)]
#[rtype(result = "()")]
pub struct MediumReport {
    /// The transaction.
    pub txn: TxnId,
    /// The attempt that delivered it.
    pub attempt: u32,
    /// That attempt's broker `ID`.
    pub id: Tag,
    /// What happened.
    pub status: ReportStatus,
    /// The processors' attestations from the delivery
    /// ([`Delivery::attestations`]); empty when none.
    pub attestations: Vec<Attestation>,
}

/// A medium implementation.
///
/// - It MUST name its medium ([`Medium::kind`]) and report its health
///   ([`Medium::health`]) without blocking.
/// - [`Medium::deliver`] MUST resolve `Ok(MediumAck::Delivered)` only once
///   the medium has accepted the message (for the built-in IM medium:
///   durably in the recipient's inbox; for SMTP: the relay's `250`),
///   `Ok(MediumAck::Pending)` when it holds the message durably for a
///   recipient who is not reachable yet (and then reports the delivery
///   later), and `Err` with a reason otherwise; it MUST NOT panic on any
///   input.
/// - Delivery MUST be idempotent on `txn`: delivering the same transaction
///   again MUST NOT give the recipient a second copy, and resolves as the
///   first delivery did.
/// - It SHOULD bound the time a delivery takes.
pub trait Medium: Unpin + 'static {
    /// The medium served.
    fn kind(&self) -> MediumKind;

    /// A short name for logs (defaults to the medium's name).
    fn name(&self) -> &str {
        self.kind().as_str()
    }

    /// Whether the medium can deliver now.
    fn health(&self) -> Health;

    /// Delivers one message.
    fn deliver(
        &mut self,
        delivery: Delivery,
    ) -> LocalBoxFuture<'static, Result<MediumAck, NonDelivery>>;
}

/// Where a gateway's deliveries are made when its medium is on other nodes
/// of a cluster too (the shell's home-node routing): on this gateway's
/// medium, or by another node's gateway. Deliveries other nodes hand to
/// this one (the gateway's `DeliverHere`) are never placed again.
pub trait Placement: 'static {
    /// Where `delivery` goes.
    fn place(&mut self, delivery: Delivery) -> Placed;
}

/// A delivery placed ([`Placement`]).
pub enum Placed {
    /// On this gateway's medium; `how`, if any, is said in the report
    /// (after the medium's own, if it says one).
    Here(Box<Delivery>, Option<String>),
    /// By another node.
    Elsewhere(LocalBoxFuture<'static, Elsewhere>),
}

/// What another node made of a delivery ([`Placed::Elsewhere`]).
pub enum Elsewhere {
    /// Its outcome (it may have delivered: nothing is tried after it).
    Done(Result<MediumAck, NonDelivery>),
    /// It never had it: delivered here after all, `how` said.
    Back(Box<Delivery>, Option<String>),
}

impl MediumAck {
    /// This acknowledgement, with `how` said of a delivery (after what the
    /// medium said of it, if anything).
    pub fn with_how(self, how: Option<String>) -> Self {
        match (self, how) {
            (Self::Delivered, Some(h)) => Self::DeliveredVia(h),
            (Self::DeliveredVia(inner), Some(h)) => Self::DeliveredVia(format!("{inner}: {h}")),
            (ack, _) => ack,
        }
    }
}
