//! Storage locations where archives are kept (the spec's `backup_storage`): registering, removing,
//! used space from a real listing and the filesystem's capacity, and a health probe that writes,
//! reads back and deletes an object. Where the bytes go — a folder or an object store — is
//! [`backend`]'s.

pub mod archives;
pub mod backend;

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
    /// The last probe's outcome (`None` before the first check).
    pub last_health_ok: Option<bool>,
    pub last_health_latency_ms: Option<i64>,
    pub last_health_message: Option<String>,
}

pub async fn list(ctx: &Ctx) -> Result<Vec<BackupStorage>> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "storage.list", "storage").await?;
    all(&ctx.pool).await
}

/// Every storage location (for the engine's own work: key custody, crash recovery).
pub(crate) async fn all(pool: &sqlx::SqlitePool) -> Result<Vec<BackupStorage>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT_STORAGE} ORDER BY is_default DESC, storage_name"))).fetch_all(pool).await.map_err(|e| Error::catalog("list the storage locations", &e))
}

/// A storage location's columns, as [`BackupStorage`] reads them.
const SELECT_STORAGE: &str = "SELECT id, storage_name, storage_type, storage_config, coalesce(is_default, 0) AS is_default, \
     coalesce(is_active, 1) AS is_active, total_capacity, coalesce(used_space, 0) AS used_space, \
     coalesce(created_at, '') AS created_at, last_health_check, last_health_ok, last_health_latency_ms, last_health_message FROM backup_storage";

/// The storage location named `name_or_id` (its name, else its id), looked up by key.
pub(crate) async fn by_name_or_id(pool: &sqlx::SqlitePool, name_or_id: &str) -> Result<Option<BackupStorage>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT_STORAGE} WHERE storage_name = ?1 OR id = ?1 ORDER BY storage_name = ?1 DESC LIMIT 1")))
        .bind(name_or_id)
        .fetch_optional(pool)
        .await
        .map_err(|e| Error::catalog("find the storage location", &e))
}

/// Registers a local directory as a storage location, creating the directory.
pub async fn add_local(ctx: &Ctx, name: &str, path: &std::path::Path, is_default: bool) -> Result<BackupStorage> {
    crate::context::require(ctx, crate::context::Permission::ManageStorage, "storage.add", name).await?;
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::validation("the storage needs a name"));
    }
    if !path.is_absolute() {
        return Err(Error::validation(format!("the storage directory {} must be an absolute path", path.display())));
    }
    crate::private::create_dir_all(path).map_err(|e| Error::io(format!("cannot create the storage directory {}", path.display()), &e))?;
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
    audit(&mut *tx, &ctx.operator_id(), "storage.add", name, "success", None).await?;
    tx.commit().await.map_err(|e| Error::catalog("save the storage", &e))?;
    list(ctx)
        .await?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| Error::not_found(format!("the storage \"{name}\" vanished after it was saved")))
}

/// A storage's directory (local storage).
pub fn local_dir(s: &BackupStorage) -> Result<std::path::PathBuf> {
    if s.storage_type != StorageType::Local {
        return Err(Error::validation(format!("the storage \"{}\" is not a local directory", s.storage_name)));
    }
    s.storage_config
        .get("path")
        .and_then(|p| p.as_str())
        .map(std::path::PathBuf::from)
        .ok_or_else(|| Error::validation(format!("the storage \"{}\" has no path", s.storage_name)))
}

/// The keychain account of a cloud storage's credentials.
pub fn storage_account(storage_id: &str) -> String {
    format!("storage:{storage_id}")
}

/// Credentials of a cloud storage, kept in the OS keychain (never in the catalog).
#[derive(Debug, Clone, Default, Serialize, Deserialize, TS)]
pub struct StorageCredentials {
    /// S3: the access key id; Azure: the storage account's name.
    pub access_key_id: Option<String>,
    /// S3: the secret access key; Azure: the account key.
    pub secret_access_key: Option<String>,
    /// Google Cloud Storage: the service account key (JSON).
    #[serde(default)]
    pub service_account_key: Option<String>,
}

