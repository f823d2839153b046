//! GSM 03.38 and SMS segmentation: the 7-bit default alphabet (extension
//! characters such as `€` take two septets), UCS-2 otherwise. One message
//! is up to 160 septets (70 UCS-2 units); a longer one is split into
//! concatenated segments of 153 septets (67 units), never splitting an
//! escape pair or a surrogate pair. Segmented content travels as JSON —
//! `{"encoding": "gsm7"|"ucs2", "segments": [...]}` — of type
//! [`CONTENT_TYPE`].

/// The content type of converted SMS content.
pub const CONTENT_TYPE: &str = "application/vnd.switchboard.sms+json";

const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

const GSM_EXTENSION: &str = "^{}\\[~]|€\u{0C}";

/// The GSM 03.38 extension table: (septet after the escape, character).
const GSM_EXTENSION_CODES: [(u8, char); 10] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

const GSM_ESCAPE: u8 = 0x1B;

/// The character of basic-table septet `septet` (`None` for the escape).
fn gsm_basic(septet: u8) -> Option<char> {
    // GSM_BASIC is the table without the escape at 0x1B.
    let i = usize::from(septet & 0x7F);
    match i.cmp(&usize::from(GSM_ESCAPE)) {
        std::cmp::Ordering::Less => GSM_BASIC.chars().nth(i),
        std::cmp::Ordering::Equal => None,
        std::cmp::Ordering::Greater => GSM_BASIC.chars().nth(i - 1),
    }
}

/// `text` as unpacked GSM 03.38 septets (one per octet, as SMPP carries
/// `data_coding` 0), or `None` if a character is not in the alphabet.
pub fn gsm_encode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if let Some(i) = GSM_BASIC.chars().position(|b| b == c) {
            let i = u8::try_from(i).ok()?;
            out.push(if i >= GSM_ESCAPE { i + 1 } else { i });
        } else {
            let (code, _) = GSM_EXTENSION_CODES.iter().find(|(_, e)| *e == c)?;
            out.extend([GSM_ESCAPE, *code]);
        }
    }
    Some(out)
}

/// Unpacked GSM 03.38 septets as text; an unknown extension code becomes
/// the character of its basic septet (as 03.38 asks), a lone trailing
/// escape a space.
pub fn gsm_decode(septets: &[u8]) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut it = septets.iter();
    while let Some(&b) = it.next() {
        if b & 0x7F == GSM_ESCAPE {
            match it.next() {
                Some(&e) => out.push(
                    GSM_EXTENSION_CODES
                        .iter()
                        .find(|(code, _)| *code == e & 0x7F)
                        .map(|(_, c)| *c)
                        .or_else(|| gsm_basic(e))
                        .unwrap_or(' '),
                ),
                None => out.push(' '),
            }
        } else {
            out.extend(gsm_basic(b));
        }
    }
    out
}

/// Septets `c` takes in GSM 7-bit, or `None` if it is not in the alphabet.
pub fn gsm_septets(c: char) -> Option<usize> {
    if GSM_BASIC.contains(c) {
        Some(1)
    } else if GSM_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// The encoding and the segments of `text`.
pub fn segment(text: &str) -> (&'static str, Vec<String>) {
    let gsm: Option<Vec<usize>> = text.chars().map(gsm_septets).collect();
    match gsm {
        Some(widths) => {
            let total: usize = widths.iter().sum();
            let limit = if total <= 160 { 160 } else { 153 };
            ("gsm7", split(text, &widths, limit))
        }
        None => {
            let widths: Vec<usize> = text.chars().map(char::len_utf16).collect();
            let total: usize = widths.iter().sum();
            let limit = if total <= 70 { 70 } else { 67 };
            ("ucs2", split(text, &widths, limit))
        }
    }
}

fn split(text: &str, widths: &[usize], limit: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut used = 0;
    for (c, w) in text.chars().zip(widths) {
        if used + w > limit {
            out.push(String::new());
            used = 0;
        }
        out.last_mut().expect("never empty").push(c);
        used += w;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(text: &str) -> (&'static str, Vec<usize>) {
        let (e, s) = segment(text);
        (e, s.iter().map(|x| x.chars().count()).collect())
    }

    #[test]
    fn gsm7_single_and_concatenated() {
        assert_eq!(sizes(&"a".repeat(160)), ("gsm7", vec![160]));
        assert_eq!(sizes(&"a".repeat(161)), ("gsm7", vec![153, 8]));
        assert_eq!(sizes(&"a".repeat(306)), ("gsm7", vec![153, 153]));
        // € takes two septets: 80 of them fill one message exactly.
        assert_eq!(sizes(&"€".repeat(80)), ("gsm7", vec![80]));
        // An escape pair is never split across segments.
        let (_, s) = segment(&format!("{}€", "a".repeat(152)).repeat(2));
        assert!(s
            .iter()
            .all(|x| x.chars().map(|c| gsm_septets(c).unwrap()).sum::<usize>() <= 153));
    }

    #[test]
    fn ucs2_when_outside_the_gsm_alphabet() {
        assert_eq!(sizes(&"привет".repeat(11)), ("ucs2", vec![66]));
        assert_eq!(sizes(&"ж".repeat(71)), ("ucs2", vec![67, 4]));
        // A surrogate pair (😀) counts two units and is never split.
        let (e, s) = segment(&"😀".repeat(40));
        assert_eq!(e, "ucs2");
        assert!(s.iter().all(|x| x.encode_utf16().count() <= 67));
        assert_eq!(s.concat(), "😀".repeat(40));
    }

    #[test]
    fn gsm_codec_round_trips_and_matches_the_table() {
        assert_eq!(GSM_BASIC.chars().count(), 127, "128 minus the escape");
        assert_eq!(gsm_encode("@"), Some(vec![0x00]));
        assert_eq!(gsm_encode("A a"), Some(vec![0x41, 0x20, 0x61]));
        assert_eq!(gsm_encode("Æ"), Some(vec![0x1C]), "after the escape slot");
        assert_eq!(gsm_encode("à"), Some(vec![0x7F]));
        assert_eq!(gsm_encode("€"), Some(vec![0x1B, 0x65]));
        assert_eq!(gsm_encode("ж"), None);
        let all: String = GSM_BASIC.chars().chain(GSM_EXTENSION.chars()).collect();
        assert_eq!(gsm_decode(&gsm_encode(&all).unwrap()), all);
        assert_eq!(gsm_decode(&[0x1B, 0x41]), "A", "unknown extension");
        assert_eq!(gsm_decode(&[0x41, 0x1B]), "A ", "lone escape");
        assert_eq!(gsm_decode(&[0xC1]), "A", "high bit ignored");
    }
}
