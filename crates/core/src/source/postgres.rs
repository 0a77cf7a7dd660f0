//! The PostgreSQL source, native: no `pg_dump` binary, so no client/server version mismatch.
//! One consistent snapshot (`REPEATABLE READ, READ ONLY, DEFERRABLE`); the schema read from the
//! system catalogs (the `pg_get_*def` functions do much of it); data through `COPY … TO STDOUT`,
//! streamed chunk by chunk into the archive. Restore runs in ONE transaction: objects, then
//! `COPY … FROM STDIN`, then constraints, indexes, triggers, policies, sequence values — any
//! failure or a cancel leaves the target as it was.
//!
//! Also carried: large objects (their data, whole in every backup),
//! collations, extended statistics objects, publications (their tables, schemas, row filters and
//! column lists; not Safehold's own), event triggers (made last: they need a superuser).
//! Casts, operators, text search dictionaries and configurations, foreign servers, user mappings
//! (without passwords) and foreign tables: [`super::pg_objects`]. Owners and privileges when a
//! restore asks: [`super::pg_access`].
//! The rows of extensions' configuration tables: [`super::pg_extdata`].
//! Not carried yet: operator families made apart (and the classes in them, and their loose
//! members), text search parsers and templates, foreign-data wrappers outside an extension — a
//! backup names those it finds ([`not_carried`]).

use std::str::FromStr;

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection as _, PgConnection, Row};

use super::{classify, CancelToken, DumpStats, Progress, ProgressSink, TableClass};
use crate::archive::{ArchiveIndex, ArchiveReader, ArchiveWriter};
use crate::error::{Error, ErrorCode, Result};

/// How long "Test connection" waits for a server before it reports it unreachable.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Explains a failure to reach or log in to PostgreSQL, naming the address and what to check.
pub fn explain_pg_error(address: &str, user: &str, database: &str, err: &sqlx::Error) -> Error {
    let at = format!("cannot connect to {address}");
    let explained = match err {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            match code.as_str() {
                "28P01" | "28000" => Error::new(
                    ErrorCode::AuthFailed,
                    format!("{at}: {}; check the connection's user and password", db.message()),
                ),
                "3D000" => Error::new(
                    ErrorCode::NotFound,
                    format!("{at}: database \"{database}\" does not exist; check the database name"),
                ),
                _ => Error::new(ErrorCode::Database, format!("{at}: {}", db.message())),
            }
        }
        sqlx::Error::Io(io) => Error::new(
            ErrorCode::Unreachable,
            format!("{at}: {io}; check the host and port, and that PostgreSQL is running and accepts TCP connections"),
        ),
        sqlx::Error::Tls(e) => Error::new(
            ErrorCode::Unreachable,
            format!("{at}: TLS failed ({e}); check the TLS mode and the server's certificate"),
        ),
        sqlx::Error::PoolTimedOut => Error::new(
            ErrorCode::Unreachable,
            format!("{at}: no answer within {} s; check the host, the port and any firewall", CONNECT_TIMEOUT.as_secs()),
        ),
        other => {
            let text = other.to_string();
            if text.contains("password") {
                Error::new(
                    ErrorCode::AuthFailed,
                    format!("{at}: the server asks for a password for user \"{user}\" and none was given; set the connection's password"),
                )
            } else {
                Error::new(ErrorCode::Unreachable, format!("{at}: {text}"))
            }
        }
    };
    explained.caused_by(err)
}

pub use super::pg_parallel::{restore_parallel, with_split_bytes};

/// One DDL statement and what it creates (for messages).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stmt {
    pub what: String,
    pub sql: String,
    /// The table (`schema.name`) an index or constraint belongs to: a parallel restore builds it
    /// as soon as that table is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// For a foreign key, the table it references (`schema.name`): a parallel restore never adds
    /// two keys touching the same table at once (they would wait for, or deadlock on, each other).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PgTable {
    pub schema: String,
    pub name: String,
    /// Columns written by COPY (generated columns are computed again on restore).
    pub columns: Vec<String>,
    /// The primary key's columns (empty without one): how incremental backups match rows.
    #[serde(default)]
    pub key_columns: Vec<String>,
    pub class: TableClass,
    /// For a partition: the partitioned table at the top (a section name). Tenant and selective
    /// restores treat the partitions of one table as that table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
}

impl PgTable {
    pub fn section(&self) -> String {
        super::tenancy::section_name(&self.schema, &self.name)
    }
    fn copy_target(&self) -> String {
        let cols: Vec<String> = self.columns.iter().map(|c| qi(c)).collect();
        format!("{}.{} ({})", qi(&self.schema), qi(&self.name), cols.join(", "))
    }
}

/// The schema as the archive carries it.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct PgSchema {
    pub server_version: String,
    pub extensions: Vec<Stmt>,
    /// Types, functions, aggregates, sequences, tables, views: created before the data, in an
    /// order found at restore (each retried until its dependencies exist).
    pub objects: Vec<Stmt>,
    pub tables: Vec<PgTable>,
    /// After the data, in this order.
    pub post: Vec<Stmt>,
    /// Who owns each object, and the access lists that are not the default: made again only when
    /// a restore asks ([`super::pg_access`]). Absent in archives from before.
    #[serde(default)]
    pub owners: Vec<super::pg_access::Owned>,
    #[serde(default)]
    pub access: Vec<super::pg_access::Access>,
    #[serde(default)]
    pub default_access: Vec<super::pg_access::DefaultAccess>,
    /// The optimizer's statistics as the source's last ANALYZE left them ([`super::pg_stats`]).
    #[serde(default)]
    pub stats: super::pg_stats::Stats,
    /// Extensions' configuration tables whose rows the backup carries ([`super::pg_extdata`]).
    #[serde(default)]
    pub extension_tables: Vec<super::pg_extdata::ExtensionTable>,
}

pub(crate) fn qi(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub(crate) fn ql(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

const SPACE_START: &str = "SELECT set_config('default_tablespace', ";
const SPACE_END: &str = "; SELECT set_config('default_tablespace', '', true)";

/// `sql` made in tablespace `space` (`None`: the database's default), as pg_dump does it: the
/// setting for this statement only (`default_tablespace` also places a constraint's index).
pub(crate) fn in_tablespace(space: Option<String>, sql: String) -> String {
    match space {
        Some(t) => format!("{SPACE_START}{}, true); {sql}{SPACE_END}", ql(&t)),
        None => sql,
    }
}

/// The tablespace a statement of [`in_tablespace`] makes its object in, and the statement itself.
pub(crate) fn tablespace_of(sql: &str) -> Option<(String, &str)> {
    let rest = sql.strip_prefix(SPACE_START)?.strip_prefix('\'')?;
    let mut name = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if rest[i + 1..].starts_with('\'') {
                name.push('\'');
                chars.next();
                continue;
            }
            let body = rest[i + 1..].strip_prefix(", true); ")?.strip_suffix(SPACE_END)?;
            return Some((name, body));
        }
        name.push(c);
    }
    None
}

/// The statement without its tablespace (made in the database's default one).
pub(crate) fn without_tablespace(sql: &str) -> &str {
    tablespace_of(sql).map_or(sql, |(_, body)| body)
}

/// The server's `server_version_num` (e.g. 180004).
pub(crate) async fn server_version_num(conn: &mut PgConnection) -> Result<i32> {
    sqlx::query_scalar("SELECT current_setting('server_version_num')::int").fetch_one(&mut *conn).await.map_err(q("read the server's version"))
}

pub(crate) async fn connect(url: &str) -> Result<PgConnection> {
    let opts = PgConnectOptions::from_str(url)
        .map_err(|e| Error::validation(format!("invalid PostgreSQL URL {}: {e}", super::redact(url))).caused_by(&e))?
        .application_name("safehold")
        .log_statements(tracing::log::LevelFilter::Off);
    let address = super::redact(url);
    let user = opts.get_username().to_string();
    let db = opts.get_database().unwrap_or_default().to_string();
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&opts)).await {
        Err(_) => Err(explain_pg_error(&address, &user, &db, &sqlx::Error::PoolTimedOut)),
        Ok(Err(e)) => Err(explain_pg_error(&address, &user, &db, &e)),
        Ok(Ok(c)) => Ok(c),
    }
}

pub(crate) fn q(what: &str) -> impl Fn(sqlx::Error) -> Error + '_ {
    move |e| Error::new(ErrorCode::Database, format!("PostgreSQL: cannot {what}: {e}")).caused_by(&e)
}

/// The server's system identifier and the database name: which database a backup came from.
pub async fn fingerprint(url: &str) -> Result<String> {
    let mut conn = connect(url).await?;
    let (sysid, db): (String, String) =
        sqlx::query_as("SELECT (SELECT system_identifier::text FROM pg_control_system()), current_database()")
            .fetch_one(&mut conn)
            .await
            .map_err(q("read the system identifier"))?;
    let _ = conn.close().await;
    Ok(format!("postgres:{sysid}:{db}"))
}

/// Excludes objects that belong to extensions. Written as `NOT IN` (objid is never null): the
/// server hashes the extensions' members once, where `NOT EXISTS` was planned as a scan of
/// pg_depend per object (78 ms of a 155-table schema's sequences alone).
const NOT_EXT: &str = "{oid} NOT IN (SELECT dep.objid FROM pg_depend dep WHERE dep.deptype = 'e')";
pub(crate) fn not_ext(oid: &str) -> String {
    NOT_EXT.replace("{oid}", oid)
}
/// A cast that an object made for itself (a range type's to its multirange): made and dropped with it.
pub(crate) const INTERNAL_CAST: &str = "EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_cast'::regclass AND d.objid = c.oid AND d.deptype = 'i')";
pub(crate) const USER_NS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'";

async fn rows(conn: &mut PgConnection, sql: String, what: &str) -> Result<Vec<sqlx::postgres::PgRow>> {
    sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *conn).await.map_err(q(what))
}

