//! Backup configurations: what to back up, from which connection, on which schedule, kept how
//! long, and where. Every write is validated first and writes nothing when invalid.

use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use ts_rs::TS;
use uuid::Uuid;

use crate::catalog::{audit, now};
use crate::context::Ctx;
use crate::cron;
use crate::error::{is_unique_violation, Error, FieldError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum BackupType {
    Full,
    Incremental,
    Differential,
}

/// What the scheduler does at start-up about runs missed while Safehold was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, TS, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(rename_all = "snake_case")]
pub enum MissedRuns {
    /// One catch-up run, however many slots were missed.
    #[default]
    RunOnce,
    /// Wait for the next slot.
    Skip,
}

/// A configuration as stored, plus the schedule's description for display.
#[derive(Debug, Clone, Serialize, TS, sqlx::FromRow)]
pub struct BackupConfiguration {
    pub id: String,
    pub configuration_name: String,
    pub backup_type: BackupType,
    pub schedule_cron: String,
    #[sqlx(skip)]
    pub schedule_description: String,
    pub retention_days: i64,
    pub compression_enabled: bool,
    pub encryption_enabled: bool,
    pub storage_location: String,
    /// A second storage every completed backup is copied to (3-2-1).
    pub secondary_storage: Option<String>,
    pub missed_runs: MissedRuns,
    /// The time zone the schedule runs in (IANA name); `None`: the workstation's.
    pub time_zone: Option<String>,
    pub includes_tenant_data: bool,
    pub includes_system_data: bool,
    pub includes_logs: bool,
    pub is_active: bool,
    /// Every committed change streamed into the storage between the scheduled backups, so the
    /// database can be put back to any second (PostgreSQL; the segments go to the configuration's storage).
    pub continuous_protection: bool,
    /// Every database of the connection's server (those there when it runs, templates and
    /// `exclude_databases` left out), with the roles and the databases' properties: one server
    /// backup set per run.
    pub whole_server: bool,
    /// Database name patterns a server backup leaves out, comma-separated (`*` matches any run
    /// of characters).
    pub exclude_databases: Option<String>,
    /// With `whole_server`: the roles' password hashes too (sealed like the data).
    pub server_passwords: bool,
    pub connection_id: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

impl BackupConfiguration {
    /// The input that saves this configuration as it is: edit a field or two, then update.
    pub fn to_input(&self) -> ConfigurationInput {
        ConfigurationInput {
            configuration_name: self.configuration_name.clone(),
            backup_type: self.backup_type,
            schedule_cron: self.schedule_cron.clone(),
            retention_days: self.retention_days,
            compression_enabled: self.compression_enabled,
            encryption_enabled: self.encryption_enabled,
            storage_location: self.storage_location.clone(),
            secondary_storage: self.secondary_storage.clone(),
            missed_runs: self.missed_runs,
            time_zone: self.time_zone.clone(),
            includes_tenant_data: self.includes_tenant_data,
            includes_system_data: self.includes_system_data,
            includes_logs: self.includes_logs,
            is_active: self.is_active,
            continuous_protection: self.continuous_protection,
            whole_server: self.whole_server,
            exclude_databases: self.exclude_databases.clone(),
            server_passwords: self.server_passwords,
            connection_id: self.connection_id.clone().unwrap_or_default(),
        }
    }
}

/// What a person fills in to create or edit a configuration.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
pub struct ConfigurationInput {
    pub configuration_name: String,
    pub backup_type: BackupType,
    pub schedule_cron: String,
    pub retention_days: i64,
    pub compression_enabled: bool,
    pub encryption_enabled: bool,
    /// The name of a registered storage (see the Storage tab).
    pub storage_location: String,
    /// A second storage every completed backup is copied to and verified on (optional).
    #[serde(default)]
    pub secondary_storage: Option<String>,
    /// Runs missed while Safehold was not running: one catch-up run, or none.
    #[serde(default)]
    pub missed_runs: MissedRuns,
    /// The time zone the schedule runs in (IANA name, e.g. Europe/Berlin); empty: the workstation's.
    #[serde(default)]
    pub time_zone: Option<String>,
    pub includes_tenant_data: bool,
    pub includes_system_data: bool,
    pub includes_logs: bool,
    pub is_active: bool,
    /// Continuous protection: every committed change streamed into the storage between the
    /// scheduled backups (PostgreSQL with `wal_level = logical`; on any storage).
    #[serde(default)]
    pub continuous_protection: bool,
    /// Back up every database of the connection's server, and its roles (PostgreSQL; full).
    #[serde(default)]
    pub whole_server: bool,
    /// With `whole_server`: database name patterns to leave out, comma-separated (`*` matches
    /// any run of characters), e.g. `scratch_*, old_reports`.
    #[serde(default)]
    pub exclude_databases: Option<String>,
    /// With `whole_server`: keep the roles' password hashes, so that a restored server's users log
    /// in as before (sealed like the data: encryption must be on; needs a superuser).
    #[serde(default)]
    pub server_passwords: bool,
    /// The connection (platform database) to back up.
    pub connection_id: String,
}

/// A new configuration's settings until someone changes them: a full backup every night at
/// 02:00, kept 30 days, compressed and encrypted, tenant and system data without the logs, active.
/// The app's form and `safehold config add` both start from these (the UI reads them from the
/// generated bindings).
impl Default for ConfigurationInput {
    fn default() -> Self {
        Self {
            configuration_name: String::new(),
            backup_type: BackupType::Full,
            schedule_cron: "0 2 * * *".into(),
            retention_days: 30,
            compression_enabled: true,
            encryption_enabled: true,
            storage_location: String::new(),
            secondary_storage: None,
            missed_runs: MissedRuns::RunOnce,
            time_zone: None,
            includes_tenant_data: true,
            includes_system_data: true,
            includes_logs: false,
            is_active: true,
            continuous_protection: false,
            whole_server: false,
            exclude_databases: None,
            server_passwords: false,
            connection_id: String::new(),
        }
    }
}

/// The settings of a new configuration named `name` backing up `connection_id` on `schedule`:
/// the defaults, into the default storage.
pub async fn new_input(ctx: &Ctx, name: &str, connection_id: &str, schedule: &str) -> Result<ConfigurationInput> {
    let storage = crate::storage::list(ctx).await?.into_iter().find(|s| s.is_default).map(|s| s.storage_name).unwrap_or_default();
    Ok(ConfigurationInput { configuration_name: name.into(), schedule_cron: schedule.into(), storage_location: storage, connection_id: connection_id.into(), ..Default::default() })
}

/// The time zone's name, `None` when empty.
fn zone(input: &ConfigurationInput) -> Option<String> {
    input.time_zone.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

/// The patterns of databases a server backup leaves out, `None` when there are none.
fn excluded(input: &ConfigurationInput) -> Option<String> {
    Some(exclude_patterns(input.exclude_databases.as_deref()).join(", ")).filter(|s| !s.is_empty())
}

/// A configuration's `exclude_databases` as patterns.
pub fn exclude_patterns(text: Option<&str>) -> Vec<String> {
    text.unwrap_or_default().split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect()
}

/// The second storage's name, `None` when empty.
fn secondary(input: &ConfigurationInput) -> Option<String> {
    input.secondary_storage.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

const SELECT: &str = "SELECT id, configuration_name, backup_type, schedule_cron, retention_days, \
    coalesce(compression_enabled, 1) AS compression_enabled, coalesce(encryption_enabled, 1) AS encryption_enabled, \
    storage_location, secondary_storage, missed_runs, time_zone, coalesce(includes_tenant_data, 1) AS includes_tenant_data, \
    coalesce(includes_system_data, 1) AS includes_system_data, coalesce(includes_logs, 0) AS includes_logs, \
    coalesce(is_active, 1) AS is_active, continuous_protection, whole_server, exclude_databases, server_passwords, connection_id, created_by, coalesce(created_at, '') AS created_at, \
    coalesce(updated_at, '') AS updated_at FROM backup_configurations";

fn with_description(mut c: BackupConfiguration) -> BackupConfiguration {
    c.schedule_description = cron::describe(&c.schedule_cron);
    c
}

pub async fn list(ctx: &Ctx) -> Result<Vec<BackupConfiguration>> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "configuration.list", "configurations").await?;
    let rows: Vec<BackupConfiguration> = sqlx::query_as(AssertSqlSafe(format!("{SELECT} ORDER BY configuration_name")))
        .fetch_all(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("list the backup configurations", &e))?;
    Ok(rows.into_iter().map(with_description).collect())
}

pub async fn get(ctx: &Ctx, id: &str) -> Result<BackupConfiguration> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "configuration.get", id).await?;
    sqlx::query_as(AssertSqlSafe(format!("{SELECT} WHERE id = ?")))
        .bind(id)
        .fetch_optional(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("read a backup configuration", &e))?
        .map(with_description)
        .ok_or_else(|| Error::not_found(format!("no backup configuration has the id {id}")))
}

