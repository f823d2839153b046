//! Delivery-status notifications (RFC 3464, in an RFC 6522
//! `multipart/report`): an email sender learns the outcome of their message
//! by email — on failure (`undeliverable`, `expired`, `blocked`), or on
//! every final outcome with `email.dsn = "all"`. Sent through the relay
//! with a null envelope sender (`MAIL FROM:<>`), so a DSN can never cause
//! another DSN.
//!
//! No backscatter: a DSN goes only to a sender whose return path is known
//! to be theirs — a user who logged in (SMTP AUTH; the server let them use
//! only their own addresses), or an address in `email.dsn_verified_domains`
//! (domains whose mail reaches this server only through relays that check
//! their senders). Mail from anyone else is never answered by mail: its
//! outcome is on the transaction. And at most `email.dsn_per_hour` DSNs
//! leave per hour, `email.dsn_per_hour_per_address` to any one address.

use std::collections::HashMap;

use actix::prelude::*;
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use switchboard_actors::gateway::Receipt;
use switchboard_core::protocol::{Clock, MediumKind, Outcome, SystemClock};
use switchboard_core::time::{rfc3339, rfc5322};

use crate::gateways::ReceiptPolicy;

/// Who gets DSNs, and how many.
#[derive(Debug, Clone)]
pub struct DsnPolicy {
    /// Which outcomes (`email.dsn`).
    pub outcomes: ReceiptPolicy,
    /// Return paths trusted without a login (lowercase domains).
    pub verified_domains: Vec<String>,
    /// DSNs per hour in all.
    pub per_hour: u32,
    /// DSNs per hour to one address.
    pub per_hour_per_address: u32,
}

/// Why a receipt got no DSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Not an email sender, or an outcome `email.dsn` does not report.
    NotWanted,
    /// The sender did not log in and their domain is not verified.
    Unverified,
    /// Over the hourly limit (in all or to this address).
    RateLimited,
}

