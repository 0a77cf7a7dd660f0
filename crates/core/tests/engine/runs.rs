//! Backups run from the catalog (what Run Now does), through the real keychain for the
//! repository secret. scripts/test.sh provides the Secret Service (SAFEHOLD_TEST_KEYCHAIN=1).

use std::path::Path;
use std::sync::Arc;

use safehold_core::archive::ArchiveReader;
use safehold_core::configurations::{self, ConfigurationInput};
use safehold_core::history::JobStatus;
use safehold_core::secrets::{Keychain, SecretStore};
use safehold_core::source::CancelToken;
use safehold_core::{demo, runs, Ctx};

pub(crate) async fn keychain_home() -> Option<(tempfile::TempDir, Ctx)> {
    if std::env::var_os("SAFEHOLD_TEST_KEYCHAIN").is_none() {
        eprintln!("SAFEHOLD_TEST_KEYCHAIN is not set (scripts/test.sh runs these with a real Secret Service): skipped");
        return None;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let kc: Arc<dyn SecretStore> = Arc::new(Keychain::with_service(format!("safehold-test-{}", uuid::Uuid::new_v4())));
    let ctx = Ctx::open_with(dir.path(), kc).await.expect("ctx");
    Some((dir, ctx))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configuration_run_records_what_it_counted_and_a_verifiable_archive() {
    let Some((_dir, ctx)) = keychain_home().await else { return };
    let report = demo::ensure(&ctx, false).await.expect("demo");
    let config = configurations::list(&ctx).await.expect("configs").remove(0);
    let id = runs::enqueue(&ctx, &config.id).await.expect("enqueue");
    let pending = safehold_core::history::executions(&ctx, 10).await.expect("list");
    assert_eq!(pending[0].status, JobStatus::Pending);
    let done = runs::run(&ctx, &id, &CancelToken::new()).await.expect("run");
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error_message);
    assert_eq!(done.table_count, Some(5));
    assert_eq!(done.tenant_count, Some(50));
    assert_eq!(done.record_count, Some(report.rows), "rows counted, not estimated");
    let path = done.file_path.clone().expect("archive path");
    let q = safehold_core::verify::quick(Path::new(&path), done.checksum.as_deref()).expect("the archive matches the catalog's checksum");
    assert_eq!(Some(i64::try_from(q.bytes).expect("size")), done.compressed_size);
    // The run records whose key signed the archive, as the archive itself says.
    let stamp = ArchiveReader::open(Path::new(&path)).expect("open").header.writer.expect("a signed archive");
    let home_key = safehold_core::writers::WriterKey::for_home(&ctx.home).expect("the home's writer key");
    assert_eq!((done.metadata["writer"].as_str(), done.metadata["writer_key"].as_str()), (Some(stamp.name.as_str()), Some(stamp.public_key.as_str())), "{}", done.metadata);
    assert_eq!(stamp.public_key, home_key.public_hex(), "signed by this home's writer key");
    // The repository secret went to the keychain: a second run opens the same repository with it.
    let again = runs::run(&ctx, &runs::enqueue(&ctx, &config.id).await.expect("enqueue"), &CancelToken::new()).await.expect("run");
    assert_eq!(again.status, JobStatus::Completed, "{:?}", again.error_message);
    let a = ArchiveReader::open(Path::new(&path)).expect("open").header.repository_id;
    let b = ArchiveReader::open(Path::new(&again.file_path.expect("path"))).expect("open").header.repository_id;
    assert_eq!(a, b, "both backups are in the same repository");
}

/// A storage changes after it is added: made the default, taken out of use (backups into it are
/// refused with the reason, the default cannot be), a quota (cloud only), rotated credentials —
/// tried first, and refused with the old ones kept when they do not reach the storage; removing a
/// storage that is some configuration's second storage is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_storage_is_made_default_deactivated_given_a_quota_and_new_credentials() {
    use safehold_core::storage::{self, StorageChange, StorageCredentials};
    let Some((dir, ctx)) = keychain_home().await else { return };
    demo::ensure(&ctx, false).await.expect("demo");
    let config = configurations::list(&ctx).await.expect("configs").remove(0);
    let spare = storage::add_local(&ctx, "Spare disk", &dir.path().join("spare"), false).await.expect("a second storage");

    let err = storage::update(&ctx, demo::DEMO_STORAGE, StorageChange { is_active: Some(false), ..Default::default() }).await.expect_err("the default");
    assert!(err.message.contains("make another storage the default first"), "{}", err.message);
    let s = storage::update(&ctx, "Spare disk", StorageChange { make_default: true, ..Default::default() }).await.expect("make default");
    assert!(s.is_default);
    assert!(!storage::find(&ctx, demo::DEMO_STORAGE).await.expect("find").is_default, "one default at a time");
    let s = storage::update(&ctx, demo::DEMO_STORAGE, StorageChange { is_active: Some(false), ..Default::default() }).await.expect("deactivate");
    assert!(!s.is_active);
    let refused = runs::run(&ctx, &runs::enqueue(&ctx, &config.id).await.expect("enqueue"), &CancelToken::new()).await.expect("recorded");
    assert_eq!(refused.status, JobStatus::Failed);
    assert!(refused.error_message.as_deref().unwrap_or_default().contains("is inactive"), "{:?}", refused.error_message);
    let err = storage::update(&ctx, demo::DEMO_STORAGE, StorageChange { make_default: true, ..Default::default() }).await.expect_err("an inactive default");
    assert!(err.message.contains("must be active"), "{}", err.message);
    storage::update(&ctx, demo::DEMO_STORAGE, StorageChange { is_active: Some(true), ..Default::default() }).await.expect("activate");
    let done = runs::run(&ctx, &runs::enqueue(&ctx, &config.id).await.expect("enqueue"), &CancelToken::new()).await.expect("run");
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error_message);
    let err = storage::update(&ctx, "Spare disk", StorageChange { quota_bytes: Some(1000), ..Default::default() }).await.expect_err("local quota");
    assert!(err.message.contains("filesystem"), "{}", err.message);

    // A configuration's second storage cannot be removed from under it.
    let mut input = config.to_input();
    input.secondary_storage = Some(spare.storage_name.clone());
    configurations::update(&ctx, &config.id, input).await.expect("second storage");
    let err = storage::remove(&ctx, "Spare disk").await.expect_err("in use as the second storage");
    assert!(err.message.contains(&config.configuration_name), "{}", err.message);

    // Cloud: a quota, and credentials rotated — the wrong ones refused, the old ones kept.
    let Some(strict) = crate::objstore::S3::start(true) else { return };
    let cloud = storage::add_remote(
        &ctx,
        storage::RemoteStorageInput {
            name: "Guarded".into(),
            url: "s3://guarded/nightly".into(),
            endpoint: Some(strict.endpoint.clone()),
            region: Some("us-east-1".into()),
            credentials: Some(StorageCredentials { access_key_id: Some("AKIAOLD".into()), secret_access_key: Some("old secret".into()), service_account_key: None }),
            ..Default::default()
        },
    )
    .await
    .expect("add");
    let s = storage::update(&ctx, "Guarded", StorageChange { quota_bytes: Some(5 << 30), ..Default::default() }).await.expect("quota");
    assert_eq!(s.total_capacity, Some(5 << 30));
    let half = StorageCredentials { access_key_id: None, secret_access_key: Some("only a secret".into()), service_account_key: None };
    let err = storage::update(&ctx, "Guarded", StorageChange { credentials: Some(half), ..Default::default() }).await.expect_err("incomplete");
    assert!(err.message.contains("both the key id"), "{}", err.message);
    let wrong = StorageCredentials { access_key_id: Some("AKIAWRONG".into()), secret_access_key: Some("wrong".into()), service_account_key: None };
    let err = storage::update(&ctx, "Guarded", StorageChange { credentials: Some(wrong), ..Default::default() }).await.expect_err("they do not reach it");
    assert!(err.message.contains("the old ones are kept") && !err.message.contains("wrong\""), "{}", err.message);
    let kept = ctx.secrets.get(&storage::storage_account(&cloud.id)).expect("keychain").expect("credentials");
    assert!(kept.contains("AKIAOLD") && !kept.contains("AKIAWRONG"), "the old credentials are kept");
    let Some(open) = crate::objstore::S3::start(false) else { return };
    let bucket = open.bucket("rotated");
    let rotated = storage::add_remote(
        &ctx,
        storage::RemoteStorageInput { name: "Rotated".into(), url: format!("{bucket}/p"), endpoint: Some(open.endpoint.clone()), region: Some("us-east-1".into()), ..Default::default() },
    )
    .await
    .expect("add");
    let new = StorageCredentials { access_key_id: Some("AKIANEW".into()), secret_access_key: Some("new secret".into()), service_account_key: None };
    storage::update(&ctx, "Rotated", StorageChange { credentials: Some(new), ..Default::default() }).await.expect("new credentials that reach it");
    let stored = ctx.secrets.get(&storage::storage_account(&rotated.id)).expect("keychain").expect("credentials");
    assert!(stored.contains("AKIANEW"), "the new credentials are kept");
    let catalog = std::fs::read(ctx.home.join(safehold_core::catalog::CATALOG_FILE)).expect("catalog");
    assert!(!String::from_utf8_lossy(&catalog).contains("new secret"), "secrets stay out of the catalog");
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'storage.update' AND outcome = 'success'").fetch_one(&ctx.pool).await.expect("audit");
    assert_eq!(audited, 5, "each change is audited");
}

