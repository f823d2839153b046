//! Mailbox tests of a broker shard: recording members stand in for the
//! gateways; every frame is made with the protocol functions a real member
//! uses.

use std::sync::{Arc, Mutex};

use actix::prelude::*;

use super::messages::OpenTransactions;
use super::shared::{BrokerDeps, BrokerSettings, BrokerShared};
use super::{watchers, BrokerShard};
use crate::bus::MiapFrame;
use crate::bus::State;
use crate::delivery::DeliveryService;
use crate::presence::{Presence, SetPresence};
use crate::registry::MemberRegistry;
use crate::testkit::Recorder;
use switchboard_core::directory::{Directory, Mechanism, Profile};
use switchboard_core::protocol::clock::ManualClock;
use switchboard_core::protocol::frames::RefuseReason;
use switchboard_core::protocol::frames::{self, make_report, make_submit};
use switchboard_core::protocol::frames::{finish_login, start_login};
use switchboard_core::protocol::tscs::Session;
use switchboard_core::protocol::*;
use switchboard_core::store::{Store, TxnStatus};

const NOW: u64 = 1_800_000_000_000;

struct World {
    _dir: tempfile::TempDir,
    delivery: Addr<DeliveryService>,
    #[allow(dead_code)]
    presence: Addr<Presence>,
    store: Store,
    shard: Addr<BrokerShard>,
    shared: Arc<BrokerShared>,
    clock: ManualClock,
    im: Member,
    sms: Member,
}

struct Member {
    id: MemberId,
    keys: MemberKeys,
    rec: Recorder,
    session: Option<Session>,
}

async fn world() -> World {
    world_with(false).await
}

async fn world_with(im_offline_wait: bool) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let directory = Directory::load(store.clone(), 0).unwrap();
    let clock = ManualClock::at(NOW);
    let members = MemberRegistry::default();
    let make = |id: &str, medium| {
        let keys = MemberKeys::generate(MemberId::new(id), Some(medium));
        let rec = Recorder::default();
        members.connect(
            keys.member.clone(),
            Some(medium),
            rec.clone().start().recipient(),
            NOW,
        );
        Member {
            id: keys.member.clone(),
            keys,
            rec,
            session: None,
        }
    };
    let im = make("gw-im", MediumKind::Im);
    let sms = make("gw-sms", MediumKind::Sms);
    directory.put_member(im.keys.clone()).await.unwrap();
    directory.put_member(sms.keys.clone()).await.unwrap();
    directory
        .put_profile(Profile::im_only("alice"))
        .await
        .unwrap();
    let mut bob = Profile::im_only("bob");
    bob.mechanisms.push(Mechanism {
        medium: MediumKind::Sms,
        address: "+49151".into(),
    });
    directory.put_profile(bob).await.unwrap();
    let settings = BrokerSettings {
        id: MemberId::new("broker-1"),
        skew_ms: 30_000,
        session_ttl_ms: 600_000,
        shards: 1,
        im_offline_wait: crate::delivery::ImOfflineWait::new(im_offline_wait),
    };
    let presence = Presence::new(Arc::new(clock.clone()), 600_000, None);
    let view = presence.view();
    let presence = presence.start();
    for u in ["alice", "bob"] {
        presence
            .send(SetPresence {
                user: u.into(),
                state: State::Online,
                note: None,
            })
            .await
            .unwrap();
    }
    let delivery = DeliveryService::load(store.clone(), "sequential").unwrap();
    let registry = delivery.registry();
    let delivery = delivery.start();
    let shared = Arc::new(
        BrokerShared::new(
            &settings,
            BrokerDeps {
                store: store.clone(),
                clock: Arc::new(clock.clone()),
                directory,
                k2: SecretKey::generate(),
                members,
                delivery: registry,
                presence: view,
                presence_actor: Some(presence.clone()),
            },
        )
        .unwrap(),
    );
    let shard = BrokerShard::new(shared.clone(), 0).start();
    let mut w = World {
        _dir: dir,
        delivery,
        store,
        shard,
        shared,
        clock,
        presence,
        im,
        sms,
    };
    w.im.session = Some(w.login(&w.im).await);
    w.sms.session = Some(w.login(&w.sms).await);
    w
}

