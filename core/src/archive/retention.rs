//! Retention and legal holds (COMPLIANCE.md): how long records are kept,
//! per scope — `user:U` over `group:G` over `domain:D` over `default`, the
//! most specific that names a party wins (of several at one level, the
//! longest) —, and holds that veto any purge of a participant's records.
//! Both are kept as JSON next to the records; what a purge removes leaves a
//! signed tombstone in the fingerprints store (`chain::Tombstone`), so the
//! chain still verifies.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::record::ArchiveRecord;
use super::{io, ArchiveError};

/// The retention file, under `archive.dir`.
pub const RETENTION: &str = "retention.json";
/// The holds file, under `archive.dir`.
pub const HOLDS: &str = "holds.json";

/// Days to keep records, by scope (`default`, `domain:D`, `group:G`,
/// `user:U`); a record no scope names is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Scope → days (0: purge at the next purge).
    pub scopes: BTreeMap<String, u64>,
}

/// A legal hold: nothing of `participant`'s is purged while it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    /// Its id (from 1).
    pub id: u64,
    /// The user or address whose records it keeps.
    pub participant: String,
    /// Why (a matter, a request).
    pub reason: String,
    /// When it was placed (ms).
    pub at_ms: u64,
}

/// Whether `scope` is one retention knows.
pub fn valid_scope(scope: &str) -> bool {
    scope == "default"
        || ["domain:", "group:", "user:"].iter().any(|p| {
            scope
                .strip_prefix(p)
                .is_some_and(|v| !v.is_empty() && v.len() <= 255)
        })
}

impl Retention {
    /// The days a record is kept, if any scope names it.
    pub fn days_for(&self, r: &ArchiveRecord) -> Option<u64> {
        let parties = [&r.from, &r.to];
        let at = |prefix: &str, names: &mut dyn Iterator<Item = &String>| {
            names
                .filter_map(|n| self.scopes.get(&format!("{prefix}{n}")))
                .max()
                .copied()
        };
        at("user:", &mut parties.into_iter())
            .or_else(|| at("group:", &mut r.groups.iter()))
            .or_else(|| at("domain:", &mut r.domains.iter()))
            .or_else(|| self.scopes.get("default").copied())
    }
}

/// The seqs of `records` that retention lets go at `now_ms` and no hold
/// keeps.
pub fn purgeable(
    records: &[ArchiveRecord],
    retention: &Retention,
    holds: &[Hold],
    now_ms: u64,
) -> Vec<u64> {
    records
        .iter()
        .filter(|r| {
            !holds
                .iter()
                .any(|h| h.participant == r.from || h.participant == r.to)
        })
        .filter(|r| {
            retention
                .days_for(r)
                .is_some_and(|d| r.at_ms.saturating_add(d.saturating_mul(86_400_000)) <= now_ms)
        })
        .map(|r| r.seq)
        .collect()
}

fn read_json<T: Default + serde::de::DeserializeOwned>(path: &Path) -> Result<T, ArchiveError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| ArchiveError::Record(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(ArchiveError::Io(path.to_path_buf(), e)),
    }
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), ArchiveError> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| ArchiveError::Record(e.to_string()))?;
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The retention of the archive in `dir`.
///
/// # Errors
/// [`ArchiveError`].
pub fn retention(dir: &Path) -> Result<Retention, ArchiveError> {
    read_json(&dir.join(RETENTION))
}

/// Sets `scope`'s days (`None`: removes it).
///
/// # Errors
/// [`ArchiveError`]; an unknown scope.
pub fn set_retention(
    dir: &Path,
    scope: &str,
    days: Option<u64>,
) -> Result<Retention, ArchiveError> {
    if !valid_scope(scope) {
        return Err(ArchiveError::Record(format!(
            "scope {scope:?}: default, domain:D, group:G or user:U"
        )));
    }
    let mut r = retention(dir)?;
    match days {
        Some(d) => r.scopes.insert(scope.to_string(), d),
        None => r.scopes.remove(scope),
    };
    write_json(&dir.join(RETENTION), &r)?;
    Ok(r)
}

/// The holds of the archive in `dir`.
///
/// # Errors
/// [`ArchiveError`].
pub fn holds(dir: &Path) -> Result<Vec<Hold>, ArchiveError> {
    read_json(&dir.join(HOLDS))
}

/// Places a hold; returns it.
///
/// # Errors
/// [`ArchiveError`].
pub fn add_hold(
    dir: &Path,
    participant: &str,
    reason: &str,
    now_ms: u64,
) -> Result<Hold, ArchiveError> {
    if participant.is_empty() || reason.trim().is_empty() {
        return Err(ArchiveError::Record(
            "a hold needs a participant and a reason".into(),
        ));
    }
    let mut hs = holds(dir)?;
    let hold = Hold {
        id: hs.iter().map(|h| h.id).max().unwrap_or(0) + 1,
        participant: participant.to_string(),
        reason: reason.to_string(),
        at_ms: now_ms,
    };
    hs.push(hold.clone());
    write_json(&dir.join(HOLDS), &hs)?;
    Ok(hold)
}

/// Lifts hold `id`; whether there was one.
///
/// # Errors
/// [`ArchiveError`].
pub fn remove_hold(dir: &Path, id: u64) -> Result<bool, ArchiveError> {
    let mut hs = holds(dir)?;
    let before = hs.len();
    hs.retain(|h| h.id != id);
    write_json(&dir.join(HOLDS), &hs)?;
    Ok(hs.len() < before)
}