/// Reads the schema inside the snapshot.
pub async fn read_schema(conn: &mut PgConnection, tenant_column: &str, tenants_table: &str) -> Result<PgSchema> {
    let mut s = PgSchema {
        server_version: sqlx::query_scalar("SELECT current_setting('server_version')").fetch_one(&mut *conn).await.map_err(q("read the version"))?,
        ..Default::default()
    };
    // Schemas and extensions.
    for r in rows(conn, format!("SELECT n.nspname FROM pg_namespace n WHERE {USER_NS} AND {} ORDER BY 1", not_ext("n.oid")), "read schemas").await? {
        let name: String = r.get(0);
        s.extensions.push(Stmt { what: format!("schema {name}"), sql: format!("CREATE SCHEMA IF NOT EXISTS {}", qi(&name)), table: None, references: None });
    }
    for r in rows(conn, "SELECT e.extname, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname <> 'plpgsql' ORDER BY 1".into(), "read extensions").await? {
        let (name, ns): (String, String) = (r.get(0), r.get(1));
        s.extensions.push(Stmt { what: format!("extension {name}"), sql: format!("CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {}", qi(&name), qi(&ns)), table: None, references: None });
    }
    // Collations the application made (before the types and tables that use them).
    let num = server_version_num(conn).await?;
    let locale = match num {
        n if n >= 170_000 => "c.colllocale",
        n if n >= 150_000 => "c.colliculocale",
        _ => "CASE WHEN c.collprovider = 'i' THEN c.collcollate END",
    };
    for r in rows(conn, format!(
        "SELECT n.nspname, c.collname, c.collprovider::text, c.collcollate, c.collctype, {locale}, c.collisdeterministic FROM pg_collation c JOIN pg_namespace n ON n.oid = c.collnamespace \
         WHERE {USER_NS} AND {} ORDER BY c.oid", not_ext("c.oid")), "read collations").await? {
        let (ns, name, provider): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let mut opts = match provider.as_str() {
            "i" => vec!["provider = icu".to_string(), format!("locale = {}", ql(&r.get::<Option<String>, _>(5).unwrap_or_default()))],
            "b" => vec!["provider = builtin".to_string(), format!("locale = {}", ql(&r.get::<Option<String>, _>(5).unwrap_or_default()))],
            _ => vec!["provider = libc".to_string(), format!("lc_collate = {}", ql(&r.get::<Option<String>, _>(3).unwrap_or_default())), format!("lc_ctype = {}", ql(&r.get::<Option<String>, _>(4).unwrap_or_default()))],
        };
        if !r.get::<bool, _>(6) {
            opts.push("deterministic = false".into());
        }
        s.objects.push(Stmt { what: format!("collation {ns}.{name}"), sql: format!("CREATE COLLATION {}.{} ({})", qi(&ns), qi(&name), opts.join(", ")), table: None, references: None });
    }
    // Enums, domains, composite and range types.
    let types = rows(conn, format!(
        "SELECT t.oid::int8, n.nspname, t.typname, t.typtype::text, format_type(t.typbasetype, t.typtypmod), t.typnotnull, t.typdefault, t.typrelid::int8 \
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
         WHERE {USER_NS} AND {} AND (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')) ORDER BY t.oid",
        not_ext("t.oid")), "read types").await?;
    for r in &types {
        let (oid, ns, name, kind): (i64, String, String, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
        let full = format!("{}.{}", qi(&ns), qi(&name));
        let sql = match kind.as_str() {
            "e" => {
                let labels: Vec<String> = sqlx::query_scalar("SELECT enumlabel::text FROM pg_enum WHERE enumtypid = $1::oid ORDER BY enumsortorder")
                    .bind(oid).fetch_all(&mut *conn).await.map_err(q("read enum labels"))?;
                format!("CREATE TYPE {full} AS ENUM ({})", labels.iter().map(|l| ql(l)).collect::<Vec<_>>().join(", "))
            }
            "d" => {
                let base: String = r.get(4);
                let mut sql = format!("CREATE DOMAIN {full} AS {base}");
                if let Some(d) = r.get::<Option<String>, _>(6) {
                    sql.push_str(&format!(" DEFAULT {d}"));
                }
                // PostgreSQL 17 and later keep a domain's NOT NULL as a named constraint too
                // (contype n): then it is written once, with its name (valid on every version).
                let checks: Vec<(String, String, String)> = sqlx::query_as("SELECT conname::text, pg_get_constraintdef(oid), contype::text FROM pg_constraint WHERE contypid = $1::oid ORDER BY conname")
                    .bind(oid).fetch_all(&mut *conn).await.map_err(q("read domain constraints"))?;
                if r.get::<bool, _>(5) && !checks.iter().any(|c| c.2 == "n") {
                    sql.push_str(" NOT NULL");
                }
                for (cname, def, _) in checks {
                    sql.push_str(&format!(" CONSTRAINT {} {def}", qi(&cname)));
                }
                sql
            }
            "c" => {
                let relid: i64 = r.get(7);
                let attrs: Vec<(String, String)> = sqlx::query_as("SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum")
                    .bind(relid).fetch_all(&mut *conn).await.map_err(q("read composite types"))?;
                format!("CREATE TYPE {full} AS ({})", attrs.iter().map(|(a, t)| format!("{} {t}", qi(a))).collect::<Vec<_>>().join(", "))
            }
            _ => {
                let (sub, opc): (String, Option<String>) = sqlx::query_as(
                    "SELECT format_type(rngsubtype, NULL), (SELECT opcname::text FROM pg_opclass WHERE oid = rngsubopc AND NOT opcdefault) FROM pg_range WHERE rngtypid = $1::oid")
                    .bind(oid).fetch_one(&mut *conn).await.map_err(q("read range types"))?;
                let mut opts = vec![format!("SUBTYPE = {sub}")];
                if let Some(o) = opc {
                    opts.push(format!("SUBTYPE_OPCLASS = {}", qi(&o)));
                }
                format!("CREATE TYPE {full} AS RANGE ({})", opts.join(", "))
            }
        };
        s.objects.push(Stmt { what: format!("type {ns}.{name}"), sql, table: None, references: None });
    }
    // Sequences that are not identity sequences.
    let seqs = rows(conn, format!(
        "SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle, \
                (SELECT quote_ident(tn.nspname) || '.' || quote_ident(t.relname) || '.' || quote_ident(a.attname) FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid \
                   JOIN pg_namespace tn ON tn.oid = t.relnamespace JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid \
                   WHERE d.objid = c.oid AND d.deptype = 'a' AND d.classid = 'pg_class'::regclass LIMIT 1) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_sequence s ON s.seqrelid = c.oid \
         WHERE c.relkind = 'S' AND {USER_NS} AND {} AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'i') ORDER BY 1, 2",
        not_ext("c.oid")), "read sequences").await?;
    for r in &seqs {
        let (ns, name, ty): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let (start, inc, min, max, cache, cycle): (i64, i64, i64, i64, i64, bool) = (r.get(3), r.get(4), r.get(5), r.get(6), r.get(7), r.get(8));
        let full = format!("{}.{}", qi(&ns), qi(&name));
        s.objects.push(Stmt {
            what: format!("sequence {ns}.{name}"),
            sql: format!("CREATE SEQUENCE {full} AS {ty} INCREMENT BY {inc} MINVALUE {min} MAXVALUE {max} START WITH {start} CACHE {cache}{}", if cycle { " CYCLE" } else { "" }),
            table: None,
            references: None,
        });
        if let Some(owner) = r.get::<Option<String>, _>(9) {
            s.post.push(Stmt { what: format!("sequence {ns}.{name} owner"), sql: format!("ALTER SEQUENCE {full} OWNED BY {owner}"), table: None, references: None });
        }
    }
    // Functions and procedures (aggregates separately).
    for r in rows(conn, format!(
        "SELECT p.oid::int8, n.nspname, p.proname, p.prokind::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE {USER_NS} AND {} AND NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.objid = p.oid AND dep.deptype = 'i') \
         ORDER BY p.oid", not_ext("p.oid")), "read functions").await? {
        let (oid, ns, name, kind): (i64, String, String, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
        let sql: String = if kind == "a" {
            let a = sqlx::query(
                "SELECT pg_get_function_identity_arguments(a.aggfnoid), a.aggtransfn::regproc::text, format_type(a.aggtranstype, NULL), \
                        NULLIF(a.aggfinalfn::oid, 0)::regproc::text, a.agginitval FROM pg_aggregate a WHERE a.aggfnoid = $1::oid")
                .bind(oid).fetch_one(&mut *conn).await.map_err(q("read aggregates"))?;
            let mut opts = vec![format!("SFUNC = {}", a.get::<String, _>(1)), format!("STYPE = {}", a.get::<String, _>(2))];
            if let Some(f) = a.get::<Option<String>, _>(3) {
                opts.push(format!("FINALFUNC = {f}"));
            }
            if let Some(i) = a.get::<Option<String>, _>(4) {
                opts.push(format!("INITCOND = {}", ql(&i)));
            }
            format!("CREATE AGGREGATE {}.{}({}) ({})", qi(&ns), qi(&name), a.get::<String, _>(0), opts.join(", "))
        } else {
            sqlx::query_scalar("SELECT pg_get_functiondef($1::oid)").bind(oid).fetch_one(&mut *conn).await.map_err(q("read a function"))?
        };
        s.objects.push(Stmt { what: format!("function {ns}.{name}"), sql, table: None, references: None });
    }
    // Tables (ordinary, partitioned, partitions), views and materialized views.
    let rels = rows(conn, format!(
        "SELECT c.oid::int8, n.nspname, c.relname, c.relkind::text, c.relpersistence::text, c.relispartition, \
                CASE WHEN c.relispartition THEN (SELECT quote_ident(pn.nspname) || '.' || quote_ident(p.relname) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid) END, \
                pg_get_expr(c.relpartbound, c.oid), CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END, \
                CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END, c.relrowsecurity, c.relforcerowsecurity, c.relispopulated, \
                array_to_string(c.reloptions, ', '), \
                (SELECT array_to_string(array_agg('toast.' || o), ', ') FROM pg_class tc, unnest(tc.reloptions) o WHERE tc.oid = c.reltoastrelid), \
                CASE WHEN c.relispartition THEN (SELECT rn.nspname::text || chr(1) || r.relname::text FROM pg_class r JOIN pg_namespace rn ON rn.oid = r.relnamespace WHERE r.oid = pg_partition_root(c.oid)) END, \
                (SELECT quote_ident(ic.relname) FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid WHERE x.indrelid = c.oid AND x.indisclustered), \
                c.relreplident::text, \
                EXISTS (SELECT 1 FROM pg_depend d JOIN pg_rewrite rw ON rw.oid = d.objid AND d.classid = 'pg_rewrite'::regclass WHERE rw.ev_class = c.oid AND d.refclassid = 'pg_constraint'::regclass), \
                (SELECT sp.spcname::text FROM pg_tablespace sp WHERE sp.oid = c.reltablespace), \
                CASE WHEN NOT c.relispartition THEN (SELECT string_agg(quote_ident(pn.nspname) || '.' || quote_ident(p.relname), ', ' ORDER BY i.inhseqno) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid) END, \
                ARRAY(SELECT i.inhparent::int8 FROM pg_inherits i WHERE i.inhrelid = c.oid AND NOT c.relispartition ORDER BY i.inhseqno) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p', 'v', 'm') AND {USER_NS} AND {} ORDER BY c.oid", not_ext("c.oid")), "read tables").await?;
    // Every table's columns and primary key in one query each (not one per table: a schema of
    // hundreds of tables paid a round trip per table for each).
    let table_oids: Vec<i64> = rels.iter().filter(|r| matches!(r.get::<String, _>(3).as_str(), "r" | "p")).map(|r| r.get::<i64, _>(0)).collect();
    let mut columns_of: std::collections::HashMap<i64, Vec<sqlx::postgres::PgRow>> = std::collections::HashMap::new();
    for c in sqlx::query(AssertSqlSafe(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text, \
        CASE WHEN a.attcollation <> t.typcollation AND a.attcollation <> 0 THEN (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation) END, \
        a.attislocal, \
        (SELECT 'SEQUENCE NAME ' || quote_ident(sn.nspname) || '.' || quote_ident(sc.relname) || ' START WITH ' || sq.seqstart || ' INCREMENT BY ' || sq.seqincrement \
        || ' MINVALUE ' || sq.seqmin || ' MAXVALUE ' || sq.seqmax || ' CACHE ' || sq.seqcache || CASE WHEN sq.seqcycle THEN ' CYCLE' ELSE ' NO CYCLE' END \
        FROM pg_depend dp JOIN pg_class sc ON sc.oid = dp.objid JOIN pg_namespace sn ON sn.oid = sc.relnamespace JOIN pg_sequence sq ON sq.seqrelid = sc.oid \
        WHERE dp.refclassid = 'pg_class'::regclass AND dp.refobjid = a.attrelid AND dp.refobjsubid = a.attnum AND dp.classid = 'pg_class'::regclass AND dp.deptype = 'i' AND sc.relkind = 'S' LIMIT 1), \
        a.attrelid::int8 \
        FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
        WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attrelid, a.attnum",

    ))
    .bind(&table_oids)
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read columns"))?
    {
        columns_of.entry(c.get::<i64, _>(9)).or_default().push(c);
    }
    let mut keys_of: std::collections::HashMap<i64, Vec<String>> = std::collections::HashMap::new();
    for (rel, col) in sqlx::query_as::<_, (i64, String)>(
        "SELECT i.indrelid::int8, a.attname::text FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum WHERE i.indrelid = ANY($1::oid[]) AND i.indisprimary ORDER BY i.indrelid, k.ord",
    )
    .bind(&table_oids)
    .fetch_all(&mut *conn)
    .await
    .map_err(q("read primary keys"))?
    {
        keys_of.entry(rel).or_default().push(col);
    }
    let mut table_names = Vec::new();
    let mut with_tenant = std::collections::BTreeSet::new();
    let mut pending_tables = Vec::new();
    let mut views_after_keys: Vec<Stmt> = Vec::new();
    let mut refreshes: Vec<Stmt> = Vec::new();
    let mut storage: Vec<Stmt> = Vec::new();
    for r in &rels {
        let (oid, ns, name, kind): (i64, String, String, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
        let full = format!("{}.{}", qi(&ns), qi(&name));
        let qualified = super::tenancy::section_name(&ns, &name);
        // A view that leans on a key (a GROUP BY on the primary key) can only be made once the
        // key exists: it is created after the keys, with the indexes.
        let after_keys: bool = r.get(18);
        match kind.as_str() {
            "v" => {
                let opts: Option<String> = r.get(13);
                let with = opts.filter(|o| !o.is_empty()).map(|o| format!(" WITH ({o})")).unwrap_or_default();
                let st = Stmt { what: format!("view {qualified}"), sql: format!("CREATE VIEW {full}{with} AS {}", r.get::<String, _>(9).trim_end_matches(';')), table: None, references: None };
                if after_keys {
                    views_after_keys.push(st);
                } else {
                    s.objects.push(st);
                }
            }
            "m" => {
                let opts: Option<String> = r.get(13);
                let with = opts.filter(|o| !o.is_empty()).map(|o| format!(" WITH ({o})")).unwrap_or_default();
                let sql = format!("CREATE MATERIALIZED VIEW {full}{with} AS {} WITH NO DATA", r.get::<String, _>(9).trim_end_matches(';'));
                let st = Stmt { what: format!("materialized view {qualified}"), sql: in_tablespace(r.get(19), sql), table: None, references: None };
                if after_keys {
                    views_after_keys.push(st);
                } else {
                    s.objects.push(st);
                }
                if r.get::<bool, _>(12) {
                    refreshes.push(Stmt { what: format!("refresh {qualified}"), sql: format!("REFRESH MATERIALIZED VIEW {full}"), table: None, references: None });
                }
            }
            _ => {
                let cols: &[sqlx::postgres::PgRow] = columns_of.get(&oid).map(Vec::as_slice).unwrap_or_default();
                let partition_of: Option<String> = r.get(6);
                // Legacy inheritance (outside partitioning): the table is made `INHERITS` its
                // parents, which give it their columns (with their defaults and NOT NULL) and
                // their inheritable CHECK constraints; what the table has of its own on an
                // inherited column (a default, NOT NULL) is set on it afterwards.
                let inherits: Option<String> = r.get(20);
                let parent_oids: Vec<i64> = r.get(21);
                let mut defs = Vec::new();
                let mut copy_cols = Vec::new();
                for c in cols {
                    let (cname, ty, notnull, default, identity, generated, coll): (String, String, bool, Option<String>, String, String, Option<String>) =
                        (c.get(0), c.get(1), c.get(2), c.get(3), c.get(4), c.get(5), c.get(6));
                    if cname == tenant_column {
                        with_tenant.insert(qualified.clone());
                    }
                    if generated.is_empty() {
                        copy_cols.push(cname.clone());
                    }
                    if partition_of.is_some() {
                        continue;
                    }
                    if inherits.is_some() && !c.get::<bool, _>(7) {
                        let from_parents: Vec<&sqlx::postgres::PgRow> = parent_oids.iter().filter_map(|p| columns_of.get(p)?.iter().find(|pc| pc.get::<String, _>(0) == cname)).collect();
                        let column = format!("ALTER TABLE ONLY {full} ALTER COLUMN {}", qi(&cname));
                        if notnull && !from_parents.iter().any(|pc| pc.get::<bool, _>(2)) {
                            storage.push(Stmt { what: format!("NOT NULL of {qualified}.{cname}"), sql: format!("{column} SET NOT NULL"), table: None, references: None });
                        }
                        // The default is set whatever the parents' is: a parent's own default is
                        // itself set after the tables are made, so a table made from it would take
                        // the parent's default from before.
                        let sql = match &default {
                            Some(d) => Some(format!("{column} SET DEFAULT {d}")),
                            None if from_parents.iter().any(|pc| pc.get::<Option<String>, _>(3).is_some()) => Some(format!("{column} DROP DEFAULT")),
                            None => None,
                        };
                        if let Some(sql) = sql.filter(|_| generated.is_empty()) {
                            storage.push(Stmt { what: format!("default of {qualified}.{cname}"), sql, table: None, references: None });
                        }
                        continue;
                    }
                    let mut d = format!("{} {ty}", qi(&cname));
                    if let Some(co) = coll {
                        d.push_str(&format!(" COLLATE {co}"));
                    }
                    match (generated.as_str(), identity.as_str()) {
                        ("s", _) => d.push_str(&format!(" GENERATED ALWAYS AS ({}) STORED", default.clone().unwrap_or_default())),
                        // PostgreSQL 18: computed when read, not stored (not in the data either).
                        ("v", _) => d.push_str(&format!(" GENERATED ALWAYS AS ({}) VIRTUAL", default.clone().unwrap_or_default())),
                        (_, "a") => d.push_str(&format!(" GENERATED ALWAYS AS IDENTITY{}", c.get::<Option<String>, _>(8).map(|o| format!(" ({o})")).unwrap_or_default())),
                        (_, "d") => d.push_str(&format!(" GENERATED BY DEFAULT AS IDENTITY{}", c.get::<Option<String>, _>(8).map(|o| format!(" ({o})")).unwrap_or_default())),
                        _ => {
                            if let Some(def) = &default {
                                d.push_str(&format!(" DEFAULT {def}"));
                            }
                        }
                    }
                    if notnull {
                        d.push_str(" NOT NULL");
                    }
                    defs.push(d);
                }
                let unlogged = if r.get::<String, _>(4) == "u" { "UNLOGGED " } else { "" };
                let mut sql = match &partition_of {
                    Some(parent) => format!("CREATE {unlogged}TABLE {full} PARTITION OF {parent} {}", r.get::<Option<String>, _>(7).unwrap_or_default()),
                    None => format!("CREATE {unlogged}TABLE {full} (\n    {}\n)", defs.join(",\n    ")),
                };
                if let Some(parents) = &inherits {
                    sql.push_str(&format!(" INHERITS ({parents})"));
                }
                if let Some(pk) = r.get::<Option<String>, _>(8) {
                    // A partitioned table, or a partition partitioned again.
                    sql.push_str(&format!(" PARTITION BY {pk}"));
                }
                // Storage parameters, the table's and its TOAST table's.
                let options: Vec<String> = [r.get::<Option<String>, _>(13), r.get::<Option<String>, _>(14)].into_iter().flatten().filter(|o| !o.is_empty()).collect();
                if !options.is_empty() {
                    sql.push_str(&format!(" WITH ({})", options.join(", ")));
                }
                s.objects.push(Stmt { what: format!("table {qualified}"), sql: in_tablespace(r.get(19), sql), table: None, references: None });
                if let Some(index) = r.get::<Option<String>, _>(16) {
                    storage.push(Stmt { what: format!("cluster {qualified} on {index}"), sql: format!("ALTER TABLE {full} CLUSTER ON {index}"), table: None, references: None });
                }
                match r.get::<String, _>(17).as_str() {
                    "f" => storage.push(Stmt { what: format!("replica identity of {qualified}"), sql: format!("ALTER TABLE {full} REPLICA IDENTITY FULL"), table: None, references: None }),
                    "n" => storage.push(Stmt { what: format!("replica identity of {qualified}"), sql: format!("ALTER TABLE {full} REPLICA IDENTITY NOTHING"), table: None, references: None }),
                    "i" => {
                        if let Some(ix) = sqlx::query_scalar::<_, String>("SELECT quote_ident(ic.relname) FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid WHERE x.indrelid = $1::oid AND x.indisreplident")
                            .bind(oid).fetch_optional(&mut *conn).await.map_err(q("read replica identities"))? {
                            storage.push(Stmt { what: format!("replica identity of {qualified}"), sql: format!("ALTER TABLE {full} REPLICA IDENTITY USING INDEX {ix}"), table: None, references: None });
                        }
                    }
                    _ => {}
                }
                if r.get::<bool, _>(10) {
                    s.post.push(Stmt { what: format!("row security on {qualified}"), sql: format!("ALTER TABLE {full} ENABLE ROW LEVEL SECURITY"), table: None, references: None });
                }
                if r.get::<bool, _>(11) {
                    s.post.push(Stmt { what: format!("forced row security on {qualified}"), sql: format!("ALTER TABLE {full} FORCE ROW LEVEL SECURITY"), table: None, references: None });
                }
                table_names.push(qualified.clone());
                if kind == "r" {
                    let key_columns: Vec<String> = keys_of.remove(&oid).unwrap_or_default();
                    let root = r.get::<Option<String>, _>(15).and_then(|x| x.split_once('\u{1}').map(|(a, b)| super::tenancy::section_name(a, b)));
                    pending_tables.push(PgTable { schema: ns.clone(), name: name.clone(), columns: copy_cols, key_columns, class: TableClass::System, root });
                }
            }
        }
    }
    // Identity columns keep their sequences' values: set after the data.
    let identities: Vec<(String, String, String)> = rows(conn, format!(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname, pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname) \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE a.attidentity <> '' AND NOT c.relispartition AND {USER_NS} AND {}", not_ext("c.oid")), "read identity columns").await?
        .into_iter()
        .filter_map(|r| r.get::<Option<String>, _>(2).map(|seq| (r.get(0), r.get(1), seq)))
        .collect();
    let plain: Vec<(String, String, String)> = seqs.iter().map(|r| (r.get(0), r.get(1), format!("{}.{}", qi(&r.get::<String, _>(0)), qi(&r.get::<String, _>(1))))).collect();
    let relations: Vec<&str> = identities.iter().chain(&plain).map(|(_, _, seq)| seq.as_str()).collect();
    let mut values = sequence_values(conn, &relations).await?.into_iter();
    for ((table, column, _), (v, called)) in identities.iter().zip(values.by_ref()) {
        s.post.push(Stmt { what: format!("identity of {table}"), sql: format!("SELECT setval(pg_get_serial_sequence({}, {}), {v}, {called})", ql(table), ql(column)), table: None, references: None });
    }
    for ((ns, name, full), (v, called)) in plain.iter().zip(values) {
        s.post.push(Stmt { what: format!("value of {ns}.{name}"), sql: format!("SELECT setval({}, {v}, {called})", ql(full)), table: None, references: None });
    }
    // Constraints: keys, unique, check, exclusion first; foreign keys after. A partitioned
    // table's key is added to it alone (`ONLY`) and each partition's under its own name, then
    // attached, as the source has them: names kept, nothing left to timing.
    let cons = rows(conn, format!(
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), co.conname, pg_get_constraintdef(co.oid), co.contype::text, \
                n.nspname::text, c.relname::text, (SELECT rn.nspname::text || chr(1) || r.relname::text FROM pg_class r JOIN pg_namespace rn ON rn.oid = r.relnamespace WHERE r.oid = co.confrelid), \
                c.relkind = 'p', co.conparentid <> 0, \
                (SELECT quote_ident(pn.nspname) || '.' || quote_ident(pi.relname) FROM pg_inherits h JOIN pg_class pi ON pi.oid = h.inhparent JOIN pg_namespace pn ON pn.oid = pi.relnamespace WHERE h.inhrelid = co.conindid), \
                (SELECT quote_ident(ixn.nspname) || '.' || quote_ident(ix.relname) FROM pg_class ix JOIN pg_namespace ixn ON ixn.oid = ix.relnamespace WHERE ix.oid = co.conindid), \
                (SELECT pn.nspname::text || chr(1) || pt.relname::text FROM pg_inherits h JOIN pg_class pt ON pt.oid = h.inhparent JOIN pg_namespace pn ON pn.oid = pt.relnamespace WHERE h.inhrelid = c.oid), \
                (SELECT sp.spcname::text FROM pg_class ix JOIN pg_tablespace sp ON sp.oid = ix.reltablespace WHERE ix.oid = co.conindid AND co.contype IN ('p', 'u', 'x')) \
         FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE co.contype IN ('p', 'u', 'c', 'x', 'f') AND {USER_NS} AND {} \
           AND ((co.conislocal AND co.conparentid = 0) OR (co.contype IN ('p', 'u', 'x') AND co.conparentid <> 0)) \
         ORDER BY co.contype = 'f', n.nspname, c.relname, co.conname", not_ext("c.oid")), "read constraints").await?;
    let mut fks = Vec::new();
    let mut fk_stmts = Vec::new();
    let mut attaches = Vec::new();
    for r in &cons {
        let (table, name, def, kind): (String, String, String, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
        let section = super::tenancy::section_name(&r.get::<String, _>(4), &r.get::<String, _>(5));
        let references: Option<String> = r.get::<Option<String>, _>(6).and_then(|x| x.split_once('\u{1}').map(|(a, b)| super::tenancy::section_name(a, b)));
        let (partitioned, inherited): (bool, bool) = (r.get(7), r.get(8));
        let only = if (partitioned || inherited) && matches!(kind.as_str(), "p" | "u" | "x") { "ONLY " } else { "" };
        let st = Stmt {
            what: format!("constraint {name} on {section}"),
            sql: in_tablespace(r.get(12), format!("ALTER TABLE {only}{table} ADD CONSTRAINT {} {def}", qi(&name))),
            table: Some(section.clone()),
            references: if kind == "f" { references.clone() } else { None },
        };
        if kind == "f" {
            if let Some(parent) = &references {
                fks.push((section.clone(), parent.clone()));
            }
            fk_stmts.push(st);
        } else {
            s.post.push(st);
        }
        if let (true, Some(parent_index), Some(index)) = (inherited, r.get::<Option<String>, _>(9), r.get::<Option<String>, _>(10)) {
            let parent_table = r.get::<Option<String>, _>(11).and_then(|x| x.split_once('\u{1}').map(|(a, b)| super::tenancy::section_name(a, b)));
            attaches.push(Stmt { what: format!("index {index} attached to {parent_index}"), sql: format!("ALTER INDEX {parent_index} ATTACH PARTITION {index}"), table: parent_table, references: None });
        }
    }
    // Indexes not backing a constraint: a partitioned table's on it alone, each partition's
    // under its own name, attached to its parent's.
    for r in rows(conn, format!(
        "SELECT pg_get_indexdef(i.indexrelid), ic.relname::text, n.nspname::text, c.relname::text, \
                (SELECT quote_ident(pn.nspname) || '.' || quote_ident(pi.relname) FROM pg_inherits h JOIN pg_class pi ON pi.oid = h.inhparent JOIN pg_namespace pn ON pn.oid = pi.relnamespace WHERE h.inhrelid = i.indexrelid), \
                quote_ident(icn.nspname) || '.' || quote_ident(ic.relname), \
                (SELECT pn.nspname::text || chr(1) || pt.relname::text FROM pg_inherits h JOIN pg_class pt ON pt.oid = h.inhparent JOIN pg_namespace pn ON pn.oid = pt.relnamespace WHERE h.inhrelid = c.oid), \
                (SELECT sp.spcname::text FROM pg_tablespace sp WHERE sp.oid = ic.reltablespace) \
         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_namespace icn ON icn.oid = ic.relnamespace \
         WHERE {USER_NS} AND {} AND NOT EXISTS (SELECT 1 FROM pg_constraint co WHERE co.conindid = i.indexrelid AND co.contype IN ('p', 'u', 'x')) \
         ORDER BY i.indexrelid", not_ext("c.oid")), "read indexes").await? {
        let def: String = r.get(0);
        let section = super::tenancy::section_name(&r.get::<String, _>(2), &r.get::<String, _>(3));
        s.post.push(Stmt { what: format!("index {}", r.get::<String, _>(1)), sql: in_tablespace(r.get(7), def), table: Some(section), references: None });
        if let Some(parent_index) = r.get::<Option<String>, _>(4) {
            let parent_table = r.get::<Option<String>, _>(6).and_then(|x| x.split_once('\u{1}').map(|(a, b)| super::tenancy::section_name(a, b)));
            attaches.push(Stmt { what: format!("index {} attached to {parent_index}", r.get::<String, _>(1)), sql: format!("ALTER INDEX {parent_index} ATTACH PARTITION {}", r.get::<String, _>(5)), table: parent_table, references: None });
        }
    }
    // Views that lean on keys, once the keys exist; indexes attached; then what needs indexes.
    s.post.extend(views_after_keys);
    s.post.extend(attaches);
    s.post.extend(storage);
    s.post.extend(fk_stmts);
    // Triggers and policies.
    for r in rows(conn, format!(
        "SELECT pg_get_triggerdef(t.oid), t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE NOT t.tgisinternal AND t.tgparentid = 0 AND {USER_NS} AND {} ORDER BY t.oid", not_ext("c.oid")), "read triggers").await? {
        s.post.push(Stmt { what: format!("trigger {}", r.get::<String, _>(1)), sql: r.get(0), table: None, references: None });
    }
    for r in rows(conn, "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename), policyname, permissive, array_to_string(roles, ', '), cmd, qual, with_check FROM pg_policies ORDER BY 1, 2".into(), "read policies").await? {
        let (table, name, permissive, roles, cmd): (String, String, String, String, String) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        let mut sql = format!("CREATE POLICY {} ON {table} AS {permissive} FOR {cmd} TO {roles}", qi(&name));
        if let Some(u) = r.get::<Option<String>, _>(5) {
            sql.push_str(&format!(" USING ({u})"));
        }
        if let Some(w) = r.get::<Option<String>, _>(6) {
            sql.push_str(&format!(" WITH CHECK ({w})"));
        }
        s.post.push(Stmt { what: format!("policy {name} on {table}"), sql, table: None, references: None });
    }
    // Comments on schemas, tables, columns, views, types and functions.
    for r in rows(conn, format!(
        "SELECT CASE d.classoid \
            WHEN 'pg_class'::regclass THEN CASE WHEN d.objsubid > 0 THEN 'COLUMN ' || d.objoid::regclass::text || '.' || quote_ident((SELECT attname FROM pg_attribute WHERE attrelid = d.objoid AND attnum = d.objsubid)) \
                 ELSE (SELECT CASE relkind WHEN 'v' THEN 'VIEW ' WHEN 'm' THEN 'MATERIALIZED VIEW ' WHEN 'S' THEN 'SEQUENCE ' WHEN 'i' THEN 'INDEX ' ELSE 'TABLE ' END FROM pg_class WHERE oid = d.objoid) || d.objoid::regclass::text END \
            WHEN 'pg_namespace'::regclass THEN 'SCHEMA ' || quote_ident((SELECT nspname FROM pg_namespace WHERE oid = d.objoid)) \
            WHEN 'pg_type'::regclass THEN 'TYPE ' || d.objoid::regtype::text \
            WHEN 'pg_proc'::regclass THEN (SELECT CASE prokind WHEN 'p' THEN 'PROCEDURE ' WHEN 'a' THEN 'AGGREGATE ' ELSE 'FUNCTION ' END FROM pg_proc WHERE oid = d.objoid) || d.objoid::regprocedure::text \
            END, d.description \
         FROM pg_description d \
         WHERE d.classoid IN ('pg_class'::regclass, 'pg_namespace'::regclass, 'pg_type'::regclass, 'pg_proc'::regclass) AND {} \
           AND NOT (d.classoid = 'pg_namespace'::regclass AND (SELECT nspname FROM pg_namespace WHERE oid = d.objoid) IN ('public', 'pg_catalog', 'information_schema')) \
           AND d.objoid >= 16384 ORDER BY 1", not_ext("d.objoid")), "read comments").await? {
        if let Some(target) = r.get::<Option<String>, _>(0) {
            s.post.push(Stmt { what: format!("comment on {target}"), sql: format!("COMMENT ON {target} IS {}", ql(&r.get::<String, _>(1))), table: None, references: None });
        }
    }
    // Rules other than views' own.
    for r in rows(conn, format!(
        "SELECT pg_get_ruledef(rw.oid), rw.rulename::text, rw.ev_enabled::text, quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_rewrite rw JOIN pg_class c ON c.oid = rw.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE rw.rulename <> '_RETURN' AND {USER_NS} AND {} ORDER BY rw.oid", not_ext("c.oid")), "read rules").await? {
        let (def, name, enabled, table): (String, String, String, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
        s.post.push(Stmt { what: format!("rule {name} on {table}"), sql: def.trim_end_matches(';').to_string(), table: None, references: None });
        let mode = match enabled.as_str() {
            "D" => Some("DISABLE RULE"),
            "A" => Some("ENABLE ALWAYS RULE"),
            "R" => Some("ENABLE REPLICA RULE"),
            _ => None,
        };
        if let Some(m) = mode {
            s.post.push(Stmt { what: format!("rule {name} on {table}"), sql: format!("ALTER TABLE {table} {m} {}", qi(&name)), table: None, references: None });
        }
    }
    // Extended statistics objects, once their tables are there.
    for r in rows(conn, format!(
        "SELECT pg_get_statisticsobjdef(x.oid), n.nspname::text, x.stxname::text, tn.nspname::text, t.relname::text FROM pg_statistic_ext x JOIN pg_namespace n ON n.oid = x.stxnamespace \
         JOIN pg_class t ON t.oid = x.stxrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace WHERE {USER_NS} AND {} ORDER BY x.oid", not_ext("x.oid")), "read statistics objects").await? {
        let section = super::tenancy::section_name(&r.get::<String, _>(3), &r.get::<String, _>(4));
        s.post.push(Stmt { what: format!("statistics {}.{}", r.get::<String, _>(1), r.get::<String, _>(2)), sql: r.get(0), table: Some(section), references: None });
    }
    // Publications (not Safehold's own, which continuous protection makes): their tables and,
    // from PostgreSQL 15, schemas, row filters and column lists.
    for r in rows(conn, "SELECT p.oid::int8, p.pubname::text, p.puballtables, p.pubinsert, p.pubupdate, p.pubdelete, p.pubtruncate, p.pubviaroot FROM pg_publication p WHERE p.pubname NOT LIKE 'safehold\\_%' ORDER BY p.oid".into(), "read publications").await? {
        let (oid, name, all): (i64, String, bool) = (r.get(0), r.get(1), r.get(2));
        let publish: Vec<&str> = [(3, "insert"), (4, "update"), (5, "delete"), (6, "truncate")].into_iter().filter(|(i, _)| r.get::<bool, _>(*i)).map(|(_, w)| w).collect();
        let mut sql = format!("CREATE PUBLICATION {}{} WITH (publish = {}, publish_via_partition_root = {})", qi(&name), if all { " FOR ALL TABLES" } else { "" }, ql(&publish.join(", ")), r.get::<bool, _>(7));
        if !all {
            let (filter, cols) = if num >= 150_000 {
                ("pg_get_expr(pr.prqual, pr.prrelid)", "(SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a WHERE a.attrelid = pr.prrelid AND a.attnum = ANY(pr.prattrs))")
            } else {
                ("NULL::text", "NULL::text")
            };
            for t in rows(conn, format!("SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), {filter}, {cols} FROM pg_publication_rel pr JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE pr.prpubid = {oid} ORDER BY 1"), "read publications' tables").await? {
                let cols = t.get::<Option<String>, _>(2).map(|c| format!(" ({c})")).unwrap_or_default();
                let filter = t.get::<Option<String>, _>(1).map(|f| format!(" WHERE ({f})")).unwrap_or_default();
                sql.push_str(&format!("; ALTER PUBLICATION {} ADD TABLE {}{cols}{filter}", qi(&name), t.get::<String, _>(0)));
            }
            if num >= 150_000 {
                for n in rows(conn, format!("SELECT quote_ident(n.nspname) FROM pg_publication_namespace pn JOIN pg_namespace n ON n.oid = pn.pnnspid WHERE pn.pnpubid = {oid} ORDER BY 1"), "read publications' schemas").await? {
                    sql.push_str(&format!("; ALTER PUBLICATION {} ADD TABLES IN SCHEMA {}", qi(&name), n.get::<String, _>(0)));
                }
            }
        }
        s.post.push(Stmt { what: format!("publication {name}"), sql, table: None, references: None });
    }
    // Materialized views are filled last, once everything they read is there.
    s.post.extend(refreshes);
    // Event triggers at the very end: made earlier, they would fire on the restore's own DDL.
    for r in rows(conn, format!(
        "SELECT e.evtname::text, e.evtevent::text, e.evtfoid::regproc::text, array_to_string(ARRAY(SELECT quote_literal(t) FROM unnest(e.evttags) t), ', '), e.evtenabled::text \
         FROM pg_event_trigger e WHERE {} ORDER BY e.oid", not_ext("e.oid")), "read event triggers").await? {
        let (name, event, func, tags, enabled): (String, String, String, Option<String>, String) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        let when = tags.filter(|t| !t.is_empty()).map(|t| format!(" WHEN TAG IN ({t})")).unwrap_or_default();
        let mut sql = format!("CREATE EVENT TRIGGER {} ON {} {when} EXECUTE FUNCTION {func}()", qi(&name), qi(&event));
        match enabled.as_str() {
            "D" => sql.push_str(&format!("; ALTER EVENT TRIGGER {} DISABLE", qi(&name))),
            "R" => sql.push_str(&format!("; ALTER EVENT TRIGGER {} ENABLE REPLICA", qi(&name))),
            "A" => sql.push_str(&format!("; ALTER EVENT TRIGGER {} ENABLE ALWAYS", qi(&name))),
            _ => {}
        }
        s.post.push(Stmt { what: format!("event trigger {name}"), sql, table: None, references: None });
    }
    super::pg_objects::read(conn, &mut s).await?;
    s.stats = super::pg_stats::read(conn).await?;
    (s.owners, s.access) = super::pg_access::read(conn).await?;
    s.default_access = super::pg_access::read_defaults(conn).await?;
    let classes = classify(&table_names, &|t| with_tenant.contains(t), &fks, tenants_table);
    for mut t in pending_tables {
        t.class = classes.get(&format!("{}.{}", t.schema, t.name)).copied().unwrap_or(TableClass::System);
        s.tables.push(t);
    }
    Ok(s)
}

/// The schema section of an archive.
/// Inside [`leaving_out_unsupported`]: the schema is read as a server of this version
/// (`server_version_num`) can hold it.
pub(crate) fn archived_schema(reader: &ArchiveReader, index: &ArchiveIndex) -> Result<PgSchema> {
    let mut json = Vec::new();
    reader.read_section(index, "schema", &mut |c| {
        json.extend_from_slice(c);
        Ok(())
    })?;
    let mut schema: PgSchema = serde_json::from_slice(&json).map_err(|e| Error::validation(format!("the schema of backup {} is unreadable: {e}", reader.header.archive_id)).caused_by(&e))?;
    if let Ok(a) = RESTORING.try_with(Clone::clone) {
        // Owners and privileges after everything else (event triggers are the last of `post`,
        // and owners' changes are DDL they would see: they go before them).
        let made = super::pg_access::statements(&schema.owners, &schema.access, &schema.default_access, a.owners, a.privileges, &a.roles, a.version);
        let at = schema.post.iter().position(|st| st.what.starts_with("event trigger ")).unwrap_or(schema.post.len());
        schema.post.splice(at..at, made);
        let version = if a.leave_out_unsupported { a.version } else { i32::MAX };
        // A user mapping for a role the target lacks is left out, like a grant to it (the plan
        // names the role).
        schema.objects.retain(|st| super::user_mapping_role(st).is_none_or(|r| a.roles.iter().any(|x| x == r)));
        // Event triggers need a superuser: left out for another user when asked (the plan said).
        if a.leave_out_unsupported && !a.superuser {
            schema.post.retain(|st| !st.what.starts_with("event trigger "));
        }
        for st in schema.objects.iter_mut().chain(schema.post.iter_mut()) {
            // In a tablespace the target lacks: in the default one, when asked (the plan said).
            if let Some((space, body)) = tablespace_of(&st.sql).filter(|(t, _)| a.leave_out_unsupported && !a.tablespaces.contains(t)) {
                tracing::debug!("{} made in the default tablespace instead of {space}", st.what);
                st.sql = body.to_string();
            }
            let applying: Vec<&Feature> = FEATURES.iter().filter(|f| version < f.since && (f.applies)(st)).collect();
            for f in applying {
                if let Some((from, to)) = f.downgrade {
                    st.sql = st.sql.replace(from, to);
                }
            }
        }
    }
    Ok(schema)
}

tokio::task_local! {
    static RESTORING: Restoring;
}

/// How a restore makes the schema on its target, beyond the objects themselves.
#[derive(Debug, Clone, Default)]
pub struct Restoring {
    /// The target's `server_version_num`.
    pub version: i32,
    /// Leave out what the target's version cannot hold, as the plan said ([`unsupported`]: each
    /// such thing has a way to be left out, or the restore was refused).
    pub leave_out_unsupported: bool,
    /// Give the objects their owners, and their access lists.
    pub owners: bool,
    pub privileges: bool,
    /// The target's roles: an owner or grantee it lacks is left out (the plan names them).
    pub roles: Vec<String>,
    /// The extensions the target's server has.
    pub extensions: Vec<String>,
    /// Whether the restoring user is a superuser (only one can make event triggers).
    pub superuser: bool,
    /// The target's tablespaces: an object in one it lacks is refused, or made in the default one.
    pub tablespaces: Vec<String>,
}

impl Restoring {
    /// What the target at `url` (a database, or a server whose `postgres` answers) has.
    pub async fn on(url: &str, leave_out_unsupported: bool, owners: bool, privileges: bool) -> Result<Self> {
        let mut conn = match connect(url).await {
            Ok(c) => c,
            Err(_) => connect(admin_url(url)?.0.as_ref()).await?,
        };
        let version = server_version_num(&mut conn).await?;
        let roles: Vec<String> = sqlx::query_scalar("SELECT rolname::text FROM pg_roles").fetch_all(&mut conn).await.map_err(q("read the target's roles"))?;
        let extensions: Vec<String> = sqlx::query_scalar("SELECT name::text FROM pg_available_extensions").fetch_all(&mut conn).await.map_err(q("read the target's extensions"))?;
        let superuser: bool = sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetch_one(&mut conn).await.map_err(q("read the restoring user"))?;
        let tablespaces: Vec<String> = sqlx::query_scalar("SELECT spcname::text FROM pg_tablespace").fetch_all(&mut conn).await.map_err(q("read the target's tablespaces"))?;
        let _ = conn.close().await;
        Ok(Restoring { version, leave_out_unsupported, owners, privileges, roles, extensions, superuser, tablespaces })
    }

    /// The roles `schema`'s owners and grants name that the target lacks (when they are asked for).
    /// And the roles of user mappings the target lacks (those mappings are left out).
    pub fn missing_roles(&self, schema: &PgSchema) -> Vec<String> {
        let owned: &[super::pg_access::Owned] = if self.owners { &schema.owners } else { &[] };
        let (access, defaults): (&[super::pg_access::Access], &[super::pg_access::DefaultAccess]) = if self.privileges { (&schema.access, &schema.default_access) } else { (&[], &[]) };
        let mut named = super::pg_access::roles(owned, access, defaults);
        named.extend(schema.objects.iter().filter_map(super::user_mapping_role).map(str::to_string));
        named.into_iter().filter(|r| !self.roles.contains(r)).collect()
    }
}

/// Runs a restore that makes the schema as `how` says.
pub async fn restoring<F: std::future::Future>(how: Restoring, restore: F) -> F::Output {
    RESTORING.scope(how, restore).await
}

/// A feature of a newer PostgreSQL an archived statement may use.
struct Feature {
    since: i32,
    what: &'static str,
    applies: fn(&Stmt) -> bool,
    /// How `--skip-unsupported` leaves it out (the text replaced, by what), and what that means.
    downgrade: Option<(&'static str, &'static str)>,
    meaning: &'static str,
}

fn is(st: &Stmt, kinds: &[&str], text: &str) -> bool {
    kinds.iter().any(|k| st.what.starts_with(k)) && st.sql.contains(text)
}

const FEATURES: &[Feature] = &[
    Feature {
        since: 180_000,
        what: "a virtual generated column",
        applies: |st| is(st, &["table "], ") VIRTUAL"),
        downgrade: Some((") VIRTUAL", ") STORED")),
        meaning: "made a stored generated column (the same values, computed on write)",
    },
    Feature {
        since: 150_000,
        what: "a unique key with NULLS NOT DISTINCT",
        applies: |st| is(st, &["constraint ", "index ", "table "], "NULLS NOT DISTINCT"),
        downgrade: Some((" NULLS NOT DISTINCT", "")),
        meaning: "made without it (rows whose key columns are NULL no longer clash)",
    },
    Feature { since: 180_000, what: "a temporal key (WITHOUT OVERLAPS)", applies: |st| is(st, &["constraint ", "table "], "WITHOUT OVERLAPS"), downgrade: None, meaning: "" },
    Feature { since: 150_000, what: "a view with security_invoker", applies: |st| is(st, &["view ", "materialized view "], "security_invoker"), downgrade: None, meaning: "" },
    Feature { since: 140_000, what: "an SQL-standard function body (BEGIN ATOMIC)", applies: |st| is(st, &["function "], "BEGIN ATOMIC"), downgrade: None, meaning: "" },
];

/// What of `schema` the target `on` describes cannot hold, each said with what it is and what
/// `--skip-unsupported` would do (or that it cannot be left out): extensions the server does not
/// have, and features of newer versions. Each with whether it can be left out.
pub fn unsupported(on: &Restoring, schema: &PgSchema) -> Vec<(String, bool)> {
    let version = on.version;
    let mut out = Vec::new();
    for st in &schema.extensions {
        if let Some(name) = st.what.strip_prefix("extension ") {
            if !on.extensions.iter().any(|a| a == name) {
                out.push((format!("{}: the target server does not have this extension (install its package there, then restore); it cannot be left out", st.what), false));
            }
        }
    }
    if !on.superuser {
        for st in schema.post.iter().filter(|st| st.what.starts_with("event trigger ")) {
            out.push((format!("{}: only a superuser can make an event trigger, and the restoring user is not one; with --skip-unsupported it is left out", st.what), true));
        }
    }
    let mut spaces: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    for st in schema.objects.iter().chain(schema.post.iter()) {
        if let Some((space, _)) = tablespace_of(&st.sql).filter(|(t, _)| !on.tablespaces.contains(t)) {
            spaces.entry(space).or_default().push(&st.what);
        }
    }
    for (space, whats) in spaces {
        let more = if whats.len() > 5 { format!(" and {} more", whats.len() - 5) } else { String::new() };
        out.push((format!("tablespace {space} holds {}{more}, and the target server has no such tablespace (make it there first, CREATE TABLESPACE {} LOCATION '…'); with --skip-unsupported they are made in the database's default tablespace", whats.iter().take(5).copied().collect::<Vec<_>>().join(", "), qi(&space)), true));
    }
    for st in schema.objects.iter().chain(schema.post.iter()) {
        for f in FEATURES.iter().filter(|f| version < f.since && (f.applies)(st)) {
            let major = f.since / 10000;
            out.push(match f.downgrade {
                Some(_) => (format!("{} has {}, which PostgreSQL has from version {major} on (the target runs {}); with --skip-unsupported it is {}", st.what, f.what, version / 10000, f.meaning), true),
                None => (format!("{} has {}, which PostgreSQL has from version {major} on (the target runs {}); it cannot be left out: restore onto PostgreSQL {major} or later", st.what, f.what, version / 10000), false),
            });
        }
    }
    out
}

/// What an incremental or differential backup needs of its parent.
#[derive(Debug, Clone)]
pub struct Parent {
    /// `pg_current_snapshot()` as the parent's backup saw it.
    pub snapshot: String,
    tables: ParentTables,
    /// The storage (`pg_relation_filenode`) of each table whose rows the parent carried with
    /// their positions, by the header's salted hash of the table's name: such a table is a
    /// delta by positions only while its rows stay where they were (no rewrite since).
    filenodes: std::collections::HashMap<String, String>,
    salt: String,
}

/// The parent's tables and their COPY columns: by name (read from the unlocked archive), or as
/// the salted hashes of its plaintext header (read without the key).
#[derive(Debug, Clone)]
enum ParentTables {
    Named(std::collections::HashMap<String, Vec<String>>),
    Hashed { salt: String, tables: std::collections::HashMap<String, String> },
}

/// How an incremental finds a table's deletes: by the parent's positions of the rows it keeps,
/// or (after a parent from before positions) by every primary key at the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delta {
    Positions,
    Keys,
}

/// Whether a backup carries a table's rows with their positions: the table is read unfiltered
/// (its storage `filenode` known) and its changes are not found by key list. The header records
/// the storage of exactly these tables, and the workers read exactly these with `ctid`.
fn carries_positions(filenode: Option<&String>, delta: Option<Delta>) -> bool {
    filenode.is_some() && delta != Some(Delta::Keys)
}

/// The header basis's storage of each table carried with its rows' positions.
fn header_filenodes(header: &crate::archive::ArchiveHeader) -> std::collections::HashMap<String, String> {
    let nodes = header.basis.as_ref().and_then(|b| b.get("filenodes")).and_then(|f| f.as_object());
    nodes.into_iter().flatten().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect()
}

/// A table's name or columns as the header's basis keeps them: SHA-256 of the archive id and the
/// text, 16 hex digits.
fn basis_hash(salt: &str, text: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"safehold-basis\0");
    h.update(salt.as_bytes());
    h.update([0]);
    h.update(text.as_bytes());
    hex::encode(&h.finalize()[..8])
}

impl Parent {
    /// Reads what is needed from the parent archive (unlocked).
    pub fn from_archive(reader: &ArchiveReader) -> Result<Self> {
        let index = reader.index()?;
        let snapshot = index
            .source_state
            .get("txid_snapshot")
            .and_then(|v| v.as_str())
            .ok_or_else(|| Error::validation(format!("the parent backup {} records no snapshot", reader.header.archive_id)))?
            .to_string();
        let schema = archived_schema(reader, &index)?;
        Ok(Self {
            snapshot,
            tables: ParentTables::Named(schema.tables.into_iter().map(|t| (t.section(), t.columns)).collect()),
            filenodes: header_filenodes(&reader.header),
            salt: reader.header.archive_id.clone(),
        })
    }

    /// Reads what is needed from the parent's plaintext header: no key needed. `None` for an
    /// archive from before headers carried it.
    pub fn from_header(header: &crate::archive::ArchiveHeader) -> Option<Self> {
        let basis = header.basis.as_ref()?;
        let snapshot = basis.get("txid_snapshot")?.as_str()?.to_string();
        let tables = basis.get("tables")?.as_object()?.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect();
        Some(Self { snapshot, tables: ParentTables::Hashed { salt: header.archive_id.clone(), tables }, filenodes: header_filenodes(header), salt: header.archive_id.clone() })
    }

    /// How this backup carries the table's changes since the parent, if it does (else whole):
    /// by positions when the parent carried its rows with their positions and it was not
    /// rewritten since (`filenode` is its storage now); by its key list when it has a primary
    /// key and the parent recorded no positions for it (a parent from before positions). A table
    /// whose columns changed, or that was rewritten, is carried whole.
    fn delta_of(&self, t: &PgTable, filenode: Option<&String>) -> Option<Delta> {
        if !self.same_columns(t) {
            return None;
        }
        match self.filenodes.get(&basis_hash(&self.salt, &t.section())) {
            Some(was) => (filenode == Some(was)).then_some(Delta::Positions),
            None => (!t.key_columns.is_empty()).then_some(Delta::Keys),
        }
    }

    /// Whether the parent had this table with the same columns (else it is carried whole).
    fn same_columns(&self, t: &PgTable) -> bool {
        match &self.tables {
            ParentTables::Named(m) => m.get(&t.section()) == Some(&t.columns),
            ParentTables::Hashed { salt, tables } => tables.get(&basis_hash(salt, &t.section())) == Some(&basis_hash(salt, &t.columns.join("\0"))),
        }
    }
}

/// One consistent snapshot of a PostgreSQL database with its schema, taken before the archive
/// is started: the transaction snapshot goes into the archive's plaintext header, so a later
/// incremental backup can build on this one without the key.
pub struct Snapshot {
    conn: PgConnection,
    /// Transactions open for long when it was taken (see [`long_open_transactions`]).
    warnings: Vec<String>,
    exported: String,
    txid_snapshot: String,
    full_xmin: String,
    schema: PgSchema,
    tenant_filter: Option<std::collections::HashMap<String, String>>,
    /// The storage of each table read unfiltered (not a tenant export's filtered read): its
    /// rows are carried with their positions (see [`storage_of`]) unless its changes are found
    /// by key list.
    filenodes: std::collections::HashMap<String, String>,
}

impl Snapshot {
    /// The header's basis: the transaction snapshot, each table's columns, and the storage of
    /// the tables carried with their rows' positions; names hashed with the archive's id.
    /// `parent` is the backup this one builds on.
    pub fn basis(&self, archive_id: &str, parent: Option<&Parent>) -> serde_json::Value {
        let tables: std::collections::BTreeMap<String, String> =
            self.schema.tables.iter().map(|t| (basis_hash(archive_id, &t.section()), basis_hash(archive_id, &t.columns.join("\0")))).collect();
        let filenodes: std::collections::BTreeMap<String, &String> = self
            .schema
            .tables
            .iter()
            .zip(self.deltas(parent))
            .filter_map(|(t, d)| {
                let node = self.filenodes.get(&t.section());
                carries_positions(node, d).then(|| Some((basis_hash(archive_id, &t.section()), node?)))?
            })
            .collect();
        serde_json::json!({ "txid_snapshot": self.txid_snapshot, "tables": tables, "filenodes": filenodes })
    }

    /// How this backup carries each table's changes since `parent` (`None`: whole).
    fn deltas(&self, parent: Option<&Parent>) -> Vec<Option<Delta>> {
        self.schema.tables.iter().map(|t| parent.and_then(|p| p.delta_of(t, self.filenodes.get(&t.section())))).collect()
    }
}

/// The storage (`pg_relation_filenode`) of each table the backup reads unfiltered: such a
/// table's rows are carried with their positions (`ctid`), so the next incremental can carry only
/// its changes. Read before the rows (and without locking the tables): a rewrite (TRUNCATE,
/// VACUUM FULL, CLUSTER, a rewriting ALTER) between this and the read gives the table new
/// storage, so the next incremental, seeing storage other than the one recorded, carries the
/// table whole — never positions of one storage taken for another's.
async fn storage_of(conn: &mut PgConnection, schema: &PgSchema, tenant_filter: Option<&std::collections::HashMap<String, String>>) -> Result<std::collections::HashMap<String, String>> {
    let tables: Vec<&PgTable> = schema.tables.iter().filter(|t| tenant_filter.is_none_or(|f| !f.contains_key(&t.section()))).collect();
    if tables.is_empty() {
        return Ok(Default::default());
    }
    // One query for all of them: a backup's fixed cost stays one round trip.
    let nodes: Vec<Option<String>> = sqlx::query_scalar("SELECT pg_relation_filenode(format('%I.%I', s, n)::regclass)::text FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(s, n, i) ORDER BY i")
        .bind(tables.iter().map(|t| t.schema.clone()).collect::<Vec<_>>())
        .bind(tables.iter().map(|t| t.name.clone()).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await
        .map_err(q("read the tables' storage"))?;
    Ok(tables.iter().zip(nodes).filter_map(|(t, n)| Some((t.section(), n?))).collect())
}

/// Opens the snapshot: `REPEATABLE READ, READ ONLY, DEFERRABLE`, exported for the parallel
/// workers; reads the schema and the tables the request wants.
pub async fn snapshot(url: &str, req: &super::DumpScope) -> Result<Snapshot> {
    let mut conn = connect(url).await?;
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY, DEFERRABLE").execute(&mut conn).await.map_err(q("start the snapshot"))?;
    // Row security never filters a backup silently: a table it would filter is an error.
    sqlx::raw_sql("SET LOCAL row_security = off; SET LOCAL extra_float_digits = 3").execute(&mut conn).await.map_err(q("prepare the snapshot"))?;
    let (exported, txid_snapshot, next_xid): (String, String, i64) =
        sqlx::query_as("SELECT pg_export_snapshot(), pg_current_snapshot()::text, pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
            .fetch_one(&mut conn)
            .await
            .map_err(q("export the snapshot"))?;
    // A row's 32-bit xmin widened to xid8 with the current epoch (xids below the next one are
    // of this epoch, the others of the previous one).
    let (epoch, low) = (next_xid >> 32, next_xid & 0xffff_ffff);
    let full_xmin = format!(
        "(CASE WHEN xmin::text::bigint <= {low} THEN ({epoch}::bigint << 32) + xmin::text::bigint ELSE (({epoch}::bigint - 1) << 32) + xmin::text::bigint END)::text::xid8"
    );
    let mut schema = read_schema(&mut conn, &req.tenant_column, &req.tenants_table).await?;
    schema.tables.retain(|t| req.include.wants(t.class) && req.tables.as_ref().is_none_or(|only| only.contains(&t.section())));
    // The rows extensions keep as configuration: in a backup of the whole database.
    let mut unreadable = Vec::new();
    if req.tenants.is_empty() && req.tables.is_none() && req.include.system_data {
        (schema.extension_tables, unreadable) = super::pg_extdata::read(&mut conn).await?;
    }
    // A tenant export: each tenant table's rows of the chosen tenants (found by the tenant column
    // and foreign keys, as a tenant restore finds them), the shared tables whole.
    let tenant_filter = if req.tenants.is_empty() { None } else { Some(tenant_predicates(&mut conn, &schema, req).await?) };
    let filenodes = storage_of(&mut conn, &schema, tenant_filter.as_ref()).await?;
    let mut warnings = long_open_transactions(&mut conn, req.long_transaction).await;
    warnings.extend(unreadable);
    Ok(Snapshot { conn, warnings, exported, txid_snapshot, full_xmin, schema, tenant_filter, filenodes })
}

/// Sessions whose transaction — open longer than `longer` and holding a transaction id —
/// holds this snapshot's oldest transaction back: an incremental built on this backup carries
/// every row written since that transaction began (often a session left "idle in transaction").
/// Said as warnings naming the session and since when; best effort (a role that may not see
/// other sessions sees none).
async fn long_open_transactions(conn: &mut PgConnection, longer: std::time::Duration) -> Vec<String> {
    /// pid, user, application, database, state, since, seconds open.
    type Open = (i32, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>, i64);
    let rows: Vec<Open> = sqlx::query_as(
        "SELECT pid, usename::text, nullif(application_name, ''), datname::text, state, to_char(xact_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                extract(epoch FROM now() - xact_start)::bigint \
         FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() AND xact_start < now() - make_interval(secs => $1) \
         ORDER BY xact_start LIMIT 5",
    )
    .bind(longer.as_secs_f64())
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    rows.into_iter()
        .map(|(pid, user, app, db, state, since, seconds)| {
            let who = [user.map(|u| format!("user {u}")), app.map(|a| format!("application {a}")), db.map(|d| format!("database {d}"))].into_iter().flatten().collect::<Vec<_>>().join(", ");
            format!(
                "session {pid} ({who}) has been {} since {} ({} min): the snapshot starts at its transaction, so an incremental backup built on this one carries every row written since then; end that session (SELECT pg_terminate_backend({pid})) or set idle_in_transaction_session_timeout",
                state.unwrap_or_else(|| "in a transaction".into()),
                since.unwrap_or_default(),
                seconds / 60
            )
        })
        .collect()
}

/// Dumps the database at `url` into `archive`: every table whole, or — with a `parent` — only
/// the rows written since the parent's snapshot (by any transaction the parent could not see,
/// including ones still open then) plus the positions of the rows it does not carry (or, in a
/// chain begun before positions, every primary key), from which deletes are found.
pub async fn dump(url: &str, snap: Snapshot, archive: &mut ArchiveWriter, req: &super::DumpScope, parent: Option<&Parent>, cancel: &CancelToken, progress: &ProgressSink) -> Result<DumpStats> {
    // How each table's changes are carried (as the header's basis says).
    let delta = snap.deltas(parent);
    let Snapshot { mut conn, warnings, exported: snapshot, txid_snapshot: xmin, full_xmin, schema, tenant_filter, filenodes } = snap;
    let mut sec = archive.section("schema", "schema");
    sec.write(&serde_json::to_vec(&schema).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))?)?;
    sec.finish()?;

    // Parallel workers: more connections that import the exported snapshot, so every table is
    // read as of the same instant; each takes the next piece of work (biggest table first) from
    // one queue, and their sections stream into the archive side by side. A big table is several
    // pieces: ranges of its pages, read by whichever workers are free, into its one section.
    // Sizes by the planner's page count (`relpages`, kept by VACUUM and ANALYZE): reading the
    // files' sizes would lock every table before the workers start.
    let sizes: std::collections::HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT n.nspname || '.' || c.relname, greatest(c.relpages, 0)::int8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(q("read table sizes"))?
    .into_iter()
    .collect();
    let pages = |i: usize| sizes.get(&schema.tables[i].section()).copied().unwrap_or(0);
    // The tables without a row, found in one query: their sections are written without a COPY
    // each (a schema of many empty tables costs one round trip).
    let empty = empty_tables(&mut conn, &schema.tables).await?;
    let mut order: Vec<usize> = (0..schema.tables.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(pages(i)));
    let version = server_version_num(&mut conn).await?;
    let mut conns = vec![conn];
    // No more connections than tables with rows to read.
    for _ in 1..req.jobs.clamp(1, (schema.tables.len() - empty.len()).max(1)) {
        match worker_connection(url, &snapshot).await {
            Ok(mut c) => {
                bind_tenants(&mut c, &req.tenants).await?;
                conns.push(c)
            }
            // The server may allow no more connections: fewer workers read it, on the same snapshot.
            Err(e) => {
                tracing::warn!("a parallel backup worker could not start ({}); continuing with {} connections", e.message, conns.len());
                break;
            }
        }
    }
    // Page ranges need TID range scans (PostgreSQL 14 and later): before, each range would scan
    // the whole table. Only whole tables are split (an incremental's changed rows and a tenant
    // export's are read by one query each).
    let ranges_scan = version >= 140000;
    let split_at = split_pages();
    let queue: std::collections::VecDeque<Piece> = order
        .into_iter()
        .flat_map(|i| {
            let t = &schema.tables[i];
            let whole = delta[i].is_none() && tenant_filter.as_ref().is_none_or(|f| !f.contains_key(&t.section()));
            let p = pages(i);
            if conns.len() < 2 || !ranges_scan || !whole || p < split_at {
                return vec![Piece { table: i, delta: delta[i], pages: None, split: None }];
            }
            // (A threshold of 0, for tests: every table, even one the planner thinks empty.)
            let n = if split_at == 0 { 2 * conns.len() as i64 } else { (p / split_at).clamp(2, 4 * conns.len() as i64) };
            let split = std::sync::Arc::new(Split { section: std::sync::Mutex::new(None), left: std::sync::atomic::AtomicUsize::new(n as usize), rows: std::sync::atomic::AtomicU64::new(0) });
            // The last range is open-ended: pages added since the size was read are read too.
            (0..n).map(|k| Piece { table: i, delta: None, pages: Some((p * k / n, (k + 1 < n).then(|| p * (k + 1) / n))), split: Some(split.clone()) }).collect()
        })
        .collect();
    let workers = conns.len();
    let queue = std::sync::Mutex::new(queue);
    let shared = std::sync::Mutex::new(archive);
    let counters = (std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0));
    let ctx = DumpCtx { schema: &schema, req, parent, tenant_filter: tenant_filter.as_ref(), filenodes: &filenodes, full_xmin: &full_xmin, empty: &empty, archive: &shared, queue: &queue, cancel, progress, done: &counters.0, rows: &counters.1 };
    let results = futures_util::future::try_join_all(conns.iter_mut().map(|c| dump_worker(c, &ctx))).await?;
    let mut warnings = warnings;
    if let Some(c) = conns.first_mut() {
        warnings.extend(dump_large_objects(c, &shared, cancel).await?);
        super::pg_extdata::dump(c, &schema.extension_tables, &shared, cancel).await?;
        warnings.extend(not_carried(c).await?);
    }
    let archive = shared.into_inner().map_err(|_| Error::new(ErrorCode::Internal, "a backup worker failed"))?;
    let mut stats = DumpStats { warnings, ..Default::default() };
    for (rows, tables, tenants) in results {
        stats.rows += rows;
        stats.tables += tables;
        stats.tenant_count += tenants;
    }
    archive.index_mut().source_state = serde_json::json!({ "snapshot": snapshot, "txid_snapshot": xmin, "server_version": schema.server_version, "workers": workers });
    // A transaction left open holds the parent's snapshot back: say how many of the rows this
    // incremental carries were in the parent already (only then: it costs a count per table).
    if let (Some(p), false, Some(c)) = (parent, stats.warnings.is_empty(), conns.first_mut()) {
        let deltas = schema.tables.iter().zip(&delta).filter(|(_, d)| d.is_some()).map(|(t, _)| t);
        if let Some(w) = rows_carried_again(c, deltas, p, &full_xmin).await {
            stats.warnings.push(w);
        }
    }
    for mut c in conns {
        let _ = sqlx::query("COMMIT").execute(&mut c).await;
        let _ = c.close().await;
    }
    Ok(stats)
}

/// Which of `tables` (their indexes) have no row in the transaction's snapshot: those whose
/// files are empty (0 bytes). A row the snapshot sees is in its table's file until no snapshot
/// can see it (VACUUM keeps it for this one), so an empty file holds none of them. (A TRUNCATE
/// committed after the snapshot empties the file for a COPY too: like `pg_dump`'s, a backup's
/// snapshot does not hold rows a TRUNCATE removed.) A file's size is read under a brief lock of
/// its table: a table locked by another session is not waited for (20 ms at most), the backup's
/// workers wait for it as they would have. Under a savepoint: should the query fail (a lock not
/// had in time, a table this role may not read), none is taken as empty and each table's own
/// COPY does its work.
async fn empty_tables(conn: &mut PgConnection, tables: &[PgTable]) -> Result<std::collections::HashSet<usize>> {
    let names: Vec<String> = tables.iter().map(|t| format!("{}.{}", qi(&t.schema), qi(&t.name))).collect();
    sqlx::raw_sql("SAVEPOINT safehold_empty; SET LOCAL lock_timeout = '20ms'").execute(&mut *conn).await.map_err(q("look for empty tables"))?;
    let found = sqlx::query_scalar::<_, i64>("SELECT k - 1 FROM unnest($1::text[]) WITH ORDINALITY AS t(name, k) WHERE pg_relation_size(to_regclass(name)) = 0")
        .bind(&names)
        .fetch_all(&mut *conn)
        .await;
    // Rolled back either way: the lock timeout goes with the savepoint (the answer is read).
    sqlx::raw_sql("ROLLBACK TO SAVEPOINT safehold_empty; RELEASE SAVEPOINT safehold_empty").execute(&mut *conn).await.map_err(q("look for empty tables"))?;
    Ok(found.map(|f| f.into_iter().map(|k| k as usize).collect()).unwrap_or_else(|e| {
        tracing::debug!("the empty tables were not looked for: {e}");
        std::collections::HashSet::new()
    }))
}

/// An empty section `name` of `kind` (what a COPY of no rows writes).
fn empty_section(archive: &std::sync::Mutex<&mut ArchiveWriter>, name: &str, kind: &str) -> Result<u64> {
    let mut archive = archive.lock().map_err(|_| Error::new(ErrorCode::Internal, "a backup worker failed while writing the archive"))?;
    let sec = archive.begin(name, kind);
    archive.end(sec)?;
    Ok(0)
}

/// What the database has that a backup does not carry yet, each kind with how many and the
/// first names: said as a warning of the backup, so nobody learns it at restore time. And the
/// user mappings whose password the backup left out (it keeps no secret of another server).
pub async fn not_carried(conn: &mut PgConnection) -> Result<Vec<String>> {
    let kinds: [(&str, String); 5] = [
        ("operator families made apart (CREATE OPERATOR FAMILY), with their classes", format!("SELECT format('%s.%s', n.nspname, f.opfname) FROM pg_opfamily f JOIN pg_namespace n ON n.oid = f.opfnamespace WHERE {USER_NS} AND {} AND NOT EXISTS (SELECT 1 FROM pg_opclass c WHERE c.opcfamily = f.oid AND c.opcname = f.opfname AND c.opcnamespace = f.opfnamespace)", not_ext("f.oid"))),
        ("text search parsers", format!("SELECT format('%s.%s', n.nspname, t.prsname) FROM pg_ts_parser t JOIN pg_namespace n ON n.oid = t.prsnamespace WHERE {USER_NS} AND {}", not_ext("t.oid"))),
        ("text search templates", format!("SELECT format('%s.%s', n.nspname, t.tmplname) FROM pg_ts_template t JOIN pg_namespace n ON n.oid = t.tmplnamespace WHERE {USER_NS} AND {}", not_ext("t.oid"))),
        ("foreign-data wrappers outside an extension", format!("SELECT w.fdwname::text FROM pg_foreign_data_wrapper w WHERE {}", not_ext("w.oid"))),
        ("user mapping passwords (a backup keeps no secret of another server: set them again after a restore)", "SELECT format('%s on server %s', u.usename, u.srvname) FROM pg_user_mappings u WHERE EXISTS (SELECT 1 FROM pg_options_to_table(u.umoptions) WHERE option_name = 'password')".to_string()),
    ];
    // One query for all kinds: a backup's fixed cost stays one round trip.
    let union = kinds.iter().enumerate().map(|(i, (_, sql))| format!("SELECT {i} AS k, x.n FROM ({sql}) AS x(n)")).collect::<Vec<_>>().join(" UNION ALL ");
    let rows: Vec<(i32, String)> = sqlx::query_as(AssertSqlSafe(format!("{union} ORDER BY 1, 2"))).fetch_all(&mut *conn).await.map_err(q("look for objects a backup does not carry"))?;
    let mut found = Vec::new();
    for (i, (kind, _)) in kinds.iter().enumerate() {
        let names: Vec<&str> = rows.iter().filter(|(k, _)| *k as usize == i).map(|(_, n)| n.as_str()).collect();
        if !names.is_empty() {
            let more = if names.len() > 5 { format!(", and {} more", names.len() - 5) } else { String::new() };
            found.push(format!("{} {kind} ({}{more})", names.len(), names.iter().take(5).copied().collect::<Vec<_>>().join(", ")));
        }
    }
    let passwords = found.iter().position(|f| f.contains("user mapping passwords")).map(|i| found.remove(i));
    let mut out: Vec<String> = (!found.is_empty()).then(|| format!("not in this backup (Safehold does not carry them yet; make them again after a restore): {}", found.join("; "))).into_iter().collect();
    out.extend(passwords.map(|p| format!("not in this backup: {p}")));
    Ok(out)
}

/// The section of an archive that holds the database's large objects (`oid`, data), whole in
/// every backup: they have no key an incremental could compare, and no change time.
pub const LARGE_OBJECTS: &str = "large_objects";

/// Writes the large objects on the snapshot, if there are any. A role that may not read some of
/// them gets a warning naming how many, and the backup goes on without them.
async fn dump_large_objects(conn: &mut PgConnection, archive: &std::sync::Mutex<&mut ArchiveWriter>, cancel: &CancelToken) -> Result<Option<String>> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_largeobject_metadata").fetch_one(&mut *conn).await.map_err(q("count the large objects"))?;
    if n == 0 {
        return Ok(None);
    }
    sqlx::query("SAVEPOINT safehold_large_objects").execute(&mut *conn).await.map_err(q("read the large objects"))?;
    if let Err(e) = sqlx::query("SELECT count(lo_get(oid, 0, 1)) FROM pg_largeobject_metadata").execute(&mut *conn).await {
        sqlx::query("ROLLBACK TO SAVEPOINT safehold_large_objects").execute(&mut *conn).await.map_err(q("read the large objects"))?;
        return Ok(Some(format!("the database has {n} large objects that this role may not read ({e}): they are not in this backup; back up as their owner or a superuser")));
    }
    copy_section(conn, archive, LARGE_OBJECTS, "large_objects", "COPY (SELECT oid, lo_get(oid) FROM pg_largeobject_metadata ORDER BY oid) TO STDOUT", None, cancel).await?;
    Ok(None)
}

/// Loads the large objects of the chain's newest backup (each backup has them all).
pub(super) async fn load_large_objects(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, chain: &[(std::sync::Arc<ArchiveReader>, ArchiveIndex)], cancel: &CancelToken) -> Result<u64> {
    let Some((reader, index)) = chain.last() else { return Ok(0) };
    if index.section(LARGE_OBJECTS).is_none() {
        return Ok(0);
    }
    sqlx::raw_sql("CREATE TEMP TABLE safehold_large_objects (loid oid, data bytea) ON COMMIT DROP").execute(&mut **tx).await.map_err(|e| restore_error("the large objects", &e))?;
    copy_in(tx, reader, index, LARGE_OBJECTS, "pg_temp.safehold_large_objects (loid, data) FROM STDIN", cancel).await?;
    let n: i64 = sqlx::query_scalar("SELECT count(lo_from_bytea(loid, data)) FROM pg_temp.safehold_large_objects").fetch_one(&mut **tx).await.map_err(|e| restore_error("the large objects", &e))?;
    sqlx::raw_sql("DROP TABLE pg_temp.safehold_large_objects").execute(&mut **tx).await.map_err(|e| restore_error("the large objects", &e))?;
    Ok(n as u64)
}

/// How many rows an incremental on `parent` carries that the parent already had: written by
/// transactions that finished before the parent's snapshot but after its oldest open one began.
/// Best effort (a table it cannot count is left out of the count).
async fn rows_carried_again(conn: &mut PgConnection, deltas: impl Iterator<Item = &PgTable>, parent: &Parent, full_xmin: &str) -> Option<String> {
    let (mut again, mut carried) = (0i64, 0i64);
    for t in deltas {
        let sql = format!(
            "SELECT count(*) FILTER (WHERE pg_visible_in_snapshot({full_xmin}, {snap}::pg_snapshot)), count(*) FROM ONLY {}.{} WHERE {full_xmin} >= pg_snapshot_xmin({snap}::pg_snapshot)",
            qi(&t.schema),
            qi(&t.name),
            snap = ql(&parent.snapshot)
        );
        if let Ok((a, c)) = sqlx::query_as::<_, (i64, i64)>(AssertSqlSafe(sql)).fetch_one(&mut *conn).await {
            again += a;
            carried += c;
        }
    }
    (again > 0).then(|| {
        format!(
            "{again} of the {carried} rows this incremental carries were in its parent backup already: a transaction open when the parent was taken held its snapshot back, so rows written since that transaction began are carried again (the backup is larger, not wrong); end the session named above"
        )
    })
}

/// A connection reading inside the snapshot another connection exported.
async fn worker_connection(url: &str, snapshot: &str) -> Result<PgConnection> {
    let mut c = connect(url).await?;
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut c).await.map_err(q("start a worker's transaction"))?;
    sqlx::query(AssertSqlSafe(format!("SET TRANSACTION SNAPSHOT {}", ql(snapshot)))).execute(&mut c).await.map_err(q("share the snapshot with a worker"))?;
    sqlx::raw_sql("SET LOCAL row_security = off; SET LOCAL extra_float_digits = 3").execute(&mut c).await.map_err(q("prepare a worker"))?;
    Ok(c)
}

/// Tables of at least this many pages (8 kB each; 64 MiB) are read by several workers together,
/// each a range of pages, unless `SAFEHOLD_BACKUP_SPLIT_PAGES` or [`with_split_pages`] says otherwise.
const SPLIT_PAGES: i64 = 8192;

tokio::task_local! {
    static SPLIT_PAGES_HERE: i64;
}

/// Runs `backup` with tables of `pages` pages or more read in page ranges by several workers
/// (tests use it to split small tables; 0 splits every table). Only the backup awaited inside
/// sees it.
pub async fn with_split_pages<F: std::future::Future>(pages: i64, backup: F) -> F::Output {
    SPLIT_PAGES_HERE.scope(pages, backup).await
}

fn split_pages() -> i64 {
    super::threshold(&SPLIT_PAGES_HERE, "SAFEHOLD_BACKUP_SPLIT_PAGES", SPLIT_PAGES).max(0)
}

/// A piece of a backup's work: a table whole or its changes since the parent (`delta`), or a
/// range of its pages (`[from, to)`, the last open-ended) that shares the table's sections with
/// the table's other ranges.
struct Piece {
    table: usize,
    delta: Option<Delta>,
    pages: Option<(i64, Option<i64>)>,
    split: Option<std::sync::Arc<Split>>,
}

/// A table read in page ranges by several workers into one section: begun by the first range
/// that starts, ended by the last that finishes. Rows go in whole (COPY's text format ends each
/// row with its only raw newline), so the section is the table's rows, in another order.
struct Split {
    section: std::sync::Mutex<Option<TableSections>>,
    left: std::sync::atomic::AtomicUsize,
    rows: std::sync::atomic::AtomicU64,
}

/// The sections one table's rows go to: the rows, and their positions (`<table>#ctids`, in the
/// same order) with how many were written.
struct TableSections {
    rows: crate::archive::Section,
    ctids: Option<(crate::archive::Section, u64)>,
}

/// What the dump workers share.
struct DumpCtx<'a, 'w> {
    schema: &'a PgSchema,
    req: &'a super::DumpScope,
    parent: Option<&'a Parent>,
    tenant_filter: Option<&'a std::collections::HashMap<String, String>>,
    /// The storage of the tables read unfiltered (see [`storage_of`]).
    filenodes: &'a std::collections::HashMap<String, String>,
    full_xmin: &'a str,
    /// Tables without a row in the snapshot ([`empty_tables`]): nothing to read.
    empty: &'a std::collections::HashSet<usize>,
    archive: &'a std::sync::Mutex<&'w mut ArchiveWriter>,
    queue: &'a std::sync::Mutex<std::collections::VecDeque<Piece>>,
    cancel: &'a CancelToken,
    progress: &'a ProgressSink,
    done: &'a std::sync::atomic::AtomicU64,
    rows: &'a std::sync::atomic::AtomicU64,
}

/// Takes work from the queue until it is empty; returns the rows, tables and tenants it counted.
async fn dump_worker(conn: &mut PgConnection, cx: &DumpCtx<'_, '_>) -> Result<(u64, u64, u64)> {
    use std::sync::atomic::Ordering::SeqCst;
    let (mut rows_total, mut tables, mut tenants) = (0u64, 0u64, 0u64);
    let total = cx.schema.tables.len() as u64;
    loop {
        cx.cancel.check()?;
        let Some(piece) = cx.queue.lock().ok().and_then(|mut q| q.pop_front()) else { return Ok((rows_total, tables, tenants)) };
        let t = &cx.schema.tables[piece.table];
        (cx.progress)(Progress { phase: "backup".into(), table: Some(t.section()), tables_done: cx.done.load(SeqCst), tables_total: total, rows: cx.rows.load(SeqCst), bytes: 0 });
        // Each row's position first (split off into `#ctids`), unless the table's changes are
        // found by key list.
        let positions = carries_positions(cx.filenodes.get(&t.section()), piece.delta);
        let mut cols: Vec<String> = positions.then(|| "ctid".to_string()).into_iter().collect();
        cols.extend(t.columns.iter().map(|c| qi(c)));
        // ONLY: a table's own rows, never those of tables that inherit from it.
        let from = format!("ONLY {}.{}", qi(&t.schema), qi(&t.name));
        let snap = cx.parent.filter(|_| piece.delta.is_some()).map(|p| ql(&p.snapshot));
        let (sql, mode) = match (&snap, piece.pages) {
            (None, Some((first, end))) => {
                let mut range = vec![format!("ctid >= '({first},0)'::tid")];
                range.extend(end.map(|e| format!("ctid < '({e},0)'::tid")));
                (format!("COPY (SELECT {} FROM {from} WHERE {}) TO STDOUT", cols.join(", "), range.join(" AND ")), None)
            }
            (None, None) => match cx.tenant_filter.and_then(|f| f.get(&t.section())) {
                Some(pred) => (format!("COPY (SELECT {} FROM {from} l WHERE {pred}) TO STDOUT", cols.iter().map(|c| format!("l.{c}")).collect::<Vec<_>>().join(", ")), None),
                None if positions => (format!("COPY (SELECT {} FROM {from}) TO STDOUT", cols.join(", ")), None),
                None => (format!("COPY {} TO STDOUT", t.copy_target()), None),
            },
            (Some(snap), _) => (
                // Every row written by a transaction not finished before the parent's snapshot's
                // xmin: the ones the parent could not see (in progress, or started after it) and,
                // to be safe, the ones of transactions that finished between its xmin and xmax —
                // pg_visible_in_snapshot cannot tell a subtransaction of a transaction that was
                // still open (a savepoint's rows) from one that had finished.
                format!("COPY (SELECT {} FROM {from} WHERE {} >= pg_snapshot_xmin({snap}::pg_snapshot)) TO STDOUT", cols.join(", "), cx.full_xmin),
                Some("delta"),
            ),
        };
        let none = cx.empty.contains(&piece.table);
        let (rows, finished) = copy_table(conn, cx.archive, piece.split.as_deref(), &t.section(), (!none).then_some(sql.as_str()), mode, positions, cx.cancel).await?;
        let kept = match &snap {
            // An empty table: no positions, no keys.
            Some(_) if none => {
                let (suffix, kind) = if piece.delta == Some(Delta::Positions) { ("#live", "ctids") } else { ("#keys", "keys") };
                empty_section(cx.archive, &format!("{}{suffix}", t.section()), kind)?
            }
            // Deletes: the delta lists the positions of the rows it does not carry (the parent
            // had them, where they still are), or every key at the snapshot.
            Some(snap) if piece.delta == Some(Delta::Positions) => {
                let live_sql = format!("COPY (SELECT ctid FROM {from} WHERE {} < pg_snapshot_xmin({snap}::pg_snapshot)) TO STDOUT", cx.full_xmin);
                rows + copy_positions(conn, cx.archive, &format!("{}#live", t.section()), &live_sql, cx.cancel).await?
            }
            Some(_) => {
                let keys: Vec<String> = t.key_columns.iter().map(|c| qi(c)).collect();
                let keys_sql = format!("COPY (SELECT {} FROM {from}) TO STDOUT", keys.join(", "));
                copy_section(conn, cx.archive, &format!("{}#keys", t.section()), "keys", &keys_sql, None, cx.cancel).await?
            }
            None => rows,
        };
        if t.name == cx.req.tenants_table {
            tenants += kept;
        }
        rows_total += rows;
        let rows_now = cx.rows.fetch_add(rows, SeqCst) + rows;
        if finished {
            tables += 1;
            let done = cx.done.fetch_add(1, SeqCst) + 1;
            (cx.progress)(Progress { phase: "backup".into(), table: Some(t.section()), tables_done: done, tables_total: total, rows: rows_now, bytes: 0 });
        }
    }
}

/// Streams the rows of `sql` (a `COPY … TO STDOUT` in text format) to `sink`, whole rows at a
/// time (COPY's text format ends each row with its only raw newline) in batches of about
/// [`ROWS_BATCH`] bytes (the server sends a row a message); returns the rows.
async fn copy_rows(conn: &mut PgConnection, sql: &str, name: &str, cancel: &CancelToken, sink: &mut (dyn FnMut(&[u8]) -> Result<()> + Send)) -> Result<u64> {
    let (mut rows, mut batch) = (0u64, Vec::with_capacity(ROWS_BATCH + (64 << 10)));
    {
        let mut out = conn.copy_out_raw(sql).await.map_err(|e| Error::new(ErrorCode::Database, format!("PostgreSQL: cannot read {name}: {e}")).caused_by(&e))?;
        while let Some(bytes) = out.try_next().await.map_err(|e| Error::new(ErrorCode::Database, format!("PostgreSQL: reading {name} failed: {e}")).caused_by(&e))? {
            rows += bytes.iter().filter(|&&b| b == b'\n').count() as u64;
            batch.extend_from_slice(&bytes);
            if batch.len() >= ROWS_BATCH {
                if let Some(end) = batch.iter().rposition(|&b| b == b'\n') {
                    sink(&batch[..=end])?;
                    batch.drain(..=end);
                }
            }
            if cancel.is_cancelled() {
                break;
            }
        }
    }
    cancel.check()?;
    if batch.last().is_some_and(|&b| b != b'\n') {
        return Err(Error::new(ErrorCode::Database, format!("PostgreSQL: reading {name} ended inside a row")));
    }
    if !batch.is_empty() {
        sink(&batch)?;
    }
    Ok(rows)
}

/// How many bytes of rows [`copy_rows`] hands on at a time.
const ROWS_BATCH: usize = 256 << 10;

/// Reads one table's rows, or one page range of a split table's (into the sections the table's
/// ranges share), into the table's section; with `positions`, the query's first column is each
/// row's `ctid`, split off into the `#ctids` section beside it. Returns the rows read and whether
/// the table's sections were ended (always, for a table read whole; for a split table, by its
/// last range to finish). Without `sql` (a table known to have no rows) nothing is read.
#[allow(clippy::too_many_arguments)]
async fn copy_table(
    conn: &mut PgConnection,
    archive: &std::sync::Mutex<&mut ArchiveWriter>,
    split: Option<&Split>,
    name: &str,
    sql: Option<&str>,
    mode: Option<&str>,
    positions: bool,
    cancel: &CancelToken,
) -> Result<(u64, bool)> {
    use std::sync::atomic::Ordering::SeqCst;
    let failed = || Error::new(ErrorCode::Internal, "a backup worker failed while writing the archive");
    let own = std::sync::Mutex::new(None);
    let slot = split.map_or(&own, |s| &s.section);
    let (mut rows_buf, mut ctids_buf) = (Vec::new(), Vec::new());
    // Lock order: the table's sections, then the archive.
    let mut write = |bytes: &[u8]| -> Result<()> {
        let n = if positions { split_ctids(bytes, &mut rows_buf, &mut ctids_buf)? } else { 0 };
        let mut sections = slot.lock().map_err(|_| failed())?;
        let mut archive = archive.lock().map_err(|_| failed())?;
        let out = sections.get_or_insert_with(|| {
            let mut rows = archive.begin(name, "table");
            if let Some(m) = mode {
                rows.set_mode(m);
            }
            TableSections { rows, ctids: positions.then(|| (archive.begin(&format!("{name}#ctids"), "ctids"), 0)) }
        });
        archive.write(&mut out.rows, if positions { &rows_buf } else { bytes })?;
        if let Some((s, count)) = out.ctids.as_mut() {
            archive.write(s, &ctids_buf)?;
            *count += n;
        }
        Ok(())
    };
    write(&[])?;
    let rows = match sql {
        Some(sql) => copy_rows(conn, sql, name, cancel, &mut write).await?,
        None => 0,
    };
    let total = match split {
        Some(split) => {
            split.rows.fetch_add(rows, SeqCst);
            if split.left.fetch_sub(1, SeqCst) != 1 {
                return Ok((rows, false));
            }
            // The last range to finish: every other one has added its rows.
            split.rows.load(SeqCst)
        }
        None => rows,
    };
    let TableSections { rows: mut sec, ctids } = slot.lock().map_err(|_| failed())?.take().ok_or_else(failed)?;
    let mut archive = archive.lock().map_err(|_| failed())?;
    sec.add_rows(total);
    archive.end(sec)?;
    if let Some((mut s, count)) = ctids {
        s.add_rows(count);
        archive.end(s)?;
    }
    Ok((rows, true))
}

/// Splits rows read with their `ctid` first (`(page,tuple)`, a tab, the row; a table without
/// columns has no tab) into the rows without it (`rows`) and their positions as runs (`runs`:
/// lines of `page first last`, consecutive tuples of one page in one line, the first line's page
/// written `@page` and every other's as the distance from the line before); returns how many
/// rows. Each call's runs stand alone, so batches of several readers can follow each other.
fn split_ctids(bytes: &[u8], rows: &mut Vec<u8>, runs: &mut Vec<u8>) -> Result<u64> {
    use std::io::Write;
    let bad = || Error::new(ErrorCode::Database, "PostgreSQL: a row's position (ctid) could not be read");
    rows.clear();
    runs.clear();
    let (mut n, mut run): (u64, Option<(u32, u16, u16)>) = (0, None);
    // The batch's first run names its page (`@page`), each next one its page's distance from the
    // run before (`1` for the next page): a table read in order is a few repeated lines.
    let mut last: Option<u32> = None;
    let mut flush = |run: Option<(u32, u16, u16)>, runs: &mut Vec<u8>| {
        if let Some((p, a, b)) = run {
            let _ = match last {
                Some(q) => writeln!(runs, "{} {a} {b}", i64::from(p) - i64::from(q)),
                None => writeln!(runs, "@{p} {a} {b}"),
            };
            last = Some(p);
        }
    };
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if line.first() != Some(&b'(') {
            return Err(bad());
        }
        let close = line.iter().position(|&b| b == b')').ok_or_else(bad)?;
        let inner = std::str::from_utf8(line.get(1..close).ok_or_else(bad)?).map_err(|_| bad())?;
        let (p, t) = inner.split_once(',').ok_or_else(bad)?;
        let (p, t): (u32, u16) = (p.parse().map_err(|_| bad())?, t.parse().map_err(|_| bad())?);
        match line.get(close + 1) {
            Some(b'\t') => rows.extend_from_slice(&line[close + 2..]),
            Some(b'\n') => rows.push(b'\n'),
            _ => return Err(bad()),
        }
        run = match run {
            Some((rp, a, b)) if rp == p && t == b.wrapping_add(1) => Some((p, a, t)),
            other => {
                flush(other, runs);
                Some((p, t, t))
            }
        };
        n += 1;
    }
    flush(run, runs);
    Ok(n)
}

/// Writes the positions `sql` reads (one `ctid` a row) into the section `name` as runs; returns
/// how many positions.
async fn copy_positions(conn: &mut PgConnection, archive: &std::sync::Mutex<&mut ArchiveWriter>, name: &str, sql: &str, cancel: &CancelToken) -> Result<u64> {
    let locked = || archive.lock().map_err(|_| Error::new(ErrorCode::Internal, "a backup worker failed while writing the archive"));
    let mut sec = locked()?.begin(name, "ctids");
    let (mut rows, mut runs) = (Vec::new(), Vec::new());
    let n = copy_rows(conn, sql, name, cancel, &mut |bytes| {
        split_ctids(bytes, &mut rows, &mut runs)?;
        locked()?.write(&mut sec, &runs)
    })
    .await?;
    sec.add_rows(n);
    locked()?.end(sec)?;
    Ok(n)
}

/// Per tenant table (`schema.table`; a partition stands for its table), the condition (on
/// alias `l`) true for the rows of the request's tenants. The ids are read from the transaction's
/// settings `safehold.t<i>` ([`bind_tenants`]).
async fn tenant_predicates(conn: &mut PgConnection, schema: &PgSchema, req: &super::DumpScope) -> Result<std::collections::HashMap<String, String>> {
    use super::tenancy::{read_target, TenantScope, Tenancy};
    let target = read_target(conn).await?;
    let available: std::collections::BTreeSet<String> = schema.tables.iter().filter_map(|t| t.root.clone().or_else(|| target.table_of(&t.section()))).collect();
    let mut preds: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    bind_tenants(conn, &req.tenants).await?;
    for (i, tenant) in req.tenants.iter().enumerate() {
        let scope = TenantScope { tenant_id: tenant.clone(), tenant_column: req.tenant_column.clone(), tenants_table: req.tenants_table.clone(), references: Vec::new() };
        let mut ten = Tenancy::find(&target, &scope, &available)?;
        ten.param = format!("safehold.t{i}");
        let tenants_table = ten.tables().into_iter().find(|t| matches!(ten.reach.get(t), Some(super::tenancy::Reach::TenantsKey(_))));
        if let Some(tt) = &tenants_table {
            let found: Option<i32> = sqlx::query_scalar(AssertSqlSafe(format!("SELECT 1 FROM {} l WHERE {} LIMIT 1", target.own_rows(tt), ten.predicate(tt, "l", &|x: &str| target.own_rows(x), 0))))
                .fetch_optional(&mut *conn)
                .await
                .map_err(q("look the tenant up"))?;
            if found.is_none() && !req.absent_tenants_ok {
                return Err(Error::not_found(format!("there is no tenant \"{tenant}\" in {tt}: check the tenant id")));
            }
        }
        for t in ten.tables() {
            // (Each table's own rows: `ONLY` a table others inherit from, as the rows are read.)
            let pred = ten.predicate(&t, "l", &|x: &str| target.own_rows(x), 0);
            preds.entry(t).or_default().push(format!("({pred})"));
        }
    }
    // Each partition of a tenant table takes its table's condition.
    let mut out: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for t in &schema.tables {
        let table = t.root.clone().or_else(|| target.table_of(&t.section())).unwrap_or_else(|| t.section());
        if let Some(p) = preds.get(&table) {
            out.insert(t.section(), p.join(" OR "));
        }
    }
    Ok(out)
}

/// Puts the tenants' ids of a tenant export into the transaction's settings the conditions read.
async fn bind_tenants(conn: &mut PgConnection, tenants: &[String]) -> Result<()> {
    for (i, t) in tenants.iter().enumerate() {
        sqlx::query("SELECT set_config($1, $2, true)").bind(format!("safehold.t{i}")).bind(t).execute(&mut *conn).await.map_err(q("set the tenants for the export"))?;
    }
    Ok(())
}

/// Streams `COPY … TO STDOUT` into a new section; returns the rows written. Other workers'
/// sections may be open at the same time: the archive is locked only while a chunk is handed over.
pub(super) async fn copy_section(conn: &mut PgConnection, archive: &std::sync::Mutex<&mut ArchiveWriter>, name: &str, kind: &str, sql: &str, mode: Option<&str>, cancel: &CancelToken) -> Result<u64> {
    let locked = || archive.lock().map_err(|_| Error::new(ErrorCode::Internal, "a backup worker failed while writing the archive"));
    let mut sec = locked()?.begin(name, kind);
    if let Some(m) = mode {
        sec.set_mode(m);
    }
    let rows = copy_rows(conn, sql, name, cancel, &mut |bytes| locked()?.write(&mut sec, bytes)).await?;
    sec.add_rows(rows);
    locked()?.end(sec)?;
    Ok(rows)
}

/// Restores into the (empty) database at `url`, in one transaction.
/// `chain` is the backup and its ancestors, oldest (the full) first, each with its index; the
/// state restored is the newest one's.
/// With `clean`, the target's own objects (every user schema's tables, views, sequences, types,
/// functions, text search objects; foreign servers, casts; not extensions) are dropped first, in
/// the same transaction.
pub async fn restore(chain: &[(std::sync::Arc<ArchiveReader>, ArchiveIndex)], url: &str, clean: bool, cancel: &CancelToken, progress: &ProgressSink) -> Result<u64> {
    let (reader, index) = chain.last().ok_or_else(|| Error::new(ErrorCode::Internal, "an empty restore chain"))?;
    let schema = archived_schema(reader, index)?;
    let mut conn = connect(url).await?;
    let existing = count_user_relations(&mut conn).await?;
    if existing > 0 && !clean {
        return Err(Error::conflict(format!(
            "the target {} already has {existing} tables or views; restore into an empty database (e.g. createdb a new one), or replace them with --clean",
            super::redact(url)
        )));
    }
    let mut tx = conn.begin().await.map_err(q("start the restore transaction"))?;
    if clean {
        drop_user_objects(&mut tx).await?;
    }
    create_objects(&mut tx, &schema, cancel).await?;
    let mut total = 0u64;
    let n = schema.tables.len() as u64;
    for (done, t) in schema.tables.iter().enumerate() {
        cancel.check()?;
        progress(Progress { phase: "restore".into(), table: Some(t.section()), tables_done: done as u64, tables_total: n, rows: total, bytes: 0 });
        total += load_table(&mut tx, chain, t, cancel).await?;
    }
    progress(Progress { phase: "restore".into(), table: None, tables_done: n, tables_total: n, rows: total, bytes: 0 });
    load_large_objects(&mut tx, chain, cancel).await?;
    super::pg_extdata::load(&mut tx, chain, &schema, cancel).await?;
    run_in_order(&mut tx, &schema.post, cancel).await?;
    // The optimizer's statistics, so that the restored database is planned well at once (not
    // after autovacuum gets to it): imported where the target can, else gathered again.
    let mut analyze = gather_statistics(&mut tx, &schema, true).await?;
    let empty = restored_empty(chain, &schema);
    let unanalyzed: std::collections::HashSet<String> = left_unanalyzed(&schema, &empty).map(|t| format!("{}.{}", qi(&t.schema), qi(&t.name))).collect();
    analyze.retain(|t| !unanalyzed.contains(t));
    if !analyze.is_empty() {
        progress(Progress { phase: "analyze".into(), table: None, tables_done: n, tables_total: n, rows: total, bytes: 0 });
        sqlx::raw_sql(AssertSqlSafe(format!("ANALYZE {}", analyze.join(", ")))).execute(&mut *tx).await.map_err(|e| restore_error("the optimizer's statistics (ANALYZE)", &e))?;
    }
    tx.commit().await.map_err(q("commit the restore"))?;
    let _ = conn.close().await;
    Ok(total)
}

/// The tables (sections) `chain` carries no row of: a restore makes them empty.
pub(super) fn restored_empty(chain: &[(std::sync::Arc<ArchiveReader>, ArchiveIndex)], schema: &PgSchema) -> std::collections::HashSet<String> {
    schema.tables.iter().map(PgTable::section).filter(|s| chain.iter().filter_map(|(_, ix)| ix.section(s)).all(|e| e.rows == 0)).collect()
}

/// Of `empty` ([`restored_empty`]), the tables the source had never analyzed: a restore leaves
/// them unanalyzed too, as the source had them (ANALYZE would find no row to describe).
pub(super) fn left_unanalyzed<'a>(schema: &'a PgSchema, empty: &'a std::collections::HashSet<String>) -> impl Iterator<Item = &'a PgTable> + 'a {
    schema.tables.iter().filter(move |t| empty.contains(&t.section()) && schema.stats.never_analyzed(&t.schema, &t.name))
}

/// Whether a restore onto a server of `version` imports the statistics of `schema.table` (18 and
/// later, when the source had analyzed it) instead of analyzing it.
pub(super) fn imports_statistics(version: i32, schema: &PgSchema, table: (&str, &str)) -> bool {
    version >= super::pg_stats::IMPORTS_FROM && schema.stats.analyzed(table.0, table.1)
}

/// Imports the backup's statistics when the target can (PostgreSQL 18 and later), and returns
/// what a full restore must still ANALYZE (written for SQL): the tables whose statistics the
/// target did not take, those it does not import (`with_tables`: a parallel restore analyzed
/// them already) — every table on an older server —, and the partitioned tables above them.
pub(super) async fn gather_statistics(conn: &mut PgConnection, schema: &PgSchema, with_tables: bool) -> Result<Vec<String>> {
    let version = server_version_num(conn).await?;
    let imported = |t: &str, n: &str| imports_statistics(version, schema, (t, n));
    let refused = if version >= super::pg_stats::IMPORTS_FROM { schema.stats.import(conn).await? } else { Vec::new() };
    let mut out: Vec<String> = schema
        .tables
        .iter()
        .filter(|t| (with_tables && !imported(&t.schema, &t.name)) || refused.iter().any(|(s, n)| *s == t.schema && *n == t.name))
        .map(|t| format!("{}.{}", qi(&t.schema), qi(&t.name)))
        .collect();
    let roots: std::collections::BTreeSet<&String> = schema.tables.iter().filter_map(|t| t.root.as_ref()).collect();
    for root in roots {
        let (ns, name) = super::tenancy::split_section(root);
        if !imported(&ns, &name) {
            out.push(format!("{}.{}", qi(&ns), qi(&name)));
        }
    }
    Ok(out)
}

/// Tables, views and materialized views of the users' schemas (not of extensions).
pub(crate) async fn count_user_relations(conn: &mut PgConnection) -> Result<i64> {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm') AND {USER_NS} AND {}",
        not_ext("c.oid")
    )))
    .fetch_one(&mut *conn)
    .await
    .map_err(q("inspect the target"))
}

