//! One test per check of a frame: the exact error variant, and that a
//! refused frame changes no state.

use super::*;
use crate::protocol::ids::{Address, MediumKind, MemberId, TxnId};
use crate::protocol::imi::{BrokerImi, Imi, Priority, Route, To};
use crate::protocol::keys::{KeyRing, MemberKeys, SecretKey};
use crate::protocol::mac::sha256;
use crate::protocol::tscs::{NonceCache, Session};

const NOW: u64 = 1_700_000_000_000;

struct Fixture {
    ring: KeyRing,
    k2: SecretKey,
    origin: Session,
    dest: Session,
    dest_key: SecretKey,
    other_key: SecretKey,
}

fn session(v: &LoginVerifier, m: &MemberKeys, cache: &mut NonceCache) -> Session {
    let (id, key) = m.current();
    let p = start_login(m.member.clone(), id, key.clone(), &v.broker, NOW);
    let (ack, s) = v.accept(&p.login, NOW, cache).unwrap();
    assert_eq!(
        finish_login(&p, &ack, NOW).unwrap(),
        Session {
            established_ms: NOW,
            ..s.clone()
        }
    );
    s
}

fn fixture() -> Fixture {
    let ring = KeyRing::new(0);
    let o = MemberKeys::generate(MemberId::new("gw-o"), Some(MediumKind::Im));
    let d = MemberKeys::generate(MemberId::new("gw-d"), Some(MediumKind::Im));
    let x = MemberKeys::generate(MemberId::new("gw-x"), Some(MediumKind::Im));
    for m in [&o, &d, &x] {
        ring.put(m.clone());
    }
    let v = LoginVerifier {
        broker: "b".into(),
        skew_ms: 30_000,
        ring: ring.clone(),
    };
    let mut cache = NonceCache::default();
    Fixture {
        origin: session(&v, &o, &mut cache),
        dest: session(&v, &d, &mut cache),
        dest_key: d.current().1.clone(),
        other_key: x.current().1.clone(),
        k2: SecretKey::generate(),
        ring,
    }
}

fn imi(content: &[u8]) -> Imi {
    Imi {
        txn: TxnId::generate(NOW),
        originator: MemberId::new("gw-o"),
        sender: Address::new(MediumKind::Im, "alice"),
        sender_user: Some("alice".into()),
        recipient: To::User("bob".into()),
        content_type: "text/plain".into(),
        content_len: content.len() as u64,
        content_sha256: sha256(content),
        subject: None,
        priority: Priority::Normal,
        expires_at_ms: NOW + 60_000,
        created_at_ms: NOW,
        receipt: true,
        attributes: vec![],
    }
}

fn broker_imi(imi: Imi, dest: &str) -> BrokerImi {
    BrokerImi {
        imi,
        route: Route {
            mechanism: MediumKind::Im,
            address: "bob".into(),
            recipient_user: Some("bob".into()),
            destination: MemberId::new(dest),
            processors: vec![],
            archive: None,
            store_and_forward: false,
        },
        attempt: 1,
        tags: vec![],
    }
}

fn release(f: &Fixture, content: &[u8]) -> Release {
    let b = broker_imi(imi(content), "gw-d");
    let id = inner_id(&f.k2, &b);
    make_release(&f.origin, &f.ring, b, id).unwrap()
}

#[test]
fn a_whole_transaction_verifies() {
    let f = fixture();
    let s = make_submit(&f.origin, imi(b"hi"));
    check_submit(&f.origin, &s, NOW).unwrap();
    let r = release(&f, b"hi");
    check_release(&f.origin, &r).unwrap();
    check_release_ack(&f.origin, &make_release_ack(&f.origin, r.imi.imi.txn, 1)).unwrap();
    let t = make_transmit(&r, &MemberId::new("gw-d"), b"hi".to_vec()).unwrap();
    check_transmit(&MemberId::new("gw-d"), &f.dest_key, &t, NOW).unwrap();
    let rep = make_report(
        &f.dest,
        t.imi.imi.txn,
        1,
        t.id,
        ReportStatus::Delivered,
        vec![],
    );
    check_report(&f.dest, &rep, &r.id).unwrap();
    check_report_ack(&f.dest, &make_report_ack(&f.dest, rep.txn, 1)).unwrap();
    let n = make_notify(
        &f.origin,
        rep.txn,
        Outcome::Delivered,
        Some(MediumKind::Im),
        NOW,
    );
    check_notify(&f.origin, &n).unwrap();
    check_notify_ack(
        &f.origin,
        &make_notify_ack(&f.origin, rep.txn, Outcome::Delivered),
    )
    .unwrap();
}

