//! What every HTTP listener here shares — the node's API and a remote IM
//! gateway's own server: the one error shape ([`error`]), times as the API
//! writes them ([`time`]), `/healthz` ([`health`]), and how a server is
//! bound and run ([`run_on`]); answers held until they are durable
//! ([`when_durable`]).
//!
//! Owns: HTTP plumbing. Must not touch: any handler's state (a leaf: it
//! imports nothing of the product).

pub mod error;
pub mod health;
pub mod time;

use std::net::SocketAddr;

use actix_web::HttpServer;
use anyhow::Context as _;
use switchboard_core::store::Store;

/// Holds an answer until `store`'s journal is durable past everything
/// written when its handler finished — what the answer shows (a `202`'s
/// message, an inbox, a status) can then not be undone by a power cut. An
/// answer given while nothing is pending goes at once; when the journal has
/// failed, the answer is a `503` instead. In a cluster that loses its
/// JetStream quorum while the answer waits, an `error` answer (which shows
/// nothing written: a refusal, `/readyz` saying why) goes as it is and any
/// other becomes `503 cluster_unavailable`.
///
/// # Errors
/// [`error::ApiError`] `storage_unavailable` when the journal failed,
/// `cluster_unavailable` without a quorum.
pub async fn when_durable<T>(store: &Store, answer: T, error: bool) -> Result<T, actix_web::Error> {
    let w = store.writer();
    let durable = w.durable_past(w.written());
    tokio::select! {
        done = durable => done.map_err(|e| {
            actix_web::Error::from(error::ApiError::unavailable(
                "storage_unavailable",
                format!("the answer could not be made durable: {e}"),
            ))
        })?,
        why = store.lost_quorum() => {
            if !error {
                return Err(error::ApiError::unavailable(
                    "cluster_unavailable",
                    format!("the answer could not be made durable: {why}"),
                )
                .into());
            }
        }
    }
    Ok(answer)
}

/// Binds `server` on `listen` the way every HTTP listener here runs: two
/// workers, no Nagle, no signal handling of its own (the process handles
/// signals and stops it in order), `shutdown_timeout_s` for open requests.
///
/// # Errors
/// When the address cannot be bound.
pub fn run_on<F, I, S, B>(
    server: HttpServer<F, I, S, B>,
    listen: &str,
    shutdown_timeout_s: u64,
) -> anyhow::Result<(actix_web::dev::Server, SocketAddr)>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: actix_service::IntoServiceFactory<S, actix_http::Request>,
    S: actix_web::dev::ServiceFactory<actix_http::Request, Config = actix_web::dev::AppConfig>
        + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<actix_http::Response<B>> + 'static,
    B: actix_web::body::MessageBody + 'static,
{
    let server = server
        .workers(2)
        // Small frames (WebSocket pushes, receipts) go out at once, not
        // after the peer's delayed ACK (40 ms a round trip under Nagle).
        .on_connect(|conn, _| {
            if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
                let _ = tcp.set_nodelay(true);
            }
        })
        .disable_signals()
        .shutdown_timeout(shutdown_timeout_s)
        .bind(listen)
        .with_context(|| format!("binding the HTTP API to {listen}"))?;
    let addr = *server
        .addrs()
        .first()
        .context("the HTTP server bound no address")?;
    Ok((server.run(), addr))
}
