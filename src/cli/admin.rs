//! Admin commands over the node's API: `user` (profiles and tokens) and
//! `member` (remote members and their key files).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::ArgMatches;
use serde_json::{json, Value};

use super::{MemberCmd, UserAdd, UserCmd};
use crate::client::Target;

fn mechanisms_in_given_order(u: &UserAdd, m: &ArgMatches) -> Vec<Value> {
    let sub = m
        .subcommand_matches("user")
        .and_then(|u| u.subcommand_matches("add"));
    let at = |name: &str| sub.and_then(|s| s.index_of(name)).unwrap_or(usize::MAX);
    let mut v: Vec<(usize, Value)> = Vec::new();
    if u.im {
        v.push((at("im"), json!({"medium": "im", "address": u.id})));
    }
    for (name, val) in [("email", &u.email), ("sms", &u.sms), ("fax", &u.fax)] {
        if let Some(a) = val {
            v.push((at(name), json!({"medium": name, "address": a})));
        }
    }
    if v.is_empty() {
        v.push((0, json!({"medium": "im", "address": u.id})));
    }
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, m)| m).collect()
}

/// A profile's mechanisms as `medium:address` words.
fn mechanisms_text(profile: &Value) -> Vec<String> {
    profile["mechanisms"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "{}:{}",
                m["medium"].as_str().unwrap_or(""),
                m["address"].as_str().unwrap_or("")
            )
        })
        .collect()
}

pub(super) fn user(t: &Target, cmd: &UserCmd, matches: &ArgMatches) -> anyhow::Result<()> {
    let c = t.admin()?;
    match cmd {
        UserCmd::Add(u) => {
            let mut profile =
                json!({ "id": u.id, "mechanisms": mechanisms_in_given_order(u, matches) });
            if let Some(n) = &u.display_name {
                profile["display_name"] = json!(n);
            }
            if let Some(n) = &u.home_node {
                profile["home_node"] = json!(n);
            }
            if let Some(d) = &u.domain {
                profile["domain"] = json!(d);
            }
            if !u.attrs.is_empty() {
                let mut attrs = serde_json::Map::new();
                for a in &u.attrs {
                    let (k, v) = a
                        .split_once('=')
                        .with_context(|| format!("--attr {a:?} is not KEY=VALUE"))?;
                    attrs.insert(k.trim().to_string(), json!(v));
                }
                profile["attrs"] = Value::Object(attrs);
            }
            if !u.contacts.is_empty() {
                profile["contacts"] = json!(u.contacts);
            }
            if !u.groups.is_empty() {
                profile["groups"] = json!(u.groups);
                // A group named for the first time is made (with no
                // predicate: its members are the users who name it).
                for g in &u.groups {
                    if c.get(&format!("/v1/admin/groups/{g}")).is_err() {
                        c.put(&format!("/v1/admin/groups/{g}"), &json!({}), false)?;
                    }
                }
            }
            let v = c.put(&format!("/v1/admin/users/{}", u.id), &profile, true)?;
            let mechs = mechanisms_text(&profile);
            println!("added user {} ({})", u.id, mechs.join(", "));
            println!(
                "{}",
                v["token"].as_str().context("the node returned no token")?
            );
        }
        UserCmd::Show { id } => {
            let v = c.get(&format!("/v1/admin/users/{id}"))?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        UserCmd::List => {
            let mut after: Option<String> = None;
            loop {
                let q = after
                    .as_ref()
                    .map_or(String::new(), |a| format!("?after={a}"));
                let v = c.get(&format!("/v1/admin/users{q}"))?;
                for u in v["users"].as_array().into_iter().flatten() {
                    let mechs = mechanisms_text(u);
                    println!("{}\t{}", u["id"].as_str().unwrap_or(""), mechs.join(" "));
                }
                match v["next"].as_str() {
                    Some(n) => after = Some(n.to_string()),
                    None => break,
                }
            }
        }
        UserCmd::Remove { id } => {
            c.delete(&format!("/v1/admin/users/{id}"))?;
            println!("removed user {id}");
        }
        UserCmd::Token { id } => {
            let v = c.post(&format!("/v1/admin/users/{id}/token"), &json!({}))?;
            println!("new token for {id} (the old one no longer works):");
            println!(
                "{}",
                v["token"].as_str().context("the node returned no token")?
            );
        }
    }
    Ok(())
}

fn write_key_file(v: &Value, id: &str, path: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    let key: crate::remote::KeyFile =
        serde_json::from_value(v.clone()).context("the node returned no key")?;
    let path = path
        .cloned()
        .unwrap_or_else(|| PathBuf::from(format!("{id}.key")));
    key.write(&path)?;
    Ok(path)
}

pub(super) fn member(t: &Target, cmd: &MemberCmd) -> anyhow::Result<()> {
    let c = t.admin()?;
    match cmd {
        MemberCmd::Add {
            id,
            medium,
            processor,
            key_file,
        } => {
            let body = match (medium, processor) {
                (Some(m), _) => json!({ "medium": m }),
                (None, p) => json!({ "processor": p }),
            };
            let what = medium
                .clone()
                .unwrap_or_else(|| format!("{} processor", processor.as_deref().unwrap_or("")));
            let v = c.put(&format!("/v1/admin/members/{id}"), &body, true)?;
            let path = write_key_file(&v, id, key_file.as_ref())?;
            println!(
                "added member {id} ({what}); its key is in {}",
                path.display()
            );
        }
        MemberCmd::Rotate { id, key_file } => {
            let v = c.post(&format!("/v1/admin/members/{id}/rotate"), &json!({}))?;
            let path = write_key_file(&v, id, key_file.as_ref())?;
            println!(
                "new key {} for {id} in {} (the old one works for the grace period)",
                v["key_id"],
                path.display()
            );
        }
        MemberCmd::Revoke { id } => {
            c.delete(&format!("/v1/admin/members/{id}"))?;
            println!("revoked member {id}");
        }
        MemberCmd::List => {
            let v = c.get("/v1/admin/members")?;
            for m in v["members"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}\tkey {}\t{}{}",
                    m["id"].as_str().unwrap_or(""),
                    m["medium"].as_str().unwrap_or("-"),
                    m["key_id"],
                    if m["logged_in"] == true {
                        "logged in"
                    } else if m["connected"] == true {
                        "connected"
                    } else {
                        "not connected"
                    },
                    if m["revoked"] == true {
                        " (revoked)"
                    } else {
                        ""
                    },
                );
            }
        }
    }
    Ok(())
}

/// `admin-token rotate`.
pub(super) fn rotate_admin_token(t: &Target, show: bool) -> anyhow::Result<()> {
    let v = t.admin()?.post("/v1/admin/token", &serde_json::json!({}))?;
    let token = v["token"].as_str().context("the node returned no token")?;
    match v["file"].as_str() {
        Some(file) => println!("switchboard: the admin token was rotated; the new one is in {file} (on the node's machine)"),
        None => println!("switchboard: the admin token was rotated, but the node could not write its file (see its log)"),
    }
    if show || v["file"].is_null() {
        println!("{token}");
    }
    Ok(())
}
