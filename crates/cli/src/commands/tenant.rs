//! `safehold tenant …`: tenant copy, merge, export and import (recorded in the catalog).

use crate::prelude::*;

pub(crate) async fn run(ctx: &Ctx, json: bool, cmd: TenantCommand) -> Result<(), Error> {
    let (spec, dry_run, keys) = match cmd {
        TenantCommand::Copy { source, tenant, target, new_tenant_id, new_tenant_name, common } => {
            let mut s = migration_spec(MigrationType::TenantCopy, &common)?;
            s.target = Some(target.unwrap_or_else(|| source.clone()));
            (s.source, s.source_tenant_ids, s.target_tenant_id, s.target_tenant_name) = (Some(source), vec![tenant], new_tenant_id, new_tenant_name);
            (s, common.dry_run, None)
        }
        TenantCommand::Merge { source, tenant, into, target, remove_source, common } => {
            let mut s = migration_spec(MigrationType::TenantMerge, &common)?;
            s.target = Some(target.unwrap_or_else(|| source.clone()));
            (s.source, s.source_tenant_ids, s.target_tenant_id, s.remove_source_tenant) = (Some(source), vec![tenant], Some(into), remove_source);
            (s, common.dry_run, None)
        }
        TenantCommand::Export { source, tenant, to, format, repo, keys, common } => {
            let mut s = migration_spec(MigrationType::DataExport, &common)?;
            let by_name = to.extension().is_some_and(|e| e == safehold_core::repository::ARCHIVE_EXT);
            s.export_format = match format.as_deref() {
                None if by_name => ExportFormat::Archive,
                None | Some("portable") | Some("zip") => ExportFormat::Portable,
                Some("archive") => ExportFormat::Archive,
                Some(other) => return Err(Error::validation(format!("unknown export format \"{other}\": use portable or archive"))),
            };
            (s.source, s.source_tenant_ids, s.target_file, s.archive_repository) = (Some(source), tenant, Some(to.display().to_string()), repo);
            (s, common.dry_run, Some(safehold_core::keys::custody::keys_for(ctx, &key_sources(&keys)).await?))
        }
        TenantCommand::Import { from, target, tenant, into, new_tenant_name, keys, common } => {
            let mut s = migration_spec(MigrationType::DataImport, &common)?;
            s.source_files = from.iter().map(|f| f.display().to_string()).collect();
            (s.target, s.source_tenant_ids, s.target_tenant_id, s.target_tenant_name) = (Some(target), tenant.into_iter().collect(), into, new_tenant_name);
            (s, common.dry_run, Some(safehold_core::keys::custody::keys_for(ctx, &key_sources(&keys)).await?))
        }
    };
    if dry_run {
        let report = records::validate_with(ctx, &spec, keys, &progress_sink(json)).await;
        end_progress(json);
        let report = report?;
        if json {
            print_json(&report);
        } else {
            print_migration(&report);
            if report.is_clean() {
                println!("validation passed: nothing was changed; run without --dry-run to migrate");
            } else {
                println!("validation found problems (above): nothing was changed; fix them, choose conflict rules, or run with --skip-rejected");
            }
        }
        // The real run would refuse: scripts see it in the exit code.
        if !report.is_clean() && !spec.skip_rejected {
            exit_with(EXIT_WOULD_REFUSE);
        }
        return Ok(());
    }
    let id = records::start(ctx, &spec).await?;
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            c2.cancel();
        }
    });
    let out = records::run(ctx, &id, &spec, keys, &cancel).await;
    ctrl_c.abort();
    let report = out?;
    if json {
        print_json(&serde_json::json!({ "migration_id": id, "report": report }));
    } else {
        print_migration(&report);
        let kind = spec.migration_type.map(|k| k.as_str()).unwrap_or_default();
        match &report.target_file {
            Some(f) => println!("{kind}: {} rows written to {f}", report.rows_written),
            None => println!(
                "{kind}: {} rows written into tenant {}{}",
                report.rows_written,
                report.target_tenant_id.as_deref().unwrap_or("?"),
                if report.rows_removed > 0 { format!("; {} rows of the merged tenant removed", report.rows_removed) } else { String::new() }
            ),
        }
    }
    Ok(())
}

pub(crate) fn migration_spec(kind: MigrationType, common: &MigrationArgs) -> Result<MigrationSpec, Error> {
    let mut spec = MigrationSpec { migration_type: Some(kind), migration_name: common.name.clone().unwrap_or_default(), ..Default::default() };
    if let Some(r) = &common.rules {
        spec.rules = read_json(r, "rules")?;
    }
    spec.references = common.reference.clone();
    if let Some(m) = &common.mapping {
        let text = std::fs::read_to_string(m).map_err(|e| Error::io(format!("cannot read the mapping file {}", m.display()), &e))?;
        let file = safehold_core::migrate::MappingFile::parse(&text, &m.display().to_string())?;
        spec.mapping = file.tables;
        spec.references.extend(file.references.into_iter().filter(|r| !common.reference.contains(r)));
    }
    spec.conflicts = safehold_core::migrate::parse_conflict_rules(&common.on_conflict)?;
    for c in &common.regenerate {
        let (table, column) = c.trim().rsplit_once('.').ok_or_else(|| Error::validation(format!("--regenerate {c}: write TABLE.COLUMN")))?;
        spec.rules.push(safehold_core::migrate::rules::Rule { table: table.into(), column: column.into(), action: safehold_core::migrate::rules::Action::Regenerate { template: None } });
    }
    spec.suffix = common.suffix.clone();
    spec.skip_rejected = common.skip_rejected;
    spec.tenant_column = common.tenant_column.clone();
    spec.tenants_table = common.tenants_table.clone();
    Ok(spec)
}

pub(crate) fn print_migration(r: &MigrationReport) {
    for t in &r.tables {
        let from = t.source_table.as_deref().filter(|s| *s != t.table).map(|s| format!(" (from {s})")).unwrap_or_default();
        println!(
            "  {:<34} {:>7} read {:>7} written{}{}{}{}",
            format!("{}{from}", t.table),
            t.rows_read,
            t.rows_written,
            if t.rows_updated > 0 { format!("  ~{} updated", t.rows_updated) } else { String::new() },
            if t.rows_merged > 0 { format!("  {} merged", t.rows_merged) } else { String::new() },
            if t.rows_renamed > 0 { format!("  {} with suffix", t.rows_renamed) } else { String::new() },
            if t.rows_rejected > 0 { format!("  {} set aside", t.rows_rejected) } else { String::new() },
        );
        for p in &t.problems {
            println!("    {}: {}", p.kind, p.message);
            for s in &p.samples {
                println!("      e.g. {s}");
            }
        }
        for n in &t.notes {
            println!("    note: {n}");
        }
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    for f in &r.files {
        println!("  {}  {} bytes  sha256 {}", f.path, f.bytes, f.sha256);
    }
}
