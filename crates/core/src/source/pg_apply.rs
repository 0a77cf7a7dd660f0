//! Restoring rows into a live PostgreSQL database, in ONE transaction: chosen tables replaced by
//! a backup's (selective), or one tenant's rows replaced by its rows from a backup without
//! touching any other tenant (tenant only). A tenant restored as a copy goes through the
//! migration writer ([`crate::migrate::restore_tenant_as_copy`]), which makes new keys.
//!
//! The backup's tables are loaded into temporary staging tables first (a partitioned table is one
//! table: its partitions' sections fill it) and, for a tenant, cut down to its rows along the
//! paths [`Tenancy`] found. Before anything is written, rows whose keys or unique values other
//! rows hold stop the restore. Then, with the tables' triggers quiet, rows that stay are updated
//! where a value's text differs, new rows inserted (parents first), rows the backup lacks deleted
//! (children first), and references that close a cycle put back last. With `commit: false` the
//! same work runs and is rolled back: the plan's exact counts, and any incompatibility found
//! before anything is kept.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;
use sqlx::{AssertSqlSafe, Connection as _};
use ts_rs::TS;

use super::postgres::{archived_schema, connect, load_table_into, q, qi, ql, restore_error, PgTable};
pub(crate) use super::tenancy::{read_target, rel, stand_in, write_order, Col, Fk, Target, Tenancy, WriteOrder};
pub use super::tenancy::TenantScope;
use super::tenancy::quiet_triggers;
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

