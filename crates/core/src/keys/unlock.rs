//! Finding the key for a repository or an archive, the same way for every host: an explicit
//! recovery key, else a password (file, environment), else the OS keychain.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::archive::keys::{self, KdfParams, SecretKey, Unlock};
use crate::archive::ArchiveReader;
use crate::error::{Error, ErrorCode, Result};
use crate::repository::{self, keychain_account, Repository, SecretSource};
use crate::secrets::{self, SecretStore};

/// Where keys may come from.
#[derive(Clone, Default)]
pub struct KeySources {
    pub password_file: Option<PathBuf>,
    pub recovery_key_file: Option<PathBuf>,
    pub keychain: Option<Arc<dyn SecretStore>>,
    /// The signed-in super admin's private key: opens repositories whose master key is sealed
    /// to them ([`crate::keys::custody`]).
    pub operator_key: Option<SecretKey>,
    /// The super admins' public keys: a repository created now is sealed to them instead of
    /// keeping its secret in the keychain.
    pub custodians: Vec<String>,
    /// This home's writer key (None: the default home's): it signs backups, is approved into a
    /// repository whose key is at hand, and pins the public key of one that is not.
    pub writer: Option<Arc<crate::writers::WriterKey>>,
    /// Accept archives whose writer is not approved or that carry no signature (the
    /// administrator's explicit `--trust-unsigned`).
    pub trust_unsigned: bool,
    /// SHA-256 checksums of unsigned archives this home's catalog recorded when it wrote them
    /// (before archives were signed): accepted without `--trust-unsigned`, as long as not one
    /// byte changed since.
    pub vouched: std::collections::BTreeSet<String>,
}

impl KeySources {
    fn secret_source(&self) -> SecretSource {
        SecretSource { password_file: self.password_file.clone() }
    }

    pub fn recovery(&self) -> Result<Option<SecretKey>> {
        match &self.recovery_key_file {
            None => Ok(None),
            Some(f) => {
                let text = std::fs::read_to_string(f).map_err(|e| Error::io(format!("cannot read the recovery key file {}", f.display()), &e))?;
                // The kit holds other lines; take the one with the key.
                let line = text.lines().find(|l| l.contains("SHRK-")).unwrap_or(text.as_str());
                let start = line.find("SHRK-").unwrap_or(0);
                Ok(Some(keys::parse_recovery_key(&line[start..])?))
            }
        }
    }

    /// The password for repository `id`: headless sources first, then the keychain.
    pub async fn password(&self, repository_id: &str) -> Result<Option<String>> {
        if let Some(p) = repository::headless_password(&self.secret_source())? {
            return Ok(Some(p));
        }
        match &self.keychain {
            Some(store) => {
                let account = keychain_account(repository_id);
                secrets::run(store, move |s| s.get(&account)).await
            }
            None => Ok(None),
        }
    }

    /// The master key through the signed-in super admin's own key, when it opens `repo`.
    fn operator_unlock(&self, repo: &Repository) -> Option<SecretKey> {
        let key = self.operator_key.clone()?;
        tokio::task::block_in_place(|| repo.unlock(&Unlock::Operator(key))).ok()
    }

    /// This home's writer key.
    pub fn writer(&self) -> Result<Arc<crate::writers::WriterKey>> {
        match &self.writer {
            Some(w) => Ok(w.clone()),
            None => crate::writers::WriterKey::of_default_home(),
        }
    }

    /// With the master key at hand: the repository's key pair checked (or made), and this home's
    /// writer approved into it.
    fn take_in(&self, repo: &mut Repository, mk: &SecretKey) -> Result<()> {
        repo.ensure_key_pair(mk)?;
        self.approve_self(repo, mk)
    }

    /// With the master key at hand, this home's writer is approved into the repository.
    fn approve_self(&self, repo: &mut Repository, mk: &SecretKey) -> Result<()> {
        let w = self.writer()?;
        repo.approve_writer(mk, &w.public_hex(), &w.name).map(drop)
    }

    /// Opens (or creates) a repository for writing a backup.
    pub async fn open_repository_for_backup(&self, dir: &Path) -> Result<(Repository, SecretKey)> {
        if self.operator_key.is_some() && repository::headless_password(&self.secret_source())?.is_none() {
            if let Some(mut repo) = Repository::open(dir)? {
                if let Some(mk) = self.operator_unlock(&repo) {
                    self.take_in(&mut repo, &mk)?;
                    return Ok((repo, mk));
                }
            }
        }
        let (mut repo, mk) = repository::open_or_init(dir, &self.secret_source(), self.keychain.as_ref(), &self.custodians, KdfParams::default()).await?;
        self.approve_self(&mut repo, &mk)?;
        Ok((repo, mk))
    }

