//! The gateway compliance suite: what every [`Medium`] owes by its contract
//! (`switchboard_actors::medium`), checked the same way for each medium —
//! a name, a health report, acknowledgement only once the medium really has
//! the message, idempotence on the transaction, and bad input or a broken
//! far side refused cleanly. `tests/compliance.rs` runs it for every medium.

use switchboard_actors::medium::{Delivery, Medium, MediumAck};
use switchboard_core::protocol::{Address, MediumKind, MemberId, Route, TxnId};

/// A medium under test, with a way to look at the far side.
pub trait Subject {
    /// The medium type.
    type M: Medium;
    /// A medium connected to a working far side.
    fn medium(&mut self) -> Self::M;
    /// A medium whose far side is down, if the medium has one.
    fn broken(&mut self) -> Option<Self::M>;
    /// The medium it must say it is.
    fn kind(&self) -> MediumKind;
    /// The recipient's address for a delivery the medium can make.
    fn good_address(&self) -> (String, Option<String>);
    /// A delivery it must refuse (bad address, unknown user), if any.
    fn bad_address(&self) -> Option<(String, Option<String>)>;
    /// How many copies of `txn` the far side holds.
    fn copies(&self, txn: &TxnId) -> usize;
}

/// A delivery of `body` to `address` on `medium`.
pub fn delivery(medium: MediumKind, address: &str, user: Option<String>, body: &str) -> Delivery {
    Delivery {
        txn: TxnId::generate(1_800_000_000_000),
        attempt: 1,
        id: [7; 32],
        from: "alice".into(),
        originator: MemberId::new("gw-o"),
        sender: Address::new(MediumKind::Im, "alice"),
        sender_user: Some("alice".into()),
        route: Route {
            mechanism: medium,
            address: address.into(),
            recipient_user: user,
            destination: MemberId::new("gw-under-test"),
            processors: Vec::new(),
            archive: None,
            store_and_forward: false,
        },
        subject: Some("compliance".into()),
        content_type: "text/plain; charset=utf-8".into(),
        content: body.as_bytes().to_vec(),
        sent_at_ms: 1_800_000_000_000,
        attestations: Vec::new(),
        tags: Vec::new(),
    }
}

fn fail(what: &str) -> Result<(), String> {
    Err(what.to_string())
}

/// Runs the suite; the first broken promise is the error.
///
/// # Errors
/// Which promise the medium broke.
pub async fn check<S: Subject>(s: &mut S) -> Result<(), String> {
    let mut m = s.medium();
    if m.kind() != s.kind() {
        return fail("it names another medium");
    }
    if m.name().is_empty() {
        return fail("it has no name");
    }
    let h = m.health();
    if !h.up || h.detail.is_empty() {
        return fail("a working medium reports itself down or without detail");
    }

    let (addr, user) = s.good_address();
    let d = delivery(s.kind(), &addr, user, "compliance check: hello");
    let first = m
        .deliver(d.clone())
        .await
        .map_err(|e| format!("a good delivery was refused: {e}"))?;
    if s.copies(&d.txn) != 1 {
        return fail("acknowledged, but the far side does not have exactly one copy");
    }
    let again = m
        .deliver(d.clone())
        .await
        .map_err(|e| format!("a repeated delivery was refused: {e}"))?;
    if again != first && !(first == MediumAck::Pending && again == MediumAck::Delivered) {
        return fail("a repeated delivery was answered differently");
    }
    if s.copies(&d.txn) != 1 {
        return fail("a repeated delivery made a second copy (not idempotent on txn)");
    }

    if let Some((addr, user)) = s.bad_address() {
        let bad = delivery(s.kind(), &addr, user, "must not arrive");
        match m.deliver(bad.clone()).await {
            Ok(_) => return fail("bad input was acknowledged"),
            Err(e) if e.0.is_empty() => return fail("a refusal without a reason"),
            Err(_) => {}
        }
        if s.copies(&bad.txn) != 0 {
            return fail("refused, yet the far side has it");
        }
    }

    if let Some(mut broken) = s.broken() {
        let (addr, user) = s.good_address();
        let d = delivery(s.kind(), &addr, user, "far side down");
        if broken.deliver(d.clone()).await.is_ok() {
            return fail("acknowledged while the far side is down");
        }
        if s.copies(&d.txn) != 0 {
            return fail("the far side has a message it never accepted");
        }
    }
    Ok(())
}
