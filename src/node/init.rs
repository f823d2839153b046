//! The data directory: created owner-only, its store opened, and on first
//! start initialised — the broker key, the built-in members' keys and an
//! admin token.

use std::path::Path;

use anyhow::Context as _;

use switchboard_core::directory::{new_token, Directory};
use switchboard_core::protocol::{MemberId, MemberKeys, SecretKey};
use switchboard_core::store::Store;

use crate::gateways;
use crate::secrets::write_private;

pub use crate::secrets::ADMIN_TOKEN_FILE;

fn create_dir_private(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", dir.display()))?;
    }
    Ok(())
}

/// Opens the data directory's store.
///
/// # Errors
/// When the directory cannot be created or the database is held by another
/// process.
pub fn open_store(dir: &Path) -> anyhow::Result<Store> {
    create_dir_private(dir)?;
    Store::open(&dir.join("db")).with_context(|| {
        format!(
            "opening the database in {} (is another switchboard node using it?)",
            dir.display()
        )
    })
}

/// Opens a cluster node's store: `dir` holds its cache; the journal and
/// the store of record are the cluster's.
///
/// # Errors
/// As [`open_store`], and when JetStream does not answer.
pub fn open_clustered_store(
    dir: &Path,
    engine: &switchboard_core::cluster::Engine,
) -> anyhow::Result<Store> {
    create_dir_private(dir)?;
    Store::open_clustered(&dir.join("db"), engine).with_context(|| {
        format!(
            "opening the cluster's store with its cache in {} (is another switchboard node using it?)",
            dir.display()
        )
    })
}

/// How long a node waits for the keys another node initialises.
const CLUSTER_INIT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits until the broker key and every built-in member's keys, made by the
/// node that initialises the cluster, are in this node's cache.
async fn wait_for_cluster_keys(directory: &Directory) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + CLUSTER_INIT_WAIT;
    loop {
        let members = gateways::BUILT_IN
            .iter()
            .all(|(id, _)| directory.member(&MemberId::new(*id)).is_some());
        if members && directory.broker_key()?.is_some() {
            tracing::info!("joined a cluster another node initialised");
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "the cluster is being initialised by another node, and its keys did not arrive within {} s (if that node died while initialising, start it again)",
                CLUSTER_INIT_WAIT.as_secs()
            );
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Initialises a data directory's store if it is not yet: the broker key,
/// the built-in members' keys, and an admin token (returned, and written to
/// `DIR/admin.token` with mode 0600). Returns `None` if it was initialised.
///
/// # Errors
/// Storage or file-system failures.
pub async fn initialise(dir: &Path, directory: &Directory) -> anyhow::Result<Option<String>> {
    let fresh = directory.broker_key()?.is_none();
    if fresh && !directory.store().claim_init()? {
        // Another node of the cluster initialises it: its keys arrive
        // through the store's buckets.
        wait_for_cluster_keys(directory).await?;
        return Ok(None);
    }
    for (id, medium) in gateways::BUILT_IN {
        let id = MemberId::new(*id);
        if directory.member(&id).is_none() {
            directory
                .put_member(MemberKeys::generate(id, Some(*medium)))
                .await?;
        }
    }
    if !fresh {
        return Ok(None);
    }
    let token = new_token();
    directory.initialise(&SecretKey::generate(), &token).await?;
    write_private(&dir.join(ADMIN_TOKEN_FILE), &format!("{token}\n"))?;
    Ok(Some(token))
}
