//! The `Converter` contract for message processors: content conversion or
//! filtering for one kind (long text → SMS segments, email → plain text,
//! text → a fax page). A processor is a MIAP hop: it checks its grant,
//! converts, and appends an attestation over the digests in and out.
//!
//! Owns: the contract only. Must not touch: any converter (they live in
//! `src/processors/`).

use switchboard_core::protocol::{BrokerImi, MediumKind};

/// The member id of the content filter: chained first among the text hops,
/// and on routes only while a content-stage rule exists.
pub const CONTENT_FILTER: &str = "proc-filter-1";

/// What a converter did with a piece of content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Converted {
    /// Forward this content.
    Content {
        /// The converted content.
        content: Vec<u8>,
        /// Its MIME type.
        content_type: String,
    },
    /// Forward this content, and mark the message for the trail (the
    /// content filter: the rules that applied, their tags, the supervisors
    /// told) — the marks go in the attestation.
    Marked {
        /// The content.
        content: Vec<u8>,
        /// Its MIME type.
        content_type: String,
        /// `policy:<rule>:v<n>:<action>`, `tag:<tag>`, `notify:<user>`.
        marks: Vec<String>,
    },
    /// Do not forward: blocked by `rule`; `marks` as for
    /// [`Converted::Marked`] (the rules that applied, the supervisors told).
    Blocked {
        /// The rule (`policy:<id>`), reported as the reason.
        rule: String,
        /// For the trail.
        marks: Vec<String>,
    },
    /// Do not forward: held for a reviewer by `rule` (the originator keeps
    /// the content; a release sends it again).
    Quarantined {
        /// The rule (`policy:<id>`).
        rule: String,
        /// For the trail.
        marks: Vec<String>,
    },
}

/// What a converter is given: the content and the meta information a
/// processor sees in the `Transmit`.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The content's MIME type.
    pub content_type: &'a str,
    /// The content.
    pub content: &'a [u8],
    /// The subject, if any.
    pub subject: Option<&'a str>,
    /// The sender as shown to the recipient.
    pub from: &'a str,
    /// The recipient's address on the destination medium.
    pub to: &'a str,
    /// The whole meta information of the `Transmit` (the content filter
    /// reads who and how); `None` where a converter is driven without one.
    pub meta: Option<&'a BrokerImi>,
}

/// Where a processor fits on routes: the broker chains live processors
/// whose target is the destination medium (or any medium) and that accept
/// the content type at that point, each one's output feeding the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorSpec {
    /// The destination medium it prepares content for; `None`: any.
    pub target: Option<MediumKind>,
    /// Content-type prefixes it accepts (`text/`, `message/rfc822`).
    pub accepts: Vec<String>,
    /// The content type it produces.
    pub output: String,
}

impl ProcessorSpec {
    /// Whether it belongs on a route to `medium` for content of type `ct`.
    pub fn fits(&self, medium: MediumKind, ct: &str) -> bool {
        self.target.is_none_or(|t| t == medium)
            && self
                .accepts
                .iter()
                .any(|a| ct.get(..a.len()).is_some_and(|p| p.eq_ignore_ascii_case(a)))
    }
}

/// A content converter.
///
/// - It MUST be deterministic: the same input gives the same output (the
///   attestation covers both digests).
/// - It MUST NOT panic on any input; content it cannot convert is an `Err`.
/// - It MUST declare where it fits ([`Converter::spec`]).
pub trait Converter: Send + Unpin + 'static {
    /// Where it fits on routes.
    fn spec(&self) -> ProcessorSpec;

    /// A short name (`text-to-sms`, …).
    fn name(&self) -> &str;

    /// Converts the content of `input`.
    ///
    /// # Errors
    /// A reason, when the content cannot be converted.
    fn convert(&self, input: &Input<'_>) -> Result<Converted, String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_fit_by_medium_and_type() {
        let sms = ProcessorSpec {
            target: Some(MediumKind::Sms),
            accepts: vec!["text/".into()],
            output: "x".into(),
        };
        assert!(sms.fits(MediumKind::Sms, "text/plain; charset=utf-8"));
        assert!(sms.fits(MediumKind::Sms, "Text/Plain"));
        assert!(!sms.fits(MediumKind::Im, "text/plain"));
        assert!(!sms.fits(MediumKind::Sms, "message/rfc822"));
        let any = ProcessorSpec {
            target: None,
            accepts: vec!["message/rfc822".into()],
            output: "text/plain".into(),
        };
        assert!(any.fits(MediumKind::Im, "message/rfc822"));
        assert!(any.fits(MediumKind::Fax, "message/rfc822"));
        assert!(!any.fits(MediumKind::Im, "text/plain"));
    }
}
