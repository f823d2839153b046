//! The run loop of `switchboard serve`: the signals it handles (registered
//! before the node starts — SIGHUP's default action would end the process),
//! what it tells systemd, and the order of start, reloads and stop.

use std::path::PathBuf;

use anyhow::Context as _;

use super::assembly::Node;
use super::init::ADMIN_TOKEN_FILE;
use crate::config::Config;

/// `switchboard serve`: runs a node until SIGINT or SIGTERM, then shuts down
/// in order; SIGHUP reloads `config_file` (see [`Node::reload`]).
///
/// # Errors
/// When the node cannot start.
pub async fn serve(cfg: Config, config_file: Option<PathBuf>) -> anyhow::Result<()> {
    // Before anything else: SIGHUP's default action ends the process.
    let mut signals = Signals::new()?;
    let node = Node::start(&cfg).await?;
    // The token itself only in its file (0600): stdout and stderr end up
    // in a supervisor's journal, which more people read.
    if node.new_admin_token.is_some() {
        eprintln!(
            "switchboard: new data directory {}; the admin token is in {}",
            node.data_dir.display(),
            node.data_dir.join(ADMIN_TOKEN_FILE).display()
        );
    }
    // Stdout may be closed (a supervisor that read the first line): a
    // failed write must not bring the node down.
    use std::io::Write as _;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "switchboard: http listening on {}", node.http_addr);
    let _ = writeln!(out, "switchboard: miap listening on {}", node.miap_addr);
    if let Some(a) = node.smtp_addr {
        let _ = writeln!(out, "switchboard: smtp listening on {a}");
    }
    let _ = out.flush();
    sd_notify(&format!(
        "READY=1\nSTATUS=serving HTTP on {}, MIAP on {}",
        node.http_addr, node.miap_addr
    ));
    let mut current = cfg;
    while signals.next().await == Sig::Reload {
        current = node.reload(&current, config_file.as_deref()).await;
    }
    sd_notify("STOPPING=1\nSTATUS=shutting down");
    node.shutdown().await;
    Ok(())
}

/// Tells systemd (`Type=notify`) about the node's state when it runs under
/// it (`NOTIFY_SOCKET` set): `READY=1` once serving, `STOPPING=1` when the
/// ordered shutdown starts. Silent otherwise.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket (Linux).
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            Err(std::io::Error::other("abstract sockets need Linux"))
        }
    } else {
        sock.send_to(state.as_bytes(), std::path::Path::new(&path))
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// What a signal asks of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// SIGTERM or SIGINT: shut down in order.
    Stop,
    /// SIGHUP: reload the configuration.
    Reload,
}

/// The signals `serve` handles, registered once at start.
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Registers SIGTERM and SIGHUP handlers (SIGINT is ctrl-c).
    ///
    /// # Errors
    /// When a handler cannot be registered.
    pub fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
                hup: signal(SignalKind::hangup()).context("listening for SIGHUP")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// The next signal.
    pub async fn next(&mut self) -> Sig {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => { tracing::info!("SIGTERM"); Sig::Stop }
                _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT"); Sig::Stop }
                _ = self.hup.recv() => { tracing::info!("SIGHUP: reloading the configuration"); Sig::Reload }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Sig::Stop
        }
    }
}
