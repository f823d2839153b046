//! The originator's side of the compliance archive's copy: sent with the
//! first hop's `Transmit`, sent again until the archive acknowledges it
//! (and when the broker asks, `ArchiveCopy`), and the outbox entry kept
//! until then ([`super::archive_copies`] keeps the count).
//!
//! Owns: nothing of its own (the gateway's copies and outbox). Must not
//! touch: the delivery's own hops.

use switchboard_core::protocol::frames::{self, RefuseReason};
use switchboard_core::protocol::{ArchiveCopy, Frame, MemberId, ProtocolError, Transmit, TxnId};

use super::Gateway;
use crate::medium::Medium;

impl<M: Medium> Gateway<M> {
    /// Sends the archive its copy (again, until acknowledged).
    pub(super) fn send_copy(&mut self, archive: MemberId, t: Box<Transmit>) {
        let txn = t.imi.imi.txn;
        if !(self.members).send(&archive, &self.tscs.cfg.id, Frame::Transmit(t.clone())) {
            tracing::warn!(txn = %txn, archive = %archive, "the archive is not connected; its copy is sent again later");
        }
        self.copies.sent(archive, t, self.now());
    }

    /// Copies the archive has not acknowledged for a while, again.
    pub(super) fn resend_copies(&mut self) {
        let now = self.now();
        for (archive, t) in self.copies.due(now) {
            self.send_copy(archive, t);
        }
    }

    /// A resubmitted transaction concluded before the archive acknowledged
    /// its copy: the copy again, if the content is still here.
    pub(super) fn on_archive_copy(&mut self, a: ArchiveCopy) -> Result<(), ProtocolError> {
        self.session()?
            .verify(|s| frames::check_archive_copy(s, &a))?;
        let Some(entry) = self.outbox.get(&a.imi.imi.txn) else {
            return Ok(());
        };
        let t = a.transmit(self.shared.content_of(entry));
        self.send_copy(a.grant.member.clone(), Box::new(t));
        Ok(())
    }

    /// `from` acknowledged a `Transmit` of `txn`: when it is the archive's
    /// copy and the outcome is known, the entry goes.
    pub(super) fn copy_acked(&mut self, from: &MemberId, txn: &TxnId) {
        if self.copies.settled(from, txn) {
            self.forget_outbox(txn);
        }
    }

    /// The archive will never take this copy (it names why): the entry is
    /// not kept for it.
    pub(super) fn copy_refused(&mut self, from: &MemberId, r: &RefuseReason) {
        let Some(txn) = r.txn.filter(|t| self.copies.is_archive_of(from, t)) else {
            return;
        };
        tracing::error!(txn = %txn, archive = %from, reason = r.error.code(), "the archive refused its copy");
        self.copy_acked(from, &txn);
    }
}
