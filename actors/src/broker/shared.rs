//! State the broker's shards share: sessions, the login replay cache, keys,
//! the directory, the live members, the route decider — and the [`Env`]
//! the transaction state machine reads them through. Everything here is
//! lock-free or held for microseconds; nothing blocks a shard's event loop.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use dashmap::DashMap;

use crate::bus::{PresencePush, Reported, State};
use crate::delivery::{DeliveryRegistry, ImOfflineWait};
use crate::presence::{Presence, PresenceView};
use crate::registry::MemberRegistry;
use switchboard_core::directory::{resolve, Directory, Side};
use switchboard_core::policy::{delivery_policy, Decision, Dispatch, ManagerChoice, Reach, Stage};
use switchboard_core::protocol::clock::SharedClock;
use switchboard_core::protocol::frames::LoginVerifier;
use switchboard_core::protocol::tscs::{NonceCache, Session};
use switchboard_core::protocol::{
    Frame, Imi, KeyRing, Login, LoginAck, MediumKind, MemberId, ProtocolError, RejectReason, Route,
    SecretKey, SessionPair, To, TxnId,
};
use switchboard_core::store::records::key2;
use switchboard_core::store::{Store, StoreError, Tree, TxnRecord, WriteBatch};
use switchboard_core::transactions::{Env, Redirected};

/// Broker settings.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// The broker's id (bound into every login).
    pub id: MemberId,
    /// Allowed clock skew (ms).
    pub skew_ms: u64,
    /// Session lifetime (ms).
    pub session_ttl_ms: u64,
    /// Number of shards.
    pub shards: usize,
    /// Treat IM as a mailbox that is always reachable (`delivery.im_offline
    /// = "wait"`): a recipient offline on IM gets the message in their inbox
    /// instead of on their next mechanism.
    pub im_offline_wait: ImOfflineWait,
}

/// What the broker is built from.
pub struct BrokerDeps {
    /// The store.
    pub store: Store,
    /// The clock.
    pub clock: SharedClock,
    /// Profiles, members, keys.
    pub directory: Directory,
    /// The broker key `K2`.
    pub k2: SecretKey,
    /// Live members.
    pub members: MemberRegistry,
    /// Delivery managers.
    pub delivery: DeliveryRegistry,
    /// Presence.
    pub presence: PresenceView,
    /// The presence actor: where verified presence frames go, and what
    /// IM gateways in other processes watch.
    pub presence_actor: Option<Addr<Presence>>,
}

/// The system sender of policy notices (a user id no user may take).
pub const SYSTEM_SENDER: &str = "switchboard";

pub use crate::converter::CONTENT_FILTER;

/// What all shards share.
pub struct BrokerShared {
    /// The broker's id.
    pub id: MemberId,
    /// What the broker is built from.
    pub deps: BrokerDeps,
    /// Allowed clock skew (ms).
    pub skew_ms: u64,
    /// Session lifetime (ms).
    pub session_ttl_ms: u64,
    im_offline_wait: ImOfflineWait,
    sessions: DashMap<MemberId, SessionPair>,
    nonces: Mutex<NonceCache>,
    verifier: LoginVerifier,
    refusals: DashMap<&'static str, u64>,
    /// Frames handed to each shard through the [`BrokerHandle`] and not yet
    /// handled (its queue depth).
    queued: Arc<[AtomicI64]>,
    /// Each shard's open transactions, as of its last timeout check.
    open: Arc<[AtomicI64]>,
    /// Where policy notices go, once the node set it.
    notices: std::sync::OnceLock<Recipient<super::messages::PolicyNotice>>,
    /// Who must be served by another node, once a clustered node set it.
    homes: std::sync::OnceLock<Homes>,
    /// Whether a node of the cluster is alive to place deliveries on, once
    /// a clustered node set it.
    nodes: std::sync::OnceLock<LiveNode>,
    /// The archive member and where concluded archived transactions go,
    /// once the node set it.
    archive: std::sync::OnceLock<(MemberId, Recipient<crate::bus::ArchiveConcluded>)>,
}

