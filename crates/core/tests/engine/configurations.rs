use safehold_core::configurations::{self, BackupType, ConfigurationInput};
use safehold_core::{demo, ErrorCode};

use crate::support::{home, Home};

async fn with_demo() -> (Home, String) {
    let h = home().await;
    demo::ensure(&h.ctx, false).await.expect("demo");
    let conn = safehold_core::connections::list(&h.ctx).await.expect("connections").remove(0);
    (h, conn.id)
}

/// A valid configuration of the demo's storage (other tests reuse it).
pub(crate) fn input(name: &str, connection_id: &str) -> ConfigurationInput {
    ConfigurationInput {
        configuration_name: name.into(),
        backup_type: BackupType::Incremental,
        schedule_cron: "15 * * * *".into(),
        retention_days: 7,
        compression_enabled: true,
        encryption_enabled: true,
        storage_location: demo::DEMO_STORAGE.into(),
        secondary_storage: None,
        missed_runs: Default::default(),
        time_zone: None,
        includes_tenant_data: true,
        includes_system_data: false,
        includes_logs: false,
        is_active: true,
        continuous_protection: false,
        whole_server: false,
        exclude_databases: None,
        server_passwords: false,
        connection_id: connection_id.into(),
    }
}

async fn count(h: &Home, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&h.ctx.pool).await.expect("count")
}

#[tokio::test]
async fn a_valid_configuration_is_created_listed_and_audited() {
    let (h, conn) = with_demo().await;
    let created = configurations::create(&h.ctx, input("Hourly tenants", &conn)).await.expect("create");
    assert_eq!(created.schedule_description, "At minute 15 of every hour");
    assert_eq!(created.created_by, h.ctx.operator_id(), "created_by is the acting operator");
    let names: Vec<String> = configurations::list(&h.ctx).await.expect("list").into_iter().map(|c| c.configuration_name).collect();
    assert_eq!(names, ["Daily demo backup", "Hourly tenants"]);
    assert_eq!(count(&h, "SELECT count(*) FROM audit_log WHERE action = 'configuration.create' AND target = 'Hourly tenants'").await, 1);
    // Found by its name or by its id; an unknown one is named in the error.
    assert_eq!(configurations::find(&h.ctx, "Hourly tenants").await.expect("by name").id, created.id);
    assert_eq!(configurations::find(&h.ctx, &created.id).await.expect("by id").configuration_name, "Hourly tenants");
    let missing = configurations::find(&h.ctx, "Weekly").await.expect_err("unknown");
    assert!(missing.code == ErrorCode::NotFound && missing.message.contains("\"Weekly\""), "{missing:?}");
}

