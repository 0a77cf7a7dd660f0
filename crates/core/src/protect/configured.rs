//! Continuous protection run from a backup configuration (its "Continuous protection" setting):
//! what the app runs while it is open and `safehold schedule run` runs on a server. Each step of
//! [`run_step`] for a configuration that has the setting on makes its slot and base backup the
//! first time (the base recorded in the history like any backup, kept by retention while it is
//! the base), then seals what committed since into a segment and checks the WAL the slot holds
//! back. A configuration whose setting is turned off, that is deactivated or deleted has its slot
//! dropped ([`settle`]): the server never keeps WAL for a streamer that no longer runs.
//!
//! What Safehold made is recorded in the catalog's `protections` table (no secret in it), so the
//! state, the last error and the last warning are what `safehold protect status --config` and the
//! app show.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{check_slot, record_base, step, step_in, stop, Streams};
use crate::catalog::now;
use crate::configurations::{self, BackupConfiguration};
use crate::context::{Ctx, Permission};
use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::source::pg_logical;
use crate::source::postgres::connect;
use crate::source::SourceSpec;

/// The WAL a slot may hold back before a warning, and before it is dropped (bytes): app settings
/// `protect_warn_held_bytes` and `protect_max_held_bytes`; 1 GiB and 16 GiB unless set.
pub const DEFAULT_WARN_BYTES: u64 = 1 << 30;
pub const DEFAULT_MAX_BYTES: u64 = 16 << 30;

/// Something an administrator must hear about (a desktop notification in the app, a line on a
/// server).
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    pub configuration_name: String,
    /// `warning` (the slot holds much WAL back, a step failed) or `dropped` (protection stopped).
    pub level: String,
    pub message: String,
}

pub type NoticeSink = Arc<dyn Fn(Notice) + Send + Sync>;

/// A configuration's replication slot's name: `safehold_` and 16 hexadecimal digits of its id.
pub fn slot_name(configuration_id: &str) -> String {
    let hex: String = configuration_id.chars().filter(|c| c.is_ascii_hexdigit()).map(|c| c.to_ascii_lowercase()).take(16).collect();
    format!("safehold_{hex}")
}

/// What the catalog records of a configuration's protection.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ProtectionRow {
    pub configuration_id: String,
    pub slot: String,
    pub connection_id: String,
    pub storage_location: String,
    pub state: String,
    pub base_execution_id: Option<String>,
    pub started_at: String,
    pub last_step_at: Option<String>,
    pub last_segment: Option<String>,
    pub last_sealed_commit: Option<String>,
    pub held_bytes: Option<i64>,
    pub last_warning: Option<String>,
    pub last_error: Option<String>,
}

async fn row(ctx: &Ctx, configuration_id: &str) -> Result<Option<ProtectionRow>> {
    sqlx::query_as("SELECT configuration_id, slot, connection_id, storage_location, state, base_execution_id, started_at, last_step_at, last_segment, last_sealed_commit, held_bytes, last_warning, last_error FROM protections WHERE configuration_id = ?")
        .bind(configuration_id)
        .fetch_optional(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("read the continuous protection", &e))
}

async fn set(ctx: &Ctx, configuration_id: &str, sql: &'static str, values: &[Option<String>]) -> Result<()> {
    let mut q = sqlx::query(sql);
    for v in values {
        q = q.bind(v.clone());
    }
    q.bind(now()).bind(configuration_id).execute(&ctx.pool).await.map_err(|e| Error::catalog("record the continuous protection", &e))?;
    Ok(())
}

/// The WAL limits set for the slots (bytes).
pub async fn limits(ctx: &Ctx) -> Result<(u64, u64)> {
    let get = async |key: &str, default: u64| -> Result<u64> { Ok(crate::catalog::setting(&ctx.pool, key).await?.and_then(|v| v.parse().ok()).unwrap_or(default)) };
    Ok((get("protect_warn_held_bytes", DEFAULT_WARN_BYTES).await?, get("protect_max_held_bytes", DEFAULT_MAX_BYTES).await?))
}

/// The protected database and the repository of a configuration.
struct Target {
    url: String,
    source_name: String,
    dir: std::path::PathBuf,
}