#[test]
fn submit_with_wrong_mac_is_refused() {
    let f = fixture();
    let mut s = make_submit(&f.origin, imi(b"hi"));
    s.imi.content_len += 1; // tampered after signing
    assert_eq!(check_submit(&f.origin, &s, NOW), Err(ProtocolError::BadMac));
}

#[test]
fn submit_signed_by_another_session_is_refused() {
    let f = fixture();
    let s = make_submit(&f.dest, imi(b"hi"));
    // The IMI names gw-o but the MAC is gw-d's.
    assert_eq!(check_submit(&f.origin, &s, NOW), Err(ProtocolError::BadMac));
    assert_eq!(
        check_submit(&f.dest, &s, NOW),
        Err(ProtocolError::WrongParty)
    );
}

#[test]
fn expired_message_is_refused_at_submit_and_at_transmit() {
    let f = fixture();
    let s = make_submit(&f.origin, imi(b"hi"));
    assert_eq!(
        check_submit(&f.origin, &s, NOW + 60_001),
        Err(ProtocolError::Expired)
    );
    let r = release(&f, b"hi");
    let t = make_transmit(&r, &MemberId::new("gw-d"), b"hi".to_vec()).unwrap();
    assert_eq!(
        check_transmit(&MemberId::new("gw-d"), &f.dest_key, &t, NOW + 60_001),
        Err(ProtocolError::Expired)
    );
}

#[test]
fn forged_release_is_refused_by_the_originator() {
    let f = fixture();
    let mut r = release(&f, b"hi");
    r.imi.route.address = "mallory".into();
    assert_eq!(check_release(&f.origin, &r), Err(ProtocolError::BadMac));
    let forged = make_rejected(&f.dest, r.imi.imi.txn, RejectReason::NoMechanism);
    assert_eq!(
        check_rejected(&f.origin, &forged),
        Err(ProtocolError::BadMac)
    );
}

#[test]
fn grant_made_for_another_hop_is_refused() {
    let f = fixture();
    let r = release(&f, b"hi");
    let t = make_transmit(&r, &MemberId::new("gw-d"), b"hi".to_vec()).unwrap();
    // gw-x presents gw-d's grant: it does not verify with gw-x's key.
    assert_eq!(
        check_transmit(&MemberId::new("gw-x"), &f.other_key, &t, NOW),
        Err(ProtocolError::BadGrant)
    );
    // And there is no grant for gw-x in the release at all.
    assert!(make_transmit(&r, &MemberId::new("gw-x"), b"hi".to_vec()).is_none());
}

#[test]
fn content_digest_mismatch_is_refused() {
    let f = fixture();
    let r = release(&f, b"hi");
    let t = make_transmit(&r, &MemberId::new("gw-d"), b"HI".to_vec()).unwrap();
    assert_eq!(
        check_transmit(&MemberId::new("gw-d"), &f.dest_key, &t, NOW),
        Err(ProtocolError::DigestMismatch)
    );
}

#[test]
fn broker_id_mismatch_at_phase_4_is_refused() {
    let f = fixture();
    let r = release(&f, b"hi");
    let mut wrong_id = r.id;
    wrong_id[0] ^= 1;
    let rep = make_report(
        &f.dest,
        r.imi.imi.txn,
        1,
        wrong_id,
        ReportStatus::Delivered,
        vec![],
    );
    assert_eq!(
        check_report(&f.dest, &rep, &r.id),
        Err(ProtocolError::IdMismatch)
    );
    // A report signed by someone else fails the MAC first.
    let rep = make_report(
        &f.origin,
        r.imi.imi.txn,
        1,
        r.id,
        ReportStatus::Delivered,
        vec![],
    );
    assert_eq!(
        check_report(&f.dest, &rep, &r.id),
        Err(ProtocolError::BadMac)
    );
}

