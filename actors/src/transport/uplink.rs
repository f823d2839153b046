//! The member's end of the transport: an [`Uplink`] stands for the node in
//! a member's own process — it is the broker (and every other member) for
//! the local gateway or processor, and reconnects with back-off.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{plain, wire_up, Outgoing, Wire, Wrap};
use crate::bus::{LinkUp, MiapFrame};
use switchboard_core::protocol::codec;
use switchboard_core::protocol::{Frame, MemberId};
use switchboard_core::store::Store;

/// How an [`Uplink`] reaches the node.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    /// The node's MIAP address.
    pub connect: String,
    /// The broker's id (the sender of what the node sends, but `Transmit`s).
    pub broker_id: MemberId,
    /// Largest frame, bytes.
    pub max_frame: usize,
}

/// The id an [`Uplink`] gives the sender of a `Transmit` (the previous hop,
/// which the node's link knows).
pub const PEER: &str = "peer";

/// The member process's end: the node, for the local member.
pub struct Uplink {
    cfg: UplinkConfig,
    member: Recipient<MiapFrame>,
    on_up: Recipient<LinkUp>,
    out: Option<mpsc::Sender<Outgoing>>,
    backoff: Duration,
    counter: Option<Arc<AtomicU64>>,
    wrap: Option<Wrap>,
    gate: Option<Store>,
}

impl Uplink {
    /// A link for `member` (the local gateway), told `LinkUp` at every
    /// (re)connection.
    pub fn new(cfg: UplinkConfig, member: Recipient<MiapFrame>, on_up: Recipient<LinkUp>) -> Self {
        Self {
            cfg,
            member,
            on_up,
            out: None,
            backoff: Duration::from_millis(200),
            counter: None,
            wrap: None,
            gate: None,
        }
    }

    /// Wraps every connection to the node (TLS) before any frame.
    pub fn with_wrap(mut self, w: Wrap) -> Self {
        self.wrap = Some(w);
        self
    }

    /// Sends no frame before `store`'s journal is durable past what was
    /// written when the frame was queued (the member's own records: its
    /// outbox before a `Submit`, its inbox before a `Report`).
    pub fn with_store(mut self, store: Store) -> Self {
        self.gate = Some(store);
        self
    }

    /// Counts the bytes written and read (frames with their length prefix)
    /// into `c` (the load generator's wire bytes).
    pub fn with_counter(mut self, c: Arc<AtomicU64>) -> Self {
        self.counter = Some(c);
        self
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        let addr = self.cfg.connect.clone();
        let wrap = self.wrap.clone();
        ctx.spawn(
            async move {
                let stream = TcpStream::connect(addr).await?;
                let _ = stream.set_nodelay(true);
                match wrap {
                    Some(w) => w(stream).await,
                    None => Ok(plain(stream)),
                }
            }
            .into_actor(self)
            .map(|res, act, ctx| match res {
                    Ok(halves) => {
                        tracing::info!(node = %act.cfg.connect, tls = act.wrap.is_some(), "connected to the node");
                        act.backoff = Duration::from_millis(200);
                        let gate = act.gate.clone();
                        let max = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(act.cfg.max_frame));
                        act.out = Some(wire_up(halves, max, super::LINK_QUEUE, gate, ctx));
                        act.on_up.do_send(LinkUp);
                    }
                    Err(e) => {
                        tracing::warn!(node = %act.cfg.connect, error = %e, "cannot reach the node");
                        act.retry(ctx);
                    }
                }),
        );
    }

    fn retry(&mut self, ctx: &mut Context<Self>) {
        self.out = None;
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(10));
        ctx.run_later(wait, |act, ctx| act.connect(ctx));
    }
}

impl Actor for Uplink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        self.connect(ctx);
    }
}

impl Handler<Wire> for Uplink {
    type Result = ();

    fn handle(&mut self, w: Wire, ctx: &mut Context<Self>) {
        match w {
            Wire::Frame(f) => {
                if let Some(c) = &self.counter {
                    c.fetch_add(4 + codec::encode(&*f).len() as u64, Ordering::Relaxed);
                }
                let from = match *f {
                    Frame::Transmit(_) => MemberId::new(PEER),
                    _ => self.cfg.broker_id.clone(),
                };
                self.member.do_send(MiapFrame { from, frame: *f });
            }
            Wire::Bad(e) => {
                tracing::warn!(reason = e.code(), "a bad frame from the node");
            }
            Wire::Closed(why) => {
                if self.out.is_some() {
                    tracing::warn!(node = %self.cfg.connect, reason = %why, "lost the node; reconnecting");
                    // The old connection's reader and writer end with it.
                    self.retry(ctx);
                }
            }
        }
    }
}

impl Handler<MiapFrame> for Uplink {
    type Result = ();

    fn handle(&mut self, m: MiapFrame, _: &mut Context<Self>) {
        let txn = || m.frame.txn().map(|t| t.to_string());
        let Some(out) = &self.out else {
            tracing::debug!(txn = ?txn(), "not connected; frame dropped (resent after the next login)");
            return;
        };
        match codec::frame_bytes(&m.frame, self.cfg.max_frame) {
            Ok(bytes) => {
                if let Some(c) = &self.counter {
                    c.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
                let at = self.gate.as_ref().map_or(0, |s| s.writer().written());
                if out.try_send((bytes, at)).is_err() {
                    tracing::warn!(txn = ?txn(), "the link's write queue is full; frame dropped");
                }
            }
            Err(e) => {
                tracing::warn!(txn = ?txn(), reason = e.code(), "a frame too large for the link; dropped")
            }
        }
    }
}
