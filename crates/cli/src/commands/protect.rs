//! `safehold protect`: continuous protection of a PostgreSQL database (being built, issue 24) —
//! the slot and the base backup, change segments, the slot's status, a restore to a second.

use safehold_core::protect;

use crate::prelude::*;

fn source_of(p: &ProtectArgs) -> Result<String, Error> {
    match p.source.as_deref().map(SourceSpec::parse).transpose()? {
        Some(SourceSpec::Postgres { url }) => Ok(url),
        Some(SourceSpec::Sqlite { .. }) => Err(Error::validation("continuous protection follows PostgreSQL databases: --source postgres://user@host:5432/db")),
        None => Err(Error::validation("give the protected database: --source postgres://user@host:5432/db")),
    }
}

/// The repository of a protection named on the command line.
pub(crate) fn repo_of(p: &ProtectArgs) -> Result<&PathBuf, Error> {
    p.repo.as_ref().ok_or_else(|| Error::validation("give the repository: --repo DIR (or --config NAME for a configuration's continuous protection)"))
}

fn name_of(p: &ProtectArgs) -> Result<&str, Error> {
    p.name.as_deref().ok_or_else(|| Error::validation("give the protection's name: --name NAME (its replication slot's name)"))
}

fn opened(place: &Path) -> Result<Repository, Error> {
    Repository::open(place)?.ok_or_else(|| Error::not_found(format!("{} is not a repository: start protection into it first (safehold protect start)", place.display())))
}

