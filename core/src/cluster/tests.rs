//! The engine against real nats-servers: streams and buckets made once,
//! kept or brought to new replicas, the status and the heartbeat.

use std::time::Duration;

use super::testkit::NatsCluster;
use super::{init, status, Engine, Settings};

const TREES: [&str; 2] = ["profiles", "inbox"];

fn engine(c: &NatsCluster, node: &str, replicas: usize) -> Engine {
    let e = Engine::connect(
        &Settings::new(node, &c.urls(), replicas),
        Duration::from_secs(10),
    )
    .expect("connect");
    let ready = e.clone();
    e.run(async move { init::wait_ready(&ready, Duration::from_secs(20)).await })
        .unwrap()
        .expect("JetStream ready");
    e
}

fn ensure(e: &Engine) -> Vec<init::Ensured> {
    let one = e.clone();
    e.run(async move { init::ensure(&one, &TREES).await })
        .unwrap()
        .expect("ensure")
}

#[test]
fn init_creates_once_keeps_after_and_brings_replicas_up() {
    let c = NatsCluster::start(3);
    let first = ensure(&engine(&c, "a", 1));
    // The journal and archive streams, the nodes and presence buckets, a
    // bucket per tree.
    assert_eq!(first.len(), 2 + 2 + TREES.len(), "{first:?}");
    assert!(first.iter().any(|x| x.stream == "SB_ARCHIVE"));
    assert!(
        first
            .iter()
            .all(|x| x.action == "created" && x.replicas == 1),
        "{first:?}"
    );
    assert!(first.iter().any(|x| x.stream == "KV_sb_inbox"));
    // Again: nothing changes.
    let again = ensure(&engine(&c, "b", 1));
    assert!(again.iter().all(|x| x.action == "kept"), "{again:?}");
    // Three copies now, as production runs.
    let e = engine(&c, "a", 3);
    let up = ensure(&e);
    assert!(
        up.iter().all(|x| x.action == "updated" && x.replicas == 3),
        "{up:?}"
    );
    // The new copies catch up and a leader is elected: asked until the
    // journal's three copies are current (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let st = loop {
        let s = e.clone();
        let st = e
            .run(async move { status::status(&s, 0).await })
            .unwrap()
            .unwrap();
        let settled = st
            .jetstream
            .streams
            .iter()
            .all(|s| s.leader.is_some() && s.current == 3);
        if settled || std::time::Instant::now() > deadline {
            break st;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let journal = st
        .jetstream
        .streams
        .iter()
        .find(|s| s.name == super::names::JOURNAL_STREAM)
        .expect("the journal stream");
    assert_eq!(journal.replicas, 3);
    let names: Vec<&str> = st
        .jetstream
        .servers
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["n1", "n2", "n3"], "{st:?}");
}

#[test]
fn heartbeats_tell_alive_from_gone() {
    let c = NatsCluster::start(1);
    let e = engine(&c, "a", 1);
    ensure(&e);
    let rec = |id: &str, seen: u64, left: bool| status::NodeRecord {
        id: id.into(),
        http: format!("127.0.0.1:80{}", id.len()),
        started_ms: 1,
        last_seen_ms: seen,
        open_txns: 7,
        heartbeat_ms: 1000,
        left,
        mediums: vec!["im".into(), "sms".into()],
    };
    for r in [
        rec("a", 10_000, false),
        rec("bb", 5_000, false),
        rec("ccc", 10_000, true),
    ] {
        let one = e.clone();
        e.run(async move { status::beat(&one, &r).await })
            .unwrap()
            .unwrap();
    }
    let status_at = |now: u64| {
        let s = e.clone();
        e.run(async move { status::status(&s, now).await })
            .unwrap()
            .unwrap()
    };
    let st = status_at(10_500);
    let alive: Vec<(&str, bool)> = st.nodes.iter().map(|n| (n.id.as_str(), n.alive)).collect();
    // bb's last beat is 5.5 s old at a 1 s heartbeat; ccc left.
    assert_eq!(alive, [("a", true), ("bb", false), ("ccc", false)]);
    assert_eq!(st.nodes[0].last_seen, "1970-01-01T00:00:10.000Z");
    assert_eq!(st.nodes[0].open_txns, 7);
    assert_eq!(st.nodes[0].mediums, ["im", "sms"]);
    assert_eq!(st.nodes[0].taken_over, None);
    // A claim another node holds on bb shows; a's own does not.
    let one = e.clone();
    e.run(async move {
        use crate::cluster::takeover::{write, Claim, State};
        let by = |by: &str| Claim {
            by: by.into(),
            state: State::Done,
            at_ms: 1,
        };
        write(&one, "bb", &by("a"), None).await?;
        write(&one, "a", &by("a"), None).await
    })
    .unwrap()
    .unwrap();
    let st = status_at(10_500);
    let by: Vec<Option<&str>> = st
        .nodes
        .iter()
        .map(|n| n.taken_over.as_ref().map(|c| c.by.as_str()))
        .collect();
    assert_eq!(by, [None, Some("a"), None], "claims are not nodes either");
}
