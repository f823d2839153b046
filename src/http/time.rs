//! RFC 3339 times for the API: the core's, where the status and the
//! history pages both find them.

pub use switchboard_core::time::{parse_time, rfc3339};
