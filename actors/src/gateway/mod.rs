//! `Gateway<M: Medium>`: one medium's member of the deployment, in both roles.
//!
//! - **Originator**: a client's message becomes an IMI plus content, stored
//!   durably in the outbox *before* the IMI is submitted; the content stays
//!   there until the broker notifies the outcome (phase 5). On start, every
//!   outbox entry is submitted again (the broker answers idempotently), so a
//!   crash loses nothing that was acknowledged.
//! - **Destination**: a `Transmit` whose grant, expiry and digest check out is
//!   acknowledged, delivered on the medium, and reported (phase 4); reports
//!   are resent until the broker acknowledges them.
//!
//! Owns: its outbox, reports in flight, and (for an IM gateway in another
//! process) its clients' sessions. Must not touch: routing (the broker's), the
//! medium's own wire (the `Medium` behind it).

mod archive_copies;
mod archiving;
pub mod messages;
pub mod sessions;
mod shared_content;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

pub use messages::{
    Accepted, AdoptOutbox, DeliverHere, GetInFlight, InFlight, Originate, OriginateError, Receipt,
    ReceiptSink,
};
pub use sessions::{IdentifyError, IdentifyToken, WatchUsers};

use crate::bus::{BrokerHandle, DrainFrames, FrameQueue, MiapFrame};
use crate::medium::futures_like::LocalBoxFuture;
use crate::medium::{Delivery, Elsewhere, Medium, MediumAck, MediumReport, Placed, Placement};
use crate::member_session::{MemberConfig, MemberSession};
use crate::registry::MemberRegistry;
use switchboard_core::protocol::clock::SharedClock;
use switchboard_core::protocol::frames;
use switchboard_core::protocol::frames::RefuseReason;
use switchboard_core::protocol::mac::sha256;
use switchboard_core::protocol::SessionPair;
use switchboard_core::protocol::{
    Attestation, Frame, Held, Imi, LoginAck, MemberId, Notify, Outcome, ProtocolError, Rejected,
    Release, ReportAck, ReportStatus, Transmit, TxnId,
};
use switchboard_core::store::records::{enc, key2};
use switchboard_core::store::{OutboxEntry, Store, Tree, WriteBatch};

/// How a gateway is set up.
pub type GatewayConfig = MemberConfig;

/// A medium's gateway.
pub struct Gateway<M: Medium> {
    tscs: MemberSession,
    medium: M,
    members: MemberRegistry,
    store: Store,
    receipts: Option<Box<dyn ReceiptSink>>,
    /// Outbox mirror: content originated here, until the outcome is known.
    outbox: HashMap<TxnId, OutboxEntry>,
    /// The mirror's long contents, once each however many entries carry it.
    shared: shared_content::SharedContent,
    /// Submits waiting for a session.
    unsent: Vec<TxnId>,
    /// Clients waiting for the broker's decision.
    waiting: HashMap<TxnId, oneshot::Sender<Result<Accepted, OriginateError>>>,
    /// Deliveries in progress (dedupe of concurrent transmits).
    delivering: HashSet<TxnId>,
    /// Reports sent and not yet acknowledged, by (txn, attempt, variant).
    unacked: HashMap<(TxnId, u32, u8), MediumReport>,
    /// The medium health last told to the broker (this session).
    told_health: Option<bool>,
    /// Its clients' sessions (an IM gateway in another process).
    clients: sessions::ClientSessions,
    /// Where the registry queues frames for it: drained in batches, one
    /// mailbox post per burst.
    inbound: Option<Arc<FrameQueue>>,
    /// Where deliveries are made, in a cluster ([`Placement`]).
    placement: Option<Box<dyn Placement>>,
    /// Copies sent to the archive and not acknowledged yet.
    copies: archive_copies::ArchiveCopies,
}

/// How long an `Originate` dedupe key (an HTTP `Idempotency-Key`, a spool
/// file's name) is remembered: a retry within it is answered with the first
/// transaction.
pub const DEDUPE_RETENTION_MS: u64 = 7 * 24 * 3_600_000;

