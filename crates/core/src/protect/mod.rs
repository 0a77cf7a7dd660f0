//! Continuous protection (issue 24), its engine: every committed change of a PostgreSQL database
//! sealed into the repository as **change segments**, so the database can be put back to any
//! second, not only to its last backup.
//!
//! - [`start`] makes the logical slot first, then takes a full backup: every transaction that
//!   commits after the slot's consistent point is decoded, and the backup's transaction snapshot
//!   (recorded in every PostgreSQL archive) says which of those the backup already holds. The
//!   hand-over is exact: a decoded transaction goes into a segment only when the base backup's
//!   snapshot does not see it — none lost, none doubled.
//! - [`step`] (or [`step_in`]) reads what committed since, writes it as a segment (the archive format: zstd,
//!   AES-GCM, the data key sealed to the repository's public key — no secret needed to write,
//!   signed by the writer), and only then advances the slot. A crash between the two leaves a
//!   segment whose transactions the next one holds again: a restore keeps each transaction once
//!   (by its commit LSN).
//!   Each step also compares a digest of the schema with the base's: a schema change ends the
//!   base's span and [`rebase`] takes a new base (the slot kept).
//! - [`restore_at`] restores the base backup that covers the chosen second into an empty database
//!   and replays its segments' transactions committed at or before it, by net effect, in one
//!   transaction; [`restore_scope_at`] puts chosen tables or one tenant back (in place or as a
//!   copy) through a scratch database; [`plan_at`] says what either will use first.
//! - [`configured`] runs all this from a backup configuration's setting (the app, `schedule run`).
//!
//! The segments and the state are kept in the repository's `changes/` through the storage
//! backend: a local folder or a cloud storage (S3, Azure Blob, Google Cloud Storage) alike.
//!
//! The long-running loops step through a replication stream kept open between steps
//! ([`step_in`], [`Streams`], `source/pg_stream.rs`); a single step polls the slot ([`step`]).
//!
//! Not built yet (said in docs/continuous-protection.md): per-tenant segment indexes; verifying
//! the server's certificate on the replication connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::archive::{ArchiveHeader, ArchiveReader, ArchiveWriter, SecretKey, Signer, WriteOptions};
use crate::backup::{self, BackupOutcome, BackupRequest};
use crate::configurations::BackupType;
use crate::error::{Error, ErrorCode, Result};
use crate::repository::{Repository, ARCHIVE_EXT};
use crate::source::pg_logical::{self, Txn};
use crate::source::pg_stream;
use crate::source::postgres::connect;
use crate::source::{CancelToken, ProgressSink, SourceSpec};
use crate::storage::backend;

pub mod configured;

/// What a protected database's segments continue from, kept beside them (no secret in it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Protection {
    /// The slot's and the publication's name.
    pub slot: String,
    pub source_name: String,
    /// The full backup the changes continue from, and its transaction snapshot.
    pub base_id: String,
    pub base_snapshot: String,
    /// The schema's digest taken before the base backup ([`pg_logical::schema_fingerprint`]): a
    /// step that reads another one has met a schema change.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// When the base backup was done (microseconds since 2000-01-01 UTC, the server's clock just
    /// after it): a second before it is not this base's.
    #[serde(default)]
    pub base_time_us: Option<i64>,
    /// Up to when every committed change is sealed (the server's clock at the start of the last
    /// complete step whose schema was the base's), microseconds since 2000-01-01 UTC.
    #[serde(default)]
    pub covered_until_us: Option<i64>,
    /// Earlier bases of this protection (a schema change starts a new one), oldest first.
    #[serde(default)]
    pub earlier: Vec<Span>,
    /// Protection was stopped (the slot dropped): the spans stay restorable, no step follows.
    #[serde(default)]
    pub stopped: bool,
}

/// A base backup and the seconds its segments put back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Span {
    pub base_id: String,
    pub from_us: i64,
    pub until_us: i64,
    /// Why it ended (e.g. a schema change).
    pub ended_by: String,
}

/// An RFC 3339 time (UTC) of microseconds since 2000-01-01.
pub fn rfc3339_of(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us + 946_684_800_000_000).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)).unwrap_or_default()
}

/// Writes the state atomically (a file written beside and renamed over the old one; an object put
/// whole).
fn write_state(repo: &Repository, p: &Protection) -> Result<()> {
    let json = serde_json::to_vec_pretty(p).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
    let path = state_path(repo, &p.slot);
    backend::at(&path)?.put(json).map_err(|e| Error::new(e.code, format!("cannot record the protection: {}", e.message)).caused_by(&e))
}

/// The repository's folder (or prefix) of change segments: beside `archives/`, in a folder or in
/// a cloud storage alike.
pub fn changes_dir(repo: &Repository) -> PathBuf {
    repo.dir.join("changes")
}

fn state_path(repo: &Repository, slot: &str) -> PathBuf {
    changes_dir(repo).join(format!("{slot}.json"))
}

/// Reads a protection's state.
pub fn protection(repo: &Repository, slot: &str) -> Result<Protection> {
    let path = state_path(repo, slot);
    let text = backend::at(&path)?.get().map_err(|e| match e.code {
        ErrorCode::NotFound => Error::not_found(format!("no continuous protection named {slot} in {} ({} does not exist)", repo.dir.display(), path.display())),
        _ => Error::new(e.code, format!("cannot read the continuous protection {slot} in {}: {}", repo.dir.display(), e.message)).caused_by(&e),
    })?;
    serde_json::from_slice(&text).map_err(|e| Error::validation(format!("{} is unreadable: {e}", path.display())).caused_by(&e))
}

/// The files (or objects) directly in the repository's `changes/`, with their sizes, by name.
fn changes_listed(repo: &Repository) -> Result<Vec<(PathBuf, u64)>> {
    backend::listed_in(&changes_dir(repo))
}

