//! MIAP — the Message and Information Authentication Protocol (see
//! `docs/MIAP.md`). Frames, keys, MACs, TSCS (time-synchronised set-up),
//! per-step keys and the one wire codec. No runtime here: every party (broker
//! shards, gateways, processors, remote members) calls the same functions.
//!
//! Layering: bytes ([`codec`]) → [`Frame`] ([`frames`]) → checks ([`verify`],
//! [`tscs`]) that the actors call before they change any state.

pub mod clock;
pub mod codec;
pub mod error;
pub mod frames;
pub mod ids;
pub mod imi;
pub mod keys;
pub mod mac;
pub mod sessions;
pub mod tscs;
pub mod verify;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::ProtocolError;
pub use frames::{
    Attestation, Frame, Grant, HealthFrame, Identify, Identity, Login, LoginAck, Notify, NotifyAck,
    Outcome, PresenceFrame, PresenceState, RefuseReason, RejectReason, Rejected, Release,
    ReleaseAck, Report, ReportAck, ReportStatus, Submit, Transmit, TransmitAck, Watch,
};
pub use ids::{Address, MediumKind, MemberId, TxnId};
pub use imi::{BrokerImi, Imi, Priority, Route, To};
pub use keys::{KeyRing, MemberKeys, SecretKey};
pub use mac::{Tag, TAG_LEN};
pub use sessions::SessionPair;
