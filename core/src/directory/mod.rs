//! The directory: client profiles, API tokens and members' keys. Shared, not
//! an actor: sled-backed with an in-memory cache that every reader (broker
//! shards, API) uses without blocking. Writes go through the store's group
//! commit and update the cache once durable.
//!
//! Owns: who users are and how they are reached, tokens (hashed), member keys.
//! Must not touch: routing decisions (the broker's) and presence.

pub mod policy;
pub mod profile;
pub mod resolve;

use std::sync::Arc;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

pub use policy::{PolicyBook, PolicyError, PolicyState, Side};
pub use profile::{valid_node_id, InvalidProfile, Mechanism, PresenceShare, Profile, UserPolicy};
pub use resolve::{resolve, Resolved};

use crate::protocol::mac::{hex, random, sha256};
use crate::protocol::{Address, KeyRing, MemberId, MemberKeys, SecretKey};
use crate::store::records::{dec, enc};
use crate::store::{Store, StoreError, Tree, WriteBatch};

/// What the store keeps per user.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UserRecord {
    profile: Profile,
    /// What the store keeps of the user's API token ([`token_hash`]).
    token_hash: Option<String>,
}

/// Prefix of a remote processor's kind in [`Tree::Meta`] (`processor:ID`).
const PROCESSOR_PREFIX: &[u8] = b"processor:";

/// Key of the broker key `K2` in [`Tree::Meta`].
const BROKER_KEY: &[u8] = b"broker_key";
/// Key of the admin token's hash in [`Tree::Meta`].
const ADMIN_TOKEN: &[u8] = b"admin_token_sha256";

/// A directory error.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The profile is invalid.
    #[error("invalid profile: {0}")]
    Invalid(#[from] InvalidProfile),
    /// An address already belongs to another user.
    #[error("address {0} already belongs to user {1}")]
    AddressTaken(String, String),
    /// No such user.
    #[error("no such user")]
    NotFound,
}

/// Profiles, tokens, members. Cheap to clone.
#[derive(Clone)]
pub struct Directory {
    store: Store,
    users: Arc<DashMap<String, Arc<UserRecordCache>>>,
    by_address: Arc<DashMap<Address, String>>,
    tokens: Arc<DashMap<String, String>>,
    ring: KeyRing,
    policy: PolicyBook,
}

struct UserRecordCache {
    profile: Arc<Profile>,
    token_hash: Option<String>,
}

/// What the store keeps of a token: a hash of its SHA-256 — not the
/// SHA-256 itself, which is what a remote IM gateway's `Identify` carries:
/// a leaked database then yields nothing either the HTTP API or MIAP takes.
fn token_hash(token: &str) -> String {
    stored_hash(&sha256(token.as_bytes()))
}

/// Marks [`stored_hash`]'s form (an earlier build stored `hex(sha256(token))`).
const STORED_V2: &str = "v2:";

/// The stored form of a token whose SHA-256 is `digest`.
fn stored_hash(digest: &[u8; 32]) -> String {
    let mut input = b"switchboard stored token v2\0".to_vec();
    input.extend_from_slice(digest);
    format!("{STORED_V2}{}", hex(&sha256(&input)))
}

/// `stored` in the current form: an earlier build's `hex(sha256(token))`
/// is turned into [`stored_hash`] of it (what [`Directory::migrate_tokens`]
/// then writes back).
fn current_hash(stored: &str) -> String {
    if stored.starts_with(STORED_V2) {
        return stored.to_string();
    }
    let bytes: Option<Vec<u8>> = (0..stored.len())
        .step_by(2)
        .map(|i| {
            stored
                .get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect();
    match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
        Some(digest) => stored_hash(&digest),
        None => stored.to_string(),
    }
}

/// A fresh API token: 32 random bytes as hex, prefixed `sb_`.
pub fn new_token() -> String {
    format!("sb_{}", hex(&random::<32>()))
}

/// Where a user is served ([`Directory::home_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    /// The node.
    pub node: String,
    /// Whether their domain requires them to be served by it only.
    pub required: bool,
}

