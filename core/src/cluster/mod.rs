//! Cluster mode's engine (`CLUSTER.md`): the connection to NATS with
//! JetStream, the streams and buckets a cluster keeps its state in, and
//! what an operator asks of them ([`init`], [`status`]).
//!
//! The client runs on a runtime of its own ([`Engine`], two worker
//! threads): its I/O never competes with the actors' arbiters, and
//! synchronous callers (the CLI, the store opening) wait on it without
//! nesting runtimes.
//!
//! Owns: the connection, the names of the streams and buckets, their
//! creation and their state. Must not touch: what is stored in them (the
//! journal and the store encode their own records).

pub mod archive;
pub mod home;
pub mod init;
pub mod names;
pub mod status;
pub mod takeover;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;

/// What cluster mode is configured with (the `[cluster]` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// This node's id (1–64 of `A-Z a-z 0-9 . _ -`).
    pub node_id: String,
    /// The NATS servers to connect to (any one is enough; the client
    /// learns the others).
    pub urls: Vec<String>,
    /// How many copies JetStream keeps of each stream and bucket (1–5).
    pub replicas: usize,
    /// How often a node tells the cluster it is alive.
    pub heartbeat: Duration,
    /// How long a node's unacknowledged work waits before another takes it.
    pub ack_wait: Duration,
    /// A CA bundle to verify the servers' TLS certificates with (TLS is
    /// then required).
    pub tls_ca: Option<PathBuf>,
    /// A NATS credentials file (JWT + nkey seed).
    pub creds: Option<PathBuf>,
}

impl Settings {
    /// Settings for a trial against `urls`: node `node_id`, `replicas`
    /// copies, a 3 s heartbeat and a 30 s ack wait.
    pub fn new(node_id: &str, urls: &[String], replicas: usize) -> Self {
        Self {
            node_id: node_id.to_owned(),
            urls: urls.to_vec(),
            replicas,
            heartbeat: Duration::from_secs(3),
            ack_wait: Duration::from_secs(30),
            tls_ca: None,
            creds: None,
        }
    }
}

/// A cluster failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// No NATS server could be reached.
    #[error("cannot reach NATS at {urls}: {reason}")]
    Connect {
        /// The servers tried.
        urls: String,
        /// What the client said.
        reason: String,
    },
    /// JetStream answered with an error, or not in time (no quorum).
    #[error("JetStream: {0}")]
    JetStream(String),
    /// What the cluster holds does not fit this node (e.g. a stream made
    /// with other settings).
    #[error("cluster state: {0}")]
    State(String),
    /// The engine's thread is gone (the node is shutting down).
    #[error("the cluster engine stopped")]
    Stopped,
}

impl ClusterError {
    /// A JetStream error from anything that displays.
    pub(crate) fn js(e: impl std::fmt::Display) -> Self {
        ClusterError::JetStream(e.to_string())
    }
}

/// How long one JetStream request waits for its answer: past a leader
/// election (a few seconds), short of making a caller think the node hung.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection to the cluster, on a runtime of its own. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    settings: Settings,
    client: async_nats::Client,
    js: jetstream::Context,
    rt: tokio::runtime::Handle,
    _thread: std::sync::Arc<EngineThread>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("node", &self.settings.node_id)
            .finish_non_exhaustive()
    }
}

/// The engine's thread: stops its runtime when the last clone goes.
struct EngineThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl Drop for EngineThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(join) = self.join.take() {
            if join.thread().id() != std::thread::current().id() {
                let _ = join.join();
            }
        }
    }
}

impl Engine {
    /// Starts the engine's thread and connects to `settings.urls`, waiting
    /// up to `wait` for a first server to answer (the client reconnects by
    /// itself afterwards, to any server of the cluster).
    ///
    /// # Errors
    /// [`ClusterError::Connect`] when no server answers in time, or the
    /// TLS or credentials files cannot be read.
    pub fn connect(settings: &Settings, wait: Duration) -> Result<Self, ClusterError> {
        // Two workers: a heartbeat is never queued behind the watchers'
        // work or a journal round's.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("nats-worker")
            .enable_all()
            .build()
            .map_err(|e| ClusterError::Connect {
                urls: settings.urls.join(","),
                reason: format!("no runtime: {e}"),
            })?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let join = std::thread::Builder::new()
            .name("nats".into())
            .spawn(move || {
                let _ = rt.block_on(stopped);
            })
            .map_err(|e| ClusterError::Connect {
                urls: settings.urls.join(","),
                reason: format!("no thread: {e}"),
            })?;
        let thread = std::sync::Arc::new(EngineThread {
            stop: Some(stop),
            join: Some(join),
        });
        let s = settings.clone();
        // The context spawns its acker: built on the engine's thread too.
        let (client, js) = run_on(&handle, async move {
            let client = connect_client(&s, wait).await?;
            let js = jetstream::ContextBuilder::new()
                .timeout(REQUEST_TIMEOUT)
                .build(client.clone());
            Ok::<_, ClusterError>((client, js))
        })??;
        Ok(Self {
            settings: settings.clone(),
            client,
            js,
            rt: handle,
            _thread: thread,
        })
    }

    /// What the engine was configured with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The JetStream context.
    pub fn js(&self) -> &jetstream::Context {
        &self.js
    }

    /// The core NATS client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Runs `fut` on the engine's thread and waits for it (from a thread
    /// that is not the engine's).
    ///
    /// # Errors
    /// [`ClusterError::Stopped`] when the engine stopped first.
    pub fn run<F>(&self, fut: F) -> Result<F::Output, ClusterError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        run_on(&self.rt, fut)
    }

    /// Starts `fut` on the engine's thread.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.rt.spawn(fut)
    }

    /// Whether the client is connected to a server now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

fn run_on<F>(rt: &tokio::runtime::Handle, fut: F) -> Result<F::Output, ClusterError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| ClusterError::Stopped)
}

async fn connect_client(s: &Settings, wait: Duration) -> Result<async_nats::Client, ClusterError> {
    let urls = s.urls.join(",");
    let fail = |reason: String| ClusterError::Connect {
        urls: urls.clone(),
        reason,
    };
    let mut addrs = Vec::new();
    for u in &s.urls {
        addrs.push(
            u.parse::<async_nats::ServerAddr>()
                .map_err(|e| fail(format!("{u}: {e}")))?,
        );
    }
    let mut opts = match &s.creds {
        Some(path) => creds_options(path).map_err(fail)?,
        None => async_nats::ConnectOptions::new(),
    };
    opts = opts
        .name(format!("switchboard {}", s.node_id))
        .connection_timeout(wait)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .request_timeout(Some(REQUEST_TIMEOUT));
    if let Some(ca) = &s.tls_ca {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    // `retry_on_initial_connect` returns at once; the first connection is
    // waited for here, within `wait`.
    let client = opts.connect(addrs).await.map_err(|e| fail(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + wait;
    while client.connection_state() != async_nats::connection::State::Connected {
        if tokio::time::Instant::now() >= deadline {
            return Err(fail(format!("no server answered within {wait:?}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(client)
}

/// Connection options from a NATS credentials file.
fn creds_options(path: &std::path::Path) -> Result<async_nats::ConnectOptions, String> {
    Err(format!(
        "{}: credentials files are not supported by this build (use tls_ca, or a server without auth on a private network)",
        path.display()
    ))
}

#[cfg(test)]
mod tests;
