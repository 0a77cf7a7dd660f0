//! Secrets: connection passwords (and later storage keys and repository secrets) live in the OS
//! keychain — the Secret Service on Linux — and never in the catalog, a log or an error message.
//!
//! A keychain call never hangs a job: each has a deadline (a locked keyring whose unlock prompt
//! nobody answers, a Secret Service that stopped answering), past which it fails saying what to
//! do. The connection to the Secret Service is made when first needed and made again after it
//! broke (the keyring daemon restarted, or a call ran past its deadline), so the next call works
//! without restarting the app.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyring_core::Error as KeyringError;

use crate::error::{Error, ErrorCode, Result};

/// The keychain service name under which Safehold keeps its secrets.
pub const SERVICE: &str = "safehold";

/// Environment variable: how many seconds a keychain call may take (default 10).
pub const TIMEOUT_ENV: &str = "SAFEHOLD_KEYCHAIN_TIMEOUT";

/// What to do without a keychain, said in every keychain error.
const WITHOUT: &str = "on a server, give secrets without it: PGPASSWORD or the URL for databases, --password-file or SAFEHOLD_PASSWORD for repositories";

/// Where secrets are kept. The app and the CLI use [`Keychain`]; headless hosts pass secrets in
/// through URLs, files or environment variables instead and need no store.
pub trait SecretStore: Send + Sync {
    fn set(&self, account: &str, secret: &str) -> Result<()>;
    /// `Ok(None)` when no secret is stored under `account`.
    fn get(&self, account: &str) -> Result<Option<String>>;
    /// Deleting a secret that does not exist is not an error.
    fn delete(&self, account: &str) -> Result<()>;
}

/// The OS keychain (the Secret Service over D-Bus on Linux), each call with a deadline.
#[derive(Debug, Clone)]
pub struct Keychain {
    service: String,
    deadline: Duration,
}

impl Default for Keychain {
    fn default() -> Self {
        Self::with_service(SERVICE)
    }
}

/// Whether this process holds a working connection to the Secret Service (`false`: make one
/// before the next call). No lock is held while connecting: a connection attempt stuck past its
/// deadline must not stop the next call.
static CONNECTED: AtomicBool = AtomicBool::new(false);

