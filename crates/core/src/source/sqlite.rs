//! The SQLite source: a consistent read inside one transaction, the schema from `sqlite_master`,
//! rows as JSON lines with SQLite's storage classes kept exact (integers, reals bit for bit,
//! text, blobs), and restore into a new file that appears only when complete.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqliteRow};
use futures_util::TryStreamExt;
use sqlx::sqlite::SqliteArguments;
use sqlx::{AssertSqlSafe, Column as _, Connection as _, Row, Sqlite, SqliteConnection, TypeInfo, ValueRef};

use super::{classify, CancelToken, DumpStats, Include, Progress, ProgressSink, TableClass};
use crate::archive::{ArchiveIndex, ArchiveReader, ArchiveWriter};
use super::quote_ident;
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

/// A SQLite error as the engine says it: the file, what it could not do, SQLite's words (kept as
/// the cause too).
pub(crate) fn db_err<'a>(path: &'a Path, what: &str) -> impl Fn(sqlx::Error) -> Error + 'a {
    let what = what.to_string();
    move |e| Error::new(ErrorCode::Database, format!("{}: cannot {what}: {e}", path.display())).caused_by(&e)
}

/// A value with its SQLite storage class.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum V {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

pub(crate) fn row_err(e: sqlx::Error) -> Error {
    Error::new(ErrorCode::Database, e.to_string()).caused_by(&e)
}

impl V {
    /// Column `i` of a row, in its storage class.
    pub(crate) fn of(row: &SqliteRow, i: usize) -> Result<V> {
        let raw = row.try_get_raw(i).map_err(row_err)?;
        if raw.is_null() {
            return Ok(V::Null);
        }
        let ty = raw.type_info().name().to_string();
        Ok(match ty.as_str() {
            "INTEGER" => V::Int(row.try_get(i).map_err(row_err)?),
            "REAL" => V::Real(row.try_get(i).map_err(row_err)?),
            "BLOB" => V::Blob(row.try_get(i).map_err(row_err)?),
            _ => V::Text(row.try_get(i).map_err(row_err)?),
        })
    }

    /// The value as text (a blob as `\x` and hex, as PostgreSQL writes bytea); NULL stays `None`.
    pub(crate) fn text(&self) -> Option<String> {
        match self {
            V::Null => None,
            V::Int(i) => Some(i.to_string()),
            V::Real(f) => Some(f.to_string()),
            V::Text(s) => Some(s.clone()),
            V::Blob(b) => Some(format!("\\x{}", hex::encode(b))),
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self, V::Null)
    }

    pub(crate) fn bind<'q>(&self, q: sqlx::query::Query<'q, Sqlite, SqliteArguments>) -> sqlx::query::Query<'q, Sqlite, SqliteArguments> {
        match self.clone() {
            V::Null => q.bind(None::<i64>),
            V::Int(i) => q.bind(i),
            V::Real(f) => q.bind(f),
            V::Text(s) => q.bind(s),
            V::Blob(b) => q.bind(b),
        }
    }

    /// A value of a JSON Lines file: booleans as 1 and 0 (SQLite has no boolean), objects and
    /// arrays as their JSON text.
    pub(crate) fn from_json(v: &serde_json::Value) -> V {
        match v {
            serde_json::Value::Null => V::Null,
            serde_json::Value::Bool(b) => V::Int(i64::from(*b)),
            serde_json::Value::Number(n) => n.as_i64().map(V::Int).unwrap_or_else(|| V::Real(n.as_f64().unwrap_or_default())),
            serde_json::Value::String(s) => V::Text(s.clone()),
            other => V::Text(other.to_string()),
        }
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        match self {
            V::Null => serde_json::Value::Null,
            V::Int(i) => (*i).into(),
            V::Real(f) => serde_json::Number::from_f64(*f).map(serde_json::Value::Number).unwrap_or_else(|| f.to_string().into()),
            other => other.text().unwrap_or_default().into(),
        }
    }
}

/// Encodes one value with its storage class.
fn encode(row: &SqliteRow, i: usize) -> Result<Value> {
    Ok(match V::of(row, i)? {
        V::Null => Value::Null,
        V::Int(n) => json!(n),
        V::Real(f) if f.is_finite() => json!({ "r": f }),
        V::Real(f) => json!({ "r": f.to_string() }),
        V::Blob(b) => json!({ "b": hex::encode(b) }),
        V::Text(t) => json!(t),
    })
}

/// What an incremental or differential backup needs of its parent: its schema (a table whose
/// definition changed is carried whole) and, per table with a primary key, the digest of every
/// row at the parent's snapshot (its `<table>#keys` section).
pub struct Parent {
    reader: std::sync::Arc<ArchiveReader>,
    index: ArchiveIndex,
    schema: SqliteSchema,
}

impl Parent {
    /// Reads what is needed from the parent archive (unlocked).
    pub fn from_archive(reader: ArchiveReader) -> Result<Self> {
        let index = reader.index()?;
        let schema = read_schema(&reader, &index)?;
        Ok(Self { reader: std::sync::Arc::new(reader), index, schema })
    }

    /// The parent's row digests of `table` (key → digest), when the parent has them and the
    /// table's definition is unchanged.
    fn digests(&self, table: &str, create_sql: Option<&str>) -> Result<Option<std::collections::HashMap<String, u64>>> {
        let same = self.schema.objects.iter().any(|o| o.kind == "table" && o.name == table && o.sql.as_deref() == create_sql);
        let section = format!("{table}#keys");
        if !same || self.index.section(&section).is_none() {
            return Ok(None);
        }
        let mut map = std::collections::HashMap::new();
        read_lines(&self.reader, &self.index, &section, &mut |line| {
            let (key, digest) = split_key_line(line, table)?;
            map.insert(key.to_string(), digest);
            Ok(())
        })?;
        Ok(Some(map))
    }
}

