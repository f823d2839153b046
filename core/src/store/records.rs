//! The records the store keeps, their keys, and their encoding (the wire
//! codec, so one serialisation exists in the tree).

use serde::{Deserialize, Serialize};

use crate::policy::ManagerChoice;
use crate::protocol::codec;
use crate::protocol::{BrokerImi, Imi, MediumKind, MemberId, Route, Tag, TxnId};

use super::StoreError;

/// Encodes a record.
pub fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    codec::encode(v)
}

/// Decodes a record.
///
/// # Errors
/// [`StoreError::Corrupt`] naming `what` when the bytes do not decode.
pub fn dec<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
) -> Result<T, StoreError> {
    codec::decode(bytes).map_err(|_| StoreError::Corrupt(what))
}

/// `a \0 b` — the key shape of per-owner trees.
pub fn key2(a: &str, b: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + 1 + b.len());
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b);
    k
}

/// A transaction's status as the sender sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnStatus {
    /// The broker released it to the originating gateway.
    Released,
    /// A hop acknowledged the content.
    Transmitted,
    /// Delivered on a mechanism.
    Delivered,
    /// Read by the recipient.
    Read,
    /// No mechanism reached the recipient.
    Undeliverable,
    /// The broker refused to route it (error code).
    Rejected(String),
    /// Blocked by a content rule.
    Blocked(String),
    /// Expired.
    Expired,
    /// Held by policy for a reviewer (`policy:<rule>`): it waits, still
    /// open (its expiry runs), until released or rejected. Appended last:
    /// older records decode.
    Quarantined(String),
}

impl TxnStatus {
    /// Every status name, in lifecycle order.
    pub const NAMES: [&'static str; 9] = [
        "quarantined",
        "released",
        "transmitted",
        "delivered",
        "read",
        "undeliverable",
        "rejected",
        "blocked",
        "expired",
    ];

    /// The names of the final statuses (see [`TxnStatus::is_final`]).
    pub const FINAL_NAMES: [&'static str; 6] = [
        "delivered",
        "read",
        "undeliverable",
        "rejected",
        "blocked",
        "expired",
    ];

    /// The API's status name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Released => "released",
            Self::Transmitted => "transmitted",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Undeliverable => "undeliverable",
            Self::Rejected(_) => "rejected",
            Self::Blocked(_) => "blocked",
            Self::Expired => "expired",
            Self::Quarantined(_) => "quarantined",
        }
    }

    /// Whether nothing more will be attempted (a `Read` may still follow
    /// `Delivered`).
    pub fn is_final(&self) -> bool {
        !self.is_open()
    }

    /// Whether delivery is still being attempted.
    pub fn is_open(&self) -> bool {
        matches!(
            self,
            Self::Released | Self::Transmitted | Self::Quarantined(_)
        )
    }
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The route: mechanism, address, destination gateway.
    pub route: Route,
    /// The broker's inner digest `ID` of this attempt.
    pub id: Tag,
    /// When it started (ms).
    pub started_ms: u64,
    /// When it times out (ms).
    pub deadline_ms: u64,
    /// Its outcome, once known (`delivered`, `read`, `non_delivery`,
    /// `timeout`, `expired`, `blocked`).
    pub outcome: Option<String>,
    /// Why it failed, if it did; on a delivered attempt, how it was
    /// delivered, when the gateway said ([`ReportStatus::DeliveredVia`]).
    ///
    /// [`ReportStatus::DeliveredVia`]: crate::protocol::ReportStatus::DeliveredVia
    pub reason: Option<String>,
}

impl AttemptRecord {
    /// Whether `other` is this attempt with (at most) another outcome.
    fn same_but_outcome(&self, other: &Self) -> bool {
        let Self {
            attempt,
            route,
            id,
            started_ms,
            deadline_ms,
            outcome: _,
            reason: _,
        } = self;
        (attempt, route, id, started_ms, deadline_ms)
            == (
                &other.attempt,
                &other.route,
                &other.id,
                &other.started_ms,
                &other.deadline_ms,
            )
    }

    /// Whether no outcome is known yet.
    pub fn is_open(&self) -> bool {
        self.outcome.is_none()
    }

    /// Whether it reached the recipient.
    pub fn succeeded(&self) -> bool {
        matches!(self.outcome.as_deref(), Some("delivered" | "read"))
    }
}

/// Something that happened to a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// When (ms).
    pub at_ms: u64,
    /// What (`submitted`, `released`, `delivered`, `read`, …).
    pub kind: String,
}

