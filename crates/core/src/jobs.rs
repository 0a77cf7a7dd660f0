//! What every long piece of work shares — backups, restores, verifications, migrations: a
//! cancel token checked between chunks and tables, and progress pushed to whoever shows it.
//! (The job records and their lifecycle are each operation's; see docs/architecture.md.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, ErrorCode, Result};

/// Cancels long work; checked between chunks and tables.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::new(ErrorCode::Cancelled, "cancelled; nothing was kept"))
        } else {
            Ok(())
        }
    }
}

/// Progress of long work, pushed to whoever shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub phase: String,
    pub table: Option<String>,
    pub tables_done: u64,
    pub tables_total: u64,
    pub rows: u64,
    pub bytes: u64,
}

pub type ProgressSink = Arc<dyn Fn(Progress) + Send + Sync>;

pub fn no_progress() -> ProgressSink {
    Arc::new(|_| {})
}

