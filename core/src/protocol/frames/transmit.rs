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
    /// What it marked the message with, for the trail (the content
    /// filter: `policy:<rule>:v<n>:<action>`, `tag:<tag>`, `notify:<user>`).
    pub marks: Vec<String>,
    /// The MAC.
    pub mac: Tag,
}

/// Most marks one attestation may carry onto the trail, and the longest.
pub const MAX_MARKS: usize = 32;
/// The longest mark, bytes.
pub const MAX_MARK_LEN: usize = 200;

impl Attestation {
    /// The marks the broker writes on the trail: only those a processor may
    /// make (`policy:`, `tag:`, `notify:`), at most [`MAX_MARKS`] of at
    /// most [`MAX_MARK_LEN`] bytes without control characters.
    pub fn trail_marks(&self) -> impl Iterator<Item = &str> {
        self.marks
            .iter()
            .map(String::as_str)
            .filter(|m| {
                ["policy:", "tag:", "notify:"]
                    .iter()
                    .any(|p| m.starts_with(p))
                    && m.len() <= MAX_MARK_LEN
                    && !m.chars().any(char::is_control)
            })
            .take(MAX_MARKS)
    }
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
    check_copy(me, my_key, t)?;
    check(now_ms <= t.imi.imi.expires_at_ms, ProtocolError::Expired)
}

/// The archive (`me`): [`check_transmit`] without the expiry — a copy of a
/// message delivered before it expired is a fact however late it comes.
///
/// # Errors
/// [`ProtocolError::BadGrant`], [`ProtocolError::DigestMismatch`].
pub fn check_copy(me: &MemberId, my_key: &SecretKey, t: &Transmit) -> Result<(), ProtocolError> {
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
    let expected = t
        .attestations
        .last()
        .map_or(t.imi.imi.content_sha256, |a| a.digest_out);
    check(
        sha256(&t.content) == expected,
        ProtocolError::DigestMismatch,
    )
}

/// A processor's attestation of a conversion, with what it marked the
/// message with (covered by the MAC).
pub fn make_attestation(
    member: MemberId,
    key: &SecretKey,
    id: &Tag,
    input: &[u8],
    output: &[u8],
    content_type: &str,
    marks: Vec<String>,
) -> Attestation {
    let digest_in = sha256(input);
    let digest_out = sha256(output);
    let mac = mac::mac(
        key.bytes(),
        label::ATTEST,
        &[
            id,
            &digest_in,
            &digest_out,
            content_type.as_bytes(),
            &encode(&marks),
        ],
    );
    Attestation {
        member,
        digest_in,
        digest_out,
        content_type: content_type.to_string(),
        marks,
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
    check_attestation_chain(ring, bimi, id, atts, now_ms)?;
    check(
        atts.len() == bimi.route.processors.len(),
        ProtocolError::BadAttestation,
    )
}

/// Broker: checks the attestations of the route's first processors, as far
/// as they go (a processor that stopped the content reports those before
/// it and its own): each with its processor's key, each input the previous
/// output.
///
/// # Errors
/// [`ProtocolError::BadAttestation`].
pub fn check_attestation_chain(
    ring: &KeyRing,
    bimi: &BrokerImi,
    id: &Tag,
    atts: &[Attestation],
    now_ms: u64,
) -> Result<(), ProtocolError> {
    check(
        atts.len() <= bimi.route.processors.len(),
        ProtocolError::BadAttestation,
    )?;
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
                &[
                    id,
                    &a.digest_in,
                    &a.digest_out,
                    a.content_type.as_bytes(),
                    &encode(&a.marks),
                ],
                &a.mac,
            )
        })?;
        digest = a.digest_out;
    }
    Ok(())
}