/// A transaction as the broker keeps it: the truth about a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRecord {
    /// The originator's IMI.
    pub imi: Imi,
    /// Current status.
    pub status: TxnStatus,
    /// The delivery manager it runs under (none when rejected).
    pub manager: Option<ManagerChoice>,
    /// Every attempt, in order.
    pub attempts: Vec<AttemptRecord>,
    /// The trail.
    pub events: Vec<EventRecord>,
    /// Whether the originator acknowledged the latest notification. Kept in
    /// the shard's memory (a closed transaction leaves it); not written back,
    /// to save a write per message.
    pub closed: bool,
    /// What the store holds of it (not stored): a write after the first
    /// journals only what changed since ([`TxnDelta`]).
    #[serde(skip)]
    pub saved: Saved,
}

/// What the store already holds of a transaction record: the length of its
/// trail, its attempts and its manager as last written. Compares equal to
/// any other (it says nothing about the transaction itself).
#[derive(Debug, Clone, Default)]
pub struct Saved(Option<Box<SavedState>>);

#[derive(Debug, Clone)]
struct SavedState {
    events: usize,
    attempts: Vec<AttemptRecord>,
    manager: Option<ManagerChoice>,
}

impl PartialEq for Saved {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Saved {}

/// A transaction record's change since the store's copy: the one write per
/// step after the first (the full record), merged into the stored record
/// by the store ([`merge`]). The journal holds this, not the whole record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnDelta {
    /// The status now.
    pub status: TxnStatus,
    /// The manager, when it changed.
    pub manager: Option<ManagerChoice>,
    /// Attempts new since.
    pub attempts: Vec<AttemptRecord>,
    /// Attempts that changed since (they only ever learn their outcome):
    /// `(attempt, outcome, reason)`.
    pub outcomes: Vec<(u32, Option<String>, Option<String>)>,
    /// The trail's length before this change: the events below are its
    /// entries from there (applied again onto a later record, the trail is
    /// cut back to here first, so it never holds an event twice).
    pub events_from: u32,
    /// Events appended to the trail.
    pub events: Vec<EventRecord>,
}

/// How a transaction record is written next: the first time whole (the
/// writer chooses how to journal it: whole, or on its outbox entry), then
/// what changed since the last write; `whole` is the record encoded, what
/// readers and sled get either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnWrite {
    /// The first write.
    Full {
        /// The record, encoded.
        whole: Vec<u8>,
        /// The record without its IMI.
        base: TxnBase,
        /// Its originator (whose outbox entry may hold the IMI).
        originator: MemberId,
    },
    /// A later one.
    Delta {
        /// The record, encoded.
        whole: Vec<u8>,
        /// What changed.
        delta: TxnDelta,
    },
}

/// A transaction record without its IMI: journalled when the originator's
/// outbox entry, in the same store, has the IMI ([`Merge::TxnOnOutbox`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnBase {
    /// Current status.
    pub status: TxnStatus,
    /// The delivery manager.
    pub manager: Option<ManagerChoice>,
    /// Every attempt.
    pub attempts: Vec<AttemptRecord>,
    /// The trail.
    pub events: Vec<EventRecord>,
    /// See [`TxnRecord::closed`].
    pub closed: bool,
}

/// What a merge journals: a change to the stored value, or a record whose
/// larger part the store already holds under another key, named by it. The
/// writer resolves it into the whole value (readers and sled never see a
/// merge); the journal keeps it small — the content and the IMI are
/// journalled once, in the originating gateway's outbox entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Merge {
    /// A transaction record's change since its last write.
    Txn(TxnDelta),
    /// A transaction record whose IMI is the outbox entry's at `outbox`.
    TxnOnOutbox {
        /// The originator's outbox key.
        outbox: Vec<u8>,
        /// The rest of the record.
        base: TxnBase,
    },
    /// An inbox entry whose text is the content of the outbox entry at
    /// `outbox` (text, unconverted: the gateway checked it is the same).
    InboxOnOutbox {
        /// The originator's outbox key.
        outbox: Vec<u8>,
        /// The entry, its body empty.
        entry: InboxEntry,
    },
    /// A concluded transaction's usage, made from its record.
    Usage {
        /// The transaction.
        txn: TxnId,
        /// The outcome accounted.
        outcome: String,
        /// When.
        at_ms: u64,
    },
    /// The change that concluded a transaction, and its usage: the
    /// accounting record is derived from the record this makes
    /// ([`derived`]), not journalled on its own.
    TxnConcluded {
        /// The change.
        delta: TxnDelta,
        /// The outcome accounted.
        outcome: String,
        /// When.
        at_ms: u64,
    },
}

