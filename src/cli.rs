//! The `switchboard` command line (INTERFACES.md). `init`, `serve` and
//! `config` work on the local data directory and files; every other command
//! talks to the running node's HTTP API (sled allows one process per
//! database).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde_json::{json, Value};

use switchboard_core::protocol::MediumKind;
use switchboard_core::store::TxnStatus;

use crate::config::{Config, DEFAULT_TOML};
use crate::node::{self, ADMIN_TOKEN_FILE};

/// Switchboard: a unified messaging broker.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about)]
pub struct Cli {
    /// The node's HTTP API.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:8080",
        env = "SWITCHBOARD_URL"
    )]
    pub url: String,
    /// The admin token (default: DATA/admin.token of the configured data directory).
    #[arg(
        long,
        global = true,
        env = "SWITCHBOARD_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// A configuration file (TOML) over the embedded default.
    #[arg(short = 'c', long = "config", global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and initialise the data directory (broker key, member keys, admin token).
    Init {
        /// The data directory (default: the config's data.dir).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Run a node (everything in one process).
    Serve,
    /// Print the default configuration, or check one.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Manage users (admin).
    #[command(subcommand)]
    User(UserCmd),
    /// Send a message as a user.
    Send(SendArgs),
    /// Manage remote members and their keys (admin).
    #[command(subcommand)]
    Member(MemberCmd),
    /// Run one medium's gateway in this process, connected to a node over
    /// MIAP/TCP.
    Gateway(GatewayArgs),
    /// Run a content processor in this process, connected to a node over
    /// MIAP/TCP (its member made with `member add ID --processor KIND`).
    Processor(ProcessorArgs),
    /// The load generator: N messages through a node, from submit to
    /// delivered; reports msgs/s, latency, CPU, wire bytes, peak RSS.
    Bench(BenchCmd),
    /// Show a message's status and attempts.
    Status {
        /// The transaction id.
        txn: String,
        /// A user token (the sender's); default: the admin token.
        #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

/// `bench`.
#[derive(Debug, Args)]
pub struct BenchCmd {
    /// inproc (a node in this process), http, ws (a running node at --url)
    /// or tcp (a running node's MIAP port at --connect).
    #[arg(long, default_value = "inproc")]
    pub target: String,
    /// Messages to send.
    #[arg(long, default_value_t = 10_000)]
    pub messages: usize,
    /// Messages in flight at once (submitted, not yet delivered).
    #[arg(long, default_value_t = 256)]
    pub inflight: usize,
    /// Body size in bytes.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// The node's MIAP address, for --target tcp.
    #[arg(long)]
    pub connect: Option<String>,
    /// Durable writes (the only mode in this build).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub durable: bool,
    /// Print one JSON object last.
    #[arg(long)]
    pub json: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout_s: u64,
    /// Offer messages at this rate (msgs/s) instead of as fast as the
    /// window allows (still at most --inflight in flight).
    #[arg(long)]
    pub rate: Option<f64>,
    /// inproc: put this many users in the directory first and send between
    /// them (reports the provisioning rate, memory per user, and the start
    /// time of a node with them).
    #[arg(long, default_value_t = 0)]
    pub users: usize,
    /// http, ws: hold this many idle WebSocket sessions (one user each)
    /// open during the run (reports the node's memory per idle session).
    #[arg(long, default_value_t = 0)]
    pub sessions: usize,
}

/// `member` subcommands.
#[derive(Debug, Subcommand)]
pub enum MemberCmd {
    /// Create a remote member — a gateway (--medium) or a processor
    /// (--processor); writes its key file (mode 0600).
    Add {
        /// Member id (a-z 0-9 - _ .), e.g. gw-fax-2.
        id: String,
        /// The medium its gateway serves: im, email, sms or fax.
        #[arg(
            long,
            required_unless_present = "processor",
            conflicts_with = "processor"
        )]
        medium: Option<String>,
        /// What the processor converts: sms, email or fax.
        #[arg(long)]
        processor: Option<String>,
        /// Where to write the key file (default: ./ID.key).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Give a member a new key (the old one works for miap.key_grace_s);
    /// rewrites its key file.
    Rotate {
        /// Member id.
        id: String,
        /// The key file to write (default: ./ID.key).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Revoke a member: its logins and frames are refused from now on.
    Revoke {
        /// Member id.
        id: String,
    },
    /// List members (id, medium, key id, connected, logged in).
    List,
}

/// `gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// The medium: im, email, sms or fax.
    #[arg(long)]
    pub medium: String,
    /// How to reach the node.
    #[command(flatten)]
    pub link: LinkArgs,
    /// The gateway's own data directory (default: ./switchboard-gateway-MEMBER).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// `processor`.
#[derive(Debug, Args)]
pub struct ProcessorArgs {
    /// What it converts: sms (text → SMS segments), email (mail → text) or
    /// fax (text → fax pages).
    #[arg(long)]
    pub kind: String,
    /// How to reach the node.
    #[command(flatten)]
    pub link: LinkArgs,
}

/// A remote member's connection to the node.
#[derive(Debug, Args)]
pub struct LinkArgs {
    /// The node's MIAP address, host:port.
    #[arg(long)]
    pub connect: String,
    /// The member id (must match the key file).
    #[arg(long)]
    pub member: String,
    /// The key file `member add` wrote.
    #[arg(long)]
    pub key_file: PathBuf,
    /// Connect over TLS, trusting the roots in this PEM file (the node has
    /// `miap.tls_cert`).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// The name the node's certificate must carry (default: the host of
    /// --connect).
    #[arg(long, requires = "tls_ca")]
    pub tls_name: Option<String>,
}

impl LinkArgs {
    /// The key file (checked against --member) and the TLS wrap, if any.
    fn open(
        &self,
    ) -> anyhow::Result<(
        crate::remote::KeyFile,
        Option<switchboard_actors::transport::Wrap>,
    )> {
        let key = crate::remote::KeyFile::read(&self.key_file)?;
        if key.member != self.member {
            bail!(
                "the key file {} is for member {}, not {}",
                self.key_file.display(),
                key.member,
                self.member
            );
        }
        let tls = match &self.tls_ca {
            None => None,
            Some(ca) => {
                let host = self
                    .connect
                    .rsplit_once(':')
                    .map_or(self.connect.as_str(), |(h, _)| h)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let name = self.tls_name.clone().unwrap_or_else(|| host.to_string());
                Some(crate::tls::miap_client(ca, &name)?)
            }
        };
        Ok((key, tls))
    }
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the default configuration (every key, documented).
    Default,
    /// Validate a configuration file (with the environment's overrides).
    Check {
        /// The file.
        file: PathBuf,
    },
}

/// `user` subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Add a user; prints their API token (last line).
    Add(UserAdd),
    /// Show a user's profile (JSON).
    Show {
        /// User id.
        id: String,
    },
    /// List users.
    List,
    /// Remove a user.
    Remove {
        /// User id.
        id: String,
    },
    /// Issue a new token for a user (the old one stops working); prints it.
    Token {
        /// User id.
        id: String,
    },
}

/// `user add`: mechanisms in the order given are the preference order.
#[derive(Debug, Args)]
pub struct UserAdd {
    /// User id (a-z 0-9 . _ -).
    pub id: String,
    /// Display name.
    #[arg(long)]
    pub display_name: Option<String>,
    /// Reachable on IM (the built-in inbox).
    #[arg(long)]
    pub im: bool,
    /// Reachable by email at this address.
    #[arg(long)]
    pub email: Option<String>,
    /// Reachable by SMS at this number.
    #[arg(long)]
    pub sms: Option<String>,
    /// Reachable by fax at this number.
    #[arg(long)]
    pub fax: Option<String>,
}

/// `send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The sender's API token.
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Recipient: a user id or medium:address.
    #[arg(long)]
    pub to: String,
    /// low, normal or urgent.
    #[arg(long, default_value = "normal")]
    pub priority: String,
    /// Subject line.
    #[arg(long)]
    pub subject: Option<String>,
    /// Lifetime in seconds.
    #[arg(long)]
    pub expires_in: Option<u64>,
    /// Wait for the final outcome and print it.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, default_value_t = 60)]
    pub wait_timeout: u64,
    /// The text.
    pub text: String,
}

