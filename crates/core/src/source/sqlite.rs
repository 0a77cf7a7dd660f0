//! The SQLite source: a consistent read inside one transaction, the schema from `sqlite_master`,
//! rows as JSON lines with SQLite's storage classes kept exact (integers, reals bit for bit,
//! text, blobs), and restore into a new file that appears only when complete.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqliteRow};
use futures_util::TryStreamExt;
use sqlx::{AssertSqlSafe, Connection as _, Row, SqliteConnection, TypeInfo, ValueRef};

use super::{classify, CancelToken, DumpStats, Include, Progress, ProgressSink, TableClass};
use crate::archive::{ArchiveIndex, ArchiveReader, ArchiveWriter};
use crate::connections::quote_ident;
use crate::error::{Error, ErrorCode, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SqliteObject {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub tbl_name: String,
    pub sql: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SqliteSchema {
    pub objects: Vec<SqliteObject>,
    /// The tables whose rows are in the archive, in order, with their class.
    pub tables: Vec<(String, TableClass)>,
    pub user_version: i64,
    pub application_id: i64,
}

fn db_err<'a>(path: &'a Path, what: &str) -> impl Fn(sqlx::Error) -> Error + 'a {
    let what = what.to_string();
    move |e| Error::new(ErrorCode::Database, format!("{}: cannot {what}: {e}", path.display()))
}

/// Encodes one value with its storage class.
fn encode(row: &SqliteRow, i: usize) -> Result<Value> {
    let raw = row.try_get_raw(i).map_err(|e| Error::new(ErrorCode::Database, e.to_string()))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let ty = raw.type_info().name().to_string();
    let v = match ty.as_str() {
        "INTEGER" => json!(row.try_get::<i64, _>(i).map_err(|e| Error::new(ErrorCode::Database, e.to_string()))?),
        "REAL" => {
            let f: f64 = row.try_get(i).map_err(|e| Error::new(ErrorCode::Database, e.to_string()))?;
            if f.is_finite() { json!({ "r": f }) } else { json!({ "r": f.to_string() }) }
        }
        "BLOB" => json!({ "b": hex::encode(row.try_get::<Vec<u8>, _>(i).map_err(|e| Error::new(ErrorCode::Database, e.to_string()))?) }),
        _ => json!(row.try_get::<String, _>(i).map_err(|e| Error::new(ErrorCode::Database, e.to_string()))?),
    };
    Ok(v)
}

