//! Writing mapped rows into the target as one tenant's rows.
//!
//! Every mapped row keeps its number (`_sh_row`) and a copy of its values as read
//! (`<relation>_o`), and carries a fate: `insert`, `merged` (it is an existing target row: its
//! values become that row's, so references follow) or `aside` (it cannot be written; the reason
//! is a problem of its table). Tables are handled parents first ([`write_order`]); for each:
//! 1. references to rows of the migration are rewritten to those rows' final values, through
//!    every foreign key whatever its shape (composite keys, keys that are themselves references);
//! 2. the tenant column and the tenants table's key take the tenant written;
//! 3. columns of keys and unique constraints that the target generates (identity, sequences,
//!    UUID defaults) get new values, and a self-reference follows;
//! 4. rows equal to a target row on a key or a unique constraint — partial ones too — are
//!    resolved by the table's rule, or reported;
//! 5. rows breaking NOT NULL or pointing at a parent that neither the target nor the migration
//!    has are set aside, and rows of rows set aside with them.
//!
//! References that close a cycle are rewritten once every table is done. Then, with the
//! tables' triggers quiet, rows are inserted parents first; a cycle's references that are not
//! deferrable are inserted empty and filled after.

use std::collections::{BTreeMap, HashMap};

use sqlx::{AssertSqlSafe, Row};

use super::stage::Tx;
use super::{migration_error, Problem, Resolution, TableReport};
use crate::error::{Error, Result};
use crate::source::postgres::{q, qi, ql};
use crate::source::tenancy::{quiet_triggers, rel, stand_in, Fk, Reach, Target, Tenancy, WriteOrder};
use crate::source::CancelToken;

/// A target table's mapped rows, typed like the target, plus a row number `_sh_row`.
#[derive(Debug, Clone)]
pub(crate) struct Final {
    pub relation: String,
    pub cols: Vec<String>,
}

impl Final {
    fn orig(&self) -> String {
        format!("{}_o", self.relation)
    }
    fn has(&self, c: &str) -> bool {
        self.cols.iter().any(|x| x == c)
    }
}

pub(crate) struct Writer<'a> {
    pub target: &'a Target,
    pub tenancy: &'a Tenancy,
    /// The tenant written.
    pub tenant: String,
    /// The tenant exists in the target already (merge, import into it).
    pub existing: bool,
    pub new_name: Option<String>,
    pub conflicts: &'a BTreeMap<String, Resolution>,
    pub suffix: &'a str,
}

const SAMPLES: i64 = 5;
const INSERT: &str = "_sh_fate = 'insert'";

async fn exec(tx: &mut Tx<'_>, sql: &str, t: &str) -> Result<u64> {
    Ok(sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(&mut **tx).await.map_err(|e| migration_error(&format!("table {t}"), &e))?.rows_affected())
}

/// Sets rows of `f` matching `cond` (alias `f`) aside; returns how many.
async fn set_aside(tx: &mut Tx<'_>, t: &str, f: &Final, cond: &str) -> Result<u64> {
    exec(tx, &format!("UPDATE {} f SET _sh_fate = 'aside' WHERE f.{INSERT} AND ({cond})", f.relation), t).await
}

/// Samples of rows to insert matching `cond`: how many, and up to five shown as `(a, b)`.
async fn sample(tx: &mut Tx<'_>, t: &str, f: &Final, cols: &[String], cond: &str) -> Result<(i64, Vec<String>)> {
    sample_of(tx, t, f, cols, cond, INSERT).await
}

/// The same among the rows of a fate (`which`, on alias `f`).
async fn sample_of(tx: &mut Tx<'_>, t: &str, f: &Final, cols: &[String], cond: &str, which: &str) -> Result<(i64, Vec<String>)> {
    let show: Vec<String> = cols.iter().map(|c| format!("coalesce(f.{}::text, 'NULL')", qi(c))).collect();
    let shown = if show.is_empty() { "row_to_json(f.*)::text".to_string() } else { format!("'(' || concat_ws(', ', {}) || ')'", show.join(", ")) };
    let sql = format!("SELECT count(*) OVER (), {shown} FROM {} f WHERE f.{which} AND ({cond}) ORDER BY f._sh_row LIMIT {SAMPLES}", f.relation);
    let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut **tx).await.map_err(|e| migration_error(&format!("checking {t}"), &e))?;
    Ok((rows.first().map(|r| r.get::<i64, _>(0)).unwrap_or(0), rows.iter().map(|r| r.get::<String, _>(1)).collect()))
}

