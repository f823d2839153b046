//! What a step sends and records besides the decision itself: a release
//! of one attempt (its `ID`, deadline and grants), the answer to a repeated
//! `Submit`, the notification of an outcome, and its usage record.

use super::{Effects, Env};
use crate::protocol::frames;
use crate::protocol::{
    BrokerImi, Frame, MemberId, Outcome, ProtocolError, RejectReason, Route, Session,
};
use crate::store::{AccountingRecord, AttemptRecord, TxnRecord, TxnStatus};

use super::decide::outcome_of;

/// Answers a repeated `Submit` from the stored truth.
pub(super) fn answer_again(
    env: &dyn Env,
    out: &mut Effects,
    from: &MemberId,
    session: &Session,
    rec: &TxnRecord,
) -> Result<(), ProtocolError> {
    let txn = rec.imi.txn;
    match &rec.status {
        TxnStatus::Released | TxnStatus::Transmitted => {
            for a in rec.attempts.iter().filter(|a| a.is_open()) {
                let frame = frames::make_release(session, env.ring(), rec.broker_imi(a), a.id)?;
                out.send(from, Frame::Release(Box::new(frame)));
            }
        }
        TxnStatus::Quarantined(code) => {
            let held = frames::make_held(session, txn, code.clone());
            out.send(from, Frame::Held(held));
        }
        TxnStatus::Rejected(code) => {
            let reason = match code.as_str() {
                "unknown_recipient" => RejectReason::UnknownRecipient,
                "no_mechanism" => RejectReason::NoMechanism,
                "expired" => RejectReason::Expired,
                other => RejectReason::PolicyDenied(other.to_string()),
            };
            out.send(
                from,
                Frame::Rejected(frames::make_rejected(session, txn, reason)),
            );
        }
        final_status => {
            // Concluded in an archived scope: the originator still holding it
            // may not have had the archive's acknowledgement of its copy (a
            // crash between); it sends the copy again and the archive hears of
            // the conclusion again (both idempotent there).
            let archived = (rec.deciding_attempt().into_iter())
                .chain(rec.attempts.iter())
                .find_map(|a| Some((a, a.route.archive.as_ref()?)));
            if let Some((a, archive)) = archived {
                let copy = frames::make_archive_copy(
                    session,
                    env.ring(),
                    rec.broker_imi(a),
                    a.id,
                    archive,
                )?;
                out.send(from, Frame::ArchiveCopy(Box::new(copy)));
                out.archived.push(rec.clone());
            }
            let outcome = outcome_of(final_status);
            let mechanism = rec.deciding_attempt().map(|a| a.route.mechanism);
            let at = rec.events.last().map_or(0, |e| e.at_ms);
            out.send(
                from,
                Frame::Notify(frames::make_notify(session, txn, outcome, mechanism, at)),
            );
        }
    }
    Ok(())
}

/// Releases one attempt of `rec` on `route`: computes the attempt's `ID`,
/// records the attempt with its deadline, and returns the `Release` for the
/// originator. The caller persists the record, then sends it.
pub(super) fn release(
    env: &dyn Env,
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
    let bimi = BrokerImi {
        imi: rec.imi.clone(),
        route,
        attempt,
        tags: rec.tags(),
    };
    let id = frames::inner_id(env.k2(), &bimi);
    let route = bimi.route.clone();
    let frame = frames::make_release(session, env.ring(), bimi, id)?;
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

/// The usage record of an outcome.
pub(super) fn account(rec: &TxnRecord, outcome: &Outcome, now: u64) -> Option<AccountingRecord> {
    AccountingRecord::of(rec, outcome.as_str().into(), now)
}

/// Tells the originator the outcome (when it has a session; otherwise it
/// learns it when it resubmits).
pub(super) fn notify(
    env: &dyn Env,
    out: &mut Effects,
    rec: &TxnRecord,
    outcome: Outcome,
    now: u64,
) {
    let origin = &rec.imi.originator;
    match env.session(origin, now) {
        Ok(s) => {
            let mechanism = rec
                .attempts
                .iter()
                .find(|a| a.succeeded())
                .map(|a| a.route.mechanism);
            let n = frames::make_notify(&s.current, rec.imi.txn, outcome, mechanism, now);
            out.send(origin, Frame::Notify(n));
        }
        Err(_) => {
            tracing::info!(txn = %rec.imi.txn, member = %origin, "originator away; it learns the outcome when it resubmits");
        }
    }
}
