//! The records the dashboard shows: backup executions, restore operations and migration jobs,
//! newest first.

use serde::Serialize;
use ts_rs::TS;

use sqlx::AssertSqlSafe;

use crate::context::Ctx;
use crate::error::{Error, Result};

pub use crate::jobs::JobStatus;

#[derive(Debug, Clone, Serialize, TS, sqlx::FromRow)]
pub struct BackupExecution {
    pub id: String,
    pub configuration_id: Option<String>,
    pub configuration_name: Option<String>,
    pub backup_type: String,
    pub status: JobStatus,
    pub started_at: String,
    pub completed_at: Option<String>,
    pub file_path: Option<String>,
    pub file_size: Option<i64>,
    pub compressed_size: Option<i64>,
    pub tenant_count: Option<i64>,
    pub table_count: Option<i64>,
    pub record_count: Option<i64>,
    pub checksum: Option<String>,
    pub error_message: Option<String>,
    #[sqlx(json)]
    pub metadata: serde_json::Value,
    /// When retention deleted the archive (the row stays in the history).
    pub deleted_at: Option<String>,
    /// Who started it (an operator's name; Safehold's own scheduler for scheduled runs).
    pub initiated_by: Option<String>,
    /// The newest copy on the configuration's second storage, if any.
    #[sqlx(json(nullable))]
    pub second_copy: Option<SecondCopy>,
}

impl BackupExecution {
    /// The archives of a server backup's databases, as its record keeps them (none for a backup
    /// of one database).
    pub fn server_members(&self) -> Vec<String> {
        self.metadata.get("members").and_then(|m| m.as_array()).map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default()
    }
}

/// A backup's copy on a second storage, as the history shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, TS)]
pub struct SecondCopy {
    pub storage_name: String,
    /// completed | failed
    pub status: String,
    pub file_path: Option<String>,
    pub error_message: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, TS, sqlx::FromRow)]
pub struct RestoreOperation {
    pub id: String,
    pub backup_execution_id: Option<String>,
    pub restore_type: String,
    pub target_tenant_id: Option<String>,
    pub restore_point: Option<String>,
    pub status: JobStatus,
    pub progress_percentage: i64,
    #[sqlx(json(nullable))]
    pub tables_to_restore: Option<Vec<String>>,
    #[sqlx(json(nullable))]
    pub exclude_tables: Option<Vec<String>>,
    pub preserve_ids: bool,
    pub started_at: String,
    pub completed_at: Option<String>,
    /// Who asked for it: the operator's name.
    pub initiated_by: String,
    pub error_message: Option<String>,
    #[sqlx(json)]
    pub restored_records: serde_json::Value,
    /// Where it restored to (no password).
    pub target: Option<String>,
    pub source_archive: Option<String>,
    /// The backup taken of what the restore replaced (a backup execution's id).
    pub safety_backup_id: Option<String>,
    pub new_tenant_id: Option<String>,
    pub current_table: Option<String>,
}

#[derive(Debug, Clone, Serialize, TS, sqlx::FromRow)]
pub struct MigrationJob {
    pub id: String,
    pub migration_name: String,
    pub migration_type: String,
    pub source_tenant_id: Option<String>,
    pub target_tenant_id: Option<String>,
    pub source_file_path: Option<String>,
    pub target_file_path: Option<String>,
    pub status: JobStatus,
    pub progress_percentage: i64,
    pub records_processed: i64,
    pub records_total: i64,
    pub started_at: String,
    pub completed_at: Option<String>,
    pub initiated_by: String,
    pub error_message: Option<String>,
}

/// The newest `limit` backup executions, with their configuration's name.
pub async fn executions(ctx: &Ctx, limit: i64) -> Result<Vec<BackupExecution>> {
    executions_with(ctx, limit, None).await
}

