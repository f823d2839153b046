//! Medium implementations, one folder each. Adding a medium = a folder here
//! implementing [`switchboard_actors::medium::Medium`] plus one line in
//! [`BUILT_IN`].

pub mod compliance;
pub mod email;
pub mod fax;
pub mod im;

use switchboard_actors::protocol::MediumKind;

/// The built-in gateways a node runs: `(member id, medium)`. Their keys are
/// created by `switchboard init`.
pub const BUILT_IN: &[(&str, MediumKind)] = &[(im::MEMBER_ID, MediumKind::Im)];
