//! `/v1/admin/transactions` and `/v1/admin/accounting` (JSON or CSV): what
//! happened to messages, and what they cost.

use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use switchboard_core::protocol::MediumKind;
use switchboard_core::store::TxnStatus;

use crate::api::auth::Admin;
use crate::api::messages::{txn_view, TxnView};
use crate::api::ApiState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::time::{parse_time, rfc3339};

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
