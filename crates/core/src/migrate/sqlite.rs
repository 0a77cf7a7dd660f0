//! Tenant migrations on SQLite: copy, merge, export and import — and a tenant of a backup
//! restored as a copy — with the same steps and the same report as on PostgreSQL ([`super`]):
//! the source's rows read in one snapshot (the tenants row, every table with the tenant column,
//! every table reached from those through foreign keys), the transformation rules, the mapping
//! onto the target's tables, then the write in ONE transaction: new keys (a rowid key takes the
//! next free number, a key of UUIDs fresh UUIDs), foreign keys rewritten to the new keys, the
//! tenant column set, unique conflicts resolved per table, rows breaking NOT NULL or lacking a
//! parent set aside with the reason. Validation is the same run rolled back.
//!
//! SQLite's tables are small next to a server's, so the rows are held in memory between the
//! read and the write (a migration of a tenant larger than memory wants PostgreSQL). Values
//! keep their storage class (integer, real, text, blob) from the read to the write; a text value
//! read from a file into a column of integer or real affinity must be a number of that kind, or
//! the row is set aside as a type error (SQLite itself would store the text).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AssertSqlSafe, Connection as _, SqliteConnection};

use super::rules::{self, Action, FakeKind, Op, Rule};
use super::{portable, rejected_error, ExportFormat, MigrationReport, MigrationSpec, MigrationType, Problem, Resolution, TableMapping, TableReport};
use crate::error::{Error, ErrorCode, Result};
use crate::source::quote_ident as qi;
use crate::source::sqlite::{self as lite, db_err, RemoveOnDrop, V};
use crate::source::{CancelToken, Progress, ProgressSink};

/// A row's values at some columns, as text (see [`key_of`]).
type Key = Vec<Option<String>>;

/// Rows of a table found by their values at some columns: (table, columns) → key → row.
type KeyIndex = HashMap<(String, Vec<String>), HashMap<Key, usize>>;

/// Keys compared as text: `5` the integer and `'5'` the text point at the same row, as SQLite's
/// foreign keys compare them under the parent column's affinity.
fn key_of(values: &[&V]) -> Key {
    values.iter().map(|v| v.text()).collect()
}

#[derive(Debug, Clone)]
struct Col {
    name: String,
    decl: String,
    not_null: bool,
    has_default: bool,
}

#[derive(Debug, Clone)]
struct Fk {
    cols: Vec<String>,
    parent: String,
    parent_cols: Vec<String>,
}

#[derive(Debug, Clone)]
struct Table {
    name: String,
    /// The columns a row is written with (generated and hidden columns left out).
    cols: Vec<Col>,
    pk: Vec<String>,
    fks: Vec<Fk>,
    /// Unique indexes and constraints over plain columns (the primary key among them).
    uniques: Vec<Vec<String>>,
}

impl Table {
    fn col(&self, c: &str) -> Option<&Col> {
        self.cols.iter().find(|x| x.name == c)
    }
    /// `INTEGER PRIMARY KEY`: the rowid itself, numbered by SQLite.
    fn rowid_key(&self) -> bool {
        self.pk.len() == 1 && self.col(&self.pk[0]).is_some_and(|c| c.decl.eq_ignore_ascii_case("integer"))
    }
}

type Schema = BTreeMap<String, Table>;

#[derive(Clone, Copy, PartialEq)]
enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

/// SQLite's rules for a declared type's affinity (section 3.1 of "Datatypes In SQLite").
fn affinity(decl: &str) -> Affinity {
    let d = decl.to_ascii_uppercase();
    if d.contains("INT") {
        Affinity::Integer
    } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
        Affinity::Text
    } else if d.is_empty() || d.contains("BLOB") {
        Affinity::Blob
    } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
        Affinity::Real
    } else {
        Affinity::Numeric
    }
}

/// The tables of the database on `conn`, with their keys, foreign keys and unique indexes.
async fn read_schema(conn: &mut SqliteConnection, path: &Path) -> Result<Schema> {
    let fail = |what: &str| db_err(path, what);
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .fetch_all(&mut *conn)
        .await
        .map_err(fail("read its tables"))?;
    let mut out = Schema::new();
    for n in names {
        let cols: Vec<(String, String, bool, bool, i64, i64)> =
            sqlx::query_as("SELECT name, type, \"notnull\" <> 0, dflt_value IS NOT NULL, pk, hidden FROM pragma_table_xinfo(?) ORDER BY cid").bind(&n).fetch_all(&mut *conn).await.map_err(fail("read its columns"))?;
        let mut pk: Vec<(i64, String)> = cols.iter().filter(|c| c.4 > 0).map(|c| (c.4, c.0.clone())).collect();
        pk.sort();
        let pk: Vec<String> = pk.into_iter().map(|(_, c)| c).collect();
        let fk_rows: Vec<(i64, String, String, Option<String>)> =
            sqlx::query_as("SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?) ORDER BY id, seq").bind(&n).fetch_all(&mut *conn).await.map_err(fail("read its foreign keys"))?;
        let mut fks: BTreeMap<i64, Fk> = BTreeMap::new();
        for (id, parent, from, to) in fk_rows {
            let fk = fks.entry(id).or_insert_with(|| Fk { cols: Vec::new(), parent, parent_cols: Vec::new() });
            fk.cols.push(from);
            fk.parent_cols.extend(to);
        }
        let indexes: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_index_list(?) WHERE \"unique\" <> 0 AND partial = 0").bind(&n).fetch_all(&mut *conn).await.map_err(fail("read its indexes"))?;
        let mut uniques = Vec::new();
        for i in indexes {
            let on: Vec<Option<String>> = sqlx::query_scalar("SELECT name FROM pragma_index_info(?) ORDER BY seqno").bind(&i).fetch_all(&mut *conn).await.map_err(fail("read its indexes"))?;
            // An index on an expression has no name for that part: it is not compared here.
            if on.iter().all(Option::is_some) && !on.is_empty() {
                uniques.push(on.into_iter().flatten().collect::<Vec<_>>());
            }
        }
        if !pk.is_empty() && !uniques.contains(&pk) {
            uniques.push(pk.clone());
        }
        let cols: Vec<Col> = cols.into_iter().filter(|c| c.5 == 0).map(|(name, decl, not_null, has_default, _, _)| Col { name, decl, not_null, has_default }).collect();
        out.insert(n.clone(), Table { name: n, cols, pk, fks: fks.into_values().collect(), uniques });
    }
    // A foreign key naming no columns of its parent points at the parent's primary key.
    let pks: HashMap<String, Vec<String>> = out.iter().map(|(n, t)| (n.clone(), t.pk.clone())).collect();
    for t in out.values_mut() {
        for fk in &mut t.fks {
            if fk.parent_cols.len() != fk.cols.len() {
                fk.parent_cols = pks.get(&fk.parent).cloned().unwrap_or_default();
            }
        }
        t.fks.retain(|fk| fk.parent_cols.len() == fk.cols.len());
    }
    Ok(out)
}

/// Rows of one table as read (from a database, a backup or files).
#[derive(Debug, Clone)]
struct Src {
    name: String,
    cols: Vec<String>,
    /// The declared types, when known.
    types: Vec<Option<String>>,
    rows: Vec<Vec<V>>,
}

/// The tenants' rows of every tenant table of the database on `conn` (read in the transaction
/// the caller holds, or in autocommit on a file nothing else writes), nearest tables first.
async fn read_tenants(conn: &mut SqliteConnection, path: &Path, schema: &Schema, tenants: &[String], tenant_column: &str, tenants_table: &str, cancel: &CancelToken) -> Result<Vec<Src>> {
    let tables = lite::tenant_tables(conn, path, tenant_column, tenants_table).await?;
    sqlx::raw_sql("DROP TABLE IF EXISTS temp._sh_tenant; CREATE TEMP TABLE _sh_tenant (id)").execute(&mut *conn).await.map_err(db_err(path, "prepare the read"))?;
    for t in tenants {
        sqlx::query("INSERT INTO temp._sh_tenant VALUES (?)").bind(t).execute(&mut *conn).await.map_err(db_err(path, "prepare the read"))?;
    }
    let mut out = Vec::new();
    for tt in &tables {
        cancel.check()?;
        let Some(t) = schema.get(&tt.name) else { continue };
        let cols: Vec<String> = t.cols.iter().map(|c| c.name.clone()).collect();
        let list = cols.iter().map(|c| format!("t.{}", qi(c))).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT {list} FROM main.{} t WHERE {} ORDER BY t.rowid", qi(&t.name), tt.predicate.replace("{s}", "main"));
        // A table WITHOUT ROWID has none: its key orders it.
        let sql = if t.pk.is_empty() || !without_rowid(conn, path, &t.name).await? { sql } else { sql.replace("ORDER BY t.rowid", &format!("ORDER BY {}", t.pk.iter().map(|c| format!("t.{}", qi(c))).collect::<Vec<_>>().join(", "))) };
        let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *conn).await.map_err(db_err(path, &format!("read the tenant's rows of {}", t.name)))?;
        let rows: Vec<Vec<V>> = rows.iter().map(|r| (0..cols.len()).map(|i| V::of(r, i)).collect::<Result<Vec<_>>>()).collect::<Result<_>>()?;
        if tt.name == tenants_table {
            let found: BTreeSet<String> = rows.iter().filter_map(|r| t.pk.first().and_then(|k| cols.iter().position(|c| c == k)).and_then(|i| r[i].text())).collect();
            if let Some(missing) = tenants.iter().find(|id| !found.contains(*id)) {
                return Err(Error::not_found(format!("tenant {missing} does not exist in {} (its {tenants_table} table has no row with that id)", path.display())));
            }
        }
        out.push(Src { name: t.name.clone(), types: t.cols.iter().map(|c| Some(c.decl.clone()).filter(|d| !d.is_empty())).collect(), cols, rows });
    }
    let _ = sqlx::raw_sql("DROP TABLE IF EXISTS temp._sh_tenant").execute(&mut *conn).await;
    Ok(out)
}

