//! What every HTTP listener here shares — the node's API and a remote IM
//! gateway's own server: the one error shape ([`error`]), times as the API
//! writes them ([`time`]), `/healthz` ([`health`]), and how a server is
//! bound and run ([`run_on`]); answers held until they are durable
//! ([`when_durable`]).
//!
//! Owns: HTTP plumbing. Must not touch: any handler's state (it imports
//! nothing of the product but the connection caps, [`crate::limits`]).

pub mod error;
pub mod health;
pub mod time;

use std::net::SocketAddr;

use actix_web::HttpServer;
use anyhow::Context as _;
use switchboard_core::store::Store;

use crate::limits::Peers;

/// A listener's connection caps (`http.max_connections`,
/// `http.max_connections_per_peer`).
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Open connections in all (WebSocket sessions included); more wait in
    /// the listen backlog until one closes.
    pub total: usize,
    /// Open connections per client address; another is answered `503
    /// too_many_connections` and closed.
    pub per_peer: usize,
}

/// How a listener runs: where, its caps, and TLS (`http.tls_cert`,
/// `http.tls_key`; `None`: plain HTTP).
#[derive(Clone)]
pub struct Listener {
    /// The address to bind.
    pub addr: String,
    /// Its connection caps.
    pub caps: Caps,
    /// Its TLS configuration.
    pub tls: Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>,
}

/// The TCP connection under a connection actix-web hands `on_connect`:
/// plain, or under TLS (then `true`).
fn tcp_of(conn: &dyn std::any::Any) -> Option<(&actix_web::rt::net::TcpStream, bool)> {
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        return Some((tcp, false));
    }
    conn.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>>()
        .map(|tls| (tls.get_ref().0, true))
}

/// What a connection over its address's cap is told before it is closed.
const TOO_MANY: &str = "{\"error\":{\"code\":\"too_many_connections\",\"message\":\"too many connections from your address; close one and try again\"}}";

/// Answers a connection over its address's cap and closes it, without
/// reading from it: the answer fits in the socket's buffer (a client that
/// sent nothing yet still finds it). Under TLS it is only closed: the
/// answer would have to be encrypted, and the handshake was all it got.
fn refuse(tcp: &actix_web::rt::net::TcpStream, tls: bool) {
    let sock = socket2::SockRef::from(tcp);
    if tls {
        let _ = sock.shutdown(std::net::Shutdown::Both);
        return;
    }
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{TOO_MANY}",
        TOO_MANY.len()
    );
    let _ = sock.send(answer.as_bytes());
    let _ = sock.shutdown(std::net::Shutdown::Both);
}

/// A connection's place among its address's, kept in the connection's data
/// for as long as it is open.
struct Held(#[allow(dead_code)] crate::limits::PeerSlot);

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

/// Binds `server` as `listen` says (address, caps, TLS) the way every
/// HTTP listener here runs: two workers, no Nagle, no signal handling of its own (the process handles
/// signals and stops it in order), `shutdown_timeout_s` for open requests.
///
/// # Errors
/// When the address cannot be bound.
pub fn run_on<F, I, S, B>(
    server: HttpServer<F, I, S, B>,
    listen: &Listener,
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
    const WORKERS: usize = 2;
    let caps = listen.caps;
    let peers = Peers::default();
    let server = server
        .workers(WORKERS)
        // The cap is per worker.
        .max_connections(caps.total.div_ceil(WORKERS).max(1))
        .on_connect(move |conn, data| {
            let Some((tcp, tls)) = tcp_of(conn) else {
                return;
            };
            // Small frames (WebSocket pushes, receipts) go out at once, not
            // after the peer's delayed ACK (40 ms a round trip under Nagle).
            let _ = tcp.set_nodelay(true);
            let Ok(peer) = tcp.peer_addr() else {
                return;
            };
            match peers.take(peer.ip(), caps.per_peer) {
                Some(slot) => {
                    data.insert(Held(slot));
                }
                None => {
                    tracing::warn!(peer = %peer, "HTTP connection refused: too many from this address");
                    refuse(tcp, tls);
                }
            }
        })
        .disable_signals()
        .shutdown_timeout(shutdown_timeout_s);
    let addr = &listen.addr;
    let server = match &listen.tls {
        None => server.bind(addr),
        Some(tls) => server.bind_rustls_0_23(addr, (**tls).clone()),
    }
    .with_context(|| format!("binding the HTTP API to {addr}"))?;
    let addr = *server
        .addrs()
        .first()
        .context("the HTTP server bound no address")?;
    Ok((server.run(), addr))
}