    /// Opens (or creates) a repository for a backup sealed to its public key: with its master
    /// key when a password, the keychain or the recovery key gives it, else — for an existing
    /// repository with a key pair — without any secret (an operator who may back up but not
    /// read). A wrong password is an error, never a silent fallback.
    pub async fn open_repository_for_sealed_backup(&self, dir: &Path) -> Result<(Repository, Option<SecretKey>)> {
        if let Some(repo) = Repository::open(dir)? {
            let has_password = repository::headless_password(&self.secret_source())?.is_some();
            if !has_password && self.recovery_key_file.is_none() {
                if let Some(mk) = self.operator_unlock(&repo) {
                    let mut repo = repo;
                    self.take_in(&mut repo, &mk)?;
                    return Ok((repo, Some(mk)));
                }
            }
            if !has_password && self.recovery_key_file.is_none() && repo.config.public_key.is_some() {
                let id = repo.id().to_string();
                match self.password(&id).await {
                    Ok(Some(_)) => {}
                    _ => {
                        // Without the master key the public key cannot be checked: it must be
                        // the one this home saw first.
                        if let Some(pk) = &repo.config.public_key {
                            self.writer()?.pin_repository_key(repo.id(), pk)?;
                        }
                        return Ok((repo, None));
                    }
                }
            }
            if self.recovery_key_file.is_some() && !has_password {
                let mut repo = repo;
                let mk = self.unlock_repository(&repo).await?;
                self.take_in(&mut repo, &mk)?;
                return Ok((repo, Some(mk)));
            }
        }
        let (repo, mk) = self.open_repository_for_backup(dir).await?;
        Ok((repo, Some(mk)))
    }

    /// Unlocks an archive on its own (recovery key, password or keychain secret of its
    /// repository) and checks who wrote it: its signature, by a writer a holder of the master key
    /// approved — unless [`trust_unsigned`](Self::trust_unsigned). A restore, a deep verify and an
    /// import read only what passes.
    pub async fn unlock_archive(&self, reader: &mut ArchiveReader, repo: Option<&Repository>) -> Result<()> {
        self.unlock_archive_with(reader, repo, None).await
    }

