//! Restores run from the catalog (the app, and the CLI when it has a catalog): a form naming a
//! recorded backup and a target connection turned into a restore request, planned, then run and
//! recorded as a `restore_operations` row going pending → running → completed | failed |
//! cancelled, with its progress, the rows restored per table, the safety backup taken before it
//! (itself a `backup_executions` row) and any error.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::json;
use ts_rs::TS;

use crate::backup::BackupOutcome;
use crate::catalog::{audit, now};
use crate::context::{Counts, Ctx, Job};
use crate::error::{Error, Result};
use crate::jobs::JobStatus;
use crate::history::{self, RestoreOperation};
use crate::restore::{self, RestoreOutcome, RestorePlan, RestoreRequest, RestoreType};
use crate::source::{CancelToken, Progress, ProgressSink};
use crate::keys::unlock::KeySources;

/// What the Restore tab asks for.
#[derive(Debug, Clone, Serialize, Deserialize, TS, Default)]
pub struct RestoreForm {
    /// The recorded backup to restore (a completed backup execution).
    pub backup_execution_id: String,
    /// The connection to restore into.
    pub connection_id: String,
    /// Instead of a connection: a new SQLite file (an absolute path, chosen in a save dialog)
    /// that a SQLite backup is restored into whole.
    #[serde(default)]
    #[ts(optional)]
    pub target_file: Option<String>,
    pub restore_type: RestoreType,
    #[serde(default)]
    pub tables: Vec<String>,
    #[serde(default)]
    pub exclude_tables: Vec<String>,
    pub tenant_id: Option<String>,
    /// `false` restores the tenant as a copy under a new tenant id.
    pub preserve_ids: bool,
    pub new_tenant_id: Option<String>,
    pub new_tenant_name: Option<String>,
    /// A tenant restored as a copy: what to do with a row equal to one the target has on a
    /// unique value (a slug, a name), for every table; none given: stop and name them.
    #[serde(default)]
    #[ts(optional)]
    pub on_conflict: Option<crate::migrate::Resolution>,
    /// RFC 3339: restore, from the same repository and source, the newest backup at or before it.
    pub restore_point: Option<String>,
    /// Take a safety backup before a destructive restore.
    pub safety_backup: bool,
    /// Replace the target's objects (full restore into a database that is not empty).
    pub clean: bool,
    /// Full restore into PostgreSQL: leave out what the target cannot hold, as the plan names
    /// it (otherwise such a plan is refused).
    #[serde(default)]
    #[ts(optional)]
    pub skip_unsupported: Option<bool>,
    /// Full restore into PostgreSQL: objects owned and granted as in the source.
    #[serde(default)]
    #[ts(optional)]
    pub owners_and_privileges: Option<bool>,
}

