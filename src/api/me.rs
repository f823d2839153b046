//! `GET /v1/me`: who the caller is and whom they follow — what a client
//! (the web console) needs to draw a contact list. Contacts come with their
//! names, never their mechanisms.

use actix_web::{get, web, HttpResponse};
use serde::Serialize;

use super::auth::User;
use super::ApiState;
use crate::http::error::ErrorBody;

/// A contact as the caller is shown it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContactView {
    /// Their user id.
    pub user: String,
    /// Their display name, when they have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// The caller.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeView {
    /// The caller's user id.
    pub user: String,
    /// Their display name, when they have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The profile's contacts that exist and show the caller their
    /// presence, in the profile's order.
    pub contacts: Vec<ContactView>,
}

/// The caller's id, name and contacts.
#[utoipa::path(tag = "presence", security(("bearer" = [])), responses(
    (status = 200, body = MeView),
    (status = 401, body = ErrorBody),
))]
#[get("/me")]
pub async fn me(st: web::Data<ApiState>, user: User) -> HttpResponse {
    let profile = st.directory.profile(&user.0);
    let contacts = profile
        .as_ref()
        .map(|viewer| {
            viewer
                .contacts
                .iter()
                .filter_map(|c| st.directory.profile(c))
                .filter(|p| p.shows_presence_to(viewer))
                .map(|p| ContactView {
                    user: p.id.clone(),
                    display_name: p.display_name.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    HttpResponse::Ok().json(MeView {
        display_name: profile.and_then(|p| p.display_name.clone()),
        user: user.0,
        contacts,
    })
}
