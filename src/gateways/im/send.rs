//! How an IM client sends — over the HTTP API (`POST /v1/messages`) or its
//! WebSocket session alike: the request is checked, becomes the IM
//! gateway's `Originate`, waits for the broker's decision, and answers with
//! the transaction and its first route; an idempotency key (one namespace
//! per user, shared by both doors) replays the first answer instead of
//! sending twice. Marking a message read is here too: it reports `Read`
//! through the gateway.

use actix_web::http::StatusCode;
use actix_web::web;
use serde::{Deserialize, Serialize};

use switchboard_actors::gateway::{Accepted, Originate, OriginateError};
use switchboard_actors::medium::MediumReport;
use switchboard_core::protocol::{
    Address, MediumKind, Priority, RejectReason, ReportStatus, To, TxnId,
};
use switchboard_core::store::records::enc;
use switchboard_core::store::{InboxEntry, Tree, TxnStatus, WriteBatch};

use super::clients::{ImClients, Tokens};
use crate::http::error::ApiError;

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
    /// `released`: the broker routed it and the node holds it durably;
    /// `quarantined`: held durably for a reviewer (COMPLIANCE.md), routed
    /// once released.
    #[schema(example = "released")]
    pub status: &'static str,
    /// The first route (none while quarantined).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteView>,
    /// Why it is held (`policy:<rule>`), when quarantined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl SendAccepted {
    /// The answer to a message the broker accepted.
    pub fn of(acc: &Accepted) -> Self {
        Self {
            txn: acc.txn.to_string(),
            status: if acc.held.is_some() {
                "quarantined"
            } else {
                "released"
            },
            route: acc.route.as_ref().map(|r| RouteView {
                mechanism: r.mechanism,
                address: r.address.clone(),
            }),
            reason: acc.held.clone(),
        }
    }
}

/// The API's answer to a broker's refusal.
pub fn reject_error(r: &RejectReason) -> ApiError {
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
/// (503), no JetStream quorum in a cluster (503 `cluster_unavailable`, as
/// soon as the journal has waited [`switchboard_core::store::STALLED`]).
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
    // In a cluster without a JetStream quorum nothing is acknowledged.
    if let Some(why) = st.store.unavailable() {
        return Err(ApiError::unavailable("cluster_unavailable", why));
    }
    let decided = actix_rt::time::timeout(st.submit_timeout, st.gateway.send(o));
    let answer = tokio::select! {
        a = decided => a,
        why = st.store.lost_quorum() => {
            return Err(ApiError::unavailable(
                "cluster_unavailable",
                format!("{why}; the message was not acknowledged and may still be delivered once the quorum is back: retry with the same Idempotency-Key"),
            ));
        }
    };
    match answer {
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
        (Ok(acc), _) => Ok((SendAccepted::of(&acc), false)),
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
    if matches!(st.tokens, Tokens::Node) {
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
    if let TxnStatus::Blocked(code) = &rec.status {
        if let Some(rule) = code.strip_prefix("policy:") {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "policy_denied",
                format!("denied by policy {rule} when first sent"),
            ));
        }
    }
    if let TxnStatus::Quarantined(code) = &rec.status {
        return Ok(SendAccepted::of(&Accepted {
            txn,
            route: None,
            held: Some(code.clone()),
        }));
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
        route: Some(route),
        reason: None,
    })
}

/// A transaction id from a path or a frame (an unknown one is 404).
///
/// # Errors
/// 404 when `s` is not a transaction id.
pub fn parse_txn(s: &str) -> Result<TxnId, ApiError> {
    s.parse()
        .map_err(|_| ApiError::not_found("no such message"))
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
