//! The backup engine end to end: exact round trips (Pagila, a schema of our own with every
//! feature and hostile values, Chinook in SQLite), hostile archives, keys.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use safehold_core::archive::ArchiveReader;
use safehold_core::backup::{self, BackupRequest, BackupOutcome};
use safehold_core::repository::Repository;
use safehold_core::restore;
use safehold_core::source::{no_progress, CancelToken, Progress, ProgressSink, SourceSpec};
use safehold_core::keys::unlock::KeySources;
use safehold_core::{verify, ErrorCode};
use sqlx::{AssertSqlSafe, Connection as _};

use crate::support::{fixture_copy, pg_base, ScratchDb};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(rel)
}

fn psql_file(db: &ScratchDb, file: &Path) {
    let out = Command::new("psql").args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url(), "-f"]).arg(file).output().expect("psql");
    assert!(out.status.success(), "loading {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
}

/// pg_dump's view of a database, without its own comments, SET lines and random \restrict keys.
pub fn pg_dump(db: &ScratchDb, args: &[&str], sort: bool) -> String {
    let out = Command::new("pg_dump").args(args).args(["--no-owner", "--no-privileges", &db.url()]).output().expect("pg_dump");
    assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !(l.is_empty() || l.starts_with("--") || l.starts_with("SET ") || l.starts_with("SELECT pg_catalog.set_config") || l.starts_with("\\restrict") || l.starts_with("\\unrestrict")))
        .map(str::to_string)
        .collect();
    if sort {
        lines.sort();
    }
    lines.join("\n")
}

/// Every materialized view of a database and its rows, as text in order.
fn matview_rows(db: &ScratchDb) -> Vec<(String, String)> {
    let psql = |sql: &str| {
        let out = Command::new("psql").args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", &db.url(), "-c", sql]).output().expect("psql");
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    };
    let names = psql("SELECT format('%I.%I', schemaname, matviewname) FROM pg_matviews ORDER BY 1");
    names.lines().map(|v| (v.to_string(), psql(&format!("SELECT t::text FROM {v} t ORDER BY 1")))).collect()
}

pub struct Repo {
    pub dir: tempfile::TempDir,
    pub keys: KeySources,
}

pub fn repo_with_password(password: &str) -> Repo {
    let dir = tempfile::tempdir().expect("tmp");
    let pw = dir.path().join("password");
    std::fs::write(&pw, password).expect("password file");
    Repo { keys: KeySources { password_file: Some(pw), ..Default::default() }, dir }
}

impl Repo {
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("repo")
    }
    pub async fn backup(&self, source: SourceSpec) -> BackupOutcome {
        let (repo, mk) = self.keys.open_repository_for_backup(&self.path()).await.expect("open repository");
        backup::run(&repo, &mk, &BackupRequest::new(source), &CancelToken::new(), &no_progress()).await.expect("backup")
    }
    pub async fn backup_typed(&self, source: SourceSpec, t: safehold_core::configurations::BackupType) -> BackupOutcome {
        let (repo, mk) = self.keys.open_repository_for_backup(&self.path()).await.expect("open repository");
        let mut req = BackupRequest::new(source);
        req.backup_type = t;
        backup::run(&repo, &mk, &req, &CancelToken::new(), &no_progress()).await.expect("backup")
    }
    pub async fn restore(&self, archive: &Path, target: &SourceSpec) -> safehold_core::Result<restore::RestoreOutcome> {
        let repo = Repository::open(&self.path())?;
        let chain = self.keys.open_chain(archive, repo.as_ref()).await?;
        restore::restore_chain(chain, target, 2, false, &CancelToken::new(), &no_progress()).await
    }
}

/// Restores `archive` with `jobs` connections into a new database that the restore creates (the
/// parallel restore); returns the database (dropped with the value) and what the restore said.
pub async fn restore_into_new_database(keys: &KeySources, archive: &Path, jobs: usize, cancel: &CancelToken, progress: &ProgressSink) -> (ScratchDb, safehold_core::Result<restore::RestoreOutcome>) {
    let name = format!("safehold_test_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{}/{name}", pg_base());
    assert!(safehold_core::source::postgres::create_database(&url).await.expect("create"));
    let db = ScratchDb { name, base: crate::support::pg_base() };
    let chain = keys.open_chain(archive, None).await.expect("chain");
    let result = restore::restore_chain(chain, &SourceSpec::Postgres { url }, jobs, true, cancel, progress).await;
    (db, result)
}

/// Whether the server still has a database of this name.
pub async fn database_exists(name: &str) -> bool {
    let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", pg_base())).await.expect("admin");
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)").bind(name).fetch_one(&mut admin).await.expect("look up a database")
}

async fn pg_round_trip(load: &[&str]) {
    let src = ScratchDb::create().await;
    for f in load {
        psql_file(&src, &fixture(f));
    }
    let repo = repo_with_password("correct horse");
    let out = repo.backup(SourceSpec::Postgres { url: src.url() }).await;
    assert!(out.rows > 0 && out.tables > 0);
    let dst = ScratchDb::create().await;
    let restored = repo.restore(Path::new(&out.archive), &SourceSpec::Postgres { url: dst.url() }).await.expect("restore");
    assert_eq!(restored.rows, out.rows, "every row backed up is restored");
    assert_eq!(pg_dump(&src, &["--schema-only"], false), pg_dump(&dst, &["--schema-only"], false), "the schema is the same");
    assert_eq!(pg_dump(&src, &["--data-only"], true), pg_dump(&dst, &["--data-only"], true), "every row and sequence value is the same");
    let views = matview_rows(&src);
    assert!(views.iter().all(|(_, rows)| !rows.is_empty()), "the source's materialized views have rows: {views:?}");
    assert_eq!(matview_rows(&dst), views, "the materialized views are refreshed (pg_dump does not show their rows)");
    // The same through the parallel restore into a database it creates (loads, indexes and
    // foreign keys on several connections).
    let (par, result) = restore_into_new_database(&repo.keys, Path::new(&out.archive), 3, &CancelToken::new(), &no_progress()).await;
    result.expect("parallel restore");
    assert_eq!(pg_dump(&src, &["--schema-only"], false), pg_dump(&par, &["--schema-only"], false), "the schema is the same (parallel restore)");
    assert_eq!(pg_dump(&src, &["--data-only"], true), pg_dump(&par, &["--data-only"], true), "every row is the same (parallel restore)");
    assert_eq!(matview_rows(&par), views, "the materialized views are refreshed (parallel restore)");
}

