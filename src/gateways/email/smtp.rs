//! The inbound SMTP server (RFC 5321: EHLO/HELO, MAIL, RCPT, DATA, RSET,
//! NOOP, QUIT, VRFY, HELP; PIPELINING, 8BITMIME, SIZE, ENHANCEDSTATUSCODES,
//! STARTTLS, AUTH), driven by our own tokio loop. Mail for `ID@<local
//! domain>` becomes a message (`message/rfc822`, the raw mail; its subject
//! in the meta information) to user `ID`.
//!
//! Mail is from a user only when the client logged in as them (`AUTH PLAIN`
//! or `LOGIN` inside TLS, the user's API token as the password), and then
//! only from an address of theirs (`ID@<local domain>` or one of their
//! `email:` mechanisms). Mail without a login is from an external sender,
//! whatever its envelope says, and may not claim a local address.
//!
//! Unknown local recipients are refused at `RCPT` (550), other domains too
//! (no relaying), oversize mail at `DATA` (552); `250` is answered only once
//! the message is durable in the email gateway's outbox and released by the
//! broker. Bad input — over-long lines, junk bytes, commands out of order —
//! gets a clear reply; too many errors or an idle client are disconnected.

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use switchboard_actors::gateway::{Gateway, Originate, OriginateError};
use switchboard_core::directory::Directory;
use switchboard_core::protocol::{Address, MediumKind, Priority, To};

use switchboard_actors::gateway::IdentifyToken;

use super::auth::{self, Answer, Credentials, Mechanism, Start};
use super::parse::{path, read_line, Command, Data, Line};
use super::EmailMedium;
use crate::content::mime;
use crate::limits::Peers;

/// Longest command line (RFC 5321 §4.5.3.1.4: 512; we allow extensions).
const MAX_COMMAND: usize = 1000;
/// Longest line inside DATA.
const MAX_DATA_LINE: usize = 64 * 1024;
/// Recipients per message.
const MAX_RECIPIENTS: usize = 100;
/// Errors before the server hangs up.
const MAX_ERRORS: u32 = 10;
/// Idle time before the server hangs up.
const IDLE: Duration = Duration::from_secs(300);
/// Longest TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(30);

/// What the server needs.
pub struct SmtpContext {
    /// Domains whose addresses are local users (lowercase).
    pub local_domains: Vec<String>,
    /// Largest message, bytes.
    pub max_message_bytes: usize,
    /// Most bytes one mail may commit to local inboxes: its size times its
    /// recipients (each recipient's inbox keeps its own copy).
    pub max_fanout_bytes: usize,
    /// Simultaneous connections.
    pub max_connections: usize,
    /// Simultaneous connections per client address.
    pub max_connections_per_peer: usize,
    /// The name the server greets with.
    pub hostname: String,
    /// Users, to refuse unknown ones at `RCPT` and to check logins; `None`
    /// (a remote gateway): the broker refuses unknown users after `DATA`,
    /// and a login's token is checked by the node (MIAP `Identify`).
    pub directory: Option<Directory>,
    /// The email gateway, which originates the messages.
    pub gateway: Addr<Gateway<EmailMedium>>,
    /// How long to wait for the broker's decision.
    pub submit_timeout: Duration,
    /// Message lifetime (ms).
    pub expires_in_ms: u64,
    /// STARTTLS, when a certificate is configured.
    pub tls: Option<TlsAcceptor>,
    /// Refuse mail until the client has started TLS.
    pub require_tls: bool,
}

/// A connection, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

