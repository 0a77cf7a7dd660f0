//! The streaming replication protocol, for continuous protection (issue 24): a replication
//! connection (`replication=database`) that runs `START_REPLICATION SLOT … LOGICAL` with the
//! built-in `pgoutput` plugin, so the server decodes each change **once**, as it is written, and
//! sends it. Polling with `pg_logical_slot_peek_binary_changes` (the other way, in
//! [`super::pg_logical`]) decodes the slot's WAL again from its restart point at every read, and
//! `pg_replication_slot_advance` decodes it once more: under `pgbench -c 4` that work, on the
//! server's cores, cost pgbench 9.7 % of its TPS (docs/benchmarks.md).
//!
//! The engine's driver (sqlx) speaks no replication protocol, so this module speaks the little
//! of it that is needed: the start-up message, authentication (trust, password, MD5,
//! SCRAM-SHA-256), one simple query, and the copy-both stream (`XLogData`, keepalives, standby
//! status updates). The `pgoutput` messages it receives are the same bytes a peek returns and go
//! through the same [`Decoder`].
//!
//! What it guarantees, as the poll did: a transaction is handed out only whole (at its commit);
//! [`Stream::read_until`] returns only once every transaction committed before a given WAL
//! position is in hand (or says it is not complete); the slot is confirmed ([`Stream::confirm`])
//! only after the caller has stored what it was handed, so a crash between the two makes the
//! server send those transactions again (a restore keeps each once, by its commit LSN) and never
//! loses one.
//!
//! TLS as libpq does it for `sslmode`: `prefer` (the default) asks the server for TLS and goes on
//! without it if the server has none; `require` insists on it, without checking the server's
//! certificate (libpq's `require`: encryption, not identity). Not built: `verify-ca` and
//! `verify-full` (the certificate checked against a CA) and passwords from `~/.pgpass` — such a
//! URL is refused by [`Stream::open`] with why, and the caller polls instead.

use std::collections::VecDeque;
use std::str::FromStr;
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::pg_logical::{Decoder, Txn};
use super::percent_decode;
use crate::error::{Error, ErrorCode, Result};

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How long connecting and authenticating may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Without data for this long, [`Stream::read_until`] asks the server where its decoding is.
const ASK_AFTER: Duration = Duration::from_millis(50);

/// An open replication stream of one slot.
pub struct Stream {
    io: Box<dyn Io>,
    /// Bytes read and not yet taken as messages: `buf[taken..]`.
    buf: Vec<u8>,
    taken: usize,
    decoder: Decoder,
    /// Whole transactions received and not handed out yet.
    ready: VecDeque<Txn>,
    ready_changes: usize,
    /// Every transaction committed before this WAL position has been received (the server's
    /// decoding position, from its messages and keepalives).
    received: u64,
    /// What the slot was last confirmed up to by this stream (0: nothing yet).
    confirmed: u64,
    /// The server asked for a status update.
    reply_due: bool,
}

/// Why a URL cannot be streamed from (it is polled instead).
#[derive(Debug)]
pub struct NotStreamable(pub String);

/// Whether the replication connection asks for TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    Off,
    Prefer,
    Require,
}

struct Target {
    tls: Tls,
    address: String,
    socket: Option<std::path::PathBuf>,
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    database: String,
}

fn target_of(url: &str) -> Result<std::result::Result<Target, NotStreamable>> {
    let opts = PgConnectOptions::from_str(url).map_err(|e| Error::validation(format!("invalid PostgreSQL URL {}: {e}", super::redact(url))).caused_by(&e))?;
    let tls = match opts.get_ssl_mode() {
        PgSslMode::VerifyCa | PgSslMode::VerifyFull => {
            return Ok(Err(NotStreamable("the URL asks for the server's TLS certificate to be verified, which Safehold's replication connection does not do yet".into())));
        }
        PgSslMode::Require => Tls::Require,
        PgSslMode::Prefer => Tls::Prefer,
        PgSslMode::Allow | PgSslMode::Disable => Tls::Off,
    };
    let parsed = url::Url::parse(url).ok();
    let password = parsed
        .as_ref()
        .and_then(|u| u.password().map(percent_decode).or_else(|| u.query_pairs().find(|(k, _)| k == "password").map(|(_, v)| v.into_owned())))
        .or_else(|| std::env::var("PGPASSWORD").ok());
    Ok(Ok(Target {
        tls,
        address: super::redact(url),
        socket: opts.get_socket().cloned(),
        host: opts.get_host().to_string(),
        port: opts.get_port(),
        user: opts.get_username().to_string(),
        password,
        database: opts.get_database().unwrap_or(opts.get_username()).to_string(),
    }))
}

