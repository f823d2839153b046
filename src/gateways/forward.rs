//! Email and fax across a cluster (`CLUSTER.md`, behaviour 3: "a node's
//! gateways — an SMTP relay, a fax spool — serve messages submitted
//! anywhere"): a node where the medium is off runs its gateway all the
//! same, on a [`ForwardMedium`] that hands each delivery over NATS to a node
//! where it is on; that node's gateway delivers it on its medium
//! ([`DeliverHere`]) and answers. The report stays with the forwarding
//! node's gateway and broker, so nothing else changes. (SMS, whose outcome
//! comes later in receipts, has its own path: [`super::sms::cluster`].)
//!
//! `sb.medium.<node>.<medium>` (request/reply, JSON): a [`Delivery`] in,
//! `{"error": null | "why"}` out. Which node: one the heartbeats say is
//! alive and serves the medium ([`Membership::serving_nodes`]); the next
//! only when one never had the delivery (nobody listening, no connection),
//! never after an answer or a timeout (at most once: the first may have
//! delivered). The forwarding gateway is healthy while there is one.
//!
//! Owns: the forwarding. Must not touch: the mediums themselves.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use switchboard_actors::gateway::DeliverHere;
use switchboard_actors::medium::futures_like::LocalBoxFuture;
use switchboard_actors::medium::{Delivery, Health, Medium, MediumAck, NonDelivery};
use switchboard_core::cluster::Engine;

use crate::cluster::Membership;
use switchboard_core::protocol::mac::{self, Tag};
use switchboard_core::protocol::{MediumKind, SecretKey};

/// What authenticates the messages nodes send each other on these
/// subjects (MIAP authenticates every other step between members): an
/// HMAC-SHA256 over the subject and the body, under a key derived from the
/// cluster's broker key, which every node holds and nothing else on the
/// NATS servers does. A sealed message is `tag (32 bytes) ‖ body`. A
/// replay is harmless: every delivery is idempotent on its transaction.
#[derive(Clone)]
pub struct Seal(Tag);

impl Seal {
    /// The seal of a cluster whose broker key is `broker_key`.
    pub fn new(broker_key: &SecretKey) -> Self {
        Self(mac::mac(&broker_key.0, "cluster-forward-key", &[]))
    }

    /// `body`, sealed for `subject`.
    pub fn seal(&self, subject: &str, body: &[u8]) -> Vec<u8> {
        let tag = mac::mac(&self.0, "cluster-forward", &[subject.as_bytes(), body]);
        let mut out = Vec::with_capacity(tag.len() + body.len());
        out.extend_from_slice(&tag);
        out.extend_from_slice(body);
        out
    }

    /// The body of `sealed`, if it was sealed for `subject` with this key.
    ///
    /// # Errors
    /// A message too short or whose tag does not match (forged, or sealed
    /// for another subject).
    pub fn open<'a>(&self, subject: &str, sealed: &'a [u8]) -> Result<&'a [u8], String> {
        if sealed.len() < mac::TAG_LEN {
            return Err("a message too short to be sealed".into());
        }
        let (tag, body) = sealed.split_at(mac::TAG_LEN);
        let tag: Tag = tag.try_into().map_err(|_| "a bad tag".to_string())?;
        if mac::verify(
            &self.0,
            "cluster-forward",
            &[subject.as_bytes(), body],
            &tag,
        ) {
            Ok(body)
        } else {
            Err("a message whose seal does not match (not from a node of this cluster)".into())
        }
    }
}

fn subject(node: &str, kind: MediumKind) -> String {
    format!("sb.medium.{node}.{}", kind.as_str())
}

/// A sealed request's answer: `None` taken, else why not.
#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    error: Option<String>,
}

