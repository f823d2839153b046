//! Messages: send (`POST /v1/messages`), status (`GET /v1/messages/{txn}`),
//! the caller's sent messages (`GET /v1/messages`), the caller's IM inbox (`GET /v1/inbox`), and read receipts
//! (`POST /v1/messages/{txn}/read`).

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use switchboard_core::protocol::MediumKind;
use switchboard_core::store::TxnRecord;

use super::auth::{Caller, User};
use super::ApiState;
use crate::gateways::im::send::{
    check_idempotency_key, mark_read, parse_txn, send_as, SendAccepted, SendRequest,
};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::time::rfc3339;

/// One delivery attempt.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The mechanism.
    pub mechanism: MediumKind,
    /// The address on it.
    pub address: String,
    /// The destination gateway.
    pub gateway: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// `delivered`, `read`, `non_delivery`, `timeout`, `expired`, `blocked`,
    /// or null while open.
    pub outcome: Option<String>,
    /// Why it failed; on a delivered attempt, how it was delivered when
    /// that is worth saying (in a cluster: by which node, and why not the
    /// recipient's home node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Processors the content passed through, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub processors: Vec<String>,
}

/// Something that happened to a message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    /// When (RFC 3339).
    pub at: String,
    /// What (`submitted`, `released`, `delivered`, `read`, …).
    pub kind: String,
}

/// A message's transaction: status and every attempt.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TxnView {
    /// The transaction id.
    pub txn: String,
    /// The sender (user id or address).
    pub from: String,
    /// The recipient.
    pub to: String,
    /// Where it stands.
    #[schema(schema_with = super::admin::records::status_schema)]
    pub status: String,
    /// Its priority.
    pub priority: String,
    /// The delivery manager it runs under.
    pub manager: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub expires_at: String,
    /// Every attempt, in order.
    pub attempts: Vec<AttemptView>,
    /// What happened, in order.
    pub events: Vec<EventView>,
    /// Why it was blocked, rejected or quarantined (`policy:<rule>`,
    /// `unknown_recipient`, `quarantine_rejected`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Every enterprise-policy rule that applied to it, in order.
    pub policy: Vec<switchboard_core::policy::Applied>,
}

/// A message in an IM inbox.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InboxMessage {
    /// The transaction id.
    pub txn: String,
    /// The sender.
    pub from: String,
    /// The text.
    pub body: String,
    /// RFC 3339.
    pub sent_at: String,
    /// Whether the recipient read it.
    pub read: bool,
    /// Pass as `after` to page on.
    pub cursor: String,
    /// Its subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// A page of an inbox.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InboxPage {
    /// Oldest first (newest first with `before`).
    pub messages: Vec<InboxMessage>,
    /// The cursor to pass as `after` (or `before`) for the next page.
    pub next: Option<String>,
}

/// The request's `Idempotency-Key`, if any.
fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(v) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let k = v.to_str().unwrap_or("\u{0}");
    check_idempotency_key(k, "Idempotency-Key")?;
    Ok(Some(k.to_string()))
}

/// Sends a message as the calling user; answers after the broker's
/// decision, once the message is durable. With an `Idempotency-Key`, a
/// retry (after a lost answer, say) gets the first answer again
/// (`Idempotent-Replayed: true`) and sends nothing; keys are kept 7 days
/// per user.
#[utoipa::path(tag = "messages", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters; a retry with the same key and message is answered with the first answer")),
    responses(
    (status = 202, body = SendAccepted, headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
    (status = 400, description = "a bad field, named", body = ErrorBody),
    (status = 403, description = "`policy_denied`", body = ErrorBody),
    (status = 409, description = "`duplicate`: the first request with this key is not routed yet", body = ErrorBody),
    (status = 422, description = "`unknown_recipient`, `no_mechanism`, `expired`, `idempotency_key_reused`", body = ErrorBody),
    (status = 503, description = "`shutting_down`, `storage_unavailable`, `timeout`, `cluster_unavailable` (no JetStream quorum: nothing was acknowledged; retry)", body = ErrorBody),
))]
#[post("/messages")]
pub async fn send_message(
    st: web::Data<ApiState>,
    user: User,
    http: HttpRequest,
    req: web::Json<SendRequest>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&http)?;
    let (answer, replayed) =
        send_as(&st.clients, &user.0, req.into_inner(), key.as_deref()).await?;
    let mut resp = HttpResponse::Accepted();
    if replayed {
        resp.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(resp.json(answer))
}

