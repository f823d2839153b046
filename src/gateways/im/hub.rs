//! The IM sessions: which WebSocket sessions each user has open, and
//! fan-out to them — new messages, receipts for messages they sent, presence
//! of users they subscribed to. Each session drains its own channel, so a
//! slow socket never holds up a sender. New messages and receipts are
//! pushed on the sender's thread ([`Sessions`], [`Receipts`]); the hub
//! actor takes joins, leaves and presence.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use dashmap::DashMap;
use serde_json::{json, Value};

use switchboard_actors::bus::PresencePush;
use switchboard_actors::gateway::{Receipt, ReceiptSink};
use switchboard_core::protocol::{Outcome, TxnId};
use switchboard_core::store::records::dec;
use switchboard_core::store::{InboxEntry, Store, Tree, TxnRecord, TxnStatus};

use crate::http::time::rfc3339;

/// A text frame for one session.
pub type Outbound = super::queue::Outbound;

/// Every user's open sessions, shared: the IM medium and the receipts push
/// to them on their own thread (no message to the hub), and count them.
#[derive(Clone, Default)]
pub struct Sessions {
    by_user: Arc<DashMap<String, HashMap<u64, Outbound>>>,
    next_id: Arc<AtomicU64>,
}

impl Sessions {
    /// `user`'s open sessions.
    pub fn get(&self, user: &str) -> usize {
        self.by_user.get(user).map_or(0, |s| s.len())
    }

    /// A session of `user` opened; returns its id.
    fn join(&self, user: &str, tx: Outbound) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.by_user
            .entry(user.to_string())
            .or_default()
            .insert(id, tx);
        id
    }

    /// Session `id` of `user` closed.
    fn leave(&self, user: &str, id: u64) {
        if let Some(mut s) = self.by_user.get_mut(user) {
            s.remove(&id);
        }
        self.by_user.remove_if(user, |_, s| s.is_empty());
    }

    /// Sends `frame` to every session of `user` (forgetting those whose
    /// channel closed); returns how many got it.
    pub fn push(&self, user: &str, frame: &Value) -> usize {
        let n = {
            let Some(mut sessions) = self.by_user.get_mut(user) else {
                return 0;
            };
            let text = frame.to_string();
            sessions.retain(|_, tx| tx.send(text.clone()).is_ok());
            sessions.len()
        };
        if n == 0 {
            self.by_user.remove_if(user, |_, s| s.is_empty());
        }
        n
    }
}

/// The outcomes of messages the IM users sent, told to the sender's
/// sessions as `receipt` frames — on the gateway's thread, a push to each
/// session's channel — and to the observer (the load generator).
#[derive(Clone)]
pub struct Receipts {
    sessions: Sessions,
    store: Store,
    observer: Option<Recipient<Receipt>>,
    /// Where the broker's transaction records are not at hand (an IM
    /// gateway in another process): who sent each delivered message, so
    /// its later read receipt finds the sender. Bounded, oldest forgotten
    /// first.
    senders: Option<Arc<Mutex<Senders>>>,
}

/// Senders of delivered messages, for their read receipts.
#[derive(Default)]
struct Senders {
    by_txn: HashMap<TxnId, String>,
    order: VecDeque<TxnId>,
}

/// Delivered messages whose senders a remote IM gateway remembers.
const SENDERS_KEPT: usize = 100_000;

impl Senders {
    fn remember(&mut self, txn: TxnId, user: &str) {
        if self.by_txn.insert(txn, user.to_string()).is_none() {
            self.order.push_back(txn);
        }
        while self.order.len() > SENDERS_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.by_txn.remove(&old);
            }
        }
    }
}

impl Receipts {
    /// Who sent `r`'s message: a Read comes after the originator let go of
    /// it, so the transaction (or, remotely, memory) names the sender.
    fn sender(&self, r: &Receipt) -> Option<String> {
        match &self.senders {
            Some(senders) => {
                let mut senders = senders.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(u) = &r.sender_user {
                    senders.remember(r.txn, u);
                }
                senders.by_txn.get(&r.txn).cloned()
            }
            None => r.sender_user.clone().or_else(|| {
                self.store
                    .txn(&r.txn)
                    .ok()
                    .flatten()
                    .and_then(|t| t.imi.sender_user)
            }),
        }
    }
}

impl ReceiptSink for Receipts {
    fn receipt(&self, r: Receipt) {
        if let Some(user) = self.sender(&r) {
            let status = match &r.outcome {
                Outcome::Blocked(_) => "blocked",
                o => o.as_str(),
            };
            let frame = json!({
                "type": "receipt",
                "txn": r.txn.to_string(),
                "status": status,
                "via": r.via,
                "at": rfc3339(r.at_ms),
            });
            self.sessions.push(&user, &frame);
        }
        if let Some(o) = &self.observer {
            o.do_send(r);
        }
    }
}

/// Sessions joining and leaving, and presence pushes to them.
pub struct Hub {
    sessions: Sessions,
    receipts: Receipts,
}

impl Hub {
    /// A hub; its receipts also go to `observer` (the bench).
    pub fn new(store: Store, observer: Option<Recipient<Receipt>>) -> Self {
        let sessions = Sessions::default();
        Self {
            receipts: Receipts {
                sessions: sessions.clone(),
                store,
                observer,
                senders: None,
            },
            sessions,
        }
    }