/// Dumps the SQLite database at `path` into `archive`.
pub async fn dump(
    path: &Path,
    archive: &mut ArchiveWriter,
    include: Include,
    tenant_column: &str,
    tenants_table: &str,
    cancel: &CancelToken,
    progress: &ProgressSink,
) -> Result<DumpStats> {
    if !path.exists() {
        return Err(Error::not_found(format!("the SQLite database {} does not exist", path.display())));
    }
    let opts = SqliteConnectOptions::new().filename(path).read_only(true).create_if_missing(false);
    let mut conn = SqliteConnection::connect_with(&opts).await.map_err(db_err(path, "open it"))?;
    // One read transaction: every table is read from the same snapshot.
    sqlx::query("BEGIN").execute(&mut conn).await.map_err(db_err(path, "start a read transaction"))?;
    let objects: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY rowid",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(db_err(path, "read its schema"))?;
    let all_tables: Vec<String> = objects.iter().filter(|o| o.0 == "table").map(|o| o.1.clone()).collect();
    let mut with_tenant = std::collections::BTreeSet::new();
    let mut fks = Vec::new();
    for t in &all_tables {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pragma_table_info(?) WHERE name = ?")
            .bind(t)
            .bind(tenant_column)
            .fetch_one(&mut conn)
            .await
            .map_err(db_err(path, "read its columns"))?;
        if n > 0 {
            with_tenant.insert(t.clone());
        }
        let parents: Vec<String> = sqlx::query_scalar("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list(?)")
            .bind(t)
            .fetch_all(&mut conn)
            .await
            .map_err(db_err(path, "read its foreign keys"))?;
        fks.extend(parents.into_iter().map(|p| (t.clone(), p)));
    }
    let classes = classify(&all_tables, &|t| with_tenant.contains(t), &fks, tenants_table);
    let chosen: Vec<(String, TableClass)> =
        all_tables.iter().map(|t| (t.clone(), classes[t])).filter(|(_, c)| include.wants(*c)).collect();
    let user_version: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(&mut conn).await.map_err(db_err(path, "read user_version"))?;
    let application_id: i64 = sqlx::query_scalar("PRAGMA application_id").fetch_one(&mut conn).await.map_err(db_err(path, "read application_id"))?;
    let has_sequence: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_sequence'")
        .fetch_one(&mut conn)
        .await
        .map_err(db_err(path, "read its schema"))?;
    let schema = SqliteSchema {
        objects: objects.into_iter().map(|(kind, name, tbl_name, sql)| SqliteObject { kind, name, tbl_name, sql }).collect(),
        tables: chosen.clone(),
        user_version,
        application_id,
    };
    let mut sec = archive.section("schema", "schema");
    sec.write(&serde_json::to_vec(&schema).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?)?;
    sec.finish()?;

    let mut stats = DumpStats::default();
    let total = chosen.len() as u64 + u64::from(has_sequence > 0);
    let mut tables: Vec<String> = chosen.iter().map(|(t, _)| t.clone()).collect();
    if has_sequence > 0 {
        tables.push("sqlite_sequence".into());
    }
    for (done, table) in tables.iter().enumerate() {
        cancel.check()?;
        progress(Progress { phase: "backup".into(), table: Some(table.clone()), tables_done: done as u64, tables_total: total, rows: stats.rows, bytes: 0 });
        let mut sec = archive.section(table, "table");
        let sql = format!("SELECT * FROM {}", quote_ident(table));
        let mut rows = sqlx::query(AssertSqlSafe(sql)).fetch(&mut conn);
        let mut line = Vec::with_capacity(256);
        let mut count = 0u64;
        while let Some(row) = rows.try_next().await.map_err(db_err(path, &format!("read the table {table}")))? {
            let values: Vec<Value> = (0..row.columns().len()).map(|i| encode(&row, i)).collect::<Result<_>>()?;
            line.clear();
            serde_json::to_writer(&mut line, &values).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
            line.push(b'\n');
            sec.write(&line)?;
            count += 1;
        }
        drop(rows);
        sec.add_rows(count);
        if table != "sqlite_sequence" {
            stats.rows += count;
        }
        if table == tenants_table {
            stats.tenant_count = count;
        }
        if table != "sqlite_sequence" {
            stats.tables += 1;
        }
        sec.finish()?;
    }
    let _ = sqlx::query("COMMIT").execute(&mut conn).await;
    let _ = conn.close().await;
    Ok(stats)
}

fn decode(v: &Value) -> Result<SqlValue> {
    Ok(match v {
        Value::Null => SqlValue::Null,
        Value::Number(n) if n.is_i64() => SqlValue::Int(n.as_i64().unwrap_or_default()),
        Value::String(s) => SqlValue::Text(s.clone()),
        Value::Object(o) if o.contains_key("r") => match &o["r"] {
            Value::Number(n) => SqlValue::Real(n.as_f64().unwrap_or_default()),
            Value::String(s) => SqlValue::Real(s.parse().map_err(|_| Error::validation("a real value in the archive is unreadable"))?),
            _ => return Err(Error::validation("a real value in the archive is unreadable")),
        },
        Value::Object(o) if o.contains_key("b") => {
            SqlValue::Blob(hex::decode(o["b"].as_str().unwrap_or_default()).map_err(|_| Error::validation("a blob in the archive is unreadable"))?)
        }
        other => return Err(Error::validation(format!("an unexpected value in the archive: {other}"))),
    })
}