/// Applies `scope` of the backup `chain` to the live database at `url`, in one transaction,
/// committed only when `commit` (a dry run otherwise).
pub async fn apply(chain: &Chain, url: &str, scope: &Scope, commit: bool, cancel: &CancelToken, progress: &ProgressSink) -> Result<ApplyOutcome> {
    let (reader, index) = chain.last().ok_or_else(|| Error::new(ErrorCode::Internal, "an empty restore chain"))?;
    let schema = archived_schema(reader, index)?;
    let mut conn = connect(url).await?;
    // One transaction from the first statement: the tables a selective restore creates are
    // created in it too.
    let mut tx = conn.begin().await.map_err(q("start the restore transaction"))?;
    let mut target = read_target(&mut tx).await?;
    if let Scope::Tenant(ts) = scope {
        for r in ts.references.iter().filter(|r| !r.trim().is_empty()) {
            let fk = super::tenancy::parse_reference(r, &target)?;
            target.fks.push(fk);
        }
    }
    check_version(&schema.server_version, target.server_version_num)?;
    let mut out = ApplyOutcome::default();
    // Tables asked for that the target lacks are created as the backup has them.
    if let Scope::Tables(set) = scope {
        let mut missing = BTreeSet::new();
        for t in set {
            if !schema.tables.iter().any(|a| a.section() == *t || a.root.as_deref() == Some(t.as_str())) {
                return Err(Error::not_found(format!("the backup has no table {t}")));
            }
            if target.table_of(t).is_none() {
                missing.insert(t.clone());
            }
        }
        if !missing.is_empty() {
            let present = |t: &str| target.table_of(t).is_some();
            let created = super::pg_create::create_tables(&mut tx, &schema, &missing, &present, cancel).await?;
            out.warnings.extend(created.said);
            out.warnings.extend(created.left_out.into_iter().map(|l| format!("foreign key left out: {l}")));
            target = read_target(&mut tx).await?;
        }
    }
    let groups = archived_tables(&schema, &target);
    let available: BTreeSet<String> = groups.keys().cloned().collect();

    let (tables, tenancy) = match scope {
        Scope::Tables(set) => {
            let mut chosen = BTreeSet::new();
            for t in set {
                if !schema.tables.iter().any(|a| a.section() == *t || a.root.as_deref() == Some(t.as_str())) {
                    return Err(Error::not_found(format!("the backup has no table {t}")));
                }
                let Some(tt) = target.table_of(t) else {
                    return Err(Error::new(ErrorCode::Internal, format!("the table {t} was created but is not found in the target {}", super::redact(url))));
                };
                chosen.insert(tt);
            }
            out.warnings.extend(fk_warnings(&chosen, &target.fks));
            (chosen.into_iter().collect::<Vec<_>>(), None)
        }
        Scope::Tenant(ts) => {
            let tenancy = Tenancy::find(&target, ts, &available)?;
            for fk in &target.fks {
                if tenancy.reach.contains_key(&fk.parent) && !tenancy.reach.contains_key(&fk.child) && target.cols.contains_key(&fk.child) && fk.child != fk.parent {
                    out.warnings.push(format!("{} references the tenant table {} but is not in the backup: its rows are left as they are", fk.child, fk.parent));
                }
            }
            for (owned, by) in tenancy.owned() {
                out.warnings.push(format!("{owned}: the rows that the tenant's {by} rows point at belong to the tenant and are restored with it"));
            }
            (tenancy.reach_order(), Some(tenancy))
        }
    };
    let order = write_order(&tables, &target.fks)?;
    for t in &tables {
        for a in &groups[t] {
            check_columns(t, a, &target)?;
        }
    }
    let staging: HashMap<String, String> = tables.iter().enumerate().map(|(i, t)| (t.clone(), format!("pg_temp._sh_s{i}"))).collect();
    let captured: HashMap<String, String> = tables.iter().enumerate().map(|(i, t)| (t.clone(), format!("pg_temp._sh_d{i}"))).collect();
    let staged = |t: &str| staging.get(t).cloned().unwrap_or_else(|| rel(t));
    // The live table's own rows (`ONLY` a table others inherit from); `rel` where rows go in.
    let live = |t: &str| target.own_rows(t);

    sqlx::raw_sql("SET CONSTRAINTS ALL DEFERRED; SET LOCAL extra_float_digits = 3").execute(&mut *tx).await.map_err(q("prepare the restore"))?;
    if let Some(ten) = &tenancy {
        ten.bind(&mut tx).await?;
    }
    let total = tables.len() as u64 * 2;
    let mut done = 0u64;
    let report = |table: &str, phase: &str, done: &mut u64| {
        progress(Progress { phase: phase.into(), table: Some(table.to_string()), tables_done: *done, tables_total: total, rows: 0, bytes: 0 });
        *done += 1;
    };

    // 1. Stage the backup's rows (the tenant's only), in the order their paths need.
    let mut changes: HashMap<String, TableChange> = HashMap::new();
    for t in &tables {
        cancel.check()?;
        report(t, "reading the backup", &mut done);
        let cols = &groups[t][0].columns;
        let list: Vec<String> = cols.iter().map(|c| qi(c)).collect();
        exec(&mut tx, &format!("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA", staged(t), list.join(", "), live(t)), &format!("staging {t}")).await?;
        for a in &groups[t] {
            stage(&mut tx, chain, a, t, &staged(t), tenancy.as_ref(), cancel).await?;
        }
    }
    // The tenant's rows, found on the backup's whole tables (a row reached by several tenants
    // is nobody's own), then the others dropped.
    if let Some(ten) = &tenancy {
        for (table, by, n) in cut_to_tenant(&mut tx, ten, &tables, &staged).await? {
            out.warnings.push(format!("{table}: {n} of the rows that the tenant's {by} rows point at are reached by other tenants' rows too: shared, they stay as they are"));
        }
    }
    for t in &tables {
        let n = count(&mut tx, &staged(t)).await?;
        changes.insert(t.clone(), TableChange { table: t.clone(), rows_in_backup: n, inserted: 0, updated: 0, deleted: 0 });
    }

    // 2. The rows replaced: the tenant's now (found before anything moves), or whole tables.
    for t in &tables {
        let id = identity(&target, t);
        let pred = match &tenancy {
            // Rows that belong to nobody now (the row linking them to the tenant was deleted and
            // their link emptied, or the row pointing at them one-to-one is gone) are the
            // tenant's again when the backup has them under the same key.
            // (The same row: the same primary key, or — without one — the same values of a
            // unique index.)
            Some(ten) => {
                let orphans = ten.under(t, "l", &staged).map(|u| format!(" OR ({u} AND NOT {})", ten.anyones(t, "l", &live, 0))).unwrap_or_default();
                let same = target.pks.get(t).filter(|pk| !pk.is_empty()).cloned().map(|pk| (pk, None)).or_else(|| {
                    target.unique_indexes.get(t).into_iter().flatten().find_map(|u| u.plain().filter(|c| c.iter().all(|c| groups[t][0].columns.contains(c))).map(|c| (c, u.predicate.clone())))
                });
                match same {
                    Some((cols, predicate)) => {
                        let keys: Vec<String> = cols.iter().map(|c| qi(c)).collect();
                        let lkeys: Vec<String> = cols.iter().map(|c| format!("l.{}", qi(c))).collect();
                        let partial = predicate.map(|p| format!(" AND (SELECT {p} FROM (SELECT l.*) _x)")).unwrap_or_default();
                        format!(
                            "({}) OR (({}) IN (SELECT {} FROM {}){partial} AND NOT {}){orphans}",
                            ten.predicate(t, "l", &live, 0),
                            lkeys.join(", "),
                            keys.join(", "),
                            staged(t),
                            ten.anyones(t, "l", &live, 0)
                        )
                    }
                    None => format!("({}){orphans}", ten.predicate(t, "l", &live, 0)),
                }
            }
            None => "TRUE".into(),
        };
        exec(&mut tx, &format!("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} l WHERE {pred}", captured[t], id.select("l"), live(t)), &format!("finding the rows of {t} to replace")).await?;
    }

    // 3. Before anything is written: a restored row whose key or unique value another row (not
    //    replaced) holds stops the restore, naming the table and the constraint.
    for t in &tables {
        for u in target.unique_indexes.get(t).into_iter().flatten() {
            let Some(cols) = u.plain() else { continue };
            if !cols.iter().all(|c| groups[t][0].columns.contains(c)) {
                continue;
            }
            let id = identity(&target, t);
            let on: Vec<String> = cols.iter().map(|c| if u.nulls_not_distinct { format!("b.{0} IS NOT DISTINCT FROM l.{0}", qi(c)) } else { format!("b.{0} = l.{0}", qi(c)) }).collect();
            let both_pred = u.predicate.as_ref().map(|p| format!(" AND (SELECT {p} FROM (SELECT b.*) _x) AND (SELECT {p} FROM (SELECT l.*) _y)")).unwrap_or_default();
            let sql = format!("SELECT count(*) FROM {} b JOIN {} l ON {}{both_pred} WHERE NOT {}", staged(t), live(t), on.join(" AND "), id.among("l", &captured[t]));
            let clash: i64 = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&mut *tx).await.map_err(|e| restore_error(&format!("checking {t} against {}", u.name), &e))?;
            if clash > 0 {
                let whose = match &tenancy {
                    Some(ten) => format!("of tenant {} ", ten.tenant),
                    None => String::new(),
                };
                return Err(Error::conflict(format!(
                    "{clash} rows {whose}in {t} have values of {} ({}) that other rows of the target hold now{}; nothing was restored",
                    u.name,
                    cols.join(", "),
                    if tenancy.is_some() { " (another tenant's, or rows the backup does not count as this tenant's)" } else { "" }
                )));
            }
        }
    }

    // A restored row pointing at a row of a table the restore does not write must find it
    // there: the target may have lost it since the backup.
    for fk in target.fks.iter().filter(|fk| !fk.declared && staging.contains_key(&fk.child) && !staging.contains_key(&fk.parent)) {
        if !fk.cols.iter().all(|(c, _)| groups[&fk.child][0].columns.contains(c)) {
            continue;
        }
        let set: Vec<String> = fk.cols.iter().map(|(c, _)| format!("b.{} IS NOT NULL", qi(c))).collect();
        let on: Vec<String> = fk.cols.iter().map(|(c, p)| format!("p.{} = b.{}", qi(p), qi(c))).collect();
        let missing: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM {} b WHERE {} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {})",
            staged(&fk.child),
            set.join(" AND "),
            live(&fk.parent),
            on.join(" AND ")
        )))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| restore_error(&format!("checking the references of {}", fk.child), &e))?;
        if missing > 0 {
            return Err(Error::conflict(format!(
                "{missing} rows of {} in the backup refer to rows of {} ({}) that the target no longer has, and {} is not restored with them; restore {} first (selective restore), or restore into a new database; nothing was restored",
                fk.child,
                fk.parent,
                fk.name,
                fk.parent,
                fk.parent
            )));
        }
    }

    // 4. What changes: compared by the values' exact text (never by a type's `=`).
    for t in &tables {
        if let (Some(pk), Some(c)) = (target.pks.get(t), changes.get_mut(t)) {
            let cols = &groups[t][0].columns;
            (c.inserted, c.updated, c.deleted) = diff_counts(&mut tx, t, pk, cols, &live(t), &staged(t), &captured[t]).await?;
        }
    }

    // 5. Write, with the tables' triggers quiet: references that close a cycle are left out
    //    first; rows whose key stays are updated where a value differs and new ones inserted
    //    (parents first); rows the backup lacks deleted (children first); the cycle references
    //    put back. Rows that stay are never deleted, so nothing cascades from them.
    let again = quiet_triggers(&mut tx, &target, &tables).await?;
    // References that close a cycle, and a table's references to itself (a row updated in place
    // may point at a row inserted after it), are written once every row is in.
    let late: Vec<&Fk> = order.late.iter().filter(|fk| WriteOrder::held(fk)).chain(target.fks.iter().filter(|fk| fk.child == fk.parent && !fk.deferrable && fk.nullable && staging.contains_key(&fk.child))).collect();
    let late_of = |t: &str, c: &str| late.iter().find(|fk| fk.child == t && fk.cols.iter().any(|(x, _)| x == c)).copied();
    let is_late = |t: &str, c: &str| late_of(t, c).is_some();
    for fk in &late {
        let set: Vec<String> = fk.cols.iter().map(|(c, _)| format!("{} = {}", qi(c), stand_in(fk, c))).collect();
        let id = identity(&target, &fk.child);
        exec(&mut tx, &format!("UPDATE {} l SET {} WHERE {}", live(&fk.child), set.join(", "), id.among("l", &captured[&fk.child])), &format!("table {}", fk.child)).await?;
    }
    // Rows the backup lacks that nothing points at go first (children first): a row whose key
    // changed since the backup holds its unique values, which the backup's row takes back.
    for t in order.tables.iter().rev() {
        let Some(pk) = target.pks.get(t) else { continue };
        let on: Vec<String> = pk.iter().map(|c| format!("l.{0} = s.{0}", qi(c))).collect();
        let id = identity(&target, t);
        let mut unreferenced = Vec::new();
        for fk in target.fks.iter().filter(|fk| fk.parent == *t && !fk.declared) {
            let join: Vec<String> = fk.cols.iter().map(|(c, p)| format!("c.{} = l.{}", qi(c), qi(p))).collect();
            unreferenced.push(format!(" AND NOT EXISTS (SELECT 1 FROM {} c WHERE {})", live(&fk.child), join.join(" AND ")));
        }
        exec(
            &mut tx,
            &format!(
                "DELETE FROM {} l WHERE {} AND NOT EXISTS (SELECT 1 FROM {} s WHERE {}){}",
                live(t),
                id.among("l", &captured[t]),
                staged(t),
                on.join(" AND "),
                unreferenced.concat()
            ),
            &format!("removing the rows of {t}"),
        )
        .await?;
    }
    for t in &order.tables {
        cancel.check()?;
        report(t, "restoring", &mut done);
        let cols = &groups[t][0].columns;
        let list: Vec<String> = cols.iter().map(|c| qi(c)).collect();
        let exprs: Vec<String> = cols.iter().map(|c| match late_of(t, c) { Some(fk) => stand_in(fk, c), None => format!("s.{}", qi(c)) }).collect();
        let id = identity(&target, t);
        let n = match target.pks.get(t) {
            Some(pk) => {
                let on: Vec<String> = pk.iter().map(|c| format!("l.{0} = s.{0}", qi(c))).collect();
                let always: BTreeSet<&str> = target.cols.get(t).map(|c| c.iter().filter(|c| c.always || c.generated).map(|c| c.name.as_str()).collect()).unwrap_or_default();
                let set: Vec<&String> = cols.iter().filter(|c| !pk.contains(c) && !always.contains(c.as_str()) && !is_late(t, c)).collect();
                if !set.is_empty() {
                    let assign: Vec<String> = set.iter().map(|c| format!("{0} = s.{0}", qi(c))).collect();
                    let old: Vec<String> = set.iter().map(|c| format!("l.{}::text", qi(c))).collect();
                    let new: Vec<String> = set.iter().map(|c| format!("s.{}::text", qi(c))).collect();
                    exec(
                        &mut tx,
                        &format!(
                            "UPDATE {} l SET {} FROM {} s WHERE {} AND {} AND ROW({}) IS DISTINCT FROM ROW({})",
                            live(t),
                            assign.join(", "),
                            staged(t),
                            on.join(" AND "),
                            id.among("l", &captured[t]),
                            old.join(", "),
                            new.join(", ")
                        ),
                        &format!("table {t}"),
                    )
                    .await?;
                }
                exec(
                    &mut tx,
                    &format!(
                        "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {} s WHERE NOT EXISTS (SELECT 1 FROM {} l WHERE {})",
                        rel(t),
                        list.join(", "),
                        exprs.join(", "),
                        staged(t),
                        live(t),
                        on.join(" AND ")
                    ),
                    &format!("table {t}"),
                )
                .await?
            }
            None => {
                // Without a key nothing can point at the rows: they are replaced whole.
                exec(&mut tx, &format!("DELETE FROM {} l WHERE {}", live(t), id.among("l", &captured[t])), &format!("removing the rows of {t}")).await?;
                exec(&mut tx, &format!("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {} s", rel(t), list.join(", "), exprs.join(", "), staged(t)), &format!("table {t}")).await?
            }
        };
        if let Some(c) = changes.get_mut(t) {
            if !target.pks.contains_key(t) {
                (c.inserted, c.deleted) = (n, count(&mut tx, &captured[t]).await?);
            }
        }
    }
    for t in order.tables.iter().rev() {
        cancel.check()?;
        let Some(pk) = target.pks.get(t) else { continue };
        let on: Vec<String> = pk.iter().map(|c| format!("l.{0} = s.{0}", qi(c))).collect();
        let id = identity(&target, t);
        exec(
            &mut tx,
            &format!("DELETE FROM {} l WHERE {} AND NOT EXISTS (SELECT 1 FROM {} s WHERE {})", live(t), id.among("l", &captured[t]), staged(t), on.join(" AND ")),
            &format!("removing the rows of {t}"),
        )
        .await?;
    }
    for fk in &late {
        let Some(pk) = target.pks.get(&fk.child) else { continue };
        let set: Vec<String> = fk.cols.iter().map(|(c, _)| format!("{0} = s.{0}", qi(c))).collect();
        let on: Vec<String> = pk.iter().map(|c| format!("l.{0} = s.{0}", qi(c))).collect();
        exec(&mut tx, &format!("UPDATE {} l SET {} FROM {} s WHERE {}", live(&fk.child), set.join(", "), staged(&fk.child), on.join(" AND ")), &format!("table {}", fk.child)).await?;
    }
    // Deferred checks run now: a table with pending trigger events cannot be altered.
    sqlx::query("SET CONSTRAINTS ALL IMMEDIATE").execute(&mut *tx).await.map_err(|e| restore_error("checking the foreign keys", &e))?;
    for st in again {
        exec(&mut tx, &st, "turning the triggers on again").await?;
    }
    if commit {
        bump_sequences(&mut tx, &tables, &target).await?;
    }
    out.tables = order.tables.iter().map(|t| changes[t].clone()).collect();
    if commit {
        tx.commit().await.map_err(q("commit the restore"))?;
    } else {
        tx.rollback().await.map_err(q("roll back the dry run"))?;
    }
    let _ = conn.close().await;
    Ok(out)
}

