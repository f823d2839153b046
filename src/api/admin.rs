//! Admin endpoints (admin token): users, members, transactions, accounting.

use actix_web::http::header::IF_NONE_MATCH;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use switchboard_actors::delivery::{
    DeleteManager, DeliveryError, DeliveryManager, ListManagers, PutManager,
};
use switchboard_actors::directory::Profile;
use switchboard_actors::protocol::{MediumKind, MemberId, MemberKeys, SecretKey};
use switchboard_actors::store::TxnStatus;

use super::auth::Admin;
use super::error::ApiError;
use super::messages::txn_json;
use super::time::{parse_time, rfc3339};
use super::ApiState;
use actix_web::http::StatusCode;

/// `GET /v1/admin/users`.
pub async fn list_users(st: web::Data<ApiState>, _: Admin) -> HttpResponse {
    let users: Vec<Profile> = st
        .directory
        .profiles()
        .iter()
        .map(|p| (**p).clone())
        .collect();
    HttpResponse::Ok().json(json!({ "users": users }))
}

/// `GET /v1/admin/users/{id}`.
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

/// `PUT /v1/admin/users/{id}`: creates (201, with the user's token, shown
/// once) or replaces (200) a profile. `If-None-Match: *` makes it create-only
/// (409 when the user exists).
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
        Some(t) => HttpResponse::Created().json(json!({ "profile": profile, "token": t })),
        None => HttpResponse::Ok().json(json!({ "profile": profile })),
    })
}

/// `DELETE /v1/admin/users/{id}`.
pub async fn delete_user(
    st: web::Data<ApiState>,
    _: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    st.directory.remove_user(&id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/admin/users/{id}/token`: a new token; the old one stops working.
pub async fn rotate_token(
    st: web::Data<ApiState>,
    _: Admin,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let token = st.directory.rotate_token(&id).await?;
    Ok(HttpResponse::Ok().json(json!({ "user": *id, "token": token })))
}

/// `GET /v1/admin/members`: every known member, connected or not.
pub async fn members(st: web::Data<ApiState>, _: Admin) -> HttpResponse {
    let live = st.members.snapshot();
    let mut ids = st.directory.ring().ids();
    ids.sort();
    let list: Vec<_> = ids
        .iter()
        .map(|id| {
            let keys = st.directory.member(id);
            let conn = live.iter().find(|m| &m.id == id);
            json!({
                "id": id.as_str(),
                "medium": keys.as_ref().and_then(|k| k.medium),
                "key_id": keys.as_ref().map(|k| k.current().0),
                "revoked": keys.as_ref().is_some_and(|k| k.revoked),
                "connected": conn.is_some(),
                "logged_in": conn.is_some_and(|c| c.logged_in),
                "healthy": conn.is_some_and(|c| c.healthy),
                "last_seen": conn.map(|c| rfc3339(c.last_seen_ms)),
            })
        })
        .collect();
    let refusals: serde_json::Map<String, serde_json::Value> = st
        .broker
        .refusals()
        .into_iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    HttpResponse::Ok().json(json!({ "members": list, "refusals": refusals }))
}

/// `PUT /v1/admin/members/{id}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    /// The medium the member's gateway serves.
    pub medium: MediumKind,
}

fn key_json(
    st: &ApiState,
    id: &str,
    medium: Option<MediumKind>,
    key_id: u32,
    key: &SecretKey,
) -> serde_json::Value {
    json!({
        "member": id,
        "medium": medium,
        "key_id": key_id,
        "key": key.to_hex(),
        "broker": st.broker.id.as_str(),
    })
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

/// `PUT /v1/admin/members/{id}` `{"medium"}`: creates a remote gateway
/// member and its key, shown once (201); 409 when it exists.
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
    let keys = MemberKeys::generate(member, Some(body.medium));
    let (key_id, key) = keys.current();
    let out = key_json(&st, &id, Some(body.medium), key_id, key);
    st.directory.put_member(keys).await?;
    Ok(HttpResponse::Created().json(out))
}

/// `POST /v1/admin/members/{id}/rotate`: a new key, shown once; the old one
/// is accepted for `miap.key_grace_s`.
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
            Ok(HttpResponse::Ok().json(key_json(&st, &id, medium, key_id, &key)))
        }
        None => Err(ApiError::not_found(format!("no member {id}"))),
    }
}

