//! Checks of recorded backups, from the app: a quick check (the archive's SHA-256 against its
//! trailer and the checksum the catalog recorded; no key needed) or a deep one (the backup and
//! every backup it builds on opened with the key, every section authenticated, decompressed,
//! hashed and its rows counted). The result is kept on the backup's record (`metadata.last_check`)
//! and audited, so Recent Backups shows when each backup was last proven readable.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::catalog::{audit, now};
use crate::context::Ctx;
use crate::error::{Error, ErrorCode, Result};
use crate::history::JobStatus;
use crate::context::{require, Permission};
use crate::restore::{self, RestoreRequest};

/// The outcome of a check of a recorded backup.
#[derive(Debug, Clone, Serialize, Deserialize, TS, PartialEq)]
pub struct BackupCheck {
    pub execution_id: String,
    pub deep: bool,
    pub ok: bool,
    /// What was checked, or what is wrong (naming the archive and, inside it, the section).
    pub message: String,
    pub at: String,
    /// Archives read: the backup's own, and for a deep check every backup it builds on.
    pub archives: u64,
    /// Rows counted (deep checks).
    pub rows: u64,
}

/// Checks the backup recorded as `execution_id` (quick: `backup:trigger_manual`; deep:
/// `backup:restore_data`, which reads backed-up data). A damaged or missing archive is a failed
/// check, recorded and returned as such; a check that cannot be made (no key, no permission, a
/// network or disk error, not a completed backup) is an error and records nothing.
pub async fn check_backup(ctx: &Ctx, execution_id: &str, deep: bool) -> Result<BackupCheck> {
    let (permission, action) = if deep { (Permission::RestoreData, "backup.verify_deep") } else { (Permission::TriggerManual, "backup.verify") };
    let who = require(ctx, permission, action, execution_id).await?;
    let (status, file, checksum, deleted): (JobStatus, Option<String>, Option<String>, Option<String>) =
        sqlx::query_as("SELECT status, file_path, checksum, deleted_at FROM backup_executions WHERE id = ?")
            .bind(execution_id)
            .fetch_optional(&ctx.pool)
            .await
            .map_err(|e| Error::catalog("read the backup", &e))?
            .ok_or_else(|| Error::not_found(format!("no backup {execution_id} in the catalog")))?;
    if deleted.is_some() {
        return Err(Error::validation("this backup's archive was deleted by retention: there is nothing to check"));
    }
    let file = file.filter(|_| status == JobStatus::Completed).ok_or_else(|| Error::validation("only a completed backup can be checked"))?;
    let outcome = if deep { deep_chain(ctx, &file, checksum.as_deref()).await } else { quick(&file, checksum.as_deref()) };
    let (ok, message, archives, rows) = match outcome {
        Ok((message, archives, rows)) => (true, message, archives, rows),
        // The archive is damaged, altered, truncated or gone: that is what a check is for.
        Err(e) if matches!(e.code, ErrorCode::Validation | ErrorCode::NotFound) => (false, e.message, 0, 0),
        // No key, a network or disk error, …: not the backup's fault, and nothing is recorded.
        Err(e) => return Err(e),
    };
    let check = BackupCheck { execution_id: execution_id.to_string(), deep, ok, message, at: now(), archives, rows };
    let json = serde_json::to_string(&check).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()).caused_by(&e))?;
    crate::backup::records::record_check(ctx, execution_id, &json).await?;
    audit(&ctx.pool, &who.id, action, &file, if ok { "success" } else { "failure" }, Some(&check.message)).await?;
    Ok(check)
}

fn quick(file: &str, checksum: Option<&str>) -> Result<(String, u64, u64)> {
    let report = tokio::task::block_in_place(|| crate::verify::quick(Path::new(file), checksum))?;
    Ok((format!("the archive's SHA-256 matches its trailer and the catalog ({} bytes)", report.bytes), 1, 0))
}

