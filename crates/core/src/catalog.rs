//! The catalog: the app's own SQLite database. Opening it applies every pending migration from
//! `migrations/`, so a catalog written by an older Safehold is carried forward, never discarded.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::SqlitePool;

use crate::error::{Error, ErrorCode, Result};

/// The catalog's migrations, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// The id of the built-in operator that acts until sign-in exists.
pub const LOCAL_OPERATOR_ID: &str = "00000000-0000-4000-8000-000000000001";

/// File name of the catalog inside the Safehold home directory.
pub const CATALOG_FILE: &str = "catalog.db";

/// Opens (creating if needed) the catalog at `path` without migrating it.
pub async fn connect(path: &Path) -> Result<SqlitePool> {
    // Made 0600 before SQLite opens it (its journal files take the same mode), and older
    // catalogs restricted.
    if !path.exists() {
        crate::private::create_new(path).map_err(|e| Error::io(format!("cannot create the catalog {}", path.display()), &e))?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = crate::private::restrict(Path::new(&p));
    }
    let url = format!("sqlite://{}", path.display());
    let opts = SqliteConnectOptions::from_str(&url)
        .map_err(|e| Error::new(ErrorCode::Io, format!("invalid catalog path {}: {e}", path.display())).caused_by(&e))?
        .create_if_missing(true)
        .foreign_keys(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(std::time::Duration::from_secs(10));
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .map_err(|e| {
            Error::new(ErrorCode::Io, format!("cannot open the catalog at {}: {e}", path.display()))
        })
}

/// Opens the catalog at `path` and applies every pending migration.
pub async fn open(path: &Path) -> Result<SqlitePool> {
    let pool = connect(path).await?;
    MIGRATOR.run(&pool).await.map_err(|e| {
        Error::new(
            ErrorCode::Database,
            format!(
                "the catalog at {} could not be migrated to this version of Safehold: {e}; \
                 it was left as it was — keep a copy and report this",
                path.display()
            ),
        )
    })?;
    Ok(pool)
}

/// The current time as the catalog stores it: RFC 3339, UTC, milliseconds.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An app setting's value (`app_settings`), `None` when it was never set.
pub async fn setting(pool: &sqlx::SqlitePool, key: &str) -> Result<Option<String>> {
    sqlx::query_scalar("SELECT value FROM app_settings WHERE key = ?").bind(key).fetch_optional(pool).await.map_err(|e| Error::catalog("read the settings", &e))
}

/// Sets an app setting (`app_settings`), replacing its value.
pub async fn set_setting(pool: &sqlx::SqlitePool, key: &str, value: &str) -> Result<()> {
    sqlx::query("INSERT INTO app_settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        .bind(key)
        .bind(value)
        .execute(pool)
        .await
        .map_err(|e| Error::catalog("save the setting", &e))?;
    Ok(())
}

/// Records one action in the append-only audit log.
pub async fn audit<'e, E>(
    exec: E,
    operator_id: &str,
    action: &str,
    target: &str,
    outcome: &str,
    detail: Option<&str>,
) -> Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    sqlx::query(
        "INSERT INTO audit_log (at, operator_id, action, target, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(now())
    .bind(operator_id)
    .bind(action)
    .bind(target)
    .bind(outcome)
    .bind(detail)
    .execute(exec)
    .await
    .map_err(|e| Error::catalog("record the action in the audit log", &e))?;
    Ok(())
}
