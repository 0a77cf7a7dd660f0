//! Writing mapped rows into the target as one tenant's: new keys where the target generates them
//! (or a new UUID / the next free number where it does not), every foreign key to a moved row
//! rewritten, the tenant column set, unique conflicts with the target's rows found and resolved
//! by the table's rule, rows that cannot be written (NULL in a NOT NULL column, a missing parent)
//! set aside with the reason — then inserted, parents first, in the working transaction.

use std::collections::{BTreeMap, HashMap};

use sqlx::{AssertSqlSafe, Row};

use super::stage::Tx;
use super::{Problem, Resolution, TableReport};
use crate::error::{Error, Result};
use crate::source::pg_apply::{rel, Reach, Target, Tenancy};
use crate::source::postgres::{q, qi, ql, restore_error};
use crate::source::CancelToken;

/// A target table's mapped rows, typed like the target, plus a row number `_sh_row`.
#[derive(Debug, Clone)]
pub(crate) struct Final {
    pub relation: String,
    pub cols: Vec<String>,
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

/// Where a table's set-aside rows are kept (children of them are left out too, as notes).
fn aside(f: &Final) -> String {
    format!("{}_x", f.relation)
}

/// Moves the rows of `f` matching `cond` (alias `f`) aside; returns how many.
async fn set_aside(tx: &mut Tx<'_>, t: &str, f: &Final, cond: &str) -> Result<u64> {
    exec(tx, &format!("INSERT INTO {} SELECT * FROM {} f WHERE {cond}", aside(f), f.relation), t).await?;
    exec(tx, &format!("DELETE FROM {} f WHERE {cond}", f.relation), t).await
}

fn key_of(target: &Target, t: &str) -> Option<String> {
    target.pks.get(t).filter(|pk| pk.len() == 1).map(|pk| pk[0].clone())
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
        self.target.cols.get(t).and_then(|cs| cs.iter().find(|x| x.name == c)).map(|x| x.ty.clone()).unwrap_or_else(|| "text".into())
    }

    /// Writes every table of `order` (parents first); returns the maps' relations per table.
    pub async fn write(&self, tx: &mut Tx<'_>, order: &[String], finals: &HashMap<String, Final>, reports: &mut BTreeMap<String, TableReport>, cancel: &CancelToken) -> Result<()> {
        let mut maps: HashMap<String, String> = HashMap::new();
        for (t, f) in finals {
            exec(tx, &format!("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT * FROM {} WITH NO DATA", aside(f), f.relation), t).await?;
        }
        for (i, t) in order.iter().enumerate() {
            cancel.check()?;
            let Some(f) = finals.get(t) else { continue };
            let rep = reports.entry(t.clone()).or_insert_with(|| TableReport::new(t));
            self.keys(tx, i, t, f, &mut maps).await?;
            self.rewrite(tx, t, f, &maps).await?;
            if self.is_tenants_table(t) && self.existing {
                // The source's tenant row becomes the existing tenant: nothing inserted.
                let n = exec(tx, &format!("DELETE FROM {}", f.relation), t).await?;
                rep.rows_merged += n;
                continue;
            }
            self.resolve_conflicts(tx, t, f, &maps, rep).await?;
            self.reject_not_null(tx, t, f, rep).await?;
            self.reject_missing_parents(tx, t, f, finals, rep).await?;
            let cols: Vec<String> = f.cols.iter().map(|c| qi(c)).collect();
            let n = exec(
                tx,
                &format!("INSERT INTO {} ({list}) OVERRIDING SYSTEM VALUE SELECT {list} FROM {} ORDER BY _sh_row", rel(t), f.relation, list = cols.join(", ")),
                t,
            )
            .await?;
            rep.rows_written += n;
        }
        crate::source::pg_apply::bump_sequences(tx, order, self.target).await
    }