impl Target {
    /// The repository (made by the base backup).
    fn repo(&self) -> Result<Repository> {
        Repository::open(&self.dir)?.ok_or_else(|| Error::not_found(format!("{} holds no repository: continuous protection starts again with a base backup", self.dir.display())))
    }
}

async fn target(ctx: &Ctx, config: &BackupConfiguration, connection_id: &str, storage_name: &str) -> Result<Target> {
    let (spec, conn) = crate::connections::source_of(ctx, connection_id).await?;
    let SourceSpec::Postgres { url } = spec else {
        return Err(Error::validation(format!("\"{}\": continuous protection follows PostgreSQL databases; turn it off for a SQLite connection", config.configuration_name)));
    };
    let dir = storage_dir(ctx, storage_name).await?;
    Ok(Target { url, source_name: conn.name, dir })
}

/// Where a storage's repository is: a folder, or a cloud storage's URL (its bucket connected with
/// the keychain's credentials). The segments go wherever the configuration's backups go.
async fn storage_dir(ctx: &Ctx, storage_name: &str) -> Result<std::path::PathBuf> {
    let store = crate::storage::by_name_or_id(&ctx.pool, storage_name).await?.ok_or_else(|| Error::not_found(format!("the storage \"{storage_name}\" does not exist any more")))?;
    crate::storage::location(ctx, &store).await
}

/// What one step for a configuration did.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub configuration_name: String,
    /// `started` (slot and base made), `sealed` (a segment written), `idle` (nothing committed),
    /// `stopped` (the setting is off: the slot was dropped), `dropped` (past the hard WAL limit).
    pub action: String,
    pub transactions: usize,
    pub segment: Option<String>,
    pub warning: Option<String>,
}

/// One step of continuous protection for a configuration: started (slot, then the base backup),
/// or a segment sealed and the slot checked; a configuration without the setting has its slot
/// dropped if Safehold made one. The step's error is recorded (`last_error`) and returned.
impl StepReport {
    fn new(configuration_name: &str, action: &str) -> Self {
        StepReport { configuration_name: configuration_name.to_string(), action: action.to_string(), transactions: 0, segment: None, warning: None }
    }
}

pub async fn run_step(ctx: &Ctx, configuration_id: &str, notices: &NoticeSink) -> Result<StepReport> {
    run_step_in(ctx, configuration_id, notices, None).await
}

/// [`run_step`] through a replication stream kept open in `streams` between steps
/// ([`super::step_in`]); `None`: the slot is polled.
pub async fn run_step_in(ctx: &Ctx, configuration_id: &str, notices: &NoticeSink, mut streams: Option<&mut Streams>) -> Result<StepReport> {
    crate::context::require(ctx, Permission::TriggerManual, "backup.protect", configuration_id).await?;
    let report = Box::pin(run_step_with(ctx, configuration_id, notices, streams.as_deref_mut())).await;
    // Stopped, dropped or failed: the stream goes (a failed one is opened again by the next step).
    if let Some(st) = streams {
        if !report.as_ref().is_ok_and(|r| matches!(r.action.as_str(), "sealed" | "idle" | "rebased")) {
            st.close(&slot_name(configuration_id)).await;
        }
    }
    report
}

