//! `switchboard archive`: the compliance archive's files, read where they
//! are (`[archive]` of the configuration).

use anyhow::Context as _;
use clap::Subcommand;

use switchboard_core::archive::verify;

use crate::archive::{find, signing_key, unhex, Paths};
use crate::client::Target;
use switchboard_core::archive::search::{Query, TextQuery};

/// `archive` subcommands.
#[derive(Debug, Subcommand)]
pub enum ArchiveCmd {
    /// Verify every record, the hash chain and the signed checkpoints;
    /// exits 0 when all holds, else names the first bad record.
    Verify {
        /// The signing key's public half (64 hex digits) to verify with;
        /// default: the one of `archive.signing_key`.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Find records: every filter given must match; the text is words,
    /// "quoted phrases", OR, -word / NOT word.
    Search(SearchArgs),
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
    })
}

pub(super) fn archive(t: &Target, cmd: &ArchiveCmd) -> anyhow::Result<()> {
    let cfg = t.config()?;
    let a = &cfg.archive;
    let data = &cfg.data.dir;
    match cmd {
        ArchiveCmd::Search(args) => {
            let paths = Paths::of(&cfg);
            anyhow::ensure!(
                crate::archive::exists(&paths),
                "{}: no archive",
                paths.dir.display()
            );
            let found = find(&paths, &query_of(args)?)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&found)?);
            } else {
                for h in &found.records {
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
        ArchiveCmd::Verify { public_key } => {
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
                "{} records, {} checkpoints covering records 1 to {}",
                v.records, v.checkpoints, v.covered
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
