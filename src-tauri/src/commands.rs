//! Tauri commands: each adapts one engine function. Errors cross as `{ code, message, fields }`.

use safehold_core::configurations::{self, BackupConfiguration, ConfigurationInput};
use safehold_core::connections::{self, Connection, ConnectionInput, ConnectionReport};
use safehold_core::cron::{self, CronPreview};
use safehold_core::history::{self, BackupExecution, MigrationJob, RestoreOperation};
use safehold_core::storage::{self, BackupStorage};
use safehold_core::migrate::{self, MigrationReport, MigrationSpec};
use safehold_core::auth::{audit, operators};
use safehold_core::{demo, Error, FieldError};
use safehold_core::restore::RestorePlan;
use safehold_core::restore::records::{self as restores, RestoreForm};
use tauri::State;

use crate::AppState;

type Res<T> = Result<T, Error>;

/// `Ok` when the engine started; otherwise why it did not.
#[tauri::command]
pub fn startup_status(state: State<'_, AppState>) -> Res<String> {
    state.ctx().map(|c| c.home.display().to_string())
}

#[tauri::command]
pub async fn list_executions(state: State<'_, AppState>, limit: Option<i64>, status: Option<history::JobStatus>) -> Res<Vec<BackupExecution>> {
    history::executions_with(state.ctx()?, limit.unwrap_or(50), status).await
}

#[tauri::command]
pub async fn list_restores(state: State<'_, AppState>, limit: Option<i64>, offset: Option<i64>) -> Res<Vec<RestoreOperation>> {
    history::restores(state.ctx()?, limit.unwrap_or(50).clamp(1, 1000), offset.unwrap_or(0)).await
}

#[tauri::command]
pub async fn list_migrations(state: State<'_, AppState>) -> Res<Vec<MigrationJob>> {
    history::migrations(state.ctx()?, 50).await
}

#[tauri::command]
pub async fn list_storage(state: State<'_, AppState>) -> Res<Vec<BackupStorage>> {
    storage::list(state.ctx()?).await
}

#[tauri::command]
pub async fn list_configurations(state: State<'_, AppState>) -> Res<Vec<BackupConfiguration>> {
    configurations::list(state.ctx()?).await
}

/// Each configuration's next run and last backup.
#[tauri::command]
pub async fn configuration_overview(state: State<'_, AppState>) -> Res<Vec<safehold_core::scheduler::ConfigurationStatus>> {
    safehold_core::scheduler::overview(state.ctx()?).await
}

#[tauri::command]
pub async fn create_configuration(state: State<'_, AppState>, input: ConfigurationInput) -> Res<BackupConfiguration> {
    let c = configurations::create(state.ctx()?, input).await?;
    state.reschedule();
    Ok(c)
}

#[tauri::command]
pub async fn update_configuration(
    state: State<'_, AppState>,
    id: String,
    input: ConfigurationInput,
) -> Res<BackupConfiguration> {
    let c = configurations::update(state.ctx()?, &id, input).await?;
    state.reschedule();
    // Continuous protection turned off (or moved): its replication slot is dropped now.
    safehold_core::protect::configured::settle(state.ctx()?, &id).await?;
    Ok(c)
}

#[tauri::command]
pub async fn set_configuration_active(state: State<'_, AppState>, id: String, active: bool) -> Res<BackupConfiguration> {
    let c = configurations::set_active(state.ctx()?, &id, active).await?;
    state.reschedule();
    safehold_core::protect::configured::settle(state.ctx()?, &id).await?;
    Ok(c)
}

#[tauri::command]
pub async fn delete_configuration(state: State<'_, AppState>, id: String) -> Res<()> {
    configurations::delete(state.ctx()?, &id).await?;
    state.reschedule();
    safehold_core::protect::configured::settle(state.ctx()?, &id).await?;
    Ok(())
}

#[tauri::command]
pub async fn validate_configuration(
    state: State<'_, AppState>,
    input: ConfigurationInput,
    editing: Option<String>,
) -> Res<Vec<FieldError>> {
    configurations::validate(state.ctx()?, &input, editing.as_deref()).await
}

