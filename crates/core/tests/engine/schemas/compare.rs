//! Comparing databases without `pg_dump`: a catalog description of our own (every attribute the
//! generator varies, read from the system catalogs, keyed by names, never by OIDs) and the rows
//! of every table as exact text; and one tenant's rows in a form that does not depend on the keys
//! a copy makes anew.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::{AssertSqlSafe, Connection as _, PgConnection, Row};

use super::gen::{qi, Key, Link, Schema};

const USER_NS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'";

pub async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url).await.unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

async fn pairs(conn: &mut PgConnection, sql: &str) -> Vec<(String, String)> {
    sqlx::query(AssertSqlSafe(sql.to_string()))
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("catalog query failed: {e}\n{sql}"))
        .into_iter()
        .map(|r| (r.get::<Option<String>, _>(0).unwrap_or_default(), r.get::<Option<String>, _>(1).unwrap_or_default()))
        .collect()
}

/// Every user object of the database and its attributes, as `kind name` → description.
pub async fn catalog(url: &str) -> BTreeMap<String, String> {
    let mut conn = connect(url).await;
    let mut out = BTreeMap::new();
    let not_ext = |oid: &str| format!("NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid = {oid} AND e.deptype = 'e')");
    let queries = vec![
        format!("SELECT 'schema ' || quote_ident(n.nspname), '' FROM pg_namespace n WHERE {USER_NS}"),
        "SELECT 'extension ' || extname, extnamespace::regnamespace::text FROM pg_extension".to_string(),
        // Types.
        format!(
            "SELECT 'type ' || t.oid::regtype::text, t.typtype::text || ' ' || coalesce((SELECT string_agg(quote_literal(enumlabel), ',' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = t.oid), '') \
               || ' base ' || coalesce(format_type(t.typbasetype, t.typtypmod), '') || ' notnull ' || t.typnotnull || ' default ' || coalesce(t.typdefault, '') \
               || ' checks ' || coalesce((SELECT string_agg(conname || ':' || pg_get_constraintdef(oid), ',' ORDER BY conname) FROM pg_constraint WHERE contypid = t.oid), '') \
               || ' attrs ' || coalesce((SELECT string_agg(quote_ident(attname) || ' ' || format_type(atttypid, atttypmod), ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = t.typrelid AND attnum > 0 AND NOT attisdropped AND t.typtype = 'c'), '') \
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
             WHERE {USER_NS} AND {} AND (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))",
            not_ext("t.oid")
        ),
        // Relations.
        format!(
            "SELECT 'relation ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname), \
                    'kind ' || c.relkind::text || ' persistence ' || c.relpersistence::text || ' options ' || coalesce(array_to_string(c.reloptions, ','), '') \
                    || ' toast ' || coalesce((SELECT array_to_string(reloptions, ',') FROM pg_class tc WHERE tc.oid = c.reltoastrelid), '') \
                    || ' rls ' || c.relrowsecurity || '/' || c.relforcerowsecurity || ' replident ' || c.relreplident::text \
                    || ' partition ' || c.relispartition || ' bound ' || coalesce(pg_get_expr(c.relpartbound, c.oid), '') \
                    || ' key ' || coalesce(CASE WHEN c.relkind IN ('p', 'I') THEN pg_get_partkeydef(c.oid) END, '') \
                    || ' parent ' || coalesce((SELECT string_agg(i.inhparent::regclass::text, ',' ORDER BY i.inhseqno) FROM pg_inherits i WHERE i.inhrelid = c.oid), '') \
                    || ' view ' || coalesce(CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END, '') \
                    || ' populated ' || c.relispopulated \
                    || ' index ' || coalesce((SELECT pg_get_indexdef(x.indexrelid) || ' clustered ' || x.indisclustered || ' primary ' || x.indisprimary FROM pg_index x WHERE x.indexrelid = c.oid), '') \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'i', 'I', 'f') AND {USER_NS} AND {}",
            not_ext("c.oid")
        ),
        // Sequences' options.
        format!(
            "SELECT 'sequence ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname), \
                    format_type(s.seqtypid, NULL) || ' start ' || s.seqstart || ' increment ' || s.seqincrement || ' min ' || s.seqmin || ' max ' || s.seqmax || ' cache ' || s.seqcache || ' cycle ' || s.seqcycle \
                    || ' owned by ' || coalesce((SELECT d.refobjid::regclass::text || '.' || (SELECT attname FROM pg_attribute WHERE attrelid = d.refobjid AND attnum = d.refobjsubid) || ' ' || d.deptype::text FROM pg_depend d WHERE d.objid = c.oid AND d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')), '') \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_sequence s ON s.seqrelid = c.oid WHERE {USER_NS} AND {}",
            not_ext("c.oid")
        ),
        // Columns.
        format!(
            "SELECT 'column ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.' || quote_ident(a.attname), \
                    'position ' || (SELECT count(*) FROM pg_attribute b WHERE b.attrelid = a.attrelid AND b.attnum > 0 AND b.attnum <= a.attnum AND NOT b.attisdropped) \
                    || ' type ' || format_type(a.atttypid, a.atttypmod) || ' notnull ' || a.attnotnull || ' default ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') \
                    || ' identity ' || a.attidentity::text || ' generated ' || a.attgenerated::text || ' collation ' || coalesce((SELECT collname FROM pg_collation WHERE oid = a.attcollation AND a.attcollation <> (SELECT typcollation FROM pg_type WHERE oid = a.atttypid)), '') \
                    || ' storage ' || a.attstorage::text || ' statistics ' || coalesce(a.attstattarget::text, '') || ' local ' || a.attislocal \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {USER_NS} AND {}",
            not_ext("c.oid")
        ),
        // Constraints of tables and domains.
        format!(
            "SELECT 'constraint ' || coalesce(co.conrelid::regclass::text, co.contypid::regtype::text) || '.' || quote_ident(co.conname), \
                    co.contype::text || ' ' || pg_get_constraintdef(co.oid) || ' deferrable ' || co.condeferrable || ' deferred ' || co.condeferred || ' valid ' || co.convalidated || ' local ' || co.conislocal || ' inherited ' || co.coninhcount \
                    || ' index ' || coalesce(co.conindid::regclass::text, '') \
             FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace WHERE {USER_NS} AND {}",
            not_ext("co.oid")
        ),
        // Triggers, rules, policies.
        format!(
            "SELECT 'trigger ' || t.tgrelid::regclass::text || '.' || quote_ident(t.tgname), pg_get_triggerdef(t.oid) || ' enabled ' || t.tgenabled::text \
             FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal AND {USER_NS}"
        ),
        format!(
            "SELECT 'rule ' || r.ev_class::regclass::text || '.' || quote_ident(r.rulename), pg_get_ruledef(r.oid) || ' enabled ' || r.ev_enabled::text \
             FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace WHERE r.rulename <> '_RETURN' AND {USER_NS}"
        ),
        "SELECT 'policy ' || quote_ident(schemaname) || '.' || quote_ident(tablename) || '.' || quote_ident(policyname), permissive || ' ' || array_to_string(roles, ',') || ' ' || cmd || ' ' || coalesce(qual, '') || ' ' || coalesce(with_check, '') FROM pg_policies".to_string(),
        // Functions.
        format!(
            "SELECT 'function ' || p.oid::regprocedure::text, CASE WHEN p.prokind = 'a' THEN 'aggregate' ELSE pg_get_functiondef(p.oid) END \
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {USER_NS} AND {}",
            not_ext("p.oid")
        ),
        // Comments on anything.
        format!(
            "SELECT 'comment ' || pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description FROM pg_description d \
             WHERE d.objoid >= 16384 AND {} AND pg_describe_object(d.classoid, d.objoid, d.objsubid) IS NOT NULL",
            not_ext("d.objoid")
        ),
    ];
    for q in queries {
        for (k, v) in pairs(&mut conn, &q).await {
            out.insert(k, v);
        }
    }
    // Sequence values.
    let seqs: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'S' AND {USER_NS}"
    )))
    .fetch_all(&mut conn)
    .await
    .expect("list sequences");
    for s in seqs {
        let (v, called): (i64, bool) = sqlx::query_as(AssertSqlSafe(format!("SELECT last_value, is_called FROM {s}"))).fetch_one(&mut conn).await.expect("read a sequence");
        out.insert(format!("sequence value {s}"), format!("{v} {called}"));
    }
    let _ = conn.close().await;
    out
}

