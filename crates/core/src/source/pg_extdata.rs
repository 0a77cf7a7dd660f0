//! The rows of extensions' configuration tables (`pg_extension_config_dump`: a pg_cron job list,
//! pg_partman's settings, PostGIS's own spatial reference systems). `CREATE EXTENSION` makes such
//! a table with the extension's own rows; the rows the application added are data, and a backup
//! carries them as `pg_dump` does: those its extension's condition selects (`WHERE NOT system`,
//! say), in a section of their own, whole in every backup; a sequence of the list, its value.
//!
//! A full restore, once the extensions exist, deletes what the *target's* extension says is the
//! application's (its own condition, read from the target's catalog: nothing from the archive
//! reaches SQL as text) and loads the backup's rows, in the restore's transaction.

use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::postgres::{q, qi, restore_error, PgSchema};
use super::CancelToken;
use crate::archive::{ArchiveIndex, ArchiveReader, ArchiveWriter};
use crate::error::Result;

/// A configuration table (or sequence) of an extension.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtensionTable {
    pub extension: String,
    pub schema: String,
    pub name: String,
    /// The columns the rows are written with (not generated ones).
    #[serde(default)]
    pub columns: Vec<String>,
    /// A sequence: its value and whether it was called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<(i64, bool)>,
    /// The source's condition (`WHERE NOT system`): used by the backup that read it only.
    #[serde(skip)]
    condition: String,
}

impl ExtensionTable {
    /// The archive section of the table's rows.
    pub fn section(&self) -> String {
        format!("extension:{}", super::tenancy::section_name(&self.schema, &self.name))
    }
    fn relation(&self) -> String {
        format!("{}.{}", qi(&self.schema), qi(&self.name))
    }
}

/// The extensions' configuration tables and sequences (inside the backup's snapshot), and a
/// warning for each the backup's role may not read (left out: the backup goes on without it).
pub(super) async fn read(conn: &mut PgConnection) -> Result<(Vec<ExtensionTable>, Vec<String>)> {
    let rows = sqlx::query(
        "SELECT e.extname::text, n.nspname::text, c.relname::text, c.relkind::text, coalesce(e.extcondition[x.i], ''), \
                ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum), \
                has_table_privilege(c.oid, 'SELECT') \
         FROM pg_extension e CROSS JOIN LATERAL generate_subscripts(e.extconfig, 1) AS x(i) JOIN pg_class c ON c.oid = e.extconfig[x.i] JOIN pg_namespace n ON n.oid = c.relnamespace \
         ORDER BY 1, 2, 3",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read the extensions' configuration tables"))?;
    let (mut out, mut warnings) = (Vec::new(), Vec::new());
    for r in rows {
        let (extension, schema, name, kind, condition, columns): (String, String, String, String, String, Vec<String>) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
        if !r.get::<bool, _>(6) {
            warnings.push(format!(
                "the configuration {} {schema}.{name} of extension {extension} is not in this backup: the backup's role may not read it (GRANT SELECT on it, or back up as its owner or a superuser)",
                if kind == "S" { "sequence" } else { "table" }
            ));
            continue;
        }
        let mut t = ExtensionTable { extension, schema, name, columns, sequence: None, condition };
        if kind == "S" {
            let (v, called): (i64, bool) = sqlx::query_as(AssertSqlSafe(format!("SELECT last_value, is_called FROM {}", t.relation()))).fetch_one(&mut *conn).await.map_err(q("read an extension's sequence"))?;
            t.sequence = Some((v, called));
            t.columns.clear();
        }
        out.push(t);
    }
    Ok((out, warnings))
}

/// Writes the rows of each configuration table that its condition selects, on the snapshot.
pub(super) async fn dump(conn: &mut PgConnection, tables: &[ExtensionTable], archive: &std::sync::Mutex<&mut ArchiveWriter>, cancel: &CancelToken) -> Result<()> {
    for t in tables.iter().filter(|t| t.sequence.is_none()) {
        let cols: Vec<String> = t.columns.iter().map(|c| qi(c)).collect();
        let sql = format!("COPY (SELECT {} FROM {} {}) TO STDOUT", cols.join(", "), t.relation(), t.condition);
        super::postgres::copy_section(conn, archive, &t.section(), "extension_table", &sql, None, cancel).await?;
    }
    Ok(())
}

/// Loads the configuration tables' rows of the chain's newest backup (each backup has them all)
/// and sets the sequences, replacing what the target's extension condition selects. Inside the
/// restore's transaction, once the extensions exist.
pub(super) async fn load(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, chain: &[(std::sync::Arc<ArchiveReader>, ArchiveIndex)], schema: &PgSchema, cancel: &CancelToken) -> Result<u64> {
    let Some((reader, index)) = chain.last() else { return Ok(0) };
    let mut rows = 0;
    for t in &schema.extension_tables {
        let what = format!("the configuration table {}.{} of extension {}", t.schema, t.name, t.extension);
        if let Some((v, called)) = t.sequence {
            sqlx::query("SELECT setval($1::regclass, $2, $3)").bind(t.relation()).bind(v).bind(called).execute(&mut **tx).await.map_err(|e| restore_error(&what, &e))?;
            continue;
        }
        if index.section(&t.section()).is_none() {
            continue;
        }
        // The target's own condition for the table (empty: every row is the application's).
        let condition: Option<String> = sqlx::query_scalar(
            "SELECT coalesce(e.extcondition[x.i], '') FROM pg_extension e CROSS JOIN LATERAL generate_subscripts(e.extconfig, 1) AS x(i) WHERE e.extconfig[x.i] = $1::regclass",
        )
        .bind(t.relation())
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| restore_error(&what, &e))?;
        let Some(condition) = condition else {
            return Err(crate::error::Error::validation(format!("{what}: the target's extension {} does not keep this table as configuration (another version?); nothing was written", t.extension)));
        };
        sqlx::raw_sql(AssertSqlSafe(format!("DELETE FROM ONLY {} {condition}", t.relation()))).execute(&mut **tx).await.map_err(|e| restore_error(&what, &e))?;
        let cols: Vec<String> = t.columns.iter().map(|c| qi(c)).collect();
        rows += super::postgres::copy_in(tx, reader, index, &t.section(), &format!("{} ({}) FROM STDIN", t.relation(), cols.join(", ")), cancel).await?;
    }
    Ok(rows)
}
