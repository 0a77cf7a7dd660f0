//! A repository: a directory of archives plus `safehold-repository.json`, which holds the
//! repository's master key wrapped by its key slots (the repository secret — from the OS keychain
//! or a password — and the recovery key) and the recovery key sealed by the master key until it
//! is exported, once, as a printable kit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::archive::keys::{self, KdfParams, KeySlot, SecretKey, Unlock};
use crate::archive::{master_aad, ArchiveHeader, ArchiveReader};
use crate::catalog::now;
use crate::error::{Error, ErrorCode, Result};
use crate::secrets::{self, SecretStore};

pub const CONFIG_FILE: &str = "safehold-repository.json";
pub use crate::archive::ARCHIVE_EXT;

pub use crate::archive::keys::{open_private, PRIVATE_SEAL};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoConfig {
    pub repository_id: String,
    pub format: u16,
    pub created_at: String,
    pub master_slots: Vec<KeySlot>,
    /// The recovery key, encrypted by the master key, until it has been exported.
    pub recovery_sealed: Option<(String, String)>,
    pub recovery_exported: bool,
    /// The X25519 public key new backups are sealed to (hex): writing a backup needs no secret.
    #[serde(default)]
    pub public_key: Option<String>,
    /// The matching private key, encrypted by the master key (so the password and the recovery
    /// kit open it).
    #[serde(default)]
    pub private_sealed: Option<(String, String)>,
    /// The writers a holder of the master key approved ([`crate::writers`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writers: Option<crate::writers::Writers>,
}

#[derive(Debug, Clone)]
pub struct Repository {
    pub dir: PathBuf,
    pub config: RepoConfig,
}

/// Where the repository secret comes from on a headless host; the keychain is the default.
#[derive(Debug, Clone, Default)]
pub struct SecretSource {
    pub password_file: Option<PathBuf>,
}

/// The keychain account of a repository's secret.
pub fn keychain_account(repository_id: &str) -> String {
    format!("repository:{repository_id}")
}

/// The repository password from `--password-file`, `SAFEHOLD_PASSWORD_FILE` or `SAFEHOLD_PASSWORD`;
/// `None` when none is given (the keychain is used then).
pub fn headless_password(source: &SecretSource) -> Result<Option<String>> {
    let file = source.password_file.clone().or_else(|| std::env::var_os("SAFEHOLD_PASSWORD_FILE").map(PathBuf::from));
    if let Some(f) = file {
        let text = std::fs::read_to_string(&f)
            .map_err(|e| Error::io(format!("cannot read the password file {}", f.display()), &e))?;
        let pw = text.trim_end_matches(['\r', '\n']).to_string();
        if pw.is_empty() {
            return Err(Error::validation(format!("the password file {} is empty", f.display())));
        }
        return Ok(Some(pw));
    }
    Ok(std::env::var("SAFEHOLD_PASSWORD").ok().filter(|p| !p.is_empty()))
}

impl Repository {
    /// Opens the repository in `dir`; `None` when `dir` holds no repository yet.
    pub fn open(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(CONFIG_FILE);
        let bytes = match crate::storage::backend::at(&path)?.get() {
            Ok(b) => b,
            Err(e) if e.code == ErrorCode::NotFound && !e.message.contains("the bucket does not exist") => return Ok(None),
            Err(e) => return Err(e),
        };
        let config: RepoConfig = serde_json::from_slice(&bytes)
            .map_err(|e| Error::validation(format!("{} is damaged ({e}); restore it from a copy or rebuild with the recovery key", path.display())).caused_by(&e))?;
        Ok(Some(Self { dir: dir.to_path_buf(), config }))
    }

    /// Creates a repository in `dir` protected by `password`, with a new recovery key.
    pub fn init(dir: &Path, password: &str, kdf: KdfParams) -> Result<(Self, SecretKey)> {
        crate::storage::backend::at(dir)?.child("archives").make_dir()?;
        let id = uuid::Uuid::new_v4().to_string();
        Self::init_with_id(dir, &id, password, kdf)
    }

    fn init_with_id(dir: &Path, id: &str, password: &str, kdf: KdfParams) -> Result<(Self, SecretKey)> {
        let mk = SecretKey::random();
        let recovery = SecretKey::random();
        let aad = master_aad(id);
        let sealed = keys::wrap(&mk.derive("recovery-seal"), &recovery, &aad)?;
        let (private, public) = keys::x25519_pair();
        let config = RepoConfig {
            repository_id: id.to_string(),
            format: 1,
            created_at: now(),
            master_slots: vec![keys::password_slot(password, &mk, &aad, kdf)?, keys::recovery_slot(&recovery, &mk, &aad)?],
            recovery_sealed: Some(sealed),
            recovery_exported: false,
            public_key: Some(public),
            private_sealed: Some(keys::wrap(&mk.derive(PRIVATE_SEAL), &private, &aad)?),
            writers: None,
        };
        let repo = Self { dir: dir.to_path_buf(), config };
        repo.save()?;
        Ok((repo, mk))
    }

