//! The `Broker`: N shards, each an actor on its own arbiter, owning the
//! transactions whose id hashes to it. A shard sees only meta information,
//! verifies every frame before it changes state, decides the route
//! ([`route`]), keeps the transaction's truth in the store, writes accounting,
//! and tells the originator the outcome.
//!
//! Flow per transaction: `Submit` → route → `Release` (or `Rejected`) →
//! `ReleaseAck` → … → `Report` (from the destination) → accounting,
//! `ReportAck`, `Notify` → `NotifyAck` → closed. `NonDelivery` releases the
//! next mechanism (attempt + 1) until none is left.

pub mod messages;
pub mod route;
pub mod shared;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

pub use shared::BrokerShared;

use crate::accounting::Account;
use crate::members::MiapFrame;
use crate::protocol::frames::RefuseReason;
use crate::protocol::verify::{self, status_variant, step, StepLog};
use crate::protocol::{
    Frame, Login, MediumKind, MemberId, NotifyAck, Outcome, PresenceFrame, ProtocolError,
    RejectReason, ReleaseAck, Report, ReportStatus, Route, Submit, TxnId,
};
use crate::store::records::enc;
use crate::store::{
    AccountingRecord, AttemptRecord, EventRecord, Tree, TxnRecord, TxnStatus, WriteBatch,
};

/// One broker shard.
pub struct BrokerShard {
    shared: Arc<BrokerShared>,
    index: usize,
    open: HashMap<TxnId, TxnRecord>,
    steps: StepLog,
}

impl BrokerShard {
    /// Shard `index` over the shared broker state.
    pub fn new(shared: Arc<BrokerShared>, index: usize) -> Self {
        Self {
            shared,
            index,
            open: HashMap::new(),
            steps: StepLog::default(),
        }
    }

    fn refuse(&self, to: &MemberId, error: ProtocolError, txn: Option<TxnId>, kind: &str) {
        self.shared.count_refusal(error);
        tracing::warn!(member = %to, frame = kind, reason = error.code(), txn = ?txn.map(|t| t.to_string()), shard = self.index, "refused MIAP frame");
        self.shared
            .send(to, Frame::Refused(RefuseReason { error, txn }));
    }

    fn now(&self) -> u64 {
        self.shared.clock.now_ms()
    }

    /// The open transaction, loading it from the store if this shard does not
    /// hold it (after a restart, or a `Read` long after delivery).
    fn load(&mut self, txn: &TxnId) -> Result<Option<&mut TxnRecord>, ProtocolError> {
        if !self.open.contains_key(txn) {
            match self.shared.store.txn(txn) {
                Ok(Some(rec)) => {
                    self.open.insert(*txn, rec);
                }
                Ok(None) => return Ok(None),
                Err(e) => {
                    tracing::error!(txn = %txn, error = %e, "reading a transaction failed");
                    return Err(ProtocolError::UnknownTxn);
                }
            }
        }
        Ok(self.open.get_mut(txn))
    }

    fn persist(&self, rec: &TxnRecord) {
        persist(&self.shared.store, rec);
    }

    // ---- TSCS ----

    fn login(&mut self, from: &MemberId, login: Login) -> Result<(), ProtocolError> {
        if &login.member != from {
            return Err(ProtocolError::WrongParty);
        }
        let now = self.now();
        let (ack, session) = self.shared.accept_login(&login, now)?;
        tracing::info!(member = %from, key_id = login.key_id, "member logged in");
        self.shared.send(from, Frame::LoginAck(ack));
        self.shared.install_session(session, now);
        Ok(())
    }

    // ---- phase 1 → 2 ----

