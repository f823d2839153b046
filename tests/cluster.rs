//! Cluster mode, end to end with real nats-servers (three on loopback per
//! test, from core's testkit) and real nodes (`switchboard serve` with
//! `cluster.enabled`): `switchboard cluster init` and `status`, users and
//! messages shared by two nodes, `GET /v1/admin/cluster`, and refusing
//! without a JetStream quorum.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Api, ProcNode};
use serde_json::{json, Value};
use switchboard_core::cluster::testkit::NatsCluster;

/// A clustered node `id` with its cache in `dir` (heartbeat 1 s, ack wait
/// 5 s).
fn node(c: &NatsCluster, id: &str, dir: &Path) -> ProcNode {
    node_with(c, id, dir, &[])
}

/// [`node`] with `extra` settings.
fn node_with(c: &NatsCluster, id: &str, dir: &Path, extra: &[(&str, &str)]) -> ProcNode {
    let urls: Vec<String> = c.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let urls = format!("[{}]", urls.join(", "));
    let mut env = vec![
        ("SWITCHBOARD_CLUSTER__ENABLED", "true"),
        ("SWITCHBOARD_CLUSTER__NODE_ID", id),
        ("SWITCHBOARD_CLUSTER__NATS_URLS", &urls),
        ("SWITCHBOARD_CLUSTER__HEARTBEAT_S", "1"),
        ("SWITCHBOARD_CLUSTER__ACK_WAIT_S", "5"),
    ];
    env.extend_from_slice(extra);
    ProcNode::spawn_with(dir, &env)
}

/// The admin API at `url`, with the token the node that initialised the
/// cluster wrote into `dir`.
fn admin_of(dir: &Path, url: &str) -> Api {
    let token = std::fs::read_to_string(dir.join("admin.token")).unwrap();
    Api::new(url, token.trim())
}

/// A clustered node `id` bound to `smsc`.
fn sms_node(c: &NatsCluster, id: &str, dir: &Path, smsc: &common::Smsc) -> ProcNode {
    let sms = common::sms_env(smsc);
    let sms: Vec<(&str, &str)> = sms.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    node_with(c, id, dir, &sms)
}

/// Waits until `admin`'s node counts each of `gateways` as up.
fn wait_gateways_up(admin: &Api, gateways: &[&str]) {
    within(15, &format!("{gateways:?} up"), || {
        let (_, v) = admin.get("/metrics");
        let text = v.as_str()?;
        gateways
            .iter()
            .all(|g| {
                let up = format!("switchboard_gateway_up{{member=\"{g}\"}} 1");
                text.lines().any(|l| l == up)
            })
            .then_some(())
    });
}

/// Polls `f` until it gives `Some` (bounded: `secs`).
fn within<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Runs `switchboard -c CONFIG cluster ARGS`: (exit ok, stdout, stderr).
fn cluster(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(common::bin())
        .arg("-c")
        .arg(config)
        .arg("cluster")
        .args(args)
        .output()
        .expect("run switchboard");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config(dir: &std::path::Path, urls: &[String]) -> std::path::PathBuf {
    let quoted: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    let p = dir.join("switchboard.toml");
    std::fs::write(
        &p,
        format!(
            "[cluster]\nnode_id = \"a\"\nnats_urls = [{}]\nreplicas = 3\n",
            quoted.join(", ")
        ),
    )
    .unwrap();
    p
}

#[test]
fn cluster_init_makes_the_streams_once_and_status_shows_them() {
    let c = NatsCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &c.urls()[1..2]);
    let (ok, out, err) = cluster(&cfg, &["init"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("created  SB_JOURNAL (3 replicas)"), "{out}");
    assert!(out.contains("KV_sb_profiles"), "{out}");
    // Again: nothing to do.
    let (ok, out, err) = cluster(&cfg, &["init"]);
    assert!(ok, "{out}{err}");
    assert!(
        !out.lines().any(|l| l.starts_with("created")) && out.contains("kept     SB_JOURNAL"),
        "{out}"
    );
    assert!(out.contains(": 0 of "), "{out}");
    let (ok, out, err) = cluster(&cfg, &["status"]);
    assert!(ok, "{out}{err}");
    let st: Value = serde_json::from_str(&out).expect("status is JSON");
    let journal = st["jetstream"]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "SB_JOURNAL")
        .expect("the journal stream")
        .clone();
    assert_eq!(journal["replicas"], 3);
    assert_eq!(st["nodes"], Value::Array(vec![]), "no node has run yet");
}

