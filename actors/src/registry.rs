//! The registry of live members (the "delivery mechanism database"): who is
//! connected (gateways, processors), whether they are logged in and
//! healthy, how to reach them, which processors fit a route, and which
//! remote IM gateway holds which user's session. Every party is reached
//! with the same typed message, [`MiapFrame`], so a remote member's link
//! stands in for a local actor.
//!
//! Owns: who is live and where. Must not touch: sessions and their keys
//! (the broker's), frame checks.

use std::sync::Arc;

use actix::prelude::*;
use dashmap::DashMap;

use crate::bus::{FrameSink, MiapFrame};
use crate::converter::ProcessorSpec;
use switchboard_core::protocol::{Frame, MediumKind, MemberId};

/// The most processors on one route.
pub const MAX_PROCESSORS: usize = 4;

/// A connected member.
#[derive(Clone)]
pub struct LiveMember {
    /// The medium it serves, if a gateway.
    pub medium: Option<MediumKind>,
    /// Where it fits on routes, if a processor.
    pub converts: Option<ProcessorSpec>,
    /// Where frames for it go.
    pub recipient: FrameSink,
    /// Whether it has completed TSCS (and so may be routed to).
    pub logged_in: bool,
    /// Whether its medium reports healthy.
    pub healthy: bool,
    /// When it was last heard from (ms).
    pub last_seen_ms: u64,
    /// The id of the TCP link it is reached through, if remote.
    pub link: Option<u64>,
}

/// The registry of connected members (the "delivery mechanism database").
/// Cheap to clone.
#[derive(Clone, Default)]
pub struct MemberRegistry {
    inner: Arc<DashMap<MemberId, LiveMember>>,
    fallback: Arc<std::sync::OnceLock<Recipient<MiapFrame>>>,
    /// Remote members that are processors, with what they convert: a link
    /// login by one of them registers it as that processor.
    remote_processors: Arc<DashMap<MemberId, ProcessorSpec>>,
    /// Users whose IM session a remote IM gateway holds: user → gateway.
    sessions: Arc<DashMap<String, MemberId>>,
    /// The users each session gateway showed a token of on its current
    /// connection (`Identify` answered with the user): the only ones it
    /// may hold a session for.
    identified: Arc<DashMap<MemberId, std::collections::HashSet<String>>>,
}

impl MemberRegistry {
    /// Registers (or replaces) a member's connection; it is not routable
    /// until it logs in.
    pub fn connect(
        &self,
        id: MemberId,
        medium: Option<MediumKind>,
        recipient: impl Into<FrameSink>,
        now_ms: u64,
    ) {
        // A new connection identifies its users again.
        self.identified.remove(&id);
        self.inner.insert(
            id,
            LiveMember {
                medium,
                converts: None,
                recipient: recipient.into(),
                logged_in: false,
                healthy: true,
                last_seen_ms: now_ms,
                link: None,
            },
        );
    }

    /// Registers a remote member reached through link `link_id` (after the
    /// broker accepted its login there); a reconnection replaces the old
    /// link, keeping the member's state.
    pub fn attach_link(
        &self,
        id: MemberId,
        medium: Option<MediumKind>,
        recipient: Recipient<MiapFrame>,
        link_id: u64,
        now_ms: u64,
    ) {
        let recipient = FrameSink::from(recipient);
        let mut e = self.inner.entry(id).or_insert_with(|| LiveMember {
            medium,
            converts: None,
            recipient: recipient.clone(),
            logged_in: false,
            healthy: true,
            last_seen_ms: now_ms,
            link: Some(link_id),
        });
        e.medium = medium;
        e.recipient = recipient;
        e.link = Some(link_id);
        e.last_seen_ms = now_ms;
        e.converts = self.remote_processors.get(e.key()).map(|s| s.clone());
    }

    /// Member `id`, when it logs in over a link, is a processor fitting
    /// routes as `spec` says.
    pub fn expect_processor(&self, id: MemberId, spec: ProcessorSpec) {
        self.remote_processors.insert(id, spec);
    }

    /// Removes a remote member, if it is still reached through `link_id`;
    /// returns the users whose IM sessions it held (they are offline now).
    pub fn detach_link(&self, id: &MemberId, link_id: u64) -> Vec<String> {
        if self
            .inner
            .remove_if(id, |_, m| m.link == Some(link_id))
            .is_none()
        {
            return Vec::new();
        }
        let mut gone = Vec::new();
        self.sessions.retain(|user, m| {
            let keep = m != id;
            if !keep {
                gone.push(user.clone());
            }
            keep
        });
        gone
    }

    /// Whether `id` is a connected gateway (it serves a medium).
    pub fn is_gateway(&self, id: &MemberId) -> bool {
        self.inner.get(id).is_some_and(|m| m.medium.is_some())
    }

    /// Whether `id` is an IM gateway in another process: it is routed IM
    /// only for the users whose sessions it holds.
    pub fn is_session_gateway(&self, id: &MemberId) -> bool {
        self.inner
            .get(id)
            .is_some_and(|m| m.medium == Some(MediumKind::Im) && m.link.is_some())
    }

