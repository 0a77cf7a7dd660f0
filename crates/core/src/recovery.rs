//! Disaster recovery from storage alone: on a fresh install (an empty catalog, no keychain
//! entries), a repository's archives are listed from their plaintext headers — no key needed —
//! and recorded in the catalog as completed backup executions, with the repository registered as a
//! storage. Any of them then restores with the repository's recovery key (`docs/disaster-recovery.md`).

use std::path::Path;

use serde::Serialize;
use serde_json::json;
use ts_rs::TS;

use crate::archive::ArchiveReader;
use crate::catalog::{audit, now};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::history;
use crate::repository::Repository;
use crate::storage;

#[derive(Debug, Clone, Serialize, TS)]
pub struct RebuildReport {
    pub repository: String,
    pub repository_id: String,
    /// Archives found in the repository.
    pub archives: u64,
    /// Backups recorded in the catalog by this rebuild.
    pub added: u64,
    /// Backups the catalog already knew.
    pub already_known: u64,
    /// Files that are not readable archives (damaged or truncated), with why.
    pub unreadable: Vec<String>,
    /// The storage the repository is registered as.
    pub storage_name: String,
    pub storage_added: bool,
}

/// [`rebuild_catalog`] from a storage registered in the catalog — a cloud bucket added with its
/// credentials after the workstation was lost, say.
pub async fn rebuild_from_storage(ctx: &Ctx, name_or_id: &str) -> Result<RebuildReport> {
    crate::context::require(ctx, crate::context::Permission::ManageAll, "catalog.rebuild", name_or_id).await?;
    let store = storage::find(ctx, name_or_id).await?;
    let location = storage::location(ctx, &store).await?;
    rebuild_catalog(ctx, &location).await
}

/// Records every archive of the repository at `dir` in the catalog (idempotent).
pub async fn rebuild_catalog(ctx: &Ctx, dir: &Path) -> Result<RebuildReport> {
    crate::context::require(ctx, crate::context::Permission::ManageAll, "catalog.rebuild", "catalog").await?;
    let remote = crate::remote::is_remote(dir);
    let dir = if remote { std::path::PathBuf::from(dir.to_string_lossy().trim_end_matches('/')) } else { std::fs::canonicalize(dir).map_err(|e| Error::io(format!("cannot open the repository {}", dir.display()), &e))? };
    let repo = Repository::open(&dir)?.ok_or_else(|| {
        Error::not_found(format!("{} is not a Safehold repository (it has no safehold-repository.json); choose the directory that holds it", dir.display()))
    })?;
    // The storage: an existing one with this path, or a new one named after the directory.
    let storages = storage::list(ctx).await?;
    let existing = storages.iter().find(|s| {
        if remote {
            s.storage_config.get("url").and_then(|p| p.as_str()) == Some(&*dir.to_string_lossy())
        } else {
            s.storage_config.get("path").and_then(|p| p.as_str()).map(std::path::PathBuf::from).and_then(|p| std::fs::canonicalize(p).ok()) == Some(dir.clone())
        }
    });
    let (storage_name, storage_added) = match existing {
        Some(s) => (s.storage_name.clone(), false),
        None => {
            let base = format!("Recovered {}", dir.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_else(|| "repository".into()));
            let mut name = base.clone();
            let mut n = 2;
            while storages.iter().any(|s| s.storage_name == name) {
                name = format!("{base} ({n})");
                n += 1;
            }
            if remote {
                // Credentials stay where they came from (the environment) until the storage is edited.
                storage::add_remote(ctx, storage::RemoteStorageInput { name: name.clone(), url: dir.to_string_lossy().to_string(), is_default: storages.is_empty(), ..Default::default() }).await?;
            } else {
                storage::add_local(ctx, &name, &dir, storages.is_empty()).await?;
            }
            (name, true)
        }
    };
    let known: std::collections::HashSet<String> = history::executions(ctx, i64::MAX)
        .await?
        .into_iter()
        .filter_map(|e| e.metadata.get("archive_id").and_then(|a| a.as_str()).map(str::to_string))
        .collect();
    let mut report = RebuildReport {
        repository: dir.display().to_string(),
        repository_id: repo.id().to_string(),
        archives: 0,
        added: 0,
        already_known: 0,
        unreadable: Vec::new(),
        storage_name,
        storage_added,
    };
    let files = crate::repository::archives_in(&repo.archives_dir())?;
    for path in files {
        let checked = ArchiveReader::open(&path).and_then(|r| r.quick_check().map(|q| (r.header, q)));
        let (h, q) = match checked {
            Ok(x) => x,
            Err(e) => {
                report.unreadable.push(format!("{}: {}", path.display(), e.message));
                continue;
            }
        };
        report.archives += 1;
        if known.contains(&h.archive_id) {
            report.already_known += 1;
            continue;
        }
        crate::backup::records::insert_completed(
            ctx,
            crate::backup::records::Completed {
                backup_type: &h.backup_type,
                started_at: &h.snapshot_time,
                completed_at: &h.created_at,
                file_path: &path.display().to_string(),
                file_size: None,
                compressed_size: i64::try_from(q.bytes).unwrap_or(i64::MAX),
                counts: None,
                checksum: &q.sha256,
                metadata: json!({
                    "archive_id": h.archive_id, "parent_id": h.parent_id, "snapshot_time": h.snapshot_time,
                    "source_name": h.source_name, "recovered_at": now(), "storage": report.storage_name
                }),
            },
        )
        .await?;
        report.added += 1;
    }
    audit(&ctx.pool, &ctx.operator_id(), "catalog.rebuild", &report.repository, "success", Some(&format!("{} backups added, {} known", report.added, report.already_known))).await?;
    Ok(report)
}
