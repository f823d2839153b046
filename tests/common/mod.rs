//! The test harness: the real node on `127.0.0.1:0` with a temp dir, in this
//! process ([`TestNode`]) or as a child process that can be killed
//! ([`ProcNode`]), and a small HTTP client with fluent helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard::config::Config;
use switchboard::node::Node;

/// An HTTP answer: status and JSON body (Null when empty).
pub type Answer = (u16, Value);

/// A blocking API client with one token.
#[derive(Clone)]
pub struct Api {
    agent: ureq::Agent,
    pub base: String,
    pub token: String,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .into();
        Self {
            agent,
            base: base.to_string(),
            token: token.to_string(),
        }
    }

    pub fn with_token(&self, token: &str) -> Self {
        Self::new(&self.base, token)
    }

    fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
        let mut r = r.expect("the node answers");
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }

    pub fn get(&self, path: &str) -> Answer {
        Self::answer(
            self.agent
                .get(format!("{}{path}", self.base))
                .header("Authorization", format!("Bearer {}", self.token))
                .call(),
        )
    }

    pub fn post(&self, path: &str, body: &Value) -> Answer {
        Self::answer(
            self.agent
                .post(format!("{}{path}", self.base))
                .header("Authorization", format!("Bearer {}", self.token))
                .send_json(body),
        )
    }

    /// As [`Api::post`], but `None` when the node does not answer.
    pub fn try_post(&self, path: &str, body: &Value) -> Option<Answer> {
        let r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .send_json(body);
        r.is_ok().then(|| Self::answer(r))
    }

    pub fn post_raw(&self, path: &str, body: &[u8]) -> Answer {
        Self::answer(
            self.agent
                .post(format!("{}{path}", self.base))
                .header("Authorization", format!("Bearer {}", self.token))
                .header("Content-Type", "application/json")
                .send(body),
        )
    }

    pub fn put(&self, path: &str, body: &Value) -> Answer {
        Self::answer(
            self.agent
                .put(format!("{}{path}", self.base))
                .header("Authorization", format!("Bearer {}", self.token))
                .send_json(body),
        )
    }

    /// DELETE `path`; the status.
    pub fn delete_path(&self, path: &str) -> u16 {
        self.delete(path).0
    }

    /// DELETE `path`; the status and body.
    pub fn delete(&self, path: &str) -> Answer {
        Self::answer(
            self.agent
                .delete(format!("{}{path}", self.base))
                .header("Authorization", format!("Bearer {}", self.token))
                .call(),
        )
    }

    /// Adds a user with `mechanisms` (`[("im","bob"), …]`); returns their API.
    pub fn add_user(&self, id: &str, mechanisms: &[(&str, &str)]) -> Api {
        self.add_user_with(id, mechanisms, json!({}))
    }

    /// [`Api::add_user`] with more profile fields (`{"contacts": […]}`).
    pub fn add_user_with(&self, id: &str, mechanisms: &[(&str, &str)], more: Value) -> Api {
        let mechs: Vec<Value> = mechanisms
            .iter()
            .map(|(m, a)| json!({"medium": m, "address": a}))
            .collect();
        let mut profile = json!({"id": id, "mechanisms": mechs});
        for (k, v) in more.as_object().into_iter().flatten() {
            profile[k] = v.clone();
        }
        let (status, v) = self.put(&format!("/v1/admin/users/{id}"), &profile);
        assert_eq!(status, 201, "adding {id}: {v}");
        self.with_token(v["token"].as_str().expect("a token"))
    }

    /// `POST /v1/messages` with an `Idempotency-Key` (30 s at most):
    /// (status, whether `Idempotent-Replayed: true`, body).
    pub fn post_keyed(&self, key: &str, body: &Value) -> (u16, bool, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut r = agent
            .post(format!("{}/v1/messages", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Idempotency-Key", key)
            .send_json(body)
            .expect("the node answers");
        let replayed = r
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, replayed, v)
    }

    /// Sends `body` to `to`; returns the txn (asserts 202).
    pub fn send(&self, to: &str, body: &str) -> String {
        let (status, v) = self.post("/v1/messages", &json!({"to": to, "body": body}));
        assert_eq!(status, 202, "send to {to}: {v}");
        v["txn"].as_str().expect("a txn").to_string()
    }

    /// Polls the message's status until it is `want` (10 s at most).
    pub fn expect_status(&self, txn: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (code, v) = self.get(&format!("/v1/messages/{txn}"));
            assert_eq!(code, 200, "status of {txn}: {v}");
            if v["status"] == want {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "txn {txn} stayed {} (wanted {want}): {v}",
                v["status"]
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The whole inbox of this API's user.
    pub fn inbox(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let (code, v) = self.get(&format!("/v1/inbox?limit=1000&after={after}"));
            assert_eq!(code, 200, "inbox: {v}");
            let msgs = v["messages"].as_array().cloned().unwrap_or_default();
            if msgs.is_empty() {
                return all;
            }
            after = v["next"].as_str().unwrap_or_default().to_string();
            all.extend(msgs);
        }
    }
}

fn config(dir: &Path, extra: &[(String, String)]) -> Config {
    let mut vars: Vec<(String, String)> = [
        ("SWITCHBOARD_DATA__DIR", dir.display().to_string()),
        ("SWITCHBOARD_HTTP__LISTEN", "127.0.0.1:0".to_string()),
        ("SWITCHBOARD_MIAP__LISTEN", "127.0.0.1:0".to_string()),
        ("SWITCHBOARD_SHUTDOWN__TIMEOUT_S", "5".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    vars.extend(extra.iter().cloned());
    Config::load_with(None, vars.into_iter()).expect("test config")
}

/// A blocking TCP connection to `to` from the loopback address `from`
/// (127.0.0.N: another client address on one machine), reads timing out
/// after 10 s.
#[allow(dead_code)]
pub fn tcp_from(to: std::net::SocketAddr, from: [u8; 4]) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind((std::net::Ipv4Addr::from(from), 0).into())
            .unwrap();
        sock.connect(to).await.unwrap().into_std().unwrap()
    });
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Runs inside the node's actix system once it started (adds gateways, …).
pub type Setup = Box<
    dyn for<'a> FnOnce(&'a Node) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>
        + Send,