/// Whether a user must be served by another node (their domain requires
/// their home node): that node and its HTTP API's `host:port` while it is
/// alive.
pub type Homes = Arc<dyn Fn(&str) -> Option<(String, Option<String>)> + Send + Sync>;

/// Whether a node of the cluster is alive (this one included).
pub type LiveNode = Arc<dyn Fn(&str) -> bool + Send + Sync>;

impl BrokerShared {
    /// Shared state; restores the login replay cache from the store and
    /// forgets persisted nonces older than the skew window.
    ///
    /// # Errors
    /// When the store fails.
    pub fn new(settings: &BrokerSettings, deps: BrokerDeps) -> Result<Self, StoreError> {
        let store = &deps.store;
        let now = deps.clock.now_ms();
        let mut nonces = NonceCache::default();
        let mut stale = WriteBatch::new();
        for (k, v) in store.scan(Tree::Replay, b"")? {
            let ts = v.as_slice().try_into().map(u64::from_be_bytes).unwrap_or(0);
            let split = k.iter().position(|b| *b == 0);
            match (split, now.abs_diff(ts) <= settings.skew_ms * 2) {
                (Some(i), true) if k.len() == i + 17 => {
                    let mut n = [0u8; 16];
                    n.copy_from_slice(&k[i + 1..]);
                    let member = String::from_utf8_lossy(&k[..i]).into_owned();
                    nonces.insert(MemberId::new(member), n, ts);
                }
                _ => {
                    stale.remove(Tree::Replay, k);
                }
            }
        }
        if !stale.is_empty() {
            store.writer().write_nowait(stale);
        }
        Ok(Self {
            id: settings.id.clone(),
            verifier: LoginVerifier {
                broker: settings.id.as_str().to_string(),
                skew_ms: settings.skew_ms,
                ring: deps.directory.ring().clone(),
            },
            deps,
            skew_ms: settings.skew_ms,
            session_ttl_ms: settings.session_ttl_ms,
            im_offline_wait: settings.im_offline_wait.clone(),
            sessions: DashMap::new(),
            nonces: Mutex::new(nonces),
            refusals: DashMap::new(),
            queued: (0..settings.shards.max(1))
                .map(|_| AtomicI64::new(0))
                .collect(),
            open: (0..settings.shards.max(1))
                .map(|_| AtomicI64::new(0))
                .collect(),
            notices: std::sync::OnceLock::new(),
            homes: std::sync::OnceLock::new(),
            nodes: std::sync::OnceLock::new(),
            archive: std::sync::OnceLock::new(),
        })
    }

    /// The transactions open in all shards (as of each one's last timeout
    /// check: within a second).
    pub fn open_transactions(&self) -> u64 {
        self.open
            .iter()
            .map(|o| o.load(Ordering::Relaxed).max(0) as u64)
            .sum()
    }

    /// A shard's count of open transactions.
    pub(super) fn set_open(&self, shard: usize, n: usize) {
        if let Some(o) = self.open.get(shard) {
            o.store(n as i64, Ordering::Relaxed);
        }
    }

    /// Frames waiting in each shard's mailbox.
    pub fn queue_depths(&self) -> Vec<u64> {
        self.queued
            .iter()
            .map(|q| q.load(Ordering::Relaxed).max(0) as u64)
            .collect()
    }

    /// The per-shard counters of frames handed over and not yet handled.
    pub(super) fn queue_counters(&self) -> Arc<[AtomicI64]> {
        self.queued.clone()
    }

