//! The compliance archive end to end (issue 18, first steps): a domain
//! that archives its users' deliveries; the archive member gets a copy of
//! each (its own grant), writes one record per concluded delivery and an
//! event record for the read receipt; `switchboard archive verify` holds,
//! and names the record once a byte of it is flipped.

mod common;

use std::path::Path;

use serde_json::json;
use switchboard_core::archive::{files, log, ArchiveRecord};

fn records(data: &Path) -> Vec<ArchiveRecord> {
    let (stored, _) = log::read_records(&data.join("archive").join(files::RECORDS)).unwrap();
    stored
        .iter()
        .map(|b| ArchiveRecord::decode(b).unwrap())
        .collect()
}

fn verify(data: &Path) -> (bool, String, String) {
    let out = std::process::Command::new(common::bin())
        .args(["archive", "verify"])
        .env("SWITCHBOARD_DATA__DIR", data)
        .output()
        .expect("run the CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_archiving_domains_deliveries_are_recorded_and_verified() {
    let env = [
        (
            "SWITCHBOARD_ARCHIVE__ENABLED".to_string(),
            "true".to_string(),
        ),
        (
            "SWITCHBOARD_ARCHIVE__CHECKPOINT_EVERY".to_string(),
            "2".to_string(),
        ),
    ];
    let node = common::TestNode::start_full(
        tempfile::tempdir().unwrap(),
        &env,
        Box::new(|_| Box::pin(async {})),
    );
    let data = node.dir.path().to_path_buf();
    let a = &node.admin;
    assert_eq!(
        a.put(
            "/v1/admin/domains/corp.example",
            &json!({"managed": true, "archive": true})
        )
        .0,
        201
    );
    let user = |id: &str, domain: Option<&str>| {
        let mut p = json!({"id": id, "mechanisms": [{"medium": "im", "address": id}]});
        if let Some(d) = domain {
            p["domain"] = json!(d);
        }
        let (status, v) = a.put(&format!("/v1/admin/users/{id}"), &p);
        assert_eq!(status, 201, "{v}");
        a.with_token(v["token"].as_str().unwrap())
    };
    let alice = user("alice", Some("corp.example"));
    let bob = user("bob", Some("corp.example"));
    let carol = user("carol", None);

    let txn = alice.send("bob", "for the record");
    let st = alice.expect_status(&txn, "delivered");
    let kinds: Vec<&str> = (st["events"].as_array().unwrap().iter())
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"archive:corp.example"), "{kinds:?}");
    assert_eq!(st["attempts"][0]["gateway"], "gw-im-1");
    let (code, _) = bob.post(&format!("/v1/messages/{txn}/read"), &json!({}));
    assert_eq!(code, 204);
    alice.expect_status(&txn, "read");
    // Not archived: neither side's domain archives.
    let other = carol.send("alice", "not for the record? alice's domain archives");
    carol.expect_status(&other, "delivered");
    let unarchived = carol.send("carol", "to myself");
    carol.expect_status(&unarchived, "delivered");

    let recs = common::eventually("three records", || {
        let r = records(&data);
        (r.len() == 3).then_some(r)
    });
    let first = &recs[0];
    assert_eq!(
        (first.seq, first.kind.as_str(), first.txn.as_str()),
        (1, "delivery", txn.as_str())
    );
    assert_eq!((first.from.as_str(), first.to.as_str()), ("alice", "bob"));
    assert_eq!(
        (first.medium.as_str(), first.outcome.as_str()),
        ("im", "delivered")
    );
    assert_eq!(first.archive, "corp.example");
    assert_eq!(first.hops, ["gw-im-1"]);
    let content =
        switchboard_core::archive::read_content(&data.join("archive"), &first.content_sha256)
            .unwrap();
    assert_eq!(content, b"for the record");
    // The read receipt is a record of its own; the original is unchanged.
    let read = recs
        .iter()
        .find(|r| r.txn == txn && r.kind == "event")
        .unwrap();
    assert_eq!(read.outcome, "read");
    // carol to alice: alice's domain archives it.
    assert!(recs.iter().any(|r| r.txn == other), "{recs:?}");
    assert!(!recs.iter().any(|r| r.txn == unarchived));

    let (ok, out, err) = verify(&data);
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("archive: ok — 3 records"), "{out}");

    // One byte of the first record flipped: named.
    let path = data.join("archive").join(files::RECORDS);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(5).position(|w| w == b"alice").unwrap();
    bytes[at] = b'm';
    std::fs::write(&path, bytes).unwrap();
    let (ok, _, err) = verify(&data);
    assert!(!ok);
    assert!(err.contains("record 1 was changed"), "{err}");
}

