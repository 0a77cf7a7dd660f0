//! Reading a migration's source into staging tables of the working transaction: temporary
//! tables of text columns (the text form of every PostgreSQL value), one per source table, which
//! the rules then change and the mapping casts onto the target's types.

use std::collections::BTreeSet;
use std::io::{Read, Seek};
use std::path::Path;

use futures_util::TryStreamExt;
use sqlx::{AssertSqlSafe, Postgres, Transaction};

use crate::error::{Error, ErrorCode, Result};
use crate::source::tenancy::{read_target, rel, Target, TenantScope, Tenancy};
use crate::source::postgres::{archived_schema, connect, load_table_into, q, qi};
use super::migration_error;
use crate::source::CancelToken;

/// One staged source table.
#[derive(Debug, Clone)]
pub(crate) struct StagedTable {
    /// The source's name for it (`schema.table`, or the file's name for plain files).
    pub name: String,
    pub relation: String,
    /// Columns, with the source type when known.
    pub cols: Vec<(String, Option<String>)>,
    pub rows: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Staged {
    pub tables: Vec<StagedTable>,
}

pub(crate) type Tx<'a> = Transaction<'a, Postgres>;

impl Staged {
    pub fn get(&self, name: &str) -> Option<&StagedTable> {
        self.tables.iter().find(|t| t.name == name).or_else(|| self.tables.iter().find(|t| bare(&t.name) == name || t.name == bare(name)))
    }

    /// The staging relation of `name`, created (text columns) when new.
    pub async fn table(&mut self, tx: &mut Tx<'_>, name: &str, cols: Vec<(String, Option<String>)>) -> Result<String> {
        if let Some(t) = self.tables.iter().find(|t| t.name == name) {
            return Ok(t.relation.clone());
        }
        let relation = format!("pg_temp._sh_s{}", self.tables.len());
        let defs: Vec<String> = cols.iter().map(|(c, _)| format!("{} text", qi(c))).collect();
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE TEMP TABLE {} ({}) ON COMMIT DROP", relation, defs.join(", "))))
            .execute(&mut **tx)
            .await
            .map_err(|e| migration_error(&format!("staging {name}"), &e))?;
        self.tables.push(StagedTable { name: name.to_string(), relation: relation.clone(), cols, rows: 0 });
        Ok(relation)
    }

    pub async fn recount(&mut self, tx: &mut Tx<'_>) -> Result<()> {
        for t in &mut self.tables {
            let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {}", t.relation))).fetch_one(&mut **tx).await.map_err(q("count staged rows"))?;
            t.rows = u64::try_from(n).unwrap_or(0);
        }
        Ok(())
    }
}

pub(crate) fn bare(name: &str) -> String {
    crate::source::tenancy::bare(name)
}

/// The column list of a staging relation.
pub(crate) fn col_list(cols: &[(String, Option<String>)]) -> String {
    cols.iter().map(|(c, _)| qi(c)).collect::<Vec<_>>().join(", ")
}

/// Stages the rows of `tenants` from the live database at `url`, read in one snapshot: each
/// tenant table once (a partitioned table through its root), its tenant's rows found along the
/// paths [`Tenancy`] gives. Returns the source's schema; `notes` gets the rows that stay shared.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn from_live(tx: &mut Tx<'_>, staged: &mut Staged, url: &str, tenants: &[String], tenant_column: &str, tenants_table: &str, references: &[String], notes: &mut Vec<String>, cancel: &CancelToken) -> Result<Target> {
    if tenants.is_empty() {
        return Err(Error::validation("choose the tenant to read from the source (--tenant)"));
    }
    let mut src = connect(url).await?;
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut src).await.map_err(q("start the source snapshot"))?;
    sqlx::raw_sql("SET LOCAL extra_float_digits = 3; SET LOCAL row_security = off").execute(&mut src).await.map_err(q("prepare the source snapshot"))?;
    let mut schema = read_target(&mut src).await?;
    for r in references.iter().filter(|r| !r.trim().is_empty()) {
        let fk = crate::source::tenancy::parse_reference(r, &schema)?;
        schema.fks.push(fk);
    }
    let available: BTreeSet<String> = schema.cols.keys().cloned().collect();
    for tenant in tenants {
        let scope = TenantScope { tenant_id: tenant.clone(), tenant_column: tenant_column.into(), tenants_table: tenants_table.into(), references: Vec::new() };
        let ten = Tenancy::find(&schema, &scope, &available)?;
        ten.bind(&mut src).await?;
        let mut found = 0u64;
        for t in ten.reach_order() {
            cancel.check()?;
            let cols: Vec<(String, Option<String>)> = schema.cols[&t].iter().filter(|c| !c.generated).map(|c| (c.name.clone(), Some(c.ty.clone()))).collect();
            let relation = staged.table(tx, &t, cols.clone()).await?;
            // Each table's own rows (`ONLY` a table others inherit from).
            let live = |x: &str| schema.own_rows(x);
            let pred = ten.predicate(&t, "l", &live, 0);
            let list = col_list(&cols);
            let lcols: Vec<String> = cols.iter().map(|(c, _)| format!("l.{}", qi(c))).collect();
            let out_sql = format!("COPY (SELECT {} FROM {} l WHERE {pred}) TO STDOUT", lcols.join(", "), live(&t));
            let mut out = src.copy_out_raw(&out_sql).await.map_err(q(&format!("read {t}")))?;
            let mut sink = (**tx).copy_in_raw(&format!("COPY {relation} ({list}) FROM STDIN")).await.map_err(|e| migration_error(&format!("staging {t}"), &e))?;
            while let Some(bytes) = out.try_next().await.map_err(q(&format!("read {t}")))? {
                if cancel.is_cancelled() {
                    let _ = sink.abort("cancelled").await;
                    return Err(Error::new(ErrorCode::Cancelled, "cancelled; nothing was written"));
                }
                sink.send(bytes).await.map_err(|e| migration_error(&format!("staging {t}"), &e))?;
            }
            drop(out);
            found += sink.finish().await.map_err(|e| migration_error(&format!("staging {t}"), &e))?;
        }
        if found == 0 {
            return Err(Error::not_found(format!("tenant \"{tenant}\" has no rows in {}: check the tenant id", crate::source::redact(url))));
        }
        for (table, by, n) in ten.shared_owned(&mut src, &|x: &str| rel(x)).await? {
            notes.push(format!("{table}: {n} of the rows that the tenant's {by} rows point at are reached by other tenants' rows too: shared rows are not taken along"));
        }
    }
    let _ = sqlx::query("COMMIT").execute(&mut src).await;
    staged.recount(tx).await?;
    Ok(schema)
}

