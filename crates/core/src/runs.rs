//! Backups run from the catalog: a configuration's connection, storage and options turned into a
//! backup, recorded as a `backup_executions` row going pending → running → completed | failed |
//! cancelled, with what was counted (tables, rows, tenants) and the archive's checksum (the rows
//! themselves are written by [`crate::backup::records`], the table's only writer).

use crate::backup::{self, records, BackupRequest};
use crate::catalog::audit;
use crate::configurations;
use crate::context::{Ctx, ProgressRecorder};
use crate::error::{Error, ErrorCode, Result};
use crate::history::BackupExecution;
use crate::source::{CancelToken, Include, Progress};
use crate::storage;

/// Records a pending execution of the configuration and returns its id. Refused for an inactive
/// configuration.
pub async fn enqueue(ctx: &Ctx, configuration_id: &str) -> Result<String> {
    crate::context::require(ctx, crate::context::Permission::TriggerManual, "backup.start", configuration_id).await?;
    let config = configurations::get(ctx, configuration_id).await?;
    if !config.is_active {
        return Err(Error::validation(format!(
            "the configuration \"{}\" is inactive; activate it to run it",
            config.configuration_name
        )));
    }
    records::insert_pending(ctx, configuration_id, &format!("{:?}", config.backup_type).to_lowercase()).await
}


async fn set_progress(ctx: &Ctx, id: &str, p: &Progress) {
    ctx.emit(crate::context::JobEvent::progress(crate::jobs::JobKind::Backup, id, p));
    records::set_progress(ctx, id, p).await;
}

/// Runs a pending execution to its end and records the outcome. Returns the final row.
pub async fn run(ctx: &Ctx, execution_id: &str, cancel: &CancelToken) -> Result<BackupExecution> {
    let (config_id, by): (Option<String>, Option<String>) = sqlx::query_as("SELECT configuration_id, initiated_by FROM backup_executions WHERE id = ? AND status = 'pending'")
        .bind(execution_id)
        .fetch_optional(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("read the backup", &e))?
        .ok_or_else(|| Error::not_found(format!("no pending backup {execution_id}")))?;
    // The audit names who asked for the backup (the runner only carries it out).
    let by = by.unwrap_or_else(|| ctx.operator_id());
    let config_id = config_id.ok_or_else(|| Error::not_found("the backup's configuration was deleted"))?;
    records::mark_running(ctx, execution_id).await?;
    let result = execute(ctx, execution_id, &config_id, cancel).await;
    let name = configurations::get(ctx, &config_id).await.map(|c| c.configuration_name).unwrap_or_default();
    match &result {
        Ok(out) => {
            records::mark_completed(ctx, execution_id, out).await?;
            audit(&ctx.pool, &by, "backup.run", &name, "success", Some(&out.id)).await?;
            // The storage's used space, for the Storage tab's growth chart.
            if let Ok(c) = configurations::get(ctx, &config_id).await {
                let _ = crate::storage::record_usage(ctx, &c.storage_location).await;
            }
            // The second copy (3-2-1); a failed copy is recorded, the backup stands.
            if let Err(e) = crate::copies::copy_to_secondary(ctx, execution_id).await {
                let _ = records::note(ctx, execution_id, "copy_error", &e.message).await;
            }
            // Retention after each backup; a failure there is recorded, the backup stands.
            if let Err(e) = crate::retention::apply_policy(ctx, &config_id, chrono::Utc::now()).await {
                let _ = records::note(ctx, execution_id, "retention_error", &e.message).await;
            }
        }
        Err(e) => {
            let status = if e.code == ErrorCode::Cancelled { "cancelled" } else { "failed" };
            records::mark_ended(ctx, execution_id, status, &e.message).await?;
            audit(&ctx.pool, &by, "backup.run", &name, "failure", Some(&e.message)).await?;
        }
    }
    let done = crate::history::execution(ctx, execution_id).await?;
    ctx.emit(crate::context::JobEvent {
        kind: crate::jobs::JobKind::Backup,
        id: execution_id.to_string(),
        status: Some(done.status),
        table: None,
        tables_done: u64::try_from(done.table_count.unwrap_or(0)).unwrap_or(0),
        tables_total: u64::try_from(done.table_count.unwrap_or(0)).unwrap_or(0),
        rows: u64::try_from(done.record_count.unwrap_or(0)).unwrap_or(0),
    });
    Ok(done)
}

async fn execute(ctx: &Ctx, execution_id: &str, config_id: &str, cancel: &CancelToken) -> Result<backup::BackupOutcome> {
    let config = configurations::get(ctx, config_id).await?;
    let connection_id = config.connection_id.clone().ok_or_else(|| Error::validation("the configuration names no connection; edit it and choose one"))?;
    let (spec, conn) = crate::connections::source_of(ctx, &connection_id).await?;
    let store = storage::list(ctx)
        .await?
        .into_iter()
        .find(|s| s.storage_name == config.storage_location)
        .ok_or_else(|| Error::not_found(format!("the storage \"{}\" does not exist any more", config.storage_location)))?;
    if !store.is_active {
        return Err(Error::validation(format!("the storage \"{}\" is inactive: activate it in the Storage tab or choose another storage for this configuration", store.storage_name)));
    }
    let dir = storage::location(ctx, &store).await?;
    let keys = crate::custody::key_sources(ctx).await?;
    let (repo, mk) = keys.open_repository_for_sealed_backup(&dir).await?;
    let mut req = BackupRequest::new(spec);
    req.source_name = conn.name.clone();
    req.signer = keys.writer.clone();
    req.tenant_column = conn.tenant_column.clone();
    req.tenants_table = conn.tenants_table.clone();
    req.backup_type = config.backup_type;
    req.zstd_level = config.compression_enabled.then_some(backup::DEFAULT_ZSTD_LEVEL);
    req.encrypt = config.encryption_enabled;
    req.include = Include { tenant_data: config.includes_tenant_data, system_data: config.includes_system_data, logs: config.includes_logs };
    let recorder = {
        let (ctx, id) = (ctx.clone(), execution_id.to_string());
        ProgressRecorder::new(None, move |p| {
            let (ctx, id) = (ctx.clone(), id.clone());
            async move { set_progress(&ctx, &id, &p).await }
        })
    };
    let out = backup::run_with(&repo, mk.as_ref(), &req, cancel, &recorder.sink).await;
    recorder.finish().await;
    out
}
