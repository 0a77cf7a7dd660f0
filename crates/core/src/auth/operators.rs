//! Operators, their roles and permissions, sign-in, and the check every engine call makes.
//!
//! The spec's roles and grants (`role_permissions`): a super admin may do everything, a platform
//! operator may trigger backups and see their status, a read-only admin may see the history. What
//! each engine function needs is stated once, in [`Permission`]'s documentation and
//! `docs/permissions.md`, and checked in the engine by [`require`] — for the app, the CLI acting
//! on the catalog and the scheduler alike — so hiding a button is never the only guard. Every
//! refusal is audited (`denied`), and so is every action that changes something or reads
//! backed-up data.
//!
//! Until the first super admin is created the workstation's built-in local administrator acts
//! (a catalog used by scripts before sign-in existed keeps working); afterwards nobody acts until
//! an operator signs in. Passwords are hashed with Argon2id; failed sign-ins slow down and lock the
//! operator after [`MAX_FAILURES`]; a session ends after the idle time set in the settings.

use std::time::Duration;

use serde::Serialize;
use sqlx::SqlitePool;
use ts_rs::TS;

use crate::archive::keys::{self, password_kek, KdfParams, KeySlot, SecretKey, Unlock};
use crate::catalog::{audit, now, LOCAL_OPERATOR_ID};
use crate::context::{end_session, Ctx};
pub use crate::context::{current, load, require, set_up, touch, Acting, Permission, Role, Session};
use crate::error::{Error, ErrorCode, Result};

/// Consecutive failed sign-ins that lock an operator.
pub const MAX_FAILURES: i64 = 5;
/// How long a locked operator stays locked.
pub const LOCK_MINUTES: i64 = 15;
/// The idle time after which a session ends, unless the settings say otherwise.
pub const DEFAULT_IDLE_SECONDS: u64 = 15 * 60;
const IDLE_SETTING: &str = "session_idle_seconds";

/// An operator as listed.
#[derive(Debug, Clone, Serialize, TS, sqlx::FromRow)]
pub struct Operator {
    pub id: String,
    pub name: String,
    pub role: String,
    pub is_active: bool,
    pub created_at: String,
    pub last_sign_in: Option<String>,
    pub locked_until: Option<String>,
    pub failed_attempts: i64,
}

// Password hashes: "argon2id$<m>$<t>$<p>$<salt hex>$<hash hex>".

/// A hash checked for unknown names, so that they take as long as known ones.
const DUMMY_HASH: &str = "argon2id$19456$2$1$00000000000000000000000000000000$0000000000000000000000000000000000000000000000000000000000000000";
fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
    let kdf = KdfParams::default();
    let h = password_kek(password, &salt, kdf)?;
    Ok(format!("argon2id${}${}${}${}${}", kdf.m_cost_kib, kdf.t_cost, kdf.p_cost, hex::encode(salt), hex::encode(h.0)))
}