/// Starts protecting the database of `req.source`: the slot ([`begin`]), then the full backup
/// the changes continue from ([`base`]).
pub async fn start(repo: &Repository, master: &SecretKey, req: &BackupRequest, slot: &str, cancel: &CancelToken, progress: &ProgressSink) -> Result<(Protection, BackupOutcome)> {
    begin(repo, req, slot).await?;
    base(repo, master, req, slot, cancel, progress).await
}

fn postgres_url(req: &BackupRequest) -> Result<&str> {
    match &req.source {
        SourceSpec::Postgres { url } => Ok(url),
        SourceSpec::Sqlite { .. } => Err(Error::validation("continuous protection follows PostgreSQL databases (a SQLite database is backed up on a schedule)")),
    }
}

/// The slot and the publication: from here on every committed transaction is kept for a segment.
pub async fn begin(repo: &Repository, req: &BackupRequest, slot: &str) -> Result<()> {
    let url = postgres_url(req)?;
    if protection(repo, slot).is_ok_and(|p| !p.stopped) {
        return Err(Error::conflict(format!("{slot} is protected already in {}", repo.dir.display())));
    }
    let mut conn = connect(url).await?;
    pg_logical::create(&mut conn, slot, slot).await?;
    Ok(())
}

/// The full backup the changes continue from, taken after [`begin`]; a failed one drops the slot
/// again (nothing is left holding WAL).
pub async fn base(repo: &Repository, master: &SecretKey, req: &BackupRequest, slot: &str, cancel: &CancelToken, progress: &ProgressSink) -> Result<(Protection, BackupOutcome)> {
    let url = postgres_url(req)?;
    match take_base(repo, master, req, slot, cancel, progress).await {
        Ok(done) => Ok(done),
        Err(e) => {
            let mut conn = connect(url).await?;
            let _ = pg_logical::drop(&mut conn, slot, slot).await;
            Err(e)
        }
    }
}

/// A new base backup after a schema change ([`StepOutcome::schema_changed`]): the slot stays,
/// the earlier base and its segments stay restorable up to the last second they cover.
pub async fn rebase(repo: &Repository, master: &SecretKey, req: &BackupRequest, slot: &str, cancel: &CancelToken, progress: &ProgressSink) -> Result<(Protection, BackupOutcome)> {
    take_base(repo, master, req, slot, cancel, progress).await
}

async fn take_base(repo: &Repository, master: &SecretKey, req: &BackupRequest, slot: &str, cancel: &CancelToken, progress: &ProgressSink) -> Result<(Protection, BackupOutcome)> {
    let url = postgres_url(req)?;
    let mut conn = connect(url).await?;
    let fingerprint = before_base(&mut conn).await?;
    let mut full = req.clone();
    full.backup_type = BackupType::Full;
    let base = backup::run(repo, master, &full, cancel, progress).await?;
    let from_us = pg_logical::server_clock_us(&mut conn).await?;
    let p = record_base(repo, slot, &req.source_name, Path::new(&base.archive), fingerprint, from_us)?;
    Ok((p, base))
}

/// The schema's digest, read just before a base backup.
pub async fn before_base(conn: &mut sqlx::PgConnection) -> Result<String> {
    pg_logical::schema_fingerprint(conn).await
}

/// Records the full backup `archive` (taken after the slot was made; `fingerprint` read just
/// before it, `from_us` the server's clock just after it) as the one the changes of `slot`
/// continue from; a base recorded already (a schema change started a new one) is kept as an
/// earlier span.
pub fn record_base(repo: &Repository, slot: &str, source_name: &str, archive: &Path, fingerprint: String, from_us: i64) -> Result<Protection> {
    let header = ArchiveReader::open(archive)?.header;
    let base_snapshot = header.basis.as_ref().and_then(|b| b.get("txid_snapshot")).and_then(|s| s.as_str()).map(str::to_string).ok_or_else(|| {
        Error::new(ErrorCode::Internal, "the base backup records no transaction snapshot")
    })?;
    let mut earlier = Vec::new();
    if let Ok(prev) = protection(repo, slot) {
        earlier = prev.earlier.clone();
        let from = prev.base_time_us.unwrap_or(from_us);
        let ended_by = if prev.stopped { "protection stopped" } else { "a schema change" };
        earlier.push(Span { base_id: prev.base_id, from_us: from, until_us: prev.covered_until_us.unwrap_or(from), ended_by: ended_by.into() });
    }
    let p = Protection {
        slot: slot.into(),
        source_name: source_name.into(),
        base_id: header.archive_id.clone(),
        base_snapshot,
        fingerprint: Some(fingerprint),
        base_time_us: Some(from_us),
        covered_until_us: None,
        earlier,
        stopped: false,
    };
    write_state(repo, &p)?;
    Ok(p)
}

/// Whether `slot` has a record in the repository (its base recorded).
pub fn is_recorded(repo: &Repository, slot: &str) -> bool {
    backend::at(&state_path(repo, slot)).and_then(|b| b.size()).is_ok_and(|n| n.is_some())
}

/// Whether the transaction `xid` (32 bits, as decoding gives it) is visible in `snapshot`
/// (`pg_current_snapshot()`'s text: `xmin:xmax:xip,…`, 64-bit ids).
pub fn visible_in(snapshot: &str, xid: u32) -> Result<bool> {
    let bad = || Error::validation(format!("an unreadable transaction snapshot: {snapshot}"));
    let mut parts = snapshot.split(':');
    let xmin: u64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let xmax: u64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let xip: Vec<u64> = parts.next().unwrap_or("").split(',').filter(|s| !s.is_empty()).map(|s| s.parse().map_err(|_| bad())).collect::<Result<_>>()?;
    // Widened with xmax's epoch: ids above xmax's low half are of the epoch before.
    let (epoch, low) = (xmax >> 32, xmax & 0xffff_ffff);
    let full = if u64::from(xid) <= low { (epoch << 32) | u64::from(xid) } else { (epoch.saturating_sub(1) << 32) | u64::from(xid) };
    Ok(full < xmin || (full < xmax && !xip.contains(&full)))
}

