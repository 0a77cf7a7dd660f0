//! Retention: a configuration's `retention_days`, applied after each of its backups and on
//! demand, with a preview first. It never deletes a backup that a kept backup's chain depends on
//! (whichever configuration or command took the kept one), nor the configuration's last
//! completed full backup. Deletions go children first, so an interruption never leaves a backup
//! whose parent is gone; each is recorded on the execution (`deleted_at`) and in the audit log.
//! Safety backups — taken before restores, of no configuration — have a retention of their own
//! (`safety_backup_retention_days`, 14 days unless set), applied after every backup run the same
//! way and previewed the same way ([`preview_safety`]).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use ts_rs::TS;

use crate::archive::ArchiveReader;
use crate::catalog::audit;
use crate::configurations;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::history;
use crate::source::CancelToken;

#[derive(Debug, Clone, Copy, Serialize, TS, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RetentionAction {
    Keep,
    Delete,
}

/// One backup of the configuration and what retention does with it, and why.
#[derive(Debug, Clone, Serialize, TS)]
pub struct RetentionItem {
    pub execution_id: String,
    pub archive_id: Option<String>,
    pub backup_type: String,
    pub started_at: String,
    pub file_path: Option<String>,
    pub bytes: i64,
    pub action: RetentionAction,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, TS)]
pub struct RetentionPlan {
    pub configuration_id: String,
    pub configuration_name: String,
    pub retention_days: i64,
    /// Backups taken before this are expired.
    pub cutoff: String,
    /// Newest first.
    pub items: Vec<RetentionItem>,
    pub delete_count: u64,
    pub bytes_freed: i64,
}

fn header_of(path: &Path) -> Option<crate::archive::ArchiveHeader> {
    ArchiveReader::open(path).ok().map(|r| r.header)
}

/// Every archive's parent in the repositories holding `paths` (archive id → parent id), and
/// archive id → path.
fn repository_chains(paths: &[PathBuf]) -> (HashMap<String, Option<String>>, HashMap<String, PathBuf>) {
    let mut parents = HashMap::new();
    let mut files = HashMap::new();
    let dirs: BTreeSet<PathBuf> = paths.iter().filter_map(|p| p.parent().map(Path::to_path_buf)).collect();
    for dir in dirs {
        for p in crate::repository::archives_in(&dir).unwrap_or_default() {
            if let Some(h) = header_of(&p) {
                parents.insert(h.archive_id.clone(), h.parent_id.clone());
                files.insert(h.archive_id, p);
            }
        }
    }
    (parents, files)
}

/// What retention would do to a configuration's backups now.
pub async fn preview(ctx: &Ctx, configuration_id: &str) -> Result<RetentionPlan> {
    preview_at(ctx, configuration_id, Utc::now()).await
}

pub async fn preview_at(ctx: &Ctx, configuration_id: &str, at: DateTime<Utc>) -> Result<RetentionPlan> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "retention.preview", configuration_id).await?;
    let config = configurations::get(ctx, configuration_id).await?;
    let execs = history::kept_executions_of(ctx, configuration_id).await?;
    let mut plan = plan_of(&config.id, &config.configuration_name, config.retention_days, &execs, at, true);
    // The base continuous protection's changes continue from stays while it is the base (its
    // segments need it); an earlier base goes with its segments when it expires.
    let base: Option<String> = sqlx::query_scalar("SELECT base_execution_id FROM protections WHERE configuration_id = ?")
        .bind(&config.id)
        .fetch_optional(&ctx.pool)
        .await
        .map_err(|e| crate::error::Error::catalog("read the continuous protection", &e))?
        .flatten();
    if let Some(base) = base {
        for item in plan.items.iter_mut().filter(|i| i.execution_id == base && i.action == RetentionAction::Delete) {
            item.action = RetentionAction::Keep;
            item.reason = "expired, but it is the base of continuous protection (its change segments continue from it)".into();
            plan.delete_count -= 1;
            plan.bytes_freed -= item.bytes;
        }
    }
    Ok(plan)
}

