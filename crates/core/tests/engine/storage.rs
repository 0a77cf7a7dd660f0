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
        .bind(h.ctx.operator_id())
        .execute(&h.ctx.pool)
        .await
        .expect("configuration");
    let err = storage::remove(&h.ctx, "Vault").await.expect_err("in use");
    assert!(err.message.contains("Uses vault"), "{}", err.message);
    storage::remove(&h.ctx, "Unplugged").await.expect("remove");
    assert!(storage::find(&h.ctx, "Unplugged").await.is_err());
    assert!(std::path::Path::new(&a.archive).exists());
}

/// A small tmpfs, unmounted when dropped.
struct SmallDisk(tempfile::TempDir);
impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_the_backup_clearly_and_leaves_earlier_backups_intact() {
    let mnt = tempfile::tempdir().expect("tmp");
    let mounted = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"]).arg(mnt.path()).status().is_ok_and(|s| s.success());
    if !mounted {
        let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        assert!(!root, "root could not mount a small tmpfs for the full-disk test");
        eprintln!("not root: cannot mount a small tmpfs to fill; the full-disk test is skipped");
        return;
    }
    let disk = SmallDisk(mnt);
    let repo_dir = disk.0.path().join("repo");
    let pw = tempfile::NamedTempFile::new().expect("pw");
    std::fs::write(pw.path(), "pw").expect("pw");
    let keys = safehold_core::keys::unlock::KeySources { password_file: Some(pw.path().to_path_buf()), ..Default::default() };
    let tmp = tempfile::tempdir().expect("tmp");
    let (repo, mk) = keys.open_repository_for_backup(&repo_dir).await.expect("repository");
    let small = fixture_copy("chinook/Chinook_Sqlite.sqlite", &tmp);
    let earlier = safehold_core::backup::run(&repo, &mk, &safehold_core::backup::BackupRequest::new(SourceSpec::Sqlite { path: small }), &safehold_core::source::CancelToken::new(), &safehold_core::source::no_progress())
        .await
        .expect("an earlier backup fits");
    let db = crate::support::ScratchDb::create().await;
    db.execute("CREATE TABLE blobs (id int PRIMARY KEY, b bytea); INSERT INTO blobs SELECT g, decode(string_agg(md5(random()::text || g || i), ''), 'hex') FROM generate_series(1, 300) g, generate_series(1, 1000) i GROUP BY g;").await;
    let err = safehold_core::backup::run(&repo, &mk, &safehold_core::backup::BackupRequest::new(SourceSpec::Postgres { url: db.url() }), &safehold_core::source::CancelToken::new(), &safehold_core::source::no_progress())
        .await
        .expect_err("the disk fills up");
    assert_eq!(err.code, safehold_core::ErrorCode::Io, "{}", err.message);
    assert!(err.message.contains("the disk is full"), "says what happened and what to do: {}", err.message);
    let left: Vec<String> = std::fs::read_dir(repo_dir.join("archives")).expect("list").flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect();
    assert_eq!(left.len(), 1, "no partial archive remains: {left:?}");
    safehold_core::verify::quick(std::path::Path::new(&earlier.archive), Some(&earlier.sha256)).expect("the earlier backup is intact");
}

/// One way in for every kind of storage: a URL goes to the object store, a folder (relative to
/// the current directory) is made absolute; object-storage settings on a folder are refused and
/// add nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_storage_is_added_by_its_location_alone() {
    let h = home().await;
    let input = |name: &str, url: &str| storage::RemoteStorageInput { name: name.into(), url: url.into(), endpoint: None, region: None, quota_bytes: None, credentials: None, is_default: false };
    let folder = tempfile::tempdir().expect("tmp");
    let s = storage::add(&h.ctx, input("Local", folder.path().to_str().expect("utf-8"))).await.expect("a folder");
    assert_eq!(s.storage_config["path"], folder.path().display().to_string());
    let relative = format!("safehold-test-storage-{}", std::process::id());
    let s = storage::add(&h.ctx, input("Relative", &relative)).await.expect("a relative folder");
    let made = std::env::current_dir().expect("cwd").join(&relative);
    assert_eq!(s.storage_config["path"], made.display().to_string(), "taken from the current directory");
    std::fs::remove_dir_all(&made).expect("clean up");
    let mut wrong = input("Wrong", folder.path().to_str().expect("utf-8"));
    wrong.endpoint = Some("http://127.0.0.1:9".into());
    let e = storage::add(&h.ctx, wrong).await.expect_err("an endpoint for a folder");
    assert!(e.message.contains("is a folder") && e.message.contains("object storage"), "{}", e.message);
    let names: Vec<String> = storage::list(&h.ctx).await.expect("list").into_iter().map(|s| s.storage_name).collect();
    assert!(names.contains(&"Local".to_string()) && !names.contains(&"Wrong".to_string()), "{names:?}");
    let remote = storage::add(&h.ctx, input("Remote", "s3://no-such-bucket/x")).await.expect("an object store is recorded");
    assert_eq!(format!("{:?}", remote.storage_type), "S3", "a URL goes to the object store");
    assert!(!std::path::Path::new("s3:").exists(), "and makes no folder");
}

/// An error reading storage keeps the system's error as its cause (for logs and callers walking
/// `source()`), while its message names the file.
#[test]
fn a_storage_error_keeps_the_systems_error_as_its_cause() {
    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("gone.safehold");
    let e = match safehold_core::storage::backend::at(&missing).expect("a local backend").read_range(0, 16) {
        Err(e) => e,
        Ok(_) => panic!("a missing file is read"),
    };
    assert!(e.message.contains("gone.safehold"), "{}", e.message);
    let cause = std::error::Error::source(&e).expect("a cause").to_string();
    assert!(cause.contains("No such file") && cause != e.message, "the system's own words: {cause}");
}