/// Stages every table of a backup chain (the newest backup's state): a table of the target
/// once, its partitions' sections together.
pub(crate) async fn from_archive(tx: &mut Tx<'_>, staged: &mut Staged, chain: &crate::source::pg_apply::Chain, target: &Target, cancel: &CancelToken) -> Result<()> {
    let (reader, index) = chain.last().ok_or_else(|| Error::new(ErrorCode::Internal, "an empty chain"))?;
    let schema = archived_schema(reader, index)?;
    let groups = crate::source::pg_apply::archived_tables(&schema, target);
    let mut done: BTreeSet<String> = BTreeSet::new();
    for (table, parts) in &groups {
        cancel.check()?;
        let types = target.cols.get(table);
        let cols: Vec<(String, Option<String>)> =
            parts[0].columns.iter().map(|c| (c.clone(), types.and_then(|tc| tc.iter().find(|x| &x.name == c)).map(|x| x.ty.clone()))).collect();
        let relation = staged.table(tx, table, cols).await?;
        for t in parts {
            load_table_into(tx, chain, t, &relation, cancel).await?;
            done.insert(t.section());
        }
    }
    // Tables the target does not have: staged under their own names (the mapping says so).
    for t in schema.tables.iter().filter(|t| !done.contains(&t.section())) {
        cancel.check()?;
        let cols: Vec<(String, Option<String>)> = t.columns.iter().map(|c| (c.clone(), None)).collect();
        let relation = staged.table(tx, &t.section(), cols).await?;
        load_table_into(tx, chain, t, &relation, cancel).await?;
    }
    staged.recount(tx).await
}

