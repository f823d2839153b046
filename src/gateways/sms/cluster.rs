//! SMS across a cluster (`CLUSTER.md`, behaviour 3: "a medium present on
//! one node only serves messages submitted anywhere"): a node without an
//! SMSC bind runs the SMS gateway all the same, its submits going over NATS
//! to a node that has one; that node's ESME submits them and sends their
//! receipts back as the first node's delivery reports.
//!
//! - `sb.sms.<node>.submit` (request/reply, core NATS): a node with a bind
//!   takes a [`RemoteSubmit`], remembers whose it is (`o`+txn in the SMS
//!   records tree, so receipts after a restart still find their way), and
//!   answers once the SMSC took every segment and the correlation is
//!   durable — what the local ESME answers its own gateway.
//! - `sb.sms.<node>.report`: a receipt for a message another node's
//!   gateway submitted, as the [`MediumReport`] that gateway turns into its
//!   report to its broker. A node that took the submitting node's work
//!   over has the receipts sent to itself when it delivers the message
//!   again ([`receipts_to`]).
//!
//! Which node: one the cluster's heartbeats say is alive and serves `sms`
//! ([`Membership::serving_nodes`]), tried in order until one takes it.
//! The forwarding gateway is healthy while there is such a node.
//!
//! Owns: the forwarding and the report routing. Must not touch: SMPP (the
//! ESME's), the broker's view (reports go through the gateway that
//! submitted).

use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use switchboard_actors::medium::{Health, MediumReport};
use switchboard_core::cluster::Engine;

use crate::cluster::Membership;
use switchboard_core::protocol::TxnId;
use switchboard_core::store::records::key2;
use switchboard_core::store::{Store, Tree, WriteBatch};

use super::esme::window::{Homed, Outgoing, Tracked};
use super::esme::Job;
use super::pdu::Segment;
use super::{SharedHealth, MEMBER_ID};
use crate::gateways::forward::{answer_sealed, ask_sealed, Asked, Seal};

/// A submit another node's gateway hands to this node's ESME: its
/// [`Outgoing`] without the answer channel.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemoteSubmit {
    /// The node whose gateway submits it (where its receipts go).
    pub origin: String,
    /// The destination number.
    pub to: String,
    /// The source address.
    pub from: String,
    /// The short messages.
    pub segments: Vec<Segment>,
    /// The message it delivers; `None` for a notice.
    pub message: Option<Tracked>,
}

fn submit_subject(node: &str) -> String {
    format!("sb.sms.{node}.submit")
}

fn report_subject(node: &str) -> String {
    format!("sb.sms.{node}.report")
}

/// The key naming the node whose gateway submitted `txn` (forgotten with
/// the SMS record, [`super::esme::correlation`]'s tidy).
pub(crate) fn origin_key(txn: &TxnId) -> Vec<u8> {
    let mut k = b"o".to_vec();
    k.extend_from_slice(txn.to_string().as_bytes());
    key2(MEMBER_ID, &k)
}

impl RemoteSubmit {
    fn of(origin: &str, o: Outgoing) -> Self {
        Self {
            origin: origin.to_owned(),
            to: o.to,
            from: o.from,
            segments: o.segments,
            message: o.message,
        }
    }

    fn into_outgoing(self, reply: oneshot::Sender<Result<(), String>>) -> Outgoing {
        Outgoing {
            to: self.to,
            from: self.from,
            segments: self.segments,
            message: self.message,
            reply: Some(reply),
        }
    }
}

/// On a node with an SMSC bind: takes other nodes' submits into `jobs`
/// (the ESME's queue; its window paces them).
pub fn serve_submits(engine: &Engine, seal: Seal, store: Store, jobs: mpsc::UnboundedSender<Job>) {
    let subject = submit_subject(&engine.settings().node_id);
    answer_sealed(engine, seal, subject, "an SMS", move |body| {
        let (store, jobs) = (store.clone(), jobs.clone());
        async move { take_submit(&store, &jobs, &body).await }
    });
}

