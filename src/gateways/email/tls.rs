//! TLS for the email gateway (rustls): the SMTP server's STARTTLS acceptor,
//! from PEM files, and the relay transport with its TLS policy.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use tokio_rustls::TlsAcceptor;

/// A STARTTLS acceptor for the certificate chain in `cert` and the key in
/// `key` (PEM).
///
/// # Errors
/// Files that cannot be read, hold no certificate or key, or do not match.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    crate::tls::acceptor(cert, key, ("email.tls_cert", "email.tls_key"))
}

/// TLS to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayTls {
    /// Plain SMTP.
    None,
    /// STARTTLS when the relay offers it, without verifying its certificate
    /// (encryption against passive listeners, as Postfix's `may`).
    Opportunistic,
    /// STARTTLS or fail, the certificate verified.
    Required,
}

impl RelayTls {
    /// From `email.relay_tls`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "opportunistic" => Some(Self::Opportunistic),
            "required" => Some(Self::Required),
            _ => None,
        }
    }
}

/// The transport to `relay` (`host:port`) with `tls`; `ca` names a PEM file
/// of extra roots (empty: none).
///
/// # Errors
/// A relay that is not `host:port`, or a CA file that cannot be used.
pub fn relay_transport(
    relay: &str,
    tls: RelayTls,
    ca: &str,
) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let (host, port) = relay
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .ok_or_else(|| anyhow::anyhow!("email.relay: {relay:?} is not host:port"))?;
    let mut params = TlsParameters::builder(host.to_string());
    if !ca.is_empty() {
        let pem = std::fs::read(ca).with_context(|| format!("email.relay_ca: reading {ca}"))?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| anyhow::anyhow!("email.relay_ca: {ca}: {e}"))?;
        params = params.add_root_certificate(cert);
    }
    let tls = match tls {
        RelayTls::None => Tls::None,
        RelayTls::Opportunistic => Tls::Opportunistic(
            params
                .dangerous_accept_invalid_certs(true)
                .build_rustls()
                .context("TLS settings for the relay")?,
        ),
        RelayTls::Required => Tls::Required(
            params
                .build_rustls()
                .context("TLS settings for the relay")?,
        ),
    };
    Ok(
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(30)))
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let Err(e) = acceptor(&missing, &missing) else {
            panic!("a missing file")
        };
        assert!(format!("{e:#}").contains("email.tls_cert"), "{e:#}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not PEM at all").unwrap();
        let Err(e) = acceptor(&junk, &junk) else {
            panic!("junk")
        };
        assert!(format!("{e:#}").contains("no certificate"), "{e:#}");
        assert!(relay_transport("nowhere", RelayTls::None, "").is_err());
        assert!(relay_transport(
            "127.0.0.1:25",
            RelayTls::Required,
            &missing.display().to_string()
        )
        .is_err());
        assert!(relay_transport("127.0.0.1:25", RelayTls::Opportunistic, "").is_ok());
        assert_eq!(RelayTls::parse("required"), Some(RelayTls::Required));
        assert_eq!(RelayTls::parse("sometimes"), None);
    }
}
