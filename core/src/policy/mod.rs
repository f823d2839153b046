//! Delivery policy, as pure functions over plain data (IBM seed): the
//! delivery managers' definitions and which one a message runs under
//! ([`manager`]), and which mechanisms an attempt may use ([`delivery`]).
//!
//! Owns: the rules. Must not touch: the store, the directory, presence or
//! any runtime — callers pass in what they know (the recipient's
//! mechanisms, which mediums are live, what presence says).

pub mod delivery;
pub mod manager;

pub use delivery::{delivery_policy, Policy, Reach};
pub use manager::{
    built_in, choose, valid_name, DeliveryManager, Dispatch, InvalidManager, ManagerChoice,
    ManagerConfig, Managers,
};
