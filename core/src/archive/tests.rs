//! The archive's store and its verification, on real files in a temp dir.

use std::path::{Path, PathBuf};

use super::*;

/// A delivery record from alice to `to` (also the index's tests').
pub(super) fn record(to: &str) -> ArchiveRecord {
    ArchiveRecord {
        seq: 0,
        kind: "delivery".into(),
        archive: "corp.example".into(),
        txn: "01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
        from: "alice".into(),
        to: to.into(),
        medium: "im".into(),
        sent_at_ms: 1_000,
        at_ms: 2_000,
        outcome: "delivered".into(),
        subject: None,
        content_type: "text/plain".into(),
        content_sha256: String::new(),
        hops: vec!["proc-filter-1".into(), "gw-im-1".into()],
        domains: vec!["corp.example".into()],
        groups: vec![],
        tags: vec![],
        policy: vec!["watch:v1:notify".into()],
        trail: vec![(1_000, "submitted".into()), (2_000, "delivered:im".into())],
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    fp: PathBuf,
    key: ArchiveKey,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        Self {
            dir: tmp.path().join("archive"),
            fp: tmp.path().join("fingerprints"),
            key: ArchiveKey::generate(),
            _tmp: tmp,
        }
    }

    fn open(&self, every: u64) -> Archive {
        let cadence = Cadence {
            every,
            interval_ms: 60_000,
        };
        Archive::open(&self.dir, &self.fp, self.key.clone(), cadence).unwrap()
    }

    /// `n` records, one append each, one body per recipient.
    fn filled(&self, n: usize, every: u64) -> Archive {
        let mut a = self.open(every);
        for i in 0..n {
            let body = format!("hello {}", i % 3);
            a.append(vec![(record(&format!("u{i}")), body.into_bytes())], 10_000)
                .unwrap();
        }
        a
    }

    fn verify(&self) -> Verified {
        verify(&self.dir, &self.fp, &self.key.public()).unwrap()
    }

    fn records_path(&self) -> PathBuf {
        self.dir.join(files::RECORDS)
    }
}

/// The records of `path` and the byte offset of each.
fn offsets(path: &Path) -> Vec<(usize, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let (entries, _) = log::split_records(&bytes);
    let mut at = 0;
    entries
        .into_iter()
        .map(|e| {
            let o = at;
            at += 4 + e.len();
            (o, e.to_vec())
        })
        .collect()
}

fn rewrite(path: &Path, entries: &[Vec<u8>]) {
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(&(e.len() as u32).to_be_bytes());
        out.extend_from_slice(e);
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn appended_records_verify_and_content_is_stored_once() {
    let f = Fixture::new();
    let mut a = f.filled(7, 3);
    assert_eq!(a.seq(), 7);
    // A batch gets consecutive seqs.
    let seqs = a
        .append(
            vec![
                (record("x"), b"hello 0".to_vec()),
                (record("y"), b"hello 0".to_vec()),
            ],
            10_000,
        )
        .unwrap();
    assert_eq!(seqs, [8, 9]);
    let recs = a.records().unwrap();
    assert_eq!(
        recs.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=9).collect::<Vec<_>>()
    );
    assert_eq!(a.content(&recs[8].content_sha256).unwrap(), b"hello 0");
    let stored: Vec<Vec<u8>> = content_entries(&f.dir).into_iter().map(|e| e.2).collect();
    assert_eq!(stored.len(), 3, "each distinct content once: {stored:?}");
    let v = f.verify();
    assert_eq!(v.problems, []);
    // Every 3 records: checkpoints at 3, 6 and 9.
    assert_eq!((v.records, v.checkpoints, v.covered), (9, 3, 9));
    // Reopened, it goes on from where it was.
    drop(a);
    let mut a = f.open(3);
    assert_eq!(a.seq(), 9);
    a.append(vec![(record("z"), b"more".to_vec())], 10_000)
        .unwrap();
    assert_eq!(f.verify().problems, []);
    assert_eq!(a.records().unwrap().last().unwrap().seq, 10);
}

#[test]
fn a_checkpoint_is_due_after_its_interval() {
    let f = Fixture::new();
    let mut a = f.open(1000);
    a.append(vec![(record("a"), b"x".to_vec())], 1_000).unwrap();
    assert!(!a.checkpoint_if_due(30_000).unwrap());
    assert!(a.checkpoint_if_due(61_000).unwrap());
    assert!(!a.checkpoint_if_due(200_000).unwrap(), "nothing uncovered");
    assert_eq!(f.verify().covered, 1);
}

