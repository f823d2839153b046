//! The labelled, length-prefixed MAC of MIAP, per-step key derivation, and the
//! constant-time comparison every check uses.
//!
//! `mac(K, label, fields…)` = HMAC-SHA256 over the label and every field, each
//! prefixed by its length as u32 big-endian, so no two different field lists
//! give the same input.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::ids::TxnId;

/// Length of a MAC tag.
pub const TAG_LEN: usize = 32;

/// A MAC tag (HMAC-SHA256 output).
pub type Tag = [u8; TAG_LEN];

type HmacSha256 = Hmac<Sha256>;

/// Labels that keep the steps apart.
pub mod label {
    /// Login (TSCS step 1).
    pub const LOGIN: &str = "login";
    /// LoginAck (TSCS step 3).
    pub const LOGIN_ACK: &str = "login-ack";
    /// The session secret.
    pub const SESSION: &str = "session";
    /// Per-step key derivation.
    pub const STEP: &str = "step";
    /// Submit (phase 1).
    pub const IMI: &str = "imi";
    /// Broker inner digest `ID` of an attempt (phase 2).
    pub const ID: &str = "id";
    /// Release outer digest (phase 2).
    pub const OUTER: &str = "outer";
    /// Rejected (phase 2).
    pub const REJECTED: &str = "rejected";
    /// Held for review (phase 2, a quarantine).
    pub const HELD: &str = "held";
    /// The archive's copy asked for again (phase 2, a resubmission of a
    /// concluded archived transaction).
    pub const ARCHIVE_COPY: &str = "archive-copy";
    /// ReleaseAck (phase 2).
    pub const RELEASE_ACK: &str = "release-ack";
    /// Grant for one hop (phase 3).
    pub const GRANT: &str = "grant";
    /// A processor's attestation (phase 3).
    pub const ATTEST: &str = "attest";
    /// Report (phase 4).
    pub const REPORT: &str = "report";
    /// ReportAck (phase 4).
    pub const REPORT_ACK: &str = "report-ack";
    /// Notify (phase 5).
    pub const NOTIFY: &str = "notify";
    /// NotifyAck (phase 5).
    pub const NOTIFY_ACK: &str = "notify-ack";
    /// Presence.
    pub const PRESENCE: &str = "presence";
    /// A member's health.
    pub const HEALTH: &str = "health";
    /// An IM gateway asks whose token it holds.
    pub const IDENTIFY: &str = "identify";
    /// The broker's answer.
    pub const IDENTITY: &str = "identity";
    /// Redirect: the answer to an Identify for a user served elsewhere.
    pub const REDIRECT: &str = "redirect";
    /// An IM gateway follows users' presence.
    pub const WATCH: &str = "watch";
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length")
}

fn feed(h: &mut HmacSha256, label: &str, fields: &[&[u8]]) {
    h.update(&(label.len() as u32).to_be_bytes());
    h.update(label.as_bytes());
    for f in fields {
        h.update(&(f.len() as u32).to_be_bytes());
        h.update(f);
    }
}

/// The tag of `label` and `fields` under the keyed `h`.
fn finish(mut h: HmacSha256, label: &str, fields: &[&[u8]]) -> Tag {
    feed(&mut h, label, fields);
    h.finalize().into_bytes().into()
}

/// An HMAC key made ready once — its two padded key blocks hashed — and
/// cloned for each MAC under it: two SHA-256 blocks fewer per MAC (a
/// session secret derives a step key for every frame).
#[derive(Clone)]
pub struct Prekeyed(HmacSha256);

impl Prekeyed {
    /// `key`, made ready.
    pub fn new(key: &[u8]) -> Self {
        Self(keyed(key))
    }

    /// `mac(key, label, fields…)` under this key.
    pub fn mac(&self, label: &str, fields: &[&[u8]]) -> Tag {
        finish(self.0.clone(), label, fields)
    }
}

impl std::fmt::Debug for Prekeyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prekeyed(..)")
    }
}

