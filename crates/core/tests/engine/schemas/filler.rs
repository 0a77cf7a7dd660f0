//! Fills a schema nobody here wrote with rows, reading only its catalogs: every table gets rows
//! of its column types that keep its NOT NULL, unique and foreign-key constraints, and (as real
//! data does) each row that belongs to a tenant points only at rows of the same tenant or at
//! shared rows. Rows a CHECK constraint or a trigger refuses are left out.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::{AssertSqlSafe, Connection as _, PgConnection, Row};

use super::gen::{ql, Rng};

pub fn qi(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    ty: String,
    type_kind: String,
    base: String,
    not_null: bool,
    has_default: bool,
    identity: bool,
    generated: bool,
    labels: Vec<String>,
    max_len: Option<i32>,
}

#[derive(Debug, Clone)]
struct ForeignKey {
    cols: Vec<String>,
    parent: String,
    parent_cols: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct Table {
    name: String,
    cols: Vec<Column>,
    fks: Vec<ForeignKey>,
    uniques: Vec<Vec<String>>,
}

impl Table {
    /// A one-column primary key of text (a copy gives it a suffix when it must differ).
    fn key_cols_text(&self, pks: &HashMap<String, Vec<String>>) -> bool {
        match pks.get(&self.name).map(Vec::as_slice) {
            Some([k]) => self.cols.iter().any(|c| &c.name == k && (c.base.starts_with("character") || c.base == "text")),
            _ => false,
        }
    }
}

/// A row made: its tenant, and its columns' values as text.
type Made = (Option<usize>, BTreeMap<String, String>);

/// What the filler made: each tenant's id, in the tenants table's key.
#[derive(Debug, Clone)]
pub struct Filled {
    pub tenants: Vec<String>,
    pub rows: u64,
}

async fn tables(conn: &mut PgConnection) -> BTreeMap<String, Table> {
    let mut out: BTreeMap<String, Table> = BTreeMap::new();
    let cols = sqlx::query(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname::text, format_type(a.atttypid, a.atttypmod), t.typtype::text,
                format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END, NULL), a.attnotnull OR (t.typtype = 'd' AND t.typnotnull),
                a.atthasdef, a.attidentity <> '', a.attgenerated <> '',
                coalesce((SELECT array_agg(enumlabel::text ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = a.atttypid), '{}'),
                CASE WHEN a.atttypmod > 4 AND format_type(a.atttypid, NULL) IN ('character varying', 'character') THEN a.atttypmod - 4 END
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         JOIN pg_type t ON t.oid = a.atttypid
         WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
         ORDER BY c.oid, a.attnum",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("read columns");
    for r in cols {
        let t = out.entry(r.get(0)).or_insert_with(|| Table { name: r.get(0), ..Default::default() });
        t.cols.push(Column {
            name: r.get(1),
            ty: r.get(2),
            type_kind: r.get(3),
            base: r.get(4),
            not_null: r.get(5),
            has_default: r.get(6),
            identity: r.get(7),
            generated: r.get(8),
            labels: r.get(9),
            max_len: r.get(10),
        });
    }
    let fks = sqlx::query(
        "SELECT quote_ident(cn.nspname) || '.' || quote_ident(c.relname), quote_ident(pn.nspname) || '.' || quote_ident(p.relname),
                array_agg(ca.attname::text ORDER BY k.ord), array_agg(pa.attname::text ORDER BY k.ord)
         FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
         JOIN pg_class p ON p.oid = co.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
         CROSS JOIN LATERAL unnest(co.conkey, co.confkey) WITH ORDINALITY k(ck, pk, ord)
         JOIN pg_attribute ca ON ca.attrelid = c.oid AND ca.attnum = k.ck JOIN pg_attribute pa ON pa.attrelid = p.oid AND pa.attnum = k.pk
         WHERE co.contype = 'f' AND co.conparentid = 0 GROUP BY co.oid, 1, 2",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("read foreign keys");
    for r in fks {
        if let Some(t) = out.get_mut(&r.get::<String, _>(0)) {
            t.fks.push(ForeignKey { parent: r.get(1), cols: r.get(2), parent_cols: r.get(3) });
        }
    }
    let uniques = sqlx::query(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), array_agg(a.attname::text ORDER BY k.ord)
         FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord) JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
         WHERE i.indisunique GROUP BY i.indexrelid, 1",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("read unique indexes");
    for r in uniques {
        if let Some(t) = out.get_mut(&r.get::<String, _>(0)) {
            t.uniques.push(r.get(1));
        }
    }
    out
}

/// A value of column `c` for row `n`, unique among the table's rows when `unique`.
fn value(c: &Column, n: u64, unique: bool, rng: &mut Rng) -> String {
    let ty = if c.type_kind == "d" { c.base.as_str() } else { c.ty.as_str() };
    let cap = |s: String| match c.max_len {
        Some(m) if s.chars().count() > m as usize => s.chars().rev().take(m as usize).collect::<String>().chars().rev().collect(),
        _ => s,
    };
    if !c.labels.is_empty() {
        return format!("{}::{}", ql(&c.labels[(n as usize + rng.below(c.labels.len())) % c.labels.len()]), c.ty);
    }
    let v = match ty {
        "smallint" => ((n % 30000) as i64).to_string(),
        "integer" | "bigint" => (if unique { n as i64 + 1 } else { rng.range(0, 1000) }).to_string(),
        "numeric" | "real" | "double precision" => format!("{}.{}", n % 1000, rng.below(100)),
        "boolean" => n.is_multiple_of(2).to_string(),
        "date" => format!("'2025-01-01'::date + {}", n % 3000),
        "uuid" => format!("{}::uuid", ql(&rng.uuid())),
        "json" | "jsonb" => ql(&format!("{{\"n\": {n}, \"k\": \"v{}\"}}", rng.below(10))),
        "bytea" => ql(&format!("\\x{:04x}", n % 65536)),
        "inet" => ql(&format!("10.{}.{}.{}", (n >> 16) % 256, (n >> 8) % 256, n % 256)),
        "interval" => ql(&format!("{} minutes", n % 10000)),
        "time without time zone" => ql(&format!("{:02}:{:02}:00", n % 24, n % 60)),
        t if t.starts_with("timestamp") => format!("'2025-01-01 00:00:00+00'::timestamptz + interval '{} seconds'", n * 37),
        t if t.ends_with("[]") => "'{}'".into(),
        t if t.starts_with("character") || t == "text" || t == "citext" || t == "name" => cap(format!("{}{n}{}", c.name.chars().take(8).collect::<String>(), if unique { String::new() } else { format!("-{}", rng.hex(4)) })),
        _ => return "NULL".into(),
    };
    match ty {
        t if t.starts_with("character") || t == "text" || t == "citext" || t == "name" => ql(&v),
        "smallint" | "integer" | "bigint" | "numeric" | "real" | "double precision" | "boolean" => {
            if c.type_kind == "d" {
                format!("({v})::{}", c.ty)
            } else {
                v
            }
        }
        _ => {
            if c.type_kind == "d" {
                format!("({v})::{}", c.ty)
            } else {
                v
            }
        }
    }
}

/// Fills the database at `url`: `tenants` tenants in `tenants_table` (keyed by one column), then
/// up to `per_table` rows in every other table, parents first.
pub async fn fill(url: &str, tenants_table: &str, tenant_column: &str, tenants: usize, per_table: u64, seed: u64) -> Filled {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let ts = tables(&mut conn).await;
    sqlx::query("BEGIN").execute(&mut conn).await.expect("begin");
    let mut rng = Rng::new(seed);
    let tt = ts.keys().find(|k| k.rsplit('.').next().map(|b| b.trim_matches('"')) == Some(tenants_table)).cloned().expect("the tenants table");
    // Which tables belong to a tenant: the tenant column, or a foreign key to such a table.
    let mut owned: BTreeSet<String> = ts.values().filter(|t| t.cols.iter().any(|c| c.name == tenant_column) || t.name == tt).map(|t| t.name.clone()).collect();
    loop {
        let before = owned.len();
        for t in ts.values() {
            if t.fks.iter().any(|f| owned.contains(&f.parent) && f.parent != t.name) {
                owned.insert(t.name.clone());
            }
        }
        if owned.len() == before {
            break;
        }
    }
    // Parents first (a cycle: in name order, the key left empty when it may be).
    let mut order: Vec<String> = Vec::new();
    while order.len() < ts.len() {
        let ready: Vec<String> = ts.values().filter(|t| !order.contains(&t.name) && t.fks.iter().all(|f| f.parent == t.name || order.contains(&f.parent) || !ts.contains_key(&f.parent))).map(|t| t.name.clone()).collect();
        let next = if ready.is_empty() { ts.keys().find(|k| !order.contains(k)).cloned().into_iter().collect() } else { ready };
        order.extend(next);
    }
    // Each table's rows: (tenant, key columns' values as text).
    let mut made: HashMap<String, Vec<Made>> = HashMap::new();
    let mut total = 0;
    let mut counter = 0u64;
    let tenant_key = ts[&tt].cols.iter().find(|c| ts[&tt].uniques.iter().any(|u| u.len() == 1 && u[0] == c.name)).map(|c| c.name.clone()).unwrap_or_else(|| "id".into());
    for tname in order {
        let t = &ts[&tname];
        let rows = if tname == tt { tenants as u64 } else { per_table };
        let unique_cols: BTreeSet<&str> = t.uniques.iter().flat_map(|u| u.iter().map(String::as_str)).collect();
        let referenced: BTreeSet<String> = ts.values().flat_map(|o| o.fks.iter().filter(|f| f.parent == tname).flat_map(|f| f.parent_cols.iter().cloned())).collect();
        let mut kept = Vec::new();
        for i in 0..rows {
            counter += 1;
            let tenant = if owned.contains(&tname) { Some(if tname == tt { i as usize } else { rng.below(tenants) }) } else { None };
            let mut cols = Vec::new();
            let mut vals = Vec::new();
            let mut ok = true;
            // Foreign keys first: pick a parent row of the same tenant (or a shared one).
            let mut fixed: BTreeMap<String, String> = BTreeMap::new();
            for f in &t.fks {
                let parents = made.get(&f.parent).cloned().unwrap_or_default();
                let candidates: Vec<&Made> =
                    parents.iter().filter(|(pt, _)| !owned.contains(&f.parent) || *pt == tenant || tenant.is_none()).collect();
                let nullable = f.cols.iter().all(|c| t.cols.iter().any(|x| &x.name == c && !x.not_null));
                // A row linked to its tenant only through its references keeps them: left empty,
                // it would belong to nobody.
                let links = owned.contains(&f.parent) && !t.cols.iter().any(|c| c.name == tenant_column);
                if candidates.is_empty() || (nullable && !links && rng.chance(0.2)) {
                    if !nullable {
                        ok = false;
                    }
                    continue;
                }
                let (_, pk) = candidates[rng.below(candidates.len())];
                for (c, pc) in f.cols.iter().zip(&f.parent_cols) {
                    if let Some(v) = pk.get(pc) {
                        fixed.insert(c.clone(), ql(v));
                    }
                }
            }
            if !ok {
                continue;
            }
            for c in &t.cols {
                if c.generated || (c.identity && !fixed.contains_key(&c.name)) {
                    continue;
                }
                let in_fk = t.fks.iter().any(|f| f.cols.contains(&c.name));
                let v = if let Some(v) = fixed.get(&c.name) {
                    v.clone()
                } else if in_fk && c.name != tenant_column {
                    // A reference left empty (no parent to point at yet).
                    "NULL".into()
                } else if c.name == tenant_column && tname != tt {
                    match tenant.and_then(|k| made.get(&tt).and_then(|r| r.iter().find(|(x, _)| *x == Some(k)).and_then(|(_, m)| m.get(&tenant_key).cloned()))) {
                        Some(id) => ql(&id),
                        None => continue,
                    }
                } else if c.has_default
                    && ((!unique_cols.contains(c.name.as_str()) && !c.not_null) || ((c.not_null || unique_cols.contains(c.name.as_str())) && !referenced.contains(&c.name) && c.base != "text"))
                {
                    // The column's default makes it.
                    continue;
                } else {
                    let v = value(c, counter, unique_cols.contains(c.name.as_str()), &mut rng);
                    if v == "NULL" && c.not_null {
                        if c.has_default {
                            continue;
                        }
                        ok = false;
                        break;
                    }
                    if !c.not_null && rng.chance(0.1) && !unique_cols.contains(c.name.as_str()) {
                        "NULL".into()
                    } else {
                        v
                    }
                };
                cols.push(qi(&c.name));
                vals.push(v);
            }
            if !ok {
                continue;
            }
            let returning: Vec<String> = t.cols.iter().map(|c| format!("{}::text", qi(&c.name))).collect();
            let sql = if cols.is_empty() {
                format!("INSERT INTO {} DEFAULT VALUES RETURNING {}", t.name, returning.join(", "))
            } else {
                format!("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES ({}) RETURNING {}", t.name, cols.join(", "), vals.join(", "), returning.join(", "))
            };
            let _ = sqlx::query("SAVEPOINT f").execute(&mut conn).await;
            match sqlx::query(AssertSqlSafe(sql)).fetch_one(&mut conn).await {
                Ok(r) => {
                    let _ = sqlx::query("RELEASE SAVEPOINT f").execute(&mut conn).await;
                    let m: BTreeMap<String, String> = t.cols.iter().enumerate().filter_map(|(i, c)| r.get::<Option<String>, _>(i).map(|v| (c.name.clone(), v))).collect();
                    kept.push((tenant, m));
                    total += 1;
                }
                Err(e) => {
                    if tname == tt {
                        eprintln!("filler: a row of the tenants table {tt} refused: {e}");
                    }
                    let _ = sqlx::query("ROLLBACK TO SAVEPOINT f").execute(&mut conn).await;
                }
            }
        }
        made.insert(tname, kept);
    }
    let tenants = made.get(&tt).map(|r| r.iter().filter_map(|(_, m)| m.get(&tenant_key).cloned()).collect()).unwrap_or_default();
    sqlx::query("COMMIT").execute(&mut conn).await.expect("commit the rows");
    let _ = conn.close().await;
    Filled { tenants, rows: total }
}

/// A description of a schema nobody here wrote, read from its catalogs in the generator's terms,
/// so the properties' comparisons apply to it: each table's link to the tenant (the tenant
/// column; else, breadth first, a foreign key to a linked table), its key and whether a copy
/// makes it anew, its foreign keys, its single-column unique constraints.
pub async fn describe(url: &str, tenants_table: &str, tenant_column: &str, tenant_ids: Vec<String>) -> super::gen::Schema {
    use super::gen::{Col, Fk, Key, Link, Schema, Table as GTable, Ty};
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let ts = tables(&mut conn).await;
    let pks: HashMap<String, Vec<String>> = sqlx::query(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), array_agg(a.attname::text ORDER BY k.ord)
         FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord) JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
         WHERE i.indisprimary GROUP BY i.indexrelid, 1",
    )
    .fetch_all(&mut conn)
    .await
    .expect("keys")
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    let defaults: HashMap<(String, String), String> = sqlx::query(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname::text, coalesce(pg_get_expr(d.adbin, d.adrelid), CASE WHEN a.attidentity <> '' THEN 'identity' END)
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attnum > 0 AND (d.adbin IS NOT NULL OR a.attidentity <> '')",
    )
    .fetch_all(&mut conn)
    .await
    .expect("defaults")
    .into_iter()
    .filter_map(|r| Some(((r.get(0), r.get(1)), r.get::<Option<String>, _>(2)?)))
    .collect();
    let _ = conn.close().await;
    let names: Vec<String> = ts.keys().cloned().collect();
    let idx = |n: &str| names.iter().position(|x| x == n);
    let tt = names.iter().find(|k| k.rsplit('.').next().map(|b| b.trim_matches('"')) == Some(tenants_table)).cloned().expect("the tenants table");
    // Links, breadth first (and the order they are found in).
    let mut link: HashMap<String, Link> = HashMap::new();
    let mut found: Vec<String> = vec![tt.clone()];
    link.insert(tt.clone(), Link::Tenants);
    for t in ts.values() {
        if t.name != tt && t.cols.iter().any(|c| c.name == tenant_column) {
            link.insert(t.name.clone(), Link::Column);
            found.push(t.name.clone());
        }
    }
    let mut frontier: Vec<String> = link.keys().cloned().collect();
    frontier.sort();
    loop {
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for p in &frontier {
                let open: Vec<&Table> = ts.values().filter(|t| !link.contains_key(&t.name)).collect();
                for t in open {
                    if let Some(f) = t.fks.iter().find(|f| &f.parent == p) {
                        let nullable = f.cols.iter().any(|c| t.cols.iter().any(|x| &x.name == c && !x.not_null));
                        link.insert(t.name.clone(), Link::Via { parent: idx(p).expect("a table"), nullable });
                        found.push(t.name.clone());
                        next.push(t.name.clone());
                    }
                }
            }
            next.sort();
            frontier = next;
        }
        // Rows a linked table points at one-to-one (its referencing columns unique) belong to
        // the tenant with it.
        let owned = ts.values().filter(|t| link.contains_key(&t.name)).find_map(|t| {
            t.fks.iter().find(|f| !link.contains_key(&f.parent) && f.parent != t.name && t.uniques.iter().any(|u| !u.is_empty() && u.iter().all(|c| f.cols.contains(c)))).map(|f| (f.parent.clone(), t.name.clone()))
        });
        match owned {
            Some((p, by)) => {
                link.insert(p.clone(), Link::Owned { by: idx(&by).expect("a table") });
                found.push(p.clone());
                frontier = vec![p];
            }
            None => break,
        }
    }
    let tables = names
        .iter()
        .map(|n| {
            let t = &ts[n];
            let (schema, name) = unquote_pair(n);
            let key_cols = pks.get(n).cloned().unwrap_or_default();
            let renewed = key_cols.len() == 1
                && defaults.get(&(n.clone(), key_cols[0].clone())).is_some_and(|d| d == "identity" || d.starts_with("nextval(") || d.contains("gen_random_uuid") || d.contains("uuid_generate"))
                && !t.fks.iter().any(|f| f.cols.contains(&key_cols[0]));
            let fks: Vec<Fk> = t
                .fks
                .iter()
                .filter_map(|f| {
                    Some(Fk { cols: f.cols.clone(), parent: idx(&f.parent)?, parent_cols: f.parent_cols.clone(), deferrable: false, on_delete: "NO ACTION", late: false, undeclared: false })
                })
                .collect();
            GTable {
                schema,
                name,
                link: link.get(n).cloned().unwrap_or(Link::Shared),
                key: if renewed {
                    Key::Serial
                } else if t.key_cols_text(&pks) {
                    Key::Text
                } else {
                    Key::None
                },
                key_cols,
                cols: t.cols.iter().map(|c| Col { name: c.name.clone(), ty: Ty::Text, not_null: c.not_null }).collect(),
                fks,
                partitioning: None,
                global_unique: t.uniques.iter().filter(|u| u.len() == 1 && pks.get(n) != Some(*u)).map(|u| u[0].clone()).collect(),
                rows: Vec::new(),
                renewed_key: renewed,
                found: found.iter().position(|f| f == n).unwrap_or(usize::MAX),
            }
        })
        .collect();
    Schema {
        seed: 0,
        ddl: Vec::new(),
        data: Vec::new(),
        inserts: Vec::new(),
        post: Vec::new(),
        tenants_table: tenants_table.into(),
        tenant_column: tenant_column.into(),
        tenant_ids,
        tables,
        features: BTreeSet::new(),
        extensions: Vec::new(),
        counters: BTreeSet::new(),
    }
}

/// `schema.table` as `quote_ident` writes each part, back to the two names.
fn unquote_pair(q: &str) -> (String, String) {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = q.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    let t = parts.pop().unwrap_or_default();
    (parts.pop().unwrap_or_else(|| "public".into()), t)
}
