//! The broker's decisions, tested on the state machine alone: no actors, no
//! store, no network. A [`TestEnv`] stands in for the broker around it
//! (sessions made with the real TSCS functions, a map as the store, a small
//! route decider over the real delivery policy); every frame is made with
//! the protocol functions a real member uses.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::policy::{built_in, choose, delivery_policy, Dispatch, Managers, Reach};
use crate::protocol::clock::{Clock, ManualClock};
use crate::protocol::frames::{
    self, finish_login, make_report, make_submit, start_login, LoginVerifier,
};
use crate::protocol::tscs::NonceCache;
use crate::protocol::{mac, Address, MemberKeys, Notify, Priority, Release, Session, To};
use crate::store::records::dec;

const NOW: u64 = 1_800_000_000_000;

/// The broker around the machine.
struct TestEnv {
    clock: ManualClock,
    ring: KeyRing,
    k2: SecretKey,
    sessions: RefCell<HashMap<MemberId, SessionPair>>,
    /// The store: what the machine asked to persist, decoded.
    store: RefCell<HashMap<TxnId, TxnRecord>>,
    /// Users and their mechanisms, in preference order.
    users: HashMap<String, Vec<(MediumKind, String)>>,
    /// Users' delivery manager per priority.
    prefs: RefCell<HashMap<String, BTreeMap<String, String>>>,
    managers: RefCell<Managers>,
    /// The live gateway of each medium.
    gateways: HashMap<MediumKind, MemberId>,
    /// The processors every route passes.
    processors: RefCell<Vec<MemberId>>,
    /// What policy's meta stage decides for every message.
    verdict: RefCell<crate::policy::Verdict>,
    /// The archive every message is archived in, with its member.
    archive: RefCell<Option<(String, MemberId)>>,
}

impl Env for TestEnv {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn session(&self, member: &MemberId, _now_ms: u64) -> Result<SessionPair, ProtocolError> {
        self.sessions
            .borrow()
            .get(member)
            .cloned()
            .ok_or(ProtocolError::NoSession)
    }

    fn ring(&self) -> &KeyRing {
        &self.ring
    }

    fn k2(&self) -> &SecretKey {
        &self.k2
    }

    fn stored(&self, txn: &TxnId) -> Result<Option<TxnRecord>, StoreError> {
        Ok(self.store.borrow().get(txn).cloned())
    }

    fn plan(
        &self,
        imi: &Imi,
        manager: Option<&ManagerChoice>,
        tried: &[MediumKind],
    ) -> Result<(ManagerChoice, Vec<Route>), RejectReason> {
        let To::User(user) = &imi.recipient else {
            return Err(RejectReason::NoMechanism);
        };
        let mechanisms = self.users.get(user).ok_or(RejectReason::UnknownRecipient)?;
        let choice = match manager {
            Some(m) => m.clone(),
            None => choose(
                &self.managers.borrow(),
                "sequential",
                self.prefs.borrow().get(user),
                imi.priority,
            ),
        };
        let policy = delivery_policy(
            mechanisms,
            &choice.config,
            |m| self.gateways.contains_key(&m),
            |_| Reach::Unknown,
            tried,
        );
        let picks = match choice.dispatch {
            Dispatch::Sequential => policy.candidates.into_iter().take(1).collect(),
            Dispatch::Parallel => policy.candidates,
        };
        let routes: Vec<Route> = picks
            .into_iter()
            .map(|(mechanism, address)| Route {
                mechanism,
                address,
                recipient_user: Some(user.clone()),
                destination: self.gateways[&mechanism].clone(),
                processors: vec![],
                archive: None,
                store_and_forward: false,
            })
            .collect();
        if routes.is_empty() {
            return Err(RejectReason::NoMechanism);
        }
        let processors = self.processors.borrow();
        let routes = (routes.into_iter())
            .map(|r| Route {
                processors: processors.clone(),
                ..r
            })
            .collect();
        Ok((choice, routes))
    }

    /// `gw-im-2` takes IM routes, `sms-only` SMS routes (as `gw-sms`);
    /// node `c` places anything; nothing else can be redirected to.
    fn redirect(&self, route: &mut Route, to: &str) -> Option<Redirected> {
        match (to, route.mechanism) {
            ("gw-im-2", MediumKind::Im) => {
                route.destination = MemberId::new("gw-im-2");
                Some(Redirected::Gateway)
            }
            ("sms-only", MediumKind::Sms) => Some(Redirected::Gateway),
            ("c", _) => Some(Redirected::Node("c".into())),
            _ => None,
        }
    }

    fn admit(&self, _imi: &Imi, _medium: Option<MediumKind>) -> crate::policy::Decision {
        crate::policy::Decision {
            verdict: self.verdict.borrow().clone(),
            archive: self.archive.borrow().as_ref().map(|(name, _)| name.clone()),
            ..crate::policy::Decision::allow()
        }
    }

    fn archive_member(&self) -> Option<MemberId> {
        self.archive.borrow().as_ref().map(|(_, m)| m.clone())
    }
}

/// A member: its keys and its side of the session.
struct Member {
    id: MemberId,
    session: Session,
}

struct World {
    env: TestEnv,
    txns: Transactions,
    im: Member,
    sms: Member,
    /// A content filter (on routes when `env.processors` names it).
    filter: Member,
    /// Every frame the machine sent, in order, not yet taken.
    sent: Vec<(MemberId, Frame)>,
    accounts: Vec<AccountingRecord>,
}