/// What one step did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StepOutcome {
    /// Transactions written to the segment, and their changes.
    pub transactions: usize,
    pub changes: usize,
    /// Transactions the base backup holds already (the hand-over).
    pub in_base: usize,
    pub segment: Option<String>,
    /// The schema changed since the base (a table made, altered or dropped): what committed
    /// after the last step is left in the slot, and a new base backup must be taken
    /// ([`rebase`]) — the seconds between the two are not covered.
    pub schema_changed: bool,
    /// The slot held more than one read takes: [`step`] reads again at once.
    #[serde(skip)]
    pub more: bool,
}

/// Reads what committed since the last step, writes it as one segment, then advances the slot:
/// by polling the slot (`pg_logical_slot_peek_binary_changes`, then `pg_replication_slot_advance`).
/// A loop that steps again and again keeps a replication stream open instead ([`step_in`]).
pub async fn step(repo: &Repository, url: &str, slot: &str, signer: Option<Arc<dyn Signer>>) -> Result<StepOutcome> {
    let mut reader = Reader::Poll(connect(url).await?);
    steps(repo, &mut reader, slot, signer).await
}

/// The replication streams a long-running loop keeps open between its steps (the app,
/// `schedule run`, `protect run --every`), one per slot: the server decodes each change once, as
/// it is written, where a poll decodes the slot's WAL again at every read.
#[derive(Default)]
pub struct Streams {
    open: std::collections::HashMap<String, Streaming>,
    /// Slots whose URL cannot be streamed from, and why: these are polled.
    pub polled: std::collections::HashMap<String, String>,
    /// Slots this loop has opened a stream of before (only a first opening waits for a slot
    /// still held: by the stream of a process just killed; later, a slot held is another
    /// process's streaming, and this step has nothing to do).
    tried: std::collections::HashSet<String>,
}

struct Streaming {
    url: String,
    stream: pg_stream::Stream,
    conn: sqlx::PgConnection,
}

impl Streams {
    /// Closes the stream of `slot` (protection stopped, or its slot about to be dropped).
    pub async fn close(&mut self, slot: &str) {
        if let Some(s) = self.open.remove(slot) {
            s.stream.close().await;
        }
    }

    /// Whether `slot` is streamed right now.
    pub fn is_open(&self, slot: &str) -> bool {
        self.open.contains_key(slot)
    }
}

/// [`step`] through the replication stream of `slot` kept in `streams` (opened on the first
/// step, and again after any error). A URL that cannot be streamed from (see [`pg_stream`]) is
/// polled, and `streams.polled` says why.
pub async fn step_in(repo: &Repository, url: &str, slot: &str, signer: Option<Arc<dyn Signer>>, streams: &mut Streams) -> Result<StepOutcome> {
    // A stream kept from an earlier step may have ended meanwhile (the server's
    // wal_sender_timeout between steps far apart, a restart, a network fault): such a step is
    // done again once on a new stream (what the first attempt sealed and did not confirm comes
    // again and is kept once).
    let reused = streams.open.get(slot).is_some_and(|s| s.url == url);
    match Box::pin(step_streamed(repo, url, slot, signer.clone(), streams)).await {
        Err(e) if reused && !streams.polled.contains_key(slot) => {
            tracing::info!("continuous protection of {slot}: the stream kept from the last step failed ({}); opening a new one", e.message);
            Box::pin(step_streamed(repo, url, slot, signer, streams)).await
        }
        other => other,
    }
}

async fn step_streamed(repo: &Repository, url: &str, slot: &str, signer: Option<Arc<dyn Signer>>, streams: &mut Streams) -> Result<StepOutcome> {
    if streams.polled.contains_key(slot) {
        return step(repo, url, slot, signer).await;
    }
    let mut s = match streams.open.remove(slot) {
        Some(s) if s.url == url => s,
        other => {
            if let Some(o) = other {
                o.stream.close().await;
            }
            let wait = streams.tried.insert(slot.to_string());
            match open_stream(url, slot, wait).await? {
                Ok(stream) => Streaming { url: url.to_string(), stream, conn: connect(url).await? },
                Err(pg_stream::NotStreamable(why)) => {
                    tracing::warn!("continuous protection of {slot}: polling the slot: {why}");
                    streams.polled.insert(slot.to_string(), why);
                    return step(repo, url, slot, signer).await;
                }
            }
        }
    };
    let out = Box::pin(steps(repo, &mut Reader::Stream(&mut s), slot, signer)).await;
    match &out {
        // A schema change: what was not sealed is sent again by the next stream (the slot was
        // not moved past it).
        Ok(o) if !o.schema_changed => {
            streams.open.insert(slot.to_string(), s);
        }
        _ => s.stream.close().await,
    }
    out
}

/// Opens the stream of `slot`; a slot still held by a stream that just ended (a killed process:
/// the server notices within moments) is waited for, at most [`SLOT_RELEASE_WAIT`].
async fn open_stream(url: &str, slot: &str, wait: bool) -> Result<std::result::Result<pg_stream::Stream, pg_stream::NotStreamable>> {
    let deadline = std::time::Instant::now() + if wait { SLOT_RELEASE_WAIT } else { std::time::Duration::ZERO };
    loop {
        match pg_stream::Stream::open(url, slot, slot).await {
            Err(e) if e.message.contains("55006") && std::time::Instant::now() < deadline => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            other => return other,
        }
    }
}

/// How long opening a stream waits for its slot to be released by one that ended.
const SLOT_RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where a step reads committed transactions from.
enum Reader<'a> {
    Poll(sqlx::PgConnection),
    Stream(&'a mut Streaming),
}

/// How long one read of a stream waits for the server's decoding to reach the WAL position read
/// after the clock (under load it is then sealed in parts: `more`).
const STREAM_READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

