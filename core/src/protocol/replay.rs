//! Idempotency of a transaction's steps: which `(txn, step, attempt,
//! variant)` were already processed, so a repeated frame is answered again
//! without changing state.

use std::collections::HashMap;

use super::error::ProtocolError;
use super::frames::ReportStatus;
use super::ids::TxnId;
use super::verify::check;

/// Which steps of which transactions were already processed, so a repeated
/// frame is answered again without changing state. Keyed on
/// `(txn, step, attempt, variant)`; `variant` separates e.g. a `Delivered`
/// report from the later `Read` report of the same attempt.
#[derive(Debug, Default)]
pub struct StepLog {
    /// Per transaction, its processed `(step, attempt, variant)`: a handful
    /// each, so forgetting a transaction is one removal, not a scan.
    seen: HashMap<TxnId, Vec<(u8, u32, u8)>>,
}

impl StepLog {
    /// Records a step.
    ///
    /// # Errors
    /// [`ProtocolError::ReplayedStep`] when it was already recorded (and then
    /// nothing changes).
    pub fn admit(
        &mut self,
        txn: TxnId,
        step: u8,
        attempt: u32,
        variant: u8,
    ) -> Result<(), ProtocolError> {
        let steps = self.seen.entry(txn).or_default();
        let fresh = !steps.contains(&(step, attempt, variant));
        if fresh {
            steps.push((step, attempt, variant));
        }
        check(fresh, ProtocolError::ReplayedStep)
    }

    /// Forgets a closed transaction.
    pub fn forget(&mut self, txn: &TxnId) {
        self.seen.remove(txn);
    }

    /// How many steps are remembered.
    pub fn len(&self) -> usize {
        self.seen.values().map(Vec::len).sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// How many values [`status_variant`] takes (0 up to this, exclusive).
pub const STATUS_VARIANTS: u8 = 5;

/// A report status's variant number (for [`StepLog`]).
pub fn status_variant(s: &ReportStatus) -> u8 {
    match s {
        // One step, however it was delivered.
        ReportStatus::Delivered | ReportStatus::DeliveredVia(_) => 0,
        ReportStatus::Read => 1,
        ReportStatus::NonDelivery(_) => 2,
        ReportStatus::Blocked(_) => 3,
        ReportStatus::Expired => 4,
        ReportStatus::Quarantined(_) => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::verify::step;

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn replayed_step_is_refused_and_changes_nothing() {
        let mut log = StepLog::default();
        let txn = TxnId::generate(NOW);
        log.admit(
            txn,
            step::REPORT,
            1,
            status_variant(&ReportStatus::Delivered),
        )
        .unwrap();
        assert_eq!(
            log.admit(
                txn,
                step::REPORT,
                1,
                status_variant(&ReportStatus::Delivered)
            ),
            Err(ProtocolError::ReplayedStep)
        );
        assert_eq!(log.len(), 1);
        // The Read report of the same attempt and the next attempt are new steps.
        log.admit(txn, step::REPORT, 1, status_variant(&ReportStatus::Read))
            .unwrap();
        log.admit(
            txn,
            step::REPORT,
            2,
            status_variant(&ReportStatus::Delivered),
        )
        .unwrap();
        log.forget(&txn);
        assert!(log.is_empty());
    }
}
