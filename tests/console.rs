//! The web console: its files and headers, the two endpoints it reads
//! (`GET /v1/me`, `GET /v1/messages`), and the whole console in a real
//! browser — Debian's Chromium, headless, driven by Playwright
//! (`tests/console/console.mjs`) against the real node with a real SMSC.
mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use common::{node_with_smsc, node_with_smsc_in, Smsc, TestNode};

const BOB_PHONE: &str = "+4915100000002";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// (status, the headers asked for, body) of a GET with `headers`.
fn fetch(url: &str, headers: &[(&str, &str)], want: &[&str]) -> (u16, Vec<String>, String) {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut r = req.call().expect("the node answers");
    let got = want
        .iter()
        .map(|h| {
            r.headers()
                .get(*h)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        })
        .collect();
    let status = r.status().as_u16();
    (
        status,
        got,
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

#[test]
fn console_files_are_served_under_a_strict_policy() {
    let node = TestNode::start();
    let want = [
        "content-security-policy",
        "content-type",
        "x-content-type-options",
        "etag",
    ];
    for (path, kind) in [
        ("/", "text/html"),
        ("/admin", "text/html"),
        ("/console/user.js", "text/javascript"),
        ("/console/console.css", "text/css"),
        ("/console/icon.svg", "image/svg+xml"),
    ] {
        let (status, h, body) = fetch(&format!("{}{path}", node.url), &[], &want);
        assert_eq!(status, 200, "{path}");
        assert!(h[0].contains("script-src 'self'"), "{path}: {}", h[0]);
        assert!(h[0].contains("default-src 'none'"), "{path}: {}", h[0]);
        assert!(h[0].contains("form-action 'none'"), "{path}: {}", h[0]);
        assert!(!h[0].contains("unsafe"), "{path}: {}", h[0]);
        assert!(h[1].starts_with(kind), "{path}: {}", h[1]);
        assert_eq!(h[2], "nosniff", "{path}");
        assert!(!body.is_empty(), "{path}");
        // The validator: the same file again is a 304 with no body.
        let (status, _, body) = fetch(
            &format!("{}{path}", node.url),
            &[("If-None-Match", &h[3])],
            &[],
        );
        assert_eq!((status, body.as_str()), (304, ""), "{path}");
    }
    let (_, _, page) = fetch(&format!("{}/", node.url), &[], &[]);
    assert!(
        page.contains("<script type=\"module\" src=\"/console/user.js\">"),
        "{page}"
    );
    for path in [
        "/console/nope.js",
        "/console/..%2FCargo.toml",
        "/console/mod.rs",
    ] {
        let (status, h, body) = fetch(&format!("{}{path}", node.url), &[], &["content-type"]);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(h[0].starts_with("application/json"), "{path}");
    }
    // The pages hold no data: the operator view without a token is only
    // its sign-in form, and every figure it shows needs the admin token.
    let (_, _, admin) = fetch(&format!("{}/admin", node.url), &[], &[]);
    assert!(admin.contains("Admin token"), "{admin}");
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let (status, v) = alice.get("/v1/admin/members");
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
}

#[test]
fn me_names_the_callers_contacts_never_their_mechanisms() {
    let node = TestNode::start();
    node.admin.add_user_with(
        "bob",
        &[("im", "bob"), ("sms", BOB_PHONE)],
        json!({"display_name": "Bob"}),
    );
    // carol shares her presence with no one but her contacts.
    node.admin.add_user("carol", &[("im", "carol")]);
    let alice = node.admin.add_user_with(
        "alice",
        &[("im", "alice")],
        json!({"display_name": "Alice", "contacts": ["bob", "carol"]}),
    );
    let (status, me) = alice.get("/v1/me");
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me,
        json!({"user": "alice", "display_name": "Alice", "contacts": [
            {"user": "bob", "display_name": "Bob"},
            {"user": "carol"},
        ]})
    );
    assert!(!me.to_string().contains(BOB_PHONE));
    // What the console's "reachable another way" reads: this node runs no
    // SMS gateway, so bob's phone reaches nobody now.
    let (_, p) = alice.get("/v1/presence/bob");
    assert_eq!(
        p["mediums"],
        json!({"im": "offline", "sms": "unavailable"}),
        "{p}"
    );
    // bob has no contacts; the admin token is no user.
    let bob = node.admin.add_user("dave", &[("im", "dave")]);
    assert_eq!(bob.get("/v1/me").1["contacts"], json!([]));
    let (status, v) = node.admin.get("/v1/me");
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = alice.with_token("forged").get("/v1/me");
    assert_eq!(status, 401);

    // The CLI sets contacts as it adds a user.
    let (ok, out, err) = common::cli(
        &node,
        &[
            "user",
            "add",
            "erin",
            "--im",
            "--contact",
            "bob",
            "--contact",
            "alice",
        ],
    );
    assert!(ok, "{err}");
    let erin = node.admin.with_token(out.lines().last().unwrap().trim());
    let contacts: Vec<Value> = erin.get("/v1/me").1["contacts"].as_array().unwrap().clone();
    assert_eq!(
        contacts,
        [
            json!({"user": "bob", "display_name": "Bob"}),
            json!({"user": "alice", "display_name": "Alice"})
        ]
    );
}

#[test]
fn sent_lists_the_callers_own_messages_newest_first() {
    let node = TestNode::start();
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let first = alice.send("bob", "one");
    let second = alice.send("bob", "two");
    let bobs = bob.send("alice", "three");
    for t in [&first, &second] {
        alice.expect_status(t, "delivered");
    }
    let (status, v) = alice.get("/v1/messages");
    assert_eq!(status, 200, "{v}");
    let txns: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["txn"].as_str().unwrap())
        .collect();
    assert_eq!(txns, [second.as_str(), first.as_str()]);
    assert_eq!(v["messages"][0]["status"], "delivered");
    assert_eq!(v["messages"][0]["to"], "bob");
    let (_, v) = alice.get("/v1/messages?limit=1");
    assert_eq!(v["messages"].as_array().unwrap().len(), 1);
    let (_, v) = bob.get("/v1/messages");
    assert_eq!(v["messages"][0]["txn"], bobs.as_str());
    assert_eq!(v["messages"].as_array().unwrap().len(), 1);
    for bad in ["limit=0", "limit=1001", "limit=x", "after=1"] {
        let (status, v) = alice.get(&format!("/v1/messages?{bad}"));
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{bad}: {v}"
        );
    }
    assert_eq!(node.admin.get("/v1/messages").0, 401);
}

