//! `POST /v1/admin/token`: a new admin token, the old one no longer works.
//! The node writes it to `DATA/admin.token` (0600) and answers it once.

use actix_web::{post, web, HttpResponse};
use serde::Serialize;

use switchboard_core::directory::new_token;

use crate::api::auth::Admin;
use crate::api::ApiState;
use crate::http::error::{ApiError, ErrorBody};
use crate::secrets::{write_private, ADMIN_TOKEN_FILE};

/// The new admin token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminToken {
    /// The token, shown once.
    pub token: String,
    /// Where this node wrote it (`null` when it could not: the node's log
    /// says why; the token works either way).
    pub file: Option<String>,
}

/// Replaces the admin token (the one this request carries stops working).
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 200, body = AdminToken),
    (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody),
))]
#[post("/token")]
pub async fn rotate_admin_token(
    st: web::Data<ApiState>,
    _: Admin,
) -> Result<HttpResponse, ApiError> {
    let token = new_token();
    st.directory.set_admin_token(&token).await?;
    let path = st.data_dir.join(ADMIN_TOKEN_FILE);
    let file = match write_private(&path, &format!("{token}\n")) {
        Ok(()) => Some(path.display().to_string()),
        Err(e) => {
            tracing::error!(error = %e, "the new admin token could not be written to its file; it was answered to the caller only");
            None
        }
    };
    tracing::warn!(file = ?file, "the admin token was rotated; the previous one no longer works");
    Ok(HttpResponse::Ok().json(AdminToken { token, file }))
}