    fn save(&self) -> Result<()> {
        // Replaced whole, atomically (an object put; a file written beside and renamed).
        let json = serde_json::to_vec_pretty(&self.config).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))?;
        crate::storage::backend::at(&self.dir.join(CONFIG_FILE))?.put(json)
    }


    pub fn id(&self) -> &str {
        &self.config.repository_id
    }

    /// Approves `writer` (by a holder of the master key); true when it was not approved before.
    pub fn approve_writer(&mut self, master: &SecretKey, public_key: &str, name: &str) -> Result<bool> {
        let current = self.config.writers.clone().unwrap_or_default();
        if current.authentic(master, self.id()) && current.find(public_key).is_some() {
            return Ok(false);
        }
        let writer = crate::writers::ApprovedWriter { public_key: public_key.to_string(), name: name.to_string(), approved_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true) };
        self.config.writers = Some(current.with(master, &self.config.repository_id.clone(), writer));
        self.save()?;
        Ok(true)
    }

    /// The approved writers, when the master key authenticates the list (else none).
    pub fn approved_writers(&self, master: &SecretKey) -> Vec<crate::writers::ApprovedWriter> {
        self.config.writers.as_ref().filter(|w| w.authentic(master, self.id())).map(|w| w.list.clone()).unwrap_or_default()
    }

    /// Gives a repository made before key pairs existed its X25519 key pair.
    /// Checks, when the public key is there, that it is the private key's own (the repository
    /// file is not authenticated: a key swapped in by whoever can write to the storage is caught
    /// the next time the repository is opened with its key).
    pub fn ensure_key_pair(&mut self, master: &SecretKey) -> Result<()> {
        if let Some(public) = &self.config.public_key {
            let private = self.config.private_sealed.as_ref().and_then(|sealed| open_private(master, sealed, self.id()));
            return match private {
                Some(p) if &keys::x25519_public(&p) == public => Ok(()),
                _ => Err(Error::validation(format!(
                    "the public key in {} is not the repository's own: the file was changed; back up into a new repository and check who can write to this storage",
                    self.dir.join(CONFIG_FILE).display()
                ))),
            };
        }
        let (private, public) = keys::x25519_pair();
        self.config.private_sealed = Some(keys::wrap(&master.derive(PRIVATE_SEAL), &private, &master_aad(self.id()))?);
        self.config.public_key = Some(public);
        self.save()
    }

    /// Public keys whose holders the master key is sealed to (super admins' keys).
    pub fn custodians(&self) -> Vec<String> {
        self.config
            .master_slots
            .iter()
            .filter_map(|s| match s {
                KeySlot::Public { public_key, .. } => Some(public_key.clone()),
                _ => None,
            })
            .collect()
    }

    /// Seals the master key to each of `add` that does not hold it yet, and removes the slots of
    /// `remove` (operators who are no longer super admins). Returns whether anything changed; the
    /// file is saved then. Archives already written keep the slots they were written with.
    pub fn set_custodians(&mut self, master: &SecretKey, add: &[String], remove: &[String]) -> Result<bool> {
        let aad = master_aad(self.id());
        let have = self.custodians();
        let before = self.config.master_slots.len();
        self.config.master_slots.retain(|s| !matches!(s, KeySlot::Public { public_key, .. } if remove.contains(public_key)));
        let mut changed = self.config.master_slots.len() != before;
        for key in add.iter().filter(|k| !have.contains(k) && !remove.contains(k)) {
            self.config.master_slots.push(keys::seal_to_public(key, master, &aad)?);
            changed = true;
        }
        if changed {
            self.save()?;
        }
        Ok(changed)
    }

    /// Opens the master key.
    pub fn unlock(&self, unlock: &Unlock) -> Result<SecretKey> {
        keys::open_master(&self.config.master_slots, unlock, &master_aad(self.id()))?.ok_or_else(|| {
            Error::new(
                ErrorCode::AuthFailed,
                format!(
                    "wrong {} for the repository {}; check the password (file) or use the recovery key",
                    match unlock {
                        Unlock::Password(_) => "password",
                        Unlock::Recovery(_) => "recovery key",
                        Unlock::Operator(_) => "operator key",
                    },
                    self.dir.display()
                ),
            )
        })
    }

    /// Returns the printable recovery kit once; later calls are refused.
    pub fn export_recovery(&mut self, master: &SecretKey) -> Result<String> {
        let kit = self.recovery_kit(master)?;
        self.forget_recovery()?;
        Ok(kit)
    }

    /// The printable recovery kit, changing nothing: the caller puts it somewhere safe (prints it,
    /// writes it to a file), then calls [`Repository::forget_recovery`], so that a kit that could
    /// not be handed over is not lost.
    pub fn recovery_kit(&self, master: &SecretKey) -> Result<String> {
        if self.config.recovery_exported {
            return Err(Error::conflict(format!(
                "the recovery key of {} was already exported; it is shown only once",
                self.dir.display()
            )));
        }
        let (nonce, wrapped) = self.config.recovery_sealed.clone().ok_or_else(|| Error::not_found("this repository keeps no recovery key"))?;
        let recovery = keys::unwrap(&master.derive("recovery-seal"), &nonce, &wrapped, &master_aad(self.id()))
            .ok_or_else(|| Error::new(ErrorCode::AuthFailed, "the sealed recovery key does not open with this key"))?;
        Ok(format!(
            "SAFEHOLD RECOVERY KIT\n\nRepository: {}\nCreated:    {}\nExported:   {}\n\nRecovery key:\n\n    {}\n\n\
             This key alone opens every backup of this repository, even without the repository file,\n\
             the password or this computer. Print it, keep it offline, and keep it safe: it is shown once.\n\
             Use it with: safehold restore --from <archive> --recovery-key-file <file> ...\n",
            self.id(),
            self.config.created_at,
            now(),
            keys::format_recovery_key(&recovery)
        ))
    }

    /// Marks the recovery kit as exported and drops the repository's sealed copy of it.
    pub fn forget_recovery(&mut self) -> Result<()> {
        self.config.recovery_exported = true;
        self.config.recovery_sealed = None;
        self.save()
    }

    pub fn archives_dir(&self) -> PathBuf {
        self.dir.join("archives")
    }

    /// Every archive of the repository with its plaintext header, oldest snapshot first.
    pub fn list(&self) -> Result<Vec<(PathBuf, ArchiveHeader)>> {
        let (out, damaged) = self.scan()?;
        for (p, e) in &damaged {
            tracing::warn!("{} is skipped: {}", p.display(), e.message);
        }
        Ok(out)
    }

    /// The backups in the repository, oldest first, and apart from them the archives that cannot
    /// be read (damaged, or not archives): one damaged archive never hides the others.
    pub fn scan(&self) -> Result<Scanned> {
        let mut out = Vec::new();
        let mut damaged = Vec::new();
        for path in archives_in(&self.archives_dir())? {
            match ArchiveReader::open(&path) {
                Ok(reader) => out.push((path, reader.header)),
                Err(e) => damaged.push((path, e)),
            }
        }
        out.sort_by(|a, b| (a.1.snapshot_time.as_str(), a.1.created_at.as_str()).cmp(&(b.1.snapshot_time.as_str(), b.1.created_at.as_str())));
        Ok((out, damaged))
    }

    /// Finds an archive by id (or a unique prefix of it).
    pub fn find(&self, id: &str) -> Result<(PathBuf, ArchiveHeader)> {
        let mut found: Vec<_> = self.list()?.into_iter().filter(|(_, h)| h.archive_id.starts_with(id)).collect();
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(Error::not_found(format!("no backup {id} in {}; `safehold ls` lists them", self.dir.display()))),
            _ => Err(Error::validation(format!("{id} matches several backups; give more of the id"))),
        }
    }
}