/// Every row of every table (partitions one by one, materialized views too) as exact text.
pub async fn rows(url: &str) -> BTreeMap<String, Vec<String>> {
    let mut conn = connect(url).await;
    let rels: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'm') AND c.relispopulated AND {USER_NS} AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid = c.oid AND e.deptype = 'e')"
    )))
    .fetch_all(&mut conn)
    .await
    .expect("list tables");
    let mut out = BTreeMap::new();
    for r in rels {
        let mut v: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!("SELECT ROW(_sh_r.*)::text FROM ONLY {r} _sh_r"))).fetch_all(&mut conn).await.unwrap_or_else(|e| panic!("read {r}: {e}"));
        v.sort();
        out.insert(r, v);
    }
    let _ = conn.close().await;
    out
}

/// The differences between two descriptions, at most `limit` of them, readable.
pub fn diff<V: std::fmt::Debug + PartialEq>(a: &BTreeMap<String, V>, b: &BTreeMap<String, V>, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (k, va) in a {
        match b.get(k) {
            None => out.push(format!("only before: {k} = {va:?}")),
            Some(vb) if vb != va => out.push(format!("differs: {k}\n    before: {va:?}\n    after:  {vb:?}")),
            _ => {}
        }
    }
    for (k, vb) in b {
        if !a.contains_key(k) {
            out.push(format!("only after: {k} = {vb:?}"));
        }
    }
    out.truncate(limit);
    out
}

