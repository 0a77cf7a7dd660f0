//! Restoring a whole backup into an empty target. (Selective, tenant and point-in-time restores
//! build on this in their own issue.)

use std::sync::Arc;

use serde::Serialize;
use ts_rs::TS;

use crate::archive::{ArchiveReader, SecretKey, Unlock};
use crate::error::{Error, Result};
use crate::source::{self, CancelToken, ProgressSink, SourceSpec};

#[derive(Debug, Clone, Serialize, TS)]
pub struct RestoreOutcome {
    pub archive_id: String,
    pub target: String,
    pub tables: u64,
    pub rows: u64,
    /// How many backups of the chain were read (1 for a full).
    pub backups: u64,
    pub seconds: f64,
}

/// Opens and unlocks an archive: with the repository's master key, or on its own with a
/// password or the recovery key.
pub fn open_archive(path: &std::path::Path, master: Option<&SecretKey>, unlock: Option<&Unlock>) -> Result<ArchiveReader> {
    let mut reader = ArchiveReader::open(path)?;
    reader.unlock(master, unlock)?;
    Ok(reader)
}

/// Restores a full backup into `target`, which must be empty (a new SQLite file, or a PostgreSQL
/// database without tables). All or nothing. Incremental and differential backups need their
/// chain: see [`restore_chain`].
pub async fn restore_full(reader: ArchiveReader, target: &SourceSpec, jobs: usize, cancel: &CancelToken, progress: &ProgressSink) -> Result<RestoreOutcome> {
    restore_chain(vec![reader], target, jobs, false, cancel, progress).await
}

/// Restores the newest backup of `chain` (its full first, then each backup that builds on the
/// one before) into the empty `target`, exactly as its source was at that backup's snapshot.
/// Into an existing database the restore is one transaction. Into a PostgreSQL database that
/// this restore created (`created_target`), `jobs` connections load and index in parallel and a
/// failure drops the new database.
pub async fn restore_chain(chain: Vec<ArchiveReader>, target: &SourceSpec, jobs: usize, created_target: bool, cancel: &CancelToken, progress: &ProgressSink) -> Result<RestoreOutcome> {
    let started = std::time::Instant::now();
    for pair in chain.windows(2) {
        if pair[1].header.parent_id.as_deref() != Some(pair[0].header.archive_id.as_str()) {
            return Err(Error::validation(format!("backup {} does not build on {}: the chain is broken", pair[1].header.archive_id, pair[0].header.archive_id)));
        }
    }
    match chain.first() {
        Some(first) if first.header.parent_id.is_some() => {
            return Err(Error::validation(format!(
                "backup {} is {} and needs the backup it builds on ({}); restore it from its repository",
                first.header.archive_id,
                first.header.backup_type,
                first.header.parent_id.clone().unwrap_or_default()
            )))
        }
        None => return Err(Error::validation("nothing to restore")),
        _ => {}
    }
    let mut members = Vec::with_capacity(chain.len());
    for r in chain {
        let index = r.index()?;
        members.push((Arc::new(r), index));
    }
    let (reader, index) = members.last().cloned().ok_or_else(|| Error::validation("nothing to restore"))?;
    if reader.header.source_kind != target.kind() {
        return Err(Error::validation(format!(
            "the backup {} is of a {} database and cannot be restored into {}; restore it into a {} target",
            reader.header.archive_id,
            reader.header.source_kind,
            target.display(),
            reader.header.source_kind
        )));
    }
    let rows = match target {
        SourceSpec::Sqlite { path } => source::sqlite::restore(&reader, &index, path, cancel, progress).await?,
        SourceSpec::Postgres { url } if created_target && jobs > 1 => source::postgres::restore_parallel(&members, url, jobs, cancel, progress).await?,
        SourceSpec::Postgres { url } => source::postgres::restore(&members, url, cancel, progress).await?,
    };
    Ok(RestoreOutcome {
        archive_id: reader.header.archive_id.clone(),
        target: target.display(),
        tables: index.sections.iter().filter(|s| s.kind == "table" && s.name != "sqlite_sequence").count() as u64,
        backups: members.len() as u64,
        rows,
        seconds: started.elapsed().as_secs_f64(),
    })
}
