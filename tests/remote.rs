//! Remote members over MIAP/TCP: a gateway in its own process
//! (`switchboard gateway`) delivering and originating through a node, across
//! restarts and `kill -9` of either side; and bad input on the MIAP port.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{
    add_member, eventually, free_port, wait_logged_in, Api, Cert, ProcNode, RemoteGw, TestNode, Ws,
};
use switchboard_core::protocol::codec;
use switchboard_core::protocol::frames::start_login;
use switchboard_core::protocol::frames::RefuseReason;
use switchboard_core::protocol::{Frame, MemberId, ProtocolError, SecretKey};

/// Waits for faxes `fax 0` … `fax n-1` in `alice`'s inbox, then — once
/// every spool file in `spool` was taken and no transaction is in flight
/// (`admin`), so no duplicate can still come — checks each came once.
fn each_fax_once(alice: &Api, admin: &Api, spool: &Path, n: usize) {
    eventually("every fax in alice's inbox", || {
        (alice.inbox().len() >= n).then_some(())
    });
    eventually("every spool file taken", || {
        let pending = std::fs::read_dir(spool)
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.path().extension().is_some_and(|x| x == "txt"));
        (!pending).then_some(())
    });
    eventually("no transaction in flight", || {
        let idle = ["released", "transmitted"].iter().all(|s| {
            let (code, v) = admin.get(&format!("/v1/admin/transactions?status={s}"));
            code == 200 && v["transactions"].as_array().is_some_and(Vec::is_empty)
        });
        idle.then_some(())
    });
    let mut bodies: Vec<String> = alice
        .inbox()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect();
    bodies.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("fax {i}")).collect();
    want.sort();
    assert_eq!(bodies, want, "each fax exactly once");
}

/// Writes a spool file as the fax line would: whole, then renamed.
fn drop_fax(inbox: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(inbox).unwrap();
    let tmp = inbox.join(format!("{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, inbox.join(name)).unwrap();
}

fn node_on(dir: tempfile::TempDir, miap_port: u16) -> TestNode {
    let listen = format!("127.0.0.1:{miap_port}");
    TestNode::start_full(
        dir,
        &[("SWITCHBOARD_MIAP__LISTEN".to_string(), listen)],
        Box::new(|_| Box::pin(async {})),
    )
}

#[test]
fn a_remote_fax_gateway_delivers_and_originates_across_a_node_restart() {
    let port = free_port();
    let node = node_on(tempfile::tempdir().unwrap(), port);
    let keys = tempfile::tempdir().unwrap();
    let key = add_member(&node.admin, "gw-fax-2", "fax", keys.path());
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    node.admin.add_user("dora", &[("fax", "+4930555")]);
    let gw_data = tempfile::tempdir().unwrap();
    let connect = format!("127.0.0.1:{port}");
    let _gw = RemoteGw::spawn("fax", &connect, &key, gw_data.path(), &[]);
    wait_logged_in(&node.admin, "gw-fax-2");

    // Out: the node's IM → proc-fax-1 (node) → the remote gateway's spool.
    let txn = alice.send("dora", "to the remote fax");
    let st = alice.expect_status(&txn, "delivered");
    assert_eq!(st["attempts"][0]["gateway"], "gw-fax-2");
    assert!(gw_data
        .path()
        .join(format!("fax/outbox/{txn}.pdf"))
        .exists());

    // In: a spool file at the remote gateway → alice's IM inbox.
    drop_fax(
        &gw_data.path().join("fax/inbox"),
        "+4930777__a.txt",
        "To: alice\nfrom afar\n",
    );
    let inbox = eventually("the inbound fax", || {
        let i = alice.inbox();
        (!i.is_empty()).then_some(i)
    });
    assert_eq!(
        (inbox[0]["from"].as_str(), inbox[0]["body"].as_str()),
        (Some("fax:+4930777"), Some("from afar"))
    );

    // The node restarts; the gateway reconnects and logs in again.
    let token = alice.token.clone();
    let dir = node.stop();
    let node = node_on(dir, port);
    wait_logged_in(&node.admin, "gw-fax-2");
    let alice = node.admin.with_token(&token);
    let txn = alice.send("dora", "after the restart");
    alice.expect_status(&txn, "delivered");
    assert!(gw_data
        .path()
        .join(format!("fax/outbox/{txn}.pdf"))
        .exists());
}

/// One raw MIAP connection.
struct Raw(TcpStream);

impl Raw {
    fn connect(node: &TestNode) -> Self {
        let s = TcpStream::connect(node.miap).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Self(s)
    }

    /// A connection from another loopback address (`127.0.0.N`).
    fn connect_from(node: &TestNode, from: [u8; 4]) -> Self {
        Self(common::tcp_from(node.miap, from))
    }

    fn send(&mut self, f: &Frame) {
        let bytes = codec::frame_bytes(f, codec::DEFAULT_MAX_FRAME).unwrap();
        self.0.write_all(&bytes).unwrap();
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).unwrap();
    }

    /// The next frame, or `None` when the node closed the connection.
    fn recv(&mut self) -> Option<Frame> {
        let mut len = [0u8; 4];
        self.0.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        self.0.read_exact(&mut body).ok()?;
        Some(codec::decode(&body).expect("the node sends frames"))
    }

    fn refused(&mut self) -> ProtocolError {
        match self.recv() {
            Some(Frame::Refused(RefuseReason { error, .. })) => error,
            other => panic!("expected Refused, got {other:?}"),
        }
    }

    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.0.read(&mut b), Ok(0))
    }
}

fn login(member: &str, key: &SecretKey) -> Frame {
    login_with(member, 1, key)
}

