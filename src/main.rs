//! The `switchboard` binary.

use std::process::ExitCode;

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
