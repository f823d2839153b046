//! Configuration: serde with `deny_unknown_fields`, the default embedded from
//! `config/default.toml`, overridden by a file and then by environment
//! variables `SWITCHBOARD_<SECTION>__<KEY>`. Errors name the bad key and why.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The default configuration, as shipped.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

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

/// `[data]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Data {
    /// Where the node keeps its database, keys and admin token.
    pub dir: PathBuf,
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    /// Listen address.
    pub listen: String,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// How long a submit waits for the broker's decision, seconds.
    pub submit_timeout_s: u64,
}

/// `[miap]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Miap {
    /// Listen address for remote members.
    pub listen: String,
    /// Allowed clock skew, ms.
    pub skew_ms: u64,
    /// Session lifetime, seconds.
    pub session_ttl_s: u64,
    /// Largest frame, bytes.
    pub max_frame_bytes: usize,
    /// Grace period of a rotated key, seconds.
    pub key_grace_s: u64,
    /// Time a new connection has to log in, seconds.
    pub login_timeout_s: u64,
    /// Connections not logged in allowed per peer address.
    pub unauthenticated_per_peer: usize,
    /// TLS on the listener: a PEM certificate chain (with `tls_key`).
    pub tls_cert: String,
    /// The certificate's private key (PEM).
    pub tls_key: String,
}

/// `[broker]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Broker {
    /// The broker's id.
    pub id: String,
    /// Number of shards.
    pub shards: usize,
    /// Default message lifetime, seconds.
    pub default_expires_in_s: u64,
    /// Longest message lifetime, seconds.
    pub max_expires_in_s: u64,
}

/// `[delivery]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// Manager for messages whose recipient names none.
    pub default_manager: String,
    /// `move_on` or `wait`: IM attempts for recipients without a session.
    pub im_offline: String,
}

/// `[presence]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Presence {
    /// Idle seconds before online turns into away.
    pub idle_timeout_s: u64,
}

/// `[email]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Email {
    /// Run the email gateway.
    pub enabled: bool,
    /// SMTP listen address.
    pub listen: String,
    /// Local domains.
    pub local_domains: Vec<String>,
    /// Outbound relay.
    pub relay: String,
    /// Largest message, bytes.
    pub max_message_bytes: usize,
    /// Delivery-status notifications to email senders: `failure`, `all`, `none`.
    pub dsn: String,
    /// PEM certificate chain for STARTTLS on the SMTP server (with `tls_key`).
    pub tls_cert: String,
    /// PEM private key for STARTTLS.
    pub tls_key: String,
    /// Refuse mail on a connection that has not started TLS.
    pub require_tls: bool,
    /// TLS to the relay: `none`, `opportunistic` (STARTTLS when offered,
    /// certificate not verified) or `required` (certificate verified).
    pub relay_tls: String,
    /// Extra PEM root certificate(s) trusted for the relay (`required`).
    pub relay_ca: String,
}

/// `[sms]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sms {
    /// Run the SMS gateway.
    pub enabled: bool,
    /// The SMSC.
    pub smsc: String,
    /// SMPP system_id.
    pub system_id: String,
    /// SMPP password.
    pub password: String,
    /// Unanswered `submit_sm` allowed.
    pub window: u32,
    /// Our address: the source of messages from users and of notices
    /// (`+…` international, digits, or up to 11 letters and digits).
    pub source: String,
    /// Receipts to SMS senders: `failure`, `all`, `none`.
    pub receipts: String,
    /// Seconds between `enquire_link`s.
    pub enquire_link_s: u64,
    /// Longest wait for the SMSC's answer to a request, seconds.
    pub response_timeout_s: u64,
    /// Longest time a message waits for the SMSC to take it before it is a
    /// non-delivery (and the next mechanism is tried), seconds.
    pub submit_timeout_s: u64,
}

