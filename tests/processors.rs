//! Message processors as MIAP hops, end to end: the text-to-SMS processor
//! segments on the way to an SMS gateway (and its attestation is checked by
//! the broker), and a content filter that blocks reports it itself.

mod common;

use common::{TestNode, TestSms};
use switchboard_actors::converter::{Converted, Converter, Input, ProcessorSpec};
use switchboard_core::protocol::MediumKind;

#[test]
fn text_for_sms_is_segmented_on_the_way() {
    let sms = TestSms::default();
    let node = common::node_with_sms(sms.clone());
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    node.admin.add_user("dora", &[("sms", "+4915100")]);
    let long = "x".repeat(200);
    let txn = alice.send("dora", &long);
    alice.expect_status(&txn, "delivered");
    let unicode = "ж".repeat(71);
    let txn = alice.send("dora", &unicode);
    alice.expect_status(&txn, "delivered");
    let segments = sms.segments.lock().unwrap().clone();
    let sizes: Vec<Vec<usize>> = segments
        .iter()
        .map(|s| s.iter().map(|x| x.chars().count()).collect())
        .collect();
    assert_eq!(
        sizes,
        vec![vec![153, 47], vec![67, 4]],
        "GSM-7 then UCS-2 concatenated segments"
    );
    assert_eq!(sms.sent.lock().unwrap()[0].1, long);
}

/// A content filter on the way to SMS: blocks a word, passes the rest.
struct Filter;

impl Converter for Filter {
    fn spec(&self) -> ProcessorSpec {
        ProcessorSpec {
            target: Some(MediumKind::Sms),
            accepts: vec!["text/".into()],
            output: "text/plain; charset=utf-8".into(),
        }
    }
    fn name(&self) -> &str {
        "filter"
    }
    fn convert(&self, input: &Input<'_>) -> Result<Converted, String> {
        if String::from_utf8_lossy(input.content).contains("forbidden") {
            return Ok(Converted::Blocked {
                rule: "no-forbidden-words".into(),
                marks: Vec::new(),
            });
        }
        Ok(Converted::Content {
            content: input.content.to_vec(),
            content_type: input.content_type.into(),
        })
    }
}

#[test]
fn a_blocking_processor_reports_blocked_and_nothing_arrives() {
    let sms = TestSms::default();
    let sink = sms.clone();
    // "proc-a-filter" sorts before "proc-sms-1": the broker picks it.
    let node = TestNode::start_with(
        tempfile::tempdir().unwrap(),
        Box::new(move |node| {
            Box::pin(async move {
                node.core
                    .add_gateway("gw-sms-test", sink, None)
                    .await
                    .unwrap();
                node.core
                    .add_processor("proc-a-filter", Filter)
                    .await
                    .unwrap();
            })
        }),
    );
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    node.admin.add_user("dora", &[("sms", "+4915100")]);

    let txn = alice.send("dora", "this is forbidden");
    let st = alice.expect_status(&txn, "blocked");
    assert_eq!(st["attempts"][0]["outcome"], "blocked");
    assert_eq!(st["attempts"][0]["reason"], "no-forbidden-words");
    assert!(
        sms.sent.lock().unwrap().is_empty(),
        "blocked content never reaches the medium"
    );

    let txn = alice.send("dora", "this is fine");
    alice.expect_status(&txn, "delivered");
    assert_eq!(
        sms.sent.lock().unwrap()[0].1,
        "this is fine",
        "passed through the filter unchanged"
    );
}