/// Keeps only the rows of `tenants` in the staged tables that are tenant tables of `target`
/// (found through the target's tenant column and foreign keys); other staged tables are dropped.
pub(crate) async fn keep_tenants(tx: &mut Tx<'_>, staged: &mut Staged, target: &Target, tenants: &[String], tenant_column: &str, tenants_table: &str) -> Result<()> {
    if tenants.is_empty() {
        return Ok(());
    }
    let available: BTreeSet<String> = staged.tables.iter().map(|t| t.name.clone()).filter(|t| target.cols.contains_key(t)).collect();
    let relation_of = |t: &str| staged.get(t).map(|s| s.relation.clone()).unwrap_or_else(|| rel(t));
    let mut order: Vec<String> = Vec::new();
    let mut preds: Vec<(String, String)> = Vec::new();
    let mut joins: Vec<(String, Vec<String>)> = Vec::new();
    for (i, tenant) in tenants.iter().enumerate() {
        let scope = TenantScope { tenant_id: tenant.clone(), tenant_column: tenant_column.into(), tenants_table: tenants_table.into(), references: Vec::new() };
        let mut ten = Tenancy::find(target, &scope, &available)?;
        ten.param = format!("safehold.keep{i}");
        // Staged columns are text: the tenant id is compared as text.
        ten.types.values_mut().for_each(|t| *t = "text".into());
        ten.bind(tx).await?;
        joins.extend(ten.join_columns());
        for t in ten.reach_order() {
            if !order.contains(&t) {
                order.push(t.clone());
            }
            preds.push((t.clone(), ten.predicate(&t, "s", &relation_of, 0)));
        }
    }
    // The rows found on the whole staged tables first (a row reached by another tenant too is
    // nobody's own), then the others dropped.
    joins.sort();
    joins.dedup();
    for (t, cols) in joins.iter().filter(|(t, _)| order.contains(t)) {
        let list: Vec<String> = cols.iter().map(|c| qi(c)).collect();
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE INDEX ON {} ({})", relation_of(t), list.join(", ")))).execute(&mut **tx).await.map_err(|e| migration_error(&format!("indexing {t}"), &e))?;
    }
    for (i, t) in order.iter().enumerate() {
        let p: Vec<String> = preds.iter().filter(|(x, _)| x == t).map(|(_, p)| format!("({p})")).collect();
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE TEMP TABLE pg_temp._sh_keep{i} ON COMMIT DROP AS SELECT s.ctid AS c FROM {} s WHERE {}", relation_of(t), p.join(" OR "))))
            .execute(&mut **tx)
            .await
            .map_err(|e| migration_error(&format!("selecting the tenant's rows of {t}"), &e))?;
    }
    for (i, t) in order.iter().enumerate() {
        sqlx::raw_sql(AssertSqlSafe(format!("DELETE FROM {} s WHERE s.ctid NOT IN (SELECT c FROM pg_temp._sh_keep{i})", relation_of(t))))
            .execute(&mut **tx)
            .await
            .map_err(|e| migration_error(&format!("selecting the tenant's rows of {t}"), &e))?;
    }
    staged.tables.retain(|t| order.contains(&t.name));
    staged.recount(tx).await?;
    let total: u64 = staged.tables.iter().map(|t| t.rows).sum();
    if total == 0 {
        return Err(Error::not_found(format!("the source holds no rows of tenant {}: check the tenant id", tenants.join(", "))));
    }
    Ok(())
}

/// Stages a CSV file (with a header line) as the table named after the file.
pub(crate) async fn csv_file(tx: &mut Tx<'_>, staged: &mut Staged, name: &str, data: Vec<u8>, types: &[(String, String)]) -> Result<()> {
    csv_reader(tx, staged, name, std::io::Cursor::new(data), types).await
}

