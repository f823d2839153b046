//! Delivery managers at run time (IBM seed): the [`DeliveryService`] actor
//! owns the registry of named managers and persists it; the broker reads a
//! lock-free snapshot ([`DeliveryRegistry`]) on its hot path. Managers can
//! be added, replaced and removed at run time; a transaction keeps the
//! manager it started with (its `ManagerChoice` is stored with it).
//!
//! Owns: the registry and its persistence. Must not touch: the definitions'
//! rules and the choice itself, which are pure functions in
//! [`switchboard_core::policy`].

use std::sync::{Arc, RwLock};

use actix::prelude::*;

use switchboard_core::directory::Profile;
use switchboard_core::policy::{
    built_in, valid_name, DeliveryManager, InvalidManager, ManagerChoice, Managers,
};
use switchboard_core::protocol::Priority;
use switchboard_core::store::{Store, StoreError, Tree, WriteBatch};

/// The current managers, shared with the broker. Cheap to clone; reading
/// takes a read lock for the time of an `Arc` clone.
#[derive(Clone)]
pub struct DeliveryRegistry {
    current: Arc<RwLock<Arc<Managers>>>,
    default: Arc<RwLock<Arc<str>>>,
}

impl DeliveryRegistry {
    fn new(managers: Managers, default: &str) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(managers))),
            default: Arc::new(RwLock::new(default.into())),
        }
    }

    /// The managers now.
    pub fn snapshot(&self) -> Arc<Managers> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn replace(&self, m: Managers) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(m);
    }

    /// The default manager's name.
    pub fn default_name(&self) -> Arc<str> {
        self.default
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The manager for a new message: the one the recipient's profile names
    /// for the priority (or for `normal`), else the default; a name that no
    /// longer exists falls back to the default, and a missing default to the
    /// built-in `sequential`.
    pub fn choose(&self, recipient: Option<&Profile>, priority: Priority) -> ManagerChoice {
        switchboard_core::policy::choose(
            &self.snapshot(),
            &self.default_name(),
            recipient.map(|p| &p.delivery),
            priority,
        )
    }
}

/// A registry change that cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The definition is invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidManager),
    /// The default manager cannot be removed.
    #[error("{0} is the default manager and cannot be removed")]
    IsDefault(String),
    /// No such manager.
    #[error("no such delivery manager")]
    NotFound,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `delivery.im_offline = "wait"`: treat the IM inbox as a mailbox that is
/// always reachable. Shared by the broker and the IM medium; a reload
/// changes it for the next decision.
#[derive(Debug, Clone, Default)]
pub struct ImOfflineWait(Arc<std::sync::atomic::AtomicBool>);

impl ImOfflineWait {
    /// A switch set to `on`.
    pub fn new(on: bool) -> Self {
        Self(Arc::new(on.into()))
    }