/// A configuration by its name or its id.
pub async fn find(ctx: &Ctx, name_or_id: &str) -> Result<BackupConfiguration> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "configuration.get", name_or_id).await?;
    sqlx::query_as(AssertSqlSafe(format!("{SELECT} WHERE id = ?1 OR configuration_name = ?1 ORDER BY id = ?1 DESC LIMIT 1")))
        .bind(name_or_id)
        .fetch_optional(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("read a backup configuration", &e))?
        .map(with_description)
        .ok_or_else(|| Error::not_found(format!("no configuration is named \"{name_or_id}\" or has that id; `safehold config list` shows them")))
}

/// Checks every field of `input` against the catalog; `editing` is the id of the configuration
/// being edited (its own name is not a conflict). Returns the invalid fields, empty when valid.
pub async fn validate(ctx: &Ctx, input: &ConfigurationInput, editing: Option<&str>) -> Result<Vec<FieldError>> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "configuration.validate", "configuration").await?;
    let mut errors = Vec::new();
    let mut bad = |field: &str, message: String| errors.push(FieldError { field: field.into(), message });

    let name = input.configuration_name.trim();
    if name.is_empty() {
        bad("configuration_name", "the configuration needs a name".into());
    } else if name.chars().count() > 100 {
        bad("configuration_name", "the name is longer than 100 characters; shorten it".into());
    } else {
        let taken: Option<String> =
            sqlx::query_scalar("SELECT id FROM backup_configurations WHERE lower(configuration_name) = lower(?)")
                .bind(name)
                .fetch_optional(&ctx.pool)
                .await
                .map_err(|e| Error::catalog("check configuration names", &e))?;
        if taken.is_some_and(|id| Some(id.as_str()) != editing) {
            bad("configuration_name", format!("a configuration named \"{name}\" already exists; choose another name"));
        }
    }
    if let Err(e) = cron::parse(&input.schedule_cron) {
        bad("schedule_cron", e.message);
    }
    if let Err(e) = cron::parse_time_zone(input.time_zone.as_deref()) {
        bad("time_zone", e.message);
    }
    if input.retention_days < 1 {
        bad("retention_days", format!("retention must be at least 1 day (got {})", input.retention_days));
    } else if input.retention_days > 36_500 {
        bad("retention_days", "retention cannot exceed 36500 days (100 years)".into());
    }
    let storage: Option<bool> =
        sqlx::query_scalar("SELECT coalesce(is_active, 1) FROM backup_storage WHERE storage_name = ?")
            .bind(input.storage_location.trim())
            .fetch_optional(&ctx.pool)
            .await
            .map_err(|e| Error::catalog("check the storage", &e))?;
    match storage {
        None if input.storage_location.trim().is_empty() => bad("storage_location", "choose a storage for the backups".into()),
        None => bad("storage_location", format!("no storage named \"{}\" exists; add it in the Storage tab first", input.storage_location.trim())),
        Some(false) => bad("storage_location", format!("the storage \"{}\" is deactivated; choose an active one", input.storage_location.trim())),
        Some(true) => {}
    }
    if let Some(second) = secondary(input) {
        let exists: Option<bool> = sqlx::query_scalar("SELECT coalesce(is_active, 1) FROM backup_storage WHERE storage_name = ?")
            .bind(&second)
            .fetch_optional(&ctx.pool)
            .await
            .map_err(|e| Error::catalog("check the second storage", &e))?;
        if second == input.storage_location.trim() {
            bad("secondary_storage", "the second copy needs another storage than the first".into());
        } else if exists.is_none() {
            bad("secondary_storage", format!("no storage named \"{second}\" exists; add it in the Storage tab first"));
        } else if exists == Some(false) {
            bad("secondary_storage", format!("the storage \"{second}\" is deactivated; choose an active one"));
        }
    }
    let conn: Option<String> = sqlx::query_scalar("SELECT kind FROM connections WHERE id = ?")
        .bind(&input.connection_id)
        .fetch_optional(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("check the connection", &e))?;
    if conn.is_none() {
        bad("connection_id", "choose the connection (database) to back up".into());
    }
    if input.continuous_protection && conn.as_deref() == Some("sqlite") {
        bad("continuous_protection", "continuous protection follows PostgreSQL databases (their logical decoding); a SQLite database is protected by its scheduled backups — turn it off or choose a PostgreSQL connection".into());
    }
    if input.whole_server {
        if conn.as_deref() == Some("sqlite") {
            bad("whole_server", "a whole server is a PostgreSQL server: choose a PostgreSQL connection, or back up this SQLite database alone".into());
        } else if input.backup_type != BackupType::Full {
            bad("backup_type", "a server backup is full each time (every database, the roles): choose Full, or back up a database incrementally with a configuration of its own".into());
        } else if input.continuous_protection {
            bad("continuous_protection", "continuous protection follows one database: turn it off here, and protect the database with a configuration of its own".into());
        } else if secondary(input).is_some() {
            bad("secondary_storage", "a second copy of a server backup is not made yet: leave the second storage empty".into());
        } else if input.server_passwords && !input.encryption_enabled {
            bad("server_passwords", "password hashes are only kept sealed: turn encryption on, or leave the passwords out".into());
        }
    } else if input.server_passwords {
        bad("server_passwords", "password hashes are kept by a server backup only: tick \"Every database of the server\", or leave them out".into());
    } else if excluded(input).is_some() {
        bad("exclude_databases", "databases are left out of a server backup only: tick \"Every database of the server\", or clear the list".into());
    }
    if !(input.includes_tenant_data || input.includes_system_data || input.includes_logs) {
        bad("includes_tenant_data", "a backup must include something: tenant data, system data or logs".into());
    }
    Ok(errors)
}

