//! The gateway compliance suite (`switchboard::gateways::compliance`) run
//! against every medium, each with its real far side: the IM inbox in sled,
//! an aiosmtpd relay for email, the SMSC simulator (npm `smpp`) for SMS,
//! the spool directory for the fax stub.

mod common;

use actix::prelude::*;

use common::{Sink, Smsc};
use switchboard::gateways::compliance::{check, Subject};
use switchboard::gateways::email::tls::{relay_transport, RelayTls};
use switchboard::gateways::email::EmailMedium;
use switchboard::gateways::fax::FaxMedium;
use switchboard::gateways::im::hub::{Hub, Sessions};
use switchboard::gateways::im::ImMedium;
use switchboard::gateways::sms::esme::{Esme, EsmeSettings, Job};
use switchboard::gateways::sms::inbound::MoContext;
use switchboard::gateways::sms::SmsMedium;
use switchboard_actors::gateway::{Originate, OriginateError};
use switchboard_actors::medium::Health;
use switchboard_actors::medium::MediumReport;
use switchboard_actors::presence::PresenceView;
use switchboard_core::directory::{Directory, Profile};
use switchboard_core::protocol::ReportStatus;
use switchboard_core::protocol::{MediumKind, TxnId};
use switchboard_core::store::Store;

struct Im {
    _dir: tempfile::TempDir,
    store: Store,
    directory: Directory,
    sessions: Sessions,
}

impl Subject for Im {
    type M = ImMedium;
    fn medium(&mut self) -> ImMedium {
        ImMedium::new(
            self.store.clone(),
            Some(self.directory.clone()),
            self.sessions.clone(),
            PresenceView::default(),
            switchboard_actors::delivery::ImOfflineWait::new(false),
        )
    }
    fn broken(&mut self) -> Option<ImMedium> {
        None
    }
    fn kind(&self) -> MediumKind {
        MediumKind::Im
    }
    fn good_address(&self) -> (String, Option<String>) {
        ("bob".into(), Some("bob".into()))
    }
    fn bad_address(&self) -> Option<(String, Option<String>)> {
        Some(("nobody".into(), Some("nobody".into())))
    }
    fn copies(&self, txn: &TxnId) -> usize {
        self.store
            .inbox("bob", None, 1000)
            .unwrap()
            .iter()
            .filter(|(_, e)| &e.txn == txn)
            .count()
    }
}

#[actix_rt::test]
async fn im_medium_complies() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let directory = Directory::load(store.clone(), 0).unwrap();
    directory
        .put_profile(Profile::im_only("bob"))
        .await
        .unwrap();
    let sessions = Hub::new(store.clone(), None).sessions();
    let mut s = Im {
        _dir: dir,
        store,
        directory,
        sessions,
    };
    check(&mut s).await.unwrap();
}

fn email_medium(relay: &str, store: &Store) -> EmailMedium {
    let transport = relay_transport(relay, RelayTls::None, "").unwrap();
    EmailMedium::new(transport, relay, "localhost", store.clone())
}

struct Email {
    _dir: tempfile::TempDir,
    store: Store,
    sink: Sink,
}

impl Subject for Email {
    type M = EmailMedium;
    fn medium(&mut self) -> EmailMedium {
        email_medium(&format!("127.0.0.1:{}", self.sink.port), &self.store)
    }
    fn broken(&mut self) -> Option<EmailMedium> {
        let closed = common::free_port();
        Some(email_medium(&format!("127.0.0.1:{closed}"), &self.store))
    }
    fn kind(&self) -> MediumKind {
        MediumKind::Email
    }
    fn good_address(&self) -> (String, Option<String>) {
        ("carol@example.org".into(), None)
    }
    fn bad_address(&self) -> Option<(String, Option<String>)> {
        Some(("not an address".into(), None))
    }
    fn copies(&self, txn: &TxnId) -> usize {
        let id = format!("<{txn}@localhost>");
        self.sink
            .messages()
            .iter()
            .filter(|m| m.contains(&id))
            .count()
    }
}

