//! TSCS frames: `Login`, `LoginAck`, and `Refused`.

use serde::{Deserialize, Serialize};

use crate::protocol::error::ProtocolError;
use crate::protocol::ids::{MemberId, TxnId};
use crate::protocol::mac::Tag;

/// `Login { member, key_id, ts_ms, nonce, mac(K_m, "login", member, broker, ts_ms, nonce) }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    /// The member logging in.
    pub member: MemberId,
    /// Which of its keys signed.
    pub key_id: u32,
    /// The member's clock, ms since the epoch.
    pub ts_ms: u64,
    /// A fresh random nonce.
    pub nonce: [u8; 16],
    /// The MAC.
    pub mac: Tag,
}

/// `LoginAck { session_nonce, mac(K_m, "login-ack", member, nonce, session_nonce) }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginAck {
    /// The broker's random contribution to the session secret.
    pub session_nonce: [u8; 32],
    /// The MAC.
    pub mac: Tag,
}

/// Why a frame was refused: the check that failed, and the transaction when
/// the frame had one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefuseReason {
    /// The failed check.
    pub error: ProtocolError,
    /// The frame's transaction, if any.
    pub txn: Option<TxnId>,
}
