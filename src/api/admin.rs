//! Admin endpoints (admin token): users, members, transactions, accounting.

use actix_web::http::header::IF_NONE_MATCH;
use std::collections::BTreeMap;

use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use switchboard_actors::delivery::{DeleteManager, DeliveryError, ListManagers, PutManager};
use switchboard_core::directory::Profile;
use switchboard_core::policy::DeliveryManager;
use switchboard_core::protocol::{MediumKind, MemberId, MemberKeys, SecretKey};
use switchboard_core::store::TxnStatus;

use super::auth::Admin;
use super::messages::{txn_view, TxnView};
use super::ApiState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::time::{parse_time, rfc3339};
use actix_web::http::StatusCode;

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
    let limit = limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request(
            "\"limit\" must be between 1 and 10000",
        ));
    }
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

/// `GET /v1/admin/transactions` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TxnQuery {
    /// Only transactions in this status.
    #[param(schema_with = status_schema)]
    status: Option<String>,
    /// At most this many, 1 to 1000 (default 100).
    limit: Option<usize>,
}

/// A transaction status name, as an enumeration.
pub fn status_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(TxnStatus::NAMES))
        .build()
}

/// Transactions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TxnList {
    /// Newest first.
    pub transactions: Vec<TxnView>,
}

/// Transactions, newest first, optionally by status.
#[utoipa::path(tag = "admin", security(("bearer" = [])), params(TxnQuery), responses(
    (status = 200, body = TxnList),
    (status = 400, body = ErrorBody),
))]
#[get("/transactions")]
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
    Ok(HttpResponse::Ok().json(TxnList {
        transactions: recs.iter().map(txn_view).collect(),
    }))
}

/// `GET /v1/admin/accounting` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccountingQuery {
    /// From (inclusive): RFC 3339, `YYYY-MM-DD` or milliseconds.
    from: Option<String>,
    /// To (exclusive): RFC 3339, `YYYY-MM-DD` or milliseconds.
    to: Option<String>,
    /// Only records this user sent or received.
    user: Option<String>,
    /// Only records of this medium.
    medium: Option<MediumKind>,
}

/// One final outcome of a transaction.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountingView {
    /// The transaction.
    pub txn: String,
    /// The sender (user id or address).
    pub sender: String,
    /// The recipient (user id or address).
    pub recipient: String,
    /// The mechanism used.
    pub medium: MediumKind,
    /// The destination gateway.
    pub gateway: String,
    /// Content length in bytes.
    pub bytes: u64,
    /// `delivered`, `read`, `undeliverable`, `expired`, …
    pub outcome: String,
    /// Attempts made.
    pub attempts: u32,
    /// When (RFC 3339).
    pub at: String,
}

/// Accounting records.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountingList {
    /// Oldest first.
    pub records: Vec<AccountingView>,
}

/// Accounting: one record per final outcome, by user, medium and period; CSV
/// (RFC 4180) when asked with `Accept: text/csv`.
#[utoipa::path(tag = "admin", security(("bearer" = [])), params(AccountingQuery), responses(
    (status = 200, content(
        (AccountingList = "application/json"),
        (String = "text/csv", example = "txn,sender,recipient,medium,gateway,bytes,outcome,attempts,at"),
    )),
    (status = 400, body = ErrorBody),
))]
#[get("/accounting")]
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
                && q.medium.is_none_or(|m| r.medium == m)
        })
        .map(|r| AccountingView {
            txn: r.txn.to_string(),
            sender: r.sender.clone(),
            recipient: r.recipient.clone(),
            medium: r.medium,
            gateway: r.gateway.as_str().to_string(),
            bytes: r.bytes,
            outcome: r.outcome.clone(),
            attempts: r.attempts,
            at: rfc3339(r.at_ms),
        })
        .collect::<Vec<_>>();
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
    Ok(HttpResponse::Ok().json(AccountingList { records }))
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
fn accounting_csv(records: &[AccountingView]) -> String {
    use serde_json::Value;
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
        let r = serde_json::to_value(r).unwrap_or_default();
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