#[test]
fn cluster_init_without_a_server_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("nats://127.0.0.1:{}", common::free_port());
    let cfg = config(dir.path(), std::slice::from_ref(&url));
    let started = std::time::Instant::now();
    let (ok, out, err) = cluster(&cfg, &["init"]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("cannot reach NATS at") && err.contains(&url),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[test]
fn two_nodes_share_users_messages_and_the_status() {
    let c = NatsCluster::start(3);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(&c, "a", da.path());
    // The first node made the cluster's keys; the second finds them.
    let b = node(&c, "b", db.path());
    assert!(
        !db.path().join("admin.token").exists(),
        "the admin token is the cluster's, made once"
    );
    let token = std::fs::read_to_string(da.path().join("admin.token")).unwrap();
    let admin_a = Api::new(&a.url, token.trim());
    let admin_b = Api::new(&b.url, token.trim());
    // Users added through A are known to B (token and profile).
    let added = Instant::now();
    let alice = admin_a.add_user("alice", &[("im", "alice")]);
    let bob = admin_a.add_user("bob", &[("im", "bob")]);
    let alice_b = Api::new(&b.url, &alice.token);
    within(10, "B knows bob's token", || {
        (Api::new(&b.url, &bob.token).get("/v1/inbox").0 == 200).then_some(())
    });
    eprintln!(
        "a user added on A was usable on B after {:?}",
        added.elapsed()
    );
    // alice sends through B; bob reads through A.
    let txn = alice_b.send("bob", "hello across nodes");
    let got = within(10, "bob's inbox on A has it", || {
        bob.inbox().into_iter().find(|m| m["txn"] == txn.as_str())
    });
    assert_eq!(got["body"], "hello across nodes");
    // The same status on both nodes.
    let on_b = alice_b.expect_status(&txn, "delivered");
    let on_a = within(10, "A has the outcome", || {
        let (code, v) = admin_a.get(&format!("/v1/messages/{txn}"));
        (code == 200 && v["status"] == "delivered").then_some(v)
    });
    assert_eq!(on_a["attempts"], on_b["attempts"]);
    // A profile change on A is used by B's next decision: bob is now
    // reachable by fax only, and B's next message for him goes there.
    let (code, v) = admin_a.put(
        "/v1/admin/users/bob",
        &json!({"id": "bob", "mechanisms": [{"medium": "fax", "address": "+4930123"}]}),
    );
    assert_eq!(code, 200, "{v}");
    within(10, "B routes by the new profile", || {
        let (code, v) = admin_b.get("/v1/admin/users/bob");
        (code == 200 && v["mechanisms"][0]["medium"] == "fax").then_some(())
    });
    // The cluster's view, from either node.
    let st = within(10, "both nodes alive in the status", || {
        let (code, v) = admin_b.get("/v1/admin/cluster");
        assert_eq!(code, 200, "{v}");
        let alive: Vec<&str> = v["nodes"]
            .as_array()?
            .iter()
            .filter(|n| n["alive"] == true)
            .filter_map(|n| n["id"].as_str())
            .collect();
        (alive == ["a", "b"]).then_some(v.clone())
    });
    assert!(st["nodes"][0]["http"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let journal = st["jetstream"]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "SB_JOURNAL")
        .unwrap()
        .clone();
    assert_eq!(journal["replicas"], 3);
    // B leaves in order: A sees it gone.
    assert!(b.terminate().success());
    within(10, "A sees B gone", || {
        let (_, v) = admin_a.get("/v1/admin/cluster");
        let b = v["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["id"] == "b")?
            .clone();
        (b["alive"] == false).then_some(())
    });
    // A single node has no cluster to show.
    drop(a);
}

#[test]
fn without_a_quorum_nothing_is_acknowledged_and_traffic_resumes_after() {
    let mut c = NatsCluster::start(3);
    let da = tempfile::tempdir().unwrap();
    let a = node(&c, "a", da.path());
    let admin = admin_of(da.path(), &a.url);
    let alice = admin.add_user("alice", &[("im", "alice")]);
    let bob = admin.add_user("bob", &[("im", "bob")]);
    let first = alice.send("bob", "before");
    alice.expect_status(&first, "delivered");
    c.kill(1);
    c.kill(2);
    // The first message after the loss waits for an acknowledgement that
    // does not come; from then on the node refuses at once. Each try has
    // its own key, retried later with the same key.
    let mut refused = Vec::new();
    let answer = within(60, "a cluster_unavailable refusal", || {
        let key = format!("k{}", refused.len());
        let (code, _, v) = alice.post_keyed(&key, &json!({"to": "bob", "body": "during"}));
        refused.push((key, code, v.clone()));
        (code == 503 && v["error"]["code"] == "cluster_unavailable").then_some(v)
    });
    assert!(
        refused.iter().all(|(_, code, _)| *code == 503),
        "acknowledged without a quorum: {refused:?}"
    );
    eprintln!("refused: {answer}");
    let (code, ready) = admin.get("/readyz");
    assert_eq!(code, 503, "{ready}");
    assert!(
        ready["error"]["message"]
            .as_str()
            .unwrap()
            .contains("JetStream quorum"),
        "{ready}"
    );
    // Back: the retries with the same keys are taken, each once.
    c.restart(1);
    for (key, _, _) in &refused {
        within(60, "the retry is taken", || {
            let (code, _, _) = alice.post_keyed(key, &json!({"to": "bob", "body": "during"}));
            matches!(code, 200 | 202).then_some(())
        });
    }
    let inbox = within(30, "bob has every retried message", || {
        let inbox = bob.inbox();
        let during = inbox.iter().filter(|m| m["body"] == "during").count();
        (during >= refused.len()).then_some(inbox)
    });
    let during = inbox.iter().filter(|m| m["body"] == "during").count();
    assert_eq!(during, refused.len(), "nothing twice: {inbox:?}");
}

#[test]
fn two_nodes_starting_at_once_initialise_the_cluster_once() {
    let c = NatsCluster::start(3);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (nodes, made): (Vec<ProcNode>, Vec<bool>) = std::thread::scope(|s| {
        let a = s.spawn(|| node(&c, "a", da.path()));
        let b = s.spawn(|| node(&c, "b", db.path()));
        let nodes = vec![a.join().unwrap(), b.join().unwrap()];
        let made = [&da, &db]
            .iter()
            .map(|d| d.path().join("admin.token").exists())
            .collect();
        (nodes, made)
    });
    assert_eq!(
        made.iter().filter(|m| **m).count(),
        1,
        "one admin token: {made:?}"
    );
    let dir = if made[0] { &da } else { &db };
    let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    for n in &nodes {
        let (code, v) = Api::new(&n.url, token.trim()).get("/v1/admin/users");
        assert_eq!(code, 200, "{}: {v}", n.url);
    }
    // Both nodes' built-in gateways logged in with the same keys.
    for n in &nodes {
        let (code, v) = Api::new(&n.url, token.trim()).get("/readyz");
        assert_eq!(code, 200, "{}: {v}", n.url);
    }
}

/// `scripts/cluster-up`: three servers and three nodes; send through one
/// node, read through another, stop everything with SIGTERM (Ctrl-C's
/// twin for a script not in a terminal).
#[test]
fn cluster_up_runs_a_trial_cluster_and_stops_it() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    // Every port shifted by 3000–10100: all land in 7222–18320, below both
    // the ephemeral range and the 20000–32000 the other tests' servers
    // draw from.
    let offset = 3_000 + (common::free_port() % 8) as u32 * 1000 + (std::process::id() % 97);
    use std::os::unix::process::CommandExt as _;
    let child = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster-up"))
        .env("DIR", dir.path())
        .env("PORT_OFFSET", offset.to_string())
        .env("BIN", common::bin())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        // Its own process group: a failing assertion below stops the
        // script's servers and nodes with it (see `Group`).
        .process_group(0)
        .spawn()
        .expect("run scripts/cluster-up");
    let mut child = Group(child);
    let mut lines = std::io::BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in lines.by_ref() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let l = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("cluster-up did not get ready: {seen:?}"));
        let ready = l.contains("cluster-up: ready");
        seen.push(l);
        if ready {
            break;
        }
    }
    let url = |k: u32| format!("http://127.0.0.1:{}", 8080 + k + offset);
    let token = seen
        .iter()
        .find_map(|l| l.strip_prefix("cluster-up: admin token "))
        .expect("the admin token")
        .to_string();
    let admin = Api::new(&url(0), &token);
    let alice = admin.add_user("alice", &[("im", "alice")]);
    let bob = admin.add_user("bob", &[("im", "bob")]);
    let alice_b = Api::new(&url(1), &alice.token);
    let bob_c = Api::new(&url(2), &bob.token);
    // Each node learns of users through its own watcher: b must know
    // both ends before it routes, c must know bob before he reads.
    for (who, api) in [
        ("b knows alice", &alice_b),
        ("b knows bob", &Api::new(&url(1), &bob.token)),
        ("c knows bob", &bob_c),
    ] {
        within(10, who, || (api.get("/v1/inbox").0 == 200).then_some(()));
    }
    let txn = alice_b.send("bob", "through b, read on c");
    within(10, "bob reads it on node c", || {
        bob_c.inbox().into_iter().find(|m| m["txn"] == txn.as_str())
    });
    let status = common::terminate(&mut child.0);
    assert!(status.success(), "cluster-up exited {status}");
    let stopped = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    let rest: Vec<String> = std::iter::once(stopped).chain(rx.try_iter()).collect();
    assert!(
        rest.iter().any(|l| l.contains("cluster-up: stopped")),
        "{rest:?}"
    );
    for k in 0..3 {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", (8080 + k + offset) as u16)).is_ok(),
            "node {k}'s port is free again"
        );
    }
}

