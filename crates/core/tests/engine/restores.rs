//! Restores against the real PostgreSQL: tenant only (in place and as a copy), selective, point
//! in time, clean, failures half-way (constraint, killed connection, cancel) leaving the target
//! as it was, safety backups, incompatible targets, and test restores.

use std::collections::BTreeMap;
use std::sync::Arc;

use safehold_core::restore::{self, RestoreRequest, RestoreType};
use safehold_core::restore::records as restores;
use safehold_core::source::{no_progress, CancelToken, Progress, ProgressSink, SourceSpec};
use safehold_core::ErrorCode;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

use crate::backup::{pg_dump, repo_with_password, Repo};
use crate::support::{home, ScratchDb};

const A: &str = "00000000-0000-0000-0000-00000000000a";
const B: &str = "00000000-0000-0000-0000-00000000000b";

/// A small multi-tenant platform: tenants, users (identity keys), projects (serial keys, owned by
/// a user), project notes (uuid keys, reached only through projects, with replies to notes),
/// and a system table.
pub(crate) async fn platform() -> ScratchDb {
    let db = ScratchDb::create().await;
    db.execute(&format!(
        "CREATE TABLE tenants (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL UNIQUE);
         CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id uuid NOT NULL REFERENCES tenants(id), email text NOT NULL, UNIQUE (tenant_id, email));
         CREATE TABLE projects (id serial PRIMARY KEY, tenant_id uuid NOT NULL REFERENCES tenants(id), owner_id bigint REFERENCES users(id), title text NOT NULL);
         CREATE TABLE project_notes (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), project_id int NOT NULL REFERENCES projects(id), reply_to uuid REFERENCES project_notes(id), body text);
         CREATE TABLE settings (key text PRIMARY KEY, value text);
         INSERT INTO tenants VALUES ('{A}', 'Acme'), ('{B}', 'Beta'), ('00000000-0000-0000-0000-00000000000c', 'Gamma');
         INSERT INTO users (tenant_id, email) SELECT t.id, 'user' || g || '@' || lower(t.name) || '.test' FROM tenants t, generate_series(1, 4) g ORDER BY t.name, g;
         INSERT INTO projects (tenant_id, owner_id, title) SELECT u.tenant_id, u.id, 'project of ' || u.email FROM users u ORDER BY u.id;
         INSERT INTO projects (tenant_id, owner_id, title) SELECT u.tenant_id, NULL, 'unowned ' || u.email FROM users u WHERE u.email LIKE 'user1@%' ORDER BY u.id;
         INSERT INTO project_notes (project_id, body) SELECT p.id, 'note ' || g || ' on ' || p.id FROM projects p, generate_series(1, 3) g ORDER BY p.id, g;
         INSERT INTO project_notes (project_id, reply_to, body) SELECT n.project_id, n.id, 'reply to ' || n.body FROM project_notes n WHERE n.body LIKE 'note 1 %';
         INSERT INTO settings VALUES ('plan', 'gold'), ('region', 'eu');"
    ))
    .await;
    db
}

async fn rows(db: &ScratchDb, sql: &str) -> Vec<String> {
    let mut conn = PgConnection::connect(&db.url()).await.expect("connect");
    let mut out: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql.to_string())).fetch_all(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    out.sort();
    out
}

/// Every row of every table, split into tenant `t`'s rows and everyone else's.
async fn split(db: &ScratchDb, t: &str) -> (BTreeMap<&'static str, Vec<String>>, BTreeMap<&'static str, Vec<String>>) {
    let preds: [(&str, String); 5] = [
        ("tenants", format!("id = '{t}'")),
        ("users", format!("tenant_id = '{t}'")),
        ("projects", format!("tenant_id = '{t}'")),
        ("project_notes", format!("project_id IN (SELECT id FROM projects WHERE tenant_id = '{t}')")),
        ("settings", "false".into()),
    ];
    let (mut mine, mut others) = (BTreeMap::new(), BTreeMap::new());
    for (table, pred) in preds {
        mine.insert(table, rows(db, &format!("SELECT x::text FROM {table} x WHERE {pred}")).await);
        others.insert(table, rows(db, &format!("SELECT x::text FROM {table} x WHERE NOT ({pred})")).await);
    }
    (mine, others)
}

/// Drops `db`'s database (its name stays `db`'s, dropped again at its end): a restore with
/// `--create` makes it, on several connections (the parallel restore).
async fn vacate(db: &ScratchDb) {
    let name = db.url().rsplit('/').next().unwrap_or_default().to_string();
    let mut admin = PgConnection::connect(&format!("{}/postgres", crate::support::pg_base())).await.expect("connect");
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE \"{name}\" WITH (FORCE)"))).execute(&mut admin).await.expect("drop");
}

fn request(repo: &Repo, target: &ScratchDb) -> RestoreRequest {
    let mut r = RestoreRequest::new(repo.path(), target.url());
    r.jobs = 2;
    r
}

async fn run(repo: &Repo, req: &RestoreRequest) -> safehold_core::Result<restore::RestoreOutcome> {
    let opened = restore::open(req, &repo.keys).await?;
    restore::execute(req, opened, &repo.keys, &CancelToken::new(), &no_progress()).await
}

async fn plan(repo: &Repo, req: &RestoreRequest) -> safehold_core::Result<restore::RestorePlan> {
    let opened = restore::open(req, &repo.keys).await?;
    restore::plan(req, &opened, true, &CancelToken::new()).await
}

/// Changes tenant A across parent and child tables (update, delete, insert) and tenant B, and the
/// system table.
async fn change_a_and_b(db: &ScratchDb) {
    db.execute(&format!(
        "UPDATE projects SET title = title || ' (renamed)' WHERE tenant_id = '{A}';
         DELETE FROM project_notes WHERE reply_to IS NOT NULL AND project_id IN (SELECT id FROM projects WHERE tenant_id = '{A}');
         DELETE FROM project_notes WHERE body LIKE 'note 3 %' AND project_id IN (SELECT id FROM projects WHERE tenant_id = '{A}');
         UPDATE projects SET owner_id = NULL WHERE owner_id = (SELECT max(id) FROM users WHERE tenant_id = '{A}');
         DELETE FROM users WHERE id = (SELECT max(id) FROM users WHERE tenant_id = '{A}');
         INSERT INTO users (tenant_id, email) VALUES ('{A}', 'late@acme.test');
         INSERT INTO projects (tenant_id, owner_id, title) SELECT '{A}', id, 'new project' FROM users WHERE email = 'late@acme.test';
         INSERT INTO project_notes (project_id, body) SELECT id, 'new note' FROM projects WHERE title = 'new project';
         UPDATE tenants SET name = 'Acme Corp' WHERE id = '{A}';
         UPDATE projects SET title = 'B changed' WHERE tenant_id = '{B}' AND owner_id IS NULL;
         INSERT INTO users (tenant_id, email) VALUES ('{B}', 'new@beta.test');
         UPDATE settings SET value = 'platinum' WHERE key = 'plan';"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_restore_replaces_that_tenant_only_and_its_safety_backup_undoes_it() {
    let db = platform().await;
    let repo = repo_with_password("pw");
    let (a_backed_up, _) = split(&db, A).await;
    repo.backup(SourceSpec::Postgres { url: db.url() }).await;
    change_a_and_b(&db).await;
    let (a_changed, others_before) = split(&db, A).await;
    assert_ne!(a_changed, a_backed_up, "the test changed tenant A");

    let mut req = request(&repo, &db);
    req.restore_type = RestoreType::TenantOnly;
    req.tenant_id = Some(A.into());

    // The plan: a rolled-back trial run with exact counts; it changes nothing.
    let p = plan(&repo, &req).await.expect("plan");
    assert!(p.exact && p.destructive && p.safety_backup, "{p:?}");
    let tables: BTreeMap<&str, &safehold_core::source::pg_apply::TableChange> = p.tables.iter().map(|t| (t.table.as_str(), t)).collect();
    assert_eq!(tables.len(), 4, "the tenant tables, project_notes found through projects: {tables:?}");
    assert_eq!(tables["public.project_notes"].rows_in_backup as usize, a_backed_up["project_notes"].len());
    assert_eq!(tables["public.users"].deleted, 1, "late@acme.test goes");
    assert_eq!(tables["public.users"].inserted, 1, "the deleted user comes back");
    assert_eq!(tables["public.tenants"].updated, 1, "the name is restored");
    assert!(tables["public.project_notes"].inserted >= 2, "deleted notes come back");
    assert_eq!(split(&db, A).await.0, a_changed, "planning changed nothing");

    let out = run(&repo, &req).await.expect("tenant restore");
    let (a_now, others_now) = split(&db, A).await;
    assert_eq!(a_now, a_backed_up, "tenant A equals its backed-up state in every table");
    assert_eq!(others_now, others_before, "every other row (tenant B's changes, the system table) is as it was");
    let safety = out.safety_backup.expect("a safety backup was taken");
    // It holds tenant A's rows as they were just before, and nobody else's: one tenant's restore
    // backs up one tenant.
    assert_eq!(safety.rows, a_changed.values().map(|r| r.len() as u64).sum::<u64>(), "the safety backup holds tenant A's rows only");

    // New rows after the restore still get fresh keys: the sequences are past the restored ones.
    db.execute(&format!("INSERT INTO users (tenant_id, email) VALUES ('{A}', 'after@acme.test'); INSERT INTO projects (tenant_id, title) VALUES ('{A}', 'after');")).await;
    db.execute("DELETE FROM projects WHERE title = 'after'; DELETE FROM users WHERE email = 'after@acme.test';").await;

    // The safety backup undoes the restore: tenant A as it was just before.
    let mut undo = request(&repo, &db);
    undo.restore_type = RestoreType::TenantOnly;
    undo.tenant_id = Some(A.into());
    undo.backup_id = Some(safety.id.clone());
    undo.safety_backup = false;
    run(&repo, &undo).await.expect("restore the safety backup");
    let (a_undone, others_undone) = split(&db, A).await;
    assert_eq!(a_undone, a_changed, "the safety backup restores the pre-restore state");
    assert_eq!(others_undone, others_before);

    // A safety backup is never the pick of "the newest backup".
    let p = plan(&repo, &req).await.expect("plan");
    assert_ne!(p.chain.last().map(|b| b.id.clone()), Some(safety.id), "the newest regular backup is restored, not the safety backup");

    // A tenant deleted from the database comes back whole, after a safety backup that has none
    // of its rows to keep.
    db.execute(&format!(
        "DELETE FROM project_notes WHERE project_id IN (SELECT id FROM projects WHERE tenant_id = '{A}'); DELETE FROM projects WHERE tenant_id = '{A}'; \
         DELETE FROM users WHERE tenant_id = '{A}'; DELETE FROM tenants WHERE id = '{A}';"
    ))
    .await;
    assert!(split(&db, A).await.0.values().all(Vec::is_empty), "tenant A is gone");
    let out = run(&repo, &req).await.expect("restore the deleted tenant");
    let (a_back, others_after) = split(&db, A).await;
    assert_eq!(a_back, a_backed_up, "tenant A is back as it was backed up");
    assert_eq!(others_after, others_before, "the others untouched");
    assert_eq!(out.safety_backup.expect("a safety backup").rows, 0, "nothing of tenant A to keep");
}

/// A tenant restore reads past the other tenants' rows by the text of their tenant column (issue
/// 26 §5): the tenant id as the user writes it — a `uuid` in upper case, an integer with a
/// leading zero — is compared as the column's type writes it, and rows of nobody (a NULL tenant)
/// are neither taken nor lost.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_id_written_differently_restores_the_same_rows() {
    let db = platform().await;
    let repo = repo_with_password("pw");
    let (a_backed_up, _) = split(&db, A).await;
    repo.backup(SourceSpec::Postgres { url: db.url() }).await;
    change_a_and_b(&db).await;
    let (_, others_before) = split(&db, A).await;
    let mut req = request(&repo, &db);
    req.restore_type = RestoreType::TenantOnly;
    req.tenant_id = Some(A.to_uppercase());
    run(&repo, &req).await.expect("a tenant restore, its id in upper case");
    let (a_now, others_now) = split(&db, A).await;
    assert_eq!(a_now, a_backed_up, "tenant A as backed up");
    assert_eq!(others_now, others_before, "the others as they were");

    let db = ScratchDb::create().await;
    db.execute(
        "CREATE TABLE tenants (id int PRIMARY KEY, name text NOT NULL);
         CREATE TABLE orders (id int PRIMARY KEY, tenant_id int REFERENCES tenants(id), note text);
         INSERT INTO tenants VALUES (7, 'seven'), (70, 'seventy'), (17, 'seventeen');
         INSERT INTO orders SELECT g, (ARRAY[7, 70, 17, NULL])[1 + g % 4], 'order ' || g FROM generate_series(1, 40) g;",
    )
    .await;
    let repo = repo_with_password("pw");
    repo.backup(SourceSpec::Postgres { url: db.url() }).await;
    let mine = "SELECT x::text FROM orders x WHERE tenant_id = 7";
    let others = "SELECT x::text FROM orders x WHERE tenant_id IS DISTINCT FROM 7";
    let backed_up = rows(&db, mine).await;
    assert_eq!(backed_up.len(), 10);
    db.execute("UPDATE orders SET note = 'changed'; DELETE FROM orders WHERE id % 5 = 0;").await;
    let others_before = rows(&db, others).await;
    let mut req = request(&repo, &db);
    req.restore_type = RestoreType::TenantOnly;
    req.tenant_id = Some("07".into());
    run(&repo, &req).await.expect("a tenant restore, its id with a leading zero");
    assert_eq!(rows(&db, mine).await, backed_up, "tenant 7 as backed up (not 70, not 17)");
    assert_eq!(rows(&db, others).await, others_before, "the others, and the orders of nobody, as they were");
}

/// Each table's own rows (`ONLY`) of tenants A and B: items A, items B, archived_items A, B.
async fn own_rows_by_tenant(db: &ScratchDb) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for t in ["items", "archived_items"] {
        for tenant in [A, B] {
            out.push(rows(db, &format!("SELECT x::text FROM ONLY {t} x WHERE tenant_id = '{tenant}'")).await);
        }
    }
    out
}

