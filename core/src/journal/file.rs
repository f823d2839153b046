//! [`FileJournal`]: the journal as fixed-size segment files beside the sled
//! database (`DIR/seg-<id>`), frames as [`super::frame`] describes.
//!
//! - **Append** takes a lock for the time of a copy: it gives the batch its
//!   position, frames it into the pending buffer, and wakes the writer.
//! - **The writer thread** takes everything pending, writes it where it
//!   belongs, `fdatasync`s, and publishes the new durable position. When a
//!   round reaches into the next segment, the end of the old one (its end
//!   marker) is made durable first, so a later segment never holds data
//!   the recovery would have to skip a gap to reach.
//! - **Segments are prepared ahead** by a second thread: a file of the full
//!   size, zero-filled (or one let go of by [`Journal::truncate_before`],
//!   reused as it is — the salt of its new id makes its old frames fail),
//!   waits as `spare`, so `fdatasync` never has to grow a file or allocate
//!   blocks on the append path.
//! - **Recovery** scans the segments in order and stops at the first frame
//!   that does not verify; appends go on from there, and any segment after
//!   it is let go of.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::watch;

use super::frame::{self, End, FRAME_HEADER, SEGMENT_HEADER};
use super::{lock, Durability, Journal, JournalError, Position};

/// The default segment size (64 MiB).
pub const DEFAULT_SEGMENT: u64 = 64 * 1024 * 1024;

const KEY_FILE: &str = "key";
const SPARE: &str = "spare";
const SPARE_TMP: &str = "spare.tmp";

/// Bytes pending for one segment, contiguous.
#[derive(Debug)]
struct Chunk {
    start: u64,
    bytes: Vec<u8>,
}

#[derive(Debug)]
struct Pending {
    /// Where the next frame starts (or, exactly at a segment's start, that
    /// segment's header).
    next: u64,
    /// The segment whose salt `salt` is.
    salt_id: u64,
    /// Its salt.
    salt: [u8; 8],
    chunks: Vec<Chunk>,
}

struct Shared {
    dir: PathBuf,
    segment: u64,
    key: [u8; 32],
    pending: Mutex<Pending>,
    wake: Condvar,
    durability: Durability,
    /// The lowest segment id still kept.
    first: AtomicU64,
    /// Whether the preparer should make a spare segment.
    need_spare: Mutex<bool>,
    spare_wake: Condvar,
    /// Held while the spare is made or taken.
    spare: Mutex<()>,
}

impl Shared {
    fn salt(&self, id: u64) -> [u8; 8] {
        frame::salt(&self.key, id)
    }

    fn path(&self, id: u64) -> PathBuf {
        segment_path(&self.dir, id)
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("seg-{id:016x}"))
}

