//! The enterprise policy the operator set — domains, groups, rules — kept
//! in [`Tree::Policy`] and cached whole: readers (the broker's meta stage on
//! its hot path, the content filter, the API) take a snapshot without
//! blocking; a change builds the next snapshot and swaps it in once durable.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

use crate::policy::{groups_of, Domain, Group, InvalidRule, Reference, Rule, RuleSet};
use crate::store::{Store, StoreError, Tree, WriteBatch};

/// One consistent view of the policy.
#[derive(Debug, Clone, Default)]
pub struct PolicyState {
    /// Domains by name.
    pub domains: BTreeMap<String, Domain>,
    /// Groups by name.
    pub groups: BTreeMap<String, Group>,
    /// Rules by id, as stored (with their versions).
    pub rules: BTreeMap<String, Rule>,
    /// The rules ready to evaluate.
    pub set: RuleSet,
    /// Whether a domain denies messages outside it.
    pub closed_domains: bool,
}

impl PolicyState {
    /// The groups of user `id` with `attrs` and the groups their profile
    /// names.
    pub fn groups_of(
        &self,
        id: &str,
        attrs: &BTreeMap<String, String>,
        named: &[String],
    ) -> Vec<String> {
        groups_of(&self.groups, id, attrs, named)
    }

    /// What the rules see of a message from `from` to `to`: each a local
    /// user's profile or, for an address that is no local user, the
    /// address (`email:x@ext.example`, `sms:+49…`). A side is external when
    /// it is no local user, or a user of another domain than the other
    /// side's.
    pub fn facts<'a>(
        &'a self,
        from: Side<'_>,
        to: Side<'_>,
        medium: Option<crate::protocol::MediumKind>,
        priority: crate::protocol::Priority,
    ) -> crate::policy::Facts<'a> {
        let mut f = self.party(&from);
        let mut t = self.party(&to);
        let local = |s: &Side<'_>| matches!(s, Side::User(_));
        f.external = !local(&from) || (local(&to) && f.domain != t.domain);
        t.external = !local(&to) || (local(&from) && f.domain != t.domain);
        let from_domain = f.domain.as_ref().and_then(|d| self.domains.get(d));
        let to_domain = t.domain.as_ref().and_then(|d| self.domains.get(d));
        crate::policy::Facts {
            from: f,
            to: t,
            medium,
            priority,
            from_domain,
            to_domain,
            content: None,
        }
    }

    fn party(&self, side: &Side<'_>) -> crate::policy::PartyFacts {
        match side {
            Side::User(p) => crate::policy::PartyFacts {
                user: Some(p.id.clone()),
                domain: p.domain.clone(),
                groups: self.groups_of(&p.id, &p.attrs, &p.groups),
                attrs: p.attrs.clone(),
                external: false,
            },
            Side::Address(a) => crate::policy::PartyFacts {
                domain: a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()),
                ..crate::policy::PartyFacts::default()
            },
        }
    }

    fn rebuild(&mut self) {
        self.closed_domains = self
            .domains
            .values()
            .any(|d| d.external == crate::policy::External::Deny);
        // Every stored rule validated when it was put.
        self.set = RuleSet::new(self.rules.values().cloned().collect()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "a stored policy rule does not validate; no rules apply");
            RuleSet::default()
        });
    }

    fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        let corrupt = || StoreError::Corrupt("policy");
        let (kind, name) = match key.split_first() {
            Some((k, rest)) if rest.first() == Some(&0) => (*k, &rest[1..]),
            _ => return Err(corrupt()),
        };
        let name = String::from_utf8(name.to_vec()).map_err(|_| corrupt())?;
        match (kind, value) {
            (b'd', Some(v)) => {
                self.domains
                    .insert(name, serde_json::from_slice(v).map_err(|_| corrupt())?);
            }
            (b'd', None) => {
                self.domains.remove(&name);
            }
            (b'g', Some(v)) => {
                self.groups
                    .insert(name, serde_json::from_slice(v).map_err(|_| corrupt())?);
            }
            (b'g', None) => {
                self.groups.remove(&name);
            }
            (b'r', Some(v)) => {
                self.rules
                    .insert(name, serde_json::from_slice(v).map_err(|_| corrupt())?);
            }
            (b'r', None) => {
                self.rules.remove(&name);
            }
            _ => return Err(corrupt()),
        }
        Ok(())
    }
}

