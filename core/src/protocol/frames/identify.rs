//! `Identify` (a session gateway → broker: whose token is this?) and the
//! broker's `Identity` — or its `Redirect` when the user must be served by
//! another node.

use serde::{Deserialize, Serialize};

use crate::protocol::codec::encode;
use crate::protocol::error::ProtocolError;
use crate::protocol::ids::MemberId;
use crate::protocol::mac::{self, label, Tag};
use crate::protocol::tscs::Session;
use crate::protocol::verify::{check, check_session_frame};

/// `Identify { member, req, token_sha256, ts, mac(S, "identify", req,
/// token_sha256, ts) }`: an IM gateway in another process asks the broker
/// whose API token this is (a client opening a session there). It carries
/// the token's SHA-256, never the token: a captured frame does not give
/// anyone a token the API would take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identify {
    /// The gateway asking.
    pub member: MemberId,
    /// The gateway's request number (the answer carries it).
    pub req: u64,
    /// SHA-256 of the token.
    pub token_sha256: [u8; 32],
    /// When, ms since the epoch.
    pub ts_ms: u64,
    /// The MAC.
    pub mac: Tag,
}

/// `Identity { req, user, contacts, mac(S, "identity", req, token_sha256,
/// user, enc(contacts)) }`: the broker's answer to [`Identify`] — the
/// token's user (or none) and the users whose presence their profile
/// follows. The MAC covers the digest asked about, so an answer cannot be
/// moved to another request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The request answered.
    pub req: u64,
    /// The user the token belongs to; `None` for an unknown token.
    pub user: Option<String>,
    /// The user's contacts (their profile's), whose presence they follow.
    pub contacts: Vec<String>,
    /// The MAC.
    pub mac: Tag,
}

/// IM gateway: asks whose token has SHA-256 `token_sha256` (request `req`).
pub fn make_identify(session: &Session, req: u64, token_sha256: [u8; 32], ts_ms: u64) -> Identify {
    let mac = mac::mac(
        session.key.bytes(),
        label::IDENTIFY,
        &[&req.to_be_bytes(), &token_sha256, &ts_ms.to_be_bytes()],
    );
    Identify {
        member: session.member.clone(),
        req,
        token_sha256,
        ts_ms,
        mac,
    }
}

/// Broker: checks an identify frame (member, skew, MAC).
///
/// # Errors
/// [`ProtocolError::WrongParty`], [`ProtocolError::SkewExceeded`], [`ProtocolError::BadMac`].
pub fn check_identify(
    session: &Session,
    f: &Identify,
    now_ms: u64,
    skew_ms: u64,
) -> Result<(), ProtocolError> {
    let fields: [&[u8]; 3] = [
        &f.req.to_be_bytes(),
        &f.token_sha256,
        &f.ts_ms.to_be_bytes(),
    ];
    let stamp = (&f.member, f.ts_ms, &f.mac);
    check_session_frame(session, stamp, now_ms, skew_ms, label::IDENTIFY, &fields)
}

fn identity_fields(
    req: u64,
    token_sha256: &[u8; 32],
    user: Option<&str>,
    contacts: &[String],
) -> Vec<u8> {
    // `None` and `Some("")` must differ: a presence byte, then the id.
    let mut v = req.to_be_bytes().to_vec();
    v.extend_from_slice(token_sha256);
    match user {
        Some(u) => {
            v.push(1);
            v.extend_from_slice(u.as_bytes());
        }
        None => v.push(0),
    }
    v.extend_from_slice(&encode(&contacts));
    v
}

/// Broker: the answer to an identify frame.
pub fn make_identity(
    session: &Session,
    req: u64,
    token_sha256: &[u8; 32],
    user: Option<String>,
    contacts: Vec<String>,
) -> Identity {
    let mac = mac::mac(
        session.key.bytes(),
        label::IDENTITY,
        &[&identity_fields(
            req,
            token_sha256,
            user.as_deref(),
            &contacts,
        )],
    );
    Identity {
        req,
        user,
        contacts,
        mac,
    }
}

/// IM gateway: checks the broker's answer to its request for
/// `token_sha256`.
///
/// # Errors
/// [`ProtocolError::BadMac`].
pub fn check_identity(
    session: &Session,
    i: &Identity,
    token_sha256: &[u8; 32],
) -> Result<(), ProtocolError> {
    check(
        mac::verify(
            session.key.bytes(),
            label::IDENTITY,
            &[&identity_fields(
                i.req,
                token_sha256,
                i.user.as_deref(),
                &i.contacts,
            )],
            &i.mac,
        ),
        ProtocolError::BadMac,
    )
}

/// `Redirect { req, node, http, mac(S, "redirect", req, token_sha256, node,
/// http) }`: the broker's answer to [`Identify`] for a user whose domain
/// requires their home node (COMPLIANCE.md `require_redirect`) when that is
/// another node: the gateway sends the client there (`http`: its API's
/// `host:port`, while it is alive) and does not serve them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    /// The request answered.
    pub req: u64,
    /// The user's home node.
    pub node: String,
    /// Where its HTTP API listens, while it is alive.
    pub http: Option<String>,
    /// The MAC.
    pub mac: Tag,
}

fn redirect_fields(req: u64, token_sha256: &[u8; 32], node: &str, http: Option<&str>) -> Vec<u8> {
    encode(&(req, token_sha256, node, http))
}

/// Broker: sends the user of `token_sha256` (request `req`) to `node`.
pub fn make_redirect(
    session: &Session,
    req: u64,
    token_sha256: &[u8; 32],
    node: String,
    http: Option<String>,
) -> Redirect {
    let mac = mac::mac(
        session.key.bytes(),
        label::REDIRECT,
        &[&redirect_fields(req, token_sha256, &node, http.as_deref())],
    );
    Redirect {
        req,
        node,
        http,
        mac,
    }
}

/// IM gateway: checks a `Redirect` answering its request for
/// `token_sha256`.
///
/// # Errors
/// [`ProtocolError::BadMac`].
pub fn check_redirect(
    session: &Session,
    r: &Redirect,
    token_sha256: &[u8; 32],
) -> Result<(), ProtocolError> {
    check(
        mac::verify(
            session.key.bytes(),
            label::REDIRECT,
            &[&redirect_fields(
                r.req,
                token_sha256,
                &r.node,
                r.http.as_deref(),
            )],
            &r.mac,
        ),
        ProtocolError::BadMac,
    )
}