fn protocol(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::Database, format!("PostgreSQL's replication connection: {what}"))
}

/// A backend message's fields (an ErrorResponse's `M` and `C`).
fn error_text(body: &[u8]) -> String {
    let (mut message, mut code, mut detail) = (String::new(), String::new(), String::new());
    for field in body.split(|b| *b == 0) {
        let Some((&kind, text)) = field.split_first() else { continue };
        let text = String::from_utf8_lossy(text).into_owned();
        match kind {
            b'M' => message = text,
            b'C' => code = text,
            b'D' => detail = text,
            _ => {}
        }
    }
    let detail = if detail.is_empty() { String::new() } else { format!(" ({detail})") };
    format!("{message}{detail} [SQLSTATE {code}]")
}

fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(kind);
    put_i32(&mut out, i32::try_from(body.len() + 4).unwrap_or(i32::MAX));
    out.extend_from_slice(body);
    out
}

fn i64_at(b: &[u8], at: usize) -> Result<i64> {
    b.get(at..at + 8).map(|s| i64::from_be_bytes(s.try_into().unwrap_or([0; 8]))).ok_or_else(|| protocol("a message shorter than its fields"))
}

/// Microseconds since 2000-01-01 UTC now (the protocol's clock).
fn now_pg_us() -> i64 {
    chrono::Utc::now().timestamp_micros() - 946_684_800_000_000
}

impl Stream {
    /// Opens a replication connection to the database of `url` and starts streaming `slot`'s
    /// changes of `publication` from where the slot was last confirmed. `Ok(Err(…))`: this URL
    /// cannot be streamed from (the caller polls), with why.
    pub async fn open(url: &str, slot: &str, publication: &str) -> Result<std::result::Result<Stream, NotStreamable>> {
        let t = match target_of(url)? {
            Ok(t) => t,
            Err(why) => return Ok(Err(why)),
        };
        let address = t.address.clone();
        match tokio::time::timeout(CONNECT_TIMEOUT, Self::connect(t)).await {
            Err(_) => Err(Error::new(ErrorCode::Database, format!("cannot open a replication connection to {address}: no answer within {} s", CONNECT_TIMEOUT.as_secs()))),
            Ok(Err(e)) => Err(e),
            Ok(Ok(Err(why))) => Ok(Err(why)),
            Ok(Ok(Ok(mut s))) => {
                tokio::time::timeout(CONNECT_TIMEOUT, s.start(slot, publication))
                    .await
                    .map_err(|_| Error::new(ErrorCode::Database, format!("{address}: START_REPLICATION got no answer within {} s", CONNECT_TIMEOUT.as_secs())))??;
                Ok(Ok(s))
            }
        }
    }

