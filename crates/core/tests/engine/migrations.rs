//! Tenant migrations against the real PostgreSQL: copy (same database and across databases),
//! merge with every conflict rule, export → import round trips through the portable ZIP and
//! through a backup archive, transformation rules, bad input, and the migration_jobs records.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use safehold_core::migrate::rules::{Action, FakeKind, Op, Rule};
use safehold_core::migrate::{self, records, Endpoints, MigrationReport, MigrationSpec, MigrationType, Resolution, TableMapping};
use safehold_core::source::{no_progress, CancelToken, SourceSpec};
use safehold_core::ErrorCode;
use sha2::Digest;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

use crate::backup::repo_with_password;
use crate::support::{home, ScratchDb};

const SCHEMA: &str = "
    CREATE TABLE tenants (id text PRIMARY KEY, name text NOT NULL, slug text NOT NULL UNIQUE);
    CREATE TABLE users (id serial PRIMARY KEY, tenant_id text NOT NULL REFERENCES tenants(id), email text NOT NULL, full_name text, age int, UNIQUE (tenant_id, email));
    CREATE TABLE projects (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), tenant_id text NOT NULL REFERENCES tenants(id), owner_id int REFERENCES users(id), title text NOT NULL);
    CREATE TABLE project_notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, project_id uuid NOT NULL REFERENCES projects(id), author_id int REFERENCES users(id),
                                reply_to bigint REFERENCES project_notes(id), body text);
    CREATE TABLE plans (code text PRIMARY KEY, price int);";

/// Two tenants (acme: 5 users, beta: 3, one email shared with acme), projects owned by users,
/// notes with replies, and a global table.
async fn platform() -> ScratchDb {
    let db = ScratchDb::create().await;
    db.execute(SCHEMA).await;
    db.execute(
        "INSERT INTO plans VALUES ('gold', 10);
         INSERT INTO tenants VALUES ('acme', 'Acme', 'acme'), ('beta', 'Beta', 'beta');
         INSERT INTO users (tenant_id, email, full_name, age) VALUES
           ('acme', 'ann@acme.test', 'Ann Archer', 31), ('acme', 'bob@acme.test', 'Bob Baker', NULL), ('acme', 'shared@x.test', 'Shared at Acme', 40),
           ('acme', 'zoë@acme.test', 'Zoë Ünal', 28), ('acme', 'dan@acme.test', NULL, 55),
           ('beta', 'eve@beta.test', 'Eve Evans', 22), ('beta', 'shared@x.test', 'Shared at Beta', 41), ('beta', 'fay@beta.test', 'Fay Fox', 33);
         INSERT INTO projects (tenant_id, owner_id, title) SELECT tenant_id, id, 'project of ' || email FROM users ORDER BY id;
         INSERT INTO projects (tenant_id, owner_id, title) VALUES ('acme', NULL, 'unowned acme'), ('beta', NULL, 'unowned beta');
         INSERT INTO project_notes (project_id, author_id, body) SELECT p.id, p.owner_id, 'note ' || g || ' on ' || p.title FROM projects p, generate_series(1, 2) g ORDER BY p.title, g;
         INSERT INTO project_notes (project_id, author_id, reply_to, body) SELECT n.project_id, n.author_id, n.id, 'reply to ' || n.body FROM project_notes n WHERE n.body LIKE 'note 1 %';",
    )
    .await;
    db
}

async fn rows(url: &str, sql: &str) -> Vec<String> {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let mut out: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql.to_string())).fetch_all(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    out.sort();
    out
}

async fn count(url: &str, sql: &str) -> i64 {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar(AssertSqlSafe(sql.to_string())).fetch_one(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A tenant's data without its keys: every row as text with foreign keys followed to what they
/// point at.
async fn content(url: &str, t: &str) -> BTreeMap<&'static str, Vec<String>> {
    let q: [(&str, String); 4] = [
        ("tenants", format!("SELECT name FROM tenants WHERE id = '{t}'")),
        ("users", format!("SELECT concat_ws('|', email, full_name, age) FROM users WHERE tenant_id = '{t}'")),
        ("projects", format!("SELECT concat_ws('|', p.title, u.email) FROM projects p LEFT JOIN users u ON u.id = p.owner_id WHERE p.tenant_id = '{t}'")),
        (
            "project_notes",
            format!(
                "SELECT concat_ws('|', n.body, p.title, u.email, r.body) FROM project_notes n JOIN projects p ON p.id = n.project_id \
                 LEFT JOIN users u ON u.id = n.author_id LEFT JOIN project_notes r ON r.id = n.reply_to WHERE p.tenant_id = '{t}'"
            ),
        ),
    ];
    let mut out = BTreeMap::new();
    for (k, sql) in q {
        out.insert(k, rows(url, &sql).await);
    }
    out
}

/// Every row of the database (for "nothing changed").
async fn everything(url: &str) -> Vec<String> {
    let mut all = Vec::new();
    for t in ["tenants", "users", "projects", "project_notes", "plans"] {
        for r in rows(url, &format!("SELECT x::text FROM {t} x")).await {
            all.push(format!("{t}:{r}"));
        }
    }
    all
}

fn ends(source: Option<&ScratchDb>, target: Option<&ScratchDb>) -> Endpoints {
    Endpoints { source_url: source.map(ScratchDb::url), target_url: target.map(ScratchDb::url), tenant_column: "tenant_id".into(), tenants_table: "tenants".into(), ..Default::default() }
}

fn spec(kind: MigrationType, tenant: &str) -> MigrationSpec {
    MigrationSpec { migration_type: Some(kind), source_tenant_ids: vec![tenant.into()], ..Default::default() }
}

async fn run(s: &MigrationSpec, e: &Endpoints) -> safehold_core::Result<MigrationReport> {
    migrate::execute(s, e, true, &CancelToken::new(), &no_progress()).await
}

async fn validate(s: &MigrationSpec, e: &Endpoints) -> MigrationReport {
    migrate::execute(s, e, false, &CancelToken::new(), &no_progress()).await.expect("validation runs")
}

fn table<'a>(r: &'a MigrationReport, t: &str) -> &'a migrate::TableReport {
    r.tables.iter().find(|x| x.table == t).unwrap_or_else(|| panic!("no table {t} in {:?}", r.tables))
}

