//! A node in cluster mode (`CLUSTER.md`), a leaf the node and the API both
//! use: joining the cluster (connect, make sure of the streams and
//! buckets, refuse to start beside a live node with this id), the heartbeat
//! every `cluster.heartbeat_s`, leaving, the status, and presence across
//! nodes ([`presence`]).

pub mod presence;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use switchboard_core::cluster::status::{self, NodeRecord};
use switchboard_core::cluster::{init, Engine};
use switchboard_core::protocol::clock::SharedClock;
use switchboard_core::store::Tree;

use crate::config::Config;

/// How long a starting node waits for NATS and for JetStream's answer.
const JOIN_WAIT: Duration = Duration::from_secs(30);

/// This node's place in the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Membership {
    /// The connection.
    pub engine: Engine,
    record: Arc<Mutex<NodeRecord>>,
    presence: Arc<Mutex<presence::Known>>,
    /// Where other nodes' presence is reported (once followed).
    reported: Arc<Mutex<Option<actix::Recipient<switchboard_actors::bus::Reported>>>>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("node", &self.engine.settings().node_id)
            .finish_non_exhaustive()
    }
}

/// Joins the cluster `cfg.cluster` names.
///
/// # Errors
/// No NATS server or no JetStream answer within 30 s, streams that cannot
/// be made, or another live node with this node's id.
pub fn join(cfg: &Config, clock: &SharedClock) -> anyhow::Result<Membership> {
    let settings = cfg.cluster.settings();
    let engine = Engine::connect(&settings, JOIN_WAIT)?;
    let e = engine.clone();
    let now = clock.now_ms();
    let nodes = engine
        .run(async move {
            init::wait_ready(&e, JOIN_WAIT).await?;
            init::ensure(&e, &Tree::names()).await?;
            status::nodes(&e).await
        })?
        .context("joining the cluster")?;
    if let Some(other) = nodes
        .iter()
        .find(|n| n.id == settings.node_id && n.alive(now))
    {
        bail!(
            "another node with id {:?} is alive in the cluster (last heartbeat {} ms ago, HTTP {}); give this node its own cluster.node_id",
            other.id,
            now.saturating_sub(other.last_seen_ms),
            other.http
        );
    }
    let record = NodeRecord {
        id: settings.node_id.clone(),
        http: String::new(),
        started_ms: now,
        last_seen_ms: now,
        open_txns: 0,
        heartbeat_ms: settings.heartbeat.as_millis() as u64,
        left: false,
    };
    tracing::info!(node = %settings.node_id, nats = %settings.urls.join(","), replicas = settings.replicas, "joined the cluster");
    Ok(Membership {
        engine,
        record: Arc::new(Mutex::new(record)),
        presence: Arc::default(),
        reported: Arc::default(),
    })
}

impl Membership {
    /// Starts the heartbeat: the node's record every `cluster.heartbeat_s`,
    /// with its HTTP address and its count of open transactions.
    pub fn start_heartbeat(
        &self,
        http: String,
        clock: SharedClock,
        open_txns: impl Fn() -> u64 + Send + 'static,
    ) {
        lock(&self.record).http = http;
        let (engine, record) = (self.engine.clone(), self.record.clone());
        let (known, reported) = (self.presence.clone(), self.reported.clone());
        let every = self.engine.settings().heartbeat;
        self.engine.spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let r = {
                    let mut r = lock(&record);
                    if r.left {
                        return;
                    }
                    r.last_seen_ms = clock.now_ms();
                    r.open_txns = open_txns();
                    r.clone()
                };
                if let Err(e) = status::beat(&engine, &r).await {
                    tracing::warn!(error = %e, "the cluster heartbeat was not taken");
                }
                presence::refresh(&engine, &known).await;
                let to = lock(&reported).clone();
                if let (Some(to), Ok(nodes)) = (to, status::nodes(&engine).await) {
                    let now = clock.now_ms();
                    let alive = |id: &str| nodes.iter().any(|n| n.id == id && n.alive(now));
                    presence::forget_dead(&known, &alive, &to);
                }
            }
        });
    }

    /// What this node's presence actor announces goes to the cluster.
    pub fn presence_announcer(
        &self,
    ) -> actix::Recipient<switchboard_actors::bus::AnnouncePresence> {
        use actix::Actor as _;
        presence::Announcer {
            engine: self.engine.clone(),
            known: self.presence.clone(),
        }
        .start()
        .recipient()
    }

    /// What other nodes' sessions make of their users' presence is
    /// reported to `to` (this node's presence actor); a user whose nodes
    /// all stopped heartbeating is reported offline.
    pub fn follow_presence(&self, to: actix::Recipient<switchboard_actors::bus::Reported>) {
        *lock(&self.reported) = Some(to.clone());
        let (engine, known) = (self.engine.clone(), self.presence.clone());
        self.engine
            .spawn(async move { presence::follow(engine, known, to).await });
    }

    /// Tells the cluster this node leaves (an ordered shutdown): its
    /// record says so and the heartbeat stops.
    pub fn leave(&self) {
        let r = {
            let mut r = lock(&self.record);
            r.left = true;
            r.clone()
        };
        let engine = self.engine.clone();
        match self
            .engine
            .run(async move { status::beat(&engine, &r).await })
        {
            Ok(Ok(())) => tracing::info!("left the cluster"),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not tell the cluster this node leaves"),
            Err(e) => tracing::warn!(error = %e, "could not tell the cluster this node leaves"),
        }
    }

    /// The cluster's status now (what `GET /v1/admin/cluster` answers).
    ///
    /// # Errors
    /// When JetStream does not answer.
    pub async fn status(&self, now_ms: u64) -> anyhow::Result<status::Status> {
        let engine = self.engine.clone();
        self.engine
            .spawn(async move { status::status(&engine, now_ms).await })
            .await
            .context("the cluster engine stopped")?
            .map_err(Into::into)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
