//! Home nodes (`CLUSTER.md`, behaviour 7; seeds 000 and 003: geographic and
//! attribute routing): a user whose profile names a `home_node` gets their
//! email, SMS and fax from that node's gateways — its SMTP relay, its SMSC
//! bind, its fax spool — whichever node accepted the message. While that
//! node is down, or has the medium off, another node delivers, and the
//! attempt says so. The rule is [`place`], pure; the shell asks the home
//! node over NATS and words what happened.

/// Where a delivery for a user goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// This node's gateway for the medium (its own connection, or its
    /// forwarding to any node that has the medium); `why` not the home
    /// node, when the user has one elsewhere.
    Here(Option<String>),
    /// The home node's gateway; here after all only if it never had the
    /// delivery.
    Home(String),
}

/// Where a delivery on `medium` for a user whose home node is `home` goes,
/// from node `me`, when `live` are the other nodes alive now and `serving`
/// those of them whose own gateways serve `medium`.
pub fn place(
    me: &str,
    home: Option<&str>,
    medium: &str,
    live: &[String],
    serving: &[String],
) -> Place {
    let Some(home) = home.filter(|h| *h != me) else {
        return Place::Here(None);
    };
    if serving.iter().any(|n| n == home) {
        Place::Home(home.to_string())
    } else if live.iter().any(|n| n == home) {
        Place::Here(Some(format!("home node {home} has no {medium}")))
    } else {
        Place::Here(Some(format!("home node {home} is down")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn the_home_node_delivers_while_it_is_up_and_has_the_medium() {
        let here = |why: Option<&str>| Place::Here(why.map(str::to_string));
        // (home, live, serving, where).
        type Case<'a> = (Option<&'a str>, &'a [&'a str], &'a [&'a str], Place);
        let cases: &[Case<'_>] = &[
            // No home node, or this one: here, nothing to say.
            (None, &["b", "c"], &["c"], here(None)),
            (Some("a"), &["b", "c"], &["c"], here(None)),
            // Home elsewhere, alive, with the medium: there.
            (Some("c"), &["b", "c"], &["c"], Place::Home("c".into())),
            (Some("c"), &["b", "c"], &["b", "c"], Place::Home("c".into())),
            // Alive without the medium, or down: here, and why.
            (
                Some("c"),
                &["b", "c"],
                &["b"],
                here(Some("home node c has no fax")),
            ),
            (Some("c"), &["b"], &["b"], here(Some("home node c is down"))),
            (Some("zz"), &[], &[], here(Some("home node zz is down"))),
        ];
        for (home, live, serving, want) in cases {
            assert_eq!(
                place("a", *home, "fax", &v(live), &v(serving)),
                *want,
                "home {home:?}, live {live:?}, serving {serving:?}"
            );
        }
    }
}
