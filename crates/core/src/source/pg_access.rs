//! Who owns each object of a database and who may use it: read into every backup, made again by
//! a restore only when asked (`--owners`, `--privileges`; as `pg_restore`, off by default, since
//! the roles must exist on the target — a server restore makes them first).
//!
//! Owners: schemas (but `public`), tables, views, materialized views, sequences (not those a
//! column owns: they follow their table), types and domains, functions, procedures and
//! aggregates, large objects, collations, operators, text search configurations and
//! dictionaries, foreign servers and tables, publications (not event triggers: their owner must
//! be a superuser, and the restoring one is). Privileges: the same objects' access lists, columns'
//! too, and the default privileges (`ALTER DEFAULT PRIVILEGES`). An object
//! whose access list is the default (NULL in the catalog) is left with the target's default.
//! A role the target lacks is named in the plan, and what it owned or was granted is left as the
//! restore makes it (owned by the restoring user, not granted).

use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::postgres::{not_ext, q, qi, Stmt, USER_NS};
use crate::error::Result;

/// An object's owner.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Owned {
    /// The keyword of `ALTER … OWNER TO`: SCHEMA, TABLE, VIEW, MATERIALIZED VIEW, SEQUENCE, TYPE,
    /// DOMAIN, FUNCTION, PROCEDURE, AGGREGATE, LARGE OBJECT, COLLATION, OPERATOR, TEXT SEARCH
    /// CONFIGURATION, TEXT SEARCH DICTIONARY, SERVER, FOREIGN TABLE, PUBLICATION.
    pub kind: String,
    /// The object's name as SQL writes it (quoted, with its arguments for a function).
    pub name: String,
    pub owner: String,
}

/// An object's (or a column's) access list, when it is not the default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Access {
    /// The keyword of `GRANT … ON`: SCHEMA, TABLE, SEQUENCE, TYPE, DOMAIN, FUNCTION, PROCEDURE,
    /// LARGE OBJECT.
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub owner: String,
    /// (grantee — `None` for PUBLIC —, privilege, with grant option)
    pub entries: Vec<(Option<String>, String, bool)>,
}

/// Default privileges (`ALTER DEFAULT PRIVILEGES`): what objects `role` makes from now on grant.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DefaultAccess {
    pub role: String,
    /// `None`: for every schema (the list replaces the built-in default); else for this schema
    /// (added to the default).
    pub schema: Option<String>,
    /// TABLES, SEQUENCES, FUNCTIONS, TYPES or SCHEMAS.
    pub kind: String,
    pub entries: Vec<(Option<String>, String, bool)>,
}

