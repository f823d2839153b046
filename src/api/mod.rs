//! The HTTP API (actix-web), as in `docs/INTERFACES.md`: health, messages,
//! the IM inbox, and the admin endpoints. Every error has one JSON shape
//! ([`error::ApiError`]); bodies are limited (413).

pub mod admin;
pub mod auth;
pub mod error;
pub mod health;
pub mod messages;
pub mod metrics;
pub mod presence;
pub mod time;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{error::JsonPayloadError, web, App, HttpRequest, HttpServer};
use anyhow::Context as _;

use actix::Addr;
use switchboard_actors::broker::BrokerShared;
use switchboard_actors::delivery::DeliveryService;
use switchboard_actors::directory::Directory;
use switchboard_actors::members::MemberRegistry;
use switchboard_actors::presence::{Presence, PresenceView};
use switchboard_actors::protocol::clock::SharedClock;
use switchboard_actors::store::Store;

use crate::gateways::im::hub::Hub;
use crate::node::ImGateway;
use error::ApiError;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The gateways this node runs (readiness).
    pub gateways: Vec<String>,
    /// Profiles, tokens, member keys.
    pub directory: Directory,
    /// The store (reads).
    pub store: Store,
    /// The built-in IM gateway (API clients are IM clients).
    pub im: ImGateway,
    /// The IM session hub.
    pub hub: Addr<Hub>,
    /// Presence.
    pub presence: Addr<Presence>,
    /// Presence, read side.
    pub presence_view: PresenceView,
    /// Delivery managers.
    pub delivery: Addr<DeliveryService>,
    /// Connected members.
    pub members: MemberRegistry,
    /// The broker's shared state (refusal counts).
    pub broker: Arc<BrokerShared>,
    /// The clock.
    pub clock: SharedClock,
    /// Largest body.
    pub max_body_bytes: usize,
    /// How long a submit waits for the broker's decision.
    pub submit_timeout: Duration,
    /// Default message lifetime (s).
    pub default_expires_in_s: u64,
    /// Longest message lifetime (s).
    pub max_expires_in_s: u64,
    /// Set when the node shuts down: readiness fails, WebSocket sessions
    /// are closed (1001), new messages are refused (503).
    pub draining: tokio::sync::watch::Receiver<bool>,
}

fn json_error(err: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    let e = match &err {
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {limit} bytes"),
        ),
        JsonPayloadError::Deserialize(d) if d.is_data() => {
            ApiError::bad_request(format!("invalid request: {d}"))
        }
        JsonPayloadError::Deserialize(d) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("malformed JSON: {d}"),
        ),
        other => ApiError::bad_request(other.to_string()),
    };
    e.into()
}

fn query_error(err: actix_web::error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("invalid query: {err}")).into()
}

fn path_error(err: actix_web::error::PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("invalid path: {err}")).into()
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found("no such endpoint"))
}

/// Registers the routes on an app (also used by tests).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(metrics::metrics))
        .service(
            web::scope("/v1")
                .route("/messages", web::post().to(messages::send))
                .route("/messages/{txn}", web::get().to(messages::status))
                .route("/messages/{txn}/read", web::post().to(messages::read))
                .route("/inbox", web::get().to(messages::inbox))
                .route("/ws", web::get().to(crate::gateways::im::ws::ws))
                .route("/presence", web::put().to(presence::set))
                .route("/presence/{user}", web::get().to(presence::get))
                .service(
                    web::scope("/admin")
                        .route("/users", web::get().to(admin::list_users))
                        .route("/users/{id}", web::get().to(admin::get_user))
                        .route("/users/{id}", web::put().to(admin::put_user))
                        .route("/users/{id}", web::delete().to(admin::delete_user))
                        .route("/users/{id}/token", web::post().to(admin::rotate_token))
                        .route("/members", web::get().to(admin::members))
                        .route("/members/{id}", web::put().to(admin::put_member))
                        .route("/members/{id}", web::delete().to(admin::revoke_member))
                        .route("/members/{id}/rotate", web::post().to(admin::rotate_member))
                        .route("/delivery-managers", web::get().to(admin::list_managers))
                        .route(
                            "/delivery-managers/{name}",
                            web::get().to(admin::get_manager),
                        )
                        .route(
                            "/delivery-managers/{name}",
                            web::put().to(admin::put_manager),
                        )
                        .route(
                            "/delivery-managers/{name}",
                            web::delete().to(admin::delete_manager),
                        )
                        .route("/transactions", web::get().to(admin::transactions))
                        .route("/accounting", web::get().to(admin::accounting)),
                ),
        );
}

/// Binds the HTTP server on `listen` (port 0 picks a free port).
///
/// # Errors
/// When the address cannot be bound.
pub fn serve(
    state: ApiState,
    listen: &str,
    shutdown_timeout_s: u64,
) -> anyhow::Result<(actix_web::dev::Server, SocketAddr)> {
    let limit = state.max_body_bytes;
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(limit)
                    .content_type_required(false)
                    .error_handler(json_error),
            )
            .app_data(web::PayloadConfig::new(limit))
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .app_data(web::PathConfig::default().error_handler(path_error))
            .configure(routes)
            .default_service(web::to(not_found))
    })
    .workers(2)
    // Small frames (WebSocket pushes, receipts) go out at once, not after
    // the peer's delayed ACK (40 ms a round trip under Nagle).
    .on_connect(|conn, _| {
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
        }
    })
    .disable_signals()
    .shutdown_timeout(shutdown_timeout_s)
    .bind(listen)
    .with_context(|| format!("binding the HTTP API to {listen}"))?;
    let addr = *server
        .addrs()
        .first()
        .context("the HTTP server bound no address")?;
    Ok((server.run(), addr))
}
