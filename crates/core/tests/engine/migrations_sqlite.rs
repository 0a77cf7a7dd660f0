//! Tenant migrations on SQLite, through the engine's one entry point (`migrate::execute`) as on
//! PostgreSQL. The schema is the demo platform's, which nobody wrote for these tests to pass: a
//! tenants table keyed by UUID text with a unique slug, users unique per tenant by email,
//! projects owned by users, documents in projects by authors (two hops from the tenant), events
//! with an AUTOINCREMENT key pointing at users or at nobody.

use std::collections::BTreeMap;
use std::path::Path;

use safehold_core::migrate::rules::{Action, FakeKind, Rule};
use safehold_core::migrate::{self, Endpoints, MigrationReport, MigrationSpec, MigrationType, Resolution};
use safehold_core::source::{no_progress, CancelToken};

use crate::migrations::{rewrite_zip, zip_files};
use crate::restores::{sqlite_exec, sqlite_query};
use crate::support::ScratchDb;

const TABLES: [&str; 5] = ["tenants", "users", "projects", "documents", "events"];

fn url(p: &Path) -> String {
    format!("sqlite://{}", p.display())
}

fn ends(source: Option<&Path>, target: Option<&Path>) -> Endpoints {
    Endpoints { source_url: source.map(url), target_url: target.map(url), tenant_column: "tenant_id".into(), tenants_table: "tenants".into(), ..Default::default() }
}

fn spec(kind: MigrationType, tenant: &str) -> MigrationSpec {
    MigrationSpec { migration_type: Some(kind), source_tenant_ids: vec![tenant.into()], ..Default::default() }
}

async fn execute(s: &MigrationSpec, e: &Endpoints, commit: bool) -> safehold_core::Result<MigrationReport> {
    migrate::execute(s, e, commit, &CancelToken::new(), &no_progress()).await
}

fn table<'a>(r: &'a MigrationReport, t: &str) -> &'a migrate::TableReport {
    r.tables.iter().find(|x| x.table == t).unwrap_or_else(|| panic!("no table {t} in {:?}", r.tables))
}

/// A tenant's data without its keys: every row as text, foreign keys followed to what they
/// point at (an owner, an author, a project by its name).
fn content(db: &Path, t: &str) -> BTreeMap<&'static str, Vec<String>> {
    [
        ("tenants", format!("SELECT plan || '|' || region || '|' || status FROM tenants WHERE id = '{t}'")),
        ("users", format!("SELECT email || '|' || full_name || '|' || role || '|' || coalesce(last_login_at, '') FROM users WHERE tenant_id = '{t}'")),
        ("projects", format!("SELECT p.name || '|' || p.status || '|' || coalesce(p.budget_cents, '') || '|' || u.email FROM projects p JOIN users u ON u.id = p.owner_id WHERE p.tenant_id = '{t}'")),
        (
            "documents",
            format!("SELECT d.title || '|' || d.size_bytes || '|' || d.tags || '|' || p.name || '|' || u.email FROM documents d JOIN projects p ON p.id = d.project_id JOIN users u ON u.id = d.author_id WHERE d.tenant_id = '{t}'"),
        ),
        ("events", format!("SELECT e.kind || '|' || e.payload || '|' || coalesce(u.email, '') || '|' || e.occurred_at FROM events e LEFT JOIN users u ON u.id = e.user_id WHERE e.tenant_id = '{t}'")),
    ]
    .into_iter()
    .map(|(k, q)| (k, sqlite_query(db, &q)))
    .collect()
}

fn everything(db: &Path) -> Vec<String> {
    TABLES.iter().flat_map(|t| sqlite_query(db, &format!("SELECT '{t}', * FROM {t}"))).collect()
}

/// Every reference of every row stays inside its tenant, and no foreign key points at nothing.
fn references_stay_inside(db: &Path) {
    let stray = sqlite_query(
        db,
        "SELECT (SELECT count(*) FROM projects p JOIN users u ON u.id = p.owner_id WHERE u.tenant_id <> p.tenant_id)
              + (SELECT count(*) FROM documents d JOIN projects p ON p.id = d.project_id WHERE p.tenant_id <> d.tenant_id)
              + (SELECT count(*) FROM documents d JOIN users u ON u.id = d.author_id WHERE u.tenant_id <> d.tenant_id)
              + (SELECT count(*) FROM events e JOIN users u ON u.id = e.user_id WHERE u.tenant_id <> e.tenant_id)",
    );
    assert_eq!(stray, ["0"], "every reference stays inside its tenant");
    assert_eq!(sqlite_query(db, "PRAGMA foreign_key_check"), Vec::<String>::new(), "no foreign key points at nothing");
}

