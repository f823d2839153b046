//! The `switchboard` command line (INTERFACES.md). `init`, `serve` and
//! `config` work on the local data directory and files ([`local`]); `user`,
//! `member`, `send` and `status` talk to the running node's HTTP API
//! ([`admin`], [`messages`]; sled allows one process per database);
//! `gateway` and `processor` run one remote member in this process
//! ([`members`]). The load generator (`switchboard bench`) is its own module
//! tree; the binary puts the two side by side.
//!
//! Owns: parsing and printing. Must not touch: the node's state (it starts a
//! node, or asks a running one over HTTP).

pub mod admin;
pub mod archive;
pub mod cluster;
pub mod local;
pub mod members;
pub mod messages;
pub mod policy;

use std::path::PathBuf;

use anyhow::anyhow;
use clap::{ArgMatches, Args, Subcommand};

use crate::client::Target;
use crate::config::{Config, DEFAULT_TOML};

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
    /// The cluster over NATS JetStream: make its streams and buckets, or
    /// show its nodes and streams (the `[cluster]` keys say where NATS is).
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// The admin token (admin).
    #[command(subcommand)]
    AdminToken(AdminTokenCmd),
    /// Enterprise domains (admin).
    #[command(subcommand)]
    Domain(policy::DomainCmd),
    /// Groups of users, static or by attributes (admin).
    #[command(subcommand)]
    Group(policy::GroupCmd),
    /// Enterprise policy rules, and what they would do to a message (admin).
    #[command(subcommand)]
    Policy(policy::PolicyCmd),
    /// Messages enterprise policy holds for a reviewer: list, show,
    /// release, reject (admin).
    #[command(subcommand)]
    Quarantine(policy::QuarantineCmd),
    /// The compliance archive: verify its records, chain and checkpoints.
    #[command(subcommand)]
    Archive(archive::ArchiveCmd),
    /// Show a message's status and attempts.
    Status {
        /// The transaction id.
        txn: String,
        /// A user token (the sender's); default: the admin token.
        #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

/// `admin-token` subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminTokenCmd {
    /// Replace it: the node writes the new one to DATA/admin.token (0600)
    /// and the current one stops working. Prints where it is, not what it
    /// is (a log may keep stdout).
    Rotate {
        /// Print the new token as well (for a node on another machine).
        #[arg(long)]
        show: bool,
    },
}

/// `cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Create the cluster's streams and buckets with `cluster.replicas`
    /// copies, or bring existing ones to that number (idempotent).
    Init,
    /// The nodes (alive, last heartbeat, open transactions) and the
    /// JetStream servers and streams, as JSON.
    Status,
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
    Add(Box<UserAdd>),
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
    /// In a cluster: the node whose gateways deliver to this user.
    #[arg(long)]
    pub home_node: Option<String>,
    /// The user's domain (enterprise policy).
    #[arg(long)]
    pub domain: Option<String>,
    /// An attribute enterprise policy reads, KEY=VALUE (repeatable).
    #[arg(long = "attr")]
    pub attrs: Vec<String>,
    /// A group the user is a static member of (repeatable; made when new).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// A user whose presence this one follows and is shown (repeatable;
    /// the profile's `contacts`).
    #[arg(long = "contact")]
    pub contacts: Vec<String>,
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

/// Runs `command` against `t`; `matches` are the parsed arguments (a user's
/// mechanisms keep the order they were given in).
///
/// # Errors
/// Anything that makes the command fail; `main` prints it on one line.
pub fn run(t: &Target, command: &Command, matches: &ArgMatches) -> anyhow::Result<()> {
    match command {
        Command::Serve => local::serve(t),
        Command::Init { data } => local::init(t, data.clone()),
        Command::Config(ConfigCmd::Default) => {
            print!("{DEFAULT_TOML}");
            Ok(())
        }
        Command::Config(ConfigCmd::Check { file }) => {
            let cfg = Config::load(Some(file)).map_err(|e| anyhow!("{}: {e}", file.display()))?;
            for w in cfg.warnings() {
                eprintln!("{}: warning: {w}", file.display());
            }
            println!("{}: ok", file.display());
            Ok(())
        }
        Command::User(u) => admin::user(t, u, matches),
        Command::Send(s) => messages::send(t, s),
        Command::Member(m) => admin::member(t, m),
        Command::Gateway(g) => members::gateway(t, g),
        Command::Processor(p) => members::processor(t, p),
        Command::Cluster(c) => cluster::cluster(t, c),
        Command::AdminToken(AdminTokenCmd::Rotate { show }) => admin::rotate_admin_token(t, *show),
        Command::Domain(d) => policy::domain(t, d),
        Command::Group(g) => policy::group(t, g),
        Command::Policy(p) => policy::policy(t, p),
        Command::Quarantine(q) => policy::quarantine(t, q),
        Command::Archive(a) => archive::archive(t, a),
        Command::Status { txn, token } => {
            let token = match token {
                Some(token) => token.clone(),
                None => t.admin_token()?,
            };
            messages::status(t, txn, &token)
        }
    }
}