impl Writer<'_> {
    fn tenant_col(&self, t: &str) -> Option<&str> {
        match self.tenancy.reach.get(t) {
            Some(Reach::Column(c)) => Some(c),
            _ => None,
        }
    }
    fn is_tenants_table(&self, t: &str) -> bool {
        matches!(self.tenancy.reach.get(t), Some(Reach::TenantsKey(_)))
    }
    fn ty(&self, t: &str, c: &str) -> String {
        self.target.col(t, c).map(|x| x.ty.clone()).unwrap_or_else(|| "text".into())
    }
    /// The foreign keys of `t` to tables of the migration whose columns the rows carry.
    fn refs<'f>(&'f self, t: &str, finals: &'f HashMap<String, Final>) -> impl Iterator<Item = &'f Fk> + 'f {
        let t = t.to_string();
        self.target.fks.iter().filter(move |fk| {
            fk.child == t && finals.get(&fk.parent).is_some_and(|p| fk.cols.iter().all(|(_, pc)| p.has(pc))) && finals.get(&t).is_some_and(|f| fk.cols.iter().all(|(c, _)| f.has(c)))
        })
    }

    /// Writes every table of `order`.
    pub async fn write(&self, tx: &mut Tx<'_>, order: &WriteOrder, finals: &HashMap<String, Final>, reports: &mut BTreeMap<String, TableReport>, cancel: &CancelToken) -> Result<()> {
        for (t, f) in finals {
            exec(tx, &format!("ALTER TABLE {} ADD COLUMN _sh_fate text NOT NULL DEFAULT 'insert'", f.relation), t).await?;
            exec(tx, &format!("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT * FROM {}; CREATE INDEX ON {0} (_sh_row); CREATE INDEX ON {1} (_sh_row)", f.orig(), f.relation), t).await?;
        }
        let late = |fk: &Fk| order.late.iter().any(|l| l.name == fk.name && l.child == fk.child);
        for t in &order.tables {
            cancel.check()?;
            let Some(f) = finals.get(t) else { continue };
            let rep = reports.entry(t.clone()).or_insert_with(|| TableReport::new(t));
            for fk in self.refs(t, finals).filter(|fk| fk.parent != *t && !late(fk)).collect::<Vec<_>>() {
                self.follow(tx, fk, finals).await?;
            }
            self.own_keys(tx, t, f, finals).await?;
            if self.is_tenants_table(t) && self.existing {
                // The source's tenant row is the existing tenant: nothing inserted.
                rep.rows_merged += exec(tx, &format!("UPDATE {} SET _sh_fate = 'merged'", f.relation), t).await?;
                continue;
            }
            self.resolve_conflicts(tx, t, f, rep).await?;
            // A table's references to itself follow its rows' final keys (a suffix, a merge).
            for fk in self.refs(t, finals).filter(|fk| fk.parent == *t).collect::<Vec<_>>() {
                self.follow(tx, fk, finals).await?;
            }
            self.reject_not_null(tx, t, f, rep).await?;
            self.reject_missing_parents(tx, t, f, finals, rep, &|fk| !late(fk)).await?;
        }
        for fk in &order.late {
            if self.refs(&fk.child, finals).any(|r| r.name == fk.name) {
                self.follow(tx, fk, finals).await?;
            }
        }
        for fk in &order.late {
            if let (Some(f), Some(rep)) = (finals.get(&fk.child), reports.get_mut(&fk.child)) {
                self.reject_missing_parents(tx, &fk.child, f, finals, rep, &|x| x.name == fk.name && x.child == fk.child).await?;
            }
        }
        self.cascade_aside(tx, finals, reports).await?;
        // Insert, parents first, triggers quiet.
        let tables: Vec<String> = order.tables.iter().filter(|t| finals.contains_key(*t)).cloned().collect();
        let again = quiet_triggers(tx, self.target, &tables).await?;
        let held: Vec<&Fk> = order.late.iter().filter(|fk| WriteOrder::held(fk)).collect();
        for t in &tables {
            cancel.check()?;
            let f = &finals[t];
            let rep = reports.entry(t.clone()).or_insert_with(|| TableReport::new(t));
            let cols: Vec<String> = f.cols.iter().map(|c| qi(c)).collect();
            let exprs: Vec<String> = f
                .cols
                .iter()
                .map(|c| match held.iter().find(|fk| &fk.child == t && fk.cols.iter().any(|(x, _)| x == c)) {
                    Some(fk) => stand_in(fk, c),
                    None => format!("f.{}", qi(c)),
                })
                .collect();
            rep.rows_written += exec(tx, &format!("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {} f WHERE f.{INSERT} ORDER BY f._sh_row", rel(t), cols.join(", "), exprs.join(", "), f.relation), t).await?;
            rep.rows_rejected += count(tx, &format!("SELECT count(*) FROM {} WHERE _sh_fate = 'aside'", f.relation)).await?;
        }
        for fk in held {
            let (Some(f), Some(pk)) = (finals.get(&fk.child), self.target.pks.get(&fk.child)) else { continue };
            if !pk.iter().all(|c| f.has(c)) {
                continue;
            }
            let set: Vec<String> = fk.cols.iter().map(|(c, _)| format!("{0} = f.{0}", qi(c))).collect();
            let on: Vec<String> = pk.iter().map(|c| format!("l.{0} = f.{0}", qi(c))).collect();
            exec(tx, &format!("UPDATE {} l SET {} FROM {} f WHERE f.{INSERT} AND {}", self.target.own_rows(&fk.child), set.join(", "), f.relation, on.join(" AND ")), &fk.child).await?;
        }
        // Deferred checks run now: a table with pending trigger events cannot be altered.
        sqlx::query("SET CONSTRAINTS ALL IMMEDIATE").execute(&mut **tx).await.map_err(|e| migration_error("checking the foreign keys", &e))?;
        for st in again {
            exec(tx, &st, "turning the triggers on again").await?;
        }
        // What follows in the transaction (a merge removing its source) is checked at commit again.
        sqlx::query("SET CONSTRAINTS ALL DEFERRED").execute(&mut **tx).await.map_err(q("defer constraints"))?;
        crate::source::pg_apply::bump_sequences(tx, &tables, self.target).await
    }

    /// Rewrites the references of `fk` (child rows) to the final values of the rows they
    /// pointed at (matched on the values both had when read). References to rows outside the
    /// migration stay.
    async fn follow(&self, tx: &mut Tx<'_>, fk: &Fk, finals: &HashMap<String, Final>) -> Result<()> {
        let (f, p) = (&finals[&fk.child], &finals[&fk.parent]);
        let set: Vec<String> = fk.cols.iter().map(|(c, pc)| format!("{} = pn.{}", qi(c), qi(pc))).collect();
        let mut on: Vec<String> = fk.cols.iter().map(|(c, pc)| format!("po.{} = o.{}", qi(pc), qi(c))).collect();
        if let Some((c, v)) = &fk.when {
            on.push(format!("o.{}::text = {}", qi(c), ql(v)));
        }
        exec(
            tx,
            &format!(
                "UPDATE {} f SET {} FROM {} o, {} po, {} pn WHERE f._sh_row = o._sh_row AND po._sh_row = pn._sh_row AND {}",
                f.relation,
                set.join(", "),
                f.orig(),
                p.orig(),
                p.relation,
                on.join(" AND ")
            ),
            &fk.child,
        )
        .await?;
        Ok(())
    }

    /// The tenant column, the tenants table's key and name, and new values for the generated
    /// columns of keys and unique constraints.
    async fn own_keys(&self, tx: &mut Tx<'_>, t: &str, f: &Final, finals: &HashMap<String, Final>) -> Result<()> {
        if let Some(tc) = self.tenant_col(t).filter(|c| f.has(c)) {
            exec(tx, &format!("UPDATE {} SET {} = CAST({} AS {})", f.relation, qi(tc), ql(&self.tenant), self.ty(t, tc)), t).await?;
        }
        let mapped: Vec<&str> = self.refs(t, finals).flat_map(|fk| fk.cols.iter().map(|(c, _)| c.as_str())).collect();
        let mut key_cols: Vec<String> = self.target.pks.get(t).cloned().unwrap_or_default();
        for u in self.target.unique_indexes.get(t).into_iter().flatten() {
            for c in u.cols.iter().flatten() {
                if !key_cols.contains(c) {
                    key_cols.push(c.clone());
                }
            }
        }
        for key in key_cols {
            if !f.has(&key) || mapped.contains(&key.as_str()) || self.tenant_col(t) == Some(key.as_str()) {
                continue;
            }
            let Some(col) = self.target.col(t, &key).cloned() else { continue };
            let k = qi(&key);
            if self.is_tenants_table(t) && self.target.pks.get(t).is_some_and(|pk| pk.len() == 1 && pk[0] == key) {
                if !self.existing {
                    let n = count(tx, &format!("SELECT count(*) FROM {}", f.relation)).await?;
                    if n > 1 {
                        return Err(Error::validation(format!("the source holds {n} tenants in {t}: choose one tenant to copy or import")));
                    }
                }
                exec(tx, &format!("UPDATE {} SET {k} = CAST({} AS {})", f.relation, ql(&self.tenant), col.ty), t).await?;
                continue;
            }
            if col.generated_key() {
                let generator = if col.identity { format!("nextval(pg_get_serial_sequence({}, {}))", ql(&rel(t)), ql(&key)) } else { col.default.clone().unwrap_or_default() };
                exec(tx, &format!("UPDATE {} SET {k} = ({generator})::{}", f.relation, col.ty), t).await?;
                continue;
            }
            // A text key that holds UUIDs (made by the application, not the database): the copy's
            // rows get fresh ones of the same form, as a generated key would (references follow).
            if super::rules::is_text(&col.ty) && self.target.pks.get(t).is_some_and(|pk| pk.len() == 1 && pk[0] == key) {
                let uuids = count(
                    tx,
                    &format!("SELECT CASE WHEN count({k}) > 0 AND bool_and({k} ~* '^[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}$') THEN 1 ELSE 0 END::bigint FROM {}", f.relation),
                )
                .await?;
                if uuids == 1 {
                    exec(tx, &format!("UPDATE {} SET {k} = gen_random_uuid()::text WHERE {k} IS NOT NULL", f.relation), t).await?;
                    continue;
                }
            }
            // Plain files may leave a key empty: the next free number, or a new UUID.
            let generator = if col.ty == "uuid" {
                Some("gen_random_uuid()".to_string())
            } else if super::rules::is_text(&col.ty) && self.target.pks.get(t).is_some_and(|pk| pk.contains(&key)) {
                Some("gen_random_uuid()::text".to_string())
            } else if matches!(col.ty.as_str(), "integer" | "bigint" | "smallint" | "numeric") && self.target.pks.get(t).is_some_and(|pk| pk.contains(&key)) {
                Some(format!("(SELECT coalesce(max({k}), 0) FROM {}) + row_number() OVER (ORDER BY _sh_row)", rel(t)))
            } else {
                None
            };
            if let Some(g) = generator {
                if g.contains("row_number()") {
                    exec(tx, &format!("UPDATE {r} f SET {k} = n.v FROM (SELECT _sh_row, ({g})::{ty} AS v FROM {r} WHERE {k} IS NULL) n WHERE f._sh_row = n._sh_row", r = f.relation, ty = col.ty), t).await?;
                } else {
                    exec(tx, &format!("UPDATE {} SET {k} = ({g})::{} WHERE {k} IS NULL", f.relation, col.ty), t).await?;
                }
            }
        }
        if let (true, Some(name), false) = (self.is_tenants_table(t), &self.new_name, self.existing) {
            if f.has("name") {
                exec(tx, &format!("UPDATE {} SET name = {}", f.relation, ql(name)), t).await?;
            }
        }
        Ok(())
    }

    /// Rows equal to a target row on a unique constraint: resolved by the table's rule.
    async fn resolve_conflicts(&self, tx: &mut Tx<'_>, t: &str, f: &Final, rep: &mut TableReport) -> Result<()> {
        // The table's own rule (schema-qualified or bare), else the one for every table (`*`).
        let rule = self.conflicts.get(t).or_else(|| self.conflicts.get(&crate::source::tenancy::bare(t))).or_else(|| self.conflicts.get("*")).copied().unwrap_or_default();
        let pk = self.target.pks.get(t).cloned().unwrap_or_default();
        for u in self.target.unique_indexes.get(t).cloned().unwrap_or_default() {
            let Some(cols) = u.plain() else { continue };
            if !cols.iter().all(|c| f.has(c)) {
                continue;
            }
            // A unique index over the whole primary key and more: a row can clash on it only when
            // it clashes on the key, which reports that row already.
            if !pk.is_empty() && cols != pk && pk.iter().all(|c| cols.contains(c)) {
                continue;
            }
            // Rows to write that equal each other under it — transformation rules (a mask, a set)
            // can make two source rows one: the target would refuse the second, so validation
            // says so and no rule of the conflict kind can resolve it.
            let same: Vec<String> = cols.iter().map(|c| if u.nulls_not_distinct { format!("o.{0} IS NOT DISTINCT FROM f.{0}", qi(c)) } else { format!("o.{0} = f.{0}", qi(c)) }).collect();
            let mut same = same.join(" AND ");
            if let Some(p) = &u.predicate {
                same.push_str(&format!(" AND (SELECT {p} FROM (SELECT f.*) _x) AND (SELECT {p} FROM (SELECT o.*) _y)"));
            }
            let twins = format!("EXISTS (SELECT 1 FROM {} o WHERE o.{INSERT} AND o.ctid <> f.ctid AND {same})", f.relation);
            let (n, samples) = sample(tx, t, f, &cols, &twins).await?;
            if n > 0 {
                rep.problems.push(
                    Problem::new(
                        "duplicate_rows",
                        format!(
                            "{n} rows to write into {t} have the same ({}) as another of them, and a unique index allows one: the transformation rules may have made them equal (e.g. two masks on one column); change the rules, or give them new values (--regenerate {t}.{})",
                            cols.join(", "),
                            cols[0]
                        ),
                        n,
                        samples,
                    )
                    .on(&cols),
                );
                set_aside(tx, t, f, &twins).await?;
            }
            let on: Vec<String> = cols.iter().map(|c| if u.nulls_not_distinct { format!("l.{0} IS NOT DISTINCT FROM f.{0}", qi(c)) } else { format!("l.{0} = f.{0}", qi(c)) }).collect();
            let mut on = on.join(" AND ");
            if let Some(p) = &u.predicate {
                on.push_str(&format!(" AND (SELECT {p} FROM (SELECT f.*) _x) AND (SELECT {p} FROM (SELECT l.*) _y)"));
            }
            let clash = format!("EXISTS (SELECT 1 FROM {} l WHERE {on})", self.target.own_rows(t));
            // Counted among every row not merged: a row set aside for another reason would
            // still conflict here, and validation reports each conflict.
            let (n, samples) = sample_of(tx, t, f, &cols, &clash, "_sh_fate <> 'merged'").await?;
            if n == 0 {
                continue;
            }
            let what = format!("{t} ({}{})", cols.join(", "), if u.predicate.is_some() { format!(", where {}", u.predicate.clone().unwrap_or_default()) } else { String::new() });
            let mut rule = rule;
            // The tenants table's own name (a text column alone under the constraint): the
            // copy needs one of its own.
            let named = cols.len() == 1 && super::rules::is_text(&self.ty(t, &cols[0])) && !self.target.fks.iter().any(|fk| fk.child == t && fk.cols.iter().any(|(c, _)| *c == cols[0]));
            if self.is_tenants_table(t) && !self.existing && rule == Resolution::Stop && named {
                rep.problems.push(Problem::new(
                    "unique_conflict",
                    format!(
                        "the tenant's {} is taken in {t} by another tenant: give the new tenant its own (--new-tenant-name, e.g. \"{} (copy)\")",
                        cols.join(", "),
                        samples.first().map(|s| s.trim_matches(['(', ')'])).unwrap_or("name")
                    ),
                    n,
                    samples,
                ));
                set_aside(tx, t, f, &clash).await?;
                continue;
            }
            if rule == Resolution::KeepBoth {
                let tc = self.tenant_col(t);
                let fk_cols: Vec<&String> = self.target.fks.iter().filter(|fk| fk.child == t).flat_map(|fk| fk.cols.iter().map(|(c, _)| c)).collect();
                match cols.iter().find(|c| Some(c.as_str()) != tc && !fk_cols.contains(c) && super::rules::is_text(&self.ty(t, c))) {
                    Some(c) => {
                        exec(tx, &format!("UPDATE {} f SET {c} = f.{c} || {} WHERE f.{INSERT} AND {clash}", f.relation, ql(self.suffix), c = qi(c)), t).await?;
                        rep.rows_renamed += u64::try_from(n).unwrap_or(0);
                        let (left, samples) = sample(tx, t, f, &cols, &clash).await?;
                        if left == 0 {
                            continue;
                        }
                        rep.problems.push(Problem::new("unique_conflict", format!("{left} rows of {what} still equal a target row after adding the suffix {:?}", self.suffix), left, samples));
                    }
                    None => rep.problems.push(
                        Problem::new(
                            "unique_conflict",
                            format!("{n} rows equal a target row on {what}, which has no text column to add a suffix to: choose keep target, take source or stop, or give the copy new values (--regenerate)"),
                            n,
                            samples,
                        )
                        .on(&cols),
                    ),
                }
                rule = Resolution::Stop;
            } else if rule == Resolution::Stop {
                // A value that must differ in the copy (a token, a key, a slug): a fresh one.
                let fresh = cols
                    .iter()
                    .find(|c| {
                        let ty = self.ty(t, c);
                        self.tenant_col(t) != Some(c.as_str())
                            && !self.target.fks.iter().any(|fk| fk.child == t && fk.cols.iter().any(|(x, _)| x == *c))
                            && (super::rules::is_text(&ty) || matches!(ty.as_str(), "uuid" | "integer" | "bigint" | "numeric"))
                    })
                    .map(|c| format!(", or give the copy new values (--regenerate {t}.{c})"))
                    .unwrap_or_default();
                rep.problems.push(Problem::new("unique_conflict", format!("{n} rows equal a target row on {what}: choose keep target, take source or keep both for {t}{fresh}"), n, samples).on(&cols));
            }
            match rule {
                Resolution::Stop | Resolution::KeepBoth => {
                    set_aside(tx, t, f, &clash).await?;
                }
                Resolution::KeepTarget | Resolution::TakeSource => {
                    // The source rows are the target's rows from now on: references follow them.
                    let all: Vec<String> = f.cols.iter().map(|c| qi(c)).collect();
                    if rule == Resolution::TakeSource {
                        let keep: Vec<&String> = f.cols.iter().filter(|c| !pk.contains(c) && !cols.contains(c) && self.tenant_col(t) != Some(c.as_str()) && !self.target.col(t, c).is_some_and(|x| x.always)).collect();
                        if !keep.is_empty() {
                            let set: Vec<String> = keep.iter().map(|c| format!("{0} = f.{0}", qi(c))).collect();
                            rep.rows_updated += exec(tx, &format!("UPDATE {} l SET {} FROM {} f WHERE f.{INSERT} AND {on}", self.target.own_rows(t), set.join(", "), f.relation), t).await?;
                        }
                    } else {
                        rep.rows_merged += u64::try_from(n).unwrap_or(0);
                    }
                    let set: Vec<String> = all.iter().map(|c| format!("{c} = l.{c}")).collect();
                    exec(tx, &format!("UPDATE {} f SET {}, _sh_fate = 'merged' FROM {} l WHERE f.{INSERT} AND {on}", f.relation, set.join(", "), self.target.own_rows(t)), t).await?;
                }
            }
        }
        Ok(())
    }

    async fn reject_not_null(&self, tx: &mut Tx<'_>, t: &str, f: &Final, rep: &mut TableReport) -> Result<()> {
        for c in self.target.cols.get(t).into_iter().flatten().filter(|c| c.not_null && !c.generated && f.has(&c.name)) {
            // The value itself missing (a composite whose fields are all NULL `IS NULL` but is there).
            let cond = format!("num_nulls(f.{}) = 1", qi(&c.name));
            let (n, samples) = sample(tx, t, f, &[], &cond).await?;
            if n > 0 {
                rep.problems.push(Problem::new("not_null", format!("{n} rows have no value for {t}.{}, which the target requires", c.name), n, samples));
                set_aside(tx, t, f, &cond).await?;
            }
        }
        Ok(())
    }

    async fn reject_missing_parents(&self, tx: &mut Tx<'_>, t: &str, f: &Final, finals: &HashMap<String, Final>, rep: &mut TableReport, which: &(dyn Fn(&Fk) -> bool + Sync)) -> Result<()> {
        // A declared reference is not enforced: a value pointing at nothing may stay so.
        for fk in self.target.fks.iter().filter(|fk| fk.child == t && !fk.declared && which(fk)) {
            if !fk.cols.iter().all(|(c, _)| f.has(c)) {
                continue;
            }
            let set: Vec<String> = fk.cols.iter().map(|(c, _)| format!("f.{} IS NOT NULL", qi(c))).collect();
            let on: Vec<String> = fk.cols.iter().map(|(c, p)| format!("p.{} = f.{}", qi(p), qi(c))).collect();
            let on = on.join(" AND ");
            let mut missing = format!("{} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {on})", set.join(" AND "), self.target.own_rows(&fk.parent));
            if let Some(pf) = finals.get(&fk.parent).filter(|p| fk.cols.iter().all(|(_, pc)| p.has(pc))) {
                missing.push_str(&format!(" AND NOT EXISTS (SELECT 1 FROM {} p WHERE p._sh_fate <> 'aside' AND {on})", pf.relation));
                // Rows of a parent row set aside: left out with it — through a table's references
                // to itself too, a chain of them to its end (each pass sees the rows the last set
                // aside).
                let with_aside = format!("{} AND EXISTS (SELECT 1 FROM {} p WHERE p._sh_fate = 'aside' AND {on})", set.join(" AND "), pf.relation);
                let mut n = 0;
                loop {
                    let more = set_aside(tx, t, f, &with_aside).await?;
                    n += more;
                    if more == 0 || fk.parent != t {
                        break;
                    }
                }
                if n > 0 {
                    rep.notes.push(format!("{n} rows left out with the {} rows they belong to", fk.parent));
                }
            }
            let cols: Vec<String> = fk.cols.iter().map(|(c, _)| c.clone()).collect();
            let (n, samples) = sample(tx, t, f, &cols, &missing).await?;
            if n > 0 {
                rep.problems.push(Problem::new(
                    "missing_parent",
                    format!("{n} rows of {t} refer through {} to {} rows that neither the target nor the migration has", cols.join(", "), fk.parent),
                    n,
                    samples,
                ));
                set_aside(tx, t, f, &missing).await?;
            }
        }
        Ok(())
    }

    /// Rows whose parent row was set aside (late, through a cycle's reference) go aside too.
    async fn cascade_aside(&self, tx: &mut Tx<'_>, finals: &HashMap<String, Final>, reports: &mut BTreeMap<String, TableReport>) -> Result<()> {
        for _ in 0..finals.len() + 1 {
            let mut moved = 0;
            for (t, f) in finals {
                for fk in self.refs(t, finals).collect::<Vec<_>>() {
                    let pf = &finals[&fk.parent];
                    let on: Vec<String> = fk.cols.iter().map(|(c, p)| format!("p.{} = f.{}", qi(p), qi(c))).collect();
                    let n = set_aside(tx, t, f, &format!("EXISTS (SELECT 1 FROM {} p WHERE p._sh_fate = 'aside' AND {})", pf.relation, on.join(" AND "))).await?;
                    if n > 0 {
                        reports.entry(t.clone()).or_insert_with(|| TableReport::new(t)).notes.push(format!("{n} rows left out with the {} rows they belong to", fk.parent));
                        moved += n;
                    }
                }
            }
            if moved == 0 {
                break;
            }
        }
        Ok(())
    }
}

async fn count(tx: &mut Tx<'_>, sql: &str) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql.to_string())).fetch_one(&mut **tx).await.map_err(q("count rows"))?;
    Ok(u64::try_from(n).unwrap_or(0))
}