fn refused(f: &Frame) -> Option<RefuseReason> {
    match f {
        Frame::Refused(r) => Some(*r),
        _ => None,
    }
}

impl World {
    /// Delivers a frame and waits until the shard has handled it.
    async fn send(&self, from: &MemberId, frame: Frame) {
        self.shard
            .send(MiapFrame {
                from: from.clone(),
                frame,
            })
            .await
            .unwrap();
    }

    async fn login(&self, m: &Member) -> Session {
        let (id, key) = m.keys.current();
        let p = start_login(
            m.id.clone(),
            id,
            key.clone(),
            "broker-1",
            self.clock.now_ms(),
        );
        self.send(&m.id, Frame::Login(p.login.clone())).await;
        let ack = m
            .rec
            .take("login ack", |f| match f {
                Frame::LoginAck(a) => Some(a.clone()),
                _ => None,
            })
            .await;
        finish_login(&p, &ack, self.clock.now_ms()).unwrap()
    }

    fn imi(&self, to: To) -> Imi {
        Imi {
            txn: TxnId::generate(self.clock.now_ms()),
            originator: self.im.id.clone(),
            sender: Address::new(MediumKind::Im, "alice"),
            sender_user: Some("alice".into()),
            recipient: to,
            content_type: "text/plain".into(),
            content_len: 5,
            content_sha256: mac::sha256(b"hello"),
            subject: None,
            priority: Priority::Normal,
            expires_at_ms: self.clock.now_ms() + 3_600_000,
            created_at_ms: self.clock.now_ms(),
            receipt: true,
            attributes: vec![],
        }
    }

    async fn submit(&self, imi: Imi) -> Release {
        let s = self.im.session.as_ref().unwrap();
        self.send(&self.im.id, Frame::Submit(make_submit(s, imi)))
            .await;
        let r = self.im.rec.take("release", |f| match f {
            Frame::Release(r) => Some((**r).clone()),
            _ => None,
        });
        let r = r.await;
        frames::check_release(s, &r).expect("the release verifies at the originator");
        r
    }

    fn report(&self, by: &Member, r: &Release, status: ReportStatus) -> Report {
        make_report(
            by.session.as_ref().unwrap(),
            r.imi.imi.txn,
            r.imi.attempt,
            r.id,
            status,
            vec![],
        )
    }

    /// `by` reports `status` on the release `r` (the shard handles it).
    async fn report_from(&self, by: &Member, r: &Release, status: ReportStatus) {
        self.send(&by.id, Frame::Report(self.report(by, r, status)))
            .await;
    }

    async fn notify(&self) -> Notify {
        self.im
            .rec
            .take("notify", |f| match f {
                Frame::Notify(n) => Some(n.clone()),
                _ => None,
            })
            .await
    }

    async fn stored(&self, txn: &TxnId) -> Option<switchboard_core::store::TxnRecord> {
        self.store.writer().flush().await.unwrap();
        self.store.txn(txn).unwrap()
    }
}