fn login_with(member: &str, key_id: u32, key: &SecretKey) -> Frame {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    Frame::Login(start_login(MemberId::new(member), key_id, key.clone(), "broker-1", now).login)
}

fn key_of(file: &Path) -> SecretKey {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    SecretKey::from_hex(v["key"].as_str().unwrap()).unwrap()
}

fn refusals(admin: &Api) -> Value {
    admin.get("/v1/admin/members").1["refusals"].clone()
}

#[test]
fn bad_input_on_the_miap_port_is_refused_counted_and_changes_nothing() {
    let node = TestNode::start_env(&[
        ("SWITCHBOARD_MIAP__LOGIN_TIMEOUT_S", "1"),
        ("SWITCHBOARD_MIAP__UNAUTHENTICATED_PER_PEER", "3"),
        ("SWITCHBOARD_MIAP__UNAUTHENTICATED_TOTAL", "4"),
    ]);
    let keys = tempfile::tempdir().unwrap();
    let key_file = add_member(&node.admin, "gw-fax-2", "fax", keys.path());
    let key = key_of(&key_file);

    // Garbage in a well-framed body: Malformed, and the connection goes on.
    let mut c = Raw::connect(&node);
    c.send_raw(&[0, 0, 0, 5, 0xde, 0xad, 0xbe, 0xef, 0x00]);
    assert_eq!(c.refused(), ProtocolError::Malformed);
    // A short body announcing a maximal length (the decoder once panicked
    // on it, "capacity overflow"): Malformed too, and nothing allocated.
    let mut hostile = vec![0u8, 0, 0, 30, 0x00, 0xfd];
    hostile.extend_from_slice(&[0xff; 8]);
    hostile.resize(4 + 30, 0);
    c.send_raw(&hostile);
    assert_eq!(c.refused(), ProtocolError::Malformed);
    // Anything but a login first: NoSession.
    c.send(&login("gw-fax-2", &key));
    let ack = c.recv();
    assert!(matches!(ack, Some(Frame::LoginAck(_))), "{ack:?}");
    drop(c);

    // Not a member; a wrong key; a login replayed on another connection.
    let mut c = Raw::connect(&node);
    c.send(&login("gw-nobody", &key));
    assert_eq!(c.refused(), ProtocolError::UnknownMember);
    c.send(&login("gw-fax-2", &SecretKey::generate()));
    assert_eq!(c.refused(), ProtocolError::BadMac);
    let captured = login("gw-fax-2", &key);
    c.send(&captured);
    assert!(matches!(c.recv(), Some(Frame::LoginAck(_))));
    let mut replay = Raw::connect(&node);
    replay.send(&captured);
    assert_eq!(replay.refused(), ProtocolError::ReplayedNonce);
    // A second member on a logged-in connection.
    c.send(&login("gw-im-1", &key));
    assert_eq!(c.refused(), ProtocolError::WrongParty);
    drop(c);

    // Before any login, frames are refused without reaching the broker.
    let mut c = Raw::connect(&node);
    c.send(&Frame::TransmitAck(
        switchboard_core::protocol::TransmitAck {
            txn: switchboard_core::protocol::TxnId::generate(1),
            attempt: 1,
        },
    ));
    assert_eq!(c.refused(), ProtocolError::NoSession);
    // An oversized frame: refused, then the connection is closed.
    c.send_raw(&(codec::DEFAULT_MAX_FRAME as u32 + 1).to_be_bytes());
    assert_eq!(c.refused(), ProtocolError::FrameTooLarge);
    assert!(c.closed());
    // Before logging in, a frame over 16 KiB is too large already: the
    // node does not buffer a stranger's 16 MiB.
    let mut c = Raw::connect(&node);
    c.send_raw(&(16 * 1024 + 1u32).to_be_bytes());
    assert_eq!(c.refused(), ProtocolError::FrameTooLarge);
    assert!(c.closed());
    // After logging in, frames up to miap.max_frame_bytes are taken.
    let mut c = Raw::connect(&node);
    c.send(&login("gw-fax-2", &key));
    assert!(matches!(c.recv(), Some(Frame::LoginAck(_))));
    let mut big = (64 * 1024u32).to_be_bytes().to_vec();
    big.resize(4 + 64 * 1024, 0xde);
    c.send_raw(&big);
    assert_eq!(
        c.refused(),
        ProtocolError::Malformed,
        "read whole, then refused"
    );
    drop(c);

    // Connections that never log in: closed after the login timeout, at
    // most three at once from one address and four in all.
    let mut idle: Vec<Raw> = (0..3).map(|_| Raw::connect(&node)).collect();
    let mut fourth = Raw::connect(&node);
    assert!(fourth.closed(), "over the per-peer limit");
    idle.push(Raw::connect_from(&node, [127, 0, 0, 2]));
    let mut fifth = Raw::connect_from(&node, [127, 0, 0, 3]);
    assert!(fifth.closed(), "over the limit in all, from a new address");
    for c in &mut idle {
        assert!(c.closed(), "closed after the login timeout");
    }

    // Counted, and the node still serves.
    let r = refusals(&node.admin);
    for code in [
        "malformed",
        "unknown_member",
        "bad_mac",
        "replayed_nonce",
        "no_session",
        "frame_too_large",
        "wrong_party",
    ] {
        assert!(
            r[code].as_u64().unwrap_or(0) >= 1,
            "{code} not counted: {r}"
        );
    }
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    let txn = alice.send("bob", "still serving");
    alice.expect_status(&txn, "delivered");
    assert_eq!(bob.inbox().len(), 1);
}

