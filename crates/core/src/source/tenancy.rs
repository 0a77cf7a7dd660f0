//! What a live PostgreSQL database's tables are to a tenant: its tables as the tenant operations
//! see them (a partitioned table is ONE table: its root; partitions are where rows live, not
//! tables of their own), their keys, unique constraints, foreign keys and triggers, and — for
//! one tenant — how each table's rows are found: by the tenant column, as the tenants table's
//! row, through a chain of foreign keys to such a row (the shortest), or as rows that the
//! tenant's rows point at one-to-one.
//!
//! Orders: rows are read parents first along those paths ([`Tenancy::reach_order`]); rows are
//! written parents first by every foreign key, a cycle broken at a deferrable key or else at a
//! nullable one — never by name ([`write_order`]); a cycle of `NOT NULL`, non-deferrable keys is
//! refused by name before anything is written.
//!
//! Table names are section names ([`section_name`]): `schema.table`, a part quoted as SQL quotes
//! it when it holds a character that would make the pair ambiguous.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::postgres::{q, qi, USER_NS};
use crate::error::{Error, Result};

/// A table's name in archives, plans and maps: `schema.table`; a part holding `.`, `"`, `#` or
/// nothing is written quoted (`"a.b".c`), so every pair of names has its own section and the
/// `#keys`, `#ctids` and `#live` sections beside a table can never be another table's.
pub fn section_name(schema: &str, table: &str) -> String {
    format!("{}.{}", section_part(schema), section_part(table))
}

fn section_part(s: &str) -> String {
    if s.is_empty() || s.contains(['.', '"', '#']) {
        qi(s)
    } else {
        s.to_string()
    }
}

/// The schema and the table of a section name (the inverse of [`section_name`]); a name without
/// a dot is a table of `public`.
pub fn split_section(section: &str) -> (String, String) {
    fn part(s: &str) -> (String, &str) {
        if let Some(body) = s.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = body.char_indices();
            while let Some((i, c)) = chars.next() {
                if c == '"' {
                    if body[i + 1..].starts_with('"') {
                        out.push('"');
                        chars.next();
                        continue;
                    }
                    return (out, &body[i + 1..]);
                }
                out.push(c);
            }
            (out, "")
        } else {
            match s.find('.') {
                Some(i) => (s[..i].to_string(), &s[i..]),
                None => (s.to_string(), ""),
            }
        }
    }
    let (first, rest) = part(section);
    match rest.strip_prefix('.') {
        Some(r) => (first, part(r).0),
        None => ("public".to_string(), first),
    }
}

/// The quoted relation of a section name.
pub fn rel(section: &str) -> String {
    let (s, t) = split_section(section);
    format!("{}.{}", qi(&s), qi(&t))
}

