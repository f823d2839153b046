//! Switchboard, the product shell: CLI, configuration, the HTTP API, the
//! medium implementations and node assembly. The runtime (protocol, store,
//! actors) is the `switchboard-actors` crate.

pub mod api;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod content;
pub mod gateways;
pub mod http;
pub mod logging;
pub mod node;
pub mod processors;
pub mod remote;
pub mod tls;
