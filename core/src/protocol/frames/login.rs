//! TSCS login (MIAP.md, "TSCS"): `Login` (member → broker) and `LoginAck`
//! (broker → member). Member side: [`start_login`] then [`finish_login`];
//! broker side: [`LoginVerifier::accept`] with a [`NonceCache`].

use serde::{Deserialize, Serialize};

use crate::protocol::error::ProtocolError;
use crate::protocol::ids::MemberId;
use crate::protocol::keys::{KeyRing, SecretKey};
use crate::protocol::mac::{self, label, random, Tag};
use crate::protocol::tscs::{NonceCache, Session};

/// `Login { member, key_id, ts_ms, nonce, mac(K_m, "login", member, broker, ts_ms, nonce) }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    /// The member logging in.
    pub member: MemberId,
    /// Which of its keys signed.
    pub key_id: u32,
    /// The member's clock, ms since the epoch.
    pub ts_ms: u64,
    /// A fresh random nonce.
    pub nonce: [u8; 16],
    /// The MAC.
    pub mac: Tag,
}

/// `LoginAck { session_nonce, mac(K_m, "login-ack", member, nonce, session_nonce) }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginAck {
    /// The broker's random contribution to the session secret.
    pub session_nonce: [u8; 32],
    /// The MAC.
    pub mac: Tag,
}

fn login_mac(
    key: &SecretKey,
    member: &MemberId,
    broker: &str,
    ts_ms: u64,
    nonce: &[u8; 16],
) -> Tag {
    mac::mac(
        key.bytes(),
        label::LOGIN,
        &[
            member.as_str().as_bytes(),
            broker.as_bytes(),
            &ts_ms.to_be_bytes(),
            nonce,
        ],
    )
}

fn ack_fields<'a>(
    member: &'a MemberId,
    nonce: &'a [u8; 16],
    session_nonce: &'a [u8; 32],
) -> [&'a [u8]; 3] {
    [member.as_str().as_bytes(), nonce, session_nonce]
}

/// The broker's side of TSCS.
#[derive(Debug, Clone)]
pub struct LoginVerifier {
    /// The broker's id (bound into every login MAC).
    pub broker: String,
    /// Allowed clock skew in either direction (ms).
    pub skew_ms: u64,
    /// Member keys.
    pub ring: KeyRing,
}

impl LoginVerifier {
    /// Checks a login and, when it passes, records its nonce and returns the
    /// answer and the new session. Checks run in this order: member known and
    /// not revoked, key id, skew, MAC, replay; a frame that fails changes
    /// nothing (the nonce is recorded only after the MAC verified).
    ///
    /// # Errors
    /// The first check that failed.
    pub fn accept(
        &self,
        login: &Login,
        now_ms: u64,
        nonces: &mut NonceCache,
    ) -> Result<(LoginAck, Session), ProtocolError> {
        let key = self.ring.key(&login.member, login.key_id, now_ms)?;
        if now_ms.abs_diff(login.ts_ms) > self.skew_ms {
            return Err(ProtocolError::SkewExceeded);
        }
        let fields: [&[u8]; 4] = [
            login.member.as_str().as_bytes(),
            self.broker.as_bytes(),
            &login.ts_ms.to_be_bytes(),
            &login.nonce,
        ];
        if !mac::verify(key.bytes(), label::LOGIN, &fields, &login.mac) {
            return Err(ProtocolError::BadMac);
        }
        nonces.prune(now_ms, self.skew_ms * 2);
        if nonces.contains(&login.member, &login.nonce) {
            return Err(ProtocolError::ReplayedNonce);
        }
        nonces.insert(login.member.clone(), login.nonce, login.ts_ms);
        let session_nonce: [u8; 32] = random();
        let ack = LoginAck {
            session_nonce,
            mac: mac::mac(
                key.bytes(),
                label::LOGIN_ACK,
                &ack_fields(&login.member, &login.nonce, &session_nonce),
            ),
        };
        let secret = mac::session_secret(key.bytes(), &login.nonce, &session_nonce);
        let session = Session::new(login.member.clone(), login.key_id, key, secret, now_ms);
        Ok((ack, session))
    }
}