#[test]
fn the_inbox_pages_newest_first_with_before() {
    let node = TestNode::start();
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    for i in 0..5 {
        let t = alice.send("bob", &format!("m{i}"));
        alice.expect_status(&t, "delivered");
    }
    let bodies = |v: &Value| -> Vec<String> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, page) = bob.get("/v1/inbox?before=&limit=2");
    assert_eq!(status, 200, "{page}");
    assert_eq!(bodies(&page), ["m4", "m3"]);
    let next = page["next"].as_str().unwrap().to_string();
    let (_, page) = bob.get(&format!("/v1/inbox?before={next}&limit=2"));
    assert_eq!(bodies(&page), ["m2", "m1"]);
    let next = page["next"].as_str().unwrap().to_string();
    let (_, page) = bob.get(&format!("/v1/inbox?before={next}&limit=2"));
    assert_eq!(bodies(&page), ["m0"]);
    let last = page["next"].as_str().unwrap().to_string();
    let (_, page) = bob.get(&format!("/v1/inbox?before={last}"));
    assert_eq!(
        (bodies(&page).len(), page["next"].as_str()),
        (0, Some(last.as_str()))
    );
    // Oldest first from the cursor of m2: what a reconnecting client reads.
    let (_, all) = bob.get("/v1/inbox");
    let m2 = all["messages"][2]["cursor"].as_str().unwrap();
    let (_, page) = bob.get(&format!("/v1/inbox?after={m2}"));
    assert_eq!(bodies(&page), ["m3", "m4"]);
    for bad in [
        "before=x",
        "before=-1",
        "before=1&after=1",
        "before=&after=",
    ] {
        let (status, v) = bob.get(&format!("/v1/inbox?{bad}"));
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{bad}: {v}"
        );
    }
}

/// What the browser test needs that `scripts/test` installs.
fn browser_parts() -> (String, std::path::PathBuf) {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: scripts/test installs Debian's chromium"
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "tests/console/node_modules is missing: scripts/test runs npm ci there"
    );
    (chromium, dir)
}