#[actix_rt::test]
async fn submit_release_report_notify_account() {
    let w = world().await;
    let r = w.submit(w.imi(To::User("bob".into()))).await;
    assert_eq!(r.imi.route.mechanism, MediumKind::Im);
    assert_eq!(r.imi.route.destination, w.im.id);
    assert_eq!(r.imi.attempt, 1);
    assert_eq!(r.grants.len(), 1);
    let s = w.im.session.as_ref().unwrap();
    w.send(
        &w.im.id,
        Frame::ReleaseAck(frames::make_release_ack(s, r.imi.imi.txn, 1)),
    )
    .await;
    w.report_from(&w.im, &r, ReportStatus::Delivered).await;
    let ack = w.im.rec.take("report ack", |f| match f {
        Frame::ReportAck(a) => Some(a.clone()),
        _ => None,
    });
    frames::check_report_ack(s, &ack.await).unwrap();
    let n = w.notify().await;
    frames::check_notify(s, &n).unwrap();
    assert_eq!(
        (n.outcome, n.mechanism),
        (Outcome::Delivered, Some(MediumKind::Im))
    );
    let rec = w.stored(&r.imi.imi.txn).await.unwrap();
    assert_eq!(rec.status, TxnStatus::Delivered);
    assert_eq!(rec.attempts[0].outcome.as_deref(), Some("delivered"));
    // The usage is in the same journal record as the conclusion.
    let accounts = w.store.accounting(0, u64::MAX).unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].outcome, "delivered");
    assert_eq!(accounts[0].sender, "alice");

    assert_eq!(w.shard.send(OpenTransactions).await.unwrap(), 1);
    w.send(
        &w.im.id,
        Frame::NotifyAck(frames::make_notify_ack(
            s,
            r.imi.imi.txn,
            Outcome::Delivered,
        )),
    )
    .await;
    assert_eq!(
        w.shard.send(OpenTransactions).await.unwrap(),
        0,
        "closed work leaves memory"
    );
    // A Read report after closing reloads the record and notifies again.
    w.report_from(&w.im, &r, ReportStatus::Read).await;
    assert_eq!(w.notify().await.outcome, Outcome::Read);
    assert_eq!(
        w.stored(&r.imi.imi.txn).await.unwrap().status,
        TxnStatus::Read
    );
}

#[actix_rt::test]
async fn forged_submit_changes_nothing() {
    let w = world().await;
    let imi = w.imi(To::User("bob".into()));
    let txn = imi.txn;
    let mut sub = make_submit(w.im.session.as_ref().unwrap(), imi.clone());
    sub.imi.recipient = To::User("alice".into());
    w.send(&w.im.id, Frame::Submit(sub)).await;
    let r = w.im.rec.take("refused", refused).await;
    assert_eq!(
        r,
        RefuseReason {
            error: ProtocolError::BadMac,
            txn: Some(txn)
        }
    );
    // Signed by another member's session, in the originator's name.
    let sub = make_submit(w.sms.session.as_ref().unwrap(), imi.clone());
    w.send(&w.sms.id, Frame::Submit(sub)).await;
    assert_eq!(
        w.sms.rec.take("refused", refused).await.error,
        ProtocolError::WrongParty
    );
    w.im.rec
        .none("release", |f| matches!(f, Frame::Release(_)).then_some(()))
        .await;
    assert_eq!(w.stored(&txn).await, None);
    assert_eq!(
        w.shared.refusals(),
        vec![("bad_mac", 1), ("wrong_party", 1)]
    );
}

#[actix_rt::test]
async fn replayed_login_is_refused_and_the_session_survives() {
    let w = world().await;
    let (id, key) = w.im.keys.current();
    let p = start_login(w.im.id.clone(), id, key.clone(), "broker-1", NOW);
    w.send(&w.im.id, Frame::Login(p.login.clone())).await;
    w.im.rec
        .take("ack", |f| matches!(f, Frame::LoginAck(_)).then_some(()))
        .await;
    w.send(&w.im.id, Frame::Login(p.login.clone())).await;
    assert_eq!(
        w.im.rec.take("refused", refused).await.error,
        ProtocolError::ReplayedNonce
    );
    // A login for another member over this member's link.
    let q = start_login(
        w.sms.id.clone(),
        1,
        w.sms.keys.current().1.clone(),
        "broker-1",
        NOW,
    );
    w.send(&w.im.id, Frame::Login(q.login)).await;
    assert_eq!(
        w.im.rec.take("refused", refused).await.error,
        ProtocolError::WrongParty
    );
    // Stale skew.
    w.clock.advance(31_000);
    let late = start_login(w.im.id.clone(), id, key.clone(), "broker-1", NOW);
    w.send(&w.im.id, Frame::Login(late.login)).await;
    assert_eq!(
        w.im.rec.take("refused", refused).await.error,
        ProtocolError::SkewExceeded
    );
}

