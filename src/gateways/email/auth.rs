//! SMTP AUTH (RFC 4954) as the SMTP server reads it, without I/O: the
//! mechanisms PLAIN (RFC 4616) and LOGIN, their base64 answers, and the
//! user a login names. A user submits mail with their user id (or
//! `ID@<local domain>`) as the user name and their API token as the
//! password; the server ([`super::smtp`]) offers AUTH only inside TLS.
//!
//! Owns: the syntax of the exchange. Must not touch: whether a token is
//! good (the directory's, or the node's over MIAP `Identify`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// A SASL mechanism the server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616: one answer, `authzid NUL authcid NUL password`.
    Plain,
    /// Two answers, the user name then the password.
    Login,
}

/// What `AUTH` names, or why it is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Start<'a> {
    /// The mechanism and the initial response, if one was sent.
    Mechanism(Mechanism, Option<&'a str>),
    /// A mechanism the server does not offer.
    Unsupported,
    /// No mechanism, or more than an initial response after it.
    Syntax,
}

/// The argument of `AUTH` (`PLAIN dGVzdA==`, `LOGIN`).
pub fn start(arg: &str) -> Start<'_> {
    let mut words = arg.split_ascii_whitespace();
    let (Some(mech), initial, None) = (words.next(), words.next(), words.next()) else {
        return Start::Syntax;
    };
    let mech = match mech.to_ascii_uppercase().as_str() {
        "PLAIN" => Mechanism::Plain,
        "LOGIN" => Mechanism::Login,
        _ => return Start::Unsupported,
    };
    Start::Mechanism(mech, initial)
}

/// One client answer in the exchange.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The decoded bytes (`=` is an empty initial response, RFC 4954 §4).
    Bytes(Vec<u8>),
    /// `*`: the client gave up.
    Cancelled,
    /// Not base64.
    Malformed,
}

/// Decodes one answer line (its line ending included or not).
pub fn answer(line: &[u8]) -> Answer {
    let Ok(text) = std::str::from_utf8(line) else {
        return Answer::Malformed;
    };
    let text = text.trim_end_matches(['\r', '\n']).trim();
    match text {
        "*" => Answer::Cancelled,
        "=" => Answer::Bytes(Vec::new()),
        _ => STANDARD
            .decode(text)
            .map_or(Answer::Malformed, Answer::Bytes),
    }
}

/// Who a client says it is and the token it proves it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name as given (the authentication identity).
    pub name: String,
    /// The password: the user's API token.
    pub token: String,
}

/// PLAIN's one answer: `authzid NUL authcid NUL password`. An authorization
/// identity other than the login's own is refused (no acting for others).
pub fn plain(bytes: &[u8]) -> Option<Credentials> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut parts = text.split('\0');
    let (Some(authz), Some(name), Some(token), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if !authz.is_empty() && authz != name {
        return None;
    }
    credentials(name, token)
}

/// LOGIN's two answers.
pub fn login(name: &[u8], token: &[u8]) -> Option<Credentials> {
    credentials(
        std::str::from_utf8(name).ok()?,
        std::str::from_utf8(token).ok()?,
    )
}

fn credentials(name: &str, token: &str) -> Option<Credentials> {
    let printable = |s: &str| !s.is_empty() && s.len() <= 320 && !s.chars().any(char::is_control);
    (printable(name) && printable(token)).then(|| Credentials {
        name: name.to_string(),
        token: token.to_string(),
    })
}

/// The user id a login names: `alice`, or `alice@<a local domain>`;
/// lowercased. `None` for another domain.
pub fn user_id(name: &str, local_domains: &[String]) -> Option<String> {
    let name = name.to_ascii_lowercase();
    match name.rsplit_once('@') {
        None => Some(name),
        Some((local, domain)) => local_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
            .then(|| local.to_string()),
    }
}

/// The challenge LOGIN asks the user name with (`Username:`).
pub const LOGIN_USER: &str = "334 VXNlcm5hbWU6";
/// The challenge LOGIN asks the password with (`Password:`).
pub const LOGIN_PASSWORD: &str = "334 UGFzc3dvcmQ6";

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn auth_names_a_mechanism_and_maybe_an_initial_response() {
        assert_eq!(start("plain"), Start::Mechanism(Mechanism::Plain, None));
        assert_eq!(
            start("LOGIN YWxpY2U="),
            Start::Mechanism(Mechanism::Login, Some("YWxpY2U="))
        );
        assert_eq!(start("CRAM-MD5"), Start::Unsupported);
        for bad in ["", "   ", "PLAIN a b"] {
            assert_eq!(start(bad), Start::Syntax, "{bad:?}");
        }
    }

    #[test]
    fn answers_are_base64_or_a_cancel() {
        assert_eq!(answer(b"YWxpY2U=\r\n"), Answer::Bytes(b"alice".to_vec()));
        assert_eq!(answer(b"*\r\n"), Answer::Cancelled);
        assert_eq!(answer(b"=\r\n"), Answer::Bytes(Vec::new()));
        assert_eq!(answer(b"not base64!\r\n"), Answer::Malformed);
        assert_eq!(answer(b"\xff\r\n"), Answer::Malformed);
    }

    #[test]
    fn plain_takes_only_the_logins_own_authorization() {
        let c = |s: &str| plain(s.as_bytes());
        let alice = Some(Credentials {
            name: "alice".into(),
            token: "sb_x".into(),
        });
        assert_eq!(c("\0alice\0sb_x"), alice);
        assert_eq!(c("alice\0alice\0sb_x"), alice);
        // Acting for another user, missing or extra fields, empty ones.
        for bad in [
            "bob\0alice\0sb_x",
            "alice\0sb_x",
            "\0alice\0sb_x\0more",
            "\0\0sb_x",
            "\0alice\0",
        ] {
            assert_eq!(c(bad), None, "{bad:?}");
        }
        assert_eq!(plain(b"\0alice\0\xff"), None);
        assert_eq!(
            login(b"alice", b"sb_x"),
            alice,
            "LOGIN gives the same credentials"
        );
        assert_eq!(b64("alice"), "YWxpY2U=");
    }

    #[test]
    fn a_login_names_a_user_by_id_or_local_address() {
        let local = ["localhost".to_string(), "sb.example".to_string()];
        assert_eq!(user_id("Alice", &local).as_deref(), Some("alice"));
        assert_eq!(
            user_id("alice@SB.example", &local).as_deref(),
            Some("alice")
        );
        assert_eq!(user_id("alice@example.org", &local), None);
    }
}
