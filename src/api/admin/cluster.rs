//! `/v1/admin/cluster`: the cluster's nodes and JetStream's streams, as
//! `switchboard cluster status` prints them.

use actix_web::{get, web, HttpResponse};
use switchboard_core::cluster::status::Status;

use crate::api::auth::Admin;
use crate::api::ApiState;
use crate::http::error::{ApiError, ErrorBody};

/// The cluster's nodes (alive by their heartbeats, open transactions) and
/// JetStream's servers and streams. 404 `not_clustered` on a single node.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 200, body = Status),
    (status = 404, description = "`not_clustered`: this node runs alone", body = ErrorBody),
    (status = 503, description = "`cluster_unavailable`: JetStream did not answer", body = ErrorBody),
))]
#[get("/cluster")]
pub async fn cluster_status(st: web::Data<ApiState>, _: Admin) -> Result<HttpResponse, ApiError> {
    let Some(m) = &st.cluster else {
        return Err(ApiError::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "not_clustered",
            "this node runs alone (cluster.enabled = false)",
        ));
    };
    let status = m
        .status(st.clock.now_ms())
        .await
        .map_err(|e| ApiError::unavailable("cluster_unavailable", e.to_string()))?;
    Ok(HttpResponse::Ok().json(status))
}
