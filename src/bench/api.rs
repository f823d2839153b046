//! `--target http` and `--target ws`: a running node's HTTP API (W clients
//! post, the recipient's WebSocket session sees each message arrive) or its
//! WebSocket API (one client pipelines W `send` frames), optionally with
//! `--sessions` idle WebSocket sessions held open.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use super::report::{cpu_seconds, node_metric, node_store_counts, progress, round, Tally};
use super::{body, due, BenchArgs};
use crate::client::Client;

/// Creates IM user `id` through the admin API; its token.
pub(super) fn add_im_user(api: &Client, id: &str) -> anyhow::Result<String> {
    let v = api.put(
        &format!("/v1/admin/users/{id}"),
        &json!({"id": id, "mechanisms": [{"medium": "im", "address": id}]}),
        true,
    )?;
    Ok(v["token"].as_str().context("no token")?.to_string())
}

/// Creates the bench users through the admin API; their tokens.
pub(super) fn bench_users(api: &Client) -> anyhow::Result<(String, String)> {
    let stamp = std::process::id();
    Ok((
        add_im_user(api, &format!("bench-a-{stamp}"))?,
        add_im_user(api, &format!("bench-b-{stamp}"))?,
    ))
}

pub(super) fn admin(args: &BenchArgs) -> anyhow::Result<Client> {
    let token = args
        .admin_token
        .clone()
        .context("this target needs the admin token (--admin-token, or the data directory)")?;
    Ok(Client::new(&args.url, &token))
}

fn ws_url(base: &str, token: &str) -> String {
    let base = base
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    format!("{}/v1/ws?token={token}", base.trim_end_matches('/'))
}

type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

fn connect_ws(url: &str) -> anyhow::Result<Socket> {
    let (sock, _) = tungstenite::connect(url).context("connecting the WebSocket")?;
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = sock.get_ref() {
        // Small frames both ways: no Nagle delay on our side.
        let _ = s.set_nodelay(true);
    }
    Ok(sock)
}

