//! End to end: the real desktop binary (target/debug/safehold-app), driven through WebDriver
//! (tauri-driver + WebKitWebDriver) under Xvfb, on a fresh Safehold home each test. Run by
//! `make test` through scripts/test.sh, which builds the app and starts Xvfb and a session bus.

mod commands;
mod package;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use sqlx::Connection as _;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn app_binary() -> PathBuf {
    std::env::var_os("SAFEHOLD_APP_BINARY").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/safehold-app")
    })
}

/// One app at a time: the tests share the display and the session bus, and run in the same
/// `cargo test` as the engine's tests (one build of the dependencies).
static ONE_APP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A running app: tauri-driver, the WebDriver session and the app's home directory.
struct App {
    client: Client,
    driver: Child,
    home: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl App {
    async fn start() -> App {
        let turn = ONE_APP.lock().await;
        Self::start_in(tempfile::tempdir().expect("temp home"), turn).await
    }

    /// Starts the app on a home prepared by the test (holding its turn).
    async fn start_in(home: tempfile::TempDir, turn: tokio::sync::MutexGuard<'static, ()>) -> App {
        Self::start_with(home, turn, true).await
    }

    /// `quit_on_close`: the session's end closes the window and the app quits (tests), instead of
    /// staying in the tray (users).
    async fn start_with(home: tempfile::TempDir, turn: tokio::sync::MutexGuard<'static, ()>, quit_on_close: bool) -> App {
        Self::start_with_env(home, turn, quit_on_close, &[]).await
    }

    /// The same, with environment variables for the app.
    async fn start_with_env(home: tempfile::TempDir, turn: tokio::sync::MutexGuard<'static, ()>, quit_on_close: bool, env: &[(&str, String)]) -> App {
        Self::start_program(&app_binary(), home, turn, quit_on_close, env).await
    }

    /// The same, with the program to start (the app's binary, or the AppImage that holds it).
    async fn start_program(binary: &Path, home: tempfile::TempDir, turn: tokio::sync::MutexGuard<'static, ()>, quit_on_close: bool, env: &[(&str, String)]) -> App {
        assert!(binary.exists(), "the app binary {} is missing: build it with `make app`", binary.display());
        let port = free_port();
        let mut driver = Command::new(std::env::var("TAURI_DRIVER").unwrap_or_else(|_| "tauri-driver".into()));
        driver.args(["--port", &port.to_string(), "--native-port", &free_port().to_string()]).env("SAFEHOLD_HOME", home.path());
        for (k, v) in env {
            driver.env(k, v);
        }
        if quit_on_close {
            // The session's end closes the window: the app quits instead of going to the tray.
            driver.env("SAFEHOLD_QUIT_ON_CLOSE", "1");
        }
        let driver = driver
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tauri-driver must be installed (scripts/deps.sh test installs it)");
        let mut caps = serde_json::Map::new();
        caps.insert("tauri:options".into(), serde_json::json!({ "application": binary }));
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match ClientBuilder::native().capabilities(caps.clone()).connect(&format!("http://127.0.0.1:{port}")).await {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => panic!("no WebDriver session with the app: {e}"),
            }
        };
        App { client, driver, home, _turn: turn }
    }

