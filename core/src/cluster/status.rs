//! The cluster's state as an operator reads it (`switchboard cluster
//! status`, `GET /v1/admin/cluster`), and the heartbeat that feeds it.

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{names, ClusterError, Engine};

/// What a node puts into [`names::NODES_BUCKET`] every heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's id.
    pub id: String,
    /// Where its HTTP API listens.
    pub http: String,
    /// When it started (ms since the epoch).
    pub started_ms: u64,
    /// Its last heartbeat (ms since the epoch, its own clock).
    pub last_seen_ms: u64,
    /// How many transactions it has open.
    pub open_txns: u64,
    /// Its heartbeat interval (ms), so readers judge it by its own pace.
    pub heartbeat_ms: u64,
    /// It left in an ordered shutdown.
    #[serde(default)]
    pub left: bool,
    /// The mediums its gateways serve now (logged in to its broker and
    /// healthy: an SMSC bound, a relay reachable), by name.
    #[serde(default)]
    pub mediums: Vec<String>,
}

impl NodeRecord {
    /// Whether the node is alive at `now_ms`: it has not left and its last
    /// heartbeat is younger than three of its intervals.
    pub fn alive(&self, now_ms: u64) -> bool {
        !self.left && now_ms.saturating_sub(self.last_seen_ms) < 3 * self.heartbeat_ms.max(1)
    }
}

/// One node as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeStatus {
    /// The node's id.
    pub id: String,
    /// Where its HTTP API listens.
    pub http: String,
    /// Whether it is alive ([`NodeRecord::alive`]).
    pub alive: bool,
    /// Its last heartbeat (RFC 3339).
    pub last_seen: String,
    /// How many transactions it has open.
    pub open_txns: u64,
    /// The mediums its gateways serve ([`NodeRecord::mediums`]).
    pub mediums: Vec<String>,
    /// Who runs its journal when that is not itself: another node took
    /// its work over ([`super::takeover`]).
    pub taken_over: Option<super::takeover::Claim>,
}

/// One stream as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamStatus {
    /// Its name.
    pub name: String,
    /// Its configured copies.
    pub replicas: usize,
    /// How many messages it holds.
    pub messages: u64,
    /// The server leading it, if one does.
    pub leader: Option<String>,
    /// Its copies that are current (leader included).
    pub current: usize,
}

/// A JetStream server as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerStatus {
    /// Its name.
    pub name: String,
    /// Whether it took part in the last answer (leader, or a current
    /// replica of the journal).
    pub current: bool,
}

/// JetStream's part of the status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JetStreamStatus {
    /// The servers that hold the journal's copies.
    pub servers: Vec<ServerStatus>,
    /// The cluster's streams (buckets as `KV_<bucket>`).
    pub streams: Vec<StreamStatus>,
}

/// The whole status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Status {
    /// Every node that ever put a heartbeat, by id.
    pub nodes: Vec<NodeStatus>,
    /// JetStream.
    pub jetstream: JetStreamStatus,
}

/// Puts `record` as its node's liveness.
///
/// # Errors
/// When JetStream does not take it.
pub async fn beat(engine: &Engine, record: &NodeRecord) -> Result<(), ClusterError> {
    let kv = engine
        .js()
        .get_key_value(names::NODES_BUCKET)
        .await
        .map_err(ClusterError::js)?;
    let body = serde_json::to_vec(record).map_err(ClusterError::js)?;
    kv.put(&record.id, body.into())
        .await
        .map_err(ClusterError::js)?;
    Ok(())
}

/// Every node's last record, by id.
///
/// # Errors
/// When JetStream does not answer.
pub async fn nodes(engine: &Engine) -> Result<Vec<NodeRecord>, ClusterError> {
    let kv = engine
        .js()
        .get_key_value(names::NODES_BUCKET)
        .await
        .map_err(ClusterError::js)?;
    let mut keys: Vec<String> = Vec::new();
    let mut listed = kv.keys().await.map_err(ClusterError::js)?;
    while let Some(k) = listed.next().await {
        let k = k.map_err(ClusterError::js)?;
        if !k.starts_with(super::takeover::PREFIX) {
            keys.push(k);
        }
    }
    keys.sort();
    let mut out = Vec::new();
    for k in keys {
        if let Some(v) = kv.get(&k).await.map_err(ClusterError::js)? {
            match serde_json::from_slice::<NodeRecord>(&v) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!(node = %k, error = %e, "an unreadable node record"),
            }
        }
    }
    Ok(out)
}

/// The cluster's status at `now_ms`.
///
/// # Errors
/// When JetStream does not answer.
pub async fn status(engine: &Engine, now_ms: u64) -> Result<Status, ClusterError> {
    let mut nodes_out = Vec::new();
    for r in nodes(engine).await? {
        let taken_over = super::takeover::read(engine, &r.id)
            .await?
            .map(|(c, _)| c)
            .filter(|c| c.by != r.id);
        nodes_out.push(NodeStatus {
            alive: r.alive(now_ms),
            last_seen: crate::time::rfc3339(r.last_seen_ms),
            id: r.id,
            http: r.http,
            open_txns: r.open_txns,
            mediums: r.mediums,
            taken_over,
        });
    }
    let nodes = nodes_out;
    let mut streams = Vec::new();
    let mut servers: Vec<ServerStatus> = Vec::new();
    let mut names_list = engine.js().stream_names();
    let mut found = Vec::new();
    while let Some(n) = names_list.next().await {
        let n = n.map_err(ClusterError::js)?;
        if n == names::JOURNAL_STREAM || n.starts_with("KV_sb_") {
            found.push(n);
        }
    }
    found.sort();
    for name in found {
        let info = engine
            .js()
            .get_stream(&name)
            .await
            .map_err(ClusterError::js)?
            .get_info()
            .await
            .map_err(ClusterError::js)?;
        let cluster = info.cluster.clone().unwrap_or_default();
        let current = usize::from(cluster.leader.is_some())
            + cluster.replicas.iter().filter(|p| p.current).count();
        if name == names::JOURNAL_STREAM {
            servers.extend(cluster.leader.iter().map(|l| ServerStatus {
                name: l.clone(),
                current: true,
            }));
            servers.extend(cluster.replicas.iter().map(|p| ServerStatus {
                name: p.name.clone(),
                current: p.current && !p.offline,
            }));
            servers.sort_by(|a, b| a.name.cmp(&b.name));
        }
        streams.push(StreamStatus {
            name,
            replicas: info.config.num_replicas,
            messages: info.state.messages,
            leader: cluster.leader,
            current,
        });
    }
    Ok(Status {
        nodes,
        jetstream: JetStreamStatus { servers, streams },
    })
}