/// The archived tables that fill each target table: a table itself, or every partition of a
/// partitioned one (by the archive's record of the root, or else by the target's partitions).
pub(crate) fn archived_tables<'a>(schema: &'a super::postgres::PgSchema, target: &Target) -> BTreeMap<String, Vec<&'a PgTable>> {
    let mut out: BTreeMap<String, Vec<&PgTable>> = BTreeMap::new();
    for t in &schema.tables {
        let section = t.section();
        let table = t.root.clone().filter(|r| target.cols.contains_key(r)).or_else(|| target.table_of(&section));
        if let Some(table) = table {
            out.entry(table).or_default().push(t);
        }
    }
    out
}

/// Stages the backup's rows of the archived table `a` (of target table `t`) into `into`: for a
/// tenant restore, only the tenant's rows when the table is theirs by its own column alone
/// ([`Tenancy::filtered_by_column`]) and the chain's newest backup holds the table whole (a
/// later change could move a row to another tenant); else every row (cut down later).
async fn stage(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, chain: &Chain, a: &PgTable, t: &str, into: &str, ten: Option<&Tenancy>, cancel: &CancelToken) -> Result<u64> {
    let section = a.section();
    if let (Some(ten), Some((reader, index))) = (ten, chain.last()) {
        let whole = index.section(&section).is_some_and(|e| e.mode.is_none());
        if let (true, Some((column, ty))) = (whole, ten.filtered_by_column(t)) {
            if let Some(at) = a.columns.iter().position(|c| c == column) {
                // The tenant id as the column's type writes it (what COPY wrote).
                let value: String = sqlx::query_scalar(AssertSqlSafe(format!("SELECT CAST(current_setting({}) AS {ty})::text", ql(&ten.param))))
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(|e| restore_error(&format!("staging {t}"), &e))?;
                let cols: Vec<String> = a.columns.iter().map(|c| qi(c)).collect();
                return super::postgres::copy_in_where(tx, reader, index, &section, &format!("{into} ({}) FROM STDIN", cols.join(", ")), (at, value.into_bytes()), cancel).await;
            }
        }
    }
    load_table_into(tx, chain, a, into, cancel).await
}

