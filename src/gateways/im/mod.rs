//! The built-in IM medium: a message to `im:<user>` is delivered once it is
//! durably in that user's inbox (like mail in a mailbox); the user reads it
//! through the API (`GET /v1/inbox`) and marks it read, which becomes the
//! `Read` report.

use switchboard_actors::directory::Directory;
use switchboard_actors::medium::futures_like::LocalBoxFuture;
use switchboard_actors::medium::{Delivery, Health, Medium, NonDelivery};
use switchboard_actors::protocol::MediumKind;
use switchboard_actors::store::records::enc;
use switchboard_actors::store::{InboxEntry, Store, Tree, WriteBatch};

/// The member id of the built-in IM gateway.
pub const MEMBER_ID: &str = "gw-im-1";

/// The IM inbox medium.
pub struct ImMedium {
    store: Store,
    directory: Directory,
}

impl ImMedium {
    /// An IM medium over the node's store.
    pub fn new(store: Store, directory: Directory) -> Self {
        Self { store, directory }
    }
}

impl Medium for ImMedium {
    fn kind(&self) -> MediumKind {
        MediumKind::Im
    }

    fn health(&self) -> Health {
        Health {
            up: true,
            detail: "inbox in the node's store".into(),
        }
    }

    fn deliver(&mut self, d: Delivery) -> LocalBoxFuture<'static, Result<(), NonDelivery>> {
        let user = d
            .route
            .recipient_user
            .clone()
            .unwrap_or_else(|| d.route.address.clone());
        if self.directory.profile(&user).is_none() {
            return Box::pin(async move { Err(NonDelivery(format!("no IM user {user:?}"))) });
        }
        // Idempotent on txn: a second delivery of the same message is a no-op.
        match self
            .store
            .get(Tree::InboxIndex, &InboxEntry::index_key(&user, &d.txn))
        {
            Ok(Some(_)) => return Box::pin(async { Ok(()) }),
            Ok(None) => {}
            Err(e) => {
                return Box::pin(async move { Err(NonDelivery(format!("inbox unavailable: {e}"))) })
            }
        }
        let seq = match self.store.next_id() {
            Ok(s) => s,
            Err(e) => {
                return Box::pin(async move { Err(NonDelivery(format!("inbox unavailable: {e}"))) })
            }
        };
        let entry = InboxEntry {
            txn: d.txn,
            from: d.from,
            body: String::from_utf8_lossy(&d.content).into_owned(),
            subject: d.subject,
            sent_at_ms: d.sent_at_ms,
            attempt: d.attempt,
            id: d.id,
            read: false,
        };
        let mut b = WriteBatch::new();
        b.insert(Tree::Inbox, InboxEntry::key(&user, seq), enc(&entry));
        b.insert(
            Tree::InboxIndex,
            InboxEntry::index_key(&user, &d.txn),
            seq.to_be_bytes().to_vec(),
        );
        let write = self.store.writer().write(b);
        Box::pin(async move {
            write
                .await
                .map_err(|e| NonDelivery(format!("inbox write failed: {e}")))
        })
    }
}