/// `DELETE /v1/admin/members/{id}`: revokes the member (204); its logins
/// and frames are refused from now on. The node's own members cannot be
/// revoked (409).
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

/// `GET /v1/admin/transactions` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnQuery {
    status: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/admin/transactions?status=…&limit=…`, newest first.
pub async fn transactions(
    st: web::Data<ApiState>,
    _: Admin,
    q: web::Query<TxnQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    if let Some(s) = &q.status {
        if !TxnStatus::NAMES.contains(&s.as_str()) {
            return Err(ApiError::bad_request(format!(
                "\"status\" must be one of {}",
                TxnStatus::NAMES.join(", ")
            )));
        }
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let store = st.store.clone();
    let recs = web::block(move || store.txns(q.status.as_deref(), limit)).await??;
    Ok(HttpResponse::Ok()
        .json(json!({ "transactions": recs.iter().map(txn_json).collect::<Vec<_>>() })))
}

/// `GET /v1/admin/accounting` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountingQuery {
    from: Option<String>,
    to: Option<String>,
    user: Option<String>,
}

/// `GET /v1/admin/accounting?from=…&to=…&user=…` (times: RFC 3339, a date,
/// or milliseconds; `to` is exclusive).
pub async fn accounting(
    st: web::Data<ApiState>,
    _: Admin,
    req: HttpRequest,
    q: web::Query<AccountingQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let time = |name: &str, v: &Option<String>, default: u64| match v {
        None => Ok(default),
        Some(s) => parse_time(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "\"{name}\" must be RFC 3339, YYYY-MM-DD or milliseconds"
            ))
        }),
    };
    let from = time("from", &q.from, 0)?;
    let to = time("to", &q.to, u64::MAX)?;
    st.store.writer().barrier().await?;
    let store = st.store.clone();
    let recs = web::block(move || store.accounting(from, to)).await??;
    let records: Vec<_> = recs
        .iter()
        .filter(|r| {
            q.user
                .as_ref()
                .is_none_or(|u| &r.sender == u || &r.recipient == u)
        })
        .map(|r| {
            json!({
                "txn": r.txn.to_string(),
                "sender": r.sender,
                "recipient": r.recipient,
                "medium": r.medium,
                "gateway": r.gateway.as_str(),
                "bytes": r.bytes,
                "outcome": r.outcome,
                "attempts": r.attempts,
                "at": rfc3339(r.at_ms),
            })
        })
        .collect::<Vec<Value>>();
    let wants_csv = req
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/csv"));
    if wants_csv {
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .body(accounting_csv(&records)));
    }
    Ok(HttpResponse::Ok().json(json!({ "records": records })))
}

/// The columns of the accounting CSV, in order.
const CSV_COLUMNS: [&str; 9] = [
    "txn",
    "sender",
    "recipient",
    "medium",
    "gateway",
    "bytes",
    "outcome",
    "attempts",
    "at",
];

/// RFC 4180: a header line, then one line per record; fields with a comma,
/// quote or line break are quoted, quotes doubled.
fn accounting_csv(records: &[Value]) -> String {
    let field = |v: &Value| {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s
        }
    };
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    for r in records {
        let line: Vec<String> = CSV_COLUMNS.iter().map(|c| field(&r[*c])).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

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

fn gone() -> ApiError {
    ApiError::unavailable("unavailable", "the node is shutting down")
}

/// `GET /v1/admin/delivery-managers`.
pub async fn list_managers(st: web::Data<ApiState>, _: Admin) -> Result<HttpResponse, ApiError> {
    let all = st.delivery.send(ListManagers).await.map_err(|_| gone())?;
    let map: serde_json::Map<String, serde_json::Value> = all
        .into_iter()
        .map(|(k, v)| (k, serde_json::to_value(v).unwrap_or_default()))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "managers": map })))
}

/// `GET /v1/admin/delivery-managers/{name}`.
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

/// `PUT /v1/admin/delivery-managers/{name}`: adds (201) or replaces (200) a
/// manager; new messages use it at once, messages in flight keep theirs.
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

/// `DELETE /v1/admin/delivery-managers/{name}` → 204 (409 for the default).
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
