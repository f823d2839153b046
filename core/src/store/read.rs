//! The read side: typed look-ups and scans. Every read looks at the
//! overlay (what was written since the last checkpoint) first and at sled
//! after, so it sees each write the moment it returned. sled reads are
//! lock-free and served from its page cache; callers on an actor's event
//! loop keep them to single-key look-ups, and API handlers run scans on the
//! blocking pool.

use std::ops::Bound;

use super::overlay::Slot;
use super::records::{dec, AccountingRecord, InboxEntry, OutboxEntry, TxnRecord};
use super::{Shared, Store, StoreError, Tree};
use crate::protocol::{MemberId, TxnId};

/// A stored key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// sled's entries merged with the overlay's, in key order (descending when
/// `rev`): an overlay entry replaces sled's of the same key, a removal
/// hides it.
struct Merged<I: Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> {
    sled: std::iter::Peekable<I>,
    over: std::iter::Peekable<std::vec::IntoIter<(Vec<u8>, Slot)>>,
    rev: bool,
}

impl<I: Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> Iterator for Merged<I> {
    type Item = Result<KeyValue, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::cmp::Ordering;
        loop {
            let order = match (self.sled.peek(), self.over.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) => {
                    let Some(Err(e)) = self.sled.next() else {
                        unreachable!("peeked an error")
                    };
                    return Some(Err(e.into()));
                }
                (Some(Ok(_)), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(Ok((sk, _))), Some((ok, _))) => {
                    let o = sk.as_ref().cmp(ok.as_slice());
                    if self.rev {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            if order == Ordering::Less {
                let Some(Ok((k, v))) = self.sled.next() else {
                    unreachable!("peeked an entry")
                };
                return Some(Ok((k.to_vec(), v.to_vec())));
            }
            if order == Ordering::Equal {
                self.sled.next();
            }
            let (k, v) = self.over.next()?;
            if let Some(v) = v {
                return Some(Ok((k, v.to_vec())));
            }
        }
    }
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl Shared {
    /// What the overlay knows of `key` (`None`: sled has the answer).
    fn known(&self, tree: Tree, key: &[u8]) -> Option<Slot> {
        self.overlay
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tree, key)
    }

    /// `key`'s value as readers see it: the overlay's, else sled's.
    pub(super) fn value(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.known(tree, key) {
            Some(slot) => Ok(slot.map(|v| v.to_vec())),
            None => Ok(self.trees[tree.index()].get(key)?.map(|v| v.to_vec())),
        }
    }
}

impl Store {
    /// `tree`'s entries within the bounds, overlay and sled merged, in key
    /// order (descending when `rev`).
    fn entries(
        &self,
        tree: Tree,
        lo: Bound<Vec<u8>>,
        hi: Bound<Vec<u8>>,
        rev: bool,
    ) -> impl Iterator<Item = Result<KeyValue, StoreError>> + '_ {
        let mut over = self
            .shared()
            .overlay
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .range(tree, as_ref(&lo), as_ref(&hi));
        let range = self.tree(tree).range::<Vec<u8>, _>((lo, hi));
        let sled: Box<dyn Iterator<Item = _>> = if rev {
            over.reverse();
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        Merged {
            sled: sled.peekable(),
            over: over.into_iter().peekable(),
            rev,
        }
    }

    /// The raw value of `key` in `tree`.
    ///
    /// # Errors
    /// When sled fails.
    pub fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.shared().value(tree, key)
    }