/// Logs `keys` in with the real TSCS functions: the member's session, and
/// the broker's (kept in the env).
fn login(env: &TestEnv, keys: &MemberKeys, cache: &mut NonceCache) -> Member {
    let v = LoginVerifier {
        broker: "broker-1".into(),
        skew_ms: 30_000,
        ring: env.ring.clone(),
    };
    let (key_id, key) = keys.current();
    let p = start_login(keys.member.clone(), key_id, key.clone(), "broker-1", NOW);
    let (ack, broker_side) = v.accept(&p.login, NOW, cache).unwrap();
    env.sessions
        .borrow_mut()
        .insert(keys.member.clone(), SessionPair::new(broker_side));
    Member {
        id: keys.member.clone(),
        session: finish_login(&p, &ack, NOW).unwrap(),
    }
}

fn world() -> World {
    let im_keys = MemberKeys::generate(MemberId::new("gw-im"), Some(MediumKind::Im));
    let sms_keys = MemberKeys::generate(MemberId::new("gw-sms"), Some(MediumKind::Sms));
    let filter_keys = MemberKeys::generate(MemberId::new("proc-filter-1"), None);
    let ring = KeyRing::new(0);
    ring.put(im_keys.clone());
    ring.put(sms_keys.clone());
    ring.put(filter_keys.clone());
    let env = TestEnv {
        clock: ManualClock::at(NOW),
        ring,
        k2: SecretKey::generate(),
        sessions: RefCell::default(),
        store: RefCell::default(),
        users: HashMap::from([
            ("alice".to_string(), vec![(MediumKind::Im, "alice".into())]),
            (
                "bob".to_string(),
                vec![
                    (MediumKind::Im, "bob".into()),
                    (MediumKind::Sms, "+49151".into()),
                ],
            ),
        ]),
        prefs: RefCell::default(),
        managers: RefCell::new(built_in().into_iter().collect()),
        gateways: HashMap::from([
            (MediumKind::Im, im_keys.member.clone()),
            (MediumKind::Sms, sms_keys.member.clone()),
        ]),
        processors: RefCell::default(),
        verdict: RefCell::new(crate::policy::Verdict::Allow),
        archive: RefCell::default(),
    };
    let mut cache = NonceCache::default();
    let im = login(&env, &im_keys, &mut cache);
    let sms = login(&env, &sms_keys, &mut cache);
    let filter = login(&env, &filter_keys, &mut cache);
    World {
        env,
        txns: Transactions::new(),
        im,
        sms,
        filter,
        sent: Vec::new(),
        accounts: Vec::new(),
    }
}

fn refused(r: Result<(), ProtocolError>) -> ProtocolError {
    r.expect_err("the frame is refused")
}

impl World {
    /// Carries out what a step decided, as the shard does: records into
    /// the store first, then accounting, then frames.
    fn apply(&mut self, out: Effects) {
        for (txn, w) in out.records {
            let mut store = self.env.store.borrow_mut();
            let rec = match w {
                TxnWrite::Full { whole, .. } => dec(&whole, "txn").unwrap(),
                // What the store resolves the delta to is the record the
                // machine holds (the writer stores `whole`, recovery the
                // merge).
                TxnWrite::Delta { whole, delta } => {
                    let mut rec: TxnRecord =
                        store.remove(&txn).expect("a delta follows the record");
                    rec.apply(delta);
                    assert_eq!(rec, dec::<TxnRecord>(&whole, "txn").unwrap());
                    rec
                }
            };
            store.insert(txn, rec);
        }
        self.accounts
            .extend(out.accounting.into_iter().map(|(_, a)| a));
        self.sent.extend(out.frames);
    }

    /// Hands `frame` from `from` to the machine; the machine's answer.
    fn send(&mut self, from: &MemberId, frame: Frame) -> Result<(), ProtocolError> {
        let mut out = Effects::default();
        let env = &self.env;
        let r = match frame {
            Frame::Submit(s) => self.txns.submit(env, &mut out, from, s),
            Frame::ReleaseAck(a) => self.txns.release_ack(env, from, a),
            Frame::Report(r) => self.txns.report(env, &mut out, from, r),
            Frame::NotifyAck(a) => self.txns.notify_ack(env, from, a),
            other => panic!("not a transaction frame: {}", other.kind()),
        };
        self.apply(out);
        r
    }

    /// Moves the clock and applies what is due.
    fn tick(&mut self, ms: u64) {
        self.env.clock.advance(ms);
        let mut out = Effects::default();
        self.txns.timeouts(&self.env, &mut out);
        self.apply(out);
    }

    /// Removes and returns the first frame to `to` that `pick` accepts.
    fn take<T>(&mut self, to: &MemberId, what: &str, pick: impl Fn(&Frame) -> Option<T>) -> T {
        let i = self
            .sent
            .iter()
            .position(|(t, f)| t == to && pick(f).is_some())
            .unwrap_or_else(|| {
                let kinds: Vec<_> = self.sent.iter().map(|(t, f)| (t, f.kind())).collect();
                panic!("no {what} for {to}; sent: {kinds:?}")
            });
        pick(&self.sent.remove(i).1).unwrap()
    }

    /// Asserts nothing `pick` accepts was sent to `to`.
    fn none<T>(&self, to: &MemberId, what: &str, pick: impl Fn(&Frame) -> Option<T>) {
        assert!(
            !self.sent.iter().any(|(t, f)| t == to && pick(f).is_some()),
            "unexpected {what} for {to}"
        );
    }

    fn imi(&self, to: To) -> Imi {
        let now = self.env.clock.now_ms();
        Imi {
            txn: TxnId::generate(now),
            originator: self.im.id.clone(),
            sender: Address::new(MediumKind::Im, "alice"),
            sender_user: Some("alice".into()),
            recipient: to,
            content_type: "text/plain".into(),
            content_len: 5,
            content_sha256: mac::sha256(b"hello"),
            subject: None,
            priority: Priority::Normal,
            expires_at_ms: now + 3_600_000,
            created_at_ms: now,
            receipt: true,
            attributes: vec![],
        }
    }