async fn take_submit(
    store: &Store,
    jobs: &mpsc::UnboundedSender<Job>,
    payload: &[u8],
) -> Result<(), String> {
    let s: RemoteSubmit = serde_json::from_slice(payload)
        .map_err(|e| format!("a submit that does not decode: {e}"))?;
    if let Some(t) = &s.message {
        // Idempotent on the transaction, as this node's own deliveries are
        // (a retry, a replay): submitted once, its receipts report it.
        match super::load_record(store, &t.txn) {
            Ok(Some(r)) => {
                return match r.state {
                    super::SmsState::Failed(why) => Err(why),
                    _ => Ok(()),
                }
            }
            Ok(None) => {}
            Err(e) => return Err(format!("store unavailable: {e}")),
        }
        let mut b = WriteBatch::new();
        b.insert(
            Tree::SmsRecords,
            origin_key(&t.txn),
            s.origin.as_bytes().to_vec(),
        );
        store.writer().write(b).await.map_err(|e| e.to_string())?;
    }
    let (tx, rx) = oneshot::channel();
    jobs.send(Job::Submit(Box::new(s.into_outgoing(tx))))
        .map_err(|_| "the SMS gateway is shutting down".to_string())?;
    rx.await
        .map_err(|_| "the SMS gateway stopped".to_string())?
}

/// The receipts of `txn`, submitted by whichever node through whichever
/// bind, go to `node` from now (a node that took the submitting node's
/// work over and delivers the transaction again, which submits nothing
/// new): every bound node's router reads this key, which reaches it through
/// the store's buckets.
pub fn receipts_to(store: &Store, txn: &TxnId, node: &str) {
    let key = origin_key(txn);
    let known = store.get(Tree::SmsRecords, &key).ok().flatten();
    if known.as_deref() == Some(node.as_bytes()) {
        return;
    }
    let mut b = WriteBatch::new();
    b.insert(Tree::SmsRecords, key, node.as_bytes().to_vec());
    store.writer().write_nowait(b);
}

/// On every node of a cluster: receipts other nodes' binds send back for
/// what this node's gateway submitted through them go to `gateway`.
pub fn take_reports(engine: &Engine, seal: Seal, gateway: Recipient<MediumReport>) {
    let e = engine.clone();
    let subject = report_subject(&engine.settings().node_id);
    engine.spawn(async move {
        let Ok(mut sub) = e.client().subscribe(subject.clone()).await else {
            tracing::error!("cannot take SMS receipts from other nodes");
            return;
        };
        while let Some(m) = sub.next().await {
            let opened = seal
                .open(&subject, &m.payload)
                .and_then(|b| serde_json::from_slice::<MediumReport>(b).map_err(|e| e.to_string()));
            match opened {
                Ok(r) => gateway.do_send(r),
                Err(err) => {
                    tracing::warn!(error = %err, "an SMS receipt from another node refused")
                }
            }
        }
    });
}

/// On a node with an SMSC bind: the ESME's reports go to the gateway that
/// submitted each message — `local` for this node's, over NATS for
/// another node's. A report for a node that is not alive waits (a second
/// at a time, for two minutes at most) until the node that took its work
/// over has it sent there ([`receipts_to`]), or the node is back.
pub struct ReportRouter {
    local: Recipient<MediumReport>,
    cluster: Membership,
    seal: Seal,
    store: Store,
}

/// A report waiting for its node, the `n`th time.
#[derive(Message)]
#[rtype(result = "()")]
struct Again(MediumReport, u32);

/// How many seconds a report waits for its node at most.
const WAIT_S: u32 = 120;

impl ReportRouter {
    /// Routes to `local` and other nodes of `cluster`, by the origins in
    /// `store`.
    pub fn new(
        local: Recipient<MediumReport>,
        cluster: Membership,
        seal: Seal,
        store: Store,
    ) -> Self {
        Self {
            local,
            cluster,
            seal,
            store,
        }
    }

    fn route(&self, r: MediumReport, n: u32, ctx: &mut Context<Self>) {
        let me = &self.cluster.engine.settings().node_id;
        let origin = self
            .store
            .get(Tree::SmsRecords, &origin_key(&r.txn))
            .ok()
            .flatten()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .filter(|o| o != me);
        let Some(origin) = origin else {
            self.local.do_send(r);
            return;
        };
        let alive = self.cluster.live_nodes().iter().any(|n| n.id == origin);
        if !alive && n < WAIT_S {
            ctx.notify_later(Again(r, n + 1), Duration::from_secs(1));
            return;
        }
        let body = serde_json::to_vec(&r).unwrap_or_default();
        let engine = self.cluster.engine.clone();
        let to = report_subject(&origin);
        let sealed = self.seal.seal(&to, &body);
        self.cluster.engine.spawn(async move {
            if let Err(e) = engine.client().publish(to, sealed.into()).await
            {
                tracing::warn!(error = %e, node = %origin, "an SMS receipt for another node's gateway was not sent; it is sent again at the next tidy");
            }
        });
    }
}

impl Actor for ReportRouter {
    type Context = Context<Self>;
}

impl Handler<MediumReport> for ReportRouter {
    type Result = ();

    fn handle(&mut self, r: MediumReport, ctx: &mut Context<Self>) {
        self.route(r, 0, ctx);
    }
}