impl Sms {
    fn validate(&self) -> Result<(), ConfigError> {
        if !host_port(&self.smsc) {
            return Err(invalid(
                "sms.smsc",
                format!("{:?} is not host:port", self.smsc),
            ));
        }
        // SMPP 3.4 field sizes, NUL excluded.
        if self.system_id.is_empty() || self.system_id.len() > 15 {
            return Err(invalid("sms.system_id", "must be 1 to 15 characters"));
        }
        if self.password.len() > 8 {
            return Err(invalid("sms.password", "must be at most 8 characters"));
        }
        if !(1..=1000).contains(&self.window) {
            return Err(invalid("sms.window", "must be 1 to 1000"));
        }
        let digits = self.source.strip_prefix('+').unwrap_or(&self.source);
        let numeric =
            !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit());
        let alphanumeric = (1..=11).contains(&self.source.len())
            && self.source.bytes().all(|b| b.is_ascii_alphanumeric());
        if !(numeric || alphanumeric) {
            return Err(invalid(
                "sms.source",
                format!(
                    "{:?} is neither a number nor up to 11 letters and digits",
                    self.source
                ),
            ));
        }
        if !matches!(self.receipts.as_str(), "failure" | "all" | "none") {
            return Err(invalid(
                "sms.receipts",
                format!("{:?} is not failure, all or none", self.receipts),
            ));
        }
        for (key, v) in [
            ("sms.enquire_link_s", self.enquire_link_s),
            ("sms.response_timeout_s", self.response_timeout_s),
            ("sms.submit_timeout_s", self.submit_timeout_s),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// Whether `s` is `host:port`.
fn host_port(s: &str) -> bool {
    s.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}

/// `[fax]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fax {
    /// Run the fax gateway.
    pub enabled: bool,
    /// Spool directory.
    pub spool: String,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// Level.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

/// `[shutdown]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shutdown {
    /// Longest wait for in-flight work, seconds.
    pub timeout_s: u64,
}

/// `[cluster]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Cluster mode.
    pub enabled: bool,
    /// NATS URL.
    pub nats_url: String,
    /// Node id.
    pub node_id: String,
}

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

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        reason: reason.into(),
    }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn parse_table(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| ConfigError::Parse {
        origin: origin.to_string(),
        message: e.message().to_string(),
    })
}

