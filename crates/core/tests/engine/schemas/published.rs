//! The properties on schemas we did not write either: Pagila (a store is a tenant; a rental
//! belongs to a store through its inventory, a payment through its customer; the store and its
//! manager point at each other through NOT NULL keys; payments are partitioned) and the demo
//! platform copied into PostgreSQL.

use std::path::PathBuf;
use std::process::Command;

use safehold_core::migrate::{self, Endpoints, MigrationSpec, MigrationType};
use safehold_core::restore::{self, RestoreRequest, RestoreType};
use safehold_core::source::{no_progress, CancelToken, SourceSpec};

use super::{compare, exec_all, repo, Repo};
use crate::support::ScratchDb;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(rel)
}

async fn pagila() -> ScratchDb {
    let db = ScratchDb::create().await;
    for f in ["pagila/pagila-schema.sql", "pagila/pagila-data.sql"] {
        let out = Command::new("psql").args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url(), "-f"]).arg(fixture(f)).output().expect("psql");
        assert!(out.status.success(), "loading {f}: {}", String::from_utf8_lossy(&out.stderr));
    }
    db
}

async fn backup(r: &Repo, db: &ScratchDb, tenant_column: &str, tenants_table: &str) -> PathBuf {
    let mut req = safehold_core::backup::BackupRequest::new(SourceSpec::Postgres { url: db.url() });
    req.tenant_column = tenant_column.into();
    req.tenants_table = tenants_table.into();
    PathBuf::from(safehold_core::backup::run(&r.repo, &r.mk, &req, &CancelToken::new(), &no_progress()).await.expect("backup").archive)
}

fn tenant_request(db: &ScratchDb, tenant: &str, tenant_column: &str, tenants_table: &str) -> RestoreRequest {
    let mut req = RestoreRequest::new(PathBuf::new(), db.url());
    req.restore_type = RestoreType::TenantOnly;
    req.tenant_id = Some(tenant.into());
    req.tenant_column = tenant_column.into();
    req.tenants_table = tenants_table.into();
    req.safety_backup = false;
    req
}