#[tauri::command]
pub fn cron_preview(line: String, time_zone: Option<String>) -> Res<CronPreview> {
    cron::preview_in(&line, time_zone.as_deref(), 3)
}

#[tauri::command]
pub async fn list_connections(state: State<'_, AppState>) -> Res<Vec<Connection>> {
    connections::list(state.ctx()?).await
}

#[tauri::command]
pub async fn add_connection(state: State<'_, AppState>, input: ConnectionInput) -> Res<Connection> {
    connections::add(state.ctx()?, input).await
}

#[tauri::command]
pub async fn update_connection(state: State<'_, AppState>, id: String, input: ConnectionInput) -> Res<Connection> {
    connections::update(state.ctx()?, &id, input).await
}

#[tauri::command]
pub async fn remove_connection(state: State<'_, AppState>, id: String) -> Res<()> {
    connections::remove(state.ctx()?, &id).await
}

#[tauri::command]
pub async fn test_connection(state: State<'_, AppState>, id: String) -> Res<ConnectionReport> {
    connections::test(state.ctx()?, &id).await
}

#[tauri::command]
pub async fn probe_connection(state: State<'_, AppState>, input: ConnectionInput) -> Res<ConnectionReport> {
    connections::probe_as(state.ctx()?, &input).await
}

#[tauri::command]
pub async fn setup_demo(state: State<'_, AppState>) -> Res<demo::DemoReport> {
    demo::ensure(state.ctx()?, true).await
}

/// The database the app offers to put the demo into: `safehold_demo` on the local PostgreSQL, or
/// the database URL in `SAFEHOLD_DEMO_POSTGRES`.
fn demo_database() -> String {
    std::env::var("SAFEHOLD_DEMO_POSTGRES").unwrap_or_else(|_| demo::LOCAL_DEMO_DATABASE.to_string())
}

/// Whether to offer a PostgreSQL copy of the demo (a server answers and it is not there yet).
#[tauri::command]
pub async fn demo_postgres_offer(state: State<'_, AppState>) -> Res<Option<demo::PostgresOffer>> {
    demo::postgres_offer(state.ctx()?, &demo_database()).await
}

/// Puts the demo on that PostgreSQL server, with a connection and a backup configuration.
#[tauri::command]
pub async fn put_demo_on_postgres(state: State<'_, AppState>) -> Res<demo::PostgresDemo> {
    let out = demo::put_on_postgres(state.ctx()?, &demo_database()).await?;
    state.reschedule();
    Ok(out)
}

/// "Not now" to the offer.
#[tauri::command]
pub async fn dismiss_demo_postgres_offer(state: State<'_, AppState>) -> Res<()> {
    demo::dismiss_postgres_offer(state.ctx()?).await
}

/// Starts a backup of a configuration now; returns the execution's id at once. The backup runs
/// in the background; the dashboard follows it through the catalog.
#[tauri::command]
pub async fn run_backup_now(state: State<'_, AppState>, configuration_id: String) -> Res<String> {
    let ctx = state.ctx()?;
    match &state.scheduler {
        Some(s) => s.submit_as(ctx, &configuration_id, "manual").await,
        None => Err(Error::new(safehold_core::ErrorCode::Internal, format!("the job runner is not running (catalog {})", ctx.home.display()))),
    }
}

/// Cancels a running backup: its partial archive is removed and the row says "cancelled".
#[tauri::command]
pub async fn cancel_backup(state: State<'_, AppState>, execution_id: String) -> Res<bool> {
    cancel_job(&state, &execution_id, operators::Permission::TriggerManual, "backup.cancel").await
}

/// The keychain calls waiting for an answer now (a locked keyring's unlock prompt): the window
/// says so, with a Cancel.
#[tauri::command]
pub async fn keychain_waits(state: State<'_, AppState>) -> Res<Vec<safehold_core::secrets::KeychainWait>> {
    operators::require(state.ctx()?, operators::Permission::ViewHistory, "keychain.waits", "keychain").await?;
    Ok(safehold_core::secrets::waiting())
}