    /// The originator submits `imi`; the release it gets (checked as the
    /// originator checks it).
    fn submit(&mut self, imi: Imi) -> Release {
        let f = Frame::Submit(make_submit(&self.im.session, imi));
        let from = self.im.id.clone();
        self.send(&from, f).unwrap();
        let r = self.next_release();
        frames::check_release(&self.im.session, &r)
            .expect("the release verifies at the originator");
        r
    }

    fn next_release(&mut self) -> Release {
        let to = self.im.id.clone();
        self.take(&to, "release", release_frame)
    }

    fn report(&self, by: &Member, r: &Release, status: ReportStatus) -> Report {
        make_report(
            &by.session,
            r.imi.imi.txn,
            r.imi.attempt,
            r.id,
            status,
            vec![],
        )
    }

    /// `by` reports `status` on the release `r`; the machine's answer.
    fn report_from(
        &mut self,
        by: Who,
        r: &Release,
        status: ReportStatus,
    ) -> Result<(), ProtocolError> {
        let m = self.member(by);
        let f = Frame::Report(self.report(m, r, status));
        let id = m.id.clone();
        self.send(&id, f)
    }

    fn member(&self, who: Who) -> &Member {
        match who {
            Who::Im => &self.im,
            Who::Sms => &self.sms,
            Who::Filter => &self.filter,
        }
    }

    /// A reviewer decides on `txn`.
    fn review(&mut self, txn: &TxnId, d: Review) -> Result<TxnStatus, ReviewError> {
        let mut out = Effects::default();
        let r = self.txns.review(&self.env, &mut out, txn, d, "admin");
        self.apply(out);
        r
    }

    fn held(&mut self) -> frames::Held {
        let to = self.im.id.clone();
        self.take(&to, "held", |f| match f {
            Frame::Held(h) => Some(h.clone()),
            _ => None,
        })
    }

    fn notify(&mut self) -> Notify {
        let to = self.im.id.clone();
        self.take(&to, "notify", |f| match f {
            Frame::Notify(n) => Some(n.clone()),
            _ => None,
        })
    }

    fn stored(&self, txn: &TxnId) -> Option<TxnRecord> {
        self.env.store.borrow().get(txn).cloned()
    }
}

#[derive(Debug, Clone, Copy)]
enum Who {
    Im,
    Sms,
    Filter,
}

fn release_frame(f: &Frame) -> Option<Release> {
    match f {
        Frame::Release(r) => Some((**r).clone()),
        _ => None,
    }
}

fn is(f: impl Fn(&Frame) -> bool) -> impl Fn(&Frame) -> Option<()> {
    move |x| f(x).then_some(())
}

#[test]
fn submit_release_report_notify_account() {
    let mut w = world();
    let r = w.submit(w.imi(To::User("bob".into())));
    assert_eq!(r.imi.route.mechanism, MediumKind::Im);
    assert_eq!(r.imi.route.destination, w.im.id);
    assert_eq!(r.imi.attempt, 1);
    assert_eq!(r.grants.len(), 1);
    let ack = frames::make_release_ack(&w.im.session, r.imi.imi.txn, 1);
    let im = w.im.id.clone();
    w.send(&im, Frame::ReleaseAck(ack)).unwrap();
    w.report_from(Who::Im, &r, ReportStatus::Delivered).unwrap();
    let ack = w.take(&im, "report ack", |f| match f {
        Frame::ReportAck(a) => Some(a.clone()),
        _ => None,
    });
    frames::check_report_ack(&w.im.session, &ack).unwrap();
    let n = w.notify();
    frames::check_notify(&w.im.session, &n).unwrap();
    assert_eq!(
        (n.outcome, n.mechanism),
        (Outcome::Delivered, Some(MediumKind::Im))
    );
    let rec = w.stored(&r.imi.imi.txn).unwrap();
    assert_eq!(rec.status, TxnStatus::Delivered);
    assert_eq!(rec.attempts[0].outcome.as_deref(), Some("delivered"));
    assert_eq!(w.accounts.len(), 1);
    assert_eq!(w.accounts[0].outcome, "delivered");
    assert_eq!(w.accounts[0].sender, "alice");

    assert_eq!(w.txns.len(), 1);
    let ack = frames::make_notify_ack(&w.im.session, r.imi.imi.txn, Outcome::Delivered);
    w.send(&im, Frame::NotifyAck(ack)).unwrap();
    assert_eq!(w.txns.len(), 0, "closed work leaves memory");
    // A Read report after closing reloads the record and notifies again.
    w.report_from(Who::Im, &r, ReportStatus::Read).unwrap();
    assert_eq!(w.notify().outcome, Outcome::Read);
    assert_eq!(w.stored(&r.imi.imi.txn).unwrap().status, TxnStatus::Read);
}

#[test]
fn forged_submit_changes_nothing() {
    let mut w = world();
    let imi = w.imi(To::User("bob".into()));
    let txn = imi.txn;
    let mut sub = make_submit(&w.im.session, imi.clone());
    sub.imi.recipient = To::User("alice".into());
    let im = w.im.id.clone();
    assert_eq!(
        refused(w.send(&im, Frame::Submit(sub))),
        ProtocolError::BadMac
    );
    // Signed by another member's session, in the originator's name.
    let sub = make_submit(&w.sms.session, imi.clone());
    let sms = w.sms.id.clone();
    assert_eq!(
        refused(w.send(&sms, Frame::Submit(sub))),
        ProtocolError::WrongParty
    );
    w.none(&im, "release", release_frame);
    assert_eq!(w.stored(&txn), None);
    assert!(w.sent.is_empty(), "a refused frame sends nothing");
}

