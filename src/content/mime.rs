//! Incoming mail to an IM-able message: the subject and a plain-text body
//! (HTML or multipart turned into text) via mail-parser.

use mail_parser::MessageParser;

/// What Switchboard keeps of an email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The subject, one line, control characters removed.
    pub subject: Option<String>,
    /// The text body.
    pub body: String,
}

/// `s` on one line: control characters (CR, LF, …) become spaces, so a
/// decoded header can never inject another header downstream.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// Parses a raw message (RFC 5322, MIME).
pub fn parse(raw: &[u8]) -> Parsed {
    match MessageParser::default().parse(raw) {
        Some(m) => Parsed {
            subject: m.subject().map(one_line).filter(|s| !s.is_empty()),
            body: m
                .body_text(0)
                .map(|b| b.trim_end().to_string())
                .unwrap_or_default(),
        },
        None => Parsed {
            subject: None,
            body: String::from_utf8_lossy(raw).into_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_html_and_multipart_become_text() {
        let p = parse(b"Subject: hi\r\nFrom: a@b\r\n\r\nhello\r\n");
        assert_eq!(
            (p.subject.as_deref(), p.body.as_str()),
            (Some("hi"), "hello")
        );
        let html = b"Subject: h\r\nContent-Type: text/html\r\n\r\n<p>Hello <b>bob</b></p>\r\n";
        assert!(
            parse(html).body.contains("Hello bob"),
            "{:?}",
            parse(html).body
        );
        let multi = b"Subject: m\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=X\r\n\r\n--X\r\nContent-Type: text/plain\r\n\r\nplain part\r\n--X\r\nContent-Type: text/html\r\n\r\n<p>html part</p>\r\n--X--\r\n";
        assert_eq!(parse(multi).body, "plain part");
    }

    #[test]
    fn encoded_header_injection_is_flattened() {
        let raw = b"Subject: =?utf-8?q?hello=0D=0ABcc:_eve@evil.example?=\r\n\r\nx\r\n";
        let s = parse(raw).subject.unwrap();
        assert!(!s.contains('\r') && !s.contains('\n'), "{s:?}");
        assert!(s.starts_with("hello"));
    }

    #[test]
    fn eight_bit_junk_does_not_panic() {
        let junk: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        let _ = parse(&junk);
        let p = parse(b"Subject: caf\xe9\r\n\r\n\xff\xfe body\r\n");
        assert!(p.body.contains("body"));
    }
}
