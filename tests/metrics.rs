//! `/metrics`: Prometheus text whose counters move when messages flow.
mod common;

use common::{TestNode, Ws};

/// The value of the sample `name` (with its labels, exactly as rendered),
/// or 0 when absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == name).then(|| v.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

fn scrape(node: &TestNode) -> String {
    let resp = ureq::get(format!("{}/metrics", node.url))
        .call()
        .expect("GET /metrics");
    assert_eq!(resp.status(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("text/plain"), "{ct}");
    resp.into_body().read_to_string().expect("text")
}

#[test]
fn metrics_appear_and_move_when_messages_flow() {
    let node = TestNode::start();
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);
    let before = scrape(&node);
    for i in 0..3 {
        let txn = alice.send("bob", &format!("m{i}"));
        alice.expect_status(&txn, "delivered");
    }
    let (code, _) = alice.post(
        "/v1/messages",
        &serde_json::json!({"to": "nobody", "body": "x"}),
    );
    assert_eq!(code, 422);
    let _ws = Ws::connect(&node.url, Some(&bob.token));
    let moved: Vec<(&str, f64)> = vec![
        (r#"switchboard_messages_received_total{medium="im"}"#, 3.0),
        (r#"switchboard_messages_released_total{medium="im"}"#, 3.0),
        (r#"switchboard_messages_delivered_total{medium="im"}"#, 3.0),
        (
            r#"switchboard_messages_rejected_total{reason="unknown_recipient"}"#,
            1.0,
        ),
        (
            r#"switchboard_delivery_latency_seconds_count{medium="im"}"#,
            3.0,
        ),
    ];
    // Waited for, not slept on: the scrape that shows the session and
    // every move (this binary's one test owns the process's gauges).
    let after = common::eventually("the metrics to show the traffic", || {
        let after = scrape(&node);
        let delta = |name: &str| sample(&after, name) - sample(&before, name);
        let all = moved
            .iter()
            .all(|(name, at_least)| delta(name) >= *at_least);
        // Idle: every shard's queue drained (the session's presence frames),
        // and its gauges sampled (they are set periodically).
        let idle = (0..2).all(|shard| {
            let depth = format!("switchboard_broker_queue_depth{{shard=\"{shard}\"}}");
            let open = format!("switchboard_broker_open_transactions{{shard=\"{shard}\"}}");
            after.contains(&depth) && sample(&after, &depth) == 0.0 && after.contains(&open)
        });
        (all && idle && sample(&after, "switchboard_ws_sessions") >= 1.0).then_some(after)
    });
    assert_eq!(
        sample(&after, r#"switchboard_gateway_up{member="gw-im-1"}"#),
        1.0,
        "{after}"
    );
    assert!(
        after.contains("switchboard_journal_sync_seconds_bucket"),
        "{after}"
    );
    assert!(
        after.contains("# TYPE switchboard_messages_delivered_total counter"),
        "{after}"
    );
    // Every shard's queue depth and open transactions; idle, so empty
    // queues (a frame counted in but never out would never get here).
    for shard in 0..2 {
        let depth = format!("switchboard_broker_queue_depth{{shard=\"{shard}\"}}");
        assert!(after.contains(&depth), "{depth} missing: {after}");
        assert_eq!(sample(&after, &depth), 0.0, "{after}");
        assert!(
            after.contains(&format!(
                "switchboard_broker_open_transactions{{shard=\"{shard}\"}}"
            )),
            "{after}"
        );
    }
}
