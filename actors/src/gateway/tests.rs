//! Mailbox tests of a gateway with a fake medium; a recording recipient plays
//! the broker, answering with frames made by the protocol functions.

use std::sync::{Arc, Mutex};

mod archive;
mod shared;

use actix::prelude::*;

use super::*;
use crate::bus::{AnnouncePresence, BrokerHandle, MiapFrame};
use crate::medium::futures_like::LocalBoxFuture;
use crate::medium::{Delivery, Health, Medium, MediumAck, NonDelivery};
use crate::registry::MemberRegistry;
use crate::testkit::Recorder;
use switchboard_core::protocol::clock::ManualClock;
use switchboard_core::protocol::frames::LoginVerifier;
use switchboard_core::protocol::frames::RefuseReason;
use switchboard_core::protocol::tscs::{NonceCache, Session};
use switchboard_core::protocol::*;
use switchboard_core::store::Store;

const NOW: u64 = 1_800_000_000_000;

#[derive(Clone, Default)]
struct FakeMedium {
    delivered: Arc<Mutex<Vec<Delivery>>>,
    fail: Option<String>,
}

impl Medium for FakeMedium {
    fn kind(&self) -> MediumKind {
        MediumKind::Im
    }
    fn health(&self) -> Health {
        Health {
            up: true,
            detail: "fake".into(),
        }
    }
    fn deliver(&mut self, d: Delivery) -> LocalBoxFuture<'static, Result<MediumAck, NonDelivery>> {
        self.delivered.lock().unwrap().push(d);
        let r = self
            .fail
            .clone()
            .map_or(Ok(MediumAck::Delivered), |f| Err(NonDelivery(f)));
        Box::pin(async move { r })
    }
}

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    ring: KeyRing,
    k2: SecretKey,
    clock: ManualClock,
    members: MemberRegistry,
    broker: Recorder,
    broker_handle: BrokerHandle,
    me: MemberKeys,
}

struct Running {
    gw: Addr<Gateway<FakeMedium>>,
    medium: FakeMedium,
    session: Session,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let ring = KeyRing::new(0);
    let me = MemberKeys::generate(MemberId::new("gw-a"), Some(MediumKind::Im));
    ring.put(me.clone());
    ring.put(MemberKeys::generate(
        MemberId::new("gw-b"),
        Some(MediumKind::Im),
    ));
    let broker = Recorder::default();
    let broker_handle = BrokerHandle::new(vec![broker.clone().start().recipient()]);
    World {
        _dir: dir,
        store,
        ring,
        k2: SecretKey::generate(),
        clock: ManualClock::at(NOW),
        members: MemberRegistry::default(),
        broker,
        broker_handle,
        me,
    }
}

fn broker_id() -> MemberId {
    MemberId::new("broker-1")
}

/// Places every delivery elsewhere, answering as `back` says: handed back
/// here (the other node never had it) or delivered there.
struct Scripted {
    back: bool,
    placed: Arc<Mutex<Vec<TxnId>>>,
}

impl crate::medium::Placement for Scripted {
    fn place(&mut self, d: Delivery) -> crate::medium::Placed {
        use crate::medium::{Elsewhere, Placed};
        self.placed.lock().unwrap().push(d.txn);
        let back = self.back;
        Placed::Elsewhere(Box::pin(async move {
            if back {
                Elsewhere::Back(
                    Box::new(d),
                    Some("by node a: home node c did not take it".into()),
                )
            } else {
                Elsewhere::Done(Ok(MediumAck::DeliveredVia("by node c".into())
                    .with_how(Some("the home node".into()))))
            }
        }))
    }
}

impl World {
    async fn start(&self, medium: FakeMedium) -> Running {
        self.start_placed(medium, None).await
    }

    async fn start_placed(&self, medium: FakeMedium, placement: Option<Scripted>) -> Running {
        let (key_id, key) = self.me.current();
        let mut gw = Gateway::new(
            GatewayConfig {
                id: self.me.member.clone(),
                key_id,
                key: key.clone(),
                broker_id: "broker-1".into(),
                session_ttl_ms: 600_000,
            },
            medium.clone(),
            self.broker_handle.clone(),
            self.members.clone(),
            self.store.clone(),
            Arc::new(self.clock.clone()),
        );
        if let Some(p) = placement {
            gw = gw.with_placement(p);
        }
        let gw = gw.start();
        let session = self.accept_login(&gw).await;
        Running {
            gw,
            medium,
            session,
        }
    }