#[test]
fn a_flipped_byte_in_a_record_is_named() {
    let f = Fixture::new();
    drop(f.filled(6, 3));
    let recs = offsets(&f.records_path());
    let mut bytes = std::fs::read(f.records_path()).unwrap();
    // Inside record 4's JSON: a letter of its recipient.
    let (at, rec) = &recs[3];
    let pos = at + 4 + rec.windows(2).position(|w| w == b"u3").unwrap();
    bytes[pos] ^= 0x01;
    std::fs::write(f.records_path(), bytes).unwrap();
    let v = f.verify();
    assert_eq!(v.problems.first(), Some(&Problem::Changed { seq: 4 }));
    assert_eq!(
        v.problems.first().unwrap().to_string(),
        "record 4 was changed (its hash is not the one in the fingerprints)"
    );
}

#[test]
fn a_deleted_record_is_named() {
    let f = Fixture::new();
    drop(f.filled(6, 3));
    let mut recs: Vec<Vec<u8>> = offsets(&f.records_path())
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    recs.remove(2);
    rewrite(&f.records_path(), &recs);
    assert_eq!(f.verify().problems, [Problem::Deleted { seq: 3 }]);
    // The last one deleted too.
    recs.pop();
    rewrite(&f.records_path(), &recs);
    let v = f.verify();
    assert_eq!(
        v.problems,
        [Problem::Deleted { seq: 3 }, Problem::Deleted { seq: 6 }]
    );
}

/// Someone without the key rewrites record 2 and every link after it to
/// match: the chain holds, the checkpoint covering it does not.
#[test]
fn fingerprints_rewritten_without_the_key_fail_their_checkpoint() {
    let f = Fixture::new();
    drop(f.filled(6, 3));
    let mut recs: Vec<Vec<u8>> = offsets(&f.records_path())
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    let mut r = ArchiveRecord::decode(&recs[1]).unwrap();
    r.to = "mallory".into();
    recs[1] = r.encode().unwrap();
    rewrite(&f.records_path(), &recs);
    let mut last = Link::genesis();
    let links: Vec<[u8; chain::LINK_LEN]> = recs
        .iter()
        .map(|b| {
            last = last.next(record::hash(b));
            last.to_bytes()
        })
        .collect();
    std::fs::write(f.fp.join(files::CHAIN), links.concat()).unwrap();
    let v = f.verify();
    assert_eq!(v.problems, [Problem::Checkpoint { seq: 3, from: 1 }]);
    assert_eq!(
        v.problems[0].to_string(),
        "checkpoint at record 3 does not verify: records 1 to 3 were rewritten"
    );
    // Nor is a checkpoint signed with another key taken.
    let other = ArchiveKey::generate();
    let forged = Checkpoint::sign(&other, 3, 1, last.chain);
    std::fs::write(f.fp.join(files::CHECKPOINTS), forged.to_bytes()).unwrap();
    assert!(f
        .verify()
        .problems
        .contains(&Problem::Checkpoint { seq: 3, from: 1 }));
}

#[test]
fn changed_or_removed_content_is_named() {
    let f = Fixture::new();
    let a = f.filled(4, 10);
    let recs = a.records().unwrap();
    // Record 2's content ("hello 1") is only its own.
    let path = f.dir.join(files::CONTENTS);
    let original = std::fs::read(&path).unwrap();
    let hash = record::unhex(&recs[1].content_sha256).unwrap();
    let (at, _, bytes) = (content_entries(&f.dir).into_iter())
        .find(|(_, h, _)| h[..] == hash[..])
        .unwrap();
    assert_eq!(bytes, b"hello 1");
    let mut flipped = original.clone();
    flipped[at + 40 + 6] = b'9';
    std::fs::write(&path, &flipped).unwrap();
    assert_eq!(f.verify().problems, [Problem::Content { seq: 2 }]);
    // Removed: the file without that entry.
    let mut removed = original[..at].to_vec();
    removed.extend_from_slice(&original[at + 40 + bytes.len()..]);
    std::fs::write(&path, &removed).unwrap();
    assert_eq!(f.verify().problems, [Problem::Content { seq: 2 }]);
}

/// A crash mid-append of contents: the torn tail is cut when the archive
/// opens (no record names it), and the contents before it read as stored.
#[test]
fn a_torn_content_tail_is_cut_at_open() {
    let f = Fixture::new();
    drop(f.filled(2, 10));
    let path = f.dir.join(files::CONTENTS);
    let whole = std::fs::read(&path).unwrap();
    let mut torn = whole.clone();
    torn.extend_from_slice(&[7u8; 45]);
    std::fs::write(&path, &torn).unwrap();
    assert_eq!(f.verify().problems, [], "a tail no record names");
    let mut a = f.open(10);
    assert_eq!(std::fs::read(&path).unwrap(), whole, "cut back");
    a.append(vec![(record("after"), b"after".to_vec())], 10_000)
        .unwrap();
    let recs = a.records().unwrap();
    assert_eq!(a.content(&recs[2].content_sha256).unwrap(), b"after");
    assert_eq!(f.verify().problems, []);
}

