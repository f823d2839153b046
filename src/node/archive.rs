//! The compliance archive on a node (`[archive]`, COMPLIANCE.md): its
//! signing key (made when missing, 0600), its files, and the archive member
//! (`archive-1`) on a thread of its own, which the broker gives a copy of
//! each delivery of an archived scope and tells when it concluded.
//!
//! Owns: starting the archive. Must not touch: what it records (the
//! member's), verification (`switchboard archive verify`).

use std::path::Path;

use actix::prelude::*;
use anyhow::Context as _;

use switchboard_actors::archive::Archiver;
use switchboard_actors::member_session::MemberSession;
use switchboard_core::archive::{Archive, ArchiveKey, Cadence};

use super::Core;
use crate::config::Config;
use crate::secrets::{check_private, write_private};

/// The archive's member id.
pub const MEMBER_ID: &str = "archive-1";

/// The signing key in `path`: read (refused when others may read it), or
/// made and written (0600) when there is none.
///
/// # Errors
/// A file that cannot be read or written, or is no key.
pub fn signing_key(path: &Path) -> anyhow::Result<ArchiveKey> {
    if !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let key = ArchiveKey::generate();
        write_private(path, &format!("{}\n", hex(&key.seed())))?;
        tracing::info!(path = %path.display(), public = %hex(&key.public()), "made the archive's signing key");
        return Ok(key);
    }
    check_private(path)?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let seed = unhex(text.trim())
        .with_context(|| format!("{}: not an archive key (64 hex digits)", path.display()))?;
    Ok(ArchiveKey::from_seed(seed))
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    switchboard_core::archive::record::hex(b)
}

/// 32 bytes from 64 hex digits.
pub fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

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
    let arbiter = Arbiter::new();
    let addr = Archiver::start_in_arbiter(&arbiter.handle(), move |_| {
        Archiver::new(tscs, members, archive, store, pending)
    });
    core.broker.shared.on_archive(
        switchboard_core::protocol::MemberId::new(MEMBER_ID),
        addr.clone().recipient(),
    );
    tracing::info!(dir = %dir.display(), fingerprints = %fingerprints.display(), "archive started");
    Ok((addr, arbiter))
}