/// Ends every keychain wait now: the jobs that asked fail as cancelled, having written nothing.
#[tauri::command]
pub async fn cancel_keychain_waits(state: State<'_, AppState>) -> Res<usize> {
    operators::require(state.ctx()?, operators::Permission::ViewHistory, "keychain.cancel", "keychain").await?;
    let n = safehold_core::secrets::cancel_waits();
    tracing::info!("{n} keychain waits cancelled from the window");
    Ok(n)
}

/// Cancels a queued or running job after checking the operator may (a refusal is audited).
async fn cancel_job(state: &AppState, key: &str, permission: operators::Permission, action: &str) -> Res<bool> {
    operators::require(state.ctx()?, permission, action, key).await?;
    Ok(state.scheduler.as_ref().is_some_and(|s| s.cancel(key)))
}

/// Heavy work asked for from a tab, run in a slot of the engine's job runner (which keeps the
/// one registry of cancel tokens, under `key`); without a runner it runs at once.
async fn in_slot<T, F, Fut>(state: &AppState, key: &str, work: F) -> Res<T>
where
    F: FnOnce(safehold_core::source::CancelToken) -> Fut,
    Fut: std::future::Future<Output = Res<T>>,
{
    match &state.scheduler {
        Some(s) => s.run_in_slot(key, work).await,
        None => work(safehold_core::source::CancelToken::new()).await,
    }
}

/// The plan of a restore: what it will read, write, replace and warn about (a rolled-back trial
/// run for selective and tenant restores). Nothing is changed.
#[tauri::command]
pub async fn plan_restore(state: State<'_, AppState>, form: RestoreForm) -> Res<RestorePlan> {
    restores::plan(state.ctx()?, &form).await
}

/// A configuration's timeline for the Restore tab: backups, continuously covered spans, the
/// recovery point.
#[tauri::command]
pub async fn protection_timeline(state: State<'_, AppState>, configuration_id: String) -> Res<safehold_core::protect::configured::Timeline> {
    safehold_core::protect::configured::timeline(state.ctx()?, &configuration_id).await
}

/// Plans (`dry_run`) or runs a restore to a second: one tenant in place, or the whole database
/// into a new one.
#[tauri::command]
pub async fn restore_to_second(state: State<'_, AppState>, request: safehold_core::protect::configured::SecondRequest) -> Res<safehold_core::protect::configured::SecondOutcome> {
    // A heavy job: it waits for a slot of the job runner; Cancel stops it (cancel_restore_to_second,
    // or cancel_restore of its restore operation, which the Restore tab's list shows).
    use safehold_core::protect::configured;
    let ctx = state.ctx()?;
    let operation = if request.dry_run { None } else { Some(configured::record_second(ctx, &request).await?) };
    let second = format!("second:{}", request.configuration_id);
    let keys: Vec<&str> = std::iter::once(second.as_str()).chain(operation.as_deref()).collect();
    let run = |cancel: safehold_core::source::CancelToken| {
        let (request, operation) = (&request, operation.as_deref());
        async move { configured::restore_second_recorded(ctx, request, operation, &cancel).await }
    };
    let out = match &state.scheduler {
        Some(s) => s.run_in_slot_as(&keys, run).await,
        None => run(safehold_core::source::CancelToken::new()).await,
    };
    // Cancelled while it waited for a slot: its record says so.
    if let (Err(e), Some(id)) = (&out, &operation) {
        safehold_core::restore::records::not_started(ctx, id, e).await?;
    }
    out
}

/// Cancels a running restore to a second of a configuration.
#[tauri::command]
pub async fn cancel_restore_to_second(state: State<'_, AppState>, configuration_id: String) -> Res<bool> {
    cancel_job(&state, &format!("second:{configuration_id}"), operators::Permission::RestoreData, "restore.at.cancel").await
}

/// Starts a restore; returns the restore operation's id at once. The Restore tab follows it
/// through the catalog (progress, current table) and can cancel it.
#[tauri::command]
pub async fn start_restore(state: State<'_, AppState>, form: RestoreForm) -> Res<String> {
    let ctx = state.ctx()?.clone();
    let (id, req) = restores::start(&ctx, &form).await?;
    let keys = safehold_core::keys::custody::key_sources(&ctx).await?;
    match &state.scheduler {
        // Through the job runner: it waits for a running backup to finish, and can be cancelled.
        Some(s) => {
            s.submit_restore(&id, req, keys);
        }
        None => return Err(Error::new(safehold_core::ErrorCode::Internal, "the job runner is not running")),
    }
    Ok(id)
}