/// Drops every user object of the database (schemas other than `public` whole; in `public` its
/// relations, functions and types), leaving extensions. Inside the caller's transaction.
async fn drop_user_objects(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) -> Result<()> {
    // Event triggers first (they would fire on the drops), publications (not Safehold's own) and
    // the collations of `public` (the other schemas' go with them).
    let first: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT 'DROP EVENT TRIGGER IF EXISTS ' || quote_ident(e.evtname) FROM pg_event_trigger e WHERE {ev} \
         UNION ALL SELECT 'DROP PUBLICATION IF EXISTS ' || quote_ident(p.pubname) FROM pg_publication p WHERE p.pubname NOT LIKE 'safehold\\_%' \
         UNION ALL SELECT 'DROP COLLATION IF EXISTS public.' || quote_ident(c.collname) || ' CASCADE' FROM pg_collation c JOIN pg_namespace n ON n.oid = c.collnamespace WHERE n.nspname = 'public' AND {co} \
         UNION ALL SELECT 'DROP TEXT SEARCH CONFIGURATION IF EXISTS public.' || quote_ident(t.cfgname) || ' CASCADE' FROM pg_ts_config t JOIN pg_namespace n ON n.oid = t.cfgnamespace WHERE n.nspname = 'public' AND {cfg} \
         UNION ALL SELECT 'DROP TEXT SEARCH DICTIONARY IF EXISTS public.' || quote_ident(t.dictname) || ' CASCADE' FROM pg_ts_dict t JOIN pg_namespace n ON n.oid = t.dictnamespace WHERE n.nspname = 'public' AND {dict} \
         UNION ALL SELECT 'DROP OPERATOR FAMILY IF EXISTS public.' || quote_ident(f.opfname) || ' USING ' || quote_ident(a.amname) || ' CASCADE' FROM pg_opfamily f JOIN pg_namespace n ON n.oid = f.opfnamespace JOIN pg_am a ON a.oid = f.opfmethod WHERE n.nspname = 'public' AND {opf} \
         UNION ALL SELECT 'DROP SERVER IF EXISTS ' || quote_ident(s.srvname) || ' CASCADE' FROM pg_foreign_server s WHERE {srv} \
         UNION ALL SELECT format('DROP CAST IF EXISTS (%s AS %s) CASCADE', c.castsource::regtype, c.casttarget::regtype) FROM pg_cast c WHERE c.oid >= 16384 AND {cast} AND NOT {INTERNAL_CAST}",
        ev = not_ext("e.oid"),
        co = not_ext("c.oid"),
        cfg = not_ext("t.oid"),
        dict = not_ext("t.oid"),
        srv = not_ext("s.oid"),
        opf = not_ext("f.oid"),
        cast = not_ext("c.oid"),
    )))
    .fetch_all(&mut **tx)
    .await
    .map_err(q("list the objects to replace"))?;
    for st in first {
        sqlx::raw_sql(AssertSqlSafe(st.clone())).execute(&mut **tx).await.map_err(|e| restore_error(&format!("replacing the target's objects ({st})"), &e))?;
    }
    let stmts: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT 'DROP SCHEMA IF EXISTS ' || quote_ident(n.nspname) || ' CASCADE' FROM pg_namespace n WHERE {USER_NS} AND n.nspname <> 'public' AND {ns}          UNION ALL          SELECT 'DROP ' || CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END                 || ' IF EXISTS ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || ' CASCADE'            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND NOT c.relispartition AND {rel}          UNION ALL          SELECT 'DROP ' || CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END || ' IF EXISTS ' || p.oid::regprocedure::text || ' CASCADE'            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' AND {pr}          UNION ALL          SELECT 'DROP TYPE IF EXISTS ' || t.oid::regtype::text || ' CASCADE' FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace           WHERE n.nspname = 'public' AND {ty} AND (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))",
        ns = not_ext("n.oid"),
        rel = not_ext("c.oid"),
        pr = not_ext("p.oid"),
        ty = not_ext("t.oid"),
    )))
    .fetch_all(&mut **tx)
    .await
    .map_err(q("list the objects to replace"))?;
    for st in stmts {
        sqlx::raw_sql(AssertSqlSafe(st.clone())).execute(&mut **tx).await.map_err(|e| restore_error(&format!("replacing the target's objects ({st})"), &e))?;
    }
    sqlx::raw_sql("SELECT count(lo_unlink(oid)) FROM pg_largeobject_metadata").execute(&mut **tx).await.map_err(|e| restore_error("replacing the target's large objects", &e))?;
    Ok(())
}

