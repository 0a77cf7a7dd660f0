//! Through the real Secret Service (gnome-keyring on a session bus): scripts/test.sh starts one
//! and sets SAFEHOLD_TEST_KEYCHAIN=1. The "no keychain at all" and "locked keyring" cases are in
//! the CLI's tests, each in processes of their own; a restarted daemon is tested here in a D-Bus
//! session of its own.

use std::sync::Arc;

use safehold_core::connections::{self, ConnectionInput};
use safehold_core::secrets::{connection_account, Keychain, SecretStore};
use safehold_core::Ctx;

fn enabled() -> bool {
    let on = std::env::var_os("SAFEHOLD_TEST_KEYCHAIN").is_some();
    if !on {
        eprintln!("SAFEHOLD_TEST_KEYCHAIN is not set (scripts/test.sh runs these with a real Secret Service): skipped");
    }
    on
}

#[test]
fn a_secret_round_trips_through_the_os_keychain() {
    if !enabled() {
        return;
    }
    let kc = Keychain::with_service(format!("safehold-test-{}", uuid::Uuid::new_v4()));
    assert_eq!(kc.get("acct").expect("get before set"), None);
    kc.set("acct", "pä$$wörd with spaces").expect("set");
    assert_eq!(kc.get("acct").expect("get").as_deref(), Some("pä$$wörd with spaces"));
    kc.set("acct", "second").expect("replace");
    assert_eq!(kc.get("acct").expect("get").as_deref(), Some("second"));
    kc.delete("acct").expect("delete");
    assert_eq!(kc.get("acct").expect("get after delete"), None);
    kc.delete("acct").expect("deleting twice is fine");
}

#[tokio::test]
async fn a_connection_password_lives_in_the_keychain_and_never_in_the_catalog() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let service = format!("safehold-test-{}", uuid::Uuid::new_v4());
    let kc: Arc<dyn SecretStore> = Arc::new(Keychain::with_service(service.clone()));
    let ctx = Ctx::open_with(dir.path(), kc.clone()).await.expect("ctx");
    let secret = format!("S3cret-{}", uuid::Uuid::new_v4().simple());
    let input = match std::env::var("SAFEHOLD_TEST_PG_AUTH") {
        Ok(url) => {
            let mut i = ConnectionInput::from_url("auth", &url).expect("url");
            if let Some(real) = i.password.take() {
                // The password-checking server's real password, kept in the keychain this time.
                i.password = Some(real);
            }
            i
        }
        Err(_) => ConnectionInput { password: Some(secret.clone()), ..ConnectionInput::from_url("auth", "postgres://postgres@127.0.0.1:5432/postgres").expect("url") },
    };
    let password = input.password.clone().expect("a password");
    let c = connections::add(&ctx, input).await.expect("add with password");
    assert!(c.has_password);
    assert_eq!(kc.get(&connection_account(&c.id)).expect("get").as_deref(), Some(password.as_str()));

    // The password is nowhere in the catalog's files.
    ctx.pool.close().await;
    for entry in std::fs::read_dir(dir.path()).expect("ls") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let bytes = std::fs::read(&path).expect("read");
            assert!(!bytes.windows(password.len()).any(|w| w == password.as_bytes()), "{} holds the password", path.display());
        }
    }
    let ctx = Ctx::open_with(dir.path(), kc.clone()).await.expect("reopen");
    if std::env::var_os("SAFEHOLD_TEST_PG_AUTH").is_some() {
        connections::test(&ctx, &c.id).await.expect("test uses the keychain's password");
    }
    connections::remove(&ctx, &c.id).await.expect("remove");
    assert_eq!(kc.get(&connection_account(&c.id)).expect("get"), None, "removing the connection removes its secret");
}