/// A tenant's rows in a table that others inherit from (legacy inheritance) and in those others:
/// a tenant restore in place replaces the tenant's own rows of each table — the parent's
/// statements name it `ONLY`, so they never reach, delete or update the child's rows (which
/// share keys with the parent's here, and are written first: without `ONLY` the parent's update
/// gave them the parent's titles) — and leaves the other tenants' rows alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_restore_on_legacy_inheritance_replaces_each_tables_own_rows() {
    let db = ScratchDb::create().await;
    db.execute(&format!(
        "CREATE TABLE tenants (id uuid PRIMARY KEY, name text NOT NULL);
         CREATE TABLE items (id int PRIMARY KEY, tenant_id uuid NOT NULL REFERENCES tenants(id), title text);
         CREATE TABLE archived_items (extra text, PRIMARY KEY (id)) INHERITS (items);
         INSERT INTO tenants VALUES ('{A}', 'Acme'), ('{B}', 'Beta');
         INSERT INTO items SELECT g, CASE WHEN g % 2 = 0 THEN '{A}'::uuid ELSE '{B}'::uuid END, 'item ' || g FROM generate_series(1, 20) g;
         INSERT INTO archived_items SELECT g, CASE WHEN g % 2 = 0 THEN '{A}'::uuid ELSE '{B}'::uuid END, 'special ' || g, 'x' FROM generate_series(1, 12) g;"
    ))
    .await;
    let own = |table: &str, tenant: &str| format!("SELECT x::text FROM ONLY {table} x WHERE tenant_id = '{tenant}'");
    let before = own_rows_by_tenant(&db).await;
    let repo = repo_with_password("pw");
    repo.backup(SourceSpec::Postgres { url: db.url() }).await;
    db.execute(&format!(
        "UPDATE ONLY items SET title = 'changed' WHERE tenant_id = '{A}';
         DELETE FROM ONLY archived_items WHERE tenant_id = '{A}' AND id > 6;
         INSERT INTO archived_items VALUES (40, '{A}', 'late', 'y');
         UPDATE ONLY archived_items SET title = 'B changed' WHERE tenant_id = '{B}';"
    ))
    .await;
    let b_now: Vec<String> = [rows(&db, &own("items", B)).await, rows(&db, &own("archived_items", B)).await].concat();
    let mut req = request(&repo, &db);
    req.restore_type = RestoreType::TenantOnly;
    req.tenant_id = Some(A.into());
    run(&repo, &req).await.expect("a tenant restore on legacy inheritance");
    let after = own_rows_by_tenant(&db).await;
    assert_eq!(after[0], before[0], "tenant A's own rows of items as backed up");
    assert_eq!(after[2], before[2], "tenant A's own rows of archived_items as backed up");
    assert_eq!([after[1].clone(), after[3].clone()].concat(), b_now, "tenant B as it was");
}

/// Found by generated schema 3483542720: rows of a table without a key reach the tenant through
/// a reference no foreign key declares; the parent row they point at is deleted after the
/// backup, so they belong to nobody. The restore puts the parent back, so they are the tenant's
/// again: they are replaced, not kept beside the backup's copies of them.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_restore_replaces_keyless_rows_whose_parent_was_deleted_under_an_undeclared_reference() {
    let db = ScratchDb::create().await;
    db.execute(&format!(
        "CREATE TABLE tenants (id uuid PRIMARY KEY, name text NOT NULL);
         CREATE TABLE documents (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id uuid NOT NULL REFERENCES tenants(id), body text);
         CREATE TABLE payments (documents_id bigint NOT NULL, amount int, note text);
         INSERT INTO tenants VALUES ('{A}', 'Acme'), ('{B}', 'Beta');
         INSERT INTO documents (tenant_id, body) SELECT t, 'doc ' || g FROM unnest(ARRAY['{A}', '{B}']::uuid[]) t, generate_series(1, 3) g;
         INSERT INTO payments SELECT d.id, g, 'paid ' || d.body FROM documents d, generate_series(1, 2) g;"
    ))
    .await;
    let payments = "SELECT p::text FROM payments p";
    let repo = repo_with_password("pw");
    let backed_up = rows(&db, payments).await;
    let of = |t: &str| format!("SELECT p::text FROM payments p WHERE documents_id IN (SELECT id FROM documents WHERE tenant_id = '{t}')");
    let a_backed_up = rows(&db, &of(A)).await;
    repo.backup(SourceSpec::Postgres { url: db.url() }).await;
    // Tenant A loses a document; its payments stay, pointing at nothing.
    db.execute(&format!("DELETE FROM documents WHERE id = (SELECT min(id) FROM documents WHERE tenant_id = '{A}'); UPDATE payments SET amount = 99 WHERE documents_id IN (SELECT id FROM documents WHERE tenant_id = '{B}')")).await;
    let b_now = rows(&db, &of(B)).await;

    let mut req = request(&repo, &db);
    req.restore_type = RestoreType::TenantOnly;
    req.tenant_id = Some(A.into());
    req.safety_backup = false;
    req.references = vec!["public.payments.documents_id=public.documents.id".into()];
    run(&repo, &req).await.expect("tenant restore");

    assert_eq!(rows(&db, &of(A)).await, a_backed_up, "tenant A's payments are the backup's, each once");
    assert_eq!(rows(&db, payments).await.len(), backed_up.len(), "no payment is doubled: {:?}", rows(&db, payments).await);
    assert_eq!(rows(&db, &of(B)).await, b_now, "tenant B's payments are untouched");
}