/// Where a storage's repository is: a directory, or an object storage URL whose bucket is
/// connected with the storage's settings and the credentials from the keychain (or the
/// environment when none are stored).
pub async fn location(ctx: &Ctx, s: &BackupStorage) -> Result<std::path::PathBuf> {
    if s.storage_type == StorageType::Local {
        return local_dir(s);
    }
    let account = storage_account(&s.id);
    let creds: Option<StorageCredentials> = match crate::secrets::run(&ctx.secrets, move |st| st.get(&account)).await {
        Ok(Some(json)) => serde_json::from_str(&json).ok(),
        _ => None,
    };
    connect_with(s, creds.unwrap_or_default())
}

/// Connects a cloud storage's bucket with these credentials; returns its URL.
fn connect_with(s: &BackupStorage, creds: StorageCredentials) -> Result<std::path::PathBuf> {
    let url = s
        .storage_config
        .get("url")
        .and_then(|p| p.as_str())
        .ok_or_else(|| Error::validation(format!("the storage \"{}\" has no URL", s.storage_name)))?
        .to_string();
    let cfg = |k: &str| s.storage_config.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let settings = crate::remote::Settings {
        endpoint: cfg("endpoint"),
        region: cfg("region"),
        access_key_id: creds.access_key_id,
        secret_access_key: creds.secret_access_key,
        allow_http: s.storage_config.get("allow_http").and_then(|v| v.as_bool()),
        service_account_key: creds.service_account_key,
    };
    crate::remote::connect(&url, &settings)?;
    Ok(std::path::PathBuf::from(url))
}

/// Back to the credentials the keychain holds (after new ones were tried and not kept).
async fn reconnect(ctx: &Ctx, s: &BackupStorage) {
    if let Some(url) = s.storage_config.get("url").and_then(|p| p.as_str()) {
        let _ = crate::remote::forget(url);
    }
    let _ = location(ctx, s).await;
}

/// What a cloud storage needs besides its URL.
#[derive(Debug, Clone, Default, Deserialize, TS)]
pub struct RemoteStorageInput {
    pub name: String,
    /// `s3://bucket/prefix`, `az://container/prefix` or `gs://bucket/prefix`.
    pub url: String,
    /// A custom endpoint (MinIO, Ceph, Garage, R2, an emulator).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Capacity to measure usage against (cloud storage has no filesystem size).
    pub quota_bytes: Option<i64>,
    pub credentials: Option<StorageCredentials>,
    pub is_default: bool,
}

/// Adds a storage wherever `input.url` says: an object-store URL (`s3://`, `az://`, `gs://`,
/// with the endpoint, region, quota and credentials given) or a folder (a relative path taken
/// from the current directory; endpoint, region and credentials refused: they are for object
/// storage).
pub async fn add(ctx: &Ctx, input: RemoteStorageInput) -> Result<BackupStorage> {
    if crate::remote::is_remote(std::path::Path::new(&input.url)) {
        return add_remote(ctx, input).await;
    }
    if input.endpoint.is_some() || input.region.is_some() || input.credentials.is_some() {
        return Err(Error::validation(format!(
            "{} is a folder: an endpoint, a region and credentials are for object storage (s3://, az://, gs://); leave them out",
            input.url
        )));
    }
    let path = std::path::absolute(&input.url).map_err(|e| Error::io(format!("cannot resolve the folder {}", input.url), &e))?;
    add_local(ctx, &input.name, &path, input.is_default).await
}

