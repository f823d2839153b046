//! The `Broker`: N shards, each an actor on its own arbiter, owning the
//! transactions whose id hashes to it. A shard sees only meta information,
//! verifies every frame before it changes state, plans routes with the
//! transaction's delivery manager ([`BrokerShared::plan`]), keeps the
//! transaction's truth in the store, writes accounting, and tells the
//! originator the outcome.
//!
//! Flow per transaction: `Submit` → plan → `Release` per route (one for a
//! sequential manager, several for a parallel one) or `Rejected` →
//! `ReleaseAck` → `Report` (from each destination) → accounting, `ReportAck`,
//! `Notify` → `NotifyAck` → closed. A `NonDelivery` or an attempt timeout
//! releases the next mechanism (attempt + 1); when none is left the outcome
//! is `Undeliverable`; past its expiry a message is `Expired`.

pub mod messages;
pub mod shared;
pub mod watchers;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::bus::presence::MAX_WATCH;
pub use shared::BrokerShared;
use watchers::watcher;
pub use watchers::PresenceRouter;

use crate::accounting::Account;
use crate::bus::MiapFrame;
use crate::bus::{Reported, State, Subscribe};
use switchboard_core::protocol::frames;
use switchboard_core::protocol::frames::RefuseReason;
use switchboard_core::protocol::replay::{status_variant, StepLog};
use switchboard_core::protocol::tscs::Session;
use switchboard_core::protocol::verify::step;
use switchboard_core::protocol::{
    Frame, HealthFrame, Identify, Login, MemberId, NotifyAck, Outcome, PresenceFrame,
    PresenceState, ProtocolError, RejectReason, ReleaseAck, Report, ReportStatus, Route, Submit,
    TxnId, Watch,
};
use switchboard_core::store::records::enc;
use switchboard_core::store::{
    AccountingRecord, AttemptRecord, Store, Tree, TxnRecord, TxnStatus, WriteBatch,
};

/// How often a shard checks attempt deadlines and expiries.
const TIMEOUT_CHECK: Duration = Duration::from_millis(100);

/// One broker shard.
pub struct BrokerShard {
    shared: Arc<BrokerShared>,
    index: usize,
    open: HashMap<TxnId, TxnRecord>,
    steps: StepLog,
    /// `(when, txn, attempt)`: attempt deadlines; attempt 0 is the message's
    /// expiry.
    deadlines: BTreeSet<(u64, TxnId, u32)>,
}

/// Queues a transaction's record for the next group commit.
fn persist(store: &Store, rec: &TxnRecord) {
    let mut b = WriteBatch::new();
    b.insert(Tree::Txn, TxnRecord::key(&rec.imi.txn).to_vec(), enc(rec));
    store.writer().write_nowait(b);
}

impl BrokerShard {
    /// Shard `index` over the shared broker state.
    pub fn new(shared: Arc<BrokerShared>, index: usize) -> Self {
        Self {
            shared,
            index,
            open: HashMap::new(),
            steps: StepLog::default(),
            deadlines: BTreeSet::new(),
        }
    }

    fn refuse(&self, to: &MemberId, error: ProtocolError, txn: Option<TxnId>, kind: &str) {
        self.shared.count_refusal(error);
        tracing::warn!(member = %to, frame = kind, reason = error.code(), txn = ?txn.map(|t| t.to_string()), shard = self.index, "refused MIAP frame");
        self.shared
            .send(to, Frame::Refused(RefuseReason { error, txn }));
    }

    fn now(&self) -> u64 {
        self.shared.deps.clock.now_ms()
    }

    /// Registers the deadlines of an open transaction.
    fn track(&mut self, rec: &TxnRecord) {
        if !rec.status.is_open() {
            return;
        }
        self.deadlines
            .insert((rec.imi.expires_at_ms, rec.imi.txn, 0));
        for a in rec.attempts.iter().filter(|a| a.is_open()) {
            self.deadlines
                .insert((a.deadline_ms, rec.imi.txn, a.attempt));
        }
    }

