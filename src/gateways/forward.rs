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
//! alive and serves the medium ([`status::NodeRecord::mediums`]); the next
//! only when one never had the delivery (nobody listening, no connection),
//! never after an answer or a timeout (at most once: the first may have
//! delivered). The forwarding gateway is healthy while there is one.
//!
//! Owns: the forwarding. Must not touch: the mediums themselves.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use switchboard_actors::gateway::DeliverHere;
use switchboard_actors::medium::futures_like::LocalBoxFuture;
use switchboard_actors::medium::{Delivery, Health, Medium, MediumAck, NonDelivery};
use switchboard_core::cluster::{status, Engine};
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

/// A forwarded delivery's answer.
#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    /// `None`: delivered.
    error: Option<String>,
}

/// On a node where `kind` is on: delivers what other nodes forward through
/// `gateway`.
pub fn serve(engine: &Engine, seal: Seal, kind: MediumKind, gateway: Recipient<DeliverHere>) {
    let e = engine.clone();
    let subject = subject(&engine.settings().node_id, kind);
    engine.spawn(async move {
        let mut sub = match e.client().subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(err) => {
                tracing::error!(error = %err, subject, "cannot take other nodes' deliveries");
                return;
            }
        };
        while let Some(m) = sub.next().await {
            let (e, gateway, seal, subject) =
                (e.clone(), gateway.clone(), seal.clone(), subject.clone());
            tokio::spawn(async move {
                let opened = seal.open(&subject, &m.payload).and_then(|b| {
                    serde_json::from_slice::<Delivery>(b)
                        .map_err(|err| format!("a delivery that does not decode: {err}"))
                });
                let error = match opened {
                    Ok(d) => match gateway.send(DeliverHere(d)).await {
                        Ok(Ok(MediumAck::Delivered)) => None,
                        Ok(Ok(MediumAck::Pending)) => {
                            Some("the medium holds it for later; not forwardable".into())
                        }
                        Ok(Err(NonDelivery(why))) => Some(why),
                        Err(_) => Some("the gateway stopped".into()),
                    },
                    Err(why) => {
                        tracing::warn!(subject, error = %why, "a forwarded delivery refused");
                        Some(why)
                    }
                };
                if let Some(reply) = m.reply {
                    let body = serde_json::to_vec(&Answer { error }).unwrap_or_default();
                    let sealed = seal.seal(&reply, &body);
                    let _ = e.client().publish(reply, sealed.into()).await;
                }
            });
        }
    });
}

/// A medium this node has not, delivered by a node of the cluster that has.
pub struct ForwardMedium {
    kind: MediumKind,
    engine: Engine,
    seal: Seal,
    health: Arc<Mutex<Health>>,
    /// The live nodes serving `kind`, as the last heartbeat found them.
    nodes: Arc<Mutex<Vec<String>>>,
    timeout: Duration,
}

impl ForwardMedium {
    /// `kind` through the nodes of `engine`'s cluster that serve it, each
    /// delivery waited for `timeout` at most; whether there is one is told
    /// to `on_health` every heartbeat (the member registry's view, which
    /// routing reads).
    pub fn new(
        engine: &Engine,
        seal: Seal,
        kind: MediumKind,
        timeout: Duration,
        on_health: Box<dyn Fn(bool) + Send>,
    ) -> Self {
        let health = Arc::new(Mutex::new(Health {
            up: false,
            detail: format!("looking for a node of the cluster that serves {kind}"),
        }));
        let nodes: Arc<Mutex<Vec<String>>> = Arc::default();
        let (e, h, n) = (engine.clone(), health.clone(), nodes.clone());
        engine.spawn(async move {
            let mut tick = tokio::time::interval(e.settings().heartbeat);
            loop {
                tick.tick().await;
                let serving = serving_nodes(&e, kind).await;
                let up = !serving.is_empty();
                *lock(&h) = Health {
                    up,
                    detail: if up {
                        format!("through node {}", serving.join(", "))
                    } else {
                        format!("no node of the cluster serves {kind}")
                    },
                };
                *lock(&n) = serving;
                on_health(up);
            }
        });
        Self {
            kind,
            engine: engine.clone(),
            seal,
            health,
            nodes,
            timeout,
        }
    }
}

/// A request to `subject` answered on a reply subject of its own (which
/// the answer is sealed for): the answer (an error at once when nobody
/// listens there), and that subject.
pub fn request(
    engine: &Engine,
    subject: String,
    body: Vec<u8>,
) -> (
    impl std::future::Future<Output = Result<async_nats::Message, String>> + Send + 'static,
    String,
) {
    let client = engine.client().clone();
    let reply = client.new_inbox();
    let request = async_nats::Request::new()
        .payload(body.into())
        .inbox(reply.clone())
        .timeout(None);
    let fut = async move {
        client
            .send_request(subject, request)
            .await
            .map_err(|e| e.to_string())
    };
    (fut, reply)
}

/// The live nodes other than this one whose own gateways serve `kind`
/// (what their heartbeats say; none when JetStream does not answer).
pub async fn serving_nodes(engine: &Engine, kind: MediumKind) -> Vec<String> {
    let me = &engine.settings().node_id;
    let now = switchboard_core::protocol::clock::Clock::now_ms(
        &switchboard_core::protocol::clock::SystemClock,
    );
    status::nodes(engine)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.id != *me && r.alive(now))
        .filter(|r| r.mediums.iter().any(|m| m == kind.as_str()))
        .map(|r| r.id)
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Medium for ForwardMedium {
    fn kind(&self) -> MediumKind {
        self.kind
    }

    fn health(&self) -> Health {
        lock(&self.health).clone()
    }

    fn deliver(&mut self, d: Delivery) -> LocalBoxFuture<'static, Result<MediumAck, NonDelivery>> {
        let nodes = lock(&self.nodes).clone();
        let (engine, kind, timeout) = (self.engine.clone(), self.kind, self.timeout);
        let seal = self.seal.clone();
        let body = serde_json::to_vec(&d).unwrap_or_default();
        // On the engine's runtime (its client), answered here.
        let asked = engine.clone().spawn(async move {
            let mut why = Vec::new();
            for node in nodes {
                let to = subject(&node, kind);
                let sealed = seal.seal(&to, &body);
                let (asked, reply) = request(&engine, to, sealed);
                // The next node only when this one never had it: a node
                // that answered, or took too long to, may have delivered
                // (a second node would deliver it twice).
                match tokio::time::timeout(timeout, asked).await {
                    Ok(Ok(m)) => {
                        let answer = seal.open(&reply, &m.payload).and_then(|b| {
                            serde_json::from_slice::<Answer>(b).map_err(|e| e.to_string())
                        });
                        return match answer {
                            Ok(Answer { error: None }) => Ok(MediumAck::Delivered),
                            Ok(Answer { error: Some(e) }) => {
                                Err(NonDelivery(format!("{e} (through node {node})")))
                            }
                            Err(e) => Err(NonDelivery(format!(
                                "node {node} answered what does not open: {e}"
                            ))),
                        };
                    }
                    Ok(Err(e)) => why.push(format!("{node}: {e}")),
                    Err(_) => {
                        return Err(NonDelivery(format!(
                            "node {node} did not answer within {}s",
                            timeout.as_secs()
                        )))
                    }
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
