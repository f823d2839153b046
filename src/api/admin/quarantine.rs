//! `/v1/admin/quarantine` (COMPLIANCE.md): messages a `quarantine` rule
//! holds for a reviewer, each with its content when the node holds it (a
//! reviewer has to read it); `POST …/{txn}/release` routes one as usual,
//! `POST …/{txn}/reject` blocks it (`quarantine_rejected`) and tells its
//! sender. The decision goes to the broker shard that owns the transaction
//! and is on its trail (`quarantine:released:admin`).

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};

use switchboard_actors::bus::ReviewHeld;
use switchboard_core::policy::Action;
use switchboard_core::store::{TxnRecord, TxnStatus};
use switchboard_core::transactions::{Review, ReviewError};

use crate::api::auth::Admin;
use crate::api::ApiState;
use crate::gateways::im::send::parse_txn;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::time::rfc3339;

/// A held message, as a reviewer sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HeldView {
    /// The transaction id.
    pub txn: String,
    /// The sender (user id or address).
    pub from: String,
    /// The recipient.
    pub to: String,
    /// Its priority.
    pub priority: String,
    /// The rule that holds it (`policy:<rule>`).
    pub reason: String,
    /// The rule's reason, as it reads now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_reason: Option<String>,
    /// `meta` (held by the broker before any attempt) or `content` (held
    /// by the content filter on an attempt).
    pub stage: &'static str,
    /// RFC 3339: when it was held.
    pub held_at: String,
    /// RFC 3339: when it expires if nobody decides.
    pub expires_at: String,
    /// The subject, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The content's MIME type.
    pub content_type: String,
    /// The content's length in bytes.
    pub content_length: u64,
    /// The content as text (one message only, when the gateway holding it
    /// is this node's and it is UTF-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// Held messages.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HeldList {
    /// Newest first.
    pub messages: Vec<HeldView>,
}

/// `GET /v1/admin/quarantine` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HeldQuery {
    /// At most this many, 1 to 1000 (default 100).
    limit: Option<usize>,
}

fn view(st: &ApiState, rec: &TxnRecord) -> HeldView {
    let reason = match &rec.status {
        TxnStatus::Quarantined(r) => r.clone(),
        other => other.as_str().to_string(),
    };
    let rule_reason = reason.strip_prefix("policy:").and_then(|id| {
        let book = st.directory.policy().snapshot();
        match &book.rules.get(id)?.action {
            Action::Quarantine { reason } if !reason.is_empty() => Some(reason.clone()),
            _ => None,
        }
    });
    let held_at = rec
        .events
        .iter()
        .rev()
        .find(|e| e.kind.starts_with("quarantined"))
        .map_or(rec.imi.created_at_ms, |e| e.at_ms);
    let imi = &rec.imi;
    HeldView {
        txn: imi.txn.to_string(),
        from: rec.sender_name(),
        to: imi.recipient.to_string(),
        priority: imi.priority.as_str().into(),
        reason,
        rule_reason,
        stage: match rec.attempts.last() {
            Some(a) if a.outcome.as_deref() == Some("quarantined") => "content",
            _ => "meta",
        },
        held_at: rfc3339(held_at),
        expires_at: rfc3339(imi.expires_at_ms),
        subject: imi.subject.clone(),
        content_type: imi.content_type.clone(),
        content_length: imi.content_len,
        content: None,
    }
}

/// Messages held for a reviewer, newest first.
#[utoipa::path(tag = "admin", security(("bearer" = [])), params(HeldQuery), responses(
    (status = 200, body = HeldList),
    (status = 400, body = ErrorBody),
))]
#[get("/quarantine")]
pub async fn list_held(
    st: web::Data<ApiState>,
    _: Admin,
    q: web::Query<HeldQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let store = st.store.clone();
    let recs = web::block(move || store.txns(Some("quarantined"), limit)).await??;
    Ok(HttpResponse::Ok().json(HeldList {
        messages: recs.iter().map(|r| view(&st, r)).collect(),
    }))
}

/// One held message, with its content when this node holds it.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 200, body = HeldView),
    (status = 404, description = "not held (or unknown)", body = ErrorBody),
))]
#[get("/quarantine/{txn}")]
pub async fn get_held(
    st: web::Data<ApiState>,
    _: Admin,
    txn: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let txn = parse_txn(&txn)?;
    let store = st.store.clone();
    let found = web::block(move || -> Result<_, ApiError> {
        let Some(rec) = store.txn(&txn)? else {
            return Ok(None);
        };
        let content = store.outbox_message(&rec.imi.originator, &txn)?;
        Ok(Some((rec, content)))
    })
    .await??;
    let Some((rec, content)) = found.filter(|(r, _)| matches!(r.status, TxnStatus::Quarantined(_)))
    else {
        return Err(ApiError::not_found("no such message in quarantine"));
    };
    let mut v = view(&st, &rec);
    v.content = content.and_then(|c| String::from_utf8(c).ok());
    Ok(HttpResponse::Ok().json(v))
}

/// What a decision left.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Reviewed {
    /// The transaction id.
    pub txn: String,
    /// Its status now (`released`, `blocked`, …).
    pub status: String,
}

async fn decide(st: &ApiState, txn: &str, decision: Review) -> Result<HttpResponse, ApiError> {
    let txn = parse_txn(txn)?;
    let r = ReviewHeld {
        txn,
        decision,
        by: "admin".into(),
    };
    match st.shards.review(r).await {
        Ok(status) => {
            // Answered once what it decided is stored.
            st.store.writer().barrier().await?;
            Ok(HttpResponse::Ok().json(Reviewed {
                txn: txn.to_string(),
                status: status.as_str().into(),
            }))
        }
        Err(ReviewError::Unknown) => Err(ApiError::not_found("no such message in quarantine")),
        Err(e @ ReviewError::NotHeld(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_quarantined",
            e.to_string(),
        )),
        Err(e @ ReviewError::OriginatorAway) => Err(ApiError::unavailable(
            "originator_unavailable",
            e.to_string(),
        )),
    }
}

/// Releases a held message: it is routed as usual (the rule that held it
/// does not hold it again).
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 200, body = Reviewed),
    (status = 404, body = ErrorBody),
    (status = 409, description = "`not_quarantined`", body = ErrorBody),
    (status = 503, description = "`originator_unavailable`: the gateway holding it is not connected", body = ErrorBody),
))]
#[post("/quarantine/{txn}/release")]
pub async fn release_held(
    st: web::Data<ApiState>,
    _: Admin,
    txn: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    decide(&st, &txn, Review::Release).await
}

/// Rejects a held message: `blocked` (`quarantine_rejected`), its sender
/// told.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 200, body = Reviewed),
    (status = 404, body = ErrorBody),
    (status = 409, description = "`not_quarantined`", body = ErrorBody),
))]
#[post("/quarantine/{txn}/reject")]
pub async fn reject_held(
    st: web::Data<ApiState>,
    _: Admin,
    txn: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    decide(&st, &txn, Review::Reject).await
}