/// The configuration id a safety backups' plan carries (they have no configuration).
pub const SAFETY: &str = "safety";
const SAFETY_SETTING: &str = "safety_backup_retention_days";
/// How long safety backups are kept unless `safety_backup_retention_days` says otherwise.
pub const DEFAULT_SAFETY_DAYS: i64 = 14;

/// How many days safety backups are kept (settings: `safety_backup_retention_days`).
pub async fn safety_days(pool: &sqlx::SqlitePool) -> Result<i64> {
    let v = crate::catalog::setting(pool, SAFETY_SETTING).await?;
    Ok(v.and_then(|v| v.trim().parse().ok()).filter(|d: &i64| *d >= 1).unwrap_or(DEFAULT_SAFETY_DAYS))
}

/// Sets how many days safety backups are kept (super admins; at least one).
pub async fn set_safety_days(ctx: &Ctx, days: i64) -> Result<()> {
    let who = crate::context::require(ctx, crate::context::Permission::ManageAll, "settings.safety_retention", &days.to_string()).await?;
    if days < 1 {
        return Err(Error::validation("safety backups are kept at least one day"));
    }
    crate::catalog::set_setting(&ctx.pool, SAFETY_SETTING, &days.to_string()).await?;
    audit(&ctx.pool, &who.id, "settings.safety_retention", SAFETY_SETTING, "success", Some(&format!("{days} days"))).await
}

/// What the safety backups' retention would delete now, and why.
pub async fn preview_safety(ctx: &Ctx) -> Result<RetentionPlan> {
    preview_safety_at(ctx, Utc::now()).await
}

pub async fn preview_safety_at(ctx: &Ctx, at: DateTime<Utc>) -> Result<RetentionPlan> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "retention.preview", SAFETY).await?;
    let days = safety_days(&ctx.pool).await?;
    let execs = history::kept_safety_executions(ctx).await?;
    Ok(plan_of(SAFETY, "Safety backups", days, &execs, at, false))
}

/// Applies the safety backups' retention now (a super admin), as [`preview_safety`] shows it.
pub async fn apply_safety(ctx: &Ctx) -> Result<RetentionPlan> {
    apply_safety_at(ctx, Utc::now()).await
}

/// [`apply_safety`] as of `at`.
pub async fn apply_safety_at(ctx: &Ctx, at: DateTime<Utc>) -> Result<RetentionPlan> {
    crate::context::require(ctx, crate::context::Permission::ManageAll, "retention.apply", SAFETY).await?;
    apply_safety_policy(ctx, at).await
}

/// Applies the safety backups' retention (after each backup run, and on demand).
pub(crate) async fn apply_safety_policy(ctx: &Ctx, at: DateTime<Utc>) -> Result<RetentionPlan> {
    let plan = preview_safety_at(ctx, at).await?;
    delete_planned(ctx, plan, &CancelToken::new()).await
}

