//! `switchboard-actors`: Switchboard's runtime.
//!
//! # Actor map
//! | actor | owns | talks to |
//! |---|---|---|
//! | [`gateway::Gateway`]`<M: Medium>` | one medium's clients; the outbox of content it originated | broker (MIAP), other gateways (`Transmit`) |
//! | [`broker::BrokerShard`] (N, one per arbiter) | transactions in flight, route decisions, `K2` | directory, members, accounting |
//! | [`accounting::Accounting`] | usage records | store |
//!
//! Shared, not actors: [`directory::Directory`] (profiles, tokens, member
//! keys; cached), [`members::MemberRegistry`] (who is connected and live),
//! and the [`store::Store`] facade over sled.
//!
//! # Message flow (MIAP.md)
//! ```text
//! client → Gateway(orig): Originate → outbox (durable) → Submit ─────────▶ BrokerShard
//!                         Release ◀───────────────────────────────────── (route, ID, grants)
//!                         ReleaseAck ───────────────────────────────────▶
//!          Gateway(orig) ── Transmit(imi', ID, grant, content) ──▶ Gateway(dest) → Medium::deliver
//!                                                                   Report ─────▶ BrokerShard → Accounting
//!                         Notify ◀──────────────────────────────────────  (outcome)
//!                         NotifyAck ────────────────────────────────────▶ closed
//! ```
//! `protocol` and `store` are free of actix.

pub mod accounting;
pub mod broker;
pub mod converter;
pub mod delivery;
pub mod gateway;
pub mod link;
pub mod medium;
pub mod member_link;
pub mod members;
pub mod presence;
pub mod processor;

#[cfg(test)]
mod testkit;