/// A backup execution row with its configuration's name, who started it and its latest second copy.
const EXECUTIONS: &str = "SELECT e.id, e.configuration_id, c.configuration_name, e.backup_type, e.status, \
         coalesce(e.started_at, '') AS started_at, e.completed_at, e.file_path, e.file_size, e.compressed_size, \
         e.tenant_count, e.table_count, e.record_count, e.checksum, e.error_message, coalesce(e.metadata, '{}') AS metadata, e.deleted_at, \
         o.name AS initiated_by, \
         (SELECT json_object('storage_name', k.storage_name, 'status', k.status, 'file_path', k.file_path, 'error_message', k.error_message, 'created_at', k.created_at) \
            FROM backup_copies k WHERE k.backup_execution_id = e.id ORDER BY k.created_at DESC LIMIT 1) AS second_copy \
         FROM backup_executions e LEFT JOIN backup_configurations c ON c.id = e.configuration_id LEFT JOIN operators o ON o.id = e.initiated_by ";

/// The newest `limit` backup executions with the given status (all when `None`).
pub async fn executions_with(ctx: &Ctx, limit: i64, status: Option<JobStatus>) -> Result<Vec<BackupExecution>> {
    executions_page(ctx, limit, 0, status).await
}

/// Backup executions, newest first, of one status or all: `limit` of them after skipping the
/// `offset` newest (a page).
pub async fn executions_page(ctx: &Ctx, limit: i64, offset: i64, status: Option<JobStatus>) -> Result<Vec<BackupExecution>> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "history.executions", "backups").await?;
    sqlx::query_as(
        AssertSqlSafe(format!("{EXECUTIONS} WHERE ?1 IS NULL OR e.status = ?1 ORDER BY e.started_at DESC, e.id LIMIT ?2 OFFSET ?3")),
    )
    .bind(status)
    .bind(limit)
    .bind(offset.max(0))
    .fetch_all(&ctx.pool)
    .await
    .map_err(|e| Error::catalog("list the backup executions", &e))
}

/// One backup execution by its id (a key lookup, however long the history).
pub async fn execution(ctx: &Ctx, id: &str) -> Result<BackupExecution> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "history.executions", id).await?;
    sqlx::query_as(AssertSqlSafe(format!("{EXECUTIONS} WHERE e.id = ?")))
        .bind(id)
        .fetch_optional(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("read a backup execution", &e))?
        .ok_or_else(|| Error::not_found(format!("no backup has the id {id} in the catalog")))
}

/// The completed backups of a configuration whose archives are still there, newest first.
pub async fn kept_executions_of(ctx: &Ctx, configuration_id: &str) -> Result<Vec<BackupExecution>> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "history.executions", configuration_id).await?;
    sqlx::query_as(AssertSqlSafe(format!("{EXECUTIONS} WHERE e.configuration_id = ? AND e.status = 'completed' AND e.deleted_at IS NULL ORDER BY e.started_at DESC")))
        .bind(configuration_id)
        .fetch_all(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("list a configuration's backups", &e))
}

/// The safety backups (taken before restores, of no configuration) that are still kept, newest first.
pub async fn kept_safety_executions(ctx: &Ctx) -> Result<Vec<BackupExecution>> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "history.executions", "safety backups").await?;
    sqlx::query_as(AssertSqlSafe(format!(
        "{EXECUTIONS} WHERE e.configuration_id IS NULL AND json_extract(e.metadata, '$.safety_for_restore') IS NOT NULL \
         AND e.status = 'completed' AND e.deleted_at IS NULL ORDER BY e.started_at DESC"
    )))
    .fetch_all(&ctx.pool)
    .await
    .map_err(|e| Error::catalog("list the safety backups", &e))
}

