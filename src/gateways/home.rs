//! Home nodes in a cluster (`CLUSTER.md`, behaviour 7): the email and fax
//! gateways of every node place each delivery by the recipient's
//! `home_node` ([`switchboard_core::cluster::home::place`]): to the home
//! node's gateway over NATS ([`forward::hand_to`], the subjects of
//! [`forward`]) while it is alive with the medium, else here — this node's
//! own connection, or its forwarding to any node that has the medium —
//! saying in the attempt why not the home node. A home node that never had
//! the delivery (gone between two heartbeats) hands it back here; one that
//! answered, or did not answer in time, may have delivered it, so nothing
//! else is tried (at most once).
//!
//! SMS is placed by its own gateway ([`super::sms::cluster`]): its outcome
//! comes later, in receipts.
//!
//! Owns: the placement. Must not touch: the mediums, the forwarding wire.

use std::time::Duration;

use switchboard_actors::medium::{Delivery, Elsewhere, NonDelivery, Placed, Placement};
use switchboard_core::cluster::home::{place, Place};
use switchboard_core::directory::Directory;
use switchboard_core::protocol::MediumKind;

use super::forward::{self, Seal};
use crate::cluster::Membership;

/// Places a gateway's deliveries by the recipients' home nodes.
pub struct HomePlacement {
    kind: MediumKind,
    cluster: Membership,
    seal: Seal,
    directory: Directory,
    timeout: Duration,
    /// Whether the gateway delivers on a connection of this node's (else it
    /// forwards to any node that has the medium, which says which).
    own: bool,
}

impl HomePlacement {
    /// For this node's `kind` gateway (`own`: on a connection of its own),
    /// a delivery handed to a home node waited for `timeout` at most.
    pub fn new(
        cluster: &Membership,
        seal: Seal,
        directory: Directory,
        kind: MediumKind,
        timeout: Duration,
        own: bool,
    ) -> Self {
        Self {
            kind,
            cluster: cluster.clone(),
            seal,
            directory,
            timeout,
            own,
        }
    }

    /// How a delivery made here is said, `why` not by the home node.
    fn here(&self, why: String) -> String {
        if self.own {
            format!("by node {}: {why}", self.cluster.engine.settings().node_id)
        } else {
            why
        }
    }
}

impl Placement for HomePlacement {
    fn place(&mut self, d: Delivery) -> Placed {
        let home = d
            .route
            .recipient_user
            .as_deref()
            .and_then(|u| self.directory.home_of(u))
            .map(|home| home.node);
        // A `redirect` rule's node comes first.
        let home = d.redirected_to().map(str::to_string).or(home);
        if home.is_none() {
            return Placed::Here(Box::new(d), None);
        }
        let me = self.cluster.engine.settings().node_id.clone();
        let live: Vec<String> = self
            .cluster
            .live_nodes()
            .into_iter()
            .map(|n| n.id)
            .collect();
        let serving = self.cluster.serving_nodes(self.kind.as_str());
        let node = match place(&me, home.as_deref(), self.kind.as_str(), &live, &serving) {
            Place::Here(why) => {
                let how = why.map(|w| self.here(w));
                return Placed::Here(Box::new(d), how);
            }
            Place::Home(node) => node,
        };
        let Ok(body) = serde_json::to_vec(&d) else {
            return Placed::Here(Box::new(d), None);
        };
        let (engine, seal, kind, timeout) = (
            self.cluster.engine.clone(),
            self.seal.clone(),
            self.kind,
            self.timeout,
        );
        let to = node.clone();
        // On the engine's runtime (its client), answered here.
        let asked = engine.clone().spawn(async move {
            forward::hand_to(&engine, &seal, &to, kind, &body, timeout).await
        });
        let back = self.here(format!("home node {node} did not take it"));
        Placed::Elsewhere(Box::pin(async move {
            match asked.await {
                Ok(Ok(done)) => {
                    Elsewhere::Done(done.map(|a| a.with_how(Some("the home node".into()))))
                }
                Ok(Err(e)) => Elsewhere::Back(Box::new(d), Some(format!("{back} ({e})"))),
                Err(_) => Elsewhere::Done(Err(NonDelivery("the cluster engine stopped".into()))),
            }
        }))
    }
}