    /// Its sessions (the IM medium pushes to them and counts them).
    pub fn sessions(&self) -> Sessions {
        self.sessions.clone()
    }

    /// In a cluster: tells this node's sessions of a sender the outcomes
    /// another node's broker gave their messages (bob read alice's message
    /// on node B; alice's WebSocket is on node A), from the transaction
    /// records that node wrote. Nothing on a single node.
    pub fn receipts_from_remote(&self, store: &Store) {
        let sessions = self.sessions.clone();
        store.on_remote_change(Arc::new(move |c| {
            if c.tree != Tree::Txn {
                return;
            }
            let Some(new) = c.new.and_then(|v| dec::<TxnRecord>(v, "txn").ok()) else {
                return;
            };
            let Some(user) = new.imi.sender_user.as_deref() else {
                return;
            };
            if sessions.get(user) == 0 {
                return;
            }
            let old = c.old.and_then(|v| dec::<TxnRecord>(v, "txn").ok());
            if old.as_ref().map(|o| &o.status) == Some(&new.status) {
                return;
            }
            let status = match &new.status {
                TxnStatus::Delivered
                | TxnStatus::Read
                | TxnStatus::Undeliverable
                | TxnStatus::Expired
                | TxnStatus::Blocked(_) => new.status.as_str(),
                _ => return,
            };
            let last = new.attempts.last();
            let frame = json!({
                "type": "receipt",
                "txn": new.imi.txn.to_string(),
                "status": status,
                "via": last.map(|a| a.route.mechanism.as_str()),
                "at": rfc3339(last.map_or(0, |a| a.started_ms).max(new.events.last().map_or(0, |e| e.at_ms))),
            });
            sessions.push(user, &frame);
        }));
    }

    /// In a cluster: pushes to this node's sessions what another node put
    /// into their users' inboxes (a message for bob accepted and delivered
    /// by node A reaches bob's WebSocket on node B within a checkpoint
    /// round). Nothing on a single node.
    pub fn push_remote_messages(&self, store: &Store) {
        let sessions = self.sessions.clone();
        store.on_remote_change(Arc::new(move |c| {
            if c.tree != Tree::Inbox || c.old.is_some() {
                return;
            }
            let (Some(user), Some(new)) = (inbox_message_user(c.key), c.new) else {
                return;
            };
            if sessions.get(user) == 0 {
                return;
            }
            match dec::<InboxEntry>(new, "inbox entry") {
                Ok(e) => {
                    sessions.push(user, &message_frame(&e));
                }
                Err(e) => {
                    tracing::warn!(user, error = %e, "an unreadable inbox entry from another node")
                }
            }
        }));
    }

    /// Its receipts (the IM gateway's [`ReceiptSink`]).
    pub fn receipts(&self) -> Receipts {
        self.receipts.clone()
    }

    /// Remembering the senders of delivered messages in memory, for a
    /// process without the broker's records.
    pub fn remembering_senders(mut self) -> Self {
        self.receipts.senders = Some(Arc::default());
        self
    }
}

impl Actor for Hub {
    type Context = Context<Self>;
}

/// The user of an inbox message key (`user \0 m seq`); `None` for the
/// txn index (`user \0 i txn`) or anything else.
fn inbox_message_user(key: &[u8]) -> Option<&str> {
    let split = key.iter().position(|b| *b == 0)?;
    (key.get(split + 1) == Some(&b'm') && key.len() == split + 2 + 8)
        .then(|| std::str::from_utf8(&key[..split]).ok())
        .flatten()
}

/// The `message` frame for an inbox entry.
pub fn message_frame(e: &InboxEntry) -> Value {
    let mut v = json!({
        "type": "message",
        "txn": e.txn.to_string(),
        "from": e.from,
        "body": e.body,
        "sent_at": rfc3339(e.sent_at_ms),
    });
    if let Some(s) = &e.subject {
        v["subject"] = json!(s);
    }
    v
}

/// A session of `user` opened; returns its id.
#[derive(Message)]
#[rtype(result = "u64")]
pub struct Join {
    /// The user.
    pub user: String,
    /// Where its frames go.
    pub tx: Outbound,
}

/// A session closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    /// The user.
    pub user: String,
    /// The session id from [`Join`].
    pub id: u64,
}

impl Handler<Join> for Hub {
    type Result = u64;
    fn handle(&mut self, m: Join, _: &mut Context<Self>) -> u64 {
        self.sessions.join(&m.user, m.tx)
    }
}

impl Handler<Leave> for Hub {
    type Result = ();
    fn handle(&mut self, m: Leave, _: &mut Context<Self>) {
        self.sessions.leave(&m.user, m.id);
    }
}

impl Handler<Receipt> for Hub {
    type Result = ();
    fn handle(&mut self, r: Receipt, _: &mut Context<Self>) {
        self.receipts.receipt(r);
    }
}

impl Handler<PresencePush> for Hub {
    type Result = ();
    fn handle(&mut self, p: PresencePush, _: &mut Context<Self>) {
        let mut frame = json!({
            "type": "presence",
            "user": p.user,
            "state": p.state,
            "since": rfc3339(p.since_ms),
        });
        if let Some(n) = &p.note {
            frame["note"] = json!(n);
        }
        self.sessions.push(&p.to, &frame);
    }
}
