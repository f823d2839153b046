//! Receipts to SMS senders: a phone that sent a message learns its outcome
//! by SMS — on failure, or on every final outcome with `sms.receipts =
//! "all"` ("Switchboard: delivered to bob via im."). Notices are sent
//! without a receipt request, so a notice never causes another.

use actix::prelude::*;
use tokio::sync::mpsc;

use switchboard_actors::gateway::Receipt;
use switchboard_core::protocol::{MediumKind, Outcome};

use super::esme::{Job, Outgoing};
use crate::gateways::ReceiptPolicy;

/// The text telling a phone about `r`'s outcome.
pub fn notice_text(r: &Receipt) -> String {
    let to = r.recipient.as_deref().unwrap_or("the recipient");
    match &r.outcome {
        Outcome::Delivered => format!(
            "Switchboard: delivered to {to}{}.",
            r.via.map(|m| format!(" via {m}")).unwrap_or_default()
        ),
        Outcome::Read => format!("Switchboard: read by {to}."),
        Outcome::Undeliverable => {
            format!("Switchboard: your message to {to} could not be delivered.")
        }
        Outcome::Expired => format!("Switchboard: your message to {to} expired undelivered."),
        Outcome::Blocked(why) => format!("Switchboard: your message to {to} was blocked ({why})."),
    }
}

/// Sends notices for the SMS gateway's receipts through the ESME.
pub struct SmsNotify {
    jobs: mpsc::UnboundedSender<Job>,
    source: String,
    policy: ReceiptPolicy,
}

impl SmsNotify {
    /// Notices from `source`, as `policy` says.
    pub fn new(jobs: mpsc::UnboundedSender<Job>, source: String, policy: ReceiptPolicy) -> Self {
        Self {
            jobs,
            source,
            policy,
        }
    }
}

impl Actor for SmsNotify {
    type Context = Context<Self>;
}

impl Handler<Receipt> for SmsNotify {
    type Result = ();

    fn handle(&mut self, r: Receipt, _: &mut Context<Self>) {
        let Some(sender) = r.sender.as_ref().filter(|s| s.medium == MediumKind::Sms) else {
            return;
        };
        if !self.policy.wants(&r.outcome) {
            return;
        }
        match Outgoing::notice(&sender.address, &self.source, &notice_text(&r)) {
            Ok(o) => {
                let _ = self.jobs.send(Job::Submit(Box::new(o)));
            }
            Err(e) => tracing::warn!(txn = %r.txn, error = %e, "cannot build a receipt SMS"),
        }
    }
}
