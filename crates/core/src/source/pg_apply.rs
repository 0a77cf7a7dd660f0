//! Restoring rows into a live PostgreSQL database, in ONE transaction: chosen tables replaced by
//! a backup's (selective), one tenant's rows replaced by its rows from a backup without touching
//! any other tenant (tenant only), or one tenant copied from a backup under a new tenant id with
//! new keys everywhere (tenant copy).
//!
//! The backup's tables are loaded into temporary staging tables first (and, for a tenant, cut
//! down to its rows); the target is then brought to the staged state table by table — deletes
//! children first, inserts and updates parents first — so foreign keys hold at every statement.
//! With `commit: false` the same work runs and is rolled back: the plan's exact counts, and any
//! incompatibility found before anything is kept. (Sequences are not transactional: a dry run of
//! a tenant copy uses up the identity values it drew.)

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, Row};
use ts_rs::TS;

use super::postgres::{archived_schema, connect, load_table_into, q, qi, ql, restore_error, PgTable, USER_NS};
use super::{CancelToken, Progress, ProgressSink};
use crate::archive::{ArchiveIndex, ArchiveReader};
use crate::error::{Error, ErrorCode, Result};

pub type Chain = [(Arc<ArchiveReader>, ArchiveIndex)];

/// Which rows to restore.
#[derive(Debug, Clone)]
pub enum Scope {
    /// These tables (section names `schema.table`), whole.
    Tables(BTreeSet<String>),
    /// One tenant's rows in every tenant table.
    Tenant(TenantScope),
}

#[derive(Debug, Clone)]
pub struct TenantScope {
    pub tenant_id: String,
    pub tenant_column: String,
    pub tenants_table: String,
    /// Restore as a copy under a new tenant id instead of replacing the tenant.
    pub copy: Option<CopyAs>,
}

#[derive(Debug, Clone, Default)]
pub struct CopyAs {
    /// The new tenant's id; when `None`, the tenants table's key default makes one.
    pub new_tenant_id: Option<String>,
    /// A new value for the tenants table's `name` column.
    pub new_tenant_name: Option<String>,
}

/// What a restore did (or, in a dry run, would do) to one table.
#[derive(Debug, Clone, Serialize, TS, PartialEq, Eq)]
pub struct TableChange {
    pub table: String,
    /// Rows the backup holds for the restore (the tenant's rows, or the whole table).
    pub rows_in_backup: u64,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
}

#[derive(Debug, Clone, Default)]
pub struct ApplyOutcome {
    pub tables: Vec<TableChange>,
    pub new_tenant_id: Option<String>,
    pub warnings: Vec<String>,
}

