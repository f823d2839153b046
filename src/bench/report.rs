//! What a run counts — submits matched to deliveries whatever their order,
//! latencies, CPU, wire bytes, peak RSS, the node's store writes — and how
//! the report is printed (one line, and JSON with `--json`).

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Frames handed between actors, and the mailbox posts that carried them.
pub(crate) type Handoffs = (u64, u64);

/// Per store tree: the operations and bytes the node's writer applied.
pub(crate) type StoreCounts = BTreeMap<String, (u64, u64)>;

pub(crate) fn store_counts(c: &switchboard_core::store::WriteCounts) -> StoreCounts {
    c.trees
        .iter()
        .map(|&(t, ops, bytes)| (t.name().to_string(), (ops, bytes)))
        .collect()
}

/// A running node's store counters, from its `/metrics`
/// (`switchboard_store_ops_total{tree="…"}`, `…_bytes_total`).
pub(crate) fn node_store_counts(url: &str) -> Option<StoreCounts> {
    let text = node_metrics(url)?;
    let mut out = StoreCounts::new();
    for line in text.lines() {
        let Some((name, rest)) = line.split_once("{tree=\"") else {
            continue;
        };
        let Some((tree, value)) = rest.split_once("\"} ") else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let e = out.entry(tree.to_string()).or_default();
        match name {
            "switchboard_store_ops_total" => e.0 = v as u64,
            "switchboard_store_bytes_total" => e.1 = v as u64,
            _ => {}
        }
    }
    Some(out)
}

/// The node's `/metrics` text.
pub(crate) fn node_metrics(url: &str) -> Option<String> {
    ureq::get(format!("{}/metrics", url.trim_end_matches('/')))
        .call()
        .ok()?
        .into_body()
        .read_to_string()
        .ok()
}

/// A sample of the node's `/metrics` (no labels), if present.
pub(crate) fn node_metric(url: &str, name: &str) -> Option<f64> {
    node_metrics(url)?
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The result.
#[derive(Debug, Clone)]
pub struct Report {
    pub(crate) target: String,
    pub(crate) messages: usize,
    pub(crate) delivered: usize,
    pub(crate) inflight: usize,
    pub(crate) size: usize,
    pub(crate) elapsed_s: f64,
    pub(crate) latencies: Vec<Duration>,
    pub(crate) cpu_s: f64,
    pub(crate) wire_bytes: u64,
    pub(crate) peak_rss_bytes: u64,
    pub(crate) rate: Option<f64>,
    /// Scale measurements (`--users`, `--sessions`), when asked for.
    pub(crate) scale: serde_json::Map<String, Value>,
    /// The node's store writes during the run (none when its counters could
    /// not be read).
    pub(crate) store: Option<StoreCounts>,
    /// In process: the frames handed between actors during the run, and
    /// the mailbox posts that carried them.
    pub(crate) handoffs: Option<Handoffs>,
    /// Messages not accepted (or whose answer was lost), and the first
    /// reason.
    pub(crate) failed: usize,
    pub(crate) first_failure: Option<String>,
}

impl Report {
    pub(crate) fn pct(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[i - 1].as_secs_f64() * 1000.0
    }

    /// The report as INTERFACES.md's JSON object.
    pub fn json(&self) -> Value {
        let per = |x: f64| {
            if self.delivered == 0 {
                0.0
            } else {
                x / self.delivered as f64
            }
        };
        json!({
            "target": self.target,
            "messages": self.messages,
            "delivered": self.delivered,
            "failed": self.failed,
            "first_failure": self.first_failure,
            "inflight": self.inflight,
            "size": self.size,
            "elapsed_s": round(self.elapsed_s, 3),
            "msgs_per_s": round(self.delivered as f64 / self.elapsed_s.max(1e-9), 1),
            "latency_ms": {
                "p50": round(self.pct(0.50), 3),
                "p90": round(self.pct(0.90), 3),
                "p99": round(self.pct(0.99), 3),
                "max": round(self.pct(1.0), 3),
            },
            "cpu_s_per_msg": per(self.cpu_s),
            "wire_bytes_per_msg": round(per(self.wire_bytes as f64), 1),
            "peak_rss_bytes": self.peak_rss_bytes,
            "rate": self.rate,
            "scale": self.scale,
            "handoffs_per_msg": self.handoffs.map(|(frames, posts)| json!({
                "frames": round(per(frames as f64), 2),
                "posts": round(per(posts as f64), 2),
            })),
            "store_per_msg": self.store.as_ref().map(|s| {
                let (ops, bytes) = s.values().fold((0, 0), |a, v| (a.0 + v.0, a.1 + v.1));
                let trees: serde_json::Map<String, Value> = s
                    .iter()
                    .filter(|(_, v)| v.0 > 0)
                    .map(|(t, v)| {
                        let j = json!({
                            "ops": round(per(v.0 as f64), 2),
                            "bytes": round(per(v.1 as f64), 0),
                        });
                        (t.clone(), j)
                    })
                    .collect();
                json!({
                    "ops": round(per(ops as f64), 2),
                    "bytes": round(per(bytes as f64), 0),
                    "trees": trees,
                })
            }),
        })
    }

    /// A human summary.
    pub fn text(&self) -> String {
        let j = self.json();
        format!(
            "{} messages via {} ({} B, {} in flight): {} delivered in {} s = {} msgs/s; latency ms p50 {} p90 {} p99 {} max {}; {:.1} µs CPU/msg (this process); {} wire B/msg; peak RSS {} MiB",
            self.messages,
            self.target,
            self.size,
            self.inflight,
            self.delivered,
            j["elapsed_s"],
            j["msgs_per_s"],
            j["latency_ms"]["p50"],
            j["latency_ms"]["p90"],
            j["latency_ms"]["p99"],
            j["latency_ms"]["max"],
            j["cpu_s_per_msg"].as_f64().unwrap_or(0.0) * 1e6,
            j["wire_bytes_per_msg"],
            self.peak_rss_bytes / (1024 * 1024),
        ) + &j["store_per_msg"]
            .as_object()
            .map_or(String::new(), |s| {
                format!(
                    "; node journal {} ops, {} B per msg",
                    s["ops"], s["bytes"]
                )
            })
            + &j["handoffs_per_msg"]
                .as_object()
                .map_or(String::new(), |h| {
                    format!(
                        "; {} frames between actors in {} mailbox posts per msg",
                        h["frames"], h["posts"]
                    )
                })
            + &self.rate.map_or(String::new(), |r| format!("; offered {r} msgs/s"))
            + &self.first_failure.as_ref().map_or(String::new(), |f| {
                format!("; {} FAILED, first: {f}", self.failed)
            })
            + &if self.scale.is_empty() {
                String::new()
            } else {
                format!("; scale {}", Value::Object(self.scale.clone()))
            }
    }
}

pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// This process's CPU time (user + system), from /proc.
pub(crate) fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 (1-based), 12 and 13 here.
    (ticks(11) + ticks(12)) / 100.0
}

