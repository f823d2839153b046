//! The node's end of the transport: the MIAP listener and a [`NodeLink`]
//! per remote member's connection. What a link reads goes to the broker,
//! except a `Transmit` (to the next hop of its route) and a `TransmitAck`
//! (to the member whose `Transmit` it acknowledges); what the node sends
//! the member it writes. It stands for the member only once the broker
//! accepted the member's `Login` on it.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use dashmap::DashMap;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::{plain, wire_up, LinkRead, LinkWrite, Outgoing, Wire, Wrap};
use crate::broker::BrokerShared;
use crate::bus::{BrokerHandle, LinkLogin, MiapFrame};
use crate::registry::MemberRegistry;
use switchboard_core::directory::Directory;
use switchboard_core::protocol::codec;
use switchboard_core::protocol::{Frame, MemberId, ProtocolError, RefuseReason, TxnId};

/// Limits of the node's MIAP listener.
#[derive(Debug, Clone)]
pub struct LinkLimits {
    /// Largest frame, bytes.
    pub max_frame: usize,
    /// Time a new connection has to log in.
    pub login_timeout: Duration,
    /// Silence after which a connection is closed.
    pub idle_timeout: Duration,
    /// Connections not logged in allowed per peer address.
    pub unauthenticated_per_peer: usize,
    /// Connections not logged in allowed in all (addresses are cheap: an
    /// IPv6 /64 has many).
    pub unauthenticated_total: usize,
    /// Largest frame before the member logged in (a `Login` is ≈ 200 B).
    pub pre_login_frame: usize,
    /// Frames a connection may queue unwritten before it counts as stuck.
    pub write_queue: usize,
}

impl Default for LinkLimits {
    fn default() -> Self {
        Self {
            max_frame: codec::DEFAULT_MAX_FRAME,
            login_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            unauthenticated_per_peer: 8,
            unauthenticated_total: 256,
            pre_login_frame: PRE_LOGIN_FRAME,
            write_queue: super::LINK_QUEUE,
        }
    }
}

/// The largest frame a connection may send before it logged in: a stranger
/// holds at most this (plus a 64 KiB read buffer) per connection.
pub const PRE_LOGIN_FRAME: usize = 16 * 1024;

/// Bad frames before a connection is closed.
const MAX_BAD: u32 = 10;

/// `Transmit`s remembered per link for routing their acknowledgements.
const MAX_TRANSMITS: usize = 65_536;

/// What the node's links need.
#[derive(Clone)]
pub struct LinkDeps {
    /// The broker.
    pub broker: BrokerHandle,
    /// Its shared state (refusal counters, the broker's id).
    pub shared: Arc<BrokerShared>,
    /// Who is connected.
    pub members: MemberRegistry,
    /// Members' media.
    pub directory: Directory,
    /// Limits.
    pub limits: LinkLimits,
    /// The open connections.
    pub links: Links,
    /// What every accepted connection goes through first (TLS), if anything.
    pub wrap: Option<Wrap>,
}

/// The node's open MIAP connections (to close them on shutdown).
#[derive(Clone, Default)]
pub struct Links(Arc<DashMap<u64, Addr<NodeLink>>>);

impl Links {
    /// Closes every connection (each writes what it has queued first).
    pub fn close_all(&self) {
        for l in self.0.iter() {
            l.value().do_send(Close);
        }
    }

    /// How many are open.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Close the connection.
#[derive(Message)]
#[rtype(result = "()")]
struct Close;

static NEXT_LINK: AtomicU64 = AtomicU64::new(1);

/// Accepts MIAP connections on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, deps: LinkDeps) {
    let pending: Arc<DashMap<IpAddr, usize>> = Arc::new(DashMap::new());
    let total = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "MIAP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = {
            let mut n = pending.entry(peer.ip()).or_insert(0);
            if *n >= deps.limits.unauthenticated_per_peer
                || total.load(Ordering::Relaxed) >= deps.limits.unauthenticated_total
            {
                None
            } else {
                *n += 1;
                total.fetch_add(1, Ordering::Relaxed);
                Some(Slot {
                    pending: pending.clone(),
                    total: total.clone(),
                    ip: peer.ip(),
                })
            }
        };
        let Some(slot) = slot else {
            deps.shared.count_refusal(ProtocolError::NoSession);
            tracing::warn!(peer = %peer, "MIAP connection refused: too many connections that have not logged in (from this peer, or in all)");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let deps = deps.clone();
        match deps.wrap.clone() {
            None => start_link(plain(stream), peer, slot, deps),
            Some(wrap) => {
                // The handshake runs on its own: a slow peer holds only its
                // slot, and no longer than the login timeout.
                let within = deps.limits.login_timeout;
                actix::spawn(async move {
                    match tokio::time::timeout(within, wrap(stream)).await {
                        Ok(Ok(halves)) => start_link(halves, peer, slot, deps),
                        Ok(Err(e)) => {
                            deps.shared.count_refusal(ProtocolError::Malformed);
                            tracing::warn!(peer = %peer, error = %e, "MIAP connection refused: TLS handshake failed");
                        }
                        Err(_) => {
                            deps.shared.count_refusal(ProtocolError::Malformed);
                            tracing::warn!(peer = %peer, "MIAP connection closed: no TLS handshake in time");
                        }
                    }
                });
            }
        }
    }
}

