//! One broker shard: a thin actor around the transactions whose id hashes
//! to it ([`Transactions`], the state machine in `switchboard-core`). It
//! takes frames from its mailbox, hands each to the machine (or to the
//! login and session-frame handlers), and carries out what the machine
//! decided: the records and their usage to the store (one journal record),
//! then frames to the members.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use switchboard_core::protocol::{Frame, MemberId, ProtocolError, RefuseReason, TxnId};
use switchboard_core::store::records::{enc, Merge, TxnWrite};
use switchboard_core::store::{
    AccountingRecord, OutboxEntry, Tree, TxnRecord, TxnStatus, WriteBatch,
};
use switchboard_core::transactions::{Effects, ReviewError, Transactions};

use super::messages::{CheckTimeouts, OpenTransactions};
use super::BrokerShared;
use crate::bus::{
    BrokerHandle, DrainFrames, FrameQueue, LinkLogin, MemberBack, MiapFrame, ReviewHeld,
};

/// How often a shard checks attempt deadlines and expiries.
const TIMEOUT_CHECK: Duration = Duration::from_millis(100);

/// One broker shard.
pub struct BrokerShard {
    pub(super) shared: Arc<BrokerShared>,
    pub(super) index: usize,
    txns: Transactions,
    /// Its batching queue (none: frames come one per mailbox post).
    queue: Option<Arc<FrameQueue>>,
    /// What the steps of a drained batch decided, carried out together —
    /// one journal record — before any other frame leaves.
    pending: Option<Effects>,
}

impl BrokerShard {
    /// Shard `index` over the shared broker state.
    pub fn new(shared: Arc<BrokerShared>, index: usize) -> Self {
        Self {
            shared,
            index,
            txns: Transactions::new(),
            queue: None,
            pending: None,
        }
    }