/// Parses the command line and runs the command.
///
/// # Errors
/// Anything that makes the command fail; `main` prints it on one line.
pub fn run() -> anyhow::Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    match &cli.command {
        Command::Serve => serve(&cli),
        Command::Init { data } => init(&cli, data.clone()),
        Command::Config(ConfigCmd::Default) => {
            print!("{DEFAULT_TOML}");
            Ok(())
        }
        Command::Config(ConfigCmd::Check { file }) => {
            Config::load(Some(file)).map_err(|e| anyhow!("{}: {e}", file.display()))?;
            println!("{}: ok", file.display());
            Ok(())
        }
        Command::User(u) => user(&cli, u, &matches),
        Command::Send(s) => send(&cli, s),
        Command::Member(m) => member(&cli, m),
        Command::Gateway(g) => gateway(&cli, g),
        Command::Processor(p) => processor(&cli, p),
        Command::Bench(b) => bench(&cli, b),
        Command::Status { txn, token } => {
            let token = match token {
                Some(t) => t.clone(),
                None => admin_token(&cli)?,
            };
            let v = Client::new(&cli.url, &token).get(&format!("/v1/messages/{txn}"))?;
            print_status(&v);
            Ok(())
        }
    }
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    Config::load(cli.config.as_deref()).map_err(|e| anyhow!("configuration: {e}"))
}