/// Turns a form into a request (the target's URL, with its password, stays in memory).
pub async fn resolve(ctx: &Ctx, form: &RestoreForm) -> Result<RestoreRequest> {
    let exec = history::execution(ctx, &form.backup_execution_id).await.map_err(|e| match e.code {
        crate::ErrorCode::NotFound => Error::not_found("choose a backup to restore: the one selected is not in the catalog any more"),
        _ => e,
    })?;
    let file = exec
        .file_path
        .clone()
        .filter(|_| exec.status == history::JobStatus::Completed)
        .ok_or_else(|| Error::validation("the selected backup did not complete: choose a completed backup"))?;
    if let Some(when) = &exec.deleted_at {
        return Err(Error::validation(format!("the selected backup was deleted by retention on {when}: choose another backup")));
    }
    // Either copy restores: when the first is unreadable, the second copy is used.
    let file = if crate::archive::ArchiveReader::open(std::path::Path::new(&file)).is_ok() {
        file
    } else {
        crate::copies::of(ctx, &exec.id)
            .await?
            .into_iter()
            .filter(|c| c.status == "completed")
            .filter_map(|c| c.file_path)
            .find(|p| crate::archive::ArchiveReader::open(std::path::Path::new(p)).is_ok())
            .ok_or_else(|| Error::not_found(format!("the backup's archive {file} cannot be read and it has no readable second copy")))?
    };
    if let Some(databases) = exec.metadata.get("databases").and_then(|d| d.as_array()).filter(|_| !exec.server_members().is_empty()) {
        let names: Vec<&str> = databases.iter().filter_map(|d| d.get("database").and_then(|n| n.as_str())).collect();
        let repo = std::path::Path::new(&file).parent().and_then(|p| p.parent()).map(|p| p.display().to_string()).unwrap_or_default();
        return Err(Error::validation(format!(
            "this is a server backup ({} databases: {}): put it onto a server with `safehold restore --from {repo} --server --backup {} --target postgres://…/` (a plan first; --database NAME for one database)",
            names.len(),
            names.join(", "),
            exec.metadata.get("archive_id").and_then(|a| a.as_str()).map(|a| &a[..a.len().min(8)]).unwrap_or_default()
        )));
    }
    let (target, conn) = match form.target_file.as_deref().map(str::trim) {
        Some("") => return Err(Error::validation("choose the new SQLite file to restore into")),
        Some(new_file) => {
            let path = PathBuf::from(new_file);
            if !path.is_absolute() {
                return Err(Error::validation(format!("the new SQLite file {new_file} must be an absolute path")));
            }
            if form.restore_type != RestoreType::Full {
                return Err(Error::validation("a restore into a new SQLite file restores the whole backup: choose the Full restore type"));
            }
            (crate::source::SourceSpec::Sqlite { path }, None)
        }
        None if form.connection_id.is_empty() => return Err(Error::validation("choose the connection to restore into (or a new SQLite file)")),
        None => {
            let (target, conn) = crate::connections::source_of(ctx, &form.connection_id).await?;
            (target, Some(conn))
        }
    };
    let mut req = RestoreRequest::new(PathBuf::from(&file), target_url(&target));
    req.restore_type = form.restore_type;
    req.tables = form.tables.clone();
    req.exclude_tables = form.exclude_tables.clone();
    req.tenant_id = form.tenant_id.clone().filter(|t| !t.trim().is_empty());
    req.preserve_ids = form.preserve_ids;
    req.new_tenant_id = form.new_tenant_id.clone().filter(|t| !t.trim().is_empty());
    req.new_tenant_name = form.new_tenant_name.clone().filter(|t| !t.trim().is_empty());
    if let Some(rule) = form.on_conflict.filter(|_| !form.preserve_ids) {
        req.on_conflict.insert("*".into(), rule);
    }
    req.safety_backup = form.safety_backup;
    req.clean = form.clean;
    req.skip_unsupported = form.skip_unsupported.unwrap_or(false);
    req.owners = form.owners_and_privileges.unwrap_or(false);
    req.privileges = req.owners;
    if let Some(conn) = &conn {
        req.tenant_column = conn.tenant_column.clone();
        req.tenants_table = conn.tenants_table.clone();
        req.references = conn.references.clone();
    }
    if let Some(at) = form.restore_point.clone().filter(|t| !t.trim().is_empty()) {
        // The newest backup of the same source and repository at or before the point.
        let archive = PathBuf::from(&file);
        let repo_dir = archive.parent().and_then(|p| p.parent()).map(PathBuf::from).ok_or_else(|| Error::validation("the backup is not in a repository"))?;
        let header = crate::archive::ArchiveReader::open(&archive)?.header;
        req.from = repo_dir;
        req.at = Some(at);
        req.source_name = Some(header.source_name);
    }
    Ok(req)
}

fn target_url(spec: &crate::source::SourceSpec) -> String {
    match spec {
        crate::source::SourceSpec::Postgres { url } => url.clone(),
        crate::source::SourceSpec::Sqlite { path } => format!("sqlite://{}", path.display()),
    }
}

