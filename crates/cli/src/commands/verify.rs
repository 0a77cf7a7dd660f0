//! `safehold verify`, `ls` and `inspect`: archives checked and looked into.

use crate::prelude::*;

/// A test restore: the backup restored into a scratch database and compared.
pub(crate) async fn restore_test(a: &VerifyArgs, json: bool, place: &Path, keys: KeySources) -> Result<(), Error> {
    let scratch = a.scratch.clone().ok_or_else(|| {
        Error::validation("a test restore needs a PostgreSQL server for its scratch database: give --scratch postgres://user@host:5432/postgres or set SAFEHOLD_SCRATCH_URL")
    })?;
    let req = restore::RestoreRequest::new(place.to_path_buf(), String::new());
    let opened = restore::open(&req, &keys).await?;
    let report = restore::restore_test(&opened, &scratch, a.source.as_deref(), &cancel_on_ctrl_c(), &progress_sink(json)).await;
    end_progress(json);
    let report = report?;
    if json {
        print_json(&report);
    } else {
        println!("test restore of backup {} ({} backups read) into scratch database {} (dropped):", report.archive_id, report.backups, report.scratch_database);
        for t in &report.tables {
            println!("  {}  {:<40} rows {}/{}  archive {}  source {}", if t.ok { "ok  " } else { "FAIL" }, t.table, t.restored_rows, t.expected_rows, t.archive_checksum, t.source);
        }
    }
    if !report.ok {
        return Err(Error::validation(format!("the test restore of backup {} found differences (see the tables marked FAIL)", report.archive_id)));
    }
    Ok(())
}

/// Every archive of a repository (or one) checked: its checksum, or with `--deep` every section.
pub(crate) async fn check(a: &VerifyArgs, json: bool, place: &Path, keys: KeySources, home: Option<&Path>) -> Result<(), Error> {
    let (paths, repo) = archives_of(place)?;
    // The checksums the catalog recorded when the archives were written, if it knows them.
    let recorded = recorded_checksums(home).await;
    let mut reports = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    for p in &paths {
        // Each archive on its own: a damaged one is reported and the others still checked.
        let checked = async {
            if a.deep {
                let mut reader = ArchiveReader::open(p)?;
                keys.unlock_archive(&mut reader, repo.as_ref()).await?;
                verify::deep_with(reader)
            } else {
                let canonical = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                verify::quick_in(p, recorded.get(&canonical).map(String::as_str), repo.as_ref())
            }
        }
        .await;
        match checked {
            Ok(report) => {
                if !json {
                    println!("ok  {}  {}  sha256 {}{}", report.archive_id, report.archive, report.sha256, if report.deep { format!("  {} sections, {} rows", report.sections, report.rows) } else { String::new() });
                }
                reports.push(serde_json::to_value(&report).unwrap_or_default());
            }
            Err(e) if paths.len() > 1 && e.code != ErrorCode::AuthFailed => {
                if !json {
                    println!("FAIL  {}  {}", p.display(), e.message);
                }
                reports.push(serde_json::json!({ "archive": p.display().to_string(), "ok": false, "error": e.message }));
                failed.push(p.display().to_string());
            }
            Err(e) => return Err(e),
        }
    }
    if json {
        print_json(&reports);
    }
    if !failed.is_empty() {
        return Err(Error::validation(format!("{} of {} archives failed verification: {}; the others are sound", failed.len(), paths.len(), failed.join(", "))));
    }
    Ok(())
}

/// The backups of a repository.
pub(crate) async fn ls(json: bool, place: &Path) -> Result<(), Error> {
    let repo = Repository::open(place)?.ok_or_else(|| Error::not_found(format!("{} is not a Safehold repository", place.display())))?;
    let (list, damaged) = repo.scan()?;
    for (p, e) in &damaged {
        eprintln!("warning: {} cannot be read and is skipped: {}", p.display(), e.message);
    }
    if json {
        let rows: Vec<_> = list
            .iter()
            .map(|(p, h)| serde_json::json!({ "id": h.archive_id, "type": h.backup_type, "parent": h.parent_id, "source": h.source_name, "snapshot_time": h.snapshot_time, "archive": p.display().to_string(), "bytes": std::fs::metadata(p).map(|m| m.len()).unwrap_or(0), "encrypted": h.encrypted, "writer": h.writer.as_ref().map(|w| &w.name), "writer_key": h.writer.as_ref().map(|w| &w.public_key) }))
            .collect();
        print_json(&rows);
    } else if list.is_empty() {
        println!("no backups in {}", repo.dir.display());
    } else {
        for (p, h) in list {
            let by = h.writer.as_ref().map(|w| format!("by {}", w.name)).unwrap_or_else(|| "unsigned".into());
            println!("{}  {:<12} {}  {}  {by}  {}", h.archive_id, h.backup_type, h.snapshot_time, h.source_name, p.display());
        }
    }
    Ok(())
}

