//! The archive member (COMPLIANCE.md "The archive"): a MIAP hop that takes
//! a copy of each delivery of an archived scope — checked with its own
//! grant, like any hop — and, when the broker tells it the transaction
//! concluded, writes one record (`switchboard_core::archive`) with the
//! content it was sent. A copy is acknowledged once it is durable: with its
//! record (written in batches, off the broker's path, on the archive's own
//! thread), or — its transaction still open after [`SPILL_AFTER_MS`] — in
//! `pending/` (one file per transaction, written whole). Until then its
//! originator keeps the content and sends it again, so a crash loses none;
//! at start the spilled copies whose transaction concluded meanwhile are
//! recorded from the store.
//!
//! Owns: the archive's files. Must not touch: the broker's records (it reads
//! them), routing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use actix::prelude::*;

use switchboard_core::archive::{Archive, ArchiveRecord};
use switchboard_core::directory::Directory;
use switchboard_core::protocol::frames;
use switchboard_core::protocol::{Frame, MemberId, ProtocolError, Transmit, TransmitAck, TxnId};
use switchboard_core::store::{Store, TxnRecord, TxnStatus};

use crate::bus::{ArchiveConcluded, MiapFrame};
use crate::member_session::MemberSession;
use crate::registry::MemberRegistry;

/// How often queued records are written (and a due checkpoint signed).
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Most records written in one append.
const MAX_BATCH: usize = 512;
/// How long a copy waits in memory for its transaction to conclude before
/// it is written to `pending/` and acknowledged.
const SPILL_AFTER_MS: u64 = 2_000;
/// How long a concluded transaction waits for its copy (sent late, or
/// again by an originator that restarted) before it is recorded without.
const COPY_WAIT_MS: u64 = 300_000;

/// The archive member.
pub struct Archiver {
    tscs: MemberSession,
    members: MemberRegistry,
    archive: Archive,
    store: Store,
    directory: Directory,
    pending_dir: PathBuf,
    /// Copies by transaction: the content as sent.
    pending: HashMap<TxnId, Vec<u8>>,
    /// Copies in `pending/` (durable, acknowledged).
    spilled: std::collections::HashSet<TxnId>,
    /// Copies not durable yet: who sent them (to acknowledge once they
    /// are) and since when.
    unacked: HashMap<TxnId, (Vec<(MemberId, u32)>, u64)>,
    /// Records to write at the next flush, with their content.
    queue: Vec<(ArchiveRecord, Vec<u8>, Option<TxnId>)>,
    /// Concluded transactions whose copy has not come yet, with when they
    /// are recorded without it.
    awaiting: HashMap<TxnId, (TxnRecord, u64)>,
    /// In a cluster: this node's id and where its records go to be
    /// replicated (`switchboard_core::cluster::archive`).
    replica: Option<(String, Replica)>,
}

/// Where written records go to be replicated.
pub type Replica =
    tokio::sync::mpsc::UnboundedSender<switchboard_core::cluster::archive::StreamedRecord>;

impl Archiver {
    /// The member `tscs` over `archive`, its copies waiting in
    /// `pending_dir`; `store` has the broker's records, `directory` the
    /// parties' domains and groups.
    pub fn new(
        tscs: MemberSession,
        members: MemberRegistry,
        archive: Archive,
        (store, directory): (Store, Directory),
        pending_dir: PathBuf,
    ) -> Self {
        Self {
            tscs,
            members,
            archive,
            store,
            directory,
            pending_dir,
            pending: HashMap::new(),
            spilled: std::collections::HashSet::new(),
            unacked: HashMap::new(),
            queue: Vec::new(),
            awaiting: HashMap::new(),
            replica: None,
        }
    }

    /// Every record written goes to `replica` too, as `node`'s.
    #[must_use]
    pub fn with_replica(mut self, node: String, replica: Replica) -> Self {
        self.replica = Some((node, replica));
        self
    }