fn rows_of(db: &Path, t: &str, tenant: &str) -> u64 {
    let col = if t == "tenants" { "id" } else { "tenant_id" };
    sqlite_query(db, &format!("SELECT count(*) FROM {t} WHERE {col} = '{tenant}'"))[0].parse().expect("a count")
}

/// Two tenants of the demo with enough rows to show something: (a, b).
async fn demo(path: &Path, seed: u64) -> (String, String) {
    safehold_core::demo::generate(path, seed).await.expect("demo");
    let ids = sqlite_query(path, "SELECT tenant_id FROM documents GROUP BY tenant_id HAVING count(*) > 10 ORDER BY tenant_id LIMIT 2");
    (ids[0].clone(), ids[1].clone())
}

/// A copy in one file gets a new tenant id and new keys everywhere (UUIDs fresh, the
/// AUTOINCREMENT key the next numbers), with every reference following; the unique slug stops
/// it until a rule is chosen. A merge folds a user the target tenant already has (keep target),
/// moves everything else and removes the source tenant, in one transaction.
#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_tenant_is_copied_with_new_keys_and_merged_into_another() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("platform.db");
    let (a, b) = demo(&db, 7).await;
    let before = everything(&db);
    let e = ends(Some(&db), Some(&db));
    let mut copy = spec(MigrationType::TenantCopy, &a);
    copy.target_tenant_name = Some("Copy of A".into());
    let report = execute(&copy, &e, false).await.expect("validation");
    let tenants = table(&report, "tenants");
    assert!(tenants.problems.iter().any(|p| p.kind == "unique_conflict" && p.columns == ["slug"]), "{:?}", tenants.problems);
    let err = execute(&copy, &e, true).await.expect_err("stops at the slug");
    assert!(err.message.contains("slug"), "{}", err.message);
    assert_eq!(everything(&db), before, "nothing was written");

    copy.conflicts.insert("tenants".into(), Resolution::KeepBoth);
    let plan = execute(&copy, &e, false).await.expect("validation");
    assert!(plan.is_clean(), "{:?}", plan.tables);
    assert_eq!(everything(&db), before, "a validation writes nothing");
    let max_event: i64 = sqlite_query(&db, "SELECT max(id) FROM events")[0].parse().expect("n");
    let done = execute(&copy, &e, true).await.expect("copy");
    assert!(done.committed);
    let new = done.target_tenant_id.clone().expect("a new tenant");
    assert!(uuid::Uuid::parse_str(&new).is_ok() && new != a, "{new}");
    assert_eq!(content(&db, &new), content(&db, &a), "the copy holds the tenant's data");
    for t in TABLES {
        assert_eq!(table(&done, t).rows_written, rows_of(&db, t, &a), "{t}");
        assert_eq!(rows_of(&db, t, &new), rows_of(&db, t, &a), "{t}");
    }
    assert_eq!(
        sqlite_query(&db, &format!("SELECT name, slug = (SELECT slug FROM tenants WHERE id = '{a}') || '-copy' FROM tenants WHERE id = '{new}'")),
        ["Copy of A|1"],
        "the new name, and the slug with the suffix"
    );
    assert_eq!(
        sqlite_query(&db, &format!("SELECT count(*) FROM events WHERE tenant_id = '{new}' AND id <= {max_event}")),
        ["0"],
        "the AUTOINCREMENT key goes on from the largest"
    );
    let after: std::collections::HashSet<String> = everything(&db).into_iter().collect();
    assert!(before.iter().all(|r| after.contains(r)), "the source's rows are untouched");
    references_stay_inside(&db);

    // B gets a user with the email of one of A's: merging A into B stops there, then folds it.
    let twin = sqlite_query(&db, &format!("SELECT email FROM users WHERE tenant_id = '{a}' ORDER BY id LIMIT 1"))[0].clone();
    sqlite_exec(&db, &format!("INSERT INTO users SELECT 'b-twin', '{b}', email, 'Twin at B', 'member', locale, NULL, created_at, updated_at FROM users WHERE email = '{twin}' AND tenant_id = '{a}'"));
    let mut merge = spec(MigrationType::TenantMerge, &a);
    merge.target_tenant_id = Some(b.clone());
    merge.remove_source_tenant = true;
    let r = execute(&merge, &e, false).await.expect("validation");
    let users = table(&r, "users");
    assert!(users.problems.iter().any(|p| p.kind == "unique_conflict" && p.count == 1 && p.columns == ["tenant_id", "email"]), "{:?}", users.problems);
    let (a_was, b_was) = (content(&db, &a), content(&db, &b));
    let copy_was = content(&db, &new);
    merge.conflicts.insert("users".into(), Resolution::KeepTarget);
    let r = execute(&merge, &e, true).await.expect("merge");
    assert_eq!(table(&r, "users").rows_merged, 1, "the twin folded into B's user");
    assert_eq!(table(&r, "tenants").rows_merged, 1, "A's tenants row is B's");
    assert!(r.rows_removed > 0);
    assert!(content(&db, &a).values().all(Vec::is_empty), "A is gone: {:?}", content(&db, &a));
    let b_now = content(&db, &b);
    for t in ["projects", "documents", "events"] {
        let mut expected = [b_was[t].clone(), a_was[t].clone()].concat();
        expected.sort();
        assert_eq!(b_now[t], expected, "{t}: B's rows and A's, the twin's pointing at B's user");
    }
    assert_eq!(b_now["users"].len(), b_was["users"].len() + a_was["users"].len() - 1);
    assert_eq!(content(&db, &new), copy_was, "the copy is untouched");
    references_stay_inside(&db);
}

