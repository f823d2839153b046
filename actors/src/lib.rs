//! `switchboard-actors`: Switchboard's runtime.
pub mod protocol;
