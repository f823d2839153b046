//! Archive search over 20 000 records, side by side in one run: the scan
//! (every record's content read and split into words) and the same query
//! through the search index (`archive::find`, feature `search-index`),
//! which reads only the records holding the query's words. `cargo bench
//! --bench archive`; the numbers are in docs/ARCHIVE.md "Search".

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

use switchboard::archive::{find, Paths};
use switchboard_core::archive::search::{Query, TextQuery};
use switchboard_core::archive::{Archive, ArchiveKey, ArchiveRecord, Cadence};

const RECORDS: usize = 20_000;

fn record(i: usize) -> ArchiveRecord {
    ArchiveRecord {
        seq: 0,
        kind: "delivery".into(),
        archive: "corp.example".into(),
        txn: format!("t{i}"),
        from: format!("u{}", i % 50),
        to: format!("u{}", (i + 1) % 50),
        medium: "im".into(),
        sent_at_ms: 1_000 + i as u64,
        at_ms: 2_000 + i as u64,
        outcome: "delivered".into(),
        subject: None,
        content_type: "text/plain".into(),
        content_sha256: String::new(),
        hops: vec!["gw-im-1".into()],
        domains: vec!["corp.example".into()],
        groups: vec![],
        tags: vec![],
        policy: vec![],
        trail: vec![(1_000, "submitted".into()), (2_000, "delivered:im".into())],
    }
}

fn archive_search(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let paths = Paths {
        dir: tmp.path().join("archive"),
        fingerprints: tmp.path().join("fingerprints"),
        key: tmp.path().join("archive.key"),
    };
    let cadence = Cadence {
        every: 1000,
        interval_ms: 60_000,
    };
    let mut a = Archive::open(
        &paths.dir,
        &paths.fingerprints,
        ArchiveKey::generate(),
        cadence,
    )
    .expect("archive");
    for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(500) {
        let batch = chunk
            .iter()
            .map(|&i| {
                let body = format!(
                    "message {i} about topic{} for the weekly review of project {}",
                    i % 100,
                    i % 7
                );
                (record(i), body.into_bytes())
            })
            .collect();
        a.append(batch, 10_000).expect("append");
    }
    drop(a);
    let query = Query {
        text: TextQuery::parse("topic42 review").expect("query"),
        limit: 1000,
        ..Query::default()
    };
    let mut g = c.benchmark_group("archive");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("search_20000_records_scan", |b| {
        // Every record a candidate: the scan every build has.
        let mut q = query.clone();
        q.candidates = Some((1..=RECORDS as u64).collect());
        b.iter(|| {
            let found = find(&paths, &q).expect("search");
            assert_eq!(found.records.len(), 200);
        })
    });
    g.bench_function("search_20000_records_indexed", |b| {
        b.iter(|| {
            let found = find(&paths, &query).expect("search");
            assert_eq!(found.records.len(), 200);
        })
    });
    g.finish();
}

criterion_group!(benches, archive_search);
criterion_main!(benches);