impl Handler<Again> for ReportRouter {
    type Result = ();

    fn handle(&mut self, Again(r, n): Again, ctx: &mut Context<Self>) {
        self.route(r, n, ctx);
    }
}

/// On a node without an SMSC bind: hands what its SMS gateway submits
/// (`queue`) to a node with one, and keeps `health` up while there is one
/// (the receipts coming back: [`take_reports`]).
pub fn forward(
    cluster: &Membership,
    seal: Seal,
    queue: mpsc::UnboundedReceiver<Job>,
    health: SharedHealth,
    on_health: Box<dyn Fn(bool) + Send>,
    submit_timeout: Duration,
) {
    let engine = &cluster.engine;
    // Whether a node serves SMS, every heartbeat.
    let (m, h) = (cluster.clone(), health.clone());
    let every = engine.settings().heartbeat;
    engine.spawn(async move {
        let mut tick = tokio::time::interval(every);
        let mut told = None;
        loop {
            tick.tick().await;
            let via = m.serving_nodes("sms");
            let up = !via.is_empty();
            if let Ok(mut g) = h.lock() {
                *g = Health {
                    up,
                    detail: if up {
                        format!("through node {} (SMSC bound there)", via.join(", "))
                    } else {
                        "no node of the cluster has an SMSC bound".into()
                    },
                };
            }
            // Every time: the registry may have been told otherwise.
            on_health(up);
            if told != Some(up) {
                tracing::info!(up, "SMS through other nodes' binds");
                told = Some(up);
            }
        }
    });
    forward_jobs(cluster, seal, queue, None, submit_timeout);
}

/// Hands each submit of `queue` to a node with an SMSC bind: first the
/// recipient's home node's when the message says so ([`Homed`]), then —
/// only if that node never had it — `local`, this node's own ESME, when it
/// has a bind, else any other node's. Each message says how it went
/// ([`Tracked::how`], in its `Delivered` report).
pub fn forward_jobs(
    cluster: &Membership,
    seal: Seal,
    mut queue: mpsc::UnboundedReceiver<Job>,
    local: Option<mpsc::UnboundedSender<Job>>,
    submit_timeout: Duration,
) {
    let engine = &cluster.engine;
    let me = engine.settings().node_id.clone();
    let (e, m) = (engine.clone(), cluster.clone());
    engine.spawn(async move {
        while let Some(job) = queue.recv().await {
            match job {
                Job::Submit(mut o) => {
                    let reply = o.reply.take();
                    let homed = o.message.as_mut().and_then(|t| t.home.take());
                    let s = RemoteSubmit::of(&me, *o);
                    let (e, seal, local) = (e.clone(), seal.clone(), local.clone());
                    let nodes = m.serving_nodes("sms");
                    tokio::spawn(async move {
                        let to = Offer {
                            engine: &e,
                            seal: &seal,
                            timeout: submit_timeout,
                        };
                        let got = to.place(s, homed, nodes, local).await;
                        if let Some(r) = reply {
                            let _ = r.send(got);
                        }
                    });
                }
                Job::Stop(done) => {
                    let _ = done.send(());
                    return;
                }
            }
        }
    });
}

/// The other nodes to offer a submit to, in order, each with how a
/// delivery through it is said: the home node left out (it is offered
/// first, on its own).
fn offers(nodes: &[String], homed: Option<&Homed>) -> Vec<(String, String)> {
    nodes
        .iter()
        .filter(|n| !matches!(homed, Some(Homed::Home(h)) if h == *n))
        .map(|n| {
            let how = match homed {
                Some(Homed::Home(h)) => format!("by node {n}: home node {h} did not take it"),
                Some(Homed::Not(why)) => format!("by node {n}: {why}"),
                None => format!("by node {n}"),
            };
            (n.clone(), how)
        })
        .collect()
}

/// Offers submits to other nodes.
struct Offer<'a> {
    engine: &'a Engine,
    seal: &'a Seal,
    timeout: Duration,
}

