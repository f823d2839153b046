//! The meta stage of enterprise policy on a plan (COMPLIANCE.md): each
//! planned route is admitted for its medium. A rule that denies a route
//! only for its medium (`when.medium`) skips that mechanism for the next
//! one; a deny that holds whatever the medium blocks the message. The
//! marks (tags, the archive chosen, supervisors to tell) go on the trail;
//! the tags travel with every release.

use super::{plan, Effects, Env, Notice, Redirected};
use crate::policy::{Decision, ManagerChoice, Verdict, RELEASED_TAG};
use crate::protocol::{Imi, MediumKind, RejectReason, Route};
use crate::store::TxnRecord;

/// Why a plan has no admitted route.
#[derive(Debug)]
pub(super) enum Refusal {
    /// No route at all (unknown recipient, no mechanism, expired).
    Reject(RejectReason),
    /// Policy denies it: the rule, what the sender is told, and every rule
    /// that applied.
    Deny {
        rule: String,
        reason: String,
        decision: Box<Decision>,
    },
}

/// Most plans tried while rules skip mechanisms (there are four mediums).
const MAX_REPLANS: usize = 5;

/// The next dispatch's routes that policy admits, with the decision for the
/// first of them.
pub(super) fn plan_admitted(
    env: &dyn Env,
    imi: &Imi,
    manager: Option<&ManagerChoice>,
    tried: &[MediumKind],
) -> Result<(ManagerChoice, Vec<Route>, Decision), Refusal> {
    let mut skipped = tried.to_vec();
    let mut denied_for_medium: Option<Decision> = None;
    // The rules that denied a medium skipped on the way, for the trail.
    let mut on_the_way = Vec::new();
    for _ in 0..MAX_REPLANS {
        let (choice, routes) = match plan(env, imi, manager, &skipped) {
            Ok(p) => p,
            // Every mechanism left was denied for its medium: that is the
            // rule that stopped the message.
            Err(RejectReason::NoMechanism) if denied_for_medium.is_some() => break,
            Err(r) => return Err(Refusal::Reject(r)),
        };
        let mut kept: Vec<(Route, Decision)> = Vec::new();
        for mut route in routes {
            let mut d = env.admit(imi, Some(route.mechanism));
            if let Verdict::Redirect { to, .. } = &d.verdict {
                match env.redirect(&mut route, to) {
                    Some(Redirected::Gateway) => {}
                    Some(Redirected::Node(node)) => d.tags.push(format!("node:{node}")),
                    // Where policy sends it cannot take it now: the next
                    // mechanism, as for a medium denied.
                    None => {
                        tracing::info!(txn = %imi.txn, to = %to, mechanism = %route.mechanism, "redirect target cannot take this route; next mechanism");
                        skipped.push(route.mechanism);
                        on_the_way.extend(d.applied.iter().cloned());
                        continue;
                    }
                }
            }
            if matches!(d.verdict, Verdict::Deny { .. }) {
                let whatever = env.admit(imi, None);
                if let Verdict::Deny { rule, reason } = whatever.verdict.clone() {
                    return Err(Refusal::Deny {
                        rule,
                        reason,
                        decision: Box::new(whatever),
                    });
                }
                skipped.push(route.mechanism);
                on_the_way.extend(d.applied.iter().cloned());
                denied_for_medium = Some(d);
                continue;
            }
            kept.push((route, d));
        }
        if let Some((_, first)) = kept.first() {
            let mut decision = first.clone();
            on_the_way.append(&mut decision.applied);
            decision.applied = on_the_way;
            // The archive chosen is on the trail (`archive:<name>`), and
            // the archive member, while it is live, gets a copy.
            let archive = decision.archive.as_ref().and_then(|_| env.archive_member());
            let routes = (kept.into_iter())
                .map(|(r, _)| Route {
                    archive: archive.clone(),
                    ..r
                })
                .collect();
            return Ok((choice, routes, decision));
        }
    }
    match denied_for_medium {
        Some(decision) => match decision.verdict.clone() {
            Verdict::Deny { rule, reason } => Err(Refusal::Deny {
                rule,
                reason,
                decision: Box::new(decision),
            }),
            _ => Err(Refusal::Reject(RejectReason::NoMechanism)),
        },
        None => Err(Refusal::Reject(RejectReason::NoMechanism)),
    }
}

/// Whether the decision holds the message for a reviewer: the status
/// code (`policy:<rule>`) when a rule quarantines it and no reviewer has
/// released it already.
pub(super) fn held(rec: &TxnRecord, d: &Decision) -> Option<String> {
    match &d.verdict {
        Verdict::Quarantine { rule, .. } if !released(rec) => Some(format!("policy:{rule}")),
        _ => None,
    }
}

/// Whether a reviewer released the message from quarantine.
pub(super) fn released(rec: &TxnRecord) -> bool {
    let tag = format!("tag:{RELEASED_TAG}");
    rec.events.iter().any(|e| e.kind == tag)
}

/// Writes what applied into the transaction's trail: one event per rule
/// (`policy:<rule>:v<version>:<action>`), and the marks (`tag:<tag>`,
/// `notify:<user>`, `archive:<archive>`), each once.
pub(super) fn record(rec: &mut TxnRecord, d: &Decision, now: u64) {
    let add = |rec: &mut TxnRecord, kind: String| {
        if !rec.events.iter().any(|e| e.kind == kind) {
            rec.event(now, kind);
        }
    };
    for m in d.marks() {
        add(rec, m);
    }
}

/// The notices a decision asks for: each supervisor told what matched
/// (meta information only — who, to whom, priority, the rules, the txn —
/// never the content), the sender warned and shown their domain's banner,
/// a local `recipient` shown theirs for a message from outside — a
/// warning once per conversation a day, a banner once per conversation
/// whichever side writes.
pub(super) fn notices(rec: &TxnRecord, d: &Decision, out: &mut Effects, recipient: Option<&str>) {
    let imi = &rec.imi;
    let from = rec.sender_name();
    let to = imi.recipient.to_string();
    let rules: Vec<&str> = (d.applied.iter())
        .filter(|a| a.action == "notify")
        .map(|a| a.rule.as_str())
        .collect();
    for sup in &d.notify {
        out.notices.push(Notice::for_supervisor(
            sup,
            &from,
            &to,
            imi.priority,
            &rules,
            imi.txn,
        ));
    }
    if let (Some(r), Some(text)) = (recipient, &d.banner_for_recipient) {
        out.notices.push(Notice {
            to: r.to_string(),
            text: text.clone(),
            once_per: Some((r.to_string(), from.clone())),
        });
    }
    let Some(sender) = &imi.sender_user else {
        return;
    };
    let pair = Some((sender.clone(), to.clone()));
    for text in d.warn.iter().chain(&d.banner) {
        out.notices.push(Notice {
            to: sender.clone(),
            text: text.clone(),
            once_per: pair.clone(),
        });
    }
}
