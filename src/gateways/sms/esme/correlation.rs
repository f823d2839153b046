//! Correlation: what the SMS gateway keeps of each message it submitted
//! (in [`Tree::SmsRecords`]) so the SMSC's delivery receipts become the
//! delivery report after any restart; which user a phone's reply goes to
//! (in [`Tree::SmsReplies`]); and how long each is kept.

use std::str::FromStr;
use std::time::Duration;

use rusmpp::CommandStatus;
use serde::{Deserialize, Serialize};

use switchboard_actors::medium::MediumReport;
use switchboard_core::protocol::{Attestation, ReportStatus, Tag, TxnId};
use switchboard_core::store::records::{dec, enc, key2};
use switchboard_core::store::{Store, StoreError, Tree, WriteBatch};

use super::window::Tracked;
use super::{now_ms, Esme};
use crate::gateways::sms::pdu::{self, ReceiptOutcome};
use crate::gateways::sms::MEMBER_ID;

/// A final record is kept this long (idempotent redelivery, report resends).
pub const RECORD_TTL_MS: u64 = 24 * 3600 * 1000;
/// A record still waiting for receipts is kept this long (longer than any
/// SMSC's validity period) before it is forgotten unreceipted.
pub const SUBMITTED_TTL_MS: u64 = 8 * 24 * 3600 * 1000;
/// A reply mapping is kept this long after the last message to the number.
pub const REPLY_TTL_MS: u64 = 30 * 24 * 3600 * 1000;
/// How often old records are forgotten while bound.
pub const TIDY_EVERY: Duration = Duration::from_secs(3600);

/// What the SMS gateway keeps of a message it submitted, in
/// [`Tree::SmsRecords`] under [`record_key`]: enough to turn the SMSC's receipts into the
/// delivery report after any restart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SmsRecord {
    /// The attempt delivered.
    pub attempt: u32,
    /// That attempt's broker `ID`.
    pub id: Tag,
    /// The processors' attestations, for the `Delivered` report.
    pub attestations: Vec<Attestation>,
    /// The SMSC's message ids, one per segment.
    pub message_ids: Vec<String>,
    /// The message ids not yet receipted `DELIVRD`.
    pub pending: Vec<String>,
    /// Where it stands.
    pub state: SmsState,
    /// When it was submitted (ms).
    pub submitted_ms: u64,
}

/// Where a submitted message stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum SmsState {
    /// Waiting for receipts.
    Submitted,
    /// Every segment was delivered.
    Delivered,
    /// A segment failed.
    Failed(String),
}

/// The key of `txn`'s record.
pub fn record_key(txn: &TxnId) -> Vec<u8> {
    let mut k = b"t".to_vec();
    k.extend_from_slice(txn.to_string().as_bytes());
    key2(MEMBER_ID, &k)
}

/// The key of how `txn` was delivered ([`Tracked::how`]), when said.
pub fn how_key(txn: &TxnId) -> Vec<u8> {
    let mut k = b"h".to_vec();
    k.extend_from_slice(txn.to_string().as_bytes());
    key2(MEMBER_ID, &k)
}

/// The key mapping an SMSC message id to its transaction.
pub fn message_id_key(message_id: &str) -> Vec<u8> {
    let mut k = b"m".to_vec();
    k.extend_from_slice(message_id.as_bytes());
    key2(MEMBER_ID, &k)
}

/// The key naming the last user who messaged `number` (replies go there).
pub fn reply_key(number: &str) -> Vec<u8> {
    key2(MEMBER_ID, number.as_bytes())
}

/// A reply mapping's value: when (8 bytes, ms) ‖ the user.
fn reply_value(user: &str, at_ms: u64) -> Vec<u8> {
    let mut v = at_ms.to_be_bytes().to_vec();
    v.extend_from_slice(user.as_bytes());
    v
}

/// The user a reply from `number` goes to: the last user who messaged it
/// within [`REPLY_TTL_MS`].
///
/// # Errors
/// A store failure.
pub fn reply_to(store: &Store, number: &str, now_ms: u64) -> Result<Option<String>, StoreError> {
    Ok(store
        .get(Tree::SmsReplies, &reply_key(number))?
        .and_then(|v| decode_reply(&v))
        .filter(|(at, _)| now_ms.saturating_sub(*at) <= REPLY_TTL_MS)
        .map(|(_, user)| user))
}

fn decode_reply(v: &[u8]) -> Option<(u64, String)> {
    let at = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
    Some((at, String::from_utf8_lossy(&v[8..]).into_owned()))
}

