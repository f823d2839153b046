//! Messages: send (`POST /v1/messages`), status (`GET /v1/messages/{txn}`),
//! the caller's IM inbox (`GET /v1/inbox`), and read receipts
//! (`POST /v1/messages/{txn}/read`).

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use switchboard_actors::gateway::{Accepted, Originate, OriginateError};
use switchboard_actors::medium::MediumReport;
use switchboard_core::protocol::{
    Address, MediumKind, Priority, RejectReason, ReportStatus, To, TxnId,
};
use switchboard_core::store::records::enc;
use switchboard_core::store::{InboxEntry, Tree, TxnRecord, TxnStatus, WriteBatch};

use super::auth::{Caller, User};
use super::error::{ApiError, ErrorBody};
use super::time::rfc3339;
use super::ApiState;
use crate::gateways::im::clients::ImClients;

/// Longest subject, bytes (RFC 5322's line limit).
const MAX_SUBJECT: usize = 998;

/// `POST /v1/messages` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// A user id, or `medium:address` (`im:`, `email:`, `sms:`, `fax:`).
    #[schema(example = "bob")]
    pub(crate) to: String,
    /// The text (not empty).
    #[schema(example = "Lunch at noon?")]
    pub(crate) body: String,
    /// One line of at most 998 bytes.
    pub(crate) subject: Option<String>,
    /// Selects the delivery manager's configuration (default `normal`).
    pub(crate) priority: Option<Priority>,
    /// Lifetime in seconds, 1 to `api.max_expires_in_s` (default
    /// `api.default_expires_in_s`).
    #[schema(minimum = 1)]
    pub(crate) expires_in_s: Option<u64>,
    /// Whether the sender wants receipts (default true).
    pub(crate) receipt: Option<bool>,
}

/// The route the broker chose.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RouteView {
    /// The mechanism.
    pub mechanism: MediumKind,
    /// The recipient's address on it.
    pub address: String,
}

/// `POST /v1/messages` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SendAccepted {
    /// The transaction id.
    pub txn: String,
    /// Always `released`: the broker routed it and the node holds it durably.
    #[schema(example = "released")]
    pub status: &'static str,
    /// The first route.
    pub route: RouteView,
}

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
    /// Why it failed.
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
    #[schema(schema_with = super::admin::status_schema)]
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
    /// Oldest first.
    pub messages: Vec<InboxMessage>,
    /// The cursor to pass as `after` for the next page.
    pub next: Option<String>,
}

fn reject_error(r: &RejectReason) -> ApiError {
    let (status, message) = match r {
        RejectReason::UnknownRecipient => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "the recipient is not known".to_string(),
        ),
        RejectReason::NoMechanism => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "no mechanism of the recipient has a gateway that is up".to_string(),
        ),
        RejectReason::PolicyDenied(rule) => {
            (StatusCode::FORBIDDEN, format!("denied by policy: {rule}"))
        }
        RejectReason::Expired => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "the message expired before it was routed".to_string(),
        ),
    };
    ApiError::new(status, r.code(), message)
}

/// Checks a send request from `user` and turns it into the IM gateway's
/// `Originate`.
///
/// # Errors
/// 400 naming the bad field.
pub fn originate(st: &ImClients, user: &str, req: SendRequest) -> Result<Originate, ApiError> {
    let to = To::parse(&req.to).ok_or_else(|| {
        ApiError::bad_request(
            "\"to\" must be a user id or medium:address (im:, email:, sms:, fax:)",
        )
    })?;
    if req.body.is_empty() {
        return Err(ApiError::bad_request("\"body\" must not be empty"));
    }
    if let Some(s) = &req.subject {
        if s.len() > MAX_SUBJECT || s.contains(['\r', '\n']) {
            return Err(ApiError::bad_request(format!(
                "\"subject\" must be one line of at most {MAX_SUBJECT} bytes"
            )));
        }
    }
    let expires_in_s = req.expires_in_s.unwrap_or(st.default_expires_in_s);
    if expires_in_s == 0 || expires_in_s > st.max_expires_in_s {
        return Err(ApiError::bad_request(format!(
            "\"expires_in_s\" must be between 1 and {}",
            st.max_expires_in_s
        )));
    }
    Ok(Originate {
        sender: Address::new(MediumKind::Im, user.to_string()),
        sender_user: Some(user.to_string()),
        to,
        content: req.body.into_bytes(),
        content_type: "text/plain; charset=utf-8".into(),
        subject: req.subject,
        priority: req.priority.unwrap_or_default(),
        expires_in_ms: expires_in_s * 1000,
        receipt: req.receipt.unwrap_or(true),
        dedupe: None,
    })
}

