//! Who is calling: a user (by API token) or the admin (by the admin token).
//! Tokens are random and stored hashed; they arrive as
//! `Authorization: Bearer <token>`.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};

use super::ApiState;
use crate::http::error::ApiError;

fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let h = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
    let v = h
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    v.strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("expected Authorization: Bearer <token>"))
}

fn state(req: &HttpRequest) -> &ApiState {
    req.app_data::<web::Data<ApiState>>()
        .expect("ApiState is registered on the app")
}

/// The calling user, by their API token.
#[derive(Debug, Clone)]
pub struct User(pub String);

/// The caller holds the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

/// A user or the admin.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A user.
    User(String),
    /// The admin.
    Admin,
}

fn caller(req: &HttpRequest) -> Result<Caller, ApiError> {
    let token = bearer(req)?;
    let st = state(req);
    if let Some(u) = st.directory.authenticate(token) {
        // A user whose domain requires another node is sent there.
        let scheme = req.connection_info().scheme().to_string();
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        st.clients
            .served_here(&u)
            .map_err(|m| m.error(&scheme, path))?;
        return Ok(Caller::User(u));
    }
    if st.directory.is_admin(token) {
        return Ok(Caller::Admin);
    }
    Err(ApiError::unauthorized("invalid token"))
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(caller(req))
    }
}

impl FromRequest for User {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match caller(req) {
            Ok(Caller::User(u)) => Ok(User(u)),
            Ok(Caller::Admin) => Err(ApiError::unauthorized(
                "this endpoint needs a user token, not the admin token",
            )),
            Err(e) => Err(e),
        })
    }
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match caller(req) {
            Ok(Caller::Admin) => Ok(Admin),
            Ok(Caller::User(_)) => Err(ApiError::new(
                actix_web::http::StatusCode::FORBIDDEN,
                "forbidden",
                "this endpoint needs the admin token",
            )),
            Err(e) => Err(e),
        })
    }
}