#[test]
fn a_report_for_the_wrong_step_key_is_refused() {
    let f = fixture();
    let r = release(&f, b"hi");
    // A Delivered report replayed as a Read report keeps its MAC: refused.
    let mut rep = make_report(
        &f.dest,
        r.imi.imi.txn,
        1,
        r.id,
        ReportStatus::Delivered,
        vec![],
    );
    rep.status = ReportStatus::Read;
    assert_eq!(
        check_report(&f.dest, &rep, &r.id),
        Err(ProtocolError::BadMac)
    );
}

#[test]
fn forged_notify_is_refused() {
    let f = fixture();
    let txn = TxnId::generate(NOW);
    let mut n = make_notify(&f.origin, txn, Outcome::Undeliverable, None, NOW);
    n.outcome = Outcome::Delivered;
    assert_eq!(check_notify(&f.origin, &n), Err(ProtocolError::BadMac));
}

#[test]
fn attestations_chain_and_verify() {
    let f = fixture();
    let p = MemberKeys::generate(MemberId::new("proc-1"), None);
    f.ring.put(p.clone());
    let mut b = broker_imi(imi(b"long text"), "gw-d");
    b.route.processors = vec![MemberId::new("proc-1")];
    let id = inner_id(&f.k2, &b);
    let a = make_attestation(
        p.member.clone(),
        p.current().1,
        &id,
        b"long text",
        b"short",
        "text/plain",
        vec!["tag:big".into()],
    );
    check_attestations(&f.ring, &b, &id, std::slice::from_ref(&a), NOW).unwrap();
    let mut remarked = a.clone();
    remarked.marks.push("tag:forged".into());
    assert_eq!(
        check_attestations(&f.ring, &b, &id, &[remarked], NOW),
        Err(ProtocolError::BadAttestation),
        "the marks are attested too"
    );
    let mut retyped = a.clone();
    retyped.content_type = "application/octet-stream".into();
    assert_eq!(
        check_attestations(&f.ring, &b, &id, &[retyped], NOW),
        Err(ProtocolError::BadAttestation),
        "the output type is attested too"
    );
    let mut bad = a.clone();
    bad.digest_out[0] ^= 1;
    assert_eq!(
        check_attestations(&f.ring, &b, &id, &[bad], NOW),
        Err(ProtocolError::BadAttestation)
    );
    assert_eq!(
        check_attestations(&f.ring, &b, &id, &[], NOW),
        Err(ProtocolError::BadAttestation)
    );
    // The destination accepts converted content whose digest is the last output.
    let r = make_release(&f.origin, &f.ring, b, id).unwrap();
    let mut t = make_transmit(&r, &MemberId::new("gw-d"), b"short".to_vec()).unwrap();
    t.attestations.push(a);
    check_transmit(&MemberId::new("gw-d"), &f.dest_key, &t, NOW).unwrap();
}

#[test]
fn health_checks_mac_and_skew() {
    let f = fixture();
    let h = make_health(&f.origin, false, "SMSC unreachable".into(), NOW);
    check_health(&f.origin, &h, NOW, 30_000).unwrap();
    assert_eq!(
        check_health(&f.origin, &h, NOW + 30_001, 30_000),
        Err(ProtocolError::SkewExceeded)
    );
    let mut forged = h.clone();
    forged.up = true;
    assert_eq!(
        check_health(&f.origin, &forged, NOW, 30_000),
        Err(ProtocolError::BadMac),
        "a forged 'up' cannot attract routes"
    );
    let mut forged = h.clone();
    forged.detail = "fine".into();
    assert_eq!(
        check_health(&f.origin, &forged, NOW, 30_000),
        Err(ProtocolError::BadMac)
    );
    assert_eq!(
        check_health(&f.dest, &h, NOW, 30_000),
        Err(ProtocolError::WrongParty)
    );
}

#[test]
fn presence_checks_mac_and_skew() {
    let f = fixture();
    let p = make_presence(&f.origin, "alice".into(), PresenceState::Online, NOW);
    check_presence(&f.origin, &p, NOW, 30_000).unwrap();
    assert_eq!(
        check_presence(&f.origin, &p, NOW + 30_001, 30_000),
        Err(ProtocolError::SkewExceeded)
    );
    let mut forged = p.clone();
    forged.state = PresenceState::Offline;
    assert_eq!(
        check_presence(&f.origin, &forged, NOW, 30_000),
        Err(ProtocolError::BadMac)
    );
    assert_eq!(
        check_presence(&f.dest, &p, NOW, 30_000),
        Err(ProtocolError::WrongParty)
    );
}

