//! The archive's copy: an originator keeps a message's content until the
//! archive acknowledged its copy *and* the outcome is known, in either
//! order; restarted before that, it sends the copy again when the broker
//! asks (`ArchiveCopy`), and a forged ask sends nothing.

use super::*;

fn archive_id() -> MemberId {
    MemberId::new("archive-1")
}

struct ArchiveSide {
    keys: MemberKeys,
    rec: Recorder,
}

impl ArchiveSide {
    /// The next copy it was sent, checked with its own key as the archive
    /// checks it.
    async fn copy(&self) -> Transmit {
        let t = self
            .rec
            .take("copy", |f| match f {
                Frame::Transmit(t) => Some((**t).clone()),
                _ => None,
            })
            .await;
        frames::check_copy(&archive_id(), self.keys.current().1, &t).expect("the copy verifies");
        t
    }
}

impl World {
    /// An archive member with a key, recording what it is sent.
    fn archive(&self) -> ArchiveSide {
        let keys = MemberKeys::generate(archive_id(), None);
        self.ring.put(keys.clone());
        let rec = Recorder::default();
        (self.members).connect(archive_id(), None, rec.clone().start().recipient(), NOW);
        ArchiveSide { keys, rec }
    }

    /// The attempt the broker releases to gw-b, the archive taking a copy.
    fn archived(&self, imi: Imi) -> (BrokerImi, Tag) {
        let bimi = BrokerImi {
            imi,
            route: Route {
                mechanism: MediumKind::Im,
                address: "bob".into(),
                recipient_user: Some("bob".into()),
                destination: MemberId::new("gw-b"),
                processors: vec![],
                archive: Some(archive_id()),
                store_and_forward: false,
            },
            attempt: 1,
            tags: vec![],
        };
        let id = frames::inner_id(&self.k2, &bimi);
        (bimi, id)
    }

    /// A gateway started, a message originated, released with a copy for
    /// `archive`, and the copy there (checked): the gateway and the
    /// message's `Submit`.
    async fn copy_sent(&self, archive: &ArchiveSide) -> (Running, Submit) {
        let r = self.start(FakeMedium::default()).await;
        let (_client, sub) = self.originate_and_submit(&r).await;
        let (bimi, id) = self.archived(sub.imi.clone());
        let rel = frames::make_release(&r.session, &self.ring, bimi, id).unwrap();
        from_broker(&r, Frame::Release(Box::new(rel))).await;
        assert_eq!(archive.copy().await.content, b"hello");
        (r, sub)
    }

    async fn notify_delivered(&self, r: &Running, txn: TxnId) {
        let n = frames::make_notify(&r.session, txn, Outcome::Delivered, None, NOW);
        from_broker(r, Frame::Notify(n)).await;
        self.broker
            .take("notify ack", |f| {
                matches!(f, Frame::NotifyAck(_)).then_some(())
            })
            .await;
    }

    /// The outbox entries on disk, once the writes so far are durable.
    async fn stored_outbox(&self) -> usize {
        self.store.writer().flush().await.unwrap();
        self.store.outbox(&self.me.member).unwrap().len()
    }
}

async fn ack_from(r: &Running, from: MemberId, txn: TxnId) {
    r.gw.send(MiapFrame {
        from,
        frame: Frame::TransmitAck(TransmitAck { txn, attempt: 1 }),
    })
    .await
    .unwrap();
}

#[actix_rt::test]
async fn the_outcome_before_the_archives_ack_keeps_the_content_until_the_ack() {
    let w = world();
    let archive = w.archive();
    let (r, sub) = w.copy_sent(&archive).await;
    let txn = sub.imi.txn;

    w.notify_delivered(&r, txn).await;
    assert_eq!(w.stored_outbox().await, 1, "kept for the archive");
    let in_flight = r.gw.send(GetInFlight).await.unwrap();
    assert_eq!((in_flight.outbox, in_flight.archive_copies), (1, 1));

    // Only the archive's acknowledgement settles it, not another member's.
    ack_from(&r, MemberId::new("gw-b"), txn).await;
    assert_eq!(w.stored_outbox().await, 1);
    ack_from(&r, archive_id(), txn).await;
    assert_eq!(w.stored_outbox().await, 0, "forgotten once both are known");
    let in_flight = r.gw.send(GetInFlight).await.unwrap();
    assert_eq!((in_flight.outbox, in_flight.archive_copies), (0, 0));
}

#[actix_rt::test]
async fn the_archives_ack_before_the_outcome_keeps_the_content_until_the_outcome() {
    let w = world();
    let archive = w.archive();
    let (r, sub) = w.copy_sent(&archive).await;
    ack_from(&r, archive_id(), sub.imi.txn).await;
    assert_eq!(w.stored_outbox().await, 1, "the outcome is not known yet");
    w.notify_delivered(&r, sub.imi.txn).await;
    assert_eq!(w.stored_outbox().await, 0);
}

#[actix_rt::test]
async fn restarted_before_the_archives_ack_the_copy_goes_again_when_the_broker_asks() {
    let w = world();
    let archive = w.archive();
    let (r, sub) = w.copy_sent(&archive).await;
    let txn = sub.imi.txn;
    w.notify_delivered(&r, txn).await;

    // A crash before the archive's acknowledgement: the entry is there and
    // is submitted again.
    let r = w.restart(r).await;
    assert_eq!(w.submit().await.imi, sub.imi);
    let (bimi, id) = w.archived(sub.imi.clone());

    // A forged ask (the route changed after the broker signed it) sends
    // nothing.
    let other = frames::make_archive_copy(&r.session, &w.ring, bimi.clone(), id, &archive_id())
        .map(|mut a| {
            a.imi.route.address = "mallory".into();
            a
        })
        .unwrap();
    from_broker(&r, Frame::ArchiveCopy(Box::new(other))).await;
    let refused = w.broker.take("refused", |f| match f {
        Frame::Refused(x) => Some(*x),
        _ => None,
    });
    assert_eq!(refused.await.error, ProtocolError::BadMac);
    archive
        .rec
        .none("copy", |f| matches!(f, Frame::Transmit(_)).then_some(()))
        .await;

    let ask = frames::make_archive_copy(&r.session, &w.ring, bimi, id, &archive_id()).unwrap();
    from_broker(&r, Frame::ArchiveCopy(Box::new(ask))).await;
    w.notify_delivered(&r, txn).await;
    let again = archive.copy().await;
    assert_eq!(
        (again.imi.imi.txn, again.content.as_slice()),
        (txn, &b"hello"[..])
    );
    assert_eq!(w.stored_outbox().await, 1, "still waiting for the archive");
    ack_from(&r, archive_id(), txn).await;
    assert_eq!(w.stored_outbox().await, 0);
}

#[actix_rt::test]
async fn a_copy_the_archive_refuses_does_not_keep_the_content() {
    let w = world();
    let archive = w.archive();
    let (r, sub) = w.copy_sent(&archive).await;
    let txn = sub.imi.txn;
    w.notify_delivered(&r, txn).await;
    let refusal = RefuseReason {
        error: ProtocolError::BadGrant,
        txn: Some(txn),
    };
    r.gw.send(MiapFrame {
        from: archive_id(),
        frame: Frame::Refused(refusal),
    })
    .await
    .unwrap();
    assert_eq!(w.stored_outbox().await, 0);
}