    /// Plays the broker at the gateway's next login: accepts it, answers
    /// `LoginAck`; the new session.
    async fn accept_login(&self, gw: &Addr<Gateway<FakeMedium>>) -> Session {
        let login = self
            .broker
            .take("login", |f| match f {
                Frame::Login(l) => Some(l.clone()),
                _ => None,
            })
            .await;
        let v = LoginVerifier {
            broker: "broker-1".into(),
            skew_ms: 30_000,
            ring: self.ring.clone(),
        };
        let now = switchboard_core::protocol::clock::Clock::now_ms(&self.clock);
        let (ack, session) = v.accept(&login, now, &mut NonceCache::default()).unwrap();
        gw.send(MiapFrame {
            from: broker_id(),
            frame: Frame::LoginAck(ack),
        })
        .await
        .unwrap();
        session
    }

    fn originate(&self) -> Originate {
        Originate {
            sender: Address::new(MediumKind::Im, "alice"),
            sender_user: Some("alice".into()),
            to: To::User("bob".into()),
            content: b"hello".to_vec(),
            content_type: "text/plain".into(),
            subject: None,
            priority: Priority::Normal,
            expires_in_ms: 60_000,
            receipt: true,
            dedupe: None,
        }
    }

    /// A client originates a message; returns its pending answer and the
    /// `Submit` the broker received.
    async fn originate_and_submit(
        &self,
        r: &Running,
    ) -> (
        actix_rt::task::JoinHandle<Result<Accepted, OriginateError>>,
        Submit,
    ) {
        let client = self.client(r, self.originate());
        (client, self.submit().await)
    }

    /// A client sends `o` to the gateway; its pending answer.
    fn client(
        &self,
        r: &Running,
        o: Originate,
    ) -> actix_rt::task::JoinHandle<Result<Accepted, OriginateError>> {
        let gw = r.gw.clone();
        actix_rt::spawn(async move { gw.send(o).await.unwrap() })
    }

    /// The gateway stops (its link is gone) and a new instance starts over
    /// the same store.
    async fn restart(&self, r: Running) -> Running {
        drop(r);
        self.members.disconnect(&self.me.member);
        self.start(FakeMedium::default()).await
    }

    async fn submit(&self) -> Submit {
        self.broker
            .take("submit", |f| match f {
                Frame::Submit(s) => Some(s.clone()),
                _ => None,
            })
            .await
    }

    fn release(&self, r: &Running, imi: Imi, dest: &str) -> Release {
        let bimi = BrokerImi {
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
        };
        let id = frames::inner_id(&self.k2, &bimi);
        frames::make_release(&r.session, &self.ring, bimi, id).unwrap()
    }
}

async fn from_broker(r: &Running, frame: Frame) {
    r.gw.send(MiapFrame {
        from: broker_id(),
        frame,
    })
    .await
    .unwrap();
}

#[actix_rt::test]
async fn originate_release_transmit_deliver_report_notify() {
    let w = world();
    let r = w.start(FakeMedium::default()).await;
    let (client, sub) = w.originate_and_submit(&r).await;
    frames::check_submit(&r.session, &sub, NOW).expect("the submit verifies at the broker");
    assert_eq!(sub.imi.content_sha256, mac::sha256(b"hello"));
    assert_eq!(
        w.store.outbox(&w.me.member).unwrap().len(),
        1,
        "durable before submit"
    );

    let rel = w.release(&r, sub.imi.clone(), "gw-a");
    from_broker(&r, Frame::Release(Box::new(rel.clone()))).await;
    let accepted = client.await.unwrap().unwrap();
    assert_eq!(accepted.txn, sub.imi.txn);
    assert_eq!(accepted.route.unwrap().destination.as_str(), "gw-a");
    let ack = w.broker.take("release ack", |f| match f {
        Frame::ReleaseAck(a) => Some(a.clone()),
        _ => None,
    });
    frames::check_release_ack(&r.session, &ack.await).unwrap();

    // The gateway is also the destination: it transmits to itself, delivers
    // and reports.
    let report = w
        .broker
        .take("report", |f| match f {
            Frame::Report(x) => Some(x.clone()),
            _ => None,
        })
        .await;
    frames::check_report(&r.session, &report, &rel.id).unwrap();
    assert_eq!(report.status, ReportStatus::Delivered);
    let delivered = r.medium.delivered.lock().unwrap().clone();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        (delivered[0].content.as_slice(), delivered[0].from.as_str()),
        (&b"hello"[..], "alice")
    );

    let n = frames::make_notify(
        &r.session,
        sub.imi.txn,
        Outcome::Delivered,
        Some(MediumKind::Im),
        NOW,
    );
    from_broker(&r, Frame::Notify(n)).await;
    w.broker
        .take("notify ack", |f| {
            matches!(f, Frame::NotifyAck(_)).then_some(())
        })
        .await;
    w.store.writer().flush().await.unwrap();
    assert!(
        w.store.outbox(&w.me.member).unwrap().is_empty(),
        "content dropped after the outcome"
    );
}

