//! The context every engine call takes: where Safehold keeps its files, the catalog, the secret
//! store and the operator acting. One `Ctx` serves the desktop shell, the CLI and the tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::SqlitePool;

mod job;
mod session;

use crate::catalog;
pub use job::{Counts, Job, JobRecord};
pub use session::{current, load, require, set_up, touch, Acting, Permission, Role, Session};
pub(crate) use session::end_session;
pub use crate::jobs::{JobEvent, ProgressRecorder};
use crate::error::{Error, Result};
use crate::secrets::{Keychain, SecretStore};

/// Environment variable that overrides where Safehold keeps its catalog and files.
pub use crate::private::HOME_ENV;

#[derive(Clone)]
pub struct Ctx {
    pub home: PathBuf,
    pub pool: SqlitePool,
    pub secrets: Arc<dyn SecretStore>,
    /// Who is acting: the signed-in operator (shared by the clones of this context), checked by
    /// every engine call that needs a permission ([`crate::auth::operators`]).
    pub session: Arc<std::sync::Mutex<Session>>,
    /// Where jobs push their progress as it happens (the app forwards it to the window as events).
    pub events: Option<Arc<dyn Fn(JobEvent) + Send + Sync>>,
    /// For a detached context (the scheduler's): the session it came from, whose signed-in super
    /// admin's key background backups may use to read the parent of an incremental backup.
    pub keys_of: Option<Arc<std::sync::Mutex<Session>>>,
}

impl Ctx {
    /// Pushes a job event to whoever listens.
    pub fn emit(&self, event: JobEvent) {
        if let Some(f) = &self.events {
            f(event);
        }
    }
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("home", &self.home).field("operator_id", &self.operator_id()).finish()
    }
}

pub use crate::private::default_home;


impl Ctx {
    /// Opens the catalog under `home` (creating and migrating it) with the OS keychain.
    pub async fn open(home: &Path) -> Result<Self> {
        Self::open_with(home, Arc::new(Keychain::default())).await
    }

    /// Opens the catalog under `home` with the given secret store.
    pub async fn open_with(home: &Path, secrets: Arc<dyn SecretStore>) -> Result<Self> {
        // The catalog holds password hashes, wrapped keys and the audit log: the home and
        // everything in it are the owner's alone (made so here too if an older version did not).
        crate::private::create_dir_all(home).map_err(|e| Error::io(format!("cannot create the Safehold home {}", home.display()), &e))?;
        crate::private::restrict(home).map_err(|e| Error::io(format!("cannot restrict the Safehold home {}", home.display()), &e))?;
        let pool = catalog::open(&home.join(catalog::CATALOG_FILE)).await?;
        // Until the first super admin is created, the workstation's local administrator acts;
        // afterwards nobody does until an operator signs in.
        let session = Session::initial(&pool).await?;
        Ok(Self { home: home.to_path_buf(), pool, secrets, session: Arc::new(std::sync::Mutex::new(session)), events: None, keys_of: None })
    }

    /// The operator acting (recorded as `created_by`, `initiated_by`, in the audit log); the
    /// local administrator when nobody is signed in.
    pub fn operator_id(&self) -> String {
        self.session.lock().ok().and_then(|s| s.acting.as_ref().map(|a| a.id.clone())).unwrap_or_else(|| catalog::LOCAL_OPERATOR_ID.to_string())
    }

    /// A context sharing this one's catalog and secrets with a session of its own (the
    /// scheduler's, acting as each configuration's owner).
    pub fn detached(&self, session: Session) -> Self {
        Self { session: Arc::new(std::sync::Mutex::new(session)), keys_of: Some(self.keys_of.clone().unwrap_or_else(|| self.session.clone())), ..self.clone() }
    }
}