/// Sets up logging from the config (`RUST_LOG` wins).
pub fn init_logging(cfg: &Config) {
    crate::logging::init(cfg);
}

fn serve(cli: &Cli) -> anyhow::Result<()> {
    let cfg = load_config(cli)?;
    init_logging(&cfg);
    actix_rt::System::new().block_on(node::serve(cfg, cli.config.clone()))
}

fn init(cli: &Cli, data: Option<PathBuf>) -> anyhow::Result<()> {
    let mut cfg = load_config(cli)?;
    if let Some(d) = data {
        cfg.data.dir = d;
    }
    let dir = cfg.data.dir.clone();
    actix_rt::System::new().block_on(async move {
        let store = node::open_store(&dir)?;
        let directory =
            switchboard_core::directory::Directory::load(store, cfg.miap.key_grace_s * 1000)?;
        if directory.broker_key()?.is_some() {
            bail!(
                "{} is already initialised; refusing to overwrite it",
                dir.display()
            );
        }
        let token = node::initialise(&dir, &directory)
            .await?
            .context("the data directory was initialised concurrently")?;
        println!(
            "initialised {}; admin token (also in {}):",
            dir.display(),
            dir.join(ADMIN_TOKEN_FILE).display()
        );
        println!("{token}");
        Ok(())
    })
}

fn admin_token(cli: &Cli) -> anyhow::Result<String> {
    if let Some(t) = &cli.admin_token {
        return Ok(t.clone());
    }
    let cfg = load_config(cli)?;
    let path = cfg.data.dir.join(ADMIN_TOKEN_FILE);
    let t = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no --admin-token, no SWITCHBOARD_ADMIN_TOKEN, and cannot read {}",
            path.display()
        )
    })?;
    Ok(t.trim().to_string())
}

