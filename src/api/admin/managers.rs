//! `/v1/admin/delivery-managers`: the delivery managers, hot-swappable.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{delete, get, put, web, HttpResponse};
use serde::Serialize;

use switchboard_actors::delivery::{DeleteManager, DeliveryError, ListManagers, PutManager};
use switchboard_core::policy::DeliveryManager;

use super::gone;
use crate::api::auth::Admin;
use crate::api::ApiState;
use crate::http::error::{ApiError, ErrorBody};

fn delivery_error(e: DeliveryError) -> ApiError {
    match e {
        DeliveryError::Invalid(i) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_manager",
            i.to_string(),
        ),
        DeliveryError::IsDefault(_) => {
            ApiError::new(StatusCode::CONFLICT, "is_default", e.to_string())
        }
        DeliveryError::NotFound => ApiError::not_found("no such delivery manager"),
        DeliveryError::Store(s) => s.into(),
    }
}

/// Delivery managers by name.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ManagerList {
    /// Every manager.
    pub managers: BTreeMap<String, DeliveryManager>,
}

/// Every delivery manager.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 200, body = ManagerList),
))]
#[get("/delivery-managers")]
pub async fn list_managers(st: web::Data<ApiState>, _: Admin) -> Result<HttpResponse, ApiError> {
    let all = st.delivery.send(ListManagers).await.map_err(|_| gone())?;
    Ok(HttpResponse::Ok().json(ManagerList {
        managers: all.into_iter().collect(),
    }))
}

/// One delivery manager.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 200, body = DeliveryManager),
    (status = 404, body = ErrorBody),
))]
#[get("/delivery-managers/{name}")]
pub async fn get_manager(
    st: web::Data<ApiState>,
    _: Admin,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let all = st.delivery.send(ListManagers).await.map_err(|_| gone())?;
    let (_, m) = all
        .into_iter()
        .find(|(k, _)| *k == *name)
        .ok_or_else(|| ApiError::not_found("no such delivery manager"))?;
    Ok(HttpResponse::Ok().json(m))
}

/// Adds (201) or replaces (200) a delivery manager; new messages use it at
/// once, messages in flight keep theirs.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 200, description = "replaced", body = DeliveryManager),
    (status = 201, description = "added", body = DeliveryManager),
    (status = 400, body = ErrorBody),
    (status = 422, description = "`invalid_manager`", body = ErrorBody),
))]
#[put("/delivery-managers/{name}")]
pub async fn put_manager(
    st: web::Data<ApiState>,
    _: Admin,
    name: web::Path<String>,
    body: web::Json<DeliveryManager>,
) -> Result<HttpResponse, ApiError> {
    let manager = body.into_inner();
    let put = PutManager {
        name: name.clone(),
        manager: manager.clone(),
    };
    let new = st
        .delivery
        .send(put)
        .await
        .map_err(|_| gone())?
        .map_err(delivery_error)?;
    Ok(if new {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    }
    .json(manager))
}

/// Removes a delivery manager (not the default).
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 204, description = "removed"),
    (status = 404, body = ErrorBody),
    (status = 409, description = "`is_default`", body = ErrorBody),
))]
#[delete("/delivery-managers/{name}")]
pub async fn delete_manager(
    st: web::Data<ApiState>,
    _: Admin,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    st.delivery
        .send(DeleteManager(name.into_inner()))
        .await
        .map_err(|_| gone())?
        .map_err(delivery_error)?;
    Ok(HttpResponse::NoContent().finish())
}
