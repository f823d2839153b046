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

/// A notice of enterprise policy to send to a user from the system sender
/// (`switchboard`): what a transaction's [`Notice`] asks for, carried out
/// by whoever the node set ([`super::BrokerShared::on_notices`]).
///
/// [`Notice`]: switchboard_core::transactions::Notice
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct PolicyNotice(pub switchboard_core::transactions::Notice);