/// Cuts staged copies of whole tables down to the tenant's rows: each table's rows found first
/// (on the whole copies, so a row that also leads to another tenant is seen to), then the others
/// deleted. The staged copies get indexes on the columns the conditions join on.
/// Returns the rows owned one-to-one that several tenants reach (they stay shared), per table.
pub(crate) async fn cut_to_tenant(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, ten: &Tenancy, tables: &[String], staged: &(dyn Fn(&str) -> String + Sync)) -> Result<Vec<(String, String, i64)>> {
    for (t, cols) in ten.join_columns() {
        if tables.contains(&t) {
            let list: Vec<String> = cols.iter().map(|c| qi(c)).collect();
            exec(tx, &format!("CREATE INDEX ON {} ({})", staged(&t), list.join(", ")), &format!("indexing the staged rows of {t}")).await?;
        }
    }
    for t in tables {
        exec(tx, &format!("ANALYZE {}", staged(t)), &format!("staging {t}")).await?;
    }
    let keep: Vec<String> = (0..tables.len()).map(|i| format!("pg_temp._sh_k{i}")).collect();
    for (t, k) in tables.iter().zip(&keep) {
        let pred = ten.predicate(t, "s", staged, 0);
        exec(tx, &format!("CREATE TEMP TABLE {k} ON COMMIT DROP AS SELECT s.ctid AS c FROM {} s WHERE {pred}", staged(t)), &format!("selecting the tenant's rows of {t}")).await?;
    }
    let shared = ten.shared_owned(tx, staged).await?;
    for (t, k) in tables.iter().zip(&keep) {
        exec(tx, &format!("DELETE FROM {} s WHERE s.ctid NOT IN (SELECT c FROM {k})", staged(t)), &format!("selecting the tenant's rows of {t}")).await?;
    }
    Ok(shared)
}

