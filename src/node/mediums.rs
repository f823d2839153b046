//! The optional mediums' gateways — email (with its SMTP server), the fax
//! stub (with its spool inbox), SMS (with its ESME) — and the MIAP listener
//! for remote members. The `*_with` forms are shared with a remote gateway
//! process, which starts the same parts around its own gateway.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use anyhow::Context as _;

use switchboard_actors::gateway::{Gateway, Receipt};
use switchboard_core::directory::Directory;
use switchboard_core::protocol::{Clock, MemberId, SystemClock};
use switchboard_core::store::Store;

use super::assembly::Core;
use crate::config::Config;
use crate::gateways;

/// Starts the email gateway and its SMTP server.
pub(super) async fn start_email(
    cfg: &Config,
    core: &Core,
) -> anyhow::Result<(SocketAddr, actix_rt::task::JoinHandle<()>)> {
    use crate::gateways::email::MEMBER_ID;
    start_email_with(cfg, &core.store, &core.directory, true, |medium, dsn| {
        core.add_gateway(MEMBER_ID, medium, Some(dsn))
    })
    .await
}

/// The email gateway's parts: its medium and DSN sender handed to `start`
/// (which starts the gateway), then the SMTP server. `check_recipients`
/// refuses unknown local users at `RCPT` (a node); without it the broker
/// refuses them after `DATA` (a remote gateway, which has no directory).
///
/// # Errors
/// Bad settings, an address that cannot be bound, or a gateway that does
/// not start.
pub async fn start_email_with<F, Fut>(
    cfg: &Config,
    store: &Store,
    directory: &Directory,
    check_recipients: bool,
    start: F,
) -> anyhow::Result<(SocketAddr, actix_rt::task::JoinHandle<()>)>
where
    F: FnOnce(gateways::email::EmailMedium, Recipient<Receipt>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Addr<Gateway<gateways::email::EmailMedium>>>>,
{
    use crate::gateways::email::dsn::Dsn;
    use crate::gateways::email::tls::{self, RelayTls};
    use crate::gateways::email::{smtp, EmailMedium};
    let domain = cfg
        .email
        .local_domains
        .first()
        .context("email.local_domains: at least one domain is needed")?;
    let policy = gateways::email::dsn::DsnPolicy {
        outcomes: gateways::ReceiptPolicy::parse(&cfg.email.dsn).context("email.dsn")?,
        verified_domains: (cfg.email.dsn_verified_domains.iter())
            .map(|d| d.to_ascii_lowercase())
            .collect(),
        per_hour: cfg.email.dsn_per_hour,
        per_hour_per_address: cfg.email.dsn_per_hour_per_address,
    };
    let relay_tls = RelayTls::parse(&cfg.email.relay_tls).context("email.relay_tls")?;
    for w in cfg.warnings().iter().filter(|w| w.starts_with("email.")) {
        tracing::warn!("{w}");
    }
    let relay = tls::relay_transport(&cfg.email.relay, relay_tls, &cfg.email.relay_ca)?;
    let dsn = Dsn::new(relay.clone(), domain, policy).start();
    let medium = EmailMedium::new(relay, &cfg.email.relay, domain, store.clone());
    let starttls = if cfg.email.tls_cert.is_empty() {
        None
    } else {
        Some(tls::acceptor(
            Path::new(&cfg.email.tls_cert),
            Path::new(&cfg.email.tls_key),
        )?)
    };
    let gateway = start(medium, dsn.recipient()).await?;
    let std_listener = std::net::TcpListener::bind(&cfg.email.listen)
        .with_context(|| format!("binding the SMTP server to {}", cfg.email.listen))?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    let ctx = Arc::new(smtp::SmtpContext {
        local_domains: cfg
            .email
            .local_domains
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect(),
        max_message_bytes: cfg.email.max_message_bytes,
        max_fanout_bytes: cfg.email.max_fanout_bytes,
        max_connections: cfg.email.max_connections,
        max_connections_per_peer: cfg.email.max_connections_per_peer,
        hostname: domain.clone(),
        directory: check_recipients.then(|| directory.clone()),
        gateway,
        submit_timeout: Duration::from_secs(cfg.http.submit_timeout_s),
        expires_in_ms: cfg.broker.default_expires_in_s * 1000,
        tls: starttls,
        require_tls: cfg.email.require_tls,
    });
    tracing::info!(smtp = %addr, relay = %cfg.email.relay, "email gateway ready");
    // What was sent is remembered a day past the longest message lifetime.
    let retention_ms = (cfg.broker.max_expires_in_s + 86_400) * 1000;
    let sweep = forget_sent_hourly(store.clone(), retention_ms);
    Ok((
        addr,
        actix_rt::spawn(async move {
            tokio::join!(smtp::serve(listener, ctx), sweep);
        }),
    ))
}

/// Forgets old sent-mail records now and every hour (until aborted with the
/// SMTP server's task).
async fn forget_sent_hourly(store: Store, retention_ms: u64) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every.tick().await;
        let now = SystemClock.now_ms();
        match gateways::email::forget_sent(&store, now, retention_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "forgot old sent-mail records"),
            Err(e) => tracing::warn!(error = %e, "forgetting old sent-mail records failed"),
        }
    }
}

