//! Every MIAP frame, one file per family, each with its struct(s) and its
//! `make_*`/`check_*` pair: [`login`] (TSCS), the five phases of a
//! transaction ([`submit`], [`release`], [`transmit`], [`report`],
//! [`notify`]), and the frames a member signs under its session outside any
//! transaction ([`presence`], [`health`], [`identify`], [`watch`]). The
//! [`Frame`] enum is the envelope the codec puts on the wire.
//!
//! A check runs before any state changes, so a forged or replayed frame
//! changes nothing.

pub mod copy;
pub mod health;
pub mod identify;
pub mod login;
pub mod notify;
pub mod presence;
pub mod release;
pub mod report;
pub mod submit;
pub mod transmit;
pub mod watch;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use copy::{check_archive_copy, make_archive_copy, ArchiveCopy};
pub use health::{check_health, make_health, HealthFrame};
pub use identify::{
    check_identify, check_identity, check_redirect, make_identify, make_identity, make_redirect,
    Identify, Identity, Redirect,
};
pub use login::{finish_login, start_login, Login, LoginAck, LoginVerifier, PendingLogin};
pub use notify::{
    check_notify, check_notify_ack, make_notify, make_notify_ack, Notify, NotifyAck, Outcome,
};
pub use presence::{check_presence, make_presence, PresenceFrame, PresenceState};
pub use release::{
    check_held, check_rejected, check_release, check_release_ack, inner_id, make_held,
    make_rejected, make_release, make_release_ack, Grant, Held, RejectReason, Rejected, Release,
    ReleaseAck,
};
pub use report::{
    check_report, check_report_ack, make_report, make_report_ack, Report, ReportAck, ReportStatus,
};
pub use submit::{check_submit, make_submit, Submit};
pub use transmit::{
    check_attestation_chain, check_attestations, check_copy, check_transmit, make_attestation,
    make_transmit, Attestation, Transmit, TransmitAck,
};
pub use watch::{check_watch, make_watch, Watch};

use super::error::ProtocolError;
use super::ids::TxnId;

/// Why a frame was refused: the check that failed, and the transaction when
/// the frame had one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefuseReason {
    /// The failed check.
    pub error: ProtocolError,
    /// The frame's transaction, if any.
    pub txn: Option<TxnId>,
}

/// One MIAP frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// TSCS step 1 (member → broker).
    Login(Login),
    /// TSCS step 3 (broker → member).
    LoginAck(LoginAck),
    /// A frame failed a check (answer to the sender).
    Refused(RefuseReason),
    /// Phase 1 (originator → broker).
    Submit(Submit),
    /// Phase 2 (broker → originator).
    Release(Box<Release>),
    /// Phase 2, when the message may not go anywhere.
    Rejected(Rejected),
    /// Phase 2 acknowledgement (originator → broker).
    ReleaseAck(ReleaseAck),
    /// Phase 3 (originator → hops → destination).
    Transmit(Box<Transmit>),
    /// Phase 3 transport acknowledgement (hop → previous hop).
    TransmitAck(TransmitAck),
    /// Phase 4 (destination → broker).
    Report(Report),
    /// Phase 4 acknowledgement (broker → destination).
    ReportAck(ReportAck),
    /// Phase 5 (broker → originator).
    Notify(Notify),
    /// Phase 5 acknowledgement (originator → broker).
    NotifyAck(NotifyAck),
    /// Presence (gateway → broker).
    Presence(PresenceFrame),
    /// A gateway's medium health (gateway → broker).
    Health(HealthFrame),
    /// Whose token is this (IM gateway → broker). New variants go last, so
    /// the older ones keep their encoding.
    Identify(Identify),
    /// The answer to `Identify` (broker → IM gateway).
    Identity(Identity),
    /// Whose presence an IM gateway follows (IM gateway → broker).
    Watch(Watch),
    /// Phase 2, when policy quarantines the message (broker → originator).
    Held(Held),
    /// The answer to `Identify` for a user served by another node (broker →
    /// IM gateway).
    Redirect(Redirect),
    /// Send the archive its copy again (broker → originator, answering a
    /// resubmission of a concluded archived transaction).
    ArchiveCopy(Box<ArchiveCopy>),
}

impl Frame {
    /// The transaction the frame belongs to, if any (shard selection).
    pub fn txn(&self) -> Option<TxnId> {
        Some(match self {
            Frame::Submit(f) => f.imi.txn,
            Frame::Release(f) => f.imi.imi.txn,
            Frame::Rejected(f) => f.txn,
            Frame::ReleaseAck(f) => f.txn,
            Frame::Transmit(f) => f.imi.imi.txn,
            Frame::TransmitAck(f) => f.txn,
            Frame::Report(f) => f.txn,
            Frame::ReportAck(f) => f.txn,
            Frame::Notify(f) => f.txn,
            Frame::NotifyAck(f) => f.txn,
            Frame::Held(f) => f.txn,
            Frame::ArchiveCopy(f) => f.imi.imi.txn,
            Frame::Login(_)
            | Frame::LoginAck(_)
            | Frame::Refused(_)
            | Frame::Presence(_)
            | Frame::Health(_)
            | Frame::Identify(_)
            | Frame::Identity(_)
            | Frame::Watch(_)
            | Frame::Redirect(_) => return None,
        })
    }

    /// The frame's name (logs).
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Login(_) => "login",
            Frame::LoginAck(_) => "login_ack",
            Frame::Refused(_) => "refused",
            Frame::Submit(_) => "submit",
            Frame::Release(_) => "release",
            Frame::Rejected(_) => "rejected",
            Frame::ReleaseAck(_) => "release_ack",
            Frame::Transmit(_) => "transmit",
            Frame::TransmitAck(_) => "transmit_ack",
            Frame::Report(_) => "report",
            Frame::ReportAck(_) => "report_ack",
            Frame::Notify(_) => "notify",
            Frame::NotifyAck(_) => "notify_ack",
            Frame::Presence(_) => "presence",
            Frame::Health(_) => "health",
            Frame::Identify(_) => "identify",
            Frame::Identity(_) => "identity",
            Frame::Watch(_) => "watch",
            Frame::Held(_) => "held",
            Frame::Redirect(_) => "redirect",
            Frame::ArchiveCopy(_) => "archive_copy",
        }
    }
}
