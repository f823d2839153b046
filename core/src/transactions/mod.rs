//! The broker's transaction logic as a plain state machine: frames in
//! (`Submit`, `ReleaseAck`, `Report`, `NotifyAck`), time in (attempt
//! timeouts, expiry), a member back on a new connection in — and out the
//! frames to send, the records to persist and the usage to account
//! ([`Effects`]). What it needs to know of the rest of the broker (sessions,
//! keys, stored records, routes) it asks an [`Env`].
//!
//! Flow per transaction: `Submit` → plan → `Release` per route (one for a
//! sequential manager, several for a parallel one) or `Rejected` →
//! `ReleaseAck` → `Report` (from each destination) → accounting,
//! `ReportAck`, `Notify` → `NotifyAck` → closed. A `NonDelivery` or an
//! attempt timeout releases the next mechanism (attempt + 1); when none is
//! left the outcome is `Undeliverable`; past its expiry a message is
//! `Expired`. A repeated frame is answered again and changes nothing.
//! Enterprise policy may hold a message for a reviewer (`Held` instead of
//! a `Release`, or a filter's `Quarantined` report) until [`Transactions::review`]
//! releases or rejects it.
//!
//! Owns: the transactions one broker shard holds in memory, their step log
//! and their deadlines. Must not touch: actors, the store's writer, the
//! network — the caller carries out the [`Effects`], records first.

mod admit;
mod answers;
mod decide;
mod review;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};

use crate::policy::ManagerChoice;
use crate::protocol::frames;
use crate::protocol::replay::{status_variant, StepLog};
use crate::protocol::verify::step;
use crate::protocol::{
    Frame, Imi, KeyRing, MediumKind, MemberId, NotifyAck, Outcome, ProtocolError, RejectReason,
    ReleaseAck, Report, ReportStatus, Route, SecretKey, SessionPair, Submit, TxnId,
};
use crate::store::records::{Saved, TxnWrite};
use crate::store::{AccountingRecord, AttemptRecord, StoreError, TxnRecord, TxnStatus};

use admit::{plan_admitted, Refusal};
use answers::{account, answer_again, notify, release};
use decide::{apply_report, outcome_of, Next};
use review::hold;
pub use review::{Review, ReviewError};

/// What the machine asks of the broker around it.
pub trait Env {
    /// Now, ms since the epoch.
    fn now_ms(&self) -> u64;

    /// `member`'s current and previous session.
    ///
    /// # Errors
    /// [`ProtocolError::NoSession`], [`ProtocolError::SessionExpired`],
    /// [`ProtocolError::Revoked`].
    fn session(&self, member: &MemberId, now_ms: u64) -> Result<SessionPair, ProtocolError>;

    /// Members' keys (grants, attestations).
    fn ring(&self) -> &KeyRing;

    /// The broker key `K2` (the inner digest `ID`).
    fn k2(&self) -> &SecretKey;

    /// A transaction's stored record (after a restart, or a `Read` long
    /// after delivery).
    ///
    /// # Errors
    /// When the store fails.
    fn stored(&self, txn: &TxnId) -> Result<Option<TxnRecord>, StoreError>;

    /// The route decision for a message that has not expired: the manager
    /// (`manager`, which a transaction keeps, or the recipient's choice)
    /// and the routes of the next dispatch, skipping `tried`.
    ///
    /// # Errors
    /// Why no route exists.
    fn plan(
        &self,
        imi: &Imi,
        manager: Option<&ManagerChoice>,
        tried: &[MediumKind],
    ) -> Result<(ManagerChoice, Vec<Route>), RejectReason>;

    /// The archive member that takes a copy of each delivery of an archived
    /// scope, while it is live. By default there is none.
    fn archive_member(&self) -> Option<MemberId> {
        None
    }

    /// Points `route` where a `redirect` rule says (`to`: a gateway member
    /// of the route's medium, or a node of the cluster that places its
    /// delivery). `None` when `to` cannot take the route now (the
    /// mechanism is skipped). By default nothing can be redirected.
    fn redirect(&self, _route: &mut Route, _to: &str) -> Option<Redirected> {
        None
    }