/// A transaction as the API shows it.
pub fn txn_view(rec: &TxnRecord) -> TxnView {
    TxnView {
        txn: rec.imi.txn.to_string(),
        from: rec.sender_name(),
        to: rec.imi.recipient.to_string(),
        status: rec.status.as_str().to_string(),
        priority: rec.imi.priority.as_str().to_string(),
        manager: rec.manager.as_ref().map(|m| m.name.clone()),
        created_at: rfc3339(rec.imi.created_at_ms),
        expires_at: rfc3339(rec.imi.expires_at_ms),
        attempts: rec
            .attempts
            .iter()
            .map(|a| AttemptView {
                attempt: a.attempt,
                mechanism: a.route.mechanism,
                address: a.route.address.clone(),
                gateway: a.route.destination.as_str().to_string(),
                started_at: rfc3339(a.started_ms),
                outcome: a.outcome.clone(),
                reason: a.reason.clone(),
                processors: a
                    .route
                    .processors
                    .iter()
                    .map(|p| p.as_str().to_string())
                    .collect(),
            })
            .collect(),
        events: rec
            .events
            .iter()
            .map(|e| EventView {
                at: rfc3339(e.at_ms),
                kind: e.kind.clone(),
            })
            .collect(),
        reason: match &rec.status {
            switchboard_core::store::TxnStatus::Blocked(r)
            | switchboard_core::store::TxnStatus::Rejected(r)
            | switchboard_core::store::TxnStatus::Quarantined(r) => Some(r.clone()),
            _ => None,
        },
        policy: rec.events.iter().filter_map(|e| applied(&e.kind)).collect(),
    }
}

/// A trail event `policy:<rule>:v<version>:<action>` as the rule applied.
fn applied(kind: &str) -> Option<switchboard_core::policy::Applied> {
    let rest = kind.strip_prefix("policy:")?;
    let mut parts = rest.split(':');
    let (rule, version, action) = (parts.next()?, parts.next()?, parts.next()?);
    Some(switchboard_core::policy::Applied {
        rule: rule.to_string(),
        version: version.strip_prefix('v')?.parse().ok()?,
        action: action.to_string(),
    })
}

/// A message's status and every attempt (its sender or the admin; 404 for
/// anyone else).
#[utoipa::path(tag = "messages", security(("bearer" = [])), responses(
    (status = 200, body = TxnView),
    (status = 404, body = ErrorBody),
))]
#[get("/messages/{txn}")]
pub async fn message_status(
    st: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let txn = parse_txn(&path)?;
    let store = st.store.clone();
    let mut rec = web::block(move || store.txn(&txn)).await??;
    if rec.is_none() {
        // The broker queues a transaction's record before it answers the
        // originator; a client can ask faster than the writer applies it.
        st.store.writer().barrier().await?;
        let store = st.store.clone();
        rec = web::block(move || store.txn(&txn)).await??;
    }
    let rec = rec.ok_or_else(|| ApiError::not_found("no such message"))?;
    if let Caller::User(u) = &caller {
        if rec.imi.sender_user.as_deref() != Some(u.as_str()) {
            return Err(ApiError::not_found("no such message"));
        }
    }
    Ok(HttpResponse::Ok().json(txn_view(&rec)))
}