/// Connects to the platform's keychain (again, with `fresh`): a new connection replaces a broken one.
fn connect(fresh: bool) -> std::result::Result<(), KeyringError> {
    if CONNECTED.load(Ordering::SeqCst) && !fresh {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    keyring_core::set_default_store(zbus_secret_service_keyring_store::Store::new()?);
    #[cfg(not(target_os = "linux"))]
    {
        if keyring::Entry::store_status().is_err() {
            return Err(KeyringError::NoDefaultStore);
        }
    }
    CONNECTED.store(true, Ordering::SeqCst);
    Ok(())
}

/// Forgets the connection: the next call makes a new one.
fn disconnect() {
    CONNECTED.store(false, Ordering::SeqCst);
}

/// A keychain call that has not answered yet, as the app shows it ("waiting for the keychain to
/// be unlocked", with a Cancel).
#[derive(Debug, Clone, serde::Serialize, ts_rs::TS)]
pub struct KeychainWait {
    /// What the call is for ("read a secret").
    pub what: String,
    /// When it started (RFC 3339).
    pub since: String,
    /// How long it has waited so far, and how long it may wait in all.
    pub waited_seconds: f64,
    pub deadline_seconds: f64,
}

struct Waiting {
    id: u64,
    what: &'static str,
    since: chrono::DateTime<chrono::Utc>,
    started: Instant,
    deadline: Duration,
}

/// The calls waiting now, and a count that [`cancel_waits`] raises: a call that sees it change
/// stops waiting.
static WAITS: Mutex<Vec<Waiting>> = Mutex::new(Vec::new());
static NEXT_WAIT: AtomicU64 = AtomicU64::new(1);
static CANCELLED: AtomicU64 = AtomicU64::new(0);

/// The deadline of calls made by a keychain built without one: 10 s unless the process set
/// another ([`set_default_deadline`]) or `SAFEHOLD_KEYCHAIN_TIMEOUT` says.
static DEFAULT_DEADLINE_MS: AtomicU64 = AtomicU64::new(10_000);

/// The process's default deadline per keychain call. The app, which shows a call that waits
/// (with a Cancel), gives a person time to answer an unlock prompt; the CLI keeps 10 s.
/// `SAFEHOLD_KEYCHAIN_TIMEOUT` still wins.
pub fn set_default_deadline(d: Duration) {
    DEFAULT_DEADLINE_MS.store(d.as_millis().try_into().unwrap_or(u64::MAX), Ordering::SeqCst);
}

/// The keychain calls that are waiting for an answer now, the oldest first.
pub fn waiting() -> Vec<KeychainWait> {
    let list = WAITS.lock().unwrap_or_else(|p| p.into_inner());
    list.iter()
        .map(|w| KeychainWait { what: w.what.to_string(), since: w.since.to_rfc3339(), waited_seconds: w.started.elapsed().as_secs_f64(), deadline_seconds: w.deadline.as_secs_f64() })
        .collect()
}

/// Stops every keychain call that is waiting now: each fails at once, saying it was cancelled
/// (the job that asked fails with it, and nothing is written). Returns how many were waiting.
pub fn cancel_waits() -> usize {
    let n = WAITS.lock().unwrap_or_else(|p| p.into_inner()).len();
    CANCELLED.fetch_add(1, Ordering::SeqCst);
    n
}

/// A call's entry in [`WAITS`], removed when the call ends however it ends.
struct WaitEntry(u64);

impl WaitEntry {
    fn new(what: &'static str, deadline: Duration) -> Self {
        let id = NEXT_WAIT.fetch_add(1, Ordering::SeqCst);
        WAITS.lock().unwrap_or_else(|p| p.into_inner()).push(Waiting { id, what, since: chrono::Utc::now(), started: Instant::now(), deadline });
        Self(id)
    }
}

impl Drop for WaitEntry {
    fn drop(&mut self) {
        WAITS.lock().unwrap_or_else(|p| p.into_inner()).retain(|w| w.id != self.0);
    }
}

impl Keychain {
    /// A keychain under another service name (tests use their own to stay apart from real data).
    pub fn with_service(service: impl Into<String>) -> Self {
        let default = DEFAULT_DEADLINE_MS.load(Ordering::SeqCst) as f64 / 1000.0;
        let seconds = std::env::var(TIMEOUT_ENV).ok().and_then(|s| s.trim().parse::<f64>().ok()).filter(|s| *s > 0.0).unwrap_or(default);
        Self { service: service.into(), deadline: Duration::from_secs_f64(seconds) }
    }

    /// The same keychain with another deadline per call.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Runs `op` on the entry for `account` within the deadline. A connection that broke (the
    /// keyring daemon restarted) is made again and the call tried once more.
    fn call<T, F>(&self, what: &'static str, account: &str, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&keyring_core::Entry) -> std::result::Result<T, KeyringError> + Send + Sync + 'static,
    {
        let op = Arc::new(op);
        let mut tried_again = false;
        loop {
            let op = Arc::clone(&op);
            let (service, account_owned) = (self.service.clone(), account.to_string());
            let fresh = tried_again;
            let (tx, rx) = std::sync::mpsc::channel();
            // A thread of its own: a call stuck in D-Bus (an unlock prompt nobody answers) is
            // left behind, not waited for.
            std::thread::Builder::new()
                .name("keychain".into())
                .spawn(move || {
                    let out = connect(fresh).and_then(|()| keyring_core::Entry::new(&service, &account_owned)).and_then(|e| op.as_ref()(&e));
                    let _ = tx.send(out);
                })
                .map_err(|e| Error::new(ErrorCode::Internal, format!("cannot start the keychain call: {e}")).caused_by(&e))?;
            match self.wait(what, &rx) {
                Answer::Cancelled => {
                    // The call left behind may still hold the connection: the next one makes a new one.
                    disconnect();
                    return Err(Error::new(ErrorCode::Cancelled, format!("cancelled while waiting for the OS keychain (to {what}); nothing was changed")));
                }
                Answer::Got(out) => match out {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if !tried_again && broken(&e) => {
                    disconnect();
                    tried_again = true;
                }
                Ok(Err(e)) => {
                    if broken(&e) {
                        disconnect();
                    }
                    return Err(keychain_error(e));
                }
                Err(_) => {
                    // The stuck call holds the old connection: the next call makes a new one.
                    disconnect();
                    return Err(Error::new(
                        ErrorCode::Keychain,
                        format!(
                            "the OS keychain did not answer within {} s (to {what}): it is most likely locked and waiting for its password — unlock the \"Login\" keyring (its prompt may be behind another window) and try again, or start a Secret Service (e.g. gnome-keyring); {WITHOUT}",
                            self.deadline.as_secs_f64().round()
                        ),
                    ));
                }
                },
            }
        }
    }

    /// Waits for a call's answer until the deadline, listed in [`waiting`] meanwhile; a
    /// [`cancel_waits`] ends the wait at once.
    fn wait<T>(&self, what: &'static str, rx: &std::sync::mpsc::Receiver<T>) -> Answer<std::result::Result<T, std::sync::mpsc::RecvTimeoutError>> {
        let cancelled_before = CANCELLED.load(Ordering::SeqCst);
        let _listed = WaitEntry::new(what, self.deadline);
        let end = Instant::now() + self.deadline;
        loop {
            let now = Instant::now();
            if now >= end {
                return Answer::Got(Err(std::sync::mpsc::RecvTimeoutError::Timeout));
            }
            match rx.recv_timeout((end - now).min(Duration::from_millis(100))) {
                Ok(v) => return Answer::Got(Ok(v)),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(e) => return Answer::Got(Err(e)),
            }
            if CANCELLED.load(Ordering::SeqCst) != cancelled_before {
                return Answer::Cancelled;
            }
        }
    }
}

enum Answer<T> {
    Got(T),
    Cancelled,
}

/// Whether `e` says the connection to the Secret Service is gone (the daemon restarted or
/// stopped), rather than something about the secret.
fn broken(e: &KeyringError) -> bool {
    match e {
        KeyringError::NoDefaultStore => true,
        KeyringError::PlatformFailure(inner) => {
            let text = format!("{inner} {inner:?}").to_lowercase();
            ["nosession", "no session", "serviceunknown", "service unknown", "disconnected", "broken pipe", "connection reset", "unknownobject", "unknown object", "noreply", "no reply"].iter().any(|w| text.contains(w))
        }
        _ => false,
    }
}

/// Turns a keyring error into one that says what to do. Never includes the secret.
fn keychain_error(err: KeyringError) -> Error {
    let message = match &err {
        KeyringError::NoDefaultStore => format!("no OS keychain is available: the Secret Service did not answer on the session bus. Start and unlock a keyring (e.g. gnome-keyring), or {WITHOUT}"),
        KeyringError::NoStorageAccess(e) => format!("the OS keychain refused access ({e}): it is locked — unlock the \"Login\" keyring and try again; {WITHOUT}"),
        KeyringError::PlatformFailure(e) => format!("the OS keychain failed ({e}); check that a Secret Service (e.g. gnome-keyring) is running and unlocked; {WITHOUT}"),
        other => format!("the OS keychain failed: {other}"),
    };
    Error::new(ErrorCode::Keychain, message).caused_by(&err)
}

impl SecretStore for Keychain {
    fn set(&self, account: &str, secret: &str) -> Result<()> {
        let secret = secret.to_string();
        self.call("store a secret", account, move |e| e.set_password(&secret))
    }

    fn get(&self, account: &str) -> Result<Option<String>> {
        self.call("read a secret", account, |e| match e.get_password() {
            Ok(s) => Ok(Some(s)),
            Err(KeyringError::NoEntry) => Ok(None),
            Err(e) => Err(e),
        })
    }

    fn delete(&self, account: &str) -> Result<()> {
        self.call("delete a secret", account, |e| match e.delete_credential() {
            Ok(()) | Err(KeyringError::NoEntry) => Ok(()),
            Err(e) => Err(e),
        })
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
