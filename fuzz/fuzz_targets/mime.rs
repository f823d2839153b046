//! A received mail's bytes through the MIME reading every inbound mail
//! takes (headers, multipart, encodings, HTML to text).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = switchboard::content::mime::parse(data);
});
