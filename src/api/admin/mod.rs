//! Admin endpoints (admin token), one file per resource: [`users`],
//! [`members`], [`managers`] (delivery managers), [`records`]
//! (transactions and accounting), [`cluster`], [`token`] (the admin
//! token's rotation), [`policy`] (domains, groups, rules), [`quarantine`]
//! (messages held for a reviewer), [`archive`] (search and verify the
//! compliance archive).

pub mod archive;
pub mod cluster;
pub mod managers;
pub mod members;
pub mod policy;
pub mod quarantine;
pub mod records;
pub mod token;
pub mod users;

use crate::http::error::ApiError;

/// The answer when an actor is gone (the node is shutting down).
pub(super) fn gone() -> ApiError {
    ApiError::unavailable("unavailable", "the node is shutting down")
}
