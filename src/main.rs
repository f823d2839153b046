//! The `switchboard` binary: the command line (`switchboard::cli`) and the
//! load generator (`switchboard::bench`, `switchboard bench`) side by side,
//! so neither imports the other.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use switchboard::client::Target;
use switchboard::{bench, cli};

/// mimalloc instead of glibc's malloc: actors, frames and sled's pages are
/// many small short-lived allocations across threads, where glibc spent
/// ≈ 20 % of the node's CPU (`docs/PERFORMANCE.md`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Switchboard: a unified messaging broker.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about)]
struct Switchboard {
    #[command(flatten)]
    target: Target,
    /// What to do.
    #[command(subcommand)]
    command: Top,
}

/// The commands.
#[derive(Debug, Subcommand)]
enum Top {
    #[command(flatten)]
    Cli(cli::Command),
    /// The load generator: N messages through a node, from submit to
    /// delivered; reports msgs/s, latency, CPU, wire bytes, peak RSS.
    Bench(bench::BenchCmd),
}

fn run() -> anyhow::Result<()> {
    let matches = Switchboard::command().get_matches();
    let args = Switchboard::from_arg_matches(&matches)?;
    match &args.command {
        Top::Cli(c) => cli::run(&args.target, c, &matches),
        Top::Bench(b) => bench::command(&args.target, b),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("switchboard: {msg}");
            ExitCode::FAILURE
        }
    }
}