/// A child in its own process group, and everything it started: dropped
/// (a test that fails half-way), the whole group is killed, so no server
/// outlives the test holding its output pipe open.
struct Group(std::process::Child);

impl Drop for Group {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        for sig in ["-TERM", "-KILL"] {
            let _ = Command::new("kill").args([sig, "--", &group]).status();
            if sig == "-TERM" {
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline && !matches!(self.0.try_wait(), Ok(Some(_))) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        let _ = self.0.wait();
    }
}

/// bob's WebSocket on B: seen online from A, pushed there what alice sends
/// on A; B killed, bob is offline on A within three heartbeats.
#[test]
fn presence_and_pushes_cross_nodes() {
    let c = NatsCluster::start(3);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(&c, "a", da.path());
    let b = node(&c, "b", db.path());
    let admin = admin_of(da.path(), &a.url);
    let alice = admin.add_user_with("alice", &[("im", "alice")], json!({"contacts": ["bob"]}));
    let bob = admin.add_user("bob", &[("im", "bob")]);
    within(10, "B knows bob", || {
        (Api::new(&b.url, &bob.token).get("/v1/inbox").0 == 200).then_some(())
    });
    let presence_on_a = || {
        let (code, v) = alice.get("/v1/presence/bob");
        assert_eq!(code, 200, "{v}");
        v["state"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(presence_on_a(), "offline");
    let mut ws = common::Ws::connect(&b.url, Some(&bob.token));
    within(10, "A sees bob online", || {
        (presence_on_a() == "online").then_some(())
    });
    // alice on A → bob's session on B.
    let mut alice_ws = common::Ws::connect(&a.url, Some(&alice.token));
    let txn = alice.send("bob", "pushed on B");
    let pushed = ws.expect("message");
    assert_eq!(pushed["txn"], txn.as_str());
    assert_eq!(pushed["body"], "pushed on B");
    let delivered = alice_ws.expect("receipt");
    assert_eq!(
        (delivered["txn"].as_str(), delivered["status"].as_str()),
        (Some(txn.as_str()), Some("delivered"))
    );
    // bob reads it on B; alice's session on A hears of it.
    let (code, v) =
        Api::new(&b.url, &bob.token).post(&format!("/v1/messages/{txn}/read"), &json!({}));
    assert!(matches!(code, 200 | 204), "{code} {v}");
    let read = alice_ws.expect("receipt");
    assert_eq!(
        (read["txn"].as_str(), read["status"].as_str()),
        (Some(txn.as_str()), Some("read")),
        "{read}"
    );
    let on_a = within(10, "read on A too", || {
        let (_, v) = alice.get(&format!("/v1/messages/{txn}"));
        (v["status"] == "read").then_some(v)
    });
    assert_eq!(on_a["status"], "read");
    // B dies: its heartbeats stop, bob goes offline on A.
    let killed = Instant::now();
    b.kill9();
    within(10, "bob offline on A", || {
        (presence_on_a() == "offline").then_some(())
    });
    eprintln!(
        "bob was offline on A {:?} after B was killed (heartbeat 1 s)",
        killed.elapsed()
    );
    drop(a);
}

/// A message a node acknowledged: (txn, recipient, body).
type Sent = (String, &'static str, String);

/// What clients had acknowledged so far.
type Acked = Arc<Mutex<Vec<Sent>>>;

/// One client per entry of `to`, each sending through `api` to its
/// recipient, one message after the other, until `stop` (or the node is
/// gone; 5 000 messages and two minutes at most); what is acknowledged goes
/// to `acked`. A refusal (503 while JetStream elects a leader) is tried
/// again after 20 ms, as a client would.
fn load(
    api: &Api,
    to: &[&'static str],
    stop: &Arc<AtomicBool>,
    acked: &Acked,
) -> Vec<std::thread::JoinHandle<()>> {
    to.iter()
        .enumerate()
        .map(|(i, to)| {
            let (api, acked, stop, to) = (api.clone(), acked.clone(), stop.clone(), *to);
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(120);
                let (mut n, mut tries) = (0, 0);
                while n < 5_000 && !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    // Each try its own text (a refused one may yet be sent).
                    tries += 1;
                    let body = format!("load {i}.{tries}");
                    match api.try_post("/v1/messages", &json!({"to": to, "body": body})) {
                        Some((202, v)) => {
                            let txn = v["txn"].as_str().unwrap().to_string();
                            acked.lock().unwrap().push((txn, to, body));
                            n += 1;
                        }
                        Some(_) => std::thread::sleep(Duration::from_millis(20)),
                        // The node is gone.
                        None => return,
                    }
                }
            })
        })
        .collect()
}

/// The count of each txn in `api`'s user's inbox.
fn inbox_counts(api: &Api) -> std::collections::HashMap<String, usize> {
    let mut inbox = std::collections::HashMap::new();
    for m in api.inbox() {
        *inbox.entry(m["txn"].as_str().unwrap().into()).or_default() += 1;
    }
    inbox
}

/// `kill -9` of one NATS server of three while alice sends to bob through
/// node A: sending goes on (the client moves to another server, the
/// streams elect new leaders), and every acknowledged message is in bob's
/// inbox exactly once.
#[test]
fn kill_9_of_one_nats_server_under_load_loses_nothing_and_sending_goes_on() {
    let mut c = NatsCluster::start(3);
    let da = tempfile::tempdir().unwrap();
    let a = node(&c, "a", da.path());
    let admin = admin_of(da.path(), &a.url);
    let alice = admin.add_user("alice", &[("im", "alice")]);
    let bob = admin.add_user("bob", &[("im", "bob")]);
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let clients = load(&alice, &["bob", "bob", "bob"], &stop, &acked);
    within(30, "100 acknowledged", || {
        (acked.lock().unwrap().len() >= 100).then_some(())
    });
    let first_100 = started.elapsed();
    // The server node A's client was given first is as likely as any.
    c.kill(0);
    let at_kill = acked.lock().unwrap().len();
    let killed = Instant::now();
    within(60, "200 more acknowledged after the kill", || {
        (acked.lock().unwrap().len() >= at_kill + 200).then_some(())
    });
    let resumed = killed.elapsed();
    stop.store(true, Ordering::SeqCst);
    for t in clients {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let inbox = within(30, "every acknowledged message in bob's inbox", || {
        let inbox = inbox_counts(&bob);
        acked
            .iter()
            .all(|m| inbox.contains_key(&m.0))
            .then_some(inbox)
    });
    assert!(inbox.values().all(|n| *n == 1), "nothing twice: {inbox:?}");
    eprintln!(
        "{} acknowledged, {at_kill} before one of three NATS servers was killed (the first 100 in {first_100:?}); 200 more {resumed:?} after it",
        acked.len()
    );
}

/// A NATS client of `c`'s own, as another node would be.
fn probe(c: &NatsCluster) -> switchboard_core::cluster::Engine {
    switchboard_core::cluster::Engine::connect(
        &switchboard_core::cluster::Settings::new("probe", &c.urls(), 3),
        Duration::from_secs(10),
    )
    .unwrap()
}

/// Sends `body` to `subject`; the answer's JSON (after its 32-byte seal,
/// which only the cluster's nodes can check).
fn ask_bytes(c: &NatsCluster, subject: &'static str, body: Vec<u8>) -> Value {
    let e = probe(c);
    let p = e.clone();
    let answer = e
        .run(async move { p.client().request(subject, body.into()).await })
        .unwrap()
        .unwrap();
    serde_json::from_slice(&answer.payload[32..]).unwrap()
}

/// Publishes `body` on `subject` (no answer), flushed.
fn tell(c: &NatsCluster, subject: &'static str, body: &'static str) {
    let e = probe(c);
    let p = e.clone();
    e.run(async move {
        p.client().publish(subject, body.into()).await.unwrap();
        p.client().flush().await.unwrap();
    })
    .unwrap();
}

/// B's count of takeovers (`/metrics`).
fn takeovers(api: &Api) -> u64 {
    let (_, v) = api.get("/metrics");
    v.as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("switchboard_cluster_takeovers_total "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `kill -9` of node A while alice sends through it as fast as four
/// clients can, to bob (IM) and to dora (SMS, both nodes bound to one
/// SMSC, which holds its delivery receipts: every SMS A acknowledged is
/// still open when A dies). B takes A's work over once A has been silent
/// for `ack_wait_s` (5 s here); the SMSC's receipts, sent now to B's bind,
/// finish A's SMS; every message A acknowledged is delivered exactly once
/// (bob's inbox, the SMSC's submits) and final on B.
#[test]
fn kill_9_of_a_node_under_load_loses_and_duplicates_nothing() {
    let c = NatsCluster::start(3);
    let smsc = common::Smsc::start();
    smsc.mode(json!({"receipt": "hold"}));
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = sms_node(&c, "a", da.path(), &smsc);
    let b = sms_node(&c, "b", db.path(), &smsc);
    smsc.wait("both nodes bound", |s| s["sessions"].as_u64() >= Some(2));
    let admin = admin_of(da.path(), &a.url);
    let alice = admin.add_user("alice", &[("im", "alice")]);
    let bob = admin.add_user("bob", &[("im", "bob")]);
    admin.add_user("dora", &[("sms", "+4915100000001")]);
    let (alice_b, bob_b) = (Api::new(&b.url, &alice.token), Api::new(&b.url, &bob.token));
    within(10, "B knows bob", || {
        (bob_b.get("/v1/inbox").0 == 200).then_some(())
    });
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let load = load(&alice, &["bob", "dora", "bob", "dora"], &stop, &acked);
    within(30, "A acknowledged 200 under load", || {
        (acked.lock().unwrap().len() >= 200).then_some(())
    });
    let killed = Instant::now();
    a.kill9();
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let to_dora = acked.iter().filter(|m| m.1 == "dora").count();
    within(30, "B took A's work over", || {
        (takeovers(&alice_b) == 1).then_some(())
    });
    let taken_over = killed.elapsed();
    let (code, st) = Api::new(&b.url, &admin.token).get("/v1/admin/cluster");
    assert_eq!(code, 200, "{st}");
    let node_a = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "a")
        .unwrap();
    assert_eq!(node_a["taken_over"]["by"], "b", "{st}");
    let node_b = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "b")
        .unwrap();
    assert_eq!(node_b["mediums"], json!(["im", "sms"]), "{st}");
    let finished =
        |m: &Sent| alice_b.get(&format!("/v1/messages/{}", m.0)).1["status"] == "delivered";
    within(
        30,
        "every acknowledged message delivered, as B tells",
        || {
            // Receipts held since A sent them go to the bind there is now.
            smsc.release();
            acked.iter().all(finished).then_some(())
        },
    );
    let done = killed.elapsed();
    let inbox = inbox_counts(&bob_b);
    let mut texts = std::collections::HashMap::<String, usize>::new();
    for s in smsc.submits_to("4915100000001") {
        *texts.entry(s["text"].as_str().unwrap().into()).or_default() += 1;
    }
    // SMPP has no idempotency key: an SMS whose submit A had sent when it
    // died, but whose answer it had not recorded, is submitted again by B
    // (at least once at the SMSC; the first copy's receipt is logged as
    // unknown). Only those few: A's two SMS clients wait for each answer,
    // so each has one or two in flight at the SMSC.
    let mut resent = Vec::new();
    for (txn, to, body) in &acked {
        let n = match *to {
            "bob" => inbox.get(txn).copied(),
            _ => texts.get(body).copied(),
        };
        match (*to, n) {
            (_, Some(1)) => {}
            ("dora", Some(2)) => resent.push(body.clone()),
            _ => panic!("{txn} to {to} ({body}) delivered {n:?} times"),
        }
    }
    assert!(resent.len() <= 4, "SMS submitted twice: {resent:?}");
    assert!(inbox.values().all(|n| *n == 1), "an IM delivered twice");
    // A comes back: its work is B's now, its cache starts empty, and it
    // sends nothing again.
    let submits = smsc.submits_to("4915100000001").len();
    let a = sms_node(&c, "a", da.path(), &smsc);
    let alice_a = Api::new(&a.url, &alice.token);
    within(30, "A tells every outcome", || {
        acked
            .iter()
            .all(|m| alice_a.get(&format!("/v1/messages/{}", m.0)).1["status"] == "delivered")
            .then_some(())
    });
    assert_eq!(inbox_counts(&bob_b), inbox, "no IM again");
    assert_eq!(
        smsc.submits_to("4915100000001").len(),
        submits,
        "no SMS again"
    );
    eprintln!(
        "A acknowledged {} messages ({to_dora} SMS, all open when it died); B took over {taken_over:?} after the kill and all were final {done:?} after it (ack_wait 5 s); SMS submitted again: {resent:?}",
        acked.len()
    );
}

/// A node paused (`SIGSTOP`) for longer than `ack_wait_s` is taken over
/// as if dead; resumed, it finds its claim taken and stops (exit status
/// 75) without sending anything again, and started again it serves with
/// its cache emptied.
#[test]
fn a_paused_node_taken_over_stops_when_it_resumes() {
    let c = NatsCluster::start(3);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = node(&c, "a", da.path());
    let b = node(&c, "b", db.path());
    let admin = admin_of(da.path(), &a.url);
    let alice = admin.add_user("alice", &[("im", "alice")]);
    let bob = admin.add_user("bob", &[("im", "bob")]);
    let bob_b = Api::new(&b.url, &bob.token);
    let txns: Vec<String> = (0..20)
        .map(|i| alice.send("bob", &format!("m{i}")))
        .collect();
    common::signal(&a.child, "-STOP");
    within(30, "B took the paused A over", || {
        (takeovers(&bob_b) == 1).then_some(())
    });
    common::signal(&a.child, "-CONT");
    let status = within(30, "A stopped once resumed", || a.child.try_wait().unwrap());
    assert_eq!(status.code(), Some(75), "{status:?}");
    let inbox = within(30, "every message in bob's inbox", || {
        let inbox = inbox_counts(&bob_b);
        txns.iter().all(|t| inbox.contains_key(t)).then_some(inbox)
    });
    assert!(inbox.values().all(|n| *n == 1), "nothing twice: {inbox:?}");
    let a = node(&c, "a", da.path());
    let alice_a = Api::new(&a.url, &alice.token);
    for t in &txns {
        alice_a.expect_status(t, "delivered");
    }
    assert_eq!(inbox_counts(&bob_b), inbox, "nothing again");
}

/// Node A has no SMSC bind, node C has: alice's message on A to dora (SMS
/// only) is submitted through C's bind, and the SMSC's receipt, arriving
/// at C, is A's delivery report; status and attempts the same on both.
#[test]
fn an_sms_bind_on_one_node_serves_messages_submitted_on_another() {
    let c = NatsCluster::start(3);
    let smsc = common::Smsc::start();
    let (da, dc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(&c, "a", da.path());
    let node_c = sms_node(&c, "c", dc.path(), &smsc);
    smsc.wait_bound();
    let admin = admin_of(da.path(), &a.url);
    let alice = admin.add_user("alice", &[("im", "alice")]);
    admin.add_user("dora", &[("sms", "+4915100000001")]);
    wait_gateways_up(&admin, &["gw-sms-1"]);
    // What A sends C, as anyone on the NATS servers can see it.
    let captured: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let watch = probe(&c);
    let (w, seen) = (watch.clone(), captured.clone());
    watch
        .run(async move {
            use futures_util::StreamExt;
            let mut sub = w.client().subscribe("sb.sms.c.submit").await.unwrap();
            w.client().flush().await.unwrap();
            tokio::spawn(async move {
                if let Some(m) = sub.next().await {
                    *seen.lock().unwrap() = Some(m.payload.to_vec());
                }
            });
        })
        .unwrap();
    let txn = alice.send("dora", "through C");
    let on_a = alice.expect_status(&txn, "delivered");
    assert_eq!(on_a["attempts"][0]["mechanism"], "sms", "{on_a}");
    assert_eq!(on_a["attempts"][0]["gateway"], "gw-sms-1", "{on_a}");
    assert_eq!(on_a["attempts"][0]["reason"], "by node c", "{on_a}");
    let subs = smsc.submits_to("4915100000001");
    assert_eq!(subs.len(), 1, "{subs:?}");
    assert_eq!(subs[0]["text"], "through C");
    let alice_c = Api::new(&node_c.url, &alice.token);
    let on_c = within(10, "C tells the same", || {
        let (_, v) = alice_c.get(&format!("/v1/messages/{txn}"));
        (v["status"] == "delivered").then_some(v)
    });
    assert_eq!(on_c["attempts"], on_a["attempts"]);
    // A's status says where SMS is served: C, not A.
    let (_, st) = admin.get("/v1/admin/cluster");
    let mediums = |id: &str| {
        st["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .unwrap()["mediums"]
            .clone()
    };
    assert_eq!(
        (mediums("a"), mediums("c")),
        (json!(["im"]), json!(["im", "sms"])),
        "{st}"
    );
    // Bad input on the cluster's subjects: a forged submit (not sealed
    // with the cluster's key), a tampered one, garbage — refused with a
    // reason, nothing submitted, nothing reported.
    let sealed = captured.lock().unwrap().clone().expect("A's submit seen");
    for (body, why) in [
        (b"{\"to\": 1}".to_vec(), "too short"),
        (
            [vec![0u8; 32], b"{\"to\": 1}".to_vec()].concat(),
            "does not match",
        ),
        (
            {
                let mut t = sealed.clone();
                let last = t.len() - 2;
                t[last] ^= 1;
                t
            },
            "does not match",
        ),
    ] {
        let answer = ask_bytes(&c, "sb.sms.c.submit", body);
        assert!(answer["error"].as_str().unwrap().contains(why), "{answer}");
    }
    tell(&c, "sb.sms.a.report", "not sealed");
    // A's very submit again (a replay): taken, not sent twice.
    let answer = ask_bytes(&c, "sb.sms.c.submit", sealed);
    assert_eq!(answer["error"], Value::Null, "{answer}");
    assert_eq!(smsc.submits_to("4915100000001").len(), 1, "nothing more");
    assert_eq!(
        alice.expect_status(&txn, "delivered")["attempts"],
        on_a["attempts"]
    );
}

/// A submits dora's SMS through C's bind and dies before the receipts,
/// which come while nobody has its work: B or C takes A's work over,
/// delivers the messages again (which submits nothing new) and has their
/// receipts sent to itself; they end delivered, submitted once.
#[test]
fn a_receipt_for_a_dead_nodes_sms_reaches_the_node_that_took_it_over() {
    let c = NatsCluster::start(3);
    let smsc = common::Smsc::start();
    smsc.mode(json!({"receipt": "hold"}));
    let (da, db, dc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let a = node(&c, "a", da.path());
    let b = node(&c, "b", db.path());
    let node_c = sms_node(&c, "c", dc.path(), &smsc);
    smsc.wait_bound();
    let admin = admin_of(da.path(), &a.url);
    let alice = admin.add_user("alice", &[("im", "alice")]);
    admin.add_user("dora", &[("sms", "+4915100000001")]);
    wait_gateways_up(&admin, &["gw-sms-1"]);
    let txns: Vec<String> = (0..5)
        .map(|i| alice.send("dora", &format!("held {i}")))
        .collect();
    smsc.wait_submits("4915100000001", 5);
    a.kill9();
    // The receipts come while A is dead and nobody has its work yet: C's
    // bind holds them for the node that will.
    assert_eq!(smsc.release(), 5);
    let alice_b = Api::new(&b.url, &alice.token);
    let alice_c = Api::new(&node_c.url, &alice.token);
    within(30, "B or C took A over", || {
        (takeovers(&alice_b) + takeovers(&alice_c) == 1).then_some(())
    });
    within(30, "every SMS delivered, as B tells", || {
        txns.iter()
            .all(|t| alice_b.get(&format!("/v1/messages/{t}")).1["status"] == "delivered")
            .then_some(())
    });
    assert_eq!(
        smsc.submits_to("4915100000001").len(),
        5,
        "nothing submitted again"
    );
}

/// The fax spool and the SMTP relay are on node C only: alice's fax and
/// mail on A are delivered by C's gateways (into C's spool, through C's
/// relay), and A's broker hears the outcomes from A's own gateways, which
/// forwarded them.
#[test]
fn a_fax_spool_and_a_relay_on_one_node_serve_messages_submitted_on_another() {
    let c = NatsCluster::start(3);
    let sink = common::Sink::start(&[]);
    let (da, dc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(&c, "a", da.path());
    let relay = format!("127.0.0.1:{}", sink.port);
    let _node_c = node_with(
        &c,
        "c",
        dc.path(),
        &[
            ("SWITCHBOARD_FAX__ENABLED", "true"),
            ("SWITCHBOARD_EMAIL__ENABLED", "true"),
            ("SWITCHBOARD_EMAIL__LISTEN", "127.0.0.1:0"),
            ("SWITCHBOARD_EMAIL__RELAY", &relay),
        ],
    );
    let admin = admin_of(da.path(), &a.url);
    let alice = admin.add_user("alice", &[("im", "alice")]);
    admin.add_user("dora", &[("fax", "+4930123")]);
    admin.add_user("erin", &[("email", "erin@example.org")]);
    wait_gateways_up(&admin, &["gw-fax-1", "gw-email-1"]);
    let mail = alice.send("erin", "through C's relay");
    let st = alice.expect_status(&mail, "delivered");
    assert_eq!(st["attempts"][0]["mechanism"], "email", "{st}");
    assert_eq!(st["attempts"][0]["reason"], "by node c", "{st}");
    let got = sink.wait_for(1);
    assert!(got[0].contains("through C's relay"), "{got:?}");
    let txn = alice.send("dora", "Dear Dora,\nthrough C.\n");
    let st = alice.expect_status(&txn, "delivered");
    assert_eq!(st["attempts"][0]["mechanism"], "fax", "{st}");
    let spool = dc.path().join("fax/outbox");
    assert!(spool.join(format!("{txn}.pdf")).is_file(), "in C's spool");
    assert!(!da
        .path()
        .join("fax/outbox")
        .join(format!("{txn}.pdf"))
        .exists());
    let sidecar: Value =
        serde_json::from_str(&std::fs::read_to_string(spool.join(format!("{txn}.json"))).unwrap())
            .unwrap();
    assert_eq!(sidecar["to"], "+4930123", "{sidecar}");
    // A delivery not sealed with the cluster's key is refused with a reason
    // and leaves nothing in the spool.
    let answer = ask_bytes(
        &c,
        "sb.medium.c.fax",
        [vec![7u8; 32], b"{}".to_vec()].concat(),
    );
    assert!(
        answer["error"].as_str().unwrap().contains("does not match"),
        "{answer}"
    );
    let files = std::fs::read_dir(&spool).unwrap().count();
    assert_eq!(files, 2, "the one fax and its sidecar only");
}

/// Users whose home node is C (CLUSTER.md, behaviour 7) get their SMS and
/// fax from C's gateways — C's SMSC bind, C's spool — whether the message
/// was sent on A (which has a bind and a spool of its own) or on B (which
/// has neither); the attempt says so. C killed: A's gateways deliver, and
/// the attempt says C is down.
#[test]
fn a_home_node_delivers_its_users_messages_and_another_node_while_it_is_down() {
    fn refs(e: &[(String, String)]) -> Vec<(&str, &str)> {
        e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
    let c = NatsCluster::start(3);
    let (smsc_a, smsc_c) = (common::Smsc::start(), common::Smsc::start());
    let (da, db, dc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let with_fax = |smsc: &common::Smsc| {
        let mut env = common::sms_env(smsc);
        env.push(("SWITCHBOARD_FAX__ENABLED".into(), "true".into()));
        env
    };
    let (mut env_a, env_c) = (with_fax(&smsc_a), with_fax(&smsc_c));
    // A's MIAP port, for a remote IM gateway.
    let miap_a = format!("127.0.0.1:{}", common::free_port());
    env_a.push(("SWITCHBOARD_MIAP__LISTEN".into(), miap_a.clone()));
    let a = node_with(&c, "a", da.path(), &refs(&env_a));
    let b = node(&c, "b", db.path());
    let node_c = node_with(&c, "c", dc.path(), &refs(&env_c));
    smsc_a.wait_bound();
    smsc_c.wait_bound();
    let admin = admin_of(da.path(), &a.url);
    let alice = admin.add_user("alice", &[("im", "alice")]);
    // dora's own home node is C; erin's is her domain's, which serves its
    // users there only (COMPLIANCE.md `require_redirect`).
    let (status, v) = admin.put(
        "/v1/admin/domains/corp.example",
        &json!({"managed": true, "home_node": "c", "require_redirect": true}),
    );
    assert_eq!(status, 201, "{v}");
    let (status, v) = admin.put(
        "/v1/admin/users/dora",
        &json!({"id": "dora", "mechanisms": [{"medium": "sms", "address": "+4915100000001"}],
                "home_node": "c"}),
    );
    assert_eq!(status, 201, "{v}");
    let (status, v) = admin.put(
        "/v1/admin/users/erin",
        &json!({"id": "erin", "mechanisms": [{"medium": "fax", "address": "+4930123"}],
                "domain": "corp.example"}),
    );
    assert_eq!(status, 201, "{v}");
    let erin_token = v["token"].as_str().unwrap().to_string();
    // A bad home node is refused (as every invalid profile), naming the field.
    let (status, v) = admin.put(
        "/v1/admin/users/zed",
        &json!({"id": "zed", "mechanisms": [{"medium": "im", "address": "zed"}],
                "home_node": "c d"}),
    );
    assert_eq!(status, 422, "{v}");
    assert!(v.to_string().contains("home_node"), "{v}");
    let alice_b = Api::new(&b.url, &alice.token);
    let admin_b = admin_of(da.path(), &b.url);
    wait_gateways_up(&admin, &["gw-sms-1", "gw-fax-1"]);
    wait_gateways_up(&admin_b, &["gw-sms-1", "gw-fax-1"]);
    let spool = |d: &Path, txn: &str| d.join("fax/outbox").join(format!("{txn}.pdf")).is_file();
    let reason = |st: &Value| {
        st["attempts"][0]["reason"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };

    // erin is sent to C by A (307 naming C's address, the path kept) and
    // served by C; dora (no such domain) is served anywhere.
    let raw = |url: &str, token: &str| {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        let r = agent
            .get(url)
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .unwrap();
        let location = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string());
        let status = r.status().as_u16();
        let body: Value = r.into_body().read_json().unwrap_or(Value::Null);
        (status, location, body)
    };
    let c_http = within(15, "A knows C's address", || {
        let (_, st) = admin.get("/v1/admin/cluster");
        let n = st["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["id"] == "c" && n["alive"] == true)?;
        n["http"].as_str().map(str::to_string)
    });
    let (status, location, body) = within(15, "A sends erin to C", || {
        let got = raw(&format!("{}/v1/inbox?limit=5", a.url), &erin_token);
        (got.0 == 307).then_some(got)
    });
    assert_eq!(status, 307);
    assert_eq!(
        location.as_deref(),
        Some(format!("http://{c_http}/v1/inbox?limit=5").as_str())
    );
    assert_eq!(body["error"]["code"], "wrong_node", "{body}");
    let (status, location, body) = raw(&format!("{}/v1/ws", a.url), &erin_token);
    assert_eq!(
        (status, location),
        (307, Some(format!("http://{c_http}/v1/ws"))),
        "{body}"
    );
    // Over a WebSocket that authenticates in a frame: a `redirect` frame.
    let mut ws = common::Ws::connect(&a.url, None);
    ws.send(json!({"type": "auth", "token": erin_token}));
    let r = ws.expect("redirect");
    assert_eq!(
        (r["node"].as_str(), r["url"].as_str()),
        (Some("c"), Some(format!("http://{c_http}/v1/ws").as_str())),
        "{r}"
    );
    assert_eq!(ws.drain(), (0, Some(1008)), "then closed");
    // Through a remote IM gateway on A, the broker sends her there too.
    let keys = tempfile::tempdir().unwrap();
    let key = common::add_member(&admin, "gw-im-2", "im", keys.path());
    let listen = format!("127.0.0.1:{}", common::free_port());
    let gw_data = tempfile::tempdir().unwrap();
    let _gw = common::RemoteGw::spawn(
        "im",
        &miap_a,
        &key,
        gw_data.path(),
        &[("SWITCHBOARD_HTTP__LISTEN", listen.as_str())],
    );
    common::wait_logged_in(&admin, "gw-im-2");
    let remote = format!("http://{listen}");
    let (status, location, body) = raw(&format!("{remote}/v1/ws?x=1"), &erin_token);
    assert_eq!(
        (status, location),
        (307, Some(format!("http://{c_http}/v1/ws?x=1"))),
        "{body}"
    );
    let mut ws = common::Ws::connect(&remote, None);
    ws.send(json!({"type": "auth", "token": erin_token}));
    let r = ws.expect("redirect");
    assert_eq!(r["node"], "c", "{r}");
    assert_eq!(ws.drain(), (0, Some(1008)), "then closed");
    // alice (no such domain) is served there.
    let mut ws = common::Ws::connect(&remote, Some(&alice.token));
    ws.ping();
    assert_eq!(raw(&format!("{}/v1/inbox", node_c.url), &erin_token).0, 200);
    assert_eq!(raw(&format!("{}/v1/inbox", a.url), &alice.token).0, 200);

    // C up: C's gateways, from A and from B — once each places on C (a
    // probe to another phone of C's: each node's view of who serves what
    // is at most a heartbeat old).
    let (status, v) = admin.put(
        "/v1/admin/users/probe",
        &json!({"id": "probe", "mechanisms": [{"medium": "sms", "address": "+4915100000099"}],
                "home_node": "c"}),
    );
    assert_eq!(status, 201, "{v}");
    for sender in [&alice, &alice_b] {
        within(30, "placed on C", || {
            // The node may not know the probe's profile yet.
            let (status, v) = sender.post("/v1/messages", &json!({"to": "probe", "body": "probe"}));
            if status != 202 {
                return None;
            }
            let st = sender.expect_status(v["txn"].as_str()?, "delivered");
            (reason(&st) == "by node c: the home node").then_some(())
        });
    }
    for (n, sender) in [&alice, &alice_b].into_iter().enumerate() {
        let sms = sender.send("dora", &format!("home sms {n}"));
        let st = sender.expect_status(&sms, "delivered");
        assert_eq!(reason(&st), "by node c: the home node", "{st}");
        let fax = sender.send("erin", &format!("home fax {n}\n"));
        let st = sender.expect_status(&fax, "delivered");
        assert_eq!(reason(&st), "by node c: the home node", "{st}");
        assert!(spool(dc.path(), &fax), "in C's spool");
        assert!(!spool(da.path(), &fax), "not in A's");
    }
    assert_eq!(smsc_c.submits_to("4915100000001").len(), 2);
    assert_eq!(
        smsc_a.submits_to("4915100000001").len(),
        0,
        "none through A's bind"
    );
    // A `redirect` rule to node C places frank's fax there too, though he
    // has no home node.
    let (status, v) = admin.put(
        "/v1/admin/users/frank",
        &json!({"id": "frank", "mechanisms": [{"medium": "fax", "address": "+4930999"}]}),
    );
    assert_eq!(status, 201, "{v}");
    let rule = json!({"priority": 10, "stage": "meta", "when": {"to": {"user": "frank"}},
        "action": {"type": "redirect", "to": "c"}});
    let (status, v) = admin.put("/v1/admin/policy/rules/frank-via-c", &rule);
    assert_eq!(status, 201, "{v}");
    let fax = alice.send("frank", "redirected fax\n");
    let st = alice.expect_status(&fax, "delivered");
    assert_eq!(reason(&st), "by node c: the home node", "{st}");
    assert!(spool(dc.path(), &fax), "in C's spool");
    let kinds: Vec<&str> = (st["events"].as_array().unwrap().iter())
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"redirected:c"), "{kinds:?}");
    let (status, v) = admin.delete("/v1/admin/policy/rules/frank-via-c");
    assert_eq!(status, 204, "{v}");

    // C down: A's gateways, and the attempt says why.
    node_c.kill9();
    for api in [&admin, &admin_b] {
        within(30, "C seen down", || {
            let (_, st) = api.get("/v1/admin/cluster");
            st["nodes"]
                .as_array()?
                .iter()
                .any(|n| n["id"] == "c" && n["alive"] == false)
                .then_some(())
        });
    }
    // erin's home node is down: A does not serve her, and says why.
    let body = within(15, "A refuses erin while C is down", || {
        let (status, _, body) = raw(&format!("{}/v1/inbox", a.url), &erin_token);
        (status == 503).then_some(body)
    });
    assert_eq!(body["error"]["code"], "home_node_unavailable", "{body}");
    for (n, sender) in [&alice, &alice_b].into_iter().enumerate() {
        let sms = sender.send("dora", &format!("away sms {n}"));
        let st = sender.expect_status(&sms, "delivered");
        assert_eq!(reason(&st), "by node a: home node c is down", "{st}");
        let fax = sender.send("erin", &format!("away fax {n}\n"));
        let st = sender.expect_status(&fax, "delivered");
        assert_eq!(reason(&st), "by node a: home node c is down", "{st}");
        assert!(spool(da.path(), &fax), "in A's spool");
    }
    assert_eq!(smsc_a.submits_to("4915100000001").len(), 2);
    assert_eq!(
        smsc_c.submits_to("4915100000001").len(),
        2,
        "nothing more through C"
    );
}

/// The archive is a stream every node reads: what node A archives is found
/// by a search on node B, also while A is down.
#[test]
fn an_archived_message_on_one_node_is_found_from_another_also_while_it_is_down() {
    let c = NatsCluster::start(3);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let archive = [("SWITCHBOARD_ARCHIVE__ENABLED", "true")];
    let a = node_with(&c, "a", da.path(), &archive);
    let b = node_with(&c, "b", db.path(), &archive);
    let token = std::fs::read_to_string(da.path().join("admin.token")).unwrap();
    let admin_a = Api::new(&a.url, token.trim());
    let admin_b = Api::new(&b.url, token.trim());
    let (code, v) = admin_a.put(
        "/v1/admin/domains/corp.example",
        &json!({"managed": true, "archive": true}),
    );
    assert_eq!(code, 201, "{v}");
    let mut tokens = Vec::new();
    for id in ["alice", "bob"] {
        let p = json!({"id": id, "domain": "corp.example",
            "mechanisms": [{"medium": "im", "address": id}]});
        let (code, v) = admin_a.put(&format!("/v1/admin/users/{id}"), &p);
        assert_eq!(code, 201, "{v}");
        tokens.push(v["token"].as_str().unwrap().to_string());
    }
    let alice = Api::new(&a.url, &tokens[0]);
    // A's broker must know the domain archives before the message goes.
    within(10, "A archives corp.example", || {
        let (_, v) = admin_a.get("/v1/admin/domains/corp.example");
        (v["archive"] == true).then_some(())
    });
    let txn = alice.send("bob", "the quarterly figures, for the record");
    alice.expect_status(&txn, "delivered");
    let search = |api: &Api| {
        let (code, v) = api.get("/v1/admin/archive/search?cluster=true&q=quarterly%20figures");
        assert_eq!(code, 200, "{v}");
        v["records"].as_array().cloned().unwrap_or_default()
    };
    let found = within(20, "B finds A's record on the stream", || {
        let r = search(&admin_b);
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["txn"], txn.as_str());
    assert_eq!(found[0]["node"], "a");
    assert_eq!(found[0]["body"], "the quarterly figures, for the record");
    // B's own files have none of it: it is the stream that B read.
    let (_, local) = admin_b.get("/v1/admin/archive/search?q=quarterly");
    assert_eq!(local["records"], json!([]), "{local}");
    // A is gone: B still reads what A archived.
    a.kill9();
    let again = search(&admin_b);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0]["txn"], txn.as_str());
    // And the command line reads it straight from NATS, no node needed.
    drop(b);
    let cfg = config(da.path(), &c.urls());
    let out = Command::new(common::bin())
        .arg("-c")
        .arg(&cfg)
        .args([
            "archive",
            "search",
            "--cluster",
            "--text",
            "quarterly",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records"][0]["txn"], txn.as_str(), "{v}");
    assert_eq!(v["records"][0]["node"], "a", "{v}");
}
