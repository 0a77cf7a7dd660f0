//! Who acts in a context, and what they may do: the session (the operator acting, their key,
//! the idle clock), the spec's roles and permissions, and [`require`], the check every engine
//! call makes (a refusal audited). Managing operators — adding them, signing in, passwords — is
//! [`crate::auth::operators`]'s.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use ts_rs::TS;

use super::Ctx;
use crate::archive::keys::SecretKey;
use crate::catalog::{audit, LOCAL_OPERATOR_ID};
use crate::error::{Error, ErrorCode, Result};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, TS, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    SuperAdmin,
    PlatformOperator,
    ReadOnlyAdmin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SuperAdmin => "super_admin",
            Self::PlatformOperator => "platform_operator",
            Self::ReadOnlyAdmin => "read_only_admin",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().replace('-', "_").as_str() {
            "super_admin" => Ok(Self::SuperAdmin),
            "platform_operator" => Ok(Self::PlatformOperator),
            "read_only_admin" => Ok(Self::ReadOnlyAdmin),
            other => Err(Error::validation(format!("unknown role \"{other}\": use super_admin, platform_operator or read_only_admin"))),
        }
    }
}

/// The spec's permissions, and what each engine function needs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, TS, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Configurations, connections, retention, operators, settings, the audit log's export.
    #[serde(rename = "backup:manage_all")]
    ManageAll,
    /// Run Now, New Backup, scheduled backups (as the configuration's owner), quick verify,
    /// copies to the second storage.
    #[serde(rename = "backup:trigger_manual")]
    TriggerManual,
    /// Restores, deep verify and verify-by-restoring, migrations (copy, merge, export, import),
    /// the recovery kit's export, tenant lists of a platform: everything that reads backed-up or
    /// tenant data, or writes into a database.
    #[serde(rename = "backup:restore_data")]
    RestoreData,
    /// Adding, checking and removing storage locations.
    #[serde(rename = "backup:manage_storage")]
    ManageStorage,
    /// The state of backups and jobs (the dashboard's status).
    #[serde(rename = "backup:view_status")]
    ViewStatus,
    /// The history of backups, restores and migrations, configurations, storage, the audit log.
    #[serde(rename = "backup:view_history")]
    ViewHistory,
}

impl Permission {
    pub const ALL: [Permission; 6] = [Self::ManageAll, Self::TriggerManual, Self::RestoreData, Self::ManageStorage, Self::ViewStatus, Self::ViewHistory];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ManageAll => "backup:manage_all",
            Self::TriggerManual => "backup:trigger_manual",
            Self::RestoreData => "backup:restore_data",
            Self::ManageStorage => "backup:manage_storage",
            Self::ViewStatus => "backup:view_status",
            Self::ViewHistory => "backup:view_history",
        }
    }
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
    /// Whether holding `held` grants this permission: `manage_all` grants every other, and
    /// seeing the status or the history lets one see what the dashboard lists.
    fn granted_by(self, held: &BTreeSet<Permission>) -> bool {
        held.contains(&self)
            || held.contains(&Self::ManageAll)
            || (matches!(self, Self::ViewStatus | Self::ViewHistory) && (held.contains(&Self::ViewStatus) || held.contains(&Self::ViewHistory)))
    }
}

/// The operator acting, with the permissions of their role.
#[derive(Debug, Clone, Serialize, TS)]
pub struct Acting {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub permissions: Vec<Permission>,
    /// Safehold's own background work, not an operator of the catalog.
    #[serde(skip)]
    #[ts(skip)]
    pub background: bool,
}

impl Acting {
    /// Safehold's own background work (the job runner, storage health checks): it reads the
    /// catalog, checks storage and carries out jobs that operators asked for and were allowed.
    pub fn background() -> Self {
        Self {
            id: LOCAL_OPERATOR_ID.into(),
            name: "Safehold (background)".into(),
            role: Role::PlatformOperator,
            permissions: vec![Permission::TriggerManual, Permission::ManageStorage, Permission::ViewStatus, Permission::ViewHistory],
            background: true,
        }
    }
    pub fn may(&self, p: Permission) -> bool {
        p.granted_by(&self.permissions.iter().copied().collect())
    }
}

/// Who is acting in a context.
#[derive(Debug, Clone)]
pub struct Session {
    pub acting: Option<Acting>,
    pub(crate) last_active: Instant,
    /// Ends the session after this long without a call (`None`: never, e.g. the scheduler, the CLI).
    pub idle: Option<Duration>,
    /// Why the last session ended (shown at the next call).
    pub(crate) ended: Option<String>,
    /// A signed-in super admin's own private key (opened by their password at sign-in): opens
    /// the repositories sealed to them ([`crate::keys::custody`]). Gone with the session.
    pub private: Option<SecretKey>,
}

impl Session {
    pub fn of(acting: Option<Acting>, idle: Option<Duration>) -> Self {
        Self { acting, last_active: Instant::now(), idle, ended: None, private: None }
    }