fn verify_password(password: &str, stored: &str) -> bool {
    let parts: Vec<&str> = stored.split('$').collect();
    let [alg, m, t, p, salt, hash] = parts.as_slice() else { return false };
    if *alg != "argon2id" {
        return false;
    }
    let (Ok(m), Ok(t), Ok(p), Ok(salt), Ok(hash)) = (m.parse(), t.parse(), p.parse(), hex::decode(salt), hex::decode(hash)) else { return false };
    let Ok(h) = password_kek(password, &salt, KdfParams { m_cost_kib: m, t_cost: t, p_cost: p }) else { return false };
    // Constant time: every byte compared.
    h.0.len() == hash.len() && h.0.iter().zip(&hash).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

fn check_password_rules(password: &str) -> Result<()> {
    if password.chars().count() < 10 {
        return Err(Error::validation("the password needs at least 10 characters"));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<String> {
    let n = name.trim();
    if n.is_empty() {
        return Err(Error::validation("the operator needs a name"));
    }
    Ok(n.to_string())
}

fn operator_key_aad(operator_id: &str) -> Vec<u8> {
    format!("safehold-operator-key:{operator_id}").into_bytes()
}

/// Gives operator `id` a new X25519 key pair, its private key wrapped by `password`; returns
/// the private key.
async fn new_key_pair(pool: &SqlitePool, id: &str, password: &str) -> Result<SecretKey> {
    let (private, public, sealed) = sealed_key_pair(id, password).await?;
    sqlx::query("UPDATE operators SET public_key = ?, private_sealed = ? WHERE id = ?")
        .bind(&public)
        .bind(&sealed)
        .bind(id)
        .execute(pool)
        .await
        .map_err(|e| Error::catalog("store the operator's key", &e))?;
    Ok(private)
}

/// A new X25519 key pair for operator `id`: the private key, the public key, and the private
/// key wrapped by `password` (as stored in `private_sealed`).
async fn sealed_key_pair(id: &str, password: &str) -> Result<(SecretKey, String, String)> {
    let (private, public) = keys::x25519_pair();
    let slot = {
        let (p, k, aad) = (password.to_string(), private.clone(), operator_key_aad(id));
        tokio::task::spawn_blocking(move || keys::password_slot(&p, &k, &aad, KdfParams::default())).await.map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))??
    };
    let sealed = serde_json::to_string(&slot).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))?;
    Ok((private, public, sealed))
}

/// Operator `id`'s private key, opened with their (just checked) password; an operator from
/// before keys existed gets a key pair now. (A key that does not open — the password was set
/// anew — is replaced: what was sealed to the old one is sealed again by the next sweep of a
/// super admin who holds it.)
async fn open_key_pair(pool: &SqlitePool, id: &str, password: &str) -> Result<SecretKey> {
    let sealed: Option<String> = sqlx::query_scalar("SELECT private_sealed FROM operators WHERE id = ?")
        .bind(id)
        .fetch_one(pool)
        .await
        .map_err(|e| Error::catalog("read the operator's key", &e))?;
    if let Some(slot) = sealed.and_then(|j| serde_json::from_str::<KeySlot>(&j).ok()) {
        let (p, aad) = (password.to_string(), operator_key_aad(id));
        let opened = tokio::task::spawn_blocking(move || keys::open_master(&[slot], &Unlock::Password(p), &aad)).await.map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))??;
        if let Some(k) = opened {
            return Ok(k);
        }
    }
    new_key_pair(pool, id, password).await
}

/// Creates the first super admin (the first start of the app). The local administrator is
/// disabled, and the new operator acts in `ctx`.
pub async fn create_first(ctx: &Ctx, name: &str, password: &str) -> Result<Acting> {
    let name = check_name(name)?;
    check_password_rules(password)?;
    if set_up(&ctx.pool).await? {
        return Err(Error::new(ErrorCode::Conflict, "the first super admin exists already: sign in, and ask a super admin to add operators"));
    }
    let hash = tokio::task::spawn_blocking({
        let p = password.to_string();
        move || hash_password(&p)
    })
    .await
    .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))??;
    let id = uuid::Uuid::new_v4().to_string();
    let mut tx = ctx.pool.begin().await.map_err(|e| Error::catalog("create the operator", &e))?;
    // Created signed in: that is its first sign-in (the Operators tab said "never" before).
    let at = now();
    sqlx::query("INSERT INTO operators (id, name, role, password_hash, is_active, created_at, last_sign_in) VALUES (?, ?, 'super_admin', ?, 1, ?, ?)")
        .bind(&id)
        .bind(&name)
        .bind(&hash)
        .bind(&at)
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(|e| unique(e, &name))?;
    sqlx::query("UPDATE operators SET is_active = 0 WHERE id = ?").bind(LOCAL_OPERATOR_ID).execute(&mut *tx).await.map_err(|e| Error::catalog("disable the local administrator", &e))?;
    // Schedules run on behalf of their owner: the local administrator's become the new super
    // admin's, so they keep running.
    sqlx::query("UPDATE backup_configurations SET created_by = ? WHERE created_by = ?")
        .bind(&id)
        .bind(LOCAL_OPERATOR_ID)
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::catalog("hand the schedules over", &e))?;
    audit(&mut *tx, &id, "operator.create_first", &name, "success", Some("super_admin")).await?;
    tx.commit().await.map_err(|e| Error::catalog("create the operator", &e))?;
    let private = new_key_pair(&ctx.pool, &id, password).await?;
    let acting = load(&ctx.pool, &id).await?;
    let idle = idle_timeout(&ctx.pool).await?;
    if let Ok(mut s) = ctx.session.lock() {
        *s = Session::of(Some(acting.clone()), s.idle.or(Some(idle)));
        s.private = Some(private);
    }
    // The repositories' keys move from the keychain to the super admin.
    crate::keys::custody::sweep_quietly(ctx).await;
    Ok(acting)
}