/// Registers a cloud storage: settings in the catalog, credentials in the keychain.
pub async fn add_remote(ctx: &Ctx, input: RemoteStorageInput) -> Result<BackupStorage> {
    crate::context::require(ctx, crate::context::Permission::ManageStorage, "storage.add", &input.name).await?;
    let name = input.name.trim().to_string();
    if name.is_empty() {
        return Err(Error::validation("the storage needs a name"));
    }
    let storage_type = if input.url.starts_with("s3://") {
        StorageType::S3
    } else if input.url.starts_with("az://") {
        StorageType::Azure
    } else if input.url.starts_with("gs://") {
        StorageType::Gcp
    } else {
        return Err(Error::validation(format!("\"{}\" is not a cloud storage URL; use s3://bucket/prefix, az://container/prefix or gs://bucket/prefix", input.url)));
    };
    let id = Uuid::new_v4().to_string();
    let has_creds = input.credentials.as_ref().is_some_and(|c| c.access_key_id.is_some() || c.secret_access_key.is_some() || c.service_account_key.is_some());
    if let Some(c) = input.credentials.clone().filter(|_| has_creds) {
        let account = storage_account(&id);
        let value = serde_json::to_string(&c).map_err(|e| Error::new(crate::ErrorCode::Internal, e.to_string()).caused_by(&e))?;
        crate::secrets::run(&ctx.secrets, move |st| st.set(&account, &value)).await?;
    }
    let mut config = serde_json::json!({ "url": input.url.trim_end_matches('/') });
    if let Some(e) = &input.endpoint {
        config["endpoint"] = serde_json::json!(e);
        config["allow_http"] = serde_json::json!(e.starts_with("http://"));
    }
    if let Some(r) = &input.region {
        config["region"] = serde_json::json!(r);
    }
    let mut tx = ctx.pool.begin().await.map_err(|e| Error::catalog("start a transaction", &e))?;
    if input.is_default {
        sqlx::query("UPDATE backup_storage SET is_default = 0").execute(&mut *tx).await.map_err(|e| Error::catalog("change the default storage", &e))?;
    }
    sqlx::query("INSERT INTO backup_storage (id, storage_name, storage_type, storage_config, is_default, is_active, total_capacity, created_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)")
        .bind(&id)
        .bind(&name)
        .bind(storage_type)
        .bind(config.to_string())
        .bind(input.is_default)
        .bind(input.quota_bytes)
        .bind(now())
        .execute(&mut *tx)
        .await
        .map_err(|e| if is_unique_violation(&e) { Error::conflict(format!("a storage named \"{name}\" already exists; choose another name")) } else { Error::catalog("save the storage", &e) })?;
    audit(&mut *tx, &ctx.operator_id(), "storage.add", &name, "success", Some(&input.url)).await?;
    tx.commit().await.map_err(|e| Error::catalog("save the storage", &e))?;
    find(ctx, &id).await
}

/// Finds a storage by name or id.
pub async fn find(ctx: &Ctx, name_or_id: &str) -> Result<BackupStorage> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "storage.find", name_or_id).await?;
    by_name_or_id(&ctx.pool, name_or_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("no storage is named \"{name_or_id}\"; `safehold storage list` shows them")))
}

#[derive(Debug, Clone, Serialize, TS)]
pub struct StorageUsage {
    pub storage_name: String,
    /// The sum of the archives' sizes, from a listing of the storage.
    pub used_space: i64,
    pub archives: i64,
    /// The filesystem's size (local storage).
    pub total_capacity: Option<i64>,
    pub available: Option<i64>,
    pub at: String,
}

fn filesystem_space(dir: &std::path::Path) -> (Option<i64>, Option<i64>) {
    #[cfg(unix)]
    {
        if let Ok(st) = rustix::fs::statvfs(dir) {
            let block = st.f_frsize;
            let total = i64::try_from(st.f_blocks.saturating_mul(block)).ok();
            let avail = i64::try_from(st.f_bavail.saturating_mul(block)).ok();
            return (total, avail);
        }
    }
    let _ = dir;
    (None, None)
}

/// (used bytes, archives), (capacity, available).
type Measured = ((i64, i64), (Option<i64>, Option<i64>));

/// Measures a storage now (a real listing), records it and a sample for the growth chart.
pub async fn refresh_usage(ctx: &Ctx, name_or_id: &str) -> Result<StorageUsage> {
    crate::context::require(ctx, crate::context::Permission::ManageStorage, "storage.refresh", name_or_id).await?;
    record_usage(ctx, name_or_id).await
}

