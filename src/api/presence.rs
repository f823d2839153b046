//! Presence: `GET /v1/presence/{user}` (any caller) and `PUT /v1/presence`
//! (the caller's own state).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use switchboard_actors::delivery::Reach;
use switchboard_actors::presence::{SetPresence, State};

use super::auth::{Caller, User};
use super::error::ApiError;
use super::time::rfc3339;
use super::ApiState;

/// `PUT /v1/presence` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceRequest {
    state: State,
    note: Option<String>,
}

/// `GET /v1/presence/{user}`: state, note, since, and reachability per medium
/// of the user's mechanisms.
pub async fn get(
    st: web::Data<ApiState>,
    _: Caller,
    user: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let profile = st
        .directory
        .profile(&user)
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    let entry = st.presence_view.get(&user);
    let state = entry.as_ref().map_or(State::Offline, |e| e.state);
    let mut mediums = Map::new();
    for m in &profile.mechanisms {
        let v = match st.presence_view.reach(&user, m.medium) {
            Reach::Unknown => "reachable",
            _ => state.as_str(),
        };
        mediums.insert(m.medium.as_str().to_string(), json!(v));
    }
    let mut v = json!({
        "user": *user,
        "state": state,
        "since": entry.as_ref().map(|e| rfc3339(e.since_ms)),
        "mediums": Value::Object(mediums),
    });
    if let Some(n) = entry.and_then(|e| e.note) {
        v["note"] = json!(n);
    }
    Ok(HttpResponse::Ok().json(v))
}

/// `PUT /v1/presence`: sets the caller's state → 204.
pub async fn set(
    st: web::Data<ApiState>,
    user: User,
    req: web::Json<PresenceRequest>,
) -> Result<HttpResponse, ApiError> {
    let req = req.into_inner();
    if req
        .note
        .as_ref()
        .is_some_and(|n| n.len() > 200 || n.contains(['\r', '\n']))
    {
        return Err(ApiError::bad_request(
            "\"note\" must be one line of at most 200 bytes",
        ));
    }
    st.presence
        .send(SetPresence {
            user: user.0,
            state: req.state,
            note: req.note,
        })
        .await
        .map_err(|_| ApiError::unavailable("unavailable", "the node is shutting down"))?;
    Ok(HttpResponse::NoContent().finish())
}
