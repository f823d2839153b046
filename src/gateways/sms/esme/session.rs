//! The SMPP session: binding as transceiver, the bound session's loop
//! (submits, answers to every request the SMSC sends, `enquire_link` and
//! its silence timeout, the hourly tidy), and unbinding on stop.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rusmpp::pdus::{BindTransceiver, DeliverSmResp};
use rusmpp::types::COctetString;
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::Framed;

use switchboard_actors::medium::Health;

use super::correlation::TIDY_EVERY;
use super::{c_octets, reply, sleep_until_opt, End, Esme, Job, Link};
use crate::gateways::sms::pdu::{Inbound, PduCodec};

impl Esme {
    /// Connects and binds as transceiver.
    pub(super) async fn bind(&mut self) -> Result<Link, String> {
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
    pub(super) async fn session(
        &mut self,
        link: &mut Link,
        jobs: &mut mpsc::UnboundedReceiver<Job>,
    ) -> End {
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
                    Some(Job::Submit(o)) => self.add(*o),
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
                // The SMSC forgets what it was answered for: not before the
                // journal is durable past what this deliver_sm wrote (the
                // message's outbox entry, a receipt's correlation).
                let w = self.store.writer();
                w.durable_past(w.written())
                    .await
                    .map_err(|e| format!("the journal is not durable: {e}"))?;
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

    pub(super) async fn unbind(&mut self, link: &mut Link) {
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
