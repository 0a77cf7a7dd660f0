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
    pub seconds: f64,
}

/// Opens and unlocks an archive: with the repository's master key, or on its own with a
/// password or the recovery key.
pub fn open_archive(path: &std::path::Path, master: Option<&SecretKey>, unlock: Option<&Unlock>) -> Result<ArchiveReader> {
    let mut reader = ArchiveReader::open(path)?;
    reader.unlock(master, unlock)?;
    Ok(reader)
}

/// Restores the whole archive into `target`, which must be empty (a new SQLite file, or a
/// PostgreSQL database without tables). All or nothing.
pub async fn restore_full(reader: ArchiveReader, target: &SourceSpec, jobs: usize, cancel: &CancelToken, progress: &ProgressSink) -> Result<RestoreOutcome> {
    let started = std::time::Instant::now();
    let reader = Arc::new(reader);
    let index = reader.index()?;
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
        SourceSpec::Postgres { url } => source::postgres::restore(&reader, &index, url, jobs, cancel, progress).await?,
    };
    Ok(RestoreOutcome {
        archive_id: reader.header.archive_id.clone(),
        target: target.display(),
        tables: index.sections.iter().filter(|s| s.kind == "table" && s.name != "sqlite_sequence").count() as u64,
        rows,
        seconds: started.elapsed().as_secs_f64(),
    })
}
