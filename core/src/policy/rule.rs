//! Enterprise policy rules as an operator writes them (COMPLIANCE.md,
//! "Rules"): when a rule matches, what it does, at which stage; parsed so
//! that a bad rule is refused naming its field, and checked for what it
//! refers to (users, groups, nodes) before anything is stored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::protocol::{MediumKind, Priority};

/// Where a rule is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// By the broker, on the meta information (it never sees content).
    Meta,
    /// By the content-filter processor, on the content.
    Content,
}

/// One side of a message as a rule names it; every given field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Party {
    /// This user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A user of this domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// A member of this group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A user with these attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attr: BTreeMap<String, String>,
    /// `true`: an address that is no local user, or a user of another
    /// domain; `false`: the opposite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<bool>,
}

/// When a rule matches (`{}`: always).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct When {
    /// The sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Party>,
    /// The recipient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Party>,
    /// The medium the message goes over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<MediumKind>,
    /// The message's priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Content stage: any of these phrases, case-insensitive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contains: Vec<String>,
    /// Content stage: a regular expression on the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Content stage: the content type (`text/plain`, or a prefix ending in
    /// `/`, `image/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Content stage: content longer than this, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub larger_than: Option<u64>,
}

impl When {
    /// The content-stage fields given, by name.
    fn content_fields(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if !self.contains.is_empty() {
            v.push("when.contains");
        }
        if self.regex.is_some() {
            v.push("when.regex");
        }
        if self.content_type.is_some() {
            v.push("when.content_type");
        }
        if self.larger_than.is_some() {
            v.push("when.larger_than");
        }
        v
    }
}

/// What a rule does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Decides: the message goes on.
    Allow,
    /// Decides: the message is blocked, the sender told `reason`.
    Deny {
        /// Told to the sender.
        #[serde(default)]
        reason: String,
    },
    /// Decides: the message goes through this node or gateway member.
    Redirect {
        /// A node id or a member id.
        to: String,
    },
    /// Decides: the message waits for an operator.
    Quarantine {
        /// Shown to the operator.
        #[serde(default)]
        reason: String,
    },
    /// Marks: no point-to-point (direct) delivery; through the broker only.
    StripP2p,
    /// Marks: the delivery is archived, in this archive.
    Archive {
        /// Which archive (e.g. by country).
        archive: String,
    },
    /// Marks: a tag on the transaction.
    Tag {
        /// The tag.
        tag: String,
    },
    /// Marks: a supervisor is told the meta information (never content).
    Notify {
        /// The supervisor's user id.
        to: String,
    },
    /// Marks: the sender gets this notice (once per conversation a day).
    Warn {
        /// The notice.
        text: String,
    },
}

impl Action {
    /// Its `type`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny { .. } => "deny",
            Self::Redirect { .. } => "redirect",
            Self::Quarantine { .. } => "quarantine",
            Self::StripP2p => "strip_p2p",
            Self::Archive { .. } => "archive",
            Self::Tag { .. } => "tag",
            Self::Notify { .. } => "notify",
            Self::Warn { .. } => "warn",
        }
    }

    /// Whether it decides (and ends the walk), rather than marks.
    pub fn decides(&self) -> bool {
        matches!(
            self,
            Self::Allow | Self::Deny { .. } | Self::Redirect { .. } | Self::Quarantine { .. }
        )
    }
}

/// A policy rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Its id (`[a-z0-9._-]`, 1 to 64).
    pub id: String,
    /// Higher first; ties by id.
    #[serde(default)]
    pub priority: i64,
    /// Where it is evaluated.
    pub stage: Stage,
    /// When it matches.
    #[serde(default)]
    pub when: When,
    /// What it does.
    pub action: Action,
    /// Set by the node: 1 when made, one more at each change (what it says
    /// in a body is ignored).
    #[serde(default)]
    pub version: u64,
}

/// A rule (or domain, group) is not acceptable: the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidRule {
    /// The offending field (`when.regex`, `action.type`, …).
    pub field: String,
    /// Why.
    pub reason: String,
}

