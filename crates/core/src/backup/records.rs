//! The catalog rows of backups (`backup_executions`): this module is the table's only writer
//! (`tests/engine/shape.rs` keeps it so). A run goes pending → running → completed | failed |
//! cancelled ([`crate::runs`] drives it); safety backups, backups found by a catalog rebuild,
//! checks, retention's deletions and skipped runs are recorded here too.

use serde_json::json;

use super::BackupOutcome;
use crate::catalog::now;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::jobs::Progress;

/// Records a pending run of a configuration, by the acting operator; returns its id.
pub(crate) async fn insert_pending(ctx: &Ctx, configuration_id: &str, backup_type: &str) -> Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query("INSERT INTO backup_executions (id, configuration_id, backup_type, status, started_at, initiated_by, runner) VALUES (?, ?, ?, 'pending', ?, ?, ?)")
        .bind(&id)
        .bind(configuration_id)
        .bind(backup_type)
        .bind(now())
        .bind(ctx.operator_id())
        .bind(crate::lease::runner(&ctx.home)?)
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("record the backup", &e))?;
    Ok(id)
}

/// A backup run's record (see [`crate::context::Job`]).
pub(crate) struct BackupRun;

impl crate::context::JobRecord for BackupRun {
    const KIND: crate::jobs::JobKind = crate::jobs::JobKind::Backup;
    const ACTION: &'static str = "backup.run";

    /// The run starts, under this process's lease.
    async fn running(ctx: &Ctx, id: &str) -> Result<()> {
        sqlx::query("UPDATE backup_executions SET status = 'running', started_at = ?, runner = ? WHERE id = ?")
            .bind(now())
            .bind(crate::lease::runner(&ctx.home)?)
            .bind(id)
            .execute(&ctx.pool)
            .await
            .map_err(|e| Error::catalog("start the backup", &e))?;
        Ok(())
    }

    /// Where a running backup is (the current table and counts), on its row.
    async fn progress(ctx: &Ctx, id: &str, p: &Progress) {
        let _ = sqlx::query("UPDATE backup_executions SET metadata = json_set(coalesce(metadata, '{}'), '$.progress', json(?)) WHERE id = ?")
            .bind(json!({ "table": p.table, "tables_done": p.tables_done, "tables_total": p.tables_total, "rows": p.rows }).to_string())
            .bind(id)
            .execute(&ctx.pool)
            .await;
    }

    /// The run ended without an archive (failed or cancelled), and why.
    async fn ended(ctx: &Ctx, id: &str, status: crate::jobs::JobStatus, message: &str) -> Result<()> {
        sqlx::query("UPDATE backup_executions SET status = ?, completed_at = ?, error_message = ?, metadata = json_remove(coalesce(metadata, '{}'), '$.progress') WHERE id = ?")
            .bind(status.as_str())
            .bind(now())
            .bind(message)
            .bind(id)
            .execute(&ctx.pool)
            .await
            .map_err(|e| Error::catalog("record the failed backup", &e))?;
        Ok(())
    }
}

/// The run completed: its archive, sizes, counts, checksum and writer.
pub(crate) async fn mark_completed(ctx: &Ctx, execution_id: &str, out: &BackupOutcome) -> Result<()> {
    sqlx::query(
        "UPDATE backup_executions SET status = 'completed', completed_at = ?, file_path = ?, file_size = ?, compressed_size = ?, \
         tenant_count = ?, table_count = ?, record_count = ?, checksum = ?, \
         metadata = json_remove(json_patch(coalesce(metadata, '{}'), json(?)), '$.progress') WHERE id = ?",
    )
    .bind(now())
    .bind(&out.archive)
    .bind(i64::try_from(out.raw_bytes).unwrap_or(i64::MAX))
    .bind(i64::try_from(out.bytes).unwrap_or(i64::MAX))
    .bind(i64::try_from(out.tenant_count).unwrap_or(i64::MAX))
    .bind(i64::try_from(out.tables).unwrap_or(i64::MAX))
    .bind(i64::try_from(out.rows).unwrap_or(i64::MAX))
    .bind(&out.sha256)
    .bind(json!({ "archive_id": out.id, "parent_id": out.parent, "seconds": out.seconds, "snapshot_time": out.snapshot_time, "writer": out.writer, "writer_key": out.writer_key, "warnings": out.warnings }).to_string())
    .bind(execution_id)
    .execute(&ctx.pool)
    .await
    .map_err(|e| Error::catalog("record the finished backup", &e))?;
    Ok(())
}

/// A note on a completed backup's record (`copy_error`, `retention_error`: what went wrong
/// after it, while the backup stands).
pub(crate) async fn note(ctx: &Ctx, id: &str, key: &str, message: &str) -> Result<()> {
    sqlx::query("UPDATE backup_executions SET metadata = json_set(coalesce(metadata, '{}'), '$.' || ?, ?) WHERE id = ?")
        .bind(key)
        .bind(message)
        .bind(id)
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("note on the backup", &e))?;
    Ok(())
}

