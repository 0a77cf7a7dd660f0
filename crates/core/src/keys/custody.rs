//! Who holds the repositories' keys. Before anybody signs in, a repository's secret lives in the
//! OS keychain of the workstation's user (whoever uses the app can read its backups). Once the
//! first super admin exists, every repository's master key is **sealed to each active super
//! admin's own X25519 public key** (their private key is stored wrapped by their sign-in password)
//! and its secret is **taken out of the keychain**: from then on only a signed-in super admin, or
//! the recovery kit, can read a backup — whatever the engine's permission checks say, the other
//! operators' sessions hold no key. Backups need no key (they are sealed to the repository's
//! public key), so platform operators and the scheduler keep backing up.
//!
//! [`sweep`] keeps the slots in step with the roles: it runs when a super admin signs in or is
//! created, and after every change of operators, roles or activity. Repositories it cannot reach
//! (storage offline) are brought in step at a later sweep; until then their secret stays where it
//! was.

use sqlx::SqlitePool;

use crate::archive::keys::{SecretKey, Unlock};
use crate::catalog::audit;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::repository::{keychain_account, Repository};
use crate::keys::unlock::KeySources;

/// The keys a context acts with: the keychain (repositories from before operators, storage
/// credentials), the signed-in super admin's private key, and the super admins' public keys a
/// new repository is sealed to.
pub async fn key_sources(ctx: &Ctx) -> Result<KeySources> {
    let own = held_key(&ctx.pool, &ctx.session).await?;
    let operator_key = match (own, &ctx.keys_of) {
        (Some(k), _) => Some(k),
        (None, Some(parent)) => held_key(&ctx.pool, parent).await?,
        (None, None) => None,
    };
    // (Empty until the first super admin exists: the local administrator has no key.)
    let custodians = super_admin_keys(&ctx.pool).await?;
    let writer = Some(crate::writers::WriterKey::for_home(&ctx.home)?);
    // Backups this catalog recorded before archives were signed: their checksums vouch for them.
    let vouched: Vec<String> = sqlx::query_scalar("SELECT checksum FROM backup_executions WHERE status = 'completed' AND checksum IS NOT NULL AND json_extract(coalesce(metadata, '{}'), '$.writer') IS NULL")
        .fetch_all(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("read the recorded checksums", &e))?;
    Ok(KeySources { keychain: Some(ctx.secrets.clone()), operator_key, custodians, writer, vouched: vouched.into_iter().collect(), ..Default::default() })
}

/// A session's super admin key — if its operator still is an active super admin in the catalog
/// (a demoted or disabled operator's open session lets go of it).
async fn held_key(pool: &SqlitePool, session: &std::sync::Arc<std::sync::Mutex<crate::context::Session>>) -> Result<Option<SecretKey>> {
    let (id, key) = match session.lock() {
        Ok(s) => match (&s.acting, &s.private) {
            (Some(a), Some(k)) => (a.id.clone(), k.clone()),
            _ => return Ok(None),
        },
        Err(_) => return Ok(None),
    };
    let still: bool = sqlx::query_scalar("SELECT count(*) > 0 FROM operators WHERE id = ? AND role = 'super_admin' AND is_active = 1 AND password_hash IS NOT NULL")
        .bind(&id)
        .fetch_one(pool)
        .await
        .map_err(|e| Error::catalog("read the operator", &e))?;
    if still {
        return Ok(Some(key));
    }
    if let Ok(mut s) = session.lock() {
        s.private = None;
    }
    Ok(None)
}

/// The public keys of the active super admins.
pub async fn super_admin_keys(pool: &SqlitePool) -> Result<Vec<String>> {
    sqlx::query_scalar("SELECT public_key FROM operators WHERE role = 'super_admin' AND is_active = 1 AND password_hash IS NOT NULL AND public_key IS NOT NULL ORDER BY created_at")
        .fetch_all(pool)
        .await
        .map_err(|e| Error::catalog("read the super admins' keys", &e))
}

/// The public keys of operators who are not active super admins (any more), and keys a password
/// reset retired.
async fn other_keys(pool: &SqlitePool) -> Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT public_key FROM operators WHERE public_key IS NOT NULL AND NOT (role = 'super_admin' AND is_active = 1 AND password_hash IS NOT NULL) \
         UNION SELECT public_key FROM retired_keys",
    )
    .fetch_all(pool)
        .await
        .map_err(|e| Error::catalog("read the operators' keys", &e))
}

