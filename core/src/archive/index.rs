//! The archive's search index (feature `search-index`): a tantivy index in
//! `DIR/index/` of each record's words — the same lowercase words the scan
//! matches ([`super::search::record_words`]), kept whole, so a word is in
//! the index exactly when the scan would see it. It only narrows: a search
//! asks it for the records holding every required word of the text, then
//! matches those as the scan does (phrases, `OR`, exclusions, the other
//! filters). The results are the scan's, only sooner: the contents of the
//! records that cannot match are not read.
//!
//! The index is derived data, brought up to date at each search (the
//! records after the last seq it holds, that seq in its commit payload) by
//! whoever searches: the node's API or the CLI beside it. Only one can
//! write it at a time; the other then scans. Purged records may stay in it
//! (their seqs match nothing any more); an index ahead of its records (an
//! archive made again under it) is made again. It is never evidence:
//! `archive verify` does not read it, and deleting `DIR/index/` loses
//! nothing.

use std::collections::HashSet;
use std::path::Path;

use tantivy::collector::DocSetCollector;
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STORED,
};
use tantivy::tokenizer::{TextAnalyzer, WhitespaceTokenizer};
use tantivy::{Index, IndexWriter, TantivyDocument, TantivyError, Term};

use super::contents::ContentReader;
use super::record::ArchiveRecord;
use super::search::{record_words, TextQuery};
use super::ArchiveError;

/// The index's directory, under the archive's.
pub const DIR: &str = "index";
/// The tokenizer: the words are made by the scan's rule already.
const TOKENIZER: &str = "archive_words";
/// The writer's memory (tantivy's least).
const WRITER_HEAP: usize = 15_000_000;

pub(super) struct Fields {
    seq: Field,
    words: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let seq = b.add_u64_field("seq", INDEXED | STORED | FAST);
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(TOKENIZER)
        .set_index_option(IndexRecordOption::Basic);
    let words = b.add_text_field(
        "words",
        TextOptions::default().set_indexing_options(indexing),
    );
    (b.build(), Fields { seq, words })
}

fn err(e: TantivyError) -> ArchiveError {
    ArchiveError::Record(format!("search index: {e}"))
}

/// Opens (or makes) the index of the archive in `dir`.
pub(super) fn open(dir: &Path) -> Result<(Index, Fields), ArchiveError> {
    let path = dir.join(DIR);
    std::fs::create_dir_all(&path).map_err(super::io(&path))?;
    let (schema, fields) = schema();
    let d = MmapDirectory::open(&path).map_err(|e| ArchiveError::Record(format!("{e}")))?;
    let index = Index::open_or_create(d, schema).map_err(err)?;
    index.tokenizers().register(
        TOKENIZER,
        TextAnalyzer::builder(WhitespaceTokenizer::default()).build(),
    );
    Ok((index, fields))
}

/// The last seq the index holds (its last commit's payload).
fn indexed(index: &Index) -> Result<u64, ArchiveError> {
    let metas = index.load_metas().map_err(err)?;
    Ok(metas.payload.and_then(|p| p.parse().ok()).unwrap_or(0))
}

/// Adds `records` after the index's last seq; `false` when another process
/// holds the writer (the index is left as it is).
fn update(
    index: &Index,
    f: &Fields,
    records: &[ArchiveRecord],
    contents: &ContentReader,
) -> Result<bool, ArchiveError> {
    let last = indexed(index)?;
    let newer: Vec<&ArchiveRecord> = records.iter().filter(|r| r.seq > last).collect();
    let Some(top) = newer.last().map(|r| r.seq) else {
        return Ok(true);
    };
    let mut w: IndexWriter = match index.writer_with_num_threads(1, WRITER_HEAP) {
        Ok(w) => w,
        Err(TantivyError::LockFailure(..)) => return Ok(false),
        Err(e) => return Err(err(e)),
    };
    for r in newer {
        let content = contents.read(&r.content_sha256).unwrap_or_default();
        let mut doc = TantivyDocument::default();
        doc.add_u64(f.seq, r.seq);
        doc.add_text(f.words, record_words(r, &content).join(" "));
        w.add_document(doc).map_err(err)?;
    }
    let mut commit = w.prepare_commit().map_err(err)?;
    commit.set_payload(&top.to_string());
    commit.commit().map_err(err)?;
    w.wait_merging_threads().map_err(err)?;
    Ok(true)
}

/// The seqs of `records` (the archive in `dir`, in order) that can match
/// `text`: those holding every required word. `None` when the text
/// requires no word, or the index cannot be brought up to date now (the
/// caller scans every record).
///
/// # Errors
/// [`ArchiveError`]: the index cannot be read or written.
pub fn candidates(
    dir: &Path,
    records: &[ArchiveRecord],
    contents: &ContentReader,
    text: &TextQuery,
) -> Result<Option<HashSet<u64>>, ArchiveError> {
    // (A word longer than tantivy keeps whole is not looked up: no word
    // that long narrows anything anyway.)
    let required: Vec<String> = (text.required_words().into_iter())
        .filter(|w| w.len() <= 1000)
        .collect();
    if required.is_empty() {
        return Ok(None);
    }
    let (mut index, mut f) = open(dir)?;
    let last = records.last().map_or(0, |r| r.seq);
    if indexed(&index)? > last {
        // Ahead of its records: an archive made again where one was.
        drop(index);
        let path = dir.join(DIR);
        std::fs::remove_dir_all(&path).map_err(super::io(&path))?;
        (index, f) = open(dir)?;
    }
    if !update(&index, &f, records, contents)? {
        return Ok(None);
    }
    let reader = index.reader().map_err(err)?;
    let searcher = reader.searcher();
    let terms: Vec<(Occur, Box<dyn Query>)> = (required.iter())
        .map(|w| {
            let t = Term::from_field_text(f.words, w);
            let q: Box<dyn Query> = Box::new(TermQuery::new(t, IndexRecordOption::Basic));
            (Occur::Must, q)
        })
        .collect();
    let docs = searcher
        .search(&BooleanQuery::new(terms), &DocSetCollector)
        .map_err(err)?;
    let mut seqs = HashSet::with_capacity(docs.len());
    for addr in docs {
        let column = (searcher.segment_reader(addr.segment_ord))
            .fast_fields()
            .u64("seq")
            .map_err(err)?;
        seqs.extend(column.first(addr.doc_id));
    }
    Ok(Some(seqs))
}