/// A value kept in a backup's record's metadata under `key` (JSON, e.g. a server backup's
/// databases' archives).
pub(crate) async fn note_json(ctx: &Ctx, id: &str, key: &str, value: &serde_json::Value) -> Result<()> {
    sqlx::query("UPDATE backup_executions SET metadata = json_set(coalesce(metadata, '{}'), '$.' || ?, json(?)) WHERE id = ?")
        .bind(key)
        .bind(value.to_string())
        .bind(id)
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("note on the backup", &e))?;
    Ok(())
}

/// A completed backup recorded without running through [`run`]: a safety backup taken before a
/// restore, or one found in storage when the catalog is rebuilt.
pub(crate) struct Completed<'a> {
    pub backup_type: &'a str,
    pub started_at: &'a str,
    pub completed_at: &'a str,
    pub file_path: &'a str,
    pub file_size: Option<i64>,
    pub compressed_size: i64,
    pub counts: Option<(i64, i64, i64)>,
    pub checksum: &'a str,
    pub metadata: serde_json::Value,
}

/// Records a completed backup; returns its id.
pub(crate) async fn insert_completed(ctx: &Ctx, b: Completed<'_>) -> Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    let (tenants, tables, rows) = b.counts.map_or((None, None, None), |(a, t, r)| (Some(a), Some(t), Some(r)));
    sqlx::query(
        "INSERT INTO backup_executions (id, configuration_id, backup_type, status, started_at, completed_at, file_path, file_size, compressed_size, \
         tenant_count, table_count, record_count, checksum, metadata) VALUES (?, NULL, ?, 'completed', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(b.backup_type)
    .bind(b.started_at)
    .bind(b.completed_at)
    .bind(b.file_path)
    .bind(b.file_size)
    .bind(b.compressed_size)
    .bind(tenants)
    .bind(tables)
    .bind(rows)
    .bind(b.checksum)
    .bind(b.metadata.to_string())
    .execute(&ctx.pool)
    .await
    .map_err(|e| Error::catalog("record a completed backup", &e))?;
    Ok(id)
}

/// Records a run that was not started because the configuration's previous one was still
/// running; returns its id.
pub(crate) async fn insert_skipped(ctx: &Ctx, configuration_id: &str, backup_type: &str, reason: &str, metadata: serde_json::Value) -> Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query("INSERT INTO backup_executions (id, configuration_id, backup_type, status, started_at, completed_at, error_message, metadata) VALUES (?, ?, ?, 'cancelled', ?, ?, ?, ?)")
        .bind(&id)
        .bind(configuration_id)
        .bind(backup_type)
        .bind(now())
        .bind(now())
        .bind(reason)
        .bind(metadata.to_string())
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("record the skipped run", &e))?;
    Ok(id)
}

/// Notes what started a queued run (manual, schedule, catch_up).
pub(crate) async fn set_trigger(ctx: &Ctx, id: &str, trigger: &str) -> Result<()> {
    sqlx::query("UPDATE backup_executions SET metadata = json_set(coalesce(metadata, '{}'), '$.trigger', ?) WHERE id = ?")
        .bind(trigger)
        .bind(id)
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("record what started the backup", &e))?;
    Ok(())
}

/// A queued run cancelled before it started.
pub(crate) async fn cancel_queued(ctx: &Ctx, id: &str) -> Result<()> {
    sqlx::query("UPDATE backup_executions SET status = 'cancelled', completed_at = ?, error_message = 'cancelled while queued; it never started' WHERE id = ? AND status = 'pending'")
        .bind(now())
        .bind(id)
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("record the cancelled backup", &e))?;
    Ok(())
}

/// Keeps the latest check of a backup on its record (as JSON in its metadata).
pub(crate) async fn record_check(ctx: &Ctx, id: &str, check: &str) -> Result<()> {
    sqlx::query("UPDATE backup_executions SET metadata = json_set(coalesce(metadata, '{}'), '$.last_check', json(?)) WHERE id = ?")
        .bind(check)
        .bind(id)
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("record the check", &e))?;
    Ok(())
}

/// Notes that retention deleted the backup's archive (the row stays in the history).
pub(crate) async fn mark_deleted(ctx: &Ctx, id: &str) -> Result<()> {
    sqlx::query("UPDATE backup_executions SET deleted_at = ? WHERE id = ?")
        .bind(now())
        .bind(id)
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("record the deletion", &e))?;
    Ok(())
}

/// Marks the runs a dead process left pending or running as failed, saying why; returns how many.
pub(crate) async fn interrupt_dead(ctx: &Ctx) -> Result<u64> {
    crate::history::interrupt_dead(ctx, "backup_executions", "interrupted: Safehold stopped while this backup was running or queued; it did not complete and left no archive").await
}
