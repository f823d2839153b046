//! MIAP frames as a connection reads them (length prefix, then body), and
//! every decoded frame through its own check under a session, a key and a
//! key ring this input does not know: decoding refuses or succeeds, never
//! panics, and no check passes a frame that was not made with the key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_core::protocol::codec::{self, Check};
use switchboard_core::protocol::frames::login::LoginVerifier;
use switchboard_core::protocol::frames::{self as f};
use switchboard_core::protocol::tscs::NonceCache;
use switchboard_core::protocol::{Frame, KeyRing, MemberId, MemberKeys, SecretKey, Session};

const NOW: u64 = 1_800_000_000_000;
const SKEW: u64 = 30_000;

fuzz_target!(|data: &[u8]| {
    // As the connection reads: phase one, then phase two.
    if let Ok(Check::Complete(n)) = codec::check(data, 1 << 20) {
        let _ = codec::parse(data, n);
    }
    // The body alone, and what it decodes to, checked.
    let Ok(frame) = codec::decode::<Frame>(data) else {
        return;
    };
    let _ = frame.kind();
    let _ = frame.txn();
    // Not the key the corpus' seed frames were made with (`ab…`, secret
    // [7; 32]): they, and everything made from them, must fail here.
    let key = SecretKey::from_hex(&"cd".repeat(32)).unwrap();
    let member = MemberId::new("gw-fuzz");
    let session = Session::new(member.clone(), 1, key.clone(), [8; 32], NOW);
    let ring = KeyRing::new(0);
    ring.put(MemberKeys::generate(member.clone(), None));
    let forged = match &frame {
        Frame::Login(l) => {
            let v = LoginVerifier {
                broker: "broker-1".into(),
                skew_ms: SKEW,
                ring: ring.clone(),
            };
            v.accept(l, NOW, &mut NonceCache::default()).is_ok()
        }
        Frame::LoginAck(a) => {
            let pending = f::login::start_login(member.clone(), 1, key.clone(), "broker-1", NOW);
            f::login::finish_login(&pending, a, NOW).is_ok()
        }
        Frame::Submit(s) => f::submit::check_submit(&session, s, NOW).is_ok(),
        Frame::Release(r) => f::release::check_release(&session, r).is_ok(),
        Frame::Rejected(r) => f::release::check_rejected(&session, r).is_ok(),
        Frame::ReleaseAck(a) => f::release::check_release_ack(&session, a).is_ok(),
        Frame::Transmit(t) => {
            let passed = f::transmit::check_transmit(&member, &key, t, NOW).is_ok();
            let _ = f::transmit::check_attestations(&ring, &t.imi, &t.id, &t.attestations, NOW);
            passed
        }
        Frame::Report(r) => f::report::check_report(&session, r, &[1; 32]).is_ok(),
        Frame::ReportAck(a) => f::report::check_report_ack(&session, a).is_ok(),
        Frame::Notify(n) => f::notify::check_notify(&session, n).is_ok(),
        Frame::NotifyAck(a) => f::notify::check_notify_ack(&session, a).is_ok(),
        Frame::Presence(p) => f::presence::check_presence(&session, p, NOW, SKEW).is_ok(),
        Frame::Health(h) => f::health::check_health(&session, h, NOW, SKEW).is_ok(),
        Frame::Identify(i) => f::identify::check_identify(&session, i, NOW, SKEW).is_ok(),
        Frame::Identity(i) => f::identify::check_identity(&session, i, &[2; 32]).is_ok(),
        Frame::Watch(w) => f::watch::check_watch(&session, w, NOW, SKEW).is_ok(),
        Frame::Held(h) => f::release::check_held(&session, h).is_ok(),
        Frame::Redirect(r) => f::identify::check_redirect(&session, r, &[2; 32]).is_ok(),
        Frame::ArchiveCopy(a) => {
            let passed = f::copy::check_archive_copy(&session, a).is_ok();
            let _ = f::transmit::check_copy(&member, &key, &a.transmit(Vec::new()));
            passed
        }
        Frame::Refused(_) | Frame::TransmitAck(_) => false,
    };
    assert!(
        !forged,
        "a {} frame passed its check without the key",
        frame.kind()
    );
});