/// A `#keys` line: the key's values as JSON, a tab, the row's digest in hex.
fn split_key_line<'a>(line: &'a [u8], table: &str) -> Result<(&'a str, u64)> {
    let bad = || Error::validation(format!("a key of {table} in the archive is unreadable"));
    let text = std::str::from_utf8(line).map_err(|_| bad())?;
    let (key, digest) = text.rsplit_once('\t').ok_or_else(bad)?;
    Ok((key, u64::from_str_radix(digest, 16).map_err(|_| bad())?))
}

/// The first 8 bytes of a row line's SHA-256: equal lines, equal rows.
fn row_digest(line: &[u8]) -> u64 {
    use sha2::Digest;
    let h = sha2::Sha256::digest(line);
    u64::from_be_bytes(h[..8].try_into().unwrap_or([0; 8]))
}

/// Calls `each` with every line of a section, without holding the section in memory.
fn read_lines(reader: &ArchiveReader, index: &ArchiveIndex, section: &str, each: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut rest: Vec<u8> = Vec::new();
    reader.read_section(index, section, &mut |chunk| {
        rest.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(pos) = rest[start..].iter().position(|&b| b == b'\n') {
            each(&rest[start..start + pos])?;
            start += pos + 1;
        }
        rest.drain(..start);
        Ok(())
    })?;
    if !rest.is_empty() {
        return Err(Error::validation(format!("the last line of {section} in the archive is incomplete")));
    }
    Ok(())
}

fn read_schema(reader: &ArchiveReader, index: &ArchiveIndex) -> Result<SqliteSchema> {
    let mut schema_json = Vec::new();
    reader.read_section(index, "schema", &mut |c| {
        schema_json.extend_from_slice(c);
        Ok(())
    })?;
    serde_json::from_slice(&schema_json).map_err(|e| Error::validation(format!("the archive's schema is unreadable: {e}")).caused_by(&e))
}