    /// Whether `tree` has `key` (without copying its value).
    ///
    /// # Errors
    /// When sled fails.
    pub fn contains(&self, tree: Tree, key: &[u8]) -> Result<bool, StoreError> {
        match self.shared().known(tree, key) {
            Some(slot) => Ok(slot.is_some()),
            None => Ok(self.tree(tree).contains_key(key)?),
        }
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
        let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_vec()));
        self.entries(tree, start, Bound::Unbounded, false)
            .take(limit)
            .collect()
    }

    /// Every `(key, value)` of `tree` whose key starts with `prefix`, in key order.
    ///
    /// # Errors
    /// When sled fails.
    pub fn scan(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        self.entries(
            tree,
            Bound::Included(prefix.to_vec()),
            Bound::Unbounded,
            false,
        )
        .take_while(|r| r.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
        .collect()
    }

    /// Number of entries in `tree` (counts them: for tests and tools).
    pub fn count(&self, tree: Tree) -> usize {
        self.entries(tree, Bound::Unbounded, Bound::Unbounded, false)
            .filter(Result::is_ok)
            .count()
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
        self.newest_txns(limit, usize::MAX, |rec| {
            status.is_none_or(|s| rec.status.as_str() == s)
        })
    }

    /// The transactions `user` sent, newest first: at most `limit` of them,
    /// found among the newest `look_at` transactions of the node (there is
    /// no index by sender: the scan is bounded instead).
    ///
    /// # Errors
    /// When sled fails or a record is corrupt.
    pub fn txns_sent_by(
        &self,
        user: &str,
        limit: usize,
        look_at: usize,
    ) -> Result<Vec<TxnRecord>, StoreError> {
        self.newest_txns(limit, look_at, |rec| {
            rec.imi.sender_user.as_deref() == Some(user)
        })
    }

    /// Up to `limit` transactions that `keep`, newest first, among the
    /// newest `look_at`.
    fn newest_txns(
        &self,
        limit: usize,
        look_at: usize,
        keep: impl Fn(&TxnRecord) -> bool,
    ) -> Result<Vec<TxnRecord>, StoreError> {
        let mut out = Vec::new();
        let all = self.entries(Tree::Txn, Bound::Unbounded, Bound::Unbounded, true);
        for kv in all.take(look_at) {
            let (_, v) = kv?;
            let rec: TxnRecord = dec(&v, "txn")?;
            if keep(&rec) {
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
            .filter(|(k, _)| OutboxEntry::is_entry_key(&k[prefix.len()..]))
            .map(|(_, v)| dec(&v, "outbox"))
            .collect()
    }

    /// `member`'s shared outbox content with SHA-256 `hash`
    /// ([`OutboxEntry::content_key`]).
    ///
    /// # Errors
    /// When sled fails.
    pub fn outbox_content(
        &self,
        member: &MemberId,
        hash: &[u8; 32],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(Tree::Outbox, &OutboxEntry::content_key(member, hash))
    }

    /// The content `member`'s outbox keeps for `txn`, if it still holds
    /// the message (shared content resolved).
    ///
    /// # Errors
    /// When sled fails or the entry is corrupt.
    pub fn outbox_message(
        &self,
        member: &MemberId,
        txn: &TxnId,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(v) = self.get(Tree::Outbox, &OutboxEntry::key(member, txn))? else {
            return Ok(None);
        };
        let entry: OutboxEntry = dec(&v, "outbox")?;
        if entry.shared() {
            return self.outbox_content(member, &entry.imi.content_sha256);
        }
        Ok(Some(entry.content))
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
        let start = after.map_or(0, |a| a.saturating_add(1));
        self.inbox_range(user, start, u64::MAX, false, limit)
    }

    /// `user`'s inbox newest first: at most `limit` entries with a cursor
    /// below `before` (from the newest when `None`).
    ///
    /// # Errors
    /// When sled fails or a record is corrupt.
    pub fn inbox_before(
        &self,
        user: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, InboxEntry)>, StoreError> {
        self.inbox_range(user, 0, before.unwrap_or(u64::MAX), true, limit)
    }

    /// `user`'s inbox entries with cursors in `from..to`, in cursor order
    /// (descending when `rev`), at most `limit`.
    fn inbox_range(
        &self,
        user: &str,
        from: u64,
        to: u64,
        rev: bool,
        limit: usize,
    ) -> Result<Vec<(u64, InboxEntry)>, StoreError> {
        let mut out = Vec::new();
        let range = self.entries(
            Tree::Inbox,
            Bound::Included(InboxEntry::key(user, from)),
            Bound::Excluded(InboxEntry::key(user, to)),
            rev,
        );
        for kv in range.take(limit) {
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
        self.entries(
            Tree::Accounting,
            Bound::Included(from_ms.to_be_bytes().to_vec()),
            Bound::Excluded(to_ms.to_be_bytes().to_vec()),
            false,
        )
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