async fn ensure_valid(ctx: &Ctx, input: &ConfigurationInput, editing: Option<&str>) -> Result<()> {
    let errors = validate(ctx, input, editing).await?;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid_fields(errors))
    }
}

fn name_conflict(e: &sqlx::Error, name: &str, what: &str) -> Error {
    if is_unique_violation(e) {
        Error::invalid_fields(vec![FieldError {
            field: "configuration_name".into(),
            message: format!("a configuration named \"{name}\" already exists; choose another name"),
        }])
    } else {
        Error::catalog(what, e)
    }
}

pub async fn create(ctx: &Ctx, input: ConfigurationInput) -> Result<BackupConfiguration> {
    crate::context::require(ctx, crate::context::Permission::ManageAll, "configuration.create", &input.configuration_name).await?;
    ensure_valid(ctx, &input, None).await?;
    let id = Uuid::new_v4().to_string();
    let name = input.configuration_name.trim().to_string();
    let ts = now();
    let mut tx = ctx.pool.begin().await.map_err(|e| Error::catalog("start a transaction", &e))?;
    sqlx::query(
        "INSERT INTO backup_configurations (id, configuration_name, backup_type, schedule_cron, retention_days, \
         compression_enabled, encryption_enabled, storage_location, includes_tenant_data, includes_system_data, \
         includes_logs, is_active, created_by, created_at, updated_at, connection_id, secondary_storage, missed_runs, time_zone, continuous_protection, \
         whole_server, exclude_databases, server_passwords) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(&name)
    .bind(input.backup_type)
    .bind(input.schedule_cron.trim())
    .bind(input.retention_days)
    .bind(input.compression_enabled)
    .bind(input.encryption_enabled)
    .bind(input.storage_location.trim())
    .bind(input.includes_tenant_data)
    .bind(input.includes_system_data)
    .bind(input.includes_logs)
    .bind(input.is_active)
    .bind(ctx.operator_id())
    .bind(&ts)
    .bind(&ts)
    .bind(&input.connection_id)
    .bind(secondary(&input))
    .bind(input.missed_runs)
    .bind(zone(&input))
    .bind(input.continuous_protection)
    .bind(input.whole_server)
    .bind(excluded(&input))
    .bind(input.server_passwords)
    .execute(&mut *tx)
    .await
    .map_err(|e| name_conflict(&e, &name, "save the configuration"))?;
    audit(&mut *tx, &ctx.operator_id(), "configuration.create", &name, "success", None).await?;
    tx.commit().await.map_err(|e| Error::catalog("save the configuration", &e))?;
    get(ctx, &id).await
}

pub async fn update(ctx: &Ctx, id: &str, input: ConfigurationInput) -> Result<BackupConfiguration> {
    crate::context::require(ctx, crate::context::Permission::ManageAll, "configuration.update", id).await?;
    get(ctx, id).await?;
    ensure_valid(ctx, &input, Some(id)).await?;
    let name = input.configuration_name.trim().to_string();
    let mut tx = ctx.pool.begin().await.map_err(|e| Error::catalog("start a transaction", &e))?;
    sqlx::query(
        "UPDATE backup_configurations SET configuration_name = ?, backup_type = ?, schedule_cron = ?, \
         retention_days = ?, compression_enabled = ?, encryption_enabled = ?, storage_location = ?, \
         includes_tenant_data = ?, includes_system_data = ?, includes_logs = ?, is_active = ?, \
         connection_id = ?, secondary_storage = ?, missed_runs = ?, time_zone = ?, continuous_protection = ?, whole_server = ?, exclude_databases = ?, server_passwords = ?, updated_at = ? WHERE id = ?",
    )
    .bind(&name)
    .bind(input.backup_type)
    .bind(input.schedule_cron.trim())
    .bind(input.retention_days)
    .bind(input.compression_enabled)
    .bind(input.encryption_enabled)
    .bind(input.storage_location.trim())
    .bind(input.includes_tenant_data)
    .bind(input.includes_system_data)
    .bind(input.includes_logs)
    .bind(input.is_active)
    .bind(&input.connection_id)
    .bind(secondary(&input))
    .bind(input.missed_runs)
    .bind(zone(&input))
    .bind(input.continuous_protection)
    .bind(input.whole_server)
    .bind(excluded(&input))
    .bind(input.server_passwords)
    .bind(now())
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(|e| name_conflict(&e, &name, "update the configuration"))?;
    audit(&mut *tx, &ctx.operator_id(), "configuration.update", &name, "success", None).await?;
    tx.commit().await.map_err(|e| Error::catalog("update the configuration", &e))?;
    get(ctx, id).await
}

pub async fn set_active(ctx: &Ctx, id: &str, active: bool) -> Result<BackupConfiguration> {
    crate::context::require(ctx, crate::context::Permission::ManageAll, "configuration.set_active", id).await?;
    let current = get(ctx, id).await?;
    let mut tx = ctx.pool.begin().await.map_err(|e| Error::catalog("start a transaction", &e))?;
    sqlx::query("UPDATE backup_configurations SET is_active = ?, updated_at = ? WHERE id = ?")
        .bind(active)
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::catalog("change the configuration", &e))?;
    let action = if active { "configuration.activate" } else { "configuration.deactivate" };
    audit(&mut *tx, &ctx.operator_id(), action, &current.configuration_name, "success", None).await?;
    tx.commit().await.map_err(|e| Error::catalog("change the configuration", &e))?;
    get(ctx, id).await
}

/// Deletes a configuration. Its past executions stay in the history, no longer linked to it.
pub async fn delete(ctx: &Ctx, id: &str) -> Result<()> {
    crate::context::require(ctx, crate::context::Permission::ManageAll, "configuration.delete", id).await?;
    let current = get(ctx, id).await?;
    let mut tx = ctx.pool.begin().await.map_err(|e| Error::catalog("start a transaction", &e))?;
    sqlx::query("DELETE FROM backup_configurations WHERE id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::catalog("delete the configuration", &e))?;
    audit(&mut *tx, &ctx.operator_id(), "configuration.delete", &current.configuration_name, "success", None).await?;
    tx.commit().await.map_err(|e| Error::catalog("delete the configuration", &e))
}