>;

/// The node in this process, on its own actix system thread.
pub struct TestNode {
    pub url: String,
    /// Where remote members connect.
    pub miap: std::net::SocketAddr,
    /// The SMTP server, when the email gateway runs.
    pub smtp: Option<std::net::SocketAddr>,
    pub admin: Api,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestNode {
    pub fn start() -> Self {
        Self::start_in(tempfile::tempdir().expect("temp dir"))
    }

    pub fn start_in(dir: tempfile::TempDir) -> Self {
        Self::start_with(dir, Box::new(|_| Box::pin(async {})))
    }

    pub fn start_with(dir: tempfile::TempDir, setup: Setup) -> Self {
        Self::start_full(dir, &[], setup)
    }

    /// With extra `SWITCHBOARD_…` settings.
    pub fn start_env(extra: &[(&str, &str)]) -> Self {
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::start_full(
            tempfile::tempdir().expect("temp dir"),
            &extra,
            Box::new(|_| Box::pin(async {})),
        )
    }

    pub fn start_full(dir: tempfile::TempDir, extra: &[(String, String)], setup: Setup) -> Self {
        let cfg = config(dir.path(), extra);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let node = Node::start(&cfg).await.expect("node starts");
                setup(&node).await;
                ready_tx
                    .send((node.http_addr, node.smtp_addr, node.miap_addr))
                    .expect("test waits");
                let _ = stop_rx.await;
                node.shutdown().await;
            });
        });
        let (addr, smtp, miap) = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("node ready within 30 s");
        let url = format!("http://{addr}");
        let admin_token =
            std::fs::read_to_string(dir.path().join("admin.token")).expect("admin token");
        Self {
            admin: Api::new(&url, admin_token.trim()),
            smtp,
            miap,
            url,
            dir,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Ordered shutdown; returns the data directory for a restart.
    pub fn stop(mut self) -> tempfile::TempDir {
        self.shutdown();
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, dir)
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The `switchboard` binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_switchboard"))
}

