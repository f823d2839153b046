//! A user's client profile: the mechanisms they can be reached on, in their
//! order of preference, and their settings. Serialised as the API's profile
//! JSON (INTERFACES.md) both on the wire and in the store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::protocol::{Address, MediumKind};

/// A delivery mechanism of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Mechanism {
    /// The medium.
    pub medium: MediumKind,
    /// The user's address on it.
    pub address: String,
}

/// A user's own policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UserPolicy {
    /// May message external addresses.
    #[serde(default = "yes")]
    pub external: bool,
    /// Mediums the user may use.
    #[serde(default = "all_mediums")]
    pub mediums: Vec<MediumKind>,
    /// Who sees the user's presence besides their contacts
    /// ([`Profile::shows_presence_to`]).
    #[serde(default)]
    pub presence: PresenceShare,
}

/// Who sees a user's presence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PresenceShare {
    /// The users in the user's contacts, and the users who have the user
    /// in theirs.
    #[default]
    Contacts,
    /// Every user.
    Everyone,
}

fn yes() -> bool {
    true
}

fn all_mediums() -> Vec<MediumKind> {
    MediumKind::ALL.to_vec()
}

impl Default for UserPolicy {
    fn default() -> Self {
        Self {
            external: true,
            mediums: all_mediums(),
            presence: PresenceShare::default(),
        }
    }
}

/// A client profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The user id.
    pub id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The user's domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Attributes enterprise policy reads (`country`, `dept`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, String>,
    /// Groups the user is a static member of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Mechanisms in order of preference.
    #[serde(default)]
    pub mechanisms: Vec<Mechanism>,
    /// Delivery manager per priority (`normal` → `sequential`, …).
    #[serde(default)]
    pub delivery: BTreeMap<String, String>,
    /// Contacts (presence subscriptions).
    #[serde(default)]
    pub contacts: Vec<String>,
    /// The user's policy.
    #[serde(default)]
    pub policy: UserPolicy,
    /// In a cluster, the node whose gateways deliver to this user (email,
    /// SMS, fax: its SMTP relay, SMSC bind, fax spool); while it is down,
    /// another node's, said in the attempt. IM is pushed by the node
    /// holding the user's session wherever that is. Ignored on a single
    /// node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_node: Option<String>,
}

/// A profile is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidProfile {
    /// The offending field.
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidProfile {
    InvalidProfile {
        field,
        reason: reason.into(),
    }
}

/// Whether `id` is a valid user id: 1–64 of `a-z 0-9 . _ -`, starting with a
/// letter or digit.
pub fn valid_user_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

pub use crate::protocol::ids::valid_node_id;

impl Profile {
    /// A profile with only the IM mechanism.
    pub fn im_only(id: &str) -> Self {
        Self {
            id: id.to_string(),
            display_name: None,
            domain: None,
            attrs: BTreeMap::new(),
            groups: Vec::new(),
            mechanisms: vec![Mechanism {
                medium: MediumKind::Im,
                address: id.to_string(),
            }],
            delivery: BTreeMap::new(),
            contacts: Vec::new(),
            policy: UserPolicy::default(),
            home_node: None,
        }
    }

    /// Checks the profile.
    ///
    /// # Errors
    /// The first invalid field.
    pub fn validate(&self) -> Result<(), InvalidProfile> {
        if !valid_user_id(&self.id) {
            return Err(invalid(
                "id",
                "1-64 characters of a-z 0-9 . _ -, starting with a letter or digit",
            ));
        }
        if self.id == "switchboard" {
            return Err(invalid(
                "id",
                "\"switchboard\" is the system sender of policy notices",
            ));
        }
        if self.display_name.as_ref().is_some_and(|n| n.len() > 200) {
            return Err(invalid("display_name", "longer than 200 bytes"));
        }
        if self.mechanisms.len() > 16 {
            return Err(invalid("mechanisms", "more than 16"));
        }
        for m in &self.mechanisms {
            let a = m.address.trim();
            if a.is_empty() || a.len() > 320 || a.chars().any(char::is_control) || a != m.address {
                return Err(invalid(
                    "mechanisms",
                    format!("bad {} address {:?}", m.medium, m.address),
                ));
            }
            let ok = match m.medium {
                MediumKind::Im => a == self.id,
                MediumKind::Email => a.contains('@') && !a.contains(char::is_whitespace),
                MediumKind::Sms | MediumKind::Fax => {
                    a.strip_prefix('+')
                        .unwrap_or(a)
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                        && a.len() >= 3
                }
            };
            if !ok {
                return Err(invalid(
                    "mechanisms",
                    format!(
                        "bad {} address {:?} (im: the user id; email: a mailbox; sms/fax: +digits)",
                        m.medium, a
                    ),
                ));
            }
        }
        if let Some(n) = &self.home_node {
            if !valid_node_id(n) {
                return Err(invalid(
                    "home_node",
                    format!("bad node id {n:?} (1-64 of A-Z a-z 0-9 . _ -)"),
                ));
            }
        }
        if let Some(d) = &self.domain {
            if !crate::policy::valid_domain(d) {
                return Err(invalid(
                    "domain",
                    format!("bad domain {d:?} (lowercase labels)"),
                ));
            }
        }
        if self.attrs.len() > 64 {
            return Err(invalid("attrs", "more than 64"));
        }
        for (k, v) in &self.attrs {
            if !crate::policy::rule::valid_name(k) {
                return Err(invalid(
                    "attrs",
                    format!("bad attribute name {k:?} (a-z 0-9 . _ -)"),
                ));
            }
            if v.is_empty() || v.len() > 256 || v.chars().any(char::is_control) {
                return Err(invalid(
                    "attrs",
                    format!("bad value for {k:?} (1 to 256 bytes)"),
                ));
            }
        }
        if self.groups.len() > 64 {
            return Err(invalid("groups", "more than 64"));
        }
        if let Some(g) = self
            .groups
            .iter()
            .find(|g| !crate::policy::rule::valid_name(g))
        {
            return Err(invalid(
                "groups",
                format!("bad group name {g:?} (a-z 0-9 . _ -)"),
            ));
        }
        for c in &self.contacts {
            if !valid_user_id(c) {
                return Err(invalid("contacts", format!("bad user id {c:?}")));
            }
        }
        Ok(())
    }

