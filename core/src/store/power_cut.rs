//! A power cut, simulated on the store as a whole: the journal's last batch
//! torn at every byte, or with any byte flipped. The store then reopens
//! without a panic, with every batch before the last and nothing of the
//! last; a batch that was durable (every one but the torn last) is never
//! lost.

use std::fs;
use std::path::Path;

use super::{Store, Tree, WriteBatch};

const SEGMENT: u64 = 64 * 1024;
const BATCHES: u32 = 5;

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn batch(i: u32) -> WriteBatch {
    let mut b = WriteBatch::new();
    b.insert(
        Tree::Profiles,
        format!("k{i}").into_bytes(),
        vec![i as u8; 20],
    );
    b.insert(
        Tree::Outbox,
        format!("o{i}").into_bytes(),
        b"entry".to_vec(),
    );
    b
}

/// Writes the batches durably with every checkpoint failing before it
/// applies anything (so only the journal has them); the positions where the last batch's frame starts
/// and ends.
fn journal_only(dir: &Path) -> (u64, u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = Store::open_with(dir, SEGMENT).unwrap();
    // The first tree a round applies: nothing reaches sled.
    store.faults().fail_applying(Tree::Profiles, true);
    let mut ends = vec![store.writer().written()];
    for i in 0..BATCHES {
        let pos = store.writer().write_nowait(batch(i));
        ends.push(pos);
    }
    rt.block_on(store.writer().flush()).unwrap();
    let end = ends[ends.len() - 1];
    // The last frame begins where the one before it ended.
    (ends[ends.len() - 2], end)
}

fn segment_of(dir: &Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = fs::read_dir(dir.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seg-"))
        })
        .collect();
    segs.sort();
    segs.pop().expect("a segment")
}

/// Reopens the store in `dir` and checks what it holds: every batch before
/// the last, and the last whole or (`last_kept` false) not at all.
fn check(dir: &Path, last_kept: bool, what: &str) {
    let store = Store::open_with(dir, SEGMENT).unwrap();
    for i in 0..BATCHES - 1 {
        assert_eq!(
            store
                .get(Tree::Profiles, format!("k{i}").as_bytes())
                .unwrap(),
            Some(vec![i as u8; 20]),
            "{what}: batch {i} lost"
        );
    }
    let last = BATCHES - 1;
    let profile = store
        .get(Tree::Profiles, format!("k{last}").as_bytes())
        .unwrap();
    let outbox = store
        .get(Tree::Outbox, format!("o{last}").as_bytes())
        .unwrap();
    assert_eq!(profile.is_some(), last_kept, "{what}: the last batch");
    assert_eq!(
        outbox.is_some(),
        last_kept,
        "{what}: the last batch is not whole"
    );
}

#[test]
fn a_last_batch_torn_at_any_byte_or_flipped_reopens_to_the_batches_before_it() {
    let base = tempfile::tempdir().unwrap();
    let orig = base.path().join("orig");
    let (start, end) = journal_only(&orig);
    assert!(
        end > start && end - start < 200,
        "one small frame: {start}..{end}"
    );
    check(
        &{
            let d = base.path().join("whole");
            copy_dir(&orig, &d);
            d
        },
        true,
        "untouched",
    );
    let seg = segment_of(&orig);
    let name = seg.file_name().unwrap().to_owned();
    for (i, at) in (start..end).enumerate() {
        // Torn: the frame's bytes from `at` on never reached the disk.
        let d = base.path().join(format!("torn{i}"));
        copy_dir(&orig, &d);
        let p = d.join("journal").join(&name);
        let mut bytes = fs::read(&p).unwrap();
        let (from, to) = ((at % SEGMENT) as usize, (end % SEGMENT) as usize);
        bytes[from..to].fill(0);
        fs::write(&p, &bytes).unwrap();
        check(&d, false, &format!("torn at {at}"));
        fs::remove_dir_all(&d).unwrap();
        // Flipped: one byte of the frame is wrong.
        let d = base.path().join(format!("flip{i}"));
        copy_dir(&orig, &d);
        let p = d.join("journal").join(&name);
        let mut bytes = fs::read(&p).unwrap();
        bytes[from] ^= 0x5a;
        fs::write(&p, &bytes).unwrap();
        check(&d, false, &format!("flipped at {at}"));
        fs::remove_dir_all(&d).unwrap();
    }
}
