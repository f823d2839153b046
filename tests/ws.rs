//! Real-time IM over a real WebSocket: pushes, receipts, read, several
//! sessions, presence, cross-medium failover with a test SMS medium, delivery
//! manager hot-swap over the admin API, and bad input that never takes the
//! node down. One test drives the socket from Python's `websockets`.

mod common;

use std::process::Command;

use common::{eventually, node_with_sms, TestNode, TestSms, Ws};
use serde_json::json;

#[test]
fn im_over_websocket_pushes_receipts_and_reads_across_sessions() {
    let node = TestNode::start();
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    let mut a = Ws::connect(&node.url, Some(&alice.token));
    let mut b1 = Ws::connect(&node.url, Some(&bob.token));
    let mut b2 = Ws::connect(&node.url, Some(&bob.token));
    // Every session has joined (the handshake answers before that; a
    // session answers pings only once joined), and bob is online, before
    // alice sends. (Not the process-wide session gauge: other tests in
    // this binary move it.)
    for s in [&mut a, &mut b1, &mut b2] {
        s.ping();
    }
    eventually("bob online", || {
        (node.admin.get("/v1/presence/bob").1["state"] == "online").then_some(())
    });

    a.send(json!({"type": "send", "id": 7, "to": "bob", "body": "hi bob", "subject": "s"}));
    let acc = a.expect("accepted");
    assert_eq!(acc["id"], 7);
    assert_eq!(acc["route"], json!({"mechanism": "im", "address": "bob"}));
    let txn = acc["txn"].as_str().unwrap().to_string();
    for b in [&mut b1, &mut b2] {
        let m = b.expect("message");
        assert_eq!(
            (m["txn"].as_str(), m["from"].as_str(), m["body"].as_str()),
            (Some(txn.as_str()), Some("alice"), Some("hi bob"))
        );
        assert_eq!(m["subject"], "s");
    }
    let r = a.expect("receipt");
    assert_eq!(
        (r["txn"].as_str(), r["status"].as_str(), r["via"].as_str()),
        (Some(txn.as_str()), Some("delivered"), Some("im"))
    );

    b2.send(json!({"type": "read", "txn": txn}));
    let r = a.expect("receipt");
    assert_eq!(
        (r["status"].as_str(), r["txn"].as_str()),
        (Some("read"), Some(txn.as_str()))
    );
    alice.expect_status(&txn, "read");

    // A rejected send names the reason and echoes the id.
    a.send(json!({"type": "send", "id": "x1", "to": "nobody", "body": "?"}));
    let rej = a.expect("rejected");
    assert_eq!(
        (rej["id"].as_str(), rej["code"].as_str()),
        (Some("x1"), Some("unknown_recipient"))
    );
}