/// A generated table's rows as the columns' exact text, with the tenant each belongs to.
#[derive(Debug, Clone)]
pub struct TableRows {
    pub rows: Vec<(Option<String>, Vec<Option<String>>)>,
}

/// Every generated table's rows, each marked with its tenant (found by the generator's links,
/// not by the engine's rules): `None` for shared rows and rows that belong to nobody.
pub async fn tenant_rows(url: &str, s: &Schema) -> Vec<TableRows> {
    let mut conn = connect(url).await;
    let mut raw: Vec<Vec<Vec<Option<String>>>> = Vec::new();
    for t in &s.tables {
        let cols: Vec<String> = t.cols.iter().map(|c| format!("x.{}::text", qi(&c.name))).collect();
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT {} FROM {} x", cols.join(", "), t.qualified())))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("read {}: {e}", t.qualified()));
        raw.push(rows.iter().map(|r| (0..t.cols.len()).map(|i| r.get::<Option<String>, _>(i)).collect()).collect());
    }
    let _ = conn.close().await;
    // Tenants of rows: in table order (parents come first), owned rows last.
    let mut tenant_of: Vec<Vec<Option<String>>> = raw.iter().map(|r| vec![None; r.len()]).collect();
    let key_index = |ti: usize, cols: &[String]| -> HashMap<Vec<Option<String>>, usize> {
        let t = &s.tables[ti];
        let pos: Vec<usize> = cols.iter().map(|c| t.cols.iter().position(|x| &x.name == c).expect("column")).collect();
        raw[ti].iter().enumerate().map(|(i, r)| (pos.iter().map(|&p| r[p].clone()).collect(), i)).collect()
    };
    // Until nothing changes: each row's set of tenants it leads to — the tenants table's key, the
    // tenant column, any of its keys to a table found before it, the row pointing at it
    // one-to-one. A row is a tenant's when that set is that tenant alone (a row several tenants
    // reach is shared).
    let mut sets: Vec<Vec<BTreeSet<String>>> = raw.iter().map(|r| vec![BTreeSet::new(); r.len()]).collect();
    for _pass in 0..=s.tables.len() {
        let before = sets.clone();
        for (ti, t) in s.tables.iter().enumerate() {
            match &t.link {
                Link::Tenants | Link::Column => {
                    let key = if t.link == Link::Tenants { t.key_cols.first().map(String::as_str).unwrap_or("id") } else { s.tenant_column.as_str() };
                    let p = t.cols.iter().position(|c| c.name == key).expect("the tenant's column");
                    for (i, r) in raw[ti].iter().enumerate() {
                        sets[ti][i] = r[p].iter().cloned().collect();
                    }
                }
                Link::Via { .. } => {
                    let ways: Vec<&super::gen::Fk> =
                        t.fks.iter().filter(|f| !f.late && f.parent != ti && !matches!(s.tables[f.parent].link, Link::Shared) && s.tables[f.parent].found < t.found).collect();
                    for f in ways {
                        let idx = key_index(f.parent, &f.parent_cols);
                        let pos: Vec<usize> = f.cols.iter().map(|c| t.cols.iter().position(|x| &x.name == c).expect("column")).collect();
                        for (i, r) in raw[ti].iter().enumerate() {
                            let k: Vec<Option<String>> = pos.iter().map(|&p| r[p].clone()).collect();
                            if let Some(&pi) = idx.get(&k) {
                                let add: Vec<String> = sets[f.parent][pi].iter().cloned().collect();
                                sets[ti][i].extend(add);
                            }
                        }
                    }
                }
                Link::Owned { by } => {
                    let fk = s.tables[*by].fks.iter().find(|f| f.parent == ti).expect("the owner's key");
                    let pos = s.tables[*by].cols.iter().position(|x| x.name == fk.cols[0]).expect("column");
                    let idx = key_index(ti, &fk.parent_cols);
                    for (oi, r) in raw[*by].iter().enumerate() {
                        if let Some(&i) = r[pos].as_ref().and_then(|v| idx.get(&vec![Some(v.clone())])) {
                            let add: Vec<String> = sets[*by][oi].iter().cloned().collect();
                            sets[ti][i].extend(add);
                        }
                    }
                }
                Link::Shared => {}
            }
        }
        if sets == before {
            break;
        }
    }
    for (ti, rows) in sets.iter().enumerate() {
        for (i, set) in rows.iter().enumerate() {
            tenant_of[ti][i] = if set.len() == 1 { set.iter().next().cloned() } else { None };
        }
    }
    raw.into_iter().zip(tenant_of).map(|(rows, tenants)| TableRows { rows: tenants.into_iter().zip(rows).collect() }).collect()
}