impl Reader<'_> {
    fn conn(&mut self) -> &mut sqlx::PgConnection {
        match self {
            Reader::Poll(c) => c,
            Reader::Stream(s) => &mut s.conn,
        }
    }

    /// Whole transactions committed since the last read, and whether that was everything
    /// committed before this call.
    async fn read(&mut self, slot: &str) -> Result<(Vec<Txn>, bool)> {
        match self {
            Reader::Poll(c) => pg_logical::peek_counted(c, slot, slot, PEEK_CHANGES).await,
            Reader::Stream(s) => {
                let target = pg_logical::flush_lsn(&mut s.conn).await?;
                s.stream.read_until(target, PEEK_CHANGES as usize, STREAM_READ_DEADLINE).await
            }
        }
    }

    /// The slot may move past `end` (the last transaction stored); `all_stored`: every
    /// transaction read was stored (a stream may then move the slot to where decoding is).
    async fn advance(&mut self, slot: &str, end: Option<u64>, all_stored: bool) -> Result<()> {
        match self {
            Reader::Poll(c) => match end {
                Some(lsn) => pg_logical::advance(c, slot, lsn).await,
                None => Ok(()),
            },
            Reader::Stream(s) => s.stream.confirm(end, all_stored).await,
        }
    }
}

async fn steps(repo: &Repository, reader: &mut Reader<'_>, slot: &str, signer: Option<Arc<dyn Signer>>) -> Result<StepOutcome> {
    let mut total = StepOutcome::default();
    // A backlog (the streamer was stopped, or fell behind) is sealed in several segments, read
    // after read, until the slot is drained: the recovery point catches up in one step.
    for _ in 0..MAX_READS_PER_STEP {
        let (out, end, covered) = write_segment_checked(repo, reader, slot, signer.clone()).await?;
        // Only now, the segment stored: the server may recycle the WAL it came from.
        reader.advance(slot, end, !out.schema_changed).await?;
        if let Some(us) = covered {
            let mut p = protection(repo, slot)?;
            p.covered_until_us = Some(us);
            write_state(repo, &p)?;
        }
        total.transactions += out.transactions;
        total.changes += out.changes;
        total.in_base += out.in_base;
        total.segment = out.segment.or(total.segment);
        total.schema_changed = out.schema_changed;
        total.more = out.more;
        if !out.more || out.schema_changed {
            break;
        }
    }
    Ok(total)
}

/// A step reads the slot at most this many times (each read one segment).
const MAX_READS_PER_STEP: usize = 20;

/// Writes the segment of what committed since the last step, after checking the schema: the
/// clock read first, then the slot, then the schema's digest. The same digest as the base's: no
/// schema change committed before the clock's reading, and everything committed before it is in
/// the segment — returned as the new end of coverage. Another digest: the change committed after
/// the last step's reading, so only what committed before that is sealed (the rest stays in the
/// slot for the next base) and `schema_changed` is set.
async fn write_segment_checked(repo: &Repository, reader: &mut Reader<'_>, slot: &str, signer: Option<Arc<dyn Signer>>) -> Result<(StepOutcome, Option<u64>, Option<i64>)> {
    let p = protection(repo, slot)?;
    let clock = pg_logical::server_clock_us(reader.conn()).await?;
    let (txns, complete) = reader.read(slot).await?;
    let digest = pg_logical::schema_fingerprint(reader.conn()).await?;
    let same = p.fingerprint.as_deref().is_none_or(|f| f == digest);
    if same {
        // Everything read: covered up to the clock's reading; a part only: up to its last commit.
        let covered = if complete { Some(clock) } else { txns.last().map(|t| t.commit_time_us) };
        let (mut out, end) = seal(repo, &p, txns, signer)?;
        out.more = !complete;
        return Ok((out, end, covered));
    }
    let until = p.covered_until_us.or(p.base_time_us).unwrap_or(i64::MIN);
    let before: Vec<Txn> = txns.into_iter().take_while(|t| t.commit_time_us <= until).collect();
    let (mut out, end) = seal(repo, &p, before, signer)?;
    out.schema_changed = true;
    Ok((out, end, None))
}

/// At most this many changes are read by one step (whole transactions always).
const PEEK_CHANGES: i32 = 50_000;

/// Writes the segment of what the slot holds now, without advancing it; returns the LSN to
/// advance to (the last transaction's end). `signer` signs it (`None`: this home's writer key).
pub async fn write_segment(repo: &Repository, conn: &mut sqlx::PgConnection, slot: &str, signer: Option<Arc<dyn Signer>>) -> Result<(StepOutcome, Option<u64>)> {
    let p = protection(repo, slot)?;
    let txns = pg_logical::peek(conn, slot, slot, PEEK_CHANGES).await?;
    seal(repo, &p, txns, signer)
}

/// Seals `txns` (those the base does not hold) into a segment; returns the LSN to advance to.
fn seal(repo: &Repository, p: &Protection, txns: Vec<Txn>, signer: Option<Arc<dyn Signer>>) -> Result<(StepOutcome, Option<u64>)> {
    let end = txns.last().map(|t| t.end_lsn);
    let mut out = StepOutcome::default();
    let mut keep = Vec::new();
    for t in txns {
        if visible_in(&p.base_snapshot, t.xid)? {
            out.in_base += 1;
        } else {
            keep.push(t);
        }
    }
    if keep.is_empty() {
        return Ok((out, end));
    }
    out.transactions = keep.len();
    out.changes = keep.iter().map(|t| t.changes.len()).sum();
    let id = uuid::Uuid::new_v4().to_string();
    let (dk, key_slots) = backup::seal_data_key(repo, None, true, &id)?;
    let (first, last) = (&keep[0], &keep[keep.len() - 1]);
    let header = ArchiveHeader {
        backup_type: "changes".into(),
        parent_id: Some(p.base_id.clone()),
        source_name: p.source_name.clone(),
        source_fingerprint: format!("changes:{}", p.slot),
        snapshot_time: last.commit_time(),
        basis: Some(serde_json::json!({
            "first_commit_lsn": pg_logical::format_lsn(first.commit_lsn), "last_commit_lsn": pg_logical::format_lsn(last.commit_lsn),
            "first_commit": first.commit_time(), "last_commit": last.commit_time(), "transactions": keep.len(),
        })),
        ..backup::header(repo, &id, true, key_slots)
    };
    // Named so that names sort in commit order.
    let dest = changes_dir(repo).join(format!("{}-{:016X}-{}.{ARCHIVE_EXT}", p.slot, first.commit_lsn, &id[..8]));
    let mut writer = ArchiveWriter::create(&dest, &header, Some(dk), WriteOptions { zstd_level: Some(3), threads: 1, signer })?;
    {
        let mut section = writer.section("changes", "changes");
        for t in &keep {
            let mut line = serde_json::to_vec(t).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
            line.push(b'\n');
            section.write(&line)?;
            section.add_rows(t.changes.len() as u64);
        }
        section.finish()?;
    }
    writer.finish()?;
    out.segment = Some(dest.display().to_string());
    Ok((out, end))
}

