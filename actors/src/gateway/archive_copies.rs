//! The copies an originator sent the compliance archive and the archive has
//! not acknowledged yet. The originator keeps a message's outbox entry (its
//! content) until the archive acknowledged the copy *and* the outcome is
//! known, so a crash between the two loses no copy: the entry is submitted
//! again at start, and the broker answers a concluded archived transaction
//! with an `ArchiveCopy` (MIAP.md). Copies not acknowledged are sent again
//! every [`RESEND_MS`].
//!
//! Owns: the copies in flight. Must not touch: the outbox (the gateway
//! forgets entries when told to).

use std::collections::HashMap;

use switchboard_core::protocol::{MemberId, Transmit, TxnId};

/// How long a copy waits for the archive's acknowledgement before it is
/// sent again.
pub(super) const RESEND_MS: u64 = 5_000;

struct Copy {
    archive: MemberId,
    transmit: Box<Transmit>,
    sent_at_ms: u64,
    concluded: bool,
}

/// Copies the archive has not acknowledged, by transaction.
#[derive(Default)]
pub(super) struct ArchiveCopies {
    copies: HashMap<TxnId, Copy>,
}

impl ArchiveCopies {
    /// `transmit` was sent to `archive` at `now_ms`; a copy of an outcome
    /// known already keeps that.
    pub fn sent(&mut self, archive: MemberId, transmit: Box<Transmit>, now_ms: u64) {
        let txn = transmit.imi.imi.txn;
        let concluded = self.copies.get(&txn).is_some_and(|c| c.concluded);
        self.copies.insert(
            txn,
            Copy {
                archive,
                transmit,
                sent_at_ms: now_ms,
                concluded,
            },
        );
    }

    /// The outcome of `txn` is known: whether its entry must wait for the
    /// archive (else it can go now).
    pub fn conclude(&mut self, txn: &TxnId) -> bool {
        match self.copies.get_mut(txn) {
            Some(c) => {
                c.concluded = true;
                true
            }
            None => false,
        }
    }

    /// `from` acknowledged (or refused: it will never take it) the copy of
    /// `txn`: whether the entry can go now (the outcome known too).
    pub fn settled(&mut self, from: &MemberId, txn: &TxnId) -> bool {
        match self.copies.get(txn) {
            Some(c) if &c.archive == from => {
                let concluded = c.concluded;
                self.copies.remove(txn);
                concluded
            }
            _ => false,
        }
    }

    /// Whether `from` is the archive a copy of `txn` went to.
    pub fn is_archive_of(&self, from: &MemberId, txn: &TxnId) -> bool {
        self.copies.get(txn).is_some_and(|c| &c.archive == from)
    }

    /// The copies to send again at `now_ms` (marked sent).
    pub fn due(&mut self, now_ms: u64) -> Vec<(MemberId, Box<Transmit>)> {
        (self.copies.values_mut())
            .filter(|c| now_ms.saturating_sub(c.sent_at_ms) >= RESEND_MS)
            .map(|c| {
                c.sent_at_ms = now_ms;
                (c.archive.clone(), c.transmit.clone())
            })
            .collect()
    }

    /// How many wait for the archive.
    pub fn len(&self) -> usize {
        self.copies.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::protocol::{
        Address, BrokerImi, Imi, MediumKind, Priority, Route, To, Transmit,
    };

    fn copy(txn: TxnId) -> Box<Transmit> {
        let imi = Imi {
            txn,
            originator: MemberId::new("gw-a"),
            sender: Address::new(MediumKind::Im, "alice"),
            sender_user: None,
            recipient: To::User("bob".into()),
            content_type: "text/plain".into(),
            content_len: 0,
            content_sha256: [0; 32],
            subject: None,
            priority: Priority::Normal,
            expires_at_ms: 0,
            created_at_ms: 0,
            receipt: false,
            attributes: vec![],
        };
        let route = Route {
            mechanism: MediumKind::Im,
            address: "bob".into(),
            recipient_user: None,
            destination: MemberId::new("gw-b"),
            processors: vec![],
            archive: Some(MemberId::new("archive-1")),
            store_and_forward: false,
        };
        Box::new(Transmit {
            imi: BrokerImi {
                imi,
                route,
                attempt: 1,
                tags: vec![],
            },
            id: [0; 32],
            grants: vec![],
            content: vec![],
            attestations: vec![],
        })
    }

    #[test]
    fn a_copy_is_sent_again_each_resend_period_until_settled() {
        let archive = MemberId::new("archive-1");
        let (a, b) = (TxnId::generate(1), TxnId::generate(2));
        let mut c = ArchiveCopies::default();
        c.sent(archive.clone(), copy(a), 1_000);
        c.sent(archive.clone(), copy(b), 3_000);
        assert!(c.due(1_000 + RESEND_MS - 1).is_empty());
        let due: Vec<TxnId> = (c.due(1_000 + RESEND_MS).iter())
            .map(|(_, t)| t.imi.imi.txn)
            .collect();
        assert_eq!(due, [a], "only the one waiting a whole period");
        assert!(c.due(1_000 + RESEND_MS + 1).is_empty(), "marked sent");
        assert!(c.conclude(&a));
        assert!(!c.conclude(&TxnId::generate(3)), "no copy: nothing waits");
        c.sent(archive.clone(), copy(a), 9_000);
        assert!(c.settled(&archive, &a), "sent again, still concluded");
        assert!(!c.settled(&archive, &b), "not concluded yet");
        assert_eq!(c.len(), 0);
    }
}