/// A column of a target table.
#[derive(Debug, Clone)]
pub(crate) struct Col {
    pub name: String,
    pub ty: String,
    pub identity: bool,
    pub always: bool,
    pub default: Option<String>,
    pub not_null: bool,
    /// A generated (computed) column: never written.
    pub generated: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Fk {
    pub child: String,
    pub parent: String,
    pub cols: Vec<(String, String)>,
}

/// The target's tables, keys and foreign keys.
#[derive(Debug, Default)]
pub(crate) struct Target {
    pub cols: HashMap<String, Vec<Col>>,
    pub pks: HashMap<String, Vec<String>>,
    /// Unique constraints and unique indexes on plain columns (primary keys included).
    pub uniques: HashMap<String, Vec<Vec<String>>>,
    pub fks: Vec<Fk>,
    pub server_version_num: i64,
}

pub(crate) async fn read_target(conn: &mut PgConnection) -> Result<Target> {
    let mut t = Target {
        server_version_num: sqlx::query_scalar::<_, String>("SELECT current_setting('server_version_num')")
            .fetch_one(&mut *conn)
            .await
            .map_err(q("read the target's version"))?
            .parse()
            .unwrap_or(0),
        ..Default::default()
    };
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT n.nspname || '.' || c.relname, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attidentity::text, pg_get_expr(d.adbin, d.adrelid), a.attnotnull, a.attgenerated::text \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum \
         WHERE c.relkind IN ('r', 'p') AND {USER_NS} ORDER BY c.oid, a.attnum"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read the target's tables"))?;
    for r in rows {
        let identity: String = r.get(3);
        t.cols.entry(r.get(0)).or_default().push(Col {
            name: r.get(1),
            ty: r.get(2),
            identity: !identity.is_empty(),
            always: identity == "a",
            default: r.get(4),
            not_null: r.get(5),
            generated: !r.get::<String, _>(6).is_empty(),
        });
    }
    for r in sqlx::query(
        "SELECT n.nspname || '.' || c.relname, array_agg(a.attname::text ORDER BY k.ord) \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord) \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum \
         WHERE i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL GROUP BY i.indexrelid, 1 ORDER BY i.indexrelid",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read the target's unique constraints"))?
    {
        t.uniques.entry(r.get(0)).or_default().push(r.get(1));
    }
    for r in sqlx::query(
        "SELECT n.nspname || '.' || c.relname, array_agg(a.attname::text ORDER BY k.ord) \
         FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         CROSS JOIN LATERAL unnest(co.conkey) WITH ORDINALITY k(attnum, ord) \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum \
         WHERE co.contype = 'p' GROUP BY co.oid, 1",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read the target's primary keys"))?
    {
        t.pks.insert(r.get(0), r.get(1));
    }
    for r in sqlx::query(
        "SELECT cn.nspname || '.' || c.relname, pn.nspname || '.' || p.relname, array_agg(ca.attname::text ORDER BY k.ord), array_agg(pa.attname::text ORDER BY k.ord) \
         FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace \
         JOIN pg_class p ON p.oid = co.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace \
         CROSS JOIN LATERAL unnest(co.conkey, co.confkey) WITH ORDINALITY k(ck, pk, ord) \
         JOIN pg_attribute ca ON ca.attrelid = c.oid AND ca.attnum = k.ck JOIN pg_attribute pa ON pa.attrelid = p.oid AND pa.attnum = k.pk \
         WHERE co.contype = 'f' AND co.conparentid = 0 GROUP BY co.oid, 1, 2 ORDER BY co.oid",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read the target's foreign keys"))?
    {
        let (child_cols, parent_cols): (Vec<String>, Vec<String>) = (r.get(2), r.get(3));
        t.fks.push(Fk { child: r.get(0), parent: r.get(1), cols: child_cols.into_iter().zip(parent_cols).collect() });
    }
    Ok(t)
}

pub(crate) fn bare(qualified: &str) -> &str {
    qualified.rsplit('.').next().unwrap_or(qualified)
}

pub(crate) fn rel(section: &str) -> String {
    match section.split_once('.') {
        Some((s, n)) => format!("{}.{}", qi(s), qi(n)),
        None => qi(section),
    }
}

/// Orders `tables` parents before children (cycles broken in name order).
pub(crate) fn parents_first(tables: &[String], fks: &[Fk]) -> Vec<String> {
    let set: BTreeSet<&String> = tables.iter().collect();
    let mut deps: BTreeMap<&String, BTreeSet<&String>> = tables.iter().map(|t| (t, BTreeSet::new())).collect();
    for fk in fks {
        if fk.child != fk.parent && set.contains(&fk.child) && set.contains(&fk.parent) {
            if let Some(d) = deps.get_mut(&fk.child) {
                d.insert(&fk.parent);
            }
        }
    }
    let mut out: Vec<String> = Vec::new();
    let mut placed: BTreeSet<&String> = BTreeSet::new();
    while placed.len() < tables.len() {
        let ready: Vec<&String> = deps.iter().filter(|(t, d)| !placed.contains(*t) && d.iter().all(|p| placed.contains(p))).map(|(t, _)| *t).collect();
        let batch = if ready.is_empty() {
            // A cycle: take the first remaining table (deferrable constraints make it work).
            deps.keys().find(|t| !placed.contains(*t)).copied().into_iter().collect()
        } else {
            ready
        };
        for t in batch {
            placed.insert(t);
            out.push(t.clone());
        }
    }
    out
}

/// How a tenant table's rows are found: by its own tenant column, as the tenants table by its
/// key, or through a foreign key to a parent tenant table.
#[derive(Debug, Clone)]
pub(crate) enum Reach {
    Column(String),
    TenantsKey(String),
    Via(usize),
}

pub(crate) struct Tenancy {
    pub reach: HashMap<String, Reach>,
    pub fks: Vec<Fk>,
    pub tenant: String,
}

impl Tenancy {
    /// Finds the tenant tables of the target among `available`.
    pub(crate) fn find(target: &Target, scope: &TenantScope, available: &BTreeSet<String>) -> Result<Self> {
        let mut reach = HashMap::new();
        for (table, cols) in &target.cols {
            if !available.contains(table) {
                continue;
            }
            if bare(table) == scope.tenants_table {
                let pk = target.pks.get(table).cloned().unwrap_or_default();
                if pk.len() != 1 {
                    return Err(Error::validation(format!("the tenants table {table} needs a one-column primary key (the tenant id) for a tenant restore")));
                }
                reach.insert(table.clone(), Reach::TenantsKey(pk[0].clone()));
            } else if cols.iter().any(|c| c.name == scope.tenant_column) {
                reach.insert(table.clone(), Reach::Column(scope.tenant_column.clone()));
            }
        }
        if reach.is_empty() {
            return Err(Error::validation(format!(
                "no table of the target has the tenant column \"{}\" or is the tenants table \"{}\"; set the connection's tenant column and tenants table",
                scope.tenant_column, scope.tenants_table
            )));
        }
        // Children reached through foreign keys, nearest parent first (breadth first).
        loop {
            let mut added = false;
            for (i, fk) in target.fks.iter().enumerate() {
                if available.contains(&fk.child) && !reach.contains_key(&fk.child) && reach.contains_key(&fk.parent) && fk.child != fk.parent {
                    reach.insert(fk.child.clone(), Reach::Via(i));
                    added = true;
                }
            }
            if !added {
                break;
            }
        }
        Ok(Self { reach, fks: target.fks.clone(), tenant: scope.tenant_id.clone() })
    }

    pub(crate) fn tables(&self) -> Vec<String> {
        self.reach.keys().cloned().collect()
    }

    /// A condition true for the tenant's rows of `table` aliased `alias`; `relation` names the
    /// relation holding a table's rows (the live table or its staging table).
    pub(crate) fn predicate(&self, table: &str, alias: &str, relation: &dyn Fn(&str) -> String, depth: usize) -> String {
        match self.reach.get(table) {
            Some(Reach::Column(c)) | Some(Reach::TenantsKey(c)) => format!("{alias}.{} = {}", qi(c), ql(&self.tenant)),
            Some(Reach::Via(i)) => {
                let fk = &self.fks[*i];
                let p = format!("p{depth}");
                let join: Vec<String> = fk.cols.iter().map(|(cc, pc)| format!("{p}.{} = {alias}.{}", qi(pc), qi(cc))).collect();
                format!(
                    "EXISTS (SELECT 1 FROM {} {p} WHERE {} AND {})",
                    relation(&fk.parent),
                    join.join(" AND "),
                    self.predicate(&fk.parent, &p, relation, depth + 1)
                )
            }
            None => "FALSE".into(),
        }
    }
}

/// Applies `scope` of the backup `chain` to the live database at `url`, in one transaction,
/// committed only when `commit` (a dry run otherwise).
pub async fn apply(chain: &Chain, url: &str, scope: &Scope, commit: bool, cancel: &CancelToken, progress: &ProgressSink) -> Result<ApplyOutcome> {
    let (reader, index) = chain.last().ok_or_else(|| Error::new(ErrorCode::Internal, "an empty restore chain"))?;
    let schema = archived_schema(reader, index)?;
    let mut conn = connect(url).await?;
    let target = read_target(&mut conn).await?;
    check_version(&schema.server_version, target.server_version_num)?;
    let archived: HashMap<String, &PgTable> = schema.tables.iter().map(|t| (t.section(), t)).collect();
    let available: BTreeSet<String> = archived.keys().filter(|t| target.cols.contains_key(*t)).cloned().collect();
    let mut out = ApplyOutcome::default();

    let (tables, tenancy) = match scope {
        Scope::Tables(set) => {
            for t in set {
                if !archived.contains_key(t) {
                    return Err(Error::not_found(format!("the backup has no table {t}")));
                }
                if !target.cols.contains_key(t) {
                    return Err(Error::validation(format!(
                        "the table {t} does not exist in the target {}; restore the whole backup into a new database (--create) instead",
                        super::redact(url)
                    )));
                }
            }
            out.warnings = fk_warnings(set, &target.fks);
            (set.iter().cloned().collect::<Vec<_>>(), None)
        }
        Scope::Tenant(ts) => {
            let tenancy = Tenancy::find(&target, ts, &available)?;
            for fk in &target.fks {
                if tenancy.reach.contains_key(&fk.parent) && !tenancy.reach.contains_key(&fk.child) && target.cols.contains_key(&fk.child) && fk.child != fk.parent {
                    out.warnings.push(format!("{} references the tenant table {} but is not in the backup: its rows are left as they are", fk.child, fk.parent));
                }
            }
            (tenancy.tables(), Some(tenancy))
        }
    };
    let order = parents_first(&tables, &target.fks);
    for t in &order {
        check_columns(t, archived[t.as_str()], &target)?;
    }
    let staging: HashMap<String, String> = order.iter().enumerate().map(|(i, t)| (t.clone(), format!("pg_temp._sh_s{i}"))).collect();
    let staged = |t: &str| staging.get(t).cloned().unwrap_or_else(|| rel(t));
    let live = |t: &str| rel(t);

    let mut tx = conn.begin().await.map_err(q("start the restore transaction"))?;
    sqlx::query("SET CONSTRAINTS ALL DEFERRED").execute(&mut *tx).await.map_err(q("defer constraints"))?;
    let total = order.len() as u64 * 2;
    let mut done = 0u64;
    let report = |table: &str, phase: &str, done: &mut u64, rows: u64| {
        progress(Progress { phase: phase.into(), table: Some(table.to_string()), tables_done: *done, tables_total: total, rows, bytes: 0 });
        *done += 1;
    };

    // 1. Stage the backup's rows (the tenant's only).
    let mut staged_rows: HashMap<String, u64> = HashMap::new();
    for t in &order {
        cancel.check()?;
        report(t, "reading the backup", &mut done, 0);
        let at = archived[t.as_str()];
        let cols: Vec<String> = at.columns.iter().map(|c| qi(c)).collect();
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA", staged(t), cols.join(", "), live(t))))
            .execute(&mut *tx)
            .await
            .map_err(|e| restore_error(&format!("staging {t}"), &e))?;
        load_table_into(&mut tx, chain, at, &staged(t), cancel).await?;
        let n = match &tenancy {
            Some(ten) => {
                // Parents are cut down first, so a child's condition sees only the tenant's parents.
                let pred = ten.predicate(t, "s", &staged, 0);
                sqlx::raw_sql(AssertSqlSafe(format!("DELETE FROM {} s WHERE ({pred}) IS NOT TRUE", staged(t))))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| restore_error(&format!("selecting the tenant's rows of {t}"), &e))?;
                count(&mut tx, &staged(t)).await?
            }
            None => count(&mut tx, &staged(t)).await?,
        };
        staged_rows.insert(t.clone(), n);
    }

    let copy = match scope {
        Scope::Tenant(TenantScope { copy: Some(c), .. }) => Some(c.clone()),
        _ => None,
    };
    let mut changes: HashMap<String, TableChange> =
        order.iter().map(|t| (t.clone(), TableChange { table: t.clone(), rows_in_backup: staged_rows[t], inserted: 0, updated: 0, deleted: 0 })).collect();
    match (&tenancy, copy) {
        (Some(ten), Some(copy)) => {
            let new_id = copy_tenant(&mut tx, ten, &target, &order, &archived, &staged, &copy, &mut changes, cancel, &mut |t, d| report(t, "copying", d, 0), &mut done).await?;
            out.new_tenant_id = Some(new_id);
        }
        _ => {
            // 2. Rows whose key is taken by a row outside the restore (another tenant's) stop it.
            if let Some(ten) = &tenancy {
                for t in &order {
                    let Some(pk) = target.pks.get(t) else { continue };
                    let on: Vec<String> = pk.iter().map(|c| format!("b.{0} = l.{0}", qi(c))).collect();
                    let pred = ten.predicate(t, "l", &live, 0);
                    let clash: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {} l JOIN {} b ON {} WHERE ({pred}) IS NOT TRUE", live(t), staged(t), on.join(" AND "))))
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(|e| restore_error(&format!("checking the keys of {t}"), &e))?;
                    if clash > 0 {
                        return Err(Error::conflict(format!(
                            "{clash} rows of tenant {} in {t} have keys that other rows of the target (another tenant's) use now; nothing was restored",
                            ten.tenant
                        )));
                    }
                }
            }
            match &tenancy {
                // A tenant: count what changes, then remove all its rows (children first) and
                // insert its rows from the backup (parents first). Every table that references a
                // tenant table is itself one, so nothing outside the tenant is touched.
                Some(ten) => {
                    for t in &order {
                        let pred = ten.predicate(t, "l", &live, 0);
                        if let (Some(pk), Some(c)) = (target.pks.get(t), changes.get_mut(t)) {
                            let (ins, upd, del) = diff_counts(&mut tx, t, pk, archived[t.as_str()], &pred, &live(t), &staged(t)).await?;
                            (c.inserted, c.updated, c.deleted) = (ins, upd, del);
                        }
                    }
                    for t in order.iter().rev() {
                        cancel.check()?;
                        let pred = ten.predicate(t, "l", &live, 0);
                        let n = sqlx::raw_sql(AssertSqlSafe(format!("DELETE FROM {} l WHERE {pred}", live(t))))
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| restore_error(&format!("removing the tenant's rows of {t}"), &e))?
                            .rows_affected();
                        if let Some(c) = changes.get_mut(t) {
                            if !target.pks.contains_key(t) {
                                c.deleted = n;
                            }
                        }
                    }
                    for t in &order {
                        cancel.check()?;
                        report(t, "restoring", &mut done, 0);
                        let cols: Vec<String> = archived[t.as_str()].columns.iter().map(|c| qi(c)).collect();
                        let n = sqlx::raw_sql(AssertSqlSafe(format!(
                            "INSERT INTO {} ({list}) OVERRIDING SYSTEM VALUE SELECT {list} FROM {}",
                            live(t),
                            staged(t),
                            list = cols.join(", ")
                        )))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| restore_error(&format!("table {t}"), &e))?
                        .rows_affected();
                        if let Some(c) = changes.get_mut(t) {
                            if !target.pks.contains_key(t) {
                                c.inserted = n;
                            }
                        }
                    }
                }
                // Whole tables: insert and update first (parents first), so rows that stay never
                // lose a parent; then delete what the backup does not have (children first).
                None => {
                    for t in &order {
                        cancel.check()?;
                        report(t, "restoring", &mut done, 0);
                        if target.pks.contains_key(t) {
                            let (ins, upd) = upsert(&mut tx, t, archived[t.as_str()], &target, &staged(t)).await?;
                            if let Some(c) = changes.get_mut(t) {
                                (c.inserted, c.updated) = (ins, upd);
                            }
                        }
                    }
                    for t in order.iter().rev() {
                        cancel.check()?;
                        let sql = match target.pks.get(t) {
                            Some(pk) => {
                                let on: Vec<String> = pk.iter().map(|c| format!("b.{0} = l.{0}", qi(c))).collect();
                                format!("DELETE FROM {} l WHERE NOT EXISTS (SELECT 1 FROM {} b WHERE {})", live(t), staged(t), on.join(" AND "))
                            }
                            None => format!("DELETE FROM {}", live(t)),
                        };
                        let n = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await.map_err(|e| restore_error(&format!("removing rows of {t}"), &e))?.rows_affected();
                        if let Some(c) = changes.get_mut(t) {
                            c.deleted = n;
                        }
                    }
                    // Tables without a primary key are replaced whole, after the deletes.
                    for t in &order {
                        if !target.pks.contains_key(t) {
                            let (ins, _) = upsert(&mut tx, t, archived[t.as_str()], &target, &staged(t)).await?;
                            if let Some(c) = changes.get_mut(t) {
                                c.inserted = ins;
                            }
                        }
                    }
                }
            }
            if commit {
                bump_sequences(&mut tx, &order, &target).await?;
            }
        }
    }
    out.tables = order.iter().map(|t| changes[t].clone()).collect();
    if commit {
        tx.commit().await.map_err(q("commit the restore"))?;
    } else {
        tx.rollback().await.map_err(q("roll back the dry run"))?;
    }
    let _ = conn.close().await;
    Ok(out)
}