    /// Ends the session (sign-out, idle expiry): the acting operator and their key are dropped.
    pub(crate) fn end(&mut self) -> Option<Acting> {
        self.private = None;
        self.acting.take()
    }

    /// The session a freshly opened catalog starts with: the local administrator until the
    /// first super admin exists, nobody afterwards.
    pub async fn initial(pool: &SqlitePool) -> Result<Self> {
        if set_up(pool).await? {
            Ok(Self::of(None, None))
        } else {
            Ok(Self::of(Some(load(pool, LOCAL_OPERATOR_ID).await?), None))
        }
    }
}

/// Whether the first super admin has been created (some operator has a password).
pub async fn set_up(pool: &SqlitePool) -> Result<bool> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM operators WHERE password_hash IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(|e| Error::catalog("read the operators", &e))?;
    Ok(n > 0)
}

async fn permissions_of(pool: &SqlitePool, role: Role) -> Result<Vec<Permission>> {
    let names: Vec<String> = sqlx::query_scalar("SELECT permission FROM role_permissions WHERE role_name = ? ORDER BY permission")
        .bind(role.as_str())
        .fetch_all(pool)
        .await
        .map_err(|e| Error::catalog("read the role's permissions", &e))?;
    Ok(names.iter().filter_map(|n| Permission::parse(n)).collect())
}

/// Loads an active operator with their permissions.
pub async fn load(pool: &SqlitePool, id: &str) -> Result<Acting> {
    let row: Option<(String, String, String, bool)> = sqlx::query_as("SELECT id, name, role, is_active FROM operators WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(|e| Error::catalog("read the operator", &e))?;
    let (id, name, role, active) = row.ok_or_else(|| Error::not_found(format!("no operator has the id {id}")))?;
    if !active {
        return Err(Error::new(ErrorCode::PermissionDenied, format!("the operator \"{name}\" is disabled")));
    }
    let role = Role::parse(&role)?;
    Ok(Acting { permissions: permissions_of(pool, role).await?, id, name, role, background: false })
}

/// Checks that the acting operator holds `permission` for `action` on `target`; a refusal is
/// audited and changes nothing. Returns who acts.
pub async fn require(ctx: &Ctx, permission: Permission, action: &str, target: &str) -> Result<Acting> {
    let acting = current(ctx)?;
    // The catalog decides, not the session's copy: a disabled, removed or re-roled operator's
    // open sessions follow at once.
    let acting = if acting.background {
        acting
    } else {
        match load(&ctx.pool, &acting.id).await {
            Ok(fresh) => fresh,
            Err(e) => {
                end_session(ctx, format!("the session of {} ended: {}", acting.name, e.message));
                return Err(Error::new(ErrorCode::PermissionDenied, format!("{}; sign in again", e.message)));
            }
        }
    };
    let held: BTreeSet<Permission> = acting.permissions.iter().copied().collect();
    let is_view = matches!(permission, Permission::ViewStatus | Permission::ViewHistory);
    if !is_view {
        // An action is activity; the dashboard's own polling for lists is not.
        touch(ctx);
    }
    if permission.granted_by(&held) {
        return Ok(acting);
    }
    audit(&ctx.pool, &acting.id, action, target, "denied", Some(&format!("needs {}", permission.as_str()))).await?;
    Err(Error::new(
        ErrorCode::PermissionDenied,
        format!("{} ({}) may not do this: it needs the permission {}; ask a super admin", acting.name, acting.role.as_str(), permission.as_str()),
    ))
}

pub(crate) fn end_session(ctx: &Ctx, why: String) {
    if let Ok(mut s) = ctx.session.lock() {
        s.end();
        s.ended = Some(why);
    }
}

/// The operator did something (a click, a key): the idle clock starts again.
pub fn touch(ctx: &Ctx) {
    if let Ok(mut s) = ctx.session.lock() {
        if s.acting.is_some() && s.idle.is_none_or(|idle| s.last_active.elapsed() <= idle) {
            s.last_active = Instant::now();
        }
    }
}

/// The operator acting, ending the session when it has been idle too long.
pub fn current(ctx: &Ctx) -> Result<Acting> {
    let mut s = ctx.session.lock().map_err(|_| Error::new(ErrorCode::Internal, "the session lock is poisoned"))?;
    if let (Some(idle), Some(a)) = (s.idle, s.acting.as_ref()) {
        if s.last_active.elapsed() > idle {
            let name = a.name.clone();
            s.end();
            s.ended = Some(format!("the session of {name} ended after {} idle; sign in again", human(idle)));
        }
    }
    match &s.acting {
        Some(a) => Ok(a.clone()),
        None => Err(Error::new(ErrorCode::PermissionDenied, s.ended.clone().unwrap_or_else(|| "nobody is signed in: sign in as an operator first".into()))),
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) {
        format!("{} minutes", s / 60)
    } else {
        format!("{s} seconds")
    }
}

