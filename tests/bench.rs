//! The load generator works end to end against every target (small runs;
//! speed is reported, never asserted).
mod common;

use std::process::Command;

use serde_json::Value;

use common::{bin, TestNode};

fn bench(args: &[&str]) -> Value {
    let out = Command::new(bin())
        .arg("bench")
        .args(args)
        .args([
            "--messages",
            "300",
            "--inflight",
            "16",
            "--json",
            "--timeout-s",
            "60",
        ])
        .output()
        .expect("run switchboard bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"))
}

fn check(r: &Value, target: &str) {
    assert_eq!(r["target"], target);
    assert_eq!(r["messages"], 300);
    assert_eq!(r["delivered"], 300, "{r}");
    assert_eq!(r["size"], 256);
    assert!(r["msgs_per_s"].as_f64().unwrap() > 0.0, "{r}");
    let l = &r["latency_ms"];
    let (p50, p99, max) = (
        l["p50"].as_f64().unwrap(),
        l["p99"].as_f64().unwrap(),
        l["max"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{r}");
    assert!(r["peak_rss_bytes"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    // The node's journalled writes per message: the transaction record
    // twice, the inbox entry and its index (and the outbox when the
    // originating gateway shares the node's store); the usage is derived
    // from the concluding change, never journalled on its own.
    let st = &r["store_per_msg"];
    assert!(st["ops"].as_f64().unwrap() >= 4.0, "{r}");
    assert!(st["bytes"].as_f64().unwrap() > 256.0, "{r}");
    for tree in ["txn", "inbox"] {
        assert!(
            st["trees"][tree]["ops"].as_f64().unwrap() >= 1.0,
            "{tree}: {r}"
        );
    }
    assert!(st["trees"].get("accounting").is_none(), "{r}");
    for k in [
        "elapsed_s",
        "cpu_s_per_msg",
        "wire_bytes_per_msg",
        "inflight",
    ] {
        assert!(!r[k].is_null(), "{k} missing: {r}");
    }
}

/// Each of `keys` is a number in the report's `scale`.
fn numbers(r: &Value, keys: &[&str]) {
    for k in keys {
        assert!(r["scale"][k].as_f64().is_some(), "{k} missing: {r}");
    }
}

#[test]
fn bench_runs_in_process() {
    let r = bench(&["--target", "inproc"]);
    check(&r, "inproc");
    assert_eq!(r["wire_bytes_per_msg"], 0.0);
    // In process the IM gateway's outbox is in the same store: an entry
    // written, then removed once the outcome is known.
    assert_eq!(r["store_per_msg"]["trees"]["outbox"]["ops"], 2.0, "{r}");
    // Nine MIAP frames per message between the actors (Submit, Release,
    // Transmit, Report, Notify and the four acknowledgements), carried by
    // batching queues: never more mailbox posts than frames.
    let h = &r["handoffs_per_msg"];
    let (frames, posts) = (h["frames"].as_f64().unwrap(), h["posts"].as_f64().unwrap());
    assert!(frames >= 9.0, "{r}");
    assert!(0.0 < posts && posts <= frames, "{r}");
}

/// `--archive`: every message archived, and the report says how many
/// records the archive wrote.
#[test]
fn bench_archives_every_message_with_archive() {
    let r = bench(&["--target", "inproc", "--archive"]);
    check(&r, "inproc");
    assert_eq!(r["scale"]["archive_records"], 300, "{r}");
    // The archive's copy and its acknowledgement besides the nine.
    let frames = r["handoffs_per_msg"]["frames"].as_f64().unwrap();
    assert!(frames >= 10.0, "{r}");
}

#[test]
fn bench_runs_against_a_node_over_http_ws_and_miap_tcp() {
    let node = TestNode::start();
    let admin = node.admin.token.clone();
    let miap = node.miap.to_string();
    for target in ["http", "ws", "tcp"] {
        let r = bench(&[
            "--url",
            &node.url,
            "--admin-token",
            &admin,
            "--target",
            target,
            "--connect",
            &miap,
        ]);
        check(&r, target);
        assert!(r["wire_bytes_per_msg"].as_f64().unwrap() > 256.0, "{r}");
    }
}

#[test]
fn bench_measures_scale_with_users_and_a_paced_rate() {
    let r = bench(&["--target", "inproc", "--users", "2000", "--rate", "1500"]);
    check(&r, "inproc");
    assert_eq!(r["rate"], 1500.0);
    let s = &r["scale"];
    assert_eq!(s["users"], 2000, "{r}");
    numbers(
        &r,
        &[
            "provision_s",
            "users_per_s",
            "rss_bytes_per_user",
            "start_s",
            "data_dir_bytes",
        ],
    );
    assert!(s["data_dir_bytes"].as_u64().unwrap() > 2000 * 50, "{r}");
    // Paced at 1500/s, 300 messages take at least 0.2 s.
    assert!(r["elapsed_s"].as_f64().unwrap() >= 0.19, "{r}");
}

#[test]
fn bench_holds_idle_websocket_sessions_and_reports_their_memory() {
    let node = TestNode::start();
    let admin = node.admin.token.clone();
    let r = bench(&[
        "--url",
        &node.url,
        "--admin-token",
        &admin,
        "--target",
        "ws",
        "--sessions",
        "50",
    ]);
    check(&r, "ws");
    let s = &r["scale"];
    assert_eq!(s["sessions"], 50, "{r}");
    numbers(
        &r,
        &[
            "node_rss_bytes_per_user",
            "node_rss_bytes_per_idle_session",
            "sessions_connected_per_s",
        ],
    );
    // Held during the run, closed after it.
    common::wait_ws_sessions(&node.url, 0.0);
}

#[test]
fn bench_refuses_what_it_cannot_do() {
    let out = Command::new(bin())
        .args(["bench", "--target", "carrier-pigeon", "--messages", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("inproc, http, ws or tcp"));
    let out = Command::new(bin())
        .args(["bench", "--durable", "false"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    for (args, why) in [
        (
            &["--target", "ws", "--users", "10"][..],
            "--users is for --target inproc",
        ),
        (
            &["--target", "inproc", "--sessions", "10"][..],
            "--sessions is for",
        ),
        (&["--rate", "0"][..], "--rate must be"),
        (
            &["--target", "ws", "--archive"][..],
            "--archive is for --target inproc",
        ),
    ] {
        let out = Command::new(bin())
            .arg("bench")
            .args(args)
            .args(["--admin-token", "x", "--messages", "1"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
    }
}