/// `kill -9` while messages are archived: after the restart every message
/// is delivered, every one (before the kill and after) is recorded once
/// with its content, the chain has no gap, and it verifies.
#[test]
fn archiving_survives_kill_9_with_no_gap_in_the_chain() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", common::free_port());
    let env = [
        ("SWITCHBOARD_HTTP__LISTEN", http.as_str()),
        ("SWITCHBOARD_ARCHIVE__ENABLED", "true"),
        ("SWITCHBOARD_ARCHIVE__CHECKPOINT_EVERY", "25"),
    ];
    let node = common::ProcNode::spawn_with(dir.path(), &env);
    let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let admin = common::Api::new(&node.url, token.trim());
    assert_eq!(
        admin
            .put(
                "/v1/admin/domains/corp.example",
                &json!({"managed": true, "archive": true})
            )
            .0,
        201
    );
    let mut tokens = Vec::new();
    for id in ["alice", "bob"] {
        let (status, v) = admin.put(
            &format!("/v1/admin/users/{id}"),
            &json!({"id": id, "domain": "corp.example", "mechanisms": [{"medium": "im", "address": id}]}),
        );
        assert_eq!(status, 201, "{v}");
        tokens.push(v["token"].as_str().unwrap().to_string());
    }
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let sender = {
        let (url, token, accepted) = (node.url.clone(), tokens[0].clone(), accepted.clone());
        std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            for i in 0..400 {
                // Until the node is gone: an answer it never gave is not an
                // acceptance.
                let Ok(r) = agent
                    .post(format!("{url}/v1/messages"))
                    .header("Authorization", format!("Bearer {token}"))
                    .send_json(json!({"to": "bob", "body": format!("m{i}")}))
                else {
                    return;
                };
                if r.status() != 202 {
                    return;
                }
                let Ok(v) = r.into_body().read_json::<serde_json::Value>() else {
                    return;
                };
                accepted
                    .lock()
                    .unwrap()
                    .push(v["txn"].as_str().unwrap().to_string());
            }
        })
    };
    common::eventually("60 accepted", || {
        (accepted.lock().unwrap().len() >= 60).then_some(())
    });
    node.kill9();
    sender.join().unwrap();
    let node = common::ProcNode::spawn_with(dir.path(), &env);
    let alice = common::Api::new(&node.url, &tokens[0]);
    let accepted = accepted.lock().unwrap().clone();
    for txn in &accepted {
        alice.expect_status(txn, "delivered");
    }
    let data = dir.path();
    // After the restart: every message is recorded.
    let alice = common::Api::new(&node.url, &tokens[0]);
    let after: Vec<String> = (0..20)
        .map(|i| alice.send("bob", &format!("after {i}")))
        .collect();
    for txn in &after {
        alice.expect_status(txn, "delivered");
    }
    // Every message accepted before the kill is recorded too, with its
    // content: an originator keeps a message until the archive has its
    // copy, and sends it again after a restart.
    let recs = common::eventually("every message recorded", || {
        let r = records(data);
        let recorded = (accepted.iter().chain(&after))
            .all(|t| r.iter().any(|x| &x.txn == t && x.kind == "delivery"));
        recorded.then_some(r)
    });
    for t in accepted.iter().chain(&after) {
        let n = recs
            .iter()
            .filter(|r| &r.txn == t && r.kind == "delivery")
            .count();
        assert_eq!(n, 1, "{t} recorded {n} times");
        let r = recs.iter().find(|r| &r.txn == t).unwrap();
        assert!(
            !r.trail.iter().any(|(_, e)| e == "archive:no_copy"),
            "{t} recorded without its content: {:?}",
            r.trail
        );
        assert!(!r.content_sha256.is_empty(), "{t}");
    }
    let seqs: Vec<u64> = recs.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=recs.len() as u64).collect::<Vec<_>>(), "no gap");
    assert!(node.terminate().success());
    let (ok, out, err) = verify(data);
    assert!(ok, "{out}{err}");
    eprintln!(
        "{} accepted before the kill, all recorded with their content; {out}",
        accepted.len()
    );
}