/// One tenant's rows, per table, sorted: exact text of every column.
pub fn of_tenant(rows: &[TableRows], tenant: &str) -> Vec<Vec<Vec<Option<String>>>> {
    rows.iter()
        .map(|t| {
            let mut v: Vec<Vec<Option<String>>> = t.rows.iter().filter(|(k, _)| k.as_deref() == Some(tenant)).map(|(_, r)| r.clone()).collect();
            v.sort();
            v
        })
        .collect()
}

/// Everyone else's rows (other tenants, shared rows, rows of nobody), per table, sorted.
pub fn not_of_tenant(rows: &[TableRows], tenant: &str, skip: &[&str]) -> Vec<Vec<Vec<Option<String>>>> {
    rows.iter()
        .map(|t| {
            let mut v: Vec<Vec<Option<String>>> = t.rows.iter().filter(|(k, _)| k.as_deref() != Some(tenant) && !skip.contains(&k.as_deref().unwrap_or(""))).map(|(_, r)| r.clone()).collect();
            v.sort();
            v
        })
        .collect()
}

/// Everyone else's rows, without the rows of nobody whose key the tenant's rows in `backup` have
/// (a damaged tenant lost the row linking them — their link emptied, or the row pointing at them
/// one-to-one deleted — and the restore takes them back), and without the rows of nobody that
/// point at a row the tenant had in `backup` (the parent they reach the tenant through was
/// deleted: the restore puts it back, and them with it).
pub fn others_but_reclaimed(s: &Schema, rows: &[TableRows], tenant: &str, backup: &[TableRows]) -> Vec<Vec<Vec<Option<String>>>> {
    let under = |ti: usize, row: &Vec<Option<String>>| -> bool {
        let t = &s.tables[ti];
        if !matches!(t.link, Link::Via { .. }) {
            return false;
        }
        t.fks.iter().filter(|f| !f.late && f.parent != ti && !matches!(s.tables[f.parent].link, Link::Shared)).any(|f| {
            let p = &s.tables[f.parent];
            let mine: Vec<Option<String>> = f.cols.iter().map(|c| t.cols.iter().position(|x| &x.name == c).and_then(|i| row[i].clone())).collect();
            let at: Vec<usize> = f.parent_cols.iter().filter_map(|c| p.cols.iter().position(|x| &x.name == c)).collect();
            mine.iter().all(Option::is_some) && backup[f.parent].rows.iter().any(|(k, pr)| k.as_deref() == Some(tenant) && at.iter().map(|&i| pr[i].clone()).collect::<Vec<_>>() == mine)
        })
    };
    rows.iter()
        .zip(backup)
        .zip(&s.tables)
        .enumerate()
        .map(|(ti, ((r, b), t))| {
            // The same row: the same key, or (without one) the same value of a unique column.
            let same: Vec<String> = if t.key_cols.is_empty() { t.global_unique.iter().filter(|u| !u.starts_with(['+', '!'])).take(1).cloned().collect() } else { t.key_cols.clone() };
            let pos: Vec<usize> = same.iter().filter_map(|c| t.cols.iter().position(|x| &x.name == c)).collect();
            let key = |row: &Vec<Option<String>>| pos.iter().map(|&p| row[p].clone()).collect::<Vec<_>>();
            let reclaimed: Vec<Vec<Option<String>>> = b.rows.iter().filter(|(k, _)| k.as_deref() == Some(tenant)).map(|(_, row)| key(row)).filter(|k| k.iter().all(Option::is_some)).collect();
            let mut v: Vec<Vec<Option<String>>> = r
                .rows
                .iter()
                .filter(|(k, row)| k.as_deref() != Some(tenant) && !(k.is_none() && ((!pos.is_empty() && reclaimed.contains(&key(row))) || under(ti, row))))
                .map(|(_, row)| row.clone())
                .collect();
            v.sort();
            v
        })
        .collect()
}

