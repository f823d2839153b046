//! The fax stub end to end: a message to a fax-only user becomes a valid PDF
//! (checked by poppler's `pdftotext`) with a JSON sidecar; a spool file
//! becomes a message; a bad spool file is refused with a reason.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::TestNode;

fn fax_node() -> TestNode {
    TestNode::start_env(&[("SWITCHBOARD_FAX__ENABLED", "true")])
}

#[test]
fn a_fax_to_a_fax_only_user_is_a_valid_pdf_with_a_sidecar() {
    let node = fax_node();
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    node.admin.add_user("dora", &[("fax", "+4930123456")]);
    let (code, v) = alice.post(
        "/v1/messages",
        &serde_json::json!({"to": "dora", "body": "Dear Dora,\nthe contract follows.\n", "subject": "Contract"}),
    );
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["route"]["mechanism"], "fax");
    let txn = v["txn"].as_str().unwrap().to_string();
    let st = alice.expect_status(&txn, "delivered");
    assert_eq!(
        st["attempts"][0]["processors"],
        serde_json::json!(["proc-fax-1"]),
        "the text-to-fax processor made the page"
    );

    let outbox = node.dir.path().join("fax/outbox");
    let pdf = outbox.join(format!("{txn}.pdf"));
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(outbox.join(format!("{txn}.json"))).unwrap())
            .unwrap();
    assert_eq!(
        (
            sidecar["to"].as_str(),
            sidecar["from"].as_str(),
            sidecar["pages"].as_u64()
        ),
        (Some("+4930123456"), Some("alice"), Some(1))
    );
    let out = Command::new("pdftotext")
        .arg(&pdf)
        .arg("-")
        .output()
        .expect("pdftotext runs (scripts/test installs poppler-utils)");
    assert!(
        out.status.success(),
        "not a valid PDF: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "Fax to +4930123456 from alice - Contract",
        "Dear Dora,",
        "the contract follows.",
    ] {
        assert!(text.contains(want), "{want:?} missing from {text:?}");
    }
}

#[test]
fn spool_files_become_messages_and_bad_ones_are_refused() {
    let node = fax_node();
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    node.admin.add_user("dora", &[("fax", "+4930999")]);
    let inbox = node.dir.path().join("fax/inbox");
    std::fs::write(inbox.join("+4930999__page1.txt"), "To: bob\nhello by fax\n").unwrap();
    std::fs::write(inbox.join("+4930111__x.txt"), "no recipient line\n").unwrap();
    std::fs::write(inbox.join("+4930222__y.txt"), "To: nobody\nlost\n").unwrap();
    // A PDF fax (read by its text layer), and a file that only says it is one.
    let (pdf, _) = switchboard::content::pdf::pdf("To: bob", "the signed contract").unwrap();
    std::fs::write(inbox.join("+4930333__scan.pdf"), pdf).unwrap();
    std::fs::write(inbox.join("+4930444__junk.pdf"), b"%PDF-1.4 not really").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while bob.inbox().len() < 2
        || !inbox.join("rejected/+4930222__y.reason").exists()
        || !inbox.join("rejected/+4930444__junk.reason").exists()
    {
        assert!(Instant::now() < deadline, "the fax inbox was not processed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let all = bob.inbox();
    let pdf_fax = all
        .iter()
        .find(|m| m["from"] == "fax:+4930333")
        .expect("the PDF fax");
    assert_eq!(pdf_fax["body"], "the signed contract");
    assert!(inbox.join("done/+4930333__scan.pdf").exists());
    let why = std::fs::read_to_string(inbox.join("rejected/+4930444__junk.reason")).unwrap();
    assert!(why.contains("not a readable PDF"), "{why}");
    let m = all
        .iter()
        .find(|m| m["from"] == "dora")
        .expect("dora's fax");
    assert_eq!(
        (m["from"].as_str(), m["body"].as_str()),
        (Some("dora"), Some("hello by fax")),
        "the number maps to its user"
    );
    assert!(inbox.join("done/+4930999__page1.txt").exists());
    let why = std::fs::read_to_string(inbox.join("rejected/+4930111__x.reason")).unwrap();
    assert!(why.contains("To: ID"), "{why}");
    assert_eq!(
        std::fs::read_to_string(inbox.join("rejected/+4930222__y.reason")).unwrap(),
        "unknown_recipient"
    );
    assert_eq!(bob.inbox().len(), 2);
}
