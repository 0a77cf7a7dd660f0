//! `safehold config …`: backup configurations, and their retention.

use crate::prelude::*;

pub(crate) async fn run(ctx: &Ctx, json: bool, cmd: ConfigCommand) -> Result<(), Error> {
    match cmd {
        ConfigCommand::List => {
            let list = configurations::list(ctx).await?;
            if json {
                print_json(&list);
            } else {
                for c in list {
                    println!(
                        "{:<28} {:<12} {:<14} {} ({}), keep {} days, {}",
                        c.configuration_name,
                        format!("{:?}", c.backup_type).to_lowercase(),
                        c.schedule_cron,
                        c.schedule_description,
                        if c.is_active { "active" } else { "inactive" },
                        c.retention_days,
                        c.storage_location
                    );
                }
            }
        }
        ConfigCommand::Add { name, connection, schedule, settings } => {
            let conn = connections::find(ctx, &connection).await?;
            let mut input = configurations::new_input(ctx, &name, &conn.id, &schedule).await?;
            settings.apply(ctx, &mut input).await?;
            let c = configurations::create(ctx, input).await?;
            show_configuration(json, &c, "created");
        }
        ConfigCommand::Set { name, connection, schedule, settings, rename } => {
            let current = configurations::find(ctx, &name).await?;
            let mut input = current.to_input();
            if let Some(c) = connection {
                input.connection_id = connections::find(ctx, &c).await?.id;
            }
            if let Some(s) = schedule {
                input.schedule_cron = s;
            }
            if let Some(n) = rename {
                input.configuration_name = n;
            }
            settings.apply(ctx, &mut input).await?;
            let c = configurations::update(ctx, &current.id, input).await?;
            show_configuration(json, &c, "changed");
            settle_protection(ctx, &c.id).await?;
        }
        ConfigCommand::Remove { name } => {
            let c = configurations::find(ctx, &name).await?;
            configurations::delete(ctx, &c.id).await?;
            println!("configuration \"{}\" deleted (its backups stay)", c.configuration_name);
            settle_protection(ctx, &c.id).await?;
        }
        ConfigCommand::Run { name } => {
            let config = configurations::find(ctx, &name).await?;
            let id = safehold_core::runs::enqueue(ctx, &config.id).await?;
            let done = safehold_core::runs::run(ctx, &id, &cancel_on_ctrl_c()).await?;
            if json {
                print_json(&done);
            } else {
                println!("{} backup of \"{}\": {:?}{}", done.backup_type, name, done.status, done.file_path.as_deref().map(|p| format!(" — {p}")).unwrap_or_default());
                // A server backup: its databases, each an archive of its own.
                for d in done.metadata.get("databases").and_then(|d| d.as_array()).into_iter().flatten() {
                    println!("  {:<30} {} tables, {} rows", d["database"].as_str().unwrap_or_default(), d["tables"], d["rows"]);
                }
            }
            if let Some(e) = done.error_message {
                return Err(Error::new(safehold_core::ErrorCode::Database, e));
            }
        }
        ConfigCommand::RetentionPreview { name } => retention(ctx, json, &name, None).await?,
        ConfigCommand::RetentionApply { name, yes } => retention(ctx, json, &name, Some(yes)).await?,
        ConfigCommand::SafetyRetention { days, apply, yes } => {
            if let Some(d) = days {
                safehold_core::retention::set_safety_days(ctx, d).await?;
            }
            retention(ctx, json, safehold_core::retention::SAFETY, apply.then_some(yes)).await?
        }
    }
    Ok(())
}

/// Continuous protection turned off, the configuration deactivated or deleted: its replication
/// slot is dropped now (the server must not keep WAL for it); the slot's name is said.
async fn settle_protection(ctx: &Ctx, id: &str) -> Result<(), Error> {
    if let Some(slot) = safehold_core::protect::configured::settle(ctx, id).await? {
        eprintln!("continuous protection stopped: the replication slot {slot} is dropped (the change segments stay)");
    }
    Ok(())
}

pub(crate) fn show_configuration(json: bool, c: &configurations::BackupConfiguration, what: &str) {
    if json {
        print_json(c);
    } else {
        println!(
            "configuration \"{}\" {what}: {} ({}), {} backups{} into {}, {}{}",
            c.configuration_name,
            c.schedule_cron,
            c.schedule_description,
            format!("{:?}", c.backup_type).to_lowercase(),
            match (&c.whole_server, &c.exclude_databases) {
                (false, _) => String::new(),
                (true, None) => " of every database of the server".to_string(),
                (true, Some(x)) => format!(" of every database of the server but {x}"),
            },
            c.storage_location,
            if c.is_active { "active" } else { "inactive" },
            if c.continuous_protection { ", continuous protection on" } else { "" }
        );
    }
}

pub(crate) async fn retention(ctx: &Ctx, json: bool, name: &str, apply: Option<bool>) -> Result<(), Error> {
    // The safety backups' plan, or a configuration's.
    let config_id = if name == safehold_core::retention::SAFETY { None } else { Some(configurations::find(ctx, name).await?.id) };
    let plan = match &config_id {
        Some(id) => safehold_core::retention::preview(ctx, id).await?,
        None => safehold_core::retention::preview_safety(ctx).await?,
    };
    let print = |plan: &safehold_core::retention::RetentionPlan, done: bool| {
        if json {
            print_json(plan);
            return;
        }
        println!("retention of \"{}\": keep {} days (backups before {})", plan.configuration_name, plan.retention_days, plan.cutoff);
        for i in &plan.items {
            let verb = match i.action {
                safehold_core::retention::RetentionAction::Delete if done => "deleted",
                safehold_core::retention::RetentionAction::Delete => "delete ",
                safehold_core::retention::RetentionAction::Keep => "keep   ",
            };
            println!("  {verb} {:<12} {}  {}", i.backup_type, i.started_at, i.reason);
        }
        println!("{} backups, {} bytes {}", plan.delete_count, plan.bytes_freed, if done { "deleted" } else { "would be deleted" });
    };
    match apply {
        None => print(&plan, false),
        Some(yes) => {
            if plan.delete_count > 0 && !yes {
                if !json {
                    print(&plan, false);
                }
                return Err(Error::validation("add --yes to delete these backups (or run retention-preview to review them)"));
            }
            let done = match &config_id {
                Some(id) => safehold_core::retention::apply(ctx, id).await?,
                None => safehold_core::retention::apply_safety(ctx).await?,
            };
            print(&done, true);
        }
    }
    Ok(())
}