#[actix_rt::test]
async fn email_medium_complies() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut s = Email {
        _dir: dir,
        store,
        sink: Sink::start(&[]),
    };
    check(&mut s).await.unwrap();
}

struct Fax {
    spool: tempfile::TempDir,
}

impl Subject for Fax {
    type M = FaxMedium;
    fn medium(&mut self) -> FaxMedium {
        FaxMedium::new(self.spool.path().to_path_buf()).unwrap()
    }
    fn broken(&mut self) -> Option<FaxMedium> {
        // A spool whose outbox is a file, not a directory.
        let bad = self.spool.path().join("broken");
        std::fs::create_dir_all(&bad).unwrap();
        let m = FaxMedium::new(bad.clone()).unwrap();
        std::fs::remove_dir_all(bad.join("outbox")).unwrap();
        std::fs::write(bad.join("outbox"), b"not a directory").unwrap();
        Some(m)
    }
    fn kind(&self) -> MediumKind {
        MediumKind::Fax
    }
    fn good_address(&self) -> (String, Option<String>) {
        ("+4930123456".into(), Some("dora".into()))
    }
    fn bad_address(&self) -> Option<(String, Option<String>)> {
        None
    }
    fn copies(&self, txn: &TxnId) -> usize {
        usize::from(self.spool.path().join(format!("outbox/{txn}.pdf")).exists())
    }
}

#[actix_rt::test]
async fn fax_medium_complies() {
    let mut s = Fax {
        spool: tempfile::tempdir().unwrap(),
    };
    check(&mut s).await.unwrap();
}

/// Stands in for the SMS gateway: records the ESME's reports, refuses
/// phone messages (none are sent here).
#[derive(Default, Clone)]
struct GatewayStub {
    reports: std::sync::Arc<std::sync::Mutex<Vec<MediumReport>>>,
}

impl Actor for GatewayStub {
    type Context = Context<Self>;
}

impl Handler<MediumReport> for GatewayStub {
    type Result = ();
    fn handle(&mut self, r: MediumReport, _: &mut Context<Self>) {
        self.reports.lock().unwrap().push(r);
    }
}

impl Handler<Originate> for GatewayStub {
    type Result = Result<switchboard_actors::gateway::Accepted, OriginateError>;
    fn handle(&mut self, _: Originate, _: &mut Context<Self>) -> Self::Result {
        Err(OriginateError::Stopping)
    }
}

type Link = (
    tokio::sync::mpsc::UnboundedSender<Job>,
    std::sync::Arc<std::sync::Mutex<Health>>,
);

/// Starts an ESME bound (or trying to bind) to `smsc`.
fn esme(smsc: &str, store: &Store, stub: &Addr<GatewayStub>) -> Link {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let health = std::sync::Arc::new(std::sync::Mutex::new(Health {
        up: false,
        detail: "not bound yet".into(),
    }));
    let settings = EsmeSettings {
        smsc: smsc.into(),
        system_id: "switchboard".into(),
        password: "secret".into(),
        window: 4,
        enquire_link: std::time::Duration::from_secs(30),
        response_timeout: std::time::Duration::from_secs(2),
        source: "Switchboard".into(),
        alphabets: Default::default(),
    };
    let mo = MoContext {
        directory: Directory::load(store.clone(), 0).unwrap(),
        store: store.clone(),
        gateway: stub.clone().recipient(),
        expires_in_ms: 60_000,
    };
    let e = Esme::new(
        settings,
        store.clone(),
        stub.clone().recipient(),
        health.clone(),
        mo,
    );
    actix_rt::spawn(e.run(rx));
    (tx, health)
}

struct Sms {
    smsc: Smsc,
    store: Store,
    good: Link,
    broken: Link,
    next: std::cell::Cell<u32>,
    last: std::cell::RefCell<String>,
}