/// The fax spool: `fax.spool`, or `DATA/fax`.
pub fn fax_spool(cfg: &Config) -> PathBuf {
    fax_spool_in(cfg, &cfg.data.dir)
}

/// The fax spool: `fax.spool`, or `fax` in `data`.
pub fn fax_spool_in(cfg: &Config, data: &Path) -> PathBuf {
    if cfg.fax.spool.is_empty() {
        data.join("fax")
    } else {
        PathBuf::from(&cfg.fax.spool)
    }
}

/// Starts the fax stub gateway and its inbox poller.
pub(super) async fn start_fax(
    cfg: &Config,
    core: &Core,
) -> anyhow::Result<actix_rt::task::JoinHandle<()>> {
    use crate::gateways::fax::{inbox, FaxMedium, MEMBER_ID};
    let spool = fax_spool(cfg);
    let medium = FaxMedium::new(spool.clone())
        .with_context(|| format!("creating the fax spool {}", spool.display()))?;
    let gateway = core.add_gateway(MEMBER_ID, medium, None).await?;
    tracing::info!(spool = %spool.display(), "fax gateway (stub) ready");
    Ok(actix_rt::spawn(inbox::poll(
        spool.join("inbox"),
        gateway,
        core.directory.clone(),
        cfg.broker.default_expires_in_s * 1000,
    )))
}

/// Starts the MIAP listener for remote members.
pub(super) fn start_miap(
    cfg: &Config,
    core: &Core,
    links: switchboard_actors::transport::Links,
) -> anyhow::Result<(SocketAddr, actix_rt::task::JoinHandle<()>)> {
    use switchboard_actors::transport::{LinkDeps, LinkLimits};
    let std_listener = std::net::TcpListener::bind(&cfg.miap.listen)
        .with_context(|| format!("binding the MIAP listener to {}", cfg.miap.listen))?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    let deps = LinkDeps {
        broker: core.broker.handle.clone(),
        shared: core.broker.shared.clone(),
        members: core.members.clone(),
        directory: core.directory.clone(),
        limits: LinkLimits {
            max_frame: cfg.miap.max_frame_bytes,
            // A member renews its session twice per lifetime: silence for
            // two lifetimes means it is gone.
            idle_timeout: Duration::from_secs(cfg.miap.session_ttl_s * 2),
            login_timeout: Duration::from_secs(cfg.miap.login_timeout_s),
            unauthenticated_per_peer: cfg.miap.unauthenticated_per_peer,
            unauthenticated_total: cfg.miap.unauthenticated_total,
            ..LinkLimits::default()
        },
        links,
        wrap: if cfg.miap.tls_cert.is_empty() {
            None
        } else {
            Some(crate::tls::miap_server(crate::tls::acceptor(
                Path::new(&cfg.miap.tls_cert),
                Path::new(&cfg.miap.tls_key),
                ("miap.tls_cert", "miap.tls_key"),
            )?))
        },
    };
    tracing::info!(miap = %addr, tls = !cfg.miap.tls_cert.is_empty(), "MIAP listener ready");
    Ok((
        addr,
        actix_rt::spawn(switchboard_actors::transport::serve(listener, deps)),
    ))
}