async fn keys(ctx: &Ctx) -> Result<KeySources> {
    crate::keys::custody::key_sources(ctx).await
}

/// Plans a restore from the app: an exact plan (a rolled-back dry run for selective and tenant
/// restores).
pub async fn plan(ctx: &Ctx, form: &RestoreForm) -> Result<RestorePlan> {
    crate::context::require(ctx, crate::context::Permission::RestoreData, "restore.plan", &form.backup_execution_id).await?;
    let req = resolve(ctx, form).await?;
    let opened = restore::open(&req, &keys(ctx).await?).await?;
    restore::plan(&req, &opened, true, &CancelToken::new()).await
}

/// Records a pending restore; returns its id.
pub async fn insert(ctx: &Ctx, req: &RestoreRequest, backup_execution_id: Option<&str>) -> Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    let target = crate::source::SourceSpec::parse(&req.target)?.display();
    sqlx::query(
        "INSERT INTO restore_operations (id, backup_execution_id, restore_type, target_tenant_id, restore_point, status, progress_percentage, \
         tables_to_restore, exclude_tables, preserve_ids, started_at, initiated_by, target, source_archive, runner) \
         VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(backup_execution_id)
    .bind(req.restore_type.as_str())
    .bind(&req.tenant_id)
    .bind(&req.at)
    .bind((!req.tables.is_empty()).then(|| json!(req.tables).to_string()))
    .bind((!req.exclude_tables.is_empty()).then(|| json!(req.exclude_tables).to_string()))
    .bind(req.preserve_ids)
    .bind(now())
    .bind(ctx.operator_id())
    .bind(&target)
    .bind(req.from.display().to_string())
    .bind(crate::lease::runner(&ctx.home)?)
    .execute(&ctx.pool)
    .await
    .map_err(|e| Error::catalog("record the restore", &e))?;
    Ok(id)
}

/// Records a pending restore of a form (the app): returns its id and the request to run.
pub async fn start(ctx: &Ctx, form: &RestoreForm) -> Result<(String, RestoreRequest)> {
    crate::context::require(ctx, crate::context::Permission::RestoreData, "restore.start", &form.backup_execution_id).await?;
    let req = resolve(ctx, form).await?;
    let id = insert(ctx, &req, Some(&form.backup_execution_id)).await?;
    Ok((id, req))
}

/// A restore's record (see [`crate::context::Job`]).
pub(crate) struct RestoreRun;

impl crate::context::JobRecord for RestoreRun {
    const KIND: crate::jobs::JobKind = crate::jobs::JobKind::Restore;
    const ACTION: &'static str = "restore.run";

    async fn running(ctx: &Ctx, id: &str) -> Result<()> {
        sqlx::query("UPDATE restore_operations SET status = 'running', started_at = ?, runner = ? WHERE id = ?")
            .bind(now())
            .bind(crate::lease::runner(&ctx.home)?)
            .bind(id)
            .execute(&ctx.pool)
            .await
            .map_err(|e| Error::catalog("start the restore", &e))?;
        Ok(())
    }

    async fn progress(ctx: &Ctx, id: &str, p: &Progress) {
        let pct = (p.tables_done * 100).checked_div(p.tables_total).unwrap_or(0).min(99);
        let _ = sqlx::query("UPDATE restore_operations SET progress_percentage = ?, current_table = ? WHERE id = ?")
            .bind(i64::try_from(pct).unwrap_or(0))
            .bind(&p.table)
            .bind(id)
            .execute(&ctx.pool)
            .await;
    }

    async fn ended(ctx: &Ctx, id: &str, status: JobStatus, message: &str) -> Result<()> {
        sqlx::query("UPDATE restore_operations SET status = ?, completed_at = ?, error_message = ?, current_table = NULL WHERE id = ?")
            .bind(status.as_str())
            .bind(now())
            .bind(message)
            .bind(id)
            .execute(&ctx.pool)
            .await
            .map_err(|e| Error::catalog("record the failed restore", &e))?;
        Ok(())
    }
}