impl Offer<'_> {
    /// Offers `s` to `node`, saying `how`; `Err` why it did not take it.
    async fn to(&self, node: &str, s: &mut RemoteSubmit, how: String) -> Result<(), String> {
        if let Some(t) = &mut s.message {
            t.how = Some(how);
        }
        let body = serde_json::to_vec(&*s).unwrap_or_default();
        match ask_sealed(
            self.engine,
            self.seal,
            submit_subject(node),
            &body,
            self.timeout,
        )
        .await
        {
            Asked::Taken => Ok(()),
            Asked::Refused(e) | Asked::NotHad(e) => Err(e),
            Asked::NoAnswer => Err(format!("no answer within {}s", self.timeout.as_secs())),
        }
    }

    /// Places `s` ([`forward_jobs`]).
    async fn place(
        &self,
        mut s: RemoteSubmit,
        homed: Option<Homed>,
        nodes: Vec<String>,
        local: Option<mpsc::UnboundedSender<Job>>,
    ) -> Result<(), String> {
        let mut why = Vec::new();
        if let Some(Homed::Home(h)) = &homed {
            match self
                .to(h, &mut s, format!("by node {h}: the home node"))
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) => why.push(format!("{h}: {e}")),
            }
            if let Some(local) = local {
                // This node's own bind, then.
                let me = s.origin.clone();
                if let Some(t) = &mut s.message {
                    t.how = Some(format!("by node {me}: home node {h} did not take it"));
                }
                let (tx, rx) = oneshot::channel();
                local
                    .send(Job::Submit(Box::new(s.into_outgoing(tx))))
                    .map_err(|_| "the SMS gateway is shutting down".to_string())?;
                return rx
                    .await
                    .unwrap_or_else(|_| Err("the SMS gateway stopped".into()));
            }
        }
        let offers = offers(&nodes, homed.as_ref());
        if offers.is_empty() && why.is_empty() {
            return Err("no node of the cluster has an SMSC bound".into());
        }
        for (node, how) in offers {
            match self.to(&node, &mut s, how).await {
                Ok(()) => return Ok(()),
                Err(e) => why.push(format!("{node}: {e}")),
            }
        }
        Err(format!("no node took the SMS ({})", why.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_delivering_again_has_the_receipts_sent_to_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let txn = TxnId([3; 16]);
        let origin = |s: &Store| s.get(Tree::SmsRecords, &origin_key(&txn)).unwrap();
        // Submitted through this bind by node a; node b took a over.
        let mut b = WriteBatch::new();
        b.insert(Tree::SmsRecords, origin_key(&txn), b"a".to_vec());
        store.writer().write_nowait(b);
        receipts_to(&store, &txn, "b");
        assert_eq!(origin(&store).as_deref(), Some(&b"b"[..]));
        // Its own already: nothing written.
        let before = store.writer().written();
        receipts_to(&store, &txn, "b");
        assert_eq!(store.writer().written(), before);
    }

    #[test]
    fn a_submit_round_trips_through_its_wire_form() {
        let segments = vec![Segment {
            data_coding: 0,
            esm_class: 0x40,
            short_message: b"\x05\x00\x03\x01\x02\x01hi".to_vec(),
        }];
        let tracked = || Tracked {
            txn: TxnId([7; 16]),
            attempt: 2,
            id: [9; 32],
            attestations: vec![],
            sender_user: Some("alice".into()),
            how: Some("by node b".into()),
            home: None,
        };
        let (tx, _rx) = oneshot::channel();
        let o = Outgoing {
            to: "+4915100000001".into(),
            from: "Switchboard".into(),
            segments: segments.clone(),
            message: Some(tracked()),
            reply: Some(tx),
        };
        let text = serde_json::to_vec(&RemoteSubmit::of("a", o)).unwrap();
        let back: RemoteSubmit = serde_json::from_slice(&text).unwrap();
        assert_eq!(back.origin, "a");
        let (tx, _rx) = oneshot::channel();
        let again = back.into_outgoing(tx);
        assert_eq!(again.segments, segments);
        assert_eq!(again.message, Some(tracked()));
        assert_eq!(origin_key(&TxnId([7; 16])), {
            let mut k = b"o".to_vec();
            k.extend_from_slice(TxnId([7; 16]).to_string().as_bytes());
            key2(MEMBER_ID, &k)
        });
    }
}

#[cfg(test)]
mod offer_tests {
    use super::*;

    #[test]
    fn a_submit_is_offered_to_the_home_node_first_and_says_how_it_went() {
        let nodes = vec!["b".to_string(), "c".to_string()];
        let o = |h: Option<Homed>| offers(&nodes, h.as_ref());
        assert_eq!(
            o(None),
            vec![
                ("b".into(), "by node b".into()),
                ("c".into(), "by node c".into())
            ]
        );
        // The home node is offered on its own, first; the rest after it.
        assert_eq!(
            o(Some(Homed::Home("c".into()))),
            vec![("b".into(), "by node b: home node c did not take it".into())]
        );
        assert_eq!(
            o(Some(Homed::Not("home node d is down".into()))),
            vec![
                ("b".into(), "by node b: home node d is down".into()),
                ("c".into(), "by node c: home node d is down".into())
            ]
        );
    }
}
