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

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use actix::prelude::*;

use switchboard_core::protocol::{Frame, MemberId, ProtocolError, RefuseReason, TxnId};
use switchboard_core::store::TxnStatus;
use switchboard_core::transactions::{Review, ReviewError};

pub use links::{LinkLogin, LinkUp, MemberBack};
pub use presence::{AnnouncePresence, PresencePush, Reported, State, Subscribe};

/// A reviewer's decision on a quarantined transaction, for the shard that
/// owns it; answers the status it has now.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<TxnStatus, ReviewError>")]
pub struct ReviewHeld {
    /// The transaction.
    pub txn: TxnId,
    /// Release or reject.
    pub decision: Review,
    /// Who decided (the trail names them).
    pub by: String,
}

/// A concluded transaction of an archived scope (its trail has an
/// `archive:<name>` mark), from the broker to the archive: what it records
/// with the content it was sent.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct ArchiveConcluded(pub switchboard_core::store::TxnRecord);

/// One MIAP frame from `from`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct MiapFrame {
    /// The sending party (a member id, or the broker's id).
    pub from: MemberId,
    /// The frame.
    pub frame: Frame,
}

/// Tells a party (a shard, a gateway) that frames wait in its [`FrameQueue`].
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct DrainFrames;

/// A party's frames, handed over in batches: a sender appends to the queue
/// and only the one that finds it empty posts a [`DrainFrames`]; the party
/// takes everything queued at once. Under load one mailbox post (and one
/// wake-up of the party's thread) carries many frames.
#[derive(Default)]
pub struct FrameQueue {
    frames: std::sync::Mutex<Vec<MiapFrame>>,
    party: std::sync::OnceLock<Recipient<DrainFrames>>,
}

impl FrameQueue {
    /// A queue whose party is told later ([`Self::serve`]).
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The party (a shard, a gateway) that drains it.
    pub fn serve(&self, party: Recipient<DrainFrames>) {
        let _ = self.party.set(party);
    }

    fn push(&self, m: MiapFrame) {
        let first = {
            let mut q = self.frames.lock().unwrap_or_else(|p| p.into_inner());
            q.push(m);
            q.len() == 1
        };
        if first {
            if let Some(s) = self.party.get() {
                HANDOFFS.post();
                s.do_send(DrainFrames);
                return;
            }
        }
        HANDOFFS.frame();
    }

    /// Everything queued, in the order it came.
    pub fn take(&self) -> Vec<MiapFrame> {
        std::mem::take(&mut *self.frames.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Where a party's frames go: its mailbox (a remote member's link, tests),
/// or its batching queue (the node's own shards and gateways).
#[derive(Clone)]
pub enum FrameSink {
    /// One mailbox post per frame.
    Mailbox(Recipient<MiapFrame>),
    /// Appended to a queue the party drains ([`FrameQueue`]).
    Queue(Arc<FrameQueue>),
}

impl FrameSink {
    /// Hands `m` over.
    pub fn send(&self, m: MiapFrame) {
        match self {
            Self::Mailbox(r) => {
                HANDOFFS.post();
                r.do_send(m)
            }
            Self::Queue(q) => q.push(m),
        }
    }
}

impl From<Recipient<MiapFrame>> for FrameSink {
    fn from(r: Recipient<MiapFrame>) -> Self {
        Self::Mailbox(r)
    }
}

impl From<Arc<FrameQueue>> for FrameSink {
    fn from(q: Arc<FrameQueue>) -> Self {
        Self::Queue(q)
    }
}

/// Frames handed between actors through [`FrameSink`]s in this process, and
/// the mailbox posts that carried them (for the load generator's report:
/// posts per message).
#[derive(Default)]
pub struct Handoffs {
    frames: AtomicU64,
    posts: AtomicU64,
}

impl Handoffs {
    /// One frame, in a mailbox post of its own.
    fn post(&self) {
        self.frame();
        self.posts.fetch_add(1, Ordering::Relaxed);
    }

    /// One frame, joining a post already on its way.
    fn frame(&self) {
        self.frames.fetch_add(1, Ordering::Relaxed);
    }

    /// `(frames, posts)` since the process started.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.frames.load(Ordering::Relaxed),
            self.posts.load(Ordering::Relaxed),
        )
    }
}

/// The process's hand-off counts.
pub static HANDOFFS: Handoffs = Handoffs {
    frames: AtomicU64::new(0),
    posts: AtomicU64::new(0),
};

