//! Medium implementations, one folder each. Adding a medium = a folder here
//! implementing [`switchboard_actors::medium::Medium`] plus one line in
//! [`BUILT_IN`].
//!
//! Owns: each medium's wire (SMTP, SMPP, the fax spool, the WebSocket) and
//! the IM clients' send path. Must not touch: the HTTP API's routes or the
//! node's assembly; content formats shared with processors are in
//! [`crate::content`].

pub mod compliance;
pub mod email;
pub mod fax;
pub mod forward;
pub mod home;
pub mod im;
pub mod sms;

use switchboard_core::protocol::{MediumKind, Outcome};

/// The built-in gateways a node runs: `(member id, medium)`. Their keys are
/// created by `switchboard init`.
pub const BUILT_IN: &[(&str, MediumKind)] = &[(im::MEMBER_ID, MediumKind::Im)];

/// Which outcomes a sender on a medium without receipts of its own (email,
/// SMS) is told about: `email.dsn`, `sms.receipts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptPolicy {
    /// Never.
    None,
    /// Failures only (the default).
    Failure,
    /// Every final outcome (not `read`).
    All,
}

impl ReceiptPolicy {
    /// From `failure`, `all` or `none`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "failure" => Some(Self::Failure),
            "all" => Some(Self::All),
            _ => None,
        }
    }

    /// Whether `outcome` is a failure.
    pub fn failed(outcome: &Outcome) -> bool {
        matches!(
            outcome,
            Outcome::Undeliverable | Outcome::Expired | Outcome::Blocked(_)
        )
    }

    /// Whether the sender is told about `outcome`.
    pub fn wants(self, outcome: &Outcome) -> bool {
        match self {
            Self::None => false,
            Self::Failure => Self::failed(outcome),
            Self::All => *outcome != Outcome::Read,
        }
    }
}