/// The segments of a protection, in commit order.
pub fn segments(repo: &Repository, slot: &str) -> Result<Vec<PathBuf>> {
    Ok(segments_sized(repo, slot)?.into_iter().map(|(p, _)| p).collect())
}

/// The segments of a protection with their sizes, in commit order.
pub fn segments_sized(repo: &Repository, slot: &str) -> Result<Vec<(PathBuf, u64)>> {
    let prefix = format!("{slot}-");
    let mut out: Vec<(PathBuf, u64)> = changes_listed(repo)?
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|x| x == ARCHIVE_EXT) && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)))
        .collect();
    out.sort();
    Ok(out)
}

/// What a restore to a second did.
#[derive(Debug, Clone, Serialize)]
pub struct AtOutcome {
    pub base_id: String,
    pub segments: usize,
    pub transactions: usize,
    pub changes: u64,
}

/// The seconds a protection puts back: each base's span, oldest first (the current one up to
/// the last complete step).
pub fn spans(p: &Protection) -> Vec<Span> {
    let mut out = p.earlier.clone();
    if let Some(from) = p.base_time_us {
        out.push(Span { base_id: p.base_id.clone(), from_us: from, until_us: p.covered_until_us.unwrap_or(from), ended_by: String::new() });
    }
    out
}

/// The protection in `repo` whose covered seconds hold `at` (of the source `source_name` when
/// given): `safehold restore --at` uses its segments rather than the nearest backup before. Two
/// protections covering it without a source named is an error saying so.
pub fn covering(repo: &Repository, at: &str, source_name: Option<&str>) -> Result<Option<String>> {
    let until = pg_micros(at)?;
    let Ok(entries) = changes_listed(repo) else { return Ok(None) };
    let mut found = Vec::new();
    for (path, _) in entries {
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Some(slot) = path.file_stem().and_then(|s| s.to_str()).map(str::to_string) else { continue };
        let Ok(p) = protection(repo, &slot) else { continue };
        if source_name.is_some_and(|n| n != p.source_name) {
            continue;
        }
        if spans(&p).iter().any(|s| s.from_us <= until && until <= s.until_us) {
            found.push(slot);
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(Error::validation(format!("several protected databases in {} cover {at} ({}): name the source with --source", repo.dir.display(), found.join(", ")))),
    }
}

/// The base backup whose segments put the database back to `until` (microseconds), or why none
/// does, naming the seconds that are covered.
fn base_for(p: &Protection, at: &str, until: i64) -> Result<String> {
    if p.base_time_us.is_none() {
        // Recorded before spans were kept: the one base.
        return Ok(p.base_id.clone());
    }
    let spans = spans(p);
    if let Some(s) = spans.iter().rev().find(|s| s.from_us <= until && until <= s.until_us) {
        return Ok(s.base_id.clone());
    }
    let covered: Vec<String> = spans.iter().map(|s| format!("{} to {}", rfc3339_of(s.from_us), rfc3339_of(s.until_us))).collect();
    let why = match spans.last() {
        Some(last) if until > last.until_us => format!("the changes are sealed up to {} (the last step of the streamer); choose a second at or before it, or wait for the next step", rfc3339_of(last.until_us)),
        Some(first) if until < spans[0].from_us => format!("it is before the first base backup of {} ({})", p.slot, rfc3339_of(first.from_us)),
        _ => "it falls between two bases (a schema change: the seconds between the last step before it and the new base backup are not covered)".to_string(),
    };
    Err(Error::validation(format!("{at} cannot be put back: {why}. Covered: {}", covered.join("; "))))
}

/// Microseconds since 2000-01-01 UTC of an RFC 3339 time.
fn pg_micros(at: &str) -> Result<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(at.trim()).map_err(|e| Error::validation(format!("{at} is not a time: write it as 2026-12-04T14:31:59Z ({e})")))?;
    Ok(t.timestamp_micros() - 946_684_800_000_000)
}

/// Puts the database back to the second `at` into `target_url` (an empty database): the base
/// backup restored, then every segment's transactions committed at or before `at` replayed.
pub async fn restore_at(repo: &Repository, keys: &crate::keys::unlock::KeySources, slot: &str, at: &str, target_url: &str, cancel: &CancelToken, progress: &ProgressSink) -> Result<AtOutcome> {
    restore_at_into(repo, keys, slot, at, target_url, false, cancel, progress).await
}

