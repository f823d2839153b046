//! `Processor<C: Converter>`: a MIAP hop that converts content on its way to
//! the destination (long text → SMS segments, …). It checks its grant with
//! its own key, the expiry and the content digest; converts; appends an
//! attestation over the digests in and out; and forwards the frame to the
//! next hop. A conversion that blocks or fails is reported to the broker by
//! the processor itself (phase 4), and the content goes no further.
//!
//! Owns: one conversion hop. Must not touch: the route (the broker chose it)
//! or the content's delivery (the destination's).

use std::time::Duration;

use actix::prelude::*;

use crate::bus::{BrokerHandle, MiapFrame};
use crate::converter::{Converted, Converter, Input};
use crate::member_session::{MemberConfig, MemberSession};
use crate::registry::MemberRegistry;
use switchboard_core::protocol::clock::SharedClock;
use switchboard_core::protocol::frames;
use switchboard_core::protocol::{
    Frame, MemberId, ProtocolError, ReportStatus, Transmit, TransmitAck,
};

/// A converting hop.
pub struct Processor<C: Converter> {
    tscs: MemberSession,
    converter: C,
    members: MemberRegistry,
}

impl<C: Converter> Processor<C> {
    /// A processor for `converter`.
    pub fn new(
        cfg: MemberConfig,
        converter: C,
        broker: BrokerHandle,
        members: MemberRegistry,
        clock: SharedClock,
    ) -> Self {
        Self {
            tscs: MemberSession::new(cfg, broker, clock),
            converter,
            members,
        }
    }

    fn on_transmit(&mut self, from: &MemberId, t: Transmit) -> Result<(), ProtocolError> {
        let me = self.tscs.cfg.id.clone();
        frames::check_transmit(&me, &self.tscs.cfg.key, &t, self.tscs.now())?;
        let (txn, attempt) = (t.imi.imi.txn, t.imi.attempt);
        self.members
            .send(from, &me, Frame::TransmitAck(TransmitAck { txn, attempt }));
        let imi = &t.imi.imi;
        let from = imi
            .sender_user
            .clone()
            .unwrap_or_else(|| imi.sender.to_string());
        let input = Input {
            content_type: t
                .attestations
                .last()
                .map_or(imi.content_type.as_str(), |a| a.content_type.as_str()),
            content: &t.content,
            subject: imi.subject.as_deref(),
            from: &from,
            to: &t.imi.route.address,
            meta: Some(&t.imi),
        };
        let converted = match self.converter.convert(&input) {
            Ok(Converted::Content {
                content,
                content_type,
            }) => Ok((content, content_type, Vec::new())),
            Ok(Converted::Marked {
                content,
                content_type,
                marks,
            }) => Ok((content, content_type, marks)),
            // Not forwarded: reported, with its own attestation when it
            // marked the message (the content unchanged).
            Ok(Converted::Blocked { rule, marks }) => Err((ReportStatus::Blocked(rule), marks)),
            Ok(Converted::Quarantined { rule, marks }) => {
                Err((ReportStatus::Quarantined(rule), marks))
            }
            Err(reason) => Err((
                ReportStatus::NonDelivery(format!("{}: {reason}", self.converter.name())),
                Vec::new(),
            )),
        };
        let status = match converted {
            Ok((content, content_type, marks)) => {
                let att = frames::make_attestation(
                    me.clone(),
                    &self.tscs.cfg.key,
                    &t.id,
                    &t.content,
                    &content,
                    &content_type,
                    marks,
                );
                let route = &t.imi.route;
                let next = route
                    .processors
                    .iter()
                    .position(|p| p == &me)
                    .and_then(|i| route.processors.get(i + 1))
                    .unwrap_or(&route.destination)
                    .clone();
                let mut attestations = t.attestations;
                attestations.push(att);
                let forward = Transmit {
                    imi: t.imi,
                    id: t.id,
                    grants: t.grants,
                    content,
                    attestations,
                };
                if !self
                    .members
                    .send(&next, &me, Frame::Transmit(Box::new(forward)))
                {
                    tracing::warn!(txn = %txn, next = %next, "next hop not connected; the attempt times out");
                }
                return Ok(());
            }
            Err(stopped) => stopped,
        };
        let (status, marks) = status;
        tracing::info!(txn = %txn, processor = %me, status = ?status, "content not forwarded");
        let content_type = input.content_type.to_string();
        let mut attestations = t.attestations;
        if !marks.is_empty() {
            attestations.push(frames::make_attestation(
                me.clone(),
                &self.tscs.cfg.key,
                &t.id,
                &t.content,
                &t.content,
                &content_type,
                marks,
            ));
        }
        let session = self.tscs.session()?;
        let report =
            frames::make_report(&session.current, txn, attempt, t.id, status, attestations);
        self.tscs.to_broker(Frame::Report(report));
        Ok(())
    }
}

impl<C: Converter> Actor for Processor<C> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        self.members.connect_processor(
            self.tscs.cfg.id.clone(),
            self.converter.spec(),
            ctx.address().recipient(),
            self.tscs.now(),
        );
        self.tscs.login();
        ctx.run_interval(self.tscs.renew_every(), |act, _| act.tscs.login());
        ctx.run_interval(Duration::from_secs(2), |act, _| {
            if !act.tscs.logged_in() {
                act.tscs.login();
            }
        });
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        self.members.disconnect(&self.tscs.cfg.id);
        Running::Stop
    }
}

impl<C: Converter> Handler<crate::bus::LinkUp> for Processor<C> {
    type Result = ();

    /// A (new) connection to a remote node: log in again on it.
    fn handle(&mut self, _: crate::bus::LinkUp, _: &mut Context<Self>) {
        self.tscs.drop_session();
        self.tscs.login();
    }
}

impl<C: Converter> Handler<MiapFrame> for Processor<C> {
    type Result = ();

    fn handle(&mut self, msg: MiapFrame, _: &mut Context<Self>) {
        let MiapFrame { from, frame } = msg;
        let txn = frame.txn();
        let kind = frame.kind();
        let from_broker = self.tscs.is_broker(&from);
        let result = match frame {
            Frame::LoginAck(a) if from_broker => self.tscs.on_login_ack(&a),
            Frame::ReportAck(a) if from_broker => self
                .tscs
                .session()
                .and_then(|s| s.verify(|x| frames::check_report_ack(x, &a)).map(|_| ())),
            Frame::Refused(r) => {
                if from_broker
                    && matches!(
                        r.error,
                        ProtocolError::NoSession | ProtocolError::SessionExpired
                    )
                {
                    self.tscs.drop_session();
                    self.tscs.login();
                }
                Ok(())
            }
            Frame::Transmit(t) => self.on_transmit(&from, *t),
            Frame::TransmitAck(_) => Ok(()),
            _ => Err(ProtocolError::WrongParty),
        };
        if let Err(error) = result {
            self.tscs.refuse(&self.members, &from, kind, error, txn);
        }
    }
}