/// A new configuration starts from the engine's defaults (the app's form reads the same ones
/// from the generated bindings), into the default storage.
#[tokio::test]
async fn a_new_configuration_starts_from_the_engines_defaults_in_the_default_storage() {
    let (h, conn) = with_demo().await;
    let input = configurations::new_input(&h.ctx, "Nightly", &conn, "0 3 * * *").await.expect("new input");
    assert_eq!((input.storage_location.as_str(), input.retention_days, input.backup_type, input.includes_logs), (demo::DEMO_STORAGE, 30, BackupType::Full, false));
    assert_eq!((input.configuration_name.as_str(), input.schedule_cron.as_str(), input.connection_id.as_str()), ("Nightly", "0 3 * * *", conn.as_str()));
    let bindings = safehold_core::bindings::typescript();
    let line = bindings.lines().find(|l| l.starts_with("export const DEFAULT_CONFIGURATION_INPUT")).expect("the defaults are in the bindings");
    assert!(line.contains(r#""retention_days":30"#) && line.contains(r#""schedule_cron":"0 2 * * *""#), "{line}");
    configurations::create(&h.ctx, input).await.expect("the defaults make a valid configuration");
}

#[tokio::test]
async fn bad_input_is_refused_field_by_field_and_writes_nothing() {
    let (h, conn) = with_demo().await;
    let before = count(&h, "SELECT count(*) FROM backup_configurations").await;
    let audit_before = count(&h, "SELECT count(*) FROM audit_log").await;
    let cases: Vec<(ConfigurationInput, &str, &str)> = vec![
        (ConfigurationInput { schedule_cron: "every day".into(), ..input("A", &conn) }, "schedule_cron", "invalid cron line"),
        (ConfigurationInput { retention_days: 0, ..input("B", &conn) }, "retention_days", "at least 1 day"),
        (ConfigurationInput { retention_days: -5, ..input("C", &conn) }, "retention_days", "at least 1 day"),
        (input("daily DEMO backup", &conn), "configuration_name", "already exists"),
        (ConfigurationInput { configuration_name: "  ".into(), ..input("", &conn) }, "configuration_name", "needs a name"),
        (ConfigurationInput { storage_location: "Nowhere".into(), ..input("D", &conn) }, "storage_location", "no storage named \"Nowhere\""),
        (input("E", "no-such-connection"), "connection_id", "choose the connection"),
        (ConfigurationInput { whole_server: true, backup_type: BackupType::Full, ..input("G", &conn) }, "whole_server", "a whole server is a PostgreSQL server"),
        (ConfigurationInput { exclude_databases: Some(" scratch_*, ".into()), ..input("H", &conn) }, "exclude_databases", "left out of a server backup only"),
        (ConfigurationInput { server_passwords: true, ..input("I", &conn) }, "server_passwords", "kept by a server backup only"),
        (
            ConfigurationInput { includes_tenant_data: false, includes_system_data: false, includes_logs: false, ..input("F", &conn) },
            "includes_tenant_data",
            "must include something",
        ),
    ];
    for (bad, field, words) in cases {
        let err = configurations::create(&h.ctx, bad.clone()).await.expect_err(field);
        assert_eq!(err.code, ErrorCode::Validation);
        let f = err.fields.iter().find(|f| f.field == field).unwrap_or_else(|| panic!("{field} is named in {:?}", err.fields));
        assert!(f.message.contains(words), "{field}: {:?} says {words:?}", f.message);
    }
    assert_eq!(count(&h, "SELECT count(*) FROM backup_configurations").await, before, "nothing was written");
    assert_eq!(count(&h, "SELECT count(*) FROM audit_log").await, audit_before, "nothing was audited as done");
}

#[tokio::test]
async fn a_configuration_is_edited_deactivated_and_deleted_keeping_its_history() {
    let (h, conn) = with_demo().await;
    let c = configurations::create(&h.ctx, input("Edit me", &conn)).await.expect("create");
    let edited = configurations::update(&h.ctx, &c.id, ConfigurationInput { schedule_cron: "0 5 * * *".into(), ..input("Edited", &conn) })
        .await
        .expect("update");
    assert_eq!((edited.configuration_name.as_str(), edited.schedule_description.as_str()), ("Edited", "At 05:00, every day"));
    // Its own name is not a conflict when editing.
    configurations::update(&h.ctx, &c.id, input("Edited", &conn)).await.expect("update keeping the name");
    let dup = configurations::update(&h.ctx, &c.id, input("Daily demo backup", &conn)).await.expect_err("duplicate");
    assert_eq!(dup.fields[0].field, "configuration_name");

    assert!(!configurations::set_active(&h.ctx, &c.id, false).await.expect("deactivate").is_active);
    assert!(configurations::set_active(&h.ctx, &c.id, true).await.expect("activate").is_active);

    sqlx::query("INSERT INTO backup_executions (id, configuration_id, backup_type, status) VALUES ('x1', ?, 'full', 'completed')")
        .bind(&c.id)
        .execute(&h.ctx.pool)
        .await
        .expect("execution");
    configurations::delete(&h.ctx, &c.id).await.expect("delete");
    assert_eq!(configurations::get(&h.ctx, &c.id).await.expect_err("gone").code, ErrorCode::NotFound);
    assert_eq!(
        count(&h, "SELECT count(*) FROM backup_executions WHERE id = 'x1' AND configuration_id IS NULL").await,
        1,
        "the execution history stays after its configuration is deleted"
    );
}

#[tokio::test]
async fn a_configuration_runs_in_its_own_time_zone() {
    let (h, conn) = with_demo().await;
    let bad = ConfigurationInput { time_zone: Some("Mars/Olympus_Mons".into()), ..input("Mars", &conn) };
    let errors = configurations::validate(&h.ctx, &bad, None).await.expect("validate");
    assert!(errors.iter().any(|e| e.field == "time_zone" && e.message.contains("IANA")), "{errors:?}");
    let kiritimati = ConfigurationInput { schedule_cron: "0 12 * * *".into(), time_zone: Some("Pacific/Kiritimati".into()), ..input("Noon at UTC+14", &conn) };
    configurations::create(&h.ctx, kiritimati).await.expect("create");
    let listed = safehold_core::scheduler::list(&h.ctx).await.expect("list");
    let noon = listed.iter().find(|s| s.configuration_name == "Noon at UTC+14").expect("listed");
    let next = noon.next_run.clone().expect("active");
    assert!(next.ends_with("T12:00:00+14:00"), "noon in Kiritimati: {next}");
    assert_eq!(noon.time_zone, "Pacific/Kiritimati");
    let preview = safehold_core::cron::preview_in("0 12 * * *", Some("Pacific/Kiritimati"), 2).expect("preview");
    assert!(preview.next_runs.iter().all(|r| r.ends_with("T12:00:00+14:00")) && preview.time_zone.starts_with("Pacific/Kiritimati, UTC+14:00"), "{preview:?}");
}