    fn submit(&mut self, from: &MemberId, sub: Submit) -> Result<(), ProtocolError> {
        let now = self.now();
        let session = self.shared.session(from, now)?;
        let session = session
            .verify(|s| verify::check_submit(s, &sub, now))?
            .clone();
        let txn = sub.imi.txn;
        if let Some(rec) = self.load(&txn)? {
            // A resubmission (lost answer, restart) carries the very same IMI;
            // anything else reusing the id learns nothing about the original.
            if rec.imi != sub.imi {
                return Err(ProtocolError::TxnConflict);
            }
            // Answer again, change nothing.
            let rec = rec.clone();
            if rec.status.is_final() {
                // Nothing more happens to it here; keep memory for open work.
                self.open.remove(&txn);
            }
            return self.answer_again(from, &session, &rec);
        }
        let mut rec = TxnRecord {
            imi: sub.imi,
            status: TxnStatus::Released,
            release: None,
            attempts: Vec::new(),
            events: vec![EventRecord {
                at_ms: now,
                kind: "submitted".into(),
            }],
            closed: false,
        };
        match self.shared.decide(&rec.imi, &[]) {
            Ok(route) => self.shared.release(from, &session, &mut rec, route, now)?,
            Err(reason) => {
                rec.status = TxnStatus::Rejected(reason.code().into());
                rec.events.push(EventRecord {
                    at_ms: now,
                    kind: format!("rejected:{}", reason.code()),
                });
                rec.closed = true;
                self.persist(&rec);
                tracing::info!(txn = %txn, reason = reason.code(), "message rejected");
                self.shared.send(
                    from,
                    Frame::Rejected(verify::make_rejected(&session, txn, reason)),
                );
                // Stored and final: a resubmission loads it again.
                return Ok(());
            }
        }
        self.open.insert(txn, rec);
        Ok(())
    }

    /// Answers a repeated `Submit` from the stored truth.
    fn answer_again(
        &self,
        from: &MemberId,
        session: &crate::protocol::tscs::Session,
        rec: &TxnRecord,
    ) -> Result<(), ProtocolError> {
        let txn = rec.imi.txn;
        match &rec.status {
            TxnStatus::Released | TxnStatus::Transmitted => {
                let (bimi, id) = rec.release.clone().ok_or(ProtocolError::UnknownTxn)?;
                let frame = verify::make_release(session, self.shared.directory.ring(), bimi, id)?;
                self.shared.send(from, Frame::Release(Box::new(frame)));
            }
            TxnStatus::Rejected(code) => {
                let reason = match code.as_str() {
                    "unknown_recipient" => RejectReason::UnknownRecipient,
                    "no_mechanism" => RejectReason::NoMechanism,
                    "expired" => RejectReason::Expired,
                    other => RejectReason::PolicyDenied(other.to_string()),
                };
                self.shared.send(
                    from,
                    Frame::Rejected(verify::make_rejected(session, txn, reason)),
                );
            }
            final_status => {
                let outcome = outcome_of(final_status);
                let mechanism = rec.release.as_ref().map(|(b, _)| b.route.mechanism);
                let at = rec.events.last().map_or(0, |e| e.at_ms);
                self.shared.send(
                    from,
                    Frame::Notify(verify::make_notify(session, txn, outcome, mechanism, at)),
                );
            }
        }
        Ok(())
    }

    fn release_ack(&mut self, from: &MemberId, ack: ReleaseAck) -> Result<(), ProtocolError> {
        let now = self.now();
        let session = self.shared.session(from, now)?;
        session.verify(|s| verify::check_release_ack(s, &ack))?;
        let rec = self.load(&ack.txn)?.ok_or(ProtocolError::UnknownTxn)?;
        if &rec.imi.originator != from {
            return Err(ProtocolError::WrongParty);
        }
        if self
            .steps
            .admit(ack.txn, step::RELEASE, ack.attempt, 0)
            .is_ok()
        {
            let rec = self
                .open
                .get_mut(&ack.txn)
                .ok_or(ProtocolError::UnknownTxn)?;
            rec.events.push(EventRecord {
                at_ms: now,
                kind: "release_acked".into(),
            });
        }
        Ok(())
    }

    // ---- phase 4 ----