/// Accepts connections until the task is dropped.
pub async fn serve(listener: TcpListener, ctx: Arc<SmtpContext>) {
    let slots = Arc::new(Semaphore::new(ctx.max_connections));
    let per_peer = Peers::default();
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "SMTP accept failed");
                actix_rt::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // One address cannot take every slot (and answer everyone else 421).
        let Some(mine) = per_peer.take(peer.ip(), ctx.max_connections_per_peer) else {
            tracing::warn!(peer = %peer, "SMTP connection refused: too many from this address");
            let mut sock = sock;
            let _ = sock
                .write_all(b"421 4.7.0 Too many connections from your address, try again later\r\n")
                .await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            let mut sock = sock;
            let _ = sock
                .write_all(b"421 4.3.2 Too many connections, try again later\r\n")
                .await;
            continue;
        };
        let ctx = ctx.clone();
        actix_rt::spawn(async move {
            if let Err(e) = Session::new(ctx, sock).run().await {
                tracing::debug!(peer = %peer, error = %e, "SMTP session ended with an error");
            }
            drop((permit, mine));
        });
    }
}

struct Session {
    ctx: Arc<SmtpContext>,
    /// Reads are buffered; writes pass through.
    io: BufReader<Box<dyn Io>>,
    tls: bool,
    helo: bool,
    /// The user the client logged in as (`AUTH`).
    user: Option<String>,
    from: Option<String>,
    /// The size `MAIL FROM … SIZE=` declared.
    declared: Option<usize>,
    rcpts: Vec<String>,
    errors: u32,
}

impl Session {
    fn new(ctx: Arc<SmtpContext>, sock: TcpStream) -> Self {
        // Pipelined replies go out at once, not after a delayed ACK.
        let _ = sock.set_nodelay(true);
        Self {
            ctx,
            io: BufReader::new(Box::new(sock)),
            tls: false,
            helo: false,
            user: None,
            from: None,
            declared: None,
            rcpts: Vec::new(),
            errors: 0,
        }
    }

