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
        rows += lines * u64::from(s.kind == "table");
    }
    let mut report = quick(path, None)?;
    report.deep = true;
    report.sections = index.sections.len() as u64;
    report.rows = rows;
    Ok(report)
}

/// An order-independent digest of a table's rows (COPY text lines): the sum of each line's
/// SHA-256 (first 16 bytes), so the same rows in any order give the same digest.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RowsDigest {
    pub rows: u64,
    sum: u128,
    partial_len: usize,
}

#[derive(Default)]
struct LineDigester {
    digest: RowsDigest,
    partial: Vec<u8>,
}

impl LineDigester {
    fn feed(&mut self, mut data: &[u8]) {
        use sha2::Digest;
        while let Some(pos) = data.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&data[..pos]);
            let h = sha2::Sha256::digest(&self.partial);
            let mut first = [0u8; 16];
            first.copy_from_slice(&h[..16]);
            self.digest.sum = self.digest.sum.wrapping_add(u128::from_le_bytes(first));
            self.digest.rows += 1;
            self.partial.clear();
            data = &data[pos + 1..];
        }
        self.partial.extend_from_slice(data);
    }
    fn finish(mut self) -> RowsDigest {
        self.digest.partial_len = self.partial.len();
        self.digest
    }
}

impl RowsDigest {
    pub fn hex(&self) -> String {
        format!("{:032x}", self.sum)
    }
}

/// How one table of a test restore compared.
#[derive(Debug, Clone, Serialize, TS)]
pub struct RestoreTestTable {
    pub table: String,
    pub expected_rows: u64,
    pub restored_rows: u64,
    /// "match", "mismatch", or "n/a" (the table's newest copy is a delta: counts only).
    pub archive_checksum: String,
    /// Against the live source: "match", "changed since the backup", or "n/a".
    pub source: String,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize, TS)]
pub struct RestoreTestReport {
    pub archive_id: String,
    pub backups: u64,
    pub scratch_database: String,
    pub tables: Vec<RestoreTestTable>,
    pub ok: bool,
    pub seconds: f64,
}

async fn table_digest(conn: &mut sqlx::PgConnection, table: &str, columns: &[String]) -> Result<RowsDigest> {
    use futures_util::TryStreamExt;
    // (A section name: a schema or table with a dot in its name is quoted in it.)
    let cols: Vec<String> = columns.iter().map(|c| crate::source::postgres::qi(c)).collect();
    let sql = format!("COPY {} ({}) TO STDOUT", crate::source::tenancy::rel(table), cols.join(", "));
    let mut d = LineDigester::default();
    let mut out = conn.copy_out_raw(&sql).await.map_err(|e| Error::new(crate::ErrorCode::Database, format!("PostgreSQL: cannot read {table}: {e}")))?;
    while let Some(bytes) = out.try_next().await.map_err(|e| Error::new(crate::ErrorCode::Database, format!("PostgreSQL: reading {table} failed: {e}")))? {
        d.feed(&bytes);
    }
    Ok(d.finish())
}

/// Verifies a backup by restoring it: into a scratch database created on the server at
/// `scratch_url` (and dropped afterwards, whatever happens), then every table's row count and
/// digest is compared with the archive's and — when `source_url` is given — with the live
/// source's (a difference there means the source changed since the backup, not a failure).
pub async fn restore_test(
    opened: &crate::restore::Opened,
    scratch_url: &str,
    source_url: Option<&str>,
    cancel: &crate::source::CancelToken,
    progress: &crate::source::ProgressSink,
) -> Result<RestoreTestReport> {
    use crate::source::postgres;
    let started = std::time::Instant::now();
    let (reader, index) = opened.chain.last().cloned().ok_or_else(|| Error::validation("nothing to verify"))?;
    if reader.header.source_kind != "postgres" {
        return Err(Error::validation("a test restore needs a PostgreSQL backup; check a SQLite backup with verify --deep, or restore it into a new file"));
    }
    let mut url = url::Url::parse(scratch_url).map_err(|e| Error::validation(format!("invalid scratch URL {}: {e}", crate::source::redact(scratch_url))))?;
    let name = format!("safehold_verify_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    url.set_path(&format!("/{name}"));
    let url = url.to_string();
    postgres::create_database(&url).await?;
    let result = async {
        postgres::restore_parallel(&opened.chain, &url, 2, cancel, progress).await?;
        let schema = postgres::archived_schema(&reader, &index)?;
        let mut scratch = postgres::connect(&url).await?;
        let mut live = match source_url {
            Some(s) => Some(postgres::connect(s).await?),
            None => None,
        };
        let mut tables = Vec::new();
        for t in &schema.tables {
            cancel.check()?;
            let section = t.section();
            let restored = table_digest(&mut scratch, &section, &t.columns).await?;
            let whole = index.section(&section).is_some_and(|e| e.mode.is_none());
            let expected_rows = match index.section(&section) {
                Some(e) if e.mode.as_deref() == Some("delta") => index.section(&format!("{section}#keys")).map(|k| k.rows).unwrap_or(e.rows),
                Some(e) => e.rows,
                None => 0,
            };
            let archive_checksum = if whole {
                let mut d = LineDigester::default();
                let r = reader.clone();
                let ix = index.clone();
                let s2 = section.clone();
                let d2 = tokio::task::spawn_blocking(move || -> Result<RowsDigest> {
                    r.read_section(&ix, &s2, &mut |c| {
                        d.feed(c);
                        Ok(())
                    })?;
                    Ok(d.finish())
                })
                .await
                .map_err(|e| Error::new(crate::ErrorCode::Internal, e.to_string()))??;
                if d2 == restored { "match" } else { "mismatch" }.to_string()
            } else {
                "n/a".to_string()
            };
            let source = match live.as_mut() {
                Some(c) => match table_digest(c, &section, &t.columns).await {
                    Ok(d) if d == restored => "match".to_string(),
                    Ok(_) => "changed since the backup".to_string(),
                    Err(_) => "n/a".to_string(),
                },
                None => "n/a".to_string(),
            };
            let ok = restored.rows == expected_rows && archive_checksum != "mismatch";
            tables.push(RestoreTestTable { table: section, expected_rows, restored_rows: restored.rows, archive_checksum, source, ok });
        }
        let _ = sqlx::Connection::close(scratch).await;
        if let Some(c) = live {
            let _ = sqlx::Connection::close(c).await;
        }
        Ok::<_, Error>(tables)
    }
    .await;
    let dropped = postgres::drop_database(&url).await;
    let tables = result?;
    dropped.map_err(|e| Error::new(e.code, format!("the test restore passed its checks but the scratch database {name} could not be dropped: {}", e.message)))?;
    Ok(RestoreTestReport {
        archive_id: reader.header.archive_id.clone(),
        backups: opened.chain.len() as u64,
        scratch_database: name,
        ok: tables.iter().all(|t| t.ok),
        tables,
        seconds: started.elapsed().as_secs_f64(),
    })
}
