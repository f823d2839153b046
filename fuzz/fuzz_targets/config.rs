//! A config file's text through loading (TOML, the embedded default under
//! it, renamed keys, types, validation): a clear error or a config.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::from_text(Some(text), "fuzz.toml", std::iter::empty());
    }
});
