//! Checks of recorded backups, from the app: a quick check (the archive's SHA-256 against its
//! trailer and the checksum the catalog recorded; no key needed) or a deep one (the backup and
//! every backup it builds on opened with the key, every section authenticated, decompressed,
//! hashed and its rows counted). The result is kept on the backup's record (`metadata.last_check`)
//! and audited, so Recent Backups shows when each backup was last proven readable.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::catalog::{audit, now};
use crate::context::Ctx;
use crate::error::{Error, ErrorCode, Result};
use crate::history::JobStatus;
use crate::context::{require, Permission};
use crate::restore::{self, RestoreRequest};

/// The outcome of a check of a recorded backup.
#[derive(Debug, Clone, Serialize, Deserialize, TS, PartialEq)]
pub struct BackupCheck {
    pub execution_id: String,
    pub deep: bool,
    pub ok: bool,
    /// What was checked, or what is wrong (naming the archive and, inside it, the section).
    pub message: String,
    pub at: String,
    /// Archives read: the backup's own, and for a deep check every backup it builds on.
    pub archives: u64,
    /// Rows counted (deep checks).
    pub rows: u64,
}

/// Checks the backup recorded as `execution_id` (quick: `backup:trigger_manual`; deep:
/// `backup:restore_data`, which reads backed-up data). A damaged or missing archive is a failed
/// check, recorded and returned as such; a check that cannot be made (no key, no permission, a
/// network or disk error, not a completed backup) is an error and records nothing.
pub async fn check_backup(ctx: &Ctx, execution_id: &str, deep: bool) -> Result<BackupCheck> {
    let (permission, action) = if deep { (Permission::RestoreData, "backup.verify_deep") } else { (Permission::TriggerManual, "backup.verify") };
    let who = require(ctx, permission, action, execution_id).await?;
    let (status, file, checksum, deleted): (JobStatus, Option<String>, Option<String>, Option<String>) =
        sqlx::query_as("SELECT status, file_path, checksum, deleted_at FROM backup_executions WHERE id = ?")
            .bind(execution_id)
            .fetch_optional(&ctx.pool)
            .await
            .map_err(|e| Error::catalog("read the backup", &e))?
            .ok_or_else(|| Error::not_found(format!("no backup {execution_id} in the catalog")))?;
    if deleted.is_some() {
        return Err(Error::validation("this backup's archive was deleted by retention: there is nothing to check"));
    }
    let file = file.filter(|_| status == JobStatus::Completed).ok_or_else(|| Error::validation("only a completed backup can be checked"))?;
    let outcome = if deep { deep_chain(ctx, &file, checksum.as_deref()).await } else { quick(&file, checksum.as_deref()) };
    let (ok, message, archives, rows) = match outcome {
        Ok((message, archives, rows)) => (true, message, archives, rows),
        // The archive is damaged, altered, truncated or gone: that is what a check is for.
        Err(e) if matches!(e.code, ErrorCode::Validation | ErrorCode::NotFound) => (false, e.message, 0, 0),
        // No key, a network or disk error, …: not the backup's fault, and nothing is recorded.
        Err(e) => return Err(e),
    };
    let check = BackupCheck { execution_id: execution_id.to_string(), deep, ok, message, at: now(), archives, rows };
    let json = serde_json::to_string(&check).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
    sqlx::query("UPDATE backup_executions SET metadata = json_set(coalesce(metadata, '{}'), '$.last_check', json(?)) WHERE id = ?")
        .bind(json)
        .bind(execution_id)
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("record the check", &e))?;
    audit(&ctx.pool, &who.id, action, &file, if ok { "success" } else { "failure" }, Some(&check.message)).await?;
    Ok(check)
}

fn quick(file: &str, checksum: Option<&str>) -> Result<(String, u64, u64)> {
    let report = tokio::task::block_in_place(|| crate::verify::quick(Path::new(file), checksum))?;
    Ok((format!("the archive's SHA-256 matches its trailer and the catalog ({} bytes)", report.bytes), 1, 0))
}

async fn deep_chain(ctx: &Ctx, file: &str, checksum: Option<&str>) -> Result<(String, u64, u64)> {
    let keys = crate::custody::key_sources(ctx).await?;
    let opened = restore::open(&RestoreRequest::new(PathBuf::from(file), String::new()), &keys).await?;
    tokio::task::block_in_place(|| {
        // Section by section first (damage is named with its section), then the whole file
        // against the catalog's checksum.
        let mut rows = 0;
        for (reader, _) in &opened.chain {
            rows += crate::verify::deep_check(reader)?.rows;
        }
        crate::verify::quick(Path::new(file), checksum)?;
        let n = opened.chain.len() as u64;
        let chain = if n > 1 { format!(" and the {} backups it builds on", n - 1) } else { String::new() };
        Ok((format!("every section of the backup{chain} decrypts, authenticates and matches its SHA-256; {rows} rows counted"), n, rows))
    })
}
