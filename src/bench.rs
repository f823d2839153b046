//! `switchboard bench`: the load generator. N messages of SIZE bytes with W
//! in flight, from submit to delivered, through one of:
//!
//! - `inproc` — a node started in this process on a temp dir (the IM
//!   gateway originates, the IM inbox receives; every MIAP step and MAC,
//!   sled durable);
//! - `http` — a running node's HTTP API (`--url`): W clients post, the
//!   recipient's WebSocket session sees each message arrive;
//! - `ws` — a running node's WebSocket API: one client pipelines W `send`
//!   frames and waits for each `receipt delivered`;
//! - `tcp` — a running node's MIAP port (`--connect`): this process is a
//!   remote gateway (member `bench-<pid>`, created and revoked through the
//!   admin API) originating over MIAP/TCP.
//!
//! Reports messages/s, latency p50/p90/p99/max, this process's CPU seconds
//! per message, wire bytes per message (payload bytes for `http`), the
//! node's store writes per message (sled operations and bytes, per tree), and
//! this process's peak RSS; a progress line on a terminal. Bounded by
//! `--messages` and `--timeout-s`.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use switchboard_actors::gateway::{Originate, Receipt};
use switchboard_core::directory::Profile;
use switchboard_core::protocol::{Address, MediumKind, Outcome, Priority, To};

use crate::config::Config;

/// Per store tree: the operations and bytes the node's writer applied.
type StoreCounts = BTreeMap<String, (u64, u64)>;

fn store_counts(c: &switchboard_core::store::WriteCounts) -> StoreCounts {
    c.trees
        .iter()
        .map(|&(t, ops, bytes)| (t.name().to_string(), (ops, bytes)))
        .collect()
}