/// Measures and records a storage's used space (after each backup, and for the growth chart).
pub(crate) async fn record_usage(ctx: &Ctx, name_or_id: &str) -> Result<StorageUsage> {
    let s = find(ctx, name_or_id).await?;
    let dir = location(ctx, &s).await?;
    let d2 = dir.clone();
    let quota = s.total_capacity.filter(|_| s.storage_type != StorageType::Local);
    let ((used, archives), (total, available)) = tokio::task::spawn_blocking(move || -> Result<Measured> {
        let storage = backend::at(&d2)?;
        let items = storage.list()?;
        let shars: Vec<&(String, u64)> = items.iter().filter(|(u, _)| u.ends_with(&format!(".{}", crate::archive::ARCHIVE_EXT))).collect();
        let used: i64 = shars.iter().map(|(_, n)| i64::try_from(*n).unwrap_or(i64::MAX)).sum();
        // A filesystem tells its capacity; an object store has the quota given to it.
        let space = match storage.capacity() {
            (None, None) => (quota, quota.map(|q| (q - used).max(0))),
            told => told,
        };
        Ok(((used, shars.len() as i64), space))
    })
    .await
    .map_err(|e| Error::new(crate::ErrorCode::Internal, e.to_string()).caused_by(&e))??;
    let at = now();
    sqlx::query("UPDATE backup_storage SET used_space = ?, total_capacity = ? WHERE id = ?")
        .bind(used)
        .bind(total)
        .bind(&s.id)
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("record the storage's usage", &e))?;
    sqlx::query("INSERT INTO storage_usage_samples (storage_id, at, used_space, total_capacity, archives) VALUES (?, ?, ?, ?, ?)")
        .bind(&s.id)
        .bind(&at)
        .bind(used)
        .bind(total)
        .bind(archives)
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("record a usage sample", &e))?;
    Ok(StorageUsage { storage_name: s.storage_name, used_space: used, archives, total_capacity: total, available, at })
}

#[derive(Debug, Clone, Serialize, TS, sqlx::FromRow)]
pub struct UsageSample {
    pub at: String,
    pub used_space: i64,
    pub total_capacity: Option<i64>,
    pub archives: i64,
}

/// The used space over time, oldest first (at most `limit` newest samples).
pub async fn samples(ctx: &Ctx, storage_id: &str, limit: i64) -> Result<Vec<UsageSample>> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "storage.samples", storage_id).await?;
    let mut rows: Vec<UsageSample> =
        sqlx::query_as("SELECT at, used_space, total_capacity, archives FROM storage_usage_samples WHERE storage_id = ? ORDER BY at DESC LIMIT ?")
            .bind(storage_id)
            .bind(limit)
            .fetch_all(&ctx.pool)
            .await
            .map_err(|e| Error::catalog("read the usage samples", &e))?;
    rows.reverse();
    Ok(rows)
}

#[derive(Debug, Clone, Serialize, TS)]
pub struct HealthCheck {
    pub storage_name: String,
    pub ok: bool,
    pub latency_ms: i64,
    pub message: String,
    pub at: String,
}

/// Writes 64 KiB, reads them back and deletes them, through the storage's backend.
fn probe(location: &std::path::Path) -> std::result::Result<(), String> {
    let root = backend::at(location).map_err(|e| e.message)?;
    root.ready().map_err(|e| e.message)?;
    let obj = root.child(&format!(".safehold-probe-{}", Uuid::new_v4().simple()));
    let data: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    obj.put(data.clone()).map_err(|e| format!("cannot write to {}: {}", location.display(), e.message))?;
    let back = obj.get();
    let removed = obj.delete();
    match back {
        Ok(b) if b == data => {}
        Ok(_) => return Err(format!("{} returned different bytes than were written", location.display())),
        Err(e) => return Err(format!("cannot read back from {}: {}", location.display(), e.message)),
    }
    removed.map_err(|e| format!("cannot delete from {}: {}", location.display(), e.message))
}