/// Search by participant, date and phrase (and boolean) finds exactly the
/// right records, over HTTP and from the command line (which reads the
/// files: it works whatever the gateways are doing).
#[test]
fn search_finds_exactly_the_right_records() {
    // The SMS gateway is down all along (its SMSC does not answer): the
    // archive does not need a medium's gateway to be searched or read.
    let smsc = format!("127.0.0.1:{}", common::free_port());
    let env = [
        (
            "SWITCHBOARD_ARCHIVE__ENABLED".to_string(),
            "true".to_string(),
        ),
        ("SWITCHBOARD_SMS__ENABLED".to_string(), "true".to_string()),
        ("SWITCHBOARD_SMS__SMSC".to_string(), smsc),
    ];
    let node = common::TestNode::start_full(
        tempfile::tempdir().unwrap(),
        &env,
        Box::new(|_| Box::pin(async {})),
    );
    let data = node.dir.path().to_path_buf();
    let a = &node.admin;
    let sms_down = || {
        let (_, v) = a.get("/v1/admin/members");
        let members = v["members"].as_array().cloned().unwrap_or_default();
        members
            .iter()
            .any(|m| m["medium"] == "sms" && m["connected"] == true && m["healthy"] == false)
    };
    common::eventually("the SMS gateway up and its medium down", || {
        sms_down().then_some(())
    });
    let (status, v) = a.put(
        "/v1/admin/domains/corp.example",
        &json!({"managed": true, "archive": true}),
    );
    assert_eq!(status, 201, "{v}");
    let user = |id: &str| {
        let p = json!({"id": id, "domain": "corp.example",
            "mechanisms": [{"medium": "im", "address": id}]});
        let (status, v) = a.put(&format!("/v1/admin/users/{id}"), &p);
        assert_eq!(status, 201, "{v}");
        a.with_token(v["token"].as_str().unwrap())
    };
    let (alice, bob, _dave) = (user("alice"), user("bob"), user("dave"));
    let mut txns = Vec::new();
    for (from, to, body) in [
        (&alice, "bob", "the quarterly budget draft"),
        (&alice, "bob", "the budget is final now"),
        (&bob, "alice", "final budget, thanks"),
        (&alice, "dave", "budget final for dave"),
    ] {
        let txn = from.send(to, body);
        from.expect_status(&txn, "delivered");
        txns.push(txn);
        // The next is delivered in a later millisecond (the date range
        // below falls between two of them).
        let now = || {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            t.unwrap().as_millis()
        };
        let seen = now();
        common::eventually("the clock moves on", || (now() > seen).then_some(()));
    }
    let recs = common::eventually("four records", || {
        let r = records(&data);
        (r.len() == 4).then_some(r)
    });
    let at = |i: usize| recs.iter().find(|r| r.txn == txns[i]).unwrap().at_ms;
    assert!(at(1) < at(2), "delivered one after the other: {recs:?}");
    let found = |query: &str| -> Vec<String> {
        let (status, v) = a.get(&format!("/v1/admin/archive/search?{query}"));
        assert_eq!(status, 200, "{query}: {v}");
        v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["txn"].as_str().unwrap().to_string())
            .collect()
    };
    let want = |ix: &[usize]| -> Vec<String> { ix.iter().map(|&i| txns[i].clone()).collect() };
    // alice and bob's conversation with "budget" and "final": 2 and 3.
    assert_eq!(
        found("participant=alice,bob&q=budget%20final"),
        want(&[1, 2])
    );
    // From 3's delivery on: 3 (and dave's, but he is not a party).
    let from = at(2);
    assert_eq!(
        found(&format!(
            "participant=alice,bob&q=budget%20final&from={from}"
        )),
        want(&[2])
    );
    assert_eq!(
        found(&format!("participant=alice,bob&q=budget&to={from}")),
        want(&[0, 1])
    );
    // A phrase, alternatives, exclusion.
    assert_eq!(found("q=%22budget%20final%22"), want(&[3]));
    assert_eq!(found("q=draft%20OR%20thanks"), want(&[0, 2]));
    assert_eq!(found("q=budget%20-final"), want(&[0]));
    assert_eq!(found("participant=dave"), want(&[3]));
    // Pages: one at a time.
    let (_, page) = a.get("/v1/admin/archive/search?q=budget&limit=3");
    assert_eq!(page["records"].as_array().unwrap().len(), 3);
    let next = page["next"].as_u64().unwrap();
    assert_eq!(
        found(&format!("q=budget&after={next}")),
        want(&[3]),
        "the rest"
    );
    let (status, v) = a.get("/v1/admin/archive/search?q=%22open");
    assert_eq!(status, 400, "{v}");
    let (status, v) = a.post("/v1/admin/archive/verify", &json!({}));
    assert_eq!((status, v["ok"].as_bool()), (200, Some(true)), "{v}");

    // The command line reads the files.
    let out = std::process::Command::new(common::bin())
        .args([
            "archive",
            "search",
            "--participant",
            "alice",
            "--participant",
            "bob",
            "--text",
            "budget final",
            "--json",
        ])
        .env("SWITCHBOARD_DATA__DIR", &data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got: Vec<&str> = (v["records"].as_array().unwrap().iter())
        .map(|r| r["txn"].as_str().unwrap())
        .collect();
    assert_eq!(got, [txns[1].as_str(), txns[2].as_str()]);
    assert_eq!(v["records"][0]["body"], "the budget is final now");
    assert!(sms_down(), "all of it with the SMS gateway down");

    // Export (the ordered stop signed a checkpoint over everything): EML,
    // mbox and JSONL beside the raw records, and a set that verifies on its
    // own — until a byte of it changes.
    let dir = node.stop();
    let data = dir.path();
    for format in ["eml", "mbox", "jsonl"] {
        let out = data.join(format!("export-{format}"));
        let out_s = out.to_str().unwrap();
        let (ok, stdout, err) = cli_in(
            data,
            &[
                "archive",
                "export",
                "--format",
                format,
                "--out",
                out_s,
                "--participant",
                "bob",
            ],
        );
        assert!(ok, "{err}");
        assert_eq!(stdout.trim(), format!("3 records exported to {out_s}"));
        let (ok, stdout, err) = cli_in(data, &["archive", "verify", "--export", out_s]);
        assert!(ok, "{err}");
        assert_eq!(
            stdout.trim(),
            "export: ok — 3 records, under the manifest's checkpoints"
        );
    }
    let eml = std::fs::read_to_string(data.join("export-eml/eml/1.eml")).unwrap();
    assert!(eml.starts_with("From: alice\r\nTo: bob\r\n"), "{eml}");
    assert!(
        eml.contains("X-Switchboard-Txn: ") && eml.ends_with("the quarterly budget draft\r\n"),
        "{eml}"
    );
    let mbox = std::fs::read_to_string(data.join("export-mbox/archive.mbox")).unwrap();
    assert_eq!(
        mbox.matches("\nFrom switchboard ").count()
            + usize::from(mbox.starts_with("From switchboard ")),
        3
    );
    let jsonl = std::fs::read_to_string(data.join("export-jsonl/records.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), 3);
    let first: serde_json::Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
    assert_eq!(first["body"], "the quarterly budget draft");
    // One byte of an exported record changed.
    let rec = data.join("export-jsonl/records/2.json");
    let text = std::fs::read_to_string(&rec)
        .unwrap()
        .replace("alice", "alicf");
    std::fs::write(&rec, text).unwrap();
    let out_s = data.join("export-jsonl");
    let (ok, _, err) = cli_in(
        data,
        &["archive", "verify", "--export", out_s.to_str().unwrap()],
    );
    assert!(!ok && err.contains("record 2 was changed"), "{err}");
}

fn cli_in(data: &Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(common::bin())
        .args(args)
        .env("SWITCHBOARD_DATA__DIR", data)
        .output()
        .expect("run the CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Retention and a legal hold on a manual clock (`purge --now`): what
/// retention lets go is purged unless held, the chain still verifies —
/// through the running node (its API, and the CLI through it), then with
/// the node stopped.
#[test]
fn retention_purges_on_a_manual_clock_and_a_hold_blocks_it() {
    let env = [(
        "SWITCHBOARD_ARCHIVE__ENABLED".to_string(),
        "true".to_string(),
    )];
    let node = common::TestNode::start_full(
        tempfile::tempdir().unwrap(),
        &env,
        Box::new(|_| Box::pin(async {})),
    );
    let a = &node.admin;
    let (status, v) = a.put(
        "/v1/admin/domains/corp.example",
        &json!({"managed": true, "archive": true}),
    );
    assert_eq!(status, 201, "{v}");
    let user = |id: &str| {
        let p = json!({"id": id, "domain": "corp.example",
            "mechanisms": [{"medium": "im", "address": id}]});
        let (status, v) = a.put(&format!("/v1/admin/users/{id}"), &p);
        assert_eq!(status, 201, "{v}");
        a.with_token(v["token"].as_str().unwrap())
    };
    let (alice, _bob, _dave) = (user("alice"), user("bob"), user("dave"));
    let to_bob = alice.send("bob", "keep this");
    alice.expect_status(&to_bob, "delivered");
    let to_dave = alice.send("dave", "let this go");
    alice.expect_status(&to_dave, "delivered");
    let data = node.dir.path().to_path_buf();
    common::eventually("two records", || (records(&data).len() == 2).then_some(()));
    let run = |data: &Path, args: &[&str]| {
        let (ok, out, err) = cli_in(data, args);
        assert!(ok, "{args:?}: {err}");
        out
    };
    run(&data, &["archive", "retention", "set", "default", "30"]);
    assert_eq!(
        run(
            &data,
            &[
                "archive",
                "hold",
                "add",
                "--participant",
                "bob",
                "--reason",
                "matter 42"
            ]
        )
        .trim(),
        "hold 1 on bob"
    );
    assert!(run(&data, &["archive", "hold", "list"]).contains("matter 42"));
    let later = (std::time::SystemTime::now() + std::time::Duration::from_secs(31 * 86_400))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    // While the node runs, the CLI's purge goes through its API (the
    // archive member holds the files).
    let url = ["--url", node.url.as_str()];
    let soon = run(
        &data,
        &[&["archive", "purge", "--dry-run"][..], &url].concat(),
    );
    assert!(soon.ends_with("0 records would be purged\n"), "{soon}");
    let dry = run(
        &data,
        &[
            &["archive", "purge", "--dry-run", "--now", &later][..],
            &url,
        ]
        .concat(),
    );
    assert!(dry.contains(&to_dave) && !dry.contains(&to_bob), "{dry}");
    assert!(dry.ends_with("1 records would be purged\n"), "{dry}");
    assert_eq!(records(&data).len(), 2, "a dry run changes nothing");
    let (status, v) = a.post("/v1/admin/archive/purge", &json!({"now": "yesterday"}));
    assert_eq!(status, 400, "{v}");
    let (status, v) = a.post("/v1/admin/archive/purge", &json!({"now": later}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["records"][0]["txn"], to_dave.as_str(), "{v}");
    assert_eq!(v["records"].as_array().unwrap().len(), 1, "{v}");
    let left = records(&data);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].txn, to_bob, "held");
    let (status, v) = a.post("/v1/admin/archive/verify", &json!({}));
    assert_eq!((status, v["ok"].as_bool()), (200, Some(true)), "{v}");
    // Archiving goes on after a purge through the node.
    let again = alice.send("dave", "after the purge");
    alice.expect_status(&again, "delivered");
    common::eventually("recorded after the purge", || {
        records(&data).iter().any(|r| r.txn == again).then_some(())
    });
    let dir = node.stop();
    let data = dir.path();
    let out = run(data, &["archive", "verify"]);
    assert!(
        out.contains("2 records, 1 purged under signed tombstones"),
        "{out}"
    );
    // The node stopped, the CLI purges itself; the hold lifted, bob's goes
    // too (and the one after the purge, by the same clock).
    run(data, &["archive", "hold", "remove", "1"]);
    let out = run(data, &["archive", "purge", "--now", &later]);
    assert!(out.starts_with("2 records purged"), "{out}");
    assert!(records(data).is_empty());
    assert!(run(data, &["archive", "verify"]).contains("0 records, 3 purged"));
}
