//! Recipient resolution: who a message is for and on which mechanisms they
//! can be reached, from the cached profiles — a plain synchronous function
//! over in-memory state, no blocking call on the broker's hot path. The
//! broker combines it with the delivery policy
//! ([`crate::policy::delivery_policy`]) into a route.

use crate::directory::Directory;
use crate::protocol::{MediumKind, RejectReason, To};

/// The recipient resolved against the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The recipient's user id, when they are a user.
    pub user: Option<String>,
    /// Candidate mechanisms in preference order: `(medium, address)`.
    pub mechanisms: Vec<(MediumKind, String)>,
}

/// Resolves a recipient: a user id to their profile's mechanisms; an address
/// that belongs to a user to that user's mechanisms, the addressed medium
/// first; any other address to itself (an external recipient).
///
/// # Errors
/// [`RejectReason::UnknownRecipient`] for an unknown user id.
pub fn resolve(to: &To, dir: &Directory) -> Result<Resolved, RejectReason> {
    let (user, first) = match to {
        To::User(id) => (Some(id.clone()), None),
        To::Address(a) => (dir.user_for_address(a), Some((a.medium, a.address.clone()))),
    };
    match user {
        Some(id) => {
            let p = dir.profile(&id).ok_or(RejectReason::UnknownRecipient)?;
            let mut mechanisms: Vec<_> = first.into_iter().collect();
            for m in &p.mechanisms {
                if !mechanisms
                    .iter()
                    .any(|(md, a)| *md == m.medium && *a == m.address)
                {
                    mechanisms.push((m.medium, m.address.clone()));
                }
            }
            Ok(Resolved {
                user: Some(id),
                mechanisms,
            })
        }
        None => Ok(Resolved {
            user: None,
            mechanisms: first.into_iter().collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{Mechanism, Profile};
    use crate::protocol::Address;
    use crate::store::Store;

    #[tokio::test]
    async fn users_addresses_and_external_recipients() {
        let dir = tempfile::tempdir().unwrap();
        let d = Directory::load(Store::open(dir.path()).unwrap(), 0).unwrap();
        let mut bob = Profile::im_only("bob");
        bob.mechanisms.push(Mechanism {
            medium: MediumKind::Sms,
            address: "+49151".into(),
        });
        d.put_profile(bob).await.unwrap();
        let by_id = resolve(&To::User("bob".into()), &d).unwrap();
        assert_eq!(by_id.user.as_deref(), Some("bob"));
        assert_eq!(
            by_id.mechanisms,
            vec![
                (MediumKind::Im, "bob".into()),
                (MediumKind::Sms, "+49151".into())
            ]
        );
        let by_sms = resolve(&To::Address(Address::new(MediumKind::Sms, "+49151")), &d).unwrap();
        assert_eq!(
            by_sms.mechanisms[0],
            (MediumKind::Sms, "+49151".into()),
            "the addressed medium first"
        );
        assert_eq!(by_sms.mechanisms.len(), 2);
        let external =
            resolve(&To::Address(Address::new(MediumKind::Email, "x@y.org")), &d).unwrap();
        assert_eq!((external.user, external.mechanisms.len()), (None, 1));
        assert_eq!(
            resolve(&To::User("nobody".into()), &d),
            Err(RejectReason::UnknownRecipient)
        );
    }
}