/// Legacy inheritance (tables `INHERITS` others, outside partitioning) is restored as the source
/// has it: each child inherits its parents, with the columns, defaults, NOT NULL and CHECK
/// constraints it takes from them and what it has of its own on an inherited column (a default,
/// NOT NULL), a grandchild, a child of two parents, a child whose columns are all its own (made
/// before its parent, then `ALTER TABLE … INHERIT`: it is loaded first), and constraints
/// inherited and local at once. Each
/// table's own rows stay its own through a full restore, a chain whose incremental deleted and
/// changed rows of a parent and of its child (the parent's deletions must not reach the child's
/// rows), and the parallel restore. A selective restore of a child into an empty database
/// creates its parents, empty, and says so.
#[tokio::test(flavor = "multi_thread")]
async fn legacy_inheritance_is_restored_with_inherits_and_each_table_keeps_its_own_rows() {
    let src = ScratchDb::create().await;
    src.execute(
        "CREATE TABLE bikes (id int PRIMARY KEY, name text NOT NULL DEFAULT 'x', wheels int, note text, bell boolean);
         CREATE TABLE vehicles (id int PRIMARY KEY, name text NOT NULL DEFAULT 'x', wheels int CHECK (wheels >= 0), note text);
         ALTER TABLE vehicles ADD CONSTRAINT positive_id CHECK (id > 0);
         ALTER TABLE vehicles ADD CONSTRAINT own_only CHECK (id < 1000000) NO INHERIT;
         CREATE TABLE cars (doors int DEFAULT 4) INHERITS (vehicles);
         ALTER TABLE cars ALTER COLUMN note SET NOT NULL;
         ALTER TABLE cars ALTER COLUMN name SET DEFAULT 'car';
         ALTER TABLE cars ADD PRIMARY KEY (id);
         CREATE TABLE sports_cars (top_speed int) INHERITS (cars);
         CREATE TABLE boats (id int, name text NOT NULL, hull text) INHERITS (vehicles);
         CREATE TABLE amphibians (depth int, name text DEFAULT 'amphibian') INHERITS (cars, boats);
         ALTER TABLE bikes ADD CONSTRAINT vehicles_wheels_check CHECK (wheels >= 0), ADD CONSTRAINT positive_id CHECK (id > 0);
         ALTER TABLE bikes INHERIT vehicles;
         INSERT INTO vehicles (id, name, wheels) SELECT i, 'v' || i, 4 FROM generate_series(1, 50) i;
         INSERT INTO cars (id, name, wheels, note, doors) SELECT i, 'c' || i, 4, 'n', 2 FROM generate_series(1, 40) i;
         INSERT INTO sports_cars (id, wheels, note, top_speed) SELECT i, 4, 's', 300 FROM generate_series(1, 10) i;
         INSERT INTO boats (id, name, hull) SELECT i, 'b' || i, 'wood' FROM generate_series(1, 5) i;
         INSERT INTO amphibians (id, name, note, depth) VALUES (1, 'a', 'n', 3);
         INSERT INTO bikes (id, name, wheels, bell) SELECT i, 'k' || i, 2, true FROM generate_series(1, 7) i;",
    )
    .await;
    let own_rows = |db: &ScratchDb| {
        let out = Command::new("psql").args(["-X", "-A", "-t", &db.url(), "-c"]).arg(
            "SELECT string_agg(format('%s:%s', t, n), ' ' ORDER BY t) FROM (SELECT 'vehicles' t, count(*) n FROM ONLY vehicles UNION ALL SELECT 'cars', count(*) FROM ONLY cars \
             UNION ALL SELECT 'sports_cars', count(*) FROM ONLY sports_cars UNION ALL SELECT 'boats', count(*) FROM ONLY boats UNION ALL SELECT 'amphibians', count(*) FROM ONLY amphibians \
             UNION ALL SELECT 'bikes', count(*) FROM ONLY bikes UNION ALL SELECT 'all vehicles', count(*) FROM vehicles) x",
        ).output().expect("psql");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let repo = repo_with_password("pw");
    let full = repo.backup(SourceSpec::Postgres { url: src.url() }).await;
    assert!(!full.warnings.iter().any(|w| w.contains("inherit")), "inheritance is carried: {:?}", full.warnings);
    let check = |dst: &ScratchDb, how: &str| {
        assert_eq!(pg_dump(&src, &["--schema-only"], false), pg_dump(dst, &["--schema-only"], false), "the schema is the same ({how})");
        assert_eq!(pg_dump(&src, &["--data-only"], true), pg_dump(dst, &["--data-only"], true), "each table's own rows ({how})");
        assert_eq!(own_rows(&src), own_rows(dst), "{how}");
    };
    let dst = ScratchDb::create().await;
    repo.restore(Path::new(&full.archive), &SourceSpec::Postgres { url: dst.url() }).await.expect("restore");
    check(&dst, "full");
    assert_eq!(own_rows(&dst), "all vehicles:113 amphibians:1 bikes:7 boats:5 cars:40 sports_cars:10 vehicles:50");

    // A chain: rows of the parent and of its child deleted and changed, on the same keys; the
    // child rewritten since (VACUUM FULL: the incremental carries it whole, the parent's changes
    // by position).
    src.execute(
        "DELETE FROM ONLY vehicles WHERE id <= 10; UPDATE ONLY vehicles SET note = 'changed' WHERE id BETWEEN 11 AND 15;
         DELETE FROM ONLY cars WHERE id > 35; UPDATE ONLY cars SET doors = 5 WHERE id <= 3; INSERT INTO sports_cars (id, wheels, note) VALUES (99, 4, 'new');",
    )
    .await;
    src.execute("VACUUM FULL cars").await;
    let inc = repo.backup_typed(SourceSpec::Postgres { url: src.url() }, safehold_core::configurations::BackupType::Incremental).await;
    let dst = ScratchDb::create().await;
    repo.restore(Path::new(&inc.archive), &SourceSpec::Postgres { url: dst.url() }).await.expect("restore the chain");
    check(&dst, "full and incremental");
    let (par, result) = restore_into_new_database(&repo.keys, Path::new(&inc.archive), 3, &CancelToken::new(), &no_progress()).await;
    result.expect("parallel restore of the chain");
    check(&par, "parallel, full and incremental");

    // One child, selectively, into an empty database: its parents come with it, empty.
    let empty = ScratchDb::create().await;
    let mut req = restore::RestoreRequest::new(inc.archive.clone(), empty.url());
    req.restore_type = restore::RestoreType::Selective;
    req.tables = vec!["sports_cars".into()];
    let opened = restore::open(&req, &repo.keys).await.expect("open");
    let plan = restore::plan(&req, &opened, true, &CancelToken::new()).await.expect("plan");
    for parent in ["cars", "vehicles"] {
        assert!(plan.warnings.iter().any(|w| w.starts_with(&format!("public.{parent} does not exist in the target: a restored table inherits from it"))), "{:?}", plan.warnings);
    }
    let opened = restore::open(&req, &repo.keys).await.expect("open");
    restore::execute(&req, opened, &repo.keys, &CancelToken::new(), &no_progress()).await.expect("selective restore of a child");
    let mut c = sqlx::PgConnection::connect(&empty.url()).await.expect("connect");
    let counts: (i64, i64, i64) = sqlx::query_as("SELECT (SELECT count(*) FROM ONLY sports_cars), (SELECT count(*) FROM ONLY cars), (SELECT count(*) FROM vehicles)").fetch_one(&mut c).await.expect("count");
    assert_eq!(counts, (11, 0, 11), "the child's rows, its parents empty and inherited from");
}

/// What a backup does not carry yet is named in its warnings (kind, count, names), so nobody
/// learns it at restore time; what it carries is not.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_names_the_objects_it_does_not_carry() {
    let src = ScratchDb::create().await;
    src.execute(
        "CREATE TABLE t (id int PRIMARY KEY, v int); CREATE FUNCTION add_it(int, int) RETURNS int LANGUAGE sql AS 'SELECT $1 + $2'; \
         CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = add_it); CREATE TEXT SEARCH CONFIGURATION my_english (COPY = english); \
         CREATE OPERATOR FAMILY my_family USING btree; \
         CREATE TEXT SEARCH TEMPLATE my_template (INIT = dsimple_init, LEXIZE = dsimple_lexize); \
         CREATE STATISTICS t_stats ON id, v FROM t",
    )
    .await;
    let repo = repo_with_password("pw");
    let out = repo.backup(SourceSpec::Postgres { url: src.url() }).await;
    let said = out.warnings.iter().find(|w| w.starts_with("not in this backup")).unwrap_or_else(|| panic!("{:?}", out.warnings));
    assert!(said.contains("1 operator families made apart (CREATE OPERATOR FAMILY), with their classes (public.my_family)") && said.contains("1 text search templates (public.my_template)"), "{said}");
    assert!(!said.contains("statistics") && !said.contains("operators (") && !said.contains("configurations"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pagila_round_trips_exactly() {
    pg_round_trip(&["pagila/pagila-schema.sql", "pagila/pagila-data.sql"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_with_every_feature_and_hostile_values_round_trips_exactly() {
    pg_round_trip(&["features.sql"]).await;
}

/// Rows of every table of two SQLite files, compared both ways, and their schemas.
pub async fn sqlite_equal(a: &Path, b: &Path) {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", a.display())).await.expect("open a");
    sqlx::query(AssertSqlSafe(format!("ATTACH DATABASE '{}' AS other", b.display()))).execute(&mut conn).await.expect("attach");
    let schema_a: Vec<(String, Option<String>)> = sqlx::query_as("SELECT name, sql FROM main.sqlite_master ORDER BY name").fetch_all(&mut conn).await.expect("schema a");
    let schema_b: Vec<(String, Option<String>)> = sqlx::query_as("SELECT name, sql FROM other.sqlite_master ORDER BY name").fetch_all(&mut conn).await.expect("schema b");
    assert_eq!(schema_a, schema_b, "the same tables, indexes, views and triggers");
    for (name, _) in schema_a.iter().filter(|(n, _)| !n.starts_with("sqlite_autoindex")) {
        let kind: String = sqlx::query_scalar("SELECT type FROM main.sqlite_master WHERE name = ?").bind(name).fetch_one(&mut conn).await.expect("type");
        if kind != "table" {
            continue;
        }
        let q = |x: &str, y: &str| format!("SELECT count(*) FROM (SELECT * FROM {x}.\"{name}\" EXCEPT SELECT * FROM {y}.\"{name}\")");
        for (x, y) in [("main", "other"), ("other", "main")] {
            let diff: i64 = sqlx::query_scalar(AssertSqlSafe(q(x, y))).fetch_one(&mut conn).await.expect("except");
            assert_eq!(diff, 0, "table {name}: rows in {x} missing from {y}");
        }
        let n = |x: &str| format!("SELECT count(*) FROM {x}.\"{name}\"");
        let (na, nb): (i64, i64) = (
            sqlx::query_scalar(AssertSqlSafe(n("main"))).fetch_one(&mut conn).await.expect("count"),
            sqlx::query_scalar(AssertSqlSafe(n("other"))).fetch_one(&mut conn).await.expect("count"),
        );
        assert_eq!(na, nb, "table {name} has as many rows");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn chinook_in_sqlite_round_trips_exactly() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = fixture_copy("chinook/Chinook_Sqlite.sqlite", &tmp);
    let repo = repo_with_password("pw");
    let out = repo.backup(SourceSpec::Sqlite { path: src.clone() }).await;
    assert_eq!(out.tables, 11);
    let target = tmp.path().join("restored.db");
    repo.restore(Path::new(&out.archive), &SourceSpec::Sqlite { path: target.clone() }).await.expect("restore");
    sqlite_equal(&src, &target).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_values_keep_their_storage_class_bit_for_bit() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("values.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", src.display())).await.expect("create");
    sqlx::raw_sql(
        "CREATE TABLE v (id INTEGER PRIMARY KEY AUTOINCREMENT, a, b TEXT, c BLOB, d REAL);
         INSERT INTO v (a, b, c, d) VALUES (9223372036854775807, '', x'0000ff', 0.1), (-0.0, NULL, x'', 1e308), ('12', 'tab\tnl\n\"q\"', NULL, 2.2250738585072014e-308), (9e999, 'ü', zeroblob(3), -9e999), (632 / 7.0, 'a real whose shortest decimal form must parse back exactly', NULL, 90.28571428571429);
         CREATE INDEX v_b ON v (b); CREATE VIEW vv AS SELECT id, b FROM v; PRAGMA user_version = 42;",
    )
    .execute(&mut conn)
    .await
    .expect("fill");
    conn.close().await.expect("close");
    let repo = repo_with_password("pw");
    let out = repo.backup(SourceSpec::Sqlite { path: src.clone() }).await;
    let target = tmp.path().join("restored.db");
    repo.restore(Path::new(&out.archive), &SourceSpec::Sqlite { path: target.clone() }).await.expect("restore");
    sqlite_equal(&src, &target).await;
    let typed = "SELECT typeof(a) || '/' || typeof(c) || '/' || quote(d) || '/' || quote(a) FROM v ORDER BY id";
    let mut s = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", src.display())).await.expect("open");
    let before: Vec<String> = sqlx::query_scalar(typed).fetch_all(&mut s).await.expect("types");
    let mut r = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", target.display())).await.expect("open");
    let after: Vec<String> = sqlx::query_scalar(typed).fetch_all(&mut r).await.expect("types");
    assert_eq!(before, after, "storage classes and values are the same");
    assert!(after[0].starts_with("integer/blob/0.1/9223372036854775807"), "{}", after[0]);
    assert!(after[2].starts_with("text/null/"), "{}", after[2]);
    let version: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(&mut r).await.expect("version");
    assert_eq!(version, 42);
    let seq: i64 = sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'v'").fetch_one(&mut r).await.expect("autoincrement counter");
    assert_eq!(seq, 5, "AUTOINCREMENT counters are carried");
}

/// A SQLite backup reads one consistent state while the application keeps writing (WAL mode, as
/// a live platform runs): transfers between accounts, each a ledger row and two balance updates in
/// one transaction, go on during the backup, and the restored file's balances agree with its
/// ledger. A restore into an existing file is refused and leaves it alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_backup_reads_one_consistent_state_while_the_application_writes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("live.db");
    let url = format!("sqlite://{}?mode=rwc", src.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("create");
    sqlx::raw_sql(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
         CREATE TABLE filler (id INTEGER PRIMARY KEY, b BLOB);
         CREATE TABLE ledger (id INTEGER PRIMARY KEY, from_id INTEGER, to_id INTEGER, amount INTEGER);
         WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 100) INSERT INTO accounts SELECT i, 1000 FROM g;
         WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 40000) INSERT INTO filler SELECT i, randomblob(200) FROM g;",
    )
    .execute(&mut conn)
    .await
    .expect("fill");
    let transfers = || {
        let src = src.clone();
        async move {
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", src.display())).await.expect("open");
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger").fetch_one(&mut c).await.expect("count");
            n
        }
    };
    // The application: a transfer every moment until told to stop.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut i = 0i64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                i += 1;
                let (a, b, amount) = (1 + i % 100, 1 + (i * 7 + 3) % 100, 1 + i % 13);
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "BEGIN IMMEDIATE; UPDATE accounts SET balance = balance - {amount} WHERE id = {a}; INSERT INTO ledger (from_id, to_id, amount) VALUES ({a}, {b}, {amount}); UPDATE accounts SET balance = balance + {amount} WHERE id = {b}; COMMIT;"
                )))
                .execute(&mut conn)
                .await
                .expect("a transfer");
            }
        })
    };
    while transfers().await < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let repo = repo_with_password("pw");
    let before = transfers().await;
    let out = repo.backup(SourceSpec::Sqlite { path: src.clone() }).await;
    let after = transfers().await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.await.expect("the writer");
    assert!(after > before, "the application kept writing during the backup ({before} → {after} transfers)");

    let target = tmp.path().join("restored.db");
    repo.restore(Path::new(&out.archive), &SourceSpec::Sqlite { path: target.clone() }).await.expect("restore");
    let mut r = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", target.display())).await.expect("open");
    let restored: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger").fetch_one(&mut r).await.expect("count");
    assert!((before..=after).contains(&restored), "the backup holds the transfers of one moment during it: {before} ≤ {restored} ≤ {after}");
    let disagree: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM accounts a WHERE a.balance <> 1000 - coalesce((SELECT sum(amount) FROM ledger WHERE from_id = a.id), 0) + coalesce((SELECT sum(amount) FROM ledger WHERE to_id = a.id), 0)",
    )
    .fetch_one(&mut r)
    .await
    .expect("balances");
    assert_eq!(disagree, 0, "every balance agrees with the ledger: the tables were read at the same moment");
    r.close().await.expect("close");

    // Into an existing file: refused, the file untouched.
    let before = std::fs::read(&target).expect("read");
    let err = repo.restore(Path::new(&out.archive), &SourceSpec::Sqlite { path: target.clone() }).await.expect_err("an existing file");
    assert!(err.message.contains("already exists") && err.message.contains("new file"), "{}", err.message);
    assert_eq!(std::fs::read(&target).expect("read"), before, "the existing file is left as it was");
}

