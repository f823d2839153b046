//! What the IM client API — WebSocket sessions, sending, reading — needs,
//! wherever it runs: on the node (tokens checked against its directory) or
//! in an IM gateway in another process (tokens checked by the node's broker
//! over MIAP, `Identify`).

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::http::StatusCode;
use tokio::sync::watch;

use dashmap::DashMap;
use switchboard_actors::bus::Subscribe;
use switchboard_actors::gateway::{IdentifyError, IdentifyToken, WatchUsers};
use switchboard_actors::presence::Presence;
use switchboard_core::directory::Directory;
use switchboard_core::store::Store;

use super::hub::Hub;
use super::ImGateway;
use crate::config::Config;
use crate::http::error::ApiError;

/// Who checks a client's token.
#[derive(Clone)]
pub enum Tokens {
    /// The node's own directory.
    Directory(Directory),
    /// The node, asked over the gateway's MIAP link.
    Node,
}

/// A user who must be served by another node ([`ImClients::served_here`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misdirected {
    /// The user, when this side knows who (a remote gateway is told only
    /// where).
    pub user: Option<String>,
    /// Their home node.
    pub node: String,
    /// Its HTTP API's `host:port`, while it is alive.
    pub http: Option<String>,
}

impl Misdirected {
    /// The same request (`scheme`, `path` and query) at the home node,
    /// while it is alive.
    pub fn url(&self, scheme: &str, path: &str) -> Option<String> {
        (self.http.as_ref()).map(|http| format!("{scheme}://{http}{path}"))
    }

    /// The API's answer to that request: `307 wrong_node` to the home node
    /// while it is alive, else `503 home_node_unavailable`.
    pub fn error(&self, scheme: &str, path: &str) -> ApiError {
        let node = &self.node;
        let user = self.user.as_deref().unwrap_or("the token's user");
        match self.url(scheme, path) {
            Some(url) => ApiError::new(
                StatusCode::TEMPORARY_REDIRECT,
                "wrong_node",
                format!("{user} is served by node {node} only: {url}"),
            )
            .with_location(url),
            None => ApiError::unavailable(
                "home_node_unavailable",
                format!("{user} is served by node {node} only, which is not alive"),
            ),
        }
    }
}

/// Why a token's user is not served here.
#[derive(Debug, Clone)]
pub enum Refused {
    /// The token cannot be checked now (503).
    Unchecked(ApiError),
    /// Its user must be served by another node.
    Elsewhere(Misdirected),
}

/// The IM client side of a node or of a remote IM gateway. Cheap to clone.
#[derive(Clone)]
pub struct ImClients {
    /// The store holding the IM inbox and the gateway's outbox.
    pub store: Store,
    /// The IM gateway that originates and delivers.
    pub gateway: ImGateway,
    /// The session hub.
    pub hub: Addr<Hub>,
    /// Presence of this side's sessions.
    pub presence: Addr<Presence>,
    /// Who checks tokens.
    pub tokens: Tokens,
    /// The contacts the node named with each user it identified (a remote
    /// gateway has no profiles of its own).
    contacts: Arc<DashMap<String, Vec<String>>>,
    /// Largest body or frame.
    pub max_body_bytes: usize,
    /// How long a submit waits for the broker's decision.
    pub submit_timeout: Duration,
    /// Default message lifetime (s).
    pub default_expires_in_s: u64,
    /// Longest message lifetime (s).
    pub max_expires_in_s: u64,
    /// Set when the process shuts down: sessions are closed (1001), new
    /// messages are refused (503).
    pub draining: watch::Receiver<bool>,
    /// This node's cluster (users whose domain requires their home node
    /// are sent there).
    pub cluster: Option<crate::cluster::Membership>,
}

impl ImClients {
    /// The client side over `gateway`, its `hub` and `presence`, with the
    /// limits of `cfg`.
    pub fn new(
        cfg: &Config,
        store: Store,
        gateway: ImGateway,
        hub: Addr<Hub>,
        presence: Addr<Presence>,
        tokens: Tokens,
        draining: watch::Receiver<bool>,
    ) -> Self {
        Self {
            store,
            gateway,
            hub,
            presence,
            tokens,
            contacts: Arc::default(),
            max_body_bytes: cfg.http.max_body_bytes,
            submit_timeout: Duration::from_secs(cfg.http.submit_timeout_s),
            default_expires_in_s: cfg.broker.default_expires_in_s,
            max_expires_in_s: cfg.broker.max_expires_in_s,
            draining,
            cluster: None,
        }
    }

    /// Sending users whose domain requires their home node there when that
    /// is not this node of `cluster`.
    pub fn with_cluster(mut self, cluster: Option<crate::cluster::Membership>) -> Self {
        self.cluster = cluster;
        self
    }

