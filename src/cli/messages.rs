//! Commands a user runs: `send` (optionally waiting for the outcome) and
//! `status`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use switchboard_core::store::TxnStatus;

use super::SendArgs;
use crate::client::{Client, Target};

pub(super) fn send(t: &Target, s: &SendArgs) -> anyhow::Result<()> {
    let c = Client::new(&t.url, &s.token);
    let mut body = json!({ "to": s.to, "body": s.text, "priority": s.priority });
    if let Some(subj) = &s.subject {
        body["subject"] = json!(subj);
    }
    if let Some(e) = s.expires_in {
        body["expires_in_s"] = json!(e);
    }
    let v = c.post("/v1/messages", &body)?;
    let txn = v["txn"]
        .as_str()
        .context("the node returned no txn")?
        .to_string();
    println!("{txn}");
    if !s.wait {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(s.wait_timeout);
    loop {
        let st = c.get(&format!("/v1/messages/{txn}"))?;
        let status = st["status"].as_str().unwrap_or("").to_string();
        if TxnStatus::FINAL_NAMES.contains(&status.as_str()) {
            let via = st["attempts"]
                .as_array()
                .and_then(|a| {
                    a.iter().rev().find(|x| {
                        x["outcome"] == json!("delivered") || x["outcome"] == json!("read")
                    })
                })
                .and_then(|a| a["mechanism"].as_str())
                .map(|m| format!(" via {m}"))
                .unwrap_or_default();
            println!("{status}{via}");
            if status == "delivered" || status == "read" {
                return Ok(());
            }
            bail!("message {txn} was not delivered: {status}");
        }
        if Instant::now() > deadline {
            bail!("message {txn} is still {status} after {}s", s.wait_timeout);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn print_status(v: &Value) {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    println!("txn       {}", s("txn"));
    println!("from      {}", s("from"));
    println!("to        {}", s("to"));
    println!("status    {}", s("status"));
    for a in v["attempts"].as_array().into_iter().flatten() {
        println!(
            "attempt {} {}:{} via {} at {} -> {}{}",
            a["attempt"],
            a["mechanism"].as_str().unwrap_or(""),
            a["address"].as_str().unwrap_or(""),
            a["gateway"].as_str().unwrap_or(""),
            a["started_at"].as_str().unwrap_or(""),
            a["outcome"].as_str().unwrap_or("pending"),
            a["reason"]
                .as_str()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
        );
    }
}

/// `status TXN`: a message's status and attempts, as the sender (or the
/// admin) sees them.
pub(super) fn status(t: &Target, txn: &str, token: &str) -> anyhow::Result<()> {
    let v = Client::new(&t.url, token).get(&format!("/v1/messages/{txn}"))?;
    print_status(&v);
    Ok(())
}