#[test]
fn killing_the_remote_gateway_mid_load_loses_and_duplicates_nothing() {
    let node = TestNode::start();
    let keys = tempfile::tempdir().unwrap();
    let key = add_member(&node.admin, "gw-fax-2", "fax", keys.path());
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let gw_data = tempfile::tempdir().unwrap();
    let inbox = gw_data.path().join("fax/inbox");
    let connect = node.miap.to_string();
    let mut gw = RemoteGw::spawn("fax", &connect, &key, gw_data.path(), &[]);
    wait_logged_in(&node.admin, "gw-fax-2");

    // 30 faxes arrive over ~3 s while the gateway is killed twice.
    const N: usize = 30;
    for i in 0..N {
        drop_fax(
            &inbox,
            &format!("+4930{i:03}__f.txt"),
            &format!("To: alice\nfax {i}\n"),
        );
        std::thread::sleep(Duration::from_millis(100));
        if i == 10 || i == 20 {
            gw.kill9();
            gw = RemoteGw::spawn("fax", &connect, &key, gw_data.path(), &[]);
        }
    }
    each_fax_once(&alice, &node.admin, &inbox, N);
}

#[test]
fn killing_the_node_under_a_remote_gateway_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let env = [("SWITCHBOARD_MIAP__LISTEN", listen.as_str())];
    let node = ProcNode::spawn_with(dir.path(), &env);
    let admin_token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let admin = Api::new(&node.url, admin_token.trim());
    let keys = tempfile::tempdir().unwrap();
    let key = add_member(&admin, "gw-fax-2", "fax", keys.path());
    let alice = admin.add_user("alice", &[("im", "alice")]);
    let gw_data = tempfile::tempdir().unwrap();
    let inbox = gw_data.path().join("fax/inbox");
    let _gw = RemoteGw::spawn("fax", &listen, &key, gw_data.path(), &[]);
    wait_logged_in(&admin, "gw-fax-2");

    // Faxes keep arriving while the node is killed (kill -9) twice.
    const N: usize = 24;
    let mut node = Some(node);
    let mut url = String::new();
    for i in 0..N {
        drop_fax(
            &inbox,
            &format!("+4931{i:03}__f.txt"),
            &format!("To: alice\nfax {i}\n"),
        );
        std::thread::sleep(Duration::from_millis(120));
        if i == 8 || i == 16 {
            node.take().unwrap().kill9();
            let n = ProcNode::spawn_with(dir.path(), &env);
            url = n.url.clone();
            node = Some(n);
        }
    }
    let alice = Api::new(&url, &alice.token);
    let admin = Api::new(&url, admin_token.trim());
    each_fax_once(&alice, &admin, &inbox, N);
    drop(node);
}

#[test]
fn a_remote_sms_gateway_binds_to_the_smsc_and_reports_receipts() {
    let smsc = common::Smsc::start();
    let node = TestNode::start();
    let keys = tempfile::tempdir().unwrap();
    let key = add_member(&node.admin, "gw-sms-2", "sms", keys.path());
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    node.admin.add_user("dora", &[("sms", "+4915100000001")]);
    let gw_data = tempfile::tempdir().unwrap();
    let env: Vec<(String, String)> = common::sms_env(&smsc);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let _gw = RemoteGw::spawn("sms", &node.miap.to_string(), &key, gw_data.path(), &env);
    wait_logged_in(&node.admin, "gw-sms-2");
    smsc.wait_bound();

    let long = "A text long enough for two SMS segments. ".repeat(5);
    let txn = alice.send("dora", &long);
    let st = alice.expect_status(&txn, "delivered");
    assert_eq!(st["attempts"][0]["gateway"], "gw-sms-2");
    assert_eq!(
        st["attempts"][0]["processors"],
        serde_json::json!(["proc-sms-1"]),
        "segmented at the node, sent by the remote gateway"
    );
    let subs = smsc.submits_to("4915100000001");
    assert_eq!(subs.len(), 2);
    let text: String = subs.iter().map(|s| s["text"].as_str().unwrap()).collect();
    assert_eq!(text, long);

    // A phone's message through the remote gateway reaches alice.
    assert_eq!(
        smsc.mo(serde_json::json!({"from": "+4917700000009", "text": "@alice hi from a phone"})),
        [0]
    );
    let inbox = eventually("the phone's message", || {
        let i = alice.inbox();
        (!i.is_empty()).then_some(i)
    });
    assert_eq!(inbox[0]["body"], "hi from a phone");
}

