//! Retention over a chain of full, incremental and differential backups with mixed ages: it
//! deletes exactly what the preview said, never a backup a kept one builds on nor the last full,
//! and every kept backup still restores.

use chrono::{Duration, Utc};
use safehold_core::backup::BackupOutcome;
use safehold_core::configurations::BackupType;
use safehold_core::restore::{self, RestoreRequest};
use safehold_core::retention::{self, RetentionAction};
use safehold_core::source::{no_progress, CancelToken, SourceSpec};

use crate::backup::repo_with_password;
use crate::restores::platform;
use crate::support::{home, ScratchDb};

async fn record(ctx: &safehold_core::Ctx, config: &str, b: &BackupOutcome, days_ago: i64) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let started = (Utc::now() - Duration::days(days_ago)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    sqlx::query(
        "INSERT INTO backup_executions (id, configuration_id, backup_type, status, started_at, completed_at, file_path, compressed_size, checksum) \
         VALUES (?, ?, ?, 'completed', ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind((!config.is_empty()).then_some(config))
    .bind(serde_json::to_value(b.backup_type).expect("json").as_str().unwrap_or_default().to_string())
    .bind(&started)
    .bind(&started)
    .bind(&b.archive)
    .bind(i64::try_from(b.bytes).expect("size"))
    .bind(&b.sha256)
    .execute(&ctx.pool)
    .await
    .expect("record the execution");
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_deletes_what_the_preview_said_and_keeps_every_chain_restorable() {
    let db = platform().await;
    let repo = repo_with_password("pw");
    let h = home().await;
    sqlx::query("INSERT INTO backup_configurations (id, configuration_name, backup_type, schedule_cron, retention_days, storage_location, created_by) VALUES ('c1', 'Nightly', 'incremental', '0 2 * * *', 15, 'Local backups', ?)")
        .bind(h.ctx.operator_id())
        .execute(&h.ctx.pool)
        .await
        .expect("configuration");
    let spec = || SourceSpec::Postgres { url: db.url() };
    // F1 (40 days) ← I1 (39) ← I2 (38);  F2 (20) ← D1 (10) ← I3 (5)
    let mut ids = Vec::new();
    for (t, days, change) in [
        (BackupType::Full, 40, "UPDATE settings SET value = 'f1' WHERE key = 'plan'"),
        (BackupType::Incremental, 39, "UPDATE settings SET value = 'i1' WHERE key = 'plan'"),
        (BackupType::Incremental, 38, "UPDATE settings SET value = 'i2' WHERE key = 'plan'"),
        (BackupType::Full, 20, "UPDATE settings SET value = 'f2' WHERE key = 'plan'"),
        (BackupType::Differential, 10, "UPDATE settings SET value = 'd1' WHERE key = 'plan'"),
        (BackupType::Incremental, 5, "UPDATE settings SET value = 'i3' WHERE key = 'plan'"),
    ] {
        db.execute(change).await;
        let b = repo.backup_typed(spec(), t).await;
        ids.push((record(&h.ctx, "c1", &b, days).await, b));
    }
    assert_eq!(ids[5].1.parent.as_deref(), Some(ids[4].1.id.as_str()), "I3 builds on D1");
    assert_eq!(ids[4].1.parent.as_deref(), Some(ids[3].1.id.as_str()), "D1 builds on F2");

    let plan = retention::preview(&h.ctx, "c1").await.expect("preview");
    let action = |exec: &str| plan.items.iter().find(|i| i.execution_id == exec).map(|i| (i.action, i.reason.clone())).expect("item");
    for (i, (exec, _)) in ids.iter().take(3).enumerate() {
        assert_eq!(action(exec).0, RetentionAction::Delete, "backup {i} is expired and nothing kept builds on it");
    }
    let (f2, why) = action(&ids[3].0);
    assert_eq!(f2, RetentionAction::Keep, "F2 is expired but D1 builds on it");
    assert!(why.contains("the last completed full") || why.contains("builds on it"), "{why}");
    assert_eq!(action(&ids[4].0).0, RetentionAction::Keep);
    assert_eq!(plan.delete_count, 3);
    assert!(std::path::Path::new(&ids[0].1.archive).exists(), "a preview deletes nothing");

    // Cancelled before its first deletion: it says so and deletes nothing.
    let cancel = safehold_core::source::CancelToken::new();
    cancel.cancel();
    let err = retention::apply_cancellable(&h.ctx, "c1", &cancel).await.expect_err("cancelled");
    assert_eq!(err.code, safehold_core::ErrorCode::Cancelled);
    assert!(err.message.contains("0 of 3 backups were deleted"), "{}", err.message);
    assert!(ids.iter().all(|(_, b)| std::path::Path::new(&b.archive).exists()), "a cancelled retention deleted nothing");

    let done = retention::apply(&h.ctx, "c1").await.expect("apply");
    let deleted: Vec<&str> = done.items.iter().filter(|i| i.action == RetentionAction::Delete).map(|i| i.execution_id.as_str()).collect();
    let previewed: Vec<&str> = plan.items.iter().filter(|i| i.action == RetentionAction::Delete).map(|i| i.execution_id.as_str()).collect();
    assert_eq!(deleted, previewed, "exactly what the preview said");
    for (i, (exec, b)) in ids.iter().enumerate() {
        assert_eq!(std::path::Path::new(&b.archive).exists(), i >= 3, "archive {i}");
        let row = safehold_core::history::executions(&h.ctx, 100).await.expect("list").into_iter().find(|e| &e.id == exec).expect("row");
        assert_eq!(row.deleted_at.is_some(), i < 3, "deletion recorded on execution {i}");
    }
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'retention.delete' AND outcome = 'success'").fetch_one(&h.ctx.pool).await.expect("audit");
    assert_eq!(audited, 3);
    // Every kept backup still restores, to its own state.
    for (i, expected) in [(3, "f2"), (4, "d1"), (5, "i3")] {
        let target = ScratchDb::create().await;
        let mut req = RestoreRequest::new(repo.path(), target.url());
        req.backup_id = Some(ids[i].1.id.clone());
        let opened = restore::open(&req, &repo.keys).await.expect("the chain is whole");
        restore::execute(&req, opened, &repo.keys, &CancelToken::new(), &no_progress()).await.expect("restore");
        target.execute(&format!("DO $$ BEGIN IF (SELECT value FROM settings WHERE key = 'plan') <> '{expected}' THEN RAISE 'wrong state'; END IF; END $$")).await;
    }

    // Everything expired: only the last full stays (its children go, children first).
    sqlx::query("UPDATE backup_configurations SET retention_days = 1 WHERE id = 'c1'").execute(&h.ctx.pool).await.expect("shorter");
    let all = retention::apply_at(&h.ctx, "c1", Utc::now() + Duration::days(30)).await.expect("apply");
    assert_eq!(all.delete_count, 2, "{:?}", all.items);
    assert!(std::path::Path::new(&ids[3].1.archive).exists(), "the last completed full is never deleted");
    let kept = all.items.iter().find(|i| i.execution_id == ids[3].0).expect("F2");
    assert!(kept.reason.contains("last completed full"), "{}", kept.reason);
}

/// Safety backups (taken before restores, of no configuration) have a retention of their own —
/// 14 days unless set — previewed like a configuration's, applied after backup runs and on
/// demand; the configurations' backups are not theirs to touch.
#[tokio::test(flavor = "multi_thread")]
async fn safety_backups_have_a_retention_of_their_own() {
    let db = platform().await;
    let repo = repo_with_password("pw");
    let h = home().await;
    let spec = || SourceSpec::Postgres { url: db.url() };
    let safety = |days_ago: i64| {
        let (ctx, b) = (h.ctx.clone(), futures_util::FutureExt::boxed(repo.backup(spec())));
        async move {
            let b = b.await;
            let id = record(&ctx, "", &b, days_ago).await;
            sqlx::query("UPDATE backup_executions SET metadata = json_object('safety_for_restore', 'r-' || id) WHERE id = ?").bind(&id).execute(&ctx.pool).await.expect("a safety backup");
            (id, b)
        }
    };
    let (old, old_b) = safety(20).await;
    let (new, _) = safety(3).await;
    let plan = retention::preview_safety(&h.ctx).await.expect("preview");
    assert_eq!((plan.configuration_id.as_str(), plan.retention_days), (retention::SAFETY, retention::DEFAULT_SAFETY_DAYS));
    let action = |p: &retention::RetentionPlan, id: &str| p.items.iter().find(|i| i.execution_id == id).map(|i| (i.action, i.reason.clone())).expect("listed");
    assert_eq!(action(&plan, &old), (RetentionAction::Delete, "older than 14 days".to_string()));
    assert_eq!(action(&plan, &new), (RetentionAction::Keep, "within 14 days".to_string()));
    assert_eq!(plan.items.len(), 2, "only safety backups: {:?}", plan.items);
    // Kept longer when set so; never less than a day.
    retention::set_safety_days(&h.ctx, 30).await.expect("set");
    assert_eq!(action(&retention::preview_safety(&h.ctx).await.expect("preview"), &old).0, RetentionAction::Keep);
    let err = retention::set_safety_days(&h.ctx, 0).await.expect_err("at least a day");
    assert_eq!(err.code, safehold_core::ErrorCode::Validation);
    retention::set_safety_days(&h.ctx, 14).await.expect("set");
    let done = retention::apply_safety(&h.ctx).await.expect("apply");
    assert_eq!(done.delete_count, 1);
    assert!(!std::path::Path::new(&old_b.archive).exists(), "the expired safety backup's archive is gone");
    let gone: Option<String> = sqlx::query_scalar("SELECT deleted_at FROM backup_executions WHERE id = ?").bind(&old).fetch_one(&h.ctx.pool).await.expect("row");
    assert!(gone.is_some(), "recorded as deleted");
    let plan = retention::preview_safety(&h.ctx).await.expect("preview");
    assert_eq!(plan.items.iter().map(|i| i.execution_id.clone()).collect::<Vec<_>>(), vec![new], "the other stays");
}