impl Skipped {
    fn as_str(self) -> &'static str {
        match self {
            Self::NotWanted => "not_wanted",
            Self::Unverified => "unverified",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// The hourly limits: fixed one-hour windows, so the counts held are at
/// most `per_hour` addresses.
#[derive(Debug, Default)]
struct Limiter {
    window: u64,
    total: u32,
    per_address: HashMap<String, u32>,
}

impl Limiter {
    /// Counts one DSN to `to` at `now_ms`; `false` when over a limit.
    fn take(&mut self, policy: &DsnPolicy, to: &str, now_ms: u64) -> bool {
        let window = now_ms / 3_600_000;
        if window != self.window {
            *self = Self {
                window,
                ..Self::default()
            };
        }
        let mine = self.per_address.get(to).copied().unwrap_or(0);
        if self.total >= policy.per_hour || mine >= policy.per_hour_per_address {
            return false;
        }
        self.total += 1;
        self.per_address.insert(to.to_string(), mine + 1);
        true
    }
}

impl DsnPolicy {
    /// Whether `r` gets a DSN now: where to, or why not.
    fn decide(&self, r: &Receipt, limiter: &mut Limiter, now_ms: u64) -> Result<String, Skipped> {
        let Some(sender) = r
            .sender
            .as_ref()
            .filter(|s| s.medium == MediumKind::Email && s.address.contains('@'))
        else {
            return Err(Skipped::NotWanted);
        };
        if !self.outcomes.wants(&r.outcome) {
            return Err(Skipped::NotWanted);
        }
        let to = sender.address.to_ascii_lowercase();
        let verified = r.sender_user.is_some()
            || to
                .rsplit_once('@')
                .is_some_and(|(_, d)| self.verified_domains.iter().any(|v| v == d));
        if !verified {
            return Err(Skipped::Unverified);
        }
        if !limiter.take(self, &to, now_ms) {
            return Err(Skipped::RateLimited);
        }
        Ok(to)
    }
}

/// The RFC 3464 status and action of an outcome.
fn status(outcome: &Outcome) -> (&'static str, &'static str) {
    match outcome {
        Outcome::Delivered | Outcome::Read => ("delivered", "2.0.0"),
        Outcome::Undeliverable => ("failed", "5.0.0"),
        Outcome::Expired => ("failed", "5.4.7"),
        Outcome::Blocked(_) => ("failed", "5.7.1"),
    }
}

/// The DSN for `r` to `to`, as the bytes of a whole message.
pub fn report(r: &Receipt, to: &str, local_domain: &str) -> Vec<u8> {
    let failed = ReceiptPolicy::failed(&r.outcome);
    let recipient = r
        .recipient
        .clone()
        .unwrap_or_else(|| "the recipient".into());
    let final_recipient = if recipient.contains('@') {
        recipient.clone()
    } else {
        format!("{recipient}@{local_domain}")
    };
    let (title, text) = if failed {
        let why = match &r.outcome {
            Outcome::Blocked(reason) => format!("blocked ({})", one_line(reason)),
            o => o.as_str().to_string(),
        };
        (
            "Delivery Status Notification (Failure)",
            format!("Your message to {recipient} could not be delivered: {why}."),
        )
    } else {
        (
            "Delivery Status Notification (Delivered)",
            format!(
                "Your message to {recipient} was delivered{}.",
                r.via.map(|m| format!(" via {m}")).unwrap_or_default()
            ),
        )
    };
    let (action, code) = status(&r.outcome);
    let boundary = format!("=_switchboard_dsn_{}", r.txn);
    let date = rfc5322(r.at_ms);
    let at = rfc3339(r.at_ms);
    let txn = r.txn;
    let recipient = one_line(&recipient);
    let final_recipient = one_line(&final_recipient);
    format!(
        "From: Mail Delivery System <mailer-daemon@{local_domain}>\r\n\
         To: <{to}>\r\n\
         Subject: {title}\r\n\
         Date: {date}\r\n\
         Message-ID: <dsn.{txn}@{local_domain}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n \
         boundary=\"{boundary}\"\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         {text}\r\n\
         \r\n\
         Recipient: {recipient}\r\n\
         Transaction: {txn}\r\n\
         At: {at}\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {local_domain}\r\n\
         Original-Envelope-Id: {txn}\r\n\
         \r\n\
         Final-Recipient: rfc822; {final_recipient}\r\n\
         Action: {action}\r\n\
         Status: {code}\r\n\
         Last-Attempt-Date: {date}\r\n\
         \r\n\
         --{boundary}--\r\n"
    )
    .into_bytes()
}

/// `s` on one line (no header or field can be injected through it).
fn one_line(s: &str) -> String {
    crate::content::mime::one_line(s)
}

/// Sends DSNs for the email gateway's receipts.
pub struct Dsn {
    relay: AsyncSmtpTransport<Tokio1Executor>,
    local_domain: String,
    policy: DsnPolicy,
    limiter: Limiter,
}

impl Dsn {
    /// A DSN sender through `relay`.
    pub fn new(
        relay: AsyncSmtpTransport<Tokio1Executor>,
        local_domain: &str,
        policy: DsnPolicy,
    ) -> Self {
        Self {
            relay,
            local_domain: local_domain.to_string(),
            policy,
            limiter: Limiter::default(),
        }
    }
}

impl Actor for Dsn {
    type Context = Context<Self>;
}

impl Handler<Receipt> for Dsn {
    type Result = ();

    fn handle(&mut self, r: Receipt, ctx: &mut Context<Self>) {
        let to = match self
            .policy
            .decide(&r, &mut self.limiter, SystemClock.now_ms())
        {
            Ok(to) => to,
            Err(Skipped::NotWanted) => return,
            Err(why) => {
                tracing::info!(txn = %r.txn, reason = why.as_str(), "no DSN sent");
                metrics::counter!("switchboard_dsn_skipped_total", "reason" => why.as_str())
                    .increment(1);
                return;
            }
        };
        let envelope = match to.parse().map(|a| Envelope::new(None, vec![a])) {
            Ok(Ok(e)) => e,
            _ => {
                tracing::warn!(txn = %r.txn, "cannot address a DSN to the sender");
                return;
            }
        };
        let message = report(&r, &to, &self.local_domain);
        let relay = self.relay.clone();
        let txn = r.txn;
        ctx.spawn(
            async move {
                match relay.send_raw(&envelope, &message).await {
                    Ok(_) => metrics::counter!("switchboard_dsn_sent_total").increment(1),
                    Err(e) => {
                        tracing::warn!(txn = %txn, error = %e, "the DSN was not accepted by the relay");
                    }
                }
            }
            .into_actor(self),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MimeHeaders;
    use switchboard_core::protocol::{Address, TxnId};

    const NOW: u64 = 1_800_000_000_000;

    fn receipt(sender: &str, user: Option<&str>, outcome: Outcome) -> Receipt {
        Receipt {
            txn: TxnId::generate(NOW),
            sender_user: user.map(str::to_string),
            sender: Some(Address::new(MediumKind::Email, sender)),
            recipient: Some("bob".into()),
            outcome,
            via: None,
            at_ms: NOW,
        }
    }

    fn policy() -> DsnPolicy {
        DsnPolicy {
            outcomes: ReceiptPolicy::Failure,
            verified_domains: vec!["partner.example".into()],
            per_hour: 3,
            per_hour_per_address: 2,
        }
    }

    #[test]
    fn only_logged_in_senders_and_verified_domains_get_dsns() {
        let (p, mut l) = (policy(), Limiter::default());
        let failed = |s, u| receipt(s, u, Outcome::Undeliverable);
        assert_eq!(
            p.decide(&failed("alice@example.org", Some("alice")), &mut l, NOW),
            Ok("alice@example.org".into())
        );
        assert_eq!(
            p.decide(&failed("Ext@Partner.example", None), &mut l, NOW),
            Ok("ext@partner.example".into())
        );
        assert_eq!(
            p.decide(&failed("victim@example.net", None), &mut l, NOW),
            Err(Skipped::Unverified),
            "a forged envelope sender gets no backscatter"
        );
        let delivered = receipt("alice@example.org", Some("alice"), Outcome::Delivered);
        assert_eq!(p.decide(&delivered, &mut l, NOW), Err(Skipped::NotWanted));
    }

    #[test]
    fn dsns_are_limited_per_address_and_in_all_per_hour() {
        let (p, mut l) = (policy(), Limiter::default());
        let to = |s: &str| receipt(s, Some("u"), Outcome::Expired);
        assert!(p.decide(&to("a@x.example"), &mut l, NOW).is_ok());
        assert!(p.decide(&to("a@x.example"), &mut l, NOW).is_ok());
        assert_eq!(
            p.decide(&to("A@x.example"), &mut l, NOW),
            Err(Skipped::RateLimited)
        );
        assert!(p.decide(&to("b@x.example"), &mut l, NOW).is_ok());
        assert_eq!(
            p.decide(&to("c@x.example"), &mut l, NOW),
            Err(Skipped::RateLimited),
            "three in all per hour"
        );
        // The next hour starts afresh.
        assert!(p
            .decide(&to("a@x.example"), &mut l, NOW + 3_600_000)
            .is_ok());
    }

    #[test]
    fn a_dsn_is_an_rfc_3464_report() {
        let r = receipt(
            "alice@example.org",
            Some("alice"),
            Outcome::Blocked("rule\r\nBcc: x@y".into()),
        );
        let raw = report(&r, "alice@example.org", "sb.example");
        let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
        let ct = m.content_type().unwrap();
        assert_eq!(
            (ct.ctype(), ct.subtype(), ct.attribute("report-type")),
            ("multipart", Some("report"), Some("delivery-status"))
        );
        assert_eq!(m.parts.len(), 3, "the report and its two parts");
        let text = String::from_utf8_lossy(&raw);
        let status = text
            .split("Content-Type: message/delivery-status\r\n\r\n")
            .nth(1)
            .unwrap();
        for field in [
            "Reporting-MTA: dns; sb.example\r\n",
            "Final-Recipient: rfc822; bob@sb.example\r\n",
            "Action: failed\r\n",
            "Status: 5.7.1\r\n",
        ] {
            assert!(status.contains(field), "{field} in {status}");
        }
        assert!(text.contains(&format!("Original-Envelope-Id: {}", r.txn)));
        assert!(
            !text.contains("\r\nBcc:"),
            "a reason cannot add a header: {text}"
        );
        assert!(
            text.contains("Date: Fri, 15 Jan 2027 08:00:00 +0000"),
            "{text}"
        );
    }
}
