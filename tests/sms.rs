//! The SMS gateway end to end: the real node's ESME against the SMSC
//! simulator (`tests/peers/smsc.js`, the npm package `smpp` in server mode).
mod common;

use serde_json::{json, Value};

use common::{eventually, node_with_smsc, node_with_smsc_in, Smsc, Ws};

const DORA: &str = "+4915100000001";
const DORA_DIGITS: &str = "4915100000001";

fn texts(submits: &[Value]) -> String {
    submits
        .iter()
        .map(|s| s["text"].as_str().expect("text"))
        .collect()
}

/// Adds alice (IM) and dora (SMS only); alice's API.
fn alice_and_dora(node: &common::TestNode) -> common::Api {
    node.admin.add_user("dora", &[("sms", DORA)]);
    node.admin.add_user("alice", &[("im", "alice")])
}

#[test]
fn im_to_an_sms_only_user_is_segmented_submitted_and_receipted() {
    let smsc = Smsc::start();
    let node = node_with_smsc(&smsc, &[]);
    let alice = alice_and_dora(&node);
    let mut ws = Ws::connect(&node.url, Some(&alice.token));

    // 200 GSM characters: two concatenated segments, 153 + 47.
    let long: String = "Hello Dora, the meeting moved to 3pm. ".repeat(6)[..200].to_string();
    ws.send(json!({"type": "send", "id": 1, "to": "dora", "body": long}));
    let acc = ws.expect("accepted");
    assert_eq!(acc["route"], json!({"mechanism": "sms", "address": DORA}));
    let r = ws.expect("receipt");
    assert_eq!(
        (r["status"].as_str(), r["via"].as_str()),
        (Some("delivered"), Some("sms"))
    );

    let subs = smsc.submits_to(DORA_DIGITS);
    assert_eq!(subs.len(), 2, "{subs:?}");
    for (i, s) in subs.iter().enumerate() {
        assert_eq!(s["dest_ton"], 1, "international");
        assert_eq!(s["data_coding"], 0, "GSM 7-bit");
        assert_eq!(s["registered_delivery"], 1);
        assert_eq!(s["esm_class"].as_u64().unwrap() & 0x40, 0x40, "UDHI");
        let udh = s["udh"][0].as_str().unwrap();
        // IEI 00, length 3, reference, total 2, this part.
        assert_eq!(&udh[..4], "0003");
        assert_eq!(&udh[6..], format!("02{:02x}", i + 1));
        assert_eq!(
            udh[4..6],
            subs[0]["udh"][0].as_str().unwrap()[4..6],
            "one reference"
        );
    }
    assert_eq!(subs[0]["text"].as_str().unwrap().chars().count(), 153);
    assert_eq!(texts(&subs), long);

    let txn = acc["txn"].as_str().unwrap();
    let st = alice.expect_status(txn, "delivered");
    assert_eq!(st["attempts"][0]["gateway"], "gw-sms-1");
    assert_eq!(st["attempts"][0]["outcome"], "delivered");

    // Outside GSM 03.38: UCS-2, 67 characters a segment.
    let cyr = "Привет, Дора! ".repeat(6);
    let txn = alice.send("dora", &cyr);
    alice.expect_status(&txn, "delivered");
    let subs = smsc.submits_to(DORA_DIGITS);
    let ucs: Vec<Value> = subs[2..].to_vec();
    assert_eq!(ucs.len(), 2);
    assert!(ucs.iter().all(|s| s["data_coding"] == 8));
    assert_eq!(texts(&ucs), cyr);
}

#[test]
fn a_failed_receipt_fails_over_to_the_next_mechanism() {
    let smsc = Smsc::start();
    smsc.mode(json!({"stat_for": {DORA_DIGITS: "UNDELIV"}}));
    let node = node_with_smsc(&smsc, &[]);
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let dora = node
        .admin
        .add_user("dora", &[("sms", DORA), ("im", "dora")]);
    let txn = alice.send("dora", "are you there?");
    let st = alice.expect_status(&txn, "delivered");
    let attempts = st["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{st}");
    assert_eq!(attempts[0]["mechanism"], "sms");
    assert_eq!(attempts[0]["outcome"], "non_delivery");
    assert!(
        attempts[0]["reason"]
            .as_str()
            .unwrap()
            .contains("stat:UNDELIV"),
        "{st}"
    );
    assert_eq!(attempts[1]["mechanism"], "im");
    assert_eq!(dora.inbox()[0]["body"], "are you there?");

    // The SMSC refusing the submit itself is a non-delivery too.
    smsc.mode(json!({"submit_status": 11}));
    let txn = alice.send("dora", "second");
    let st = alice.expect_status(&txn, "delivered");
    assert!(common::reason(&st, 0).contains("refused submit_sm"), "{st}");
    // So is a generic_nack.
    smsc.mode(json!({"submit_status": 0, "nack_submit": true}));
    let txn = alice.send("dora", "third");
    let st = alice.expect_status(&txn, "delivered");
    assert!(common::reason(&st, 0).contains("generic_nack"), "{st}");
    assert_eq!(dora.inbox().len(), 3);
}

