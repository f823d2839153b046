//! The ESME: one task owning the SMPP connection to the SMSC.
//!
//! It binds as transceiver, submits segments keeping at most `window`
//! `submit_sm` unanswered, answers every request the SMSC sends (receipts
//! and phone messages as `deliver_sm`, `enquire_link`, `unbind`; anything
//! else `generic_nack`), sends `enquire_link` every `enquire_link` and takes
//! the link for dead when the SMSC stays silent past the response timeout.
//! A lost link is re-bound with back-off (0.5 s doubling to 30 s); segments
//! the SMSC had not answered are submitted again on the new link (at least
//! once: an SMSC that took a segment and vanished before answering may see
//! it twice). On stop it unbinds.
//!
//! PDUs are handled one at a time and in order, so a receipt is read only
//! after the correlation of the `submit_sm_resp` before it is durable.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::str::FromStr;
use std::time::{Duration, Instant};

use actix::Recipient;
use futures_util::{SinkExt, StreamExt};
use rusmpp::pdus::{BindTransceiver, DeliverSmResp, SubmitSm};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, InterfaceVersion, Npi, RegisteredDelivery, ServiceType, Ton,
};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;

use switchboard_actors::medium::Health;
use switchboard_actors::medium::MediumReport;
use switchboard_core::protocol::{Attestation, ReportStatus, Tag, TxnId};
use switchboard_core::store::records::{dec, enc, key2};
use switchboard_core::store::{Store, Tree, WriteBatch};

use super::inbound::{Mo, MoContext};
use super::pdu::{self, Inbound, PduCodec, ReceiptOutcome, Segment, ShortMessage};
use super::{
    load_record, message_id_key, record_key, reply_key, SharedHealth, SmsRecord, SmsState,
    MEMBER_ID,
};

/// A message the broker sent, whose receipts become its report.
#[derive(Debug)]
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

/// Work for the ESME task.
#[derive(Debug)]
pub enum Job {
    /// Submit a message.
    Submit(Outgoing),
    /// Unbind and stop; answered when done.
    Stop(oneshot::Sender<()>),
}

/// How the ESME binds and paces itself.
#[derive(Debug, Clone)]
pub struct EsmeSettings {
    /// The SMSC, `host:port`.
    pub smsc: String,
    /// `system_id`.
    pub system_id: String,
    /// `password`.
    pub password: String,
    /// Unanswered `submit_sm` allowed.
    pub window: usize,
    /// Time between `enquire_link`s.
    pub enquire_link: Duration,
    /// Longest wait for an answer (bind, submit, enquire_link).
    pub response_timeout: Duration,
    /// Our address, the source of notices.
    pub source: String,
}

/// How a session ended.
enum End {
    Stop,
    Lost(String),
}

/// A message being submitted.
struct Work {
    out: Outgoing,
    ids: Vec<Option<String>>,
    failed: bool,
}

/// Parts of a concatenated phone message.
struct Parts {
    total: u8,
    got: BTreeMap<u8, String>,
    first: Instant,
}

type Link = Framed<TcpStream, PduCodec>;

const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Longest time the parts of a phone message are waited for.
const PARTS_TTL: Duration = Duration::from_secs(600);
/// Most phone messages being reassembled at once (the oldest goes first).
const MAX_PARTIAL: usize = 1000;
/// Final records are kept this long (idempotent redelivery, report resends).
const RECORD_TTL_MS: u64 = 24 * 3600 * 1000;
/// How often old records are forgotten while bound.
const TIDY_EVERY: Duration = Duration::from_secs(3600);

/// The ESME task's state.
pub struct Esme {
    settings: EsmeSettings,
    store: Store,
    reports: Recipient<MediumReport>,
    health: SharedHealth,
    mo: MoContext,
    seq: u32,
    next_work: u64,
    work: BTreeMap<u64, Work>,
    ready: VecDeque<(u64, usize)>,
    inflight: HashMap<u32, (u64, usize, Instant)>,
    parts: HashMap<(String, u16), Parts>,
    on_health: Option<Box<dyn Fn(bool)>>,
}

