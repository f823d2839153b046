//! A WebSocket client's bytes through the frame guard (each frame's header
//! as the bytes arrive, against the pre-login limit) and its text frames
//! through the client-frame parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::gateways::im::client_frame::ClientFrame;
use switchboard::gateways::im::frame_guard::Frames;

fuzz_target!(|data: &[u8]| {
    let mut guard = Frames::default();
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    for chunk in data.chunks(step) {
        if guard.feed(chunk, 4096).is_err() {
            break;
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ClientFrame::parse(text);
    }
});