impl<M: Medium> Gateway<M> {
    /// A gateway for `medium`.
    pub fn new(
        cfg: GatewayConfig,
        medium: M,
        broker: BrokerHandle,
        members: MemberRegistry,
        store: Store,
        clock: SharedClock,
    ) -> Self {
        Self {
            tscs: MemberSession::new(cfg, broker, clock),
            medium,
            members,
            store,
            receipts: None,
            outbox: HashMap::new(),
            shared: shared_content::SharedContent::default(),
            unsent: Vec::new(),
            waiting: HashMap::new(),
            delivering: HashSet::new(),
            unacked: HashMap::new(),
            told_health: None,
            clients: sessions::ClientSessions::default(),
            inbound: None,
            placement: None,
            copies: archive_copies::ArchiveCopies::default(),
        }
    }

    /// The store key of dedupe key `k` for this gateway.
    fn dedupe_key(&self, k: &str) -> Vec<u8> {
        key2(self.tscs.cfg.id.as_str(), k.as_bytes())
    }

    /// Forgets dedupe keys older than [`DEDUPE_RETENTION_MS`].
    fn forget_old_dedupe_keys(&self) {
        let prefix = key2(self.tscs.cfg.id.as_str(), b"");
        let horizon = self.now().saturating_sub(DEDUPE_RETENTION_MS);
        let entries = match self.store.scan(Tree::Dedupe, &prefix) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(member = %self.tscs.cfg.id, error = %e, "reading dedupe keys failed");
                return;
            }
        };
        let mut b = WriteBatch::new();
        for (k, v) in entries {
            let old = std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse::<TxnId>().ok())
                .is_none_or(|t| t.created_ms() < horizon);
            if old {
                b.remove(Tree::Dedupe, k);
            }
        }
        if !b.is_empty() {
            tracing::info!(member = %self.tscs.cfg.id, count = b.len(), "forgetting old dedupe keys");
            self.store.writer().write_nowait(b);
        }
    }

    /// Sends the broker's word on followed users' presence to `r` (an IM
    /// gateway in another process: its presence actor).
    pub fn with_presence(mut self, r: Recipient<crate::bus::Reported>) -> Self {
        self.clients.presence = Some(r);
        self
    }

    /// Sends outcomes of originated messages to `r` (the medium's clients).
    pub fn with_receipts(mut self, r: impl ReceiptSink + 'static) -> Self {
        self.receipts = Some(Box::new(r));
        self
    }

    /// Places each delivery with `p` (a cluster's home-node routing).
    #[must_use]
    pub fn with_placement(mut self, p: impl Placement) -> Self {
        self.placement = Some(Box::new(p));
        self
    }

    fn now(&self) -> u64 {
        self.tscs.now()
    }

    fn to_broker(&self, frame: Frame) {
        self.tscs.to_broker(frame);
    }

    fn login(&mut self) {
        self.tscs.login();
    }

    /// Tells the broker the medium's health when it changed (or was never
    /// told in this session): how a remote gateway's broker learns it.
    fn tell_health(&mut self, h: crate::medium::Health) {
        if self.told_health == Some(h.up) {
            return;
        }
        let now = self.now();
        if let Ok(s) = self.tscs.session() {
            let f = frames::make_health(&s.current, h.up, h.detail, now);
            self.to_broker(Frame::Health(f));
            self.told_health = Some(h.up);
        }
    }

    fn on_login_ack(&mut self, ack: LoginAck) -> Result<(), ProtocolError> {
        self.tscs.on_login_ack(&ack)?;
        self.told_health = None;
        tracing::info!(member = %self.tscs.cfg.id, medium = self.medium.name(), "logged in to the broker");
        for txn in std::mem::take(&mut self.unsent) {
            self.submit(txn);
        }
        let unacked: Vec<_> = self.unacked.values().cloned().collect();
        for r in unacked {
            self.send_report(r.txn, r.attempt, r.id, r.status, r.attestations);
        }
        self.announce_all();
        Ok(())
    }

    fn submit(&mut self, txn: TxnId) {
        let (Some(session), Some(entry)) = (self.tscs.session().ok(), self.outbox.get(&txn)) else {
            if self.outbox.contains_key(&txn) {
                self.unsent.push(txn);
            }
            return;
        };
        let s = frames::make_submit(&session.current, entry.imi.clone());
        self.to_broker(Frame::Submit(s));
    }

    /// Takes every stored outbox entry it does not hold yet (at start, and
    /// after a takeover adopted another node's) and submits it once logged
    /// in; how many.
    fn read_outbox(&mut self) -> usize {
        let entries = match self.store.outbox(&self.tscs.cfg.id) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::error!(member = %self.tscs.cfg.id, error = %e, "reading the outbox failed");
                return 0;
            }
        };
        let mut n = 0;
        for e in entries {
            if let std::collections::hash_map::Entry::Vacant(v) = self.outbox.entry(e.imi.txn) {
                let txn = e.imi.txn;
                match self.shared.adopt(&self.store, &self.tscs.cfg.id, &e) {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::error!(txn = %txn, "an outbox entry's shared content is missing; not resubmitted");
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(txn = %txn, error = %e, "reading shared outbox content failed");
                        continue;
                    }
                }
                v.insert(e);
                // Unsent until logged in.
                self.submit(txn);
                n += 1;
            }
        }
        n
    }

    fn forget_outbox(&mut self, txn: &TxnId) {
        if let Some(entry) = self.outbox.remove(txn) {
            let mut b = WriteBatch::new();
            b.remove(Tree::Outbox, OutboxEntry::key(&self.tscs.cfg.id, txn));
            self.shared.release(&self.tscs.cfg.id, &entry, &mut b);
            self.store.writer().write_nowait(b);
        }
    }

    fn session(&self) -> Result<&SessionPair, ProtocolError> {
        self.tscs.session()
    }

    // ---- originator ----

    fn on_release(&mut self, r: Release) -> Result<(), ProtocolError> {
        self.session()?.verify(|s| frames::check_release(s, &r))?;
        let txn = r.imi.imi.txn;
        let Some(entry) = self.outbox.get(&txn) else {
            tracing::debug!(txn = %txn, "release for a message no longer in the outbox");
            return Ok(());
        };
        let content = self.shared.content_of(entry);
        let ack = frames::make_release_ack(&self.session()?.current, txn, r.imi.attempt);
        self.to_broker(Frame::ReleaseAck(ack));
        if let Some(w) = self.waiting.remove(&txn) {
            let _ = w.send(Ok(Accepted {
                txn,
                route: Some(r.imi.route.clone()),
                held: None,
            }));
        }
        let hop = r
            .imi
            .route
            .processors
            .first()
            .unwrap_or(&r.imi.route.destination)
            .clone();
        // The archive of an archived scope gets the content as sent.
        if let Some(archive) = &r.imi.route.archive {
            match frames::make_transmit(&r, archive, content.clone()) {
                Some(t) => self.send_copy(archive.clone(), Box::new(t)),
                None => {
                    tracing::warn!(txn = %txn, archive = %archive, "release carries no grant for the archive")
                }
            }
        }
        match frames::make_transmit(&r, &hop, content) {
            Some(t) => {
                if !self
                    .members
                    .send(&hop, &self.tscs.cfg.id, Frame::Transmit(Box::new(t)))
                {
                    tracing::warn!(txn = %txn, hop = %hop, "next hop not connected; the broker's attempt timeout moves on");
                }
            }
            None => {
                tracing::warn!(txn = %txn, hop = %hop, "release carries no grant for the first hop")
            }
        }
        Ok(())
    }

    fn on_rejected(&mut self, r: Rejected) -> Result<(), ProtocolError> {
        self.session()?.verify(|s| frames::check_rejected(s, &r))?;
        self.forget_outbox(&r.txn);
        if let Some(w) = self.waiting.remove(&r.txn) {
            let _ = w.send(Err(OriginateError::Rejected(r.reason)));
        }
        Ok(())
    }

    /// Policy holds the message for a reviewer: the content stays in the
    /// outbox (a release or a notification follows); the client is told it
    /// is accepted and held.
    fn on_held(&mut self, h: Held) -> Result<(), ProtocolError> {
        self.session()?.verify(|s| frames::check_held(s, &h))?;
        tracing::info!(txn = %h.txn, reason = %h.reason, "message held for review");
        if let Some(w) = self.waiting.remove(&h.txn) {
            let _ = w.send(Ok(Accepted {
                txn: h.txn,
                route: None,
                held: Some(h.reason),
            }));
        }
        Ok(())
    }

    fn on_notify(&mut self, n: Notify) -> Result<(), ProtocolError> {
        self.session()?.verify(|s| frames::check_notify(s, &n))?;
        let held = self.outbox.get(&n.txn).map(|e| &e.imi);
        let sender_user = held.and_then(|i| i.sender_user.clone());
        let sender = held.map(|i| i.sender.clone());
        let recipient = held.map(|i| i.recipient.to_string());
        // The content stays until the archive has its copy.
        if n.outcome != Outcome::Read && !self.copies.conclude(&n.txn) {
            self.forget_outbox(&n.txn);
        }
        if let Some(r) = &self.receipts {
            r.receipt(Receipt {
                txn: n.txn,
                sender_user,
                sender,
                recipient,
                outcome: n.outcome.clone(),
                via: n.mechanism,
                at_ms: n.at_ms,
            });
        }
        let ack = frames::make_notify_ack(&self.session()?.current, n.txn, n.outcome);
        self.to_broker(Frame::NotifyAck(ack));
        Ok(())
    }

    // ---- destination ----

    fn on_transmit(
        &mut self,
        from: MemberId,
        t: Transmit,
        ctx: &mut Context<Self>,
    ) -> Result<(), ProtocolError> {
        frames::check_transmit(&self.tscs.cfg.id, &self.tscs.cfg.key, &t, self.now())?;
        let txn = t.imi.imi.txn;
        let attempt = t.imi.attempt;
        self.members.send(
            &from,
            &self.tscs.cfg.id,
            Frame::TransmitAck(switchboard_core::protocol::TransmitAck { txn, attempt }),
        );
        if !self.delivering.insert(txn) {
            return Ok(());
        }
        let imi = &t.imi.imi;
        let delivery = Delivery {
            txn,
            attempt,
            id: t.id,
            from: imi
                .sender_user
                .clone()
                .unwrap_or_else(|| imi.sender.to_string()),
            originator: imi.originator.clone(),
            sender: imi.sender.clone(),
            sender_user: imi.sender_user.clone(),
            route: t.imi.route.clone(),
            subject: imi.subject.clone(),
            // A processor on the way may have changed the type.
            content_type: t
                .attestations
                .last()
                .map_or_else(|| imi.content_type.clone(), |a| a.content_type.clone()),
            content: t.content,
            sent_at_ms: imi.created_at_ms,
            attestations: t.attestations.clone(),
            tags: t.imi.tags.clone(),
        };
        let id = t.id;
        let attestations = t.attestations;
        let done = move |res, act: &mut Self, _: &mut Context<Self>| {
            act.delivered(txn, attempt, id, attestations, res);
        };
        let Some(placement) = &mut self.placement else {
            // Not placed: the medium's own future, nothing more (the hot path).
            ctx.spawn(self.medium.deliver(delivery).into_actor(self).map(done));
            return Ok(());
        };
        let fut = match placement.place(delivery) {
            Placed::Here(d, how) => {
                let f = self.medium.deliver(*d);
                Box::pin(async move { f.await.map(|a| a.with_how(how)) })
                    .into_actor(self)
                    .boxed_local()
            }
            // Back from another node that never had it: delivered here.
            Placed::Elsewhere(f) => Box::pin(f)
                .into_actor(self)
                .then(|e, act, _| {
                    let f = match e {
                        Elsewhere::Done(r) => Box::pin(async move { r }),
                        Elsewhere::Back(d, how) => {
                            let f = act.medium.deliver(*d);
                            Box::pin(async move { f.await.map(|a| a.with_how(how)) })
                                as LocalBoxFuture<'static, _>
                        }
                    };
                    f.into_actor(act)
                })
                .boxed_local(),
        };
        ctx.spawn(fut.map(done));
        Ok(())
    }

    /// What the medium made of a delivery: its report to send.
    fn delivered(
        &mut self,
        txn: TxnId,
        attempt: u32,
        id: [u8; 32],
        attestations: Vec<Attestation>,
        res: Result<MediumAck, crate::medium::NonDelivery>,
    ) {
        self.delivering.remove(&txn);
        let status = match res {
            Ok(MediumAck::Delivered) => ReportStatus::Delivered,
            Ok(MediumAck::DeliveredVia(how)) => ReportStatus::DeliveredVia(how),
            Ok(MediumAck::Pending) => {
                tracing::debug!(txn = %txn, "held by the medium; delivery is reported later");
                return;
            }
            Err(e) => {
                tracing::info!(txn = %txn, reason = %e, "non-delivery");
                ReportStatus::NonDelivery(e.0)
            }
        };
        self.send_report(txn, attempt, id, status, attestations);
    }

    /// Sends (and keeps until acknowledged) a report; `attestations` are the
    /// processors' on the way, which a `Delivered` report must carry.
    fn send_report(
        &mut self,
        txn: TxnId,
        attempt: u32,
        id: [u8; 32],
        status: ReportStatus,
        attestations: Vec<Attestation>,
    ) {
        let variant = switchboard_core::protocol::replay::status_variant(&status);
        let pending = MediumReport {
            txn,
            attempt,
            id,
            status: status.clone(),
            attestations: attestations.clone(),
        };
        self.unacked.insert((txn, attempt, variant), pending);
        if let Ok(s) = self.tscs.session() {
            let r = frames::make_report(&s.current, txn, attempt, id, status, attestations);
            self.to_broker(Frame::Report(r));
        }
    }

    fn on_report_ack(&mut self, a: ReportAck) -> Result<(), ProtocolError> {
        self.session()?
            .verify(|s| frames::check_report_ack(s, &a))?;
        // An acknowledgement settles every report of that attempt (one
        // lookup per status, not a scan of everything unacknowledged).
        for v in 0..switchboard_core::protocol::replay::STATUS_VARIANTS {
            self.unacked.remove(&(a.txn, a.attempt, v));
        }
        Ok(())
    }

    fn on_refused(&mut self, from: &MemberId, r: RefuseReason) {
        tracing::warn!(member = %self.tscs.cfg.id, by = %from, reason = r.error.code(), txn = ?r.txn.map(|t| t.to_string()), "frame refused");
        match r.error {
            ProtocolError::NoSession | ProtocolError::SessionExpired | ProtocolError::BadMac
                if self.tscs.is_broker(from) =>
            {
                // Our session is gone or stale: log in again; the outbox and
                // unacknowledged reports are resent after the new LoginAck.
                if let Some(txn) = r.txn.filter(|t| self.outbox.contains_key(t)) {
                    self.unsent.push(txn);
                }
                self.tscs.drop_session();
                self.login();
            }
            _ => self.copy_refused(from, &r),
        }
    }
}