#[test]
fn replayed_report_and_submit_are_answered_again_without_state_change() {
    let mut w = world();
    let r = w.submit(w.imi(To::User("bob".into())));
    let rep = w.report(&w.im, &r, ReportStatus::Delivered);
    let im = w.im.id.clone();
    w.send(&im, Frame::Report(rep.clone())).unwrap();
    w.notify();
    w.send(&im, Frame::Report(rep)).unwrap();
    w.take(
        &im,
        "first report ack",
        is(|f| matches!(f, Frame::ReportAck(_))),
    );
    w.take(
        &im,
        "second report ack",
        is(|f| matches!(f, Frame::ReportAck(_))),
    );
    w.none(&im, "second notify", is(|f| matches!(f, Frame::Notify(_))));
    assert_eq!(w.accounts.len(), 1, "accounted once");

    // The same Submit again after delivery: the outcome is told again,
    // nothing is released or stored anew.
    let before = w.stored(&r.imi.imi.txn).unwrap();
    let sub = make_submit(&w.im.session, r.imi.imi.clone());
    let records = w.env.store.borrow().len();
    let mut out = Effects::default();
    w.txns.submit(&w.env, &mut out, &im, sub).unwrap();
    assert!(out.records.is_empty(), "nothing stored anew");
    w.apply(out);
    assert_eq!(w.notify().outcome, Outcome::Delivered);
    w.none(&im, "release", release_frame);
    assert_eq!(before, w.stored(&r.imi.imi.txn).unwrap());
    assert_eq!(records, w.env.store.borrow().len());
}

/// A concluded archived transaction resubmitted (its originator restarted
/// before the archive acknowledged its copy) is answered with the copy's
/// grant again, then the outcome; the archive hears of it again.
#[test]
fn resubmitted_concluded_archived_transaction_asks_for_the_copy_again() {
    let mut w = world();
    let archive = MemberId::new("gw-sms"); // any member with a key
    *w.env.archive.borrow_mut() = Some(("legal".into(), archive.clone()));
    let r = w.submit(w.imi(To::User("bob".into())));
    assert_eq!(r.imi.route.archive.as_ref(), Some(&archive));
    let mut out = Effects::default();
    let im = w.im.id.clone();
    let rep = w.report(&w.im, &r, ReportStatus::Delivered);
    w.txns.report(&w.env, &mut out, &im, rep).unwrap();
    assert_eq!(out.archived.len(), 1, "the archive hears of the conclusion");
    w.apply(out);
    w.notify();
    w.sent.clear();

    let mut out = Effects::default();
    let sub = make_submit(&w.im.session, r.imi.imi.clone());
    w.txns.submit(&w.env, &mut out, &im, sub).unwrap();
    let archived: Vec<_> = out.archived.iter().map(|a| a.status.clone()).collect();
    assert_eq!(archived, vec![TxnStatus::Delivered], "told again");
    w.apply(out);
    let kinds: Vec<_> = (w.sent.iter()).map(|(_, f)| f.kind()).collect();
    assert_eq!(kinds, ["archive_copy", "notify"], "the copy first");
    let copy = w.take(&im, "archive copy", |f| match f {
        Frame::ArchiveCopy(a) => Some((**a).clone()),
        _ => None,
    });
    frames::check_archive_copy(&w.im.session, &copy).unwrap();
    let t = copy.transmit(b"hello".to_vec());
    let first = frames::make_transmit(&r, &archive, b"hello".to_vec()).unwrap();
    assert_eq!(t.grants[0], first.grants[1], "the grant the release gave");
    assert_eq!(t.id, r.id);

    // Without an archive, a resubmission is answered with the outcome only.
    *w.env.archive.borrow_mut() = None;
    let plain = w.submit(w.imi(To::User("bob".into())));
    w.report_from(Who::Im, &plain, ReportStatus::Delivered)
        .unwrap();
    w.sent.clear();
    let mut out = Effects::default();
    let sub = make_submit(&w.im.session, plain.imi.imi.clone());
    w.txns.submit(&w.env, &mut out, &im, sub).unwrap();
    assert!(out.archived.is_empty());
    w.apply(out);
    let kinds: Vec<_> = (w.sent.iter()).map(|(_, f)| f.kind()).collect();
    assert_eq!(kinds, ["notify"]);
}

#[test]
fn resubmitted_open_transaction_gets_the_same_release() {
    let mut w = world();
    let r = w.submit(w.imi(To::User("bob".into())));
    let again = w.submit(r.imi.imi.clone());
    assert_eq!(
        (again.id, again.imi.attempt),
        (r.id, 1),
        "same ID, same attempt"
    );
    assert_eq!(w.stored(&r.imi.imi.txn).unwrap().attempts.len(), 1);
}

#[test]
fn report_with_wrong_id_or_from_the_wrong_member_is_refused() {
    let mut w = world();
    let r = w.submit(w.imi(To::User("bob".into())));
    let mut bad = r.clone();
    bad.id[0] ^= 1;
    assert_eq!(
        refused(w.report_from(Who::Im, &bad, ReportStatus::Delivered)),
        ProtocolError::IdMismatch
    );
    assert_eq!(
        refused(w.report_from(Who::Sms, &r, ReportStatus::Delivered)),
        ProtocolError::WrongParty
    );
    let im = w.im.id.clone();
    w.none(&im, "notify", is(|f| matches!(f, Frame::Notify(_))));
    assert_eq!(
        w.stored(&r.imi.imi.txn).unwrap().status,
        TxnStatus::Released
    );
}

