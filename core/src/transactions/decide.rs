//! The pure decisions of a transaction: what a verified report does to its
//! record, and how a final status is told to the originator.

use crate::protocol::{Outcome, ReportStatus};
use crate::store::{TxnRecord, TxnStatus};

/// What follows a report.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
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
pub(super) fn apply_report(rec: &mut TxnRecord, n: u32, status: &ReportStatus, now: u64) -> Next {
    let open = rec.status.is_open();
    let Some(a) = rec.attempts.iter_mut().find(|a| a.attempt == n) else {
        return Next::Nothing;
    };
    let mechanism = a.route.mechanism;
    let (kind, next, new_status) = match status {
        ReportStatus::Delivered | ReportStatus::DeliveredVia(_) => {
            if a.outcome.as_deref() != Some("read") {
                a.outcome = Some("delivered".into());
                // On a delivered attempt, the reason is how (if said).
                a.reason = match status {
                    ReportStatus::DeliveredVia(how) => Some(how.clone()),
                    _ => None,
                };
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
            // How it was delivered stays; a failure before it does not.
            if !a.succeeded() {
                a.reason = None;
            }
            a.outcome = Some("read".into());
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
        ReportStatus::Quarantined(rule) if a.is_open() && open => {
            // A content rule holds it for a reviewer: the attempt is over,
            // the originator keeps the content, nothing is told yet.
            a.outcome = Some("quarantined".into());
            a.reason = Some(rule.clone());
            (
                "quarantined",
                Next::Nothing,
                TxnStatus::Quarantined(rule.clone()),
            )
        }
        _ => return Next::Nothing,
    };
    rec.status = new_status;
    rec.event(now, format!("{kind}:{mechanism}"));
    next
}

/// The outcome a final status is notified as.
pub(super) fn outcome_of(status: &TxnStatus) -> Outcome {
    match status {
        TxnStatus::Read => Outcome::Read,
        TxnStatus::Undeliverable | TxnStatus::Rejected(_) => Outcome::Undeliverable,
        // A held message is never notified as such (it is not final).
        TxnStatus::Blocked(r) | TxnStatus::Quarantined(r) => Outcome::Blocked(r.clone()),
        TxnStatus::Expired => Outcome::Expired,
        TxnStatus::Delivered | TxnStatus::Released | TxnStatus::Transmitted => Outcome::Delivered,
    }
}
