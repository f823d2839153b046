//! The email medium. Inbound: an SMTP server ([`smtp`]) accepting mail for
//! `ID@<local domain>`, answering `250` only once the message is durable and
//! released. Outbound: to the configured relay with lettre; a permanent
//! `5xx` is a non-delivery at once, a transient `4xx` (or a relay that does
//! not answer) is retried with back-off, then a non-delivery.

pub mod auth;
pub mod dsn;
pub mod parse;
pub mod smtp;
pub mod tls;

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use switchboard_actors::medium::futures_like::LocalBoxFuture;
use switchboard_actors::medium::{Delivery, Health, Medium, MediumAck, NonDelivery};
use switchboard_core::protocol::MediumKind;
use switchboard_core::store::records::key2;
use switchboard_core::store::{Store, Tree, WriteBatch};

/// The member id of the email gateway.
pub const MEMBER_ID: &str = "gw-email-1";

/// Back-off between attempts at the relay after a transient failure.
const RETRY_BACKOFF: [Duration; 2] = [Duration::from_millis(300), Duration::from_millis(900)];

/// Forgets the sent-mail records (in [`Tree::SentEmail`]) older than
/// `retention_ms`: once a message's lifetime is over no transmit of it
/// passes a hop's expiry check, so nothing can ask to send it again. Returns
/// how many were forgotten.
///
/// # Errors
/// A store failure.
pub async fn forget_sent(
    store: &Store,
    now_ms: u64,
    retention_ms: u64,
) -> Result<usize, switchboard_core::store::StoreError> {
    let mut b = WriteBatch::new();
    for (k, v) in store.scan(Tree::SentEmail, &key2(MEMBER_ID, b""))? {
        let at = v
            .get(..8)
            .and_then(|t| t.try_into().ok())
            .map_or(0, u64::from_be_bytes);
        if now_ms.saturating_sub(at) > retention_ms {
            b.remove(Tree::SentEmail, k);
        }
    }
    let n = b.len();
    if n > 0 {
        store.writer().write(b).await?;
    }
    Ok(n)
}

/// Outbound email through a relay.
pub struct EmailMedium {
    relay: AsyncSmtpTransport<Tokio1Executor>,
    relay_name: String,
    local_domain: String,
    store: Store,
}

impl EmailMedium {
    /// An email medium sending through `relay` (see [`tls::relay_transport`];
    /// `relay_name` names it in the health detail); `local_domain` names the
    /// senders (`alice@<local_domain>`). Sent transactions are recorded in
    /// `store`, so the same transaction is not mailed twice (at least once
    /// across a crash right after the relay accepted it).
    pub fn new(
        relay: AsyncSmtpTransport<Tokio1Executor>,
        relay_name: &str,
        local_domain: &str,
        store: Store,
    ) -> Self {
        Self {
            relay,
            relay_name: relay_name.to_string(),
            local_domain: local_domain.to_string(),
            store,
        }
    }

    fn message(&self, d: &Delivery) -> Result<Message, String> {
        let (name, address) = match &d.sender.medium {
            MediumKind::Email => (None, d.sender.address.clone()),
            _ => (
                Some(format!("{} via Switchboard", d.from)),
                format!("{}@{}", sanitize_local(&d.from), self.local_domain),
            ),
        };
        let from = Mailbox::new(
            name,
            address
                .parse()
                .map_err(|e| format!("bad sender address {address:?}: {e}"))?,
        );
        let to: Mailbox = d
            .route
            .address
            .parse()
            .map_err(|e| format!("bad recipient address {:?}: {e}", d.route.address))?;
        let subject = d
            .subject
            .clone()
            .unwrap_or_else(|| format!("Message from {}", d.from));
        Message::builder()
            .from(from)
            .to(to)
            .subject(crate::content::mime::one_line(&subject))
            .message_id(Some(format!("<{}@{}>", d.txn, self.local_domain)))
            .header(ContentType::TEXT_PLAIN)
            .body(crate::content::text_of(&d.content_type, &d.content))
            .map_err(|e| format!("cannot build the email: {e}"))
    }
}

/// A user id or address made safe as an email local part.
fn sanitize_local(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        "switchboard".into()
    } else {
        out
    }
}

impl Medium for EmailMedium {
    fn kind(&self) -> MediumKind {
        MediumKind::Email
    }

    fn health(&self) -> Health {
        Health {
            up: true,
            detail: format!("relay {}", self.relay_name),
        }
    }

    fn deliver(&mut self, d: Delivery) -> LocalBoxFuture<'static, Result<MediumAck, NonDelivery>> {
        let message = match self.message(&d) {
            Ok(m) => m,
            Err(e) => return Box::pin(async move { Err(NonDelivery(e)) }),
        };
        let sent_key = key2(MEMBER_ID, d.txn.as_bytes());
        match self.store.get(Tree::SentEmail, &sent_key) {
            Ok(Some(_)) => return Box::pin(async { Ok(MediumAck::Delivered) }),
            Ok(None) => {}
            Err(e) => {
                return Box::pin(async move { Err(NonDelivery(format!("store unavailable: {e}"))) })
            }
        }
        let (relay, store) = (self.relay.clone(), self.store.clone());
        let txn = d.txn;
        Box::pin(async move {
            let mut waits = RETRY_BACKOFF.iter();
            loop {
                match relay.send(message.clone()).await {
                    Ok(_) => {
                        let mut b = WriteBatch::new();
                        b.insert(
                            Tree::SentEmail,
                            sent_key,
                            d.sent_at_ms.to_be_bytes().to_vec(),
                        );
                        store
                            .writer()
                            .write(b)
                            .await
                            .map_err(|e| NonDelivery(format!("sent, but not recorded: {e}")))?;
                        return Ok(MediumAck::Delivered);
                    }
                    Err(e) if e.is_permanent() => {
                        return Err(NonDelivery(format!("relay refused: {e}")));
                    }
                    Err(e) => match waits.next() {
                        Some(w) => {
                            tracing::info!(txn = %txn, error = %e, "relay failed transiently; retrying");
                            actix_rt::time::sleep(*w).await;
                        }
                        None => {
                            return Err(NonDelivery(format!("relay failed after retries: {e}")))
                        }
                    },
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn sent_mail_is_remembered_for_its_retention_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = 1_800_000_000_000u64;
        let day = 86_400_000;
        let key = |n: u8| key2(MEMBER_ID, &[n; 16]);
        let mut b = WriteBatch::new();
        b.insert(
            Tree::SentEmail,
            key(1),
            (now - 9 * day).to_be_bytes().to_vec(),
        );
        b.insert(Tree::SentEmail, key(2), (now - day).to_be_bytes().to_vec());
        b.insert(
            Tree::SentEmail,
            key2("gw-email-2", &[3; 16]),
            0u64.to_be_bytes().to_vec(),
        );
        store.writer().write(b).await.unwrap();
        assert_eq!(forget_sent(&store, now, 8 * day).await.unwrap(), 1);
        assert_eq!(store.get(Tree::SentEmail, &key(1)).unwrap(), None);
        assert!(store.get(Tree::SentEmail, &key(2)).unwrap().is_some());
        assert!(
            store
                .get(Tree::SentEmail, &key2("gw-email-2", &[3; 16]))
                .unwrap()
                .is_some(),
            "another gateway's records are its own"
        );
    }
}