    async fn connect(t: Target) -> Result<std::result::Result<Stream, NotStreamable>> {
        let io: Box<dyn Io> = match &t.socket {
            Some(dir) => {
                let path = if dir.is_dir() { dir.join(format!(".s.PGSQL.{}", t.port)) } else { dir.clone() };
                #[cfg(unix)]
                {
                    Box::new(tokio::net::UnixStream::connect(&path).await.map_err(|e| Error::new(ErrorCode::Database, format!("cannot connect to {}: {e}", path.display())))?)
                }
                #[cfg(not(unix))]
                {
                    return Ok(Err(NotStreamable(format!("a socket path {}", path.display()))));
                }
            }
            None => {
                let mut s = tokio::net::TcpStream::connect((t.host.as_str(), t.port)).await.map_err(|e| Error::new(ErrorCode::Database, format!("cannot connect to {}: {e}", t.address)))?;
                let _ = s.set_nodelay(true);
                match t.tls {
                    Tls::Off => Box::new(s),
                    Tls::Prefer | Tls::Require => {
                        // SSLRequest: the server answers one byte, S (TLS follows) or N.
                        let mut ask = Vec::new();
                        put_i32(&mut ask, 8);
                        put_i32(&mut ask, 80_877_103);
                        s.write_all(&ask).await.map_err(|e| protocol(format!("cannot write: {e}")))?;
                        let mut answer = [0u8; 1];
                        s.read_exact(&mut answer).await.map_err(|e| protocol(format!("cannot read: {e}")))?;
                        match (answer[0], t.tls) {
                            (b'S', _) => Box::new(tls_over(s, &t.host).await.map_err(|e| Error::new(ErrorCode::Database, format!("cannot open TLS to {}: {}", t.address, e.message)))?),
                            (b'N', Tls::Prefer) => Box::new(s),
                            (b'N', _) => {
                                return Err(Error::new(ErrorCode::Database, format!("{} does not accept TLS, and the URL requires it (sslmode=require): turn ssl on in the server's postgresql.conf, or use sslmode=prefer", t.address)));
                            }
                            (other, _) => return Err(protocol(format!("an unexpected answer {:?} to the TLS request", other as char))),
                        }
                    }
                }
            }
        };
        let mut s = Stream { io, buf: Vec::new(), taken: 0, decoder: Decoder::default(), ready: VecDeque::new(), ready_changes: 0, received: 0, confirmed: 0, reply_due: false };
        let mut startup = Vec::new();
        put_i32(&mut startup, 196_608);
        for (k, v) in [("user", t.user.as_str()), ("database", t.database.as_str()), ("replication", "database"), ("application_name", "safehold-stream")] {
            startup.extend_from_slice(k.as_bytes());
            startup.push(0);
            startup.extend_from_slice(v.as_bytes());
            startup.push(0);
        }
        startup.push(0);
        let mut first = Vec::new();
        put_i32(&mut first, i32::try_from(startup.len() + 4).unwrap_or(i32::MAX));
        first.extend_from_slice(&startup);
        s.send(&first).await?;
        let mut scram: Option<Scram> = None;
        loop {
            let (kind, body) = s.next_blocking().await?;
            match kind {
                b'R' => {
                    let code = body.get(0..4).map(|c| i32::from_be_bytes(c.try_into().unwrap_or([0; 4]))).unwrap_or(-1);
                    if code != 0 && t.password.is_none() {
                        return Ok(Err(NotStreamable("the server asks for a password and the URL has none (the replication connection does not read ~/.pgpass)".into())));
                    }
                    let password = || Ok::<String, Error>(t.password.clone().unwrap_or_default());
                    match code {
                        0 => {}
                        3 => {
                            let mut p = password()?.into_bytes();
                            p.push(0);
                            s.send(&message(b'p', &p)).await?;
                        }
                        5 => {
                            let salt = body.get(4..8).ok_or_else(|| protocol("an MD5 request without its salt"))?;
                            let inner = hex::encode(md5::Md5::digest([password()?.as_bytes(), t.user.as_bytes()].concat()));
                            let mut p = format!("md5{}", hex::encode(md5::Md5::digest([inner.as_bytes(), salt].concat()))).into_bytes();
                            p.push(0);
                            s.send(&message(b'p', &p)).await?;
                        }
                        10 => {
                            let mechanisms: Vec<&[u8]> = body[4..].split(|b| *b == 0).filter(|m| !m.is_empty()).collect();
                            if !mechanisms.contains(&&b"SCRAM-SHA-256"[..]) {
                                return Ok(Err(NotStreamable(format!("the server offers only {} (channel binding is not built)", mechanisms.iter().map(|m| String::from_utf8_lossy(m)).collect::<Vec<_>>().join(", ")))));
                            }
                            let sc = Scram::new(password()?);
                            let first = sc.client_first();
                            let mut p = b"SCRAM-SHA-256\0".to_vec();
                            put_i32(&mut p, i32::try_from(first.len()).unwrap_or(i32::MAX));
                            p.extend_from_slice(first.as_bytes());
                            s.send(&message(b'p', &p)).await?;
                            scram = Some(sc);
                        }
                        11 => {
                            let sc = scram.as_mut().ok_or_else(|| protocol("a SASL continuation without its start"))?;
                            let fin = sc.client_final(&String::from_utf8_lossy(&body[4..]))?;
                            s.send(&message(b'p', fin.as_bytes())).await?;
                        }
                        12 => {
                            let sc = scram.as_ref().ok_or_else(|| protocol("a SASL end without its start"))?;
                            sc.verify_server(&String::from_utf8_lossy(&body[4..]))?;
                        }
                        other => return Ok(Err(NotStreamable(format!("the server asks for authentication method {other}, which the replication connection does not speak")))),
                    }
                }
                b'E' => return Err(Error::new(ErrorCode::Database, format!("cannot open a replication connection to {}: {}", t.address, error_text(&body)))),
                b'Z' => return Ok(Ok(s)),
                // Parameter status, the backend's key, notices.
                _ => {}
            }
        }
    }

