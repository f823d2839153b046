//! Cluster mode, end to end with real nats-servers (three on loopback per
//! test, from core's testkit): `switchboard cluster init` and `status`.
//! Nodes in cluster mode come with the rest of issue 15.

mod common;

use std::process::Command;

use serde_json::Value;
use switchboard_core::cluster::testkit::NatsCluster;

/// Runs `switchboard -c CONFIG cluster ARGS`: (exit ok, stdout, stderr).
fn cluster(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(common::bin())
        .arg("-c")
        .arg(config)
        .arg("cluster")
        .args(args)
        .output()
        .expect("run switchboard");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config(dir: &std::path::Path, urls: &[String]) -> std::path::PathBuf {
    let quoted: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    let p = dir.join("switchboard.toml");
    std::fs::write(
        &p,
        format!(
            "[cluster]\nnode_id = \"a\"\nnats_urls = [{}]\nreplicas = 3\n",
            quoted.join(", ")
        ),
    )
    .unwrap();
    p
}

#[test]
fn cluster_init_makes_the_streams_once_and_status_shows_them() {
    let c = NatsCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &c.urls()[1..2]);
    let (ok, out, err) = cluster(&cfg, &["init"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("created  SB_JOURNAL (3 replicas)"), "{out}");
    assert!(out.contains("KV_sb_profiles"), "{out}");
    // Again: nothing to do.
    let (ok, out, err) = cluster(&cfg, &["init"]);
    assert!(ok, "{out}{err}");
    assert!(
        !out.lines().any(|l| l.starts_with("created")) && out.contains("kept     SB_JOURNAL"),
        "{out}"
    );
    assert!(out.contains(": 0 of "), "{out}");
    let (ok, out, err) = cluster(&cfg, &["status"]);
    assert!(ok, "{out}{err}");
    let st: Value = serde_json::from_str(&out).expect("status is JSON");
    let journal = st["jetstream"]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "SB_JOURNAL")
        .expect("the journal stream")
        .clone();
    assert_eq!(journal["replicas"], 3);
    assert_eq!(st["nodes"], Value::Array(vec![]), "no node has run yet");
}

#[test]
fn cluster_init_without_a_server_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("nats://127.0.0.1:{}", common::free_port());
    let cfg = config(dir.path(), std::slice::from_ref(&url));
    let started = std::time::Instant::now();
    let (ok, out, err) = cluster(&cfg, &["init"]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("cannot reach NATS at") && err.contains(&url),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}
