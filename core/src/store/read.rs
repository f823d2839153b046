//! The read side: typed look-ups and scans. sled reads are lock-free and
//! served from its page cache; callers on an actor's event loop keep them to
//! single-key look-ups, and API handlers run scans on the blocking pool.

use super::records::{dec, AccountingRecord, InboxEntry, OutboxEntry, TxnRecord};
use super::{Store, StoreError, Tree};
use crate::protocol::{MemberId, TxnId};

/// A stored key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

impl Store {
    /// The raw value of `key` in `tree`.
    ///
    /// # Errors
    /// When sled fails.
    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(tree).get(key)?.map(|v| v.to_vec()))
    }

    /// At most `limit` `(key, value)`s of `tree` with keys after `after`
    /// (from the first when `None`), in key order: a page.
    ///
    /// # Errors
    /// When sled fails.
    pub fn page(
        &self,
        tree: Tree,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_vec()));
        self.tree(tree)
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take(limit)
            .map(|r| {
                r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(StoreError::from)
            })
            .collect()
    }

    /// Every `(key, value)` of `tree` whose key starts with `prefix`, in key order.
    ///
    /// # Errors
    /// When sled fails.
    pub fn scan(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        self.tree(tree)
            .scan_prefix(prefix)
            .map(|r| {
                r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(StoreError::from)
            })
            .collect()
    }

    /// Number of entries in `tree`.
    pub fn count(&self, tree: Tree) -> usize {
        self.tree(tree).len()
    }

    /// A transaction.
    ///
    /// # Errors
    /// When sled fails or the record is corrupt.
    pub fn txn(&self, txn: &TxnId) -> Result<Option<TxnRecord>, StoreError> {
        self.get(Tree::Txn, &TxnRecord::key(txn))?
            .map(|v| dec(&v, "txn"))
            .transpose()
    }

    /// Transactions, newest first, at most `limit`, optionally only those
    /// with status `status`.
    ///
    /// # Errors
    /// When sled fails or a record is corrupt.
    pub fn txns(&self, status: Option<&str>, limit: usize) -> Result<Vec<TxnRecord>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree(Tree::Txn).iter().rev() {
            let (_, v) = kv?;
            let rec: TxnRecord = dec(&v, "txn")?;
            if status.is_none_or(|s| rec.status.as_str() == s) {
                out.push(rec);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// A gateway's outbox, oldest first.
    ///
    /// # Errors
    /// When sled fails or a record is corrupt.
    pub fn outbox(&self, member: &MemberId) -> Result<Vec<OutboxEntry>, StoreError> {
        let prefix = super::records::key2(member.as_str(), &[]);
        self.scan(Tree::Outbox, &prefix)?
            .into_iter()
            .map(|(_, v)| dec(&v, "outbox"))
            .collect()
    }

    /// A user's inbox after cursor `after` (exclusive), oldest first, at most
    /// `limit`, with each entry's cursor.
    ///
    /// # Errors
    /// When sled fails or a record is corrupt.
    pub fn inbox(
        &self,
        user: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, InboxEntry)>, StoreError> {
        let start = InboxEntry::key(user, after.map_or(0, |a| a.saturating_add(1)));
        let end = InboxEntry::key(user, u64::MAX);
        let mut out = Vec::new();
        for kv in self.tree(Tree::Inbox).range(start..end).take(limit) {
            let (k, v) = kv?;
            let seq_bytes: [u8; 8] = k[k.len() - 8..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("inbox key"))?;
            out.push((u64::from_be_bytes(seq_bytes), dec(&v, "inbox")?));
        }
        Ok(out)
    }

    /// The inbox entry of `txn` for `user`, with its cursor.
    ///
    /// # Errors
    /// When sled fails or a record is corrupt.
    pub fn inbox_entry(
        &self,
        user: &str,
        txn: &TxnId,
    ) -> Result<Option<(u64, InboxEntry)>, StoreError> {
        let Some(seq) = self.get(Tree::Inbox, &InboxEntry::index_key(user, txn))? else {
            return Ok(None);
        };
        let seq = u64::from_be_bytes(
            seq.try_into()
                .map_err(|_| StoreError::Corrupt("inbox index"))?,
        );
        Ok(self
            .get(Tree::Inbox, &InboxEntry::key(user, seq))?
            .map(|v| dec(&v, "inbox"))
            .transpose()?
            .map(|e| (seq, e)))
    }

    /// Accounting records in `[from_ms, to_ms)`, oldest first.
    ///
    /// # Errors
    /// When sled fails or a record is corrupt.
    pub fn accounting(
        &self,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<AccountingRecord>, StoreError> {
        self.tree(Tree::Accounting)
            .range(from_ms.to_be_bytes()..to_ms.to_be_bytes())
            .map(|kv| {
                let (_, v) = kv?;
                dec(&v, "accounting")
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::WriteBatch;

    #[tokio::test]
    async fn durable_writes_are_visible_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let mut b = WriteBatch::new();
            b.insert(Tree::Meta, b"k".to_vec(), b"v".to_vec());
            b.insert(Tree::Meta, b"gone".to_vec(), b"x".to_vec());
            b.remove(Tree::Meta, b"gone".to_vec());
            store.writer().write(b).await.unwrap();
            assert_eq!(store.get(Tree::Meta, b"k").unwrap(), Some(b"v".to_vec()));
            assert_eq!(store.get(Tree::Meta, b"gone").unwrap(), None);
        }
        // The writer thread exits and flushes when the last handle is gone.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.get(Tree::Meta, b"k").unwrap(), Some(b"v".to_vec()));
    }

    #[tokio::test]
    async fn many_concurrent_writes_group_commit_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut futs = Vec::new();
        for i in 0u32..500 {
            let mut b = WriteBatch::new();
            b.insert(Tree::Meta, b"last".to_vec(), i.to_be_bytes().to_vec());
            b.insert(Tree::Meta, i.to_be_bytes().to_vec(), b"x".to_vec());
            if i % 2 == 0 {
                futs.push(store.writer().write(b));
            } else {
                store.writer().write_nowait(b);
            }
        }
        for f in futs {
            f.await.unwrap();
        }
        store.writer().flush().await.unwrap();
        assert_eq!(store.count(Tree::Meta), 501);
        assert_eq!(
            store.get(Tree::Meta, b"last").unwrap(),
            Some(499u32.to_be_bytes().to_vec())
        );
    }

    #[tokio::test]
    async fn the_writer_counts_operations_and_bytes_per_tree() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut b = WriteBatch::new();
        b.insert(Tree::Txn, vec![1; 16], vec![0; 100]);
        b.insert(Tree::Inbox, b"bob".to_vec(), vec![0; 10]);
        b.remove(Tree::Inbox, b"alice".to_vec());
        store.writer().write(b).await.unwrap();
        let mut b = WriteBatch::new();
        b.insert(Tree::Txn, vec![2; 16], vec![0; 50]);
        store.writer().write_nowait(b);
        store.writer().barrier().await.unwrap();
        // Counted from the store's opening: inserts count key and value,
        // removes their key.
        let counts = store.write_counts();
        let of = |t: Tree| counts.trees.iter().find(|e| e.0 == t).map(|e| (e.1, e.2));
        assert_eq!(of(Tree::Txn), Some((2, 116 + 66)));
        assert_eq!(of(Tree::Inbox), Some((2, 13 + 5)));
        assert_eq!(of(Tree::Outbox), Some((0, 0)));
    }

    #[tokio::test]
    async fn barrier_makes_queued_writes_visible() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0u32..200 {
            let mut b = WriteBatch::new();
            b.insert(Tree::Txn, i.to_be_bytes().to_vec(), b"r".to_vec());
            store.writer().write_nowait(b);
        }
        store.writer().barrier().await.unwrap();
        assert_eq!(store.count(Tree::Txn), 200);
    }

    #[test]
    fn inbox_range_is_per_user_and_after_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let entry = |n: u8| InboxEntry {
            txn: TxnId([n; 16]),
            from: "alice".into(),
            body: format!("m{n}"),
            subject: None,
            sent_at_ms: 0,
            attempt: 1,
            id: [0; 32],
            delivered: true,
            read: false,
        };
        let t = store.tree(Tree::Inbox);
        for (user, seq, n) in [
            ("bob", 1u64, 1u8),
            ("bob", 5, 2),
            ("bobby", 2, 3),
            ("bob", 256, 4),
        ] {
            t.insert(
                InboxEntry::key(user, seq),
                super::super::records::enc(&entry(n)),
            )
            .unwrap();
        }
        let all: Vec<u64> = store
            .inbox("bob", None, 10)
            .unwrap()
            .iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(all, vec![1, 5, 256]);
        let after: Vec<u64> = store
            .inbox("bob", Some(5), 10)
            .unwrap()
            .iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(after, vec![256]);
        assert_eq!(store.inbox("bob", None, 1).unwrap().len(), 1);
    }
}
