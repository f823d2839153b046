//! SIGHUP reloads the configuration file into a running `switchboard serve`:
//! the log level, the default delivery manager and `delivery.im_offline`
//! change at once, with messages flowing and none dropped; an invalid file
//! changes nothing and names the key; other keys are reported as needing a
//! restart. Logs are JSON lines here, and every line about a message
//! carries its txn.
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{bin, eventually, Api};
use serde_json::{json, Value};

/// A node started with `-c FILE`, its stderr (JSON log lines) collected.
struct Served {
    child: Child,
    file: std::path::PathBuf,
    logs: Arc<Mutex<Vec<Value>>>,
    admin: Api,
    _dir: tempfile::TempDir,
}

fn settings(level: &str, extra: &str) -> String {
    format!("[log]\nformat = \"json\"\nlevel = \"{level}\"\n{extra}")
}

impl Served {
    fn start(level: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("switchboard.toml");
        std::fs::write(&file, settings(level, "")).expect("config");
        let mut child = Command::new(bin())
            .args(["serve", "-c"])
            .arg(&file)
            .env("SWITCHBOARD_DATA__DIR", dir.path().join("data"))
            .env("SWITCHBOARD_HTTP__LISTEN", "127.0.0.1:0")
            .env("SWITCHBOARD_MIAP__LISTEN", "127.0.0.1:0")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchboard serve");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // The admin-token banner is plain text; log lines are JSON.
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("the listening line");
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let addr = line
            .trim()
            .strip_prefix("switchboard: http listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let url = format!("http://{addr}");
        let token = std::fs::read_to_string(dir.path().join("data/admin.token")).expect("token");
        Self {
            admin: Api::new(&url, token.trim()),
            child,
            file,
            logs,
            _dir: dir,
        }
    }

    /// Reloads counted so far (`switchboard_config_reloads_total`, every
    /// result): this process's own counter.
    fn reloads(&self) -> f64 {
        let text = ureq::get(format!("{}/metrics", self.admin.base))
            .call()
            .ok()
            .and_then(|r| r.into_body().read_to_string().ok())
            .unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("switchboard_config_reloads_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Writes the file and sends SIGHUP; returns once the node counted the
    /// reload as over (its settings in force, or refused).
    fn reload(&self, text: &str) {
        let before = self.reloads();
        std::fs::write(&self.file, text).expect("config");
        common::signal(&self.child, "-HUP");
        eventually("the reload to be over", || {
            (self.reloads() > before).then_some(())
        });
    }

    /// Waits for a log line from `from` on that `pick` accepts; its index.
    fn wait_line(&self, from: usize, what: &str, pick: impl Fn(&Value) -> bool) -> usize {
        eventually(what, || {
            let logs = self.logs.lock().unwrap();
            logs[from..].iter().position(&pick).map(|i| from + i)
        })
    }

    /// Log lines from `from` on.
    fn since(&self, from: usize) -> Vec<Value> {
        self.logs.lock().unwrap()[from..].to_vec()
    }

    fn mark(&self) -> usize {
        self.logs.lock().unwrap().len()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn message(l: &Value) -> &str {
    l["fields"]["message"].as_str().unwrap_or_default()
}

fn level(l: &Value) -> &str {
    l["level"].as_str().unwrap_or_default()
}

#[test]
fn sighup_changes_the_log_level_without_dropping_a_message() {
    let mut node = Served::start("warn");
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    let bob = node.admin.add_user("bob", &[("im", "bob")]);

    // A steady sender, bounded in count and time.
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let sender = {
        let (alice, accepted, done) = (alice.clone(), accepted.clone(), done.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut i = 0;
            while !done.load(Ordering::SeqCst)
                && i < 2000
                && started.elapsed() < Duration::from_secs(30)
            {
                i += 1;
                let (status, v) = alice.post(
                    "/v1/messages",
                    &json!({"to": "bob", "body": format!("m{i}")}),
                );
                assert_eq!(status, 202, "message {i} refused: {v}");
                accepted
                    .lock()
                    .unwrap()
                    .push(v["txn"].as_str().unwrap().to_string());
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    eventually("some messages", || {
        (accepted.lock().unwrap().len() >= 40).then_some(())
    });
    let at_warn = node.mark();
    assert!(
        node.since(0)
            .iter()
            .all(|l| !matches!(level(l), "DEBUG" | "INFO")),
        "debug or info lines at level warn"
    );

    // warn → debug while messages flow.
    node.reload(&settings("debug", ""));
    node.wait_line(at_warn, "an 'applied' line for log.level", |l| {
        message(l) == "applied" && l["fields"]["key"] == "log.level"
    });
    let switched = accepted.lock().unwrap().len();
    eventually("debug lines about messages", || {
        node.since(at_warn)
            .iter()
            .any(|l| level(l) == "DEBUG" && l["fields"]["txn"].is_string())
            .then_some(())
    });
    eventually("more messages", || {
        (accepted.lock().unwrap().len() >= switched + 40).then_some(())
    });
    done.store(true, Ordering::SeqCst);
    sender.join().expect("the sender");

    // None dropped: every accepted message is in bob's inbox exactly once
    // and delivered.
    let accepted = accepted.lock().unwrap().clone();
    let inbox = eventually("every message in bob's inbox", || {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let q = after
                .as_ref()
                .map_or(String::new(), |a| format!("&after={a}"));
            let (status, v) = bob.get(&format!("/v1/inbox?limit=1000{q}"));
            assert_eq!(status, 200);
            let page = v["messages"].as_array().cloned().unwrap_or_default();
            if page.is_empty() {
                break;
            }
            all.extend(page);
            after = v["next"].as_str().map(str::to_string);
        }
        (all.len() >= accepted.len()).then_some(all)
    });
    let mut txns: Vec<&str> = inbox.iter().map(|m| m["txn"].as_str().unwrap()).collect();
    txns.sort_unstable();
    let mut want: Vec<&str> = accepted.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(txns, want, "bob's inbox differs from what was accepted");
    for txn in accepted.iter().step_by(17) {
        alice.expect_status(txn, "delivered");
    }

    // Lines about a message carry its txn: after the switch, each message
    // sent has at least one, and the broker's per-message lines all do.
    let debug = node.since(at_warn);
    for txn in &accepted[switched + 1..] {
        assert!(
            debug.iter().any(|l| l["fields"]["txn"] == txn.as_str()),
            "no log line carries {txn}"
        );
    }
    for l in debug
        .iter()
        .filter(|l| matches!(message(l), "released" | "concluded"))
    {
        assert!(l["fields"]["txn"].is_string(), "{l}");
    }

    // An invalid file changes nothing and names the key.
    let before = node.mark();
    node.reload(&settings("loud", ""));
    let at = node.wait_line(before, "an error for a bad level", |l| level(l) == "ERROR");
    let err = node.since(at)[0].clone();
    assert!(
        err["fields"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("log.level"),
        "{err}"
    );
    let before = node.mark();
    alice.send("bob", "still at debug");
    eventually("debug lines still", || {
        node.since(before)
            .iter()
            .any(|l| level(l) == "DEBUG")
            .then_some(())
    });

    // Back to warn: no more debug lines.
    node.reload(&settings("warn", ""));
    let before = node.mark();
    let txn = alice.send("bob", "quiet");
    alice.expect_status(&txn, "delivered");
    // A fence in the log: a warning the next reload writes comes after
    // every line about the message (one writer, in order).
    node.reload(&settings("warn", "[broker]\nshards = 3\n"));
    let fence = node.wait_line(before, "the restart warning", |l| {
        level(l) == "WARN" && l["fields"]["key"] == "broker.shards"
    });
    let quiet = node.since(before);
    assert!(
        quiet[..fence - before].iter().all(|l| level(l) != "DEBUG"),
        "{quiet:?}"
    );

    let status = common::terminate(&mut node.child);
    assert!(status.success(), "{status:?}");
}

#[test]
fn sighup_swaps_the_default_manager_and_reports_what_needs_a_restart() {
    let mut node = Served::start("info");
    let alice = node.admin.add_user("alice", &[("im", "alice")]);
    node.admin.add_user("bob", &[("im", "bob")]);
    let manager = |txn: &str| {
        let (_, v) = alice.get(&format!("/v1/messages/{txn}"));
        v["manager"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(manager(&alice.send("bob", "one")), "sequential");

    let before = node.mark();
    node.reload(&settings(
        "info",
        "[delivery]\ndefault_manager = \"parallel\"\n[broker]\nshards = 3\n",
    ));
    assert_eq!(manager(&alice.send("bob", "two")), "parallel");
    node.wait_line(before, "a restart warning for broker.shards", |l| {
        level(l) == "WARN"
            && l["fields"]["key"] == "broker.shards"
            && message(l).contains("restart")
    });

    // A manager that does not exist is not applied; the old one stays.
    let before = node.mark();
    node.reload(&settings(
        "info",
        "[delivery]\ndefault_manager = \"nope\"\n",
    ));
    assert_eq!(manager(&alice.send("bob", "three")), "parallel");
    node.wait_line(before, "an error for delivery.default_manager", |l| {
        level(l) == "ERROR" && l["fields"]["key"] == "delivery.default_manager"
    });
    // The node still serves and shuts down cleanly.
    let (status, _) = node.admin.get("/readyz");
    assert_eq!(status, 200);
    let status = common::terminate(&mut node.child);
    assert!(status.success(), "{status:?}");
}