async fn without_rowid(conn: &mut SqliteConnection, path: &Path, table: &str) -> Result<bool> {
    let sql: Option<String> = sqlx::query_scalar("SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = ?").bind(table).fetch_optional(&mut *conn).await.map_err(db_err(path, "read its schema"))?.flatten();
    Ok(sql.is_some_and(|s| s.to_ascii_uppercase().replace(char::is_whitespace, "").contains("WITHOUTROWID")))
}

/// Opens a SQLite file that must exist.
async fn open(path: &Path, read_only: bool) -> Result<SqliteConnection> {
    if !path.is_file() {
        return Err(Error::not_found(format!("the SQLite database {} does not exist: check the connection's file", path.display())));
    }
    let opts = SqliteConnectOptions::new().filename(path).read_only(read_only).create_if_missing(false).foreign_keys(false).busy_timeout(std::time::Duration::from_secs(10));
    SqliteConnection::connect_with(&opts).await.map_err(db_err(path, "open it"))
}

/// Reads the tenants of another SQLite file in one read transaction.
async fn read_file(path: &Path, tenants: &[String], tenant_column: &str, tenants_table: &str, cancel: &CancelToken) -> Result<(Vec<Src>, Schema)> {
    let mut conn = open(path, true).await?;
    sqlx::query("BEGIN").execute(&mut conn).await.map_err(db_err(path, "start a read transaction"))?;
    let schema = read_schema(&mut conn, path).await?;
    let srcs = read_tenants(&mut conn, path, &schema, tenants, tenant_column, tenants_table, cancel).await;
    let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
    let _ = conn.close().await;
    Ok((srcs?, schema))
}

// ---- Transformation rules, in Rust over the rows (the same results as the SQL of [`rules`]).

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::parse_str(s).is_ok() && s.as_bytes()[8] == b'-'
}

fn sha_hex(salt: &str, v: &str) -> String {
    hex::encode(Sha256::digest(format!("{salt}{v}").as_bytes()))
}

/// The deterministic 31-bit number `rules` derives from a salt and a value.
fn h31(salt: &str, v: &str) -> u64 {
    u64::from_str_radix(&sha_hex(salt, v)[..8], 16).unwrap_or_default() & 0x7fff_ffff
}

fn fake(kind: FakeKind, salt: &str, v: &str) -> String {
    let n = h31(salt, v) as usize;
    let first = rules::FIRST[n % rules::FIRST.len()];
    let last = rules::LAST[(n / rules::FIRST.len()) % rules::LAST.len()];
    match kind {
        FakeKind::FirstName => first.into(),
        FakeKind::LastName => last.into(),
        FakeKind::Name => format!("{first} {last}"),
        FakeKind::Email => format!("{}.{}{}@example.com", first.to_lowercase(), last.to_lowercase(), n % 1000),
        FakeKind::Phone => format!("+1-555-{:03}-{:04}", (n / 10000) % 1000, n % 10000),
    }
}

fn mask(v: &str) -> String {
    let chars: Vec<char> = v.chars().collect();
    if chars.len() <= 2 {
        return "*".repeat(chars.len());
    }
    format!("{}{}{}", chars[0], "*".repeat(chars.len() - 2), chars[chars.len() - 1])
}

fn random_from(alphabet: &[u8], n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..n).map(|_| alphabet[rng.random_range(0..alphabet.len())] as char).collect()
}

/// A fresh number of `digits` digits (the first not 0), the `n`th of a table's rows counted from
/// `offset`: distinct for distinct `n` (as on PostgreSQL, where the rows' numbers are counted from
/// one random offset; numbers drawn one by one met each other). Up to 18 digits,
/// 10^(d-1) + (offset + n) mod 9·10^(d-1); longer ones end in (offset + n) mod 10^18 on 18 digits
/// after random leading digits.
fn counted(digits: usize, offset: u64, n: u64) -> String {
    let at = offset.wrapping_add(n);
    if digits <= 18 {
        let base = 10u64.pow(u32::try_from(digits.saturating_sub(1)).unwrap_or(0));
        return (base + at % (9 * base)).to_string();
    }
    format!("{}{}{:018}", random_from(b"123456789", 1), random_from(b"0123456789", digits - 19), at % 1_000_000_000_000_000_000)
}

/// A fresh value of the form of `v` (see [`Action::Regenerate`]); a number is the `n`th counted
/// from `offset` ([`counted`]).
fn regenerate(v: &str, template: Option<&str>, decl: Option<&str>, (offset, n): (u64, u64)) -> String {
    let hex32 = || uuid::Uuid::new_v4().simple().to_string();
    if let Some(t) = template {
        return t.replace("{value}", v).replace("{uuid}", &uuid::Uuid::new_v4().to_string()).replace("{hex}", &hex32());
    }
    if is_uuid(v) {
        return uuid::Uuid::new_v4().to_string();
    }
    let integer_column = decl.is_some_and(|d| affinity(d) == Affinity::Integer);
    let digits_only = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let number = if integer_column { digits_only(v.trim_start_matches('-')) } else { digits_only(v) && !v.starts_with('0') };
    if number {
        // As many digits as a 32-bit integer always holds (a SQLite integer is 64-bit, but the
        // application may read it into less), at least nine in text.
        let digits = if integer_column { 9 } else { v.len().max(9) };
        return counted(digits, offset, n);
    }
    let hex_lower = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let hex_upper = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
    if hex_lower {
        return random_from(b"0123456789abcdef", v.len());
    }
    if hex_upper {
        return random_from(b"0123456789ABCDEF", v.len());
    }
    let body = v.trim_end_matches('=');
    if v.len() >= 16 && !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/_-".contains(&b)) {
        return format!("{}{}", random_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", body.len()), "=".repeat(v.len() - body.len()));
    }
    format!("{v}-{}", &hex32()[..6])
}

/// PostgreSQL's replacement text (`\1`, `\&`) in the regex crate's (`${1}`, `${0}`).
fn replacement(r: &str) -> String {
    let mut out = String::new();
    let mut chars = r.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('\\', Some(d)) if d.is_ascii_digit() => {
                out.push_str(&format!("${{{d}}}"));
                chars.next();
            }
            ('\\', Some('&')) => {
                out.push_str("${0}");
                chars.next();
            }
            ('\\', Some('\\')) => {
                out.push('\\');
                chars.next();
            }
            ('$', _) => out.push_str("$$"),
            _ => out.push(c),
        }
    }
    out
}

fn regex(rule: &Rule, pattern: &str) -> Result<regex::Regex> {
    regex::Regex::new(pattern).map_err(|e| Error::validation(format!("rule {} on {}.{}: the pattern is not a valid regular expression: {e}", rules::name(&rule.action), rule.table, rule.column)))
}

/// `a op b`, numbers compared as numbers when the column is not text.
fn compare(a: &V, op: Op, b: &str, numeric: bool) -> bool {
    let Some(a) = a.text() else { return false };
    let ord = match (numeric, a.parse::<f64>(), b.parse::<f64>()) {
        (true, Ok(x), Ok(y)) => x.partial_cmp(&y),
        _ => Some(a.as_str().cmp(b)),
    };
    match op {
        Op::Eq => ord == Some(std::cmp::Ordering::Equal),
        Op::Ne => ord != Some(std::cmp::Ordering::Equal),
        Op::Lt => ord == Some(std::cmp::Ordering::Less),
        Op::Gt => ord == Some(std::cmp::Ordering::Greater),
        _ => false,
    }
}

/// Applies the rules in order to the rows read.
fn apply_rules(srcs: &mut [Src], rules_given: &[Rule]) -> Result<()> {
    for rule in rules_given {
        let names: Vec<String> = srcs.iter().map(|s| s.name.clone()).collect();
        let s = srcs
            .iter_mut()
            .find(|s| s.name == rule.table.trim() || super::stage::bare(&s.name) == super::stage::bare(rule.table.trim()))
            .ok_or_else(|| Error::validation(format!("rule on {}: the source has no such table (it has {})", rule.table, names.join(", "))))?;
        let typed: Vec<(String, Option<String>)> = s.cols.iter().cloned().zip(s.types.iter().cloned()).collect();
        rules::check(rule, &rules::Columns { table: &s.name, cols: &typed })?;
        let at = |c: &str| s.cols.iter().position(|x| x == c).unwrap_or(0);
        let i = at(&rule.column);
        let decl = s.types[i].clone();
        let each = |rows: &mut Vec<Vec<V>>, f: &dyn Fn(&str) -> String| {
            for r in rows.iter_mut() {
                if let Some(t) = r[i].text() {
                    r[i] = V::Text(f(&t));
                }
            }
        };
        match &rule.action {
            Action::Set { value } => s.rows.iter_mut().for_each(|r| r[i] = value.clone().map(V::Text).unwrap_or(V::Null)),
            Action::Copy { from } => {
                let j = at(from);
                s.rows.iter_mut().for_each(|r| r[i] = r[j].clone());
            }
            Action::Lower => each(&mut s.rows, &|t| t.to_lowercase()),
            Action::Upper => each(&mut s.rows, &|t| t.to_uppercase()),
            Action::Trim => each(&mut s.rows, &|t| t.trim_matches(' ').to_string()),
            Action::Replace { pattern, replacement: with } => {
                let re = regex(rule, pattern)?;
                let with = replacement(with);
                each(&mut s.rows, &|t| re.replace_all(t, with.as_str()).into_owned());
            }
            Action::Hash { salt } => each(&mut s.rows, &|t| sha_hex(salt, t)),
            Action::Mask => each(&mut s.rows, &mask),
            Action::Fake { kind, salt } => each(&mut s.rows, &|t| fake(*kind, salt, t)),
            Action::Null => s.rows.iter_mut().for_each(|r| r[i] = V::Null),
            Action::Regenerate { template } => {
                // One random offset for the table's numbers, each row's counted from it.
                let offset = { use rand::Rng; rand::rng().random_range(0..900_000_000_000_000_000u64) };
                for (n, r) in (1u64..).zip(s.rows.iter_mut()) {
                    if let Some(t) = r[i].text() {
                        let fresh = regenerate(&t, template.as_deref(), decl.as_deref(), (offset, n));
                        r[i] = match (&r[i], fresh.parse::<i64>()) {
                            (V::Int(_), Ok(n)) => V::Int(n),
                            _ => V::Text(fresh),
                        };
                    }
                }
            }
            Action::DropRow { op, value } => {
                let numeric = decl.as_deref().is_some_and(|d| !rules::is_text(d) && !d.is_empty());
                let re = match (op, value) {
                    (Op::Matches, Some(p)) => Some(regex(rule, p)?),
                    _ => None,
                };
                let v = value.clone().unwrap_or_default();
                s.rows.retain(|r| {
                    let drop = match op {
                        Op::IsNull => r[i].is_null(),
                        Op::NotNull => !r[i].is_null(),
                        Op::Contains => r[i].text().is_some_and(|t| t.contains(&v)),
                        Op::Matches => r[i].text().is_some_and(|t| re.as_ref().is_some_and(|re| re.is_match(&t))),
                        other => compare(&r[i], *other, &v, numeric),
                    };
                    !drop
                });
            }
        }
    }
    Ok(())
}

