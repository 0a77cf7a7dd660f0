//! One lifecycle for every recorded job — backups, restores, migrations: the record marked
//! running under this process's lease, progress written to the record in order and pushed as the
//! job's events, then the end — the outcome on the record, audited in the name of whoever asked
//! for the job (not the runner that carried it out), and the job's last event.
//!
//! The record itself is its record module's: each job table has one writer (kept by
//! `tests/engine/shape.rs`), which implements [`JobRecord`]; this module only calls it, in order.

use std::future::Future;
use std::marker::PhantomData;

use super::Ctx;
use crate::catalog::audit;
use crate::error::{ErrorCode, Result};
use crate::jobs::{JobEvent, JobKind, JobStatus, Progress, ProgressRecorder, ProgressSink};

/// A job's catalog record, written by its record module.
pub trait JobRecord: Send + Sync + 'static {
    /// What the job's events say it is.
    const KIND: JobKind;
    /// The audit log's action for a run of it (`backup.run`).
    const ACTION: &'static str;
    /// The record marked running, under this process's lease.
    fn running(ctx: &Ctx, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// Where the job is, on its record (best effort: a report that cannot be written is dropped).
    fn progress(ctx: &Ctx, id: &str, p: &Progress) -> impl Future<Output = ()> + Send;
    /// The job ended without its result (`status`: failed or cancelled), and why.
    fn ended(ctx: &Ctx, id: &str, status: JobStatus, message: &str) -> impl Future<Output = Result<()>> + Send;
}

/// What a finished job's last event counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub tables: u64,
    pub rows: u64,
}

/// A job between its start and its end.
pub struct Job<R: JobRecord> {
    ctx: Ctx,
    id: String,
    /// Who asked for the job (the audit's operator).
    by: String,
    /// What the job acts on (the audit's target).
    target: String,
    recorder: ProgressRecorder,
    record: PhantomData<R>,
}

impl<R: JobRecord> Job<R> {
    /// Starts the job recorded as `id`: marked running; its progress written to the record in
    /// order and pushed as its events (and to `also`, a terminal's bar).
    pub async fn start(ctx: &Ctx, id: &str, by: String, target: String, also: Option<ProgressSink>) -> Result<Self> {
        R::running(ctx, id).await?;
        let recorder = {
            let (events, job) = (ctx.clone(), id.to_string());
            let pushed: ProgressSink = std::sync::Arc::new(move |p: Progress| {
                events.emit(JobEvent::progress(R::KIND, &job, &p));
                if let Some(also) = &also {
                    also(p);
                }
            });
            let (ctx, id) = (ctx.clone(), id.to_string());
            ProgressRecorder::new(Some(pushed), move |p| {
                let (ctx, id) = (ctx.clone(), id.clone());
                async move { R::progress(&ctx, &id, &p).await }
            })
        };
        Ok(Self { ctx: ctx.clone(), id: id.to_string(), by, target, recorder, record: PhantomData })
    }

    /// Where the job's work reports its progress.
    pub fn progress(&self) -> ProgressSink {
        self.recorder.sink.clone()
    }

    /// Ends the job with its work's `result`. Every progress report is written first, so none
    /// lands after the outcome; then `completed` records a success (and returns the audit's
    /// detail) or [`JobRecord::ended`] a failure or cancel; the end is audited and pushed.
    /// Returns the work's result as it was, inside the outcome of recording the end.
    pub async fn end<T>(self, result: Result<T>, completed: impl AsyncFnOnce(&T) -> Result<String>, counts: impl Fn(&T) -> Counts) -> Result<Result<T>> {
        let Self { ctx, id, by, target, recorder, .. } = self;
        recorder.finish().await;
        let (status, last) = match &result {
            Ok(out) => {
                let detail = completed(out).await?;
                audit(&ctx.pool, &by, R::ACTION, &target, "success", Some(&detail)).await?;
                (JobStatus::Completed, counts(out))
            }
            Err(e) => {
                let status = if e.code == ErrorCode::Cancelled { JobStatus::Cancelled } else { JobStatus::Failed };
                R::ended(&ctx, &id, status, &e.message).await?;
                audit(&ctx.pool, &by, R::ACTION, &target, "failure", Some(&e.message)).await?;
                (status, Counts::default())
            }
        };
        ctx.emit(JobEvent { kind: R::KIND, id, status: Some(status), table: None, tables_done: last.tables, tables_total: last.tables, rows: last.rows });
        Ok(result)
    }
}
