//! Node assembly: the data directory, the store, the directory, the broker's
//! shards, the built-in gateways and the HTTP API — started in that order and
//! stopped in the reverse order (stop accepting, drain in-flight steps, flush
//! the store, stop the actors).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use anyhow::{bail, Context as _};

use switchboard_actors::accounting::Accounting;
use switchboard_actors::broker::{Broker, BrokerDeps, BrokerSettings};
use switchboard_actors::broker::{BrokerShared, PresenceRouter};
use switchboard_actors::bus::PresencePush;
use switchboard_actors::converter::Converter;
use switchboard_actors::delivery::{DeliveryService, ImOfflineWait, SetDefault};
use switchboard_actors::gateway::{Gateway, GatewayConfig, GetInFlight, Receipt};
use switchboard_actors::medium::Medium;
use switchboard_actors::presence::{Presence, PresenceView};
use switchboard_actors::processor::Processor;
use switchboard_actors::registry::MemberRegistry;
use switchboard_core::directory::{new_token, Directory};
use switchboard_core::protocol::clock::SharedClock;
use switchboard_core::protocol::{Clock, MediumKind, MemberId, MemberKeys, SecretKey, SystemClock};
use switchboard_core::store::Store;

use crate::api::{self, ApiState};
use crate::config::{Config, RELOADABLE};
use crate::gateways;
use crate::gateways::im::clients::{ImClients, Tokens};
use crate::gateways::im::hub::Hub;
use crate::gateways::im::{ImGateway, ImMedium};

/// The file holding the admin token in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// A running node.
pub struct Node {
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// Where the SMTP server listens, when the email gateway runs.
    pub smtp_addr: Option<SocketAddr>,
    /// Where remote members connect (MIAP over TCP).
    pub miap_addr: SocketAddr,
    /// Background tasks that accept work (SMTP, the fax inbox): stopped first.
    tasks: Vec<actix_rt::task::JoinHandle<()>>,
    /// The SMS gateway's ESME, unbound on shutdown.
    sms: Option<tokio::sync::mpsc::UnboundedSender<gateways::sms::esme::Job>>,
    /// Told when the node starts shutting down.
    draining: tokio::sync::watch::Sender<bool>,
    /// The remote members' connections, closed on shutdown.
    links: switchboard_actors::transport::Links,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The admin token, when this start initialised the data directory.
    pub new_admin_token: Option<String>,
    server: actix_web::dev::ServerHandle,
    /// The node's actors and shared state.
    pub core: Core,
    shutdown_timeout: Duration,
}

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

/// Writes `text` to `path`, readable by the owner only.
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
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
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