    fn pending_path(&self, txn: &TxnId) -> PathBuf {
        self.pending_dir.join(txn.to_string())
    }

    /// A copy from an originator: kept until its transaction concludes and
    /// acknowledged once durable (the originator holds the content until
    /// then). A copy of a delivery recorded already is acknowledged and
    /// dropped; one whose conclusion came first is recorded now.
    fn on_transmit(&mut self, from: &MemberId, t: Transmit) -> Result<(), ProtocolError> {
        let me = self.tscs.cfg.id.clone();
        frames::check_copy(&me, &self.tscs.cfg.key, &t)?;
        let (txn, attempt) = (t.imi.imi.txn, t.imi.attempt);
        let written = self.archive.has_delivery(&txn.to_string());
        let queued = self.queue.iter().any(|(_, _, q)| *q == Some(txn));
        if written || self.spilled.contains(&txn) {
            self.ack(from.clone(), txn, attempt);
        } else {
            let now = self.tscs.now();
            let (senders, _) = self.unacked.entry(txn).or_insert((Vec::new(), now));
            if !senders.contains(&(from.clone(), attempt)) {
                senders.push((from.clone(), attempt));
            }
            if !queued {
                self.pending.entry(txn).or_insert(t.content);
            }
        }
        let recorded = written || queued;
        // Its conclusion came first: recorded now. (One that went by before
        // this archive ran is found in the store when the copy has waited
        // a while: [`Self::spill`].)
        if let Some((rec, _)) = self.awaiting.remove(&txn).filter(|_| !recorded) {
            let now = self.tscs.now();
            self.conclude(&rec, now);
        }
        Ok(())
    }

    fn ack(&self, to: MemberId, txn: TxnId, attempt: u32) {
        let me = &self.tscs.cfg.id;
        (self.members).send(&to, me, Frame::TransmitAck(TransmitAck { txn, attempt }));
    }

    /// `txn`'s copy is durable: everyone who sent it is told.
    fn durable(&mut self, txn: &TxnId) {
        if let Some((senders, _)) = self.unacked.remove(txn) {
            for (to, attempt) in senders {
                self.ack(to, *txn, attempt);
            }
        }
    }