fn unique(e: sqlx::Error, name: &str) -> Error {
    if e.as_database_error().is_some_and(|d| d.is_unique_violation()) {
        Error::new(ErrorCode::Conflict, format!("an operator is named \"{name}\" already: choose another name")).caused_by(&e)
    } else {
        Error::catalog("write the operator", &e)
    }
}

/// The idle time after which an app session ends (settings: `session_idle_seconds`).
pub async fn idle_timeout(pool: &SqlitePool) -> Result<Duration> {
    let v = crate::catalog::setting(pool, IDLE_SETTING).await?;
    Ok(Duration::from_secs(v.and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_IDLE_SECONDS)))
}

/// Sets the idle time after which app sessions end (super admins).
pub async fn set_idle_timeout(ctx: &Ctx, seconds: u64) -> Result<()> {
    let who = require(ctx, Permission::ManageAll, "settings.session_idle", &seconds.to_string()).await?;
    if seconds < 1 {
        return Err(Error::validation("the idle time must be at least one second"));
    }
    crate::catalog::set_setting(&ctx.pool, IDLE_SETTING, &seconds.to_string()).await?;
    audit(&ctx.pool, &who.id, "settings.session_idle", &seconds.to_string(), "success", None).await?;
    if let Ok(mut s) = ctx.session.lock() {
        if s.idle.is_some() {
            s.idle = Some(Duration::from_secs(seconds));
        }
    }
    Ok(())
}

/// id, password hash, active, failures in a row, locked until.
type SignInRow = (String, Option<String>, bool, i64, Option<String>);

