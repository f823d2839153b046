//! The email gateway end to end with real SMTP peers: swaks sends into our
//! SMTP server, an aiosmtpd server is the outbound relay. Bad SMTP input
//! gets clear replies and changes nothing.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{node_with_email, swaks, Cert, Raw, Sink, TestNode};

#[test]
fn mail_from_swaks_reaches_an_im_inbox() {
    let sink = Sink::start(&[]);
    let node = node_with_email(&sink, 1024 * 1024);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    node.admin
        .add_user("alice", &[("im", "alice"), ("email", "alice@example.org")]);

    let (ok, out) = swaks(
        &node,
        &[
            "--from",
            "ext@example.net",
            "--to",
            "bob@localhost",
            "--header",
            "Subject: hello over SMTP",
            "--body",
            "body from swaks",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    let inbox = bob.inbox();
    assert_eq!(inbox.len(), 1);
    assert_eq!(
        (inbox[0]["from"].as_str(), inbox[0]["subject"].as_str()),
        (Some("email:ext@example.net"), Some("hello over SMTP"))
    );
    assert_eq!(inbox[0]["body"], "body from swaks");
    let txn = inbox[0]["txn"].as_str().unwrap();
    let st = node.admin.get(&format!("/v1/messages/{txn}")).1;
    assert_eq!(
        st["attempts"][0]["processors"],
        serde_json::json!(["proc-email-1"]),
        "the raw mail became text on the way"
    );

    // An envelope sender that is a user's email mechanism is still an
    // external sender without a login (tests/smtp_auth.rs logs in); the
    // second local domain works too; PIPELINING is used by swaks.
    let (ok, out) = swaks(
        &node,
        &[
            "--from",
            "Alice@Example.org",
            "--to",
            "BOB@sb.example",
            "--body",
            "from alice",
            "--pipeline",
        ],
    );
    assert!(ok, "{out}");
    let inbox = bob.inbox();
    assert_eq!(
        (inbox[1]["from"].as_str(), inbox[1]["body"].as_str()),
        (Some("email:alice@example.org"), Some("from alice"))
    );
    let txn = inbox[1]["txn"].as_str().unwrap();
    let st = node.admin.get(&format!("/v1/messages/{txn}")).1;
    assert_eq!(st["status"].as_str(), Some("delivered"));
    assert_ne!(st["from"].as_str(), Some("alice"), "not alice's: {st}");
}

#[test]
fn html_and_multipart_mail_arrives_as_text() {
    let sink = Sink::start(&[]);
    let node = node_with_email(&sink, 1024 * 1024);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    let (ok, out) = swaks(
        &node,
        &[
            "--from",
            "ext@example.net",
            "--to",
            "bob@localhost",
            "--add-header",
            "Content-Type: text/html; charset=utf-8",
            "--body",
            "<html><body><p>Hello <b>bob</b>,</p><p>see you &amp; soon</p></body></html>",
        ],
    );
    assert!(ok, "{out}");
    let multipart = "This is MIME.\r\n--XYZ\r\nContent-Type: text/plain\r\n\r\nthe plain part\r\n--XYZ\r\nContent-Type: text/html\r\n\r\n<p>the html part</p>\r\n--XYZ--";
    let (ok, out) = swaks(
        &node,
        &[
            "--from",
            "ext@example.net",
            "--to",
            "bob@localhost",
            "--add-header",
            "MIME-Version: 1.0",
            "--add-header",
            "Content-Type: multipart/alternative; boundary=XYZ",
            "--body",
            multipart,
        ],
    );
    assert!(ok, "{out}");
    let inbox = bob.inbox();
    let html = inbox[0]["body"].as_str().unwrap();
    assert!(
        html.contains("Hello bob") && html.contains("see you & soon"),
        "{html:?}"
    );
    assert!(!html.contains('<'), "no markup left: {html:?}");
    assert_eq!(inbox[1]["body"], "the plain part");
}

#[test]
fn unknown_local_users_and_other_domains_are_refused_at_rcpt() {
    let sink = Sink::start(&[]);
    let node = node_with_email(&sink, 1024 * 1024);
    node.admin.add_user("bob", &[("im", "bob")]);
    let (ok, out) = swaks(
        &node,
        &["--from", "x@example.net", "--to", "nobody@localhost"],
    );
    assert!(!ok);
    assert!(out.contains("550 5.1.1 No such user here"), "{out}");
    let (ok, out) = swaks(
        &node,
        &["--from", "x@example.net", "--to", "bob@elsewhere.example"],
    );
    assert!(!ok);
    assert!(out.contains("550 5.7.1 Relaying denied"), "{out}");
}

#[test]
fn im_to_an_email_recipient_goes_through_the_relay() {
    let sink = Sink::start(&[]);
    let node = node_with_email(&sink, 1024 * 1024);
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    node.admin
        .add_user("carol", &[("email", "carol@example.org")]);
    let (code, v) = alice.post(
        "/v1/messages",
        &serde_json::json!({"to": "carol", "body": "hello carol", "subject": "From IM"}),
    );
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["route"]["mechanism"], "email");
    let txn = v["txn"].as_str().unwrap().to_string();
    let st = alice.expect_status(&txn, "delivered");
    assert_eq!(st["attempts"][0]["gateway"], "gw-email-1");
    let mail = sink.wait_for(1).remove(0);
    assert!(mail.contains("Subject: From IM"), "{mail}");
    assert!(mail.contains("hello carol"), "{mail}");
    assert!(mail.contains("alice via Switchboard"), "{mail}");
    assert!(
        mail.contains(&format!("<{txn}@localhost>")),
        "the txn is the Message-ID: {mail}"
    );
    // An external address works too.
    let txn = alice.send("email:dave@example.net", "to an outsider");
    alice.expect_status(&txn, "delivered");
    assert!(sink.wait_for(2)[1].contains("to an outsider"));
}

#[test]
fn a_permanent_relay_refusal_is_a_non_delivery_and_a_transient_one_is_retried() {
    let sink = Sink::start(&[
        "carol@example.org=550 5.1.1 No such mailbox",
        "tom@example.org=451 4.3.0 Try again later",
    ]);
    let node = node_with_email(&sink, 1024 * 1024);
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    node.admin
        .add_user("carol", &[("email", "carol@example.org")]);
    node.admin.add_user("tom", &[("email", "tom@example.org")]);

    let txn = alice.send("carol", "bounce me");
    let st = alice.expect_status(&txn, "undeliverable");
    let reason = st["attempts"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("550"), "{reason}");
    assert_eq!(
        sink.rcpts()
            .iter()
            .filter(|r| r.as_str() == "carol@example.org")
            .count(),
        1,
        "no retry after a 5xx"
    );

    let txn = alice.send("tom", "retry me");
    let st = alice.expect_status(&txn, "undeliverable");
    assert!(common::reason(&st, 0).contains("after retries"), "{st}");
    assert_eq!(
        sink.rcpts()
            .iter()
            .filter(|r| r.as_str() == "tom@example.org")
            .count(),
        3,
        "three tries after 4xx"
    );
    assert!(sink.messages().is_empty());
}

#[test]
fn bad_smtp_input_gets_clear_replies_and_changes_nothing() {
    let sink = Sink::start(&[]);
    let node = node_with_email(&sink, 4096);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    let mut s = Raw::connect(&node);
    assert!(
        s.send(b"MAIL FROM:<a@b.example>\r\n").starts_with("503 "),
        "EHLO first"
    );
    assert!(s.send(b"EHLO\r\n").starts_with("501 "));
    let ehlo = s.send(b"EHLO client.example\r\n");
    for ext in ["PIPELINING", "8BITMIME", "SIZE 4096", "ENHANCEDSTATUSCODES"] {
        assert!(ehlo.contains(ext), "{ehlo}");
    }
    assert!(
        s.send(b"RCPT TO:<bob@localhost>\r\n").starts_with("503 "),
        "MAIL first"
    );
    assert!(s.send(b"DATA\r\n").starts_with("503 "));
    assert!(s.send(b"FROB the widgets\r\n").starts_with("500 "));
    assert!(
        s.send(b"\xff\xfe\xfd junk\r\n").starts_with("500 "),
        "8-bit junk as a command"
    );
    let long = format!("NOOP {}\r\n", "x".repeat(5000));
    assert!(s
        .send(long.as_bytes())
        .starts_with("500 5.5.2 Line too long"));
    // Seven errors so far; ten end a session, so go on in a fresh one.
    let mut s = Raw::connect(&node);
    assert!(s.send(b"EHLO client.example\r\n").starts_with("250"));
    assert!(
        s.send(b"MAIL FROM:a@b.example\r\n").starts_with("501 "),
        "angle brackets"
    );
    assert!(
        s.send(b"MAIL FROM:<a@b.example> SIZE=999999\r\n")
            .starts_with("552 "),
        "declared too big"
    );
    assert!(s
        .send(b"MAIL FROM:<a@b.example> HACK=1\r\n")
        .starts_with("555 "));
    assert!(s.send(b"MAIL FROM:<a@b.example>\r\n").starts_with("250 "));
    assert!(
        s.send(b"MAIL FROM:<a@b.example>\r\n").starts_with("503 "),
        "nested MAIL"
    );
    assert!(s
        .send(b"RCPT TO:<bob@localhost>\r\nBcc: eve@evil.example\r\n")
        .starts_with("250 "));
    assert!(
        s.reply().starts_with("500 "),
        "an injected header line is just a bad command"
    );
    assert!(s.send(b"DATA\r\n").starts_with("354 "));
    // Too big: the whole message is read, then refused.
    let big = format!("Subject: big\r\n\r\n{}\r\n.\r\n", "y".repeat(8000));
    assert!(s.send(big.as_bytes()).starts_with("552 5.3.4"));
    // The session goes on: a message with 8-bit junk and an encoded header
    // injection in its subject.
    assert!(s
        .send(b"MAIL FROM:<a@b.example> BODY=8BITMIME\r\n")
        .starts_with("250 "));
    assert!(s.send(b"RCPT TO:<bob@localhost>\r\n").starts_with("250 "));
    assert!(s.send(b"DATA\r\n").starts_with("354 "));
    let msg = b"Subject: =?utf-8?q?hi=0D=0ABcc:_eve@evil.example?=\r\n\r\ncaf\xe9 \xff body\r\n..dot-stuffed\r\n.\r\n";
    assert!(s.send(msg).starts_with("250 2.0.0 Ok"));
    assert!(s.send(b"RSET\r\n").starts_with("250 "));
    assert!(s.send(b"QUIT\r\n").starts_with("221 "));
    let mut rest = String::new();
    let _ = s.r.read_to_string(&mut rest);
    assert_eq!(rest, "", "closed after QUIT");

    let inbox = bob.inbox();
    assert_eq!(inbox.len(), 1, "only the one good message: {inbox:?}");
    let subject = inbox[0]["subject"].as_str().unwrap();
    assert!(
        !subject.contains('\n') && !subject.contains('\r'),
        "{subject:?}"
    );
    let body = inbox[0]["body"].as_str().unwrap();
    assert!(
        body.contains("body") && body.contains("\n.dot-stuffed"),
        "{body:?}"
    );

    // A client that vanishes mid-DATA leaves nothing behind.
    let mut gone = Raw::connect(&node);
    gone.send(b"EHLO x\r\n");
    gone.send(b"MAIL FROM:<a@b.example>\r\n");
    gone.send(b"RCPT TO:<bob@localhost>\r\n");
    gone.send(b"DATA\r\n");
    gone.w
        .write_all(b"Subject: half\r\n\r\nhalf a mess")
        .unwrap();
    // The client's side ends mid-DATA; the server's session is over once
    // it closes its side too (read to its end), and it took nothing.
    gone.w.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    gone.r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert_eq!(bob.inbox().len(), 1);
    // Too many errors: disconnected.
    let mut noisy = Raw::connect(&node);
    let mut last = String::new();
    for _ in 0..11 {
        last = noisy.send(b"BOGUS\r\n");
    }
    assert!(last.starts_with("421 "), "{last}");
    // Everyone else is still served.
    let (ok, out) = swaks(
        &node,
        &[
            "--from",
            "x@example.net",
            "--to",
            "bob@localhost",
            "--body",
            "still here",
        ],
    );
    assert!(ok, "{out}");
}

/// swaks sends `body` to bob over STARTTLS.
fn tls_mail_to_bob(node: &TestNode, body: &str) -> (bool, String) {
    swaks(
        node,
        &[
            "--tls",
            "--from",
            "ext@example.net",
            "--to",
            "bob@localhost",
            "--body",
            body,
        ],
    )
}

/// A node whose SMTP server has `cert` for STARTTLS and requires it.
fn node_with_starttls(sink: &Sink, cert: &Cert) -> TestNode {
    let relay = format!("127.0.0.1:{}", sink.port);
    TestNode::start_env(&[
        ("SWITCHBOARD_EMAIL__ENABLED", "true"),
        ("SWITCHBOARD_EMAIL__LISTEN", "127.0.0.1:0"),
        ("SWITCHBOARD_EMAIL__RELAY", &relay),
        ("SWITCHBOARD_EMAIL__LOCAL_DOMAINS", r#"["localhost"]"#),
        ("SWITCHBOARD_EMAIL__TLS_CERT", cert.cert.to_str().unwrap()),
        ("SWITCHBOARD_EMAIL__TLS_KEY", cert.key.to_str().unwrap()),
        ("SWITCHBOARD_EMAIL__REQUIRE_TLS", "true"),
    ])
}

#[test]
fn starttls_is_offered_and_required_when_a_certificate_is_configured() {
    let cert = Cert::new();
    let sink = Sink::start(&[]);
    let node = node_with_starttls(&sink, &cert);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);

    let mut s = Raw::connect(&node);
    assert!(s.send(b"EHLO me\r\n").contains("250-STARTTLS"));
    assert!(
        s.send(b"MAIL FROM:<a@example.net>\r\n")
            .starts_with("530 5.7.0"),
        "no mail in the clear"
    );

    let (ok, out) = tls_mail_to_bob(&node, "over TLS");
    assert!(ok, "{out}");
    assert!(out.contains("TLS started"), "{out}");
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    assert_eq!(bob.inbox()[0]["body"], "over TLS");

    // openssl's client verifies the chain against the CA; inside TLS,
    // STARTTLS is no longer offered and a second one is refused.
    let mut child = std::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-crlf", "-verify_return_error"])
        .args(["-starttls", "smtp", "-connect"])
        .arg(node.smtp.unwrap().to_string())
        .arg("-CAfile")
        .arg(&cert.ca)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"EHLO inside\nSTARTTLS\nQUIT\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("250 ENHANCEDSTATUSCODES") && !text.contains("STARTTLS\r\n250"),
        "{text}"
    );
    assert!(!text.contains("250-STARTTLS"), "{text}");
    assert!(text.contains("503 5.5.1 TLS already active"), "{text}");
    assert!(text.contains("221 2.0.0 Bye"), "{text}");
}