/// Creates the extensions and every object of the schema in dependency order, found by
/// retrying: each attempt runs in a savepoint.
pub(super) async fn create_objects(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, schema: &PgSchema, cancel: &CancelToken) -> Result<()> {
    sqlx::query("SET LOCAL check_function_bodies = off").execute(&mut **tx).await.map_err(q("prepare the restore"))?;
    for st in &schema.extensions {
        sqlx::raw_sql(AssertSqlSafe(st.sql.clone())).execute(&mut **tx).await.map_err(|e| restore_error(&st.what, &e))?;
    }
    create_in_order(tx, schema.objects.iter().collect(), cancel).await
}

/// The server version (`server_version_num`) an object's statement needs, and what in it needs
/// that, when it is newer than 13 (the oldest version Safehold is tested on).
fn needs_newer(st: &Stmt) -> Option<(i32, &'static str)> {
    FEATURES.iter().find(|f| (f.applies)(st)).map(|f| (f.since, f.what))
}

/// Each sequence's `(last_value, is_called)`, in the order of `sequences` (each written for SQL),
/// a few hundred to a query rather than one query each.
async fn sequence_values(conn: &mut PgConnection, sequences: &[&str]) -> Result<Vec<(i64, bool)>> {
    let mut out = Vec::with_capacity(sequences.len());
    for chunk in sequences.chunks(256) {
        let union: Vec<String> = chunk.iter().enumerate().map(|(i, seq)| format!("SELECT {i} AS k, last_value, is_called FROM {seq}")).collect();
        let got: Vec<(i32, i64, bool)> = sqlx::query_as(AssertSqlSafe(format!("{} ORDER BY 1", union.join(" UNION ALL ")))).persistent(false).fetch_all(&mut *conn).await.map_err(q("read the sequences' values"))?;
        if got.len() != chunk.len() {
            return Err(Error::new(ErrorCode::Internal, format!("read {} values of {} sequences", got.len(), chunk.len())));
        }
        out.extend(got.into_iter().map(|(_, v, called)| (v, called)));
    }
    Ok(out)
}