    /// Writes one reply (with its CRLF) in one write: clients that read a
    /// line per read (openssl's s_client) must not see half a line.
    async fn reply(&mut self, text: &str) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(text.len() + 2);
        line.extend_from_slice(text.as_bytes());
        line.extend_from_slice(b"\r\n");
        self.io.write_all(&line).await?;
        self.io.flush().await
    }

    async fn error(&mut self, text: &str) -> std::io::Result<()> {
        self.errors += 1;
        self.reply(text).await
    }

    /// The next line, or `None` when the client is gone — or idle for too
    /// long, which is answered with `421` first.
    async fn next_line(&mut self, max: usize) -> std::io::Result<Option<Line>> {
        match actix_rt::time::timeout(IDLE, read_line(&mut self.io, max)).await {
            Ok(line) => line,
            Err(_) => {
                self.reply("421 4.4.2 Idle for too long, closing connection")
                    .await?;
                Ok(None)
            }
        }
    }

    fn reset(&mut self) {
        self.from = None;
        self.declared = None;
        self.rcpts.clear();
    }

    /// Serves the connection, then closes it cleanly (a TLS `close_notify`
    /// first, when TLS is on).
    async fn run(mut self) -> std::io::Result<()> {
        let r = self.commands().await;
        let _ = self.io.shutdown().await;
        r
    }

    async fn commands(&mut self) -> std::io::Result<()> {
        let greeting = format!("220 {} ESMTP Switchboard ready", self.ctx.hostname);
        self.reply(&greeting).await?;
        loop {
            if self.errors >= MAX_ERRORS {
                return self
                    .reply("421 4.7.0 Too many errors, closing connection")
                    .await;
            }
            let line = match self.next_line(MAX_COMMAND).await? {
                None => return Ok(()),
                Some(Line::TooLong) => {
                    self.error("500 5.5.2 Line too long").await?;
                    continue;
                }
                Some(Line::Text(bytes)) => bytes,
            };
            match Command::parse(&line) {
                Command::NotText => {
                    self.error("500 5.5.2 Command is not valid text").await?
                }
                Command::NoDomain => self.error("501 5.5.4 Syntax: EHLO domain").await?,
                Command::Ehlo(domain) => {
                    self.helo = true;
                    self.reset();
                    // Logins only inside TLS: the password is a token.
                    let tls_or_auth = match (self.ctx.tls.is_some(), self.tls) {
                        (true, false) => "250-STARTTLS\r\n",
                        (_, true) => "250-AUTH PLAIN LOGIN\r\n",
                        (false, false) => "",
                    };
                    let lines = format!(
                        "250-{} greets {}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE {}\r\n{tls_or_auth}250 ENHANCEDSTATUSCODES",
                        self.ctx.hostname,
                        domain,
                        self.ctx.max_message_bytes
                    );
                    self.reply(&lines).await?;
                }
                Command::StartTls(arg) => {
                    if !self.starttls(arg).await? {
                        return Ok(());
                    }
                }
                Command::Helo(_) => {
                    self.helo = true;
                    self.reset();
                    let r = format!("250 {}", self.ctx.hostname);
                    self.reply(&r).await?;
                }
                Command::Auth(arg) => self.auth(arg).await?,
                Command::Mail(arg) => self.mail(arg).await?,
                Command::Rcpt(arg) => self.rcpt(arg).await?,
                Command::Data => self.data().await?,
                Command::Rset => {
                    self.reset();
                    self.reply("250 2.0.0 Ok").await?;
                }
                Command::Noop => self.reply("250 2.0.0 Ok").await?,
                Command::Vrfy => {
                    self.reply("252 2.5.2 Cannot verify, but will accept the message")
                        .await?
                }
                Command::Help => {
                    self.reply(
                        "214 2.0.0 Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP QUIT VRFY HELP",
                    )
                    .await?
                }
                Command::Quit => return self.reply("221 2.0.0 Bye").await,
                Command::NotImplemented => {
                    self.error("502 5.5.1 Not implemented").await?
                }
                Command::Unknown => self.error("500 5.5.2 Command not recognized").await?,
            }
        }
    }

    /// `STARTTLS` (RFC 3207); `false` when the connection is over.
    async fn starttls(&mut self, arg: &str) -> std::io::Result<bool> {
        let Some(acceptor) = self.ctx.tls.clone() else {
            self.error("502 5.5.1 Not implemented (no certificate configured)")
                .await?;
            return Ok(true);
        };
        if self.tls {
            self.error("503 5.5.1 TLS already active").await?;
            return Ok(true);
        }
        if !arg.trim().is_empty() {
            self.error("501 5.5.4 Syntax: STARTTLS").await?;
            return Ok(true);
        }
        // Anything the client sent after STARTTLS in the clear is dropped,
        // never read as a command inside the TLS session.
        let pipelined = self.io.buffer().len();
        if pipelined > 0 {
            tracing::info!(bytes = pipelined, "plaintext after STARTTLS dropped");
        }
        self.reply("220 2.0.0 Ready to start TLS").await?;
        let plain = std::mem::replace(
            &mut self.io,
            BufReader::new(Box::new(tokio::io::duplex(1).0)),
        )
        .into_inner();
        match actix_rt::time::timeout(HANDSHAKE, acceptor.accept(plain)).await {
            Ok(Ok(stream)) => {
                self.io = BufReader::new(Box::new(stream));
                self.tls = true;
                // RFC 3207 §4.2: forget everything said before TLS.
                self.helo = false;
                self.reset();
                Ok(true)
            }
            Ok(Err(e)) => {
                tracing::info!(error = %e, "TLS handshake failed");
                Ok(false)
            }
            Err(_) => {
                tracing::info!("TLS handshake timed out");
                Ok(false)
            }
        }
    }

    async fn mail(&mut self, arg: &str) -> std::io::Result<()> {
        if !self.helo {
            return self.error("503 5.5.1 Say EHLO first").await;
        }
        if self.ctx.require_tls && !self.tls {
            return self
                .error("530 5.7.0 Must issue a STARTTLS command first")
                .await;
        }
        if self.from.is_some() {
            return self.error("503 5.5.1 Nested MAIL command").await;
        }
        let Some((addr, params)) = path(arg, "FROM:") else {
            return self.error("501 5.1.7 Syntax: MAIL FROM:<address>").await;
        };
        if !addr.is_empty() && !addr.contains('@') {
            return self.error("501 5.1.7 Bad sender address").await;
        }
        for p in &params {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k.to_ascii_uppercase().as_str() {
                "SIZE" => match v.parse::<usize>() {
                    Ok(n) if n > self.ctx.max_message_bytes => {
                        return self
                            .error("552 5.3.4 Message size exceeds the fixed limit")
                            .await;
                    }
                    Ok(n) => self.declared = Some(n),
                    Err(_) => return self.error("501 5.5.4 Bad SIZE parameter").await,
                },
                "BODY" if v.eq_ignore_ascii_case("8BITMIME") || v.eq_ignore_ascii_case("7BIT") => {}
                _ => return self.error("555 5.5.4 Unsupported MAIL parameter").await,
            }
        }
        let addr = addr.to_ascii_lowercase();
        match &self.user {
            Some(user) if !self.owns(user, &addr) => {
                let e = format!("553 5.7.1 Sender address not owned by user {user}");
                return self.error(&e).await;
            }
            Some(_) => {}
            None if self.is_local(&addr) => {
                return self
                    .error("530 5.7.0 Authentication required to send from a local address")
                    .await;
            }
            None => {}
        }
        self.from = Some(addr);
        self.reply("250 2.1.0 Ok").await
    }

    /// Whether `addr` is in a local domain.
    fn is_local(&self, addr: &str) -> bool {
        addr.rsplit_once('@').is_some_and(|(_, domain)| {
            self.ctx
                .local_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain))
        })
    }

    /// Whether `addr` is `user`'s: `user@<a local domain>`, or one of their
    /// `email:` mechanisms (known on a node, not on a remote gateway).
    fn owns(&self, user: &str, addr: &str) -> bool {
        if addr
            .rsplit_once('@')
            .is_some_and(|(local, _)| local == user)
            && self.is_local(addr)
        {
            return true;
        }
        self.ctx.directory.as_ref().is_some_and(|d| {
            d.user_for_address(&Address::new(MediumKind::Email, addr))
                .is_some_and(|u| u == user)
        })
    }

    /// `AUTH` (RFC 4954), offered only inside TLS.
    async fn auth(&mut self, arg: &str) -> std::io::Result<()> {
        if !self.helo {
            return self.error("503 5.5.1 Say EHLO first").await;
        }
        if self.user.is_some() {
            return self.error("503 5.5.1 Already authenticated").await;
        }
        if self.from.is_some() {
            return self
                .error("503 5.5.1 AUTH not permitted during a mail transaction")
                .await;
        }
        if !self.tls {
            return self
                .error("538 5.7.11 Encryption required for requested authentication mechanism")
                .await;
        }
        let (mech, initial) = match auth::start(arg) {
            Start::Mechanism(m, i) => (m, i.map(|i| auth::answer(i.as_bytes()))),
            Start::Unsupported => {
                return self
                    .error("504 5.5.4 Unrecognized authentication type")
                    .await
            }
            Start::Syntax => {
                return self
                    .error("501 5.5.4 Syntax: AUTH mechanism [initial-response]")
                    .await
            }
        };
        let creds = match mech {
            Mechanism::Plain => {
                let Some(answer) = self.answer(initial, "334 ").await? else {
                    return Ok(());
                };
                self.decoded(answer).await?.map(|b| auth::plain(&b))
            }
            Mechanism::Login => {
                let Some(name) = self.answer(initial, auth::LOGIN_USER).await? else {
                    return Ok(());
                };
                let Some(name) = self.decoded(name).await? else {
                    return Ok(());
                };
                let Some(token) = self.answer(None, auth::LOGIN_PASSWORD).await? else {
                    return Ok(());
                };
                self.decoded(token).await?.map(|t| auth::login(&name, &t))
            }
        };
        match creds {
            // Answered already (cancelled, not base64, client gone).
            None => Ok(()),
            Some(creds) => self.log_in(creds).await,
        }
    }

    /// The initial response, else the answer to `challenge`; `None` when
    /// the client is gone.
    async fn answer(
        &mut self,
        initial: Option<Answer>,
        challenge: &str,
    ) -> std::io::Result<Option<Answer>> {
        if let Some(a) = initial {
            return Ok(Some(a));
        }
        self.reply(challenge).await?;
        Ok(match self.next_line(MAX_COMMAND).await? {
            None => None,
            Some(Line::TooLong) => Some(Answer::Malformed),
            Some(Line::Text(l)) => Some(auth::answer(&l)),
        })
    }

    /// An answer's bytes; a cancel or junk is answered here (`None`).
    async fn decoded(&mut self, a: Answer) -> std::io::Result<Option<Vec<u8>>> {
        match a {
            Answer::Bytes(b) => Ok(Some(b)),
            Answer::Cancelled => {
                self.error("501 5.0.0 Authentication cancelled").await?;
                Ok(None)
            }
            Answer::Malformed => {
                self.error("501 5.5.2 Cannot decode the response").await?;
                Ok(None)
            }
        }
    }

    /// Checks a login: the token must be the named user's.
    async fn log_in(&mut self, creds: Option<Credentials>) -> std::io::Result<()> {
        let named = creds
            .as_ref()
            .and_then(|c| auth::user_id(&c.name, &self.ctx.local_domains));
        let (Some(c), Some(user)) = (creds, named) else {
            return self
                .error("535 5.7.8 Authentication credentials invalid")
                .await;
        };
        match self.token_owner(&c.token).await {
            Ok(Some(owner)) if owner == user => {
                tracing::info!(user = %user, "SMTP login");
                self.user = Some(user);
                self.reply("235 2.7.0 Authentication successful").await
            }
            Ok(_) => {
                tracing::info!(user = %user, "SMTP login refused: not that user's token");
                self.error("535 5.7.8 Authentication credentials invalid")
                    .await
            }
            Err(()) => {
                self.reply("454 4.7.0 Temporary authentication failure, try again later")
                    .await
            }
        }
    }

    /// Whose API token `token` is: the directory's word on a node, the
    /// node's (over MIAP) on a remote gateway. `Err` when it cannot be told.
    async fn token_owner(&self, token: &str) -> Result<Option<String>, ()> {
        if let Some(d) = &self.ctx.directory {
            return Ok(d.authenticate(token));
        }
        let asked = self.ctx.gateway.send(IdentifyToken(token.to_string()));
        match actix_rt::time::timeout(self.ctx.submit_timeout, asked).await {
            Ok(Ok(Ok(who))) => Ok(who.map(|(user, _)| user)),
            other => {
                tracing::warn!(answer = ?other.map(|r| r.map(|_| ())), "the node did not check an SMTP login");
                Err(())
            }
        }
    }

    async fn rcpt(&mut self, arg: &str) -> std::io::Result<()> {
        if self.from.is_none() {
            return self.error("503 5.5.1 Need MAIL first").await;
        }
        let Some((addr, params)) = path(arg, "TO:") else {
            return self.error("501 5.1.3 Syntax: RCPT TO:<address>").await;
        };
        if !params.is_empty() {
            return self.error("555 5.5.4 Unsupported RCPT parameter").await;
        }
        if self.rcpts.len() >= MAX_RECIPIENTS {
            return self.reply("452 4.5.3 Too many recipients").await;
        }
        let Some((local, domain)) = addr.rsplit_once('@') else {
            return self.error("501 5.1.3 Bad recipient address").await;
        };
        if !self
            .ctx
            .local_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
        {
            return self.error("550 5.7.1 Relaying denied").await;
        }
        let user = local.to_ascii_lowercase();
        let known = match &self.ctx.directory {
            Some(d) => d.profile(&user).is_some(),
            None => switchboard_core::directory::profile::valid_user_id(&user),
        };
        if !known {
            return self.error("550 5.1.1 No such user here").await;
        }
        if self.rcpts.contains(&user) {
            return self.reply("250 2.1.5 Ok").await;
        }
        // A declared size times one more recipient past the fan-out: the
        // client sends to the rest in another transaction (RFC 5321 4.5.3.1.10).
        let fanout = self
            .declared
            .unwrap_or(0)
            .saturating_mul(self.rcpts.len() + 1);
        if fanout > self.ctx.max_fanout_bytes {
            return self
                .reply("452 4.5.3 Too many recipients for a message of this size; send to the rest in another transaction")
                .await;
        }
        self.rcpts.push(user);
        self.reply("250 2.1.5 Ok").await
    }

    async fn data(&mut self) -> std::io::Result<()> {
        if self.from.is_none() {
            return self.error("503 5.5.1 Need MAIL first").await;
        }
        if self.rcpts.is_empty() {
            return self.error("554 5.5.1 No valid recipients").await;
        }
        self.reply("354 End data with <CR><LF>.<CR><LF>").await?;
        let mut data = Data::new(self.ctx.max_message_bytes);
        loop {
            match self.next_line(MAX_DATA_LINE).await? {
                // The client went away mid-message: nothing is accepted.
                None => return Ok(()),
                Some(line) => {
                    if data.line(&line) {
                        break;
                    }
                }
            }
        }
        let from = self.from.take().unwrap_or_default();
        let rcpts = std::mem::take(&mut self.rcpts);
        self.declared = None;
        let Some(raw) = data.finish() else {
            return self.reply("552 5.3.4 Message too big").await;
        };
        if raw.len().saturating_mul(rcpts.len()) > self.ctx.max_fanout_bytes {
            let fit = self.ctx.max_fanout_bytes / raw.len().max(1);
            let e = format!(
                "552 5.3.4 Message too big for {} recipients: at most {fit} of this size per transaction",
                rcpts.len()
            );
            return self.reply(&e).await;
        }
        let reply = self.submit(&from, rcpts, &raw).await;
        self.reply(&reply).await
    }

    /// Hands the message to the email gateway once per recipient; the reply
    /// for the whole transaction.
    async fn submit(&self, from: &str, rcpts: Vec<String>, raw: &[u8]) -> String {
        let parsed = mime::parse(raw);
        let sender = Address::new(
            MediumKind::Email,
            if from.is_empty() {
                "mailer-daemon"
            } else {
                from
            },
        );
        // Never read from the envelope: only a login makes mail a user's.
        let sender_user = self.user.clone();
        let mut accepted = Vec::new();
        let mut refused = None;
        let mut temporary = None;
        for user in rcpts {
            let o = Originate {
                sender: sender.clone(),
                sender_user: sender_user.clone(),
                to: To::User(user.clone()),
                // The raw message travels; the email-to-text processor turns
                // it into text on its way to the recipient's medium.
                content: raw.to_vec(),
                content_type: crate::content::RFC822.into(),
                subject: parsed.subject.clone(),
                priority: Priority::Normal,
                expires_in_ms: self.ctx.expires_in_ms,
                receipt: true,
                dedupe: None,
            };
            match actix_rt::time::timeout(self.ctx.submit_timeout, self.ctx.gateway.send(o)).await {
                Ok(Ok(Ok(acc))) => accepted.push(acc.txn.to_string()),
                Ok(Ok(Err(OriginateError::Rejected(r)))) => {
                    tracing::info!(user = %user, reason = r.code(), "mail refused by the broker");
                    refused = Some(r.told());
                }
                other => {
                    tracing::warn!(user = %user, result = ?other.map(|r| r.map(|x| x.map(|a| a.txn))), "mail not stored");
                    temporary = Some(());
                }
            }
        }
        match (accepted.is_empty(), refused, temporary) {
            (false, _, _) => format!("250 2.0.0 Ok: queued as {}", accepted.join(",")),
            (true, _, Some(())) => "451 4.3.0 Temporary failure, try again later".into(),
            (true, Some(code), None) => format!("550 5.7.1 Refused: {code}"),
            (true, None, None) => "554 5.5.1 No valid recipients".into(),
        }
    }
}
