//! Starting a node: [`Core`] (store, directory, broker shards, presence,
//! delivery managers, the built-in IM gateway and the content processors —
//! what the load generator drives directly) and [`Node`] (the core plus
//! the optional mediums, the MIAP listener and the HTTP API).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use anyhow::{bail, Context as _};

use switchboard_actors::broker::{Broker, BrokerDeps, BrokerSettings};
use switchboard_actors::broker::{BrokerShared, PresenceRouter};
use switchboard_actors::bus::PresencePush;
use switchboard_actors::converter::Converter;
use switchboard_actors::delivery::{DeliveryService, ImOfflineWait};
use switchboard_actors::gateway::{
    AdoptOutbox, DeliverHere, Gateway, GatewayConfig, GetInFlight, Receipt,
};
use switchboard_actors::medium::Medium;
use switchboard_actors::presence::{Presence, PresenceView};
use switchboard_actors::processor::Processor;
use switchboard_actors::registry::MemberRegistry;
use switchboard_core::directory::Directory;
use switchboard_core::protocol::clock::SharedClock;
use switchboard_core::protocol::{MediumKind, MemberId, MemberKeys, SystemClock};
use switchboard_core::store::Store;

use super::init::{initialise, open_clustered_store, open_store, ADMIN_TOKEN_FILE};
use super::mediums::{start_email, start_fax, start_miap, start_sms, start_sms_forwarding};
use crate::api::{self, ApiState};
use crate::config::Config;
use crate::gateways;
use crate::gateways::im::clients::{ImClients, Tokens};
use crate::gateways::im::hub::Hub;
use crate::gateways::im::{ImGateway, ImMedium};