    async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("the app shows no element {css}: {e}"))
    }

    /// Waits until an element matching `css` contains `text` (up to 45 s: a first start on a
    /// loaded two-core machine, beside the package test's build, took more than 20).
    async fn wait_text(&self, css: &str, text: &str) -> Element {
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            if let Ok(els) = self.client.find_all(Locator::Css(css)).await {
                for el in els {
                    if el.text().await.map(|t| t.contains(text)).unwrap_or(false) {
                        return el;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no {css} containing {text:?} appeared");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn catalog_count(&self, sql: &str, bind: &str) -> i64 {
        catalog_count(self.home.path(), sql, bind).await
    }

    async fn screenshot(&self, name: &str) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("artifacts");
        let _ = std::fs::create_dir_all(&dir);
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(dir.join(format!("{name}.png")), &png);
            // `make pictures`: the README's pictures of the tabs written from this run.
            if std::env::var_os("SAFEHOLD_WRITE_PICTURES").is_some() {
                let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs");
                if let Some(tab) = name.strip_prefix("tab-").and_then(|n| n.strip_suffix("-1280x800")) {
                    let _ = std::fs::write(docs.join("tabs").join(format!("{tab}.png")), &png);
                    if tab == "executions" {
                        let _ = std::fs::write(docs.join("screenshot.png"), &png);
                    }
                }
                if name == "restore-plan" {
                    let _ = std::fs::write(docs.join("tabs/restore-plan.png"), &png);
                }
            }
        }
    }

    async fn stop(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for App {
    /// A failed test still stops its driver and app.
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn catalog_count(home: &Path, sql: &str, bind: &str) -> i64 {
    let url = format!("sqlite://{}?mode=ro", home.join("catalog.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open the app's catalog");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).bind(bind).fetch_one(&mut conn).await.expect("count")
}

/// Replaces the text of a controlled input: End, then backspaces, then the new text.
async fn retype(el: &Element, text: &str) {
    el.click().await.expect("focus the input");
    el.send_keys("\u{E010}").await.expect("End");
    el.send_keys(&"\u{E003}".repeat(40)).await.expect("backspaces");
    el.send_keys(text).await.expect("type");
}

#[tokio::test]
async fn the_app_starts_on_the_demo_platform_with_the_five_tabs() {
    let app = App::start().await;
    app.wait_text("h1", "Backup Management").await;
    for tab in ["executions", "configurations", "restore", "migration", "storage"] {
        app.find(&format!("[data-testid=tab-{tab}]")).await;
    }
    app.wait_text("[data-testid=empty]", "No backups have run yet").await;
    app.find("[data-testid=tab-configurations]").await.click().await.expect("open Configurations");
    app.wait_text("[data-testid=configuration]", "Daily demo backup").await;
    app.wait_text("[data-testid=configuration]", "At 02:00, every day").await;
    app.find("[data-testid=tab-storage]").await.click().await.expect("open Storage");
    app.wait_text("[data-testid=storage]", "Local backups").await;
    app.find("[data-testid=open-settings]").await.click().await.expect("open Connections");
    app.wait_text("[data-testid=connection]", "Demo platform").await;
    let row = app.wait_text("[data-testid=connection]", "Demo platform").await;
    row.find(Locator::XPath(".//button[contains(., 'Test connection')]")).await.expect("test button").click().await.expect("test");
    app.wait_text("[data-testid=connection-report]", "Tenant tables: documents, events, projects, users").await;
    app.find("[data-testid=close-settings]").await.click().await.expect("back");
    app.find("[data-testid=tab-configurations]").await.click().await.expect("open Configurations");
    app.wait_text("[data-testid=configuration]", "Daily demo backup").await;
    app.screenshot("dashboard").await;
    app.stop().await;
}

/// Every tab at 1280×800 and 1920×1080: nothing overflows the window sideways and no button's
/// label is clipped or outside the window; a screenshot of each tab at each size is kept as a test
/// artefact (tests/e2e/artifacts/tab-<tab>-<size>.png).
#[tokio::test(flavor = "multi_thread")]
async fn every_tab_fits_the_window_at_common_sizes() {
    use safehold_core::{configurations, demo, runs, Ctx};
    // The demo backed up twice, so the charts have a line to draw.
    let turn = ONE_APP.lock().await;
    let home = tempfile::tempdir().expect("temp home");
    let ctx = Ctx::open(home.path()).await.expect("catalog");
    demo::ensure(&ctx, false).await.expect("demo");
    let cfg = configurations::list(&ctx).await.expect("configs").into_iter().next().expect("the demo's configuration");
    for _ in 0..2 {
        let exec = runs::enqueue(&ctx, &cfg.id).await.expect("enqueue");
        runs::run(&ctx, &exec, &safehold_core::source::CancelToken::new()).await.expect("backup");
    }
    ctx.pool.close().await;
    let app = App::start_in(home, turn).await;
    app.wait_text("h1", "Backup Management").await;
    // The duration and size of each backup, and the storage's growth, drawn as charts.
    app.find("[data-testid=trends-chart] svg").await;
    app.find("[data-testid=tab-storage]").await.click().await.expect("open Storage");
    app.find("[data-testid=growth-chart] svg").await;
    let measure = r#"
        const out = [];
        const W = document.documentElement.clientWidth;
        if (document.documentElement.scrollWidth > W + 1) out.push(`the page is ${document.documentElement.scrollWidth}px wide in a ${W}px window`);
        for (const el of document.querySelectorAll('button, [role=tab]')) {
          const r = el.getBoundingClientRect();
          if (r.width === 0 || r.height === 0) continue;
          const name = (el.innerText || el.getAttribute('aria-label') || '').trim().slice(0, 40);
          if (r.right > W + 1 || r.left < -1) out.push(`button "${name}" lies outside the window (${Math.round(r.left)} to ${Math.round(r.right)} of ${W})`);
          if (el.scrollWidth > el.clientWidth + 1) out.push(`button "${name}" is clipped (${el.scrollWidth}px of label in ${el.clientWidth}px)`);
        }
        return out;
    "#;
    for (w, h) in [(1280u32, 800u32), (1920, 1080)] {
        app.client.set_window_size(w, h).await.expect("resize the window");
        for tab in ["executions", "configurations", "restore", "migration", "storage", "operators", "audit"] {
            app.find(&format!("[data-testid=tab-{tab}]")).await.click().await.expect("open the tab");
            // Its lists load; then measured twice, so a late answer that widens it is seen.
            tokio::time::sleep(Duration::from_millis(800)).await;
            let mut problems: Vec<String> = serde_json::from_value(app.client.execute(measure, vec![]).await.expect("measure")).unwrap_or_default();
            tokio::time::sleep(Duration::from_millis(400)).await;
            problems.extend(serde_json::from_value::<Vec<String>>(app.client.execute(measure, vec![]).await.expect("measure")).unwrap_or_default());
            app.screenshot(&format!("tab-{tab}-{w}x{h}")).await;
            assert!(problems.is_empty(), "{tab} at {w}x{h}: {problems:?}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_configuration_created_through_the_form_appears_in_the_list_and_the_catalog() {
    let app = App::start().await;
    app.wait_text("h1", "Backup Management").await;
    app.find("[data-testid=tab-configurations]").await.click().await.expect("open Configurations");
    app.find("[data-testid=new-configuration]").await.click().await.expect("New configuration");
    let form = app.find("[data-testid=configuration-form]").await;
    form.find(Locator::Css("#cfg-name")).await.expect("name").send_keys("E2E nightly").await.expect("type name");
    retype(&form.find(Locator::Css("#cfg-cron")).await.expect("cron"), "30 3 * * 1-5").await;
    app.wait_text("[data-testid=cron-description]", "At 03:30, only on Monday through Friday").await;
    retype(&form.find(Locator::Css("#cfg-retention")).await.expect("retention"), "14").await;
    app.find("[data-testid=save-configuration]").await.click().await.expect("save");
    app.wait_text("[data-testid=configuration]", "E2E nightly").await;
    let stored = app
        .catalog_count(
            "SELECT count(*) FROM backup_configurations WHERE configuration_name = ? AND schedule_cron = '30 3 * * 1-5' AND retention_days = 14",
            "E2E nightly",
        )
        .await;
    assert_eq!(stored, 1, "the configuration created in the form is in the catalog with its schedule and retention");
    app.stop().await;
}

#[tokio::test]
async fn an_invalid_cron_line_shows_an_error_and_writes_nothing() {
    let app = App::start().await;
    app.wait_text("h1", "Backup Management").await;
    app.find("[data-testid=new-backup]").await.click().await.expect("New Backup");
    app.find("[data-testid=new-backup-panel]").await;
    app.client.find(Locator::XPath("//button[contains(., 'Set up a new configuration')]")).await.expect("link").click().await.expect("set up");
    let form = app.find("[data-testid=configuration-form]").await;
    form.find(Locator::Css("#cfg-name")).await.expect("name").send_keys("Bad cron").await.expect("type name");
    retype(&form.find(Locator::Css("#cfg-cron")).await.expect("cron"), "61 * * * *").await;
    app.wait_text("[data-testid=error-schedule_cron]", "invalid cron line \"61 * * * *\"").await;
    let save = app.find("[data-testid=save-configuration]").await;
    assert!(save.attr("disabled").await.expect("attr").is_some(), "Save is disabled while the cron line is invalid");
    let _ = save.click().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.screenshot("invalid-cron").await;
    let stored = app.catalog_count("SELECT count(*) FROM backup_configurations WHERE configuration_name = ?", "Bad cron").await;
    assert_eq!(stored, 0, "nothing is written for an invalid cron line");
    app.stop().await;
}

#[tokio::test]
async fn run_now_backs_up_the_demo_and_the_completed_backup_shows_in_recent_backups() {
    let app = App::start().await;
    app.wait_text("h1", "Backup Management").await;
    app.find("[data-testid=tab-configurations]").await.click().await.expect("open Configurations");
    app.wait_text("[data-testid=configuration]", "Daily demo backup").await;
    app.find("[data-testid=run-now]").await.click().await.expect("Run Now");
    app.find("[data-testid=tab-executions]").await.click().await.expect("open Recent Backups");
    let row = app.wait_text("[data-testid=execution]", "completed").await;
    let text = row.text().await.expect("text");
    assert!(text.contains("Daily demo backup"), "{text}");
    assert!(text.contains("5 tables"), "the demo's five tables are counted: {text}");
    assert!(text.contains("50 tenants"), "{text}");
    app.screenshot("backup-completed").await;
    let url = format!("sqlite://{}?mode=ro", app.home.path().join("catalog.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("catalog");
    let (status, path, rows, sha): (String, String, i64, String) =
        sqlx::query_as("SELECT status, file_path, record_count, checksum FROM backup_executions")
            .fetch_one(&mut conn)
            .await
            .expect("one execution");
    assert_eq!(status, "completed");
    assert!(rows > 30_000, "rows counted: {rows}");
    let bytes = std::fs::read(&path).expect("the archive exists where the catalog says");
    assert_eq!(sha.len(), 64);
    assert!(bytes.starts_with(b"SAFEHOLD"), "it is a Safehold archive");
    // The Storage tab says who can open it: this workstation's keychain (there is no super admin
    // yet), and that its recovery kit has not been saved.
    app.find("[data-testid=tab-storage]").await.click().await.expect("open Storage");
    let keys = app.wait_text("[data-testid=key-holders]", "this workstation's keychain").await;
    let text = keys.text().await.expect("text");
    assert!(text.contains("Recovery kit: not exported yet"), "{text}");
    app.find("[data-testid=save-recovery-kit]").await;
    app.stop().await;
}

fn pg_base() -> String {
    std::env::var("SAFEHOLD_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

async fn pg(url: &str, sql: &str) {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect to PostgreSQL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn pg_rows(url: &str, sql: &str) -> Vec<String> {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect to PostgreSQL");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_all(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_restore_is_planned_confirmed_and_followed_to_completion_in_the_app() {
    use safehold_core::{configurations, connections, demo, runs, Ctx};
    let turn = ONE_APP.lock().await;
    // A PostgreSQL platform with two tenants, registered with a configuration and backed up.
    let db = format!("safehold_e2e_{}", std::process::id());
    pg(&format!("{}/postgres", pg_base()), &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await;
    pg(&format!("{}/postgres", pg_base()), &format!("CREATE DATABASE {db}")).await;
    let url = format!("{}/{db}", pg_base());
    pg(
        &url,
        "CREATE TABLE tenants (id text PRIMARY KEY, name text);
         CREATE TABLE projects (id serial PRIMARY KEY, tenant_id text NOT NULL REFERENCES tenants(id), title text);
         CREATE TABLE project_notes (id serial PRIMARY KEY, project_id int NOT NULL REFERENCES projects(id), body text);
         INSERT INTO tenants VALUES ('acme', 'Acme'), ('beta', 'Beta');
         INSERT INTO projects (tenant_id, title) SELECT t, t || ' project ' || g FROM unnest(ARRAY['acme', 'beta']) t, generate_series(1, 20) g;
         INSERT INTO project_notes (project_id, body) SELECT id, 'note on ' || title FROM projects;",
    )
    .await;
    let home = tempfile::tempdir().expect("temp home");
    let ctx = Ctx::open(home.path()).await.expect("catalog");
    demo::ensure(&ctx, false).await.expect("demo");
    let mut input = connections::ConnectionInput::from_url("Platform", &url).expect("connection input");
    input.password = None;
    let conn = connections::add(&ctx, input).await.expect("add connection");
    let mut cfg = configurations::ConfigurationInput {
        configuration_name: "Platform nightly".into(),
        connection_id: conn.id.clone(),
        ..serde_json::from_value(serde_json::json!({
            "configuration_name": "x", "backup_type": "full", "schedule_cron": "0 2 * * *", "retention_days": 30,
            "compression_enabled": true, "encryption_enabled": true, "storage_location": "Local backups",
            "includes_tenant_data": true, "includes_system_data": true, "includes_logs": true, "is_active": true, "connection_id": ""
        }))
        .expect("input")
    };
    cfg.is_active = true;
    let cfg = configurations::create(&ctx, cfg).await.expect("configuration");
    let exec = runs::enqueue(&ctx, &cfg.id).await.expect("enqueue");
    let done = runs::run(&ctx, &exec, &safehold_core::source::CancelToken::new()).await.expect("backup");
    assert_eq!(serde_json::to_value(done.status).expect("json"), serde_json::json!("completed"), "{:?}", done.error_message);
    ctx.pool.close().await;
    let state = |t: &'static str| {
        let url = url.clone();
        async move {
            pg_rows(&url, &format!("SELECT p.title || '/' || coalesce(string_agg(n.body, ',' ORDER BY n.id), '') FROM projects p LEFT JOIN project_notes n ON n.project_id = p.id WHERE p.tenant_id = '{t}' GROUP BY p.id ORDER BY p.id")).await
        }
    };
    let acme_backed_up = state("acme").await;
    pg(&url, "DELETE FROM project_notes WHERE project_id IN (SELECT id FROM projects WHERE tenant_id = 'acme'); UPDATE projects SET title = 'broken' WHERE tenant_id IN ('acme', 'beta');").await;
    let beta_changed = state("beta").await;

    let app = App::start_in(home, turn).await;
    app.wait_text("h1", "Backup Management").await;
    app.find("[data-testid=tab-restore]").await.click().await.expect("open Restore");
    app.find("[data-testid=restore-planner]").await;
    // Verify by restoring: a scratch database on the source's server, every table compared.
    app.find("[data-testid=verify-by-restoring]").await.click().await.expect("Verify by restoring");
    let report = app.wait_text("[data-testid=verify-report]", "Verified by restoring").await;
    let report = report.text().await.expect("report");
    assert!(report.contains("public.project_notes: 40/40 rows, archive match, source changed since the backup"), "{report}");
    app.find("[data-testid=restore-target]").await.select_by_value(&conn.id).await.expect("choose the target");
    app.find("[data-testid=restore-type]").await.select_by_value("tenant_only").await.expect("tenant only");
    app.find("[data-testid=restore-tenant]").await.send_keys("acme").await.expect("tenant");
    app.find("[data-testid=restore-review]").await.click().await.expect("Review plan");
    let plan = app.wait_text("[data-testid=restore-plan]", "public.project_notes").await;
    let text = plan.text().await.expect("plan text");
    assert!(text.contains("Tenant acme") && text.contains("trial run"), "{text}");
    assert_eq!(state("acme").await, vec!["broken/".to_string(); 20], "planning changed nothing");
    let start = app.find("[data-testid=restore-start]").await;
    assert!(start.attr("disabled").await.expect("attr").is_some(), "Restore waits for the typed database name");
    app.find("[data-testid=restore-confirm]").await.send_keys(&db).await.expect("confirm");
    app.screenshot("restore-plan").await;
    app.find("[data-testid=restore-start]").await.click().await.expect("Restore");
    let op = app.wait_text("[data-testid=restore-operation]", "completed").await;
    let op_text = op.text().await.expect("text");
    assert!(op_text.contains("Restore: tenant acme") && op_text.contains("safety backup taken"), "{op_text}");
    app.screenshot("restore-completed").await;
    assert_eq!(state("acme").await, acme_backed_up, "tenant acme is back as it was backed up");
    assert_eq!(state("beta").await, beta_changed, "tenant beta keeps its changes");
    let recorded = app.catalog_count("SELECT count(*) FROM restore_operations WHERE status = 'completed' AND progress_percentage = 100 AND target_tenant_id = ? AND safety_backup_id IS NOT NULL", "acme").await;
    assert_eq!(recorded, 1);
    app.stop().await;
    pg(&format!("{}/postgres", pg_base()), &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await;
}

/// The demo platform is SQLite, and the Restore tab's main action works on it: one tenant's
/// rows put back in place from the demo's backup, planned, confirmed and followed to the end,
/// the other tenants untouched.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_of_the_sqlite_demo_is_restored_in_place_from_the_app() {
    use safehold_core::{configurations, demo, runs, Ctx};
    let turn = ONE_APP.lock().await;
    let home = tempfile::tempdir().expect("temp home");
    let ctx = Ctx::open(home.path()).await.expect("catalog");
    demo::ensure(&ctx, false).await.expect("demo");
    let cfg = configurations::list(&ctx).await.expect("configs").into_iter().find(|c| c.configuration_name == demo::DEMO_CONFIGURATION).expect("the demo's configuration");
    let exec = runs::enqueue(&ctx, &cfg.id).await.expect("enqueue");
    let done = runs::run(&ctx, &exec, &safehold_core::source::CancelToken::new()).await.expect("backup");
    assert_eq!(serde_json::to_value(done.status).expect("json"), serde_json::json!("completed"), "{:?}", done.error_message);
    ctx.pool.close().await;
    let db = demo::database_path(home.path());
    let sql = |q: &str| {
        let out = Command::new("sqlite3").arg(&db).arg(q).output().expect("sqlite3");
        assert!(out.status.success(), "{q}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let tenant = sql("SELECT tenant_id FROM documents GROUP BY tenant_id ORDER BY count(*) DESC, tenant_id LIMIT 1");
    let docs = |who: &str, op: &str| sql(&format!("SELECT count(*) || ':' || coalesce(sum(length(title)), 0) FROM documents WHERE tenant_id {op} '{who}'"));
    let (mine, others) = (docs(&tenant, "="), docs(&tenant, "<>"));
    sql(&format!("DELETE FROM documents WHERE tenant_id = '{tenant}'; UPDATE documents SET title = title || '!' WHERE rowid = (SELECT min(rowid) FROM documents WHERE tenant_id <> '{tenant}')"));
    let others_changed = docs(&tenant, "<>");
    assert_ne!(others_changed, others);

    let app = App::start_in(home, turn).await;
    app.wait_text("h1", "Backup Management").await;
    app.find("[data-testid=tab-restore]").await.click().await.expect("open Restore");
    app.find("[data-testid=restore-planner]").await;
    app.find("[data-testid=restore-type]").await.select_by_value("tenant_only").await.expect("tenant only");
    app.find("[data-testid=restore-tenant]").await.send_keys(&tenant).await.expect("tenant");
    app.find("[data-testid=restore-review]").await.click().await.expect("Review plan");
    let plan = app.wait_text("[data-testid=restore-plan]", "documents").await;
    let text = plan.text().await.expect("plan text");
    assert!(text.contains(&format!("Tenant {tenant}")), "{text}");
    assert_eq!(docs(&tenant, "="), "0:0", "planning changed nothing");
    app.find("[data-testid=restore-confirm]").await.send_keys("platform.db").await.expect("confirm");
    app.find("[data-testid=restore-start]").await.click().await.expect("Restore");
    let op = app.wait_text("[data-testid=restore-operation]", "completed").await;
    let op_text = op.text().await.expect("text");
    assert!(op_text.contains(&format!("Restore: tenant {tenant}")), "{op_text}");
    assert_eq!(docs(&tenant, "="), mine, "the tenant's documents are back");
    assert_eq!(docs(&tenant, "<>"), others_changed, "the other tenants keep their changes");
    app.stop().await;
}

/// The first launch offers to put the demo on a PostgreSQL server that answers; taken from the
/// card, the copy is made, registered with a daily backup, and the Restore tab can restore into it.
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_is_put_on_postgresql_from_the_first_launch_card() {
    let turn = ONE_APP.lock().await;
    let db = format!("safehold_e2e_demo_{}", std::process::id());
    pg(&format!("{}/postgres", pg_base()), &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await;
    let url = format!("{}/{db}", pg_base());
    let app = App::start_with_env(tempfile::tempdir().expect("temp home"), turn, true, &[("SAFEHOLD_DEMO_POSTGRES", url.clone())]).await;
    let offer = app.wait_text("[data-testid=demo-postgres-offer]", "A PostgreSQL server answers").await;
    assert!(offer.text().await.expect("text").contains(&db), "names the database it would make");
    app.find("[data-testid=demo-postgres-put]").await.click().await.expect("Put the demo on PostgreSQL");
    let done = app.wait_text("[data-testid=demo-postgres-done]", "The demo is on PostgreSQL").await;
    let text = done.text().await.expect("text");
    assert!(text.contains("Demo platform (PostgreSQL)") && text.contains("Daily demo backup (PostgreSQL)"), "{text}");
    assert_eq!(pg_rows(&url, "SELECT count(*)::text FROM tenants").await, vec!["50".to_string()]);
    assert_eq!(app.catalog_count("SELECT count(*) FROM connections WHERE name = ?", "Demo platform (PostgreSQL)").await, 1);
    assert_eq!(app.catalog_count("SELECT count(*) FROM backup_configurations WHERE configuration_name = ?", "Daily demo backup (PostgreSQL)").await, 1);
    app.screenshot("demo-on-postgres").await;
    app.stop().await;
    pg(&format!("{}/postgres", pg_base()), &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configuration_on_a_short_schedule_backs_up_without_any_click() {
    use safehold_core::{configurations, demo, Ctx};
    let turn = ONE_APP.lock().await;
    let home = tempfile::tempdir().expect("temp home");
    let ctx = Ctx::open(home.path()).await.expect("catalog");
    demo::ensure(&ctx, false).await.expect("demo");
    let c = configurations::list(&ctx).await.expect("configs").remove(0);
    let input: configurations::ConfigurationInput = serde_json::from_value(serde_json::json!({
        "configuration_name": c.configuration_name, "backup_type": "full", "schedule_cron": "*/3 * * * * *", "retention_days": 30,
        "compression_enabled": true, "encryption_enabled": true, "storage_location": c.storage_location,
        "includes_tenant_data": true, "includes_system_data": true, "includes_logs": true, "is_active": true,
        "connection_id": c.connection_id.clone().expect("connection")
    }))
    .expect("input");
    configurations::update(&ctx, &c.id, input).await.expect("every three seconds");
    ctx.pool.close().await;

    let app = App::start_in(home, turn).await;
    app.wait_text("h1", "Backup Management").await;
    // (The first may be a catch-up: a 3-second slot passed between the set-up and the start.)
    let row = app.wait_text("[data-testid=execution]", "· scheduled").await;
    let text = row.text().await.expect("text");
    assert!(text.contains("Daily demo backup"), "{text}");
    app.wait_text("[data-testid=execution]", "completed").await;
    app.screenshot("scheduled-backup").await;
    // The first completed one may be the catch-up: wait for a scheduled one to complete too.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let scheduled = app.catalog_count("SELECT count(*) FROM backup_executions WHERE status = 'completed' AND json_extract(metadata, '$.trigger') = ?", "schedule").await;
        if scheduled >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no scheduled backup completed within 30 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    app.stop().await;
}

/// Selects `value` in a select whose options arrive asynchronously.
async fn select_when_ready(app: &App, css: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if app.find(css).await.select_by_value(value).await.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "{css} never offered {value}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Migration wizard walked for a copy of `tenant` within the connection `conn` as tenant
/// demo-copy "Demo Copy", emails masked by a rule, up to the validation that shows the unique
/// slug's conflict (`schema` prefixes table names: "public." on PostgreSQL, "" on SQLite).
async fn wizard_to_validation(app: &App, conn: &str, tenant: &str, schema: &str) {
    app.find("[data-testid=tab-migration]").await.click().await.expect("open Migration");
    app.find("[data-testid=mig-migrate]").await.click().await.expect("Migrate Tenant");
    select_when_ready(app, "[data-testid=mig-source]", conn).await;
    select_when_ready(app, "[data-testid=mig-tenant]", tenant).await;
    app.find("[data-testid=mig-next]").await.click().await.expect("Next: target");
    select_when_ready(app, "[data-testid=mig-target]", conn).await;
    app.find("[data-testid=mig-new-tenant]").await.send_keys("demo-copy").await.expect("new tenant id");
    app.find("[data-testid=mig-new-name]").await.send_keys("Demo Copy").await.expect("new name");
    app.find("[data-testid=mig-next]").await.click().await.expect("Next: mapping");
    app.wait_text("[data-testid=mig-mapping]", &format!("{schema}documents")).await;
    app.find("[data-testid=mig-next]").await.click().await.expect("Next: rules");
    // Production emails are masked in the copy.
    app.find("[data-testid=mig-add-rule]").await.click().await.expect("Add a rule");
    retype(&app.find("[data-testid=mig-rule] input[aria-label=Table]").await, &format!("{schema}users")).await;
    retype(&app.find("[data-testid=mig-rule] input[aria-label=Column]").await, "email").await;
    app.find("[data-testid=mig-next]").await.click().await.expect("Next: validate");
    // The tenants' slug is unique: validation shows the conflict.
    app.wait_text("[data-testid=mig-problem]", "slug").await;
}

/// Keep both resolves the slug's conflict; validated again, on to the Run step.
async fn wizard_keeps_both(app: &App, schema: &str) {
    app.find(&format!("[data-testid='mig-conflict-{schema}tenants']")).await.select_by_value("keep_both").await.expect("keep both");
    app.find("[data-testid=mig-revalidate]").await.click().await.expect("Validate again");
    app.wait_text("[data-testid=mig-valid]", "Validation passed").await;
    app.find("[data-testid=mig-next]").await.click().await.expect("Next: run");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_migration_wizard_copies_a_demo_tenant_and_the_new_tenant_shows_up_with_its_data() {
    use safehold_core::{connections, demo, Ctx};
    let turn = ONE_APP.lock().await;
    // The demo platform, copied into PostgreSQL (where tenant migrations run) and registered.
    let db = format!("safehold_e2e_mig_{}", std::process::id());
    pg(&format!("{}/postgres", pg_base()), &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await;
    pg(&format!("{}/postgres", pg_base()), &format!("CREATE DATABASE {db}")).await;
    let url = format!("{}/{db}", pg_base());
    let home = tempfile::tempdir().expect("temp home");
    let ctx = Ctx::open(home.path()).await.expect("catalog");
    demo::ensure(&ctx, false).await.expect("demo");
    demo::copy_to_postgres(&demo::database_path(home.path()), &url).await.expect("demo into PostgreSQL");
    let mut input = connections::ConnectionInput::from_url(demo::DEMO_POSTGRES_CONNECTION, &url).expect("connection input");
    input.password = None;
    let conn = connections::add(&ctx, input).await.expect("add connection");
    ctx.pool.close().await;
    let tenant = pg_rows(&url, "SELECT t.id FROM tenants t ORDER BY (SELECT count(*) FROM users u WHERE u.tenant_id = t.id), t.id LIMIT 1").await.remove(0);
    let counts = |t: String| {
        let url = url.clone();
        async move {
            pg_rows(
                &url,
                &format!(
                    "SELECT concat_ws(',', (SELECT count(*) FROM users WHERE tenant_id = '{t}'), (SELECT count(*) FROM projects WHERE tenant_id = '{t}'), \
                     (SELECT count(*) FROM documents WHERE tenant_id = '{t}'), (SELECT count(*) FROM events WHERE tenant_id = '{t}'))"
                ),
            )
            .await
        }
    };
    let source_counts = counts(tenant.clone()).await;
    let source_before = pg_rows(&url, &format!("SELECT u::text FROM users u WHERE tenant_id = '{tenant}' ORDER BY id")).await;

    let app = App::start_in(home, turn).await;
    app.wait_text("h1", "Backup Management").await;
    wizard_to_validation(&app, &conn.id, &tenant, "public.").await;
    app.screenshot("migration-conflict").await;
    assert_eq!(counts("demo-copy".into()).await, vec!["0,0,0,0".to_string()], "validation wrote nothing");
    wizard_keeps_both(&app, "public.").await;
    let summary = app.find("[data-testid=mig-summary]").await.text().await.expect("summary");
    assert!(summary.contains(&format!("Copy tenant {tenant}")) && summary.contains("as demo-copy"), "{summary}");
    app.find("[data-testid=mig-run]").await.click().await.expect("Run");
    let job = app.wait_text("[data-testid=migration-job]", "completed").await;
    let job_text = job.text().await.expect("text");
    assert!(job_text.contains("tenant_copy") && job_text.contains("demo-copy"), "{job_text}");
    app.screenshot("migration-completed").await;
    // The new tenant, with its data.
    assert_eq!(counts("demo-copy".into()).await, source_counts, "every table of the tenant was copied");
    assert_eq!(pg_rows(&url, "SELECT name FROM tenants WHERE id = 'demo-copy'").await, vec!["Demo Copy".to_string()]);
    let leaked = pg_rows(&url, &format!("SELECT count(*)::text FROM users c JOIN users s ON s.email = c.email AND s.tenant_id = '{tenant}' WHERE c.tenant_id = 'demo-copy'")).await;
    assert_eq!(leaked, vec!["0".to_string()], "no production email in the copy");
    let shared = pg_rows(&url, &format!("SELECT count(*)::text FROM documents c JOIN documents s ON s.id = c.id AND s.tenant_id = '{tenant}' WHERE c.tenant_id = 'demo-copy'")).await;
    assert_eq!(shared, vec!["0".to_string()], "new ids everywhere");
    assert_eq!(pg_rows(&url, &format!("SELECT u::text FROM users u WHERE tenant_id = '{tenant}' ORDER BY id")).await, source_before, "the source tenant is untouched");
    let recorded = app.catalog_count("SELECT count(*) FROM migration_jobs WHERE status = 'completed' AND target_tenant_id = ?", "demo-copy").await;
    assert_eq!(recorded, 1);
    app.stop().await;
    pg(&format!("{}/postgres", pg_base()), &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await;
}

/// The wizard on the demo platform itself (SQLite): a tenant copied within the file, its emails
/// masked, the slug conflict resolved, every table's rows there under new keys.
#[tokio::test(flavor = "multi_thread")]
async fn the_migration_wizard_copies_a_tenant_within_the_sqlite_demo() {
    use safehold_core::{connections, demo, Ctx};
    let turn = ONE_APP.lock().await;
    let home = tempfile::tempdir().expect("temp home");
    let ctx = Ctx::open(home.path()).await.expect("catalog");
    demo::ensure(&ctx, false).await.expect("demo");
    let conn = connections::list(&ctx).await.expect("connections").into_iter().next().expect("the demo's connection");
    ctx.pool.close().await;
    let db = demo::database_path(home.path());
    let sql = |q: &str| {
        let out = Command::new("sqlite3").arg(&db).arg(q).output().expect("sqlite3");
        assert!(out.status.success(), "{q}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let tenant = sql("SELECT t.id FROM tenants t ORDER BY (SELECT count(*) FROM users u WHERE u.tenant_id = t.id), t.id LIMIT 1");
    let counts = |t: &str| {
        sql(&format!(
            "SELECT (SELECT count(*) FROM users WHERE tenant_id = '{t}') || ',' || (SELECT count(*) FROM projects WHERE tenant_id = '{t}') || ',' || \
             (SELECT count(*) FROM documents WHERE tenant_id = '{t}') || ',' || (SELECT count(*) FROM events WHERE tenant_id = '{t}')"
        ))
    };
    let source_counts = counts(&tenant);
    let source_users = sql(&format!("SELECT group_concat(email) FROM (SELECT email FROM users WHERE tenant_id = '{tenant}' ORDER BY id)"));

    let app = App::start_in(home, turn).await;
    app.wait_text("h1", "Backup Management").await;
    wizard_to_validation(&app, &conn.id, &tenant, "").await;
    assert_eq!(counts("demo-copy"), "0,0,0,0", "validation wrote nothing");
    wizard_keeps_both(&app, "").await;
    app.find("[data-testid=mig-run]").await.click().await.expect("Run");
    let job = app.wait_text("[data-testid=migration-job]", "completed").await;
    let job_text = job.text().await.expect("text");
    assert!(job_text.contains("tenant_copy") && job_text.contains("demo-copy"), "{job_text}");
    assert_eq!(counts("demo-copy"), source_counts, "every table of the tenant was copied");
    assert_eq!(sql("SELECT name FROM tenants WHERE id = 'demo-copy'"), "Demo Copy");
    assert_eq!(
        sql(&format!("SELECT count(*) FROM users c JOIN users s ON s.email = c.email AND s.tenant_id = '{tenant}' WHERE c.tenant_id = 'demo-copy'")),
        "0",
        "no production email in the copy"
    );
    assert_eq!(sql(&format!("SELECT group_concat(email) FROM (SELECT email FROM users WHERE tenant_id = '{tenant}' ORDER BY id)")), source_users, "the source is untouched");
    assert_eq!(sql("PRAGMA foreign_key_check"), "", "no reference points at nothing");
    app.stop().await;
}

async fn sign_in(app: &App, name: &str, password: &str) {
    retype(&app.find("[data-testid=sign-in-name]").await, name).await;
    retype(&app.find("[data-testid=sign-in-password]").await, password).await;
    app.find("[data-testid=sign-in-submit]").await.click().await.expect("Sign in");
    app.wait_text("[data-testid=session-operator]", name).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_admin_only_looks_and_a_platform_operator_runs_backups_but_cannot_restore() {
    use safehold_core::auth::operators::{self, Role};
    use safehold_core::{demo, Ctx};
    const PW: &str = "correct horse battery";
    let turn = ONE_APP.lock().await;
    let home = tempfile::tempdir().expect("temp home");
    let ctx = Ctx::open(home.path()).await.expect("catalog");
    demo::ensure(&ctx, false).await.expect("demo");
    operators::create_first(&ctx, "alice", PW).await.expect("first super admin");
    operators::add(&ctx, "rita", Role::ReadOnlyAdmin, PW).await.expect("rita");
    operators::add(&ctx, "olga", Role::PlatformOperator, PW).await.expect("olga");
    ctx.pool.close().await;

    let app = App::start_in(home, turn).await;
    // Nobody acts until somebody signs in; a wrong password says so.
    app.find("[data-testid=sign-in]").await;
    retype(&app.find("[data-testid=sign-in-name]").await, "rita").await;
    retype(&app.find("[data-testid=sign-in-password]").await, "not the password").await;
    app.find("[data-testid=sign-in-submit]").await.click().await.expect("Sign in");
    app.wait_text("[role=alert]", "wrong operator name or password").await;
    sign_in(&app, "rita", PW).await;
    // The read-only admin: history and configurations, no Run Now, no restore, no storage changes.
    app.find("[data-testid=tab-audit]").await;
    app.find("[data-testid=tab-configurations]").await.click().await.expect("open Configurations");
    app.wait_text("[data-testid=configuration]", "Daily demo backup").await;
    assert!(app.client.find(Locator::Css("[data-testid=run-now]")).await.is_err(), "no Run Now for a read-only admin");
    assert!(app.client.find(Locator::Css("[data-testid=new-backup]")).await.is_err(), "no New Backup");
    app.find("[data-testid=tab-restore]").await.click().await.expect("open Restore");
    app.wait_text("[data-testid=restore-denied]", "backup:restore_data").await;
    app.find("[data-testid=tab-storage]").await.click().await.expect("open Storage");
    app.wait_text("[data-testid=storage]", "Local backups").await;
    assert!(app.client.find(Locator::Css("[data-testid=add-storage]")).await.is_err(), "no storage changes");
    assert!(app.client.find(Locator::Css("[data-testid=remove-storage]")).await.is_err(), "no storage changes");
    app.screenshot("read-only-admin").await;
    app.find("[data-testid=sign-out]").await.click().await.expect("Sign out");

    // The platform operator: Run Now works, restoring does not.
    app.find("[data-testid=sign-in]").await;
    sign_in(&app, "olga", PW).await;
    app.find("[data-testid=tab-configurations]").await.click().await.expect("open Configurations");
    app.wait_text("[data-testid=configuration]", "Daily demo backup").await;
    app.find("[data-testid=run-now]").await.click().await.expect("Run Now");
    app.find("[data-testid=tab-executions]").await.click().await.expect("open Recent Backups");
    app.wait_text("[data-testid=execution]", "completed").await;
    app.find("[data-testid=tab-restore]").await.click().await.expect("open Restore");
    app.wait_text("[data-testid=restore-denied]", "olga (platform_operator)").await;
    assert!(app.client.find(Locator::Css("[data-testid=tab-operators]")).await.is_err(), "operators are for super admins");
    app.screenshot("platform-operator").await;
    let by = app
        .catalog_count("SELECT count(*) FROM backup_executions e JOIN operators o ON o.id = e.initiated_by WHERE o.name = ? AND e.status = 'completed'", "olga")
        .await;
    assert_eq!(by, 1, "the backup is recorded as olga's");
    let signed = app.catalog_count("SELECT count(*) FROM audit_log WHERE action = 'operator.sign_in' AND outcome = ?", "success").await;
    assert_eq!(signed, 2, "both sign-ins are audited");
    app.stop().await;
}

/// The tray icon's menu as the desktop sees it (com.canonical.dbusmenu on the session bus): the
/// app's connection that exports a NotificationItem menu, and its layout as text.
fn tray_menu() -> Option<(String, String, String)> {
    let names = Command::new("busctl").args(["--user", "list", "--no-legend"]).output().ok()?;
    for name in String::from_utf8_lossy(&names.stdout).lines().filter_map(|l| l.split_whitespace().next()).filter(|n| n.starts_with(':')) {
        let Ok(tree) = Command::new("busctl").args(["--user", "tree", "--list", name]).output() else { continue };
        let tree = String::from_utf8_lossy(&tree.stdout).to_string();
        if let Some(path) = tree.lines().find(|p| p.contains("/NotificationItem/") && p.ends_with("/Menu")) {
            let layout = Command::new("gdbus")
                .args(["call", "--session", "--dest", name, "--object-path", path, "--method", "com.canonical.dbusmenu.GetLayout", "--", "0", "-1", "[]"])
                .output()
                .ok()?;
            return Some((name.to_string(), path.to_string(), String::from_utf8_lossy(&layout.stdout).to_string()));
        }
    }
    None
}

/// Waits until the tray menu shows `text`; returns (bus name, menu path, layout).
async fn tray_shows(text: &str) -> (String, String, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match tray_menu() {
            Some(m) if m.2.contains(text) => return m,
            other => assert!(Instant::now() < deadline, "the tray menu does not show {text:?}: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Clicks the tray menu's item labelled `label`.
fn click_tray(name: &str, path: &str, layout: &str, label: &str) {
    let id = layout
        .split("<(")
        .find(|item| item.contains(&format!("'label': <'{label}'>")))
        .and_then(|item| item.split(',').next())
        .unwrap_or_else(|| panic!("no tray item {label:?} in {layout}"))
        .trim()
        .to_string();
    let clicked = Command::new("gdbus")
        .args(["call", "--session", "--dest", name, "--object-path", path, "--method", "com.canonical.dbusmenu.Event", "--", &id, "clicked", "<0>", "0"])
        .output()
        .expect("gdbus");
    assert!(clicked.status.success(), "{}", String::from_utf8_lossy(&clicked.stderr));
}

/// A scheduled backup that fails raises a desktop notification (the test watches the session bus
/// with dbus-monitor for the call to org.freedesktop.Notifications) and the tray says so; the
/// tray's "Back up now" backs up every active configuration.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_scheduled_backup_raises_a_desktop_notification_and_the_tray_shows_it() {
    use safehold_core::{configurations, connections, demo, Ctx};
    let turn = ONE_APP.lock().await;
    let home = tempfile::tempdir().expect("temp home");
    let ctx = Ctx::open(home.path()).await.expect("catalog");
    demo::ensure(&ctx, false).await.expect("demo");
    // A platform nobody answers for: every run fails with "unreachable".
    let mut input = connections::ConnectionInput::from_url("Gone platform", "postgres://postgres@127.0.0.1:1/gone").expect("input");
    input.password = Some("n0t-in-any-message".into());
    let conn = connections::add(&ctx, input).await.expect("connection");
    let demo_config = configurations::list(&ctx).await.expect("configs").remove(0);
    let cfg = configurations::ConfigurationInput {
        configuration_name: "Gone nightly".into(),
        schedule_cron: "*/2 * * * * *".into(),
        connection_id: conn.id.clone(),
        ..demo_config.to_input()
    };
    configurations::create(&ctx, cfg).await.expect("configuration");
    ctx.pool.close().await;

    let log = home.path().join("notifications.log");
    let mut monitor = Command::new("dbus-monitor")
        .args(["--session", "type='method_call',interface='org.freedesktop.Notifications',member='Notify'"])
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-monitor (package dbus) on the session bus");
    let app = App::start_in(home, turn).await;
    app.wait_text("h1", "Backup Management").await;
    app.wait_text("[data-testid=execution]", "failed").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Safehold: a backup failed") && text.contains("Gone nightly") {
            break text;
        }
        assert!(Instant::now() < deadline, "no failure notification on the session bus: {text}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(!seen.contains("n0t-in-any-message"), "no password in a notification: {seen}");
    // The tray's status line, and its "Back up now".
    let (name, path, layout) = tray_shows("Last scheduled backup failed: Gone nightly").await;
    click_tray(&name, &path, &layout, "Back up now");
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.catalog_count("SELECT count(*) FROM backup_executions WHERE status = 'completed' AND json_extract(metadata, '$.trigger') = ?", "manual").await < 1 {
        assert!(Instant::now() < deadline, "the tray's Back up now did not back up the demo");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    app.screenshot("failure-notified").await;
    let _ = monitor.kill();
    let _ = monitor.wait();
    app.stop().await;
}

/// The app's main window's X11 id, visible or not (`visible`: only when shown).
fn main_window(visible: bool) -> Option<String> {
    let mut args = vec!["search"];
    if visible {
        args.push("--onlyvisible");
    }
    args.extend(["--name", "Backup Management"]);
    let out = Command::new("xdotool").args(&args).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().next().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_the_window_keeps_safehold_in_the_tray_until_it_is_quit_from_the_tray() {
    let turn = ONE_APP.lock().await;
    let app = App::start_with(tempfile::tempdir().expect("temp home"), turn, false).await;
    app.wait_text("h1", "Backup Management").await;
    let (name, _, _) = tray_shows("Quit Safehold").await;
    // The window's close button, as a window manager delivers it (WM_DELETE_WINDOW).
    let window = main_window(true).expect("the main window is shown");
    let tool = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/wm_close.py");
    assert!(Command::new("python3").arg(&tool).arg(&window).status().expect("python3").success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while main_window(true).is_some() {
        assert!(Instant::now() < deadline, "the window did not close");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Still running in the tray; "Open" shows the window again.
    let (still, path, layout) = tray_shows("Quit Safehold").await;
    assert_eq!(still, name, "the same app is still running, in the tray");
    click_tray(&still, &path, &layout, "Open");
    let deadline = Instant::now() + Duration::from_secs(10);
    while main_window(true).is_none() {
        assert!(Instant::now() < deadline, "Open did not show the window again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Quit from the tray ends it.
    click_tray(&still, &path, &layout, "Quit Safehold");
    let deadline = Instant::now() + Duration::from_secs(15);
    while tray_menu().is_some() {
        assert!(Instant::now() < deadline, "Quit Safehold did not end the app");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    app.stop().await;
}