    /// Whether `id` is connected from another process (over a link).
    pub fn is_remote(&self, id: &MemberId) -> bool {
        self.inner.get(id).is_some_and(|m| m.link.is_some())
    }

    /// Whether `id` may ask whose API token a client showed it (MIAP
    /// `Identify`): a gateway in another process whose clients log in — IM
    /// (WebSocket sessions) or email (SMTP AUTH).
    pub fn asks_tokens(&self, id: &MemberId) -> bool {
        self.inner.get(id).is_some_and(|m| {
            matches!(m.medium, Some(MediumKind::Im | MediumKind::Email)) && m.link.is_some()
        })
    }

    /// Records that session gateway `id` was shown a token of `user` (the
    /// broker answered its `Identify` with them).
    pub fn note_identified(&self, id: &MemberId, user: &str) {
        if self.is_session_gateway(id) {
            self.identified
                .entry(id.clone())
                .or_default()
                .insert(user.to_string());
        }
    }

    /// Records that session gateway `id` holds `user`'s IM session (`true`)
    /// or no longer does (`false`; only if it was the holder). Returns
    /// false when `id` is no session gateway, or claims a session of a user
    /// it was not shown a token of on this connection.
    pub fn hold_session(&self, id: &MemberId, user: &str, held: bool) -> bool {
        if !self.is_session_gateway(id) {
            return false;
        }
        let shown = self
            .identified
            .get(id)
            .is_some_and(|users| users.contains(user));
        if held && !shown {
            return false;
        }
        if held {
            self.sessions.insert(user.to_string(), id.clone());
        } else {
            self.sessions.remove_if(user, |_, m| m == id);
        }
        true
    }

    /// The IM gateway for `user`: the live session gateway holding their
    /// session, else the node's own IM gateway (the home inbox).
    pub fn im_gateway_for(&self, user: Option<&str>) -> Option<MemberId> {
        user.and_then(|u| self.sessions.get(u).map(|m| m.clone()))
            .filter(|m| self.inner.get(m).is_some_and(|l| l.logged_in && l.healthy))
            .or_else(|| self.live_gateway(MediumKind::Im))
    }

    /// Where frames for members not registered here go (in a member's own
    /// process: the link to the node).
    pub fn set_fallback(&self, r: Recipient<MiapFrame>) {
        let _ = self.fallback.set(r);
    }

    /// Registers a processor that fits routes as `spec` says.
    pub fn connect_processor(
        &self,
        id: MemberId,
        spec: ProcessorSpec,
        recipient: Recipient<MiapFrame>,
        now_ms: u64,
    ) {
        self.connect(id.clone(), None, recipient, now_ms);
        if let Some(mut m) = self.inner.get_mut(&id) {
            m.converts = Some(spec);
        }
    }

    /// The live processors for content of type `content_type` on its way to
    /// `medium`, in order: at each step the first (by id) live processor
    /// that fits the destination and the type so far, its output the next
    /// step's type; each at most once, at most [`MAX_PROCESSORS`].
    pub fn processor_chain(&self, medium: MediumKind, content_type: &str) -> Vec<MemberId> {
        let mut live: Vec<(MemberId, ProcessorSpec)> = self
            .inner
            .iter()
            .filter(|m| m.logged_in && m.healthy)
            .filter_map(|m| Some((m.key().clone(), m.converts.clone()?)))
            .collect();
        // The content filter first wherever it fits (before text becomes
        // SMS segments or a fax page), then by id.
        let filter = crate::converter::CONTENT_FILTER;
        live.sort_by(|a, b| (a.0.as_str() != filter, &a.0).cmp(&(b.0.as_str() != filter, &b.0)));
        let mut chain = Vec::new();
        let mut ct = content_type.to_string();
        while chain.len() < MAX_PROCESSORS {
            let Some(i) = live.iter().position(|(_, s)| s.fits(medium, &ct)) else {
                break;
            };
            let (id, spec) = live.remove(i);
            chain.push(id);
            ct = spec.output;
        }
        chain
    }

    /// `id` when it is a live processor.
    pub fn live_processor_id(&self, id: &MemberId) -> Option<MemberId> {
        self.inner
            .get(id)
            .filter(|m| m.converts.is_some() && m.logged_in)
            .map(|m| m.key().clone())
    }

    /// Whether `id` is connected and logged in.
    pub fn is_live(&self, id: &MemberId) -> bool {
        self.inner.get(id).is_some_and(|m| m.logged_in)
    }

    /// Removes a member's connection.
    pub fn disconnect(&self, id: &MemberId) {
        self.inner.remove(id);
        self.identified.remove(id);
    }

    /// Marks a member logged in (or not).
    pub fn set_logged_in(&self, id: &MemberId, v: bool, now_ms: u64) {
        if let Some(mut m) = self.inner.get_mut(id) {
            m.logged_in = v;
            m.last_seen_ms = now_ms;
        }
    }

