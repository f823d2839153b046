//! Email → plain text: a raw message (`message/rfc822`, as the SMTP server
//! takes it in) becomes its text — the text part, or HTML or multipart
//! turned into text by `mail-parser` — on its way to any medium.

use switchboard_actors::converter::{Converted, Converter, Input, ProcessorSpec};

use crate::content::mime;
pub use crate::content::{RFC822, TEXT};

/// The email-to-text converter.
#[derive(Debug, Default, Clone, Copy)]
pub struct EmailText;

impl Converter for EmailText {
    fn spec(&self) -> ProcessorSpec {
        ProcessorSpec {
            target: None,
            accepts: vec![RFC822.into()],
            output: TEXT.into(),
        }
    }

    fn name(&self) -> &str {
        "email-to-text"
    }

    fn convert(&self, input: &Input<'_>) -> Result<Converted, String> {
        if !input.content_type.starts_with(RFC822) {
            return Err(format!("{} is not an email", input.content_type));
        }
        Ok(Converted::Content {
            content: mime::parse(input.content).body.into_bytes(),
            content_type: TEXT.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::protocol::MediumKind;

    fn mail(raw: &'static [u8]) -> Input<'static> {
        Input {
            content_type: RFC822,
            content: raw,
            subject: None,
            from: "email:a@b.c",
            to: "bob",
            meta: None,
        }
    }

    #[test]
    fn html_and_multipart_become_text_for_every_medium() {
        let c = EmailText;
        let html = b"Subject: h\r\nContent-Type: text/html\r\n\r\n<p>Hello <b>bob</b></p>\r\n";
        match c.convert(&mail(html)).unwrap() {
            Converted::Content {
                content,
                content_type,
            } => {
                assert!(String::from_utf8(content).unwrap().contains("Hello bob"));
                assert_eq!(content_type, TEXT);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            c.convert(&mail(html)),
            c.convert(&mail(html)),
            "deterministic"
        );
        let junk: &'static [u8] = b"\xff\xfe\x00 not mime at all";
        assert!(c.convert(&mail(junk)).is_ok(), "junk is text, not a panic");
        assert!(c
            .convert(&Input {
                content_type: "text/plain",
                ..mail(b"x")
            })
            .is_err());
        for m in [
            MediumKind::Im,
            MediumKind::Sms,
            MediumKind::Email,
            MediumKind::Fax,
        ] {
            assert!(c.spec().fits(m, RFC822));
        }
        assert!(!c.spec().fits(MediumKind::Im, TEXT));
    }
}
