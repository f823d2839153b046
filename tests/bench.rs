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
    for k in [
        "elapsed_s",
        "cpu_s_per_msg",
        "wire_bytes_per_msg",
        "inflight",
    ] {
        assert!(!r[k].is_null(), "{k} missing: {r}");
    }
}

#[test]
fn bench_runs_in_process() {
    let r = bench(&["--target", "inproc"]);
    check(&r, "inproc");
    assert_eq!(r["wire_bytes_per_msg"], 0.0);
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
}
