//! What every long piece of work shares — backups, restores, verifications, migrations: a
//! cancel token checked between chunks and tables, progress pushed to whoever shows it, a job's
//! status and kind, the event the app hears, and the recorder that writes progress to a job's
//! row in order. (Each job's catalog row is its record module's; see docs/architecture.md.)

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

/// Where a job is: pending, running, or how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, ts_rs::TS, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    /// As the catalog writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }
}

/// The kinds of jobs whose progress and end are pushed to the app (the UI maps each to the lists
/// it refreshes, and its type check fails on a kind it does not map).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Backup,
    Restore,
    Migration,
}

/// A job's progress or end, pushed as it happens.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct JobEvent {
    pub kind: JobKind,
    pub id: String,
    /// Set when the job ended: completed, failed or cancelled.
    pub status: Option<JobStatus>,
    pub table: Option<String>,
    pub tables_done: u64,
    pub tables_total: u64,
    pub rows: u64,
}

impl JobEvent {
    /// A job's progress.
    pub fn progress(kind: JobKind, id: &str, p: &Progress) -> Self {
        Self { kind, id: id.to_string(), status: None, table: p.table.clone(), tables_done: p.tables_done, tables_total: p.tables_total, rows: p.rows }
    }
}

/// A job's progress sink whose reports go, in order and off the job's task, to `record` (the
/// job's catalog row), after `also` (events to the UI, a terminal) has seen each of them.
pub struct ProgressRecorder {
    pub sink: ProgressSink,
    writer: tokio::task::JoinHandle<()>,
}

impl ProgressRecorder {
    pub fn new<F, Fut>(also: Option<ProgressSink>, record: F) -> Self
    where
        F: Fn(Progress) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Progress>();
        let sink: ProgressSink = Arc::new(move |p| {
            if let Some(also) = &also {
                also(p.clone());
            }
            let _ = tx.send(p);
        });
        let writer = tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                record(p).await;
            }
        });
        Self { sink, writer }
    }

    /// Waits until every report is recorded.
    pub async fn finish(self) {
        drop(self.sink);
        let _ = self.writer.await;
    }
}
