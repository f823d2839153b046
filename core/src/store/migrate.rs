//! Upgrades of an older database, run once when the store opens.
//!
//! Before the trees were split per concern, one tree `sent` held four kinds
//! of record under `member \0 …`: a gateway's dedupe keys (`d` key → txn),
//! the SMS gateway's correlation records (`t` txn-hex → record) and their
//! message-id index (`m` id → txn), the phone reply mapping (`r` number →
//! user), and the email gateway's sent mail (16 raw txn bytes → when).
//! [`legacy_sent`] moves each into its own tree in one atomic transaction
//! and drops `sent`.

use super::{StoreError, Tree};

/// The legacy tree's name.
const LEGACY_SENT: &str = "sent";

/// Where a legacy `sent` entry goes, and as what.
fn convert(key: &[u8], value: &[u8], now_ms: u64) -> Option<(Tree, Vec<u8>, Vec<u8>)> {
    let split = key.iter().position(|b| *b == 0)?;
    let (member, rest) = (&key[..split], &key[split + 1..]);
    let with = |tail: &[u8]| {
        let mut k = member.to_vec();
        k.push(0);
        k.extend_from_slice(tail);
        k
    };
    match rest.first()? {
        b'd' => Some((Tree::Dedupe, with(&rest[1..]), value.to_vec())),
        b't' | b'm' => Some((Tree::SmsRecords, with(rest), value.to_vec())),
        b'r' => {
            // The mapping gains its time: counted from the upgrade.
            let mut v = now_ms.to_be_bytes().to_vec();
            v.extend_from_slice(value);
            Some((Tree::SmsReplies, with(&rest[1..]), v))
        }
        // A transaction id's first byte is its creation time's top byte
        // (0x01 until 2059): never one of the letters above.
        _ if rest.len() == 16 => Some((Tree::SentEmail, key.to_vec(), value.to_vec())),
        _ => None,
    }
}

/// Moves a legacy `sent` tree's entries into their own trees (atomically)
/// and drops it. Nothing to do on a database that never had one.
///
/// # Errors
/// When sled fails.
pub(super) fn legacy_sent(db: &sled::Db, trees: &[sled::Tree]) -> Result<(), StoreError> {
    if !db
        .tree_names()
        .iter()
        .any(|n| &n[..] == LEGACY_SENT.as_bytes())
    {
        return Ok(());
    }
    let legacy = db.open_tree(LEGACY_SENT)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut moves = Vec::new();
    let mut dropped = 0usize;
    for kv in legacy.iter() {
        let (k, v) = kv?;
        match convert(&k, &v, now) {
            Some(m) => moves.push(m),
            None => dropped += 1,
        }
    }
    // One atomic unit: a sled transaction across the trees it touches.
    let mut parts: Vec<(usize, sled::Batch)> = Vec::new();
    for (tree, k, v) in &moves {
        let i = tree.index();
        let at = match parts.iter().position(|(t, _)| *t == i) {
            Some(at) => at,
            None => {
                parts.push((i, sled::Batch::default()));
                parts.len() - 1
            }
        };
        parts[at].1.insert(k.as_slice(), v.as_slice());
    }
    apply(trees, &parts)?;
    db.flush()?;
    db.drop_tree(LEGACY_SENT)?;
    tracing::info!(
        moved = moves.len(),
        dropped,
        "moved the legacy sent tree into dedupe, sms_records, sms_replies and sent_email"
    );
    Ok(())
}

/// Applies per-tree batches as one sled transaction.
fn apply(trees: &[sled::Tree], parts: &[(usize, sled::Batch)]) -> Result<(), StoreError> {
    use sled::Transactional;
    let touched: Vec<sled::Tree> = parts.iter().map(|(i, _)| trees[*i].clone()).collect();
    touched[..]
        .transaction(|views| {
            for (view, (_, batch)) in views.iter().zip(parts) {
                view.apply_batch(batch)?;
            }
            Ok(())
        })
        .map_err(
            |e: sled::transaction::TransactionError<StoreError>| match e {
                sled::transaction::TransactionError::Abort(e) => e,
                sled::transaction::TransactionError::Storage(e) => e.into(),
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn a_legacy_sent_tree_is_split_into_its_trees() {
        let dir = tempfile::tempdir().unwrap();
        let txn = [1u8; 16];
        {
            let db = sled::open(dir.path()).unwrap();
            let sent = db.open_tree("sent").unwrap();
            sent.insert(b"gw-im-1\0didem-1", b"0123abcd".as_slice())
                .unwrap();
            sent.insert(b"gw-sms-1\0tABCDEF", b"record".as_slice())
                .unwrap();
            sent.insert(b"gw-sms-1\0mmsg-7", b"ABCDEF".as_slice())
                .unwrap();
            sent.insert(b"gw-sms-1\0r+49151", b"alice".as_slice())
                .unwrap();
            let mut email = b"gw-email-1\0".to_vec();
            email.extend_from_slice(&txn);
            sent.insert(email, 42u64.to_be_bytes().as_slice()).unwrap();
            sent.insert(b"no separator", b"x".as_slice()).unwrap();
            db.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.get(Tree::Dedupe, b"gw-im-1\0idem-1").unwrap(),
            Some(b"0123abcd".to_vec())
        );
        assert_eq!(
            store.get(Tree::SmsRecords, b"gw-sms-1\0tABCDEF").unwrap(),
            Some(b"record".to_vec())
        );
        assert_eq!(
            store.get(Tree::SmsRecords, b"gw-sms-1\0mmsg-7").unwrap(),
            Some(b"ABCDEF".to_vec())
        );
        let reply = store
            .get(Tree::SmsReplies, b"gw-sms-1\0+49151")
            .unwrap()
            .unwrap();
        assert_eq!(&reply[8..], b"alice", "the user, after the time");
        let mut email = b"gw-email-1\0".to_vec();
        email.extend_from_slice(&txn);
        assert_eq!(
            store.get(Tree::SentEmail, &email).unwrap(),
            Some(42u64.to_be_bytes().to_vec())
        );
        drop(store);
        // Done once: the legacy tree is gone.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let db = sled::open(dir.path()).unwrap();
        assert!(!db.tree_names().iter().any(|n| &n[..] == b"sent"));
    }
}
