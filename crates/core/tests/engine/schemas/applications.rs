//! Two open-source applications' production schemas, taken from package registries at set-up
//! (scripts/deps.sh): **pretix** (a multi-tenant ticketing SaaS: 155 tables, 317 foreign keys,
//! tenants `pretixbase_organizer`, events and their orders two and three hops down; its Django
//! migrations applied once, the schema kept in the tools cache) and **Zabbix**'s server schema
//! from Debian (173 tables, 226 foreign keys; a host is the tenant; ids made by the application,
//! not the database). Each is filled by a generator that reads only the catalogs
//! ([`super::filler`]) and run through every path for one tenant, compared exactly.

use std::path::PathBuf;
use std::process::Command;

use safehold_core::migrate::{self, Endpoints, MigrationSpec, MigrationType, Resolution};
use safehold_core::restore::{self, RestoreRequest, RestoreType};
use safehold_core::source::{no_progress, CancelToken, SourceSpec};

use super::gen::Schema;
use super::{compare, exec_all, filler, repo, section, Repo};
use crate::support::{pg_base, ScratchDb};

fn apps() -> PathBuf {
    std::env::var("SAFEHOLD_APPS").map(PathBuf::from).unwrap_or_else(|_| dirs_home().join(".cache/safehold/apps"))
}

fn dirs_home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
}

fn psql_file(db: &ScratchDb, file: &std::path::Path) {
    let out = Command::new("psql").args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url(), "-f"]).arg(file).output().expect("psql");
    assert!(out.status.success(), "loading {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
}

/// Zabbix's schema, from Debian's package (scripts/deps.sh fetched it).
fn zabbix_schema() -> PathBuf {
    let gz = apps().join("zabbix/schema.sql.gz");
    assert!(gz.exists(), "{} is missing: run scripts/deps.sh test (it fetches Debian's zabbix-server-pgsql)", gz.display());
    let sql = apps().join("zabbix/schema.sql");
    if !sql.exists() {
        let out = Command::new("gzip").args(["-dkf"]).arg(&gz).output().expect("gzip");
        assert!(out.status.success(), "gunzip: {}", String::from_utf8_lossy(&out.stderr));
    }
    sql
}

/// pretix's schema: its migrations applied once into a database, then kept as SQL.
async fn pretix_schema() -> PathBuf {
    let dir = apps().join("pretix");
    let python = dir.join("bin/python");
    assert!(python.exists(), "{} is missing: run scripts/deps.sh test (it installs pretix from PyPI)", python.display());
    let sql = dir.join("schema-2026.8.0.sql");
    if sql.exists() {
        return sql;
    }
    let db = ScratchDb::create().await;
    let url = url::Url::parse(&db.url()).expect("url");
    let cfg = dir.join("pretix-test.cfg");
    std::fs::create_dir_all(dir.join("data")).expect("data dir");
    std::fs::write(
        &cfg,
        format!(
            "[database]\nbackend=postgresql\nname={}\nuser={}\nhost={}\nport={}\n[pretix]\ndatadir={}\n",
            db.name,
            url.username(),
            url.host_str().unwrap_or("127.0.0.1"),
            url.port().unwrap_or(5432),
            dir.join("data").display()
        ),
    )
    .expect("config");
    let out = Command::new(&python).args(["-m", "pretix", "migrate"]).env("PRETIX_CONFIG_FILE", &cfg).output().expect("pretix migrate");
    assert!(out.status.success(), "pretix migrate: {}", String::from_utf8_lossy(&out.stderr));
    let dump = Command::new("pg_dump").args(["--schema-only", "--no-owner", "--no-privileges", &db.url()]).output().expect("pg_dump");
    assert!(dump.status.success(), "pg_dump: {}", String::from_utf8_lossy(&dump.stderr));
    std::fs::write(&sql, &dump.stdout).expect("keep the schema");
    sql
}

async fn backup(r: &Repo, db: &ScratchDb, s: &Schema) -> PathBuf {
    let mut req = safehold_core::backup::BackupRequest::new(SourceSpec::Postgres { url: db.url() });
    req.tenant_column = s.tenant_column.clone();
    req.tenants_table = s.tenants_table.clone();
    PathBuf::from(safehold_core::backup::run(&r.repo, &r.mk, &req, &CancelToken::new(), &no_progress()).await.expect("backup").archive)
}

fn tenant_request(db: &ScratchDb, s: &Schema, tenant: &str) -> RestoreRequest {
    let mut req = RestoreRequest::new(PathBuf::new(), db.url());
    req.restore_type = RestoreType::TenantOnly;
    req.tenant_id = Some(tenant.into());
    req.tenant_column = s.tenant_column.clone();
    req.tenants_table = s.tenants_table.clone();
    req.safety_backup = false;
    req
}