#[test]
fn a_remote_email_gateway_takes_mail_and_the_broker_judges_recipients() {
    let node = TestNode::start();
    let keys = tempfile::tempdir().unwrap();
    let key = add_member(&node.admin, "gw-email-2", "email", keys.path());
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let gw_data = tempfile::tempdir().unwrap();
    let smtp = free_port().to_string();
    let listen = format!("127.0.0.1:{smtp}");
    let cert = common::Cert::new();
    let env = [
        ("SWITCHBOARD_EMAIL__ENABLED", "true"),
        ("SWITCHBOARD_EMAIL__LISTEN", listen.as_str()),
        ("SWITCHBOARD_EMAIL__LOCAL_DOMAINS", r#"["localhost"]"#),
        ("SWITCHBOARD_EMAIL__TLS_CERT", cert.cert.to_str().unwrap()),
        ("SWITCHBOARD_EMAIL__TLS_KEY", cert.key.to_str().unwrap()),
    ];
    let _gw = RemoteGw::spawn("email", &node.miap.to_string(), &key, gw_data.path(), &env);
    wait_logged_in(&node.admin, "gw-email-2");
    let swaks_as = |from: &str, to: &str, login: &[&str]| {
        let out = std::process::Command::new("swaks")
            .args(["--server", "127.0.0.1", "--port", &smtp, "--timeout", "20"])
            .args(login)
            .args(["--from", from, "--to", to, "--body", "via a remote gateway"])
            .output()
            .expect("swaks runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let swaks = |to: &str| swaks_as("ext@example.net", to, &[]);
    let out = swaks("bob@localhost");
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    assert_eq!(bob.inbox()[0]["body"], "via a remote gateway");
    // No directory here: an unknown user passes RCPT and is refused once
    // the broker has looked.
    let out = swaks("nobody@localhost");
    assert!(
        out.contains("550 5.7.1 Refused: unknown_recipient"),
        "{out}"
    );
    // SMTP AUTH: the node checks the token (MIAP `Identify`); the mail is
    // then alice's. A wrong token is refused and sends nothing.
    let login = |token: &str| {
        swaks_as(
            "alice@localhost",
            "bob@localhost",
            &common::auth_args("PLAIN", "alice", token),
        )
    };
    let out = login("sb_not_a_token");
    assert!(out.contains("535 5.7.8"), "{out}");
    let out = login(&alice.token);
    assert!(out.contains("235 2.7.0"), "{out}");
    let inbox = bob.inbox();
    assert_eq!(inbox.len(), 2, "{inbox:?}");
    assert_eq!(inbox[1]["from"], "alice");
}

#[test]
fn rotated_keys_keep_working_for_the_grace_period_and_revoked_members_are_refused() {
    let node = TestNode::start();
    let keys = tempfile::tempdir().unwrap();
    let old = key_of(&add_member(&node.admin, "gw-fax-2", "fax", keys.path()));
    let (code, v) = node
        .admin
        .post("/v1/admin/members/gw-fax-2/rotate", &serde_json::json!({}));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["key_id"], 2);
    let new = SecretKey::from_hex(v["key"].as_str().unwrap()).unwrap();
    let mut c = Raw::connect(&node);
    c.send(&login_with("gw-fax-2", 1, &old));
    assert!(
        matches!(c.recv(), Some(Frame::LoginAck(_))),
        "the old key, in its grace period"
    );
    c.send(&login_with("gw-fax-2", 2, &new));
    assert!(matches!(c.recv(), Some(Frame::LoginAck(_))), "the new key");
    // Member ids are checked, and members exist once.
    let (code, _) = node.admin.put(
        "/v1/admin/members/Bad%20Id",
        &serde_json::json!({"medium": "fax"}),
    );
    assert_eq!(code, 400);
    let (code, _) = node.admin.put(
        "/v1/admin/members/gw-fax-2",
        &serde_json::json!({"medium": "fax"}),
    );
    assert_eq!(code, 409);
    // Revoked: refused from now on; the node's own members cannot be.
    assert_eq!(node.admin.delete_path("/v1/admin/members/gw-fax-2"), 204);
    assert_eq!(node.admin.delete_path("/v1/admin/members/gw-im-1"), 409);
    let mut c2 = Raw::connect(&node);
    c2.send(&login_with("gw-fax-2", 2, &new));
    assert_eq!(c2.refused(), ProtocolError::Revoked);
    let (_, v) = node.admin.get("/v1/admin/members");
    assert!(
        v["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "gw-fax-2" && m["connected"] == false),
        "off the routes: {v}"
    );
    drop(c);
    let (_, v) = node.admin.get("/v1/admin/members");
    let m = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "gw-fax-2")
        .unwrap()
        .clone();
    assert_eq!(m["revoked"], true, "{m}");
}

#[test]
fn an_ordered_shutdown_closes_links_and_sessions_politely() {
    let node = TestNode::start();
    let keys = tempfile::tempdir().unwrap();
    let key = key_of(&add_member(&node.admin, "gw-fax-2", "fax", keys.path()));
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let mut link = Raw::connect(&node);
    link.send(&login("gw-fax-2", &key));
    assert!(matches!(link.recv(), Some(Frame::LoginAck(_))));
    let mut ws = common::Ws::connect(&node.url, Some(&alice.token));

    let started = Instant::now();
    let _dir = node.stop();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "within the shutdown timeout"
    );
    assert_eq!(
        ws.expect_close(),
        (1001, "the server is shutting down".to_string()),
        "WebSocket clients are told"
    );
    assert!(link.recv().is_none(), "the member's connection is closed");
}

#[test]
fn a_transmit_lost_with_a_remote_gateway_is_sent_again_when_it_is_back() {
    let node = TestNode::start();
    let keys = tempfile::tempdir().unwrap();
    let key = add_member(&node.admin, "gw-fax-2", "fax", keys.path());
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    node.admin.add_user("dora", &[("fax", "+4930555")]);
    let gw_data = tempfile::tempdir().unwrap();
    let connect = node.miap.to_string();
    let gw = RemoteGw::spawn("fax", &connect, &key, gw_data.path(), &[]);
    wait_logged_in(&node.admin, "gw-fax-2");

    // The gateway freezes with its connection open: the message is routed
    // to it and its Transmit sits unread; then the process dies.
    gw.freeze();
    let txn = alice.send("dora", "in flight when the gateway died");
    // Released to the frozen gateway: its attempt is on record.
    eventually("the attempt at the frozen gateway", || {
        let (_, st) = alice.get(&format!("/v1/messages/{txn}"));
        let attempts = st["attempts"].as_array().cloned().unwrap_or_default();
        (!attempts.is_empty()).then_some(())
    });
    gw.kill9();
    let (_, st) = alice.get(&format!("/v1/messages/{txn}"));
    assert_ne!(st["status"], "delivered", "{st}");

    // Back: the broker releases the open attempt again, the originator
    // transmits again, the fax is written once.
    let _gw = RemoteGw::spawn("fax", &connect, &key, gw_data.path(), &[]);
    let st = alice.expect_status(&txn, "delivered");
    assert_eq!(st["attempts"].as_array().unwrap().len(), 1, "{st}");
    assert!(gw_data
        .path()
        .join(format!("fax/outbox/{txn}.pdf"))
        .exists());
}

#[test]
fn a_remote_gateway_that_cannot_deliver_is_routed_around() {
    let smsc = common::Smsc::start();
    let node = TestNode::start();
    let keys = tempfile::tempdir().unwrap();
    let key = add_member(&node.admin, "gw-sms-2", "sms", keys.path());
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let dora = node
        .admin
        .add_user("dora", &[("sms", "+4915100000001"), ("im", "dora")]);
    let gw_data = tempfile::tempdir().unwrap();
    // The SMSC refuses this gateway's bind: connected to the node, but its
    // medium is down — and it says so over MIAP (a Health frame).
    let env: Vec<(String, String)> = common::sms_env(&smsc)
        .into_iter()
        .map(|(k, v)| {
            if k == "SWITCHBOARD_SMS__PASSWORD" {
                (k, "wrong".into())
            } else {
                (k, v)
            }
        })
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let _gw = RemoteGw::spawn("sms", &node.miap.to_string(), &key, gw_data.path(), &env);
    wait_logged_in(&node.admin, "gw-sms-2");
    eventually("the node to learn the gateway is down", || {
        let (_, v) = node.admin.get("/v1/admin/members");
        v["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "gw-sms-2" && m["logged_in"] == true && m["healthy"] == false)
            .then_some(())
    });
    let txn = alice.send("dora", "routed around the broken SMS gateway");
    let st = alice.expect_status(&txn, "delivered");
    assert_eq!(st["attempts"][0]["mechanism"], "im", "{st}");
    assert_eq!(dora.inbox().len(), 1);
    assert_eq!(smsc.state()["received"], 0);
}

/// Logs `member` in on a raw connection; its session.
fn logged_in(
    c: &mut Raw,
    member: &str,
    key: &SecretKey,
) -> switchboard_core::protocol::tscs::Session {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let p = start_login(MemberId::new(member), 1, key.clone(), "broker-1", now);
    c.send(&Frame::Login(p.login.clone()));
    match c.recv() {
        Some(Frame::LoginAck(ack)) => {
            switchboard_core::protocol::frames::finish_login(&p, &ack, now).unwrap()
        }
        other => panic!("no LoginAck: {other:?}"),
    }
}

#[test]
fn a_captured_submit_replayed_changes_nothing() {
    use switchboard_core::protocol::{Address, Imi, MediumKind, Priority, To, TxnId};
    let node = TestNode::start();
    let keys = tempfile::tempdir().unwrap();
    let key = key_of(&add_member(&node.admin, "gw-fax-2", "fax", keys.path()));
    let other = key_of(&add_member(&node.admin, "gw-fax-3", "fax", keys.path()));
    let bob = node.admin.add_user("bob", &[("im", "bob")]);

    let mut a = Raw::connect(&node);
    let session = logged_in(&mut a, "gw-fax-2", &key);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let content = b"hello over a raw link".to_vec();
    let imi = Imi {
        txn: TxnId::generate(now),
        originator: MemberId::new("gw-fax-2"),
        sender: Address::new(MediumKind::Fax, "+4930999"),
        sender_user: None,
        recipient: To::User("bob".into()),
        content_type: "text/plain".into(),
        content_len: content.len() as u64,
        content_sha256: switchboard_core::protocol::mac::sha256(&content),
        subject: None,
        priority: Priority::Normal,
        expires_at_ms: now + 60_000,
        created_at_ms: now,
        receipt: false,
        attributes: Vec::new(),
    };
    let submit = Frame::Submit(switchboard_core::protocol::frames::make_submit(
        &session, imi,
    ));
    a.send(&submit);
    let first = a.recv();
    assert!(matches!(first, Some(Frame::Release(_))), "{first:?}");
    let count = || {
        node.admin.get("/v1/admin/transactions").1["transactions"]
            .as_array()
            .unwrap()
            .len()
    };
    let before = count();

    // The same Submit again on its own link: answered again, nothing new.
    a.send(&submit);
    assert_eq!(a.recv(), first, "the same answer");
    // Captured and sent by another member: refused, nothing new.
    let mut b = Raw::connect(&node);
    logged_in(&mut b, "gw-fax-3", &other);
    b.send(&submit);
    assert_eq!(b.refused(), ProtocolError::WrongParty);
    // Or by a connection that never logged in.
    let mut c = Raw::connect(&node);
    c.send(&submit);
    assert_eq!(c.refused(), ProtocolError::NoSession);
    assert_eq!(count(), before);
    assert!(bob.inbox().is_empty(), "the content never travelled");
}

#[test]
fn miap_over_tls_delivers_and_refuses_plaintext_and_untrusted_peers() {
    let cert = Cert::new();
    let port = free_port();
    let node = TestNode::start_full(
        tempfile::tempdir().unwrap(),
        &[
            (
                "SWITCHBOARD_MIAP__LISTEN".into(),
                format!("127.0.0.1:{port}"),
            ),
            (
                "SWITCHBOARD_MIAP__TLS_CERT".into(),
                cert.cert.display().to_string(),
            ),
            (
                "SWITCHBOARD_MIAP__TLS_KEY".into(),
                cert.key.display().to_string(),
            ),
        ],
        Box::new(|_| Box::pin(async {})),
    );
    let keys = tempfile::tempdir().unwrap();
    let key = add_member(&node.admin, "gw-fax-2", "fax", keys.path());
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    node.admin.add_user("dora", &[("fax", "+4930555")]);
    let connect = format!("127.0.0.1:{port}");
    let logged_in = |admin: &Api| {
        admin.get("/v1/admin/members").1["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "gw-fax-2" && m["logged_in"] == true)
    };
    let malformed = |admin: &Api| refusals(admin)["malformed"].as_u64().unwrap_or(0);

    // A plaintext gateway: its Login is no TLS handshake — refused, counted.
    let before = malformed(&node.admin);
    let data = tempfile::tempdir().unwrap();
    let plain = RemoteGw::spawn("fax", &connect, &key, data.path(), &[]);
    eventually("the plaintext connection to be refused", || {
        (malformed(&node.admin) > before).then_some(())
    });
    assert!(!logged_in(&node.admin));
    drop(plain);

    // A gateway that trusts another CA does not accept the node.
    let other = Cert::new();
    let before = malformed(&node.admin);
    let untrusted = RemoteGw::spawn_args(
        "fax",
        &connect,
        &key,
        data.path(),
        &[],
        &["--tls-ca".as_ref(), other.ca.as_os_str()],
    );
    eventually("the untrusted handshake to fail", || {
        (malformed(&node.admin) > before).then_some(())
    });
    assert!(!logged_in(&node.admin));
    drop(untrusted);

    // Over TLS with the right CA: logs in, delivers.
    let _gw = RemoteGw::spawn_args(
        "fax",
        &connect,
        &key,
        data.path(),
        &[],
        &["--tls-ca".as_ref(), cert.ca.as_os_str()],
    );
    wait_logged_in(&node.admin, "gw-fax-2");
    let txn = alice.send("dora", "over TLS");
    let st = alice.expect_status(&txn, "delivered");
    assert_eq!(st["attempts"][0]["gateway"], "gw-fax-2");
    assert!(data.path().join(format!("fax/outbox/{txn}.pdf")).exists());

    // An independent client verifies the node's certificate on the MIAP port.
    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &connect,
            "-verify_return_error",
            "-brief",
        ])
        .arg("-CAfile")
        .arg(&cert.ca)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Verification: OK"), "{text}");
}

/// `switchboard processor --kind KIND …` for the member whose key is in `key`.
fn spawn_processor(kind: &str, connect: &str, key: &Path) -> std::process::Child {
    let member = key.file_stem().unwrap().to_str().unwrap().to_string();
    std::process::Command::new(common::bin())
        .args([
            "processor",
            "--kind",
            kind,
            "--connect",
            connect,
            "--member",
            &member,
        ])
        .arg("--key-file")
        .arg(key)
        .env("SWITCHBOARD_LOG__LEVEL", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn switchboard processor")
}

#[test]
fn a_remote_processor_converts_on_the_route_and_is_routed_around_when_gone() {
    let port = free_port();
    let node = TestNode::start_full(
        tempfile::tempdir().unwrap(),
        &[
            (
                "SWITCHBOARD_MIAP__LISTEN".into(),
                format!("127.0.0.1:{port}"),
            ),
            ("SWITCHBOARD_FAX__ENABLED".into(), "true".into()),
        ],
        Box::new(|_| Box::pin(async {})),
    );
    let connect = format!("127.0.0.1:{port}");
    // Sorts before the node's own proc-fax-1, so routes pick it first.
    let (status, v) = node.admin.put(
        "/v1/admin/members/proc-0-fax",
        &serde_json::json!({"processor": "fax"}),
    );
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        (v["processor"].as_str(), v["medium"].as_str()),
        (Some("fax"), None)
    );
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("proc-0-fax.key");
    common::write_key_file(&key, &v.to_string());
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    node.admin.add_user("dora", &[("fax", "+4930555")]);

    // A key for a fax processor does not run as another kind.
    let wrong = spawn_processor("sms", &connect, &key)
        .wait_with_output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("not a sms processor"));

    let mut proc_ = spawn_processor("fax", &connect, &key);
    wait_logged_in(&node.admin, "proc-0-fax");
    let txn = alice.send("dora", "converted in another process");
    let st = alice.expect_status(&txn, "delivered");
    assert_eq!(
        st["attempts"][0]["processors"],
        serde_json::json!(["proc-0-fax"]),
        "{st}"
    );
    let pdf = std::fs::read(node.dir.path().join(format!("fax/outbox/{txn}.pdf"))).unwrap();
    assert!(pdf.starts_with(b"%PDF"));

    // Gone: the node's own processor takes the next message.
    proc_.kill().unwrap();
    let _ = proc_.wait();
    eventually("the remote processor to be gone", || {
        let (_, v) = node.admin.get("/v1/admin/members");
        let gone = v["members"]
            .as_array()?
            .iter()
            .any(|m| m["id"] == "proc-0-fax" && m["connected"] == false);
        gone.then_some(())
    });
    let txn = alice.send("dora", "converted here");
    let st = alice.expect_status(&txn, "delivered");
    assert_eq!(
        st["attempts"][0]["processors"],
        serde_json::json!(["proc-fax-1"]),
        "{st}"
    );
}

