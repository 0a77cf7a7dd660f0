//! Incremental and differential backups of PostgreSQL: inserts, updates, deletes and rows of a
//! transaction still open at the parent's snapshot; restoring any backup of the chain gives
//! exactly the source's state at its snapshot.

use std::path::Path;

use safehold_core::configurations::BackupType;
use safehold_core::source::postgres::with_split_bytes;
use safehold_core::source::{no_progress, CancelToken, SourceSpec};
use sqlx::Connection as _;

use crate::backup::{pg_dump, repo_with_password, restore_into_new_database};
use crate::support::ScratchDb;

#[tokio::test(flavor = "multi_thread")]
async fn every_backup_of_a_chain_restores_the_state_at_its_snapshot() {
    let src = ScratchDb::create().await;
    src.execute(
        "CREATE TABLE tenants (id int PRIMARY KEY, name text NOT NULL);
         CREATE TABLE projects (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id int NOT NULL REFERENCES tenants(id), title text, body text);
         CREATE TABLE notes (tenant_id int, project_id bigint, line int, txt text, PRIMARY KEY (project_id, line));
         CREATE TABLE audit_log (at timestamptz DEFAULT now(), what text); -- no primary key: by position; TRUNCATE: whole
         INSERT INTO tenants SELECT g, 'tenant ' || g FROM generate_series(1, 20) g;
         INSERT INTO projects (tenant_id, title, body) SELECT 1 + g % 20, 'p' || g, repeat('x', g % 50) FROM generate_series(1, 2000) g;
         INSERT INTO notes SELECT 1, g, 1, 'first' FROM generate_series(1, 500) g;
         INSERT INTO audit_log (what) VALUES ('created');",
    )
    .await;
    let repo = repo_with_password("pw");
    let spec = || SourceSpec::Postgres { url: src.url() };
    let state = || pg_dump(&src, &["--data-only"], true);
    let mut expected = Vec::new();

    let full = repo.backup_typed(spec(), BackupType::Full).await;
    expected.push((full.clone(), state()));

    // Changes: inserts, updates, deletes, and a transaction that stays open across the next backup.
    src.execute(
        "INSERT INTO tenants VALUES (21, 'new');
         UPDATE projects SET title = title || ' (edited)' WHERE id % 7 = 0;
         DELETE FROM notes WHERE project_id % 5 = 0;
         DELETE FROM projects WHERE id IN (SELECT id FROM projects WHERE id % 97 = 0 AND id NOT IN (SELECT project_id FROM notes));
         INSERT INTO audit_log (what) VALUES ('edited');",
    )
    .await;
    let mut open_tx = sqlx::PgConnection::connect(&src.url()).await.expect("connect");
    // (Rows written in a savepoint carry the subtransaction's id, which a snapshot does not list.)
    sqlx::raw_sql("BEGIN; INSERT INTO notes SELECT 2, g, 2, 'written by a long transaction' FROM generate_series(1, 50) g; UPDATE tenants SET name = 'renamed in long tx' WHERE id = 3;
                   SAVEPOINT s; INSERT INTO notes SELECT 3, g, 3, 'written in a savepoint' FROM generate_series(1, 20) g; RELEASE SAVEPOINT s;")
        .execute(&mut open_tx)
        .await
        .expect("open a long transaction");
    let inc1 = repo.backup_typed(spec(), BackupType::Incremental).await;
    assert_eq!(inc1.parent.as_deref(), Some(full.id.as_str()), "an incremental builds on the previous backup");
    assert!(inc1.rows < full.rows, "an incremental carries only what changed ({} < {})", inc1.rows, full.rows);
    expected.push((inc1.clone(), state()));
    sqlx::raw_sql("COMMIT").execute(&mut open_tx).await.expect("commit the long transaction");
    // An incremental on top of the one whose snapshot saw the long transaction open: it must
    // carry that transaction's rows, the savepoint's included.
    let inc1b = repo.backup_typed(spec(), BackupType::Incremental).await;
    assert_eq!(inc1b.parent.as_deref(), Some(inc1.id.as_str()));
    expected.push((inc1b.clone(), state()));
    assert!(expected[2].1.contains("written in a savepoint") && !expected[1].1.contains("written in a savepoint"));

    src.execute("UPDATE notes SET txt = 'second' WHERE line = 1 AND project_id < 10; DELETE FROM tenants WHERE id = 21; TRUNCATE audit_log;").await;
    let diff = repo.backup_typed(spec(), BackupType::Differential).await;
    assert_eq!(diff.parent.as_deref(), Some(full.id.as_str()), "a differential builds on the last full");
    expected.push((diff.clone(), state()));

    src.execute("INSERT INTO projects (tenant_id, title) VALUES (5, 'after the differential'); DELETE FROM notes WHERE project_id = 1;").await;
    let inc2 = repo.backup_typed(spec(), BackupType::Incremental).await;
    assert_eq!(inc2.parent.as_deref(), Some(diff.id.as_str()));
    expected.push((inc2.clone(), state()));
    // The rows of the transaction that was open at inc1's snapshot are in the chain after it.
    assert!(expected[2].1.contains("written by a long transaction") && !expected[1].1.contains("written by a long transaction"));
    assert_eq!(expected.len(), 5);

    for (out, want) in &expected {
        let dst = ScratchDb::create().await;
        let restored = repo.restore(Path::new(&out.archive), &SourceSpec::Postgres { url: dst.url() }).await.expect("restore");
        assert_eq!(&pg_dump(&dst, &["--data-only"], true), want, "{:?} backup {} restores the state at its snapshot", out.backup_type, out.id);
        assert_eq!(pg_dump(&dst, &["--schema-only"], false), pg_dump(&src, &["--schema-only"], false));
        assert!(restored.backups >= 1);
        // The same through the parallel restore into a new database, with every table whose
        // rows are whole in this backup shared out to several workers (a table with changes in
        // this backup is loaded and patched by one).
        let (par, result) = with_split_bytes(1, restore_into_new_database(&repo.keys, Path::new(&out.archive), 3, &CancelToken::new(), &no_progress())).await;
        result.expect("parallel restore");
        assert_eq!(&pg_dump(&par, &["--data-only"], true), want, "{:?} backup {} restores the state at its snapshot (parallel restore)", out.backup_type, out.id);
        assert_eq!(pg_dump(&par, &["--schema-only"], false), pg_dump(&src, &["--schema-only"], false), "the schema is the same (parallel restore)");
    }
}

/// A full and five incrementals restore in one pass per table (the links' changes merged, issue
/// 26), and exactly: a key deleted in one link and inserted again in a later one, a row updated
/// in two links (the newest version wins), a row inserted in one link and deleted in a later one,
/// a composite key, a column named like the merge's own link column, a table untouched after the
/// full, and a table emptied. Every link restores the state at its snapshot, serially and in
/// parallel.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_chain_merges_its_links_and_restores_every_snapshot_exactly() {
    let src = ScratchDb::create().await;
    src.execute(
        r#"CREATE TABLE items (id int PRIMARY KEY, qty int, note text, "_sh_link0" int);
         CREATE TABLE pairs (a int, b text, v text, PRIMARY KEY (a, b));
         CREATE TABLE still (id int PRIMARY KEY, v text);
         CREATE TABLE emptied (id int PRIMARY KEY);
         INSERT INTO items SELECT g, g, 'n' || g, -g FROM generate_series(1, 300) g;
         INSERT INTO pairs SELECT g % 10, 'k' || g, 'v' FROM generate_series(1, 100) g;
         INSERT INTO still SELECT g, 's' FROM generate_series(1, 50) g;
         INSERT INTO emptied SELECT generate_series(1, 20);"#,
    )
    .await;
    let repo = repo_with_password("pw");
    let spec = || SourceSpec::Postgres { url: src.url() };
    let state = || pg_dump(&src, &["--data-only"], true);
    let mut expected = vec![(repo.backup_typed(spec(), BackupType::Full).await, state())];
    let links = [
        "DELETE FROM items WHERE id = 5; UPDATE items SET qty = qty + 100 WHERE id = 7; INSERT INTO items VALUES (1000, 1, 'born in 1', 0); UPDATE pairs SET v = 'one' WHERE a = 1;",
        "INSERT INTO items VALUES (5, -5, 'back again', 5); UPDATE items SET qty = qty + 1000, \"_sh_link0\" = 7 WHERE id = 7; DELETE FROM pairs WHERE a = 2;",
        "DELETE FROM items WHERE id = 1000; DELETE FROM emptied; INSERT INTO pairs VALUES (2, 'k2', 'returned');",
        "UPDATE items SET note = 'edited in 4' WHERE id % 10 = 0; DELETE FROM items WHERE id BETWEEN 200 AND 220; UPDATE pairs SET v = 'four' WHERE a = 1 AND b = 'k1';",
        "INSERT INTO items SELECT g, 0, 'late', g FROM generate_series(200, 210) g; DELETE FROM items WHERE id = 5;",
    ];
    for sql in links {
        src.execute(sql).await;
        let inc = repo.backup_typed(spec(), BackupType::Incremental).await;
        assert_eq!(inc.parent.as_deref(), Some(expected.last().expect("a parent").0.id.as_str()), "each incremental builds on the one before");
        expected.push((inc, state()));
    }
    assert!(expected[2].1.contains("back again") && !expected[5].1.contains("back again"), "the key came back, then went again");
    for (out, want) in &expected {
        let dst = ScratchDb::create().await;
        repo.restore(Path::new(&out.archive), &SourceSpec::Postgres { url: dst.url() }).await.expect("restore");
        assert_eq!(&pg_dump(&dst, &["--data-only"], true), want, "backup {} restores the state at its snapshot", out.id);
        let (par, result) = restore_into_new_database(&repo.keys, Path::new(&out.archive), 2, &CancelToken::new(), &no_progress()).await;
        result.expect("parallel restore");
        assert_eq!(&pg_dump(&par, &["--data-only"], true), want, "backup {} restores the state at its snapshot (parallel restore)", out.id);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_incremental_of_a_source_is_a_full() {
    let src = ScratchDb::create().await;
    src.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);").await;
    let repo = repo_with_password("pw");
    let out = repo.backup_typed(SourceSpec::Postgres { url: src.url() }, BackupType::Incremental).await;
    assert_eq!(out.backup_type, BackupType::Full);
    assert!(out.note.as_deref().unwrap_or_default().contains("full"), "{:?}", out.note);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incremental_without_its_parent_is_refused_with_the_missing_id() {
    let src = ScratchDb::create().await;
    src.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);").await;
    let repo = repo_with_password("pw");
    let full = repo.backup_typed(SourceSpec::Postgres { url: src.url() }, BackupType::Full).await;
    src.execute("INSERT INTO t VALUES (2);").await;
    let inc = repo.backup_typed(SourceSpec::Postgres { url: src.url() }, BackupType::Incremental).await;
    std::fs::remove_file(&full.archive).expect("lose the full");
    let dst = ScratchDb::create().await;
    let err = repo.restore(Path::new(&inc.archive), &SourceSpec::Postgres { url: dst.url() }).await.expect_err("no parent");
    assert!(err.message.contains(&full.id), "names the missing backup: {}", err.message);
}

/// SQLite sources have incremental and differential backups too: a table with a primary key
/// carries only its new and changed rows (found by comparing each row's digest with the
/// parent's) and every key (for deletes); a table without one, or whose definition changed, is
/// carried whole. Restoring any backup of the chain gives the file's state at its snapshot.
#[tokio::test(flavor = "multi_thread")]
async fn every_backup_of_a_sqlite_chain_restores_the_state_at_its_snapshot() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("platform.db");
    let run = |sql: &'static str| {
        let db = db.clone();
        async move {
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", db.display())).await.expect("open");
            sqlx::raw_sql(sql).execute(&mut c).await.expect("sql");
            c.close().await.expect("close");
        }
    };
    run("CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE projects (id INTEGER PRIMARY KEY AUTOINCREMENT, tenant_id TEXT REFERENCES tenants(id), title TEXT, score REAL, data BLOB);
         CREATE TABLE members (project_id INTEGER, user_name TEXT, role TEXT, PRIMARY KEY (project_id, user_name)) WITHOUT ROWID;
         CREATE TABLE audit_log (at TEXT, what TEXT);
         CREATE INDEX projects_tenant ON projects(tenant_id);
         WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 30) INSERT INTO tenants SELECT 't' || i, 'Tenant ' || i FROM g;
         WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 3000) INSERT INTO projects (tenant_id, title, score, data) SELECT 't' || (1 + i % 30), 'p' || i, i / 7.0, randomblob(16) FROM g;
         WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 2000) INSERT INTO members SELECT i, 'u' || (i % 50), 'viewer' FROM g;
         INSERT INTO audit_log VALUES ('2026-01-01', 'created');")
        .await;
    let repo = repo_with_password("pw");
    let spec = || SourceSpec::Sqlite { path: db.clone() };
    let mut expected = Vec::new();
    // The state at a backup: a consistent copy of the file (VACUUM INTO; a plain copy would miss
    // what is still in the write-ahead log).
    let snapshot = |n: usize| {
        let (db, copy) = (db.clone(), tmp.path().join(format!("state-{n}.db")));
        async move {
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.expect("open");
            sqlx::query("VACUUM INTO ?").bind(copy.display().to_string()).execute(&mut c).await.expect("vacuum into");
            c.close().await.expect("close");
            copy
        }
    };

    let full = repo.backup_typed(spec(), BackupType::Full).await;
    assert_eq!(full.backup_type, BackupType::Full);
    expected.push((full.clone(), snapshot(0).await));

    run("INSERT INTO tenants VALUES ('t31', 'New tenant');
         UPDATE projects SET title = title || ' (edited)', score = -0.0 WHERE id % 7 = 0;
         DELETE FROM projects WHERE id % 11 = 0;
         UPDATE members SET role = 'owner' WHERE project_id < 40;
         DELETE FROM members WHERE project_id % 13 = 0;
         INSERT INTO audit_log VALUES ('2026-01-02', 'edited');")
        .await;
    let inc1 = repo.backup_typed(spec(), BackupType::Incremental).await;
    assert_eq!(inc1.backup_type, BackupType::Incremental, "{:?}", inc1.note);
    assert_eq!(inc1.parent.as_deref(), Some(full.id.as_str()), "an incremental builds on the previous backup");
    assert!(inc1.rows < full.rows / 2, "an incremental carries only what changed ({} of {})", inc1.rows, full.rows);
    expected.push((inc1.clone(), snapshot(1).await));

    // A column added to a table: that table is carried whole.
    run("ALTER TABLE tenants ADD COLUMN plan TEXT DEFAULT 'free'; UPDATE tenants SET plan = 'pro' WHERE id = 't2';
         DELETE FROM tenants WHERE id = 't31'; DELETE FROM audit_log;")
        .await;
    let diff = repo.backup_typed(spec(), BackupType::Differential).await;
    assert_eq!(diff.parent.as_deref(), Some(full.id.as_str()), "a differential builds on the last full");
    expected.push((diff.clone(), snapshot(2).await));

    run("INSERT INTO projects (tenant_id, title) VALUES ('t5', 'after the differential'); DELETE FROM members WHERE project_id = 1; UPDATE projects SET data = NULL WHERE id = 2;").await;
    let inc2 = repo.backup_typed(spec(), BackupType::Incremental).await;
    assert_eq!(inc2.parent.as_deref(), Some(diff.id.as_str()));
    assert!(inc2.rows < 100, "only the changes: {}", inc2.rows);
    expected.push((inc2.clone(), snapshot(3).await));

    // A third link (the chain's deltas are applied in one pass, the newest version of a row
    // winning): a row deleted by the previous link comes back, a row changed by it changes again,
    // a row it inserted goes.
    run("INSERT INTO members VALUES (1, 'u1', 'returned'); UPDATE projects SET title = 'again' WHERE id = 2;
         DELETE FROM projects WHERE title = 'after the differential';")
        .await;
    let inc3 = repo.backup_typed(spec(), BackupType::Incremental).await;
    assert_eq!(inc3.parent.as_deref(), Some(inc2.id.as_str()));
    expected.push((inc3.clone(), snapshot(4).await));

    for (out, want) in &expected {
        let target = tmp.path().join(format!("restored-{}.db", out.id));
        let restored = repo.restore(Path::new(&out.archive), &SourceSpec::Sqlite { path: target.clone() }).await.expect("restore");
        crate::backup::sqlite_equal(&target, want).await;
        assert!(restored.backups >= 1);
        // AUTOINCREMENT's counter is restored too.
        let seq = |p: &Path| {
            let p = p.to_path_buf();
            async move {
                let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", p.display())).await.expect("open");
                let v: i64 = sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'projects'").fetch_one(&mut c).await.expect("seq");
                v
            }
        };
        assert_eq!(seq(&target).await, seq(want).await);
    }
    assert_eq!(expected[3].0.parent.as_deref(), Some(expected[2].0.id.as_str()));
}

/// A table without a primary key carries only its changes (issue 26 item 3): every row's
/// position (`ctid`) is carried beside it, an incremental carries the rows written since its
/// parent and the positions of the rows it keeps, and a restore takes each position's newest
/// version. Duplicate rows (the same values at several positions) are deleted and kept one by one;
/// VACUUM frees positions that new rows take again; VACUUM FULL moves every row (the table is
/// then carried whole, and the next incremental builds on that). Every link restores the
/// table's multiset at its snapshot, serially and in parallel; the full was read in page ranges.
#[tokio::test(flavor = "multi_thread")]
async fn a_table_without_a_key_carries_only_its_changes_and_restores_the_same_multiset() {
    let src = ScratchDb::create().await;
    src.execute(
        "CREATE TABLE log (at int, what text);
         INSERT INTO log SELECT g % 100, 'row ' || (g % 500) FROM generate_series(1, 20000) g;
         INSERT INTO log SELECT 1, 'dup' FROM generate_series(1, 50);
         CREATE TABLE other (id int PRIMARY KEY, v text);
         INSERT INTO other SELECT g, 'o' FROM generate_series(1, 100) g;
         ANALYZE;",
    )
    .await;
    let repo = repo_with_password("pw");
    let state = || pg_dump(&src, &["--data-only"], true);
    let backup = |t: BackupType| {
        let (keys, path, url) = (repo.keys.clone(), repo.path(), src.url());
        async move {
            let (r, mk) = keys.open_repository_for_backup(&path).await.expect("open repository");
            let mut req = safehold_core::backup::BackupRequest::new(SourceSpec::Postgres { url });
            req.jobs = 3;
            req.backup_type = t;
            // Every table read in page ranges by the three connections.
            safehold_core::source::postgres::with_split_pages(0, safehold_core::backup::run(&r, &mk, &req, &CancelToken::new(), &no_progress())).await.expect("backup")
        }
    };
    let index_of = |archive: &str| {
        let keys = repo.keys.clone();
        let archive = archive.to_string();
        async move {
            let mut r = safehold_core::archive::ArchiveReader::open(Path::new(&archive)).expect("open");
            keys.unlock_archive(&mut r, None).await.expect("unlock");
            r.index().expect("index")
        }
    };
    let full = backup(BackupType::Full).await;
    let full_index = index_of(&full.archive).await;
    assert_eq!(full_index.section("public.log#ctids").expect("the rows' positions").rows, 20050);
    let mut expected = vec![(full.clone(), state())];
    let links: [&[&str]; 5] = [
        // Ten of the fifty duplicates deleted, one more added; rows updated in place.
        &["DELETE FROM log WHERE ctid IN (SELECT ctid FROM log WHERE what = 'dup' LIMIT 10); INSERT INTO log VALUES (1, 'dup'); UPDATE log SET what = what || '!' WHERE at = 7;"],
        // Freed positions taken by new rows (VACUUM runs alone, not in a transaction).
        &["VACUUM log", "INSERT INTO log SELECT 2, 'in a freed slot' FROM generate_series(1, 300);"],
        &["DELETE FROM log WHERE at = 3; UPDATE log SET at = at + 1000 WHERE what = 'in a freed slot' AND ctid IN (SELECT ctid FROM log WHERE what = 'in a freed slot' LIMIT 100);"],
        // Every row moved: carried whole.
        &["VACUUM FULL log"],
        &["INSERT INTO log VALUES (5, 'after the rewrite'), (5, 'after the rewrite'); DELETE FROM log WHERE at = 4; UPDATE log SET what = 'dup, changed' WHERE ctid = (SELECT ctid FROM log WHERE what = 'dup' ORDER BY ctid LIMIT 1);"],
    ];
    let mut conn = sqlx::PgConnection::connect(&src.url()).await.expect("connect");
    for (n, sql) in links.iter().enumerate() {
        for part in sql.iter() {
            src.execute(part).await;
        }
        let inc = backup(BackupType::Incremental).await;
        assert_eq!(inc.backup_type, BackupType::Incremental, "{:?}", inc.note);
        // The rows written since the parent's snapshot's oldest open transaction (other tests'
        // transactions in this cluster move it back): exactly those are carried.
        let parent = safehold_core::archive::ArchiveReader::open(Path::new(&expected.last().expect("a parent").0.archive)).expect("open the parent");
        let snapshot = parent.header.basis.as_ref().and_then(|b| b["txid_snapshot"].as_str()).expect("the parent's snapshot").to_string();
        let written: i64 = sqlx::query_scalar("SELECT count(*) FROM log WHERE xmin::text::bigint >= pg_snapshot_xmin($1::pg_snapshot)::text::bigint & 4294967295")
            .bind(&snapshot)
            .fetch_one(&mut conn)
            .await
            .expect("count the rows written since the parent");
        let index = index_of(&inc.archive).await;
        let log = index.section("public.log").expect("log");
        if n == 3 {
            assert_eq!(log.mode, None, "a rewritten table is carried whole");
            assert!(index.section("public.log#live").is_none());
        } else {
            assert_eq!(log.mode.as_deref(), Some("delta"), "link {n}: only the changes");
            let live = index.section("public.log#live").expect("the positions kept");
            assert_eq!(log.rows, written as u64, "link {n} carries the rows written since its parent, of the table's {}", log.rows + live.rows);
            assert!(live.plain_bytes * 20 < full_index.section("public.log").expect("log").plain_bytes, "link {n}: the kept positions are runs, not rows ({} bytes)", live.plain_bytes);
        }
        expected.push((inc, state()));
    }
    assert!(expected[2].1.contains("in a freed slot") && expected[5].1.contains("dup, changed"));
    for (out, want) in &expected {
        let dst = ScratchDb::create().await;
        repo.restore(Path::new(&out.archive), &SourceSpec::Postgres { url: dst.url() }).await.expect("restore");
        assert_eq!(&pg_dump(&dst, &["--data-only"], true), want, "backup {} restores the multiset at its snapshot", out.id);
        drop(dst);
        let (par, result) = restore_into_new_database(&repo.keys, Path::new(&out.archive), 3, &CancelToken::new(), &no_progress()).await;
        result.expect("parallel restore");
        assert_eq!(&pg_dump(&par, &["--data-only"], true), want, "backup {} restores the multiset at its snapshot (parallel restore)", out.id);
    }
}