/// An archive's header, provenance and (with a key) its tables.
pub(crate) async fn inspect(json: bool, place: &Path, keys: KeySources) -> Result<(), Error> {
    let mut reader = ArchiveReader::open(place)?;
    let header = reader.header.clone();
    let index = match keys.unlock_archive_unchecked(&mut reader, None).await {
        Ok(()) => reader.index().ok(),
        Err(_) => None,
    };
    let provenance = safehold_core::unlock::provenance_in(&reader, None)?;
    if json {
        print_json(&serde_json::json!({ "header": {
            "archive_id": header.archive_id, "repository_id": header.repository_id, "type": header.backup_type,
            "parent": header.parent_id, "source_kind": header.source_kind, "source_name": header.source_name,
            "source_fingerprint": header.source_fingerprint, "snapshot_time": header.snapshot_time,
            "format_version": header.format_version, "compression": header.compression, "encrypted": header.encrypted },
            "provenance": provenance,
            "index": index }));
    } else {
        println!("archive {} (format {})\n  repository {}\n  {} backup of {} ({})\n  snapshot {}\n  {}, {}", header.archive_id, header.format_version, header.repository_id, header.backup_type, header.source_name, header.source_kind, header.snapshot_time, header.compression, if header.encrypted { "encrypted" } else { "not encrypted" });
        let by = match &provenance {
            safehold_core::writers::Provenance::Approved { writer, .. } => format!("written by {writer} (signature checked, an approved writer)"),
            safehold_core::writers::Provenance::Unapproved { writer, .. } => format!("written by {writer} (signature checked; no key holder approved this writer, or no key was given to tell)"),
            safehold_core::writers::Provenance::Forged => "its signature does not match it: changed after it was written".into(),
            safehold_core::writers::Provenance::Unsigned => "not signed".into(),
        };
        println!("  {by}");
        match index {
            Some(i) => {
                for s in i.sections.iter().filter(|s| s.kind == "table") {
                    println!("  {:<40} {:>10} rows {:>12} bytes", s.name, s.rows, s.plain_bytes);
                }
            }
            None => println!("  (tables hidden: no key; give --password-file or --recovery-key-file)"),
        }
    }
    Ok(())
}

/// The archives a verify checks: one, or every one in a repository (those that cannot even be
/// opened included: they are reported as damaged, the others still checked).
pub(crate) fn archives_of(target: &Path) -> Result<(Vec<PathBuf>, Option<Repository>), Error> {
    if safehold_core::repository::is_repository_location(target) {
        let repo = Repository::open(target)?.ok_or_else(|| Error::not_found(format!("{} is not a Safehold repository", target.display())))?;
        let (ok, damaged) = repo.scan()?;
        let mut all: Vec<PathBuf> = ok.into_iter().map(|(p, _)| p).chain(damaged.into_iter().map(|(p, _)| p)).collect();
        all.sort();
        Ok((all, Some(repo)))
    } else {
        Ok((vec![target.to_path_buf()], None))
    }
}

/// Archive path → SHA-256 recorded in the catalog (empty when there is no catalog).
pub(crate) async fn recorded_checksums(home: Option<&Path>) -> std::collections::HashMap<PathBuf, String> {
    let Some(home) = home.map(Path::to_path_buf).or_else(|| context::default_home().ok()) else { return Default::default() };
    if !home.join(safehold_core::catalog::CATALOG_FILE).exists() {
        return Default::default();
    }
    let Ok(ctx) = Ctx::open(&home).await else { return Default::default() };
    safehold_core::history::executions(&ctx, i64::MAX)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| Some((std::fs::canonicalize(e.file_path?).ok()?, e.checksum?)))
        .collect()
}