/// Sends `signal` (`-TERM`, `-HUP`, `-STOP`) to `child` with kill(1).
pub fn signal(child: &Child, signal: &str) {
    let pid = child.id().to_string();
    let ok = Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill {signal} {pid}");
}

/// Sends SIGTERM to `child` and waits (15 s at most) for it to exit.
pub fn terminate(child: &mut Child) -> std::process::ExitStatus {
    signal(child, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the process did not exit within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The node as a child process (`switchboard serve`), killable with SIGKILL.
pub struct ProcNode {
    pub child: Child,
    pub url: String,
}

impl ProcNode {
    pub fn spawn(dir: &Path) -> Self {
        Self::spawn_with(dir, &[])
    }

    /// With extra environment settings (e.g. a fixed MIAP port).
    pub fn spawn_with(dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut c = Command::new(bin());
        c.arg("serve")
            .env("SWITCHBOARD_DATA__DIR", dir)
            .env("SWITCHBOARD_HTTP__LISTEN", "127.0.0.1:0")
            .env("SWITCHBOARD_MIAP__LISTEN", "127.0.0.1:0")
            .env("SWITCHBOARD_LOG__LEVEL", "warn")
            .envs(env.iter().copied());
        Self::spawn_command(c)
    }

    /// `c` (a `switchboard serve` command), once it listens.
    pub fn spawn_command(mut c: Command) -> Self {
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn switchboard serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .expect("read the listening line");
        // Keep reading, so the node never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let addr = line
            .trim()
            .strip_prefix("switchboard: http listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Self {
            child,
            url: format!("http://{addr}"),
        }
    }

    /// Sends SIGTERM and waits (15 s at most) for the process to exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        terminate(&mut self.child)
    }

    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for ProcNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test SMS medium (the real one speaks SMPP): records what it is given and
/// accepts it, or refuses everything when `fail` is set.
#[derive(Clone, Default)]
pub struct TestSms {
    pub sent: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    pub segments: std::sync::Arc<std::sync::Mutex<Vec<Vec<String>>>>,
    pub fail: bool,
}

impl switchboard_actors::medium::Medium for TestSms {
    fn kind(&self) -> switchboard_core::protocol::MediumKind {
        switchboard_core::protocol::MediumKind::Sms
    }

    fn health(&self) -> switchboard_actors::medium::Health {
        switchboard_actors::medium::Health {
            up: true,
            detail: "test sink".into(),
        }
    }

    fn deliver(
        &mut self,
        d: switchboard_actors::medium::Delivery,
    ) -> switchboard_actors::medium::futures_like::LocalBoxFuture<
        'static,
        Result<switchboard_actors::medium::MediumAck, switchboard_actors::medium::NonDelivery>,
    > {
        // Segmented by the text-to-SMS processor on the way: record the
        // segments and the text they make up.
        let (text, segments) = if d.content_type == switchboard::processors::sms::CONTENT_TYPE {
            let v: Value = serde_json::from_slice(&d.content).expect("segment JSON");
            let segs: Vec<String> = v["segments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect();
            (segs.concat(), segs)
        } else {
            let t = String::from_utf8_lossy(&d.content).into_owned();
            (t.clone(), vec![t])
        };
        self.sent
            .lock()
            .unwrap()
            .push((d.route.address.clone(), text));
        self.segments.lock().unwrap().push(segments);
        let r = if self.fail {
            Err(switchboard_actors::medium::NonDelivery(
                "test SMSC refused".into(),
            ))
        } else {
            Ok(switchboard_actors::medium::MediumAck::Delivered)
        };
        Box::pin(async move { r })
    }
}

/// A node with the test SMS medium as gateway `gw-sms-test`.
pub fn node_with_sms(sms: TestSms) -> TestNode {
    TestNode::start_with(
        tempfile::tempdir().expect("temp dir"),
        Box::new(move |node| {
            Box::pin(async move {
                node.core
                    .add_gateway("gw-sms-test", sms, None)
                    .await
                    .expect("test SMS gateway");
            })
        }),
    )
}

/// A blocking WebSocket client of `/v1/ws`.
pub struct Ws {
    sock: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    held: Vec<Value>,
}

impl Ws {
    /// Connects with the token in the `Authorization` header (or none).
    pub fn connect(base: &str, token: Option<&str>) -> Self {
        use tungstenite::client::IntoClientRequest;
        let url = format!("{}/v1/ws", base.replacen("http://", "ws://", 1));
        let mut req = url.into_client_request().expect("request");
        if let Some(t) = token {
            req.headers_mut().insert(
                "Authorization",
                format!("Bearer {t}").parse().expect("header"),
            );
        }
        let (sock, _) = tungstenite::connect(req).expect("WebSocket handshake");
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = sock.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
        }
        Self {
            sock,
            held: Vec::new(),
        }
    }

    pub fn send(&mut self, v: Value) {
        self.sock
            .send(tungstenite::Message::Text(v.to_string().into()))
            .expect("send");
    }

    pub fn send_raw(&mut self, m: tungstenite::Message) {
        self.sock.send(m).expect("send");
    }

    fn read(&mut self) -> Value {
        loop {
            match self.sock.read().expect("a frame within 10 s") {
                tungstenite::Message::Text(t) => {
                    return serde_json::from_str(&t).expect("JSON frame")
                }
                tungstenite::Message::Close(c) => panic!("closed: {c:?}"),
                _ => {}
            }
        }
    }

    /// Pings and waits for the pong: the server's session is running
    /// (text frames read meanwhile are kept for later).
    pub fn ping(&mut self) {
        self.sock
            .send(tungstenite::Message::Ping(b"fence".to_vec().into()))
            .expect("ping");
        loop {
            match self.sock.read().expect("a pong within 10 s") {
                tungstenite::Message::Pong(p) if p.as_ref() == b"fence" => return,
                tungstenite::Message::Text(t) => self
                    .held
                    .push(serde_json::from_str(&t).expect("JSON frame")),
                tungstenite::Message::Close(c) => panic!("closed: {c:?}"),
                _ => {}
            }
        }
    }

    /// How many frames of `kind` were read and kept for later.
    pub fn held_count(&self, kind: &str) -> usize {
        self.held.iter().filter(|v| v["type"] == kind).count()
    }

    /// The next frame of `kind` (other frames are kept for later).
    pub fn expect(&mut self, kind: &str) -> Value {
        if let Some(i) = self.held.iter().position(|v| v["type"] == kind) {
            return self.held.remove(i);
        }
        loop {
            let v = self.read();
            if v["type"] == kind {
                return v;
            }
            self.held.push(v);
        }
    }

    /// Reads until the connection ends: how many `message` frames came, and
    /// the close code if a close frame came (`None`: the connection just
    /// ended).
    pub fn drain(&mut self) -> (usize, Option<u16>) {
        let mut messages = self.held.iter().filter(|v| v["type"] == "message").count();
        loop {
            match self.sock.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                    if v["type"] == "message" {
                        messages += 1;
                    }
                }
                Ok(tungstenite::Message::Close(c)) => {
                    return (messages, Some(c.map_or(1005, |f| f.code.into())))
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    panic!("the connection did not end within 10 s ({messages} messages)")
                }
                Err(_) => return (messages, None),
            }
        }
    }

    /// Reads until the server closes; returns the close code and reason.
    pub fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.sock.read() {
                Ok(tungstenite::Message::Close(Some(f))) => {
                    return (f.code.into(), f.reason.to_string())
                }
                Ok(tungstenite::Message::Close(None)) => return (1005, String::new()),
                Ok(tungstenite::Message::Text(t)) => self
                    .held
                    .push(serde_json::from_str(&t).unwrap_or(Value::Null)),
                Ok(_) => {}
                Err(e) => panic!("no close frame: {e}"),
            }
        }
    }
}

