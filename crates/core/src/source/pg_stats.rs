//! The optimizer's statistics. Every PostgreSQL backup reads them (each table's, index's and
//! materialized view's page and row counts from `pg_class`; each column's from `pg_stats`, as the
//! source's last ANALYZE left them), and a full restore onto PostgreSQL 18 or later imports them
//! with `pg_restore_relation_stats` and `pg_restore_attribute_stats` (as `pg_dump` 18 does) —
//! measured on the benchmark set at about a twentieth of ANALYZE's time (docs/benchmarks.md).
//! Onto an older server, or for a table the source had not analyzed, the restore runs ANALYZE
//! instead. The values go to the server bound, as text for the server to parse into the column's
//! own type.

use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::postgres::{not_ext, q, USER_NS};
use crate::error::Result;

/// The first version whose server imports statistics.
pub const IMPORTS_FROM: i32 = 180_000;

/// The statistics of a database, as its last ANALYZE (or VACUUM) left them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    pub relations: Vec<RelationStats>,
    pub columns: Vec<ColumnStats>,
}

/// A table's, index's or materialized view's size as the planner reads it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RelationStats {
    pub schema: String,
    pub name: String,
    pub pages: i32,
    pub tuples: f32,
    pub all_visible: i32,
}

/// One column's statistics (`inherited`: over a table and its children, as a partitioned or
/// inheritance parent has them). Arrays are kept as their text, parsed by the target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColumnStats {
    pub schema: String,
    pub table: String,
    pub column: String,
    pub inherited: bool,
    pub null_frac: f32,
    pub avg_width: i32,
    pub n_distinct: f32,
    pub most_common_vals: Option<String>,
    pub most_common_freqs: Option<String>,
    pub histogram_bounds: Option<String>,
    pub correlation: Option<f32>,
    pub most_common_elems: Option<String>,
    pub most_common_elem_freqs: Option<String>,
    pub elem_count_histogram: Option<String>,
}

/// Reads the statistics of the users' tables, indexes and materialized views (inside the
/// backup's snapshot; columns a role may not read are not in `pg_stats` for it).
pub async fn read(conn: &mut PgConnection) -> Result<Stats> {
    let relations = sqlx::query(AssertSqlSafe(format!(
        "SELECT n.nspname::text, c.relname::text, c.relpages, c.reltuples, c.relallvisible FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p', 'm', 'i', 'I') AND {USER_NS} AND {} ORDER BY 1, 2",
        not_ext("c.oid")
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read the tables' statistics"))?
    .into_iter()
    .map(|r| RelationStats { schema: r.get(0), name: r.get(1), pages: r.get(2), tuples: r.get(3), all_visible: r.get(4) })
    .collect();
    let columns = sqlx::query(AssertSqlSafe(format!(
        "SELECT s.schemaname::text, s.tablename::text, s.attname::text, s.inherited, s.null_frac, s.avg_width, s.n_distinct, s.most_common_vals::text, s.most_common_freqs::text, \
                s.histogram_bounds::text, s.correlation, s.most_common_elems::text, s.most_common_elem_freqs::text, s.elem_count_histogram::text \
         FROM pg_stats s JOIN pg_namespace n ON n.nspname = s.schemaname JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.tablename \
         WHERE c.relkind IN ('r', 'p', 'm') AND {USER_NS} AND {} ORDER BY 1, 2, 3, 4",
        not_ext("c.oid")
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read the columns' statistics"))?
    .into_iter()
    .map(|r| ColumnStats {
        schema: r.get(0),
        table: r.get(1),
        column: r.get(2),
        inherited: r.get(3),
        null_frac: r.get(4),
        avg_width: r.get(5),
        n_distinct: r.get(6),
        most_common_vals: r.get(7),
        most_common_freqs: r.get(8),
        histogram_bounds: r.get(9),
        correlation: r.get(10),
        most_common_elems: r.get(11),
        most_common_elem_freqs: r.get(12),
        elem_count_histogram: r.get(13),
    })
    .collect();
    Ok(Stats { relations, columns })
}

impl Stats {
    /// Whether the source had analyzed the table `schema.table` (it has column statistics).
    pub fn analyzed(&self, schema: &str, table: &str) -> bool {
        self.columns.iter().any(|c| c.schema == schema && c.table == table)
    }

    /// Whether the source had never analyzed (nor vacuumed) the table `schema.table`: its row
    /// count is unknown to the planner (`reltuples` −1, PostgreSQL 14 and later). False when the
    /// backup does not say.
    pub fn never_analyzed(&self, schema: &str, table: &str) -> bool {
        self.relations.iter().any(|r| r.schema == schema && r.name == table && r.tuples < 0.0)
    }

    /// Imports every statistic (a server of version [`IMPORTS_FROM`] or later), on `conn` — in
    /// the restore's transaction, once every table and index is made. Returns the tables (schema,
    /// name) of which the server took some value not (it warns and goes on: a value its type does
    /// not parse, say): the restore analyzes those.
    pub async fn import(&self, conn: &mut PgConnection) -> Result<Vec<(String, String)>> {
        let mut refused: Vec<(String, String)> = Vec::new();
        for r in &self.relations {
            let taken: bool = sqlx::query_scalar("SELECT pg_restore_relation_stats('schemaname', $1::text, 'relname', $2::text, 'relpages', $3::integer, 'reltuples', $4::real, 'relallvisible', $5::integer)")
                .bind(&r.schema)
                .bind(&r.name)
                .bind(r.pages)
                .bind(r.tuples)
                .bind(r.all_visible)
                .fetch_one(&mut *conn)
                .await
                .map_err(q("import a table's statistics"))?;
            if !taken {
                refused.push((r.schema.clone(), r.name.clone()));
            }
        }
        for c in &self.columns {
            let taken: bool = sqlx::query_scalar(
                "SELECT pg_restore_attribute_stats('schemaname', $1::text, 'relname', $2::text, 'attname', $3::text, 'inherited', $4::boolean, \
                        'null_frac', $5::real, 'avg_width', $6::integer, 'n_distinct', $7::real, 'most_common_vals', $8::text, 'most_common_freqs', $9::text::real[], \
                        'histogram_bounds', $10::text, 'correlation', $11::real, 'most_common_elems', $12::text, 'most_common_elem_freqs', $13::text::real[], \
                        'elem_count_histogram', $14::text::real[])",
            )
            .bind(&c.schema)
            .bind(&c.table)
            .bind(&c.column)
            .bind(c.inherited)
            .bind(c.null_frac)
            .bind(c.avg_width)
            .bind(c.n_distinct)
            .bind(&c.most_common_vals)
            .bind(&c.most_common_freqs)
            .bind(&c.histogram_bounds)
            .bind(c.correlation)
            .bind(&c.most_common_elems)
            .bind(&c.most_common_elem_freqs)
            .bind(&c.elem_count_histogram)
            .fetch_one(&mut *conn)
            .await
            .map_err(q("import a column's statistics"))?;
            if !taken && !refused.iter().any(|(s, t)| *s == c.schema && *t == c.table) {
                refused.push((c.schema.clone(), c.table.clone()));
            }
        }
        Ok(refused)
    }
}
