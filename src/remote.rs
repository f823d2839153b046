//! A gateway in its own process (`switchboard gateway`): one medium's
//! gateway that reaches a node over MIAP/TCP through an [`Uplink`]. It has
//! its own data directory (its outbox, the medium's records), logs in with
//! the key file `switchboard member add` wrote, and reconnects with back-off;
//! after every reconnection it logs in again and resends what the node has
//! not acknowledged.
//!
//! A remote gateway does not see the node's directory: senders on its
//! medium are not mapped to users (they are `medium:address` senders), and
//! the email gateway's SMTP server accepts any local-domain recipient at
//! `RCPT`, refusing an unknown one after `DATA` once the broker has said so.
//! A remote IM gateway asks the broker whose token a client shows it
//! (`Identify`) and tells it whose sessions it holds
//! ([`crate::gateways::im::remote`]).
//!
//! A processor in its own process (`switchboard processor`) is the same
//! arrangement for a content converter: the node routes the content of the
//! messages whose route it fits through it (`Transmit` in and on), and it
//! reports to the broker over the same link. It keeps no state.
//!
//! Owns: one remote member's process (its store, its link, its shutdown).
//! Must not touch: the node's state — everything goes over MIAP.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use switchboard_actors::bus::LinkUp;
use switchboard_actors::bus::{BrokerHandle, MiapFrame};
use switchboard_actors::gateway::{Gateway, GatewayConfig, Receipt, ReceiptSink};
use switchboard_actors::medium::Medium;
use switchboard_actors::registry::MemberRegistry;
use switchboard_actors::transport::{Uplink, UplinkConfig, Wrap};
use switchboard_core::directory::Directory;
use switchboard_core::protocol::clock::SharedClock;
use switchboard_core::protocol::{MediumKind, MemberId, SecretKey, SystemClock};
use switchboard_core::store::Store;

use crate::config::Config;
use crate::node;

/// What `switchboard member add` writes (JSON, mode 0600).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// The member id.
    pub member: String,
    /// Its medium (gateways).
    pub medium: Option<MediumKind>,
    /// Its kind (processors: `sms`, `email`, `fax`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processor: Option<String>,
    /// The key id.
    pub key_id: u32,
    /// The key, hex.
    pub key: String,
    /// The broker's id.
    pub broker: String,
}

impl KeyFile {
    /// Reads a key file.
    ///
    /// # Errors
    /// A file that cannot be read, that others may read
    /// ([`crate::secrets::check_private`]), or that is not a key file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        crate::secrets::check_private(path)?;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the key file {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a member key file", path.display()))
    }

    /// Writes it, readable by the owner only.
    ///
    /// # Errors
    /// A file that cannot be written.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        crate::secrets::write_private(path, &serde_json::to_string_pretty(self)?)
    }
}

/// How to run a remote gateway.
#[derive(Clone)]
pub struct RemoteGateway {
    /// The medium.
    pub medium: MediumKind,
    /// The node's MIAP address.
    pub connect: String,
    /// The key file.
    pub key_file: PathBuf,
    /// The gateway's own data directory.
    pub data: PathBuf,
    /// TLS to the node, if it asks for it.
    pub tls: Option<Wrap>,
}