/// A demo-sized SQLite source with one table large enough to span several chunks.
async fn multi_chunk_source(dir: &Path) -> PathBuf {
    let path = dir.join("big.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display())).await.expect("create");
    sqlx::raw_sql(
        "CREATE TABLE tenants (id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO tenants VALUES (1, 'a'), (2, 'b');
         CREATE TABLE blobs (id INTEGER PRIMARY KEY, tenant_id INTEGER REFERENCES tenants(id), body BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) INSERT INTO blobs SELECT i, 1 + i % 2, randomblob(8000) FROM n;",
    )
    .execute(&mut conn)
    .await
    .expect("fill");
    conn.close().await.expect("close");
    path
}

fn expect_rejected(result: safehold_core::Result<impl std::fmt::Debug>, what: &str) -> safehold_core::Error {
    match result {
        Ok(v) => panic!("{what}: accepted ({v:?})"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_archives_are_rejected_by_verify_and_restore_and_leave_the_target_untouched() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = multi_chunk_source(tmp.path()).await;
    let repo = repo_with_password("pw");
    let out = repo.backup(SourceSpec::Sqlite { path: src }).await;
    let good = std::fs::read(&out.archive).expect("read");
    let reader = {
        let mut r = ArchiveReader::open(Path::new(&out.archive)).expect("open");
        repo.keys.unlock_archive(&mut r, None).await.expect("unlock");
        r
    };
    let index = reader.index().expect("index");
    let blobs = index.section("blobs").expect("blobs section").clone();
    assert!(blobs.frames >= 2, "the blobs table spans several chunks");
    let len = good.len();
    let index_at = usize::try_from(index.sections.last().expect("last").offset + index.sections.last().expect("last").length).expect("offset") + 10;
    assert!(index_at + 40 < len - safehold_core::archive::TRAILER_LEN, "the index lies between the last section and the trailer, and index_at falls in it");

    // Swap the first two chunks of the blobs section (same total length, so nothing else moves).
    let swapped = {
        let at = usize::try_from(blobs.offset).expect("offset");
        let l1 = u32::from_be_bytes(good[at..at + 4].try_into().expect("len")) as usize;
        let l2 = u32::from_be_bytes(good[at + 4 + l1..at + 8 + l1].try_into().expect("len")) as usize;
        let mut v = good.clone();
        let first = good[at..at + 4 + l1].to_vec();
        let second = good[at + 4 + l1..at + 8 + l1 + l2].to_vec();
        v[at..at + second.len()].copy_from_slice(&second);
        v[at + second.len()..at + second.len() + first.len()].copy_from_slice(&first);
        v
    };
    let flip = |at: usize| {
        let mut v = good.clone();
        v[at] ^= 0x01;
        v
    };
    // What each damage is, and the part a deep verify names (the section when it is in one).
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("a bit flipped in the header", flip(40), ""),
        ("a bit flipped in a data chunk", flip(usize::try_from(blobs.offset).expect("o") + 100), "section \"blobs\", chunk 1 of"),
        ("a bit flipped in the index", flip(index_at), ""),
        ("a bit flipped in the trailer", flip(len - 40), ""),
        ("truncated in the middle", good[..len / 2].to_vec(), ""),
        ("truncated by one byte", good[..len - 1].to_vec(), ""),
        ("truncated before the trailer", good[..len - safehold_core::archive::TRAILER_LEN].to_vec(), ""),
        ("two chunks swapped", swapped, "section \"blobs\", chunk 1 of"),
    ];
    let clear = |m: &str| m.contains("damaged") || m.contains("not a Safehold archive") || m.contains("does not open");
    for (what, bytes, part) in cases {
        let path = tmp.path().join("damaged.shar");
        std::fs::write(&path, &bytes).expect("write");
        let err = expect_rejected(
            async {
                let mut r = ArchiveReader::open(&path)?;
                repo.keys.unlock_archive(&mut r, None).await?;
                verify::deep_with(r)
            }
            .await,
            what,
        );
        assert!(clear(&err.message) && err.message.contains(&path.display().to_string()), "{what}: verify names the archive and says what is wrong: {}", err.message);
        assert!(err.message.contains(part), "{what}: verify names {part:?}: {}", err.message);
        let target = tmp.path().join("target.db");
        let err = expect_rejected(repo.restore(&path, &SourceSpec::Sqlite { path: target.clone() }).await, what);
        assert!(clear(&err.message) && err.message.contains(&path.display().to_string()), "{what}: restore names the archive and says what is wrong: {}", err.message);
        assert!(!target.exists(), "{what}: a failed restore leaves no target file behind");
        assert!(!target.with_extension("partial").exists(), "{what}: no partial file either");
    }
    // The undamaged archive still verifies: the checks are not failing for another reason.
    let mut r = ArchiveReader::open(Path::new(&out.archive)).expect("open");
    repo.keys.unlock_archive(&mut r, None).await.expect("unlock");
    verify::deep_with(r).expect("the original verifies");
    verify::quick(Path::new(&out.archive), Some(&out.sha256)).expect("quick verify against the recorded checksum");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_postgres_archive_leaves_the_target_database_empty() {
    let src = ScratchDb::create().await;
    psql_file(&src, &fixture("features.sql"));
    let repo = repo_with_password("pw");
    let out = repo.backup(SourceSpec::Postgres { url: src.url() }).await;
    let mut bytes = std::fs::read(&out.archive).expect("read");
    let mut r = ArchiveReader::open(Path::new(&out.archive)).expect("open");
    repo.keys.unlock_archive(&mut r, None).await.expect("unlock");
    let index = r.index().expect("index");
    // Damage the last table: the schema and earlier tables are already created when it fails.
    let last = index.sections.iter().rev().find(|s| s.kind == "table" && s.rows > 0).expect("a table");
    bytes[usize::try_from(last.offset).expect("o") + 8] ^= 0x40;
    let damaged = repo.dir.path().join("damaged.shar");
    std::fs::write(&damaged, &bytes).expect("write");
    let dst = ScratchDb::create().await;
    let err = repo.restore(&damaged, &SourceSpec::Postgres { url: dst.url() }).await.expect_err("damaged");
    assert!(err.message.contains(&last.name), "names the section: {}", err.message);
    let mut conn = sqlx::PgConnection::connect(&dst.url()).await.expect("connect");
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(tables, 0, "the target is exactly as it was: empty");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_keys_and_foreign_archives_are_refused_clearly() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = fixture_copy("chinook/Chinook_Sqlite.sqlite", &tmp);
    let a = repo_with_password("password of A");
    let out = a.backup(SourceSpec::Sqlite { path: src.clone() }).await;
    let archive = Path::new(&out.archive);

    let target = SourceSpec::Sqlite { path: tmp.path().join("x.db") };
    // Each is refused by a deep verify (the archive is opened with the key, then read whole) and
    // by a restore, with the same clear reason.
    let deep = |keys: KeySources, repo: Option<Repository>| async move {
        let mut r = ArchiveReader::open(archive)?;
        keys.unlock_archive(&mut r, repo.as_ref()).await?;
        verify::deep_with(r)
    };

    let wrong = repo_with_password("not the password");
    for (how, err) in [("verify", expect_rejected(deep(wrong.keys.clone(), None).await, "wrong password")), ("restore", expect_rejected(wrong.restore(archive, &target).await, "wrong password"))] {
        assert_eq!(err.code, ErrorCode::AuthFailed, "{how}");
        assert!(err.message.contains("the password does not open"), "{how}: {}", err.message);
    }

    let rk_file = tmp.path().join("wrong-kit.txt");
    std::fs::write(&rk_file, format!("Recovery key:\n  {}\n", safehold_core::archive::keys::format_recovery_key(&safehold_core::archive::SecretKey::random()))).expect("kit");
    let keys = KeySources { recovery_key_file: Some(rk_file), ..Default::default() };
    let restored = async {
        let chain = keys.open_chain(archive, None).await?;
        restore::restore_chain(chain, &target, 1, false, &CancelToken::new(), &no_progress()).await
    };
    for (how, err) in [("verify", expect_rejected(deep(keys.clone(), None).await, "wrong recovery key")), ("restore", expect_rejected(restored.await, "wrong recovery key"))] {
        assert_eq!(err.code, ErrorCode::AuthFailed, "{how}");
        assert!(err.message.contains("the recovery key does not open"), "{how}: {}", err.message);
    }

    // An archive of repository A offered to repository B (even with the same password).
    let b = repo_with_password("password of A");
    b.backup(SourceSpec::Sqlite { path: src }).await;
    let repo_b = Repository::open(&b.path()).expect("open b").expect("b exists");
    for (how, err) in [("verify", expect_rejected(deep(b.keys.clone(), Some(repo_b)).await, "another repository")), ("restore", expect_rejected(b.restore(archive, &target).await, "another repository"))] {
        assert!(err.message.contains("belongs to another repository"), "{how}: {}", err.message);
    }
    assert!(!tmp.path().join("x.db").exists(), "no restore wrote its target");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_recovery_kit_is_exported_once_and_alone_opens_every_archive() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = fixture_copy("chinook/Chinook_Sqlite.sqlite", &tmp);
    let repo = repo_with_password("pw");
    let first = repo.backup(SourceSpec::Sqlite { path: src.clone() }).await;
    let second = repo.backup(SourceSpec::Sqlite { path: src.clone() }).await;
    let mut r = Repository::open(&repo.path()).expect("open").expect("exists");
    let mk = repo.keys.unlock_repository(&r).await.expect("unlock");
    let kit = r.export_recovery(&mk).expect("export");
    assert!(kit.contains("SHRK-"), "{kit}");
    let again = r.export_recovery(&mk).expect_err("only once");
    assert!(again.message.contains("already exported"));
    // The repository file is gone and the password forgotten: the kit alone restores.
    std::fs::remove_file(repo.path().join(safehold_core::repository::CONFIG_FILE)).expect("lose the repository file");
    let kit_file = tmp.path().join("kit.txt");
    std::fs::write(&kit_file, &kit).expect("kit");
    let keys = KeySources { recovery_key_file: Some(kit_file), ..Default::default() };
    for (i, out) in [first, second].iter().enumerate() {
        let mut reader = ArchiveReader::open(Path::new(&out.archive)).expect("open");
        keys.unlock_archive(&mut reader, None).await.expect("the kit opens the archive");
        let target = tmp.path().join(format!("r{i}.db"));
        restore::restore_full(reader, &SourceSpec::Sqlite { path: target.clone() }, 1, &CancelToken::new(), &no_progress()).await.expect("restore");
        sqlite_equal(&src, &target).await;
    }
}

/// A backup cancelled before it starts, or half-way (some tables written, on several
/// connections for PostgreSQL), stops with "cancelled" and leaves no archive and no partial file.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_backup_leaves_no_archive() {
    let tmp = tempfile::tempdir().expect("tmp");
    let chinook = fixture_copy("chinook/Chinook_Sqlite.sqlite", &tmp);
    let pagila = ScratchDb::create().await;
    psql_file(&pagila, &fixture("pagila/pagila-schema.sql"));
    psql_file(&pagila, &fixture("pagila/pagila-data.sql"));
    let repo = repo_with_password("pw");
    let (r, mk) = repo.keys.open_repository_for_backup(&repo.path()).await.expect("repo");
    let sources = [SourceSpec::Sqlite { path: chinook }, SourceSpec::Postgres { url: pagila.url() }];
    for (source, after_tables) in sources.iter().flat_map(|s| [(s, None), (s, Some(3))]) {
        let cancel = CancelToken::new();
        let started = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let progress: ProgressSink = match after_tables {
            None => {
                cancel.cancel();
                no_progress()
            }
            Some(n) => {
                let (cancel, started) = (cancel.clone(), started.clone());
                Arc::new(move |p: Progress| {
                    started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if p.tables_done >= n {
                        cancel.cancel();
                    }
                })
            }
        };
        let mut req = BackupRequest::new(source.clone());
        req.jobs = 2;
        let err = backup::run(&r, &mk, &req, &cancel, &progress).await.expect_err("cancelled");
        assert_eq!(err.code, ErrorCode::Cancelled, "{}", err.message);
        assert!(err.message.contains("cancelled"), "{}", err.message);
        if after_tables.is_some() {
            assert!(started.load(std::sync::atomic::Ordering::SeqCst) > 3, "cancelled half-way, after some tables were written");
        }
        let left: Vec<_> = std::fs::read_dir(r.archives_dir()).expect("ls").collect();
        assert!(left.is_empty(), "{source:?} cancelled after {after_tables:?} tables: no archive and no partial file: {left:?}");
    }
    // The repository is as it was: the next backup is a full and verifies.
    let out = backup::run(&r, &mk, &BackupRequest::new(sources[1].clone()), &CancelToken::new(), &no_progress()).await.expect("a backup after the cancelled ones");
    assert!(out.parent.is_none());
    verify::quick(Path::new(&out.archive), Some(&out.sha256)).expect("verifies");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_source_fails_with_its_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let repo = repo_with_password("pw");
    let (r, mk) = repo.keys.open_repository_for_backup(&repo.path()).await.expect("repo");
    let url = format!("postgres://postgres:secret@127.0.0.1:{port}/db");
    let err = backup::run(&r, &mk, &BackupRequest::new(SourceSpec::Postgres { url }), &CancelToken::new(), &no_progress()).await.expect_err("unreachable");
    assert_eq!(err.code, ErrorCode::Unreachable);
    assert!(!err.message.contains("secret"), "never the password: {}", err.message);
    let _ = pg_base();
}

/// A fuzz-style sweep over the archive reader: hundreds of random corruptions of a real archive
/// (bit flips, byte runs, truncations, insertions), each of which must be rejected — never
/// accepted, never a panic. Deterministic (fixed seed) so a failure reproduces.
#[tokio::test(flavor = "multi_thread")]
async fn random_corruptions_are_always_rejected() {
    use rand::{Rng, SeedableRng};
    let tmp = tempfile::tempdir().expect("tmp");
    let src = multi_chunk_source(tmp.path()).await;
    let repo = repo_with_password("pw");
    let out = repo.backup(SourceSpec::Sqlite { path: src }).await;
    let good = std::fs::read(&out.archive).expect("read");
    let mk = repo.keys.unlock_repository(&Repository::open(&repo.path()).expect("open").expect("repo")).await.expect("master key");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5afe);
    let path = tmp.path().join("mutant.shar");
    for round in 0..400 {
        let mut v = good.clone();
        let what = match round % 4 {
            0 => {
                let at = rng.random_range(0..v.len());
                v[at] ^= 1 << rng.random_range(0..8);
                format!("bit flip at {at}")
            }
            1 => {
                let at = rng.random_range(0..v.len() - 8);
                let n = rng.random_range(1..8);
                for b in &mut v[at..at + n] {
                    *b = rng.random();
                }
                format!("{n} random bytes at {at}")
            }
            2 => {
                let keep = rng.random_range(0..v.len());
                v.truncate(keep);
                format!("truncated to {keep}")
            }
            _ => {
                let at = rng.random_range(0..v.len());
                v.insert(at, rng.random());
                format!("a byte inserted at {at}")
            }
        };
        if v == good {
            continue;
        }
        std::fs::write(&path, &v).expect("write");
        let result = std::panic::catch_unwind(|| -> safehold_core::Result<()> {
            let mut r = ArchiveReader::open(&path)?;
            r.unlock(Some(&mk), None)?;
            verify::deep_with(r).map(|_| ())
        });
        match result {
            Err(_) => panic!("round {round} ({what}): the reader panicked"),
            Ok(Ok(())) => panic!("round {round} ({what}): the damaged archive was accepted"),
            Ok(Err(_)) => {}
        }
    }
}

/// A parallel restore that fails (a damaged table) or is cancelled half-way (while the biggest
/// table is being loaded by several workers) removes the database it created and says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_or_cancelled_parallel_restore_removes_the_new_database() {
    let src = ScratchDb::create().await;
    psql_file(&src, &fixture("pagila/pagila-schema.sql"));
    psql_file(&src, &fixture("pagila/pagila-data.sql"));
    let repo = repo_with_password("pw");
    let out = repo.backup(SourceSpec::Postgres { url: src.url() }).await;
    let mut bytes = std::fs::read(&out.archive).expect("read");
    let mut r = ArchiveReader::open(Path::new(&out.archive)).expect("open");
    repo.keys.unlock_archive(&mut r, None).await.expect("unlock");
    let index = r.index().expect("index");
    let big = index.sections.iter().filter(|s| s.kind == "table").max_by_key(|s| s.plain_bytes).expect("a table").clone();

    // A damaged table: the restore fails, names it, and the database it created is gone.
    bytes[usize::try_from(big.offset).expect("o") + 8] ^= 0x10;
    let damaged = repo.dir.path().join("damaged.shar");
    std::fs::write(&damaged, &bytes).expect("write");
    // (Past the writer's check, which reads the whole archive first: the damage is met mid-load,
    // as when storage gives other bytes than it gave the check.)
    let unchecked = KeySources { trust_unsigned: true, ..repo.keys.clone() };
    let (dst, result) = restore_into_new_database(&unchecked, &damaged, 3, &CancelToken::new(), &no_progress()).await;
    let err = result.expect_err("damaged");
    assert!(err.message.contains(&big.name) && err.message.contains("the new database was removed"), "{}", err.message);
    // With the check, it is refused before the database is touched, naming the section.
    let Err(e) = repo.keys.open_chain(&damaged, None).await else { panic!("a damaged archive is refused up front") };
    assert!(e.message.contains(&big.name), "{}", e.message);
    assert!(!database_exists(&dst.name).await, "the half-restored database is gone");

    // Cancelled as the biggest table starts loading, shared out to several workers (tables of
    // 100 kB and more are): the workers stop, and the new database is removed.
    let cancel = CancelToken::new();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let progress: ProgressSink = {
        let (cancel, seen, big) = (cancel.clone(), seen.clone(), big.name.clone());
        Arc::new(move |p: Progress| {
            if p.table.as_deref() == Some(big.as_str()) {
                cancel.cancel();
            }
            if let (Some(t), Ok(mut seen)) = (p.table, seen.lock()) {
                seen.push(t);
            }
        })
    };
    let (dst, result) = safehold_core::source::postgres::with_split_bytes(100_000, restore_into_new_database(&repo.keys, Path::new(&out.archive), 3, &cancel, &progress)).await;
    let err = result.expect_err("cancelled");
    assert_eq!(err.code, ErrorCode::Cancelled, "{}", err.message);
    assert!(err.message.contains("cancelled") && err.message.contains("the new database was removed"), "{}", err.message);
    assert!(!database_exists(&dst.name).await, "the half-restored database is gone");
    let seen = seen.lock().expect("seen").clone();
    assert!(seen.contains(&big.name), "the cancel came while {} was loading: {seen:?}", big.name);
    let tables = index.sections.iter().filter(|s| s.kind == "table").count();
    assert!(seen.len() < tables, "the restore stopped before every table was loaded ({} of {tables})", seen.len());
}

