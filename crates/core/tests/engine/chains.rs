//! Incremental and differential backups of PostgreSQL: inserts, updates, deletes and rows of a
//! transaction still open at the parent's snapshot; restoring any backup of the chain gives
//! exactly the source's state at its snapshot.

use std::path::Path;

use safehold_core::configurations::BackupType;
use safehold_core::source::SourceSpec;
use sqlx::Connection as _;

use crate::backup::{pg_dump, repo_with_password};
use crate::support::ScratchDb;

#[tokio::test(flavor = "multi_thread")]
async fn every_backup_of_a_chain_restores_the_state_at_its_snapshot() {
    let src = ScratchDb::create().await;
    src.execute(
        "CREATE TABLE tenants (id int PRIMARY KEY, name text NOT NULL);
         CREATE TABLE projects (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id int NOT NULL REFERENCES tenants(id), title text, body text);
         CREATE TABLE notes (tenant_id int, project_id bigint, line int, txt text, PRIMARY KEY (project_id, line));
         CREATE TABLE audit_log (at timestamptz DEFAULT now(), what text); -- no primary key: always backed up whole
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
    sqlx::raw_sql("BEGIN; INSERT INTO notes SELECT 2, g, 2, 'written by a long transaction' FROM generate_series(1, 50) g; UPDATE tenants SET name = 'renamed in long tx' WHERE id = 3;")
        .execute(&mut open_tx)
        .await
        .expect("open a long transaction");
    let inc1 = repo.backup_typed(spec(), BackupType::Incremental).await;
    assert_eq!(inc1.parent.as_deref(), Some(full.id.as_str()), "an incremental builds on the previous backup");
    assert!(inc1.rows < full.rows, "an incremental carries only what changed ({} < {})", inc1.rows, full.rows);
    expected.push((inc1.clone(), state()));
    sqlx::raw_sql("COMMIT").execute(&mut open_tx).await.expect("commit the long transaction");

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

    for (out, want) in &expected {
        let dst = ScratchDb::create().await;
        let restored = repo.restore(Path::new(&out.archive), &SourceSpec::Postgres { url: dst.url() }).await.expect("restore");
        assert_eq!(&pg_dump(&dst, &["--data-only"], true), want, "{:?} backup {} restores the state at its snapshot", out.backup_type, out.id);
        assert_eq!(pg_dump(&dst, &["--schema-only"], false), pg_dump(&src, &["--schema-only"], false));
        assert!(restored.backups >= 1);
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