/// Statements sent in one message by [`create_in_order`] and [`run_in_order`].
const CREATE_BATCH: usize = 64;

/// Runs `sql` under the savepoint `name` — made in a message of its own, so that it exists
/// whatever the statements do (one the server cannot parse fails the whole message before any
/// of it runs) — and the statements with the release in one message, joined by "\n;\n" (a
/// trailing comment ends at the newline). A statement's failure is the inner error, the
/// transaction rolled back to the savepoint (and the savepoint released); the outer error is a
/// savepoint that could not be made or rolled back to.
async fn under_savepoint(conn: &mut PgConnection, name: &str, sql: &[&str]) -> Result<std::result::Result<(), sqlx::Error>> {
    sqlx::raw_sql(AssertSqlSafe(format!("SAVEPOINT {name}"))).execute(&mut *conn).await.map_err(q("create a savepoint"))?;
    let Err(e) = sqlx::raw_sql(AssertSqlSafe(format!("{}\n;\nRELEASE SAVEPOINT {name}", sql.join("\n;\n")))).execute(&mut *conn).await else { return Ok(Ok(())) };
    sqlx::raw_sql(AssertSqlSafe(format!("ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}"))).execute(&mut *conn).await.map_err(q("roll back a savepoint"))?;
    Ok(Err(e))
}

