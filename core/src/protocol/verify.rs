//! Making and checking the frames of a transaction. Each `make_*` has a
//! `check_*` twin; the actors call a check before they change any state, so a
//! forged or replayed frame changes nothing.

use std::collections::HashSet;

use super::codec::encode;
use super::error::ProtocolError;
use super::frames::{
    Attestation, Grant, HealthFrame, Identify, Identity, Notify, NotifyAck, Outcome, PresenceFrame,
    PresenceState, RejectReason, Rejected, Release, ReleaseAck, Report, ReportAck, ReportStatus,
    Submit, Transmit, Watch,
};
use super::ids::{MediumKind, MemberId, TxnId};
use super::imi::{BrokerImi, Imi};
use super::keys::{KeyRing, SecretKey};
use super::mac::{self, label, sha256, Tag};
use super::tscs::Session;

/// Phase numbers used in per-step keys.
pub mod step {
    /// Phase 1: submit.
    pub const SUBMIT: u8 = 1;
    /// Phase 2: release.
    pub const RELEASE: u8 = 2;
    /// Phase 4: report.
    pub const REPORT: u8 = 4;
    /// Phase 5: notify.
    pub const NOTIFY: u8 = 5;
}

fn check(ok: bool, err: ProtocolError) -> Result<(), ProtocolError> {
    if ok {
        Ok(())
    } else {
        Err(err)
    }
}

// ---- phase 1 ----

/// `Submit { imi, mac(K_o, "imi", enc(imi), C_ack(txn,1)) }`.
pub fn make_submit(session: &Session, imi: Imi) -> Submit {
    let c = session.step(&imi.txn, step::SUBMIT);
    let mac = mac::mac(session.key.bytes(), label::IMI, &[&encode(&imi), &c]);
    Submit { imi, mac }
}

/// Broker: checks a `Submit` from the originator's session.
///
/// # Errors
/// [`ProtocolError::WrongParty`] when the IMI names another originator,
/// [`ProtocolError::BadMac`], [`ProtocolError::Expired`].
pub fn check_submit(session: &Session, s: &Submit, now_ms: u64) -> Result<(), ProtocolError> {
    check(
        s.imi.originator == session.member,
        ProtocolError::WrongParty,
    )?;
    let c = session.step(&s.imi.txn, step::SUBMIT);
    check(
        mac::verify(
            session.key.bytes(),
            label::IMI,
            &[&encode(&s.imi), &c],
            &s.mac,
        ),
        ProtocolError::BadMac,
    )?;
    check(now_ms <= s.imi.expires_at_ms, ProtocolError::Expired)
}

// ---- phase 2 ----

/// The broker's inner digest `ID = mac(K2, "inner", enc(imi'), C_ack(txn,2))`.
pub fn inner_id(k2: &SecretKey, session_o: &Session, bimi: &BrokerImi) -> Tag {
    let c = session_o.step(&bimi.imi.txn, step::RELEASE);
    mac::mac(k2.bytes(), label::INNER, &[&encode(bimi), &c])
}

fn grant_mac(key: &SecretKey, bimi_enc: &[u8], id: &Tag) -> Tag {
    mac::mac(key.bytes(), label::GRANT, &[bimi_enc, id])
}