/// What a sweep did.
#[derive(Debug, Default, Clone)]
pub struct Sweep {
    /// Repositories whose master key is now sealed to the current super admins.
    pub updated: Vec<String>,
    /// Repositories whose secret was taken out of the keychain.
    pub withheld: Vec<String>,
    /// Repositories that could not be reached or opened, with why.
    pub skipped: Vec<(String, String)>,
}

/// Brings every repository of the catalog's storage in step with the super admins: seals its
/// master key to each active super admin who does not hold it, removes the slots of operators who
/// are no longer super admins, and takes its secret out of the keychain once super admins hold it.
/// The master key comes from the keychain (repositories from before) or from the signed-in super
/// admin's own key. Does nothing before the first super admin exists (nobody has a key).
pub async fn sweep(ctx: &Ctx) -> Result<Sweep> {
    sweep_with(ctx, &[]).await
}

/// A [`sweep`] that also removes the slots of `gone` (the key of an operator just removed).
pub async fn sweep_with(ctx: &Ctx, gone: &[String]) -> Result<Sweep> {
    let mut out = Sweep::default();
    let admins = super_admin_keys(&ctx.pool).await?;
    if admins.is_empty() {
        return Ok(out);
    }
    let mut others = other_keys(&ctx.pool).await?;
    others.extend(gone.iter().cloned());
    let operator_key = ctx.session.lock().ok().and_then(|s| s.private.clone());
    let who = ctx.session.lock().ok().and_then(|s| s.acting.as_ref().map(|a| a.id.clone())).unwrap_or_else(|| crate::catalog::LOCAL_OPERATOR_ID.into());
    let mut places: Vec<(String, Result<Option<Repository>>)> = Vec::new();
    for store in crate::storage::all(&ctx.pool).await? {
        places.push((store.storage_name.clone(), repository_of(ctx, &store).await));
    }
    // Repositories ad-hoc commands used (named by path): their secret may be in the keychain too.
    for location in known_locations(&ctx.pool).await? {
        let dir = std::path::PathBuf::from(&location);
        let opened = tokio::task::spawn_blocking(move || Repository::open(&dir)).await.map_err(|e| Error::new(crate::error::ErrorCode::Internal, e.to_string()).caused_by(&e)).and_then(|r| r);
        places.push((location, opened));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (name, opened) in places {
        let repo = match opened {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                out.skipped.push((name, e.message));
                continue;
            }
        };
        if !seen.insert(repo.id().to_string()) {
            continue;
        }
        bring_in_step(ctx, &name, repo, &admins, &others, operator_key.as_ref(), &who, &mut out).await?;
    }
    for (name, why) in &out.skipped {
        tracing::warn!("the keys of storage {name} could not be brought in step with the super admins: {why}");
    }
    Ok(out)
}

/// Seals one repository's master key to the super admins (and takes the slots of the others
/// away); once every super admin holds it, takes its secret out of the keychain.
#[allow(clippy::too_many_arguments)]
async fn bring_in_step(ctx: &Ctx, name: &str, repo: Repository, admins: &[String], others: &[String], operator_key: Option<&SecretKey>, who: &str, out: &mut Sweep) -> Result<()> {
    let name = name.to_string();
    let account = keychain_account(repo.id());
    let in_keychain: Option<String> = {
        let account = account.clone();
        crate::secrets::run(&ctx.secrets, move |s| s.get(&account)).await.ok().flatten()
    };
    // (Key derivation and file writes off the async threads.)
    let mk = {
        let (r, kc, ok) = (repo.clone(), in_keychain.clone(), operator_key.cloned());
        tokio::task::spawn_blocking(move || open_master(&r, kc.as_deref(), ok.as_ref())).await.ok().flatten()
    };
    let Some(mk) = mk else {
        if in_keychain.is_some() {
            out.skipped.push((name, "the keychain's secret does not open it".into()));
        }
        return Ok(());
    };
    // The workstation a super admin works at is one whose backups they vouch for: its writer
    // key is approved into the repository.
    let writer = crate::writers::WriterKey::for_home(&ctx.home).ok();
    let result = {
        let (mut r, admins, others) = (repo, admins.to_vec(), others.to_vec());
        tokio::task::spawn_blocking(move || {
            let changed = r.set_custodians(&mk, &admins, &others)?;
            let approved = match &writer {
                Some(w) => r.approve_writer(&mk, &w.public_hex(), &w.name)?,
                None => false,
            };
            Ok::<_, Error>((r, changed || approved))
        })
            .await
            .map_err(|e| Error::new(crate::error::ErrorCode::Internal, e.to_string()).caused_by(&e))
            .and_then(|r| r)
    };
    let repo = match result {
        Ok((r, changed)) => {
            if changed {
                out.updated.push(name.clone());
            }
            r
        }
        Err(e) => {
            out.skipped.push((name, e.message));
            return Ok(());
        }
    };
    if in_keychain.is_some() && admins.iter().all(|k| repo.custodians().contains(k)) {
        crate::secrets::run(&ctx.secrets, move |s| s.delete(&account)).await?;
        audit(&ctx.pool, who, "key.withhold", &name, "success", Some("the repository's key is held by the super admins only")).await?;
        out.withheld.push(name);
    }
    Ok(())
}

