//! Operators, roles and the audit log: the first super admin, sign-in with slow-down and lockout,
//! idle expiry, every role against every kind of engine function (allowed ones succeed, refused
//! ones change nothing, and both are audited), the scheduler acting as a configuration's owner,
//! and the audit log's filters and CSV export.

use std::time::Duration;

use safehold_core::auth::audit::{self, AuditFilter};
use safehold_core::configurations::{self, BackupType, ConfigurationInput};
use safehold_core::auth::operators::{self, Role};
use safehold_core::scheduler::Scheduler;
use safehold_core::{connections, demo, history, migrate, retention, runs, storage, Ctx, ErrorCode};

use crate::configurations::input;
use crate::support::{home, Home, ScratchDb};

const PW: &str = "correct horse battery";


async fn count(ctx: &Ctx, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&ctx.pool).await.expect("count")
}

/// A catalog with the demo, a first super admin (alice), a platform operator (olga) and a
/// read-only admin (rita); `h.ctx` acts as alice.
async fn team() -> Home {
    let h = home().await;
    demo::ensure(&h.ctx, false).await.expect("demo");
    operators::create_first(&h.ctx, "alice", PW).await.expect("first super admin");
    // The schedules set up before (the demo's) are hers now, so they keep running.
    let owners: Vec<String> = sqlx::query_scalar("SELECT o.name FROM backup_configurations c JOIN operators o ON o.id = c.created_by").fetch_all(&h.ctx.pool).await.expect("owners");
    assert_eq!(owners, ["alice"]);
    operators::add(&h.ctx, "olga", Role::PlatformOperator, PW).await.expect("add olga");
    operators::add(&h.ctx, "rita", Role::ReadOnlyAdmin, PW).await.expect("add rita");
    h
}

/// A new session on the same catalog (another window, another process), signed in as `name`.
async fn as_op(h: &Home, name: &str) -> Ctx {
    let ctx = Ctx::open(h.dir.path()).await.expect("open");
    operators::sign_in(&ctx, name, PW, false).await.unwrap_or_else(|e| panic!("sign in {name}: {}", e.message));
    ctx
}

#[tokio::test]
async fn the_first_start_creates_a_super_admin_and_then_nobody_acts_without_signing_in() {
    let h = home().await;
    let info = operators::session_info(&h.ctx).await.expect("info");
    assert!(info.needs_setup);
    assert_eq!(info.operator.map(|o| o.role), Some(Role::SuperAdmin), "the local administrator acts until then");
    let err = operators::create_first(&h.ctx, "alice", "short").await.expect_err("weak password");
    assert!(err.message.contains("at least 10 characters"), "{}", err.message);
    let alice = operators::create_first(&h.ctx, "alice", PW).await.expect("first super admin");
    assert_eq!(alice.role, Role::SuperAdmin);
    // Created signed in: that is a sign-in (the Operators tab said "last sign-in never").
    let listed = operators::list(&h.ctx).await.expect("operators").into_iter().find(|o| o.name == "alice").expect("alice");
    assert!(listed.last_sign_in.is_some(), "{listed:?}");
    let err = operators::create_first(&h.ctx, "mallory", PW).await.expect_err("only once");
    assert_eq!(err.code, ErrorCode::Conflict);

    // A new start: nobody acts until somebody signs in.
    let ctx = Ctx::open(h.dir.path()).await.expect("reopen");
    let info = operators::session_info(&ctx).await.expect("info");
    assert!(!info.needs_setup && info.operator.is_none());
    let err = configurations::list(&ctx).await.expect_err("not signed in");
    assert_eq!(err.code, ErrorCode::PermissionDenied);
    assert!(err.message.contains("sign in"), "{}", err.message);
    // Start-up housekeeping needs nobody signed in.
    safehold_core::scheduler::recover_interrupted(&ctx).await.expect("crash recovery at start-up");
    let err = operators::sign_in(&ctx, "nobody-or-a-password", PW, false).await.expect_err("unknown");
    assert_eq!(err.code, ErrorCode::AuthFailed);
    assert_eq!(count(&ctx, "SELECT count(*) FROM audit_log WHERE target LIKE '%nobody-or-a-password%'").await, 0, "a typed unknown name is not recorded");
    let err = operators::sign_in(&ctx, "alice", "wrong password!", false).await.expect_err("wrong password");
    assert_eq!(err.code, ErrorCode::AuthFailed);
    assert!(!err.message.contains("wrong password!"), "the password is never echoed: {}", err.message);
    operators::sign_in(&ctx, "alice", PW, false).await.expect("sign in");
    configurations::list(&ctx).await.expect("signed in: allowed");
    operators::sign_out(&ctx).await.expect("sign out");
    assert_eq!(configurations::list(&ctx).await.expect_err("signed out").code, ErrorCode::PermissionDenied);
    // Never a password or its hash in the audit log.
    let leaked = count(&ctx, &format!("SELECT count(*) FROM audit_log WHERE coalesce(detail, '') || coalesce(target, '') LIKE '%{PW}%' OR detail LIKE '%argon2id$%'")).await;
    assert_eq!(leaked, 0);
}

