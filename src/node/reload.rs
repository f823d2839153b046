//! `SIGHUP`: the configuration read again and what may change at run
//! time applied at once; every other changed key is logged as needing a
//! restart, and an invalid file changes nothing.

use std::path::Path;

use switchboard_actors::delivery::SetDefault;

use super::assembly::Node;
use crate::config::{Config, RELOADABLE};

impl Node {
    /// Reloads the configuration from `file` (and the environment) over
    /// `current`, the configuration in effect. An invalid configuration
    /// changes nothing (the error names the key). Of the changed keys,
    /// those in [`RELOADABLE`] take effect at once — `log.level`,
    /// `delivery.default_manager` (an existing manager), `delivery.im_offline`
    /// — and every other is logged as needing a restart. Returns the
    /// configuration now in effect.
    pub async fn reload(&self, current: &Config, file: Option<&Path>) -> Config {
        let (next, result) = self.reread(current, file).await;
        // Counted once the reload is over, whatever it did: the moment the
        // new settings are in force (or refused).
        metrics::counter!("switchboard_config_reloads_total", "result" => result).increment(1);
        next
    }

    async fn reread(&self, current: &Config, file: Option<&Path>) -> (Config, &'static str) {
        let newer = match Config::load(file) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "configuration not reloaded: nothing changed");
                return (current.clone(), "invalid");
            }
        };
        let changed = current.changed_keys(&newer);
        if changed.is_empty() {
            tracing::info!("configuration reloaded: nothing changed");
            return (current.clone(), "unchanged");
        }
        let mut now = current.clone();
        for key in &changed {
            if !RELOADABLE.contains(&key.as_str()) {
                tracing::warn!(key = %key, "changed; takes effect after a restart");
                continue;
            }
            let applied = match key.as_str() {
                "log.level" => match crate::logging::set_level(&newer.log.level) {
                    Ok(crate::logging::LevelChange::RustLogWins) => {
                        tracing::warn!(key = %key, "RUST_LOG is set and keeps precedence over log.level");
                        false
                    }
                    Ok(_) => {
                        now.log.level = newer.log.level.clone();
                        true
                    }
                    Err(e) => {
                        tracing::error!(key = %key, error = %e, "not applied");
                        false
                    }
                },
                "delivery.default_manager" => {
                    let name = newer.delivery.default_manager.clone();
                    match self.core.delivery.send(SetDefault(name.clone())).await {
                        Ok(Ok(())) => {
                            now.delivery.default_manager = name;
                            true
                        }
                        Ok(Err(e)) => {
                            tracing::error!(key = %key, manager = %name, error = %e, "not applied");
                            false
                        }
                        Err(_) => false,
                    }
                }
                "delivery.im_offline" => {
                    self.core
                        .im_offline
                        .set(newer.delivery.im_offline == "wait");
                    now.delivery.im_offline = newer.delivery.im_offline.clone();
                    true
                }
                _ => false,
            };
            if applied {
                copy_key(&mut now.source, &newer.source, key);
                tracing::info!(key = %key, value = %lookup(&newer.source, key), "applied");
            }
        }
        (now, "changed")
    }
}

fn lookup(t: &toml::Table, key: &str) -> String {
    let mut v: Option<&toml::Value> = None;
    let mut table = Some(t);
    for part in key.split('.') {
        v = table.and_then(|t| t.get(part));
        table = v.and_then(toml::Value::as_table);
    }
    v.map_or_else(String::new, ToString::to_string)
}

/// Copies `section.key` from `from` into `to`.
fn copy_key(to: &mut toml::Table, from: &toml::Table, key: &str) {
    let Some((section, k)) = key.split_once('.') else {
        return;
    };
    let value = from
        .get(section)
        .and_then(toml::Value::as_table)
        .and_then(|t| t.get(k))
        .cloned();
    if let (Some(toml::Value::Table(t)), Some(v)) = (to.get_mut(section), value) {
        t.insert(k.to_string(), v);
    }
}