impl Sms {
    fn medium_on(&self, link: &Link, submit_timeout_s: u64) -> SmsMedium {
        SmsMedium::new(
            link.0.clone(),
            link.1.clone(),
            self.store.clone(),
            "Switchboard".into(),
            std::time::Duration::from_secs(submit_timeout_s),
        )
    }
}

impl Subject for Sms {
    type M = SmsMedium;
    fn medium(&mut self) -> SmsMedium {
        self.medium_on(&self.good, 10)
    }
    fn broken(&mut self) -> Option<SmsMedium> {
        Some(self.medium_on(&self.broken, 1))
    }
    fn kind(&self) -> MediumKind {
        MediumKind::Sms
    }
    fn good_address(&self) -> (String, Option<String>) {
        // A fresh number each time: the far side counts per number.
        self.next.set(self.next.get() + 1);
        let n = format!("+491510000{:04}", self.next.get());
        self.last.replace(n.clone());
        (n, Some("dora".into()))
    }
    fn bad_address(&self) -> Option<(String, Option<String>)> {
        self.last.replace("call me maybe".into());
        Some(("call me maybe".into(), None))
    }
    fn copies(&self, _: &TxnId) -> usize {
        let last = self.last.borrow();
        self.smsc
            .submits_to(last.strip_prefix('+').unwrap_or(&last))
            .len()
    }
}

#[actix_rt::test]
async fn sms_medium_complies() {
    let smsc = Smsc::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let stub = GatewayStub::default();
    let reports = stub.reports.clone();
    let stub = stub.start();
    let good = esme(&format!("127.0.0.1:{}", smsc.port), &store, &stub);
    let broken = esme(&format!("127.0.0.1:{}", common::free_port()), &store, &stub);
    for _ in 0..200 {
        if good.1.lock().unwrap().up {
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let mut s = Sms {
        smsc,
        store,
        good,
        broken,
        next: std::cell::Cell::new(0),
        last: std::cell::RefCell::new(String::new()),
    };
    check(&mut s).await.unwrap();
    // The SMSC's receipt for the good delivery became its report.
    for _ in 0..200 {
        if !reports.lock().unwrap().is_empty() {
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let r = reports.lock().unwrap().clone();
    assert_eq!(r.len(), 1, "one report: {r:?}");
    assert_eq!(r[0].status, ReportStatus::Delivered);
    let _ = s.good.0.send(Job::Stop(tokio::sync::oneshot::channel().0));
}

/// A medium that acknowledges what it never delivers: the suite must fail it.
struct Liar;

impl switchboard_actors::medium::Medium for Liar {
    fn kind(&self) -> MediumKind {
        MediumKind::Sms
    }
    fn health(&self) -> switchboard_actors::medium::Health {
        switchboard_actors::medium::Health {
            up: true,
            detail: "lies".into(),
        }
    }
    fn deliver(
        &mut self,
        _: switchboard_actors::medium::Delivery,
    ) -> switchboard_actors::medium::futures_like::LocalBoxFuture<
        'static,
        Result<switchboard_actors::medium::MediumAck, switchboard_actors::medium::NonDelivery>,
    > {
        Box::pin(async { Ok(switchboard_actors::medium::MediumAck::Delivered) })
    }
}

struct LiarSubject;

impl Subject for LiarSubject {
    type M = Liar;
    fn medium(&mut self) -> Liar {
        Liar
    }
    fn broken(&mut self) -> Option<Liar> {
        None
    }
    fn kind(&self) -> MediumKind {
        MediumKind::Sms
    }
    fn good_address(&self) -> (String, Option<String>) {
        ("+49151".into(), None)
    }
    fn bad_address(&self) -> Option<(String, Option<String>)> {
        None
    }
    fn copies(&self, _: &TxnId) -> usize {
        0
    }
}

#[actix_rt::test]
async fn the_suite_fails_a_medium_that_acknowledges_without_delivering() {
    let err = check(&mut LiarSubject).await.unwrap_err();
    assert!(err.contains("does not have exactly one copy"), "{err}");
}