/// A running node.
pub struct Node {
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// Where the SMTP server listens, when the email gateway runs.
    pub smtp_addr: Option<SocketAddr>,
    /// Where remote members connect (MIAP over TCP).
    pub miap_addr: SocketAddr,
    /// Background tasks that accept work (SMTP, the fax inbox): stopped first.
    pub(super) tasks: Vec<actix_rt::task::JoinHandle<()>>,
    /// The SMS gateway's ESME, unbound on shutdown.
    pub(super) sms: Option<tokio::sync::mpsc::UnboundedSender<gateways::sms::esme::Job>>,
    /// Told when the node starts shutting down.
    pub(super) draining: tokio::sync::watch::Sender<bool>,
    /// The remote members' connections, closed on shutdown.
    pub(super) links: switchboard_actors::transport::Links,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The admin token, when this start initialised the data directory.
    pub new_admin_token: Option<String>,
    pub(super) server: actix_web::dev::ServerHandle,
    /// The node's actors and shared state.
    pub core: Core,
    pub(super) shutdown_timeout: Duration,
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
    /// Every gateway started in this process (the IM gateway first): the
    /// ordered shutdown waits for each one's in-flight steps, a takeover
    /// hands them what it adopted.
    pub(super) gateways: Mutex<Vec<StartedGateway>>,
    /// The clock.
    pub clock: SharedClock,
    /// The admin token, when this start initialised the data directory.
    pub new_admin_token: Option<String>,
    /// This node's membership of its cluster (cluster mode).
    pub cluster: Option<crate::cluster::Membership>,
    /// The archive member, with `archive.enabled`.
    pub archive: Option<(Addr<switchboard_actors::archive::Archiver>, actix::Arbiter)>,
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
        let cluster = match cfg.cluster.enabled {
            true => Some(crate::cluster::join(cfg, &clock)?),
            false => None,
        };
        let store = match &cluster {
            Some(m) => open_clustered_store(&dir, &m.engine)?,
            None => open_store(&dir)?,
        };
        let directory = Directory::load(store.clone(), cfg.miap.key_grace_s * 1000)?;
        let migrated = directory.migrate_tokens().await?;
        if migrated > 0 {
            tracing::info!(
                records = migrated,
                "tokens stored the current way (not as the digest Identify carries)"
            );
        }
        let new_admin_token = initialise(&dir, &directory).await?;
        if new_admin_token.is_some() {
            tracing::info!(dir = %dir.display(), "initialised a new data directory; the admin token is in {}", dir.join(ADMIN_TOKEN_FILE).display());
        }
        let k2 = directory
            .broker_key()?
            .context("the data directory has no broker key")?;

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
        let hub = Hub::new(store.clone(), receipts);
        hub.push_remote_messages(&store);
        hub.receipts_from_remote(&store);
        let (sessions, im_receipts) = (hub.sessions(), hub.receipts());
        let hub = hub.start();
        // Presence pushes go to the node's sessions, or as frames to the IM
        // gateways in other processes that watch the user.
        let router = Context::<PresenceRouter>::new();
        let presence_push: Recipient<PresencePush> = router.address().recipient();
        let mut presence = Presence::new(
            clock.clone(),
            cfg.presence.idle_timeout_s * 1000,
            Some(presence_push),
        );
        if let Some(m) = &cluster {
            presence = presence.with_announce(m.presence_announcer());
        }
        let presence_view = presence.view();
        let presence = presence.start();
        if let Some(m) = &cluster {
            m.follow_presence(presence.clone().recipient());
        }
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
                sessions,
                presence_view.clone(),
                im_offline.clone(),
            ),
            broker.handle.clone(),
            members.clone(),
            store.clone(),
            clock.clone(),
        );
        gateway = gateway.with_receipts(im_receipts);
        let im = gateway.start();
        wait_logged_in(&im).await?;
        // Policy notices (supervisors told, senders warned) come from the
        // system sender through this IM gateway.
        let notices = {
            let clock = clock.clone();
            gateways::im::notices::Notices::new(
                im.clone(),
                cfg.broker.default_expires_in_s * 1000,
                move || clock.now_ms(),
            )
        }
        .start();
        broker.shared.on_notices(notices.clone().recipient());
        if let Some(m) = &cluster {
            // Users whose domain requires their home node are not served
            // through a gateway of this node's when that is another node.
            let (m, dir) = (m.clone(), directory.clone());
            let nodes = m.clone();
            broker.shared.on_homes(Arc::new(move |user| {
                m.serves_elsewhere(&dir, user).map(|w| (w.node, w.http))
            }));
            // A `redirect` rule may place deliveries on a live node.
            broker.shared.on_nodes(Arc::new(move |node| {
                node == nodes.engine.settings().node_id
                    || nodes.live_nodes().iter().any(|n| n.id == node)
            }));
        }
        let started_im = StartedGateway::of(gateways::im::MEMBER_ID, &im);
        let mut core = Core {
            store,
            directory,
            members,
            broker,
            im,
            delivery,
            presence,
            presence_view,
            hub,
            gateways: Mutex::new(vec![started_im]),
            im_offline,
            gateway_config,
            clock,
            new_admin_token,
            cluster,
            archive: None,
        };
        // Content converters, MIAP hops the broker puts on routes that need
        // them: text → SMS segments, email → text, text → fax pages.
        use crate::processors::{email, fax, sms};
        use crate::processors::{EMAIL_PROCESSOR, FAX_PROCESSOR, SMS_PROCESSOR};
        core.add_processor(SMS_PROCESSOR, sms::SmsSegments).await?;
        core.add_processor(EMAIL_PROCESSOR, email::EmailText)
            .await?;
        core.add_processor(FAX_PROCESSOR, fax::FaxPage).await?;
        // The content filter: on routes only while a content rule exists.
        let filter = crate::processors::filter::ContentFilter::new(
            core.directory.clone(),
            Some(notices.recipient()),
        );
        core.add_processor(crate::processors::FILTER_PROCESSOR, filter)
            .await?;
        // The compliance archive: a copy of each delivery of an archived
        // scope.
        if cfg.archive.enabled {
            core.archive = Some(super::archive::start(cfg, &core).await?);
        }
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
    pub(super) async fn member_config(
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
        self.add_gateway_placed(id, medium, receipts, true).await
    }

    /// [`Core::add_gateway`]; in a cluster, an email or fax gateway places
    /// its deliveries by the recipients' home nodes
    /// ([`gateways::home`]; `own`: it delivers on a connection of this
    /// node's, else it forwards).
    async fn add_gateway_placed<M: Medium>(
        &self,
        id: &str,
        medium: M,
        receipts: Option<Recipient<Receipt>>,
        own: bool,
    ) -> anyhow::Result<Addr<Gateway<M>>> {
        use switchboard_core::protocol::MediumKind;
        let kind = medium.kind();
        let placement = match &self.cluster {
            Some(m) if matches!(kind, MediumKind::Email | MediumKind::Fax) => {
                let key = self
                    .directory
                    .broker_key()?
                    .context("the cluster has no broker key")?;
                Some(gateways::home::HomePlacement::new(
                    m,
                    gateways::forward::Seal::new(&key),
                    self.directory.clone(),
                    kind,
                    FORWARD_TIMEOUT,
                    own,
                ))
            }
            _ => None,
        };
        let cfg = self.member_config(id, Some(kind)).await?;
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
        if let Some(p) = placement {
            gw = gw.with_placement(p);
        }
        let gw = gw.start();
        wait_logged_in(&gw).await?;
        self.gateways
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(StartedGateway::of(id, &gw));
        Ok(gw)
    }
}

