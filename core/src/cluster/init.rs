//! Creating the cluster's streams and buckets: idempotent, so every node
//! runs it at start and `switchboard cluster init` runs the same.

use std::time::Duration;

use async_nats::jetstream::{kv, stream};

use super::{names, ClusterError, Engine};

/// What [`ensure`] did to one stream or bucket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ensured {
    /// The JetStream stream's name (a bucket's is `KV_<bucket>`).
    pub stream: String,
    /// `created`, `updated` (its replicas changed) or `kept`.
    pub action: &'static str,
    /// Its replicas now.
    pub replicas: usize,
}

/// Creates what is missing of the cluster's streams and buckets, with
/// `replicas` copies each, and brings an existing one's replicas to that
/// number; a store-of-record bucket for each of `trees` (the store's tree
/// names). Running it again changes nothing.
///
/// # Errors
/// When JetStream refuses or does not answer (no quorum).
pub async fn ensure(engine: &Engine, trees: &[&str]) -> Result<Vec<Ensured>, ClusterError> {
    let s = engine.settings();
    let replicas = s.replicas;
    let mut done = Vec::new();
    let journal = stream::Config {
        name: names::JOURNAL_STREAM.into(),
        description: Some("Switchboard: every node's journal, a subject per node".into()),
        subjects: vec![names::JOURNAL_SUBJECTS.into()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        duplicate_window: names::DUPLICATE_WINDOW,
        allow_direct: true,
        ..Default::default()
    };
    done.push(ensure_stream(engine, journal).await?);
    done.push(ensure_stream(engine, super::archive::stream_config(replicas)).await?);
    let mut buckets = vec![
        kv::Config {
            bucket: names::NODES_BUCKET.into(),
            description: "Switchboard: node liveness, put every heartbeat".into(),
            history: 1,
            ..Default::default()
        },
        kv::Config {
            bucket: names::PRESENCE_BUCKET.into(),
            description: "Switchboard: where users' sessions are".into(),
            history: 1,
            max_age: s.heartbeat * 3,
            ..Default::default()
        },
    ];
    for t in trees {
        buckets.push(kv::Config {
            bucket: names::tree_bucket(t),
            description: format!("Switchboard: the store of record's {t} tree"),
            history: 1,
            ..Default::default()
        });
    }
    for mut b in buckets {
        b.num_replicas = replicas;
        b.storage = stream::StorageType::File;
        done.push(ensure_bucket(engine, b).await?);
    }
    Ok(done)
}

async fn existing_replicas(engine: &Engine, name: &str) -> Result<Option<usize>, ClusterError> {
    match engine.js().get_stream(name).await {
        Ok(s) => Ok(Some(s.cached_info().config.num_replicas)),
        Err(e)
            if matches!(
                e.kind(),
                async_nats::jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(ClusterError::js(format!("{name}: {e}"))),
    }
}

fn action(before: Option<usize>, replicas: usize) -> &'static str {
    match before {
        None => "created",
        Some(r) if r != replicas => "updated",
        Some(_) => "kept",
    }
}

/// Tries `f` up to [`TRIES`] times while JetStream does not answer in time
/// (a stream's first creation elects its group, which can outlast one
/// request when several nodes start at once) or has too few servers up for
/// the replicas yet; other errors at once.
async fn patiently<T, F, Fut>(what: &str, mut f: F) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut last = String::new();
    for i in 0..TRIES {
        match f().await {
            Ok(v) => return Ok(v),
            // No answer in time, or too few servers known to be up for
            // the replicas yet (a cluster just started or restarting).
            Err(e)
                if e.contains("timed out")
                    || e.contains("no responders")
                    || e.contains("no suitable peers") =>
            {
                tracing::warn!(what, error = %e, "JetStream did not answer in time; trying again");
                last = e;
                tokio::time::sleep(Duration::from_millis(200 << i.min(4))).await;
            }
            Err(e) => return Err(ClusterError::js(format!("{what}: {e}"))),
        }
    }
    Err(ClusterError::js(format!("{what}: {last} ({TRIES} tries)")))
}

/// How many times [`patiently`] asks.
const TRIES: u32 = 6;

async fn ensure_stream(engine: &Engine, cfg: stream::Config) -> Result<Ensured, ClusterError> {
    let name = cfg.name.clone();
    let before = patiently(&name, || async {
        existing_replicas(engine, &name)
            .await
            .map_err(|e| e.to_string())
    })
    .await?;
    let replicas = cfg.num_replicas;
    if before != Some(replicas) {
        patiently(&name, || {
            let cfg = cfg.clone();
            async move {
                let js = engine.js();
                let done = match before {
                    None => js
                        .create_stream(cfg)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    Some(_) => js
                        .update_stream(cfg)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                };
                // Another node made it first: as good.
                done.or_else(|e| {
                    if e.contains("already in use") {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
            }
        })
        .await?;
    }
    Ok(Ensured {
        action: action(before, replicas),
        stream: name,
        replicas,
    })
}

async fn ensure_bucket(engine: &Engine, cfg: kv::Config) -> Result<Ensured, ClusterError> {
    let name = format!("KV_{}", cfg.bucket);
    let before = patiently(&name, || async {
        existing_replicas(engine, &name)
            .await
            .map_err(|e| e.to_string())
    })
    .await?;
    let replicas = cfg.num_replicas;
    if before != Some(replicas) {
        patiently(&name, || {
            let cfg = cfg.clone();
            async move {
                let js = engine.js();
                let done = match before {
                    None => js
                        .create_key_value(cfg)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    Some(_) => js
                        .update_key_value(cfg)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                };
                done.or_else(|e| {
                    if e.contains("already in use") {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
            }
        })
        .await?;
    }
    Ok(Ensured {
        action: action(before, replicas),
        stream: name,
        replicas,
    })
}

/// Waits until JetStream answers a request (its meta leader is elected),
/// up to `wait`.
///
/// # Errors
/// [`ClusterError::JetStream`] with the last answer when it does not.
pub async fn wait_ready(engine: &Engine, wait: Duration) -> Result<(), ClusterError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match engine.js().query_account().await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(ClusterError::js(format!("not ready within {wait:?}: {e}")))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