/// One tenant's rows with everything a copy makes anew taken out: generated keys, the tenant
/// id, the tenants table's name and globally unique values are blanked, and every reference to
/// a row of the tenant is replaced by that row's own canonical form (so keys remapped
/// consistently compare equal, and a reference to the wrong row does not).
pub fn canonical_tenant(s: &Schema, rows: &[TableRows], tenant: &str, blank_unique: bool) -> Vec<Vec<String>> {
    let n = s.tables.len();
    // Row positions of the tenant.
    let mine: Vec<Vec<usize>> = rows.iter().map(|t| t.rows.iter().enumerate().filter(|(_, (k, _))| k.as_deref() == Some(tenant)).map(|(i, _)| i).collect()).collect();
    // The base form of each row: its own values, references left out.
    let blanked = |ti: usize, ci: usize| -> bool {
        let t = &s.tables[ti];
        let c = &t.cols[ci].name;
        (t.renewed_key && t.key_cols.first() == Some(c))
            || c == &s.tenant_column
            || (t.link == Link::Tenants && (t.key_cols.first() == Some(c) || c == "name"))
            || (blank_unique && t.global_unique.iter().any(|u| u == c))
            || (blank_unique && t.key == Key::Text && t.key_cols.first() == Some(c))
            || t.fks.iter().any(|f| f.cols.contains(c))
    };
    let base: Vec<HashMap<usize, String>> = (0..n)
        .map(|ti| {
            mine[ti]
                .iter()
                .map(|&i| {
                    let r = &rows[ti].rows[i].1;
                    let v: Vec<String> = r.iter().enumerate().map(|(ci, v)| if blanked(ti, ci) { "·".into() } else { format!("{v:?}") }).collect();
                    (i, v.join("|"))
                })
                .collect()
        })
        .collect();
    // References: by the referenced row's base form (or the raw value for a row not of the tenant).
    let mut out = Vec::new();
    for ti in 0..n {
        let t = &s.tables[ti];
        let mut forms: Vec<String> = Vec::new();
        for &i in &mine[ti] {
            let r = &rows[ti].rows[i].1;
            let mut form = base[ti][&i].clone();
            for fk in &t.fks {
                let vals: Vec<Option<String>> = fk.cols.iter().map(|c| r[t.cols.iter().position(|x| &x.name == c).expect("column")].clone()).collect();
                let p = &s.tables[fk.parent];
                let ppos: Vec<usize> = fk.parent_cols.iter().map(|c| p.cols.iter().position(|x| &x.name == c).expect("column")).collect();
                let hit = mine[fk.parent].iter().find(|&&pi| ppos.iter().map(|&pp| rows[fk.parent].rows[pi].1[pp].clone()).collect::<Vec<_>>() == vals);
                let shown = match hit {
                    // The tenants table's row is the tenant itself (a merge points it elsewhere).
                    Some(_) if p.link == Link::Tenants => "→tenant".into(),
                    Some(pi) => format!("→[{}]", base[fk.parent][pi]),
                    None if vals.iter().all(Option::is_none) => "→NULL".into(),
                    None => {
                        // A shared row keeps its key; the tenants row is the tenant itself.
                        if p.link == Link::Tenants {
                            "→tenant".into()
                        } else {
                            format!("→{vals:?}")
                        }
                    }
                };
                form.push_str(&shown);
            }
            forms.push(form);
        }
        forms.sort();
        out.push(forms);
    }
    out
}
