//! The SMS medium: an SMPP 3.4 ESME bound as transceiver to the SMSC
//! ([`esme`]), on `rusmpp`'s PDUs ([`pdu`]).
//!
//! Outbound, a message becomes one `submit_sm` per segment (UDH-concatenated
//! when long) with `registered_delivery` = 1. Once the SMSC has answered
//! every segment, the message ids are written durably with the transaction
//! ([`SmsRecord`]) and the medium answers [`MediumAck::Pending`]; the SMSC's
//! delivery receipts become the delivery report — `Delivered` when every
//! segment is `DELIVRD`, a non-delivery at the first failed one. A restart
//! between the submit and the receipt loses nothing: the correlation is read
//! back from the store when the receipt arrives.
//!
//! Inbound, a `deliver_sm` from a phone is a message to the user named by a
//! leading `@ID `, otherwise to the last user who messaged that number,
//! otherwise refused with a reply saying how to address one ([`inbound`]).
//! SMS senders learn the outcome of their messages by SMS ([`notify`]).

pub mod cluster;
pub mod esme;
pub mod inbound;
pub mod notify;
pub mod pdu;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use switchboard_actors::medium::futures_like::LocalBoxFuture;
use switchboard_actors::medium::{Delivery, Health, Medium, MediumAck, NonDelivery};
use switchboard_core::protocol::{MediumKind, TxnId};
use switchboard_core::store::Store;

pub use esme::correlation::{load_record, SmsRecord, SmsState};
use esme::window::Homed;
use esme::{Job, Outgoing};

/// The member id of the SMS gateway.
pub const MEMBER_ID: &str = "gw-sms-1";

/// The SMPP bind's state, shared by the ESME task and the medium.
pub type SharedHealth = Arc<Mutex<Health>>;

/// Outbound SMS through the ESME task.
pub struct SmsMedium {
    jobs: mpsc::UnboundedSender<Job>,
    health: SharedHealth,
    store: Store,
    source: String,
    submit_timeout: Duration,
    /// In a cluster, this node's id ([`cluster`]).
    node: Option<String>,
    /// In a cluster, what places messages by their recipients' home nodes.
    homes: Option<Homes>,
}

/// Placing SMS by the recipients' home nodes
/// ([`switchboard_core::cluster::home`]).
struct Homes {
    cluster: crate::cluster::Membership,
    directory: switchboard_core::directory::Directory,
    /// On a node with a bind of its own: the queue to other nodes' binds
    /// ([`cluster::forward_jobs`]); without one, the gateway's queue is it.
    forward: Option<mpsc::UnboundedSender<Job>>,
}

impl SmsMedium {
    /// A medium handing messages to the ESME task behind `jobs`, sending
    /// from `source`; a message the SMSC has not taken within
    /// `submit_timeout` is a non-delivery.
    pub fn new(
        jobs: mpsc::UnboundedSender<Job>,
        health: SharedHealth,
        store: Store,
        source: String,
        submit_timeout: Duration,
    ) -> Self {
        Self {
            jobs,
            health,
            store,
            source,
            submit_timeout,
            node: None,
            homes: None,
        }
    }

    /// In a cluster as node `node`: a message another node's gateway
    /// submitted (this node took that node's work over) has its receipts
    /// sent here from now ([`cluster::receipts_to`]).
    pub fn in_cluster(mut self, node: &str) -> Self {
        self.node = Some(node.to_owned());
        self
    }

    /// In `cluster`: each message for a user with a home node goes through
    /// that node's bind while it has one ([`cluster::forward_jobs`]);
    /// `forward` is the queue to other nodes' binds when this node has one
    /// of its own.
    pub fn by_home_node(
        mut self,
        cluster: &crate::cluster::Membership,
        directory: switchboard_core::directory::Directory,
        forward: Option<mpsc::UnboundedSender<Job>>,
    ) -> Self {
        self.homes = Some(Homes {
            cluster: cluster.clone(),
            directory,
            forward,
        });
        self
    }