#[test]
fn the_broker_id_is_the_same_under_any_session_and_differs_per_attempt() {
    let f = fixture();
    let b = broker_imi(imi(b"hi"), "gw-d");
    let id = inner_id(&f.k2, &b);
    assert_eq!(inner_id(&f.k2, &b), id, "computed again, the same");
    // Released under two different sessions, the same ID; only `outer`
    // differs, binding each release to its session.
    let r1 = make_release(&f.origin, &f.ring, b.clone(), id).unwrap();
    let r2 = make_release(&f.dest, &f.ring, b.clone(), id).unwrap();
    assert_eq!(r1.id, r2.id);
    assert_ne!(r1.outer, r2.outer);
    let mut next = b.clone();
    next.attempt = 2;
    assert_ne!(inner_id(&f.k2, &next), id, "another attempt, another ID");
    let mut rerouted = b.clone();
    rerouted.route.address = "bob2".into();
    assert_ne!(inner_id(&f.k2, &rerouted), id, "another route, another ID");
    assert_ne!(inner_id(&SecretKey::generate(), &b), id, "only K2 makes it");
}

#[test]
fn a_redirect_verifies_only_for_its_request_and_from_the_session() {
    let f = fixture();
    let digest = sha256(b"sb_erin");
    let r = make_redirect(
        &f.origin,
        7,
        &digest,
        "c".into(),
        Some("10.0.0.3:8080".into()),
    );
    check_redirect(&f.origin, &r, &digest).unwrap();
    // Moved to another request, another token, another node or address, or
    // made under another session: refused.
    assert_eq!(
        check_redirect(&f.origin, &r, &sha256(b"sb_other")),
        Err(ProtocolError::BadMac)
    );
    for forged in [
        Redirect {
            req: 8,
            ..r.clone()
        },
        Redirect {
            node: "d".into(),
            ..r.clone()
        },
        Redirect {
            http: None,
            ..r.clone()
        },
        make_redirect(
            &f.dest,
            7,
            &digest,
            "c".into(),
            Some("10.0.0.3:8080".into()),
        ),
    ] {
        assert_eq!(
            check_redirect(&f.origin, &forged, &digest),
            Err(ProtocolError::BadMac)
        );
    }
}

#[test]
fn an_archive_copy_carries_the_releases_grant_and_only_the_session_signs_it() {
    let f = fixture();
    // gw-x stands for the archive: the release grants it a copy.
    let mut b = broker_imi(imi(b"hi"), "gw-d");
    b.route.archive = Some(MemberId::new("gw-x"));
    let id = inner_id(&f.k2, &b);
    let archive = MemberId::new("gw-x");
    let r = make_release(&f.origin, &f.ring, b.clone(), id).unwrap();
    let copy = make_archive_copy(&f.origin, &f.ring, b, id, &archive).unwrap();
    check_archive_copy(&f.origin, &copy).unwrap();
    // The same grant the release gave the archive: its copy verifies there
    // as the first one did, however late (a copy is a fact, not a delivery).
    let first = make_transmit(&r, &archive, b"hi".to_vec()).unwrap();
    let again = copy.transmit(b"hi".to_vec());
    check_copy(&archive, &f.other_key, &first).unwrap();
    check_copy(&archive, &f.other_key, &again).unwrap();
    assert_eq!(
        check_transmit(&archive, &f.other_key, &again, NOW + 60_001),
        Err(ProtocolError::Expired)
    );
    assert_eq!(
        check_copy(&archive, &f.other_key, &copy.transmit(b"ho".to_vec())),
        Err(ProtocolError::DigestMismatch)
    );
    assert_eq!(
        check_copy(&MemberId::new("gw-d"), &f.dest_key, &again),
        Err(ProtocolError::BadGrant),
        "a copy grants no other hop"
    );
    // Forged: another session's MAC, or the route changed after signing.
    assert_eq!(
        check_archive_copy(&f.dest, &copy),
        Err(ProtocolError::BadMac)
    );
    let mut changed = copy.clone();
    changed.imi.route.address = "mallory".into();
    assert_eq!(
        check_archive_copy(&f.origin, &changed),
        Err(ProtocolError::BadMac)
    );
}