impl Esme {
    /// An ESME whose receipts become reports to `reports` (the gateway).
    pub fn new(
        settings: EsmeSettings,
        store: Store,
        reports: Recipient<MediumReport>,
        health: SharedHealth,
        mo: MoContext,
    ) -> Self {
        Self {
            settings,
            store,
            reports,
            health,
            mo,
            seq: 0,
            next_work: 0,
            work: BTreeMap::new(),
            ready: VecDeque::new(),
            inflight: HashMap::new(),
            parts: HashMap::new(),
            on_health: None,
        }
    }

    /// Calls `f` whenever the bind comes up or goes down (the node marks the
    /// gateway routable at once, not at its next health poll).
    pub fn on_health(mut self, f: impl Fn(bool) + 'static) -> Self {
        self.on_health = Some(Box::new(f));
        self
    }

    fn set_health(&self, up: bool, detail: String) {
        if let Ok(mut h) = self.health.lock() {
            if h.up != up || h.detail != detail {
                if up {
                    tracing::info!(smsc = %self.settings.smsc, "{detail}");
                } else {
                    tracing::warn!(smsc = %self.settings.smsc, "SMS gateway down: {detail}");
                }
            }
            let changed = h.up != up;
            *h = Health { up, detail };
            drop(h);
            if changed {
                if let Some(f) = &self.on_health {
                    f(up);
                }
            }
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = if self.seq >= 0x7FFF_FFFF {
            1
        } else {
            self.seq + 1
        };
        self.seq
    }

    /// Runs until stopped (a `Job::Stop`, or every sender gone).
    pub async fn run(mut self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        self.tidy_records(true).await;
        let mut backoff = BACKOFF_MIN;
        loop {
            let end = match self.bind().await {
                Ok(mut link) => {
                    backoff = BACKOFF_MIN;
                    self.session(&mut link, &mut jobs).await
                }
                Err(why) => End::Lost(why),
            };
            match end {
                End::Stop => return,
                End::Lost(why) => self.set_health(false, why),
            }
            // Segments in flight on the lost link go again on the next one.
            for (_, (w, i, _)) in self.inflight.drain() {
                self.ready.push_front((w, i));
            }
            let until = tokio::time::Instant::now() + backoff;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => break,
                    job = jobs.recv() => match job {
                        Some(Job::Submit(o)) => self.add(o),
                        Some(Job::Stop(done)) => {
                            let _ = done.send(());
                            return;
                        }
                        None => return,
                    },
                }
            }
        }
    }

    /// Connects and binds as transceiver.
    async fn bind(&mut self) -> Result<Link, String> {
        let s = &self.settings;
        let timeout = s.response_timeout;
        let stream = tokio::time::timeout(timeout, TcpStream::connect(&s.smsc))
            .await
            .map_err(|_| format!("connecting to {} timed out", s.smsc))?
            .map_err(|e| format!("cannot connect to {}: {e}", s.smsc))?;
        let _ = stream.set_nodelay(true);
        let mut link = Framed::new(stream, PduCodec::default());
        let bind = BindTransceiver::builder()
            .system_id(c_octets(&s.system_id, "system_id")?)
            .password(c_octets(&s.password, "password")?)
            .system_type(COctetString::empty())
            .interface_version(InterfaceVersion::Smpp3_4)
            .addr_ton(Ton::Unknown)
            .addr_npi(Npi::Unknown)
            .address_range(COctetString::empty())
            .build();
        let seq = self.next_seq();
        link.send(Command::new(CommandStatus::EsmeRok, seq, bind))
            .await
            .map_err(|e| format!("sending bind_transceiver: {e}"))?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, link.next())
                .await
                .map_err(|_| "no answer to bind_transceiver".to_string())?;
            let c = match next {
                None => return Err("the SMSC closed the connection during bind".into()),
                Some(Err(e)) => return Err(format!("during bind: {e}")),
                Some(Ok(Inbound::Undecodable { error, .. })) => {
                    return Err(format!("undecodable answer to bind_transceiver: {error}"))
                }
                Some(Ok(Inbound::Command(c))) => c,
            };
            match c.pdu() {
                _ if c.sequence_number() == seq
                    && matches!(
                        c.id(),
                        CommandId::BindTransceiverResp | CommandId::GenericNack
                    ) =>
                {
                    if c.status() != CommandStatus::EsmeRok {
                        return Err(format!(
                            "bind_transceiver refused by the SMSC: {:?}",
                            c.status()
                        ));
                    }
                    self.set_health(
                        true,
                        format!(
                            "bound to {} as {} (transceiver)",
                            self.settings.smsc, self.settings.system_id
                        ),
                    );
                    return Ok(link);
                }
                Some(Pdu::EnquireLink) => {
                    reply(&mut link, &c, CommandStatus::EsmeRok, Pdu::EnquireLinkResp).await?;
                }
                _ => {}
            }
        }
    }

    /// One bound session.
    async fn session(&mut self, link: &mut Link, jobs: &mut mpsc::UnboundedReceiver<Job>) -> End {
        let every = self.settings.enquire_link;
        let timeout = self.settings.response_timeout;
        let mut enquire = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut tidy =
            tokio::time::interval_at(tokio::time::Instant::now() + TIDY_EVERY, TIDY_EVERY);
        let mut heard = Instant::now();
        loop {
            if let Err(why) = self.fill_window(link).await {
                return End::Lost(why);
            }
            let oldest = self
                .inflight
                .values()
                .map(|(_, _, at)| *at)
                .min()
                .map(|at| tokio::time::Instant::from_std(at + timeout));
            let room = self.inflight.len() < self.settings.window;
            tokio::select! {
                inbound = link.next() => {
                    heard = Instant::now();
                    let outcome = match inbound {
                        None => Err("the SMSC closed the connection".to_string()),
                        Some(Err(e)) => Err(format!("reading from the SMSC: {e}")),
                        Some(Ok(i)) => self.on_inbound(link, i).await,
                    };
                    match outcome {
                        Ok(None) => {}
                        Ok(Some(end)) => return end,
                        Err(why) => return End::Lost(why),
                    }
                }
                job = jobs.recv(), if room => match job {
                    Some(Job::Submit(o)) => self.add(o),
                    Some(Job::Stop(done)) => {
                        self.unbind(link).await;
                        let _ = done.send(());
                        return End::Stop;
                    }
                    None => {
                        self.unbind(link).await;
                        return End::Stop;
                    }
                },
                _ = enquire.tick() => {
                    if heard.elapsed() > every + timeout {
                        return End::Lost(format!(
                            "nothing from the SMSC for {}s",
                            heard.elapsed().as_secs()
                        ));
                    }
                    let seq = self.next_seq();
                    if let Err(e) = link.send(Command::new(CommandStatus::EsmeRok, seq, Pdu::EnquireLink)).await {
                        return End::Lost(format!("sending enquire_link: {e}"));
                    }
                }
                _ = tidy.tick() => self.tidy_records(false).await,
                () = sleep_until_opt(oldest) => {
                    return End::Lost(format!(
                        "a submit_sm went unanswered for {}s",
                        timeout.as_secs()
                    ));
                }
            }
        }
    }

    fn add(&mut self, out: Outgoing) {
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
    async fn fill_window(&mut self, link: &mut Link) -> Result<(), String> {
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

    fn fail(&mut self, key: u64, why: String) {
        if let Some(mut w) = self.work.remove(&key) {
            let txn = w.out.message.as_ref().map(|m| m.txn.to_string());
            tracing::info!(txn = ?txn, to = %w.out.to, reason = %why, "SMS not submitted");
            if let Some(r) = w.out.reply.take() {
                let _ = r.send(Err(why));
            }
        }
        self.ready.retain(|(k, _)| *k != key);
    }

    /// Handles one PDU; `Ok(Some(_))` ends the session.
    async fn on_inbound(&mut self, link: &mut Link, i: Inbound) -> Result<Option<End>, String> {
        let c = match i {
            Inbound::Command(c) => c,
            Inbound::Undecodable {
                command_id,
                sequence,
                error,
            } => {
                tracing::warn!(command_id = format!("{command_id:#010x}"), sequence, %error, "undecodable PDU from the SMSC");
                if let Some((key, _, _)) = self.inflight.remove(&sequence) {
                    self.fail(key, format!("undecodable answer to submit_sm: {error}"));
                }
                if command_id & 0x8000_0000 == 0 {
                    let nack =
                        Command::new(CommandStatus::EsmeRinvcmdlen, sequence, Pdu::GenericNack);
                    link.send(nack)
                        .await
                        .map_err(|e| format!("sending generic_nack: {e}"))?;
                }
                return Ok(None);
            }
        };
        let seq = c.sequence_number();
        // Responses go by command id: one with an error status may carry
        // no body at all.
        match (c.id(), c.pdu()) {
            (CommandId::SubmitSmResp, pdu) => {
                let id = match pdu {
                    Some(Pdu::SubmitSmResp(r)) => r.message_id().as_str().to_string(),
                    _ => String::new(),
                };
                self.on_submit_resp(seq, c.status(), id).await;
            }
            (CommandId::GenericNack, _) => {
                if let Some((key, _, _)) = self.inflight.remove(&seq) {
                    self.fail(
                        key,
                        format!(
                            "the SMSC answered submit_sm with generic_nack {:?}",
                            c.status()
                        ),
                    );
                } else {
                    tracing::warn!(seq, status = ?c.status(), "generic_nack from the SMSC");
                }
            }
            (_, Some(Pdu::DeliverSm(d))) => {
                let status = self
                    .on_deliver_sm(
                        u8::from(d.esm_class),
                        u8::from(d.data_coding),
                        d.source_addr.as_str(),
                        u8::from(d.source_addr_ton),
                        d.short_message().as_ref(),
                    )
                    .await;
                let resp = DeliverSmResp::builder()
                    .message_id(COctetString::empty())
                    .build();
                reply(link, &c, status, resp).await?;
            }
            (_, Some(Pdu::EnquireLink)) => {
                reply(link, &c, CommandStatus::EsmeRok, Pdu::EnquireLinkResp).await?;
            }
            (_, Some(Pdu::Unbind)) => {
                reply(link, &c, CommandStatus::EsmeRok, Pdu::UnbindResp).await?;
                return Ok(Some(End::Lost("the SMSC unbound".into())));
            }
            (id, _) if u32::from(id) & 0x8000_0000 != 0 => {}
            _ => {
                tracing::info!(command = ?c.id(), "unsupported request from the SMSC");
                let nack = Command::new(CommandStatus::EsmeRinvcmdid, seq, Pdu::GenericNack);
                link.send(nack)
                    .await
                    .map_err(|e| format!("sending generic_nack: {e}"))?;
            }
        }
        Ok(None)
    }

    async fn on_submit_resp(&mut self, seq: u32, status: CommandStatus, message_id: String) {
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

    /// Writes the correlation of a submitted message.
    async fn record(&self, t: &Tracked, to: &str, ids: Vec<String>) -> Result<(), String> {
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
                Tree::Sent,
                message_id_key(id),
                t.txn.to_string().into_bytes(),
            );
        }
        b.insert(Tree::Sent, record_key(&t.txn), enc(&rec));
        if let Some(user) = &t.sender_user {
            b.insert(Tree::Sent, reply_key(to), user.clone().into_bytes());
        }
        self.store
            .writer()
            .write(b)
            .await
            .map_err(|e| format!("submitted, but the correlation was not stored: {e}"))
    }

    async fn on_deliver_sm(
        &mut self,
        esm_class: u8,
        data_coding: u8,
        source: &str,
        source_ton: u8,
        sm: &[u8],
    ) -> CommandStatus {
        let decoded = match ShortMessage::decode(esm_class, data_coding, sm) {
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
    fn notice(&mut self, to: &str, text: &str) {
        match Outgoing::notice(to, &self.settings.source, text) {
            Ok(o) => self.add(o),
            Err(e) => tracing::warn!(error = %e, "cannot send a notice SMS"),
        }
    }

    async fn on_receipt(&mut self, r: pdu::ReceiptText) -> CommandStatus {
        let txn = match self.store.get(Tree::Sent, &message_id_key(&r.id)) {
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
        b.insert(Tree::Sent, record_key(&txn), enc(&rec));
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
            SmsState::Delivered => ReportStatus::Delivered,
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

    /// Forgets final records older than a day; with `resend`, reports the
    /// younger final outcomes again (a crash may have come between storing
    /// a receipt and the broker's acknowledgement of its report; the broker
    /// takes a repeated report as a no-op).
    async fn tidy_records(&self, resend: bool) {
        let records = match self.store.scan(Tree::Sent, &key2(MEMBER_ID, b"t")) {
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
            if rec.state == SmsState::Submitted {
                continue;
            }
            if now.saturating_sub(rec.submitted_ms) > RECORD_TTL_MS {
                forget.remove(Tree::Sent, k);
                for id in &rec.message_ids {
                    forget.remove(Tree::Sent, message_id_key(id));
                }
            } else if resend {
                self.report(txn, &rec);
            }
        }
        if !forget.is_empty() {
            if let Err(e) = self.store.writer().write(forget).await {
                tracing::warn!(error = %e, "forgetting old SMS records failed");
            }
        }
    }

    async fn unbind(&mut self, link: &mut Link) {
        let seq = self.next_seq();
        if link
            .send(Command::new(CommandStatus::EsmeRok, seq, Pdu::Unbind))
            .await
            .is_err()
        {
            return;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Ok(Some(Ok(i))) = tokio::time::timeout_at(deadline, link.next()).await {
            if matches!(&i, Inbound::Command(c) if c.sequence_number() == seq && c.id() == CommandId::UnbindResp)
            {
                tracing::info!(smsc = %self.settings.smsc, "unbound from the SMSC");
                break;
            }
        }
        if let Ok(mut h) = self.health.lock() {
            *h = Health {
                up: false,
                detail: "unbound (shutting down)".into(),
            };
        }
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn reply(
    link: &mut Link,
    to: &Command,
    status: CommandStatus,
    pdu: impl Into<Pdu>,
) -> Result<(), String> {
    link.send(Command::new(status, to.sequence_number(), pdu))
        .await
        .map_err(|e| format!("answering the SMSC: {e}"))
}

fn c_octets<const MIN: usize, const MAX: usize>(
    s: &str,
    what: &str,
) -> Result<COctetString<MIN, MAX>, String> {
    COctetString::from_str(s).map_err(|e| format!("{what} {s:?}: {e}"))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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

/// A phone's number as profiles write it: international numbers with `+`.
pub fn normalise_number(source: &str, ton: u8) -> String {
    if ton == 1 && !source.starts_with('+') {
        format!("+{source}")
    } else {
        source.to_string()
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

    use std::sync::{Arc, Mutex};

    use actix::prelude::*;
    use switchboard_actors::gateway::{Accepted, Originate, OriginateError};
    use switchboard_core::directory::Directory;

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

    #[actix_rt::test]
    async fn old_records_are_forgotten_and_young_outcomes_reported_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
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
        };
        let health = Arc::new(Mutex::new(Health {
            up: false,
            detail: String::new(),
        }));
        let esme = Esme::new(settings, store.clone(), addr.recipient(), health, mo);
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
        let (old, young, open) = (
            TxnId::generate(now_ms()),
            TxnId::generate(now_ms()),
            TxnId::generate(now_ms()),
        );
        let mut b = WriteBatch::new();
        for (txn, r) in [
            (old, rec(SmsState::Delivered, day + 1000, "A")),
            (
                young,
                rec(SmsState::Failed("stat:UNDELIV".into()), 1000, "B"),
            ),
            (open, rec(SmsState::Submitted, day + 1000, "C")),
        ] {
            b.insert(Tree::Sent, record_key(&txn), enc(&r));
            b.insert(
                Tree::Sent,
                message_id_key(&r.message_ids[0]),
                txn.to_string().into_bytes(),
            );
        }
        store.writer().write(b).await.unwrap();

        esme.tidy_records(true).await;
        assert!(load_record(&store, &old).unwrap().is_none(), "forgotten");
        assert!(store
            .get(Tree::Sent, &message_id_key("A"))
            .unwrap()
            .is_none());
        assert!(load_record(&store, &young).unwrap().is_some(), "kept");
        assert!(
            load_record(&store, &open).unwrap().is_some(),
            "still waiting: kept"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        let reports = got.lock().unwrap().clone();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].txn, young);
        assert_eq!(
            reports[0].status,
            ReportStatus::NonDelivery("stat:UNDELIV".into())
        );
        // The hourly tidy does not report again.
        esme.tidy_records(false).await;
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(got.lock().unwrap().len(), 1);
    }

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