/// Runs a remote gateway until SIGINT or SIGTERM (inside an actix system).
///
/// # Errors
/// A bad key file, a medium the key is not for, or one that cannot start.
pub async fn run(cfg: Config, r: RemoteGateway) -> anyhow::Result<()> {
    let mut signals = node::Signals::new()?;
    let key = KeyFile::read(&r.key_file)?;
    if key.medium.is_some_and(|m| m != r.medium) {
        bail!(
            "the key file is for a {} gateway, not {}",
            key.medium.map(|m| m.to_string()).unwrap_or_default(),
            r.medium
        );
    }
    let link = RemoteLink::new(&cfg, &key, &r.connect, r.tls.clone())?;
    let store = node::open_store(&r.data)?;
    let directory = Directory::load(store.clone(), cfg.miap.key_grace_s * 1000)?;
    let parts = Parts {
        link,
        store: store.clone(),
        clock: Arc::new(SystemClock),
    };
    let expires = cfg.broker.default_expires_in_s * 1000;
    let mut tasks = Vec::new();
    let mut im = None;
    match r.medium {
        MediumKind::Fax => {
            use crate::gateways::fax::{inbox, FaxMedium};
            let spool = node::fax_spool_in(&cfg, &r.data);
            let medium = FaxMedium::new(spool.clone())
                .with_context(|| format!("creating the fax spool {}", spool.display()))?;
            let gw = parts.start(medium, None);
            tasks.push(actix_rt::spawn(inbox::poll(
                spool.join("inbox"),
                gw,
                directory,
                expires,
            )));
            println!(
                "switchboard: fax gateway {} (spool {})",
                key.member,
                spool.display()
            );
        }
        MediumKind::Sms => {
            let (_, esme) = node::start_sms_with(
                &cfg,
                &store,
                &directory,
                |medium, notify| async { Ok(parts.start(medium, Some(notify))) },
                None,
                None,
            )
            .await?;
            tasks.push(esme);
            println!(
                "switchboard: sms gateway {} (SMSC {})",
                key.member, cfg.sms.smsc
            );
        }
        MediumKind::Email => {
            let (addr, task) =
                node::start_email_with(&cfg, &store, &directory, false, |medium, dsn| async {
                    Ok(parts.start(medium, Some(dsn)))
                })
                .await?;
            tasks.push(task);
            println!(
                "switchboard: email gateway {} (smtp listening on {addr})",
                key.member
            );
        }
        MediumKind::Im => {
            let started = crate::gateways::im::remote::start(
                &cfg,
                &store,
                parts.clock.clone(),
                |medium, receipts, presence| {
                    parts.start_with(medium, None::<Recipient<Receipt>>, |gw| {
                        gw.with_presence(presence).with_receipts(receipts)
                    })
                },
            )?;
            println!(
                "switchboard: im gateway {} (client API listening on {})",
                key.member, started.addr
            );
            im = Some(started);
        }
    }
    println!("switchboard: connecting to {}", r.connect);
    while signals.next().await == node::Sig::Reload {
        tracing::info!("a remote gateway has nothing to reload; restart it to change its settings");
    }
    if let Some(im) = im {
        im.stop().await;
    }
    for t in &tasks {
        t.abort();
    }
    if let Err(e) = store.writer().flush().await {
        tracing::error!(error = %e, "final flush failed");
    }
    Ok(())
}

/// A remote member's side of its link: who it is and how it reaches the
/// node.
struct RemoteLink {
    member: GatewayConfig,
    uplink: UplinkConfig,
    tls: Option<Wrap>,
}

impl RemoteLink {
    /// The member in `key`, reaching the node at `connect`.
    fn new(cfg: &Config, key: &KeyFile, connect: &str, tls: Option<Wrap>) -> anyhow::Result<Self> {
        let secret = SecretKey::from_hex(&key.key)
            .map_err(|e| anyhow::anyhow!("the key file's key: {}", e.code()))?;
        Ok(Self {
            member: GatewayConfig {
                id: MemberId::new(key.member.clone()),
                key_id: key.key_id,
                key: secret,
                broker_id: key.broker.clone(),
                session_ttl_ms: cfg.miap.session_ttl_s * 1000,
            },
            uplink: UplinkConfig {
                connect: connect.to_string(),
                broker_id: MemberId::new(key.broker.clone()),
                max_frame: cfg.miap.max_frame_bytes,
            },
            tls,
        })
    }