async fn run_step_with(ctx: &Ctx, configuration_id: &str, notices: &NoticeSink, streams: Option<&mut Streams>) -> Result<StepReport> {
    let config = match configurations::get(ctx, configuration_id).await {
        Ok(c) => c,
        Err(e) if e.code == crate::error::ErrorCode::NotFound => {
            // Deleted: its slot goes.
            let slot = settle(ctx, configuration_id).await?;
            return Ok(StepReport::new(&slot.unwrap_or_default(), "stopped"));
        }
        Err(e) => return Err(e),
    };
    let name = config.configuration_name.clone();
    let report = |action: &str| StepReport::new(&name, action);
    if !(config.continuous_protection && config.is_active) {
        return Ok(match settle(ctx, configuration_id).await? {
            Some(_) => report("stopped"),
            None => report("idle"),
        });
    }
    let connection_id = config.connection_id.clone().ok_or_else(|| Error::validation("the configuration names no connection; edit it and choose one"))?;
    let existing = row(ctx, configuration_id).await?;
    // A changed connection or storage: the old slot goes, a new base is taken.
    if existing.as_ref().is_some_and(|r| r.connection_id != connection_id || r.storage_location != config.storage_location || r.state == "dropped") {
        settle_row(ctx, existing.as_ref().expect("checked")).await?;
    }
    let existing = row(ctx, configuration_id).await?;
    let result = match existing {
        Some(r) if r.state == "streaming" => stream(ctx, &config, &r, notices, streams).await,
        _ => start(ctx, &config, &connection_id).await,
    };
    match result {
        Ok(r) => Ok(r),
        // Another streamer (the app and `schedule run` both running) is reading the slot right
        // now: it seals these changes; this step has nothing to do.
        Err(e) if e.message.contains("is active for PID") => Ok(report("idle")),
        Err(e) => {
            let _ = set(ctx, configuration_id, "UPDATE protections SET last_error = ?, updated_at = ? WHERE configuration_id = ?", &[Some(e.message.clone())]).await;
            notices(Notice { configuration_name: name, level: "warning".into(), message: format!("continuous protection: {}", e.message) });
            Err(e)
        }
    }
}

/// Makes the slot (dropping one left by a start that did not finish), then the base backup, run
/// and recorded like a backup of the configuration (a full one, whatever the configuration's type).
async fn start(ctx: &Ctx, config: &BackupConfiguration, connection_id: &str) -> Result<StepReport> {
    let slot = slot_name(&config.id);
    let t = target(ctx, config, connection_id, &config.storage_location).await?;
    let mut conn = connect(&t.url).await?;
    let missing = pg_logical::missing_prerequisites(&mut conn).await?;
    if !missing.is_empty() {
        return Err(Error::validation(format!("\"{}\": the server is not ready for continuous protection: {}", config.configuration_name, missing.join("; "))));
    }
    if pg_logical::status(&mut conn, &slot).await?.is_some() {
        pg_logical::drop(&mut conn, &slot, &slot).await?;
    }
    sqlx::query(
        "INSERT INTO protections (configuration_id, slot, connection_id, storage_location, state, started_at, updated_at) VALUES (?, ?, ?, ?, 'starting', ?, ?)
         ON CONFLICT (configuration_id) DO UPDATE SET slot = excluded.slot, connection_id = excluded.connection_id, storage_location = excluded.storage_location,
           state = 'starting', base_execution_id = NULL, started_at = excluded.started_at, last_error = NULL, last_warning = NULL, updated_at = excluded.updated_at",
    )
    .bind(&config.id)
    .bind(&slot)
    .bind(connection_id)
    .bind(&config.storage_location)
    .bind(now())
    .bind(now())
    .execute(&ctx.pool)
    .await
    .map_err(|e| Error::catalog("record the continuous protection", &e))?;
    pg_logical::create(&mut conn, &slot, &slot).await?;
    let based = take_base(ctx, config, &t, &slot, &mut conn).await;
    match based {
        Ok(execution_id) => {
            set(ctx, &config.id, "UPDATE protections SET state = 'streaming', base_execution_id = ?, last_error = NULL, updated_at = ? WHERE configuration_id = ?", &[Some(execution_id)]).await?;
            Ok(StepReport::new(&config.configuration_name, "started"))
        }
        Err(e) => {
            // Nothing is left holding WAL: the slot goes with the failed start.
            let _ = pg_logical::drop(&mut conn, &slot, &slot).await;
            let _ = sqlx::query("DELETE FROM protections WHERE configuration_id = ?").bind(&config.id).execute(&ctx.pool).await;
            Err(e)
        }
    }
}

