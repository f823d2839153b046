//! Crash safety of the spine: under a steady load the node is killed
//! (`kill -9`) at random moments and restarted, three times; every message
//! accepted (202) is then in its recipient's inbox exactly once. An ordered
//! restart keeps users, tokens and inboxes; SIGTERM drains and exits 0.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{jitter, Api, ProcNode, TestNode};
use serde_json::json;

/// A node process on `dir` with users alice and bob; their APIs.
fn node_with_alice_and_bob(dir: &std::path::Path) -> (ProcNode, Api, Api) {
    let node = ProcNode::spawn(dir);
    let token = std::fs::read_to_string(dir.join("admin.token")).unwrap();
    let admin = Api::new(&node.url, token.trim());
    let alice = admin.add_user("alice", &[("im", "alice")]);
    let bob = admin.add_user("bob", &[("im", "bob")]);
    (node, alice, bob)
}

#[test]
fn repeated_kill_9_under_steady_load_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", common::free_port());
    let env = [("SWITCHBOARD_HTTP__LISTEN", http.as_str())];
    let node = ProcNode::spawn_with(dir.path(), &env);
    let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let admin = Api::new(&node.url, token.trim());
    let alice = admin.add_user("alice", &[("im", "alice")]);
    let bob = admin.add_user("bob", &[("im", "bob")]);
    let mut seed = common::kill_seed();

    // Four senders post steadily to the same address across restarts; a
    // refused or cut request is not accepted and is simply not retried.
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|s| {
            let (alice, accepted, done) = (alice.clone(), accepted.clone(), done.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !done.load(Ordering::SeqCst) && i < 3000 {
                    i += 1;
                    let r = alice.try_post(
                        "/v1/messages",
                        &json!({"to": "bob", "body": format!("s{s} m{i}")}),
                    );
                    match r {
                        Some((202, v)) => accepted
                            .lock()
                            .unwrap()
                            .push(v["txn"].as_str().unwrap().to_string()),
                        _ => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        })
        .collect();

    // Three kills at random moments, each after some more messages were
    // accepted, then a restart on the same data directory.
    let mut node = Some(node);
    for round in 0..3 {
        let target = accepted.lock().unwrap().len() + jitter(&mut seed, 40, 160) as usize;
        let deadline = Instant::now() + Duration::from_secs(15);
        while accepted.lock().unwrap().len() < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(jitter(&mut seed, 0, 40)));
        node.take().unwrap().kill9();
        eprintln!(
            "kill {round}: {} accepted so far",
            accepted.lock().unwrap().len()
        );
        std::thread::sleep(Duration::from_millis(jitter(&mut seed, 0, 200)));
        node = Some(ProcNode::spawn_with(dir.path(), &env));
    }
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::SeqCst);
    for s in senders {
        let _ = s.join();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(accepted.len() >= 150, "only {} accepted", accepted.len());

    let node = node.unwrap();
    let bob = Api::new(&node.url, &bob.token);
    let deadline = Instant::now() + Duration::from_secs(30);
    let inbox = loop {
        let inbox = bob.inbox();
        let have: std::collections::HashSet<String> = inbox
            .iter()
            .map(|m| m["txn"].as_str().unwrap().to_string())
            .collect();
        if accepted.iter().all(|t| have.contains(t)) || Instant::now() > deadline {
            break inbox;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    for m in &inbox {
        *seen
            .entry(m["txn"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let missing: Vec<_> = accepted.iter().filter(|t| !seen.contains_key(*t)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} accepted messages lost: {missing:?}",
        missing.len(),
        accepted.len()
    );
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");

    // And every accepted message's status ends delivered.
    let alice = Api::new(&node.url, &alice.token);
    for t in accepted.iter().step_by(10) {
        alice.expect_status(t, "delivered");
    }
    node.kill9();
}

#[test]
fn ordered_restart_keeps_users_tokens_inboxes_and_read_receipts_work_after() {
    let node = TestNode::start();
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    let txn = alice.send("bob", "before restart");
    alice.expect_status(&txn, "delivered");
    let (alice_token, bob_token) = (alice.token.clone(), bob.token.clone());

    let dir = node.stop();
    let node = TestNode::start_in(dir);
    let alice = node.admin.with_token(&alice_token);
    let bob = node.admin.with_token(&bob_token);
    assert_eq!(bob.inbox()[0]["body"], "before restart");
    // The Read report of a message delivered before the restart.
    assert_eq!(
        bob.post(&format!("/v1/messages/{txn}/read"), &json!({})).0,
        204
    );
    alice.expect_status(&txn, "read");
    let t2 = alice.send("bob", "after restart");
    alice.expect_status(&t2, "delivered");
}

#[test]
fn sigterm_drains_flushes_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (node, alice, bob) = node_with_alice_and_bob(dir.path());
    let txns: Vec<String> = (0..30)
        .map(|i| alice.send("bob", &format!("m{i}")))
        .collect();
    let status = node.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        alice
            .try_post("/v1/messages", &json!({"to": "bob", "body": "late"}))
            .is_none(),
        "no longer accepting"
    );

    let node = ProcNode::spawn(dir.path());
    let alice = Api::new(&node.url, &alice.token);
    let bob = Api::new(&node.url, &bob.token);
    for t in &txns {
        alice.expect_status(t, "delivered");
    }
    let got: Vec<String> = bob
        .inbox()
        .iter()
        .map(|m| m["txn"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, txns, "every message once, in order");
    node.kill9();
}

#[test]
fn systemd_is_told_ready_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let data = dir.path().join("data");
    let notify = sock_path.to_str().unwrap().to_string();
    let node = ProcNode::spawn_with(&data, &[("NOTIFY_SOCKET", notify.as_str())]);
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("READY=1");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        msg.starts_with("READY=1\nSTATUS=serving HTTP on 127.0.0.1:"),
        "{msg}"
    );
    let status = node.terminate();
    assert!(status.success(), "{status:?}");
    let n = sock.recv(&mut buf).expect("STOPPING=1");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("STOPPING=1"));
}