async fn deep_chain(ctx: &Ctx, file: &str, checksum: Option<&str>) -> Result<(String, u64, u64)> {
    let keys = crate::keys::custody::key_sources(ctx).await?;
    let opened = restore::open(&RestoreRequest::new(PathBuf::from(file), String::new()), &keys).await?;
    tokio::task::block_in_place(|| {
        // Section by section first (damage is named with its section), then the whole file
        // against the catalog's checksum.
        let mut rows = 0;
        for (reader, _) in &opened.chain {
            rows += crate::verify::deep_check(reader)?.rows;
        }
        crate::verify::quick(Path::new(file), checksum)?;
        let n = opened.chain.len() as u64;
        let chain = if n > 1 { format!(" and the {} backups it builds on", n - 1) } else { String::new() };
        Ok((format!("every section of the backup{chain} decrypts, authenticates and matches its SHA-256; {} rows counted", thousands(rows)), n, rows))
    })
}

/// One archive's check, as `safehold verify` of a repository reports it: its report, or why it
/// failed (`{"archive", "ok": false, "error"}`).
#[derive(Debug, Clone)]
pub enum ArchiveCheck {
    Sound(crate::verify::VerifyReport),
    Failed { archive: String, error: String },
}

impl Serialize for ArchiveCheck {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        match self {
            ArchiveCheck::Sound(r) => r.serialize(s),
            ArchiveCheck::Failed { archive, error } => {
                let mut f = s.serialize_struct("ArchiveCheck", 3)?;
                f.serialize_field("archive", archive)?;
                f.serialize_field("ok", &false)?;
                f.serialize_field("error", error)?;
                f.end()
            }
        }
    }
}

/// Checks every archive at `place` (a repository, or one archive file): quickly (its checksum
/// against its trailer and against `recorded`, the catalog's checksums by canonical path) or,
/// with `deep`, every section with `keys`. Each archive on its own: a damaged one is reported and
/// the others still checked; a single archive's failure, or a key refused, is the error.
pub async fn check_archives(place: &Path, deep: bool, keys: &crate::keys::unlock::KeySources, recorded: &std::collections::HashMap<PathBuf, String>) -> Result<Vec<ArchiveCheck>> {
    let (paths, repo) = archives_of(place)?;
    let mut out = Vec::new();
    for p in &paths {
        let checked = async {
            if deep {
                let mut reader = crate::archive::ArchiveReader::open(p)?;
                keys.unlock_archive(&mut reader, repo.as_ref()).await?;
                crate::verify::deep_with(reader)
            } else {
                let canonical = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                crate::verify::quick_in(p, recorded.get(&canonical).map(String::as_str), repo.as_ref())
            }
        }
        .await;
        match checked {
            Ok(report) => out.push(ArchiveCheck::Sound(report)),
            Err(e) if paths.len() > 1 && e.code != ErrorCode::AuthFailed => out.push(ArchiveCheck::Failed { archive: p.display().to_string(), error: e.message }),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The archives a verify checks: one, or every one in a repository (those that cannot even be
/// opened included: they are reported as damaged, the others still checked).
fn archives_of(target: &Path) -> Result<(Vec<PathBuf>, Option<crate::repository::Repository>)> {
    if crate::repository::is_repository_location(target) {
        let repo = crate::repository::Repository::open(target)?.ok_or_else(|| Error::not_found(format!("{} is not a Safehold repository", target.display())))?;
        let (ok, damaged) = repo.scan()?;
        let mut all: Vec<PathBuf> = ok.into_iter().map(|(p, _)| p).chain(damaged.into_iter().map(|(p, _)| p)).collect();
        // Continuous protection's change segments (`changes/`) and the server backups' sets
        // (`servers/`), beside the archives, are archives too: checked the same way, quick or deep.
        for dir in ["changes", "servers"] {
            if let Ok(entries) = std::fs::read_dir(repo.dir.join(dir)) {
                all.extend(entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == crate::repository::ARCHIVE_EXT)));
            }
        }
        all.sort();
        Ok((all, Some(repo)))
    } else {
        Ok((vec![target.to_path_buf()], None))
    }
}

/// Archive path → the SHA-256 the catalog in `home` recorded when it was written (empty when
/// there is no catalog there, or its history may not be read without signing in).
pub async fn recorded_checksums(home: &Path) -> std::collections::HashMap<PathBuf, String> {
    if !home.join(crate::catalog::CATALOG_FILE).exists() {
        return Default::default();
    }
    let Ok(ctx) = Ctx::open(home).await else { return Default::default() };
    crate::history::executions(&ctx, i64::MAX)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| Some((std::fs::canonicalize(e.file_path?).ok()?, e.checksum?)))
        .collect()
}

/// `35012` as `35,012`, for messages a person reads.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
