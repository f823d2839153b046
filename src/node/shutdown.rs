//! The ordered shutdown: lame duck (not ready, WebSocket sessions closed,
//! new messages refused) while requests in progress finish; stop accepting
//! (HTTP, SMTP, the fax spool, MIAP); unbind from the SMSC; close remote
//! members' connections; wait for every gateway's in-flight steps; flush
//! the store; stop the broker.

use std::time::{Duration, Instant};

use switchboard_actors::gateway::{GetInFlight, InFlight};

use super::assembly::{Core, Node, StartedGateway};
use crate::gateways;

impl Node {
    /// Ordered shutdown: stop accepting requests (finishing those in
    /// progress), wait for the gateways' in-flight steps, flush the store,
    /// stop the broker.
    pub async fn shutdown(self) {
        tracing::info!("shutting down: no longer accepting requests");
        // Lame duck: not ready, WebSocket sessions closed (1001), new
        // messages refused — while requests in progress finish.
        let _ = self.draining.send(true);
        for t in &self.tasks {
            t.abort();
        }
        self.server.stop(true).await;
        if let Some(esme) = &self.sms {
            let (done, unbound) = tokio::sync::oneshot::channel();
            if esme.send(gateways::sms::esme::Job::Stop(done)).is_ok() {
                let _ = actix_rt::time::timeout(Duration::from_secs(5), unbound).await;
            }
        }
        // Remote members are told by their connection closing; they log in
        // again and resend when the node is back.
        self.links.close_all();
        self.core.stop(self.shutdown_timeout).await;
        tracing::info!("shutdown complete");
    }
}

impl Core {
    /// Waits (up to `timeout`) for every gateway's in-flight steps, flushes
    /// the store and stops the broker.
    pub async fn stop(self, timeout: Duration) {
        let gateways = self
            .gateways
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        drain(&gateways, timeout).await;
        if let Some((archive, arbiter)) = &self.archive {
            // What it has queued is written, and a checkpoint signed.
            let flush = switchboard_actors::archive::FlushArchive { checkpoint: true };
            let _ = archive.send(flush).await;
            arbiter.stop();
        }
        if let Err(e) = self.store.writer().flush().await {
            tracing::error!(error = %e, "final flush failed");
        }
        if let Some(m) = &self.cluster {
            m.leave();
        }
        self.broker.stop();
    }
}

/// Whether a gateway still has a step to finish: a client waiting for the
/// broker's decision, a delivery on its medium, a report not acknowledged.
fn busy(f: &InFlight) -> bool {
    f.waiting > 0 || f.delivering > 0 || f.unacked_reports > 0
}

/// Waits until none of `gateways` has a step in flight (a stopped one has
/// none), or `timeout` has passed — then what is left is durable and
/// resumes on the next start.
pub(super) async fn drain(gateways: &[StartedGateway], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut left = Vec::new();
        for g in gateways {
            if let Ok(f) = g.in_flight.send(GetInFlight).await {
                if busy(&f) {
                    left.push((g.id.as_str(), f));
                }
            }
        }
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            tracing::warn!(gateways = ?left, "shutdown timeout: stopping with work in flight (it is durable and resumes on start)");
            return;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}