/// A big table is loaded by several workers at once (its rows shared out in chunks of whole
/// lines): the restore is exact and the rows came in more than one transaction; a damaged chunk
/// of that table still fails the restore and removes the new database — found by authentication
/// when the archive is encrypted, by the section's SHA-256 when it is neither encrypted nor
/// compressed (the altered rows themselves load without complaint).
#[tokio::test(flavor = "multi_thread")]
async fn a_big_table_is_loaded_by_several_workers_exactly_and_damage_in_it_still_fails() {
    let src = ScratchDb::create().await;
    src.execute(
        "CREATE TABLE tenants (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO tenants SELECT i, 'tenant ' || i FROM generate_series(1, 20) i;
         CREATE TABLE big (id bigint PRIMARY KEY, tenant_id int NOT NULL REFERENCES tenants(id), body text, payload jsonb, UNIQUE (tenant_id, id));
         INSERT INTO big SELECT i, 1 + i % 20, repeat('abcdefghij', 8) || E'\\t\\n\\\\' || i, jsonb_build_object('n', i, 'tag', 'x' || i % 7) FROM generate_series(1, 60000) i;
         CREATE INDEX big_tenant_idx ON big (tenant_id);",
    )
    .await;
    let repo = repo_with_password("pw");
    // Tables of 2 MB and more are shared out (the default is 64 MiB); the small one is not.
    // (The writer's check, which reads the whole archive first, is left out: the damage is to be
    // met mid-load — as when storage gives other bytes than it gave the check.)
    let restore_new = |archive: PathBuf| {
        let keys = KeySources { trust_unsigned: true, ..repo.keys.clone() };
        async move { safehold_core::source::postgres::with_split_bytes(2_000_000, async { restore_into_new_database(&keys, &archive, 3, &CancelToken::new(), &no_progress()).await }).await }
    };
    let out = repo.backup(SourceSpec::Postgres { url: src.url() }).await;
    let (dst, result) = restore_new(PathBuf::from(&out.archive)).await;
    result.expect("parallel restore");
    assert_eq!(pg_dump(&src, &["--schema-only"], false), pg_dump(&dst, &["--schema-only"], false));
    assert_eq!(pg_dump(&src, &["--data-only"], true), pg_dump(&dst, &["--data-only"], true));
    let mut conn = sqlx::PgConnection::connect(&dst.url()).await.expect("connect");
    let transactions: i64 = sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM big").fetch_one(&mut conn).await.expect("xmin");
    assert!(transactions >= 2, "the big table was loaded by several workers ({transactions} transaction)");
    let transactions: i64 = sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM tenants").fetch_one(&mut conn).await.expect("xmin");
    assert_eq!(transactions, 1, "the small table is loaded whole");
    conn.close().await.expect("close");
    drop(dst);

    let big_section = |archive: PathBuf| {
        let keys = repo.keys.clone();
        async move {
            let mut r = ArchiveReader::open(&archive).expect("open");
            keys.unlock_archive(&mut r, None).await.expect("unlock");
            r.index().expect("index").section("public.big").expect("big").clone()
        }
    };
    let damaged_copy = |archive: &Path, at: usize, new: u8| {
        let mut bytes = std::fs::read(archive).expect("read");
        bytes[at] = new;
        let path = repo.dir.path().join(format!("damaged-{at}.shar"));
        std::fs::write(&path, &bytes).expect("write");
        path
    };

    // Encrypted: a byte near the end of the big table's last chunk.
    let big = big_section(PathBuf::from(&out.archive)).await;
    assert!(big.frames >= 3, "the big table spans several chunks ({})", big.frames);
    let run = *big.runs().last().expect("a run");
    let at = usize::try_from(run.offset + run.length - 5).expect("offset");
    let byte = std::fs::read(&out.archive).expect("read")[at];
    let (dst, result) = restore_new(damaged_copy(Path::new(&out.archive), at, byte ^ 0x01)).await;
    let err = result.expect_err("a damaged chunk");
    assert!(err.message.contains("failed authentication") && err.message.contains("the new database was removed"), "{}", err.message);
    assert!(!database_exists(&dst.name).await, "the half-restored database is gone");

    // Neither encrypted nor compressed: one letter of one row changed.
    let (r, mk) = repo.keys.open_repository_for_backup(&repo.path()).await.expect("open repository");
    let mut req = BackupRequest::new(SourceSpec::Postgres { url: src.url() });
    req.zstd_level = None;
    req.encrypt = false;
    let plain = backup::run(&r, &mk, &req, &CancelToken::new(), &no_progress()).await.expect("plain backup");
    let big = big_section(PathBuf::from(&plain.archive)).await;
    let bytes = std::fs::read(&plain.archive).expect("read");
    let run = big.runs()[big.runs().len() / 2];
    let start = usize::try_from(run.offset + run.length / 2).expect("offset");
    let at = start + bytes[start..].iter().position(|&b| b == b'e').expect("a letter of a body");
    let (dst, result) = restore_new(damaged_copy(Path::new(&plain.archive), at, b'f')).await;
    let err = result.expect_err("an altered row");
    assert!(err.message.contains("SHA-256") && err.message.contains("the new database was removed"), "{}", err.message);
    assert!(!database_exists(&dst.name).await, "the half-restored database is gone");
}