    /// The queue `d` goes to, how it is said, and where it goes from there.
    fn place(&self, d: &Delivery) -> (&mpsc::UnboundedSender<Job>, Option<String>, Option<Homed>) {
        use switchboard_core::cluster::home::{place, Place};
        let Some(h) = &self.homes else {
            return (&self.jobs, None, None);
        };
        let home = d
            .route
            .recipient_user
            .as_deref()
            .and_then(|u| h.directory.home_of(u))
            .map(|home| home.node);
        // A `redirect` rule's node comes first.
        let home = d.redirected_to().map(str::to_string).or(home);
        if home.is_none() {
            return (&self.jobs, None, None);
        }
        let me = &h.cluster.engine.settings().node_id;
        let live: Vec<String> = h.cluster.live_nodes().into_iter().map(|n| n.id).collect();
        let serving = h.cluster.serving_nodes("sms");
        match (
            place(me, home.as_deref(), "sms", &live, &serving),
            &h.forward,
        ) {
            (Place::Here(None), _) => (&self.jobs, None, None),
            // Through this node's own bind.
            (Place::Here(Some(why)), Some(_)) => {
                (&self.jobs, Some(format!("by node {me}: {why}")), None)
            }
            (Place::Here(Some(why)), None) => (&self.jobs, None, Some(Homed::Not(why))),
            (Place::Home(node), forward) => (
                forward.as_ref().unwrap_or(&self.jobs),
                None,
                Some(Homed::Home(node)),
            ),
        }
    }
}

/// Whether `s` is a phone number: digits, `+` first when international.
pub fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    (3..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A stable concatenation reference for `txn` (the same on a resubmission).
fn reference(txn: &TxnId) -> u8 {
    txn.as_bytes().iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

impl Medium for SmsMedium {
    fn kind(&self) -> MediumKind {
        MediumKind::Sms
    }

    fn health(&self) -> Health {
        self.health
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| Health {
                up: false,
                detail: "health lock poisoned".into(),
            })
    }

    fn deliver(&mut self, d: Delivery) -> LocalBoxFuture<'static, Result<MediumAck, NonDelivery>> {
        // Idempotent on the transaction: a message already submitted is not
        // sent twice; its receipts report it.
        match load_record(&self.store, &d.txn) {
            Ok(Some(r)) => {
                if let (SmsState::Submitted, Some(node)) = (&r.state, &self.node) {
                    cluster::receipts_to(&self.store, &d.txn, node);
                }
                let ack = match r.state {
                    SmsState::Submitted => Ok(MediumAck::Pending),
                    SmsState::Delivered => Ok(MediumAck::Delivered),
                    SmsState::Failed(e) => Err(NonDelivery(e)),
                };
                return Box::pin(async move { ack });
            }
            Ok(None) => {}
            Err(e) => {
                return Box::pin(async move { Err(NonDelivery(format!("store unavailable: {e}"))) })
            }
        }
        if !is_number(&d.route.address) {
            let why = format!("{:?} is not a phone number", d.route.address);
            return Box::pin(async move { Err(NonDelivery(why)) });
        }
        let segments = match pdu::segments(&d.content_type, &d.content, reference(&d.txn)) {
            Ok(s) => s,
            Err(e) => return Box::pin(async move { Err(NonDelivery(e)) }),
        };
        let (jobs, how, home) = self.place(&d);
        let (tx, rx) = oneshot::channel();
        let job = Job::Submit(Box::new(Outgoing {
            to: d.route.address.clone(),
            from: self.source.clone(),
            segments,
            message: Some(esme::Tracked {
                txn: d.txn,
                attempt: d.attempt,
                id: d.id,
                attestations: d.attestations,
                sender_user: d.sender_user,
                how,
                home,
            }),
            reply: Some(tx),
        }));
        let sent = jobs.send(job).is_ok();
        let timeout = self.submit_timeout;
        let health = self.health.clone();
        Box::pin(async move {
            if !sent {
                return Err(NonDelivery("the SMS gateway is shutting down".into()));
            }
            match actix_rt::time::timeout(timeout, rx).await {
                Ok(Ok(Ok(()))) => Ok(MediumAck::Pending),
                Ok(Ok(Err(e))) => Err(NonDelivery(e)),
                Ok(Err(_)) => Err(NonDelivery("the SMS gateway stopped".into())),
                Err(_) => Err(NonDelivery(format!(
                    "the SMSC did not take the message within {}s ({})",
                    timeout.as_secs(),
                    health.lock().map(|h| h.detail.clone()).unwrap_or_default()
                ))),
            }
        })
    }
}