/// A tenant exported to the portable ZIP imports as a new tenant into another SQLite database
/// and into PostgreSQL (the engines' exports are one format); a damaged ZIP and a file whose
/// values do not fit are refused, changing nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_tenant_exports_to_the_portable_zip_and_imports_into_sqlite_and_postgresql() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("platform.db");
    let (a, b) = demo(&db, 7).await;
    let zip = dir.path().join("a.zip");
    let mut ex = spec(MigrationType::DataExport, &a);
    ex.target_file = Some(zip.display().to_string());
    let r = execute(&ex, &ends(Some(&db), None), true).await.expect("export");
    assert_eq!(std::fs::metadata(&zip).expect("zip").permissions().mode() & 0o777, 0o600, "the tenant's data is its owner's alone");
    let files = zip_files(&zip);
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).expect("manifest");
    assert_eq!(manifest["tenants"], serde_json::json!([a]));
    for t in TABLES {
        assert_eq!(manifest["tables"][t], rows_of(&db, t, &a), "{t}");
        assert!(files.contains_key(&format!("tables/{t}.jsonl")) && files.contains_key(&format!("tables/{t}.csv")), "{t}");
    }
    assert_eq!(r.rows_written, TABLES.iter().map(|t| rows_of(&db, t, &a)).sum::<u64>());

    // Into another SQLite database, as a new tenant.
    let other = dir.path().join("other.db");
    demo(&other, 8).await;
    let mut im = MigrationSpec { migration_type: Some(MigrationType::DataImport), source_files: vec![zip.display().to_string()], ..Default::default() };
    im.conflicts.insert("tenants".into(), Resolution::KeepBoth);
    let r = execute(&im, &ends(None, Some(&other)), true).await.expect("import into SQLite");
    let new = r.target_tenant_id.clone().expect("new tenant");
    assert_eq!(content(&other, &new), content(&db, &a), "the imported tenant holds the exported data");
    references_stay_inside(&other);

    // Into PostgreSQL: the demo's schema there, the SQLite export imported as a new tenant.
    let pg = ScratchDb::create().await;
    let third = dir.path().join("third.db");
    demo(&third, 9).await;
    safehold_core::demo::copy_to_postgres(&third, &pg.url()).await.expect("demo on PostgreSQL");
    let pe = Endpoints { target_url: Some(pg.url()), tenant_column: "tenant_id".into(), tenants_table: "tenants".into(), ..Default::default() };
    let r = migrate::execute(&im, &pe, true, &CancelToken::new(), &no_progress()).await.expect("import into PostgreSQL");
    let on_pg = r.target_tenant_id.clone().expect("new tenant");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&pg.url()).await.expect("connect");
    for t in TABLES {
        let col = if t == "tenants" { "id" } else { "tenant_id" };
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {t} WHERE {col}::text = $1"))).bind(&on_pg).fetch_one(&mut conn).await.expect("count");
        assert_eq!(n as u64, rows_of(&db, t, &a), "{t} on PostgreSQL");
    }
    let mut docs: Vec<String> = sqlx::query_scalar(
        "SELECT d.title || '|' || d.size_bytes || '|' || d.tags || '|' || p.name || '|' || u.email FROM documents d JOIN projects p ON p.id = d.project_id JOIN users u ON u.id = d.author_id WHERE d.tenant_id::text = $1",
    )
    .bind(&on_pg)
    .fetch_all(&mut conn)
    .await
    .expect("documents");
    docs.sort();
    assert_eq!(docs, content(&db, &a)["documents"], "documents keep their projects and authors on PostgreSQL");

    // A damaged export: refused, nothing written.
    let damaged = dir.path().join("damaged.zip");
    rewrite_zip(&zip, &damaged, |name, mut data| {
        if name == "tables/users.jsonl" {
            data[10] ^= 1;
        }
        data
    });
    let was = everything(&other);
    let mut bad = im.clone();
    bad.source_files = vec![damaged.display().to_string()];
    let err = execute(&bad, &ends(None, Some(&other)), true).await.expect_err("damaged");
    assert!(err.message.contains("does not match its SHA-256"), "{}", err.message);
    assert_eq!(everything(&other), was, "nothing was written");

    // Plain CSV into an existing tenant: a size that is not a number is a type error, named.
    let (project, author) = {
        let r = sqlite_query(&db, &format!("SELECT id || ' ' || owner_id FROM projects WHERE tenant_id = '{b}' ORDER BY id LIMIT 1"));
        let mut it = r[0].split(' ').map(str::to_string);
        (it.next().expect("p"), it.next().expect("u"))
    };
    let csv = dir.path().join("documents.csv");
    std::fs::write(
        &csv,
        format!(
            "id,tenant_id,project_id,author_id,title,body,tags,size_bytes,created_at,updated_at\n\
             d-new-1,x,{project},{author},\"Plan, final\",\"\",[],12,2026-01-01,2026-01-01\n\
             d-new-2,x,{project},{author},Second,b,[],big,2026-01-01,2026-01-01\n"
        ),
    )
    .expect("csv");
    let was = everything(&db);
    let mut plain = MigrationSpec { migration_type: Some(MigrationType::DataImport), source_files: vec![csv.display().to_string()], target_tenant_id: Some(b.clone()), ..Default::default() };
    let r = execute(&plain, &ends(None, Some(&db)), false).await.expect("validation");
    let docs = table(&r, "documents");
    assert!(docs.problems.iter().any(|p| p.kind == "type_error" && p.count == 1 && p.message.contains("size_bytes")), "{:?}", docs.problems);
    let err = execute(&plain, &ends(None, Some(&db)), true).await.expect_err("refused");
    assert!(err.message.contains("size_bytes"), "{}", err.message);
    assert_eq!(everything(&db), was, "nothing was written");
    plain.skip_rejected = true;
    execute(&plain, &ends(None, Some(&db)), true).await.expect("the good row");
    assert_eq!(
        sqlite_query(&db, "SELECT tenant_id, title, quote(body), size_bytes, typeof(size_bytes) FROM documents WHERE id = 'd-new-1'"),
        [format!("{b}|Plan, final|''|12|integer")],
        "the tenant column is the tenant's, \"\" the empty text, the number an integer"
    );
    references_stay_inside(&db);
}

