//! The submit window: messages waiting to be submitted, segment by
//! segment, with at most `window` `submit_sm` unanswered; the SMSC's
//! answers; a message whose every segment is accepted is handed to
//! [`super::correlation`].

use std::time::Instant;

use futures_util::SinkExt;
use rusmpp::pdus::SubmitSm;
use rusmpp::types::OctetString;
use rusmpp::values::{DataCoding, EsmClass, Npi, RegisteredDelivery, ServiceType, Ton};
use rusmpp::{Command, CommandStatus};
use tokio::sync::oneshot;

use switchboard_core::protocol::{Attestation, Tag, TxnId};

use super::{c_octets, Esme, Link};
use crate::gateways::sms::pdu::{self, Segment};

/// A message the broker sent, whose receipts become its report (on the
/// wire too, when another node's gateway submits it here).
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tracked {
    /// The transaction.
    pub txn: TxnId,
    /// The attempt.
    pub attempt: u32,
    /// That attempt's broker `ID`.
    pub id: Tag,
    /// The processors' attestations.
    pub attestations: Vec<Attestation>,
    /// The sending user, remembered as the one a reply from the number goes to.
    pub sender_user: Option<String>,
    /// How it is delivered, said in its `Delivered` report (in a cluster:
    /// through which node's bind, and why not the recipient's home node's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub how: Option<String>,
    /// In a cluster, before it leaves the node: where it goes
    /// ([`crate::gateways::sms::cluster`] words `how` from it).
    #[serde(skip)]
    pub home: Option<Homed>,
}

/// Where a message for a user with a home node goes (in a cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Homed {
    /// Through the home node's bind (another node's only if it never had it).
    Home(String),
    /// Through any bind; why not the home node's.
    Not(String),
}

/// Something to submit.
#[derive(Debug)]
pub struct Outgoing {
    /// The destination number.
    pub to: String,
    /// The source address.
    pub from: String,
    /// The short messages.
    pub segments: Vec<Segment>,
    /// The transaction it delivers; `None` for the gateway's own notices
    /// (receipts and replies to phones), sent without a receipt request.
    pub message: Option<Tracked>,
    /// Told once every segment is accepted and the correlation is durable.
    pub reply: Option<oneshot::Sender<Result<(), String>>>,
}

impl Outgoing {
    /// A notice of the gateway's own (no receipt requested, nobody waiting).
    ///
    /// # Errors
    /// A text that cannot be sent as SMS.
    pub fn notice(to: &str, from: &str, text: &str) -> Result<Self, String> {
        Ok(Self {
            to: to.to_string(),
            from: from.to_string(),
            segments: pdu::segments("text/plain", text.as_bytes(), 0)?,
            message: None,
            reply: None,
        })
    }
}

/// A message being submitted.
pub(super) struct Work {
    pub(super) out: Outgoing,
    pub(super) ids: Vec<Option<String>>,
    pub(super) failed: bool,
}

impl Esme {
    pub(super) fn add(&mut self, out: Outgoing) {
        let n = out.segments.len();
        let key = self.next_work;
        self.next_work += 1;
        self.work.insert(
            key,
            Work {
                ids: vec![None; n],
                out,
                failed: false,
            },
        );
        self.ready.extend((0..n).map(|i| (key, i)));
    }

    /// Submits ready segments while the window has room. Work whose sender
    /// stopped waiting (its delivery timed out) is dropped unsent.
    pub(super) async fn fill_window(&mut self, link: &mut Link) -> Result<(), String> {
        while self.inflight.len() < self.settings.window {
            let Some((key, i)) = self.ready.pop_front() else {
                return Ok(());
            };
            let Some(w) = self.work.get(&key) else {
                continue;
            };
            let abandoned = w.out.reply.as_ref().is_some_and(oneshot::Sender::is_closed)
                && w.ids.iter().all(Option::is_none);
            if w.failed || abandoned {
                self.work.remove(&key);
                continue;
            }
            let sm = match submit_sm(&w.out, &w.out.segments[i]) {
                Ok(sm) => sm,
                Err(e) => {
                    self.fail(key, e);
                    continue;
                }
            };
            let seq = self.next_seq();
            link.send(Command::new(CommandStatus::EsmeRok, seq, sm))
                .await
                .map_err(|e| format!("sending submit_sm: {e}"))?;
            self.inflight.insert(seq, (key, i, Instant::now()));
        }
        Ok(())
    }