    /// Draining `queue` for its frames.
    pub fn with_queue(mut self, queue: Arc<FrameQueue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Carries out the batch's pending effects (records first, then the
    /// frames, in the order they were decided).
    fn flush(&mut self) {
        if let Some(out) = self.pending.take() {
            self.apply(out);
            self.pending = Some(Effects::default());
        }
    }

    /// One frame from a member.
    fn frame(&mut self, msg: MiapFrame) {
        self.shared.dequeued(self.index);
        let MiapFrame { from, frame } = msg;
        let txn = frame.txn();
        let kind = frame.kind();
        let result = match frame {
            Frame::Submit(s) => self.step(|t, env, out| t.submit(env, out, &from, s)),
            Frame::ReleaseAck(a) => self.step(|t, env, _| t.release_ack(env, &from, a)),
            Frame::Report(r) => self.step(|t, env, out| t.report(env, out, &from, r)),
            Frame::NotifyAck(a) => self.step(|t, env, _| t.notify_ack(env, &from, a)),
            other => {
                // Not a step of the machine: whatever the steps before it
                // decided leaves first, so frames keep their order.
                self.flush();
                match other {
                    Frame::Login(l) => self.login(&from, l),
                    Frame::Presence(p) => self.presence(&from, p),
                    Frame::Health(h) => self.health(&from, h),
                    Frame::Identify(f) => self.identify(&from, f),
                    Frame::Watch(w) => self.watch(&from, w),
                    Frame::Refused(r) => {
                        tracing::warn!(member = %from, reason = r.error.code(), txn = ?r.txn.map(|t| t.to_string()), "member refused a frame");
                        Ok(())
                    }
                    _ => Err(ProtocolError::WrongParty),
                }
            }
        };
        if let Err(e) = result {
            self.flush();
            self.refuse(&from, e, txn, kind);
        }
    }

    pub(super) fn now(&self) -> u64 {
        self.shared.deps.clock.now_ms()
    }

    pub(super) fn refuse(
        &self,
        to: &MemberId,
        error: ProtocolError,
        txn: Option<TxnId>,
        kind: &str,
    ) {
        self.shared.count_refusal(error);
        tracing::warn!(member = %to, frame = kind, reason = error.code(), txn = ?txn.map(|t| t.to_string()), shard = self.index, "refused MIAP frame");
        self.shared
            .send(to, Frame::Refused(RefuseReason { error, txn }));
    }

    /// Carries out what the machine decided: every record is queued for the
    /// next group commit before any frame that depends on it leaves.
    fn apply(&self, out: Effects) {
        // One journal record: the transactions' changes and their usage.
        if !out.records.is_empty() || !out.accounting.is_empty() {
            let store = &self.shared.deps.store;
            let mut b = WriteBatch::new();
            // A conclusion's usage goes with the change that concluded it
            // (derived from that record on recovery, not journalled on its
            // own); usage whose write was a whole record is a merge after.
            let mut usage: Vec<Option<AccountingRecord>> = vec![None; out.records.len()];
            let mut apart = Vec::new();
            for (i, a) in out.accounting {
                match out.records.get(i) {
                    Some((t, TxnWrite::Delta { .. })) if *t == a.txn && usage[i].is_none() => {
                        usage[i] = Some(a)
                    }
                    _ => apart.push(a),
                }
            }
            for ((txn, w), usage) in out.records.into_iter().zip(usage) {
                let key = TxnRecord::key(&txn).to_vec();
                match w {
                    // In process the originator's outbox entry (the same
                    // store) has the IMI: the journal need not have it twice.
                    TxnWrite::Full {
                        whole,
                        base,
                        originator,
                    } => {
                        let outbox = OutboxEntry::key(&originator, &txn);
                        if store.contains(Tree::Outbox, &outbox).unwrap_or(false) {
                            let m = Merge::TxnOnOutbox { outbox, base };
                            b.merge_known(Tree::Txn, key, m.encode(), whole)
                        } else {
                            b.insert(Tree::Txn, key, whole)
                        }
                    }
                    TxnWrite::Delta { whole, delta } => match usage {
                        Some(a) => {
                            let m = Merge::TxnConcluded {
                                delta,
                                outcome: a.outcome.clone(),
                                at_ms: a.at_ms,
                            };
                            b.merge_known(Tree::Txn, key, m.encode(), whole).derive(
                                Tree::Accounting,
                                a.key(),
                                enc(&a),
                            )
                        }
                        None => b.merge_known(Tree::Txn, key, Merge::Txn(delta).encode(), whole),
                    },
                };
            }
            for a in apart {
                let usage = Merge::Usage {
                    txn: a.txn,
                    outcome: a.outcome.clone(),
                    at_ms: a.at_ms,
                };
                b.merge_known(Tree::Accounting, a.key(), usage.encode(), enc(&a));
            }
            store.writer().write_nowait(b);
        }
        for (to, frame) in out.frames {
            self.shared.send(&to, frame);
        }
        for n in out.notices {
            self.shared.notice(n);
        }
        for rec in out.archived {
            self.shared.archived(rec);
        }
    }

    /// Runs one step of the machine and carries out its effects (also those
    /// of a step that failed part-way, as the frames already decided on).
    fn step(
        &mut self,
        f: impl FnOnce(&mut Transactions, &BrokerShared, &mut Effects) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        if let Some(out) = self.pending.as_mut() {
            return f(&mut self.txns, &self.shared, out);
        }
        let mut out = Effects::default();
        let r = f(&mut self.txns, &self.shared, &mut out);
        self.apply(out);
        r
    }

    fn check_timeouts(&mut self) {
        metrics::gauge!("switchboard_broker_open_transactions", "shard" => self.index.to_string())
            .set(self.txns.len() as f64);
        self.shared.set_open(self.index, self.txns.len());
        let _ = self.step(|t, env, out| {
            t.timeouts(env, out);
            Ok(())
        });
    }
}

impl Actor for BrokerShard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        ctx.run_interval(TIMEOUT_CHECK, |act, _| act.check_timeouts());
        tracing::debug!(shard = self.index, "broker shard started");
    }
}

