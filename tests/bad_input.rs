//! Bad input over HTTP gets a clear error in the one JSON shape, changes
//! nothing, and the node keeps serving.

mod common;

use common::TestNode;
use serde_json::{json, Value};

fn code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {v}"))
}

#[test]
fn message_endpoint_refuses_bad_input_and_keeps_serving() {
    let node = TestNode::start();
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);

    let cases: Vec<(&[u8], u16, &str)> = vec![
        (b"{\"to\": \"bob\", \"body\": ", 400, "bad_json"),
        (b"not json at all", 400, "bad_json"),
        (b"\xff\xfe\x00garbage", 400, "bad_json"),
        (b"[]", 400, "bad_request"),
        (b"{\"to\": \"bob\"}", 400, "bad_request"),
        (
            b"{\"to\": \"bob\", \"body\": \"x\", \"colour\": 1}",
            400,
            "bad_request",
        ),
        (b"{\"to\": \"bob\", \"body\": \"\"}", 400, "bad_request"),
        (b"{\"to\": \"\", \"body\": \"x\"}", 400, "bad_request"),
        (
            b"{\"to\": \"pager:123\", \"body\": \"x\"}",
            400,
            "bad_request",
        ),
        (
            b"{\"to\": \"bob\", \"body\": \"x\", \"priority\": \"asap\"}",
            400,
            "bad_request",
        ),
        (
            b"{\"to\": \"bob\", \"body\": \"x\", \"expires_in_s\": 0}",
            400,
            "bad_request",
        ),
        (
            b"{\"to\": \"bob\", \"body\": \"x\", \"expires_in_s\": 99999999}",
            400,
            "bad_request",
        ),
        (
            b"{\"to\": \"bob\", \"body\": \"x\", \"subject\": \"a\\r\\nBcc: eve\"}",
            400,
            "bad_request",
        ),
        (
            b"{\"to\": \"nobody\", \"body\": \"x\"}",
            422,
            "unknown_recipient",
        ),
        (
            b"{\"to\": \"im:nobody\", \"body\": \"x\"}",
            422,
            "unknown_recipient",
        ),
    ];
    for (body, want_status, want_code) in cases {
        let (status, v) = alice.post_raw("/v1/messages", body);
        assert_eq!(
            (status, code(&v)),
            (want_status, want_code),
            "body {:?}",
            String::from_utf8_lossy(body)
        );
    }
    let big = json!({"to": "bob", "body": "x".repeat(2 * 1024 * 1024)});
    let (status, v) = alice.post("/v1/messages", &big);
    assert_eq!((status, code(&v)), (413, "too_large"));

    assert!(bob.inbox().is_empty(), "no bad request delivered anything");
    let txn = alice.send("bob", "still serving");
    alice.expect_status(&txn, "delivered");
    assert_eq!(bob.inbox().len(), 1);
}

#[test]
fn tokens_are_checked() {
    let node = TestNode::start();
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .post(format!("{}/v1/messages", node.url))
        .send_json(json!({"to": "alice", "body": "x"}))
        .unwrap();
    assert_eq!(r.status(), 401, "no token");
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(code(&v), "unauthorized");
    for bad in ["Bearer ", "Basic abc", "Bearer sb_0000", "bearer x"] {
        let r = agent
            .get(format!("{}/v1/inbox", node.url))
            .header("Authorization", bad)
            .call()
            .unwrap();
        assert_eq!(r.status(), 401, "{bad}");
    }
    // A user token is no admin token, and the admin token is no user token.
    let (status, v) = alice.get("/v1/admin/users");
    assert_eq!((status, code(&v)), (403, "forbidden"));
    let (status, _) = node.admin.get("/v1/inbox");
    assert_eq!(status, 401);
}

