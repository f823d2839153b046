//! `/v1/admin/users`: profiles and their API tokens.

use actix_web::http::header::IF_NONE_MATCH;
use actix_web::http::StatusCode;
use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use switchboard_core::directory::Profile;

use crate::api::auth::Admin;
use crate::api::ApiState;
use crate::http::error::{ApiError, ErrorBody};

/// A page of users' profiles.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserList {
    /// The profiles, in id order.
    pub users: Vec<Profile>,
    /// Pass as `after` for the next page; null on the last one.
    pub next: Option<String>,
}

/// `GET /v1/admin/users` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserPage {
    /// The last id of the previous page.
    after: Option<String>,
    /// 1 to 10 000 (default 1 000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
}

/// A profile written; the token only when the user was created.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserWritten {
    /// The profile as stored.
    pub profile: Profile,
    /// The new user's API token, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// A user's new token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserToken {
    /// The user.
    pub user: String,
    /// The token, shown once.
    pub token: String,
}

/// Users' profiles in id order, a page at a time.
#[utoipa::path(tag = "admin", security(("bearer" = [])), params(UserPage), responses(
    (status = 200, body = UserList),
    (status = 400, body = ErrorBody),
))]
#[get("/users")]
pub async fn list_users(
    st: web::Data<ApiState>,
    _: Admin,
    q: web::Query<UserPage>,
) -> Result<HttpResponse, ApiError> {
    let UserPage { after, limit } = q.into_inner();
    let limit = crate::api::page_limit(limit, 1000, 10_000)?;
    let directory = st.directory.clone();
    let users = web::block(move || directory.profiles_page(after.as_deref(), limit)).await??;
    let next = (users.len() == limit)
        .then(|| users.last().map(|p| p.id.clone()))
        .flatten();
    Ok(HttpResponse::Ok().json(UserList { users, next }))
}

/// One user's profile.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 200, body = Profile),
    (status = 404, body = ErrorBody),
))]
#[get("/users/{id}")]
pub async fn get_user(
    st: web::Data<ApiState>,
    _: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let p = st
        .directory
        .profile(&id)
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    Ok(HttpResponse::Ok().json(&*p))
}

/// Creates (201, with the user's token, shown once) or replaces (200) a
/// profile. `If-None-Match: *` makes it create-only (409 when the user
/// exists).
#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(("If-None-Match" = Option<String>, Header, description = "`*`: create only")),
    responses(
        (status = 200, description = "replaced", body = UserWritten),
        (status = 201, description = "created, with the token", body = UserWritten),
        (status = 400, body = ErrorBody),
        (status = 409, description = "`exists`, `address_taken`", body = ErrorBody),
        (status = 422, description = "`invalid_profile`, naming the field", body = ErrorBody),
    ))]
#[put("/users/{id}")]
pub async fn put_user(
    st: web::Data<ApiState>,
    _: Admin,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Json<Profile>,
) -> Result<HttpResponse, ApiError> {
    let profile = body.into_inner();
    if profile.id != *id {
        return Err(ApiError::bad_request(format!(
            "the profile's id {:?} differs from the path's {:?}",
            profile.id, *id
        )));
    }
    let exists = st.directory.profile(&id).is_some();
    if exists && req.headers().get(IF_NONE_MATCH).is_some_and(|v| v == "*") {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            format!("user {:?} already exists", *id),
        ));
    }
    let token = st.directory.put_profile(profile.clone()).await?;
    Ok(match token {
        Some(t) => HttpResponse::Created().json(UserWritten {
            profile,
            token: Some(t),
        }),
        None => HttpResponse::Ok().json(UserWritten {
            profile,
            token: None,
        }),
    })
}

/// Removes a user.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 204, description = "removed"),
    (status = 404, body = ErrorBody),
))]
#[delete("/users/{id}")]
pub async fn delete_user(
    st: web::Data<ApiState>,
    _: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    st.directory.remove_user(&id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Gives a user a new token; the old one stops working.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 200, body = UserToken),
    (status = 404, body = ErrorBody),
))]
#[post("/users/{id}/token")]
pub async fn rotate_token(
    st: web::Data<ApiState>,
    _: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let token = st.directory.rotate_token(&id).await?;
    Ok(HttpResponse::Ok().json(UserToken {
        user: id.into_inner(),
        token,
    }))
}
