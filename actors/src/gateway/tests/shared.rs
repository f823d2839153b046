//! Long content is held once however many messages carry it (one mail to
//! many recipients), across a restart, and forgotten with the last.

use super::*;
use switchboard_core::store::records::key2;

#[actix_rt::test]
async fn long_content_is_stored_once_for_many_messages_and_forgotten_with_the_last() {
    let w = world();
    let r = w.start(FakeMedium::default()).await;
    let long = vec![b'x'; OutboxEntry::SHARE_MIN + 1];
    let mut subs = Vec::new();
    for _ in 0..3 {
        let mut o = w.originate();
        o.content = long.clone();
        drop(w.client(&r, o));
        subs.push(w.submit().await);
    }
    let key = OutboxEntry::content_key(&w.me.member, &mac::sha256(&long));
    let outbox_bytes = || -> usize {
        let prefix = key2(w.me.member.as_str(), b"");
        let all = w.store.scan(Tree::Outbox, &prefix).unwrap();
        all.iter().map(|(_, v)| v.len()).sum()
    };
    assert!(
        outbox_bytes() < 2 * long.len(),
        "one copy on disk for three messages: {} bytes",
        outbox_bytes()
    );
    let held = || async { r.gw.send(GetInFlight).await.unwrap().shared_contents };
    assert_eq!(held().await, (1, long.len()), "and one in memory");

    // A new instance reads it once and transmits it whole.
    let r = w.restart(r).await;
    for _ in 0..3 {
        w.submit().await;
    }
    let in_flight = r.gw.send(GetInFlight).await.unwrap();
    assert_eq!(
        (in_flight.outbox, in_flight.shared_contents),
        (3, (1, long.len()))
    );
    let rel = w.release(&r, subs[0].imi.clone(), "gw-a");
    from_broker(&r, Frame::Release(Box::new(rel))).await;
    w.broker
        .take("report", |f| matches!(f, Frame::Report(_)).then_some(()))
        .await;
    assert_eq!(r.medium.delivered.lock().unwrap()[0].content, long);

    // Each outcome drops its entry; the content goes with the last.
    for (i, s) in subs.iter().enumerate() {
        let n = frames::make_notify(&r.session, s.imi.txn, Outcome::Delivered, None, NOW);
        from_broker(&r, Frame::Notify(n)).await;
        w.broker
            .take("notify ack", |f| {
                matches!(f, Frame::NotifyAck(_)).then_some(())
            })
            .await;
        w.store.writer().flush().await.unwrap();
        let kept = w.store.get(Tree::Outbox, &key).unwrap().is_some();
        assert_eq!(kept, i < 2, "after outcome {}", i + 1);
    }
    assert!(w.store.outbox(&w.me.member).unwrap().is_empty());
    assert_eq!(outbox_bytes(), 0);
}