async fn known_locations(pool: &SqlitePool) -> Result<Vec<String>> {
    sqlx::query_scalar("SELECT location FROM known_repositories ORDER BY first_seen").fetch_all(pool).await.map_err(|e| Error::catalog("read the known repositories", &e))
}

/// Remembers a repository a command named by path used: the sweeps keep it in step with the
/// super admins like a registered storage's.
pub async fn remember(ctx: &Ctx, repo: &Repository) -> Result<()> {
    let location = std::fs::canonicalize(&repo.dir).unwrap_or_else(|_| repo.dir.clone()).display().to_string();
    let now = crate::catalog::now();
    sqlx::query(
        "INSERT INTO known_repositories (location, repository_id, first_seen, last_seen) VALUES (?, ?, ?, ?) \
         ON CONFLICT (location) DO UPDATE SET repository_id = excluded.repository_id, last_seen = excluded.last_seen",
    )
    .bind(location)
    .bind(repo.id())
    .bind(&now)
    .bind(&now)
    .execute(&ctx.pool)
    .await
    .map_err(|e| Error::catalog("remember the repository", &e))?;
    Ok(())
}

/// The commands that act on a repository or an archive named by path (the command line's
/// `backup`, `restore`, `verify`, `ls`, `inspect`, `key`), each with the permission it needs and
/// the action its audit entry names: the engine's policy, not its callers'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adhoc {
    Backup,
    RestorePlan,
    Restore,
    Verify,
    VerifyDeep,
    VerifyByRestoring,
    List,
    Inspect,
    ExportRecovery,
    Writers,
    ApproveWriter,
    /// Continuous protection: start, run, stop.
    Protect,
}

impl Adhoc {
    pub fn permission(self) -> crate::context::Permission {
        use crate::context::Permission::*;
        match self {
            Self::Backup | Self::Verify | Self::Protect => TriggerManual,
            Self::RestorePlan | Self::Restore | Self::VerifyDeep | Self::VerifyByRestoring | Self::ExportRecovery | Self::ApproveWriter => RestoreData,
            Self::List | Self::Inspect | Self::Writers => ViewHistory,
        }
    }
    /// The audit log's name for it.
    pub fn action(self) -> &'static str {
        match self {
            Self::Backup => "backup.adhoc",
            Self::RestorePlan => "restore.plan",
            Self::Restore => "restore.start",
            Self::Verify => "backup.verify",
            Self::VerifyDeep => "backup.verify_deep",
            Self::VerifyByRestoring => "backup.verify_restore",
            Self::List => "backup.list",
            Self::Inspect => "backup.inspect",
            Self::ExportRecovery => "key.export_recovery",
            Self::Writers => "key.writers",
            Self::ApproveWriter => "key.approve_writer",
            Self::Protect => "backup.protect",
        }
    }
    /// Whether a success is audited too (looking at a listing or a header is not).
    pub fn audits_success(self) -> bool {
        !matches!(self, Self::List | Self::Inspect)
    }
}