/// The base backup, run and recorded like a backup of the configuration (a full one whatever
/// its type), the schema's digest read before it and the server's clock after; returns its
/// execution's id.
async fn take_base(ctx: &Ctx, config: &BackupConfiguration, t: &Target, slot: &str, conn: &mut sqlx::PgConnection) -> Result<String> {
    let fingerprint = super::before_base(conn).await?;
    let execution_id = crate::runs::enqueue_full(ctx, &config.id).await?;
    let done = crate::runs::run(ctx, &execution_id, &crate::source::CancelToken::new()).await?;
    let archive = done.file_path.clone().filter(|_| done.status == crate::history::JobStatus::Completed).ok_or_else(|| {
        Error::validation(format!("the base backup of \"{}\" failed: {}", config.configuration_name, done.error_message.clone().unwrap_or_default()))
    })?;
    let from_us = pg_logical::server_clock_us(conn).await?;
    let repo = t.repo()?;
    record_base(&repo, slot, &t.source_name, std::path::Path::new(&archive), fingerprint, from_us)?;
    Ok(execution_id)
}

/// A segment sealed, then the slot's WAL checked against the limits.
async fn stream(ctx: &Ctx, config: &BackupConfiguration, r: &ProtectionRow, notices: &NoticeSink, streams: Option<&mut Streams>) -> Result<StepReport> {
    let t = target(ctx, config, &r.connection_id, &r.storage_location).await?;
    let signer = crate::keys::custody::key_sources(ctx).await?.writer.map(|w| w as Arc<dyn crate::archive::Signer>);
    let repo = t.repo()?;
    let out = match streams {
        // Boxed: the step's future is large, and this one is awaited inside others.
        Some(st) => Box::pin(step_in(&repo, &t.url, &r.slot, signer, st)).await?,
        None => Box::pin(step(&repo, &t.url, &r.slot, signer)).await?,
    };
    if out.schema_changed {
        // pgoutput carries no DDL: a new base is taken at once; the earlier base's segments stay
        // restorable up to the last step before the change.
        let mut conn = connect(&t.url).await?;
        let execution_id = take_base(ctx, config, &t, &r.slot, &mut conn).await?;
        set(ctx, &config.id, "UPDATE protections SET base_execution_id = ?, last_warning = NULL, last_error = NULL, updated_at = ? WHERE configuration_id = ?", &[Some(execution_id)]).await?;
        return Ok(StepReport { transactions: out.transactions, segment: out.segment, ..StepReport::new(&config.configuration_name, "rebased") });
    }
    let (warn, max) = limits(ctx).await?;
    let check = check_slot(&repo, &t.url, &r.slot, Some(warn), Some(max)).await?;
    let mut report = StepReport {
        transactions: out.transactions,
        segment: out.segment.clone(),
        warning: check.warning.clone(),
        ..StepReport::new(&config.configuration_name, if out.segment.is_some() { "sealed" } else { "idle" })
    };
    if let Some(d) = &check.dropped {
        set(ctx, &config.id, "UPDATE protections SET state = 'dropped', last_error = ?, updated_at = ? WHERE configuration_id = ?", &[Some(d.clone())]).await?;
        notices(Notice { configuration_name: config.configuration_name.clone(), level: "dropped".into(), message: d.clone() });
        report.action = "dropped".into();
        return Ok(report);
    }
    if let Some(w) = &check.warning {
        notices(Notice { configuration_name: config.configuration_name.clone(), level: "warning".into(), message: w.clone() });
    }
    let sealed = match &out.segment {
        Some(f) => Some(crate::archive::ArchiveReader::open(std::path::Path::new(f))?.header.snapshot_time),
        None => r.last_sealed_commit.clone(),
    };
    sqlx::query(
        "UPDATE protections SET last_step_at = ?, last_segment = coalesce(?, last_segment), last_sealed_commit = ?, held_bytes = ?, last_warning = ?, last_error = NULL, updated_at = ? WHERE configuration_id = ?",
    )
    .bind(now())
    .bind(&out.segment)
    .bind(sealed)
    .bind(check.held_bytes as i64)
    .bind(&check.warning)
    .bind(now())
    .bind(&config.id)
    .execute(&ctx.pool)
    .await
    .map_err(|e| Error::catalog("record the continuous protection", &e))?;
    Ok(report)
}

