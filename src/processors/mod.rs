//! Content converters run by `Processor` hops (MIAP phase 3). The broker
//! chains the live processors that fit the destination medium and the
//! content type (`ProcessorSpec`): a raw email becomes text for any medium,
//! text becomes SMS segments for SMS and a PDF for fax.
//!
//! Owns: the converters and their member ids. Must not touch: the mediums;
//! the formats they share with them are in [`crate::content`].

pub mod email;
pub mod fax;
pub mod filter;
pub mod sms;

/// The member id of the text-to-SMS processor.
pub const SMS_PROCESSOR: &str = "proc-sms-1";
/// The member id of the email-to-text processor.
pub const EMAIL_PROCESSOR: &str = "proc-email-1";
/// The member id of the text-to-fax-page processor.
pub const FAX_PROCESSOR: &str = "proc-fax-1";
/// The member id of the content filter (on routes while content rules
/// exist).
pub const FILTER_PROCESSOR: &str = switchboard_actors::broker::shared::CONTENT_FILTER;

/// The kinds of processor a remote member can be.
pub const KINDS: [&str; 3] = ["sms", "email", "fax"];

/// What a processor of `kind` converts, if it is one of [`KINDS`].
pub fn spec_of(kind: &str) -> Option<switchboard_actors::converter::ProcessorSpec> {
    use switchboard_actors::converter::Converter as _;
    match kind {
        "sms" => Some(sms::SmsSegments.spec()),
        "email" => Some(email::EmailText.spec()),
        "fax" => Some(fax::FaxPage.spec()),
        _ => None,
    }
}