    /// Copies waiting longer than [`SPILL_AFTER_MS`] for their transaction:
    /// one the store says concluded (before this archive ran: an
    /// originator submitting again at start) is recorded; the others (an
    /// offline recipient, a slow medium) go to `pending/` and are
    /// acknowledged. A copy that cannot be written stays unacknowledged
    /// (its originator keeps it).
    fn spill(&mut self, now_ms: u64) {
        let due: Vec<TxnId> = (self.unacked.iter())
            .filter(|(_, (_, since))| now_ms.saturating_sub(*since) >= SPILL_AFTER_MS)
            .map(|(txn, _)| *txn)
            .collect();
        let mut concluded = false;
        for txn in &due {
            if let Ok(Some(rec)) = self.store.txn(txn) {
                if rec.status.is_final() && self.pending.contains_key(txn) {
                    self.conclude(&rec, now_ms);
                    concluded = true;
                }
            }
        }
        if concluded {
            // Recorded now; acknowledged once written.
            return self.flush(now_ms);
        }
        for txn in due {
            let Some(content) = self.pending.get(&txn) else {
                continue; // queued for its record: acknowledged with it
            };
            let path = self.pending_path(&txn);
            let tmp = path.with_extension("tmp");
            let kept = std::fs::write(&tmp, content)
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &path));
            match kept {
                Ok(()) => {
                    self.spilled.insert(txn);
                    self.durable(&txn);
                }
                Err(e) => {
                    tracing::error!(txn = %txn, error = %e, "the archive could not keep a copy");
                }
            }
        }
    }

    /// A concluded transaction: its record is queued with the copy (which
    /// then goes); a read after the delivery was recorded is an `event`
    /// record of its own, with no content.
    fn conclude(&mut self, rec: &TxnRecord, now_ms: u64) {
        let txn = rec.imi.txn;
        // A copy is recorded once: a read arriving before the delivery's
        // record is written is an event all the same; a delivery recorded
        // before a crash (its copy sent again since) is not recorded twice.
        let id = txn.to_string();
        let written = self.archive.has_delivery(&id);
        let queued = written || self.queue.iter().any(|(_, _, t)| *t == Some(txn));
        if queued && rec.status != TxnStatus::Read {
            if written {
                self.forget_copy(&txn);
            }
            return;
        }
        // A read is recorded once, however often it is heard of (an
        // originator's resubmission after a restart tells it again).
        let read_queued =
            || (self.queue.iter()).any(|(r, _, t)| *t == Some(txn) && r.kind == "event");
        if queued && (self.archive.has_event(&id, "read") || read_queued()) {
            return;
        }
        let content = match self.pending.remove(&txn) {
            _ if queued => None,
            Some(c) => Some(c),
            None => std::fs::read(self.pending_path(&txn)).ok(),
        };
        if content.is_none() && !queued {
            // The copy is on its way (or comes again from an originator that
            // restarted): the record waits for it, the latest outcome kept.
            let deadline = self
                .awaiting
                .get(&txn)
                .map_or(now_ms + COPY_WAIT_MS, |(_, d)| *d);
            self.awaiting.insert(txn, (rec.clone(), deadline));
            return;
        }
        self.record(rec, content, now_ms);
    }

    /// Queues the record of `rec`: a delivery with its content, a later
    /// event without, or (its copy never came) a delivery marked so.
    fn record(&mut self, rec: &TxnRecord, content: Option<Vec<u8>>, now_ms: u64) {
        let txn = rec.imi.txn;
        let mut record = record_of(rec, now_ms);
        (record.domains, record.groups) = parties(&self.directory, rec);
        let written = self.archive.has_delivery(&txn.to_string())
            || self.queue.iter().any(|(_, _, t)| *t == Some(txn));
        if content.is_none() {
            if written {
                record.kind = "event".into();
            } else {
                record.trail.push((now_ms, "archive:no_copy".into()));
                tracing::warn!(txn = %txn, "archived without its content: no copy reached the archive");
            }
        }
        self.queue
            .push((record, content.unwrap_or_default(), Some(txn)));
        if self.queue.len() >= MAX_BATCH {
            self.flush(now_ms);
        }
    }

    fn flush(&mut self, now_ms: u64) {
        let overdue: Vec<TxnId> = (self.awaiting.iter())
            .filter(|(_, (_, deadline))| *deadline <= now_ms)
            .map(|(txn, _)| *txn)
            .collect();
        for txn in overdue {
            if let Some((rec, _)) = self.awaiting.remove(&txn) {
                self.record(&rec, None, now_ms);
            }
        }
        if self.queue.is_empty() {
            if let Err(e) = self.archive.checkpoint_if_due(now_ms) {
                tracing::error!(error = %e, "archive checkpoint failed");
            }
            self.spill(now_ms);
            return;
        }
        let batch = std::mem::take(&mut self.queue);
        let done: Vec<TxnId> = batch.iter().filter_map(|(_, _, t)| *t).collect();
        let n = batch.len();
        let contents: Vec<Vec<u8>> = match &self.replica {
            Some(_) => batch.iter().map(|(_, c, _)| c.clone()).collect(),
            None => Vec::new(),
        };
        match self
            .archive
            .append_stored(batch.into_iter().map(|(r, c, _)| (r, c)).collect(), now_ms)
        {
            Ok(stored) => {
                metrics::counter!("switchboard_archive_records_total").increment(n as u64);
                tracing::debug!(records = n, last = ?stored.last().map(|s| s.0), "archived");
                if let Some((node, replica)) = &self.replica {
                    for ((seq, record), content) in stored.into_iter().zip(contents) {
                        let r = switchboard_core::cluster::archive::StreamedRecord {
                            node: node.clone(),
                            seq,
                            record,
                            content,
                        };
                        let _ = replica.send(r);
                    }
                }
                for txn in done {
                    self.forget_copy(&txn);
                }
            }
            Err(e) => {
                // Not acknowledged: the originators keep the copies and send
                // them again (spilled ones are recorded at the next start).
                tracing::error!(error = %e, records = n, "archive append failed");
            }
        }
        self.spill(now_ms);
    }

    /// `txn` is recorded: its copy is acknowledged and goes.
    fn forget_copy(&mut self, txn: &TxnId) {
        self.durable(txn);
        self.pending.remove(txn);
        if self.spilled.remove(txn) {
            let _ = std::fs::remove_file(self.pending_path(txn));
        }
    }

    /// At start: copies whose transaction concluded while the archive was
    /// not running are recorded now; the others wait.
    fn recover(&mut self, now_ms: u64) {
        let Ok(dir) = std::fs::read_dir(&self.pending_dir) else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Ok(txn) = name.parse::<TxnId>() else {
                // A `.tmp` half-written copy: its originator sends it again.
                let _ = std::fs::remove_file(entry.path());
                continue;
            };
            let Ok(content) = std::fs::read(entry.path()) else {
                continue;
            };
            self.pending.insert(txn, content);
            self.spilled.insert(txn);
            match self.store.txn(&txn) {
                Ok(Some(rec)) if rec.status.is_final() => self.conclude(&rec, now_ms),
                _ => {}
            }
        }
        if !self.pending.is_empty() {
            tracing::info!(
                copies = self.pending.len(),
                "archive: copies kept across a restart"
            );
        }
        self.flush(now_ms);
    }
}

