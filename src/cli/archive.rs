//! `switchboard archive`: the compliance archive's files, read where they
//! are (`[archive]` of the configuration).

use anyhow::Context as _;
use clap::Subcommand;

use switchboard_core::archive::verify;

use crate::archive::{find, signing_key, unhex, Paths, PurgeRow};
use crate::client::Target;
use switchboard_core::archive::search::{Query, TextQuery};

/// `archive` subcommands.
#[derive(Debug, Subcommand)]
pub enum ArchiveCmd {
    /// Verify every record, the hash chain and the signed checkpoints;
    /// exits 0 when all holds, else names the first bad record.
    Verify {
        /// The signing key's public half (64 hex digits) to verify with;
        /// default: the one of `archive.signing_key` (for `--export`: the
        /// manifest's, unless given).
        #[arg(long)]
        public_key: Option<String>,
        /// Verify an exported set in this directory instead.
        #[arg(long)]
        export: Option<std::path::PathBuf>,
    },
    /// Export the records a search finds, with a manifest that verifies on
    /// its own.
    Export {
        /// `eml`, `mbox` or `jsonl`, written beside the raw records.
        #[arg(long, value_enum)]
        format: crate::archive::Format,
        /// The directory (made if missing).
        #[arg(long)]
        out: std::path::PathBuf,
        /// Which records (as `archive search`).
        #[command(flatten)]
        filters: SearchArgs,
    },
    /// Find records: every filter given must match; the text is words,
    /// "quoted phrases", OR, -word / NOT word.
    Search(SearchArgs),
    /// How long records are kept, by scope.
    #[command(subcommand)]
    Retention(RetentionCmd),
    /// Legal holds: nothing of a participant's is purged while one stands.
    #[command(subcommand)]
    Hold(HoldCmd),
    /// Remove what retention lets go (no hold keeping it), each record
    /// leaving a signed tombstone; with the node stopped.
    Purge {
        /// Only list what would go.
        #[arg(long)]
        dry_run: bool,
        /// As if it were this time (RFC 3339, YYYY-MM-DD or ms): to see or
        /// do what a later purge will.
        #[arg(long)]
        now: Option<String>,
    },
}

/// `archive retention` subcommands.
#[derive(Debug, Subcommand)]
pub enum RetentionCmd {
    /// Keep records of SCOPE (`default`, `domain:D`, `group:G`, `user:U`)
    /// DAYS days (0: purge at the next purge); the most specific wins.
    Set {
        /// The scope.
        scope: String,
        /// Days.
        days: u64,
    },
    /// Every scope and its days.
    List,
    /// Forget a scope's retention (its records fall to a wider scope).
    Remove {
        /// The scope.
        scope: String,
    },
}

/// `archive hold` subcommands.
#[derive(Debug, Subcommand)]
pub enum HoldCmd {
    /// Place a hold.
    Add {
        /// The user or address whose records it keeps.
        #[arg(long)]
        participant: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Every hold.
    List,
    /// Lift a hold.
    Remove {
        /// Its id.
        id: u64,
    },
}

/// `archive search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// A party (sender or recipient); every one given must be one.
    #[arg(long)]
    pub participant: Vec<String>,
    /// Delivered at or after: RFC 3339, YYYY-MM-DD or milliseconds.
    #[arg(long)]
    pub from: Option<String>,
    /// Delivered before.
    #[arg(long)]
    pub to: Option<String>,
    /// The text.
    #[arg(long)]
    pub text: Option<String>,
    /// Over this medium.
    #[arg(long)]
    pub medium: Option<String>,
    /// With this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// At most this many (default 100).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Only records after this seq (a previous page's `next`).
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    /// JSON: `{"records": [...], "next"}`.
    #[arg(long)]
    pub json: bool,
    /// Every node's records, from the cluster's archive stream (read
    /// straight from NATS with the `[cluster]` settings; no node needs to
    /// run); each line starts with the node.
    #[arg(long)]
    pub cluster: bool,
}

