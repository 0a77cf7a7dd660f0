//! Hostile input, built by each test: what an attacker can put in a file, an archive or a
//! request must never reach SQL, drop rows silently, exhaust memory, or get round a role check.
//! Each case was found by trying (issue 21) and stays here as a fixed case.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use safehold_core::migrate::rules::{Action, Op, Rule};
use safehold_core::migrate::{self, Endpoints, MigrationReport, MigrationSpec, MigrationType};
use safehold_core::source::{no_progress, CancelToken};
use sha2::Digest;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

use crate::support::ScratchDb;

const SCHEMA: &str = "
    CREATE TABLE tenants (id text PRIMARY KEY, name text NOT NULL);
    CREATE TABLE projects (id serial PRIMARY KEY, tenant_id text NOT NULL REFERENCES tenants(id), title text NOT NULL, budget integer);
    CREATE TABLE victim (x int);
    INSERT INTO victim VALUES (1);";

async fn platform() -> ScratchDb {
    let db = ScratchDb::create().await;
    db.execute(SCHEMA).await;
    db.execute(
        "INSERT INTO tenants VALUES ('acme', 'Acme'), ('beta', 'Beta');
         INSERT INTO projects (tenant_id, title, budget) SELECT 'acme', 'p' || g, g * 50000 FROM generate_series(1, 4) g;
         INSERT INTO projects (tenant_id, title, budget) VALUES ('beta', 'b1', 7);",
    )
    .await;
    db
}