impl Directory {
    /// Loads the directory from the store.
    ///
    /// # Errors
    /// When the store fails or holds corrupt records.
    pub fn load(store: Store, key_grace_ms: u64) -> Result<Self, StoreError> {
        let d = Self {
            store: store.clone(),
            users: Default::default(),
            by_address: Default::default(),
            tokens: Default::default(),
            ring: KeyRing::new(key_grace_ms),
            policy: PolicyBook::load(store.clone())?,
        };
        for (_, v) in store.scan(Tree::Profiles, b"")? {
            let rec: UserRecord =
                serde_json::from_slice(&v).map_err(|_| StoreError::Corrupt("profile"))?;
            d.cache_user(rec);
        }
        for (_, v) in store.scan(Tree::Members, b"")? {
            d.ring.put(dec::<MemberKeys>(&v, "member")?);
        }
        // In a cluster: what an operator changes on another node.
        let caches = Arc::downgrade(&d.users);
        let (by_address, tokens, ring) = (
            Arc::downgrade(&d.by_address),
            Arc::downgrade(&d.tokens),
            d.ring.clone(),
        );
        store.on_remote_change(Arc::new(move |c| {
            let (tree, key, value) = (c.tree, c.key, c.new);
            let (Some(users), Some(by_address), Some(tokens)) =
                (caches.upgrade(), by_address.upgrade(), tokens.upgrade())
            else {
                return;
            };
            let caches = Caches {
                users: &users,
                by_address: &by_address,
                tokens: &tokens,
            };
            match tree {
                Tree::Profiles => {
                    let id = String::from_utf8_lossy(key);
                    caches.uncache_user(&id);
                    match value.map(serde_json::from_slice::<UserRecord>) {
                        Some(Ok(rec)) => caches.cache_user(rec),
                        Some(Err(e)) => tracing::warn!(user = %id, error = %e, "a corrupt profile from another node"),
                        None => {}
                    }
                }
                Tree::Members => match value.map(|v| dec::<MemberKeys>(v, "member")) {
                    Some(Ok(m)) => ring.put(m),
                    Some(Err(e)) => tracing::warn!(error = %e, "a corrupt member from another node"),
                    None => {}
                },
                _ => {}
            }
        }));
        Ok(d)
    }

    fn caches(&self) -> Caches<'_> {
        Caches {
            users: &self.users,
            by_address: &self.by_address,
            tokens: &self.tokens,
        }
    }

    fn cache_user(&self, rec: UserRecord) {
        self.caches().cache_user(rec);
    }

    fn uncache_user(&self, id: &str) {
        self.caches().uncache_user(id);
    }
}

/// The directory's user caches.
struct Caches<'a> {
    users: &'a DashMap<String, Arc<UserRecordCache>>,
    by_address: &'a DashMap<Address, String>,
    tokens: &'a DashMap<String, String>,
}

impl Caches<'_> {
    fn cache_user(&self, mut rec: UserRecord) {
        rec.token_hash = rec.token_hash.as_deref().map(current_hash);
        for a in rec.profile.addresses() {
            self.by_address.insert(a, rec.profile.id.clone());
        }
        if let Some(h) = &rec.token_hash {
            self.tokens.insert(h.clone(), rec.profile.id.clone());
        }
        self.users.insert(
            rec.profile.id.clone(),
            Arc::new(UserRecordCache {
                profile: Arc::new(rec.profile),
                token_hash: rec.token_hash,
            }),
        );
    }

    fn uncache_user(&self, id: &str) {
        if let Some((_, old)) = self.users.remove(id) {
            for a in old.profile.addresses() {
                self.by_address.remove_if(&a, |_, owner| owner == id);
            }
            if let Some(h) = &old.token_hash {
                self.tokens.remove(h);
            }
        }
    }
}

