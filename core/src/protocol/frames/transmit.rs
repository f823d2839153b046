//! Phase 3: `Transmit` (originator → hops → destination) with each hop's
//! grant and the processors' attestations, and the transport-level
//! `TransmitAck`.

use serde::{Deserialize, Serialize};

use super::release::{Grant, Release};
use crate::protocol::codec::encode;
use crate::protocol::error::ProtocolError;
use crate::protocol::ids::{MemberId, TxnId};
use crate::protocol::imi::BrokerImi;
use crate::protocol::keys::{KeyRing, SecretKey};
use crate::protocol::mac::{self, label, sha256, Tag};
use crate::protocol::verify::check;

/// A processor's attestation: `mac(K_p, "attest", ID, digest_in, digest_out, content_type)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// The processor.
    pub member: MemberId,
    /// SHA-256 of the content it received.
    pub digest_in: [u8; 32],
    /// SHA-256 of the content it produced.
    pub digest_out: [u8; 32],
    /// The MIME type of the content it produced.
    pub content_type: String,
    /// The MAC.
    pub mac: Tag,
}

/// Phase 3: `Transmit { imi', ID, grants, content, attestations }`. It carries
/// the grants of every hop still ahead; each hop checks its own and passes
/// the frame on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transmit {
    /// The broker IMI.
    pub imi: BrokerImi,
    /// The broker's inner digest.
    pub id: Tag,
    /// The grants of the hops still ahead (processors, destination, archive).
    pub grants: Vec<Grant>,
    /// The content.
    pub content: Vec<u8>,
    /// Attestations of the processors passed so far.
    pub attestations: Vec<Attestation>,
}

/// Phase 3 transport acknowledgement. Carries no MAC: it only stops the
/// sender's resends and never changes durable state (the truth is phase 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransmitAck {
    /// The transaction.
    pub txn: TxnId,
    /// The attempt.
    pub attempt: u32,
}

/// The frame the originator sends to the first hop (`None` when the release
/// has no grant for it). It carries every hop's grant.
pub fn make_transmit(
    release: &Release,
    first_hop: &MemberId,
    content: Vec<u8>,
) -> Option<Transmit> {
    release.grants.iter().find(|g| &g.member == first_hop)?;
    Some(Transmit {
        imi: release.imi.clone(),
        id: release.id,
        grants: release.grants.clone(),
        content,
        attestations: Vec::new(),
    })
}

/// A hop (`me`): checks its own grant with its own key, the expiry, and that
/// the content's SHA-256 equals the IMI's digest or the last attestation's
/// output.
///
/// # Errors
/// [`ProtocolError::BadGrant`] (none for this hop, or it does not verify),
/// [`ProtocolError::Expired`], [`ProtocolError::DigestMismatch`].
pub fn check_transmit(
    me: &MemberId,
    my_key: &SecretKey,
    t: &Transmit,
    now_ms: u64,
) -> Result<(), ProtocolError> {
    let grant = t
        .grants
        .iter()
        .find(|g| &g.member == me)
        .ok_or(ProtocolError::BadGrant)?;
    check(
        mac::verify(
            my_key.bytes(),
            label::GRANT,
            &[&encode(&t.imi), &t.id],
            &grant.mac,
        ),
        ProtocolError::BadGrant,
    )?;
    check(now_ms <= t.imi.imi.expires_at_ms, ProtocolError::Expired)?;
    let expected = t
        .attestations
        .last()
        .map_or(t.imi.imi.content_sha256, |a| a.digest_out);
    check(
        sha256(&t.content) == expected,
        ProtocolError::DigestMismatch,
    )
}

/// A processor's attestation of a conversion.
pub fn make_attestation(
    member: MemberId,
    key: &SecretKey,
    id: &Tag,
    input: &[u8],
    output: &[u8],
    content_type: &str,
) -> Attestation {
    let digest_in = sha256(input);
    let digest_out = sha256(output);
    let mac = mac::mac(
        key.bytes(),
        label::ATTEST,
        &[id, &digest_in, &digest_out, content_type.as_bytes()],
    );
    Attestation {
        member,
        digest_in,
        digest_out,
        content_type: content_type.to_string(),
        mac,
    }
}

/// Broker: checks every attestation with its processor's key, and that they
/// chain (each input is the previous output, the first input the IMI digest).
///
/// # Errors
/// [`ProtocolError::BadAttestation`], [`ProtocolError::UnknownMember`].
pub fn check_attestations(
    ring: &KeyRing,
    bimi: &BrokerImi,
    id: &Tag,
    atts: &[Attestation],
    now_ms: u64,
) -> Result<(), ProtocolError> {
    let mut digest = bimi.imi.content_sha256;
    for (a, expected) in atts.iter().zip(bimi.route.processors.iter()) {
        check(
            &a.member == expected && a.digest_in == digest,
            ProtocolError::BadAttestation,
        )?;
        ring.verify_any(&a.member, now_ms, ProtocolError::BadAttestation, |k| {
            mac::verify(
                k.bytes(),
                label::ATTEST,
                &[id, &a.digest_in, &a.digest_out, a.content_type.as_bytes()],
                &a.mac,
            )
        })?;
        digest = a.digest_out;
    }
    check(
        atts.len() == bimi.route.processors.len(),
        ProtocolError::BadAttestation,
    )
}