/// The fuzz target's seed (fuzz/corpus/archive_reader/seed.shar): a small archive of a SQLite
/// database, password "fuzz" with a cheap key derivation. Written with SAFEHOLD_WRITE_FUZZ_SEED=1;
/// otherwise checked to open and hold its rows.
#[tokio::test(flavor = "multi_thread")]
async fn fuzz_seed_is_a_valid_small_archive() {
    use safehold_core::archive::keys::{KdfParams, Unlock};
    let seed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/archive_reader/seed.shar");
    if std::env::var_os("SAFEHOLD_WRITE_FUZZ_SEED").is_some() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = dir.path().join("tiny.db");
        let url = format!("sqlite://{}?mode=rwc", db.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
        sqlx::raw_sql("CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT); CREATE TABLE notes (id INTEGER PRIMARY KEY, tenant_id TEXT REFERENCES tenants(id), body BLOB);
                       INSERT INTO tenants VALUES ('a', 'Ä'), ('b', 'B\tb'); INSERT INTO notes VALUES (1, 'a', x'00ff10'), (2, 'b', 'line\nbreak'), (3, 'a', NULL);")
            .execute(&mut conn)
            .await
            .expect("schema");
        conn.close().await.expect("close");
        let (repo, mk) = Repository::init(&dir.path().join("repo"), "fuzz", KdfParams { m_cost_kib: 64, t_cost: 1, p_cost: 1 }).expect("repo");
        let out = backup::run(&repo, &mk, &BackupRequest::new(SourceSpec::Sqlite { path: db }), &CancelToken::new(), &no_progress()).await.expect("backup");
        std::fs::create_dir_all(seed.parent().expect("dir")).expect("corpus dir");
        std::fs::copy(&out.archive, &seed).expect("write the seed");
        return;
    }
    assert!(std::fs::metadata(&seed).expect("the committed seed").len() < 16 * 1024, "a seed the fuzzer can mutate quickly");
    let mut reader = ArchiveReader::open(&seed).expect("open the seed");
    reader.unlock(None, Some(&Unlock::Password("fuzz".into()))).expect("the seed opens with its password");
    let index = reader.index().expect("index");
    assert_eq!(index.record_count, 5);
}

/// Inputs the fuzzer found (fuzz/corpus/archive_reader/regression-*) are refused with an error,
/// not a panic.
#[test]
fn archives_the_fuzzer_found_are_refused_without_a_panic() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/archive_reader");
    let mut n = 0;
    for f in std::fs::read_dir(&dir).expect("corpus").flatten().filter(|f| f.file_name().to_string_lossy().starts_with("regression-")) {
        let err = ArchiveReader::open(&f.path()).err().expect("a damaged archive is refused");
        assert!(err.message.contains("damaged") || err.message.contains("trailer") || err.message.contains("not"), "{}", err.message);
        n += 1;
    }
    assert!(n >= 1, "the regression inputs are there");
}