/// Verify and Deep verify of a recorded backup (what the Recent Backups buttons do): an intact
/// backup passes both (the deep check counts its rows); a damaged one fails both, the deep check
/// naming the section; each result is kept on the backup's record and audited; a backup that is
/// not complete cannot be checked, and nothing is recorded then.
#[tokio::test(flavor = "multi_thread")]
async fn a_recorded_backup_is_checked_quickly_and_deeply_and_the_result_is_kept() {
    use safehold_core::checks::{check_backup, BackupCheck};
    let Some((_dir, ctx)) = keychain_home().await else { return };
    demo::ensure(&ctx, false).await.expect("demo");
    let config = configurations::list(&ctx).await.expect("configs").remove(0);
    let done = runs::run(&ctx, &runs::enqueue(&ctx, &config.id).await.expect("enqueue"), &CancelToken::new()).await.expect("run");
    let recorded = |ctx: &Ctx, id: String| {
        let pool = ctx.pool.clone();
        async move {
            let meta: String = sqlx::query_scalar("SELECT metadata FROM backup_executions WHERE id = ?").bind(&id).fetch_one(&pool).await.expect("metadata");
            let v: serde_json::Value = serde_json::from_str(&meta).expect("json");
            serde_json::from_value::<BackupCheck>(v["last_check"].clone()).expect("a recorded check")
        }
    };
    let quick = check_backup(&ctx, &done.id, false).await.expect("quick check");
    assert!(quick.ok && !quick.deep, "{quick:?}");
    assert_eq!(recorded(&ctx, done.id.clone()).await, quick, "kept on the backup's record");
    let path = done.file_path.clone().expect("path");
    let mut reader = ArchiveReader::open(Path::new(&path)).expect("open");
    safehold_core::keys::custody::key_sources(&ctx).await.expect("keys").unlock_archive(&mut reader, None).await.expect("unlock");
    let index = reader.index().expect("index");
    let deep = check_backup(&ctx, &done.id, true).await.expect("deep check");
    assert!(deep.ok && deep.deep, "{deep:?}");
    let in_index: u64 = index.sections.iter().filter(|s| s.kind == "table" && s.name != "sqlite_sequence").map(|s| s.rows).sum();
    assert!(index.sections.iter().any(|s| s.name == "sqlite_sequence" && s.rows > 0), "the demo has AUTOINCREMENT counters, checked but not counted as data");
    assert_eq!(deep.rows, in_index, "the deep check counts every row of every table section");
    assert_eq!(i64::try_from(deep.rows).expect("rows"), done.record_count.expect("counted"), "the same count as the backup's (it said 35013 for 35012 before): {deep:?}");
    let n = deep.rows.to_string();
    let grouped = n.chars().rev().collect::<Vec<_>>().chunks(3).map(|c| c.iter().rev().collect::<String>()).rev().collect::<Vec<_>>().join(",");
    assert!(deep.message.contains(&format!("{grouped} rows counted")), "with thousands separators: {}", deep.message);

    // One byte of a table's data changed.
    let section = index.sections.iter().filter(|s| s.kind == "table").max_by_key(|s| s.plain_bytes).expect("a table").clone();
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[usize::try_from(section.offset).expect("offset") + 20] ^= 0x04;
    std::fs::write(&path, &bytes).expect("damage");
    let quick = check_backup(&ctx, &done.id, false).await.expect("a failed check is a result");
    assert!(!quick.ok && quick.message.contains("damaged"), "{quick:?}");
    let deep = check_backup(&ctx, &done.id, true).await.expect("a failed check is a result");
    assert!(!deep.ok && deep.message.contains(&format!("section \"{}\"", section.name)) && deep.message.contains(&path), "names the archive and the section: {deep:?}");
    assert_eq!(recorded(&ctx, done.id.clone()).await, deep);
    let failures: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action IN ('backup.verify', 'backup.verify_deep') AND outcome = 'failure'").fetch_one(&ctx.pool).await.expect("audit");
    assert_eq!(failures, 2, "failed checks are audited");

    // A backup that is not complete: refused, nothing recorded.
    let pending = runs::enqueue(&ctx, &config.id).await.expect("enqueue");
    let err = check_backup(&ctx, &pending, false).await.expect_err("pending");
    assert!(err.message.contains("only a completed backup"), "{}", err.message);
    let meta: String = sqlx::query_scalar("SELECT metadata FROM backup_executions WHERE id = ?").bind(&pending).fetch_one(&ctx.pool).await.expect("metadata");
    assert!(!meta.contains("last_check"), "{meta}");
    // The history by status (what the Recent Backups filter asks for).
    let of = |status| {
        let ctx = ctx.clone();
        async move { safehold_core::history::executions_with(&ctx, 10, Some(status)).await.expect("list").into_iter().map(|e| e.id).collect::<Vec<_>>() }
    };
    assert_eq!(of(JobStatus::Completed).await, vec![done.id.clone()]);
    assert_eq!(of(JobStatus::Pending).await, vec![pending.clone()]);
    assert!(of(JobStatus::Failed).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn includes_choose_tenant_system_and_log_tables() {
    let Some((dir, ctx)) = keychain_home().await else { return };
    demo::ensure(&ctx, false).await.expect("demo");
    // Add a system table and a log table to the demo platform.
    let db = demo::database_path(dir.path());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}", db.display())).await.expect("open demo");
    sqlx::raw_sql("CREATE TABLE feature_flags (key TEXT PRIMARY KEY, on_off INTEGER); INSERT INTO feature_flags VALUES ('x', 1);
                   CREATE TABLE request_log (id INTEGER PRIMARY KEY, path TEXT); INSERT INTO request_log (path) VALUES ('/'), ('/a');")
        .execute(&mut conn)
        .await
        .expect("extend demo");
    let base = configurations::list(&ctx).await.expect("configs").remove(0);
    let conn_id = base.connection_id.clone().expect("connection");
    let mk = |name: &str, tenant: bool, system: bool, logs: bool| ConfigurationInput {
        configuration_name: name.into(),
        backup_type: configurations::BackupType::Full,
        schedule_cron: "0 3 * * *".into(),
        retention_days: 7,
        compression_enabled: true,
        encryption_enabled: false,
        storage_location: demo::DEMO_STORAGE.into(),
        secondary_storage: None,
        missed_runs: Default::default(),
        time_zone: None,
        includes_tenant_data: tenant,
        includes_system_data: system,
        includes_logs: logs,
        is_active: true,
        continuous_protection: false,
        whole_server: false,
        exclude_databases: None,
        server_passwords: false,
        connection_id: conn_id.clone(),
    };
    for (name, t, s, l, expected) in [
        ("tenants only", true, false, false, vec!["documents", "events", "projects", "tenants", "users"]),
        ("system only", false, true, false, vec!["feature_flags"]),
        ("logs only", false, false, true, vec!["request_log"]),
    ] {
        let c = configurations::create(&ctx, mk(name, t, s, l)).await.expect("config");
        let done = runs::run(&ctx, &runs::enqueue(&ctx, &c.id).await.expect("enqueue"), &CancelToken::new()).await.expect("run");
        assert_eq!(done.status, JobStatus::Completed, "{name}: {:?}", done.error_message);
        let reader = ArchiveReader::open(Path::new(&done.file_path.expect("path"))).expect("open");
        let mut tables: Vec<String> = reader.index().expect("index").sections.into_iter().filter(|s| s.kind == "table" && s.name != "sqlite_sequence").map(|s| s.name).collect();
        tables.sort();
        assert_eq!(tables, expected, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_run_says_why_and_leaves_no_archive() {
    let Some((dir, ctx)) = keychain_home().await else { return };
    demo::ensure(&ctx, false).await.expect("demo");
    std::fs::remove_file(demo::database_path(dir.path())).expect("lose the demo database");
    let config = configurations::list(&ctx).await.expect("configs").remove(0);
    let done = runs::run(&ctx, &runs::enqueue(&ctx, &config.id).await.expect("enqueue"), &CancelToken::new()).await.expect("recorded");
    assert_eq!(done.status, JobStatus::Failed);
    assert!(done.error_message.as_deref().unwrap_or_default().contains("does not exist"), "{:?}", done.error_message);
    let archives = dir.path().join("backups/archives");
    let left = std::fs::read_dir(&archives).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "no archive or partial file");
    // The Configurations tab's line: the next run, and the last backup's failure with its reason.
    let overview = safehold_core::scheduler::overview(&ctx).await.expect("overview");
    let line = overview.iter().find(|o| o.configuration_id == config.id).expect("the configuration");
    assert_eq!(line.last_status, Some(JobStatus::Failed));
    assert_eq!(line.last_error, done.error_message);
    assert!(line.next_run.as_deref().is_some_and(|n| chrono::DateTime::parse_from_rfc3339(n).is_ok()), "{line:?}");

    configurations::set_active(&ctx, &config.id, false).await.expect("deactivate");
    let refused = runs::enqueue(&ctx, &config.id).await.expect_err("inactive");
    assert!(refused.message.contains("inactive"));
    let overview = safehold_core::scheduler::overview(&ctx).await.expect("overview");
    assert_eq!(overview.iter().find(|o| o.configuration_id == config.id).and_then(|o| o.next_run.clone()), None, "an inactive configuration has no next run");
    // Run Now of a configuration that does not exist: not found (the spec's "404 for invalid configuration").
    let missing = runs::enqueue(&ctx, "00000000-0000-0000-0000-000000000000").await.expect_err("no such configuration");
    assert_eq!(missing.code, safehold_core::ErrorCode::NotFound, "{}", missing.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_run_is_recorded_as_cancelled() {
    let Some((_dir, ctx)) = keychain_home().await else { return };
    demo::ensure(&ctx, false).await.expect("demo");
    let config = configurations::list(&ctx).await.expect("configs").remove(0);
    let cancel = CancelToken::new();
    cancel.cancel();
    let done = runs::run(&ctx, &runs::enqueue(&ctx, &config.id).await.expect("enqueue"), &cancel).await.expect("recorded");
    assert_eq!(done.status, JobStatus::Cancelled);
    assert!(done.file_path.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configuration_backs_up_to_an_s3_storage_with_credentials_from_the_keychain() {
    let Some((_dir, ctx)) = keychain_home().await else { return };
    let Some(s3) = crate::objstore::S3::start(false) else { return };
    let out = std::process::Command::new("curl").args(["-sf", "-X", "PUT", &format!("{}/cfg-bucket", s3.endpoint)]).output().expect("curl");
    assert!(out.status.success());
    demo::ensure(&ctx, false).await.expect("demo");
    safehold_core::storage::add_remote(
        &ctx,
        safehold_core::storage::RemoteStorageInput {
            name: "Offsite".into(),
            url: "s3://cfg-bucket/nightly".into(),
            endpoint: Some(s3.endpoint.clone()),
            region: Some("us-east-1".into()),
            quota_bytes: Some(1 << 30),
            credentials: Some(safehold_core::storage::StorageCredentials {
                access_key_id: Some("test".into()),
                secret_access_key: Some("secret-only-in-the-keychain".into()),
                service_account_key: None,
            }),
            is_default: false,
        },
    )
    .await
    .expect("add the S3 storage");
    let catalog = std::fs::read(ctx.home.join(safehold_core::catalog::CATALOG_FILE)).expect("catalog");
    assert!(!String::from_utf8_lossy(&catalog).contains("secret-only-in-the-keychain"), "the secret key is in the keychain only");
    let health = safehold_core::storage::check(&ctx, "Offsite").await.expect("check");
    assert!(health.ok, "{}", health.message);

    let demo_config = configurations::list(&ctx).await.expect("configs").remove(0);
    let input = ConfigurationInput {
        configuration_name: "Offsite nightly".into(),
        retention_days: 30,
        compression_enabled: true,
        encryption_enabled: true,
        storage_location: "Offsite".into(),
        secondary_storage: None,
        includes_tenant_data: true,
        includes_system_data: true,
        includes_logs: true,
        is_active: true,
        ..demo_config.to_input()
    };
    let cfg = configurations::create(&ctx, input).await.expect("configuration to S3");
    let id = runs::enqueue(&ctx, &cfg.id).await.expect("enqueue");
    let done = runs::run(&ctx, &id, &CancelToken::new()).await.expect("run");
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error_message);
    let path = done.file_path.clone().expect("archive");
    assert!(path.starts_with("s3://cfg-bucket/nightly/archives/"), "{path}");
    safehold_core::verify::quick(Path::new(&path), done.checksum.as_deref()).expect("the object matches the catalog's checksum");
    let usage = safehold_core::storage::refresh_usage(&ctx, "Offsite").await.expect("usage");
    assert_eq!(usage.archives, 1);
    assert_eq!(usage.used_space, done.compressed_size.expect("size"));
    assert_eq!(usage.total_capacity, Some(1 << 30), "the configured quota");

    // The workstation is lost: on a new one the bucket is added with its credentials, and the
    // catalog is rebuilt from it (the app's "Recover from storage" with the storage chosen).
    let new_home = tempfile::tempdir().expect("new home");
    let fresh = Ctx::open_with(new_home.path(), ctx.secrets.clone()).await.expect("a new catalog");
    safehold_core::storage::add_remote(
        &fresh,
        safehold_core::storage::RemoteStorageInput {
            name: "Offsite (found)".into(),
            url: "s3://cfg-bucket/nightly".into(),
            endpoint: Some(s3.endpoint.clone()),
            region: Some("us-east-1".into()),
            credentials: Some(safehold_core::storage::StorageCredentials { access_key_id: Some("test".into()), secret_access_key: Some("secret-only-in-the-keychain".into()), service_account_key: None }),
            ..Default::default()
        },
    )
    .await
    .expect("add the bucket");
    let report = safehold_core::recovery::rebuild_from_storage(&fresh, "Offsite (found)").await.expect("rebuild from the storage");
    assert_eq!((report.added, report.storage_added, report.storage_name.as_str()), (1, false, "Offsite (found)"), "{report:?}");
    let found = safehold_core::history::executions(&fresh, 10).await.expect("history");
    assert_eq!(found.iter().filter_map(|e| e.file_path.as_deref()).collect::<Vec<_>>(), vec![path.as_str()], "the backup is in the new catalog");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_backup_is_copied_to_the_second_storage_verified_and_restorable_from_there() {
    let Some((dir, ctx)) = keychain_home().await else { return };
    demo::ensure(&ctx, false).await.expect("demo");
    let second_dir = dir.path().join("usb-disk");
    safehold_core::storage::add_local(&ctx, "USB disk", &second_dir, false).await.expect("second storage");
    let config = configurations::list(&ctx).await.expect("configs").remove(0);
    let mut input = ConfigurationInput { encryption_enabled: true, secondary_storage: Some(config.storage_location.clone()), ..config.to_input() };
    let errors = configurations::validate(&ctx, &input, Some(&config.id)).await.expect("validate");
    assert!(errors.iter().any(|e| e.field == "secondary_storage" && e.message.contains("another storage")), "{errors:?}");
    input.secondary_storage = Some("USB disk".into());
    configurations::update(&ctx, &config.id, input).await.expect("set the second copy");

    let id = runs::enqueue(&ctx, &config.id).await.expect("enqueue");
    let done = runs::run(&ctx, &id, &CancelToken::new()).await.expect("run");
    assert_eq!(done.status, JobStatus::Completed, "{:?}", done.error_message);
    let copies = safehold_core::copies::of(&ctx, &id).await.expect("copies");
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].status, "completed", "{:?}", copies[0].error_message);
    let copy = copies[0].file_path.clone().expect("copy path");
    assert!(copy.starts_with(&second_dir.display().to_string()), "{copy}");
    safehold_core::verify::quick(Path::new(&copy), done.checksum.as_deref()).expect("the copy matches the backup's checksum");
    assert!(second_dir.join(safehold_core::repository::CONFIG_FILE).exists(), "the second storage mirrors the repository");
    let listed = safehold_core::history::executions(&ctx, 10).await.expect("history").into_iter().find(|e| e.id == id).expect("listed");
    let shown = listed.second_copy.expect("the history shows the second copy");
    assert_eq!((shown.status.as_str(), shown.file_path.as_deref()), ("completed", Some(copy.as_str())));
    assert!(listed.initiated_by.is_some(), "who started it is shown");

    // The first copy is lost: a restore uses the second.
    std::fs::remove_file(done.file_path.clone().expect("primary")).expect("lose the first copy");
    let target = dir.path().join("restored.db");
    let form = safehold_core::restore::records::RestoreForm {
        backup_execution_id: id.clone(),
        connection_id: String::new(),
        restore_type: safehold_core::restore::RestoreType::Full,
        safety_backup: true,
        preserve_ids: true,
        ..Default::default()
    };
    let err = safehold_core::restore::records::resolve(&ctx, &form).await.expect_err("no target chosen");
    assert!(err.message.contains("connection to restore into"), "{}", err.message);
    let conn = safehold_core::connections::add(&ctx, safehold_core::connections::ConnectionInput::from_url("Restored copy", &format!("sqlite://{}", target.display())).expect("input"))
        .await
        .expect("target connection");
    let form = safehold_core::restore::records::RestoreForm { connection_id: conn.id, ..form };
    let (rid, req) = safehold_core::restore::records::start(&ctx, &form).await.expect("start");
    assert_eq!(req.from, Path::new(&copy), "the second copy is used");
    let keys = safehold_core::keys::unlock::KeySources { keychain: Some(ctx.secrets.clone()), ..Default::default() };
    let out = safehold_core::restore::records::run(&ctx, &rid, &req, &keys, None, &CancelToken::new(), None).await.expect("restore from the second copy");
    assert!(out.rows > 30_000, "{out:?}");
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}", target.display())).await.expect("open the restored file");
    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants").fetch_one(&mut db).await.expect("count");
    assert_eq!(tenants, 50, "the demo's tenants, restored from the second copy");
}

/// A SQLite backup (the demo platform's) restores from the app into a new file chosen in a save
/// dialog, without a connection for it: planned first, then run; the file must be new, absolute,
/// and the restore whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_backup_restores_from_the_app_into_a_new_file() {
    use safehold_core::restore::RestoreType;
    use safehold_core::restore::records::{self as restores, RestoreForm};
    let Some((dir, ctx)) = keychain_home().await else { return };
    let report = demo::ensure(&ctx, false).await.expect("demo");
    let config = configurations::list(&ctx).await.expect("configs").remove(0);
    let done = runs::run(&ctx, &runs::enqueue(&ctx, &config.id).await.expect("enqueue"), &CancelToken::new()).await.expect("run");
    let target = dir.path().join("restored demo.db");
    let form = RestoreForm { backup_execution_id: done.id.clone(), target_file: Some(target.display().to_string()), restore_type: RestoreType::Full, preserve_ids: true, ..Default::default() };

    let err = restores::plan(&ctx, &RestoreForm { restore_type: RestoreType::TenantOnly, tenant_id: Some("t1".into()), ..form.clone() }).await.expect_err("whole only");
    assert!(err.message.contains("choose the Full restore type"), "{}", err.message);
    let err = restores::plan(&ctx, &RestoreForm { target_file: Some("relative.db".into()), ..form.clone() }).await.expect_err("absolute only");
    assert!(err.message.contains("absolute path"), "{}", err.message);
    std::fs::write(dir.path().join("taken.db"), b"not empty").expect("an existing file");
    let err = restores::plan(&ctx, &RestoreForm { target_file: Some(dir.path().join("taken.db").display().to_string()), ..form.clone() }).await.expect_err("a new file only");
    assert!(err.message.contains("already exists"), "{}", err.message);
    assert_eq!(std::fs::read(dir.path().join("taken.db")).expect("read"), b"not empty", "left alone");

    let plan = restores::plan(&ctx, &form).await.expect("plan");
    assert_eq!(plan.tables.len(), 5, "{plan:?}");
    assert!(!target.exists(), "planning writes nothing");
    let (rid, req) = restores::start(&ctx, &form).await.expect("start");
    let keys = safehold_core::keys::custody::key_sources(&ctx).await.expect("keys");
    let out = restores::run(&ctx, &rid, &req, &keys, None, &CancelToken::new(), None).await.expect("restore");
    assert_eq!(i64::try_from(out.rows).expect("rows"), report.rows, "every row of the demo");
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}?mode=ro", target.display())).await.expect("open the new file");
    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants").fetch_one(&mut db).await.expect("count");
    assert_eq!(tenants, 50);
    let status: String = sqlx::query_scalar("SELECT status FROM restore_operations WHERE id = ?").bind(&rid).fetch_one(&ctx.pool).await.expect("record");
    assert_eq!(status, "completed");
    let listed = safehold_core::history::restores(&ctx, 5, 0).await.expect("history").into_iter().find(|r| r.id == rid).expect("listed");
    let me = safehold_core::auth::operators::current(&ctx).expect("acting").name;
    assert_eq!(listed.initiated_by, me, "the history names who asked, not their id");
    assert_eq!(listed.source_archive.as_deref(), done.file_path.as_deref());
}

/// Once the first super admin exists, the repositories' keys leave the workstation's keychain and
/// are sealed to each super admin's own key: a platform operator's session holds no key at all
/// (she backs up, and cannot open a backup whatever the permission checks say), a super admin's
/// sign-in opens them, and the slots follow the roles.
#[tokio::test(flavor = "multi_thread")]
async fn repository_keys_are_held_by_the_super_admins_alone_and_follow_their_roles() {
    use safehold_core::auth::operators::{self, Role};
    use safehold_core::repository::{keychain_account, Repository};
    use safehold_core::keys::custody;
    use safehold_core::{restore, storage, ErrorCode};
    const PW: &str = "correct horse battery";
    let Some((dir, ctx)) = keychain_home().await else { return };
    demo::ensure(&ctx, false).await.expect("demo");
    let config = configurations::list(&ctx).await.expect("configs").remove(0);
    let before = runs::run(&ctx, &runs::enqueue(&ctx, &config.id).await.expect("enqueue"), &CancelToken::new()).await.expect("run");
    let repo_dir = storage::location(&ctx, &storage::find(&ctx, demo::DEMO_STORAGE).await.expect("storage")).await.expect("location");
    let repo_id = Repository::open(&repo_dir).expect("open").expect("a repository").config.repository_id;
    let secret = |ctx: &Ctx| {
        let (store, account) = (ctx.secrets.clone(), keychain_account(&repo_id));
        move || store.get(&account).expect("keychain")
    };
    assert!(secret(&ctx)().is_some(), "before operators, the secret is in the keychain");
    let held = custody::custody(&ctx, demo::DEMO_STORAGE).await.expect("custody");
    assert!(held.has_repository && held.in_keychain && held.super_admins.is_empty() && !held.recovery_exported, "the app says the keychain holds it: {held:?}");

    // The first super admin: the key moves from the keychain to her.
    operators::create_first(&ctx, "alice", PW).await.expect("first super admin");
    assert!(secret(&ctx)().is_none(), "the keychain no longer holds the repository's secret");
    let repo = Repository::open(&repo_dir).expect("open").expect("repository");
    assert_eq!(repo.custodians().len(), 1, "sealed to alice");
    let withheld: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'key.withhold' AND outcome = 'success'").fetch_one(&ctx.pool).await.expect("audit");
    assert_eq!(withheld, 1);
    operators::add(&ctx, "olga", Role::PlatformOperator, PW).await.expect("olga");

    let session = |name: &'static str| {
        let (home, store) = (dir.path().to_path_buf(), ctx.secrets.clone());
        async move {
            let c = Ctx::open_with(&home, store).await.expect("open");
            operators::sign_in(&c, name, PW, false).await.expect("sign in");
            c
        }
    };
    // Olga backs up (sealed to the repository's public key) ...
    let olga = session("olga").await;
    let hers = runs::run(&olga, &runs::enqueue(&olga, &config.id).await.expect("enqueue"), &CancelToken::new()).await.expect("olga's run");
    assert_eq!(hers.status, JobStatus::Completed, "{:?}", hers.error_message);
    let hers_path = std::path::PathBuf::from(hers.file_path.clone().expect("path"));
    // ... and her session holds no key that opens it, nor the earlier backup.
    let olga_keys = custody::key_sources(&olga).await.expect("keys");
    assert!(olga_keys.operator_key.is_none());
    for p in [&hers_path, &std::path::PathBuf::from(before.file_path.clone().expect("path"))] {
        let err = olga_keys.open_chain(p, Repository::open(&repo_dir).expect("open").as_ref()).await.err().expect("no key for olga");
        assert_eq!(err.code, ErrorCode::AuthFailed, "{}", err.message);
    }

    // Alice's sign-in opens both, and restores.
    let alice = session("alice").await;
    let alice_keys = custody::key_sources(&alice).await.expect("keys");
    let repo = Repository::open(&repo_dir).expect("open");
    let chain = alice_keys.open_chain(&hers_path, repo.as_ref()).await.expect("alice opens olga's backup");
    let target = dir.path().join("restored.db");
    let out = restore::restore_chain(chain, &safehold_core::source::SourceSpec::Sqlite { path: target.clone() }, 1, false, &CancelToken::new(), &safehold_core::source::no_progress()).await.expect("restore");
    assert_eq!(Some(i64::try_from(out.rows).expect("rows")), before.record_count);
    let held = custody::custody(&alice, demo::DEMO_STORAGE).await.expect("custody");
    assert_eq!((held.in_keychain, held.super_admins.clone(), held.pending.len()), (false, vec!["alice".to_string()], 0), "the app says alice alone holds it: {held:?}");

    // The recovery kit: not for olga; alice saves it to a file (a failed write keeps it in the
    // repository), once; the kit alone opens olga's backup.
    let kit = dir.path().join("kit.txt");
    let refused = custody::export_recovery_kit(&olga, demo::DEMO_STORAGE, &kit).await.expect_err("olga may not");
    assert_eq!(refused.code, ErrorCode::PermissionDenied, "{}", refused.message);
    let failed = custody::export_recovery_kit(&alice, demo::DEMO_STORAGE, &dir.path().join("no-such-dir").join("kit.txt")).await.expect_err("no such directory");
    assert!(failed.message.contains("cannot write the recovery kit"), "{}", failed.message);
    assert!(!custody::custody(&alice, demo::DEMO_STORAGE).await.expect("custody").recovery_exported, "a kit that could not be saved is not lost");
    let text = custody::export_recovery_kit(&alice, demo::DEMO_STORAGE, &kit).await.expect("alice saves the kit");
    assert_eq!(std::fs::read_to_string(&kit).expect("the kit file"), text);
    assert!(text.contains("SHRK-"), "{text}");
    #[cfg(unix)]
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&kit).expect("meta").permissions()) & 0o777, 0o600, "readable by its owner only");
    assert!(custody::custody(&alice, demo::DEMO_STORAGE).await.expect("custody").recovery_exported);
    let again = custody::export_recovery_kit(&alice, demo::DEMO_STORAGE, &dir.path().join("kit2.txt")).await.expect_err("once");
    assert!(again.message.contains("already exported") && !dir.path().join("kit2.txt").exists(), "{}", again.message);
    let by_kit = safehold_core::keys::unlock::KeySources { recovery_key_file: Some(kit.clone()), ..Default::default() };
    by_kit.open_chain(&hers_path, None).await.expect("the kit alone opens olga's backup");
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'key.export_recovery' AND outcome = 'success'").fetch_one(&ctx.pool).await.expect("audit");
    assert_eq!(audited, 1, "the export is audited");

    // A server — another home, with only the repository's public key — backs up into the same
    // storage: its backup is listed as not approved and does not open; olga may not approve it;
    // alice does (audited), and then it opens.
    let server_home = tempfile::tempdir().expect("tmp");
    let server_writer = safehold_core::writers::WriterKey::for_home(server_home.path()).expect("the server's writer key");
    let server = safehold_core::keys::unlock::KeySources { writer: Some(server_writer.clone()), ..Default::default() };
    let (srepo, smk) = server.open_repository_for_sealed_backup(&repo_dir).await.expect("a sealed backup needs no secret");
    assert!(smk.is_none(), "the server holds no key");
    let tiny = dir.path().join("tiny.db");
    {
        let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}?mode=rwc", tiny.display())).await.expect("sqlite");
        sqlx::raw_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'from the server');").execute(&mut c).await.expect("tiny");
    }
    let mut req = safehold_core::backup::BackupRequest::new(safehold_core::source::SourceSpec::Sqlite { path: tiny });
    req.signer = Some(server_writer.clone());
    let planted = safehold_core::backup::run_with(&srepo, None, &req, &CancelToken::new(), &safehold_core::source::no_progress()).await.expect("the server's backup");
    let listed = custody::writers(&alice, demo::DEMO_STORAGE).await.expect("writers");
    let theirs = listed.iter().find(|w| w.public_key == server_writer.public_hex()).expect("the server is listed");
    assert_eq!((theirs.approved, theirs.backups), (false, 1), "{listed:?}");
    assert!(listed.iter().any(|w| w.approved && w.backups >= 2), "this home's own writer is approved: {listed:?}");
    let planted_path = std::path::PathBuf::from(&planted.archive);
    let err = alice_keys.open_chain(&planted_path, Repository::open(&repo_dir).expect("open").as_ref()).await.err().expect("not approved yet");
    assert!(err.message.contains("approve"), "{}", err.message);
    let refused = custody::approve_writer(&olga, demo::DEMO_STORAGE, &server_writer.public_hex()).await.expect_err("olga may not");
    assert_eq!(refused.code, ErrorCode::PermissionDenied, "{}", refused.message);
    let unknown = custody::approve_writer(&alice, demo::DEMO_STORAGE, &"ff".repeat(32)).await.expect_err("no backup of that writer");
    assert_eq!(unknown.code, ErrorCode::NotFound, "{}", unknown.message);
    let ok = custody::approve_writer(&alice, demo::DEMO_STORAGE, &server_writer.public_hex()).await.expect("alice approves the server");
    assert!(ok.approved);
    assert!(custody::writers(&alice, demo::DEMO_STORAGE).await.expect("writers").iter().all(|w| w.approved), "every writer approved now");
    alice_keys.open_chain(&planted_path, Repository::open(&repo_dir).expect("open").as_ref()).await.expect("the server's backup opens once approved");
    let audited: Vec<String> = sqlx::query_scalar("SELECT outcome FROM audit_log WHERE action = 'key.approve_writer' ORDER BY rowid").fetch_all(&ctx.pool).await.expect("audit");
    assert_eq!(audited, ["denied", "failure", "success"], "each attempt is audited");

    // A second super admin gets a slot at once (alice's session holds the key); demoted, he loses it.
    operators::add(&alice, "bob", Role::SuperAdmin, PW).await.expect("bob");
    assert_eq!(Repository::open(&repo_dir).expect("open").expect("repo").custodians().len(), 2);
    assert_eq!(custody::custody(&olga, demo::DEMO_STORAGE).await.expect("custody").super_admins, ["alice", "bob"], "anyone who sees the storage sees who holds it");
    let bob = session("bob").await;
    let bob_keys = custody::key_sources(&bob).await.expect("keys");
    bob_keys.open_chain(&hers_path, Repository::open(&repo_dir).expect("open").as_ref()).await.expect("bob opens it");
    operators::set_role(&alice, "bob", Role::PlatformOperator).await.expect("demote bob");
    assert_eq!(Repository::open(&repo_dir).expect("open").expect("repo").custodians().len(), 1, "bob's slot is gone");
    assert!(custody::key_sources(&bob).await.expect("keys").operator_key.is_none(), "bob's open session lets go of his key");
    let held = custody::custody(&alice, demo::DEMO_STORAGE).await.expect("custody");
    assert_eq!((held.super_admins.clone(), held.former.len()), (vec!["alice".to_string()], 0), "{held:?}");

    // A repository created now (by anyone) is sealed to the super admins; no secret is kept.
    let fresh = dir.path().join("fresh-repo");
    let (new_repo, mk) = olga_keys.open_repository_for_sealed_backup(&fresh).await.expect("a new repository");
    assert!(mk.is_some(), "the creator has the key only while creating it");
    assert!(ctx.secrets.get(&keychain_account(new_repo.id())).expect("keychain").is_none(), "no secret in the keychain");
    assert_eq!(new_repo.custodians(), custody::super_admin_keys(&ctx.pool).await.expect("keys"));
    alice_keys.unlock_repository(&new_repo).await.expect("alice opens the new repository");
    assert_eq!(olga_keys.unlock_repository(&new_repo).await.expect_err("olga does not").code, ErrorCode::AuthFailed);

    // Passwords: one's own changed (the key stays, so it still opens everything), a forgotten one
    // reset by a super admin (a new key pair; the repositories are sealed to it, not the old one).
    let signed_in = |name: &'static str, pw: &'static str| {
        let (home, store) = (dir.path().to_path_buf(), ctx.secrets.clone());
        async move {
            let c = Ctx::open_with(&home, store).await.expect("open");
            operators::sign_in(&c, name, pw, false).await.map(|_| c)
        }
    };
    let wrong = operators::change_password(&alice, "not my password", "a brand new password").await.expect_err("wrong current password");
    assert_eq!(wrong.code, ErrorCode::AuthFailed, "{}", wrong.message);
    assert_eq!(operators::change_password(&alice, PW, "short").await.expect_err("too short").code, ErrorCode::Validation);
    operators::change_password(&alice, PW, "alice's new password").await.expect("alice changes hers");
    assert!(signed_in("alice", PW).await.is_err(), "the old password no longer signs in");
    let alice2 = signed_in("alice", "alice's new password").await.expect("the new one does");
    let keys2 = custody::key_sources(&alice2).await.expect("keys");
    keys2.open_chain(&hers_path, Repository::open(&repo_dir).expect("open").as_ref()).await.expect("her key still opens olga's backup");

    operators::set_role(&alice2, "bob", Role::SuperAdmin).await.expect("bob is a super admin again");
    let bob_old_key: String = sqlx::query_scalar("SELECT public_key FROM operators WHERE name = 'bob'").fetch_one(&ctx.pool).await.expect("key");
    assert!(Repository::open(&repo_dir).expect("open").expect("repo").custodians().contains(&bob_old_key));
    assert_eq!(operators::reset_password(&olga, "bob", "bob's new password").await.expect_err("olga may not").code, ErrorCode::PermissionDenied);
    assert_eq!(operators::reset_password(&alice2, "alice", "x".repeat(12).as_str()).await.expect_err("not one's own").code, ErrorCode::Validation);
    // The storage is offline during the reset: the old key keeps its slot there, the Storage tab
    // says so, and the next sweep (a super admin's sign-in, say) removes it.
    let away = repo_dir.with_extension("away");
    std::fs::rename(&repo_dir, &away).expect("unplug the storage");
    operators::reset_password(&alice2, "bob", "bob's new password").await.expect("alice resets bob's");
    std::fs::rename(&away, &repo_dir).expect("plug it back");
    assert!(Repository::open(&repo_dir).expect("open").expect("repo").custodians().contains(&bob_old_key), "offline during the reset");
    let held = custody::custody(&alice2, demo::DEMO_STORAGE).await.expect("custody");
    assert!(held.former.iter().any(|f| f.contains("bob") && f.contains("password reset")), "{held:?}");
    custody::sweep(&alice2).await.expect("sweep");
    let custodians = Repository::open(&repo_dir).expect("open").expect("repo").custodians();
    let bob_new_key: String = sqlx::query_scalar("SELECT public_key FROM operators WHERE name = 'bob'").fetch_one(&ctx.pool).await.expect("key");
    assert!(!custodians.contains(&bob_old_key) && custodians.contains(&bob_new_key), "the old key's slot is gone, the new key holds one");
    assert!(signed_in("bob", PW).await.is_err(), "bob's old password no longer signs in");
    let bob2 = signed_in("bob", "bob's new password").await.expect("bob signs in with the new one");
    custody::key_sources(&bob2).await.expect("keys").open_chain(&hers_path, Repository::open(&repo_dir).expect("open").as_ref()).await.expect("bob's new key opens the backup");
    let audited: Vec<(String, String)> = sqlx::query_as("SELECT action, outcome FROM audit_log WHERE action IN ('operator.change_password', 'operator.reset_password') ORDER BY id").fetch_all(&ctx.pool).await.expect("audit");
    assert_eq!(
        audited.iter().map(|(a, o)| format!("{a}:{o}")).collect::<Vec<_>>(),
        ["operator.change_password:failure", "operator.change_password:success", "operator.reset_password:denied", "operator.reset_password:success"],
        "{audited:?}"
    );
    // Guessing one's current password is slowed and locked like sign-ins: the 5th wrong one locks
    // and ends the session.
    for _ in 0..4 {
        assert_eq!(operators::change_password(&olga, "a guess at it", "a brand new password").await.expect_err("wrong").code, ErrorCode::AuthFailed);
    }
    let locked = operators::change_password(&olga, "a guess at it", "a brand new password").await.expect_err("locked");
    assert_eq!(locked.code, ErrorCode::PermissionDenied, "{}", locked.message);
    assert!(locked.message.contains("locked"), "{}", locked.message);
    assert!(operators::current(&olga).is_err(), "her session ended");
    assert!(signed_in("olga", PW).await.is_err(), "she is locked even with her password");
}
