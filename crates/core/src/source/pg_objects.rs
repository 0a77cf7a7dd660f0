//! The objects of a database that are neither tables nor functions but that an application may
//! lean on: casts, operators, operator classes, text search dictionaries and configurations, foreign servers, user
//! mappings (their options without a password: a backup keeps no secret of a remote server) and
//! foreign tables. Read from the catalogs like the rest of the schema, each made again by one
//! statement (created in the order the restore finds, like the other objects).

use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::postgres::{not_ext, q, qi, ql, PgSchema, Stmt, USER_NS};
use crate::error::Result;

/// The options of a catalog row (`srvoptions`, `umoptions`, …) as an `OPTIONS (…)` clause, leaving
/// out `password`; `None` when there are none.
fn options_sql(column: &str) -> String {
    format!("(SELECT string_agg(format('%I %L', option_name, option_value), ', ') FROM pg_options_to_table({column}) WHERE option_name <> 'password')")
}

fn with_options(sql: &mut String, options: Option<String>) {
    if let Some(o) = options.filter(|o| !o.is_empty()) {
        sql.push_str(&format!(" OPTIONS ({o})"));
    }
}

/// What a user mapping's statement is called: the role (or PUBLIC) comes first, the plan and a
/// restore without that role read it from there.
pub fn user_mapping_role(st: &Stmt) -> Option<&str> {
    st.what.strip_prefix("user mapping for ")?.split_once(" on server ").map(|(role, _)| role).filter(|r| *r != "PUBLIC")
}

/// Reads the objects into `s` (inside the backup's snapshot). Names are written with
/// `search_path` set to `pg_catalog` only, so every user object comes out schema-qualified.
pub(super) async fn read(conn: &mut PgConnection, s: &mut PgSchema) -> Result<()> {
    let path: String = sqlx::query_scalar("SELECT current_setting('search_path')").fetch_one(&mut *conn).await.map_err(q("read the search path"))?;
    sqlx::query("SELECT set_config('search_path', 'pg_catalog', true)").execute(&mut *conn).await.map_err(q("set the search path"))?;
    let read = read_qualified(conn, s).await;
    sqlx::query("SELECT set_config('search_path', $1, true)").bind(path).execute(&mut *conn).await.map_err(q("set the search path"))?;
    read
}

async fn rows(conn: &mut PgConnection, sql: String, what: &str) -> Result<Vec<sqlx::postgres::PgRow>> {
    sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *conn).await.map_err(q(what))
}

