//! The messages a [`super::Gateway`] handles besides MIAP frames.

use actix::prelude::*;

use switchboard_core::protocol::{
    Address, MediumKind, Outcome, Priority, RejectReason, Route, To, TxnId,
};

/// A client on this gateway's medium sends a message.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Accepted, OriginateError>")]
pub struct Originate {
    /// The sender's address on this medium.
    pub sender: Address,
    /// The sender's user id, when a user.
    pub sender_user: Option<String>,
    /// The recipient.
    pub to: To,
    /// The content.
    pub content: Vec<u8>,
    /// Its MIME type.
    pub content_type: String,
    /// Subject, if any.
    pub subject: Option<String>,
    /// Priority.
    pub priority: Priority,
    /// Lifetime (ms).
    pub expires_in_ms: u64,
    /// Whether receipts are wanted.
    pub receipt: bool,
    /// An idempotency key from the medium (a spool file, say): a second
    /// `Originate` with the same key is answered
    /// [`OriginateError::Duplicate`] with the first one's transaction, so a
    /// client that retries after a crash does not send the message twice.
    pub dedupe: Option<String>,
}

/// The broker released the message: it is durable and on its way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The transaction.
    pub txn: TxnId,
    /// The first attempt's route; `None` while policy holds the message
    /// for a reviewer.
    pub route: Option<Route>,
    /// Why policy holds it for a reviewer (`policy:<rule>`), if it does:
    /// it is stored and waits for a release.
    pub held: Option<String>,
}

/// Why a message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginateError {
    /// The broker refused to route it.
    #[error("rejected: {}", .0.code())]
    Rejected(RejectReason),
    /// It could not be stored.
    #[error("storage failed: {0}")]
    Store(String),
    /// The gateway is stopping.
    #[error("gateway stopping")]
    Stopping,
    /// The same message (by its dedupe key) was originated already.
    #[error("already accepted as {0}")]
    Duplicate(TxnId),
}

/// The outcome of a message this gateway originated (phase 5), for the
/// medium to tell its client.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Receipt {
    /// The transaction.
    pub txn: TxnId,
    /// The sender's user id, if a user.
    pub sender_user: Option<String>,
    /// The sender's address on this medium (while the gateway still held
    /// the message; a later `Read` has none).
    pub sender: Option<Address>,
    /// The recipient as the sender named them (same caveat).
    pub recipient: Option<String>,
    /// The outcome.
    pub outcome: Outcome,
    /// The mechanism that reached the recipient.
    pub via: Option<MediumKind>,
    /// When (ms).
    pub at_ms: u64,
}

/// Where a gateway tells its medium's clients the outcomes: an actor's
/// mailbox (email, SMS: they answer with a DSN, a delivery receipt), or a
/// call on the gateway's own thread (the IM sessions: a push to each
/// session's channel, no hop through another actor).
pub trait ReceiptSink: Send {
    /// Takes one outcome.
    fn receipt(&self, r: Receipt);
}

impl ReceiptSink for Recipient<Receipt> {
    fn receipt(&self, r: Receipt) {
        self.do_send(r);
    }
}

/// Another node's outbox entries were adopted into this store (a cluster
/// takeover): the gateway reads its outbox again and submits every entry
/// it does not hold yet; how many.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "usize")]
pub struct AdoptOutbox;

/// Delivers a message on this gateway's medium for a gateway of another
/// node of the cluster, which has not this medium and forwarded it (its
/// broker's attempt, its report): the medium's answer, nothing else.
#[derive(Message, Debug)]
#[rtype(result = "Result<crate::medium::MediumAck, crate::medium::NonDelivery>")]
pub struct DeliverHere(pub crate::medium::Delivery);

/// How much work is in flight (shutdown drains until it is zero).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "InFlight")]
pub struct GetInFlight;

/// Work in flight at a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InFlight {
    /// Clients waiting for the broker's decision.
    pub waiting: usize,
    /// Deliveries on the medium not finished.
    pub delivering: usize,
    /// Reports not acknowledged by the broker.
    pub unacked_reports: usize,
    /// Originated messages whose outcome is not known yet.
    pub outbox: usize,
    /// Copies sent to the archive and not acknowledged yet.
    pub archive_copies: usize,
    /// Contents the outbox holds once for several messages, and their bytes.
    pub shared_contents: (usize, usize),
    /// Whether the gateway has a session with the broker.
    pub logged_in: bool,
}
