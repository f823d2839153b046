//! `GET /v1/ws`: the IM client protocol over WebSocket (INTERFACES.md). JSON
//! text frames with a `type`. The token comes in the `Authorization` header,
//! `?token=`, or a first frame `{"type":"auth","token":…}`; until then any
//! other frame is answered with an `error` and the socket is closed.
//!
//! Bad input never takes the node down: malformed JSON, an unknown `type` or
//! a bad field get an `error` frame and the session goes on; a binary frame
//! gets an `error`; an oversized frame or a protocol violation closes the
//! socket with a reason.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{get, web, FromRequest, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Session};
use serde_json::{json, Value};

use switchboard_actors::medium::MediumReport;
use switchboard_actors::presence::{Activity, SessionClosed, SessionOpened, SetPresence};
use switchboard_core::protocol::ReportStatus;
use switchboard_core::store::records::enc;
use switchboard_core::store::{InboxEntry, Store, Tree, WriteBatch};

use super::client_frame::ClientFrame;
use super::clients::{ImClients, Refused};
use super::frame_guard;
use super::hub::{message_frame, Join, Leave};
use super::queue;
use super::send::{check_idempotency_key, mark_read, parse_txn, send_as, SendRequest};
use crate::http::error::ApiError;

/// How often an open session's token is checked again without a frame
/// from it (a revoked token ends the session within this).
const REVALIDATE: Duration = Duration::from_secs(5);
/// How long a closing session may take to flush what is queued and close.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);
/// How long an unauthenticated socket may stay open.
const AUTH_WINDOW: Duration = Duration::from_secs(10);
/// Unread messages pushed when a session opens.
const PUSH_ON_CONNECT: usize = 200;
/// Users one `subscribe` frame may name.
const MAX_SUBSCRIBE: usize = 1000;
/// The largest frame taken before a session is authenticated (an `auth`
/// frame is about 100 bytes).
pub const PRE_AUTH_FRAME: usize = 4096;

/// What a client is told when its gateway follows the most users it may
/// (a remote IM gateway, 100 000): some of those it asked for get no
/// presence.
fn too_many_watched() -> String {
    error_frame(
        None,
        "too_many_watched",
        "this gateway follows the most users it may; some of those asked for get no presence",
    )
}

fn error_frame(id: Option<&Value>, code: &str, message: &str) -> String {
    let mut v = json!({"type": "error", "code": code, "message": message});
    if let Some(id) = id {
        v["id"] = id.clone();
    }
    v.to_string()
}

fn token_of(req: &HttpRequest) -> Option<String> {
    if let Some(h) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        return h
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
            .map(|t| t.trim().to_string());
    }
    req.query_string()
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(str::to_string)
}

/// Upgrades to a WebSocket IM session (frames in `docs/INTERFACES.md`). The
/// token comes as `Authorization: Bearer`, `?token=`, or in an `auth` frame.
///
/// # Errors
/// 401 for a token that is given but invalid; 400 when the request is no
/// WebSocket handshake.
#[utoipa::path(tag = "messages",
    params(("token" = Option<String>, Query, description = "the user's token, when the client cannot set headers")),
    responses(
        (status = 101, description = "switching to the WebSocket protocol"),
        (status = 400, description = "not a WebSocket handshake", body = crate::http::error::ErrorBody),
        (status = 401, description = "a token was given but is invalid", body = crate::http::error::ErrorBody),
    ))]
#[get("/ws")]
pub async fn websocket(
    req: HttpRequest,
    body: web::Payload,
    st: web::Data<ImClients>,
) -> Result<HttpResponse, actix_web::Error> {
    let token = token_of(&req);
    let scheme = req.connection_info().scheme().to_string();
    let user = match &token {
        Some(t) => match st.authenticate(t).await {
            Ok(Some(u)) => Some(u),
            Ok(None) => return Err(ApiError::unauthorized("invalid token").into()),
            Err(Refused::Unchecked(e)) => return Err(e.into()),
            // A user whose domain requires another node is sent there.
            Err(Refused::Elsewhere(m)) => {
                let path = req.uri().path_and_query().map_or("/v1/ws", |p| p.as_str());
                return Err(m.error(&scheme, path).into());
            }
        },
        None => None,
    };
    // Each frame's header is checked as it arrives: one declaring more
    // than the limit ends the input before its payload is buffered. Before
    // authenticating, only an `auth` frame's worth.
    let limit = Arc::new(AtomicUsize::new(if user.is_some() {
        st.max_body_bytes
    } else {
        PRE_AUTH_FRAME
    }));
    let guarded = frame_guard::Guarded::new(body.into_inner(), limit.clone());
    let mut payload =
        actix_web::dev::Payload::from(Box::pin(guarded) as actix_http::BoxedPayloadStream);
    let body = web::Payload::from_request(&req, &mut payload).await?;
    let (resp, session, stream) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::bad_request(format!("not a WebSocket handshake: {e}")))?;
    let stream = stream
        .max_frame_size(st.max_body_bytes)
        .aggregate_continuations()
        .max_continuation_size(st.max_body_bytes);
    let user = user.zip(token);
    actix_rt::spawn(run(st.into_inner(), session, stream, user, limit, scheme));
    Ok(resp)
}