/// Tables dumped in parallel stream into one archive side by side: their frames interleave,
/// the index records each section's runs, and every section reads back exactly.
#[test]
fn sections_written_side_by_side_interleave_and_read_back_exactly() {
    use safehold_core::archive::{ArchiveHeader, ArchiveWriter, WriteOptions, FORMAT_VERSION};
    let dir = tempfile::tempdir().expect("tmp");
    let header = |id: &str| ArchiveHeader {
        format_version: FORMAT_VERSION,
        archive_id: id.into(),
        repository_id: "test".into(),
        backup_type: "full".into(),
        parent_id: None,
        source_kind: "postgres".into(),
        source_name: "test".into(),
        source_fingerprint: "test".into(),
        snapshot_time: "2026-12-02T00:00:00Z".into(),
        created_at: "2026-12-02T00:00:00Z".into(),
        compression: "zstd".into(),
        encrypted: false,
        key_slots: Vec::new(),
        master_slots: Vec::new(),
        private_sealed: None,
        basis: None,
        writer: None,
        writers: None,
    };
    // Two sections of several chunks each, written a piece at a time in turn, closed out of order.
    let write = |dest: &Path, a: &[u8], b: &[u8]| {
        let mut w = ArchiveWriter::create(dest, &header("interleaved"), None, WriteOptions { zstd_level: Some(1), threads: 2, signer: None }).expect("create");
        let mut sa = w.begin("public.a", "table");
        let mut sb = w.begin("public.b", "table");
        for (pa, pb) in a.chunks(200_000).zip(b.chunks(200_000)) {
            w.write(&mut sa, pa).expect("write a");
            w.write(&mut sb, pb).expect("write b");
        }
        sa.add_rows(1);
        w.end(sb).expect("end b");
        w.end(sa).expect("end a");
        w.finish().expect("finish")
    };
    let lines = |tag: &str| (0..400_000).map(|i| format!("{tag}\t{i:08}\n")).collect::<String>().into_bytes();
    let (a, b) = (lines("a"), lines("b"));
    let dest = dir.path().join("interleaved.shar");
    write(&dest, &a, &b);
    let reader = ArchiveReader::open(&dest).expect("open");
    reader.quick_check().expect("intact");
    let index = reader.index().expect("index");
    let names: Vec<&str> = index.sections.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["public.a", "public.b"], "sections are listed in the order they were started");
    for (s, want) in index.sections.iter().zip([&a, &b]) {
        assert!(s.extents.len() > 1, "{} was written in several runs: {:?}", s.name, s.extents);
        assert_eq!(s.extents.iter().map(|e| e.frames).sum::<u32>(), s.frames);
        let mut got = Vec::new();
        reader.read_section(&index, &s.name, &mut |c| {
            got.extend_from_slice(c);
            Ok(())
        })
        .expect("read");
        assert!(got == **want, "{} reads back exactly", s.name);
    }
    // A byte changed in a's second run is caught.
    let second = index.sections[0].extents[1];
    let mut bytes = std::fs::read(&dest).expect("read");
    bytes[usize::try_from(second.offset).expect("o") + 40] ^= 0x01;
    let damaged = dir.path().join("damaged.shar");
    std::fs::write(&damaged, &bytes).expect("write");
    let r = ArchiveReader::open(&damaged).expect("open");
    let err = r.read_section(&index, "public.a", &mut |_| Ok(())).expect_err("damaged");
    assert!(err.message.contains("section \"public.a\""), "{}", err.message);
    assert!(r.quick_check().is_err(), "the quick check sees it too");
    // A section started and never ended: the archive is not finished, and no file is left.
    let dest2 = dir.path().join("unfinished.shar");
    let mut w = ArchiveWriter::create(&dest2, &header("unfinished"), None, WriteOptions::default()).expect("create");
    let _open = w.begin("public.a", "table");
    let done = w.begin("public.b", "table");
    w.end(done).expect("end b");
    assert!(w.finish().is_err(), "an archive with an unfinished section is refused");
    assert!(!dest2.exists() && !dest2.with_extension("partial").exists(), "nothing is left behind");

    // The fuzz target's second seed: a tiny archive whose sections lie in several runs.
    let seed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/archive_reader/seed-runs.shar");
    let pattern = |c: u8| vec![c; 2 * (1 << 20) + 10];
    if std::env::var_os("SAFEHOLD_WRITE_FUZZ_SEED").is_some() {
        write(&seed, &pattern(b'x'), &pattern(b'y'));
    }
    let r = ArchiveReader::open(&seed).expect("the committed seed with runs");
    assert!(std::fs::metadata(&seed).expect("seed").len() < 16 * 1024);
    let index = r.index().expect("index");
    assert!(index.sections.iter().all(|s| s.extents.len() > 1), "its sections lie in several runs");
    let mut n = 0;
    r.read_section(&index, "public.b", &mut |c| {
        n += c.iter().filter(|&&x| x == b'y').count();
        Ok(())
    })
    .expect("read");
    assert_eq!(n, 2 * (1 << 20) + 10);
}

/// A backup with several jobs reads on several connections that share one snapshot: while the
/// tables are locked, every worker waits with the same snapshot, and rows committed after the
/// snapshot was taken are in no table of the backup.
#[tokio::test(flavor = "multi_thread")]
async fn a_parallel_backup_reads_on_several_connections_sharing_one_snapshot() {
    let src = ScratchDb::create().await;
    let tables = ["alpha", "beta", "gamma", "delta"];
    for (i, t) in tables.iter().enumerate() {
        src.execute(&format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, body text); INSERT INTO {t} SELECT g, repeat(md5(g::text), {}) FROM generate_series(1, 20000) g;",
            i + 2
        ))
        .await;
    }
    let before = pg_dump(&src, &["--data-only"], true);
    let mut locker = sqlx::PgConnection::connect(&src.url()).await.expect("connect");
    sqlx::raw_sql(AssertSqlSafe(format!("BEGIN; LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", tables.join(", ")))).execute(&mut locker).await.expect("lock");

    let repo = repo_with_password("pw");
    let (r, mk) = repo.keys.open_repository_for_backup(&repo.path()).await.expect("open repository");
    let mut req = BackupRequest::new(SourceSpec::Postgres { url: src.url() });
    req.jobs = 3;
    let task = tokio::spawn(async move { backup::run(&r, &mk, &req, &CancelToken::new(), &no_progress()).await });

    let mut watch = sqlx::PgConnection::connect(&src.url()).await.expect("connect");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (waiting, snapshots) = loop {
        let (waiting, snapshots): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT backend_xmin::text) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'safehold' AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watch)
        .await
        .expect("pg_stat_activity");
        if waiting == 3 || std::time::Instant::now() > deadline {
            break (waiting, snapshots);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(waiting, 3, "three connections read tables at the same time");
    assert_eq!(snapshots, 1, "all three read on the same snapshot");
    // Rows committed after the snapshot: in no table of the backup.
    sqlx::raw_sql(AssertSqlSafe(tables.iter().map(|t| format!("INSERT INTO {t} VALUES (100001, 'late');")).collect::<String>() + "COMMIT"))
        .execute(&mut locker)
        .await
        .expect("late rows");
    let out = task.await.expect("join").expect("backup");
    assert_eq!(out.rows, 80_000);
    let mut reader = ArchiveReader::open(Path::new(&out.archive)).expect("open");
    repo.keys.unlock_archive(&mut reader, None).await.expect("unlock");
    assert_eq!(reader.index().expect("index").source_state["workers"], 3);
    let report = verify::deep_with(reader).expect("deep verify");
    assert_eq!(report.rows, 80_000);
    let dst = ScratchDb::create().await;
    repo.restore(Path::new(&out.archive), &SourceSpec::Postgres { url: dst.url() }).await.expect("restore");
    assert_eq!(pg_dump(&dst, &["--data-only"], true), before, "the backup holds the state at its snapshot");
}

