//! Verifying archives. `quick`: the whole file's SHA-256 against its trailer (and the catalog),
//! no key needed. `deep`: decrypt, authenticate, decompress and hash every section and count its
//! rows against the index.

use serde::Serialize;
use ts_rs::TS;

use crate::archive::{ArchiveReader, SecretKey, Unlock};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, TS)]
pub struct VerifyReport {
    pub archive: String,
    pub archive_id: String,
    pub deep: bool,
    pub sha256: String,
    pub bytes: u64,
    pub sections: u64,
    pub rows: u64,
}

pub fn quick(path: &std::path::Path, expected_sha256: Option<&str>) -> Result<VerifyReport> {
    quick_in(path, expected_sha256, None)
}

/// [`quick`] of an archive found in `repo`: it must be one of that repository's (an archive
/// copied in from another one is not, and no key of this repository opens it).
pub fn quick_in(path: &std::path::Path, expected_sha256: Option<&str>, repo: Option<&crate::repository::Repository>) -> Result<VerifyReport> {
    let reader = ArchiveReader::open(path)?;
    if let Some(repo) = repo {
        if reader.header.repository_id != repo.id() {
            return Err(Error::validation(format!(
                "the archive {} belongs to another repository ({}), not to {} ({}): it was copied in; restore it from its own repository",
                path.display(),
                reader.header.repository_id,
                repo.dir.display(),
                repo.id()
            )));
        }
    }
    let q = reader.quick_check()?;
    if q.signature_ok == Some(false) {
        return Err(Error::validation(format!("the archive {} is not as its writer signed it: it was changed after it was written", path.display())));
    }
    if let Some(expected) = expected_sha256 {
        if expected != q.sha256 {
            return Err(Error::validation(format!(
                "the archive {} does not match the checksum recorded when it was written (expected {expected}, found {})",
                path.display(),
                q.sha256
            )));
        }
    }
    Ok(VerifyReport { archive: path.display().to_string(), archive_id: reader.header.archive_id, deep: false, sha256: q.sha256, bytes: q.bytes, sections: 0, rows: 0 })
}

pub fn deep(path: &std::path::Path, master: Option<&SecretKey>, unlock: Option<&Unlock>) -> Result<VerifyReport> {
    let mut reader = ArchiveReader::open(path)?;
    reader.unlock(master, unlock)?;
    deep_with(reader)
}

/// Deep verification of an archive that is already unlocked.
pub fn deep_with(reader: ArchiveReader) -> Result<VerifyReport> {
    deep_check(&reader)
}

/// [`deep_with`] of a reader that is shared (an opened restore chain's).
pub fn deep_check(reader: &ArchiveReader) -> Result<VerifyReport> {
    let path = reader.path().to_path_buf();
    let path = path.as_path();
    // Section by section first, so that damage inside one is reported with the section's name;
    // then the whole file, which also covers what lies between and after the sections.
    let index = reader.index()?;
    let mut rows = 0u64;
    for s in &index.sections {
        let mut lines = 0u64;
        let mut plain = 0u64;
        reader.read_section(&index, &s.name, &mut |chunk| {
            lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
            plain += chunk.len() as u64;
            Ok(())
        })?;
        if s.kind == "table" && lines != s.rows {
            return Err(Error::validation(format!(
                "the archive {} is damaged: section \"{}\" holds {lines} rows but its index says {}",
                path.display(),
                s.name,
                s.rows
            )));
        }
        // Rows of data, as the backup counted them: SQLite's own `sqlite_sequence` (its
        // AUTOINCREMENT counters) is carried and checked like a table, not counted as data.
        // A change segment's section: one transaction a line, its changes counted in the index.
        rows += if s.kind == "changes" { s.rows } else { lines * u64::from(s.kind == "table" && s.name != "sqlite_sequence") };
    }
    let mut report = quick(path, None)?;
    report.deep = true;
    report.sections = index.sections.len() as u64;
    report.rows = rows;
    Ok(report)
}
