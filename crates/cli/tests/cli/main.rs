//! The `safehold` binary as scripts use it: exit codes, `--json`, and clear errors on stderr.

use std::path::Path;
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
    assert!(out.status.success(), "safehold failed: {}", String::from_utf8_lossy(&out.stderr));
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
}
