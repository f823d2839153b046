//! The frames a WebSocket client sends, parsed from a text frame: JSON,
//! a known `type`, that type's fields and nothing else. The session
//! ([`super::ws`]) acts on them; `fuzz/` feeds this arbitrary text.
//!
//! Owns: the client frames' syntax. Must not touch: what they do.

use serde::Deserialize;
use serde_json::Value;

use switchboard_actors::bus::State;
use switchboard_core::protocol::Priority;

/// Frames a client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    Auth {
        token: String,
    },
    Send {
        id: Option<Value>,
        to: String,
        body: String,
        subject: Option<String>,
        priority: Option<Priority>,
        expires_in_s: Option<u64>,
        receipt: Option<bool>,
        idempotency_key: Option<String>,
    },
    Read {
        id: Option<Value>,
        txn: String,
    },
    Presence {
        state: State,
        note: Option<String>,
    },
    Subscribe {
        users: Vec<String>,
    },
}

/// The frame types there are.
pub const TYPES: [&str; 5] = ["auth", "send", "read", "presence", "subscribe"];

/// Why a text frame is not a client frame: the `error` frame's fields.
#[derive(Debug)]
pub struct Refusal {
    /// The frame's `id`, when it had one.
    pub id: Option<Value>,
    /// `bad_json`, `bad_request` or `unknown_type`.
    pub code: &'static str,
    /// What is wrong, for the client.
    pub message: String,
}

impl ClientFrame {
    /// The frame in `text`, with its `id` (echoed in the answer).
    ///
    /// # Errors
    /// [`Refusal`]: not JSON, no string `type`, an unknown type, or fields
    /// that do not fit it.
    pub fn parse(text: &str) -> Result<(Option<Value>, Self), Refusal> {
        let v: Value = serde_json::from_str(text).map_err(|e| Refusal {
            id: None,
            code: "bad_json",
            message: format!("malformed JSON: {e}"),
        })?;
        let id = v.get("id").cloned();
        let refuse = |code, message| Refusal {
            id: id.clone(),
            code,
            message,
        };
        let Some(kind) = v.get("type").and_then(Value::as_str).map(str::to_string) else {
            return Err(refuse(
                "bad_request",
                "a frame needs a string \"type\"".into(),
            ));
        };
        if !TYPES.contains(&kind.as_str()) {
            return Err(refuse(
                "unknown_type",
                format!(
                    "unknown type {kind:?}; expected one of {}",
                    TYPES.join(", ")
                ),
            ));
        }
        match serde_json::from_value(v) {
            Ok(f) => Ok((id, f)),
            Err(e) => Err(refuse("bad_request", format!("invalid {kind} frame: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_or_say_why_not_with_their_id() {
        let (id, f) = ClientFrame::parse(r#"{"type":"read","id":7,"txn":"t"}"#).unwrap();
        assert_eq!(id, Some(Value::from(7)));
        assert!(matches!(f, ClientFrame::Read { txn, .. } if txn == "t"));
        for (text, code) in [
            ("{", "bad_json"),
            (r#"{"id":1}"#, "bad_request"),
            (r#"{"type":"shout","id":2}"#, "unknown_type"),
            (r#"{"type":"send","to":"bob"}"#, "bad_request"),
            (r#"{"type":"auth","token":"t","extra":1}"#, "bad_request"),
        ] {
            let r = ClientFrame::parse(text).unwrap_err();
            assert_eq!(r.code, code, "{text}: {}", r.message);
        }
        assert_eq!(
            ClientFrame::parse(r#"{"type":"x","id":"a"}"#)
                .unwrap_err()
                .id,
            Some(Value::from("a"))
        );
    }
}
