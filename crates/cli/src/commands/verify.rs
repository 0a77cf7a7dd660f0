//! `safehold verify`, `ls` and `inspect`: archives checked and looked into.

use crate::prelude::*;

/// A test restore: the backup restored into a scratch database and compared.
pub(crate) async fn restore_test(a: &VerifyArgs, json: bool, place: &Path, keys: KeySources) -> Result<(), Error> {
    let scratch = a.scratch.clone().ok_or_else(|| {
        Error::validation("a test restore needs a PostgreSQL server for its scratch database: give --scratch postgres://user@host:5432/postgres or set SAFEHOLD_SCRATCH_URL")
    })?;
    if let Some(at) = &a.at {
        let repo = Repository::open(place)?.ok_or_else(|| Error::not_found(format!("{} is not a Safehold repository", place.display())))?;
        let slot = safehold_core::protect::covering(&repo, at, None)?.ok_or_else(|| Error::validation(format!("no continuous protection in {} covers {at} (safehold protect status shows what is covered)", place.display())))?;
        let report = safehold_core::protect::restore_test_at(&repo, &keys, &slot, at, &scratch, &cancel_on_ctrl_c(), &progress_sink(json)).await;
        end_progress(json);
        let report = report?;
        if json {
            print_json(&report);
        } else {
            let p = &report.plan;
            println!("test restore to {at}: base backup {}, {} segments, {} transactions ({} changes) replayed into {} (dropped):", p.base_id, p.segments, p.transactions, p.changes, report.scratch_database);
            for t in &report.tables {
                println!("  {}  {:<40} rows {}/{}", if t.ok { "ok  " } else { "FAIL" }, t.table, t.restored_rows, t.expected_rows);
            }
        }
        if !report.ok {
            return Err(Error::validation(format!("the test restore to {at} found differences (see the tables marked FAIL)")));
        }
        return Ok(());
    }
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
    use safehold_core::checks::{self, ArchiveCheck};
    // The checksums the catalog recorded when the archives were written, if it knows them.
    let recorded = match home.map(Path::to_path_buf).or_else(|| context::default_home().ok()) {
        Some(h) => checks::recorded_checksums(&h).await,
        None => Default::default(),
    };
    let results = checks::check_archives(place, a.deep, &keys, &recorded).await?;
    let failed: Vec<&str> = results.iter().filter_map(|c| if let ArchiveCheck::Failed { archive, .. } = c { Some(archive.as_str()) } else { None }).collect();
    if json {
        print_json(&results);
    } else {
        for c in &results {
            match c {
                ArchiveCheck::Sound(r) => println!("ok  {}  {}  sha256 {}{}", r.archive_id, r.archive, r.sha256, if r.deep { format!("  {} sections, {} rows", r.sections, r.rows) } else { String::new() }),
                ArchiveCheck::Failed { archive, error, .. } => println!("FAIL  {archive}  {error}"),
            }
        }
    }
    if !failed.is_empty() {
        return Err(Error::validation(format!("{} of {} archives failed verification: {}; the others are sound", failed.len(), results.len(), failed.join(", "))));
    }
    Ok(())
}

/// The backups of a repository.
pub(crate) async fn ls(json: bool, place: &Path) -> Result<(), Error> {
    let repo = Repository::open(place)?.ok_or_else(|| Error::not_found(format!("{} is not a Safehold repository", place.display())))?;
    let (mut list, damaged) = repo.scan()?;
    // The server backups' sets (`backup --all-databases`), listed with the backups they name.
    list.extend(safehold_core::servers::sets(&repo)?);
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
    let provenance = safehold_core::keys::unlock::provenance_in(&reader, None)?;
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


