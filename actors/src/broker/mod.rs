//! The `Broker`: N shards, each an actor on its own arbiter, owning the
//! transactions whose id hashes to it. A shard sees only meta information
//! and verifies every frame before it changes state.
//!
//! - [`shard`]: the shard actor — a thin shell that feeds frames and time
//!   to the transaction state machine (`switchboard_core::transactions`)
//!   and carries out what it decides (records, accounting, frames);
//! - [`logins`]: TSCS logins, local and over a link;
//! - [`session_frames`]: `Health`, `Presence`, `Identify`, `Watch`, behind
//!   one guard;
//! - [`shared`]: what all shards share — sessions, the login replay cache,
//!   refusal counters, and the route decision the machine asks for;
//! - [`watchers`]: presence pushes for remote IM gateways as frames.
//!
//! Owns: sessions and the shards. Must not touch: content (a broker never
//! sees it), the store beyond transaction records and login nonces.

pub mod logins;
pub mod messages;
pub mod session_frames;
pub mod shard;
pub mod shared;
pub mod watchers;

#[cfg(test)]
mod tests;

pub use shard::{Broker, BrokerShard};
pub use shared::{BrokerDeps, BrokerSettings, BrokerShared};
pub use watchers::PresenceRouter;