/// An ad-hoc command (a repository or an archive named by path rather than a registered
/// storage): the acting operator's permission is checked (a refusal audited), the repository is
/// remembered and — when a super admin is signed in — sealed to the super admins at once, and the
/// keys this operator may use are returned: the ones given on the command line, the signed-in
/// super admin's own key, and the workstation's keychain only until the first super admin exists
/// (afterwards it holds no repository's secret that anyone may use).
pub async fn adhoc(ctx: &Ctx, what: Adhoc, target: &str, given: &KeySources, repo_dir: Option<&std::path::Path>) -> Result<(crate::context::Acting, KeySources)> {
    let who = crate::context::require(ctx, what.permission(), what.action(), target).await?;
    let keys = keys_for(ctx, given).await?;
    let operators_exist = crate::context::set_up(&ctx.pool).await?;
    if let Some(dir) = repo_dir {
        if let Some(repo) = repository_at(dir).await {
            remember(ctx, &repo).await?;
            // What a killed backup into it left (a file no live process is writing).
            let gone = crate::storage::backend::at(&repo.archives_dir())?.sweep_partials();
            if !gone.is_empty() {
                audit(&ctx.pool, &who.id, "jobs.recover", &repo.dir.display().to_string(), "success", Some(&format!("{} partial archives of stopped backups removed", gone.len()))).await?;
            }
            if operators_exist && keys.operator_key.is_some() {
                let admins = super_admin_keys(&ctx.pool).await?;
                let others = other_keys(&ctx.pool).await?;
                let mut out = Sweep::default();
                bring_in_step(ctx, &dir.display().to_string(), repo, &admins, &others, keys.operator_key.as_ref(), &who.id, &mut out).await?;
            }
        }
    }
    Ok((who, keys))
}

/// The keys a command given on the command line may use: the files it names, the signed-in super
/// admin's own key, and the workstation's keychain only until the first super admin exists.
pub async fn keys_for(ctx: &Ctx, given: &KeySources) -> Result<KeySources> {
    let mut keys = key_sources(ctx).await?;
    keys.password_file = given.password_file.clone();
    keys.recovery_key_file = given.recovery_key_file.clone();
    keys.trust_unsigned = given.trust_unsigned;
    if crate::context::set_up(&ctx.pool).await? {
        keys.keychain = None;
    }
    Ok(keys)
}

/// The repository at `path`: the directory itself, or the one an archive in it belongs to
/// (`REPO/archives/X.shar`).
async fn repository_at(path: &std::path::Path) -> Option<Repository> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let candidates = [Some(p.as_path()), p.parent().and_then(|a| a.parent())];
        candidates.into_iter().flatten().find_map(|d| Repository::open(d).ok().flatten())
    })
    .await
    .ok()
    .flatten()
}

/// Records how an ad-hoc command ended in the audit log, under the operator who ran it (a
/// missing key as a refusal), and remembers the repository it wrote or read.
pub async fn adhoc_done<T>(ctx: &Ctx, who: &crate::context::Acting, what: Adhoc, target: &str, repo_dir: Option<&std::path::Path>, result: &Result<T>) -> Result<()> {
    if result.is_ok() && !what.audits_success() {
        return Ok(());
    }
    let action = what.action();
    if let Some(dir) = repo_dir {
        if let Some(repo) = repository_at(dir).await {
            remember(ctx, &repo).await?;
        }
    }
    let (outcome, detail) = match result {
        Ok(_) => ("success", None),
        Err(e) if e.code == crate::error::ErrorCode::AuthFailed => ("denied", Some(format!("no key: {}", e.message))),
        Err(e) if e.code == crate::error::ErrorCode::Cancelled => ("failure", Some("cancelled".to_string())),
        Err(e) => ("failure", Some(e.message.clone())),
    };
    audit(&ctx.pool, &who.id, action, target, outcome, detail.as_deref()).await
}

fn open_master(repo: &Repository, keychain_secret: Option<&str>, operator_key: Option<&SecretKey>) -> Option<SecretKey> {
    if let Some(pw) = keychain_secret {
        if let Ok(mk) = repo.unlock(&Unlock::Password(pw.to_string())) {
            return Some(mk);
        }
    }
    operator_key.and_then(|k| repo.unlock(&Unlock::Operator(k.clone())).ok())
}

/// The repository in a storage (`None` when no backup was written there yet).
async fn repository_of(ctx: &Ctx, store: &crate::storage::BackupStorage) -> Result<Option<Repository>> {
    Repository::open(&crate::storage::location(ctx, store).await?)
}

