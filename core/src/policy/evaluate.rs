//! Evaluating enterprise rules (COMPLIANCE.md, "Rules"): a pure function of
//! the rules and what is known of one message — no store, no directory, no
//! blocking call — so the broker can run the meta stage on its hot path and
//! the content filter the content stage.
//!
//! Rules are walked from the highest priority down (ties by id). Every
//! matching marking action applies; the first matching deciding action
//! decides and ends the walk. No deciding match: the sender's domain's
//! `external = "deny"` refuses a message to an external party, else allow.

use std::collections::BTreeMap;

use super::domain::{Domain, External};
use super::rule::{Action, InvalidRule, Party, Rule, Stage};
use crate::protocol::{MediumKind, Priority};

/// What is known of one side of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartyFacts {
    /// The user, if a local user.
    pub user: Option<String>,
    /// Their domain.
    pub domain: Option<String>,
    /// Their groups.
    pub groups: Vec<String>,
    /// Their attributes.
    pub attrs: BTreeMap<String, String>,
    /// An address that is no local user, or a user of another domain than
    /// the other side's.
    pub external: bool,
}

/// The content, for the content stage.
#[derive(Debug, Clone, Copy)]
pub struct ContentFacts<'a> {
    /// Its text.
    pub text: &'a str,
    /// Its MIME type.
    pub content_type: &'a str,
    /// Its length, bytes.
    pub len: u64,
}

/// What is known of one message.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    /// The sender.
    pub from: PartyFacts,
    /// The recipient.
    pub to: PartyFacts,
    /// The medium it goes over, once known.
    pub medium: Option<MediumKind>,
    /// Its priority.
    pub priority: Priority,
    /// The sender's domain's settings.
    pub from_domain: Option<&'a Domain>,
    /// The recipient's domain's settings.
    pub to_domain: Option<&'a Domain>,
    /// The content (content stage only).
    pub content: Option<ContentFacts<'a>>,
}

/// How the walk ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The message goes on.
    Allow,
    /// Blocked: `reason` for the sender, `rule` in the status.
    Deny {
        /// The rule (`domain:<name>` for a domain's default).
        rule: String,
        /// Told to the sender.
        reason: String,
    },
    /// Through this node or member.
    Redirect {
        /// The rule.
        rule: String,
        /// Where.
        to: String,
    },
    /// Waits for an operator.
    Quarantine {
        /// The rule.
        rule: String,
        /// Why.
        reason: String,
    },
}

/// A rule that applied, as the trail and `GET /v1/messages/{txn}` show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Applied {
    /// The rule id.
    pub rule: String,
    /// Its version.
    pub version: u64,
    /// Its action's type.
    pub action: String,
}

/// The tag a reviewer's release puts on a quarantined message: a rule
/// that quarantines it does not hold it again (a rule cannot write this
/// tag: rule tags have no `:`).
pub const RELEASED_TAG: &str = "quarantine:released";

/// What the rules decided for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// How it ended.
    pub verdict: Verdict,
    /// Every rule that applied, in the order walked.
    pub applied: Vec<Applied>,
    /// Tags to put on the transaction.
    pub tags: Vec<String>,
    /// Supervisors to tell (meta information only).
    pub notify: Vec<String>,
    /// Notices to the sender.
    pub warn: Vec<String>,
    /// The archive it goes to, if any.
    pub archive: Option<String>,
    /// No point-to-point delivery.
    pub strip_p2p: bool,
    /// The sender's domain's banner, for a message to an external party.
    pub banner: Option<String>,
    /// The recipient's domain's banner, for a message from an external
    /// party.
    pub banner_for_recipient: Option<String>,
}

