//! The scheduler and the job runner, shared by the desktop app and `safehold schedule run`.
//!
//! Every active configuration runs on its cron line (five fields, or six with seconds first) in
//! the workstation's time zone, while the app or the headless scheduler runs. Changing a
//! configuration wakes the scheduler, which re-reads the schedules at once. A run that comes due
//! while the same configuration is still running (or queued) is recorded as skipped, with the
//! reason. At start-up, runs missed while nothing was running are caught up once per
//! configuration (not once per missed slot), unless its policy is `skip`. Jobs go through one
//! runner with a bounded number running at a time; queued and running jobs can be cancelled.
//!
//! (Built on croner — the cron parser the configurations already validate with — rather than
//! tokio-cron-scheduler, whose cron dialect differs from the five-field lines users write.)

use std::path::Path;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Local};
use serde_json::json;
use tokio::sync::{Notify, Semaphore};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::history::JobStatus;
use crate::source::CancelToken;
use crate::{configurations, cron, runs};

pub type LogSink = Arc<dyn Fn(String) + Send + Sync>;

/// Called when a job ends, with its final record and how it was started (for notifications).
pub type FinishHook = Arc<dyn Fn(&crate::history::BackupExecution, &str) + Send + Sync>;

const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

pub struct Scheduler {
    ctx: Ctx,
    wake: Notify,
    /// Configuration id → the execution running or queued for it.
    active: Mutex<HashMap<String, String>>,
    /// Execution id → its cancel token.
    tokens: Mutex<HashMap<String, CancelToken>>,
    permits: Arc<Semaphore>,
    log: LogSink,
    on_finish: Mutex<Option<FinishHook>>,
}

/// What start-up found of jobs that were running when Safehold stopped.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Recovered {
    pub backups: u64,
    pub restores: u64,
    pub migrations: u64,
    pub partial_files: u64,
    /// Multipart uploads left unfinished on object storage, aborted.
    pub uploads: usize,
}

/// Marks jobs left `running` or `pending` by a process that died as failed ("interrupted") and
/// removes the partial archives they left in local storages and the multipart uploads they left
/// unfinished on object storage. Jobs of a live process (its lease held, see [`crate::lease`])
/// and the archives it is writing are left alone. Completed backups are untouched.
pub async fn recover_interrupted(ctx: &Ctx) -> Result<Recovered> {
    recover(ctx, true).await
}

/// What [`recover_interrupted`] does but the object storages (no network): every command that
/// opens the catalog runs it, so that a killed command's rows do not stay `running`.
pub async fn recover_dead(ctx: &Ctx) -> Result<Recovered> {
    recover(ctx, false).await
}

async fn recover(ctx: &Ctx, remote: bool) -> Result<Recovered> {
    // Start-up housekeeping, before anybody signs in: Safehold acts for itself.
    let ctx = &ctx.detached(crate::context::Session::of(Some(crate::context::Acting::background()), None));
    // Each job table's own module marks its jobs that a dead process left.
    let backups = crate::backup::records::interrupt_dead(ctx).await?;
    let restores = crate::restore::records::interrupt_dead(ctx).await?;
    let migrations = crate::migrate::records::interrupt_dead(ctx).await?;
    crate::lease::sweep(&ctx.home);
    let stores = crate::storage::list(ctx).await?;
    // Multipart uploads a killed process left unfinished on object storage.
    let mut uploads = 0;
    if remote {
        for s in stores.iter().filter(|s| s.storage_type != crate::storage::StorageType::Local) {
            let Ok(dir) = crate::storage::location(ctx, s).await else { continue };
            match tokio::task::spawn_blocking(move || crate::remote::abort_orphaned_uploads(&dir)).await {
                Ok(Ok(n)) => uploads += n,
                Ok(Err(e)) => tracing::warn!("cannot check \"{}\" for unfinished uploads: {}", s.storage_name, e.message),
                Err(e) => tracing::warn!("cannot check \"{}\" for unfinished uploads: {e}", s.storage_name),
            }
        }
    }
    // Partial archives nobody is writing (a writer holds a lock on its own).
    let mut partial_files = 0;
    for s in stores {
        let Ok(dir) = crate::storage::local_dir(&s) else { continue };
        partial_files += crate::private::sweep_partials(&dir.join("archives")).len() as u64;
    }
    for location in sqlx::query_scalar::<_, String>("SELECT location FROM known_repositories").fetch_all(&ctx.pool).await.unwrap_or_default() {
        // (Only local folders keep parts; an object store is not reached at start-up for this.)
        if !crate::remote::is_remote(Path::new(&location)) {
            partial_files += crate::private::sweep_partials(&Path::new(&location).join("archives")).len() as u64;
        }
    }
    if backups + restores + migrations + partial_files + uploads as u64 > 0 {
        crate::catalog::audit(
            &ctx.pool,
            &ctx.operator_id(),
            "jobs.recover",
            "catalog",
            "success",
            Some(&format!("{backups} backups, {restores} restores and {migrations} migrations interrupted; {partial_files} partial archives removed; {uploads} unfinished uploads aborted")),
        )
        .await?;
    }
    Ok(Recovered { backups, restores, migrations, partial_files, uploads })
}