/// A sweep whose failure does not fail the action it follows (it is retried at the next one).
pub async fn sweep_quietly(ctx: &Ctx) {
    if let Err(e) = sweep(ctx).await {
        tracing::warn!("the repositories' keys could not be brought in step with the super admins: {}", e.message);
    }
}

/// Who can read a storage's backups, as the Storage tab shows it beside each storage.
#[derive(Debug, Clone, Default, serde::Serialize, ts_rs::TS, PartialEq, Eq)]
pub struct KeyCustody {
    pub storage_id: String,
    /// Whether the storage holds a repository yet (the first backup into it makes one).
    pub has_repository: bool,
    /// The repository's secret is in this workstation's OS keychain: whoever uses Safehold here
    /// can read its backups (so it is until the first super admin exists).
    pub in_keychain: bool,
    /// The repository has a password slot. With no super admin and nothing in the keychain, it
    /// is a password given on the command line (`--password-file`), kept by whoever set it.
    pub password: bool,
    /// The super admins whose own key opens the repository, by name.
    pub super_admins: Vec<String>,
    /// Active super admins who do not hold it yet: they get it at the next sign-in of a super
    /// admin while the storage is reachable.
    pub pending: Vec<String>,
    /// Keys of people who are no longer super admins that the repository still holds (removed at
    /// the next sweep).
    pub former: Vec<String>,
    /// The recovery kit was exported (the repository keeps no copy of it any more).
    pub recovery_exported: bool,
    /// Why the storage could not be read, when it could not.
    pub problem: Option<String>,
}

/// Who holds the key of the repository in storage `name_or_id`: the keychain of this workstation,
/// which super admins, and whether the recovery kit was exported. Reads no secret.
pub async fn custody(ctx: &Ctx, name_or_id: &str) -> Result<KeyCustody> {
    let store = crate::storage::find(ctx, name_or_id).await?;
    let mut out = KeyCustody { storage_id: store.id.clone(), ..Default::default() };
    let repo = match repository_of(ctx, &store).await {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(out),
        Err(e) => {
            out.problem = Some(e.message);
            return Ok(out);
        }
    };
    out.has_repository = true;
    out.recovery_exported = repo.config.recovery_exported;
    out.password = repo.config.master_slots.iter().any(|s| matches!(s, crate::archive::keys::KeySlot::Password { .. }));
    let account = keychain_account(repo.id());
    out.in_keychain = crate::secrets::run(&ctx.secrets, move |s| s.get(&account)).await.ok().flatten().is_some();
    let operators: Vec<(String, Option<String>, bool)> = sqlx::query_as(
        "SELECT name, public_key, (role = 'super_admin' AND is_active = 1 AND password_hash IS NOT NULL) AS custodian FROM operators WHERE public_key IS NOT NULL ORDER BY name",
    )
    .fetch_all(&ctx.pool)
    .await
    .map_err(|e| Error::catalog("read the operators' keys", &e))?;
    let held = repo.custodians();
    for (name, key, custodian) in operators {
        let holds = key.as_ref().is_some_and(|k| held.contains(k));
        match (custodian, holds) {
            (true, true) => out.super_admins.push(name),
            (true, false) => out.pending.push(name),
            (false, true) => out.former.push(name),
            (false, false) => {}
        }
    }
    let retired: Vec<(Option<String>, String)> =
        sqlx::query_as("SELECT o.name, r.public_key FROM retired_keys r LEFT JOIN operators o ON o.id = r.operator_id ORDER BY r.retired_at")
            .fetch_all(&ctx.pool)
            .await
            .map_err(|e| Error::catalog("read the retired keys", &e))?;
    for (name, _) in retired.into_iter().filter(|(_, k)| held.contains(k)) {
        out.former.push(format!("{} (a key replaced by a password reset)", name.unwrap_or_else(|| "a removed operator".into())));
    }
    Ok(out)
}