/// Signs `name` in (`idle`: whether the session ends when idle — the app's do, the CLI's one
/// command does not). Wrong passwords slow down, and lock the operator after [`MAX_FAILURES`].
pub async fn sign_in(ctx: &Ctx, name: &str, password: &str, idle: bool) -> Result<Acting> {
    let name = name.trim();
    let row: Option<SignInRow> =
        sqlx::query_as("SELECT id, password_hash, is_active, failed_attempts, locked_until FROM operators WHERE name = ?")
            .bind(name)
            .fetch_optional(&ctx.pool)
            .await
            .map_err(|e| Error::catalog("read the operator", &e))?;
    let wrong = || Error::new(ErrorCode::AuthFailed, format!("wrong operator name or password for \"{name}\""));
    let locked = |until: &str| Error::new(ErrorCode::PermissionDenied, format!("\"{name}\" is locked after {MAX_FAILURES} failed sign-ins until {until}; try again later or ask a super admin to unlock it"));
    let at = now();
    let Some((id, hash, active, _, locked_until)) = row else {
        // A name that is no operator's is answered as a known one would be: as slow, slower with
        // each failure, locked after as many. The typed name is not recorded (it may be a
        // password typed into the wrong field), only a salted hash of it.
        let key = stranger_key(&ctx.pool, name).await?;
        let until: Option<String> = sqlx::query_scalar("SELECT locked_until FROM sign_in_strangers WHERE name_hash = ?")
            .bind(&key)
            .fetch_optional(&ctx.pool)
            .await
            .map_err(|e| Error::catalog("read the failed sign-ins", &e))?
            .flatten();
        if let Some(until) = until.filter(|u| *u > at) {
            audit(&ctx.pool, LOCAL_OPERATOR_ID, "operator.sign_in", "(unknown operator)", "denied", Some("no such operator; locked like one")).await?;
            return Err(locked(&until));
        }
        let p = password.to_string();
        let _ = tokio::task::spawn_blocking(move || verify_password(&p, DUMMY_HASH)).await;
        let failures: i64 = sqlx::query_scalar(
            "INSERT INTO sign_in_strangers (name_hash, failed_attempts) VALUES (?, 1) \
             ON CONFLICT (name_hash) DO UPDATE SET failed_attempts = failed_attempts + 1 RETURNING failed_attempts",
        )
        .bind(&key)
        .fetch_one(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("record the failed sign-in", &e))?;
        audit(&ctx.pool, LOCAL_OPERATOR_ID, "operator.sign_in", "(unknown operator)", "failure", Some("no such operator")).await?;
        tokio::time::sleep(delay(failures)).await;
        if failures >= MAX_FAILURES {
            let until = (chrono::Utc::now() + chrono::Duration::minutes(LOCK_MINUTES)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            sqlx::query("UPDATE sign_in_strangers SET failed_attempts = 0, locked_until = ? WHERE name_hash = ?")
                .bind(&until)
                .bind(&key)
                .execute(&ctx.pool)
                .await
                .map_err(|e| Error::catalog("record the failed sign-in", &e))?;
            return Err(Error::new(ErrorCode::PermissionDenied, format!("wrong password: \"{name}\" is now locked until {until} after {MAX_FAILURES} failed sign-ins")));
        }
        return Err(wrong());
    };
    if let Some(until) = locked_until.filter(|u| *u > at) {
        audit(&ctx.pool, &id, "operator.sign_in", name, "denied", Some(&format!("locked until {until}"))).await?;
        return Err(locked(&until));
    }
    let ok = match hash {
        Some(h) => {
            let p = password.to_string();
            tokio::task::spawn_blocking(move || verify_password(&p, &h)).await.unwrap_or(false)
        }
        None => false,
    };
    // Whether the operator is disabled is said only to whoever knows the password: to anyone
    // else a disabled operator's name is answered as any wrong sign-in.
    if ok && !active {
        audit(&ctx.pool, &id, "operator.sign_in", name, "denied", Some("disabled")).await?;
        return Err(Error::new(ErrorCode::PermissionDenied, format!("the operator \"{name}\" is disabled; ask a super admin")));
    }
    if !ok {
        // Counted in one statement: sign-ins tried in parallel cannot share a count.
        let failures: i64 = sqlx::query_scalar("UPDATE operators SET failed_attempts = failed_attempts + 1 WHERE id = ? RETURNING failed_attempts")
            .bind(&id)
            .fetch_one(&ctx.pool)
            .await
            .map_err(|e| Error::catalog("record the failed sign-in", &e))?;
        let lock = if failures >= MAX_FAILURES { Some(lock_out(&ctx.pool, &id).await?) } else { None };
        audit(&ctx.pool, &id, "operator.sign_in", name, "failure", Some(&format!("wrong password ({failures} in a row)"))).await?;
        tokio::time::sleep(delay(failures)).await;
        if let Some(until) = lock {
            return Err(Error::new(ErrorCode::PermissionDenied, format!("wrong password: \"{name}\" is now locked until {until} after {MAX_FAILURES} failed sign-ins")));
        }
        return Err(wrong());
    }
    sqlx::query("UPDATE operators SET failed_attempts = 0, locked_until = NULL, last_sign_in = ? WHERE id = ?")
        .bind(&at)
        .bind(&id)
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("record the sign-in", &e))?;
    audit(&ctx.pool, &id, "operator.sign_in", name, "success", None).await?;
    let private = open_key_pair(&ctx.pool, &id, password).await?;
    let acting = load(&ctx.pool, &id).await?;
    let idle = if idle { Some(idle_timeout(&ctx.pool).await?) } else { None };
    let super_admin = acting.role == Role::SuperAdmin;
    if let Ok(mut s) = ctx.session.lock() {
        *s = Session::of(Some(acting.clone()), idle);
        // Only a super admin's key opens anything; the others' stays closed.
        s.private = super_admin.then_some(private);
    }
    if super_admin {
        crate::keys::custody::sweep_quietly(ctx).await;
    }
    Ok(acting)
}

