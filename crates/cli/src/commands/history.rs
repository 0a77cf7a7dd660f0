//! `safehold history` and `safehold audit`: what the catalog recorded.

use crate::prelude::*;

/// `history`: the backups (or with `--restores` the restores) recorded, newest first, a page at a
/// time; with `--check`, one backup verified (the result kept on its record, as in the app).
pub(crate) async fn run(ctx: &Ctx, json: bool, a: HistoryArgs) -> Result<(), Error> {
    let HistoryArgs { restores, status, limit, offset, check, deep } = a;
    if limit < 1 || offset < 0 {
        return Err(Error::validation("--limit is at least 1 and --offset at least 0"));
    }
    if restores {
        let rows = safehold_core::history::restores(ctx, limit, offset).await?;
        if json {
            print_json(&rows);
        } else if rows.is_empty() {
            println!("no restores{}", if offset > 0 { " after these" } else { "" });
        } else {
            for r in &rows {
                println!(
                    "{}  {:<9} {:<10} {:<40} {}{}",
                    r.started_at,
                    r.status.as_str(),
                    r.restore_type,
                    r.target.as_deref().unwrap_or("-"),
                    r.id,
                    r.error_message.as_deref().map(|e| format!("  error: {e}")).unwrap_or_default()
                );
            }
        }
        return Ok(());
    }
    if let Some(id) = check {
        let c = safehold_core::checks::check_backup(ctx, &id, deep).await?;
        if json {
            print_json(&c);
        } else {
            println!("{} {} ({} check): {}", if c.ok { "ok  " } else { "FAIL" }, c.execution_id, if c.deep { "deep" } else { "quick" }, c.message);
        }
        if !c.ok {
            return Err(Error::validation(format!("backup {} failed its check: {}", c.execution_id, c.message)));
        }
        return Ok(());
    }
    let status = match status.as_deref() {
        None => None,
        Some(s) => Some(serde_json::from_value::<safehold_core::history::JobStatus>(serde_json::Value::String(s.to_string())).map_err(|_| {
            Error::validation(format!("unknown status \"{s}\"; use pending, running, completed, failed or cancelled"))
        })?),
    };
    let rows = safehold_core::history::executions_page(ctx, limit, offset, status).await?;
    if json {
        print_json(&rows);
    } else if rows.is_empty() {
        println!("no backups{}", status.map(|_| " with that status").unwrap_or_default());
    } else {
        for b in &rows {
            let check = b.metadata.get("last_check").and_then(|c| c.get("ok")).and_then(serde_json::Value::as_bool).map(|ok| if ok { "  verified" } else { "  CHECK FAILED" }).unwrap_or_default();
            println!(
                "{}  {:<9} {:<12} {:<24} {:>10} rows  {}{}{}",
                b.started_at,
                serde_json::to_value(b.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                b.backup_type,
                b.configuration_name.as_deref().unwrap_or("-"),
                b.record_count.unwrap_or(0),
                b.id,
                check,
                b.error_message.as_deref().map(|e| format!("  error: {e}")).unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// `audit`: who did what, when, with what outcome (or the entries written to a CSV file).
pub(crate) async fn audit(ctx: &Ctx, json: bool, a: AuditArgs) -> Result<(), Error> {
    let AuditArgs { by, action, outcome, since, until, limit, csv } = a;
    let filter = audit::AuditFilter { operator: by, action, outcome, since, until, limit };
    match csv {
        Some(path) => {
            let n = audit::export_csv(ctx, &filter, &path).await?;
            println!("{n} entries written to {}", path.display());
        }
        None => {
            let rows = audit::list(ctx, &filter).await?;
            if json {
                print_json(&rows);
            } else {
                for r in rows.iter().rev() {
                    println!(
                        "{}  {:<20} {:<28} {:<8} {}{}",
                        r.at,
                        r.operator.as_deref().unwrap_or("-"),
                        r.action,
                        r.outcome,
                        r.target.as_deref().unwrap_or(""),
                        r.detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(())
}