#[actix_rt::test]
async fn frames_without_a_session_or_from_a_revoked_member_are_refused() {
    let w = world().await;
    let stranger = MemberId::new("gw-x");
    let rec = Recorder::default();
    w.shared.deps.members.connect(
        stranger.clone(),
        Some(MediumKind::Im),
        rec.clone().start().recipient(),
        NOW,
    );
    let sub = make_submit(
        w.im.session.as_ref().unwrap(),
        w.imi(To::User("bob".into())),
    );
    w.send(&stranger, Frame::Submit(sub)).await;
    assert_eq!(
        rec.take("refused", refused).await.error,
        ProtocolError::NoSession
    );

    w.shared.deps.directory.ring().revoke(&w.im.id).unwrap();
    let imi = w.imi(To::User("bob".into()));
    w.send(
        &w.im.id,
        Frame::Submit(make_submit(w.im.session.as_ref().unwrap(), imi.clone())),
    )
    .await;
    assert_eq!(
        w.im.rec.take("refused", refused).await.error,
        ProtocolError::Revoked
    );
    assert_eq!(w.stored(&imi.txn).await, None);
}

#[actix_rt::test]
async fn renewal_keeps_the_previous_session_valid_and_expiry_needs_a_new_login() {
    let mut w = world().await;
    let old = w.im.session.clone().unwrap();
    let new = w.login(&w.im).await;
    assert_ne!(old.secret, new.secret);
    // A frame signed just before the renewal still verifies.
    let imi = w.imi(To::User("bob".into()));
    w.send(&w.im.id, Frame::Submit(make_submit(&old, imi.clone())))
        .await;
    w.im.rec
        .take("release", |f| matches!(f, Frame::Release(_)).then_some(()))
        .await;
    w.im.session = Some(new);
    w.submit(w.imi(To::User("bob".into()))).await;
    // Past the session TTL the member must log in again.
    w.clock.advance(600_001);
    let imi = w.imi(To::User("bob".into()));
    w.send(
        &w.im.id,
        Frame::Submit(make_submit(w.im.session.as_ref().unwrap(), imi.clone())),
    )
    .await;
    assert_eq!(
        w.im.rec.take("refused", refused).await.error,
        ProtocolError::SessionExpired
    );
    w.im.session = Some(w.login(&w.im).await);
    w.submit(imi).await;
}

fn release_frame(f: &Frame) -> Option<Release> {
    match f {
        Frame::Release(r) => Some((**r).clone()),
        _ => None,
    }
}

impl World {
    async fn tick(&self, ms: u64) {
        self.clock.advance(ms);
        self.shard
            .send(super::messages::CheckTimeouts)
            .await
            .unwrap();
    }

    async fn next_release(&self) -> Release {
        self.im.rec.take("release", release_frame).await
    }

    async fn set_presence(&self, user: &str, state: State) {
        self.presence
            .send(SetPresence {
                user: user.into(),
                state,
                note: None,
            })
            .await
            .unwrap();
    }
}

#[actix_rt::test]
async fn offline_on_im_goes_straight_to_sms_and_im_only_users_get_the_mailbox() {
    let w = world().await;
    w.set_presence("bob", State::Offline).await;
    let r = w.submit(w.imi(To::User("bob".into()))).await;
    assert_eq!(
        (r.imi.route.mechanism, r.imi.route.store_and_forward),
        (MediumKind::Sms, false)
    );
    // alice has only IM: offline, she still gets it in her mailbox.
    w.set_presence("alice", State::Offline).await;
    let r = w.submit(w.imi(To::User("alice".into()))).await;
    assert_eq!(
        (r.imi.route.mechanism, r.imi.route.store_and_forward),
        (MediumKind::Im, true)
    );
    // Away is still reachable for the default managers.
    w.set_presence("alice", State::Away).await;
    let r = w.submit(w.imi(To::User("alice".into()))).await;
    assert_eq!(
        (r.imi.route.mechanism, r.imi.route.store_and_forward),
        (MediumKind::Im, false)
    );
}