async fn read_qualified(conn: &mut PgConnection, s: &mut PgSchema) -> Result<()> {
    let mut add = |what: String, sql: String| s.objects.push(Stmt { what, sql, table: None, references: None });
    // Casts the application made (those of initdb have oids below 16384; those a range type
    // makes to its multirange come with the type).
    for r in rows(conn, format!(
        "SELECT format_type(c.castsource, NULL), format_type(c.casttarget, NULL), c.castmethod::text, c.castcontext::text, CASE WHEN c.castfunc <> 0 THEN c.castfunc::regprocedure::text END \
         FROM pg_cast c WHERE c.oid >= 16384 AND {} AND NOT {} ORDER BY c.oid", not_ext("c.oid"), super::postgres::INTERNAL_CAST), "read casts").await? {
        let (source, target, method, context): (String, String, String, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
        let how = match (method.as_str(), r.get::<Option<String>, _>(4)) {
            ("f", Some(f)) => format!("WITH FUNCTION {f}"),
            ("i", _) => "WITH INOUT".to_string(),
            _ => "WITHOUT FUNCTION".to_string(),
        };
        let context = match context.as_str() {
            "a" => " AS ASSIGNMENT",
            "i" => " AS IMPLICIT",
            _ => "",
        };
        add(format!("cast ({source} AS {target})"), format!("CREATE CAST ({source} AS {target}) {how}{context}"));
    }
    // Operators (not shells: an operator named as another's commutator before it exists).
    let op_ref = |col: &str| format!("(SELECT format('OPERATOR(%I.%s)', xn.nspname, x.oprname) FROM pg_operator x JOIN pg_namespace xn ON xn.oid = x.oprnamespace WHERE x.oid = o.{col})");
    for r in rows(conn, format!(
        "SELECT n.nspname::text, o.oprname::text, format('%I.%I', pn.nspname, p.proname), \
                CASE WHEN o.oprleft <> 0 THEN format_type(o.oprleft, NULL) END, CASE WHEN o.oprright <> 0 THEN format_type(o.oprright, NULL) END, \
                {}, {}, NULLIF(o.oprrest, 0)::regproc::text, NULLIF(o.oprjoin, 0)::regproc::text, o.oprcanhash, o.oprcanmerge \
         FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace JOIN pg_proc p ON p.oid = o.oprcode JOIN pg_namespace pn ON pn.oid = p.pronamespace \
         WHERE {USER_NS} AND {} ORDER BY o.oid", op_ref("oprcom"), op_ref("oprnegate"), not_ext("o.oid")), "read operators").await? {
        let (ns, name, func): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let mut opts = vec![format!("FUNCTION = {func}")];
        for (i, key) in [(3, "LEFTARG"), (4, "RIGHTARG"), (5, "COMMUTATOR"), (6, "NEGATOR"), (7, "RESTRICT"), (8, "JOIN")] {
            if let Some(v) = r.get::<Option<String>, _>(i) {
                opts.push(format!("{key} = {v}"));
            }
        }
        if r.get::<bool, _>(9) {
            opts.push("HASHES".into());
        }
        if r.get::<bool, _>(10) {
            opts.push("MERGES".into());
        }
        let args = format!("{}, {}", r.get::<Option<String>, _>(3).unwrap_or_else(|| "NONE".into()), r.get::<Option<String>, _>(4).unwrap_or_else(|| "NONE".into()));
        add(format!("operator {ns}.{name} ({args})"), format!("CREATE OPERATOR {}.{name} ({})", qi(&ns), opts.join(", ")));
    }
    // Operator classes in the family of their own name (the one CREATE OPERATOR CLASS makes):
    // their operators and support functions (a class in a family made apart is named as not
    // carried). After the operators and functions they name: the restore finds the order.
    for r in rows(conn, format!(
        "SELECT o.oid::int8, n.nspname::text, o.opcname::text, format_type(o.opcintype, NULL), o.opcdefault, a.amname::text, CASE WHEN o.opckeytype <> 0 THEN format_type(o.opckeytype, NULL) END \
         FROM pg_opclass o JOIN pg_namespace n ON n.oid = o.opcnamespace JOIN pg_am a ON a.oid = o.opcmethod JOIN pg_opfamily f ON f.oid = o.opcfamily \
         WHERE f.opfname = o.opcname AND f.opfnamespace = o.opcnamespace AND {USER_NS} AND {} ORDER BY o.oid", not_ext("o.oid")), "read operator classes").await? {
        let (oid, ns, name, for_type, default, method): (i64, String, String, String, bool, String) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
        let mut items = Vec::new();
        for m in rows(conn, format!(
            "SELECT format('OPERATOR %s %s%s', ao.amopstrategy, ao.amopopr::regoperator, CASE WHEN ao.amoppurpose = 'o' THEN ' FOR ORDER BY ' || (SELECT format('%I.%I', sn.nspname, sf.opfname) FROM pg_opfamily sf JOIN pg_namespace sn ON sn.oid = sf.opfnamespace WHERE sf.oid = ao.amopsortfamily) ELSE '' END) \
             FROM pg_amop ao JOIN pg_depend d ON d.classid = 'pg_amop'::regclass AND d.objid = ao.oid AND d.refclassid = 'pg_opclass'::regclass AND d.refobjid = {oid} ORDER BY ao.amopstrategy"), "read operator classes' operators").await? {
            items.push(m.get::<String, _>(0));
        }
        for m in rows(conn, format!(
            "SELECT format('FUNCTION %s (%s, %s) %s', ap.amprocnum, format_type(ap.amproclefttype, NULL), format_type(ap.amprocrighttype, NULL), ap.amproc::regprocedure) \
             FROM pg_amproc ap JOIN pg_depend d ON d.classid = 'pg_amproc'::regclass AND d.objid = ap.oid AND d.refclassid = 'pg_opclass'::regclass AND d.refobjid = {oid} ORDER BY ap.amprocnum"), "read operator classes' functions").await? {
            items.push(m.get::<String, _>(0));
        }
        if let Some(storage) = r.get::<Option<String>, _>(6) {
            items.push(format!("STORAGE {storage}"));
        }
        add(
            format!("operator class {ns}.{name} ({method})"),
            format!("CREATE OPERATOR CLASS {}.{}{} FOR TYPE {for_type} USING {} AS {}", qi(&ns), qi(&name), if default { " DEFAULT" } else { "" }, qi(&method), items.join(", ")),
        );
    }
    // Text search dictionaries (their options as the catalog keeps them), then configurations
    // with their token mappings.
    for r in rows(conn, format!(
        "SELECT n.nspname::text, d.dictname::text, format('%I.%I', tn.nspname, t.tmplname), d.dictinitoption FROM pg_ts_dict d JOIN pg_namespace n ON n.oid = d.dictnamespace \
         JOIN pg_ts_template t ON t.oid = d.dicttemplate JOIN pg_namespace tn ON tn.oid = t.tmplnamespace WHERE {USER_NS} AND {} ORDER BY d.oid", not_ext("d.oid")), "read text search dictionaries").await? {
        let (ns, name, template): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let options = r.get::<Option<String>, _>(3).filter(|o| !o.is_empty()).map(|o| format!(", {o}")).unwrap_or_default();
        add(format!("text search dictionary {ns}.{name}"), format!("CREATE TEXT SEARCH DICTIONARY {}.{} (TEMPLATE = {template}{options})", qi(&ns), qi(&name)));
    }
    for r in rows(conn, format!(
        "SELECT c.oid::int8, n.nspname::text, c.cfgname::text, format('%I.%I', pn.nspname, p.prsname) FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace \
         JOIN pg_ts_parser p ON p.oid = c.cfgparser JOIN pg_namespace pn ON pn.oid = p.prsnamespace WHERE {USER_NS} AND {} ORDER BY c.oid", not_ext("c.oid")), "read text search configurations").await? {
        let (oid, ns, name, parser): (i64, String, String, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
        let full = format!("{}.{}", qi(&ns), qi(&name));
        let mut sql = format!("CREATE TEXT SEARCH CONFIGURATION {full} (PARSER = {parser})");
        for m in rows(conn, format!(
            "SELECT t.alias, string_agg(m.mapdict::regdictionary::text, ', ' ORDER BY m.mapseqno) FROM pg_ts_config_map m JOIN pg_ts_config c ON c.oid = m.mapcfg \
             CROSS JOIN LATERAL ts_token_type(c.cfgparser) t WHERE m.mapcfg = {oid} AND t.tokid = m.maptokentype GROUP BY m.maptokentype, t.alias ORDER BY m.maptokentype"), "read text search mappings").await? {
            sql.push_str(&format!("; ALTER TEXT SEARCH CONFIGURATION {full} ADD MAPPING FOR {} WITH {}", m.get::<String, _>(0), m.get::<String, _>(1)));
        }
        add(format!("text search configuration {ns}.{name}"), sql);
    }
    // Foreign servers (their wrapper comes with its extension), user mappings without their
    // passwords, foreign tables.
    for r in rows(conn, format!(
        "SELECT s.srvname::text, w.fdwname::text, s.srvtype, s.srvversion, {} FROM pg_foreign_server s JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw WHERE {} ORDER BY s.oid",
        options_sql("s.srvoptions"), not_ext("s.oid")), "read foreign servers").await? {
        let (name, wrapper): (String, String) = (r.get(0), r.get(1));
        let mut sql = format!("CREATE SERVER {}", qi(&name));
        if let Some(t) = r.get::<Option<String>, _>(2) {
            sql.push_str(&format!(" TYPE {}", ql(&t)));
        }
        if let Some(v) = r.get::<Option<String>, _>(3) {
            sql.push_str(&format!(" VERSION {}", ql(&v)));
        }
        sql.push_str(&format!(" FOREIGN DATA WRAPPER {}", qi(&wrapper)));
        with_options(&mut sql, r.get(4));
        add(format!("foreign server {name}"), sql);
    }
    for r in rows(conn, format!(
        "SELECT u.srvname::text, CASE WHEN u.umuser = 0 THEN NULL ELSE u.usename::text END, {} FROM pg_user_mappings u WHERE {} ORDER BY u.umid",
        options_sql("u.umoptions"), not_ext("u.srvid")), "read user mappings").await? {
        let (server, role): (String, Option<String>) = (r.get(0), r.get(1));
        let mut sql = format!("CREATE USER MAPPING FOR {} SERVER {}", role.as_deref().map(qi).unwrap_or_else(|| "PUBLIC".into()), qi(&server));
        with_options(&mut sql, r.get(2));
        add(format!("user mapping for {} on server {server}", role.as_deref().unwrap_or("PUBLIC")), sql);
    }
    for r in rows(conn, format!(
        "SELECT c.oid::int8, n.nspname::text, c.relname::text, s.srvname::text, {}, \
                CASE WHEN c.relispartition THEN (SELECT format('%I.%I', pn.nspname, p.relname) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid) END, \
                pg_get_expr(c.relpartbound, c.oid) \
         FROM pg_foreign_table f JOIN pg_class c ON c.oid = f.ftrelid JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_foreign_server s ON s.oid = f.ftserver \
         WHERE {USER_NS} AND {} ORDER BY c.oid", options_sql("f.ftoptions"), not_ext("c.oid")), "read foreign tables").await? {
        let (oid, ns, name, server): (i64, String, String, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
        let full = format!("{}.{}", qi(&ns), qi(&name));
        let mut sql = match r.get::<Option<String>, _>(5) {
            Some(parent) => format!("CREATE FOREIGN TABLE {full} PARTITION OF {parent} {}", r.get::<Option<String>, _>(6).unwrap_or_default()),
            None => {
                let mut cols = Vec::new();
                for c in rows(conn, format!(
                    "SELECT quote_ident(a.attname), format_type(a.atttypid, a.atttypmod), {}, \
                            CASE WHEN a.attcollation <> t.typcollation AND a.attcollation <> 0 THEN (SELECT format('%I.%I', cn.nspname, co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation) END, \
                            a.attnotnull, pg_get_expr(d.adbin, d.adrelid) \
                     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                     WHERE a.attrelid = {oid} AND a.attnum > 0 AND NOT a.attisdropped AND a.attislocal ORDER BY a.attnum", options_sql("a.attfdwoptions")), "read foreign tables' columns").await? {
                    let mut d = format!("{} {}", c.get::<String, _>(0), c.get::<String, _>(1));
                    with_options(&mut d, c.get(2));
                    if let Some(co) = c.get::<Option<String>, _>(3) {
                        d.push_str(&format!(" COLLATE {co}"));
                    }
                    if c.get::<bool, _>(4) {
                        d.push_str(" NOT NULL");
                    }
                    if let Some(def) = c.get::<Option<String>, _>(5) {
                        d.push_str(&format!(" DEFAULT {def}"));
                    }
                    cols.push(d);
                }
                format!("CREATE FOREIGN TABLE {full} ({})", cols.join(", "))
            }
        };
        sql.push_str(&format!(" SERVER {}", qi(&server)));
        with_options(&mut sql, r.get(4));
        add(format!("foreign table {ns}.{name}"), sql);
    }
    Ok(())
}
