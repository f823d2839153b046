//! `/readyz`: storage and every configured gateway are up (`/healthz` is
//! [`crate::http::health`]).

use super::ApiState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::health::Health;
use actix_web::{get, web, HttpResponse};

/// Storage and every configured gateway are up, and the node is not
/// shutting down. No token needed.
#[utoipa::path(tag = "health", responses(
    (status = 200, body = Health),
    (status = 503, description = "`not_ready` (naming what is down: storage, a gateway, in a cluster NATS or the JetStream quorum) or `shutting_down`", body = ErrorBody),
))]
#[get("/readyz")]
pub async fn readyz(st: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    if *st.clients.draining.borrow() {
        return Err(ApiError::unavailable(
            "shutting_down",
            "the node is shutting down",
        ));
    }
    let mut not_ready = Vec::new();
    if !st.store.healthy() {
        not_ready.push("storage".to_string());
    }
    if let Some(why) = st.store.unavailable() {
        not_ready.push(why);
    }
    if let Some(m) = &st.cluster {
        if !m.engine.connected() {
            not_ready.push("no connection to NATS".to_string());
        }
    }
    let live = st.members.snapshot();
    for id in &st.gateways {
        let ok = live
            .iter()
            .any(|m| m.id.as_str() == *id && m.logged_in && m.healthy);
        if !ok {
            not_ready.push(format!("gateway {id}"));
        }
    }
    if not_ready.is_empty() {
        Ok(HttpResponse::Ok().json(Health { status: "ready" }))
    } else {
        Err(ApiError::unavailable(
            "not_ready",
            format!("not ready: {}", not_ready.join(", ")),
        ))
    }
}