fn segment_ids(dir: &Path, prefix: &str) -> Result<Vec<u64>, JournalError> {
    let mut ids = Vec::new();
    for e in fs::read_dir(dir)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if let Some(hex) = name.strip_prefix(prefix) {
            if let Ok(id) = u64::from_str_radix(hex, 16) {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// The journal's key: made once (random), kept in `DIR/key`.
fn load_key(dir: &Path) -> Result<[u8; 32], JournalError> {
    let path = dir.join(KEY_FILE);
    if let Ok(b) = fs::read(&path) {
        return b
            .try_into()
            .map_err(|_| JournalError::Io(format!("{} is not a 32-byte key", path.display())));
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| JournalError::Io(e.to_string()))?;
    let tmp = dir.join("key.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&key)?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    Ok(key)
}

/// Scans segments `ids` (ascending, from the first kept) for the end of the
/// valid log: the position the next frame goes at, and the ids past it.
fn recover(
    dir: &Path,
    key: &[u8; 32],
    segment: u64,
    ids: &[u64],
) -> Result<(u64, Vec<u64>), JournalError> {
    let Some(&first) = ids.first() else {
        return Ok((SEGMENT_HEADER as u64, Vec::new()));
    };
    let mut id = first;
    loop {
        let path = segment_path(dir, id);
        if !path.exists() {
            let beyond = ids.iter().copied().filter(|i| *i > id).collect();
            return Ok((id * segment + SEGMENT_HEADER as u64, beyond));
        }
        let bytes = fs::read(&path)?;
        match frame::scan(&bytes, id, id * segment, &frame::salt(key, id), |_| {}) {
            End::NextSegment => id += 1,
            End::Tail(t) => {
                let beyond = ids.iter().copied().filter(|i| *i > id).collect();
                return Ok((t, beyond));
            }
        }
    }
}

/// The journal in segment files.
pub struct FileJournal {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for FileJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileJournal")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

impl FileJournal {
    /// Opens (or creates) the journal in `dir` with segments of `segment`
    /// bytes, recovering its valid prefix; appends go on from there.
    ///
    /// # Errors
    /// When the directory cannot be read or written.
    pub fn open(dir: &Path, segment: u64) -> Result<Self, JournalError> {
        assert!(
            segment >= 4096 && segment.is_power_of_two(),
            "a segment is a power of two of at least 4 KiB"
        );
        fs::create_dir_all(dir)?;
        let key = load_key(dir)?;
        let _ = fs::remove_file(dir.join(SPARE_TMP));
        let ids = segment_ids(dir, "seg-")?;
        let (tail, beyond) = recover(dir, &key, segment, &ids)?;
        for id in beyond {
            // Past the valid log: nothing in it was ever durable as part of
            // it. Its file is reused.
            fs::rename(segment_path(dir, id), dir.join(format!("free-{id:016x}")))?;
        }
        let first = ids.first().copied().unwrap_or(0);
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            segment,
            key,
            pending: Mutex::new(Pending {
                next: tail,
                salt_id: tail / segment,
                salt: frame::salt(&key, tail / segment),
                chunks: Vec::new(),
            }),
            wake: Condvar::new(),
            durability: Durability::new(tail),
            first: AtomicU64::new(first),
            need_spare: Mutex::new(!dir.join(SPARE).exists()),
            spare_wake: Condvar::new(),
            spare: Mutex::new(()),
        });
        let writer = {
            let s = shared.clone();
            std::thread::Builder::new()
                .name("journal-writer".into())
                .spawn(move || writer(&s))?
        };
        let preparer = {
            let s = shared.clone();
            std::thread::Builder::new()
                .name("journal-segments".into())
                .spawn(move || preparer(&s))?
        };
        Ok(Self {
            shared,
            threads: Mutex::new(vec![writer, preparer]),
        })
    }

    /// The largest batch one append takes.
    pub fn max_batch(&self) -> usize {
        (self.shared.segment as usize) - SEGMENT_HEADER - 2 * FRAME_HEADER
    }

    /// Stops taking appends, writes and syncs what is pending, and stops
    /// the threads.
    pub fn close(&self) {
        let s = &self.shared;
        s.durability.close();
        // Taking each waiter's lock after the flag is set means a waiter is
        // either before its check (and sees it) or already waiting (and is
        // woken): no wake-up is lost.
        drop(lock(&s.pending));
        s.wake.notify_all();
        drop(lock(&s.need_spare));
        s.spare_wake.notify_all();
        for t in lock(&self.threads).drain(..) {
            let _ = t.join();
        }
        self.shared.durability.wake();
    }
}

impl Drop for FileJournal {
    fn drop(&mut self) {
        self.close();
    }
}

impl Journal for FileJournal {
    fn append(&self, batch: &[u8]) -> Result<Position, JournalError> {
        let s = &self.shared;
        let max = self.max_batch();
        if batch.len() > max {
            return Err(JournalError::TooLarge {
                len: batch.len(),
                max,
            });
        }
        let need = (FRAME_HEADER + batch.len()) as u64;
        let mut p = lock(&s.pending);
        if let Some(e) = s.durability.refusal() {
            return Err(e);
        }
        let seg = s.segment;
        if p.next.is_multiple_of(seg) {
            // Exactly at a segment's start: its header comes first.
            p.next += SEGMENT_HEADER as u64;
        }
        let off = p.next % seg;
        if off + need > seg {
            // The end of this segment: a marker if there is room for one,
            // then the next segment's first frame.
            let at = p.next;
            if seg - off >= FRAME_HEADER as u64 {
                let salt = p.salt;
                push(&mut p.chunks, at, |b| frame::encode_end(b, &salt, at));
            }
            p.next = (at / seg + 1) * seg + SEGMENT_HEADER as u64;
        }
        if p.next / seg != p.salt_id {
            p.salt_id = p.next / seg;
            p.salt = s.salt(p.salt_id);
        }
        let (pos, salt) = (p.next, p.salt);
        push(&mut p.chunks, pos, |b| {
            frame::encode_frame(b, &salt, pos, batch)
        });
        p.next = pos + need;
        let end = p.next;
        drop(p);
        s.wake.notify_one();
        Ok(end)
    }

    fn durable(&self) -> Position {
        self.shared.durability.durable()
    }

    fn watch(&self) -> watch::Receiver<Position> {
        self.shared.durability.watch()
    }

    fn failed(&self) -> Option<JournalError> {
        self.shared.durability.failed()
    }

    fn replay(
        &self,
        from: Position,
        each: &mut dyn FnMut(Position, &[u8]),
    ) -> Result<Position, JournalError> {
        let s = &self.shared;
        let mut id = (from / s.segment).max(s.first.load(Ordering::SeqCst));
        let mut last = from;
        loop {
            let Ok(bytes) = fs::read(s.path(id)) else {
                return Ok(last);
            };
            let end = frame::scan(&bytes, id, id * s.segment, &s.salt(id), |f| {
                if f.pos >= from {
                    each(f.end, f.payload);
                    last = f.end;
                }
            });
            match end {
                End::NextSegment => id += 1,
                End::Tail(_) => return Ok(last),
            }
        }
    }

    fn truncate_before(&self, pos: Position) -> Result<(), JournalError> {
        let s = &self.shared;
        // Never the segment being written.
        let keep = pos.min(self.durable()) / s.segment;
        let first = s.first.load(Ordering::SeqCst);
        let mut moved = false;
        for id in first..keep {
            let path = s.path(id);
            if path.exists() {
                fs::rename(&path, s.dir.join(format!("free-{id:016x}")))?;
                moved = true;
            }
        }
        if keep > first {
            s.first.store(keep, Ordering::SeqCst);
        }
        if moved {
            sync_dir(&s.dir)?;
        }
        Ok(())
    }

    fn close(&self) {
        FileJournal::close(self);
    }
}

/// Adds what `encode` writes at `pos` to the pending chunks: to the last
/// chunk when it is contiguous with it, else as a new one.
fn push(chunks: &mut Vec<Chunk>, pos: u64, encode: impl FnOnce(&mut Vec<u8>)) {
    match chunks.last_mut() {
        Some(c) if c.start + c.bytes.len() as u64 == pos => encode(&mut c.bytes),
        _ => {
            let mut bytes = Vec::with_capacity(64 * 1024);
            encode(&mut bytes);
            chunks.push(Chunk { start: pos, bytes });
        }
    }
}

/// The segment the writer writes into.
struct Open {
    id: u64,
    file: File,
    dirty: bool,
}

/// The writer thread: rounds of write, `fdatasync`, publish.
fn writer(s: &Shared) {
    let mut open: Option<Open> = None;
    loop {
        let chunks = {
            let mut p = lock(&s.pending);
            while p.chunks.is_empty() {
                if s.durability.is_closed() {
                    return;
                }
                p = s.wake.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            std::mem::take(&mut p.chunks)
        };
        let t0 = std::time::Instant::now();
        match write_round(s, &mut open, &chunks) {
            Ok(end) => {
                metrics::histogram!("switchboard_journal_sync_seconds")
                    .record(t0.elapsed().as_secs_f64());
                s.durability.publish(end);
            }
            Err(e) => {
                s.durability.fail(e);
                return;
            }
        }
    }
}

/// Writes one round's chunks and makes them durable; the position after
/// them.
fn write_round(s: &Shared, open: &mut Option<Open>, chunks: &[Chunk]) -> Result<u64, JournalError> {
    let mut end = 0;
    for c in chunks {
        let id = c.start / s.segment;
        if open.as_ref().is_none_or(|o| o.id != id) {
            if let Some(o) = open.as_mut().filter(|o| o.dirty) {
                // What precedes the next segment is durable before anything
                // in it is written.
                o.file.sync_data()?;
            }
            *open = Some(open_segment(s, id)?);
        }
        let o = open.as_mut().expect("opened above");
        o.file.write_all_at(&c.bytes, c.start % s.segment)?;
        o.dirty = true;
        end = c.start + c.bytes.len() as u64;
    }
    if let Some(o) = open.as_mut().filter(|o| o.dirty) {
        o.file.sync_data()?;
        o.dirty = false;
    }
    Ok(end)
}

/// Opens segment `id` for appending: the existing file (after recovery),
/// or the prepared spare (made now if the preparer has none yet), with the
/// segment's header written.
fn open_segment(s: &Shared, id: u64) -> Result<Open, JournalError> {
    let path = s.path(id);
    if !path.exists() {
        let _held = lock(&s.spare);
        let spare = s.dir.join(SPARE);
        if !spare.exists() {
            tracing::warn!("no spare journal segment ready; making one on the append path");
            make_spare(s)?;
        }
        fs::rename(&spare, &path)?;
        sync_dir(&s.dir)?;
        *lock(&s.need_spare) = true;
        s.spare_wake.notify_all();
    }
    let file = OpenOptions::new().read(true).write(true).open(&path)?;
    let mut head = [0u8; SEGMENT_HEADER];
    let read = file.read_at(&mut head, 0)?;
    let dirty = if read < SEGMENT_HEADER || !frame::header_is(&head, id) {
        file.write_all_at(&frame::segment_header(id), 0)?;
        true
    } else {
        false
    };
    Ok(Open { id, file, dirty })
}

/// Makes `DIR/spare` (the caller holds `s.spare`): a let-go segment file if
/// there is one, else a new file of the full size, zero-filled and synced.
fn make_spare(s: &Shared) -> Result<(), JournalError> {
    let spare = s.dir.join(SPARE);
    if let Some(free) = segment_ids(&s.dir, "free-")?.first() {
        fs::rename(s.dir.join(format!("free-{free:016x}")), &spare)?;
    } else {
        let tmp = s.dir.join(SPARE_TMP);
        let mut f = File::create(&tmp)?;
        let zeros = vec![0u8; 1024 * 1024];
        let mut left = s.segment;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            f.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        f.sync_all()?;
        fs::rename(&tmp, &spare)?;
    }
    sync_dir(&s.dir)
}

/// The preparer thread: keeps one spare segment ready.
fn preparer(s: &Shared) {
    loop {
        {
            let mut need = lock(&s.need_spare);
            while !*need && !s.durability.is_closed() {
                need = s.spare_wake.wait(need).unwrap_or_else(|e| e.into_inner());
            }
            if s.durability.is_closed() {
                return;
            }
            *need = false;
        }
        let _held = lock(&s.spare);
        if !s.dir.join(SPARE).exists() {
            if let Err(e) = make_spare(s) {
                tracing::warn!(error = %e, "preparing a journal segment failed; the writer makes its own");
            }
        }
    }
}