#[actix_rt::test]
async fn forged_release_is_refused_and_nothing_is_transmitted() {
    let w = world();
    let r = w.start(FakeMedium::default()).await;
    let (_client, sub) = w.originate_and_submit(&r).await;
    let mut rel = w.release(&r, sub.imi.clone(), "gw-a");
    rel.imi.route.address = "mallory".into();
    from_broker(&r, Frame::Release(Box::new(rel))).await;
    let refused = w.broker.take("refused", |f| match f {
        Frame::Refused(x) => Some(*x),
        _ => None,
    });
    assert_eq!(refused.await.error, ProtocolError::BadMac);
    w.broker
        .none("release ack", |f| {
            matches!(f, Frame::ReleaseAck(_)).then_some(())
        })
        .await;
    assert!(r.medium.delivered.lock().unwrap().is_empty());
    assert_eq!(
        r.gw.send(GetInFlight).await.unwrap().outbox,
        1,
        "the content is kept"
    );
}

/// Held for review: a forged `Held` is refused and the client still waits;
/// the broker's answers the client "accepted, held", the content stays in
/// the outbox, and the reviewer's release later transmits it.
#[actix_rt::test]
async fn a_held_message_is_accepted_and_kept_until_a_release() {
    let w = world();
    let r = w.start(FakeMedium::default()).await;
    let (client, sub) = w.originate_and_submit(&r).await;
    let txn = sub.imi.txn;
    let mut forged = frames::make_held(&r.session, txn, "policy:cards".into());
    forged.reason = "policy:other".into();
    from_broker(&r, Frame::Held(forged)).await;
    let refused = w.broker.take("refused", |f| match f {
        Frame::Refused(x) => Some(*x),
        _ => None,
    });
    assert_eq!(refused.await.error, ProtocolError::BadMac);
    assert!(!client.is_finished(), "a forged answer answers nobody");

    let held = frames::make_held(&r.session, txn, "policy:cards".into());
    from_broker(&r, Frame::Held(held)).await;
    let accepted = client.await.unwrap().unwrap();
    assert_eq!(
        (accepted.txn, accepted.route, accepted.held.as_deref()),
        (txn, None, Some("policy:cards"))
    );
    assert_eq!(r.gw.send(GetInFlight).await.unwrap().outbox, 1, "kept");
    assert!(r.medium.delivered.lock().unwrap().is_empty());

    let rel = w.release(&r, sub.imi.clone(), "gw-a");
    from_broker(&r, Frame::Release(Box::new(rel))).await;
    w.broker
        .take("report", |f| match f {
            Frame::Report(x) => Some(x.clone()),
            _ => None,
        })
        .await;
    assert_eq!(r.medium.delivered.lock().unwrap().len(), 1);
}

