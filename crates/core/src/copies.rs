//! The second copy (3-2-1): after a configuration's backup completes, its archive is copied to
//! the configuration's second storage — a mirror of the same repository (the repository file is
//! copied there first), so the copy restores on its own with the same password or recovery key —
//! then verified against the checksum recorded for the backup, and the copy is recorded.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use ts_rs::TS;

use crate::catalog::{audit, now};
use crate::context::Ctx;
use crate::error::{Error, ErrorCode, Result};
use crate::repository::{Repository, CONFIG_FILE};
use crate::{configurations, history, storage};

#[derive(Debug, Clone, Serialize, TS, sqlx::FromRow)]
pub struct BackupCopy {
    pub id: String,
    pub backup_execution_id: String,
    pub storage_name: String,
    pub file_path: Option<String>,
    pub checksum: Option<String>,
    /// completed | failed
    pub status: String,
    pub error_message: Option<String>,
    pub created_at: String,
}

/// The copies of a backup.
pub async fn of(ctx: &Ctx, execution_id: &str) -> Result<Vec<BackupCopy>> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "backup.copies", execution_id).await?;
    sqlx::query_as("SELECT id, backup_execution_id, storage_name, file_path, checksum, status, error_message, created_at FROM backup_copies WHERE backup_execution_id = ? ORDER BY created_at")
        .bind(execution_id)
        .fetch_all(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("read the backup's copies", &e))
}

fn read_all(path: &Path) -> Result<Vec<u8>> {
    let len = crate::storage::archives::byte_len(path)?;
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    crate::storage::archives::read_range(path, 0, len)?.read_to_end(&mut out).map_err(|e| Error::io(format!("cannot read {}", path.display()), &e))?;
    Ok(out)
}

fn write_whole(dest: &Path, bytes: Vec<u8>) -> Result<()> {
    crate::storage::backend::at(dest)?.put(bytes)
}

/// Streams `src` to `dest` (a file written under a temporary name and renamed, or a multipart
/// upload): the copy appears only when complete.
pub fn copy_archive(src: &Path, dest: &Path) -> Result<u64> {
    let len = crate::storage::archives::byte_len(src)?;
    let mut from = crate::storage::archives::read_range(src, 0, len)?;
    let fail = |e: std::io::Error| Error::io(format!("cannot copy {} to {}", src.display(), dest.display()), &e);
    // Dropped unfinished (an error on the way), the upload leaves nothing.
    let mut up = crate::storage::backend::at(dest)?.upload()?;
    std::io::copy(&mut from, &mut up).map_err(fail)?;
    up.finish()?;
    Ok(len)
}

/// Copies a completed backup of a configuration to the configuration's second storage and
/// verifies it; `Ok(None)` when the configuration names none. The outcome is recorded either way.
pub async fn copy_to_secondary(ctx: &Ctx, execution_id: &str) -> Result<Option<BackupCopy>> {
    crate::context::require(ctx, crate::context::Permission::TriggerManual, "backup.copy", execution_id).await?;
    let exec = history::executions(ctx, i64::MAX).await?.into_iter().find(|e| e.id == execution_id).ok_or_else(|| Error::not_found(format!("no backup {execution_id}")))?;
    let Some(config_id) = exec.configuration_id.clone() else { return Ok(None) };
    let config = configurations::get(ctx, &config_id).await?;
    let Some(second) = config.secondary_storage.clone() else { return Ok(None) };
    let src = PathBuf::from(exec.file_path.clone().ok_or_else(|| Error::validation("the backup has no archive to copy"))?);
    let result = async {
        let store = storage::find(ctx, &second).await?;
        if !store.is_active {
            return Err(Error::validation(format!("the second storage \"{}\" is inactive: activate it in the Storage tab", store.storage_name)));
        }
        let dest_repo = storage::location(ctx, &store).await?;
        let primary_repo = src.parent().and_then(Path::parent).map(Path::to_path_buf).ok_or_else(|| Error::validation("the backup is not in a repository"))?;
        let file = src.file_name().ok_or_else(|| Error::validation("the backup's archive has no file name"))?.to_owned();
        let dest = dest_repo.join("archives").join(&file);
        let checksum = exec.checksum.clone();
        let (src2, dest2, dest_repo2) = (src.clone(), dest.clone(), dest_repo.clone());
        tokio::task::spawn_blocking(move || -> Result<()> {
            // The second storage mirrors the repository: same id, same key slots.
            let primary = Repository::open(&primary_repo)?.ok_or_else(|| Error::not_found(format!("{} is not a repository", primary_repo.display())))?;
            match Repository::open(&dest_repo2)? {
                Some(r) if r.id() != primary.id() => {
                    return Err(Error::conflict(format!(
                        "{} holds another repository ({}); give the second copy a storage (or prefix) of its own",
                        dest_repo2.display(),
                        r.id()
                    )))
                }
                Some(_) => {}
                None => write_whole(&dest_repo2.join(CONFIG_FILE), read_all(&primary_repo.join(CONFIG_FILE))?)?,
            }
            copy_archive(&src2, &dest2)?;
            crate::verify::quick(&dest2, checksum.as_deref()).map(|_| ())
        })
        .await
        .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))??;
        let _ = storage::record_usage(ctx, &second).await;
        Ok::<_, Error>(dest)
    }
    .await;
    let id = uuid::Uuid::new_v4().to_string();
    let (status, path, error) = match &result {
        Ok(dest) => ("completed", Some(dest.display().to_string()), None),
        Err(e) => ("failed", None, Some(e.message.clone())),
    };
    sqlx::query("INSERT INTO backup_copies (id, backup_execution_id, storage_name, file_path, checksum, status, error_message, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(&id)
        .bind(execution_id)
        .bind(&second)
        .bind(&path)
        .bind(&exec.checksum)
        .bind(status)
        .bind(&error)
        .bind(now())
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("record the copy", &e))?;
    audit(&ctx.pool, &ctx.operator_id(), "backup.copy", &second, if result.is_ok() { "success" } else { "failure" }, error.as_deref().or(path.as_deref())).await?;
    result?;
    Ok(of(ctx, execution_id).await?.into_iter().find(|c| c.id == id))
}
