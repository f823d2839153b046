//! The names of what a cluster keeps in JetStream, in one place.

/// The journal stream: every node's durable facts, one subject per node.
pub const JOURNAL_STREAM: &str = "SB_JOURNAL";

/// The journal stream's subjects.
pub const JOURNAL_SUBJECTS: &str = "sb.journal.>";

/// The journal subject of `node`.
pub fn journal_subject(node: &str) -> String {
    format!("sb.journal.{node}")
}

/// Node liveness: `node id` → its [`super::status::NodeRecord`] (JSON),
/// put every heartbeat.
pub const NODES_BUCKET: &str = "sb_nodes";

/// Where users' sessions are: short-lived entries refreshed by heartbeats.
pub const PRESENCE_BUCKET: &str = "sb_presence";

/// The store-of-record bucket of a tree (`sb_` + the tree's name).
pub fn tree_bucket(tree: &str) -> String {
    format!("sb_{tree}")
}

/// How long JetStream remembers a publish's `Nats-Msg-Id`, so that a
/// publish retried after a lost acknowledgement is stored once.
pub const DUPLICATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(120);

/// The archive stream: every node's archive records, one subject per node
/// (`super::archive`).
pub const ARCHIVE_STREAM: &str = "SB_ARCHIVE";

/// The archive stream's subjects.
pub const ARCHIVE_SUBJECTS: &str = "sb.archive.>";

/// The archive subject of `node`.
pub fn archive_subject(node: &str) -> String {
    format!("sb.archive.{node}")
}