#[actix_rt::test]
async fn transmit_with_another_hops_grant_or_wrong_content_is_refused() {
    let w = world();
    let r = w.start(FakeMedium::default()).await;
    let other = Recorder::default();
    w.members.connect(
        MemberId::new("gw-b"),
        Some(MediumKind::Im),
        other.clone().start().recipient(),
        NOW,
    );
    let imi = Imi {
        txn: TxnId::generate(NOW),
        originator: MemberId::new("gw-b"),
        sender: Address::new(MediumKind::Im, "carol"),
        sender_user: Some("carol".into()),
        recipient: To::User("bob".into()),
        content_type: "text/plain".into(),
        content_len: 2,
        content_sha256: mac::sha256(b"hi"),
        subject: None,
        priority: Priority::Normal,
        expires_at_ms: NOW + 60_000,
        created_at_ms: NOW,
        receipt: false,
        attributes: vec![],
    };
    // A release whose grant is for gw-b, presented to gw-a.
    let rel = w.release(&r, imi.clone(), "gw-b");
    let mut t = frames::make_transmit(&rel, &MemberId::new("gw-b"), b"hi".to_vec()).unwrap();
    t.imi.route.destination = MemberId::new("gw-a");
    r.gw.send(MiapFrame {
        from: MemberId::new("gw-b"),
        frame: Frame::Transmit(Box::new(t)),
    })
    .await
    .unwrap();
    let e = other.take("refused", |f| match f {
        Frame::Refused(x) => Some(*x),
        _ => None,
    });
    assert_eq!(
        e.await,
        RefuseReason {
            error: ProtocolError::BadGrant,
            txn: Some(imi.txn)
        }
    );
    let security = w.broker.take("security event", |f| match f {
        Frame::Refused(x) => Some(*x),
        _ => None,
    });
    assert_eq!(security.await.error, ProtocolError::BadGrant);

    let rel = w.release(&r, imi.clone(), "gw-a");
    let t = frames::make_transmit(&rel, &MemberId::new("gw-a"), b"HI".to_vec()).unwrap();
    r.gw.send(MiapFrame {
        from: MemberId::new("gw-b"),
        frame: Frame::Transmit(Box::new(t)),
    })
    .await
    .unwrap();
    let e = other.take("refused", |f| match f {
        Frame::Refused(x) => Some(x.error),
        _ => None,
    });
    assert_eq!(e.await, ProtocolError::DigestMismatch);
    assert!(
        r.medium.delivered.lock().unwrap().is_empty(),
        "nothing delivered"
    );
    w.broker
        .none("report", |f| matches!(f, Frame::Report(_)).then_some(()))
        .await;
}

#[actix_rt::test]
async fn medium_failure_becomes_non_delivery_and_reports_are_resent_until_acked() {
    let w = world();
    let r = w
        .start(FakeMedium {
            fail: Some("mailbox full".into()),
            ..Default::default()
        })
        .await;
    let (_client, sub) = w.originate_and_submit(&r).await;
    let rel = w.release(&r, sub.imi.clone(), "gw-a");
    from_broker(&r, Frame::Release(Box::new(rel.clone()))).await;
    let report = w.broker.take("report", |f| match f {
        Frame::Report(x) => Some(x.clone()),
        _ => None,
    });
    assert_eq!(
        report.await.status,
        ReportStatus::NonDelivery("mailbox full".into())
    );
    assert_eq!(r.gw.send(GetInFlight).await.unwrap().unacked_reports, 1);
    from_broker(
        &r,
        Frame::ReportAck(frames::make_report_ack(&r.session, sub.imi.txn, 1)),
    )
    .await;
    assert_eq!(r.gw.send(GetInFlight).await.unwrap().unacked_reports, 0);
}

#[actix_rt::test]
async fn restart_resubmits_the_outbox() {
    let w = world();
    let r = w.start(FakeMedium::default()).await;
    let (_client, first) = w.originate_and_submit(&r).await;
    // The gateway stops before the broker answers (a crash after the outbox
    // write); a new instance over the same store submits the message again.
    r.gw.send(GetInFlight).await.unwrap();
    let r2 = w.restart(r).await;
    let again = w.submit().await;
    assert_eq!(again.imi, first.imi, "the same IMI, the same txn");
    frames::check_submit(&r2.session, &again, NOW).unwrap();
}

#[actix_rt::test]
async fn outbox_entries_a_takeover_adopted_are_submitted_once() {
    let w = world();
    let r = w.start(FakeMedium::default()).await;
    let (_client, first) = w.originate_and_submit(&r).await;
    assert_eq!(r.gw.send(AdoptOutbox).await.unwrap(), 0, "nothing new");
    // Another node's entry lands in this store (a takeover wrote it).
    let mut theirs = w.store.outbox(&w.me.member).unwrap().remove(0);
    theirs.imi.txn = TxnId::generate(NOW);
    let mut b = WriteBatch::new();
    b.insert(
        Tree::Outbox,
        OutboxEntry::key(&w.me.member, &theirs.imi.txn),
        enc(&theirs),
    );
    w.store.writer().write(b).await.unwrap();
    assert_eq!(r.gw.send(AdoptOutbox).await.unwrap(), 1);
    let adopted = w.submit().await;
    assert_eq!(adopted.imi.txn, theirs.imi.txn);
    assert_ne!(adopted.imi.txn, first.imi.txn, "not its own again");
    frames::check_submit(&r.session, &adopted, NOW).unwrap();
    assert_eq!(r.gw.send(AdoptOutbox).await.unwrap(), 0, "once");
    assert_eq!(r.gw.send(GetInFlight).await.unwrap().outbox, 2);
}