/// [`restore_at`]; `created`: the target is a database this restore made (a scratch database),
/// so the base is loaded by parallel connections, and a failure may drop it.
#[allow(clippy::too_many_arguments)]
async fn restore_at_into(repo: &Repository, keys: &crate::keys::unlock::KeySources, slot: &str, at: &str, target_url: &str, created: bool, cancel: &CancelToken, progress: &ProgressSink) -> Result<AtOutcome> {
    let until = pg_micros(at)?;
    let p = protection(repo, slot)?;
    let base_id = base_for(&p, at, until)?;
    let base = repo
        .list()?
        .into_iter()
        .find(|(_, h)| h.archive_id == base_id)
        .map(|(path, _)| path)
        .ok_or_else(|| Error::not_found(format!("the base backup {base_id} of {slot} is not in the repository")))?;
    // The repository's key, derived once: it opens the base (a full backup: a chain of one) and
    // every segment.
    let master = keys.unlock_repository(repo).await?;
    let mut base = ArchiveReader::open(&base)?;
    tokio::task::block_in_place(|| base.unlock(Some(&master), None))?;
    let (used, txns) = changes_of(repo, &master, slot, &base_id, cancel)?;
    let jobs = if created { crate::restore::default_jobs() } else { 1 };
    crate::restore::restore_chain(vec![base], &SourceSpec::Postgres { url: target_url.to_string() }, jobs, created, cancel, progress).await?;
    let mut conn = connect(target_url).await?;
    let applied = pg_logical::apply(&mut conn, &txns, Some(until)).await?;
    // Sequences are not in the changes: each one a column owns goes on from that column's largest
    // value (names from the target's own catalog).
    sqlx::raw_sql(
        "DO $$ DECLARE r record; m bigint; BEGIN
           FOR r IN SELECT format('%I.%I', sn.nspname, s.relname) AS seq, format('%I.%I', tn.nspname, t.relname) AS tab, format('%I', a.attname) AS col
             FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' JOIN pg_namespace sn ON sn.oid = s.relnamespace
             JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
             WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
           LOOP
             EXECUTE format('SELECT max(%s)::bigint FROM %s', r.col, r.tab) INTO m;
             IF m IS NOT NULL THEN PERFORM setval(r.seq, m); END IF;
           END LOOP; END $$",
    )
    .execute(&mut conn)
    .await
    .map_err(crate::source::postgres::q("set the sequences after the replay"))?;
    Ok(AtOutcome { base_id, segments: used, transactions: txns.iter().filter(|t| t.commit_time_us <= until).count(), changes: applied })
}

/// The transactions of the segments that continue from `base_id`, in commit order, each once
/// (a step that stopped before advancing the slot leaves a transaction in two segments), and how
/// many segments hold them.
fn changes_of(repo: &Repository, master: &SecretKey, slot: &str, base_id: &str, cancel: &CancelToken) -> Result<(usize, Vec<Txn>)> {
    let mut txns: Vec<Txn> = Vec::new();
    let mut used = 0;
    for f in &segments(repo, slot)? {
        cancel.check()?;
        let mut reader = ArchiveReader::open(f)?;
        // Segments of another base (an earlier one, or one after a schema change) are not these.
        if reader.header.parent_id.as_deref() != Some(base_id) {
            continue;
        }
        tokio::task::block_in_place(|| reader.unlock(Some(master), None))?;
        used += 1;
        let index = reader.index()?;
        let mut data = Vec::new();
        reader.read_section(&index, "changes", &mut |c| {
            data.extend_from_slice(c);
            Ok(())
        })?;
        for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            txns.push(serde_json::from_slice(line).map_err(|e| Error::validation(format!("{}: an unreadable transaction ({e})", f.display())))?);
        }
    }
    txns.sort_by_key(|t| t.commit_lsn);
    txns.dedup_by_key(|t| t.commit_lsn);
    Ok((used, txns))
}

/// What a restore to a second will use: the base backup, the segments, and the transactions and
/// changes it will replay — said before anything is written.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct AtPlan {
    pub at: String,
    pub base_id: String,
    /// The base's snapshot time (as its header records it).
    pub base_taken: String,
    pub segments: u64,
    pub transactions: u64,
    pub changes: u64,
    /// The last transaction replayed, and when it committed.
    pub last_commit: Option<String>,
}

/// The plan of a restore to the second `at` (reads the segments; writes nothing).
pub async fn plan_at(repo: &Repository, keys: &crate::keys::unlock::KeySources, slot: &str, at: &str) -> Result<AtPlan> {
    let until = pg_micros(at)?;
    let p = protection(repo, slot)?;
    let base_id = base_for(&p, at, until)?;
    let (_, header) = repo
        .list()?
        .into_iter()
        .find(|(_, h)| h.archive_id == base_id)
        .ok_or_else(|| Error::not_found(format!("the base backup {base_id} of {slot} is not in the repository (retention deleted it?)")))?;
    let master = keys.unlock_repository(repo).await?;
    let (used, txns) = changes_of(repo, &master, slot, &base_id, &CancelToken::new())?;
    let replayed: Vec<&Txn> = txns.iter().filter(|t| t.commit_time_us <= until).collect();
    Ok(AtPlan {
        at: at.to_string(),
        base_id,
        base_taken: header.snapshot_time,
        segments: used as u64,
        transactions: replayed.len() as u64,
        changes: replayed.iter().map(|t| t.changes.len() as u64).sum(),
        last_commit: replayed.last().map(|t| t.commit_time()),
    })
}

/// One table of a test restore to a second: the rows the base and the changes up to that second
/// add up to, and the rows the restored database holds.
#[derive(Debug, Clone, Serialize)]
pub struct AtTableCheck {
    pub table: String,
    pub expected_rows: i64,
    pub restored_rows: i64,
    pub ok: bool,
}

/// `verify --restore-test --at`: the database put back to a second in a scratch database (the
/// replay itself checks that every update and delete found its one row), every table's rows
/// counted against the base's count plus the inserts, minus the deletes replayed, and the scratch
/// database dropped.
#[derive(Debug, Clone, Serialize)]
pub struct AtTestReport {
    pub plan: AtPlan,
    pub scratch_database: String,
    pub tables: Vec<AtTableCheck>,
    pub ok: bool,
}