/// Every foreign key of the tenant's rows points at a row of the same tenant.
async fn references_stay_inside(url: &str, t: &str) {
    let stray = count(
        url,
        &format!(
            "SELECT (SELECT count(*) FROM projects p JOIN users u ON u.id = p.owner_id WHERE p.tenant_id = '{t}' AND u.tenant_id <> '{t}') + \
                    (SELECT count(*) FROM project_notes n JOIN projects p ON p.id = n.project_id JOIN users u ON u.id = n.author_id WHERE p.tenant_id = '{t}' AND u.tenant_id <> '{t}') + \
                    (SELECT count(*) FROM project_notes n JOIN projects p ON p.id = n.project_id JOIN project_notes r ON r.id = n.reply_to JOIN projects rp ON rp.id = r.project_id \
                     WHERE p.tenant_id = '{t}' AND rp.tenant_id <> '{t}')"
        ),
    )
    .await;
    assert_eq!(stray, 0, "every reference of tenant {t} stays inside it");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_copy_gets_new_ids_everywhere_and_leaves_the_source_untouched() {
    let db = platform().await;
    let before = everything(&db.url()).await;
    let acme = content(&db.url(), "acme").await;
    let mut s = spec(MigrationType::TenantCopy, "acme");
    s.target_tenant_id = Some("acme-staging".into());
    let e = ends(Some(&db), Some(&db));

    // The tenants' slug is unique: validation finds exactly that conflict, and a run stops.
    let v = validate(&s, &e).await;
    let problems: Vec<_> = v.problems().collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!((problems[0].0, problems[0].1.kind.as_str(), problems[0].1.samples.clone()), ("public.tenants", "unique_conflict", vec!["(acme)".to_string()]));
    let err = run(&s, &e).await.expect_err("a run with a conflict stops");
    assert!(err.message.contains("nothing was written") && err.message.contains("slug"), "{}", err.message);
    assert_eq!(everything(&db.url()).await, before, "validation and the stopped run changed nothing");

    s.conflicts.insert("tenants".into(), Resolution::KeepBoth);
    s.target_tenant_name = Some("Acme Staging".into());
    let v = validate(&s, &e).await;
    assert!(v.is_clean(), "{:?}", v.tables);
    assert_eq!(table(&v, "public.users").rows_written, 5, "the trial run counts what would be written");
    assert_eq!(everything(&db.url()).await, before, "validation changed nothing");
    let r = run(&s, &e).await.expect("copy");
    assert!(r.committed);
    assert_eq!(r.target_tenant_id.as_deref(), Some("acme-staging"));
    for (t, n) in [("tenants", 1), ("users", 5), ("projects", 6), ("project_notes", 18)] {
        assert_eq!(count(&db.url(), &format!("SELECT count(*) FROM {t} WHERE {}", if t == "tenants" { "id = 'acme-staging'".to_string() } else if t == "project_notes" { "project_id IN (SELECT id FROM projects WHERE tenant_id = 'acme-staging')".into() } else { "tenant_id = 'acme-staging'".into() })).await, n, "{t}");
    }
    assert_eq!(rows(&db.url(), "SELECT slug || '/' || name FROM tenants WHERE id = 'acme-staging'").await, vec!["acme-copy/Acme Staging"]);
    let shared_ids = count(&db.url(), "SELECT (SELECT count(*) FROM users a JOIN users b ON a.id = b.id WHERE a.tenant_id = 'acme' AND b.tenant_id = 'acme-staging') + \
        (SELECT count(*) FROM projects a JOIN projects b ON a.id = b.id WHERE a.tenant_id = 'acme' AND b.tenant_id = 'acme-staging')").await;
    assert_eq!(shared_ids, 0, "no id is shared with the source");
    references_stay_inside(&db.url(), "acme-staging").await;
    let mut copy = content(&db.url(), "acme-staging").await;
    copy.insert("tenants", vec!["Acme".into()]);
    assert_eq!(copy, acme, "the copy holds the same data");
    assert_eq!(content(&db.url(), "acme").await, acme, "the source is untouched");
    // A second copy to the same id is refused before anything is written.
    let err = run(&s, &e).await.expect_err("the id is taken");
    assert_eq!(err.code, ErrorCode::Conflict, "{}", err.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_copies_into_another_database() {
    let (src, dst) = (platform().await, ScratchDb::create().await);
    dst.execute(SCHEMA).await;
    let mut s = spec(MigrationType::TenantCopy, "acme");
    s.target_tenant_id = Some("acme".into());
    let r = run(&s, &ends(Some(&src), Some(&dst))).await.expect("copy across databases");
    assert_eq!(r.rows_written, r.rows_read);
    assert_eq!(content(&dst.url(), "acme").await, content(&src.url(), "acme").await);
    references_stay_inside(&dst.url(), "acme").await;
    assert_eq!(count(&dst.url(), "SELECT count(*) FROM tenants").await, 1, "only that tenant");
}

/// A tenant copied from a schema with legacy inheritance: each table's own rows (`ONLY`) are
/// copied into the same table — the parent's never carry the child's rows (without `ONLY` the
/// parent's read took them too, and the target's parent got them as its own).
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_copy_on_legacy_inheritance_copies_each_tables_own_rows() {
    const SCHEMA: &str = "CREATE TABLE tenants (id text PRIMARY KEY, name text NOT NULL);
         CREATE TABLE items (id serial PRIMARY KEY, tenant_id text NOT NULL REFERENCES tenants(id), title text);
         CREATE TABLE archived_items (archived_on date, PRIMARY KEY (id)) INHERITS (items);";
    let (src, dst) = (ScratchDb::create().await, ScratchDb::create().await);
    src.execute(&format!(
        "{SCHEMA}
         INSERT INTO tenants VALUES ('acme', 'Acme'), ('beta', 'Beta');
         INSERT INTO items (tenant_id, title) SELECT t, 'item ' || g FROM generate_series(1, 6) g, unnest(ARRAY['acme', 'beta']) t;
         INSERT INTO archived_items (tenant_id, title, archived_on) SELECT t, 'archived ' || g, '2026-01-01' FROM generate_series(1, 4) g, unnest(ARRAY['acme', 'beta']) t;"
    ))
    .await;
    dst.execute(SCHEMA).await;
    let own = |t: &str| format!("SELECT title FROM ONLY {t} WHERE tenant_id = 'acme'");
    let mut s = spec(MigrationType::TenantCopy, "acme");
    s.target_tenant_id = Some("acme".into());
    run(&s, &ends(Some(&src), Some(&dst))).await.expect("copy across databases");
    for t in ["items", "archived_items"] {
        assert_eq!(rows(&dst.url(), &own(t)).await, rows(&src.url(), &own(t)).await, "{t}'s own rows");
    }
    assert_eq!(count(&dst.url(), "SELECT count(*) FROM items").await, 10, "6 items and 4 archived ones, each once");
}

async fn merge(rule: Option<Resolution>, remove: bool) -> (ScratchDb, safehold_core::Result<MigrationReport>) {
    let db = platform().await;
    let mut s = spec(MigrationType::TenantMerge, "beta");
    s.target_tenant_id = Some("acme".into());
    s.remove_source_tenant = remove;
    if let Some(r) = rule {
        s.conflicts.insert("public.users".into(), r);
    }
    let out = run(&s, &ends(Some(&db), Some(&db))).await;
    (db, out)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_merge_finds_the_conflicting_rows_and_each_rule_gives_its_result() {
    // Validation lists exactly the conflicting row.
    let db = platform().await;
    let before = everything(&db.url()).await;
    let mut s = spec(MigrationType::TenantMerge, "beta");
    s.target_tenant_id = Some("acme".into());
    let v = validate(&s, &ends(Some(&db), Some(&db))).await;
    let problems: Vec<_> = v.problems().collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].0, "public.users");
    assert_eq!(problems[0].1.count, 1);
    assert_eq!(problems[0].1.samples, vec!["(acme, shared@x.test)".to_string()]);
    assert_eq!(everything(&db.url()).await, before);
    let err = run(&s, &ends(Some(&db), Some(&db))).await.expect_err("stop is the default");
    assert!(err.message.contains("public.users"), "{}", err.message);
    assert_eq!(everything(&db.url()).await, before, "a stopped merge changes nothing");

    // keep target: acme's user stays as it was; beta's rows that pointed at beta's user point at it.
    let (db, r) = merge(Some(Resolution::KeepTarget), false).await;
    let r = r.expect("merge, keep target");
    assert_eq!(table(&r, "public.users").rows_merged, 1);
    assert_eq!(rows(&db.url(), "SELECT full_name FROM users WHERE email = 'shared@x.test'").await, vec!["Shared at Acme", "Shared at Beta"], "beta keeps its own rows");
    assert_eq!(count(&db.url(), "SELECT count(*) FROM users WHERE tenant_id = 'acme'").await, 7, "5 + beta's 2 others");
    assert_eq!(
        rows(&db.url(), "SELECT u.full_name FROM projects p JOIN users u ON u.id = p.owner_id WHERE p.tenant_id = 'acme' AND p.title = 'project of shared@x.test'").await,
        vec!["Shared at Acme", "Shared at Acme"],
        "beta's project of the shared user now belongs to acme's user"
    );
    references_stay_inside(&db.url(), "acme").await;

    // take source: acme's user gets beta's values, keeps its key.
    let (db, r) = merge(Some(Resolution::TakeSource), false).await;
    assert_eq!(table(&r.expect("take source"), "public.users").rows_updated, 1);
    assert_eq!(rows(&db.url(), "SELECT full_name || '/' || age FROM users WHERE tenant_id = 'acme' AND email = 'shared@x.test'").await, vec!["Shared at Beta/41"]);

    // keep both: the source's row written with the suffix.
    let (db, r) = merge(Some(Resolution::KeepBoth), false).await;
    assert_eq!(table(&r.expect("keep both"), "public.users").rows_renamed, 1);
    assert_eq!(rows(&db.url(), "SELECT email FROM users WHERE tenant_id = 'acme' AND email LIKE 'shared%'").await, vec!["shared@x.test", "shared@x.test-merged"]);
    assert_eq!(count(&db.url(), "SELECT count(*) FROM users WHERE tenant_id = 'acme'").await, 8);

    // The source tenant removed when asked.
    let (db, r) = merge(Some(Resolution::KeepTarget), true).await;
    let r = r.expect("merge and remove");
    assert!(r.rows_removed > 0);
    assert_eq!(count(&db.url(), "SELECT count(*) FROM tenants WHERE id = 'beta'").await, 0);
    assert_eq!(count(&db.url(), "SELECT count(*) FROM users WHERE tenant_id = 'beta'").await, 0);
    assert_eq!(count(&db.url(), "SELECT count(*) FROM projects WHERE tenant_id = 'acme'").await, 10, "acme's 6 and beta's 4");
    references_stay_inside(&db.url(), "acme").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_merge_that_fails_half_way_leaves_both_tenants_as_they_were() {
    let db = platform().await;
    // The last table written refuses one of beta's notes (a check that only new rows meet:
    // migrations write rows as they are, with the tables' triggers quiet).
    db.execute("ALTER TABLE project_notes ADD CONSTRAINT refused_by_the_test CHECK (body NOT LIKE 'reply to note 1 on project of fay%') NOT VALID").await;
    let before = everything(&db.url()).await;
    let mut s = spec(MigrationType::TenantMerge, "beta");
    s.target_tenant_id = Some("acme".into());
    s.remove_source_tenant = true;
    s.conflicts.insert("users".into(), Resolution::TakeSource);
    let err = run(&s, &ends(Some(&db), Some(&db))).await.expect_err("the trigger stops it");
    assert!(err.message.contains("refused_by_the_test"), "{}", err.message);
    assert_eq!(everything(&db.url()).await, before, "both tenants are as they were");
}

pub(crate) fn zip_files(path: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(path).expect("open zip")).expect("a zip");
    let mut out = BTreeMap::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).expect("entry");
        let mut data = Vec::new();
        f.read_to_end(&mut data).expect("read entry");
        out.insert(f.name().to_string(), data);
    }
    out
}