#[test]
fn non_delivery_fails_over_then_undeliverable_lists_every_attempt() {
    let mut w = world();
    let r1 = w.submit(w.imi(To::User("bob".into())));
    assert_eq!(r1.imi.route.mechanism, MediumKind::Im);
    w.report_from(Who::Im, &r1, ReportStatus::NonDelivery("offline".into()))
        .unwrap();
    let r2 = w.next_release();
    assert_eq!(
        (r2.imi.attempt, r2.imi.route.mechanism),
        (2, MediumKind::Sms)
    );
    assert_eq!(r2.imi.route.destination, w.sms.id);
    assert_eq!(r2.imi.route.address, "+49151");
    w.report_from(Who::Sms, &r2, ReportStatus::NonDelivery("no signal".into()))
        .unwrap();
    let n = w.notify();
    assert_eq!(n.outcome, Outcome::Undeliverable);
    let rec = w.stored(&r1.imi.imi.txn).unwrap();
    assert_eq!(rec.status, TxnStatus::Undeliverable);
    let attempts: Vec<_> = rec
        .attempts
        .iter()
        .map(|a| {
            (
                a.route.mechanism,
                a.outcome.clone().unwrap(),
                a.reason.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        vec![
            (MediumKind::Im, "non_delivery".into(), "offline".into()),
            (MediumKind::Sms, "non_delivery".into(), "no signal".into()),
        ]
    );
    assert_eq!(w.accounts[0].outcome, "undeliverable");
}

#[test]
fn unknown_recipient_and_expired_messages_are_rejected() {
    let mut w = world();
    let imi = w.imi(To::User("nobody".into()));
    let im = w.im.id.clone();
    w.send(&im, Frame::Submit(make_submit(&w.im.session, imi.clone())))
        .unwrap();
    let rej = w.take(&im, "rejected", |f| match f {
        Frame::Rejected(r) => Some(r.clone()),
        _ => None,
    });
    frames::check_rejected(&w.im.session, &rej).unwrap();
    assert_eq!(rej.reason, RejectReason::UnknownRecipient);
    assert_eq!(
        w.stored(&imi.txn).unwrap().status,
        TxnStatus::Rejected("unknown_recipient".into())
    );
    assert_eq!(w.txns.len(), 0);

    let mut imi = w.imi(To::User("bob".into()));
    imi.expires_at_ms = NOW + 1_000;
    w.env.clock.advance(1_001);
    assert_eq!(
        refused(w.send(&im, Frame::Submit(make_submit(&w.im.session, imi.clone())))),
        ProtocolError::Expired
    );
    assert_eq!(w.stored(&imi.txn), None);
}

#[test]
fn a_failure_after_the_expiry_concludes_expired_instead_of_retrying() {
    // The machine checks the expiry before it asks for a route (the test
    // env would route it to SMS): a failure reported after the message's
    // time is up ends it as expired.
    let mut w = world();
    let mut imi = w.imi(To::User("bob".into()));
    imi.expires_at_ms = NOW + 61_000;
    let r1 = w.submit(imi);
    w.env.clock.advance(61_001);
    w.report_from(Who::Im, &r1, ReportStatus::NonDelivery("offline".into()))
        .unwrap();
    assert_eq!(w.notify().outcome, Outcome::Expired);
    assert_eq!(
        w.stored(&r1.imi.imi.txn).unwrap().status,
        TxnStatus::Expired
    );
}

#[test]
fn another_message_reusing_a_txn_id_learns_nothing() {
    let mut w = world();
    let r = w.submit(w.imi(To::User("bob".into())));
    // gw-sms submits its own IMI under the same txn id.
    let mut theirs = r.imi.imi.clone();
    theirs.originator = w.sms.id.clone();
    let sms = w.sms.id.clone();
    assert_eq!(
        refused(w.send(&sms, Frame::Submit(make_submit(&w.sms.session, theirs)))),
        ProtocolError::TxnConflict
    );
    w.none(&sms, "release", release_frame);
    // The originator changing its own IMI under a used id is refused too.
    let mut changed = r.imi.imi.clone();
    changed.recipient = To::User("alice".into());
    let im = w.im.id.clone();
    assert_eq!(
        refused(w.send(&im, Frame::Submit(make_submit(&w.im.session, changed)))),
        ProtocolError::TxnConflict
    );
    assert_eq!(w.stored(&r.imi.imi.txn).unwrap().attempts.len(), 1);
}

#[test]
fn timeouts_fail_over_then_undeliverable_and_a_late_success_still_counts() {
    let mut w = world();
    let r1 = w.submit(w.imi(To::User("bob".into())));
    assert_eq!(r1.imi.route.mechanism, MediumKind::Im);
    let im = w.im.id.clone();
    w.tick(59_000);
    w.none(&im, "release", release_frame);
    w.tick(2_000);
    let r2 = w.next_release();
    assert_eq!(
        (r2.imi.attempt, r2.imi.route.mechanism),
        (2, MediumKind::Sms)
    );
    w.tick(61_000);
    let n = w.notify();
    assert_eq!(n.outcome, Outcome::Undeliverable);
    let rec = w.stored(&r1.imi.imi.txn).unwrap();
    let outcomes: Vec<_> = rec
        .attempts
        .iter()
        .map(|a| (a.route.mechanism, a.outcome.clone().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (MediumKind::Im, "timeout".into()),
            (MediumKind::Sms, "timeout".into())
        ]
    );
    // The IM gateway was only slow: its delivery still counts.
    w.report_from(Who::Im, &r1, ReportStatus::Delivered)
        .unwrap();
    let n = w.notify();
    assert_eq!(
        (n.outcome, n.mechanism),
        (Outcome::Delivered, Some(MediumKind::Im))
    );
    assert_eq!(
        w.stored(&r1.imi.imi.txn).unwrap().status,
        TxnStatus::Delivered
    );
}

#[test]
fn parallel_dispatch_first_success_wins() {
    let mut w = world();
    w.env.prefs.borrow_mut().insert(
        "bob".into(),
        BTreeMap::from([("normal".to_string(), "parallel".to_string())]),
    );
    let imi = w.imi(To::User("bob".into()));
    let im = w.im.id.clone();
    w.send(&im, Frame::Submit(make_submit(&w.im.session, imi.clone())))
        .unwrap();
    let a = w.next_release();
    let b = w.next_release();
    let mut got = vec![
        (a.imi.attempt, a.imi.route.mechanism),
        (b.imi.attempt, b.imi.route.mechanism),
    ];
    got.sort();
    assert_eq!(got, vec![(1, MediumKind::Im), (2, MediumKind::Sms)]);
    let (imr, smsr) = if a.imi.route.mechanism == MediumKind::Im {
        (a, b)
    } else {
        (b, a)
    };
    w.report_from(
        Who::Sms,
        &smsr,
        ReportStatus::NonDelivery("no signal".into()),
    )
    .unwrap();
    w.none(&im, "notify", is(|f| matches!(f, Frame::Notify(_))));
    w.report_from(Who::Im, &imr, ReportStatus::Delivered)
        .unwrap();
    let n = w.notify();
    assert_eq!(
        (n.outcome, n.mechanism),
        (Outcome::Delivered, Some(MediumKind::Im))
    );
    assert_eq!(
        w.stored(&imi.txn).unwrap().manager.unwrap().name,
        "parallel"
    );
}

#[test]
fn expiry_stops_attempts_and_tells_the_sender() {
    let mut w = world();
    let mut imi = w.imi(To::User("bob".into()));
    imi.expires_at_ms = NOW + 5_000;
    let r = w.submit(imi);
    w.tick(5_001);
    assert_eq!(w.notify().outcome, Outcome::Expired);
    let rec = w.stored(&r.imi.imi.txn).unwrap();
    assert_eq!(rec.status, TxnStatus::Expired);
    assert_eq!(rec.attempts[0].outcome.as_deref(), Some("expired"));
    w.tick(120_000);
    let im = w.im.id.clone();
    w.none(&im, "release", release_frame);
}

#[test]
fn a_transaction_keeps_its_manager_when_the_definition_changes() {
    let mut w = world();
    let first = w.submit(w.imi(To::User("bob".into())));
    // Replace the default manager: email only, which bob does not have.
    let mut m = built_in().remove(0).1;
    m.configs.retain(|p, _| p == "normal");
    m.configs.get_mut("normal").unwrap().mechanisms = vec![MediumKind::Email];
    w.env.managers.borrow_mut().insert("sequential".into(), m);
    let im = w.im.id.clone();
    let new = w.imi(To::User("bob".into()));
    w.send(&im, Frame::Submit(make_submit(&w.im.session, new)))
        .unwrap();
    let rej = w.take(&im, "rejected", |f| match f {
        Frame::Rejected(r) => Some(r.reason.clone()),
        _ => None,
    });
    assert_eq!(
        rej,
        RejectReason::NoMechanism,
        "new messages use the new definition"
    );
    // The message in flight keeps its manager: its next attempt is SMS.
    w.tick(61_000);
    let r2 = w.next_release();
    assert_eq!(
        (r2.imi.imi.txn, r2.imi.route.mechanism),
        (first.imi.imi.txn, MediumKind::Sms)
    );
}

#[test]
fn a_member_back_gets_its_open_attempts_released_again() {
    let mut w = world();
    let r = w.submit(w.imi(To::User("bob".into())));
    let done = w.submit(w.imi(To::User("alice".into())));
    w.report_from(Who::Im, &done, ReportStatus::Delivered)
        .unwrap();
    w.sent.clear();
    let mut out = Effects::default();
    let im = w.im.id.clone();
    assert_eq!(w.txns.member_back(&w.env, &mut out, &im), 1);
    assert!(out.records.is_empty(), "releasing again stores nothing");
    w.apply(out);
    let again = w.next_release();
    assert_eq!((again.imi.imi.txn, again.id), (r.imi.imi.txn, r.id));
    // A member no open attempt goes through gets nothing.
    let mut out = Effects::default();
    let sms = w.sms.id.clone();
    assert_eq!(w.txns.member_back(&w.env, &mut out, &sms), 0);
    assert!(out.is_empty());
}

#[test]
fn a_step_without_a_session_is_refused_and_stores_nothing() {
    let mut w = world();
    let imi = w.imi(To::User("bob".into()));
    let sub = make_submit(&w.im.session, imi.clone());
    w.env.sessions.borrow_mut().clear();
    let im = w.im.id.clone();
    assert_eq!(
        refused(w.send(&im, Frame::Submit(sub))),
        ProtocolError::NoSession
    );
    assert_eq!(w.stored(&imi.txn), None);
}

#[test]
fn how_an_attempt_was_delivered_is_kept_in_it_through_the_read() {
    let mut w = world();
    let r = w.submit(w.imi(To::User("bob".into())));
    let how = "by node a: home node c is down".to_string();
    w.report_from(Who::Im, &r, ReportStatus::DeliveredVia(how.clone()))
        .unwrap();
    assert_eq!(w.notify().outcome, Outcome::Delivered);
    let rec = w.stored(&r.imi.imi.txn).unwrap();
    assert_eq!(rec.status, TxnStatus::Delivered);
    assert_eq!(
        (rec.attempts[0].outcome.as_deref(), &rec.attempts[0].reason),
        (Some("delivered"), &Some(how.clone()))
    );
    // The same step as a plain `Delivered`: that one again tells nobody.
    let im = w.im.id.clone();
    w.report_from(Who::Im, &r, ReportStatus::Delivered).unwrap();
    w.none(&im, "second notify", is(|f| matches!(f, Frame::Notify(_))));
    w.report_from(Who::Im, &r, ReportStatus::Read).unwrap();
    assert_eq!(w.notify().outcome, Outcome::Read);
    let rec = w.stored(&r.imi.imi.txn).unwrap();
    assert_eq!(
        (rec.attempts[0].outcome.as_deref(), &rec.attempts[0].reason),
        (Some("read"), &Some(how))
    );
}

/// A meta rule quarantines: the originator is told it is held (a frame it
/// can check; a resubmission is told again), nothing is released until a
/// reviewer releases it — then it is routed with the released tag, once.
#[test]
fn a_quarantined_message_waits_for_a_reviewer_then_is_routed() {
    let mut w = world();
    *w.env.verdict.borrow_mut() = crate::policy::Verdict::Quarantine {
        rule: "cards".into(),
        reason: "a card number".into(),
    };
    let imi = w.imi(To::User("bob".into()));
    let txn = imi.txn;
    let im = w.im.id.clone();
    w.send(&im, Frame::Submit(make_submit(&w.im.session, imi.clone())))
        .unwrap();
    let h = w.held();
    frames::check_held(&w.im.session, &h).unwrap();
    assert_eq!(h.reason, "policy:cards");
    let forged = frames::make_held(&w.sms.session, txn, "policy:cards".into());
    assert_eq!(
        frames::check_held(&w.im.session, &forged),
        Err(ProtocolError::BadMac)
    );
    w.none(&im, "release", release_frame);
    let rec = w.stored(&txn).unwrap();
    assert_eq!(rec.status, TxnStatus::Quarantined("policy:cards".into()));
    assert!(rec.attempts.is_empty());
    // Asked again (a restart), the originator hears the same.
    w.send(&im, Frame::Submit(make_submit(&w.im.session, imi)))
        .unwrap();
    assert_eq!(w.held().reason, "policy:cards");

    assert_eq!(
        w.review(&TxnId([9; 16]), Review::Release),
        Err(ReviewError::Unknown)
    );
    assert_eq!(w.review(&txn, Review::Release), Ok(TxnStatus::Released));
    let r = w.next_release();
    frames::check_release(&w.im.session, &r).unwrap();
    assert_eq!(r.imi.tags, [crate::policy::RELEASED_TAG]);
    assert_eq!(r.imi.route.mechanism, MediumKind::Im);
    assert_eq!(
        w.review(&txn, Review::Release),
        Err(ReviewError::NotHeld("released")),
        "released once"
    );
    w.report_from(Who::Im, &r, ReportStatus::Delivered).unwrap();
    assert_eq!(w.notify().outcome, Outcome::Delivered);
    let rec = w.stored(&txn).unwrap();
    let kinds: Vec<&str> = rec.events.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"quarantined:policy:cards"), "{kinds:?}");
    assert!(kinds.contains(&"quarantine:released:admin"), "{kinds:?}");
}

