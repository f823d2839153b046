//! End to end: alice → bob through the real node — POST, inbox, read,
//! status `delivered` then `read`, an accounting record — and the CLI's
//! walk-through against a running node.

mod common;

use std::process::Command;

use common::{bin, cli, cli_as, TestNode};
use serde_json::json;

#[test]
fn alice_to_bob_delivered_then_read_with_accounting() {
    let node = TestNode::start();
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);

    let (code, v) = alice.post(
        "/v1/messages",
        &json!({"to": "bob", "body": "hello bob", "subject": "hi", "priority": "urgent"}),
    );
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["status"], "released");
    assert_eq!(v["route"], json!({"mechanism": "im", "address": "bob"}));
    let txn = v["txn"].as_str().unwrap().to_string();

    let st = alice.expect_status(&txn, "delivered");
    assert_eq!(st["from"], "alice");
    assert_eq!(st["to"], "bob");
    assert_eq!(st["attempts"][0]["mechanism"], "im");
    assert_eq!(st["attempts"][0]["gateway"], "gw-im-1");
    assert_eq!(st["attempts"][0]["outcome"], "delivered");

    let inbox = bob.inbox();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["txn"], txn.as_str());
    assert_eq!(inbox[0]["from"], "alice");
    assert_eq!(inbox[0]["body"], "hello bob");
    assert_eq!(inbox[0]["subject"], "hi");
    assert_eq!(inbox[0]["read"], false);
    assert!(alice.inbox().is_empty(), "the sender's inbox stays empty");

    let (code, _) = bob.post(&format!("/v1/messages/{txn}/read"), &json!({}));
    assert_eq!(code, 204);
    let st = alice.expect_status(&txn, "read");
    let kinds: Vec<&str> = st["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for k in [
        "submitted",
        "manager:sequential",
        "released:im",
        "delivered:im",
        "read:im",
    ] {
        assert!(kinds.contains(&k), "event {k} missing from {kinds:?}");
    }
    assert_eq!(bob.inbox()[0]["read"], true);
    // Reading again is idempotent.
    assert_eq!(
        bob.post(&format!("/v1/messages/{txn}/read"), &json!({})).0,
        204
    );

    let (code, acct) = node.admin.get("/v1/admin/accounting?user=alice");
    assert_eq!(code, 200);
    let recs: Vec<_> = acct["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["txn"] == txn.as_str())
        .collect();
    assert_eq!(recs.len(), 1, "{acct}");
    assert_eq!(recs[0]["outcome"], "delivered");
    assert_eq!(recs[0]["sender"], "alice");
    assert_eq!(recs[0]["recipient"], "bob");
    assert_eq!(recs[0]["bytes"], 9);

    // The admin sees the transaction too; a third user does not.
    assert_eq!(node.admin.get(&format!("/v1/messages/{txn}")).0, 200);
    let carol = node.admin.add_user("carol", &[("im", "carol")]);
    assert_eq!(carol.get(&format!("/v1/messages/{txn}")).0, 404);
    let (_, list) = node.admin.get("/v1/admin/transactions?status=read");
    assert!(list["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["txn"] == txn.as_str()));
}

#[test]
fn many_messages_arrive_once_each_in_order() {
    let node = TestNode::start();
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    let txns: Vec<String> = (0..50)
        .map(|i| alice.send("im:bob", &format!("m{i}")))
        .collect();
    for t in &txns {
        alice.expect_status(t, "delivered");
    }
    let inbox = bob.inbox();
    let got: Vec<&str> = inbox.iter().map(|m| m["txn"].as_str().unwrap()).collect();
    assert_eq!(got, txns.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn a_recipient_without_a_live_mechanism_is_refused() {
    let node = TestNode::start();
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    node.admin.add_user("dora", &[("sms", "+4915100000")]);
    let (code, v) = alice.post("/v1/messages", &json!({"to": "dora", "body": "x"}));
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["error"]["code"], "no_mechanism");
    // An external address on a medium without a gateway, too.
    let (code, v) = alice.post(
        "/v1/messages",
        &json!({"to": "email:x@example.org", "body": "x"}),
    );
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (422, Some("no_mechanism"))
    );
}

#[test]
fn cli_walk_through() {
    let node = TestNode::start();
    let (ok, out, err) = cli(&node, &["user", "add", "alice", "--display-name", "Alice"]);
    assert!(ok, "{err}");
    let alice_token = out.lines().last().unwrap().to_string();
    let (ok, out, err) = cli(
        &node,
        &[
            "user",
            "add",
            "bob",
            "--sms",
            "+4915112345678",
            "--im",
            "--home-node",
            "b",
        ],
    );
    assert!(ok, "{err}");
    let bob_token = out.lines().last().unwrap().to_string();
    let (_, show, _) = cli(&node, &["user", "show", "bob"]);
    let profile: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(profile["home_node"], "b", "{profile}");
    let (ok, _, err) = cli(&node, &["user", "add", "carl", "--home-node", "b c"]);
    assert!(!ok && err.contains("home_node"), "{err}");
    assert_eq!(
        profile["mechanisms"][0]["medium"], "sms",
        "the order given is the preference order"
    );
    assert_eq!(profile["mechanisms"][1]["medium"], "im");

    let (ok, _, err) = cli(&node, &["user", "add", "bob"]);
    assert!(!ok);
    assert!(err.contains("409") && err.lines().count() == 1, "{err}");

    let (ok, out, err) = cli(
        &node,
        &[
            "send",
            "--token",
            &alice_token,
            "--to",
            "bob",
            "--wait",
            "hello from the CLI",
        ],
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[1], "delivered via im");
    let txn = lines[0];

    let bob = node.admin.with_token(&bob_token);
    assert_eq!(bob.inbox()[0]["body"], "hello from the CLI");
    let (ok, out, _) = cli(&node, &["status", txn]);
    assert!(ok);
    assert!(out.contains("status    delivered"), "{out}");

    let (_, list, _) = cli(&node, &["user", "list"]);
    assert!(
        list.contains("alice\tim:alice") && list.contains("bob\tsms:+4915112345678 im:bob"),
        "{list}"
    );
    let (ok, out, _) = cli(&node, &["user", "token", "alice"]);
    assert!(ok);
    assert_ne!(out.lines().last().unwrap(), alice_token);
    assert_eq!(
        node.admin.with_token(&alice_token).get("/v1/inbox").0,
        401,
        "the old token stops working"
    );
    let (ok, _, _) = cli(&node, &["user", "remove", "alice"]);
    assert!(ok);
    let (ok, _, err) = cli(&node, &["user", "show", "alice"]);
    assert!(!ok && err.contains("404"), "{err}");
}

#[test]
fn cli_config_and_init() {
    let out = Command::new(bin())
        .args(["config", "default"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, String::from_utf8(out.stdout).unwrap()).unwrap();
    let out = Command::new(bin())
        .args(["config", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("warning"),
        "the default warns of nothing: {err}"
    );
    // Settings that work but cost something are said so.
    let mail = dir.path().join("mail.toml");
    std::fs::write(&mail, "[email]\nenabled = true\n").unwrap();
    let out = Command::new(bin())
        .args(["config", "check"])
        .arg(&mail)
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: email.relay_tls: \"opportunistic\"")
            && err.contains("does not verify its certificate")
            && err.contains("warning: email.tls_cert: not set, so SMTP AUTH is never offered"),
        "{err}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[http]\nlisten = \"nowhere\"\n").unwrap();
    let out = Command::new(bin())
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http.listen"), "{err}");

    let data = dir.path().join("data");
    let out = Command::new(bin())
        .args(["init", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let token = stdout.lines().last().unwrap();
    assert_eq!(
        std::fs::read_to_string(data.join("admin.token"))
            .unwrap()
            .trim(),
        token
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("admin.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let out = Command::new(bin())
        .args(["init", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a second init must refuse");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already initialised"));
}

#[test]
fn accounting_exports_as_csv_when_asked() {
    let node = TestNode::start();
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    node.admin.add_user("bob", &[("im", "bob")]);
    for i in 0..3 {
        let txn = alice.send("bob", &format!("m{i}"));
        alice.expect_status(&txn, "delivered");
    }
    let json_recs = node.admin.get("/v1/admin/accounting?user=alice").1["records"].clone();
    let resp = ureq::get(format!("{}/v1/admin/accounting?user=alice", node.url))
        .header("Authorization", format!("Bearer {}", node.admin.token))
        .header("Accept", "text/csv")
        .call()
        .expect("CSV");
    let ct = resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(ct.starts_with("text/csv"), "{ct}");
    let csv = resp.into_body().read_to_string().unwrap();
    // Parsed by an independent reader (Python's csv module).
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import csv, json, sys; print(json.dumps(list(csv.DictReader(sys.stdin))))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(csv.as_bytes())?;
            c.wait_with_output()
        })
        .expect("python3 parses the CSV");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let json_recs = json_recs.as_array().unwrap();
    // By medium too.
    let count = |q: &str| {
        let (code, v) = node.admin.get(&format!("/v1/admin/accounting?{q}"));
        assert_eq!(code, 200, "{v}");
        v["records"].as_array().unwrap().len()
    };
    assert_eq!(count("user=alice&medium=im"), 3);
    assert_eq!(count("medium=sms"), 0);
    assert_eq!(node.admin.get("/v1/admin/accounting?medium=pigeon").0, 400);
    assert_eq!(rows.len(), json_recs.len());
    assert_eq!(rows.len(), 3);
    for (row, rec) in rows.iter().zip(json_recs) {
        for k in [
            "txn",
            "sender",
            "recipient",
            "medium",
            "gateway",
            "outcome",
            "at",
        ] {
            assert_eq!(row[k], rec[k], "{k}: {row} vs {rec}");
        }
        assert_eq!(row["bytes"], rec["bytes"].to_string());
    }
}

#[test]
fn users_are_listed_a_page_at_a_time_in_id_order() {
    let node = TestNode::start();
    let ids = ["erin", "bob", "dave", "alice", "carol"];
    for id in ids {
        node.admin.add_user(id, &[("im", id)]);
    }
    let mut seen = Vec::new();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 5, "paging does not end");
        let (code, v) = node.admin.get(&format!("/v1/admin/users?limit=2{after}"));
        assert_eq!(code, 200, "{v}");
        let page: Vec<String> = v["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect();
        assert!(page.len() <= 2, "{v}");
        seen.extend(page);
        match v["next"].as_str() {
            Some(n) => after = format!("&after={n}"),
            None => break,
        }
    }
    assert_eq!(seen, ["alice", "bob", "carol", "dave", "erin"]);
    assert_eq!(pages, 3);
    // The default page holds them all; bad limits are refused.
    let (_, v) = node.admin.get("/v1/admin/users");
    assert_eq!(v["users"].as_array().unwrap().len(), 5);
    assert!(v["next"].is_null());
    for bad in ["limit=0", "limit=10001", "limit=x"] {
        assert_eq!(
            node.admin.get(&format!("/v1/admin/users?{bad}")).0,
            400,
            "{bad}"
        );
    }
}

#[test]
fn the_admin_token_rotates_and_the_old_one_stops_working() {
    let node = TestNode::start();
    let file = node.dir.path().join("admin.token");
    let old = node.admin.token.clone();
    // A user may not.
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    assert_eq!(alice.post("/v1/admin/token", &json!({})).0, 403);
    let (ok, out, err) = cli(&node, &["admin-token", "rotate"]);
    assert!(ok, "{err}");
    assert!(out.contains(&file.display().to_string()), "{out}");
    let new = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(
        !out.contains(&new),
        "the token itself is not printed: {out}"
    );
    assert_ne!(new, old);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(node.admin.get("/v1/admin/users").0, 401, "the old token");
    let admin = common::Api::new(&node.url, &new);
    assert_eq!(admin.get("/v1/admin/users").0, 200);
    // `--show` prints it (a node on another machine), and rotates again.
    let (ok, out, err) = cli_as(&node, &new, &["admin-token", "rotate", "--show"]);
    assert!(ok, "{err}");
    let shown = out.lines().last().unwrap().to_string();
    assert_eq!(shown, std::fs::read_to_string(&file).unwrap().trim());
    assert_eq!(admin.get("/v1/admin/users").0, 401);
    // Users' tokens are untouched.
    assert_eq!(alice.get("/v1/inbox").0, 200);
}