/// An [`InvalidRule`] for `field`.
pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InvalidRule {
    InvalidRule {
        field: field.into(),
        reason: reason.into(),
    }
}

/// `T` from JSON, naming the field that is wrong (`body` for the whole).
///
/// # Errors
/// Malformed JSON, an unknown field, a value of the wrong type.
pub fn from_json<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, InvalidRule> {
    let de = &mut serde_json::Deserializer::from_slice(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path == "?" {
            "body".to_string()
        } else {
            path
        };
        invalid(field, e.into_inner().to_string())
    })
}

/// What a rule names that must exist: checked against the directory
/// before the rule is stored (422 otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A user, at this field.
    User(&'static str, String),
    /// A group.
    Group(&'static str, String),
    /// A domain.
    Domain(&'static str, String),
    /// A node or gateway member.
    Node(&'static str, String),
}

/// Whether `s` may name a rule, a group or a domain's key: 1 to 64 of
/// `a-z 0-9 . _ -`.
pub fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

fn text(field: &str, s: &str, max: usize) -> Result<(), InvalidRule> {
    if s.len() > max || s.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("at most {max} bytes, no control characters"),
        ));
    }
    Ok(())
}

impl Rule {
    /// Parses a rule from JSON, naming the field that is wrong.
    ///
    /// # Errors
    /// Malformed JSON, an unknown field or action type, a bad value.
    pub fn parse(json: &[u8]) -> Result<Self, InvalidRule> {
        let rule: Rule = from_json(json)?;
        rule.validate()?;
        Ok(rule)
    }