/// A restore operation row with the name of who started it.
const RESTORES: &str = "SELECT r.id, r.backup_execution_id, r.restore_type, r.target_tenant_id, r.restore_point, r.status, \
         coalesce(r.progress_percentage, 0) AS progress_percentage, r.tables_to_restore, r.exclude_tables, \
         coalesce(r.preserve_ids, 0) AS preserve_ids, coalesce(r.started_at, '') AS started_at, r.completed_at, \
         coalesce(o.name, r.initiated_by) AS initiated_by, \
         r.error_message, coalesce(r.restored_records, '{}') AS restored_records, r.target, r.source_archive, r.safety_backup_id, \
         r.new_tenant_id, r.current_table FROM restore_operations r LEFT JOIN operators o ON o.id = r.initiated_by";

/// Restore operations, newest first: `limit` of them after skipping the `offset` newest (a page).
pub async fn restores(ctx: &Ctx, limit: i64, offset: i64) -> Result<Vec<RestoreOperation>> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "history.restores", "restores").await?;
    sqlx::query_as(
        AssertSqlSafe(format!("{RESTORES} ORDER BY r.started_at DESC, r.id LIMIT ? OFFSET ?")),
    )
    .bind(limit)
    .bind(offset.max(0))
    .fetch_all(&ctx.pool)
    .await
    .map_err(|e| Error::catalog("list the restore operations", &e))
}

/// One restore operation by its id.
pub async fn restore(ctx: &Ctx, id: &str) -> Result<RestoreOperation> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "history.restores", id).await?;
    sqlx::query_as(AssertSqlSafe(format!("{RESTORES} WHERE r.id = ?")))
        .bind(id)
        .fetch_optional(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("read a restore operation", &e))?
        .ok_or_else(|| Error::not_found(format!("no restore {id}")))
}

pub async fn migrations(ctx: &Ctx, limit: i64) -> Result<Vec<MigrationJob>> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "history.migrations", "migrations").await?;
    sqlx::query_as(
        "SELECT id, migration_name, migration_type, source_tenant_id, target_tenant_id, source_file_path, \
         target_file_path, status, coalesce(progress_percentage, 0) AS progress_percentage, \
         coalesce(records_processed, 0) AS records_processed, coalesce(records_total, 0) AS records_total, \
         coalesce(started_at, '') AS started_at, completed_at, initiated_by, error_message \
         FROM migration_jobs ORDER BY started_at DESC LIMIT ?",
    )
    .bind(limit)
    .fetch_all(&ctx.pool)
    .await
    .map_err(|e| Error::catalog("list the migration jobs", &e))
}

/// Who asked for a recorded job (the runner carries it out as itself); the acting operator when
/// the row names nobody.
pub(crate) async fn initiated_by(ctx: &Ctx, table: &str, id: &str) -> String {
    let by: Option<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT initiated_by FROM {table} WHERE id = ?")))
        .bind(id)
        .fetch_optional(&ctx.pool)
        .await
        .ok()
        .flatten();
    by.flatten().unwrap_or_else(|| ctx.operator_id())
}

/// For a record module: marks the jobs of `table` that a dead process left pending or running
/// (its lease gone) as failed with `message`; returns how many. Only the module that owns
/// `table` calls it.
pub(crate) async fn interrupt_dead(ctx: &Ctx, table: &str, message: &str) -> Result<u64> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(AssertSqlSafe(format!("SELECT id, runner FROM {table} WHERE status IN ('running', 'pending')")))
        .fetch_all(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("read the jobs", &e))?;
    let mut n = 0;
    for (id, _) in rows.into_iter().filter(|(_, runner)| !crate::lease::alive(&ctx.home, runner.as_deref())) {
        n += sqlx::query(AssertSqlSafe(format!("UPDATE {table} SET status = 'failed', completed_at = ?, error_message = ? WHERE id = ? AND status IN ('running', 'pending')")))
            .bind(crate::catalog::now())
            .bind(message)
            .bind(&id)
            .execute(&ctx.pool)
            .await
            .map_err(|e| Error::catalog("record an interrupted job", &e))?
            .rows_affected();
    }
    Ok(n)
}
