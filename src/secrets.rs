//! Secret files: written readable by their owner only, and refused when
//! others may read them. The admin token's file is here too.
//!
//! Owns: the modes of secret files. Must not touch: what is in them.

use std::path::Path;

use anyhow::Context as _;

/// The file holding the admin token in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Writes `text` to `path`, readable by the owner only — a file that was
/// there already included: its mode is set to 0600 before `text` goes in.
///
/// # Errors
/// A file that cannot be written.
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Refuses a secret file (a member key) that others than its owner may
/// read, as ssh does a private key: the secret may already have leaked,
/// and running on it would hide that.
///
/// # Errors
/// When the file's mode gives its group or others any access.
pub fn check_private(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "{} holds a secret and may be read by others (mode {:o}); run: chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_secret_is_written_owner_only_even_over_a_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("admin.token");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = check_private(&p).unwrap_err().to_string();
        assert!(err.contains("chmod 600") && err.contains("644"), "{err}");
        write_private(&p, "new").unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        check_private(&p).unwrap();
    }
}