/// A [`NodeLink`] for a connection that is ready for frames.
fn start_link(halves: (LinkRead, LinkWrite), peer: SocketAddr, slot: Slot, deps: LinkDeps) {
    NodeLink::create(move |ctx| {
        let gate = Some(deps.shared.deps.store.clone());
        let max_frame = Arc::new(AtomicUsize::new(deps.limits.pre_login_frame));
        let out = wire_up(
            halves,
            max_frame.clone(),
            deps.limits.write_queue,
            gate,
            ctx,
        );
        NodeLink {
            id: NEXT_LINK.fetch_add(1, Ordering::Relaxed),
            peer,
            deps,
            out,
            member: None,
            pending: None,
            slot: Some(slot),
            max_frame,
            transmits: HashMap::new(),
            order: VecDeque::new(),
            bad: 0,
            heard: Instant::now(),
        }
    });
}

/// A place among a peer's connections that have not logged in yet (and
/// among all of them).
struct Slot {
    pending: Arc<DashMap<IpAddr, usize>>,
    total: Arc<AtomicUsize>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.total.fetch_sub(1, Ordering::Relaxed);
        let gone = match self.pending.get_mut(&self.ip) {
            Some(mut n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        };
        if gone {
            self.pending.remove_if(&self.ip, |_, n| *n == 0);
        }
    }
}

/// The node's end of a remote member's connection.
pub struct NodeLink {
    id: u64,
    peer: SocketAddr,
    deps: LinkDeps,
    out: mpsc::Sender<Outgoing>,
    /// The member, once the broker accepted its login here.
    member: Option<MemberId>,
    /// The member whose login is with the broker.
    pending: Option<MemberId>,
    slot: Option<Slot>,
    /// The largest frame read: [`PRE_LOGIN_FRAME`] until the member logged in.
    max_frame: Arc<AtomicUsize>,
    /// Who sent each `Transmit` written here (for its `TransmitAck`).
    transmits: HashMap<(TxnId, u32), MemberId>,
    order: VecDeque<(TxnId, u32)>,
    bad: u32,
    heard: Instant,
}

impl NodeLink {
    fn broker_id(&self) -> MemberId {
        self.deps.shared.id.clone()
    }