/// The table part of a section name.
pub fn bare(section: &str) -> String {
    split_section(section).1
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

impl Col {
    /// Whether the target makes this column's values itself (identity, a sequence, a UUID
    /// function): a copy draws new ones.
    pub fn generated_key(&self) -> bool {
        self.identity
            || self.default.as_deref().is_some_and(|d| {
                let d = d.to_ascii_lowercase();
                d.starts_with("nextval(") || d.contains("gen_random_uuid()") || d.contains("uuid_generate_v") || d.contains("uuidv7()") || d.contains("uuidv4()")
            })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Fk {
    pub name: String,
    pub child: String,
    pub parent: String,
    pub cols: Vec<(String, String)>,
    pub deferrable: bool,
    /// Some child column may be NULL: the reference can be left out and added later.
    pub nullable: bool,
    /// The child columns are unique in the child (one row per parent row).
    pub unique: bool,
    /// A reference the administrator declared (no foreign key in the database enforces it).
    pub declared: bool,
    /// A polymorphic reference: it holds only for child rows whose column has this value.
    pub when: Option<(String, String)>,
}

/// A unique constraint or unique index of a table.
#[derive(Debug, Clone)]
pub(crate) struct Unique {
    pub name: String,
    /// Plain columns; an expression appears as `None`.
    pub cols: Vec<Option<String>>,
    /// The predicate of a partial unique index.
    pub predicate: Option<String>,
    pub primary: bool,
    pub nulls_not_distinct: bool,
}

impl Unique {
    /// The plain columns, when every key part is one.
    pub fn plain(&self) -> Option<Vec<String>> {
        self.cols.iter().cloned().collect()
    }
}

/// A user trigger that fires (its `tgenabled`).
#[derive(Debug, Clone)]
pub(crate) struct Trigger {
    pub name: String,
    pub enabled: String,
}

/// The target's tables, keys and foreign keys.
#[derive(Debug, Default, Clone)]
pub(crate) struct Target {
    /// Plain tables and partitioned roots (never partitions), by section name.
    pub cols: HashMap<String, Vec<Col>>,
    pub pks: HashMap<String, Vec<String>>,
    /// Unique constraints and unique indexes on plain columns without a predicate (primary
    /// keys included).
    pub uniques: HashMap<String, Vec<Vec<String>>>,
    /// Every unique constraint and unique index, partial and expression ones too.
    pub unique_indexes: HashMap<String, Vec<Unique>>,
    pub fks: Vec<Fk>,
    /// Every partition (at any level) → its root.
    pub partitions: HashMap<String, String>,
    pub triggers: HashMap<String, Vec<Trigger>>,
    /// The tables another table inherits from (legacy inheritance, outside partitioning): a
    /// statement on such a table's own rows names it `ONLY` (see [`Target::own_rows`]).
    pub inherited: std::collections::HashSet<String>,
    pub server_version_num: i64,
}

impl Target {
    /// The table `t` as a statement that reads, updates or deletes its own rows names it: `ONLY`
    /// when other tables inherit from it (else the statement would reach their rows too). A
    /// partitioned table is named as it is (its rows are its partitions').
    pub fn own_rows(&self, t: &str) -> String {
        if self.inherited.contains(t) {
            format!("ONLY {}", rel(t))
        } else {
            rel(t)
        }
    }

    /// The table a section stands for: itself, or the root of the partition it is.
    pub fn table_of(&self, section: &str) -> Option<String> {
        if self.cols.contains_key(section) {
            Some(section.to_string())
        } else {
            self.partitions.get(section).cloned()
        }
    }

    pub fn col(&self, table: &str, col: &str) -> Option<&Col> {
        self.cols.get(table).and_then(|cs| cs.iter().find(|c| c.name == col))
    }

    /// The tables among `names` (section names or bare names) that is the tenants table.
    pub fn find_table(&self, name: &str) -> Vec<String> {
        let name = name.trim();
        let mut exact: Vec<String> = self.cols.keys().filter(|t| t.as_str() == name).cloned().collect();
        if exact.is_empty() {
            // `schema.table` written with other quoting, or a bare (maybe quoted) table name.
            let (schema, table) = split_section(name);
            let qualified = section_name(&schema, &table);
            exact = self.cols.keys().filter(|t| **t == qualified).cloned().collect();
            if exact.is_empty() {
                let bare_name = unquote(name);
                exact = self.cols.keys().filter(|t| bare(t) == bare_name).cloned().collect();
            }
        }
        exact.sort();
        exact
    }
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
    let name_of = |ns: String, rel: String| section_name(&ns, &rel);
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT n.nspname::text, c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attidentity::text, pg_get_expr(d.adbin, d.adrelid), a.attnotnull, a.attgenerated::text \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum \
         WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {USER_NS} ORDER BY c.oid, a.attnum"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read the target's tables"))?;
    for r in rows {
        let identity: String = r.get(4);
        t.cols.entry(name_of(r.get(0), r.get(1))).or_default().push(Col {
            name: r.get(2),
            ty: r.get(3),
            identity: !identity.is_empty(),
            always: identity == "a",
            default: r.get(5),
            not_null: r.get(6),
            generated: !r.get::<String, _>(7).is_empty(),
        });
    }
    for r in sqlx::query(AssertSqlSafe(format!(
        "SELECT n.nspname::text, c.relname::text, rn.nspname::text, r.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_class r ON r.oid = pg_partition_root(c.oid) JOIN pg_namespace rn ON rn.oid = r.relnamespace \
         WHERE c.relispartition AND c.relkind IN ('r', 'p') AND {USER_NS}"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read the target's partitions"))?
    {
        t.partitions.insert(name_of(r.get(0), r.get(1)), name_of(r.get(2), r.get(3)));
    }
    for r in sqlx::query(AssertSqlSafe(format!(
        "SELECT DISTINCT n.nspname::text, p.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace WHERE NOT c.relispartition AND {USER_NS}"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read the target's inheritance"))?
    {
        t.inherited.insert(name_of(r.get(0), r.get(1)));
    }
    // Unique indexes (constraints' included) of the tables: each key part a column or an
    // expression, with the predicate of a partial one.
    let nulls_not_distinct = if t.server_version_num >= 150000 { "i.indnullsnotdistinct" } else { "false" };
    for r in sqlx::query(AssertSqlSafe(format!(
        "SELECT n.nspname::text, c.relname::text, ic.relname::text, i.indisprimary, pg_get_expr(i.indpred, i.indrelid), {nulls_not_distinct}, \
                array_agg(CASE WHEN k.attnum > 0 THEN a.attname::text END ORDER BY k.ord) \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_class ic ON ic.oid = i.indexrelid \
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord) \
         LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum \
         WHERE i.indisunique AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND k.ord <= i.indnkeyatts AND {USER_NS} \
         GROUP BY i.indexrelid, n.nspname, c.relname, ic.relname, i.indisprimary, i.indpred, i.indrelid ORDER BY i.indexrelid"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read the target's unique constraints"))?
    {
        let table = name_of(r.get(0), r.get(1));
        let cols: Vec<Option<String>> = r.get(6);
        let u = Unique { name: r.get(2), cols, predicate: r.get(4), primary: r.get(3), nulls_not_distinct: r.get(5) };
        if u.primary {
            t.pks.insert(table.clone(), u.plain().unwrap_or_default());
        }
        if let (Some(plain), None) = (u.plain(), &u.predicate) {
            t.uniques.entry(table.clone()).or_default().push(plain);
        }
        t.unique_indexes.entry(table).or_default().push(u);
    }
    for r in sqlx::query(
        "SELECT cn.nspname::text, c.relname::text, pn.nspname::text, p.relname::text, co.conname::text, co.condeferrable, \
                array_agg(ca.attname::text ORDER BY k.ord), array_agg(pa.attname::text ORDER BY k.ord), bool_or(NOT ca.attnotnull) \
         FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace \
         JOIN pg_class p ON p.oid = co.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace \
         CROSS JOIN LATERAL unnest(co.conkey, co.confkey) WITH ORDINALITY k(ck, pk, ord) \
         JOIN pg_attribute ca ON ca.attrelid = c.oid AND ca.attnum = k.ck JOIN pg_attribute pa ON pa.attrelid = p.oid AND pa.attnum = k.pk \
         WHERE co.contype = 'f' AND co.conparentid = 0 GROUP BY co.oid, cn.nspname, c.relname, pn.nspname, p.relname, co.conname, co.condeferrable ORDER BY co.oid",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read the target's foreign keys"))?
    {
        let child = name_of(r.get(0), r.get(1));
        let parent = name_of(r.get(2), r.get(3));
        let (child_cols, parent_cols): (Vec<String>, Vec<String>) = (r.get(6), r.get(7));
        let child = t.table_of(&child).unwrap_or(child);
        let parent = t.table_of(&parent).unwrap_or(parent);
        t.fks.push(Fk { name: r.get(4), child, parent, cols: child_cols.into_iter().zip(parent_cols).collect(), deferrable: r.get(5), nullable: r.get(8), unique: false, declared: false, when: None });
    }
    let uniques = t.uniques.clone();
    for fk in &mut t.fks {
        let cols: BTreeSet<&str> = fk.cols.iter().map(|(c, _)| c.as_str()).collect();
        fk.unique = uniques.get(&fk.child).into_iter().flatten().any(|u| !u.is_empty() && u.iter().all(|c| cols.contains(c.as_str())));
    }
    for r in sqlx::query(AssertSqlSafe(format!(
        "SELECT n.nspname::text, c.relname::text, tg.tgname::text, tg.tgenabled::text FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE NOT tg.tgisinternal AND tg.tgparentid = 0 AND tg.tgenabled <> 'D' AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND {USER_NS} ORDER BY tg.oid"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read the target's triggers"))?
    {
        t.triggers.entry(name_of(r.get(0), r.get(1))).or_default().push(Trigger { name: r.get(2), enabled: r.get(3) });
    }
    Ok(t)
}

/// A declared reference, `CHILD.COLUMN=PARENT.COLUMN` (tables as `schema.table` or bare names),
/// optionally only for rows whose type column has a value (`…;TYPE_COLUMN=VALUE`, Rails'
/// polymorphic references), checked against the target's tables and columns.
pub(crate) fn parse_reference(text: &str, target: &Target) -> Result<Fk> {
    let bad = |why: &str| {
        Error::validation(format!(
            "the reference \"{text}\" {why}: write CHILD_TABLE.COLUMN=PARENT_TABLE.COLUMN (e.g. invoice_lines.invoice_id=invoices.id), with ;TYPE_COLUMN=VALUE for a polymorphic one"
        ))
    };
    // Split at `;` and `=` outside double quotes (a quoted name may hold any character).
    let split_outside = |s: &str, sep: char| -> Option<(String, String)> {
        let mut quoted = false;
        for (i, c) in s.char_indices() {
            if c == '"' {
                quoted = !quoted;
            } else if c == sep && !quoted {
                return Some((s[..i].to_string(), s[i + 1..].to_string()));
            }
        }
        None
    };
    let (main, when) = match split_outside(text, ';') {
        Some((m, w)) => {
            let (c, v) = split_outside(&w, '=').ok_or_else(|| bad("has a condition without ="))?;
            (m, Some((unquote(c.trim()), v.trim().to_string())))
        }
        None => (text.to_string(), None),
    };
    let (child, parent) = split_outside(&main, '=').ok_or_else(|| bad("has no ="))?;
    let side = |s: &str| -> Result<(String, String)> {
        let s = s.trim();
        // The column: the last part, quoted or not.
        let (t, c) = if let Some(body) = s.strip_suffix('"') {
            let mut i = body.len();
            loop {
                let Some(j) = body[..i].rfind('"') else { return Err(bad("has an unclosed quote")) };
                if j > 0 && body[..j].ends_with('"') {
                    i = j - 1;
                    continue;
                }
                break (body[..j].trim_end_matches('.').to_string(), unquote(&s[j..]));
            }
        } else {
            let (t, c) = s.rsplit_once('.').ok_or_else(|| bad("names a column without its table"))?;
            (t.to_string(), c.to_string())
        };
        let tables = target.find_table(t.trim());
        let c = c.trim().to_string();
        match tables.as_slice() {
            [one] => {
                if target.col(one, &c).is_none() {
                    return Err(Error::validation(format!("the reference \"{text}\": the table {one} has no column {c}")));
                }
                Ok((one.clone(), c))
            }
            [] => Err(Error::validation(format!("the reference \"{text}\": the target has no table {}", t.trim()))),
            many => Err(Error::validation(format!("the reference \"{text}\": {} names several tables ({}); give it with its schema", t.trim(), many.join(", ")))),
        }
    };
    let (ct, cc) = side(&child)?;
    let (pt, pc) = side(&parent)?;
    if let Some((c, _)) = &when {
        if target.col(&ct, c).is_none() {
            return Err(Error::validation(format!("the reference \"{text}\": the table {ct} has no column {c}")));
        }
    }
    let unique = target.uniques.get(&ct).into_iter().flatten().any(|u| u.len() == 1 && u[0] == cc);
    let nullable = !target.col(&ct, &cc).is_some_and(|c| c.not_null);
    Ok(Fk { name: format!("declared {text}"), child: ct, parent: pt, cols: vec![(cc, pc)], deferrable: true, nullable, unique, declared: true, when })
}

/// A name as written in a reference: quoted (`"a.b"`, `""` for a quote) or plain.
fn unquote(s: &str) -> String {
    match s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(body) => body.replace("\"\"", "\""),
        None => s.to_string(),
    }
}

/// Columns that look like references no foreign key declares: `<name>_id` (or `<name>Id`) whose
/// every value is a key of a table named after `<name>` or its last words (singular or plural),
/// and Rails' polymorphic pairs `<name>_type` + `<name>_id`. Each is given as the `--reference`
/// text that would declare it (polymorphic ones with what to fill in), for the plan to show.
pub(crate) async fn inferred_references(conn: &mut PgConnection, target: &Target, tables: &[String], tenant_column: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let declared: BTreeSet<(String, String)> = target.fks.iter().flat_map(|fk| fk.cols.iter().map(move |(c, _)| (fk.child.clone(), c.clone()))).collect();
    for t in tables {
        let Some(cols) = target.cols.get(t) else { continue };
        for col in cols {
            if col.name == tenant_column || declared.contains(&(t.clone(), col.name.clone())) || target.pks.get(t).is_some_and(|pk| pk.contains(&col.name)) {
                continue;
            }
            let stem = match col.name.strip_suffix("_id").or_else(|| col.name.strip_suffix("Id")) {
                Some(s) if !s.is_empty() => s.to_string(),
                _ => continue,
            };
            if cols.iter().any(|c| c.name == format!("{stem}_type") || c.name == format!("{stem}Type")) {
                out.push(format!(
                    "{t}.{} is a polymorphic reference (with {stem}_type): declare it once per type, e.g. {t}.{}=<table>.id;{stem}_type=<Type>",
                    col.name, col.name
                ));
                continue;
            }
            // The stem, then its last words: manager_staff → staff.
            let words: Vec<String> = stem.split('_').map(|w| w.to_lowercase()).collect();
            let mut found = None;
            'stems: for k in 0..words.len() {
                let base = words[k..].join("_");
                let forms = [base.clone(), format!("{base}s"), format!("{base}es"), base.strip_suffix('y').map(|b| format!("{b}ies")).unwrap_or_default()];
                for f in forms.iter().filter(|f| !f.is_empty()) {
                    // The table by its name, or with the words run together (`taskslog_id`,
                    // `tasksLogId` → `tasks_log`).
                    let mut cands = target.find_table(f);
                    if cands.is_empty() {
                        let squash = |n: &str| n.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect::<String>();
                        cands = target.cols.keys().filter(|c| squash(&bare(c)) == squash(f)).cloned().collect();
                        cands.sort();
                    }
                    for cand in cands {
                        let Some(pk) = target.pks.get(&cand).filter(|pk| pk.len() == 1) else { continue };
                        let pty = target.col(&cand, &pk[0]).map(|c| c.ty.clone()).unwrap_or_default();
                        if cand != *t && same_family(&pty, &col.ty) {
                            found = Some((cand, pk[0].clone()));
                            break 'stems;
                        }
                    }
                }
            }
            let Some((parent, pcol)) = found else { continue };
            let all_found: bool = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT NOT EXISTS (SELECT 1 FROM {} c WHERE c.{} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {} p WHERE p.{}::text = c.{}::text))",
                rel(t),
                qi(&col.name),
                rel(&parent),
                qi(&pcol),
                qi(&col.name)
            )))
            .fetch_one(&mut *conn)
            .await
            .map_err(q("look for references no foreign key declares"))?;
            if all_found {
                out.push(format!("{t}.{}={parent}.{pcol}", col.name));
            }
        }
    }
    Ok(out)
}

fn same_family(a: &str, b: &str) -> bool {
    let ints = ["smallint", "integer", "bigint", "numeric"];
    a == b || (ints.contains(&a) && ints.contains(&b)) || (super::super::migrate::rules::is_text(a) && super::super::migrate::rules::is_text(b))
}

/// Turns the user triggers of `tables` off for the rest of the transaction (a restore or a copy
/// writes rows as they are: a trigger must not change them nor write elsewhere), and returns the
/// statements that turn them on again as they were.
pub(crate) async fn quiet_triggers(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, target: &Target, tables: &[String]) -> Result<Vec<String>> {
    let mut again = Vec::new();
    for t in tables {
        for tg in target.triggers.get(t).into_iter().flatten() {
            sqlx::raw_sql(AssertSqlSafe(format!("ALTER TABLE {} DISABLE TRIGGER {}", rel(t), qi(&tg.name))))
                .execute(&mut **tx)
                .await
                .map_err(|e| super::postgres::restore_error(&format!("turning off the trigger {} of {t} for the restore", tg.name), &e))?;
            let mode = match tg.enabled.as_str() {
                "A" => "ALWAYS ",
                "R" => "REPLICA ",
                _ => "",
            };
            again.push(format!("ALTER TABLE {} ENABLE {mode}TRIGGER {}", rel(t), qi(&tg.name)));
        }
    }
    Ok(again)
}

/// How a tenant table's rows are found.
#[derive(Debug, Clone)]
pub(crate) enum Reach {
    /// Its own tenant column.
    Column(String),
    /// The tenants table: its key is the tenant id.
    TenantsKey(String),
    /// Through these foreign keys (indexes in `fks`) to parent tenant tables: a row is the
    /// tenant's when any of them leads to the tenant (an anonymous checkout session has no
    /// customer but has its event).
    Via(Vec<usize>),
    /// Rows that the tenant's rows of another table point at through this one-to-one foreign key
    /// (index in `fks`; its child is the owner): they belong to the tenant with them.
    Owned(usize),
}

/// Which tenant of which table.
#[derive(Debug, Clone)]
pub struct TenantScope {
    pub tenant_id: String,
    pub tenant_column: String,
    pub tenants_table: String,
    /// References no foreign key declares (`CHILD.COLUMN=PARENT.COLUMN`): followed like foreign
    /// keys, to the tenant's rows and to the new keys of a copy.
    pub references: Vec<String>,
}

pub(crate) struct Tenancy {
    pub reach: HashMap<String, Reach>,
    pub fks: Vec<Fk>,
    pub tenant: String,
    /// The type of each table's tenant column or tenants key.
    pub types: HashMap<String, String>,
    /// The setting that holds the tenant id in the transaction ([`Tenancy::bind`]): predicates
    /// read it instead of carrying the id as text.
    pub param: String,
    /// Tables reached, in the order they were found (a table's path goes through earlier ones).
    pub found: Vec<String>,
}

impl Tenancy {
    /// Finds the tenant tables of the target among `available`: the tenants table, the tables
    /// with the tenant column, then (breadth first, so each by its shortest path) tables with a
    /// foreign key to a found one, and rows found ones point at one-to-one.
    pub(crate) fn find(target: &Target, scope: &TenantScope, available: &BTreeSet<String>) -> Result<Self> {
        let mut reach = HashMap::new();
        let mut types = HashMap::new();
        let mut found = Vec::new();
        let tenants_tables: Vec<String> = target.find_table(&scope.tenants_table).into_iter().filter(|t| available.contains(t)).collect();
        if tenants_tables.len() > 1 {
            return Err(Error::validation(format!(
                "several tables are called {}: {}; set the connection's tenants table with its schema (e.g. {})",
                scope.tenants_table,
                tenants_tables.join(", "),
                tenants_tables[0]
            )));
        }
        let mut names: Vec<&String> = target.cols.keys().filter(|t| available.contains(*t)).collect();
        names.sort();
        for table in names {
            let cols = &target.cols[table];
            if tenants_tables.contains(table) {
                let pk = target.pks.get(table).cloned().unwrap_or_default();
                if pk.len() != 1 {
                    return Err(Error::validation(format!("the tenants table {table} needs a one-column primary key (the tenant id) for tenant operations")));
                }
                reach.insert(table.clone(), Reach::TenantsKey(pk[0].clone()));
                types.insert(table.clone(), cols.iter().find(|c| c.name == pk[0]).map(|c| c.ty.clone()).unwrap_or_else(|| "text".into()));
                found.insert(0, table.clone());
            } else if let Some(c) = cols.iter().find(|c| c.name == scope.tenant_column) {
                reach.insert(table.clone(), Reach::Column(scope.tenant_column.clone()));
                types.insert(table.clone(), c.ty.clone());
                found.push(table.clone());
            }
        }
        if reach.is_empty() {
            return Err(Error::validation(format!(
                "no table of the target has the tenant column \"{}\" or is the tenants table \"{}\"; set the connection's tenant column and tenants table",
                scope.tenant_column, scope.tenants_table
            )));
        }
        // Breadth first: children by foreign keys; then rows owned one-to-one.
        let mut queue: VecDeque<String> = found.iter().cloned().collect();
        loop {
            while let Some(parent) = queue.pop_front() {
                for (i, fk) in target.fks.iter().enumerate() {
                    if fk.parent == parent && fk.child != fk.parent && available.contains(&fk.child) && !reach.contains_key(&fk.child) {
                        // Every key of the child to a table found already: each is a way in.
                        let mut ways = vec![i];
                        ways.extend(target.fks.iter().enumerate().filter(|(j, o)| *j != i && o.child == fk.child && o.parent != o.child && reach.contains_key(&o.parent)).map(|(j, _)| j));
                        reach.insert(fk.child.clone(), Reach::Via(ways));
                        found.push(fk.child.clone());
                        queue.push_back(fk.child.clone());
                    }
                }
            }
            // A table nothing else reaches, pointed at one-to-one by a found table: its rows go
            // with the rows pointing at them.
            let owned = target.fks.iter().enumerate().find(|(_, fk)| {
                reach.contains_key(&fk.child)
                    && !reach.contains_key(&fk.parent)
                    && available.contains(&fk.parent)
                    && fk.child != fk.parent
                    && one_to_one(target, fk)
                    && target.pks.get(&fk.parent).is_some_and(|pk| !pk.is_empty())
            });
            match owned {
                Some((i, fk)) => {
                    reach.insert(fk.parent.clone(), Reach::Owned(i));
                    found.push(fk.parent.clone());
                    queue.push_back(fk.parent.clone());
                }
                None => break,
            }
        }
        Ok(Self { reach, fks: target.fks.clone(), tenant: scope.tenant_id.clone(), types, param: "safehold.tenant".into(), found })
    }

    /// Puts the tenant id into the transaction's setting that the predicates read (a bound
    /// value: the id never becomes SQL text).
    pub(crate) async fn bind(&self, conn: &mut PgConnection) -> Result<()> {
        sqlx::query("SELECT set_config($1, $2, true)").bind(&self.param).bind(&self.tenant).execute(&mut *conn).await.map_err(q("set the tenant for the transaction"))?;
        Ok(())
    }

    pub(crate) fn tables(&self) -> Vec<String> {
        self.found.clone()
    }

    /// The tables in the order their rows can be selected: each after the table its path goes
    /// through.
    pub(crate) fn reach_order(&self) -> Vec<String> {
        self.found.clone()
    }

    /// The tables whose rows are owned one-to-one (for the plan: shared when several tenants
    /// point at the same row).
    pub(crate) fn owned(&self) -> Vec<(String, String)> {
        self.found
            .iter()
            .filter_map(|t| match self.reach.get(t) {
                Some(Reach::Owned(i)) => Some((t.clone(), self.fks[*i].child.clone())),
                _ => None,
            })
            .collect()
    }

    /// Whether `table`'s rows are the tenant's by its own tenant column, of a type whose text is
    /// its value (uuid, the integers: equal values, equal text), and no other table's rows are
    /// found through it (no reference leads from a table to it, it owns no row): the rows of other
    /// tenants then play no part, and a restore may stage only the tenant's. The column and its
    /// type.
    pub(crate) fn filtered_by_column(&self, table: &str) -> Option<(&str, &str)> {
        let Some(Reach::Column(column)) = self.reach.get(table) else { return None };
        let through = self.reach.values().any(|r| match r {
            Reach::Via(ways) => ways.iter().any(|i| self.fks[*i].parent == table),
            Reach::Owned(i) => self.fks[*i].child == table,
            _ => false,
        });
        let ty = self.types.get(table).map(String::as_str)?;
        (!through && matches!(ty, "uuid" | "smallint" | "integer" | "bigint")).then_some((column.as_str(), ty))
    }

    /// For each table whose rows the tenant owns one-to-one: how many of its rows the tenant's
    /// rows point at while other tenants' rows reach them too (through the row pointing at them).
    /// Such rows are nobody's own: they stay shared, and the plan says so. `relation` names each
    /// table's relation (live or staged); the tenant must be bound on `conn`.
    pub(crate) async fn shared_owned(&self, conn: &mut PgConnection, relation: &(dyn Fn(&str) -> String + Sync)) -> Result<Vec<(String, String, i64)>> {
        let mut out = Vec::new();
        for (table, by) in self.owned() {
            let sql = format!("SELECT count(*) FROM {} l WHERE {} AND {}", relation(&table), self.leads(&table, "l", relation, 0, true), self.leads(&table, "l", relation, 0, false));
            let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&mut *conn).await.map_err(q(&format!("count the shared rows of {table}")))?;
            if n > 0 {
                out.push((table, by, n));
            }
        }
        Ok(out)
    }

    /// For a table reached through references: a condition true for the rows of `table` whose
    /// reference points at a row of the parent in `parents` (the backup's rows of the tenant).
    /// A row that belongs to nobody now but does so is the tenant's again once the restore puts
    /// its parent back, so the restore replaces it.
    pub(crate) fn under(&self, table: &str, alias: &str, parents: &dyn Fn(&str) -> String) -> Option<String> {
        let Some(Reach::Via(ways)) = self.reach.get(table) else { return None };
        let each: Vec<String> = ways
            .iter()
            .map(|i| {
                let fk = &self.fks[*i];
                format!("EXISTS (SELECT 1 FROM {} _u WHERE {})", parents(&fk.parent), join_of(fk, "_u", alias).join(" AND "))
            })
            .collect();
        Some(format!("({})", each.join(" OR ")))
    }

    /// A condition true for the rows of `table` (aliased `alias`) that belong to some tenant,
    /// any tenant: the others belong to nobody (their tenant column or link is empty).
    pub(crate) fn anyones(&self, table: &str, alias: &str, relation: &dyn Fn(&str) -> String, depth: usize) -> String {
        match self.reach.get(table) {
            Some(Reach::Column(c)) => format!("{alias}.{} IS NOT NULL", qi(c)),
            Some(Reach::TenantsKey(_)) => "TRUE".into(),
            Some(Reach::Via(ways)) => {
                let each: Vec<String> = ways
                    .iter()
                    .map(|i| {
                        let fk = &self.fks[*i];
                        let p = format!("_a{depth}");
                        format!("EXISTS (SELECT 1 FROM {} {p} WHERE {} AND {})", relation(&fk.parent), join_of(fk, &p, alias).join(" AND "), self.anyones(&fk.parent, &p, relation, depth + 1))
                    })
                    .collect();
                format!("({})", each.join(" OR "))
            }
            Some(Reach::Owned(i)) => {
                let fk = &self.fks[*i];
                let o = format!("_b{depth}");
                let join: Vec<String> = fk.cols.iter().map(|(cc, pc)| format!("{o}.{} = {alias}.{}", qi(cc), qi(pc))).collect();
                format!("EXISTS (SELECT 1 FROM {} {o} WHERE {} AND {})", relation(&fk.child), join.join(" AND "), self.anyones(&fk.child, &o, relation, depth + 1))
            }
            None => "FALSE".into(),
        }
    }

    /// A condition true for the tenant's rows of `table` aliased `alias`, where `relation` names
    /// each table's relation: rows that lead to the tenant through some way in, and to no other
    /// tenant through any (a row that several tenants' rows reach is shared: nobody's own).
    pub(crate) fn predicate(&self, table: &str, alias: &str, relation: &dyn Fn(&str) -> String, depth: usize) -> String {
        match self.reach.get(table) {
            // The tenant column or the key alone decides.
            Some(Reach::Column(_)) | Some(Reach::TenantsKey(_)) => self.leads(table, alias, relation, depth, true),
            Some(_) => format!("({} AND NOT {})", self.leads(table, alias, relation, depth, true), self.leads(table, alias, relation, depth, false)),
            None => "FALSE".into(),
        }
    }

    /// A condition true for every row of `table` that leads to the tenant at all (its own and
    /// the ones it shares): what removing the tenant must remove, or they would point at rows
    /// that are gone.
    pub(crate) fn reaching(&self, table: &str, alias: &str, relation: &dyn Fn(&str) -> String) -> String {
        self.leads(table, alias, relation, 0, true)
    }

    /// Whether a row of `table` leads to the tenant (`mine`) — or to another tenant (`!mine`) —
    /// through some way in.
    fn leads(&self, table: &str, alias: &str, relation: &dyn Fn(&str) -> String, depth: usize, mine: bool) -> String {
        match self.reach.get(table) {
            Some(Reach::Column(c)) | Some(Reach::TenantsKey(c)) => {
                let ty = self.types.get(table).map(String::as_str).unwrap_or("text");
                let op = if mine { "=" } else { "<>" };
                format!("{alias}.{} {op} CAST(current_setting({}) AS {ty})", qi(c), super::postgres::ql(&self.param))
            }
            Some(Reach::Via(ways)) => {
                let each: Vec<String> = ways
                    .iter()
                    .map(|i| {
                        let fk = &self.fks[*i];
                        let p = format!("_{}{depth}", if mine { 'p' } else { 'q' });
                        format!(
                            "EXISTS (SELECT 1 FROM {} {p} WHERE {} AND {})",
                            relation(&fk.parent),
                            join_of(fk, &p, alias).join(" AND "),
                            self.leads(&fk.parent, &p, relation, depth + 1, mine)
                        )
                    })
                    .collect();
                format!("({})", each.join(" OR "))
            }
            Some(Reach::Owned(i)) => {
                let fk = &self.fks[*i];
                let o = format!("_{}{depth}", if mine { 'o' } else { 'r' });
                let join: Vec<String> = fk.cols.iter().map(|(cc, pc)| format!("{o}.{} = {alias}.{}", qi(cc), qi(pc))).collect();
                format!("EXISTS (SELECT 1 FROM {} {o} WHERE {} AND {})", relation(&fk.child), join.join(" AND "), self.leads(&fk.child, &o, relation, depth + 1, mine))
            }
            None => "FALSE".into(),
        }
    }

    /// The columns the predicates join on, per table (to index staged copies of the tables).
    pub(crate) fn join_columns(&self) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        for r in self.reach.values() {
            match r {
                Reach::Via(ways) => {
                    for i in ways {
                        let fk = &self.fks[*i];
                        out.push((fk.parent.clone(), fk.cols.iter().map(|(_, p)| p.clone()).collect()));
                    }
                }
                Reach::Owned(i) => {
                    let fk = &self.fks[*i];
                    out.push((fk.child.clone(), fk.cols.iter().map(|(c, _)| c.clone()).collect()));
                }
                _ => {}
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// The join of a child row (`alias`) to its parent (`p`) through `fk`, with a polymorphic
/// reference's condition.
fn join_of(fk: &Fk, p: &str, alias: &str) -> Vec<String> {
    let mut join: Vec<String> = fk.cols.iter().map(|(cc, pc)| format!("{p}.{} = {alias}.{}", qi(pc), qi(cc))).collect();
    if let Some((c, v)) = &fk.when {
        join.push(format!("{alias}.{}::text = {}", qi(c), super::postgres::ql(v)));
    }
    join
}

/// A foreign key whose child columns are unique in the child: each parent row has at most one
/// row pointing at it.
fn one_to_one(_target: &Target, fk: &Fk) -> bool {
    fk.unique
}

/// How rows of `tables` are written so every foreign key holds at every statement.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteOrder {
    /// Parents first.
    pub tables: Vec<String>,
    /// Keys that point forward in `tables` (a cycle): deferrable ones are checked at commit;
    /// for the others, rows are inserted with a stand-in reference (NULL, or for a NOT NULL key
    /// an existing row of the parent) and given the real one once every row is in.
    pub late: Vec<Fk>,
}

impl WriteOrder {
    /// Whether a late key must be written in two steps (it is checked at once).
    pub fn held(fk: &Fk) -> bool {
        !fk.deferrable
    }
}

/// The stand-in a held reference of `fk` gets until its row's real parent is in: NULL, or for a
/// NOT NULL key the key of some existing row of the parent (the same row for every column).
pub(crate) fn stand_in(fk: &Fk, column: &str) -> String {
    if fk.nullable {
        return "NULL".into();
    }
    let pc = fk.cols.iter().find(|(c, _)| c == column).map(|(_, p)| p.clone()).unwrap_or_default();
    format!("(SELECT _sh_p.{} FROM {} _sh_p ORDER BY _sh_p.ctid LIMIT 1)", qi(&pc), rel(&fk.parent))
}

/// Orders `tables` parents before children by the foreign keys among them; a cycle is broken at
/// a deferrable key, else at a nullable one, else (a cycle of NOT NULL keys checked at once) at
/// one of those, whose rows are then written with a stand-in reference first.
pub(crate) fn write_order(tables: &[String], fks: &[Fk]) -> Result<WriteOrder> {
    order(tables, fks, false)
}

/// The order in which rows of `tables` are deleted (the reverse of the returned tables): a cycle
/// is broken at a nullable key first — its references are emptied before the deletes, so no
/// row is deleted while another points at it and no `ON DELETE CASCADE` reaches a row that is
/// still pointed at.
pub(crate) fn delete_order(tables: &[String], fks: &[Fk]) -> Result<WriteOrder> {
    order(tables, &fks.iter().filter(|f| !f.declared).cloned().collect::<Vec<_>>(), true)
}

fn order(tables: &[String], fks: &[Fk], deleting: bool) -> Result<WriteOrder> {
    let set: BTreeSet<&String> = tables.iter().collect();
    // Declared references order the work too (a parent's new keys before the rows that point at
    // them); the database does not check them, so they count as deferrable: a cycle is broken at
    // them first.
    let edges: Vec<&Fk> = fks.iter().filter(|fk| fk.child != fk.parent && set.contains(&fk.child) && set.contains(&fk.parent)).collect();
    let mut broken: Vec<usize> = Vec::new();
    loop {
        // Kahn's algorithm on the edges not broken; a table's place follows `tables` otherwise.
        let active: Vec<&Fk> = edges.iter().enumerate().filter(|(i, _)| !broken.contains(i)).map(|(_, e)| *e).collect();
        let mut indeg: BTreeMap<&String, usize> = tables.iter().map(|t| (t, 0)).collect();
        for e in &active {
            *indeg.get_mut(&e.child).expect("a table of the set") += 1;
        }
        let mut out: Vec<String> = Vec::new();
        let mut placed: BTreeSet<&String> = BTreeSet::new();
        let mut progress = true;
        while progress {
            progress = false;
            for t in tables {
                if !placed.contains(t) && indeg[t] == 0 {
                    placed.insert(t);
                    out.push(t.clone());
                    for e in active.iter().filter(|e| &e.parent == t) {
                        *indeg.get_mut(&e.child).expect("a table of the set") -= 1;
                    }
                    progress = true;
                }
            }
        }
        if out.len() == tables.len() {
            let late = edges.iter().enumerate().filter(|(i, _)| broken.contains(i)).map(|(_, e)| (*e).clone()).collect();
            return Ok(WriteOrder { tables: out, late });
        }
        // The tables left are on or behind a cycle: break one of the cycle's keys.
        let left: BTreeSet<&String> = tables.iter().filter(|t| !placed.contains(t)).collect();
        let on_cycle: Vec<usize> = edges.iter().enumerate().filter(|(i, e)| !broken.contains(i) && left.contains(&e.child) && left.contains(&e.parent) && reaches(&edges, &broken, &e.child, &e.parent)).map(|(i, _)| i).collect();
        // The key broken is written late: its references follow their parents only at the end
        // (after the table's unique values were checked), so a key under a unique constraint is
        // broken last. Among the others: one the database checks at commit (or does not check:
        // a declared reference), then a nullable one, then a NOT NULL one (a stand-in first:
        // an existing parent row).
        let pick = if deleting {
            on_cycle.iter().copied().min_by_key(|&i| (!edges[i].nullable, !edges[i].deferrable))
        } else {
            on_cycle.iter().copied().min_by_key(|&i| (edges[i].unique, !edges[i].deferrable && !edges[i].nullable, !edges[i].deferrable))
        };
        match pick {
            Some(i) => broken.push(i),
            None => return Err(Error::new(crate::error::ErrorCode::Internal, "a cycle of foreign keys without a key on it")),
        }
    }
}

/// Whether `from` reaches `to` (as child → parent edges from `to`… ): an edge child→parent is on a
/// cycle when the parent leads back to the child.
fn reaches(edges: &[&Fk], broken: &[usize], child: &str, parent: &str) -> bool {
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut stack = vec![parent];
    while let Some(t) = stack.pop() {
        if t == child {
            return true;
        }
        if !seen.insert(t) {
            continue;
        }
        for (i, e) in edges.iter().enumerate() {
            if !broken.contains(&i) && e.child == t {
                stack.push(e.parent.as_str());
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fk(child: &str, parent: &str, deferrable: bool, nullable: bool) -> Fk {
        Fk { name: format!("{child}_{parent}"), child: child.into(), parent: parent.into(), cols: vec![("x".into(), "id".into())], deferrable, nullable, unique: false, declared: false, when: None }
    }

    #[test]
    fn section_names_are_unambiguous_and_read_back() {
        for (s, t) in [("public", "t"), ("a", "b.c"), ("a.b", "c"), ("x", "t#keys"), ("we\"ird", "Tab le"), ("", "e"), ("sch", "日本")] {
            let n = section_name(s, t);
            assert_eq!(split_section(&n), (s.to_string(), t.to_string()), "{n}");
        }
        assert_ne!(section_name("a", "b.c"), section_name("a.b", "c"));
        assert_ne!(section_name("public", "t#keys"), format!("{}#keys", section_name("public", "t")));
        assert_eq!(section_name("app", "events"), "app.events", "plain names stay as older archives wrote them");
    }

    #[test]
    fn a_reference_names_its_columns_plainly_or_quoted() {
        let mut t = Target::default();
        let col = |n: &str| Col { name: n.into(), ty: "bigint".into(), identity: false, always: false, default: None, not_null: false, generated: false };
        t.cols.insert("public.notes".into(), vec![col("organizations_id.v2"), col("x=y")]);
        t.cols.insert(section_name("app", "orgs.v2"), vec![col("id")]);
        let r = parse_reference("notes.\"organizations_id.v2\"=\"orgs.v2\".id", &t).expect("quoted names");
        assert_eq!((r.child.as_str(), r.cols[0].0.as_str(), r.parent.as_str()), ("public.notes", "organizations_id.v2", "app.\"orgs.v2\""));
        let r = parse_reference("public.notes.\"x=y\"=app.\"orgs.v2\".id", &t).expect("an = inside quotes");
        assert_eq!(r.cols[0].0, "x=y");
        let e = parse_reference("notes.nothing=orgs.id", &t).expect_err("unknown");
        assert!(e.message.contains("notes.nothing=orgs.id"), "{}", e.message);
    }

    #[test]
    fn a_cycle_is_broken_at_a_nullable_key_never_by_name() {
        // organisations → settings → (nullable) emails → organisations; names would put "emails" first.
        let tables: Vec<String> = ["emails", "organisations", "settings"].iter().map(|s| s.to_string()).collect();
        let fks = vec![fk("organisations", "settings", false, false), fk("settings", "emails", false, true), fk("emails", "organisations", false, false)];
        let o = write_order(&tables, &fks).expect("an order");
        assert_eq!(o.late.len(), 1);
        assert_eq!(o.late[0].child, "settings", "the nullable key is the one left for later");
        let pos = |t: &str| o.tables.iter().position(|x| x == t).expect("placed");
        assert!(pos("settings") < pos("organisations") && pos("emails") > pos("organisations"));
    }

    #[test]
    fn a_deferrable_key_is_preferred_and_a_cycle_of_not_null_keys_is_held_with_a_stand_in() {
        let tables: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let o = write_order(&tables, &[fk("a", "b", false, true), fk("b", "a", true, false)]).expect("an order");
        assert!(o.late[0].deferrable);
        let o = write_order(&tables, &[fk("a", "b", false, false), fk("b", "a", false, false)]).expect("an order");
        assert_eq!(o.late.len(), 1);
        assert!(WriteOrder::held(&o.late[0]) && stand_in(&o.late[0], "x").contains("LIMIT 1"), "a NOT NULL key gets an existing parent row as stand-in");
    }
}
