//! Bytes from an SMSC through the SMPP PDU decoder, as the ESME's link reads
//! them (split where the input says), and short messages through
//! `ShortMessage::decode` under every `esm_class` and `data_coding`.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchboard::gateways::sms::pdu::{Alphabet, Alphabets, PduCodec, ShortMessage};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    if let [esm, dc, sm @ ..] = data {
        // The low bits of esm_class also choose the alphabets of 0 and 1.
        let pick = |b: u8| [Alphabet::Gsm, Alphabet::Ascii, Alphabet::Latin1][usize::from(b % 3)];
        let alphabets = Alphabets {
            dc0: pick(*esm),
            dc1: pick(*esm >> 2),
        };
        let _ = ShortMessage::decode(*esm, *dc, sm, &alphabets);
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