impl Decision {
    /// What the transaction's trail says of it: `policy:<rule>:v<n>:<action>`
    /// for every rule that applied, then `tag:<tag>`, `notify:<user>`,
    /// `archive:<name>` and `redirected:<to>`.
    pub fn marks(&self) -> Vec<String> {
        let mut m: Vec<String> = (self.applied.iter())
            .map(|a| format!("policy:{}:v{}:{}", a.rule, a.version, a.action))
            .collect();
        m.extend(self.tags.iter().map(|t| format!("tag:{t}")));
        m.extend(self.notify.iter().map(|n| format!("notify:{n}")));
        m.extend(self.archive.iter().map(|a| format!("archive:{a}")));
        if let Verdict::Redirect { to, .. } = &self.verdict {
            m.push(format!("redirected:{to}"));
        }
        m
    }

    /// No rule applied: allow.
    pub fn allow() -> Self {
        Self {
            verdict: Verdict::Allow,
            applied: Vec::new(),
            tags: Vec::new(),
            notify: Vec::new(),
            warn: Vec::new(),
            archive: None,
            strip_p2p: false,
            banner: None,
            banner_for_recipient: None,
        }
    }
}

/// Rules ready to evaluate: sorted, regular expressions compiled once.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<(Rule, Option<regex::Regex>)>,
}

impl RuleSet {
    /// Sorts and compiles `rules`.
    ///
    /// # Errors
    /// A rule that does not validate.
    pub fn new(mut rules: Vec<Rule>) -> Result<Self, InvalidRule> {
        rules.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
        let mut out = Vec::with_capacity(rules.len());
        for r in rules {
            r.validate()?;
            let re = match &r.when.regex {
                Some(p) => Some(
                    regex::RegexBuilder::new(p)
                        .case_insensitive(true)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| super::rule::invalid("when.regex", e.to_string()))?,
                ),
                None => None,
            };
            out.push((r, re));
        }
        Ok(Self { rules: out })
    }

    /// How many rules, at every stage.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any rule is of `stage`.
    pub fn has(&self, stage: Stage) -> bool {
        self.rules.iter().any(|(r, _)| r.stage == stage)
    }

    /// The rules of `stage` applied to `facts`.
    pub fn evaluate(&self, stage: Stage, facts: &Facts<'_>) -> Decision {
        let mut d = Decision::allow();
        let mut decided = false;
        for (rule, re) in self.rules.iter().filter(|(r, _)| r.stage == stage) {
            if !matches(rule, re.as_ref(), facts) {
                continue;
            }
            d.applied.push(Applied {
                rule: rule.id.clone(),
                version: rule.version,
                action: rule.action.name().to_string(),
            });
            let id = rule.id.clone();
            match &rule.action {
                Action::Allow => decided = true,
                Action::Deny { reason } => {
                    d.verdict = Verdict::Deny {
                        reason: or_rule(reason, &id),
                        rule: id,
                    };
                    decided = true;
                }
                Action::Redirect { to } => {
                    d.verdict = Verdict::Redirect {
                        rule: id,
                        to: to.clone(),
                    };
                    decided = true;
                }
                Action::Quarantine { reason } => {
                    d.verdict = Verdict::Quarantine {
                        reason: or_rule(reason, &id),
                        rule: id,
                    };
                    decided = true;
                }
                Action::StripP2p => d.strip_p2p = true,
                Action::Archive { archive } => {
                    d.archive.get_or_insert_with(|| archive.clone());
                }
                Action::Tag { tag } => push_once(&mut d.tags, tag),
                Action::Notify { to } => push_once(&mut d.notify, to),
                Action::Warn { text } => push_once(&mut d.warn, text),
            }
            if decided {
                break;
            }
        }
        if stage == Stage::Meta && !matches!(d.verdict, Verdict::Deny { .. }) {
            if facts.to.external {
                d.banner = facts.from_domain.and_then(|dom| dom.banner.clone());
            }
            if facts.from.external {
                d.banner_for_recipient = facts.to_domain.and_then(|dom| dom.banner.clone());
            }
        }
        // A domain that archives its users' deliveries: in its name, unless
        // a rule chose an archive.
        if stage == Stage::Meta && d.archive.is_none() {
            let archived = |name: &Option<String>, dom: Option<&Domain>| {
                name.clone().filter(|_| dom.is_some_and(|x| x.archive))
            };
            d.archive = archived(&facts.from.domain, facts.from_domain)
                .or_else(|| archived(&facts.to.domain, facts.to_domain));
        }
        if !decided && stage == Stage::Meta && facts.to.external {
            if let Some((name, dom)) = facts.from.domain.as_ref().zip(facts.from_domain) {
                if dom.external == External::Deny {
                    d.verdict = Verdict::Deny {
                        rule: format!("domain:{name}"),
                        reason: format!("{name} does not allow messages outside it"),
                    };
                }
            }
        }
        d
    }
}

