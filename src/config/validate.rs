//! The checks a merged configuration must pass before anything starts:
//! every error names the key and why.

use std::net::SocketAddr;

use super::sections::{host_port, nats_url, valid_node_id};
use super::{invalid, Config, ConfigError};

impl Config {
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
        pem_pair("http", &self.http.tls_cert, &self.http.tls_key)?;
        connection_caps(
            "http",
            self.http.max_connections,
            self.http.max_connections_per_peer,
        )?;
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
        if self.miap.unauthenticated_total < self.miap.unauthenticated_per_peer {
            return Err(invalid(
                "miap.unauthenticated_total",
                "must be at least miap.unauthenticated_per_peer",
            ));
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
        pem_pair("miap", &self.miap.tls_cert, &self.miap.tls_key)?;
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
            if self.email.dsn_per_hour == 0 && self.email.dsn != "none" {
                return Err(invalid(
                    "email.dsn_per_hour",
                    "must be at least 1 (or set email.dsn = \"none\")",
                ));
            }
            if self.email.dsn_per_hour_per_address == 0 && self.email.dsn != "none" {
                return Err(invalid(
                    "email.dsn_per_hour_per_address",
                    "must be at least 1 (or set email.dsn = \"none\")",
                ));
            }
            if let Some(bad) = self.email.dsn_verified_domains.iter().find(|d| {
                d.is_empty() || d.contains(['@', ' ']) || !d.contains('.') && *d != "localhost"
            }) {
                return Err(invalid(
                    "email.dsn_verified_domains",
                    format!("{bad:?} is not a domain"),
                ));
            }
            pem_pair("email", &self.email.tls_cert, &self.email.tls_key)?;
            if self.email.require_tls && self.email.tls_cert.is_empty() {
                return Err(invalid(
                    "email.require_tls",
                    "needs email.tls_cert and email.tls_key",
                ));
            }
            connection_caps(
                "email",
                self.email.max_connections,
                self.email.max_connections_per_peer,
            )?;
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
            if self.email.max_fanout_bytes < self.email.max_message_bytes {
                return Err(invalid(
                    "email.max_fanout_bytes",
                    "must be at least email.max_message_bytes (one recipient of the largest mail)",
                ));
            }
        }
        if self.sms.enabled {
            self.sms.validate()?;
        }
        self.check_cluster()?;
        self.check_archive()?;
        Ok(())
    }
}

impl Config {
    /// Settings that work but that an operator should know the cost of:
    /// `section.key: why` each (printed by `config check`, logged at start).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.email.enabled && self.email.relay_tls == "opportunistic" {
            w.push(
                "email.relay_tls: \"opportunistic\" encrypts mail to the relay when it offers \
                 STARTTLS but does not verify its certificate (someone on the path can read \
                 the mail); \"required\" verifies it"
                    .to_string(),
            );
        }
        if self.email.enabled && self.email.tls_cert.is_empty() {
            w.push(
                "email.tls_cert: not set, so SMTP AUTH is never offered (it needs TLS): users \
                 cannot submit mail by SMTP, all mail is from external senders"
                    .to_string(),
            );
        }
        w
    }

    /// The `[archive]` keys: a cadence, and fingerprints apart from the
    /// records (a copy next to what it proves proves less).
    fn check_archive(&self) -> Result<(), ConfigError> {
        let a = &self.archive;
        if a.checkpoint_every == 0 {
            return Err(invalid("archive.checkpoint_every", "must be at least 1"));
        }
        if a.checkpoint_interval_s == 0 {
            return Err(invalid(
                "archive.checkpoint_interval_s",
                "must be at least 1",
            ));
        }
        let (dir, fp) = (a.dir(&self.data.dir), a.fingerprints(&self.data.dir));
        if fp.starts_with(&dir) || dir.starts_with(&fp) {
            return Err(invalid(
                "archive.fingerprints_dir",
                format!(
                    "must be another path than archive.dir ({} and {} overlap)",
                    fp.display(),
                    dir.display()
                ),
            ));
        }
        Ok(())
    }

    /// The `[cluster]` keys, checked whether or not cluster mode is on.
    fn check_cluster(&self) -> Result<(), ConfigError> {
        let c = &self.cluster;
        if !c.node_id.is_empty() && !valid_node_id(&c.node_id) {
            return Err(invalid(
                "cluster.node_id",
                "1 to 64 of A-Z a-z 0-9 . _ - (or empty: the host name)",
            ));
        }
        if c.nats_urls.is_empty() {
            return Err(invalid(
                "cluster.nats_urls",
                "must name at least one server",
            ));
        }
        if let Some(bad) = c.nats_urls.iter().find(|u| !nats_url(u)) {
            return Err(invalid(
                "cluster.nats_urls",
                format!("{bad:?} is not nats://host:port or tls://host:port"),
            ));
        }
        if !(1..=5).contains(&c.replicas) {
            return Err(invalid(
                "cluster.replicas",
                "must be 1 to 5 (JetStream's limit; 3 in production)",
            ));
        }
        if c.heartbeat_s == 0 {
            return Err(invalid("cluster.heartbeat_s", "must be at least 1"));
        }
        if c.ack_wait_s <= c.heartbeat_s {
            return Err(invalid(
                "cluster.ack_wait_s",
                "must be longer than cluster.heartbeat_s",
            ));
        }
        Ok(())
    }
}

/// A section's `tls_cert` and `tls_key`: both or neither.
fn pem_pair(section: &str, cert: &str, key: &str) -> Result<(), ConfigError> {
    if cert.is_empty() != key.is_empty() {
        return Err(invalid(
            &format!("{section}.tls_cert"),
            format!("set both {section}.tls_cert and {section}.tls_key, or neither"),
        ));
    }
    Ok(())
}

/// A section's `max_connections` and `max_connections_per_peer`: one
/// address gets at least one and at most all.
fn connection_caps(section: &str, total: usize, per_peer: usize) -> Result<(), ConfigError> {
    if per_peer == 0 || total < per_peer {
        return Err(invalid(
            &format!("{section}.max_connections_per_peer"),
            format!("must be at least 1 and at most {section}.max_connections"),
        ));
    }
    Ok(())
}