/// A seed for a random kill schedule, from the clock; printed, so a failing
/// run can be read back.
pub fn kill_seed() -> u64 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_nanos() as u64
        | 1;
    eprintln!("kill schedule seed {seed}");
    seed
}

/// A pseudo-random number in `lo..hi` from `state` (xorshift).
pub fn jitter(state: &mut u64, lo: u64, hi: u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    lo + *state % (hi - lo)
}

pub use switchboard_core::cluster::testkit::free_port;

/// The aiosmtpd relay sink (`tests/peers/smtp_sink.py`).
pub struct Sink {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Sink {
    /// Starts the sink; `rules` are `ADDRESS=REPLY` overrides for RCPT.
    pub fn start(rules: &[&str]) -> Self {
        Self::start_with(&[], rules)
    }

    /// A sink that requires STARTTLS, with `cert`.
    pub fn start_tls(cert: &Cert) -> Self {
        let (c, k) = (
            cert.cert.display().to_string(),
            cert.key.display().to_string(),
        );
        Self::start_with(&["--tls", &c, &k], &[])
    }

    fn start_with(opts: &[&str], rules: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(dir.path())
            .args(opts)
            .args(rules)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the SMTP sink (scripts/test installs aiosmtpd)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("sink output");
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        Self { port, dir, child }
    }

