//! `switchboard archive`: the compliance archive's files, read where they
//! are (`[archive]` of the configuration).

use anyhow::Context as _;
use clap::Subcommand;

use switchboard_core::archive::verify;

use crate::client::Target;
use crate::node::archive::{signing_key, unhex};

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
}

pub(super) fn archive(t: &Target, cmd: &ArchiveCmd) -> anyhow::Result<()> {
    let cfg = t.config()?;
    let a = &cfg.archive;
    let data = &cfg.data.dir;
    match cmd {
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
