//! The layers of a configuration: the embedded default, then a file, then
//! environment variables `SWITCHBOARD_<SECTION>__<KEY>`, merged key by key.

use super::{invalid, ConfigError};

pub(super) fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Keys an earlier build named differently, taken under their new name
/// (with a warning): `[cluster] nats_url = "…"` is `nats_urls = ["…"]`.
pub(super) fn renamed(t: &mut toml::Table) {
    let Some(toml::Value::Table(c)) = t.get_mut("cluster") else {
        return;
    };
    if c.contains_key("nats_urls") {
        return;
    }
    if let Some(toml::Value::String(url)) = c.remove("nats_url") {
        tracing::warn!("cluster.nats_url is now cluster.nats_urls, a list; taking [{url:?}]");
        c.insert(
            "nats_urls".into(),
            toml::Value::Array(vec![toml::Value::String(url)]),
        );
    }
}

pub(super) fn parse_table(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
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