/// Starts the SMS gateway and its ESME; returns the ESME's job queue.
pub(super) async fn start_sms(
    cfg: &Config,
    core: &Core,
) -> anyhow::Result<tokio::sync::mpsc::UnboundedSender<gateways::sms::esme::Job>> {
    use crate::gateways::sms::MEMBER_ID;
    let members = core.members.clone();
    let (jobs, _) = start_sms_with(
        cfg,
        &core.store,
        &core.directory,
        |medium, notify| core.add_gateway(MEMBER_ID, medium, Some(notify)),
        Some(Box::new(move |up| {
            members.set_healthy(&MemberId::new(MEMBER_ID), up)
        })),
        core.cluster.clone(),
    )
    .await?;
    Ok(jobs)
}

/// In a cluster, on a node without an SMSC bind: the SMS gateway all the
/// same, submitting through a node that has one
/// ([`gateways::sms::cluster`]).
pub(super) async fn start_sms_forwarding(
    cfg: &Config,
    core: &Core,
    membership: &crate::cluster::Membership,
) -> anyhow::Result<()> {
    let engine = &membership.engine;
    use crate::gateways::sms::notify::SmsNotify;
    use crate::gateways::sms::{cluster, SmsMedium, MEMBER_ID};
    use switchboard_actors::medium::Health;
    let c = &cfg.sms;
    let policy = gateways::ReceiptPolicy::parse(&c.receipts).context("sms.receipts")?;
    let (jobs, queue) = tokio::sync::mpsc::unbounded_channel();
    let health = Arc::new(std::sync::Mutex::new(Health {
        up: false,
        detail: "looking for a node of the cluster with an SMSC bound".into(),
    }));
    let submit_timeout = Duration::from_secs(c.submit_timeout_s);
    let medium = SmsMedium::new(
        jobs.clone(),
        health.clone(),
        core.store.clone(),
        c.source.clone(),
        submit_timeout,
    )
    .in_cluster(&engine.settings().node_id)
    .by_home_node(membership, core.directory.clone(), None);
    let notify = SmsNotify::new(jobs, c.source.clone(), policy).start();
    let gateway = core
        .add_gateway(MEMBER_ID, medium, Some(notify.recipient()))
        .await?;
    let seal = gateways::forward::Seal::new(
        &core
            .directory
            .broker_key()?
            .context("the cluster has no broker key")?,
    );
    cluster::take_reports(engine, seal.clone(), gateway.recipient());
    // Down until a heartbeat finds a node with a bind.
    core.members.set_healthy(&MemberId::new(MEMBER_ID), false);
    let members = core.members.clone();
    cluster::forward(
        membership,
        seal,
        queue,
        health,
        Box::new(move |up| members.set_healthy(&MemberId::new(MEMBER_ID), up)),
        submit_timeout,
    );
    tracing::info!(
        "SMS gateway started, submitting through the nodes of the cluster that have an SMSC bound"
    );
    Ok(())
}