#[test]
fn status_and_read_refuse_what_is_not_yours() {
    let node = TestNode::start();
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    let txn = alice.send("bob", "hi");
    alice.expect_status(&txn, "delivered");
    assert_eq!(
        bob.get(&format!("/v1/messages/{txn}")).0,
        404,
        "bob is not the sender"
    );
    assert_eq!(alice.get("/v1/messages/not-a-txn").0, 404);
    assert_eq!(
        alice.get(&format!("/v1/messages/{}", "0".repeat(32))).0,
        404
    );
    assert_eq!(
        alice
            .post(&format!("/v1/messages/{txn}/read"), &json!({}))
            .0,
        404,
        "alice is not the recipient"
    );
    let (status, v) = bob.get("/v1/inbox?after=abc");
    assert_eq!((status, code(&v)), (400, "bad_request"));
    let (status, _) = bob.get("/v1/inbox?limit=0");
    assert_eq!(status, 400);
    let (status, v) = bob.get("/v1/inbox?bogus=1");
    assert_eq!((status, code(&v)), (400, "bad_request"));
    alice.expect_status(&txn, "delivered");
}

#[test]
fn admin_user_endpoints_refuse_bad_profiles() {
    let node = TestNode::start();
    let a = &node.admin;
    node.admin
        .add_user("bob", &[("im", "bob"), ("sms", "+4915100")]);
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/v1/admin/users/alice",
            json!({"id": "bob"}),
            400,
            "bad_request",
        ),
        (
            "/v1/admin/users/Alice!",
            json!({"id": "Alice!"}),
            422,
            "invalid_profile",
        ),
        (
            "/v1/admin/users/alice",
            json!({"id": "alice", "mechanisms": [{"medium": "im", "address": "bob"}]}),
            422,
            "invalid_profile",
        ),
        (
            "/v1/admin/users/alice",
            json!({"id": "alice", "mechanisms": [{"medium": "sms", "address": "call me"}]}),
            422,
            "invalid_profile",
        ),
        (
            "/v1/admin/users/alice",
            json!({"id": "alice", "mechanisms": [{"medium": "pager", "address": "1"}]}),
            400,
            "bad_request",
        ),
        (
            "/v1/admin/users/alice",
            json!({"id": "alice", "mechanisms": [{"medium": "sms", "address": "+4915100"}]}),
            409,
            "address_taken",
        ),
        (
            "/v1/admin/users/alice",
            json!({"id": "alice", "bogus": true}),
            400,
            "bad_request",
        ),
    ];
    for (path, body, want_status, want_code) in cases {
        let (status, v) = a.put(path, &body);
        assert_eq!(
            (status, code(&v)),
            (want_status, want_code),
            "{path} {body}"
        );
    }
    let (_, users) = a.get("/v1/admin/users");
    assert_eq!(
        users["users"].as_array().unwrap().len(),
        1,
        "nothing was created: {users}"
    );
    assert_eq!(a.get("/v1/admin/users/nobody").0, 404);
    assert_eq!(a.post("/v1/admin/users/nobody/token", &json!({})).0, 404);
    // Updating keeps the token; the update is visible.
    let (status, _) = a.put("/v1/admin/users/bob", &json!({"id": "bob", "display_name": "Bob", "mechanisms": [{"medium": "im", "address": "bob"}]}));
    assert_eq!(status, 200);
    assert_eq!(a.get("/v1/admin/users/bob").1["display_name"], "Bob");
    let (status, v) = a.get("/v1/admin/members");
    assert_eq!(status, 200);
    let im = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "gw-im-1")
        .cloned()
        .unwrap();
    assert_eq!(
        (im["medium"].as_str(), im["logged_in"].as_bool()),
        (Some("im"), Some(true))
    );
    assert_eq!(a.get("/v1/admin/transactions?status=bogus").0, 400);
    assert_eq!(a.get("/v1/admin/accounting?from=yesterday").0, 400);
    assert_eq!(a.get("/healthz").1["status"], "ok");
    assert_eq!(a.get("/readyz").0, 200);
}
