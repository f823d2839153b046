//! Messages from phones (`deliver_sm` that is not a receipt).
//!
//! Addressing: a leading `@ID ` names the user; otherwise the message is a
//! reply to the last user who messaged that number; otherwise it is refused
//! with a reply saying how to address one. The phone's number is the sender
//! (mapped to the user with that SMS mechanism, if any). The SMSC is
//! answered `ESME_ROK` only once the message is durably in the outbox (or
//! was answered with a reply SMS); a failure to store it is a temporary
//! error (`ESME_RX_T_APPN`), so the SMSC delivers it again.

use actix::Recipient;
use rusmpp::CommandStatus;

use switchboard_actors::gateway::{Originate, OriginateError};
use switchboard_core::directory::profile::valid_user_id;
use switchboard_core::directory::Directory;
use switchboard_core::protocol::{Address, MediumKind, Priority, To};
use switchboard_core::store::Store;

use super::esme::correlation::reply_to;
use super::esme::now_ms;

/// The help sent to a phone whose message names no one.
pub const HOW_TO_ADDRESS: &str =
    "Switchboard: start your message with @ID to reach someone, e.g. \"@bob Hello\".";

/// A message from a phone.
#[derive(Debug, Clone)]
pub struct Mo {
    /// The phone's number (`+…` when international).
    pub from: String,
    /// The text, reassembled.
    pub text: String,
}

/// What became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoOutcome {
    /// The answer to the SMSC.
    pub status: CommandStatus,
    /// An SMS back to the phone, if any.
    pub reply: Option<String>,
}

/// What handling a phone message needs.
pub struct MoContext {
    /// The directory (sender mapping).
    pub directory: Directory,
    /// The store (reply mapping).
    pub store: Store,
    /// The gateway that originates the message.
    pub gateway: Recipient<Originate>,
    /// Expiry of originated messages (ms).
    pub expires_in_ms: u64,
}

/// Who a text is for, and the text without the address.
pub fn addressee(text: &str) -> Option<(String, String)> {
    let rest = text.trim_start().strip_prefix('@')?;
    let (id, body) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    Some((id.to_string(), body.trim().to_string()))
}

impl MoContext {
    /// Originates `mo`.
    pub async fn handle(&self, mo: Mo) -> MoOutcome {
        let ok = |reply: Option<String>| MoOutcome {
            status: CommandStatus::EsmeRok,
            reply,
        };
        let (to, body) = match addressee(&mo.text) {
            Some((id, _)) if !valid_user_id(&id) => {
                return ok(Some(format!(
                    "Switchboard: \"{id}\" is not a user id. {HOW_TO_ADDRESS}"
                )))
            }
            Some((id, body)) => (id, body),
            None => match reply_to(&self.store, &mo.from, now_ms()) {
                Ok(Some(user)) => (user, mo.text.trim().to_string()),
                Ok(None) => return ok(Some(HOW_TO_ADDRESS.into())),
                Err(e) => {
                    tracing::error!(error = %e, "reading the reply mapping failed");
                    return MoOutcome {
                        status: CommandStatus::EsmeRxTAppn,
                        reply: None,
                    };
                }
            },
        };
        if body.is_empty() {
            return ok(Some(format!(
                "Switchboard: your message to {to} was empty; nothing was sent."
            )));
        }
        let sender = Address::new(MediumKind::Sms, mo.from.clone());
        let o = Originate {
            sender_user: self.directory.user_for_address(&sender),
            sender,
            to: To::User(to.clone()),
            content: body.into_bytes(),
            content_type: "text/plain; charset=utf-8".into(),
            subject: None,
            priority: Priority::Normal,
            expires_in_ms: self.expires_in_ms,
            receipt: true,
            dedupe: None,
        };
        match self.gateway.send(o).await {
            Ok(Ok(acc)) => {
                tracing::info!(from = %mo.from, to = %to, txn = %acc.txn, "SMS received");
                ok(None)
            }
            Ok(Err(OriginateError::Rejected(r))) => {
                tracing::info!(from = %mo.from, to = %to, reason = r.code(), "SMS refused");
                ok(Some(format!(
                    "Switchboard: your message to {to} was not sent ({}).",
                    r.told()
                )))
            }
            other => {
                tracing::warn!(from = %mo.from, result = ?other.map(|r| r.map(|a| a.txn)), "SMS not stored; the SMSC will resend it");
                MoOutcome {
                    status: CommandStatus::EsmeRxTAppn,
                    reply: None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::addressee;

    #[test]
    fn leading_at_names_the_user() {
        assert_eq!(
            addressee("@bob hello there"),
            Some(("bob".into(), "hello there".into()))
        );
        assert_eq!(addressee("  @bob\nhi"), Some(("bob".into(), "hi".into())));
        assert_eq!(addressee("@bob"), Some(("bob".into(), String::new())));
        assert_eq!(addressee("hello @bob"), None);
        assert_eq!(addressee("hello"), None);
    }
}
