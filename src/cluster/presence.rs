//! Presence across the cluster's nodes: what this node's sessions make of
//! a user's state is put into the `sb_presence` bucket (and again every
//! heartbeat, so the bucket's short max age keeps only the living); what
//! other nodes put there is reported to this node's presence actor, and a
//! user whose only node stopped heartbeating is reported offline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use switchboard_actors::bus::{AnnouncePresence, Reported, State};
use switchboard_core::cluster::{names, Engine};

/// One user's presence as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePresence {
    /// The user.
    pub user: String,
    /// The node whose sessions these are.
    pub node: String,
    /// `online`, `away`, `busy` or `offline`.
    pub state: String,
    /// The note (with away).
    pub note: Option<String>,
}

fn state_of(s: &str) -> State {
    match s {
        "online" => State::Online,
        "away" => State::Away,
        "busy" => State::Busy,
        _ => State::Offline,
    }
}

/// The bucket key of `user` on `node` (hex: any id fits).
fn key(user: &str, node: &str) -> String {
    let mut k = String::from("p");
    for b in user.bytes().chain([0]).chain(node.bytes()) {
        k.push_str(&format!("{b:02x}"));
    }
    k
}

/// What the bridge keeps: this node's users (put again every heartbeat)
/// and other nodes' users as reported here (by user, then node).
#[derive(Default)]
pub(super) struct Known {
    local: HashMap<String, NodePresence>,
    remote: HashMap<String, HashMap<String, NodePresence>>,
}

/// Puts this node's announcements into the bucket.
pub(super) struct Announcer {
    pub(super) engine: Engine,
    pub(super) known: Arc<Mutex<Known>>,
}

impl Actor for Announcer {
    type Context = Context<Self>;
}

impl Handler<AnnouncePresence> for Announcer {
    type Result = ();

    fn handle(&mut self, m: AnnouncePresence, _: &mut Context<Self>) {
        let (state, note) = State::from_frame(&m.state);
        let p = NodePresence {
            user: m.user.clone(),
            node: self.engine.settings().node_id.clone(),
            state: state.as_str().to_string(),
            note,
        };
        {
            let mut k = super::lock(&self.known);
            if state == State::Offline {
                k.local.remove(&m.user);
            } else {
                k.local.insert(m.user.clone(), p.clone());
            }
        }
        let engine = self.engine.clone();
        self.engine.spawn(async move { put(&engine, &p).await });
    }
}

async fn put(engine: &Engine, p: &NodePresence) {
    let Ok(kv) = engine.js().get_key_value(names::PRESENCE_BUCKET).await else {
        return;
    };
    let Ok(body) = serde_json::to_vec(p) else {
        return;
    };
    if let Err(e) = kv.put(key(&p.user, &p.node), body.into()).await {
        tracing::warn!(user = %p.user, error = %e, "presence not shared with the cluster");
    }
}

/// Every heartbeat: this node's users put again.
pub(super) async fn refresh(engine: &Engine, known: &Mutex<Known>) {
    let mine: Vec<NodePresence> = super::lock(known).local.values().cloned().collect();
    for p in &mine {
        put(engine, p).await;
    }
}

/// Every heartbeat: users whose every reporting node is no longer alive
/// are reported offline here.
pub(super) fn forget_dead(
    known: &Mutex<Known>,
    alive: &dyn Fn(&str) -> bool,
    to: &Recipient<Reported>,
) {
    let mut k = super::lock(known);
    let mut gone = Vec::new();
    k.remote.retain(|user, by_node| {
        by_node.retain(|node, _| alive(node));
        if by_node.is_empty() {
            gone.push(user.clone());
            false
        } else {
            true
        }
    });
    drop(k);
    for user in gone {
        to.do_send(Reported {
            user,
            state: State::Offline,
            note: None,
        });
    }
}

/// Reports other nodes' puts to `to`, for as long as the engine runs
/// (a lost consumer is watched again).
pub(super) async fn follow(engine: Engine, known: Arc<Mutex<Known>>, to: Recipient<Reported>) {
    let me = engine.settings().node_id.clone();
    loop {
        let watched = async {
            let kv = engine.js().get_key_value(names::PRESENCE_BUCKET).await?;
            let mut w = kv.watch_with_history(">").await?;
            while let Some(e) = w.next().await {
                let e = e?;
                let Ok(p) = serde_json::from_slice::<NodePresence>(&e.value) else {
                    continue;
                };
                if p.node == me {
                    // Left from this node's last run: its sessions are gone.
                    let stale =
                        p.state != "offline" && !super::lock(&known).local.contains_key(&p.user);
                    if stale {
                        let off = NodePresence {
                            state: "offline".into(),
                            note: None,
                            ..p
                        };
                        put(&engine, &off).await;
                    }
                    continue;
                }
                let state = state_of(&p.state);
                {
                    let mut k = super::lock(&known);
                    let by_node = k.remote.entry(p.user.clone()).or_default();
                    if state == State::Offline {
                        by_node.remove(&p.node);
                    } else {
                        by_node.insert(p.node.clone(), p.clone());
                    }
                    // What the user's other nodes say still holds.
                    if state == State::Offline && !by_node.is_empty() {
                        continue;
                    }
                }
                to.do_send(Reported {
                    user: p.user,
                    state,
                    note: p.note,
                });
            }
            Ok::<_, async_nats::Error>(())
        };
        if let Err(e) = watched.await {
            tracing::warn!(error = %e, "the cluster's presence watcher stopped; watching again");
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_tell_users_and_nodes_apart() {
        assert_eq!(key("a.b", "c"), key("a.b", "c"));
        assert_ne!(key("a.b", "c"), key("a", "b.c"));
        assert!(key("bob", "node-1")
            .bytes()
            .all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(state_of("away"), State::Away);
        assert_eq!(state_of("nonsense"), State::Offline);
    }
}