/// The plan for `execs` (one configuration's kept backups, or the safety backups): expired ones
/// deleted unless a kept backup builds on them or — with `keep_last_full` — it is the last full.
fn plan_of(configuration_id: &str, name: &str, retention_days: i64, execs: &[history::BackupExecution], at: DateTime<Utc>, keep_last_full: bool) -> RetentionPlan {
    let cutoff = at - Duration::days(retention_days);
    let paths: Vec<PathBuf> = execs.iter().filter_map(|e| e.file_path.as_ref().map(PathBuf::from)).collect();
    let (parents, _) = repository_chains(&paths);
    // archive id of each execution (from its file's plaintext header).
    let archive_of: HashMap<String, String> =
        execs.iter().filter_map(|e| Some((e.id.clone(), header_of(Path::new(e.file_path.as_ref()?))?.archive_id))).collect();
    let taken = |s: &str| DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).ok();
    let last_full = execs
        .iter()
        .filter(|e| keep_last_full && e.backup_type == "full" && archive_of.contains_key(&e.id))
        .max_by(|a, b| a.started_at.cmp(&b.started_at))
        .map(|e| e.id.clone());

    // Candidates: expired backups, except the last full.
    let mut deletable: BTreeSet<String> = execs
        .iter()
        .filter(|e| archive_of.contains_key(&e.id) && taken(&e.started_at).is_some_and(|t| t < cutoff) && Some(&e.id) != last_full.as_ref())
        .map(|e| archive_of[&e.id].clone())
        .collect();
    // Anything kept protects its whole chain; repeat until nothing changes.
    let mut needed_by: HashMap<String, String> = HashMap::new();
    loop {
        let mut changed = false;
        for id in parents.keys() {
            if deletable.contains(id) {
                continue;
            }
            let mut cur = parents.get(id).cloned().flatten();
            while let Some(p) = cur {
                if deletable.remove(&p) {
                    needed_by.insert(p.clone(), id.clone());
                    changed = true;
                }
                cur = parents.get(&p).cloned().flatten();
            }
        }
        if !changed {
            break;
        }
    }
    let mut items = Vec::new();
    for e in execs {
        let archive = archive_of.get(&e.id).cloned();
        let expired = taken(&e.started_at).is_some_and(|t| t < cutoff);
        let (action, reason) = match &archive {
            None => (RetentionAction::Keep, "its archive is missing or unreadable: nothing to delete (verify the storage)".to_string()),
            Some(a) if deletable.contains(a) => (RetentionAction::Delete, format!("older than {retention_days} days")),
            Some(_) if Some(&e.id) == last_full.as_ref() && expired => (RetentionAction::Keep, "the last completed full backup is always kept".to_string()),
            Some(a) if expired => (
                RetentionAction::Keep,
                format!("expired, but backup {} builds on it", needed_by.get(a).map(|s| &s[..8.min(s.len())]).unwrap_or("?")),
            ),
            Some(_) => (RetentionAction::Keep, format!("within {retention_days} days")),
        };
        items.push(RetentionItem {
            execution_id: e.id.clone(),
            archive_id: archive,
            backup_type: e.backup_type.clone(),
            started_at: e.started_at.clone(),
            file_path: e.file_path.clone(),
            bytes: e.compressed_size.unwrap_or(0),
            action,
            reason,
        });
    }
    let deleting: Vec<&RetentionItem> = items.iter().filter(|i| i.action == RetentionAction::Delete).collect();
    RetentionPlan {
        configuration_id: configuration_id.to_string(),
        configuration_name: name.to_string(),
        retention_days,
        cutoff: cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        delete_count: deleting.len() as u64,
        bytes_freed: deleting.iter().map(|i| i.bytes).sum(),
        items,
    }
}

/// Applies retention now: deletes what the preview says, newest first, recording each deletion.
pub async fn apply(ctx: &Ctx, configuration_id: &str) -> Result<RetentionPlan> {
    apply_at(ctx, configuration_id, Utc::now()).await
}

pub async fn apply_at(ctx: &Ctx, configuration_id: &str, at: DateTime<Utc>) -> Result<RetentionPlan> {
    apply_cancellable_at(ctx, configuration_id, at, &CancelToken::new()).await
}

/// [`apply`], stopping at `cancel` (see [`apply_cancellable_at`]).
pub async fn apply_cancellable(ctx: &Ctx, configuration_id: &str, cancel: &CancelToken) -> Result<RetentionPlan> {
    apply_cancellable_at(ctx, configuration_id, Utc::now(), cancel).await
}

/// Applies retention, stopping at `cancel` between two deletions: what was deleted stays deleted
/// (recorded and audited), the rest is kept — children go first, so every kept chain still
/// restores.
pub async fn apply_cancellable_at(ctx: &Ctx, configuration_id: &str, at: DateTime<Utc>, cancel: &CancelToken) -> Result<RetentionPlan> {
    crate::context::require(ctx, crate::context::Permission::ManageAll, "retention.apply", configuration_id).await?;
    apply_policy_until(ctx, configuration_id, at, cancel).await
}

/// Applies the configuration's retention policy (set by a super admin) after one of its backups,
/// whoever ran the backup.
pub(crate) async fn apply_policy(ctx: &Ctx, configuration_id: &str, at: DateTime<Utc>) -> Result<RetentionPlan> {
    apply_policy_until(ctx, configuration_id, at, &CancelToken::new()).await
}