pub async fn restore_test_at(repo: &Repository, keys: &crate::keys::unlock::KeySources, slot: &str, at: &str, server_url: &str, cancel: &CancelToken, progress: &ProgressSink) -> Result<AtTestReport> {
    let plan = plan_at(repo, keys, slot, at).await?;
    let until = pg_micros(at)?;
    let name = format!("safehold_verify_at_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let scratch = crate::source::postgres::database_url(server_url, &name)?;
    crate::source::postgres::create_database(&scratch).await?;
    let result = async {
        Box::pin(restore_at_into(repo, keys, slot, at, &scratch, true, cancel, progress)).await?;
        let master = keys.unlock_repository(repo).await?;
        let base = repo.list()?.into_iter().find(|(_, h)| h.archive_id == plan.base_id).map(|(p, _)| p).ok_or_else(|| Error::not_found("the base backup is gone"))?;
        let mut reader = ArchiveReader::open(&base)?;
        tokio::task::block_in_place(|| reader.unlock(Some(&master), None))?;
        let mut expected: std::collections::BTreeMap<String, i64> =
            reader.index()?.sections.iter().filter(|s| s.kind == "table").map(|s| (s.name.clone(), i64::try_from(s.rows).unwrap_or(i64::MAX))).collect();
        let (_, txns) = changes_of(repo, &master, slot, &plan.base_id, cancel)?;
        for c in txns.iter().take_while(|t| t.commit_time_us <= until).flat_map(|t| t.changes.iter()) {
            match c.op {
                'I' => *expected.entry(c.table.clone()).or_default() += 1,
                'D' => *expected.entry(c.table.clone()).or_default() -= 1,
                'T' => {
                    for t in std::iter::once(&c.table).chain(&c.truncated) {
                        expected.insert(t.clone(), 0);
                    }
                }
                _ => {}
            }
        }
        let mut conn = connect(&scratch).await?;
        let mut tables = Vec::new();
        for (table, rows) in expected {
            let Some((schema, rel)) = table.split_once('.') else { continue };
            let sql = format!("SELECT count(*) FROM ONLY {}.{}", crate::source::postgres::qi(schema), crate::source::postgres::qi(rel));
            let restored: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut conn).await.map_err(crate::source::postgres::q("count a restored table"))?;
            tables.push(AtTableCheck { ok: restored == rows, table, expected_rows: rows, restored_rows: restored });
        }
        let ok = tables.iter().all(|t| t.ok);
        Ok(AtTestReport { plan: plan.clone(), scratch_database: name.clone(), tables, ok })
    }
    .await;
    let _ = crate::source::postgres::drop_database(&scratch).await;
    result
}

/// A protection's state on the server and in the repository.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub name: String,
    /// The slot on the server (`None`: protection is stopped, or the slot was lost).
    pub slot: Option<pg_logical::SlotStatus>,
    /// How long the oldest committed change not yet sealed has waited (0: none waits): how far
    /// the recovery point is behind the database.
    pub lag_seconds: Option<f64>,
    pub segments: usize,
    pub last_segment: Option<String>,
    /// The commit time of the newest transaction sealed.
    pub last_sealed_commit: Option<String>,
    /// The seconds that can be put back, per base (RFC 3339): the recovery point is the last
    /// span's end.
    pub covered: Vec<(String, String)>,
}

/// The slot's lag and the WAL it holds back, and the segments kept.
pub async fn status(repo: &Repository, url: &str, slot: &str) -> Result<Status> {
    let mut conn = connect(url).await?;
    let on_server = pg_logical::status(&mut conn, slot).await?;
    let lag_seconds = match &on_server {
        Some(_) => {
            let now_us = pg_logical::server_clock_us(&mut conn).await?;
            match pg_logical::peek(&mut conn, slot, slot, 1).await {
                Ok(waiting) => Some(waiting.first().map(|t| (now_us - t.commit_time_us).max(0) as f64 / 1e6).unwrap_or(0.0)),
                // The streamer is reading the slot right now (a slot serves one session at a
                // time): the recovery point's distance from now instead — at most one step more.
                Err(e) => match protection(repo, slot).ok().and_then(|p| p.covered_until_us.or(p.base_time_us)) {
                    Some(covered) => Some((now_us - covered).max(0) as f64 / 1e6),
                    None => return Err(e),
                },
            }
        }
        None => None,
    };
    let files = segments(repo, slot)?;
    let last_sealed_commit = match files.last() {
        Some(f) => Some(ArchiveReader::open(f)?.header.snapshot_time),
        None => None,
    };
    let covered = protection(repo, slot).map(|p| spans(&p).iter().map(|s| (rfc3339_of(s.from_us), rfc3339_of(s.until_us))).collect()).unwrap_or_default();
    Ok(Status { name: slot.into(), slot: on_server, lag_seconds, segments: files.len(), last_segment: files.last().map(|f| f.display().to_string()), last_sealed_commit, covered })
}

/// What the slot's size check found.
#[derive(Debug, Clone, Serialize)]
pub struct SlotCheck {
    pub held_bytes: u64,
    /// Past the warning limit: what to do.
    pub warning: Option<String>,
    /// Past the hard limit: the slot was dropped (protection stopped) rather than let the
    /// server's disk fill.
    pub dropped: Option<String>,
}

/// Checks the WAL the slot holds back on the server against a warning and a hard limit (bytes);
/// past the hard one the slot and publication are dropped and the record removed.
pub async fn check_slot(repo: &Repository, url: &str, slot: &str, warn_bytes: Option<u64>, max_bytes: Option<u64>) -> Result<SlotCheck> {
    let mut conn = connect(url).await?;
    let Some(s) = pg_logical::status(&mut conn, slot).await? else {
        return Err(Error::not_found(format!("{slot} has no replication slot on the server: protection was stopped or the slot was lost; start it again (a new base backup)")));
    };
    let keep = if s.max_slot_wal_keep_size == "-1" { "no max_slot_wal_keep_size on the server".to_string() } else { format!("max_slot_wal_keep_size {}", s.max_slot_wal_keep_size) };
    let mut out = SlotCheck { held_bytes: s.held_bytes, warning: None, dropped: None };
    if max_bytes.is_some_and(|m| s.held_bytes > m) {
        stop(repo, url, slot).await?;
        out.dropped = Some(format!(
            "{slot}: the replication slot held {} bytes of WAL back, more than the limit of {} ({keep}): it was dropped so the server's disk does not fill; continuous protection is stopped — start it again (a new base backup) once the streamer can keep up",
            s.held_bytes,
            max_bytes.unwrap_or_default()
        ));
    } else if warn_bytes.is_some_and(|w| s.held_bytes > w) {
        out.warning = Some(format!(
            "{slot}: the replication slot holds {} bytes of WAL back on the server ({keep}); is the streamer running? (safehold protect run --every 5)",
            s.held_bytes
        ));
    }
    Ok(out)
}