fn parse_time(s: &str) -> Option<DateTime<Local>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Local))
}

impl Scheduler {
    /// A scheduler running at most `max_jobs` jobs at a time.
    pub fn new(ctx: Ctx, max_jobs: usize, log: LogSink) -> Arc<Self> {
        Arc::new(Self {
            // The runner acts for itself; each job was allowed when it was asked for.
            ctx: ctx.detached(crate::context::Session::of(Some(crate::context::Acting::background()), None)),
            wake: Notify::new(),
            active: Mutex::default(),
            tokens: Mutex::default(),
            permits: Arc::new(Semaphore::new(max_jobs.max(1))),
            log,
            on_finish: Mutex::new(None),
        })
    }

    /// Sets what to do when a job ends (the app: a notification, the tray's status).
    pub fn set_on_finish(&self, hook: FinishHook) {
        if let Ok(mut h) = self.on_finish.lock() {
            *h = Some(hook);
        }
    }

    /// Re-reads the schedules now (after a configuration was added, edited, (de)activated or deleted).
    pub fn reschedule(&self) {
        self.wake.notify_one();
    }

    /// Cancels a queued or running job; `false` when it is not known.
    pub fn cancel(&self, execution_id: &str) -> bool {
        match self.tokens.lock().ok().and_then(|t| t.get(execution_id).cloned()) {
            Some(t) => {
                t.cancel();
                true
            }
            None => false,
        }
    }

    /// Whether a configuration has a job queued or running.
    pub fn is_busy(&self, configuration_id: &str) -> bool {
        self.active.lock().map(|a| a.contains_key(configuration_id)).unwrap_or(false)
    }

    /// Queues a scheduled backup of a configuration (`trigger`: schedule, catch_up), on behalf of
    /// the configuration's owner: refused (and audited) when the owner is disabled or may not
    /// run backups.
    pub async fn submit(self: &Arc<Self>, configuration_id: &str, trigger: &str) -> Result<String> {
        let config = configurations::get(&self.ctx, configuration_id).await?;
        let owner = match crate::context::load(&self.ctx.pool, &config.created_by).await {
            Ok(o) => o,
            Err(e) => {
                let why = format!("the scheduled backup of \"{}\" did not run: {}", config.configuration_name, e.message);
                crate::catalog::audit(&self.ctx.pool, &config.created_by, "backup.start", &config.configuration_name, "denied", Some(&why)).await?;
                return Err(Error::new(crate::error::ErrorCode::PermissionDenied, why));
            }
        };
        let by = self.ctx.detached(crate::context::Session::of(Some(owner), None));
        self.submit_as(&by, configuration_id, trigger).await
    }