async fn apply_policy_until(ctx: &Ctx, configuration_id: &str, at: DateTime<Utc>, cancel: &CancelToken) -> Result<RetentionPlan> {
    let plan = preview_at(ctx, configuration_id, at).await?;
    delete_planned(ctx, plan, cancel).await
}

/// Removes the change segments (continuous protection, `changes/` beside the archive, in a folder
/// or a cloud storage) whose base is `archive_id`.
fn remove_segments_of(archive: &Path, archive_id: &str) {
    // <repository>/archives/<archive> → <repository>/changes
    let Some(dir) = archive.parent().and_then(Path::parent).map(|d| d.join("changes")) else { return };
    let Ok(listed) = crate::storage::backend::listed_in(&dir) else { return };
    for (p, _) in listed {
        if p.extension().is_some_and(|x| x == crate::repository::ARCHIVE_EXT) && header_of(&p).is_some_and(|h| h.parent_id.as_deref() == Some(archive_id)) {
            if let Err(e) = crate::storage::backend::at(&p).and_then(|b| b.delete()) {
                tracing::warn!("retention could not delete the change segment {}: {}", p.display(), e.message);
            }
        }
    }
}

/// Deletes what `plan` says, newest first (children before what they build on), recording and
/// auditing each; stops at `cancel` between two deletions.
async fn delete_planned(ctx: &Ctx, plan: RetentionPlan, cancel: &CancelToken) -> Result<RetentionPlan> {
    // Items are newest first: children go before the backups they build on.
    for (deleted, item) in plan.items.iter().filter(|i| i.action == RetentionAction::Delete).enumerate() {
        if cancel.is_cancelled() {
            return Err(Error::new(
                crate::ErrorCode::Cancelled,
                format!("retention cancelled: {deleted} of {} backups were deleted before the cancel; the others are kept", plan.delete_count),
            ));
        }
        let Some(path) = &item.file_path else { continue };
        let p = PathBuf::from(path);
        let removed = tokio::task::spawn_blocking(move || crate::storage::backend::at(&p)?.delete()).await.map_err(|e| Error::new(crate::ErrorCode::Internal, e.to_string()).caused_by(&e))?;
        match removed {
            Ok(()) => {}
            Err(e) => {
                let err = Error::new(e.code, format!("retention could not delete {path}: {}", e.message));
                audit(&ctx.pool, &ctx.operator_id(), "retention.delete", path, "failure", Some(&err.message)).await?;
                return Err(err);
            }
        }
        // A server backup's databases go with its set (the set went first: a database's archive
        // left behind by a failure here is an ordinary backup, restorable alone).
        if let Ok(exec) = crate::history::execution(ctx, &item.execution_id).await {
            for member in exec.server_members() {
                let p = PathBuf::from(&member);
                let gone = tokio::task::spawn_blocking(move || crate::storage::backend::at(&p)?.delete()).await.map_err(|e| Error::new(crate::ErrorCode::Internal, e.to_string()).caused_by(&e))?;
                if let Err(e) = gone {
                    audit(&ctx.pool, &ctx.operator_id(), "retention.delete", &member, "failure", Some(&format!("a database of the server backup {path}: {}", e.message))).await?;
                }
            }
        }
        // The change segments that continue from it go too (they restore nothing without it).
        if let Some(archive_id) = &item.archive_id {
            remove_segments_of(Path::new(path), archive_id);
        }
        // Its second copy goes too (the copy's chain is the same as the first's).
        for copy in crate::copies::of(ctx, &item.execution_id).await?.into_iter().filter(|c| c.status == "completed") {
            if let Some(p) = copy.file_path {
                let p = PathBuf::from(p);
                let _ = tokio::task::spawn_blocking(move || crate::storage::backend::at(&p)?.delete()).await;
            }
        }
        crate::backup::records::mark_deleted(ctx, &item.execution_id).await?;
        audit(
            &ctx.pool,
            &ctx.operator_id(),
            "retention.delete",
            path,
            "success",
            Some(&format!("{} backup of \"{}\" taken {}: {}", item.backup_type, plan.configuration_name, item.started_at, item.reason)),
        )
        .await?;
    }
    Ok(plan)
}