// ---- Mapping.

fn bare(name: &str) -> String {
    super::stage::bare(name)
}

/// The target table a source table stands for: the same name, or the same bare name (an export
/// of PostgreSQL names its tables `public.users`).
fn target_table(target: &Schema, source: &str) -> Option<String> {
    if target.contains_key(source) {
        return Some(source.to_string());
    }
    target.keys().find(|t| bare(t) == bare(source)).cloned()
}

/// A mapping proposed from the names; what it cannot place is said in `lost`.
fn propose(srcs: &[Src], target: &Schema, lost: &mut Vec<String>) -> Vec<TableMapping> {
    let mut out = Vec::new();
    for s in srcs {
        let Some(t) = target_table(target, &s.name) else {
            lost.push(format!("{} has no table in the target (its {} rows are left out)", s.name, s.rows.len()));
            continue;
        };
        let drop: Vec<String> = s.cols.iter().filter(|c| target[&t].col(c).is_none()).cloned().collect();
        for c in &drop {
            lost.push(format!("{}.{c} has no column in the target's {t} (its values are left out)", s.name));
        }
        out.push(TableMapping { source: s.name.clone(), target: t, drop, ..Default::default() });
    }
    out
}

/// One row to write: its values as read (mapped onto the target's columns) and as written.
#[derive(Debug, Clone)]
struct OutRow {
    old: Vec<V>,
    new: Vec<V>,
    fate: Fate,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Insert,
    /// Not written: a problem names it (or the row it belongs to).
    Aside,
    /// Not written: the target's row stands for it (keep target, the merged tenant's row).
    Merged,
    /// The target's row took its values (take source).
    Updated,
}

/// A problem being counted: its kind, its message with `{n}` for the count, its columns.
struct Counted {
    kind: String,
    message: String,
    cols: Vec<String>,
    count: i64,
    samples: Vec<String>,
}

struct Out {
    cols: Vec<String>,
    rows: Vec<OutRow>,
    report: TableReport,
    /// Problems being counted.
    problems: Vec<Counted>,
}

impl Out {
    fn at(&self, c: &str) -> Option<usize> {
        self.cols.iter().position(|x| x == c)
    }
    fn problem(&mut self, kind: &str, message: String, cols: &[String], sample: String) {
        match self.problems.iter_mut().find(|p| p.kind == kind && p.message == message) {
            Some(p) => {
                p.count += 1;
                if p.samples.len() < 5 {
                    p.samples.push(sample);
                }
            }
            None => self.problems.push(Counted { kind: kind.into(), message, cols: cols.to_vec(), count: 1, samples: vec![sample] }),
        }
    }
    fn sample(&self, row: usize, cols: &[String]) -> String {
        cols.iter().map(|c| format!("{c}={}", self.at(c).and_then(|i| self.rows[row].new[i].text()).unwrap_or_else(|| "NULL".into()))).collect::<Vec<_>>().join(", ")
    }
}

/// Each written table's rows mapped onto its columns; values that do not fit a column's
/// affinity make `type_error` problems.
fn map_rows(srcs: &[Src], target: &Schema, mapping: &[TableMapping]) -> Result<BTreeMap<String, Out>> {
    let mut outs: BTreeMap<String, Out> = BTreeMap::new();
    for m in mapping {
        let Some(s) = srcs.iter().find(|s| s.name == m.source || bare(&s.name) == bare(&m.source)) else {
            return Err(Error::validation(format!("the mapping names the source table {}, which the source does not have", m.source)));
        };
        let t = target_table(target, &m.target).ok_or_else(|| Error::validation(format!("the mapping names the target table {}, which the target does not have", m.target)))?;
        if outs.contains_key(&t) {
            return Err(Error::validation(format!("two source tables are mapped onto {t}: map one source table onto each target table")));
        }
        let table = &target[&t];
        let mut pairs: Vec<(Option<usize>, String)> = Vec::new();
        for (i, c) in s.cols.iter().enumerate() {
            if m.drop.contains(c) {
                continue;
            }
            let to = m.columns.get(c).cloned().unwrap_or_else(|| c.clone());
            if table.col(&to).is_none() {
                if m.columns.contains_key(c) {
                    return Err(Error::validation(format!("the mapping puts {}.{c} into {t}.{to}, which does not exist", s.name)));
                }
                continue;
            }
            if pairs.iter().any(|(_, x)| x == &to) {
                return Err(Error::validation(format!("the mapping writes {t}.{to} twice")));
            }
            pairs.push((Some(i), to));
        }
        let unfilled: Vec<&String> = m.defaults.keys().filter(|c| !pairs.iter().any(|(_, x)| x == *c)).collect();
        for c in unfilled {
            if table.col(c).is_none() {
                return Err(Error::validation(format!("the mapping gives a default for {t}.{c}, which does not exist")));
            }
            pairs.push((None, c.clone()));
        }
        let mut out = Out { cols: pairs.iter().map(|(_, c)| c.clone()).collect(), rows: Vec::new(), report: TableReport::new(&t), problems: Vec::new() };
        out.report.source_table = Some(s.name.clone());
        out.report.rows_read = s.rows.len() as u64;
        for r in &s.rows {
            let mut vals = Vec::with_capacity(pairs.len());
            let mut bad: Option<(String, String)> = None;
            for (from, to) in &pairs {
                let v = match from {
                    Some(i) => r[*i].clone(),
                    None => V::Text(m.defaults[to].clone()),
                };
                let col = table.col(to).expect("checked above");
                let v = blob_of(v, &col.decl);
                match fit(v, affinity(&col.decl)) {
                    Ok(v) => vals.push(v),
                    Err(v) => {
                        bad.get_or_insert((to.clone(), format!("{} {}", col.decl, v.text().unwrap_or_default())));
                        vals.push(v);
                    }
                }
            }
            out.rows.push(OutRow { old: vals.clone(), new: vals, fate: Fate::Insert });
            if let Some((c, what)) = bad {
                let n = out.rows.len() - 1;
                out.rows[n].fate = Fate::Aside;
                let decl = table.col(&c).map(|x| x.decl.clone()).unwrap_or_default();
                out.problem("type_error", format!("{{n}} values of {}.{c} are not valid {decl} for {t}.{c}", s.name), std::slice::from_ref(&c), what);
            }
        }
        outs.insert(t, out);
    }
    Ok(outs)
}

/// Bytes written as text the way the portable export writes them (`\x` and hex, PostgreSQL's
/// bytea) become bytes again in a column declared BLOB.
fn blob_of(v: V, decl: &str) -> V {
    match &v {
        V::Text(t) if decl.to_ascii_uppercase().contains("BLOB") => match t.strip_prefix("\\x").map(hex::decode) {
            Some(Ok(bytes)) => V::Blob(bytes),
            _ => v,
        },
        _ => v,
    }
}

/// A value made to fit a column's affinity: text holding a number becomes that number in an
/// integer, real or numeric column; text that is not one is refused (`Err`) there.
fn fit(v: V, a: Affinity) -> std::result::Result<V, V> {
    let V::Text(s) = &v else { return Ok(v) };
    let t = s.trim();
    match a {
        Affinity::Integer | Affinity::Numeric => match (t.parse::<i64>(), t.parse::<f64>()) {
            (Ok(i), _) => Ok(V::Int(i)),
            (_, Ok(f)) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(V::Int(f as i64)),
            (_, Ok(f)) if f.is_finite() => Ok(V::Real(f)),
            _ if a == Affinity::Numeric && matches!(t, "true" | "false" | "t" | "f") => Ok(V::Int(i64::from(t.starts_with('t')))),
            _ if a == Affinity::Numeric => Ok(v),
            _ => Err(v),
        },
        Affinity::Real => match t.parse::<f64>() {
            Ok(f) => Ok(V::Real(f)),
            Err(_) => Err(v),
        },
        Affinity::Text | Affinity::Blob => Ok(v),
    }
}

/// Parents first; the tables of a cycle after the rest, by name (their references to rows
/// written later are set once those rows have their keys).
fn order(outs: &BTreeMap<String, Out>, target: &Schema) -> Vec<String> {
    let mut left: BTreeSet<String> = outs.keys().cloned().collect();
    let mut out = Vec::new();
    loop {
        let ready: Vec<String> = left
            .iter()
            .filter(|t| target[*t].fks.iter().all(|fk| fk.parent == **t || !left.contains(&fk.parent)))
            .cloned()
            .collect();
        if ready.is_empty() {
            break;
        }
        for t in ready {
            left.remove(&t);
            out.push(t);
        }
    }
    out.extend(left);
    out
}