/// Initialises a data directory's store if it is not yet: the broker key,
/// the built-in members' keys, and an admin token (returned, and written to
/// `DIR/admin.token` with mode 0600). Returns `None` if it was initialised.
///
/// # Errors
/// Storage or file-system failures.
pub async fn initialise(dir: &Path, directory: &Directory) -> anyhow::Result<Option<String>> {
    let fresh = directory.broker_key()?.is_none();
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

/// The node without its HTTP API: store, directory, broker shards and the
/// built-in gateways (what the bench drives directly).
pub struct Core {
    /// The store.
    pub store: Store,
    /// Profiles, tokens, member keys.
    pub directory: Directory,
    /// Connected members.
    pub members: MemberRegistry,
    /// The broker.
    pub broker: Broker,
    /// The built-in IM gateway.
    pub im: ImGateway,
    /// Delivery managers.
    pub delivery: Addr<DeliveryService>,
    /// Presence.
    pub presence: Addr<Presence>,
    /// Presence, read side.
    pub presence_view: PresenceView,
    /// The IM session hub.
    pub hub: Addr<Hub>,
    /// `delivery.im_offline = "wait"`, as the broker and the IM medium read it.
    pub im_offline: ImOfflineWait,
    gateway_config: GatewayConfig,
    /// The clock.
    pub clock: SharedClock,
    /// The admin token, when this start initialised the data directory.
    pub new_admin_token: Option<String>,
}

impl Core {
    /// Starts everything but the HTTP API (inside an actix system). Returns
    /// once the built-in gateways have logged in to the broker. Outcomes of
    /// messages the IM gateway originates go to `receipts`, if given.
    ///
    /// # Errors
    /// A data directory that cannot be opened or initialised.
    pub async fn start(cfg: &Config, receipts: Option<Recipient<Receipt>>) -> anyhow::Result<Core> {
        let clock: SharedClock = Arc::new(SystemClock);
        let dir = cfg.data.dir.clone();
        let store = open_store(&dir)?;
        let directory = Directory::load(store.clone(), cfg.miap.key_grace_s * 1000)?;
        let new_admin_token = initialise(&dir, &directory).await?;
        if new_admin_token.is_some() {
            tracing::info!(dir = %dir.display(), "initialised a new data directory; the admin token is in {}", dir.join(ADMIN_TOKEN_FILE).display());
        }
        let k2 = directory
            .broker_key()?
            .context("the data directory has no broker key")?;

        let accounting = Accounting::new(store.clone()).start();
        let members = MemberRegistry::default();
        let im_offline = ImOfflineWait::new(cfg.delivery.im_offline == "wait");
        let settings = BrokerSettings {
            id: MemberId::new(cfg.broker.id.clone()),
            skew_ms: cfg.miap.skew_ms,
            session_ttl_ms: cfg.miap.session_ttl_s * 1000,
            shards: cfg.broker.shards,
            im_offline_wait: im_offline.clone(),
        };
        let delivery = DeliveryService::load(store.clone(), &cfg.delivery.default_manager)?;
        let registry = delivery.registry();
        let delivery = delivery.start();
        let hub = Hub::new(store.clone(), receipts).start();
        // Presence pushes go to the node's sessions, or as frames to the IM
        // gateways in other processes that watch the user.
        let router = Context::<PresenceRouter>::new();
        let presence_push: Recipient<PresencePush> = router.address().recipient();
        let presence = Presence::new(
            clock.clone(),
            cfg.presence.idle_timeout_s * 1000,
            Some(presence_push),
        );
        let presence_view = presence.view();
        let presence = presence.start();
        let shared = Arc::new(BrokerShared::new(
            &settings,
            BrokerDeps {
                store: store.clone(),
                clock: clock.clone(),
                directory: directory.clone(),
                k2,
                members: members.clone(),
                delivery: registry,
                presence: presence_view.clone(),
                presence_actor: Some(presence.clone()),
                accounting: accounting.recipient(),
            },
        )?);
        router.run(PresenceRouter::new(shared.clone(), hub.clone().recipient()));
        let broker = Broker::start(shared, settings.shards);

        let im_id = MemberId::new(gateways::im::MEMBER_ID);
        let im_keys = directory
            .member(&im_id)
            .context("the IM gateway has no key")?;
        let (key_id, key) = im_keys.current();
        let gateway_config = GatewayConfig {
            id: im_id,
            key_id,
            key: key.clone(),
            broker_id: cfg.broker.id.clone(),
            session_ttl_ms: settings.session_ttl_ms,
        };
        let mut gateway = Gateway::new(
            gateway_config.clone(),
            ImMedium::new(
                store.clone(),
                Some(directory.clone()),
                hub.clone(),
                presence_view.clone(),
                im_offline.clone(),
            ),
            broker.handle.clone(),
            members.clone(),
            store.clone(),
            clock.clone(),
        );
        gateway = gateway.with_receipts(hub.clone().recipient());
        let im = gateway.start();
        wait_logged_in(&im).await?;
        let core = Core {
            store,
            directory,
            members,
            broker,
            im,
            delivery,
            presence,
            presence_view,
            hub,
            im_offline,
            gateway_config,
            clock,
            new_admin_token,
        };
        // Content converters, MIAP hops the broker puts on routes that need
        // them: text → SMS segments, email → text, text → fax pages.
        use crate::processors::{email, fax, sms};
        use crate::processors::{EMAIL_PROCESSOR, FAX_PROCESSOR, SMS_PROCESSOR};
        core.add_processor(SMS_PROCESSOR, sms::SmsSegments).await?;
        core.add_processor(EMAIL_PROCESSOR, email::EmailText)
            .await?;
        core.add_processor(FAX_PROCESSOR, fax::FaxPage).await?;
        // Remote processors: a link login by one makes it a processor.
        for (id, kind) in core.directory.processor_kinds()? {
            match crate::processors::spec_of(&kind) {
                Some(spec) => core.members.expect_processor(id, spec),
                None => {
                    tracing::warn!(member = %id, kind = %kind, "unknown processor kind; ignored")
                }
            }
        }
        Ok(core)
    }

    /// The key and configuration of member `id` (created if it has none).
    async fn member_config(
        &self,
        id: &str,
        medium: Option<MediumKind>,
    ) -> anyhow::Result<GatewayConfig> {
        let member = MemberId::new(id);
        if self.directory.member(&member).is_none() {
            self.directory
                .put_member(MemberKeys::generate(member.clone(), medium))
                .await?;
        }
        let keys = self
            .directory
            .member(&member)
            .context("the member has no key")?;
        let (key_id, key) = keys.current();
        Ok(GatewayConfig {
            id: member,
            key_id,
            key: key.clone(),
            ..self.gateway_config.clone()
        })
    }

    /// Starts an in-process processor for `converter` as member `id` and
    /// waits until it has logged in.
    ///
    /// # Errors
    /// A store failure, or a processor that cannot log in.
    pub async fn add_processor<C: Converter>(
        &self,
        id: &str,
        converter: C,
    ) -> anyhow::Result<Addr<Processor<C>>> {
        let cfg = self.member_config(id, None).await?;
        let p = Processor::new(
            cfg,
            converter,
            self.broker.handle.clone(),
            self.members.clone(),
            self.clock.clone(),
        )
        .start();
        let deadline = Instant::now() + Duration::from_secs(10);
        let member = MemberId::new(id);
        while self.members.live_processor_id(&member).is_none() {
            if Instant::now() > deadline {
                bail!("processor {id} could not log in to the broker");
            }
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(p)
    }

    /// Starts another in-process gateway for `medium` as member `id` (its key
    /// is created if it has none) and waits until it has logged in.
    ///
    /// # Errors
    /// A store failure, or a gateway that cannot log in.
    pub async fn add_gateway<M: Medium>(
        &self,
        id: &str,
        medium: M,
        receipts: Option<Recipient<Receipt>>,
    ) -> anyhow::Result<Addr<Gateway<M>>> {
        let cfg = self.member_config(id, Some(medium.kind())).await?;
        let mut gw = Gateway::new(
            cfg,
            medium,
            self.broker.handle.clone(),
            self.members.clone(),
            self.store.clone(),
            self.clock.clone(),
        );
        if let Some(r) = receipts {
            gw = gw.with_receipts(r);
        }
        let gw = gw.start();
        wait_logged_in(&gw).await?;
        Ok(gw)
    }

    /// Waits (up to `timeout`) for the gateways' in-flight steps, flushes the
    /// store and stops the broker.
    pub async fn stop(self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            match self.im.send(GetInFlight).await {
                Ok(f) if f.waiting == 0 && f.delivering == 0 && f.unacked_reports == 0 => break,
                Ok(f) if Instant::now() > deadline => {
                    tracing::warn!(?f, "shutdown timeout: stopping with work in flight (it is durable and resumes on start)");
                    break;
                }
                Err(_) => break,
                Ok(_) => actix_rt::time::sleep(Duration::from_millis(10)).await,
            }
        }
        if let Err(e) = self.store.writer().flush().await {
            tracing::error!(error = %e, "final flush failed");
        }
        self.broker.stop();
    }
}

/// Starts the email gateway and its SMTP server.
async fn start_email(
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
    let policy = gateways::ReceiptPolicy::parse(&cfg.email.dsn).context("email.dsn")?;
    let relay_tls = RelayTls::parse(&cfg.email.relay_tls).context("email.relay_tls")?;
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
async fn start_fax(cfg: &Config, core: &Core) -> anyhow::Result<actix_rt::task::JoinHandle<()>> {
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
fn start_miap(
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
async fn start_sms(
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
    )
    .await?;
    Ok(jobs)
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
    let medium = SmsMedium::new(
        jobs.clone(),
        health.clone(),
        store.clone(),
        c.source.clone(),
        Duration::from_secs(c.submit_timeout_s),
    );
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
    };
    let mo = MoContext {
        directory: directory.clone(),
        store: store.clone(),
        gateway: gateway.clone().recipient(),
        expires_in_ms: cfg.broker.default_expires_in_s * 1000,
    };
    let mut esme = Esme::new(settings, store.clone(), gateway.recipient(), health, mo);
    if let Some(f) = on_health {
        esme = esme.on_health(f);
    }
    let task = actix_rt::spawn(esme.run(queue));
    tracing::info!(smsc = %c.smsc, system_id = %c.system_id, "SMS gateway started");
    Ok((jobs, task))
}

async fn wait_logged_in<M: Medium>(gw: &Addr<Gateway<M>>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw
        .send(GetInFlight)
        .await
        .map(|f| f.logged_in)
        .unwrap_or(false)
    {
        if Instant::now() > deadline {
            bail!("a gateway could not log in to the broker");
        }
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

impl Node {
    /// Starts a node (inside an actix system). Returns once the HTTP API is
    /// listening and the built-in gateways have logged in to the broker.
    ///
    /// # Errors
    /// A data directory that cannot be opened or initialised, or an address
    /// that cannot be bound.
    pub async fn start(cfg: &Config) -> anyhow::Result<Node> {
        // Counting starts with the node.
        let _ = api::metrics::handle();
        let core = Core::start(cfg, None).await?;
        let mut gateways = vec![gateways::im::MEMBER_ID.to_string()];
        let mut tasks = Vec::new();
        let mut smtp_addr = None;
        if cfg.email.enabled {
            let (addr, task) = start_email(cfg, &core).await?;
            gateways.push(gateways::email::MEMBER_ID.to_string());
            smtp_addr = Some(addr);
            tasks.push(task);
        }
        if cfg.fax.enabled {
            tasks.push(start_fax(cfg, &core).await?);
            gateways.push(gateways::fax::MEMBER_ID.to_string());
        }
        let (draining, draining_rx) = tokio::sync::watch::channel(false);
        let links = switchboard_actors::transport::Links::default();
        let (miap_addr, miap) = start_miap(cfg, &core, links.clone())?;
        tasks.push(miap);
        let mut sms = None;
        if cfg.sms.enabled {
            sms = Some(start_sms(cfg, &core).await?);
            gateways.push(gateways::sms::MEMBER_ID.to_string());
        }
        let state = ApiState {
            gateways,
            directory: core.directory.clone(),
            store: core.store.clone(),
            clients: ImClients::new(
                cfg,
                core.store.clone(),
                core.im.clone(),
                core.hub.clone(),
                core.presence.clone(),
                Tokens::Directory(core.directory.clone()),
                draining_rx,
            ),
            presence_view: core.presence_view.clone(),
            delivery: core.delivery.clone(),
            members: core.members.clone(),
            broker: core.broker.shared.clone(),
            clock: core.clock.clone(),
        };
        let (server, http_addr) = api::serve(state, &cfg.http.listen, cfg.shutdown.timeout_s)?;
        let handle = server.handle();
        actix_rt::spawn(server);
        tracing::info!(http = %http_addr, data = %cfg.data.dir.display(), shards = cfg.broker.shards, "switchboard node ready");
        Ok(Node {
            http_addr,
            smtp_addr,
            miap_addr,
            tasks,
            sms,
            draining,
            links,
            data_dir: cfg.data.dir.clone(),
            new_admin_token: core.new_admin_token.clone(),
            server: handle,
            core,
            shutdown_timeout: Duration::from_secs(cfg.shutdown.timeout_s),
        })
    }

    /// Ordered shutdown: stop accepting requests (finishing those in
    /// progress), wait for the gateways' in-flight steps, flush the store,
    /// stop the broker.
    pub async fn shutdown(self) {
        tracing::info!("shutting down: no longer accepting requests");
        // Lame duck: not ready, WebSocket sessions closed (1001), new
        // messages refused — while requests in progress finish.
        let _ = self.draining.send(true);
        for t in &self.tasks {
            t.abort();
        }
        self.server.stop(true).await;
        if let Some(esme) = &self.sms {
            let (done, unbound) = tokio::sync::oneshot::channel();
            if esme.send(gateways::sms::esme::Job::Stop(done)).is_ok() {
                let _ = actix_rt::time::timeout(Duration::from_secs(5), unbound).await;
            }
        }
        // Remote members are told by their connection closing; they log in
        // again and resend when the node is back.
        self.links.close_all();
        self.core.stop(self.shutdown_timeout).await;
        tracing::info!("shutdown complete");
    }

    /// Reloads the configuration from `file` (and the environment) over
    /// `current`, the configuration in effect. An invalid configuration
    /// changes nothing (the error names the key). Of the changed keys,
    /// those in [`RELOADABLE`] take effect at once — `log.level`,
    /// `delivery.default_manager` (an existing manager), `delivery.im_offline`
    /// — and every other is logged as needing a restart. Returns the
    /// configuration now in effect.
    pub async fn reload(&self, current: &Config, file: Option<&Path>) -> Config {
        let newer = match Config::load(file) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "configuration not reloaded: nothing changed");
                return current.clone();
            }
        };
        let changed = current.changed_keys(&newer);
        if changed.is_empty() {
            tracing::info!("configuration reloaded: nothing changed");
            return current.clone();
        }
        let mut now = current.clone();
        for key in &changed {
            if !RELOADABLE.contains(&key.as_str()) {
                tracing::warn!(key = %key, "changed; takes effect after a restart");
                continue;
            }
            let applied = match key.as_str() {
                "log.level" => match crate::logging::set_level(&newer.log.level) {
                    Ok(crate::logging::LevelChange::RustLogWins) => {
                        tracing::warn!(key = %key, "RUST_LOG is set and keeps precedence over log.level");
                        false
                    }
                    Ok(_) => {
                        now.log.level = newer.log.level.clone();
                        true
                    }
                    Err(e) => {
                        tracing::error!(key = %key, error = %e, "not applied");
                        false
                    }
                },
                "delivery.default_manager" => {
                    let name = newer.delivery.default_manager.clone();
                    match self.core.delivery.send(SetDefault(name.clone())).await {
                        Ok(Ok(())) => {
                            now.delivery.default_manager = name;
                            true
                        }
                        Ok(Err(e)) => {
                            tracing::error!(key = %key, manager = %name, error = %e, "not applied");
                            false
                        }
                        Err(_) => false,
                    }
                }
                "delivery.im_offline" => {
                    self.core
                        .im_offline
                        .set(newer.delivery.im_offline == "wait");
                    now.delivery.im_offline = newer.delivery.im_offline.clone();
                    true
                }
                _ => false,
            };
            if applied {
                copy_key(&mut now.source, &newer.source, key);
                tracing::info!(key = %key, value = %lookup(&newer.source, key), "applied");
            }
        }
        now
    }
}

fn lookup(t: &toml::Table, key: &str) -> String {
    let mut v: Option<&toml::Value> = None;
    let mut table = Some(t);
    for part in key.split('.') {
        v = table.and_then(|t| t.get(part));
        table = v.and_then(toml::Value::as_table);
    }
    v.map_or_else(String::new, ToString::to_string)
}

/// Copies `section.key` from `from` into `to`.
fn copy_key(to: &mut toml::Table, from: &toml::Table, key: &str) {
    let Some((section, k)) = key.split_once('.') else {
        return;
    };
    let value = from
        .get(section)
        .and_then(toml::Value::as_table)
        .and_then(|t| t.get(k))
        .cloned();
    if let (Some(toml::Value::Table(t)), Some(v)) = (to.get_mut(section), value) {
        t.insert(k.to_string(), v);
    }
}

/// `switchboard serve`: runs a node until SIGINT or SIGTERM, then shuts down
/// in order; SIGHUP reloads `config_file` (see [`Node::reload`]).
///
/// # Errors
/// When the node cannot start.
pub async fn serve(cfg: Config, config_file: Option<PathBuf>) -> anyhow::Result<()> {
    // Before anything else: SIGHUP's default action ends the process.
    let mut signals = Signals::new()?;
    let node = Node::start(&cfg).await?;
    if let Some(t) = &node.new_admin_token {
        eprintln!(
            "switchboard: new data directory {}; admin token (also in {}):\n{t}",
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
