//! Switchboard, the product shell: the command line, the configuration, the
//! HTTP API, the medium implementations and node assembly. The runtime (the
//! actors) is `switchboard-actors`; what it decides with (the protocol, the
//! store, the directory, delivery policy, the broker's transaction state
//! machine) is `switchboard-core`, which has no actix.
//!
//! # Rooms
//! | module | owns | may use |
//! |---|---|---|
//! | [`config`], [`logging`], [`tls`], [`http`], [`content`] | configuration; logs; TLS; HTTP plumbing (the error shape, times, `/healthz`, running a server); content formats (MIME, GSM 03.38, fax PDF) | nothing of the shell but `config` |
//! | [`archive`] | the compliance archive's paths, signing key file and search (reading its files) | `config`, `http`, `secrets` |
//! | [`cluster`] | this node's membership of a cluster: join, heartbeat, takeover of dead nodes, leave, status | `config` |
//! | [`processors`] | content converters (processor hops) | `content` |
//! | [`gateways`] | each medium's wire (SMTP, SMPP, the fax spool, the IM inbox and WebSocket) and the IM clients' send path | `content`, `http`, `config`, `tls` |
//! | [`console`] | the web console's embedded pages, scripts and styles, and the headers they go with | `http` |
//! | [`api`] | the HTTP API (and serving the console) | `gateways`, `processors`, `http`, `cluster`, `console` |
//! | [`node`] | start, reload, signals, ordered shutdown | everything above |
//! | [`remote`] | one remote member's process | `node`, `gateways`, `processors` |
//! | [`client`] | how a command reaches a running node | `config`, `node` (the token file's name) |
//! | [`cli`], [`bench`](mod@bench) | the commands; the load generator | `client`, `node`, `config` — never each other |
//!
//! No module imports one that imports it (`../shared/tools/module-cycles`
//! checks every crate); `docs/ARCHITECTURE.md` walks a message through the
//! rooms.

pub mod api;
pub mod archive;
pub mod bench;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod console;
pub mod content;
pub mod gateways;
pub mod http;
pub mod limits;
pub mod logging;
pub mod node;
pub mod processors;
pub mod remote;
pub mod secrets;
pub mod tls;