/// The next free number of a rowid key (above the largest ever given, for AUTOINCREMENT).
async fn next_rowid(tx: &mut SqliteConnection, path: &Path, table: &str, col: &str) -> Result<i64> {
    let max: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!("SELECT max({}) FROM main.{}", qi(col), qi(table)))).fetch_one(&mut *tx).await.map_err(db_err(path, "find the next key"))?;
    // (No sqlite_sequence table: no AUTOINCREMENT table has had a row yet.)
    let seq: Option<i64> = sqlx::query_scalar::<_, i64>("SELECT seq FROM main.sqlite_sequence WHERE name = ?").bind(table).fetch_optional(&mut *tx).await.unwrap_or_default();
    Ok(max.unwrap_or(0).max(seq.unwrap_or(0)) + 1)
}

/// What the writer needs.
struct Writer<'a> {
    path: &'a Path,
    target: &'a Schema,
    tenant_column: &'a str,
    tenants_table: &'a str,
    tenant: String,
    existing: bool,
    new_name: Option<String>,
    conflicts: &'a BTreeMap<String, Resolution>,
    suffix: String,
}

impl Writer<'_> {
    fn tenant_value(&self, decl: &str) -> V {
        match (affinity(decl), self.tenant.parse::<i64>()) {
            (Affinity::Integer | Affinity::Numeric, Ok(n)) => V::Int(n),
            _ => V::Text(self.tenant.clone()),
        }
    }

    /// Finds a target row equal to `values` on `cols`: all its written columns' values.
    async fn target_row(&self, tx: &mut SqliteConnection, t: &str, cols: &[String], values: &[&V], select: &[String]) -> Result<Option<Vec<V>>> {
        let cond = cols.iter().map(|c| format!("{} = ?", qi(c))).collect::<Vec<_>>().join(" AND ");
        let list = select.iter().map(|c| qi(c)).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT {list} FROM main.{} WHERE {cond} LIMIT 1", qi(t));
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for v in values {
            q = v.bind(q);
        }
        let row = q.fetch_optional(&mut *tx).await.map_err(db_err(self.path, &format!("compare with the rows of {t}")))?;
        row.map(|r| (0..select.len()).map(|i| V::of(&r, i)).collect::<Result<Vec<_>>>()).transpose()
    }

    /// Decides every row's final values and fate, parents first; nothing is written yet.
    async fn prepare(&self, tx: &mut SqliteConnection, order: &[String], outs: &mut BTreeMap<String, Out>, cancel: &CancelToken) -> Result<Vec<(String, usize, usize)>> {
        let mut index: KeyIndex = HashMap::new();
        let mut pending: Vec<(String, usize, usize)> = Vec::new();
        let mut exists_cache: HashMap<(String, Vec<String>, Key), bool> = HashMap::new();
        for (pos, t) in order.iter().enumerate() {
            cancel.check()?;
            let table = &self.target[t];
            let mut out = outs.remove(t).expect("every ordered table has rows");
            let is_tenants = t == self.tenants_table;
            if is_tenants && !self.existing && out.rows.iter().filter(|r| r.fate != Fate::Aside).count() > 1 {
                return Err(Error::validation(format!("the source holds {} tenants in {t}: choose one tenant to copy or import", out.rows.len())));
            }
            // The tenant column, filled in where the source has none (a plain file's rows).
            if table.col(self.tenant_column).is_some() && out.at(self.tenant_column).is_none() {
                out.cols.push(self.tenant_column.to_string());
                for r in out.rows.iter_mut() {
                    r.old.push(V::Null);
                    r.new.push(V::Null);
                }
            }
            if let (Some(i), Some(col)) = (out.at(self.tenant_column), table.col(self.tenant_column)) {
                let v = self.tenant_value(&col.decl);
                out.rows.iter_mut().for_each(|r| r.new[i] = v.clone());
            }
            // Foreign keys: to the new keys of the rows they point at.
            for (k, fk) in table.fks.iter().enumerate() {
                let Some(at): Option<Vec<usize>> = fk.cols.iter().map(|c| out.at(c)).collect() else { continue };
                if fk.cols.iter().any(|c| c == self.tenant_column) && fk.parent == self.tenants_table {
                    continue;
                }
                let parent_written = outs.contains_key(&fk.parent) || (fk.parent == *t);
                let later = order.iter().position(|x| *x == fk.parent).is_some_and(|p| p >= pos);
                for r in 0..out.rows.len() {
                    if out.rows[r].fate == Fate::Aside {
                        continue;
                    }
                    // Matched on the values as read (the tenant column may be rewritten already).
                    let vals: Vec<&V> = at.iter().map(|i| &out.rows[r].old[*i]).collect();
                    if vals.iter().any(|v| v.is_null()) {
                        continue;
                    }
                    if fk.parent == self.tenants_table && !outs.contains_key(&fk.parent) && fk.parent != *t {
                        // The tenant's row is not in what is written (an import into a tenant).
                        let decl = self.target.get(&fk.parent).and_then(|p| p.col(&fk.parent_cols[0])).map(|c| c.decl.clone()).unwrap_or_default();
                        out.rows[r].new[at[0]] = self.tenant_value(&decl);
                        continue;
                    }
                    if parent_written && later {
                        pending.push((t.clone(), r, k));
                        continue;
                    }
                    let key = key_of(&vals);
                    let found = index.get(&(fk.parent.clone(), fk.parent_cols.clone())).and_then(|ix| ix.get(&key)).copied();
                    match (found, parent_written) {
                        (Some(p), _) => {
                            let (fate, new) = self.parent_row(outs, fk, p);
                            if fate == Fate::Aside {
                                out.rows[r].fate = Fate::Aside;
                                out.report.notes.push(format!("rows left out with the {} rows they belong to", fk.parent));
                            } else {
                                for (j, i) in at.iter().enumerate() {
                                    out.rows[r].new[*i] = new[j].clone();
                                }
                            }
                        }
                        _ => {
                            // A row outside what is written: it must be in the target.
                            let cache_key = (fk.parent.clone(), fk.parent_cols.clone(), key.clone());
                            let there = match exists_cache.get(&cache_key) {
                                Some(b) => *b,
                                None => {
                                    let b = self.target_row(tx, &fk.parent, &fk.parent_cols, &vals, &fk.parent_cols).await?.is_some();
                                    exists_cache.insert(cache_key, b);
                                    b
                                }
                            };
                            if !there {
                                let sample = out.sample(r, &fk.cols);
                                out.rows[r].fate = Fate::Aside;
                                out.problem("missing_parent", format!("{{n}} rows of {t} refer through {} to {} rows that neither the target nor the migration has", fk.cols.join(", "), fk.parent), &fk.cols, sample);
                            }
                        }
                    }
                }
            }
            self.own_keys(tx, t, &mut out).await?;
            self.reject_not_null(t, &mut out);
            self.resolve_conflicts(tx, t, &mut out).await?;
            // Index this table's rows by every column list a foreign key points at.
            for child in self.target.values() {
                for fk in child.fks.iter().filter(|fk| fk.parent == *t) {
                    let Some(at): Option<Vec<usize>> = fk.parent_cols.iter().map(|c| out.at(c)).collect() else { continue };
                    let ix = index.entry((t.clone(), fk.parent_cols.clone())).or_default();
                    for (i, r) in out.rows.iter().enumerate() {
                        ix.insert(key_of(&at.iter().map(|j| &r.old[*j]).collect::<Vec<_>>()), i);
                    }
                }
            }
            outs.insert(t.clone(), out);
        }
        Ok(pending)
    }

    /// The fate and the final values (at the foreign key's parent columns) of row `p` of
    /// `fk.parent`.
    fn parent_row(&self, outs: &BTreeMap<String, Out>, fk: &Fk, p: usize) -> (Fate, Vec<V>) {
        match outs.get(&fk.parent) {
            Some(o) => (o.rows[p].fate, fk.parent_cols.iter().map(|c| o.at(c).map(|i| o.rows[p].new[i].clone()).unwrap_or(V::Null)).collect()),
            None => (Fate::Aside, Vec::new()),
        }
    }

    /// New keys: the tenants row's key is the tenant; a rowid key the next free numbers; a key
    /// of UUIDs fresh UUIDs; an empty key (a plain file's) a number or a UUID.
    async fn own_keys(&self, tx: &mut SqliteConnection, t: &str, out: &mut Out) -> Result<()> {
        let table = &self.target[t];
        let fk_cols: BTreeSet<&str> = table.fks.iter().flat_map(|fk| fk.cols.iter().map(String::as_str)).collect();
        if t == self.tenants_table {
            if let Some(i) = table.pk.first().filter(|_| table.pk.len() == 1).and_then(|k| out.at(k)) {
                let v = self.tenant_value(&table.cols.iter().find(|c| c.name == table.pk[0]).map(|c| c.decl.clone()).unwrap_or_default());
                for r in out.rows.iter_mut() {
                    r.new[i] = v.clone();
                    if self.existing && r.fate != Fate::Aside {
                        r.fate = Fate::Merged;
                    }
                }
            }
            if let (Some(name), false, Some(i)) = (&self.new_name, self.existing, out.at("name")) {
                out.rows.iter_mut().for_each(|r| r.new[i] = V::Text(name.clone()));
            }
            if self.existing {
                out.report.rows_merged = out.rows.iter().filter(|r| r.fate == Fate::Merged).count() as u64;
            }
            return Ok(());
        }
        for key in &table.pk {
            let Some(i) = out.at(key) else { continue };
            if fk_cols.contains(key.as_str()) || key == self.tenant_column {
                continue;
            }
            let decl = table.col(key).map(|c| c.decl.clone()).unwrap_or_default();
            let integer = affinity(&decl) == Affinity::Integer;
            let all_uuids = out.rows.iter().any(|r| !r.new[i].is_null()) && out.rows.iter().all(|r| r.new[i].text().is_none_or(|s| is_uuid(&s)));
            if table.rowid_key() || (integer && out.rows.iter().any(|r| r.new[i].is_null())) {
                let mut next = next_rowid(tx, self.path, t, key).await?;
                for r in out.rows.iter_mut().filter(|r| table.rowid_key() || r.new[i].is_null()) {
                    r.new[i] = V::Int(next);
                    next += 1;
                }
            } else if all_uuids && table.pk.len() == 1 {
                out.rows.iter_mut().filter(|r| !r.new[i].is_null()).for_each(|r| r.new[i] = V::Text(uuid::Uuid::new_v4().to_string()));
            } else if !integer {
                out.rows.iter_mut().filter(|r| r.new[i].is_null()).for_each(|r| r.new[i] = V::Text(uuid::Uuid::new_v4().to_string()));
            }
        }
        Ok(())
    }

    fn reject_not_null(&self, t: &str, out: &mut Out) {
        let table = &self.target[t];
        for c in table.cols.iter().filter(|c| c.not_null && !(table.rowid_key() && table.pk[0] == c.name)) {
            let at = out.at(&c.name);
            if at.is_none() && c.has_default {
                continue;
            }
            for r in 0..out.rows.len() {
                if out.rows[r].fate != Fate::Insert || at.is_some_and(|i| !out.rows[r].new[i].is_null()) {
                    continue;
                }
                let sample = out.sample(r, &table.pk);
                out.rows[r].fate = Fate::Aside;
                out.problem("not_null", format!("{{n}} rows have no value for {t}.{}, which the target requires", c.name), std::slice::from_ref(&c.name), sample);
            }
        }
    }

    /// Rows equal to a target row (or to another row written) on a unique constraint.
    async fn resolve_conflicts(&self, tx: &mut SqliteConnection, t: &str, out: &mut Out) -> Result<()> {
        let table = &self.target[t];
        let rule = self.conflicts.get(t).or_else(|| self.conflicts.get("*")).copied().unwrap_or_default();
        let fk_cols: BTreeSet<&str> = table.fks.iter().flat_map(|fk| fk.cols.iter().map(String::as_str)).collect();
        for cols in &table.uniques {
            let Some(at): Option<Vec<usize>> = cols.iter().map(|c| out.at(c)).collect() else { continue };
            // The tenants row of a merge is the existing tenant's; fresh rowids meet nothing.
            if (t == self.tenants_table && self.existing) || (table.rowid_key() && *cols == table.pk) {
                continue;
            }
            let what = format!("({})", cols.join(", "));
            let mut seen: HashSet<Key> = HashSet::new();
            for r in 0..out.rows.len() {
                if out.rows[r].fate != Fate::Insert {
                    continue;
                }
                let vals: Vec<V> = at.iter().map(|i| out.rows[r].new[*i].clone()).collect();
                if vals.iter().any(V::is_null) {
                    continue;
                }
                let refs: Vec<&V> = vals.iter().collect();
                if let Some(theirs) = self.target_row(tx, t, cols, &refs, &out.cols).await? {
                    match rule {
                        Resolution::Stop => {
                            let sample = out.sample(r, cols);
                            out.rows[r].fate = Fate::Aside;
                            out.problem("unique_conflict", format!("{{n}} rows equal a target row on {what}: choose keep target, take source or keep both for {t}"), cols, sample);
                            continue;
                        }
                        Resolution::KeepTarget => {
                            out.rows[r].new = theirs;
                            out.rows[r].fate = Fate::Merged;
                            out.report.rows_merged += 1;
                            continue;
                        }
                        Resolution::TakeSource => {
                            let keep: Vec<usize> = (0..out.cols.len()).filter(|i| !table.pk.contains(&out.cols[*i]) && out.cols[*i] != self.tenant_column).collect();
                            let key: Vec<String> = if table.pk.is_empty() { cols.clone() } else { table.pk.clone() };
                            let key_at: Vec<usize> = key.iter().filter_map(|c| out.at(c)).collect();
                            if !keep.is_empty() && key_at.len() == key.len() {
                                let set = keep.iter().map(|i| format!("{} = ?", qi(&out.cols[*i]))).collect::<Vec<_>>().join(", ");
                                let on = key.iter().map(|c| format!("{} = ?", qi(c))).collect::<Vec<_>>().join(" AND ");
                                let sql = format!("UPDATE main.{} SET {set} WHERE {on}", qi(t));
                                let mut q = sqlx::query(AssertSqlSafe(sql));
                                for i in &keep {
                                    q = out.rows[r].new[*i].bind(q);
                                }
                                for i in &key_at {
                                    q = theirs[*i].bind(q);
                                }
                                q.execute(&mut *tx).await.map_err(db_err(self.path, &format!("give the target's row of {t} the source's values")))?;
                            }
                            let mut merged = out.rows[r].new.clone();
                            for i in &key_at {
                                merged[*i] = theirs[*i].clone();
                            }
                            out.rows[r].new = merged;
                            out.rows[r].fate = Fate::Updated;
                            out.report.rows_updated += 1;
                            continue;
                        }
                        Resolution::KeepBoth => {
                            let Some(ci) = cols.iter().position(|c| !fk_cols.contains(c.as_str()) && c != self.tenant_column && table.col(c).is_some_and(|x| affinity(&x.decl) == Affinity::Text || x.decl.is_empty())) else {
                                let sample = out.sample(r, cols);
                                out.rows[r].fate = Fate::Aside;
                                out.problem("unique_conflict", format!("{{n}} rows equal a target row on {what}, which has no text column to add the suffix to: choose keep target or take source for {t}"), cols, sample);
                                continue;
                            };
                            let i = at[ci];
                            let renamed = format!("{}{}", out.rows[r].new[i].text().unwrap_or_default(), self.suffix);
                            out.rows[r].new[i] = V::Text(renamed);
                            let vals: Vec<&V> = at.iter().map(|j| &out.rows[r].new[*j]).collect();
                            if self.target_row(tx, t, cols, &vals, cols).await?.is_some() {
                                let sample = out.sample(r, cols);
                                out.rows[r].fate = Fate::Aside;
                                out.problem("unique_conflict", format!("{{n}} rows of {what} still equal a target row after adding the suffix {:?}", self.suffix), cols, sample);
                                continue;
                            }
                            out.report.rows_renamed += 1;
                        }
                    }
                }
                let now = key_of(&at.iter().map(|i| &out.rows[r].new[*i]).collect::<Vec<_>>());
                if !seen.insert(now) {
                    let sample = out.sample(r, cols);
                    out.rows[r].fate = Fate::Aside;
                    out.problem(
                        "duplicate_rows",
                        format!("{{n}} rows to write into {t} have the same {what} as another of them, and a unique index allows one: the transformation rules may have made them equal; change the rules, or give them new values (--regenerate {t}.{})", cols[0]),
                        cols,
                        sample,
                    );
                }
            }
        }
        Ok(())
    }

    /// References to rows of tables written later (a cycle, a table pointing at itself): their
    /// final keys, now that every row has one.
    fn settle(&self, pending: &[(String, usize, usize)], outs: &mut BTreeMap<String, Out>) {
        let mut index: KeyIndex = HashMap::new();
        for (t, r, k) in pending {
            let fk = self.target[t].fks[*k].clone();
            let ix = index.entry((fk.parent.clone(), fk.parent_cols.clone())).or_insert_with(|| {
                let Some(p) = outs.get(&fk.parent) else { return HashMap::new() };
                let Some(at): Option<Vec<usize>> = fk.parent_cols.iter().map(|c| p.at(c)).collect() else { return HashMap::new() };
                p.rows.iter().enumerate().map(|(i, row)| (key_of(&at.iter().map(|j| &row.old[*j]).collect::<Vec<_>>()), i)).collect()
            });
            let out = &outs[t];
            let at: Vec<usize> = fk.cols.iter().filter_map(|c| out.at(c)).collect();
            let key = key_of(&at.iter().map(|i| &out.rows[*r].old[*i]).collect::<Vec<_>>());
            let found = ix.get(&key).copied().map(|p| {
                let o = &outs[&fk.parent];
                (o.rows[p].fate, fk.parent_cols.iter().map(|c| o.at(c).map(|i| o.rows[p].new[i].clone()).unwrap_or(V::Null)).collect::<Vec<_>>())
            });
            let out = outs.get_mut(t).expect("pending rows are of written tables");
            match found {
                Some((Fate::Aside, _)) => {
                    out.rows[*r].fate = Fate::Aside;
                    out.report.notes.push(format!("rows left out with the {} rows they belong to", fk.parent));
                }
                Some((_, new)) => {
                    for (j, i) in at.iter().enumerate() {
                        out.rows[*r].new[*i] = new[j].clone();
                    }
                }
                // Outside the migration: the check of every foreign key at the end finds it.
                None => {}
            }
        }
    }

    /// Rows pointing at rows set aside go too, until nothing changes.
    fn cascade_aside(&self, outs: &mut BTreeMap<String, Out>) {
        loop {
            let mut changed = false;
            let names: Vec<String> = outs.keys().cloned().collect();
            for t in &names {
                for fk in self.target[t].fks.clone() {
                    let Some(p) = outs.get(&fk.parent) else { continue };
                    let Some(pat): Option<Vec<usize>> = fk.parent_cols.iter().map(|c| p.at(c)).collect() else { continue };
                    let aside: HashSet<Key> = p.rows.iter().filter(|r| r.fate == Fate::Aside).map(|r| key_of(&pat.iter().map(|j| &r.new[*j]).collect::<Vec<_>>())).collect();
                    let kept: HashSet<Key> = p.rows.iter().filter(|r| r.fate != Fate::Aside).map(|r| key_of(&pat.iter().map(|j| &r.new[*j]).collect::<Vec<_>>())).collect();
                    if aside.is_empty() {
                        continue;
                    }
                    let out = outs.get_mut(t).expect("listed");
                    let Some(at): Option<Vec<usize>> = fk.cols.iter().map(|c| out.at(c)).collect() else { continue };
                    let mut n = 0;
                    for r in out.rows.iter_mut().filter(|r| r.fate == Fate::Insert) {
                        let k = key_of(&at.iter().map(|i| &r.new[*i]).collect::<Vec<_>>());
                        if aside.contains(&k) && !kept.contains(&k) {
                            r.fate = Fate::Aside;
                            n += 1;
                        }
                    }
                    if n > 0 {
                        out.report.notes.push(format!("{n} rows left out with the {} rows they belong to", fk.parent));
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// Inserts the rows, parents first, with the tables' triggers dropped and made again in the
    /// same transaction (a trigger of the application does not fire for rows it already made).
    async fn insert(&self, tx: &mut SqliteConnection, order: &[String], outs: &mut BTreeMap<String, Out>, cancel: &CancelToken, progress: &ProgressSink) -> Result<()> {
        let mut triggers: Vec<(String, String)> = Vec::new();
        for t in order {
            let found: Vec<(String, String)> =
                sqlx::query_as("SELECT name, sql FROM main.sqlite_master WHERE type = 'trigger' AND tbl_name = ? AND sql IS NOT NULL").bind(t).fetch_all(&mut *tx).await.map_err(db_err(self.path, "read its triggers"))?;
            triggers.extend(found);
        }
        for (name, _) in &triggers {
            sqlx::raw_sql(AssertSqlSafe(format!("DROP TRIGGER main.{}", qi(name)))).execute(&mut *tx).await.map_err(db_err(self.path, "set its triggers aside"))?;
        }
        for (n, t) in order.iter().enumerate() {
            cancel.check()?;
            progress(Progress { phase: "writing".into(), table: Some(t.clone()), tables_done: n as u64, tables_total: order.len() as u64, rows: 0, bytes: 0 });
            let out = outs.get_mut(t).expect("ordered");
            let list = out.cols.iter().map(|c| qi(c)).collect::<Vec<_>>().join(", ");
            let marks = vec!["?"; out.cols.len()].join(", ");
            let sql = format!("INSERT INTO main.{} ({list}) VALUES ({marks})", qi(t));
            for r in out.rows.iter().filter(|r| r.fate == Fate::Insert) {
                let mut q = sqlx::query(AssertSqlSafe(sql.clone()));
                for v in &r.new {
                    q = v.bind(q);
                }
                q.execute(&mut *tx).await.map_err(|e| {
                    Error::new(ErrorCode::Database, format!("the migration failed writing a row of {t}: {e}; nothing was written")).caused_by(&e)
                })?;
                out.report.rows_written += 1;
            }
        }
        for (_, sql) in &triggers {
            sqlx::raw_sql(AssertSqlSafe(sql.clone())).execute(&mut *tx).await.map_err(db_err(self.path, "make its triggers again"))?;
        }
        Ok(())
    }
}

/// Deletes one tenant's rows from every tenant table, children first; returns the rows.
async fn remove_tenant(tx: &mut SqliteConnection, path: &Path, tenant: &str, tenant_column: &str, tenants_table: &str, cancel: &CancelToken) -> Result<u64> {
    let tables = lite::tenant_tables(tx, path, tenant_column, tenants_table).await?;
    sqlx::raw_sql("DROP TABLE IF EXISTS temp._sh_tenant; CREATE TEMP TABLE _sh_tenant (id)").execute(&mut *tx).await.map_err(db_err(path, "prepare the removal"))?;
    sqlx::query("INSERT INTO temp._sh_tenant VALUES (?)").bind(tenant).execute(&mut *tx).await.map_err(db_err(path, "prepare the removal"))?;
    let mut n = 0;
    for t in tables.iter().rev() {
        cancel.check()?;
        n += sqlx::raw_sql(AssertSqlSafe(format!("DELETE FROM main.{} AS t WHERE {}", qi(&t.name), t.predicate.replace("{s}", "main"))))
            .execute(&mut *tx)
            .await
            .map_err(db_err(path, &format!("remove tenant {tenant} from {}", t.name)))?
            .rows_affected();
    }
    Ok(n)
}

/// Where the rows come from.
pub(crate) enum Origin<'a> {
    /// A SQLite database (the target itself for a copy or merge in one file).
    Database(PathBuf),
    /// A backup of a SQLite database: restored into a private scratch file first.
    Backup(&'a crate::source::pg_apply::Chain),
    /// Files to import.
    Files,
}

/// A migration whose source or target is a SQLite database (see the module's text).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(spec: &MigrationSpec, ends: &super::Endpoints, from: Origin<'_>, target: Option<PathBuf>, tenants: &[String], commit: bool, cancel: &CancelToken, progress: &ProgressSink) -> Result<MigrationReport> {
    let kind = super::kind(spec)?;
    let mut report = MigrationReport { migration_type: Some(kind), source_tenant_ids: tenants.to_vec(), references: spec.references.clone(), ..Default::default() };
    let step = |phase: &str, done: u64| progress(Progress { phase: phase.into(), table: None, tables_done: done, tables_total: 4, rows: 0, bytes: 0 });
    if !spec.references.is_empty() {
        return Err(Error::validation(
            "references that no foreign key declares are followed on PostgreSQL: on SQLite, declare the foreign key in the table, or leave the reference out",
        ));
    }
    if kind == MigrationType::DataExport {
        let Origin::Database(path) = &from else { return Err(Error::new(ErrorCode::Internal, "an export reads a database")) };
        return export(spec, ends, path, tenants, commit, cancel, &step, report).await;
    }
    let target_path = target.ok_or_else(|| Error::validation("choose the database to write into (--target)"))?;
    let mut conn = open(&target_path, false).await?;
    let result = write_into(&mut conn, spec, ends, from, &target_path, tenants, kind, commit, cancel, progress, &step, &mut report).await;
    let _ = conn.close().await;
    result.map(|_| report)
}

#[allow(clippy::too_many_arguments)]
async fn write_into(
    conn: &mut SqliteConnection,
    spec: &MigrationSpec,
    ends: &super::Endpoints,
    from: Origin<'_>,
    path: &Path,
    tenants: &[String],
    kind: MigrationType,
    commit: bool,
    cancel: &CancelToken,
    progress: &ProgressSink,
    step: &(dyn Fn(&str, u64) + Sync),
    report: &mut MigrationReport,
) -> Result<()> {
    let (tc, tt) = (ends.tenant_column.as_str(), ends.tenants_table.as_str());
    // 1. Read: another file or a backup before the write transaction starts (the scratch file
    // of a backup is private and gone afterwards); the target itself inside it.
    step("reading the source", 0);
    let same_file = matches!(&from, Origin::Database(p) if same(p, path));
    let mut srcs = match &from {
        Origin::Database(p) if !same_file => read_file(p, tenants, tc, tt, cancel).await?.0,
        Origin::Backup(chain) => {
            let scratch = std::env::temp_dir().join(format!("safehold-copy-{}.db", uuid::Uuid::new_v4().simple()));
            let _gone = RemoveOnDrop(scratch.clone());
            lite::restore(chain, &scratch, cancel, &crate::source::no_progress()).await?;
            read_file(&scratch, tenants, tc, tt, cancel).await?.0
        }
        Origin::Files => read_files(spec, tenants)?,
        Origin::Database(_) => Vec::new(),
    };
    let mut tx = conn.begin().await.map_err(db_err(path, "start the migration's transaction"))?;
    let target = read_schema(&mut tx, path).await?;
    if same_file {
        srcs = read_tenants(&mut tx, path, &target, tenants, tc, tt, cancel).await?;
    }
    if matches!(from, Origin::Files) && !tenants.is_empty() {
        keep_tenants(&mut srcs, &target, tenants, tc, tt);
    }
    report.rows_read = srcs.iter().map(|s| s.rows.len() as u64).sum();

    // 2. Rules.
    step("applying the rules", 1);
    apply_rules(&mut srcs, &spec.rules)?;

    // 3. Mapping.
    let mapping = super::settle_mapping(spec, kind, report, |lost| propose(&srcs, &target, lost))?;
    let mut outs = map_rows(&srcs, &target, &mapping)?;
    let tenant_tables: BTreeSet<String> = lite::tenant_tables(&mut tx, path, tc, tt).await?.into_iter().map(|t| t.name).collect();
    if let Some(t) = outs.keys().find(|t| !tenant_tables.contains(*t)) {
        return Err(Error::validation(format!("{t} is not a tenant table of the target (it has no column {tc} and no foreign key to a tenant table): leave it out of the mapping")));
    }
    let order = order(&outs, &target);

    // The tenant written.
    let (tenant, existing) = target_tenant(&mut tx, path, &target, kind, spec, tenants, tt, same_file, outs.contains_key(tt)).await?;
    report.target_tenant_id = Some(tenant.clone());

    // 4. Write.
    step("writing", 2);
    let suffix = spec.suffix.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| if kind == MigrationType::TenantMerge { "-merged".into() } else { "-copy".into() });
    let w = Writer {
        path,
        target: &target,
        tenant_column: tc,
        tenants_table: tt,
        tenant,
        existing,
        new_name: spec.target_tenant_name.clone().filter(|n| !n.trim().is_empty()),
        conflicts: &spec.conflicts,
        suffix,
    };
    let before_fk = lite::fk_violations(&mut tx, path).await?;
    let pending = w.prepare(&mut tx, &order, &mut outs, cancel).await?;
    w.settle(&pending, &mut outs);
    w.cascade_aside(&mut outs);
    w.insert(&mut tx, &order, &mut outs, cancel, progress).await?;
    if kind == MigrationType::TenantMerge && spec.remove_source_tenant {
        if !same_file {
            return Err(Error::validation("the source tenant can be removed only when it is in the database merged into"));
        }
        report.rows_removed = remove_tenant(&mut tx, path, &tenants[0], tc, tt, cancel).await?;
    }
    cancel.check()?;
    report.tables = order
        .iter()
        .filter_map(|t| outs.remove(t))
        .map(|mut o| {
            o.report.rows_rejected = o.rows.iter().filter(|r| r.fate == Fate::Aside).count() as u64;
            o.report.problems = o.problems.iter().map(|p| Problem::new(&p.kind, p.message.replace("{n}", &p.count.to_string()), p.count, p.samples.clone()).on(&p.cols)).collect();
            o.report.notes.dedup();
            o.report
        })
        .collect();
    report.rows_written = report.tables.iter().map(|t| t.rows_written + t.rows_updated).sum();
    report.rows_rejected = report.tables.iter().map(|t| t.rows_rejected).sum();
    step("finishing", 3);
    if commit && !report.is_clean() && !spec.skip_rejected {
        let _ = tx.rollback().await;
        return Err(rejected_error(report));
    }
    lite::finish(tx, path, &before_fk, commit, |rows, pairs| {
        format!("the migration would leave {rows} rows pointing at rows that are gone ({pairs}); nothing was written")
    })
    .await?;
    report.committed = commit;
    Ok(())
}

fn same(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// The tenant written, and whether it exists already.
#[allow(clippy::too_many_arguments)]
async fn target_tenant(tx: &mut SqliteConnection, path: &Path, target: &Schema, kind: MigrationType, spec: &MigrationSpec, tenants: &[String], tenants_table: &str, same_file: bool, writes_tenants_row: bool) -> Result<(String, bool)> {
    let table = target.get(tenants_table);
    let key = table.and_then(|t| (t.pk.len() == 1).then(|| t.pk[0].clone()));
    let given = spec.target_tenant_id.clone().map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    let id = match given {
        Some(id) => id,
        None if kind == MigrationType::TenantMerge => return Err(Error::validation("choose the tenant to merge into (--into)")),
        None => {
            let (Some(t), Some(k)) = (table, &key) else {
                return Err(Error::validation("the target has no tenants table to make a new tenant id from: give the tenant id to write (--new-tenant-id)"));
            };
            let decl = t.col(k).map(|c| c.decl.clone()).unwrap_or_default();
            if affinity(&decl) == Affinity::Integer {
                next_rowid(tx, path, tenants_table, k).await?.to_string()
            } else {
                uuid::Uuid::new_v4().to_string()
            }
        }
    };
    let is_there = match (table, &key) {
        (Some(_), Some(k)) => sqlx::query_scalar::<_, i64>(AssertSqlSafe(format!("SELECT count(*) FROM main.{} WHERE CAST({} AS TEXT) = ?", qi(tenants_table), qi(k))))
            .bind(&id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err(path, "look the tenant up"))?
            > 0,
        _ => true,
    };
    match kind {
        MigrationType::TenantCopy if is_there => Err(Error::conflict(format!("tenant {id} already exists in the target: choose a new tenant id, or merge into it instead"))),
        MigrationType::TenantCopy if same_file && tenants.first() == Some(&id) => Err(Error::validation("a copy in the same database needs a tenant id other than the tenant's own")),
        MigrationType::TenantMerge if !is_there => Err(Error::not_found(format!("tenant {id} does not exist in the target: choose an existing tenant to merge into"))),
        MigrationType::TenantMerge if same_file && tenants.first() == Some(&id) => Err(Error::validation("a tenant cannot be merged into itself")),
        _ if !is_there && !writes_tenants_row => {
            Err(Error::not_found(format!("tenant {id} does not exist in the target and the import has no {tenants_table} table to create it from: import into an existing tenant")))
        }
        _ => Ok((id, is_there)),
    }
}

/// Only the chosen tenants' rows of files that hold several: the tenants rows, rows with the
/// tenant column, and rows reached from those through the target's foreign keys.
fn keep_tenants(srcs: &mut [Src], target: &Schema, tenants: &[String], tenant_column: &str, tenants_table: &str) {
    let wanted: HashSet<Option<String>> = tenants.iter().map(|t| Some(t.clone())).collect();
    // Per table filtered: the keys of its kept rows, by the column lists foreign keys point at.
    let mut kept: HashMap<String, HashMap<Vec<String>, HashSet<Key>>> = HashMap::new();
    for _ in 0..=srcs.len() {
        for s in srcs.iter_mut() {
            let t = target_table(target, &s.name).unwrap_or_else(|| s.name.clone());
            if kept.contains_key(&t) {
                continue;
            }
            let col = |c: &str| s.cols.iter().position(|x| x == c);
            let keep: Vec<bool> = if let Some(i) = (t == tenants_table).then(|| target.get(&t).and_then(|x| x.pk.first()).and_then(|k| col(k))).flatten() {
                s.rows.iter().map(|r| wanted.contains(&r[i].text())).collect()
            } else if let Some(i) = col(tenant_column) {
                s.rows.iter().map(|r| wanted.contains(&r[i].text())).collect()
            } else {
                // Through a foreign key to a table filtered already.
                let via = target.get(&t).and_then(|x| {
                    x.fks.iter().find_map(|fk| {
                        let parent = kept.get(&fk.parent)?.get(&fk.parent_cols)?;
                        let at: Vec<usize> = fk.cols.iter().map(|c| col(c)).collect::<Option<_>>()?;
                        Some(s.rows.iter().map(|r| parent.contains(&key_of(&at.iter().map(|i| &r[*i]).collect::<Vec<_>>()))).collect::<Vec<bool>>())
                    })
                });
                match via {
                    Some(k) => k,
                    None => continue,
                }
            };
            let mut flags = keep.into_iter();
            s.rows.retain(|_| flags.next().unwrap_or(false));
            let mut keys: HashMap<Vec<String>, HashSet<Key>> = HashMap::new();
            for child in target.values() {
                for fk in child.fks.iter().filter(|fk| fk.parent == t) {
                    if let Some(at) = fk.parent_cols.iter().map(|c| s.cols.iter().position(|x| x == c)).collect::<Option<Vec<usize>>>() {
                        keys.entry(fk.parent_cols.clone()).or_default().extend(s.rows.iter().map(|r| key_of(&at.iter().map(|i| &r[*i]).collect::<Vec<_>>())));
                    }
                }
            }
            kept.insert(t, keys);
        }
    }
}

/// The rows of files to import: one portable export (its JSON Lines, values typed), or CSV and
/// JSON Lines files named after their tables.
fn read_files(spec: &MigrationSpec, tenants: &[String]) -> Result<Vec<Src>> {
    let files = super::files_to_import(spec, "a portable export (.zip), or CSV / JSON Lines files")?;
    let first = &files[0];
    if files.len() == 1 && first.extension().is_some_and(|e| e.eq_ignore_ascii_case("zip")) {
        let mut export = portable::open(first)?;
        if export.manifest.tenants.len() > 1 && tenants.is_empty() {
            return Err(Error::validation(format!("{} holds {} tenants: choose the one to import (--tenant)", first.display(), export.manifest.tenants.len())));
        }
        if let Some(missing) = tenants.iter().find(|t| !export.manifest.tenants.is_empty() && !export.manifest.tenants.contains(t)) {
            return Err(Error::not_found(format!("{} has no tenant {missing}: it holds {}", first.display(), export.manifest.tenants.join(", "))));
        }
        let mut out = Vec::new();
        for t in export.schema.tables.clone() {
            let data = export.entry(&format!("tables/{}.jsonl", t.name))?;
            let mut src = jsonl(&t.name, &data, first)?;
            // The columns in the schema's order, each typed as schema.json says.
            let cols: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
            src.rows = src.rows.iter().map(|r| cols.iter().map(|c| src.cols.iter().position(|x| x == c).map(|i| r[i].clone()).unwrap_or(V::Null)).collect()).collect();
            src.types = t.columns.iter().map(|c| Some(c.ty.clone())).collect();
            src.cols = cols;
            if let Some(expected) = export.manifest.tables.get(&t.name).filter(|n| **n != src.rows.len() as u64) {
                return Err(Error::validation(format!("{}: {} holds {} rows, the manifest says {expected}", first.display(), t.name, src.rows.len())));
            }
            out.push(src);
        }
        return Ok(out);
    }
    let mut out = Vec::new();
    for f in &files {
        let name = super::stage::table_of_file(f);
        let data = std::fs::read(f).map_err(|e| Error::io(format!("cannot read {}", f.display()), &e))?;
        let ext = f.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        out.push(match ext.as_str() {
            "csv" => csv(&name, &data, f)?,
            "jsonl" | "ndjson" | "json" => jsonl(&name, &data, f)?,
            "zip" => return Err(Error::validation(format!("{}: import one portable export at a time", f.display()))),
            _ => {
                return Err(Error::validation(format!(
                    "{} is not something Safehold imports into SQLite: choose a portable export (.zip), or .csv / .jsonl files named after their tables",
                    f.display()
                )))
            }
        });
    }
    Ok(out)
}

fn jsonl(name: &str, data: &[u8], file: &Path) -> Result<Src> {
    let mut src = Src { name: name.into(), cols: Vec::new(), types: Vec::new(), rows: Vec::new() };
    let mut objects = Vec::new();
    for (n, line) in data.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| Error::validation(format!("{} line {}: not a JSON object ({e})", file.display(), n + 1)))?;
        let serde_json::Value::Object(o) = v else { return Err(Error::validation(format!("{} line {}: each line must be one JSON object", file.display(), n + 1))) };
        for k in o.keys() {
            if !src.cols.contains(k) {
                src.cols.push(k.clone());
            }
        }
        objects.push(o);
    }
    src.types = vec![None; src.cols.len()];
    src.rows = objects.iter().map(|o| src.cols.iter().map(|c| o.get(c).map(V::from_json).unwrap_or(V::Null)).collect()).collect();
    Ok(src)
}

/// A CSV file with a header line; an empty unquoted field is NULL, `""` the empty text (as
/// PostgreSQL writes them).
fn csv(name: &str, data: &[u8], file: &Path) -> Result<Src> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(data);
    let cols: Vec<String> = reader.headers().map_err(|e| Error::validation(format!("{}: its header line is not CSV ({e})", file.display())))?.iter().map(str::to_string).collect();
    let mut records = Vec::new();
    for (n, record) in reader.byte_records().enumerate() {
        let record = record.map_err(|e| Error::validation(format!("{} line {}: not valid CSV ({e})", file.display(), n + 2)))?;
        if record.len() != cols.len() {
            return Err(Error::validation(format!("{} line {}: {} fields, the header names {}", file.display(), n + 2, record.len(), cols.len())));
        }
        let start = record.position().map(|p| p.byte() as usize).unwrap_or(0);
        records.push((start, record));
    }
    let mut rows = Vec::with_capacity(records.len());
    for (i, (start, record)) in records.iter().enumerate() {
        let end = records.get(i + 1).map(|(s, _)| *s).unwrap_or(data.len());
        let quoted_empty = quoted_empty_fields(&data[(*start).min(data.len())..end.min(data.len())]);
        rows.push(record.iter().enumerate().map(|(j, f)| if f.is_empty() && !quoted_empty.contains(&j) { V::Null } else { V::Text(String::from_utf8_lossy(f).into_owned()) }).collect());
    }
    Ok(Src { name: name.into(), types: vec![None; cols.len()], cols, rows })
}

