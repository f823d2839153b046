//! `switchboard-core`: everything Switchboard knows that needs no actor
//! runtime. Cargo keeps actix out of this crate; the actors
//! (`switchboard-actors`) and the product shell (`switchboard`) build on it.
//!
//! # Rooms
//! | module | owns | may use |
//! |---|---|---|
//! | [`protocol`] | MIAP: ids, the IMI, frames with their make/check, keys, MACs, TSCS, the one codec | nothing else here |
//! | [`policy`] | delivery managers and the delivery policy: pure functions | `protocol` |
//! | [`time`] | RFC 3339 times from and to milliseconds | nothing else here |
//! | [`cluster`] | the NATS/JetStream engine: connection, streams and buckets, init, status | `time` |
//! | [`journal`] | the journal: append-only, group-committed with `fdatasync` (or a JetStream acknowledgement in a cluster), recovered to its valid prefix | `cluster` |
//! | [`store`] | the sled facade: trees, group-committed writes, typed reads, the records; in a cluster the KV buckets as the store of record | `journal`, `cluster`, `protocol`, `policy` (a record names its manager) |
//! | [`directory`] | client profiles, API tokens, member keys (cached); resolving a recipient | `store`, `protocol` |
//! | [`transactions`] | the broker's transaction state machine: frames in, frames and records out | all of the above |
//! | [`archive`] | the compliance archive's files: records never changed, content once by hash, the hash chain and signed checkpoints, verification | `protocol` (digests) |
//!
//! Dependencies point down the table; no module imports one above it.

#![deny(missing_docs)]

pub mod archive;
pub mod cluster;
pub mod directory;
pub mod journal;
pub mod policy;
pub mod protocol;
pub mod store;
pub mod time;
pub mod transactions;