/// Runs `stmts` in their order in the caller's transaction, [`CREATE_BATCH`] to a message. When
/// a batch fails it is undone and run again one statement at a time, so the error names the
/// statement that failed. (Statements that would not be undone — a sequence's `setval` — give the
/// same result run twice.)
pub(super) async fn run_in_order(conn: &mut PgConnection, stmts: &[Stmt], cancel: &CancelToken) -> Result<()> {
    for batch in stmts.chunks(CREATE_BATCH) {
        cancel.check()?;
        let sql: Vec<&str> = batch.iter().map(|st| st.sql.as_str()).collect();
        if under_savepoint(conn, "batch", &sql).await?.is_ok() {
            continue;
        }
        for st in batch {
            sqlx::raw_sql(AssertSqlSafe(st.sql.clone())).execute(&mut *conn).await.map_err(|e| restore_error(&st.what, &e))?;
        }
    }
    Ok(())
}

/// Runs `pending` statements in an order that works: each one that fails (what it needs is not
/// there yet) is tried again after the others, until all ran or a round makes no progress (then
/// the first error is the answer). Each runs under a savepoint, so a failure leaves no trace.
/// They are sent [`CREATE_BATCH`] to a message under one savepoint (a schema in order is made in
/// a few round trips); a batch that fails is undone and sent again one statement at a time.
pub(super) async fn create_in_order(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, mut pending: Vec<&Stmt>, cancel: &CancelToken) -> Result<()> {
    while !pending.is_empty() {
        cancel.check()?;
        let mut failed = Vec::new();
        let mut first_error = None;
        for batch in pending.chunks(CREATE_BATCH) {
            cancel.check()?;
            if batch.len() > 1 {
                let sql: Vec<&str> = batch.iter().map(|st| st.sql.as_str()).collect();
                if under_savepoint(tx, "objs", &sql).await?.is_ok() {
                    continue;
                }
            }
            for st in batch.iter().copied() {
                let Err(e) = under_savepoint(tx, "obj", &[st.sql.as_str()]).await? else { continue };
                // An object of a newer server than the target: said as such, at once.
                if let Some((min, feature)) = needs_newer(st) {
                    let target = server_version_num(tx).await?;
                    if target < min {
                        return Err(Error::validation(format!(
                            "{} has {feature}, which PostgreSQL has from version {} on; the target runs PostgreSQL {}: restore onto PostgreSQL {} or later (nothing was written)",
                            st.what,
                            min / 10000,
                            target / 10000,
                            min / 10000
                        )));
                    }
                }
                first_error.get_or_insert_with(|| restore_error(&st.what, &e));
                failed.push(st);
            }
        }
        if failed.len() == pending.len() {
            return Err(first_error.unwrap_or_else(|| Error::new(ErrorCode::Internal, "restore made no progress")));
        }
        pending = failed;
    }
    Ok(())
}