#[test]
fn phones_reach_users_by_at_id_by_reply_and_get_told_otherwise() {
    let smsc = Smsc::start();
    let node = node_with_smsc(&smsc, &[("SWITCHBOARD_SMS__RECEIPTS", "all")]);
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    node.admin.add_user("dora", &[("sms", DORA)]);

    // A stranger names bob.
    assert_eq!(
        smsc.mo(json!({"from": "+4917700000009", "text": "@bob hello from a phone"})),
        [0]
    );
    let inbox = eventually("bob's message", || {
        let i = bob.inbox();
        (!i.is_empty()).then_some(i)
    });
    assert_eq!(inbox[0]["body"], "hello from a phone");
    assert_eq!(inbox[0]["from"], "sms:+4917700000009");
    // …and, with sms.receipts = all, is told by SMS.
    let told = smsc.wait_submits("4917700000009", 1);
    assert_eq!(told[0]["text"], "Switchboard: delivered to bob via im.");
    assert_eq!(
        told[0]["registered_delivery"], 0,
        "notices ask for no receipt"
    );

    // dora's number maps to dora; a concatenated UCS-2 message is reassembled.
    assert_eq!(
        smsc.mo(json!({"from": DORA, "coding": "ucs2", "parts": ["@bob Привет, ", "Боб!"]})),
        [0, 0]
    );
    let inbox = eventually("dora's message", || {
        let i = bob.inbox();
        (i.len() >= 2).then_some(i)
    });
    assert_eq!(inbox[1]["body"], "Привет, Боб!");
    assert_eq!(inbox[1]["from"], "dora");

    // alice messages dora; dora answers without an address: a reply to alice.
    let txn = alice.send("dora", "lunch?");
    alice.expect_status(&txn, "delivered");
    assert_eq!(smsc.mo(json!({"from": DORA, "text": "yes, at noon"})), [0]);
    let a = eventually("the reply", || {
        let i = alice.inbox();
        (!i.is_empty()).then_some(i)
    });
    assert_eq!(
        (a[0]["body"].as_str(), a[0]["from"].as_str()),
        (Some("yes, at noon"), Some("dora"))
    );

    // A number nobody messaged, with no address: told how to address one.
    assert_eq!(
        smsc.mo(json!({"from": "+4917700000042", "text": "hello?"})),
        [0]
    );
    let help = smsc.wait_submits("4917700000042", 1);
    assert!(
        help[0]["text"].as_str().unwrap().contains("@ID"),
        "{help:?}"
    );
    // An unknown user: told so.
    assert_eq!(
        smsc.mo(json!({"from": "+4917700000043", "text": "@nobody hi"})),
        [0]
    );
    let refused = smsc.wait_submits("4917700000043", 1);
    assert!(
        refused[0]["text"]
            .as_str()
            .unwrap()
            .contains("unknown_recipient"),
        "{refused:?}"
    );
    assert_eq!(bob.inbox().len(), 2);
    assert_eq!(alice.inbox().len(), 1);
}

