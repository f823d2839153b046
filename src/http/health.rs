//! `/healthz`: the process answers. Served by the node and by a remote IM
//! gateway alike (the node's `/readyz`, which knows its gateways, is in the
//! API).

use actix_web::{get, HttpResponse};
use serde::Serialize;

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
