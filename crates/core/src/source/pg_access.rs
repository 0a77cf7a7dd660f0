//! Who owns each object of a database and who may use it: read into every backup, made again by
//! a restore only when asked (`--owners`, `--privileges`; as `pg_restore`, off by default, since
//! the roles must exist on the target — a server restore makes them first).
//!
//! Owners: schemas (but `public`), tables, views, materialized views, sequences (not those a
//! column owns: they follow their table), types and domains, functions, procedures and
//! aggregates, large objects. Privileges: the same objects' access lists, columns' too. An object
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
    /// DOMAIN, FUNCTION, PROCEDURE, AGGREGATE, LARGE OBJECT.
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

const OBJECTS: &str = "\
    SELECT 'SCHEMA', quote_ident(n.nspname), n.nspowner, n.nspacl, NULL::text FROM pg_namespace n WHERE {USER_NS} AND n.nspname <> 'public' AND {ns} \
    UNION ALL SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, \
           quote_ident(n.nspname) || '.' || quote_ident(c.relname), \
           CASE WHEN c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')) THEN NULL ELSE c.relowner END, \
           c.relacl, NULL::text \
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND {USER_NS} AND {rel} \
    UNION ALL SELECT 'TABLE', quote_ident(n.nspname) || '.' || quote_ident(c.relname), NULL, a.attacl, quote_ident(a.attname) \
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
      WHERE a.attacl IS NOT NULL AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm') AND {USER_NS} AND {rel} \
    UNION ALL SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype::text, t.typowner, t.typacl, NULL::text \
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
      WHERE {USER_NS} AND {ty} AND (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')) \
    UNION ALL SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END, p.oid::regprocedure::text, p.proowner, p.proacl, NULL::text \
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {USER_NS} AND {pr} \
    UNION ALL SELECT 'LARGE OBJECT', m.oid::text, m.lomowner, m.lomacl, NULL::text FROM pg_largeobject_metadata m";

/// Reads the owners and the access lists that are not the default.
pub async fn read(conn: &mut PgConnection) -> Result<(Vec<Owned>, Vec<Access>)> {
    let sql = OBJECTS.replace("{USER_NS}", USER_NS).replace("{ns}", &not_ext("n.oid")).replace("{rel}", &not_ext("c.oid")).replace("{ty}", &not_ext("t.oid")).replace("{pr}", &not_ext("p.oid"));
    let sql = format!(
        "SELECT o.kind, o.name, pg_get_userbyid(o.owner)::text, o.col, \
                (SELECT array_agg(coalesce(CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee)::text END, '') || chr(1) || a.privilege_type || chr(1) || a.is_grantable::text ORDER BY a.grantee, a.privilege_type) \
                   FROM aclexplode(o.acl) a), o.owner IS NOT NULL, o.acl IS NOT NULL \
         FROM ({sql}) AS o(kind, name, owner, acl, col) ORDER BY 1, 2, 4 NULLS FIRST"
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
            let entries = r
                .get::<Option<Vec<String>>, _>(4)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|e| {
                    let mut p = e.split('\u{1}');
                    let (g, privilege, grantable) = (p.next()?, p.next()?, p.next()?);
                    Some(((!g.is_empty()).then(|| g.to_string()), privilege.to_string(), grantable == "true"))
                })
                .collect();
            // A function's access list is granted ON FUNCTION (aggregates too).
            let kind = if kind == "AGGREGATE" { "FUNCTION".to_string() } else if matches!(kind.as_str(), "VIEW" | "MATERIALIZED VIEW") { "TABLE".to_string() } else { kind };
            access.push(Access { kind, name, column, owner: owner.unwrap_or_default(), entries });
        }
    }
    Ok((owned, access))
}

/// The roles `owned` and `access` name.
pub fn roles(owned: &[Owned], access: &[Access]) -> std::collections::BTreeSet<String> {
    let mut out: std::collections::BTreeSet<String> = owned.iter().map(|o| o.owner.clone()).collect();
    for a in access {
        out.extend(a.entries.iter().filter_map(|e| e.0.clone()));
    }
    out
}

/// The statements that give the objects their owners (`owners`) and access lists (`privileges`)
/// on a target of `version` whose roles are `roles`: owners first, so that grants are recorded as
/// the owner's.
pub fn statements(owned: &[Owned], access: &[Access], owners: bool, privileges: bool, roles: &[String], version: i32) -> Vec<Stmt> {
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
            for (grantee, privilege, grantable) in &a.entries {
                // MAINTAIN is a privilege from PostgreSQL 17 on.
                if privilege == "MAINTAIN" && version < 170_000 {
                    continue;
                }
                let to = match grantee {
                    None => "PUBLIC".to_string(),
                    Some(g) if has(g) => qi(g),
                    Some(_) => continue,
                };
                // The privilege's name is one of the catalog's own (aclexplode's words).
                if !privilege.chars().all(|c| c.is_ascii_uppercase() || c == ' ') {
                    continue;
                }
                let cols = a.column.as_ref().map(|c| format!(" ({c})")).unwrap_or_default();
                sql.push(format!("GRANT {privilege}{cols} ON {on} TO {to}{}", if *grantable { " WITH GRANT OPTION" } else { "" }));
            }
            out.push(Stmt { what, sql: sql.join("; "), table: None, references: None });
        }
    }
    out
}