    async fn start(&mut self, slot: &str, publication: &str) -> Result<()> {
        if !super::pg_logical::valid_name(slot) || !super::pg_logical::valid_name(publication) {
            return Err(Error::validation(format!("{slot} / {publication}: a slot's and publication's names are lower-case letters, digits and _")));
        }
        let mut q = format!("START_REPLICATION SLOT \"{slot}\" LOGICAL 0/0 (\"proto_version\" '1', \"publication_names\" '\"{publication}\"')").into_bytes();
        q.push(0);
        self.send(&message(b'Q', &q)).await?;
        loop {
            let (kind, body) = self.next_blocking().await?;
            match kind {
                b'W' => return Ok(()),
                b'E' => return Err(Error::new(ErrorCode::Database, format!("PostgreSQL: cannot stream the replication slot {slot}: {}", error_text(&body)))),
                _ => {}
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let write = async {
            self.io.write_all(bytes).await?;
            self.io.flush().await
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, write).await {
            Ok(r) => r.map_err(|e| protocol(format!("cannot write: {e}"))),
            Err(_) => Err(protocol(format!("the server took no data for {} s", CONNECT_TIMEOUT.as_secs()))),
        }
    }

    /// A whole message from the buffer, if one is there.
    fn take_message(&mut self) -> Result<Option<(u8, Vec<u8>)>> {
        let rest = &self.buf[self.taken..];
        if rest.len() < 5 {
            return Ok(None);
        }
        let len = i32::from_be_bytes(rest[1..5].try_into().unwrap_or([0; 4]));
        let len = usize::try_from(len).ok().filter(|l| *l >= 4).ok_or_else(|| protocol("a message of a negative length"))?;
        if rest.len() < 1 + len {
            return Ok(None);
        }
        let kind = rest[0];
        let body = rest[5..1 + len].to_vec();
        self.taken += 1 + len;
        Ok(Some((kind, body)))
    }

    /// The next message, waiting at most `wait` (`None`: none came). Cancel-safe: what was
    /// read stays in the buffer.
    async fn next(&mut self, wait: Duration) -> Result<Option<(u8, Vec<u8>)>> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            if let Some(m) = self.take_message()? {
                return Ok(Some(m));
            }
            // What was taken goes before reading more (once per read, not per message).
            self.buf.drain(..self.taken);
            self.taken = 0;
            self.buf.reserve(64 * 1024);
            match tokio::time::timeout_at(until, self.io.read_buf(&mut self.buf)).await {
                Err(_) => return Ok(None),
                Ok(Err(e)) => return Err(protocol(format!("cannot read: {e}"))),
                Ok(Ok(0)) => return Err(protocol("the server closed the connection")),
                Ok(Ok(_)) => {}
            }
        }
    }