/// Deletes and changes one tenant's rows in every table that has the tenant column.
fn damage(s: &Schema, tenant: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in s.tables.iter().filter(|t| t.cols.iter().any(|c| c.name == s.tenant_column)) {
        out.push(format!("DELETE FROM {} WHERE {}::text = {} AND ctid IN (SELECT ctid FROM {0} WHERE {1}::text = {2} LIMIT 1)", t.qualified(), filler::qi(&s.tenant_column), super::gen::ql(tenant)));
    }
    out
}

/// Every path for one tenant: full round trip, tenant restore in place, export and import, a
/// copy into another database of the schema (its shared rows put there by a selective restore),
/// and — where the database makes the keys — a copy within the database and a merge.
async fn every_path(name: &str, schema_sql: &std::path::Path, tenants_table: &str, tenant_column: &str, keys_made_by_the_database: bool) {
    let r = repo();
    let db = ScratchDb::create().await;
    psql_file(&db, schema_sql);
    let filled = filler::fill(&db.url(), tenants_table, tenant_column, 3, 8, 7).await;
    assert!(filled.tenants.len() == 3 && filled.rows > 300, "{name}: the filler made {} rows for {:?}", filled.rows, filled.tenants);
    let s = filler::describe(&db.url(), tenants_table, tenant_column, filled.tenants.clone()).await;
    let archive = backup(&r, &db, &s).await;

    // 1. Full round trip (the parallel restore into a new database).
    let copy = ScratchDb { name: format!("safehold_test_{}", uuid::Uuid::new_v4().simple()), base: crate::support::pg_base() };
    safehold_core::source::postgres::create_database(&copy.url()).await.expect("create");
    restore::restore_chain(r.chain(&archive), &SourceSpec::Postgres { url: copy.url() }, 2, true, &CancelToken::new(), &no_progress()).await.unwrap_or_else(|e| panic!("{name}: full restore: {e}"));
    let d = compare::diff(&compare::catalog(&db.url()).await, &compare::catalog(&copy.url()).await, 10);
    assert!(d.is_empty(), "{name}: catalog after the round trip:\n{}", d.join("\n"));
    assert_eq!(compare::rows(&db.url()).await, compare::rows(&copy.url()).await, "{name}: rows after the round trip");

    // 2. Tenant restore in place after the tenant was damaged: everything as backed up.
    let original = compare::rows(&db.url()).await;
    let a = filled.tenants[0].clone();
    let mut c = compare::connect(&db.url()).await;
    for st in damage(&s, &a) {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(st)).execute(&mut c).await;
    }
    restore::execute(&tenant_request(&db, &s, &a), r.opened(&archive), &Default::default(), &CancelToken::new(), &no_progress())
        .await
        .unwrap_or_else(|e| panic!("{name}: tenant restore in place: {e}"));
    assert!(compare::diff(&original, &compare::rows(&db.url()).await, 5).is_empty(), "{name}: after the tenant restore: {:?}", compare::diff(&original, &compare::rows(&db.url()).await, 5));

    // 3. A copy into another database of the same schema whose shared rows a selective restore
    //    put there.
    let other = ScratchDb::create().await;
    psql_file(&other, schema_sql);
    // (Tables whose rows a tenant owns one-to-one also hold rows everyone shares: restored whole,
    // the tenant's own rows among them are kept as they are when the copy meets them.)
    let shared: Vec<String> = s.tables.iter().filter(|t| matches!(t.link, super::gen::Link::Shared | super::gen::Link::Owned { .. })).map(|t| section(&t.schema, &t.name)).collect();
    let keep_target: std::collections::BTreeMap<String, Resolution> =
        s.tables.iter().filter(|t| matches!(t.link, super::gen::Link::Owned { .. })).map(|t| (section(&t.schema, &t.name), Resolution::KeepTarget)).collect();
    if !shared.is_empty() {
        let mut sel = RestoreRequest::new(PathBuf::new(), other.url());
        sel.restore_type = RestoreType::Selective;
        sel.tables = shared.clone();
        sel.safety_backup = false;
        restore::execute(&sel, r.opened(&archive), &Default::default(), &CancelToken::new(), &no_progress()).await.unwrap_or_else(|e| panic!("{name}: selective restore of the shared tables: {e}"));
        let (from, into) = (compare::rows(&db.url()).await, compare::rows(&other.url()).await);
        let mut c = compare::connect(&db.url()).await;
        for t in s.tables.iter().filter(|t| t.link == super::gen::Link::Shared) {
            let k: String = sqlx::query_scalar("SELECT quote_ident($1) || '.' || quote_ident($2)").bind(&t.schema).bind(&t.name).fetch_one(&mut c).await.expect("name");
            assert_eq!(from.get(&k), into.get(&k), "{name}: {k} after the selective restore");
        }
    }
    let b = filled.tenants[1].clone();
    let e = Endpoints { source_url: Some(db.url()), target_url: Some(other.url()), tenant_column: tenant_column.into(), tenants_table: tenants_table.into(), ..Default::default() };
    let spec = MigrationSpec {
        migration_type: Some(MigrationType::TenantCopy),
        source_tenant_ids: vec![b.clone()],
        target_tenant_id: (!keys_made_by_the_database).then(|| b.clone()),
        conflicts: keep_target.clone(),
        ..Default::default()
    };
    let out = migrate::execute(&spec, &e, true, &CancelToken::new(), &no_progress()).await.unwrap_or_else(|e| panic!("{name}: tenant copy into another database: {e}"));
    let new = out.target_tenant_id.expect("the tenant written");
    let (source, copied) = (compare::tenant_rows(&db.url(), &s).await, compare::tenant_rows(&other.url(), &s).await);
    same(&s, name, "the copy in another database", compare::canonical_tenant(&s, &source, &b, false), compare::canonical_tenant(&s, &copied, &new, false));

    // 4. Export → import into an empty database of the schema, with its shared rows.
    let dir = tempfile::tempdir().expect("tmp");
    let zip = dir.path().join("tenant.zip");
    let exp = MigrationSpec { migration_type: Some(MigrationType::DataExport), source_tenant_ids: vec![b.clone()], target_file: Some(zip.display().to_string()), ..Default::default() };
    migrate::execute(&exp, &Endpoints { target_url: None, ..e.clone() }, true, &CancelToken::new(), &no_progress()).await.unwrap_or_else(|e| panic!("{name}: export: {e}"));
    let third = ScratchDb::create().await;
    psql_file(&third, schema_sql);
    if !shared.is_empty() {
        let mut sel = RestoreRequest::new(PathBuf::new(), third.url());
        sel.restore_type = RestoreType::Selective;
        sel.tables = shared.clone();
        sel.safety_backup = false;
        restore::execute(&sel, r.opened(&archive), &Default::default(), &CancelToken::new(), &no_progress()).await.expect("shared rows");
    }
    let imp = MigrationSpec {
        migration_type: Some(MigrationType::DataImport),
        source_files: vec![zip.display().to_string()],
        source_tenant_ids: vec![b.clone()],
        target_tenant_id: (!keys_made_by_the_database).then(|| b.clone()),
        conflicts: keep_target.clone(),
        ..Default::default()
    };
    let out = migrate::execute(&imp, &Endpoints { source_url: None, target_url: Some(third.url()), ..e.clone() }, true, &CancelToken::new(), &no_progress())
        .await
        .unwrap_or_else(|e| panic!("{name}: import: {e}"));
    let imported = compare::tenant_rows(&third.url(), &s).await;
    same(&s, name, "export → import", compare::canonical_tenant(&s, &source, &b, false), compare::canonical_tenant(&s, &imported, &out.target_tenant_id.expect("tenant"), false));

    if keys_made_by_the_database {
        // 5. A copy within the database: validation names what must differ; with the unique
        //    values made anew, the copy equals the source tenant under new keys.
        let e = Endpoints { source_url: Some(db.url()), target_url: Some(db.url()), ..e.clone() };
        let mut spec = MigrationSpec { migration_type: Some(MigrationType::TenantCopy), source_tenant_ids: vec![b.clone()], ..Default::default() };
        let v = migrate::execute(&spec, &e, false, &CancelToken::new(), &no_progress()).await.unwrap_or_else(|e| panic!("{name}: validation of a copy: {e}"));
        for (t, p) in v.problems() {
            assert_eq!(p.kind, "unique_conflict", "{name}: {t}: {}", p.message);
            spec.conflicts.insert(t.to_string(), Resolution::KeepBoth);
        }
        // Values that must differ and cannot take a suffix: made anew.
        let v2 = migrate::execute(&spec, &e, false, &CancelToken::new(), &no_progress()).await.expect("validation with keep both");
        for (t, p) in v2.problems() {
            assert!(p.message.contains("no text column"), "{name}: {t}: {}", p.message);
            for c in &p.columns {
                spec.rules.push(safehold_core::migrate::rules::Rule { table: t.to_string(), column: c.clone(), action: safehold_core::migrate::rules::Action::Regenerate { template: None } });
            }
        }
        let v3 = migrate::execute(&spec, &e, false, &CancelToken::new(), &no_progress()).await.expect("validation with the resolutions");
        let left: Vec<String> = v3.problems().map(|(t, p)| format!("{t}: {} {:?}", p.message, p.samples)).collect();
        assert!(left.is_empty(), "{name}: with {:?} and {:?}, validation still finds {left:?}", spec.rules, spec.conflicts);
        let before = compare::tenant_rows(&db.url(), &s).await;
        let out = migrate::execute(&spec, &e, true, &CancelToken::new(), &no_progress()).await.unwrap_or_else(|e| panic!("{name}: tenant copy: {e}"));
        let after = compare::tenant_rows(&db.url(), &s).await;
        let new = out.target_tenant_id.expect("new tenant");
        same(&s, name, "the copy within the database", compare::canonical_tenant(&s, &before, &b, true), compare::canonical_tenant(&s, &after, &new, true));
        assert_eq!(compare::not_of_tenant(&before, &new, &[]), compare::not_of_tenant(&after, &new, &[]), "{name}: the copy changed other rows");

        // 6. The tenant restored from the backup as a copy, with the same resolutions.
        let mut req = tenant_request(&db, &s, &a);
        req.preserve_ids = false;
        req.on_conflict = spec.conflicts.clone();
        req.regenerate = spec.rules.iter().map(|r| format!("{}.{}", r.table, r.column)).collect();
        let before = compare::tenant_rows(&db.url(), &s).await;
        let out = restore::execute(&req, r.opened(&archive), &Default::default(), &CancelToken::new(), &no_progress()).await.unwrap_or_else(|e| panic!("{name}: tenant restore as a copy: {e}"));
        let after = compare::tenant_rows(&db.url(), &s).await;
        let copy_id = out.new_tenant_id.expect("the copy's id");
        same(&s, name, "the tenant restored as a copy", compare::canonical_tenant(&s, &before, &a, true), compare::canonical_tenant(&s, &after, &copy_id, true));

        // 7. A merge of the third tenant into the first, the third removed.
        let c3 = filled.tenants[2].clone();
        let before = compare::tenant_rows(&db.url(), &s).await;
        let mut merge = MigrationSpec { migration_type: Some(MigrationType::TenantMerge), source_tenant_ids: vec![c3.clone()], target_tenant_id: Some(a.clone()), remove_source_tenant: true, ..Default::default() };
        // Each conflict kept as the target has it; rows that then point at a kept row may meet
        // the target's own in turn: validated again until nothing is left.
        for _ in 0..6 {
            let v = migrate::execute(&merge, &e, false, &CancelToken::new(), &no_progress()).await.unwrap_or_else(|e| panic!("{name}: validation of a merge: {e}"));
            if v.is_clean() {
                break;
            }
            for (t, p) in v.problems() {
                assert_eq!(p.kind, "unique_conflict", "{name}: merge: {t}: {}", p.message);
                merge.conflicts.insert(t.to_string(), Resolution::KeepTarget);
            }
        }
        migrate::execute(&merge, &e, true, &CancelToken::new(), &no_progress()).await.unwrap_or_else(|e| panic!("{name}: merge: {e}"));
        let after = compare::tenant_rows(&db.url(), &s).await;
        assert!(compare::of_tenant(&after, &c3).iter().all(Vec::is_empty), "{name}: the merged tenant is gone");
        assert!(compare::of_tenant(&after, &a).iter().map(Vec::len).sum::<usize>() > compare::of_tenant(&before, &a).iter().map(Vec::len).sum::<usize>(), "{name}: the first tenant gained the third's rows");
        assert_eq!(compare::not_of_tenant(&before, &a, &[&c3]), compare::not_of_tenant(&after, &a, &[&c3]), "{name}: the merge changed other tenants' rows");
    }
    let _ = pg_base();
    exec_all(&db, &["SELECT 1".to_string()]).await.expect("still there");
}

/// The tenant's rows as the source has them and as the copy has them, per table.
fn same(s: &Schema, name: &str, what: &str, want: Vec<Vec<String>>, got: Vec<Vec<String>>) {
    let diffs: Vec<String> = s
        .tables
        .iter()
        .zip(want.iter().zip(&got))
        .filter(|(_, (w, g))| w != g)
        .take(3)
        .map(|(t, (w, g))| format!("{}.{}: {} rows in the source, {} in the copy\n    source: {:?}\n    copy:   {:?}", t.schema, t.name, w.len(), g.len(), w.iter().take(3).collect::<Vec<_>>(), g.iter().take(3).collect::<Vec<_>>()))
        .collect();
    assert!(diffs.is_empty(), "{name}: {what} differs:\n  {}", diffs.join("\n  "));
}

#[tokio::test(flavor = "multi_thread")]
async fn pretix_every_path_for_one_organizer() {
    let sql = pretix_schema().await;
    every_path("pretix", &sql, "pretixbase_organizer", "organizer_id", true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn zabbix_every_path_for_one_host() {
    every_path("zabbix", &zabbix_schema(), "hosts", "hostid", false).await;
}
