//! Delivery managers: named strategies with one configuration per priority —
//! the mechanisms they may use in order, sequential or parallel dispatch, the
//! per-attempt timeout, whether presence is required (IBM seed).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::protocol::{MediumKind, Priority};

/// How a manager dispatches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Dispatch {
    /// One mechanism at a time, in order; the next on failure or timeout.
    Sequential,
    /// Every mechanism at once; the first success wins.
    Parallel,
}

/// A manager's configuration for one priority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ManagerConfig {
    /// The mechanisms it may use, in its order.
    pub mechanisms: Vec<MediumKind>,
    /// How long one attempt may take before the next is tried (seconds).
    pub attempt_timeout_s: u64,
    /// Use a mechanism with presence (IM) only when the recipient is online
    /// on it (not away, busy or offline).
    #[serde(default)]
    pub require_presence: bool,
}

/// A named delivery manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeliveryManager {
    /// Sequential or parallel.
    pub dispatch: Dispatch,
    /// Configurations by priority (`low`, `normal`, `urgent`); `normal` is
    /// required and used for a priority without its own.
    pub configs: BTreeMap<String, ManagerConfig>,
}

/// The manager a transaction runs under: kept with the transaction, so a
/// hot-swap affects only new messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerChoice {
    /// The manager's name.
    pub name: String,
    /// Its dispatch.
    pub dispatch: Dispatch,
    /// The configuration for the message's priority.
    pub config: ManagerConfig,
}

/// The registry's content: managers by name.
pub type Managers = BTreeMap<String, DeliveryManager>;

/// The manager for a new message of `priority`: the one the recipient's
/// `preferences` (their profile's `delivery` map) name for the priority, or
/// for `normal`, else `default`; a name that does not exist falls back to
/// `default`, and a missing default to the built-in `sequential`.
pub fn choose(
    managers: &Managers,
    default: &str,
    preferences: Option<&BTreeMap<String, String>>,
    priority: Priority,
) -> ManagerChoice {
    let named = preferences.and_then(|p| p.get(priority.as_str()).or_else(|| p.get("normal")));
    for name in named.map(String::as_str).into_iter().chain([default]) {
        if let Some(m) = managers.get(name) {
            return m.choose(name, priority);
        }
    }
    let (name, m) = built_in().remove(0);
    m.choose(&name, priority)
}

/// A manager definition that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidManager(pub String);

const PRIORITIES: [&str; 3] = ["low", "normal", "urgent"];

/// Whether `name` can name a manager: 1–64 of `a-z 0-9 _ -`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl DeliveryManager {
    /// Checks the definition.
    ///
    /// # Errors
    /// What is wrong, naming the field.
    pub fn validate(&self) -> Result<(), InvalidManager> {
        if !self.configs.contains_key("normal") {
            return Err(InvalidManager(
                "configs: a \"normal\" configuration is required".into(),
            ));
        }
        for (prio, c) in &self.configs {
            if !PRIORITIES.contains(&prio.as_str()) {
                return Err(InvalidManager(format!(
                    "configs: {prio:?} is not low, normal or urgent"
                )));
            }
            if c.mechanisms.is_empty() {
                return Err(InvalidManager(format!(
                    "configs.{prio}.mechanisms: must not be empty"
                )));
            }
            let mut seen = Vec::new();
            for m in &c.mechanisms {
                if seen.contains(m) {
                    return Err(InvalidManager(format!(
                        "configs.{prio}.mechanisms: {m} listed twice"
                    )));
                }
                seen.push(*m);
            }
            if !(1..=86_400).contains(&c.attempt_timeout_s) {
                return Err(InvalidManager(format!(
                    "configs.{prio}.attempt_timeout_s: must be between 1 and 86400"
                )));
            }
        }
        Ok(())
    }

    /// The configuration for `priority` (falling back to `normal`).
    pub fn config_for(&self, priority: Priority) -> &ManagerConfig {
        self.configs
            .get(priority.as_str())
            .or_else(|| self.configs.get("normal"))
            .expect("a validated manager has a normal configuration")
    }

    /// The choice for a message of `priority`.
    pub fn choose(&self, name: &str, priority: Priority) -> ManagerChoice {
        ManagerChoice {
            name: name.to_string(),
            dispatch: self.dispatch,
            config: self.config_for(priority).clone(),
        }
    }
}

fn config(mechanisms: &[MediumKind], attempt_timeout_s: u64) -> ManagerConfig {
    ManagerConfig {
        mechanisms: mechanisms.to_vec(),
        attempt_timeout_s,
        require_presence: false,
    }
}

/// The managers every node starts with: `sequential` (ordered failover) and
/// `parallel` (all at once, first success wins).
pub fn built_in() -> Vec<(String, DeliveryManager)> {
    use MediumKind::*;
    let all = [Im, Sms, Email, Fax];
    vec![
        (
            "sequential".into(),
            DeliveryManager {
                dispatch: Dispatch::Sequential,
                configs: BTreeMap::from([
                    ("low".into(), config(&[Im, Email, Fax, Sms], 300)),
                    ("normal".into(), config(&all, 60)),
                    ("urgent".into(), config(&all, 20)),
                ]),
            },
        ),
        (
            "parallel".into(),
            DeliveryManager {
                dispatch: Dispatch::Parallel,
                configs: BTreeMap::from([("normal".into(), config(&all, 60))]),
            },
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_ins_are_valid_and_fall_back_to_normal() {
        for (name, m) in built_in() {
            m.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let (_, p) = &built_in()[1];
        assert_eq!(
            p.config_for(Priority::Urgent),
            p.config_for(Priority::Normal)
        );
    }

    #[test]
    fn invalid_definitions_name_the_field() {
        let mut m = built_in().remove(0).1;
        m.configs.remove("normal");
        assert!(m.validate().unwrap_err().0.contains("normal"));
        let mut m = built_in().remove(0).1;
        m.configs.get_mut("urgent").unwrap().mechanisms = vec![MediumKind::Im, MediumKind::Im];
        assert!(m
            .validate()
            .unwrap_err()
            .0
            .contains("configs.urgent.mechanisms"));
        let mut m = built_in().remove(0).1;
        m.configs.get_mut("low").unwrap().attempt_timeout_s = 0;
        assert!(m.validate().unwrap_err().0.contains("attempt_timeout_s"));
        let mut m = built_in().remove(0).1;
        m.configs.insert("asap".into(), m.configs["normal"].clone());
        assert!(m.validate().is_err());
        assert!(
            serde_json::from_str::<DeliveryManager>(r#"{"dispatch":"random","configs":{}}"#)
                .is_err()
        );
        assert!(valid_name("sms-first") && !valid_name("SMS") && !valid_name(""));
    }
}