/// A session left idle in a transaction that holds a transaction id makes every incremental built
/// on a backup carry every row written since it began: the backup says so — which session, since
/// when, what to do — in its outcome (`--json`, the CLI's warning, the app's Recent Backups).
#[tokio::test(flavor = "multi_thread")]
async fn a_session_idle_in_a_transaction_is_warned_about() {
    let db = ScratchDb::create().await;
    db.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);").await;
    let r = repo_with_password("pw");
    let (repo, mk) = r.keys.open_repository_for_backup(&r.path()).await.expect("open repository");
    let mut req = BackupRequest::new(SourceSpec::Postgres { url: db.url() });
    req.long_transaction = std::time::Duration::from_millis(500);
    let quiet = backup::run(&repo, &mk, &req, &CancelToken::new(), &no_progress()).await.expect("backup");
    assert!(!quiet.warnings.iter().any(|w| w.contains("safehold-idle-test")), "nothing to say yet: {:?}", quiet.warnings);
    let mut idle = sqlx::PgConnection::connect(&db.url()).await.expect("connect");
    sqlx::raw_sql("SET application_name = 'safehold-idle-test'; BEGIN; INSERT INTO t VALUES (2);").execute(&mut idle).await.expect("an open transaction");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut idle).await.expect("pid");
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let warned = backup::run(&repo, &mk, &req, &CancelToken::new(), &no_progress()).await.expect("backup");
    let w = warned.warnings.iter().find(|w| w.contains("safehold-idle-test")).unwrap_or_else(|| panic!("the idle session is named: {:?}", warned.warnings));
    assert!(w.contains(&format!("session {pid}")) && w.contains("idle in transaction") && w.contains("incremental"), "{w}");
    assert!(w.contains("pg_terminate_backend") && w.contains("idle_in_transaction_session_timeout"), "says what to do: {w}");
    let json = serde_json::to_value(&warned).expect("json");
    assert!(json["warnings"].as_array().is_some_and(|a| !a.is_empty()), "in --json: {json}");
    // Rows written after the idle transaction began, then a full backup (which has them), then
    // five new rows: the incremental carries both, and says how many it carries again.
    db.execute("INSERT INTO t SELECT g FROM generate_series(10, 59) g").await;
    backup::run(&repo, &mk, &req, &CancelToken::new(), &no_progress()).await.expect("the parent");
    db.execute("INSERT INTO t SELECT g FROM generate_series(100, 104) g").await;
    let mut inc = req.clone();
    inc.backup_type = safehold_core::configurations::BackupType::Incremental;
    let out = backup::run(&repo, &mk, &inc, &CancelToken::new(), &no_progress()).await.expect("incremental");
    let again = out.warnings.iter().find(|w| w.contains("were in its parent backup already")).unwrap_or_else(|| panic!("the rows carried again are counted: {:?}", out.warnings));
    // "A of the C rows": the 50 written while the session was open and before the parent, never
    // the five written after it. (Snapshots are the whole server's: a transaction another test
    // holds open on the shared server can hold the parent back further, to the table's first row.)
    let counts: Vec<u64> = again.split(' ').take(4).filter_map(|n| n.parse().ok()).collect();
    assert!(matches!(counts[..], [a, c] if (50..=51).contains(&a) && c == a + 5), "{again}");
    sqlx::raw_sql("ROLLBACK").execute(&mut idle).await.expect("rollback");
    // With the session gone: the next incremental's parent still had it open (its rows may be
    // carried again); the one after that no longer names it, and says rows are carried again only
    // beside a session it names (another test's, on the shared server).
    backup::run(&repo, &mk, &inc, &CancelToken::new(), &no_progress()).await.expect("incremental");
    let quiet = backup::run(&repo, &mk, &inc, &CancelToken::new(), &no_progress()).await.expect("incremental");
    assert!(!quiet.warnings.iter().any(|w| w.contains("safehold-idle-test") || w.contains(&format!("session {pid} "))), "{:?}", quiet.warnings);
    let named = quiet.warnings.iter().any(|w| w.starts_with("session "));
    assert!(named || !quiet.warnings.iter().any(|w| w.contains("parent backup already")), "{:?}", quiet.warnings);
}

/// A big table is read by several workers, each a range of its pages, on the one snapshot, into
/// its one section (issue 26): under a writer that keeps moving rows between pages (each of its
/// transactions moves an amount from one row to another, deletes a row and inserts another), every
/// backup restores a state with the same row count, the same total and no row twice (a transfer
/// happens only when both of its rows exist) — a row seen
/// in two ranges, or in none, would break them. Repeated, so that a race would show. Tables that
/// inherit from another are read `ONLY`: a parent's section, and its incremental, hold the
/// parent's own rows.
#[tokio::test(flavor = "multi_thread")]
async fn a_big_table_is_read_in_page_ranges_on_one_snapshot_and_restores_exactly() {
    let src = ScratchDb::create().await;
    src.execute(
        "CREATE TABLE accounts (id bigint PRIMARY KEY, amount bigint NOT NULL, note text);
         INSERT INTO accounts SELECT i, 100, repeat('n', i % 300) FROM generate_series(1, 40000) i;
         CREATE TABLE parent (id int PRIMARY KEY, v text);
         CREATE TABLE child (extra int) INHERITS (parent);
         INSERT INTO parent SELECT i, 'p' FROM generate_series(1, 30) i;
         INSERT INTO child SELECT i, 'c', i FROM generate_series(100, 140) i;
         ANALYZE;",
    )
    .await;
    let pages: i64 = {
        let mut c = sqlx::PgConnection::connect(&src.url()).await.expect("connect");
        sqlx::query_scalar("SELECT pg_relation_size('accounts') / 8192").fetch_one(&mut c).await.expect("pages")
    };
    assert!(pages > 200, "the table spans many pages ({pages})");
    let repo = repo_with_password("pw");
    let backup_split = |progress: ProgressSink, t: safehold_core::configurations::BackupType| {
        let (keys, path, url) = (repo.keys.clone(), repo.path(), src.url());
        async move {
            let (r, mk) = keys.open_repository_for_backup(&path).await.expect("open repository");
            let mut req = BackupRequest::new(SourceSpec::Postgres { url });
            req.jobs = 3;
            req.backup_type = t;
            // Tables of 20 pages and more are split: accounts in up to twelve ranges.
            safehold_core::source::postgres::with_split_pages(20, backup::run(&r, &mk, &req, &CancelToken::new(), &progress)).await.expect("backup")
        }
    };
    let starts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counting: ProgressSink = {
        let starts = starts.clone();
        Arc::new(move |p: Progress| {
            if p.table.as_deref() == Some("public.accounts") {
                starts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };

    // Quiet: the restore is the source, row for row, and the table was read in ranges.
    let out = backup_split(counting.clone(), safehold_core::configurations::BackupType::Full).await;
    assert!(starts.load(std::sync::atomic::Ordering::SeqCst) >= 3, "accounts was read in several ranges (progress said {} times)", starts.load(std::sync::atomic::Ordering::SeqCst));
    let mut r = ArchiveReader::open(Path::new(&out.archive)).expect("open");
    repo.keys.unlock_archive(&mut r, None).await.expect("unlock");
    let index = r.index().expect("index");
    let sections: Vec<_> = index.sections.iter().filter(|s| s.name == "public.accounts").collect();
    assert_eq!(sections.len(), 1, "one section for the table");
    assert_eq!(sections[0].rows, 40000);
    assert_eq!(index.section("public.parent").expect("parent").rows, 30, "the parent's own rows only");
    assert!(!out.warnings.iter().any(|w| w.contains("inherit")), "{:?}", out.warnings);
    let (dst, result) = restore_into_new_database(&repo.keys, Path::new(&out.archive), 2, &CancelToken::new(), &no_progress()).await;
    result.expect("restore");
    assert_eq!(pg_dump(&src, &["--data-only", "--table=accounts"], true), pg_dump(&dst, &["--data-only", "--table=accounts"], true), "every row of the split table");
    assert_eq!(pg_dump(&src, &["--data-only", "--table=parent", "--table=child"], true), pg_dump(&dst, &["--data-only", "--table=parent", "--table=child"], true), "the parent's and the child's own rows");
    drop(dst);

    // An incremental after changes to the child only: the parent's rows are not carried again.
    src.execute("UPDATE child SET v = 'changed'; INSERT INTO child VALUES (200, 'new', 1);").await;
    let inc = backup_split(no_progress(), safehold_core::configurations::BackupType::Incremental).await;
    let mut r = ArchiveReader::open(Path::new(&inc.archive)).expect("open");
    repo.keys.unlock_archive(&mut r, None).await.expect("unlock");
    let index = r.index().expect("index");
    // No row of the parent changed: none is carried — unless another test's transaction on this
    // shared server was open across the full's snapshot, whose oldest open transaction then
    // precedes the parent's rows (the rule: rows written since that transaction are carried).
    let full_snapshot = ArchiveReader::open(Path::new(&out.archive)).expect("open the full").header.basis.as_ref().and_then(|b| b["txid_snapshot"].as_str()).expect("the full's snapshot").to_string();
    let since: i64 = {
        let mut c = sqlx::PgConnection::connect(&src.url()).await.expect("connect");
        sqlx::query_scalar("SELECT count(*) FROM ONLY parent WHERE xmin::text::bigint >= pg_snapshot_xmin($1::pg_snapshot)::text::bigint & 4294967295")
            .bind(&full_snapshot)
            .fetch_one(&mut c)
            .await
            .expect("the parent's rows written since the full's snapshot")
    };
    assert_eq!(index.section("public.parent").expect("parent").rows, since as u64, "no row of the parent changed: only rows written since the full's oldest open transaction are carried");
    // The positions of the parent's rows not carried (all 30 when no other transaction was open).
    assert_eq!(index.section("public.parent#live").expect("positions kept").rows, 30 - since as u64, "the positions of the parent's rows not carried");
    let dst = ScratchDb::create().await;
    repo.restore(Path::new(&inc.archive), &SourceSpec::Postgres { url: dst.url() }).await.expect("restore the incremental");
    for table in ["parent", "child"] {
        let only = |db: &ScratchDb| pg_dump(db, &["--data-only", &format!("--table={table}")], true);
        assert_eq!(only(&src), only(&dst), "table {table} after the incremental");
    }

    // Under a writer moving rows between pages, again and again.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (url, stop) = (src.url(), stop.clone());
        tokio::spawn(async move {
            let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
            let mut n: i64 = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let (a, b) = (1 + (n * 7919) % 40000, 1 + (n * 104729) % 40000);
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "BEGIN; UPDATE accounts SET note = note || 'x' WHERE id = {a};
                     UPDATE accounts SET amount = amount + CASE WHEN id = {a} THEN -1 ELSE 1 END WHERE id IN ({a}, {b}) AND (SELECT count(*) FROM accounts WHERE id IN ({a}, {b})) = 2;
                     DELETE FROM accounts WHERE id = (SELECT min(id) FROM accounts WHERE amount = 100 AND id > {a});
                     INSERT INTO accounts VALUES ({}, 100, 'moved'); COMMIT;",
                    100_000 + n
                )))
                .execute(&mut c)
                .await
                .expect("write");
            }
            n
        })
    };
    for round in 0..4 {
        let out = backup_split(no_progress(), safehold_core::configurations::BackupType::Full).await;
        let (dst, result) = restore_into_new_database(&repo.keys, Path::new(&out.archive), 2, &CancelToken::new(), &no_progress()).await;
        result.unwrap_or_else(|e| panic!("round {round}: restore: {e}"));
        let mut c = sqlx::PgConnection::connect(&dst.url()).await.expect("connect");
        let (rows, total, ids): (i64, i64, i64) = sqlx::query_as("SELECT count(*), sum(amount)::int8, count(DISTINCT id) FROM accounts").fetch_one(&mut c).await.expect("count");
        assert_eq!((rows, total, ids), (40000, 4_000_000, 40000), "round {round}: every row once, the total kept");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let moved = writer.await.expect("writer");
    assert!(moved > 0, "the writer wrote during the backups");
}

