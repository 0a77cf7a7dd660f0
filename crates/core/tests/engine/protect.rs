//! Continuous protection's change capture (issue 24, its first part): the server's prerequisites
//! named with what to change; on a cluster with logical decoding (scripts/test.sh starts one,
//! `SAFEHOLD_TEST_PG_LOGICAL`), a slot and a publication made, a workload's committed
//! transactions read back decoded — inserts, updates, an update of a key, an update that leaves a
//! TOASTed value unchanged, deletes, a truncate, a table without a key followed by its whole row
//! (one of two equal rows deleted), a rolled-back transaction absent — and applied to the
//! starting state: at a chosen commit it equals the source's state then, at the end the source's
//! state now. Advancing the slot consumes what was read; dropping it frees the server's WAL.

use safehold_core::source::pg_logical::{self, Val};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

use crate::support::ScratchDb;

const DDL: &str = "
    CREATE TABLE accounts (id int PRIMARY KEY, tenant_id text NOT NULL, balance numeric(12,2), note text, at timestamptz DEFAULT now());
    CREATE TABLE docs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, title text, body text);
    ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
    CREATE TABLE log (msg text, n int);";

async fn state(url: &str) -> Vec<String> {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    let mut out = Vec::new();
    for t in ["accounts", "docs", "log"] {
        let rows: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!("SELECT string_agg(x::text, E'\\n' ORDER BY x::text) FROM {t} x"))).fetch_one(&mut conn).await.expect("state");
        out.push(format!("{t}:\n{}", rows.unwrap_or_default()));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_prerequisites_are_named_with_what_to_change() {
    // The shared server runs with wal_level = replica.
    let db = ScratchDb::create().await;
    let mut conn = PgConnection::connect(&db.url()).await.expect("connect");
    let level: String = sqlx::query_scalar("SHOW wal_level").fetch_one(&mut conn).await.expect("wal_level");
    let missing = pg_logical::missing_prerequisites(&mut conn).await.expect("checked");
    if level != "logical" {
        assert!(missing.iter().any(|m| m.contains("wal_level = logical") && m.contains("restart")), "{missing:?}");
        let err = pg_logical::create(&mut conn, "safehold_never", "safehold_never").await.expect_err("refused");
        assert!(err.message.contains("wal_level"), "{}", err.message);
    }
    let err = pg_logical::create(&mut conn, "Bad-Name", "x").await.expect_err("a name made of anything");
    assert!(err.message.contains("lower-case"), "{}", err.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_changes_are_read_decoded_and_replayed_exactly_to_a_chosen_commit() {
    let Ok(base) = std::env::var("SAFEHOLD_TEST_PG_LOGICAL") else {
        eprintln!("skipped: no cluster with logical decoding (SAFEHOLD_TEST_PG_LOGICAL; make test starts one)");
        return;
    };
    let source = ScratchDb::create_on(&base).await;
    source.execute(DDL).await;
    let replica = ScratchDb::create().await;
    replica.execute(DDL).await;
    let mut conn = PgConnection::connect(&source.url()).await.expect("connect");
    // A table without a key is named: its updates would fail once published.
    let missing = pg_logical::missing_prerequisites(&mut conn).await.expect("checked");
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(missing[0].contains("public.log") && missing[0].contains("REPLICA IDENTITY FULL"), "{missing:?}");
    let err = pg_logical::create(&mut conn, "safehold_t", "safehold_t").await.expect_err("refused while log has no identity");
    assert!(err.message.contains("public.log"), "{}", err.message);
    source.execute("ALTER TABLE log REPLICA IDENTITY FULL").await;
    let name = format!("safehold_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    pg_logical::create(&mut conn, &name, &name).await.expect("slot and publication");

    let body = "0123456789abcdef".repeat(800);
    source
        .execute(&format!(
            "INSERT INTO accounts (id, tenant_id, balance, note) SELECT g, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, g * 1.5, 'note ' || g FROM generate_series(1, 50) g;
             INSERT INTO docs (title, body) VALUES ('one', '{body}'), ('two', '{body}'), ('three', 'short');
             INSERT INTO log VALUES ('x', 1), ('x', 1), ('y', 2);"
        ))
        .await;
    source.execute("UPDATE accounts SET balance = balance + 1 WHERE id % 3 = 0; UPDATE docs SET title = 'changed' WHERE id = 1;").await;
    source
        .execute(
            "UPDATE accounts SET id = id + 1000 WHERE id = 7; DELETE FROM accounts WHERE id = 8; UPDATE log SET n = 5 WHERE msg = 'y';
             DELETE FROM log WHERE ctid = (SELECT ctid FROM log WHERE msg = 'x' LIMIT 1);",
        )
        .await;
    let then = state(&source.url()).await;
    source
        .execute(
            "TRUNCATE log; INSERT INTO log VALUES ('after', 9); UPDATE docs SET body = body || 'z' WHERE id = 2;
             INSERT INTO accounts (id, tenant_id, balance, note) VALUES (99, 'a', NULL, E'it''s \"q\"\\n\\t\\\\ é');",
        )
        .await;
    source.execute("BEGIN; INSERT INTO accounts (id, tenant_id) VALUES (500, 'gone'); ROLLBACK;").await;
    let now = state(&source.url()).await;

    let txns = pg_logical::peek(&mut conn, &name, &name, 100_000).await.expect("read the slot");
    assert_eq!(txns.len(), 4, "four committed transactions, the rolled-back one absent: {:?}", txns.iter().map(|t| t.changes.len()).collect::<Vec<_>>());
    assert!(txns.windows(2).all(|w| w[0].commit_lsn < w[1].commit_lsn && w[0].commit_time_us <= w[1].commit_time_us), "in commit order");
    let all: Vec<&pg_logical::Change> = txns.iter().flat_map(|t| t.changes.iter()).collect();
    let key_update = all.iter().find(|c| c.table == "public.accounts" && c.op == 'U' && c.old.is_some()).expect("the update of a key carries the old key");
    assert_eq!((key_update.old.as_ref().unwrap()[0].clone(), key_update.new.as_ref().unwrap()[0].clone()), (Val::Text("7".into()), Val::Text("1007".into())));
    let toast = all.iter().find(|c| c.table == "public.docs" && c.op == 'U' && c.new.as_ref().is_some_and(|n| n[1] == Val::Text("changed".into()))).expect("the title update");
    assert_eq!(toast.new.as_ref().unwrap()[2], Val::Unchanged, "the TOASTed body is not sent when unchanged");
    assert!(all.iter().any(|c| c.op == 'T' && c.table == "public.log"), "the truncate");
    let log_delete = all.iter().find(|c| c.table == "public.log" && c.op == 'D').expect("a delete in the keyless table");
    assert_eq!(log_delete.key, vec!["msg".to_string(), "n".to_string()], "followed by its whole row");

    // Replayed to the third commit: the state then; the rest: the state now.
    let mut target = PgConnection::connect(&replica.url()).await.expect("connect");
    let applied = pg_logical::apply(&mut target, &txns, Some(txns[2].commit_time_us)).await.expect("replay to a commit");
    assert_eq!(applied as usize, txns[..3].iter().map(|t| t.changes.len()).sum::<usize>());
    assert_eq!(state(&replica.url()).await, then, "the state at the chosen commit");
    pg_logical::apply(&mut target, &txns[3..], None).await.expect("replay the rest");
    assert_eq!(state(&replica.url()).await, now, "the state now, exactly");
    // A replay onto a state it does not continue from changes nothing.
    let before = state(&replica.url()).await;
    let err = pg_logical::apply(&mut target, &txns[2..3], None).await.expect_err("the row of key 7 is not there any more");
    assert!(err.message.contains("not the state the changes continue from") || err.message.contains("found 0 rows"), "{}", err.message);
    assert_eq!(state(&replica.url()).await, before, "all or nothing");

    // Consumed once stored: the slot moves past what was read; dropped, it is gone.
    let last = txns.last().expect("some").end_lsn;
    pg_logical::advance(&mut conn, &name, last).await.expect("advance");
    assert!(pg_logical::peek(&mut conn, &name, &name, 100_000).await.expect("read again").is_empty(), "nothing read twice");
    let status = pg_logical::status(&mut conn, &name).await.expect("status").expect("the slot");
    assert!(status.lag_bytes < 1 << 20, "{status:?}");
    pg_logical::drop(&mut conn, &name, &name).await.expect("drop");
    assert!(pg_logical::status(&mut conn, &name).await.expect("status").is_none(), "the slot is gone");
}
