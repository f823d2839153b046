//! Messages a broker shard handles besides MIAP frames
//! ([`crate::bus::MiapFrame`]).

use actix::prelude::*;

/// How many transactions the shard holds in memory (open work).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "usize")]
pub struct OpenTransactions;

/// Applies attempt timeouts and expiries that are due now (the shard does
/// this on an interval; tests send it after moving an injected clock).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct CheckTimeouts;
