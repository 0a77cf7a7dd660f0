//! The scheduler and the job runner: per-second schedules, deactivating and editing without a
//! restart, overlapping runs recorded as skipped, one catch-up for missed runs (or none with the
//! `skip` policy), cancelling queued and running jobs. Backups go through the real keychain for
//! the repository secret (scripts/test.sh provides it).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use safehold_core::configurations::{self, ConfigurationInput};
use safehold_core::scheduler::{LogSink, Scheduler};
use safehold_core::{demo, Ctx};
use sqlx::Connection as _;

use crate::runs::keychain_home;
use crate::support::ScratchDb;

fn log() -> (LogSink, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l2 = lines.clone();
    (Arc::new(move |line| l2.lock().expect("log").push(line)), lines)
}

/// (status, trigger, skipped) of a configuration's executions, oldest first.
async fn runs_of(ctx: &Ctx, config: &str) -> Vec<(String, String, bool)> {
    sqlx::query_as::<_, (String, Option<String>, Option<bool>)>(
        "SELECT status, json_extract(metadata, '$.trigger'), json_extract(metadata, '$.skipped') FROM backup_executions WHERE configuration_id = ? ORDER BY started_at",
    )
    .bind(config)
    .fetch_all(&ctx.pool)
    .await
    .expect("executions")
    .into_iter()
    .map(|(s, t, k)| (s, t.unwrap_or_default(), k.unwrap_or(false)))
    .collect()
}

async fn set_cron(ctx: &Ctx, id: &str, cron: &str, active: bool) {
    let input = ConfigurationInput { schedule_cron: cron.into(), is_active: active, ..configurations::get(ctx, id).await.expect("config").to_input() };
    configurations::update(ctx, id, input).await.expect("update");
}

