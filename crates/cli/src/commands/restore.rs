//! `safehold restore`: a backup restored, whole, selectively, or one tenant.

use crate::prelude::*;

pub(crate) async fn run(cli: &Cli, a: &RestoreArgs) -> Result<(), Error> {
    let ctx = open_catalog(cli).await?;
    let from = location_in(cli, &ctx, &a.request.from).await?;
    let mut a = a.clone();
    a.request.target = target_in(&ctx, &a.request.target).await?;
    let a = &a;
    let what = if a.dry_run { safehold_core::keys::custody::Adhoc::RestorePlan } else { safehold_core::keys::custody::Adhoc::Restore };
    let (who, keys) = safehold_core::keys::custody::adhoc(&ctx, what, &format!("{} → {}", from.display(), source::redact(&a.request.target)), &key_sources(&a.keys), Some(&from)).await?;
    let out = restore_as(cli, &ctx, a, from.clone(), keys).await;
    safehold_core::keys::custody::adhoc_done(&ctx, &who, what, &format!("{} → {}", from.display(), source::redact(&a.request.target)), Some(&from), &out).await?;
    out
}

pub(crate) async fn restore_as(cli: &Cli, ctx: &Ctx, a: &RestoreArgs, from: PathBuf, keys: KeySources) -> Result<(), Error> {
    let json = cli.json;
    if a.server {
        return server(json, a, from, keys).await;
    }
    let mut req = a.request.clone();
    req.from = from;
    req.as_copy(a.as_copy);
    req.on_conflict = safehold_core::migrate::parse_conflict_rules(&a.on_conflict)?;
    // A second that continuous protection covers: its base and segments, not the nearest backup.
    if let (Some(at), Some(repo)) = (req.at.clone(), Repository::open(&req.from).ok().flatten()) {
        if let Some(slot) = safehold_core::protect::covering(&repo, &at, req.source_name.as_deref())? {
            return restore_at_second(json, a, &req, &repo, &slot, &at, keys).await;
        }
    }
    let opened = restore::open(&req, &keys).await?;
    let cancel = cancel_on_ctrl_c();
    let plan = restore::plan(&req, &opened, a.dry_run, &cancel).await?;
    if a.dry_run {
        if json {
            print_json(&plan);
        } else {
            print_plan(&plan);
            eprintln!("dry run: nothing was changed");
        }
        return Ok(());
    }
    if !json {
        print_plan(&plan);
    }
    if plan.destructive && !a.yes {
        if !std::io::stdin().is_terminal() {
            return Err(Error::validation(format!(
                "this restore replaces data in {}; review the plan (--dry-run) and add --yes to run it without a prompt",
                plan.target
            )));
        }
        eprint!("This replaces data in {}. Type the database name ({}) to go on: ", plan.target, plan.target_database);
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| Error::io("cannot read the answer", &e))?;
        if line.trim() != plan.target_database {
            return Err(Error::new(safehold_core::ErrorCode::Cancelled, "not confirmed: nothing was changed"));
        }
    }
    // Recorded in the catalog as a restore operation, by the operator who ran it.
    let id = restore::records::insert(ctx, &req, None).await?;
    let out = restore::records::run(ctx, &id, &req, &keys, Some(opened), &cancel, Some(progress_sink(json))).await;
    end_progress(json);
    let out = out?;
    if json {
        print_json(&serde_json::json!({ "restore_id": id, "outcome": out }));
    } else {
        if let Some(b) = &out.safety_backup {
            println!("safety backup {} of what was replaced: {}", b.id, b.archive);
        }
        match out.restore_type {
            restore::RestoreType::Full => println!("restored backup {} into {}: {} tables, {} rows in {:.1} s", out.archive_id, out.target, out.tables, out.rows, out.seconds),
            _ => {
                for c in &out.changes {
                    println!("  {:<40} {:>9} rows   +{} inserted  ~{} updated  -{} deleted", c.table, c.rows_in_backup, c.inserted, c.updated, c.deleted);
                }
                println!(
                    "restored {} of backup {} into {}{}: {} tables, {} rows in {:.1} s",
                    out.restore_type.as_str(),
                    out.archive_id,
                    out.target,
                    out.new_tenant_id.as_ref().map(|n| format!(" as new tenant {n}")).unwrap_or_default(),
                    out.tables,
                    out.rows,
                    out.seconds
                );
            }
        }
    }
    Ok(())
}

