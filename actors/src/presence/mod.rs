//! The `Presence` actor: who is online where. IM sessions open and close,
//! users set their state (online, away with a note, busy, offline), an idle
//! timeout turns online into away, and subscribers get pushes. The broker
//! reads the [`PresenceView`] on its hot path without messaging the actor.
//!
//! Owns: presence state and subscriptions. Must not touch: routing (the
//! broker reads the view) or the sessions themselves (gateways report them).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use dashmap::DashMap;

use crate::bus::{AnnouncePresence, PresencePush, Reported, State, Subscribe};
use switchboard_core::policy::Reach;
use switchboard_core::protocol::clock::SharedClock;
use switchboard_core::protocol::MediumKind;

/// What is known of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEntry {
    /// Current state.
    pub state: State,
    /// Note (with away).
    pub note: Option<String>,
    /// Since when (ms).
    pub since_ms: u64,
    /// Open IM sessions.
    pub sessions: u32,
    /// Last activity (ms).
    pub last_active_ms: u64,
    /// The state the user chose (restored after an idle away).
    chosen: State,
    chosen_note: Option<String>,
    /// Whether the current away comes from the idle timeout.
    auto_away: bool,
}

/// The read side, shared with the broker and the API. Cheap to clone.
#[derive(Clone, Default)]
pub struct PresenceView(Arc<DashMap<String, PresenceEntry>>);

impl PresenceView {
    /// A user's presence (offline when nothing is known).
    pub fn get(&self, user: &str) -> Option<PresenceEntry> {
        self.0.get(user).map(|e| e.clone())
    }

    /// Whether `user` can be reached on `medium` now. Mediums without
    /// presence are [`Reach::Unknown`] (reachable).
    pub fn reach(&self, user: &str, medium: MediumKind) -> Reach {
        if medium != MediumKind::Im {
            return Reach::Unknown;
        }
        match self.0.get(user).map(|e| e.state) {
            Some(State::Online) => Reach::Online,
            Some(State::Away | State::Busy) => Reach::Inattentive,
            Some(State::Offline) | None => Reach::Offline,
        }
    }
}

/// An IM session of `user` opened.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct SessionOpened(pub String);

/// An IM session of `user` closed.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct SessionClosed(pub String);

/// `user` did something (resets the idle timer).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Activity(pub String);

/// `user` sets their state.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct SetPresence {
    /// The user.
    pub user: String,
    /// The state.
    pub state: State,
    /// The note.
    pub note: Option<String>,
}

/// Applies the idle timeout now (sent on an interval; tests send it after
/// moving the clock).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct IdleTick;

/// Owns presence state and subscriptions.
pub struct Presence {
    view: PresenceView,
    clock: SharedClock,
    idle_ms: u64,
    /// watched user → subscribers.
    watchers: HashMap<String, HashSet<String>>,
    /// subscriber → watched users.
    watching: HashMap<String, HashSet<String>>,
    push: Option<Recipient<PresencePush>>,
    /// Told every change of a user's visible state (an IM gateway in
    /// another process announces it to the broker).
    announce: Option<Recipient<AnnouncePresence>>,
}

impl Presence {
    /// A presence actor; online turns away after `idle_ms` without activity.
    pub fn new(clock: SharedClock, idle_ms: u64, push: Option<Recipient<PresencePush>>) -> Self {
        Self {
            view: PresenceView::default(),
            clock,
            idle_ms,
            watchers: HashMap::new(),
            watching: HashMap::new(),
            push,
            announce: None,
        }
    }

    /// Telling `r` every change of a user's visible state.
    pub fn with_announce(mut self, r: Recipient<AnnouncePresence>) -> Self {
        self.announce = Some(r);
        self
    }

    /// The read view.
    pub fn view(&self) -> PresenceView {
        self.view.clone()
    }

    fn entry(&self, user: &str, now: u64) -> PresenceEntry {
        self.view.get(user).unwrap_or(PresenceEntry {
            state: State::Offline,
            note: None,
            since_ms: now,
            sessions: 0,
            last_active_ms: now,
            chosen: State::Online,
            chosen_note: None,
            auto_away: false,
        })
    }

    /// Stores `e` and tells the subscribers (and the announcer) when the
    /// visible state changed.
    fn put(&mut self, user: &str, e: PresenceEntry, now: u64) {
        self.put_with(user, e, now, true);
    }