    /// Records a member's health.
    pub fn set_healthy(&self, id: &MemberId, v: bool) {
        if let Some(mut m) = self.inner.get_mut(id) {
            m.healthy = v;
        }
    }

    /// Sends `frame` from `from` to member `to`; false when it is not connected.
    pub fn send(&self, to: &MemberId, from: &MemberId, frame: Frame) -> bool {
        let m = MiapFrame {
            from: from.clone(),
            frame,
        };
        if let Some(member) = self.inner.get(to) {
            member.recipient.send(m);
            return true;
        }
        match self.fallback.get() {
            Some(f) => {
                f.do_send(m);
                true
            }
            None => false,
        }
    }

    /// A live (logged in, healthy) gateway of `medium`, if any: the lowest
    /// id. IM gateways in other processes are not picked: they only get the
    /// users whose sessions they hold ([`Self::im_gateway_for`]).
    pub fn live_gateway(&self, medium: MediumKind) -> Option<MemberId> {
        self.inner
            .iter()
            .filter(|m| m.medium == Some(medium) && m.logged_in && m.healthy)
            .filter(|m| !(medium == MediumKind::Im && m.link.is_some()))
            .map(|m| m.key().clone())
            .min()
    }

    /// Whether `member` is a live (logged in, healthy) gateway of `medium`.
    pub fn serves(&self, member: &MemberId, medium: MediumKind) -> bool {
        self.inner
            .get(member)
            .is_some_and(|m| m.medium == Some(medium) && m.logged_in && m.healthy)
    }

    /// A snapshot of every connected member, by id.
    pub fn snapshot(&self) -> Vec<MemberStatus> {
        let mut v: Vec<_> = self
            .inner
            .iter()
            .map(|m| MemberStatus {
                id: m.key().clone(),
                medium: m.medium,
                logged_in: m.logged_in,
                healthy: m.healthy,
                last_seen_ms: m.last_seen_ms,
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

/// A connected member's state, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// The member.
    pub id: MemberId,
    /// Its medium, if a gateway.
    pub medium: Option<MediumKind>,
    /// Whether it completed TSCS.
    pub logged_in: bool,
    /// Whether its medium reports healthy.
    pub healthy: bool,
    /// When it was last heard from (ms).
    pub last_seen_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Recorder;

    fn spec(target: Option<MediumKind>, accepts: &str, output: &str) -> ProcessorSpec {
        ProcessorSpec {
            target,
            accepts: vec![accepts.into()],
            output: output.into(),
        }
    }

    #[actix_rt::test]
    async fn processors_chain_by_destination_and_content_type() {
        let reg = MemberRegistry::default();
        let r = Recorder::default().start().recipient();
        for (id, s) in [
            ("proc-email", spec(None, "message/rfc822", "text/plain")),
            (
                "proc-sms",
                spec(Some(MediumKind::Sms), "text/", "application/sms"),
            ),
            (
                "proc-fax",
                spec(Some(MediumKind::Fax), "text/", "application/pdf"),
            ),
            ("proc-down", spec(None, "text/", "text/plain")),
        ] {
            let id = MemberId::new(id);
            reg.connect_processor(id.clone(), s, r.clone(), 0);
            reg.set_logged_in(&id, true, 0);
        }
        reg.set_healthy(&MemberId::new("proc-down"), false);
        let chain = |m, ct| -> Vec<String> {
            reg.processor_chain(m, ct)
                .iter()
                .map(|p| p.as_str().to_string())
                .collect()
        };
        assert_eq!(chain(MediumKind::Sms, "text/plain"), ["proc-sms"]);
        assert_eq!(chain(MediumKind::Im, "text/plain"), Vec::<String>::new());
        assert_eq!(chain(MediumKind::Im, "message/rfc822"), ["proc-email"]);
        assert_eq!(
            chain(MediumKind::Sms, "message/rfc822"),
            ["proc-email", "proc-sms"]
        );
        assert_eq!(
            chain(MediumKind::Fax, "message/rfc822"),
            ["proc-email", "proc-fax"]
        );
        // A processor that is not logged in is not on routes.
        reg.set_logged_in(&MemberId::new("proc-sms"), false, 0);
        assert_eq!(chain(MediumKind::Sms, "text/plain"), Vec::<String>::new());
    }

    #[actix_rt::test]
    async fn a_chain_never_loops() {
        let reg = MemberRegistry::default();
        let r = Recorder::default().start().recipient();
        for id in ["p1", "p2", "p3", "p4", "p5", "p6"] {
            let id = MemberId::new(id);
            reg.connect_processor(id.clone(), spec(None, "text/", "text/plain"), r.clone(), 0);
            reg.set_logged_in(&id, true, 0);
        }
        assert_eq!(
            reg.processor_chain(MediumKind::Im, "text/plain").len(),
            MAX_PROCESSORS
        );
    }
}
