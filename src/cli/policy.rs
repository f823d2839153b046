//! Enterprise policy commands over the node's API: `domain`, `group` and
//! `policy` (COMPLIANCE.md).

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::client::Target;

/// `domain` subcommands.
#[derive(Debug, Subcommand)]
pub enum DomainCmd {
    /// Add or replace a domain's settings.
    Add(DomainAdd),
    /// Show a domain (JSON).
    Show {
        /// The domain.
        domain: String,
    },
    /// List domains.
    List,
    /// Remove a domain no rule names.
    Remove {
        /// The domain.
        domain: String,
    },
}

/// `domain add`.
#[derive(Debug, Args)]
pub struct DomainAdd {
    /// The domain (lowercase, e.g. corp.example).
    pub domain: String,
    /// Managed by this enterprise.
    #[arg(long)]
    pub managed: bool,
    /// In a cluster: the node its users are served by.
    #[arg(long)]
    pub home_node: Option<String>,
    /// Its users may only be served by their home node.
    #[arg(long)]
    pub require_redirect: bool,
    /// Messages outside the domain, unless a rule decides: allow or deny.
    #[arg(long, default_value = "allow")]
    pub external: String,
    /// A notice shown once per conversation with an external party.
    #[arg(long)]
    pub banner: Option<String>,
    /// Archive every delivery of its users.
    #[arg(long)]
    pub archive: bool,
}

/// `quarantine` subcommands.
#[derive(Debug, Subcommand)]
pub enum QuarantineCmd {
    /// Messages held for a reviewer, newest first.
    List,
    /// One held message with its content (JSON).
    Show {
        /// The transaction id.
        txn: String,
    },
    /// Release a held message: it is routed as usual.
    Release {
        /// The transaction id.
        txn: String,
    },
    /// Reject a held message: blocked, its sender told.
    Reject {
        /// The transaction id.
        txn: String,
    },
}

/// `group` subcommands.
#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Add or replace a group.
    Add {
        /// Its name (a-z 0-9 . _ -).
        name: String,
        /// Users with all these attributes are members: KEY=VALUE,….
        #[arg(long = "where")]
        predicate: Option<String>,
        /// A static member (repeatable).
        #[arg(long = "member")]
        members: Vec<String>,
    },
    /// Show a group and who is a member now (JSON).
    Show {
        /// Its name.
        name: String,
    },
    /// List groups.
    List,
    /// Remove a group no rule names.
    Remove {
        /// Its name.
        name: String,
    },
}

/// `policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Add or replace a rule from a JSON file (`-`: standard input).
    Add {
        /// The rule (COMPLIANCE.md's shape, with its id).
        file: PathBuf,
    },
    /// List the rules in the order they are walked.
    List,
    /// Show a rule (JSON).
    Show {
        /// Its id.
        id: String,
    },
    /// Remove a rule.
    Remove {
        /// Its id.
        id: String,
    },
    /// Which rules a message would match, and the outcome (changes nothing).
    Test(PolicyTestArgs),
}

/// `policy test`.
#[derive(Debug, Args)]
pub struct PolicyTestArgs {
    /// The sender: a user id, or medium:address.
    #[arg(long)]
    pub from: String,
    /// The recipient: a user id, or medium:address.
    #[arg(long)]
    pub to: String,
    /// The text (the content stage runs too).
    #[arg(long)]
    pub body: Option<String>,
    /// The medium it would go over (im, email, sms, fax).
    #[arg(long)]
    pub medium: Option<String>,
    /// low, normal or urgent.
    #[arg(long, default_value = "normal")]
    pub priority: String,
    /// The content type of the body.
    #[arg(long)]
    pub content_type: Option<String>,
}

/// `KEY=VALUE,…` as a JSON object.
pub(super) fn pairs(text: &str) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut m = serde_json::Map::new();
    for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("{pair:?} is not KEY=VALUE"))?;
        m.insert(k.trim().to_string(), json!(v.trim()));
    }
    Ok(m)
}