/// Records a safety backup as a backup execution (restorable like any other).
async fn record_safety_backup(ctx: &Ctx, restore_id: &str, b: &BackupOutcome) -> Result<String> {
    let i = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    crate::backup::records::insert_completed(
        ctx,
        crate::backup::records::Completed {
            backup_type: "full",
            started_at: &b.snapshot_time,
            completed_at: &now(),
            file_path: &b.archive,
            file_size: Some(i(b.raw_bytes)),
            compressed_size: i(b.bytes),
            counts: Some((i(b.tenant_count), i(b.tables), i(b.rows))),
            checksum: &b.sha256,
            metadata: json!({ "archive_id": b.id, "snapshot_time": b.snapshot_time, "safety_for_restore": restore_id, "seconds": b.seconds }),
        },
    )
    .await
}

/// Runs a recorded restore to its end and records the outcome (through the one job lifecycle,
/// [`Job`]).
pub async fn run(ctx: &Ctx, id: &str, req: &RestoreRequest, keys: &KeySources, opened: Option<restore::Opened>, cancel: &CancelToken, progress: Option<ProgressSink>) -> Result<RestoreOutcome> {
    let target = crate::source::SourceSpec::parse(&req.target).map(|s| s.display()).unwrap_or_default();
    let by = crate::history::initiated_by(ctx, "restore_operations", id).await;
    let job = Job::<RestoreRun>::start(ctx, id, by, target, progress).await?;
    let sink = job.progress();
    let result = async {
        let opened = match opened {
            Some(o) => o,
            None => restore::open(req, keys).await?,
        };
        restore::execute(req, opened, keys, cancel, &sink).await
    }
    .await;
    drop(sink);
    let completed = async |out: &RestoreOutcome| -> Result<String> {
        let safety = match &out.safety_backup {
            Some(b) => Some(record_safety_backup(ctx, id, b).await?),
            None => None,
        };
        let records = if out.changes.is_empty() { json!({ "rows": out.rows, "tables": out.tables }) } else { per_table(&out.changes) };
        sqlx::query(
            "UPDATE restore_operations SET status = 'completed', completed_at = ?, progress_percentage = 100, current_table = NULL, \
             restored_records = ?, safety_backup_id = ?, new_tenant_id = ?, restore_point = coalesce(restore_point, ?) WHERE id = ?",
        )
        .bind(now())
        .bind(records.to_string())
        .bind(&safety)
        .bind(&out.new_tenant_id)
        .bind(out.point_in_time.as_ref().map(|p| p.requested.clone()))
        .bind(id)
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("record the finished restore", &e))?;
        Ok(format!("{} of backup {}", req.restore_type.as_str(), out.archive_id))
    };
    job.end(result, completed, |out| Counts { tables: 0, rows: out.rows }).await?
}

/// What a restore changed, per table, as its record keeps it (`restored_records`).
fn per_table(changes: &[crate::source::pg_apply::TableChange]) -> serde_json::Value {
    changes.iter().map(|c| (c.table.clone(), json!({ "rows": c.rows_in_backup, "inserted": c.inserted, "updated": c.updated, "deleted": c.deleted }))).collect::<serde_json::Map<_, _>>().into()
}

/// A restore to a second (continuous protection) recorded as completed, with what it changed
/// per table.
pub(crate) async fn completed_at_second(ctx: &Ctx, id: &str, changes: &[crate::source::pg_apply::TableChange]) -> Result<()> {
    let records = per_table(changes);
    sqlx::query("UPDATE restore_operations SET status = 'completed', completed_at = ?, progress_percentage = 100, current_table = NULL, restored_records = ? WHERE id = ?")
        .bind(now())
        .bind(records.to_string())
        .bind(id)
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("record the finished restore", &e))?;
    Ok(())
}