const OBJECTS: &str = "\
    SELECT 'SCHEMA', quote_ident(n.nspname), n.nspowner, n.nspacl, NULL::text FROM pg_namespace n WHERE {USER_NS} AND n.nspname <> 'public' AND {ns} \
    UNION ALL SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, \
           quote_ident(n.nspname) || '.' || quote_ident(c.relname), \
           CASE WHEN c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')) THEN NULL ELSE c.relowner END, \
           c.relacl, NULL::text \
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND {USER_NS} AND {rel} \
    UNION ALL SELECT 'TABLE', quote_ident(n.nspname) || '.' || quote_ident(c.relname), NULL, a.attacl, quote_ident(a.attname) \
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
      WHERE a.attacl IS NOT NULL AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {USER_NS} AND {rel} \
    UNION ALL SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype::text, t.typowner, t.typacl, NULL::text \
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
      WHERE {USER_NS} AND {ty} AND (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')) \
    UNION ALL SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END, p.oid::regprocedure::text, p.proowner, p.proacl, NULL::text \
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {USER_NS} AND {pr} \
    UNION ALL SELECT 'LARGE OBJECT', m.oid::text, m.lomowner, m.lomacl, NULL::text FROM pg_largeobject_metadata m \
    UNION ALL SELECT 'COLLATION', quote_ident(n.nspname) || '.' || quote_ident(c.collname), c.collowner, NULL::aclitem[], NULL::text \
      FROM pg_collation c JOIN pg_namespace n ON n.oid = c.collnamespace WHERE {USER_NS} AND {co} \
    UNION ALL SELECT 'OPERATOR', o.oid::regoperator::text, o.oprowner, NULL::aclitem[], NULL::text \
      FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace WHERE o.oprcode <> 0 AND {USER_NS} AND {op} \
    UNION ALL SELECT 'TEXT SEARCH CONFIGURATION', quote_ident(n.nspname) || '.' || quote_ident(t.cfgname), t.cfgowner, NULL::aclitem[], NULL::text \
      FROM pg_ts_config t JOIN pg_namespace n ON n.oid = t.cfgnamespace WHERE {USER_NS} AND {cfg} \
    UNION ALL SELECT 'TEXT SEARCH DICTIONARY', quote_ident(n.nspname) || '.' || quote_ident(t.dictname), t.dictowner, NULL::aclitem[], NULL::text \
      FROM pg_ts_dict t JOIN pg_namespace n ON n.oid = t.dictnamespace WHERE {USER_NS} AND {dict} \
    UNION ALL SELECT 'SERVER', quote_ident(s.srvname), s.srvowner, s.srvacl, NULL::text FROM pg_foreign_server s WHERE {srv} \
    UNION ALL SELECT 'FOREIGN TABLE', quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relowner, c.relacl, NULL::text \
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'f' AND {USER_NS} AND {rel} \
    UNION ALL SELECT 'PUBLICATION', quote_ident(p.pubname), p.pubowner, NULL::aclitem[], NULL::text FROM pg_publication p WHERE p.pubname NOT LIKE 'safehold\\_%'";

fn entries(list: Option<Vec<String>>) -> Vec<(Option<String>, String, bool)> {
    list.unwrap_or_default()
        .into_iter()
        .filter_map(|e| {
            let mut p = e.split('\u{1}');
            let (g, privilege, grantable) = (p.next()?, p.next()?, p.next()?);
            Some(((!g.is_empty()).then(|| g.to_string()), privilege.to_string(), grantable == "true"))
        })
        .collect()
}

/// An access list as (grantee, privilege, grantable) rows joined into text, `acl` an aclitem[].
const EXPLODE: &str = "(SELECT array_agg(coalesce(CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee)::text END, '') || chr(1) || a.privilege_type || chr(1) || a.is_grantable::text ORDER BY a.grantee, a.privilege_type) FROM aclexplode({acl}) a)";

/// Reads the default privileges.
pub async fn read_defaults(conn: &mut PgConnection) -> Result<Vec<DefaultAccess>> {
    let sql = format!(
        "SELECT pg_get_userbyid(d.defaclrole)::text, CASE WHEN d.defaclnamespace = 0 THEN NULL ELSE quote_ident(n.nspname) END, \
                CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS' WHEN 'T' THEN 'TYPES' WHEN 'n' THEN 'SCHEMAS' END, {} \
         FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace ORDER BY 1, 2 NULLS FIRST, 3",
        EXPLODE.replace("{acl}", "d.defaclacl")
    );
    let mut out = Vec::new();
    for r in sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *conn).await.map_err(q("read default privileges"))? {
        if let Some(kind) = r.get::<Option<String>, _>(2) {
            out.push(DefaultAccess { role: r.get(0), schema: r.get(1), kind, entries: entries(r.get(3)) });
        }
    }
    Ok(out)
}

/// Reads the owners and the access lists that are not the default.
pub async fn read(conn: &mut PgConnection) -> Result<(Vec<Owned>, Vec<Access>)> {
    let sql = OBJECTS
        .replace("{USER_NS}", USER_NS)
        .replace("{ns}", &not_ext("n.oid"))
        .replace("{rel}", &not_ext("c.oid"))
        .replace("{ty}", &not_ext("t.oid"))
        .replace("{pr}", &not_ext("p.oid"))
        .replace("{co}", &not_ext("c.oid"))
        .replace("{op}", &not_ext("o.oid"))
        .replace("{cfg}", &not_ext("t.oid"))
        .replace("{dict}", &not_ext("t.oid"))
        .replace("{srv}", &not_ext("s.oid"));
    let sql = format!(
        "SELECT o.kind, o.name, pg_get_userbyid(o.owner)::text, o.col, {}, o.owner IS NOT NULL, o.acl IS NOT NULL \
         FROM ({sql}) AS o(kind, name, owner, acl, col) ORDER BY 1, 2, 4 NULLS FIRST",
        EXPLODE.replace("{acl}", "o.acl")
    );
    let mut owned = Vec::new();
    let mut access = Vec::new();
    for r in sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *conn).await.map_err(q("read owners and privileges"))? {
        let (kind, name, owner, column): (String, String, Option<String>, Option<String>) = (r.get(0), r.get(1), r.get(2), r.get(3));
        let has_owner: bool = r.get(5);
        if has_owner && column.is_none() {
            if let Some(o) = &owner {
                owned.push(Owned { kind: kind.clone(), name: name.clone(), owner: o.clone() });
            }
        }
        if r.get::<bool, _>(6) {
            let entries = entries(r.get(4));
            // A function's access list is granted ON FUNCTION (aggregates too).
            let kind = match kind.as_str() {
                "AGGREGATE" => "FUNCTION".to_string(),
                "VIEW" | "MATERIALIZED VIEW" | "FOREIGN TABLE" => "TABLE".to_string(),
                "SERVER" => "FOREIGN SERVER".to_string(),
                _ => kind,
            };
            access.push(Access { kind, name, column, owner: owner.unwrap_or_default(), entries });
        }
    }
    Ok((owned, access))
}