    /// The meta stage of enterprise policy for `imi` going over `medium`
    /// (`None`: whatever the medium). Must not block: the broker reads a
    /// snapshot. By default nothing is ruled.
    fn admit(&self, _imi: &Imi, _medium: Option<MediumKind>) -> crate::policy::Decision {
        crate::policy::Decision::allow()
    }
}

/// What a step decided, for the caller to carry out in this order: persist
/// the records, then account, then send the frames — so after a crash no
/// member holds an answer the store does not.
#[derive(Debug, Default)]
pub struct Effects {
    /// Transaction records to persist, by txn, in order: the whole record
    /// the first time, then what changed ([`TxnWrite`]).
    pub records: Vec<(TxnId, TxnWrite)>,
    /// Usage to account, each with the index in `records` of the write
    /// that concluded it (the record it is made from, as that write left
    /// it: the writer may journal the usage as part of that write).
    pub accounting: Vec<(usize, AccountingRecord)>,
    /// Frames to send: `(to, frame)`.
    pub frames: Vec<(MemberId, Frame)>,
    /// Notices of enterprise policy to users (sent after the records).
    pub notices: Vec<Notice>,
    /// Concluded transactions of an archived scope, for the archive (sent
    /// after the records).
    pub archived: Vec<TxnRecord>,
}

/// A notice of enterprise policy for a user, from the system sender: a
/// supervisor told of a message (meta information only, never content),
/// a sender warned, a domain's banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The user it is for.
    pub to: String,
    /// Its text.
    pub text: String,
    /// Sent at most once a day per this (sender, recipient) conversation.
    pub once_per: Option<(String, String)>,
}

impl Notice {
    /// Supervisor `sup` told that a message matched `rules` — who, to whom,
    /// the priority and the txn, never the content or the subject.
    pub fn for_supervisor(
        sup: &str,
        from: &str,
        to: &str,
        priority: crate::protocol::Priority,
        rules: &[&str],
        txn: TxnId,
    ) -> Self {
        Self {
            to: sup.to_string(),
            text: format!(
                "Policy notice: a message from {from} to {to} ({} priority) matched {}; transaction {txn}.",
                priority.as_str(),
                rules.join(", ")
            ),
            once_per: None,
        }
    }
}

impl Effects {
    fn persist(&mut self, rec: &mut TxnRecord) {
        self.records.push((rec.imi.txn, rec.to_write()));
    }

    fn send(&mut self, to: &MemberId, frame: Frame) {
        self.frames.push((to.clone(), frame));
    }

    /// Usage made from the record as the last write left it.
    fn account(&mut self, a: AccountingRecord) {
        self.accounting
            .push((self.records.len().saturating_sub(1), a));
    }

    /// Whether nothing is to be done.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.accounting.is_empty()
            && self.frames.is_empty()
            && self.notices.is_empty()
            && self.archived.is_empty()
    }
}

/// The transactions of one broker shard.
#[derive(Debug, Default)]
pub struct Transactions {
    open: HashMap<TxnId, TxnRecord>,
    steps: StepLog,
    /// `(when, txn, attempt)`: attempt deadlines; attempt 0 is the message's
    /// expiry.
    deadlines: BTreeSet<(u64, TxnId, u32)>,
}

impl Transactions {
    /// No transactions.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many transactions are held in memory (open work, and finished
    /// ones whose originator has not acknowledged the outcome).
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
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

