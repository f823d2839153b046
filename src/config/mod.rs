//! Configuration: serde with `deny_unknown_fields`, the default embedded from
//! `config/default.toml`, overridden by a file and then by environment
//! variables `SWITCHBOARD_<SECTION>__<KEY>`. Errors name the bad key and why.
//!
//! Rooms: the typed sections (`sections.rs`), how the layers are read and
//! merged (`sources.rs`), and the checks a loaded configuration must pass
//! ([`validate`](Config::validate), in `validate.rs`).
//!
//! Owns: keys, defaults and their checks. Must not touch: anything running
//! (a reload is the node's, which reads this).

mod sections;
mod sources;
mod validate;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use sections::{
    Archive, Broker, Cluster, Data, Delivery, Email, Fax, Http, Log, Miap, Presence, Shutdown, Sms,
};
pub use sources::apply_env;
use sources::{merge, parse_table, renamed};

/// The default configuration, as shipped.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Data directory.
    pub data: Data,
    /// HTTP API.
    pub http: Http,
    /// MIAP (remote members).
    pub miap: Miap,
    /// The broker.
    pub broker: Broker,
    /// Delivery managers.
    pub delivery: Delivery,
    /// Presence.
    pub presence: Presence,
    /// Email gateway.
    pub email: Email,
    /// SMS gateway.
    pub sms: Sms,
    /// Fax gateway.
    pub fax: Fax,
    /// The compliance archive.
    pub archive: Archive,
    /// Logging.
    pub log: Log,
    /// Shutdown.
    pub shutdown: Shutdown,
    /// Cluster mode.
    pub cluster: Cluster,
    /// The merged settings it was read from (default, file, environment),
    /// to tell what a reload changed.
    #[serde(skip)]
    pub source: toml::Table,
}

/// The keys a reload (SIGHUP) applies to a running node; a change to any
/// other key is logged as needing a restart.
pub const RELOADABLE: [&str; 3] = [
    "log.level",
    "delivery.default_manager",
    "delivery.im_offline",
];

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The TOML is not valid or has unknown/mistyped keys.
    #[error("{origin}: {message}")]
    Parse {
        /// Where the TOML came from.
        origin: String,
        /// What is wrong (names the key).
        message: String,
    },
    /// A key has a value that cannot work.
    #[error("{key}: {reason}")]
    Invalid {
        /// `section.key`.
        key: String,
        /// Why.
        reason: String,
    },
}

pub(crate) fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        reason: reason.into(),
    }
}

impl Config {
    /// The embedded default, then `file` if given, then the environment.
    ///
    /// # Errors
    /// A file that cannot be read, bad TOML, an unknown or mistyped key, or
    /// a value that cannot work — naming the key.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with(file, std::env::vars())
    }

    /// As [`Config::load`] with explicit environment variables (tests).
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn load_with(
        file: Option<&Path>,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = match file {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                        path: path.to_path_buf(),
                        error,
                    })?,
                )
            }
            None => None,
        };
        let origin = file.map_or("config".to_string(), |p| p.display().to_string());
        Self::from_text(text.as_deref(), &origin, vars)
    }

    /// As [`Config::load_with`] with the file's text at hand (`origin`
    /// names it in errors).
    ///
    /// # Errors
    /// As [`Config::load`], but for reading.
    pub fn from_text(
        text: Option<&str>,
        origin: &str,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = parse_table(DEFAULT_TOML, "default config")?;
        if let Some(text) = text {
            let mut over = parse_table(text, origin)?;
            renamed(&mut over);
            merge(&mut table, over);
        }
        apply_env(&mut table, vars)?;
        let origin = origin.to_string();
        let mut cfg: Config = serde_path_to_error::deserialize(toml::Value::Table(table.clone()))
            .map_err(|e| {
            let key = e.path().to_string();
            let message = e.inner().message().to_string();
            if key == "." {
                ConfigError::Parse { origin, message }
            } else {
                ConfigError::Invalid {
                    key,
                    reason: message,
                }
            }
        })?;
        cfg.validate()?;
        cfg.source = table;
        Ok(cfg)
    }

    /// The `section.key`s whose values differ between `self` and `newer`,
    /// sorted.
    pub fn changed_keys(&self, newer: &Config) -> Vec<String> {
        fn flat(
            prefix: &str,
            t: &toml::Table,
            out: &mut std::collections::BTreeMap<String, String>,
        ) {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    toml::Value::Table(inner) => flat(&key, inner, out),
                    other => {
                        out.insert(key, other.to_string());
                    }
                }
            }
        }
        let (mut a, mut b) = (Default::default(), Default::default());
        flat("", &self.source, &mut a);
        flat("", &newer.source, &mut b);
        let mut keys: Vec<String> = a
            .keys()
            .chain(b.keys())
            .filter(|k| a.get(*k) != b.get(*k))
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}