/// What [`Repository::scan`] finds: the readable archives with their headers, and the archives
/// that cannot be read with why.
pub type Scanned = (Vec<(PathBuf, ArchiveHeader)>, Vec<(PathBuf, Error)>);

/// The repository an archive file lies in (its `archives` folder's parent), when it is one and
/// the archive is one of its own.
pub fn of_archive(archive: &Path, repository_id: &str) -> Option<Repository> {
    let archives = archive.parent()?;
    if archives.file_name()? != "archives" {
        return None;
    }
    Repository::open(archives.parent()?).ok().flatten().filter(|r| r.id() == repository_id)
}

/// The archive files (or objects) in an archives directory (or prefix), by name.
pub fn archives_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let is_archive = |p: &Path| p.extension().and_then(|e| e.to_str()) == Some(ARCHIVE_EXT);
    Ok(crate::storage::backend::listed_in(dir)?.into_iter().map(|(p, _)| p).filter(|p| is_archive(p)).collect())
}

/// Whether `location` is a repository (a directory, or an object storage URL not naming an
/// archive) rather than one archive.
pub fn is_repository_location(location: &Path) -> bool {
    if crate::remote::is_remote(location) {
        return location.extension().and_then(|e| e.to_str()) != Some(ARCHIVE_EXT);
    }
    location.is_dir()
}