    /// A shard took a frame from its mailbox.
    pub(super) fn dequeued(&self, shard: usize) {
        if let Some(q) = self.queued.get(shard) {
            q.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Checks a login; on success the nonce is recorded (and persisted, so a
    /// captured login cannot be replayed across a restart either).
    pub(super) fn accept_login(
        &self,
        login: &Login,
        now: u64,
    ) -> Result<(LoginAck, Session), ProtocolError> {
        let mut nonces = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        let r = self.verifier.accept(login, now, &mut nonces)?;
        drop(nonces);
        let mut b = WriteBatch::new();
        b.insert(
            Tree::Replay,
            key2(login.member.as_str(), &login.nonce),
            login.ts_ms.to_be_bytes().to_vec(),
        );
        self.deps.store.writer().write_nowait(b);
        Ok(r)
    }

    /// Makes `s` the member's current session and marks it routable.
    pub(super) fn install_session(&self, s: Session, now: u64) {
        let member = s.member.clone();
        match self.sessions.get_mut(&member) {
            Some(mut pair) => pair.renew(s),
            None => {
                self.sessions.insert(member.clone(), SessionPair::new(s));
            }
        }
        self.deps.members.set_logged_in(&member, true, now);
    }

    /// The member's sessions.
    ///
    /// # Errors
    /// [`ProtocolError::NoSession`], [`ProtocolError::SessionExpired`],
    /// [`ProtocolError::Revoked`].
    pub fn session(&self, member: &MemberId, now: u64) -> Result<SessionPair, ProtocolError> {
        let pair = self.sessions.get(member).ok_or(ProtocolError::NoSession)?;
        if pair.current.expired(now, self.session_ttl_ms) {
            return Err(ProtocolError::SessionExpired);
        }
        if self
            .deps
            .directory
            .ring()
            .with(member, |m| Ok(m.revoked))
            .unwrap_or(true)
        {
            return Err(ProtocolError::Revoked);
        }
        Ok(pair.clone())
    }

    /// Ends a member's session (disconnect, revocation).
    pub fn end_session(&self, member: &MemberId) {
        self.sessions.remove(member);
        self.deps
            .members
            .set_logged_in(member, false, self.deps.clock.now_ms());
    }

    /// A session gateway is gone: the users whose IM sessions it held are
    /// offline (their next IM goes to the home inbox).
    pub fn sessions_ended(&self, member: &MemberId, users: Vec<String>) {
        if users.is_empty() {
            return;
        }
        tracing::info!(member = %member, users = users.len(), "session gateway gone; its users are offline");
        if let Some(presence) = &self.deps.presence_actor {
            for user in users {
                presence.do_send(Reported {
                    user,
                    state: State::Offline,
                    note: None,
                });
            }
        }
    }

    /// Tells session gateway `member` a watched user's presence (a
    /// `Presence` frame under its session); dropped while it has none —
    /// it watches again after its next login.
    pub fn tell_presence(&self, member: &MemberId, p: PresencePush) {
        let now = self.deps.clock.now_ms();
        let Ok(pair) = self.session(member, now) else {
            return;
        };
        let f = switchboard_core::protocol::frames::make_presence(
            &pair.current,
            p.user,
            p.state.to_frame(p.note),
            now,
        );
        self.send(member, Frame::Presence(f));
    }

    /// Sends a frame from the broker to a member.
    pub fn send(&self, to: &MemberId, frame: Frame) {
        let txn = frame.txn();
        if !self.deps.members.send(to, &self.id, frame) {
            tracing::debug!(member = %to, txn = ?txn.map(|t| t.to_string()), "member not connected; frame dropped (it resends on reconnect)");
        }
    }

    /// The route decision for a message that has not expired (the state
    /// machine checks the expiry first): the manager (the one given — a transaction keeps
    /// its own — or the recipient's choice for the priority) and the routes
    /// of the next dispatch: one for a sequential manager, every candidate
    /// for a parallel one, or the IM mailbox when presence skipped them all.
    ///
    /// # Errors
    /// Why no route exists.
    pub fn plan(
        &self,
        imi: &Imi,
        manager: Option<&ManagerChoice>,
        tried: &[MediumKind],
    ) -> Result<(ManagerChoice, Vec<Route>), RejectReason> {
        let r = resolve(&imi.recipient, &self.deps.directory)?;
        let choice = match manager {
            Some(m) => m.clone(),
            None => {
                let profile = r
                    .user
                    .as_deref()
                    .and_then(|u| self.deps.directory.profile(u));
                self.deps.delivery.choose(profile.as_deref(), imi.priority)
            }
        };
        let user = r.user.as_deref();
        let filtering = self.deps.directory.policy().rules_content();
        let policy = delivery_policy(
            &r.mechanisms,
            &choice.config,
            |m| self.deps.members.live_gateway(m).is_some(),
            |m| match user.map(|u| self.deps.presence.reach(u, m)) {
                Some(Reach::Offline) if m == MediumKind::Im && self.im_offline_wait.get() => {
                    Reach::Unknown
                }
                Some(r) => r,
                None => Reach::Unknown,
            },
            tried,
        );
        let picks: Vec<((MediumKind, String), bool)> =
            match (policy.candidates.split_first(), choice.dispatch) {
                (Some((first, _)), Dispatch::Sequential) => vec![(first.clone(), false)],
                (Some(_), Dispatch::Parallel) => {
                    policy.candidates.into_iter().map(|c| (c, false)).collect()
                }
                (None, _) => policy
                    .store_and_forward
                    .map(|c| (c, true))
                    .into_iter()
                    .collect(),
            };
        let routes: Vec<Route> = picks
            .into_iter()
            .filter_map(|((mechanism, address), store_and_forward)| {
                let destination = match mechanism {
                    MediumKind::Im => self.deps.members.im_gateway_for(user),
                    _ => self.deps.members.live_gateway(mechanism),
                };
                destination.map(|destination| Route {
                    mechanism,
                    address,
                    recipient_user: r.user.clone(),
                    destination,
                    processors: {
                        let mut chain =
                            (self.deps.members).processor_chain(mechanism, &imi.content_type);
                        // The filter passes text through unchanged: off the
                        // route while no content rule needs it.
                        if !filtering {
                            chain.retain(|p| p.as_str() != CONTENT_FILTER);
                        }
                        chain
                    },
                    archive: None,
                    store_and_forward,
                })
            })
            .collect();
        if routes.is_empty() {
            return Err(RejectReason::NoMechanism);
        }
        Ok((choice, routes))
    }

    /// Sends policy notices to `to` from now on (set once; later calls are
    /// ignored).
    pub fn on_notices(&self, to: Recipient<super::messages::PolicyNotice>) {
        let _ = self.notices.set(to);
    }

    /// Asks `homes` whom to send to another node from now on (set once).
    pub fn on_homes(&self, homes: Homes) {
        let _ = self.homes.set(homes);
    }

    /// Asks `alive` whether a node of the cluster can place deliveries
    /// (policy's `redirect` to a node), from now on (set once).
    pub fn on_nodes(&self, alive: LiveNode) {
        let _ = self.nodes.set(alive);
    }

    /// Routes of an archived scope give `member` a copy, and concluded
    /// archived transactions go to `to`, from now on (set once).
    pub fn on_archive(&self, member: MemberId, to: Recipient<crate::bus::ArchiveConcluded>) {
        let _ = self.archive.set((member, to));
    }

    /// Hands a concluded archived transaction to the archive (logged when
    /// there is none: the node runs without `archive.enabled`).
    pub fn archived(&self, rec: TxnRecord) {
        match self.archive.get() {
            Some((_, to)) => to.do_send(crate::bus::ArchiveConcluded(rec)),
            None => {
                tracing::debug!(txn = %rec.imi.txn, "an archived scope, and no archive on this node")
            }
        }
    }

    /// Where `user` must be served instead of this node, if anywhere.
    pub fn served_elsewhere(&self, user: &str) -> Option<(String, Option<String>)> {
        self.homes.get().and_then(|h| h(user))
    }

    /// Hands `notice` to whoever sends them (dropped, logged, when nobody).
    pub fn notice(&self, notice: switchboard_core::transactions::Notice) {
        match self.notices.get() {
            Some(r) => r.do_send(super::messages::PolicyNotice(notice)),
            None => tracing::warn!(to = %notice.to, "no one sends policy notices; dropped"),
        }
    }

    /// The meta stage of enterprise policy for `imi` over `medium`: the
    /// rules walked over what the directory knows of its sender and
    /// recipient. Reads the policy's snapshot; with no meta rules and no
    /// domain denying outside messages it decides nothing and costs
    /// nothing.
    pub fn admit(&self, imi: &Imi, medium: Option<MediumKind>) -> Decision {
        let book = self.deps.directory.policy();
        if !book.rules_meta() {
            return Decision::allow();
        }
        let policy = book.snapshot();
        // The node's own notices (the system sender, originated in this
        // process) are not ruled: a notice about a notice would never end.
        let system = imi.sender_user.is_none()
            && imi.sender.medium == MediumKind::Im
            && imi.sender.address == SYSTEM_SENDER
            && !self.deps.members.is_remote(&imi.originator);
        if system {
            return Decision::allow();
        }
        let dir = &self.deps.directory;
        let from_profile = imi.sender_user.as_deref().and_then(|u| dir.profile(u));
        let from_address = imi.sender.to_string();
        let to_profile = match &imi.recipient {
            To::User(u) => dir.profile(u),
            To::Address(a) => dir.user_for_address(a).and_then(|u| dir.profile(&u)),
        };
        let to_address = imi.recipient.to_string();
        let from = match &from_profile {
            Some(p) => Side::User(p),
            None => Side::Address(&from_address),
        };
        let to = match &to_profile {
            Some(p) => Side::User(p),
            None => Side::Address(&to_address),
        };
        let facts = policy.facts(from, to, medium, imi.priority);
        policy.set.evaluate(Stage::Meta, &facts)
    }

    /// Counts a refused frame (the admin API shows the counts).
    pub fn count_refusal(&self, e: ProtocolError) {
        metrics::counter!("switchboard_miap_refusals_total", "reason" => e.code()).increment(1);
        *self.refusals.entry(e.code()).or_insert(0) += 1;
    }

    /// Refused frames by reason.
    pub fn refusals(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<_> = self
            .refusals
            .iter()
            .map(|e| (*e.key(), *e.value()))
            .collect();
        v.sort();
        v
    }
}

impl Env for BrokerShared {
    fn now_ms(&self) -> u64 {
        self.deps.clock.now_ms()
    }

    fn session(&self, member: &MemberId, now_ms: u64) -> Result<SessionPair, ProtocolError> {
        BrokerShared::session(self, member, now_ms)
    }

    fn ring(&self) -> &KeyRing {
        self.deps.directory.ring()
    }

    fn k2(&self) -> &SecretKey {
        &self.deps.k2
    }

    fn stored(&self, txn: &TxnId) -> Result<Option<TxnRecord>, StoreError> {
        self.deps.store.txn(txn)
    }

    fn plan(
        &self,
        imi: &Imi,
        manager: Option<&ManagerChoice>,
        tried: &[MediumKind],
    ) -> Result<(ManagerChoice, Vec<Route>), RejectReason> {
        BrokerShared::plan(self, imi, manager, tried)
    }

    fn admit(&self, imi: &Imi, medium: Option<MediumKind>) -> Decision {
        BrokerShared::admit(self, imi, medium)
    }

    fn archive_member(&self) -> Option<MemberId> {
        let (member, _) = self.archive.get()?;
        self.deps.members.is_live(member).then(|| member.clone())
    }

    /// A gateway member of the route's medium that is live takes it; a
    /// live node of the cluster places its delivery (not IM: that goes
    /// where the user's session is).
    fn redirect(&self, route: &mut Route, to: &str) -> Option<Redirected> {
        let member = MemberId::new(to);
        if self.deps.members.serves(&member, route.mechanism) {
            route.destination = member;
            return Some(Redirected::Gateway);
        }
        let node = self.nodes.get().is_some_and(|alive| alive(to));
        (node && route.mechanism != MediumKind::Im).then(|| Redirected::Node(to.to_string()))
    }
}