    async fn next_blocking(&mut self) -> Result<(u8, Vec<u8>)> {
        self.next(CONNECT_TIMEOUT).await?.ok_or_else(|| protocol(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())))
    }

    /// Tells the server what is stored (the slot may move up to `self.confirmed`), asking for
    /// an answer when `ask`.
    async fn status_update(&mut self, ask: bool) -> Result<()> {
        let mut b = vec![b'r'];
        for _ in 0..3 {
            b.extend_from_slice(&self.confirmed.to_be_bytes());
        }
        b.extend_from_slice(&now_pg_us().to_be_bytes());
        b.push(u8::from(ask));
        self.reply_due = false;
        self.send(&message(b'd', &b)).await
    }

    /// Handles one copy-data message of the stream.
    fn handle(&mut self, kind: u8, body: &[u8]) -> Result<()> {
        match kind {
            b'd' => match body.first() {
                Some(b'w') => {
                    let end = i64_at(body, 9)? as u64;
                    let data = body.get(25..).ok_or_else(|| protocol("an XLogData message without its data"))?;
                    if let Some(t) = self.decoder.feed(data)? {
                        self.ready_changes += t.changes.len();
                        self.ready.push_back(t);
                    }
                    self.received = self.received.max(end);
                }
                Some(b'k') => {
                    let end = i64_at(body, 1)? as u64;
                    self.received = self.received.max(end);
                    if body.get(17) == Some(&1) {
                        self.reply_due = true;
                    }
                }
                _ => return Err(protocol(format!("an unknown stream message {:?}", body.first().map(|b| *b as char)))),
            },
            b'E' => return Err(Error::new(ErrorCode::Database, format!("PostgreSQL ended the replication stream: {}", error_text(body)))),
            b'c' => return Err(protocol("the server ended the stream")),
            // Notices, parameter status.
            _ => {}
        }
        Ok(())
    }

    /// Reads until every transaction committed before the WAL position `target` is in hand,
    /// `max_changes` changes are, or `deadline` passed; hands out the whole transactions read
    /// (at most about `max_changes` changes) and whether that was everything before `target`.
    pub async fn read_until(&mut self, target: u64, max_changes: usize, deadline: Duration) -> Result<(Vec<Txn>, bool)> {
        let until = Instant::now() + deadline;
        let mut asked = false;
        while self.received < target && self.ready_changes < max_changes && Instant::now() < until {
            if self.reply_due {
                self.status_update(false).await?;
            }
            match self.next(ASK_AFTER).await? {
                Some((kind, body)) => {
                    self.handle(kind, &body)?;
                    asked = false;
                }
                // Quiet: where is the server's decoding? (A keepalive answers with its position.)
                None if !asked => {
                    self.status_update(true).await?;
                    asked = true;
                }
                None => {}
            }
        }
        // Whatever else has arrived already is taken too (no waiting).
        while self.ready_changes < max_changes {
            match self.next(Duration::ZERO).await? {
                Some((kind, body)) => self.handle(kind, &body)?,
                None => break,
            }
        }
        let mut out = Vec::new();
        let mut n = 0;
        while let Some(t) = self.ready.front() {
            if n > 0 && n + t.changes.len() > max_changes {
                break;
            }
            n += t.changes.len();
            let t = self.ready.pop_front().unwrap_or_else(|| unreachable!("front was some"));
            self.ready_changes -= t.changes.len();
            out.push(t);
        }
        let complete = self.received >= target && self.ready.is_empty();
        Ok((out, complete))
    }

    /// The slot may move up to `lsn` (the end of the last transaction stored): the server
    /// recycles the WAL before it. `all_stored`: every transaction handed out was stored; with
    /// none pending either, the slot moves on to where the server's decoding is (WAL of other
    /// databases and of tables not published is held no longer), as `pg_recvlogical` does.
    pub async fn confirm(&mut self, lsn: Option<u64>, all_stored: bool) -> Result<()> {
        let idle = all_stored && self.ready.is_empty() && !self.decoder.in_transaction();
        let to = match lsn {
            Some(l) if idle => l.max(self.received),
            Some(l) => l,
            None if idle => self.received,
            None => return Ok(()),
        };
        if to > self.confirmed {
            self.confirmed = to;
            self.status_update(false).await?;
        }
        Ok(())
    }

    /// What the slot was last confirmed up to by this stream (0: nothing yet).
    pub fn confirmed(&self) -> u64 {
        self.confirmed
    }

    /// Ends the stream politely (the server's walsender exits at once, releasing the slot).
    pub async fn close(mut self) {
        let _ = self.send(&message(b'c', &[])).await;
        let _ = self.send(&message(b'X', &[])).await;
        let _ = self.io.shutdown().await;
    }
}

/// The TLS client side over `tcp`, as libpq's `sslmode=require` is: the handshake's signatures
/// checked, the certificate's issuer not (with ring, the engine's one crypto provider).
async fn tls_over(tcp: tokio::net::TcpStream, host: &str) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| protocol(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| protocol(format!("TLS: {host} is not a server name: {e}")))?;
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| protocol(format!("TLS: {e}")))
}

