//! Member keys (`K_m`, one per member, rotatable, revocable) and the broker
//! key `K2`. The [`KeyRing`] is the in-memory view the checks use; the
//! directory persists it.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::ProtocolError;
use super::ids::{MediumKind, MemberId};
use super::mac::random;

/// A 32-byte secret key. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretKey(pub [u8; 32]);

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(random())
    }

    /// The key bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 hex digits (a key file's content).
    ///
    /// # Errors
    /// When the text is not 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, ProtocolError> {
        let s = s.trim().as_bytes();
        if s.len() != 64 {
            return Err(ProtocolError::Malformed);
        }
        let mut b = [0u8; 32];
        for (i, pair) in s.chunks(2).enumerate() {
            let hi = (pair[0] as char)
                .to_digit(16)
                .ok_or(ProtocolError::Malformed)?;
            let lo = (pair[1] as char)
                .to_digit(16)
                .ok_or(ProtocolError::Malformed)?;
            b[i] = (hi * 16 + lo) as u8;
        }
        Ok(Self(b))
    }

    /// The key as 64 hex digits.
    pub fn to_hex(&self) -> String {
        super::mac::hex(&self.0)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

/// One version of a member's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersion {
    /// The key id (increases with every rotation).
    pub key_id: u32,
    /// The key.
    pub key: SecretKey,
    /// When a newer key replaced this one (ms); accepted for the grace period
    /// after that.
    pub superseded_at_ms: Option<u64>,
}

/// A member: its medium, its keys, whether it is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberKeys {
    /// The member's id.
    pub member: MemberId,
    /// The medium it serves (gateways), if any.
    pub medium: Option<MediumKind>,
    /// Key versions, oldest first; the last is current.
    pub keys: Vec<KeyVersion>,
    /// Revoked members are refused.
    pub revoked: bool,
}

impl MemberKeys {
    /// A new member with one fresh key (id 1).
    pub fn generate(member: MemberId, medium: Option<MediumKind>) -> Self {
        Self {
            member,
            medium,
            keys: vec![KeyVersion {
                key_id: 1,
                key: SecretKey::generate(),
                superseded_at_ms: None,
            }],
            revoked: false,
        }
    }

    /// The current key and its id.
    pub fn current(&self) -> (u32, &SecretKey) {
        let k = self.keys.last().expect("a member always has a key");
        (k.key_id, &k.key)
    }

    /// The key named `key_id`, if it is current or inside its grace period.
    ///
    /// # Errors
    /// [`ProtocolError::Revoked`], [`ProtocolError::UnknownKeyId`] or
    /// [`ProtocolError::KeyRetired`].
    pub fn key(
        &self,
        key_id: u32,
        now_ms: u64,
        grace_ms: u64,
    ) -> Result<&SecretKey, ProtocolError> {
        if self.revoked {
            return Err(ProtocolError::Revoked);
        }
        let k = self
            .keys
            .iter()
            .find(|k| k.key_id == key_id)
            .ok_or(ProtocolError::UnknownKeyId)?;
        match k.superseded_at_ms {
            Some(at) if now_ms > at.saturating_add(grace_ms) => Err(ProtocolError::KeyRetired),
            _ => Ok(&k.key),
        }
    }

    /// Every key still accepted at `now_ms`, newest first (for checks that
    /// carry no key id, such as grants).
    pub fn accepted(&self, now_ms: u64, grace_ms: u64) -> impl Iterator<Item = &SecretKey> {
        self.keys
            .iter()
            .rev()
            .filter(move |k| {
                k.superseded_at_ms
                    .is_none_or(|at| now_ms <= at.saturating_add(grace_ms))
            })
            .map(|k| &k.key)
    }

    /// Adds a fresh key and marks the previous one superseded at `now_ms`;
    /// keys past their grace period are dropped.
    pub fn rotate(&mut self, now_ms: u64, grace_ms: u64) -> u32 {
        let next = self.current().0 + 1;
        if let Some(last) = self.keys.last_mut() {
            last.superseded_at_ms = Some(now_ms);
        }
        self.keys.retain(|k| {
            k.superseded_at_ms
                .is_none_or(|at| now_ms <= at.saturating_add(grace_ms))
        });
        self.keys.push(KeyVersion {
            key_id: next,
            key: SecretKey::generate(),
            superseded_at_ms: None,
        });
        next
    }
}