/// `contents.log` as (offset, hash, bytes) per entry.
fn content_entries(dir: &std::path::Path) -> Vec<(usize, Vec<u8>, Vec<u8>)> {
    let b = std::fs::read(dir.join(files::CONTENTS)).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while at + 40 <= b.len() {
        let len = u64::from_be_bytes(b[at + 32..at + 40].try_into().unwrap()) as usize;
        out.push((
            at,
            b[at..at + 32].to_vec(),
            b[at + 40..at + 40 + len].to_vec(),
        ));
        at += 40 + len;
    }
    out
}

/// A crash mid-append: a torn record is cut when the archive opens (it was
/// never acknowledged); a record written but not linked is linked then.
#[test]
fn a_crash_mid_append_leaves_no_gap_in_the_chain() {
    let f = Fixture::new();
    drop(f.filled(3, 10));
    let whole = record("late").encode().unwrap();
    let mut torn = (whole.len() as u32).to_be_bytes().to_vec();
    torn.extend_from_slice(&whole[..10]);
    let mut bytes = std::fs::read(f.records_path()).unwrap();
    bytes.extend_from_slice(&torn);
    std::fs::write(f.records_path(), &bytes).unwrap();
    assert_eq!(
        f.verify().problems,
        [Problem::Unreadable { after: 3 }],
        "said before it is opened"
    );
    let mut a = f.open(10);
    assert_eq!(a.seq(), 3);
    assert_eq!(f.verify().problems, []);

    // Written, not linked: record 4 with its content, then a stop.
    let mut r = record("unlinked");
    r.seq = 4;
    r.content_sha256 = record::hex(&crate::protocol::mac::sha256(b"c"));
    // (An archive written before contents.log: its content in a file.)
    std::fs::create_dir_all(f.dir.join(files::CONTENT)).unwrap();
    std::fs::write(f.dir.join(files::CONTENT).join(&r.content_sha256), b"c").unwrap();
    let mut entries: Vec<Vec<u8>> = offsets(&f.records_path())
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    entries.push(r.encode().unwrap());
    rewrite(&f.records_path(), &entries);
    assert_eq!(f.verify().problems, [Problem::Unlinked { seq: 4 }]);
    drop(a);
    a = f.open(10);
    assert_eq!(a.seq(), 4);
    a.checkpoint(20_000).unwrap();
    let v = f.verify();
    assert_eq!((v.problems.len(), v.covered), (0, 4));
}

#[test]
fn an_archive_whose_chain_outruns_its_records_is_not_appended_to() {
    let f = Fixture::new();
    drop(f.filled(3, 10));
    let mut recs: Vec<Vec<u8>> = offsets(&f.records_path())
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    recs.pop();
    rewrite(&f.records_path(), &recs);
    let err = Archive::open(&f.dir, &f.fp, f.key.clone(), Cadence::default())
        .err()
        .expect("refused");
    assert!(matches!(err, ArchiveError::Inconsistent(_)), "{err}");
}

#[test]
fn a_content_name_must_be_a_digest() {
    let f = Fixture::new();
    let a = f.open(10);
    assert!(matches!(
        a.content("../records.log"),
        Err(ArchiveError::Record(_))
    ));
}

#[test]
fn the_archive_is_open_in_one_process_at_a_time() {
    let f = Fixture::new();
    let a = f.open(10);
    let again = Archive::open(&f.dir, &f.fp, f.key.clone(), Cadence::default());
    assert!(matches!(again, Err(ArchiveError::Busy(_))));
    drop(a);
    assert!(Archive::open(&f.dir, &f.fp, f.key.clone(), Cadence::default()).is_ok());
}