/// The key failed sign-ins under an unknown name are counted by: SHA-256 of a salt kept in the
/// catalog and the name.
async fn stranger_key(pool: &SqlitePool, name: &str) -> Result<String> {
    let salt: Option<String> = sqlx::query_scalar("SELECT value FROM app_settings WHERE key = 'sign_in_salt'")
        .fetch_optional(pool)
        .await
        .map_err(|e| Error::catalog("read the settings", &e))?;
    let salt = match salt {
        Some(s) => s,
        None => {
            let mut b = [0u8; 16];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
            sqlx::query("INSERT INTO app_settings (key, value) VALUES ('sign_in_salt', ?) ON CONFLICT (key) DO NOTHING")
                .bind(hex::encode(b))
                .execute(pool)
                .await
                .map_err(|e| Error::catalog("write the settings", &e))?;
            sqlx::query_scalar("SELECT value FROM app_settings WHERE key = 'sign_in_salt'").fetch_one(pool).await.map_err(|e| Error::catalog("read the settings", &e))?
        }
    };
    use sha2::Digest;
    Ok(hex::encode(sha2::Sha256::digest(format!("{salt}\n{}", name.to_lowercase()).as_bytes())))
}

/// Locks operator `id` for [`LOCK_MINUTES`] (after [`MAX_FAILURES`] wrong passwords in a row);
/// returns until when.
async fn lock_out(pool: &SqlitePool, id: &str) -> Result<String> {
    let until = (chrono::Utc::now() + chrono::Duration::minutes(LOCK_MINUTES)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    sqlx::query("UPDATE operators SET failed_attempts = 0, locked_until = ? WHERE id = ?")
        .bind(&until)
        .bind(id)
        .execute(pool)
        .await
        .map_err(|e| Error::catalog("lock the operator", &e))?;
    Ok(until)
}

/// The pause after the n-th failed sign-in in a row: 0.2 s doubling, at most 3.2 s.
fn delay(failures: i64) -> Duration {
    Duration::from_millis(200u64 << failures.clamp(1, 5).saturating_sub(1))
}

/// Ends the session.
pub async fn sign_out(ctx: &Ctx) -> Result<()> {
    let who = ctx.session.lock().ok().and_then(|mut s| s.end());
    if let Some(a) = who {
        audit(&ctx.pool, &a.id, "operator.sign_out", &a.name, "success", None).await?;
    }
    Ok(())
}

const LIST_SQL: &str = "SELECT id, name, role, is_active, created_at, last_sign_in, locked_until, failed_attempts FROM operators";

/// Every operator (super admins).
pub async fn list(ctx: &Ctx) -> Result<Vec<Operator>> {
    require(ctx, Permission::ManageAll, "operator.list", "operators").await?;
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{LIST_SQL} ORDER BY name"))).fetch_all(&ctx.pool).await.map_err(|e| Error::catalog("list the operators", &e))
}

async fn find(ctx: &Ctx, name_or_id: &str) -> Result<Operator> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{LIST_SQL} WHERE id = ? OR name = ?")))
        .bind(name_or_id)
        .bind(name_or_id)
        .fetch_optional(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("read the operator", &e))?
        .ok_or_else(|| Error::not_found(format!("no operator is named \"{name_or_id}\"")))
}

