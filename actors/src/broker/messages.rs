//! Messages a broker shard handles besides MIAP frames
//! ([`crate::members::MiapFrame`]).

use actix::prelude::*;

/// How many transactions the shard holds in memory (open work).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "usize")]
pub struct OpenTransactions;