/// Drops the slot Safehold made for a configuration whose setting is off, that is inactive or
/// deleted (the segments stay with the backups they continue); returns what was dropped. Called
/// by every change of a configuration (the app and the CLI) and by every step.
pub async fn settle(ctx: &Ctx, configuration_id: &str) -> Result<Option<String>> {
    let Some(r) = row(ctx, configuration_id).await? else { return Ok(None) };
    let wanted = match configurations::get(ctx, configuration_id).await {
        Ok(c) => c.continuous_protection && c.is_active && c.connection_id.as_deref() == Some(r.connection_id.as_str()) && c.storage_location == r.storage_location,
        Err(e) if e.code == crate::error::ErrorCode::NotFound => false,
        Err(e) => return Err(e),
    };
    if wanted {
        return Ok(None);
    }
    settle_row(ctx, &r).await.map(Some)
}

async fn settle_row(ctx: &Ctx, r: &ProtectionRow) -> Result<String> {
    let (spec, _) = crate::connections::source_of(ctx, &r.connection_id).await.map_err(|e| {
        Error::validation(format!(
            "the replication slot {} could not be dropped: its connection is gone ({}); drop it on the server: SELECT pg_drop_replication_slot('{}')",
            r.slot, e.message, r.slot
        ))
    })?;
    let SourceSpec::Postgres { url } = spec else { return Err(Error::validation("continuous protection follows PostgreSQL databases")) };
    let store = crate::storage::by_name_or_id(&ctx.pool, &r.storage_location).await?;
    let repo = match &store {
        Some(s) => Repository::open(&crate::storage::location(ctx, s).await?)?,
        None => None,
    };
    match &repo {
        Some(repo) => stop(repo, &url, &r.slot).await,
        None => {
            let mut conn = connect(&url).await?;
            pg_logical::drop(&mut conn, &r.slot, &r.slot).await
        }
    }
    .map_err(|e| Error::validation(format!("the replication slot {} could not be dropped ({}): it holds WAL on the server until it is; try again when the server answers", r.slot, e.message)))?;
    sqlx::query("DELETE FROM protections WHERE configuration_id = ?").bind(&r.configuration_id).execute(&ctx.pool).await.map_err(|e| Error::catalog("record the continuous protection", &e))?;
    crate::catalog::audit(&ctx.pool, &ctx.operator_id(), "backup.protect.stop", &r.slot, "success", None).await?;
    Ok(r.slot.clone())
}

/// A configuration's protection as the app and `protect status --config` show it: the catalog's
/// record and, when the server answers, the slot's lag and held WAL.
#[derive(Debug, Clone, Serialize)]
pub struct ConfiguredStatus {
    pub configuration_name: String,
    pub enabled: bool,
    pub record: Option<ProtectionRow>,
    pub live: Option<super::Status>,
    /// Why the live figures could not be read.
    pub live_error: Option<String>,
    pub warn_held_bytes: u64,
    pub max_held_bytes: u64,
}

pub async fn status_of(ctx: &Ctx, configuration_id: &str) -> Result<ConfiguredStatus> {
    crate::context::require(ctx, Permission::ViewStatus, "backup.protect.status", configuration_id).await?;
    let config = configurations::get(ctx, configuration_id).await?;
    let record = row(ctx, configuration_id).await?;
    let (warn, max) = limits(ctx).await?;
    let (mut live, mut live_error) = (None, None);
    if let Some(r) = &record {
        match target(ctx, &config, &r.connection_id, &r.storage_location).await {
            Ok(t) => match async { super::status(&t.repo()?, &t.url, &r.slot).await }.await {
                Ok(s) => live = Some(s),
                Err(e) => live_error = Some(e.message),
            },
            Err(e) => live_error = Some(e.message),
        }
    }
    Ok(ConfiguredStatus { configuration_name: config.configuration_name, enabled: config.continuous_protection && config.is_active, record, live, live_error, warn_held_bytes: warn, max_held_bytes: max })
}