/// Cancels a running restore: its transaction is rolled back and the row says "cancelled".
#[tauri::command]
pub async fn cancel_restore(state: State<'_, AppState>, restore_id: String) -> Res<bool> {
    cancel_job(&state, &restore_id, operators::Permission::RestoreData, "restore.cancel").await
}

/// Checks a recorded backup: quick (its SHA-256) or deep (its whole chain read with the key). The
/// result is kept on the backup's record.
#[tauri::command]
pub async fn check_backup(state: State<'_, AppState>, execution_id: String, deep: bool) -> Res<safehold_core::checks::BackupCheck> {
    let ctx = state.ctx()?;
    if !deep {
        return safehold_core::checks::check_backup(ctx, &execution_id, false).await;
    }
    // A deep check reads every archive of the chain: it waits for a slot of the job runner.
    in_slot(&state, &format!("check:{execution_id}"), |_| safehold_core::checks::check_backup(ctx, &execution_id, true)).await
}

/// Verifies a backup by restoring it into a scratch database on its source's server.
#[tauri::command]
pub async fn verify_by_restoring(state: State<'_, AppState>, execution_id: String) -> Res<safehold_core::restore::RestoreTestReport> {
    // A heavy job: it waits for a slot of the job runner; Cancel stops it (cancel_verify) and the
    // scratch database is dropped either way.
    let ctx = state.ctx()?;
    in_slot(&state, &format!("verify:{execution_id}"), |cancel| async move { restores::verify_by_restoring(ctx, &execution_id, &cancel).await }).await
}

/// Cancels a running "Verify by restoring" of a backup.
#[tauri::command]
pub async fn cancel_verify(state: State<'_, AppState>, execution_id: String) -> Res<bool> {
    cancel_job(&state, &format!("verify:{execution_id}"), operators::Permission::RestoreData, "backup.verify_restore.cancel").await
}

/// What retention would delete now for a configuration, and why.
#[tauri::command]
pub async fn preview_retention(state: State<'_, AppState>, configuration_id: String) -> Res<safehold_core::retention::RetentionPlan> {
    safehold_core::retention::preview(state.ctx()?, &configuration_id).await
}

/// Applies retention now for a configuration.
#[tauri::command]
pub async fn apply_retention(state: State<'_, AppState>, configuration_id: String) -> Res<safehold_core::retention::RetentionPlan> {
    // Cancel (cancel_retention) works while it waits for a slot and between two deletions.
    let ctx = state.ctx()?;
    in_slot(&state, &format!("retention:{configuration_id}"), |cancel| async move { safehold_core::retention::apply_cancellable(ctx, &configuration_id, &cancel).await }).await
}

/// Cancels retention being applied for a configuration (what is deleted stays deleted).
#[tauri::command]
pub async fn cancel_retention(state: State<'_, AppState>, configuration_id: String) -> Res<bool> {
    cancel_job(&state, &format!("retention:{configuration_id}"), operators::Permission::ManageAll, "retention.cancel").await
}

/// Disaster recovery: records a repository's backups (from their plaintext headers) in the catalog.
#[tauri::command]
pub async fn rebuild_catalog(state: State<'_, AppState>, path: String) -> Res<safehold_core::recovery::RebuildReport> {
    safehold_core::recovery::rebuild_catalog(state.ctx()?, std::path::Path::new(&path)).await
}

/// Disaster recovery from a registered storage (a cloud bucket added with its credentials).
#[tauri::command]
pub async fn rebuild_catalog_from_storage(state: State<'_, AppState>, id: String) -> Res<safehold_core::recovery::RebuildReport> {
    safehold_core::recovery::rebuild_from_storage(state.ctx()?, &id).await
}