/// `alice`'s presence as the node sees it.
fn presence_of(api: &Api, user: &str) -> String {
    let (code, v) = api.get(&format!("/v1/presence/{user}"));
    assert_eq!(code, 200, "presence of {user}: {v}");
    v["state"].as_str().unwrap_or_default().to_string()
}

fn wait_presence(api: &Api, user: &str, want: &str) {
    eventually(&format!("{user} {want} at the node"), || {
        (presence_of(api, user) == want).then_some(())
    });
}

/// Reads `presence` frames on `ws` until one says `user` is `state`.
fn until_presence(ws: &mut Ws, user: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = ws.expect("presence");
        if p["user"] == user && p["state"] == state {
            return;
        }
        assert!(Instant::now() < deadline, "{user} never {state}: last {p}");
    }
}

/// The WebSocket handshake's HTTP status with `token` (101 when it opens).
fn ws_handshake_status(base: &str, token: &str) -> u16 {
    use tungstenite::client::IntoClientRequest;
    let url = format!("{}/v1/ws", base.replacen("http://", "ws://", 1));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    match tungstenite::connect(req) {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("handshake: {e}"),
    }
}

#[test]
fn a_remote_im_gateway_holds_its_users_sessions_and_the_node_keeps_the_home_inbox() {
    let port = free_port();
    let node = node_on(tempfile::tempdir().unwrap(), port);
    let keys = tempfile::tempdir().unwrap();
    let key = add_member(&node.admin, "gw-im-2", "im", keys.path());
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    // alice follows bob's presence from her profile.
    let (code, v) = node.admin.put(
        "/v1/admin/users/alice",
        &serde_json::json!({"id": "alice", "mechanisms": [{"medium": "im", "address": "alice"}], "contacts": ["bob"]}),
    );
    assert_eq!(code, 200, "{v}");
    let listen = format!("127.0.0.1:{}", free_port());
    let gw_data = tempfile::tempdir().unwrap();
    let connect = format!("127.0.0.1:{port}");
    let env = [("SWITCHBOARD_HTTP__LISTEN", listen.as_str())];
    let gw = RemoteGw::spawn("im", &connect, &key, gw_data.path(), &env);
    wait_logged_in(&node.admin, "gw-im-2");
    let remote = format!("http://{listen}");

    // Tokens are checked by the node: a wrong one is refused at the
    // handshake and in an auth frame; the admin token is no user's.
    assert_eq!(ws_handshake_status(&remote, "sb_not_a_token"), 401);
    assert_eq!(ws_handshake_status(&remote, &node.admin.token), 401);
    let mut bad = Ws::connect(&remote, None);
    bad.send(serde_json::json!({"type": "auth", "token": "sb_wrong"}));
    assert_eq!(bad.expect_close(), (1008, "invalid token".to_string()));

    // alice's session is on the remote gateway: the node sees her online
    // and routes her IM there.
    let mut a = Ws::connect(&remote, None);
    a.send(serde_json::json!({"type": "auth", "token": alice.token}));
    wait_presence(&bob, "alice", "online");
    // Her contact bob is offline, as the node knows.
    until_presence(&mut a, "bob", "offline");
    let txn = bob.send("alice", "hello over there");
    let m = a.expect("message");
    assert_eq!(
        (m["txn"].as_str(), m["body"].as_str()),
        (Some(txn.as_str()), Some("hello over there"))
    );
    let st = bob.expect_status(&txn, "delivered");
    assert_eq!(st["attempts"][0]["gateway"], "gw-im-2");
    assert!(alice.inbox().is_empty(), "nothing went to the home inbox");

    // She sends from there to bob, who is on the node; she gets the
    // delivery receipt, and bob's read receipt after he reads it.
    // bob comes online on the node: alice, on the other gateway, sees it;
    // bob follows alice and sees her online.
    let mut b = Ws::connect(&node.url, Some(&bob.token));
    until_presence(&mut a, "bob", "online");
    b.send(serde_json::json!({"type": "subscribe", "users": ["alice"]}));
    until_presence(&mut b, "alice", "online");
    a.send(serde_json::json!({"type": "presence", "state": "busy"}));
    until_presence(&mut b, "alice", "busy");
    a.send(serde_json::json!({"type": "presence", "state": "online"}));
    until_presence(&mut b, "alice", "online");
    a.send(serde_json::json!({"type": "send", "id": 7, "to": "bob", "body": "from afar"}));
    let acc = a.expect("accepted");
    assert_eq!(acc["id"], 7);
    let sent = acc["txn"].as_str().unwrap().to_string();
    let got = b.expect("message");
    assert_eq!(
        (got["txn"].as_str(), got["body"].as_str()),
        (Some(sent.as_str()), Some("from afar"))
    );
    let r = a.expect("receipt");
    assert_eq!(
        (r["txn"].as_str(), r["status"].as_str()),
        (Some(sent.as_str()), Some("delivered"))
    );
    b.send(serde_json::json!({"type": "read", "txn": sent}));
    let r = a.expect("receipt");
    assert_eq!(
        (r["txn"].as_str(), r["status"].as_str()),
        (Some(sent.as_str()), Some("read"))
    );
    // And she reads bob's message there: bob's transaction is read.
    a.send(serde_json::json!({"type": "read", "txn": txn}));
    bob.expect_status(&txn, "read");

    // The node restarts: the gateway logs in again and tells it whose
    // sessions it holds, so alice's IM still goes there.
    let (alice_token, bob_token) = (alice.token.clone(), bob.token.clone());
    drop(b);
    let dir = node.stop();
    let node = node_on(dir, port);
    let bob = node.admin.with_token(&bob_token);
    let alice = node.admin.with_token(&alice_token);
    wait_logged_in(&node.admin, "gw-im-2");
    wait_presence(&bob, "alice", "online");
    // What alice follows is followed again: bob comes back online.
    let _b = Ws::connect(&node.url, Some(&bob.token));
    until_presence(&mut a, "bob", "online");
    let txn = bob.send("alice", "after the node's restart");
    assert_eq!(a.expect("message")["txn"].as_str(), Some(txn.as_str()));
    assert_eq!(
        bob.expect_status(&txn, "delivered")["attempts"][0]["gateway"],
        "gw-im-2"
    );

    // She closes her session: she is offline, her IM goes to the home
    // inbox on the node.
    drop(a);
    wait_presence(&bob, "alice", "offline");
    let home = bob.send("alice", "while you were out");
    // (She has only IM: it is delivered into the inbox.)
    let st = bob.expect_status(&home, "delivered");
    assert_eq!(st["attempts"][0]["gateway"], "gw-im-1");
    let inbox = alice.inbox();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["body"], "while you were out");

    // Back on the remote gateway, then the gateway dies: she is offline
    // at once and her IM goes home again.
    let _a = Ws::connect(&remote, Some(&alice.token));
    wait_presence(&bob, "alice", "online");
    gw.kill9();
    wait_presence(&bob, "alice", "offline");
    let again = bob.send("alice", "the gateway is gone");
    let st = bob.expect_status(&again, "delivered");
    assert_eq!(st["attempts"][0]["gateway"], "gw-im-1");
    assert_eq!(alice.inbox().len(), 2);
}

