//! `safehold schedule …`: scheduled backups without the app (for a server).

use crate::prelude::*;

pub(crate) async fn run(ctx: &Ctx, json: bool, cmd: ScheduleCommand) -> Result<(), Error> {
    match cmd {
        ScheduleCommand::List => {
            let list = safehold_core::scheduler::list(ctx).await?;
            if json {
                print_json(&list);
            } else {
                for s in list {
                    println!(
                        "{:<28} {:<16} {:<40} {}",
                        s.configuration_name,
                        s.schedule_cron,
                        s.description,
                        s.next_run.map(|n| format!("next {n} ({})", s.time_zone)).unwrap_or_else(|| "inactive".into())
                    );
                }
            }
        }
        ScheduleCommand::Run { max_jobs, protect_every } => {
            let stamp = || safehold_core::catalog::now();
            let r = safehold_core::scheduler::recover_interrupted(ctx).await?;
            if r.backups + r.restores + r.migrations + r.partial_files + r.uploads as u64 > 0 {
                println!(
                    "{} {} backups, {} restores and {} migrations were interrupted by a stop; {} partial archives removed, {} unfinished uploads aborted",
                    stamp(),
                    r.backups,
                    r.restores,
                    r.migrations,
                    r.partial_files,
                    r.uploads
                );
            }
            let log: safehold_core::scheduler::LogSink = Arc::new(move |line| println!("{} {line}", safehold_core::catalog::now()));
            let scheduler = safehold_core::scheduler::Scheduler::new(ctx.clone(), max_jobs, log.clone());
            let active = configurations::list(ctx).await?.into_iter().filter(|c| c.is_active).count();
            println!("{} scheduler running: {active} active configurations, {max_jobs} job(s) at a time; Ctrl-C stops it", stamp());
            // Continuous protection of the configurations that have it on, beside the schedule.
            let (log2, every) = (log.clone(), std::time::Duration::from_secs(protect_every));
            let notices: safehold_core::protect::configured::NoticeSink = Arc::new(move |n| log2(format!("{}: {}", n.level, n.message)));
            let protection = safehold_core::protect::configured::run_forever(ctx.clone(), every, log.clone(), notices);
            tokio::select! {
                _ = scheduler.clone().run() => {}
                _ = protection => {}
                _ = tokio::signal::ctrl_c() => println!("{} stopping", stamp()),
            }
        }
    }
    Ok(())
}
