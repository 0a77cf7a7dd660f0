//! Which backup a restore (or an import) reaches, and its chain opened: a backup by id, the
//! newest at a point in time, or the newest of a repository; or an archive file given alone. An
//! incremental comes with the backups it builds on, each unlocked with the keys given.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use ts_rs::TS;

use crate::archive::{ArchiveIndex, ArchiveReader};
use crate::backup;
use crate::error::{Error, Result};
use crate::repository::Repository;
use crate::keys::unlock::KeySources;

/// Which backup to reach: in `from` (a repository directory, or an archive file), by id, the
/// newest at or before a point in time (of one source, when the repository holds several), or
/// the newest.
#[derive(Debug, Clone, Copy)]
pub struct Pick<'a> {
    pub from: &'a Path,
    pub at: Option<&'a str>,
    pub backup_id: Option<&'a str>,
    pub source_name: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize, TS)]
pub struct PointInTime {
    pub requested: String,
    /// The snapshot time of the backup restored: the exact point the target will reach.
    pub reached: String,
    /// How far before the requested time that is.
    pub gap_seconds: f64,
}

fn parse_time(s: &str, what: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::validation(format!("{what} \"{s}\" is not a time: {e}; use RFC 3339, e.g. 2026-11-24T18:00:00Z")).caused_by(&e))
}

/// The repository an archive belongs to, when it sits in one (`<repo>/archives/<file>`).
pub fn repository_of(archive: &Path) -> Option<Repository> {
    let dir = archive.parent()?.parent()?;
    Repository::open(dir).ok().flatten()
}

/// Picks the archive to restore: a backup by id, the newest at a point in time, or the newest.
pub fn select(req: &Pick<'_>) -> Result<(PathBuf, Option<Repository>, Option<PointInTime>)> {
    if !crate::repository::is_repository_location(req.from) {
        if req.at.is_some() || req.backup_id.is_some() {
            return Err(Error::validation("--at and --backup choose among a repository's backups: give the repository directory as --from"));
        }
        if crate::storage::backend::at(req.from)?.size()?.is_none() {
            return Err(Error::not_found(format!("{} does not exist; give a repository directory or an archive file", req.from.display())));
        }
        return Ok((req.from.to_path_buf(), repository_of(req.from), None));
    }
    let repo = Repository::open(req.from)?.ok_or_else(|| Error::not_found(format!("{} is not a Safehold repository", req.from.display())))?;
    // Safety backups are restored by id only: they hold part of a database.
    let list: Vec<_> = repo.list()?.into_iter().filter(|(_, h)| backup::is_whole(&h.source_fingerprint)).collect();
    if let Some(id) = &req.backup_id {
        let (path, _) = repo.find(id)?;
        return Ok((path, Some(repo), None));
    }
    let Some(at) = &req.at else {
        let newest = list.into_iter().max_by(|a, b| a.1.snapshot_time.cmp(&b.1.snapshot_time));
        let (path, _) = newest.ok_or_else(|| Error::not_found(format!("the repository {} holds no backups yet", req.from.display())))?;
        return Ok((path, Some(repo), None));
    };
    let wanted = parse_time(at, "the point in time")?;
    let list: Vec<_> = list.into_iter().filter(|(_, h)| req.source_name.as_ref().is_none_or(|n| &h.source_name == n)).collect();
    let sources: BTreeSet<&str> = list.iter().map(|(_, h)| h.source_name.as_str()).collect();
    if sources.len() > 1 {
        return Err(Error::validation(format!(
            "the repository holds backups of several databases ({}); say which with --source NAME",
            sources.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    let mut best: Option<(PathBuf, DateTime<Utc>, String)> = None;
    let mut oldest: Option<DateTime<Utc>> = None;
    for (path, h) in list {
        let Ok(t) = parse_time(&h.snapshot_time, "a backup's snapshot time") else { continue };
        oldest = Some(oldest.map_or(t, |o| o.min(t)));
        if t <= wanted && best.as_ref().is_none_or(|(_, bt, _)| t > *bt) {
            best = Some((path, t, h.snapshot_time.clone()));
        }
    }
    let (path, t, reached) = best.ok_or_else(|| match oldest {
        Some(o) => Error::not_found(format!("no backup was taken at or before {at}: the oldest in the repository is from {}", o.to_rfc3339())),
        None => Error::not_found(format!("the repository {} holds no backups yet", req.from.display())),
    })?;
    let gap = (wanted - t).num_milliseconds() as f64 / 1000.0;
    Ok((path, Some(repo), Some(PointInTime { requested: at.to_string(), reached, gap_seconds: gap })))
}

/// The opened chain of a backup.
pub struct Opened {
    pub chain: Vec<(Arc<ArchiveReader>, ArchiveIndex)>,
    pub repo: Option<Repository>,
    pub point_in_time: Option<PointInTime>,
}

/// Opens the chain of the backup `pick` reaches: each archive unlocked with `keys`, each
/// incremental after the backups it builds on.
pub async fn open(req: &Pick<'_>, keys: &KeySources) -> Result<Opened> {
    let (path, repo, pit) = select(req)?;
    let readers = keys.open_chain(&path, repo.as_ref()).await?;
    let chain = check_chain(readers)?;
    Ok(Opened { chain, repo, point_in_time: pit })
}

/// Checks that each archive builds on the one before and the first is a full backup; indexes them.
pub(crate) fn check_chain(chain: Vec<ArchiveReader>) -> Result<Vec<(Arc<ArchiveReader>, ArchiveIndex)>> {
    for pair in chain.windows(2) {
        if pair[1].header.parent_id.as_deref() != Some(pair[0].header.archive_id.as_str()) {
            return Err(Error::validation(format!("backup {} does not build on {}: the chain is broken", pair[1].header.archive_id, pair[0].header.archive_id)));
        }
    }
    match chain.first() {
        Some(first) if first.header.parent_id.is_some() => {
            return Err(Error::validation(format!(
                "backup {} is {} and needs the backup it builds on ({}); restore it from its repository",
                first.header.archive_id,
                first.header.backup_type,
                first.header.parent_id.clone().unwrap_or_default()
            )))
        }
        None => return Err(Error::validation("nothing to restore")),
        _ => {}
    }
    let mut members = Vec::with_capacity(chain.len());
    for r in chain {
        let index = r.index()?;
        members.push((Arc::new(r), index));
    }
    Ok(members)
}