#[actix_rt::test]
async fn a_dedupe_key_makes_a_retried_originate_a_duplicate_even_after_a_restart() {
    let w = world();
    let r = w.start(FakeMedium::default()).await;
    let keyed = || Originate {
        dedupe: Some("fax-inbox:+4930__a.txt".into()),
        ..w.originate()
    };
    let _client = w.client(&r, keyed());
    let first = w.submit().await;
    // The client retries (it crashed before recording the answer).
    assert_eq!(
        r.gw.send(keyed()).await.unwrap(),
        Err(OriginateError::Duplicate(first.imi.txn))
    );
    // Across a restart of the gateway too.
    let r2 = w.restart(r).await;
    let again = w.submit().await;
    assert_eq!(
        again.imi.txn, first.imi.txn,
        "the outbox entry is resubmitted"
    );
    assert_eq!(
        r2.gw.send(keyed()).await.unwrap(),
        Err(OriginateError::Duplicate(first.imi.txn))
    );
    // Another key is another message.
    let other = Originate {
        dedupe: Some("fax-inbox:+4930__b.txt".into()),
        ..w.originate()
    };
    let _c2 = w.client(&r2, other);
    assert_ne!(w.submit().await.imi.txn, first.imi.txn);
}

#[actix_rt::test]
async fn a_concurrent_retry_is_a_duplicate_and_old_keys_are_forgotten() {
    let w = world();
    let r = w.start(FakeMedium::default()).await;
    let keyed = || Originate {
        dedupe: Some("http:alice:k1".into()),
        ..w.originate()
    };
    // Two at once: the second arrives while the first's write is in flight.
    let first = r.gw.send(keyed());
    let second = r.gw.send(keyed());
    let submitted = w.submit().await;
    let second = actix_rt::time::timeout(std::time::Duration::from_secs(5), second)
        .await
        .expect("the retry is answered at once, not submitted again");
    assert_eq!(
        second.unwrap(),
        Err(OriginateError::Duplicate(submitted.imi.txn))
    );
    drop(first);
    // Past the retention the key is forgotten (on the next start or the
    // hourly sweep): the same key is a new message.
    w.clock.set(NOW + DEDUPE_RETENTION_MS + 60_000);
    let r2 = w.restart(r).await;
    let _resubmitted = w.submit().await;
    w.store.writer().barrier().await.unwrap();
    let _c = w.client(&r2, keyed());
    assert_ne!(w.submit().await.imi.txn, submitted.imi.txn);
}

#[actix_rt::test]
async fn an_expired_session_is_renewed_and_the_submit_sent_again() {
    let w = world();
    let r = w.start(FakeMedium::default()).await;
    let (client, first) = w.originate_and_submit(&r).await;
    let refusal = RefuseReason {
        error: ProtocolError::SessionExpired,
        txn: Some(first.imi.txn),
    };
    from_broker(&r, Frame::Refused(refusal)).await;
    let session = w.accept_login(&r.gw).await;
    let again = w.submit().await;
    assert_eq!(again.imi, first.imi);
    frames::check_submit(&session, &again, NOW).expect("signed under the new session");
    let r2 = Running {
        gw: r.gw.clone(),
        medium: r.medium.clone(),
        session,
    };
    let rel = w.release(&r2, again.imi.clone(), "gw-a");
    from_broker(&r2, Frame::Release(Box::new(rel))).await;
    assert_eq!(
        client.await.unwrap().unwrap().txn,
        first.imi.txn,
        "the waiting client gets its answer"
    );
}

