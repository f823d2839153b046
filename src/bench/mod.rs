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
//!
//! Rooms: [`report`] (what is counted and how it is printed), [`inproc`]
//! (a node in this process), [`api`] (`http` and `ws` against a running
//! node), [`tcp`] (a remote gateway over MIAP).
//!
//! Owns: load, counting, the report. Must not touch: the CLI (the binary
//! puts both side by side; they share [`crate::client`]).

pub mod api;
pub mod inproc;
pub mod report;
pub mod tcp;

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;

use switchboard_actors::gateway::Originate;
use switchboard_core::protocol::{Address, MediumKind, Priority, To};

use crate::client::Target;
use crate::config::Config;
pub use inproc::inproc_core;
pub use report::Report;
use report::{cpu_seconds, peak_rss, Tally};

/// `switchboard bench`: what to measure, and how hard.
#[derive(Debug, Args)]
pub struct BenchCmd {
    /// inproc (a node in this process), http, ws (a running node at --url)
    /// or tcp (a running node's MIAP port at --connect).
    #[arg(long, default_value = "inproc")]
    pub target: String,
    /// Messages to send.
    #[arg(long, default_value_t = 10_000)]
    pub messages: usize,
    /// Messages in flight at once (submitted, not yet delivered).
    #[arg(long, default_value_t = 256)]
    pub inflight: usize,
    /// Body size in bytes.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// The node's MIAP address, for --target tcp.
    #[arg(long)]
    pub connect: Option<String>,
    /// Durable writes (the only mode in this build).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub durable: bool,
    /// Print one JSON object last.
    #[arg(long)]
    pub json: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout_s: u64,
    /// Offer messages at this rate (msgs/s) instead of as fast as the
    /// window allows (still at most --inflight in flight).
    #[arg(long)]
    pub rate: Option<f64>,
    /// inproc: put this many users in the directory first and send between
    /// them (reports the provisioning rate, memory per user, and the start
    /// time of a node with them).
    #[arg(long, default_value_t = 0)]
    pub users: usize,
    /// http, ws: hold this many idle WebSocket sessions (one user each)
    /// open during the run (reports the node's memory per idle session).
    #[arg(long, default_value_t = 0)]
    pub sessions: usize,
    /// tcp: the bench gateway's member id (created, or its key rotated,
    /// and kept after the run) instead of a throwaway `bench-<pid>` — with
    /// `--gateway-dir`, a bench killed and started again is the same
    /// gateway, and submits what it had not been told the outcome of.
    #[arg(long)]
    pub member: Option<String>,
    /// tcp: the bench gateway's data directory (its journal and outbox),
    /// kept, instead of a temporary one.
    #[arg(long)]
    pub gateway_dir: Option<std::path::PathBuf>,
    /// Print `accepted TXN` on stdout as each message is accepted (its
    /// answer came back: durable at the gateway and released).
    #[arg(long)]
    pub print_accepted: bool,
    /// inproc: archive every message (the compliance archive on, the
    /// bench's users in a domain that archives; docs/ARCHIVE.md).
    #[arg(long)]
    pub archive: bool,
}

/// `switchboard bench`: runs the load generator as `b` says against `t`
/// and prints the report.
///
/// # Errors
/// Bad options, or a run that cannot start.
pub fn command(t: &Target, b: &BenchCmd) -> anyhow::Result<()> {
    if !b.durable {
        bail!("--durable false is not in this build: every write is durable");
    }
    let cfg = t.config()?;
    let admin_token = match b.target.as_str() {
        "inproc" => None,
        "http" | "ws" | "tcp" => Some(t.admin_token()?),
        other => bail!("--target {other:?}: use inproc, http, ws or tcp"),
    };
    let args = BenchArgs {
        target: b.target.clone(),
        messages: b.messages,
        inflight: b.inflight,
        size: b.size,
        url: t.url.clone(),
        connect: b.connect.clone(),
        admin_token,
        timeout: Duration::from_secs(b.timeout_s),
        rate: b.rate,
        users: b.users,
        sessions: b.sessions,
        member: b.member.clone(),
        gateway_dir: b.gateway_dir.clone(),
        print_accepted: b.print_accepted,
        archive: b.archive,
    };
    let report = run(&args, &cfg)?;
    println!("{}", report.text());
    if b.json {
        println!("{}", report.json());
    }
    Ok(())
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
    /// tcp: a kept member id instead of `bench-<pid>`.
    pub member: Option<String>,
    /// tcp: a kept gateway data directory.
    pub gateway_dir: Option<std::path::PathBuf>,
    /// Print each accepted txn on stdout.
    pub print_accepted: bool,
    /// `inproc`: every message archived.
    pub archive: bool,
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
    if args.archive && args.target != "inproc" {
        bail!("--archive is for --target inproc (a running node archives what its policy says)");
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
        "inproc" => inproc::inproc(args, &tally)?,
        "http" => api::http(args, &tally)?,
        "ws" => api::ws(args, &tally)?,
        "tcp" => tcp::tcp(args, cfg, &tally)?,
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
        handoffs: tally.handoffs.lock().ok().and_then(|h| h.1),
        failed: tally.failures.lock().map(|f| f.0).unwrap_or_default(),
        first_failure: tally.failures.lock().ok().and_then(|f| f.1.clone()),
    })
}

/// When message `i` is due under `--rate` (`None`: at once). Latency is
/// measured from this moment, so a run that falls behind its schedule
/// counts the wait (no coordinated omission).
pub(crate) fn due(start: Instant, i: usize, rate: Option<f64>) -> Option<Instant> {
    rate.filter(|r| *r > 0.0)
        .map(|r| start + Duration::from_secs_f64(i as f64 / r))
}

/// The name of bench user `i` (`--users`).
pub(crate) fn user_name(i: usize) -> String {
    format!("u{i}")
}

pub(crate) fn body(size: usize, i: usize) -> String {
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