/// Dumps the SQLite database at `path` into `archive`: every table whole, or — with a `parent` —
/// for each table with a primary key only the rows that are new or changed since the parent
/// (their digests differ from the parent's), plus the key and digest of every row, from which
/// deletes are found and the next incremental backup starts.
#[allow(clippy::too_many_arguments)]
pub async fn dump(
    path: &Path,
    archive: &mut ArchiveWriter,
    include: Include,
    tenant_column: &str,
    tenants_table: &str,
    parent: Option<&Parent>,
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
    sec.write(&serde_json::to_vec(&schema).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))?)?;
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
        let key_columns: Vec<String> = if table == "sqlite_sequence" {
            Vec::new()
        } else {
            sqlx::query_scalar("SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk").bind(table).fetch_all(&mut conn).await.map_err(db_err(path, "read its primary keys"))?
        };
        let create_sql = schema.objects.iter().find(|o| o.kind == "table" && &o.name == table).and_then(|o| o.sql.as_deref());
        let before = match parent {
            Some(p) if !key_columns.is_empty() => p.digests(table, create_sql)?,
            _ => None,
        };
        let mut sec = archive.begin(table, "table");
        if before.is_some() {
            sec.set_mode("delta");
        }
        // Tables with a primary key also list every row's key and digest.
        let mut keys_sec = (!key_columns.is_empty()).then(|| archive.begin(&format!("{table}#keys"), "keys"));
        let sql = format!("SELECT * FROM {}", quote_ident(table));
        let mut rows = sqlx::query(AssertSqlSafe(sql)).fetch(&mut conn);
        let mut line = Vec::with_capacity(256);
        let mut key_line = Vec::with_capacity(64);
        let mut key_at: Option<Vec<usize>> = None;
        let (mut written, mut all) = (0u64, 0u64);
        while let Some(row) = rows.try_next().await.map_err(db_err(path, &format!("read the table {table}")))? {
            let values: Vec<Value> = (0..row.columns().len()).map(|i| encode(&row, i)).collect::<Result<_>>()?;
            line.clear();
            serde_json::to_writer(&mut line, &values).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))?;
            line.push(b'\n');
            all += 1;
            if let Some(ks) = keys_sec.as_mut() {
                let at = key_at.get_or_insert_with(|| key_columns.iter().filter_map(|k| row.columns().iter().position(|c| c.name() == k)).collect());
                let key: Vec<&Value> = at.iter().map(|&i| &values[i]).collect();
                let digest = row_digest(&line);
                key_line.clear();
                serde_json::to_writer(&mut key_line, &key).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))?;
                let unchanged = before.as_ref().is_some_and(|b| std::str::from_utf8(&key_line).ok().and_then(|k| b.get(k)) == Some(&digest));
                key_line.extend_from_slice(format!("\t{digest:016x}\n").as_bytes());
                archive.write(ks, &key_line)?;
                if unchanged {
                    continue;
                }
            }
            archive.write(&mut sec, &line)?;
            written += 1;
        }
        drop(rows);
        sec.add_rows(written);
        archive.end(sec)?;
        if let Some(mut ks) = keys_sec {
            ks.add_rows(all);
            archive.end(ks)?;
        }
        if table != "sqlite_sequence" {
            stats.rows += written;
            stats.tables += 1;
        }
        if table == tenants_table {
            stats.tenant_count = all;
        }
    }
    progress(Progress { phase: "backup".into(), table: None, tables_done: total, tables_total: total, rows: stats.rows, bytes: 0 });
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
/// `target.<tag>.partial` and renamed only when complete: a failure leaves nothing.
/// `chain` is the backup and its ancestors, oldest (the full) first, each with its index; the
/// state restored is the newest one's.
pub async fn restore(chain: &[(std::sync::Arc<ArchiveReader>, ArchiveIndex)], target: &Path, cancel: &CancelToken, progress: &ProgressSink) -> Result<u64> {
    if target.exists() {
        return Err(Error::conflict(format!(
            "{} already exists; restore a SQLite backup into a new file (or remove the old one first)",
            target.display()
        )));
    }
    let (reader, index) = chain.last().ok_or_else(|| Error::new(ErrorCode::Internal, "an empty restore chain"))?;
    let schema = read_schema(reader, index)?;
    // A name of its own beside the target, 0600 from the start (the restored rows are the
    // owner's alone), locked while it is built.
    let partial = crate::private::partial_beside(target);
    let held = crate::private::create_new(&partial).map_err(|e| Error::io(format!("cannot create {}", partial.display()), &e))?;
    let _ = crate::private::lock(&held);
    let result = restore_into(chain, &schema, &partial, cancel, progress).await;
    match result {
        Ok(rows) => {
            std::fs::rename(&partial, target).map_err(|e| {
                let _ = std::fs::remove_file(&partial);
                Error::io(format!("cannot move the restored database to {}", target.display()), &e)
            })?;
            drop(held);
            Ok(rows)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn bind_values<'q>(mut q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>, values: &[Value]) -> Result<sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>> {
    for v in values {
        q = match decode(v)? {
            SqlValue::Null => q.bind(None::<i64>),
            SqlValue::Int(i) => q.bind(i),
            SqlValue::Real(f) => q.bind(f),
            SqlValue::Text(s) => q.bind(s),
            SqlValue::Blob(b) => q.bind(b),
        };
    }
    Ok(q)
}

/// Inserts every row of a section into `table`; returns the rows.
async fn insert_rows(tx: &mut SqliteConnection, reader: &std::sync::Arc<ArchiveReader>, index: &ArchiveIndex, table: &str, path: &Path) -> Result<u64> {
    // Chunks of whole lines: one that does not end with a newline is a last row cut short.
    let mut chunks = reader.section_lines(index, table)?;
    let mut total = 0u64;
    while let Some(chunk) = chunks.recv().await {
        let chunk = chunk?;
        let Some(lines) = chunk.strip_suffix(b"\n") else {
            return Err(Error::validation(format!("the last row of {table} in the archive is incomplete")));
        };
        for line in lines.split(|&b| b == b'\n') {
            let values: Vec<Value> = serde_json::from_slice(line).map_err(|e| Error::validation(format!("a row of {table} is unreadable: {e}")).caused_by(&e))?;
            let marks = vec!["?"; values.len()].join(", ");
            let q = bind_values(sqlx::query(AssertSqlSafe(format!("INSERT INTO {} VALUES ({marks})", quote_ident(table)))), &values)?;
            q.execute(&mut *tx).await.map_err(db_err(path, &format!("load a row into {table}")))?;
            total += 1;
        }
    }
    Ok(total)
}

/// Applies a chain's deltas to `table` in one pass, however many links the chain has (as the
/// PostgreSQL restore does; one link at a time scanned the table once per link): the newest
/// version of each changed row (a later link's wins) and the newest link's key list; every row
/// whose key the list lacks, or that has a newer version, is deleted (the table scanned once),
/// and the newest versions of the rows the list keeps are inserted. Returns the table's rows
/// afterwards, checked against the list.
async fn apply_deltas(tx: &mut SqliteConnection, links: &[(std::sync::Arc<ArchiveReader>, ArchiveIndex)], table: &str, path: &Path) -> Result<u64> {
    let Some((last_reader, last_index)) = links.last() else { return Err(Error::new(ErrorCode::Internal, "a chain without deltas")) };
    for (r, ix) in links {
        let entry = ix.section(table).ok_or_else(|| Error::validation(format!("{table} is missing from backup {} of the chain", r.header.archive_id)))?;
        if entry.mode.as_deref() != Some("delta") {
            return Err(Error::validation(format!("{table}: backup {} of the chain is not a delta", r.header.archive_id)));
        }
    }
    let key_columns: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk").bind(table).fetch_all(&mut *tx).await.map_err(db_err(path, "read its primary keys"))?;
    if key_columns.is_empty() {
        return Err(Error::validation(format!("{table}: a delta for a table without a primary key")));
    }
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid").bind(table).fetch_all(&mut *tx).await.map_err(db_err(path, "read its columns"))?;
    let at: Vec<usize> = key_columns.iter().filter_map(|k| names.iter().position(|n| n == k)).collect();
    let key_text = |key: &[Value]| serde_json::to_string(key).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e));
    let mut keep = std::collections::HashSet::new();
    read_lines(last_reader, last_index, &format!("{table}#keys"), &mut |line| {
        keep.insert(split_key_line(line, table)?.0.to_string());
        Ok(())
    })?;
    // The newest version of every changed row, by key.
    let mut newest: std::collections::HashMap<String, Vec<Value>> = std::collections::HashMap::new();
    for (reader, index) in links {
        read_lines(reader, index, table, &mut |line| {
            let values: Vec<Value> = serde_json::from_slice(line).map_err(|e| Error::validation(format!("a row of {table} is unreadable: {e}")).caused_by(&e))?;
            let key: Vec<Value> = at.iter().map(|&i| values.get(i).cloned().unwrap_or(Value::Null)).collect();
            newest.insert(key_text(&key)?, values);
            Ok(())
        })?;
    }
    let cols = key_columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
    let matches = key_columns.iter().map(|c| format!("{} IS ?", quote_ident(c))).collect::<Vec<_>>().join(" AND ");
    let delete = format!("DELETE FROM {} WHERE {matches}", quote_ident(table));
    let mut gone: Vec<Vec<Value>> = Vec::new();
    {
        let mut rows = sqlx::query(AssertSqlSafe(format!("SELECT {cols} FROM {}", quote_ident(table)))).fetch(&mut *tx);
        while let Some(row) = rows.try_next().await.map_err(db_err(path, &format!("read the table {table}")))? {
            let key: Vec<Value> = (0..key_columns.len()).map(|i| encode(&row, i)).collect::<Result<_>>()?;
            let text = key_text(&key)?;
            if !keep.contains(&text) || newest.contains_key(&text) {
                gone.push(key);
            }
        }
    }
    for key in &gone {
        bind_values(sqlx::query(AssertSqlSafe(delete.clone())), key)?.execute(&mut *tx).await.map_err(db_err(path, &format!("apply a delete to {table}")))?;
    }
    let marks = vec!["?"; names.len()].join(", ");
    let insert = format!("INSERT INTO {} VALUES ({marks})", quote_ident(table));
    // In the keys' order: the same restore gives the same file.
    let mut newest: Vec<(String, Vec<Value>)> = newest.into_iter().collect();
    newest.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, values) in &newest {
        if keep.contains(key) {
            bind_values(sqlx::query(AssertSqlSafe(insert.clone())), values)?.execute(&mut *tx).await.map_err(db_err(path, &format!("load a row into {table}")))?;
        }
    }
    let have: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {}", quote_ident(table)))).fetch_one(&mut *tx).await.map_err(db_err(path, "count its rows"))?;
    let have = u64::try_from(have).unwrap_or(0);
    let expected = last_index.section(&format!("{table}#keys")).map(|k| k.rows).unwrap_or(u64::MAX);
    if have != expected {
        return Err(Error::validation(format!("{table}: the backup says {expected} rows but {have} were restored")));
    }
    Ok(have)
}