/// Tables without rows cost no statement of their own (issue 26 §2): a backup finds the empty
/// ones (their files have no page) in one query and writes their sections without a COPY, in a
/// full and in an incremental (its changes and its positions); a restore neither loads them nor analyzes
/// one the source had never analyzed (it stays as the source had it: `reltuples` −1), on one
/// connection and on two, and analyzes the others. Sequences, read in one query, come back
/// exactly, called or not.
#[tokio::test(flavor = "multi_thread")]
async fn empty_tables_and_sequences_round_trip_as_the_source_had_them() {
    let src = ScratchDb::create().await;
    src.execute(
        "CREATE TABLE never_filled (id int PRIMARY KEY) WITH (autovacuum_enabled = false);
         CREATE TABLE analyzed_empty (id int PRIMARY KEY) WITH (autovacuum_enabled = false);
         ANALYZE analyzed_empty;
         CREATE TABLE emptied (id int PRIMARY KEY) WITH (autovacuum_enabled = false);
         INSERT INTO emptied VALUES (1); DELETE FROM emptied;
         CREATE TABLE filled (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v text) WITH (autovacuum_enabled = false);
         INSERT INTO filled (v) SELECT 'v' || i FROM generate_series(1, 300) i;
         CREATE TABLE keyless (v text) WITH (autovacuum_enabled = false);
         INSERT INTO keyless SELECT 'k' || i FROM generate_series(1, 50) i;
         CREATE TABLE keyed (id int PRIMARY KEY) WITH (autovacuum_enabled = false);
         INSERT INTO keyed SELECT generate_series(1, 50);
         CREATE TABLE keyless_empty (v text);
         CREATE SEQUENCE called START 5; SELECT nextval('called'), nextval('called');
         CREATE SEQUENCE \"not called\" START 7; SELECT setval('\"not called\"', 42, false);",
    )
    .await;
    let query = async |db: &ScratchDb, sql: &str| -> Vec<String> {
        let mut c = sqlx::PgConnection::connect(&db.url()).await.expect("connect");
        sqlx::query_scalar(AssertSqlSafe(sql.to_string())).fetch_all(&mut c).await.expect(sql)
    };
    let planner = "SELECT relname || ' ' || reltuples FROM pg_class WHERE relname IN ('never_filled', 'analyzed_empty', 'emptied', 'filled') ORDER BY 1";
    assert_eq!(query(&src, planner).await, ["analyzed_empty 0", "emptied -1", "filled -1", "never_filled -1"], "the source's planner counts");
    let repo = repo_with_password("pw");
    let full = repo.backup(SourceSpec::Postgres { url: src.url() }).await;
    let mut r = ArchiveReader::open(Path::new(&full.archive)).expect("open");
    repo.keys.unlock_archive(&mut r, None).await.expect("unlock");
    let index = r.index().expect("index");
    for (table, rows) in [("never_filled", 0), ("analyzed_empty", 0), ("emptied", 0), ("filled", 300), ("keyless", 50), ("keyed", 50)] {
        assert_eq!(index.section(&format!("public.{table}")).map(|e| e.rows), Some(rows), "the section of {table}");
    }
    let sequences = "SELECT format('%s %s', last_value, is_called) FROM called UNION ALL SELECT format('%s %s', last_value, is_called) FROM \"not called\" UNION ALL SELECT format('%s %s', last_value, is_called) FROM filled_id_seq";
    let expected = query(&src, sequences).await;
    assert_eq!(expected, ["6 t", "42 f", "300 t"]);
    for jobs in [1, 2] {
        let (dst, result) = restore_into_new_database(&repo.keys, Path::new(&full.archive), jobs, &CancelToken::new(), &no_progress()).await;
        result.unwrap_or_else(|e| panic!("restore with {jobs} connections: {}", e.message));
        assert_eq!(pg_dump(&src, &["--data-only"], true), pg_dump(&dst, &["--data-only"], true), "every row and sequence value ({jobs} connections)");
        assert_eq!(query(&dst, sequences).await, expected, "the sequences ({jobs} connections)");
        // Restored without rows and never analyzed at the source: left as the source had them.
        assert_eq!(query(&dst, planner).await, ["analyzed_empty 0", "emptied -1", "filled 300", "never_filled -1"], "the planner's counts ({jobs} connections)");
    }

    // An incremental: the empty tables' changes and positions written without a COPY; every
    // row of two other tables deleted (their files still have pages: read as usual).
    src.execute("DELETE FROM keyless; DELETE FROM keyed; INSERT INTO filled (v) VALUES ('after');").await;
    let inc = repo.backup_typed(SourceSpec::Postgres { url: src.url() }, safehold_core::configurations::BackupType::Incremental).await;
    let mut r = ArchiveReader::open(Path::new(&inc.archive)).expect("open");
    repo.keys.unlock_archive(&mut r, None).await.expect("unlock");
    assert!(r.header.parent_id.is_some(), "an incremental");
    let index = r.index().expect("index");
    for table in ["never_filled", "keyless_empty", "keyless", "keyed"] {
        let section = index.section(&format!("public.{table}")).unwrap_or_else(|| panic!("the incremental's section of {table}"));
        assert_eq!((section.rows, section.mode.as_deref()), (0, Some("delta")), "the incremental's section of {table}");
    }
    for table in ["never_filled", "keyless_empty", "keyless", "keyed"] {
        assert_eq!(index.section(&format!("public.{table}#live")).map(|e| e.rows), Some(0), "no position of {table} kept");
    }
    for jobs in [1, 2] {
        let (dst, result) = restore_into_new_database(&repo.keys, Path::new(&inc.archive), jobs, &CancelToken::new(), &no_progress()).await;
        result.unwrap_or_else(|e| panic!("restore of the chain with {jobs} connections: {}", e.message));
        assert_eq!(pg_dump(&src, &["--data-only"], true), pg_dump(&dst, &["--data-only"], true), "the chain, every row ({jobs} connections)");
        assert_eq!(query(&dst, "SELECT count(*)::text FROM keyless UNION ALL SELECT count(*)::text FROM keyed UNION ALL SELECT count(*)::text FROM filled").await, ["0", "0", "301"]);
    }
}
