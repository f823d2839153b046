//! Content an originating gateway holds once however many of its outbox
//! entries carry it: one mail to 100 recipients is 100 transactions but
//! one copy of its content, on disk and in memory. Content of
//! [`OutboxEntry::SHARE_MIN`] bytes or more is shared; the entries keep
//! their IMI (whose `content_sha256` names the content) and an empty
//! `content`.
//!
//! The counts live only here: every entry of the gateway's outbox is in its
//! mirror, so how many carry a content is known without reading the store.
//! The content is written in the batch of the first entry that carries it
//! and removed in the batch that removes the last one.

use std::collections::HashMap;
use std::sync::Arc;

use switchboard_core::protocol::MemberId;
use switchboard_core::store::{OutboxEntry, Store, StoreError, Tree, WriteBatch};

/// The shared contents and how many outbox entries carry each.
#[derive(Default)]
pub(super) struct SharedContent {
    by_hash: HashMap<[u8; 32], (usize, Arc<Vec<u8>>)>,
}

impl SharedContent {
    /// Makes `entry` (about to be written in `b`) share its content when it
    /// is long enough; the content is put in `b` when no entry carries it
    /// yet. Returns what [`SharedContent::added`] takes once `b` is written.
    pub(super) fn share(
        &self,
        member: &MemberId,
        entry: &mut OutboxEntry,
        b: &mut WriteBatch,
    ) -> Option<([u8; 32], Arc<Vec<u8>>)> {
        if entry.content.len() < OutboxEntry::SHARE_MIN {
            return None;
        }
        let hash = entry.imi.content_sha256;
        let content = std::mem::take(&mut entry.content);
        let content = match self.by_hash.get(&hash) {
            Some((_, held)) => held.clone(),
            None => {
                b.insert(
                    Tree::Outbox,
                    OutboxEntry::content_key(member, &hash),
                    content.clone(),
                );
                Arc::new(content)
            }
        };
        Some((hash, content))
    }

    /// One more entry carries `content` (its batch is written).
    pub(super) fn added(&mut self, (hash, content): ([u8; 32], Arc<Vec<u8>>)) {
        self.by_hash.entry(hash).or_insert((0, content)).0 += 1;
    }

    /// `entry` (being removed in `b`) no longer carries its content; the
    /// content goes in the same batch when no other entry does.
    pub(super) fn release(&mut self, member: &MemberId, entry: &OutboxEntry, b: &mut WriteBatch) {
        if !entry.shared() {
            return;
        }
        let hash = entry.imi.content_sha256;
        if let Some((n, _)) = self.by_hash.get_mut(&hash) {
            *n -= 1;
            if *n == 0 {
                self.by_hash.remove(&hash);
                b.remove(Tree::Outbox, OutboxEntry::content_key(member, &hash));
            }
        }
    }

    /// `entry`'s content: its own, or the shared copy.
    pub(super) fn content_of(&self, entry: &OutboxEntry) -> Vec<u8> {
        if !entry.shared() {
            return entry.content.clone();
        }
        self.by_hash
            .get(&entry.imi.content_sha256)
            .map(|(_, c)| c.as_ref().clone())
            .unwrap_or_default()
    }

    /// Counts a stored entry read at start (or adopted): its shared content
    /// is read once. `false` when that content is missing from the store.
    ///
    /// # Errors
    /// When sled fails.
    pub(super) fn adopt(
        &mut self,
        store: &Store,
        member: &MemberId,
        entry: &OutboxEntry,
    ) -> Result<bool, StoreError> {
        if !entry.shared() {
            return Ok(true);
        }
        let hash = entry.imi.content_sha256;
        if let Some((n, _)) = self.by_hash.get_mut(&hash) {
            *n += 1;
            return Ok(true);
        }
        let Some(content) = store.outbox_content(member, &hash)? else {
            return Ok(false);
        };
        self.by_hash.insert(hash, (1, Arc::new(content)));
        Ok(true)
    }

    /// How many contents are held, and their bytes.
    pub(super) fn held(&self) -> (usize, usize) {
        (
            self.by_hash.len(),
            self.by_hash.values().map(|(_, c)| c.len()).sum(),
        )
    }
}