/// The members' keys as the broker sees them. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    members: std::sync::Arc<dashmap::DashMap<MemberId, MemberKeys>>,
    grace_ms: u64,
}

impl KeyRing {
    /// An empty key ring whose rotated keys stay valid for `grace_ms`.
    pub fn new(grace_ms: u64) -> Self {
        Self {
            members: Default::default(),
            grace_ms,
        }
    }

    /// The rotation grace period.
    pub fn grace_ms(&self) -> u64 {
        self.grace_ms
    }

    /// Adds or replaces a member.
    pub fn put(&self, m: MemberKeys) {
        self.members.insert(m.member.clone(), m);
    }

    /// A copy of a member's record.
    pub fn get(&self, member: &MemberId) -> Option<MemberKeys> {
        self.members.get(member).map(|m| m.clone())
    }

    /// Runs `f` on a member's record without copying it.
    ///
    /// # Errors
    /// [`ProtocolError::UnknownMember`] when there is no such member.
    pub fn with<R>(
        &self,
        member: &MemberId,
        f: impl FnOnce(&MemberKeys) -> Result<R, ProtocolError>,
    ) -> Result<R, ProtocolError> {
        let m = self
            .members
            .get(member)
            .ok_or(ProtocolError::UnknownMember)?;
        f(&m)
    }

    /// The key `key_id` of `member`, if accepted now.
    ///
    /// # Errors
    /// As [`MemberKeys::key`], or [`ProtocolError::UnknownMember`].
    pub fn key(
        &self,
        member: &MemberId,
        key_id: u32,
        now_ms: u64,
    ) -> Result<SecretKey, ProtocolError> {
        self.with(member, |m| m.key(key_id, now_ms, self.grace_ms).cloned())
    }

    /// Verifies a tag made with any accepted key of `member` (grants,
    /// attestations: frames that carry no key id).
    ///
    /// # Errors
    /// [`ProtocolError::UnknownMember`], [`ProtocolError::Revoked`], or `err`
    /// when no key verifies.
    pub fn verify_any(
        &self,
        member: &MemberId,
        now_ms: u64,
        err: ProtocolError,
        check: impl Fn(&SecretKey) -> bool,
    ) -> Result<(), ProtocolError> {
        self.with(member, |m| {
            if m.revoked {
                return Err(ProtocolError::Revoked);
            }
            if m.accepted(now_ms, self.grace_ms).any(check) {
                Ok(())
            } else {
                Err(err)
            }
        })
    }

    /// Marks a member revoked.
    ///
    /// # Errors
    /// [`ProtocolError::UnknownMember`].
    pub fn revoke(&self, member: &MemberId) -> Result<(), ProtocolError> {
        let mut m = self
            .members
            .get_mut(member)
            .ok_or(ProtocolError::UnknownMember)?;
        m.revoked = true;
        Ok(())
    }

    /// Every member's id.
    pub fn ids(&self) -> Vec<MemberId> {
        self.members.iter().map(|m| m.key().clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_previous_key_for_the_grace_period() {
        let mut m = MemberKeys::generate(MemberId::new("gw"), None);
        let old = m.current().1.clone();
        let new_id = m.rotate(1_000, 500);
        assert_eq!(new_id, 2);
        assert_eq!(m.key(1, 1_400, 500), Ok(&old));
        assert_eq!(m.key(1, 1_501, 500), Err(ProtocolError::KeyRetired));
        assert!(m.key(2, 9_999, 500).is_ok());
        assert_eq!(m.key(3, 1_000, 500), Err(ProtocolError::UnknownKeyId));
    }

    #[test]
    fn revoked_member_has_no_usable_key() {
        let ring = KeyRing::new(0);
        let m = MemberKeys::generate(MemberId::new("gw"), None);
        ring.put(m);
        ring.revoke(&MemberId::new("gw")).unwrap();
        assert_eq!(
            ring.key(&MemberId::new("gw"), 1, 0),
            Err(ProtocolError::Revoked)
        );
        assert_eq!(
            ring.key(&MemberId::new("nobody"), 1, 0),
            Err(ProtocolError::UnknownMember)
        );
    }

    #[test]
    fn key_hex_round_trip() {
        let k = SecretKey::generate();
        assert_eq!(SecretKey::from_hex(&k.to_hex()).unwrap(), k);
        assert_eq!(SecretKey::from_hex("zz"), Err(ProtocolError::Malformed));
    }
}