async fn restore_into(chain: &[(std::sync::Arc<ArchiveReader>, ArchiveIndex)], schema: &SqliteSchema, path: &Path, cancel: &CancelToken, progress: &ProgressSink) -> Result<u64> {
    let (_, index) = chain.last().ok_or_else(|| Error::new(ErrorCode::Internal, "an empty restore chain"))?;
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
        // The newest whole copy of the table in the chain, then every later delta in order.
        let base = chain
            .iter()
            .rposition(|(_, ix)| ix.section(table).is_some_and(|e| e.mode.is_none()))
            .ok_or_else(|| Error::validation(format!("no backup of the chain holds the table {table} whole")))?;
        let (base_reader, base_index) = &chain[base];
        let mut rows = insert_rows(&mut tx, base_reader, base_index, table, path).await?;
        if base + 1 < chain.len() {
            rows = apply_deltas(&mut tx, &chain[base + 1..], table, path).await?;
        }
        if *table != "sqlite_sequence" {
            total += rows;
        }
    }
    progress(Progress { phase: "restore".into(), table: None, tables_done: sections.len() as u64, tables_total: sections.len() as u64, rows: total, bytes: 0 });
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

/// How many rows' foreign keys point at nothing, per (table, the table it should point into,
/// which key of the table).
pub(crate) async fn fk_violations(tx: &mut SqliteConnection, path: &Path) -> Result<std::collections::BTreeMap<(String, String, i64), i64>> {
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as("SELECT \"table\", parent, fkid, count(*) FROM pragma_foreign_key_check GROUP BY 1, 2, 3")
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err(path, "check its foreign keys"))?;
    Ok(rows.into_iter().map(|(t, p, k, n)| ((t, p, k), n)).collect())
}

/// What changed between the rows set aside in `before` and the rows of `now` (a table, or a
/// parenthesised query): (inserted, updated, deleted), rows paired by `keys` (compared with `=`,
/// which an index serves; a NULL in a key matches nothing, as in a unique index) and compared
/// whole with `IS`; without a key, whole rows are paired and nothing counts as updated.
async fn count_changes(tx: &mut SqliteConnection, path: &Path, now: &str, before: &str, keys: &[String], columns: &[String]) -> Result<(u64, u64, u64)> {
    let whole = columns.iter().map(|c| format!("b.{0} IS t.{0}", quote_ident(c))).collect::<Vec<_>>().join(" AND ");
    let by_key = keys.iter().map(|c| format!("b.{0} = t.{0}", quote_ident(c))).collect::<Vec<_>>().join(" AND ");
    let (same_key, same_row) = if keys.is_empty() { (whole.clone(), whole) } else { (by_key.clone(), format!("{by_key} AND {whole}")) };
    let q = |sql: String| sqlx::query_scalar::<sqlx::Sqlite, i64>(AssertSqlSafe(sql));
    let fail = db_err(path, "count the changed rows");
    let inserted = q(format!("SELECT count(*) FROM {now} t WHERE NOT EXISTS (SELECT 1 FROM {before} b WHERE {same_key})")).fetch_one(&mut *tx).await.map_err(&fail)?;
    let deleted = q(format!("SELECT count(*) FROM {before} t WHERE NOT EXISTS (SELECT 1 FROM {now} b WHERE {same_key})")).fetch_one(&mut *tx).await.map_err(&fail)?;
    let updated = if keys.is_empty() {
        0
    } else {
        q(format!("SELECT count(*) FROM {now} t WHERE EXISTS (SELECT 1 FROM {before} b WHERE {same_key}) AND NOT EXISTS (SELECT 1 FROM {before} b WHERE {same_row})")).fetch_one(&mut *tx).await.map_err(&fail)?
    };
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok((n(inserted), n(updated), n(deleted)))
}