/// Probes a storage now (write, read back, delete).
#[tauri::command]
pub async fn check_storage(state: State<'_, AppState>, id: String) -> Res<safehold_core::storage::HealthCheck> {
    safehold_core::storage::check(state.ctx()?, &id).await
}

/// Measures a storage's used space and capacity now.
#[tauri::command]
pub async fn refresh_storage_usage(state: State<'_, AppState>, id: String) -> Res<safehold_core::storage::StorageUsage> {
    safehold_core::storage::refresh_usage(state.ctx()?, &id).await
}

/// The used space over time.
#[tauri::command]
pub async fn storage_samples(state: State<'_, AppState>, id: String) -> Res<Vec<safehold_core::storage::UsageSample>> {
    safehold_core::storage::samples(state.ctx()?, &id, 200).await
}

/// Who holds a storage's key: this workstation's keychain, which super admins, the recovery kit.
#[tauri::command]
pub async fn storage_key_custody(state: State<'_, AppState>, id: String) -> Res<safehold_core::keys::custody::KeyCustody> {
    safehold_core::keys::custody::custody(state.ctx()?, &id).await
}

/// The writers whose keys signed a storage's backups, and which of them are approved.
#[tauri::command]
pub async fn storage_writers(state: State<'_, AppState>, id: String) -> Res<Vec<safehold_core::keys::custody::WriterInfo>> {
    safehold_core::keys::custody::writers(state.ctx()?, &id).await
}

/// Approves a writer into a storage's repository: its backups restore from then on.
#[tauri::command]
pub async fn approve_writer(state: State<'_, AppState>, id: String, public_key: String) -> Res<safehold_core::keys::custody::WriterInfo> {
    safehold_core::keys::custody::approve_writer(state.ctx()?, &id, &public_key).await
}

/// Saves a storage's recovery kit to `path` (chosen in the save dialog) and returns its text, to
/// print; the repository keeps no copy afterwards.
#[tauri::command]
pub async fn export_recovery_kit(state: State<'_, AppState>, id: String, path: String) -> Res<String> {
    safehold_core::keys::custody::export_recovery_kit(state.ctx()?, &id, std::path::Path::new(&path)).await
}

/// Changes a storage: the default, in use or not, its quota, its credentials.
#[tauri::command]
pub async fn update_storage(state: State<'_, AppState>, id: String, change: safehold_core::storage::StorageChange) -> Res<BackupStorage> {
    storage::update(state.ctx()?, &id, change).await
}

/// Registers a local directory as a storage.
#[tauri::command]
pub async fn add_local_storage(state: State<'_, AppState>, name: String, path: String, is_default: bool) -> Res<BackupStorage> {
    storage::add_local(state.ctx()?, &name, std::path::Path::new(&path), is_default).await
}

/// Registers a cloud storage (credentials go to the OS keychain).
#[tauri::command]
pub async fn add_remote_storage(state: State<'_, AppState>, input: storage::RemoteStorageInput) -> Res<BackupStorage> {
    storage::add_remote(state.ctx()?, input).await
}

/// Removes a storage from the catalog (its files are kept).
#[tauri::command]
pub async fn remove_storage(state: State<'_, AppState>, id: String) -> Res<()> {
    storage::remove(state.ctx()?, &id).await
}

/// The tenants of a connection, for the migration wizard's pickers.
#[tauri::command]
pub async fn list_tenants(state: State<'_, AppState>, connection: String) -> Res<Vec<migrate::records::TenantRow>> {
    migrate::records::tenants(state.ctx()?, &connection).await
}

/// The mapping proposed from names for a migration (the wizard's mapping step). Nothing is changed.
#[tauri::command]
pub async fn propose_migration(state: State<'_, AppState>, spec: MigrationSpec) -> Res<MigrationReport> {
    migrate::records::propose_mapping(state.ctx()?, &spec).await
}

/// Validation: the whole migration run in a transaction that is rolled back; its report.
#[tauri::command]
pub async fn validate_migration(state: State<'_, AppState>, spec: MigrationSpec) -> Res<MigrationReport> {
    let ctx = state.ctx()?;
    in_slot(&state, &format!("validate:{}", spec.migration_name), |_| migrate::records::validate(ctx, &spec)).await
}