/// One restore operation by id.
pub async fn get(ctx: &Ctx, id: &str) -> Result<RestoreOperation> {
    history::restore(ctx, id).await
}

/// "Verify by restoring" from the app: the backup restored into a scratch database on its
/// source's server (created and dropped), every table compared with the archive and with the
/// live source.
pub async fn verify_by_restoring(ctx: &Ctx, backup_execution_id: &str, cancel: &CancelToken) -> Result<crate::restore::RestoreTestReport> {
    crate::context::require(ctx, crate::context::Permission::RestoreData, "backup.verify_restore", backup_execution_id).await?;
    let exec = history::execution(ctx, backup_execution_id).await.map_err(|e| match e.code {
        crate::ErrorCode::NotFound => Error::not_found("the selected backup is not in the catalog any more"),
        _ => e,
    })?;
    let file = exec.file_path.clone().filter(|_| exec.status == history::JobStatus::Completed).ok_or_else(|| Error::validation("choose a completed backup"))?;
    let config_id = exec.configuration_id.clone().ok_or_else(|| Error::validation("this backup belongs to no configuration, so its source server is unknown; test it with safehold verify --restore-test --scratch URL"))?;
    let config = crate::configurations::get(ctx, &config_id).await?;
    let connection_id = config.connection_id.ok_or_else(|| Error::validation("the backup's configuration names no connection"))?;
    let (source, _) = crate::connections::source_of(ctx, &connection_id).await?;
    let crate::source::SourceSpec::Postgres { url } = source else {
        return Err(Error::validation("verifying by restoring needs a PostgreSQL backup; SQLite backups are checked with a deep verify"));
    };
    let req = RestoreRequest::new(PathBuf::from(&file), String::new());
    let opened = restore::open(&req, &keys(ctx).await?).await?;
    // Cancelled or failed, the scratch database is dropped: nothing is left behind.
    let report = crate::restore::restore_test(&opened, &url, Some(&url), cancel, &crate::source::no_progress()).await;
    let outcome = match &report {
        Ok(r) if r.ok => "success",
        _ => "failure",
    };
    audit(&ctx.pool, &ctx.operator_id(), "backup.verify_restore", &file, outcome, report.as_ref().err().map(|e| e.message.as_str())).await?;
    report
}

/// A queued restore cancelled before it started.
pub(crate) async fn cancel_queued(ctx: &Ctx, id: &str) -> Result<()> {
    sqlx::query("UPDATE restore_operations SET status = 'cancelled', completed_at = ?, error_message = 'cancelled while queued; nothing was changed' WHERE id = ? AND status = 'pending'")
        .bind(now())
        .bind(id)
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("record the cancelled restore", &e))?;
    Ok(())
}

/// A recorded restore that never started (refused, or cancelled while it waited for a slot):
/// its record ends with why. Only a pending record changes.
pub async fn not_started(ctx: &Ctx, id: &str, why: &Error) -> Result<()> {
    let status = if why.code == crate::ErrorCode::Cancelled { "cancelled" } else { "failed" };
    sqlx::query("UPDATE restore_operations SET status = ?, completed_at = ?, error_message = ? WHERE id = ? AND status = 'pending'")
        .bind(status)
        .bind(now())
        .bind(&why.message)
        .bind(id)
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("record the restore that did not start", &e))?;
    Ok(())
}

/// Marks the restores a dead process left pending or running as failed, saying why.
pub(crate) async fn interrupt_dead(ctx: &Ctx) -> Result<u64> {
    crate::history::interrupt_dead(
        ctx,
        "restore_operations",
        "interrupted: Safehold stopped during this restore; an existing database rolled its transaction back, and a new one (--create) was being built under a temporary name, never the target's (the next restore into that server removes it): run the restore again",
    )
    .await
}
