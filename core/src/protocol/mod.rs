//! MIAP — the Message and Information Authentication Protocol (see
//! `docs/MIAP.md`): ids, the IMI, every frame with its make/check pair, keys,
//! MACs, TSCS (time-synchronised set-up), per-step keys and the one wire
//! codec. No runtime here: every party (broker shards, gateways, processors,
//! remote members) calls the same functions.
//!
//! Layering: bytes ([`codec`]) → [`Frame`] ([`frames`], one file per frame
//! family with its checks) → session state ([`tscs`]) and step idempotency
//! ([`replay`]). [`verify`] holds only what every check shares.
//!
//! Owns: the wire format and its cryptography. Must not touch: storage,
//! the directory, or any actor — keys come in as a [`KeyRing`].

pub mod clock;
pub mod codec;
pub mod error;
pub mod frames;
pub mod ids;
pub mod imi;
pub mod keys;
pub mod mac;
pub mod replay;
pub mod tscs;
pub mod verify;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::ProtocolError;
pub use frames::{
    ArchiveCopy, Attestation, Frame, Grant, HealthFrame, Held, Identify, Identity, Login, LoginAck,
    Notify, NotifyAck, Outcome, PresenceFrame, PresenceState, RefuseReason, RejectReason, Rejected,
    Release, ReleaseAck, Report, ReportAck, ReportStatus, Submit, Transmit, TransmitAck, Watch,
};
pub use ids::{Address, MediumKind, MemberId, TxnId};
pub use imi::{BrokerImi, Imi, Priority, Route, To};
pub use keys::{KeyRing, MemberKeys, SecretKey};
pub use mac::{Tag, TAG_LEN};
pub use tscs::{Session, SessionPair};
