//! Presence: `GET /v1/presence/{user}` (who may see it) and `PUT /v1/presence`
//! (the caller's own state).

use std::collections::BTreeMap;

use actix_web::{get, put, web, HttpResponse};
use serde::{Deserialize, Serialize};

use switchboard_actors::bus::State;
use switchboard_actors::presence::SetPresence;
use switchboard_core::policy::Reach;

use super::auth::{Caller, User};
use super::ApiState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::time::rfc3339;

/// `PUT /v1/presence` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresenceRequest {
    /// The new state.
    state: State,
    /// One line of at most 200 bytes.
    note: Option<String>,
}

/// A user's presence.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PresenceAnswer {
    /// The user.
    pub user: String,
    /// Their state.
    pub state: State,
    /// Since when (RFC 3339); null when never seen.
    pub since: Option<String>,
    /// Reachability per medium of the user's mechanisms: a presence state,
    /// or for mediums without presence `reachable` (`unavailable` on a
    /// single node while no gateway of it is up).
    pub mediums: BTreeMap<String, String>,
    /// Their note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A user's state, note, since when, and reachability per medium of their
/// mechanisms: to the admin, and to the users the user shows it to (their
/// contacts either way, everyone if they share it; `Profile::shows_presence_to`).
/// Anyone else gets what an unknown user gets, a 404.
#[utoipa::path(tag = "presence", security(("bearer" = [])), responses(
    (status = 200, body = PresenceAnswer),
    (status = 404, description = "no such user, or not one who shows the caller their presence", body = ErrorBody),
))]
#[get("/presence/{user}")]
pub async fn get_presence(
    st: web::Data<ApiState>,
    caller: Caller,
    user: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let profile = st
        .directory
        .profile(&user)
        .filter(|p| match &caller {
            Caller::Admin => true,
            Caller::User(me) => st
                .directory
                .profile(me)
                .is_some_and(|viewer| p.shows_presence_to(&viewer)),
        })
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    let entry = st.presence_view.get(&user);
    let state = entry.as_ref().map_or(State::Offline, |e| e.state);
    let mut mediums = BTreeMap::new();
    for m in &profile.mechanisms {
        let v = match st.presence_view.reach(&user, m.medium) {
            // On a single node the gateways are all here: a medium none of
            // whose gateways is up now reaches nobody. In a cluster another
            // node may serve it.
            Reach::Unknown
                if st.cluster.is_none() && st.members.live_gateway(m.medium).is_none() =>
            {
                "unavailable"
            }
            Reach::Unknown => "reachable",
            _ => state.as_str(),
        };
        mediums.insert(m.medium.as_str().to_string(), v.to_string());
    }
    Ok(HttpResponse::Ok().json(PresenceAnswer {
        user: user.into_inner(),
        state,
        since: entry.as_ref().map(|e| rfc3339(e.since_ms)),
        mediums,
        note: entry.and_then(|e| e.note),
    }))
}

/// Sets the caller's own state.
#[utoipa::path(tag = "presence", security(("bearer" = [])), responses(
    (status = 204, description = "set"),
    (status = 400, body = ErrorBody),
))]
#[put("/presence")]
pub async fn set_presence(
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
    st.clients
        .presence
        .send(SetPresence {
            user: user.0,
            state: req.state,
            note: req.note,
        })
        .await
        .map_err(|_| ApiError::unavailable("unavailable", "the node is shutting down"))?;
    Ok(HttpResponse::NoContent().finish())
}