/// Writes, reads back and deletes a probe object; records the outcome on the storage.
pub async fn check(ctx: &Ctx, name_or_id: &str) -> Result<HealthCheck> {
    crate::context::require(ctx, crate::context::Permission::ManageStorage, "storage.check", name_or_id).await?;
    let s = find(ctx, name_or_id).await?;
    let dir = location(ctx, &s).await;
    let started = std::time::Instant::now();
    let outcome = match dir {
        Err(e) => Err(e.message),
        Ok(dir) => tokio::task::spawn_blocking(move || probe(&dir))
            .await
            .map_err(|e| Error::new(crate::ErrorCode::Internal, e.to_string()).caused_by(&e))?,
    };
    let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let (ok, message) = match outcome {
        Ok(()) => (true, format!("wrote, read back and deleted a probe in {latency_ms} ms")),
        Err(m) => (false, m),
    };
    let at = now();
    sqlx::query("UPDATE backup_storage SET last_health_check = ?, last_health_ok = ?, last_health_latency_ms = ?, last_health_message = ? WHERE id = ?")
        .bind(&at)
        .bind(ok)
        .bind(latency_ms)
        .bind(&message)
        .bind(&s.id)
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("record the health check", &e))?;
    Ok(HealthCheck { storage_name: s.storage_name, ok, latency_ms, message, at })
}

/// A change to a storage: make it the default, take it out of use or back, its quota, its
/// credentials. Fields left `None` (or `false`) are unchanged.
#[derive(Debug, Clone, Default, Deserialize, TS)]
pub struct StorageChange {
    /// Make it the default storage (another becomes the default by making it so).
    #[serde(default)]
    pub make_default: bool,
    /// `false`: backups into it are refused until it is active again (its archives stay readable).
    pub is_active: Option<bool>,
    /// Cloud: the capacity to measure usage against, in bytes; 0 clears it.
    pub quota_bytes: Option<i64>,
    /// Cloud: new credentials, replacing those in the keychain (rotated keys).
    pub credentials: Option<StorageCredentials>,
}

