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

/// The cluster with logical decoding (make test starts one), or `None` said as a skip.
fn logical_base() -> Option<String> {
    let base = std::env::var("SAFEHOLD_TEST_PG_LOGICAL").ok();
    if base.is_none() {
        eprintln!("skipped: no cluster with logical decoding (SAFEHOLD_TEST_PG_LOGICAL; make test starts one)");
    }
    base
}

/// The server's clock now, as RFC 3339 UTC with microseconds (the form `--at` takes).
async fn server_now(url: &str) -> String {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')").fetch_one(&mut conn).await.expect("now")
}

/// A connection named `name` to the database at `url` (trust: no password kept).
async fn connection_to(ctx: &safehold_core::context::Ctx, name: &str, url: &str) -> safehold_core::connections::Connection {
    let mut input = safehold_core::connections::ConnectionInput::from_url(name, url).expect("input");
    input.password = None;
    safehold_core::connections::add(ctx, input).await.expect("connection")
}

/// A writer committing `sql(i)` (i = 1, 2, …) one transaction after another, `gap_ms` apart,
/// until stopped; [`Writer::pause`] holds it between two transactions (every one before
/// committed, none after begun) so a second can be captured.
struct Writer {
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stopped: std::sync::Arc<std::sync::atomic::AtomicBool>,
    idle: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(url: String, gap_ms: u64, sql: impl Fn(u64) -> String + Send + 'static) -> Writer {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let (paused, stopped, idle) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let task = {
            let (paused, stopped, idle) = (paused.clone(), stopped.clone(), idle.clone());
            tokio::spawn(async move {
                let mut conn = PgConnection::connect(&url).await.expect("writer");
                let mut i = 0u64;
                while !stopped.load(Ordering::SeqCst) {
                    if paused.load(Ordering::SeqCst) {
                        idle.store(true, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        continue;
                    }
                    idle.store(false, Ordering::SeqCst);
                    i += 1;
                    sqlx::raw_sql(AssertSqlSafe(sql(i))).execute(&mut conn).await.expect("a write");
                    tokio::time::sleep(std::time::Duration::from_millis(gap_ms)).await;
                }
            })
        };
        Writer { paused, stopped, idle, task }
    }

    /// Holds the writer (`true`: returns once it waits) or lets it go on.
    async fn pause(&self, on: bool) {
        use std::sync::atomic::Ordering;
        self.paused.store(on, Ordering::SeqCst);
        if on {
            while !self.idle.load(Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        } else {
            self.idle.store(false, Ordering::SeqCst);
        }
    }

    async fn stop(self) {
        self.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        self.task.await.expect("writer");
    }
}

/// A repository (password "pw") opened for backups, and a fresh protection name.
async fn protected_repo() -> (crate::backup::Repo, safehold_core::repository::Repository, safehold_core::archive::SecretKey, String) {
    let repo = crate::backup::repo_with_password("pw");
    let (r, mk) = repo.keys.open_repository_for_backup(&repo.path()).await.expect("repository");
    let slot = format!("safehold_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    (repo, r, mk, slot)
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
    let Some(base) = logical_base() else { return };
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
    // (Not by its lag in bytes: other tests write WAL on this server meanwhile.)
    let moved: bool = sqlx::query_scalar("SELECT confirmed_flush_lsn >= $2::text::pg_lsn FROM pg_replication_slots WHERE slot_name = $1")
        .bind(&name)
        .bind(pg_logical::format_lsn(last))
        .fetch_one(&mut conn)
        .await
        .expect("the slot");
    assert!(moved, "the slot is past what was read");
    pg_logical::drop(&mut conn, &name, &name).await.expect("drop");
    assert!(pg_logical::status(&mut conn, &name).await.expect("status").is_none(), "the slot is gone");
}

/// Continuous protection end to end on the cluster with logical decoding: the slot and the base
/// backup made while a writer commits transactions (and one transaction stays open across the
/// backup's snapshot), segments written while it goes on — one step stopping before it advanced
/// the slot, as a killed process would — and the database put back to two chosen seconds into
/// empty databases: each equals the state captured at that second, nothing lost or doubled.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_is_put_back_to_a_chosen_second_from_its_base_backup_and_segments() {
    use safehold_core::protect;
    use safehold_core::source::{no_progress, CancelToken, SourceSpec};
    let Some(base) = logical_base() else { return };
    let source = ScratchDb::create_on(&base).await;
    source
        .execute(
            "CREATE TABLE items (id serial PRIMARY KEY, tenant_id text NOT NULL, qty int NOT NULL, note text);
             CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, item_id int REFERENCES items(id) ON DELETE CASCADE, body text);
             INSERT INTO items (tenant_id, qty, note) SELECT 't' || (g % 3), g, repeat('n', g) FROM generate_series(1, 100) g;",
        )
        .await;
    let state = |url: String| async move {
        let mut conn = PgConnection::connect(&url).await.expect("connect");
        let mut out = Vec::new();
        for t in ["items", "events"] {
            let rows: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!("SELECT string_agg(x::text, E'\\n' ORDER BY x::text) FROM {t} x"))).fetch_one(&mut conn).await.expect("state");
            out.push(rows.unwrap_or_default());
        }
        out
    };
    // The writer: a transaction every few milliseconds until stopped; paused on request.
    let writer = Writer::start(source.url(), 3, |i| match i % 4 {
        0 => format!("INSERT INTO items (tenant_id, qty, note) VALUES ('t{}', {i}, 'new {i}')", i % 3),
        1 => format!("UPDATE items SET qty = qty + 1, note = note || '+' WHERE id = (SELECT id FROM items ORDER BY id OFFSET {} LIMIT 1)", i % 50),
        2 => format!("INSERT INTO events (item_id, body) SELECT id, 'event {i}' FROM items ORDER BY id DESC LIMIT 2"),
        _ => format!("DELETE FROM items WHERE id = (SELECT id FROM items WHERE tenant_id <> 'open' ORDER BY id OFFSET {} LIMIT 1)", 60 + i % 20),
    });
    let (repo, r, mk, slot) = protected_repo().await;
    let mut req = safehold_core::backup::BackupRequest::new(SourceSpec::Postgres { url: source.url() });
    req.source_name = "protected".into();
    protect::begin(&r, &req, &slot).await.expect("the slot");
    // A transaction open across the base backup's snapshot: committed after it, it is in a segment.
    let mut open = PgConnection::connect(&source.url()).await.expect("connect");
    sqlx::raw_sql("BEGIN; INSERT INTO items (tenant_id, qty, note) VALUES ('open', -1, 'open across the snapshot')").execute(&mut open).await.expect("open");
    let (p, based) = protect::base(&r, &mk, &req, &slot, &CancelToken::new(), &no_progress()).await.expect("the base backup");
    assert_eq!(p.base_id, based.id);
    sqlx::raw_sql("COMMIT").execute(&mut open).await.expect("commit");
    let mut written = 0;
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        written += protect::step(&r, &source.url(), &slot, None).await.expect("step").transactions;
    }
    assert!(written > 0, "the writer's transactions are in segments");
    writer.pause(true).await;
    let (first_at, first_state) = (server_now(&source.url()).await, state(source.url()).await);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    writer.pause(false).await;
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    // A step that wrote its segment and died before advancing the slot: the next holds it again.
    let mut conn = PgConnection::connect(&source.url()).await.expect("connect");
    let (died, _) = protect::write_segment(&r, &mut conn, &slot, None).await.expect("a segment, the slot not advanced");
    assert!(died.transactions > 0);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    writer.pause(true).await;
    let (second_at, second_state) = (server_now(&source.url()).await, state(source.url()).await);
    writer.stop().await;
    let again = protect::step(&r, &source.url(), &slot, None).await.expect("step after the crash");
    assert!(again.transactions >= died.transactions, "the stopped step's transactions are read again");

    for (at, expected) in [(&first_at, &first_state), (&second_at, &second_state)] {
        let target = ScratchDb::create().await;
        let out = protect::restore_at(&r, &repo.keys, &slot, at, &target.url(), &CancelToken::new(), &no_progress()).await.expect("restore to a second");
        assert_eq!(out.base_id, p.base_id);
        assert_eq!(&state(target.url()).await, expected, "the database as it was at {at}");
        // The sequences go on from the rows restored: the next insert does not collide.
        target.execute("INSERT INTO items (tenant_id, qty) VALUES ('after', 0); INSERT INTO events (item_id, body) VALUES (NULL, 'after')").await;
    }
    assert!(second_state[0].contains("open across the snapshot"), "the transaction open across the snapshot is there");
    assert!(!first_state.eq(&second_state));

    protect::stop(&r, &source.url(), &slot).await.expect("stop");
    let mut conn = PgConnection::connect(&source.url()).await.expect("connect");
    assert!(pg_logical::status(&mut conn, &slot).await.expect("status").is_none(), "turning protection off drops the slot");
}