fn check_version(source: &str, target_num: i64) -> Result<()> {
    let source_major: i64 = source.split(|c: char| !c.is_ascii_digit()).next().and_then(|m| m.parse().ok()).unwrap_or(0);
    if target_num > 0 && source_major > 0 && target_num / 10000 < source_major {
        return Err(Error::validation(format!(
            "the backup comes from PostgreSQL {source} and the target runs PostgreSQL {}; restore into PostgreSQL {source_major} or newer",
            target_num / 10000
        )));
    }
    Ok(())
}

/// The backup's columns must all exist in the target table.
fn check_columns(table: &str, archived: &PgTable, target: &Target) -> Result<()> {
    let have: BTreeSet<&str> = target.cols.get(table).map(|c| c.iter().map(|c| c.name.as_str()).collect()).unwrap_or_default();
    let missing: Vec<&str> = archived.columns.iter().map(String::as_str).filter(|c| !have.contains(c)).collect();
    if !missing.is_empty() {
        return Err(Error::validation(format!(
            "the target's table {table} has no column {} that the backup has: the target's schema differs from the backup's; restore into a new database (--create) or migrate the target's schema first",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// Plan warnings for a selective restore: a table restored without its parent, or whose
/// children stay.
pub fn fk_warnings(selected: &BTreeSet<String>, fks: &[impl FkLike]) -> Vec<String> {
    let mut w = Vec::new();
    for fk in fks {
        let (child, parent, cols) = (fk.child(), fk.parent(), fk.columns());
        if child == parent {
            continue;
        }
        if selected.contains(child) && !selected.contains(parent) {
            w.push(format!(
                "{child} is restored without its parent table {parent} ({child}.{cols} → {parent}): rows that reference {parent} rows missing from the target will stop the restore"
            ));
        }
        if selected.contains(parent) && !selected.contains(child) {
            w.push(format!("{parent} is restored without its child table {child}: {parent} rows that {child} still references cannot be removed"));
        }
    }
    w
}

pub trait FkLike {
    fn child(&self) -> &str;
    fn parent(&self) -> &str;
    fn columns(&self) -> String;
}

impl FkLike for Fk {
    fn child(&self) -> &str {
        &self.child
    }
    fn parent(&self) -> &str {
        &self.parent
    }
    fn columns(&self) -> String {
        self.cols.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(",")
    }
}

/// Rows a tenant restore inserts (key not in the target), updates (key there, row different) and
/// deletes (key not in the backup).
async fn diff_counts(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, t: &str, pk: &[String], archived: &PgTable, pred: &str, live: &str, staged: &str) -> Result<(u64, u64, u64)> {
    let on: Vec<String> = pk.iter().map(|c| format!("b.{0} = l.{0}", qi(c))).collect();
    let on = on.join(" AND ");
    let lcols: Vec<String> = archived.columns.iter().map(|c| format!("l.{}", qi(c))).collect();
    let bcols: Vec<String> = archived.columns.iter().map(|c| format!("b.{}", qi(c))).collect();
    let (ins, upd, del): (i64, i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT (SELECT count(*) FROM {staged} b WHERE NOT EXISTS (SELECT 1 FROM {live} l WHERE {on} AND {pred})), \
                (SELECT count(*) FROM {staged} b JOIN {live} l ON {on} WHERE {pred} AND ROW({}) IS DISTINCT FROM ROW({})), \
                (SELECT count(*) FROM {live} l WHERE {pred} AND NOT EXISTS (SELECT 1 FROM {staged} b WHERE {on}))",
        lcols.join(", "),
        bcols.join(", ")
    )))
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| restore_error(&format!("comparing {t} with the backup"), &e))?;
    Ok((u64::try_from(ins).unwrap_or(0), u64::try_from(upd).unwrap_or(0), u64::try_from(del).unwrap_or(0)))
}

async fn count(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, relation: &str) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {relation}"))).fetch_one(&mut **tx).await.map_err(q("count rows"))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Inserts the staged rows missing from the table and updates the ones that differ; returns
/// (inserted, updated).
async fn upsert(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, t: &str, archived: &PgTable, target: &Target, staged: &str) -> Result<(u64, u64)> {
    let cols: Vec<String> = archived.columns.iter().map(|c| qi(c)).collect();
    let list = cols.join(", ");
    let sql = match target.pks.get(t) {
        Some(pk) => {
            let always: BTreeSet<&str> = target.cols.get(t).map(|c| c.iter().filter(|c| c.always).map(|c| c.name.as_str()).collect()).unwrap_or_default();
            let set: Vec<&String> = archived.columns.iter().filter(|c| !pk.contains(c) && !always.contains(c.as_str())).collect();
            let conflict: Vec<String> = pk.iter().map(|c| qi(c)).collect();
            let action = if set.is_empty() {
                "DO NOTHING".to_string()
            } else {
                let assign: Vec<String> = set.iter().map(|c| format!("{0} = EXCLUDED.{0}", qi(c))).collect();
                let old: Vec<String> = set.iter().map(|c| format!("l.{}", qi(c))).collect();
                let new: Vec<String> = set.iter().map(|c| format!("EXCLUDED.{}", qi(c))).collect();
                format!("DO UPDATE SET {} WHERE ROW({}) IS DISTINCT FROM ROW({})", assign.join(", "), old.join(", "), new.join(", "))
            };
            format!(
                "WITH r AS (INSERT INTO {} AS l ({list}) OVERRIDING SYSTEM VALUE SELECT {list} FROM {staged} ON CONFLICT ({}) {action} RETURNING (xmax = 0) AS ins) \
                 SELECT count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins) FROM r",
                rel(t),
                conflict.join(", ")
            )
        }
        None => format!("WITH r AS (INSERT INTO {} ({list}) OVERRIDING SYSTEM VALUE SELECT {list} FROM {staged} RETURNING 1) SELECT count(*), 0::int8 FROM r", rel(t)),
    };
    let (ins, upd): (i64, i64) = sqlx::query_as(AssertSqlSafe(sql)).fetch_one(&mut **tx).await.map_err(|e| restore_error(&format!("table {t}"), &e))?;
    Ok((u64::try_from(ins).unwrap_or(0), u64::try_from(upd).unwrap_or(0)))
}

/// Moves the serial and identity sequences of `tables` past the largest value now in them.
pub(crate) async fn bump_sequences(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, tables: &[String], target: &Target) -> Result<()> {
    for t in tables {
        for c in target.cols.get(t).into_iter().flatten() {
            if !(c.identity || c.default.as_deref().is_some_and(|d| d.starts_with("nextval("))) {
                continue;
            }
            sqlx::raw_sql(AssertSqlSafe(format!(
                "SELECT setval(seq::regclass, m) FROM (SELECT pg_get_serial_sequence({t}, {c}) AS seq, (SELECT max({col})::bigint FROM {table}) AS m) x \
                 WHERE seq IS NOT NULL AND m IS NOT NULL AND m > COALESCE(pg_sequence_last_value(seq::regclass), 0)",
                t = ql(&rel(t)),
                c = ql(&c.name),
                col = qi(&c.name),
                table = rel(t)
            )))
            .execute(&mut **tx)
            .await
            .map_err(|e| restore_error(&format!("the sequence of {t}.{}", c.name), &e))?;
        }
    }
    Ok(())
}

/// Inserts the staged tenant as a new tenant: new keys for generated keys, every foreign key to a
/// copied row rewritten, the tenant column set to the new id. Returns the new id.
#[allow(clippy::too_many_arguments)]
async fn copy_tenant(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    ten: &Tenancy,
    target: &Target,
    order: &[String],
    archived: &HashMap<String, &PgTable>,
    staged: &(dyn Fn(&str) -> String + Sync),
    copy: &CopyAs,
    changes: &mut HashMap<String, TableChange>,
    cancel: &CancelToken,
    report: &mut (dyn FnMut(&str, &mut u64) + Send),
    done: &mut u64,
) -> Result<String> {
    // The new tenant id: given, or the tenants table key's default.
    let tenants = order.iter().find(|t| matches!(ten.reach.get(*t), Some(Reach::TenantsKey(_))));
    let new_id = match (&copy.new_tenant_id, tenants) {
        (Some(id), _) => id.clone(),
        (None, Some(t)) => {
            let Some(Reach::TenantsKey(k)) = ten.reach.get(t) else { unreachable!() };
            let col = target.cols[t].iter().find(|c| &c.name == k).cloned();
            let expr = match col {
                Some(c) if c.identity => format!("nextval(pg_get_serial_sequence({}, {}))", ql(&rel(t)), ql(&c.name)),
                Some(Col { default: Some(d), .. }) => d,
                Some(c) if c.ty == "uuid" => "gen_random_uuid()".into(),
                _ => return Err(Error::validation(format!("the tenants table {t} has no default for its key: give the new tenant's id (--new-tenant-id)"))),
            };
            sqlx::query_scalar::<_, String>(AssertSqlSafe(format!("SELECT ({expr})::text"))).fetch_one(&mut **tx).await.map_err(q("make a new tenant id"))?
        }
        (None, None) => return Err(Error::validation("the backup has no tenants table to make a new id from: give the new tenant's id (--new-tenant-id)")),
    };
    if new_id == ten.tenant {
        return Err(Error::validation("the copy needs a tenant id other than the tenant's own"));
    }
    // The new id must be free.
    for t in order {
        let c = match ten.reach.get(t) {
            Some(Reach::Column(c)) | Some(Reach::TenantsKey(c)) => c,
            _ => continue,
        };
        let used: bool = sqlx::query_scalar(AssertSqlSafe(format!("SELECT EXISTS (SELECT 1 FROM {} WHERE {} = {})", rel(t), qi(c), ql(&new_id))))
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| restore_error(&format!("checking the new tenant id in {t}"), &e))?;
        if used {
            return Err(Error::conflict(format!("the tenant id {new_id} is already used in {t}; choose another new tenant id")));
        }
    }
    // Key maps: old key → new key, for tables with a one-column generated key.
    let mut maps: HashMap<String, (String, String)> = HashMap::new(); // table → (key column, map relation)
    for (i, t) in order.iter().enumerate() {
        let Some(pk) = target.pks.get(t) else { continue };
        if pk.len() != 1 {
            continue;
        }
        let key = &pk[0];
        let col = target.cols[t].iter().find(|c| &c.name == key).cloned().ok_or_else(|| Error::new(ErrorCode::Internal, format!("{t} has no column {key}")))?;
        let is_tenant_col = matches!(ten.reach.get(t), Some(Reach::Column(c)) if c == key);
        let is_fk = target.fks.iter().any(|fk| &fk.child == t && fk.cols.iter().any(|(c, _)| c == key));
        let generator = if matches!(ten.reach.get(t), Some(Reach::TenantsKey(_))) {
            Some(format!("CAST({} AS {})", ql(&new_id), col.ty))
        } else if col.identity {
            Some(format!("nextval(pg_get_serial_sequence({}, {}))", ql(&rel(t)), ql(key)))
        } else if let Some(d) = &col.default {
            Some(d.clone())
        } else if col.ty == "uuid" {
            Some("gen_random_uuid()".into())
        } else {
            None
        };
        match generator {
            Some(g) if !is_tenant_col && !is_fk => {
                let map = format!("pg_temp._sh_m{i}");
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "CREATE TEMP TABLE {map} ON COMMIT DROP AS SELECT {k} AS old, {g} AS new FROM {s}; CREATE INDEX ON {map} (old);",
                    k = qi(key),
                    s = staged(t)
                )))
                .execute(&mut **tx)
                .await
                .map_err(|e| restore_error(&format!("new keys for {t}"), &e))?;
                maps.insert(t.clone(), (key.clone(), map));
            }
            _ if is_tenant_col || is_fk => {}
            _ => {
                return Err(Error::validation(format!(
                    "{t}'s primary key ({key}) is neither generated nor tied to the tenant: a copy would reuse its values; restore the tenant in place (--preserve-ids) instead"
                )))
            }
        }
    }
    // Insert, parents first, every column rewritten as needed.
    for t in order {
        cancel.check()?;
        report(t, done);
        let at = archived[t.as_str()];
        let mut exprs = Vec::new();
        for c in &at.columns {
            let tenant_col = match ten.reach.get(t) {
                Some(Reach::Column(tc)) => tc == c,
                _ => false,
            };
            let fk_map = target.fks.iter().filter(|fk| &fk.child == t).find_map(|fk| {
                fk.cols.iter().find(|(cc, _)| cc == c).and_then(|(_, pc)| maps.get(&fk.parent).filter(|(k, _)| k == pc).map(|(_, m)| m.clone()))
            });
            let is_name = copy.new_tenant_name.is_some() && c == "name" && matches!(ten.reach.get(t), Some(Reach::TenantsKey(_)));
            let e = if tenant_col {
                ql(&new_id)
            } else if maps.get(t).is_some_and(|(k, _)| k == c) {
                format!("(SELECT m.new FROM {} m WHERE m.old = b.{})", maps[t].1, qi(c))
            } else if let Some(m) = fk_map {
                format!("COALESCE((SELECT m.new FROM {m} m WHERE m.old = b.{0}), b.{0})", qi(c))
            } else if is_name {
                ql(copy.new_tenant_name.as_deref().unwrap_or_default())
            } else {
                format!("b.{}", qi(c))
            };
            exprs.push(e);
        }
        let cols: Vec<String> = at.columns.iter().map(|c| qi(c)).collect();
        let n = sqlx::raw_sql(AssertSqlSafe(format!(
            "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {} b",
            rel(t),
            cols.join(", "),
            exprs.join(", "),
            staged(t)
        )))
        .execute(&mut **tx)
        .await
        .map_err(|e| restore_error(&format!("copying {t}"), &e))?
        .rows_affected();
        if let Some(ch) = changes.get_mut(t) {
            ch.inserted = n;
        }
    }
    Ok(new_id)
}

/// The target's foreign keys between tables, for plan warnings without a dry run.
pub async fn foreign_keys(url: &str) -> Result<Vec<(String, String, String)>> {
    let mut conn = connect(url).await?;
    let t = read_target(&mut conn).await?;
    let _ = conn.close().await;
    Ok(t.fks.iter().map(|f| (f.child.clone(), f.parent.clone(), f.columns())).collect())
}

impl FkLike for (String, String, String) {
    fn child(&self) -> &str {
        &self.0
    }
    fn parent(&self) -> &str {
        &self.1
    }
    fn columns(&self) -> String {
        self.2.clone()
    }
}
