//! The built-in IM medium: a message to `im:<user>` is kept durably in that
//! user's inbox (like mail in a mailbox) and pushed at once to their open
//! WebSocket sessions ([`hub`], [`ws`]); later sessions get it on connect;
//! API clients read it with `GET /v1/inbox`. Marking it read is the `Read`
//! report.
//!
//! It is *delivered* once it is in the inbox and the recipient is reachable:
//! a session is open, presence says they are not offline, the broker sent it
//! store-and-forward, or `delivery.im_offline = "wait"`. Otherwise it is held
//! (`Pending`) and reported delivered when a session opens, while the
//! delivery manager may move on to the next mechanism after the attempt
//! timeout.

pub mod clients;
pub mod hub;
pub mod remote;
pub mod ws;

use actix::Addr;

use switchboard_actors::delivery::ImOfflineWait;
use switchboard_actors::directory::Directory;
use switchboard_actors::medium::futures_like::LocalBoxFuture;
use switchboard_actors::medium::{Delivery, Health, Medium, MediumAck, NonDelivery};
use switchboard_actors::presence::PresenceView;
use switchboard_actors::protocol::MediumKind;
use switchboard_actors::store::records::enc;
use switchboard_actors::store::{InboxEntry, Store, Tree, WriteBatch};

use hub::{Hub, PushMessage, SessionCount};

/// The member id of the built-in IM gateway.
pub const MEMBER_ID: &str = "gw-im-1";

/// The IM inbox medium.
pub struct ImMedium {
    store: Store,
    directory: Option<Directory>,
    hub: Addr<Hub>,
    presence: PresenceView,
    offline_wait: ImOfflineWait,
}

impl ImMedium {
    /// An IM medium over `store`; `offline_wait` counts a message
    /// delivered once it is in the inbox even when its recipient is away.
    /// With a `directory` (the node's) it refuses users it does not know;
    /// an IM gateway in another process has none and takes the broker's
    /// word.
    pub fn new(
        store: Store,
        directory: Option<Directory>,
        hub: Addr<Hub>,
        presence: PresenceView,
        offline_wait: ImOfflineWait,
    ) -> Self {
        Self {
            store,
            directory,
            hub,
            presence,
            offline_wait,
        }
    }
}

fn failed(reason: String) -> LocalBoxFuture<'static, Result<MediumAck, NonDelivery>> {
    Box::pin(async move { Err(NonDelivery(reason)) })
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

    fn deliver(&mut self, d: Delivery) -> LocalBoxFuture<'static, Result<MediumAck, NonDelivery>> {
        let user = d
            .route
            .recipient_user
            .clone()
            .unwrap_or_else(|| d.route.address.clone());
        if self
            .directory
            .as_ref()
            .is_some_and(|d| d.profile(&user).is_none())
        {
            return failed(format!("no IM user {user:?}"));
        }
        // Idempotent on txn: a second delivery of the same message is answered
        // as the first was.
        match self.store.inbox_entry(&user, &d.txn) {
            Ok(Some((_, e))) => {
                let ack = if e.delivered {
                    MediumAck::Delivered
                } else {
                    MediumAck::Pending
                };
                return Box::pin(async move { Ok(ack) });
            }
            Ok(None) => {}
            Err(e) => return failed(format!("inbox unavailable: {e}")),
        }
        let seq = match self.store.next_id() {
            Ok(s) => s,
            Err(e) => return failed(format!("inbox unavailable: {e}")),
        };
        let present = self.presence.reach(&user, MediumKind::Im)
            != switchboard_actors::delivery::Reach::Offline;
        let mailbox = d.route.store_and_forward || self.offline_wait.get() || present;
        let (store, hub) = (self.store.clone(), self.hub.clone());
        Box::pin(async move {
            let sessions = hub.send(SessionCount(user.clone())).await.unwrap_or(0);
            let delivered = mailbox || sessions > 0;
            let entry = InboxEntry {
                txn: d.txn,
                from: d.from,
                body: crate::gateways::text_of(&d.content_type, &d.content),
                subject: d.subject,
                sent_at_ms: d.sent_at_ms,
                attempt: d.attempt,
                id: d.id,
                delivered,
                read: false,
            };
            let mut b = WriteBatch::new();
            b.insert(Tree::Inbox, InboxEntry::key(&user, seq), enc(&entry));
            b.insert(
                Tree::Inbox,
                InboxEntry::index_key(&user, &d.txn),
                seq.to_be_bytes().to_vec(),
            );
            store
                .writer()
                .write(b)
                .await
                .map_err(|e| NonDelivery(format!("inbox write failed: {e}")))?;
            if sessions > 0 {
                hub.do_send(PushMessage { user, entry });
            }
            Ok(if delivered {
                MediumAck::Delivered
            } else {
                MediumAck::Pending
            })
        })
    }
}