    /// Queues a backup of a configuration asked for by the operator acting in `by` (`trigger`:
    /// manual, or schedule and catch_up through [`Self::submit`]). When the configuration already
    /// has one queued or running, the new run is recorded as skipped.
    pub async fn submit_as(self: &Arc<Self>, by: &Ctx, configuration_id: &str, trigger: &str) -> Result<String> {
        crate::context::require(by, crate::context::Permission::TriggerManual, "backup.start", configuration_id).await?;
        let busy = self.active.lock().ok().and_then(|a| a.get(configuration_id).cloned());
        if let Some(running) = busy {
            let config = configurations::get(&self.ctx, configuration_id).await?;
            let reason = format!("skipped: the previous run ({running}) of \"{}\" was still running", config.configuration_name);
            let id = crate::backup::records::insert_skipped(&self.ctx, configuration_id, &format!("{:?}", config.backup_type).to_lowercase(), &reason, json!({ "skipped": true, "trigger": trigger, "running": running })).await?;
            (self.log)(format!("{} \"{}\": {reason}", trigger, config.configuration_name));
            return Ok(id);
        }
        let id = runs::enqueue(by, configuration_id).await?;
        let _ = crate::backup::records::set_trigger(&self.ctx, &id, trigger).await;
        let token = CancelToken::new();
        if let Ok(mut a) = self.active.lock() {
            a.insert(configuration_id.to_string(), id.clone());
        }
        if let Ok(mut t) = self.tokens.lock() {
            t.insert(id.clone(), token.clone());
        }
        let me = Arc::clone(self);
        let (exec, config) = (id.clone(), configuration_id.to_string());
        let trigger = trigger.to_string();
        tokio::spawn(async move {
            let permit = me.permits.clone().acquire_owned().await;
            let name = configurations::get(&me.ctx, &config).await.map(|c| c.configuration_name).unwrap_or_default();
            if token.is_cancelled() {
                let _ = crate::backup::records::cancel_queued(&me.ctx, &exec).await;
                (me.log)(format!("{trigger} backup of \"{name}\": cancelled while queued"));
            } else {
                match runs::run(&me.ctx, &exec, &token).await {
                    Ok(done) => {
                        let hook = me.on_finish.lock().ok().and_then(|h| h.clone());
                        if let Some(hook) = hook {
                            hook(&done, &trigger);
                        }
                        (me.log)(match done.status {
                        JobStatus::Completed => format!(
                            "{trigger} backup of \"{name}\": completed, {} rows, {} bytes — {}",
                            done.record_count.unwrap_or(0),
                            done.compressed_size.unwrap_or(0),
                            done.file_path.unwrap_or_default()
                        ),
                        other => format!("{trigger} backup of \"{name}\": {other:?} — {}", done.error_message.unwrap_or_default()).to_lowercase(),
                        })
                    }
                    Err(e) => (me.log)(format!("{trigger} backup of \"{name}\" could not be recorded: {}", e.message)),
                }
            }
            drop(permit);
            if let Ok(mut a) = me.active.lock() {
                if a.get(&config) == Some(&exec) {
                    a.remove(&config);
                }
            }
            if let Ok(mut t) = me.tokens.lock() {
                t.remove(&exec);
            }
        });
        Ok(id)
    }