/// A small blocking client of the node's HTTP API.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Client {
    /// A client of the API at `base` using `token`.
    pub fn new(base: &str, token: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Self {
            agent,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    fn finish(
        &self,
        what: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Value> {
        let mut resp =
            resp.map_err(|e| anyhow!("{what}: cannot reach the node at {} ({e})", self.base))?;
        let status = resp.status();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(body);
        }
        let msg = body["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string());
        let code = body["error"]["code"].as_str().unwrap_or("error");
        bail!("{what}: {} {code}: {msg}", status.as_u16())
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// GET `path`.
    ///
    /// # Errors
    /// A transport failure or a non-2xx answer (with the API's message).
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", self.auth())
            .call();
        self.finish(&format!("GET {path}"), r)
    }

    /// POST `body` (JSON) to `path`.
    ///
    /// # Errors
    /// As [`Client::get`].
    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", self.auth())
            .send_json(body);
        self.finish(&format!("POST {path}"), r)
    }

    /// PUT `body` (JSON) to `path`, create-only when `create` (If-None-Match: *).
    ///
    /// # Errors
    /// As [`Client::get`].
    pub fn put(&self, path: &str, body: &Value, create: bool) -> anyhow::Result<Value> {
        let mut req = self
            .agent
            .put(format!("{}{path}", self.base))
            .header("Authorization", self.auth());
        if create {
            req = req.header("If-None-Match", "*");
        }
        self.finish(&format!("PUT {path}"), req.send_json(body))
    }

    /// DELETE `path`.
    ///
    /// # Errors
    /// As [`Client::get`].
    pub fn delete(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .agent
            .delete(format!("{}{path}", self.base))
            .header("Authorization", self.auth())
            .call();
        self.finish(&format!("DELETE {path}"), r)
    }
}

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

fn user(cli: &Cli, cmd: &UserCmd, matches: &ArgMatches) -> anyhow::Result<()> {
    let c = Client::new(&cli.url, &admin_token(cli)?);
    match cmd {
        UserCmd::Add(u) => {
            let mut profile =
                json!({ "id": u.id, "mechanisms": mechanisms_in_given_order(u, matches) });
            if let Some(n) = &u.display_name {
                profile["display_name"] = json!(n);
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

fn member(cli: &Cli, cmd: &MemberCmd) -> anyhow::Result<()> {
    let c = Client::new(&cli.url, &admin_token(cli)?);
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

fn bench(cli: &Cli, b: &BenchCmd) -> anyhow::Result<()> {
    if !b.durable {
        bail!("--durable false is not in this build: every write is durable");
    }
    let cfg = load_config(cli)?;
    let admin_token = match b.target.as_str() {
        "inproc" => None,
        "http" | "ws" | "tcp" => Some(admin_token(cli)?),
        other => bail!("--target {other:?}: use inproc, http, ws or tcp"),
    };
    let args = crate::bench::BenchArgs {
        target: b.target.clone(),
        messages: b.messages,
        inflight: b.inflight,
        size: b.size,
        url: cli.url.clone(),
        connect: b.connect.clone(),
        admin_token,
        timeout: Duration::from_secs(b.timeout_s),
        rate: b.rate,
        users: b.users,
        sessions: b.sessions,
    };
    let report = crate::bench::run(&args, &cfg)?;
    println!("{}", report.text());
    if b.json {
        println!("{}", report.json());
    }
    Ok(())
}

fn gateway(cli: &Cli, g: &GatewayArgs) -> anyhow::Result<()> {
    let cfg = load_config(cli)?;
    init_logging(&cfg);
    let medium: MediumKind = g
        .medium
        .parse()
        .map_err(|_| anyhow!("--medium {:?}: use im, email, sms or fax", g.medium))?;
    let (_, tls) = g.link.open()?;
    let r = crate::remote::RemoteGateway {
        medium,
        connect: g.link.connect.clone(),
        key_file: g.link.key_file.clone(),
        tls,
        data: g
            .data
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("switchboard-gateway-{}", g.link.member))),
    };
    actix_rt::System::new().block_on(crate::remote::run(cfg, r))
}

fn processor(cli: &Cli, p: &ProcessorArgs) -> anyhow::Result<()> {
    let cfg = load_config(cli)?;
    init_logging(&cfg);
    if crate::processors::spec_of(&p.kind).is_none() {
        bail!(
            "--kind {:?}: use {}",
            p.kind,
            crate::processors::KINDS.join(", ")
        );
    }
    let (key, tls) = p.link.open()?;
    actix_rt::System::new().block_on(crate::remote::run_processor(
        cfg,
        &p.kind,
        &p.link.connect,
        key,
        tls,
    ))
}

fn send(cli: &Cli, s: &SendArgs) -> anyhow::Result<()> {
    let c = Client::new(&cli.url, &s.token);
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