/// The query of `args`.
///
/// # Errors
/// A time or a text that does not parse.
pub fn query_of(args: &SearchArgs) -> anyhow::Result<Query> {
    let time = |what: &str, t: &Option<String>| -> anyhow::Result<Option<u64>> {
        t.as_deref()
            .map(|s| {
                switchboard_core::time::parse_time(s)
                    .with_context(|| format!("--{what}: RFC 3339, YYYY-MM-DD or milliseconds"))
            })
            .transpose()
    };
    Ok(Query {
        participants: args.participant.clone(),
        from_ms: time("from", &args.from)?,
        to_ms: time("to", &args.to)?,
        medium: args.medium.clone(),
        tag: args.tag.clone(),
        text: TextQuery::parse(args.text.as_deref().unwrap_or(""))
            .map_err(|e| anyhow::anyhow!("--text: {e}"))?,
        after: args.after,
        limit: args.limit.clamp(1, 1000),
        candidates: None,
    })
}

pub(super) fn archive(t: &Target, cmd: &ArchiveCmd) -> anyhow::Result<()> {
    let cfg = t.config()?;
    let a = &cfg.archive;
    let data = &cfg.data.dir;
    let now = switchboard_core::protocol::clock::Clock::now_ms(
        &switchboard_core::protocol::clock::SystemClock,
    );
    let dir = a.dir(data);
    match cmd {
        ArchiveCmd::Retention(r) => {
            use switchboard_core::archive::retention::{retention, set_retention};
            let shown = match r {
                RetentionCmd::Set { scope, days } => set_retention(&dir, scope, Some(*days))?,
                RetentionCmd::Remove { scope } => set_retention(&dir, scope, None)?,
                RetentionCmd::List => retention(&dir)?,
            };
            for (scope, days) in &shown.scopes {
                println!("{scope}\t{days} days");
            }
            Ok(())
        }
        ArchiveCmd::Hold(h) => {
            use switchboard_core::archive::retention::{add_hold, holds, remove_hold};
            match h {
                HoldCmd::Add {
                    participant,
                    reason,
                } => {
                    let hold = add_hold(&dir, participant, reason, now)?;
                    println!("hold {} on {participant}", hold.id);
                }
                HoldCmd::Remove { id } => {
                    anyhow::ensure!(remove_hold(&dir, *id)?, "no hold {id}");
                    println!("hold {id} lifted");
                }
                HoldCmd::List => {
                    for h in holds(&dir)? {
                        println!(
                            "{}\t{}\t{}\t{}",
                            h.id,
                            h.participant,
                            crate::http::time::rfc3339(h.at_ms),
                            h.reason
                        );
                    }
                }
            }
            Ok(())
        }
        ArchiveCmd::Purge { dry_run, now: at } => {
            let at = match at {
                Some(t) => switchboard_core::time::parse_time(t)
                    .context("--now: RFC 3339, YYYY-MM-DD or milliseconds")?,
                None => now,
            };
            let key = signing_key(&a.key_file(data))?;
            let cadence = switchboard_core::archive::Cadence {
                every: a.checkpoint_every,
                interval_ms: a.checkpoint_interval_s * 1000,
            };
            let opened =
                switchboard_core::archive::Archive::open(&dir, &a.fingerprints(data), key, cadence);
            let due: Vec<PurgeRow> = match opened {
                Ok(mut archive) => (archive.purge_due(at, *dry_run)?.iter())
                    .map(PurgeRow::of)
                    .collect(),
                // The node runs it: the purge goes through its API.
                Err(switchboard_core::archive::ArchiveError::Busy(_)) => {
                    let body = serde_json::json!({"dry_run": dry_run, "now": at.to_string()});
                    let v = t.admin()?.post("/v1/admin/archive/purge", &body)?;
                    serde_json::from_value(v["records"].clone())?
                }
                Err(e) => return Err(e.into()),
            };
            if *dry_run {
                for r in &due {
                    println!(
                        "{}\t{}\t{} -> {}\t{}",
                        r.seq,
                        crate::http::time::rfc3339(r.at_ms),
                        r.from,
                        r.to,
                        r.txn
                    );
                }
                println!("{} records would be purged", due.len());
            } else {
                println!(
                    "{} records purged, each under a signed tombstone",
                    due.len()
                );
            }
            Ok(())
        }
        ArchiveCmd::Search(args) => {
            let found = if args.cluster {
                let settings = cfg.cluster.settings();
                let wait = std::time::Duration::from_secs(15);
                let engine = switchboard_core::cluster::Engine::connect(&settings, wait)?;
                let e = engine.clone();
                let streamed = engine
                    .run(async move { switchboard_core::cluster::archive::read_all(&e).await })??;
                crate::archive::find_streamed(streamed, &query_of(args)?)
            } else {
                let paths = Paths::of(&cfg);
                anyhow::ensure!(
                    crate::archive::exists(&paths),
                    "{}: no archive",
                    paths.dir.display()
                );
                find(&paths, &query_of(args)?)?
            };
            if args.json {
                println!("{}", serde_json::to_string_pretty(&found)?);
            } else {
                for h in &found.records {
                    if let Some(node) = &h.node {
                        print!("{node}\t");
                    }
                    println!(
                        "{}\t{}\t{} -> {}\t{}\t{}\t{}",
                        h.seq,
                        h.time,
                        h.from,
                        h.to,
                        h.medium,
                        h.txn,
                        h.body.lines().next().unwrap_or("")
                    );
                }
                if let Some(n) = found.next {
                    println!("(more: --after {n})");
                }
            }
            Ok(())
        }
        ArchiveCmd::Export {
            format,
            out,
            filters,
        } => {
            anyhow::ensure!(
                !filters.cluster,
                "--cluster is for archive search: export runs on the node whose archive it is"
            );
            let paths = Paths::of(&cfg);
            let n = crate::archive::export(&paths, &query_of(filters)?, *format, out)?;
            println!("{n} records exported to {}", out.display());
            Ok(())
        }
        ArchiveCmd::Verify {
            public_key,
            export: Some(dir),
        } => {
            let pinned = public_key
                .as_deref()
                .map(|p| unhex(p).context("--public-key: 64 hex digits"))
                .transpose()?;
            let n = switchboard_core::archive::export::verify_export(dir, pinned.as_ref())
                .map_err(|e| anyhow::anyhow!("the export does not verify: {e}"))?;
            println!("export: ok — {n} records, under the manifest's checkpoints");
            Ok(())
        }
        ArchiveCmd::Verify {
            public_key,
            export: None,
        } => {
            let public = match public_key {
                Some(p) => unhex(p).context("--public-key: 64 hex digits")?,
                None => {
                    let file = a.key_file(data);
                    anyhow::ensure!(
                        file.exists(),
                        "{}: no archive key (is the archive enabled?)",
                        file.display()
                    );
                    signing_key(&file)?.public()
                }
            };
            let v = verify(&a.dir(data), &a.fingerprints(data), &public)?;
            let summary = format!(
                "{} records, {} purged under signed tombstones, {} checkpoints covering records 1 to {}",
                v.records, v.purged, v.checkpoints, v.covered
            );
            match v.problems.first() {
                None => {
                    println!("archive: ok — {summary}");
                    if v.covered < v.records {
                        println!(
                            "archive: records {} to {} are in the chain, not yet under a checkpoint",
                            v.covered + 1,
                            v.records
                        );
                    }
                    Ok(())
                }
                Some(first) => {
                    for p in &v.problems {
                        eprintln!("archive: {p}");
                    }
                    anyhow::bail!("the archive does not verify: {first} ({summary})")
                }
            }
        }
    }
}