pub(crate) fn print_plan(p: &restore::RestorePlan) {
    let newest = p.chain.last();
    eprintln!("Restore plan ({})", if p.exact { "from a trial run, rolled back" } else { "from the backup's index" });
    if let Some(b) = newest {
        eprintln!("  backup:  {} ({}, snapshot {}) of {}", b.id, b.backup_type, b.snapshot_time, b.source_name);
    }
    if p.chain.len() > 1 {
        eprintln!("  chain:   {}", p.chain.iter().map(|b| format!("{} ({})", &b.id[..8.min(b.id.len())], b.backup_type)).collect::<Vec<_>>().join(" → "));
    }
    if let Some(pit) = &p.point_in_time {
        eprintln!("  point:   requested {} → reaches {} ({:.0} s earlier)", pit.requested, pit.reached, pit.gap_seconds);
    }
    eprintln!("  target:  {}{}", p.target, if p.create { " (created if missing)" } else { "" });
    let what = match p.restore_type {
        restore::RestoreType::Full if p.clean => format!("full, replacing the target's {} tables and views", p.replaced_objects),
        restore::RestoreType::Full => "full, into an empty database".to_string(),
        restore::RestoreType::Selective => "selective: the tables below replace the target's".to_string(),
        restore::RestoreType::TenantOnly if p.preserve_ids => format!("tenant {}: its rows replace the tenant's current rows; no other tenant is touched", p.tenant_id.clone().unwrap_or_default()),
        restore::RestoreType::TenantOnly => format!(
            "tenant {} restored as a copy{}, with new ids",
            p.tenant_id.clone().unwrap_or_default(),
            p.new_tenant_id.as_ref().map(|n| format!(" under tenant id {n}")).unwrap_or_default()
        ),
    };
    eprintln!("  restore: {what}");
    for t in &p.tables {
        if p.exact {
            eprintln!("    {:<40} {:>9} rows   +{} inserted  ~{} updated  -{} deleted", t.table, t.rows_in_backup, t.inserted, t.updated, t.deleted);
        } else {
            eprintln!("    {:<40} {:>9} rows", t.table, t.rows_in_backup);
        }
    }
    eprintln!("  total:   {} rows, ~{} MB to read, ~{:.0} s", p.rows, p.estimated_bytes / 1_000_000, p.estimated_seconds);
    for w in &p.warnings {
        eprintln!("  warning: {w}");
    }
    for u in &p.unsupported {
        eprintln!("  unsupported: {u}");
    }
    if p.destructive {
        eprintln!("  safety backup first: {}", if p.safety_backup { "yes (into the backup's repository)" } else { "no (skipped)" });
    }
}