/// A running node's store counters, from its `/metrics`
/// (`switchboard_store_ops_total{tree="…"}`, `…_bytes_total`).
fn node_store_counts(url: &str) -> Option<StoreCounts> {
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

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchArgs {
    /// `inproc`, `http`, `ws` or `tcp`.
    pub target: String,
    /// Messages.
    pub messages: usize,
    /// In flight at once.
    pub inflight: usize,
    /// Body size, bytes.
    pub size: usize,
    /// The node's HTTP API (`http`, `ws`, and the admin API for `tcp`).
    pub url: String,
    /// The node's MIAP address (`tcp`).
    pub connect: Option<String>,
    /// The admin token (to create the bench users and member).
    pub admin_token: Option<String>,
    /// Longest run.
    pub timeout: Duration,
    /// Offered load, msgs/s (`None`: as fast as the window allows).
    pub rate: Option<f64>,
    /// `inproc`: users to put in the directory first, messages between them.
    pub users: usize,
    /// `http`, `ws`: idle WebSocket sessions held open during the run.
    pub sessions: usize,
}

/// The result.
#[derive(Debug, Clone)]
pub struct Report {
    target: String,
    messages: usize,
    delivered: usize,
    inflight: usize,
    size: usize,
    elapsed_s: f64,
    latencies: Vec<Duration>,
    cpu_s: f64,
    wire_bytes: u64,
    peak_rss_bytes: u64,
    rate: Option<f64>,
    /// Scale measurements (`--users`, `--sessions`), when asked for.
    scale: serde_json::Map<String, Value>,
    /// The node's store writes during the run (none when its counters could
    /// not be read).
    store: Option<StoreCounts>,
    /// Messages not accepted (or whose answer was lost), and the first
    /// reason.
    failed: usize,
    first_failure: Option<String>,
}

impl Report {
    fn pct(&self, p: f64) -> f64 {
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
                    "; node store {} sled ops, {} B per msg",
                    s["ops"], s["bytes"]
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

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// This process's CPU time (user + system), from /proc.
fn cpu_seconds() -> f64 {
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
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Messages whose submit answer and delivery have not met yet.
#[derive(Default)]
struct Unmatched {
    started: HashMap<String, Instant>,
    early: HashMap<String, Instant>,
}

/// Counts deliveries and their latencies; shows progress on a terminal.
#[derive(Clone)]
struct Tally {
    /// Submitted and not yet seen delivered, and seen delivered before
    /// their submit answered: one lock over both, so a delivery racing its
    /// answer is matched whichever comes first.
    unmatched: Arc<Mutex<Unmatched>>,
    latencies: Arc<Mutex<Vec<Duration>>>,
    done: Arc<AtomicUsize>,
    wire: Arc<AtomicU64>,
    scale: Arc<Mutex<serde_json::Map<String, Value>>>,
    /// CPU µs this process spent setting up (users, sessions), not counted
    /// per message.
    setup_cpu_us: Arc<AtomicU64>,
    /// This process's CPU seconds when the last message was delivered
    /// (teardown is not counted per message).
    end_cpu: Arc<Mutex<Option<f64>>>,
    /// The node's store counters when the run started, then what the run
    /// wrote.
    store: Arc<Mutex<(Option<StoreCounts>, Option<StoreCounts>)>>,
    /// Messages not accepted, and the first reason.
    failures: Arc<Mutex<(usize, Option<String>)>>,
    failed_n: Arc<AtomicUsize>,
}

impl Tally {
    fn new() -> Self {
        Self {
            unmatched: Arc::default(),
            latencies: Arc::default(),
            done: Arc::default(),
            wire: Arc::default(),
            scale: Arc::default(),
            setup_cpu_us: Arc::default(),
            end_cpu: Arc::default(),
            store: Arc::default(),
            failures: Arc::default(),
            failed_n: Arc::default(),
        }
    }

    /// The node's store counters as the measured run starts.
    fn store_from(&self, c: Option<StoreCounts>) {
        if let Ok(mut s) = self.store.lock() {
            s.0 = c;
        }
    }

    /// The node's store counters once the run's writes are applied.
    fn store_to(&self, c: Option<StoreCounts>) {
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

    /// The node's counters, from its `/metrics`, once its writer has caught
    /// up with the run (after the measured time).
    fn store_to_node(&self, url: &str) {
        std::thread::sleep(Duration::from_millis(300));
        self.store_to(node_store_counts(url));
    }

    /// The measured run ends now.
    fn end(&self) {
        if let Ok(mut e) = self.end_cpu.lock() {
            e.get_or_insert_with(cpu_seconds);
        }
    }

    /// Excludes the CPU time since `cpu0` from the per-message figure.
    fn setup_done(&self, cpu0: f64) {
        let us = ((cpu_seconds() - cpu0) * 1e6).max(0.0) as u64;
        self.setup_cpu_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Records a scale measurement.
    fn note(&self, key: &str, v: impl Into<Value>) {
        if let Ok(mut s) = self.scale.lock() {
            s.insert(key.to_string(), v.into());
        }
    }

    /// Message `id` was submitted at `t0`.
    fn started(&self, id: String, t0: Instant) {
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
    fn delivered(&self, id: String) {
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

    fn finish(&self, d: Duration) {
        if let Ok(mut l) = self.latencies.lock() {
            l.push(d);
        }
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// A message that was not accepted (or whose answer was lost): it will
    /// not be waited for. The first reason is kept for the report.
    fn failed(&self, why: String) {
        if let Ok(mut f) = self.failures.lock() {
            f.0 += 1;
            f.1.get_or_insert(why);
        }
        self.failed_n.fetch_add(1, Ordering::Relaxed);
    }

    /// Delivered or failed: nothing more to wait for.
    fn settled(&self) -> usize {
        self.count() + self.failed_n.load(Ordering::Relaxed)
    }
}

/// Prints `done/total` and the rate to stderr when it is a terminal.
fn progress(t: &Tally, total: usize, start: Instant) {
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

/// Runs the bench.
///
/// # Errors
/// A target that cannot be reached or set up.
pub fn run(args: &BenchArgs, cfg: &Config) -> anyhow::Result<Report> {
    if args.messages == 0 || args.inflight == 0 {
        bail!("--messages and --inflight must be at least 1");
    }
    if args.users > 0 && args.target != "inproc" {
        bail!("--users is for --target inproc (a node's directory in this process)");
    }
    if args.sessions > 0 && !matches!(args.target.as_str(), "http" | "ws") {
        bail!("--sessions is for --target http or ws (a running node)");
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--rate must be a positive number of messages per second");
    }
    let tally = Tally::new();
    let cpu0 = cpu_seconds();
    let (_start, elapsed) = match args.target.as_str() {
        "inproc" => inproc(args, &tally)?,
        "http" => http(args, &tally)?,
        "ws" => ws(args, &tally)?,
        "tcp" => tcp(args, cfg, &tally)?,
        other => bail!("--target {other:?}: use inproc, http, ws or tcp"),
    };
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    let mut latencies = tally
        .latencies
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    latencies.sort();
    Ok(Report {
        target: args.target.clone(),
        messages: args.messages,
        delivered: tally.count(),
        inflight: args.inflight,
        size: args.size,
        elapsed_s: elapsed.as_secs_f64(),
        latencies,
        cpu_s: tally
            .end_cpu
            .lock()
            .ok()
            .and_then(|e| *e)
            .unwrap_or_else(cpu_seconds)
            - cpu0
            - tally.setup_cpu_us.load(Ordering::Relaxed) as f64 / 1e6,
        wire_bytes: tally.wire.load(Ordering::Relaxed),
        peak_rss_bytes: peak_rss(),
        rate: args.rate,
        scale: tally.scale.lock().map(|s| s.clone()).unwrap_or_default(),
        store: tally.store.lock().ok().and_then(|s| s.1.clone()),
        failed: tally.failures.lock().map(|f| f.0).unwrap_or_default(),
        first_failure: tally.failures.lock().ok().and_then(|f| f.1.clone()),
    })
}

/// When message `i` is due under `--rate` (`None`: at once). Latency is
/// measured from this moment, so a run that falls behind its schedule
/// counts the wait (no coordinated omission).
fn due(start: Instant, i: usize, rate: Option<f64>) -> Option<Instant> {
    rate.filter(|r| *r > 0.0)
        .map(|r| start + Duration::from_secs_f64(i as f64 / r))
}

/// This process's resident set now, bytes.
fn rss_now() -> u64 {
    crate::api::metrics::resident_bytes().unwrap_or(0)
}

/// Bytes under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Copies the files under `from` into `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)
                .with_context(|| format!("copying {}", e.path().display()))?;
        }
    }
    Ok(())
}

/// The name of bench user `i` (`--users`).
fn user_name(i: usize) -> String {
    format!("u{i}")
}

fn body(size: usize, i: usize) -> String {
    let head = format!("bench {i} ");
    let pad = size.saturating_sub(head.len());
    format!("{head}{}", "x".repeat(pad))
}

/// Message `i` of `size` bytes from `bench-a` to `bench-b` (the users
/// [`inproc_core`] creates), as the IM gateway's clients originate it.
pub fn originate(size: usize, i: usize) -> Originate {
    originate_between(size, i, "bench-a", "bench-b")
}

/// Message `i` of `size` bytes from user `from` to user `to`.
pub fn originate_between(size: usize, i: usize, from: &str, to: &str) -> Originate {
    Originate {
        sender: Address::new(MediumKind::Im, from),
        sender_user: Some(from.into()),
        to: To::User(to.into()),
        content: body(size, i).into_bytes(),
        content_type: "text/plain".into(),
        subject: None,
        priority: Priority::Normal,
        expires_in_ms: 3_600_000,
        receipt: true,
        dedupe: None,
    }
}

/// Counts `Delivered` receipts.
struct Observer(Tally);

impl Actor for Observer {
    type Context = Context<Self>;
}

impl Handler<Receipt> for Observer {
    type Result = ();
    fn handle(&mut self, r: Receipt, _: &mut Context<Self>) {
        if r.outcome == Outcome::Delivered {
            self.0.delivered(r.txn.to_string());
        }
    }
}

/// Sends the messages into `gw`, keeping at most `inflight` submitted and
/// not yet delivered; returns when all are delivered or at the timeout.
async fn pump<A>(
    gw: Addr<A>,
    args: &BenchArgs,
    tally: &Tally,
    make: &dyn Fn(usize) -> Originate,
) -> anyhow::Result<(Instant, Duration)>
where
    A: Handler<Originate>,
    A::Context: actix::dev::ToEnvelope<A, Originate>,
{
    let start = Instant::now();
    let deadline = start + args.timeout;
    let mut tick = Instant::now();
    for i in 0..args.messages {
        while i - tally.settled().min(i) >= args.inflight {
            if Instant::now() > deadline {
                bail!(
                    "timed out with {} of {} delivered",
                    tally.count(),
                    args.messages
                );
            }
            actix_rt::time::sleep(Duration::from_micros(100)).await;
        }
        let at = due(start, i, args.rate);
        if let Some(t) = at {
            actix_rt::time::sleep_until(t.into()).await;
        }
        let (gw, tally2) = (gw.clone(), tally.clone());
        let o = make(i);
        actix_rt::spawn(async move {
            let t0 = at.unwrap_or_else(Instant::now);
            match gw.send(o).await {
                Ok(Ok(acc)) => tally2.started(acc.txn.to_string(), t0),
                Ok(Err(e)) => tally2.failed(format!("not accepted: {e}")),
                Err(e) => tally2.failed(format!("the gateway did not answer: {e}")),
            }
        });
        if tick.elapsed() > Duration::from_millis(200) {
            progress(tally, args.messages, start);
            tick = Instant::now();
        }
    }
    while tally.settled() < args.messages && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(1)).await;
        if tick.elapsed() > Duration::from_millis(200) {
            progress(tally, args.messages, start);
            tick = Instant::now();
        }
    }
    tally.end();
    Ok((start, start.elapsed()))
}

/// A node's core on `dir` (nothing listening), with users `bench-a` and
/// `bench-b`; the IM gateway's outcomes go to `receipts`. Also used by the
/// criterion bench.
///
/// # Errors
/// A node that does not start.
pub async fn inproc_core(
    dir: &std::path::Path,
    receipts: Recipient<Receipt>,
) -> anyhow::Result<crate::node::Core> {
    // The environment's settings (`SWITCHBOARD_BROKER__SHARDS=1`, …), then
    // the temp data directory.
    let vars = std::env::vars().chain([(
        "SWITCHBOARD_DATA__DIR".to_string(),
        dir.display().to_string(),
    )]);
    let cfg = Config::load_with(None, vars)?;
    let core = crate::node::Core::start(&cfg, Some(receipts)).await?;
    for u in ["bench-a", "bench-b"] {
        core.directory.put_profile(Profile::im_only(u)).await?;
    }
    Ok(core)
}

fn inproc(args: &BenchArgs, tally: &Tally) -> anyhow::Result<(Instant, Duration)> {
    let dir = tempfile::tempdir().context("a temp dir for the node")?;
    let copy = tempfile::tempdir().context("a temp dir for the node")?;
    actix_rt::System::new().block_on(async {
        let observer = Observer(tally.clone()).start();
        let mut core = inproc_core(dir.path(), observer.clone().recipient()).await?;
        if args.users > 0 {
            let cpu0 = cpu_seconds();
            let rss0 = rss_now();
            let t = Instant::now();
            provision(&core, args.users).await?;
            let took = t.elapsed().as_secs_f64();
            let per_user = rss_now().saturating_sub(rss0) / args.users as u64;
            tally.note("users", args.users);
            tally.note("provision_s", round(took, 2));
            tally.note("users_per_s", round(args.users as f64 / took, 0));
            tally.note("rss_bytes_per_user", per_user);
            // A node starting on a directory of that size: a copy of this
            // one once it is flushed and stopped (its files stay locked
            // while its actors wind down).
            core.stop(Duration::from_secs(10)).await;
            // Let the first node's threads wind down before measuring.
            actix_rt::time::sleep(Duration::from_secs(1)).await;
            tally.note("data_dir_bytes", dir_bytes(dir.path()));
            copy_dir(dir.path(), copy.path())?;
            let t = Instant::now();
            core = inproc_core(copy.path(), observer.recipient()).await?;
            tally.note("start_s", round(t.elapsed().as_secs_f64(), 2));
            tally.setup_done(cpu0);
        }
        let (size, users) = (args.size, args.users);
        let make = move |i: usize| {
            if users == 0 {
                return originate(size, i);
            }
            // Spread over the directory: a different pair each time.
            let from = user_name(i % users);
            let to = user_name(i.wrapping_mul(7919).wrapping_add(1) % users);
            originate_between(size, i, &from, &to)
        };
        tally.store_from(Some(store_counts(&core.store.write_counts())));
        let r = pump(core.im.clone(), args, tally, &make).await;
        // Writes queued by the last steps (closing the outbox) count too.
        let _ = core.store.writer().barrier().await;
        tally.store_to(Some(store_counts(&core.store.write_counts())));
        core.stop(Duration::from_secs(5)).await;
        r
    })
}

/// Puts `n` IM users (`u0`, `u1`, …) in the directory, 1024 at a time (so
/// their writes share group commits).
async fn provision(core: &crate::node::Core, n: usize) -> anyhow::Result<()> {
    use futures_util::stream::{FuturesUnordered, StreamExt as _};
    let mut pending = FuturesUnordered::new();
    let mut tick = Instant::now();
    for i in 0..n {
        let d = core.directory.clone();
        pending.push(async move { d.put_profile(Profile::im_only(&user_name(i))).await });
        if pending.len() >= 1024 {
            if let Some(r) = pending.next().await {
                r?;
            }
        }
        if std::io::stderr().is_terminal() && tick.elapsed() > Duration::from_millis(500) {
            eprint!("\rprovisioning users: {i}/{n} ");
            tick = Instant::now();
        }
    }
    while let Some(r) = pending.next().await {
        r?;
    }
    Ok(())
}

/// Creates IM user `id` through the admin API; its token.
fn add_im_user(api: &crate::cli::Client, id: &str) -> anyhow::Result<String> {
    let v = api.put(
        &format!("/v1/admin/users/{id}"),
        &json!({"id": id, "mechanisms": [{"medium": "im", "address": id}]}),
        true,
    )?;
    Ok(v["token"].as_str().context("no token")?.to_string())
}

/// Creates the bench users through the admin API; their tokens.
fn bench_users(api: &crate::cli::Client) -> anyhow::Result<(String, String)> {
    let stamp = std::process::id();
    Ok((
        add_im_user(api, &format!("bench-a-{stamp}"))?,
        add_im_user(api, &format!("bench-b-{stamp}"))?,
    ))
}

fn admin(args: &BenchArgs) -> anyhow::Result<crate::cli::Client> {
    let token = args
        .admin_token
        .clone()
        .context("this target needs the admin token (--admin-token, or the data directory)")?;
    Ok(crate::cli::Client::new(&args.url, &token))
}

fn ws_url(base: &str, token: &str) -> String {
    let base = base
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    format!("{}/v1/ws?token={token}", base.trim_end_matches('/'))
}

type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

fn connect_ws(url: &str) -> anyhow::Result<Socket> {
    let (sock, _) = tungstenite::connect(url).context("connecting the WebSocket")?;
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = sock.get_ref() {
        // Small frames both ways: no Nagle delay on our side.
        let _ = s.set_nodelay(true);
    }
    Ok(sock)
}

/// The node's `/metrics` text.
fn node_metrics(url: &str) -> Option<String> {
    ureq::get(format!("{}/metrics", url.trim_end_matches('/')))
        .call()
        .ok()?
        .into_body()
        .read_to_string()
        .ok()
}

/// A sample of the node's `/metrics` (no labels), if present.
fn node_metric(url: &str, name: &str) -> Option<f64> {
    node_metrics(url)?
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Opens `args.sessions` idle WebSocket sessions, one user each (created
/// through the admin API), and notes the node's memory per user and per
/// idle session (its `switchboard_process_resident_memory_bytes`).
fn idle_sessions(args: &BenchArgs, tally: &Tally) -> anyhow::Result<Vec<Socket>> {
    let n = args.sessions;
    if n == 0 {
        return Ok(Vec::new());
    }
    let rss = || node_metric(&args.url, "switchboard_process_resident_memory_bytes").unwrap_or(0.0);
    let stamp = std::process::id();
    let cpu0 = cpu_seconds();
    let rss0 = rss();
    let t = Instant::now();
    // Users, from 8 threads.
    let token = args.admin_token.clone().context("no admin token")?;
    let parts: Vec<_> = (0..8)
        .map(|k| {
            let (url, token) = (args.url.clone(), token.clone());
            std::thread::spawn(move || -> anyhow::Result<Vec<String>> {
                let api = crate::cli::Client::new(&url, &token);
                (k..n)
                    .step_by(8)
                    .map(|i| add_im_user(&api, &format!("idle-{stamp}-{i}")))
                    .collect()
            })
        })
        .collect();
    let mut tokens = Vec::new();
    for p in parts {
        tokens.extend(p.join().map_err(|_| anyhow::anyhow!("a thread failed"))??);
    }
    tally.note(
        "session_users_per_s",
        round(n as f64 / t.elapsed().as_secs_f64(), 0),
    );
    let rss1 = rss();
    let t = Instant::now();
    let mut socks = Vec::with_capacity(n);
    for tok in &tokens {
        socks.push(connect_ws(&ws_url(&args.url, tok))?);
    }
    tally.note(
        "sessions_connected_per_s",
        round(n as f64 / t.elapsed().as_secs_f64(), 0),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while node_metric(&args.url, "switchboard_ws_sessions").unwrap_or(0.0) < n as f64 {
        if Instant::now() > deadline {
            bail!("the node does not count {n} WebSocket sessions");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss2 = rss();
    tally.note("sessions", n);
    tally.note("node_rss_bytes_before", rss0 as u64);
    tally.note(
        "node_rss_bytes_per_user",
        ((rss1 - rss0) / n as f64).round(),
    );
    tally.note(
        "node_rss_bytes_per_idle_session",
        ((rss2 - rss1) / n as f64).round(),
    );
    tally.setup_done(cpu0);
    Ok(socks)
}

fn http(args: &BenchArgs, tally: &Tally) -> anyhow::Result<(Instant, Duration)> {
    let api = admin(args)?;
    let _idle = idle_sessions(args, tally)?;
    let (a, b) = bench_users(&api)?;
    let b_id = format!("bench-b-{}", std::process::id());
    // The recipient's session sees each message arrive.
    let mut sock = connect_ws(&ws_url(&args.url, &b))?;
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = sock.get_mut() {
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    }
    tally.store_from(node_store_counts(&args.url));
    let start = Instant::now();
    let deadline = start + args.timeout;
    let next = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..args.inflight)
        .map(|_| {
            let (next, tally, url, a, to) = (
                next.clone(),
                tally.clone(),
                args.url.clone(),
                a.clone(),
                b_id.clone(),
            );
            let (n, size, rate) = (args.messages, args.size, args.rate);
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || Instant::now() > deadline {
                        return;
                    }
                    let req = json!({"to": to, "body": body(size, i)}).to_string();
                    let at = due(start, i, rate);
                    if let Some(t) = at {
                        std::thread::sleep(t.saturating_duration_since(Instant::now()));
                    }
                    let t0 = at.unwrap_or_else(Instant::now);
                    let resp = agent
                        .post(format!("{url}/v1/messages"))
                        .header("Authorization", format!("Bearer {a}"))
                        .header("Content-Type", "application/json")
                        .send(&req);
                    let mut resp = match resp {
                        Ok(r) => r,
                        Err(e) => {
                            tally.failed(format!("POST /v1/messages: {e}"));
                            continue;
                        }
                    };
                    let status = resp.status().as_u16();
                    let text = match resp.body_mut().read_to_string() {
                        Ok(t) => t,
                        Err(e) => {
                            tally.failed(format!("POST /v1/messages: {status}, reading: {e}"));
                            continue;
                        }
                    };
                    tally
                        .wire
                        .fetch_add((req.len() + text.len()) as u64, Ordering::Relaxed);
                    match serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|v| v["txn"].as_str().map(str::to_string))
                    {
                        Some(txn) if status == 202 => tally.started(txn, t0),
                        _ => tally.failed(format!("POST /v1/messages: {status} {text}")),
                    }
                }
            })
        })
        .collect();
    let mut tick = Instant::now();
    while tally.settled() < args.messages && Instant::now() < deadline {
        match sock.read() {
            Ok(tungstenite::Message::Text(t)) => {
                tally.wire.fetch_add(t.len() as u64, Ordering::Relaxed);
                if let Ok(v) = serde_json::from_str::<Value>(&t) {
                    if v["type"] == "message" {
                        if let Some(txn) = v["txn"].as_str() {
                            tally.delivered(txn.to_string());
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => bail!("the recipient's WebSocket failed: {e}"),
        }
        if tick.elapsed() > Duration::from_millis(200) {
            progress(tally, args.messages, start);
            tick = Instant::now();
        }
    }
    let elapsed = start.elapsed();
    for s in senders {
        let _ = s.join();
    }
    tally.store_to_node(&args.url);
    Ok((start, elapsed))
}

fn ws(args: &BenchArgs, tally: &Tally) -> anyhow::Result<(Instant, Duration)> {
    let api = admin(args)?;
    let _idle = idle_sessions(args, tally)?;
    let (a, _) = bench_users(&api)?;
    let to = format!("bench-b-{}", std::process::id());
    let mut sock = connect_ws(&ws_url(&args.url, &a))?;
    if args.rate.is_some() {
        // Paced: wake up to send even when nothing arrives.
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = sock.get_mut() {
            let _ = s.set_read_timeout(Some(Duration::from_millis(1)));
        }
    }
    tally.store_from(node_store_counts(&args.url));
    let start = Instant::now();
    let deadline = start + args.timeout;
    let mut sent = 0usize;
    let mut ids: HashMap<u64, Instant> = HashMap::new();
    let mut tick = Instant::now();
    while tally.settled() < args.messages && Instant::now() < deadline {
        // Keep W in flight: pipeline sends, then read one frame.
        while sent < args.messages && sent - tally.settled() < args.inflight {
            let at = due(start, sent, args.rate);
            if at.is_some_and(|t| t > Instant::now()) {
                break;
            }
            let frame =
                json!({"type": "send", "id": sent, "to": to, "body": body(args.size, sent)})
                    .to_string();
            tally.wire.fetch_add(frame.len() as u64, Ordering::Relaxed);
            ids.insert(sent as u64, at.unwrap_or_else(Instant::now));
            sock.send(tungstenite::Message::text(frame))
                .context("sending on the WebSocket")?;
            sent += 1;
        }
        let msg = match sock.read() {
            Ok(m) => m,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e).context("reading the WebSocket"),
        };
        if let tungstenite::Message::Text(t) = msg {
            tally.wire.fetch_add(t.len() as u64, Ordering::Relaxed);
            let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
            match v["type"].as_str() {
                Some("accepted") => {
                    if let (Some(id), Some(txn)) = (v["id"].as_u64(), v["txn"].as_str()) {
                        if let Some(t0) = ids.remove(&id) {
                            tally.started(txn.to_string(), t0);
                        }
                    }
                }
                Some("receipt") if v["status"] == "delivered" => {
                    if let Some(txn) = v["txn"].as_str() {
                        tally.delivered(txn.to_string());
                    }
                }
                Some("rejected") | Some("error") => bail!("the node refused a message: {v}"),
                _ => {}
            }
        }
        if tick.elapsed() > Duration::from_millis(200) {
            progress(tally, args.messages, start);
            tick = Instant::now();
        }
    }
    let elapsed = start.elapsed();
    tally.store_to_node(&args.url);
    Ok((start, elapsed))
}

/// A medium that delivers nothing: the bench gateway only originates (and
/// reports itself down, so nothing is routed to it).
struct Null;

impl switchboard_actors::medium::Medium for Null {
    fn kind(&self) -> MediumKind {
        MediumKind::Fax
    }
    fn health(&self) -> switchboard_actors::medium::Health {
        switchboard_actors::medium::Health {
            up: false,
            detail: "the bench originates only".into(),
        }
    }
    fn deliver(
        &mut self,
        _: switchboard_actors::medium::Delivery,
    ) -> switchboard_actors::medium::futures_like::LocalBoxFuture<
        'static,
        Result<switchboard_actors::medium::MediumAck, switchboard_actors::medium::NonDelivery>,
    > {
        Box::pin(async {
            Err(switchboard_actors::medium::NonDelivery(
                "the bench gateway delivers nothing".into(),
            ))
        })
    }
}

fn tcp(args: &BenchArgs, cfg: &Config, tally: &Tally) -> anyhow::Result<(Instant, Duration)> {
    use switchboard_actors::bus::BrokerHandle;
    use switchboard_actors::gateway::{Gateway, GatewayConfig, GetInFlight};
    use switchboard_actors::registry::MemberRegistry;
    use switchboard_actors::transport::{Uplink, UplinkConfig};
    use switchboard_core::protocol::{MemberId, SecretKey, SystemClock};
    let connect = args
        .connect
        .clone()
        .context("--target tcp needs --connect HOST:PORT (the node's MIAP port)")?;
    let api = admin(args)?;
    let stamp = std::process::id();
    for id in ["bench-a", "bench-b"] {
        // Already there from an earlier run is fine.
        let _ = add_im_user(&api, id);
    }
    let member = format!("bench-{stamp}");
    let k = api.put(
        &format!("/v1/admin/members/{member}"),
        &json!({"medium": "fax"}),
        true,
    )?;
    let key = SecretKey::from_hex(k["key"].as_str().context("no key")?)
        .map_err(|e| anyhow::anyhow!("the member key: {}", e.code()))?;
    let dir = tempfile::tempdir()?;
    let result = actix_rt::System::new().block_on(async {
        let store = crate::node::open_store(dir.path())?;
        let observer = Observer(tally.clone()).start();
        let ctx = Context::<Gateway<Null>>::new();
        let gw = ctx.address();
        let uplink = Uplink::new(
            UplinkConfig {
                connect,
                broker_id: MemberId::new(k["broker"].as_str().unwrap_or("broker-1")),
                max_frame: cfg.miap.max_frame_bytes,
            },
            gw.clone().recipient(),
            gw.clone().recipient(),
        )
        .with_counter(tally.wire.clone())
        .start();
        let members = MemberRegistry::default();
        members.set_fallback(uplink.clone().recipient());
        let g = Gateway::new(
            GatewayConfig {
                id: MemberId::new(member.clone()),
                key_id: k["key_id"].as_u64().unwrap_or(1) as u32,
                key,
                broker_id: k["broker"].as_str().unwrap_or("broker-1").to_string(),
                session_ttl_ms: cfg.miap.session_ttl_s * 1000,
            },
            Null,
            BrokerHandle::new(vec![uplink.recipient()]),
            members,
            store,
            Arc::new(SystemClock),
        )
        .with_receipts(observer.recipient());
        let gw = ctx.run(g);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !gw
            .send(GetInFlight)
            .await
            .map(|f| f.logged_in)
            .unwrap_or(false)
        {
            if Instant::now() > deadline {
                bail!("the bench gateway could not log in at the node");
            }
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
        tally.store_from(node_store_counts(&args.url));
        pump(gw, args, tally, &|i| originate(args.size, i)).await
    });
    tally.store_to_node(&args.url);
    let _ = api.delete(&format!("/v1/admin/members/{member}"));
    result
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
