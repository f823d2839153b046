//! What the SMTP server reads, parsed without I/O or state: lines, commands
//! and their paths, and the DATA section's end and dot-stuffing. The server
//! ([`super::smtp`]) acts on these; `fuzz/` feeds them arbitrary bytes.
//!
//! Owns: the syntax of the client's side of RFC 5321. Must not touch: what
//! a command does (order, policy, replies).

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One line read by [`read_line`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// The line, with its line ending.
    Text(Vec<u8>),
    /// Longer than allowed (read to its end and dropped).
    TooLong,
}

/// Reads one line (through `\n`), at most `max` bytes; a longer line is
/// read to its end and reported as [`Line::TooLong`]. `None` at end of input.
///
/// # Errors
/// The reader's.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> std::io::Result<Option<Line>> {
    let mut buf = Vec::new();
    let mut too_long = false;
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() && !too_long {
                None
            } else {
                Some(Line::Text(buf))
            });
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if !too_long && buf.len() + chunk <= max {
            buf.extend_from_slice(&available[..chunk]);
        } else {
            too_long = true;
        }
        r.consume(chunk);
        if done {
            return Ok(Some(if too_long {
                Line::TooLong
            } else {
                Line::Text(buf)
            }));
        }
    }
}

/// A command line, by verb (the argument is what follows the first space).
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// Not UTF-8.
    NotText,
    /// `EHLO`/`HELO` without a domain.
    NoDomain,
    Ehlo(&'a str),
    Helo(&'a str),
    StartTls(&'a str),
    Mail(&'a str),
    Rcpt(&'a str),
    Data,
    Rset,
    Noop,
    Vrfy,
    Help,
    Quit,
    /// `AUTH` and its argument ([`super::auth::start`] reads it).
    Auth(&'a str),
    /// `BDAT`, `ETRN`: known, not offered.
    NotImplemented,
    Unknown,
}

impl<'a> Command<'a> {
    /// The command on `line` (its line ending included or not).
    pub fn parse(line: &'a [u8]) -> Self {
        let Ok(text) = std::str::from_utf8(line) else {
            return Self::NotText;
        };
        let text = text.trim_end_matches(['\r', '\n']);
        let (verb, arg) = text.split_once(' ').unwrap_or((text, ""));
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" | "HELO" if arg.trim().is_empty() => Self::NoDomain,
            "EHLO" => Self::Ehlo(arg.trim()),
            "HELO" => Self::Helo(arg.trim()),
            "STARTTLS" => Self::StartTls(arg),
            "MAIL" => Self::Mail(arg),
            "RCPT" => Self::Rcpt(arg),
            "DATA" => Self::Data,
            "RSET" => Self::Rset,
            "NOOP" => Self::Noop,
            "VRFY" => Self::Vrfy,
            "HELP" => Self::Help,
            "QUIT" => Self::Quit,
            "AUTH" => Self::Auth(arg),
            "BDAT" | "ETRN" => Self::NotImplemented,
            _ => Self::Unknown,
        }
    }
}

/// `<addr>` (with optional parameters after it) from a MAIL/RCPT argument
/// that starts with `prefix` (`FROM:`, `TO:`); `None` when malformed.
pub fn path(arg: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = arg
        .get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| &arg[prefix.len()..])?;
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let addr = rest[..end].trim();
    let valid = addr.len() <= 254
        && !addr
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "<>,;\"".contains(c));
    if !valid {
        return None;
    }
    let params = rest[end + 1..]
        .split_whitespace()
        .map(str::to_string)
        .collect();
    Some((addr.to_string(), params))
}

/// The DATA section, line by line: where it ends, its content with the
/// dot-stuffing undone, and whether it outgrew its limit.
///
/// Only `<CR><LF>.<CR><LF>` ends it (RFC 5321 4.1.1.4): a `.` line after a
/// bare `<LF>`, or ending in one, is content. Otherwise one session could
/// carry a second, hidden message past a filter that reads the data the
/// standard way (the CVE-2023-51764 class).
#[derive(Debug)]
pub struct Data {
    raw: Vec<u8>,
    max: usize,
    oversize: bool,
    /// The `<CR><LF>` before the first line is DATA's own.
    after_crlf: bool,
}

impl Data {
    /// A section of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            raw: Vec::new(),
            max,
            oversize: false,
            after_crlf: true,
        }
    }

    /// Takes the next line; `true` when it ended the section.
    pub fn line(&mut self, line: &Line) -> bool {
        let line = match line {
            Line::TooLong => {
                self.oversize = true;
                return false;
            }
            Line::Text(l) => l,
        };
        if self.after_crlf && line == b".\r\n" {
            return true;
        }
        // Dot-stuffing is undone only at the start of a line proper.
        let content = match line.strip_prefix(b".") {
            Some(rest) if self.after_crlf => rest,
            _ => line,
        };
        self.after_crlf = line.ends_with(b"\r\n");
        if self.raw.len() + content.len() > self.max {
            self.oversize = true;
        }
        if !self.oversize {
            self.raw.extend_from_slice(content);
        }
        false
    }

    /// The content, or `None` when it was over the limit.
    pub fn finish(self) -> Option<Vec<u8>> {
        (!self.oversize).then_some(self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<Line> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut r = tokio::io::BufReader::new(input);
            let mut out = Vec::new();
            while let Some(l) = read_line(&mut r, max).await.unwrap() {
                out.push(l);
            }
            out
        })
    }

    #[test]
    fn lines_keep_their_endings_and_long_ones_are_dropped_whole() {
        let got = lines(b"EHLO a\r\nxxxxxxxxxx\nlast", 8);
        assert_eq!(
            got,
            [
                Line::Text(b"EHLO a\r\n".to_vec()),
                Line::TooLong,
                Line::Text(b"last".to_vec())
            ]
        );
    }

    #[test]
    fn commands_by_verb_in_any_case() {
        assert_eq!(
            Command::parse(b"ehlo  mx.example \r\n"),
            Command::Ehlo("mx.example")
        );
        assert_eq!(Command::parse(b"HELO\r\n"), Command::NoDomain);
        assert_eq!(
            Command::parse(b"Mail FROM:<a@b>\r\n"),
            Command::Mail("FROM:<a@b>")
        );
        assert_eq!(Command::parse(b"AUTH PLAIN x"), Command::Auth("PLAIN x"));
        assert_eq!(Command::parse(b"BDAT 10"), Command::NotImplemented);
        assert_eq!(Command::parse(b"\xff\xfe"), Command::NotText);
        assert_eq!(Command::parse(b"FOO"), Command::Unknown);
    }

    #[test]
    fn paths_with_parameters_and_without_junk() {
        assert_eq!(
            path("from: <A@b.example> SIZE=10 BODY=8BITMIME", "FROM:"),
            Some((
                "A@b.example".into(),
                vec!["SIZE=10".into(), "BODY=8BITMIME".into()]
            ))
        );
        assert_eq!(path("FROM:<>", "FROM:"), Some((String::new(), vec![])));
        // Angle brackets are required; no spaces inside; the right verb.
        for bad in ["FROM:a@b", "TO:<a@b>", "FROM:<a b@c>", "FROM:<a@b", "FR"] {
            assert_eq!(path(bad, "FROM:"), None, "{bad}");
        }
    }

    #[test]
    fn data_ends_only_at_crlf_dot_crlf_and_unstuffs_dots() {
        let mut d = Data::new(100);
        let input = b"a\r\n..b\r\nc\n.\r\nd\r\n.\r\nafter\r\n";
        let mut ended = false;
        for l in lines(input, 1000) {
            if d.line(&l) {
                ended = true;
                break;
            }
        }
        assert!(ended);
        // A `.` line after a bare LF is content.
        assert_eq!(d.finish().unwrap(), b"a\r\n.b\r\nc\n.\r\nd\r\n");
        let mut d = Data::new(4);
        assert!(!d.line(&Line::Text(b"12345\r\n".to_vec())));
        assert!(d.line(&Line::Text(b".\r\n".to_vec())));
        assert_eq!(d.finish(), None);
    }
}
