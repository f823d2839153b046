//! The content filter (COMPLIANCE.md, content-stage rules): a processor hop
//! the broker puts first among the text hops of every route while a
//! content rule exists. It walks the content-stage rules over the text and
//! the meta information: a `deny` blocks the message (reported `blocked`
//! with `policy:<rule>`, so the sender gets a `blocked` receipt on their own
//! medium); a `quarantine` holds it for a reviewer (reported
//! `quarantined`; once a reviewer released it — the release tag in the
//! meta information, which the broker signs — a quarantine rule passes it);
//! a `notify` tells the supervisor the meta information only; a pass
//! forwards the content unchanged, attested like any hop.
//!
//! Owns: applying the content stage. Must not touch: the rules' storage
//! (the directory's), routing.

use actix::Recipient;

use switchboard_actors::broker::messages::PolicyNotice;
use switchboard_actors::converter::{Converted, Converter, Input, ProcessorSpec};
use switchboard_core::directory::{Directory, Side};
use switchboard_core::policy::{ContentFacts, Stage, Verdict, RELEASED_TAG};
use switchboard_core::transactions::Notice;

/// A side of the message: the user's profile, else the address.
fn side<'a>(p: Option<&'a switchboard_core::directory::Profile>, a: &'a str) -> Side<'a> {
    match p {
        Some(p) => Side::User(p),
        None => Side::Address(a),
    }
}

/// The content filter.
pub struct ContentFilter {
    directory: Directory,
    notices: Option<Recipient<PolicyNotice>>,
}

impl ContentFilter {
    /// A filter reading the rules of `directory`, telling supervisors
    /// through `notices`.
    pub fn new(directory: Directory, notices: Option<Recipient<PolicyNotice>>) -> Self {
        Self { directory, notices }
    }
}

impl Converter for ContentFilter {
    fn spec(&self) -> ProcessorSpec {
        ProcessorSpec {
            target: None,
            accepts: vec!["text/".into()],
            output: "text/plain".into(),
        }
    }

    fn name(&self) -> &str {
        "content-filter"
    }

    fn convert(&self, input: &Input<'_>) -> Result<Converted, String> {
        let pass = || Converted::Content {
            content: input.content.to_vec(),
            content_type: input.content_type.to_string(),
        };
        let book = self.directory.policy();
        let Some(meta) = input.meta.filter(|_| book.rules_content()) else {
            return Ok(pass());
        };
        let policy = book.snapshot();
        let dir = &self.directory;
        let imi = &meta.imi;
        let from_profile = imi.sender_user.as_deref().and_then(|u| dir.profile(u));
        let to_profile = meta
            .route
            .recipient_user
            .as_deref()
            .and_then(|u| dir.profile(u));
        let from_address = imi.sender.to_string();
        let to_address = format!("{}:{}", meta.route.mechanism, meta.route.address);

        let text = String::from_utf8_lossy(input.content);
        let mut facts = policy.facts(
            side(from_profile.as_deref(), &from_address),
            side(to_profile.as_deref(), &to_address),
            Some(meta.route.mechanism),
            imi.priority,
        );
        facts.content = Some(ContentFacts {
            text: &text,
            content_type: input.content_type,
            len: input.content.len() as u64,
        });
        let d = policy.set.evaluate(Stage::Content, &facts);
        if let Some(n) = &self.notices {
            let rules: Vec<&str> = (d.applied.iter())
                .filter(|a| a.action == "notify")
                .map(|a| a.rule.as_str())
                .collect();
            let from = from_profile
                .as_ref()
                .map_or(from_address.as_str(), |p| p.id.as_str());
            let to = to_profile
                .as_ref()
                .map_or(to_address.as_str(), |p| p.id.as_str());
            for sup in &d.notify {
                let notice = Notice::for_supervisor(sup, from, to, imi.priority, &rules, imi.txn);
                n.do_send(PolicyNotice(notice));
            }
        }
        // What applied goes on the trail, in the attestation.
        let marks = d.marks();
        Ok(match d.verdict {
            Verdict::Deny { rule, .. } => {
                tracing::info!(txn = %imi.txn, rule = %rule, "content denied by policy");
                Converted::Blocked {
                    rule: format!("policy:{rule}"),
                    marks,
                }
            }
            Verdict::Quarantine { rule, .. } if !meta.tags.iter().any(|t| t == RELEASED_TAG) => {
                tracing::info!(txn = %imi.txn, rule = %rule, "content quarantined by policy");
                Converted::Quarantined {
                    rule: format!("policy:{rule}"),
                    marks,
                }
            }
            // Released by a reviewer, or allowed (redirect is a meta-stage
            // action).
            _ if marks.is_empty() => pass(),
            _ => Converted::Marked {
                content: input.content.to_vec(),
                content_type: input.content_type.to_string(),
                marks,
            },
        })
    }
}