/// A keyring daemon that restarts while Safehold runs (the app keeps one connection) does not
/// leave every later call failing: the next call connects again. In a D-Bus session and keyring
/// of its own (this test runs itself again inside `dbus-run-session`), so the other tests'
/// keyring is never stopped.
#[test]
fn a_restarted_keyring_daemon_is_reconnected_by_the_next_call() {
    if !enabled() {
        return;
    }
    if std::env::var_os("SAFEHOLD_KEYCHAIN_OWN_SESSION").is_none() {
        let dir = tempfile::tempdir().expect("tmp");
        for d in ["home", "run"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("dir");
            std::fs::set_permissions(dir.path().join(d), std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("0700");
        }
        let out = std::process::Command::new("dbus-run-session")
            .arg("--")
            .arg(std::env::current_exe().expect("this test binary"))
            .args(["--exact", "keychain::a_restarted_keyring_daemon_is_reconnected_by_the_next_call", "--nocapture", "--test-threads=1"])
            .env("SAFEHOLD_KEYCHAIN_OWN_SESSION", "1")
            .env("HOME", dir.path().join("home"))
            .env("XDG_RUNTIME_DIR", dir.path().join("run"))
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .output()
            .expect("dbus-run-session");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && stdout.contains("reconnected after the restart"), "in a session of its own:\n{stdout}\n{stderr}");
        return;
    }
    let secrets_up = |up: bool| {
        for _ in 0..100 {
            let on = std::process::Command::new("busctl").args(["--user", "status", "org.freedesktop.secrets"]).output().is_ok_and(|o| o.status.success());
            if on == up {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the keyring daemon did not {}", if up { "start" } else { "stop" });
    };
    let start = || {
        let mut d = std::process::Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("gnome-keyring-daemon");
        std::io::Write::write_all(&mut d.stdin.take().expect("stdin"), b"kr-restart").expect("the keyring's password");
        secrets_up(true);
        d
    };
    let mut daemon = start();
    let kc = Keychain::with_service("safehold-restart-test").with_deadline(std::time::Duration::from_secs(5));
    kc.set("acct", "kept").expect("set");
    assert_eq!(kc.get("acct").expect("get").as_deref(), Some("kept"));
    daemon.kill().expect("stop the daemon");
    let _ = daemon.wait();
    secrets_up(false);
    // (Nothing is asked while it is down: a call would have D-Bus start a locked one.)
    let mut daemon = start();
    assert_eq!(kc.get("acct").expect("the next call connects again").as_deref(), Some("kept"));
    kc.delete("acct").expect("delete");
    println!("reconnected after the restart");
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// A keychain call that waits (a locked keyring whose prompt nobody answers; here a session bus
/// that accepts the connection and never replies) is listed with what it is for, and Cancel ends
/// it at once with a cancellation — the app shows the first and offers the second. Runs itself
/// again in a process of its own: the bus address is the process's.
#[test]
fn a_waiting_keychain_call_is_listed_and_cancel_ends_it_at_once() {
    use safehold_core::secrets;
    if std::env::var_os("SAFEHOLD_KEYCHAIN_SILENT_BUS").is_none() {
        let dir = tempfile::tempdir().expect("tmp");
        let bus = dir.path().join("silent-bus");
        let _listener = std::os::unix::net::UnixListener::bind(&bus).expect("a bus that never answers");
        let out = std::process::Command::new(std::env::current_exe().expect("this test binary"))
            .args(["--exact", "keychain::a_waiting_keychain_call_is_listed_and_cancel_ends_it_at_once", "--nocapture", "--test-threads=1"])
            .env("SAFEHOLD_KEYCHAIN_SILENT_BUS", "1")
            .env("DBUS_SESSION_BUS_ADDRESS", format!("unix:path={}", bus.display()))
            .env_remove("SAFEHOLD_KEYCHAIN_TIMEOUT")
            .output()
            .expect("the test in a process of its own");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && stdout.contains("cancelled while waiting"), "in a process of its own:\n{stdout}\n{stderr}");
        return;
    }
    // The app's long deadline: a person may take a while to type the keyring's password.
    secrets::set_default_deadline(std::time::Duration::from_secs(120));
    assert!(secrets::waiting().is_empty());
    let kc = Keychain::with_service("safehold-wait-test");
    let call = std::thread::spawn(move || (std::time::Instant::now(), kc.get("acct")));
    let mut listed = Vec::new();
    for _ in 0..100 {
        listed = secrets::waiting();
        if !listed.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(listed.len(), 1, "the waiting call is listed");
    assert_eq!(listed[0].what, "read a secret");
    assert_eq!(listed[0].deadline_seconds, 120.0);
    assert!(chrono::DateTime::parse_from_rfc3339(&listed[0].since).is_ok(), "{}", listed[0].since);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(secrets::waiting()[0].waited_seconds >= 0.3, "the time waited grows");
    let cancelled_at = std::time::Instant::now();
    assert_eq!(secrets::cancel_waits(), 1);
    let (started, result) = call.join().expect("the call returns");
    let err = result.expect_err("a cancelled wait is an error");
    assert_eq!(err.code, safehold_core::ErrorCode::Cancelled);
    assert!(cancelled_at.elapsed() < std::time::Duration::from_secs(2), "ended at once, not at the deadline ({:?} after it began)", started.elapsed());
    assert!(secrets::waiting().is_empty(), "no longer listed");
    println!("{}", err.message);
}