pub(crate) fn rewrite_zip(from: &std::path::Path, to: &std::path::Path, change: impl Fn(&str, Vec<u8>) -> Vec<u8>) {
    let mut w = zip::ZipWriter::new(std::fs::File::create(to).expect("create"));
    for (name, data) in zip_files(from) {
        w.start_file(name.clone(), zip::write::SimpleFileOptions::default()).expect("start");
        w.write_all(&change(&name, data)).expect("write");
    }
    w.finish().expect("finish");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_imports_back_through_the_portable_zip_and_through_a_backup() {
    let src = platform().await;
    let dir = tempfile::tempdir().expect("tmp");
    let zip_path = dir.path().join("acme.zip");
    let mut s = spec(MigrationType::DataExport, "acme");
    s.target_file = Some(zip_path.display().to_string());
    let r = run(&s, &ends(Some(&src), None)).await.expect("export");
    assert_eq!(r.rows_written, 5 + 6 + 18 + 1);
    // The manifest's checksums match the files; schema.json describes the tables.
    let files = zip_files(&zip_path);
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).expect("manifest");
    let listed = manifest["files"].as_array().expect("files");
    assert_eq!(listed.len(), files.len() - 1, "every file but the manifest is listed");
    for f in listed {
        let data = &files[f["path"].as_str().expect("path")];
        assert_eq!(f["sha256"].as_str(), Some(hex::encode(sha2::Sha256::digest(data)).as_str()), "{}", f["path"]);
    }
    assert_eq!(manifest["tables"]["public.users"], 5);
    let schema: serde_json::Value = serde_json::from_slice(&files["schema.json"]).expect("schema");
    assert!(schema["tables"].as_array().expect("tables").iter().any(|t| t["name"] == "public.users" && t["columns"].as_array().is_some_and(|c| c.iter().any(|c| c["name"] == "age" && c["type"] == "integer"))));
    let users = String::from_utf8(files["tables/public.users.jsonl"].clone()).expect("utf-8");
    assert_eq!(users.lines().count(), 5);
    assert!(users.contains("\"email\":\"zoë@acme.test\"") && users.contains("\"age\":31") && users.contains("\"full_name\":null"), "{users}");
    assert!(String::from_utf8_lossy(&files["tables/public.users.csv"]).starts_with("id,tenant_id,email,full_name,age\n"));

    // Into another database, as the same tenant; and into the source as a new tenant.
    let dst = ScratchDb::create().await;
    dst.execute(SCHEMA).await;
    let mut imp = MigrationSpec { migration_type: Some(MigrationType::DataImport), source_files: vec![zip_path.display().to_string()], target_tenant_id: Some("acme".into()), ..Default::default() };
    run(&imp, &ends(None, Some(&dst))).await.expect("import the export");
    assert_eq!(content(&dst.url(), "acme").await, content(&src.url(), "acme").await, "the tenant's rows are reproduced");
    imp.target_tenant_id = Some("acme-2".into());
    imp.conflicts.insert("tenants".into(), Resolution::KeepBoth);
    run(&imp, &ends(None, Some(&src))).await.expect("import as a new tenant");
    let (mut again, acme) = (content(&src.url(), "acme-2").await, content(&src.url(), "acme").await);
    assert_eq!(again.remove("project_notes"), acme.get("project_notes").cloned());
    assert_eq!(again.get("users"), acme.get("users"));

    // Through a backup archive: the tenant imported from a full backup of the platform.
    let repo = repo_with_password("migrate");
    let backup = repo.backup(SourceSpec::Postgres { url: src.url() }).await;
    let dst2 = ScratchDb::create().await;
    dst2.execute(SCHEMA).await;
    let from_archive = MigrationSpec {
        migration_type: Some(MigrationType::DataImport),
        source_files: vec![backup.archive.clone()],
        source_tenant_ids: vec!["acme".into()],
        target_tenant_id: Some("acme".into()),
        ..Default::default()
    };
    let e = Endpoints { keys: repo.keys.clone(), ..ends(None, Some(&dst2)) };
    run(&from_archive, &e).await.expect("import from the archive");
    assert_eq!(content(&dst2.url(), "acme").await, content(&src.url(), "acme").await, "the tenant's rows from the backup");
    assert_eq!(count(&dst2.url(), "SELECT count(*) FROM users").await, 5, "only that tenant");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_exported_as_an_encrypted_archive_restores_and_imports_with_only_its_rows() {
    let src = platform().await;
    let before = everything(&src.url()).await;
    let repo = repo_with_password("tenant archive");
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("acme.shar");
    let mut s = spec(MigrationType::DataExport, "acme");
    s.target_file = Some(path.display().to_string());
    s.export_format = migrate::ExportFormat::Archive;
    let e = Endpoints { keys: repo.keys.clone(), archive_repository: Some(repo.path()), ..ends(Some(&src), None) };

    // Validation reads the tenant and writes nothing.
    let v = validate(&s, &e).await;
    assert_eq!(table(&v, "public.users").rows_read, 5);
    assert!(!path.exists(), "validation writes no file");
    // Rules do not apply to an archive; an unknown tenant is named.
    let mut ruled = s.clone();
    ruled.rules = vec![Rule { table: "users".into(), column: "email".into(), action: Action::Upper }];
    let err = run(&ruled, &e).await.expect_err("rules refused");
    assert!(err.message.contains("transformation rules apply to portable exports"), "{}", err.message);
    let mut unknown = s.clone();
    unknown.source_tenant_ids = vec!["nobody".into()];
    let err = run(&unknown, &e).await.expect_err("unknown tenant");
    assert!(err.message.contains("nobody"), "{}", err.message);
    assert!(!path.exists() && std::fs::read_dir(dir.path()).expect("dir").next().is_none(), "a failed export leaves no file, partial or whole");

    let r = run(&s, &e).await.expect("export as an archive");
    assert!(r.committed);
    assert_eq!(r.files.len(), 1);
    assert_eq!(r.files[0].path, path.display().to_string());
    assert_eq!(r.files[0].sha256, hex::encode(sha2::Sha256::digest(std::fs::read(&path).expect("archive"))), "the reported checksum is the file's");
    assert_eq!(table(&r, "public.users").rows_written, 5, "only acme's users: {:?}", r.tables);
    assert_eq!(table(&r, "public.project_notes").rows_written, 18);
    assert_eq!(table(&r, "public.plans").rows_written, 1, "the shared table whole");
    assert!(r.warnings.iter().any(|w| w.contains("public.plans")), "{:?}", r.warnings);
    assert_eq!(everything(&src.url()).await, before, "the source is untouched");
    // Encrypted: nothing readable without the repository's key.
    let mut reader = safehold_core::archive::ArchiveReader::open(&path).expect("an archive");
    assert!(reader.header.encrypted && reader.header.source_fingerprint.ends_with("#tenants"));
    assert!(reader.index().is_err(), "the index needs the key");
    let wrong = repo_with_password("not the password");
    let err = wrong.keys.unlock_archive(&mut reader, None).await.expect_err("wrong password");
    assert_eq!(err.code, ErrorCode::AuthFailed, "{}", err.message);
    // It is not one of the repository's backups (never a parent, never a point-in-time pick).
    let listed = safehold_core::repository::Repository::open(&repo.path()).expect("repo").expect("exists").list().expect("list");
    assert!(listed.is_empty(), "the export is not in the repository: {listed:?}");

    // Restored whole into an empty database: the tenant's rows, the shared table, nothing of beta.
    let restored = ScratchDb::create().await;
    repo.restore(&path, &SourceSpec::Postgres { url: restored.url() }).await.expect("restore the tenant archive");
    assert_eq!(content(&restored.url(), "acme").await, content(&src.url(), "acme").await, "acme's rows are reproduced");
    assert_eq!(rows(&restored.url(), "SELECT id FROM tenants").await, vec!["acme".to_string()]);
    assert_eq!(count(&restored.url(), "SELECT count(*) FROM users").await, 5);
    assert_eq!(count(&restored.url(), "SELECT count(*) FROM project_notes").await, 18);
    assert_eq!(rows(&restored.url(), "SELECT code || price FROM plans").await, vec!["gold10".to_string()]);

    // Imported into another platform through the migration engine.
    let dst = ScratchDb::create().await;
    dst.execute(SCHEMA).await;
    let imp = MigrationSpec {
        migration_type: Some(MigrationType::DataImport),
        source_files: vec![path.display().to_string()],
        source_tenant_ids: vec!["acme".into()],
        target_tenant_id: Some("acme".into()),
        ..Default::default()
    };
    run(&imp, &Endpoints { keys: repo.keys.clone(), ..ends(None, Some(&dst)) }).await.expect("import the tenant archive");
    assert_eq!(content(&dst.url(), "acme").await, content(&src.url(), "acme").await);
    assert_eq!(count(&dst.url(), "SELECT count(*) FROM users").await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_with_a_clear_error_and_nothing_is_written() {
    let src = platform().await;
    let dir = tempfile::tempdir().expect("tmp");
    let zip_path = dir.path().join("acme.zip");
    let mut s = spec(MigrationType::DataExport, "acme");
    s.target_file = Some(zip_path.display().to_string());
    run(&s, &ends(Some(&src), None)).await.expect("export");
    let dst = ScratchDb::create().await;
    dst.execute(SCHEMA).await;
    dst.execute("INSERT INTO tenants VALUES ('t1', 'T1', 't1')").await;
    let before = everything(&dst.url()).await;
    let import = |files: Vec<std::path::PathBuf>| MigrationSpec {
        migration_type: Some(MigrationType::DataImport),
        source_files: files.iter().map(|f| f.display().to_string()).collect(),
        target_tenant_id: Some("t1".into()),
        ..Default::default()
    };
    let e = ends(None, Some(&dst));

    // A tampered file: its checksum no longer matches.
    let tampered = dir.path().join("tampered.zip");
    rewrite_zip(&zip_path, &tampered, |name, data| if name == "tables/public.users.csv" { String::from_utf8(data).expect("utf-8").replace("Ann Archer", "Mallory").into_bytes() } else { data });
    let err = run(&import(vec![tampered]), &e).await.expect_err("tampered");
    assert!(err.message.contains("tables/public.users.csv") && err.message.contains("SHA-256"), "{}", err.message);
    // A file that is not an export.
    let junk = dir.path().join("junk.zip");
    std::fs::write(&junk, b"these are not the rows you are looking for").expect("write");
    let err = run(&import(vec![junk]), &e).await.expect_err("not a zip");
    assert!(err.message.contains("not a portable export"), "{}", err.message);
    let mut z = zip::ZipWriter::new(std::fs::File::create(dir.path().join("nomanifest.zip")).expect("create"));
    z.start_file("hello.txt", zip::write::SimpleFileOptions::default()).expect("start");
    z.write_all(b"hi").expect("write");
    z.finish().expect("finish");
    let err = run(&import(vec![dir.path().join("nomanifest.zip")]), &e).await.expect_err("no manifest");
    assert!(err.message.contains("no manifest.json"), "{}", err.message);
    // A CSV without a column the target requires.
    let csv = dir.path().join("users.csv");
    std::fs::write(&csv, "full_name,age\nNo Email,3\n").expect("write");
    let err = run(&import(vec![csv.clone()]), &e).await.expect_err("missing column");
    assert!(err.message.contains("public.users.email") || err.message.contains("users.email"), "{}", err.message);
    // A value of the wrong type: validation names it; a run writes nothing.
    std::fs::write(&csv, "email,full_name,age\nok@t1.test,Fine,30\nbad@t1.test,Bad Age,thirty\n").expect("write");
    let v = validate(&import(vec![csv.clone()]), &e).await;
    let problems: Vec<_> = v.problems().collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!((problems[0].1.kind.as_str(), problems[0].1.samples.clone()), ("type_error", vec!["thirty".to_string()]));
    let err = run(&import(vec![csv.clone()]), &e).await.expect_err("a type error stops the run");
    assert!(err.message.contains("not valid integer"), "{}", err.message);
    assert_eq!(everything(&dst.url()).await, before, "nothing was written by any of them");
    // Accepting the skip writes the good row only.
    let mut skip = import(vec![csv]);
    skip.skip_rejected = true;
    let r = run(&skip, &e).await.expect("skip the bad row");
    assert_eq!((r.rows_written, r.rows_rejected), (1, 1));
    assert_eq!(rows(&dst.url(), "SELECT email FROM users WHERE tenant_id = 't1'").await, vec!["ok@t1.test"]);
    // A JSON Lines file, with a mapping that renames a column and gives a default.
    let jl = dir.path().join("people.jsonl");
    std::fs::write(&jl, "{\"mail\": \"jl@t1.test\", \"age\": 7}\n{\"mail\": \"jl2@t1.test\", \"age\": null}\n").expect("write");
    let mut js = import(vec![jl]);
    js.mapping = vec![TableMapping { source: "people".into(), target: "users".into(), columns: BTreeMap::from([("mail".into(), "email".into())]), defaults: BTreeMap::from([("full_name".into(), "Imported".into())]), ..Default::default() }];
    run(&js, &e).await.expect("JSON Lines import");
    assert_eq!(rows(&dst.url(), "SELECT concat_ws('|', email, full_name, age) FROM users WHERE email LIKE 'jl%'").await, vec!["jl2@t1.test|Imported", "jl@t1.test|Imported|7"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn transformation_rules_change_the_rows_in_order() {
    let db = platform().await;
    let rule = |table: &str, column: &str, action: Action| Rule { table: table.into(), column: column.into(), action };
    let mut s = spec(MigrationType::TenantCopy, "acme");
    s.target_tenant_id = Some("masked".into());
    s.conflicts.insert("tenants".into(), Resolution::KeepBoth);
    s.rules = vec![
        rule("users", "email", Action::Mask),
        rule("users", "full_name", Action::Upper),
        rule("tenants", "name", Action::Set { value: Some("Masked Co".into()) }),
        rule("projects", "title", Action::Replace { pattern: "project of (.*)@.*".into(), replacement: "project #\\1".into() }),
        rule("project_notes", "body", Action::DropRow { op: Op::Matches, value: Some("^reply".into()) }),
        rule("users", "age", Action::Null),
    ];
    run(&s, &ends(Some(&db), Some(&db))).await.expect("copy with rules");
    let users = rows(&db.url(), "SELECT concat_ws('|', email, coalesce(full_name, 'NULL'), coalesce(age::text, 'NULL')) FROM users WHERE tenant_id = 'masked'").await;
    assert_eq!(
        users,
        vec!["a***********t|ANN ARCHER|NULL", "b***********t|BOB BAKER|NULL", "d***********t|NULL|NULL", "s***********t|SHARED AT ACME|NULL", "z***********t|ZOË ÜNAL|NULL"]
    );
    let originals = rows(&db.url(), "SELECT email FROM users WHERE tenant_id = 'acme'").await;
    let masked_emails = count(&db.url(), &format!("SELECT count(*) FROM users WHERE tenant_id = 'masked' AND email IN ({})", originals.iter().map(|e| format!("'{e}'")).collect::<Vec<_>>().join(","))).await;
    assert_eq!(masked_emails, 0, "no production email reaches the copy");
    assert_eq!(rows(&db.url(), "SELECT name FROM tenants WHERE id = 'masked'").await, vec!["Masked Co"]);
    assert!(rows(&db.url(), "SELECT title FROM projects WHERE tenant_id = 'masked'").await.contains(&"project #zoë".to_string()));
    assert_eq!(count(&db.url(), "SELECT count(*) FROM project_notes n JOIN projects p ON p.id = n.project_id WHERE p.tenant_id = 'masked'").await, 12, "replies dropped");

    // fake, hash, trim, lower, copy on representative values through an export (read back from the ZIP).
    let dir = tempfile::tempdir().expect("tmp");
    let export = |rules: Vec<Rule>, name: &str| {
        let path = dir.path().join(name);
        let mut s = spec(MigrationType::DataExport, "acme");
        s.target_file = Some(path.display().to_string());
        s.rules = rules;
        (s, path)
    };
    let users_of = |path: &std::path::Path| -> Vec<serde_json::Value> {
        let files = zip_files(path);
        let mut v: Vec<serde_json::Value> = String::from_utf8_lossy(&files["tables/public.users.jsonl"]).lines().map(|l| serde_json::from_str(l).expect("json")).collect();
        v.sort_by_key(|u| u["id"].as_i64());
        v
    };
    let fakes = vec![
        rule("users", "email", Action::Fake { kind: FakeKind::Email, salt: "s1".into() }),
        rule("users", "full_name", Action::Fake { kind: FakeKind::Name, salt: "s1".into() }),
    ];
    let (a, pa) = export(fakes.clone(), "a.zip");
    let (b, pb) = export(fakes, "b.zip");
    let (c, pc) = export(vec![rule("users", "email", Action::Fake { kind: FakeKind::Email, salt: "other".into() })], "c.zip");
    for s in [&a, &b, &c] {
        run(s, &ends(Some(&db), None)).await.expect("export with rules");
    }
    let (ua, ub, uc) = (users_of(&pa), users_of(&pb), users_of(&pc));
    assert_eq!(ua, ub, "fake is deterministic for the same input and salt");
    assert_ne!(ua.iter().map(|u| u["email"].clone()).collect::<Vec<_>>(), uc.iter().map(|u| u["email"].clone()).collect::<Vec<_>>(), "another salt, other fakes");
    for u in &ua {
        let email = u["email"].as_str().expect("email");
        assert!(email.ends_with("@example.com") && !email.contains("acme"), "{email}");
        if u["id"] == 5 {
            assert!(u["full_name"].is_null(), "NULL stays NULL: {u}");
        } else {
            assert_eq!(u["full_name"].as_str().expect("name").split(' ').count(), 2, "{u}");
        }
    }
    let (h, ph) = export(
        vec![
            rule("users", "full_name", Action::Copy { from: "email".into() }),
            rule("users", "full_name", Action::Replace { pattern: "@.*".into(), replacement: "  ".into() }),
            rule("users", "full_name", Action::Trim),
            rule("users", "full_name", Action::Lower),
            rule("users", "email", Action::Hash { salt: "pepper".into() }),
        ],
        "h.zip",
    );
    run(&h, &ends(Some(&db), None)).await.expect("export");
    let uh = users_of(&ph);
    assert_eq!(uh[3]["full_name"], "zoë");
    assert_eq!(uh[3]["email"].as_str(), Some(hex::encode(sha2::Sha256::digest("pepperzoë@acme.test".as_bytes())).as_str()));

    // Rules are checked before anything runs.
    for (bad, expect) in [
        (rule("nope", "x", Action::Lower), "nope"),
        (rule("users", "nope", Action::Lower), "nope"),
        (rule("users", "age", Action::Upper), "integer"),
    ] {
        let (s, _) = export(vec![bad], "bad.zip");
        let err = run(&s, &ends(Some(&db), None)).await.expect_err("a bad rule");
        assert!(err.message.contains(expect), "{}", err.message);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_migration_run_from_the_catalog_is_recorded_with_its_counts_and_results() {
    let h = home().await;
    let db = platform().await;
    let mut s = spec(MigrationType::TenantCopy, "beta");
    s.source = Some(db.url());
    s.target = Some(db.url());
    s.target_tenant_id = Some("beta-2".into());
    s.migration_name = "Beta to staging".into();
    let id = records::start(&h.ctx, &s).await.expect("record");
    let err = records::run(&h.ctx, &id, &s, None, &CancelToken::new()).await.expect_err("slug conflict");
    let (status, error): (String, Option<String>) = sqlx::query_as("SELECT status, error_message FROM migration_jobs WHERE id = ?").bind(&id).fetch_one(&h.ctx.pool).await.expect("row");
    assert_eq!(status, "failed");
    assert!(error.as_deref().is_some_and(|e| e.contains("slug") && e.contains("nothing was written")), "{error:?} / {}", err.message);
    s.conflicts.insert("tenants".into(), Resolution::KeepBoth);
    let id = records::start(&h.ctx, &s).await.expect("record");
    let cancel = CancelToken::new();
    let report = records::run(&h.ctx, &id, &s, None, &cancel).await.expect("run");
    let (status, processed, total, pct, results, target): (String, i64, i64, i64, String, Option<String>) =
        sqlx::query_as("SELECT status, records_processed, records_total, progress_percentage, validation_results, target_tenant_id FROM migration_jobs WHERE id = ?")
            .bind(&id)
            .fetch_one(&h.ctx.pool)
            .await
            .expect("row");
    assert_eq!((status.as_str(), processed, total, pct, target.as_deref()), ("completed", 20, 20, 100, Some("beta-2")));
    let results: MigrationReport = serde_json::from_str(&results).expect("results");
    assert_eq!(results.rows_written, report.rows_written);
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'migration.run'").fetch_one(&h.ctx.pool).await.expect("audit");
    assert_eq!(audited, 2);
    // A cancelled run writes nothing and says so.
    let c = CancelToken::new();
    c.cancel();
    s.target_tenant_id = Some("beta-3".into());
    let id = records::start(&h.ctx, &s).await.expect("record");
    let err = records::run(&h.ctx, &id, &s, None, &c).await.expect_err("cancelled");
    assert_eq!(err.code, ErrorCode::Cancelled);
    assert_eq!(count(&db.url(), "SELECT count(*) FROM tenants WHERE id = 'beta-3'").await, 0);
    let status: String = sqlx::query_scalar("SELECT status FROM migration_jobs WHERE id = ?").bind(&id).fetch_one(&h.ctx.pool).await.expect("row");
    assert_eq!(status, "cancelled");
}

/// A reference no foreign key declares (`invoice_lines.invoice_id`, Rails-style) under a partial
/// unique index: a copy that kept the old ids would collide with the source's lines. Validation
/// names the index and infers the reference before writing anything; declared, the copy
/// follows it; the connection remembers it, so the next migration and a tenant restore from the
/// catalog need not be told again.
#[tokio::test(flavor = "multi_thread")]
async fn a_reference_no_key_declares_is_inferred_declared_once_and_remembered_with_the_connection() {
    let h = home().await;
    let db = ScratchDb::create().await;
    db.execute(
        "CREATE TABLE tenants (id text PRIMARY KEY, name text NOT NULL);
         CREATE TABLE invoices (id serial PRIMARY KEY, tenant_id text NOT NULL REFERENCES tenants, total numeric);
         CREATE TABLE invoice_lines (id serial PRIMARY KEY, tenant_id text NOT NULL REFERENCES tenants, invoice_id int NOT NULL, status int NOT NULL, amount numeric);
         CREATE UNIQUE INDEX one_open_line_per_invoice ON invoice_lines (invoice_id, status) WHERE status = 0;
         INSERT INTO tenants VALUES ('acme', 'Acme'), ('beta', 'Beta');
         INSERT INTO invoices (tenant_id, total) VALUES ('acme', 10), ('acme', 20), ('beta', 5);
         INSERT INTO invoice_lines (tenant_id, invoice_id, status, amount) SELECT tenant_id, id, 0, total FROM invoices;
         INSERT INTO invoice_lines (tenant_id, invoice_id, status, amount) SELECT tenant_id, id, 1, total / 2 FROM invoices;",
    )
    .await;
    let (host, port) = crate::support::pg_host_port();
    let conn = safehold_core::connections::add(
        &h.ctx,
        safehold_core::connections::ConnectionInput {
            name: "platform".into(),
            kind: Some(safehold_core::connections::ConnectionKind::Postgres),
            host: Some(host),
            port: Some(i64::from(port)),
            database_name: Some(db.name.clone()),
            username: Some("postgres".into()),
            ..Default::default()
        },
    )
    .await
    .expect("the connection");
    let mut s = spec(MigrationType::TenantCopy, "acme");
    s.source = Some("platform".into());
    s.target = Some("platform".into());
    s.target_tenant_id = Some("acme-2".into());
    s.target_tenant_name = Some("Acme 2".into());
    let v = records::validate(&h.ctx, &s).await.expect("validation");
    let problems: Vec<String> = v.problems().map(|(t, p)| format!("{t}: {}", p.message)).collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("public.invoice_lines (invoice_id, status, where (status = 0))"), "{}", problems[0]);
    assert!(v.warnings.iter().any(|w| w.contains("--reference public.invoice_lines.invoice_id=public.invoices.id")), "{:?}", v.warnings);

    s.references = vec!["invoice_lines.invoice_id=invoices.id".into()];
    let id = records::start(&h.ctx, &s).await.expect("record");
    records::run(&h.ctx, &id, &s, None, &CancelToken::new()).await.expect("the copy follows the declared reference");
    let wrong = count(&db.url(), "SELECT count(*) FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id WHERE l.tenant_id <> i.tenant_id").await;
    assert_eq!(wrong, 0, "every copied line points at the copy's invoice");
    assert_eq!(count(&db.url(), "SELECT count(*) FROM invoice_lines WHERE tenant_id = 'acme-2'").await, 4);
    let remembered = safehold_core::connections::get(&h.ctx, &conn.id).await.expect("the connection").references;
    assert_eq!(remembered, vec!["invoice_lines.invoice_id=invoices.id".to_string()], "asked once: remembered with the connection");

    // The next copy, told nothing, uses the connection's.
    let mut again = s.clone();
    again.references.clear();
    again.target_tenant_id = Some("acme-3".into());
    again.target_tenant_name = Some("Acme 3".into());
    let v = records::validate(&h.ctx, &again).await.expect("validation");
    assert!(v.is_clean(), "{:?}", v.problems().map(|(_, p)| p.message.clone()).collect::<Vec<_>>());
}

/// The demo platform in PostgreSQL keeps UUIDs in text keys made by the application (no default):
/// a copy within the database gives its rows fresh ones of the same form, as it does for generated
/// keys, and every reference follows — found by the end-to-end wizard test, which copies a demo
/// tenant with only the tenants' slug conflict to resolve.
#[tokio::test(flavor = "multi_thread")]
async fn a_copy_gives_text_keys_holding_uuids_fresh_uuids_and_references_follow() {
    let db = ScratchDb::create().await;
    let home = tempfile::tempdir().expect("tmp");
    let ctx = safehold_core::Ctx::open(home.path()).await.expect("catalog");
    safehold_core::demo::ensure(&ctx, false).await.expect("demo");
    safehold_core::demo::copy_to_postgres(&safehold_core::demo::database_path(home.path()), &db.url()).await.expect("copy");
    let tenant = rows(&db.url(), "SELECT t.id FROM tenants t ORDER BY (SELECT count(*) FROM users u WHERE u.tenant_id = t.id), t.id LIMIT 1").await.remove(0);
    let mut s = spec(MigrationType::TenantCopy, &tenant);
    s.target_tenant_id = Some("demo-copy".into());
    s.target_tenant_name = Some("Demo Copy".into());
    s.rules.push(safehold_core::migrate::rules::Rule { table: "public.users".into(), column: "email".into(), action: safehold_core::migrate::rules::Action::Mask });
    s.conflicts.insert("public.tenants".into(), Resolution::KeepBoth);
    let e = ends(Some(&db), Some(&db));
    let v = validate(&s, &e).await;
    assert!(v.is_clean(), "only the slug conflicts, and keep both resolves it: {:?}", v.problems().collect::<Vec<_>>());
    run(&s, &e).await.expect("copy");
    let per = |t: &str| format!("SELECT (SELECT count(*) FROM users WHERE tenant_id = '{t}') || ',' || (SELECT count(*) FROM projects WHERE tenant_id = '{t}') || ',' || (SELECT count(*) FROM documents WHERE tenant_id = '{t}')");
    assert_eq!(rows(&db.url(), &per("demo-copy")).await, rows(&db.url(), &per(&tenant)).await, "every row copied");
    let shared = count(&db.url(), &format!("SELECT count(*) FROM users a JOIN users b ON a.id = b.id WHERE a.tenant_id = '{tenant}' AND b.tenant_id = 'demo-copy'")).await;
    assert_eq!(shared, 0, "the copy's users have ids of their own");
    let uuid_like = count(&db.url(), "SELECT count(*) FROM users WHERE tenant_id = 'demo-copy' AND id !~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'").await;
    assert_eq!(uuid_like, 0, "fresh ids of the same form");
    let stray = count(&db.url(), "SELECT count(*) FROM documents d JOIN projects p ON p.id = d.project_id WHERE d.tenant_id = 'demo-copy' AND p.tenant_id <> 'demo-copy'").await;
    assert_eq!(stray, 0, "the copy's documents point at the copy's projects");
}

/// Numbers that must differ in a copy are made anew as long as their column always holds: a
/// one-digit code among the nine taken ones (pretix's `public_id`, found by `make test`) would
/// otherwise meet a row the source has, once in a while. Zero and negative numbers become numbers
/// too (before, `0` could become a hex digit the column refuses).
#[tokio::test(flavor = "multi_thread")]
async fn regenerated_numbers_fill_their_column_and_never_meet_the_sources() {
    let db = ScratchDb::create().await;
    db.execute(
        "CREATE TABLE tenants (id text PRIMARY KEY);
         CREATE TABLE badges (id serial PRIMARY KEY, tenant_id text NOT NULL REFERENCES tenants(id), code smallint NOT NULL UNIQUE, pin int UNIQUE, serial_no bigint UNIQUE, ref text UNIQUE);
         INSERT INTO tenants VALUES ('acme');
         INSERT INTO badges (tenant_id, code, pin, serial_no, ref) SELECT 'acme', g, CASE g WHEN 1 THEN 0 WHEN 2 THEN -5 ELSE g END, g, g::text FROM generate_series(1, 9) g;",
    )
    .await;
    let e = ends(Some(&db), Some(&db));
    let mut s = spec(MigrationType::TenantCopy, "acme");
    s.target_tenant_id = Some("acme-copy".into());
    let v = validate(&s, &e).await;
    let conflicting: Vec<(&str, Vec<String>)> = v.problems().map(|(t, p)| (t, p.columns.clone())).collect();
    assert_eq!(conflicting.len(), 4, "each number meets the source's: {conflicting:?}");
    for c in ["code", "pin", "serial_no", "ref"] {
        s.rules.push(Rule { table: "public.badges".into(), column: c.into(), action: Action::Regenerate { template: None } });
    }
    let v = validate(&s, &e).await;
    assert!(v.is_clean(), "made anew, nothing meets: {:?}", v.problems().collect::<Vec<_>>());
    run(&s, &e).await.expect("the copy");
    let made = rows(&db.url(), "SELECT concat_ws('|', length(code::text), length(pin::text), length(serial_no::text), length(ref)) FROM badges WHERE tenant_id = 'acme-copy'").await;
    assert_eq!(made, vec!["4|9|18|9".to_string(); 9], "smallint, int and bigint numbers as long as the column always holds; in text at least nine digits");
    assert_eq!(count(&db.url(), "SELECT count(*) FROM badges WHERE tenant_id = 'acme-copy' AND (code < 1000 OR pin < 100000000 OR serial_no < 100000000000000000)").await, 0, "positive and of full length");
    assert_eq!(rows(&db.url(), "SELECT concat_ws('|', code, pin, serial_no, ref) FROM badges WHERE tenant_id = 'acme' ORDER BY 1").await.len(), 9, "the source's rows stay");
}

/// Regenerated numbers are distinct among themselves: 300 four-digit codes drawn one by one would
/// meet each other nearly every time (a `make test` run met two of nine); they are the rows'
/// numbers from one random offset, within the digits the column holds.
#[tokio::test(flavor = "multi_thread")]
async fn regenerated_numbers_never_meet_each_other() {
    let db = ScratchDb::create().await;
    db.execute(
        "CREATE TABLE tenants (id text PRIMARY KEY);
         CREATE TABLE badges (id serial PRIMARY KEY, tenant_id text NOT NULL REFERENCES tenants(id), code smallint NOT NULL UNIQUE);
         INSERT INTO tenants VALUES ('acme');
         INSERT INTO badges (tenant_id, code) SELECT 'acme', g FROM generate_series(1, 300) g;",
    )
    .await;
    let e = ends(Some(&db), Some(&db));
    let mut s = spec(MigrationType::TenantCopy, "acme");
    s.target_tenant_id = Some("acme-copy".into());
    s.rules.push(Rule { table: "public.badges".into(), column: "code".into(), action: Action::Regenerate { template: None } });
    let v = validate(&s, &e).await;
    assert!(v.is_clean(), "300 codes made anew, none twice: {:?}", v.problems().collect::<Vec<_>>());
    run(&s, &e).await.expect("the copy");
    assert_eq!(count(&db.url(), "SELECT count(DISTINCT code) FROM badges WHERE tenant_id = 'acme-copy' AND code BETWEEN 1000 AND 9999").await, 300, "300 distinct four-digit codes");
}

/// Rules that make two rows to write equal under a unique index (here a mask that leaves only
/// the first and last letters of users' emails) are caught by validation, which names the rows
/// and what to do; nothing is written, and a database's refusal in a migration is labelled as
/// the migration's, not a restore's.
#[tokio::test(flavor = "multi_thread")]
async fn rules_that_make_two_rows_equal_are_caught_by_validation() {
    let db = platform().await;
    db.execute("INSERT INTO users (tenant_id, email) VALUES ('acme', 'amy@acme.test')").await;
    let before = everything(&db.url()).await;
    let e = ends(Some(&db), Some(&db));
    let mut s = spec(MigrationType::TenantCopy, "acme");
    s.target_tenant_id = Some("acme-masked".into());
    s.target_tenant_name = Some("Acme masked".into());
    s.conflicts.insert("public.tenants".into(), Resolution::KeepBoth);
    for _ in 0..2 {
        s.rules.push(Rule { table: "public.users".into(), column: "email".into(), action: Action::Mask });
    }
    let v = validate(&s, &e).await;
    let dup: Vec<_> = v.problems().filter(|(_, p)| p.kind == "duplicate_rows").collect();
    assert_eq!(dup.len(), 1, "{:?}", v.problems().collect::<Vec<_>>());
    let (t, p) = dup[0];
    assert_eq!(t, "public.users");
    assert_eq!(p.count, 2, "ann@ and amy@ both become a***********t: {p:?}");
    assert!(p.message.contains("transformation rules") && p.message.contains("(tenant_id, email)"), "{}", p.message);
    let err = run(&s, &e).await.expect_err("refused");
    assert!(err.message.contains("nothing was written") && !err.message.contains("restore failed"), "{}", err.message);
    assert_eq!(everything(&db.url()).await, before, "nothing was written");
}