/// Reads `txn`'s record.
///
/// # Errors
/// A store failure or a record that does not decode.
pub fn load_record(store: &Store, txn: &TxnId) -> Result<Option<SmsRecord>, StoreError> {
    store
        .get(Tree::SmsRecords, &record_key(txn))?
        .map(|b| dec(&b, "sms record"))
        .transpose()
}

impl Esme {
    /// Writes the correlation of a submitted message.
    pub(super) async fn record(
        &self,
        t: &Tracked,
        to: &str,
        ids: Vec<String>,
    ) -> Result<(), String> {
        let rec = SmsRecord {
            attempt: t.attempt,
            id: t.id,
            attestations: t.attestations.clone(),
            pending: ids.clone(),
            message_ids: ids,
            state: SmsState::Submitted,
            submitted_ms: now_ms(),
        };
        let mut b = WriteBatch::new();
        for id in &rec.message_ids {
            b.insert(
                Tree::SmsRecords,
                message_id_key(id),
                t.txn.to_string().into_bytes(),
            );
        }
        b.insert(Tree::SmsRecords, record_key(&t.txn), enc(&rec));
        if let Some(how) = &t.how {
            b.insert(Tree::SmsRecords, how_key(&t.txn), how.as_bytes().to_vec());
        }
        if let Some(user) = &t.sender_user {
            b.insert(Tree::SmsReplies, reply_key(to), reply_value(user, now_ms()));
        }
        self.store
            .writer()
            .write(b)
            .await
            .map_err(|e| format!("submitted, but the correlation was not stored: {e}"))
    }

    pub(super) async fn on_receipt(&mut self, r: pdu::ReceiptText) -> CommandStatus {
        let txn = match self.store.get(Tree::SmsRecords, &message_id_key(&r.id)) {
            Ok(Some(b)) => match std::str::from_utf8(&b)
                .ok()
                .and_then(|s| TxnId::from_str(s).ok())
            {
                Some(t) => t,
                None => {
                    tracing::error!(id = %r.id, "a corrupt message id record");
                    return CommandStatus::EsmeRok;
                }
            },
            Ok(None) => {
                tracing::warn!(id = %r.id, stat = %r.stat, "a receipt for a message id we never submitted");
                return CommandStatus::EsmeRok;
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the message id record failed");
                return CommandStatus::EsmeRxTAppn;
            }
        };
        let mut rec = match load_record(&self.store, &txn) {
            Ok(Some(rec)) => rec,
            Ok(None) => return CommandStatus::EsmeRok,
            Err(e) => {
                tracing::error!(error = %e, "reading the SMS record failed");
                return CommandStatus::EsmeRxTAppn;
            }
        };
        if rec.state != SmsState::Submitted {
            return CommandStatus::EsmeRok;
        }
        match r.outcome() {
            ReceiptOutcome::Intermediate => return CommandStatus::EsmeRok,
            ReceiptOutcome::Delivered => {
                rec.pending.retain(|p| *p != r.id);
                if rec.pending.is_empty() {
                    rec.state = SmsState::Delivered;
                }
            }
            ReceiptOutcome::Failed(why) => rec.state = SmsState::Failed(why),
        }
        let mut b = WriteBatch::new();
        b.insert(Tree::SmsRecords, record_key(&txn), enc(&rec));
        if let Err(e) = self.store.writer().write(b).await {
            tracing::error!(txn = %txn, error = %e, "storing a receipt failed; the SMSC will resend it");
            return CommandStatus::EsmeRxTAppn;
        }
        self.report(txn, &rec);
        CommandStatus::EsmeRok
    }

    fn report(&self, txn: TxnId, rec: &SmsRecord) {
        let status = match &rec.state {
            SmsState::Submitted => return,
            SmsState::Delivered => match self.store.get(Tree::SmsRecords, &how_key(&txn)) {
                Ok(Some(how)) => ReportStatus::DeliveredVia(String::from_utf8_lossy(&how).into()),
                _ => ReportStatus::Delivered,
            },
            SmsState::Failed(why) => ReportStatus::NonDelivery(why.clone()),
        };
        tracing::info!(txn = %txn, status = ?status, "SMS receipt");
        self.reports.do_send(MediumReport {
            txn,
            attempt: rec.attempt,
            id: rec.id,
            status,
            attestations: rec.attestations.clone(),
        });
    }