impl Merge {
    /// Encoded, for [`super::WriteBatch::merge`].
    pub fn encode(&self) -> Vec<u8> {
        enc(self)
    }
}

/// Any key's value at a point of the journal's order (a merge's inputs).
pub type Lookup<'a> = dyn FnMut(super::Tree, &[u8]) -> Result<Option<Vec<u8>>, StoreError> + 'a;

/// `key`'s value with `merge` applied: `old` is its value before, `lookup`
/// any other key's (both as the journal's order has them at this point).
///
/// # Errors
/// [`StoreError::Corrupt`] when a value does not decode, the record a
/// merge names is missing, or the merge does not belong to `tree`.
pub fn merge(
    tree: super::Tree,
    old: Option<&[u8]>,
    merge: &[u8],
    lookup: &mut Lookup<'_>,
) -> Result<Vec<u8>, StoreError> {
    use super::Tree;
    let outbox = |key: &[u8], lookup: &mut Lookup<'_>| match lookup(Tree::Outbox, key)? {
        Some(v) => dec::<OutboxEntry>(&v, "outbox").map(Some),
        None => Ok(None),
    };
    let missing = || StoreError::Corrupt("merge names a missing outbox entry");
    match (tree, dec::<Merge>(merge, "merge")?) {
        (Tree::Txn, Merge::Txn(d) | Merge::TxnConcluded { delta: d, .. }) => {
            let old = old.ok_or(StoreError::Corrupt("txn delta without a record"))?;
            let mut rec: TxnRecord = dec(old, "txn")?;
            rec.apply(d);
            Ok(enc(&rec))
        }
        (Tree::Txn, Merge::TxnOnOutbox { outbox: key, base }) => {
            let TxnBase {
                status,
                manager,
                attempts,
                events,
                closed,
            } = base;
            // The entry already removed (recovery after a round that got
            // that far): that round wrote this record first, with the IMI.
            let imi = match outbox(&key, lookup)? {
                Some(e) => e.imi,
                None => dec::<TxnRecord>(old.ok_or_else(missing)?, "txn")?.imi,
            };
            Ok(enc(&TxnRecord {
                imi,
                status,
                manager,
                attempts,
                events,
                closed,
                saved: Saved::default(),
            }))
        }
        (
            Tree::Inbox,
            Merge::InboxOnOutbox {
                outbox: key,
                mut entry,
            },
        ) => {
            entry.body = match outbox(&key, lookup)? {
                Some(e) => String::from_utf8_lossy(&e.content).into_owned(),
                // As above: that round wrote this entry, with its text.
                None => dec::<InboxEntry>(old.ok_or_else(missing)?, "inbox")?.body,
            };
            Ok(enc(&entry))
        }
        (
            Tree::Accounting,
            Merge::Usage {
                txn,
                outcome,
                at_ms,
            },
        ) => {
            let v = lookup(Tree::Txn, &TxnRecord::key(&txn))?
                .ok_or(StoreError::Corrupt("usage of a missing transaction"))?;
            let rec: TxnRecord = dec(&v, "txn")?;
            let a = AccountingRecord::of(&rec, outcome, at_ms).ok_or(StoreError::Corrupt(
                "usage of a transaction without attempts",
            ))?;
            Ok(enc(&a))
        }
        _ => Err(StoreError::Corrupt("a merge for another tree")),
    }
}

/// A value a merge makes besides its own key's: `(tree, key, value)`.
pub type Derived = (super::Tree, Vec<u8>, Vec<u8>);

/// What `merge`, having made `value`, makes besides: a concluding change's
/// accounting record, as `(tree, key, value)` — the same the writer put
/// beside the merge ([`super::WriteBatch::derive`]).
///
/// # Errors
/// [`StoreError::Corrupt`] when the merge or the value does not decode.
pub fn derived(
    tree: super::Tree,
    merge: &[u8],
    value: &[u8],
) -> Result<Option<Derived>, StoreError> {
    if tree != super::Tree::Txn {
        return Ok(None);
    }
    let Merge::TxnConcluded { outcome, at_ms, .. } = dec::<Merge>(merge, "merge")? else {
        return Ok(None);
    };
    let rec: TxnRecord = dec(value, "txn")?;
    let a = AccountingRecord::of(&rec, outcome, at_ms).ok_or(StoreError::Corrupt(
        "usage of a transaction without attempts",
    ))?;
    Ok(Some((super::Tree::Accounting, a.key(), enc(&a))))
}

