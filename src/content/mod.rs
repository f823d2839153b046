//! Content formats: pure functions over message content that both the
//! gateways (a medium's wire format) and the processors (conversions on the
//! way) use — raw email ([`mime`]), GSM 03.38 and SMS segments ([`gsm`]),
//! fax pages as PDF ([`pdf`]).
//!
//! Owns: formats. Must not touch: actors, the store, the network (a leaf).

pub mod gsm;
pub mod mime;
pub mod pdf;

/// The content type of a raw email.
pub const RFC822: &str = "message/rfc822";
/// Plain text, as the email-to-text converter produces it.
pub const TEXT: &str = "text/plain; charset=utf-8";

/// The text of delivered content: text as it is, a raw email (when no
/// email-to-text processor was live to convert it on the way) by its text
/// part.
pub fn text_of(content_type: &str, content: &[u8]) -> String {
    if content_type.starts_with(RFC822) {
        mime::parse(content).body
    } else {
        String::from_utf8_lossy(content).into_owned()
    }
}
