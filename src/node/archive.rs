//! The compliance archive on a node (`[archive]`, COMPLIANCE.md): its
//! signing key (made when missing, 0600), its files, and the archive member
//! (`archive-1`) on a thread of its own, which the broker gives a copy of
//! each delivery of an archived scope and tells when it concluded.
//!
//! Owns: starting the archive. Must not touch: what it records (the
//! member's), verification (`switchboard archive verify`).

use actix::prelude::*;
use anyhow::Context as _;

use switchboard_actors::archive::Archiver;
use switchboard_actors::member_session::MemberSession;
use switchboard_core::archive::{Archive, Cadence};

use super::Core;
use crate::archive::signing_key;
use crate::config::Config;

/// The archive's member id.
pub const MEMBER_ID: &str = "archive-1";

/// Opens the archive of `cfg` and starts its member on its own arbiter;
/// the broker gives it copies from now on.
///
/// # Errors
/// The key or the files cannot be had, or the files are inconsistent.
pub async fn start(cfg: &Config, core: &Core) -> anyhow::Result<(Addr<Archiver>, Arbiter)> {
    let data = &cfg.data.dir;
    let a = &cfg.archive;
    let key = signing_key(&a.key_file(data))?;
    let (dir, fingerprints) = (a.dir(data), a.fingerprints(data));
    let cadence = Cadence {
        every: a.checkpoint_every,
        interval_ms: a.checkpoint_interval_s * 1000,
    };
    let archive = Archive::open(&dir, &fingerprints, key, cadence)
        .with_context(|| format!("opening the archive in {}", dir.display()))?;
    let pending = dir.join("pending");
    std::fs::create_dir_all(&pending)?;
    let member = core.member_config(MEMBER_ID, None).await?;
    let tscs = MemberSession::new(member, core.broker.handle.clone(), core.clock.clone());
    let (members, store) = (core.members.clone(), core.store.clone());
    let directory = core.directory.clone();
    // In a cluster, every record goes on the archive stream too, which
    // every node reads.
    let replica = (core.cluster.as_ref()).map(|m| {
        let node = m.engine.settings().node_id.clone();
        let tx = switchboard_core::cluster::archive::replicate(&m.engine, &node, &dir);
        (node, tx)
    });
    let arbiter = Arbiter::new();
    let addr = Archiver::start_in_arbiter(&arbiter.handle(), move |_| {
        let a = Archiver::new(tscs, members, archive, (store, directory), pending);
        match replica {
            Some((node, tx)) => a.with_replica(node, tx),
            None => a,
        }
    });
    core.broker.shared.on_archive(
        switchboard_core::protocol::MemberId::new(MEMBER_ID),
        addr.clone().recipient(),
    );
    tracing::info!(dir = %dir.display(), fingerprints = %fingerprints.display(), "archive started");
    Ok((addr, arbiter))
}