impl<M: Medium> Actor for Gateway<M> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        let inbound = FrameQueue::new();
        inbound.serve(ctx.address().recipient());
        self.inbound = Some(inbound.clone());
        self.members.connect(
            self.tscs.cfg.id.clone(),
            Some(self.medium.kind()),
            inbound,
            self.now(),
        );
        let n = self.read_outbox();
        if n > 0 {
            tracing::info!(member = %self.tscs.cfg.id, count = n, "resubmitting the outbox");
        }
        self.login();
        let renew = self.tscs.renew_every();
        ctx.run_interval(renew, |act, _| act.login());
        self.forget_old_dedupe_keys();
        ctx.run_interval(Duration::from_secs(3600), |act, _| {
            act.forget_old_dedupe_keys()
        });
        ctx.run_interval(Duration::from_secs(2), |act, _| {
            let health = act.medium.health();
            act.members.set_healthy(&act.tscs.cfg.id, health.up);
            act.tell_health(health);
            if !act.tscs.logged_in() {
                act.login();
            }
            act.resend_copies();
        });
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        self.members.disconnect(&self.tscs.cfg.id);
        for (_, w) in self.waiting.drain() {
            let _ = w.send(Err(OriginateError::Stopping));
        }
        Running::Stop
    }
}

impl<M: Medium> Handler<MiapFrame> for Gateway<M> {
    type Result = ();