pub(super) fn domain(t: &Target, cmd: &DomainCmd) -> anyhow::Result<()> {
    let c = t.admin()?;
    match cmd {
        DomainCmd::Add(d) => {
            let mut body = json!({
                "managed": d.managed,
                "require_redirect": d.require_redirect,
                "external": d.external,
                "archive": d.archive,
            });
            if let Some(n) = &d.home_node {
                body["home_node"] = json!(n);
            }
            if let Some(b) = &d.banner {
                body["banner"] = json!(b);
            }
            c.put(&format!("/v1/admin/domains/{}", d.domain), &body, false)?;
            println!("domain {} set", d.domain);
        }
        DomainCmd::Show { domain } => {
            let v = c.get(&format!("/v1/admin/domains/{domain}"))?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        DomainCmd::List => {
            let v = c.get("/v1/admin/domains")?;
            for (name, d) in v["domains"].as_object().into_iter().flatten() {
                let managed = if d["managed"] == true {
                    "managed"
                } else {
                    "unmanaged"
                };
                println!(
                    "{name}\t{managed}\texternal {}",
                    d["external"].as_str().unwrap_or("allow")
                );
            }
        }
        DomainCmd::Remove { domain } => {
            c.delete(&format!("/v1/admin/domains/{domain}"))?;
            println!("removed domain {domain}");
        }
    }
    Ok(())
}

pub(super) fn group(t: &Target, cmd: &GroupCmd) -> anyhow::Result<()> {
    let c = t.admin()?;
    match cmd {
        GroupCmd::Add {
            name,
            predicate,
            members,
        } => {
            let mut body = json!({ "members": members });
            if let Some(p) = predicate {
                body["where"] = Value::Object(pairs(p)?);
            }
            c.put(&format!("/v1/admin/groups/{name}"), &body, false)?;
            println!("group {name} set");
        }
        GroupCmd::Show { name } => {
            let v = c.get(&format!("/v1/admin/groups/{name}"))?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        GroupCmd::List => {
            let v = c.get("/v1/admin/groups")?;
            for (name, g) in v["groups"].as_object().into_iter().flatten() {
                let w: Vec<String> = g["where"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect();
                println!(
                    "{name}\twhere {}",
                    if w.is_empty() {
                        "-".into()
                    } else {
                        w.join(",")
                    }
                );
            }
        }
        GroupCmd::Remove { name } => {
            c.delete(&format!("/v1/admin/groups/{name}"))?;
            println!("removed group {name}");
        }
    }
    Ok(())
}

pub(super) fn policy(t: &Target, cmd: &PolicyCmd) -> anyhow::Result<()> {
    let c = t.admin()?;
    match cmd {
        PolicyCmd::Add { file } => {
            let mut text = String::new();
            if file.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut text)?;
            } else {
                text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
            }
            let rule: Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not JSON", file.display()))?;
            let id = rule["id"]
                .as_str()
                .with_context(|| format!("{}: the rule has no \"id\"", file.display()))?;
            let v = c.put(&format!("/v1/admin/policy/rules/{id}"), &rule, false)?;
            println!("rule {id} set (version {})", v["version"]);
        }
        PolicyCmd::List => {
            let v = c.get("/v1/admin/policy/rules")?;
            for r in v["rules"].as_array().into_iter().flatten() {
                println!(
                    "{}\tpriority {}\t{}\t{}\tv{}",
                    r["id"].as_str().unwrap_or(""),
                    r["priority"],
                    r["stage"].as_str().unwrap_or(""),
                    r["action"]["type"].as_str().unwrap_or(""),
                    r["version"]
                );
            }
        }
        PolicyCmd::Show { id } => {
            let v = c.get(&format!("/v1/admin/policy/rules/{id}"))?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        PolicyCmd::Remove { id } => {
            c.delete(&format!("/v1/admin/policy/rules/{id}"))?;
            println!("removed rule {id}");
        }
        PolicyCmd::Test(a) => {
            let mut body = json!({"from": a.from, "to": a.to, "priority": a.priority});
            for (k, v) in [
                ("body", &a.body),
                ("medium", &a.medium),
                ("content_type", &a.content_type),
            ] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            let v = c.post("/v1/admin/policy/test", &body)?;
            print!("{}", describe("meta stage (broker)", &v["meta"]));
            if !v["content"].is_null() {
                print!("{}", describe("content stage (filter)", &v["content"]));
            }
        }
    }
    Ok(())
}

/// One stage's outcome as lines of text.
fn describe(stage: &str, o: &Value) -> String {
    let outcome = o["outcome"].as_str().unwrap_or("?");
    let mut s = match (o["rule"].as_str(), o["detail"].as_str()) {
        (Some(rule), Some(detail)) => format!("{stage}: {outcome} by {rule} ({detail})\n"),
        (Some(rule), None) => format!("{stage}: {outcome} by {rule}\n"),
        _ => format!("{stage}: {outcome}\n"),
    };
    let applied: Vec<String> = o["applied"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            format!(
                "{} v{} {}",
                a["rule"].as_str().unwrap_or(""),
                a["version"],
                a["action"].as_str().unwrap_or("")
            )
        })
        .collect();
    s += &format!(
        "  rules applied: {}\n",
        if applied.is_empty() {
            "none".into()
        } else {
            applied.join(", ")
        }
    );
    for (key, label) in [
        ("tags", "tags"),
        ("notify", "supervisors told"),
        ("warn", "notices"),
    ] {
        let items: Vec<&str> = o[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !items.is_empty() {
            s += &format!("  {label}: {}\n", items.join("; "));
        }
    }
    if let Some(a) = o["archive"].as_str() {
        s += &format!("  archived in: {a}\n");
    }
    if o["strip_p2p"] == true {
        s += "  no point-to-point delivery\n";
    }
    s
}

pub(super) fn quarantine(t: &Target, cmd: &QuarantineCmd) -> anyhow::Result<()> {
    let c = t.admin()?;
    match cmd {
        QuarantineCmd::List => {
            let v = c.get("/v1/admin/quarantine")?;
            for m in v["messages"].as_array().into_iter().flatten() {
                let s = |k: &str| m[k].as_str().unwrap_or("").to_string();
                println!(
                    "{}\t{} -> {}\t{}\t{}\theld {}",
                    s("txn"),
                    s("from"),
                    s("to"),
                    s("reason"),
                    s("stage"),
                    s("held_at")
                );
            }
        }
        QuarantineCmd::Show { txn } => {
            let v = c.get(&format!("/v1/admin/quarantine/{txn}"))?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        QuarantineCmd::Release { txn } | QuarantineCmd::Reject { txn } => {
            let verb = match cmd {
                QuarantineCmd::Release { .. } => "release",
                _ => "reject",
            };
            let v = c.post(&format!("/v1/admin/quarantine/{txn}/{verb}"), &json!({}))?;
            println!("{txn}: {}", v["status"].as_str().unwrap_or(""));
        }
    }
    Ok(())
}