#[test]
fn offline_on_im_fails_over_to_sms_and_online_stays_on_im() {
    let sms = TestSms::default();
    let node = node_with_sms(sms.clone());
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node
        .admin
        .add_user("bob", &[("im", "bob"), ("sms", "+4915112345678")]);
    let mut a = Ws::connect(&node.url, Some(&alice.token));

    // bob has no session: offline on IM → the delivery manager goes to SMS.
    a.send(json!({"type": "send", "id": 1, "to": "bob", "body": "are you there?"}));
    let acc = a.expect("accepted");
    assert_eq!(
        acc["route"],
        json!({"mechanism": "sms", "address": "+4915112345678"})
    );
    let r = a.expect("receipt");
    assert_eq!(
        (r["status"].as_str(), r["via"].as_str()),
        (Some("delivered"), Some("sms"))
    );
    assert_eq!(
        sms.sent.lock().unwrap().clone(),
        vec![("+4915112345678".to_string(), "are you there?".to_string())]
    );
    assert!(bob.inbox().is_empty(), "not also in the IM inbox");

    // bob comes online: IM it is, then read. (The handshake answers before
    // presence knows: wait for it, or the broker still sees him offline.)
    let mut b = Ws::connect(&node.url, Some(&bob.token));
    eventually("bob online", || {
        (node.admin.get("/v1/presence/bob").1["state"] == "online").then_some(())
    });
    a.send(json!({"type": "send", "id": 2, "to": "bob", "body": "now on IM"}));
    let acc2 = a.expect("accepted");
    assert_eq!(acc2["route"]["mechanism"], "im", "{acc2}");
    let txn = acc2["txn"].as_str().unwrap().to_string();
    assert_eq!(b.expect("message")["body"], "now on IM");
    assert_eq!(a.expect("receipt")["via"], "im");
    b.send(json!({"type": "read", "txn": txn}));
    assert_eq!(a.expect("receipt")["status"], "read");
    let st = alice.expect_status(&txn, "read");
    assert_eq!(st["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(sms.sent.lock().unwrap().len(), 1);
}

#[test]
fn an_sms_refusal_fails_over_to_the_im_mailbox() {
    let node = node_with_sms(TestSms {
        fail: true,
        ..TestSms::default()
    });
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node
        .admin
        .add_user("bob", &[("im", "bob"), ("sms", "+4915100")]);
    let txn = alice.send("bob", "try sms first");
    let st = alice.expect_status(&txn, "delivered");
    let attempts: Vec<(String, String)> = st["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["mechanism"].as_str().unwrap().into(),
                a["outcome"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        vec![
            ("sms".into(), "non_delivery".into()),
            ("im".into(), "delivered".into())
        ],
        "SMS refused, then bob's IM mailbox (store-and-forward)"
    );
    assert_eq!(st["attempts"][0]["reason"], "test SMSC refused");
    assert_eq!(bob.inbox()[0]["body"], "try sms first");
}

#[test]
fn undeliverable_lists_every_attempt() {
    let node = node_with_sms(TestSms {
        fail: true,
        ..TestSms::default()
    });
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    node.admin.add_user("dora", &[("sms", "+4915177")]);
    let mut a = Ws::connect(&node.url, Some(&alice.token));
    a.send(json!({"type": "send", "to": "dora", "body": "x"}));
    let txn = a.expect("accepted")["txn"].as_str().unwrap().to_string();
    assert_eq!(a.expect("receipt")["status"], "undeliverable");
    let st = alice.expect_status(&txn, "undeliverable");
    assert_eq!(st["attempts"][0]["outcome"], "non_delivery");
    assert_eq!(st["attempts"][0]["gateway"], "gw-sms-test");
}

#[test]
fn presence_pushes_and_endpoints() {
    let node = TestNode::start();
    let alice = node
        .admin
        .add_user_with("alice", &[("im", "alice")], json!({"contacts": ["bob"]}));
    let bob = node
        .admin
        .add_user("bob", &[("im", "bob"), ("sms", "+4915100")]);
    let eve = node.admin.add_user("eve", &[("im", "eve")]);
    // alice follows her contacts from the start.
    let mut a = Ws::connect(&node.url, Some(&alice.token));
    assert_eq!(a.expect("presence")["state"], "offline");
    let mut b = Ws::connect(&node.url, Some(&bob.token));
    let p = a.expect("presence");
    assert_eq!(
        (p["user"].as_str(), p["state"].as_str()),
        (Some("bob"), Some("online"))
    );
    b.send(json!({"type": "presence", "state": "away", "note": "lunch"}));
    let p = a.expect("presence");
    assert_eq!(
        (p["state"].as_str(), p["note"].as_str()),
        (Some("away"), Some("lunch"))
    );
    // eve is in nobody's contacts: bob's presence is hidden from her as an
    // unknown user's is — no push, the same 404.
    let mut e = Ws::connect(&node.url, Some(&eve.token));
    e.send(json!({"type": "subscribe", "users": ["bob", "nobody"]}));
    let (hidden, unknown) = (eve.get("/v1/presence/bob"), eve.get("/v1/presence/nobody"));
    assert_eq!(
        hidden, unknown,
        "nothing tells a hidden user from an unknown one"
    );
    assert_eq!(hidden.0, 404);

    let (code, v) = alice.get("/v1/presence/bob");
    assert_eq!(code, 200);
    assert_eq!(
        (v["state"].as_str(), v["note"].as_str()),
        (Some("away"), Some("lunch"))
    );
    // This node has no SMS gateway up: bob's phone reaches nobody now.
    assert_eq!(v["mediums"], json!({"im": "away", "sms": "unavailable"}));
    assert!(v["since"].as_str().unwrap().ends_with('Z'));

    assert_eq!(bob.put("/v1/presence", &json!({"state": "busy"})).0, 204);
    assert_eq!(a.expect("presence")["state"], "busy");
    assert_eq!(bob.put("/v1/presence", &json!({"state": "asleep"})).0, 400);
    assert_eq!(alice.get("/v1/presence/nobody").0, 404);
    // bob is in alice's contacts, so alice is shown bob's... and bob
    // alice's (either list counts); the admin sees everyone's.
    assert_eq!(bob.get("/v1/presence/alice").0, 200);
    assert_eq!(node.admin.get("/v1/presence/eve").0, 200);
    drop(b);
    assert_eq!(a.expect("presence")["state"], "offline");
    // Shared with everyone, bob's presence reaches eve.
    let (status, v) = node.admin.get("/v1/admin/users/bob");
    assert_eq!(status, 200);
    let mut open = v.clone();
    open["policy"]["presence"] = json!("everyone");
    open.as_object_mut().unwrap().remove("token");
    assert_eq!(
        node.admin.put("/v1/admin/users/bob", &open).0,
        200,
        "{open}"
    );
    assert_eq!(eve.get("/v1/presence/bob").0, 200);
    e.send(json!({"type": "subscribe", "users": ["bob"]}));
    // The first push eve ever gets is bob's state now (offline): nothing
    // of his "away, lunch" nor of "nobody" reached her before.
    let first = e.expect("presence");
    assert_eq!(
        (first["user"].as_str(), first["state"].as_str()),
        (Some("bob"), Some("offline")),
        "{first}"
    );
}

#[test]
fn delivery_managers_hot_swap_over_the_admin_api() {
    let sms = TestSms::default();
    let node = node_with_sms(sms.clone());
    let admin = &node.admin;
    let alice = admin.add_user("alice", &[("im", "alice")]);
    admin.add_user("bob", &[("im", "bob"), ("sms", "+4915100")]);
    let (code, v) = admin.get("/v1/admin/delivery-managers");
    assert_eq!(code, 200);
    assert_eq!(v["managers"]["sequential"]["dispatch"], "sequential");
    assert_eq!(v["managers"]["parallel"]["dispatch"], "parallel");

    // A manager that prefers SMS, named in bob's profile for normal messages.
    let sms_first = json!({"dispatch": "sequential", "configs": {"normal": {"mechanisms": ["sms", "im"], "attempt_timeout_s": 30}}});
    assert_eq!(
        admin
            .put("/v1/admin/delivery-managers/sms-first", &sms_first)
            .0,
        201
    );
    assert_eq!(
        admin
            .put("/v1/admin/delivery-managers/sms-first", &sms_first)
            .0,
        200
    );
    let mut stored = sms_first.clone();
    stored["configs"]["normal"]["require_presence"] = json!(false);
    assert_eq!(
        admin.get("/v1/admin/delivery-managers/sms-first").1,
        stored,
        "defaults filled in"
    );
    let profile = json!({"id": "bob", "mechanisms": [{"medium": "im", "address": "bob"}, {"medium": "sms", "address": "+4915100"}], "delivery": {"normal": "sms-first"}});
    assert_eq!(admin.put("/v1/admin/users/bob", &profile).0, 200);
    let txn = alice.send("bob", "via the new manager");
    let st = alice.expect_status(&txn, "delivered");
    assert_eq!(
        (
            st["manager"].as_str(),
            st["attempts"][0]["mechanism"].as_str()
        ),
        (Some("sms-first"), Some("sms"))
    );

    // Removing it: new messages fall back to the default manager.
    assert_eq!(
        admin.delete_path("/v1/admin/delivery-managers/sms-first"),
        204
    );
    let txn = alice.send("bob", "default again");
    assert_eq!(
        alice.expect_status(&txn, "delivered")["manager"],
        "sequential"
    );

    for (body, code) in [
        (json!({"dispatch": "sequential", "configs": {}}), 422),
        (
            json!({"dispatch": "sequential", "configs": {"normal": {"mechanisms": [], "attempt_timeout_s": 3}}}),
            422,
        ),
        (json!({"dispatch": "random", "configs": {}}), 400),
    ] {
        assert_eq!(
            admin.put("/v1/admin/delivery-managers/bad", &body).0,
            code,
            "{body}"
        );
    }
    assert_eq!(
        admin.put("/v1/admin/delivery-managers/Bad!", &sms_first).0,
        422
    );
    assert_eq!(
        admin.delete_path("/v1/admin/delivery-managers/sequential"),
        409
    );
    assert_eq!(admin.delete_path("/v1/admin/delivery-managers/nope"), 404);
    assert_eq!(alice.get("/v1/admin/delivery-managers").0, 403);
}

#[test]
fn bad_websocket_input_is_refused_and_the_node_keeps_serving() {
    let node = TestNode::start();
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    let mut a = Ws::connect(&node.url, Some(&alice.token));
    a.send_raw(tungstenite::Message::Text("{not json".into()));
    assert_eq!(a.expect("error")["code"], "bad_json");
    a.send(json!({"type": "teleport"}));
    assert_eq!(a.expect("error")["code"], "unknown_type");
    a.send(json!({"no": "type"}));
    assert_eq!(a.expect("error")["code"], "bad_request");
    a.send(json!({"type": "send", "id": 3, "to": "bob"}));
    let e = a.expect("error");
    assert_eq!(
        (e["code"].as_str(), e["id"].as_i64()),
        (Some("bad_request"), Some(3))
    );
    a.send(json!({"type": "send", "id": 4, "to": "bob", "body": ""}));
    assert_eq!(a.expect("rejected")["code"], "bad_request");
    a.send(json!({"type": "read", "id": 5, "txn": "00"}));
    assert_eq!(a.expect("error")["code"], "not_found");
    a.send(json!({"type": "presence", "state": "asleep"}));
    assert_eq!(a.expect("error")["code"], "bad_request");
    a.send(json!({"type": "subscribe", "users": ["NOT VALID"]}));
    assert_eq!(a.expect("error")["code"], "bad_request");
    a.send_raw(tungstenite::Message::Binary(vec![0, 1, 2].into()));
    assert_eq!(a.expect("error")["code"], "unsupported");
    // Still serving this socket.
    a.send(json!({"type": "send", "to": "bob", "body": "still here"}));
    a.expect("accepted");

    // Oversized frame: closed with 1009.
    let mut big = Ws::connect(&node.url, Some(&alice.token));
    big.send(json!({"type": "send", "to": "bob", "body": "x".repeat(2 * 1024 * 1024)}));
    assert_eq!(big.expect_close().0, 1009);

    // Sends before authenticating: an error, then a close with the reason.
    let mut anon = Ws::connect(&node.url, None);
    anon.send(json!({"type": "send", "to": "bob", "body": "hi"}));
    let (code, reason) = anon.expect_close();
    assert_eq!((code, reason.as_str()), (1008, "authenticate first"));
    assert_eq!(anon.expect("error")["code"], "unauthorized");
    // Authenticating with a frame works.
    let mut late = Ws::connect(&node.url, None);
    late.send(json!({"type": "auth", "token": bob.token}));
    late.send(json!({"type": "send", "to": "alice", "body": "authenticated late"}));
    late.expect("accepted");
    // A bad token at the handshake is a 401.
    let url = format!(
        "{}/v1/ws?token=sb_nope",
        node.url.replacen("http://", "ws://", 1)
    );
    match tungstenite::connect(url) {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    // Others are served throughout.
    let txn = alice.send("bob", "over HTTP");
    alice.expect_status(&txn, "delivered");
}

#[test]
fn python_websockets_client_receives_and_reads() {
    let node = TestNode::start();
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/ws_client.py");
    let ws_url = format!("{}/v1/ws", node.url.replacen("http://", "ws://", 1));
    let child = Command::new("python3")
        .args([script, &ws_url, &bob.token, "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test installs the websockets package)");
    // Wait until bob's Python session is online before sending.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while node.admin.get("/v1/presence/bob").1["state"] != "online" {
        assert!(
            std::time::Instant::now() < deadline,
            "the Python client never came online"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let txn = alice.send("bob", "hello from rust to python");
    let out = child.wait_with_output().expect("python exits");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(
        (got["txn"].as_str(), got["body"].as_str()),
        (Some(txn.as_str()), Some("hello from rust to python"))
    );
    alice.expect_status(&txn, "read");
}

#[test]
fn a_message_for_an_offline_im_user_waits_in_the_inbox_and_is_pushed_on_connect() {
    let node = TestNode::start();
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    let txn = alice.send("bob", "while you were out");
    // Presence skipped IM and there is no other mechanism: store-and-forward.
    let st = alice.expect_status(&txn, "delivered");
    assert_eq!(st["attempts"][0]["mechanism"], "im");
    let mut b = Ws::connect(&node.url, Some(&bob.token));
    let m = b.expect("message");
    assert_eq!(
        (m["txn"].as_str(), m["body"].as_str()),
        (Some(txn.as_str()), Some("while you were out"))
    );
    // Read ones are not pushed again on the next connect.
    b.send(json!({"type": "read", "txn": txn}));
    alice.expect_status(&txn, "read");
    let t2 = alice.send("bob", "second");
    assert_eq!(b.expect("message")["txn"], t2.as_str());
    drop(b);
    let mut again = Ws::connect(&node.url, Some(&bob.token));
    assert_eq!(
        again.expect("message")["txn"],
        t2.as_str(),
        "only the unread one"
    );
}

/// A client declaring a huge frame (before or after authenticating) is
/// closed at the frame's header, 1009, and cannot make the node buffer
/// what it streams after it: the node stops reading.
#[test]
fn a_frame_declared_over_the_limit_is_refused_at_its_header() {
    use std::io::{Read as _, Write as _};
    let node = TestNode::start();
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let addr = node.url.strip_prefix("http://").unwrap().to_string();
    for token in [None, Some(alice.token.as_str())] {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        s.set_write_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        write!(
            s,
            "GET /v1/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        // A masked text frame declaring 2^62 bytes, then up to 64 MiB of
        // it; the node's close frame is read as it comes.
        let mut frame = vec![0x81, 0x80 | 127];
        frame.extend_from_slice(&(1u64 << 62).to_be_bytes());
        frame.extend_from_slice(&[1, 2, 3, 4]);
        s.write_all(&frame).unwrap();
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (mut r, seen) = (s.try_clone().unwrap(), sent.clone());
        let reader = std::thread::spawn(move || {
            let mut close = [0u8; 4];
            r.read_exact(&mut close).unwrap();
            (close, seen.load(std::sync::atomic::Ordering::SeqCst))
        });
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..64 {
            if reader.is_finished() || s.write_all(&chunk).is_err() {
                break;
            }
            sent.fetch_add(chunk.len(), std::sync::atomic::Ordering::SeqCst);
        }
        let (close, at) = reader.join().unwrap();
        assert_eq!(close[0], 0x88, "a close frame: {close:?}");
        assert_eq!(u16::from_be_bytes([close[2], close[3]]), 1009);
        // The close came while the frame was far from complete (before
        // the normal codec could have seen its end: never, at 2^62). How
        // far the client got first is scheduling — the node reads and
        // drops, not buffers, what follows the header until its close is out —
        // so the bound is the client's whole 64 MiB, not a tighter guess.
        assert!(at < 64 << 20, "closed only after {at} bytes ({token:?})");
    }
    // Others are served throughout.
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    let txn = alice.send("bob", "still serving");
    alice.expect_status(&txn, "delivered");
    assert_eq!(bob.inbox().len(), 1);
}

/// A token rotated or a user removed ends the sessions opened with the old
/// token: at their next frame, or within seconds when they say nothing.
#[test]
fn revoking_a_token_ends_the_sessions_opened_with_it() {
    let node = TestNode::start();
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    let mut a = Ws::connect(&node.url, Some(&alice.token));
    let mut b = Ws::connect(&node.url, Some(&bob.token));
    a.send(json!({"type": "send", "id": 1, "to": "bob", "body": "before"}));
    a.expect("accepted");
    let (status, v) = node.admin.post("/v1/admin/users/alice/token", &json!({}));
    assert_eq!(status, 200, "{v}");
    let new_token = v["token"].as_str().unwrap().to_string();
    a.send(json!({"type": "send", "id": 2, "to": "bob", "body": "after"}));
    let (code, reason) = a.expect_close();
    assert_eq!((code, reason.as_str()), (1008, "token revoked"));
    assert_eq!(a.expect("error")["code"], "unauthorized");
    let inbox = bob.inbox();
    assert_eq!(inbox.len(), 1, "only the message sent before: {inbox:?}");
    // bob says nothing; removed, his session ends all the same.
    assert_eq!(node.admin.delete_path("/v1/admin/users/bob"), 204);
    let (code, reason) = b.expect_close();
    assert_eq!((code, reason.as_str()), (1008, "token revoked"));
    // The new token works.
    let mut again = Ws::connect(&node.url, Some(&new_token));
    again.send(json!({"type": "send", "id": 3, "to": "alice", "body": "a note to self"}));
    again.expect("accepted");
}

/// A session whose client does not read cannot make the node queue
/// everything sent to it: past its queue it is closed (1013), nothing is
/// lost — every message is in the inbox — and a new session gets a page
/// of the unread ones, not all of them.
#[test]
fn a_session_that_does_not_read_is_closed_and_its_messages_wait_in_the_inbox() {
    let node = TestNode::start();
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    let mut slow = Ws::connect(&node.url, Some(&bob.token));
    let body = "m".repeat(32 * 1024);
    const N: usize = 800;
    let txns: Vec<String> = (0..N).map(|_| alice.send("bob", &body)).collect();
    for t in [&txns[0], &txns[N - 1]] {
        alice.expect_status(t, "delivered");
    }
    let (got, close) = slow.drain();
    assert!(got < N, "the slow session got all {got}");
    assert!(matches!(close, None | Some(1013)), "{close:?}");
    let mut all = 0;
    let mut after: Option<String> = None;
    loop {
        let q = after
            .as_ref()
            .map_or(String::new(), |a| format!("&after={a}"));
        let (status, page) = bob.get(&format!("/v1/inbox?limit=100{q}"));
        assert_eq!(status, 200);
        let n = page["messages"].as_array().unwrap().len();
        all += n;
        // An empty page ends it (`next` is then the cursor given).
        match page["next"].as_str() {
            Some(next) if n > 0 => after = Some(next.to_string()),
            _ => break,
        }
    }
    assert_eq!(all, N, "every message is in the inbox");
    // A new session: a page of the unread, and it stays open.
    let mut fresh = Ws::connect(&node.url, Some(&bob.token));
    let first = fresh.expect("message");
    assert!(first["body"].as_str().unwrap().starts_with('m'));
    fresh.send(json!({"type": "send", "id": 9, "to": "alice", "body": "still open"}));
    fresh.expect("accepted");
    let paged = 1 + fresh.held_count("message");
    assert!(paged < 200, "a page, not {paged}");
}

/// `http.tls_cert`/`http.tls_key`: the API and the WebSocket over TLS,
/// checked by Python's own TLS stack against the test CA; plain HTTP on
/// that port gets no answer.
#[test]
fn the_api_and_websocket_run_over_tls_when_a_certificate_is_configured() {
    use switchboard_core::directory::Profile;
    let cert = common::Cert::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let setup: common::Setup = Box::new(move |node| {
        Box::pin(async move {
            for user in ["alice", "bob"] {
                let d = &node.core.directory;
                let token = d
                    .put_profile(Profile::im_only(user))
                    .await
                    .unwrap()
                    .unwrap();
                tx.send(token).unwrap();
            }
        })
    });
    let env = [
        (
            "SWITCHBOARD_HTTP__TLS_CERT".to_string(),
            cert.cert.display().to_string(),
        ),
        (
            "SWITCHBOARD_HTTP__TLS_KEY".to_string(),
            cert.key.display().to_string(),
        ),
    ];
    let node = TestNode::start_full(tempfile::tempdir().unwrap(), &env, setup);
    let (alice, bob) = (rx.recv().unwrap(), rx.recv().unwrap());
    let port = node.url.rsplit(':').next().unwrap().to_string();
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/peers/https_client.py"
        ))
        .arg(format!("127.0.0.1:{port}"))
        .arg(&cert.ca)
        .args([&alice, &bob])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "over TLS");
    // Plain HTTP to the TLS port: no HTTP answer.
    use std::io::{Read as _, Write as _};
    let mut plain = std::net::TcpStream::connect(node.url.trim_start_matches("http://")).unwrap();
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let _ = plain.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n");
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(
        !String::from_utf8_lossy(&got).contains("200 OK"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}