/// The recovery point's lag is how long the oldest committed change not yet sealed has waited;
/// the WAL the slot holds back is checked against a warning and a hard limit, past which the
/// slot is dropped (protection stopped) rather than let the server's disk fill.
#[tokio::test(flavor = "multi_thread")]
async fn the_lag_and_the_slots_size_are_watched_and_a_slot_past_its_limit_is_dropped() {
    use safehold_core::protect;
    use safehold_core::source::{no_progress, CancelToken, SourceSpec};
    let Some(base) = logical_base() else { return };
    let source = ScratchDb::create_on(&base).await;
    source.execute("CREATE TABLE t (id serial PRIMARY KEY, v text)").await;
    let (_repo, r, mk, slot) = protected_repo().await;
    let req = safehold_core::backup::BackupRequest::new(SourceSpec::Postgres { url: source.url() });
    protect::start(&r, &mk, &req, &slot, &CancelToken::new(), &no_progress()).await.expect("start");
    let st = protect::status(&r, &source.url(), &slot).await.expect("status");
    assert_eq!((st.lag_seconds, st.segments), (Some(0.0), 0), "{st:?}");
    source.execute("INSERT INTO t (v) VALUES ('waits')").await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let st = protect::status(&r, &source.url(), &slot).await.expect("status");
    assert!(st.lag_seconds.is_some_and(|l| (1.0..60.0).contains(&l)), "the change has waited over a second: {st:?}");
    protect::step(&r, &source.url(), &slot, None).await.expect("step");
    let st = protect::status(&r, &source.url(), &slot).await.expect("status");
    assert_eq!((st.lag_seconds, st.segments), (Some(0.0), 1), "{st:?}");
    assert!(st.last_sealed_commit.is_some());

    source.execute("INSERT INTO t (v) SELECT 'x' FROM generate_series(1, 1000)").await;
    let check = protect::check_slot(&r, &source.url(), &slot, Some(0), None).await.expect("check");
    assert!(check.held_bytes > 0 && check.dropped.is_none(), "{check:?}");
    assert!(check.warning.as_deref().is_some_and(|w| w.contains("bytes of WAL back") && w.contains("protect run")), "{check:?}");
    let check = protect::check_slot(&r, &source.url(), &slot, None, Some(0)).await.expect("check");
    assert!(check.dropped.as_deref().is_some_and(|d| d.contains("does not fill")), "{check:?}");
    let st = protect::status(&r, &source.url(), &slot).await.expect("status");
    assert!(st.slot.is_none() && st.lag_seconds.is_none(), "the slot is gone: {st:?}");
    assert!(protect::protection(&r, &slot).expect("the record stays").stopped, "protection is stopped; its spans stay restorable");
    assert_eq!(st.segments, 1, "the segments stay");
}