/// Issue 20: rows the tenant's rows point at one-to-one belong to it, unless other tenants'
/// rows reach them too — then they stay shared: the plan says how many, the restore leaves them,
/// and a copy leaves them out.
#[tokio::test(flavor = "multi_thread")]
async fn rows_owned_one_to_one_that_several_tenants_reach_stay_shared_and_the_plan_says_so() {
    let db = ScratchDb::create().await;
    db.execute(&format!(
        "CREATE TABLE tenants (id uuid PRIMARY KEY, name text NOT NULL);
         CREATE TABLE projects (id int PRIMARY KEY, tenant_id uuid NOT NULL REFERENCES tenants(id));
         CREATE TABLE profiles (id int PRIMARY KEY, bio text);
         CREATE TABLE links (id int PRIMARY KEY, a int REFERENCES projects(id), b int REFERENCES projects(id), profile_id int NOT NULL UNIQUE REFERENCES profiles(id));
         INSERT INTO tenants VALUES ('{A}', 'Acme'), ('{B}', 'Beta');
         INSERT INTO projects VALUES (1, '{A}'), (2, '{B}');
         INSERT INTO profiles VALUES (10, 'acme alone'), (20, 'acme and beta'), (30, 'beta alone');
         INSERT INTO links VALUES (1, 1, NULL, 10), (2, 1, 2, 20), (3, 2, NULL, 30);"
    ))
    .await;
    let repo = repo_with_password("pw");
    repo.backup(SourceSpec::Postgres { url: db.url() }).await;
    db.execute("UPDATE profiles SET bio = bio || ' (changed)'")
        .await;

    let mut req = request(&repo, &db);
    req.restore_type = RestoreType::TenantOnly;
    req.tenant_id = Some(A.into());
    req.safety_backup = false;
    let p = plan(&repo, &req).await.expect("plan");
    let shared: Vec<&String> = p.warnings.iter().filter(|w| w.contains("shared")).collect();
    assert_eq!(
        shared.len(),
        1,
        "one note on the shared rows: {:?}",
        p.warnings
    );
    assert!(shared[0].starts_with("public.profiles: 1 of the rows that the tenant's public.links rows point at are reached by other tenants' rows too"), "{}", shared[0]);
    assert!(p.warnings.iter().any(|w| w.starts_with("public.profiles: the rows that the tenant's public.links rows point at belong to the tenant")), "{:?}", p.warnings);
    run(&repo, &req).await.expect("tenant restore");
    assert_eq!(
        rows(&db, "SELECT id || ':' || bio FROM profiles").await,
        ["10:acme alone", "20:acme and beta (changed)", "30:beta alone (changed)"],
        "the tenant's own profile is the backup's; the shared one and the other tenant's stay as they are"
    );

    // A copy of the tenant takes its own profile along under a new key, and not the shared one.
    let mut s = safehold_core::migrate::MigrationSpec {
        migration_type: Some(safehold_core::migrate::MigrationType::TenantCopy),
        source_tenant_ids: vec![A.into()],
        ..Default::default()
    };
    s.target_tenant_name = Some("Acme copy".into());
    let e = safehold_core::migrate::Endpoints {
        source_url: Some(db.url()),
        target_url: Some(db.url()),
        tenant_column: "tenant_id".into(),
        tenants_table: "tenants".into(),
        ..Default::default()
    };
    let report =
        safehold_core::migrate::execute(&s, &e, false, &CancelToken::new(), &no_progress())
            .await
            .expect("validation");
    assert!(
        report.warnings.iter().any(|w| w.starts_with("public.profiles: 1 of the rows that the tenant's public.links rows point at are reached by other tenants' rows too: shared rows are not taken along")),
        "{:?}",
        report.warnings
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_restored_as_a_copy_gets_new_ids_everywhere_and_leaves_the_original() {
    let db = platform().await;
    let repo = repo_with_password("pw");
    repo.backup(SourceSpec::Postgres { url: db.url() }).await;
    // (Sequences are not transactional: a trial run of a copy uses up the key values it drew.)
    let data = |db: &ScratchDb| pg_dump(db, &["--data-only"], true).lines().filter(|l| !l.contains("setval(")).collect::<Vec<_>>().join("\n");
    let before = data(&db);
    let (a_rows, _) = split(&db, A).await;

    let mut req = request(&repo, &db);
    req.restore_type = RestoreType::TenantOnly;
    req.tenant_id = Some(A.into());
    req.preserve_ids = false;

    // The tenants' names are unique: a copy under the same name is refused in the plan.
    let err = plan(&repo, &req).await.expect_err("the name clashes");
    assert!(err.message.contains("name is taken") && err.message.contains("--new-tenant-name") && err.message.contains("nothing was written"), "{}", err.message);
    assert_eq!(data(&db), before, "a refused plan changes nothing");

    req.new_tenant_name = Some("Acme (restored 24 Nov)".into());
    let p = plan(&repo, &req).await.expect("plan");
    assert!(!p.destructive && !p.safety_backup, "a copy replaces nothing");
    let out = run(&repo, &req).await.expect("copy");
    let new = out.new_tenant_id.expect("the new tenant's id");
    assert_ne!(new, A);

    let (a_after, _) = split(&db, A).await;
    assert_eq!(a_after, a_rows, "the original tenant is untouched");
    let count = |sql: String| {
        let db = &db;
        async move { rows(db, &sql).await.len() }
    };
    for (table, pred) in [
        ("users", "tenant_id = '{T}'"),
        ("projects", "tenant_id = '{T}'"),
        ("project_notes", "project_id IN (SELECT id FROM projects WHERE tenant_id = '{T}')"),
    ] {
        let of = |t: &str| format!("SELECT x::text FROM {table} x WHERE {}", pred.replace("{T}", t));
        assert_eq!(count(of(&new)).await, count(of(A)).await, "{table}: the copy has the source tenant's rows");
        let ids_new = rows(&db, &of(&new).replace("x::text", "x.id::text")).await;
        let ids_a = rows(&db, &of(A).replace("x::text", "x.id::text")).await;
        assert!(ids_new.iter().all(|i| !ids_a.contains(i)), "{table}: new ids everywhere");
    }
    assert_eq!(rows(&db, &format!("SELECT name FROM tenants WHERE id = '{new}'")).await, vec!["Acme (restored 24 Nov)".to_string()]);
    // Every foreign key of the copy resolves inside the copy.
    let outside = rows(
        &db,
        &format!(
            "SELECT 'project ' || p.id FROM projects p WHERE p.tenant_id = '{new}' AND p.owner_id IS NOT NULL AND p.owner_id NOT IN (SELECT id FROM users WHERE tenant_id = '{new}')
             UNION ALL SELECT 'note ' || n.id FROM project_notes n JOIN projects p ON p.id = n.project_id WHERE p.tenant_id = '{new}'
               AND n.reply_to IS NOT NULL AND n.reply_to NOT IN (SELECT n2.id FROM project_notes n2 JOIN projects p2 ON p2.id = n2.project_id WHERE p2.tenant_id = '{new}')"
        ),
    )
    .await;
    assert!(outside.is_empty(), "references leaving the copy: {outside:?}");
    let owned = rows(&db, &format!("SELECT p.id::text FROM projects p WHERE p.tenant_id = '{new}' AND p.owner_id IS NOT NULL")).await;
    assert_eq!(owned.len(), 4, "owners were rewritten, not dropped");
    // The copy's id is taken now: a second copy under it is refused.
    req.new_tenant_id = Some(new.clone());
    let err = plan(&repo, &req).await.expect_err("taken");
    assert!(err.message.contains("already exists") && err.message.contains("choose a new tenant id"), "{}", err.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_selective_restore_changes_only_the_chosen_tables_and_warns_about_missing_parents() {
    let db = platform().await;
    let repo = repo_with_password("pw");
    let notes_backed_up = rows(&db, "SELECT x::text FROM project_notes x").await;
    let settings_backed_up = rows(&db, "SELECT x::text FROM settings x").await;
    repo.backup(SourceSpec::Postgres { url: db.url() }).await;
    db.execute("DELETE FROM project_notes WHERE reply_to IS NOT NULL; UPDATE project_notes SET body = 'edited'; UPDATE settings SET value = 'x'; INSERT INTO users (tenant_id, email) SELECT id, 'kept@x.test' FROM tenants;").await;
    let users_before = rows(&db, "SELECT x::text FROM users x").await;
    let projects_before = rows(&db, "SELECT x::text FROM projects x").await;

    let mut req = request(&repo, &db);
    req.restore_type = RestoreType::Selective;
    req.tables = vec!["project_notes".into(), "public.settings".into()];
    let p = plan(&repo, &req).await.expect("plan");
    assert!(
        p.warnings.iter().any(|w| w.starts_with("public.project_notes is restored without its parent table public.projects")),
        "{:?}",
        p.warnings
    );
    assert_eq!(p.tables.iter().map(|t| t.table.as_str()).collect::<Vec<_>>(), vec!["public.project_notes", "public.settings"]);

    let mut bad = req.clone();
    bad.tables = vec!["no_such_table".into()];
    let err = plan(&repo, &bad).await.expect_err("unknown table");
    assert!(err.message.contains("no table \"no_such_table\""), "{}", err.message);

    run(&repo, &req).await.expect("selective restore");
    assert_eq!(rows(&db, "SELECT x::text FROM project_notes x").await, notes_backed_up);
    assert_eq!(rows(&db, "SELECT x::text FROM settings x").await, settings_backed_up);
    assert_eq!(rows(&db, "SELECT x::text FROM users x").await, users_before, "tables not chosen keep their changes");
    assert_eq!(rows(&db, "SELECT x::text FROM projects x").await, projects_before);
}

/// "Put last week's invoices and fees into a scratch database so I can look": a selective restore
/// into a database that lacks the tables (an empty one, or a new one with --create) creates them
/// as the backup has them — the enum their column needs, their sequences and where they stood,
/// keys, checks, unique constraints, indexes, a partitioned table with its partitions — and
/// leaves out, and says, a foreign key to a table neither restored nor there.
#[tokio::test(flavor = "multi_thread")]
async fn a_selective_restore_creates_the_tables_a_target_lacks_with_what_they_need() {
    let db = platform().await;
    db.execute(
        "CREATE TYPE invoice_state AS ENUM ('open', 'paid');
         CREATE TABLE invoices (id serial PRIMARY KEY, tenant_id uuid NOT NULL REFERENCES tenants(id), state invoice_state NOT NULL,
                                amount numeric(10,2) CHECK (amount >= 0), code text UNIQUE);
         CREATE INDEX invoices_by_state ON invoices (state, amount);
         CREATE TABLE fees (id bigint GENERATED BY DEFAULT AS IDENTITY (START WITH 100) PRIMARY KEY, invoice_id int NOT NULL REFERENCES invoices(id), amount numeric);
         CREATE TABLE visits (tenant_id uuid, at date NOT NULL, page text) PARTITION BY RANGE (at);
         CREATE TABLE visits_2026 PARTITION OF visits FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
         CREATE TABLE visits_rest PARTITION OF visits DEFAULT;
         CREATE INDEX visits_at ON visits (at);
         INSERT INTO invoices (tenant_id, state, amount, code) SELECT id, CASE WHEN name = 'Acme' THEN 'paid' ELSE 'open' END::invoice_state, 12.50, 'INV-' || name FROM tenants;
         INSERT INTO fees (invoice_id, amount) SELECT id, 1.25 FROM invoices;
         SELECT nextval('invoices_id_seq'), nextval('invoices_id_seq');
         INSERT INTO visits VALUES (NULL, '2026-03-01', '/a'), (NULL, '2025-03-01', '/b');",
    )
    .await;
    let repo = repo_with_password("pw");
    let want = |t: &str| format!("SELECT x::text FROM {t} x");
    let (invoices, fees, visits) = (rows(&db, &want("invoices")).await, rows(&db, &want("fees")).await, rows(&db, &want("visits")).await);
    repo.backup(SourceSpec::Postgres { url: db.url() }).await;
    let next_in_source = rows(&db, "SELECT nextval('invoices_id_seq')::text").await;

    // An existing, empty database.
    let empty = ScratchDb::create().await;
    let mut req = request(&repo, &empty);
    req.restore_type = RestoreType::Selective;
    // (A partitioned table is chosen by a partition: the archive's tables are its partitions.)
    req.tables = vec!["invoices".into(), "fees".into(), "visits_2026".into()];
    let p = plan(&repo, &req).await.expect("plan");
    assert!(p.warnings.iter().any(|w| w.starts_with("public.invoices does not exist in the target: it is created as the backup has it")), "{:?}", p.warnings);
    assert!(p.warnings.iter().any(|w| w.contains("foreign key left out: constraint invoices_tenant_id_fkey on public.invoices") && w.contains("public.tenants")), "{:?}", p.warnings);
    assert!(p.warnings.iter().any(|w| w.contains("type public.invoice_state")), "the enum is created with them: {:?}", p.warnings);
    assert!(p.warnings.iter().any(|w| w.starts_with("public.visits does not exist in the target: the partitioned table is created as the backup has it, with its partitions public.visits_2026, public.visits_rest")), "{:?}", p.warnings);
    assert!(!p.safety_backup, "nothing in the target is replaced: no safety backup");
    assert_eq!(p.tables.iter().map(|t| (t.table.as_str(), t.inserted)).collect::<Vec<_>>(), vec![("public.invoices", 3), ("public.visits", 2), ("public.fees", 3)], "in the order they are written");
    assert!(rows(&empty, "SELECT relname::text FROM pg_class WHERE relname IN ('invoices', 'fees', 'visits')").await.is_empty(), "the plan wrote nothing");
    run(&repo, &req).await.expect("selective restore into an empty database");
    assert_eq!(rows(&empty, &want("invoices")).await, invoices);
    assert_eq!(rows(&empty, &want("fees")).await, fees);
    assert_eq!(rows(&empty, &want("visits")).await, visits);
    assert_eq!(rows(&empty, "SELECT relname::text FROM pg_class WHERE relname IN ('visits_2026', 'visits_rest', 'visits_at', 'invoices_by_state', 'invoices_code_key')").await.len(), 5, "partitions, indexes and unique constraints as the backup has them");
    assert_eq!(rows(&empty, "SELECT nextval('invoices_id_seq')::text").await, next_in_source, "the sequence goes on where it stood");
    assert_eq!(rows(&empty, "SELECT conname::text FROM pg_constraint WHERE contype = 'f'").await, vec!["fees_invoice_id_fkey".to_string()], "the key between restored tables is kept; the one to tenants left out");
    let mut conn = PgConnection::connect(&empty.url()).await.expect("connect");
    for (bad, why) in [("INSERT INTO invoices (tenant_id, state, amount) VALUES (gen_random_uuid(), 'open', -1)", "the check"), ("INSERT INTO invoices (tenant_id, state, code) VALUES (gen_random_uuid(), 'open', 'INV-Acme')", "the unique constraint"), ("INSERT INTO fees (invoice_id) VALUES (999)", "the foreign key")] {
        assert!(sqlx::raw_sql(AssertSqlSafe(bad.to_string())).execute(&mut conn).await.is_err(), "{why} is there");
    }
    let id: i64 = sqlx::query_scalar("INSERT INTO fees (invoice_id, amount) SELECT min(id), 0 FROM invoices RETURNING id").fetch_one(&mut conn).await.expect("insert");
    assert!(id > 100, "the identity goes on after the restored rows: {id}");

    // A database that does not exist: refused without --create, made with it (under a temporary
    // name, renamed when complete).
    let new = ScratchDb { name: format!("safehold_test_{}", uuid::Uuid::new_v4().simple()), base: crate::support::pg_base() };
    let mut req = request(&repo, &new);
    req.restore_type = RestoreType::Selective;
    req.tables = vec!["invoices".into(), "fees".into()];
    let err = plan(&repo, &req).await.expect_err("no such database");
    assert!(err.message.contains("does not exist") && err.message.contains("--create"), "{}", err.message);
    req.create = true;
    let p = plan(&repo, &req).await.expect("plan with --create");
    assert!(p.warnings.iter().any(|w| w.contains("does not exist: it is created with the tables restored")), "{:?}", p.warnings);
    assert_eq!(p.tables.iter().map(|t| t.inserted).sum::<u64>(), 6, "the plan tried it in a database of its own");
    assert!(rows(&db, &format!("SELECT datname::text FROM pg_database WHERE datname LIKE '%{}%'", new.name)).await.is_empty(), "and dropped it");
    run(&repo, &req).await.expect("selective restore with --create");
    assert_eq!(rows(&new, &want("invoices")).await, invoices);
    assert_eq!(rows(&new, &want("fees")).await, fees);
    // A tenant restore does not create databases.
    let mut tenant = request(&repo, &new);
    tenant.restore_type = RestoreType::TenantOnly;
    tenant.tenant_id = Some(A.into());
    tenant.create = true;
    let err = plan(&repo, &tenant).await.expect_err("--create for a tenant restore");
    assert!(err.message.contains("--create for full and selective"), "{}", err.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_point_in_time_restore_reaches_the_newest_backup_at_or_before_it() {
    let db = platform().await;
    let repo = repo_with_password("pw");
    let mut times = Vec::new();
    for value in ["t1", "t2", "t3"] {
        db.execute(&format!("UPDATE settings SET value = '{value}' WHERE key = 'plan'")).await;
        let b = repo.backup(SourceSpec::Postgres { url: db.url() }).await;
        times.push(chrono::DateTime::parse_from_rfc3339(&b.snapshot_time).expect("time"));
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    let between = times[1] + (times[2] - times[1]) / 2;
    let target = ScratchDb::create().await;
    let mut req = request(&repo, &target);
    req.at = Some(between.to_rfc3339());
    let p = plan(&repo, &req).await.expect("plan");
    let pit = p.point_in_time.expect("the plan states the point reached");
    assert_eq!(chrono::DateTime::parse_from_rfc3339(&pit.reached).expect("time"), times[1]);
    assert!(pit.gap_seconds > 0.0);
    run(&repo, &req).await.expect("restore at a point in time");
    assert_eq!(rows(&target, "SELECT value FROM settings WHERE key = 'plan'").await, vec!["t2".to_string()]);

    let mut early = request(&repo, &target);
    early.at = Some((times[0] - chrono::Duration::hours(1)).to_rfc3339());
    let err = plan(&repo, &early).await.expect_err("nothing that early");
    assert!(err.message.contains("no backup was taken at or before"), "{}", err.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_restore_replaces_a_database_with_clean_after_a_safety_backup() {
    let src = platform().await;
    let repo = repo_with_password("pw");
    repo.backup(SourceSpec::Postgres { url: src.url() }).await;
    let target = ScratchDb::create().await;
    target.execute("CREATE TABLE leftover (x int); INSERT INTO leftover VALUES (42); CREATE TYPE mood AS ENUM ('ok');").await;
    let mut req = request(&repo, &target);
    let err = plan(&repo, &req).await.expect_err("not empty");
    assert!(err.message.contains("--clean"), "{}", err.message);
    req.clean = true;
    let p = plan(&repo, &req).await.expect("plan");
    assert!(p.destructive && p.replaced_objects == 1, "{p:?}");
    let out = run(&repo, &req).await.expect("clean restore");
    assert_eq!(pg_dump(&target, &[], true), pg_dump(&src, &[], true), "the target is the backup, exactly");
    // The safety backup holds what was replaced.
    let safety = out.safety_backup.expect("safety backup");
    let again = ScratchDb::create().await;
    let mut undo = request(&repo, &again);
    undo.backup_id = Some(safety.id);
    run(&repo, &undo).await.expect("restore the safety backup");
    assert_eq!(rows(&again, "SELECT x::text FROM leftover x").await, vec!["42".to_string()]);
}

/// Runs a recorded tenant restore that fails half-way, and checks the target and the record.
async fn failing_restore(db: &ScratchDb, repo: &Repo, cancel: CancelToken, progress: ProgressSink, expect_status: &str, expect_in_error: &str) {
    let h = home().await;
    let before = pg_dump(db, &["--data-only"], true);
    let mut req = request(repo, db);
    req.restore_type = RestoreType::TenantOnly;
    req.tenant_id = Some(A.into());
    req.safety_backup = false;
    let id = restores::insert(&h.ctx, &req, None).await.expect("record");
    let err = restores::run(&h.ctx, &id, &req, &repo.keys, None, &cancel, Some(progress)).await.expect_err("the restore fails");
    assert!(err.message.contains(expect_in_error), "{}", err.message);
    assert_eq!(pg_dump(db, &["--data-only"], true), before, "the target is exactly as it was");
    let op = restores::get(&h.ctx, &id).await.expect("the record");
    assert_eq!(serde_json::to_value(op.status).expect("json"), serde_json::json!(expect_status));
    assert!(op.error_message.as_deref().is_some_and(|m| m.contains(expect_in_error)), "{:?}", op.error_message);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_that_fails_half_way_leaves_the_target_as_it_was() {
    let db = platform().await;
    let repo = repo_with_password("pw");
    repo.backup(SourceSpec::Postgres { url: db.url() }).await;
    change_a_and_b(&db).await;

    // A constraint of the target that the backup's rows violate.
    db.execute("ALTER TABLE project_notes ADD CONSTRAINT no_replies CHECK (body NOT LIKE 'reply to %') NOT VALID").await;
    failing_restore(&db, &repo, CancelToken::new(), no_progress(), "failed", "no_replies").await;
    db.execute("ALTER TABLE project_notes DROP CONSTRAINT no_replies").await;

    // A cancel while the restore is writing.
    let token = CancelToken::new();
    let t2 = token.clone();
    let cancel_when_restoring: ProgressSink = Arc::new(move |p: Progress| {
        if p.phase == "restoring" && p.table.as_deref() == Some("public.projects") {
            t2.cancel();
        }
    });
    failing_restore(&db, &repo, token, cancel_when_restoring, "cancelled", "cancelled").await;

    // The server connection killed during the load.
    let url = db.url();
    let name = db.name.clone();
    let kill: ProgressSink = Arc::new(move |p: Progress| {
        if p.phase == "restoring" && p.table.as_deref() == Some("public.projects") {
            let out = std::process::Command::new("psql")
                .args(["-X", "-q", "-d", &url, "-c"])
                .arg(format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND application_name = 'safehold'"))
                .output()
                .expect("psql");
            assert!(out.status.success());
        }
    });
    failing_restore(&db, &repo, CancelToken::new(), kill, "failed", "the target was left as it was").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn compatible_targets_work_and_incompatible_ones_fail_in_the_plan() {
    let src = platform().await;
    let repo = repo_with_password("pw");
    repo.backup(SourceSpec::Postgres { url: src.url() }).await;
    // Another database (another name) made from the same backup, then changed: a tenant restore works.
    let other = ScratchDb::create().await;
    run(&repo, &request(&repo, &other)).await.expect("full restore into another database");
    let (a_backed_up, _) = split(&other, A).await;
    change_a_and_b(&other).await;
    let mut req = request(&repo, &other);
    req.restore_type = RestoreType::TenantOnly;
    req.tenant_id = Some(A.into());
    req.safety_backup = false;
    run(&repo, &req).await.expect("tenant restore into another database");
    assert_eq!(split(&other, A).await.0, a_backed_up);

    // A target whose table lacks a column of the backup: refused in the plan, nothing changed.
    let odd = ScratchDb::create().await;
    run(&repo, &request(&repo, &odd)).await.expect("full restore");
    odd.execute("ALTER TABLE projects DROP COLUMN title").await;
    let before = pg_dump(&odd, &["--data-only"], true);
    let mut req = request(&repo, &odd);
    req.restore_type = RestoreType::TenantOnly;
    req.tenant_id = Some(A.into());
    let err = plan(&repo, &req).await.expect_err("incompatible");
    assert_eq!(err.code, ErrorCode::Validation);
    assert!(err.message.contains("public.projects has no column title"), "{}", err.message);
    assert_eq!(pg_dump(&odd, &["--data-only"], true), before);
    // A tenant restore without a tenant id, and a SQLite target for a PostgreSQL backup.
    req.tenant_id = None;
    assert!(plan(&repo, &req).await.expect_err("no tenant").message.contains("--tenant"));
    let mut sqlite = RestoreRequest::new(repo.path(), "sqlite:///tmp/nowhere.db");
    sqlite.jobs = 1;
    assert!(plan(&repo, &sqlite).await.expect_err("kind").message.contains("is of a postgres database"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_test_restore_checks_every_table_against_the_archive_and_the_source() {
    let db = platform().await;
    let repo = repo_with_password("pw");
    repo.backup(SourceSpec::Postgres { url: db.url() }).await;
    let scratch = format!("{}/postgres", crate::support::pg_base());
    let req = RestoreRequest::new(repo.path(), String::new());
    let opened = restore::open(&req, &repo.keys).await.expect("open");
    let report = safehold_core::restore::restore_test(&opened, &scratch, Some(&db.url()), &CancelToken::new(), &no_progress()).await.expect("test restore");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.tables.len(), 5);
    assert!(report.tables.iter().all(|t| t.archive_checksum == "match" && t.source == "match" && t.restored_rows == t.expected_rows), "{report:?}");
    let left: Vec<String> = rows(&db, &format!("SELECT datname::text FROM pg_database WHERE datname = '{}'", report.scratch_database)).await;
    assert!(left.is_empty(), "the scratch database was dropped");

    db.execute("UPDATE settings SET value = 'changed'").await;
    let report = safehold_core::restore::restore_test(&opened, &scratch, Some(&db.url()), &CancelToken::new(), &no_progress()).await.expect("test restore");
    let settings = report.tables.iter().find(|t| t.table == "public.settings").expect("settings");
    assert_eq!(settings.source, "changed since the backup");
    assert!(report.ok, "a changed source is reported, not a failure");
}

/// Verify by restoring, from the catalog: a completed backup of a PostgreSQL configuration is
/// restored into a scratch database and compared; cancelled, it stops, says so, and leaves no
/// scratch database behind.
#[tokio::test(flavor = "multi_thread")]
async fn verify_by_restoring_checks_a_recorded_backup_and_a_cancel_leaves_no_scratch_database() {
    use safehold_core::{configurations, connections, demo, runs};
    let Some((_dir, ctx)) = crate::runs::keychain_home().await else { return };
    demo::ensure(&ctx, false).await.expect("demo");
    let db = platform().await;
    let mut input = connections::ConnectionInput::from_url("verify me", &db.url()).expect("input");
    input.password = None;
    let conn = connections::add(&ctx, input).await.expect("connection");
    let demo_config = configurations::list(&ctx).await.expect("configs").remove(0);
    let cfg = configurations::ConfigurationInput {
        configuration_name: "pg nightly".into(),
        connection_id: conn.id.clone(),
        ..demo_config.to_input()
    };
    let cfg = configurations::create(&ctx, cfg).await.expect("configuration");
    let exec = runs::enqueue(&ctx, &cfg.id).await.expect("enqueue");
    let done = runs::run(&ctx, &exec, &CancelToken::new()).await.expect("run");
    assert_eq!(done.error_message, None);

    let report = restores::verify_by_restoring(&ctx, &exec, &CancelToken::new()).await.expect("verify by restoring");
    assert!(report.ok && !report.tables.is_empty(), "{report:?}");
    let cancel = CancelToken::new();
    cancel.cancel();
    let err = restores::verify_by_restoring(&ctx, &exec, &cancel).await.expect_err("cancelled");
    assert_eq!(err.code, ErrorCode::Cancelled, "{}", err.message);
    // The scratch databases (this test's and any other test's running now) are gone soon after.
    let mut admin = PgConnection::connect(&format!("{}/postgres", crate::support::pg_base())).await.expect("admin");
    let mut left = -1i64;
    for _ in 0..50 {
        left = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname LIKE 'safehold_verify_%'").fetch_one(&mut admin).await.expect("count");
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(left, 0, "no scratch database is left behind");
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'backup.verify_restore' AND outcome = 'failure' AND detail LIKE '%cancel%'")
        .fetch_one(&ctx.pool)
        .await
        .expect("audit");
    assert_eq!(audited, 1, "the cancelled verification is audited");
}

/// A `--create` restore first drops what builds killed earlier left on the server: a building
/// database whose connections are all gone, or all still running the statement they were in when
/// their process died (an index build does not notice its client is gone) — but never one whose
/// idle anchor connection says its build is alive. (Found as a flake of the CLI's kill -9 test.)
#[tokio::test(flavor = "multi_thread")]
async fn a_create_restore_sweeps_dead_builds_and_leaves_live_ones() {
    use safehold_core::source::postgres::{claim_build, release_build, start_building, BUILDING_PREFIX};
    let base = crate::support::pg_base();
    let admin_url = format!("{base}/postgres");
    let mut admin = PgConnection::connect(&admin_url).await.expect("admin");
    let tag = format!("{}", std::process::id());
    let (dead, live, target) = (format!("{BUILDING_PREFIX}dead{tag}"), format!("{BUILDING_PREFIX}live{tag}"), format!("safehold_sweep_target_{tag}"));
    // Made as a build makes them (claimed until their connections are up): other tests' sweeps
    // run meanwhile.
    for d in [&dead, &live] {
        claim_build(&mut admin, d).await.expect("claim");
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{d}\""))).execute(&mut admin).await.expect("create");
    }
    // The dead build: a statement still running, no idle connection.
    let mut running = PgConnection::connect(&format!("{base}/{dead}")).await.expect("connect");
    let sleeper = tokio::spawn(async move { sqlx::query("SELECT pg_sleep(120)").execute(&mut running).await.map(drop) });
    // The live build: its idle anchor (and a statement running too).
    let anchor = PgConnection::connect(&format!("{base}/{live}")).await.expect("anchor");
    let mut worker = PgConnection::connect(&format!("{base}/{live}")).await.expect("worker");
    let working = tokio::spawn(async move { sqlx::query("SELECT pg_sleep(120)").execute(&mut worker).await.map(drop) });
    let active = |db: String| {
        let admin_url = admin_url.clone();
        async move {
            let mut c = PgConnection::connect(&admin_url).await.expect("admin");
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND state = 'active'").bind(db).fetch_one(&mut c).await.expect("activity")
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while active(dead.clone()).await == 0 || active(live.clone()).await == 0 {
        assert!(std::time::Instant::now() < deadline, "the statements never started");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for d in [&dead, &live] {
        release_build(&mut admin, d).await.expect("release");
    }

    // A build that has created its database and not yet connected its anchor: its claim, held
    // on a connection of its own, as `start_building` holds it.
    let claimed = format!("{BUILDING_PREFIX}claimed{tag}");
    let mut claimer = PgConnection::connect(&admin_url).await.expect("claimer");
    claim_build(&mut claimer, &claimed).await.expect("claim");
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{claimed}\""))).execute(&mut claimer).await.expect("create");

    let building = start_building(&format!("{base}/{target}")).await.expect("start building").expect("a new database");
    let exists = |db: &str| sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)").bind(db.to_string());
    assert!(!exists(&dead).fetch_one(&mut admin).await.expect("look"), "the dead build is dropped, its running statement ended");
    assert!(exists(&live).fetch_one(&mut admin).await.expect("look"), "a build with its anchor is alive and left alone");
    assert!(exists(&claimed).fetch_one(&mut admin).await.expect("look"), "a build whose anchor is not connected yet holds its claim and is left alone");
    assert!(sleeper.await.expect("join").is_err(), "the dead build's statement was ended");
    building.abandon().await;
    // Its process gone (the claim's session closed, no anchor ever came): the next sweep takes it.
    drop(claimer);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let b = start_building(&format!("{base}/{target}")).await.expect("start building").expect("a new database");
        b.abandon().await;
        if !exists(&claimed).fetch_one(&mut admin).await.expect("look") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the claim of a closed session was still honoured");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(anchor);
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE \"{live}\" WITH (FORCE)"))).execute(&mut admin).await.expect("clean up");
    let _ = working.await;
}

/// Builds started at the same time on one server never take each other's new database for a
/// dead build's: each sweeps the server first, and a database just created has no connection
/// until its anchor connects. (Found when the CLI's and the app's tests first ran side by side:
/// a `--create` restore failed with "database safehold_building_… does not exist".) Three tasks
/// start, finish and drop builds over and over, so that sweeps fall into one another's windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn builds_side_by_side_never_sweep_each_other() {
    use safehold_core::source::postgres::start_building;
    let base = crate::support::pg_base();
    let tag = std::process::id();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..3 {
        let base = base.clone();
        tasks.spawn(async move {
            for i in 0..25 {
                let target = format!("safehold_side_by_side_{tag}_{t}_{i}");
                let b = start_building(&format!("{base}/{target}")).await.map_err(|e| format!("task {t}, build {i}: start: {e}"))?.ok_or("the target existed")?;
                b.finish().await.map_err(|e| format!("task {t}, build {i}: finish: {e}"))?;
                let mut admin = PgConnection::connect(&format!("{base}/postgres")).await.map_err(|e| e.to_string())?;
                sqlx::query(AssertSqlSafe(format!("DROP DATABASE \"{target}\""))).execute(&mut admin).await.map_err(|e| format!("task {t}, build {i}: the finished database: {e}"))?;
                let _ = admin.close().await;
            }
            Ok::<(), String>(())
        });
    }
    let mut failures = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r.expect("join") {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "builds swept each other: {failures:?}");
}

/// The rows of a SQLite table as `sqlite3 .dump` writes them (INSERT lines), sorted.
fn sqlite_rows(path: &std::path::Path, table: &str) -> Vec<String> {
    let out = std::process::Command::new("sqlite3").arg(path).arg(format!(".dump {table}")).output().expect("sqlite3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut rows: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("INSERT")).map(str::to_string).collect();
    rows.sort();
    rows
}

pub(crate) fn sqlite_exec(path: &std::path::Path, sql: &str) {
    let out = std::process::Command::new("sqlite3").arg(path).arg(sql).output().expect("sqlite3");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Selective restores on SQLite (the demo platform): chosen tables replaced in place with exact
/// counts in the plan, the others untouched; refused, changing nothing, when the result would
/// leave rows pointing at rows that are gone; a table the file lacks created with its indexes;
/// a new file made with the chosen tables only.
#[tokio::test(flavor = "multi_thread")]
async fn a_selective_restore_replaces_chosen_tables_of_a_sqlite_database() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("platform.db");
    safehold_core::demo::generate(&db, 11).await.expect("demo");
    // A name a stranger's schema may have: quotes, a space, a dot.
    sqlite_exec(&db, r#"CREATE TABLE "odd ""name"".x" ("a b" INTEGER PRIMARY KEY, "it's" TEXT); INSERT INTO "odd ""name"".x" VALUES (1, 'one'), (2, 'two');"#);
    let repo = repo_with_password("pw");
    let (documents, users) = (sqlite_rows(&db, "documents"), sqlite_rows(&db, "users"));
    repo.backup(SourceSpec::Sqlite { path: db.clone() }).await;
    // Ten documents deleted, five retitled, one user's e-mail changed; a project renamed (not chosen).
    sqlite_exec(&db, "DELETE FROM documents WHERE rowid IN (SELECT rowid FROM documents ORDER BY id LIMIT 10);
                      UPDATE documents SET title = 'changed' WHERE rowid IN (SELECT rowid FROM documents ORDER BY id DESC LIMIT 5);
                      UPDATE users SET email = 'changed@example.test' WHERE rowid = (SELECT min(rowid) FROM users);
                      UPDATE projects SET name = 'renamed' WHERE rowid = (SELECT min(rowid) FROM projects);");
    let projects = sqlite_rows(&db, "projects");
    let mut req = RestoreRequest::new(repo.path(), format!("sqlite://{}", db.display()));
    req.restore_type = RestoreType::Selective;
    req.tables = vec!["documents".into(), "users".into()];
    req.safety_backup = false;
    let p = plan(&repo, &req).await.expect("plan");
    assert!(p.exact);
    let by: BTreeMap<&str, (u64, u64, u64)> = p.tables.iter().map(|t| (t.table.as_str(), (t.inserted, t.updated, t.deleted))).collect();
    assert_eq!(by["documents"], (10, 5, 0), "{:?}", p.tables);
    assert_eq!(by["users"], (0, 1, 0), "{:?}", p.tables);
    assert_eq!(sqlite_rows(&db, "projects"), projects, "the plan changed nothing");
    run(&repo, &req).await.expect("selective restore on SQLite");
    assert_eq!(sqlite_rows(&db, "documents"), documents);
    assert_eq!(sqlite_rows(&db, "users"), users);
    assert_eq!(sqlite_rows(&db, "projects"), projects, "a table not chosen keeps its changes");

    // A user added since the backup, with a project: restoring users would orphan the project.
    sqlite_exec(&db, "INSERT INTO users SELECT 'new-user', tenant_id, 'new@example.test', 'New', 'member', 'en', NULL, created_at, updated_at FROM users LIMIT 1;
                      INSERT INTO projects SELECT 'new-project', tenant_id, 'new-user', 'p', 'active', NULL, created_at, updated_at FROM users WHERE id = 'new-user';");
    let before = sqlite_rows(&db, "users");
    let mut only_users = req.clone();
    only_users.tables = vec!["users".into()];
    let err = run(&repo, &only_users).await.expect_err("would orphan a project");
    assert!(err.message.contains("would leave 1 rows pointing at rows that are gone (projects → users)"), "{}", err.message);
    assert_eq!(sqlite_rows(&db, "users"), before, "nothing was changed");

    // A file without the table: created with its indexes. A file that does not exist: made.
    let empty = dir.path().join("empty.db");
    sqlite_exec(&empty, "CREATE TABLE notes (x int)");
    let mut into_empty = RestoreRequest::new(repo.path(), format!("sqlite://{}", empty.display()));
    into_empty.restore_type = RestoreType::Selective;
    into_empty.tables = vec!["tenants".into(), "users".into()];
    into_empty.safety_backup = false;
    run(&repo, &into_empty).await.expect("into a file without the tables");
    assert_eq!(sqlite_rows(&empty, "users"), users);
    let indexes = std::process::Command::new("sqlite3").arg(&empty).arg("SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'users_tenant'").output().expect("sqlite3");
    assert_eq!(String::from_utf8_lossy(&indexes.stdout).trim(), "users_tenant", "its index came with it");
    let fresh = dir.path().join("fresh.db");
    let mut into_new = into_empty.clone();
    into_new.target = format!("sqlite://{}", fresh.display());
    let p = plan(&repo, &into_new).await.expect("plan into a new file");
    assert!(p.warnings.iter().any(|w| w.contains("is made with the chosen tables only")), "{:?}", p.warnings);
    assert!(!fresh.exists(), "the plan made nothing");
    run(&repo, &into_new).await.expect("into a new file");
    assert_eq!(sqlite_rows(&fresh, "users"), users);
    assert!(sqlite_rows(&fresh, "documents").is_empty(), "only the chosen tables");

    // The oddly named table: changed in place, then put back; and into a file without it.
    sqlite_exec(&db, r#"UPDATE "odd ""name"".x" SET "it's" = 'changed'; INSERT INTO "odd ""name"".x" VALUES (3, 'three');"#);
    let mut odd = req.clone();
    odd.tables = vec![r#"odd "name".x"#.into()];
    let p = plan(&repo, &odd).await.expect("plan for the odd table");
    assert_eq!(p.tables.iter().map(|t| (t.inserted, t.updated, t.deleted)).collect::<Vec<_>>(), vec![(0, 2, 1)], "{:?}", p.tables);
    run(&repo, &odd).await.expect("the odd table put back");
    assert_eq!(sqlite_query(&db, r#"SELECT "a b" || ':' || "it's" FROM "odd ""name"".x""#), vec!["1:one".to_string(), "2:two".to_string()]);
    let mut odd_new = odd.clone();
    odd_new.target = format!("sqlite://{}", empty.display());
    run(&repo, &odd_new).await.expect("into a file without it");
    assert_eq!(sqlite_query(&empty, r#"SELECT "a b" || ':' || "it's" FROM "odd ""name"".x""#), vec!["1:one".to_string(), "2:two".to_string()]);
}

pub(crate) fn sqlite_query(path: &std::path::Path, sql: &str) -> Vec<String> {
    let out = std::process::Command::new("sqlite3").arg(path).arg(sql).output().expect("sqlite3");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    let mut rows: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    rows.sort();
    rows
}

/// A tenant restored in place on SQLite (the demo platform, whose Restore tab opens on it): the
/// tenant's rows in every table back as the backup had them, with exact counts in the plan;
/// the other tenants untouched; refused, changing nothing, when another tenant now holds a
/// restored row's key or points at a row the restore takes away.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_is_restored_in_place_on_a_sqlite_database() {
    let dir = tempfile::tempdir().expect("tmp");
    let db = dir.path().join("platform.db");
    safehold_core::demo::generate(&db, 5).await.expect("demo");
    let ids = sqlite_query(&db, "SELECT tenant_id FROM documents GROUP BY tenant_id HAVING count(*) > 20 ORDER BY tenant_id LIMIT 2");
    let (a, b) = (ids[0].clone(), ids[1].clone());
    let tables = ["tenants", "users", "projects", "documents", "events"];
    let of = |t: &str, who: &str| if t == "tenants" { format!("SELECT * FROM tenants WHERE id = '{who}'") } else { format!("SELECT * FROM {t} WHERE tenant_id = '{who}'") };
    let snapshot = |who: &str| tables.iter().map(|t| sqlite_query(&db, &of(t, who))).collect::<Vec<_>>();
    let a_before = snapshot(&a);
    let count_of = |t: &str, who: &str| sqlite_query(&db, &of(t, who).replacen("SELECT *", "SELECT count(*)", 1)).remove(0);
    let a_counts: Vec<String> = tables.iter().map(|t| count_of(t, &a)).collect();
    let repo = repo_with_password("pw");
    repo.backup(SourceSpec::Sqlite { path: db.clone() }).await;
    // Tenant A loses documents and events, renames a project and gets a new document; B changes too.
    sqlite_exec(&db, &format!(
        "DELETE FROM documents WHERE rowid IN (SELECT rowid FROM documents WHERE tenant_id = '{a}' ORDER BY id LIMIT 7);
         DELETE FROM events WHERE tenant_id = '{a}';
         UPDATE projects SET name = 'renamed' WHERE rowid = (SELECT min(rowid) FROM projects WHERE tenant_id = '{a}');
         INSERT INTO documents SELECT 'a-new', tenant_id, project_id, author_id, 'new', 'b', '[]', 1, created_at, updated_at FROM documents WHERE tenant_id = '{a}' LIMIT 1;
         UPDATE users SET full_name = 'changed' WHERE tenant_id = '{b}';"
    ));
    let b_now = snapshot(&b);
    let events_of_a = a_before[4].len() as u64;
    let mut req = RestoreRequest::new(repo.path(), format!("sqlite://{}", db.display()));
    req.restore_type = RestoreType::TenantOnly;
    req.tenant_id = Some(a.clone());
    req.safety_backup = false;
    let p = plan(&repo, &req).await.expect("plan");
    let by: BTreeMap<&str, (u64, u64, u64)> = p.tables.iter().map(|t| (t.table.as_str(), (t.inserted, t.updated, t.deleted))).collect();
    assert_eq!(by["documents"], (7, 0, 1), "{:?}", p.tables);
    assert_eq!(by["events"], (events_of_a, 0, 0), "{:?}", p.tables);
    assert_eq!(by["projects"], (0, 1, 0), "{:?}", p.tables);
    assert_eq!(by["users"], (0, 0, 0), "{:?}", p.tables);
    assert_eq!(snapshot(&b), b_now, "the plan changed nothing");
    run(&repo, &req).await.expect("tenant restore on SQLite");
    assert_eq!(snapshot(&a), a_before, "the tenant's rows are the backup's");
    assert_eq!(snapshot(&b), b_now, "the other tenant is untouched");

    // A document of A's now belongs to B: restoring A would take its key back.
    let moved = sqlite_query(&db, &format!("SELECT id FROM documents WHERE tenant_id = '{a}' ORDER BY id LIMIT 1"))[0].clone();
    sqlite_exec(&db, &format!("UPDATE documents SET tenant_id = '{b}' WHERE id = '{moved}'"));
    let (a_now, b_now) = (snapshot(&a), snapshot(&b));
    let err = run(&repo, &req).await.expect_err("a key another tenant holds");
    assert!(err.message.contains("documents") && err.message.contains("other tenants hold"), "{}", err.message);
    assert_eq!((snapshot(&a), snapshot(&b)), (a_now, b_now.clone()), "nothing was changed");
    sqlite_exec(&db, &format!("UPDATE documents SET tenant_id = '{a}' WHERE id = '{moved}'"));

    // A project of A's made since the backup, and a document of B's pointing at it.
    sqlite_exec(&db, &format!(
        "INSERT INTO projects SELECT 'a-project', tenant_id, owner_id, 'p', 'active', NULL, created_at, updated_at FROM projects WHERE tenant_id = '{a}' LIMIT 1;
         UPDATE documents SET project_id = 'a-project' WHERE rowid = (SELECT min(rowid) FROM documents WHERE tenant_id = '{b}');"
    ));
    let err = run(&repo, &req).await.expect_err("would orphan B's document");
    assert!(err.message.contains("rows pointing at rows that are gone (documents → projects)"), "{}", err.message);
    assert_eq!(sqlite_query(&db, "SELECT count(*) FROM projects WHERE id = 'a-project'"), vec!["1".to_string()], "nothing was changed");

    // As a copy: the backup's rows of A under a new tenant with new keys, A itself untouched
    // (its slug is unique: the copy's gets a suffix).
    let mut copy = req.clone();
    copy.preserve_ids = false;
    copy.new_tenant_name = Some("A as it was".into());
    let err = plan(&repo, &copy).await.expect_err("the slug is taken");
    assert!(err.message.contains("slug"), "{}", err.message);
    copy.on_conflict.insert("tenants".into(), safehold_core::migrate::Resolution::KeepBoth);
    let p = plan(&repo, &copy).await.expect("plan as a copy");
    assert!(p.exact && p.new_tenant_id.is_some(), "{p:?}");
    let inserted: BTreeMap<&str, u64> = p.tables.iter().map(|t| (t.table.as_str(), t.inserted)).collect();
    for (i, t) in tables.iter().enumerate() {
        assert_eq!(inserted[t].to_string(), a_counts[i], "{t}: {:?}", p.tables);
    }
    let (a_now, b_now) = (snapshot(&a), snapshot(&b));
    let out = run(&repo, &copy).await.expect("tenant restored as a copy on SQLite");
    let new = out.new_tenant_id.expect("the new tenant");
    assert_ne!(new, a);
    for (i, t) in tables.iter().enumerate() {
        assert_eq!(count_of(t, &new), a_counts[i], "{t}");
    }
    assert_eq!(sqlite_query(&db, &format!("SELECT name FROM tenants WHERE id = '{new}'")), vec!["A as it was".to_string()]);
    assert_eq!((snapshot(&a), snapshot(&b)), (a_now, b_now), "the tenant and the others are untouched");
    assert_eq!(sqlite_query(&db, "PRAGMA foreign_key_check"), Vec::<String>::new(), "no foreign key points at nothing");
}

/// A full restore gives the objects their owners and grants only when asked (`--owners
/// --privileges`); a role the target lacks is named in the plan, and its grant left out.
#[tokio::test(flavor = "multi_thread")]
async fn owners_and_privileges_are_restored_when_asked_and_a_missing_role_is_named() {
    let tag = format!("acl{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let src = ScratchDb::create().await;
    src.execute(&format!(
        "CREATE ROLE {tag}_owner NOLOGIN; CREATE ROLE {tag}_reader NOLOGIN; CREATE ROLE {tag}_gone NOLOGIN;
         CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'a'); ALTER TABLE items OWNER TO {tag}_owner;
         GRANT SELECT ON items TO {tag}_reader; GRANT SELECT ON items TO {tag}_gone;"
    ))
    .await;
    let repo = repo_with_password("pw");
    repo.backup(SourceSpec::Postgres { url: src.url() }).await;
    // The role is gone from the server before the restore.
    src.execute(&format!("REVOKE ALL ON items FROM {tag}_gone; DROP ROLE {tag}_gone;")).await;
    async fn acl(db: &ScratchDb) -> String {
        let mut c = PgConnection::connect(&db.url()).await.expect("connect");
        sqlx::query_scalar("SELECT pg_get_userbyid(relowner) || ' ' || coalesce(relacl::text, '-') FROM pg_class WHERE relname = 'items'").fetch_one(&mut c).await.expect("acl")
    }
    let plain = ScratchDb::create().await;
    run(&repo, &request(&repo, &plain)).await.expect("restore");
    assert!(acl(&plain).await.ends_with(" -"), "not asked: the restoring user owns it, no grants: {}", acl(&plain).await);
    let asked = ScratchDb::create().await;
    let mut req = request(&repo, &asked);
    req.owners = true;
    req.privileges = true;
    let p = plan(&repo, &req).await.expect("plan");
    assert!(p.warnings.iter().any(|w| w.contains(&format!("no role {tag}_gone"))), "{:?}", p.warnings);
    run(&repo, &req).await.expect("restore with owners and privileges");
    assert_eq!(acl(&asked).await, acl(&src).await);
    assert!(acl(&asked).await.starts_with(&format!("{tag}_owner ")));
    drop((plain, asked, src));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut admin = PgConnection::connect(&format!("{}/postgres", crate::support::pg_base())).await.expect("connect");
    for r in ["owner", "reader"] {
        let _ = sqlx::query(AssertSqlSafe(format!("DROP ROLE IF EXISTS {tag}_{r}"))).execute(&mut admin).await;
    }
}

/// Only a superuser can make an event trigger: restoring as another user, the plan names it and
/// the restore refuses before writing anything; with --skip-unsupported it is left out.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_trigger_is_planned_as_unsupported_for_a_restoring_user_who_is_not_a_superuser() {
    let tag = format!("evt{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let src = ScratchDb::create().await;
    src.execute(
        "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1), (2);
         CREATE FUNCTION note_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'ddl'; END $$;
         CREATE EVENT TRIGGER note_ddl_end ON ddl_command_end EXECUTE FUNCTION note_ddl();",
    )
    .await;
    let repo = repo_with_password("pw");
    repo.backup(SourceSpec::Postgres { url: src.url() }).await;
    let target = ScratchDb::create().await;
    target.execute(&format!("CREATE ROLE {tag}_maker LOGIN; ALTER DATABASE {} OWNER TO {tag}_maker; GRANT CREATE ON SCHEMA public TO {tag}_maker;", target.url().rsplit('/').next().unwrap_or_default())).await;
    let as_maker = target.url().replacen("postgres@", &format!("{tag}_maker@"), 1);
    let mut req = RestoreRequest::new(repo.path(), as_maker);
    req.jobs = 2;
    let p = plan(&repo, &req).await.expect("plan");
    assert!(p.unsupported.iter().any(|u| u.contains("event trigger note_ddl_end: only a superuser")), "{:?}", p.unsupported);
    let refused = run(&repo, &req).await.expect_err("refused");
    assert!(refused.message.contains("--skip-unsupported") && refused.message.contains("nothing was written"), "{}", refused.message);
    req.skip_unsupported = true;
    run(&repo, &req).await.expect("restored without the event trigger");
    let mut c = PgConnection::connect(&target.url()).await.expect("connect");
    let (rows, triggers): (i64, i64) = sqlx::query_as("SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM pg_event_trigger)").fetch_one(&mut c).await.expect("count");
    assert_eq!((rows, triggers), (2, 0));
    drop(c);
    drop((target, src));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut admin = PgConnection::connect(&format!("{}/postgres", crate::support::pg_base())).await.expect("connect");
    let _ = sqlx::query(AssertSqlSafe(format!("DROP ROLE IF EXISTS {tag}_maker"))).execute(&mut admin).await;
}

/// Casts, operators, an operator class (and an index using it), text search dictionaries and
/// configurations, a foreign server with user
/// mappings and a foreign table, and a table with its indexes in a tablespace of their own: a
/// full restore makes each again as the source has it (pg_dump of both compared; the tablespaces
/// read from the catalog, which pg_dump's comparison here leaves out), on one connection and on
/// several, and again over itself with --clean. A user mapping's password is not in the backup
/// (the restored mapping equals the source's without it), and the backup says so. A target without the tablespace: named in the plan, refused, then
/// made in the default tablespace with --skip-unsupported.
#[tokio::test(flavor = "multi_thread")]
async fn casts_operators_text_search_foreign_data_and_tablespaces_are_restored() {
    let tag = format!("safehold_ts_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let dir = tempfile::tempdir().expect("tmp");
    let location = dir.path().join("space");
    std::fs::create_dir(&location).expect("mkdir");
    let owned = std::process::Command::new("chown").arg("postgres").arg(&location).status().expect("chown");
    assert!(owned.success(), "the tablespace's directory belongs to the server's user");
    let mut admin = PgConnection::connect(&format!("{}/postgres", crate::support::pg_base())).await.expect("connect");
    // What an earlier run that failed half-way left (empty: its databases were dropped).
    let left: Vec<String> = sqlx::query_scalar("SELECT spcname::text FROM pg_tablespace WHERE spcname LIKE 'safehold\\_ts\\_%'").fetch_all(&mut admin).await.expect("tablespaces");
    for t in left {
        let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLESPACE \"{t}\""))).execute(&mut admin).await;
    }
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE TABLESPACE {tag} LOCATION '{}'", location.display()))).execute(&mut admin).await.expect("tablespace");
    let src = ScratchDb::create().await;
    src.execute(&format!(
        "CREATE EXTENSION postgres_fdw; CREATE SCHEMA app;
         CREATE TYPE pair AS (a int, b int);
         CREATE FUNCTION pair_of(int) RETURNS pair LANGUAGE sql IMMUTABLE AS 'SELECT ROW($1, $1)::pair';
         CREATE CAST (int AS pair) WITH FUNCTION pair_of(int) AS ASSIGNMENT;
         CREATE CAST (pair AS text) WITH INOUT;
         CREATE FUNCTION pair_sum(pair, pair) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT ($1).a + ($2).b';
         CREATE OPERATOR ## (LEFTARG = pair, RIGHTARG = pair, FUNCTION = pair_sum, COMMUTATOR = ##);
         CREATE FUNCTION app.same(int, int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1 = $2';
         CREATE OPERATOR app.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = app.same, NEGATOR = OPERATOR(app.!==), RESTRICT = eqsel, JOIN = eqjoinsel, HASHES);
         CREATE TEXT SEARCH DICTIONARY app.my_simple (TEMPLATE = simple, STOPWORDS = english, ACCEPT = false);
         CREATE TEXT SEARCH CONFIGURATION my_english (PARSER = default);
         ALTER TEXT SEARCH CONFIGURATION my_english ADD MAPPING FOR asciiword, word WITH app.my_simple, english_stem;
         CREATE TEXT SEARCH CONFIGURATION app.copied (COPY = english);
         CREATE TABLE docs (id int PRIMARY KEY, body text, tsv tsvector GENERATED ALWAYS AS (to_tsvector('public.my_english', body)) STORED) TABLESPACE {tag};
         CREATE INDEX docs_tsv ON docs USING gin (tsv) TABLESPACE {tag};
         ALTER TABLE docs ADD CONSTRAINT docs_body UNIQUE (body) USING INDEX TABLESPACE {tag};
         INSERT INTO docs (id, body) VALUES (1, 'the quick brown foxes'), (2, 'jumped over the lazy dogs');
         CREATE SERVER remote FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'db.example', dbname 'shop', port '5433');
         CREATE USER MAPPING FOR PUBLIC SERVER remote OPTIONS (user 'reader', password 'not-in-any-backup');
         CREATE USER MAPPING FOR postgres SERVER remote OPTIONS (user 'admin');
         CREATE FOREIGN TABLE app.remote_items (id int OPTIONS (column_name 'item_id') NOT NULL, name text COLLATE \"C\" DEFAULT 'none') SERVER remote OPTIONS (schema_name 'public', table_name 'items');
         CREATE COLLATION app.nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
         CREATE FUNCTION app.rev_cmp(int, int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT btint4cmp($2, $1)';
         CREATE OPERATOR CLASS app.int_desc_ops FOR TYPE int USING btree AS OPERATOR 1 >, OPERATOR 2 >=, OPERATOR 3 =, OPERATOR 4 <=, OPERATOR 5 <, FUNCTION 1 app.rev_cmp(int, int);
         CREATE INDEX docs_id_desc ON docs (id app.int_desc_ops);
         CREATE PUBLICATION docs_feed FOR TABLE docs;"
    ))
    .await;
    // Owned by a role of their own, one granted the server and a column of the foreign table.
    src.execute(&format!(
        "CREATE ROLE {tag}_keeper NOLOGIN SUPERUSER; CREATE ROLE {tag}_user NOLOGIN;
         ALTER COLLATION app.nocase OWNER TO {tag}_keeper; ALTER OPERATOR app.=== (int, int) OWNER TO {tag}_keeper;
         ALTER TEXT SEARCH CONFIGURATION my_english OWNER TO {tag}_keeper; ALTER TEXT SEARCH DICTIONARY app.my_simple OWNER TO {tag}_keeper;
         ALTER SERVER remote OWNER TO {tag}_keeper; GRANT USAGE ON FOREIGN SERVER remote TO {tag}_user;
         ALTER FOREIGN TABLE app.remote_items OWNER TO {tag}_keeper; GRANT SELECT (name) ON app.remote_items TO {tag}_user;
         ALTER PUBLICATION docs_feed OWNER TO {tag}_keeper;"
    ))
    .await;
    let repo = repo_with_password("pw");
    let out = repo.backup(SourceSpec::Postgres { url: src.url() }).await;
    assert!(out.warnings.iter().any(|w| w == "not in this backup: 1 user mapping passwords (a backup keeps no secret of another server: set them again after a restore) (public on server remote)"), "{:?}", out.warnings);
    assert!(!out.warnings.iter().any(|w| w.starts_with("not in this backup (")), "everything else is carried: {:?}", out.warnings);
    // The source as the backup has it, for the comparisons.
    src.execute("ALTER USER MAPPING FOR PUBLIC SERVER remote OPTIONS (DROP password)").await;
    let spaces = "SELECT c.relname::text, coalesce(sp.spcname::text, '') FROM pg_class c LEFT JOIN pg_tablespace sp ON sp.oid = c.reltablespace WHERE c.relname IN ('docs', 'docs_tsv', 'docs_body', 'docs_pkey') ORDER BY 1";
    let read = async |db: &ScratchDb| -> (Vec<(String, String)>, Vec<String>) {
        let mut c = PgConnection::connect(&db.url()).await.expect("connect");
        let spaces: Vec<(String, String)> = sqlx::query_as(spaces).fetch_all(&mut c).await.expect("tablespaces");
        let found: Vec<String> = sqlx::query_scalar("SELECT id || ':' || (tsv @@ to_tsquery('public.my_english', 'fox')) FROM docs ORDER BY id").fetch_all(&mut c).await.expect("search");
        (spaces, found)
    };
    let (src_spaces, src_found) = read(&src).await;
    assert_eq!(src_spaces, vec![("docs".into(), tag.clone()), ("docs_body".into(), tag.clone()), ("docs_pkey".into(), String::new()), ("docs_tsv".into(), tag.clone())]);
    for jobs in [1, 3] {
        let dst = ScratchDb::create().await;
        let mut req = RestoreRequest::new(repo.path(), dst.url());
        req.jobs = jobs;
        if jobs > 1 {
            vacate(&dst).await;
            req.create = true;
        }
        run(&repo, &req).await.unwrap_or_else(|e| panic!("restore with {jobs} connections: {}", e.message));
        assert_eq!(pg_dump(&src, &["--schema-only"], false), pg_dump(&dst, &["--schema-only"], false), "the same schema ({jobs} connections)");
        assert_eq!(read(&dst).await, (src_spaces.clone(), src_found.clone()), "the same tablespaces and text search ({jobs} connections)");
        if jobs == 3 {
            // Over itself: --clean drops what is there (casts, servers, text search objects too).
            req.clean = true;
            req.create = false;
            run(&repo, &req).await.unwrap_or_else(|e| panic!("restore with --clean: {}", e.message));
            assert_eq!(pg_dump(&src, &["--schema-only"], false), pg_dump(&dst, &["--schema-only"], false), "the same schema after --clean");
        }
    }
    // Owners and grants, when asked.
    let owners = "SELECT 'collation ' || collname || ' ' || pg_get_userbyid(collowner) FROM pg_collation WHERE collname = 'nocase' \
        UNION ALL SELECT 'operator ' || oid::regoperator || ' ' || pg_get_userbyid(oprowner) FROM pg_operator WHERE oprname = '===' \
        UNION ALL SELECT 'config ' || cfgname || ' ' || pg_get_userbyid(cfgowner) FROM pg_ts_config WHERE cfgname = 'my_english' \
        UNION ALL SELECT 'dictionary ' || dictname || ' ' || pg_get_userbyid(dictowner) FROM pg_ts_dict WHERE dictname = 'my_simple' \
        UNION ALL SELECT 'server ' || srvname || ' ' || pg_get_userbyid(srvowner) || ' ' || srvacl::text FROM pg_foreign_server \
        UNION ALL SELECT 'foreign table ' || relname || ' ' || pg_get_userbyid(relowner) || ' ' || coalesce((SELECT attacl::text FROM pg_attribute WHERE attrelid = c.oid AND attname = 'name'), '-') FROM pg_class c WHERE relkind = 'f' \
        UNION ALL SELECT 'publication ' || pubname || ' ' || pg_get_userbyid(pubowner) FROM pg_publication ORDER BY 1";
    let owned = async |db: &ScratchDb| -> Vec<String> {
        let mut c = PgConnection::connect(&db.url()).await.expect("connect");
        sqlx::query_scalar(owners).fetch_all(&mut c).await.expect("owners")
    };
    let expected = owned(&src).await;
    assert_eq!(expected.len(), 7, "{expected:?}");
    assert!(expected.iter().all(|l| l.contains(&format!("{tag}_keeper"))), "{expected:?}");
    let dst = ScratchDb::create().await;
    let mut req = RestoreRequest::new(repo.path(), dst.url());
    req.owners = true;
    req.privileges = true;
    run(&repo, &req).await.unwrap_or_else(|e| panic!("restore with owners and privileges: {}", e.message));
    assert_eq!(owned(&dst).await, expected, "owners and grants as in the source");
    drop(dst);
    // A target without the tablespace (renamed while the test runs): in the plan, refused, then
    // made in the default tablespace when asked.
    sqlx::raw_sql(AssertSqlSafe(format!("ALTER TABLESPACE {tag} RENAME TO {tag}_away"))).execute(&mut admin).await.expect("rename");
    let dst = ScratchDb::create().await;
    let mut req = RestoreRequest::new(repo.path(), dst.url());
    let p = plan(&repo, &req).await.expect("plan");
    assert!(p.unsupported.iter().any(|u| u.starts_with(&format!("tablespace {tag} holds table public.docs, ")) && u.contains("index docs_tsv") && u.contains("constraint docs_body on public.docs")), "{:?}", p.unsupported);
    let refused = run(&repo, &req).await.expect_err("refused");
    assert!(refused.message.contains("--skip-unsupported"), "{}", refused.message);
    req.skip_unsupported = true;
    run(&repo, &req).await.expect("restored in the default tablespace");
    let (dst_spaces, dst_found) = read(&dst).await;
    assert!(dst_spaces.iter().all(|(_, s)| s.is_empty()), "{dst_spaces:?}");
    assert_eq!(dst_found, src_found);
    sqlx::raw_sql(AssertSqlSafe(format!("ALTER TABLESPACE {tag}_away RENAME TO {tag}"))).execute(&mut admin).await.expect("rename back");
    drop((src, dst));
    for r in ["keeper", "user"] {
        let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP ROLE IF EXISTS {tag}_{r}"))).execute(&mut admin).await;
    }
    sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLESPACE IF EXISTS {tag}"))).execute(&mut admin).await.expect("drop the tablespace");
}


/// An extension's configuration table (`pg_extension_config_dump`, as pg_cron's job list or
/// pg_partman's settings): the rows the application added are in the backup — its own, which
/// `CREATE EXTENSION` makes, are not — and a full restore puts them back beside the extension's,
/// with the sequence's value, on one connection and on several, and over itself with --clean
/// (the target's rows of the application replaced, not doubled). The test installs a small
/// extension of its own into the server's extension folder (skipped where it cannot write there).
#[tokio::test(flavor = "multi_thread")]
async fn an_extensions_configuration_rows_are_restored() {
    let mut admin = PgConnection::connect(&format!("{}/postgres", crate::support::pg_base())).await.expect("connect");
    let share: String = sqlx::query_scalar("SELECT setting FROM pg_config WHERE name = 'SHAREDIR'").fetch_one(&mut admin).await.expect("sharedir");
    let dir = std::path::Path::new(&share).join("extension");
    let control = dir.join("safehold_cfgtest.control");
    let script = dir.join("safehold_cfgtest--1.0.sql");
    let written = std::fs::write(&control, "comment = 'a configuration table, for Safehold''s tests'\ndefault_version = '1.0'\nrelocatable = false\nschema = public\n").and_then(|_| {
        std::fs::write(
            &script,
            "CREATE TABLE jobs (id serial PRIMARY KEY, name text NOT NULL UNIQUE, schedule text, system boolean NOT NULL DEFAULT false);\n\
             INSERT INTO jobs (name, schedule, system) VALUES ('vacuum the queue', '*/5 * * * *', true);\n\
             SELECT pg_catalog.pg_extension_config_dump('jobs', 'WHERE NOT system');\n\
             SELECT pg_catalog.pg_extension_config_dump('jobs_id_seq', '');\n",
        )
    });
    if let Err(e) = written {
        eprintln!("skipped: cannot install a test extension into {} ({e})", dir.display());
        return;
    }
    let src = ScratchDb::create().await;
    src.execute("CREATE EXTENSION safehold_cfgtest; INSERT INTO jobs (name, schedule) VALUES ('nightly report', '0 2 * * *'), ('hourly sync', '0 * * * *'); CREATE TABLE app (id int PRIMARY KEY)").await;
    let repo = repo_with_password("pw");
    let out = repo.backup(SourceSpec::Postgres { url: src.url() }).await;
    assert!(!out.warnings.iter().any(|w| w.contains("configuration")), "carried, not named: {:?}", out.warnings);
    let jobs = async |db: &ScratchDb| -> (Vec<String>, i64) {
        let mut c = PgConnection::connect(&db.url()).await.expect("connect");
        let rows: Vec<String> = sqlx::query_scalar("SELECT id || ' ' || name || ' ' || coalesce(schedule, '-') || ' ' || system FROM jobs ORDER BY id").fetch_all(&mut c).await.expect("jobs");
        let next: i64 = sqlx::query_scalar("SELECT nextval('jobs_id_seq')").fetch_one(&mut c).await.expect("nextval");
        (rows, next)
    };
    let expected = jobs(&src).await;
    assert_eq!(expected.0.len(), 3, "{expected:?}");
    for n in [1, 2] {
        let dst = ScratchDb::create().await;
        let mut req = RestoreRequest::new(repo.path(), dst.url());
        req.jobs = n;
        if n > 1 {
            vacate(&dst).await;
            req.create = true;
        }
        run(&repo, &req).await.unwrap_or_else(|e| panic!("restore with {n} connections: {}", e.message));
        assert_eq!(jobs(&dst).await, expected, "the extension's row, the application's rows and the sequence ({n} connections)");
        if n == 2 {
            req.clean = true;
            req.create = false;
            run(&repo, &req).await.unwrap_or_else(|e| panic!("restore with --clean: {}", e.message));
            // nextval above moved both sequences by one more.
            let (rows, _) = jobs(&dst).await;
            assert_eq!(rows, expected.0, "replaced, not doubled");
        }
    }
    // A role that may read the application's tables but not the extension's: the table and its
    // sequence are left out, each said, and the backup goes on.
    let reader = format!("safehold_cfgreader_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    src.execute(&format!("CREATE ROLE {reader} LOGIN; GRANT SELECT ON app TO {reader}")).await;
    let limited = repo.backup(SourceSpec::Postgres { url: src.url().replacen("postgres@", &format!("{reader}@"), 1) }).await;
    assert!(limited.warnings.iter().any(|w| w.starts_with("the configuration table public.jobs of extension safehold_cfgtest is not in this backup")), "{:?}", limited.warnings);
    assert!(limited.warnings.iter().any(|w| w.starts_with("the configuration sequence public.jobs_id_seq")), "{:?}", limited.warnings);
    drop(src);
    let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP ROLE IF EXISTS {reader}"))).execute(&mut admin).await;
    let _ = std::fs::remove_file(&control);
    let _ = std::fs::remove_file(&script);
}