#[actix_rt::test]
async fn an_im_gateway_asks_whose_token_and_trusts_only_the_brokers_answer() {
    let w = world();
    let r = w.start(FakeMedium::default()).await;
    let asking = actix_rt::spawn(r.gw.send(IdentifyToken("sb_secret".into())));
    let ask = w
        .broker
        .take("identify", |f| match f {
            Frame::Identify(i) => Some(i.clone()),
            _ => None,
        })
        .await;
    let digest = switchboard_core::protocol::mac::sha256(b"sb_secret");
    assert_eq!(
        ask.token_sha256, digest,
        "the digest travels, not the token"
    );
    frames::check_identify(&r.session, &ask, NOW, 30_000).expect("a valid identify");
    let answer = |req, user: &str, d: &[u8; 32]| MiapFrame {
        from: broker_id(),
        frame: Frame::Identity(frames::make_identity(
            &r.session,
            req,
            d,
            Some(user.into()),
            vec!["dave".into()],
        )),
    };
    // An answer for another digest, or to a request never made, is refused
    // and does not answer the asker.
    r.gw.send(answer(
        ask.req,
        "mallory",
        &switchboard_core::protocol::mac::sha256(b"other"),
    ))
    .await
    .unwrap();
    r.gw.send(answer(ask.req + 1, "mallory", &digest))
        .await
        .unwrap();
    for want in [ProtocolError::BadMac, ProtocolError::WrongParty] {
        let got = w
            .broker
            .take("refusal", |f| match f {
                Frame::Refused(x) => Some(x.error),
                _ => None,
            })
            .await;
        assert_eq!(got, want);
    }
    assert!(!asking.is_finished());
    r.gw.send(answer(ask.req, "carol", &digest)).await.unwrap();
    let user = asking.await.unwrap().unwrap();
    assert_eq!(
        user,
        Ok(Some(("carol".to_string(), vec!["dave".to_string()])))
    );
}

/// The broker sends a user to their home node: a forged `Redirect` is
/// refused and answers nobody; the real one tells the asker where.
#[actix_rt::test]
async fn an_im_gateway_told_a_user_is_served_elsewhere_tells_its_client_where() {
    let w = world();
    let r = w.start(FakeMedium::default()).await;
    let asking = actix_rt::spawn(r.gw.send(IdentifyToken("sb_erin".into())));
    let ask = w
        .broker
        .take("identify", |f| match f {
            Frame::Identify(i) => Some(i.clone()),
            _ => None,
        })
        .await;
    let digest = switchboard_core::protocol::mac::sha256(b"sb_erin");
    let redirect = |node: &str, d: &[u8; 32]| MiapFrame {
        from: broker_id(),
        frame: Frame::Redirect(frames::make_redirect(
            &r.session,
            ask.req,
            d,
            node.into(),
            Some("10.0.0.3:8080".into()),
        )),
    };
    let other = switchboard_core::protocol::mac::sha256(b"other");
    r.gw.send(redirect("evil", &other)).await.unwrap();
    let got = w
        .broker
        .take("refusal", |f| match f {
            Frame::Refused(x) => Some(x.error),
            _ => None,
        })
        .await;
    assert_eq!(got, ProtocolError::BadMac);
    assert!(!asking.is_finished());
    r.gw.send(redirect("c", &digest)).await.unwrap();
    assert_eq!(
        asking.await.unwrap().unwrap(),
        Err(IdentifyError::ServedElsewhere {
            node: "c".into(),
            http: Some("10.0.0.3:8080".into())
        })
    );
}

#[actix_rt::test]
async fn an_im_gateway_announces_the_sessions_it_holds_again_after_a_login() {
    let w = world();
    let r = w.start(FakeMedium::default()).await;
    let identify = |f: &Frame| match f {
        Frame::Identify(i) => Some(i.clone()),
        _ => None,
    };
    // alice's client showed her token (the broker answered: alice).
    let asking = actix_rt::spawn(r.gw.send(IdentifyToken("sb_alice".into())));
    let ask = w.broker.take("identify", identify).await;
    let identity = |s, req, d: &[u8; 32]| MiapFrame {
        from: broker_id(),
        frame: Frame::Identity(frames::make_identity(
            s,
            req,
            d,
            Some("alice".into()),
            vec![],
        )),
    };
    r.gw.send(identity(&r.session, ask.req, &ask.token_sha256))
        .await
        .unwrap();
    assert!(asking.await.unwrap().unwrap().is_ok());
    for (user, state) in [
        ("alice", PresenceState::Online),
        ("bob", PresenceState::Busy),
        ("bob", PresenceState::Offline),
    ] {
        r.gw.send(AnnouncePresence {
            user: user.into(),
            state,
        })
        .await
        .unwrap();
    }
    let mut told = Vec::new();
    for _ in 0..3 {
        let p = w
            .broker
            .take("presence", |f| match f {
                Frame::Presence(p) => Some(p.clone()),
                _ => None,
            })
            .await;
        frames::check_presence(&r.session, &p, NOW, 30_000).expect("signed");
        told.push((p.user, p.state));
    }
    assert_eq!(
        told,
        [
            ("alice".to_string(), PresenceState::Online),
            ("bob".to_string(), PresenceState::Busy),
            ("bob".to_string(), PresenceState::Offline),
        ]
    );
    // A new connection: the gateway logs in again and, once accepted,
    // shows the broker alice's token again (the broker holds a session
    // only for a user identified on the connection), then tells it her
    // session (bob's is gone).
    r.gw.send(crate::bus::LinkUp).await.unwrap();
    let session = w.accept_login(&r.gw).await;
    let again = w.broker.take("identify again", identify).await;
    frames::check_identify(&session, &again, NOW, 30_000).expect("signed in the new session");
    assert_eq!(again.token_sha256, ask.token_sha256);
    // Its answer is taken (no refusal), and answers no one.
    r.gw.send(identity(&session, again.req, &again.token_sha256))
        .await
        .unwrap();
    let p = w
        .broker
        .take("presence", |f| match f {
            Frame::Presence(p) => Some(p.clone()),
            _ => None,
        })
        .await;
    frames::check_presence(&session, &p, NOW, 30_000).expect("signed in the new session");
    assert_eq!((p.user.as_str(), p.state), ("alice", PresenceState::Online));
    w.broker
        .none("another presence, or a refusal", |f| match f {
            Frame::Presence(_) | Frame::Refused(_) => Some(()),
            _ => None,
        })
        .await;
}