    /// Starts the uplink for the member actor at `addr` (told `LinkUp` at
    /// every connection); the broker handle and member registry the actor
    /// uses, both leading to the node. With a `store`, no frame leaves
    /// before its journal is durable past what the frame depends on.
    fn attach<A>(&self, addr: &Addr<A>, store: Option<&Store>) -> (BrokerHandle, MemberRegistry)
    where
        A: Actor<Context = Context<A>> + Handler<MiapFrame> + Handler<LinkUp>,
    {
        let mut up = Uplink::new(
            self.uplink.clone(),
            addr.clone().recipient(),
            addr.clone().recipient(),
        );
        if let Some(w) = &self.tls {
            up = up.with_wrap(w.clone());
        }
        if let Some(s) = store {
            up = up.with_store(s.clone());
        }
        let up = up.start();
        let members = MemberRegistry::default();
        members.set_fallback(up.clone().recipient());
        (BrokerHandle::new(vec![up.recipient()]), members)
    }
}

/// What every remote gateway is made of.
struct Parts {
    link: RemoteLink,
    store: Store,
    clock: SharedClock,
}

impl Parts {
    /// Starts the gateway for `medium` behind an uplink to the node.
    fn start<M: Medium>(
        &self,
        medium: M,
        receipts: Option<Recipient<Receipt>>,
    ) -> Addr<Gateway<M>> {
        self.start_with(medium, receipts, |gw| gw)
    }

    /// As [`Parts::start`], the gateway finished by `finish`.
    fn start_with<M: Medium>(
        &self,
        medium: M,
        receipts: Option<impl ReceiptSink + 'static>,
        finish: impl FnOnce(Gateway<M>) -> Gateway<M>,
    ) -> Addr<Gateway<M>> {
        let ctx = Context::<Gateway<M>>::new();
        let (broker, members) = self.link.attach(&ctx.address(), Some(&self.store));
        let mut gw = Gateway::new(
            self.link.member.clone(),
            medium,
            broker,
            members,
            self.store.clone(),
            self.clock.clone(),
        );
        if let Some(r) = receipts {
            gw = gw.with_receipts(r);
        }
        ctx.run(finish(gw))
    }
}

/// Runs a processor of `kind` (one of [`crate::processors::KINDS`]) for the
/// member in `key`, connected to the node at `connect`, until SIGINT or
/// SIGTERM (inside an actix system).
///
/// # Errors
/// A key file for another kind, or a bad key.
pub async fn run_processor(
    cfg: Config,
    kind: &str,
    connect: &str,
    key: KeyFile,
    tls: Option<Wrap>,
) -> anyhow::Result<()> {
    use crate::processors::{email, fax, sms};
    let mut signals = node::Signals::new()?;
    if key.processor.as_deref().is_some_and(|k| k != kind) || key.medium.is_some() {
        bail!(
            "the key file is for {}, not a {kind} processor",
            key.processor
                .map(|k| format!("a {k} processor"))
                .or(key.medium.map(|m| format!("a {m} gateway")))
                .unwrap_or_default()
        );
    }
    let link = RemoteLink::new(&cfg, &key, connect, tls)?;
    match kind {
        "sms" => start_processor(sms::SmsSegments, &link),
        "email" => start_processor(email::EmailText, &link),
        "fax" => start_processor(fax::FaxPage, &link),
        other => bail!(
            "--kind {other:?}: use {}",
            crate::processors::KINDS.join(", ")
        ),
    }
    println!(
        "switchboard: {kind} processor {} connecting to {connect}",
        key.member
    );
    while signals.next().await == node::Sig::Reload {
        tracing::info!(
            "a remote processor has nothing to reload; restart it to change its settings"
        );
    }
    Ok(())
}

/// Starts `converter`'s processor behind an uplink to the node.
fn start_processor<C: switchboard_actors::converter::Converter>(converter: C, link: &RemoteLink) {
    use switchboard_actors::processor::Processor;
    let ctx = Context::<Processor<C>>::new();
    let (broker, members) = link.attach(&ctx.address(), None);
    ctx.run(Processor::new(
        link.member.clone(),
        converter,
        broker,
        members,
        Arc::new(SystemClock),
    ));
}

/// How long the process waits for its flush at shutdown.
pub const SHUTDOWN: Duration = Duration::from_secs(10);
