//! The helpers every frame's check shares: the phase numbers of the
//! per-step keys, the pass/fail step, and the checks of a frame a member
//! signs under its session outside any transaction. Each frame's own
//! make/check pair lives with the frame, in [`crate::protocol::frames`].

use super::error::ProtocolError;
use super::ids::MemberId;
use super::mac::{self, Tag};
use super::tscs::Session;

/// Phase numbers used in per-step keys.
pub mod step {
    /// Phase 1: submit.
    pub const SUBMIT: u8 = 1;
    /// Phase 2: release.
    pub const RELEASE: u8 = 2;
    /// Phase 4: report.
    pub const REPORT: u8 = 4;
    /// Phase 5: notify.
    pub const NOTIFY: u8 = 5;
}

/// `Ok` when `ok`, else `err`.
///
/// # Errors
/// `err` when the check failed.
pub(crate) fn check(ok: bool, err: ProtocolError) -> Result<(), ProtocolError> {
    if ok {
        Ok(())
    } else {
        Err(err)
    }
}

/// The checks of a frame a member signs under its session outside any
/// transaction (presence, health, identify, watch): the sender is the
/// session's member, its time is inside the skew window, the MAC over
/// `fields` under `label` is right.
pub(crate) fn check_session_frame(
    session: &Session,
    (member, ts_ms, tag): (&MemberId, u64, &Tag),
    now_ms: u64,
    skew_ms: u64,
    label: &str,
    fields: &[&[u8]],
) -> Result<(), ProtocolError> {
    check(*member == session.member, ProtocolError::WrongParty)?;
    check(
        now_ms.abs_diff(ts_ms) <= skew_ms,
        ProtocolError::SkewExceeded,
    )?;
    check(
        mac::verify(session.key.bytes(), label, fields, tag),
        ProtocolError::BadMac,
    )
}
