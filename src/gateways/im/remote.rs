//! The IM gateway in its own process (`switchboard gateway --medium im`):
//! IM clients connect to it — the WebSocket protocol of `GET /v1/ws` on its
//! `http.listen` — instead of to the node. It checks their tokens by asking
//! the node's broker over MIAP (`Identify`), tells the broker their
//! presence (`Presence`: it holds their sessions, so the broker routes
//! their IM here while they are online), originates what they send, and
//! delivers what the broker routes to them: into its own inbox (so a
//! reconnecting session gets what it missed) and onto their open sessions.
//! While a user has no session here, the broker routes their IM to the
//! node's own IM gateway — the home inbox.

use std::net::SocketAddr;

use actix::prelude::*;
use actix_web::{web, App, HttpServer};
use tokio::sync::watch;

use switchboard_actors::bus::{PresencePush, Reported};
use switchboard_actors::delivery::ImOfflineWait;
use switchboard_actors::presence::Presence;
use switchboard_core::protocol::clock::SharedClock;
use switchboard_core::store::Store;

use super::clients::{ImClients, Tokens};
use super::hub::{Hub, Receipts};
use super::ImGateway;
use super::ImMedium;
use crate::config::Config;
use crate::http::error::ApiError;

/// A running remote IM gateway's client side.
pub struct RemoteIm {
    /// Where its client API listens.
    pub addr: SocketAddr,
    /// The HTTP server (stop it at shutdown).
    pub server: actix_web::dev::ServerHandle,
    /// Set to close every session (1001) and refuse new messages.
    pub draining: watch::Sender<bool>,
}

/// Starts the IM medium, its gateway (made by `gateway` from the medium,
/// where receipts go and where the broker's presence frames go), presence
/// and the client API on `cfg.http.listen`.
///
/// # Errors
/// When the listen address cannot be bound.
pub fn start(
    cfg: &Config,
    store: &Store,
    clock: SharedClock,
    gateway: impl FnOnce(ImMedium, Receipts, Recipient<Reported>) -> ImGateway,
) -> anyhow::Result<RemoteIm> {
    let hub = Hub::new(store.clone(), None).remembering_senders();
    let (sessions, receipts) = (hub.sessions(), hub.receipts());
    let hub = hub.start();
    let push: Recipient<PresencePush> = hub.clone().recipient();
    let presence = Presence::new(clock, cfg.presence.idle_timeout_s * 1000, Some(push));
    // Whether a user is online is what this gateway's sessions say; a
    // message for one who is not is held in the inbox here, and reported
    // delivered when they connect (the broker routes them home meanwhile).
    let medium = ImMedium::new(
        store.clone(),
        None,
        sessions,
        presence.view(),
        ImOfflineWait::new(false),
    );
    // The gateway and presence tell each other: presence announces its
    // users' changes through the gateway; the gateway hands it the
    // broker's word on followed users.
    let presence_ctx = Context::<Presence>::new();
    let im = gateway(medium, receipts, presence_ctx.address().recipient());
    let presence = presence_ctx.run(presence.with_announce(im.clone().recipient()));
    let (draining, draining_rx) = watch::channel(false);
    let clients = ImClients::new(
        cfg,
        store.clone(),
        im,
        hub,
        presence,
        Tokens::Node,
        draining_rx,
    );
    let limit = clients.max_body_bytes;
    let data = web::Data::new(clients);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(limit))
            .service(crate::http::health::healthz)
            .service(web::scope("/v1").service(super::ws::websocket))
            .default_service(web::to(|| async {
                Err::<actix_web::HttpResponse, _>(ApiError::not_found(
                    "no such endpoint: a remote IM gateway serves GET /healthz and GET /v1/ws",
                ))
            }))
    });
    let (server, addr) =
        crate::http::run_on(server, &cfg.http.listener()?, cfg.shutdown.timeout_s)?;
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(RemoteIm {
        addr,
        server: handle,
        draining,
    })
}

impl RemoteIm {
    /// Closes every session politely and stops the client API.
    pub async fn stop(self) {
        let _ = self.draining.send(true);
        // Sessions see the switch and close with 1001.
        actix_rt::time::sleep(std::time::Duration::from_millis(200)).await;
        self.server.stop(true).await;
    }
}