impl TxnRecord {
    /// Key in [`super::Tree::Txn`].
    pub fn key(txn: &TxnId) -> [u8; 16] {
        txn.0
    }

    /// The broker IMI of `attempt`.
    pub fn broker_imi(&self, attempt: &AttemptRecord) -> BrokerImi {
        BrokerImi {
            imi: self.imi.clone(),
            route: attempt.route.clone(),
            attempt: attempt.attempt,
            tags: self.tags(),
        }
    }

    /// Policy's tags, from the trail (`tag:<tag>`), in order.
    pub fn tags(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| e.kind.strip_prefix("tag:"))
            .map(str::to_string)
            .collect()
    }

    /// The attempt numbered `n`.
    pub fn attempt(&self, n: u32) -> Option<&AttemptRecord> {
        self.attempts.iter().find(|a| a.attempt == n)
    }

    /// The attempt that reached the recipient, else the latest one.
    pub fn deciding_attempt(&self) -> Option<&AttemptRecord> {
        self.attempts
            .iter()
            .find(|a| a.succeeded())
            .or(self.attempts.last())
    }

    /// Mechanisms attempted so far. A mechanism whose attempt a content rule held for review was not
    /// tried: once released, it is tried again.
    pub fn tried(&self) -> Vec<MediumKind> {
        self.attempts
            .iter()
            .filter(|a| a.outcome.as_deref() != Some("quarantined"))
            .map(|a| a.route.mechanism)
            .collect()
    }

    /// The sender as shown to users: their user id, else their address.
    pub fn sender_name(&self) -> String {
        self.imi
            .sender_user
            .clone()
            .unwrap_or_else(|| self.imi.sender.to_string())
    }

    /// Marks the record as the store now holds it.
    pub fn mark_saved(&mut self) {
        self.saved = Saved(Some(Box::new(SavedState {
            events: self.events.len(),
            attempts: self.attempts.clone(),
            manager: self.manager.clone(),
        })));
    }

    /// The next write of the record: whole the first time, then only what
    /// changed since the last ([`TxnDelta`]). Marks it saved.
    pub fn to_write(&mut self) -> TxnWrite {
        let w = match &self.saved.0 {
            None => TxnWrite::Full {
                whole: enc(self),
                base: self.base(),
                originator: self.imi.originator.clone(),
            },
            Some(s) => {
                let mut attempts = Vec::new();
                let mut outcomes = Vec::new();
                for a in &self.attempts {
                    match s.attempts.iter().find(|b| b.attempt == a.attempt) {
                        Some(b) if b == a => {}
                        // An attempt only ever learns its outcome: that alone.
                        Some(b) if b.same_but_outcome(a) => {
                            outcomes.push((a.attempt, a.outcome.clone(), a.reason.clone()))
                        }
                        _ => attempts.push(a.clone()),
                    }
                }
                let delta = TxnDelta {
                    status: self.status.clone(),
                    manager: (self.manager != s.manager)
                        .then(|| self.manager.clone())
                        .flatten(),
                    attempts,
                    outcomes,
                    events_from: s.events as u32,
                    events: self.events.get(s.events..).unwrap_or_default().to_vec(),
                };
                TxnWrite::Delta {
                    whole: enc(self),
                    delta,
                }
            }
        };
        self.mark_saved();
        w
    }

    /// The record without its IMI.
    pub fn base(&self) -> TxnBase {
        TxnBase {
            status: self.status.clone(),
            manager: self.manager.clone(),
            attempts: self.attempts.clone(),
            events: self.events.clone(),
            closed: self.closed,
        }
    }

    /// Applies a change written by [`Self::to_write`].
    pub fn apply(&mut self, d: TxnDelta) {
        self.status = d.status;
        if d.manager.is_some() {
            self.manager = d.manager;
        }
        for a in d.attempts {
            match self.attempts.iter_mut().find(|b| b.attempt == a.attempt) {
                Some(b) => *b = a,
                None => self.attempts.push(a),
            }
        }
        for (n, outcome, reason) in d.outcomes {
            if let Some(a) = self.attempts.iter_mut().find(|a| a.attempt == n) {
                a.outcome = outcome;
                a.reason = reason;
            }
        }
        self.events.truncate(d.events_from as usize);
        self.events.extend(d.events);
    }

    /// Appends an event.
    pub fn event(&mut self, at_ms: u64, kind: impl Into<String>) {
        self.events.push(EventRecord {
            at_ms,
            kind: kind.into(),
        });
    }
}

