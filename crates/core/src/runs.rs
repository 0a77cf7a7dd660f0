//! Backups run from the catalog: a configuration's connection, storage and options turned into a
//! backup, recorded as a `backup_executions` row going pending → running → completed | failed |
//! cancelled, with what was counted (tables, rows, tenants) and the archive's checksum (the rows
//! themselves are written by [`crate::backup::records`], the table's only writer).

use crate::backup::{self, records, BackupRequest};
use crate::configurations;
use crate::context::{Counts, Ctx, Job};
use crate::error::{Error, Result};
use crate::history::BackupExecution;
use crate::jobs::ProgressSink;
use crate::source::{CancelToken, Include};
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

/// Records a pending **full** backup of the configuration, whatever its own type: the base that
/// continuous protection's changes continue from.
pub async fn enqueue_full(ctx: &Ctx, configuration_id: &str) -> Result<String> {
    crate::context::require(ctx, crate::context::Permission::TriggerManual, "backup.start", configuration_id).await?;
    configurations::get(ctx, configuration_id).await?;
    records::insert_pending(ctx, configuration_id, "full").await
}


/// Runs a pending execution to its end and records the outcome (through the one job lifecycle,
/// [`Job`]). Returns the final row: a failed or cancelled run is on it, not an error.
pub async fn run(ctx: &Ctx, execution_id: &str, cancel: &CancelToken) -> Result<BackupExecution> {
    let (config_id, by, kind): (Option<String>, Option<String>, String) = sqlx::query_as("SELECT configuration_id, initiated_by, backup_type FROM backup_executions WHERE id = ? AND status = 'pending'")
        .bind(execution_id)
        .fetch_optional(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("read the backup", &e))?
        .ok_or_else(|| Error::not_found(format!("no pending backup {execution_id}")))?;
    // The audit names who asked for the backup (the runner only carries it out).
    let by = by.unwrap_or_else(|| ctx.operator_id());
    let config_id = config_id.ok_or_else(|| Error::not_found("the backup's configuration was deleted"))?;
    let name = configurations::get(ctx, &config_id).await.map(|c| c.configuration_name).unwrap_or_default();
    let job = Job::<records::BackupRun>::start(ctx, execution_id, by, name, None).await?;
    let result = execute(ctx, execution_id, &config_id, &kind, cancel, job.progress()).await;
    let completed = async |out: &backup::BackupOutcome| -> Result<String> {
        records::mark_completed(ctx, execution_id, out).await?;
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
        // And the safety backups' own retention (they belong to no configuration).
        if let Err(e) = crate::retention::apply_safety_policy(ctx, chrono::Utc::now()).await {
            let _ = records::note(ctx, execution_id, "retention_error", &e.message).await;
        }
        Ok(out.id.clone())
    };
    // The run's own failure is on its row; only a failure to record it is the caller's.
    let _ = job.end(result, completed, |out| Counts { tables: out.tables, rows: out.rows }).await?;
    crate::history::execution(ctx, execution_id).await
}

/// Runs the configuration's backup of the kind its execution records (the configuration's own,
/// or a full one asked for by continuous protection's base).
async fn execute(ctx: &Ctx, execution_id: &str, config_id: &str, kind: &str, cancel: &CancelToken, progress: ProgressSink) -> Result<backup::BackupOutcome> {
    let config = configurations::get(ctx, config_id).await?;
    let connection_id = config.connection_id.clone().ok_or_else(|| Error::validation("the configuration names no connection; edit it and choose one"))?;
    let (spec, conn) = crate::connections::source_of(ctx, &connection_id).await?;
    let store = storage::by_name_or_id(&ctx.pool, &config.storage_location)
        .await?
        .ok_or_else(|| Error::not_found(format!("the storage \"{}\" does not exist any more", config.storage_location)))?;
    if !store.is_active {
        return Err(Error::validation(format!("the storage \"{}\" is inactive: activate it in the Storage tab or choose another storage for this configuration", store.storage_name)));
    }
    let dir = storage::location(ctx, &store).await?;
    let keys = crate::keys::custody::key_sources(ctx).await?;
    let (repo, mk) = keys.open_repository_for_sealed_backup(&dir).await?;
    let mut req = BackupRequest::new(spec);
    req.source_name = conn.name.clone();
    req.signer = keys.writer.clone();
    req.tenant_column = conn.tenant_column.clone();
    req.tenants_table = conn.tenants_table.clone();
    req.backup_type = match kind {
        "full" => configurations::BackupType::Full,
        "differential" => configurations::BackupType::Differential,
        "incremental" => configurations::BackupType::Incremental,
        _ => config.backup_type,
    };
    req.zstd_level = config.compression_enabled.then_some(backup::DEFAULT_ZSTD_LEVEL);
    req.encrypt = config.encryption_enabled;
    req.include = Include { tenant_data: config.includes_tenant_data, system_data: config.includes_system_data, logs: config.includes_logs };
    if config.whole_server {
        return server(ctx, execution_id, &config, req, &repo, mk.as_ref(), cancel, &progress).await;
    }
    backup::run_with(&repo, mk.as_ref(), &req, cancel, &progress).await
}

/// A configuration of a whole server: every database and the globals, one set. The run's record
/// names the set's archive (its size and checksum are the set's, as verify reads them) and keeps
/// the databases' archives in its metadata; the counts are the databases' together.
#[allow(clippy::too_many_arguments)]
async fn server(ctx: &Ctx, execution_id: &str, config: &configurations::BackupConfiguration, each: BackupRequest, repo: &crate::repository::Repository, mk: Option<&crate::archive::SecretKey>, cancel: &CancelToken, progress: &ProgressSink) -> Result<backup::BackupOutcome> {
    let crate::source::SourceSpec::Postgres { url } = &each.source else {
        return Err(Error::validation("a server backup needs a PostgreSQL connection: edit the configuration"));
    };
    let req = crate::servers::ServerBackupRequest { url: url.clone(), exclude: configurations::exclude_patterns(config.exclude_databases.as_deref()), with_passwords: config.server_passwords, each: each.clone() };
    let out = crate::servers::backup(repo, mk, &req, cancel, progress).await?;
    let databases: Vec<serde_json::Value> = out.databases.iter().map(|d| serde_json::json!({ "database": d.database, "archive_id": d.archive_id, "tables": d.tables, "rows": d.rows, "bytes": d.bytes })).collect();
    records::note_json(ctx, execution_id, "members", &serde_json::json!(out.member_archives)).await?;
    records::note_json(ctx, execution_id, "databases", &serde_json::Value::Array(databases)).await?;
    let writer = each.signer.clone().map(|s| (s.name.clone(), s.public_hex())).unwrap_or_default();
    Ok(backup::BackupOutcome {
        id: out.set_id.clone(),
        archive: out.archive.clone(),
        backup_type: configurations::BackupType::Full,
        parent: None,
        bytes: out.archive_bytes,
        raw_bytes: out.databases.iter().map(|d| d.bytes).sum::<u64>() + out.archive_bytes,
        tables: out.databases.iter().map(|d| d.tables).sum(),
        rows: out.databases.iter().map(|d| d.rows).sum(),
        tenant_count: 0,
        sha256: out.sha256.clone(),
        seconds: out.seconds,
        snapshot_time: out.taken_at.clone(),
        note: Some(format!("server backup of {} databases and {} roles", out.databases.len(), out.roles)),
        warnings: out.warnings.clone(),
        writer: writer.0,
        writer_key: writer.1,
    })
}
