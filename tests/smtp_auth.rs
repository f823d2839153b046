//! SMTP submission by users: AUTH PLAIN/LOGIN inside STARTTLS with the
//! user's API token as the password, mail that is a user's only after a
//! login and only from their own addresses; RFC 3464 DSNs only to senders
//! whose return path is verified. The client is swaks (a real SMTP client);
//! the relay a real aiosmtpd server.

mod common;

use common::{auth_args, node_with_smtp_tls as node, swaks, Api, Cert, Raw, Sink, TestNode};

/// swaks over STARTTLS, logged in as `user` with `token` by `mech`.
fn submit(
    node: &TestNode,
    mech: &str,
    user: &str,
    token: &str,
    from: &str,
    to: &str,
) -> (bool, String) {
    let body = format!("{mech} from {from}");
    let mut args = auth_args(mech, user, token).to_vec();
    args.extend(["--from", from, "--to", to, "--body", &body]);
    swaks(node, &args)
}

/// The transaction in a `250 … queued as TXN` reply.
fn queued(out: &str) -> String {
    out.lines()
        .find_map(|l| l.split("queued as ").nth(1))
        .unwrap_or_else(|| panic!("a txn in the 250 reply: {out}"))
        .trim()
        .to_string()
}

fn status_of(admin: &Api, txn: &str) -> serde_json::Value {
    admin.get(&format!("/v1/messages/{txn}")).1
}

#[test]
fn a_login_makes_mail_a_users_and_only_from_their_own_addresses() {
    let cert = Cert::new();
    let sink = Sink::start(&[]);
    let node = node(&sink, &cert, &[]);
    let alice = node
        .admin
        .add_user("alice", &[("im", "alice"), ("email", "alice@example.org")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);

    // PLAIN, as the user id; LOGIN, as the local address; from each of
    // alice's own addresses (local, and her email mechanism).
    let (ok, out) = submit(
        &node,
        "PLAIN",
        "alice",
        &alice.token,
        "alice@localhost",
        "bob@localhost",
    );
    assert!(ok, "{out}");
    assert!(out.contains("235 2.7.0"), "{out}");
    let (ok, out2) = submit(
        &node,
        "LOGIN",
        "alice@sb.example",
        &alice.token,
        "Alice@Example.org",
        "bob@sb.example",
    );
    assert!(ok, "{out2}");
    for out in [&out, &out2] {
        let st = status_of(&node.admin, &queued(out));
        assert_eq!(
            (st["status"].as_str(), st["from"].as_str()),
            (Some("delivered"), Some("alice")),
            "{st}"
        );
    }
    let inbox = bob.inbox();
    assert_eq!(inbox.len(), 2);
    assert_eq!(
        (inbox[0]["from"].as_str(), inbox[0]["body"].as_str()),
        (Some("alice"), Some("PLAIN from alice@localhost"))
    );

    // Refused, and nothing sent: another user's token, a wrong token, a
    // logged-in user sending as someone else.
    let (ok, out) = submit(
        &node,
        "PLAIN",
        "alice",
        &bob.token,
        "alice@localhost",
        "bob@localhost",
    );
    assert!(!ok && out.contains("535 5.7.8"), "{out}");
    let (ok, out) = submit(
        &node,
        "LOGIN",
        "alice",
        "sb_wrong",
        "alice@localhost",
        "bob@localhost",
    );
    assert!(!ok && out.contains("535 5.7.8"), "{out}");
    let (ok, out) = submit(
        &node,
        "PLAIN",
        "alice",
        &alice.token,
        "bob@localhost",
        "bob@localhost",
    );
    assert!(!ok && out.contains("553 5.7.1"), "{out}");
    let (ok, out) = submit(
        &node,
        "PLAIN",
        "alice",
        &alice.token,
        "carol@example.org",
        "bob@localhost",
    );
    assert!(!ok && out.contains("553 5.7.1"), "{out}");
    assert_eq!(bob.inbox().len(), 2, "nothing more arrived");

    // In the clear: no AUTH offered or taken, and no local sender without
    // a login.
    let mut s = Raw::connect(&node);
    let ehlo = s.send(b"EHLO me\r\n");
    assert!(
        ehlo.contains("250-STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    assert!(s
        .send(b"AUTH PLAIN AGFsaWNlAHg=\r\n")
        .starts_with("538 5.7.11"));
    assert!(s
        .send(b"MAIL FROM:<alice@localhost>\r\n")
        .starts_with("530 5.7.0"));
    assert!(s
        .send(b"MAIL FROM:<ext@example.net>\r\n")
        .starts_with("250"));
    assert!(s.send(b"QUIT\r\n").starts_with("221"));
}

#[test]
fn dsns_are_reports_and_go_only_to_verified_senders() {
    let cert = Cert::new();
    let sink = Sink::start(&["eve@example.org=550 5.1.1 No such mailbox"]);
    let node = node(
        &sink,
        &cert,
        &[(
            "SWITCHBOARD_EMAIL__DSN_VERIFIED_DOMAINS",
            r#"["partner.example"]"#,
        )],
    );
    let alice = node
        .admin
        .add_user("alice", &[("im", "alice"), ("email", "alice@example.org")]);
    node.admin.add_user("eve", &[("email", "eve@example.org")]);

    // A forged sender without a login: eve's mail bounces, and no DSN goes
    // to the forged address (no backscatter).
    let (ok, out) = swaks(
        &node,
        &[
            "--from",
            "victim@example.net",
            "--to",
            "eve@localhost",
            "--body",
            "x",
        ],
    );
    assert!(ok, "{out}");
    let forged = queued(&out);
    common::eventually("the forged mail's outcome", || {
        (status_of(&node.admin, &forged)["status"] == "undeliverable").then_some(())
    });

    // Alice, logged in, gets an RFC 3464 report at her own address; so does
    // a sender in a verified domain without a login. DSNs go out in the
    // order of their outcomes, so had the forged one been answered it would
    // be first.
    let (ok, out) = submit(
        &node,
        "PLAIN",
        "alice",
        &alice.token,
        "alice@example.org",
        "eve@localhost",
    );
    assert!(ok, "{out}");
    let txn = queued(&out);
    let dsn = sink.wait_for(1).remove(0);
    assert!(dsn.contains("To: <alice@example.org>"), "{dsn}");
    assert!(
        dsn.contains("multipart/report; report-type=delivery-status"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Content-Type: message/delivery-status"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Final-Recipient: rfc822; eve@localhost"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Action: failed") && dsn.contains("Status: 5.0.0"),
        "{dsn}"
    );
    assert!(
        dsn.contains(&format!("Original-Envelope-Id: {txn}")),
        "{dsn}"
    );
    let envelope_from = std::fs::read_to_string(sink.dir.path().join("1.from")).unwrap();
    assert_eq!(envelope_from, "<>", "a DSN has a null sender");

    let (ok, out) = swaks(
        &node,
        &[
            "--from",
            "ops@partner.example",
            "--to",
            "eve@localhost",
            "--body",
            "y",
        ],
    );
    assert!(ok, "{out}");
    let all = sink.wait_for(2);
    assert!(all[1].contains("To: <ops@partner.example>"), "{}", all[1]);
    assert!(
        all.iter().all(|m| !m.contains("victim@example.net")),
        "the forged sender got nothing"
    );
}