/// Adds an operator (super admins).
pub async fn add(ctx: &Ctx, name: &str, role: Role, password: &str) -> Result<Operator> {
    let who = require(ctx, Permission::ManageAll, "operator.add", name).await?;
    let name = check_name(name)?;
    check_password_rules(password)?;
    let p = password.to_string();
    let hash = tokio::task::spawn_blocking(move || hash_password(&p)).await.map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))??;
    let id = uuid::Uuid::new_v4().to_string();
    let mut tx = ctx.pool.begin().await.map_err(|e| Error::catalog("add the operator", &e))?;
    sqlx::query("INSERT INTO operators (id, name, role, password_hash, is_active, created_at) VALUES (?, ?, ?, ?, 1, ?)")
        .bind(&id)
        .bind(&name)
        .bind(role.as_str())
        .bind(&hash)
        .bind(now())
        .execute(&mut *tx)
        .await
        .map_err(|e| unique(e, &name))?;
    audit(&mut *tx, &who.id, "operator.add", &name, "success", Some(role.as_str())).await?;
    tx.commit().await.map_err(|e| Error::catalog("add the operator", &e))?;
    new_key_pair(&ctx.pool, &id, password).await?;
    if role == Role::SuperAdmin {
        crate::keys::custody::sweep_quietly(ctx).await;
    }
    find(ctx, &id).await
}

/// The signed-in operator changes their own password: the current one is checked (a wrong one
/// is refused and audited), and their private key is wrapped anew by the new one — the same key,
/// so every repository sealed to them still opens.
pub async fn change_password(ctx: &Ctx, current_password: &str, new_password: &str) -> Result<()> {
    let me = current(ctx)?;
    if me.background || me.id == crate::catalog::LOCAL_OPERATOR_ID {
        return Err(Error::new(ErrorCode::PermissionDenied, "sign in as an operator to change your password"));
    }
    check_password_rules(new_password)?;
    let stored: Option<String> = sqlx::query_scalar("SELECT password_hash FROM operators WHERE id = ? AND is_active = 1")
        .bind(&me.id)
        .fetch_optional(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("read the operator", &e))?
        .flatten();
    let ok = {
        let (p, h) = (current_password.to_string(), stored.clone().unwrap_or_else(|| DUMMY_HASH.to_string()));
        tokio::task::spawn_blocking(move || verify_password(&p, &h)).await.map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))?
    };
    if !ok || stored.is_none() {
        // Counted, slowed down and locked like sign-ins: an unattended session is no way to guess.
        let failures: i64 = sqlx::query_scalar("UPDATE operators SET failed_attempts = failed_attempts + 1 WHERE id = ? RETURNING failed_attempts")
            .bind(&me.id)
            .fetch_one(&ctx.pool)
            .await
            .map_err(|e| Error::catalog("record the failed attempt", &e))?;
        audit(&ctx.pool, &me.id, "operator.change_password", &me.name, "failure", Some(&format!("the current password was wrong ({failures} in a row)"))).await?;
        tokio::time::sleep(delay(failures)).await;
        if failures >= MAX_FAILURES {
            let until = lock_out(&ctx.pool, &me.id).await?;
            end_session(ctx, format!("\"{}\" is locked until {until} after {MAX_FAILURES} wrong passwords", me.name));
            return Err(Error::new(ErrorCode::PermissionDenied, format!("wrong password: \"{}\" is now locked until {until} and signed out", me.name)));
        }
        return Err(Error::new(ErrorCode::AuthFailed, "the current password is wrong; nothing was changed"));
    }
    let private = open_key_pair(&ctx.pool, &me.id, current_password).await?;
    let (hash, slot) = {
        let (p, k, aad) = (new_password.to_string(), private, operator_key_aad(&me.id));
        tokio::task::spawn_blocking(move || Ok::<_, Error>((hash_password(&p)?, keys::password_slot(&p, &k, &aad, KdfParams::default())?)))
            .await
            .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))??
    };
    let sealed = serde_json::to_string(&slot).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))?;
    let mut tx = ctx.pool.begin().await.map_err(|e| Error::catalog("change the password", &e))?;
    sqlx::query("UPDATE operators SET password_hash = ?, private_sealed = ?, failed_attempts = 0 WHERE id = ?")
        .bind(&hash)
        .bind(&sealed)
        .bind(&me.id)
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::catalog("change the password", &e))?;
    audit(&mut *tx, &me.id, "operator.change_password", &me.name, "success", None).await?;
    tx.commit().await.map_err(|e| Error::catalog("change the password", &e))
}