/// How members reach the broker: one recipient per shard; a transaction's
/// frames always go to the same shard (by the txn's hash), session frames by
/// the member's id. Cheap to clone.
#[derive(Clone)]
pub struct BrokerHandle {
    shards: Arc<Vec<FrameSink>>,
    logins: Arc<Vec<Recipient<LinkLogin>>>,
    backs: Arc<Vec<Recipient<MemberBack>>>,
    reviews: Arc<Vec<Recipient<ReviewHeld>>>,
    /// Counted up per frame sent to a shard; the shard counts down.
    queued: Option<Arc<[AtomicI64]>>,
}

impl BrokerHandle {
    /// A handle over `shards` (at least one).
    pub fn new(shards: Vec<Recipient<MiapFrame>>) -> Self {
        assert!(!shards.is_empty(), "a broker has at least one shard");
        Self {
            shards: Arc::new(shards.into_iter().map(FrameSink::Mailbox).collect()),
            logins: Arc::new(Vec::new()),
            backs: Arc::new(Vec::new()),
            reviews: Arc::new(Vec::new()),
            queued: None,
        }
    }

    /// A handle over the shards' batching queues (at least one).
    pub fn queued(queues: Vec<Arc<FrameQueue>>) -> Self {
        assert!(!queues.is_empty(), "a broker has at least one shard");
        Self {
            shards: Arc::new(queues.into_iter().map(FrameSink::Queue).collect()),
            logins: Arc::new(Vec::new()),
            backs: Arc::new(Vec::new()),
            reviews: Arc::new(Vec::new()),
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

    /// With every shard's handler of [`ReviewHeld`] (in shard order).
    pub fn with_reviews(mut self, reviews: Vec<Recipient<ReviewHeld>>) -> Self {
        self.reviews = Arc::new(reviews);
        self
    }

    /// A reviewer's decision, to the shard that owns the transaction.
    ///
    /// # Errors
    /// [`ReviewError`]; [`ReviewError::Unknown`] also when this handle
    /// reaches no broker shard that reviews (a member process).
    pub async fn review(&self, r: ReviewHeld) -> Result<TxnStatus, ReviewError> {
        let i = (r.txn.shard_hash() % self.shards.len() as u64) as usize;
        match self.reviews.get(i) {
            Some(shard) => shard.send(r).await.unwrap_or(Err(ReviewError::Unknown)),
            None => Err(ReviewError::Unknown),
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
        self.shards[i].send(MiapFrame { from, frame });
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::protocol::{ReleaseAck, TxnId};

    /// Takes its queue's frames on each drain; counts drains and frames.
    struct Drainer {
        queue: Arc<FrameQueue>,
        seen: Arc<std::sync::Mutex<(usize, Vec<u32>)>>,
    }

    impl Actor for Drainer {
        type Context = Context<Self>;
    }

    impl Handler<DrainFrames> for Drainer {
        type Result = ();
        fn handle(&mut self, _: DrainFrames, _: &mut Context<Self>) {
            let frames = self.queue.take();
            let mut seen = self.seen.lock().unwrap();
            seen.0 += 1;
            for m in frames {
                if let Frame::ReleaseAck(a) = m.frame {
                    seen.1.push(a.attempt);
                }
            }
        }
    }

    /// Frames sent through a queued handle arrive in order, and a burst is
    /// drained with far fewer mailbox posts than frames.
    #[actix_rt::test]
    async fn a_burst_of_frames_is_drained_in_order_in_a_few_posts() {
        let queue = FrameQueue::new();
        let seen = Arc::new(std::sync::Mutex::new((0, Vec::new())));
        let addr = Drainer {
            queue: queue.clone(),
            seen: seen.clone(),
        }
        .start();
        queue.serve(addr.clone().recipient());
        let handle = BrokerHandle::queued(vec![queue]);
        let txn = TxnId([1; 16]);
        for attempt in 0..1000u32 {
            let f = Frame::ReleaseAck(ReleaseAck {
                txn,
                attempt,
                mac: [0; 32],
            });
            handle.send(MemberId::new("gw"), f);
        }
        // Everything queued before this drain is taken by the drains before
        // it or by this one.
        addr.send(DrainFrames).await.unwrap();
        let (drains, order) = seen.lock().unwrap().clone();
        assert_eq!(order, (0..1000).collect::<Vec<_>>());
        assert!(drains < 10, "{drains} drains for 1000 frames");
    }
}
