//! `/v1/admin/members`: remote members, their keys and revocation.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{delete, get, post, put, web, HttpResponse};
use serde::{Deserialize, Serialize};

use switchboard_core::protocol::{MediumKind, MemberId, MemberKeys, SecretKey};

use crate::api::auth::Admin;
use crate::api::ApiState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::time::rfc3339;

/// A member as the admin sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemberView {
    /// The member id.
    pub id: String,
    /// The medium its gateway serves (none for brokers and processors).
    pub medium: Option<MediumKind>,
    /// The current key's id.
    pub key_id: Option<u32>,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Whether it has a connection (or runs in this process).
    pub connected: bool,
    /// Whether its login was accepted.
    pub logged_in: bool,
    /// Whether its medium is up.
    pub healthy: bool,
    /// When it was last heard from (RFC 3339).
    pub last_seen: Option<String>,
}

/// Every member, and MIAP refusals by reason.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemberList {
    /// The members, by id.
    pub members: Vec<MemberView>,
    /// Refused frames and connections by reason since start.
    pub refusals: BTreeMap<String, u64>,
}

/// A member's key, shown once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemberKey {
    /// The member id.
    pub member: String,
    /// Its medium (a gateway).
    pub medium: Option<MediumKind>,
    /// Its kind (a processor).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processor: Option<String>,
    /// The key's id.
    pub key_id: u32,
    /// The key, hex.
    pub key: String,
    /// The broker it logs in to.
    pub broker: String,
}

/// Every known member, connected or not, with health and last seen.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 200, body = MemberList),
))]
#[get("/members")]
pub async fn list_members(st: web::Data<ApiState>, _: Admin) -> HttpResponse {
    let live = st.members.snapshot();
    let mut ids = st.directory.ring().ids();
    ids.sort();
    let list: Vec<_> = ids
        .iter()
        .map(|id| {
            let keys = st.directory.member(id);
            let conn = live.iter().find(|m| &m.id == id);
            MemberView {
                id: id.as_str().to_string(),
                medium: keys.as_ref().and_then(|k| k.medium),
                key_id: keys.as_ref().map(|k| k.current().0),
                revoked: keys.as_ref().is_some_and(|k| k.revoked),
                connected: conn.is_some(),
                logged_in: conn.is_some_and(|c| c.logged_in),
                healthy: conn.is_some_and(|c| c.healthy),
                last_seen: conn.map(|c| rfc3339(c.last_seen_ms)),
            }
        })
        .collect();
    let refusals = st
        .broker
        .refusals()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    HttpResponse::Ok().json(MemberList {
        members: list,
        refusals,
    })
}

/// `PUT /v1/admin/members/{id}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    /// The medium the member's gateway serves (a gateway).
    pub medium: Option<MediumKind>,
    /// What it converts: `sms`, `email` or `fax` (a processor).
    pub processor: Option<String>,
}

fn member_key(
    st: &ApiState,
    id: &str,
    medium: Option<MediumKind>,
    key_id: u32,
    key: &SecretKey,
) -> MemberKey {
    MemberKey {
        member: id.to_string(),
        medium,
        processor: st.directory.processor_kind(&MemberId::new(id)),
        key_id,
        key: key.to_hex(),
        broker: st.broker.id.as_str().to_string(),
    }
}

fn member_id(id: &str) -> Result<MemberId, ApiError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if !ok {
        return Err(ApiError::bad_request(
            "a member id is 1 to 64 of a-z 0-9 - _ .",
        ));
    }
    Ok(MemberId::new(id))
}

/// Creates a remote member — a gateway (`medium`) or a processor
/// (`processor`) — and its key, shown once.
#[utoipa::path(tag = "admin", security(("bearer" = [])), params(("id" = String, Path, pattern = r"^[a-z0-9._-]{1,64}$", description = "the member id")), responses(
    (status = 201, body = MemberKey),
    (status = 400, body = ErrorBody),
    (status = 409, description = "`exists`", body = ErrorBody),
))]
#[put("/members/{id}")]
pub async fn put_member(
    st: web::Data<ApiState>,
    _: Admin,
    id: web::Path<String>,
    body: web::Json<NewMember>,
) -> Result<HttpResponse, ApiError> {
    let member = member_id(&id)?;
    if st.directory.member(&member).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            format!("member {id} exists (rotate its key instead)"),
        ));
    }
    let (medium, processor) = match (body.medium, body.processor.as_deref()) {
        (Some(m), None) => (Some(m), None),
        (None, Some(k)) => {
            let spec = crate::processors::spec_of(k).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "\"processor\" must be one of {}",
                    crate::processors::KINDS.join(", ")
                ))
            })?;
            (None, Some((k.to_string(), spec)))
        }
        _ => {
            return Err(ApiError::bad_request(
                "give either \"medium\" (a gateway) or \"processor\" (a processor)",
            ))
        }
    };
    let keys = MemberKeys::generate(member.clone(), medium);
    let (key_id, key) = keys.current();
    let mut out = member_key(&st, &id, medium, key_id, key);
    if let Some((kind, spec)) = processor {
        st.directory.set_processor_kind(&member, &kind).await?;
        st.members.expect_processor(member, spec);
        out.processor = Some(kind);
    }
    st.directory.put_member(keys).await?;
    Ok(HttpResponse::Created().json(out))
}

/// Gives a member a new key, shown once; the old one is accepted for
/// `miap.key_grace_s`.
#[utoipa::path(tag = "admin", security(("bearer" = [])), params(("id" = String, Path, pattern = r"^[a-z0-9._-]{1,64}$", description = "the member id")), responses(
    (status = 200, body = MemberKey),
    (status = 400, body = ErrorBody),
    (status = 404, body = ErrorBody),
))]
#[post("/members/{id}/rotate")]
pub async fn rotate_member(
    st: web::Data<ApiState>,
    _: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let member = member_id(&id)?;
    let medium = st.directory.member(&member).and_then(|k| k.medium);
    match st
        .directory
        .rotate_member(&member, st.clock.now_ms())
        .await?
    {
        Some((key_id, key)) => {
            Ok(HttpResponse::Ok().json(member_key(&st, &id, medium, key_id, &key)))
        }
        None => Err(ApiError::not_found(format!("no member {id}"))),
    }
}

/// Revokes a member: its logins and frames are refused from now on and it
/// is off every route. The node's own members cannot be revoked.
#[utoipa::path(tag = "admin", security(("bearer" = [])), params(("id" = String, Path, pattern = r"^[a-z0-9._-]{1,64}$", description = "the member id")), responses(
    (status = 204, description = "revoked"),
    (status = 400, body = ErrorBody),
    (status = 404, body = ErrorBody),
    (status = 409, description = "`built_in`", body = ErrorBody),
))]
#[delete("/members/{id}")]
pub async fn revoke_member(
    st: web::Data<ApiState>,
    _: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let member = member_id(&id)?;
    if st.gateways.iter().any(|g| g == &*id) || id.starts_with("proc-") {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "built_in",
            format!("{id} is one of this node's own members"),
        ));
    }
    if st.directory.revoke_member(&member).await? {
        // Off every route at once; its frames are refused from now on.
        st.members.disconnect(&member);
        tracing::warn!(member = %member, "member revoked");
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found(format!("no member {id}")))
    }
}
