//! The `switchboard` binary.

use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: actors, frames and sled's pages are
/// many small short-lived allocations across threads, where glibc spent
/// ≈ 20 % of the node's CPU (`docs/PERFORMANCE.md`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match switchboard::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("switchboard: {msg}");
            ExitCode::FAILURE
        }
    }
}