    fn handle(&mut self, msg: MiapFrame, ctx: &mut Context<Self>) {
        self.frame(msg, ctx);
    }
}

impl<M: Medium> Handler<DrainFrames> for Gateway<M> {
    type Result = ();

    /// Every frame queued for the gateway, in the order they came.
    fn handle(&mut self, _: DrainFrames, ctx: &mut Context<Self>) {
        let Some(q) = self.inbound.clone() else {
            return;
        };
        for m in q.take() {
            self.frame(m, ctx);
        }
    }
}

impl<M: Medium> Gateway<M> {
    /// One frame from a party.
    fn frame(&mut self, msg: MiapFrame, ctx: &mut Context<Self>) {
        let MiapFrame { from, frame } = msg;
        let txn = frame.txn();
        let kind = frame.kind();
        let from_broker = self.tscs.is_broker(&from);
        let result = match frame {
            Frame::LoginAck(a) if from_broker => self.on_login_ack(a),
            Frame::Release(r) if from_broker => self.on_release(*r),
            Frame::Rejected(r) if from_broker => self.on_rejected(r),
            Frame::Held(h) if from_broker => self.on_held(h),
            Frame::Notify(n) if from_broker => self.on_notify(n),
            Frame::ReportAck(a) if from_broker => self.on_report_ack(a),
            Frame::Identity(i) if from_broker => self.on_identity(i),
            Frame::Redirect(r) if from_broker => self.on_redirect(r),
            Frame::Presence(p) if from_broker => self.on_presence(p),
            Frame::Refused(r) => {
                self.on_refused(&from, r);
                Ok(())
            }
            Frame::Transmit(t) => self.on_transmit(from.clone(), *t, ctx),
            Frame::ArchiveCopy(a) if from_broker => self.on_archive_copy(*a),
            Frame::TransmitAck(a) => {
                tracing::trace!(txn = %a.txn, by = %from, "transmit acknowledged");
                self.copy_acked(&from, &a.txn);
                Ok(())
            }
            _ => Err(ProtocolError::WrongParty),
        };
        if let Err(error) = result {
            self.tscs.refuse(&self.members, &from, kind, error, txn);
        }
    }
}

