//! Domains and groups (COMPLIANCE.md, "Domains and users"): a managed
//! domain's defaults (external messaging, a banner, archiving, a home node)
//! and groups of users, static or by an attribute predicate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rule::{invalid, valid_name, InvalidRule};

/// Whether a domain's users may message outside it, unless a rule says
/// otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum External {
    /// Allowed (the default).
    #[default]
    Allow,
    /// Denied.
    Deny,
}

/// A domain's settings (`PUT /v1/admin/domains/{domain}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// Managed by this enterprise.
    #[serde(default)]
    pub managed: bool,
    /// The node its users are served by, in a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_node: Option<String>,
    /// Its users may only be served by their home node.
    #[serde(default)]
    pub require_redirect: bool,
    /// Messaging outside the domain, unless a rule decides.
    #[serde(default)]
    pub external: External,
    /// A notice shown once per conversation with an external party.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banner: Option<String>,
    /// Every delivery of its users is archived.
    #[serde(default)]
    pub archive: bool,
}

/// Whether `s` is a domain name: lowercase labels of `a-z 0-9 -`, dotted,
/// at most 253 bytes.
pub fn valid_domain(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

impl Domain {
    /// Checks a domain's settings.
    ///
    /// # Errors
    /// The first field that is wrong.
    pub fn validate(&self) -> Result<(), InvalidRule> {
        if self.require_redirect && self.home_node.is_none() {
            return Err(invalid("require_redirect", "needs a home_node"));
        }
        if let Some(n) = &self.home_node {
            if !crate::protocol::ids::valid_node_id(n) {
                return Err(invalid("home_node", "1 to 64 of A-Z a-z 0-9 . _ -"));
            }
        }
        if let Some(b) = &self.banner {
            if b.trim().is_empty() || b.len() > 1024 || b.chars().any(char::is_control) {
                return Err(invalid("banner", "1 to 1024 bytes, no control characters"));
            }
        }
        Ok(())
    }
}

/// A group (`switchboard group add NAME [--where K=V,…]`): its static
/// members, and the attributes that make a user a member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Users with all of these attributes are members (none: only the
    /// static members are).
    #[serde(default, rename = "where", skip_serializing_if = "BTreeMap::is_empty")]
    pub predicate: BTreeMap<String, String>,
    /// Members by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

impl Group {
    /// Checks a group.
    ///
    /// # Errors
    /// The first field that is wrong.
    pub fn validate(&self) -> Result<(), InvalidRule> {
        for (k, v) in &self.predicate {
            if !valid_name(k) {
                return Err(invalid("where", format!("{k:?} is not an attribute name")));
            }
            if v.is_empty() || v.len() > 256 || v.chars().any(char::is_control) {
                return Err(invalid(format!("where.{k}"), "1 to 256 bytes"));
            }
        }
        Ok(())
    }

    /// Whether user `id` with attributes `attrs` (and the groups their
    /// profile names, `named`) is a member of group `name`.
    pub fn contains(
        &self,
        name: &str,
        id: &str,
        attrs: &BTreeMap<String, String>,
        named: &[String],
    ) -> bool {
        named.iter().any(|g| g == name)
            || self.members.iter().any(|m| m == id)
            || (!self.predicate.is_empty()
                && self.predicate.iter().all(|(k, v)| attrs.get(k) == Some(v)))
    }
}

/// The groups user `id` belongs to, by name, sorted.
pub fn groups_of(
    groups: &BTreeMap<String, Group>,
    id: &str,
    attrs: &BTreeMap<String, String>,
    named: &[String],
) -> Vec<String> {
    let mut v: Vec<String> = groups
        .iter()
        .filter(|(name, g)| g.contains(name, id, attrs, named))
        .map(|(name, _)| name.clone())
        .collect();
    // A group a profile names that has no definition (yet) still counts.
    for n in named {
        if !v.contains(n) {
            v.push(n.clone());
        }
    }
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn groups_by_predicate_by_name_and_by_profile() {
        let mut groups = BTreeMap::new();
        groups.insert(
            "legal-de".to_string(),
            Group {
                predicate: attrs(&[("country", "DE"), ("dept", "legal")]),
                members: vec![],
            },
        );
        groups.insert(
            "board".to_string(),
            Group {
                predicate: BTreeMap::new(),
                members: vec!["carol".into()],
            },
        );
        let de_legal = attrs(&[("country", "DE"), ("dept", "legal")]);
        assert_eq!(groups_of(&groups, "alice", &de_legal, &[]), ["legal-de"]);
        assert!(groups_of(&groups, "bob", &attrs(&[("country", "DE")]), &[]).is_empty());
        assert_eq!(
            groups_of(&groups, "carol", &BTreeMap::new(), &[]),
            ["board"]
        );
        assert_eq!(
            groups_of(&groups, "dave", &BTreeMap::new(), &["sales".into()]),
            ["sales"]
        );
    }

    #[test]
    fn domains_and_groups_are_checked() {
        assert!(valid_domain("corp.example") && valid_domain("localhost"));
        for bad in ["", "Corp.example", "a..b", "-a.b", "a b"] {
            assert!(!valid_domain(bad), "{bad:?}");
        }
        let d = Domain {
            require_redirect: true,
            ..Domain::default()
        };
        assert_eq!(d.validate().unwrap_err().field, "require_redirect");
        let d: Result<Domain, _> = serde_json::from_str(r#"{"managed": true, "colour": 1}"#);
        assert!(d.is_err());
        let g = Group {
            predicate: attrs(&[("Country", "DE")]),
            members: vec![],
        };
        assert_eq!(g.validate().unwrap_err().field, "where");
    }
}