/// What tells a table's rows apart: its primary key, or (without one) each row's place.
pub(crate) struct Identity(Option<Vec<String>>);

impl Identity {
    /// The columns to keep of rows aliased `alias`.
    pub(crate) fn select(&self, alias: &str) -> String {
        match &self.0 {
            Some(pk) => pk.iter().map(|c| format!("{alias}.{}", qi(c))).collect::<Vec<_>>().join(", "),
            None => format!("{alias}.tableoid AS _sh_oid, {alias}.ctid AS _sh_ctid"),
        }
    }
    /// A condition: the row aliased `alias` is among the rows kept in `relation`.
    pub(crate) fn among(&self, alias: &str, relation: &str) -> String {
        match &self.0 {
            Some(pk) => {
                let l: Vec<String> = pk.iter().map(|c| format!("{alias}.{}", qi(c))).collect();
                let k: Vec<String> = pk.iter().map(|c| qi(c)).collect();
                format!("({}) IN (SELECT {} FROM {relation})", l.join(", "), k.join(", "))
            }
            None => format!("({alias}.tableoid, {alias}.ctid) IN (SELECT _sh_oid, _sh_ctid FROM {relation})"),
        }
    }
}

pub(crate) fn identity(target: &Target, t: &str) -> Identity {
    Identity(target.pks.get(t).filter(|pk| !pk.is_empty()).cloned())
}