/// Which fields of one raw CSV record are written `""` (the empty text, not NULL).
fn quoted_empty_fields(raw: &[u8]) -> HashSet<usize> {
    let mut out = HashSet::new();
    let (mut field, mut i, mut start) = (0, 0, true);
    let mut in_quotes = false;
    while i < raw.len() {
        let b = raw[i];
        if in_quotes {
            if b == b'"' && raw.get(i + 1) == Some(&b'"') {
                i += 2;
                continue;
            }
            if b == b'"' {
                in_quotes = false;
            }
        } else if b == b'"' && start {
            if raw.get(i + 1) == Some(&b'"') && matches!(raw.get(i + 2), None | Some(b',' | b'\n' | b'\r')) {
                out.insert(field);
                i += 2;
                start = false;
                continue;
            }
            in_quotes = true;
        } else if b == b',' {
            field += 1;
            start = true;
            i += 1;
            continue;
        }
        start = false;
        i += 1;
    }
    out
}

/// A field of CSV as PostgreSQL writes it: NULL empty, the empty text `""`, quoted when needed.
fn csv_field(v: &V) -> String {
    match v.text() {
        None => String::new(),
        Some(s) if s.is_empty() => "\"\"".into(),
        Some(s) if s.contains([',', '"', '\n', '\r']) => format!("\"{}\"", s.replace('"', "\"\"")),
        Some(s) => s,
    }
}

