//! `/healthz` (the process answers) and `/readyz` (storage and every
//! configured gateway are up).

use actix_web::{get, web, HttpResponse};
use serde::Serialize;

use super::error::{ApiError, ErrorBody};
use super::ApiState;

/// A health answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    #[schema(example = "ready")]
    pub status: &'static str,
}

/// The process answers. No token needed.
#[utoipa::path(tag = "health", responses((status = 200, body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Storage and every configured gateway are up, and the node is not
/// shutting down. No token needed.
#[utoipa::path(tag = "health", responses(
    (status = 200, body = Health),
    (status = 503, description = "`not_ready` (naming what is down) or `shutting_down`", body = ErrorBody),
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