/// Starts a migration through the job runner; returns the migration job's id at once.
#[tauri::command]
pub async fn start_migration(state: State<'_, AppState>, spec: MigrationSpec) -> Res<String> {
    let ctx = state.ctx()?.clone();
    let id = migrate::records::start(&ctx, &spec).await?;
    match &state.scheduler {
        Some(s) => {
            s.submit_migration(&id, spec);
        }
        None => return Err(Error::new(safehold_core::ErrorCode::Internal, "the job runner is not running")),
    }
    Ok(id)
}

/// Cancels a queued or running migration: nothing it did is kept.
#[tauri::command]
pub async fn cancel_migration(state: State<'_, AppState>, migration_id: String) -> Res<bool> {
    cancel_job(&state, &migration_id, operators::Permission::RestoreData, "migration.cancel").await
}

/// The operator clicked or typed: the session's idle clock starts again.
#[tauri::command]
pub fn touch_session(state: State<'_, AppState>) -> Res<()> {
    operators::touch(state.ctx()?);
    Ok(())
}

/// Who is signed in, and whether the first super admin is still to be created.
#[tauri::command]
pub async fn session_info(state: State<'_, AppState>) -> Res<operators::SessionInfo> {
    operators::session_info(state.ctx()?).await
}

/// The first start: creates the first super admin, who is then signed in.
#[tauri::command]
pub async fn create_first_operator(state: State<'_, AppState>, name: String, password: String) -> Res<operators::Acting> {
    operators::create_first(state.ctx()?, &name, &password).await
}

/// Signs an operator in; the session ends after the configured idle time.
#[tauri::command]
pub async fn sign_in(state: State<'_, AppState>, name: String, password: String) -> Res<operators::Acting> {
    operators::sign_in(state.ctx()?, &name, &password, true).await
}

#[tauri::command]
pub async fn sign_out(state: State<'_, AppState>) -> Res<()> {
    operators::sign_out(state.ctx()?).await
}

#[tauri::command]
pub async fn list_operators(state: State<'_, AppState>) -> Res<Vec<operators::Operator>> {
    operators::list(state.ctx()?).await
}

#[tauri::command]
pub async fn add_operator(state: State<'_, AppState>, name: String, role: operators::Role, password: String) -> Res<operators::Operator> {
    operators::add(state.ctx()?, &name, role, &password).await
}

#[tauri::command]
pub async fn set_operator_role(state: State<'_, AppState>, id: String, role: operators::Role) -> Res<operators::Operator> {
    operators::set_role(state.ctx()?, &id, role).await
}

#[tauri::command]
pub async fn set_operator_active(state: State<'_, AppState>, id: String, active: bool) -> Res<operators::Operator> {
    operators::set_active(state.ctx()?, &id, active).await
}

#[tauri::command]
pub async fn remove_operator(state: State<'_, AppState>, id: String) -> Res<()> {
    operators::remove(state.ctx()?, &id).await
}

/// The signed-in operator's own password (their key is kept, wrapped by the new one).
#[tauri::command]
pub async fn change_password(state: State<'_, AppState>, current: String, password: String) -> Res<()> {
    operators::change_password(state.ctx()?, &current, &password).await
}

/// A super admin sets a forgotten password anew (a new key pair for that operator).
#[tauri::command]
pub async fn reset_operator_password(state: State<'_, AppState>, id: String, password: String) -> Res<operators::Operator> {
    operators::reset_password(state.ctx()?, &id, &password).await
}

/// The audit log, filtered, newest first.
#[tauri::command]
pub async fn list_audit(state: State<'_, AppState>, filter: audit::AuditFilter) -> Res<Vec<audit::AuditEntry>> {
    audit::list(state.ctx()?, &filter).await
}

/// Writes the filtered audit log to a CSV file chosen with the save dialog.
#[tauri::command]
pub async fn export_audit(state: State<'_, AppState>, filter: audit::AuditFilter, path: String) -> Res<usize> {
    audit::export_csv(state.ctx()?, &filter, std::path::Path::new(&path)).await
}
