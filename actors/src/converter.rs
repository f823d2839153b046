//! The `Converter` contract for message processors: content conversion or
//! filtering for one kind (long text → SMS segments, email → plain text,
//! text → a fax page). A processor is a MIAP hop: it checks its grant,
//! converts, and appends an attestation over the digests in and out.

use crate::protocol::MediumKind;

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
    /// Do not forward: blocked by the named rule.
    Blocked(String),
}

/// A content converter.
///
/// - It MUST be deterministic: the same input gives the same output (the
///   attestation covers both digests).
/// - It MUST NOT panic on any input; content it cannot convert is an `Err`.
/// - It MUST declare which destination medium it converts for.
pub trait Converter: Send + Unpin + 'static {
    /// The destination medium this converter prepares content for.
    fn target(&self) -> MediumKind;

    /// A short name (`text-to-sms`, …).
    fn name(&self) -> &str;

    /// Converts `content` of type `content_type`.
    ///
    /// # Errors
    /// A reason, when the content cannot be converted.
    fn convert(&self, content_type: &str, content: &[u8]) -> Result<Converted, String>;
}
