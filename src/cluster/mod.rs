//! A node in cluster mode (`CLUSTER.md`), a leaf the node and the API both
//! use: joining the cluster (connect, make sure of the streams and
//! buckets, refuse to start beside a live node with this id), the heartbeat
//! every `cluster.heartbeat_s`, leaving, the status, and presence across
//! nodes ([`presence`]).

pub mod presence;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use switchboard_actors::gateway::AdoptOutbox;
use switchboard_core::cluster::status::{self, NodeRecord};
use switchboard_core::cluster::{init, takeover, Engine};
use switchboard_core::protocol::clock::SharedClock;
use switchboard_core::store::{Store, StoreError, Tree};

use crate::config::Config;

/// A user who must be served by another node ([`Membership::serves_elsewhere`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrongNode {
    /// Their home node.
    pub node: String,
    /// Where its HTTP API listens (`host:port`), while it is alive.
    pub http: Option<String>,
}

/// How long a starting node waits for NATS and for JetStream's answer.
const JOIN_WAIT: Duration = Duration::from_secs(30);

/// This node's place in the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Membership {
    /// The connection.
    pub engine: Engine,
    record: Arc<Mutex<Beat>>,
    presence: Arc<Mutex<presence::Known>>,
    /// Every node's last heartbeat record, read once a heartbeat.
    nodes: Arc<Mutex<Vec<NodeRecord>>>,
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
        mediums: Vec::new(),
    };
    tracing::info!(node = %settings.node_id, nats = %settings.urls.join(","), replicas = settings.replicas, "joined the cluster");
    let m = Membership {
        engine,
        record: Arc::new(Mutex::new(Beat {
            record,
            open_txns: None,
            mediums: None,
            beating_since: None,
        })),
        presence: Arc::default(),
        nodes: Arc::new(Mutex::new(nodes)),
        reported: Arc::default(),
    };
    // Beating from now: a node that starts is alive, not a dead node to
    // take over, however long its cache takes to catch up.
    m.beat(clock.clone());
    Ok(m)
}

/// Whether another node has taken this one's work over while it ran (it
/// was silent for `cluster.ack_wait_s` — starved, paused, or cut off from
/// JetStream). Checked once its store is open (the claim is its own from
/// then).
fn taken_over(engine: &Engine) -> Option<String> {
    let me = engine.settings().node_id.clone();
    let e = engine.clone();
    let read = engine.run(async move { takeover::read(&e, &me).await });
    match read {
        Ok(Ok(Some((c, _)))) if c.by != engine.settings().node_id => Some(c.by),
        _ => None,
    }
}

/// The exit status of a node another node took over while it ran.
pub const EXIT_TAKEN_OVER: i32 = 75;

/// The heartbeat's state.
struct Beat {
    record: NodeRecord,
    /// Counts the node's open transactions (once it serves).
    open_txns: Option<Box<dyn Fn() -> u64 + Send>>,
    /// Names the mediums its gateways serve now (once it serves).
    mediums: Option<Box<dyn Fn() -> Vec<String> + Send>>,
    /// Since when every heartbeat has been taken (`None`: the last was
    /// not): a node takes others over only after `ack_wait` of it, so
    /// nodes that all lost JetStream for a while do not take each other
    /// over when it is back.
    beating_since: Option<std::time::Instant>,
}

impl Membership {
    /// The node serves: its heartbeat carries its HTTP address, its count
    /// of open transactions and the mediums its gateways serve from now.
    pub fn serving(
        &self,
        http: String,
        open_txns: impl Fn() -> u64 + Send + 'static,
        mediums: impl Fn() -> Vec<String> + Send + 'static,
    ) {
        let r = {
            let mut b = lock(&self.record);
            b.record.http = http;
            b.record.mediums = mediums();
            b.open_txns = Some(Box::new(open_txns));
            b.mediums = Some(Box::new(mediums));
            b.record.clone()
        };
        // At once, not at the next beat: the status shows where it serves.
        let engine = self.engine.clone();
        self.engine.spawn(async move {
            if let Err(e) = status::beat(&engine, &r).await {
                tracing::warn!(error = %e, "the cluster heartbeat was not taken");
            }
        });
    }