async fn scalar(url: &str, sql: &str) -> Option<String> {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar(AssertSqlSafe(sql.to_string())).fetch_one(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn run(s: &MigrationSpec, e: &Endpoints, commit: bool) -> safehold_core::Result<MigrationReport> {
    migrate::execute(s, e, commit, &CancelToken::new(), &no_progress()).await
}

fn ends(source: Option<&ScratchDb>, target: Option<&ScratchDb>) -> Endpoints {
    Endpoints { source_url: source.map(ScratchDb::url), target_url: target.map(ScratchDb::url), tenant_column: "tenant_id".into(), tenants_table: "tenants".into(), ..Default::default() }
}

fn import(files: &[&Path], tenant: &str) -> MigrationSpec {
    MigrationSpec {
        migration_type: Some(MigrationType::DataImport),
        source_files: files.iter().map(|f| f.display().to_string()).collect(),
        target_tenant_id: Some(tenant.into()),
        ..Default::default()
    }
}

async fn export(src: &ScratchDb, tenant: &str, to: &Path) {
    let s = MigrationSpec { migration_type: Some(MigrationType::DataExport), source_tenant_ids: vec![tenant.into()], target_file: Some(to.display().to_string()), ..Default::default() };
    run(&s, &ends(Some(src), None), true).await.expect("export");
}

fn entries(path: &Path) -> BTreeMap<String, Vec<u8>> {
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

/// Writes `files` as a portable export whose manifest's sizes and checksums are recomputed (an
/// attacker can always do that), after `manifest` changes the manifest.
fn forge(to: &Path, mut files: BTreeMap<String, Vec<u8>>, manifest: impl Fn(&mut serde_json::Value)) {
    let mut m: serde_json::Value = serde_json::from_slice(&files.remove("manifest.json").expect("a manifest")).expect("json");
    m["files"] = files.iter().map(|(p, d)| serde_json::json!({"path": p, "bytes": d.len(), "sha256": hex::encode(sha2::Sha256::digest(d))})).collect();
    manifest(&mut m);
    let mut w = zip::ZipWriter::new(std::fs::File::create(to).expect("create"));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    w.start_file("manifest.json", opts).expect("start");
    w.write_all(&serde_json::to_vec(&m).expect("json")).expect("write");
    for (name, data) in files {
        w.start_file(name, opts).expect("start");
        w.write_all(&data).expect("write");
    }
    w.finish().expect("finish");
}

fn set_type(files: &mut BTreeMap<String, Vec<u8>>, table: &str, column: &str, ty: &str) {
    let mut schema: serde_json::Value = serde_json::from_slice(&files["schema.json"]).expect("schema");
    for t in schema["tables"].as_array_mut().expect("tables") {
        if t["name"] == table {
            for c in t["columns"].as_array_mut().expect("columns") {
                if c["name"] == column {
                    c["type"] = ty.into();
                }
            }
        }
    }
    files.insert("schema.json".into(), serde_json::to_vec(&schema).expect("json"));
}

/// Issue 21 #1: a type in schema.json is never SQL, in a dry run or a real one; a rule's value
/// is bound.
#[tokio::test(flavor = "multi_thread")]
async fn a_type_or_a_rule_value_from_an_export_never_runs_as_sql() {
    let src = platform().await;
    let dir = tempfile::tempdir().expect("tmp");
    let clean = dir.path().join("acme.zip");
    export(&src, "acme", &clean).await;
    let mut files = entries(&clean);
    let payload = "integer) IS NOT NULL; COMMIT; DROP TABLE victim; CREATE TABLE pwned(x int); BEGIN; SELECT (1";
    set_type(&mut files, "public.projects", "budget", payload);
    let hostile = dir.path().join("hostile.zip");
    forge(&hostile, files, |_| {});

    let dst = ScratchDb::create().await;
    dst.execute(SCHEMA).await;
    dst.execute("INSERT INTO tenants VALUES ('t1', 'T1')").await;
    let mut s = import(&[&hostile], "t1");
    // Rows over 100000 dropped: the comparison is made, but never with the file's type as SQL.
    s.rules = vec![
        Rule { table: "public.projects".into(), column: "budget".into(), action: Action::DropRow { op: Op::Gt, value: Some("100000".into()) } },
        Rule { table: "public.projects".into(), column: "title".into(), action: Action::Set { value: Some("x'); DROP TABLE victim; --".into()) } },
    ];
    let dry = run(&s, &ends(None, Some(&dst)), false).await;
    let real = run(&s, &ends(None, Some(&dst)), true).await;
    for url in [dst.url(), src.url()] {
        assert_eq!(scalar(&url, "SELECT to_regclass('public.pwned')::text").await, None, "no table was created by the file");
        assert_eq!(scalar(&url, "SELECT count(*)::text FROM victim").await.as_deref(), Some("1"), "victim is still there");
    }
    // The comparison casts to the target's type of the column (the file's type is only a hint):
    // 50000 and 100000 are kept.
    let dry = dry.expect("the dry run runs");
    assert!(!dry.committed);
    assert_eq!(scalar(&dst.url(), "SELECT count(*)::text FROM projects").await.as_deref(), Some("2"), "{real:?}");
    assert_eq!(scalar(&dst.url(), "SELECT string_agg(DISTINCT title, ',') FROM projects").await.as_deref(), Some("x'); DROP TABLE victim; --"), "the value is written as a value");

    // A table the target lacks, mapped onto one it has: the file's type, once the server has
    // named it, is what the comparison casts to; one it cannot name compares text.
    for (ty, kept) in [("pg_catalog.int4", "1"), (payload, "4")] {
        let mut files = entries(&clean);
        let csv = files.remove("tables/public.projects.csv").expect("csv");
        files.remove("tables/public.projects.jsonl");
        files.insert("tables/public.plans.csv".into(), csv);
        let mut schema: serde_json::Value = serde_json::from_slice(&files["schema.json"]).expect("schema");
        for t in schema["tables"].as_array_mut().expect("tables") {
            if t["name"] == "public.projects" {
                t["name"] = "public.plans".into();
            }
        }
        files.insert("schema.json".into(), serde_json::to_vec(&schema).expect("json"));
        set_type(&mut files, "public.plans", "budget", ty);
        let renamed = dir.path().join("renamed.zip");
        forge(&renamed, files, |m| {
            let n = m["tables"]["public.projects"].take();
            m["tables"].as_object_mut().expect("tables").remove("public.projects");
            m["tables"]["public.plans"] = n;
        });
        let dst2 = ScratchDb::create().await;
        dst2.execute(SCHEMA).await;
        dst2.execute("INSERT INTO tenants VALUES ('t1', 'T1')").await;
        let mut s2 = import(&[&renamed], "t1");
        // Without a mapping, the table the target lacks is an error naming it.
        let err = run(&s2, &ends(None, Some(&dst2)), true).await.expect_err("unmapped");
        assert!(err.message.contains("public.plans"), "{}", err.message);
        s2.mapping = vec![
            migrate::TableMapping { source: "public.tenants".into(), target: "public.tenants".into(), columns: BTreeMap::from([("id".into(), "id".into()), ("name".into(), "name".into())]), ..Default::default() },
            migrate::TableMapping {
                source: "public.plans".into(),
                target: "public.projects".into(),
                columns: ["id", "tenant_id", "title", "budget"].iter().map(|c| (c.to_string(), c.to_string())).collect(),
                ..Default::default()
            },
        ];
        s2.rules = vec![Rule { table: "public.plans".into(), column: "budget".into(), action: Action::DropRow { op: Op::Gt, value: Some("99999".into()) } }];
        run(&s2, &ends(None, Some(&dst2)), true).await.expect("import");
        // As integers only 50000 is at most 99999; as text every value sorts before "99999".
        assert_eq!(scalar(&dst2.url(), "SELECT count(*)::text FROM projects").await.as_deref(), Some(kept), "type {ty}");
        assert_eq!(scalar(&dst2.url(), "SELECT to_regclass('public.pwned')::text").await, None);
    }
}

/// Issue 21 #6: a JSON Lines line `\.` (COPY's end of data) does not end the import; every line
/// that is not one JSON object is an error naming it, and nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn a_json_lines_line_that_ends_copy_is_an_error_not_the_end() {
    let dst = platform().await;
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("projects.jsonl");
    std::fs::write(&f, "{\"title\": \"one\", \"budget\": 1}\n\\.\n{\"title\": \"two\", \"budget\": 2}\n").expect("write");
    let before = scalar(&dst.url(), "SELECT count(*)::text FROM projects").await;
    let err = run(&import(&[&f], "beta"), &ends(None, Some(&dst)), true).await.expect_err("refused");
    assert!(err.message.contains("line 2") && err.message.contains("not valid JSON"), "{}", err.message);
    assert_eq!(scalar(&dst.url(), "SELECT count(*)::text FROM projects").await, before, "nothing written");
    // Without it, every line arrives, including ones holding COPY's special characters.
    std::fs::write(&f, "{\"title\": \"one\\\\.\", \"budget\": 1}\n{\"title\": \"\\\\.\", \"budget\": 2}\n{\"title\": \"tab\\there\\nnewline\", \"budget\": 3}\n").expect("write");
    run(&import(&[&f], "beta"), &ends(None, Some(&dst)), true).await.expect("import");
    assert_eq!(
        scalar(&dst.url(), "SELECT string_agg(title, '|' ORDER BY budget) FROM projects WHERE tenant_id = 'beta' AND budget < 7").await.as_deref(),
        Some("one\\.|\\.|tab\there\nnewline")
    );
    // A file for a table the target does not have is an error, not a warning.
    let g = dir.path().join("projekte.csv");
    std::fs::write(&g, "title,budget\nx,1\n").expect("write");
    let err = run(&import(&[&g], "beta"), &ends(None, Some(&dst)), true).await.expect_err("refused");
    assert!(err.message.contains("projekte") && err.message.contains("--mapping"), "{}", err.message);
}

/// Issue 21 #6, #7: a manifest and a schema that disagree, and a ZIP whose entry holds far more
/// than the manifest says (a zip bomb) are refused before anything is staged.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_or_bombed_export_is_refused_before_it_is_read() {
    let src = platform().await;
    let dir = tempfile::tempdir().expect("tmp");
    let clean = dir.path().join("acme.zip");
    export(&src, "acme", &clean).await;
    let dst = ScratchDb::create().await;
    dst.execute(SCHEMA).await;
    dst.execute("INSERT INTO tenants VALUES ('t1', 'T1')").await;
    let e = ends(None, Some(&dst));

    // The manifest counts a table that schema.json does not describe.
    let forged = dir.path().join("forged.zip");
    forge(&forged, entries(&clean), |m| {
        m["tables"]["public.ghost"] = 3.into();
    });
    let err = run(&import(&[&forged], "t1"), &e, false).await.expect_err("refused");
    assert!(err.message.contains("public.ghost") && err.message.contains("schema.json does not describe"), "{}", err.message);

    // An entry the manifest says holds a few bytes, holding 64 MiB of zeros (64 KiB compressed).
    let bomb = dir.path().join("bomb.zip");
    let files = entries(&clean);
    let small = files["tables/public.projects.csv"].len();
    {
        let mut m: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).expect("json");
        for f in m["files"].as_array_mut().expect("files") {
            if f["path"] == "tables/public.projects.csv" {
                f["bytes"] = small.into();
            }
        }
        let mut w = zip::ZipWriter::new(std::fs::File::create(&bomb).expect("create"));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        w.start_file("manifest.json", opts).expect("start");
        w.write_all(&serde_json::to_vec(&m).expect("json")).expect("write");
        for (name, data) in files.iter().filter(|(n, _)| *n != "manifest.json") {
            w.start_file(name.clone(), opts).expect("start");
            w.write_all(data).expect("write");
            if name == "tables/public.projects.csv" {
                let zeros = vec![b'0'; 1 << 20];
                for _ in 0..64 {
                    w.write_all(&zeros).expect("write");
                }
            }
        }
        w.finish().expect("finish");
    }
    // The ZIP itself lies too: its headers say the entry holds what the manifest says.
    let mut bytes = std::fs::read(&bomb).expect("bomb");
    let name = b"tables/public.projects.csv";
    let lie = u32::try_from(small).expect("small").to_le_bytes();
    for i in 0..bytes.len().saturating_sub(46) {
        if bytes[i..i + 4] == [0x50, 0x4b, 0x01, 0x02] && bytes[i + 46..].starts_with(name) {
            bytes[i + 24..i + 28].copy_from_slice(&lie);
        }
        if bytes[i..i + 4] == [0x50, 0x4b, 0x03, 0x04] && bytes[i + 30..].starts_with(name) {
            bytes[i + 22..i + 26].copy_from_slice(&lie);
        }
    }
    std::fs::write(&bomb, &bytes).expect("write");
    assert!(bytes.len() < 2 << 20);
    let err = run(&import(&[&bomb], "t1"), &e, true).await.expect_err("refused");
    assert!(err.message.contains("holds more than it says"), "{}", err.message);
    assert_eq!(scalar(&dst.url(), "SELECT count(*)::text FROM projects").await.as_deref(), Some("0"));
}

