//! The HTTP API (actix-web), as in `docs/INTERFACES.md`: health, messages,
//! the IM inbox, and the admin endpoints. Every error has one JSON shape
//! ([`crate::http::error::ApiError`]); bodies are limited (413).
//!
//! Owns: the HTTP surface and its state ([`ApiState`]). Must not touch: the
//! node's assembly (it is given an `ApiState`), the actors' insides (it sends
//! them messages).

pub mod admin;
pub mod auth;
pub mod health;
pub mod me;
pub mod messages;
pub mod metrics;
pub mod openapi;
pub mod presence;

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::dev::Service as _;
use actix_web::http::StatusCode;
use actix_web::{error::JsonPayloadError, web, App, HttpRequest, HttpServer};
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_actix_web::{scope, AppExt as _};

use actix::Addr;
use switchboard_actors::broker::BrokerShared;
use switchboard_actors::delivery::DeliveryService;
use switchboard_actors::presence::PresenceView;
use switchboard_actors::registry::MemberRegistry;
use switchboard_core::directory::Directory;
use switchboard_core::protocol::clock::SharedClock;
use switchboard_core::store::Store;

use crate::gateways::im::clients::ImClients;
use crate::http::error::ApiError;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The gateways this node runs (readiness).
    pub gateways: Vec<String>,
    /// Profiles, tokens, member keys.
    pub directory: Directory,
    /// The store (reads).
    pub store: Store,
    /// The IM client side (API clients are IM clients): the built-in IM
    /// gateway, its session hub, presence, limits, the draining switch.
    pub clients: ImClients,
    /// Presence, read side.
    pub presence_view: PresenceView,
    /// Delivery managers.
    pub delivery: Addr<DeliveryService>,
    /// Connected members.
    pub members: MemberRegistry,
    /// The broker's shared state (refusal counts).
    pub broker: Arc<BrokerShared>,
    /// The compliance archive's files, with `archive.enabled`.
    pub archive: Option<crate::archive::Paths>,
    /// The archive member, to purge through it while it runs.
    pub archiver: Option<actix::Recipient<switchboard_actors::archive::PurgeArchive>>,
    /// The broker's shards (a reviewer's decision goes to the owner).
    pub shards: switchboard_actors::bus::BrokerHandle,
    /// The clock.
    pub clock: SharedClock,
    /// This node's membership of its cluster (cluster mode).
    pub cluster: Option<crate::cluster::Membership>,
    /// The data directory (where the admin token's file is).
    pub data_dir: std::path::PathBuf,
}

/// A page size from a query: `given`, else `default`; 400 outside 1..=`max`.
///
/// # Errors
/// [`ApiError`] `bad_request` naming the range.
pub fn page_limit(given: Option<usize>, default: usize, max: usize) -> Result<usize, ApiError> {
    let limit = given.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request(format!(
            "\"limit\" must be between 1 and {max}"
        )))
    }
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

/// No route matched: 405 with `Allow` when the path exists with other
/// methods, else 404.
async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    let allowed = openapi::methods_of(req.path());
    if allowed.is_empty() {
        return Err(ApiError::not_found("no such endpoint"));
    }
    let allow = allowed.join(", ");
    Ok(actix_web::HttpResponse::MethodNotAllowed()
        .insert_header((actix_web::http::header::ALLOW, allow.clone()))
        .json(crate::http::error::ErrorBody {
            error: crate::http::error::ErrorDetail {
                code: "method_not_allowed".into(),
                message: format!("{} is not allowed here; allowed: {allow}", req.method()),
            },
        }))
}

/// Registers every endpoint; the OpenAPI document is collected from the
/// same calls (each handler carries its `#[utoipa::path]`).
pub fn routes(cfg: &mut ServiceConfig<'_>) {
    cfg.service(crate::http::health::healthz)
        .service(health::readyz)
        .service(metrics::scrape)
        .service(openapi::document)
        .service(
            scope("/v1")
                .service(messages::send_message)
                .service(messages::sent_messages)
                .service(me::me)
                .service(messages::message_status)
                .service(messages::mark_message_read)
                .service(messages::get_inbox)
                .service(crate::gateways::im::ws::websocket)
                .service(presence::set_presence)
                .service(presence::get_presence)
                .service(
                    scope("/admin")
                        .service(admin::users::list_users)
                        .service(admin::users::get_user)
                        .service(admin::users::put_user)
                        .service(admin::users::delete_user)
                        .service(admin::users::rotate_token)
                        .service(admin::token::rotate_admin_token)
                        .service(admin::members::list_members)
                        .service(admin::members::put_member)
                        .service(admin::members::revoke_member)
                        .service(admin::members::rotate_member)
                        .service(admin::managers::list_managers)
                        .service(admin::managers::get_manager)
                        .service(admin::managers::put_manager)
                        .service(admin::managers::delete_manager)
                        .service(admin::records::transactions)
                        .service(admin::records::accounting)
                        .service(admin::cluster::cluster_status)
                        .service(admin::policy::list_domains)
                        .service(admin::policy::get_domain)
                        .service(admin::policy::put_domain)
                        .service(admin::policy::delete_domain)
                        .service(admin::policy::list_groups)
                        .service(admin::policy::get_group)
                        .service(admin::policy::put_group)
                        .service(admin::policy::delete_group)
                        .service(admin::policy::list_rules)
                        .service(admin::policy::get_rule)
                        .service(admin::policy::put_rule)
                        .service(admin::policy::delete_rule)
                        .service(admin::policy::test_policy)
                        .service(admin::quarantine::list_held)
                        .service(admin::quarantine::get_held)
                        .service(admin::quarantine::release_held)
                        .service(admin::quarantine::reject_held)
                        .service(admin::archive::search_archive)
                        .service(admin::archive::verify_archive)
                        .service(admin::archive::purge_archive),
                ),
        );
}

/// Binds the HTTP server on `listen` (port 0 picks a free port).
///
/// # Errors
/// When the address cannot be bound.
pub fn serve(
    state: ApiState,
    listen: &crate::http::Listener,
    shutdown_timeout_s: u64,
) -> anyhow::Result<(actix_web::dev::Server, SocketAddr)> {
    let limit = state.clients.max_body_bytes;
    let clients = web::Data::new(state.clients.clone());
    let store = state.store.clone();
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        let store = store.clone();
        App::new()
            .into_utoipa_app()
            .app_data(data.clone())
            .app_data(clients.clone())
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
            .into_app()
            .configure(crate::console::routes)
            .wrap_fn(move |req, srv| {
                let answer = srv.call(req);
                let store = store.clone();
                async move {
                    let answer = answer.await?;
                    let error =
                        answer.status().is_client_error() || answer.status().is_server_error();
                    crate::http::when_durable(&store, answer, error).await
                }
            })
    });
    crate::http::run_on(server, listen, shutdown_timeout_s)
}
