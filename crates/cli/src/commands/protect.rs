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
            let out = protect::start(&repo, &mk, &req, &p.name, &cancel_on_ctrl_c(), &progress_sink(json)).await;
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
            loop {
                let out = protect::step(&repo, &url, &p.name, signer.clone()).await?;
                if json {
                    print_json(&out);
                } else if out.transactions > 0 {
                    println!("{} transactions, {} changes sealed into {}", out.transactions, out.changes, out.segment.as_deref().unwrap_or("-"));
                }
                let check = protect::check_slot(&repo, &url, &p.name, Some(*warn_held_bytes), *max_held_bytes).await?;
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
            let st = protect::status(&repo, &url, &p.name).await?;
            if json {
                print_json(&serde_json::json!({
                    "name": st.name, "slot_exists": st.slot.is_some(), "lag_seconds": st.lag_seconds,
                    "lag_bytes": st.slot.as_ref().map(|s| s.lag_bytes), "held_bytes": st.slot.as_ref().map(|s| s.held_bytes),
                    "wal_status": st.slot.as_ref().and_then(|s| s.wal_status.clone()), "max_slot_wal_keep_size": st.slot.as_ref().map(|s| s.max_slot_wal_keep_size.clone()),
                    "segments": st.segments, "last_segment": st.last_segment, "last_sealed_commit": st.last_sealed_commit,
                }));
            } else {
                match (&st.slot, st.lag_seconds) {
                    (Some(s), Some(lag)) => println!(
                        "{}: the recovery point is {lag:.1} s behind ({} bytes of WAL not yet sealed); {} bytes held back on the server ({}; max_slot_wal_keep_size {})",
                        p.name,
                        s.lag_bytes,
                        s.held_bytes,
                        s.wal_status.as_deref().unwrap_or("?"),
                        s.max_slot_wal_keep_size
                    ),
                    _ => println!("{}: no replication slot on the server (protection is stopped, or the slot was lost)", p.name),
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
            protect::stop(&repo, &url, &p.name).await?;
            if json {
                print_json(&serde_json::json!({ "name": p.name, "stopped": true }));
            } else {
                println!("{}: the slot and the publication are dropped; the segments stay in {}", p.name, place.display());
            }
        }
        ProtectCommand::Restore { p, at, to, tenant: Some(tenant), tenant_column, tenants_table, dry_run } => {
            let repo = opened(place)?;
            let SourceSpec::Postgres { url } = SourceSpec::parse(to)? else {
                return Err(Error::validation("--to is a PostgreSQL database: postgres://user@host:5432/db"));
            };
            let ts = safehold_core::source::pg_apply::TenantScope { tenant_id: tenant.clone(), tenant_column: tenant_column.clone(), tenants_table: tenants_table.clone(), references: Vec::new() };
            let out = protect::restore_tenant_at(&repo, &keys, &p.name, at, &url, &ts, !dry_run, &cancel_on_ctrl_c(), &progress_sink(json)).await;
            end_progress(json);
            let out = out?;
            if json {
                print_json(&serde_json::json!({ "tenant": tenant, "at": at, "committed": !dry_run, "tables": out.tables }));
            } else {
                println!("{} tenant {tenant} to {at}{}:", if *dry_run { "would put back" } else { "put back" }, if *dry_run { " (nothing changed)" } else { "" });
                for t in &out.tables {
                    println!("  {}: {} inserted, {} updated, {} deleted", t.table, t.inserted, t.updated, t.deleted);
                }
            }
        }
        ProtectCommand::Restore { p, at, to, .. } => {
            let repo = opened(place)?;
            let SourceSpec::Postgres { url } = SourceSpec::parse(to)? else {
                return Err(Error::validation("--to is a PostgreSQL database: postgres://user@host:5432/db"));
            };
            let out = protect::restore_at(&repo, &keys, &p.name, at, &url, &cancel_on_ctrl_c(), &progress_sink(json)).await;
            end_progress(json);
            let out = out?;
            if json {
                print_json(&out);
            } else {
                println!("put back to {at}: base backup {}, {} transactions ({} changes) from {} segments", out.base_id, out.transactions, out.changes, out.segments);
            }
        }
    }
    Ok(())
}