/// Writes the recovery kit of the repository in storage `name_or_id` to `path` — a new file,
/// readable by its owner only, written whole or not at all — and only then marks the kit
/// exported (the repository keeps no copy of it afterwards). Returns the kit's text, to print.
/// Needs the repository's key: this workstation's keychain before the first super admin exists,
/// a signed-in super admin's own key after.
pub async fn export_recovery_kit(ctx: &Ctx, name_or_id: &str, path: &std::path::Path) -> Result<String> {
    let who = crate::context::require(ctx, crate::context::Permission::RestoreData, "key.export_recovery", name_or_id).await?;
    let store = crate::storage::find(ctx, name_or_id).await?;
    let mut repo = repository_of(ctx, &store)
        .await?
        .ok_or_else(|| Error::not_found(format!("the storage {} holds no backups yet: its recovery kit is made with its first backup", store.storage_name)))?;
    let mk = key_sources(ctx).await?.unlock_repository(&repo).await?;
    let kit = repo.recovery_kit(&mk)?;
    write_private_file(path, &kit)?;
    repo.forget_recovery().map_err(|e| Error::new(e.code, format!("the recovery kit was saved to {}, but the repository could not be marked: {}", path.display(), e.message)).caused_by(&e))?;
    audit(&ctx.pool, &who.id, "key.export_recovery", &store.storage_name, "success", Some("saved to a file the operator chose; the repository keeps no copy")).await?;
    Ok(kit)
}

/// Writes `text` to `path`, readable by its owner only, whole or not at all (a file there is
/// replaced only once the new one is complete: the save dialog asked before overwriting).
fn write_private_file(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let io = |e: std::io::Error| Error::io(format!("cannot write the recovery kit to {}", path.display()), &e);
    let tmp = crate::private::partial_beside(path);
    let written = crate::private::create_new(&tmp).and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all())).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(())
}

pub use crate::repository::WriterInfo;

/// The writers of the repository in storage `name_or_id`: those on its approved list and those
/// whose signature is on its backups. Reads no secret.
pub async fn writers(ctx: &Ctx, name_or_id: &str) -> Result<Vec<WriterInfo>> {
    crate::context::require(ctx, crate::context::Permission::ViewHistory, "key.writers", name_or_id).await?;
    let store = crate::storage::find(ctx, name_or_id).await?;
    let Some(repo) = repository_of(ctx, &store).await? else { return Ok(Vec::new()) };
    tokio::task::spawn_blocking(move || repo.writers()).await.map_err(|e| Error::new(crate::ErrorCode::Internal, e.to_string()).caused_by(&e))?
}

/// Approves a writer (by its public key, as [`writers`] lists it) into the repository in storage
/// `name_or_id`: its backups restore from then on. Needs the repository's key and the right to
/// restore; audited.
pub async fn approve_writer(ctx: &Ctx, name_or_id: &str, public_key: &str) -> Result<WriterInfo> {
    let who = crate::context::require(ctx, crate::context::Permission::RestoreData, "key.approve_writer", name_or_id).await?;
    // The repository opened once: its writers listed, then the one approved.
    let store = crate::storage::find(ctx, name_or_id).await?;
    let (repo, known) = match repository_of(ctx, &store).await? {
        Some(repo) => tokio::task::spawn_blocking(move || {
            let known = repo.writers();
            known.map(|k| (Some(repo), k))
        })
        .await
        .map_err(|e| Error::new(crate::ErrorCode::Internal, e.to_string()).caused_by(&e))??,
        None => (None, Vec::new()),
    };
    let (Some(mut repo), Some(w)) = (repo, known.into_iter().find(|w| w.public_key == public_key)) else {
        let err = Error::not_found(format!("no backup in the storage {name_or_id} was signed by the writer key {public_key}: only a writer whose backups are there can be approved"));
        audit(&ctx.pool, &who.id, "key.approve_writer", name_or_id, "failure", Some(&err.message)).await?;
        return Err(err);
    };
    let approved = async {
        let mk = key_sources(ctx).await?.unlock_repository(&repo).await?;
        repo.approve_writer(&mk, &w.public_key, &w.name)
    }
    .await;
    let detail = format!("writer {} ({}…)", w.name, &w.public_key[..16.min(w.public_key.len())]);
    match approved {
        Ok(_) => {
            audit(&ctx.pool, &who.id, "key.approve_writer", &store.storage_name, "success", Some(&detail)).await?;
            Ok(WriterInfo { approved: true, approved_at: Some(crate::catalog::now()), ..w })
        }
        Err(e) => {
            audit(&ctx.pool, &who.id, "key.approve_writer", &store.storage_name, "failure", Some(&format!("{detail}: {}", e.message))).await?;
            Err(e)
        }
    }
}