/// Stages CSV (with a header line) read from `source` in chunks, as the table `name`.
pub(crate) async fn csv_reader<R: Read + Seek + Send>(tx: &mut Tx<'_>, staged: &mut Staged, name: &str, mut source: R, types: &[(String, String)]) -> Result<()> {
    let header: Vec<String> = {
        let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(&mut source);
        reader
            .headers()
            .map_err(|e| Error::validation(format!("{name}: not a CSV file with a header line: {e}")).caused_by(&e))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect()
    };
    source.seek(std::io::SeekFrom::Start(0)).map_err(|e| Error::io(format!("cannot read {name} again"), &e))?;
    if header.is_empty() || header.iter().any(String::is_empty) {
        return Err(Error::validation(format!("{name}: the CSV header has an empty column name")));
    }
    let mut seen = BTreeSet::new();
    if let Some(d) = header.iter().find(|h| !seen.insert(h.as_str())) {
        return Err(Error::validation(format!("{name}: the CSV header names the column \"{d}\" twice")));
    }
    let cols: Vec<(String, Option<String>)> = header.iter().map(|h| (h.clone(), types.iter().find(|(c, _)| c == h).map(|(_, t)| t.clone()))).collect();
    let relation = staged.table(tx, name, cols.clone()).await?;
    let mut sink = (**tx)
        .copy_in_raw(&format!("COPY {relation} ({}) FROM STDIN (FORMAT csv, HEADER true)", col_list(&cols)))
        .await
        .map_err(|e| migration_error(&format!("reading {name}"), &e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = source.read(&mut buf).map_err(|e| Error::io(format!("cannot read {name}"), &e))?;
        if n == 0 {
            break;
        }
        sink.send(buf[..n].to_vec()).await.map_err(|e| Error::validation(format!("{name}: {}", pg_message(&e))).caused_by(&e))?;
    }
    sink.finish().await.map_err(|e| Error::validation(format!("{name} is not valid CSV for its header: {}", pg_message(&e))).caused_by(&e))?;
    staged.recount(tx).await
}

/// The server's own name for the type `ty` (`int` → `integer`), or None when the server knows no
/// such type. The name is bound, never SQL: a type from a file is only used once the server
/// has named it.
pub(crate) async fn known_type(tx: &mut Tx<'_>, ty: &str) -> Result<Option<String>> {
    if ty.trim().is_empty() || ty.len() > 200 {
        return Ok(None);
    }
    sqlx::query("SAVEPOINT _sh_type").execute(&mut **tx).await.map_err(q("check a type"))?;
    let found: std::result::Result<Option<String>, sqlx::Error> = sqlx::query_scalar("SELECT to_regtype($1)::text").bind(ty).fetch_one(&mut **tx).await;
    match found {
        Ok(t) => {
            sqlx::query("RELEASE SAVEPOINT _sh_type").execute(&mut **tx).await.map_err(q("check a type"))?;
            Ok(t)
        }
        Err(_) => {
            // to_regtype raises on a name it cannot parse: the type is unknown.
            sqlx::query("ROLLBACK TO SAVEPOINT _sh_type").execute(&mut **tx).await.map_err(q("check a type"))?;
            sqlx::query("RELEASE SAVEPOINT _sh_type").execute(&mut **tx).await.map_err(q("check a type"))?;
            Ok(None)
        }
    }
}

/// Stages a JSON Lines file (one object per line) as the table named after the file. Every line
/// is checked here (a line that is not one JSON object is an error naming it) and sent to the
/// server as a bound value: no line can end the data early or become SQL.
pub(crate) async fn jsonl_file(tx: &mut Tx<'_>, staged: &mut Staged, name: &str, data: Vec<u8>) -> Result<()> {
    let raw = format!("pg_temp._sh_raw{}", staged.tables.len());
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE TEMP TABLE {raw} (n bigint, j jsonb) ON COMMIT DROP")))
        .execute(&mut **tx)
        .await
        .map_err(q("stage a JSON Lines file"))?;
    let insert = format!("INSERT INTO {raw} (n, j) SELECT n, l::jsonb FROM unnest($1::bigint[], $2::text[]) AS x(n, l)");
    let mut keys: BTreeSet<String> = BTreeSet::new();
    let (mut ns, mut lines): (Vec<i64>, Vec<String>) = (Vec::new(), Vec::new());
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = std::str::from_utf8(line).map_err(|_| Error::validation(format!("{name}, line {}: not UTF-8 text; JSON Lines files are UTF-8", i + 1)))?;
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(o)) => keys.extend(o.keys().cloned()),
            Ok(_) => return Err(Error::validation(format!("{name}, line {}: not a JSON object; each line must be one object whose keys are the columns", i + 1))),
            Err(e) => return Err(Error::validation(format!("{name}, line {}: not valid JSON ({e}); each line must be one JSON object", i + 1))),
        }
        ns.push(i as i64 + 1);
        lines.push(text.to_string());
        if lines.len() >= 5000 {
            sqlx::query(AssertSqlSafe(insert.clone())).bind(std::mem::take(&mut ns)).bind(std::mem::take(&mut lines)).execute(&mut **tx).await.map_err(|e| Error::validation(format!("{name}: {}", pg_message(&e))).caused_by(&e))?;
        }
    }
    if !lines.is_empty() {
        sqlx::query(AssertSqlSafe(insert)).bind(ns).bind(lines).execute(&mut **tx).await.map_err(|e| Error::validation(format!("{name}: {}", pg_message(&e))).caused_by(&e))?;
    }
    if keys.is_empty() {
        return Err(Error::validation(format!("{name}: no rows")));
    }
    let keys: Vec<String> = keys.into_iter().collect();
    let cols: Vec<(String, Option<String>)> = keys.iter().map(|k| (k.clone(), None)).collect();
    let relation = staged.table(tx, name, cols.clone()).await?;
    // Strings as they are; numbers, booleans, arrays and objects in their JSON text. The keys
    // are bound.
    let exprs: Vec<String> = (1..=keys.len()).map(|i| format!("CASE jsonb_typeof(j -> ${i}::text) WHEN 'string' THEN j ->> ${i}::text WHEN 'null' THEN NULL ELSE (j -> ${i}::text)::text END")).collect();
    let mut query = sqlx::query(AssertSqlSafe(format!("INSERT INTO {relation} ({}) SELECT {} FROM {raw} ORDER BY n", col_list(&cols), exprs.join(", "))));
    for k in &keys {
        query = query.bind(k.clone());
    }
    query.execute(&mut **tx).await.map_err(|e| migration_error(&format!("reading {name}"), &e))?;
    staged.recount(tx).await
}

/// PostgreSQL's own message for an error, without sqlx's prefix.
pub(crate) fn pg_message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_string(),
        other => other.to_string(),
    }
}

/// The table name a plain file stands for: its name without the extension.
pub(crate) fn table_of_file(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    name.strip_suffix(".csv").or_else(|| name.strip_suffix(".jsonl")).or_else(|| name.strip_suffix(".ndjson")).or_else(|| name.strip_suffix(".json")).unwrap_or(&name).to_string()
}
