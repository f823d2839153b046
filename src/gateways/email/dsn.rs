//! Delivery-status notifications: an email sender learns the outcome of
//! their message by email — on failure (`undeliverable`, `expired`,
//! `blocked`), or on every final outcome with `email.dsn = "all"`. Sent
//! through the relay with a null envelope sender (`MAIL FROM:<>`), so a DSN
//! can never cause another DSN.

use actix::prelude::*;
use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use switchboard_actors::gateway::Receipt;
use switchboard_core::protocol::MediumKind;

use crate::gateways::ReceiptPolicy;
use crate::http::time::rfc3339;

/// Sends DSNs for the email gateway's receipts.
pub struct Dsn {
    relay: AsyncSmtpTransport<Tokio1Executor>,
    local_domain: String,
    policy: ReceiptPolicy,
}

impl Dsn {
    /// A DSN sender through `relay`.
    pub fn new(
        relay: AsyncSmtpTransport<Tokio1Executor>,
        local_domain: &str,
        policy: ReceiptPolicy,
    ) -> Self {
        Self {
            relay,
            local_domain: local_domain.to_string(),
            policy,
        }
    }
}

impl Actor for Dsn {
    type Context = Context<Self>;
}

impl Handler<Receipt> for Dsn {
    type Result = ();

    fn handle(&mut self, r: Receipt, ctx: &mut Context<Self>) {
        let Some(sender) = r
            .sender
            .filter(|s| s.medium == MediumKind::Email && s.address.contains('@'))
        else {
            return;
        };
        if !self.policy.wants(&r.outcome) {
            return;
        }
        let failed = ReceiptPolicy::failed(&r.outcome);
        let to = r.recipient.unwrap_or_else(|| "the recipient".into());
        let (title, text) = if failed {
            (
                "Delivery Status Notification (Failure)",
                format!(
                    "Your message to {to} could not be delivered: {}.",
                    r.outcome.as_str()
                ),
            )
        } else {
            (
                "Delivery Status Notification (Delivered)",
                format!(
                    "Your message to {to} was delivered{}.",
                    r.via.map(|m| format!(" via {m}")).unwrap_or_default()
                ),
            )
        };
        let body = format!(
            "{text}\n\nTransaction: {}\nAt: {}\n",
            r.txn,
            rfc3339(r.at_ms)
        );
        let daemon = format!("mailer-daemon@{}", self.local_domain);
        let built = (|| -> Result<Message, String> {
            let to_addr: lettre::Address = sender.address.parse().map_err(|e| format!("{e}"))?;
            let envelope =
                Envelope::new(None, vec![to_addr.clone()]).map_err(|e| format!("{e}"))?;
            Message::builder()
                .from(
                    format!("Mail Delivery System <{daemon}>")
                        .parse()
                        .map_err(|e| format!("{e}"))?,
                )
                .to(lettre::message::Mailbox::new(None, to_addr))
                .subject(title)
                .envelope(envelope)
                .header(ContentType::TEXT_PLAIN)
                .body(body)
                .map_err(|e| format!("{e}"))
        })();
        let message = match built {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(txn = %r.txn, error = %e, "cannot build a DSN");
                return;
            }
        };
        let relay = self.relay.clone();
        let txn = r.txn;
        ctx.spawn(
            async move {
                if let Err(e) = relay.send(message).await {
                    tracing::warn!(txn = %txn, error = %e, "the DSN was not accepted by the relay");
                }
            }
            .into_actor(self),
        );
    }
}