/// Opens `args.sessions` idle WebSocket sessions, one user each (created
/// through the admin API), and notes the node's memory per user and per
/// idle session (its `switchboard_process_resident_memory_bytes`).
fn idle_sessions(args: &BenchArgs, tally: &Tally) -> anyhow::Result<Vec<Socket>> {
    let n = args.sessions;
    if n == 0 {
        return Ok(Vec::new());
    }
    let rss = || node_metric(&args.url, "switchboard_process_resident_memory_bytes").unwrap_or(0.0);
    let stamp = std::process::id();
    let cpu0 = cpu_seconds();
    let rss0 = rss();
    let t = Instant::now();
    // Users, from 8 threads.
    let token = args.admin_token.clone().context("no admin token")?;
    let parts: Vec<_> = (0..8)
        .map(|k| {
            let (url, token) = (args.url.clone(), token.clone());
            std::thread::spawn(move || -> anyhow::Result<Vec<String>> {
                let api = Client::new(&url, &token);
                (k..n)
                    .step_by(8)
                    .map(|i| add_im_user(&api, &format!("idle-{stamp}-{i}")))
                    .collect()
            })
        })
        .collect();
    let mut tokens = Vec::new();
    for p in parts {
        tokens.extend(p.join().map_err(|_| anyhow::anyhow!("a thread failed"))??);
    }
    tally.note(
        "session_users_per_s",
        round(n as f64 / t.elapsed().as_secs_f64(), 0),
    );
    let rss1 = rss();
    let t = Instant::now();
    let mut socks = Vec::with_capacity(n);
    for tok in &tokens {
        socks.push(connect_ws(&ws_url(&args.url, tok))?);
    }
    tally.note(
        "sessions_connected_per_s",
        round(n as f64 / t.elapsed().as_secs_f64(), 0),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while node_metric(&args.url, "switchboard_ws_sessions").unwrap_or(0.0) < n as f64 {
        if Instant::now() > deadline {
            bail!("the node does not count {n} WebSocket sessions");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss2 = rss();
    tally.note("sessions", n);
    tally.note("node_rss_bytes_before", rss0 as u64);
    tally.note(
        "node_rss_bytes_per_user",
        ((rss1 - rss0) / n as f64).round(),
    );
    tally.note(
        "node_rss_bytes_per_idle_session",
        ((rss2 - rss1) / n as f64).round(),
    );
    tally.setup_done(cpu0);
    Ok(socks)
}

pub(super) fn http(args: &BenchArgs, tally: &Tally) -> anyhow::Result<(Instant, Duration)> {
    let api = admin(args)?;
    let _idle = idle_sessions(args, tally)?;
    let (a, b) = bench_users(&api)?;
    let b_id = format!("bench-b-{}", std::process::id());
    // The recipient's session sees each message arrive.
    let mut sock = connect_ws(&ws_url(&args.url, &b))?;
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = sock.get_mut() {
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    }
    tally.store_from(node_store_counts(&args.url));
    let start = Instant::now();
    let deadline = start + args.timeout;
    let next = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = (0..args.inflight)
        .map(|_| {
            let (next, tally, url, a, to) = (
                next.clone(),
                tally.clone(),
                args.url.clone(),
                a.clone(),
                b_id.clone(),
            );
            let (n, size, rate) = (args.messages, args.size, args.rate);
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || Instant::now() > deadline {
                        return;
                    }
                    let req = json!({"to": to, "body": body(size, i)}).to_string();
                    let at = due(start, i, rate);
                    if let Some(t) = at {
                        std::thread::sleep(t.saturating_duration_since(Instant::now()));
                    }
                    let t0 = at.unwrap_or_else(Instant::now);
                    let resp = agent
                        .post(format!("{url}/v1/messages"))
                        .header("Authorization", format!("Bearer {a}"))
                        .header("Content-Type", "application/json")
                        .send(&req);
                    let mut resp = match resp {
                        Ok(r) => r,
                        Err(e) => {
                            tally.failed(format!("POST /v1/messages: {e}"));
                            continue;
                        }
                    };
                    let status = resp.status().as_u16();
                    let text = match resp.body_mut().read_to_string() {
                        Ok(t) => t,
                        Err(e) => {
                            tally.failed(format!("POST /v1/messages: {status}, reading: {e}"));
                            continue;
                        }
                    };
                    tally
                        .wire
                        .fetch_add((req.len() + text.len()) as u64, Ordering::Relaxed);
                    match serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|v| v["txn"].as_str().map(str::to_string))
                    {
                        Some(txn) if status == 202 => tally.started(txn, t0),
                        _ => tally.failed(format!("POST /v1/messages: {status} {text}")),
                    }
                }
            })
        })
        .collect();
    let mut tick = Instant::now();
    while tally.settled() < args.messages && Instant::now() < deadline {
        match sock.read() {
            Ok(tungstenite::Message::Text(t)) => {
                tally.wire.fetch_add(t.len() as u64, Ordering::Relaxed);
                if let Ok(v) = serde_json::from_str::<Value>(&t) {
                    if v["type"] == "message" {
                        if let Some(txn) = v["txn"].as_str() {
                            tally.delivered(txn.to_string());
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => bail!("the recipient's WebSocket failed: {e}"),
        }
        if tick.elapsed() > Duration::from_millis(200) {
            progress(tally, args.messages, start);
            tick = Instant::now();
        }
    }
    let elapsed = start.elapsed();
    for s in senders {
        let _ = s.join();
    }
    tally.store_to_node(&args.url);
    Ok((start, elapsed))
}

pub(super) fn ws(args: &BenchArgs, tally: &Tally) -> anyhow::Result<(Instant, Duration)> {
    let api = admin(args)?;
    let _idle = idle_sessions(args, tally)?;
    let (a, _) = bench_users(&api)?;
    let to = format!("bench-b-{}", std::process::id());
    let mut sock = connect_ws(&ws_url(&args.url, &a))?;
    if args.rate.is_some() {
        // Paced: wake up to send even when nothing arrives.
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = sock.get_mut() {
            let _ = s.set_read_timeout(Some(Duration::from_millis(1)));
        }
    }
    tally.store_from(node_store_counts(&args.url));
    let start = Instant::now();
    let deadline = start + args.timeout;
    let mut sent = 0usize;
    let mut ids: HashMap<u64, Instant> = HashMap::new();
    let mut tick = Instant::now();
    while tally.settled() < args.messages && Instant::now() < deadline {
        // Keep W in flight: pipeline sends, then read one frame.
        while sent < args.messages && sent - tally.settled() < args.inflight {
            let at = due(start, sent, args.rate);
            if at.is_some_and(|t| t > Instant::now()) {
                break;
            }
            let frame =
                json!({"type": "send", "id": sent, "to": to, "body": body(args.size, sent)})
                    .to_string();
            tally.wire.fetch_add(frame.len() as u64, Ordering::Relaxed);
            ids.insert(sent as u64, at.unwrap_or_else(Instant::now));
            sock.send(tungstenite::Message::text(frame))
                .context("sending on the WebSocket")?;
            sent += 1;
        }
        let msg = match sock.read() {
            Ok(m) => m,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e).context("reading the WebSocket"),
        };
        if let tungstenite::Message::Text(t) = msg {
            tally.wire.fetch_add(t.len() as u64, Ordering::Relaxed);
            let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
            match v["type"].as_str() {
                Some("accepted") => {
                    if let (Some(id), Some(txn)) = (v["id"].as_u64(), v["txn"].as_str()) {
                        if let Some(t0) = ids.remove(&id) {
                            tally.started(txn.to_string(), t0);
                        }
                    }
                }
                Some("receipt") if v["status"] == "delivered" => {
                    if let Some(txn) = v["txn"].as_str() {
                        tally.delivered(txn.to_string());
                    }
                }
                Some("rejected") | Some("error") => bail!("the node refused a message: {v}"),
                _ => {}
            }
        }
        if tick.elapsed() > Duration::from_millis(200) {
            progress(tally, args.messages, start);
            tick = Instant::now();
        }
    }
    let elapsed = start.elapsed();
    tally.store_to_node(&args.url);
    Ok((start, elapsed))
}
