//! Node assembly — everything in one process — in the order it happens:
//! the data directory ([`init`]), the actors and shared state
//! ([`assembly`]: [`Core`], then [`Node`] with the HTTP API), the optional
//! mediums' gateways and the MIAP listener ([`mediums`]), configuration
//! reload ([`reload`]), signals and the run loop ([`signals`]), and the
//! ordered shutdown ([`shutdown`]): stop accepting, drain every gateway's
//! in-flight steps, flush the store, stop the actors.
//!
//! Owns: start, reload and stop. Must not touch: what the actors decide;
//! the API does not import this module (it gets an `ApiState`).

pub mod archive;
pub mod assembly;
pub mod init;
pub mod mediums;
pub mod reload;
pub mod shutdown;
pub mod signals;

pub use assembly::{wait_logged_in, Core, Node};
pub use init::{initialise, open_store, ADMIN_TOKEN_FILE};
pub use mediums::{fax_spool, fax_spool_in, start_email_with, start_sms_with};
pub use signals::{sd_notify, serve, Sig, Signals};