/// The SMS gateway's parts: its medium and receipt notices handed to
/// `start` (which starts the gateway), then the ESME, told of bind changes
/// through `on_health`. Returns the ESME's job queue and task.
///
/// # Errors
/// Bad settings, or a gateway that does not start.
pub async fn start_sms_with<F, Fut>(
    cfg: &Config,
    store: &Store,
    directory: &Directory,
    start: F,
    on_health: Option<Box<dyn Fn(bool)>>,
    cluster: Option<crate::cluster::Membership>,
) -> anyhow::Result<(
    tokio::sync::mpsc::UnboundedSender<gateways::sms::esme::Job>,
    actix_rt::task::JoinHandle<()>,
)>
where
    F: FnOnce(gateways::sms::SmsMedium, Recipient<Receipt>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Addr<Gateway<gateways::sms::SmsMedium>>>>,
{
    use crate::gateways::sms::esme::{Esme, EsmeSettings};
    use crate::gateways::sms::inbound::MoContext;
    use crate::gateways::sms::notify::SmsNotify;
    use crate::gateways::sms::SmsMedium;
    use switchboard_actors::medium::Health;
    let c = &cfg.sms;
    let policy = gateways::ReceiptPolicy::parse(&c.receipts).context("sms.receipts")?;
    let (jobs, queue) = tokio::sync::mpsc::unbounded_channel();
    let health = Arc::new(std::sync::Mutex::new(Health {
        up: false,
        detail: format!("not bound to {} yet", c.smsc),
    }));
    let mut medium = SmsMedium::new(
        jobs.clone(),
        health.clone(),
        store.clone(),
        c.source.clone(),
        Duration::from_secs(c.submit_timeout_s),
    );
    // In a cluster, what nodes seal the messages they send each other with.
    let seal = match &cluster {
        Some(_) => Some(gateways::forward::Seal::new(
            &directory
                .broker_key()?
                .context("the cluster has no broker key")?,
        )),
        None => None,
    };
    if let (Some(m), Some(seal)) = (&cluster, &seal) {
        // Messages for users whose home node is another go through its
        // bind, on their own queue.
        let (forward, queue) = tokio::sync::mpsc::unbounded_channel();
        gateways::sms::cluster::forward_jobs(
            m,
            seal.clone(),
            queue,
            Some(jobs.clone()),
            Duration::from_secs(c.submit_timeout_s),
        );
        medium = medium
            .in_cluster(&m.engine.settings().node_id)
            .by_home_node(m, directory.clone(), Some(forward));
    }
    let notify = SmsNotify::new(jobs.clone(), c.source.clone(), policy).start();
    let gateway = start(medium, notify.recipient()).await?;
    let settings = EsmeSettings {
        smsc: c.smsc.clone(),
        system_id: c.system_id.clone(),
        password: c.password.clone(),
        window: c.window as usize,
        enquire_link: Duration::from_secs(c.enquire_link_s),
        response_timeout: Duration::from_secs(c.response_timeout_s),
        source: c.source.clone(),
        alphabets: crate::gateways::sms::pdu::Alphabets {
            dc0: crate::gateways::sms::pdu::Alphabet::parse(&c.data_coding_0)
                .context("sms.data_coding_0")?,
            dc1: crate::gateways::sms::pdu::Alphabet::parse(&c.data_coding_1)
                .context("sms.data_coding_1")?,
        },
    };
    let mo = MoContext {
        directory: directory.clone(),
        store: store.clone(),
        gateway: gateway.clone().recipient(),
        expires_in_ms: cfg.broker.default_expires_in_s * 1000,
    };
    // In a cluster, other nodes' gateways submit through this bind too,
    // and their receipts go back to them.
    let reports = match (&cluster, seal) {
        (Some(m), Some(seal)) => {
            let engine = &m.engine;
            gateways::sms::cluster::serve_submits(
                engine,
                seal.clone(),
                store.clone(),
                jobs.clone(),
            );
            gateways::sms::cluster::take_reports(engine, seal.clone(), gateway.clone().recipient());
            gateways::sms::cluster::ReportRouter::new(
                gateway.clone().recipient(),
                m.clone(),
                seal,
                store.clone(),
            )
            .start()
            .recipient()
        }
        _ => gateway.clone().recipient(),
    };
    let mut esme = Esme::new(settings, store.clone(), reports, health, mo);
    if let Some(f) = on_health {
        esme = esme.on_health(f);
    }
    let task = actix_rt::spawn(esme.run(queue));
    tracing::info!(smsc = %c.smsc, system_id = %c.system_id, "SMS gateway started");
    Ok((jobs, task))
}