/// The transformation rules give the same values on SQLite as on PostgreSQL (an anonymised
/// export does not depend on the engine it came from).
#[tokio::test(flavor = "multi_thread")]
async fn transformation_rules_give_the_same_values_on_sqlite_as_on_postgresql() {
    let ddl = "CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT NOT NULL, slug TEXT NOT NULL UNIQUE);
               CREATE TABLE users (id INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id), email TEXT, phone TEXT, note TEXT, full_name TEXT);";
    let data = "INSERT INTO tenants VALUES ('acme', 'Acme Corp', 'acme');
                INSERT INTO users VALUES (1, 'acme', 'ann@acme.test', '+44 20 7946 0018', '  Wrote to bob@acme.test  ', 'Ann Archer'),
                                         (2, 'acme', 'zoë@acme.test', NULL, 'no mail', 'Zoë Ünal'),
                                         (3, 'acme', NULL, '12', 'cc: eve@beta.test and dan@acme.test', NULL);";
    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("rules.db");
    sqlite_exec(&db, &format!("{ddl}{data}"));
    let pg = ScratchDb::create().await;
    pg.execute(&ddl.replace("INTEGER PRIMARY KEY", "int PRIMARY KEY")).await;
    pg.execute(data).await;
    let rule = |table: &str, column: &str, action: Action| Rule { table: table.into(), column: column.into(), action };
    let rules = vec![
        rule("users", "email", Action::Fake { kind: FakeKind::Email, salt: "s1".into() }),
        rule("users", "full_name", Action::Fake { kind: FakeKind::Name, salt: "s1".into() }),
        rule("users", "phone", Action::Mask),
        rule("users", "note", Action::Trim),
        rule("users", "note", Action::Replace { pattern: "([a-z]+)@([a-z]+)\\.test".into(), replacement: "\\1 at \\2".into() }),
        rule("users", "note", Action::Upper),
        rule("tenants", "name", Action::Hash { salt: "pepper".into() }),
        rule("tenants", "slug", Action::Set { value: Some("anon".into()) }),
    ];
    let export = |path: &Path| {
        let mut s = spec(MigrationType::DataExport, "acme");
        s.target_file = Some(path.display().to_string());
        s.rules = rules.clone();
        s
    };
    let (from_lite, from_pg) = (dir.path().join("lite.zip"), dir.path().join("pg.zip"));
    execute(&export(&from_lite), &ends(Some(&db), None), true).await.expect("export from SQLite");
    let pe = Endpoints { source_url: Some(pg.url()), tenant_column: "tenant_id".into(), tenants_table: "tenants".into(), ..Default::default() };
    migrate::execute(&export(&from_pg), &pe, true, &CancelToken::new(), &no_progress()).await.expect("export from PostgreSQL");
    let rows = |zip: &Path, name: &str| -> Vec<serde_json::Value> {
        let files = zip_files(zip);
        let key = files.keys().find(|k| k.ends_with(&format!("{name}.jsonl"))).cloned().expect("table file");
        let mut v: Vec<serde_json::Value> = files[&key].split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).expect("json")).collect();
        v.sort_by_key(|r| r["id"].to_string());
        v
    };
    for t in ["tenants", "users"] {
        assert_eq!(rows(&from_lite, t), rows(&from_pg, t), "{t}: the same values from either engine");
    }
    let users = rows(&from_lite, "users");
    assert_eq!(users[0]["note"], "WROTE TO BOB AT ACME", "trim, replace with groups, upper, in order");
    assert_eq!(users[1]["phone"], serde_json::Value::Null, "NULL stays NULL");
    assert!(users[0]["email"].as_str().is_some_and(|e| e.ends_with("@example.com")), "{}", users[0]);
}

