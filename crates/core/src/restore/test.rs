//! Verifying a backup by restoring it into a scratch database and comparing every table's rows
//! (count and an order-independent digest) with the archive's and the live source's.

use serde::Serialize;
use ts_rs::TS;

use crate::error::{Error, Result};

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
    let mut out = conn.copy_out_raw(&sql).await.map_err(|e| Error::new(crate::ErrorCode::Database, format!("PostgreSQL: cannot read {table}: {e}")).caused_by(&e))?;
    while let Some(bytes) = out.try_next().await.map_err(|e| Error::new(crate::ErrorCode::Database, format!("PostgreSQL: reading {table} failed: {e}")).caused_by(&e))? {
        d.feed(&bytes);
    }
    Ok(d.finish())
}

/// Verifies a backup by restoring it: into a scratch database created on the server at
/// `scratch_url` (and dropped afterwards, whatever happens), then every table's row count and
/// digest is compared with the archive's and — when `source_url` is given — with the live
/// source's (a difference there means the source changed since the backup, not a failure).
pub async fn restore_test(
    opened: &super::Opened,
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
    let name = format!("safehold_verify_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let url = postgres::database_url(scratch_url, &name)?;
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
            let expected_rows = index.rows_after_chain(&section);
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
                .map_err(|e| Error::new(crate::ErrorCode::Internal, e.to_string()).caused_by(&e))??;
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
    dropped.map_err(|e| Error::new(e.code, format!("the test restore passed its checks but the scratch database {name} could not be dropped: {}", e.message)).caused_by(&e))?;
    Ok(RestoreTestReport {
        archive_id: reader.header.archive_id.clone(),
        backups: opened.chain.len() as u64,
        scratch_database: name,
        ok: tables.iter().all(|t| t.ok),
        tables,
        seconds: started.elapsed().as_secs_f64(),
    })
}