/// This process's peak resident set, bytes.
pub(crate) fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// This process's resident set now, bytes.
pub(crate) fn rss_now() -> u64 {
    crate::api::metrics::resident_bytes().unwrap_or(0)
}

/// Messages whose submit answer and delivery have not met yet.
#[derive(Default)]
pub(crate) struct Unmatched {
    pub(crate) started: HashMap<String, Instant>,
    pub(crate) early: HashMap<String, Instant>,
}

/// Counts deliveries and their latencies; shows progress on a terminal.
#[derive(Clone)]
pub(crate) struct Tally {
    /// Submitted and not yet seen delivered, and seen delivered before
    /// their submit answered: one lock over both, so a delivery racing its
    /// answer is matched whichever comes first.
    pub(crate) unmatched: Arc<Mutex<Unmatched>>,
    pub(crate) latencies: Arc<Mutex<Vec<Duration>>>,
    pub(crate) done: Arc<AtomicUsize>,
    pub(crate) wire: Arc<AtomicU64>,
    pub(crate) scale: Arc<Mutex<serde_json::Map<String, Value>>>,
    /// CPU µs this process spent setting up (users, sessions), not counted
    /// per message.
    pub(crate) setup_cpu_us: Arc<AtomicU64>,
    /// This process's CPU seconds when the last message was delivered
    /// (teardown is not counted per message).
    pub(crate) end_cpu: Arc<Mutex<Option<f64>>>,
    /// The node's store counters when the run started, then what the run
    /// wrote.
    pub(crate) store: Arc<Mutex<(Option<StoreCounts>, Option<StoreCounts>)>>,
    /// In process: `(frames, posts)` handed between actors when the run
    /// started, then during the run.
    pub(crate) handoffs: Arc<Mutex<(Option<Handoffs>, Option<Handoffs>)>>,
    /// Messages not accepted, and the first reason.
    pub(crate) failures: Arc<Mutex<(usize, Option<String>)>>,
    pub(crate) failed_n: Arc<AtomicUsize>,
}

impl Tally {
    pub(crate) fn new() -> Self {
        Self {
            unmatched: Arc::default(),
            latencies: Arc::default(),
            done: Arc::default(),
            wire: Arc::default(),
            scale: Arc::default(),
            setup_cpu_us: Arc::default(),
            end_cpu: Arc::default(),
            store: Arc::default(),
            handoffs: Arc::default(),
            failures: Arc::default(),
            failed_n: Arc::default(),
        }
    }

    /// The node's store counters as the measured run starts.
    pub(crate) fn store_from(&self, c: Option<StoreCounts>) {
        if let Ok(mut s) = self.store.lock() {
            s.0 = c;
        }
    }