/// Exports tenants of a SQLite database to a portable ZIP (an archive export needs PostgreSQL).
#[allow(clippy::too_many_arguments)]
async fn export(spec: &MigrationSpec, ends: &super::Endpoints, source: &Path, tenants: &[String], commit: bool, cancel: &CancelToken, step: &(dyn Fn(&str, u64) + Sync), mut report: MigrationReport) -> Result<MigrationReport> {
    let path = spec.target_file.as_deref().filter(|p| !p.trim().is_empty()).map(PathBuf::from).ok_or_else(|| Error::validation("choose the file to save the export to (--to)"))?;
    if path.is_dir() {
        return Err(Error::validation(format!("{} is a folder: choose a file name for the export", path.display())));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
        return Err(Error::validation(format!("the folder {} does not exist: choose where to save the export", dir.display())));
    }
    if spec.export_format == ExportFormat::Archive {
        return Err(Error::validation(
            "an archive export of some tenants needs a PostgreSQL source: export a SQLite database's tenants in the portable format, or back the whole database up",
        ));
    }
    if tenants.is_empty() {
        return Err(Error::validation("choose the tenants to export (--tenant)"));
    }
    step("reading the source", 0);
    let (mut srcs, schema) = read_file(source, tenants, &ends.tenant_column, &ends.tenants_table, cancel).await?;
    report.rows_read = srcs.iter().map(|s| s.rows.len() as u64).sum();
    step("applying the rules", 1);
    apply_rules(&mut srcs, &spec.rules)?;
    report.tables = srcs.iter().map(|t| TableReport { table: t.name.clone(), source_table: Some(t.name.clone()), rows_read: t.rows.len() as u64, rows_written: if commit { t.rows.len() as u64 } else { 0 }, ..Default::default() }).collect();
    if commit {
        step("writing the export", 2);
        let tables: Vec<portable::PlainTable> = srcs
            .iter()
            .map(|s| {
                let mut jsonl = Vec::new();
                for r in &s.rows {
                    let o: serde_json::Map<String, serde_json::Value> = s.cols.iter().cloned().zip(r.iter().map(V::json)).collect();
                    jsonl.extend_from_slice(serde_json::Value::Object(o).to_string().as_bytes());
                    jsonl.push(b'\n');
                }
                let mut csv = s.cols.iter().map(|c| csv_field(&V::Text(c.clone()))).collect::<Vec<_>>().join(",").into_bytes();
                csv.push(b'\n');
                for r in &s.rows {
                    csv.extend_from_slice(r.iter().map(csv_field).collect::<Vec<_>>().join(",").as_bytes());
                    csv.push(b'\n');
                }
                let t = &schema[&s.name];
                let described = portable::TableSchema {
                    name: s.name.clone(),
                    columns: t.cols.iter().map(|c| portable::ColumnSchema { name: c.name.clone(), ty: if c.decl.is_empty() { "text".into() } else { c.decl.to_lowercase() }, nullable: !c.not_null }).collect(),
                    primary_key: t.pk.clone(),
                    foreign_keys: t.fks.iter().map(|fk| portable::ForeignKeySchema { columns: fk.cols.clone(), references_table: fk.parent.clone(), references_columns: fk.parent_cols.clone() }).collect(),
                };
                portable::PlainTable { schema: described, rows: s.rows.len() as u64, jsonl, csv }
            })
            .collect();
        let meta = portable::ExportMeta { source: format!("sqlite://{}", source.display()), tenants, tenant_column: &ends.tenant_column, tenants_table: &ends.tenants_table };
        report.files = portable::write_plain(&path, tables, &meta)?;
        report.rows_written = report.rows_read;
    }
    report.target_file = Some(path.display().to_string());
    report.committed = commit;
    step("finished", 4);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_tells_null_from_the_empty_text() {
        let src = csv("t", b"a,b,c\n1,,\"\"\n\"x,y\",\"\",2\n", Path::new("t.csv")).unwrap();
        assert_eq!(src.rows[0], vec![V::Text("1".into()), V::Null, V::Text(String::new())]);
        assert_eq!(src.rows[1], vec![V::Text("x,y".into()), V::Text(String::new()), V::Text("2".into())]);
        let line: Vec<String> = src.rows[0].iter().map(csv_field).collect();
        assert_eq!(line.join(","), "1,,\"\"");
    }

    #[test]
    fn replacements_are_read_as_postgresql_writes_them() {
        assert_eq!(replacement("\\1-\\2 costs $5 \\&"), "${1}-${2} costs $$5 ${0}");
        let re = regex::Regex::new("(a)(b)").unwrap();
        assert_eq!(re.replace_all("xaby", replacement("\\2\\1").as_str()), "xbay");
    }

    #[test]
    fn fakes_and_masks_match_the_rules_of_postgresql() {
        // The numbers rules::h derives (same salt and value → same fake on either engine).
        assert_eq!(mask("abcdef"), "a****f");
        assert_eq!(mask("ab"), "**");
        assert_eq!(fake(FakeKind::Email, "s", "x"), fake(FakeKind::Email, "s", "x"));
        assert_ne!(fake(FakeKind::Name, "s", "x"), fake(FakeKind::Name, "t", "x"));
        let n = h31("s", "x") as usize;
        assert!(fake(FakeKind::Phone, "s", "x").ends_with(&format!("{:04}", n % 10000)));
    }

    #[test]
    fn values_fit_their_column_or_are_refused() {
        assert_eq!(fit(V::Text("42".into()), Affinity::Integer), Ok(V::Int(42)));
        assert_eq!(fit(V::Text("4.5".into()), Affinity::Real), Ok(V::Real(4.5)));
        assert!(fit(V::Text("forty".into()), Affinity::Integer).is_err());
        assert_eq!(fit(V::Text("forty".into()), Affinity::Text), Ok(V::Text("forty".into())));
        assert_eq!(fit(V::Text("true".into()), Affinity::Numeric), Ok(V::Int(1)));
    }

    #[test]
    fn regenerated_values_keep_their_form() {
        let first = (12_345, 1);
        let u = regenerate("0b5c1f52-6a3e-4c3b-9d55-3f8f2a1e7c10", None, Some("TEXT"), first);
        assert!(is_uuid(&u) && u != "0b5c1f52-6a3e-4c3b-9d55-3f8f2a1e7c10");
        let h = regenerate("deadbeef00", None, Some("TEXT"), first);
        assert_eq!(h.len(), 10);
        assert!(h.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(regenerate("7", None, Some("INTEGER"), first).len(), 9);
        assert!(regenerate("slug", None, None, first).starts_with("slug-"));
        assert_eq!(regenerate("x", Some("key_{value}"), None, first), "key_x");
    }

    /// Numbers are counted, not drawn: 100 000 rows' fresh numbers from one offset are all
    /// distinct, of the form asked (nine digits for an integer column; a text number's own length,
    /// longer than 18 too), whatever the offset, even at the end of the range where it wraps.
    #[test]
    fn regenerated_numbers_of_one_table_never_meet() {
        for offset in [0, 7, 899_999_999, 899_999_999_999_999_999, 123_456_789_012_345_678] {
            let ints: std::collections::HashSet<String> = (1..=100_000).map(|n| regenerate("42", None, Some("INTEGER"), (offset, n))).collect();
            assert_eq!(ints.len(), 100_000, "offset {offset}");
            assert!(ints.iter().all(|v| v.len() == 9 && !v.starts_with('0') && v.parse::<i32>().is_ok()), "offset {offset}");
            let long = "1234567890123456789012";
            let texts: std::collections::HashSet<String> = (1..=10_000).map(|n| regenerate(long, None, Some("TEXT"), (offset, n))).collect();
            assert_eq!(texts.len(), 10_000, "offset {offset}");
            assert!(texts.iter().all(|v| v.len() == long.len() && !v.starts_with('0') && v.bytes().all(|b| b.is_ascii_digit())), "offset {offset}");
        }
    }
}
