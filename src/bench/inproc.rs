//! `--target inproc`: a node started in this process on a temp dir (the IM
//! gateway originates, the IM inbox receives; every MIAP step and MAC, sled
//! durable), optionally with `--users` in its directory first, and with
//! `--archive` every message archived.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use actix::prelude::*;
use anyhow::{bail, Context as _};

use switchboard_actors::bus::HANDOFFS;
use switchboard_actors::gateway::{Originate, Receipt};
use switchboard_core::directory::Profile;
use switchboard_core::protocol::Outcome;

use super::report::{cpu_seconds, progress, round, rss_now, store_counts, Tally};
use super::{due, originate, originate_between, user_name, BenchArgs};
use crate::config::Config;

/// Counts `Delivered` receipts.
pub(super) struct Observer(pub(super) Tally);

impl Actor for Observer {
    type Context = Context<Self>;
}

impl Handler<Receipt> for Observer {
    type Result = ();
    fn handle(&mut self, r: Receipt, _: &mut Context<Self>) {
        if r.outcome == Outcome::Delivered {
            self.0.delivered(r.txn.to_string());
        }
    }
}

/// Sends the messages into `gw`, keeping at most `inflight` submitted and
/// not yet delivered; returns when all are delivered or at the timeout.
pub(super) async fn pump<A>(
    gw: Addr<A>,
    args: &BenchArgs,
    tally: &Tally,
    make: &dyn Fn(usize) -> Originate,
) -> anyhow::Result<(Instant, Duration)>
where
    A: Handler<Originate>,
    A::Context: actix::dev::ToEnvelope<A, Originate>,
{
    let start = Instant::now();
    let deadline = start + args.timeout;
    let mut tick = Instant::now();
    for i in 0..args.messages {
        while i - tally.settled().min(i) >= args.inflight {
            if Instant::now() > deadline {
                bail!(
                    "timed out with {} of {} delivered",
                    tally.count(),
                    args.messages
                );
            }
            actix_rt::time::sleep(Duration::from_micros(100)).await;
        }
        let at = due(start, i, args.rate);
        if let Some(t) = at {
            actix_rt::time::sleep_until(t.into()).await;
        }
        let (gw, tally2, print) = (gw.clone(), tally.clone(), args.print_accepted);
        let o = make(i);
        actix_rt::spawn(async move {
            let t0 = at.unwrap_or_else(Instant::now);
            match gw.send(o).await {
                Ok(Ok(acc)) => {
                    if print {
                        println!("accepted {}", acc.txn);
                    }
                    tally2.started(acc.txn.to_string(), t0)
                }
                Ok(Err(e)) => tally2.failed(format!("not accepted: {e}")),
                Err(e) => tally2.failed(format!("the gateway did not answer: {e}")),
            }
        });
        if tick.elapsed() > Duration::from_millis(200) {
            progress(tally, args.messages, start);
            tick = Instant::now();
        }
    }
    while tally.settled() < args.messages && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(1)).await;
        if tick.elapsed() > Duration::from_millis(200) {
            progress(tally, args.messages, start);
            tick = Instant::now();
        }
    }
    tally.end();
    Ok((start, start.elapsed()))
}

/// The domain the bench's users are in when every message is archived.
const ARCHIVED_DOMAIN: &str = "bench.example";

/// A node's core on `dir` (nothing listening), with users `bench-a` and
/// `bench-b`; the IM gateway's outcomes go to `receipts`. With `archive`,
/// the compliance archive is on and the users are in a domain that
/// archives, so every message is archived. Also used by the criterion
/// bench.
///
/// # Errors
/// A node that does not start.
pub async fn inproc_core(
    dir: &std::path::Path,
    receipts: Recipient<Receipt>,
    archive: bool,
) -> anyhow::Result<crate::node::Core> {
    // The environment's settings (`SWITCHBOARD_BROKER__SHARDS=1`, …), then
    // the temp data directory.
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.push(("SWITCHBOARD_DATA__DIR".into(), dir.display().to_string()));
    if archive {
        vars.push(("SWITCHBOARD_ARCHIVE__ENABLED".into(), "true".into()));
    }
    let cfg = Config::load_with(None, vars.into_iter())?;
    let core = crate::node::Core::start(&cfg, Some(receipts)).await?;
    if archive {
        let archiving = switchboard_core::policy::Domain {
            archive: true,
            ..Default::default()
        };
        (core.directory.policy())
            .put_domain(ARCHIVED_DOMAIN, &archiving)
            .await?;
    }
    for u in ["bench-a", "bench-b"] {
        core.directory.put_profile(profile(u, archive)).await?;
    }
    Ok(core)
}