    fn report(&mut self, from: &MemberId, r: Report) -> Result<(), ProtocolError> {
        let now = self.now();
        let session_d = self.shared.session(from, now)?;
        let shared = self.shared.clone();
        let rec = self.load(&r.txn)?.ok_or(ProtocolError::UnknownTxn)?;
        let (bimi, id) = rec.release.clone().ok_or(ProtocolError::UnknownTxn)?;
        if r.attempt != bimi.attempt {
            // A report on a superseded attempt: its ID is not the stored one.
            return Err(ProtocolError::IdMismatch);
        }
        if from != &bimi.route.destination {
            return Err(ProtocolError::WrongParty);
        }
        session_d.verify(|s| verify::check_report(s, &r, &id))?;
        verify::check_attestations(shared.directory.ring(), &bimi, &id, &r.attestations, now)?;
        let ack = Frame::ReportAck(verify::make_report_ack(
            &session_d.current,
            r.txn,
            r.attempt,
        ));
        if self
            .steps
            .admit(r.txn, step::REPORT, r.attempt, status_variant(&r.status))
            .is_err()
        {
            // The same report again (lost ReportAck): acknowledge, change nothing.
            shared.send(from, ack);
            return Ok(());
        }
        let rec = self.open.get_mut(&r.txn).ok_or(ProtocolError::UnknownTxn)?;
        let next = apply_report(rec, &r.status, now);
        shared.send(from, ack);
        match next {
            Next::Nothing => self.persist_open(&r.txn),
            Next::Notify(outcome) => {
                let rec = &self.open[&r.txn];
                self.persist(rec);
                if outcome != Outcome::Read {
                    shared.account(rec, &outcome, now);
                }
                shared.notify(rec, outcome, now);
            }
            Next::Retry => self.retry(&r.txn, now)?,
        }
        Ok(())
    }

    fn persist_open(&self, txn: &TxnId) {
        if let Some(rec) = self.open.get(txn) {
            self.persist(rec);
        }
    }

    /// After a non-delivery: the next mechanism, or `Undeliverable`.
    fn retry(&mut self, txn: &TxnId, now: u64) -> Result<(), ProtocolError> {
        let shared = self.shared.clone();
        let rec = self.open.get_mut(txn).ok_or(ProtocolError::UnknownTxn)?;
        let tried: Vec<MediumKind> = rec.attempts.iter().map(|a| a.mechanism).collect();
        let expired = now > rec.imi.expires_at_ms;
        let route = if expired {
            Err(RejectReason::Expired)
        } else {
            shared.decide(&rec.imi, &tried)
        };
        let originator = rec.imi.originator.clone();
        match (route, shared.session(&originator, now)) {
            (Ok(route), Ok(session)) => {
                shared.release(&originator, &session.current, rec, route, now)
            }
            (Ok(_), Err(_)) => {
                // The originator is away; it resubmits on reconnect and gets
                // the next release then.
                persist(&shared.store, rec);
                Ok(())
            }
            (Err(reason), _) => {
                let (status, outcome) = if reason == RejectReason::Expired {
                    (TxnStatus::Expired, Outcome::Expired)
                } else {
                    (TxnStatus::Undeliverable, Outcome::Undeliverable)
                };
                rec.status = status;
                rec.events.push(EventRecord {
                    at_ms: now,
                    kind: outcome.as_str().into(),
                });
                let rec = &self.open[txn];
                self.persist(rec);
                shared.account(rec, &outcome, now);
                shared.notify(rec, outcome, now);
                Ok(())
            }
        }
    }

    // ---- phase 5 ----

    fn notify_ack(&mut self, from: &MemberId, ack: NotifyAck) -> Result<(), ProtocolError> {
        let now = self.now();
        let session = self.shared.session(from, now)?;
        session.verify(|s| verify::check_notify_ack(s, &ack))?;
        let rec = self.load(&ack.txn)?.ok_or(ProtocolError::UnknownTxn)?;
        if &rec.imi.originator != from {
            return Err(ProtocolError::WrongParty);
        }
        if !rec.closed && outcome_of(&rec.status) == ack.outcome {
            rec.closed = true;
            rec.events.push(EventRecord {
                at_ms: now,
                kind: "closed".into(),
            });
            let rec = rec.clone();
            self.persist(&rec);
        }
        // Closed or not, the shard no longer needs the record in memory: a
        // later Read report loads it again.
        if self.open.get(&ack.txn).is_some_and(|r| r.status.is_final()) {
            self.open.remove(&ack.txn);
            self.steps.forget(&ack.txn);
        }
        Ok(())
    }

