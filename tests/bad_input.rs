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

/// One HTTP/1.1 request on `s` (kept alive); the whole answer as text, or
/// what came before the connection closed.
fn http_get(s: &mut std::net::TcpStream, path: &str) -> String {
    use std::io::Write as _;
    let _ = s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes());
    http_read(s)
}

/// One answer read from `s` (whatever came before it closed).
fn http_read(s: &mut std::net::TcpStream) -> String {
    use std::io::Read as _;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_string)
                })
                .and_then(|n| n.trim().parse::<usize>().ok());
            if len.is_some_and(|n| body.len() >= n) {
                break;
            }
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn one_address_cannot_take_every_http_connection() {
    let node = TestNode::start_env(&[
        ("SWITCHBOARD_HTTP__MAX_CONNECTIONS", "64"),
        ("SWITCHBOARD_HTTP__MAX_CONNECTIONS_PER_PEER", "3"),
    ]);
    let addr: std::net::SocketAddr = node.url.trim_start_matches("http://").parse().unwrap();
    // Three kept-alive connections from one address, each answered (so
    // the node holds them all).
    let mut held: Vec<_> = (0..3)
        .map(|_| {
            let mut s = common::tcp_from(addr, [127, 0, 0, 5]);
            let a = http_get(&mut s, "/healthz");
            assert!(a.starts_with("HTTP/1.1 200"), "{a}");
            s
        })
        .collect();
    // A fourth from it is told why (before it asks: nothing it sends is
    // read), then closed.
    let mut fourth = common::tcp_from(addr, [127, 0, 0, 5]);
    let no = http_read(&mut fourth);
    assert!(no.starts_with("HTTP/1.1 503"), "{no}");
    let body: Value = serde_json::from_str(no.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(code(&body), "too_many_connections");
    assert!(http_read(&mut fourth).is_empty(), "closed after");
    // Another address is served meanwhile, and so is the API.
    let mut other = common::tcp_from(addr, [127, 0, 0, 6]);
    assert!(http_get(&mut other, "/healthz").starts_with("HTTP/1.1 200"));
    assert_eq!(node.admin.get("/v1/admin/users").0, 200);
    // One of the three closes: a place for that address again, once the
    // node has seen it go (waited for, bounded).
    drop(held.remove(0));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut again = common::tcp_from(addr, [127, 0, 0, 5]);
        if http_get(&mut again, "/healthz").starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the place never came back"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Bad values are refused at start, naming the key.
    for (text, key) in [
        (
            "max_connections = 2\nmax_connections_per_peer = 3",
            "http.max_connections_per_peer",
        ),
        ("tls_cert = \"/nowhere.pem\"", "http.tls_cert"),
    ] {
        let text = format!("[http]\n{text}\n");
        let err = switchboard::config::Config::from_text(Some(&text), "t.toml", std::iter::empty())
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{err}");
    }
}