#[actix_rt::test]
async fn a_placed_delivery_is_made_where_it_was_placed_and_says_how() {
    for back in [false, true] {
        let w = world();
        let placed = Arc::new(Mutex::new(Vec::new()));
        let p = Scripted {
            back,
            placed: placed.clone(),
        };
        let r = w.start_placed(FakeMedium::default(), Some(p)).await;
        let (_client, sub) = w.originate_and_submit(&r).await;
        let rel = w.release(&r, sub.imi.clone(), "gw-a");
        from_broker(&r, Frame::Release(Box::new(rel.clone()))).await;
        let report = w
            .broker
            .take("report", |f| match f {
                Frame::Report(x) => Some(x.clone()),
                _ => None,
            })
            .await;
        frames::check_report(&r.session, &report, &rel.id).unwrap();
        assert_eq!(*placed.lock().unwrap(), vec![sub.imi.txn]);
        let here = r.medium.delivered.lock().unwrap().len();
        if back {
            assert_eq!(here, 1, "handed back: delivered here");
            assert_eq!(
                report.status,
                ReportStatus::DeliveredVia("by node a: home node c did not take it".into())
            );
        } else {
            assert_eq!(here, 0, "delivered elsewhere only");
            assert_eq!(
                report.status,
                ReportStatus::DeliveredVia("by node c: the home node".into())
            );
        }
        // What another node hands this gateway is delivered here, never
        // placed again (no loop between nodes).
        if back {
            let d = r.medium.delivered.lock().unwrap()[0].clone();
            let ack = r.gw.send(DeliverHere(d)).await.unwrap();
            assert_eq!(ack, Ok(MediumAck::Delivered));
            assert_eq!(placed.lock().unwrap().len(), 1, "not placed again");
            assert_eq!(r.medium.delivered.lock().unwrap().len(), 2);
        }
    }
}

#[actix_rt::test]
async fn an_im_gateway_says_how_many_users_it_could_not_follow() {
    use crate::bus::presence::MAX_WATCHED;
    let w = world();
    let r = w.start(FakeMedium::default()).await;
    let all: Vec<String> = (0..MAX_WATCHED).map(|i| format!("u{i}")).collect();
    assert_eq!(r.gw.send(WatchUsers(all)).await.unwrap(), 0);
    // Full: a user already followed costs nothing, a new one is not taken
    // and counted, and no frame asks the broker for it.
    let more = vec!["u7".to_string(), "newcomer".to_string()];
    assert_eq!(r.gw.send(WatchUsers(more)).await.unwrap(), 1);
    let asked: usize = {
        let f = w.broker.frames.lock().unwrap();
        f.iter()
            .filter_map(|m| match &m.frame {
                Frame::Watch(x) => Some(x),
                _ => None,
            })
            .inspect(|x| assert!(!x.users.contains(&"newcomer".to_string())))
            .map(|x| x.users.len())
            .sum()
    };
    assert!(asked <= MAX_WATCHED, "{asked}");
}
