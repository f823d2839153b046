//! The archive's signing key (Ed25519): a 32-byte seed the shell keeps in a
//! file (0600, made at `init`); its public half verifies checkpoints.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// The archive's signing key.
#[derive(Clone)]
pub struct ArchiveKey(SigningKey);

impl std::fmt::Debug for ArchiveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ArchiveKey")
            .field(&super::record::hex(&self.public()))
            .finish()
    }
}

impl ArchiveKey {
    /// A new random key.
    ///
    /// # Panics
    /// When the operating system has no randomness to give.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the OS has randomness");
        Self::from_seed(seed)
    }

    /// The key of `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }

    /// Its seed (what the key file holds).
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Its public half.
    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

/// Whether `signature` over `message` verifies under `public`.
pub fn verify(public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(public) else {
        return false;
    };
    key.verify_strict(message, &Signature::from_bytes(signature))
        .is_ok()
}
