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
    let reader = ArchiveReader::open(path)?;
    let q = reader.quick_check()?;
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
    let path = reader.path().to_path_buf();
    let path = path.as_path();
    let mut report = quick(path, None)?;
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
        rows += lines * u64::from(s.kind == "table");
    }
    report.deep = true;
    report.sections = index.sections.len() as u64;
    report.rows = rows;
    Ok(report)
}