#[cfg(test)]
mod tests {
    use super::super::search::{search, Query};
    use super::super::{Archive, ArchiveKey, Cadence};
    use super::*;

    fn rec(to: &str, subject: Option<&str>, content_type: &str) -> ArchiveRecord {
        let mut r = super::super::tests::record(to);
        r.txn = format!("t-{to}");
        r.subject = subject.map(str::to_string);
        r.content_type = content_type.into();
        r
    }

    const TEXTS: &[&str] = &[
        "the quarterly budget draft",
        "the budget is final now",
        "final budget, thanks",
        "Budget: FINAL (for dave)",
        "Grüße aus Köln — das Büdget",
        "e-mail the budget-final.pdf",
        "nothing to see",
        "",
    ];

    /// The seqs `q` finds in `dir`, scanning or through the index.
    fn found(dir: &Path, q: &str, indexed: bool) -> Vec<u64> {
        let records = super::super::read_records(dir).unwrap();
        let contents = ContentReader::open(dir).unwrap();
        let mut query = Query {
            text: TextQuery::parse(q).unwrap(),
            limit: 1000,
            ..Query::default()
        };
        if indexed {
            query.candidates = candidates(dir, &records, &contents, &query.text).unwrap();
        }
        let (hits, _) = search(records, &query, |h| contents.read(h).unwrap_or_default());
        hits.iter().map(|(r, _)| r.seq).collect()
    }

    #[test]
    fn the_index_finds_exactly_what_the_scan_finds_and_keeps_up() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, fp) = (tmp.path().join("a"), tmp.path().join("f"));
        let cadence = Cadence {
            every: 100,
            interval_ms: 60_000,
        };
        let mut a = Archive::open(&dir, &fp, ArchiveKey::generate(), cadence).unwrap();
        let mut batch = Vec::new();
        for (i, t) in TEXTS.iter().enumerate() {
            batch.push((
                rec(&format!("u{i}"), None, "text/plain"),
                t.as_bytes().to_vec(),
            ));
        }
        // Words of a subject count; a binary content's do not.
        batch.push((
            rec("s", Some("Budget final"), "image/png"),
            b"budget".to_vec(),
        ));
        batch.push((rec("b", None, "image/png"), b"budget final".to_vec()));
        let long = "x".repeat(2000);
        batch.push((
            rec("l", None, "text/plain"),
            format!("budget {long}").into_bytes(),
        ));
        a.append(batch, 10_000).unwrap();
        for q in [
            "budget",
            "BUDGET final",
            "\"final budget\"",
            "budget -draft",
            "budget NOT final",
            "draft OR thanks",
            "büdget köln",
            "grüße",
            "mail pdf",
            &format!("budget {long}"),
            "absent",
            "",
        ] {
            let scanned = found(&dir, q, false);
            assert_eq!(found(&dir, q, true), scanned, "{q:?}");
        }
        assert_eq!(found(&dir, "budget final", true), [2, 3, 4, 6, 9]);
        // The index narrows: "draft" is in one record's words only.
        let records = super::super::read_records(&dir).unwrap();
        let contents = ContentReader::open(&dir).unwrap();
        let draft = TextQuery::parse("draft").unwrap();
        let c = candidates(&dir, &records, &contents, &draft).unwrap();
        assert_eq!(c, Some(HashSet::from([1])));
        // No required word: nothing to narrow by.
        let any = TextQuery::parse("draft OR thanks").unwrap();
        assert_eq!(candidates(&dir, &records, &contents, &any).unwrap(), None);

        // Records appended later are indexed at the next search.
        a.append(
            vec![(rec("z", None, "text/plain"), b"late draft".to_vec())],
            20_000,
        )
        .unwrap();
        assert_eq!(found(&dir, "draft", true), [1, 12]);
        let (index, _) = open(&dir).unwrap();
        assert_eq!(indexed(&index).unwrap(), 12);

        // Another process writing the index: this search scans instead.
        let writer: IndexWriter = index.writer_with_num_threads(1, WRITER_HEAP).unwrap();
        a.append(
            vec![(rec("y", None, "text/plain"), b"later draft".to_vec())],
            30_000,
        )
        .unwrap();
        let records = super::super::read_records(&dir).unwrap();
        let contents = ContentReader::open(&dir).unwrap();
        assert_eq!(candidates(&dir, &records, &contents, &draft).unwrap(), None);
        assert_eq!(found(&dir, "draft", false), [1, 12, 13]);
        drop(writer);
        assert_eq!(found(&dir, "draft", true), [1, 12, 13]);
    }
}
