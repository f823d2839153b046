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

pub mod client_frame;
pub mod clients;
pub mod frame_guard;
pub mod hub;
pub mod notices;
pub mod queue;
pub mod remote;
pub mod send;
pub mod ws;

use actix::Addr;

use switchboard_actors::delivery::ImOfflineWait;
use switchboard_actors::medium::futures_like::LocalBoxFuture;
use switchboard_actors::medium::{Delivery, Health, Medium, MediumAck, NonDelivery};
use switchboard_actors::presence::PresenceView;
use switchboard_core::directory::Directory;
use switchboard_core::protocol::MediumKind;
use switchboard_core::store::records::{enc, Merge};
use switchboard_core::store::{InboxEntry, OutboxEntry, Store, Tree, WriteBatch};

use hub::Sessions;

/// The member id of the built-in IM gateway.
pub const MEMBER_ID: &str = "gw-im-1";

/// An IM gateway's address (the node's, or a remote IM gateway's own).
pub type ImGateway = Addr<switchboard_actors::gateway::Gateway<ImMedium>>;

/// The IM inbox medium.
pub struct ImMedium {
    store: Store,
    directory: Option<Directory>,
    sessions: Sessions,
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
        sessions: Sessions,
        presence: PresenceView,
        offline_wait: ImOfflineWait,
    ) -> Self {
        Self {
            store,
            directory,
            sessions,
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
        let present =
            self.presence.reach(&user, MediumKind::Im) != switchboard_core::policy::Reach::Offline;
        let mailbox = d.route.store_and_forward || self.offline_wait.get() || present;
        let (store, counts) = (self.store.clone(), self.sessions.clone());
        Box::pin(async move {
            let sessions = counts.get(&user);
            let delivered = mailbox || sessions > 0;
            let mut entry = InboxEntry {
                txn: d.txn,
                from: d.from,
                body: String::new(),
                subject: d.subject,
                sent_at_ms: d.sent_at_ms,
                attempt: d.attempt,
                id: d.id,
                delivered,
                read: false,
            };
            let mut b = WriteBatch::new();
            let key = InboxEntry::key(&user, seq);
            // Unconverted text (no processor attested a change, so the
            // transmit's checked digest is the IMI's) whose originator's
            // outbox entry is in this store: the journal names that entry
            // instead of holding the text twice.
            let outbox = OutboxEntry::key(&d.originator, &d.txn);
            let same = d.attestations.is_empty()
                && !d.content_type.starts_with(crate::content::RFC822)
                && store.contains(Tree::Outbox, &outbox).unwrap_or(false);
            if same {
                let m = Merge::InboxOnOutbox {
                    outbox,
                    entry: entry.clone(),
                };
                entry.body = String::from_utf8_lossy(&d.content).into_owned();
                b.merge_known(Tree::Inbox, key, m.encode(), enc(&entry));
            } else {
                entry.body = crate::content::text_of(&d.content_type, &d.content);
                b.insert(Tree::Inbox, key, enc(&entry));
            }
            b.insert(
                Tree::Inbox,
                InboxEntry::index_key(&user, &d.txn),
                seq.to_be_bytes().to_vec(),
            );
            // Visible at once, durable with the next group commit: nothing in
            // the process waits for it. The report it allows leaves the
            // process (if ever) on a link that waits for the journal first.
            store
                .writer()
                .try_write(b)
                .map_err(|e| NonDelivery(format!("inbox write failed: {e}")))?;
            // No session when asked: one may have joined since, and read its
            // unread messages before this entry was written. Counting again
            // after the write closes that gap — a session is counted in
            // before it reads its unread, so one counted after this reads
            // the entry itself. Nothing here waits for another actor.
            let now = if sessions > 0 {
                sessions
            } else {
                counts.get(&user)
            };
            if now > 0 {
                counts.push(&user, &hub::message_frame(&entry));
            }
            Ok(if delivered || now > 0 {
                MediumAck::Delivered
            } else {
                MediumAck::Pending
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use actix::Actor as _;
    use switchboard_core::protocol::{Address, MemberId, Route, TxnId};

    use super::hub::{Hub, Join};
    use super::*;

    fn to_bob() -> Delivery {
        Delivery {
            txn: TxnId([9; 16]),
            attempt: 1,
            id: [0; 32],
            from: "alice".into(),
            originator: MemberId::new("gw-o"),
            sender: Address::new(MediumKind::Im, "alice"),
            sender_user: Some("alice".into()),
            route: Route {
                mechanism: MediumKind::Im,
                address: "bob".into(),
                recipient_user: Some("bob".into()),
                destination: MemberId::new(MEMBER_ID),
                processors: Vec::new(),
                archive: None,
                store_and_forward: false,
            },
            subject: None,
            content_type: "text/plain".into(),
            content: b"hi".to_vec(),
            sent_at_ms: 1,
            attestations: Vec::new(),
            tags: Vec::new(),
        }
    }

    /// The medium counts the recipient's sessions without a message to the
    /// hub: with none the message is held (pending); once a session has
    /// joined, the next one is pushed to it and counts as delivered.
    #[actix_rt::test]
    async fn sessions_are_counted_without_asking_the_hub() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hub = Hub::new(store.clone(), None);
        let counts = hub.sessions();
        let hub = hub.start();
        let mut im = ImMedium::new(
            store,
            None,
            counts.clone(),
            PresenceView::default(),
            ImOfflineWait::new(false),
        );
        assert!(matches!(im.deliver(to_bob()).await, Ok(MediumAck::Pending)));
        let (tx, mut frames) = super::queue::channel(1 << 20);
        hub.send(Join {
            user: "bob".into(),
            tx,
        })
        .await
        .unwrap();
        assert_eq!(counts.get("bob"), 1);
        let mut d = to_bob();
        d.txn = TxnId::generate(2);
        assert!(matches!(im.deliver(d).await, Ok(MediumAck::Delivered)));
        let frame: serde_json::Value = serde_json::from_str(&frames.recv().await.unwrap()).unwrap();
        assert_eq!(
            (frame["type"].as_str(), frame["body"].as_str()),
            (Some("message"), Some("hi"))
        );
        drop(frames);
        // The hub forgets a session whose channel closed at its next push.
        let mut d = to_bob();
        d.txn = TxnId::generate(3);
        let _ = im.deliver(d).await;
        let waited = std::time::Instant::now();
        while counts.get("bob") > 0 && waited.elapsed() < std::time::Duration::from_secs(5) {
            tokio::task::yield_now().await;
        }
        assert_eq!(counts.get("bob"), 0);
    }
}
