//! Policy notices (COMPLIANCE.md, `notify` and `warn`; a domain's banner):
//! messages from the system sender `switchboard` to a user, originated by
//! the node's IM gateway like any message — so they reach the user by
//! their own delivery manager (their IM inbox, or their own medium). A
//! warning or a banner goes at most once a day per conversation (sender and
//! recipient).

use std::collections::HashMap;

use actix::prelude::*;

use switchboard_actors::broker::messages::PolicyNotice;
use switchboard_actors::broker::shared::SYSTEM_SENDER;
use switchboard_actors::gateway::{Gateway, Originate};
use switchboard_core::protocol::{Address, MediumKind, Priority, To};

use super::ImMedium;

/// How long a conversation's warning stands.
const ONCE_PER_MS: u64 = 24 * 3_600_000;
/// Conversations remembered at most (the oldest are forgotten first).
const MAX_CONVERSATIONS: usize = 100_000;

/// Sends policy notices through the IM gateway.
pub struct Notices {
    gateway: Addr<Gateway<ImMedium>>,
    expires_in_ms: u64,
    /// When each conversation was last warned, by (sender, recipient, text).
    warned: HashMap<(String, String, String), u64>,
    now: Box<dyn Fn() -> u64>,
}

impl Notices {
    /// Notices originated by `gateway`, each living `expires_in_ms`.
    pub fn new(
        gateway: Addr<Gateway<ImMedium>>,
        expires_in_ms: u64,
        now: impl Fn() -> u64 + 'static,
    ) -> Self {
        Self {
            gateway,
            expires_in_ms,
            warned: HashMap::new(),
            now: Box::new(now),
        }
    }

    /// Whether a once-a-day notice for this conversation is due now (and
    /// if so, it is counted as sent).
    fn due(&mut self, key: (String, String, String)) -> bool {
        let now = (self.now)();
        if self
            .warned
            .get(&key)
            .is_some_and(|at| now.saturating_sub(*at) < ONCE_PER_MS)
        {
            return false;
        }
        if self.warned.len() >= MAX_CONVERSATIONS {
            self.warned
                .retain(|_, at| now.saturating_sub(*at) < ONCE_PER_MS);
            if self.warned.len() >= MAX_CONVERSATIONS {
                self.warned.clear();
            }
        }
        self.warned.insert(key, now);
        true
    }
}

impl Actor for Notices {
    type Context = Context<Self>;
}

impl Handler<PolicyNotice> for Notices {
    type Result = ();

    fn handle(&mut self, PolicyNotice(n): PolicyNotice, ctx: &mut Context<Self>) {
        if let Some((from, to)) = &n.once_per {
            if !self.due((from.clone(), to.clone(), n.text.clone())) {
                return;
            }
        }
        let o = Originate {
            sender: Address::new(MediumKind::Im, SYSTEM_SENDER),
            sender_user: None,
            to: To::User(n.to.clone()),
            content: n.text.into_bytes(),
            content_type: "text/plain".into(),
            subject: Some("Switchboard policy".into()),
            priority: Priority::Normal,
            expires_in_ms: self.expires_in_ms,
            receipt: false,
            dedupe: None,
        };
        let to = n.to;
        ctx.spawn(
            self.gateway
                .send(o)
                .into_actor(self)
                .map(move |r, _, _| match r {
                    Ok(Ok(a)) => tracing::info!(to = %to, txn = %a.txn, "policy notice sent"),
                    other => tracing::warn!(to = %to, result = ?other.map(|r| r.map(|a| a.txn)), "a policy notice was not sent"),
                }),
        );
    }
}