impl<M: Medium> Handler<Originate> for Gateway<M> {
    type Result = ResponseFuture<Result<Accepted, OriginateError>>;

    fn handle(&mut self, m: Originate, _: &mut Context<Self>) -> Self::Result {
        let dedupe = m.dedupe.as_ref().map(|k| self.dedupe_key(k));
        if let Some(k) = &dedupe {
            match self.store.get(Tree::Dedupe, k) {
                Ok(Some(t)) => {
                    let known = std::str::from_utf8(&t)
                        .ok()
                        .and_then(|s| s.parse::<TxnId>().ok());
                    if let Some(txn) = known {
                        return Box::pin(async move { Err(OriginateError::Duplicate(txn)) });
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    let e = e.to_string();
                    return Box::pin(async move { Err(OriginateError::Store(e)) });
                }
            }
        }
        let now = self.now();
        let txn = TxnId::generate(now);
        metrics::counter!("switchboard_messages_received_total", "medium" => self.medium.kind().as_str())
            .increment(1);
        let imi = Imi {
            txn,
            originator: self.tscs.cfg.id.clone(),
            sender: m.sender,
            sender_user: m.sender_user,
            recipient: m.to,
            content_type: m.content_type,
            content_len: m.content.len() as u64,
            content_sha256: sha256(&m.content),
            subject: m.subject,
            priority: m.priority,
            expires_at_ms: now.saturating_add(m.expires_in_ms),
            created_at_ms: now,
            receipt: m.receipt,
            attributes: Vec::new(),
        };
        let mut entry = OutboxEntry {
            imi,
            content: m.content,
        };
        let mut b = WriteBatch::new();
        let shared = self.shared.share(&self.tscs.cfg.id, &mut entry, &mut b);
        b.insert(
            Tree::Outbox,
            OutboxEntry::key(&self.tscs.cfg.id, &txn),
            enc(&entry),
        );
        if let Some(k) = &dedupe {
            // In the same batch as the outbox entry: both or neither. A
            // repeat sees the key at once (a write is visible when it
            // returns).
            b.insert(Tree::Dedupe, k.clone(), txn.to_string().into_bytes());
        }
        let written = match self.store.writer().try_write(b) {
            Ok(p) => p,
            Err(e) => {
                let e = e.to_string();
                return Box::pin(async move { Err(OriginateError::Store(e)) });
            }
        };
        if let Some(shared) = shared {
            self.shared.added(shared);
        }
        self.outbox.insert(txn, entry);
        let (tx, rx) = oneshot::channel();
        self.waiting.insert(txn, tx);
        // Inside the process nothing waits for the disk: the broker has the
        // submit now. The answer leaves the process, so it waits until the
        // journal is durable past the outbox entry and past whatever the
        // broker wrote before answering (its Released record).
        self.submit(txn);
        let store = self.store.clone();
        Box::pin(async move {
            let answer = rx.await.unwrap_or(Err(OriginateError::Stopping));
            let past = store.writer().written().max(written);
            store
                .writer()
                .durable_past(past)
                .await
                .map_err(|e| OriginateError::Store(e.to_string()))?;
            answer
        })
    }
}

impl<M: Medium> Handler<MediumReport> for Gateway<M> {
    type Result = ();