/// Loads one table: the newest whole copy in the chain, then every later delta in order; checks
/// the final row count. Returns the rows.
pub(super) async fn load_table(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, chain: &[(std::sync::Arc<ArchiveReader>, ArchiveIndex)], t: &PgTable, cancel: &CancelToken) -> Result<u64> {
    load_table_into(tx, chain, t, &format!("{}.{}", qi(&t.schema), qi(&t.name)), cancel).await
}

/// Loads one table of the chain into `relation` (the table itself, or a staging table with the
/// same columns): the newest whole copy, then the later deltas merged ([`merge_deltas`]); checks the final row
/// count. Returns the rows.
pub(crate) async fn load_table_into(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, chain: &[(std::sync::Arc<ArchiveReader>, ArchiveIndex)], t: &PgTable, relation: &str, cancel: &CancelToken) -> Result<u64> {
    load_chain(tx, chain, t, relation, false, cancel).await
}

/// [`load_table_into`]; with `freeze`, the whole copy is loaded with `COPY … FREEZE` (the table
/// must have been made or emptied in this transaction).
pub(super) async fn load_chain(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, chain: &[(std::sync::Arc<ArchiveReader>, ArchiveIndex)], t: &PgTable, relation: &str, freeze: bool, cancel: &CancelToken) -> Result<u64> {
    let section = t.section();
    let Some(base) = chain.iter().rposition(|(_, ix)| ix.section(&section).is_some_and(|e| e.mode.is_none())) else { return Ok(0) };
    let (base_reader, base_index) = &chain[base];
    let cols: Vec<String> = t.columns.iter().map(|c| qi(c)).collect();
    let target = format!("{relation} ({}) FROM STDIN{}", cols.join(", "), if freeze { " WITH (FREEZE)" } else { "" });
    let links = &chain[base + 1..];
    for (r, ix) in links {
        let entry = ix.section(&section).ok_or_else(|| Error::validation(format!("{section} is missing from backup {} of the chain", r.header.archive_id)))?;
        if entry.mode.as_deref() != Some("delta") {
            return Err(Error::validation(format!("{section}: backup {} of the chain is not a delta", r.header.archive_id)));
        }
    }
    if links.is_empty() {
        // No deltas: COPY's own count is checked against the index.
        return copy_in(tx, base_reader, base_index, &section, &target, cancel).await;
    }
    // Rows chosen by their positions: the whole chain in one COPY.
    if merges_by_position(chain, &section) {
        return merge_by_position(tx, chain, &section, &target, cancel).await;
    }
    copy_in(tx, base_reader, base_index, &section, &target, cancel).await?;
    let expected = merge_deltas(tx, links, t, relation, cancel).await?;
    // (`ONLY`: a table others inherit from counts, and above loses, its own rows alone.)
    let have: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM ONLY {relation}")))
        .fetch_one(&mut **tx)
        .await
        .map_err(|e| restore_error(&format!("table {section}"), &e))?;
    if u64::try_from(have).unwrap_or(0) != expected {
        return Err(Error::validation(format!("{section}: the backup says {expected} rows but {have} were restored")));
    }
    Ok(expected)
}

/// COPYs the rows `chunks` brings into `target` (`relation (columns) FROM STDIN …`); an error
/// among the chunks (a damaged archive) or a cancel ends the COPY with nothing written. Returns
/// the rows loaded.
async fn copy_from(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, mut chunks: tokio::sync::mpsc::Receiver<Result<Vec<u8>>>, section: &str, target: &str, cancel: &CancelToken) -> Result<u64> {
    let fail = |e: sqlx::Error| restore_error(&format!("table {section}"), &e);
    let mut copy = (**tx).copy_in_raw(&format!("COPY {target}")).await.map_err(fail)?;
    while let Some(chunk) = chunks.recv().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = copy.abort("the rows could not be read").await;
                return Err(e);
            }
        };
        if cancel.is_cancelled() {
            let _ = copy.abort("cancelled").await;
            return Err(Error::new(ErrorCode::Cancelled, "restore cancelled; the target was left as it was"));
        }
        copy.send(chunk).await.map_err(fail)?;
    }
    copy.finish().await.map_err(fail)
}

/// COPYs a section into `target`; returns the rows loaded (checked against the index).
pub(super) async fn copy_in(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, reader: &std::sync::Arc<ArchiveReader>, index: &ArchiveIndex, section: &str, target: &str, cancel: &CancelToken) -> Result<u64> {
    let entry = index.section(section).ok_or_else(|| Error::validation(format!("the archive has no section {section}")))?;
    let loaded = copy_from(tx, reader.section_chunks(index, section)?, section, target, cancel).await?;
    if loaded != entry.rows {
        return Err(Error::validation(format!("{section}: the archive says {} rows but {loaded} were loaded", entry.rows)));
    }
    Ok(loaded)
}

/// COPYs the rows of a section whose field number `column` is exactly `value` (`wanted`; the
/// value as COPY's text writes it) into `target`, the others read past; checks that the section
/// had as many rows as its index says. Returns the rows loaded.
pub(crate) async fn copy_in_where(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    reader: &std::sync::Arc<ArchiveReader>,
    index: &ArchiveIndex,
    section: &str,
    target: &str,
    wanted: (usize, Vec<u8>),
    cancel: &CancelToken,
) -> Result<u64> {
    let (column, value) = wanted;
    let entry = index.section(section).ok_or_else(|| Error::validation(format!("the archive has no section {section}")))?;
    let mut lines = reader.section_lines(index, section)?;
    let (send, kept) = tokio::sync::mpsc::channel(4);
    // Chunks of whole lines (COPY's text ends each row with its only raw newline, and separates
    // fields with its only raw tabs), each cut down to the rows wanted.
    let filter = tokio::spawn(async move {
        let mut seen = 0u64;
        while let Some(chunk) = lines.recv().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = send.send(Err(e)).await;
                    break;
                }
            };
            let mut out = Vec::new();
            for line in chunk.split_inclusive(|&b| b == b'\n') {
                seen += 1;
                let row = line.strip_suffix(b"\n").unwrap_or(line);
                if row.split(|&b| b == b'\t').nth(column) == Some(value.as_slice()) {
                    out.extend_from_slice(line);
                }
            }
            if !out.is_empty() && send.send(Ok(out)).await.is_err() {
                break;
            }
        }
        seen
    });
    let loaded = copy_from(tx, kept, section, target, cancel).await;
    let seen = filter.await.map_err(|e| Error::new(ErrorCode::Internal, format!("reading {section} failed: {e}")))?;
    let loaded = loaded?;
    if seen != entry.rows {
        return Err(Error::validation(format!("{section}: the archive says {} rows but {seen} were read", entry.rows)));
    }
    Ok(loaded)
}

/// Applies a chain's deltas to a table in one pass, however many links the chain has (issue 26:
/// a chain restores at the cost of its data, not of its history): every link's changed rows are
/// staged, each with its link's number, and the newest link's key list; each changed key's newest
/// version that the newest list still has is set aside and its key taken out of the list; the
/// rows whose key the list then lacks (changed, or gone) are deleted — one anti-join, the table
/// scanned once — and the newest versions inserted. Returns the newest list's row count.
async fn merge_deltas(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, links: &[(std::sync::Arc<ArchiveReader>, ArchiveIndex)], t: &PgTable, table: &str, cancel: &CancelToken) -> Result<u64> {
    let section = t.section();
    let Some((last_reader, last_index)) = links.last() else { return Err(Error::new(ErrorCode::Internal, "a chain without deltas")) };
    let cols: Vec<String> = t.columns.iter().map(|c| qi(c)).collect();
    let keys: Vec<String> = t.key_columns.iter().map(|c| qi(c)).collect();
    // The link's number, in a column no table column is named like.
    let link = qi(&(0..).map(|i| format!("_sh_link{i}")).find(|n| !t.columns.contains(n)).unwrap_or_default());
    let run = |sql: String| AssertSqlSafe(sql);
    let fail = |e: sqlx::Error| restore_error(&format!("table {section} (applying the chain's changes)"), &e);
    sqlx::raw_sql(run(format!(
        "DROP TABLE IF EXISTS pg_temp._sh_delta, pg_temp._sh_keys, pg_temp._sh_newest; \
         CREATE TEMP TABLE _sh_delta AS SELECT {}, 0 AS {link} FROM {table} WITH NO DATA; \
         CREATE TEMP TABLE _sh_keys AS SELECT {} FROM {table} WITH NO DATA;",
        cols.join(", "),
        keys.join(", ")
    )))
    .execute(&mut **tx)
    .await
    .map_err(fail)?;
    for (i, (reader, index)) in links.iter().enumerate() {
        sqlx::raw_sql(run(format!("ALTER TABLE pg_temp._sh_delta ALTER COLUMN {link} SET DEFAULT {i}"))).execute(&mut **tx).await.map_err(fail)?;
        copy_in(tx, reader, index, &section, &format!("pg_temp._sh_delta ({}) FROM STDIN", cols.join(", ")), cancel).await?;
    }
    let all = copy_in(tx, last_reader, last_index, &format!("{section}#keys"), "pg_temp._sh_keys FROM STDIN", cancel).await?;
    let on = |a: &str, b: &str| format!("({}) = ({})", keys.iter().map(|k| format!("{a}.{k}")).collect::<Vec<_>>().join(", "), keys.iter().map(|k| format!("{b}.{k}")).collect::<Vec<_>>().join(", "));
    // The table is scanned once: the newest versions that stay are set aside first, their keys
    // taken out of the list, and every row whose key is no longer in it deleted (changed or gone).
    sqlx::raw_sql(run(format!(
        "ANALYZE pg_temp._sh_delta, pg_temp._sh_keys; \
         CREATE TEMP TABLE _sh_newest AS SELECT {c} FROM (SELECT DISTINCT ON ({k}) * FROM pg_temp._sh_delta ORDER BY {k}, {link} DESC) d \
           WHERE EXISTS (SELECT 1 FROM pg_temp._sh_keys l WHERE {dl}); \
         ANALYZE pg_temp._sh_newest; \
         DELETE FROM pg_temp._sh_keys l USING pg_temp._sh_newest d WHERE {dl}; \
         DELETE FROM ONLY {table} t WHERE NOT EXISTS (SELECT 1 FROM pg_temp._sh_keys l WHERE {tl}); \
         INSERT INTO {table} ({c}) OVERRIDING SYSTEM VALUE SELECT {c} FROM pg_temp._sh_newest; \
         DROP TABLE pg_temp._sh_delta, pg_temp._sh_keys, pg_temp._sh_newest;",
        tl = on("t", "l"),
        dl = on("d", "l"),
        c = cols.join(", "),
        k = keys.join(", ")
    )))
    .execute(&mut **tx)
    .await
    .map_err(fail)?;
    Ok(all)
}

/// Positions of rows (`ctid`s as `page << 16 | tuple`) as sorted, disjoint, inclusive runs.
struct Positions(Vec<(u64, u64)>);

impl Positions {
    /// A set from runs in any order.
    fn from_runs(mut runs: Vec<(u64, u64)>) -> Self {
        runs.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
        for (a, b) in runs {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        Self(out)
    }

    fn contains(&self, c: u64) -> bool {
        let i = self.0.partition_point(|&(a, _)| a <= c);
        i > 0 && self.0[i - 1].1 >= c
    }

    fn len(&self) -> u64 {
        self.0.iter().map(|(a, b)| b - a + 1).sum()
    }
}

/// Reads a section of positions (lines of `page first last`, see [`split_ctids`]) as runs, in
/// the section's order.
async fn read_positions(reader: &std::sync::Arc<ArchiveReader>, index: &ArchiveIndex, name: &str) -> Result<Vec<(u64, u64)>> {
    let bad = || Error::validation(format!("the archive {} is damaged: its section {name} cannot be read as row positions", reader.header.archive_id));
    let mut chunks = reader.section_lines(index, name)?;
    let (mut runs, mut page) = (Vec::new(), None);
    while let Some(chunk) = chunks.recv().await {
        parse_runs(&chunk?, &mut page, &mut runs).ok_or_else(bad)?;
    }
    Ok(runs)
}

/// Reads lines of runs (see [`split_ctids`]) into `runs` (`page << 16 | slot`, first and last);
/// `page` is the page of the line before. `None` for a line that is not a run.
fn parse_runs(lines: &[u8], page: &mut Option<i64>, runs: &mut Vec<(u64, u64)>) -> Option<()> {
    for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let mut parts = std::str::from_utf8(line).ok()?.split(' ');
        let (p, a, b) = (parts.next()?, parts.next()?.parse::<u64>().ok()?, parts.next()?.parse::<u64>().ok()?);
        // `@page`, or the distance from the line before.
        let p = match p.strip_prefix('@') {
            Some(at) => at.parse::<i64>().ok()?,
            None => (*page)?.checked_add(p.parse::<i64>().ok()?)?,
        };
        if parts.next().is_some() || a > b || b > 0xffff || !(0..=i64::from(u32::MAX)).contains(&p) {
            return None;
        }
        *page = Some(p);
        runs.push(((p as u64) << 16 | a, (p as u64) << 16 | b));
    }
    Some(())
}

/// Restores a table from its chain (its deltas carry their rows' positions) in one COPY into
/// `target` (see [`merged_rows`]). Returns the rows.
async fn merge_by_position(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, chain: &[(std::sync::Arc<ArchiveReader>, ArchiveIndex)], section: &str, target: &str, cancel: &CancelToken) -> Result<u64> {
    let (rows, expected) = merged_rows(chain, section).await?;
    let loaded = copy_from(tx, rows, section, target, cancel).await?;
    if loaded != expected {
        return Err(Error::validation(format!("{section}: the chain says {expected} rows but {loaded} were restored")));
    }
    Ok(loaded)
}