/// Ends a restore's transaction: refused (rolled back, saying `refusal`) when rows are left
/// pointing at rows that are gone and were not before; else committed, or rolled back in a dry run.
pub(crate) async fn finish(
    mut tx: sqlx::Transaction<'_, sqlx::Sqlite>,
    path: &Path,
    before: &std::collections::BTreeMap<(String, String, i64), i64>,
    commit: bool,
    refusal: impl Fn(i64, String) -> String,
) -> Result<()> {
    if let Some((rows, pairs)) = broken_since(before, &fk_violations(&mut tx, path).await?) {
        return Err(Error::conflict(refusal(rows, pairs)));
    }
    if commit {
        tx.commit().await.map_err(db_err(path, "commit"))
    } else {
        tx.rollback().await.map_err(db_err(path, "roll back the dry run"))
    }
}

/// The foreign keys broken now that were not before: how many rows, and which tables point into
/// which (`documents → projects`); `None` when nothing new is broken.
fn broken_since(before: &std::collections::BTreeMap<(String, String, i64), i64>, after: &std::collections::BTreeMap<(String, String, i64), i64>) -> Option<(i64, String)> {
    let new: Vec<(String, i64)> = after
        .iter()
        .filter_map(|((t, p, k), n)| {
            let was = before.get(&(t.clone(), p.clone(), *k)).copied().unwrap_or(0);
            (*n > was).then(|| (format!("{t} → {p}"), n - was))
        })
        .collect();
    let mut pairs: Vec<&str> = new.iter().map(|(w, _)| w.as_str()).collect();
    pairs.dedup();
    (!new.is_empty()).then(|| (new.iter().map(|(_, n)| n).sum(), pairs.join(", ")))
}