#[test]
fn a_restart_between_submit_and_receipt_loses_no_receipt() {
    let smsc = Smsc::start();
    smsc.mode(json!({"receipt": "hold"}));
    let node = node_with_smsc(&smsc, &[]);
    let alice = alice_and_dora(&node);
    let txn = alice.send("dora", "see you after the restart");
    smsc.wait_submits(DORA_DIGITS, 1);
    let (_, st) = alice.get(&format!("/v1/messages/{txn}"));
    assert_ne!(st["status"], "delivered", "no receipt yet: {st}");
    let dir = node.stop();
    assert!(
        smsc.state()["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["pdu"] == "unbind"),
        "unbind on shutdown"
    );

    let node = node_with_smsc_in(&smsc, dir, &[]);
    smsc.wait("a second bind", |s| {
        s["binds"].as_array().unwrap().len() >= 2
    });
    smsc.wait_bound();
    assert_eq!(smsc.release(), 1);
    let alice = node.admin.with_token(&alice.token);
    let st = alice.expect_status(&txn, "delivered");
    assert_eq!(
        st["attempts"].as_array().unwrap().len(),
        1,
        "not sent again: {st}"
    );
    assert_eq!(smsc.submits_to(DORA_DIGITS).len(), 1);
}

#[test]
fn the_window_is_respected_and_pipelined() {
    let smsc = Smsc::start();
    smsc.mode(json!({"resp_delay_ms": 150}));
    let node = node_with_smsc(&smsc, &[("SWITCHBOARD_SMS__WINDOW", "3")]);
    let alice = alice_and_dora(&node);
    let txns: Vec<String> = (0..10)
        .map(|i| alice.send("dora", &format!("msg {i}")))
        .collect();
    for t in &txns {
        alice.expect_status(t, "delivered");
    }
    let st = smsc.state();
    let max = st["max_inflight"].as_u64().unwrap();
    assert!((2..=3).contains(&max), "max unanswered submit_sm {max}");
    assert_eq!(smsc.submits_to(DORA_DIGITS).len(), 10);
}

#[test]
fn an_smsc_that_vanishes_mid_window_loses_nothing() {
    let smsc = Smsc::start();
    // Slow answers: the drop comes while submits are unanswered.
    smsc.mode(json!({"resp_delay_ms": 400}));
    let node = node_with_smsc(&smsc, &[("SWITCHBOARD_SMS__WINDOW", "4")]);
    let alice = alice_and_dora(&node);
    let txns: Vec<String> = (0..4)
        .map(|i| alice.send("dora", &format!("msg {i}")))
        .collect();
    smsc.wait("submits in flight", |s| s["received"].as_u64() >= Some(2));
    smsc.drop_sessions();
    smsc.mode(json!({"resp_delay_ms": 0}));
    smsc.wait("a re-bind", |s| s["binds"].as_array().unwrap().len() >= 2);
    for t in &txns {
        alice.expect_status(t, "delivered");
    }
    let mut got: Vec<String> = smsc
        .submits_to(DORA_DIGITS)
        .iter()
        .map(|s| s["text"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    got.dedup();
    assert_eq!(got, ["msg 0", "msg 1", "msg 2", "msg 3"]);
}

#[test]
fn a_refused_bind_keeps_the_gateway_down_and_sms_off_the_route() {
    let smsc = Smsc::start();
    let node = common::TestNode::start_full(
        tempfile::tempdir().unwrap(),
        &common::sms_env(&smsc)
            .into_iter()
            .map(|(k, v)| {
                if k == "SWITCHBOARD_SMS__PASSWORD" {
                    (k, "wrong".into())
                } else {
                    (k, v)
                }
            })
            .collect::<Vec<_>>(),
        Box::new(|_| Box::pin(async {})),
    );
    smsc.wait("two refused binds (with back-off)", |s| {
        s["binds"].as_array().unwrap().len() >= 2
    });
    assert!(smsc.state()["binds"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["ok"] == false));
    let ready = eventually("readyz to say so", || {
        let (code, body) = node.admin.get("/readyz");
        (code == 503).then_some(body)
    });
    assert!(ready.to_string().contains("gw-sms-1"), "{ready}");
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let dora = node
        .admin
        .add_user("dora", &[("sms", DORA), ("im", "dora")]);
    // SMS is not live: the message goes to dora's IM inbox at once.
    let txn = alice.send("dora", "sms is down");
    let st = alice.expect_status(&txn, "delivered");
    assert_eq!(st["attempts"][0]["mechanism"], "im", "{st}");
    assert_eq!(dora.inbox().len(), 1);
    assert_eq!(smsc.state()["received"], 0);
}

#[test]
fn bad_pdus_from_the_smsc_get_generic_nack_and_nothing_breaks() {
    let smsc = Smsc::start();
    let node = node_with_smsc(&smsc, &[("SWITCHBOARD_SMS__ENQUIRE_LINK_S", "1")]);
    let alice = alice_and_dora(&node);

    // An unknown command (id 0x00000fff, seq 77): generic_nack ESME_RINVCMDID.
    smsc.raw("0000001000000fff000000000000004d");
    // A deliver_sm cut short inside its fields (seq 78): ESME_RINVCMDLEN.
    smsc.raw(concat!(
        "00000014", "00000005", "00000000", "0000004e", "61626364"
    ));
    let st = smsc.wait("two generic_nacks", |s| {
        s["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["pdu"] == "generic_nack")
            .count()
            >= 2
    });
    let nacks: Vec<(u64, u64)> = st["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["pdu"] == "generic_nack")
        .map(|e| (e["seq"].as_u64().unwrap(), e["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(nacks, [(77, 3), (78, 2)]);
    assert_eq!(
        smsc.state()["binds"].as_array().unwrap().len(),
        1,
        "same session"
    );

    // The link survives and still delivers; enquire_link runs every second.
    let txn = alice.send("dora", "still here");
    alice.expect_status(&txn, "delivered");
    smsc.wait("enquire_link", |s| {
        s["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["pdu"] == "enquire_link")
    });

    // A length no PDU can have — too short, then far too long: the stream
    // cannot be framed; the ESME drops the link, binds again and goes on.
    smsc.raw("00000005ff");
    smsc.wait("a re-bind", |s| s["binds"].as_array().unwrap().len() >= 2);
    smsc.wait_bound();
    let txn = alice.send("dora", "after the re-bind");
    alice.expect_status(&txn, "delivered");
    smsc.raw("7fffffff00000004000000000000000a");
    smsc.wait("another re-bind", |s| {
        s["binds"].as_array().unwrap().len() >= 3
    });
    smsc.wait_bound();
    let txn = alice.send("dora", "after an oversized PDU");
    alice.expect_status(&txn, "delivered");
}

/// The simulator our SMS tests rely on, checked against a client we did not
/// write (PyPI's smpplib): it binds, takes smpplib's concatenated parts with
/// their UDH, and sends a receipt for each; wrong credentials are refused.
#[test]
fn the_simulator_is_a_real_smsc_to_an_independent_client() {
    let smsc = Smsc::start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/smpplib_client.py");
    let run = |password: &str, text: &str| -> Value {
        let out = std::process::Command::new("python3")
            .arg(script)
            .args([
                &smsc.port.to_string(),
                "switchboard",
                password,
                "4915100000055",
                text,
            ])
            .output()
            .expect("python3 runs smpplib (scripts/test installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("one JSON line")
    };
    let long = "z".repeat(200);
    let r = run("secret", &long);
    assert_eq!(r["bind"], 0);
    let ids: Vec<&str> = r["submits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{r}");
    let receipts = r["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 2, "{r}");
    for (id, rc) in ids.iter().zip(receipts) {
        let rc = rc.as_str().unwrap();
        assert!(
            rc.starts_with(&format!("id:{id} ")) && rc.contains("stat:DELIVRD"),
            "{rc}"
        );
    }
    assert_eq!(texts(&smsc.submits_to("4915100000055")), long);
    // ESME_RBINDFAIL (0x0D) for a wrong password.
    assert_eq!(run("wrong", "x")["bind"], 13);
}

/// An email to a user whose only mechanism is SMS passes two processors:
/// the raw mail becomes text (`proc-email-1`), the text SMS segments
/// (`proc-sms-1`).
#[test]
fn an_email_to_an_sms_user_is_converted_twice_on_the_way() {
    let smsc = Smsc::start();
    let node = node_with_smsc(
        &smsc,
        &[
            ("SWITCHBOARD_EMAIL__ENABLED", "true"),
            ("SWITCHBOARD_EMAIL__LISTEN", "127.0.0.1:0"),
            ("SWITCHBOARD_EMAIL__LOCAL_DOMAINS", r#"["localhost"]"#),
        ],
    );
    node.admin.add_user("dora", &[("sms", DORA)]);
    let (ok, out) = common::swaks(
        &node,
        &[
            "--from",
            "ext@example.net",
            "--to",
            "dora@localhost",
            "--add-header",
            "Content-Type: text/html",
            "--body",
            "<p>Your <b>parcel</b> arrives today.</p>",
        ],
    );
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{ok} {out}");
    let subs = smsc.wait_submits(DORA_DIGITS, 1);
    assert_eq!(subs[0]["text"], "Your parcel arrives today.");
    let txn = out
        .split("queued as ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("txn in the reply");
    let st = node.admin.expect_status(txn, "delivered");
    assert_eq!(
        st["attempts"][0]["processors"],
        json!(["proc-email-1", "proc-sms-1"])
    );
}

#[test]
fn an_smsc_sending_gsm_under_ia5_is_read_in_the_alphabet_configured() {
    // The npm smpp package's own choice for GSM text: GSM 03.38 septets
    // under data_coding 1 (IA5), where `@` is 0x00.
    let mo = json!({"from": "+4917700000051", "text": "@bob hi from GSM", "coding": "detect"});

    // Read as SMPP 3.4 says (ASCII), the `@` is lost: the phone is told how
    // to address a user, and bob gets nothing.
    let smsc = Smsc::start();
    let node = node_with_smsc(&smsc, &[]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    assert_eq!(smsc.mo(mo.clone()), [0]);
    let help = smsc.wait_submits("4917700000051", 1);
    assert!(
        help[0]["text"].as_str().unwrap().contains("@ID"),
        "{help:?}"
    );
    assert!(bob.inbox().is_empty());

    // With sms.data_coding_1 = "gsm" (Kannel's alt-charset), it reaches bob.
    let smsc = Smsc::start();
    let node = node_with_smsc(&smsc, &[("SWITCHBOARD_SMS__DATA_CODING_1", "gsm")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    assert_eq!(smsc.mo(mo), [0]);
    let inbox = eventually("bob's message", || {
        let i = bob.inbox();
        (!i.is_empty()).then_some(i)
    });
    assert_eq!(inbox[0]["body"], "hi from GSM");
}
