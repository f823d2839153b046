//! Phase 2, for the compliance archive: `ArchiveCopy` — the broker asks an
//! originator that resubmitted a concluded transaction of an archived scope
//! (after a crash, before the archive had acknowledged its copy) to send
//! the archive its copy again, with the archive's grant of the attempt that
//! decided it. The grant is the one the `Release` carried (grants are the
//! same whenever computed), so the archive checks it like any copy.

use serde::{Deserialize, Serialize};

use crate::protocol::codec::encode;
use crate::protocol::error::ProtocolError;
use crate::protocol::ids::MemberId;
use crate::protocol::imi::BrokerImi;
use crate::protocol::keys::KeyRing;
use crate::protocol::mac::{self, label, Tag};
use crate::protocol::tscs::Session;
use crate::protocol::verify::{check, step};

use super::release::{grant_mac, Grant};
use super::transmit::Transmit;

/// `ArchiveCopy { imi', ID, grant, mac(K_o, "archive-copy", enc(imi'), ID,
/// C_ack(txn,2)) }`, broker → originator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveCopy {
    /// The broker IMI of the deciding attempt.
    pub imi: BrokerImi,
    /// Its `ID`.
    pub id: Tag,
    /// The archive's grant.
    pub grant: Grant,
    /// The MAC under the originator's session.
    pub mac: Tag,
}

/// The `ArchiveCopy` of attempt `bimi` (whose `ID` is `id`) for `archive`.
///
/// # Errors
/// [`ProtocolError::UnknownMember`] when the archive has no key.
pub fn make_archive_copy(
    session_o: &Session,
    ring: &KeyRing,
    bimi: BrokerImi,
    id: Tag,
    archive: &MemberId,
) -> Result<ArchiveCopy, ProtocolError> {
    let enc = encode(&bimi);
    let grant = ring.with(archive, |m| {
        Ok(Grant {
            member: archive.clone(),
            mac: grant_mac(m.current().1, &enc, &id),
        })
    })?;
    let c = session_o.step(&bimi.imi.txn, step::RELEASE);
    let mac = mac::mac(session_o.key.bytes(), label::ARCHIVE_COPY, &[&enc, &id, &c]);
    Ok(ArchiveCopy {
        imi: bimi,
        id,
        grant,
        mac,
    })
}

/// Originator: checks an `ArchiveCopy`.
///
/// # Errors
/// [`ProtocolError::BadMac`].
pub fn check_archive_copy(session: &Session, a: &ArchiveCopy) -> Result<(), ProtocolError> {
    let c = session.step(&a.imi.imi.txn, step::RELEASE);
    check(
        mac::verify(
            session.key.bytes(),
            label::ARCHIVE_COPY,
            &[&encode(&a.imi), &a.id, &c],
            &a.mac,
        ),
        ProtocolError::BadMac,
    )
}

impl ArchiveCopy {
    /// The copy for the archive: `content` as sent, under the grant.
    pub fn transmit(&self, content: Vec<u8>) -> Transmit {
        Transmit {
            imi: self.imi.clone(),
            id: self.id,
            grants: vec![self.grant.clone()],
            content,
            attestations: Vec::new(),
        }
    }
}