/// A certificate verifier for `sslmode=require`: any certificate, its signatures checked.
#[derive(Debug)]
struct EncryptOnly(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// SCRAM-SHA-256 (RFC 5802/7677) without channel binding, as PostgreSQL's clients do when not on TLS.
struct Scram {
    password: String,
    nonce: String,
    first_bare: String,
    auth_message: String,
    salted: Vec<u8>,
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

impl Scram {
    fn new(password: String) -> Scram {
        let mut bytes = [0u8; 18];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        let nonce = b64(&bytes);
        let first_bare = format!("n=,r={nonce}");
        Scram { password, nonce, first_bare, auth_message: String::new(), salted: Vec::new() }
    }

    fn client_first(&self) -> String {
        format!("n,,{}", self.first_bare)
    }

    fn client_final(&mut self, server_first: &str) -> Result<String> {
        use base64::Engine;
        let field = |k: &str| server_first.split(',').find_map(|f| f.strip_prefix(k)).ok_or_else(|| protocol(format!("SCRAM: the server's first message lacks {k}")));
        let nonce = field("r=")?;
        if !nonce.starts_with(&self.nonce) {
            return Err(protocol("SCRAM: the server's nonce does not continue ours"));
        }
        let salt = base64::engine::general_purpose::STANDARD.decode(field("s=")?).map_err(|_| protocol("SCRAM: an unreadable salt"))?;
        let rounds: u32 = field("i=")?.parse().map_err(|_| protocol("SCRAM: an unreadable iteration count"))?;
        // PBKDF2-HMAC-SHA-256, one block.
        let mut u = hmac(self.password.as_bytes(), &[salt.as_slice(), &1u32.to_be_bytes()].concat());
        let mut salted = u.clone();
        for _ in 1..rounds {
            u = hmac(self.password.as_bytes(), &u);
            salted.iter_mut().zip(&u).for_each(|(a, b)| *a ^= b);
        }
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        self.auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let signature = hmac(&stored_key, self.auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        self.salted = salted;
        Ok(format!("{without_proof},p={}", b64(&proof)))
    }

    fn verify_server(&self, server_final: &str) -> Result<()> {
        let server_key = hmac(&self.salted, b"Server Key");
        let expected = b64(&hmac(&server_key, self.auth_message.as_bytes()));
        match server_final.split(',').find_map(|f| f.strip_prefix("v=")) {
            Some(v) if v == expected => Ok(()),
            _ => Err(protocol("SCRAM: the server's signature is not the one its password gives (not the server it claims to be)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example exchange (user "user", password "pencil").
    #[test]
    fn scram_sha_256_gives_rfc_7677s_proof_and_checks_the_servers_signature() {
        let mut sc = Scram { password: "pencil".into(), nonce: "rOprNGfwEbeRWgbNEkqO".into(), first_bare: "n=user,r=rOprNGfwEbeRWgbNEkqO".into(), auth_message: String::new(), salted: Vec::new() };
        let fin = sc.client_final("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096").expect("final");
        assert_eq!(fin, "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        sc.verify_server("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").expect("the server's signature");
        assert!(sc.verify_server("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").is_err(), "another signature is refused");
    }

    #[test]
    fn a_url_that_asks_for_a_verified_certificate_is_polled_and_says_why() {
        for mode in ["verify-ca", "verify-full"] {
            let why = target_of(&format!("postgres://u@db.example/app?sslmode={mode}")).expect("a valid URL").err().expect("not streamable");
            assert!(why.0.contains("TLS certificate"), "{mode}: {}", why.0);
        }
        for (mode, tls) in [("require", Tls::Require), ("prefer", Tls::Prefer), ("disable", Tls::Off), ("allow", Tls::Off)] {
            let t = target_of(&format!("postgres://u@db.example/app?sslmode={mode}")).expect("a valid URL").expect("streamable");
            assert_eq!(t.tls, tls, "{mode}");
        }
        let t = target_of("postgres://ann:p%40ss@db.example:5433/app?sslmode=prefer").expect("valid").expect("streamable");
        assert_eq!((t.host.as_str(), t.port, t.user.as_str(), t.password.as_deref(), t.database.as_str()), ("db.example", 5433, "ann", Some("p@ss"), "app"));
    }

    #[test]
    fn percent_encoded_passwords_are_decoded() {
        assert_eq!(percent_decode("p%40ss%2Fw%3Ard"), "p@ss/w:rd");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