/// A super admin sets a new password for another operator who forgot theirs (and unlocks them).
/// Their old private key is lost with the old password: they get a new key pair, their old key's
/// slots are removed and — for a super admin — the repositories are sealed to the new key (by
/// the acting super admin's key, now or at the next super admin sign-in).
pub async fn reset_password(ctx: &Ctx, name_or_id: &str, new_password: &str) -> Result<Operator> {
    let who = require(ctx, Permission::ManageAll, "operator.reset_password", name_or_id).await?;
    let op = find(ctx, name_or_id).await?;
    if op.id == who.id {
        return Err(Error::validation("to change your own password, use Change password (it keeps your key)"));
    }
    if op.id == crate::catalog::LOCAL_OPERATOR_ID {
        return Err(Error::validation("the local administrator has no password to reset"));
    }
    check_password_rules(new_password)?;
    let old_key: Option<String> = sqlx::query_scalar("SELECT public_key FROM operators WHERE id = ?").bind(&op.id).fetch_one(&ctx.pool).await.map_err(|e| Error::catalog("read the operator", &e))?;
    let p = new_password.to_string();
    let hash = tokio::task::spawn_blocking(move || hash_password(&p)).await.map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))??;
    let (_, public, sealed) = sealed_key_pair(&op.id, new_password).await?;
    let mut tx = ctx.pool.begin().await.map_err(|e| Error::catalog("reset the password", &e))?;
    sqlx::query("UPDATE operators SET password_hash = ?, public_key = ?, private_sealed = ?, failed_attempts = 0, locked_until = NULL WHERE id = ?")
        .bind(&hash)
        .bind(&public)
        .bind(&sealed)
        .bind(&op.id)
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::catalog("reset the password", &e))?;
    if let Some(old) = &old_key {
        // Kept, so that every later sweep removes its slots (repositories offline now included).
        sqlx::query("INSERT OR IGNORE INTO retired_keys (public_key, operator_id, retired_at) VALUES (?, ?, ?)")
            .bind(old)
            .bind(&op.id)
            .bind(now())
            .execute(&mut *tx)
            .await
            .map_err(|e| Error::catalog("retire the old key", &e))?;
    }
    audit(&mut *tx, &who.id, "operator.reset_password", &op.name, "success", Some("new password and key pair; the old key's slots are removed")).await?;
    tx.commit().await.map_err(|e| Error::catalog("reset the password", &e))?;
    if let Err(e) = crate::keys::custody::sweep_with(ctx, old_key.as_slice()).await {
        tracing::warn!("the repositories' keys could not be brought in step with the super admins: {}", e.message);
    }
    find(ctx, &op.id).await
}

/// Fails when the change would leave no active super admin who can sign in.
async fn keep_a_super_admin(ctx: &Ctx, changed: &str) -> Result<()> {
    let others: i64 = sqlx::query_scalar("SELECT count(*) FROM operators WHERE role = 'super_admin' AND is_active = 1 AND password_hash IS NOT NULL AND id <> ?")
        .bind(changed)
        .fetch_one(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("read the operators", &e))?;
    if others == 0 {
        return Err(Error::validation("this is the last active super admin: add another super admin first"));
    }
    Ok(())
}

/// Sets an operator's role (super admins).
pub async fn set_role(ctx: &Ctx, name_or_id: &str, role: Role) -> Result<Operator> {
    let who = require(ctx, Permission::ManageAll, "operator.set_role", name_or_id).await?;
    let op = find(ctx, name_or_id).await?;
    if op.role == "super_admin" && role != Role::SuperAdmin {
        keep_a_super_admin(ctx, &op.id).await?;
    }
    sqlx::query("UPDATE operators SET role = ? WHERE id = ?").bind(role.as_str()).bind(&op.id).execute(&ctx.pool).await.map_err(|e| Error::catalog("change the role", &e))?;
    audit(&ctx.pool, &who.id, "operator.set_role", &op.name, "success", Some(&format!("{} → {}", op.role, role.as_str()))).await?;
    crate::keys::custody::sweep_quietly(ctx).await;
    find(ctx, &op.id).await
}