async fn exec(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, sql: &str, what: &str) -> Result<u64> {
    Ok(sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(&mut **tx).await.map_err(|e| restore_error(what, &e))?.rows_affected())
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

/// Rows a restore inserts (key not among the rows replaced), updates (key there, a value's text
/// different) and deletes (key not in the backup).
async fn diff_counts(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, t: &str, pk: &[String], cols: &[String], live: &str, staged: &str, captured: &str) -> Result<(u64, u64, u64)> {
    let on: Vec<String> = pk.iter().map(|c| format!("b.{0} = l.{0}", qi(c))).collect();
    let on = on.join(" AND ");
    let keys: Vec<String> = pk.iter().map(|c| qi(c)).collect();
    let keys = keys.join(", ");
    let lkeys: Vec<String> = pk.iter().map(|c| format!("l.{}", qi(c))).collect();
    let lcols: Vec<String> = cols.iter().map(|c| format!("l.{}::text", qi(c))).collect();
    let bcols: Vec<String> = cols.iter().map(|c| format!("b.{}::text", qi(c))).collect();
    let mine = format!("({}) IN (SELECT {keys} FROM {captured})", lkeys.join(", "));
    let (ins, upd, del): (i64, i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT (SELECT count(*) FROM {staged} b WHERE NOT EXISTS (SELECT 1 FROM {live} l WHERE {on} AND {mine})), \
                (SELECT count(*) FROM {staged} b JOIN {live} l ON {on} WHERE {mine} AND ROW({}) IS DISTINCT FROM ROW({})), \
                (SELECT count(*) FROM {live} l WHERE {mine} AND NOT EXISTS (SELECT 1 FROM {staged} b WHERE {on}))",
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

/// Which of `tables` (section names) the database at `url` has.
pub async fn existing_tables(url: &str, tables: &BTreeSet<String>) -> Result<BTreeSet<String>> {
    let mut conn = connect(url).await?;
    let t = read_target(&mut conn).await?;
    let _ = conn.close().await;
    Ok(tables.iter().filter(|s| t.table_of(s).is_some()).cloned().collect())
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