/// `GET /v1/messages` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SentQuery {
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// The caller's sent messages.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SentList {
    /// Newest first, each as `GET /v1/messages/{txn}` shows it.
    pub messages: Vec<TxnView>,
}

/// How many of the node's newest transactions `GET /v1/messages` looks
/// through for the caller's (there is no index by sender).
pub const SENT_LOOK_AT: usize = 20_000;

/// The messages the caller sent, newest first, among the node's newest
/// 20 000 transactions.
#[utoipa::path(tag = "messages", security(("bearer" = [])), params(SentQuery), responses(
    (status = 200, body = SentList),
    (status = 400, body = ErrorBody),
))]
#[get("/messages")]
pub async fn sent_messages(
    st: web::Data<ApiState>,
    user: User,
    q: web::Query<SentQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = super::page_limit(q.limit, 100, 1000)?;
    let store = st.store.clone();
    let recs = web::block(move || store.txns_sent_by(&user.0, limit, SENT_LOOK_AT)).await??;
    Ok(HttpResponse::Ok().json(SentList {
        messages: recs.iter().map(txn_view).collect(),
    }))
}

/// `GET /v1/inbox` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InboxQuery {
    /// A cursor from a previous answer's `next`: the messages after it,
    /// oldest first.
    #[param(pattern = "^[0-9]*$")]
    after: Option<String>,
    /// A cursor: the messages before it, newest first; empty: from the
    /// newest. Not with `after`.
    #[param(pattern = "^[0-9]*$")]
    before: Option<String>,
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// The caller's IM inbox, oldest first (`after`) or newest first
/// (`before`).
#[utoipa::path(tag = "messages", security(("bearer" = [])), params(InboxQuery), responses(
    (status = 200, body = InboxPage),
    (status = 400, body = ErrorBody),
))]
#[get("/inbox")]
pub async fn get_inbox(
    st: web::Data<ApiState>,
    user: User,
    q: web::Query<InboxQuery>,
) -> Result<HttpResponse, ApiError> {
    let cursor = |name: &str, v: Option<&str>| match v {
        None | Some("") => Ok(None),
        Some(a) => a.parse::<u64>().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "\"{name}\" must be a cursor from a previous answer"
            ))
        }),
    };
    let after = cursor("after", q.after.as_deref())?;
    let before = cursor("before", q.before.as_deref())?;
    let newest_first = q.before.is_some();
    if newest_first && q.after.is_some() {
        return Err(ApiError::bad_request(
            "give \"after\" (oldest first) or \"before\" (newest first), not both",
        ));
    }
    let limit = super::page_limit(q.limit, 100, 1000)?;
    let store = st.store.clone();
    let who = user.0.clone();
    let entries = web::block(move || {
        if newest_first {
            store.inbox_before(&who, before, limit)
        } else {
            store.inbox(&who, after, limit)
        }
    })
    .await??;
    let next = entries.last().map(|(c, _)| *c).or(after).or(before);
    let messages = entries
        .iter()
        .map(|(cursor, e)| InboxMessage {
            txn: e.txn.to_string(),
            from: e.from.clone(),
            body: e.body.clone(),
            sent_at: rfc3339(e.sent_at_ms),
            read: e.read,
            cursor: cursor.to_string(),
            subject: e.subject.clone(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(InboxPage {
        messages,
        next: next.map(|n| n.to_string()),
    }))
}

/// Marks a message in the caller's inbox read; its sender gets a read
/// receipt.
#[utoipa::path(tag = "messages", security(("bearer" = [])), responses(
    (status = 204, description = "marked read"),
    (status = 404, body = ErrorBody),
))]
#[post("/messages/{txn}/read")]
pub async fn mark_message_read(
    st: web::Data<ApiState>,
    user: User,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let txn = parse_txn(&path)?;
    mark_read(&st.clients, &user.0, txn).await?;
    Ok(HttpResponse::NoContent().finish())
}
