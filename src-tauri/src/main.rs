//! The Safehold desktop shell: opens the catalog, sets up the demo on first launch, registers
//! the engine's functions as commands. Thin by design: every command is one engine call.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod commands;

use safehold_core::{context, demo, Ctx, Error};

/// What the commands share: the engine context, or why it could not be opened (shown by the UI).
pub struct AppState {
    pub ctx: Result<Ctx, Error>,
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

/// A context for the app's own background work (storage checks, the tray's status line).
fn background(ctx: &Ctx) -> Ctx {
    use safehold_core::auth::operators::{Acting, Session};
    ctx.detached(Session::of(Some(Acting::background()), None))
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

/// The running app, for pushing job events to the window.
static APP: std::sync::OnceLock<tauri::AppHandle> = std::sync::OnceLock::new();

/// Whether the tray icon exists: only then does closing the window keep the app running.
static TRAY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The tray's status line: whether the last scheduled backup of every configuration succeeded.
async fn tray_status(ctx: &Ctx) -> String {
    // Shown to whoever looks at the tray, signed in or not.
    let ctx = background(ctx);
    match safehold_core::scheduler::last_scheduled_failures(&ctx).await {
        Ok((failed, _)) if !failed.is_empty() => format!("Last scheduled backup failed: {}", failed.join(", ")),
        Ok((_, 0)) => "No scheduled backup has run yet".into(),
        Ok((_, n)) => format!("Last scheduled backups: all {n} succeeded"),
        Err(e) => format!("Status unknown: {}", e.message),
    }
}

/// The tray icon: the status line, "Back up now" (every active configuration), "Open", "Quit".
fn setup_tray(app: &tauri::App, ctx: Option<Ctx>, scheduler: Option<std::sync::Arc<safehold_core::scheduler::Scheduler>>, notify_on_success: bool) -> tauri::Result<()> {
    use tauri::menu::{Menu, MenuItem};
    use tauri::tray::TrayIconBuilder;
    use tauri::Manager;
    use tauri_plugin_notification::NotificationExt;
    let status = MenuItem::with_id(app, "status", "Safehold", false, None::<&str>)?;
    let now = MenuItem::with_id(app, "backup_now", "Back up now", true, None::<&str>)?;
    let open = MenuItem::with_id(app, "open", "Open", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit Safehold", true, None::<&str>)?;
    let notify = tauri::menu::CheckMenuItem::with_id(app, "notify_success", "Notify when backups succeed", true, notify_on_success, None::<&str>)?;
    let menu = Menu::with_items(app, &[&status, &now, &notify, &open, &quit])?;
    let (ctx2, sched2) = (ctx.clone(), scheduler.clone());
    let mut builder = TrayIconBuilder::with_id("safehold").menu(&menu).on_menu_event(move |app, event| match event.id().as_ref() {
        "open" => {
            if let Some(w) = app.get_webview_window("main") {
                let _ = w.show();
                let _ = w.set_focus();
            }
        }
        "backup_now" => {
            if let (Some(ctx), Some(s)) = (ctx2.clone(), sched2.clone()) {
                tauri::async_runtime::spawn(async move {
                    for c in safehold_core::configurations::list(&ctx).await.unwrap_or_default().into_iter().filter(|c| c.is_active) {
                        // As the signed-in operator: refused (and audited) without the right.
                        let _ = s.submit_as(&ctx, &c.id, "manual").await;
                    }
                });
            }
        }
        "quit" => app.exit(0),
        "notify_success" => {
            if let Some(ctx) = ctx2.clone() {
                tauri::async_runtime::spawn(async move {
                    let on = safehold_core::scheduler::notify_on_success(&ctx).await.unwrap_or(false);
                    let _ = safehold_core::scheduler::set_notify_on_success(&ctx, !on).await;
                });
            }
        }
        _ => {}
    });
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    match builder.build(app) {
        Ok(_) => TRAY.store(true, std::sync::atomic::Ordering::SeqCst),
        Err(e) => tracing::warn!("no tray icon ({e}); closing the window quits Safehold"),
    }
    if let (Some(ctx), Some(s)) = (ctx, scheduler) {
        let handle = app.handle().clone();
        let status_item = status.clone();
        let (c2, first) = (ctx.clone(), status.clone());
        tauri::async_runtime::spawn(async move {
            let _ = first.set_text(tray_status(&c2).await);
        });
        s.set_on_finish(std::sync::Arc::new(move |done, trigger| {
            let failed = done.status == safehold_core::history::JobStatus::Failed;
            let name = done.configuration_name.clone().unwrap_or_else(|| "a configuration".into());
            if failed {
                let body = format!("{name}: {}", done.error_message.clone().unwrap_or_default());
                if let Err(e) = handle.notification().builder().title("Safehold: a backup failed").body(body).show() {
                    tracing::warn!("cannot show a notification: {e}");
                }
            } else if done.status == safehold_core::history::JobStatus::Completed {
                let (ctx, handle, name) = (ctx.clone(), handle.clone(), name.clone());
                tauri::async_runtime::spawn(async move {
                    if safehold_core::scheduler::notify_on_success(&ctx).await.unwrap_or(false) {
                        let _ = handle.notification().builder().title("Safehold: backup completed").body(name).show();
                    }
                });
            }
            if trigger != "manual" {
                let (ctx, item) = (ctx.clone(), status_item.clone());
                tauri::async_runtime::spawn(async move {
                    let _ = item.set_text(tray_status(&ctx).await);
                });
            }
        }));
    }
    Ok(())
}

/// `--version` and `--help` answer without opening a window (a packaged install is checked so).
fn answered_from_arguments() -> bool {
    match std::env::args().nth(1).as_deref() {
        Some("--version" | "-V") => println!("safehold-app {}", env!("CARGO_PKG_VERSION")),
        Some("--help" | "-h") => println!(
            "safehold-app {}: the Safehold desktop app. Run it without arguments to open its window;\nthe command line is `safehold` (safehold --help).",
            env!("CARGO_PKG_VERSION")
        ),
        _ => return false,
    }
    true
}

fn main() {
    if answered_from_arguments() {
        return;
    }
    // The window shows a keychain call that waits, with a Cancel: a person gets two minutes to
    // answer an unlock prompt (the CLI and the headless scheduler keep 10 s).
    safehold_core::secrets::set_default_deadline(std::time::Duration::from_secs(120));
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let ctx = tauri::async_runtime::block_on(start()).map(|mut c| {
        // Jobs push their progress; the window gets it as "job-event" events.
        c.events = Some(std::sync::Arc::new(|e| {
            if let Some(app) = APP.get() {
                use tauri::Emitter;
                let _ = app.emit("job-event", e);
            }
        }));
        c
    });
    if let Err(e) = &ctx {
        tracing::error!("Safehold could not start its engine: {}", e.message);
    }
    let mut scheduler = None;
    let mut notify_initial = false;
    if let Ok(c) = &ctx {
        match tauri::async_runtime::block_on(safehold_core::scheduler::recover_interrupted(c)) {
            Ok(r) if r.backups + r.restores > 0 => tracing::warn!("{} backups and {} restores were interrupted when Safehold last stopped", r.backups, r.restores),
            Ok(_) => {}
            Err(e) => tracing::error!("cannot check for interrupted jobs: {}", e.message),
        }
        notify_initial = tauri::async_runtime::block_on(safehold_core::scheduler::notify_on_success(c)).unwrap_or(false);
        let s = safehold_core::scheduler::Scheduler::new(c.clone(), 1, std::sync::Arc::new(|line| tracing::info!("{line}")));
        tauri::async_runtime::spawn(s.clone().run());
        scheduler = Some(s);
        // Continuous protection of the configurations that have it on, while the app runs; a
        // slot's warning or drop is a desktop notification.
        let notices: safehold_core::protect::configured::NoticeSink = std::sync::Arc::new(|n| {
            tracing::warn!("{}: {}", n.configuration_name, n.message);
            if let Some(app) = APP.get() {
                use tauri_plugin_notification::NotificationExt;
                let title = if n.level == "dropped" { "Safehold: continuous protection stopped" } else { "Safehold: continuous protection needs attention" };
                let _ = app.notification().builder().title(title).body(format!("{}: {}", n.configuration_name, n.message)).show();
            }
        });
        tauri::async_runtime::spawn(safehold_core::protect::configured::run_forever(
            background(c),
            std::time::Duration::from_secs(2),
            std::sync::Arc::new(|line| tracing::info!("{line}")),
            notices,
        ));
        tauri::async_runtime::spawn(watch_storage(background(c)));
    }
    let result = tauri::Builder::default()
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_notification::init())
        .setup({
            let (ctx, scheduler) = (ctx.as_ref().ok().cloned(), scheduler.clone());
            move |app| {
                let _ = APP.set(app.handle().clone());
                setup_tray(app, ctx, scheduler, notify_initial)?;
                // One line for whoever started it from a terminal (`make run`): a build and a hang look alike.
                println!("Safehold is open: its window is up (close it, or press Ctrl+C here, to stop).");
                Ok(())
            }
        })
        // With a tray icon, closing the window keeps Safehold running so schedules keep running.
        .on_window_event(|window, event| {
            if let tauri::WindowEvent::CloseRequested { api, .. } = event {
                if TRAY.load(std::sync::atomic::Ordering::SeqCst) && std::env::var_os("SAFEHOLD_QUIT_ON_CLOSE").is_none() {
                    api.prevent_close();
                    let _ = window.hide();
                }
            }
        })
        .manage(AppState { ctx, scheduler })
        .invoke_handler(tauri::generate_handler![
            commands::startup_status,
            commands::session_info,
            commands::touch_session,
            commands::create_first_operator,
            commands::sign_in,
            commands::sign_out,
            commands::list_operators,
            commands::add_operator,
            commands::set_operator_role,
            commands::set_operator_active,
            commands::remove_operator,
            commands::change_password,
            commands::reset_operator_password,
            commands::list_audit,
            commands::export_audit,
            commands::list_executions,
            commands::list_restores,
            commands::list_migrations,
            commands::list_storage,
            commands::list_configurations,
            commands::configuration_overview,
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
            commands::protection_timeline,
            commands::restore_to_second,
            commands::cancel_restore_to_second,
            commands::start_restore,
            commands::cancel_restore,
            commands::verify_by_restoring,
            commands::cancel_verify,
            commands::preview_retention,
            commands::apply_retention,
            commands::cancel_retention,
            commands::rebuild_catalog,
            commands::rebuild_catalog_from_storage,
            commands::check_storage,
            commands::keychain_waits,
            commands::demo_postgres_offer,
            commands::put_demo_on_postgres,
            commands::dismiss_demo_postgres_offer,
            commands::cancel_keychain_waits,
            commands::refresh_storage_usage,
            commands::storage_samples,
            commands::storage_key_custody,
            commands::storage_writers,
            commands::approve_writer,
            commands::check_backup,
            commands::export_recovery_kit,
            commands::add_local_storage,
            commands::add_remote_storage,
            commands::remove_storage,
            commands::update_storage,
            commands::list_tenants,
            commands::propose_migration,
            commands::validate_migration,
            commands::start_migration,
            commands::cancel_migration,
        ])
        .run(tauri::generate_context!("../tauri.conf.json"));
    if let Err(e) = result {
        eprintln!("error: the Safehold window could not be opened: {e}");
        std::process::exit(1);
    }
}