    fn presence(&mut self, from: &MemberId, p: PresenceFrame) -> Result<(), ProtocolError> {
        let now = self.now();
        let session = self.shared.session(from, now)?;
        let skew = self.shared.skew_ms;
        session.verify(|s| verify::check_presence(s, &p, now, skew))?;
        self.shared
            .presence
            .insert(p.user.clone(), (p.state, p.ts_ms));
        Ok(())
    }
}

/// Queues a transaction's record for the next group commit.
fn persist(store: &crate::store::Store, rec: &TxnRecord) {
    let mut b = WriteBatch::new();
    b.insert(Tree::Txn, TxnRecord::key(&rec.imi.txn).to_vec(), enc(rec));
    store.writer().write_nowait(b);
}

/// What follows a report.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Nothing to tell anyone (a repeated or late report).
    Nothing,
    /// Tell the originator.
    Notify(Outcome),
    /// Try the next mechanism.
    Retry,
}

/// Applies a verified report to a transaction. Idempotent: a status the
/// transaction already has changes nothing.
fn apply_report(rec: &mut TxnRecord, status: &ReportStatus, now: u64) -> Next {
    let open = matches!(rec.status, TxnStatus::Released | TxnStatus::Transmitted);
    let attempt = rec.attempts.last_mut();
    let (outcome_name, reason, next, new_status) = match status {
        ReportStatus::Delivered if open => (
            "delivered",
            None,
            Next::Notify(Outcome::Delivered),
            TxnStatus::Delivered,
        ),
        ReportStatus::Read if open || rec.status == TxnStatus::Delivered => {
            ("read", None, Next::Notify(Outcome::Read), TxnStatus::Read)
        }
        ReportStatus::NonDelivery(why) if open => (
            "non_delivery",
            Some(why.clone()),
            Next::Retry,
            rec.status.clone(),
        ),
        ReportStatus::Blocked(rule) if open => (
            "blocked",
            Some(rule.clone()),
            Next::Notify(Outcome::Blocked(rule.clone())),
            TxnStatus::Blocked(rule.clone()),
        ),
        ReportStatus::Expired if open => (
            "expired",
            None,
            Next::Notify(Outcome::Expired),
            TxnStatus::Expired,
        ),
        _ => return Next::Nothing,
    };
    if let Some(a) = attempt {
        if a.outcome.as_deref() != Some("delivered") || outcome_name != "read" {
            a.outcome = Some(outcome_name.to_string());
            a.reason = reason;
        }
    }
    rec.status = new_status;
    rec.closed = false;
    rec.events.push(EventRecord {
        at_ms: now,
        kind: outcome_name.to_string(),
    });
    next
}

/// The outcome a final status is notified as.
fn outcome_of(status: &TxnStatus) -> Outcome {
    match status {
        TxnStatus::Read => Outcome::Read,
        TxnStatus::Undeliverable | TxnStatus::Rejected(_) => Outcome::Undeliverable,
        TxnStatus::Blocked(r) => Outcome::Blocked(r.clone()),
        TxnStatus::Expired => Outcome::Expired,
        TxnStatus::Delivered | TxnStatus::Released | TxnStatus::Transmitted => Outcome::Delivered,
    }
}

impl Actor for BrokerShard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        tracing::debug!(shard = self.index, "broker shard started");
    }
}

impl Handler<MiapFrame> for BrokerShard {
    type Result = ();

