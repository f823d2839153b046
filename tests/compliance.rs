//! The gateway compliance suite (`switchboard::gateways::compliance`) run
//! against every medium, each with its real far side: the IM inbox in sled,
//! an aiosmtpd relay for email, the spool directory for the fax stub.

mod common;

use actix::prelude::*;

use common::Sink;
use switchboard::gateways::compliance::{check, Subject};
use switchboard::gateways::email::EmailMedium;
use switchboard::gateways::fax::FaxMedium;
use switchboard::gateways::im::hub::Hub;
use switchboard::gateways::im::ImMedium;
use switchboard_actors::directory::{Directory, Profile};
use switchboard_actors::presence::PresenceView;
use switchboard_actors::protocol::{MediumKind, TxnId};
use switchboard_actors::store::Store;

struct Im {
    _dir: tempfile::TempDir,
    store: Store,
    directory: Directory,
    hub: Addr<Hub>,
}

impl Subject for Im {
    type M = ImMedium;
    fn medium(&mut self) -> ImMedium {
        ImMedium::new(
            self.store.clone(),
            self.directory.clone(),
            self.hub.clone(),
            PresenceView::default(),
            false,
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
    let hub = Hub::new(store.clone(), None).start();
    let mut s = Im {
        _dir: dir,
        store,
        directory,
        hub,
    };
    check(&mut s).await.unwrap();
}

struct Email {
    _dir: tempfile::TempDir,
    store: Store,
    sink: Sink,
}

impl Subject for Email {
    type M = EmailMedium;
    fn medium(&mut self) -> EmailMedium {
        EmailMedium::new(
            &format!("127.0.0.1:{}", self.sink.port),
            "localhost",
            self.store.clone(),
        )
        .unwrap()
    }
    fn broken(&mut self) -> Option<EmailMedium> {
        let closed = common::free_port();
        Some(
            EmailMedium::new(
                &format!("127.0.0.1:{closed}"),
                "localhost",
                self.store.clone(),
            )
            .unwrap(),
        )
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