    /// Whether message `n` (1-based) came over TLS.
    pub fn tls(&self, n: usize) -> bool {
        std::fs::read_to_string(self.dir.path().join(format!("{n}.tls")))
            .ok()
            .as_deref()
            == Some("tls")
    }

    /// The messages received so far, oldest first.
    pub fn messages(&self) -> Vec<String> {
        let mut v: Vec<(u32, String)> = std::fs::read_dir(self.dir.path())
            .expect("sink dir")
            .filter_map(|e| {
                let p = e.ok()?.path();
                let n: u32 = p
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".eml")?
                    .parse()
                    .ok()?;
                Some((n, std::fs::read_to_string(&p).ok()?))
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, m)| m).collect()
    }

    /// Waits (10 s at most) until `n` messages arrived.
    pub fn wait_for(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "the sink got {} of {n} messages",
                m.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// RCPT commands seen.
    pub fn rcpts(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("rcpt.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node with the email gateway on, relaying to `sink`, local domains
/// `localhost` and `sb.example`, and messages up to `max` bytes.
pub fn node_with_email(sink: &Sink, max: usize) -> TestNode {
    let relay = format!("127.0.0.1:{}", sink.port);
    let max = max.to_string();
    TestNode::start_env(&[
        ("SWITCHBOARD_EMAIL__ENABLED", "true"),
        ("SWITCHBOARD_EMAIL__LISTEN", "127.0.0.1:0"),
        ("SWITCHBOARD_EMAIL__RELAY", &relay),
        (
            "SWITCHBOARD_EMAIL__LOCAL_DOMAINS",
            r#"["localhost", "sb.example"]"#,
        ),
        ("SWITCHBOARD_EMAIL__MAX_MESSAGE_BYTES", &max),
    ])
}

/// The reason of attempt `i` in a status answer (empty when none).
pub fn reason(st: &Value, i: usize) -> String {
    st["attempts"][i]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The SMSC simulator (`tests/peers/smsc.js`, on the npm package `smpp` in
/// server mode), accepting `switchboard` / `secret`.
pub struct Smsc {
    /// Its SMPP port.
    pub port: u16,
    control: String,
    child: Child,
}

impl Smsc {
    pub fn start() -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/smsc.js");
        let mut child = Command::new("node")
            .arg(script)
            .args(["--system-id", "switchboard", "--password", "secret"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs the SMSC simulator (scripts/test installs nodejs and `smpp`)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("simulator output");
        let ports: Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("the SMSC simulator did not start ({e}): {line:?}"));
        Self {
            port: ports["smpp"].as_u64().expect("smpp port") as u16,
            control: format!("http://127.0.0.1:{}", ports["control"]),
            child,
        }
    }

    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        let url = format!("{}{path}", self.control);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let resp = if method == "GET" {
            agent.get(&url).call()
        } else {
            agent.post(&url).send_json(body)
        };
        resp.expect("simulator control")
            .body_mut()
            .read_json()
            .expect("simulator JSON")
    }

    /// Everything it saw (see smsc.js).
    pub fn state(&self) -> Value {
        self.call("GET", "/state", &Value::Null)
    }

    /// Changes how it behaves.
    pub fn mode(&self, m: Value) {
        self.call("POST", "/mode", &m);
    }

    /// Sends a phone's message to the bound ESME; the `command_status`es of
    /// its `deliver_sm_resp`s.
    pub fn mo(&self, m: Value) -> Vec<u64> {
        let r = self.call("POST", "/mo", &m);
        r["statuses"]
            .as_array()
            .unwrap_or_else(|| panic!("mo refused: {r}"))
            .iter()
            .map(|s| s.as_u64().expect("status"))
            .collect()
    }

    /// Sends the held receipts.
    pub fn release(&self) -> u64 {
        self.call("POST", "/release", &json!({}))["released"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Writes raw bytes to every bound session.
    pub fn raw(&self, hex: &str) {
        self.call("POST", "/raw", &json!({ "hex": hex }));
    }

    /// Destroys every session's socket.
    pub fn drop_sessions(&self) {
        self.call("POST", "/drop", &json!({}));
    }

    /// Waits (15 s at most) until `pred` holds of the state; returns it.
    pub fn wait(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.state();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {what}; SMSC state: {s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until a session is bound.
    pub fn wait_bound(&self) {
        self.wait("a bound session", |s| s["sessions"].as_u64() >= Some(1));
    }

    /// The `submit_sm`s answered so far to `dest` (digits, no `+`).
    pub fn submits_to(&self, dest: &str) -> Vec<Value> {
        self.state()["submits"]
            .as_array()
            .expect("submits")
            .iter()
            .filter(|s| s["dest"] == dest)
            .cloned()
            .collect()
    }

    /// Waits until `n` submit_sm to `dest` were answered.
    pub fn wait_submits(&self, dest: &str, n: usize) -> Vec<Value> {
        self.wait(&format!("{n} submit_sm to {dest}"), |s| {
            s["submits"]
                .as_array()
                .is_some_and(|a| a.iter().filter(|x| x["dest"] == dest).count() >= n)
        });
        self.submits_to(dest)
    }
}

impl Drop for Smsc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The settings of a node whose SMS gateway binds to `smsc`.
pub fn sms_env(smsc: &Smsc) -> Vec<(String, String)> {
    [
        ("SWITCHBOARD_SMS__ENABLED", "true".to_string()),
        ("SWITCHBOARD_SMS__SMSC", format!("127.0.0.1:{}", smsc.port)),
        ("SWITCHBOARD_SMS__SYSTEM_ID", "switchboard".into()),
        ("SWITCHBOARD_SMS__PASSWORD", "secret".into()),
        ("SWITCHBOARD_SMS__RESPONSE_TIMEOUT_S", "3".into()),
        ("SWITCHBOARD_SMS__SUBMIT_TIMEOUT_S", "10".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A node bound to `smsc`, with `extra` settings on top; returns once the
/// simulator sees the bind.
pub fn node_with_smsc(smsc: &Smsc, extra: &[(&str, &str)]) -> TestNode {
    node_with_smsc_in(smsc, tempfile::tempdir().expect("temp dir"), extra)
}

/// [`node_with_smsc`] on an existing data directory.
pub fn node_with_smsc_in(smsc: &Smsc, dir: tempfile::TempDir, extra: &[(&str, &str)]) -> TestNode {
    let mut env = sms_env(smsc);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let node = TestNode::start_full(dir, &env, Box::new(|_| Box::pin(async {})));
    node.wait_ready();
    node
}

impl TestNode {
    /// Waits (15 s at most) until `/readyz` answers 200.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, body) = self.admin.get("/readyz");
            if status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "never ready: {body}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Runs swaks against the node's SMTP server; (success, its output).
pub fn swaks(node: &TestNode, args: &[&str]) -> (bool, String) {
    let smtp = node.smtp.expect("the SMTP server runs");
    let out = Command::new("swaks")
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &smtp.port().to_string(),
            "--timeout",
            "20",
        ])
        .args(args)
        .output()
        .expect("swaks runs (scripts/test installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A test CA and a certificate it signed for `localhost` and `127.0.0.1`
/// (made with the openssl command), in a temp dir.
pub struct Cert {
    /// The leaf certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
    /// The CA that signed it (PEM).
    pub ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cert {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = |n: &str| dir.path().join(n);
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl runs (scripts/test installs it)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-days",
                    "2",
                    "-subj",
                    "/CN=Switchboard test CA",
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-subj",
                    "/CN=localhost",
                    "-keyout",
                    "key.pem",
                    "-out",
                    "leaf.csr",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            p("leaf.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .expect("ext file");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "cert.pem",
        ]);
        Self {
            cert: p("cert.pem"),
            key: p("key.pem"),
            ca: p("ca.pem"),
            _dir: dir,
        }
    }
}

/// Creates remote member `id` for `medium` through the admin API and writes
/// its key file into `dir`; the file's path.
pub fn add_member(admin: &Api, id: &str, medium: &str, dir: &Path) -> PathBuf {
    let (code, v) = admin.put(
        &format!("/v1/admin/members/{id}"),
        &json!({ "medium": medium }),
    );
    assert_eq!(code, 201, "adding member {id}: {v}");
    let path = dir.join(format!("{id}.key"));
    write_key_file(&path, &v.to_string());
    path
}

/// Writes a member's key file as an operator must: readable by its owner
/// only (a gateway refuses one others may read).
pub fn write_key_file(path: &Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("key file");
    std::io::Write::write_all(&mut f, text.as_bytes()).expect("key file");
}

/// A gateway in its own process (`switchboard gateway`), killable with
/// SIGKILL.
pub struct RemoteGw {
    child: Child,
}

impl RemoteGw {
    /// Starts `switchboard gateway --medium M --connect ADDR --member ID
    /// --key-file F --data DIR` with `env` on top.
    pub fn spawn(
        medium: &str,
        connect: &str,
        key_file: &Path,
        data: &Path,
        env: &[(&str, &str)],
    ) -> Self {
        Self::spawn_args(medium, connect, key_file, data, env, &[])
    }

    /// As [`RemoteGw::spawn`] with more arguments (`--tls-ca FILE`, …).
    pub fn spawn_args(
        medium: &str,
        connect: &str,
        key_file: &Path,
        data: &Path,
        env: &[(&str, &str)],
        extra: &[&std::ffi::OsStr],
    ) -> Self {
        let member = key_file
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("ID.key")
            .to_string();
        let child = Command::new(bin())
            .args([
                "gateway",
                "--medium",
                medium,
                "--connect",
                connect,
                "--member",
                &member,
            ])
            .arg("--key-file")
            .arg(key_file)
            .arg("--data")
            .arg(data)
            .args(extra)
            .env("SWITCHBOARD_LOG__LEVEL", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn switchboard gateway");
        Self { child }
    }

    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// SIGTERM, then its exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        terminate(&mut self.child)
    }

    /// Freezes the process (SIGSTOP): its connection stays open, it reads
    /// nothing.
    pub fn freeze(&self) {
        signal(&self.child, "-STOP");
    }
}

impl Drop for RemoteGw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (15 s at most) until member `id` is logged in at the node.
pub fn wait_logged_in(admin: &Api, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, v) = admin.get("/v1/admin/members");
        let up = v["members"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["id"] == id && m["logged_in"] == true);
        if up {
            return;
        }
        assert!(Instant::now() < deadline, "{id} never logged in: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An unlabelled sample of the node's `/metrics` at `url`.
pub fn metric(url: &str, name: &str) -> Option<f64> {
    ureq::get(format!("{url}/metrics"))
        .call()
        .ok()?
        .into_body()
        .read_to_string()
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Waits until the node at `url` counts `n` open WebSocket sessions (each
/// has joined the hub: pushes reach it).
pub fn wait_ws_sessions(url: &str, n: f64) {
    eventually(&format!("{n} open WebSocket sessions"), || {
        (metric(url, "switchboard_ws_sessions")? == n).then_some(())
    });
}

/// Polls until `f` returns something (20 s at most).
pub fn eventually<T>(what: &str, f: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "waited for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A raw SMTP conversation: send `lines`, collect the replies.
pub struct Raw {
    pub r: BufReader<TcpStream>,
    pub w: TcpStream,
}

impl Raw {
    pub fn connect(node: &TestNode) -> Self {
        let mut raw = Self::open(node, [127, 0, 0, 1]);
        assert!(raw.reply().starts_with("220 "));
        raw
    }

    /// A connection from loopback address `from`, its greeting unread.
    pub fn open(node: &TestNode, from: [u8; 4]) -> Self {
        let s = tcp_from(node.smtp.unwrap(), from);
        Self {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    /// One (possibly multi-line) reply.
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap() == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> String {
        self.w.write_all(bytes).unwrap();
        self.reply()
    }
}

/// The CLI against `node` as its admin: (success, stdout, stderr).
pub fn cli(node: &TestNode, args: &[&str]) -> (bool, String, String) {
    cli_as(node, &node.admin.token, args)
}

/// The CLI against `node` with `admin_token`.
pub fn cli_as(node: &TestNode, admin_token: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(bin())
        .args(args)
        .args(["--url", &node.url, "--admin-token", admin_token])
        .output()
        .expect("run the CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A node whose SMTP server offers STARTTLS (not required) with `cert`,
/// relaying to `sink`, with extra settings.
pub fn node_with_smtp_tls(sink: &Sink, cert: &Cert, more: &[(&str, &str)]) -> TestNode {
    let relay = format!("127.0.0.1:{}", sink.port);
    let mut env = vec![
        ("SWITCHBOARD_EMAIL__ENABLED", "true"),
        ("SWITCHBOARD_EMAIL__LISTEN", "127.0.0.1:0"),
        ("SWITCHBOARD_EMAIL__RELAY", relay.as_str()),
        (
            "SWITCHBOARD_EMAIL__LOCAL_DOMAINS",
            r#"["localhost", "sb.example"]"#,
        ),
        ("SWITCHBOARD_EMAIL__TLS_CERT", cert.cert.to_str().unwrap()),
        ("SWITCHBOARD_EMAIL__TLS_KEY", cert.key.to_str().unwrap()),
    ];
    env.extend_from_slice(more);
    TestNode::start_env(&env)
}

/// swaks's arguments to log in over STARTTLS as `user` with `token` by
/// `mech` (`PLAIN`, `LOGIN`).
pub fn auth_args<'a>(mech: &'a str, user: &'a str, token: &'a str) -> [&'a str; 7] {
    [
        "--tls",
        "--auth",
        mech,
        "--auth-user",
        user,
        "--auth-password",
        token,
    ]
}