/// An IM-only user, in the archiving domain with `archive`.
fn profile(id: &str, archive: bool) -> Profile {
    let mut p = Profile::im_only(id);
    if archive {
        p.domain = Some(ARCHIVED_DOMAIN.into());
    }
    p
}

/// Records the archive has written (its queue flushed first), when it is
/// on.
async fn archive_records(core: &crate::node::Core) -> Option<u64> {
    let (addr, _) = core.archive.as_ref()?;
    let flush = switchboard_actors::archive::FlushArchive { checkpoint: false };
    addr.send(flush).await.ok()
}

pub(super) fn inproc(args: &BenchArgs, tally: &Tally) -> anyhow::Result<(Instant, Duration)> {
    let dir = tempfile::tempdir().context("a temp dir for the node")?;
    let copy = tempfile::tempdir().context("a temp dir for the node")?;
    actix_rt::System::new().block_on(async {
        let observer = Observer(tally.clone()).start();
        let mut core = inproc_core(dir.path(), observer.clone().recipient(), args.archive).await?;
        if args.users > 0 {
            let cpu0 = cpu_seconds();
            let rss0 = rss_now();
            let t = Instant::now();
            provision(&core, args.users, args.archive).await?;
            let took = t.elapsed().as_secs_f64();
            let per_user = rss_now().saturating_sub(rss0) / args.users as u64;
            tally.note("users", args.users);
            tally.note("provision_s", round(took, 2));
            tally.note("users_per_s", round(args.users as f64 / took, 0));
            tally.note("rss_bytes_per_user", per_user);
            // A node starting on a directory of that size: a copy of this
            // one once it is flushed and stopped (its files stay locked
            // while its actors wind down).
            core.stop(Duration::from_secs(10)).await;
            // Let the first node's threads wind down before measuring.
            actix_rt::time::sleep(Duration::from_secs(1)).await;
            tally.note("data_dir_bytes", dir_bytes(dir.path()));
            copy_dir(dir.path(), copy.path())?;
            let t = Instant::now();
            core = inproc_core(copy.path(), observer.recipient(), args.archive).await?;
            tally.note("start_s", round(t.elapsed().as_secs_f64(), 2));
            tally.setup_done(cpu0);
        }
        let (size, users) = (args.size, args.users);
        let make = move |i: usize| {
            if users == 0 {
                return originate(size, i);
            }
            // Spread over the directory: a different pair each time.
            let from = user_name(i % users);
            let to = user_name(i.wrapping_mul(7919).wrapping_add(1) % users);
            originate_between(size, i, &from, &to)
        };
        tally.store_from(Some(store_counts(&core.store.write_counts())));
        tally.handoffs_at(HANDOFFS.counts());
        let r = pump(core.im.clone(), args, tally, &make).await;
        tally.handoffs_at(HANDOFFS.counts());
        // Writes queued by the last steps (closing the outbox) count too.
        let _ = core.store.writer().barrier().await;
        tally.store_to(Some(store_counts(&core.store.write_counts())));
        if let Some(n) = archive_records(&core).await {
            tally.note("archive_records", n);
        }
        core.stop(Duration::from_secs(5)).await;
        r
    })
}

/// Puts `n` IM users (`u0`, `u1`, …) in the directory, 1024 at a time (so
/// their writes share group commits).
async fn provision(core: &crate::node::Core, n: usize, archive: bool) -> anyhow::Result<()> {
    use futures_util::stream::{FuturesUnordered, StreamExt as _};
    let mut pending = FuturesUnordered::new();
    let mut tick = Instant::now();
    for i in 0..n {
        let d = core.directory.clone();
        pending.push(async move { d.put_profile(profile(&user_name(i), archive)).await });
        if pending.len() >= 1024 {
            if let Some(r) = pending.next().await {
                r?;
            }
        }
        if std::io::stderr().is_terminal() && tick.elapsed() > Duration::from_millis(500) {
            eprint!("\rprovisioning users: {i}/{n} ");
            tick = Instant::now();
        }
    }
    while let Some(r) = pending.next().await {
        r?;
    }
    Ok(())
}

/// Bytes under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Copies the files under `from` into `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)
                .with_context(|| format!("copying {}", e.path().display()))?;
        }
    }
    Ok(())
}