/// A schema written to trip a migration up: quotes and spaces in names, an integer tenant key, a
/// table pointing at itself, a WITHOUT ROWID table keyed by (tenant, name), a composite foreign
/// key into it from a table that reaches the tenant only through another, a generated column, a
/// blob and a real, and a trigger that writes an audit row for every insert. A copy keeps every
/// value and every reference inside the copy and fires no trigger; the export imports into an
/// empty database of the same schema with every value (the blob too) as it was.
#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_sqlite_schema_copies_and_round_trips_through_the_portable_zip() {
    let ddl = r#"
        CREATE TABLE tenants (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "slug ""x""" TEXT UNIQUE);
        CREATE TABLE "we""ird table" (id INTEGER PRIMARY KEY AUTOINCREMENT, tenant_id INTEGER NOT NULL REFERENCES tenants(id), "a column" TEXT,
            parent_id INTEGER REFERENCES "we""ird table"(id), total REAL, data BLOB, doubled INTEGER GENERATED ALWAYS AS (id * 2) VIRTUAL);
        CREATE TABLE tags (tenant_id INTEGER NOT NULL REFERENCES tenants(id), name TEXT NOT NULL, PRIMARY KEY (tenant_id, name)) WITHOUT ROWID;
        CREATE TABLE item_tags (item_id INTEGER NOT NULL REFERENCES "we""ird table"(id), tag_tenant INTEGER NOT NULL, tag TEXT NOT NULL,
            FOREIGN KEY (tag_tenant, tag) REFERENCES tags(tenant_id, name));
        CREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT);
        CREATE TRIGGER "log it" AFTER INSERT ON "we""ird table" BEGIN INSERT INTO audit (what) VALUES ('insert ' || NEW.id); END;"#;
    let data = r#"
        INSERT INTO tenants VALUES (1, 'One', 'one'), (2, 'Two', 'two');
        INSERT INTO "we""ird table" (tenant_id, "a column", parent_id, total, data) VALUES
            (1, 'it''s "quoted"; DROP TABLE tenants; --', NULL, 0.1, x'00ff10'),
            (1, 'child', 1, 1e-300, NULL), (1, 'grandchild', 2, -2.5, x''), (2, 'other', NULL, 3.0, x'01');
        INSERT INTO tags VALUES (1, 'red'), (1, 'blue'), (2, 'red');
        INSERT INTO item_tags VALUES (1, 1, 'red'), (3, 1, 'blue'), (4, 2, 'red');"#;
    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("hostile.db");
    sqlite_exec(&db, &format!("{ddl}{data}"));
    let audit_before = sqlite_query(&db, "SELECT count(*) FROM audit");
    let items = |who: &str| {
        sqlite_query(
            &db,
            &format!(
                r#"SELECT quote(w."a column") || '|' || quote(w.total) || '|' || quote(w.data) || '|' || coalesce(p."a column", '-') || '|' || (w.doubled = 2 * w.id) || '|' || coalesce(p.tenant_id = w.tenant_id, 'no parent')
                   FROM "we""ird table" w LEFT JOIN "we""ird table" p ON p.id = w.parent_id WHERE w.tenant_id = {who}"#
            ),
        )
    };
    let tags = |who: &str| sqlite_query(&db, &format!(r#"SELECT w."a column" || '|' || it.tag FROM item_tags it JOIN "we""ird table" w ON w.id = it.item_id WHERE w.tenant_id = {who} AND it.tag_tenant = {who}"#));
    let one = (items("1"), tags("1"));
    assert_eq!(one.1.len(), 2);

    let e = ends(Some(&db), Some(&db));
    let mut copy = spec(MigrationType::TenantCopy, "1");
    copy.conflicts.insert("*".into(), Resolution::KeepBoth);
    let r = execute(&copy, &e, true).await.expect("copy");
    let new = r.target_tenant_id.clone().expect("new tenant");
    assert_eq!(new, "3", "the next number of an integer tenants key");
    assert_eq!((items(&new), tags(&new)), one, "every value, the references inside the copy (parent, composite key into tags)");
    assert_eq!(sqlite_query(&db, r#"SELECT "slug ""x""" FROM tenants WHERE id = 3"#), ["one-copy"]);
    assert_eq!(sqlite_query(&db, "SELECT count(*) FROM audit"), audit_before, "the trigger did not fire for the copied rows");
    assert_eq!(sqlite_query(&db, "PRAGMA foreign_key_check"), Vec::<String>::new());
    assert_eq!((items("1"), tags("1")), one, "the source is untouched");
    sqlite_exec(&db, r#"INSERT INTO "we""ird table" (tenant_id, "a column") VALUES (2, 'after')"#);
    assert_ne!(sqlite_query(&db, "SELECT count(*) FROM audit"), audit_before, "the trigger is there again");

    // Exported and imported into an empty database of the same schema.
    let zip = dir.path().join("one.zip");
    let mut ex = spec(MigrationType::DataExport, "1");
    ex.target_file = Some(zip.display().to_string());
    execute(&ex, &ends(Some(&db), None), true).await.expect("export");
    let empty = dir.path().join("empty.db");
    sqlite_exec(&empty, ddl);
    let im = MigrationSpec { migration_type: Some(MigrationType::DataImport), source_files: vec![zip.display().to_string()], ..Default::default() };
    let r = execute(&im, &ends(None, Some(&empty)), true).await.expect("import");
    assert_eq!(r.target_tenant_id.as_deref(), Some("1"));
    let db_items = items("1");
    let imported = sqlite_query(
        &empty,
        r#"SELECT quote(w."a column") || '|' || quote(w.total) || '|' || quote(w.data) || '|' || coalesce(p."a column", '-') || '|' || (w.doubled = 2 * w.id) || '|' || coalesce(p.tenant_id = w.tenant_id, 'no parent')
           FROM "we""ird table" w LEFT JOIN "we""ird table" p ON p.id = w.parent_id WHERE w.tenant_id = 1"#,
    );
    assert_eq!(imported, db_items, "text, reals, blobs (an empty one too) and references as exported");
    let reals = |f: &Path| sqlite_query(f, r#"SELECT printf('%!.17g', total) FROM "we""ird table" WHERE tenant_id = 1 AND total IS NOT NULL"#);
    assert_eq!(reals(&empty), reals(&db), "reals to the last digit");
    assert_eq!(sqlite_query(&empty, "SELECT count(*) FROM item_tags"), ["2"]);
    assert_eq!(sqlite_query(&empty, "PRAGMA foreign_key_check"), Vec::<String>::new());
}