/// Every row of the tables of a database, as text, by table (for "the same").
async fn all_rows(url: &str) -> BTreeMap<String, Vec<String>> {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let tables: Vec<String> = sqlx::query_scalar("SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1")
        .fetch_all(&mut conn)
        .await
        .expect("tables");
    let mut out = BTreeMap::new();
    for t in tables {
        let mut rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!("SELECT x::text FROM {t} x"))).fetch_all(&mut conn).await.expect("rows");
        rows.sort();
        out.insert(t, rows);
    }
    out
}

/// Issue 21 #5, #12: tables whose names look like another table's sections (`X#keys` beside `X`,
/// `a."b.c"` beside `"a.b".c`) and schemas with a dot round-trip through a chain of incremental
/// backups, deep-verify, test-restore, and restore selectively by the names an administrator types.
#[tokio::test(flavor = "multi_thread")]
async fn names_that_look_like_other_sections_round_trip_verify_and_restore_selectively() {
    use safehold_core::configurations::BackupType;
    use safehold_core::restore::{self, RestoreRequest, RestoreType};
    use safehold_core::source::SourceSpec;
    let src = ScratchDb::create().await;
    src.execute(
        r#"CREATE TABLE "X" (id int PRIMARY KEY, v text);
           CREATE TABLE "X#keys" (id int PRIMARY KEY, w text, extra int);
           CREATE SCHEMA a; CREATE SCHEMA "a.b"; CREATE SCHEMA "my.schema";
           CREATE TABLE a."b.c" (id int PRIMARY KEY, v text);
           CREATE TABLE "a.b".c (id int PRIMARY KEY, v text, n int);
           CREATE TABLE "my.schema".orders (id int PRIMARY KEY, total numeric);
           INSERT INTO "X" SELECT g, 'x' || g FROM generate_series(1, 6) g;
           INSERT INTO "X#keys" SELECT g, 'k' || g, g FROM generate_series(1, 9) g;
           INSERT INTO a."b.c" SELECT g, 'abc' || g FROM generate_series(1, 4) g;
           INSERT INTO "a.b".c SELECT g, 'ab.c' || g, g FROM generate_series(1, 7) g;
           INSERT INTO "my.schema".orders SELECT g, g * 1.5 FROM generate_series(1, 5) g;"#,
    )
    .await;
    let repo = crate::backup::repo_with_password("sections");
    let spec = SourceSpec::Postgres { url: src.url() };
    repo.backup_typed(spec.clone(), BackupType::Full).await;
    src.execute(r#"UPDATE "X" SET v = 'changed' WHERE id = 2; DELETE FROM "X#keys" WHERE id > 6; INSERT INTO "X" VALUES (7, 'new'); UPDATE a."b.c" SET v = 'd' WHERE id = 1; DELETE FROM "a.b".c WHERE id = 7;"#).await;
    repo.backup_typed(spec.clone(), BackupType::Incremental).await;
    src.execute(r#"INSERT INTO "X#keys" VALUES (20, 'late', 1); DELETE FROM "X" WHERE id = 1;"#).await;
    let last = repo.backup_typed(spec.clone(), BackupType::Incremental).await;
    let want = all_rows(&src.url()).await;

    // The chain restores exactly; deep verify and a test restore agree.
    let restored = ScratchDb::create().await;
    repo.restore(Path::new(&last.archive), &SourceSpec::Postgres { url: restored.url() }).await.expect("restore the chain");
    assert_eq!(all_rows(&restored.url()).await, want);
    let mut reader = safehold_core::archive::ArchiveReader::open(Path::new(&last.archive)).expect("archive");
    repo.keys.unlock_archive(&mut reader, None).await.expect("unlock");
    safehold_core::verify::deep_with(reader).expect("deep verify");
    let req = RestoreRequest::new(repo.path(), String::new());
    let opened = restore::open(&req, &repo.keys).await.expect("open");
    let report = safehold_core::restore::restore_test(&opened, &format!("{}/postgres", crate::support::pg_base()), Some(&src.url()), &CancelToken::new(), &no_progress()).await.expect("test restore");
    assert!(report.ok && report.tables.len() == 5, "{report:?}");

    // Selective restore by the names typed: with and without quotes, the table alone.
    src.execute(r#"DELETE FROM "my.schema".orders; DELETE FROM "a.b".c; UPDATE "X#keys" SET w = 'gone'; UPDATE "X" SET v = 'kept'"#).await;
    let mut req = RestoreRequest::new(repo.path(), src.url());
    req.restore_type = RestoreType::Selective;
    req.tables = vec!["my.schema.orders".into(), r#""a.b".c"#.into(), "X#keys".into()];
    req.safety_backup = false;
    let opened = restore::open(&req, &repo.keys).await.expect("open");
    restore::execute(&req, opened, &repo.keys, &CancelToken::new(), &no_progress()).await.expect("selective restore");
    let now = all_rows(&src.url()).await;
    for t in [r#""my.schema".orders"#, r#""a.b".c"#, r#"public."X#keys""#] {
        assert_eq!(now.get(t), want.get(t), "{t} is as backed up");
    }
    assert!(now[r#"public."X""#].iter().all(|r| r.contains("kept")), "X was not restored");
    assert_eq!(now[r#"a."b.c""#], want[r#"a."b.c""#], "a.\"b.c\" untouched");
}

/// Issue 21 #17: probing a connection (any host and port, any local file as SQLite) needs a
/// session and the permission to add connections, and is audited; a read-only admin is refused.
#[tokio::test(flavor = "multi_thread")]
async fn probing_a_connection_needs_a_session_and_a_permission_and_is_audited() {
    use safehold_core::auth::operators;
    use safehold_core::connections;
    let h = crate::support::home().await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("secret.db");
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", file.display())).await.expect("sqlite");
    sqlx::raw_sql("CREATE TABLE payroll (id integer primary key, salary int); INSERT INTO payroll VALUES (1, 100000);").execute(&mut c).await.expect("table");
    drop(c);
    let input = connections::ConnectionInput::from_url("probe", &format!("sqlite://{}", file.display())).expect("input");
    // Before operators exist the local administrator may.
    connections::probe_as(&h.ctx, &input).await.expect("the local administrator probes");
    operators::create_first(&h.ctx, "alice", "a long enough password").await.expect("first");
    operators::add(&h.ctx, "rita", operators::Role::ReadOnlyAdmin, "a long enough password").await.expect("rita");
    // Nobody signed in: refused.
    let nobody = safehold_core::Ctx::open(&h.ctx.home).await.expect("open");
    assert_eq!(connections::probe_as(&nobody, &input).await.expect_err("nobody").code, safehold_core::ErrorCode::PermissionDenied);
    let rita = safehold_core::Ctx::open(&h.ctx.home).await.expect("open");
    operators::sign_in(&rita, "rita", "a long enough password", false).await.expect("rita");
    let err = connections::probe_as(&rita, &input).await.expect_err("read-only");
    assert!(err.message.contains("backup:manage_all"), "{}", err.message);
    let r = connections::probe_as(&h.ctx, &input).await.expect("alice probes");
    assert_eq!(r.table_count, 1);
    let audited: Vec<(String, String)> = sqlx::query_as("SELECT coalesce(o.name, ''), a.outcome FROM audit_log a LEFT JOIN operators o ON o.id = a.operator_id WHERE a.action = 'connection.probe' ORDER BY a.id")
        .fetch_all(&h.ctx.pool)
        .await
        .expect("audit");
    assert_eq!(audited.iter().map(|(w, o)| format!("{w}:{o}")).collect::<Vec<_>>(), ["local administrator:success", "rita:denied", "alice:success"]);
}

/// Someone who can write to the storage but holds no key of the repository (issue 21, #4): the
/// repository's public key lets them write an archive that decrypts with the repository's key.
/// Only an archive signed by a writer a holder of the master key approved is restored or deep
/// verified; a forged signature, a writer the attacker added to the repository file, and a public
/// key swapped in the repository file are each refused, and `--trust-unsigned` is the explicit way
/// round.
#[tokio::test(flavor = "multi_thread")]
async fn only_archives_of_approved_writers_are_restored_and_a_swapped_repository_key_is_refused() {
    use safehold_core::archive::ArchiveReader;
    use safehold_core::backup::{self, BackupRequest};
    use safehold_core::repository::{Repository, CONFIG_FILE};
    use safehold_core::restore;
    use safehold_core::source::SourceSpec;
    use safehold_core::keys::unlock::KeySources;
    use safehold_core::writers::{Provenance, WriterKey};
    use safehold_core::ErrorCode;

    let db = platform().await;
    let dir = tempfile::tempdir().expect("tmp");
    let repo_dir = dir.path().join("repo");
    let pw = dir.path().join("password");
    std::fs::write(&pw, "the owner's password").expect("password");
    let owner_writer = WriterKey::for_home(&dir.path().join("owner-home")).expect("owner's writer key");
    let owner = KeySources { password_file: Some(pw.clone()), writer: Some(owner_writer.clone()), ..Default::default() };
    let (repo, mk) = owner.open_repository_for_backup(&repo_dir).await.expect("repository");
    assert!(repo.config.public_key.is_some(), "the repository has a public key to seal backups to");
    let mut req = BackupRequest::new(SourceSpec::Postgres { url: db.url() });
    req.signer = Some(owner_writer.clone());
    let good = backup::run(&repo, &mk, &req, &CancelToken::new(), &no_progress()).await.expect("the owner's backup");
    let good = std::path::PathBuf::from(&good.archive);

    // What an archive says of its writer, read with the repository's key.
    let provenance = |keys: KeySources, path: std::path::PathBuf| async move {
        let repo = Repository::open(&repo_dir_of(&path)).expect("open").expect("a repository");
        let mut reader = ArchiveReader::open(&path).expect("open archive");
        keys.unlock_archive_unchecked(&mut reader, Some(&repo)).await.expect("unlock");
        safehold_core::writers::provenance(&reader, repo.config.writers.as_ref()).expect("provenance")
    };
    let restore_into = |keys: &KeySources, path: &std::path::Path| {
        let keys = keys.clone();
        let path = path.to_path_buf();
        async move {
            let target = ScratchDb::create().await;
            let repo = Repository::open(&repo_dir_of(&path))?;
            let chain = keys.open_chain(&path, repo.as_ref()).await?;
            restore::restore_chain(chain, &SourceSpec::Postgres { url: target.url() }, 1, false, &CancelToken::new(), &no_progress()).await.map(drop)
        }
    };
    assert_eq!(provenance(owner.clone(), good.clone()).await, Provenance::Approved { writer: owner_writer.name.clone(), public_key: owner_writer.public_hex() });
    restore_into(&owner, &good).await.expect("the owner's own backup restores");

    // The attacker: another home, no password, no keychain — only the storage.
    let mallory = WriterKey::for_home(&dir.path().join("mallory-home")).expect("mallory's writer key");
    let attacker = KeySources { writer: Some(mallory.clone()), ..Default::default() };
    let (arepo, amk) = attacker.open_repository_for_sealed_backup(&repo_dir).await.expect("a sealed backup needs no secret");
    assert!(amk.is_none(), "the attacker has no master key");
    let mut req = BackupRequest::new(SourceSpec::Postgres { url: db.url() });
    req.signer = Some(mallory.clone());
    let planted = backup::run_with(&arepo, None, &req, &CancelToken::new(), &no_progress()).await.expect("a planted archive");
    let planted = std::path::PathBuf::from(&planted.archive);
    assert_eq!(provenance(owner.clone(), planted.clone()).await, Provenance::Unapproved { writer: mallory.name.clone(), public_key: mallory.public_hex() });
    let e = restore_into(&owner, &planted).await.expect_err("a planted archive is refused");
    assert_eq!(e.code, ErrorCode::AuthFailed, "{e}");
    assert!(e.message.contains("no holder of this repository's key approved") && e.message.contains("approve-writer") && e.message.contains("nothing was restored"), "{e}");
    // Deep verify opens archives the same way.
    let mut reader = ArchiveReader::open(&planted).expect("open");
    let e = owner.unlock_archive(&mut reader, Repository::open(&repo_dir).expect("open").as_ref()).await.expect_err("deep verify refuses it too");
    assert_eq!(e.code, ErrorCode::AuthFailed, "{e}");

    // Adding itself to the repository file's list does not help: the list is authenticated by
    // the master key.
    let config_path = repo_dir.join(CONFIG_FILE);
    let original_config = std::fs::read_to_string(&config_path).expect("config");
    let mut config: serde_json::Value = serde_json::from_str(&original_config).expect("json");
    config["writers"]["list"].as_array_mut().expect("a list of writers").push(serde_json::json!({"public_key": mallory.public_hex(), "name": "mallory", "approved_at": "2026-01-01T00:00:00Z"}));
    std::fs::write(&config_path, serde_json::to_string(&config).expect("json")).expect("write config");
    assert!(matches!(provenance(owner.clone(), planted.clone()).await, Provenance::Unapproved { .. }), "a writer added without the master key is not approved");
    std::fs::write(&config_path, &original_config).expect("restore config");

    // The administrator's explicit override.
    let trusting = KeySources { trust_unsigned: true, ..owner.clone() };
    restore_into(&trusting, &planted).await.expect("--trust-unsigned restores it");

    // Approved by a holder of the master key: restored like any other.
    let mut repo = Repository::open(&repo_dir).expect("open").expect("repository");
    assert!(repo.approve_writer(&mk, &mallory.public_hex(), "mallory's server").expect("approve"), "a new writer");
    assert_eq!(repo.approved_writers(&mk).len(), 2, "the owner and mallory's server");
    restore_into(&owner, &planted).await.expect("an approved writer's backup restores");

    // A signature that does not match the archive: forged.
    let mut bytes = std::fs::read(&good).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&good, &bytes).expect("write");
    assert_eq!(provenance(owner.clone(), good.clone()).await, Provenance::Forged);
    let e = restore_into(&owner, &good).await.expect_err("a forged archive is refused");
    assert!(e.message.contains("not as its writer signed it"), "{e}");
    let e = safehold_core::verify::quick(&good, None).expect_err("even a quick verify sees it");
    assert!(e.message.contains("not as its writer signed it"), "{e}");

    // The repository file's public key swapped for one the attacker holds: a home that wrote
    // to the repository before refuses to seal to the new key.
    let other = tempfile::tempdir().expect("tmp");
    let (other_repo, _) = KeySources { password_file: Some(pw.clone()), writer: Some(mallory.clone()), ..Default::default() }.open_repository_for_backup(&other.path().join("r")).await.expect("another repository");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).expect("config")).expect("json");
    config["public_key"] = serde_json::json!(other_repo.config.public_key.clone().expect("a public key"));
    std::fs::write(&config_path, serde_json::to_string(&config).expect("json")).expect("write config");
    let e = attacker.open_repository_for_sealed_backup(&repo_dir).await.expect_err("a swapped public key is refused");
    assert!(e.message.contains("its repository file was replaced") && e.message.contains("nothing was written"), "{e}");
}

fn repo_dir_of(archive: &Path) -> std::path::PathBuf {
    let mut d = archive.parent().expect("a folder").to_path_buf();
    while !d.join(safehold_core::repository::CONFIG_FILE).exists() {
        d = d.parent().expect("inside a repository").to_path_buf();
    }
    d
}

/// An archive from before archives were signed (the fuzz seed: format 1) carries no signature: it
/// is refused unless the administrator says `--trust-unsigned`, or this home's catalog recorded
/// its checksum when it wrote it — and then only while not one byte of it changed.
#[tokio::test(flavor = "multi_thread")]
async fn an_unsigned_archive_opens_only_when_trusted_explicitly_or_vouched_for_by_the_catalog() {
    use safehold_core::archive::ArchiveReader;
    use safehold_core::keys::unlock::KeySources;
    use safehold_core::writers::Provenance;
    let dir = tempfile::tempdir().expect("tmp");
    let old = dir.path().join("old.shar");
    std::fs::copy(std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/archive_reader/seed.shar"), &old).expect("copy the seed");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "fuzz").expect("pw");
    let keys = KeySources { password_file: Some(pw), ..Default::default() };
    let open = |keys: KeySources, path: std::path::PathBuf| async move {
        let mut reader = ArchiveReader::open(&path).expect("open");
        keys.unlock_archive(&mut reader, None).await
    };
    let reader = ArchiveReader::open(&old).expect("open");
    assert!(reader.header.format_version < 3 && reader.header.writer.is_none(), "an archive from before signing");
    assert_eq!(safehold_core::writers::provenance(&reader, None).expect("provenance"), Provenance::Unsigned);
    let sha = reader.quick_check().expect("check").sha256;
    let e = open(keys.clone(), old.clone()).await.expect_err("refused by default");
    assert!(e.message.contains("carries no writer's signature") && e.message.contains("--trust-unsigned"), "{e}");
    open(KeySources { trust_unsigned: true, ..keys.clone() }, old.clone()).await.expect("--trust-unsigned opens it");
    let vouched = KeySources { vouched: [sha].into_iter().collect(), ..keys.clone() };
    open(vouched.clone(), old.clone()).await.expect("the catalog's checksum vouches for it");
    // One byte of the header's padding changed (the archive still opens): no longer vouched for.
    let mut bytes = std::fs::read(&old).expect("read");
    let at = bytes.len() - 150;
    bytes[at] ^= 0xff;
    std::fs::write(&old, &bytes).expect("write");
    let e = open(vouched, old.clone()).await.expect_err("a changed archive is not the one the catalog recorded");
    assert!(e.message.contains("carries no writer's signature") || e.message.contains("damaged") || e.message.contains("authentication"), "{e}");
}