    /// [`unlock_archive`](Self::unlock_archive), first with `master` — the master key an archive
    /// of the same repository was opened with — then as usual: a chain derives the key from the
    /// password once, not once a link (a memory-hard derivation each, in time and memory).
    async fn unlock_archive_with(&self, reader: &mut ArchiveReader, repo: Option<&Repository>, master: Option<&SecretKey>) -> Result<()> {
        let opened = master.is_some_and(|mk| tokio::task::block_in_place(|| reader.unlock(Some(mk), None)).is_ok());
        if !opened {
            self.unlock_archive_unchecked(reader, repo).await?;
        }
        if self.trust_unsigned {
            return Ok(());
        }
        // Damage shows first as a whole-file hash or a signature that does not match: then the
        // sections are checked one by one (nothing is executed) so the message names the one
        // that is damaged, as a deep verify does.
        let name_damage = |reader: &ArchiveReader| tokio::task::block_in_place(|| crate::verify::deep_check(reader)).err();
        let provenance = match tokio::task::block_in_place(|| provenance_in(reader, repo)) {
            Ok(p) => p,
            Err(e) => return Err(name_damage(reader).unwrap_or(e)),
        };
        if provenance == crate::writers::Provenance::Forged {
            if let Some(e) = name_damage(reader) {
                return Err(e);
            }
        }
        if provenance == crate::writers::Provenance::Unsigned && !self.vouched.is_empty() {
            let sha = tokio::task::block_in_place(|| reader.quick_check())?.sha256;
            if self.vouched.contains(&sha) {
                return Ok(());
            }
        }
        match provenance.refusal(reader.path()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// [`unlock_archive`](Self::unlock_archive) without the writer's check (to show an archive's
    /// header and tables, never to restore it).
    pub async fn unlock_archive_unchecked(&self, reader: &mut ArchiveReader, repo: Option<&Repository>) -> Result<()> {
        if !reader.header.encrypted {
            // Nothing to decrypt; the master key, when at hand, tells its approved writers.
            let _ = self.open_keys(reader, repo).await;
            return Ok(());
        }
        self.open_keys(reader, repo).await
    }

    async fn open_keys(&self, reader: &mut ArchiveReader, repo: Option<&Repository>) -> Result<()> {
        if let Some(rk) = self.recovery()? {
            return tokio::task::block_in_place(|| reader.unlock(None, Some(&Unlock::Recovery(rk))));
        }
        let id = reader.header.repository_id.clone();
        if let Some(repo) = repo {
            if repo.id() != id {
                return Err(Error::validation(format!(
                    "the archive {} belongs to another repository ({id}), not to {} ({}); restore it from its own repository or with its recovery key",
                    reader.path().display(),
                    repo.dir.display(),
                    repo.id()
                )));
            }
        }
        if let Some(key) = &self.operator_key {
            // The archive's own copy of the slots, or — for an archive written before this
            // super admin held the key — the repository's.
            let via_archive = tokio::task::block_in_place(|| reader.unlock(None, Some(&Unlock::Operator(key.clone()))));
            if via_archive.is_ok() {
                return Ok(());
            }
            if let Some(mk) = repo.and_then(|r| self.operator_unlock(r)) {
                return tokio::task::block_in_place(|| reader.unlock(Some(&mk), None));
            }
        }
        let password = self.password(&id).await?.ok_or_else(|| {
            Error::new(
                ErrorCode::AuthFailed,
                format!(
                    "no key for the archive {}: sign in as a super admin who holds this repository's key, or give --password-file, SAFEHOLD_PASSWORD or --recovery-key-file",
                    reader.path().display()
                ),
            )
        })?;
        tokio::task::block_in_place(|| reader.unlock(None, Some(&Unlock::Password(password))))
    }

    /// Opens and unlocks a backup and every backup it builds on (found beside it), oldest first.
    pub async fn open_chain(&self, path: &Path, repo: Option<&Repository>) -> Result<Vec<ArchiveReader>> {
        let mut reader = ArchiveReader::open(path)?;
        self.unlock_archive(&mut reader, repo).await?;
        let master = reader.master_key().cloned();
        let mut chain = vec![reader];
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut listed: Option<Vec<std::path::PathBuf>> = None;
        while let Some(parent) = chain.last().and_then(|r| r.header.parent_id.clone()) {
            if listed.is_none() {
                listed = Some(crate::repository::archives_in(dir)?);
            }
            let all = listed.as_deref().unwrap_or_default();
            // A backup's file is named after its id's first characters (`<time>-<id8>`): those
            // archives are opened first, the others only if none of them is the parent.
            let suffix = format!("-{}", parent.get(..8).unwrap_or(&parent));
            let named = |p: &&std::path::PathBuf| p.file_stem().and_then(|s| s.to_str()).is_some_and(|s| s.ends_with(&suffix));
            let found = all
                .iter()
                .filter(named)
                .chain(all.iter().filter(|p| !named(p)))
                .find(|p| ArchiveReader::open(p).map(|r| r.header.archive_id == parent).unwrap_or(false))
                .cloned()
                .ok_or_else(|| {
                    Error::not_found(format!(
                        "backup {} builds on {parent}, which is not in {}; the chain is incomplete",
                        chain.last().map(|r| r.header.archive_id.clone()).unwrap_or_default(),
                        dir.display()
                    ))
                })?;
            let mut r = ArchiveReader::open(&found)?;
            // (The same repository's master key opens it: a link of another repository is
            // opened on its own, as before.)
            let same = master.as_ref().filter(|_| chain.first().is_some_and(|c| c.header.repository_id == r.header.repository_id));
            self.unlock_archive_with(&mut r, repo, same).await?;
            chain.push(r);
        }
        chain.reverse();
        Ok(chain)
    }

    /// Unlocks a repository's master key (for `key export-recovery`).
    pub async fn unlock_repository(&self, repo: &Repository) -> Result<SecretKey> {
        if let Some(rk) = self.recovery()? {
            return tokio::task::block_in_place(|| repo.unlock(&Unlock::Recovery(rk)));
        }
        if repository::headless_password(&self.secret_source())?.is_none() {
            if let Some(mk) = self.operator_unlock(repo) {
                return Ok(mk);
            }
        }
        let password = self.password(repo.id()).await?.ok_or_else(|| {
            Error::new(ErrorCode::AuthFailed, format!("no key for the repository {}: give --password-file or SAFEHOLD_PASSWORD", repo.dir.display()))
        })?;
        tokio::task::block_in_place(|| repo.unlock(&Unlock::Password(password)))
    }
}

/// What an archive says of its writer ([`crate::writers::provenance`]), with the approved writers
/// of `repo` — or, without one, of the repository the archive lies in.
pub fn provenance_in(reader: &ArchiveReader, repo: Option<&Repository>) -> Result<crate::writers::Provenance> {
    let around = match repo {
        Some(_) => None,
        None if !crate::remote::is_remote(reader.path()) => crate::repository::of_archive(reader.path(), &reader.header.repository_id),
        None => None,
    };
    crate::writers::provenance(reader, repo.or(around.as_ref()).and_then(|r| r.config.writers.as_ref()))
}