/// A selective restore into a SQLite database: the tables `tables` replaced by the backup's, in
/// one transaction (committed only when `commit`; a dry run gives the same counts and changes
/// nothing). A table the file lacks is created as the backup has it, with its indexes and
/// triggers; a file that does not exist is made with the chosen tables only. Foreign keys are
/// checked at the end: a restore that would leave rows pointing at rows that are gone is refused
/// and changes nothing.
pub async fn restore_tables(
    chain: &[(std::sync::Arc<ArchiveReader>, ArchiveIndex)],
    target: &Path,
    tables: &std::collections::BTreeSet<String>,
    commit: bool,
    cancel: &CancelToken,
    progress: &ProgressSink,
) -> Result<Vec<super::pg_apply::TableChange>> {
    let (reader, index) = chain.last().ok_or_else(|| Error::new(ErrorCode::Internal, "an empty restore chain"))?;
    let schema = read_schema(reader, index)?;
    for t in tables {
        if !schema.tables.iter().any(|(n, _)| n == t) {
            return Err(Error::not_found(format!("the backup has no table {t}")));
        }
    }
    if !target.exists() {
        // A new file with the chosen tables only, made beside the target and renamed when complete.
        let mut only = schema.clone();
        only.tables.retain(|(n, _)| tables.contains(n));
        only.objects.retain(|o| o.kind != "table" || tables.contains(&o.name) || o.name == "sqlite_sequence");
        only.objects.retain(|o| o.kind == "table" || tables.contains(&o.tbl_name));
        let partial = crate::private::partial_beside(target);
        let held = crate::private::create_new(&partial).map_err(|e| Error::io(format!("cannot create {}", partial.display()), &e))?;
        let _ = crate::private::lock(&held);
        let filtered: Vec<(std::sync::Arc<ArchiveReader>, ArchiveIndex)> = chain
            .iter()
            .map(|(r, ix)| {
                let mut ix = ix.clone();
                // (sqlite_sequence exists only where a chosen table counts with AUTOINCREMENT.)
                let counted = only.objects.iter().any(|o| o.kind == "table" && o.name != "sqlite_sequence" && o.sql.as_deref().is_some_and(|s| s.to_ascii_uppercase().contains("AUTOINCREMENT")));
                ix.sections.retain(|s| s.kind != "table" || tables.contains(&s.name) || (s.name == "sqlite_sequence" && counted));
                (r.clone(), ix)
            })
            .collect();
        let result = restore_into(&filtered, &only, &partial, cancel, progress).await;
        let out = match result {
            Ok(_) if commit => std::fs::rename(&partial, target).map_err(|e| Error::io(format!("cannot move the restored database to {}", target.display()), &e)),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if out.is_err() || !commit {
            let _ = std::fs::remove_file(&partial);
        }
        out?;
        drop(held);
        return Ok(tables
            .iter()
            .map(|t| {
                let n = index.section(t).map(|e| e.rows).unwrap_or(0);
                let n = index.section(&format!("{t}#keys")).map(|k| k.rows).unwrap_or(n);
                super::pg_apply::TableChange { table: t.clone(), rows_in_backup: n, inserted: n, updated: 0, deleted: 0 }
            })
            .collect());
    }
    // Foreign keys not enforced row by row (a parent's every row would scan its children's tables):
    // checked once at the end against what was broken before.
    let opts = SqliteConnectOptions::new().filename(target).create_if_missing(false).foreign_keys(false);
    let mut conn = SqliteConnection::connect_with(&opts).await.map_err(db_err(target, "open it"))?;
    let mut tx = conn.begin().await.map_err(db_err(target, "start a transaction"))?;
    let before = fk_violations(&mut tx, target).await?;
    let mut changes = Vec::new();
    let order: Vec<&String> = schema.tables.iter().map(|(n, _)| n).filter(|n| tables.contains(*n)).collect();
    for (done, table) in order.iter().enumerate() {
        cancel.check()?;
        progress(Progress { phase: "restore".into(), table: Some(table.to_string()), tables_done: done as u64, tables_total: order.len() as u64, rows: 0, bytes: 0 });
        let qt = quote_ident(table);
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?)").bind(table.as_str()).fetch_one(&mut *tx).await.map_err(db_err(target, "read its tables"))?;
        let created = !exists;
        if created {
            let sql = schema.objects.iter().find(|o| o.kind == "table" && o.name == **table).and_then(|o| o.sql.clone())
                .ok_or_else(|| Error::validation(format!("the backup has no definition of the table {table}")))?;
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await.map_err(db_err(target, &format!("create the table {table}")))?;
        }
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid").bind(table.as_str()).fetch_all(&mut *tx).await.map_err(db_err(target, "read its columns"))?;
        let keys: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk").bind(table.as_str()).fetch_all(&mut *tx).await.map_err(db_err(target, "read its primary keys"))?;
        // The rows as they are, to count what changes; then the backup's in their place.
        sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE IF EXISTS temp._sh_before; CREATE TEMP TABLE _sh_before AS SELECT * FROM main.{qt}; DELETE FROM main.{qt};")))
            .execute(&mut *tx)
            .await
            .map_err(db_err(target, &format!("set aside the rows of {table}")))?;
        let base = chain
            .iter()
            .rposition(|(_, ix)| ix.section(table).is_some_and(|e| e.mode.is_none()))
            .ok_or_else(|| Error::validation(format!("no backup of the chain holds the table {table} whole")))?;
        let (base_reader, base_index) = &chain[base];
        let loaded = insert_rows(&mut tx, base_reader, base_index, table, target).await;
        let mut rows = loaded.map_err(|e| if e.message.contains("values for") || e.message.contains("columns but") {
            Error::validation(format!("the table {table} in {} has other columns ({}) than the backup's: restore it into a new file instead", target.display(), names.join(", ")))
        } else { e })?;
        if base + 1 < chain.len() {
            rows = apply_deltas(&mut tx, &chain[base + 1..], table, target).await?;
        }
        if !keys.is_empty() {
            let list = keys.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
            sqlx::raw_sql(AssertSqlSafe(format!("CREATE INDEX temp._sh_before_key ON _sh_before ({list})"))).execute(&mut *tx).await.map_err(db_err(target, "index a temporary table"))?;
        }
        let (inserted, updated, deleted) = count_changes(&mut tx, target, &format!("main.{qt}"), "temp._sh_before", &keys, &names).await?;
        sqlx::query("DROP TABLE temp._sh_before").execute(&mut *tx).await.map_err(db_err(target, "drop a temporary table"))?;
        if created {
            for o in schema.objects.iter().filter(|o| o.kind != "table" && o.kind != "view" && o.tbl_name == **table) {
                if let Some(sql) = &o.sql {
                    sqlx::raw_sql(AssertSqlSafe(sql.clone())).execute(&mut *tx).await.map_err(db_err(target, &format!("create {} {}", o.kind, o.name)))?;
                }
            }
        }
        changes.push(super::pg_apply::TableChange { table: table.to_string(), rows_in_backup: rows, inserted, updated, deleted });
    }
    // AUTOINCREMENT counters of the restored tables as the backup had them.
    if let Some(base) = chain.iter().rposition(|(_, ix)| ix.section("sqlite_sequence").is_some()) {
        let (r, ix) = &chain[base];
        let mut seqs: Vec<(String, i64)> = Vec::new();
        read_lines(r, ix, "sqlite_sequence", &mut |line| {
            let v: Vec<Value> = serde_json::from_slice(line).map_err(|e| Error::validation(format!("a row of sqlite_sequence is unreadable: {e}")).caused_by(&e))?;
            if let (Some(Value::String(n)), Some(s)) = (v.first(), v.get(1).and_then(Value::as_i64)) {
                seqs.push((n.clone(), s));
            }
            Ok(())
        })?;
        for (name, seq) in seqs.into_iter().filter(|(n, _)| tables.contains(n)) {
            sqlx::query("DELETE FROM sqlite_sequence WHERE name = ?").bind(&name).execute(&mut *tx).await.map_err(db_err(target, "set a counter"))?;
            sqlx::query("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)").bind(&name).bind(seq).execute(&mut *tx).await.map_err(db_err(target, "set a counter"))?;
        }
    }
    finish(tx, target, &before, commit, |rows, pairs| {
        format!("the restored tables would leave {rows} rows pointing at rows that are gone ({pairs}); restore the tables they point at too, or choose others; nothing was changed")
    })
    .await?;
    let _ = conn.close().await;
    Ok(changes)
}

/// A foreign key: the table it points into, its columns, and the columns they point at (none:
/// the parent's primary key).
type ForeignKey = (String, Vec<String>, Vec<Option<String>>);

/// One table of a SQLite tenant restore: how its rows are found to be the tenant's.
pub(crate) struct TenantTable {
    pub(crate) name: String,
    columns: Vec<String>,
    keys: Vec<String>,
    /// Condition on alias `t` in schema `{s}` (replaced by `main` or `bk`), the tenants' ids in
    /// `temp._sh_tenant`.
    pub(crate) predicate: String,
}

