//! Bytes from an SMSC through the SMPP PDU decoder, as the ESME's link reads
//! them (split where the input says), and short messages through
//! `ShortMessage::decode` under every `esm_class` and `data_coding`.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchboard::gateways::sms::pdu::{PduCodec, ShortMessage};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    if let [esm, dc, sm @ ..] = data {
        let _ = ShortMessage::decode(*esm, *dc, sm);
    }
    let mut codec = PduCodec::default();
    let mut buf = BytesMut::new();
    // The first byte chooses the read size: PDUs arrive in pieces.
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = codec.decode_eof(&mut buf);
});