/// Rejected by a reviewer, a held message is blocked and its originator
/// told; a release needs the originator connected and changes nothing
/// otherwise.
#[test]
fn a_rejected_quarantine_is_blocked_and_told() {
    let mut w = world();
    *w.env.verdict.borrow_mut() = crate::policy::Verdict::Quarantine {
        rule: "cards".into(),
        reason: String::new(),
    };
    let imi = w.imi(To::User("bob".into()));
    let txn = imi.txn;
    let im = w.im.id.clone();
    w.send(&im, Frame::Submit(make_submit(&w.im.session, imi)))
        .unwrap();
    w.held();
    let session = w.env.sessions.borrow_mut().remove(&im).unwrap();
    assert_eq!(
        w.review(&txn, Review::Release),
        Err(ReviewError::OriginatorAway)
    );
    assert!(matches!(
        w.stored(&txn).unwrap().status,
        TxnStatus::Quarantined(_)
    ));
    w.env.sessions.borrow_mut().insert(im.clone(), session);
    assert_eq!(
        w.review(&txn, Review::Reject),
        Ok(TxnStatus::Blocked("quarantine_rejected".into()))
    );
    let n = w.notify();
    assert_eq!(n.outcome, Outcome::Blocked("quarantine_rejected".into()));
    w.none(&im, "release", release_frame);
    assert_eq!(
        w.review(&txn, Review::Release),
        Err(ReviewError::NotHeld("blocked"))
    );
}