    /// Whether it is on.
    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Turns it on or off.
    pub fn set(&self, on: bool) {
        self.0.store(on, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Owns and persists the registry of delivery managers.
pub struct DeliveryService {
    registry: DeliveryRegistry,
    store: Store,
}

impl DeliveryService {
    /// Loads the built-in managers overlaid with the stored changes.
    ///
    /// # Errors
    /// A store failure or a corrupt stored manager.
    pub fn load(store: Store, default: &str) -> Result<Self, StoreError> {
        let mut managers: Managers = built_in().into_iter().collect();
        for (k, v) in store.scan(Tree::Managers, b"")? {
            let name = String::from_utf8_lossy(&k).into_owned();
            if v.is_empty() {
                managers.remove(&name);
            } else {
                let m: DeliveryManager = serde_json::from_slice(&v)
                    .map_err(|_| StoreError::Corrupt("delivery manager"))?;
                managers.insert(name, m);
            }
        }
        Ok(Self {
            registry: DeliveryRegistry::new(managers, default),
            store,
        })
    }

    /// The shared registry the broker reads.
    pub fn registry(&self) -> DeliveryRegistry {
        self.registry.clone()
    }
}

impl Actor for DeliveryService {
    type Context = Context<Self>;
}

/// Every manager, by name.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Vec<(String, DeliveryManager)>")]
pub struct ListManagers;

/// Adds or replaces a manager; `Ok(true)` when it is new.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<bool, DeliveryError>")]
pub struct PutManager {
    /// Its name.
    pub name: String,
    /// Its definition.
    pub manager: DeliveryManager,
}

/// Removes a manager.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), DeliveryError>")]
pub struct DeleteManager(pub String);

/// Makes an existing manager the default for new messages whose recipient
/// names none (`delivery.default_manager`, on reload).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), DeliveryError>")]
pub struct SetDefault(pub String);

impl Handler<SetDefault> for DeliveryService {
    type Result = Result<(), DeliveryError>;
    fn handle(&mut self, SetDefault(name): SetDefault, _: &mut Context<Self>) -> Self::Result {
        if !self.registry.snapshot().contains_key(&name) {
            return Err(DeliveryError::NotFound);
        }
        *self
            .registry
            .default
            .write()
            .unwrap_or_else(|p| p.into_inner()) = name.as_str().into();
        tracing::info!(manager = %name, "default delivery manager set");
        Ok(())
    }
}

impl Handler<ListManagers> for DeliveryService {
    type Result = MessageResult<ListManagers>;
    fn handle(&mut self, _: ListManagers, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.registry
                .snapshot()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }
}

impl Handler<PutManager> for DeliveryService {
    type Result = ResponseActFuture<Self, Result<bool, DeliveryError>>;
    fn handle(&mut self, m: PutManager, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = m.manager.validate() {
            return Box::pin(fut::ready(Err(e.into())));
        }
        if !valid_name(&m.name) {
            return Box::pin(fut::ready(Err(InvalidManager(format!(
                "name {:?}: 1-64 of a-z 0-9 _ -",
                m.name
            ))
            .into())));
        }
        let json = serde_json::to_vec(&m.manager).expect("a manager serialises");
        let mut b = WriteBatch::new();
        b.insert(Tree::Managers, m.name.as_bytes().to_vec(), json);
        let write = self.store.writer().write(b);
        Box::pin(write.into_actor(self).map(move |res, act, _| {
            res?;
            let mut all = (*act.registry.snapshot()).clone();
            let new = all.insert(m.name.clone(), m.manager).is_none();
            act.registry.replace(all);
            tracing::info!(manager = %m.name, new, "delivery manager set");
            Ok(new)
        }))
    }
}

impl Handler<DeleteManager> for DeliveryService {
    type Result = ResponseActFuture<Self, Result<(), DeliveryError>>;
    fn handle(
        &mut self,
        DeleteManager(name): DeleteManager,
        _: &mut Context<Self>,
    ) -> Self::Result {
        if *name == *self.registry.default_name() {
            return Box::pin(fut::ready(Err(DeliveryError::IsDefault(name))));
        }
        if !self.registry.snapshot().contains_key(&name) {
            return Box::pin(fut::ready(Err(DeliveryError::NotFound)));
        }
        let mut b = WriteBatch::new();
        b.insert(Tree::Managers, name.as_bytes().to_vec(), Vec::new());
        let write = self.store.writer().write(b);
        Box::pin(write.into_actor(self).map(move |res, act, _| {
            res?;
            let mut all = (*act.registry.snapshot()).clone();
            all.remove(&name);
            act.registry.replace(all);
            tracing::info!(manager = %name, "delivery manager removed");
            Ok(())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::protocol::MediumKind;

    #[actix_rt::test]
    async fn hot_swap_changes_new_choices_and_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let svc = DeliveryService::load(store.clone(), "sequential").unwrap();
        let reg = svc.registry();
        let addr = svc.start();
        let mut bob = Profile::im_only("bob");
        bob.delivery.insert("urgent".into(), "sms-first".into());
        let before = reg.choose(Some(&bob), Priority::Urgent);
        assert_eq!(
            before.name, "sequential",
            "unknown names fall back to the default"
        );

        let mut m = built_in().remove(0).1;
        m.configs.retain(|p, _| p == "normal");
        m.configs.get_mut("normal").unwrap().mechanisms = vec![MediumKind::Sms, MediumKind::Im];
        let put = PutManager {
            name: "sms-first".into(),
            manager: m,
        };
        assert!(addr.send(put.clone()).await.unwrap().unwrap(), "new");
        let after = reg.choose(Some(&bob), Priority::Urgent);
        assert_eq!(after.name, "sms-first");
        assert_eq!(
            after.config.mechanisms,
            vec![MediumKind::Sms, MediumKind::Im],
            "urgent falls back to normal"
        );
        assert_eq!(
            before.name, "sequential",
            "a choice already made is not changed"
        );
        assert!(!addr.send(put).await.unwrap().unwrap(), "replaced");

        assert!(matches!(
            addr.send(DeleteManager("sequential".into())).await.unwrap(),
            Err(DeliveryError::IsDefault(_))
        ));
        addr.send(DeleteManager("parallel".into()))
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            addr.send(DeleteManager("parallel".into())).await.unwrap(),
            Err(DeliveryError::NotFound)
        ));
        let mut bad = built_in().remove(0).1;
        bad.configs.clear();
        assert!(matches!(
            addr.send(PutManager {
                name: "x".into(),
                manager: bad
            })
            .await
            .unwrap(),
            Err(DeliveryError::Invalid(_))
        ));

        let reloaded = DeliveryService::load(store, "sequential")
            .unwrap()
            .registry()
            .snapshot();
        assert!(reloaded.contains_key("sms-first"));
        assert!(
            !reloaded.contains_key("parallel"),
            "a removed built-in stays removed"
        );
    }
}