/// Whether the chain's newest link carries the table's changes by positions (then
/// [`merged_rows`] gives its rows).
pub(super) fn merges_by_position(chain: &[(std::sync::Arc<ArchiveReader>, ArchiveIndex)], section: &str) -> bool {
    chain.last().is_some_and(|(_, ix)| ix.section(section).is_some_and(|e| e.mode.as_deref() == Some("delta")) && ix.section(&format!("{section}#live")).is_some())
}

/// The rows of a table at the snapshot of its chain's newest link (from the table's newest whole
/// copy in the chain and the deltas after it), in chunks of whole lines, and how many there will
/// be. A row is
/// identified by its position in the source table (`ctid`, carried beside every row), which
/// stays the same until the row is updated or deleted (a table rewritten since its parent is
/// carried whole instead). The rows at the snapshot are the newest delta's rows and the
/// positions it lists as kept; each such position's newest version in the chain is given, every
/// other version left out. Rows with the same values are rows at different positions, so the
/// multiset is the table's. The chain's links are read one after the other by a task of its own;
/// a damaged link, or positions that do not add up, arrive as an error after the rows.
pub(super) async fn merged_rows(chain: &[(std::sync::Arc<ArchiveReader>, ArchiveIndex)], section: &str) -> Result<(tokio::sync::mpsc::Receiver<Result<Vec<u8>>>, u64)> {
    let base = chain.iter().rposition(|(_, ix)| ix.section(section).is_some_and(|e| e.mode.is_none())).ok_or_else(|| Error::validation(format!("{section}: no backup of the chain holds the whole table")))?;
    let links = &chain[base..];
    let (last_reader, last_index) = links.last().ok_or_else(|| Error::new(ErrorCode::Internal, "an empty chain"))?;
    let ctids = format!("{section}#ctids");
    let mut carried = Vec::with_capacity(links.len());
    for (r, ix) in links {
        if ix.section(&ctids).is_none() {
            return Err(Error::validation(format!("{section}: backup {} of the chain has no row positions for this table; restore from a full backup", r.header.archive_id)));
        }
        carried.push(read_positions(r, ix, &ctids).await?);
    }
    let mut at_snapshot = read_positions(last_reader, last_index, &format!("{section}#live")).await?;
    at_snapshot.extend(carried.last().into_iter().flatten().copied());
    let keep = Positions::from_runs(at_snapshot);
    let expected = keep.len();
    // The newest link that carries each position (the whole copy's rows are the default).
    let mut newest: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    for (i, runs) in carried.iter().enumerate().skip(1) {
        for &(a, b) in runs {
            newest.extend((a..=b).map(|c| (c, i)));
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let (links, section) = (links.to_vec(), section.to_string());
    tokio::spawn(async move {
        let mut kept = 0u64;
        let mut out = Vec::with_capacity(1 << 20);
        for (i, ((reader, index), runs)) in links.iter().zip(&carried).enumerate() {
            let damaged = || Error::validation(format!("the archive {} is damaged: the rows of {section} and their positions do not match", reader.header.archive_id));
            let mut positions = runs.iter().flat_map(|&(a, b)| a..=b);
            let mut chunks = match reader.section_lines(index, &section) {
                Ok(c) => c,
                Err(e) => return tx.send(Err(e)).await.unwrap_or(()),
            };
            while let Some(chunk) = chunks.recv().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => return tx.send(Err(e)).await.unwrap_or(()),
                };
                for row in chunk.split_inclusive(|&b| b == b'\n') {
                    let Some(c) = positions.next() else { return tx.send(Err(damaged())).await.unwrap_or(()) };
                    if keep.contains(c) && newest.get(&c).map_or(i == 0, |&j| j == i) {
                        out.extend_from_slice(row);
                        kept += 1;
                    }
                }
                if out.len() >= 1 << 20 && tx.send(Ok(std::mem::replace(&mut out, Vec::with_capacity(1 << 20)))).await.is_err() {
                    return;
                }
            }
            if positions.next().is_some() {
                return tx.send(Err(damaged())).await.unwrap_or(());
            }
        }
        if kept != expected {
            let e = Error::validation(format!("{section}: the chain's backups do not add up (the newest says {expected} rows, {kept} were found in the chain); restore from a full backup"));
            return tx.send(Err(e)).await.unwrap_or(());
        }
        if !out.is_empty() {
            let _ = tx.send(Ok(out)).await;
        }
    });
    Ok((rx, expected))
}

pub(crate) fn restore_error(what: &str, e: &sqlx::Error) -> Error {
    Error::new(ErrorCode::Database, format!("restore failed at {what}: {e}; the target was left as it was")).caused_by(e)
}

/// The URL of the database `database` on the server `url` names (its user, host, port and
/// parameters kept; the database in `url`, if any, replaced).
pub fn database_url(url: &str, database: &str) -> Result<String> {
    let mut u = url::Url::parse(url).map_err(|e| Error::validation(format!("invalid PostgreSQL URL: {e}")).caused_by(&e))?;
    u.set_path(&format!("/{}", url::form_urlencoded::byte_serialize(database.as_bytes()).collect::<String>().replace('+', "%20")));
    Ok(u.to_string())
}

/// Creates the database named in `url` (connecting to the server's `postgres` database);
/// `true` when it was created, `false` when it existed.
pub async fn create_database(url: &str) -> Result<bool> {
    let mut admin_url = url::Url::parse(url).map_err(|e| Error::validation(format!("invalid PostgreSQL URL: {e}")).caused_by(&e))?;
    let db = admin_url.path().trim_start_matches('/').to_string();
    if db.is_empty() {
        return Err(Error::validation("the target URL names no database"));
    }
    admin_url.set_path("/postgres");
    let mut admin = connect(admin_url.as_str()).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)").bind(&db).fetch_one(&mut admin).await.map_err(q("look for the database"))?;
    if !exists {
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {}", qi(&db)))).execute(&mut admin).await.map_err(q("create the target database"))?;
    }
    let _ = admin.close().await;
    Ok(!exists)
}

/// Where a `--create` restore builds: a database under a temporary name, renamed to the
/// target's only when complete. While it is built, a connection to it is kept open (its anchor):
/// a database of that form that nobody is connected to was left by a process that died, and the
/// next restore into that server drops it.
pub struct Building {
    /// The URL of the database being built.
    pub url: String,
    name: String,
    target: String,
    admin: String,
    anchor: Option<PgConnection>,
}

pub const BUILDING_PREFIX: &str = "safehold_building_";

/// The name a database is built under: the prefix, a tag, and as much of the target's name as
/// fits in PostgreSQL's 63 bytes.
fn building_name(target: &str) -> String {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut name = format!("{BUILDING_PREFIX}{}_", &tag[..8]);
    for c in target.chars() {
        if name.len() + c.len_utf8() > 63 {
            break;
        }
        name.push(c);
    }
    name
}

fn admin_url(url: &str) -> Result<(url::Url, String)> {
    let mut admin_url = url::Url::parse(url).map_err(|e| Error::validation(format!("invalid PostgreSQL URL: {e}")).caused_by(&e))?;
    let db = super::percent_decode(admin_url.path().trim_start_matches('/'));
    if db.is_empty() {
        return Err(Error::validation("the target URL names no database"));
    }
    admin_url.set_path("/postgres");
    Ok((admin_url, db))
}

/// Starts building the database `url` names under a temporary name (see [`Building`]); `None`
/// when the target exists already (it is restored into in place). Drops what earlier builds into
/// this server left first.
pub async fn start_building(url: &str) -> Result<Option<Building>> {
    start_building_with(url, "").await
}

/// [`start_building`] with `CREATE DATABASE` options (owner, encoding, locale: a server restore
/// gives the new database its source's properties).
pub async fn start_building_with(url: &str, options: &str) -> Result<Option<Building>> {
    let (admin_url, db) = admin_url(url)?;
    let mut admin = connect(admin_url.as_str()).await?;
    sweep_abandoned(&mut admin).await;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)").bind(&db).fetch_one(&mut admin).await.map_err(q("look for the database"))?;
    if exists {
        let _ = admin.close().await;
        return Ok(None);
    }
    let name = building_name(&db);
    // Claimed before it exists and until its anchor is connected: another process's sweep must
    // not take the new database, still without a connection, for a dead build's.
    claim_build(&mut admin, &name).await?;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {} {options}", qi(&name)))).execute(&mut admin).await.map_err(q("create the database to restore into"))?;
    let mut build_url = url::Url::parse(url).map_err(|e| Error::validation(format!("invalid PostgreSQL URL: {e}")).caused_by(&e))?;
    build_url.set_path(&format!("/{}", url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()));
    let anchor = connect(build_url.as_str()).await?;
    let _ = release_build(&mut admin, &name).await;
    let _ = admin.close().await;
    Ok(Some(Building { url: build_url.to_string(), name, target: db, admin: admin_url.to_string(), anchor: Some(anchor) }))
}

/// Claims the building database `name` on `admin` (a connection to the server's `postgres`
/// database): a session advisory lock, held by a build from before its `CREATE DATABASE` until
/// its anchor connection is up, and skipped by every sweep (the lock goes with its session when
/// a process dies). Waits for a sweep looking at the same name, 30 s at most.
pub async fn claim_build(admin: &mut PgConnection, name: &str) -> Result<()> {
    claim_within(admin, name, "30s").await
}

/// [`claim_build`], waiting at most `limit` (a `lock_timeout`) for whoever holds the claim.
async fn claim_within(admin: &mut PgConnection, name: &str, limit: &str) -> Result<()> {
    sqlx::query("SELECT set_config('lock_timeout', $1, false)").bind(limit).execute(&mut *admin).await.map_err(q("claim the database to restore into"))?;
    let claimed = sqlx::query("SELECT pg_advisory_lock(hashtext($1), hashtext($2))").bind(BUILDING_PREFIX).bind(name).execute(&mut *admin).await;
    let _ = sqlx::query("RESET lock_timeout").execute(&mut *admin).await;
    match claimed {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => Err(Error::new(
            ErrorCode::Database,
            format!("the database {name} is held by another restore's clean-up on this server (waited {limit}); nothing was changed: try again"),
        )),
        Err(e) => Err(q("claim the database to restore into")(e)),
    }
}

/// Renames a database once the connections to it are gone: a connection its client closed ends
/// on the server a moment later, and until then a rename is refused (`55006`, object in use).
async fn rename_when_closed(admin: &mut PgConnection, from: &str, to: &str) -> std::result::Result<(), sqlx::Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sqlx::query(AssertSqlSafe(format!("ALTER DATABASE {} RENAME TO {}", qi(from), qi(to)))).execute(&mut *admin).await {
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55006") && std::time::Instant::now() < deadline => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            r => return r.map(drop),
        }
    }
}

/// Releases a claim taken by [`claim_build`] (or by a sweep).
pub async fn release_build(admin: &mut PgConnection, name: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_unlock(hashtext($1), hashtext($2))").bind(BUILDING_PREFIX).bind(name).execute(&mut *admin).await.map_err(q("release the database's claim"))?;
    Ok(())
}

impl Building {
    /// The temporary name it is built under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames the complete database to the target's name.
    pub async fn finish(mut self) -> Result<()> {
        // Claimed again before the anchor goes (a rename needs the database without
        // connections), so that no sweep takes it between the two.
        let mut admin = connect(&self.admin).await?;
        claim_build(&mut admin, &self.name).await?;
        if let Some(a) = self.anchor.take() {
            let _ = a.close().await;
        }
        let renamed = rename_when_closed(&mut admin, &self.name, &self.target).await;
        let _ = release_build(&mut admin, &self.name).await;
        if let Err(e) = renamed {
            let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", qi(&self.name)))).execute(&mut admin).await;
            return Err(Error::new(
                ErrorCode::Database,
                format!("the restored database could not be given the name {} ({e}); nothing was left behind: the name may have been taken meanwhile", self.target),
            ));
        }
        let _ = admin.close().await;
        Ok(())
    }

    /// Drops the unfinished database.
    pub async fn abandon(mut self) {
        if let Some(a) = self.anchor.take() {
            let _ = a.close().await;
        }
        if let Ok(mut admin) = connect(&self.admin).await {
            let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", qi(&self.name)))).execute(&mut admin).await;
            let _ = admin.close().await;
        }
    }
}

/// Drops the databases earlier `--create` restores were building when their process died.
/// A live build holds its anchor connection, idle, from the moment its database exists until it
/// is renamed; a dead one's connections are gone, or still running the statement they were in
/// when the process was killed (an index build goes on until it next talks to its client). So a
/// database with the prefix and no connection that is not running a statement is abandoned: one
/// with none is dropped as it is (a build whose anchor connected meanwhile makes that fail, and is
/// left alone), one with only running statements is dropped with FORCE, ending them. A build
/// that has created its database but not yet connected its anchor holds its claim
/// ([`claim_build`]) and is left alone too: each candidate is looked at again under its claim.
/// Returns their names.
async fn sweep_abandoned(admin: &mut PgConnection) -> Vec<String> {
    const ABANDONED: &str = "SELECT d.datname, EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname) \
         FROM pg_database d WHERE starts_with(d.datname, $1) \
         AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname AND a.state IS DISTINCT FROM 'active')";
    let found: Vec<(String, bool)> = sqlx::query_as(ABANDONED).bind(BUILDING_PREFIX).fetch_all(&mut *admin).await.unwrap_or_default();
    let mut dropped = Vec::new();
    // A claim is held for moments (a build's CREATE DATABASE until its anchor connects, its
    // rename, another sweep's drop): waited for, up to a deadline, so that what a sweep saw
    // abandoned is gone or alive when it returns; past the deadline it is left for the next.
    for (n, _) in found {
        if claim_within(admin, &n, "5s").await.is_err() {
            continue; // claimed all along: a build stuck before its anchor, swept next time
        }
        let again: Option<(String, bool)> = sqlx::query_as(AssertSqlSafe(format!("{ABANDONED} AND d.datname = $2"))).bind(BUILDING_PREFIX).bind(&n).fetch_optional(&mut *admin).await.unwrap_or(None);
        if let Some((_, running)) = again {
            let sql = if running { format!("DROP DATABASE {} WITH (FORCE)", qi(&n)) } else { format!("DROP DATABASE {}", qi(&n)) };
            if sqlx::query(AssertSqlSafe(sql)).execute(&mut *admin).await.is_ok() {
                tracing::info!("dropped {n}, left by a restore that was stopped");
                dropped.push(n.clone());
            }
        }
        let _ = release_build(admin, &n).await;
    }
    dropped
}

/// Drops the database named in `url` (used to undo a failed restore into a database it created).
pub async fn drop_database(url: &str) -> Result<()> {
    let mut admin_url = url::Url::parse(url).map_err(|e| Error::validation(format!("invalid PostgreSQL URL: {e}")).caused_by(&e))?;
    let db = admin_url.path().trim_start_matches('/').to_string();
    admin_url.set_path("/postgres");
    let mut admin = connect(admin_url.as_str()).await?;
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", qi(&db)))).execute(&mut admin).await.map_err(q("drop the unfinished database"))?;
    let _ = admin.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_in_a_tablespace_gives_its_tablespace_and_itself_back() {
        for space in ["fast", "it's \"odd\"; DROP", ""] {
            let sql = "CREATE INDEX i ON s.t USING btree (c) WHERE (c <> 'x''; y')".to_string();
            let wrapped = in_tablespace(Some(space.to_string()), sql.clone());
            assert_eq!(tablespace_of(&wrapped), Some((space.to_string(), sql.as_str())));
            assert_eq!(without_tablespace(&wrapped), sql);
        }
        assert_eq!(tablespace_of("CREATE TABLE t (a int)"), None);
        assert_eq!(without_tablespace("CREATE TABLE t (a int)"), "CREATE TABLE t (a int)");
        assert_eq!(in_tablespace(None, "CREATE TABLE t (a int)".into()), "CREATE TABLE t (a int)");
    }

    #[test]
    fn rows_with_their_positions_split_into_rows_and_runs() {
        let (mut rows, mut runs) = (Vec::new(), Vec::new());
        // Consecutive slots of a page are one run; a gap, another page or a step back start another.
        let read = b"(0,1)\ta\tb\n(0,2)\t\\N\tc\n(0,3)\tx\ty\n(0,5)\td\te\n(7,1)\tf\tg\n(3,2)\th\ti\n";
        assert_eq!(split_ctids(read, &mut rows, &mut runs).expect("split"), 6);
        assert_eq!(rows, b"a\tb\n\\N\tc\nx\ty\nd\te\nf\tg\nh\ti\n");
        assert_eq!(String::from_utf8_lossy(&runs), "@0 1 3\n0 5 5\n7 1 1\n-4 2 2\n");
        // Read back: the same positions, in the same order.
        let (mut back, mut page) = (Vec::new(), None);
        parse_runs(&runs, &mut page, &mut back).expect("runs");
        let p = |page: u64, slot: u64| page << 16 | slot;
        assert_eq!(back, vec![(p(0, 1), p(0, 3)), (p(0, 5), p(0, 5)), (p(7, 1), p(7, 1)), (p(3, 2), p(3, 2))]);
        // Batches one after the other: each begins at its own page.
        let mut second = Vec::new();
        split_ctids(b"(9,4)\tz\n(10,1)\ty\n", &mut rows, &mut second).expect("split");
        assert_eq!(second, b"@9 4 4\n1 1 1\n");
        parse_runs(&second, &mut page, &mut back).expect("runs");
        assert_eq!(back[4..], [(p(9, 4), p(9, 4)), (p(10, 1), p(10, 1))]);
        // What is not a run is refused: a distance with no page before it, a page out of range,
        // slots the wrong way round, a field too many or too few.
        for bad in [&b"1 1 1\n"[..], b"@-1 1 1\n", b"@0 5 4\n", b"@0 1 1 1\n", b"@0 1\n", b"@4294967296 1 1\n", b"@0 1 70000\n"] {
            assert!(parse_runs(bad, &mut None, &mut Vec::new()).is_none(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(parse_runs(b"-1 1 1\n", &mut Some(0), &mut Vec::new()).is_none(), "a page before the first");
        // A table without columns: the position alone.
        assert_eq!(split_ctids(b"(4,1)\n(4,2)\n", &mut rows, &mut runs).expect("split"), 2);
        assert_eq!((rows.as_slice(), runs.as_slice()), (&b"\n\n"[..], &b"@4 1 2\n"[..]));
        // What is not a position is an error, not a row.
        for bad in [&b"a\tb\n"[..], b"(1)\ta\n", b"(1,x)\ta\n", b"(1,2)a\n", b"(-1,2)\ta\n", b"x1,2)\ta\n", b"1,2)\ta\n"] {
            assert!(split_ctids(bad, &mut rows, &mut runs).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn positions_merge_runs_and_answer_membership() {
        let p = |page: u64, slot: u64| page << 16 | slot;
        let set = Positions::from_runs(vec![(p(2, 5), p(2, 9)), (p(0, 1), p(0, 3)), (p(0, 4), p(0, 4)), (p(2, 7), p(2, 12)), (p(1, 1), p(1, 1))]);
        assert_eq!(set.0, vec![(p(0, 1), p(0, 4)), (p(1, 1), p(1, 1)), (p(2, 5), p(2, 12))]);
        assert_eq!(set.len(), 4 + 1 + 8);
        for (c, inside) in [(p(0, 1), true), (p(0, 4), true), (p(0, 5), false), (p(1, 0), false), (p(1, 1), true), (p(2, 4), false), (p(2, 12), true), (p(2, 13), false), (0, false)] {
            assert_eq!(set.contains(c), inside, "{c:#x}");
        }
        assert!(!Positions::from_runs(Vec::new()).contains(0));
    }
}