/// One side of a message, for [`PolicyState::facts`].
#[derive(Debug, Clone, Copy)]
pub enum Side<'p> {
    /// A local user.
    User(&'p crate::directory::Profile),
    /// An address that is no local user.
    Address(&'p str),
}

fn key(kind: u8, name: &str) -> Vec<u8> {
    let mut k = vec![kind, 0];
    k.extend_from_slice(name.as_bytes());
    k
}

/// Why a policy change was not made.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The value is not acceptable (400).
    #[error(transparent)]
    Invalid(#[from] InvalidRule),
    /// It names something that does not exist (422).
    #[error("{0}: {1}")]
    Unknown(String, String),
    /// Something else still uses it (409).
    #[error("{0}")]
    InUse(String),
}

/// The snapshot, and what it rules in two flags a hot path reads without
/// the lock.
struct Shared {
    state: RwLock<Arc<PolicyState>>,
    /// [`META`] and [`CONTENT`] of the current snapshot.
    flags: AtomicU8,
}

/// A flag: a meta rule, a closed domain or a banner exists (the broker
/// has work).
const META: u8 = 1;
/// A flag: a content rule exists (the filter goes on routes).
const CONTENT: u8 = 2;

fn flags_of(s: &PolicyState) -> u8 {
    // A banner, or a domain that archives, is the broker's work too (with
    // no rule at all).
    let banners = s.domains.values().any(|d| d.banner.is_some() || d.archive);
    let meta = s.set.has(crate::policy::Stage::Meta) || s.closed_domains || banners;
    u8::from(meta) * META + u8::from(s.set.has(crate::policy::Stage::Content)) * CONTENT
}

impl Shared {
    /// Applies one stored change and swaps the next snapshot in.
    fn change(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        let mut guard = self.state.write().unwrap_or_else(|e| e.into_inner());
        let mut next = PolicyState::clone(&guard);
        next.apply(key, value)?;
        next.rebuild();
        self.flags.store(flags_of(&next), Ordering::Release);
        *guard = Arc::new(next);
        Ok(())
    }
}

/// The policy: stored, cached, swapped whole. Cheap to clone.
#[derive(Clone)]
pub struct PolicyBook {
    store: Store,
    shared: Arc<Shared>,
}

impl PolicyBook {
    /// Loads it from the store.
    ///
    /// # Errors
    /// When the store fails or holds corrupt records.
    pub fn load(store: Store) -> Result<Self, StoreError> {
        let mut state = PolicyState::default();
        for (k, v) in store.scan(Tree::Policy, b"")? {
            state.apply(&k, Some(&v))?;
        }
        state.rebuild();
        let book = Self {
            store: store.clone(),
            shared: Arc::new(Shared {
                flags: AtomicU8::new(flags_of(&state)),
                state: RwLock::new(Arc::new(state)),
            }),
        };
        // In a cluster: what an operator changes on another node.
        let weak = Arc::downgrade(&book.shared);
        store.on_remote_change(Arc::new(move |c| {
            if c.tree != Tree::Policy {
                return;
            }
            let Some(shared) = weak.upgrade() else { return };
            if let Err(e) = shared.change(c.key, c.new) {
                tracing::warn!(error = %e, "a corrupt policy record from another node");
            }
        }));
        Ok(book)
    }

    /// The current policy.
    pub fn snapshot(&self) -> Arc<PolicyState> {
        (self.shared.state.read().unwrap_or_else(|e| e.into_inner())).clone()
    }

    /// Whether the meta stage has anything to decide (a meta rule, or a
    /// domain that denies outside messages) — without taking the lock.
    pub fn rules_meta(&self) -> bool {
        self.shared.flags.load(Ordering::Acquire) & META != 0
    }

    /// Whether a content rule exists (the content filter goes on routes) —
    /// without taking the lock.
    pub fn rules_content(&self) -> bool {
        self.shared.flags.load(Ordering::Acquire) & CONTENT != 0
    }

    /// Writes `key` (`None`: removes it) and swaps in the next snapshot.
    async fn write(&self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), StoreError> {
        let mut b = WriteBatch::new();
        match &value {
            Some(v) => {
                b.insert(Tree::Policy, key.clone(), v.clone());
            }
            None => {
                b.remove(Tree::Policy, key.clone());
            }
        }
        self.store.writer().write(b).await?;
        self.shared.change(&key, value.as_deref())
    }

    /// Sets domain `name`; whether it is new.
    ///
    /// # Errors
    /// A bad name or settings, or the store.
    pub async fn put_domain(&self, name: &str, d: &Domain) -> Result<bool, PolicyError> {
        if !crate::policy::valid_domain(name) {
            return Err(
                crate::policy::rule::invalid("domain", "lowercase labels of a-z 0-9 -").into(),
            );
        }
        d.validate()?;
        let new = !self.snapshot().domains.contains_key(name);
        let json = serde_json::to_vec(d).map_err(|_| StoreError::Corrupt("policy"))?;
        self.write(key(b'd', name), Some(json)).await?;
        Ok(new)
    }

    /// Removes domain `name`; whether it was there.
    ///
    /// # Errors
    /// A rule still naming it (409), or the store.
    pub async fn remove_domain(&self, name: &str) -> Result<bool, PolicyError> {
        let named = |r: &Reference| matches!(r, Reference::Domain(_, d) if d == name);
        self.remove_unused(b'd', name, "domain", named).await
    }

    /// Removes the domain or group `name` (of `kind`) unless a rule names
    /// it (`names`); whether it was there.
    async fn remove_unused(
        &self,
        kind: u8,
        name: &str,
        what: &str,
        names: impl Fn(&Reference) -> bool,
    ) -> Result<bool, PolicyError> {
        let s = self.snapshot();
        let there = match kind {
            b'd' => s.domains.contains_key(name),
            _ => s.groups.contains_key(name),
        };
        if !there {
            return Ok(false);
        }
        if let Some(r) = s.rules.values().find(|r| r.references().iter().any(&names)) {
            return Err(PolicyError::InUse(format!(
                "rule {} names {what} {name}",
                r.id
            )));
        }
        self.write(key(kind, name), None).await?;
        Ok(true)
    }

    /// Sets group `name`; whether it is new.
    ///
    /// # Errors
    /// A bad name or definition, or the store.
    pub async fn put_group(&self, name: &str, g: &Group) -> Result<bool, PolicyError> {
        if !crate::policy::rule::valid_name(name) {
            return Err(crate::policy::rule::invalid("name", "1 to 64 of a-z 0-9 . _ -").into());
        }
        g.validate()?;
        let new = !self.snapshot().groups.contains_key(name);
        let json = serde_json::to_vec(g).map_err(|_| StoreError::Corrupt("policy"))?;
        self.write(key(b'g', name), Some(json)).await?;
        Ok(new)
    }

    /// Removes group `name`; whether it was there.
    ///
    /// # Errors
    /// A rule still naming it (409), or the store.
    pub async fn remove_group(&self, name: &str) -> Result<bool, PolicyError> {
        let named = |r: &Reference| matches!(r, Reference::Group(_, g) if g == name);
        self.remove_unused(b'g', name, "group", named).await
    }

    /// Stores `rule` (its references already checked): version 1 when new,
    /// one more than the stored one otherwise. The stored rule.
    ///
    /// # Errors
    /// A rule that does not validate, or the store.
    pub async fn put_rule(&self, mut rule: Rule) -> Result<Rule, PolicyError> {
        rule.validate()?;
        rule.version = self
            .snapshot()
            .rules
            .get(&rule.id)
            .map_or(1, |r| r.version + 1);
        let json = serde_json::to_vec(&rule).map_err(|_| StoreError::Corrupt("policy"))?;
        self.write(key(b'r', &rule.id), Some(json)).await?;
        Ok(rule)
    }

    /// Removes rule `id`; whether it was there.
    ///
    /// # Errors
    /// The store.
    pub async fn remove_rule(&self, id: &str) -> Result<bool, PolicyError> {
        if !self.snapshot().rules.contains_key(id) {
            return Ok(false);
        }
        self.write(key(b'r', id), None).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Facts, PartyFacts, Stage, Verdict};

    #[tokio::test]
    async fn policy_is_kept_versioned_and_read_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let book = PolicyBook::load(store.clone()).unwrap();
        let d = Domain {
            managed: true,
            ..Domain::default()
        };
        assert!(book.put_domain("corp.example", &d).await.unwrap());
        assert!(!book.put_domain("corp.example", &d).await.unwrap());
        assert!(matches!(
            book.put_domain("Corp", &d).await,
            Err(PolicyError::Invalid(_))
        ));
        book.put_group("legal", &Group::default()).await.unwrap();
        let rule = Rule::parse(
            br#"{"id": "no-ext-legal", "priority": 100, "stage": "meta",
                 "when": {"from": {"group": "legal", "domain": "corp.example"}, "to": {"external": true}},
                 "action": {"type": "deny"}}"#,
        )
        .unwrap();
        assert_eq!(book.put_rule(rule.clone()).await.unwrap().version, 1);
        assert_eq!(book.put_rule(rule).await.unwrap().version, 2);
        // In use: the rule names them.
        assert!(matches!(
            book.remove_group("legal").await,
            Err(PolicyError::InUse(_))
        ));
        assert!(matches!(
            book.remove_domain("corp.example").await,
            Err(PolicyError::InUse(_))
        ));

        drop(book);
        store.writer().flush().await.unwrap();
        let book = PolicyBook::load(store.clone()).unwrap();
        let s = book.snapshot();
        assert_eq!(
            (
                s.domains.len(),
                s.groups.len(),
                s.rules["no-ext-legal"].version
            ),
            (1, 1, 2)
        );
        let facts = Facts {
            from: PartyFacts {
                user: Some("lena".into()),
                domain: Some("corp.example".into()),
                groups: vec!["legal".into()],
                ..PartyFacts::default()
            },
            to: PartyFacts {
                external: true,
                ..PartyFacts::default()
            },
            ..Facts::default()
        };
        assert!(matches!(
            s.set.evaluate(Stage::Meta, &facts).verdict,
            Verdict::Deny { .. }
        ));
        assert!(book.remove_rule("no-ext-legal").await.unwrap());
        assert!(!book.remove_rule("no-ext-legal").await.unwrap());
        assert!(book.remove_group("legal").await.unwrap());
        assert!(book.snapshot().set.is_empty());
    }
}