pub(crate) async fn run(cmd: &ProtectCommand, json: bool, place: &Path, keys: KeySources) -> Result<(), Error> {
    let signer = keys.writer.clone().map(|w| w as Arc<dyn safehold_core::archive::Signer>);
    match cmd {
        ProtectCommand::Start(p) => {
            let url = source_of(p)?;
            let (repo, mk) = keys.open_repository_for_backup(place).await?;
            let mut req = BackupRequest::new(SourceSpec::Postgres { url });
            req.signer = keys.writer.clone();
            let out = protect::start(&repo, &mk, &req, name_of(p)?, &cancel_on_ctrl_c(), &progress_sink(json)).await;
            end_progress(json);
            let (prot, base) = out?;
            if json {
                print_json(&serde_json::json!({ "protection": prot, "base": base }));
            } else {
                println!("protecting as {}: base backup {} ({} rows)\n  run `safehold protect run --every 5 …` to keep the changes", prot.slot, base.id, base.rows);
            }
        }
        ProtectCommand::Run { p, every, warn_held_bytes, max_held_bytes } => {
            let url = source_of(p)?;
            let repo = opened(place)?;
            let cancel = cancel_on_ctrl_c();
            // With --every, the slot is streamed (the server decodes each change once) and the
            // stream kept open between steps; one step alone polls it.
            let mut streams = protect::Streams::default();
            loop {
                let out = match every {
                    Some(_) => protect::step_in(&repo, &url, name_of(p)?, signer.clone(), &mut streams).await?,
                    None => protect::step(&repo, &url, name_of(p)?, signer.clone()).await?,
                };
                if json {
                    print_json(&out);
                } else if out.transactions > 0 {
                    println!("{} transactions, {} changes sealed into {}", out.transactions, out.changes, out.segment.as_deref().unwrap_or("-"));
                }
                if out.schema_changed {
                    // pgoutput carries no DDL: a new base backup, the slot kept.
                    let (repo, mk) = keys.open_repository_for_backup(place).await?;
                    let mut req = BackupRequest::new(SourceSpec::Postgres { url: url.clone() });
                    req.signer = keys.writer.clone();
                    let (_, base) = protect::rebase(&repo, &mk, &req, name_of(p)?, &cancel, &progress_sink(json)).await?;
                    end_progress(json);
                    if !json {
                        println!("the schema changed: a new base backup {} ({} rows); the earlier one's segments stay restorable up to the last step before the change", base.id, base.rows);
                    }
                }
                let check = protect::check_slot(&repo, &url, name_of(p)?, Some(*warn_held_bytes), *max_held_bytes).await?;
                if let Some(w) = &check.warning {
                    eprintln!("warning: {w}");
                }
                if let Some(d) = check.dropped {
                    return Err(Error::new(ErrorCode::Conflict, d));
                }
                let Some(secs) = *every else { break };
                // Waits in small steps: Ctrl-C ends the loop between segments, never inside one.
                for _ in 0..(secs.max(1) * 10) {
                    if cancel.check().is_err() {
                        return Ok(());
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
        ProtectCommand::Status(p) => {
            let url = source_of(p)?;
            let repo = opened(place)?;
            let st = protect::status(&repo, &url, name_of(p)?).await?;
            if json {
                print_json(&serde_json::json!({
                    "name": st.name, "slot_exists": st.slot.is_some(), "lag_seconds": st.lag_seconds,
                    "lag_bytes": st.slot.as_ref().map(|s| s.lag_bytes), "held_bytes": st.slot.as_ref().map(|s| s.held_bytes),
                    "wal_status": st.slot.as_ref().and_then(|s| s.wal_status.clone()), "max_slot_wal_keep_size": st.slot.as_ref().map(|s| s.max_slot_wal_keep_size.clone()),
                    "segments": st.segments, "last_segment": st.last_segment, "last_sealed_commit": st.last_sealed_commit,
                    "recovery_point": st.covered.last().map(|c| c.1.clone()), "covered": st.covered,
                }));
            } else {
                match (&st.slot, st.lag_seconds) {
                    (Some(s), Some(lag)) => println!(
                        "{}: the recovery point is {lag:.1} s behind ({} bytes of WAL not yet sealed); {} bytes held back on the server ({}; max_slot_wal_keep_size {})",
                        name_of(p)?,
                        s.lag_bytes,
                        s.held_bytes,
                        s.wal_status.as_deref().unwrap_or("?"),
                        s.max_slot_wal_keep_size
                    ),
                    _ => println!("{}: no replication slot on the server (protection is stopped, or the slot was lost)", name_of(p)?),
                }
                println!(
                    "  {} segments{}",
                    st.segments,
                    st.last_sealed_commit.map(|c| format!(", the newest transaction sealed committed at {c}")).unwrap_or_default()
                );
            }
        }
        ProtectCommand::Stop(p) => {
            let url = source_of(p)?;
            let repo = opened(place)?;
            protect::stop(&repo, &url, name_of(p)?).await?;
            if json {
                print_json(&serde_json::json!({ "name": name_of(p)?, "stopped": true }));
            } else {
                println!("{}: the slot and the publication are dropped; the segments stay in {}", name_of(p)?, place.display());
            }
        }
        ProtectCommand::Restore { p, at, to, tenant, tenant_column, tenants_table, tables, as_copy, new_tenant_id, dry_run } => {
            let repo = opened(place)?;
            let SourceSpec::Postgres { url } = SourceSpec::parse(to)? else {
                return Err(Error::validation("--to is a PostgreSQL database: postgres://user@host:5432/db"));
            };
            let name = name_of(p)?;
            // The plan first: which base, which segments, how many changes.
            let plan = protect::plan_at(&repo, &keys, name, at).await?;
            if !json {
                println!(
                    "{at}: base backup {} (taken {}), {} segments, {} transactions ({} changes) replayed{}",
                    plan.base_id,
                    plan.base_taken,
                    plan.segments,
                    plan.transactions,
                    plan.changes,
                    plan.last_commit.as_deref().map(|c| format!(", the last committed at {c}")).unwrap_or_default()
                );
            }
            let scope = match (tenant, tables.is_empty()) {
                (Some(t), _) => {
                    let ts = safehold_core::source::pg_apply::TenantScope { tenant_id: t.clone(), tenant_column: tenant_column.clone(), tenants_table: tenants_table.clone(), references: Vec::new() };
                    Some(if *as_copy {
                        protect::AtScope::TenantAsCopy(ts, safehold_core::migrate::CopyAs { new_tenant_id: new_tenant_id.clone(), ..Default::default() })
                    } else {
                        protect::AtScope::Scope(safehold_core::source::pg_apply::Scope::Tenant(ts))
                    })
                }
                (None, false) => Some(protect::AtScope::Scope(safehold_core::source::pg_apply::Scope::Tables(tables.iter().cloned().collect()))),
                (None, true) => None,
            };
            match scope {
                Some(scope) => {
                    let out = protect::restore_scope_at(&repo, &keys, name, at, &url, &scope, !dry_run, &cancel_on_ctrl_c(), &progress_sink(json)).await;
                    end_progress(json);
                    let out = out?;
                    if json {
                        print_json(&serde_json::json!({ "plan": plan, "tenant": tenant, "new_tenant_id": out.new_tenant_id, "at": at, "committed": !dry_run, "tables": out.tables }));
                    } else {
                        let what = tenant.as_ref().map(|t| format!("tenant {t}")).unwrap_or_else(|| tables.join(", "));
                        println!("{} {what} to {at}{}:", if *dry_run { "would put back" } else { "put back" }, if *dry_run { " (nothing changed)" } else { "" });
                        for t in &out.tables {
                            println!("  {}: {} inserted, {} updated, {} deleted", t.table, t.inserted, t.updated, t.deleted);
                        }
                        if let Some(id) = &out.new_tenant_id {
                            println!("  as the new tenant {id}");
                        }
                    }
                }
                None if *dry_run => {
                    if json {
                        print_json(&serde_json::json!({ "plan": plan, "committed": false }));
                    }
                }
                None => {
                    let out = protect::restore_at(&repo, &keys, name, at, &url, &cancel_on_ctrl_c(), &progress_sink(json)).await;
                    end_progress(json);
                    let out = out?;
                    if json {
                        print_json(&out);
                    } else {
                        println!("put back to {at}: base backup {}, {} transactions ({} changes) from {} segments", out.base_id, out.transactions, out.changes, out.segments);
                    }
                }
            }
        }
    }
    Ok(())
}

/// A configuration's continuous protection (`--config NAME`), or every configuration's status
/// (`protect status` without `--repo`): from the catalog, as the app shows it.
pub(crate) async fn configured(ctx: &Ctx, json: bool, cmd: &ProtectCommand) -> Result<(), Error> {
    use safehold_core::protect::configured as c;
    match cmd {
        ProtectCommand::Run { p, .. } => {
            let name = p.config.as_deref().ok_or_else(|| Error::validation("give --config NAME, or --source, --repo and --name"))?;
            let config = configurations::find(ctx, name).await?;
            let notices: c::NoticeSink = Arc::new(|n: c::Notice| eprintln!("{}: {}", n.level, n.message));
            let r = c::run_step(ctx, &config.id, &notices).await?;
            if json {
                print_json(&r);
            } else {
                println!("{}: {}{}", r.configuration_name, r.action, r.segment.as_deref().map(|s| format!(" ({} transactions into {s})", r.transactions)).unwrap_or_default());
            }
        }
        ProtectCommand::Status(p) => {
            let ids: Vec<String> = match &p.config {
                Some(name) => vec![configurations::find(ctx, name).await?.id],
                None => configurations::list(ctx).await?.into_iter().filter(|c| c.continuous_protection).map(|c| c.id).collect(),
            };
            let mut all = Vec::new();
            for id in ids {
                all.push(c::status_of(ctx, &id).await?);
            }
            if json {
                // Each figure named with its unit.
                let rows: Vec<serde_json::Value> = all
                    .iter()
                    .map(|s| {
                        let live = s.live.as_ref();
                        let slot = live.and_then(|l| l.slot.as_ref());
                        serde_json::json!({
                            "configuration": s.configuration_name, "enabled": s.enabled,
                            "state": s.record.as_ref().map(|r| r.state.clone()), "slot": s.record.as_ref().map(|r| r.slot.clone()),
                            "slot_exists": slot.is_some(), "lag_seconds": live.and_then(|l| l.lag_seconds),
                            "lag_bytes": slot.map(|x| x.lag_bytes), "held_bytes": slot.map(|x| x.held_bytes),
                            "warn_held_bytes": s.warn_held_bytes, "max_held_bytes": s.max_held_bytes,
                            "wal_status": slot.and_then(|x| x.wal_status.clone()), "max_slot_wal_keep_size": slot.map(|x| x.max_slot_wal_keep_size.clone()),
                            "segments": live.map(|l| l.segments), "last_segment": live.and_then(|l| l.last_segment.clone()),
                            "last_sealed_commit": live.and_then(|l| l.last_sealed_commit.clone()),
                            "recovery_point": live.and_then(|l| l.covered.last().map(|c| c.1.clone())),
                            "covered": live.map(|l| l.covered.clone()),
                            "storage": s.record.as_ref().map(|r| r.storage_location.clone()),
                            "last_step_at": s.record.as_ref().and_then(|r| r.last_step_at.clone()),
                            "last_warning": s.record.as_ref().and_then(|r| r.last_warning.clone()),
                            "last_error": s.record.as_ref().and_then(|r| r.last_error.clone()).or(s.live_error.clone()),
                        })
                    })
                    .collect();
                print_json(&rows);
            } else if all.is_empty() {
                println!("no configuration has continuous protection on (safehold config set NAME --continuous on)");
            } else {
                for s in &all {
                    let state = s.record.as_ref().map(|r| r.state.as_str()).unwrap_or("not started (the next step of the app or `safehold schedule run` starts it)");
                    println!("{}: {state}", s.configuration_name);
                    if let Some(l) = &s.live {
                        match (&l.slot, l.lag_seconds) {
                            (Some(x), Some(lag)) => println!(
                                "  the recovery point is {lag:.1} s behind ({} bytes not yet sealed); {} bytes of WAL held back (warning past {}, dropped past {}; max_slot_wal_keep_size {})",
                                x.lag_bytes, x.held_bytes, s.warn_held_bytes, s.max_held_bytes, x.max_slot_wal_keep_size
                            ),
                            _ => println!("  no replication slot on the server"),
                        }
                        println!("  {} segments{}", l.segments, l.last_sealed_commit.as_deref().map(|c| format!(", the newest transaction sealed committed at {c}")).unwrap_or_default());
                        for (from, until) in &l.covered {
                            println!("  can be put back to any second from {from} to {until}");
                        }
                    }
                    if let Some(r) = &s.record {
                        println!("  slot {}{}", r.slot, r.last_step_at.as_deref().map(|t| format!(", last step {t}")).unwrap_or_default());
                        if let Some(w) = &r.last_warning {
                            println!("  warning: {w}");
                        }
                        if let Some(e) = &r.last_error {
                            println!("  error: {e}");
                        }
                    }
                    if let Some(e) = &s.live_error {
                        println!("  cannot read the server: {e}");
                    }
                }
            }
        }
        _ => return Err(Error::validation("this protect command needs --source, --repo and --name")),
    }
    Ok(())
}
