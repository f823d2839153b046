//! Text → fax pages: a PDF (A4, Courier, 80 columns, 60 lines a page, a
//! header line on every page naming the recipient's number, the sender and
//! the subject) of type `application/pdf; pages=N`, on its way to the fax
//! gateway. The same input gives the same bytes.

use switchboard_actors::converter::{Converted, Converter, Input, ProcessorSpec};
use switchboard_core::protocol::MediumKind;

pub use crate::content::pdf::PDF;
use crate::content::pdf::{self, header};

/// The text-to-fax-page converter.
#[derive(Debug, Default, Clone, Copy)]
pub struct FaxPage;

impl Converter for FaxPage {
    fn spec(&self) -> ProcessorSpec {
        ProcessorSpec {
            target: Some(MediumKind::Fax),
            accepts: vec!["text/".into()],
            output: PDF.into(),
        }
    }

    fn name(&self) -> &str {
        "text-to-fax"
    }

    fn convert(&self, input: &Input<'_>) -> Result<Converted, String> {
        if !input.content_type.starts_with("text/") {
            return Err(format!("cannot put {} on a fax page", input.content_type));
        }
        let text = String::from_utf8_lossy(input.content);
        let (pdf, n) = pdf::pdf(&header(input.to, input.from, input.subject), &text)
            .map_err(|e| format!("cannot render the fax: {e}"))?;
        Ok(Converted::Content {
            content: pdf,
            content_type: format!("{PDF}; pages={n}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::pdf::pages;

    #[test]
    fn text_becomes_a_paginated_pdf() {
        let long = "line\n".repeat(130);
        let input = Input {
            content_type: "text/plain; charset=utf-8",
            content: long.as_bytes(),
            subject: Some("report"),
            from: "alice",
            to: "+4930123",
            meta: None,
        };
        let Converted::Content {
            content,
            content_type,
        } = FaxPage.convert(&input).unwrap()
        else {
            panic!("not content")
        };
        assert!(content.starts_with(b"%PDF-"));
        assert_eq!(content_type, "application/pdf; pages=3");
        assert_eq!(pages(&content_type), Some(3));
        assert_eq!(
            FaxPage.convert(&input),
            FaxPage.convert(&input),
            "deterministic"
        );
        assert!(FaxPage
            .convert(&Input {
                content_type: "image/png",
                ..input
            })
            .is_err());
        assert!(FaxPage.spec().fits(MediumKind::Fax, "text/plain"));
        assert!(!FaxPage.spec().fits(MediumKind::Sms, "text/plain"));
        assert_eq!(pages("application/pdf"), None);
    }
}