/// `safehold restore --at` of a second continuous protection covers: the plan (base, segments,
/// changes), then the whole database into an empty one (`--create` makes it), chosen tables, or
/// one tenant in place or as a copy — as `safehold protect restore` does.
async fn restore_at_second(json: bool, a: &RestoreArgs, req: &restore::RestoreRequest, repo: &Repository, slot: &str, at: &str, keys: KeySources) -> Result<(), Error> {
    use safehold_core::protect;
    use safehold_core::source::pg_apply::{Scope, TenantScope};
    let SourceSpec::Postgres { url } = SourceSpec::parse(&req.target)? else {
        return Err(Error::validation("a restore to a second goes into PostgreSQL: --target postgres://user@host:5432/db"));
    };
    let plan = protect::plan_at(repo, &keys, slot, at).await?;
    if !json {
        println!(
            "{at} is covered by continuous protection ({slot}): base backup {} (taken {}), {} segments, {} transactions ({} changes) replayed",
            plan.base_id, plan.base_taken, plan.segments, plan.transactions, plan.changes
        );
    }
    let scope = match req.restore_type {
        restore::RestoreType::Full => None,
        restore::RestoreType::Selective => Some(protect::AtScope::Scope(Scope::Tables(req.tables.iter().cloned().collect()))),
        restore::RestoreType::TenantOnly => {
            let tenant = req.tenant_id.clone().ok_or_else(|| Error::validation("a tenant restore names its tenant: --tenant ID"))?;
            let ts = TenantScope { tenant_id: tenant, tenant_column: req.tenant_column.clone(), tenants_table: req.tenants_table.clone(), references: Vec::new() };
            Some(if req.preserve_ids {
                protect::AtScope::Scope(Scope::Tenant(ts))
            } else {
                protect::AtScope::TenantAsCopy(ts, safehold_core::migrate::CopyAs { new_tenant_id: req.new_tenant_id.clone(), new_tenant_name: req.new_tenant_name.clone(), conflicts: req.on_conflict.clone(), rules: Vec::new() })
            })
        }
    };
    let cancel = cancel_on_ctrl_c();
    match scope {
        Some(scope) => {
            let out = protect::restore_scope_at(repo, &keys, slot, at, &url, &scope, !a.dry_run, &cancel, &progress_sink(json)).await;
            end_progress(json);
            let out = out?;
            if json {
                print_json(&serde_json::json!({ "at": at, "plan": plan, "committed": !a.dry_run, "tables": out.tables, "new_tenant_id": out.new_tenant_id }));
            } else {
                for c in &out.tables {
                    println!("  {:<40} +{} inserted  ~{} updated  -{} deleted", c.table, c.inserted, c.updated, c.deleted);
                }
                println!("{}", if a.dry_run { "dry run: nothing was changed" } else { "done" });
            }
        }
        None if a.dry_run => {
            if json {
                print_json(&serde_json::json!({ "at": at, "plan": plan, "committed": false }));
            } else {
                eprintln!("dry run: nothing was changed");
            }
        }
        None => {
            if req.create {
                safehold_core::source::postgres::create_database(&url).await?;
            }
            let out = protect::restore_at(repo, &keys, slot, at, &url, &cancel, &progress_sink(json)).await;
            end_progress(json);
            if out.is_err() && req.create {
                // All or nothing: the database this restore made goes with it.
                let _ = safehold_core::source::postgres::drop_database(&url).await;
            }
            let out = out?;
            if json {
                print_json(&serde_json::json!({ "at": at, "plan": plan, "outcome": out }));
            } else {
                println!("put back to {at} into {}: base backup {}, {} transactions ({} changes) from {} segments", source::redact(&url), out.base_id, out.transactions, out.changes, out.segments);
            }
        }
    }
    Ok(())
}

/// `restore --server`: a server backup onto a server — the plan first, then roles and databases.
async fn server(json: bool, a: &RestoreArgs, from: PathBuf, keys: KeySources) -> Result<(), Error> {
    use safehold_core::servers;
    let req = servers::ServerRestoreRequest {
        from,
        set_id: a.request.backup_id.clone(),
        target: a.request.target.clone(),
        databases: a.databases.clone(),
        roles: a.roles,
        skip_unsupported: a.request.skip_unsupported,
        owners: a.request.owners,
        privileges: a.request.privileges,
        jobs: a.request.jobs,
    };
    let plan = servers::plan(&req, &keys).await?;
    if !json || a.dry_run {
        if json {
            print_json(&plan);
        } else {
            print_server_plan(&plan, a.request.skip_unsupported);
        }
    }
    if a.dry_run {
        if !json {
            eprintln!("dry run: nothing was changed");
        }
        return Ok(());
    }
    let out = servers::restore(&req, &keys, &cancel_on_ctrl_c(), &progress_sink(json)).await;
    end_progress(json);
    let out = out?;
    if json {
        print_json(&out);
    } else {
        println!(
            "restored server backup {} onto {}: {} databases ({}), {} roles created, {} rows in {:.1} s",
            &out.plan.set_id[..8],
            out.plan.target,
            out.databases.len(),
            out.databases.join(", "),
            out.roles_created.len(),
            out.rows,
            out.seconds
        );
    }
    Ok(())
}

fn print_server_plan(p: &safehold_core::servers::ServerRestorePlan, skip: bool) {
    eprintln!("Server restore plan");
    eprintln!("  backup:  server backup {} of {} (PostgreSQL {}), taken {}", p.set_id, p.source, p.source_version, p.taken_at);
    eprintln!("  target:  {} (PostgreSQL {})", p.target, p.target_version);
    eprintln!("  roles:   {} created{}; {} exist and are left as they are{}", p.roles_created.len(), list(&p.roles_created), p.roles_existing.len(), list(&p.roles_existing));
    eprintln!("  memberships: {}", p.memberships);
    for d in &p.databases {
        eprintln!("    {:<30} {:>6} tables {:>10} rows   {}", d.database, d.tables, d.rows, d.action());
    }
    for u in &p.unsupported {
        eprintln!("  {}: {u}", if skip { "left out" } else { "unsupported" });
    }
    for w in &p.warnings {
        eprintln!("  warning: {w}");
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" ({})", names.join(", "))
    }
}