    fn handle(&mut self, msg: MiapFrame, _: &mut Context<Self>) {
        let MiapFrame { from, frame } = msg;
        let txn = frame.txn();
        let kind = frame.kind();
        let result = match frame {
            Frame::Login(l) => self.login(&from, l),
            Frame::Submit(s) => self.submit(&from, s),
            Frame::ReleaseAck(a) => self.release_ack(&from, a),
            Frame::Report(r) => self.report(&from, r),
            Frame::NotifyAck(a) => self.notify_ack(&from, a),
            Frame::Presence(p) => self.presence(&from, p),
            Frame::Refused(r) => {
                tracing::warn!(member = %from, reason = r.error.code(), txn = ?r.txn.map(|t| t.to_string()), "member refused a broker frame");
                Ok(())
            }
            _ => Err(ProtocolError::WrongParty),
        };
        if let Err(e) = result {
            self.refuse(&from, e, txn, kind);
        }
    }
}

impl Handler<messages::OpenTransactions> for BrokerShard {
    type Result = usize;

    fn handle(&mut self, _: messages::OpenTransactions, _: &mut Context<Self>) -> usize {
        self.open.len()
    }
}

impl BrokerShared {
    /// Releases the next attempt of `rec` on `route` to its originator:
    /// computes and stores `ID`, records the attempt, sends the `Release`.
    fn release(
        &self,
        originator: &MemberId,
        session: &crate::protocol::tscs::Session,
        rec: &mut TxnRecord,
        route: Route,
        now: u64,
    ) -> Result<(), ProtocolError> {
        let attempt = rec.attempts.len() as u32 + 1;
        let bimi = crate::protocol::BrokerImi {
            imi: rec.imi.clone(),
            route,
            attempt,
            tags: Vec::new(),
        };
        let id = verify::inner_id(&self.k2, session, &bimi);
        let frame = verify::make_release(session, self.directory.ring(), bimi.clone(), id)?;
        rec.attempts.push(AttemptRecord {
            attempt,
            mechanism: bimi.route.mechanism,
            address: bimi.route.address.clone(),
            gateway: bimi.route.destination.clone(),
            started_ms: now,
            outcome: None,
            reason: None,
        });
        rec.events.push(EventRecord {
            at_ms: now,
            kind: format!("released:{}", bimi.route.mechanism),
        });
        tracing::debug!(txn = %rec.imi.txn, attempt, mechanism = %bimi.route.mechanism, destination = %bimi.route.destination, "released");
        rec.release = Some((bimi, id));
        rec.status = TxnStatus::Released;
        persist(&self.store, rec);
        self.send(originator, Frame::Release(Box::new(frame)));
        Ok(())
    }

    fn account(&self, rec: &TxnRecord, outcome: &Outcome, now: u64) {
        let (medium, gateway) = rec
            .release
            .as_ref()
            .map(|(b, _)| (b.route.mechanism, b.route.destination.clone()))
            .unwrap_or((MediumKind::Im, MemberId::new("")));
        self.accounting.do_send(Account(AccountingRecord {
            txn: rec.imi.txn,
            sender: sender_name(rec),
            recipient: rec.imi.recipient.to_string(),
            medium,
            gateway,
            bytes: rec.imi.content_len,
            outcome: outcome.as_str().into(),
            attempts: rec.attempts.len() as u32,
            at_ms: now,
        }));
    }

    fn notify(&self, rec: &TxnRecord, outcome: Outcome, now: u64) {
        let origin = &rec.imi.originator;
        match self.session(origin, now) {
            Ok(s) => {
                let mechanism = rec.release.as_ref().map(|(b, _)| b.route.mechanism);
                let n = verify::make_notify(&s.current, rec.imi.txn, outcome, mechanism, now);
                self.send(origin, Frame::Notify(n));
            }
            Err(_) => {
                tracing::info!(txn = %rec.imi.txn, member = %origin, "originator away; it learns the outcome when it resubmits");
            }
        }
    }
}

/// The sender as shown to users: their user id, else their address.
pub fn sender_name(rec: &TxnRecord) -> String {
    rec.imi
        .sender_user
        .clone()
        .unwrap_or_else(|| rec.imi.sender.to_string())
}