/// The tables of a SQLite database that hold a tenant's rows: the tenants table (the tenant's
/// row), every table with the tenant column, and tables reached from those through foreign keys
/// (a child whose key points at a tenant's row is the tenant's), nearest first.
pub(crate) async fn tenant_tables(conn: &mut SqliteConnection, path: &Path, tenant_column: &str, tenants_table: &str) -> Result<Vec<TenantTable>> {
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err(path, "read its tables"))?;
    let mut info = std::collections::BTreeMap::new();
    for n in &names {
        let cols: Vec<(String, i64)> = sqlx::query_as("SELECT name, pk FROM pragma_table_info(?) ORDER BY cid").bind(n).fetch_all(&mut *conn).await.map_err(db_err(path, "read its columns"))?;
        // (id, parent, from, to) of each foreign key column.
        let fks: Vec<(i64, String, String, Option<String>)> =
            sqlx::query_as("SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?) ORDER BY id, seq").bind(n).fetch_all(&mut *conn).await.map_err(db_err(path, "read its foreign keys"))?;
        info.insert(n.clone(), (cols, fks));
    }
    let keys_of = |t: &str| -> Vec<String> {
        let mut k: Vec<(i64, String)> = info.get(t).map(|(c, _)| c.iter().filter(|(_, pk)| *pk > 0).map(|(n, pk)| (*pk, n.clone())).collect()).unwrap_or_default();
        k.sort();
        k.into_iter().map(|(_, n)| n).collect()
    };
    let q = |s: &str| quote_ident(s);
    let mut out: Vec<TenantTable> = Vec::new();
    if let Some((cols, _)) = info.get(tenants_table) {
        let key = keys_of(tenants_table);
        if key.len() != 1 {
            return Err(Error::validation(format!("the tenants table {tenants_table} needs a one-column primary key")));
        }
        out.push(TenantTable { name: tenants_table.into(), columns: cols.iter().map(|c| c.0.clone()).collect(), keys: key.clone(), predicate: format!("t.{} IN (SELECT id FROM temp._sh_tenant)", q(&key[0])) });
    }
    for (n, (cols, _)) in &info {
        if n != tenants_table && cols.iter().any(|c| c.0 == tenant_column) {
            out.push(TenantTable { name: n.clone(), columns: cols.iter().map(|c| c.0.clone()).collect(), keys: keys_of(n), predicate: format!("t.{} IN (SELECT id FROM temp._sh_tenant)", q(tenant_column)) });
        }
    }
    if out.is_empty() {
        return Err(Error::validation(format!("no table of {} has the tenant column {tenant_column} or is named {tenants_table}: set the connection's tenant column", path.display())));
    }
    // Children reached through foreign keys, nearest first.
    loop {
        let mut grew = false;
        for (n, (cols, fks)) in &info {
            if out.iter().any(|t| &t.name == n) {
                continue;
            }
            let mut by_id: std::collections::BTreeMap<i64, ForeignKey> = std::collections::BTreeMap::new();
            for (id, parent, from, to) in fks {
                let e = by_id.entry(*id).or_insert_with(|| (parent.clone(), Vec::new(), Vec::new()));
                e.1.push(from.clone());
                e.2.push(to.clone());
            }
            let ways: Vec<String> = by_id
                .values()
                .filter(|(parent, _, _)| parent != n)
                .filter_map(|(parent, from, to)| {
                    let p = out.iter().find(|t| &t.name == parent)?;
                    let to: Vec<String> = if to.iter().all(Option::is_some) { to.iter().flatten().cloned().collect() } else { keys_of(parent) };
                    (to.len() == from.len()).then(|| {
                        let f = from.iter().map(|c| format!("t.{}", q(c))).collect::<Vec<_>>().join(", ");
                        let tcols = to.iter().map(|c| format!("t.{}", q(c))).collect::<Vec<_>>().join(", ");
                        format!("({f}) IN (SELECT {tcols} FROM {{s}}.{} t WHERE {})", q(&p.name), p.predicate)
                    })
                })
                .collect();
            if !ways.is_empty() {
                out.push(TenantTable { name: n.clone(), columns: cols.iter().map(|c| c.0.clone()).collect(), keys: keys_of(n), predicate: ways.join(" OR ") });
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    Ok(out)
}

/// A tenant-only restore into a SQLite database, in place (the tenant keeps its ids): the
/// tenant's rows in every tenant table replaced by its rows in the backup, other tenants' rows
/// untouched, in one transaction (committed only when `commit`). Refused, changing nothing, when
/// a restored row's key is held by another tenant's row, or rows would be left pointing at rows
/// that are gone.
#[allow(clippy::too_many_arguments)]
pub async fn restore_tenant(
    chain: &[(std::sync::Arc<ArchiveReader>, ArchiveIndex)],
    target: &Path,
    tenant_column: &str,
    tenants_table: &str,
    tenant_id: &str,
    commit: bool,
    cancel: &CancelToken,
    progress: &ProgressSink,
) -> Result<Vec<super::pg_apply::TableChange>> {
    if !target.exists() {
        return Err(Error::not_found(format!("{} does not exist: a tenant restore writes into an existing database", target.display())));
    }
    let (reader, index) = chain.last().ok_or_else(|| Error::new(ErrorCode::Internal, "an empty restore chain"))?;
    let schema = read_schema(reader, index)?;
    // The backup's state, whole, in a private file beside nothing else; read through ATTACH.
    let scratch = std::env::temp_dir().join(format!("safehold-tenant-{}.db", uuid::Uuid::new_v4().simple()));
    // Made 0600 before SQLite opens it: the tenants' rows are the owner's alone.
    let held = crate::private::create_new(&scratch).map_err(|e| Error::io(format!("cannot create {}", scratch.display()), &e))?;
    let _guard = RemoveOnDrop(scratch.clone());
    drop(held);
    restore_into(chain, &schema, &scratch, cancel, progress).await?;
    let opts = SqliteConnectOptions::new().filename(target).create_if_missing(false).foreign_keys(false);
    let mut conn = SqliteConnection::connect_with(&opts).await.map_err(db_err(target, "open it"))?;
    sqlx::query("ATTACH DATABASE ? AS bk").bind(scratch.display().to_string()).execute(&mut conn).await.map_err(db_err(target, "read the backup beside it"))?;
    let result = tenant_into(&mut conn, target, tenant_column, tenants_table, tenant_id, commit, cancel, progress).await;
    let _ = sqlx::query("DETACH DATABASE bk").execute(&mut conn).await;
    let _ = conn.close().await;
    result
}

/// A private scratch file, removed when this goes out of scope, whatever happened.
pub(crate) struct RemoveOnDrop(pub(crate) std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[allow(clippy::too_many_arguments)]
async fn tenant_into(
    conn: &mut SqliteConnection,
    target: &Path,
    tenant_column: &str,
    tenants_table: &str,
    tenant_id: &str,
    commit: bool,
    cancel: &CancelToken,
    progress: &ProgressSink,
) -> Result<Vec<super::pg_apply::TableChange>> {
    let tables = tenant_tables(conn, target, tenant_column, tenants_table).await?;
    let mut tx = conn.begin().await.map_err(db_err(target, "start a transaction"))?;
    sqlx::raw_sql("DROP TABLE IF EXISTS temp._sh_tenant; CREATE TEMP TABLE _sh_tenant (id)").execute(&mut *tx).await.map_err(db_err(target, "prepare the restore"))?;
    sqlx::query("INSERT INTO temp._sh_tenant VALUES (?)").bind(tenant_id).execute(&mut *tx).await.map_err(db_err(target, "prepare the restore"))?;
    // The backup has the same tables with the same columns.
    for t in &tables {
        let cols: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?, 'bk') ORDER BY cid")
            .bind(&t.name)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err(target, "read the backup's columns"))?;
        if cols.is_empty() {
            return Err(Error::validation(format!("the backup has no table {}: restore the whole backup into a new file instead", t.name)));
        }
        if cols != t.columns {
            return Err(Error::validation(format!("the table {} has other columns in the backup ({}) than in {} ({}): restore the whole backup into a new file instead", t.name, cols.join(", "), target.display(), t.columns.join(", "))));
        }
    }
    if let Some(tt) = tables.iter().find(|t| t.name == tenants_table) {
        let there: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM bk.{} t WHERE {}", quote_ident(&tt.name), tt.predicate)))
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err(target, "look for the tenant in the backup"))?;
        if there == 0 {
            return Err(Error::not_found(format!("the backup has no tenant {tenant_id} in {tenants_table}")));
        }
    }
    let before_fk = fk_violations(&mut tx, target).await?;
    let on = |t: &TenantTable, s: &str| t.predicate.replace("{s}", s);
    // The tenant's rows now, set aside to count what changes; then removed, children first.
    for (i, t) in tables.iter().enumerate() {
        sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE IF EXISTS temp._sh_b{i}; CREATE TEMP TABLE _sh_b{i} AS SELECT * FROM main.{} t WHERE {}", quote_ident(&t.name), on(t, "main"))))
            .execute(&mut *tx)
            .await
            .map_err(db_err(target, &format!("read the tenant's rows of {}", t.name)))?;
    }
    for t in tables.iter().rev() {
        cancel.check()?;
        sqlx::raw_sql(AssertSqlSafe(format!("DELETE FROM main.{0} AS t WHERE {1}", quote_ident(&t.name), on(t, "main"))))
            .execute(&mut *tx)
            .await
            .map_err(db_err(target, &format!("remove the tenant's rows of {}", t.name)))?;
    }
    let mut changes = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        cancel.check()?;
        progress(Progress { phase: "restore".into(), table: Some(t.name.clone()), tables_done: i as u64, tables_total: tables.len() as u64, rows: 0, bytes: 0 });
        let list = t.columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
        let inserted = sqlx::raw_sql(AssertSqlSafe(format!("INSERT INTO main.{0} ({list}) SELECT {list} FROM bk.{0} t WHERE {1}", quote_ident(&t.name), on(t, "bk"))))
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                let text = e.to_string();
                if text.contains("UNIQUE") || text.contains("PRIMARY KEY") {
                    Error::conflict(format!(
                        "the tenant's rows of {} in the backup meet rows that other tenants hold now ({text}): restore the tenant as a copy on PostgreSQL, or remove the other rows first; nothing was changed",
                        t.name
                    ))
                } else {
                    db_err(target, &format!("put back the tenant's rows of {}", t.name))(e)
                }
            })?
            .rows_affected();
        let now = format!("(SELECT * FROM main.{} t WHERE {})", quote_ident(&t.name), on(t, "main"));
        let (new, changed, gone) = count_changes(&mut tx, target, &now, &format!("temp._sh_b{i}"), &t.keys, &t.columns).await?;
        changes.push(super::pg_apply::TableChange { table: t.name.clone(), rows_in_backup: inserted, inserted: new, updated: changed, deleted: gone });
    }
    finish(tx, target, &before_fk, commit, |rows, pairs| {
        format!("restoring the tenant would leave {rows} rows pointing at rows that are gone ({pairs}): rows of other tables point at the tenant's rows the backup does not have; nothing was changed")
    })
    .await?;
    Ok(changes)
}
