//! Commands on the local data directory: `serve`, `init` (and `config`,
//! answered in [`super::run`]).

use std::path::PathBuf;

use anyhow::{bail, Context as _};

use crate::client::Target;
use crate::node::{self, ADMIN_TOKEN_FILE};

pub(super) fn serve(t: &Target) -> anyhow::Result<()> {
    let cfg = t.config()?;
    crate::logging::init(&cfg);
    actix_rt::System::new().block_on(node::serve(cfg, t.config_file.clone()))
}

pub(super) fn init(t: &Target, data: Option<PathBuf>) -> anyhow::Result<()> {
    let mut cfg = t.config()?;
    if let Some(d) = data {
        cfg.data.dir = d;
    }
    let dir = cfg.data.dir.clone();
    actix_rt::System::new().block_on(async move {
        let store = node::open_store(&dir)?;
        let directory =
            switchboard_core::directory::Directory::load(store, cfg.miap.key_grace_s * 1000)?;
        if directory.broker_key()?.is_some() {
            bail!(
                "{} is already initialised; refusing to overwrite it",
                dir.display()
            );
        }
        let token = node::initialise(&dir, &directory)
            .await?
            .context("the data directory was initialised concurrently")?;
        println!(
            "initialised {}; admin token (also in {}):",
            dir.display(),
            dir.join(ADMIN_TOKEN_FILE).display()
        );
        println!("{token}");
        Ok(())
    })
}