    /// Waits for a free slot of the job runner (for other heavy work: a test restore, retention
    /// on demand); the slot is held until the returned permit is dropped.
    pub async fn slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.permits.clone().acquire_owned().await.ok()
    }

    /// Runs heavy work asked for outside the queue (a test restore, retention on demand, a deep
    /// check, a validation) in a slot of the runner: it waits for one, and [`Scheduler::cancel`]
    /// with `key` stops it while it waits (nothing is done) or runs (the work checks the token).
    /// One registry of cancel tokens for every job, queued or not.
    pub async fn run_in_slot<T, F, Fut>(&self, key: &str, work: F) -> Result<T>
    where
        F: FnOnce(CancelToken) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.run_in_slot_as(&[key], work).await
    }

    /// [`Scheduler::run_in_slot`] that [`Scheduler::cancel`] stops by any of `keys` (a restore to
    /// a second: by its configuration, and by its restore operation's id).
    pub async fn run_in_slot_as<T, F, Fut>(&self, keys: &[&str], work: F) -> Result<T>
    where
        F: FnOnce(CancelToken) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let token = CancelToken::new();
        if let Ok(mut t) = self.tokens.lock() {
            for key in keys {
                t.insert(key.to_string(), token.clone());
            }
        }
        let out = async {
            let _permit = self.slot().await;
            token.check().map_err(|_| Error::new(crate::ErrorCode::Cancelled, "cancelled while waiting for a free slot; nothing was done"))?;
            work(token.clone()).await
        }
        .await;
        if let Ok(mut t) = self.tokens.lock() {
            for key in keys {
                t.remove(*key);
            }
        }
        out
    }

    /// Queues a recorded restore (see `restore::records::start`) behind the running jobs; it runs when a
    /// slot is free and can be cancelled while queued or running.
    pub fn submit_restore(self: &Arc<Self>, restore_id: &str, req: crate::restore::RestoreRequest, keys: crate::keys::unlock::KeySources) -> CancelToken {
        self.submit_job(restore_id, "restore", move |me, id, cancel| {
            Box::pin(async move {
                if cancel.is_cancelled() {
                    let _ = crate::restore::records::cancel_queued(&me.ctx, &id).await;
                    return "cancelled while queued".to_string();
                }
                match crate::restore::records::run(&me.ctx, &id, &req, &keys, None, &cancel, None).await {
                    Ok(out) => format!("completed, {} rows into {}", out.rows, out.target),
                    Err(e) => e.message,
                }
            })
        })
    }

    /// Queues a recorded migration (see `migrate::records::start`) like a restore.
    pub fn submit_migration(self: &Arc<Self>, migration_id: &str, spec: crate::migrate::MigrationSpec) -> CancelToken {
        self.submit_job(migration_id, "migration", move |me, id, cancel| {
            Box::pin(async move {
                if cancel.is_cancelled() {
                    let _ = crate::migrate::records::cancel_queued(&me.ctx, &id).await;
                    return "cancelled while queued".to_string();
                }
                match crate::migrate::records::run(&me.ctx, &id, &spec, None, &cancel).await {
                    Ok(out) => format!("completed, {} rows written", out.rows_written),
                    Err(e) => e.message,
                }
            })
        })
    }

    /// Runs `job` (given the scheduler, the job's id and its cancel token; returning the line
    /// logged) when a slot of the runner is free; cancellable from now on.
    fn submit_job<F>(self: &Arc<Self>, id: &str, label: &'static str, job: F) -> CancelToken
    where
        F: FnOnce(Arc<Self>, String, CancelToken) -> std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>> + Send + 'static,
    {
        let token = CancelToken::new();
        if let Ok(mut t) = self.tokens.lock() {
            t.insert(id.to_string(), token.clone());
        }
        let me = Arc::clone(self);
        let (id, t2) = (id.to_string(), token.clone());
        tokio::spawn(async move {
            let permit = me.permits.clone().acquire_owned().await;
            let line = job(Arc::clone(&me), id.clone(), t2).await;
            (me.log)(format!("{label} {id}: {line}"));
            drop(permit);
            if let Ok(mut t) = me.tokens.lock() {
                t.remove(&id);
            }
        });
        token
    }

    /// Runs missed while nothing was running: one catch-up run per configuration whose schedule
    /// had a slot between its last run (or its creation) and now, unless its policy is `skip`.
    pub async fn catch_up(self: &Arc<Self>) -> Result<Vec<String>> {
        let now = Local::now();
        let mut started = Vec::new();
        let policies: HashMap<String, String> = sqlx::query_as::<_, (String, Option<String>)>("SELECT id, missed_runs FROM backup_configurations")
            .fetch_all(&self.ctx.pool)
            .await
            .map_err(|e| Error::catalog("read the missed-run policies", &e))?
            .into_iter()
            .map(|(id, p)| (id, p.unwrap_or_else(|| "run_once".into())))
            .collect();
        for c in configurations::list(&self.ctx).await?.into_iter().filter(|c| c.is_active) {
            let Ok(cron) = cron::parse(&c.schedule_cron) else { continue };
            let last: Option<String> = sqlx::query_scalar("SELECT max(started_at) FROM backup_executions WHERE configuration_id = ?")
                .bind(&c.id)
                .fetch_one(&self.ctx.pool)
                .await
                .map_err(|e| Error::catalog("read the last run", &e))?;
            let Some(since) = last.as_deref().and_then(parse_time).or_else(|| parse_time(&c.created_at)) else { continue };
            let tz = cron::parse_time_zone(c.time_zone.as_deref()).ok().flatten();
            let missed = cron::next_after(&cron, tz, since).is_some_and(|t| t <= now);
            if !missed {
                continue;
            }
            if policies.get(&c.id).map(String::as_str) == Some("skip") {
                (self.log)(format!("\"{}\" missed a run while Safehold was not running; its policy is to skip it", c.configuration_name));
                continue;
            }
            (self.log)(format!("\"{}\" missed a run while Safehold was not running: catching up once", c.configuration_name));
            match self.submit(&c.id, "catch_up").await {
                Ok(id) => started.push(id),
                Err(e) => (self.log)(format!("\"{}\" could not catch up: {}", c.configuration_name, e.message)),
            }
        }
        Ok(started)
    }

    /// The scheduler's loop: catch-up once, then every due configuration in time, forever.
    pub async fn run(self: Arc<Self>) {
        if let Err(e) = self.catch_up().await {
            (self.log)(format!("catching up missed runs failed: {}", e.message));
        }
        let mut since = Local::now();
        loop {
            let due: Vec<(DateTime<Local>, String)> = match configurations::list(&self.ctx).await {
                Ok(list) => list
                    .into_iter()
                    .filter(|c| c.is_active)
                    .filter_map(|c| {
                        let tz = cron::parse_time_zone(c.time_zone.as_deref()).ok()?;
                        Some((cron::next_after(&cron::parse(&c.schedule_cron).ok()?, tz, since)?, c.id))
                    })
                    .collect(),
                Err(e) => {
                    (self.log)(format!("cannot read the configurations: {}", e.message));
                    Vec::new()
                }
            };
            let next = due.iter().map(|(t, _)| *t).min();
            // At most a minute: changes made by another process (the CLI) are seen within one.
            let wait = next.map(|t| (t - Local::now()).to_std().unwrap_or_default()).unwrap_or(MAX_WAIT).min(MAX_WAIT);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {
                    since = Local::now();
                    continue;
                }
            }
            let now = Local::now();
            for (t, id) in &due {
                if *t <= now {
                    if let Err(e) = self.submit(id, "schedule").await {
                        (self.log)(format!("a scheduled backup could not start: {}", e.message));
                    }
                }
            }
            since = now;
        }
    }
}