#[test]
fn plaintext_after_starttls_is_dropped_and_a_failed_handshake_harms_nothing() {
    let cert = Cert::new();
    let sink = Sink::start(&[]);
    let node = node_with_starttls(&sink, &cert);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);

    // A command pipelined after STARTTLS in the clear (the STARTTLS
    // injection attack) is never answered: the server waits for TLS.
    let mut s = Raw::connect(&node);
    s.send(b"EHLO me\r\n");
    assert!(s
        .send(b"STARTTLS\r\nMAIL FROM:<evil@example.net>\r\n")
        .starts_with("220 2.0.0"));
    s.w.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    let waited = s.r.get_mut().read(&mut buf);
    assert!(waited.is_err(), "nothing more in the clear: {waited:?}");
    // Not TLS at all: the handshake fails and the connection is closed.
    s.w.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.w.write_all(b"this is not a ClientHello\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = s.r.read_to_end(&mut rest);
    assert!(!String::from_utf8_lossy(&rest).contains("250"), "{rest:?}");

    // The server still serves.
    let (ok, out) = tls_mail_to_bob(&node, "still here");
    assert!(ok, "{out}");
    assert_eq!(bob.inbox().len(), 1);
}

#[test]
fn the_relay_is_reached_over_starttls_as_configured() {
    let cert = Cert::new();
    let sink = Sink::start_tls(&cert);
    let relay = format!("127.0.0.1:{}", sink.port);
    let ca = cert.ca.to_str().unwrap();
    let node = |tls: &str, ca: &str| {
        TestNode::start_env(&[
            ("SWITCHBOARD_EMAIL__ENABLED", "true"),
            ("SWITCHBOARD_EMAIL__LISTEN", "127.0.0.1:0"),
            ("SWITCHBOARD_EMAIL__RELAY", &relay),
            ("SWITCHBOARD_EMAIL__LOCAL_DOMAINS", r#"["localhost"]"#),
            ("SWITCHBOARD_EMAIL__RELAY_TLS", tls),
            ("SWITCHBOARD_EMAIL__RELAY_CA", ca),
        ])
    };
    let send = |node: &TestNode, want: &str| -> serde_json::Value {
        let alice = node.admin.add_user("alice", &[("im", "alice")]);
        let txn = alice.send("email:carol@example.org", "hello over TLS");
        alice.expect_status(&txn, want)
    };

    // Required, with the relay's CA: verified TLS.
    let n = node("required", ca);
    send(&n, "delivered");
    assert_eq!(sink.wait_for(1).len(), 1);
    assert!(sink.tls(1), "the relay saw TLS");
    drop(n);

    // Opportunistic: TLS without verifying the (self-signed) certificate.
    let n = node("opportunistic", "");
    send(&n, "delivered");
    sink.wait_for(2);
    assert!(sink.tls(2));
    drop(n);

    // Required without trusting the certificate: never sent in the clear.
    let n = node("required", "");
    let st = send(&n, "undeliverable");
    assert!(common::reason(&st, 0).contains("relay failed"), "{st}");
    drop(n);

    // None, to a relay that requires TLS: the relay's 530 is the reason.
    let n = node("none", "");
    let st = send(&n, "undeliverable");
    assert!(common::reason(&st, 0).contains("530"), "{st}");
    assert_eq!(sink.messages().len(), 2);
}

/// SMTP smuggling (the CVE-2023-51764 class): a `.` line after a bare LF,
/// or ending in one, does not end DATA, so the commands after it are the
/// first message's content, never a second, hidden message.
#[test]
fn a_bare_lf_dot_ends_no_data_so_no_second_message_is_smuggled() {
    let sink = Sink::start(&[]);
    let node = node_with_email(&sink, 64 * 1024);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    let carol = node.admin.add_user("carol", &[("im", "carol")]);
    for end in ["\n.\n", "\n.\r\n", "\r\n.\n"] {
        let mut s = Raw::connect(&node);
        assert!(s.send(b"EHLO client.example\r\n").starts_with("250"));
        assert!(s.send(b"MAIL FROM:<x@example.net>\r\n").starts_with("250 "));
        assert!(s.send(b"RCPT TO:<bob@localhost>\r\n").starts_with("250 "));
        assert!(s.send(b"DATA\r\n").starts_with("354 "));
        let msg = format!(
            "Subject: first\r\n\r\nhello{end}MAIL FROM:<y@example.net>\r\n\
             RCPT TO:<carol@localhost>\r\nDATA\r\nSubject: hidden\r\n\r\nsmuggled\r\n.\r\n"
        );
        assert!(
            s.send(msg.as_bytes()).starts_with("250 2.0.0 Ok"),
            "{end:?}"
        );
        // The next reply is QUIT's: nothing else was taken as a command.
        assert!(s.send(b"QUIT\r\n").starts_with("221 "), "{end:?}");
    }
    let inbox = bob.inbox();
    assert_eq!(inbox.len(), 3, "{inbox:?}");
    for m in &inbox {
        let body = m["body"].as_str().unwrap();
        assert!(body.contains("smuggled"), "the rest is content: {body:?}");
    }
    assert!(carol.inbox().is_empty(), "nothing smuggled to carol");
}

/// One address cannot take every SMTP slot: past
/// `email.max_connections_per_peer` it is answered 421 while others are
/// still greeted; a slot given back is taken again.
#[test]
fn one_address_cannot_take_every_smtp_connection() {
    let sink = Sink::start(&[]);
    let relay = format!("127.0.0.1:{}", sink.port);
    let node = TestNode::start_env(&[
        ("SWITCHBOARD_EMAIL__ENABLED", "true"),
        ("SWITCHBOARD_EMAIL__LISTEN", "127.0.0.1:0"),
        ("SWITCHBOARD_EMAIL__RELAY", &relay),
        ("SWITCHBOARD_EMAIL__MAX_CONNECTIONS", "5"),
        ("SWITCHBOARD_EMAIL__MAX_CONNECTIONS_PER_PEER", "3"),
    ]);
    let mut held: Vec<Raw> = (0..3).map(|_| Raw::connect(&node)).collect();
    let mut fourth = Raw::open(&node, [127, 0, 0, 1]);
    let no = fourth.reply();
    assert!(no.starts_with("421 4.7.0"), "{no}");
    // Another address is greeted, up to the cap in all.
    let mut other = Raw::open(&node, [127, 0, 0, 2]);
    assert!(other.reply().starts_with("220 "));
    held.push(other);
    let mut third = Raw::open(&node, [127, 0, 0, 3]);
    assert!(third.reply().starts_with("220 "));
    let mut over = Raw::open(&node, [127, 0, 0, 4]);
    assert!(over.reply().starts_with("421 4.3.2"), "over the cap in all");
    // One of the first address's goes: its place is taken again (once the
    // node has seen it go — waited for, bounded).
    assert!(held.remove(0).send(b"QUIT\r\n").starts_with("221 "));
    drop(third);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = Raw::open(&node, [127, 0, 0, 1]);
        if again.reply().starts_with("220 ") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot never came back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One mail commits at most `email.max_fanout_bytes` to inboxes (its size
/// times its recipients): past it a declared size gets `452` for the next
/// recipient (the client sends to the rest in another transaction), an
/// undeclared one `552` after DATA, and nothing is taken.
#[test]
fn one_mail_commits_only_so_much_to_inboxes() {
    let sink = Sink::start(&[]);
    let relay = format!("127.0.0.1:{}", sink.port);
    let node = TestNode::start_env(&[
        ("SWITCHBOARD_EMAIL__ENABLED", "true"),
        ("SWITCHBOARD_EMAIL__LISTEN", "127.0.0.1:0"),
        ("SWITCHBOARD_EMAIL__RELAY", &relay),
        ("SWITCHBOARD_EMAIL__LOCAL_DOMAINS", r#"["localhost"]"#),
        ("SWITCHBOARD_EMAIL__MAX_MESSAGE_BYTES", "100000"),
        ("SWITCHBOARD_EMAIL__MAX_FANOUT_BYTES", "250000"),
    ]);
    let users: Vec<_> = (0..4)
        .map(|i| {
            let id = format!("u{i}");
            node.admin.add_user(&id, &[("im", &id)])
        })
        .collect();
    let body = format!(
        "Subject: big\r\n\r\n{}.\r\n",
        format!("{}\r\n", "x".repeat(88)).repeat(1000)
    );

    // Declared: two of 100 000 bytes fit 250 000, the third does not.
    let mut s = Raw::connect(&node);
    s.send(b"EHLO me\r\n");
    assert!(s
        .send(b"MAIL FROM:<ext@example.net> SIZE=100000\r\n")
        .starts_with("250"));
    for i in 0..2 {
        let r = s.send(format!("RCPT TO:<u{i}@localhost>\r\n").as_bytes());
        assert!(r.starts_with("250"), "{r}");
    }
    let r = s.send(b"RCPT TO:<u2@localhost>\r\n");
    assert!(r.starts_with("452 4.5.3"), "{r}");
    assert!(s.send(b"DATA\r\n").starts_with("354"));
    let r = s.send(body.as_bytes());
    assert!(r.starts_with("250 2.0.0"), "{r}");
    for (i, u) in users.iter().enumerate() {
        assert_eq!(u.inbox().len(), usize::from(i < 2), "u{i}");
    }

    // Undeclared: four of ~90 000 bytes are refused whole after DATA.
    assert!(s
        .send(b"MAIL FROM:<ext@example.net>\r\n")
        .starts_with("250"));
    for i in 0..4 {
        let r = s.send(format!("RCPT TO:<u{i}@localhost>\r\n").as_bytes());
        assert!(r.starts_with("250"), "{r}");
    }
    assert!(s.send(b"DATA\r\n").starts_with("354"));
    let r = s.send(body.as_bytes());
    assert!(r.starts_with("552 5.3.4") && r.contains("at most 2"), "{r}");
    assert!(s.send(b"QUIT\r\n").starts_with("221"));
    for (i, u) in users.iter().enumerate() {
        assert_eq!(u.inbox().len(), usize::from(i < 2), "u{i}: nothing more");
    }
}
