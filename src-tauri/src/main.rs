//! The Safehold desktop shell: opens the catalog, sets up the demo on first launch, registers
//! the engine's functions as commands. Thin by design: every command is one engine call.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod commands;

use safehold_core::{context, demo, Ctx, Error};

/// What the commands share: the engine context, or why it could not be opened (shown by the UI).
pub struct AppState {
    pub ctx: Result<Ctx, Error>,
    /// Backups running now, by execution id, with the token that cancels them.
    pub running: std::sync::Mutex<std::collections::HashMap<String, safehold_core::source::CancelToken>>,
    /// The scheduler and job runner for backups (scheduled and "Run Now").
    pub scheduler: Option<std::sync::Arc<safehold_core::scheduler::Scheduler>>,
}

impl AppState {
    pub fn ctx(&self) -> Result<&Ctx, Error> {
        self.ctx.as_ref().map_err(Clone::clone)
    }

    /// The schedules changed: the scheduler re-reads them at once.
    pub fn reschedule(&self) {
        if let Some(s) = &self.scheduler {
            s.reschedule();
        }
    }
}

async fn start() -> Result<Ctx, Error> {
    let home = context::default_home()?;
    let ctx = Ctx::open(&home).await?;
    demo::ensure(&ctx, false).await?;
    Ok(ctx)
}

/// The periodic storage check while the app runs: every storage is probed and measured at start
/// and then every ten minutes; a failing one is flagged on the dashboard.
async fn watch_storage(ctx: Ctx) {
    loop {
        if let Ok(list) = safehold_core::storage::list(&ctx).await {
            for s in list.into_iter().filter(|s| s.is_active) {
                if let Ok(h) = safehold_core::storage::check(&ctx, &s.id).await {
                    if !h.ok {
                        tracing::warn!("storage \"{}\" failed its health check: {}", h.storage_name, h.message);
                    }
                }
                let _ = safehold_core::storage::refresh_usage(&ctx, &s.id).await;
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(600)).await;
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let ctx = tauri::async_runtime::block_on(start());
    if let Err(e) = &ctx {
        tracing::error!("Safehold could not start its engine: {}", e.message);
    }
    let mut scheduler = None;
    if let Ok(c) = &ctx {
        match tauri::async_runtime::block_on(safehold_core::scheduler::recover_interrupted(c)) {
            Ok(r) if r.backups + r.restores > 0 => tracing::warn!("{} backups and {} restores were interrupted when Safehold last stopped", r.backups, r.restores),
            Ok(_) => {}
            Err(e) => tracing::error!("cannot check for interrupted jobs: {}", e.message),
        }
        let s = safehold_core::scheduler::Scheduler::new(c.clone(), 1, std::sync::Arc::new(|line| tracing::info!("{line}")));
        tauri::async_runtime::spawn(s.clone().run());
        scheduler = Some(s);
        tauri::async_runtime::spawn(watch_storage(c.clone()));
    }
    let result = tauri::Builder::default()
        .plugin(tauri_plugin_dialog::init())
        .manage(AppState { ctx, running: Default::default(), scheduler })
        .invoke_handler(tauri::generate_handler![
            commands::startup_status,
            commands::list_executions,
            commands::list_restores,
            commands::list_migrations,
            commands::list_storage,
            commands::list_configurations,
            commands::create_configuration,
            commands::update_configuration,
            commands::set_configuration_active,
            commands::delete_configuration,
            commands::validate_configuration,
            commands::cron_preview,
            commands::list_connections,
            commands::add_connection,
            commands::update_connection,
            commands::remove_connection,
            commands::test_connection,
            commands::probe_connection,
            commands::setup_demo,
            commands::run_backup_now,
            commands::cancel_backup,
            commands::plan_restore,
            commands::start_restore,
            commands::cancel_restore,
            commands::verify_by_restoring,
            commands::preview_retention,
            commands::apply_retention,
            commands::rebuild_catalog,
            commands::check_storage,
            commands::refresh_storage_usage,
            commands::storage_samples,
            commands::add_local_storage,
            commands::add_remote_storage,
            commands::remove_storage,
        ])
        .run(tauri::generate_context!("../tauri.conf.json"));
    if let Err(e) = result {
        eprintln!("error: the Safehold window could not be opened: {e}");
        std::process::exit(1);
    }
}