    /// Refuses `user` here when their domain requires another node
    /// (COMPLIANCE.md `require_redirect`).
    ///
    /// # Errors
    /// Where they must go instead.
    pub fn served_here(&self, user: &str) -> Result<(), Misdirected> {
        let (Tokens::Directory(d), Some(m)) = (&self.tokens, &self.cluster) else {
            return Ok(());
        };
        match m.serves_elsewhere(d, user) {
            None => Ok(()),
            Some(w) => Err(Misdirected {
                user: Some(user.to_string()),
                node: w.node,
                http: w.http,
            }),
        }
    }

    /// The user whose token this is, when they may be served here; `None`
    /// for an unknown token.
    ///
    /// # Errors
    /// [`Refused::Unchecked`] (503) when the node cannot be asked (a remote
    /// gateway without a link); [`Refused::Elsewhere`] when their domain
    /// requires another node (the node's word, or the broker's to a remote
    /// gateway).
    pub async fn authenticate(&self, token: &str) -> Result<Option<String>, Refused> {
        let user = match &self.tokens {
            Tokens::Directory(d) => d.authenticate(token),
            Tokens::Node => {
                let asked = self.gateway.send(IdentifyToken(token.to_string()));
                match actix_rt::time::timeout(self.submit_timeout, asked).await {
                    Ok(Ok(Ok(Some((user, contacts))))) => {
                        self.contacts.insert(user.clone(), contacts);
                        Some(user)
                    }
                    Ok(Ok(Ok(None))) => None,
                    Ok(Ok(Err(IdentifyError::ServedElsewhere { node, http }))) => {
                        return Err(Refused::Elsewhere(Misdirected {
                            user: None,
                            node,
                            http,
                        }))
                    }
                    Ok(Ok(Err(e))) => {
                        return Err(Refused::Unchecked(ApiError::unavailable(
                            "node_unreachable",
                            e.to_string(),
                        )))
                    }
                    Ok(Err(_)) | Err(_) => {
                        return Err(Refused::Unchecked(ApiError::unavailable(
                            "node_unreachable",
                            "the node did not answer in time",
                        )))
                    }
                }
            }
        };
        if let Some(u) = &user {
            self.served_here(u).map_err(Refused::Elsewhere)?;
        }
        Ok(user)
    }

    /// Whose `token` is, when the tokens are at hand (a node's directory);
    /// `None` on a remote gateway, which must ask ([`ImClients::authenticate`]).
    pub fn authenticate_here(&self, token: &str) -> Option<Option<String>> {
        match &self.tokens {
            Tokens::Directory(d) => Some(d.authenticate(token)),
            Tokens::Node => None,
        }
    }

    /// The users whose presence `user` follows from the start: their
    /// profile's contacts.
    pub fn contacts(&self, user: &str) -> Vec<String> {
        match &self.tokens {
            Tokens::Directory(d) => d
                .profile(user)
                .map(|p| p.contacts.clone())
                .unwrap_or_default(),
            Tokens::Node => self
                .contacts
                .get(user)
                .map(|c| c.clone())
                .unwrap_or_default(),
        }
    }

    /// `user` follows `users`' presence: those of them who show it to
    /// `user` ([`Profile::shows_presence_to`]); an unknown id and a user
    /// who does not are left out alike (nothing to tell them apart by, and
    /// nothing kept for an id that never existed). A remote gateway, which
    /// has no profiles, keeps the user's contacts (as the broker told them)
    /// and asks the broker to tell it theirs.
    ///
    /// [`Profile::shows_presence_to`]: switchboard_core::directory::Profile::shows_presence_to
    ///
    /// Answered with how many a remote gateway could not follow (it follows
    /// at most 100 000 users in all); those get no presence.
    pub async fn subscribe(&self, user: &str, mut users: Vec<String>) -> usize {
        match &self.tokens {
            Tokens::Directory(d) => {
                let viewer = d.profile(user);
                users.retain(|u| {
                    viewer
                        .as_ref()
                        .is_some_and(|v| d.profile(u).is_some_and(|p| p.shows_presence_to(v)))
                });
            }
            Tokens::Node => {
                let contacts = self.contacts(user);
                users.retain(|u| u == user || contacts.contains(u));
            }
        }
        if users.is_empty() {
            return 0;
        }
        let mut left = 0;
        if matches!(self.tokens, Tokens::Node) {
            left = self
                .gateway
                .send(WatchUsers(users.clone()))
                .await
                .unwrap_or(0);
        }
        self.presence.do_send(Subscribe {
            subscriber: user.to_string(),
            users,
        });
        left
    }
}