impl Handler<MiapFrame> for BrokerShard {
    type Result = ();

    fn handle(&mut self, msg: MiapFrame, _: &mut Context<Self>) {
        self.frame(msg);
    }
}

impl Handler<DrainFrames> for BrokerShard {
    type Result = ();

    /// Everything queued for the shard, as one batch: the steps' records go
    /// to the journal as one record, their frames after it.
    fn handle(&mut self, _: DrainFrames, _: &mut Context<Self>) {
        let Some(q) = self.queue.clone() else {
            return;
        };
        let frames = q.take();
        self.pending = Some(Effects::default());
        for m in frames {
            self.frame(m);
        }
        if let Some(out) = self.pending.take() {
            self.apply(out);
        }
    }
}

impl Handler<LinkLogin> for BrokerShard {
    type Result = ();

    fn handle(&mut self, m: LinkLogin, _: &mut Context<Self>) {
        self.link_login(m);
    }
}

impl Handler<MemberBack> for BrokerShard {
    type Result = ();

    /// A member is back on a new connection: the machine releases every
    /// open attempt routed through it again.
    fn handle(&mut self, MemberBack(member): MemberBack, _: &mut Context<Self>) {
        let _ = self.step(|t, env, out| {
            t.member_back(env, out, &member);
            Ok(())
        });
    }
}

impl Handler<ReviewHeld> for BrokerShard {
    type Result = Result<TxnStatus, ReviewError>;

    /// A reviewer releases or rejects a quarantined transaction.
    fn handle(&mut self, r: ReviewHeld, _: &mut Context<Self>) -> Self::Result {
        self.flush();
        let mut out = Effects::default();
        let status = self
            .txns
            .review(&*self.shared, &mut out, &r.txn, r.decision, &r.by);
        self.apply(out);
        status
    }
}

impl Handler<OpenTransactions> for BrokerShard {
    type Result = usize;

    fn handle(&mut self, _: OpenTransactions, _: &mut Context<Self>) -> usize {
        self.txns.len()
    }
}

impl Handler<CheckTimeouts> for BrokerShard {
    type Result = ();

    fn handle(&mut self, _: CheckTimeouts, _: &mut Context<Self>) {
        self.check_timeouts();
    }
}

/// A running broker: its shards on their arbiters.
pub struct Broker {
    /// How members reach the shards.
    pub handle: BrokerHandle,
    /// The shared state.
    pub shared: Arc<BrokerShared>,
    arbiters: Vec<actix::Arbiter>,
}

impl Broker {
    /// Starts `shards` shards, each on its own arbiter (thread).
    pub fn start(shared: Arc<BrokerShared>, shards: usize) -> Self {
        let mut arbiters = Vec::new();
        let mut queues = Vec::new();
        let mut logins = Vec::new();
        let mut backs = Vec::new();
        let mut reviews = Vec::new();
        for i in 0..shards.max(1) {
            let arb = actix::Arbiter::new();
            let s = shared.clone();
            let queue = FrameQueue::new();
            let q = queue.clone();
            let addr = BrokerShard::start_in_arbiter(&arb.handle(), move |_| {
                BrokerShard::new(s, i).with_queue(q)
            });
            queue.serve(addr.clone().recipient());
            queues.push(queue);
            logins.push(addr.clone().recipient());
            reviews.push(addr.clone().recipient());
            backs.push(addr.recipient());
            arbiters.push(arb);
        }
        Self {
            handle: BrokerHandle::queued(queues)
                .with_link_logins(logins)
                .with_member_backs(backs)
                .with_reviews(reviews)
                .with_queue_depths(shared.queue_counters()),
            shared,
            arbiters,
        }
    }

    /// Stops the shards' arbiters (after their queued frames).
    pub fn stop(&self) {
        for a in &self.arbiters {
            a.stop();
        }
    }
}