/// The domains and groups of a transaction's parties (what retention's
/// scopes name), as the directory has them now.
fn parties(directory: &Directory, rec: &TxnRecord) -> (Vec<String>, Vec<String>) {
    let policy = directory.policy().snapshot();
    let users = [
        rec.imi.sender_user.clone(),
        (rec.deciding_attempt()).and_then(|a| a.route.recipient_user.clone()),
    ];
    let (mut domains, mut groups) = (Vec::new(), Vec::new());
    for p in users.iter().flatten().filter_map(|u| directory.profile(u)) {
        domains.extend(p.domain.clone());
        groups.extend(policy.groups_of(&p.id, &p.attrs, &p.groups));
    }
    for v in [&mut domains, &mut groups] {
        v.sort();
        v.dedup();
    }
    (domains, groups)
}

/// The record of a concluded transaction.
fn record_of(rec: &TxnRecord, now_ms: u64) -> ArchiveRecord {
    let imi = &rec.imi;
    let deciding = rec.deciding_attempt();
    let marks = |prefix: &str| -> Vec<String> {
        rec.events
            .iter()
            .filter_map(|e| e.kind.strip_prefix(prefix))
            .map(str::to_string)
            .collect()
    };
    ArchiveRecord {
        seq: 0,
        kind: "delivery".into(),
        archive: marks("archive:").into_iter().next().unwrap_or_default(),
        txn: imi.txn.to_string(),
        from: rec.sender_name(),
        to: deciding
            .and_then(|a| a.route.recipient_user.clone())
            .unwrap_or_else(|| imi.recipient.to_string()),
        medium: deciding
            .map_or("none", |a| a.route.mechanism.as_str())
            .into(),
        sent_at_ms: imi.created_at_ms,
        at_ms: rec.events.last().map_or(now_ms, |e| e.at_ms),
        outcome: rec.status.as_str().into(),
        subject: imi.subject.clone(),
        content_type: imi.content_type.clone(),
        content_sha256: String::new(),
        hops: deciding.map_or_else(Vec::new, |a| {
            (a.route.processors.iter())
                .chain(std::iter::once(&a.route.destination))
                .map(|m| m.to_string())
                .collect()
        }),
        domains: Vec::new(),
        groups: Vec::new(),
        tags: marks("tag:"),
        policy: marks("policy:"),
        trail: rec
            .events
            .iter()
            .map(|e| (e.at_ms, e.kind.clone()))
            .collect(),
    }
}

