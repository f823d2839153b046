//! `GET /metrics`: Prometheus text (the `metrics` facade, rendered by
//! `metrics-exporter-prometheus`). Names are prefixed `switchboard_`,
//! counters end in `_total`, histograms in `_seconds`. Counted where things
//! happen (gateways, broker shards, the store's writer); gauges of connected
//! members are read from the member registry at scrape time.

use std::sync::OnceLock;

use actix_web::{get, web, HttpResponse};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::ApiState;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use (one per process: every
/// node in it shares it).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let buckets = [
            0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0, 60.0,
        ];
        let recorder = PrometheusBuilder::new()
            .set_buckets(&buckets)
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows nothing");
        }
        handle
    })
}

/// This process's resident set, bytes (Linux).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// Prometheus text exposition of the node's metrics (no token, as
/// Prometheus scrapes it).
#[utoipa::path(tag = "health", responses(
    (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"),
))]
#[get("/metrics")]
pub async fn scrape(st: web::Data<ApiState>) -> HttpResponse {
    let live = st.members.snapshot();
    metrics::gauge!("switchboard_members_connected").set(live.len() as f64);
    for m in live.iter().filter(|m| m.medium.is_some()) {
        let up = if m.logged_in && m.healthy { 1.0 } else { 0.0 };
        metrics::gauge!("switchboard_gateway_up", "member" => m.id.as_str().to_string()).set(up);
    }
    if let Some(rss) = resident_bytes() {
        metrics::gauge!("switchboard_process_resident_memory_bytes").set(rss as f64);
    }
    for (shard, depth) in st.broker.queue_depths().into_iter().enumerate() {
        metrics::gauge!("switchboard_broker_queue_depth", "shard" => shard.to_string())
            .set(depth as f64);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(handle().render())
}