struct Conn {
    st: Arc<ImClients>,
    user: Option<String>,
    joined: Option<u64>,
    tx: queue::Outbound,
    /// The largest frame taken ([`frame_guard`]): raised at `join`.
    frame_limit: Arc<AtomicUsize>,
    /// The token the session authenticated with: checked again before each
    /// frame and every [`REVALIDATE`], so a rotated token or a removed user
    /// ends the session.
    token: Option<String>,
    /// The scheme the client connected with (a redirect keeps it).
    scheme: String,
}

impl Conn {
    /// The session is authenticated as `user`: join the hub, come online,
    /// subscribe to the user's contacts, get unread messages.
    async fn join(&mut self, user: String) {
        self.frame_limit
            .store(self.st.max_body_bytes, Ordering::Relaxed);
        let st = &self.st;
        let id = st
            .hub
            .send(Join {
                user: user.clone(),
                tx: self.tx.clone(),
            })
            .await
            .unwrap_or(0);
        st.presence.do_send(SessionOpened(user.clone()));
        metrics::gauge!("switchboard_ws_sessions").increment(1.0);
        if st.subscribe(&user, st.contacts(&user)).await > 0 {
            let _ = self.tx.send(too_many_watched());
        }
        self.joined = Some(id);
        self.user = Some(user.clone());
        if let Err(e) = self.push_unread(&user).await {
            tracing::warn!(user = %user, error = %e, "pushing unread messages on connect failed");
        }
    }

    /// Pushes unread messages; those held for this user are now delivered.
    async fn push_unread(&self, user: &str) -> Result<(), ApiError> {
        let store = self.st.store.clone();
        let who = user.to_string();
        let entries = web::block(move || {
            store.inbox(&who, None, usize::MAX).map(|all| {
                all.into_iter()
                    .filter(|(_, e)| !e.read)
                    .take(PUSH_ON_CONNECT)
                    .collect::<Vec<_>>()
            })
        })
        .await??;
        let mut held = WriteBatch::new();
        let mut reports = Vec::new();
        for (seq, mut e) in entries {
            // A page, not a flood: past half the session's queue the rest
            // stays unread in the inbox (`GET /v1/inbox`, the next connect).
            if self.tx.queued() > self.tx.limit() / 2 {
                break;
            }
            if self.tx.send(message_frame(&e).to_string()).is_err() {
                break;
            }
            if !e.delivered {
                e.delivered = true;
                held.insert(Tree::Inbox, InboxEntry::key(user, seq), enc(&e));
                reports.push(MediumReport {
                    txn: e.txn,
                    attempt: e.attempt,
                    id: e.id,
                    status: ReportStatus::Delivered,
                    attestations: Vec::new(),
                });
            }
        }
        if !held.is_empty() {
            self.st.store.writer().write(held).await?;
            for r in reports {
                self.st.gateway.do_send(r);
            }
        }
        Ok(())
    }

    fn leave(&self) {
        if let (Some(user), Some(id)) = (&self.user, self.joined) {
            self.st.hub.do_send(Leave {
                user: user.clone(),
                id,
            });
            self.st.presence.do_send(SessionClosed(user.clone()));
            metrics::gauge!("switchboard_ws_sessions").decrement(1.0);
        }
    }

    /// Whether the session's token is still the user's: always where the
    /// tokens are at hand (a node), and on a remote gateway only when
    /// `ask` (every [`REVALIDATE`]: it is a round trip to the broker; a
    /// broker that cannot answer now ends nothing).
    async fn still_valid(&self, ask: bool) -> Result<(), CloseReason> {
        let (Some(user), Some(token)) = (&self.user, &self.token) else {
            return Ok(());
        };
        let now = match self.st.authenticate_here(token) {
            Some(now) => now,
            None if ask => match self.st.authenticate(token).await {
                Ok(now) => now,
                Err(_) => return Ok(()),
            },
            None => return Ok(()),
        };
        if now.as_deref() == Some(user.as_str()) {
            Ok(())
        } else {
            let _ = self.tx.send(error_frame(
                None,
                "unauthorized",
                "the token was revoked (rotated, or the user removed)",
            ));
            Err(close(CloseCode::Policy, "token revoked"))
        }
    }