    fn handle(&mut self, m: MediumReport, _: &mut Context<Self>) {
        self.send_report(m.txn, m.attempt, m.id, m.status, m.attestations);
    }
}

impl<M: Medium> Handler<crate::bus::LinkUp> for Gateway<M> {
    type Result = ();

    /// A (new) connection to a remote node: whatever was in flight on the
    /// old one may be lost, so log in again and, once logged in, submit the
    /// whole outbox and every unacknowledged report again (the broker
    /// answers repeats idempotently).
    fn handle(&mut self, _: crate::bus::LinkUp, _: &mut Context<Self>) {
        self.tscs.drop_session();
        self.drop_identify_requests();
        self.unsent = self.outbox.keys().copied().collect();
        self.login();
    }
}

impl<M: Medium> Handler<DeliverHere> for Gateway<M> {
    type Result = ResponseFuture<Result<MediumAck, crate::medium::NonDelivery>>;

    fn handle(&mut self, DeliverHere(d): DeliverHere, _: &mut Context<Self>) -> Self::Result {
        self.medium.deliver(d)
    }
}

impl<M: Medium> Handler<AdoptOutbox> for Gateway<M> {
    type Result = usize;

    fn handle(&mut self, _: AdoptOutbox, _: &mut Context<Self>) -> usize {
        let n = self.read_outbox();
        if n > 0 {
            tracing::info!(member = %self.tscs.cfg.id, count = n, "submitting the outbox entries a takeover adopted");
        }
        n
    }
}

impl<M: Medium> Handler<GetInFlight> for Gateway<M> {
    type Result = MessageResult<GetInFlight>;

    fn handle(&mut self, _: GetInFlight, _: &mut Context<Self>) -> Self::Result {
        MessageResult(InFlight {
            waiting: self.waiting.len(),
            delivering: self.delivering.len(),
            unacked_reports: self.unacked.len(),
            outbox: self.outbox.len(),
            archive_copies: self.copies.len(),
            shared_contents: self.shared.held(),
            logged_in: self.tscs.logged_in(),
        })
    }
}
