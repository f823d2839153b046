//! The delivery policy, a pure function: the recipient's mechanisms ∩ the
//! live mechanisms ∩ the manager's configuration, in the manager's order,
//! skipping a mechanism the recipient is known to be unreachable on.

use crate::protocol::MediumKind;

use super::manager::ManagerConfig;

/// What presence says about a recipient on one medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Online.
    Online,
    /// Away or busy: connected, but not attentive.
    Inattentive,
    /// Known offline.
    Offline,
    /// The medium has no presence (SMS, email, fax): reachable.
    Unknown,
}

/// The outcome of the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Mechanisms to use, in order: `(medium, the recipient's address)`.
    pub candidates: Vec<(MediumKind, String)>,
    /// When presence skipped every remaining mechanism: the IM mailbox to
    /// use instead (store-and-forward), if the recipient has one.
    pub store_and_forward: Option<(MediumKind, String)>,
}

/// Computes the policy.
///
/// - `mechanisms`: the recipient's, in their preference order;
/// - `live`: whether a gateway of the medium is up;
/// - `reach`: presence per medium;
/// - `tried`: mechanisms already attempted for this message.
pub fn delivery_policy(
    mechanisms: &[(MediumKind, String)],
    config: &ManagerConfig,
    live: impl Fn(MediumKind) -> bool,
    reach: impl Fn(MediumKind) -> Reach,
    tried: &[MediumKind],
) -> Policy {
    let mut candidates = Vec::new();
    let mut skipped_for_presence = false;
    for m in &config.mechanisms {
        let Some((_, address)) = mechanisms.iter().find(|(mm, _)| mm == m) else {
            continue;
        };
        if tried.contains(m) || !live(*m) {
            continue;
        }
        let usable = match reach(*m) {
            Reach::Online | Reach::Unknown => true,
            Reach::Inattentive => !config.require_presence,
            Reach::Offline => false,
        };
        if usable {
            candidates.push((*m, address.clone()));
        } else {
            skipped_for_presence = true;
        }
    }
    let store_and_forward =
        if candidates.is_empty() && skipped_for_presence && !tried.contains(&MediumKind::Im) {
            mechanisms
                .iter()
                .find(|(m, _)| *m == MediumKind::Im && live(MediumKind::Im))
                .cloned()
        } else {
            None
        };
    Policy {
        candidates,
        store_and_forward,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MediumKind::*;

    fn bob() -> Vec<(MediumKind, String)> {
        vec![
            (Im, "bob".into()),
            (Sms, "+49151".into()),
            (Email, "bob@example.com".into()),
        ]
    }

    struct Row {
        name: &'static str,
        config: &'static [MediumKind],
        require_presence: bool,
        live: &'static [MediumKind],
        im: Reach,
        tried: &'static [MediumKind],
        want: &'static [MediumKind],
        store_and_forward: bool,
    }

    const ROWS: &[Row] = &[
        Row {
            name: "manager order, not the user's",
            config: &[Sms, Im, Email],
            require_presence: false,
            live: &[Im, Sms, Email],
            im: Reach::Online,
            tried: &[],
            want: &[Sms, Im, Email],
            store_and_forward: false,
        },
        Row {
            name: "intersection with the recipient's mechanisms",
            config: &[Fax, Im],
            require_presence: false,
            live: &[Im, Fax],
            im: Reach::Online,
            tried: &[],
            want: &[Im],
            store_and_forward: false,
        },
        Row {
            name: "intersection with live gateways",
            config: &[Im, Sms, Email],
            require_presence: false,
            live: &[Email],
            im: Reach::Online,
            tried: &[],
            want: &[Email],
            store_and_forward: false,
        },
        Row {
            name: "offline on IM is skipped",
            config: &[Im, Sms],
            require_presence: false,
            live: &[Im, Sms],
            im: Reach::Offline,
            tried: &[],
            want: &[Sms],
            store_and_forward: false,
        },
        Row {
            name: "away still reachable without required presence",
            config: &[Im, Sms],
            require_presence: false,
            live: &[Im, Sms],
            im: Reach::Inattentive,
            tried: &[],
            want: &[Im, Sms],
            store_and_forward: false,
        },
        Row {
            name: "away skipped when presence is required",
            config: &[Im, Sms],
            require_presence: true,
            live: &[Im, Sms],
            im: Reach::Inattentive,
            tried: &[],
            want: &[Sms],
            store_and_forward: false,
        },
        Row {
            name: "tried mechanisms are not retried",
            config: &[Im, Sms, Email],
            require_presence: false,
            live: &[Im, Sms, Email],
            im: Reach::Online,
            tried: &[Im, Sms],
            want: &[Email],
            store_and_forward: false,
        },
        Row {
            name: "presence skipped everything: the IM mailbox",
            config: &[Im],
            require_presence: false,
            live: &[Im, Sms],
            im: Reach::Offline,
            tried: &[],
            want: &[],
            store_and_forward: true,
        },
        Row {
            name: "no mailbox once IM was tried",
            config: &[Im, Sms],
            require_presence: false,
            live: &[Im, Sms],
            im: Reach::Offline,
            tried: &[Im, Sms],
            want: &[],
            store_and_forward: false,
        },
        Row {
            name: "nothing live: nothing, no mailbox",
            config: &[Im, Sms],
            require_presence: false,
            live: &[],
            im: Reach::Offline,
            tried: &[],
            want: &[],
            store_and_forward: false,
        },
        Row {
            name: "exhausted without presence skips: no mailbox",
            config: &[Sms],
            require_presence: false,
            live: &[Im, Sms],
            im: Reach::Online,
            tried: &[Sms],
            want: &[],
            store_and_forward: false,
        },
    ];

    #[test]
    fn policy_table() {
        for r in ROWS {
            let config = ManagerConfig {
                mechanisms: r.config.to_vec(),
                attempt_timeout_s: 1,
                require_presence: r.require_presence,
            };
            let p = delivery_policy(
                &bob(),
                &config,
                |m| r.live.contains(&m),
                |m| if m == Im { r.im } else { Reach::Unknown },
                r.tried,
            );
            let got: Vec<MediumKind> = p.candidates.iter().map(|(m, _)| *m).collect();
            assert_eq!(got, r.want, "{}", r.name);
            assert_eq!(
                p.store_and_forward.is_some(),
                r.store_and_forward,
                "{}",
                r.name
            );
            for (m, a) in &p.candidates {
                assert_eq!(
                    bob().iter().find(|(mm, _)| mm == m).unwrap().1,
                    *a,
                    "{}: the recipient's address",
                    r.name
                );
            }
        }
    }
}
