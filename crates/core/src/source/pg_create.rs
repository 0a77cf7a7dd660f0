//! A selective restore's tables that the target lacks, created as the backup has them — the
//! everyday "put last week's `invoices` into a scratch database so I can look" that
//! `pg_restore -t` does. Each table comes with what it needs and the target does not have: its
//! schema, the types, sequences and functions its columns name, its sequences' values, its keys,
//! checks, unique constraints and indexes. A foreign key to a table that is neither restored nor
//! in the target is left out and said. Everything runs in the restore's one transaction.

use std::collections::BTreeSet;

use sqlx::AssertSqlSafe;

use super::postgres::{q, qi, restore_error, PgSchema, Stmt};
use crate::error::Result;

/// What creating the missing tables did (or, in a dry run, would do).
#[derive(Debug, Default)]
pub(crate) struct Created {
    /// One line per table: what was created with it.
    pub said: Vec<String>,
    /// Foreign keys left out, each with why.
    pub left_out: Vec<String>,
}

/// Whether `name` (as a type, sequence or function of `ns`) occurs in `sql` as a name: bare,
/// schema-qualified, or quoted.
fn names(sql: &str, ns: &str, name: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '$' || c == '"';
    let whole = |needle: &str| {
        sql.match_indices(needle).any(|(i, m)| {
            let before = sql[..i].chars().next_back();
            let after = sql[i + m.len()..].chars().next();
            // A name qualified by another schema is another object.
            let qualified_elsewhere = before == Some('.') && !sql[..i].ends_with(&format!("{ns}.")) && !sql[..i].ends_with(&format!("{}.", qi(ns)));
            !before.is_some_and(word) && !after.is_some_and(word) && !qualified_elsewhere
        })
    };
    whole(name) || whole(&qi(name))
}

/// `ns.name` out of a statement's `what` ("type public.mood" → ("public", "mood")).
fn object<'a>(what: &'a str, kind: &str) -> Option<(&'a str, &'a str)> {
    what.strip_prefix(kind)?.strip_prefix(' ')?.split_once('.')
}

async fn exists(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, sql: &str, ns: &str, name: &str) -> Result<bool> {
    sqlx::query_scalar(AssertSqlSafe(sql.to_string())).bind(ns).bind(name).fetch_one(&mut **tx).await.map_err(q("look for an object in the target"))
}

async fn run(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, st: &Stmt) -> Result<()> {
    sqlx::raw_sql(AssertSqlSafe(st.sql.clone())).execute(&mut **tx).await.map_err(|e| restore_error(&st.what, &e))?;
    Ok(())
}