/// One tenant put back to a chosen second, in place, while the others keep what they did since:
/// the customer who deleted their data at 14:32 gets it back as it was at 14:31:59.
#[tokio::test(flavor = "multi_thread")]
async fn one_tenant_is_put_back_to_a_chosen_second_in_place_and_the_others_keep_their_changes() {
    use safehold_core::protect;
    use safehold_core::source::pg_apply::TenantScope;
    use safehold_core::source::{no_progress, CancelToken, SourceSpec};
    let Some(base) = logical_base() else { return };
    let source = ScratchDb::create_on(&base).await;
    source
        .execute(
            "CREATE TABLE tenants (id text PRIMARY KEY, name text NOT NULL);
             CREATE TABLE projects (id serial PRIMARY KEY, tenant_id text NOT NULL REFERENCES tenants(id), title text);
             CREATE TABLE notes (id serial PRIMARY KEY, project_id int NOT NULL REFERENCES projects(id), body text);
             INSERT INTO tenants VALUES ('a', 'Acme'), ('b', 'Beta');
             INSERT INTO projects (tenant_id, title) SELECT t, t || ' project ' || g FROM unnest(ARRAY['a', 'b']) t, generate_series(1, 5) g;
             INSERT INTO notes (project_id, body) SELECT id, 'note on ' || title FROM projects;",
        )
        .await;
    let rows = |url: String, who: &'static str| async move {
        let mut conn = PgConnection::connect(&url).await.expect("connect");
        let r: Option<String> = sqlx::query_scalar(
            "SELECT string_agg(concat_ws('|', p.id, p.title, n.id, n.body), E'\\n' ORDER BY p.id, n.id) FROM projects p LEFT JOIN notes n ON n.project_id = p.id WHERE p.tenant_id = $1",
        )
        .bind(who)
        .fetch_one(&mut conn)
        .await
        .expect("rows");
        r.unwrap_or_default()
    };
    let (repo, r, mk, slot) = protected_repo().await;
    let req = safehold_core::backup::BackupRequest::new(SourceSpec::Postgres { url: source.url() });
    protect::start(&r, &mk, &req, &slot, &CancelToken::new(), &no_progress()).await.expect("start");
    source.execute("UPDATE projects SET title = title || ' (edited)' WHERE tenant_id = 'a' AND id % 2 = 0; INSERT INTO notes (project_id, body) SELECT min(id), 'a late note' FROM projects WHERE tenant_id = 'a'").await;
    let at = server_now(&source.url()).await;
    let a_then = rows(source.url(), "a").await;
    let notes = |url: String| async move {
        let mut conn = PgConnection::connect(&url).await.expect("connect");
        let r: Option<String> = sqlx::query_scalar("SELECT string_agg(concat_ws('|', id, project_id, body), E'\n' ORDER BY id) FROM notes").fetch_one(&mut conn).await.expect("notes");
        r.unwrap_or_default()
    };
    let notes_then = notes(source.url()).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // Then A's data is deleted, and B goes on working.
    source.execute("DELETE FROM notes WHERE project_id IN (SELECT id FROM projects WHERE tenant_id = 'a'); DELETE FROM projects WHERE tenant_id = 'a';").await;
    source.execute("UPDATE projects SET title = 'b moved on' WHERE tenant_id = 'b' AND id = (SELECT min(id) FROM projects WHERE tenant_id = 'b'); INSERT INTO notes (project_id, body) SELECT max(id), 'b after' FROM projects WHERE tenant_id = 'b'").await;
    protect::step(&r, &source.url(), &slot, None).await.expect("step");
    let b_now = rows(source.url(), "b").await;
    assert_eq!(rows(source.url(), "a").await, "", "A's projects are gone");

    let ts = TenantScope { tenant_id: "a".into(), tenant_column: "tenant_id".into(), tenants_table: "tenants".into(), references: Vec::new() };
    let plan = protect::restore_tenant_at(&r, &repo.keys, &slot, &at, &source.url(), &ts, false, &CancelToken::new(), &no_progress()).await.expect("plan");
    assert!(plan.tables.iter().any(|t| t.table == "public.projects" && t.inserted == 5), "{:?}", plan.tables);
    assert_eq!(rows(source.url(), "a").await, "", "planning changed nothing");
    protect::restore_tenant_at(&r, &repo.keys, &slot, &at, &source.url(), &ts, true, &CancelToken::new(), &no_progress()).await.expect("the tenant put back");
    assert_eq!(rows(source.url(), "a").await, a_then, "A as it was at the chosen second");
    assert_eq!(rows(source.url(), "b").await, b_now, "B keeps what it did since");
    let mut admin = PgConnection::connect(&format!("{base}/postgres")).await.expect("connect");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname LIKE 'safehold_at_%'").fetch_one(&mut admin).await.expect("count");
    assert_eq!(left, 0, "the scratch database is gone");

    // The plan says which base, how many segments and changes.
    let plan = protect::plan_at(&r, &repo.keys, &slot, &at).await.expect("the plan");
    assert_eq!((plan.segments, plan.transactions), (1, 1), "one transaction (one batch) before the second: {plan:?}");
    assert!(plan.changes >= 3, "{plan:?}");
    // The same tenant as a copy beside the others: a new tenant with A's projects of that second.
    let copy = protect::AtScope::TenantAsCopy(ts.clone(), safehold_core::migrate::CopyAs { new_tenant_id: Some("a2".into()), ..Default::default() });
    let copied = protect::restore_scope_at(&r, &repo.keys, &slot, &at, &source.url(), &copy, true, &CancelToken::new(), &no_progress()).await.expect("as a copy");
    assert_eq!(copied.new_tenant_id.as_deref(), Some("a2"));
    let titles = |url: String, who: &'static str| async move {
        let mut conn = PgConnection::connect(&url).await.expect("connect");
        let r: Option<String> = sqlx::query_scalar("SELECT string_agg(title, ',' ORDER BY title) FROM projects WHERE tenant_id = $1").bind(who).fetch_one(&mut conn).await.expect("titles");
        r.unwrap_or_default()
    };
    assert_eq!(titles(source.url(), "a2").await, titles(source.url(), "a").await, "the copy holds A's projects as they were");
    // Chosen tables, whole: notes as they were at that second.
    let tables = protect::AtScope::Scope(safehold_core::source::pg_apply::Scope::Tables(["public.notes".to_string()].into_iter().collect()));
    protect::restore_scope_at(&r, &repo.keys, &slot, &at, &source.url(), &tables, true, &CancelToken::new(), &no_progress()).await.expect("a table put back");
    assert_eq!(notes(source.url()).await, notes_then, "notes as they were at the chosen second");
    protect::stop(&r, &source.url(), &slot).await.expect("stop");
}

