//! Delivery policy, as pure functions over plain data (IBM seed): the
//! delivery managers' definitions and which one a message runs under
//! ([`manager`]), and which mechanisms an attempt may use ([`delivery`]).
//! Enterprise policy (COMPLIANCE.md): rules as written ([`rule`]), domains
//! and groups ([`domain`]), and the walk that decides ([`evaluate`]).
//!
//! Owns: the rules. Must not touch: the store, the directory, presence or
//! any runtime — callers pass in what they know (the recipient's
//! mechanisms, which mediums are live, what presence says).

pub mod delivery;
pub mod domain;
pub mod evaluate;
pub mod manager;
pub mod rule;

pub use delivery::{delivery_policy, Policy, Reach};
pub use domain::{groups_of, valid_domain, Domain, External, Group};
pub use evaluate::{
    Applied, ContentFacts, Decision, Facts, PartyFacts, RuleSet, Verdict, RELEASED_TAG,
};
pub use manager::{
    built_in, choose, valid_name, DeliveryManager, Dispatch, InvalidManager, ManagerChoice,
    ManagerConfig, Managers,
};
pub use rule::{Action, InvalidRule, Party, Reference, Rule, Stage, When};
