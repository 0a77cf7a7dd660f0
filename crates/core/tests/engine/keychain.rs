//! Through the real Secret Service (gnome-keyring on a session bus): scripts/test.sh starts one
//! and sets SAFEHOLD_TEST_KEYCHAIN=1. The "no keychain at all" case is in the CLI's tests, in a
//! process of its own (the keyring crate picks its store once per process).

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
