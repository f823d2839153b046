//! `/v1/admin/archive/*` (`docs/ARCHIVE.md`): search the compliance archive
//! and verify it while the node runs, from its files (reading never
//! writes; the archive member appends), and purge it through the archive
//! member (which holds its files).

use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};

use switchboard_core::archive::search::{Query, TextQuery};

use crate::api::auth::Admin;
use crate::api::ApiState;
use crate::archive::{find, find_streamed, signing_key, Found, Paths, PurgeRow};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::time::parse_time;

/// `GET /v1/admin/archive/search` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Parties, comma-separated: every one must be the sender or the
    /// recipient.
    participant: Option<String>,
    /// Delivered at or after: RFC 3339, `YYYY-MM-DD` or milliseconds.
    from: Option<String>,
    /// Delivered before.
    to: Option<String>,
    /// The text: words, "quoted phrases", `OR`, `-word` / `NOT word`.
    q: Option<String>,
    /// Over this medium.
    medium: Option<String>,
    /// With this tag.
    tag: Option<String>,
    /// At most this many, 1 to 1000 (default 100).
    limit: Option<usize>,
    /// Records after this seq (a previous page's `next`).
    after: Option<u64>,
    /// Every node's records, from the cluster's archive stream (cluster
    /// mode), each with its `node`.
    cluster: Option<bool>,
}

fn paths(st: &ApiState) -> Result<Paths, ApiError> {
    st.archive
        .clone()
        .ok_or_else(|| ApiError::not_found("the archive is not enabled on this node"))
}

fn time(what: &str, t: &Option<String>) -> Result<Option<u64>, ApiError> {
    t.as_deref()
        .map(|s| {
            parse_time(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "\"{what}\" must be RFC 3339, YYYY-MM-DD or milliseconds"
                ))
            })
        })
        .transpose()
}

/// Records of the archive that match, in chain order.
#[utoipa::path(tag = "admin", security(("bearer" = [])), params(SearchQuery), responses(
    (status = 200, body = Found),
    (status = 400, body = ErrorBody),
    (status = 404, description = "the archive is not enabled", body = ErrorBody),
))]
#[get("/archive/search")]
pub async fn search_archive(
    st: web::Data<ApiState>,
    _: Admin,
    q: web::Query<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    let paths = paths(&st)?;
    let q = q.into_inner();
    let text = TextQuery::parse(q.q.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("\"q\": {e}")))?;
    let query = Query {
        participants: (q.participant.as_deref().unwrap_or(""))
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect(),
        from_ms: time("from", &q.from)?,
        to_ms: time("to", &q.to)?,
        medium: q.medium,
        tag: q.tag,
        text,
        after: q.after.unwrap_or(0),
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
        candidates: None,
    };
    let found = if q.cluster == Some(true) {
        let Some(m) = st.cluster.clone() else {
            return Err(ApiError::bad_request(
                "\"cluster\": this node is not in cluster mode",
            ));
        };
        let streamed = web::block(move || {
            let engine = m.engine.clone();
            m.engine
                .run(async move { switchboard_core::cluster::archive::read_all(&engine).await })
        })
        .await?
        .map_err(|e| ApiError::unavailable("cluster_unavailable", e.to_string()))?
        .map_err(|e| ApiError::unavailable("cluster_unavailable", e.to_string()))?;
        find_streamed(streamed, &query)
    } else {
        web::block(move || find(&paths, &query))
            .await?
            .map_err(|e| ApiError::unavailable("archive_unavailable", e.to_string()))?
    };
    Ok(HttpResponse::Ok().json(found))
}

/// What a verification of the running node's archive found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerifyView {
    /// Whether everything holds.
    pub ok: bool,
    /// Records read.
    pub records: u64,
    /// Checkpoints that verified.
    pub checkpoints: u64,
    /// The last record those cover.
    pub covered: u64,
    /// What is wrong, first the earliest.
    pub problems: Vec<String>,
}

/// Verifies the archive's records, chain and checkpoints now.
#[utoipa::path(tag = "admin", security(("bearer" = [])), responses(
    (status = 200, body = VerifyView),
    (status = 404, description = "the archive is not enabled", body = ErrorBody),
))]
#[post("/archive/verify")]
pub async fn verify_archive(st: web::Data<ApiState>, _: Admin) -> Result<HttpResponse, ApiError> {
    let paths = paths(&st)?;
    let v = web::block(move || -> anyhow::Result<_> {
        let public = signing_key(&paths.key)?.public();
        Ok(switchboard_core::archive::verify(
            &paths.dir,
            &paths.fingerprints,
            &public,
        )?)
    })
    .await?
    .map_err(|e| ApiError::unavailable("archive_unavailable", e.to_string()))?;
    Ok(HttpResponse::Ok().json(VerifyView {
        ok: v.problems.is_empty(),
        records: v.records,
        checkpoints: v.checkpoints,
        covered: v.covered,
        problems: v.problems.iter().map(ToString::to_string).collect(),
    }))
}

/// `POST /v1/admin/archive/purge` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeBody {
    /// Say what would go, purge nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// The purge's "now": RFC 3339, `YYYY-MM-DD` or milliseconds, as the
    /// search's `from` and `to`; the node's clock by default.
    pub now: Option<String>,
}

/// What a purge let go.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PurgeView {
    /// Whether nothing was purged (only said).
    pub dry_run: bool,
    /// The records due, in chain order (purged unless `dry_run`, each under
    /// a signed tombstone).
    pub records: Vec<PurgeRow>,
}

/// Purges what retention lets go and no legal hold keeps, through the
/// running archive member.
#[utoipa::path(tag = "admin", security(("bearer" = [])), request_body = PurgeBody, responses(
    (status = 200, body = PurgeView),
    (status = 400, description = "a bad `now`", body = ErrorBody),
    (status = 404, description = "the archive is not enabled", body = ErrorBody),
    (status = 503, description = "the archive could not purge", body = ErrorBody),
))]
#[post("/archive/purge")]
pub async fn purge_archive(
    st: web::Data<ApiState>,
    _: Admin,
    body: web::Json<PurgeBody>,
) -> Result<HttpResponse, ApiError> {
    let Some(archiver) = st.archiver.clone() else {
        return Err(ApiError::not_found(
            "the archive is not enabled on this node",
        ));
    };
    let body = body.into_inner();
    let purge = switchboard_actors::archive::PurgeArchive {
        now_ms: time("now", &body.now)?,
        dry_run: body.dry_run,
    };
    let due = archiver
        .send(purge)
        .await
        .map_err(|e| ApiError::unavailable("archive_unavailable", e.to_string()))?
        .map_err(|e| ApiError::unavailable("archive_unavailable", e))?;
    Ok(HttpResponse::Ok().json(PurgeView {
        dry_run: body.dry_run,
        records: due.iter().map(PurgeRow::of).collect(),
    }))
}
