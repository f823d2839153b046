//! The `Accounting` actor: one usage record per final outcome of a
//! transaction, written in time order, batched with the other writes.
//!
//! Owns: the accounting tree's writes. Must not touch: transactions (the
//! broker decides what is accounted).

use actix::prelude::*;

use switchboard_core::store::records::enc;
use switchboard_core::store::{AccountingRecord, Store, Tree, WriteBatch};

/// Record this usage.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Account(pub AccountingRecord);

/// Writes accounting records.
pub struct Accounting {
    store: Store,
}

impl Accounting {
    /// An accounting actor writing to `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl Actor for Accounting {
    type Context = Context<Self>;
}

impl Handler<Account> for Accounting {
    type Result = ();
    fn handle(&mut self, msg: Account, _: &mut Context<Self>) {
        let mut b = WriteBatch::new();
        b.insert(Tree::Accounting, msg.0.key(), enc(&msg.0));
        self.store.writer().write_nowait(b);
    }
}
