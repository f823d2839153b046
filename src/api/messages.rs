//! Messages: send (`POST /v1/messages`), status (`GET /v1/messages/{txn}`),
//! the caller's IM inbox (`GET /v1/inbox`), and read receipts
//! (`POST /v1/messages/{txn}/read`).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use switchboard_actors::gateway::{Accepted, MediumReport, Originate, OriginateError};
use switchboard_actors::protocol::{
    Address, MediumKind, Priority, RejectReason, ReportStatus, To, TxnId,
};
use switchboard_actors::store::records::enc;
use switchboard_actors::store::{InboxEntry, Tree, TxnRecord, WriteBatch};

use super::auth::{Caller, User};
use super::error::ApiError;
use super::time::rfc3339;
use super::ApiState;

/// Longest subject, bytes (RFC 5322's line limit).
const MAX_SUBJECT: usize = 998;

/// `POST /v1/messages` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    pub(crate) to: String,
    pub(crate) body: String,
    pub(crate) subject: Option<String>,
    pub(crate) priority: Option<Priority>,
    pub(crate) expires_in_s: Option<u64>,
    pub(crate) receipt: Option<bool>,
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
pub fn originate(st: &ApiState, user: &str, req: SendRequest) -> Result<Originate, ApiError> {
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

/// Hands a message to the IM gateway and waits for the broker's decision.
///
/// # Errors
/// The broker's refusal (422/403), storage (503), timeout (503), shutdown (503).
pub async fn submit(st: &ApiState, o: Originate) -> Result<Accepted, ApiError> {
    if *st.draining.borrow() {
        return Err(ApiError::unavailable(
            "shutting_down",
            "the node is shutting down; try again shortly",
        ));
    }
    match actix_rt::time::timeout(st.submit_timeout, st.im.send(o)).await {
        Ok(Ok(Ok(acc))) => Ok(acc),
        Ok(Ok(Err(OriginateError::Rejected(r)))) => Err(reject_error(&r)),
        Ok(Ok(Err(OriginateError::Store(e)))) => Err(ApiError::unavailable("storage_unavailable", e)),
        Ok(Ok(Err(OriginateError::Duplicate(txn)))) => Err(ApiError::new(
            actix_web::http::StatusCode::CONFLICT,
            "duplicate",
            format!("already accepted as {txn}"),
        )),
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
pub fn route_json(acc: &Accepted) -> Value {
    json!({ "mechanism": acc.route.mechanism, "address": acc.route.address })
}

/// `POST /v1/messages`: answers after the broker's decision.
pub async fn send(
    st: web::Data<ApiState>,
    user: User,
    req: web::Json<SendRequest>,
) -> Result<HttpResponse, ApiError> {
    let o = originate(&st, &user.0, req.into_inner())?;
    let acc = submit(&st, o).await?;
    Ok(HttpResponse::Accepted().json(json!({
        "txn": acc.txn.to_string(),
        "status": "released",
        "route": route_json(&acc),
    })))
}

pub(crate) fn parse_txn(s: &str) -> Result<TxnId, ApiError> {
    s.parse()
        .map_err(|_| ApiError::not_found("no such message"))
}

/// A transaction as the API shows it.
pub fn txn_json(rec: &TxnRecord) -> Value {
    json!({
        "txn": rec.imi.txn.to_string(),
        "from": switchboard_actors::broker::sender_name(rec),
        "to": rec.imi.recipient.to_string(),
        "status": rec.status.as_str(),
        "priority": rec.imi.priority.as_str(),
        "manager": rec.manager.as_ref().map(|m| m.name.as_str()),
        "created_at": rfc3339(rec.imi.created_at_ms),
        "expires_at": rfc3339(rec.imi.expires_at_ms),
        "attempts": rec.attempts.iter().map(|a| {
            let mut v = json!({
                "attempt": a.attempt,
                "mechanism": a.route.mechanism,
                "address": a.route.address,
                "gateway": a.route.destination.as_str(),
                "started_at": rfc3339(a.started_ms),
                "outcome": a.outcome,
            });
            if let Some(r) = &a.reason {
                v["reason"] = json!(r);
            }
            if !a.route.processors.is_empty() {
                v["processors"] = json!(a.route.processors.iter().map(|p| p.as_str()).collect::<Vec<_>>());
            }
            v
        }).collect::<Vec<_>>(),
        "events": rec.events.iter().map(|e| json!({"at": rfc3339(e.at_ms), "kind": e.kind})).collect::<Vec<_>>(),
    })
}

/// `GET /v1/messages/{txn}` (the sender or the admin).
pub async fn status(
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
    Ok(HttpResponse::Ok().json(txn_json(&rec)))
}

/// `GET /v1/inbox` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/inbox`: the caller's IM inbox, oldest first.
pub async fn inbox(
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
    let messages: Vec<Value> = entries
        .iter()
        .map(|(cursor, e)| {
            let mut v = json!({
                "txn": e.txn.to_string(),
                "from": e.from,
                "body": e.body,
                "sent_at": rfc3339(e.sent_at_ms),
                "read": e.read,
                "cursor": cursor.to_string(),
            });
            if let Some(s) = &e.subject {
                v["subject"] = json!(s);
            }
            v
        })
        .collect();
    Ok(HttpResponse::Ok()
        .json(json!({ "messages": messages, "next": next.map(|n| n.to_string()) })))
}

/// Marks a message in `user`'s inbox read (reporting it delivered first if
/// it was held); the sender is notified.
///
/// # Errors
/// 404 when it is not in the inbox; storage errors.
pub async fn mark_read(st: &ApiState, user: &str, txn: TxnId) -> Result<(), ApiError> {
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
        st.im.do_send(MediumReport {
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

/// `POST /v1/messages/{txn}/read` (the recipient): 204; the sender is notified.
pub async fn read(
    st: web::Data<ApiState>,
    user: User,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let txn = parse_txn(&path)?;
    mark_read(&st, &user.0, txn).await?;
    Ok(HttpResponse::NoContent().finish())
}