/// What an originating gateway holds until it learns the outcome.
///
/// Content of [`OutboxEntry::SHARE_MIN`] bytes or more is kept once per
/// gateway however many entries carry it (one mail to many recipients):
/// such an entry's `content` is empty and the content is under
/// [`OutboxEntry::content_key`] of its IMI's `content_sha256`, in the same
/// tree (so whatever moves a gateway's outbox — a takeover — moves it too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The IMI it submitted.
    pub imi: Imi,
    /// The content (empty when shared, [`OutboxEntry::shared`]).
    pub content: Vec<u8>,
}

impl OutboxEntry {
    /// Content this long or longer is stored once per gateway.
    pub const SHARE_MIN: usize = 64 * 1024;

    /// Key in [`super::Tree::Outbox`].
    pub fn key(member: &MemberId, txn: &TxnId) -> Vec<u8> {
        key2(member.as_str(), txn.as_bytes())
    }

    /// Key in [`super::Tree::Outbox`] of `member`'s shared content with
    /// SHA-256 `hash`: `member \0 c hash`, never the length of an entry's.
    pub fn content_key(member: &MemberId, hash: &[u8; 32]) -> Vec<u8> {
        let mut k = key2(member.as_str(), b"c");
        k.extend_from_slice(hash);
        k
    }

    /// Whether an outbox key (after `member \0`) names an entry, not
    /// shared content.
    pub fn is_entry_key(suffix: &[u8]) -> bool {
        suffix.len() == 16
    }

    /// Whether this entry's content is shared (stored under
    /// [`OutboxEntry::content_key`]).
    pub fn shared(&self) -> bool {
        self.content.is_empty() && self.imi.content_len > 0
    }
}

/// A message in a user's built-in IM inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxEntry {
    /// The transaction.
    pub txn: TxnId,
    /// The sender (user id or address).
    pub from: String,
    /// The text.
    pub body: String,
    /// The subject, if any.
    pub subject: Option<String>,
    /// When it was sent (ms).
    pub sent_at_ms: u64,
    /// The attempt that delivered it, and the broker's `ID` (for reports).
    pub attempt: u32,
    /// The broker inner digest of that attempt.
    pub id: Tag,
    /// Whether it was reported delivered (false while held for a recipient
    /// with no open session).
    pub delivered: bool,
    /// Whether the recipient read it.
    pub read: bool,
}

impl InboxEntry {
    /// Key of the entry in [`super::Tree::Inbox`]: `user \0 m seq`.
    pub fn key(user: &str, seq: u64) -> Vec<u8> {
        let mut k = key2(user, b"m");
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    /// Key of the txn index in [`super::Tree::Inbox`]: `user \0 i txn`.
    pub fn index_key(user: &str, txn: &TxnId) -> Vec<u8> {
        let mut k = key2(user, b"i");
        k.extend_from_slice(txn.as_bytes());
        k
    }
}

/// One accounting record per final outcome of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountingRecord {
    /// The transaction.
    pub txn: TxnId,
    /// The sender (user id or address).
    pub sender: String,
    /// The recipient (user id or address).
    pub recipient: String,
    /// The mechanism used.
    pub medium: MediumKind,
    /// The destination gateway.
    pub gateway: MemberId,
    /// Content length in bytes.
    pub bytes: u64,
    /// The outcome (`delivered`, `read`, `undeliverable`, …).
    pub outcome: String,
    /// Attempts made.
    pub attempts: u32,
    /// When (ms).
    pub at_ms: u64,
}

impl AccountingRecord {
    /// The usage of `rec`, concluded with `outcome` at `at_ms` (none
    /// without an attempt).
    pub fn of(rec: &TxnRecord, outcome: String, at_ms: u64) -> Option<Self> {
        let a = rec.deciding_attempt()?;
        Some(Self {
            txn: rec.imi.txn,
            sender: rec.sender_name(),
            recipient: rec.imi.recipient.to_string(),
            medium: a.route.mechanism,
            gateway: a.route.destination.clone(),
            bytes: rec.imi.content_len,
            outcome,
            attempts: rec.attempts.len() as u32,
            at_ms,
        })
    }

    /// Key in [`super::Tree::Accounting`]: time-ordered.
    pub fn key(&self) -> Vec<u8> {
        let mut k = self.at_ms.to_be_bytes().to_vec();
        k.extend_from_slice(self.txn.as_bytes());
        k.extend_from_slice(self.outcome.as_bytes());
        k
    }
}