/// Retention by scope (the most specific wins), a hold that vetoes, a
/// purge that leaves signed tombstones: the chain still verifies; a
/// tombstone not signed by the key covers nothing.
#[test]
fn retention_purges_what_it_lets_go_and_the_chain_still_verifies() {
    use retention::{add_hold, holds, purgeable, remove_hold, retention, set_retention};
    let f = Fixture::new();
    let mut a = f.filled(6, 3);
    let day = 86_400_000;
    // Records are at 2 000 ms; u0…u5 are their recipients.
    set_retention(&f.dir, "default", Some(30)).unwrap();
    set_retention(&f.dir, "user:u1", Some(365)).unwrap();
    set_retention(&f.dir, "domain:corp.example", Some(10)).unwrap();
    assert!(set_retention(&f.dir, "planet:mars", Some(1)).is_err());
    let r = retention(&f.dir).unwrap();
    let recs = a.records().unwrap();
    assert_eq!(r.days_for(&recs[1]), Some(365), "the user's own first");
    assert_eq!(r.days_for(&recs[0]), Some(10), "then the domain");
    let hold = add_hold(&f.dir, "u2", "matter 42", 0).unwrap();
    let hs = holds(&f.dir).unwrap();
    assert!(purgeable(&recs, &r, &hs, 2_000 + 9 * day).is_empty());
    let due = purgeable(&recs, &r, &hs, 2_000 + 10 * day);
    assert_eq!(due, [1, 4, 5, 6], "u1 kept a year, u2 held");
    assert_eq!(a.purge(&due, 2_000 + 10 * day).unwrap(), 4);
    let left: Vec<u64> = a.records().unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(left, [2, 3]);
    let v = f.verify();
    assert_eq!(
        (v.problems.len(), v.purged, v.records),
        (0, 4, 2),
        "{:?}",
        v.problems
    );
    // The hold lifted: the held record goes at the next purge.
    assert!(remove_hold(&f.dir, hold.id).unwrap());
    let recs = a.records().unwrap();
    let due = purgeable(
        &recs,
        &retention(&f.dir).unwrap(),
        &holds(&f.dir).unwrap(),
        2_000 + 10 * day,
    );
    assert_eq!(due, [3]);
    a.purge(&due, 2_000 + 10 * day).unwrap();
    assert_eq!(f.verify().problems, []);
    // Appending goes on after a purge.
    a.append(vec![(record("late"), b"x".to_vec())], 10_000)
        .unwrap();
    a.checkpoint(20_000).unwrap();
    assert_eq!(f.verify().problems, []);
    drop(a);

    // A tombstone made with another key does not cover a deletion.
    let other = ArchiveKey::generate();
    let mut recs: Vec<Vec<u8>> = offsets(&f.records_path())
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    let victim = ArchiveRecord::decode(&recs[0]).unwrap();
    let forged = Tombstone::sign(&other, victim.seq, 1, record::hash(&recs[0]));
    let path = f.fp.join(files::TOMBSTONES);
    let mut stones = std::fs::read(&path).unwrap();
    stones.extend_from_slice(&forged.to_bytes());
    std::fs::write(&path, stones).unwrap();
    recs.remove(0);
    rewrite(&f.records_path(), &recs);
    assert_eq!(f.verify().problems, [Problem::Deleted { seq: victim.seq }]);
}

#[test]
fn an_exported_set_verifies_on_its_own_and_names_what_was_changed() {
    use export::{export, verify_export, ExportProblem};
    let f = Fixture::new();
    drop(f.filled(6, 3));
    let out = f.dir.parent().unwrap().join("export");
    let public = f.key.public();
    let got = export(&f.dir, &f.fp, &public, &[2, 5], &out).unwrap();
    assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 5]);
    assert_eq!(verify_export(&out, Some(&public)), Ok(2));
    assert_eq!(verify_export(&out, None), Ok(2), "under the manifest's key");
    let other = ArchiveKey::generate().public();
    assert_eq!(verify_export(&out, Some(&other)), Err(ExportProblem::Key));
    // A byte of record 5 changed.
    let path = out.join("records").join("5.json");
    let mut b = std::fs::read(&path).unwrap();
    let at = b.windows(2).position(|w| w == b"u4").unwrap();
    b[at + 1] = b'9';
    std::fs::write(&path, &b).unwrap();
    assert_eq!(
        verify_export(&out, Some(&public)),
        Err(ExportProblem::Changed(5))
    );
    b[at + 1] = b'4';
    std::fs::write(&path, &b).unwrap();
    assert_eq!(verify_export(&out, Some(&public)), Ok(2));
    // Its content removed (records 2 and 5 have the same: "hello 1").
    let r = ArchiveRecord::decode(&b).unwrap();
    std::fs::remove_file(out.join(files::CONTENT).join(&r.content_sha256)).unwrap();
    assert_eq!(
        verify_export(&out, Some(&public)),
        Err(ExportProblem::Content(2))
    );
    // A record not under a checkpoint yet is not exported.
    let mut a = f.open(100);
    a.append(vec![(record("late"), b"x".to_vec())], 10_000)
        .unwrap();
    let e = export(&f.dir, &f.fp, &public, &[7], &out).unwrap_err();
    assert!(matches!(e, ArchiveError::Inconsistent(_)), "{e}");
}
