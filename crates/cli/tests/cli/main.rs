//! The `safehold` binary as scripts use it: exit codes, `--json`, and clear errors on stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn safehold(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_safehold"))
        .args(args)
        .env("SAFEHOLD_HOME", home)
        .output()
        .expect("run safehold")
}

fn pg_base() -> String {
    std::env::var("SAFEHOLD_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "safehold failed ({}): {}{}", out.status, String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn connections_are_added_listed_tested_and_removed_from_the_command_line() {
    let home = tempfile::tempdir().expect("tmp");
    let url = format!("{}/postgres", pg_base());
    let added = stdout_json(&safehold(home.path(), &["connection", "add", "main", &url, "--json"]));
    assert_eq!(added["name"], "main");
    assert_eq!(added["has_password"], false);

    let list = stdout_json(&safehold(home.path(), &["connection", "list", "--json"]));
    assert_eq!(list.as_array().map(Vec::len), Some(1));

    let report = stdout_json(&safehold(home.path(), &["connection", "test", "main", "--json"]));
    assert!(report["server_version"].as_str().is_some_and(|v| v.starts_with("PostgreSQL")), "{report}");

    let text = safehold(home.path(), &["connection", "test", "main"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("PostgreSQL"), "a person gets a readable line too");

    let removed = safehold(home.path(), &["connection", "remove", "main"]);
    assert!(removed.status.success());
    let list = stdout_json(&safehold(home.path(), &["connection", "list", "--json"]));
    assert_eq!(list.as_array().map(Vec::len), Some(0));
}

#[test]
fn an_unreachable_server_fails_with_a_clear_message_and_exit_code() {
    let home = tempfile::tempdir().expect("tmp");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/app");
    assert!(safehold(home.path(), &["connection", "add", "down", &url]).status.success(), "adding does not need the server");
    let out = safehold(home.path(), &["connection", "test", "down"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: cannot connect to postgres://postgres@127.0.0.1:"), "{err}");
    assert!(err.contains("check the host and port"), "{err}");
    let json = safehold(home.path(), &["connection", "test", "down", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json error");
    assert_eq!(v["error"]["code"], "unreachable");
}

#[test]
fn without_a_keychain_a_password_is_refused_clearly_and_nothing_is_saved() {
    let home = tempfile::tempdir().expect("tmp");
    let out = Command::new(env!("CARGO_BIN_EXE_safehold"))
        .args(["connection", "add", "prod", "postgres://app:hunter2@127.0.0.1:5432/app"])
        .env("SAFEHOLD_HOME", home.path())
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/safehold-test-bus")
        .output()
        .expect("run");
    assert!(!out.status.success(), "no keychain, no saved password");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("keychain"), "names the keychain: {err}");
    assert!(err.contains("PGPASSWORD") || err.contains("unlock"), "says what to do: {err}");
    assert!(!err.contains("hunter2"), "never prints the password");
    let list = stdout_json(&safehold(home.path(), &["connection", "list", "--json"]));
    assert_eq!(list.as_array().map(Vec::len), Some(0), "nothing was written");
}

/// A locked keyring — its unlock prompt answered by nobody, as on a server or behind another
/// window — never hangs the CLI: the command fails within the keychain's deadline saying to
/// unlock it (or how to go without); unlocked, the same command works. In a D-Bus session and a
/// keyring of its own (the daemon is stopped and started there, not the other tests' one).
#[test]
fn a_locked_keyring_fails_within_its_deadline_and_says_what_to_do() {
    if std::env::var_os("SAFEHOLD_TEST_KEYCHAIN").is_none() {
        eprintln!("SAFEHOLD_TEST_KEYCHAIN is not set (scripts/test.sh runs this with a real Secret Service): skipped");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    for d in ["home", "run", "safehold"] {
        std::fs::create_dir_all(dir.path().join(d)).expect("dir");
        std::fs::set_permissions(dir.path().join(d), std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("0700");
    }
    let url = format!("{}/postgres", std::env::var("SAFEHOLD_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())).replace("postgres://postgres@", "postgres://postgres:kept-in-the-keyring@");
    // Each step prints a marker the assertions read; a step that fails stops the script.
    let script = r#"
        set -u
        started() { for _ in $(seq 100); do busctl --user status org.freedesktop.secrets >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "the keyring did not start"; exit 3; }
        stop() { kill "$1"; wait "$1" 2>/dev/null; for _ in $(seq 100); do busctl --user status org.freedesktop.secrets >/dev/null 2>&1 || return 0; sleep 0.1; done; }
        printf %s kr-locked | gnome-keyring-daemon --foreground --unlock --components=secrets >/dev/null 2>&1 & pid=$!
        started
        "$SAFEHOLD" connection add prod "$URL" >/dev/null || { echo "could not store the password"; exit 4; }
        stop $pid
        # Started again without its password: the login keyring is locked.
        gnome-keyring-daemon --foreground --components=secrets >/dev/null 2>&1 & pid=$!
        started
        t0=$(date +%s)
        SAFEHOLD_KEYCHAIN_TIMEOUT=3 "$SAFEHOLD" connection test prod 2>&1; echo "locked-exit=$?"
        echo "locked-seconds=$(( $(date +%s) - t0 ))"
        stop $pid
        printf %s kr-locked | gnome-keyring-daemon --foreground --unlock --components=secrets >/dev/null 2>&1 & pid=$!
        started
        "$SAFEHOLD" connection test prod 2>&1; echo "unlocked-exit=$?"
        stop $pid
    "#;
    let out = Command::new("dbus-run-session")
        .args(["--", "bash", "-c", script])
        .env("SAFEHOLD", env!("CARGO_BIN_EXE_safehold"))
        .env("URL", &url)
        .env("HOME", dir.path().join("home"))
        .env("XDG_RUNTIME_DIR", dir.path().join("run"))
        .env("SAFEHOLD_HOME", dir.path().join("safehold"))
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("SAFEHOLD_KEYCHAIN_TIMEOUT")
        .output()
        .expect("dbus-run-session");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let value = |k: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).map(str::to_string);
    assert_eq!(value("locked-exit").as_deref().map(|c| c != "0"), Some(true), "the locked keyring fails the command:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let seconds: u64 = value("locked-seconds").and_then(|s| s.parse().ok()).expect("timed");
    assert!(seconds <= 30, "it fails within the deadline (3 s here), not after {seconds} s:\n{text}");
    let said = text.split("locked-exit=").next().unwrap_or_default();
    assert!(said.contains("keychain") && said.contains("unlock"), "says the keychain is locked and to unlock it: {said}");
    assert!(said.contains("SAFEHOLD_PASSWORD") || said.contains("PGPASSWORD"), "says how to go without it: {said}");
    assert!(!said.contains("kept-in-the-keyring"), "never prints the password");
    assert_eq!(value("unlocked-exit").as_deref(), Some("0"), "unlocked, the same command works:\n{text}");
}

/// A Secret Service that stops answering (here a session bus that accepts the connection and
/// never replies) fails a command at the keychain's deadline, saying what to do — it never hangs.
#[test]
fn a_keychain_that_never_answers_fails_at_its_deadline() {
    let dir = tempfile::tempdir().expect("tmp");
    let bus = dir.path().join("silent-bus");
    let _listener = std::os::unix::net::UnixListener::bind(&bus).expect("a bus that never answers");
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_safehold"))
        .args(["connection", "add", "prod", "postgres://app:hunter2@127.0.0.1:5432/app"])
        .env("SAFEHOLD_HOME", dir.path().join("home"))
        .env("DBUS_SESSION_BUS_ADDRESS", format!("unix:path={}", bus.display()))
        .env("SAFEHOLD_KEYCHAIN_TIMEOUT", "2")
        .output()
        .expect("run");
    let waited = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "no keychain, no saved password: {err}");
    assert!(err.contains("did not answer within 2 s") && err.contains("unlock"), "says it waited for the keychain and what to do: {err}");
    assert!(err.contains("PGPASSWORD"), "and how to go without it: {err}");
    assert!(waited < std::time::Duration::from_secs(60), "it gave up at its deadline, not after {waited:?}");
    assert!(!err.contains("hunter2"), "never prints the password");
    let list = stdout_json(&safehold(&dir.path().join("home"), &["connection", "list", "--json"]));
    assert_eq!(list.as_array().map(Vec::len), Some(0), "nothing was written");
}

#[test]
fn demo_sets_up_the_demo_platform_once() {
    let home = tempfile::tempdir().expect("tmp");
    let first = stdout_json(&safehold(home.path(), &["demo", "--json"]));
    assert_eq!(first["created"], true);
    assert_eq!(first["tenants"], 50);
    let second = stdout_json(&safehold(home.path(), &["demo", "--json"]));
    assert_eq!(second["created"], false);
    let configs = stdout_json(&safehold(home.path(), &["config", "list", "--json"]));
    assert_eq!(configs[0]["configuration_name"], "Daily demo backup");
    // The demo copied into an empty PostgreSQL database and registered.
    let db = Db::new();
    let third = stdout_json(&safehold(home.path(), &["demo", "--postgres", &db.url(), "--json"]));
    let rows = third["postgres_rows"].as_i64().expect("rows copied");
    let counted: i64 = psql(&db.url(), "SELECT (SELECT count(*) FROM tenants) + (SELECT count(*) FROM users) + (SELECT count(*) FROM projects) + (SELECT count(*) FROM documents) + (SELECT count(*) FROM events)").parse().expect("a number");
    assert_eq!(rows, counted);
    assert_eq!(psql(&db.url(), "SELECT count(*) FROM tenants"), "50");
    let conns = stdout_json(&safehold(home.path(), &["connection", "list", "--json"]));
    assert!(conns.as_array().expect("list").iter().any(|c| c["name"] == "Demo platform (PostgreSQL)"), "{conns}");
    let again = safehold(home.path(), &["demo", "--postgres", &db.url()]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("not empty"), "{}", String::from_utf8_lossy(&again.stderr));
}

#[test]
fn a_bad_url_is_refused_with_what_to_use_instead() {
    let home = tempfile::tempdir().expect("tmp");
    let out = safehold(home.path(), &["connection", "add", "x", "mysql://root@db/app"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("use postgres://user@host:5432/database or sqlite:///path/to.db"));
}

#[test]
fn a_configuration_runs_from_the_command_line_and_verify_checks_the_catalogs_checksum() {
    let home = tempfile::tempdir().expect("tmp");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_safehold")).args(args).env("SAFEHOLD_HOME", home.path()).env("SAFEHOLD_PASSWORD", "cli-test").output().expect("run")
    };
    assert!(run(&["demo"]).status.success());
    let first = stdout_json(&run(&["config", "run", "Daily demo backup", "--json"]));
    assert_eq!(first["status"], "completed", "{first}");
    let second = stdout_json(&run(&["config", "run", "Daily demo backup", "--json"]));
    // The catalog's history, by status; a deep check of a recorded backup.
    let history = stdout_json(&run(&["history", "--status", "completed", "--json"]));
    assert_eq!(history.as_array().map(Vec::len), Some(2), "{history}");
    assert_eq!(stdout_json(&run(&["history", "--status", "failed", "--json"])).as_array().map(Vec::len), Some(0));
    let bad = run(&["history", "--status", "nope"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("use pending, running, completed, failed or cancelled"), "{}", String::from_utf8_lossy(&bad.stderr));
    let first_id = first["id"].as_str().expect("id");
    let deep = stdout_json(&run(&["history", "--check", first_id, "--deep", "--json"]));
    assert_eq!((deep["ok"].as_bool(), deep["deep"].as_bool()), (Some(true), Some(true)), "{deep}");
    let text = String::from_utf8_lossy(&run(&["history"]).stdout).to_string();
    assert!(text.contains(first_id) && text.contains("verified") && text.contains("Daily demo backup"), "{text}");
    let repo = home.path().join("backups");
    let ok = run(&["verify", repo.to_str().expect("utf8")]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let deep = run(&["verify", "--deep", repo.to_str().expect("utf8")]);
    assert!(deep.status.success(), "{}", String::from_utf8_lossy(&deep.stderr));
    // A valid archive put in another's place passes its own trailer check but not the catalog's.
    let a = first["file_path"].as_str().expect("path");
    let b = second["file_path"].as_str().expect("path");
    std::fs::copy(b, a).expect("swap");
    let bad = run(&["verify", a]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("does not match the checksum recorded"), "{}", String::from_utf8_lossy(&bad.stderr));
    let failed = run(&["history", "--check", first_id]);
    assert!(!failed.status.success() && String::from_utf8_lossy(&failed.stdout).starts_with("FAIL"), "{}", String::from_utf8_lossy(&failed.stdout));
    assert!(String::from_utf8_lossy(&run(&["history"]).stdout).contains("CHECK FAILED"), "the failed check is kept on the record");
    // Retention: two fresh backups are kept, each with its reason.
    let plan = stdout_json(&run(&["config", "retention-preview", "Daily demo backup", "--json"]));
    assert_eq!(plan["delete_count"], 0, "{plan}");
    let reasons: Vec<&str> = plan["items"].as_array().expect("items").iter().filter_map(|i| i["reason"].as_str()).collect();
    assert_eq!(reasons, vec!["within 30 days"; 2], "{plan}");
    let applied = stdout_json(&run(&["config", "retention-apply", "Daily demo backup", "--json"]));
    assert_eq!(applied["delete_count"], 0);
    // Who can open the backups: the password given here; the recovery kit not printed yet.
    let keys = stdout_json(&run(&["storage", "keys", "Local backups", "--json"]));
    assert_eq!((keys["has_repository"].as_bool(), keys["password"].as_bool(), keys["recovery_exported"].as_bool(), keys["super_admins"].as_array().map(Vec::len)), (Some(true), Some(true), Some(false), Some(0)), "{keys}");
    let text = String::from_utf8_lossy(&run(&["storage", "keys", "Local backups"]).stdout).to_string();
    assert!(text.starts_with("Local backups: backups open with ") && text.contains("recovery kit: not exported yet"), "{text}");
    let kit = run(&["key", "export-recovery", repo.to_str().expect("utf8")]);
    assert!(kit.status.success() && String::from_utf8_lossy(&kit.stdout).contains("SHRK-"), "{}", String::from_utf8_lossy(&kit.stderr));
    let keys = stdout_json(&run(&["storage", "keys", "Local backups", "--json"]));
    assert_eq!(keys["recovery_exported"], true, "{keys}");
}

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql").args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql]).output().expect("psql");
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A scratch database dropped at the end of the test.
struct Db(String);
impl Db {
    fn new() -> Db {
        let name = format!("safehold_cli_{}", std::process::id()) + &format!("_{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0));
        psql(&format!("{}/postgres", pg_base()), &format!("CREATE DATABASE {name}"));
        Db(name)
    }
    fn url(&self) -> String {
        format!("{}/{}", pg_base(), self.0)
    }
}
impl Drop for Db {
    fn drop(&mut self) {
        let _ = Command::new("psql").args(["-X", "-q", "-d", &format!("{}/postgres", pg_base()), "-c", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0)]).output();
    }
}

#[test]
fn a_tenant_restore_from_the_command_line_shows_its_plan_and_asks_before_replacing() {
    let home = tempfile::tempdir().expect("tmp");
    let db = Db::new();
    let url = db.url();
    psql(
        &url,
        "CREATE TABLE tenants (id text PRIMARY KEY, name text);
         CREATE TABLE projects (id serial PRIMARY KEY, tenant_id text REFERENCES tenants(id), title text);
         CREATE TABLE project_notes (id serial PRIMARY KEY, project_id int REFERENCES projects(id), body text);
         INSERT INTO tenants VALUES ('a', 'Acme'), ('b', 'Beta');
         INSERT INTO projects (tenant_id, title) SELECT t, 'p' || g FROM unnest(ARRAY['a', 'b']) t, generate_series(1, 3) g;
         INSERT INTO project_notes (project_id, body) SELECT id, 'note on ' || title FROM projects;",
    );
    let repo = home.path().join("repo");
    let repo_s = repo.to_str().expect("utf8");
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_safehold")).args(args).env("SAFEHOLD_HOME", home.path()).env("SAFEHOLD_PASSWORD", "cli-test").output().expect("run");
    let backup = run(&["backup", "--source", &url, "--to", repo_s]);
    assert!(backup.status.success(), "{}", String::from_utf8_lossy(&backup.stderr));
    let state = || psql(&url, "SELECT string_agg(p.tenant_id || ':' || p.title || ':' || coalesce(n.body, '-'), ',' ORDER BY p.id, n.id) FROM projects p LEFT JOIN project_notes n ON n.project_id = p.id");
    let backed_up = state();
    psql(&url, "DELETE FROM project_notes WHERE project_id IN (SELECT id FROM projects WHERE tenant_id = 'a'); UPDATE projects SET title = 'changed' WHERE tenant_id IN ('a', 'b');");
    let changed = state();

    let restore = ["restore", "--from", repo_s, "--target", &url, "--type", "tenant_only", "--tenant", "a"];
    let dry = run(&[&restore[..], &["--dry-run"]].concat());
    let err = String::from_utf8_lossy(&dry.stderr);
    assert!(dry.status.success(), "{err}");
    assert!(err.contains("Restore plan (from a trial run, rolled back)") && err.contains("public.project_notes") && err.contains("dry run: nothing was changed"), "{err}");
    assert_eq!(state(), changed, "a dry run changes nothing");

    let unconfirmed = run(&restore);
    assert!(!unconfirmed.status.success());
    assert!(String::from_utf8_lossy(&unconfirmed.stderr).contains("add --yes"), "{}", String::from_utf8_lossy(&unconfirmed.stderr));
    assert_eq!(state(), changed, "nothing runs without confirmation");

    let done = stdout_json(&run(&[&restore[..], &["--yes", "--json"]].concat()));
    assert!(done["outcome"]["safety_backup"]["id"].is_string(), "{done}");
    let now = state();
    assert_ne!(now, changed);
    // Tenant a is back as it was; tenant b keeps its change.
    let expected: Vec<String> = backed_up.split(',').map(|r| if r.starts_with("b:") { r.replacen(r.split(':').nth(1).unwrap_or(""), "changed", 1) } else { r.to_string() }).collect();
    assert_eq!(now, expected.join(","));

    // Verify by restoring: a scratch database, every table compared, dropped again.
    let scratch = format!("{}/postgres", pg_base());
    let test = stdout_json(&run(&["verify", "--restore-test", repo_s, "--scratch", &scratch, "--json"]));
    assert_eq!(test["ok"], true, "{test}");
    assert_eq!(test["tables"].as_array().map(Vec::len), Some(3));
    let name = test["scratch_database"].as_str().expect("name");
    assert_eq!(psql(&scratch, &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'")), "0");
    let no_scratch = Command::new(env!("CARGO_BIN_EXE_safehold")).args(["verify", "--restore-test", repo_s]).env("SAFEHOLD_HOME", home.path()).env_remove("SAFEHOLD_SCRATCH_URL").output().expect("run");
    assert!(String::from_utf8_lossy(&no_scratch.stderr).contains("--scratch"), "{}", String::from_utf8_lossy(&no_scratch.stderr));
}

fn pg_dump(url: &str) -> String {
    let out = Command::new("pg_dump").args(["--no-owner", "--no-privileges", url]).output().expect("pg_dump");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !(l.starts_with("--") || l.starts_with("\\restrict") || l.starts_with("\\unrestrict") || l.is_empty())).collect::<Vec<_>>().join("\n")
}

#[test]
fn disaster_recovery_rebuilds_the_catalog_from_storage_and_restores_with_the_recovery_key_alone() {
    let db = Db::new();
    let url = db.url();
    psql(&url, "CREATE TABLE tenants (id int PRIMARY KEY, name text); INSERT INTO tenants SELECT g, 'tenant ' || g FROM generate_series(1, 50) g;");
    let lost = tempfile::tempdir().expect("the workstation that is lost");
    let storage = tempfile::tempdir().expect("the storage that survives");
    let repo = storage.path().join("platform");
    let repo_s = repo.to_str().expect("utf8");
    let as_before = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_safehold")).args(args).env("SAFEHOLD_HOME", lost.path()).env("SAFEHOLD_PASSWORD", "lost-with-the-workstation").output().expect("run");
    assert!(as_before(&["backup", "--source", &url, "--to", repo_s]).status.success());
    let kit = as_before(&["key", "export-recovery", repo_s]);
    assert!(kit.status.success(), "{}", String::from_utf8_lossy(&kit.stderr));
    let kit_file = storage.path().join("recovery-kit.txt");
    std::fs::write(&kit_file, &kit.stdout).expect("print the kit");
    drop(lost);

    // A fresh install: empty catalog, no keychain, no password.
    let fresh = tempfile::tempdir().expect("new workstation");
    let after = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_safehold"))
            .args(args)
            .env("SAFEHOLD_HOME", fresh.path())
            .env_remove("SAFEHOLD_PASSWORD")
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/safehold-test-bus")
            .output()
            .expect("run")
    };
    let report = stdout_json(&after(&["catalog", "rebuild", "--from", repo_s, "--json"]));
    assert_eq!(report["added"], 1, "{report}");
    assert_eq!(report["storage_added"], true);
    let again = stdout_json(&after(&["catalog", "rebuild", "--from", repo_s, "--json"]));
    assert_eq!((again["added"].as_u64(), again["already_known"].as_u64()), (Some(0), Some(1)), "a second rebuild adds nothing");
    let without_key = after(&["restore", "--from", repo_s, "--target", &format!("{url}_restored"), "--create"]);
    assert!(!without_key.status.success(), "no key, no restore");
    let target = Db(format!("{}_restored", db.0));
    let restored = after(&["restore", "--from", repo_s, "--target", &target.url(), "--create", "--recovery-key-file", kit_file.to_str().expect("utf8")]);
    assert!(restored.status.success(), "{}", String::from_utf8_lossy(&restored.stderr));
    assert_eq!(pg_dump(&target.url()), pg_dump(&url), "the restored database is identical to the source");
    let missing = after(&["catalog", "rebuild", "--from", storage.path().to_str().expect("utf8")]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("is not a Safehold repository"), "{}", String::from_utf8_lossy(&missing.stderr));
}

#[test]
fn storages_are_added_checked_measured_and_removed_from_the_command_line() {
    let home = tempfile::tempdir().expect("tmp");
    let disk = tempfile::tempdir().expect("disk");
    let dir = disk.path().join("vault");
    let dir_s = dir.to_str().expect("utf8");
    let added = stdout_json(&safehold(home.path(), &["storage", "add", "Vault", dir_s, "--json"]));
    assert_eq!(added["storage_name"], "Vault");
    let check = stdout_json(&safehold(home.path(), &["storage", "check", "Vault", "--json"]));
    assert_eq!(check["ok"], true, "{check}");
    let usage = stdout_json(&safehold(home.path(), &["storage", "usage", "Vault", "--json"]));
    assert_eq!(usage["archives"], 0);
    assert!(usage["total_capacity"].as_i64().is_some_and(|t| t > 0), "{usage}");
    let list = safehold(home.path(), &["storage", "list"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("healthy"), "{}", String::from_utf8_lossy(&list.stdout));
    // Changed: made the default, taken out of use (not while default), a quota refused on a local disk.
    let second = disk.path().join("second");
    assert!(safehold(home.path(), &["storage", "add", "Second", second.to_str().expect("utf8")]).status.success());
    let out = safehold(home.path(), &["storage", "set", "Vault", "--default"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("(default)"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = safehold(home.path(), &["storage", "set", "Vault", "--deactivate"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("make another storage the default first"), "{}", String::from_utf8_lossy(&out.stderr));
    let changed = stdout_json(&safehold(home.path(), &["storage", "set", "Second", "--deactivate", "--json"]));
    assert_eq!((changed["is_active"].as_bool(), changed["is_default"].as_bool()), (Some(false), Some(false)), "{changed}");
    let out = safehold(home.path(), &["storage", "set", "Second", "--quota", "1000"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("filesystem"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(safehold(home.path(), &["storage", "remove", "Second"]).status.success());
    std::fs::remove_dir_all(&dir).expect("unplug");
    let failing = safehold(home.path(), &["storage", "check", "Vault"]);
    assert!(!failing.status.success(), "a failing storage exits 1");
    assert!(String::from_utf8_lossy(&failing.stderr).contains("does not exist"), "{}", String::from_utf8_lossy(&failing.stderr));
    assert!(safehold(home.path(), &["storage", "remove", "Vault"]).status.success());
    let list = stdout_json(&safehold(home.path(), &["storage", "list", "--json"]));
    assert_eq!(list.as_array().map(Vec::len), Some(0));
}

/// A moto S3 server on a free port (scripts/test.sh installs it; SAFEHOLD_MOTO_SERVER).
struct Moto(std::process::Child, String);
impl Moto {
    fn start() -> Option<Moto> {
        let bin = std::env::var_os("SAFEHOLD_MOTO_SERVER").map(std::path::PathBuf::from).or_else(|| {
            let p = std::path::PathBuf::from(std::env::var_os("HOME")?).join(".cache/safehold/venv/bin/moto_server");
            p.exists().then_some(p)
        });
        let Some(bin) = bin else {
            eprintln!("moto_server is not installed (scripts/deps.sh test installs it): skipped");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port");
        let child = Command::new(bin).args(["-H", "127.0.0.1", "-p", &port.to_string()]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().expect("moto");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "moto did not start");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Some(Moto(child, format!("http://127.0.0.1:{port}")))
    }
}
impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn disaster_recovery_from_s3_alone() {
    let Some(moto) = Moto::start() else { return };
    assert!(Command::new("curl").args(["-sf", "-X", "PUT", &format!("{}/dr-bucket", moto.1)]).status().expect("curl").success());
    let db = Db::new();
    let url = db.url();
    psql(&url, "CREATE TABLE tenants (id int PRIMARY KEY, name text); INSERT INTO tenants SELECT g, 'tenant ' || g FROM generate_series(1, 500) g;");
    let s3 = |cmd: &mut Command| {
        cmd.env("AWS_ACCESS_KEY_ID", "test").env("AWS_SECRET_ACCESS_KEY", "test").env("AWS_REGION", "us-east-1").env("AWS_ENDPOINT_URL", &moto.1).env("AWS_ALLOW_HTTP", "true");
    };
    let lost = tempfile::tempdir().expect("lost workstation");
    let before = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_safehold"));
        c.args(args).env("SAFEHOLD_HOME", lost.path()).env("SAFEHOLD_PASSWORD", "gone");
        s3(&mut c);
        c.output().expect("run")
    };
    let b = before(&["backup", "--source", &url, "--to", "s3://dr-bucket/platform"]);
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let kit = before(&["key", "export-recovery", "s3://dr-bucket/platform"]);
    assert!(kit.status.success(), "{}", String::from_utf8_lossy(&kit.stderr));
    let kit_dir = tempfile::tempdir().expect("kit");
    let kit_file = kit_dir.path().join("kit.txt");
    std::fs::write(&kit_file, &kit.stdout).expect("kit");
    drop(lost);

    let fresh = tempfile::tempdir().expect("new workstation");
    let after = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_safehold"));
        c.args(args).env("SAFEHOLD_HOME", fresh.path()).env_remove("SAFEHOLD_PASSWORD").env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/safehold-test-bus");
        s3(&mut c);
        c.output().expect("run")
    };
    let report = stdout_json(&after(&["catalog", "rebuild", "--from", "s3://dr-bucket/platform", "--json"]));
    assert_eq!(report["added"], 1, "{report}");
    let storages = stdout_json(&after(&["storage", "list", "--json"]));
    assert_eq!(storages[0]["storage_type"], "s3", "{storages}");
    let usage = stdout_json(&after(&["storage", "usage", storages[0]["storage_name"].as_str().expect("name"), "--json"]));
    assert_eq!(usage["archives"], 1, "{usage}");
    let target = Db(format!("{}_from_s3", db.0));
    let restored = after(&["restore", "--from", "s3://dr-bucket/platform", "--target", &target.url(), "--create", "--recovery-key-file", kit_file.to_str().expect("utf8")]);
    assert!(restored.status.success(), "{}", String::from_utf8_lossy(&restored.stderr));
    assert_eq!(pg_dump(&target.url()), pg_dump(&url), "identical to the source");
}

#[test]
fn object_storage_locations_take_an_endpoint_flag_or_a_named_storage_from_the_catalog() {
    let Some(moto) = Moto::start() else { return };
    assert!(Command::new("curl").args(["-sf", "-X", "PUT", &format!("{}/flags-bucket", moto.1)]).status().expect("curl").success());
    let db = Db::new();
    let url = db.url();
    psql(&url, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10);");
    let home = tempfile::tempdir().expect("home");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_safehold"))
            .args(args)
            .env("SAFEHOLD_HOME", home.path())
            .env("SAFEHOLD_PASSWORD", "pw")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env_remove("AWS_ENDPOINT_URL")
            .output()
            .expect("run")
    };
    let b = run(&["backup", "--source", &url, "--to", "s3://flags-bucket/repo", "--endpoint", &moto.1, "--region", "us-east-1"]);
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert!(stdout_json(&run(&["storage", "add", "Offsite", "s3://flags-bucket/repo", "--endpoint", &moto.1, "--region", "us-east-1", "--json"]))["storage_type"] == "s3");
    let listed = stdout_json(&run(&["ls", "storage:Offsite", "--json"]));
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let target = Db(format!("{}_named", db.0));
    let r = run(&["restore", "--from", "storage:Offsite", "--target", &target.url(), "--create"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(psql(&target.url(), "SELECT count(*) FROM t"), "10");
    let missing = run(&["ls", "storage:Nowhere"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no storage is named \"Nowhere\""), "{}", String::from_utf8_lossy(&missing.stderr));
    // A registered storage's plain name and a registered connection's name are taken wherever a
    // location or a URL is: ls, verify and restore.
    let listed = stdout_json(&run(&["ls", "Offsite", "--json"]));
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let v = run(&["verify", "Offsite"]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    let scratch = Db::new();
    let added = run(&["connection", "add", "scratch", &scratch.url()]);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let r = run(&["restore", "--from", "Offsite", "--target", "scratch"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(psql(&scratch.url(), "SELECT count(*) FROM t"), "10");
    let unknown = run(&["restore", "--from", "Offsite", "--target", "nosuchconnection"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("the name of a registered connection"), "{}", String::from_utf8_lossy(&unknown.stderr));
    // The restores recorded, a page at a time, newest first.
    let page = |limit: &str, offset: &str| stdout_json(&run(&["history", "--restores", "--limit", limit, "--offset", offset, "--json"]));
    let (first, second, past) = (page("1", "0"), page("1", "1"), page("5", "2"));
    assert_eq!((first.as_array().map(Vec::len), second.as_array().map(Vec::len), past.as_array().map(Vec::len)), (Some(1), Some(1), Some(0)), "{first} {second} {past}");
    assert!(first[0]["target"].as_str().is_some_and(|t| t.contains(&scratch.0)), "the newest first: {first}");
    assert_ne!(first[0]["id"], second[0]["id"]);
}

fn sqlite(home: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3").arg(home.join("catalog.db")).arg(sql).output().expect("sqlite3");
    assert!(out.status.success(), "sqlite3 {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_scheduler_killed_during_a_backup_leaves_an_interrupted_row_no_partial_archive_and_intact_backups() {
    let home = tempfile::tempdir().expect("home");
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_safehold")).args(args).env("SAFEHOLD_HOME", home.path()).env("SAFEHOLD_PASSWORD", "pw").output().expect("run");
    let db = Db::new();
    psql(&db.url(), "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 1000);");
    assert!(run(&["demo"]).status.success());
    sqlite(home.path(), "UPDATE backup_configurations SET is_active = 0");
    let conn = stdout_json(&run(&["connection", "add", "slow", &db.url(), "--json"]));
    let conn_id = conn["id"].as_str().expect("id");
    sqlite(
        home.path(),
        &format!(
            "INSERT INTO backup_configurations (id, configuration_name, backup_type, schedule_cron, storage_location, connection_id, created_by, created_at) \
             VALUES ('slow', 'Slow', 'full', '* * * * * *', 'Local backups', '{conn_id}', (SELECT id FROM operators LIMIT 1), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
        ),
    );
    let earlier = stdout_json(&run(&["config", "run", "Slow", "--json"]));
    assert_eq!(earlier["status"], "completed", "{earlier}");

    // The table is locked, so the scheduled backup waits inside its snapshot; then the process dies.
    let mut locker = Command::new("psql").args(["-X", "-q", "-d", &db.url(), "-c", "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60);"]).spawn().expect("lock");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut scheduler = Command::new(env!("CARGO_BIN_EXE_safehold"))
        .args(["schedule", "run"])
        .env("SAFEHOLD_HOME", home.path())
        .env("SAFEHOLD_PASSWORD", "pw")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("schedule run");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let running = loop {
        let id = sqlite(home.path(), "SELECT id FROM backup_executions WHERE configuration_id = 'slow' AND status = 'running'");
        if !id.is_empty() {
            break id;
        }
        assert!(std::time::Instant::now() < deadline, "no scheduled backup started");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    let partial = |home: &Path| std::fs::read_dir(home.join("backups/archives")).expect("archives").flatten().filter(|e| e.path().extension().is_some_and(|x| x == "partial")).count();
    assert_eq!(partial(home.path()), 1, "the running backup writes its partial archive");

    // A second scheduler starting meanwhile (issue 21 #8) leaves the live process's backup alone,
    // and so does any other command.
    sqlite(home.path(), "UPDATE backup_configurations SET is_active = 0");
    let mut second = Command::new(env!("CARGO_BIN_EXE_safehold"))
        .args(["schedule", "run"])
        .env("SAFEHOLD_HOME", home.path())
        .env("SAFEHOLD_PASSWORD", "pw")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("schedule run");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let out = run(&["history"]);
    assert!(out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("interrupted"), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = second.kill();
    let _ = second.wait();
    assert_eq!(sqlite(home.path(), &format!("SELECT status FROM backup_executions WHERE id = '{running}'")), "running", "a live process's backup is not taken for interrupted");
    assert_eq!(partial(home.path()), 1, "nor is its partial archive removed");

    scheduler.kill().expect("SIGKILL");
    let _ = scheduler.wait();
    let _ = locker.kill();
    let _ = locker.wait();
    assert_eq!(sqlite(home.path(), &format!("SELECT status FROM backup_executions WHERE id = '{running}'")), "running", "the dead process could not record anything");
    assert_eq!(partial(home.path()), 1, "the killed backup left its partial archive");

    // The next command that opens the catalog recovers and says so: the row is failed
    // "interrupted", no partial archive remains.
    let out = run(&["history"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 backups, 0 restores and 0 migrations marked interrupted; 1 partial files removed"), "{}", String::from_utf8_lossy(&out.stderr));
    let row = sqlite(home.path(), &format!("SELECT status || ' ' || error_message FROM backup_executions WHERE id = '{running}'"));
    assert!(row.starts_with("failed interrupted"), "{row}");
    assert_eq!(partial(home.path()), 0, "no partial archive remains");
    let verify = run(&["verify", home.path().join("backups").to_str().expect("utf8")]);
    assert!(verify.status.success(), "earlier backups verify: {}", String::from_utf8_lossy(&verify.stderr));
    let list = stdout_json(&run(&["schedule", "list", "--json"]));
    assert!(list.as_array().expect("list").iter().any(|c| c["configuration_name"] == "Slow" && c["next_run"].is_null()), "{list}");
}

#[test]
fn tenants_are_exported_validated_imported_and_merged_from_the_command_line() {
    let home = tempfile::tempdir().expect("tmp");
    let (src, dst) = (Db::new(), Db::new());
    let schema = "CREATE TABLE tenants (id text PRIMARY KEY, name text NOT NULL);
         CREATE TABLE users (id serial PRIMARY KEY, tenant_id text NOT NULL REFERENCES tenants(id), email text NOT NULL, UNIQUE (tenant_id, email));";
    psql(&src.url(), schema);
    psql(&dst.url(), schema);
    psql(&src.url(), "INSERT INTO tenants VALUES ('acme', 'Acme'), ('beta', 'Beta');
         INSERT INTO users (tenant_id, email) VALUES ('acme', 'a@x.test'), ('acme', 'same@x.test'), ('beta', 'same@x.test'), ('beta', 'b@x.test');");
    let zip = home.path().join("acme.zip");
    let h = home.path();
    // Export with a rule (emails masked), then validate and import into another database.
    let rules = home.path().join("rules.json");
    std::fs::write(&rules, r#"[{"table": "users", "column": "email", "action": {"rule": "upper"}}]"#).expect("rules");
    let out = safehold(h, &["tenant", "export", "--source", &src.url(), "--tenant", "acme", "--to", zip.to_str().expect("utf-8"), "--rules", rules.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 rows written to"), "{}", String::from_utf8_lossy(&out.stdout));
    let dry = safehold(h, &["tenant", "import", "--from", zip.to_str().expect("utf-8"), "--target", &dst.url(), "--into", "acme", "--dry-run"]);
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success() && text.contains("validation passed"), "{text} {}", String::from_utf8_lossy(&dry.stderr));
    assert_eq!(psql(&dst.url(), "SELECT count(*) FROM users"), "0", "a dry run writes nothing");
    let report = stdout_json(&safehold(h, &["--json", "tenant", "import", "--from", zip.to_str().expect("utf-8"), "--target", &dst.url(), "--into", "acme"]));
    assert_eq!(report["report"]["rows_written"], 3);
    assert_eq!(psql(&dst.url(), "SELECT string_agg(email, ',' ORDER BY email) FROM users WHERE tenant_id = 'acme'"), "A@X.TEST,SAME@X.TEST");
    // beta as an encrypted archive, restored whole into an empty database with the repository's password.
    let pw = h.join("password");
    std::fs::write(&pw, "tenant archive password").expect("password");
    let (shar, repo) = (h.join("beta.shar"), h.join("repo"));
    let args = ["tenant", "export", "--source", &src.url(), "--tenant", "beta", "--to", shar.to_str().expect("utf-8"), "--repo", repo.to_str().expect("utf-8")];
    let out = safehold(h, &[&args[..], &["--password-file", pw.to_str().expect("utf-8")]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let with_rules = safehold(h, &[&args[..], &["--password-file", pw.to_str().expect("utf-8"), "--rules", rules.to_str().expect("utf-8")]].concat());
    assert!(String::from_utf8_lossy(&with_rules.stderr).contains("transformation rules apply to portable exports"), "{}", String::from_utf8_lossy(&with_rules.stderr));
    let restored = Db::new();
    let out = safehold(h, &["restore", "--from", shar.to_str().expect("utf-8"), "--target", &restored.url(), "--password-file", pw.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(psql(&restored.url(), "SELECT string_agg(tenant_id || ':' || email, ',' ORDER BY email) FROM users"), "beta:b@x.test,beta:same@x.test");
    // A merge with a conflict: its dry run exits 3 (the real run would refuse; scripts tell it
    // from 0 and from an error's 1), with --skip-rejected 0; refused without a rule, then
    // keep-target, removing the source.
    let dry = safehold(h, &["tenant", "merge", "--source", &src.url(), "--tenant", "beta", "--into", "acme", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(3), "{}", String::from_utf8_lossy(&dry.stdout));
    assert!(String::from_utf8_lossy(&dry.stdout).contains("validation found problems"), "{}", String::from_utf8_lossy(&dry.stdout));
    let dry = safehold(h, &["--json", "tenant", "merge", "--source", &src.url(), "--tenant", "beta", "--into", "acme", "--dry-run", "--skip-rejected"]);
    assert_eq!(dry.status.code(), Some(0), "the real run would skip the rows: {}", String::from_utf8_lossy(&dry.stdout));
    // `*` gives every table without a rule of its own that rule.
    let dry = safehold(h, &["tenant", "merge", "--source", &src.url(), "--tenant", "beta", "--into", "acme", "--dry-run", "--on-conflict", "*=keep-target"]);
    assert_eq!(dry.status.code(), Some(0), "{}", String::from_utf8_lossy(&dry.stdout));
    assert!(String::from_utf8_lossy(&dry.stdout).contains("validation passed"), "{}", String::from_utf8_lossy(&dry.stdout));
    let out = safehold(h, &["tenant", "merge", "--source", &src.url(), "--tenant", "beta", "--into", "acme"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("public.users") && err.contains("nothing was written"), "{err}");
    let out = safehold(h, &["tenant", "merge", "--source", &src.url(), "--tenant", "beta", "--into", "acme", "--on-conflict", "users=keep-target", "--remove-source"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(psql(&src.url(), "SELECT string_agg(tenant_id || ':' || email, ',' ORDER BY email) FROM users"), "acme:a@x.test,acme:b@x.test,acme:same@x.test");
    assert_eq!(psql(&src.url(), "SELECT string_agg(id, ',') FROM tenants"), "acme");
    // Every run is recorded.
    let jobs = sqlite(h, "SELECT migration_type || ':' || status FROM migration_jobs ORDER BY started_at");
    assert_eq!(jobs.lines().collect::<Vec<_>>(), vec!["data_export:completed", "data_import:completed", "data_export:completed", "data_export:failed", "tenant_merge:failed", "tenant_merge:completed"]);
    // Bad input: an unknown conflict rule.
    let out = safehold(h, &["tenant", "merge", "--source", &src.url(), "--tenant", "x", "--into", "acme", "--on-conflict", "users=whatever"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("keep-target"));
}

/// Issue 20: a reference no foreign key declares, under a unique index, stops a copy until it is
/// declared — here in the mapping file's `references`; a mapping file that is neither form is
/// refused naming the file and both forms.
#[test]
fn a_mapping_file_declares_references_that_no_foreign_key_does() {
    let home = tempfile::tempdir().expect("tmp");
    let h = home.path();
    let db = Db::new();
    psql(
        &db.url(),
        "CREATE TABLE tenants (id text PRIMARY KEY, name text NOT NULL);
         CREATE TABLE invoices (id serial PRIMARY KEY, tenant_id text NOT NULL REFERENCES tenants(id), total int);
         CREATE TABLE invoice_lines (id serial PRIMARY KEY, tenant_id text NOT NULL REFERENCES tenants(id), invoice_id int NOT NULL, status int NOT NULL);
         CREATE UNIQUE INDEX one_open_line ON invoice_lines (invoice_id, status) WHERE status = 0;
         INSERT INTO tenants VALUES ('acme', 'Acme'), ('beta', 'Beta');
         INSERT INTO invoices (tenant_id, total) VALUES ('acme', 10), ('acme', 20), ('beta', 30);
         INSERT INTO invoice_lines (tenant_id, invoice_id, status) VALUES ('acme', 1, 0), ('acme', 2, 0), ('acme', 2, 1), ('beta', 3, 0);",
    );
    let copy = |extra: &[&str]| {
        safehold(
            h,
            &[
                &[
                    "tenant",
                    "copy",
                    "--source",
                    &db.url(),
                    "--tenant",
                    "acme",
                    "--new-tenant-id",
                    "acme2",
                ][..],
                extra,
            ]
            .concat(),
        )
    };
    let out = copy(&[]);
    assert!(
        !out.status.success(),
        "without the reference the copy collides"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("on public.invoice_lines (invoice_id, status, where (status = 0))")
            && err.contains(
                "declare it (--reference public.invoice_lines.invoice_id=public.invoices.id"
            ),
        "the refusal names the unique index and the reference to declare: {err}"
    );
    assert_eq!(
        psql(&db.url(), "SELECT count(*) FROM invoice_lines"),
        "4",
        "a refused copy writes nothing"
    );

    let bad = h.join("bad-mapping.json");
    std::fs::write(
        &bad,
        r#"{"tables": [], "refs": ["invoice_lines.invoice_id=invoices.id"]}"#,
    )
    .expect("mapping");
    let out = copy(&["--mapping", bad.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("bad-mapping.json")
            && err.contains("refs")
            && err.contains("\"references\""),
        "{err}"
    );

    let mapping = h.join("mapping.json");
    std::fs::write(
        &mapping,
        r#"{"tables": [], "references": ["invoice_lines.invoice_id=invoices.id"]}"#,
    )
    .expect("mapping");
    let out = copy(&["--mapping", mapping.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        psql(&db.url(), "SELECT count(*) FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id WHERE l.tenant_id = 'acme2' AND i.tenant_id = 'acme2'"),
        "3",
        "the copy's lines point at the copy's invoices"
    );
    assert_eq!(psql(&db.url(), "SELECT string_agg(tenant_id || ':' || invoice_id, ',' ORDER BY id) FROM invoice_lines WHERE tenant_id <> 'acme2'"), "acme:1,acme:2,acme:2,beta:3", "the source is untouched");
}

/// `safehold` as an operator: --operator with the password from SAFEHOLD_OPERATOR_PASSWORD_FILE.
fn as_operator(home: &Path, who: &str, pw: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_safehold"))
        .args(["--operator", who])
        .args(args)
        .env("SAFEHOLD_HOME", home)
        .env("SAFEHOLD_OPERATOR_PASSWORD_FILE", pw)
        .output()
        .expect("run safehold")
}

/// A home with the demo platform, and a file holding the operators' password.
fn demo_home_with_password() -> (tempfile::TempDir, PathBuf) {
    let home = tempfile::tempdir().expect("tmp");
    let pw = home.path().join("pw");
    std::fs::write(&pw, "correct horse battery\n").expect("pw");
    assert!(safehold(home.path(), &["demo"]).status.success());
    (home, pw)
}

#[test]
fn catalog_commands_act_as_a_signed_in_operator_with_that_operators_rights() {
    let (home, pw) = demo_home_with_password();
    let h = home.path();
    let pw_s = pw.to_str().expect("utf-8");
    // Before the first super admin, the local administrator acts.
    assert!(safehold(h, &["config", "list"]).status.success());
    let out = safehold(h, &["operator", "setup", "alice", "--password-file", pw_s]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Afterwards a catalog command needs an operator.
    let out = safehold(h, &["config", "list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--operator"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = as_operator(h, "alice", &pw, &["operator", "add", "rita", "--role", "read_only_admin", "--password-file", pw_s]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = as_operator(h, "rita", &pw, &["config", "list"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Daily demo backup"));
    let out = as_operator(h, "rita", &pw, &["config", "run", "Daily demo backup"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rita (read_only_admin) may not do this") && err.contains("backup:trigger_manual"), "{err}");
    assert_eq!(sqlite(h, "SELECT count(*) FROM backup_executions"), "0", "nothing ran");
    // A wrong password is refused without naming it.
    let bad = h.join("bad");
    std::fs::write(&bad, "not it").expect("bad");
    let out = as_operator(h, "rita", &bad, &["config", "list"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("wrong operator name or password"));
    // The audit log, filtered and exported.
    let out = as_operator(h, "rita", &pw, &["--json", "audit", "--outcome", "denied"]);
    let denied = stdout_json(&out);
    assert_eq!(denied.as_array().map(Vec::len), Some(1), "{denied}");
    assert_eq!(denied[0]["action"], "backup.start");
    let csv = h.join("audit.csv");
    let out = as_operator(h, "alice", &pw, &["audit", "--csv", csv.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&csv).expect("csv");
    assert!(text.contains("operator.sign_in") && text.contains(",denied,"), "{text}");
    let out = as_operator(h, "alice", &pw, &["operator", "list"]);
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.contains("alice") && list.contains("read_only_admin"), "{list}");
    // Rita changes her own password; later she forgets it and alice sets a new one.
    let rita_pw = h.join("rita-pw");
    std::fs::write(&rita_pw, "rita's own password").expect("pw");
    let out = as_operator(h, "rita", &pw, &["operator", "password", "--current-password-file", bad.to_str().expect("utf-8"), "--password-file", rita_pw.to_str().expect("utf-8")]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("the current password is wrong"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = as_operator(h, "rita", &pw, &["operator", "password", "--current-password-file", pw_s, "--password-file", rita_pw.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!as_operator(h, "rita", &pw, &["config", "list"]).status.success(), "the old password no longer signs in");
    assert!(as_operator(h, "rita", &rita_pw, &["config", "list"]).status.success(), "the new one does");
    let out = as_operator(h, "rita", &rita_pw, &["operator", "reset", "alice", "--password-file", pw_s]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("backup:manage_all"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = as_operator(h, "alice", &pw, &["operator", "reset", "rita", "--password-file", pw_s]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(as_operator(h, "rita", &pw, &["config", "list"]).status.success(), "rita signs in with the password alice set");
}

/// Once the first super admin exists, the repository's key is no longer in the keychain: a
/// restore without an operator finds no key, a super admin's `--operator` brings hers, and
/// another operator's brings none.
#[test]
fn after_the_first_super_admin_only_a_super_admins_operator_key_opens_the_backups() {
    let (home, pw) = demo_home_with_password();
    let h = home.path();
    let pw_s = pw.to_str().expect("utf-8");
    let out = safehold(h, &["config", "run", "Daily demo backup"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let repo = h.join("backups");
    let repo_s = repo.to_str().expect("utf-8");
    let restore = |who: Option<&str>, target: &str| {
        let args = ["restore", "--from", repo_s, "--target", target, "--yes"];
        match who {
            Some(w) => as_operator(h, w, &pw, &args),
            None => safehold(h, &args),
        }
    };
    let target = |n: &str| format!("sqlite://{}", h.join(format!("restored-{n}.db")).display());
    // Before operators: the keychain's secret opens it.
    let out = restore(None, &target("before"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let out = safehold(h, &["operator", "setup", "alice", "--password-file", pw_s]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = as_operator(h, "alice", &pw, &["operator", "add", "olga", "--role", "platform_operator", "--password-file", pw_s]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Without an operator: nobody acts (and the keychain holds no key any more).
    let out = restore(None, &target("none"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--operator"), "{err}");
    assert!(!h.join("restored-none.db").exists(), "nothing was written");
    // A platform operator may not restore (and holds no key either).
    let out = restore(Some("olga"), &target("olga"));
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("backup:restore_data"), "{}", String::from_utf8_lossy(&out.stderr));
    // The super admin's does.
    let out = restore(Some("alice"), &target("alice"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new("sqlite3").arg(h.join("restored-alice.db")).arg("SELECT count(*) FROM tenants").output().expect("sqlite3");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "50");
}

/// The backup commands' contract, which scripts depend on: every flag of backup, restore, verify,
/// ls, inspect; `postgresql://` URLs; the password from SAFEHOLD_PASSWORD_FILE; the fields of
/// `backup --json`; a progress bar on a terminal and plain lines elsewhere.
#[test]
fn the_backup_commands_keep_their_contract() {
    let home = tempfile::tempdir().expect("tmp");
    let db = Db::new();
    let url = db.url().replacen("postgres://", "postgresql://", 1);
    psql(
        &db.url(),
        "CREATE TABLE tenants (id int PRIMARY KEY, name text);
         INSERT INTO tenants SELECT g, 'tenant ' || g FROM generate_series(1, 100) g;
         CREATE TABLE events (id bigserial PRIMARY KEY, tenant_id int REFERENCES tenants(id), what text);
         INSERT INTO events (tenant_id, what) SELECT 1 + g % 100, repeat('event ', 20) || g FROM generate_series(1, 5000) g;",
    );
    let pw = home.path().join("password");
    std::fs::write(&pw, "contract password\n").expect("password file");
    let repo = home.path().join("repo");
    let repo_s = repo.to_str().expect("utf8");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_safehold")).args(args).env("SAFEHOLD_HOME", home.path()).env_remove("SAFEHOLD_PASSWORD").env("SAFEHOLD_PASSWORD_FILE", &pw).output().expect("run")
    };
    let state = || psql(&db.url(), "SELECT count(*) || ':' || sum(id) || ':' || string_agg(DISTINCT what, '' ORDER BY what) FROM events");

    let full = stdout_json(&run(&["backup", "--source", &url, "--to", repo_s, "--type", "full", "--compression", "zstd:19", "--jobs", "2", "--json"]));
    for field in ["id", "archive", "type", "parent", "bytes", "raw_bytes", "tables", "rows", "sha256", "seconds"] {
        assert!(full.get(field).is_some(), "backup --json has {field}: {full}");
    }
    assert_eq!((full["type"].as_str(), full["parent"].is_null(), full["tables"].as_u64(), full["rows"].as_u64()), (Some("full"), true, Some(2), Some(5100)), "{full}");
    assert!(full["bytes"].as_u64() < full["raw_bytes"].as_u64(), "compressed: {full}");
    assert!(full["seconds"].as_f64().is_some_and(|s| s > 0.0), "{full}");
    let archive = full["archive"].as_str().expect("archive path");
    let sum = Command::new("sha256sum").arg(archive).output().expect("sha256sum");
    assert_eq!(Some(String::from_utf8_lossy(&sum.stdout).split_whitespace().next().unwrap_or_default()), full["sha256"].as_str(), "sha256 is the whole file's");
    let at_full = state();

    psql(&db.url(), "INSERT INTO events (tenant_id, what) VALUES (1, 'after the full'); DELETE FROM events WHERE id % 10 = 0; UPDATE events SET what = 'edited' WHERE id % 7 = 0;");
    let inc = stdout_json(&run(&["backup", "--source", &url, "--to", repo_s, "--type", "incremental", "--json"]));
    assert_eq!((inc["type"].as_str(), inc["parent"].as_str()), (Some("incremental"), full["id"].as_str()), "{inc}");
    assert!(inc["rows"].as_u64() < full["rows"].as_u64(), "only the changes: {inc}");
    let at_inc = state();
    psql(&db.url(), "DELETE FROM events WHERE id < 100;");
    let diff = stdout_json(&run(&["backup", "--source", &url, "--to", repo_s, "--type", "differential", "--compression", "none", "--no-encrypt", "--json"]));
    assert_eq!((diff["type"].as_str(), diff["parent"].as_str()), (Some("differential"), full["id"].as_str()), "{diff}");
    let bad = run(&["backup", "--source", &url, "--to", repo_s, "--compression", "zstd:99"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("use zstd, zstd:LEVEL (1-22) or none"), "{}", String::from_utf8_lossy(&bad.stderr));

    // ls lists the chain without the key.
    let no_key = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_safehold")).args(args).env("SAFEHOLD_HOME", home.path()).env_remove("SAFEHOLD_PASSWORD").env_remove("SAFEHOLD_PASSWORD_FILE").env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/safehold-test-bus").output().expect("run");
    let list = stdout_json(&no_key(&["ls", repo_s, "--json"]));
    let list = list.as_array().expect("a list");
    assert_eq!(list.len(), 3, "{list:?}");
    for b in [&full, &inc, &diff] {
        let row = list.iter().find(|r| r["id"] == b["id"]).unwrap_or_else(|| panic!("{} listed", b["id"]));
        assert_eq!((&row["type"], &row["parent"], &row["archive"]), (&b["type"], &b["parent"], &b["archive"]), "{row}");
    }
    assert_eq!(list.iter().filter(|r| r["encrypted"] == true).count(), 2, "the differential is not encrypted");
    // inspect: the plaintext header without the key; the tables with it.
    let header = stdout_json(&no_key(&["inspect", archive, "--json"]));
    assert_eq!((header["header"]["archive_id"].as_str(), header["header"]["encrypted"].as_bool(), header["header"]["compression"].as_str()), (full["id"].as_str(), Some(true), Some("zstd")), "{header}");
    assert!(header["header"]["format_version"].is_u64() && header["header"]["source_fingerprint"].is_string() && header["index"].is_null(), "{header}");
    let inspected = stdout_json(&run(&["inspect", archive, "--json"]));
    let sections = inspected["index"]["sections"].as_array().expect("sections with the key");
    assert!(sections.iter().any(|s| s["name"] == "public.events" && s["rows"] == 5000), "{inspected}");
    let text = String::from_utf8_lossy(&run(&["inspect", archive]).stdout).to_string();
    assert!(text.contains("public.events") && text.contains("5000 rows"), "{text}");

    // verify: quick without the key (every archive of the repository), deep with it.
    let quick = stdout_json(&no_key(&["verify", repo_s, "--json"]));
    assert_eq!(quick.as_array().map(Vec::len), Some(3), "{quick}");
    assert!(quick.as_array().expect("reports").iter().all(|r| r["deep"] == false), "{quick}");
    let deep = stdout_json(&run(&["verify", archive, "--deep", "--json"]));
    assert_eq!((deep[0]["deep"].as_bool(), deep[0]["rows"].as_u64(), deep[0]["sha256"].as_str()), (Some(true), Some(5100), full["sha256"].as_str()), "{deep}");
    let deep_no_key = no_key(&["verify", archive, "--deep"]);
    assert!(!deep_no_key.status.success(), "a deep verify needs the key");

    // restore --backup picks a backup of the chain; --jobs sets the connections.
    for (b, want) in [(&inc, &at_inc), (&full, &at_full)] {
        let target = Db::new();
        let restored = stdout_json(&run(&["restore", "--from", repo_s, "--backup", b["id"].as_str().expect("id"), "--target", &target.url().replacen("postgres://", "postgresql://", 1), "--jobs", "2", "--json"]));
        assert_eq!(restored["outcome"]["archive_id"], b["id"], "{restored}");
        assert_eq!(&psql(&target.url(), "SELECT count(*) || ':' || sum(id) || ':' || string_agg(DISTINCT what, '' ORDER BY what) FROM events"), want, "backup {} restores its state", b["id"]);
    }
    // The newest backup by default; a wrong password is refused and the target keeps nothing.
    let target = Db::new();
    let wrong = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(wrong.path(), "not it").expect("write");
    let refused = Command::new(env!("CARGO_BIN_EXE_safehold"))
        .args(["restore", "--from", repo_s, "--backup", inc["id"].as_str().expect("id"), "--target", &target.url()])
        .env("SAFEHOLD_HOME", home.path())
        .env("SAFEHOLD_PASSWORD_FILE", wrong.path())
        .output()
        .expect("run");
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("password does not open"), "{}", String::from_utf8_lossy(&refused.stderr));
    assert_eq!(psql(&target.url(), "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), "0", "nothing was restored");
    let newest = stdout_json(&run(&["restore", "--from", repo_s, "--target", &target.url(), "--json"]));
    assert_eq!(newest["outcome"]["archive_id"], diff["id"], "{newest}");
    assert_eq!(psql(&target.url(), "SELECT count(*) FROM events"), psql(&db.url(), "SELECT count(*) FROM events"));

    // Progress: plain lines when not a terminal, a bar on one (under `script`, a pseudo-terminal).
    let plain = run(&["backup", "--source", &url, "--to", repo_s]);
    let err = String::from_utf8_lossy(&plain.stderr);
    assert!(plain.status.success() && err.lines().any(|l| l.starts_with("backup ") && l.contains("public.events")) && !err.contains('\r'), "{err}");
    let cmd = format!("{} backup --source {url} --to {repo_s}", env!("CARGO_BIN_EXE_safehold"));
    let tty = Command::new("script").args(["-qefc", &cmd, "/dev/null"]).env("SAFEHOLD_HOME", home.path()).env("SAFEHOLD_PASSWORD_FILE", &pw).output().expect("script");
    let out = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{out}");
    assert!(out.contains("\r\x1b[2Kbackup [") && out.contains("/2 tables, ") && out.contains('#'), "a progress bar redrawn in place: {out:?}");
}

/// A server set up from the command line alone: a configuration created with its settings,
/// changed, run, and deleted; a bad cron line or an unknown storage refused, changing nothing.
#[test]
fn configurations_are_created_changed_and_deleted_from_the_command_line() {
    let home = tempfile::tempdir().expect("tmp");
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_safehold")).args(args).env("SAFEHOLD_HOME", home.path()).env("SAFEHOLD_PASSWORD", "cli-test").output().expect("run");
    assert!(run(&["demo"]).status.success());
    let second = home.path().join("second");
    assert!(run(&["storage", "add", "Second", second.to_str().expect("utf8")]).status.success());
    let count = || stdout_json(&run(&["config", "list", "--json"])).as_array().map(Vec::len).unwrap_or(0);
    let before = count();

    let bad = run(&["config", "add", "Nightly", "--connection", "Demo platform", "--schedule", "61 2 * * *"]);
    assert!(!bad.status.success(), "an invalid cron line is refused");
    assert!(String::from_utf8_lossy(&bad.stderr).to_lowercase().contains("cron") || String::from_utf8_lossy(&bad.stderr).contains("schedule"), "{}", String::from_utf8_lossy(&bad.stderr));
    let bad = run(&["config", "add", "Nightly", "--connection", "Demo platform", "--schedule", "0 2 * * *", "--storage", "Nowhere"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("Nowhere"), "{}", String::from_utf8_lossy(&bad.stderr));
    assert_eq!(count(), before, "nothing was created");

    let c = stdout_json(&run(&[
        "config", "add", "Nightly", "--connection", "Demo platform", "--schedule", "30 1 * * *", "--type", "incremental", "--retention-days", "14",
        "--second-storage", "Second", "--time-zone", "Europe/Berlin", "--logs", "on", "--missed-runs", "skip", "--json",
    ]));
    assert_eq!(
        (c["configuration_name"].as_str(), c["backup_type"].as_str(), c["schedule_cron"].as_str(), c["retention_days"].as_i64(), c["storage_location"].as_str()),
        (Some("Nightly"), Some("incremental"), Some("30 1 * * *"), Some(14), Some("Local backups")),
        "{c}"
    );
    assert_eq!((c["secondary_storage"].as_str(), c["time_zone"].as_str(), c["includes_logs"].as_bool(), c["missed_runs"].as_str()), (Some("Second"), Some("Europe/Berlin"), Some(true), Some("skip")), "{c}");
    assert_eq!(count(), before + 1);

    let c = stdout_json(&run(&["config", "set", "Nightly", "--schedule", "0 3 * * 1-5", "--second-storage", "none", "--encryption", "off", "--rename", "Weeknights", "--json"]));
    assert_eq!((c["configuration_name"].as_str(), c["schedule_cron"].as_str(), c["secondary_storage"].is_null(), c["encryption_enabled"].as_bool(), c["retention_days"].as_i64()), (Some("Weeknights"), Some("0 3 * * 1-5"), true, Some(false), Some(14)), "the rest is kept: {c}");
    let done = stdout_json(&run(&["config", "run", "Weeknights", "--json"]));
    assert_eq!(done["status"], "completed", "{done}");
    assert!(run(&["config", "set", "Weeknights", "--active", "off"]).status.success());
    let refused = run(&["config", "run", "Weeknights"]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("inactive"), "{}", String::from_utf8_lossy(&refused.stderr));
    let out = run(&["config", "remove", "Weeknights"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("its backups stay"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(count(), before);
    assert_eq!(stdout_json(&run(&["history", "--status", "completed", "--json"])).as_array().map(Vec::len), Some(1), "its backup stays in the history");
}

/// Issue 21 #3: once operators exist, every command on a repository named by path acts as the
/// signed-in operator — its permission checked, refusals (a missing key too) audited under their
/// name — and a repository that an ad-hoc backup made keeps no usable secret in the keychain.
#[test]
fn once_operators_exist_ad_hoc_commands_act_as_the_signed_in_operator_with_its_rights() {
    let (home, pw) = demo_home_with_password();
    let h = home.path();
    let pw_s = pw.to_str().expect("utf-8");
    let db = Db::new();
    psql(&db.url(), "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 10) g;");
    // Before operators: an ad-hoc backup, its secret in the keychain; another with a password.
    let repo = h.join("adhoc");
    let repo_s = repo.to_str().expect("utf-8");
    let out = safehold(h, &["backup", "--source", &db.url(), "--to", repo_s]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let known = h.join("known-pw");
    std::fs::write(&known, "a password olga knows\n").expect("pw");
    let repo2 = h.join("with-password");
    let repo2_s = repo2.to_str().expect("utf-8");
    let out = safehold(h, &["backup", "--source", &db.url(), "--to", repo2_s, "--password-file", known.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    assert!(safehold(h, &["operator", "setup", "alice", "--password-file", pw_s]).status.success());
    for (who, role) in [("olga", "platform_operator"), ("rita", "read_only_admin")] {
        let out = as_operator(h, "alice", &pw, &["operator", "add", who, "--role", role, "--password-file", pw_s]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let sqlite_target = |n: &str| format!("sqlite://{}", h.join(format!("{n}.db")).display());
    let kit_state = || {
        let config: serde_json::Value = serde_json::from_slice(&std::fs::read(repo.join("safehold-repository.json")).expect("repository file")).expect("json");
        config["recovery_exported"] == true
    };
    // Nobody signed in: restore, deep verify and the recovery kit's export are refused, and the
    // kit stays with the repository.
    for args in [
        vec!["restore", "--from", repo_s, "--target", &sqlite_target("nobody"), "--yes"],
        vec!["verify", "--deep", repo_s],
        vec!["key", "export-recovery", repo_s],
        vec!["restore", "--from", repo2_s, "--target", &sqlite_target("nobody"), "--yes", "--password-file", known.to_str().expect("utf-8")],
    ] {
        let out = safehold(h, &args);
        assert!(!out.status.success(), "{args:?} ran with nobody signed in");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--operator"), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(!kit_state(), "the kit was not taken away");
    assert!(!h.join("nobody.db").exists());
    // A platform operator who knows a repository's password may still not restore from it; a
    // read-only admin may list but not deep-verify. Each refusal is audited under their name.
    let out = as_operator(h, "olga", &pw, &["restore", "--from", repo2_s, "--target", &sqlite_target("olga"), "--yes", "--password-file", known.to_str().expect("utf-8")]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("backup:restore_data"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!h.join("olga.db").exists());
    let out = as_operator(h, "rita", &pw, &["verify", "--deep", repo_s]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("backup:restore_data"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(as_operator(h, "rita", &pw, &["ls", repo_s]).status.success());
    assert_eq!(
        sqlite(h, "SELECT group_concat(o.name || ':' || a.action, ',') FROM audit_log a JOIN operators o ON o.id = a.operator_id WHERE a.outcome = 'denied' ORDER BY a.id"),
        "olga:restore.start,rita:backup.verify_deep"
    );
    // The platform operator backs up into it (sealed to its public key, no secret needed).
    let out = as_operator(h, "olga", &pw, &["backup", "--source", &db.url(), "--to", repo_s]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The super admin's first command on it seals it to the super admins and takes its secret out
    // of the keychain; she restores, and the log names her.
    let target = Db::new();
    let out = as_operator(h, "alice", &pw, &["restore", "--from", repo_s, "--target", &target.url(), "--yes"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(psql(&target.url(), "SELECT count(*) FROM t"), "10");
    assert_eq!(sqlite(h, "SELECT count(*) FROM audit_log WHERE action = 'key.withhold'"), "1", "the ad-hoc repository's secret was withheld");
    assert_eq!(
        sqlite(h, "SELECT o.name FROM audit_log a JOIN operators o ON o.id = a.operator_id WHERE a.action = 'restore.start' AND a.outcome = 'success'"),
        "alice"
    );
    assert_eq!(sqlite(h, "SELECT o.name FROM restore_operations r JOIN operators o ON o.id = r.initiated_by WHERE r.status = 'completed'"), "alice");
    // A platform operator's deep verify would need restore_data; olga's quick verify works.
    assert!(as_operator(h, "olga", &pw, &["verify", repo_s]).status.success());
    // With nobody signed in after the withholding, even a command that skipped the sign-in
    // could not find a key: the keychain no longer holds the repository's secret.
    let out = as_operator(h, "alice", &pw, &["key", "export-recovery", repo_s]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("SHRK-"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(kit_state(), "exported by alice");
    assert_eq!(sqlite(h, "SELECT count(*) FROM audit_log a JOIN operators o ON o.id = a.operator_id WHERE a.action = 'key.export_recovery' AND o.name = 'alice' AND a.outcome = 'success'"), "1");
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

/// Issue 21 #11, #13, #16: with a umask that would let everybody read (000), what Safehold writes
/// is its owner's alone; an export never touches a file beside it; a backup killed with -9
/// leaves a partial archive that the next command on the repository removes.
#[test]
fn files_are_the_owners_alone_exports_touch_nothing_beside_them_and_a_killed_backups_leftover_goes() {
    let home = tempfile::tempdir().expect("tmp");
    let h = home.path().join("home");
    let run = |args: &[&str]| {
        let mut c = Command::new("sh");
        c.arg("-c").arg("umask 000; exec \"$0\" \"$@\"").arg(env!("CARGO_BIN_EXE_safehold")).args(args).env("SAFEHOLD_HOME", &h).env("SAFEHOLD_PASSWORD", "pw");
        c.output().expect("run")
    };
    let db = Db::new();
    psql(
        &db.url(),
        "CREATE TABLE tenants (id text PRIMARY KEY, name text NOT NULL);
         CREATE TABLE notes (id serial PRIMARY KEY, tenant_id text NOT NULL REFERENCES tenants(id), body text);
         INSERT INTO tenants VALUES ('acme', 'Acme'), ('beta', 'Beta');
         INSERT INTO notes (tenant_id, body) SELECT CASE WHEN g % 2 = 0 THEN 'acme' ELSE 'beta' END, 'note ' || g FROM generate_series(1, 50) g;",
    );
    let out = run(&["demo"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["config", "run", "Daily demo backup"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let repo = home.path().join("repo");
    let out = run(&["backup", "--source", &db.url(), "--to", repo.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let exports = home.path().join("exports");
    std::fs::create_dir(&exports).expect("dir");
    // Files of the user's own beside the export, named as a careless writer would name its own.
    for name in ["acme.partial", "acme.shar.partial", "acme.zip.partial"] {
        std::fs::write(exports.join(name), "mine").expect("write");
    }
    let shar = exports.join("acme.shar");
    let out = run(&["tenant", "export", "--source", &db.url(), "--tenant", "acme", "--to", shar.to_str().expect("utf-8"), "--repo", repo.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let zip = exports.join("acme.zip");
    let out = run(&["tenant", "export", "--source", &db.url(), "--tenant", "acme", "--to", zip.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for name in ["acme.partial", "acme.shar.partial", "acme.zip.partial"] {
        assert_eq!(std::fs::read_to_string(exports.join(name)).expect("still there"), "mine", "{name} untouched");
    }
    let restored = home.path().join("restored.db");
    let out = run(&["restore", "--from", h.join("backups").to_str().expect("utf-8"), "--target", &format!("sqlite://{}", restored.display()), "--yes"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    assert_eq!(mode(&h), 0o700, "the home");
    for f in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        if h.join(f).exists() {
            assert_eq!(mode(&h.join(f)), 0o600, "{f}");
        }
    }
    for d in [h.join("backups"), h.join("backups/archives"), repo.clone(), repo.join("archives")] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    let mut files = vec![repo.join("safehold-repository.json"), h.join("backups/safehold-repository.json"), shar.clone(), zip.clone(), restored.clone()];
    for dir in [repo.join("archives"), h.join("backups/archives")] {
        files.extend(std::fs::read_dir(&dir).expect("archives").flatten().map(|e| e.path()));
    }
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    // An older home opened again is restricted.
    std::fs::set_permissions(&h, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(h.join("catalog.db"), std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
    assert!(run(&["history"]).status.success());
    assert_eq!((mode(&h), mode(&h.join("catalog.db"))), (0o700, 0o600));

    // A backup killed with -9 (waiting on a lock inside its snapshot) leaves its partial archive;
    // the next command on the repository removes it.
    let slow = Db::new();
    psql(&slow.url(), "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 1000);");
    let mut locker = Command::new("psql").args(["-X", "-q", "-d", &slow.url(), "-c", "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60);"]).spawn().expect("lock");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut backup = Command::new(env!("CARGO_BIN_EXE_safehold"))
        .args(["backup", "--source", &slow.url(), "--to", repo.to_str().expect("utf-8")])
        .env("SAFEHOLD_HOME", &h)
        .env("SAFEHOLD_PASSWORD", "pw")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("backup");
    let partials = || std::fs::read_dir(repo.join("archives")).expect("archives").flatten().filter(|e| e.path().extension().is_some_and(|x| x == "partial")).count();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while partials() == 0 {
        assert!(std::time::Instant::now() < deadline, "the backup never started writing");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // While it lives, another command leaves its partial archive alone.
    assert!(run(&["ls", repo.to_str().expect("utf-8")]).status.success());
    assert_eq!(partials(), 1, "a live backup's partial archive stays");
    backup.kill().expect("SIGKILL");
    let _ = backup.wait();
    let _ = locker.kill();
    let _ = locker.wait();
    assert_eq!(partials(), 1, "the killed backup left it");
    assert!(run(&["ls", repo.to_str().expect("utf-8")]).status.success());
    assert_eq!(partials(), 0, "the next command on the repository removed it");
    let out = run(&["verify", repo.to_str().expect("utf-8")]);
    assert!(out.status.success(), "the backups that completed verify: {}", String::from_utf8_lossy(&out.stderr));
}

/// Issue 21 #9: `restore --create` killed with -9 while it loads leaves no database under the
/// target's name (it builds under a temporary one), the catalog row is marked interrupted by the
/// next command, and running the restore again works and removes the leftover.
#[test]
fn a_create_restore_killed_midway_leaves_no_half_made_database_and_runs_again() {
    let home = tempfile::tempdir().expect("tmp");
    let h = home.path();
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_safehold")).args(args).env("SAFEHOLD_HOME", h).env("SAFEHOLD_PASSWORD", "pw").output().expect("run");
    let db = Db::new();
    psql(
        &db.url(),
        "CREATE TABLE events (id bigint PRIMARY KEY, what text NOT NULL, at timestamptz NOT NULL DEFAULT now());
         INSERT INTO events SELECT g, repeat('x', 40) || g, now() FROM generate_series(1, 400000) g;
         CREATE INDEX ON events (what); CREATE INDEX ON events (at, what);",
    );
    let repo = h.join("repo");
    let out = run(&["backup", "--source", &db.url(), "--to", repo.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let target_name = format!("safehold_cli_create_{}", std::process::id());
    let base = pg_base();
    let target = format!("{base}/{target_name}");
    let admin = format!("{base}/postgres");
    let databases = |like: &str| psql(&admin, &format!("SELECT count(*) FROM pg_database WHERE datname LIKE '{like}'"));
    let building = format!("safehold\\_building\\_%{target_name}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_safehold"))
        .args(["restore", "--from", repo.to_str().expect("utf-8"), "--target", &target, "--create", "--yes"])
        .env("SAFEHOLD_HOME", h)
        .env("SAFEHOLD_PASSWORD", "pw")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("restore");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while databases(&building) == "0" {
        assert!(std::time::Instant::now() < deadline, "the restore never started building");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert_eq!(databases(&target_name), "0", "no database under the target's name");
    assert_eq!(sqlite(h, "SELECT status FROM restore_operations"), "running", "the killed process could not say");
    // The next command says what happened.
    let out = run(&["history", "--json"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 restores"), "{}", String::from_utf8_lossy(&out.stderr));
    let row = sqlite(h, "SELECT status || ': ' || error_message FROM restore_operations");
    assert!(row.starts_with("failed: interrupted") && row.contains("temporary name"), "{row}");
    // Run again: it works, and the leftover of the first is gone.
    let out = run(&["restore", "--from", repo.to_str().expect("utf-8"), "--target", &target, "--create", "--yes"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(psql(&target, "SELECT count(*) FROM events"), "400000");
    assert_eq!(psql(&target, "SELECT count(*) FROM pg_indexes WHERE tablename = 'events'"), "3", "keys and indexes made");
    assert_eq!(databases(&building), "0", "the abandoned build was removed");
    psql(&admin, &format!("DROP DATABASE \"{target_name}\" WITH (FORCE)"));
}

/// Issue 21 #10, #14: a damaged archive is reported and skipped — ls, verify, restore and the next
/// incremental backup go on with the others — and an archive copied in from another repository
/// fails even a quick verify.
#[test]
fn a_damaged_or_foreign_archive_is_reported_and_the_rest_of_the_repository_keeps_working() {
    let home = tempfile::tempdir().expect("tmp");
    let h = home.path();
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_safehold")).args(args).env("SAFEHOLD_HOME", h).env("SAFEHOLD_PASSWORD", "pw").output().expect("run");
    let db = Db::new();
    psql(&db.url(), "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g;");
    let repo = h.join("repo");
    let repo_s = repo.to_str().expect("utf-8");
    let mut archives = Vec::new();
    for (i, kind) in ["full", "incremental", "incremental"].iter().enumerate() {
        psql(&db.url(), &format!("INSERT INTO t VALUES ({}, 'added')", 1000 + i));
        let out = stdout_json(&run(&["backup", "--source", &db.url(), "--to", repo_s, "--type", kind, "--json"]));
        archives.push(out["archive"].as_str().expect("archive").to_string());
    }
    // The newest one damaged where its header is.
    let newest = &archives[2];
    let mut bytes = std::fs::read(newest).expect("archive");
    for b in bytes.iter_mut().take(64) {
        *b ^= 0xA5;
    }
    std::fs::write(newest, &bytes).expect("damage");
    let out = run(&["ls", repo_s, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be read and is skipped"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout_json(&out).as_array().map(Vec::len), Some(2));
    let out = run(&["verify", repo_s]);
    assert!(!out.status.success(), "a damaged archive fails the verify");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!((text.matches("ok  ").count(), text.matches("FAIL  ").count()), (2, 1), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 3 archives failed"), "{}", String::from_utf8_lossy(&out.stderr));
    // A restore takes the newest sound backup; the next incremental builds on a sound one.
    let target = Db::new();
    let out = run(&["restore", "--from", repo_s, "--target", &target.url(), "--yes"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(psql(&target.url(), "SELECT count(*) FROM t"), "102", "the state of the second backup");
    let out = stdout_json(&run(&["backup", "--source", &db.url(), "--to", repo_s, "--type", "incremental", "--json"]));
    assert_eq!(out["type"], "incremental", "{out}");
    // An archive of another repository, copied in, is not one of this repository's.
    let other = h.join("other");
    let foreign = stdout_json(&run(&["backup", "--source", &db.url(), "--to", other.to_str().expect("utf-8"), "--json"]));
    std::fs::remove_file(newest).expect("remove the damaged one");
    let copied = repo.join("archives").join("29990101000000-copied.shar");
    std::fs::copy(foreign["archive"].as_str().expect("archive"), &copied).expect("copy");
    let out = run(&["verify", repo_s]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("belongs to another repository"), "{}", String::from_utf8_lossy(&out.stdout));
}

/// Two homes write to one repository: the workstation that holds its password, and a server
/// that only seals backups to its public key. The server's backups show who wrote them (`ls`,
/// `inspect`), do not restore until a key holder approves the server (`key writers`, `key
/// approve-writer`) — `--trust-unsigned` restores one explicitly — and restore after.
#[test]
fn a_backup_restores_only_once_its_writer_is_approved_and_listings_show_who_wrote_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let (workstation, server) = (dir.path().join("workstation"), dir.path().join("server"));
    let db = Db::new();
    psql(&db.url(), "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 20) g;");
    let pw = dir.path().join("password");
    std::fs::write(&pw, "the workstation's password\n").expect("pw");
    let repo = dir.path().join("repo");
    let repo_s = repo.to_str().expect("utf-8");
    let no_bus = "unix:path=/nonexistent/safehold-test-bus";
    let with_key = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_safehold")).args(args).env("SAFEHOLD_HOME", &workstation).env("SAFEHOLD_PASSWORD_FILE", &pw).env("DBUS_SESSION_BUS_ADDRESS", no_bus).output().expect("run");
    let on_server = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_safehold")).args(args).env("SAFEHOLD_HOME", &server).env_remove("SAFEHOLD_PASSWORD").env_remove("SAFEHOLD_PASSWORD_FILE").env("DBUS_SESSION_BUS_ADDRESS", no_bus).output().expect("run");

    let own = stdout_json(&with_key(&["backup", "--source", &db.url(), "--to", repo_s, "--json"]));
    psql(&db.url(), "INSERT INTO t VALUES (21, 'from the server');");
    let theirs = stdout_json(&on_server(&["backup", "--source", &db.url(), "--to", repo_s, "--type", "full", "--json"]));
    assert_eq!(mode(&server.join("writer.key")) & 0o777, 0o600, "the server made its writer key, its owner's alone");

    // ls and key writers: who wrote each backup, and whether that writer is approved.
    let list = stdout_json(&with_key(&["ls", repo_s, "--json"]));
    let writer_of = |id: &serde_json::Value| list.as_array().expect("a list").iter().find(|r| r["id"] == *id).map(|r| (r["writer"].clone(), r["writer_key"].clone())).expect("listed");
    let (own_writer, own_key) = writer_of(&own["id"]);
    let (server_writer, server_key) = writer_of(&theirs["id"]);
    assert!(own_writer.is_string() && server_writer.is_string() && own_key.is_string() && server_key.is_string() && own_key != server_key, "{list}");
    let server_key = server_key.as_str().expect("hex").to_string();
    let writers = stdout_json(&with_key(&["key", "writers", repo_s, "--json"]));
    let approved = |k: &str| writers.as_array().expect("writers").iter().find(|w| w["public_key"] == k).map(|w| w["approved"].clone());
    assert_eq!((approved(own_key.as_str().expect("hex")), approved(&server_key)), (Some(serde_json::json!(true)), Some(serde_json::json!(false))), "{writers}");
    let inspected = stdout_json(&with_key(&["inspect", theirs["archive"].as_str().expect("archive"), "--json"]));
    assert_eq!((inspected["provenance"]["state"].as_str(), inspected["provenance"]["public_key"].as_str()), (Some("unapproved"), Some(server_key.as_str())), "{inspected}");

    // The server's backup is refused, with what to do; --trust-unsigned restores it.
    let target = Db::new();
    let refused = with_key(&["restore", "--from", repo_s, "--backup", theirs["id"].as_str().expect("id"), "--target", &target.url(), "--yes"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("safehold key approve-writer") && err.contains("--trust-unsigned") && err.contains("nothing was restored"), "{err}");
    assert_eq!(psql(&target.url(), "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), "0", "nothing was restored");
    let deep = with_key(&["verify", theirs["archive"].as_str().expect("archive"), "--deep"]);
    assert!(!deep.status.success(), "a deep verify refuses it too: {}", String::from_utf8_lossy(&deep.stdout));
    let trusted = with_key(&["restore", "--from", repo_s, "--backup", theirs["id"].as_str().expect("id"), "--target", &target.url(), "--yes", "--trust-unsigned"]);
    assert!(trusted.status.success(), "{}", String::from_utf8_lossy(&trusted.stderr));
    assert_eq!(psql(&target.url(), "SELECT count(*) FROM t"), "21");

    // Approving needs the key: the server cannot approve itself.
    let prefix = &server_key[..12];
    let self_approval = on_server(&["key", "approve-writer", repo_s, prefix]);
    assert!(!self_approval.status.success(), "{}", String::from_utf8_lossy(&self_approval.stdout));
    let ok = with_key(&["key", "approve-writer", repo_s, prefix]);
    assert!(ok.status.success() && String::from_utf8_lossy(&ok.stdout).contains("approved"), "{}", String::from_utf8_lossy(&ok.stderr));
    let inspected = stdout_json(&with_key(&["inspect", theirs["archive"].as_str().expect("archive"), "--json"]));
    assert_eq!(inspected["provenance"]["state"].as_str(), Some("approved"), "{inspected}");
    let target = Db::new();
    let restored = with_key(&["restore", "--from", repo_s, "--backup", theirs["id"].as_str().expect("id"), "--target", &target.url(), "--yes"]);
    assert!(restored.status.success(), "{}", String::from_utf8_lossy(&restored.stderr));
    assert_eq!(psql(&target.url(), "SELECT count(*) FROM t"), "21");
    assert!(with_key(&["verify", theirs["archive"].as_str().expect("archive"), "--deep"]).status.success(), "an approved writer's backup verifies");
}

/// `safehold protect` (continuous protection, being built): started, run, its status in JSON with
/// units in the names, a restore to a chosen second, stopped (the slot dropped); a SQLite source
/// refused with what to use instead. On the cluster with logical decoding make test starts.
#[test]
fn protection_starts_seals_changes_restores_to_a_second_and_stops_from_the_command_line() {
    let Ok(base) = std::env::var("SAFEHOLD_TEST_PG_LOGICAL") else {
        eprintln!("skipped: no cluster with logical decoding (SAFEHOLD_TEST_PG_LOGICAL; make test starts one)");
        return;
    };
    let home = tempfile::tempdir().expect("tmp");
    let h = home.path();
    let pw = h.join("pw");
    std::fs::write(&pw, "protect-pw").expect("password file");
    let pw = pw.to_str().expect("utf-8").to_string();
    let repo = h.join("repo");
    let repo = repo.to_str().expect("utf-8").to_string();
    let name = format!("safehold_cli_{}", std::process::id());
    psql(&format!("{base}/postgres"), &format!("CREATE DATABASE {name}"));
    let url = format!("{base}/{name}");
    psql(
        &url,
        "CREATE TABLE tenants (id text PRIMARY KEY); INSERT INTO tenants VALUES ('t');
         CREATE TABLE notes (id serial PRIMARY KEY, tenant_id text NOT NULL DEFAULT 't' REFERENCES tenants(id), body text);
         INSERT INTO notes (body) SELECT 'n' || g FROM generate_series(1, 10) g;",
    );
    let args = |cmd: &str, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["protect", cmd, "--repo", &repo, "--name", &name, "--password-file", &pw].iter().map(|s| s.to_string()).collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |a: Vec<String>| safehold(h, &a.iter().map(String::as_str).collect::<Vec<_>>());
    let started = stdout_json(&run(args("start", &["--source", &url, "--json"])));
    assert_eq!(started["protection"]["slot"], name.as_str());
    psql(&url, "INSERT INTO notes (body) VALUES ('after the base'); UPDATE notes SET body = 'changed' WHERE id = 1;");
    let step = stdout_json(&run(args("run", &["--source", &url, "--json"])));
    assert_eq!(step["transactions"], 1, "{step}");
    let status = stdout_json(&run(args("status", &["--source", &url, "--json"])));
    assert_eq!(status["slot_exists"], true);
    assert!(status["lag_bytes"].is_u64() && status["held_bytes"].is_u64() && status["segments"] == 1, "{status}");
    assert_eq!(status["lag_seconds"], 0.0, "nothing committed waits: {status}");
    assert!(status["last_sealed_commit"].is_string(), "{status}");
    let at = psql(&url, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')");
    std::thread::sleep(std::time::Duration::from_millis(20));
    psql(&url, "DELETE FROM notes WHERE id <= 5;");
    stdout_json(&run(args("run", &["--source", &url, "--json"])));
    let target = Db::new();
    let restored = stdout_json(&run(args("restore", &["--at", &at, "--to", &target.url(), "--json"])));
    assert_eq!(restored["transactions"], 1, "{restored}");
    assert_eq!(psql(&target.url(), "SELECT count(*) || ':' || (SELECT body FROM notes WHERE id = 1) FROM notes"), "11:changed", "the database as it was at {at}");
    // `safehold restore --at` of a covered second uses the segments, not the backup before it.
    let then = format!("{name}_then");
    let via_restore = run(["restore", "--from", &repo, "--at", &at, "--target", &format!("{base}/{then}"), "--create", "--password-file", &pw, "--json"].iter().map(|s| s.to_string()).collect());
    let via_restore = stdout_json(&via_restore);
    assert_eq!(via_restore["plan"]["transactions"], 1, "{via_restore}");
    assert_eq!(psql(&format!("{base}/{then}"), "SELECT count(*) || ':' || (SELECT body FROM notes WHERE id = 1) FROM notes"), "11:changed", "safehold restore --at");
    psql(&format!("{base}/postgres"), &format!("DROP DATABASE {then}"));
    // One tenant's row put back in place.
    let at2 = psql(&url, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')");
    std::thread::sleep(std::time::Duration::from_millis(20));
    psql(&url, "DELETE FROM notes WHERE id = 6;");
    stdout_json(&run(args("run", &["--source", &url, "--json"])));
    let dry = stdout_json(&run(args("restore", &["--at", &at2, "--to", &url, "--tenant", "t", "--dry-run", "--json"])));
    assert_eq!(dry["committed"], false, "{dry}");
    assert_eq!(psql(&url, "SELECT count(*) FROM notes WHERE id = 6"), "0", "a dry run changes nothing");
    stdout_json(&run(args("restore", &["--at", &at2, "--to", &url, "--tenant", "t", "--json"])));
    assert_eq!(psql(&url, "SELECT count(*) FROM notes WHERE id = 6"), "1", "the tenant's row is back");
    stdout_json(&run(args("stop", &["--source", &url, "--json"])));
    let status = stdout_json(&run(args("status", &["--source", &url, "--json"])));
    assert_eq!(status["slot_exists"], false, "stopping drops the slot");
    let refused = run(args("start", &["--source", "sqlite:///tmp/x.db"]));
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("postgres://"), "{}", String::from_utf8_lossy(&refused.stderr));
    let _ = Command::new("psql").args(["-X", "-q", "-d", &format!("{base}/postgres"), "-c", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")]).output();
}

/// A configuration's continuous protection (`config add … --continuous on`) is run by
/// `safehold schedule run`: it starts (slot, base backup), seals changes every second, survives a
/// `kill -9` of the scheduler in the middle of a write load — restored to a second after the
/// restart, the database is exactly the source's: nothing lost, nothing doubled — and
/// `config set --continuous off` drops the slot. `protect status --json` names its units.
#[test]
fn a_configurations_continuous_protection_runs_under_the_scheduler_survives_kill_9_and_off_drops_the_slot() {
    let Ok(base) = std::env::var("SAFEHOLD_TEST_PG_LOGICAL") else {
        eprintln!("skipped: no cluster with logical decoding (SAFEHOLD_TEST_PG_LOGICAL; make test starts one)");
        return;
    };
    let home = tempfile::tempdir().expect("home");
    let h = home.path();
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_safehold")).args(args).env("SAFEHOLD_HOME", h).env("SAFEHOLD_PASSWORD", "pw").output().expect("run");
    let scheduler = || {
        Command::new(env!("CARGO_BIN_EXE_safehold"))
            .args(["schedule", "run", "--protect-every", "1"])
            .env("SAFEHOLD_HOME", h)
            .env("SAFEHOLD_PASSWORD", "pw")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("schedule run")
    };
    let name = format!("safehold_cfg_{}", std::process::id());
    psql(&format!("{base}/postgres"), &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    psql(&format!("{base}/postgres"), &format!("CREATE DATABASE {name}"));
    let url = format!("{base}/{name}");
    psql(&url, "CREATE TABLE events (id bigserial PRIMARY KEY, tenant_id text NOT NULL, n int NOT NULL, body text); INSERT INTO events (tenant_id, n) SELECT 't' || (g % 3), g FROM generate_series(1, 50) g;");
    assert!(run(&["demo"]).status.success());
    sqlite(h, "UPDATE backup_configurations SET is_active = 0");
    stdout_json(&run(&["connection", "add", "prot", &url, "--json"]));
    let created = stdout_json(&run(&["config", "add", "Prot", "--connection", "prot", "--schedule", "0 3 * * *", "--continuous", "on", "--json"]));
    assert_eq!(created["continuous_protection"], true, "{created}");
    let status = || stdout_json(&run(&["protect", "status", "--config", "Prot", "--json"]))[0].clone();
    let wait_for = |what: &str, ok: &dyn Fn(&serde_json::Value) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            let s = status();
            if ok(&s) {
                return s;
            }
            assert!(std::time::Instant::now() < deadline, "waited 90 s for {what}: {s}");
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    };
    let write = |i: u32| psql(&url, &format!("INSERT INTO events (tenant_id, n, body) VALUES ('t{}', {i}, repeat('x', {i})); UPDATE events SET n = n + 1 WHERE id = {}; DELETE FROM events WHERE id = {};", i % 3, 1 + i % 40, 100 + i));

    let mut s1 = scheduler();
    wait_for("the base backup and a first step", &|s| s["state"] == "streaming" && s["slot_exists"] == true);
    for i in 0..20 {
        write(i);
    }
    wait_for("a first segment", &|s| s["segments"].as_u64().is_some_and(|n| n >= 1));
    // Killed in the middle of the load: between a segment and the slot's advance, or anywhere.
    for i in 20..30 {
        write(i);
    }
    s1.kill().expect("kill -9");
    let _ = s1.wait();
    for i in 30..45 {
        write(i);
    }
    let mut s2 = scheduler();
    for i in 45..60 {
        write(i);
    }
    let at = psql(&url, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')");
    let expected = psql(&url, "SELECT count(*) || ':' || sum(n) || ':' || md5(string_agg(id || '/' || n || '/' || coalesce(body, ''), ',' ORDER BY id)) FROM events");
    let s = wait_for("the changes sealed past the last write", &|s| s["recovery_point"].as_str().is_some_and(|r| r > at.as_str()));
    assert!(s["lag_seconds"].is_number() && s["held_bytes"].is_u64() && s["warn_held_bytes"].is_u64() && s["max_held_bytes"].is_u64(), "units in the names: {s}");
    s2.kill().expect("kill");
    let _ = s2.wait();

    let slot = s["slot"].as_str().expect("slot").to_string();
    let target = Db::new();
    let repo = h.join("backups");
    let restored = run(&["protect", "restore", "--repo", repo.to_str().expect("utf-8"), "--name", &slot, "--at", &at, "--to", &target.url(), "--json"]);
    stdout_json(&restored);
    let got = psql(&target.url(), "SELECT count(*) || ':' || sum(n) || ':' || md5(string_agg(id || '/' || n || '/' || coalesce(body, ''), ',' ORDER BY id)) FROM events");
    assert_eq!(got, expected, "restored to {at} across a kill -9: nothing lost, nothing doubled");
    // Verify covers the segments, quick and deep.
    for deep in [false, true] {
        let mut args = vec!["verify", repo.to_str().expect("utf-8"), "--json"];
        if deep {
            args.push("--deep");
        }
        let checked = stdout_json(&run(&args));
        let segments: Vec<&serde_json::Value> = checked.as_array().expect("list").iter().filter(|c| c["archive"].as_str().is_some_and(|a| a.contains("/changes/"))).collect();
        assert!(!segments.is_empty() && segments.iter().all(|c| c["ok"] != false), "deep {deep}: {checked}");
        if deep {
            assert!(segments.iter().all(|c| c["rows"].as_u64().is_some_and(|r| r > 0)), "deep verify counts each segment's changes: {checked}");
        }
    }
    // And a test restore to the second: every table's rows against the base and the changes.
    let tested = stdout_json(&run(&["verify", repo.to_str().expect("utf-8"), "--restore-test", "--at", &at, "--scratch", &format!("{base}/postgres"), "--json"]));
    assert_eq!(tested["ok"], true, "{tested}");
    let events = tested["tables"].as_array().expect("tables").iter().find(|t| t["table"] == "public.events").cloned().expect("events checked");
    assert_eq!(events["restored_rows"].as_i64(), expected.split(':').next().and_then(|n| n.parse().ok()), "{tested}");

    let off = run(&["config", "set", "Prot", "--continuous", "off"]);
    assert!(off.status.success() && String::from_utf8_lossy(&off.stderr).contains(&slot), "{}", String::from_utf8_lossy(&off.stderr));
    assert_eq!(psql(&format!("{base}/postgres"), &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'")), "0", "off drops the slot");
    let _ = Command::new("psql").args(["-X", "-q", "-d", &format!("{base}/postgres"), "-c", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")]).output();
}

/// `backup --all-databases` and `restore --server` as a script uses them: a server backup of
/// PostgreSQL 13 listed by `ls`, its plan for a PostgreSQL 17 server (nothing written), then one
/// database and the role that owns it put there. Needs the version matrix (make test starts it).
#[test]
fn a_server_backup_is_listed_planned_and_restored_onto_a_newer_server() {
    let Ok(matrix) = std::env::var("SAFEHOLD_TEST_PG_VERSIONS") else {
        eprintln!("skipped: no version matrix (SAFEHOLD_TEST_PG_VERSIONS)");
        return;
    };
    let server = |v: &str| matrix.split_whitespace().find_map(|p| p.strip_prefix(&format!("{v}="))).map(str::to_string);
    let (Some(old), Some(new)) = (server("13"), server("17")) else {
        eprintln!("skipped: the matrix has no PostgreSQL 13 and 17");
        return;
    };
    let tag = format!("clisrv{}", std::process::id());
    let db = format!("{tag}_shop");
    let role = format!("{tag}_owner");
    let cleanup = |base: &str| {
        let _ = Command::new("psql").args(["-X", "-q", "-d", &format!("{base}/postgres"), "-c", &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")]).output();
        let _ = Command::new("psql").args(["-X", "-q", "-d", &format!("{base}/postgres"), "-c", &format!("DROP ROLE IF EXISTS {role}")]).output();
    };
    cleanup(&old);
    cleanup(&new);
    psql(&format!("{old}/postgres"), &format!("CREATE ROLE {role} LOGIN"));
    psql(&format!("{old}/postgres"), &format!("CREATE DATABASE {db} OWNER {role}"));
    psql(&format!("{old}/{db}"), "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 50) g;");

    let home = tempfile::tempdir().expect("tmp");
    let repo = home.path().join("repo");
    let repo_s = repo.to_str().expect("utf8");
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_safehold")).args(args).env("SAFEHOLD_HOME", home.path()).env("SAFEHOLD_PASSWORD", "cli-test").output().expect("run");
    let src = format!("{old}/");
    let out = stdout_json(&run(&["--json", "backup", "--source", &src, "--all-databases", "--exclude-database", "safehold_*", "--to", repo_s]));
    assert!(out["databases"].as_array().expect("databases").iter().any(|d| d["database"] == db.as_str()), "{out}");
    // --exclude-database and --with-passwords only go with --all-databases.
    let wrong = run(&["backup", "--source", &src, "--exclude-database", "x", "--to", repo_s]);
    assert!(!wrong.status.success() && String::from_utf8_lossy(&wrong.stderr).contains("--all-databases"), "{}", String::from_utf8_lossy(&wrong.stderr));
    let listed = stdout_json(&run(&["--json", "ls", repo_s]));
    assert_eq!(listed.as_array().expect("list").iter().filter(|r| r["type"] == "server").count(), 1, "{listed}");
    // The same as a configuration, run from the catalog: the server's databases found at run time.
    assert!(run(&["demo"]).status.success());
    stdout_json(&run(&["connection", "add", "old-server", &format!("{old}/postgres"), "--json"]));
    let refused = run(&["config", "add", "Server", "--connection", "old-server", "--schedule", "0 3 * * *", "--whole-server", "on", "--type", "incremental"]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("full each time"), "{}", String::from_utf8_lossy(&refused.stderr));
    let created = stdout_json(&run(&["config", "add", "Server", "--connection", "old-server", "--schedule", "0 3 * * *", "--whole-server", "on", "--exclude-databases", "safehold_*, srv*, cfg*, template*", "--json"]));
    assert_eq!((created["whole_server"].as_bool(), created["exclude_databases"].as_str()), (Some(true), Some("safehold_*, srv*, cfg*, template*")), "{created}");
    let ran = run(&["config", "run", "Server"]);
    let said = String::from_utf8_lossy(&ran.stdout);
    assert!(ran.status.success() && said.contains("Completed") && said.contains("/servers/") && said.contains(&format!("{db} ")) && said.contains("1 tables, 50 rows"), "{said}{}", String::from_utf8_lossy(&ran.stderr));

    let target = format!("{new}/");
    let restore = ["restore", "--from", repo_s, "--server", "--target", &target, "--database", &db];
    let dry = run(&[&restore[..], &["--dry-run"]].concat());
    let plan = String::from_utf8_lossy(&dry.stderr);
    assert!(dry.status.success(), "{plan}");
    assert!(plan.contains("Server restore plan") && plan.contains(&format!("1 created ({role})")) && plan.contains(&db) && plan.contains("dry run: nothing was changed"), "{plan}");
    assert_eq!(psql(&format!("{new}/postgres"), &format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'")), "0", "a dry run writes nothing");
    let done = run(&restore);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert!(String::from_utf8_lossy(&done.stdout).contains("1 roles created"), "{}", String::from_utf8_lossy(&done.stdout));
    assert_eq!(psql(&format!("{new}/{db}"), "SELECT count(*) || ' ' || pg_get_userbyid((SELECT datdba FROM pg_database WHERE datname = current_database())) FROM items"), format!("50 {role}"));
    // A database of that name with tables now: a second restore is refused by name.
    let again = run(&restore);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains(&format!("{db} (1 tables)")), "{}", String::from_utf8_lossy(&again.stderr));
    cleanup(&old);
    cleanup(&new);
}