fn or_rule(reason: &str, id: &str) -> String {
    if reason.is_empty() {
        format!("refused by policy {id}")
    } else {
        reason.to_string()
    }
}

fn push_once(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

fn party_matches(p: &Party, f: &PartyFacts) -> bool {
    p.user.as_ref().is_none_or(|u| f.user.as_ref() == Some(u))
        && p.domain
            .as_ref()
            .is_none_or(|d| f.domain.as_ref() == Some(d))
        && p.group.as_ref().is_none_or(|g| f.groups.contains(g))
        && p.attr.iter().all(|(k, v)| f.attrs.get(k) == Some(v))
        && p.external.is_none_or(|e| e == f.external)
}

fn matches(rule: &Rule, re: Option<&regex::Regex>, facts: &Facts<'_>) -> bool {
    let w = &rule.when;
    let meta = w
        .from
        .as_ref()
        .is_none_or(|p| party_matches(p, &facts.from))
        && w.to.as_ref().is_none_or(|p| party_matches(p, &facts.to))
        && w.medium.is_none_or(|m| facts.medium == Some(m))
        && w.priority.is_none_or(|p| facts.priority == p);
    if !meta || rule.stage == Stage::Meta {
        return meta;
    }
    let Some(c) = facts.content else {
        return false;
    };
    let lower = c.text.to_lowercase();
    (w.contains.is_empty() || w.contains.iter().any(|p| lower.contains(&p.to_lowercase())))
        && re.is_none_or(|re| re.is_match(c.text))
        && w.content_type.as_ref().is_none_or(|t| {
            if t.ends_with('/') {
                c.content_type.starts_with(t.as_str())
            } else {
                c.content_type == t
            }
        })
        && w.larger_than.is_none_or(|n| c.len > n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> Rule {
        Rule::parse(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn user(id: &str, domain: &str, groups: &[&str]) -> PartyFacts {
        PartyFacts {
            user: Some(id.into()),
            domain: Some(domain.into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            attrs: BTreeMap::new(),
            external: false,
        }
    }

    fn outside(addr: &str) -> PartyFacts {
        PartyFacts {
            user: None,
            domain: addr.rsplit_once('@').map(|(_, d)| d.to_string()),
            external: true,
            ..PartyFacts::default()
        }
    }

    fn rules() -> RuleSet {
        RuleSet::new(vec![
            rule(r#"{"id": "no-ext-legal", "priority": 100, "stage": "meta",
                     "when": {"from": {"group": "legal"}, "to": {"external": true}},
                     "action": {"type": "deny", "reason": "legal may not message outside"}}"#),
            rule(r#"{"id": "tag-sms", "priority": 50, "stage": "meta", "when": {"medium": "sms"},
                     "action": {"type": "tag", "tag": "sms"}}"#),
            rule(r#"{"id": "watch-urgent", "priority": 60, "stage": "meta", "when": {"priority": "urgent"},
                     "action": {"type": "notify", "to": "sup"}}"#),
            rule(r#"{"id": "ceo-ok", "priority": 200, "stage": "meta", "when": {"from": {"user": "ceo"}},
                     "action": {"type": "allow"}}"#),
            rule(r#"{"id": "ext-warn", "priority": 10, "stage": "meta", "when": {"to": {"external": true}},
                     "action": {"type": "warn", "text": "This goes outside the company."}}"#),
            rule(r#"{"id": "project-x", "priority": 100, "stage": "content",
                     "when": {"contains": ["Project X"]}, "action": {"type": "deny", "reason": "Project X is confidential"}}"#),
            rule(r#"{"id": "cards", "priority": 90, "stage": "content",
                     "when": {"regex": "\\b\\d{4}-\\d{4}-\\d{4}-\\d{4}\\b"}, "action": {"type": "quarantine"}}"#),
            rule(r#"{"id": "big", "priority": 80, "stage": "content",
                     "when": {"larger_than": 1000, "content_type": "image/"}, "action": {"type": "tag", "tag": "big-image"}}"#),
        ])
        .unwrap()
    }

    struct Row {
        what: &'static str,
        from: PartyFacts,
        to: PartyFacts,
        medium: Option<MediumKind>,
        priority: Priority,
        verdict: Verdict,
        applied: &'static [&'static str],
    }

    #[test]
    fn the_meta_stage_table() {
        let set = rules();
        let deny = |rule: &str, reason: &str| Verdict::Deny {
            rule: rule.into(),
            reason: reason.into(),
        };
        let rows = [
            Row {
                what: "legal to an outside address: denied, nothing below it walked",
                from: user("lena", "corp.example", &["legal"]),
                to: outside("x@ext.example"),
                medium: Some(MediumKind::Email),
                priority: Priority::Normal,
                verdict: deny("no-ext-legal", "legal may not message outside"),
                applied: &["no-ext-legal"],
            },
            Row {
                what: "legal inside: allowed",
                from: user("lena", "corp.example", &["legal"]),
                to: user("bob", "corp.example", &[]),
                medium: Some(MediumKind::Im),
                priority: Priority::Normal,
                verdict: Verdict::Allow,
                applied: &[],
            },
            Row {
                what: "the higher allow decides before the deny",
                from: user("ceo", "corp.example", &["legal"]),
                to: outside("x@ext.example"),
                medium: None,
                priority: Priority::Normal,
                verdict: Verdict::Allow,
                applied: &["ceo-ok"],
            },
            Row {
                what: "marks accumulate in priority order",
                from: user("bob", "corp.example", &[]),
                to: outside("+4915100"),
                medium: Some(MediumKind::Sms),
                priority: Priority::Urgent,
                verdict: Verdict::Allow,
                applied: &["watch-urgent", "tag-sms", "ext-warn"],
            },
        ];
        for r in rows {
            let facts = Facts {
                from: r.from,
                to: r.to,
                medium: r.medium,
                priority: r.priority,
                ..Facts::default()
            };
            let d = set.evaluate(Stage::Meta, &facts);
            assert_eq!(d.verdict, r.verdict, "{}", r.what);
            let applied: Vec<&str> = d.applied.iter().map(|a| a.rule.as_str()).collect();
            assert_eq!(applied, r.applied, "{}", r.what);
        }
        let facts = Facts {
            from: user("bob", "corp.example", &[]),
            to: outside("+4915100"),
            medium: Some(MediumKind::Sms),
            priority: Priority::Urgent,
            ..Facts::default()
        };
        let d = set.evaluate(Stage::Meta, &facts);
        assert_eq!(
            (d.tags, d.notify, d.warn),
            (
                vec!["sms".to_string()],
                vec!["sup".to_string()],
                vec!["This goes outside the company.".to_string()]
            )
        );
    }

    /// The archive chosen: the highest-priority archive rule's (marks
    /// accumulate, the first archive named stays), else a domain's that
    /// archives its users (the sender's first), else none.
    #[test]
    fn the_archive_is_chosen_by_rule_then_by_domain() {
        let set = RuleSet::new(vec![
            rule(
                r#"{"id": "de", "priority": 20, "stage": "meta", "when": {"from": {"attr": {"country": "DE"}}},
                    "action": {"type": "archive", "archive": "archive-de"}}"#,
            ),
            rule(
                r#"{"id": "legal", "priority": 10, "stage": "meta", "when": {"from": {"group": "legal"}},
                    "action": {"type": "archive", "archive": "archive-legal"}}"#,
            ),
        ])
        .unwrap();
        let archiving = Domain {
            archive: true,
            ..Domain::default()
        };
        let with = |country: Option<&str>, groups: &[&str], from_dom, to_dom| {
            let mut from = user("bob", "corp.example", groups);
            if let Some(c) = country {
                from.attrs.insert("country".into(), c.into());
            }
            let facts = Facts {
                from,
                to: user("al", "labs.example", &[]),
                from_domain: from_dom,
                to_domain: to_dom,
                ..Facts::default()
            };
            set.evaluate(Stage::Meta, &facts).archive
        };
        let a = |s: &str| Some(s.to_string());
        assert_eq!(with(Some("DE"), &["legal"], None, None), a("archive-de"));
        assert_eq!(with(None, &["legal"], None, None), a("archive-legal"));
        assert_eq!(with(None, &[], Some(&archiving), None), a("corp.example"));
        assert_eq!(with(None, &[], None, Some(&archiving)), a("labs.example"));
        assert_eq!(
            with(Some("DE"), &[], Some(&archiving), None),
            a("archive-de")
        );
        assert_eq!(with(None, &[], None, None), None);
    }

    #[test]
    fn a_domain_that_denies_outside_messages_is_the_last_word() {
        let set = RuleSet::new(vec![rule(
            r#"{"id": "ops-ok", "priority": 5, "stage": "meta", "when": {"from": {"group": "ops"}},
                "action": {"type": "allow"}}"#,
        )])
        .unwrap();
        let closed = Domain {
            external: External::Deny,
            ..Domain::default()
        };
        let facts = |groups: &[&str], to: PartyFacts| Facts {
            from: user("bob", "corp.example", groups),
            to,
            from_domain: Some(&closed),
            ..Facts::default()
        };
        let d = set.evaluate(Stage::Meta, &facts(&[], outside("x@ext.example")));
        assert!(
            matches!(&d.verdict, Verdict::Deny { rule, .. } if rule == "domain:corp.example"),
            "{d:?}"
        );
        let inside = set.evaluate(Stage::Meta, &facts(&[], user("al", "corp.example", &[])));
        assert_eq!(inside.verdict, Verdict::Allow);
        let ops = set.evaluate(Stage::Meta, &facts(&["ops"], outside("x@ext.example")));
        assert_eq!(
            ops.verdict,
            Verdict::Allow,
            "a rule's allow overrides the domain"
        );
    }

    #[test]
    fn the_content_stage_reads_phrases_patterns_types_and_sizes() {
        let set = rules();
        let verdict = |text: &str, ct: &str| {
            let facts = Facts {
                from: user("bob", "corp.example", &[]),
                to: user("al", "corp.example", &[]),
                content: Some(ContentFacts {
                    text,
                    content_type: ct,
                    len: text.len() as u64,
                }),
                ..Facts::default()
            };
            set.evaluate(Stage::Content, &facts)
        };
        assert!(matches!(
            verdict("about project x tomorrow", "text/plain").verdict,
            Verdict::Deny { rule, .. } if rule == "project-x"
        ));
        assert!(matches!(
            verdict("card 1234-5678-9012-3456", "text/plain").verdict,
            Verdict::Quarantine { rule, .. } if rule == "cards"
        ));
        assert_eq!(verdict("lunch?", "text/plain").verdict, Verdict::Allow);
        let big = "x".repeat(2000);
        assert_eq!(verdict(&big, "image/png").tags, ["big-image"]);
        assert!(verdict(&big, "text/plain").tags.is_empty());
        // Without content, no content rule matches; meta rules are not walked.
        let none = set.evaluate(Stage::Content, &Facts::default());
        assert!(none.applied.is_empty());
    }
}
