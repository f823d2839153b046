//! `Idempotency-Key` on `POST /v1/messages`: a client that retries after a
//! lost answer gets the first answer again and the message is sent once —
//! concurrently, across a restart, and per user; a key reused for another
//! message is refused.
mod common;

use common::{Api, TestNode};
use serde_json::{json, Value};

fn inbox_count(bob: &Api, txn: &str) -> usize {
    bob.inbox().iter().filter(|m| m["txn"] == txn).count()
}

#[test]
fn a_retried_message_is_sent_once_and_answered_the_same() {
    let node = TestNode::start();
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    let carol = node.admin.add_user("carol", &[("im", "carol")]);
    let msg = json!({"to": "bob", "body": "pay the invoice once"});

    let (s1, r1, first) = alice.post_keyed("order-17", &msg);
    assert_eq!((s1, r1), (202, false), "{first}");
    let txn = first["txn"].as_str().unwrap().to_string();
    let (s2, r2, again) = alice.post_keyed("order-17", &msg);
    assert_eq!((s2, r2), (202, true), "{again}");
    assert_eq!(again, first, "the same answer");
    alice.expect_status(&txn, "delivered");
    assert_eq!(inbox_count(&bob, &txn), 1);

    // The same key with another message is a client bug: refused.
    let (s, _, v) = alice.post_keyed("order-17", &json!({"to": "bob", "body": "something else"}));
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["code"], "idempotency_key_reused");
    let (s, _, v) = alice.post_keyed(
        "order-17",
        &json!({"to": "carol", "body": "pay the invoice once"}),
    );
    assert_eq!(s, 422, "{v}");

    // Keys are per user.
    let (s, replayed, v) = carol.post_keyed("order-17", &msg);
    assert_eq!((s, replayed), (202, false), "{v}");
    assert_ne!(v["txn"], first["txn"]);

    // Bad keys.
    for bad in ["", &"k".repeat(256), "two words", "ключ"] {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let r = agent
            .post(format!("{}/v1/messages", alice.base))
            .header("Authorization", format!("Bearer {}", alice.token))
            .header("Idempotency-Key", bad)
            .send_json(&msg);
        if let Ok(mut r) = r {
            assert_eq!(r.status().as_u16(), 400, "{bad:?}");
            let v: Value = r.body_mut().read_json().unwrap();
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("Idempotency-Key"),
                "{v}"
            );
        }
    }

    // A refusal is replayed as a refusal, and sends nothing.
    let nobody = json!({"to": "nobody", "body": "x"});
    let (s, _, v) = alice.post_keyed("to-nobody", &nobody);
    assert_eq!(s, 422, "{v}");
    let (s, _, v2) = alice.post_keyed("to-nobody", &nobody);
    assert_eq!(s, 422, "{v2}");
    assert_eq!(v2["error"]["code"], v["error"]["code"]);

    // Across a restart of the node.
    let dir = node.stop();
    let node = TestNode::start_in(dir);
    let alice = Api::new(&node.url, &alice.token);
    let bob = Api::new(&node.url, &bob.token);
    let (s, replayed, v) = alice.post_keyed("order-17", &msg);
    assert_eq!((s, replayed), (202, true), "{v}");
    assert_eq!(v["txn"], first["txn"]);
    assert_eq!(inbox_count(&bob, &txn), 1);
}

#[test]
fn concurrent_retries_send_one_message() {
    let node = TestNode::start();
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    for round in 0..5 {
        let key = format!("burst-{round}");
        let msg = json!({"to": "bob", "body": format!("burst {round}")});
        let answers: Vec<(u16, bool, Value)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..6)
                .map(|_| s.spawn(|| alice.post_keyed(&key, &msg)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let txns: std::collections::BTreeSet<String> = answers
            .iter()
            .map(|(s, _, v)| {
                assert_eq!(*s, 202, "{v}");
                v["txn"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(txns.len(), 1, "one transaction for one key: {answers:?}");
        assert_eq!(
            answers.iter().filter(|(_, r, _)| !r).count(),
            1,
            "{answers:?}"
        );
        let txn = txns.into_iter().next().unwrap();
        alice.expect_status(&txn, "delivered");
        assert_eq!(inbox_count(&bob, &txn), 1);
    }
}

#[test]
fn a_websocket_send_with_a_key_is_sent_once_and_shares_the_http_keys() {
    let node = TestNode::start();
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    let mut ws = common::Ws::connect(&node.url, Some(&alice.token));
    let frame = |id: u64| json!({"type": "send", "id": id, "to": "bob", "body": "once", "idempotency_key": "ws-1"});
    ws.send(frame(1));
    let first = ws.expect("accepted");
    assert_eq!(first["id"], 1);
    assert!(first.get("replayed").is_none(), "{first}");
    let txn = first["txn"].as_str().unwrap().to_string();
    // A reconnecting client sends it again.
    drop(ws);
    let mut ws = common::Ws::connect(&node.url, Some(&alice.token));
    ws.send(frame(2));
    let again = ws.expect("accepted");
    assert_eq!(
        (again["id"].as_u64(), again["txn"].as_str()),
        (Some(2), Some(txn.as_str()))
    );
    assert_eq!(again["replayed"], true);
    // The same key over HTTP is the same message.
    let (s, replayed, v) = alice.post_keyed("ws-1", &json!({"to": "bob", "body": "once"}));
    assert_eq!((s, replayed), (202, true), "{v}");
    assert_eq!(v["txn"], txn.as_str());
    alice.expect_status(&txn, "delivered");
    assert_eq!(inbox_count(&bob, &txn), 1);
    // Another body under the key, and a bad key, are rejected on the socket.
    ws.send(
        json!({"type": "send", "id": 3, "to": "bob", "body": "twice", "idempotency_key": "ws-1"}),
    );
    let r = ws.expect("rejected");
    assert_eq!(
        (r["id"].as_u64(), r["code"].as_str()),
        (Some(3), Some("idempotency_key_reused"))
    );
    ws.send(json!({"type": "send", "id": 4, "to": "bob", "body": "x", "idempotency_key": "a b"}));
    let r = ws.expect("rejected");
    assert_eq!(
        (r["id"].as_u64(), r["code"].as_str()),
        (Some(4), Some("bad_request"))
    );
}