/// A member's login in progress: send `login`, keep the rest for
/// [`finish_login`].
#[derive(Debug, Clone)]
pub struct PendingLogin {
    /// The frame to send.
    pub login: Login,
    key: SecretKey,
}

/// Member side, step 1: a fresh `Login` for `broker`.
pub fn start_login(
    member: MemberId,
    key_id: u32,
    key: SecretKey,
    broker: &str,
    now_ms: u64,
) -> PendingLogin {
    let nonce: [u8; 16] = random();
    let mac = login_mac(&key, &member, broker, now_ms, &nonce);
    PendingLogin {
        login: Login {
            member,
            key_id,
            ts_ms: now_ms,
            nonce,
            mac,
        },
        key,
    }
}

/// Member side, step 4: checks the broker's `LoginAck` and derives the session.
///
/// # Errors
/// [`ProtocolError::BadMac`] when the answer is not from a broker holding `K_m`.
pub fn finish_login(
    pending: &PendingLogin,
    ack: &LoginAck,
    now_ms: u64,
) -> Result<Session, ProtocolError> {
    let l = &pending.login;
    if !mac::verify(
        pending.key.bytes(),
        label::LOGIN_ACK,
        &ack_fields(&l.member, &l.nonce, &ack.session_nonce),
        &ack.mac,
    ) {
        return Err(ProtocolError::BadMac);
    }
    Ok(Session::new(
        l.member.clone(),
        l.key_id,
        pending.key.clone(),
        mac::session_secret(pending.key.bytes(), &l.nonce, &ack.session_nonce),
        now_ms,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ids::TxnId;
    use crate::protocol::keys::MemberKeys;

    const NOW: u64 = 1_700_000_000_000;

    fn setup() -> (LoginVerifier, MemberKeys) {
        let ring = KeyRing::new(60_000);
        let m = MemberKeys::generate(MemberId::new("gw-im-1"), None);
        ring.put(m.clone());
        (
            LoginVerifier {
                broker: "node-1".into(),
                skew_ms: 30_000,
                ring,
            },
            m,
        )
    }

    fn login_at(m: &MemberKeys, ts: u64) -> PendingLogin {
        let (id, key) = m.current();
        start_login(m.member.clone(), id, key.clone(), "node-1", ts)
    }

    #[test]
    fn login_establishes_the_same_session_on_both_sides() {
        let (v, m) = setup();
        let p = login_at(&m, NOW);
        let mut cache = NonceCache::default();
        let (ack, broker_side) = v.accept(&p.login, NOW, &mut cache).unwrap();
        let member_side = finish_login(&p, &ack, NOW).unwrap();
        assert_eq!(broker_side.secret, member_side.secret);
        let t = TxnId([5; 16]);
        assert_eq!(broker_side.step(&t, 2), member_side.step(&t, 2));
        assert_eq!(cache.len(), 1);
    }

    fn refused(
        v: &LoginVerifier,
        login: &Login,
        now: u64,
        cache: &mut NonceCache,
    ) -> ProtocolError {
        let before = cache.len();
        let e = v.accept(login, now, cache).unwrap_err();
        assert_eq!(
            cache.len(),
            before,
            "a refused login must not change the nonce cache"
        );
        e
    }

    #[test]
    fn wrong_mac_is_refused() {
        let (v, m) = setup();
        let mut p = login_at(&m, NOW);
        p.login.mac[0] ^= 0x80;
        assert_eq!(
            refused(&v, &p.login, NOW, &mut NonceCache::default()),
            ProtocolError::BadMac
        );
    }

    #[test]
    fn login_for_another_broker_is_refused() {
        let (v, m) = setup();
        let (id, key) = m.current();
        let p = start_login(m.member.clone(), id, key.clone(), "node-2", NOW);
        assert_eq!(
            refused(&v, &p.login, NOW, &mut NonceCache::default()),
            ProtocolError::BadMac
        );
    }

    #[test]
    fn unknown_member_and_wrong_key_id_are_refused() {
        let (v, m) = setup();
        let mut p = login_at(&m, NOW);
        p.login.key_id = 9;
        assert_eq!(
            refused(&v, &p.login, NOW, &mut NonceCache::default()),
            ProtocolError::UnknownKeyId
        );
        let stranger = MemberKeys::generate(MemberId::new("stranger"), None);
        let p = login_at(&stranger, NOW);
        assert_eq!(
            refused(&v, &p.login, NOW, &mut NonceCache::default()),
            ProtocolError::UnknownMember
        );
    }

    #[test]
    fn a_login_signed_with_another_members_key_is_refused() {
        let (v, m) = setup();
        let other = MemberKeys::generate(MemberId::new("x"), None);
        let p = start_login(
            m.member.clone(),
            1,
            other.current().1.clone(),
            "node-1",
            NOW,
        );
        assert_eq!(
            refused(&v, &p.login, NOW, &mut NonceCache::default()),
            ProtocolError::BadMac
        );
    }

    #[test]
    fn revoked_member_is_refused() {
        let (v, m) = setup();
        v.ring.revoke(&m.member).unwrap();
        let p = login_at(&m, NOW);
        assert_eq!(
            refused(&v, &p.login, NOW, &mut NonceCache::default()),
            ProtocolError::Revoked
        );
    }

    #[test]
    fn skew_exceeded_in_both_directions() {
        let (v, m) = setup();
        let mut cache = NonceCache::default();
        let late = login_at(&m, NOW - 30_001);
        assert_eq!(
            refused(&v, &late.login, NOW, &mut cache),
            ProtocolError::SkewExceeded
        );
        let early = login_at(&m, NOW + 30_001);
        assert_eq!(
            refused(&v, &early.login, NOW, &mut cache),
            ProtocolError::SkewExceeded
        );
        let edge = login_at(&m, NOW + 30_000);
        assert!(v.accept(&edge.login, NOW, &mut cache).is_ok());
    }

    #[test]
    fn replayed_nonce_is_refused_inside_the_window() {
        let (v, m) = setup();
        let mut cache = NonceCache::default();
        let p = login_at(&m, NOW);
        v.accept(&p.login, NOW, &mut cache).unwrap();
        assert_eq!(
            refused(&v, &p.login, NOW + 1_000, &mut cache),
            ProtocolError::ReplayedNonce
        );
        // Past the skew window the frame is refused for its age instead.
        assert_eq!(
            refused(&v, &p.login, NOW + 31_000, &mut cache),
            ProtocolError::SkewExceeded
        );
    }

    #[test]
    fn forged_ack_is_refused_by_the_member() {
        let (v, m) = setup();
        let p = login_at(&m, NOW);
        let (mut ack, _) = v.accept(&p.login, NOW, &mut NonceCache::default()).unwrap();
        ack.session_nonce[0] ^= 1;
        assert_eq!(finish_login(&p, &ack, NOW), Err(ProtocolError::BadMac));
    }

    #[test]
    fn rotated_key_works_in_grace_then_retires() {
        let (v, mut m) = setup();
        let old = login_at(&m, NOW);
        m.rotate(NOW, 60_000);
        v.ring.put(m.clone());
        let mut cache = NonceCache::default();
        assert!(v.accept(&old.login, NOW + 1, &mut cache).is_ok());
        let old2 = start_login(
            m.member.clone(),
            1,
            m.keys[0].key.clone(),
            "node-1",
            NOW + 61_000,
        );
        assert_eq!(
            refused(&v, &old2.login, NOW + 61_000, &mut cache),
            ProtocolError::KeyRetired
        );
        let new = login_at(&m, NOW + 61_000);
        assert!(v.accept(&new.login, NOW + 61_000, &mut cache).is_ok());
    }
}