    fn put_with(&mut self, user: &str, mut e: PresenceEntry, now: u64, announce: bool) {
        let old = self.view.get(user);
        let changed = old
            .as_ref()
            .is_none_or(|o| o.state != e.state || o.note != e.note);
        if changed {
            e.since_ms = now;
        }
        self.view.0.insert(user.to_string(), e.clone());
        if changed {
            self.notify(user, &e);
            if let Some(a) = self.announce.as_ref().filter(|_| announce) {
                a.do_send(AnnouncePresence {
                    user: user.to_string(),
                    state: e.state.to_frame(e.note.clone()),
                });
            }
        }
    }

    /// Sets `user`'s visible state (and, with `choose`, what they chose:
    /// what a session opening later restores); `announce` as in
    /// [`Self::put_with`].
    fn set(
        &mut self,
        user: &str,
        state: State,
        note: Option<String>,
        choose: bool,
        announce: bool,
    ) {
        let now = self.clock.now_ms();
        let mut e = self.entry(user, now);
        if choose {
            e.chosen = state;
            e.chosen_note = note.clone();
        }
        e.state = state;
        e.note = note;
        e.auto_away = false;
        e.last_active_ms = now;
        self.put_with(user, e, now, announce);
    }

    fn notify(&self, user: &str, e: &PresenceEntry) {
        let (Some(push), Some(subs)) = (&self.push, self.watchers.get(user)) else {
            return;
        };
        for s in subs {
            push.do_send(PresencePush {
                to: s.clone(),
                user: user.to_string(),
                state: e.state,
                note: e.note.clone(),
                since_ms: e.since_ms,
            });
        }
    }

    fn unsubscribe_all(&mut self, subscriber: &str) {
        for u in self.watching.remove(subscriber).unwrap_or_default() {
            if let Some(w) = self.watchers.get_mut(&u) {
                w.remove(subscriber);
            }
        }
    }
}

impl Actor for Presence {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every = Duration::from_millis((self.idle_ms / 4).clamp(100, 10_000));
        ctx.run_interval(every, |act, ctx| act.handle(IdleTick, ctx));
    }
}

impl Handler<SessionOpened> for Presence {
    type Result = ();
    fn handle(&mut self, SessionOpened(user): SessionOpened, _: &mut Context<Self>) {
        let now = self.clock.now_ms();
        let mut e = self.entry(&user, now);
        e.sessions += 1;
        e.last_active_ms = now;
        if e.state == State::Offline && e.chosen != State::Offline {
            e.state = e.chosen;
            e.note = e.chosen_note.clone();
            e.auto_away = false;
        }
        self.put(&user, e, now);
    }
}

impl Handler<SessionClosed> for Presence {
    type Result = ();
    fn handle(&mut self, SessionClosed(user): SessionClosed, _: &mut Context<Self>) {
        let now = self.clock.now_ms();
        let mut e = self.entry(&user, now);
        e.sessions = e.sessions.saturating_sub(1);
        if e.sessions == 0 {
            e.state = State::Offline;
            e.note = None;
            e.auto_away = false;
            self.unsubscribe_all(&user);
        }
        self.put(&user, e, now);
    }
}

impl Handler<Activity> for Presence {
    type Result = ();
    fn handle(&mut self, Activity(user): Activity, _: &mut Context<Self>) {
        let now = self.clock.now_ms();
        let Some(mut e) = self.view.get(&user) else {
            return;
        };
        e.last_active_ms = now;
        if e.auto_away {
            e.state = e.chosen;
            e.note = e.chosen_note.clone();
            e.auto_away = false;
        }
        self.put(&user, e, now);
    }
}

impl Handler<SetPresence> for Presence {
    type Result = ();
    fn handle(&mut self, m: SetPresence, _: &mut Context<Self>) {
        self.set(&m.user, m.state, m.note, true, true);
    }
}

impl Handler<Reported> for Presence {
    type Result = ();
    fn handle(&mut self, m: Reported, _: &mut Context<Self>) {
        let offline = m.state == State::Offline;
        let here = self.view.get(&m.user).is_some_and(|e| e.sessions > 0);
        if offline && here {
            return;
        }
        self.set(&m.user, m.state, m.note, !offline, false);
    }
}

impl Handler<Subscribe> for Presence {
    type Result = ();
    fn handle(&mut self, m: Subscribe, _: &mut Context<Self>) {
        let now = self.clock.now_ms();
        for u in m.users {
            self.watchers
                .entry(u.clone())
                .or_default()
                .insert(m.subscriber.clone());
            self.watching
                .entry(m.subscriber.clone())
                .or_default()
                .insert(u.clone());
            if let Some(push) = &self.push {
                let e = self.entry(&u, now);
                push.do_send(PresencePush {
                    to: m.subscriber.clone(),
                    user: u,
                    state: e.state,
                    note: e.note,
                    since_ms: e.since_ms,
                });
            }
        }
    }
}