#[actix_rt::test]
async fn a_hot_swap_applies_to_new_messages_only() {
    use crate::delivery::PutManager;
    use switchboard_core::policy::built_in;
    let w = world().await;
    let first = w.submit(w.imi(To::User("bob".into()))).await;
    // Replace the default manager: email only, which bob does not have.
    let mut m = built_in().remove(0).1;
    m.configs.retain(|p, _| p == "normal");
    m.configs.get_mut("normal").unwrap().mechanisms = vec![MediumKind::Email];
    w.delivery
        .send(PutManager {
            name: "sequential".into(),
            manager: m,
        })
        .await
        .unwrap()
        .unwrap();
    let s = w.im.session.as_ref().unwrap();
    let new = w.imi(To::User("bob".into()));
    w.send(&w.im.id, Frame::Submit(make_submit(s, new))).await;
    let rej = w.im.rec.take("rejected", |f| match f {
        Frame::Rejected(r) => Some(r.reason.clone()),
        _ => None,
    });
    assert_eq!(
        rej.await,
        RejectReason::NoMechanism,
        "new messages use the new definition"
    );
    // The message in flight keeps its manager: its next attempt is SMS.
    w.tick(61_000).await;
    let r2 = w.next_release().await;
    assert_eq!(
        (r2.imi.imi.txn, r2.imi.route.mechanism),
        (first.imi.imi.txn, MediumKind::Sms)
    );
}

#[actix_rt::test]
async fn with_im_offline_wait_the_inbox_is_a_mailbox() {
    let w = world_with(true).await;
    w.set_presence("bob", State::Offline).await;
    let r = w.submit(w.imi(To::User("bob".into()))).await;
    assert_eq!(
        (r.imi.route.mechanism, r.imi.route.store_and_forward),
        (MediumKind::Im, false)
    );
}

/// Member `id` serving `medium` — connected here, or reached through link
/// `link` — with its keys in the directory, logged in.
async fn logged_in_member(
    w: &World,
    id: &str,
    medium: Option<MediumKind>,
    link: Option<u64>,
) -> Member {
    let keys = MemberKeys::generate(MemberId::new(id), medium);
    let rec = Recorder::default();
    w.shared
        .deps
        .directory
        .put_member(keys.clone())
        .await
        .unwrap();
    let to = rec.clone().start().recipient();
    let members = &w.shared.deps.members;
    match link {
        Some(l) => members.attach_link(keys.member.clone(), medium, to, l, NOW),
        None => members.connect(keys.member.clone(), medium, to, NOW),
    }
    let mut m = Member {
        id: keys.member.clone(),
        keys,
        rec,
        session: None,
    };
    m.session = Some(w.login(&m).await);
    m
}

/// An IM gateway in another process (reached through link 7), logged in.
async fn session_gateway(w: &World) -> Member {
    logged_in_member(w, "gw-im-2", Some(MediumKind::Im), Some(7)).await
}

impl World {
    /// `m` tells the broker `user`'s presence (the shard has handled it).
    async fn tell_presence(&self, m: &Member, user: &str, state: PresenceState) {
        let s = m.session.as_ref().unwrap();
        let p = frames::make_presence(s, user.into(), state, NOW);
        self.send(&m.id, Frame::Presence(p)).await;
    }

    /// `m` shows the broker a token of `user` (a new one) and gets its
    /// identity back.
    async fn identify(&self, m: &Member, user: &str) {
        let token = self.shared.deps.directory.rotate_token(user).await.unwrap();
        let s = m.session.as_ref().unwrap();
        let f = frames::make_identify(s, 99, mac::sha256(token.as_bytes()), NOW);
        self.send(&m.id, Frame::Identify(f)).await;
        let id = m.rec.take("identity", identity).await;
        assert_eq!(id.user.as_deref(), Some(user));
    }