/// Answers the sealed requests other nodes send to `subject`, each with
/// what `handle` makes of its opened body (`Err`: why it was refused,
/// logged as `what`); one task each. A request that does not open is
/// refused with the reason and never reaches `handle`.
pub fn answer_sealed<F, Fut>(
    engine: &Engine,
    seal: Seal,
    subject: String,
    what: &'static str,
    handle: F,
) where
    F: Fn(Vec<u8>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let e = engine.clone();
    let handle = Arc::new(handle);
    engine.spawn(async move {
        let mut sub = match e.client().subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(err) => {
                tracing::error!(error = %err, subject, "cannot take other nodes' {what}");
                return;
            }
        };
        while let Some(m) = sub.next().await {
            let (e, seal, subject, handle) =
                (e.clone(), seal.clone(), subject.clone(), handle.clone());
            tokio::spawn(async move {
                let error = match seal.open(&subject, &m.payload) {
                    Ok(body) => handle(body.to_vec()).await.err(),
                    Err(why) => Some(why),
                };
                if let Some(why) = &error {
                    tracing::warn!(error = %why, "{what} from another node refused");
                }
                if let Some(reply) = m.reply {
                    let body = serde_json::to_vec(&Answer { error }).unwrap_or_default();
                    let sealed = seal.seal(&reply, &body);
                    let _ = e.client().publish(reply, sealed.into()).await;
                }
            });
        }
    });
}

/// What became of a sealed request ([`ask_sealed`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Asked {
    /// The node took it.
    Taken,
    /// The node refused it, saying why.
    Refused(String),
    /// The node never had it (nobody listening, no connection).
    NotHad(String),
    /// No answer in time: the node may have taken it.
    NoAnswer,
}

/// Sends `body`, sealed, to `subject` and opens the answer, which comes on
/// a reply subject of this request's own (what the answer is sealed for).
pub async fn ask_sealed(
    engine: &Engine,
    seal: &Seal,
    subject: String,
    body: &[u8],
    timeout: Duration,
) -> Asked {
    let client = engine.client().clone();
    let reply = client.new_inbox();
    let request = async_nats::Request::new()
        .payload(seal.seal(&subject, body).into())
        .inbox(reply.clone())
        .timeout(None);
    match tokio::time::timeout(timeout, client.send_request(subject, request)).await {
        Ok(Ok(m)) => {
            let answer = seal
                .open(&reply, &m.payload)
                .and_then(|b| serde_json::from_slice::<Answer>(b).map_err(|e| e.to_string()));
            match answer {
                Ok(Answer { error: None }) => Asked::Taken,
                Ok(Answer { error: Some(why) }) => Asked::Refused(why),
                Err(why) => Asked::Refused(format!("an answer that does not open: {why}")),
            }
        }
        Ok(Err(e)) => Asked::NotHad(e.to_string()),
        Err(_) => Asked::NoAnswer,
    }
}

/// On a node where `kind` is on: delivers what other nodes forward through
/// `gateway`.
pub fn serve(engine: &Engine, seal: Seal, kind: MediumKind, gateway: Recipient<DeliverHere>) {
    let subject = subject(&engine.settings().node_id, kind);
    answer_sealed(engine, seal, subject, "a forwarded delivery", move |body| {
        let gateway = gateway.clone();
        async move {
            let d: Delivery = serde_json::from_slice(&body)
                .map_err(|err| format!("a delivery that does not decode: {err}"))?;
            match gateway.send(DeliverHere(d)).await {
                Ok(Ok(MediumAck::Delivered | MediumAck::DeliveredVia(_))) => Ok(()),
                Ok(Ok(MediumAck::Pending)) => {
                    Err("the medium holds it for later; not forwardable".into())
                }
                Ok(Err(NonDelivery(why))) => Err(why),
                Err(_) => Err("the gateway stopped".into()),
            }
        }
    });
}