/// Enables or disables an operator; enabling also unlocks (super admins).
pub async fn set_active(ctx: &Ctx, name_or_id: &str, active: bool) -> Result<Operator> {
    let action = if active { "operator.enable" } else { "operator.disable" };
    let who = require(ctx, Permission::ManageAll, action, name_or_id).await?;
    let op = find(ctx, name_or_id).await?;
    if !active && op.role == "super_admin" {
        keep_a_super_admin(ctx, &op.id).await?;
    }
    sqlx::query("UPDATE operators SET is_active = ?, failed_attempts = 0, locked_until = NULL WHERE id = ?")
        .bind(active)
        .bind(&op.id)
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("change the operator", &e))?;
    audit(&ctx.pool, &who.id, action, &op.name, "success", None).await?;
    crate::keys::custody::sweep_quietly(ctx).await;
    find(ctx, &op.id).await
}

/// Removes an operator. One who started jobs or wrote configurations stays in the history,
/// disabled, under their name (super admins).
pub async fn remove(ctx: &Ctx, name_or_id: &str) -> Result<()> {
    let who = require(ctx, Permission::ManageAll, "operator.remove", name_or_id).await?;
    let op = find(ctx, name_or_id).await?;
    if op.id == who.id {
        return Err(Error::validation("you cannot remove yourself: ask another super admin"));
    }
    if op.role == "super_admin" {
        keep_a_super_admin(ctx, &op.id).await?;
    }
    let key: Option<String> = sqlx::query_scalar("SELECT public_key FROM operators WHERE id = ?").bind(&op.id).fetch_one(&ctx.pool).await.map_err(|e| Error::catalog("read the operator", &e))?;
    let deleted = sqlx::query("DELETE FROM operators WHERE id = ?").bind(&op.id).execute(&ctx.pool).await;
    let detail = match deleted {
        Ok(_) => "removed",
        Err(e) if e.as_database_error().is_some_and(|d| d.is_foreign_key_violation()) => {
            sqlx::query("UPDATE operators SET is_active = 0, password_hash = NULL WHERE id = ?")
                .bind(&op.id)
                .execute(&ctx.pool)
                .await
                .map_err(|e| Error::catalog("remove the operator", &e))?;
            "disabled and kept in the history (they started jobs or wrote configurations)"
        }
        Err(e) => return Err(Error::catalog("remove the operator", &e)),
    };
    audit(&ctx.pool, &who.id, "operator.remove", &op.name, "success", Some(detail)).await?;
    // Their key no longer opens the repositories.
    if let Err(e) = crate::keys::custody::sweep_with(ctx, key.as_slice()).await {
        tracing::warn!("the repositories' keys could not be brought in step with the super admins: {}", e.message);
    }
    Ok(())
}

/// Who is signed in, if anybody (for the app's header); `needs_setup` when the first super admin
/// is still to be created.
#[derive(Debug, Clone, Serialize, TS)]
pub struct SessionInfo {
    pub needs_setup: bool,
    pub operator: Option<Acting>,
    /// Why the last session ended, when it ended by itself.
    pub ended: Option<String>,
}

pub async fn session_info(ctx: &Ctx) -> Result<SessionInfo> {
    let needs_setup = !set_up(&ctx.pool).await?;
    // Looking does not keep the session alive.
    let s = ctx.session.lock().map_err(|_| Error::new(ErrorCode::Internal, "the session lock is poisoned"))?;
    let expired = matches!((s.idle, &s.acting), (Some(idle), Some(_)) if s.last_active.elapsed() > idle);
    let operator = if expired { None } else { s.acting.clone() };
    let ended = if expired { Some("the session ended after its idle time; sign in again".to_string()) } else { s.ended.clone() };
    Ok(SessionInfo { needs_setup, operator, ended })
}