    /// The heartbeat: the node's record every `cluster.heartbeat_s`, on a
    /// task that does nothing else (a late beat gets a live node taken
    /// over); beside it, presence's refresh.
    fn beat(&self, clock: SharedClock) {
        let (engine, record) = (self.engine.clone(), self.record.clone());
        let every = self.engine.settings().heartbeat;
        let c = clock.clone();
        self.engine.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let r = {
                    let mut b = lock(&record);
                    if b.record.left {
                        return;
                    }
                    b.record.last_seen_ms = c.now_ms();
                    b.record.open_txns = b.open_txns.as_ref().map_or(0, |f| f());
                    if let Some(f) = &b.mediums {
                        b.record.mediums = f();
                    }
                    b.record.clone()
                };
                let taken = status::beat(&engine, &r).await;
                let mut b = lock(&record);
                match taken {
                    Ok(()) => {
                        b.beating_since.get_or_insert_with(std::time::Instant::now);
                    }
                    Err(e) => {
                        b.beating_since = None;
                        tracing::warn!(error = %e, "the cluster heartbeat was not taken");
                    }
                }
            }
        });
        let (engine, record, cached) =
            (self.engine.clone(), self.record.clone(), self.nodes.clone());
        let (known, reported) = (self.presence.clone(), self.reported.clone());
        self.engine.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if lock(&record).record.left {
                    return;
                }
                presence::refresh(&engine, &known).await;
                let Ok(nodes) = status::nodes(&engine).await else {
                    continue;
                };
                if let Some(to) = lock(&reported).clone() {
                    let now = clock.now_ms();
                    let alive = |id: &str| nodes.iter().any(|n| n.id == id && n.alive(now));
                    presence::forget_dead(&known, &alive, &to);
                }
                *lock(&cached) = nodes;
            }
        });
    }

    /// Starts taking over dead nodes' work (`CLUSTER.md`, behaviour 4): on
    /// a thread of its own, every heartbeat, once this node's own
    /// heartbeats have been taken for `cluster.ack_wait_s`,
    /// [`Store::adopt_dead`]; what it adopts goes to `gateways`, which
    /// submit it to this node's broker.
    pub fn take_over_dead(
        &self,
        store: Store,
        gateways: Vec<actix::Recipient<AdoptOutbox>>,
        clock: SharedClock,
    ) {
        let (record, m) = (self.record.clone(), self.clone());
        let settings = self.engine.settings().clone();
        let spawned = std::thread::Builder::new()
            .name("takeover".into())
            .spawn(move || loop {
                std::thread::sleep(settings.heartbeat);
                if let Some(by) = taken_over(&m.engine) {
                    // Its journal subject is gone and what it holds in
                    // memory is the other node's now: it stops, saying it
                    // left (so that it may start again at once, afresh).
                    tracing::error!(by = %by, "another node took this node's work over (its heartbeats were late by cluster.ack_wait_s); stopping, to start afresh");
                    m.leave();
                    std::process::exit(EXIT_TAKEN_OVER);
                }
                let steady = {
                    let b = lock(&record);
                    if b.record.left {
                        return;
                    }
                    b.beating_since
                        .is_some_and(|t| t.elapsed() >= settings.ack_wait)
                };
                if !steady {
                    continue;
                }
                match store.adopt_dead(clock.now_ms()) {
                    Ok(adopted) => {
                        for a in adopted {
                            metrics::counter!("switchboard_cluster_takeovers_total").increment(1);
                            metrics::counter!("switchboard_cluster_adopted_outbox_total")
                                .increment(a.outbox as u64);
                            for g in &gateways {
                                g.do_send(AdoptOutbox);
                            }
                            tracing::info!(node = %a.node, outbox = a.outbox, batches = a.batches, members = ?a.members, "the adopted work goes to this node's gateways (members without a gateway here keep theirs until one starts)");
                        }
                    }
                    Err(StoreError::Closed) => return,
                    Err(e) => tracing::warn!(error = %e, "taking over a silent node failed; trying again"),
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the takeover thread");
        }
    }

    /// The other nodes alive now, by their last heartbeat (read once a
    /// heartbeat).
    pub fn live_nodes(&self) -> Vec<NodeRecord> {
        let now = switchboard_core::protocol::clock::Clock::now_ms(
            &switchboard_core::protocol::clock::SystemClock,
        );
        let me = &self.engine.settings().node_id;
        lock(&self.nodes)
            .iter()
            .filter(|n| n.id != *me && n.alive(now))
            .cloned()
            .collect()
    }

    /// Where `user` must be served instead of this node: their domain
    /// requires their home node (`require_redirect`) and that is another
    /// node — with its HTTP address while it is alive.
    pub fn serves_elsewhere(
        &self,
        directory: &switchboard_core::directory::Directory,
        user: &str,
    ) -> Option<WrongNode> {
        let home = directory.home_of(user).filter(|h| h.required)?;
        if home.node == self.engine.settings().node_id {
            return None;
        }
        let http = (self.live_nodes().into_iter())
            .find(|n| n.id == home.node)
            .map(|n| n.http)
            // A node's first heartbeat may come before its API listens.
            .filter(|h| !h.is_empty());
        Some(WrongNode {
            node: home.node,
            http,
        })
    }

    /// The other live nodes whose own gateways serve `medium` (its name).
    pub fn serving_nodes(&self, medium: &str) -> Vec<String> {
        self.live_nodes()
            .into_iter()
            .filter(|n| n.mediums.iter().any(|m| m == medium))
            .map(|n| n.id)
            .collect()
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
            let mut b = lock(&self.record);
            b.record.left = true;
            b.record.clone()
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