#[test]
fn the_console_in_a_real_browser() {
    let (chromium, dir) = browser_parts();
    let smsc = Smsc::start();
    let archive = [("SWITCHBOARD_ARCHIVE__ENABLED", "true")];
    let mut node = Some(node_with_smsc(&smsc, &archive));
    let n = node.as_ref().unwrap();
    let listen = n.url.trim_start_matches("http://").to_string();
    // Their domain archives every delivery (the operator searches it), and
    // one policy rule tags SMS (the operator's rule list shows it).
    let (status, v) = n.admin.put(
        "/v1/admin/domains/corp.example",
        &json!({"managed": true, "archive": true}),
    );
    assert_eq!(status, 201, "{v}");
    let rule = json!({"priority": 10, "stage": "meta", "when": {"medium": "sms"},
        "action": {"type": "tag", "tag": "sms"}});
    let (status, v) = n.admin.put("/v1/admin/policy/rules/sms-tag", &rule);
    assert_eq!(status, 201, "{v}");
    // And card numbers wait for a reviewer (the operator releases one).
    let cards = json!({"priority": 80, "stage": "content",
        "when": {"regex": "\\b\\d{4}-\\d{4}-\\d{4}-\\d{4}\\b"},
        "action": {"type": "quarantine", "reason": "a card number"}});
    let (status, v) = n.admin.put("/v1/admin/policy/rules/cards", &cards);
    assert_eq!(status, 201, "{v}");
    let alice = n.admin.add_user_with(
        "alice",
        &[("im", "alice")],
        json!({"display_name": "Alice", "contacts": ["bob"], "domain": "corp.example"}),
    );
    let bob = n.admin.add_user_with(
        "bob",
        &[("im", "bob"), ("sms", BOB_PHONE)],
        json!({"display_name": "Bob", "contacts": ["alice"], "domain": "corp.example"}),
    );
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    let mut child = Command::new("node")
        .arg(dir.join("console.mjs"))
        .env("CONSOLE_URL", &n.url)
        .env("ALICE_TOKEN", &alice.token)
        .env("BOB_TOKEN", &bob.token)
        .env("ADMIN_TOKEN", &n.admin.token)
        .env("SHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs tests/console/console.mjs");
    // Bounded: the script's own waits are 60 s at most each.
    let pid = child.id();
    let (done, ended) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if ended.recv_timeout(Duration::from_secs(300)).is_err() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut stopped = None;
    let mut answered = Vec::new();
    for line in out.lines() {
        let line = line.expect("the script's output");
        println!("{line}");
        match line.as_str() {
            "STOP" => {
                stopped = Some(node.take().expect("a running node").stop());
                writeln!(stdin, "STOPPED").unwrap();
                answered.push("STOP");
            }
            "START" => {
                let dir = stopped.take().expect("a stopped node");
                let n = node_with_smsc_in(
                    &smsc,
                    dir,
                    &[archive[0], ("SWITCHBOARD_HTTP__LISTEN", &listen)],
                );
                // While alice's console is still away (it retries after
                // a pause), bob writes: she must find it on her return.
                // A fresh client: the old one's connections went to the
                // stopped node.
                let bob = bob.with_token(&bob.token);
                let (status, v) =
                    bob.post("/v1/messages", &json!({"to": "alice", "body": "Back now"}));
                assert_eq!(status, 202, "{v}");
                node = Some(n);
                writeln!(stdin, "STARTED").unwrap();
                answered.push("START");
            }
            _ => {}
        }
    }
    let status = child.wait().unwrap();
    let _ = done.send(());
    watchdog.join().unwrap();
    assert!(
        status.success(),
        "the browser test failed (its output is above)"
    );
    assert_eq!(answered, ["STOP", "START"]);
    // What the browser did, seen from the node: bob's phone got alice's
    // SMS, and the operator's swap is the manager new messages use.
    let subs = smsc.submits_to(&BOB_PHONE[1..]);
    let texts: Vec<&str> = subs.iter().filter_map(|s| s["text"].as_str()).collect();
    assert_eq!(
        texts,
        ["Are you there?", "card 1234-5678-9012-3456"],
        "{subs:?}"
    );
    let (_, m) = node
        .as_ref()
        .unwrap()
        .admin
        .get("/v1/admin/delivery-managers/sequential");
    assert_eq!(m["configs"]["normal"]["mechanisms"], json!(["im"]), "{m}");
    for shot in [
        "02-alice-contacts",
        "04-delivered",
        "06-alice-sees-read",
        "09-sms-attempt",
        "11-admin-overview",
        "15-admin-hot-swap",
        "16-token-expired",
    ] {
        assert!(shots.join(format!("{shot}.png")).exists(), "{shot}.png");
    }
}