/// Creates the tables `missing` (section names; a partitioned table with its partitions) in the
/// target, inside `tx`. `present` says whether a table (section name) exists in the target.
pub(crate) async fn create_tables(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, schema: &PgSchema, missing: &BTreeSet<String>, present: &(dyn Fn(&str) -> bool + Sync), cancel: &super::CancelToken) -> Result<Created> {
    let mut out = Created::default();
    // The tables: those asked for; for a partition, the partitioned table it belongs to (a
    // partition is restored as part of its table); for a partitioned table, its partitions, at
    // every level.
    let mut tables: BTreeSet<String> = missing.clone();
    let mut roots = BTreeSet::new();
    for t in &schema.tables {
        if let Some(r) = t.root.as_ref().filter(|_| missing.contains(&t.section())) {
            if !present(r) {
                roots.insert(r.clone());
            }
        }
    }
    tables.extend(roots.iter().cloned());
    // Then, until nothing is added: for a partitioned table, its partitions; for a table that
    // inherits (legacy inheritance: it is made `INHERITS` its parents), each parent the target
    // lacks (created without rows: its rows are restored only when it is selected).
    let mut parents = BTreeSet::new();
    loop {
        let before = tables.len();
        for st in &schema.objects {
            let Some(section) = st.what.strip_prefix("table ") else { continue };
            if tables.contains(section) {
                for parent in inherited_from(&st.sql) {
                    let Some(p) = schema.objects.iter().filter_map(|o| o.what.strip_prefix("table ")).find(|t| same_relation(&parent, t)) else { continue };
                    if !tables.contains(p) && !present(p) {
                        parents.insert(p.to_string());
                    }
                }
            } else if let Some(parent) = st.sql.split_once(" PARTITION OF ").map(|(_, p)| p.split_whitespace().next().unwrap_or_default()) {
                if tables.iter().any(|t| same_relation(parent, t)) {
                    tables.insert(section.to_string());
                }
            }
        }
        tables.extend(parents.iter().cloned());
        if tables.len() == before {
            break;
        }
    }
    let table_stmts: Vec<&Stmt> = schema.objects.iter().filter(|s| s.what.strip_prefix("table ").is_some_and(|t| tables.contains(t))).collect();
    // What their statements name and the target lacks: types (and the types those name),
    // sequences, functions. Found by name in the statements, then looked for in the target.
    let mut needed: Vec<&Stmt> = Vec::new();
    let mut texts: Vec<String> = table_stmts.iter().map(|s| s.sql.clone()).collect();
    let mut owned_sequences = BTreeSet::new();
    for st in schema.post.iter().filter(|s| s.what.starts_with("sequence ") && s.what.ends_with(" owner")) {
        if tables.iter().any(|t| owner_is(&st.sql, t)) {
            owned_sequences.insert(st.what.trim_start_matches("sequence ").trim_end_matches(" owner").to_string());
        }
    }
    loop {
        let mut grew = false;
        for st in &schema.objects {
            if needed.iter().any(|n| std::ptr::eq(*n, st)) {
                continue;
            }
            let (kind, probe) = if st.what.starts_with("type ") {
                ("type", "SELECT EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = $1 AND t.typname = $2)")
            } else if st.what.starts_with("sequence ") {
                ("sequence", "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2)")
            } else if st.what.starts_with("function ") {
                ("function", "SELECT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 AND p.proname = $2)")
            } else {
                continue;
            };
            let Some((ns, name)) = object(&st.what, kind) else { continue };
            let wanted = (kind == "sequence" && owned_sequences.contains(&format!("{ns}.{name}"))) || texts.iter().any(|t| names(t, ns, name));
            if wanted && !exists(tx, probe, ns, name).await? {
                needed.push(st);
                texts.push(st.sql.clone());
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    // Their schemas first, then the objects in an order that works (each tried until what it
    // needs exists, as a full restore does), then the tables.
    let schemas: BTreeSet<&str> = schema.extensions.iter().filter(|s| s.what.starts_with("schema ")).map(|s| s.what.trim_start_matches("schema ")).collect();
    for st in schema.extensions.iter().filter(|s| s.what.starts_with("schema ")) {
        let ns = st.what.trim_start_matches("schema ");
        if schemas.contains(ns) && (tables.iter().chain(needed.iter().map(|n| &n.what)).any(|t| t.contains(&format!("{ns}.")))) {
            run(tx, st).await?;
        }
    }
    sqlx::query("SET LOCAL check_function_bodies = off").execute(&mut **tx).await.map_err(q("prepare the restore"))?;
    super::postgres::create_in_order(tx, needed.iter().copied().chain(table_stmts.iter().copied()).collect(), cancel).await?;
    // Keys, checks, unique constraints and indexes; foreign keys whose other end exists.
    let created_sequences: BTreeSet<String> = needed.iter().filter_map(|s| object(&s.what, "sequence")).map(|(a, b)| format!("{a}.{b}")).collect();
    let mut per_table: std::collections::BTreeMap<&str, (usize, usize)> = tables.iter().map(|t| (t.as_str(), (0, 0))).collect();
    for st in &schema.post {
        let on_created = st.table.as_deref().is_some_and(|t| tables.contains(t));
        if st.what.starts_with("constraint ") && on_created {
            if let Some(parent) = &st.references {
                if !tables.contains(parent) && !present(parent) {
                    out.left_out.push(format!("{}: it references {parent}, which is neither restored nor in the target", st.what));
                    continue;
                }
            }
            run(tx, st).await?;
            if let Some(c) = per_table.get_mut(st.table.as_deref().unwrap_or_default()) {
                c.0 += 1;
            }
        } else if st.what.starts_with("index ") && on_created {
            run(tx, st).await?;
            if let Some(c) = per_table.get_mut(st.table.as_deref().unwrap_or_default()) {
                c.1 += 1;
            }
        } else if let Some(seq) = st.what.strip_prefix("value of ").filter(|s| created_sequences.contains(*s)) {
            let _ = seq;
            run(tx, st).await?;
        } else if let Some(seq) = st.what.strip_prefix("sequence ").and_then(|s| s.strip_suffix(" owner")).filter(|s| created_sequences.contains(*s)) {
            let _ = seq;
            run(tx, st).await?;
        } else if st.what.starts_with("identity of ") && tables.iter().any(|t| identity_of(&st.sql, t)) {
            run(tx, st).await?;
        }
    }
    for r in &roots {
        let parts: Vec<&str> = tables.iter().filter(|t| *t != r && !roots.contains(*t)).map(String::as_str).filter(|t| schema.tables.iter().any(|x| x.section() == *t && x.root.as_ref() == Some(r))).collect();
        out.said.push(format!("{r} does not exist in the target: the partitioned table is created as the backup has it, with its partitions {}", parts.join(", ")));
    }
    for p in &parents {
        out.said.push(format!("{p} does not exist in the target: a restored table inherits from it, so it is created as the backup has it, without its rows"));
    }
    for (t, (constraints, indexes)) in per_table {
        if missing.contains(t) || roots.contains(t) {
            let n = |k: usize, one: &str, many: &str| format!("{k} {}", if k == 1 { one } else { many });
            out.said.push(format!(
                "{t} does not exist in the target: it is created as the backup has it ({}, {})",
                n(constraints, "key or constraint", "keys and constraints"),
                n(indexes, "index", "indexes")
            ));
        }
    }
    let extra: Vec<String> = needed.iter().map(|s| s.what.clone()).collect();
    if !extra.is_empty() {
        out.said.push(format!("created with them, as the target lacks them: {}", extra.join(", ")));
    }
    Ok(out)
}

/// The parents a `CREATE TABLE … INHERITS (a, b)` names, each as written (quoted, qualified).
fn inherited_from(sql: &str) -> Vec<String> {
    let Some((_, list)) = sql.rsplit_once(" INHERITS (") else { return Vec::new() };
    let (mut out, mut item, mut quoted) = (Vec::new(), String::new(), false);
    for c in list.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                item.push(c);
            }
            ',' | ')' if !quoted => {
                out.push(item.trim().to_string());
                item.clear();
                if c == ')' {
                    break;
                }
            }
            _ => item.push(c),
        }
    }
    out
}