#[test]
fn a_remote_im_gateway_without_its_node_refuses_sessions_with_503() {
    let keys = tempfile::tempdir().unwrap();
    let key = {
        // The key file of a member of a node that is gone.
        let node = TestNode::start();
        let key = add_member(&node.admin, "gw-im-3", "im", keys.path());
        node.stop();
        key
    };
    let listen = format!("127.0.0.1:{}", free_port());
    let connect = format!("127.0.0.1:{}", free_port());
    let gw_data = tempfile::tempdir().unwrap();
    let env = [("SWITCHBOARD_HTTP__LISTEN", listen.as_str())];
    let gw = RemoteGw::spawn("im", &connect, &key, gw_data.path(), &env);
    let remote = format!("http://{listen}");
    eventually("the gateway's client API", || {
        std::net::TcpStream::connect(&listen).ok()
    });
    assert_eq!(ws_handshake_status(&remote, "sb_anything"), 503);
    let health = Api::new(&remote, "");
    assert_eq!(health.get("/healthz").0, 200);
    let (code, v) = health.get("/v1/inbox");
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // SIGTERM: open sessions are closed politely, the process exits 0.
    let mut ws = Ws::connect(&remote, None);
    ws.ping();
    let status = gw.terminate();
    assert_eq!(ws.expect_close().0, 1001);
    assert!(status.success(), "exit status {status}");
}