impl Actor for Archiver {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        self.members.connect(
            self.tscs.cfg.id.clone(),
            None,
            ctx.address().recipient(),
            self.tscs.now(),
        );
        self.tscs.login();
        let now = self.tscs.now();
        self.recover(now);
        ctx.run_interval(self.tscs.renew_every(), |act, _| act.tscs.login());
        ctx.run_interval(FLUSH_EVERY, |act, _| {
            let now = act.tscs.now();
            act.flush(now);
        });
        ctx.run_interval(Duration::from_secs(2), |act, _| {
            if !act.tscs.logged_in() {
                act.tscs.login();
            }
        });
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        let now = self.tscs.now();
        self.flush(now);
        if let Err(e) = self.archive.checkpoint(now) {
            tracing::error!(error = %e, "archive checkpoint at stop failed");
        }
        self.members.disconnect(&self.tscs.cfg.id);
        Running::Stop
    }
}

impl Handler<MiapFrame> for Archiver {
    type Result = ();

    fn handle(&mut self, msg: MiapFrame, _: &mut Context<Self>) {
        let MiapFrame { from, frame } = msg;
        let txn = frame.txn();
        let kind = frame.kind();
        let from_broker = self.tscs.is_broker(&from);
        let result = match frame {
            Frame::LoginAck(a) if from_broker => self.tscs.on_login_ack(&a),
            Frame::Refused(r) => {
                if from_broker
                    && matches!(
                        r.error,
                        ProtocolError::NoSession | ProtocolError::SessionExpired
                    )
                {
                    self.tscs.drop_session();
                    self.tscs.login();
                }
                Ok(())
            }
            Frame::Transmit(t) => self.on_transmit(&from, *t),
            _ => Err(ProtocolError::WrongParty),
        };
        if let Err(error) = result {
            self.tscs.refuse(&self.members, &from, kind, error, txn);
        }
    }
}

impl Handler<ArchiveConcluded> for Archiver {
    type Result = ();

    fn handle(&mut self, ArchiveConcluded(rec): ArchiveConcluded, _: &mut Context<Self>) {
        let now = self.tscs.now();
        self.conclude(&rec, now);
    }
}

/// Writes what is queued now, and with `checkpoint` signs a checkpoint
/// over it (an ordered stop); answers the last seq written.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "u64")]
pub struct FlushArchive {
    /// Sign a checkpoint too.
    pub checkpoint: bool,
}

impl Handler<FlushArchive> for Archiver {
    type Result = u64;

    fn handle(&mut self, f: FlushArchive, _: &mut Context<Self>) -> u64 {
        let now = self.tscs.now();
        self.flush(now);
        if f.checkpoint {
            if let Err(e) = self.archive.checkpoint(now) {
                tracing::error!(error = %e, "archive checkpoint failed");
            }
        }
        self.archive.seq()
    }
}

/// Purges what retention lets go and no hold keeps (`dry_run`: only says
/// what), with what is queued written first; answers the records due.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<Vec<ArchiveRecord>, String>")]
pub struct PurgeArchive {
    /// The purge's "now" (ms); the clock's when `None`.
    pub now_ms: Option<u64>,
    /// Say what would go, purge nothing.
    pub dry_run: bool,
}

impl Handler<PurgeArchive> for Archiver {
    type Result = Result<Vec<ArchiveRecord>, String>;

    fn handle(&mut self, p: PurgeArchive, _: &mut Context<Self>) -> Self::Result {
        let now = self.tscs.now();
        self.flush(now);
        let due = (self.archive)
            .purge_due(p.now_ms.unwrap_or(now), p.dry_run)
            .map_err(|e| e.to_string())?;
        if !p.dry_run {
            tracing::info!(records = due.len(), "archive purged");
        }
        Ok(due)
    }
}