/// A fax medium whose deliveries wait until the test lets them finish; it
/// says when one began.
struct HeldFax {
    started: Mutex<std::sync::mpsc::Sender<()>>,
    release: Arc<tokio::sync::Notify>,
}

impl switchboard_actors::medium::Medium for HeldFax {
    fn kind(&self) -> switchboard_core::protocol::MediumKind {
        switchboard_core::protocol::MediumKind::Fax
    }

    fn health(&self) -> switchboard_actors::medium::Health {
        switchboard_actors::medium::Health {
            up: true,
            detail: "held".into(),
        }
    }

    fn deliver(
        &mut self,
        _: switchboard_actors::medium::Delivery,
    ) -> switchboard_actors::medium::futures_like::LocalBoxFuture<
        'static,
        Result<switchboard_actors::medium::MediumAck, switchboard_actors::medium::NonDelivery>,
    > {
        let _ = self.started.lock().unwrap().send(());
        let release = self.release.clone();
        Box::pin(async move {
            release.notified().await;
            Ok(switchboard_actors::medium::MediumAck::Delivered)
        })
    }
}

#[test]
fn ordered_shutdown_waits_for_every_gateways_in_flight_steps() {
    let (started_tx, started) = std::sync::mpsc::channel();
    let release = Arc::new(tokio::sync::Notify::new());
    let medium = HeldFax {
        started: Mutex::new(started_tx),
        release: release.clone(),
    };
    // Long enough that only the held delivery can end the wait.
    let patience = [(
        "SWITCHBOARD_SHUTDOWN__TIMEOUT_S".to_string(),
        "60".to_string(),
    )];
    let node = TestNode::start_full(
        tempfile::tempdir().unwrap(),
        &patience,
        Box::new(move |node| {
            Box::pin(async move {
                node.core
                    .add_gateway("gw-fax-held", medium, None)
                    .await
                    .unwrap();
            })
        }),
    );
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    node.admin.add_user("carol", &[("fax", "+4930123")]);
    let txn = alice.send("carol", "held on the fax line");
    started
        .recv_timeout(Duration::from_secs(10))
        .expect("the fax delivery began");
    let url = node.url.clone();
    let stopping = std::thread::spawn(move || node.stop());
    // The shutdown stops the HTTP server first, then waits for the fax
    // gateway's delivery: it does not end while the delivery is held (a
    // bounded look — a shutdown that ignored the fax gateway ends within
    // milliseconds), and ends once it is let go.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(url.trim_start_matches("http://")).is_ok() {
        assert!(Instant::now() < deadline, "the HTTP server never stopped");
        std::thread::yield_now();
    }
    let look = Instant::now() + Duration::from_millis(500);
    while Instant::now() < look {
        assert!(
            !stopping.is_finished(),
            "the shutdown ended while the fax gateway was still delivering"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    release.notify_one();
    let dir = stopping.join().unwrap();
    // The node waited for the fax gateway: its report reached the broker
    // before the broker stopped, so the message is delivered, not left open.
    let store = switchboard::node::open_store(dir.path()).unwrap();
    let rec = store
        .txn(&txn.parse().unwrap())
        .unwrap()
        .expect("the transaction is stored");
    assert_eq!(rec.status.as_str(), "delivered", "{rec:?}");
}

/// The first `serve` makes the admin token and says where it is; the token
/// itself goes to `admin.token` (0600) only, never to stdout or stderr
/// (a supervisor's journal keeps both).
#[test]
fn the_first_serve_says_where_the_admin_token_is_and_never_prints_it() {
    use std::io::Read as _;
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(common::bin())
        .arg("serve")
        .env("SWITCHBOARD_DATA__DIR", dir.path())
        .env("SWITCHBOARD_HTTP__LISTEN", "127.0.0.1:0")
        .env("SWITCHBOARD_MIAP__LISTEN", "127.0.0.1:0")
        .env("SWITCHBOARD_LOG__LEVEL", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    assert!(
        first.starts_with("switchboard: http listening on "),
        "{first}"
    );
    let file = dir.path().join("admin.token");
    let token = std::fs::read_to_string(&file).unwrap();
    let token = token.trim();
    assert!(token.starts_with("sb_"), "{token}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    common::terminate(&mut child);
    let (mut rest, mut err) = (String::new(), String::new());
    out.read_to_string(&mut rest).unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let said = format!("{first}{rest}{err}");
    assert!(!said.contains(token), "the token was printed: {said}");
    assert!(
        said.contains(&file.display().to_string()),
        "where it is: {said}"
    );
}
