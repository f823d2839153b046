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
//!
//! The task's rooms: [`session`] (bind, the bound session's loop, the PDUs
//! the SMSC sends, unbind), [`window`] (what waits to be submitted and the
//! `submit_sm` window), [`correlation`] (message ids → transactions,
//! receipts → reports, the reply mapping, and their retention) and
//! [`reassembly`] (phone messages, concatenated ones put back together).

pub mod correlation;
pub mod reassembly;
pub mod session;
pub mod window;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::str::FromStr;
use std::time::{Duration, Instant};

use actix::Recipient;
use futures_util::SinkExt;
use rusmpp::types::COctetString;
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;

use switchboard_actors::medium::{Health, MediumReport};
use switchboard_core::store::Store;

use super::inbound::MoContext;
use super::pdu::PduCodec;
use super::SharedHealth;
use reassembly::Parts;
use window::Work;

pub use window::{Outgoing, Tracked};

/// Work for the ESME task.
#[derive(Debug)]
pub enum Job {
    /// Submit a message.
    Submit(Box<Outgoing>),
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
    /// How phone messages under `data_coding` 0 and 1 are read.
    pub alphabets: super::pdu::Alphabets,
}

/// How a session ended.
pub(crate) enum End {
    Stop,
    Lost(String),
}

pub(crate) type Link = Framed<TcpStream, PduCodec>;

const BACKOFF_MIN: Duration = Duration::from_millis(500);

const BACKOFF_MAX: Duration = Duration::from_secs(30);

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
                        Some(Job::Submit(o)) => self.add(*o),
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
}

pub(crate) async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

pub(crate) async fn reply(
    link: &mut Link,
    to: &Command,
    status: CommandStatus,
    pdu: impl Into<Pdu>,
) -> Result<(), String> {
    link.send(Command::new(status, to.sequence_number(), pdu))
        .await
        .map_err(|e| format!("answering the SMSC: {e}"))
}

pub(crate) fn c_octets<const MIN: usize, const MAX: usize>(
    s: &str,
    what: &str,
) -> Result<COctetString<MIN, MAX>, String> {
    COctetString::from_str(s).map_err(|e| format!("{what} {s:?}: {e}"))
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A phone's number as profiles write it: international numbers with `+`.
pub fn normalise_number(source: &str, ton: u8) -> String {
    if ton == 1 && !source.starts_with('+') {
        format!("+{source}")
    } else {
        source.to_string()
    }
}