/// The configuration setting "Continuous protection": refused for a SQLite connection with what to
/// do; on, its first step makes the slot and a full base backup recorded in the history (whatever
/// the configuration's own type), the next seals what committed, the status says so, and the
/// segments put the database back to a second; turned off, the slot is dropped at once; turned on
/// again and the configuration deleted, the slot goes too.
#[tokio::test(flavor = "multi_thread")]
async fn a_configurations_continuous_protection_starts_streams_and_its_slot_goes_when_turned_off_or_deleted() {
    use safehold_core::configurations::{self, BackupType};
    use safehold_core::protect::{self, configured};
    use safehold_core::source::{no_progress, CancelToken};
    use std::sync::{Arc, Mutex};
    let Some(base) = logical_base() else { return };
    let Some((_home, ctx)) = crate::runs::keychain_home().await else { return };
    safehold_core::demo::ensure(&ctx, false).await.expect("demo");
    let source = ScratchDb::create_on(&base).await;
    source.execute(DDL).await;
    // A table without a key is followed by its whole row (named otherwise: see the prerequisites).
    source.execute("ALTER TABLE log REPLICA IDENTITY FULL; INSERT INTO accounts (id, tenant_id, balance) SELECT g, 't' || (g % 2), g FROM generate_series(1, 20) g;").await;
    let demo = configurations::list(&ctx).await.expect("configs").remove(0);

    // The demo is SQLite: the setting is refused there, naming what to do.
    let mut on_sqlite = demo.to_input();
    on_sqlite.continuous_protection = true;
    let err = configurations::update(&ctx, &demo.id, on_sqlite).await.expect_err("refused on SQLite");
    let text = format!("{err:?}");
    assert!(text.contains("continuous_protection") && text.contains("PostgreSQL"), "{text}");

    let conn = connection_to(&ctx, "Protected", &source.url()).await;
    let mut input = demo.to_input();
    input.configuration_name = "Protected nightly".into();
    input.connection_id = conn.id.clone();
    input.backup_type = BackupType::Incremental;
    input.continuous_protection = true;
    let config = configurations::create(&ctx, input).await.expect("configuration");
    let notices: configured::NoticeSink = {
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        Arc::new(move |n| seen.lock().expect("notices").push(n.message))
    };
    let slot = configured::slot_name(&config.id);
    let on_server = async || {
        let mut c = PgConnection::connect(&source.url()).await.expect("connect");
        pg_logical::status(&mut c, &slot).await.expect("status").is_some()
    };

    let first = configured::run_step(&ctx, &config.id, &notices).await.expect("started");
    assert_eq!(first.action, "started");
    assert!(on_server().await, "the slot is made");
    let history = safehold_core::history::executions(&ctx, 10).await.expect("history");
    let base_run = history.iter().find(|e| e.configuration_id.as_deref() == Some(config.id.as_str())).expect("the base backup is in the history");
    assert_eq!(base_run.backup_type, "full", "the base is a full backup whatever the configuration's type");

    for sql in ["INSERT INTO accounts (id, tenant_id, balance) VALUES (100, 't0', 1)", "UPDATE accounts SET balance = balance + 1 WHERE id < 5", "DELETE FROM accounts WHERE id = 7", "INSERT INTO log VALUES ('x', 1)"] {
        source.execute(sql).await;
    }
    let at = server_now(&source.url()).await;
    let second = configured::run_step(&ctx, &config.id, &notices).await.expect("a step");
    assert_eq!(second.action, "sealed", "{second:?}");
    assert_eq!(second.transactions, 4);
    let st = configured::status_of(&ctx, &config.id).await.expect("status");
    assert!(st.enabled);
    let record = st.record.expect("recorded");
    assert_eq!(record.state, "streaming");
    assert_eq!(record.base_execution_id.as_deref(), Some(base_run.id.as_str()));
    assert!(record.last_error.is_none() && record.last_sealed_commit.is_some(), "{record:?}");
    let live = st.live.expect("the server answered");
    assert_eq!(live.segments, 1);
    assert_eq!(live.lag_seconds, Some(0.0), "nothing committed waits");

    // The segments put the database back: into a new database, at the second before the step.
    let store = safehold_core::storage::find(&ctx, &config.storage_location).await.expect("storage");
    let dir = safehold_core::storage::location(&ctx, &store).await.expect("dir");
    let repo = safehold_core::repository::Repository::open(&dir).expect("open").expect("a repository");
    let keys = safehold_core::keys::custody::key_sources(&ctx).await.expect("keys");
    let target = ScratchDb::create().await;
    protect::restore_at(&repo, &keys, &slot, &at, &target.url(), &CancelToken::new(), &no_progress()).await.expect("restore to a second");
    assert_eq!(state(&target.url()).await, state(&source.url()).await);

    // The Restore tab's timeline and its restore to a second: the base as a point, one span up
    // to the last step; the plan, then the whole database into a new one, and a tenant in place.
    let tl = configured::timeline(&ctx, &config.id).await.expect("timeline");
    assert_eq!(tl.spans.len(), 1, "{tl:?}");
    assert!(tl.backups.iter().any(|b| b.execution_id == base_run.id && b.is_base), "{tl:?}");
    assert!(tl.recovery_point.as_deref().is_some_and(|r| r > at.as_str()) && tl.segments == 1 && tl.segment_bytes > 0, "{tl:?}");
    let into = format!("safehold_then_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut ask = configured::SecondRequest { configuration_id: config.id.clone(), at: at.clone(), tenant_id: None, into_database: Some(into.clone()), dry_run: true };
    let planned = configured::restore_second(&ctx, &ask, &CancelToken::new()).await.expect("planned");
    assert_eq!((planned.plan.segments, planned.plan.transactions, planned.committed), (1, 4, false), "{planned:?}");
    ask.dry_run = false;
    configured::restore_second(&ctx, &ask, &CancelToken::new()).await.expect("into a new database");
    let then_url = format!("{base}/{into}");
    assert_eq!(state(&then_url).await, state(&source.url()).await, "the whole database as it was, in {into}");
    let mut admin = PgConnection::connect(&format!("{base}/postgres")).await.expect("connect");
    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE {into} WITH (FORCE)"))).execute(&mut admin).await.expect("drop");
    // Cancelled: an error that says so, and the database it made is gone again.
    let cancelled = CancelToken::new();
    cancelled.cancel();
    let err = configured::restore_second(&ctx, &ask, &cancelled).await.expect_err("cancelled");
    assert_eq!(err.code, safehold_core::ErrorCode::Cancelled, "{err:?}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1").bind(&into).fetch_one(&mut admin).await.expect("count");
    assert_eq!(left, 0, "the cancelled restore's database is dropped");
    source.execute("DELETE FROM accounts WHERE tenant_id = 't0'").await;
    let tenant = configured::SecondRequest { configuration_id: config.id.clone(), at: at.clone(), tenant_id: Some("t0".into()), into_database: None, dry_run: false };
    let put = configured::restore_second(&ctx, &tenant, &CancelToken::new()).await.expect("a tenant in place");
    assert!(put.tables.iter().any(|t| t.table == "public.accounts" && t.inserted > 0), "{put:?}");
    assert_eq!(state(&source.url()).await, state(&target.url()).await, "tenant t0 is back as it was");
    let between = configured::SecondRequest { at: "2000-01-01T00:00:00Z".into(), ..tenant.clone() };
    assert!(configured::restore_second(&ctx, &between, &CancelToken::new()).await.expect_err("before the base").message.contains("before the first base"));
    // Each restore to a second is on the Restore tab's list like any other restore: the tenant's
    // with its point and what it changed, the cancelled one and the refused one with why.
    let listed = safehold_core::history::restores(&ctx, 20, 0).await.expect("restores");
    let op = listed.iter().find(|r| Some(r.id.as_str()) == put.operation_id.as_deref()).expect("the tenant's restore is recorded");
    assert_eq!((op.status, op.restore_type.as_str(), op.target_tenant_id.as_deref(), op.restore_point.as_deref()), (safehold_core::history::JobStatus::Completed, "tenant_only", Some("t0"), Some(at.as_str())), "{op:?}");
    assert!(op.restored_records.get("public.accounts").is_some_and(|r| r["inserted"].as_u64().unwrap_or(0) > 0), "{:?}", op.restored_records);
    assert!(listed.iter().any(|r| r.status == safehold_core::history::JobStatus::Cancelled && r.restore_type == "full"), "the cancelled one: {listed:?}");
    assert!(listed.iter().any(|r| r.status == safehold_core::history::JobStatus::Failed && r.error_message.as_deref().is_some_and(|m| m.contains("before the first base"))), "the refused one: {listed:?}");
    assert!(planned.operation_id.is_none(), "a plan is not recorded");

    // Two streamers on one configuration (the app and `schedule run`), stepping at the same
    // moment, round after round: neither fails (the one that finds the slot busy has nothing to
    // do) and the segments still put the database back exactly. First two that poll, then two
    // that each keep a replication stream between their steps (as `run_forever` does): one holds
    // the slot, the other finds it streamed and is idle.
    for round in 0..10 {
        source.execute(&format!("INSERT INTO accounts (id, tenant_id, balance) VALUES ({}, 't1', {round})", 1000 + round)).await;
        let (a, b) = tokio::join!(configured::run_step(&ctx, &config.id, &notices), configured::run_step(&ctx, &config.id, &notices));
        assert!(a.is_ok() && b.is_ok(), "round {round}: {a:?} {b:?}");
    }
    let (mut app, mut server) = (protect::Streams::default(), protect::Streams::default());
    for round in 10..16 {
        source.execute(&format!("INSERT INTO accounts (id, tenant_id, balance) VALUES ({}, 't1', {round})", 1000 + round)).await;
        // Boxed: two steps' futures side by side are too large for the test thread's stack.
        let (a, b) = Box::pin(async { tokio::join!(Box::pin(configured::run_step_in(&ctx, &config.id, &notices, Some(&mut app))), Box::pin(configured::run_step_in(&ctx, &config.id, &notices, Some(&mut server)))) }).await;
        assert!(a.is_ok() && b.is_ok(), "round {round}: {a:?} {b:?}");
        assert!(app.is_open(&slot) != server.is_open(&slot), "round {round}: one of the two streams the slot");
    }
    let holder = if app.is_open(&slot) { &mut app } else { &mut server };
    let after = server_now(&source.url()).await;
    Box::pin(configured::run_step_in(&ctx, &config.id, &notices, Some(holder))).await.expect("a last step");
    let again = ScratchDb::create().await;
    protect::restore_at(&repo, &keys, &slot, &after, &again.url(), &CancelToken::new(), &no_progress()).await.expect("restore after two streamers");
    assert_eq!(state(&again.url()).await, state(&source.url()).await, "two streamers lost and doubled nothing");

    // Retention keeps the base while it is one, even when expired and not the last full.
    let newer = safehold_core::runs::enqueue_full(&ctx, &config.id).await.expect("enqueue");
    safehold_core::runs::run(&ctx, &newer, &CancelToken::new()).await.expect("a newer full");
    let later = chrono::Utc::now() + chrono::Duration::days(400);
    let plan = safehold_core::retention::preview_at(&ctx, &config.id, later).await.expect("plan");
    let kept = plan.items.iter().find(|i| i.execution_id == base_run.id).expect("the base is in the plan");
    assert_eq!(kept.action, safehold_core::retention::RetentionAction::Keep, "{kept:?}");
    assert!(kept.reason.contains("continuous protection"), "{}", kept.reason);

    let segments_kept = protect::segments(&repo, &slot).expect("segments").len();
    assert!(segments_kept > 1);
    // Off: the slot is dropped by the change itself, the record goes, the segments stay.
    let mut off = config.to_input();
    off.continuous_protection = false;
    configurations::update(&ctx, &config.id, off).await.expect("off");
    assert_eq!(configured::settle(&ctx, &config.id).await.expect("settled"), Some(slot.clone()));
    assert!(!on_server().await, "turning it off drops the slot");
    assert!(configured::status_of(&ctx, &config.id).await.expect("status").record.is_none());
    assert_eq!(protect::segments(&repo, &slot).expect("segments").len(), segments_kept, "the segments stay with their base");
    // No longer a base: retention deletes it when it expires, and its segments with it.
    safehold_core::retention::apply_at(&ctx, &config.id, later).await.expect("retention");
    assert!(protect::segments(&repo, &slot).expect("segments").is_empty(), "the segments went with their base");
    assert_eq!(configured::run_step(&ctx, &config.id, &notices).await.expect("a step while off").action, "idle");
    assert!(!on_server().await);

    // On again (a new base), then the configuration deleted: the slot goes with it.
    configurations::update(&ctx, &config.id, config.to_input()).await.expect("on");
    assert_eq!(configured::run_step(&ctx, &config.id, &notices).await.expect("started again").action, "started");
    assert!(on_server().await);
    configurations::delete(&ctx, &config.id).await.expect("deleted");
    assert_eq!(configured::settle(&ctx, &config.id).await.expect("settled"), Some(slot.clone()));
    assert!(!on_server().await, "deleting the configuration drops the slot");
}

/// A schema change while streaming (`pgoutput` carries no DDL): the step that meets it seals only
/// what committed before the last step's reading, a new base backup is taken with the slot kept,
/// and seconds on both sides restore exactly — before the change from the first base and its
/// segments, after it from the new one. A second between the two, or later than the last step,
/// is refused, naming the seconds that are covered.
#[tokio::test(flavor = "multi_thread")]
async fn a_schema_change_mid_stream_starts_a_new_base_and_seconds_on_both_sides_restore_exactly() {
    use safehold_core::protect;
    use safehold_core::source::{no_progress, CancelToken, SourceSpec};
    let Some(base) = logical_base() else { return };
    let source = ScratchDb::create_on(&base).await;
    source.execute("CREATE TABLE items (id int PRIMARY KEY, tenant_id text NOT NULL, qty int); INSERT INTO items SELECT g, 't' || (g % 2), g FROM generate_series(1, 10) g;").await;
    let items = |url: String| async move {
        let mut conn = PgConnection::connect(&url).await.expect("connect");
        let rows: Option<String> = sqlx::query_scalar("SELECT string_agg(x::text, E'\\n' ORDER BY x::text) FROM items x").fetch_one(&mut conn).await.expect("rows");
        rows.unwrap_or_default()
    };
    let (repo, r, mk, slot) = protected_repo().await;
    let req = safehold_core::backup::BackupRequest::new(SourceSpec::Postgres { url: source.url() });
    let (first, _) = protect::start(&r, &mk, &req, &slot, &CancelToken::new(), &no_progress()).await.expect("started");

    source.execute("INSERT INTO items VALUES (11, 't1', 11), (12, 't0', 12); UPDATE items SET qty = 0 WHERE id = 2;").await;
    let (before_at, before_state) = (server_now(&source.url()).await, items(source.url()).await);
    let sealed = protect::step(&r, &source.url(), &slot, None).await.expect("a step");
    assert_eq!((sealed.transactions, sealed.schema_changed), (1, false), "one transaction (one batch of statements)");

    source.execute("ALTER TABLE items ADD COLUMN note text DEFAULT 'x'; UPDATE items SET note = 'changed' WHERE id = 1; INSERT INTO items VALUES (13, 't1', 13, 'after');").await;
    let gap_at = server_now(&source.url()).await;
    let met = protect::step(&r, &source.url(), &slot, None).await.expect("the step that meets the change");
    assert!(met.schema_changed, "the changed schema is seen");
    assert_eq!(met.transactions, 0, "nothing committed after the last step's reading is sealed on the old base");
    let (second, _) = protect::rebase(&r, &mk, &req, &slot, &CancelToken::new(), &no_progress()).await.expect("a new base");
    assert_ne!(second.base_id, first.base_id);
    assert_eq!(second.earlier.len(), 1, "the first base is kept as an earlier span");

    source.execute("INSERT INTO items VALUES (14, 't0', 14, 'streamed'); DELETE FROM items WHERE id = 3;").await;
    let (after_at, after_state) = (server_now(&source.url()).await, items(source.url()).await);
    let after = protect::step(&r, &source.url(), &slot, None).await.expect("a step on the new base");
    assert!(!after.schema_changed);
    assert_eq!(after.transactions, 1, "what the new base holds is not sealed again: {after:?}");
    assert_eq!(after.in_base, 1, "the transaction of the change, which the new base holds: {after:?}");

    for (at, expected, base_id) in [(&before_at, &before_state, &first.base_id), (&after_at, &after_state, &second.base_id)] {
        let target = ScratchDb::create().await;
        let out = protect::restore_at(&r, &repo.keys, &slot, at, &target.url(), &CancelToken::new(), &no_progress()).await.expect("restore to a second");
        assert_eq!(&out.base_id, base_id, "the base that covers {at}");
        assert_eq!(&items(target.url()).await, expected, "the database as it was at {at}");
    }
    assert!(!before_state.contains("changed") && after_state.contains("streamed"));

    let target = ScratchDb::create().await;
    let err = protect::restore_at(&r, &repo.keys, &slot, &gap_at, &target.url(), &CancelToken::new(), &no_progress()).await.expect_err("between the bases");
    assert!(err.message.contains("between two bases") && err.message.contains("Covered:"), "{}", err.message);
    let later = "2999-01-01T00:00:00Z";
    let err = protect::restore_at(&r, &repo.keys, &slot, later, &target.url(), &CancelToken::new(), &no_progress()).await.expect_err("later than sealed");
    assert!(err.message.contains("sealed up to"), "{}", err.message);
    let st = protect::status(&r, &source.url(), &slot).await.expect("status");
    assert_eq!(st.covered.len(), 2, "two spans: {:?}", st.covered);
    protect::stop(&r, &source.url(), &slot).await.expect("stop");
}

/// Under `pgbench -c 4` (its four tables; `pgbench_history` has no key: `REPLICA IDENTITY FULL`),
/// with steps sealing segments all along from one replication stream: the database restored to two seconds, each captured
/// while pgbench's writers were held by table locks (taken in pgbench's own order: no deadlock),
/// equals what the source held at that second, table by table.
#[tokio::test(flavor = "multi_thread")]
async fn under_pgbench_load_seconds_captured_mid_run_restore_exactly() {
    use safehold_core::protect;
    use safehold_core::source::{no_progress, CancelToken, SourceSpec};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let Some(base) = logical_base() else { return };
    let source = ScratchDb::create_on(&base).await;
    let init = std::process::Command::new("pgbench").args(["-i", "-s", "1", "-q", &source.url()]).output().expect("pgbench -i");
    assert!(init.status.success(), "pgbench -i: {}", String::from_utf8_lossy(&init.stderr));
    source.execute("ALTER TABLE pgbench_history REPLICA IDENTITY FULL").await;
    const TABLES: [&str; 4] = ["pgbench_accounts", "pgbench_tellers", "pgbench_branches", "pgbench_history"];
    let hashes = |url: String| async move {
        let mut conn = PgConnection::connect(&url).await.expect("connect");
        let mut out = Vec::new();
        for t in TABLES {
            let h: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!("SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) FROM {t} x"))).fetch_one(&mut conn).await.expect("hash");
            out.push(format!("{t} {}", h.unwrap_or_default()));
        }
        out
    };
    let (repo, r, mk, slot) = protected_repo().await;
    let req = safehold_core::backup::BackupRequest::new(SourceSpec::Postgres { url: source.url() });
    protect::start(&r, &mk, &req, &slot, &CancelToken::new(), &no_progress()).await.expect("started");

    let bench = std::process::Command::new("pgbench")
        .args(["-c", "4", "-j", "2", "-T", "6", "-n", &source.url()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("pgbench");
    let done = Arc::new(AtomicBool::new(false));
    let streamer = {
        let (r, url, slot, done) = (r.clone(), source.url(), slot.clone(), done.clone());
        tokio::spawn(async move {
            // As the app, `schedule run` and `protect run --every` do: one replication stream
            // kept open between the steps.
            let mut streams = protect::Streams::default();
            let mut sealed = 0;
            while !done.load(Ordering::SeqCst) {
                sealed += protect::step_in(&r, &url, &slot, None, &mut streams).await.expect("a step under load").transactions;
                assert!(streams.is_open(&slot) && streams.polled.is_empty(), "streamed, not polled: {:?}", streams.polled);
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
            sealed
        })
    };
    // A second captured while pgbench's writers wait on the locks: every transaction before it
    // committed, none after it started.
    let capture = || {
        let url = source.url();
        async move {
            let mut conn = PgConnection::connect(&url).await.expect("connect");
            sqlx::raw_sql(AssertSqlSafe(format!("BEGIN; LOCK TABLE {} IN EXCLUSIVE MODE", TABLES.join(", ")))).execute(&mut conn).await.expect("lock");
            let at: String = sqlx::query_scalar("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')").fetch_one(&mut conn).await.expect("now");
            let state = hashes(url.clone()).await;
            sqlx::raw_sql("COMMIT").execute(&mut conn).await.expect("unlock");
            (at, state)
        }
    };
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    let first = capture().await;
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    let second = capture().await;
    let out = tokio::task::spawn_blocking(move || bench.wait_with_output()).await.expect("join").expect("pgbench ran");
    assert!(out.status.success(), "pgbench: {}", String::from_utf8_lossy(&out.stderr));
    done.store(true, Ordering::SeqCst);
    let sealed = streamer.await.expect("streamer");
    protect::step(&r, &source.url(), &slot, None).await.expect("the last step");
    assert!(sealed > 100, "pgbench's transactions were sealed along the way ({sealed})");
    assert_ne!(first.1, second.1, "pgbench wrote between the two seconds");
    for (at, expected) in [first, second] {
        let target = ScratchDb::create().await;
        protect::restore_at(&r, &repo.keys, &slot, &at, &target.url(), &CancelToken::new(), &no_progress()).await.expect("restore to a second");
        assert_eq!(hashes(target.url()).await, expected, "the four tables as they were at {at}");
    }
    protect::stop(&r, &source.url(), &slot).await.expect("stop");
}

/// The replication stream ended at random moments while a writer commits — a step's future
/// dropped at whatever await it had reached, its connection closed unannounced as by `kill -9`
/// (after a segment was written and before the slot was confirmed, among others) — and opened
/// again by the next step: a second captured while the writer was paused restores exactly,
/// nothing lost or doubled. Stopping protection while the slot is being streamed drops it.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_ended_at_any_moment_and_opened_again_loses_and_doubles_nothing() {
    use safehold_core::protect;
    use safehold_core::source::{no_progress, CancelToken, SourceSpec};
    let Some(base) = logical_base() else { return };
    let source = ScratchDb::create_on(&base).await;
    source.execute("CREATE TABLE items (id serial PRIMARY KEY, qty int NOT NULL, note text); INSERT INTO items (qty, note) SELECT g, 'n' FROM generate_series(1, 50) g").await;
    let state = |url: String| async move {
        let mut conn = PgConnection::connect(&url).await.expect("connect");
        let rows: Option<String> = sqlx::query_scalar("SELECT string_agg(x::text, E'\\n' ORDER BY x::text) FROM items x").fetch_one(&mut conn).await.expect("state");
        rows.unwrap_or_default()
    };
    let writer = Writer::start(source.url(), 2, |i| match i % 3 {
        0 => format!("INSERT INTO items (qty, note) VALUES ({i}, 'new')"),
        1 => format!("UPDATE items SET qty = qty + 1, note = note || '+' WHERE id = (SELECT id FROM items ORDER BY id OFFSET {} LIMIT 1)", i % 40),
        _ => "DELETE FROM items WHERE id = (SELECT min(id) FROM items)".to_string(),
    });
    let (repo, r, mk, slot) = protected_repo().await;
    let req = safehold_core::backup::BackupRequest::new(SourceSpec::Postgres { url: source.url() });
    protect::start(&r, &mk, &req, &slot, &CancelToken::new(), &no_progress()).await.expect("started");
    let seed: u64 = std::env::var("SAFEHOLD_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("stream ends at seeded moments: SAFEHOLD_TEST_SEED={seed}");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let (mut ended, mut finished) = (0, 0);
    for round in 0..24 {
        // A stream of its own each round: the step runs for a random moment, then is dropped.
        let (r2, url, slot2) = (r.clone(), source.url(), slot.clone());
        let task = tokio::spawn(async move {
            let mut streams = protect::Streams::default();
            loop {
                protect::step_in(&r2, &url, &slot2, None, &mut streams).await.expect("a streamed step");
            }
        });
        let ms = rand::Rng::random_range(&mut rng, 1..(if round % 4 == 0 { 400 } else { 60 }));
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        if task.is_finished() {
            finished += 1;
        }
        task.abort();
        if task.await.is_err_and(|e| e.is_cancelled()) {
            ended += 1;
        }
    }
    assert_eq!(finished, 0, "no streamed step failed");
    assert!(ended >= 20, "the stream was ended mid-way ({ended} times)");
    writer.pause(true).await;
    let (at, expected) = (server_now(&source.url()).await, state(source.url()).await);
    writer.stop().await;
    let mut streams = protect::Streams::default();
    protect::step_in(&r, &source.url(), &slot, None, &mut streams).await.expect("the last step");
    let target = ScratchDb::create().await;
    protect::restore_at(&r, &repo.keys, &slot, &at, &target.url(), &CancelToken::new(), &no_progress()).await.expect("restore to a second");
    assert_eq!(state(target.url()).await, expected, "the table as it was at {at} (seed {seed})");

    // Idle, with WAL written in another database: the stream moves the slot past it.
    let other = ScratchDb::create_on(&base).await;
    other.execute("CREATE TABLE filler (v text); INSERT INTO filler SELECT repeat('x', 100) FROM generate_series(1, 20000)").await;
    let mut conn = PgConnection::connect(&source.url()).await.expect("connect");
    let written = pg_logical::flush_lsn(&mut conn).await.expect("lsn");
    protect::step_in(&r, &source.url(), &slot, None, &mut streams).await.expect("an idle step");
    let confirmed: String = sqlx::query_scalar("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1").bind(&slot).fetch_one(&mut conn).await.expect("slot");
    assert!(pg_logical::parse_lsn(&confirmed).expect("lsn") >= written, "the slot moved past WAL nobody needs: {confirmed} < {}", pg_logical::format_lsn(written));

    // The stream kept between steps ended by the server meanwhile (as wal_sender_timeout does
    // between steps far apart): the next step opens a new one and succeeds.
    let pid: i32 = sqlx::query_scalar("SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1").bind(&slot).fetch_one(&mut conn).await.expect("the streaming session");
    sqlx::query("SELECT pg_terminate_backend($1)").bind(pid).execute(&mut conn).await.expect("end it");
    source.execute("INSERT INTO items (qty, note) VALUES (-7, 'after the stream ended')").await;
    let after = protect::step_in(&r, &source.url(), &slot, None, &mut streams).await.expect("a step after the server ended the stream");
    assert_eq!(after.transactions, 1, "{after:?}");
    let pid_now: i32 = sqlx::query_scalar("SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1").bind(&slot).fetch_one(&mut conn).await.expect("streamed again");
    assert_ne!(pid, pid_now, "a new stream");

    // Stopped while its slot is streamed (this test's stream still open): the slot goes.
    assert!(streams.is_open(&slot));
    protect::stop(&r, &source.url(), &slot).await.expect("stop a streamed slot");
    assert!(pg_logical::status(&mut conn, &slot).await.expect("status").is_none(), "the slot is dropped");
}

/// The replication connection authenticates with SCRAM-SHA-256 (the server that checks
/// passwords, `SAFEHOLD_TEST_PG_AUTH`): with the right password it gets as far as starting the
/// stream (refused there: no such slot); with a wrong one the server's refusal is said.
#[tokio::test(flavor = "multi_thread")]
async fn the_replication_connection_authenticates_with_scram() {
    use safehold_core::source::pg_stream::Stream;
    let Ok(url) = std::env::var("SAFEHOLD_TEST_PG_AUTH") else {
        eprintln!("SAFEHOLD_TEST_PG_AUTH is not set (scripts/test.sh sets it): skipped");
        return;
    };
    let e = Stream::open(&url, "no_such_slot", "no_such_slot").await.err().expect("no slot");
    // Past authentication, START_REPLICATION is refused (no such slot; on this server not even
    // logical decoding): the server's own answer to the query, not to the log-in.
    assert!(e.message.contains("cannot stream the replication slot no_such_slot") && !e.message.contains("authentication"), "authenticated, then refused the slot: {}", e.message);
    let wrong = url.replacen('@', "x@", 1);
    let e = Stream::open(&wrong, "no_such_slot", "no_such_slot").await.err().expect("refused");
    assert!(e.message.contains("password authentication failed"), "{}", e.message);
}

/// The replication connection speaks TLS where the URL asks for it (`sslmode=require`): against
/// the machine's server (Debian's, with `ssl = on`) it gets through the TLS handshake and the
/// log-in to starting the stream (refused there: no such slot, and no logical decoding on it);
/// against a server without TLS (the engine's private cluster) `require` is refused with what to
/// change, and `prefer` goes on without it.
#[tokio::test(flavor = "multi_thread")]
async fn the_replication_connection_speaks_tls_where_the_url_asks_for_it() {
    use safehold_core::source::pg_stream::Stream;
    let with_mode = |url: &str, mode: &str| format!("{}/postgres?sslmode={mode}", url.trim_end_matches('/'));
    let ssl_of = |url: String| async move {
        let mut conn = PgConnection::connect(&url).await.ok()?;
        sqlx::query_scalar::<_, String>("SHOW ssl").fetch_one(&mut conn).await.ok()
    };
    let (machine, private) = ("postgres://postgres@127.0.0.1:5432".to_string(), crate::support::pg_base());
    let mut tried = 0;
    for url in [&machine, &private] {
        match ssl_of(url.clone()).await.as_deref() {
            Some("on") => {
                let e = Stream::open(&with_mode(url, "require"), "no_such_slot", "no_such_slot").await.err().expect("no slot");
                assert!(e.message.contains("cannot stream the replication slot no_such_slot"), "through TLS and the log-in: {}", e.message);
                tried |= 1;
            }
            Some(_) => {
                let e = Stream::open(&with_mode(url, "require"), "no_such_slot", "no_such_slot").await.err().expect("refused");
                assert!(e.message.contains("does not accept TLS") && e.message.contains("sslmode=prefer"), "{}", e.message);
                let e = Stream::open(&with_mode(url, "prefer"), "no_such_slot", "no_such_slot").await.err().expect("no slot");
                assert!(e.message.contains("cannot stream the replication slot no_such_slot"), "without TLS, through the log-in: {}", e.message);
                tried |= 2;
            }
            None => eprintln!("{url} does not answer: skipped"),
        }
    }
    assert_ne!(tried, 0, "a server answered");
    if tried != 3 {
        eprintln!("only one of a server with TLS and one without was at hand (tried: {tried})");
    }
}

/// A backlog larger than one read of the slot (20 000 one-row transactions: the server stops a
/// read at 50 000 messages, three per such transaction — fewer changes than the limit): the step
/// reads again until the slot is drained, and covers only what it sealed. Found by the benchmark:
/// a step that counted changes, not messages, marked seconds covered whose transactions were
/// still in the slot, and a restore to such a second missed them.
#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_larger_than_one_read_is_sealed_whole_before_its_seconds_count_as_covered() {
    use safehold_core::protect;
    use safehold_core::source::{no_progress, CancelToken, SourceSpec};
    let Some(base) = logical_base() else { return };
    let source = ScratchDb::create_on(&base).await;
    source.execute("CREATE TABLE hits (id int PRIMARY KEY, n int NOT NULL)").await;
    let (repo, r, mk, slot) = protected_repo().await;
    let req = safehold_core::backup::BackupRequest::new(SourceSpec::Postgres { url: source.url() });
    protect::start(&r, &mk, &req, &slot, &CancelToken::new(), &no_progress()).await.expect("started");
    source.execute("DO $$ BEGIN FOR i IN 1..20000 LOOP INSERT INTO hits VALUES (i, i % 7); COMMIT; END LOOP; END $$").await;
    let at = server_now(&source.url()).await;
    let out = protect::step(&r, &source.url(), &slot, None).await.expect("a step");
    assert_eq!(out.transactions, 20_000, "every transaction of the backlog sealed in one step: {out:?}");
    assert!(protect::segments(&r, &slot).expect("segments").len() >= 2, "in more than one segment");
    let target = ScratchDb::create().await;
    protect::restore_at(&r, &repo.keys, &slot, &at, &target.url(), &CancelToken::new(), &no_progress()).await.expect("restore");
    let mut conn = PgConnection::connect(&target.url()).await.expect("connect");
    let (count, sum): (i64, i64) = sqlx::query_as("SELECT count(*), sum(n)::bigint FROM hits").fetch_one(&mut conn).await.expect("count");
    assert_eq!((count, sum), (20_000, (1..=20_000i64).map(|i| i % 7).sum()), "nothing of the backlog missing");
    protect::stop(&r, &source.url(), &slot).await.expect("stop");
}

/// Continuous protection on a cloud storage (S3 over its real protocol: moto): the setting is
/// accepted on it, and the base backup, the protection's state and the change segments all go to
/// the bucket beside the archives — nothing to a local folder. The timeline counts the segments'
/// bytes from the bucket's listing, a second is put back from there (the whole database into a
/// new one, and one tenant in place), and retention deleting the base takes its segments from
/// the bucket too.
#[tokio::test(flavor = "multi_thread")]
async fn on_a_cloud_storage_the_segments_go_to_the_bucket_and_a_second_is_put_back_from_there() {
    use safehold_core::configurations::{self, BackupType};
    use safehold_core::protect::configured;
    use safehold_core::source::CancelToken;
    use safehold_core::storage::{self, backend, RemoteStorageInput, StorageCredentials};
    let Some(base) = logical_base() else { return };
    let Some((home, ctx)) = crate::runs::keychain_home().await else { return };
    let Some(s3) = crate::objstore::S3::start(false) else { return };
    let bucket = s3.bucket("protected");
    safehold_core::demo::ensure(&ctx, false).await.expect("demo");
    storage::add_remote(
        &ctx,
        RemoteStorageInput {
            name: "Bucket".into(),
            url: format!("{bucket}/prod"),
            endpoint: Some(s3.endpoint.clone()),
            region: Some("us-east-1".into()),
            credentials: Some(StorageCredentials { access_key_id: Some("test".into()), secret_access_key: Some("test".into()), service_account_key: None }),
            ..Default::default()
        },
    )
    .await
    .expect("the cloud storage");
    let source = ScratchDb::create_on(&base).await;
    source.execute(DDL).await;
    source.execute("ALTER TABLE log REPLICA IDENTITY FULL; INSERT INTO accounts (id, tenant_id, balance) SELECT g, 't' || (g % 2), g FROM generate_series(1, 20) g;").await;
    let demo = configurations::list(&ctx).await.expect("configs").remove(0);
    let conn = connection_to(&ctx, "Protected in the cloud", &source.url()).await;
    let mut input = demo.to_input();
    input.configuration_name = "Protected to S3".into();
    input.connection_id = conn.id.clone();
    input.storage_location = "Bucket".into();
    input.secondary_storage = None;
    input.backup_type = BackupType::Full;
    input.continuous_protection = true;
    let config = configurations::create(&ctx, input).await.expect("the setting is accepted on a cloud storage");
    let notices: configured::NoticeSink = std::sync::Arc::new(|_| {});
    let slot = configured::slot_name(&config.id);

    assert_eq!(configured::run_step(&ctx, &config.id, &notices).await.expect("started").action, "started");
    let history = safehold_core::history::executions(&ctx, 10).await.expect("history");
    let base_run = history.iter().find(|e| e.configuration_id.as_deref() == Some(config.id.as_str())).expect("the base is in the history");
    assert!(base_run.file_path.as_deref().is_some_and(|f| f.starts_with("s3://protected/prod/archives/")), "{:?}", base_run.file_path);
    for sql in ["INSERT INTO accounts (id, tenant_id, balance) VALUES (100, 't0', 1)", "UPDATE accounts SET balance = balance + 1 WHERE id < 5", "DELETE FROM accounts WHERE id = 7", "INSERT INTO log VALUES ('x', 1)"] {
        source.execute(sql).await;
    }
    let at = server_now(&source.url()).await;
    let then = state(&source.url()).await;
    let sealed = configured::run_step(&ctx, &config.id, &notices).await.expect("a step");
    assert_eq!((sealed.action.as_str(), sealed.transactions), ("sealed", 4), "{sealed:?}");
    assert!(sealed.segment.as_deref().is_some_and(|s| s.starts_with(&format!("s3://protected/prod/changes/{slot}-"))), "{sealed:?}");
    // In the bucket: the state and the segment, beside the archives.
    let listed: Vec<(String, u64)> = backend::at(std::path::Path::new("s3://protected/prod/changes")).expect("bucket").list().expect("listing");
    assert!(listed.iter().any(|(n, _)| n.ends_with(&format!("/{slot}.json"))), "{listed:?}");
    assert_eq!(listed.iter().filter(|(n, _)| n.ends_with(&format!(".{}", safehold_core::repository::ARCHIVE_EXT))).count(), 1, "{listed:?}");
    // Nowhere on this machine: no file of the protection under the home or the demo's folder.
    let local: Vec<_> = walk(home.path()).into_iter().filter(|p| p.to_string_lossy().contains(&slot)).collect();
    assert!(local.is_empty(), "nothing of the protection is local: {local:?}");

    let tl = configured::timeline(&ctx, &config.id).await.expect("timeline");
    let segment_bytes: u64 = listed.iter().filter(|(n, _)| n.contains(&format!("/{slot}-"))).map(|(_, b)| *b).sum();
    assert_eq!((tl.spans.len(), tl.segments, tl.segment_bytes), (1, 1, segment_bytes), "{tl:?}");
    assert!(tl.backups.iter().any(|b| b.execution_id == base_run.id && b.is_base), "{tl:?}");

    // The whole database at that second, from the bucket, into a new database.
    source.execute("DELETE FROM accounts WHERE tenant_id = 't0'; INSERT INTO log VALUES ('later', 2)").await;
    let into = format!("safehold_then_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let whole = configured::SecondRequest { configuration_id: config.id.clone(), at: at.clone(), tenant_id: None, into_database: Some(into.clone()), dry_run: false };
    let done = configured::restore_second(&ctx, &whole, &CancelToken::new()).await.expect("restored from the bucket");
    assert_eq!((done.plan.segments, done.plan.transactions), (1, 4), "{done:?}");
    assert_eq!(state(&format!("{base}/{into}")).await, then, "the database as it was at {at}");
    let mut admin = PgConnection::connect(&format!("{base}/postgres")).await.expect("connect");
    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE {into} WITH (FORCE)"))).execute(&mut admin).await.expect("drop");
    // One tenant in place: t0 as it was then, the later row of the log kept.
    configured::run_step(&ctx, &config.id, &notices).await.expect("the later changes sealed");
    let tenant = configured::SecondRequest { configuration_id: config.id.clone(), at: at.clone(), tenant_id: Some("t0".into()), into_database: None, dry_run: false };
    configured::restore_second(&ctx, &tenant, &CancelToken::new()).await.expect("a tenant in place from the bucket");
    let now = state(&source.url()).await;
    assert_eq!(now[0], then[0], "the accounts of t0 are back (t1's were not changed since)");
    assert!(now[2].contains("later"), "the log's later row stays: {}", now[2]);

    // Off, then retention past the base's age: the base and its segments leave the bucket.
    let mut off = config.to_input();
    off.continuous_protection = false;
    configurations::update(&ctx, &config.id, off).await.expect("off");
    configured::settle(&ctx, &config.id).await.expect("settled");
    let newer = safehold_core::runs::enqueue_full(&ctx, &config.id).await.expect("enqueue");
    safehold_core::runs::run(&ctx, &newer, &CancelToken::new()).await.expect("a newer full to S3");
    safehold_core::retention::apply_at(&ctx, &config.id, chrono::Utc::now() + chrono::Duration::days(400)).await.expect("retention");
    let left: Vec<(String, u64)> = backend::at(std::path::Path::new("s3://protected/prod/changes")).expect("bucket").list().expect("listing");
    assert!(!left.iter().any(|(n, _)| n.contains(&format!("/{slot}-"))), "the segments went with their base: {left:?}");
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