/// Changes a storage (see [`StorageChange`]), audited. New credentials are tried first: a storage
/// they do not reach is refused and keeps its old ones.
pub async fn update(ctx: &Ctx, name_or_id: &str, change: StorageChange) -> Result<BackupStorage> {
    crate::context::require(ctx, crate::context::Permission::ManageStorage, "storage.update", name_or_id).await?;
    let s = find(ctx, name_or_id).await?;
    let mut what = Vec::new();
    let active_after = change.is_active.unwrap_or(s.is_active);
    if !active_after && (s.is_default || change.make_default) {
        return Err(Error::validation(format!("\"{}\" is (or would be) the default storage, which must be active: make another storage the default first, or activate it", s.storage_name)));
    }
    if let Some(q) = change.quota_bytes {
        if s.storage_type == StorageType::Local {
            return Err(Error::validation("a local storage's capacity is its filesystem's; a quota is for cloud storage"));
        }
        if q < 0 {
            return Err(Error::validation("the quota is a number of bytes (0 clears it)"));
        }
    }
    let filled = |v: &Option<String>| v.as_deref().is_some_and(|x| !x.trim().is_empty());
    if let Some(c) = &change.credentials {
        let complete = match s.storage_type {
            StorageType::Local => return Err(Error::validation("a local storage has no credentials")),
            StorageType::Gcp => filled(&c.service_account_key),
            StorageType::S3 | StorageType::Azure => filled(&c.access_key_id) && filled(&c.secret_access_key),
        };
        if !complete {
            return Err(Error::validation(if s.storage_type == StorageType::Gcp {
                "new credentials for Google Cloud Storage are a service account key (JSON)"
            } else {
                "new credentials need both the key id (the account name, for Azure) and its secret"
            }));
        }
        // Tried before they are kept: a connection built with them writes, reads back and
        // deletes a probe. Refused, the connection goes back to the old credentials.
        let probe = match connect_with(&s, c.clone()) {
            Ok(url) => tokio::task::spawn_blocking(move || probe(&url)).await.map_err(|e| e.to_string()).and_then(|r| r),
            Err(e) => Err(e.message),
        };
        if let Err(why) = probe {
            reconnect(ctx, &s).await;
            return Err(Error::new(crate::ErrorCode::AuthFailed, format!("the new credentials do not reach \"{}\" ({why}); the old ones are kept", s.storage_name)));
        }
        what.push("credentials replaced".to_string());
    }
    let mut tx = ctx.pool.begin().await.map_err(|e| Error::catalog("start a transaction", &e))?;
    if change.make_default && !s.is_default {
        sqlx::query("UPDATE backup_storage SET is_default = (id = ?)").bind(&s.id).execute(&mut *tx).await.map_err(|e| Error::catalog("change the default storage", &e))?;
        what.push("made the default".into());
    }
    if let Some(active) = change.is_active.filter(|a| *a != s.is_active) {
        sqlx::query("UPDATE backup_storage SET is_active = ? WHERE id = ?").bind(active).bind(&s.id).execute(&mut *tx).await.map_err(|e| Error::catalog("change the storage", &e))?;
        what.push(if active { "activated".into() } else { "deactivated".into() });
    }
    if let Some(q) = change.quota_bytes {
        sqlx::query("UPDATE backup_storage SET total_capacity = ? WHERE id = ?").bind((q > 0).then_some(q)).bind(&s.id).execute(&mut *tx).await.map_err(|e| Error::catalog("change the quota", &e))?;
        what.push(if q > 0 { format!("quota {q} bytes") } else { "quota cleared".into() });
    }
    audit(&mut *tx, &ctx.operator_id(), "storage.update", &s.storage_name, "success", Some(&what.join(", "))).await?;
    // The keychain last, then the commit; either failing leaves the old credentials in use.
    let mut previous = None;
    if let Some(c) = &change.credentials {
        let account = storage_account(&s.id);
        let value = serde_json::to_string(c).map_err(|e| Error::new(crate::ErrorCode::Internal, e.to_string()).caused_by(&e))?;
        let old = {
            let account = account.clone();
            crate::secrets::run(&ctx.secrets, move |st| st.get(&account)).await
        };
        let set = match old {
            Ok(old) => {
                previous = Some(old);
                crate::secrets::run(&ctx.secrets, move |st| st.set(&account, &value)).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = set {
            reconnect(ctx, &s).await;
            return Err(e);
        }
    }
    if let Err(e) = tx.commit().await {
        if let Some(old) = previous {
            let account = storage_account(&s.id);
            let _ = crate::secrets::run(&ctx.secrets, move |st| match old {
                Some(old) => st.set(&account, &old),
                None => st.delete(&account),
            })
            .await;
            reconnect(ctx, &s).await;
        }
        return Err(Error::catalog("change the storage", &e));
    }
    find(ctx, &s.id).await
}

/// Removes a storage from the catalog (its files stay). Refused while a configuration uses it.
pub async fn remove(ctx: &Ctx, name_or_id: &str) -> Result<()> {
    crate::context::require(ctx, crate::context::Permission::ManageStorage, "storage.remove", name_or_id).await?;
    let s = find(ctx, name_or_id).await?;
    let users: Vec<String> = sqlx::query_scalar("SELECT configuration_name FROM backup_configurations WHERE storage_location = ?1 OR secondary_storage = ?1")
        .bind(&s.storage_name)
        .fetch_all(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("look for configurations using the storage", &e))?;
    if !users.is_empty() {
        return Err(Error::conflict(format!(
            "the storage \"{}\" is used by {}; change or delete those configurations first",
            s.storage_name,
            users.join(", ")
        )));
    }
    sqlx::query("DELETE FROM backup_storage WHERE id = ?").bind(&s.id).execute(&ctx.pool).await.map_err(|e| Error::catalog("remove the storage", &e))?;
    audit(&ctx.pool, &ctx.operator_id(), "storage.remove", &s.storage_name, "success", Some("the files were kept")).await?;
    // The credentials last: a removal that failed keeps them.
    let account = storage_account(&s.id);
    if s.storage_type != StorageType::Local {
        if let Err(e) = crate::secrets::run(&ctx.secrets, move |st| st.delete(&account)).await {
            tracing::warn!("the credentials of the removed storage {} stay in the keychain: {}", s.storage_name, e.message);
        }
    }
    Ok(())
}
