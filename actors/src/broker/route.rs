//! The route decision: where delivery managers plug in. Given a message's
//! IMI, the mechanisms already tried, the directory and the live members, a
//! [`RouteDecider`] picks the next mechanism or says why there is none. It is
//! a plain synchronous function over in-memory state: no blocking call on the
//! broker's hot path.

use crate::directory::Directory;
use crate::members::MemberRegistry;
use crate::protocol::{Imi, MediumKind, RejectReason, Route, To};

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

/// Picks the route of the next attempt.
pub trait RouteDecider: Send + Sync + 'static {
    /// The route for `imi`, skipping mechanisms in `tried`.
    ///
    /// # Errors
    /// Why the message cannot go anywhere (now).
    fn decide(
        &self,
        imi: &Imi,
        tried: &[MediumKind],
        dir: &Directory,
        live: &MemberRegistry,
    ) -> Result<Route, RejectReason>;
}

/// The spine's policy: the recipient's first untried mechanism whose gateway
/// is live.
#[derive(Debug, Default, Clone, Copy)]
pub struct FirstLiveMechanism;

impl RouteDecider for FirstLiveMechanism {
    fn decide(
        &self,
        imi: &Imi,
        tried: &[MediumKind],
        dir: &Directory,
        live: &MemberRegistry,
    ) -> Result<Route, RejectReason> {
        let r = resolve(&imi.recipient, dir)?;
        first_live(&r, tried, |m| live.live_gateway(m))
    }
}

/// The pure core of [`FirstLiveMechanism`]: the first mechanism of `r` not
/// in `tried` for which `gateway` names a live gateway.
///
/// # Errors
/// [`RejectReason::NoMechanism`] when none qualifies.
pub fn first_live(
    r: &Resolved,
    tried: &[MediumKind],
    gateway: impl Fn(MediumKind) -> Option<crate::protocol::MemberId>,
) -> Result<Route, RejectReason> {
    r.mechanisms
        .iter()
        .filter(|(m, _)| !tried.contains(m))
        .find_map(|(m, a)| {
            gateway(*m).map(|g| Route {
                mechanism: *m,
                address: a.clone(),
                recipient_user: r.user.clone(),
                destination: g,
                processors: Vec::new(),
                archive: None,
            })
        })
        .ok_or(RejectReason::NoMechanism)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MemberId;

    fn resolved() -> Resolved {
        Resolved {
            user: Some("bob".into()),
            mechanisms: vec![
                (MediumKind::Im, "bob".into()),
                (MediumKind::Sms, "+49151".into()),
                (MediumKind::Email, "bob@example.com".into()),
            ],
        }
    }

    #[test]
    fn first_live_mechanism_in_preference_order() {
        let table: &[(&[MediumKind], &[MediumKind], Option<MediumKind>)] = &[
            (
                &[MediumKind::Im, MediumKind::Sms],
                &[],
                Some(MediumKind::Im),
            ),
            (
                &[MediumKind::Sms, MediumKind::Email],
                &[],
                Some(MediumKind::Sms),
            ),
            (
                &[MediumKind::Im, MediumKind::Sms],
                &[MediumKind::Im],
                Some(MediumKind::Sms),
            ),
            (&[MediumKind::Email], &[MediumKind::Email], None),
            (&[MediumKind::Fax], &[], None),
            (&[], &[], None),
        ];
        for (live, tried, want) in table {
            let got = first_live(&resolved(), tried, |m| {
                live.contains(&m).then(|| MemberId::new(format!("gw-{m}")))
            });
            match want {
                Some(m) => {
                    let r = got.unwrap();
                    assert_eq!(r.mechanism, *m, "live {live:?} tried {tried:?}");
                    assert_eq!(r.destination, MemberId::new(format!("gw-{m}")));
                    assert_eq!(r.recipient_user.as_deref(), Some("bob"));
                }
                None => assert_eq!(got.unwrap_err(), RejectReason::NoMechanism, "live {live:?}"),
            }
        }
    }
}
