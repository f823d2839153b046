//! The configuration's sections, one struct each, every field documented
//! (`config/default.toml` carries the same words as comments).

use std::path::PathBuf;

use serde::Deserialize;

use super::{invalid, ConfigError};

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
    /// Open connections in all (WebSocket sessions included).
    pub max_connections: usize,
    /// Open connections per client address.
    pub max_connections_per_peer: usize,
    /// TLS on the listener: a PEM certificate chain (with `tls_key`).
    pub tls_cert: String,
    /// Its private key (PEM).
    pub tls_key: String,
}

impl Http {
    /// How the listener runs: its address, caps and TLS.
    ///
    /// # Errors
    /// Certificate or key files that cannot be used.
    pub fn listener(&self) -> anyhow::Result<crate::http::Listener> {
        let tls = if self.tls_cert.is_empty() {
            None
        } else {
            Some(crate::tls::server_config(
                std::path::Path::new(&self.tls_cert),
                std::path::Path::new(&self.tls_key),
                ("http.tls_cert", "http.tls_key"),
            )?)
        };
        Ok(crate::http::Listener {
            addr: self.listen.clone(),
            caps: crate::http::Caps {
                total: self.max_connections,
                per_peer: self.max_connections_per_peer,
            },
            tls,
        })
    }
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
    /// Connections not logged in allowed in all.
    pub unauthenticated_total: usize,
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
    /// Most bytes one mail may commit to local inboxes (size × recipients).
    pub max_fanout_bytes: usize,
    /// Simultaneous SMTP connections.
    pub max_connections: usize,
    /// Simultaneous SMTP connections per client address.
    pub max_connections_per_peer: usize,
    /// Delivery-status notifications to email senders: `failure`, `all`, `none`.
    pub dsn: String,
    /// Domains whose envelope senders get DSNs without logging in (their
    /// mail reaches this server only through relays that check senders).
    pub dsn_verified_domains: Vec<String>,
    /// DSNs per hour, in all.
    pub dsn_per_hour: u32,
    /// DSNs per hour to one address.
    pub dsn_per_hour_per_address: u32,
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
    /// The SMSC's alphabet for `data_coding` 0: `gsm`, `ascii`, `latin1`.
    pub data_coding_0: String,
    /// The SMSC's alphabet for `data_coding` 1 (IA5): `ascii`, `gsm`, `latin1`.
    pub data_coding_1: String,
    /// Seconds between `enquire_link`s.
    pub enquire_link_s: u64,
    /// Longest wait for the SMSC's answer to a request, seconds.
    pub response_timeout_s: u64,
    /// Longest time a message waits for the SMSC to take it before it is a
    /// non-delivery (and the next mechanism is tried), seconds.
    pub submit_timeout_s: u64,
}

impl Sms {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
        for (key, v) in [
            ("sms.data_coding_0", &self.data_coding_0),
            ("sms.data_coding_1", &self.data_coding_1),
        ] {
            // The names `gateways::sms::pdu::Alphabet::parse` takes.
            if !matches!(v.as_str(), "gsm" | "ascii" | "latin1") {
                return Err(invalid(key, format!("{v:?} is not gsm, ascii or latin1")));
            }
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
pub(super) fn host_port(s: &str) -> bool {
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

/// `[archive]`: the compliance archive (COMPLIANCE.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Archive {
    /// Record deliveries of archived scopes.
    pub enabled: bool,
    /// Records and contents; empty: `DATA/archive`.
    pub dir: String,
    /// The hash chain and checkpoints; empty: `DATA/archive-fingerprints`.
    pub fingerprints_dir: String,
    /// A checkpoint after this many records.
    pub checkpoint_every: u64,
    /// Or this long (s) after a record not yet covered.
    pub checkpoint_interval_s: u64,
    /// The signing key's file; empty: `DATA/archive.key`.
    pub signing_key: String,
}

impl Archive {
    fn or_in(v: &str, data: &std::path::Path, name: &str) -> std::path::PathBuf {
        if v.is_empty() {
            data.join(name)
        } else {
            std::path::PathBuf::from(v)
        }
    }

    /// The records' directory.
    pub fn dir(&self, data: &std::path::Path) -> std::path::PathBuf {
        Self::or_in(&self.dir, data, "archive")
    }

    /// The fingerprints' directory.
    pub fn fingerprints(&self, data: &std::path::Path) -> std::path::PathBuf {
        Self::or_in(&self.fingerprints_dir, data, "archive-fingerprints")
    }

    /// The signing key's file.
    pub fn key_file(&self, data: &std::path::Path) -> std::path::PathBuf {
        Self::or_in(&self.signing_key, data, "archive.key")
    }
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

/// `[cluster]`: cluster mode over NATS JetStream (`CLUSTER.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Cluster mode.
    pub enabled: bool,
    /// This node's id in the cluster (empty: the host name).
    pub node_id: String,
    /// The NATS servers, `nats://host:port` or `tls://host:port`.
    pub nats_urls: Vec<String>,
    /// How many NATS servers hold each stream and bucket (1–5).
    pub replicas: u32,
    /// How often a node tells the cluster it is alive, in seconds.
    pub heartbeat_s: u64,
    /// How long a node's unacknowledged transaction step waits before
    /// another node takes it over, in seconds.
    pub ack_wait_s: u64,
    /// A PEM file of the CA that signs the NATS servers' certificates
    /// (empty: the system's roots).
    pub tls_ca: String,
    /// A NATS credentials file (empty: none).
    pub creds: String,
}

impl Cluster {
    /// What the cluster engine is configured with.
    pub fn settings(&self) -> switchboard_core::cluster::Settings {
        let path = |p: &str| (!p.is_empty()).then(|| std::path::PathBuf::from(p));
        switchboard_core::cluster::Settings {
            node_id: self.node(),
            urls: self.nats_urls.clone(),
            replicas: self.replicas as usize,
            heartbeat: std::time::Duration::from_secs(self.heartbeat_s),
            ack_wait: std::time::Duration::from_secs(self.ack_wait_s),
            tls_ca: path(&self.tls_ca),
            creds: path(&self.creds),
        }
    }

    /// The node's id: `node_id`, or the host name when that is empty.
    pub fn node(&self) -> String {
        if !self.node_id.is_empty() {
            return self.node_id.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| valid_node_id(h))
            .unwrap_or_else(|| "node".to_string())
    }
}

pub use switchboard_core::directory::valid_node_id;

/// `nats://host:port` or `tls://host:port`.
pub(super) fn nats_url(s: &str) -> bool {
    s.strip_prefix("nats://")
        .or_else(|| s.strip_prefix("tls://"))
        .is_some_and(host_port)
}