/// What became of `body`, a [`Delivery`] on `kind` handed to `node`: its
/// outcome (delivered says by which node), or `Err` saying why the node
/// never had it (only then may another node be tried).
pub async fn hand_to(
    engine: &Engine,
    seal: &Seal,
    node: &str,
    kind: MediumKind,
    body: &[u8],
    timeout: Duration,
) -> Result<Result<MediumAck, NonDelivery>, String> {
    match ask_sealed(engine, seal, subject(node, kind), body, timeout).await {
        Asked::Taken => Ok(Ok(MediumAck::DeliveredVia(format!("by node {node}")))),
        Asked::Refused(e) => Ok(Err(NonDelivery(format!("{e} (through node {node})")))),
        Asked::NoAnswer => Ok(Err(NonDelivery(format!(
            "node {node} did not answer within {}s",
            timeout.as_secs()
        )))),
        Asked::NotHad(e) => Err(e),
    }
}

/// A medium this node has not, delivered by a node of the cluster that has.
pub struct ForwardMedium {
    kind: MediumKind,
    cluster: Membership,
    seal: Seal,
    timeout: Duration,
}

impl ForwardMedium {
    /// `kind` through the nodes of `cluster` that serve it, each delivery
    /// waited for `timeout` at most; whether there is one is told to
    /// `on_health` every heartbeat (the member registry's view, which
    /// routing reads).
    pub fn new(
        cluster: &Membership,
        seal: Seal,
        kind: MediumKind,
        timeout: Duration,
        on_health: Box<dyn Fn(bool) + Send>,
    ) -> Self {
        let m = cluster.clone();
        cluster.engine.spawn(async move {
            let mut tick = tokio::time::interval(m.engine.settings().heartbeat);
            loop {
                tick.tick().await;
                on_health(!m.serving_nodes(kind.as_str()).is_empty());
            }
        });
        Self {
            kind,
            cluster: cluster.clone(),
            seal,
            timeout,
        }
    }
}

impl Medium for ForwardMedium {
    fn kind(&self) -> MediumKind {
        self.kind
    }

    fn health(&self) -> Health {
        let via = self.cluster.serving_nodes(self.kind.as_str());
        Health {
            up: !via.is_empty(),
            detail: if via.is_empty() {
                format!("no node of the cluster serves {}", self.kind)
            } else {
                format!("through node {}", via.join(", "))
            },
        }
    }

    fn deliver(&mut self, d: Delivery) -> LocalBoxFuture<'static, Result<MediumAck, NonDelivery>> {
        let nodes = self.cluster.serving_nodes(self.kind.as_str());
        let (engine, kind, timeout) = (self.cluster.engine.clone(), self.kind, self.timeout);
        let seal = self.seal.clone();
        let body = serde_json::to_vec(&d).unwrap_or_default();
        // On the engine's runtime (its client), answered here.
        let asked = engine.clone().spawn(async move {
            let mut why = Vec::new();
            for node in nodes {
                // The next node only when this one never had it: a node
                // that answered, or took too long to, may have delivered
                // (a second node would deliver it twice).
                match hand_to(&engine, &seal, &node, kind, &body, timeout).await {
                    Ok(done) => return done,
                    Err(e) => why.push(format!("{node}: {e}")),
                }
            }
            Err(NonDelivery(if why.is_empty() {
                format!("no node of the cluster serves {kind}")
            } else {
                format!("no node delivered it ({})", why.join("; "))
            }))
        });
        Box::pin(async move {
            asked
                .await
                .unwrap_or_else(|_| Err(NonDelivery("the cluster engine stopped".into())))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_opens_only_for_its_subject_and_its_cluster() {
        let ours = Seal::new(&SecretKey([1; 32]));
        let theirs = Seal::new(&SecretKey([2; 32]));
        let sealed = ours.seal("sb.medium.c.fax", b"{}");
        assert_eq!(ours.open("sb.medium.c.fax", &sealed), Ok(&b"{}"[..]));
        assert!(
            ours.open("sb.medium.b.fax", &sealed).is_err(),
            "another subject"
        );
        assert!(
            theirs.open("sb.medium.c.fax", &sealed).is_err(),
            "another cluster"
        );
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(ours.open("sb.medium.c.fax", &tampered).is_err());
        assert!(ours.open("sb.medium.c.fax", b"short").is_err());
    }
}
