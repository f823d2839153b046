//! Crash safety at load, both sides of a link. A remote gateway
//! (`switchboard bench --target tcp`, its own journal) offers 10 000
//! msgs/s over MIAP while (1) the node is killed (`kill -9`) three times at
//! random moments and restarted on the same data directory and ports, or
//! (2) the gateway itself is killed three times and started again on its
//! data directory. The gateway submits again whatever it has not been told
//! the outcome of; at the end every message that was accepted is in the
//! recipient's inbox exactly once.
//!
//! The load runs on `SWITCHBOARD_LOAD_BIN` when set (`scripts/test` sets it
//! to the release build, which is what reaches the rate on two cores), else
//! on the test build; the rate reached is printed, never asserted.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{jitter, kill_seed, Api, ProcNode};

const MESSAGES: usize = 60_000;
const RATE: &str = "10000";

fn load_bin() -> PathBuf {
    std::env::var_os("SWITCHBOARD_LOAD_BIN").map_or_else(common::bin, PathBuf::from)
}

/// The node's count of messages its broker released since it started.
fn received(url: &str) -> u64 {
    let Ok(r) = ureq::get(format!("{url}/metrics")).call() else {
        return 0;
    };
    let text = r.into_body().read_to_string().unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("switchboard_messages_released_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn kill_9_of_the_node_under_ten_thousand_a_second_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", common::free_port());
    let miap = format!("127.0.0.1:{}", common::free_port());
    let env = [
        ("SWITCHBOARD_HTTP__LISTEN", http.as_str()),
        ("SWITCHBOARD_MIAP__LISTEN", miap.as_str()),
    ];
    let spawn = || {
        let mut c = Command::new(load_bin());
        c.arg("serve")
            .env("SWITCHBOARD_DATA__DIR", dir.path())
            .env("SWITCHBOARD_LOG__LEVEL", "warn")
            .envs(env.iter().copied());
        ProcNode::spawn_command(c)
    };
    let mut node = Some(spawn());
    let mut up_since = Instant::now();
    let url = node.as_ref().unwrap().url.clone();
    let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let admin = Api::new(&url, token.trim());
    let bob = admin.add_user("bench-b", &[("im", "bench-b")]);
    let mut seed = kill_seed();

    let bench = Command::new(load_bin())
        .args(["bench", "--target", "tcp", "--json", "--rate", RATE])
        .args(["--messages", &MESSAGES.to_string(), "--inflight", "4096"])
        .args(["--timeout-s", "150", "--connect", &miap, "--url", &url])
        .args(["--admin-token", token.trim()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the bench");

    // Three kills, each once the node has accepted a random number more.
    let started = Instant::now();
    for round in 0..3 {
        let want = jitter(&mut seed, 4_000, 12_000);
        let deadline = Instant::now() + Duration::from_secs(40);
        while received(&url) < want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let at = received(&url);
        node.take().unwrap().kill9();
        eprintln!(
            "kill {round}: {at} released by this node, {:.0} msgs/s since it started ({:.1} s into the run)",
            at as f64 / up_since.elapsed().as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        node = Some(spawn());
        up_since = Instant::now();
    }

    let out = bench.wait_with_output_timeout(Duration::from_secs(200));
    let report: serde_json::Value = serde_json::from_str(
        out.lines()
            .last()
            .unwrap_or_else(|| panic!("no report from the bench: {out:?}")),
    )
    .unwrap();
    eprintln!(
        "bench: {} delivered at {} msgs/s, p99 {} ms",
        report["delivered"], report["msgs_per_s"], report["latency_ms"]["p99"]
    );
    assert_eq!(report["failed"], 0, "not accepted: {report}");

    // Every message i once in bob's inbox; no transaction twice.
    let url = node.as_ref().unwrap().url.clone();
    let bob = Api::new(&url, &bob.token);
    let deadline = Instant::now() + Duration::from_secs(60);
    let inbox = loop {
        let inbox = bob.inbox();
        if inbox.len() >= MESSAGES || Instant::now() > deadline {
            break inbox;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut by_i: HashMap<usize, usize> = HashMap::new();
    let mut by_txn: HashMap<String, usize> = HashMap::new();
    for m in &inbox {
        let body = m["body"].as_str().unwrap();
        let i: usize = body.split(' ').nth(1).unwrap().parse().unwrap();
        *by_i.entry(i).or_default() += 1;
        *by_txn
            .entry(m["txn"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let lost: Vec<usize> = (0..MESSAGES).filter(|i| !by_i.contains_key(i)).collect();
    assert!(
        lost.is_empty(),
        "{} of {MESSAGES} lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    let twice: Vec<_> = by_i.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "delivered twice: {} messages",
        twice.len()
    );
    assert!(by_txn.values().all(|n| *n == 1));
    assert_eq!(inbox.len(), MESSAGES);
    node.take().unwrap().kill9();
}

/// The bench as a kept gateway (`--member`, `--gateway-dir`) printing
/// what it accepted; its stdout lines are read into `accepted` as they come.
fn bench_gateway(
    url: &str,
    miap: &str,
    token: &str,
    dir: &std::path::Path,
    accepted: &std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) -> std::process::Child {
    let mut child = Command::new(load_bin())
        .args([
            "bench",
            "--target",
            "tcp",
            "--rate",
            RATE,
            "--print-accepted",
        ])
        .args(["--messages", &MESSAGES.to_string(), "--inflight", "4096"])
        .args(["--timeout-s", "150", "--connect", miap, "--url", url])
        .args(["--admin-token", token, "--member", "gw-load"])
        .arg("--gateway-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the bench");
    let out = child.stdout.take().expect("stdout");
    let accepted = accepted.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(t) = line.strip_prefix("accepted ") {
                accepted.lock().unwrap().push(t.to_string());
            }
        }
    });
    child
}

#[test]
fn kill_9_of_the_remote_gateway_under_ten_thousand_a_second_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gw_dir = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", common::free_port());
    let miap = format!("127.0.0.1:{}", common::free_port());
    let mut c = Command::new(load_bin());
    c.arg("serve")
        .env("SWITCHBOARD_DATA__DIR", dir.path())
        .env("SWITCHBOARD_LOG__LEVEL", "warn")
        .env("SWITCHBOARD_HTTP__LISTEN", &http)
        .env("SWITCHBOARD_MIAP__LISTEN", &miap);
    let node = ProcNode::spawn_command(c);
    let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let token = token.trim();
    let admin = Api::new(&node.url, token);
    let bob = admin.add_user("bench-b", &[("im", "bench-b")]);
    let mut seed = kill_seed();
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));

    // Three kills of the gateway, each once it has had a random number
    // more accepted; each time it starts again on its data directory.
    let started = Instant::now();
    let mut gw = bench_gateway(&node.url, &miap, token, gw_dir.path(), &accepted);
    for round in 0..3 {
        let want = accepted.lock().unwrap().len() + jitter(&mut seed, 4_000, 12_000) as usize;
        let t0 = Instant::now();
        let at0 = accepted.lock().unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(40);
        while accepted.lock().unwrap().len() < want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = gw.kill();
        let _ = gw.wait();
        let n = accepted.lock().unwrap().len();
        eprintln!(
            "kill {round} of the gateway: {n} accepted so far, {:.0} msgs/s since the last start ({:.1} s into the run)",
            (n - at0) as f64 / t0.elapsed().as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        gw = bench_gateway(&node.url, &miap, token, gw_dir.path(), &accepted);
    }
    // The last run completes its own messages and, first, the outbox the
    // killed runs left.
    let deadline = Instant::now() + Duration::from_secs(200);
    while gw.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = gw.kill();
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() >= MESSAGES,
        "only {} accepted",
        accepted.len()
    );

    let mut by_txn: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        by_txn.clear();
        for m in bob.inbox() {
            *by_txn
                .entry(m["txn"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        if accepted.iter().all(|t| by_txn.contains_key(t)) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let lost: Vec<&String> = accepted
        .iter()
        .filter(|t| !by_txn.contains_key(*t))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} accepted lost, e.g. {:?}",
        lost.len(),
        accepted.len(),
        &lost[..lost.len().min(5)]
    );
    let twice: Vec<_> = by_txn.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered twice: {}", twice.len());
    drop(node);
}

trait WaitOutput {
    fn wait_with_output_timeout(self, limit: Duration) -> String;
}

impl WaitOutput for std::process::Child {
    /// Its stdout once it exits (killed after `limit`).
    fn wait_with_output_timeout(mut self, limit: Duration) -> String {
        let mut stdout = self.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut s).ok();
            s
        });
        let deadline = Instant::now() + limit;
        while self.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = self.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.wait();
        reader.join().unwrap_or_default()
    }
}
