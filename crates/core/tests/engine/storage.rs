//! Storage: used space from a real listing of the archives, the filesystem's capacity, a usage
//! sample per measurement, a health probe that really writes, reads and deletes, and removal.

use safehold_core::source::SourceSpec;
use safehold_core::storage;

use crate::backup::repo_with_password;
use crate::support::{fixture_copy, home};

#[tokio::test(flavor = "multi_thread")]
async fn usage_comes_from_a_listing_and_health_from_a_real_probe() {
    let h = home().await;
    let repo = repo_with_password("pw");
    let dir = repo.path();
    let s = storage::add_local(&h.ctx, "Vault", &dir, true).await.expect("add");
    let empty = storage::refresh_usage(&h.ctx, "Vault").await.expect("usage");
    assert_eq!((empty.used_space, empty.archives), (0, 0));

    let tmp = tempfile::tempdir().expect("tmp");
    let db = fixture_copy("chinook/Chinook_Sqlite.sqlite", &tmp);
    let a = repo.backup(SourceSpec::Sqlite { path: db.clone() }).await;
    let b = repo.backup(SourceSpec::Sqlite { path: db }).await;
    let u = storage::refresh_usage(&h.ctx, "Vault").await.expect("usage");
    assert_eq!(u.archives, 2);
    assert_eq!(u.used_space, i64::try_from(a.bytes + b.bytes).expect("size"), "the sum of the archives' sizes");
    assert!(u.total_capacity.is_some_and(|t| t > u.used_space), "the filesystem's capacity: {:?}", u.total_capacity);
    let listed = storage::find(&h.ctx, "Vault").await.expect("find");
    assert_eq!(listed.used_space, u.used_space, "recorded on the storage");
    let samples = storage::samples(&h.ctx, &s.id, 10).await.expect("samples");
    assert_eq!(samples.iter().map(|x| x.archives).collect::<Vec<_>>(), vec![0, 2], "one sample per measurement, oldest first");

    let ok = storage::check(&h.ctx, "Vault").await.expect("check");
    assert!(ok.ok, "{}", ok.message);
    let leftovers: Vec<_> = std::fs::read_dir(&dir).expect("list").flatten().filter(|e| e.file_name().to_string_lossy().starts_with(".safehold-probe")).collect();
    assert!(leftovers.is_empty(), "the probe is deleted");
    assert_eq!(storage::find(&h.ctx, "Vault").await.expect("find").last_health_ok, Some(true));

    // The storage disappears (an unmounted disk): the check fails and says so.
    let gone = tempfile::tempdir().expect("tmp");
    let gone_dir = gone.path().join("disk");
    storage::add_local(&h.ctx, "Unplugged", &gone_dir, false).await.expect("add");
    std::fs::remove_dir_all(&gone_dir).expect("unplug");
    let bad = storage::check(&h.ctx, "Unplugged").await.expect("a check that fails still answers");
    assert!(!bad.ok && bad.message.contains("does not exist"), "{}", bad.message);
    let row = storage::find(&h.ctx, "Unplugged").await.expect("find");
    assert_eq!(row.last_health_ok, Some(false));
    assert!(row.last_health_check.is_some());

    // Removing keeps the files; a storage in use by a configuration cannot be removed.
    sqlx::query("INSERT INTO backup_configurations (id, configuration_name, backup_type, schedule_cron, storage_location, created_by) VALUES ('c', 'Uses vault', 'full', '0 2 * * *', 'Vault', ?)")
        .bind(&h.ctx.operator_id)
        .execute(&h.ctx.pool)
        .await
        .expect("configuration");
    let err = storage::remove(&h.ctx, "Vault").await.expect_err("in use");
    assert!(err.message.contains("Uses vault"), "{}", err.message);
    storage::remove(&h.ctx, "Unplugged").await.expect("remove");
    assert!(storage::find(&h.ctx, "Unplugged").await.is_err());
    assert!(std::path::Path::new(&a.archive).exists());
}