/// A content filter holds the content: its report quarantines the
/// message (a destination cannot); the release tries the same mechanism
/// again, with the tag the filter reads; an expiry while held concludes
/// `expired`.
#[test]
fn a_filter_quarantines_content_and_the_release_tries_the_same_mechanism() {
    let mut w = world();
    w.env.processors.borrow_mut().push(w.filter.id.clone());
    let r = w.submit(w.imi(To::User("bob".into())));
    let txn = r.imi.imi.txn;
    assert_eq!(r.imi.route.processors, [w.filter.id.clone()]);
    assert_eq!(
        refused(w.report_from(Who::Im, &r, ReportStatus::Quarantined("policy:x".into()))),
        ProtocolError::WrongParty
    );
    w.report_from(
        Who::Filter,
        &r,
        ReportStatus::Quarantined("policy:cards".into()),
    )
    .unwrap();
    let rec = w.stored(&txn).unwrap();
    assert_eq!(rec.status, TxnStatus::Quarantined("policy:cards".into()));
    assert_eq!(rec.attempts[0].outcome.as_deref(), Some("quarantined"));
    let im = w.im.id.clone();
    w.none(&im, "notify", |f| {
        matches!(f, Frame::Notify(_)).then_some(())
    });
    // An attempt timeout passing changes nothing: the attempt is over.
    w.tick(120_000);
    w.none(&im, "release", release_frame);
    assert!(matches!(
        w.stored(&txn).unwrap().status,
        TxnStatus::Quarantined(_)
    ));

    assert_eq!(w.review(&txn, Review::Release), Ok(TxnStatus::Released));
    let again = w.next_release();
    assert_eq!(
        (again.imi.attempt, again.imi.route.mechanism),
        (2, MediumKind::Im)
    );
    assert_eq!(again.imi.tags, [crate::policy::RELEASED_TAG]);

    // Another held message expires while it waits.
    let r = w.submit(w.imi(To::User("bob".into())));
    w.report_from(
        Who::Filter,
        &r,
        ReportStatus::Quarantined("policy:cards".into()),
    )
    .unwrap();
    w.tick(3_600_001);
    let n = w.take(&im, "notify", |f| match f {
        Frame::Notify(n) if n.txn == r.imi.imi.txn => Some(n.clone()),
        _ => None,
    });
    assert_eq!(n.outcome, Outcome::Expired);
}