    /// Handles one text frame. `Err` carries a close reason.
    async fn text(&mut self, text: &str) -> Result<(), CloseReason> {
        let (id, frame) = match ClientFrame::parse(text) {
            Ok(parsed) => parsed,
            Err(r) => {
                let _ = self.tx.send(error_frame(r.id.as_ref(), r.code, &r.message));
                return Ok(());
            }
        };
        let Some(user) = self.user.clone() else {
            return match frame {
                ClientFrame::Auth { token } => match self.st.authenticate(&token).await {
                    Ok(Some(u)) => {
                        self.token = Some(token);
                        self.join(u).await;
                        Ok(())
                    }
                    Ok(None) => Err(close(CloseCode::Policy, "invalid token")),
                    // Its domain requires another node: a `redirect` frame
                    // names it (an error while it is down).
                    Err(Refused::Elsewhere(m)) => {
                        let e = m.error(&self.scheme, "/v1/ws");
                        let frame = match m.url(&self.scheme, "/v1/ws") {
                            Some(url) => json!({"type": "redirect", "node": m.node,
                                "url": url, "message": e.message})
                            .to_string(),
                            None => error_frame(id.as_ref(), &e.code, &e.message),
                        };
                        let _ = self.tx.send(frame);
                        Err(close(CloseCode::Policy, "served by another node"))
                    }
                    Err(Refused::Unchecked(e)) => {
                        let _ = self.tx.send(error_frame(id.as_ref(), &e.code, &e.message));
                        Err(close(CloseCode::Again, "cannot check the token now"))
                    }
                },
                _ => {
                    let _ = self.tx.send(error_frame(
                        id.as_ref(),
                        "unauthorized",
                        "authenticate first",
                    ));
                    Err(close(CloseCode::Policy, "authenticate first"))
                }
            };
        };
        self.still_valid(false).await?;
        self.st.presence.do_send(Activity(user.clone()));
        match frame {
            ClientFrame::Auth { .. } => {
                let _ = self
                    .tx
                    .send(error_frame(None, "bad_request", "already authenticated"));
            }
            ClientFrame::Send {
                id,
                to,
                body,
                subject,
                priority,
                expires_in_s,
                receipt,
                idempotency_key,
            } => {
                let req = SendRequest {
                    to,
                    body,
                    subject,
                    priority,
                    expires_in_s,
                    receipt,
                };
                if let Some(Err(e)) = idempotency_key
                    .as_deref()
                    .map(|k| check_idempotency_key(k, "\"idempotency_key\""))
                {
                    let _ = self.tx.send(rejected(id.as_ref(), &e));
                    return Ok(());
                }
                // The broker's decision comes back on this session's
                // channel; the socket keeps reading meanwhile.
                let (st, tx) = (self.st.clone(), self.tx.clone());
                actix_rt::spawn(async move {
                    let frame = match send_as(&st, &user, req, idempotency_key.as_deref()).await {
                        Ok((a, replayed)) => {
                            let mut f =
                                json!({"type": "accepted", "txn": a.txn, "status": a.status});
                            if let Some(route) = &a.route {
                                f["route"] = json!(route);
                            }
                            if let Some(reason) = &a.reason {
                                f["reason"] = json!(reason);
                            }
                            if let Some(id) = id {
                                f["id"] = id;
                            }
                            if replayed {
                                f["replayed"] = json!(true);
                            }
                            f.to_string()
                        }
                        Err(e) => rejected(id.as_ref(), &e),
                    };
                    let _ = tx.send(frame);
                });
            }
            ClientFrame::Read { id, txn } => {
                let res = match parse_txn(&txn) {
                    Ok(t) => mark_read(&self.st, &user, t).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = res {
                    let _ = self.tx.send(error_frame(id.as_ref(), &e.code, &e.message));
                }
            }
            ClientFrame::Presence { state, note } => {
                if note
                    .as_ref()
                    .is_some_and(|n| n.len() > 200 || n.contains(['\r', '\n']))
                {
                    let _ = self.tx.send(error_frame(
                        None,
                        "bad_request",
                        "\"note\" must be one line of at most 200 bytes",
                    ));
                } else {
                    self.st.presence.do_send(SetPresence { user, state, note });
                }
            }
            ClientFrame::Subscribe { users } => {
                let valid = users.len() <= MAX_SUBSCRIBE
                    && users
                        .iter()
                        .all(|u| switchboard_core::directory::profile::valid_user_id(u));
                if !valid {
                    let msg = format!("\"users\" must be at most {MAX_SUBSCRIBE} user ids");
                    let _ = self.tx.send(error_frame(None, "bad_request", &msg));
                } else if self.st.subscribe(&user, users).await > 0 {
                    let _ = self.tx.send(too_many_watched());
                }
            }
        }
        Ok(())
    }
}

fn rejected(id: Option<&Value>, e: &ApiError) -> String {
    let mut f = json!({"type": "rejected", "code": e.code, "message": e.message});
    if let Some(id) = id {
        f["id"] = id.clone();
    }
    f.to_string()
}

fn close(code: CloseCode, why: &str) -> CloseReason {
    CloseReason {
        code,
        description: Some(why.to_string()),
    }
}

/// Sends `first` and whatever else is queued now, once the journal is
/// durable past everything written before they were taken: a frame that
/// leaves the process (a message, a receipt, `accepted`) never shows what a
/// crash could still undo.
async fn send_durable(
    store: &Store,
    session: &mut Session,
    first: String,
    rx: &mut queue::Inbound,
) -> Result<(), ()> {
    // Taken out of the queue, frames leave its byte count: the batch is
    // bounded in bytes too, so a session holds little past its queue.
    let mut bytes = first.len();
    let mut out = vec![first];
    while out.len() < 256 && bytes < 64 * 1024 {
        match rx.try_recv() {
            Some(t) => {
                bytes += t.len();
                out.push(t);
            }
            None => break,
        }
    }
    let w = store.writer();
    if let Err(e) = w.durable_past(w.written()).await {
        tracing::error!(error = %e, "the journal is not durable; closing a WebSocket");
        return Err(());
    }
    for t in out {
        session.text(t).await.map_err(|_| ())?;
    }
    Ok(())
}

async fn run(
    st: Arc<ImClients>,
    mut session: Session,
    mut stream: actix_ws::AggregatedMessageStream,
    user: Option<(String, String)>,
    frame_limit: Arc<AtomicUsize>,
    scheme: String,
) {
    let (tx, mut rx) = queue::channel(queue::SESSION_QUEUE_BYTES);
    let overflow = rx.watch();
    let mut conn = Conn {
        st,
        user: None,
        joined: None,
        tx,
        frame_limit,
        token: None,
        scheme,
    };
    if let Some((u, token)) = user {
        conn.token = Some(token);
        conn.join(u).await;
    }
    let auth_deadline = actix_rt::time::sleep(AUTH_WINDOW);
    tokio::pin!(auth_deadline);
    let mut revalidate = actix_rt::time::interval(REVALIDATE);
    revalidate.tick().await;
    let mut draining = conn.st.draining.clone();
    let mut watching = true;
    let reason = loop {
        if *draining.borrow() {
            break Some(close(CloseCode::Away, "the server is shutting down"));
        }
        tokio::select! {
            changed = draining.changed(), if watching => watching = changed.is_ok(),
            msg = stream.recv() => match msg {
                None => break None,
                Some(Ok(AggregatedMessage::Text(t))) => {
                    if let Err(r) = conn.text(&t).await {
                        break Some(r);
                    }
                }
                Some(Ok(AggregatedMessage::Binary(_))) => {
                    let _ = conn.tx.send(error_frame(None, "unsupported", "binary frames are not supported; send JSON text"));
                }
                Some(Ok(AggregatedMessage::Ping(b))) => {
                    if session.pong(&b).await.is_err() {
                        break None;
                    }
                }
                Some(Ok(AggregatedMessage::Pong(_))) => {}
                Some(Ok(AggregatedMessage::Close(_))) => break None,
                Some(Err(e)) => {
                    let size = frame_guard::is_overflow(&e);
                    let r = if size {
                        close(CloseCode::Size, "frame too large")
                    } else {
                        close(CloseCode::Protocol, &format!("protocol error: {e}"))
                    };
                    tracing::info!(error = %e, "closing a WebSocket");
                    break Some(r);
                }
            },
            out = rx.recv() => {
                let Some(text) = out else { break None };
                if send_durable(&conn.st.store, &mut session, text, &mut rx).await.is_err() {
                    break None;
                }
            }
            _ = &mut auth_deadline, if conn.user.is_none() => {
                break Some(close(CloseCode::Policy, "authenticate within 10 s"));
            }
            () = overflow.happened() => {
                tracing::info!(user = ?conn.user, "closing a WebSocket whose client does not read");
                break Some(close(CloseCode::Again, "not reading: unread messages stay in the inbox"));
            }
            _ = revalidate.tick(), if conn.user.is_some() => {
                if let Err(r) = conn.still_valid(true).await {
                    break Some(r);
                }
            }
        }
    };
    conn.leave();
    // Flush what is queued (an error frame, say), then close with the
    // reason — within bounds: a client that does not read gets neither.
    let _ = actix_rt::time::timeout(CLOSE_WITHIN, async move {
        while let Some(text) = rx.try_recv() {
            if session.text(text).await.is_err() {
                return;
            }
        }
        let _ = session.close(reason).await;
    })
    .await;
}