/// Whether an `ALTER SEQUENCE … OWNED BY` statement names a column of `table` (a section name).
fn owner_is(sql: &str, table: &str) -> bool {
    let Some(owner) = sql.rsplit_once(" OWNED BY ").map(|(_, o)| o) else { return false };
    let Some((rel, _col)) = owner.rsplit_once('.') else { return false };
    same_relation(rel, table)
}

/// Whether an identity's `setval(pg_get_serial_sequence('rel', 'col'), …)` is on `table`.
fn identity_of(sql: &str, table: &str) -> bool {
    let Some(start) = sql.find("pg_get_serial_sequence('") else { return false };
    let rest = &sql[start + "pg_get_serial_sequence('".len()..];
    let mut rel = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            if chars.peek() == Some(&'\'') {
                chars.next();
                rel.push('\'');
                continue;
            }
            break;
        }
        rel.push(c);
    }
    same_relation(&rel, table)
}

/// Whether `rel` (`schema.name`, each part quoted where needed) is the table of section `table`.
fn same_relation(rel: &str, table: &str) -> bool {
    let parts = split_qualified(rel);
    match parts.as_slice() {
        [ns, name] => super::tenancy::section_name(ns, name) == table,
        _ => false,
    }
}

/// Splits `a.b` where each part may be double-quoted (with `""` inside).
fn split_qualified(s: &str) -> Vec<String> {
    split_quoted(s, '.')
}

/// Splits `s` at each `sep` outside double quotes, the quotes taken off (`""` inside is one `"`)
/// and blanks before an item dropped: `a, "b c"` → `a`, `b c`.
pub(crate) fn split_quoted(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => quoted = !quoted,
            c if c == sep && !quoted => parts.push(std::mem::take(&mut cur)),
            c if c.is_whitespace() && !quoted && cur.is_empty() => {}
            c => cur.push(c),
        }
    }
    parts.push(cur);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_whole_names_only() {
        assert!(names("status public.mood NOT NULL", "public", "mood"));
        assert!(names("status mood NOT NULL", "public", "mood"));
        assert!(names("status \"Mood\" NOT NULL", "public", "Mood"));
        assert!(!names("status moods NOT NULL", "public", "mood"));
        assert!(!names("status my_mood NOT NULL", "public", "mood"));
        assert!(!names("status other.mood NOT NULL", "public", "mood"));
        assert!(names("DEFAULT nextval('invoices_id_seq'::regclass)", "public", "invoices_id_seq"));
    }

    #[test]
    fn owners_and_identities_name_their_table() {
        assert!(owner_is("ALTER SEQUENCE \"public\".\"s\" OWNED BY public.invoices.id", "public.invoices"));
        assert!(owner_is("ALTER SEQUENCE x OWNED BY \"My\".\"Tab.le\".id", "My.\"Tab.le\""));
        assert!(!owner_is("ALTER SEQUENCE x OWNED BY public.invoices_old.id", "public.invoices"));
        assert!(identity_of("SELECT setval(pg_get_serial_sequence('public.fees', 'id'), 3, true)", "public.fees"));
        assert!(identity_of("SELECT setval(pg_get_serial_sequence('\"It''s\".fees', 'id'), 3, true)", "It's.fees"));
        assert!(!identity_of("SELECT setval(pg_get_serial_sequence('public.fees2', 'id'), 3, true)", "public.fees"));
    }

    #[test]
    fn the_parents_of_an_inheriting_table_are_read_as_written() {
        assert_eq!(inherited_from("CREATE TABLE public.cars (\n    doors integer\n) INHERITS (public.vehicles) WITH (fillfactor=70)"), vec!["public.vehicles"]);
        assert_eq!(inherited_from("CREATE TABLE a.b (\n    \n) INHERITS (public.cars, \"My, \"\"odd).\".\"t(1)\")"), vec!["public.cars", "\"My, \"\"odd).\".\"t(1)\""]);
        assert!(same_relation(&inherited_from("CREATE TABLE x () INHERITS (\"My, \"\"odd).\".\"t(1)\")")[0], &crate::source::tenancy::section_name("My, \"odd).", "t(1)")));
        assert!(inherited_from("CREATE TABLE public.t (\n    a integer\n)").is_empty());
    }
}