enum SqlValue {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// Restores the SQLite backup into a new file at `target`, which must not exist. Built as
/// `target.partial` and renamed only when complete: a failure leaves nothing.
pub async fn restore(reader: &std::sync::Arc<ArchiveReader>, index: &ArchiveIndex, target: &Path, cancel: &CancelToken, progress: &ProgressSink) -> Result<u64> {
    if target.exists() {
        return Err(Error::conflict(format!(
            "{} already exists; restore a SQLite backup into a new file (or remove the old one first)",
            target.display()
        )));
    }
    let mut schema_json = Vec::new();
    reader.read_section(index, "schema", &mut |c| {
        schema_json.extend_from_slice(c);
        Ok(())
    })?;
    let schema: SqliteSchema = serde_json::from_slice(&schema_json).map_err(|e| Error::validation(format!("the archive's schema is unreadable: {e}")))?;
    let partial = target.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let result = restore_into(reader, index, &schema, &partial, cancel, progress).await;
    match result {
        Ok(rows) => {
            std::fs::rename(&partial, target).map_err(|e| Error::io(format!("cannot move the restored database to {}", target.display()), &e))?;
            Ok(rows)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

async fn restore_into(reader: &std::sync::Arc<ArchiveReader>, index: &ArchiveIndex, schema: &SqliteSchema, path: &Path, cancel: &CancelToken, progress: &ProgressSink) -> Result<u64> {
    let opts = SqliteConnectOptions::new().filename(path).create_if_missing(true).foreign_keys(false);
    let mut conn = SqliteConnection::connect_with(&opts).await.map_err(db_err(path, "create it"))?;
    let mut tx = conn.begin().await.map_err(db_err(path, "start a transaction"))?;
    let restored: std::collections::BTreeSet<&str> = schema.tables.iter().map(|(t, _)| t.as_str()).collect();
    for o in schema.objects.iter().filter(|o| o.kind == "table" && restored.contains(o.name.as_str())) {
        if let Some(sql) = &o.sql {
            sqlx::raw_sql(AssertSqlSafe(sql.clone())).execute(&mut *tx).await.map_err(db_err(path, &format!("create the table {}", o.name)))?;
        }
    }
    let mut total = 0u64;
    let sections: Vec<&str> = index.sections.iter().filter(|s| s.kind == "table").map(|s| s.name.as_str()).collect();
    for (done, table) in sections.iter().enumerate() {
        cancel.check()?;
        progress(Progress { phase: "restore".into(), table: Some(table.to_string()), tables_done: done as u64, tables_total: sections.len() as u64, rows: total, bytes: 0 });
        if *table == "sqlite_sequence" {
            sqlx::query("DELETE FROM sqlite_sequence").execute(&mut *tx).await.map_err(db_err(path, "reset sqlite_sequence"))?;
        }
        let mut chunks = reader.section_chunks(index, table)?;
        let mut rest: Vec<u8> = Vec::new();
        while let Some(chunk) = chunks.recv().await {
            rest.extend_from_slice(&chunk?);
            let mut start = 0;
            while let Some(pos) = rest[start..].iter().position(|&b| b == b'\n') {
                let line = &rest[start..start + pos];
                start += pos + 1;
                let values: Vec<Value> = serde_json::from_slice(line).map_err(|e| Error::validation(format!("a row of {table} is unreadable: {e}")))?;
                let marks = vec!["?"; values.len()].join(", ");
                let mut q = sqlx::query(AssertSqlSafe(format!("INSERT INTO {} VALUES ({marks})", quote_ident(table))));
                for v in &values {
                    q = match decode(v)? {
                        SqlValue::Null => q.bind(None::<i64>),
                        SqlValue::Int(i) => q.bind(i),
                        SqlValue::Real(f) => q.bind(f),
                        SqlValue::Text(s) => q.bind(s),
                        SqlValue::Blob(b) => q.bind(b),
                    };
                }
                q.execute(&mut *tx).await.map_err(db_err(path, &format!("load a row into {table}")))?;
                total += 1;
            }
            rest.drain(..start);
        }
        if !rest.is_empty() {
            return Err(Error::validation(format!("the last row of {table} in the archive is incomplete")));
        }
    }
    for o in schema.objects.iter().filter(|o| o.kind == "view" || (o.kind != "table" && restored.contains(o.tbl_name.as_str()))) {
        if let Some(sql) = &o.sql {
            sqlx::raw_sql(AssertSqlSafe(sql.clone())).execute(&mut *tx).await.map_err(db_err(path, &format!("create {} {}", o.kind, o.name)))?;
        }
    }
    sqlx::raw_sql(AssertSqlSafe(format!("PRAGMA user_version = {}; PRAGMA application_id = {};", schema.user_version, schema.application_id)))
        .execute(&mut *tx)
        .await
        .map_err(db_err(path, "set its version"))?;
    tx.commit().await.map_err(db_err(path, "commit"))?;
    conn.close().await.map_err(db_err(path, "close it"))?;
    Ok(total)
}