/// Applies `SWITCHBOARD_<SECTION>__<KEY>` variables from `vars` to `table`.
/// A value is read as TOML (numbers, booleans, lists) and otherwise as a string.
///
/// # Errors
/// A variable naming a section that does not exist.
pub fn apply_env(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("SWITCHBOARD_") else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"));
        match table.get_mut(&section) {
            Some(toml::Value::Table(t)) => {
                // A key whose default is a string takes the value as written
                // (`+4930…` stays a number's text), unless it is quoted.
                let wants_string = matches!(t.get(&key), Some(toml::Value::String(_)));
                let v = match parsed {
                    Some(p @ toml::Value::String(_)) => p,
                    Some(p) if !wants_string => p,
                    _ => toml::Value::String(value),
                };
                t.insert(key, v);
            }
            _ => {
                return Err(invalid(
                    &format!("{section}.{key}"),
                    format!("{name} names no config section {section:?}"),
                ))
            }
        }
    }
    Ok(())
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
        let mut table = parse_table(DEFAULT_TOML, "default config")?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                path: path.to_path_buf(),
                error,
            })?;
            merge(&mut table, parse_table(&text, &path.display().to_string())?);
        }
        apply_env(&mut table, vars)?;
        let origin = file.map_or("config".to_string(), |p| p.display().to_string());
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

    /// Checks values that parse but cannot work.
    ///
    /// # Errors
    /// The first bad key and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, addr) in [
            ("http.listen", &self.http.listen),
            ("miap.listen", &self.miap.listen),
            ("email.listen", &self.email.listen),
        ] {
            addr.parse::<SocketAddr>()
                .map_err(|e| invalid(key, format!("{addr:?} is not host:port ({e})")))?;
        }
        if self.data.dir.as_os_str().is_empty() {
            return Err(invalid("data.dir", "must not be empty"));
        }
        if self.http.max_body_bytes < 1024 {
            return Err(invalid("http.max_body_bytes", "must be at least 1024"));
        }
        if self.http.submit_timeout_s == 0 {
            return Err(invalid("http.submit_timeout_s", "must be at least 1"));
        }
        if !(1..=64).contains(&self.broker.shards) {
            return Err(invalid("broker.shards", "must be between 1 and 64"));
        }
        if self.broker.id.is_empty() || self.broker.id.len() > 64 {
            return Err(invalid("broker.id", "must be 1 to 64 characters"));
        }
        if self.broker.default_expires_in_s == 0
            || self.broker.default_expires_in_s > self.broker.max_expires_in_s
        {
            return Err(invalid(
                "broker.default_expires_in_s",
                "must be between 1 and broker.max_expires_in_s",
            ));
        }
        if self.miap.skew_ms == 0 {
            return Err(invalid("miap.skew_ms", "must be positive"));
        }
        if self.miap.session_ttl_s < 10 {
            return Err(invalid("miap.session_ttl_s", "must be at least 10"));
        }
        if self.miap.login_timeout_s == 0 {
            return Err(invalid("miap.login_timeout_s", "must be at least 1"));
        }
        if self.miap.unauthenticated_per_peer == 0 {
            return Err(invalid(
                "miap.unauthenticated_per_peer",
                "must be at least 1",
            ));
        }
        if self.miap.max_frame_bytes < 1024 {
            return Err(invalid("miap.max_frame_bytes", "must be at least 1024"));
        }
        if !switchboard_core::policy::valid_name(&self.delivery.default_manager) {
            return Err(invalid("delivery.default_manager", "1-64 of a-z 0-9 _ -"));
        }
        if !matches!(self.delivery.im_offline.as_str(), "move_on" | "wait") {
            return Err(invalid(
                "delivery.im_offline",
                format!(
                    "{:?} is neither \"move_on\" nor \"wait\"",
                    self.delivery.im_offline
                ),
            ));
        }
        if self.presence.idle_timeout_s == 0 {
            return Err(invalid("presence.idle_timeout_s", "must be at least 1"));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid(
                "log.format",
                format!("{:?} is neither \"text\" nor \"json\"", self.log.format),
            ));
        }
        if !matches!(
            self.log.level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) {
            return Err(invalid(
                "log.level",
                format!(
                    "{:?} is not one of error, warn, info, debug, trace",
                    self.log.level
                ),
            ));
        }
        if self.miap.tls_cert.is_empty() != self.miap.tls_key.is_empty() {
            return Err(invalid(
                "miap.tls_cert",
                "set both miap.tls_cert and miap.tls_key, or neither",
            ));
        }
        if self.email.enabled {
            if self.email.local_domains.is_empty() {
                return Err(invalid(
                    "email.local_domains",
                    "at least one domain is needed when email is enabled",
                ));
            }
            if !host_port(&self.email.relay) {
                return Err(invalid(
                    "email.relay",
                    format!("{:?} is not host:port", self.email.relay),
                ));
            }
            if !matches!(self.email.dsn.as_str(), "failure" | "all" | "none") {
                return Err(invalid(
                    "email.dsn",
                    format!("{:?} is not failure, all or none", self.email.dsn),
                ));
            }
            if self.email.tls_cert.is_empty() != self.email.tls_key.is_empty() {
                return Err(invalid(
                    "email.tls_cert",
                    "set both email.tls_cert and email.tls_key, or neither",
                ));
            }
            if self.email.require_tls && self.email.tls_cert.is_empty() {
                return Err(invalid(
                    "email.require_tls",
                    "needs email.tls_cert and email.tls_key",
                ));
            }
            if !matches!(
                self.email.relay_tls.as_str(),
                "none" | "opportunistic" | "required"
            ) {
                return Err(invalid(
                    "email.relay_tls",
                    format!(
                        "{:?} is not none, opportunistic or required",
                        self.email.relay_tls
                    ),
                ));
            }
            if self.email.max_message_bytes < 1024 {
                return Err(invalid("email.max_message_bytes", "must be at least 1024"));
            }
        }
        if self.sms.enabled {
            self.sms.validate()?;
        }
        if self.cluster.enabled {
            return Err(invalid(
                "cluster.enabled",
                "this build does not include it yet; leave it false",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn default_loads() {
        let c = Config::load_with(None, env(&[])).unwrap();
        assert_eq!(c.http.listen, "127.0.0.1:8080");
        assert_eq!(c.broker.shards, 2);
    }

    #[test]
    fn env_overrides_every_kind_of_value() {
        let c = Config::load_with(
            None,
            env(&[
                ("SWITCHBOARD_HTTP__LISTEN", "127.0.0.1:0"),
                ("SWITCHBOARD_BROKER__SHARDS", "4"),
                (
                    "SWITCHBOARD_EMAIL__LOCAL_DOMAINS",
                    r#"["example.com","example.org"]"#,
                ),
                ("SWITCHBOARD_DATA__DIR", "/tmp/x y"),
                ("SWITCHBOARD_ADMIN_TOKEN", "ignored: not a config key"),
            ]),
        )
        .unwrap();
        assert_eq!(c.http.listen, "127.0.0.1:0");
        assert_eq!(c.broker.shards, 4);
        assert_eq!(c.email.local_domains, vec!["example.com", "example.org"]);
        assert_eq!(c.data.dir, PathBuf::from("/tmp/x y"));
    }

    #[test]
    fn bad_keys_are_named() {
        let e = Config::load_with(None, env(&[("SWITCHBOARD_HTTP__LISTN", "x")])).unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
        let e = Config::load_with(None, env(&[("SWITCHBOARD_NOPE__X", "1")])).unwrap_err();
        assert!(e.to_string().contains("nope.x"), "{e}");
        let e = Config::load_with(None, env(&[("SWITCHBOARD_BROKER__SHARDS", "0")])).unwrap_err();
        assert!(e.to_string().starts_with("broker.shards"), "{e}");
        let e =
            Config::load_with(None, env(&[("SWITCHBOARD_BROKER__SHARDS", "many")])).unwrap_err();
        assert!(
            e.to_string().starts_with("broker.shards: invalid type"),
            "{e}"
        );
        let e =
            Config::load_with(None, env(&[("SWITCHBOARD_HTTP__LISTEN", "nowhere")])).unwrap_err();
        assert!(e.to_string().starts_with("http.listen"), "{e}");
        let e = Config::load_with(None, env(&[("SWITCHBOARD_LOG__FORMAT", "xml")])).unwrap_err();
        assert!(e.to_string().starts_with("log.format"), "{e}");
    }

    #[test]
    fn every_key_of_the_default_is_documented() {
        // Each key line follows a comment, directly or through the key
        // lines of its group (`tls_cert`/`tls_key`).
        let lines: Vec<&str> = DEFAULT_TOML.lines().collect();
        let is_key = |l: &str| !l.starts_with('#') && !l.starts_with('[') && l.contains('=');
        let mut keys = 0;
        for (i, l) in lines.iter().enumerate() {
            if !is_key(l) {
                continue;
            }
            keys += 1;
            let above = lines[..i].iter().rev().find(|p| !is_key(p));
            assert!(
                above.is_some_and(|p| p.starts_with('#')),
                "config/default.toml: {l:?} has no comment"
            );
        }
        assert!(keys >= 40, "{keys} keys");
    }

    #[test]
    fn changed_keys_names_what_differs() {
        let load = |vars: &[(&str, &str)]| {
            Config::load_with(
                None,
                vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            )
            .unwrap()
        };
        let a = load(&[]);
        assert!(a.changed_keys(&a).is_empty());
        let b = load(&[
            ("SWITCHBOARD_LOG__LEVEL", "debug"),
            ("SWITCHBOARD_BROKER__SHARDS", "3"),
        ]);
        assert_eq!(a.changed_keys(&b), ["broker.shards", "log.level"]);
        assert!(RELOADABLE.contains(&"log.level") && !RELOADABLE.contains(&"broker.shards"));
    }

    #[test]
    fn sms_settings_are_checked_when_enabled() {
        let on = |k: &str, v: &str| {
            Config::load_with(None, env(&[("SWITCHBOARD_SMS__ENABLED", "true"), (k, v)]))
        };
        assert!(on("SWITCHBOARD_SMS__WINDOW", "10").is_ok());
        assert!(on("SWITCHBOARD_SMS__SOURCE", "+4930123456").is_ok());
        for (key, value, name) in [
            ("SWITCHBOARD_SMS__SMSC", "nowhere", "sms.smsc"),
            ("SWITCHBOARD_SMS__SYSTEM_ID", "", "sms.system_id"),
            (
                "SWITCHBOARD_SMS__SYSTEM_ID",
                "a-very-long-system-id",
                "sms.system_id",
            ),
            ("SWITCHBOARD_SMS__PASSWORD", "ninechars", "sms.password"),
            ("SWITCHBOARD_SMS__WINDOW", "0", "sms.window"),
            ("SWITCHBOARD_SMS__SOURCE", "Switchboard Inc", "sms.source"),
            ("SWITCHBOARD_SMS__SOURCE", "TooLongSender", "sms.source"),
            ("SWITCHBOARD_SMS__RECEIPTS", "sometimes", "sms.receipts"),
            ("SWITCHBOARD_SMS__ENQUIRE_LINK_S", "0", "sms.enquire_link_s"),
        ] {
            let e = on(key, value).unwrap_err();
            assert!(e.to_string().starts_with(name), "{key}={value}: {e}");
        }
        // Off, the section is not checked.
        assert!(Config::load_with(None, env(&[("SWITCHBOARD_SMS__WINDOW", "0")])).is_ok());
    }

    #[test]
    fn miap_tls_needs_both_files() {
        let e =
            Config::load_with(None, env(&[("SWITCHBOARD_MIAP__TLS_KEY", "/k.pem")])).unwrap_err();
        assert!(e.to_string().starts_with("miap.tls_cert"), "{e}");
        let both = [
            ("SWITCHBOARD_MIAP__TLS_CERT", "/c.pem"),
            ("SWITCHBOARD_MIAP__TLS_KEY", "/k.pem"),
        ];
        assert!(Config::load_with(None, env(&both)).is_ok());
    }

    #[test]
    fn email_tls_settings_are_checked() {
        let on = |pairs: &[(&str, &str)]| {
            let mut v = vec![("SWITCHBOARD_EMAIL__ENABLED", "true")];
            v.extend_from_slice(pairs);
            Config::load_with(None, env(&v))
        };
        assert!(on(&[("SWITCHBOARD_EMAIL__RELAY_TLS", "required")]).is_ok());
        for (pairs, name) in [
            (
                &[("SWITCHBOARD_EMAIL__TLS_CERT", "/c.pem")][..],
                "email.tls_cert",
            ),
            (
                &[("SWITCHBOARD_EMAIL__REQUIRE_TLS", "true")][..],
                "email.require_tls",
            ),
            (
                &[("SWITCHBOARD_EMAIL__RELAY_TLS", "maybe")][..],
                "email.relay_tls",
            ),
        ] {
            let e = on(pairs).unwrap_err();
            assert!(e.to_string().starts_with(name), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn a_file_overrides_the_default_and_unknown_keys_fail() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[broker]\nshards = 3\n").unwrap();
        assert_eq!(
            Config::load_with(Some(&f), env(&[])).unwrap().broker.shards,
            3
        );
        std::fs::write(&f, "[broker]\nshardz = 3\n").unwrap();
        let e = Config::load_with(Some(&f), env(&[])).unwrap_err();
        assert!(e.to_string().contains("shardz"), "{e}");
        std::fs::write(&f, "[broker\n").unwrap();
        assert!(matches!(
            Config::load_with(Some(&f), env(&[])),
            Err(ConfigError::Parse { .. })
        ));
    }
}