    pub(super) fn fail(&mut self, key: u64, why: String) {
        if let Some(mut w) = self.work.remove(&key) {
            let txn = w.out.message.as_ref().map(|m| m.txn.to_string());
            tracing::info!(txn = ?txn, to = %w.out.to, reason = %why, "SMS not submitted");
            if let Some(r) = w.out.reply.take() {
                let _ = r.send(Err(why));
            }
        }
        self.ready.retain(|(k, _)| *k != key);
    }

    pub(super) async fn on_submit_resp(
        &mut self,
        seq: u32,
        status: CommandStatus,
        message_id: String,
    ) {
        let Some((key, i, _)) = self.inflight.remove(&seq) else {
            tracing::debug!(seq, "submit_sm_resp for nothing in flight");
            return;
        };
        match status {
            CommandStatus::EsmeRok if !message_id.is_empty() => {}
            CommandStatus::EsmeRok => {
                return self.fail(
                    key,
                    "the SMSC accepted a segment without a message id".into(),
                )
            }
            CommandStatus::EsmeRthrottled | CommandStatus::EsmeRmsgqful => {
                // Transient: the segment goes again after the queue.
                let txn = self
                    .work
                    .get(&key)
                    .and_then(|w| w.out.message.as_ref())
                    .map(|m| m.txn.to_string());
                tracing::info!(txn = ?txn, ?status, "SMSC busy; the segment waits");
                self.ready.push_back((key, i));
                return;
            }
            other => return self.fail(key, format!("the SMSC refused submit_sm: {other:?}")),
        }
        let Some(w) = self.work.get_mut(&key) else {
            return;
        };
        w.ids[i] = Some(message_id);
        if w.ids.iter().any(Option::is_none) {
            return;
        }
        let Some(mut w) = self.work.remove(&key) else {
            return;
        };
        let ids: Vec<String> = w.ids.iter().flatten().cloned().collect();
        let result = match &w.out.message {
            Some(t) => self.record(t, &w.out.to, ids).await,
            None => Ok(()),
        };
        if let Some(r) = w.out.reply.take() {
            let _ = r.send(result);
        }
    }
}

/// TON and NPI and the digits of `addr`: `+49…` is international ISDN,
/// one with letters alphanumeric, anything else unknown.
fn address(addr: &str) -> (Ton, Npi, &str) {
    if let Some(digits) = addr.strip_prefix('+') {
        (Ton::International, Npi::Isdn, digits)
    } else if addr.bytes().all(|b| b.is_ascii_digit()) {
        (Ton::Unknown, Npi::Isdn, addr)
    } else {
        (Ton::Alphanumeric, Npi::Unknown, addr)
    }
}

fn submit_sm(out: &Outgoing, seg: &Segment) -> Result<SubmitSm, String> {
    let (dton, dnpi, dest) = address(&out.to);
    let (ston, snpi, source) = address(&out.from);
    Ok(SubmitSm::builder()
        .service_type(ServiceType::default())
        .source_addr_ton(ston)
        .source_addr_npi(snpi)
        .source_addr(c_octets(source, "source address")?)
        .dest_addr_ton(dton)
        .dest_addr_npi(dnpi)
        .destination_addr(c_octets(dest, "destination number")?)
        .esm_class(EsmClass::from(seg.esm_class))
        .registered_delivery(RegisteredDelivery::from(u8::from(out.message.is_some())))
        .data_coding(DataCoding::from(seg.data_coding))
        .short_message(
            OctetString::from_vec(seg.short_message.clone())
                .map_err(|e| format!("short message: {e}"))?,
        )
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateways::sms::esme::normalise_number;

    #[test]
    fn addresses_get_their_ton_and_npi() {
        assert!(matches!(
            address("+4915112345678"),
            (Ton::International, Npi::Isdn, "4915112345678")
        ));
        assert!(matches!(
            address("12345"),
            (Ton::Unknown, Npi::Isdn, "12345")
        ));
        assert!(matches!(
            address("Switchbrd"),
            (Ton::Alphanumeric, Npi::Unknown, "Switchbrd")
        ));
        assert_eq!(normalise_number("4915100", 1), "+4915100");
        assert_eq!(normalise_number("+4915100", 1), "+4915100");
        assert_eq!(normalise_number("12345", 0), "12345");
    }
}
