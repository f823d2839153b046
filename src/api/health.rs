//! `/healthz` (the process answers) and `/readyz` (storage and every
//! configured gateway are up).

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::error::ApiError;
use super::ApiState;

/// `GET /healthz`.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`.
pub async fn readyz(st: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    if *st.draining.borrow() {
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
        Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
    } else {
        Err(ApiError::unavailable(
            "not_ready",
            format!("not ready: {}", not_ready.join(", ")),
        ))
    }
}