    /// Forgets final records older than a day, unreceipted ones older than
    /// [`SUBMITTED_TTL_MS`] and reply mappings older than [`REPLY_TTL_MS`];
    /// with `resend`, reports the
    /// younger final outcomes again (a crash may have come between storing
    /// a receipt and the broker's acknowledgement of its report; the broker
    /// takes a repeated report as a no-op).
    pub(super) async fn tidy_records(&self, resend: bool) {
        let records = match self.store.scan(Tree::SmsRecords, &key2(MEMBER_ID, b"t")) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "reading SMS records failed");
                return;
            }
        };
        let prefix = key2(MEMBER_ID, b"t").len();
        let now = now_ms();
        let mut forget = WriteBatch::new();
        for (k, v) in records {
            let Ok(rec) = dec::<SmsRecord>(&v, "sms record") else {
                continue;
            };
            let Some(txn) = std::str::from_utf8(&k[prefix..])
                .ok()
                .and_then(|s| TxnId::from_str(s).ok())
            else {
                continue;
            };
            let ttl = match rec.state {
                SmsState::Submitted => SUBMITTED_TTL_MS,
                _ => RECORD_TTL_MS,
            };
            if now.saturating_sub(rec.submitted_ms) > ttl {
                forget.remove(Tree::SmsRecords, k);
                for id in &rec.message_ids {
                    forget.remove(Tree::SmsRecords, message_id_key(id));
                }
                // In a cluster, whose it was and how it went go with it.
                forget.remove(
                    Tree::SmsRecords,
                    crate::gateways::sms::cluster::origin_key(&txn),
                );
                forget.remove(Tree::SmsRecords, how_key(&txn));
            } else if resend {
                self.report(txn, &rec);
            }
        }
        match self.store.scan(Tree::SmsReplies, &key2(MEMBER_ID, b"")) {
            Ok(replies) => {
                for (k, v) in replies {
                    let old = decode_reply(&v)
                        .is_none_or(|(at, _)| now.saturating_sub(at) > REPLY_TTL_MS);
                    if old {
                        forget.remove(Tree::SmsReplies, k);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "reading SMS reply mappings failed"),
        }
        if !forget.is_empty() {
            if let Err(e) = self.store.writer().write(forget).await {
                tracing::warn!(error = %e, "forgetting old SMS records failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::{Arc, Mutex};

    use actix::prelude::*;
    use switchboard_actors::gateway::{Accepted, Originate, OriginateError};
    use switchboard_actors::medium::Health;
    use switchboard_core::directory::Directory;

    use crate::gateways::sms::esme::EsmeSettings;
    use crate::gateways::sms::inbound::MoContext;

    #[derive(Default, Clone)]
    struct Stub(Arc<Mutex<Vec<MediumReport>>>);

    impl Actor for Stub {
        type Context = Context<Self>;
    }

    impl Handler<MediumReport> for Stub {
        type Result = ();
        fn handle(&mut self, r: MediumReport, _: &mut Context<Self>) {
            self.0.lock().unwrap().push(r);
        }
    }

    impl Handler<Originate> for Stub {
        type Result = Result<Accepted, OriginateError>;
        fn handle(&mut self, _: Originate, _: &mut Context<Self>) -> Self::Result {
            Err(OriginateError::Stopping)
        }
    }

    /// An ESME over `store` whose reports are recorded (it never binds).
    fn esme(store: &Store) -> (Esme, Arc<Mutex<Vec<MediumReport>>>) {
        let stub = Stub::default();
        let got = stub.0.clone();
        let addr = stub.start();
        let mo = MoContext {
            directory: Directory::load(store.clone(), 0).unwrap(),
            store: store.clone(),
            gateway: addr.clone().recipient(),
            expires_in_ms: 1000,
        };
        let settings = EsmeSettings {
            smsc: "127.0.0.1:1".into(),
            system_id: "x".into(),
            password: "y".into(),
            window: 1,
            enquire_link: Duration::from_secs(30),
            response_timeout: Duration::from_secs(1),
            source: "Switchboard".into(),
            alphabets: Default::default(),
        };
        let health = Arc::new(Mutex::new(Health {
            up: false,
            detail: String::new(),
        }));
        let esme = Esme::new(settings, store.clone(), addr.recipient(), health, mo);
        (esme, got)
    }

    #[actix_rt::test]
    async fn old_records_are_forgotten_and_young_outcomes_reported_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (esme, got) = esme(&store);
        let rec = |state: SmsState, age_ms: u64, id: &str| SmsRecord {
            attempt: 1,
            id: [1; 32],
            attestations: Vec::new(),
            message_ids: vec![id.into()],
            pending: Vec::new(),
            state,
            submitted_ms: now_ms() - age_ms,
        };
        let day = RECORD_TTL_MS;
        let (old, young, open, noted) = (
            TxnId::generate(now_ms()),
            TxnId::generate(now_ms()),
            TxnId::generate(now_ms()),
            TxnId::generate(now_ms()),
        );
        let mut b = WriteBatch::new();
        // old was another node's (a cluster).
        b.insert(
            Tree::SmsRecords,
            crate::gateways::sms::cluster::origin_key(&old),
            b"a".to_vec(),
        );
        b.insert(Tree::SmsRecords, how_key(&old), b"by node a".to_vec());
        // noted went through this bind for another node: its report says so.
        b.insert(Tree::SmsRecords, how_key(&noted), b"by node c".to_vec());
        for (txn, r) in [
            (old, rec(SmsState::Delivered, day + 1000, "A")),
            (
                young,
                rec(SmsState::Failed("stat:UNDELIV".into()), 1000, "B"),
            ),
            (open, rec(SmsState::Submitted, day + 1000, "C")),
            (noted, rec(SmsState::Delivered, 1000, "D")),
        ] {
            b.insert(Tree::SmsRecords, record_key(&txn), enc(&r));
            b.insert(
                Tree::SmsRecords,
                message_id_key(&r.message_ids[0]),
                txn.to_string().into_bytes(),
            );
        }
        store.writer().write(b).await.unwrap();

        esme.tidy_records(true).await;
        assert!(load_record(&store, &old).unwrap().is_none(), "forgotten");
        assert!(store
            .get(
                Tree::SmsRecords,
                &crate::gateways::sms::cluster::origin_key(&old)
            )
            .unwrap()
            .is_none());
        assert!(store
            .get(Tree::SmsRecords, &message_id_key("A"))
            .unwrap()
            .is_none());
        assert!(store
            .get(Tree::SmsRecords, &how_key(&old))
            .unwrap()
            .is_none());
        assert!(load_record(&store, &young).unwrap().is_some(), "kept");
        assert!(
            load_record(&store, &open).unwrap().is_some(),
            "still waiting: kept"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        let mut reports = got.lock().unwrap().clone();
        reports.sort_by_key(|r| (r.txn != young, r.txn));
        assert_eq!(reports.len(), 2, "{reports:?}");
        assert_eq!(reports[0].txn, young);
        assert_eq!(
            reports[0].status,
            ReportStatus::NonDelivery("stat:UNDELIV".into())
        );
        assert_eq!(
            (reports[1].txn, &reports[1].status),
            (noted, &ReportStatus::DeliveredVia("by node c".into()))
        );
        // The hourly tidy does not report again.
        esme.tidy_records(false).await;
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(got.lock().unwrap().len(), 2);
    }

    #[actix_rt::test]
    async fn unreceipted_records_and_old_reply_mappings_have_their_retention() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (esme, got) = esme(&store);
        let now = now_ms();
        let waiting = |age_ms: u64, id: &str| SmsRecord {
            attempt: 1,
            id: [2; 32],
            attestations: Vec::new(),
            message_ids: vec![id.into()],
            pending: vec![id.into()],
            state: SmsState::Submitted,
            submitted_ms: now - age_ms,
        };
        let (stale, recent) = (TxnId::generate(now), TxnId::generate(now));
        let mut b = WriteBatch::new();
        for (txn, r) in [
            (stale, waiting(SUBMITTED_TTL_MS + 1000, "S")),
            (recent, waiting(SUBMITTED_TTL_MS - 60_000, "R")),
        ] {
            b.insert(Tree::SmsRecords, record_key(&txn), enc(&r));
            b.insert(
                Tree::SmsRecords,
                message_id_key(&r.message_ids[0]),
                txn.to_string().into_bytes(),
            );
        }
        b.insert(
            Tree::SmsReplies,
            reply_key("+4915100"),
            reply_value("alice", now - REPLY_TTL_MS - 1000),
        );
        b.insert(
            Tree::SmsReplies,
            reply_key("+4915111"),
            reply_value("bob", now - 60_000),
        );
        store.writer().write(b).await.unwrap();
        // An expired mapping routes nothing, even before the sweep.
        assert_eq!(reply_to(&store, "+4915100", now).unwrap(), None);
        assert_eq!(
            reply_to(&store, "+4915111", now).unwrap().as_deref(),
            Some("bob")
        );

        esme.tidy_records(false).await;
        assert!(
            load_record(&store, &stale).unwrap().is_none(),
            "past 8 days: forgotten"
        );
        assert!(store
            .get(Tree::SmsRecords, &message_id_key("S"))
            .unwrap()
            .is_none());
        assert!(
            load_record(&store, &recent).unwrap().is_some(),
            "still waiting: kept"
        );
        assert!(store
            .get(Tree::SmsReplies, &reply_key("+4915100"))
            .unwrap()
            .is_none());
        assert!(store
            .get(Tree::SmsReplies, &reply_key("+4915111"))
            .unwrap()
            .is_some());
        assert!(got.lock().unwrap().is_empty(), "nothing is reported");
    }
}
