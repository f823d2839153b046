//! TLS (rustls with ring) shared by the mediums and MIAP links: server
//! configurations from PEM files, and the wraps that put MIAP connections
//! under TLS on the node's listener and on a remote member's uplink.
//!
//! Owns: TLS configuration and wraps. Must not touch: what runs over them.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use switchboard_actors::transport::{LinkRead, LinkWrite, Wrap};
use tokio_rustls::rustls;
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An acceptor for the certificate chain in `cert` and the key in `key`
/// (PEM); errors name the configuration keys `keys` (cert, key).
///
/// # Errors
/// Files that cannot be read, hold no certificate or key, or do not match.
pub fn acceptor(cert: &Path, key: &Path, keys: (&str, &str)) -> anyhow::Result<TlsAcceptor> {
    Ok(TlsAcceptor::from(server_config(cert, key, keys)?))
}

/// The server configuration [`acceptor`] uses (for actix-web's listener).
///
/// # Errors
/// As [`acceptor`].
pub fn server_config(
    cert: &Path,
    key: &Path,
    keys: (&str, &str),
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (cert_key, key_key) = keys;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("{cert_key}: reading {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{cert_key}: {} is not PEM", cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{cert_key}: {} holds no certificate",
        cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("{key_key}: no private key in {}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| format!("{cert_key} and {key_key} do not make a usable pair"))?;
    Ok(Arc::new(config))
}

/// The node's MIAP listener under TLS: every accepted connection completes
/// a handshake before its first frame.
pub fn miap_server(acceptor: TlsAcceptor) -> Wrap {
    Arc::new(move |stream| {
        let acceptor = acceptor.clone();
        Box::pin(async move {
            let tls = acceptor.accept(stream).await?;
            let (r, w) = tokio::io::split(tls);
            Ok((Box::new(r) as LinkRead, Box::new(w) as LinkWrite))
        })
    })
}

/// A remote member's uplink under TLS: the node's certificate must chain to
/// a root in `ca` (PEM) and name `server` (a DNS name or an IP address).
///
/// # Errors
/// A CA file that cannot be used, or a server name that is neither.
pub fn miap_client(ca: &Path, server: &str) -> anyhow::Result<Wrap> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("--tls-ca: reading {}", ca.display()))?
    {
        let c = c.with_context(|| format!("--tls-ca: {} is not PEM", ca.display()))?;
        roots
            .add(c)
            .with_context(|| format!("--tls-ca: a certificate in {} is unusable", ca.display()))?;
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "--tls-ca: {} holds no certificate",
        ca.display()
    );
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(server.to_string()).map_err(|_| {
        anyhow::anyhow!("--tls-name: {server:?} is not a DNS name or an IP address")
    })?;
    let connector = TlsConnector::from(Arc::new(config));
    Ok(Arc::new(move |stream| {
        let (connector, name) = (connector.clone(), name.clone());
        Box::pin(async move {
            let tls = connector.connect(name, stream).await?;
            let (r, w) = tokio::io::split(tls);
            Ok((Box::new(r) as LinkRead, Box::new(w) as LinkWrite))
        })
    }))
}