    /// Whether `viewer` may see this user's presence (state, note, since,
    /// reachability): the user themselves; a user this one has in their
    /// contacts, or who has this one in theirs (contacts are set by the
    /// admin, so either side's list is the enterprise's word); anyone when
    /// the user shares it with everyone. To anybody else the user's presence
    /// looks as an unknown user's does.
    pub fn shows_presence_to(&self, viewer: &Profile) -> bool {
        viewer.id == self.id
            || self.policy.presence == PresenceShare::Everyone
            || self.contacts.contains(&viewer.id)
            || viewer.contacts.contains(&self.id)
    }

    /// The user's addresses.
    pub fn addresses(&self) -> impl Iterator<Item = Address> + '_ {
        self.mechanisms
            .iter()
            .map(|m| Address::new(m.medium, m.address.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_json_of_the_interface_contract_parses() {
        let p: Profile = serde_json::from_str(
            r#"{ "id": "bob", "display_name": "Bob", "domain": "example.com",
              "mechanisms": [ {"medium": "im", "address": "bob"},
                              {"medium": "sms", "address": "+4915112345678"},
                              {"medium": "email", "address": "bob@example.com"} ],
              "delivery": {"normal": "sequential", "urgent": "parallel"},
              "contacts": ["alice"],
              "policy": {"external": true, "mediums": ["im", "sms", "email", "fax"]} }"#,
        )
        .unwrap();
        p.validate().unwrap();
        assert_eq!(p.mechanisms[1].medium, MediumKind::Sms);
    }

    #[test]
    fn bad_profiles_name_the_field() {
        let mut p = Profile::im_only("bob");
        p.id = "Bob!".into();
        assert_eq!(p.validate().unwrap_err().field, "id");
        let mut p = Profile::im_only("bob");
        p.mechanisms[0].address = "alice".into();
        assert_eq!(p.validate().unwrap_err().field, "mechanisms");
        assert!(serde_json::from_str::<Profile>(r#"{"id":"a","bogus":1}"#).is_err());
        for bad in ["", "a b", "c*", "sb>", &"n".repeat(65)] {
            let mut p = Profile::im_only("bob");
            p.home_node = Some(bad.to_string());
            assert_eq!(p.validate().unwrap_err().field, "home_node", "{bad:?}");
        }
    }

    #[test]
    fn presence_is_shown_to_oneself_contacts_either_way_and_everyone_when_shared() {
        let with = |id: &str, contacts: &[&str]| {
            let mut p = Profile::im_only(id);
            p.contacts = contacts.iter().map(|c| c.to_string()).collect();
            p
        };
        let (alice, bob, eve) = (with("alice", &["bob"]), with("bob", &[]), with("eve", &[]));
        assert!(alice.shows_presence_to(&alice));
        assert!(alice.shows_presence_to(&bob), "alice lists bob");
        assert!(bob.shows_presence_to(&alice), "bob is in alice's list");
        assert!(!alice.shows_presence_to(&eve));
        assert!(!eve.shows_presence_to(&alice));
        let mut open = with("eve", &[]);
        open.policy.presence = PresenceShare::Everyone;
        assert!(open.shows_presence_to(&bob));
        let p: Profile =
            serde_json::from_str(r#"{"id":"x","policy":{"presence":"everyone"}}"#).unwrap();
        assert_eq!(p.policy.presence, PresenceShare::Everyone);
        assert!(
            serde_json::from_str::<Profile>(r#"{"id":"x","policy":{"presence":"all"}}"#).is_err()
        );
    }

    #[test]
    fn a_home_node_is_kept_and_a_profile_without_one_has_none() {
        let p: Profile = serde_json::from_str(r#"{"id":"bob","home_node":"node-c"}"#).unwrap();
        p.validate().unwrap();
        assert_eq!(p.home_node.as_deref(), Some("node-c"));
        let back: Profile = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        let old: Profile = serde_json::from_str(r#"{"id":"bob"}"#).unwrap();
        assert_eq!(old.home_node, None);
        assert!(!serde_json::to_string(&old).unwrap().contains("home_node"));
    }
}