/// Hands a message to the IM gateway and waits for the broker's decision;
/// a message whose dedupe key was seen is `Ok(Err(txn))` with the first
/// one's transaction.
///
/// # Errors
/// The broker's refusal (422/403), storage (503), timeout (503), shutdown
/// (503).
pub async fn submit_or_duplicate(
    st: &ImClients,
    o: Originate,
) -> Result<Result<Accepted, TxnId>, ApiError> {
    if *st.draining.borrow() {
        return Err(ApiError::unavailable(
            "shutting_down",
            "the node is shutting down; try again shortly",
        ));
    }
    match actix_rt::time::timeout(st.submit_timeout, st.gateway.send(o)).await {
        Ok(Ok(Ok(acc))) => Ok(Ok(acc)),
        Ok(Ok(Err(OriginateError::Rejected(r)))) => Err(reject_error(&r)),
        Ok(Ok(Err(OriginateError::Store(e)))) => Err(ApiError::unavailable("storage_unavailable", e)),
        Ok(Ok(Err(OriginateError::Duplicate(txn)))) => Ok(Err(txn)),
        Ok(Ok(Err(OriginateError::Stopping))) | Ok(Err(_)) => {
            Err(ApiError::unavailable("unavailable", "the node is shutting down"))
        }
        Err(_) => Err(ApiError::unavailable(
            "timeout",
            "the broker did not decide in time; if the message was stored it will still be delivered",
        )),
    }
}

/// The route as the API shows it.
pub fn route_view(acc: &Accepted) -> RouteView {
    RouteView {
        mechanism: acc.route.mechanism,
        address: acc.route.address.clone(),
    }
}

/// Longest `Idempotency-Key`, bytes.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Checks an idempotency key: 1 to 255 visible ASCII characters.
///
/// # Errors
/// 400 naming `what` (the header or the field).
pub fn check_idempotency_key(k: &str, what: &str) -> Result<(), ApiError> {
    if (1..=MAX_IDEMPOTENCY_KEY).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{what} must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        )))
    }
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

/// Sends a message as `user` — from the HTTP API or a WebSocket session —
/// with an optional idempotency key (the user's own namespace, shared by
/// both). `Ok((answer, true))` is a replay of the first answer.
///
/// # Errors
/// As [`submit_or_duplicate`], 422 `idempotency_key_reused`, 409
/// `duplicate`.
pub async fn send_as(
    st: &ImClients,
    user: &str,
    req: SendRequest,
    key: Option<&str>,
) -> Result<(SendAccepted, bool), ApiError> {
    let mut o = originate(st, user, req)?;
    o.dedupe = key.map(|k| format!("api:{user}:{k}"));
    let fingerprint = o.dedupe.is_some().then(|| Fingerprint {
        to: o.to.clone(),
        sha256: switchboard_core::protocol::mac::sha256(&o.content),
        subject: o.subject.clone(),
    });
    match (submit_or_duplicate(st, o).await?, fingerprint) {
        (Ok(acc), _) => Ok((
            SendAccepted {
                txn: acc.txn.to_string(),
                status: "released",
                route: route_view(&acc),
            },
            false,
        )),
        (Err(txn), Some(f)) => replay(st, txn, &f).await.map(|a| (a, true)),
        (Err(txn), None) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "duplicate",
            format!("already accepted as {txn}"),
        )),
    }
}

/// What makes a retried message the same message.
struct Fingerprint {
    to: To,
    sha256: [u8; 32],
    subject: Option<String>,
}