/// What each kind of engine function does for a role: Ok(()) allowed and done, Err(code).
async fn attempt(ctx: &Ctx, what: &str, conn: &str, pg: &str, scratch: &std::path::Path) -> Result<(), ErrorCode> {
    let r = match what {
        // backup:view_history / view_status
        "history" => history::executions(ctx, 10).await.map(drop),
        "configurations" => configurations::list(ctx).await.map(drop),
        "audit" => audit::list(ctx, &AuditFilter::default()).await.map(drop),
        // backup:trigger_manual
        "run_now" => {
            let id = configurations::list(ctx).await.map_err(|e| e.code)?.remove(0).id;
            runs::enqueue(ctx, &id).await.map(drop)
        }
        // backup:manage_all
        "create_configuration" => configurations::create(ctx, input(&format!("by {}", ctx.operator_id()), conn)).await.map(drop),
        "add_connection" => {
            let i = connections::ConnectionInput::from_url(&format!("db of {}", ctx.operator_id()), &format!("sqlite://{}", scratch.join("x.db").display())).expect("input");
            connections::add(ctx, i).await.map(drop)
        }
        "apply_retention" => {
            let id = configurations::list(ctx).await.map_err(|e| e.code)?.remove(0).id;
            retention::apply(ctx, &id).await.map(drop)
        }
        "notify_setting" => safehold_core::scheduler::set_notify_on_success(ctx, true).await,
        "add_operator" => operators::add(ctx, &format!("new by {}", ctx.operator_id()), Role::ReadOnlyAdmin, PW).await.map(drop),
        // backup:manage_storage
        "add_storage" => storage::add_local(ctx, &format!("disk of {}", ctx.operator_id()), &scratch.join(ctx.operator_id()), false).await.map(drop),
        // backup:restore_data
        "list_tenants" => migrate::records::tenants(ctx, pg).await.map(drop),
        "plan_restore" => {
            let form = safehold_core::restore::records::RestoreForm { backup_execution_id: "none".into(), connection_id: conn.into(), ..Default::default() };
            let _ = pg;
            safehold_core::restore::records::plan(ctx, &form).await.map(drop)
        }
        // A dry run reads tenants' rows with the stored password: the same permission.
        "validate_migration" => {
            let spec = migrate::MigrationSpec {
                migration_type: Some(migrate::MigrationType::TenantCopy),
                source: Some(pg.into()),
                target: Some(pg.into()),
                source_tenant_ids: vec!["acme".into()],
                target_tenant_id: Some(format!("acme-{}", ctx.operator_id())),
                ..Default::default()
            };
            migrate::records::validate_with(ctx, &spec, None, &safehold_core::source::no_progress()).await.map(drop)
        }
        // A command on a repository named by path (the CLI's restore --from DIR, verify --deep …).
        "adhoc_restore" => safehold_core::keys::custody::adhoc(ctx, safehold_core::keys::custody::Adhoc::RestorePlan, "/somewhere", &Default::default(), None).await.map(drop),
        "adhoc_backup" => safehold_core::keys::custody::adhoc(ctx, safehold_core::keys::custody::Adhoc::Backup, "/somewhere", &Default::default(), None).await.map(drop),
        other => panic!("no attempt {other}"),
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.code == ErrorCode::PermissionDenied => Err(e.code),
        // Allowed, and failing for its own reason (the restore plan names a backup that does not exist).
        Err(e) if what == "plan_restore" && e.code == ErrorCode::NotFound => Ok(()),
        Err(e) => panic!("{what}: {:?} {}", e.code, e.message),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_role_may_do_what_its_grants_allow_and_nothing_else_and_both_are_audited() {
    let h = team().await;
    let pg = ScratchDb::create().await;
    pg.execute("CREATE TABLE tenants (id text PRIMARY KEY, name text); INSERT INTO tenants VALUES ('acme', 'Acme');").await;
    let conn = connections::list(&h.ctx).await.expect("connections").remove(0).id;
    let scratch = tempfile::tempdir().expect("tmp");
    // (function, super_admin, platform_operator, read_only_admin)
    let matrix: [(&str, bool, bool, bool); 15] = [
        ("history", true, true, true),
        ("configurations", true, true, true),
        ("audit", true, true, true),
        ("run_now", true, true, false),
        ("create_configuration", true, false, false),
        ("add_connection", true, false, false),
        ("apply_retention", true, false, false),
        ("add_operator", true, false, false),
        ("add_storage", true, false, false),
        ("list_tenants", true, false, false),
        ("plan_restore", true, false, false),
        ("notify_setting", true, false, false),
        ("validate_migration", true, false, false),
        ("adhoc_restore", true, false, false),
        ("adhoc_backup", true, true, false),
    ];
    for (who, col) in [("alice", 1), ("olga", 2), ("rita", 3)] {
        let ctx = as_op(&h, who).await;
        for (what, sa, po, ro) in matrix {
            let allowed = [sa, po, ro][col - 1];
            let before_conf = count(&ctx, "SELECT count(*) FROM backup_configurations").await;
            let before_exec = count(&ctx, "SELECT count(*) FROM backup_executions").await;
            let before_denied = count(&ctx, &format!("SELECT count(*) FROM audit_log WHERE outcome = 'denied' AND operator_id = '{}'", ctx.operator_id())).await;
            let got = attempt(&ctx, what, &conn, &pg.url(), scratch.path()).await;
            assert_eq!(got.is_ok(), allowed, "{who} {what}: {got:?}");
            let denied = count(&ctx, &format!("SELECT count(*) FROM audit_log WHERE outcome = 'denied' AND operator_id = '{}'", ctx.operator_id())).await;
            if allowed {
                assert_eq!(denied, before_denied, "{who} {what}: nothing denied");
            } else {
                assert_eq!(denied, before_denied + 1, "{who} {what}: the refusal is audited");
                assert_eq!(count(&ctx, "SELECT count(*) FROM backup_configurations").await, before_conf, "{who} {what}: nothing changed");
                assert_eq!(count(&ctx, "SELECT count(*) FROM backup_executions").await, before_exec, "{who} {what}: nothing changed");
            }
        }
    }
    // The allowed changes are audited under their operator.
    let done = |action: &str, who: &str| format!("SELECT count(*) FROM audit_log a JOIN operators o ON o.id = a.operator_id WHERE a.action = '{action}' AND o.name = '{who}' AND a.outcome = 'success'");
    assert_eq!(count(&h.ctx, &done("configuration.create", "alice")).await, 1);
    assert_eq!(count(&h.ctx, &done("connection.add", "alice")).await, 1);
    assert_eq!(count(&h.ctx, &done("storage.add", "alice")).await, 1);
    assert_eq!(count(&h.ctx, &done("operator.add", "alice")).await, 3);
    assert_eq!(count(&h.ctx, &done("migration.validate", "alice")).await, 1, "a dry run is audited too");
    // Backups asked for are recorded with who asked.
    let by: Vec<String> = sqlx::query_scalar("SELECT o.name FROM backup_executions e JOIN operators o ON o.id = e.initiated_by ORDER BY o.name")
        .fetch_all(&h.ctx.pool)
        .await
        .expect("executions");
    assert_eq!(by, ["alice", "olga"]);
    // Only the app writes the audit log, and never changes it.
    assert!(sqlx::query("UPDATE audit_log SET outcome = 'success' WHERE outcome = 'denied'").execute(&h.ctx.pool).await.is_err());
    assert!(sqlx::query("DELETE FROM audit_log").execute(&h.ctx.pool).await.is_err());
}

/// Issue 21 #15: sign-in tells nobody which names exist: a wrong password for an operator, for a
/// disabled operator and for a name that is nobody's get the same answers, attempt after attempt
/// (slower each time, then locked), and only the right password says "disabled".
#[tokio::test(flavor = "multi_thread")]
async fn sign_in_answers_the_same_for_names_that_exist_and_names_that_do_not() {
    let h = team().await;
    operators::set_active(&h.ctx, "rita", false).await.expect("disable rita");
    let answers = |name: &'static str| {
        let dir = h.dir.path().to_path_buf();
        async move {
            let ctx = Ctx::open(&dir).await.expect("open");
            let mut out = Vec::new();
            for _ in 0..=operators::MAX_FAILURES {
                let e = operators::sign_in(&ctx, name, "not the password", false).await.expect_err("wrong");
                // (The time a lock ends is the one thing that differs.)
                let msg = e.message.replace(name, "NAME");
                let msg = msg.split(" until ").next().unwrap_or_default().to_string();
                out.push(format!("{:?}: {msg}", e.code));
            }
            out
        }
    };
    let (known, disabled, unknown) = tokio::join!(answers("olga"), answers("rita"), answers("nobody-at-all"));
    assert_eq!(known, unknown, "an operator's name and nobody's are answered alike");
    assert_eq!(disabled, unknown, "a disabled operator's name too");
    assert!(known.last().is_some_and(|a| a.contains("locked")), "{known:?}");
    // The typed names are not kept, only salted hashes of them.
    assert_eq!(count(&h.ctx, "SELECT count(*) FROM sign_in_strangers WHERE name_hash LIKE '%nobody%'").await, 0);
    assert_eq!(count(&h.ctx, "SELECT count(*) FROM audit_log WHERE target LIKE '%nobody%' OR detail LIKE '%nobody%'").await, 0);
    // The right password tells a disabled operator (and only then) that they are disabled.
    let ctx = Ctx::open(h.dir.path()).await.expect("open");
    operators::set_active(&h.ctx, "rita", true).await.expect("unlock");
    operators::set_active(&h.ctx, "rita", false).await.expect("disable again");
    let e = operators::sign_in(&ctx, "rita", PW, false).await.expect_err("disabled");
    assert!(e.message.contains("disabled"), "{}", e.message);
}

#[tokio::test]
async fn failed_sign_ins_slow_down_and_lock_and_idle_sessions_end() {
    let h = team().await;
    let ctx = Ctx::open(h.dir.path()).await.expect("open");
    let started = std::time::Instant::now();
    for i in 1..operators::MAX_FAILURES {
        let err = operators::sign_in(&ctx, "olga", "not her password", false).await.expect_err("wrong");
        assert_eq!(err.code, ErrorCode::AuthFailed, "attempt {i}");
    }
    assert!(started.elapsed() >= Duration::from_millis(200 + 400 + 800 + 1600), "each failure waits longer: {:?}", started.elapsed());
    let err = operators::sign_in(&ctx, "olga", "not her password", false).await.expect_err("locked now");
    assert!(err.message.contains("locked until"), "{}", err.message);
    let err = operators::sign_in(&ctx, "olga", PW, false).await.expect_err("locked even with the right password");
    assert_eq!(err.code, ErrorCode::PermissionDenied);
    assert!(err.message.contains("locked"), "{}", err.message);
    assert_eq!(count(&ctx, "SELECT count(*) FROM audit_log WHERE action = 'operator.sign_in' AND target = 'olga' AND outcome = 'failure'").await, operators::MAX_FAILURES);
    assert_eq!(count(&ctx, "SELECT count(*) FROM audit_log WHERE action = 'operator.sign_in' AND target = 'olga' AND outcome = 'denied'").await, 1);
    // A super admin unlocks her.
    operators::set_active(&h.ctx, "olga", true).await.expect("unlock");
    operators::sign_in(&ctx, "olga", PW, false).await.expect("unlocked");
    // Disabling ends the open sessions at their next call; a disabled operator cannot sign in.
    let rita = as_op(&h, "rita").await;
    configurations::list(&rita).await.expect("rita looks");
    operators::set_active(&h.ctx, "rita", false).await.expect("disable");
    let err = configurations::list(&rita).await.expect_err("her open session ended");
    assert!(err.code == ErrorCode::PermissionDenied && err.message.contains("disabled"), "{}", err.message);
    assert_eq!(operators::sign_in(&ctx, "rita", PW, false).await.expect_err("disabled").code, ErrorCode::PermissionDenied);
    // The last super admin cannot be disabled, demoted or removed.
    assert!(operators::set_active(&h.ctx, "alice", false).await.expect_err("last").message.contains("last active super admin"));
    assert!(operators::set_role(&h.ctx, "alice", Role::ReadOnlyAdmin).await.is_err());

    // Idle expiry (app sessions).
    operators::set_idle_timeout(&h.ctx, 1).await.expect("idle 1 s");
    let app = Ctx::open(h.dir.path()).await.expect("open");
    operators::sign_in(&app, "alice", PW, true).await.expect("sign in");
    configurations::list(&app).await.expect("active");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(operators::session_info(&app).await.expect("info").operator.is_none(), "looking shows the session ended");
    let err = configurations::list(&app).await.expect_err("idle too long");
    assert_eq!(err.code, ErrorCode::PermissionDenied);
    assert!(err.message.contains("idle"), "{}", err.message);
    operators::sign_in(&app, "alice", PW, true).await.expect("sign in again");
    configurations::list(&app).await.expect("active again");
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_backups_run_as_the_configurations_owner_and_not_when_the_owner_is_disabled() {
    let h = team().await;
    operators::add(&h.ctx, "bob", Role::SuperAdmin, PW).await.expect("bob");
    let bob = as_op(&h, "bob").await;
    let conn = connections::list(&bob).await.expect("connections").remove(0).id;
    let config = configurations::create(&bob, ConfigurationInput { is_active: true, ..input("Bob's nightly", &conn) }).await.expect("create");
    operators::set_active(&h.ctx, "bob", false).await.expect("disable bob");
    let s = Scheduler::new(h.ctx.clone(), 1, std::sync::Arc::new(|_| {}));
    let err = s.submit(&config.id, "schedule").await.expect_err("the owner is disabled");
    assert_eq!(err.code, ErrorCode::PermissionDenied);
    assert!(err.message.contains("Bob's nightly") && err.message.contains("disabled"), "{}", err.message);
    assert_eq!(count(&h.ctx, &format!("SELECT count(*) FROM backup_executions WHERE configuration_id = '{}'", config.id)).await, 0);
    assert_eq!(count(&h.ctx, "SELECT count(*) FROM audit_log WHERE action = 'backup.start' AND outcome = 'denied' AND target = 'Bob''s nightly'").await, 1);
    // A read-only admin cannot ask the runner for a backup either.
    let rita = as_op(&h, "rita").await;
    assert_eq!(s.submit_as(&rita, &config.id, "manual").await.expect_err("read-only").code, ErrorCode::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_filters_and_exports_as_csv() {
    let h = team().await;
    let rita = as_op(&h, "rita").await;
    let _ = configurations::create(&rita, input("nope", "x")).await.expect_err("denied");
    let denied = audit::list(&rita, &AuditFilter { outcome: Some("denied".into()), ..Default::default() }).await.expect("list");
    assert_eq!(denied.len(), 1);
    assert_eq!((denied[0].operator.as_deref(), denied[0].action.as_str(), denied[0].target.as_deref()), (Some("rita"), "configuration.create", Some("nope")));
    let ops = audit::list(&rita, &AuditFilter { action: Some("operator.".into()), operator: Some("alice".into()), ..Default::default() }).await.expect("list");
    assert_eq!(ops.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["operator.add", "operator.add", "operator.create_first"]);
    let err = audit::list(&rita, &AuditFilter { since: Some("yesterday".into()), ..Default::default() }).await.expect_err("bad date");
    assert!(err.message.contains("is not a date"), "{}", err.message);

    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("audit.csv");
    // Writing the log to a file is a super admin's (a read-only admin reads it in the app).
    let err = audit::export_csv(&rita, &AuditFilter::default(), &path).await.expect_err("read-only");
    assert_eq!(err.code, ErrorCode::PermissionDenied);
    assert!(!path.exists());
    let n = audit::export_csv(&h.ctx, &AuditFilter::default(), &path).await.expect("export");
    let text = std::fs::read_to_string(&path).expect("csv");
    assert!(text.starts_with("id,at,operator,operator_id,action,target,outcome,detail\n"), "{text}");
    assert_eq!(text.lines().count(), n + 1);
    assert!(text.contains(",rita,") && text.contains(",configuration.create,nope,denied,") && text.contains(",audit.export,"), "{text}");
    let last = audit::list(&rita, &AuditFilter { limit: Some(1), ..Default::default() }).await.expect("newest");
    assert_eq!(last[0].action, "audit.export", "the export is audited");
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).expect("meta").permissions()) & 0o777, 0o600);
    let err = audit::export_csv(&h.ctx, &AuditFilter::default(), &dir.path().join("missing/dir/a.csv")).await.expect_err("no folder");
    assert_eq!(err.code, ErrorCode::Io);
    // It never replaces a file that is not a CSV file (a path typed wrong, or chosen to harm).
    let profile = dir.path().join(".profile");
    std::fs::write(&profile, "keep me").expect("write");
    let err = audit::export_csv(&h.ctx, &AuditFilter::default(), &profile).await.expect_err("not a csv");
    assert!(err.message.contains("not a .csv file"), "{}", err.message);
    assert_eq!(std::fs::read_to_string(&profile).expect("read"), "keep me");
}

#[tokio::test]
async fn an_operator_who_did_something_is_kept_disabled_when_removed() {
    let h = team().await;
    let olga = as_op(&h, "olga").await;
    let id = configurations::list(&olga).await.expect("list").remove(0).id;
    runs::enqueue(&olga, &id).await.expect("olga runs a backup");
    operators::remove(&h.ctx, "olga").await.expect("remove olga");
    operators::remove(&h.ctx, "rita").await.expect("remove rita");
    let left: Vec<(String, bool)> = sqlx::query_as("SELECT name, is_active FROM operators WHERE name IN ('olga', 'rita')").fetch_all(&h.ctx.pool).await.expect("operators");
    assert_eq!(left, [("olga".to_string(), false)], "olga stays in the history, disabled; rita is gone");
    // A removed operator is answered as a name that is nobody's.
    assert_eq!(operators::sign_in(&olga, "olga", PW, false).await.expect_err("removed").code, ErrorCode::AuthFailed);
    let err = operators::remove(&h.ctx, "alice").await.expect_err("yourself");
    assert!(err.message.contains("yourself"), "{}", err.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operators_backup_is_sealed_to_the_public_key_and_opens_only_with_a_super_admins_key_or_the_recovery_kit() {
    use safehold_core::archive::keys::KeySlot;
    use safehold_core::archive::ArchiveReader;
    use safehold_core::backup::{self, BackupRequest};
    use safehold_core::source::{no_progress, CancelToken, SourceSpec};
    use safehold_core::keys::unlock::KeySources;
    use safehold_core::{restore, verify};

    let src = ScratchDb::create().await;
    src.execute("CREATE TABLE accounts (id int PRIMARY KEY, secret text); INSERT INTO accounts VALUES (1, 'classified'), (2, 'also classified');").await;
    // The super admin makes the repository (its password) and keeps the recovery kit.
    let admin = crate::backup::repo_with_password("the super admin's repository password");
    let (mut repo, mk) = admin.keys.open_repository_for_backup(&admin.path()).await.expect("repository");
    assert!(repo.config.public_key.is_some(), "a new repository has a key pair");
    let kit = admin.dir.path().join("kit.txt");
    std::fs::write(&kit, repo.export_recovery(&mk).expect("kit")).expect("write kit");

    // The operator has the repository's location and her own sign-in password, not the repository's.
    let own = admin.dir.path().join("own");
    std::fs::write(&own, PW).expect("own password");
    let operator = KeySources::default();
    let (sealed_repo, master) = operator.open_repository_for_sealed_backup(&admin.path()).await.expect("open without a secret");
    assert!(master.is_none());
    let mut req = BackupRequest::new(SourceSpec::Postgres { url: src.url() });
    req.backup_type = BackupType::Incremental;
    let out = backup::run_with(&sealed_repo, None, &req, &CancelToken::new(), &no_progress()).await.expect("the operator backs up");
    assert_eq!(out.backup_type, BackupType::Full, "the first backup of a source is a full one");
    let path = std::path::PathBuf::from(&out.archive);
    let header = ArchiveReader::open(&path).expect("archive").header;
    assert!(header.key_slots.iter().all(|s| matches!(s, KeySlot::Public { .. })), "the data key is only sealed to the public key: {:?}", header.key_slots);
    // She can check it (quick verify needs no key) ...
    verify::quick(&path, Some(&out.sha256)).expect("quick verify");
    // ... but not read it: not without a key, not with her own password.
    let err = operator.open_chain(&path, None).await.err().expect("no key");
    assert_eq!(err.code, ErrorCode::AuthFailed, "{}", err.message);
    let with_own = KeySources { password_file: Some(own), ..Default::default() };
    assert_eq!(with_own.open_chain(&path, None).await.err().expect("her password is not the key").code, ErrorCode::AuthFailed);
    assert!(verify::deep(&path, None, None).is_err(), "a deep verify needs the key");

    // The super admin's key restores it; so does the recovery kit alone.
    let target = ScratchDb::create().await;
    admin.restore(&path, &SourceSpec::Postgres { url: target.url() }).await.expect("restore with the super admin's key");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&target.url()).await.expect("connect");
    let rows: Vec<String> = sqlx::query_scalar("SELECT secret FROM accounts ORDER BY id").fetch_all(&mut conn).await.expect("rows");
    assert_eq!(rows, ["classified", "also classified"]);
    let kit_keys = KeySources { recovery_key_file: Some(kit), ..Default::default() };
    let chain = kit_keys.open_chain(&path, None).await.expect("the recovery kit opens it");
    let target2 = ScratchDb::create().await;
    restore::restore_chain(chain, &SourceSpec::Postgres { url: target2.url() }, 2, false, &CancelToken::new(), &no_progress()).await.expect("restore with the kit");
    let mut conn2 = <sqlx::PgConnection as sqlx::Connection>::connect(&target2.url()).await.expect("connect");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts").fetch_one(&mut conn2).await.expect("count");
    assert_eq!(n, 2);
    // With the key, the next incremental reads its parent again.
    let (repo2, mk2) = admin.keys.open_repository_for_sealed_backup(&admin.path()).await.expect("open with the password");
    assert!(mk2.is_some());
    let next = backup::run_with(&repo2, mk2.as_ref(), &req, &CancelToken::new(), &no_progress()).await.expect("incremental");
    assert_eq!(next.parent.as_deref(), Some(out.id.as_str()), "an incremental on the operator's full");
    // Without any key, the operator's next incremental builds on it too: the parent's plaintext
    // header carries its transaction snapshot (and its tables' columns, hashed).
    src.execute("UPDATE accounts SET secret = 'changed' WHERE id = 2; INSERT INTO accounts VALUES (3, 'new');").await;
    let keyless = backup::run_with(&sealed_repo, None, &req, &CancelToken::new(), &no_progress()).await.expect("a keyless incremental");
    assert_eq!(keyless.backup_type, BackupType::Incremental, "{:?}", keyless.note);
    assert_eq!(keyless.parent.as_deref(), Some(next.id.as_str()));
    // Only the changed and the new row — unless another transaction (of another test) was open at
    // the parent's snapshot: rows written since the oldest of them come along (docs/backups.md).
    let parent_snapshot = ArchiveReader::open(std::path::Path::new(&next.archive)).expect("open").header.basis.and_then(|b| b.get("txid_snapshot").and_then(|v| v.as_str()).map(String::from)).unwrap_or_default();
    let alone = parent_snapshot.split(':').nth(2).is_some_and(str::is_empty);
    if alone {
        assert_eq!(keyless.rows, 2, "only the changed and the new row");
    } else {
        assert!((2..=3).contains(&keyless.rows), "the changed and the new row, and the unchanged one at most: {}", keyless.rows);
    }
    let header = ArchiveReader::open(std::path::Path::new(&next.archive)).expect("open").header;
    let basis = header.basis.expect("the header's basis").to_string();
    assert!(!basis.contains("accounts") && !basis.contains("secret"), "no table or column name in clear: {basis}");
    let target3 = ScratchDb::create().await;
    admin.restore(std::path::Path::new(&keyless.archive), &SourceSpec::Postgres { url: target3.url() }).await.expect("restore the chain");
    let mut conn3 = <sqlx::PgConnection as sqlx::Connection>::connect(&target3.url()).await.expect("connect");
    let rows: Vec<String> = sqlx::query_scalar("SELECT secret FROM accounts ORDER BY id").fetch_all(&mut conn3).await.expect("rows");
    assert_eq!(rows, ["classified", "changed", "new"]);

    // A public key swapped into the repository file is refused: by a home that wrote here before
    // (it remembers the key it saw), and — a low-order key — by any home.
    let file = admin.path().join(safehold_core::repository::CONFIG_FILE);
    let original = std::fs::read_to_string(&file).expect("repository file");
    let mut cfg: serde_json::Value = serde_json::from_str(&original).expect("json");
    cfg["public_key"] = "00".repeat(32).into();
    std::fs::write(&file, cfg.to_string()).expect("tamper");
    let err = operator.open_repository_for_sealed_backup(&admin.path()).await.expect_err("the key this home saw is pinned");
    assert!(err.message.contains("its repository file was replaced"), "{}", err.message);
    let fresh_home = tempfile::tempdir().expect("tmp");
    let fresh = KeySources { writer: Some(safehold_core::writers::WriterKey::for_home(fresh_home.path()).expect("writer key")), ..operator.clone() };
    let (weak, _) = fresh.open_repository_for_sealed_backup(&admin.path()).await.expect("open");
    let err = backup::run_with(&weak, None, &BackupRequest::new(SourceSpec::Postgres { url: src.url() }), &CancelToken::new(), &no_progress()).await.expect_err("a low-order key");
    assert!(err.message.contains("not a valid key"), "{}", err.message);
    let (_, other) = safehold_core::archive::keys::x25519_pair();
    cfg["public_key"] = other.into();
    std::fs::write(&file, cfg.to_string()).expect("tamper");
    let err = admin.keys.open_repository_for_sealed_backup(&admin.path()).await.expect_err("a key that is not the repository's");
    assert!(err.message.contains("is not the repository's own"), "{}", err.message);
}
