//! Text to fax pages: A4, Courier 11 pt, lines wrapped at 80 columns, 60
//! lines a page, the header on every page. The same text and header give
//! the same bytes (fixed dates, and the trailer's random IDs replaced by
//! ones derived from the input), as a converter must.

use printpdf::{BuiltinFont, Mm, OffsetDateTime, PdfDocument};
use switchboard_core::protocol::mac::sha256;

const COLUMNS: usize = 80;
const LINES_PER_PAGE: usize = 60;

/// Wraps `text` into lines of at most `COLUMNS` (80) characters.
pub fn wrap(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let chars: Vec<char> = line.chars().filter(|c| !c.is_control()).collect();
        if chars.is_empty() {
            out.push(String::new());
        }
        for chunk in chars.chunks(COLUMNS) {
            out.push(chunk.iter().collect());
        }
    }
    out
}

/// A PDF of `text` under `header`, and its page count.
///
/// # Errors
/// When printpdf fails.
pub fn pdf(header: &str, text: &str) -> Result<(Vec<u8>, usize), printpdf::Error> {
    let lines = wrap(text);
    let pages: Vec<&[String]> = if lines.is_empty() {
        vec![&[][..]]
    } else {
        lines.chunks(LINES_PER_PAGE).collect()
    };
    let (doc, page, layer) = PdfDocument::new("Switchboard fax", Mm(210.0), Mm(297.0), "text");
    let epoch = OffsetDateTime::UNIX_EPOCH;
    let doc = doc
        .with_creation_date(epoch)
        .with_mod_date(epoch)
        .with_metadata_date(epoch);
    let font = doc.add_builtin_font(BuiltinFont::Courier)?;
    let bold = doc.add_builtin_font(BuiltinFont::CourierBold)?;
    let n = pages.len();
    for (i, chunk) in pages.iter().enumerate() {
        let layer = if i == 0 {
            doc.get_page(page).get_layer(layer)
        } else {
            let (p, l) = doc.add_page(Mm(210.0), Mm(297.0), "text");
            doc.get_page(p).get_layer(l)
        };
        layer.use_text(
            format!("{header}   (page {} of {n})", i + 1),
            11.0,
            Mm(15.0),
            Mm(282.0),
            &bold,
        );
        for (j, line) in chunk.iter().enumerate() {
            layer.use_text(
                line.as_str(),
                11.0,
                Mm(15.0),
                Mm(270.0 - 4.4 * j as f32),
                &font,
            );
        }
    }
    let mut bytes = doc.save_to_bytes()?;
    let seed = sha256(format!("{header}\n{text}").as_bytes());
    fix_trailer_ids(&mut bytes, &seed);
    Ok((bytes, n))
}

/// Overwrites the two 32-character strings of the trailer's `/ID[(…)(…)]`
/// (random in printpdf) with characters derived from `seed`, in place: the
/// lengths, and so every offset, stay the same.
fn fix_trailer_ids(pdf: &mut [u8], seed: &[u8; 32]) {
    const ID: &[u8] = b"/ID[(";
    let Some(at) = pdf.windows(ID.len()).rposition(|w| w == ID) else {
        return;
    };
    let first = at + ID.len();
    for (start, salt) in [(first, 0u8), (first + 32 + 2, 16u8)] {
        let Some(field) = pdf.get_mut(start..start + 32) else {
            return;
        };
        if field.iter().any(|b| !b.is_ascii_alphanumeric()) {
            return;
        }
        for (i, b) in field.iter_mut().enumerate() {
            let nibble = (seed[(i / 2 + usize::from(salt)) % 32] >> ((i % 2) * 4)) & 0x0F;
            *b = b'A' + nibble;
        }
    }
}

/// The content type produced (a `pages=N` parameter is added).
pub const PDF: &str = "application/pdf";

/// The header line of a fax.
pub fn header(to: &str, from: &str, subject: Option<&str>) -> String {
    format!(
        "Fax to {to} from {from}{}",
        subject.map(|s| format!(" - {s}")).unwrap_or_default()
    )
}

/// The page count of a `application/pdf; pages=N` content type.
pub fn pages(content_type: &str) -> Option<usize> {
    content_type
        .split(';')
        .skip(1)
        .find_map(|p| p.trim().strip_prefix("pages=")?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_and_paginates() {
        assert_eq!(wrap("ab\n\ncd"), vec!["ab", "", "cd"]);
        assert_eq!(wrap(&"x".repeat(170)).len(), 3);
        let (bytes, pages) = pdf("Fax to +49", &"line\n".repeat(130)).unwrap();
        assert_eq!(pages, 3);
        assert!(bytes.starts_with(b"%PDF-"), "a PDF");
        assert!(bytes.windows(5).any(|w| w == b"%%EOF"));
        let (_, one) = pdf("h", "").unwrap();
        assert_eq!(one, 1, "an empty fax still has a page");
        assert_eq!(
            bytes,
            pdf("Fax to +49", &"line\n".repeat(130)).unwrap().0,
            "deterministic"
        );
        assert_ne!(bytes, pdf("Fax to +49", &"line\n".repeat(131)).unwrap().0);
    }
}