/// A `redirect` rule: to a gateway member of the route's medium, the
/// route's destination (with its grant); to a node, a `node:` tag the
/// placement reads; to where the route cannot go, the next mechanism; the
/// trail says where.
#[test]
fn a_redirect_rule_points_the_route_or_skips_the_mechanism() {
    let mut w = world();
    w.env.ring.put(MemberKeys::generate(
        MemberId::new("gw-im-2"),
        Some(MediumKind::Im),
    ));
    let redirect = |to: &str| crate::policy::Verdict::Redirect {
        rule: "via".into(),
        to: to.into(),
    };
    *w.env.verdict.borrow_mut() = redirect("gw-im-2");
    let r = w.submit(w.imi(To::User("bob".into())));
    assert_eq!(r.imi.route.destination.as_str(), "gw-im-2");
    assert_eq!(r.grants[0].member.as_str(), "gw-im-2");
    let kinds = |w: &World, txn| -> Vec<String> {
        let rec = w.stored(&txn).unwrap();
        rec.events.iter().map(|e| e.kind.clone()).collect()
    };
    assert!(kinds(&w, r.imi.imi.txn).contains(&"redirected:gw-im-2".to_string()));

    *w.env.verdict.borrow_mut() = redirect("c");
    let r = w.submit(w.imi(To::User("bob".into())));
    assert_eq!(r.imi.route.destination, w.im.id);
    assert_eq!(r.imi.tags, ["node:c"]);

    // Only SMS can go where this rule says: IM is skipped.
    *w.env.verdict.borrow_mut() = redirect("sms-only");
    let r = w.submit(w.imi(To::User("bob".into())));
    assert_eq!(r.imi.route.mechanism, MediumKind::Sms);
    // Nowhere it can go: no mechanism.
    *w.env.verdict.borrow_mut() = redirect("nowhere");
    let imi = w.imi(To::User("bob".into()));
    let txn = imi.txn;
    let im = w.im.id.clone();
    w.send(&im, Frame::Submit(make_submit(&w.im.session, imi)))
        .unwrap();
    assert_eq!(
        w.stored(&txn).unwrap().status,
        TxnStatus::Rejected("no_mechanism".into())
    );
}

/// A content filter's marks reach the trail only through an attestation
/// made with its key: forged marks are refused and change nothing; marks a
/// processor may not make (`blocked:`, …) are not written.
#[test]
fn a_filters_attested_marks_go_on_the_trail_and_forged_ones_change_nothing() {
    let mut w = world();
    let filter_keys = MemberKeys::generate(MemberId::new("proc-filter-1"), None);
    w.env.ring.put(filter_keys.clone());
    w.env.processors.borrow_mut().push(w.filter.id.clone());
    let r = w.submit(w.imi(To::User("bob".into())));
    let txn = r.imi.imi.txn;
    let att = |marks: Vec<String>| {
        frames::make_attestation(
            w.filter.id.clone(),
            filter_keys.current().1,
            &r.id,
            b"hello",
            b"hello",
            "text/plain",
            marks,
        )
    };
    let marks = vec![
        "policy:px:v1:deny".to_string(),
        "notify:sup".to_string(),
        "delivered:im".to_string(),
    ];
    let mut forged = att(marks.clone());
    forged.marks.push("tag:forged".into());
    let report = |a: crate::protocol::Attestation| {
        Frame::Report(make_report(
            &w.filter.session,
            txn,
            1,
            r.id,
            ReportStatus::Blocked("policy:px".into()),
            vec![a],
        ))
    };
    let (f1, f2) = (report(forged), report(att(marks)));
    let filter = w.filter.id.clone();
    assert_eq!(refused(w.send(&filter, f1)), ProtocolError::BadAttestation);
    assert!(matches!(
        w.stored(&txn).unwrap().status,
        TxnStatus::Released
    ));
    w.send(&filter, f2).unwrap();
    let rec = w.stored(&txn).unwrap();
    assert_eq!(rec.status, TxnStatus::Blocked("policy:px".into()));
    let kinds: Vec<&str> = rec.events.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"policy:px:v1:deny"), "{kinds:?}");
    assert!(kinds.contains(&"notify:sup"), "{kinds:?}");
    assert!(!kinds.contains(&"delivered:im"), "{kinds:?}");
    assert!(!kinds.contains(&"tag:forged"), "{kinds:?}");
}