/// A member key others may read is refused, as ssh refuses such a private
/// key: the gateway does not start on it, and says how to fix it.
#[test]
fn a_gateway_refuses_a_key_file_others_may_read() {
    use std::os::unix::fs::PermissionsExt as _;
    let node = TestNode::start();
    let keys = tempfile::tempdir().unwrap();
    let key = add_member(&node.admin, "gw-fax-9", "fax", keys.path());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["gateway", "--medium", "fax", "--member", "gw-fax-9"])
        .args(["--connect", &node.miap.to_string()])
        .arg("--key-file")
        .arg(&key)
        .arg("--data")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600") && err.contains("644"), "{err}");
}

/// A `redirect` rule (COMPLIANCE.md) sends bob's IM through the gateway
/// member it names — a remote IM gateway, though bob holds no session
/// there — instead of the node's home inbox; bob gets it when he connects
/// there. Others' IM is routed as usual.
#[test]
fn a_redirect_rule_sends_a_users_im_through_the_gateway_it_names() {
    let port = free_port();
    let node = node_on(tempfile::tempdir().unwrap(), port);
    let keys = tempfile::tempdir().unwrap();
    let key = add_member(&node.admin, "gw-im-2", "im", keys.path());
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    let carol = node.admin.add_user("carol", &[("im", "carol")]);
    let listen = format!("127.0.0.1:{}", free_port());
    let gw_data = tempfile::tempdir().unwrap();
    let connect = format!("127.0.0.1:{port}");
    let env = [("SWITCHBOARD_HTTP__LISTEN", listen.as_str())];
    let _gw = RemoteGw::spawn("im", &connect, &key, gw_data.path(), &env);
    wait_logged_in(&node.admin, "gw-im-2");
    let rule = serde_json::json!({"priority": 10, "stage": "meta",
        "when": {"to": {"user": "bob"}},
        "action": {"type": "redirect", "to": "gw-im-2"}});
    let (status, v) = node.admin.put("/v1/admin/policy/rules/bob-via-gw2", &rule);
    assert_eq!(status, 201, "{v}");

    let txn = alice.send("bob", "through the named gateway");
    let st = eventually("the attempt on record", || {
        let (_, st) = alice.get(&format!("/v1/messages/{txn}"));
        (st["attempts"][0]["gateway"].as_str().is_some()).then_some(st)
    });
    assert_eq!(st["attempts"][0]["gateway"], "gw-im-2", "{st}");
    let kinds: Vec<&str> = (st["events"].as_array().unwrap().iter())
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"redirected:gw-im-2"), "{kinds:?}");
    let mut b = Ws::connect(&format!("http://{listen}"), Some(&bob.token));
    let m = b.expect("message");
    assert_eq!(m["body"], "through the named gateway");
    alice.expect_status(&txn, "delivered");
    assert!(bob.inbox().is_empty(), "not the home inbox");

    // carol is no one the rule names: the home inbox.
    let txn = alice.send("carol", "as usual");
    let st = alice.expect_status(&txn, "delivered");
    assert_eq!(st["attempts"][0]["gateway"], "gw-im-1", "{st}");
    assert_eq!(carol.inbox().len(), 1);
}