/// The app's "notify when a backup succeeds" setting (off by default; failures always notify).
pub async fn notify_on_success(ctx: &Ctx) -> Result<bool> {
    let v = crate::catalog::setting(&ctx.pool, "notify_on_success").await?;
    Ok(v.as_deref() == Some("1"))
}

pub async fn set_notify_on_success(ctx: &Ctx, on: bool) -> Result<()> {
    crate::context::require(ctx, crate::context::Permission::ManageAll, "settings.notify_on_success", "notifications").await?;
    crate::catalog::set_setting(&ctx.pool, "notify_on_success", if on { "1" } else { "0" }).await
}

/// Whether the last scheduled backup of every active configuration succeeded: the names of those
/// whose last scheduled (or catch-up) run failed, and how many were checked.
pub async fn last_scheduled_failures(ctx: &Ctx) -> Result<(Vec<String>, usize)> {
    crate::context::require(ctx, crate::context::Permission::ViewStatus, "schedule.status", "schedules").await?;
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT c.configuration_name, (SELECT e.status FROM backup_executions e WHERE e.configuration_id = c.id \
           AND json_extract(e.metadata, '$.trigger') IN ('schedule', 'catch_up') AND coalesce(json_extract(e.metadata, '$.skipped'), 0) = 0 \
           AND e.status IN ('completed', 'failed', 'cancelled') ORDER BY e.started_at DESC LIMIT 1) \
         FROM backup_configurations c WHERE coalesce(c.is_active, 1) = 1 ORDER BY c.configuration_name",
    )
    .fetch_all(&ctx.pool)
    .await
    .map_err(|e| Error::catalog("read the last scheduled backups", &e))?;
    let checked = rows.iter().filter(|(_, s)| s.is_some()).count();
    Ok((rows.into_iter().filter(|(_, s)| s.as_deref() == Some("failed")).map(|(n, _)| n).collect(), checked))
}