/// The roles `owned`, `access` and `defaults` name.
pub fn roles(owned: &[Owned], access: &[Access], defaults: &[DefaultAccess]) -> std::collections::BTreeSet<String> {
    let mut out: std::collections::BTreeSet<String> = owned.iter().map(|o| o.owner.clone()).collect();
    for a in access {
        out.extend(a.entries.iter().filter_map(|e| e.0.clone()));
    }
    for d in defaults {
        out.insert(d.role.clone());
        out.extend(d.entries.iter().filter_map(|e| e.0.clone()));
    }
    out
}

/// One grant of an access list, `None` when the target cannot take it (a role it lacks; MAINTAIN
/// before 17; a word that is not a privilege's).
fn grant_to(entry: &(Option<String>, String, bool), has: &dyn Fn(&str) -> bool, version: i32) -> Option<(String, String, &'static str)> {
    let (grantee, privilege, grantable) = entry;
    if (privilege == "MAINTAIN" && version < 170_000) || !privilege.chars().all(|c| c.is_ascii_uppercase() || c == ' ') {
        return None;
    }
    let to = match grantee {
        None => "PUBLIC".to_string(),
        Some(g) if has(g) => qi(g),
        Some(_) => return None,
    };
    Some((privilege.clone(), to, if *grantable { " WITH GRANT OPTION" } else { "" }))
}

/// The statements that give the objects their owners (`owners`) and access lists (`privileges`)
/// on a target of `version` whose roles are `roles`: owners first, so that grants are recorded as
/// the owner's.
pub fn statements(owned: &[Owned], access: &[Access], defaults: &[DefaultAccess], owners: bool, privileges: bool, roles: &[String], version: i32) -> Vec<Stmt> {
    let has = |r: &str| roles.iter().any(|x| x == r);
    let mut out = Vec::new();
    if owners {
        for o in owned.iter().filter(|o| has(&o.owner)) {
            out.push(Stmt { what: format!("owner of {} {}", o.kind.to_lowercase(), o.name), sql: format!("ALTER {} {} OWNER TO {}", o.kind, o.name, qi(&o.owner)), table: None, references: None });
        }
    }
    if privileges {
        for a in access {
            let what = format!("privileges on {} {}{}", a.kind.to_lowercase(), a.name, a.column.as_ref().map(|c| format!(" ({c})")).unwrap_or_default());
            let mut sql = Vec::new();
            let on = format!("{} {}", a.kind, a.name);
            if a.column.is_none() {
                sql.push(format!("REVOKE ALL ON {on} FROM PUBLIC"));
                if owners && has(&a.owner) {
                    sql.push(format!("REVOKE ALL ON {on} FROM {}", qi(&a.owner)));
                }
            }
            for (privilege, to, option) in a.entries.iter().filter_map(|e| grant_to(e, &has, version)) {
                let cols = a.column.as_ref().map(|c| format!(" ({c})")).unwrap_or_default();
                sql.push(format!("GRANT {privilege}{cols} ON {on} TO {to}{option}"));
            }
            out.push(Stmt { what, sql: sql.join("; "), table: None, references: None });
        }
        // Default privileges: a list for every schema replaces the built-in default (so what it
        // lacks is revoked first); one for a schema adds to it.
        for d in defaults.iter().filter(|d| has(&d.role)) {
            let scope = format!("ALTER DEFAULT PRIVILEGES FOR ROLE {}{}", qi(&d.role), d.schema.as_ref().map(|s| format!(" IN SCHEMA {s}")).unwrap_or_default());
            let mut sql = Vec::new();
            if d.schema.is_none() {
                sql.push(format!("{scope} REVOKE ALL ON {} FROM PUBLIC", d.kind));
                sql.push(format!("{scope} REVOKE ALL ON {} FROM {}", d.kind, qi(&d.role)));
            }
            for (privilege, to, option) in d.entries.iter().filter_map(|e| grant_to(e, &has, version)) {
                sql.push(format!("{scope} GRANT {privilege} ON {} TO {to}{option}", d.kind));
            }
            out.push(Stmt { what: format!("default privileges of {} on {}", d.role, d.kind.to_lowercase()), sql: sql.join("; "), table: None, references: None });
        }
    }
    out
}