#[tokio::test(flavor = "multi_thread")]
async fn pagila_one_store_restores_in_place_exactly_and_copies_with_the_reference_no_key_declares() {
    let r = repo();
    let db = pagila().await;
    let archive = backup(&r, &db, "store_id", "store").await;
    let original = compare::rows(&db.url()).await;

    // Store 1 damaged: payments of its customers gone, its customers changed, its unpaid
    // rentals gone, one of its staff renamed.
    exec_all(
        &db,
        // (Rows wholly the store's: a rental of store 1's inventory by store 2's customer or staff
        // is shared between the stores, nobody's own.)
        &["CREATE TEMP VIEW mine AS SELECT r.rental_id FROM rental r JOIN inventory i USING (inventory_id) JOIN customer c USING (customer_id) JOIN staff s ON s.staff_id = r.staff_id
             WHERE i.store_id = 1 AND c.store_id = 1 AND s.store_id = 1;
           DELETE FROM payment p WHERE p.payment_id % 3 = 0 AND p.customer_id IN (SELECT customer_id FROM customer WHERE store_id = 1)
             AND p.staff_id IN (SELECT staff_id FROM staff WHERE store_id = 1) AND (p.rental_id IS NULL OR p.rental_id IN (SELECT rental_id FROM mine));
           UPDATE customer SET email = 'damaged', activebool = NOT activebool WHERE store_id = 1;
           DELETE FROM rental r WHERE r.rental_id IN (SELECT rental_id FROM mine) AND r.rental_id % 5 = 0 AND NOT EXISTS (SELECT 1 FROM payment p WHERE p.rental_id = r.rental_id);
           UPDATE staff SET last_name = 'Damaged' WHERE store_id = 1;"
            .to_string()],
    )
    .await
    .expect("damage");
    assert_ne!(compare::rows(&db.url()).await, original);
    let req = tenant_request(&db, "1", "store_id", "store");
    let plan = restore::plan(&req, &r.opened(&archive), true, &CancelToken::new()).await.expect("the plan");
    let payment = plan.tables.iter().find(|t| t.table == "public.payment").expect("payments are one table, not one per partition");
    assert!(payment.inserted > 0, "{payment:?}");
    restore::execute(&req, r.opened(&archive), &Default::default(), &CancelToken::new(), &no_progress()).await.expect("tenant restore in place");
    assert_eq!(compare::rows(&db.url()).await, original, "store 1 is as backed up, and store 2 as it was");

    // A copy of store 2 in the same database: the store's manager is a staff member, referred
    // to by store.manager_staff_id, which no foreign key declares and a unique index covers.
    // Validation finds the conflict before writing and names the reference it infers; declared,
    // the copy's manager is its own staff member.
    let e = Endpoints { source_url: Some(db.url()), target_url: Some(db.url()), tenant_column: "store_id".into(), tenants_table: "store".into(), ..Default::default() };
    let mut spec = MigrationSpec { migration_type: Some(MigrationType::TenantCopy), source_tenant_ids: vec!["2".into()], ..Default::default() };
    let v = migrate::execute(&spec, &e, false, &CancelToken::new(), &no_progress()).await.expect("validation");
    let problems: Vec<String> = v.problems().map(|(t, p)| format!("{t}: {}", p.message)).collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("public.store (manager_staff_id)"), "{}", problems[0]);
    assert!(v.warnings.iter().any(|w| w.contains("--reference public.store.manager_staff_id=public.staff.staff_id")), "{:?}", v.warnings);
    let before = compare::rows(&db.url()).await;
    migrate::execute(&spec, &e, true, &CancelToken::new(), &no_progress()).await.expect_err("the copy stops at it");
    assert_eq!(compare::rows(&db.url()).await, before, "nothing was written");
    spec.references = vec!["store.manager_staff_id=staff.staff_id".into()];
    let out = migrate::execute(&spec, &e, true, &CancelToken::new(), &no_progress()).await.expect("the copy, with the reference declared");
    let new: i64 = out.target_tenant_id.clone().expect("a new store").parse().expect("an integer id");
    for t in ["public.rental", "public.payment"] {
        let r = out.tables.iter().find(|x| x.table == t).expect("copied");
        assert!(r.rows_written > 0 && r.rows_written == r.rows_read, "{t}: every row read is written: {r:?}");
    }
    let mut c = compare::connect(&db.url()).await;
    let (same_counts, own_manager): (bool, bool) = sqlx::query_as(
        "SELECT (SELECT array_agg(n ORDER BY t) FROM (SELECT 'c' t, count(*) n FROM customer WHERE store_id = 2 UNION ALL SELECT 's', count(*) FROM staff WHERE store_id = 2
                   UNION ALL SELECT 'i', count(*) FROM inventory WHERE store_id = 2) x)
              = (SELECT array_agg(n ORDER BY t) FROM (SELECT 'c' t, count(*) n FROM customer WHERE store_id = $1 UNION ALL SELECT 's', count(*) FROM staff WHERE store_id = $1
                   UNION ALL SELECT 'i', count(*) FROM inventory WHERE store_id = $1) y),
                EXISTS (SELECT 1 FROM store s JOIN staff m ON m.staff_id = s.manager_staff_id WHERE s.store_id = $1 AND m.store_id = $1)",
    )
    .bind(new as i32)
    .fetch_one(&mut c)
    .await
    .expect("compare");
    assert!(same_counts, "the copy has store 2's customers, staff and inventory");
    assert!(own_manager, "the copy's manager is a staff member of the copy");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_platform_in_postgresql_restores_one_tenant_exactly() {
    let r = repo();
    let dir = tempfile::tempdir().expect("tmp");
    let demo = dir.path().join("demo.db");
    safehold_core::demo::generate(&demo, 7).await.expect("the demo platform");
    let db = ScratchDb::create().await;
    safehold_core::demo::copy_to_postgres(&demo, &db.url()).await.expect("copied to PostgreSQL");
    let archive = backup(&r, &db, "tenant_id", "tenants").await;
    let original = compare::rows(&db.url()).await;
    let mut c = compare::connect(&db.url()).await;
    let tenant: String = sqlx::query_scalar("SELECT id::text FROM tenants ORDER BY id LIMIT 1").fetch_one(&mut c).await.expect("a tenant");
    // Every table with the tenant column loses the tenant's rows that nothing points at.
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.columns WHERE column_name = 'tenant_id' AND table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&mut c)
    .await
    .expect("tables");
    for t in &tables {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DELETE FROM {t} WHERE tenant_id::text = '{tenant}'"))).execute(&mut c).await;
    }
    let req = tenant_request(&db, &tenant, "tenant_id", "tenants");
    restore::execute(&req, r.opened(&archive), &Default::default(), &CancelToken::new(), &no_progress()).await.expect("tenant restore in place");
    assert_eq!(compare::rows(&db.url()).await, original, "the tenant is back exactly; the others as they were");
}