    /// Where the next message to `user` is routed.
    async fn destination_for(&self, user: &str) -> MemberId {
        self.submit(self.imi(To::User(user.into())))
            .await
            .imi
            .route
            .destination
    }
}

fn identity(f: &Frame) -> Option<Identity> {
    match f {
        Frame::Identity(i) => Some(i.clone()),
        _ => None,
    }
}

#[actix_rt::test]
async fn remote_im_and_email_gateways_ask_whose_token_it_is_and_nobody_else_may() {
    let w = world().await;
    let gw = session_gateway(&w).await;
    let token = w
        .shared
        .deps
        .directory
        .put_profile(Profile::im_only("carol"))
        .await
        .unwrap()
        .expect("a new user's token");
    let digest = mac::sha256(token.as_bytes());
    let s = gw.session.as_ref().unwrap();
    let ask = |req, d, ts| Frame::Identify(frames::make_identify(s, req, d, ts));

    w.send(&gw.id, ask(1, digest, NOW)).await;
    let id = gw.rec.take("identity", identity).await;
    assert_eq!((id.req, id.user.as_deref()), (1, Some("carol")));
    frames::check_identity(s, &id, &digest).expect("the answer verifies");
    // Moved to another request's digest, it does not.
    assert_eq!(
        frames::check_identity(s, &id, &mac::sha256(b"other")),
        Err(ProtocolError::BadMac)
    );
    w.send(&gw.id, ask(2, mac::sha256(b"sb_unknown"), NOW))
        .await;
    let id = gw.rec.take("identity", identity).await;
    assert_eq!((id.req, id.user), (2, None));

    // Refused, and answered with nothing: a forged MAC, a stale frame, and
    // a member that is no session gateway (the in-process SMS gateway).
    let mut forged = frames::make_identify(s, 3, digest, NOW);
    forged.mac = mac::mac(b"not the session key", "identify", &[b"x"]);
    let stale = ask(4, digest, NOW - 60_000);
    let sms = w.sms.session.as_ref().unwrap();
    let by_sms = Frame::Identify(frames::make_identify(sms, 5, digest, NOW));
    w.send(&gw.id, Frame::Identify(forged)).await;
    w.send(&gw.id, stale).await;
    w.send(&w.sms.id, by_sms).await;
    let reason = |f: &Frame| refused(f).map(|r| r.error);
    assert_eq!(gw.rec.take("refusal", reason).await, ProtocolError::BadMac);
    assert_eq!(
        gw.rec.take("refusal", reason).await,
        ProtocolError::SkewExceeded
    );
    assert_eq!(
        w.sms.rec.take("refusal", reason).await,
        ProtocolError::WrongParty
    );
    gw.rec.none("a third identity", identity).await;

    // An email gateway in another process may ask (its SMTP logins), and is
    // answered.
    let mail = logged_in_member(&w, "gw-email-2", Some(MediumKind::Email), Some(8)).await;
    let ms = mail.session.as_ref().unwrap();
    let by_mail = Frame::Identify(frames::make_identify(ms, 6, digest, NOW));
    w.send(&mail.id, by_mail).await;
    let id = mail.rec.take("identity", identity).await;
    assert_eq!((id.req, id.user.as_deref()), (6, Some("carol")));

    // carol must be served by node c (her domain requires it): an IM
    // gateway here is sent there; mail is a medium any
    // node takes, so the email gateway is still answered.
    w.shared.on_homes(Arc::new(|u: &str| {
        (u == "carol").then(|| ("c".to_string(), Some("10.0.0.3:8080".to_string())))
    }));
    w.send(&gw.id, ask(7, digest, NOW)).await;
    let r = gw
        .rec
        .take("redirect", |f| match f {
            Frame::Redirect(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!((r.req, r.node.as_str()), (7, "c"));
    frames::check_redirect(s, &r, &digest).expect("the redirect verifies");
    w.send(
        &mail.id,
        Frame::Identify(frames::make_identify(ms, 8, digest, NOW)),
    )
    .await;
    let id = mail.rec.take("identity", identity).await;
    assert_eq!((id.req, id.user.as_deref()), (8, Some("carol")));
}

#[actix_rt::test]
async fn im_goes_to_the_session_gateway_holding_the_user_and_home_otherwise() {
    let w = world().await;
    let gw = session_gateway(&w).await;
    // Connected and logged in, it still gets no IM of users it does not hold.
    assert_eq!(w.destination_for("alice").await, w.im.id);
    // Nor of a user whose token it was not shown: refused, nothing held.
    w.tell_presence(&gw, "alice", PresenceState::Online).await;
    let reason = |f: &Frame| refused(f).map(|r| r.error);
    assert_eq!(
        gw.rec.take("refusal", reason).await,
        ProtocolError::WrongParty
    );
    assert_eq!(w.destination_for("alice").await, w.im.id);

    w.identify(&gw, "alice").await;
    w.tell_presence(&gw, "alice", PresenceState::Online).await;
    assert_eq!(w.destination_for("alice").await, gw.id);
    // Another member's word about alice holds nothing.
    w.tell_presence(&w.sms, "alice", PresenceState::Offline)
        .await;
    w.tell_presence(&gw, "alice", PresenceState::Busy).await;
    assert_eq!(w.destination_for("alice").await, gw.id);
    // A forged presence frame from the gateway is refused and holds nothing.
    let mut forged = frames::make_presence(
        gw.session.as_ref().unwrap(),
        "bob".into(),
        PresenceState::Online,
        NOW,
    );
    forged.mac = mac::mac(b"forged", "presence", &[b"x"]);
    w.send(&gw.id, Frame::Presence(forged)).await;
    assert_eq!(w.destination_for("bob").await, w.im.id);

    // Offline there: home again (alice has only IM: it waits in the home
    // inbox).
    w.tell_presence(&gw, "alice", PresenceState::Offline).await;
    assert_eq!(w.destination_for("alice").await, w.im.id);

    // The gateway's link goes: the users it held are offline and go home.
    w.tell_presence(&gw, "alice", PresenceState::Online).await;
    let gone = w.shared.deps.members.detach_link(&gw.id, 7);
    assert_eq!(gone, ["alice"]);
    w.shared.sessions_ended(&gw.id, gone);
    assert_eq!(w.destination_for("alice").await, w.im.id);
    // (The presence actor has handled what came before this.)
    w.presence.send(crate::presence::IdleTick).await.unwrap();
    let state = w.shared.deps.presence.get("alice").map(|e| e.state);
    assert_eq!(state, Some(State::Offline));
}

#[derive(Default, Clone)]
struct Pushes(Arc<Mutex<Vec<crate::bus::PresencePush>>>);
impl Actor for Pushes {
    type Context = Context<Self>;
}
impl Handler<crate::bus::PresencePush> for Pushes {
    type Result = ();
    fn handle(&mut self, m: crate::bus::PresencePush, _: &mut Context<Self>) {
        self.0.lock().unwrap().push(m);
    }
}

#[actix_rt::test]
async fn a_session_gateway_watches_presence_as_signed_frames() {
    let w = world().await;
    let gw = session_gateway(&w).await;
    let s = gw.session.as_ref().unwrap();
    let watch = |users: Vec<String>| Frame::Watch(frames::make_watch(s, users, NOW));

    // Bad watches are refused: forged, by a member that is no session
    // gateway, too many users, a bad user id.
    let mut forged = frames::make_watch(s, vec!["bob".into()], NOW);
    forged.mac = mac::mac(b"forged", "watch", &[b"x"]);
    w.send(&gw.id, Frame::Watch(forged)).await;
    let sms = w.sms.session.as_ref().unwrap();
    let by_sms = frames::make_watch(sms, vec!["bob".into()], NOW);
    w.send(&w.sms.id, Frame::Watch(by_sms)).await;
    let many: Vec<String> = (0..=crate::bus::presence::MAX_WATCH)
        .map(|i| format!("u{i}"))
        .collect();
    w.send(&gw.id, watch(many)).await;
    w.send(&gw.id, watch(vec!["member:gw-im-2".into()])).await;
    let reason = |f: &Frame| refused(f).map(|r| r.error);
    assert_eq!(gw.rec.take("refusal", reason).await, ProtocolError::BadMac);
    assert_eq!(
        w.sms.rec.take("refusal", reason).await,
        ProtocolError::WrongParty
    );
    assert_eq!(
        gw.rec.take("refusal", reason).await,
        ProtocolError::Malformed
    );
    assert_eq!(
        gw.rec.take("refusal", reason).await,
        ProtocolError::Malformed
    );
    w.send(&gw.id, watch(vec!["bob".into()])).await;
    gw.rec.none("a refusal", |f| refused(f).map(|_| ())).await;

    // Pushes for the gateway's watcher become Presence frames under its
    // session; pushes for users go to the node's own sessions.
    let local = Pushes::default();
    let router =
        watchers::PresenceRouter::new(w.shared.clone(), local.clone().start().recipient()).start();
    let push = |to: String| crate::bus::PresencePush {
        to,
        user: "bob".into(),
        state: State::Away,
        note: Some("lunch".into()),
        since_ms: NOW,
    };
    router.send(push(watchers::watcher(&gw.id))).await.unwrap();
    router.send(push("alice".into())).await.unwrap();
    let p = gw
        .rec
        .take("presence", |f| match f {
            Frame::Presence(p) => Some(p.clone()),
            _ => None,
        })
        .await;
    frames::check_presence(s, &p, NOW, 30_000).expect("signed under the gateway's session");
    assert_eq!(
        (p.user.as_str(), p.state),
        ("bob", PresenceState::Away(Some("lunch".into())))
    );
    actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
    let got: Vec<String> = local
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.to.clone())
        .collect();
    assert_eq!(got, ["alice"]);
}

#[actix_rt::test]
async fn session_frames_pass_one_guard_naming_who_may_send_them() {
    let w = world().await;
    let reason = |f: &Frame| refused(f).map(|r| r.error);
    // The in-process SMS gateway holds no user's session: its word on
    // presence is refused and changes nothing.
    w.tell_presence(&w.sms, "alice", PresenceState::Busy).await;
    assert_eq!(
        w.sms.rec.take("refusal", reason).await,
        ProtocolError::WrongParty
    );
    let alice = w.shared.deps.presence.get("alice").map(|e| e.state);
    assert_eq!(alice, Some(State::Online));
    // Any gateway may tell its medium's health.
    let s = w.sms.session.as_ref().unwrap();
    let down = frames::make_health(s, false, "SMSC unreachable".into(), NOW);
    w.send(&w.sms.id, Frame::Health(down)).await;
    w.sms.rec.none("a refusal", reason).await;
    let healthy = |id: &MemberId| {
        w.shared
            .deps
            .members
            .snapshot()
            .into_iter()
            .find(|m| &m.id == id)
            .map(|m| m.healthy)
    };
    assert_eq!(healthy(&w.sms.id), Some(false));
    // A member that serves no medium (a processor) may not.
    let p = logged_in_member(&w, "proc-x", None, None).await;
    let h = frames::make_health(p.session.as_ref().unwrap(), true, "ok".into(), NOW);
    w.send(&p.id, Frame::Health(h)).await;
    assert_eq!(
        p.rec.take("refusal", reason).await,
        ProtocolError::WrongParty
    );
    assert_eq!(
        w.shared.refusals(),
        vec![("wrong_party", 2)],
        "each refusal is counted"
    );
}