/// A retried request with a known `Idempotency-Key`: the first request's
/// answer again (its transaction and first route, or its refusal), or 422
/// when the key came with another message.
async fn replay(st: &ImClients, txn: TxnId, first: &Fingerprint) -> Result<SendAccepted, ApiError> {
    if matches!(st.tokens, crate::gateways::im::clients::Tokens::Node) {
        // A remote IM gateway does not hold the broker's record to replay
        // from; the message was not sent twice either way.
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "duplicate",
            format!("already accepted as {txn}"),
        ));
    }
    // The first request may still be on its way to the broker.
    let deadline = std::time::Instant::now() + st.submit_timeout;
    let rec = loop {
        st.store.writer().barrier().await?;
        let store = st.store.clone();
        if let Some(rec) = web::block(move || store.txn(&txn)).await?? {
            break rec;
        }
        if std::time::Instant::now() > deadline {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "duplicate",
                format!("already accepted as {txn}, not yet routed; retry shortly"),
            ));
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let same = rec.imi.recipient == first.to
        && rec.imi.content_sha256 == first.sha256
        && rec.imi.subject == first.subject;
    if !same {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            format!("this Idempotency-Key was used for another message ({txn})"),
        ));
    }
    if let TxnStatus::Rejected(code) = &rec.status {
        let status = if code == "policy_denied" {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        return Err(ApiError::new(status, code, "refused when first sent"));
    }
    let route = rec
        .attempts
        .first()
        .map(|a| RouteView {
            mechanism: a.route.mechanism,
            address: a.route.address.clone(),
        })
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "duplicate",
                format!("already accepted as {txn}"),
            )
        })?;
    Ok(SendAccepted {
        txn: txn.to_string(),
        status: "released",
        route,
    })
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
    (status = 503, description = "`shutting_down`, `storage_unavailable`, `timeout`", body = ErrorBody),
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

pub(crate) fn parse_txn(s: &str) -> Result<TxnId, ApiError> {
    s.parse()
        .map_err(|_| ApiError::not_found("no such message"))
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
    }
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

/// `GET /v1/inbox` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InboxQuery {
    /// A cursor from a previous answer's `next`.
    #[param(pattern = "^[0-9]*$")]
    after: Option<String>,
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// The caller's IM inbox, oldest first.
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
    let after = match q.after.as_deref() {
        None | Some("") => None,
        Some(a) => Some(a.parse::<u64>().map_err(|_| {
            ApiError::bad_request("\"after\" must be a cursor from a previous answer")
        })?),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "\"limit\" must be between 1 and 1000",
        ));
    }
    let store = st.store.clone();
    let who = user.0.clone();
    let entries = web::block(move || store.inbox(&who, after, limit)).await??;
    let next = entries.last().map(|(c, _)| *c).or(after);
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

/// Marks a message in `user`'s inbox read (reporting it delivered first if
/// it was held); the sender is notified.
///
/// # Errors
/// 404 when it is not in the inbox; storage errors.
pub async fn mark_read(st: &ImClients, user: &str, txn: TxnId) -> Result<(), ApiError> {
    let store = st.store.clone();
    let who = user.to_string();
    let found = web::block(move || store.inbox_entry(&who, &txn)).await??;
    let (seq, mut entry) =
        found.ok_or_else(|| ApiError::not_found("no such message in your inbox"))?;
    if entry.read {
        return Ok(());
    }
    let was_delivered = entry.delivered;
    entry.read = true;
    entry.delivered = true;
    let mut b = WriteBatch::new();
    b.insert(Tree::Inbox, InboxEntry::key(user, seq), enc(&entry));
    st.store.writer().write(b).await?;
    for status in [
        (!was_delivered).then_some(ReportStatus::Delivered),
        Some(ReportStatus::Read),
    ]
    .into_iter()
    .flatten()
    {
        st.gateway.do_send(MediumReport {
            txn,
            attempt: entry.attempt,
            id: entry.id,
            status,
            // The IM inbox is never on a processor's route.
            attestations: Vec::new(),
        });
    }
    Ok(())
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