    /// Checks what parsing cannot.
    ///
    /// # Errors
    /// The first field that is wrong.
    pub fn validate(&self) -> Result<(), InvalidRule> {
        if !valid_name(&self.id) {
            return Err(invalid("id", "1 to 64 of a-z 0-9 . _ -"));
        }
        if self.stage == Stage::Meta {
            if let Some(f) = self.when.content_fields().first() {
                return Err(invalid(*f, "only a content-stage rule may look at content"));
            }
        }
        if self.stage == Stage::Content
            && matches!(
                self.action,
                Action::Redirect { .. }
                    | Action::StripP2p
                    | Action::Archive { .. }
                    | Action::Warn { .. }
            )
        {
            return Err(invalid(
                "action.type",
                format!(
                    "{} is a meta-stage action (content rules allow, deny, quarantine, notify or tag)",
                    self.action.name()
                ),
            ));
        }
        for (i, p) in self.when.contains.iter().enumerate() {
            if p.trim().is_empty() {
                return Err(invalid(format!("when.contains[{i}]"), "an empty phrase"));
            }
            text(&format!("when.contains[{i}]"), p, 256)?;
        }
        if let Some(r) = &self.when.regex {
            regex::RegexBuilder::new(r)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| invalid("when.regex", e.to_string()))?;
        }
        for (side, party) in [("from", &self.when.from), ("to", &self.when.to)] {
            for (k, v) in party.iter().flat_map(|p| &p.attr) {
                if !valid_name(k) {
                    return Err(invalid(
                        format!("when.{side}.attr"),
                        format!("{k:?} is not an attribute name"),
                    ));
                }
                text(&format!("when.{side}.attr.{k}"), v, 256)?;
            }
        }
        match &self.action {
            Action::Deny { reason } | Action::Quarantine { reason } => {
                text("action.reason", reason, 512)?
            }
            Action::Warn { text: t } => {
                if t.trim().is_empty() {
                    return Err(invalid("action.text", "an empty notice"));
                }
                text("action.text", t, 1024)?
            }
            Action::Tag { tag } if !valid_name(tag) => {
                return Err(invalid("action.tag", "1 to 64 of a-z 0-9 . _ -"))
            }
            Action::Archive { archive } if !valid_name(archive) => {
                return Err(invalid("action.archive", "1 to 64 of a-z 0-9 . _ -"))
            }
            _ => {}
        }
        Ok(())
    }

    /// What it names that must exist.
    pub fn references(&self) -> Vec<Reference> {
        let mut v = Vec::new();
        for (side, party) in [("from", &self.when.from), ("to", &self.when.to)] {
            let Some(p) = party else { continue };
            let field = |f: &'static str, g: &'static str| if side == "from" { f } else { g };
            if let Some(u) = &p.user {
                v.push(Reference::User(
                    field("when.from.user", "when.to.user"),
                    u.clone(),
                ));
            }
            if let Some(g) = &p.group {
                v.push(Reference::Group(
                    field("when.from.group", "when.to.group"),
                    g.clone(),
                ));
            }
            if let Some(d) = &p.domain {
                v.push(Reference::Domain(
                    field("when.from.domain", "when.to.domain"),
                    d.clone(),
                ));
            }
        }
        match &self.action {
            Action::Notify { to } => v.push(Reference::User("action.to", to.clone())),
            Action::Redirect { to } => v.push(Reference::Node("action.to", to.clone())),
            _ => {}
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(json: &str) -> String {
        Rule::parse(json.as_bytes()).unwrap_err().field
    }

    #[test]
    fn the_design_documents_rule_parses() {
        let r = Rule::parse(
            br#"{"id": "no-ext-legal", "priority": 100, "stage": "meta",
                 "when": {"from": {"group": "legal"}, "to": {"external": true}},
                 "action": {"type": "deny", "reason": "legal may not message outside"}}"#,
        )
        .unwrap();
        assert_eq!(
            r.when.from.as_ref().unwrap().group.as_deref(),
            Some("legal")
        );
        assert!(r.action.decides());
        assert_eq!(
            r.references(),
            [Reference::Group("when.from.group", "legal".into())]
        );
        let back: Rule = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_bad_rule_names_its_field() {
        let ok = r#""id": "r", "stage": "meta""#;
        assert_eq!(field("{"), "body");
        assert_eq!(
            field(&format!(r#"{{{ok}, "action": {{"type": "explode"}}}}"#)),
            "action.type"
        );
        assert_eq!(
            field(&format!(
                r#"{{{ok}, "action": {{"type": "allow"}}, "colour": 1}}"#
            )),
            "colour"
        );
        assert_eq!(
            field(&format!(
                r#"{{{ok}, "when": {{"from": {{"usr": "a"}}}}, "action": {{"type": "allow"}}}}"#
            )),
            "when.from.usr"
        );
        assert_eq!(
            field(r#"{"id": "Bad Id", "stage": "meta", "action": {"type": "allow"}}"#),
            "id"
        );
        assert_eq!(
            field(&format!(
                r#"{{{ok}, "when": {{"contains": ["x"]}}, "action": {{"type": "allow"}}}}"#
            )),
            "when.contains",
            "content in the broker's stage"
        );
        assert_eq!(
            field(
                r#"{"id": "r", "stage": "content", "when": {"regex": "("}, "action": {"type": "deny"}}"#
            ),
            "when.regex"
        );
        assert_eq!(
            field(r#"{"id": "r", "stage": "content", "action": {"type": "redirect", "to": "b"}}"#),
            "action.type"
        );
        assert_eq!(
            field(&format!(
                r#"{{{ok}, "action": {{"type": "tag", "tag": "Not A Tag"}}}}"#
            )),
            "action.tag"
        );
        assert_eq!(
            field(&format!(
                r#"{{{ok}, "action": {{"type": "warn", "text": " "}}}}"#
            )),
            "action.text"
        );
    }

    #[test]
    fn references_name_users_groups_domains_and_nodes() {
        let r = Rule::parse(
            br#"{"id": "r", "stage": "meta",
                 "when": {"from": {"user": "alice", "domain": "corp.example"}, "to": {"group": "ext"}},
                 "action": {"type": "notify", "to": "sup"}}"#,
        )
        .unwrap();
        assert_eq!(
            r.references(),
            [
                Reference::User("when.from.user", "alice".into()),
                Reference::Domain("when.from.domain", "corp.example".into()),
                Reference::Group("when.to.group", "ext".into()),
                Reference::User("action.to", "sup".into()),
            ]
        );
    }
}
