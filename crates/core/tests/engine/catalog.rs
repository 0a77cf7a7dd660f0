use safehold_core::catalog::{self, MIGRATOR};
use sqlx::Row;

use crate::support::home;

const SPEC_TABLES: [&str; 5] =
    ["backup_configurations", "backup_executions", "restore_operations", "migration_jobs", "backup_storage"];

#[tokio::test]
async fn a_new_catalog_has_every_table_and_the_specs_role_permissions() {
    let h = home().await;
    for table in SPEC_TABLES.iter().chain(&["connections", "operators", "role_permissions", "audit_log"]) {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?")
            .bind(table)
            .fetch_one(&h.ctx.pool)
            .await
            .expect("query");
        assert_eq!(n, 1, "table {table} exists");
    }
    let grants: Vec<(String, String)> =
        sqlx::query_as("SELECT role_name, permission FROM role_permissions ORDER BY role_name, permission")
            .fetch_all(&h.ctx.pool)
            .await
            .expect("grants");
    let expected = [
        ("platform_operator", "backup:trigger_manual"),
        ("platform_operator", "backup:view_status"),
        ("read_only_admin", "backup:view_history"),
        ("super_admin", "backup:manage_all"),
        ("super_admin", "backup:manage_storage"),
        ("super_admin", "backup:restore_data"),
        ("super_admin", "backup:trigger_manual"),
    ];
    let got: Vec<(&str, &str)> = grants.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(got, expected, "role_permissions holds exactly the spec's rows");
}

#[tokio::test]
async fn the_spec_columns_keep_their_defaults_and_check_constraints() {
    let h = home().await;
    sqlx::query("INSERT INTO backup_executions (id, backup_type, status) VALUES ('e1', 'full', 'pending')")
        .execute(&h.ctx.pool)
        .await
        .expect("insert with defaults");
    let row = sqlx::query("SELECT metadata, started_at FROM backup_executions WHERE id = 'e1'")
        .fetch_one(&h.ctx.pool)
        .await
        .expect("row");
    assert_eq!(row.get::<String, _>(0), "{}", "metadata defaults to an empty JSON object");
    let started: String = row.get(1);
    assert!(chrono::DateTime::parse_from_rfc3339(&started).is_ok(), "started_at defaults to an RFC 3339 time, got {started}");

    let bad_status = sqlx::query("INSERT INTO backup_executions (id, backup_type, status) VALUES ('e2', 'full', 'done')")
        .execute(&h.ctx.pool)
        .await;
    assert!(bad_status.is_err(), "status outside the spec's list is refused");
    let bad_type = sqlx::query(
        "INSERT INTO backup_configurations (id, configuration_name, backup_type, schedule_cron, storage_location, created_by) \
         VALUES ('c', 'n', 'weekly', '* * * * *', 's', ?)",
    )
    .bind(catalog::LOCAL_OPERATOR_ID)
    .execute(&h.ctx.pool)
    .await;
    assert!(bad_type.is_err(), "backup_type outside full/incremental/differential is refused");
    let bad_json = sqlx::query("INSERT INTO migration_jobs (id, migration_name, migration_type, status, initiated_by, mapping_configuration) VALUES ('m', 'n', 'tenant_copy', 'pending', ?, 'not json')")
        .bind(catalog::LOCAL_OPERATOR_ID)
        .execute(&h.ctx.pool)
        .await;
    assert!(bad_json.is_err(), "JSON columns refuse text that is not JSON");
}

#[tokio::test]
async fn a_catalog_of_the_previous_version_is_migrated_and_keeps_its_data() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join(catalog::CATALOG_FILE);
    {
        // Build the catalog as the previous version left it: every migration but the newest.
        let pool = catalog::connect(&path).await.expect("connect");
        let mut previous = sqlx::migrate::Migrator::new(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations")))
            .await
            .expect("read migrations");
        let all = previous.migrations.len();
        assert!(all >= 2, "there is a previous version to migrate from");
        previous.migrations = std::borrow::Cow::Owned(previous.migrations[..all - 1].to_vec());
        previous.run(&pool).await.expect("apply the previous version");
        sqlx::query(
            "INSERT INTO backup_storage (id, storage_name, storage_type) VALUES ('s1', 'Old storage', 'local')",
        )
        .execute(&pool)
        .await
        .expect("old storage");
        sqlx::query(
            "INSERT INTO backup_configurations (id, configuration_name, backup_type, schedule_cron, storage_location, created_by) \
             VALUES ('c1', 'Old nightly', 'full', '0 1 * * *', 'Old storage', ?)",
        )
        .bind(catalog::LOCAL_OPERATOR_ID)
        .execute(&pool)
        .await
        .expect("old configuration");
        sqlx::query("INSERT INTO backup_executions (id, configuration_id, backup_type, status) VALUES ('e1', 'c1', 'full', 'completed')")
            .execute(&pool)
            .await
            .expect("old execution");
        pool.close().await;
    }
    let ctx = safehold_core::Ctx::open(dir.path()).await.expect("the current version opens the old catalog");
    let configs = safehold_core::configurations::list(&ctx).await.expect("list");
    assert_eq!(configs.len(), 1, "the old configuration survived the migration");
    assert_eq!(configs[0].configuration_name, "Old nightly");
    assert_eq!(configs[0].schedule_description, "At 01:00, every day");
    let execs = safehold_core::history::executions(&ctx, 10).await.expect("executions");
    assert_eq!(execs.len(), 1, "the old execution survived");
    assert_eq!(execs[0].configuration_name.as_deref(), Some("Old nightly"));
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(&ctx.pool).await.expect("count");
    assert_eq!(usize::try_from(applied).expect("count"), MIGRATOR.migrations.len(), "every migration is now applied");
}

#[tokio::test]
async fn opening_a_catalog_twice_changes_nothing() {
    let h = home().await;
    let again = safehold_core::Ctx::open(h.dir.path()).await.expect("reopen");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM role_permissions").fetch_one(&again.pool).await.expect("count");
    assert_eq!(n, 7, "seed rows are not duplicated by a second start");
}

#[tokio::test]
async fn the_audit_log_is_append_only() {
    let h = home().await;
    catalog::audit(&h.ctx.pool, catalog::LOCAL_OPERATOR_ID, "test.action", "x", "success", None).await.expect("append");
    let update = sqlx::query("UPDATE audit_log SET outcome = 'failure'").execute(&h.ctx.pool).await;
    assert!(update.is_err(), "audit rows cannot be changed");
    let delete = sqlx::query("DELETE FROM audit_log").execute(&h.ctx.pool).await;
    assert!(delete.is_err(), "audit rows cannot be deleted");
}