    fn write(&mut self, frame: &Frame, ctx: &mut Context<Self>) {
        let bytes = match codec::frame_bytes(frame, self.deps.limits.max_frame) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(peer = %self.peer, error = e.code(), "a frame for the link is too large; dropped");
                return;
            }
        };
        // Past every record this frame depends on: they were written
        // before it was made.
        let at = self.deps.shared.deps.store.writer().written();
        if self.out.try_send((bytes, at)).is_err() {
            tracing::warn!(peer = %self.peer, member = ?self.member.as_ref().map(MemberId::as_str), "the peer does not read; closing the link");
            ctx.stop();
        }
    }

    fn refuse(&mut self, error: ProtocolError, txn: Option<TxnId>, ctx: &mut Context<Self>) {
        self.deps.shared.count_refusal(error);
        tracing::warn!(peer = %self.peer, member = ?self.member.as_ref().map(MemberId::as_str), reason = error.code(), "refused MIAP frame on a link");
        self.write(&Frame::Refused(RefuseReason { error, txn }), ctx);
    }

    fn bad(&mut self, error: ProtocolError, ctx: &mut Context<Self>) {
        self.refuse(error, None, ctx);
        self.bad += 1;
        if self.bad >= MAX_BAD {
            tracing::warn!(peer = %self.peer, "too many bad frames; closing the link");
            ctx.stop();
        }
    }

    fn remember(&mut self, key: (TxnId, u32), from: MemberId) {
        if self.transmits.insert(key, from).is_none() {
            self.order.push_back(key);
            if self.order.len() > MAX_TRANSMITS {
                if let Some(old) = self.order.pop_front() {
                    self.transmits.remove(&old);
                }
            }
        }
    }

    fn inbound(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        if let Frame::Login(l) = frame {
            if self.member.as_ref().is_some_and(|m| *m != l.member) {
                // One member per connection.
                return self.bad(ProtocolError::WrongParty, ctx);
            }
            let medium = self.deps.directory.member(&l.member).and_then(|k| k.medium);
            self.pending = Some(l.member.clone());
            self.deps.broker.link_login(LinkLogin {
                login: l,
                link: ctx.address().recipient(),
                link_id: self.id,
                medium,
            });
            return;
        }
        let Some(from) = self.member.clone() else {
            return self.bad(ProtocolError::NoSession, ctx);
        };
        match frame {
            Frame::Transmit(t) => {
                let route = &t.imi.route;
                let next = match route.processors.iter().position(|p| *p == from) {
                    Some(i) => route.processors.get(i + 1).unwrap_or(&route.destination),
                    None => route.processors.first().unwrap_or(&route.destination),
                }
                .clone();
                let txn = t.imi.imi.txn;
                if !self.deps.members.send(&next, &from, Frame::Transmit(t)) {
                    tracing::debug!(next = %next, txn = %txn, "next hop not connected; the attempt times out");
                }
            }
            Frame::TransmitAck(a) => {
                if let Some(prev) = self.transmits.get(&(a.txn, a.attempt)).cloned() {
                    self.deps.members.send(&prev, &from, Frame::TransmitAck(a));
                }
            }
            Frame::Refused(r) => {
                let prev = r.txn.and_then(|t| {
                    self.transmits
                        .iter()
                        .find(|((x, _), _)| *x == t)
                        .map(|(_, m)| m.clone())
                });
                match prev {
                    Some(p) => {
                        self.deps.members.send(&p, &from, Frame::Refused(r));
                    }
                    None => self.deps.broker.send(from, Frame::Refused(r)),
                }
            }
            other => self.deps.broker.send(from, other),
        }
    }
}

impl Actor for NodeLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        tracing::debug!(peer = %self.peer, link = self.id, "MIAP connection");
        self.deps.links.0.insert(self.id, ctx.address());
        let limits = self.deps.limits.clone();
        ctx.run_later(limits.login_timeout, |act, ctx| {
            if act.member.is_none() {
                act.deps.shared.count_refusal(ProtocolError::NoSession);
                tracing::warn!(peer = %act.peer, "no login in time; closing the link");
                ctx.stop();
            }
        });
        let every = (limits.idle_timeout / 4).max(Duration::from_millis(100));
        ctx.run_interval(every, move |act, ctx| {
            if act.heard.elapsed() > limits.idle_timeout {
                tracing::info!(peer = %act.peer, member = ?act.member.as_ref().map(MemberId::as_str), "idle link closed");
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.deps.links.0.remove(&self.id);
        if let Some(m) = &self.member {
            let users = self.deps.members.detach_link(m, self.id);
            self.deps.shared.sessions_ended(m, users);
            tracing::info!(member = %m, peer = %self.peer, "remote member disconnected");
        }
    }
}

impl Handler<Wire> for NodeLink {
    type Result = ();

    fn handle(&mut self, w: Wire, ctx: &mut Context<Self>) {
        match w {
            Wire::Frame(f) => {
                self.heard = Instant::now();
                self.inbound(*f, ctx);
            }
            Wire::Bad(e) => {
                self.heard = Instant::now();
                self.bad(e, ctx);
            }
            Wire::Closed(why) => {
                tracing::debug!(peer = %self.peer, reason = %why, "MIAP connection ended");
                ctx.stop();
            }
        }
    }
}

impl Handler<Close> for NodeLink {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) {
        tracing::info!(peer = %self.peer, member = ?self.member.as_ref().map(MemberId::as_str), "closing the link (shutdown)");
        ctx.stop();
    }
}

impl Handler<MiapFrame> for NodeLink {
    type Result = ();

    fn handle(&mut self, m: MiapFrame, ctx: &mut Context<Self>) {
        match &m.frame {
            Frame::LoginAck(_) if m.from == self.broker_id() => {
                if let Some(p) = self.pending.take() {
                    if self.member.is_none() {
                        tracing::info!(member = %p, peer = %self.peer, "remote member logged in");
                        self.deps.broker.member_back(p.clone());
                    }
                    self.member = Some(p);
                    self.slot = None;
                    self.max_frame
                        .store(self.deps.limits.max_frame, Ordering::Relaxed);
                }
            }
            Frame::Transmit(t) => self.remember((t.imi.imi.txn, t.imi.attempt), m.from.clone()),
            _ => {}
        }
        self.write(&m.frame, ctx);
    }
}
