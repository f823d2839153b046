//! Phone messages: a `deliver_sm` is a delivery receipt (to
//! [`super::correlation`]) or a message from a phone; the parts of a
//! concatenated one are put back together (at most `MAX_PARTIAL` at
//! once, each waited for `PARTS_TTL`) before it goes to the user.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rusmpp::CommandStatus;

use super::window::Outgoing;
use super::{normalise_number, Esme};
use crate::gateways::sms::inbound::Mo;
use crate::gateways::sms::pdu::{self, ShortMessage};

/// Parts of a concatenated phone message.
pub(super) struct Parts {
    total: u8,
    got: BTreeMap<u8, String>,
    first: Instant,
}

/// Longest time the parts of a phone message are waited for.
const PARTS_TTL: Duration = Duration::from_secs(600);

/// Most phone messages being reassembled at once (the oldest goes first).
const MAX_PARTIAL: usize = 1000;

impl Esme {
    pub(super) async fn on_deliver_sm(
        &mut self,
        esm_class: u8,
        data_coding: u8,
        source: &str,
        source_ton: u8,
        sm: &[u8],
    ) -> CommandStatus {
        let decoded =
            match ShortMessage::decode(esm_class, data_coding, sm, &self.settings.alphabets) {
                Ok(d) => d,
                Err(e) => {
                    tracing::info!(from = %source, error = %e, "deliver_sm refused");
                    return CommandStatus::EsmeRxPAppn;
                }
            };
        if pdu::is_receipt(esm_class) {
            return match pdu::parse_receipt(&decoded.text) {
                Some(r) => self.on_receipt(r).await,
                None => {
                    tracing::warn!(text = %decoded.text, "a delivery receipt without id: or stat:");
                    CommandStatus::EsmeRok
                }
            };
        }
        let from = normalise_number(source, source_ton);
        let text = match decoded.concat {
            Some(c) if c.total > 1 => match self.reassemble(&from, c, decoded.text) {
                Some(t) => t,
                None => return CommandStatus::EsmeRok,
            },
            _ => decoded.text,
        };
        let outcome = self
            .mo
            .handle(Mo {
                from: from.clone(),
                text,
            })
            .await;
        if let Some(text) = outcome.reply {
            self.notice(&from, &text);
        }
        outcome.status
    }

    fn reassemble(&mut self, from: &str, c: pdu::Concat, text: String) -> Option<String> {
        self.parts.retain(|_, p| p.first.elapsed() < PARTS_TTL);
        let key = (from.to_string(), c.reference);
        if self.parts.len() >= MAX_PARTIAL && !self.parts.contains_key(&key) {
            let oldest = self
                .parts
                .iter()
                .min_by_key(|(_, p)| p.first)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                tracing::warn!(from = %k.0, "too many partial phone messages; dropping the oldest");
                self.parts.remove(&k);
            }
        }
        let p = self.parts.entry(key.clone()).or_insert_with(|| Parts {
            total: c.total,
            got: BTreeMap::new(),
            first: Instant::now(),
        });
        p.got.insert(c.seq, text);
        if p.got.len() < usize::from(p.total) {
            return None;
        }
        self.parts
            .remove(&key)
            .map(|p| p.got.into_values().collect())
    }

    /// Queues a notice SMS to `to`.
    pub(super) fn notice(&mut self, to: &str, text: &str) {
        match Outgoing::notice(to, &self.settings.source, text) {
            Ok(o) => self.add(o),
            Err(e) => tracing::warn!(error = %e, "cannot send a notice SMS"),
        }
    }
}