    /// The node's store counters once the run's writes are applied.
    pub(crate) fn store_to(&self, c: Option<StoreCounts>) {
        if let Ok(mut s) = self.store.lock() {
            s.1 = match (&s.0, c) {
                (Some(before), Some(after)) => Some(
                    after
                        .into_iter()
                        .map(|(t, (o, b))| {
                            let (o0, b0) = before.get(&t).copied().unwrap_or_default();
                            (t, (o.saturating_sub(o0), b.saturating_sub(b0)))
                        })
                        .collect(),
                ),
                _ => None,
            };
        }
    }

    /// The process's hand-off counts (`(frames, posts)`): first as the run
    /// starts, then as it ends.
    pub(crate) fn handoffs_at(&self, c: Handoffs) {
        if let Ok(mut h) = self.handoffs.lock() {
            match h.0 {
                None => h.0 = Some(c),
                Some(c0) => h.1 = Some((c.0.saturating_sub(c0.0), c.1.saturating_sub(c0.1))),
            }
        }
    }

    /// The node's counters, from its `/metrics`, once its writer has caught
    /// up with the run (after the measured time).
    pub(crate) fn store_to_node(&self, url: &str) {
        std::thread::sleep(Duration::from_millis(300));
        self.store_to(node_store_counts(url));
    }

    /// The measured run ends now.
    pub(crate) fn end(&self) {
        if let Ok(mut e) = self.end_cpu.lock() {
            e.get_or_insert_with(cpu_seconds);
        }
    }

    /// Excludes the CPU time since `cpu0` from the per-message figure.
    pub(crate) fn setup_done(&self, cpu0: f64) {
        let us = ((cpu_seconds() - cpu0) * 1e6).max(0.0) as u64;
        self.setup_cpu_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Records a scale measurement.
    pub(crate) fn note(&self, key: &str, v: impl Into<Value>) {
        if let Ok(mut s) = self.scale.lock() {
            s.insert(key.to_string(), v.into());
        }
    }

    /// Message `id` was submitted at `t0`.
    pub(crate) fn started(&self, id: String, t0: Instant) {
        let Ok(mut u) = self.unmatched.lock() else {
            return;
        };
        match u.early.remove(&id) {
            Some(at) => {
                drop(u);
                self.finish(at.saturating_duration_since(t0));
            }
            None => {
                u.started.insert(id, t0);
            }
        }
    }

    /// Message `id` was delivered now.
    pub(crate) fn delivered(&self, id: String) {
        let now = Instant::now();
        let Ok(mut u) = self.unmatched.lock() else {
            return;
        };
        match u.started.remove(&id) {
            Some(t0) => {
                drop(u);
                self.finish(now - t0);
            }
            // Delivered before its submit returned (the answer and the
            // delivery race).
            None => {
                u.early.insert(id, now);
            }
        }
    }

    pub(crate) fn finish(&self, d: Duration) {
        if let Ok(mut l) = self.latencies.lock() {
            l.push(d);
        }
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// A message that was not accepted (or whose answer was lost): it will
    /// not be waited for. The first reason is kept for the report.
    pub(crate) fn failed(&self, why: String) {
        if let Ok(mut f) = self.failures.lock() {
            f.0 += 1;
            f.1.get_or_insert(why);
        }
        self.failed_n.fetch_add(1, Ordering::Relaxed);
    }

    /// Delivered or failed: nothing more to wait for.
    pub(crate) fn settled(&self) -> usize {
        self.count() + self.failed_n.load(Ordering::Relaxed)
    }
}

/// Prints `done/total` and the rate to stderr when it is a terminal.
pub(crate) fn progress(t: &Tally, total: usize, start: Instant) {
    if std::io::stderr().is_terminal() {
        let n = t.count();
        let rate = n as f64 / start.elapsed().as_secs_f64().max(1e-9);
        let width = 30;
        let filled = (n * width / total.max(1)).min(width);
        eprint!(
            "\r[{}{}] {n}/{total} {rate:.0} msgs/s ",
            "#".repeat(filled),
            " ".repeat(width - filled)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A delivery racing its submit answer is matched whichever comes
    /// first: two threads report the same ids in the same order.
    #[test]
    fn answers_and_deliveries_meet_whatever_their_order() {
        let tally = Tally::new();
        let n = 20_000;
        let t0 = Instant::now();
        let (a, b) = (tally.clone(), tally.clone());
        let answers = std::thread::spawn(move || (0..n).for_each(|i| a.started(i.to_string(), t0)));
        let pushes = std::thread::spawn(move || (0..n).for_each(|i| b.delivered(i.to_string())));
        answers.join().unwrap();
        pushes.join().unwrap();
        assert_eq!(tally.count(), n);
        let u = tally.unmatched.lock().unwrap();
        assert!(u.started.is_empty() && u.early.is_empty());
    }
}