/// The mediums of the gateways logged in to this node's broker and
/// healthy now (built-in or remote), by name, each once.
fn serving_mediums(members: &MemberRegistry) -> Vec<String> {
    let mut v: Vec<String> = members
        .snapshot()
        .into_iter()
        .filter(|m| m.logged_in && m.healthy)
        .filter_map(|m| m.medium.map(|k| k.as_str().to_string()))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// How long a delivery handed to another node is waited for: an SMTP relay
/// tries three times within seconds; a fax spool is local.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(60);

/// In a cluster: email and fax, where on here, deliver for the nodes where
/// they are off; where off here, go through a node where they are on
/// ([`gateways::forward`]).
async fn forward_mediums(
    cfg: &Config,
    core: &Core,
    membership: &crate::cluster::Membership,
) -> anyhow::Result<()> {
    let engine = &membership.engine;
    use gateways::forward::{self, ForwardMedium};
    use switchboard_core::protocol::MediumKind;
    let seal = forward::Seal::new(
        &core
            .directory
            .broker_key()?
            .context("the cluster has no broker key")?,
    );
    for (on, id, kind) in [
        (
            cfg.email.enabled,
            gateways::email::MEMBER_ID,
            MediumKind::Email,
        ),
        (cfg.fax.enabled, gateways::fax::MEMBER_ID, MediumKind::Fax),
    ] {
        if on {
            let started = core
                .gateways
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|g| g.id == id)
                .map(|g| g.deliver_here.clone());
            if let Some(g) = started {
                forward::serve(engine, seal.clone(), kind, g);
            }
        } else {
            let members = core.members.clone();
            let on_health = Box::new(move |up| members.set_healthy(&MemberId::new(id), up));
            let medium =
                ForwardMedium::new(membership, seal.clone(), kind, FORWARD_TIMEOUT, on_health);
            core.add_gateway_placed(id, medium, None, false).await?;
            // Down until a heartbeat finds a node that serves it.
            core.members.set_healthy(&MemberId::new(id), false);
        }
    }
    Ok(())
}

/// A gateway started in this process, as the node reaches it.
#[derive(Clone)]
pub(super) struct StartedGateway {
    /// Its member id.
    pub(super) id: String,
    /// What it has in flight.
    pub(super) in_flight: Recipient<GetInFlight>,
    /// Where it hears of outbox entries a takeover adopted.
    pub(super) adopt: Recipient<AdoptOutbox>,
    /// Where other nodes' deliveries for its medium come in.
    pub(super) deliver_here: Recipient<DeliverHere>,
}

impl StartedGateway {
    fn of<M: Medium>(id: &str, gw: &Addr<Gateway<M>>) -> Self {
        Self {
            id: id.to_owned(),
            in_flight: gw.clone().recipient(),
            adopt: gw.clone().recipient(),
            deliver_here: gw.clone().recipient(),
        }
    }
}

/// Waits (10 s at most) until gateway `gw` has logged in to the broker.
///
/// # Errors
/// When it has not by then.
pub async fn wait_logged_in<M: Medium>(gw: &Addr<Gateway<M>>) -> anyhow::Result<()> {
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
        } else if let Some(m) = &core.cluster {
            // Not a readiness condition: it serves while another node has
            // an SMSC bound.
            start_sms_forwarding(cfg, &core, m).await?;
        }
        if let Some(m) = &core.cluster {
            forward_mediums(cfg, &core, m).await?;
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
            )
            .with_cluster(core.cluster.clone()),
            presence_view: core.presence_view.clone(),
            delivery: core.delivery.clone(),
            members: core.members.clone(),
            broker: core.broker.shared.clone(),
            shards: core.broker.handle.clone(),
            archive: cfg.archive.enabled.then(|| crate::archive::Paths::of(cfg)),
            archiver: (core.archive.as_ref()).map(|(a, _)| a.clone().recipient()),
            clock: core.clock.clone(),
            cluster: core.cluster.clone(),
            data_dir: cfg.data.dir.clone(),
        };
        let (server, http_addr) = api::serve(state, &cfg.http.listener()?, cfg.shutdown.timeout_s)?;
        let handle = server.handle();
        actix_rt::spawn(server);
        if let Some(m) = &core.cluster {
            let broker = core.broker.shared.clone();
            let members = core.members.clone();
            // What it forwards is not its own to offer.
            let own = [
                ("sms", cfg.sms.enabled),
                ("email", cfg.email.enabled),
                ("fax", cfg.fax.enabled),
            ];
            m.serving(
                http_addr.to_string(),
                move || broker.open_transactions(),
                move || {
                    let mut v = serving_mediums(&members);
                    v.retain(|m| own.iter().all(|(k, on)| *on || m != k));
                    v
                },
            );
            let adopters = core
                .gateways
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|g| g.adopt.clone())
                .collect();
            m.take_over_dead(core.store.clone(), adopters, core.clock.clone());
        }
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
}
