//! Logs: `tracing` to stderr as `log.format` text or JSON, filtered by
//! `RUST_LOG` when set, else by `log.level`. The level can be changed while
//! the node runs (SIGHUP reload).
//!
//! Owns: the subscriber and its level. Must not touch: what is logged.

use std::sync::OnceLock;

use tracing_subscriber::prelude::*;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::config::Config;

struct Installed {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set at start: it keeps precedence over `log.level`.
    from_env: bool,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Installs the process's subscriber (once; later calls do nothing).
pub fn init(cfg: &Config) {
    let env = EnvFilter::try_from_default_env().ok();
    let from_env = env.is_some();
    let filter = env.unwrap_or_else(|| EnvFilter::new(&cfg.log.level));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let base = tracing_subscriber::registry().with(filter);
    let installed = if cfg.log.format == "json" {
        base.with(fmt.json()).try_init()
    } else {
        base.with(fmt).try_init()
    };
    if installed.is_ok() {
        let _ = INSTALLED.set(Installed { handle, from_env });
    }
}

/// What [`set_level`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelChange {
    /// The new level filters from now on.
    Applied,
    /// `RUST_LOG` was set at start and keeps precedence.
    RustLogWins,
    /// No subscriber of ours is installed (a library user's process).
    NotInstalled,
}

/// Filters logs at `level` (`error` … `trace`) from now on.
///
/// # Errors
/// When the filter cannot be swapped.
pub fn set_level(level: &str) -> Result<LevelChange, String> {
    let Some(i) = INSTALLED.get() else {
        return Ok(LevelChange::NotInstalled);
    };
    if i.from_env {
        return Ok(LevelChange::RustLogWins);
    }
    i.handle
        .reload(EnvFilter::new(level))
        .map_err(|e| e.to_string())?;
    Ok(LevelChange::Applied)
}