/// `Release { imi', ID, outer, grants }` for a stored `ID` (the first release
/// computes it with [`inner_id`]; resends reuse it so reports still match).
///
/// # Errors
/// [`ProtocolError::UnknownMember`] when a hop of the route has no key.
pub fn make_release(
    session_o: &Session,
    ring: &KeyRing,
    bimi: BrokerImi,
    id: Tag,
) -> Result<Release, ProtocolError> {
    let enc = encode(&bimi);
    let c = session_o.step(&bimi.imi.txn, step::RELEASE);
    let outer = mac::mac(session_o.key.bytes(), label::OUTER, &[&enc, &c, &id]);
    let grants = bimi
        .route
        .hops()
        .map(|hop| {
            ring.with(hop, |m| {
                Ok(Grant {
                    member: hop.clone(),
                    mac: grant_mac(m.current().1, &enc, &id),
                })
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Release {
        imi: bimi,
        id,
        outer,
        grants,
    })
}

/// Originator: checks the broker's `outer` digest.
///
/// # Errors
/// [`ProtocolError::BadMac`].
pub fn check_release(session: &Session, r: &Release) -> Result<(), ProtocolError> {
    let c = session.step(&r.imi.imi.txn, step::RELEASE);
    check(
        mac::verify(
            session.key.bytes(),
            label::OUTER,
            &[&encode(&r.imi), &c, &r.id],
            &r.outer,
        ),
        ProtocolError::BadMac,
    )
}

/// `Rejected { txn, reason, mac }`.
pub fn make_rejected(session_o: &Session, txn: TxnId, reason: RejectReason) -> Rejected {
    let c = session_o.step(&txn, step::RELEASE);
    let mac = mac::mac(
        session_o.key.bytes(),
        label::REJECTED,
        &[txn.as_bytes(), &encode(&reason), &c],
    );
    Rejected { txn, reason, mac }
}

/// Originator: checks a `Rejected`.
///
/// # Errors
/// [`ProtocolError::BadMac`].
pub fn check_rejected(session: &Session, r: &Rejected) -> Result<(), ProtocolError> {
    let c = session.step(&r.txn, step::RELEASE);
    check(
        mac::verify(
            session.key.bytes(),
            label::REJECTED,
            &[r.txn.as_bytes(), &encode(&r.reason), &c],
            &r.mac,
        ),
        ProtocolError::BadMac,
    )
}

/// `ReleaseAck { txn, attempt, mac }`.
pub fn make_release_ack(session: &Session, txn: TxnId, attempt: u32) -> ReleaseAck {
    let c = session.step(&txn, step::RELEASE);
    let mac = mac::mac(
        session.key.bytes(),
        label::RELEASE_ACK,
        &[txn.as_bytes(), &attempt.to_be_bytes(), &c],
    );
    ReleaseAck { txn, attempt, mac }
}

/// Broker: checks a `ReleaseAck`.
///
/// # Errors
/// [`ProtocolError::BadMac`].
pub fn check_release_ack(session: &Session, a: &ReleaseAck) -> Result<(), ProtocolError> {
    let c = session.step(&a.txn, step::RELEASE);
    check(
        mac::verify(
            session.key.bytes(),
            label::RELEASE_ACK,
            &[a.txn.as_bytes(), &a.attempt.to_be_bytes(), &c],
            &a.mac,
        ),
        ProtocolError::BadMac,
    )
}

// ---- phase 3 ----

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

// ---- phase 4 ----

fn report_fields(
    r_txn: &TxnId,
    attempt: u32,
    id: &Tag,
    status: &ReportStatus,
    c: &Tag,
) -> Vec<Vec<u8>> {
    vec![
        r_txn.as_bytes().to_vec(),
        attempt.to_be_bytes().to_vec(),
        id.to_vec(),
        encode(status),
        c.to_vec(),
    ]
}

fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(Vec::as_slice).collect()
}

/// `Report { txn, attempt, ID, status, attestations, mac }` from the destination.
pub fn make_report(
    session_d: &Session,
    txn: TxnId,
    attempt: u32,
    id: Tag,
    status: ReportStatus,
    attestations: Vec<Attestation>,
) -> Report {
    let c = session_d.step(&txn, step::REPORT);
    let mac = mac::mac(
        session_d.key.bytes(),
        label::REPORT,
        &refs(&report_fields(&txn, attempt, &id, &status, &c)),
    );
    Report {
        txn,
        attempt,
        id,
        status,
        attestations,
        mac,
    }
}

/// Broker: checks a report's MAC with the destination's session, and that
/// the `ID` it returns is the one the broker stored for that attempt.
///
/// # Errors
/// [`ProtocolError::BadMac`], [`ProtocolError::IdMismatch`].
pub fn check_report(session_d: &Session, r: &Report, stored_id: &Tag) -> Result<(), ProtocolError> {
    let c = session_d.step(&r.txn, step::REPORT);
    check(
        mac::verify(
            session_d.key.bytes(),
            label::REPORT,
            &refs(&report_fields(&r.txn, r.attempt, &r.id, &r.status, &c)),
            &r.mac,
        ),
        ProtocolError::BadMac,
    )?;
    check(mac::ct_eq(&r.id, stored_id), ProtocolError::IdMismatch)
}

/// `ReportAck`.
pub fn make_report_ack(session_d: &Session, txn: TxnId, attempt: u32) -> ReportAck {
    let c = session_d.step(&txn, step::REPORT);
    let mac = mac::mac(
        session_d.key.bytes(),
        label::REPORT_ACK,
        &[txn.as_bytes(), &attempt.to_be_bytes(), &c],
    );
    ReportAck { txn, attempt, mac }
}

/// Destination: checks a `ReportAck`.
///
/// # Errors
/// [`ProtocolError::BadMac`].
pub fn check_report_ack(session: &Session, a: &ReportAck) -> Result<(), ProtocolError> {
    let c = session.step(&a.txn, step::REPORT);
    check(
        mac::verify(
            session.key.bytes(),
            label::REPORT_ACK,
            &[a.txn.as_bytes(), &a.attempt.to_be_bytes(), &c],
            &a.mac,
        ),
        ProtocolError::BadMac,
    )
}

// ---- phase 5 ----

/// `Notify { txn, outcome, mechanism, at, mac }` to the originator.
pub fn make_notify(
    session_o: &Session,
    txn: TxnId,
    outcome: Outcome,
    mechanism: Option<MediumKind>,
    at_ms: u64,
) -> Notify {
    let c = session_o.step(&txn, step::NOTIFY);
    let mac = mac::mac(
        session_o.key.bytes(),
        label::NOTIFY,
        &[
            txn.as_bytes(),
            &encode(&(&outcome, mechanism)),
            &at_ms.to_be_bytes(),
            &c,
        ],
    );
    Notify {
        txn,
        outcome,
        mechanism,
        at_ms,
        mac,
    }
}

/// Originator: checks a `Notify`.
///
/// # Errors
/// [`ProtocolError::BadMac`].
pub fn check_notify(session: &Session, n: &Notify) -> Result<(), ProtocolError> {
    let c = session.step(&n.txn, step::NOTIFY);
    check(
        mac::verify(
            session.key.bytes(),
            label::NOTIFY,
            &[
                n.txn.as_bytes(),
                &encode(&(&n.outcome, n.mechanism)),
                &n.at_ms.to_be_bytes(),
                &c,
            ],
            &n.mac,
        ),
        ProtocolError::BadMac,
    )
}

/// `NotifyAck`.
pub fn make_notify_ack(session_o: &Session, txn: TxnId, outcome: Outcome) -> NotifyAck {
    let c = session_o.step(&txn, step::NOTIFY);
    let mac = mac::mac(
        session_o.key.bytes(),
        label::NOTIFY_ACK,
        &[txn.as_bytes(), &encode(&outcome), &c],
    );
    NotifyAck { txn, outcome, mac }
}

/// Broker: checks a `NotifyAck`.
///
/// # Errors
/// [`ProtocolError::BadMac`].
pub fn check_notify_ack(session: &Session, a: &NotifyAck) -> Result<(), ProtocolError> {
    let c = session.step(&a.txn, step::NOTIFY);
    check(
        mac::verify(
            session.key.bytes(),
            label::NOTIFY_ACK,
            &[a.txn.as_bytes(), &encode(&a.outcome), &c],
            &a.mac,
        ),
        ProtocolError::BadMac,
    )
}

// ---- presence ----

/// `Presence { member, user, state, ts, mac }`.
pub fn make_presence(
    session: &Session,
    user: String,
    state: PresenceState,
    ts_ms: u64,
) -> PresenceFrame {
    let mac = mac::mac(
        session.key.bytes(),
        label::PRESENCE,
        &[user.as_bytes(), &encode(&state), &ts_ms.to_be_bytes()],
    );
    PresenceFrame {
        member: session.member.clone(),
        user,
        state,
        ts_ms,
        mac,
    }
}

/// Broker: checks a presence frame (MAC and skew).
///
/// # Errors
/// [`ProtocolError::WrongParty`], [`ProtocolError::SkewExceeded`], [`ProtocolError::BadMac`].
pub fn check_presence(
    session: &Session,
    p: &PresenceFrame,
    now_ms: u64,
    skew_ms: u64,
) -> Result<(), ProtocolError> {
    let fields: [&[u8]; 3] = [p.user.as_bytes(), &encode(&p.state), &p.ts_ms.to_be_bytes()];
    let stamp = (&p.member, p.ts_ms, &p.mac);
    check_session_frame(session, stamp, now_ms, skew_ms, label::PRESENCE, &fields)
}

/// The checks of a frame a member signs under its session outside any
/// transaction (presence, health, identify, watch): the sender is the
/// session's member, its time is inside the skew window, the MAC over
/// `fields` under `label` is right.
fn check_session_frame(
    session: &Session,
    (member, ts_ms, tag): (&MemberId, u64, &Tag),
    now_ms: u64,
    skew_ms: u64,
    label: &str,
    fields: &[&[u8]],
) -> Result<(), ProtocolError> {
    check(*member == session.member, ProtocolError::WrongParty)?;
    check(
        now_ms.abs_diff(ts_ms) <= skew_ms,
        ProtocolError::SkewExceeded,
    )?;
    check(
        mac::verify(session.key.bytes(), label, fields, tag),
        ProtocolError::BadMac,
    )
}

/// Member: a health frame.
pub fn make_health(session: &Session, up: bool, detail: String, ts_ms: u64) -> HealthFrame {
    let mac = mac::mac(
        session.key.bytes(),
        label::HEALTH,
        &[&[u8::from(up)], detail.as_bytes(), &ts_ms.to_be_bytes()],
    );
    HealthFrame {
        member: session.member.clone(),
        up,
        detail,
        ts_ms,
        mac,
    }
}

/// Broker: checks a health frame (MAC and skew).
///
/// # Errors
/// [`ProtocolError::WrongParty`], [`ProtocolError::SkewExceeded`], [`ProtocolError::BadMac`].
pub fn check_health(
    session: &Session,
    h: &HealthFrame,
    now_ms: u64,
    skew_ms: u64,
) -> Result<(), ProtocolError> {
    let fields: [&[u8]; 3] = [
        &[u8::from(h.up)],
        h.detail.as_bytes(),
        &h.ts_ms.to_be_bytes(),
    ];
    let stamp = (&h.member, h.ts_ms, &h.mac);
    check_session_frame(session, stamp, now_ms, skew_ms, label::HEALTH, &fields)
}

// ---- identify (remote IM gateways) ----

/// IM gateway: asks whose token has SHA-256 `token_sha256` (request `req`).
pub fn make_identify(session: &Session, req: u64, token_sha256: [u8; 32], ts_ms: u64) -> Identify {
    let mac = mac::mac(
        session.key.bytes(),
        label::IDENTIFY,
        &[&req.to_be_bytes(), &token_sha256, &ts_ms.to_be_bytes()],
    );
    Identify {
        member: session.member.clone(),
        req,
        token_sha256,
        ts_ms,
        mac,
    }
}

/// Broker: checks an identify frame (member, skew, MAC).
///
/// # Errors
/// [`ProtocolError::WrongParty`], [`ProtocolError::SkewExceeded`], [`ProtocolError::BadMac`].
pub fn check_identify(
    session: &Session,
    f: &Identify,
    now_ms: u64,
    skew_ms: u64,
) -> Result<(), ProtocolError> {
    let fields: [&[u8]; 3] = [
        &f.req.to_be_bytes(),
        &f.token_sha256,
        &f.ts_ms.to_be_bytes(),
    ];
    let stamp = (&f.member, f.ts_ms, &f.mac);
    check_session_frame(session, stamp, now_ms, skew_ms, label::IDENTIFY, &fields)
}

fn identity_fields(
    req: u64,
    token_sha256: &[u8; 32],
    user: Option<&str>,
    contacts: &[String],
) -> Vec<u8> {
    // `None` and `Some("")` must differ: a presence byte, then the id.
    let mut v = req.to_be_bytes().to_vec();
    v.extend_from_slice(token_sha256);
    match user {
        Some(u) => {
            v.push(1);
            v.extend_from_slice(u.as_bytes());
        }
        None => v.push(0),
    }
    v.extend_from_slice(&encode(&contacts));
    v
}

/// Broker: the answer to an identify frame.
pub fn make_identity(
    session: &Session,
    req: u64,
    token_sha256: &[u8; 32],
    user: Option<String>,
    contacts: Vec<String>,
) -> Identity {
    let mac = mac::mac(
        session.key.bytes(),
        label::IDENTITY,
        &[&identity_fields(
            req,
            token_sha256,
            user.as_deref(),
            &contacts,
        )],
    );
    Identity {
        req,
        user,
        contacts,
        mac,
    }
}

/// IM gateway: checks the broker's answer to its request for
/// `token_sha256`.
///
/// # Errors
/// [`ProtocolError::BadMac`].
pub fn check_identity(
    session: &Session,
    i: &Identity,
    token_sha256: &[u8; 32],
) -> Result<(), ProtocolError> {
    check(
        mac::verify(
            session.key.bytes(),
            label::IDENTITY,
            &[&identity_fields(
                i.req,
                token_sha256,
                i.user.as_deref(),
                &i.contacts,
            )],
            &i.mac,
        ),
        ProtocolError::BadMac,
    )
}

/// IM gateway: follows the presence of `users`.
pub fn make_watch(session: &Session, users: Vec<String>, ts_ms: u64) -> Watch {
    let mac = mac::mac(
        session.key.bytes(),
        label::WATCH,
        &[&encode(&users), &ts_ms.to_be_bytes()],
    );
    Watch {
        member: session.member.clone(),
        users,
        ts_ms,
        mac,
    }
}

/// Broker: checks a watch frame (member, skew, MAC).
///
/// # Errors
/// [`ProtocolError::WrongParty`], [`ProtocolError::SkewExceeded`], [`ProtocolError::BadMac`].
pub fn check_watch(
    session: &Session,
    w: &Watch,
    now_ms: u64,
    skew_ms: u64,
) -> Result<(), ProtocolError> {
    let fields: [&[u8]; 2] = [&encode(&w.users), &w.ts_ms.to_be_bytes()];
    let stamp = (&w.member, w.ts_ms, &w.mac);
    check_session_frame(session, stamp, now_ms, skew_ms, label::WATCH, &fields)
}

// ---- idempotency ----

/// Which steps of which transactions were already processed, so a repeated
/// frame is answered again without changing state. Keyed on
/// `(txn, step, attempt, variant)`; `variant` separates e.g. a `Delivered`
/// report from the later `Read` report of the same attempt.
#[derive(Debug, Default)]
pub struct StepLog {
    seen: HashSet<(TxnId, u8, u32, u8)>,
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
        check(
            self.seen.insert((txn, step, attempt, variant)),
            ProtocolError::ReplayedStep,
        )
    }

    /// Forgets a closed transaction.
    pub fn forget(&mut self, txn: &TxnId) {
        self.seen.retain(|(t, ..)| t != txn);
    }

    /// How many steps are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// A report status's variant number (for [`StepLog`]).
pub fn status_variant(s: &ReportStatus) -> u8 {
    match s {
        ReportStatus::Delivered => 0,
        ReportStatus::Read => 1,
        ReportStatus::NonDelivery(_) => 2,
        ReportStatus::Blocked(_) => 3,
        ReportStatus::Expired => 4,
    }
}

#[cfg(test)]
mod tests;