/// What is put back to a second in a live database: chosen tables or one tenant, in place, or one
/// tenant as a copy (new ids, a new tenant) beside the others.
#[derive(Debug, Clone)]
pub enum AtScope {
    Scope(crate::source::pg_apply::Scope),
    TenantAsCopy(crate::source::pg_apply::TenantScope, crate::migrate::CopyAs),
}

/// Puts one tenant back to the second `at`, in place (see [`restore_scope_at`]).
#[allow(clippy::too_many_arguments)]
pub async fn restore_tenant_at(
    repo: &Repository,
    keys: &crate::keys::unlock::KeySources,
    slot: &str,
    at: &str,
    target_url: &str,
    tenant: &crate::source::pg_apply::TenantScope,
    commit: bool,
    cancel: &CancelToken,
    progress: &ProgressSink,
) -> Result<crate::source::pg_apply::ApplyOutcome> {
    restore_scope_at(repo, keys, slot, at, target_url, &AtScope::Scope(crate::source::pg_apply::Scope::Tenant(tenant.clone())), commit, cancel, progress).await
}

/// Puts chosen tables or one tenant back to the second `at` in `target_url` (the protected
/// database, or another holding the same tables): the database as it was at that second is
/// built in a scratch database on the target's server (base backup and segments), read in one
/// snapshot into a private, unencrypted archive in a temporary folder (for a tenant, only its rows
/// of the tenant tables, as a tenant export), and the scope applied by
/// the selective or tenant restore — in place, or a tenant as a copy (all or nothing; `commit:
/// false` plans it and changes nothing). The scratch database and the archive are removed
/// afterwards, whatever happened.
#[allow(clippy::too_many_arguments)]
pub async fn restore_scope_at(
    repo: &Repository,
    keys: &crate::keys::unlock::KeySources,
    slot: &str,
    at: &str,
    target_url: &str,
    scope: &AtScope,
    commit: bool,
    cancel: &CancelToken,
    progress: &ProgressSink,
) -> Result<crate::source::pg_apply::ApplyOutcome> {
    use crate::source::pg_apply::{self, Scope};
    // Before anything is made: the second must be covered.
    base_for(&protection(repo, slot)?, at, pg_micros(at)?)?;
    let scratch = crate::source::postgres::database_url(target_url, &format!("safehold_at_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]))?;
    crate::source::postgres::create_database(&scratch).await?;
    let folder = tempfile::Builder::new().prefix("safehold-at-").tempdir().map_err(|e| Error::io("cannot create a temporary folder", &e))?;
    let result = async {
        Box::pin(restore_at_into(repo, keys, slot, at, &scratch, true, cancel, progress)).await?;
        let mut req = BackupRequest::new(SourceSpec::Postgres { url: scratch.clone() });
        req.encrypt = false;
        req.signer = keys.writer.clone();
        if let AtScope::Scope(Scope::Tenant(t)) | AtScope::TenantAsCopy(t, _) = scope {
            req.tenant_column = t.tenant_column.clone();
            req.tenants_table = t.tenants_table.clone();
            // Only that tenant's rows of the tenant tables are read back (a tenant export, as a
            // safety backup is): not the whole database a second time.
            req.tenants = vec![t.tenant_id.clone()];
        }
        req.dest = Some(folder.path().join(format!("at.{ARCHIVE_EXT}")));
        let taken = backup::run_with(repo, None, &req, cancel, progress).await?;
        let reader = ArchiveReader::open(Path::new(&taken.archive))?;
        let chain = crate::chain::check_chain(vec![reader])?;
        match scope {
            AtScope::Scope(scope) => pg_apply::apply(&chain, target_url, scope, commit, cancel, progress).await,
            AtScope::TenantAsCopy(ts, copy) => crate::migrate::restore_tenant_as_copy(&chain, target_url, ts, copy, commit, cancel, progress).await,
        }
    }
    .await;
    let _ = crate::source::postgres::drop_database(&scratch).await;
    result
}

/// Ends protection: the slot and publication dropped (the server keeps no WAL for them), the
/// state marked stopped; the segments stay with the backups they continue, restorable up to the
/// last second they cover.
pub async fn stop(repo: &Repository, url: &str, slot: &str) -> Result<()> {
    let mut conn = connect(url).await?;
    pg_logical::drop(&mut conn, slot, slot).await?;
    match protection(repo, slot) {
        Ok(mut p) => {
            p.stopped = true;
            write_state(repo, &p)
        }
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_is_in_the_base_when_its_snapshot_sees_it() {
        let snap = "100:110:103,105";
        assert!(visible_in(snap, 99).unwrap(), "committed before the snapshot");
        assert!(visible_in(snap, 104).unwrap(), "finished before, above xmin");
        assert!(!visible_in(snap, 103).unwrap() && !visible_in(snap, 105).unwrap(), "in progress at the snapshot");
        assert!(!visible_in(snap, 110).unwrap() && !visible_in(snap, 200).unwrap(), "started after");
        // Across an epoch: xmax in epoch 1, a 32-bit xid above its low half is of epoch 0.
        let wide = format!("{}:{}:", (1u64 << 32) - 10, (1u64 << 32) + 5);
        assert!(!visible_in(&wide, 5).unwrap(), "epoch 1, at xmax");
        assert!(visible_in(&wide, 0xffff_fff0).unwrap(), "epoch 0, below xmin");
        assert!(visible_in("nonsense", 1).is_err());
        assert_eq!(pg_micros("2000-01-01T00:00:05Z").unwrap(), 5_000_000);
    }
}
