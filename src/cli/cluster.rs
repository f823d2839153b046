//! `switchboard cluster`: the cluster's streams and buckets (`init`) and
//! its state (`status`), straight from NATS with the configuration's
//! `[cluster]` keys — no node needs to run.

use std::time::Duration;

use anyhow::Context as _;
use switchboard_core::cluster::{init, status, Engine};
use switchboard_core::protocol::clock::{Clock, SystemClock};
use switchboard_core::store::Tree;

use super::ClusterCmd;
use crate::client::Target;

/// How long the commands wait for a NATS server, and for JetStream to
/// answer (a leader election takes a few seconds).
const WAIT: Duration = Duration::from_secs(15);

pub(super) fn cluster(t: &Target, cmd: &ClusterCmd) -> anyhow::Result<()> {
    let cfg = t.config()?;
    let settings = cfg.cluster.settings();
    let engine = Engine::connect(&settings, WAIT)?;
    let e = engine.clone();
    engine
        .run(async move { init::wait_ready(&e, WAIT).await })?
        .context("JetStream")?;
    match cmd {
        ClusterCmd::Init => {
            let e = engine.clone();
            let done = engine.run(async move { init::ensure(&e, &Tree::names()).await })??;
            for d in &done {
                println!("{:<8} {} ({} replicas)", d.action, d.stream, d.replicas);
            }
            let created = done.iter().filter(|d| d.action != "kept").count();
            println!(
                "cluster ready at {}: {created} of {} streams and buckets created or changed",
                settings.urls.join(","),
                done.len()
            );
        }
        ClusterCmd::Status => {
            let e = engine.clone();
            let now = SystemClock.now_ms();
            let st = engine.run(async move { status::status(&e, now).await })??;
            println!("{}", serde_json::to_string_pretty(&st)?);
        }
    }
    Ok(())
}