impl Directory {
    /// The store it keeps its records in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The member key ring.
    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    /// A user's profile.
    pub fn profile(&self, id: &str) -> Option<Arc<Profile>> {
        self.users.get(id).map(|u| u.profile.clone())
    }

    /// Every user's profile, by id.
    pub fn profiles(&self) -> Vec<Arc<Profile>> {
        let mut v: Vec<_> = self.users.iter().map(|u| u.profile.clone()).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// A page of profiles in id order: at most `limit` with ids after
    /// `after`. Read from the store (sorted), not by sorting the cache.
    ///
    /// # Errors
    /// A store failure or a corrupt record.
    pub fn profiles_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Profile>, StoreError> {
        self.store
            .page(Tree::Profiles, after.map(str::as_bytes), limit)?
            .into_iter()
            .map(|(_, v)| {
                serde_json::from_slice::<UserRecord>(&v)
                    .map(|r| r.profile)
                    .map_err(|_| StoreError::Corrupt("profile"))
            })
            .collect()
    }

    /// A user's home node (CLUSTER.md behaviour 7): their profile's
    /// `home_node`, else their domain's; with whether the domain requires
    /// them to be served there only (`require_redirect`).
    pub fn home_of(&self, user: &str) -> Option<Home> {
        let p = self.profile(user)?;
        let domain =
            (p.domain.as_deref()).and_then(|d| self.policy.snapshot().domains.get(d).cloned());
        let node = p
            .home_node
            .clone()
            .or_else(|| domain.as_ref().and_then(|d| d.home_node.clone()))?;
        Some(Home {
            node,
            required: domain.is_some_and(|d| d.require_redirect),
        })
    }

    /// The enterprise policy: domains, groups, rules.
    pub fn policy(&self) -> &PolicyBook {
        &self.policy
    }

    /// The user owning `address`, if any.
    pub fn user_for_address(&self, address: &Address) -> Option<String> {
        if address.medium == crate::protocol::MediumKind::Im {
            return self
                .users
                .contains_key(&address.address)
                .then(|| address.address.clone());
        }
        self.by_address.get(address).map(|u| u.clone())
    }

    /// The user a token belongs to.
    pub fn authenticate(&self, token: &str) -> Option<String> {
        self.tokens.get(&token_hash(token)).map(|u| u.clone())
    }

    /// The user whose API token has SHA-256 `digest` (a remote IM gateway
    /// asks with the digest, never the token).
    pub fn authenticate_digest(&self, digest: &[u8; 32]) -> Option<String> {
        self.tokens.get(&stored_hash(digest)).map(|u| u.clone())
    }

    /// Rewrites what an earlier build stored of tokens (their SHA-256, the
    /// very digest `Identify` carries) in the current form; idempotent, and
    /// the same on every node of a cluster. Returns how many records it
    /// rewrote.
    ///
    /// # Errors
    /// A store failure.
    pub async fn migrate_tokens(&self) -> Result<usize, StoreError> {
        let mut b = WriteBatch::new();
        let mut n = 0;
        for (k, v) in self.store.scan(Tree::Profiles, b"")? {
            let Ok(mut rec) = serde_json::from_slice::<UserRecord>(&v) else {
                continue;
            };
            let Some(old) = rec.token_hash.clone() else {
                continue;
            };
            if old.starts_with(STORED_V2) {
                continue;
            }
            rec.token_hash = Some(current_hash(&old));
            let v = serde_json::to_vec(&rec).map_err(|_| StoreError::Corrupt("profile"))?;
            b.insert(Tree::Profiles, k.to_vec(), v);
            n += 1;
        }
        if let Some(h) = self.store.get(Tree::Meta, ADMIN_TOKEN)? {
            let h = String::from_utf8_lossy(&h).into_owned();
            if !h.starts_with(STORED_V2) {
                b.insert(
                    Tree::Meta,
                    ADMIN_TOKEN.to_vec(),
                    current_hash(&h).into_bytes(),
                );
                n += 1;
            }
        }
        if n > 0 {
            self.store.writer().write(b).await?;
        }
        Ok(n)
    }

    /// Creates or replaces a profile (durably). A new user gets a token,
    /// returned once; an existing user keeps theirs.
    ///
    /// # Errors
    /// An invalid profile, an address owned by another user, or a store failure.
    pub async fn put_profile(&self, profile: Profile) -> Result<Option<String>, DirectoryError> {
        profile.validate()?;
        for a in profile.addresses() {
            if let Some(owner) = self.by_address.get(&a) {
                if *owner != profile.id {
                    return Err(DirectoryError::AddressTaken(a.to_string(), owner.clone()));
                }
            }
        }
        let existing = self
            .users
            .get(&profile.id)
            .and_then(|u| u.token_hash.clone());
        let (token, token_hash) = match existing {
            Some(h) => (None, h),
            None => {
                let t = new_token();
                let h = token_hash(&t);
                (Some(t), h)
            }
        };
        let rec = UserRecord {
            profile,
            token_hash: Some(token_hash),
        };
        self.write_user(&rec).await?;
        let id = rec.profile.id.clone();
        self.uncache_user(&id);
        self.cache_user(rec);
        Ok(token)
    }

    async fn write_user(&self, rec: &UserRecord) -> Result<(), StoreError> {
        let json = serde_json::to_vec(rec).map_err(|_| StoreError::Corrupt("profile"))?;
        let mut b = WriteBatch::new();
        b.insert(Tree::Profiles, rec.profile.id.as_bytes().to_vec(), json);
        self.store.writer().write(b).await
    }

    /// Replaces a user's token (durably) and returns the new one.
    ///
    /// # Errors
    /// [`DirectoryError::NotFound`] or a store failure.
    pub async fn rotate_token(&self, id: &str) -> Result<String, DirectoryError> {
        let profile = self.profile(id).ok_or(DirectoryError::NotFound)?;
        let token = new_token();
        let rec = UserRecord {
            profile: (*profile).clone(),
            token_hash: Some(token_hash(&token)),
        };
        self.write_user(&rec).await?;
        self.uncache_user(id);
        self.cache_user(rec);
        Ok(token)
    }

    /// Removes a user (durably).
    ///
    /// # Errors
    /// [`DirectoryError::NotFound`] or a store failure.
    pub async fn remove_user(&self, id: &str) -> Result<(), DirectoryError> {
        if !self.users.contains_key(id) {
            return Err(DirectoryError::NotFound);
        }
        let mut b = WriteBatch::new();
        b.remove(Tree::Profiles, id.as_bytes().to_vec());
        self.store.writer().write(b).await?;
        self.uncache_user(id);
        Ok(())
    }

    /// Records that member `id` is a remote processor of `kind` (durably).
    ///
    /// # Errors
    /// A store failure.
    pub async fn set_processor_kind(&self, id: &MemberId, kind: &str) -> Result<(), StoreError> {
        let mut key = PROCESSOR_PREFIX.to_vec();
        key.extend_from_slice(id.as_str().as_bytes());
        let mut b = WriteBatch::new();
        b.insert(Tree::Meta, key, kind.as_bytes().to_vec());
        self.store.writer().write(b).await
    }

    /// Member `id`'s processor kind, if it is a remote processor.
    pub fn processor_kind(&self, id: &MemberId) -> Option<String> {
        let mut key = PROCESSOR_PREFIX.to_vec();
        key.extend_from_slice(id.as_str().as_bytes());
        self.store
            .get(Tree::Meta, &key)
            .ok()
            .flatten()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// Every remote processor's id and kind.
    ///
    /// # Errors
    /// A store failure.
    pub fn processor_kinds(&self) -> Result<Vec<(MemberId, String)>, StoreError> {
        Ok(self
            .store
            .scan(Tree::Meta, PROCESSOR_PREFIX)?
            .into_iter()
            .map(|(k, v)| {
                let id = String::from_utf8_lossy(&k[PROCESSOR_PREFIX.len()..]).into_owned();
                (MemberId::new(id), String::from_utf8_lossy(&v).into_owned())
            })
            .collect())
    }

    /// Adds or replaces a member's keys (durably).
    ///
    /// # Errors
    /// A store failure.
    pub async fn put_member(&self, m: MemberKeys) -> Result<(), StoreError> {
        let mut b = WriteBatch::new();
        b.insert(
            Tree::Members,
            m.member.as_str().as_bytes().to_vec(),
            enc(&m),
        );
        self.store.writer().write(b).await?;
        self.ring.put(m);
        Ok(())
    }

    /// Gives member `id` a fresh key (the previous one stays valid for the
    /// grace period); the new key's id and key.
    ///
    /// # Errors
    /// An unknown member, or a store failure.
    pub async fn rotate_member(
        &self,
        id: &MemberId,
        now_ms: u64,
    ) -> Result<Option<(u32, SecretKey)>, StoreError> {
        let Some(mut m) = self.member(id) else {
            return Ok(None);
        };
        let key_id = m.rotate(now_ms, self.ring.grace_ms());
        let key = m.current().1.clone();
        self.put_member(m).await?;
        Ok(Some((key_id, key)))
    }

    /// Revokes member `id` (durably): its logins and frames are refused.
    ///
    /// # Errors
    /// A store failure.
    pub async fn revoke_member(&self, id: &MemberId) -> Result<bool, StoreError> {
        let Some(mut m) = self.member(id) else {
            return Ok(false);
        };
        m.revoked = true;
        self.put_member(m).await?;
        Ok(true)
    }

    /// A member's keys.
    pub fn member(&self, id: &MemberId) -> Option<MemberKeys> {
        self.ring.get(id)
    }

    /// The broker key `K2`, if the node is initialised.
    ///
    /// # Errors
    /// A store failure or a corrupt key.
    pub fn broker_key(&self) -> Result<Option<SecretKey>, StoreError> {
        self.store
            .get(Tree::Meta, BROKER_KEY)?
            .map(|v| {
                v.try_into()
                    .map(SecretKey)
                    .map_err(|_| StoreError::Corrupt("broker key"))
            })
            .transpose()
    }

    /// Stores the broker key and the admin token's hash (node initialisation).
    ///
    /// # Errors
    /// A store failure.
    pub async fn initialise(&self, k2: &SecretKey, admin_token: &str) -> Result<(), StoreError> {
        let mut b = WriteBatch::new();
        b.insert(Tree::Meta, BROKER_KEY.to_vec(), k2.bytes().to_vec());
        b.insert(
            Tree::Meta,
            ADMIN_TOKEN.to_vec(),
            token_hash(admin_token).into_bytes(),
        );
        self.store.writer().write(b).await
    }

    /// Makes `token` the admin token; the one before stops working.
    ///
    /// # Errors
    /// A store failure.
    pub async fn set_admin_token(&self, token: &str) -> Result<(), StoreError> {
        let mut b = WriteBatch::new();
        b.insert(
            Tree::Meta,
            ADMIN_TOKEN.to_vec(),
            token_hash(token).into_bytes(),
        );
        self.store.writer().write(b).await
    }

    /// Whether `token` is the admin token.
    pub fn is_admin(&self, token: &str) -> bool {
        match self.store.get(Tree::Meta, ADMIN_TOKEN) {
            Ok(Some(h)) => {
                let h = current_hash(&String::from_utf8_lossy(&h)).into_bytes();
                let given = token_hash(token);
                h.len() == given.len()
                    && h.iter()
                        .zip(given.bytes())
                        .fold(0u8, |d, (a, b)| d | (a ^ b))
                        == 0
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn what_the_store_keeps_of_a_token_is_not_what_identify_carries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Directory::load(store.clone(), 0).unwrap();
        let token = d
            .put_profile(Profile::im_only("bob"))
            .await
            .unwrap()
            .unwrap();
        let digest = sha256(token.as_bytes());
        assert_eq!(d.authenticate_digest(&digest).as_deref(), Some("bob"));
        // A leaked record: its hash, taken as a digest, identifies no one.
        let raw = store.get(Tree::Profiles, b"bob").unwrap().unwrap();
        let rec: UserRecord = serde_json::from_slice(&raw).unwrap();
        let kept = rec.token_hash.unwrap();
        assert!(
            kept.starts_with(STORED_V2) && !kept.contains(&hex(&digest)),
            "{kept}"
        );
        let leaked: [u8; 32] = sha256(kept.as_bytes());
        assert_eq!(d.authenticate_digest(&leaked), None);

        // An earlier build's records (the digest itself) still work, and
        // are rewritten once.
        let legacy = UserRecord {
            profile: Profile::im_only("carol"),
            token_hash: Some(hex(&sha256(b"sb_carol"))),
        };
        let mut b = WriteBatch::new();
        b.insert(
            Tree::Profiles,
            b"carol".to_vec(),
            serde_json::to_vec(&legacy).unwrap(),
        );
        b.insert(
            Tree::Meta,
            ADMIN_TOKEN.to_vec(),
            hex(&sha256(b"sb_admin")).into_bytes(),
        );
        store.writer().write(b).await.unwrap();
        let d = Directory::load(store.clone(), 0).unwrap();
        assert_eq!(d.authenticate("sb_carol").as_deref(), Some("carol"));
        assert!(d.is_admin("sb_admin"));
        assert_eq!(d.migrate_tokens().await.unwrap(), 2);
        assert_eq!(d.migrate_tokens().await.unwrap(), 0, "once");
        let raw = store.get(Tree::Profiles, b"carol").unwrap().unwrap();
        let rec: UserRecord = serde_json::from_slice(&raw).unwrap();
        assert_eq!(rec.token_hash, Some(token_hash("sb_carol")));
        let d = Directory::load(store, 0).unwrap();
        assert_eq!(d.authenticate("sb_carol").as_deref(), Some("carol"));
        assert_eq!(
            d.authenticate_digest(&sha256(b"sb_carol")).as_deref(),
            Some("carol")
        );
        assert!(d.is_admin("sb_admin") && !d.is_admin("sb_other"));
    }

    #[tokio::test]
    async fn users_tokens_and_addresses_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Directory::load(store.clone(), 0).unwrap();
        let mut bob = Profile::im_only("bob");
        bob.mechanisms.push(Mechanism {
            medium: crate::protocol::MediumKind::Sms,
            address: "+4915100".into(),
        });
        let token = d
            .put_profile(bob.clone())
            .await
            .unwrap()
            .expect("new user gets a token");
        assert_eq!(d.authenticate(&token).as_deref(), Some("bob"));
        assert_eq!(
            d.put_profile(bob.clone()).await.unwrap(),
            None,
            "update keeps the token"
        );
        let mut alice = Profile::im_only("alice");
        alice.mechanisms.push(bob.mechanisms[1].clone());
        assert!(matches!(
            d.put_profile(alice).await,
            Err(DirectoryError::AddressTaken(..))
        ));

        let d2 = Directory::load(store, 0).unwrap();
        assert_eq!(d2.authenticate(&token).as_deref(), Some("bob"));
        let sms = Address::new(crate::protocol::MediumKind::Sms, "+4915100");
        assert_eq!(d2.user_for_address(&sms).as_deref(), Some("bob"));
        let new = d2.rotate_token("bob").await.unwrap();
        assert_eq!(d2.authenticate(&token), None);
        assert_eq!(d2.authenticate(&new).as_deref(), Some("bob"));
        d2.remove_user("bob").await.unwrap();
        assert_eq!(d2.authenticate(&new), None);
        assert_eq!(d2.user_for_address(&sms), None);
    }
}