/// Opens or creates the repository in `dir` and unlocks its master key. The secret comes from
/// the headless sources if one is given, else from the OS keychain (a new repository gets a
/// random secret stored there) — except when `custodians` (super admins' public keys) are given:
/// a new repository's master key is then sealed to them and no secret is kept anywhere, so only
/// they (and the recovery kit) can read its backups.
pub async fn open_or_init(
    dir: &Path,
    source: &SecretSource,
    keychain: Option<&Arc<dyn SecretStore>>,
    custodians: &[String],
    kdf: KdfParams,
) -> Result<(Repository, SecretKey)> {
    let headless = headless_password(source)?;
    match Repository::open(dir)? {
        Some(repo) => {
            let password = match headless {
                Some(p) => p,
                None => keychain_secret(keychain, repo.id()).await?.ok_or_else(|| {
                    Error::new(
                        ErrorCode::AuthFailed,
                        format!(
                            "no secret for the repository {} in the OS keychain; give --password-file or SAFEHOLD_PASSWORD",
                            dir.display()
                        ),
                    )
                })?,
            };
            let mut repo = repo;
            let mk = tokio::task::block_in_place(|| repo.unlock(&Unlock::Password(password)))?;
            repo.ensure_key_pair(&mk)?;
            Ok((repo, mk))
        }
        None => {
            crate::storage::backend::at(dir)?.child("archives").make_dir()?;
            let id = uuid::Uuid::new_v4().to_string();
            let password = match headless {
                Some(p) => p,
                // Withheld: a random secret that nobody keeps; the super admins' keys open it.
                None if !custodians.is_empty() => hex::encode(SecretKey::random().0),
                None => {
                    let store = keychain.ok_or_else(|| Error::new(ErrorCode::Keychain, "no keychain and no password: give --password-file or SAFEHOLD_PASSWORD"))?;
                    let secret = hex::encode(SecretKey::random().0);
                    let (account, value) = (keychain_account(&id), secret.clone());
                    secrets::run(store, move |s| s.set(&account, &value)).await?;
                    secret
                }
            };
            let (mut repo, mk) = tokio::task::block_in_place(|| Repository::init_with_id(dir, &id, &password, kdf))?;
            if !custodians.is_empty() {
                repo.set_custodians(&mk, custodians, &[])?;
            }
            Ok((repo, mk))
        }
    }
}

async fn keychain_secret(keychain: Option<&Arc<dyn SecretStore>>, id: &str) -> Result<Option<String>> {
    match keychain {
        Some(store) => {
            let account = keychain_account(id);
            secrets::run(store, move |s| s.get(&account)).await
        }
        None => Ok(None),
    }
}

/// A writer whose key signed backups in a storage's repository, or that a key holder approved.
#[derive(Debug, Clone, serde::Serialize, ts_rs::TS, PartialEq, Eq)]
pub struct WriterInfo {
    /// The writer's Ed25519 public key (hex).
    pub public_key: String,
    pub name: String,
    /// On the repository's list of approved writers (a restore still checks the list against the
    /// master key before it trusts it).
    pub approved: bool,
    pub approved_at: Option<String>,
    /// Backups in the repository that this writer signed.
    pub backups: u64,
}

impl Repository {
    /// The writers of this repository: those on its approved list, and those whose signature is
    /// on its backups (with how many each signed). Reads no secret.
    pub fn writers(&self) -> Result<Vec<WriterInfo>> {
        let mut out: Vec<WriterInfo> = self
            .config
            .writers
            .clone()
            .unwrap_or_default()
            .list
            .into_iter()
            .map(|w| WriterInfo { public_key: w.public_key, name: w.name, approved: true, approved_at: Some(w.approved_at), backups: 0 })
            .collect();
        for (_, h) in self.list()? {
            let Some(w) = h.writer else { continue };
            match out.iter_mut().find(|x| x.public_key == w.public_key) {
                Some(x) => x.backups += 1,
                None => out.push(WriterInfo { public_key: w.public_key, name: w.name, approved: false, approved_at: None, backups: 1 }),
            }
        }
        Ok(out)
    }

    /// The writer whose public key starts with `prefix` (at least 8 hex characters, as
    /// [`Repository::writers`] lists them), among those that signed a backup here.
    pub fn writer_by_prefix(&self, prefix: &str) -> Result<WriterInfo> {
        let prefix = prefix.trim().to_ascii_lowercase();
        let found: Vec<WriterInfo> = self.writers()?.into_iter().filter(|w| w.backups > 0 && prefix.len() >= 8 && w.public_key.starts_with(&prefix)).collect();
        match found.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::not_found(format!(
                "no archive in {} was written by a key starting {prefix} (give at least 8 characters, as `safehold key writers` shows)",
                self.dir.display()
            ))),
            _ => Err(Error::validation(format!("{prefix} starts several writers' keys: give more of it"))),
        }
    }
}
