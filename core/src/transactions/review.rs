//! Quarantine (COMPLIANCE.md): a message enterprise policy holds for a
//! reviewer, and the reviewer's decision — released, it is routed as usual
//! (the rule that held it does not hold it again); rejected, it is
//! `blocked` (`quarantine_rejected`) and its originator told.

use super::{Effects, Env, Transactions};
use crate::policy::RELEASED_TAG;
use crate::protocol::{Outcome, TxnId};
use crate::store::{TxnRecord, TxnStatus};

impl Transactions {
    /// A reviewer (`by`) decides on a quarantined transaction: released, it
    /// is routed as usual (a rule that quarantined it does not hold it
    /// again); rejected, it is `blocked` (`quarantine_rejected`) and its
    /// originator told. Returns the status it has now.
    ///
    /// # Errors
    /// [`ReviewError`]; nothing changed then.
    pub fn review(
        &mut self,
        env: &dyn Env,
        out: &mut Effects,
        txn: &TxnId,
        decision: Review,
        by: &str,
    ) -> Result<TxnStatus, ReviewError> {
        let now = env.now_ms();
        let rec = self
            .load(env, txn)
            .map_err(|_| ReviewError::Unknown)?
            .ok_or(ReviewError::Unknown)?;
        if !matches!(rec.status, TxnStatus::Quarantined(_)) {
            return Err(ReviewError::NotHeld(rec.status.as_str()));
        }
        let by = by.replace(|c: char| c.is_control() || c == ':', "_");
        match decision {
            Review::Release => {
                // The next release goes to the originator, which holds the
                // content: it must be there to take it.
                if env.session(&rec.imi.originator, now).is_err() {
                    return Err(ReviewError::OriginatorAway);
                }
                rec.event(now, format!("quarantine:released:{by}"));
                rec.event(now, format!("tag:{RELEASED_TAG}"));
                rec.status = TxnStatus::Released;
                tracing::info!(txn = %txn, by = %by, "released from quarantine");
                if !self.retry(env, out, txn, now) {
                    if let Some(rec) = self.open.get_mut(txn) {
                        out.persist(rec);
                    }
                }
            }
            Review::Reject => {
                let code = "quarantine_rejected".to_string();
                rec.event(now, format!("quarantine:rejected:{by}"));
                rec.event(now, format!("blocked:{code}"));
                rec.status = TxnStatus::Blocked(code.clone());
                tracing::info!(txn = %txn, by = %by, "rejected from quarantine");
                self.conclude(env, out, txn, Outcome::Blocked(code), now);
            }
        }
        let rec = self.open.get(txn).ok_or(ReviewError::Unknown)?;
        Ok(rec.status.clone())
    }
}

/// A reviewer's decision on a quarantined message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    /// Route it as usual.
    Release,
    /// Block it (`quarantine_rejected`).
    Reject,
}

/// Why a review changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// No such transaction.
    #[error("no such transaction")]
    Unknown,
    /// It is not quarantined (its status).
    #[error("the message is {0}, not quarantined")]
    NotHeld(&'static str),
    /// Its originating gateway is not connected, so it cannot take the
    /// release.
    #[error("the gateway holding the message is not connected")]
    OriginatorAway,
}

/// Holds `rec` for a reviewer under `code` (`policy:<rule>`).
pub(super) fn hold(rec: &mut TxnRecord, code: &str, now: u64) {
    rec.status = TxnStatus::Quarantined(code.to_string());
    rec.event(now, format!("quarantined:{code}"));
    tracing::info!(txn = %rec.imi.txn, code, "message quarantined by policy");
    metrics::counter!("switchboard_messages_quarantined_total").increment(1);
}