/// Made from a key the holder also keeps (and compares): always equal.
impl PartialEq for Prekeyed {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Prekeyed {}

/// `mac(key, label, fields…)`.
pub fn mac(key: &[u8], label: &str, fields: &[&[u8]]) -> Tag {
    finish(keyed(key), label, fields)
}

/// Checks `tag` against `mac(key, label, fields…)` in constant time.
pub fn verify(key: &[u8], label: &str, fields: &[&[u8]], tag: &Tag) -> bool {
    let mut h = keyed(key);
    feed(&mut h, label, fields);
    h.verify_slice(tag).is_ok()
}

/// Constant-time equality of two tags.
pub fn ct_eq(a: &Tag, b: &Tag) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// The session secret `S = HMAC(K_m, "session" ‖ nonce ‖ session_nonce)`.
pub fn session_secret(member_key: &[u8], nonce: &[u8; 16], session_nonce: &[u8; 32]) -> Tag {
    mac(member_key, label::SESSION, &[nonce, session_nonce])
}

/// The per-step key `C_ack(txn, step) = HMAC(S, "step" ‖ txn ‖ step)`.
pub fn step_key(session: &Tag, txn: &TxnId, step: u8) -> Tag {
    step_key_with(&Prekeyed::new(session), txn, step)
}

/// [`step_key`] under the session secret made ready once.
pub fn step_key_with(session: &Prekeyed, txn: &TxnId, step: u8) -> Tag {
    session.mac(label::STEP, &[txn.as_bytes(), &[step]])
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Fills `buf` from the operating system's CSPRNG.
///
/// # Panics
/// When the operating system has no random source, which leaves no safe way
/// to make keys or nonces.
pub fn fill_random(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random source failed");
}

/// `N` random bytes.
pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    fill_random(&mut b);
    b
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefix_separates_field_lists() {
        let k = [7u8; 32];
        assert_ne!(
            mac(&k, "x", &[b"ab", b"c"]),
            mac(&k, "x", &[b"a", b"bc"]),
            "moving a byte between fields must change the MAC"
        );
        assert_ne!(mac(&k, "x", &[b"a"]), mac(&k, "y", &[b"a"]));
    }

    #[test]
    fn matches_rfc4231_when_unlabelled_input_is_reproduced() {
        // HMAC-SHA256 test case 2 of RFC 4231: key "Jefe".
        let mut h = keyed(b"Jefe");
        h.update(b"what do ya want for nothing?");
        let out: Tag = h.finalize().into_bytes().into();
        assert_eq!(
            hex(&out),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verify_and_ct_eq() {
        let k = [1u8; 32];
        let t = mac(&k, "imi", &[b"payload"]);
        assert!(verify(&k, "imi", &[b"payload"], &t));
        let mut bad = t;
        bad[31] ^= 1;
        assert!(!verify(&k, "imi", &[b"payload"], &bad));
        assert!(ct_eq(&t, &t));
        assert!(!ct_eq(&t, &bad));
    }

    #[test]
    fn step_keys_differ_per_step_and_txn() {
        let s = [9u8; 32];
        let t1 = TxnId([1; 16]);
        let t2 = TxnId([2; 16]);
        assert_ne!(step_key(&s, &t1, 1), step_key(&s, &t1, 2));
        // Made ready once, the same keys.
        let ready = Prekeyed::new(&s);
        assert_eq!(step_key_with(&ready, &t1, 1), step_key(&s, &t1, 1));
        assert_eq!(
            step_key_with(&ready, &t2, 7),
            mac(&s, label::STEP, &[t2.as_bytes(), &[7]])
        );
        for key in [&b""[..], b"k", &[9u8; 64], &[3u8; 65]] {
            assert_eq!(
                Prekeyed::new(key).mac("l", &[b"a", b""]),
                mac(key, "l", &[b"a", b""])
            );
        }
        assert_ne!(step_key(&s, &t1, 1), step_key(&s, &t2, 1));
    }
}
