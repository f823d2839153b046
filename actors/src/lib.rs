//! `switchboard-actors`: Switchboard's runtime — the actix actors, their
//! typed messages, and MIAP over TCP. What the actors decide with (the
//! protocol, the store, the directory, delivery policy, the broker's
//! transaction state machine) is in `switchboard-core`, which has no actix.
//!
//! # Actor map
//! | actor | owns | talks to |
//! |---|---|---|
//! | [`gateway::Gateway`]`<M: Medium>` | one medium's clients; the outbox of content it originated | broker (MIAP), other gateways and processors (`Transmit`), presence |
//! | [`broker::BrokerShard`] (N, one per arbiter) | a shell around the transactions in flight: it feeds frames to the state machine and carries out what it decides | directory, registry, presence, delivery managers, accounting |
//! | [`processor::Processor`]`<C: Converter>` | content conversion for one kind, as a MIAP hop | broker (reports), the next hop |
//! | [`presence::Presence`] | who is online where, subscriptions | gateways (pushes), broker (reports) |
//! | [`delivery::DeliveryService`] | the registry of delivery managers (hot-swappable) | broker (a snapshot) |
//! | [`transport::NodeLink`] / [`transport::Uplink`] | one TCP connection to a remote member / to the node | the broker, the local member it stands for |
//!
//! Shared, not actors: the [`registry::MemberRegistry`] (who is connected
//! and live), each member's [`member_session::MemberSession`] (its TSCS
//! session with the broker), and `switchboard-core`'s `Directory` and
//! `Store`.
//!
//! # Rooms
//! [`bus`] is the leaf every actor imports instead of importing each other:
//! frames in flight, link events, presence messages, the way to the broker.
//! Then the contracts ([`medium`], [`converter`]), the [`registry`] and
//! [`member_session`], the actors, and last the [`transport`], which stands
//! in for members and so knows the broker. No module imports one that
//! imports it.
//!
//! The [`archive`] member takes a copy of each delivery of an archived
//! scope (a hop with its own grant) and records it when the broker says the
//! transaction concluded.
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

pub mod archive;
pub mod broker;
pub mod bus;
pub mod converter;
pub mod delivery;
pub mod gateway;
pub mod medium;
pub mod member_session;
pub mod presence;
pub mod processor;
pub mod registry;
pub mod transport;

#[cfg(test)]
mod testkit;
