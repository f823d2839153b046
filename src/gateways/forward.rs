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
use switchboard_core::protocol::MediumKind;

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
pub fn serve(engine: &Engine, kind: MediumKind, gateway: Recipient<DeliverHere>) {
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
            let (e, gateway) = (e.clone(), gateway.clone());
            tokio::spawn(async move {
                let error = match serde_json::from_slice::<Delivery>(&m.payload) {
                    Ok(d) => match gateway.send(DeliverHere(d)).await {
                        Ok(Ok(MediumAck::Delivered)) => None,
                        Ok(Ok(MediumAck::Pending)) => {
                            Some("the medium holds it for later; not forwardable".into())
                        }
                        Ok(Err(NonDelivery(why))) => Some(why),
                        Err(_) => Some("the gateway stopped".into()),
                    },
                    Err(err) => Some(format!("a delivery that does not decode: {err}")),
                };
                if let Some(reply) = m.reply {
                    let body = serde_json::to_vec(&Answer { error }).unwrap_or_default();
                    let _ = e.client().publish(reply, body.into()).await;
                }
            });
        }
    });
}

/// A medium this node has not, delivered by a node of the cluster that has.
pub struct ForwardMedium {
    kind: MediumKind,
    engine: Engine,
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
            health,
            nodes,
            timeout,
        }
    }
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
        let body = serde_json::to_vec(&d).unwrap_or_default();
        // On the engine's runtime (its client), answered here.
        let asked = engine.clone().spawn(async move {
            let mut why = Vec::new();
            for node in nodes {
                let asked = engine
                    .client()
                    .request(subject(&node, kind), body.clone().into());
                // The next node only when this one never had it: a node
                // that answered, or took too long to, may have delivered
                // (a second node would deliver it twice).
                match tokio::time::timeout(timeout, asked).await {
                    Ok(Ok(m)) => {
                        return match serde_json::from_slice::<Answer>(&m.payload) {
                            Ok(Answer { error: None }) => Ok(MediumAck::Delivered),
                            Ok(Answer { error: Some(e) }) => {
                                Err(NonDelivery(format!("{e} (through node {node})")))
                            }
                            Err(e) => Err(NonDelivery(format!(
                                "node {node} answered what does not decode: {e}"
                            ))),
                        }
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
