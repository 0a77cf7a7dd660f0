//! Storage locations where archives are kept (the spec's `backup_storage`). This version knows
//! the catalog side: listing and registering local directories.

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use uuid::Uuid;

use crate::catalog::{audit, now};
use crate::context::Ctx;
use crate::error::{is_unique_violation, Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
pub enum StorageType {
    Local,
    S3,
    Azure,
    Gcp,
}

#[derive(Debug, Clone, Serialize, TS, sqlx::FromRow)]
pub struct BackupStorage {
    pub id: String,
    pub storage_name: String,
    pub storage_type: StorageType,
    /// Non-secret settings (e.g. `{"path": "/backups"}`); secrets are in the keychain.
    #[sqlx(json)]
    pub storage_config: serde_json::Value,
    pub is_default: bool,
    pub is_active: bool,
    pub total_capacity: Option<i64>,
    pub used_space: i64,
    pub created_at: String,
    pub last_health_check: Option<String>,
}

pub async fn list(ctx: &Ctx) -> Result<Vec<BackupStorage>> {
    sqlx::query_as(
        "SELECT id, storage_name, storage_type, storage_config, coalesce(is_default, 0) AS is_default, \
         coalesce(is_active, 1) AS is_active, total_capacity, coalesce(used_space, 0) AS used_space, \
         coalesce(created_at, '') AS created_at, last_health_check FROM backup_storage ORDER BY is_default DESC, storage_name",
    )
    .fetch_all(&ctx.pool)
    .await
    .map_err(|e| Error::catalog("list the storage locations", &e))
}

/// Registers a local directory as a storage location, creating the directory.
pub async fn add_local(ctx: &Ctx, name: &str, path: &std::path::Path, is_default: bool) -> Result<BackupStorage> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::validation("the storage needs a name"));
    }
    if !path.is_absolute() {
        return Err(Error::validation(format!("the storage directory {} must be an absolute path", path.display())));
    }
    std::fs::create_dir_all(path).map_err(|e| Error::io(format!("cannot create the storage directory {}", path.display()), &e))?;
    let id = Uuid::new_v4().to_string();
    let config = serde_json::json!({ "path": path.display().to_string() }).to_string();
    let mut tx = ctx.pool.begin().await.map_err(|e| Error::catalog("start a transaction", &e))?;
    if is_default {
        sqlx::query("UPDATE backup_storage SET is_default = 0")
            .execute(&mut *tx)
            .await
            .map_err(|e| Error::catalog("change the default storage", &e))?;
    }
    sqlx::query(
        "INSERT INTO backup_storage (id, storage_name, storage_type, storage_config, is_default, is_active, created_at) \
         VALUES (?, ?, 'local', ?, ?, 1, ?)",
    )
    .bind(&id)
    .bind(name)
    .bind(&config)
    .bind(is_default)
    .bind(now())
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::conflict(format!("a storage named \"{name}\" already exists; choose another name"))
        } else {
            Error::catalog("save the storage", &e)
        }
    })?;
    audit(&mut *tx, &ctx.operator_id, "storage.add", name, "success", None).await?;
    tx.commit().await.map_err(|e| Error::catalog("save the storage", &e))?;
    list(ctx)
        .await?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| Error::not_found(format!("the storage \"{name}\" vanished after it was saved")))
}