async fn settle(ctx: &Ctx, config: &str) {
    for _ in 0..100 {
        if !runs_of(ctx, config).await.iter().any(|(s, ..)| s == "running" || s == "pending") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the runs of {config} did not finish");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_per_second_schedule_runs_stops_when_deactivated_and_follows_edits_without_restart() {
    let Some((_dir, ctx)) = keychain_home().await else { return };
    demo::ensure(&ctx, false).await.expect("demo");
    let id = configurations::list(&ctx).await.expect("configs").remove(0).id;
    set_cron(&ctx, &id, "* * * * * *", true).await;
    let (sink, _lines) = log();
    let s = Scheduler::new(ctx.clone(), 1, sink);
    let task = tokio::spawn(s.clone().run());
    // Two scheduled runs complete (how soon depends on the machine's load: not a timing test).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let completed = runs_of(&ctx, &id).await.iter().filter(|(st, trig, _)| st == "completed" && trig == "schedule").count();
        if completed >= 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "a per-second schedule ran: {:?}", runs_of(&ctx, &id).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Deactivated: no new runs.
    configurations::set_active(&ctx, &id, false).await.expect("deactivate");
    s.reschedule();
    settle(&ctx, &id).await;
    let n = runs_of(&ctx, &id).await.len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(runs_of(&ctx, &id).await.len(), n, "a deactivated configuration does not run");

    // Edited to a yearly line: nothing; edited back to every second: runs again, no restart.
    set_cron(&ctx, &id, "0 0 1 1 *", true).await;
    s.reschedule();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(runs_of(&ctx, &id).await.len(), n);
    set_cron(&ctx, &id, "* * * * * *", true).await;
    s.reschedule();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while runs_of(&ctx, &id).await.len() <= n {
        assert!(std::time::Instant::now() < deadline, "the edited schedule runs without a restart");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    configurations::set_active(&ctx, &id, false).await.expect("stop");
    s.reschedule();
    settle(&ctx, &id).await;
    task.abort();
}

/// A PostgreSQL platform registered with a configuration, and a connection that can lock its
/// table so that a backup waits (a slow backup).
async fn slow_source(ctx: &Ctx, cron: &str) -> (ScratchDb, String) {
    demo::ensure(ctx, false).await.expect("demo");
    let db = ScratchDb::create().await;
    db.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100);").await;
    let mut input = safehold_core::connections::ConnectionInput::from_url("Slow platform", &db.url()).expect("input");
    input.password = None;
    let conn = safehold_core::connections::add(ctx, input).await.expect("connection");
    let demo_config = configurations::list(ctx).await.expect("configs").remove(0);
    let input = ConfigurationInput {
        configuration_name: "Slow".into(),
        backup_type: configurations::BackupType::Full,
        schedule_cron: cron.into(),
        retention_days: 30,
        compression_enabled: true,
        encryption_enabled: true,
        secondary_storage: None,
        includes_tenant_data: true,
        includes_system_data: true,
        includes_logs: true,
        is_active: true,
        connection_id: conn.id,
        ..demo_config.to_input()
    };
    let c = configurations::create(ctx, input).await.expect("configuration");
    (db, c.id)
}

async fn lock(db: &ScratchDb) -> sqlx::PgConnection {
    let mut c = sqlx::PgConnection::connect(&db.url()).await.expect("connect");
    sqlx::raw_sql("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE;").execute(&mut c).await.expect("lock");
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_due_while_the_previous_one_runs_is_recorded_as_skipped() {
    let Some((_dir, ctx)) = keychain_home().await else { return };
    let (db, id) = slow_source(&ctx, "* * * * * *").await;
    let mut held = lock(&db).await;
    let (sink, lines) = log();
    let s = Scheduler::new(ctx.clone(), 1, sink);
    let task = tokio::spawn(s.clone().run());
    tokio::time::sleep(Duration::from_millis(3500)).await;
    sqlx::raw_sql("COMMIT").execute(&mut held).await.expect("unlock");
    configurations::set_active(&ctx, &id, false).await.expect("stop");
    s.reschedule();
    settle(&ctx, &id).await;
    task.abort();
    let runs = runs_of(&ctx, &id).await;
    let skipped = runs.iter().filter(|r| r.2).count();
    let completed = runs.iter().filter(|r| r.0 == "completed").count();
    assert!(completed >= 1 && skipped >= 2, "one ran, the ones due meanwhile were skipped: {runs:?}");
    let reasons: Vec<String> = sqlx::query_scalar("SELECT error_message FROM backup_executions WHERE json_extract(metadata, '$.skipped') = 1")
        .fetch_all(&ctx.pool)
        .await
        .expect("reasons");
    assert!(reasons.iter().all(|r| r.contains("still running")), "{reasons:?}");
    assert!(lines.lock().expect("log").iter().any(|l| l.contains("skipped")), "logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_missed_while_closed_are_caught_up_once_unless_the_policy_is_skip() {
    let Some((_dir, ctx)) = keychain_home().await else { return };
    demo::ensure(&ctx, false).await.expect("demo");
    let id = configurations::list(&ctx).await.expect("configs").remove(0).id;
    // Created three days ago, midnight daily, never run: three slots missed.
    let three_days_ago = (chrono::Utc::now() - chrono::Duration::days(3)).to_rfc3339();
    sqlx::query("UPDATE backup_configurations SET created_at = ?, schedule_cron = '0 0 * * *' WHERE id = ?").bind(&three_days_ago).bind(&id).execute(&ctx.pool).await.expect("backdate");
    let (sink, _lines) = log();
    let s = Scheduler::new(ctx.clone(), 1, sink);
    let started = s.catch_up().await.expect("catch up");
    assert_eq!(started.len(), 1, "one catch-up run, not one per missed slot");
    settle(&ctx, &id).await;
    assert_eq!(runs_of(&ctx, &id).await, vec![("completed".to_string(), "catch_up".to_string(), false)]);
    assert!(s.catch_up().await.expect("again").is_empty(), "nothing left to catch up");
    assert_eq!(safehold_core::scheduler::last_scheduled_failures(&ctx).await.expect("status"), (vec![], 1), "the tray's status: the last scheduled run succeeded");
    sqlx::query("UPDATE backup_executions SET status = 'failed' WHERE configuration_id = ?").bind(&id).execute(&ctx.pool).await.expect("fail it");
    assert_eq!(safehold_core::scheduler::last_scheduled_failures(&ctx).await.expect("status").0, vec![demo::DEMO_CONFIGURATION.to_string()]);
    sqlx::query("UPDATE backup_executions SET status = 'completed' WHERE configuration_id = ?").bind(&id).execute(&ctx.pool).await.expect("restore it");

    // With the skip policy, nothing runs.
    let skip = ConfigurationInput { missed_runs: configurations::MissedRuns::Skip, ..configurations::get(&ctx, &id).await.expect("config").to_input() };
    configurations::update(&ctx, &id, skip).await.expect("policy: skip");
    sqlx::query("UPDATE backup_executions SET started_at = ? WHERE configuration_id = ?").bind(&three_days_ago).bind(&id).execute(&ctx.pool).await.expect("backdate the run");
    assert!(s.catch_up().await.expect("skip").is_empty());
    assert_eq!(runs_of(&ctx, &id).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_and_running_jobs_can_be_cancelled() {
    let Some((_dir, ctx)) = keychain_home().await else { return };
    let (db, slow) = slow_source(&ctx, "0 0 1 1 *").await;
    let demo_id = configurations::list(&ctx).await.expect("configs").into_iter().find(|c| c.configuration_name == demo::DEMO_CONFIGURATION).expect("demo").id;
    let mut held = lock(&db).await;
    let (sink, _lines) = log();
    let s = Scheduler::new(ctx.clone(), 1, sink);
    let running = s.submit(&slow, "manual").await.expect("submit the slow one");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let queued = s.submit(&demo_id, "manual").await.expect("submit a second one");
    assert!(s.is_busy(&demo_id), "queued behind the running one (one job at a time)");
    assert!(s.cancel(&queued), "the queued job is known");
    assert!(s.cancel(&running), "the running job is known");
    sqlx::raw_sql("COMMIT").execute(&mut held).await.expect("unlock");
    settle(&ctx, &slow).await;
    settle(&ctx, &demo_id).await;
    let status = |id: String| {
        let ctx = ctx.clone();
        async move {
            sqlx::query_as::<_, (String, Option<String>)>("SELECT status, error_message FROM backup_executions WHERE id = ?").bind(id).fetch_one(&ctx.pool).await.expect("row")
        }
    };
    let (st, msg) = status(queued).await;
    assert_eq!((st.as_str(), msg.as_deref()), ("cancelled", Some("cancelled while queued; it never started")));
    let (st, _) = status(running).await;
    assert_eq!(st, "cancelled", "the running backup was cancelled");
    let partials = std::fs::read_dir(ctx.home.join("backups/archives")).map(|d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "partial")).count()).unwrap_or(0);
    assert_eq!(partials, 0, "a cancelled backup leaves no partial archive");
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_push_their_progress_and_their_end_as_events() {
    let Some((_dir, mut ctx)) = keychain_home().await else { return };
    let events = Arc::new(Mutex::new(Vec::new()));
    let e2 = events.clone();
    ctx.events = Some(Arc::new(move |e| e2.lock().expect("events").push(e)));
    demo::ensure(&ctx, false).await.expect("demo");
    let id = configurations::list(&ctx).await.expect("configs").remove(0).id;
    let exec = safehold_core::runs::enqueue(&ctx, &id).await.expect("enqueue");
    safehold_core::runs::run(&ctx, &exec, &safehold_core::source::CancelToken::new()).await.expect("run");
    let seen = events.lock().expect("events").clone();
    assert!(seen.iter().all(|e| e.id == exec && e.kind == safehold_core::jobs::JobKind::Backup), "{seen:?}");
    let progress: Vec<u64> = seen.iter().filter(|e| e.status.is_none()).map(|e| e.tables_done).collect();
    assert!(progress.len() >= 5 && progress.windows(2).all(|w| w[0] <= w[1]), "progress table by table: {progress:?}");
    let last = seen.last().expect("an end");
    assert_eq!(last.status, Some(safehold_core::history::JobStatus::Completed));
    assert!(last.rows > 30_000);

    // The same lifecycle for a restore (`context::Job`): its progress and end as events of its
    // kind, its record, the audit — and a cancelled one recorded, audited and pushed as such.
    let backup = safehold_core::history::execution(&ctx, &exec).await.expect("the backup");
    let keys = safehold_core::keys::unlock::KeySources { keychain: Some(ctx.secrets.clone()), ..Default::default() };
    let restore = |name: &str| safehold_core::restore::RestoreRequest::new(backup.file_path.clone().expect("archive"), format!("sqlite://{}", _dir.path().join(name).display()));
    for (name, cancelled) in [("restored.db", false), ("cancelled.db", true)] {
        events.lock().expect("events").clear();
        let req = restore(name);
        let rid = safehold_core::restore::records::insert(&ctx, &req, Some(&exec)).await.expect("record");
        let cancel = safehold_core::source::CancelToken::new();
        if cancelled {
            cancel.cancel();
        }
        let out = safehold_core::restore::records::run(&ctx, &rid, &req, &keys, None, &cancel, None).await;
        assert_eq!(out.is_err(), cancelled, "{name}: {:?}", out.as_ref().err());
        let seen = events.lock().expect("events").clone();
        assert!(seen.iter().all(|e| e.id == rid && e.kind == safehold_core::jobs::JobKind::Restore), "{seen:?}");
        let want = if cancelled { safehold_core::history::JobStatus::Cancelled } else { safehold_core::history::JobStatus::Completed };
        assert_eq!(seen.last().and_then(|e| e.status), Some(want), "{name}: the last event is the end");
        assert_eq!(seen.iter().filter(|e| e.status.is_some()).count(), 1, "{name}: one end");
        if !cancelled {
            assert!(seen.iter().any(|e| e.status.is_none()), "progress pushed as it happened");
        }
        let op = safehold_core::restore::records::get(&ctx, &rid).await.expect("its record");
        assert_eq!(op.status, want, "{name}: recorded");
        assert_eq!(op.error_message.is_some(), cancelled, "{name}: {:?}", op.error_message);
        let (outcome,): (String,) = sqlx::query_as("SELECT outcome FROM audit_log WHERE action = 'restore.run' ORDER BY id DESC LIMIT 1").fetch_one(&ctx.pool).await.expect("audited");
        assert_eq!(outcome, if cancelled { "failure" } else { "success" }, "{name}: audited");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_waits_in_the_same_queue_as_the_backups() {
    let Some((dir, ctx)) = keychain_home().await else { return };
    let (db, slow) = slow_source(&ctx, "0 0 1 1 *").await;
    let demo_id = configurations::list(&ctx).await.expect("configs").into_iter().find(|c| c.configuration_name == demo::DEMO_CONFIGURATION).expect("demo").id;
    let exec = safehold_core::runs::enqueue(&ctx, &demo_id).await.expect("enqueue");
    let backup = safehold_core::runs::run(&ctx, &exec, &safehold_core::source::CancelToken::new()).await.expect("a backup to restore");
    let mut held = lock(&db).await;
    let (sink, _lines) = log();
    let s = Scheduler::new(ctx.clone(), 1, sink);
    s.submit(&slow, "manual").await.expect("a slow backup takes the one slot");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let target = dir.path().join("restored.db");
    let req = safehold_core::restore::RestoreRequest::new(backup.file_path.clone().expect("archive"), format!("sqlite://{}", target.display()));
    let rid = safehold_core::restore::records::insert(&ctx, &req, Some(&exec)).await.expect("record");
    let keys = safehold_core::keys::unlock::KeySources { keychain: Some(ctx.secrets.clone()), ..Default::default() };
    s.submit_restore(&rid, req, keys);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let status = || async { safehold_core::restore::records::get(&ctx, &rid).await.expect("restore").status };
    assert_eq!(status().await, safehold_core::history::JobStatus::Pending, "queued behind the running backup");
    sqlx::raw_sql("COMMIT").execute(&mut held).await.expect("unlock");
    for _ in 0..100 {
        if status().await == safehold_core::history::JobStatus::Completed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status().await, safehold_core::history::JobStatus::Completed);
    assert!(target.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn other_heavy_work_waits_for_a_slot_and_the_success_notification_is_a_setting() {
    let Some((_dir, ctx)) = keychain_home().await else { return };
    let (db, slow) = slow_source(&ctx, "0 0 1 1 *").await;
    let mut held = lock(&db).await;
    let (sink, _lines) = log();
    let s = Scheduler::new(ctx.clone(), 1, sink);
    s.submit(&slow, "manual").await.expect("a slow backup takes the one slot");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(tokio::time::timeout(Duration::from_millis(700), s.slot()).await.is_err(), "a test restore or retention waits while the backup runs");
    sqlx::raw_sql("COMMIT").execute(&mut held).await.expect("unlock");
    let slot = tokio::time::timeout(Duration::from_secs(20), s.slot()).await.expect("the slot frees up when the backup ends");
    assert!(slot.is_some());

    assert!(!safehold_core::scheduler::notify_on_success(&ctx).await.expect("read"), "off by default");
    safehold_core::scheduler::set_notify_on_success(&ctx, true).await.expect("turn on");
    assert!(safehold_core::scheduler::notify_on_success(&ctx).await.expect("read"));
}

/// Heavy work asked for outside the queue (a test restore, retention on demand) waits for a slot
/// of the runner and is cancelled through the runner's one registry: while it waits nothing is
/// done; while it runs its token says so. (Each step waits on a condition with a deadline, not on
/// time.)
#[tokio::test(flavor = "multi_thread")]
async fn work_outside_the_queue_waits_for_a_slot_and_cancels_through_the_runner() {
    let h = crate::support::home().await;
    let s = Scheduler::new(h.ctx.clone(), 1, Arc::new(|_| {}));
    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // The only slot is taken: the work waits, is cancelled while waiting, and never runs.
    let held = s.slot().await.expect("the slot");
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s2, ran2) = (s.clone(), ran.clone());
    let waiting = tokio::spawn(async move {
        s2.run_in_slot("retention:x", |_| async move {
            ran2.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        })
        .await
    });
    until("the waiting work is registered and cancelled", || s.cancel("retention:x")).await;
    drop(held);
    let e = waiting.await.expect("join").expect_err("cancelled while waiting");
    assert_eq!(e.code, safehold_core::ErrorCode::Cancelled, "{e:?}");
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst), "work cancelled while it waited does not run");
    assert!(!s.cancel("retention:x"), "its token is gone with it");

    // Running: the cancel reaches the work's token.
    let (s3, started) = (s.clone(), Arc::new(std::sync::atomic::AtomicBool::new(false)));
    let started2 = started.clone();
    let running = tokio::spawn(async move {
        s3.run_in_slot("verify:y", |token| async move {
            started2.store(true, std::sync::atomic::Ordering::SeqCst);
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while !token.is_cancelled() {
                assert!(std::time::Instant::now() < deadline, "the cancel never arrived");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            token.check()
        })
        .await
    });
    until("the work runs", || started.load(std::sync::atomic::Ordering::SeqCst)).await;
    assert!(s.cancel("verify:y"), "a running job is known to the runner");
    assert_eq!(running.await.expect("join").expect_err("cancelled").code, safehold_core::ErrorCode::Cancelled);
}
