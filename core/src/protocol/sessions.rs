//! A party's view of its sessions with one peer: the current one and, during
//! renewal, the previous one, so frames signed just before a renewal still
//! verify.

use crate::protocol::tscs::Session;
use crate::protocol::ProtocolError;

/// The current session and the one it replaced.
#[derive(Debug, Clone)]
pub struct SessionPair {
    /// The newest session.
    pub current: Session,
    /// The session it replaced, if any.
    pub previous: Option<Session>,
}

impl SessionPair {
    /// A pair with only `s`.
    pub fn new(s: Session) -> Self {
        Self {
            current: s,
            previous: None,
        }
    }

    /// Makes `s` current, keeping the old current as previous.
    pub fn renew(&mut self, s: Session) {
        let old = std::mem::replace(&mut self.current, s);
        self.previous = Some(old);
    }

    /// Runs `check` on the current session, then on the previous one; the
    /// first that passes is returned.
    ///
    /// # Errors
    /// The current session's error when neither passes.
    pub fn verify(
        &self,
        check: impl Fn(&Session) -> Result<(), ProtocolError>,
    ) -> Result<&Session, ProtocolError> {
        match check(&self.current) {
            Ok(()) => Ok(&self.current),
            Err(e) => match &self.previous {
                Some(p) if check(p).is_ok() => Ok(p),
                _ => Err(e),
            },
        }
    }
}
