//! Who runs a node's journal (`CLUSTER.md`, "a dead node's transactions
//! are finished by another node after `ack_wait`"): one claim per node in
//! [`names::NODES_BUCKET`], key `takeover.<node>`, changed only by
//! compare-and-set on its revision, so two nodes never both take over the
//! same dead node and a node that comes back never runs a journal another
//! node is replaying.
//!
//! - [`State::Own`] by the node itself: it runs its journal. Written at
//!   every start, so a node that just came back is not taken over while it
//!   starts (the claim's age counts as well as its heartbeat's).
//! - [`State::Running`] by another node: that node is replaying the dead
//!   node's journal into its own store and adopting its outbox.
//! - [`State::Done`]: all of it is another node's now, and the dead node's
//!   subject is empty. The node, when it comes back, empties its cache and
//!   owns its (empty) journal again.
//!
//! The store does the work (`Store::adopt_dead`, in `store/takeover.rs`); this
//! module holds the claims and the rule of when one may be taken
//! ([`may_claim`]).

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};

use super::status::NodeRecord;
use super::{names, ClusterError, Engine};

/// Where a claim's state is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
// Not "State": the presence state is that schema.
#[cfg_attr(feature = "openapi", schema(as = ClaimState))]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The node runs its own journal.
    Own,
    /// `by` is taking the node's work over.
    Running,
    /// `by` has taken it over.
    Done,
}

/// A claim on a node's journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Claim {
    /// The node holding it.
    pub by: String,
    /// Its state.
    pub state: State,
    /// When it was written (ms since the epoch, the writer's clock).
    pub at_ms: u64,
}

/// The claims bucket's key of `node`'s claim (beside the heartbeats, which
/// are keyed by bare node ids; [`status::nodes`](super::status::nodes)
/// skips these).
pub fn key(node: &str) -> String {
    format!("{PREFIX}{node}")
}

/// What claims' keys start with.
pub const PREFIX: &str = "takeover.";

/// A claim as read: it and its revision (what a change must name).
pub type Read = Option<(Claim, u64)>;

async fn bucket(engine: &Engine) -> Result<kv::Store, ClusterError> {
    engine
        .js()
        .get_key_value(names::NODES_BUCKET)
        .await
        .map_err(ClusterError::js)
}

/// `node`'s claim now.
///
/// # Errors
/// When JetStream does not answer or the claim does not decode.
pub async fn read(engine: &Engine, node: &str) -> Result<Read, ClusterError> {
    let kv = bucket(engine).await?;
    match kv.entry(key(node)).await.map_err(ClusterError::js)? {
        Some(e) if e.operation == kv::Operation::Put => {
            let c = serde_json::from_slice(&e.value)
                .map_err(|err| ClusterError::State(format!("the claim on {node}: {err}")))?;
            Ok(Some((c, e.revision)))
        }
        _ => Ok(None),
    }
}

/// Writes `claim` on `node` if the claim is still the one read at
/// `revision` (`None`: there was none): its new revision, or `None` when
/// another node changed it first.
///
/// # Errors
/// When JetStream does not answer.
pub async fn write(
    engine: &Engine,
    node: &str,
    claim: &Claim,
    revision: Option<u64>,
) -> Result<Option<u64>, ClusterError> {
    let kv = bucket(engine).await?;
    let body = serde_json::to_vec(claim).map_err(ClusterError::js)?;
    let done = match revision {
        None => match kv.create(key(node), body.into()).await {
            Ok(rev) => Some(rev),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => None,
            Err(e) => return Err(ClusterError::js(e)),
        },
        Some(rev) => match kv.update(key(node), body.into(), rev).await {
            Ok(rev) => Some(rev),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => None,
            Err(e) => return Err(ClusterError::js(e)),
        },
    };
    Ok(done)
}

/// Whether `me` may claim `dead`'s journal at `now_ms`, `claim` being its
/// claim now and `nodes` every node's last heartbeat: `dead` has been
/// silent for `ack_wait_ms`, and so has whoever holds an unfinished claim
/// on it (a claim of its own written as long ago, so that a node that came
/// back is given time to beat); a claim already done is left; one of `me`'s
/// own unfinished is taken up again.
pub fn may_claim(
    dead: &str,
    me: &str,
    claim: Option<&Claim>,
    nodes: &[NodeRecord],
    now_ms: u64,
    ack_wait_ms: u64,
) -> bool {
    let silent = |id: &str| {
        nodes
            .iter()
            .find(|n| n.id == id)
            .is_none_or(|n| now_ms.saturating_sub(n.last_seen_ms) >= ack_wait_ms)
    };
    if dead == me || !silent(dead) {
        return false;
    }
    match claim {
        None => true,
        Some(c) => match c.state {
            State::Done => false,
            State::Running if c.by == me => true,
            State::Own | State::Running => {
                now_ms.saturating_sub(c.at_ms) >= ack_wait_ms && silent(&c.by)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, last_seen_ms: u64) -> NodeRecord {
        NodeRecord {
            id: id.into(),
            http: String::new(),
            started_ms: 0,
            last_seen_ms,
            open_txns: 0,
            heartbeat_ms: 1000,
            left: false,
            mediums: Vec::new(),
        }
    }

    fn claim(by: &str, state: State, at_ms: u64) -> Claim {
        Claim {
            by: by.into(),
            state,
            at_ms,
        }
    }

    #[test]
    fn a_node_silent_for_ack_wait_is_claimed_once_and_never_while_it_beats() {
        let now = 100_000;
        let nodes = [node("a", now - 30_000), node("b", now - 500)];
        let may = |c: Option<&Claim>| may_claim("a", "b", c, &nodes, now, 30_000);
        assert!(may(None));
        assert!(may(Some(&claim("a", State::Own, 0))));
        // a came back 10 s ago and has not beaten yet: its claim is young.
        assert!(!may(Some(&claim("a", State::Own, now - 10_000))));
        assert!(!may(Some(&claim("c", State::Done, 0))));
        assert!(may(Some(&claim("b", State::Running, now))));
        // c is taking a over and is alive (no record: never seen, silent).
        let with_c = [nodes[0].clone(), nodes[1].clone(), node("c", now - 100)];
        assert!(!may_claim(
            "a",
            "b",
            Some(&claim("c", State::Running, 0)),
            &with_c,
            now,
            30_000
        ));
        // c died during it: b takes it up.
        assert!(may(Some(&claim("c", State::Running, 0))));
        // Not silent long enough; never oneself.
        assert!(!may_claim("a", "b", None, &nodes, now, 31_000));
        assert!(!may_claim("b", "b", None, &nodes, now + 60_000, 30_000));
    }

    #[test]
    fn claims_round_trip_as_json() {
        let c = claim("b", State::Running, 7);
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(text, r#"{"by":"b","state":"running","at_ms":7}"#);
        assert_eq!(serde_json::from_str::<Claim>(&text).unwrap(), c);
        assert_eq!(key("a.b"), "takeover.a.b");
    }
}
