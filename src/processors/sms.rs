//! Text → SMS segments (the encoding and the split are
//! [`crate::content::gsm`]'s): JSON of type [`CONTENT_TYPE`], which the SMS
//! medium submits segment by segment.

use serde_json::json;

use switchboard_actors::converter::{Converted, Converter, Input, ProcessorSpec};
use switchboard_core::protocol::MediumKind;

use crate::content::gsm::segment;
pub use crate::content::gsm::CONTENT_TYPE;

/// The text-to-SMS converter.
#[derive(Debug, Default, Clone, Copy)]
pub struct SmsSegments;

impl Converter for SmsSegments {
    fn spec(&self) -> ProcessorSpec {
        ProcessorSpec {
            target: Some(MediumKind::Sms),
            accepts: vec!["text/".into()],
            output: CONTENT_TYPE.into(),
        }
    }

    fn name(&self) -> &str {
        "text-to-sms"
    }

    fn convert(&self, input: &Input<'_>) -> Result<Converted, String> {
        if !input.content_type.starts_with("text/") {
            return Err(format!("cannot turn {} into SMS", input.content_type));
        }
        let text =
            std::str::from_utf8(input.content).map_err(|_| "the text is not UTF-8".to_string())?;
        if text.is_empty() {
            return Err("an SMS cannot be empty".into());
        }
        let (encoding, segments) = segment(text);
        Ok(Converted::Content {
            content: json!({"encoding": encoding, "segments": segments})
                .to_string()
                .into_bytes(),
            content_type: CONTENT_TYPE.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(ct: &'static str, content: &'static [u8]) -> Input<'static> {
        Input {
            content_type: ct,
            content,
            subject: None,
            from: "alice",
            to: "+4915100",
            meta: None,
        }
    }

    #[test]
    fn converter_contract() {
        let c = SmsSegments;
        let out = c
            .convert(&text("text/plain; charset=utf-8", b"hello"))
            .unwrap();
        assert_eq!(
            out,
            Converted::Content {
                content: br#"{"encoding":"gsm7","segments":["hello"]}"#.to_vec(),
                content_type: CONTENT_TYPE.into()
            }
        );
        assert_eq!(
            c.convert(&text("text/plain", b"hello")),
            c.convert(&text("text/plain", b"hello")),
            "deterministic"
        );
        assert!(c.convert(&text("image/png", b"x")).is_err());
        assert!(c.convert(&text("text/plain", b"\xff")).is_err());
        assert!(c.convert(&text("text/plain", b"")).is_err());
        assert!(c.spec().fits(MediumKind::Sms, "text/plain"));
        assert!(!c.spec().fits(MediumKind::Fax, "text/plain"));
    }
}