/// Every configuration with the setting on (or with a slot left to drop), one step each, every
/// `every` until the process ends: what the app runs while it is open and `safehold schedule run`
/// on a server. Each step's outcome goes to `log`; warnings and drops also to `notices`.
pub async fn run_forever(ctx: Ctx, every: Duration, log: crate::scheduler::LogSink, notices: NoticeSink) {
    let mut streams = Streams::default();
    loop {
        let ids: Vec<String> = match sqlx::query_scalar("SELECT id FROM backup_configurations WHERE continuous_protection = 1 UNION SELECT configuration_id FROM protections")
            .fetch_all(&ctx.pool)
            .await
        {
            Ok(ids) => ids,
            Err(e) => {
                log(format!("continuous protection: cannot read the configurations: {e}"));
                Vec::new()
            }
        };
        for id in ids {
            match run_step_in(&ctx, &id, &notices, Some(&mut streams)).await {
                Ok(r) if r.action == "idle" => {}
                Ok(r) => log(format!("continuous protection of \"{}\": {}{}", r.configuration_name, r.action, r.segment.map(|s| format!(" ({} transactions into {s})", r.transactions)).unwrap_or_default())),
                Err(e) => log(format!("continuous protection failed: {}", e.message)),
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// A backup on a configuration's timeline.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct TimelineBackup {
    pub execution_id: String,
    pub started_at: String,
    pub backup_type: String,
    /// The base of a span of continuous protection.
    pub is_base: bool,
}

/// Seconds continuous protection can put back, from one base.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct TimelineSpan {
    pub from: String,
    pub until: String,
    pub base_id: String,
    /// Why it ended (a schema change, protection stopped); empty for the current one.
    pub ended_by: String,
}

/// What the Restore tab draws for a configuration: its backups as points, the continuously
/// covered spans as bars (gaps between them), and the recovery point.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct Timeline {
    pub configuration_id: String,
    pub configuration_name: String,
    pub continuous_protection: bool,
    /// starting | streaming | failed | dropped; `None`: not started.
    pub state: Option<String>,
    pub backups: Vec<TimelineBackup>,
    pub spans: Vec<TimelineSpan>,
    /// The latest second that can be put back.
    pub recovery_point: Option<String>,
    pub segments: u64,
    pub segment_bytes: u64,
    pub last_warning: Option<String>,
    pub last_error: Option<String>,
}

/// The repository of a configuration's storage, if it holds one.
async fn repository_of(ctx: &Ctx, config: &BackupConfiguration) -> Result<Option<Repository>> {
    match storage_dir(ctx, &config.storage_location).await {
        Ok(dir) => Repository::open(&dir),
        // A storage removed meanwhile has no repository to show.
        Err(e) if e.code == crate::error::ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn timeline(ctx: &Ctx, configuration_id: &str) -> Result<Timeline> {
    crate::context::require(ctx, Permission::ViewHistory, "backup.protect.timeline", configuration_id).await?;
    let config = configurations::get(ctx, configuration_id).await?;
    let record = row(ctx, configuration_id).await?;
    let execs = crate::history::kept_executions_of(ctx, configuration_id).await?;
    let (mut spans, mut segments, mut segment_bytes) = (Vec::new(), 0u64, 0u64);
    let mut bases = std::collections::BTreeSet::new();
    if let Some(repo) = repository_of(ctx, &config).await? {
        let slot = slot_name(&config.id);
        if let Ok(p) = super::protection(&repo, &slot) {
            let present: std::collections::BTreeSet<String> = repo.list()?.into_iter().map(|(_, h)| h.archive_id).collect();
            for s in super::spans(&p).into_iter().filter(|s| present.contains(&s.base_id)) {
                bases.insert(s.base_id.clone());
                spans.push(TimelineSpan { from: super::rfc3339_of(s.from_us), until: super::rfc3339_of(s.until_us), base_id: s.base_id, ended_by: s.ended_by });
            }
        }
        for (_, bytes) in super::segments_sized(&repo, &slot)? {
            segments += 1;
            segment_bytes += bytes;
        }
    }
    let archive_id = |e: &crate::history::BackupExecution| e.file_path.as_deref().and_then(|f| crate::archive::ArchiveReader::open(std::path::Path::new(f)).ok()).map(|r| r.header.archive_id);
    let backups = execs
        .iter()
        .map(|e| TimelineBackup { execution_id: e.id.clone(), started_at: e.started_at.clone(), backup_type: e.backup_type.clone(), is_base: archive_id(e).is_some_and(|a| bases.contains(&a)) })
        .collect();
    Ok(Timeline {
        configuration_id: config.id.clone(),
        configuration_name: config.configuration_name.clone(),
        continuous_protection: config.continuous_protection,
        state: record.as_ref().map(|r| r.state.clone()),
        recovery_point: spans.last().map(|s| s.until.clone()),
        backups,
        spans,
        segments,
        segment_bytes,
        last_warning: record.as_ref().and_then(|r| r.last_warning.clone()),
        last_error: record.as_ref().and_then(|r| r.last_error.clone()),
    })
}

/// A restore to a second asked for in the app: one tenant in place, or the whole database into a
/// new database on the connection's server.
#[derive(Debug, Clone, Deserialize, ts_rs::TS)]
pub struct SecondRequest {
    pub configuration_id: String,
    /// RFC 3339, e.g. 2026-12-04T14:31:59Z.
    pub at: String,
    /// Put this tenant back in place (the others keep what they did since).
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Or: the whole database as it was, into a new database of this name.
    #[serde(default)]
    pub into_database: Option<String>,
    /// The plan only: nothing is written.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct SecondOutcome {
    pub plan: super::AtPlan,
    /// A tenant's restore: what changed (or would change) per table.
    pub tables: Vec<crate::source::pg_apply::TableChange>,
    pub committed: bool,
    /// The database made (whole restores).
    pub database: Option<String>,
    /// The restore operation that records it (the Restore tab's list; none for a plan).
    pub operation_id: Option<String>,
}

/// Plans or runs a restore to a second of a configuration's continuous protection (the app's
/// Restore tab): the plan first (base, segments, changes), then one tenant in place or the whole
/// database into a new one. Checked against `restore_data` (dry runs too) and audited; `cancel`
/// stops it between the base's tables and between segments (nothing is left half-written: the
/// tenant's rows change in one transaction, and a database it made is dropped).
pub async fn restore_second(ctx: &Ctx, req: &SecondRequest, cancel: &crate::source::CancelToken) -> Result<SecondOutcome> {
    let operation = if req.dry_run { None } else { Some(record_second(ctx, req).await?) };
    restore_second_recorded(ctx, req, operation.as_deref(), cancel).await
}

/// What a restore to a second writes: one tenant in place, or a new database (its URL).
struct SecondTarget {
    url: String,
    tenant: Option<String>,
    database: Option<String>,
}

async fn second_target(ctx: &Ctx, req: &SecondRequest) -> Result<(SecondTarget, configurations::BackupConfiguration, crate::connections::Connection)> {
    let config = configurations::get(ctx, &req.configuration_id).await?;
    let connection_id = config.connection_id.clone().ok_or_else(|| Error::validation("the configuration names no connection"))?;
    let (spec, conn) = crate::connections::source_of(ctx, &connection_id).await?;
    let SourceSpec::Postgres { url } = spec else { return Err(Error::validation("continuous protection follows PostgreSQL databases")) };
    let tenant = req.tenant_id.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_string);
    let database = req.into_database.as_deref().map(str::trim).filter(|d| !d.is_empty()).map(str::to_string);
    let url = match (&tenant, &database) {
        (Some(_), None) => url,
        (None, Some(d)) => {
            if !pg_logical::valid_name(d) {
                return Err(Error::validation(format!("\"{d}\" is not a database name Safehold makes: lower-case letters, digits and _ (at most 63)")));
            }
            crate::source::postgres::database_url(&url, d)?
        }
        _ => return Err(Error::validation("choose what to put back: one tenant (in place), or the whole database into a new database")),
    };
    Ok((SecondTarget { url, tenant, database }, config, conn))
}

/// Records a restore to a second (not a plan) as a pending restore operation, so that the Restore
/// tab's list shows it with its progress and end like any other restore; returns its id. Checked
/// against `restore_data`.
pub async fn record_second(ctx: &Ctx, req: &SecondRequest) -> Result<String> {
    crate::context::require(ctx, Permission::RestoreData, "restore.at", &req.configuration_id).await?;
    let (target, config, _) = second_target(ctx, req).await?;
    let repo = repository_of(ctx, &config).await?.ok_or_else(|| Error::not_found(format!("\"{}\" has no change segments in its storage", config.configuration_name)))?;
    let mut record = crate::restore::RestoreRequest::new(repo.dir.clone(), target.url.clone());
    record.restore_type = if target.tenant.is_some() { crate::restore::RestoreType::TenantOnly } else { crate::restore::RestoreType::Full };
    record.tenant_id = target.tenant.clone();
    record.at = Some(req.at.clone());
    record.create = target.database.is_some();
    crate::restore::records::insert(ctx, &record, None).await
}

/// [`restore_second`] of an operation [`record_second`] recorded (`None`: a plan, or nothing
/// recorded): its progress and end go on that record.
pub async fn restore_second_recorded(ctx: &Ctx, req: &SecondRequest, operation: Option<&str>, cancel: &crate::source::CancelToken) -> Result<SecondOutcome> {
    let prepared = async {
        crate::context::require(ctx, Permission::RestoreData, "restore.at", &req.configuration_id).await?;
        let (target, config, conn) = second_target(ctx, req).await?;
        let repo = repository_of(ctx, &config).await?.ok_or_else(|| Error::not_found(format!("\"{}\" has no change segments in its storage", config.configuration_name)))?;
        let keys = crate::keys::custody::key_sources(ctx).await?;
        let plan = super::plan_at(&repo, &keys, &slot_name(&config.id), &req.at).await?;
        Ok::<_, Error>((target, config, conn, repo, keys, plan))
    }
    .await;
    let (target, config, conn, repo, keys, plan) = match prepared {
        Ok(p) => p,
        Err(e) => {
            // A recorded restore that could not start says why on its record.
            if let Some(id) = operation {
                crate::restore::records::not_started(ctx, id, &e).await?;
            }
            return Err(e);
        }
    };
    let slot = slot_name(&config.id);
    let write = !req.dry_run;
    let work = async |progress: crate::source::ProgressSink| -> Result<SecondOutcome> {
        match (&target.tenant, &target.database) {
            (Some(t), _) => {
                let ts = crate::source::pg_apply::TenantScope { tenant_id: t.clone(), tenant_column: conn.tenant_column.clone(), tenants_table: conn.tenants_table.clone(), references: Vec::new() };
                let scope = super::AtScope::Scope(crate::source::pg_apply::Scope::Tenant(ts));
                let applied = super::restore_scope_at(&repo, &keys, &slot, &req.at, &target.url, &scope, write, cancel, &progress).await?;
                Ok(SecondOutcome { plan: plan.clone(), tables: applied.tables, committed: write, database: None, operation_id: operation.map(str::to_string) })
            }
            (None, database) => {
                if write {
                    crate::source::postgres::create_database(&target.url).await?;
                    if let Err(e) = super::restore_at(&repo, &keys, &slot, &req.at, &target.url, cancel, &progress).await {
                        // All or nothing: the half-made database goes.
                        let _ = crate::source::postgres::drop_database(&target.url).await;
                        return Err(e);
                    }
                }
                Ok(SecondOutcome { plan: plan.clone(), tables: Vec::new(), committed: write, database: database.clone(), operation_id: operation.map(str::to_string) })
            }
        }
    };
    let out = match operation {
        None => work(crate::source::no_progress()).await?,
        Some(id) => {
            let shown = crate::source::redact(&target.url);
            let job = crate::context::Job::<crate::restore::records::RestoreRun>::start(ctx, id, ctx.operator_id(), shown, None).await?;
            let result = work(job.progress()).await;
            let completed = async |out: &SecondOutcome| -> Result<String> {
                crate::restore::records::completed_at_second(ctx, id, &out.tables).await?;
                Ok(format!("to {}", req.at))
            };
            let rows = |out: &SecondOutcome| crate::context::Counts { tables: out.tables.len() as u64, rows: out.tables.iter().map(|t| t.inserted + t.updated + t.deleted).sum() };
            job.end(result, completed, rows).await??
        }
    };
    if write {
        let details = format!("to {}: {}", req.at, target.tenant.as_ref().map(|t| format!("tenant {t} in place")).or(target.database.as_ref().map(|d| format!("the database into {d}"))).unwrap_or_default());
        crate::catalog::audit(&ctx.pool, &ctx.operator_id(), "restore.at", &config.configuration_name, "success", Some(&details)).await?;
    }
    Ok(out)
}