    /// Drops a transaction from memory (it stays in the store).
    fn forget(&mut self, txn: &TxnId) {
        if let Some(rec) = self.open.remove(txn) {
            self.deadlines.remove(&(rec.imi.expires_at_ms, *txn, 0));
            for a in &rec.attempts {
                self.deadlines.remove(&(a.deadline_ms, *txn, a.attempt));
            }
        }
        self.steps.forget(txn);
    }

    /// The transaction, loading it from the store if this shard does not
    /// hold it (after a restart, or a `Read` long after delivery).
    fn load(&mut self, txn: &TxnId) -> Result<Option<&mut TxnRecord>, ProtocolError> {
        if !self.open.contains_key(txn) {
            match self.shared.deps.store.txn(txn) {
                Ok(Some(rec)) => {
                    self.track(&rec);
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

    /// Queues the transaction's record. Every path persists *before* it
    /// sends anything that depends on the new state, so after a crash no
    /// member holds an answer the store does not.
    fn persist_open(&self, txn: &TxnId) {
        if let Some(rec) = self.open.get(txn) {
            persist(&self.shared.deps.store, rec);
        }
    }

    // ---- TSCS ----

    fn login(&mut self, from: &MemberId, login: Login) -> Result<(), ProtocolError> {
        if &login.member != from {
            return Err(ProtocolError::WrongParty);
        }
        let now = self.now();
        let (ack, session) = self.shared.accept_login(&login, now)?;
        tracing::info!(member = %from, key_id = login.key_id, "member logged in");
        // The session exists before the member can use it: another shard
        // may see the member's next frame before this handler returns.
        self.shared.install_session(session, now);
        self.shared.send(from, Frame::LoginAck(ack));
        Ok(())
    }

    // ---- phase 1 → 2 ----

    fn submit(&mut self, from: &MemberId, sub: Submit) -> Result<(), ProtocolError> {
        let now = self.now();
        let session = self.shared.session(from, now)?;
        let session = session
            .verify(|s| frames::check_submit(s, &sub, now))?
            .clone();
        let txn = sub.imi.txn;
        if let Some(rec) = self.load(&txn)? {
            // A resubmission (lost answer, restart) carries the very same IMI;
            // anything else reusing the id learns nothing about the original.
            if rec.imi != sub.imi {
                return Err(ProtocolError::TxnConflict);
            }
            let rec = rec.clone();
            self.answer_again(from, &session, &rec)?;
            if rec.status.is_final() {
                // Nothing more happens to it here; keep memory for open work.
                self.forget(&txn);
            }
            return Ok(());
        }
        let mut rec = TxnRecord {
            imi: sub.imi,
            status: TxnStatus::Released,
            manager: None,
            attempts: Vec::new(),
            events: Vec::new(),
            closed: false,
        };
        rec.event(now, "submitted");
        match self.shared.plan(&rec.imi, None, &[]) {
            Ok((manager, routes)) => {
                rec.event(now, format!("manager:{}", manager.name));
                rec.manager = Some(manager);
                let mut frames = Vec::new();
                for route in routes {
                    frames.push(self.shared.release(&session, &mut rec, route, now)?);
                }
                persist(&self.shared.deps.store, &rec);
                for f in frames {
                    self.shared.send(from, f);
                }
                self.track(&rec);
                self.open.insert(txn, rec);
            }
            Err(reason) => {
                rec.status = TxnStatus::Rejected(reason.code().into());
                rec.event(now, format!("rejected:{}", reason.code()));
                rec.closed = true;
                persist(&self.shared.deps.store, &rec);
                tracing::info!(txn = %txn, reason = reason.code(), "message rejected");
                metrics::counter!("switchboard_messages_rejected_total", "reason" => reason.code())
                    .increment(1);
                let frame = Frame::Rejected(frames::make_rejected(&session, txn, reason));
                self.shared.send(from, frame);
            }
        }
        Ok(())
    }

    /// Answers a repeated `Submit` from the stored truth.
    fn answer_again(
        &self,
        from: &MemberId,
        session: &Session,
        rec: &TxnRecord,
    ) -> Result<(), ProtocolError> {
        let txn = rec.imi.txn;
        match &rec.status {
            TxnStatus::Released | TxnStatus::Transmitted => {
                for a in rec.attempts.iter().filter(|a| a.is_open()) {
                    let frame = frames::make_release(
                        session,
                        self.shared.deps.directory.ring(),
                        rec.broker_imi(a),
                        a.id,
                    )?;
                    self.shared.send(from, Frame::Release(Box::new(frame)));
                }
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
                    Frame::Rejected(frames::make_rejected(session, txn, reason)),
                );
            }
            final_status => {
                let outcome = outcome_of(final_status);
                let mechanism = rec.deciding_attempt().map(|a| a.route.mechanism);
                let at = rec.events.last().map_or(0, |e| e.at_ms);
                self.shared.send(
                    from,
                    Frame::Notify(frames::make_notify(session, txn, outcome, mechanism, at)),
                );
            }
        }
        Ok(())
    }

    fn release_ack(&mut self, from: &MemberId, ack: ReleaseAck) -> Result<(), ProtocolError> {
        let now = self.now();
        let session = self.shared.session(from, now)?;
        session.verify(|s| frames::check_release_ack(s, &ack))?;
        let rec = self.load(&ack.txn)?.ok_or(ProtocolError::UnknownTxn)?;
        if &rec.imi.originator != from {
            return Err(ProtocolError::WrongParty);
        }
        // Checked and recorded once; it changes nothing stored (the
        // destination's report is the truth).
        let _ = self.steps.admit(ack.txn, step::RELEASE, ack.attempt, 0);
        Ok(())
    }

    // ---- phase 4 ----

    fn report(&mut self, from: &MemberId, r: Report) -> Result<(), ProtocolError> {
        let now = self.now();
        let session_d = self.shared.session(from, now)?;
        let shared = self.shared.clone();
        let rec = self.load(&r.txn)?.ok_or(ProtocolError::UnknownTxn)?;
        // A report is checked against the ID of the attempt it names.
        let attempt = rec.attempt(r.attempt).ok_or(ProtocolError::IdMismatch)?;
        // The destination reports; a processor may report that it stopped
        // the content (blocked, or could not convert it).
        let by_processor = attempt.route.processors.contains(from)
            && matches!(
                r.status,
                ReportStatus::Blocked(_) | ReportStatus::NonDelivery(_)
            );
        if from != &attempt.route.destination && !by_processor {
            return Err(ProtocolError::WrongParty);
        }
        session_d.verify(|s| frames::check_report(s, &r, &attempt.id))?;
        // Delivered content must have passed every processor of the route.
        if r.status == ReportStatus::Delivered {
            frames::check_attestations(
                shared.deps.directory.ring(),
                &rec.broker_imi(attempt),
                &attempt.id,
                &r.attestations,
                now,
            )?;
        }
        let ack = Frame::ReportAck(frames::make_report_ack(
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
        let next = apply_report(rec, r.attempt, &r.status, now);
        let persisted = match next {
            Next::Nothing => false,
            Next::Notify(outcome) => {
                self.conclude(&r.txn, outcome, now);
                true
            }
            Next::Retry => self.retry(&r.txn, now),
        };
        if !persisted {
            self.persist_open(&r.txn);
            // A late or repeated report on a finished message: nothing is
            // pending for it here.
            if self.open.get(&r.txn).is_some_and(|t| t.status.is_final()) {
                self.forget(&r.txn);
            }
        }
        shared.send(from, ack);
        Ok(())
    }

    /// Persists an outcome already applied to the record, then tells
    /// accounting and the originator.
    fn conclude(&mut self, txn: &TxnId, outcome: Outcome, now: u64) {
        let Some(rec) = self.open.get_mut(txn) else {
            return;
        };
        rec.closed = false;
        persist(&self.shared.deps.store, rec);
        if outcome != Outcome::Read {
            self.shared.account(rec, &outcome, now);
        }
        let medium = rec
            .deciding_attempt()
            .map_or("none", |a| a.route.mechanism.as_str());
        tracing::debug!(txn = %txn, outcome = outcome.as_str(), medium, "concluded");
        match &outcome {
            Outcome::Delivered => {
                metrics::counter!("switchboard_messages_delivered_total", "medium" => medium)
                    .increment(1);
                let secs = now.saturating_sub(rec.imi.created_at_ms) as f64 / 1000.0;
                metrics::histogram!("switchboard_delivery_latency_seconds", "medium" => medium)
                    .record(secs);
            }
            Outcome::Read => {}
            failed => {
                metrics::counter!("switchboard_messages_failed_total", "medium" => medium, "outcome" => failed.as_str())
                    .increment(1);
            }
        }
        self.shared.notify(rec, outcome, now);
    }

    /// After a non-delivery or a timeout: wait for attempts still running,
    /// else release the next mechanism, else the message is undeliverable
    /// (or expired). Returns whether it persisted the record.
    fn retry(&mut self, txn: &TxnId, now: u64) -> bool {
        let shared = self.shared.clone();
        let Some(rec) = self.open.get_mut(txn) else {
            return false;
        };
        if !rec.status.is_open() || rec.attempts.iter().any(AttemptRecord::is_open) {
            return false;
        }
        let planned = shared.plan(&rec.imi, rec.manager.as_ref(), &rec.tried());
        let originator = rec.imi.originator.clone();
        let outcome = match (planned, shared.session(&originator, now)) {
            (Ok((_, routes)), Ok(session)) => {
                let mut frames = Vec::new();
                for route in routes {
                    match shared.release(&session.current, rec, route, now) {
                        Ok(f) => frames.push(f),
                        Err(e) => {
                            tracing::error!(txn = %txn, reason = e.code(), "cannot release the next attempt")
                        }
                    }
                }
                persist(&shared.deps.store, rec);
                for f in frames {
                    shared.send(&originator, f);
                }
                let rec = rec.clone();
                self.track(&rec);
                return true;
            }
            (Ok(_), Err(_)) => {
                // The originator is away; it resubmits on reconnect and gets
                // the next release then.
                return false;
            }
            (Err(RejectReason::Expired), _) => {
                rec.status = TxnStatus::Expired;
                Outcome::Expired
            }
            (Err(_), _) => {
                rec.status = TxnStatus::Undeliverable;
                Outcome::Undeliverable
            }
        };
        rec.event(now, outcome.as_str());
        self.conclude(txn, outcome, now);
        true
    }

    /// Applies attempt timeouts and message expiries that are due.
    fn check_timeouts(&mut self) {
        let now = self.now();
        metrics::gauge!("switchboard_broker_open_transactions", "shard" => self.index.to_string())
            .set(self.open.len() as f64);
        while let Some(&(due, txn, attempt)) = self.deadlines.first() {
            if due > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(rec) = self.open.get_mut(&txn) else {
                continue;
            };
            if !rec.status.is_open() {
                continue;
            }
            if attempt == 0 {
                for a in rec.attempts.iter_mut().filter(|a| a.is_open()) {
                    a.outcome = Some("expired".into());
                }
                rec.status = TxnStatus::Expired;
                rec.event(now, "expired");
                tracing::info!(txn = %txn, "message expired");
                self.conclude(&txn, Outcome::Expired, now);
            } else {
                let Some(a) = rec
                    .attempts
                    .iter_mut()
                    .find(|a| a.attempt == attempt && a.is_open())
                else {
                    continue;
                };
                a.outcome = Some("timeout".into());
                let kind = format!("timeout:{}", a.route.mechanism);
                tracing::info!(txn = %txn, attempt, mechanism = %a.route.mechanism, "attempt timed out");
                rec.event(now, kind);
                if !self.retry(&txn, now) {
                    self.persist_open(&txn);
                }
            }
        }
    }

    // ---- phase 5 ----

    fn notify_ack(&mut self, from: &MemberId, ack: NotifyAck) -> Result<(), ProtocolError> {
        let now = self.now();
        let session = self.shared.session(from, now)?;
        session.verify(|s| frames::check_notify_ack(s, &ack))?;
        let rec = self.load(&ack.txn)?.ok_or(ProtocolError::UnknownTxn)?;
        if &rec.imi.originator != from {
            return Err(ProtocolError::WrongParty);
        }
        // Closing is not written back: the stored record already holds the
        // outcome, and a later Read loads it again. That saves a third of the
        // transaction writes.
        if outcome_of(&rec.status) == ack.outcome && rec.status.is_final() {
            rec.closed = true;
            self.forget(&ack.txn);
        }
        Ok(())
    }

    /// Checks a frame `from` signed under its session outside any
    /// transaction: `check(session, now, skew)` against the current or the
    /// previous session. Returns the pair.
    fn verified(
        &self,
        from: &MemberId,
        check: impl Fn(&Session, u64, u64) -> Result<(), ProtocolError>,
    ) -> Result<switchboard_core::protocol::SessionPair, ProtocolError> {
        let now = self.now();
        let session = self.shared.session(from, now)?;
        let skew = self.shared.skew_ms;
        session.verify(|s| check(s, now, skew))?;
        Ok(session)
    }

    /// Only IM gateways in other processes may ask for identities and
    /// watch presence.
    fn session_gateway_only(&self, from: &MemberId) -> Result<(), ProtocolError> {
        if self.shared.deps.members.is_session_gateway(from) {
            Ok(())
        } else {
            Err(ProtocolError::WrongParty)
        }
    }

    fn health(&mut self, from: &MemberId, h: HealthFrame) -> Result<(), ProtocolError> {
        self.verified(from, |s, now, skew| frames::check_health(s, &h, now, skew))?;
        tracing::info!(member = %from, up = h.up, detail = %h.detail, "member health");
        self.shared.deps.members.set_healthy(from, h.up);
        Ok(())
    }

    /// An IM gateway in another process asks whose token a client showed
    /// it; only IM gateways may ask.
    fn identify(&mut self, from: &MemberId, f: Identify) -> Result<(), ProtocolError> {
        let session = self.verified(from, |s, now, skew| {
            frames::check_identify(s, &f, now, skew)
        })?;
        self.session_gateway_only(from)?;
        let user = self
            .shared
            .deps
            .directory
            .authenticate_digest(&f.token_sha256);
        tracing::debug!(member = %from, known = user.is_some(), "identify");
        let contacts = user
            .as_deref()
            .and_then(|u| self.shared.deps.directory.profile(u))
            .map(|p| p.contacts.clone())
            .unwrap_or_default();
        let answer =
            frames::make_identity(&session.current, f.req, &f.token_sha256, user, contacts);
        self.shared.send(from, Frame::Identity(answer));
        Ok(())
    }

    fn presence(&mut self, from: &MemberId, p: PresenceFrame) -> Result<(), ProtocolError> {
        self.verified(from, |s, now, skew| {
            frames::check_presence(s, &p, now, skew)
        })?;
        // From an IM gateway in another process: it holds the user's
        // session, so the user's IM goes there while they are not offline.
        let held = p.state != PresenceState::Offline;
        self.shared.deps.members.hold_session(from, &p.user, held);
        if let Some(presence) = &self.shared.deps.presence_actor {
            let (state, note) = State::from_frame(&p.state);
            presence.do_send(Reported {
                user: p.user,
                state,
                note,
            });
        }
        Ok(())
    }

    /// An IM gateway in another process follows users' presence for its
    /// clients: it is subscribed (as [`watcher`] of itself) and told each
    /// one's state now and at every change.
    fn watch(&mut self, from: &MemberId, w: Watch) -> Result<(), ProtocolError> {
        self.verified(from, |s, now, skew| frames::check_watch(s, &w, now, skew))?;
        self.session_gateway_only(from)?;
        let valid = w.users.len() <= MAX_WATCH
            && w.users
                .iter()
                .all(|u| switchboard_core::directory::profile::valid_user_id(u));
        if !valid {
            return Err(ProtocolError::Malformed);
        }
        if let Some(presence) = &self.shared.deps.presence_actor {
            presence.do_send(Subscribe {
                subscriber: watcher(from),
                users: w.users,
            });
        }
        Ok(())
    }
}

/// What follows a report.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Nothing to tell anyone (a repeated or late report).
    Nothing,
    /// Tell the originator.
    Notify(Outcome),
    /// Try the next mechanism (or wait for the others).
    Retry,
}

/// Applies a verified report on attempt `n` to a transaction. Idempotent: a
/// status the transaction already has changes nothing. A late success (on a
/// timed-out or parallel attempt, even after `undeliverable`) still counts.
fn apply_report(rec: &mut TxnRecord, n: u32, status: &ReportStatus, now: u64) -> Next {
    let open = rec.status.is_open();
    let Some(a) = rec.attempts.iter_mut().find(|a| a.attempt == n) else {
        return Next::Nothing;
    };
    let mechanism = a.route.mechanism;
    let (kind, next, new_status) = match status {
        ReportStatus::Delivered => {
            if a.outcome.as_deref() != Some("read") {
                a.outcome = Some("delivered".into());
                a.reason = None;
            }
            match rec.status {
                TxnStatus::Released
                | TxnStatus::Transmitted
                | TxnStatus::Undeliverable
                | TxnStatus::Expired => (
                    "delivered",
                    Next::Notify(Outcome::Delivered),
                    TxnStatus::Delivered,
                ),
                _ => return Next::Nothing,
            }
        }
        ReportStatus::Read => {
            a.outcome = Some("read".into());
            a.reason = None;
            if rec.status == TxnStatus::Read {
                return Next::Nothing;
            }
            ("read", Next::Notify(Outcome::Read), TxnStatus::Read)
        }
        ReportStatus::NonDelivery(why) if a.is_open() => {
            a.outcome = Some("non_delivery".into());
            a.reason = Some(why.clone());
            if !open {
                return Next::Nothing;
            }
            ("non_delivery", Next::Retry, rec.status.clone())
        }
        ReportStatus::Expired if a.is_open() => {
            a.outcome = Some("expired".into());
            if !open {
                return Next::Nothing;
            }
            ("expired_at_destination", Next::Retry, rec.status.clone())
        }
        ReportStatus::Blocked(rule) if open => {
            a.outcome = Some("blocked".into());
            a.reason = Some(rule.clone());
            (
                "blocked",
                Next::Notify(Outcome::Blocked(rule.clone())),
                TxnStatus::Blocked(rule.clone()),
            )
        }
        _ => return Next::Nothing,
    };
    rec.status = new_status;
    rec.event(now, format!("{kind}:{mechanism}"));
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
        ctx.run_interval(TIMEOUT_CHECK, |act, _| act.check_timeouts());
        tracing::debug!(shard = self.index, "broker shard started");
    }
}

impl Handler<MiapFrame> for BrokerShard {
    type Result = ();

    fn handle(&mut self, msg: MiapFrame, _: &mut Context<Self>) {
        self.shared.dequeued(self.index);
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
            Frame::Health(h) => self.health(&from, h),
            Frame::Identify(f) => self.identify(&from, f),
            Frame::Watch(w) => self.watch(&from, w),
            Frame::Refused(r) => {
                tracing::warn!(member = %from, reason = r.error.code(), txn = ?r.txn.map(|t| t.to_string()), "member refused a frame");
                Ok(())
            }
            _ => Err(ProtocolError::WrongParty),
        };
        if let Err(e) = result {
            self.refuse(&from, e, txn, kind);
        }
    }
}

impl Handler<crate::bus::LinkLogin> for BrokerShard {
    type Result = ();

    /// A login on a TCP link: on success the link becomes the member's way
    /// in (then `LoginAck`); a failed one is answered on the link alone.
    fn handle(&mut self, m: crate::bus::LinkLogin, _: &mut Context<Self>) {
        let crate::bus::LinkLogin {
            login,
            link,
            link_id,
            medium,
        } = m;
        let now = self.now();
        let member = login.member.clone();
        match self.shared.accept_login(&login, now) {
            Ok((ack, session)) => {
                self.shared
                    .deps
                    .members
                    .attach_link(member.clone(), medium, link, link_id, now);
                tracing::info!(member = %member, key_id = login.key_id, link = link_id, "member logged in over a link");
                self.shared.install_session(session, now);
                self.shared.send(&member, Frame::LoginAck(ack));
            }
            Err(error) => {
                self.shared.count_refusal(error);
                tracing::warn!(member = %member, reason = error.code(), link = link_id, "refused a login on a link");
                link.do_send(MiapFrame {
                    from: self.shared.id.clone(),
                    frame: Frame::Refused(RefuseReason { error, txn: None }),
                });
            }
        }
    }
}

impl Handler<crate::bus::MemberBack> for BrokerShard {
    type Result = ();

    /// A member is back on a new connection: every open attempt routed
    /// through it is released again to its originator, which transmits
    /// again (what the old connection carried may be lost).
    fn handle(&mut self, m: crate::bus::MemberBack, _: &mut Context<Self>) {
        let now = self.now();
        let member = m.0;
        let mut again = 0;
        for rec in self.open.values() {
            let through = |a: &switchboard_core::store::records::AttemptRecord| {
                a.is_open()
                    && (a.route.destination == member || a.route.processors.contains(&member))
            };
            if !rec.status.is_open() || !rec.attempts.iter().any(through) {
                continue;
            }
            let originator = &rec.imi.originator;
            let Ok(pair) = self.shared.session(originator, now) else {
                continue;
            };
            for a in rec.attempts.iter().filter(|a| through(a)) {
                match frames::make_release(
                    &pair.current,
                    self.shared.deps.directory.ring(),
                    rec.broker_imi(a),
                    a.id,
                ) {
                    Ok(frame) => {
                        self.shared
                            .send(originator, Frame::Release(Box::new(frame)));
                        again += 1;
                    }
                    Err(e) => {
                        tracing::warn!(txn = %rec.imi.txn, reason = e.code(), "cannot release again")
                    }
                }
            }
        }
        if again > 0 {
            tracing::info!(member = %member, attempts = again, "member back: open attempts released again");
        }
    }
}

impl Handler<messages::OpenTransactions> for BrokerShard {
    type Result = usize;

    fn handle(&mut self, _: messages::OpenTransactions, _: &mut Context<Self>) -> usize {
        self.open.len()
    }
}

impl Handler<messages::CheckTimeouts> for BrokerShard {
    type Result = ();

    fn handle(&mut self, _: messages::CheckTimeouts, _: &mut Context<Self>) {
        self.check_timeouts();
    }
}

impl BrokerShared {
    /// Releases one attempt of `rec` on `route`: computes the attempt's `ID`,
    /// records the attempt with its deadline, and returns the `Release` for
    /// the originator. The caller persists the record, then sends it.
    fn release(
        &self,
        session: &Session,
        rec: &mut TxnRecord,
        route: Route,
        now: u64,
    ) -> Result<Frame, ProtocolError> {
        let attempt = rec.attempts.len() as u32 + 1;
        let timeout_ms = rec
            .manager
            .as_ref()
            .map_or(60_000, |m| m.config.attempt_timeout_s * 1000);
        let bimi = switchboard_core::protocol::BrokerImi {
            imi: rec.imi.clone(),
            route,
            attempt,
            tags: Vec::new(),
        };
        let id = frames::inner_id(&self.deps.k2, session, &bimi);
        let route = bimi.route.clone();
        let frame = frames::make_release(session, self.deps.directory.ring(), bimi, id)?;
        tracing::debug!(txn = %rec.imi.txn, attempt, mechanism = %route.mechanism, destination = %route.destination, store_and_forward = route.store_and_forward, "released");
        rec.event(now, format!("released:{}", route.mechanism));
        metrics::counter!("switchboard_messages_released_total", "medium" => route.mechanism.as_str())
            .increment(1);
        rec.attempts.push(AttemptRecord {
            attempt,
            route,
            id,
            started_ms: now,
            deadline_ms: now.saturating_add(timeout_ms),
            outcome: None,
            reason: None,
        });
        rec.status = TxnStatus::Released;
        Ok(Frame::Release(Box::new(frame)))
    }

    fn account(&self, rec: &TxnRecord, outcome: &Outcome, now: u64) {
        let Some(a) = rec.deciding_attempt() else {
            return;
        };
        self.deps.accounting.do_send(Account(AccountingRecord {
            txn: rec.imi.txn,
            sender: sender_name(rec),
            recipient: rec.imi.recipient.to_string(),
            medium: a.route.mechanism,
            gateway: a.route.destination.clone(),
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
                let mechanism = rec
                    .attempts
                    .iter()
                    .find(|a| a.succeeded())
                    .map(|a| a.route.mechanism);
                let n = frames::make_notify(&s.current, rec.imi.txn, outcome, mechanism, now);
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
