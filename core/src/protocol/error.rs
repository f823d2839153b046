//! The reasons a MIAP frame is refused. `Copy + Eq` so tests assert the exact
//! variant; every variant maps to a stable snake_case name for logs, metrics
//! and `Refused` frames.

use serde::{Deserialize, Serialize};

/// Why a frame failed a check. A frame that fails a check changes no state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
pub enum ProtocolError {
    /// The MAC does not verify with the expected key.
    #[error("bad mac")]
    BadMac,
    /// The member id is not in the directory.
    #[error("unknown member")]
    UnknownMember,
    /// The member exists but the key id is not one of its keys.
    #[error("unknown key id")]
    UnknownKeyId,
    /// The key id names a key whose grace period after rotation is over.
    #[error("key retired")]
    KeyRetired,
    /// The member has been revoked.
    #[error("member revoked")]
    Revoked,
    /// The frame's timestamp is outside the allowed skew window.
    #[error("clock skew exceeded")]
    SkewExceeded,
    /// The (member, nonce) pair was already seen inside the skew window.
    #[error("replayed nonce")]
    ReplayedNonce,
    /// The (txn, step, attempt) was already processed.
    #[error("replayed step")]
    ReplayedStep,
    /// The member has no session (no TSCS login yet).
    #[error("no session")]
    NoSession,
    /// The member's session is older than the session TTL.
    #[error("session expired")]
    SessionExpired,
    /// A report names a broker inner digest other than the stored one.
    #[error("broker id mismatch")]
    IdMismatch,
    /// The content's SHA-256 does not match the IMI or the last attestation.
    #[error("content digest mismatch")]
    DigestMismatch,
    /// The grant does not verify with this hop's key.
    #[error("bad grant")]
    BadGrant,
    /// An attestation does not verify with its processor's key.
    #[error("bad attestation")]
    BadAttestation,
    /// The message is past its expiry time.
    #[error("message expired")]
    Expired,
    /// The transaction is not known to the broker.
    #[error("unknown transaction")]
    UnknownTxn,
    /// A different message already uses this transaction id.
    #[error("transaction id conflict")]
    TxnConflict,
    /// The frame came from a member that is not the party of this step.
    #[error("wrong party")]
    WrongParty,
    /// The frame is larger than the configured maximum.
    #[error("frame too large")]
    FrameTooLarge,
    /// The frame could not be decoded.
    #[error("malformed frame")]
    Malformed,
}

impl ProtocolError {
    /// A stable snake_case name (logs, metrics labels).
    pub fn code(self) -> &'static str {
        match self {
            Self::BadMac => "bad_mac",
            Self::UnknownMember => "unknown_member",
            Self::UnknownKeyId => "unknown_key_id",
            Self::KeyRetired => "key_retired",
            Self::Revoked => "revoked",
            Self::SkewExceeded => "skew_exceeded",
            Self::ReplayedNonce => "replayed_nonce",
            Self::ReplayedStep => "replayed_step",
            Self::NoSession => "no_session",
            Self::SessionExpired => "session_expired",
            Self::IdMismatch => "id_mismatch",
            Self::DigestMismatch => "digest_mismatch",
            Self::BadGrant => "bad_grant",
            Self::BadAttestation => "bad_attestation",
            Self::Expired => "expired",
            Self::UnknownTxn => "unknown_txn",
            Self::TxnConflict => "txn_conflict",
            Self::WrongParty => "wrong_party",
            Self::FrameTooLarge => "frame_too_large",
            Self::Malformed => "malformed",
        }
    }
}