/// A configuration and its next run, for `safehold schedule list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Scheduled {
    pub configuration_name: String,
    pub schedule_cron: String,
    pub description: String,
    pub is_active: bool,
    pub next_run: Option<String>,
    pub time_zone: String,
}

pub async fn list(ctx: &Ctx) -> Result<Vec<Scheduled>> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "schedule.list", "schedules").await?;
    let tz = cron::time_zone();
    Ok(configurations::list(ctx)
        .await?
        .into_iter()
        .map(|c| Scheduled {
            next_run: next_run(&c),
            time_zone: c.time_zone.clone().unwrap_or_else(|| tz.clone()),
            configuration_name: c.configuration_name,
            description: c.schedule_description,
            schedule_cron: c.schedule_cron,
            is_active: c.is_active,
        })
        .collect())
}

/// When an active configuration runs next (RFC 3339, in its time zone).
fn next_run(c: &configurations::BackupConfiguration) -> Option<String> {
    if !c.is_active {
        return None;
    }
    let tz = cron::parse_time_zone(c.time_zone.as_deref()).ok()?;
    let next = cron::next_after(&cron::parse(&c.schedule_cron).ok()?, tz, Local::now())?;
    Some(match tz {
        Some(tz) => next.with_timezone(&tz).to_rfc3339(),
        None => next.to_rfc3339(),
    })
}

/// A configuration's schedule at a glance: when it runs next and how its last backup went.
#[derive(Debug, Clone, serde::Serialize, ts_rs::TS)]
pub struct ConfigurationStatus {
    pub configuration_id: String,
    pub next_run: Option<String>,
    pub last_status: Option<JobStatus>,
    pub last_started_at: Option<String>,
    pub last_error: Option<String>,
}

/// Every configuration's next run and last backup (the Configurations tab's list).
pub async fn overview(ctx: &Ctx) -> Result<Vec<ConfigurationStatus>> {
    let configs = configurations::list(ctx).await?;
    let last: Vec<(String, JobStatus, String, Option<String>)> = sqlx::query_as(
        "SELECT e.configuration_id, e.status, coalesce(e.started_at, ''), e.error_message FROM backup_executions e \
         WHERE e.configuration_id IS NOT NULL AND coalesce(json_extract(e.metadata, '$.skipped'), 0) = 0 \
           AND e.started_at = (SELECT max(x.started_at) FROM backup_executions x WHERE x.configuration_id = e.configuration_id AND coalesce(json_extract(x.metadata, '$.skipped'), 0) = 0)",
    )
    .fetch_all(&ctx.pool)
    .await
    .map_err(|e| Error::catalog("read the last backups", &e))?;
    let last: HashMap<String, (JobStatus, String, Option<String>)> = last.into_iter().map(|(id, s, at, err)| (id, (s, at, err))).collect();
    Ok(configs
        .iter()
        .map(|c| {
            let l = last.get(&c.id);
            ConfigurationStatus {
                configuration_id: c.id.clone(),
                next_run: next_run(c),
                last_status: l.map(|l| l.0),
                last_started_at: l.map(|l| l.1.clone()),
                last_error: l.and_then(|l| l.2.clone()),
            }
        })
        .collect())
}
