//! Secrets: connection passwords (and later storage keys and repository secrets) live in the OS
//! keychain — the Secret Service on Linux — and never in the catalog, a log or an error message.

use std::sync::Arc;

use crate::error::{Error, ErrorCode, Result};

/// The keychain service name under which Safehold keeps its secrets.
pub const SERVICE: &str = "safehold";

/// Where secrets are kept. The app and the CLI use [`Keychain`]; headless hosts pass secrets in
/// through URLs, files or environment variables instead and need no store.
pub trait SecretStore: Send + Sync {
    fn set(&self, account: &str, secret: &str) -> Result<()>;
    /// `Ok(None)` when no secret is stored under `account`.
    fn get(&self, account: &str) -> Result<Option<String>>;
    /// Deleting a secret that does not exist is not an error.
    fn delete(&self, account: &str) -> Result<()>;
}

/// The OS keychain through the `keyring` crate (Secret Service over D-Bus on Linux).
#[derive(Debug, Clone)]
pub struct Keychain {
    service: String,
}

impl Default for Keychain {
    fn default() -> Self {
        Self { service: SERVICE.into() }
    }
}

impl Keychain {
    /// A keychain under another service name (tests use their own to stay apart from real data).
    pub fn with_service(service: impl Into<String>) -> Self {
        Self { service: service.into() }
    }

    fn entry(&self, account: &str) -> Result<keyring::Entry> {
        keyring::Entry::new(&self.service, account).map_err(keychain_error)
    }
}

/// Turns a keyring error into one that says what to do. Never includes the secret.
fn keychain_error(err: keyring::Error) -> Error {
    let message = match &err {
        keyring::Error::NoDefaultStore => "no OS keychain is available: the Secret Service did not answer on the \
            session bus. Start and unlock a keyring (e.g. gnome-keyring), or on a headless server give secrets \
            without it: PGPASSWORD or the URL for databases, --password-file or SAFEHOLD_PASSWORD for repositories"
            .to_string(),
        keyring::Error::NoStorageAccess(e) => format!(
            "the OS keychain refused access ({e}); unlock your keyring and try again"
        ),
        keyring::Error::PlatformFailure(e) => format!(
            "the OS keychain failed ({e}); check that a Secret Service (e.g. gnome-keyring) is running and unlocked"
        ),
        other => format!("the OS keychain failed: {other}"),
    };
    Error::new(ErrorCode::Keychain, message)
}

impl SecretStore for Keychain {
    fn set(&self, account: &str, secret: &str) -> Result<()> {
        self.entry(account)?.set_password(secret).map_err(keychain_error)
    }

    fn get(&self, account: &str) -> Result<Option<String>> {
        match self.entry(account)?.get_password() {
            Ok(s) => Ok(Some(s)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(keychain_error(e)),
        }
    }

    fn delete(&self, account: &str) -> Result<()> {
        match self.entry(account)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(keychain_error(e)),
        }
    }
}

/// Runs a keychain call off the async runtime (the Secret Service client blocks).
pub async fn run<T, F>(store: &Arc<dyn SecretStore>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&dyn SecretStore) -> Result<T> + Send + 'static,
{
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| Error::new(ErrorCode::Internal, format!("the keychain task failed: {e}")).caused_by(&e))?
}

/// The keychain account that holds a connection's password.
pub fn connection_account(connection_id: &str) -> String {
    format!("connection:{connection_id}")
}