    /// Old key → new key for a table with a one-column key the copy must renew.
    async fn keys(&self, tx: &mut Tx<'_>, i: usize, t: &str, f: &Final, maps: &mut HashMap<String, String>) -> Result<()> {
        let Some(key) = key_of(self.target, t) else { return Ok(()) };
        if !f.cols.contains(&key) {
            return Ok(());
        }
        let col = self.target.cols[t].iter().find(|c| c.name == key).cloned();
        let Some(col) = col else { return Ok(()) };
        let is_fk = self.target.fks.iter().any(|fk| fk.child == t && fk.cols.iter().any(|(c, _)| *c == key));
        if self.tenant_col(t) == Some(key.as_str()) || is_fk {
            return Ok(());
        }
        let k = qi(&key);
        let generator = if self.is_tenants_table(t) {
            if !self.existing {
                let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {}", f.relation))).fetch_one(&mut **tx).await.map_err(q("count tenants"))?;
                if n > 1 {
                    return Err(Error::validation(format!("the source holds {n} tenants in {t}: choose one tenant to copy or import")));
                }
            }
            format!("CAST({} AS {})", ql(&self.tenant), col.ty)
        } else if col.identity {
            format!("nextval(pg_get_serial_sequence({}, {}))", ql(&rel(t)), ql(&key))
        } else if let Some(d) = &col.default {
            d.clone()
        } else if col.ty == "uuid" {
            "gen_random_uuid()".into()
        } else if super::rules::is_text(&col.ty) {
            "gen_random_uuid()::text".into()
        } else if matches!(col.ty.as_str(), "integer" | "bigint" | "smallint" | "numeric") {
            format!("(SELECT coalesce(max({k}), 0) FROM {}) + row_number() OVER (ORDER BY _sh_row)", rel(t))
        } else {
            return Ok(());
        };
        let per_row = !generator.contains("row_number()");
        let map = format!("pg_temp._sh_m{i}");
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE TEMP TABLE {map} ON COMMIT DROP AS SELECT {k} AS old, ({generator})::{ty} AS new FROM {rel} WHERE {k} IS NOT NULL; \
             CREATE INDEX ON {map} (old); \
             UPDATE {rel} f SET {k} = m.new FROM {map} m WHERE f.{k} = m.old;",
            ty = col.ty,
            rel = f.relation
        )))
        .execute(&mut **tx)
        .await
        .map_err(|e| restore_error(&format!("new keys for {t}"), &e))?;
        if per_row {
            // Rows the source gave no key (plain files): a new one each.
            exec(tx, &format!("UPDATE {} SET {k} = ({generator})::{} WHERE {k} IS NULL", f.relation, col.ty), t).await?;
        }
        maps.insert(t.to_string(), map);
        Ok(())
    }

    /// The tenant column, foreign keys to moved rows, the new tenant's name.
    async fn rewrite(&self, tx: &mut Tx<'_>, t: &str, f: &Final, maps: &HashMap<String, String>) -> Result<()> {
        if let Some(tc) = self.tenant_col(t).filter(|c| f.cols.iter().any(|x| x == c)) {
            exec(tx, &format!("UPDATE {} SET {} = CAST({} AS {})", f.relation, qi(tc), ql(&self.tenant), self.ty(t, tc)), t).await?;
        }
        for fk in self.target.fks.iter().filter(|fk| fk.child == t) {
            let Some(map) = maps.get(&fk.parent) else { continue };
            let Some(pkey) = key_of(self.target, &fk.parent) else { continue };
            for (cc, pc) in &fk.cols {
                if *pc != pkey || !f.cols.contains(cc) || self.tenant_col(t) == Some(cc.as_str()) {
                    continue;
                }
                exec(tx, &format!("UPDATE {} f SET {c} = m.new FROM {map} m WHERE f.{c} = m.old", f.relation, c = qi(cc)), t).await?;
            }
        }
        if let (true, Some(name), false) = (self.is_tenants_table(t), &self.new_name, self.existing) {
            if f.cols.iter().any(|c| c == "name") {
                exec(tx, &format!("UPDATE {} SET name = {}", f.relation, ql(name)), t).await?;
            }
        }
        Ok(())
    }

    async fn conflicting(&self, tx: &mut Tx<'_>, t: &str, f: &Final, cols: &[String]) -> Result<(i64, Vec<String>)> {
        let on: Vec<String> = cols.iter().map(|c| format!("l.{0} = f.{0}", qi(c))).collect();
        let show: Vec<String> = cols.iter().map(|c| format!("coalesce(f.{}::text, 'NULL')", qi(c))).collect();
        let sql = format!(
            "SELECT count(*) OVER (), '(' || concat_ws(', ', {}) || ')' FROM {} f WHERE EXISTS (SELECT 1 FROM {} l WHERE {}) ORDER BY f._sh_row LIMIT {SAMPLES}",
            show.join(", "),
            f.relation,
            rel(t),
            on.join(" AND ")
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut **tx).await.map_err(|e| restore_error(&format!("checking {t} for conflicts"), &e))?;
        let n = rows.first().map(|r| r.get::<i64, _>(0)).unwrap_or(0);
        Ok((n, rows.iter().map(|r| r.get::<String, _>(1)).collect()))
    }

    /// Rows equal to a target row on a unique constraint: resolved by the table's rule.
    async fn resolve_conflicts(&self, tx: &mut Tx<'_>, t: &str, f: &Final, maps: &HashMap<String, String>, rep: &mut TableReport) -> Result<()> {
        let key = key_of(self.target, t);
        let rule = self.conflicts.get(t).or_else(|| self.conflicts.get(super::stage::bare(t))).copied().unwrap_or_default();
        for cols in self.target.uniques.get(t).cloned().unwrap_or_default() {
            if !cols.iter().all(|c| f.cols.contains(c)) || (maps.contains_key(t) && key.as_ref().is_some_and(|k| cols.contains(k))) {
                continue;
            }
            let (n, samples) = self.conflicting(tx, t, f, &cols).await?;
            if n == 0 {
                continue;
            }
            let on: Vec<String> = cols.iter().map(|c| format!("l.{0} = f.{0}", qi(c))).collect();
            let on = on.join(" AND ");
            let what = format!("{t} ({})", cols.join(", "));
            let mut rule = rule;
            if rule == Resolution::KeepBoth {
                let tc = self.tenant_col(t);
                let fk_cols: Vec<&String> = self.target.fks.iter().filter(|fk| fk.child == t).flat_map(|fk| fk.cols.iter().map(|(c, _)| c)).collect();
                match cols.iter().find(|c| Some(c.as_str()) != tc && !fk_cols.contains(c) && super::rules::is_text(&self.ty(t, c))) {
                    Some(c) => {
                        exec(
                            tx,
                            &format!("UPDATE {} f SET {c} = f.{c} || {} WHERE EXISTS (SELECT 1 FROM {} l WHERE {on})", f.relation, ql(self.suffix), rel(t), c = qi(c)),
                            t,
                        )
                        .await?;
                        rep.rows_renamed += u64::try_from(n).unwrap_or(0);
                        let (left, samples) = self.conflicting(tx, t, f, &cols).await?;
                        if left == 0 {
                            continue;
                        }
                        rep.problems.push(Problem::new("unique_conflict", format!("{left} rows of {what} still equal a target row after adding the suffix {:?}", self.suffix), left, samples));
                    }
                    None => rep.problems.push(Problem::new(
                        "unique_conflict",
                        format!("{n} rows equal a target row on {what}, which has no text column to add a suffix to: choose keep target, take source or stop"),
                        n,
                        samples,
                    )),
                }
                rule = Resolution::Stop;
            } else if rule == Resolution::Stop {
                rep.problems.push(Problem::new("unique_conflict", format!("{n} rows equal a target row on {what}: choose keep target, take source or keep both for {t}"), n, samples));
            }
            // The source rows give way to the target's: references to them go to the target row.
            if let (Some(k), Some(map)) = (&key, maps.get(t)) {
                exec(tx, &format!("UPDATE {map} m SET new = l.{k} FROM {} f JOIN {} l ON {on} WHERE m.new = f.{k}", f.relation, rel(t), k = qi(k)), t).await?;
            }
            if rule == Resolution::TakeSource {
                let keep: Vec<&String> = f.cols.iter().filter(|c| key.as_ref() != Some(*c) && !cols.contains(c) && self.tenant_col(t) != Some(c.as_str())).collect();
                if !keep.is_empty() {
                    let set: Vec<String> = keep.iter().map(|c| format!("{0} = f.{0}", qi(c))).collect();
                    let m = exec(tx, &format!("UPDATE {} l SET {} FROM {} f WHERE {on}", rel(t), set.join(", "), f.relation), t).await?;
                    rep.rows_updated += m;
                }
            } else if rule == Resolution::KeepTarget {
                rep.rows_merged += u64::try_from(n).unwrap_or(0);
            }
            let cond = format!("EXISTS (SELECT 1 FROM {} l WHERE {on})", rel(t));
            if rule == Resolution::Stop {
                rep.rows_rejected += set_aside(tx, t, f, &cond).await?;
            } else {
                exec(tx, &format!("DELETE FROM {} f WHERE {cond}", f.relation), t).await?;
            }
        }
        Ok(())
    }

    async fn reject_not_null(&self, tx: &mut Tx<'_>, t: &str, f: &Final, rep: &mut TableReport) -> Result<()> {
        for c in self.target.cols.get(t).into_iter().flatten().filter(|c| c.not_null && !c.generated && f.cols.contains(&c.name)) {
            let sql = format!("SELECT count(*) OVER (), row_to_json(f)::text FROM {} f WHERE {} IS NULL ORDER BY _sh_row LIMIT {SAMPLES}", f.relation, qi(&c.name));
            let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut **tx).await.map_err(|e| restore_error(&format!("checking {t}"), &e))?;
            if let Some(r) = rows.first() {
                let n: i64 = r.get(0);
                rep.problems.push(Problem::new("not_null", format!("{n} rows have no value for {t}.{}, which the target requires", c.name), n, rows.iter().map(|r| r.get(1)).collect()));
                rep.rows_rejected += set_aside(tx, t, f, &format!("f.{} IS NULL", qi(&c.name))).await?;
            }
        }
        Ok(())
    }

    async fn reject_missing_parents(&self, tx: &mut Tx<'_>, t: &str, f: &Final, finals: &HashMap<String, Final>, rep: &mut TableReport) -> Result<()> {
        for fk in self.target.fks.iter().filter(|fk| fk.child == t) {
            if !fk.cols.iter().all(|(c, _)| f.cols.contains(c)) {
                continue;
            }
            let set: Vec<String> = fk.cols.iter().map(|(c, _)| format!("f.{} IS NOT NULL", qi(c))).collect();
            let on: Vec<String> = fk.cols.iter().map(|(c, p)| format!("p.{} = f.{}", qi(p), qi(c))).collect();
            // Rows of a parent row this migration set aside: left out with it.
            if let Some(pf) = finals.get(&fk.parent) {
                let cond = format!("EXISTS (SELECT 1 FROM {} p WHERE {})", aside(pf), on.join(" AND "));
                let n = set_aside(tx, t, f, &cond).await?;
                if n > 0 {
                    rep.rows_rejected += n;
                    rep.notes.push(format!("{n} rows left out with the {} rows they belong to", fk.parent));
                }
            }
            let mut missing = format!("{} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {})", set.join(" AND "), rel(&fk.parent), on.join(" AND "));
            if fk.parent == t {
                missing.push_str(&format!(" AND NOT EXISTS (SELECT 1 FROM {} p WHERE {})", f.relation, on.join(" AND ")));
            }
            let cols: Vec<&str> = fk.cols.iter().map(|(c, _)| c.as_str()).collect();
            let show: Vec<String> = fk.cols.iter().map(|(c, _)| format!("f.{}::text", qi(c))).collect();
            let sql = format!("SELECT count(*) OVER (), concat_ws(', ', {}) FROM {} f WHERE {missing} ORDER BY _sh_row LIMIT {SAMPLES}", show.join(", "), f.relation);
            let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut **tx).await.map_err(|e| restore_error(&format!("checking {t}'s references"), &e))?;
            if let Some(r) = rows.first() {
                let n: i64 = r.get(0);
                rep.problems.push(Problem::new(
                    "missing_parent",
                    format!("{n} rows of {t} refer through {} to {} rows that neither the target nor the migration has", cols.join(", "), fk.parent),
                    n,
                    rows.iter().map(|r| r.get(1)).collect(),
                ));
                rep.rows_rejected += set_aside(tx, t, f, &missing).await?;
            }
        }
        Ok(())
    }
}

async fn exec(tx: &mut Tx<'_>, sql: &str, t: &str) -> Result<u64> {
    Ok(sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(&mut **tx).await.map_err(|e| restore_error(&format!("table {t}"), &e))?.rows_affected())
}
