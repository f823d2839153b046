//! The IM session hub: which WebSocket sessions each user has open, and
//! fan-out to them — new messages, receipts for messages they sent, presence
//! of users they subscribed to. Each session drains its own channel, so a
//! slow socket never holds up the hub.

use std::collections::{HashMap, VecDeque};

use actix::prelude::*;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedSender;

use switchboard_actors::bus::PresencePush;
use switchboard_actors::gateway::Receipt;
use switchboard_core::protocol::{Outcome, TxnId};
use switchboard_core::store::{InboxEntry, Store};

use crate::http::time::rfc3339;

/// A text frame for one session.
pub type Outbound = UnboundedSender<String>;

/// How many sessions each user has open, as the hub last counted them:
/// read without a message to the hub (the IM medium asks per delivery).
#[derive(Clone, Default)]
pub struct SessionCounts(std::sync::Arc<dashmap::DashMap<String, usize>>);

impl SessionCounts {
    /// `user`'s open sessions.
    pub fn get(&self, user: &str) -> usize {
        self.0.get(user).map_or(0, |n| *n)
    }

    fn set(&self, user: &str, n: usize) {
        if n == 0 {
            self.0.remove(user);
        } else {
            self.0.insert(user.to_string(), n);
        }
    }
}

/// Tracks open sessions and fans out to them.
pub struct Hub {
    sessions: HashMap<String, HashMap<u64, Outbound>>,
    counts: SessionCounts,
    next_id: u64,
    store: Store,
    observer: Option<Recipient<Receipt>>,
    /// Where the broker's transaction records are not at hand (an IM
    /// gateway in another process): who sent each delivered message, so
    /// its later read receipt finds the sender. Bounded, oldest forgotten
    /// first.
    senders: Option<Senders>,
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

impl Hub {
    /// A hub; it also forwards every receipt to `observer` (the bench).
    pub fn new(store: Store, observer: Option<Recipient<Receipt>>) -> Self {
        Self {
            sessions: HashMap::new(),
            counts: SessionCounts::default(),
            next_id: 0,
            store,
            observer,
            senders: None,
        }
    }

    /// Its count of each user's sessions (kept as sessions join and leave).
    pub fn session_counts(&self) -> SessionCounts {
        self.counts.clone()
    }

    /// Remembering the senders of delivered messages in memory, for a
    /// process without the broker's records.
    pub fn remembering_senders(mut self) -> Self {
        self.senders = Some(Senders::default());
        self
    }

    /// Sends `frame` to every session of `user`; returns how many got it.
    fn push(&mut self, user: &str, frame: &Value) -> usize {
        let Some(sessions) = self.sessions.get_mut(user) else {
            return 0;
        };
        let text = frame.to_string();
        sessions.retain(|_, tx| tx.send(text.clone()).is_ok());
        let n = sessions.len();
        if n == 0 {
            self.sessions.remove(user);
        }
        self.counts.set(user, n);
        n
    }
}

impl Actor for Hub {
    type Context = Context<Self>;
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

/// Push a delivered message to the recipient's sessions; returns how many
/// got it.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct PushMessage {
    /// The recipient.
    pub user: String,
    /// The message.
    pub entry: InboxEntry,
}

impl Handler<Join> for Hub {
    type Result = u64;
    fn handle(&mut self, m: Join, _: &mut Context<Self>) -> u64 {
        self.next_id += 1;
        let s = self.sessions.entry(m.user.clone()).or_default();
        s.insert(self.next_id, m.tx);
        self.counts.set(&m.user, s.len());
        self.next_id
    }
}

impl Handler<Leave> for Hub {
    type Result = ();
    fn handle(&mut self, m: Leave, _: &mut Context<Self>) {
        if let Some(s) = self.sessions.get_mut(&m.user) {
            s.remove(&m.id);
            self.counts.set(&m.user, s.len());
            if s.is_empty() {
                self.sessions.remove(&m.user);
            }
        }
    }
}

impl Handler<PushMessage> for Hub {
    type Result = usize;
    fn handle(&mut self, m: PushMessage, _: &mut Context<Self>) -> usize {
        self.push(&m.user, &message_frame(&m.entry))
    }
}

impl Handler<Receipt> for Hub {
    type Result = ();
    fn handle(&mut self, r: Receipt, _: &mut Context<Self>) {
        // A Read comes after the originator let go of the message: the
        // transaction names the sender.
        let sender = match &mut self.senders {
            Some(senders) => {
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
        };
        if let Some(user) = &sender {
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
            self.push(user, &frame);
        }
        if let Some(o) = &self.observer {
            o.do_send(r);
        }
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
        self.push(&p.to, &frame);
    }
}