    /// The transaction, loaded from the store if it is not held.
    fn load(
        &mut self,
        env: &dyn Env,
        txn: &TxnId,
    ) -> Result<Option<&mut TxnRecord>, ProtocolError> {
        if !self.open.contains_key(txn) {
            match env.stored(txn) {
                Ok(Some(mut rec)) => {
                    rec.mark_saved();
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

    // ---- phase 1 → 2 ----

    /// A `Submit` from `from`: a new message is planned and released (or
    /// rejected); a resubmission with the very same IMI is answered from
    /// the record again.
    ///
    /// # Errors
    /// The check that failed; nothing changed then.
    pub fn submit(
        &mut self,
        env: &dyn Env,
        out: &mut Effects,
        from: &MemberId,
        sub: Submit,
    ) -> Result<(), ProtocolError> {
        let now = env.now_ms();
        let pair = env.session(from, now)?;
        let session = pair.verify(|s| frames::check_submit(s, &sub, now))?;
        let txn = sub.imi.txn;
        if let Some(rec) = self.load(env, &txn)? {
            // A resubmission (lost answer, restart) carries the very same IMI;
            // anything else reusing the id learns nothing about the original.
            if rec.imi != sub.imi {
                return Err(ProtocolError::TxnConflict);
            }
            answer_again(env, out, from, session, rec)?;
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
            saved: Saved::default(),
        };
        rec.event(now, "submitted");
        match plan_admitted(env, &rec.imi, None, &[]) {
            Ok((manager, routes, decision)) => {
                admit::record(&mut rec, &decision, now);
                let recipient = routes.first().and_then(|r| r.recipient_user.as_deref());
                admit::notices(&rec, &decision, out, recipient);
                rec.event(now, format!("manager:{}", manager.name));
                rec.manager = Some(manager);
                if let Some(code) = admit::held(&rec, &decision) {
                    // Held for a reviewer: the originator keeps the
                    // content and tells its client it waits.
                    hold(&mut rec, &code, now);
                    out.persist(&mut rec);
                    let held = frames::make_held(session, txn, code);
                    out.send(from, Frame::Held(held));
                    self.track(&rec);
                    self.open.insert(txn, rec);
                    return Ok(());
                }
                let mut frames = Vec::new();
                for route in routes {
                    frames.push(release(env, session, &mut rec, route, now)?);
                }
                out.persist(&mut rec);
                for f in frames {
                    out.send(from, f);
                }
                self.track(&rec);
                self.open.insert(txn, rec);
            }
            Err(Refusal::Deny {
                rule,
                reason,
                decision,
            }) => {
                admit::record(&mut rec, &decision, now);
                admit::notices(&rec, &decision, out, None);
                let code = format!("policy:{rule}");
                rec.event(now, format!("blocked:{code}"));
                rec.status = TxnStatus::Blocked(code);
                rec.closed = true;
                out.persist(&mut rec);
                tracing::info!(txn = %txn, rule = %rule, "message denied by policy");
                metrics::counter!("switchboard_messages_rejected_total", "reason" => "policy_denied")
                    .increment(1);
                let why = RejectReason::PolicyDenied(reason);
                out.send(
                    from,
                    Frame::Rejected(frames::make_rejected(session, txn, why)),
                );
            }
            Err(Refusal::Reject(reason)) => {
                rec.status = TxnStatus::Rejected(reason.code().into());
                rec.event(now, format!("rejected:{}", reason.code()));
                rec.closed = true;
                out.persist(&mut rec);
                tracing::info!(txn = %txn, reason = reason.code(), "message rejected");
                metrics::counter!("switchboard_messages_rejected_total", "reason" => reason.code())
                    .increment(1);
                let frame = Frame::Rejected(frames::make_rejected(session, txn, reason));
                out.send(from, frame);
            }
        }
        Ok(())
    }

    /// A `ReleaseAck` from the originator: checked and recorded once; it
    /// changes nothing stored (the destination's report is the truth).
    ///
    /// # Errors
    /// The check that failed.
    pub fn release_ack(
        &mut self,
        env: &dyn Env,
        from: &MemberId,
        ack: ReleaseAck,
    ) -> Result<(), ProtocolError> {
        let now = env.now_ms();
        let session = env.session(from, now)?;
        session.verify(|s| frames::check_release_ack(s, &ack))?;
        let rec = self.load(env, &ack.txn)?.ok_or(ProtocolError::UnknownTxn)?;
        if &rec.imi.originator != from {
            return Err(ProtocolError::WrongParty);
        }
        let _ = self.steps.admit(ack.txn, step::RELEASE, ack.attempt, 0);
        Ok(())
    }

    // ---- phase 4 ----

    /// A `Report` from an attempt's destination (or a processor that
    /// stopped the content): applied once, acknowledged every time; a
    /// failure moves on to the next mechanism.
    ///
    /// # Errors
    /// The check that failed; nothing changed then.
    pub fn report(
        &mut self,
        env: &dyn Env,
        out: &mut Effects,
        from: &MemberId,
        r: Report,
    ) -> Result<(), ProtocolError> {
        let now = env.now_ms();
        let session_d = env.session(from, now)?;
        let rec = self.load(env, &r.txn)?.ok_or(ProtocolError::UnknownTxn)?;
        // A report is checked against the ID of the attempt it names.
        let attempt = rec.attempt(r.attempt).ok_or(ProtocolError::IdMismatch)?;
        // The destination reports; a processor may report that it stopped
        // the content (blocked, held for review, or could not convert it).
        // Only a processor holds content for review.
        let by_processor = attempt.route.processors.contains(from)
            && matches!(
                r.status,
                ReportStatus::Blocked(_)
                    | ReportStatus::NonDelivery(_)
                    | ReportStatus::Quarantined(_)
            );
        let by_destination =
            from == &attempt.route.destination && !matches!(r.status, ReportStatus::Quarantined(_));
        if !by_destination && !by_processor {
            return Err(ProtocolError::WrongParty);
        }
        session_d.verify(|s| frames::check_report(s, &r, &attempt.id))?;
        // Delivered content must have passed every processor of the route;
        // a processor that stopped it attests those before it (and itself,
        // when it marked the message).
        if r.status.is_delivered() {
            frames::check_attestations(
                env.ring(),
                &rec.broker_imi(attempt),
                &attempt.id,
                &r.attestations,
                now,
            )?;
        } else if by_processor {
            frames::check_attestation_chain(
                env.ring(),
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
            out.send(from, ack);
            return Ok(());
        }
        let rec = self.open.get_mut(&r.txn).ok_or(ProtocolError::UnknownTxn)?;
        // What the processors marked it with (the content stage of policy),
        // checked above, goes on the trail once.
        if r.status.is_delivered() || by_processor {
            for m in r.attestations.iter().flat_map(|a| a.trail_marks()) {
                if !rec.events.iter().any(|e| e.kind == m) {
                    rec.event(now, m);
                }
            }
        }
        let persisted = match apply_report(rec, r.attempt, &r.status, now) {
            Next::Nothing => false,
            Next::Notify(outcome) => {
                self.conclude(env, out, &r.txn, outcome, now);
                true
            }
            Next::Retry => self.retry(env, out, &r.txn, now),
        };
        if !persisted {
            if let Some(rec) = self.open.get_mut(&r.txn) {
                out.persist(rec);
            }
            // A late or repeated report on a finished message: nothing is
            // pending for it here.
            if self.open.get(&r.txn).is_some_and(|t| t.status.is_final()) {
                self.forget(&r.txn);
            }
        }
        out.send(from, ack);
        Ok(())
    }

    /// Persists an outcome already applied to the record, then accounts it
    /// and tells the originator.
    fn conclude(
        &mut self,
        env: &dyn Env,
        out: &mut Effects,
        txn: &TxnId,
        outcome: Outcome,
        now: u64,
    ) {
        let Some(rec) = self.open.get_mut(txn) else {
            return;
        };
        rec.closed = false;
        out.persist(rec);
        if rec.events.iter().any(|e| e.kind.starts_with("archive:")) {
            out.archived.push(rec.clone());
        }
        if outcome != Outcome::Read {
            if let Some(a) = account(rec, &outcome, now) {
                out.account(a);
            }
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
        notify(env, out, rec, outcome, now);
    }

    /// After a non-delivery or a timeout: wait for attempts still running,
    /// else release the next mechanism, else the message is undeliverable
    /// (or expired). Returns whether it persisted the record.
    fn retry(&mut self, env: &dyn Env, out: &mut Effects, txn: &TxnId, now: u64) -> bool {
        let Some(rec) = self.open.get_mut(txn) else {
            return false;
        };
        if !rec.status.is_open() || rec.attempts.iter().any(AttemptRecord::is_open) {
            return false;
        }
        let planned = plan_admitted(env, &rec.imi, rec.manager.as_ref(), &rec.tried());
        let originator = rec.imi.originator.clone();
        let outcome = match (planned, env.session(&originator, now)) {
            (Ok((_, _, decision)), _) if admit::held(rec, &decision).is_some() => {
                // The next mechanism is one a rule holds for review (the
                // originator's client was answered long ago).
                admit::record(rec, &decision, now);
                if let Some(code) = admit::held(rec, &decision) {
                    hold(rec, &code, now);
                }
                out.persist(rec);
                return true;
            }
            (Ok((_, routes, decision)), Ok(session)) => {
                admit::record(rec, &decision, now);
                let mut frames = Vec::new();
                for route in routes {
                    match release(env, &session.current, rec, route, now) {
                        Ok(f) => frames.push(f),
                        Err(e) => {
                            tracing::error!(txn = %txn, reason = e.code(), "cannot release the next attempt")
                        }
                    }
                }
                out.persist(rec);
                for f in frames {
                    out.send(&originator, f);
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
            (Err(Refusal::Reject(RejectReason::Expired)), _) => {
                rec.status = TxnStatus::Expired;
                Outcome::Expired
            }
            (Err(Refusal::Deny { rule, decision, .. }), _) => {
                // Every mechanism left is one policy denies.
                admit::record(rec, &decision, now);
                let code = format!("policy:{rule}");
                rec.status = TxnStatus::Blocked(code.clone());
                rec.event(now, format!("blocked:{code}"));
                let outcome = Outcome::Blocked(code);
                self.conclude(env, out, txn, outcome, now);
                return true;
            }
            (Err(_), _) => {
                rec.status = TxnStatus::Undeliverable;
                Outcome::Undeliverable
            }
        };
        rec.event(now, outcome.as_str());
        self.conclude(env, out, txn, outcome, now);
        true
    }

    /// Applies the attempt timeouts and message expiries that are due.
    pub fn timeouts(&mut self, env: &dyn Env, out: &mut Effects) {
        let now = env.now_ms();
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
                self.conclude(env, out, &txn, Outcome::Expired, now);
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
                if !self.retry(env, out, &txn, now) {
                    if let Some(rec) = self.open.get_mut(&txn) {
                        out.persist(rec);
                    }
                }
            }
        }
    }

    // ---- phase 5 ----

    /// A `NotifyAck` from the originator: the transaction leaves memory once
    /// its final outcome is acknowledged. Closing is not written back: the
    /// stored record already holds the outcome, and a later `Read` loads it
    /// again.
    ///
    /// # Errors
    /// The check that failed.
    pub fn notify_ack(
        &mut self,
        env: &dyn Env,
        from: &MemberId,
        ack: NotifyAck,
    ) -> Result<(), ProtocolError> {
        let now = env.now_ms();
        let session = env.session(from, now)?;
        session.verify(|s| frames::check_notify_ack(s, &ack))?;
        let rec = self.load(env, &ack.txn)?.ok_or(ProtocolError::UnknownTxn)?;
        if &rec.imi.originator != from {
            return Err(ProtocolError::WrongParty);
        }
        if outcome_of(&rec.status) == ack.outcome && rec.status.is_final() {
            rec.closed = true;
            self.forget(&ack.txn);
        }
        Ok(())
    }

    /// `member` is back on a new connection: every open attempt routed
    /// through it is released again to its originator, which transmits
    /// again (what the old connection carried may be lost). Returns how
    /// many attempts were released again.
    pub fn member_back(&self, env: &dyn Env, out: &mut Effects, member: &MemberId) -> usize {
        let now = env.now_ms();
        let mut again = 0;
        for rec in self.open.values() {
            let through = |a: &AttemptRecord| {
                a.is_open()
                    && (a.route.destination == *member || a.route.processors.contains(member))
            };
            if !rec.status.is_open() || !rec.attempts.iter().any(through) {
                continue;
            }
            let originator = &rec.imi.originator;
            let Ok(pair) = env.session(originator, now) else {
                continue;
            };
            for a in rec.attempts.iter().filter(|a| through(a)) {
                match frames::make_release(&pair.current, env.ring(), rec.broker_imi(a), a.id) {
                    Ok(frame) => {
                        out.send(originator, Frame::Release(Box::new(frame)));
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
        again
    }
}

/// Where a `redirect` rule sent a route ([`Env::redirect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirected {
    /// To this gateway member: the route's destination.
    Gateway,
    /// To this node of the cluster: its gateways deliver (the tag
    /// `node:<id>` tells the placement).
    Node(String),
}

/// The route decision, after the message's expiry.
fn plan(
    env: &dyn Env,
    imi: &Imi,
    manager: Option<&ManagerChoice>,
    tried: &[MediumKind],
) -> Result<(ManagerChoice, Vec<Route>), RejectReason> {
    if env.now_ms() > imi.expires_at_ms {
        return Err(RejectReason::Expired);
    }
    env.plan(imi, manager, tried)
}