impl Handler<IdleTick> for Presence {
    type Result = ();
    fn handle(&mut self, _: IdleTick, _: &mut Context<Self>) {
        let now = self.clock.now_ms();
        let idle: Vec<(String, PresenceEntry)> = self
            .view
            .0
            .iter()
            .filter(|e| {
                e.state == State::Online && now.saturating_sub(e.last_active_ms) > self.idle_ms
            })
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        for (user, mut e) in idle {
            e.state = State::Away;
            e.note = None;
            e.auto_away = true;
            self.put(&user, e, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use switchboard_core::protocol::clock::ManualClock;

    #[derive(Default, Clone)]
    struct Pushes(Arc<Mutex<Vec<PresencePush>>>);
    impl Actor for Pushes {
        type Context = Context<Self>;
    }
    impl Handler<PresencePush> for Pushes {
        type Result = ();
        fn handle(&mut self, p: PresencePush, _: &mut Context<Self>) {
            self.0.lock().unwrap().push(p);
        }
    }

    impl Pushes {
        async fn drain(&self) -> Vec<(String, String, State)> {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
            self.0
                .lock()
                .unwrap()
                .drain(..)
                .map(|p| (p.to, p.user, p.state))
                .collect()
        }
    }

    fn start(clock: &ManualClock) -> (Addr<Presence>, PresenceView, Pushes) {
        let pushes = Pushes::default();
        let p = Presence::new(
            Arc::new(clock.clone()),
            60_000,
            Some(pushes.clone().start().recipient()),
        );
        let view = p.view();
        (p.start(), view, pushes)
    }

    #[actix_rt::test]
    async fn sessions_idle_timeout_and_activity() {
        let clock = ManualClock::at(1_000_000);
        let (p, view, _) = start(&clock);
        assert_eq!(
            view.reach("bob", MediumKind::Im),
            Reach::Offline,
            "nothing known: offline"
        );
        assert_eq!(
            view.reach("bob", MediumKind::Sms),
            Reach::Unknown,
            "no presence on SMS"
        );
        p.send(SessionOpened("bob".into())).await.unwrap();
        assert_eq!(view.reach("bob", MediumKind::Im), Reach::Online);
        clock.advance(59_000);
        p.send(IdleTick).await.unwrap();
        assert_eq!(
            view.get("bob").unwrap().state,
            State::Online,
            "not idle yet"
        );
        clock.advance(2_000);
        p.send(IdleTick).await.unwrap();
        assert_eq!(view.get("bob").unwrap().state, State::Away, "idle → away");
        assert_eq!(view.reach("bob", MediumKind::Im), Reach::Inattentive);
        p.send(Activity("bob".into())).await.unwrap();
        assert_eq!(
            view.get("bob").unwrap().state,
            State::Online,
            "activity → back online"
        );
        // A chosen busy is not undone by activity, and survives reconnects.
        p.send(SetPresence {
            user: "bob".into(),
            state: State::Busy,
            note: None,
        })
        .await
        .unwrap();
        p.send(Activity("bob".into())).await.unwrap();
        assert_eq!(view.get("bob").unwrap().state, State::Busy);
        p.send(SessionClosed("bob".into())).await.unwrap();
        assert_eq!(view.get("bob").unwrap().state, State::Offline);
        p.send(SessionOpened("bob".into())).await.unwrap();
        assert_eq!(view.get("bob").unwrap().state, State::Busy);
    }

    #[actix_rt::test]
    async fn subscribers_get_the_current_state_then_changes() {
        let clock = ManualClock::at(1_000_000);
        let (p, _, pushes) = start(&clock);
        p.send(SessionOpened("alice".into())).await.unwrap();
        p.send(Subscribe {
            subscriber: "alice".into(),
            users: vec!["bob".into()],
        })
        .await
        .unwrap();
        assert_eq!(
            pushes.drain().await,
            vec![("alice".into(), "bob".into(), State::Offline)]
        );
        p.send(SessionOpened("bob".into())).await.unwrap();
        p.send(SessionOpened("bob".into())).await.unwrap();
        p.send(SetPresence {
            user: "bob".into(),
            state: State::Away,
            note: Some("lunch".into()),
        })
        .await
        .unwrap();
        p.send(SessionClosed("bob".into())).await.unwrap();
        assert_eq!(
            pushes.drain().await,
            vec![
                ("alice".into(), "bob".into(), State::Online),
                ("alice".into(), "bob".into(), State::Away),
            ],
            "a second session and closing one of two change nothing visible"
        );
        // When alice's last session closes, her subscriptions end.
        p.send(SessionClosed("alice".into())).await.unwrap();
        p.send(SessionClosed("bob".into())).await.unwrap();
        assert_eq!(pushes.drain().await, vec![]);
    }
}
