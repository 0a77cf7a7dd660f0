//! The parallel restore of PostgreSQL into a database the restore created.
//!
//! Everything after the schema is one plan of steps — load a table, build an index, add a
//! constraint or a foreign key — run by `jobs` workers, each on its own connection. A step starts
//! as soon as the steps it needs are done and the tables it locks are free: a table's index builds
//! start the moment its rows are in and share the table with each other, while other tables are
//! still loading; a foreign key is added as soon as both of its tables are complete. When a step
//! is the only work left to start, an index build it runs uses the idle cores too. A complete
//! table is analyzed (`ANALYZE`) as a step of its own, beside the others' work. A big table is
//! loaded by every worker that has nothing else to do: its rows are read once, in order (and
//! checked), and shared out a chunk of whole lines at a time to one COPY per worker.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

use super::postgres::{archived_schema, connect, create_objects, drop_database, q, qi, restore_error, PgTable, Stmt};
use super::{CancelToken, Progress, ProgressSink};
use crate::archive::{ArchiveIndex, ArchiveReader};
use crate::error::{Error, ErrorCode, Result};

type Chain = [(Arc<ArchiveReader>, ArchiveIndex)];

/// Tables with at least this much data (bytes of COPY text) are loaded by several workers
/// together, unless `SAFEHOLD_RESTORE_SPLIT_BYTES` or `with_split_bytes` says otherwise.
const SPLIT_BYTES: u64 = 64 << 20;

tokio::task_local! {
    static SPLIT_HERE: u64;
}

/// Runs `restore` with tables of `bytes` or more loaded by several workers together (tests use
/// it to split small tables). Only the restore awaited inside sees it: other restores of the
/// process keep the default.
pub async fn with_split_bytes<F: std::future::Future>(bytes: u64, restore: F) -> F::Output {
    SPLIT_HERE.scope(bytes, restore).await
}

fn split_bytes() -> u64 {
    super::threshold(&SPLIT_HERE, "SAFEHOLD_RESTORE_SPLIT_BYTES", SPLIT_BYTES).max(1)
}

/// Restores into a database this restore created, with `jobs` connections in parallel: tables are
/// loaded and indexes and constraints built concurrently. Not one transaction — so any failure
/// drops the new database, which is all-or-nothing at the level of the database.
pub async fn restore_parallel(chain: &Chain, url: &str, jobs: usize, cancel: &CancelToken, progress: &ProgressSink) -> Result<u64> {
    let result = restore_parallel_inner(chain, url, jobs.max(1), cancel, progress).await;
    if let Err(e) = result {
        let undo = drop_database(url).await;
        let mut e = e;
        e.message = match undo {
            Ok(()) => format!("{}; the new database was removed", e.message.trim_end_matches("; the target was left as it was")),
            Err(u) => format!("{}; removing the new database failed too: {}", e.message, u.message),
        };
        return Err(e);
    }
    result
}

async fn restore_parallel_inner(chain: &Chain, url: &str, jobs: usize, cancel: &CancelToken, progress: &ProgressSink) -> Result<u64> {
    let (reader, index) = chain.last().ok_or_else(|| Error::new(ErrorCode::Internal, "an empty restore chain"))?;
    let schema = archived_schema(reader, index)?;
    let version: i32 = {
        let mut conn = connect(url).await?;
        let mut tx = conn.begin().await.map_err(q("start the restore"))?;
        create_objects(&mut tx, &schema, cancel).await?;
        tx.commit().await.map_err(q("commit the schema"))?;
        super::postgres::server_version_num(&mut conn).await?
    };
    // Tables the chain carries no rows of: created empty, nothing to load.
    let empty = super::postgres::restored_empty(chain, &schema);
    // Not analyzed: tables whose statistics are imported at the end (PostgreSQL 18+), and empty
    // tables the source had never analyzed either (they stay as the source had them).
    let not_analyzed: HashSet<String> = schema
        .tables
        .iter()
        .filter(|t| super::postgres::imports_statistics(version, &schema, (&t.schema, &t.name)))
        .chain(super::postgres::left_unanalyzed(&schema, &empty))
        .map(PgTable::section)
        .collect();
    let mut tables: Vec<PgTable> = schema.tables.clone();
    let size = |t: &PgTable| index.section(&t.section()).map(|e| e.plain_bytes).unwrap_or(0);
    tables.sort_by_key(|t| std::cmp::Reverse(size(t)));
    // Tables loaded by several workers at once: big ones whose whole rows are in the last backup
    // of the chain, or that the chain's links give by their rows' positions (one stream of rows
    // too); a table whose deltas go by key list is loaded and patched in one transaction.
    let split_bytes = split_bytes();
    let chain_bytes = |s: &str| chain.iter().filter_map(|(_, ix)| ix.section(s)).map(|e| e.plain_bytes).sum::<u64>();
    let split: HashSet<String> = if jobs > 1 {
        tables
            .iter()
            .map(PgTable::section)
            .filter(|s| index.section(s).is_some_and(|e| e.mode.is_none() && e.plain_bytes >= split_bytes) || (super::postgres::merges_by_position(chain, s) && chain_bytes(s) >= split_bytes))
            .collect()
    } else {
        HashSet::new()
    };
    let (plan, rest) = Plan::new(tables, schema.post.clone(), &not_analyzed);
    let total_tables = schema.tables.len() as u64;
    let shared = Arc::new(Shared {
        plan: Mutex::new(plan),
        wake: tokio::sync::Notify::new(),
        rows: AtomicU64::new(0),
        done: AtomicU64::new(0),
        started: std::time::Instant::now(),
        split,
        empty,
        loading: Mutex::new(Vec::new()),
    });
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..jobs {
        let (shared, chain, url, cancel, progress) = (shared.clone(), chain.to_vec(), url.to_string(), cancel.clone(), progress.clone());
        set.spawn(async move {
            let mut conn = connect(&url).await?;
            prepare(&mut conn).await?;
            let result = work(&mut conn, &shared, &chain, jobs, total_tables, &cancel, &progress).await;
            // Wake the others whatever happened: they finish, or stop on the error below.
            shared.wake.notify_waiters();
            let _ = conn.close().await;
            result
        });
    }
    let mut first_error = None;
    while let Some(r) = set.join_next().await {
        let r = r.map_err(|e| Error::new(ErrorCode::Internal, format!("a restore worker failed: {e}")).caused_by(&e)).and_then(|r| r);
        if let Err(e) = r {
            set.abort_all();
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    tracing::debug!("restore at {:.2}s: tables loaded, keys, indexes and foreign keys built", shared.started.elapsed().as_secs_f64());

    // Triggers, sequence values, policies, comments, materialized views: in order, at the end.
    let mut conn = connect(url).await?;
    let mut tx = conn.begin().await.map_err(q("start the last step"))?;
    super::postgres::load_large_objects(&mut tx, chain, cancel).await?;
    super::pg_extdata::load(&mut tx, chain, &schema, cancel).await?;
    super::postgres::run_in_order(&mut tx, &rest, cancel).await?;
    // The statistics imported (18+), and what is still to analyze: the partitioned tables (their
    // partitions' were gathered as each was complete), tables whose import the server refused.
    let analyze = super::postgres::gather_statistics(&mut tx, &schema, false).await?;
    if !analyze.is_empty() {
        sqlx::raw_sql(AssertSqlSafe(format!("ANALYZE {}", analyze.join(", ")))).execute(&mut *tx).await.map_err(|e| restore_error("the optimizer's statistics (ANALYZE)", &e))?;
    }
    tx.commit().await.map_err(q("commit the restore"))?;
    Ok(shared.rows.load(SeqCst))
}

struct Shared {
    plan: Mutex<Plan>,
    /// Signalled whenever a step finishes (its tables are free, steps after it may be ready).
    wake: tokio::sync::Notify,
    rows: AtomicU64,
    done: AtomicU64,
    started: std::time::Instant,
    /// Tables loaded by several workers together, and those of them being loaded now.
    split: HashSet<String>,
    /// Tables without rows in the chain: their load is done as soon as it starts.
    empty: HashSet<String>,
    loading: Mutex<Vec<Arc<SharedLoad>>>,
}

/// Prepares a worker's connection for bulk work.
async fn prepare(conn: &mut PgConnection) -> Result<()> {
    // Index builds sort in memory rather than on disk, foreign keys are checked with joins in
    // memory; commits need not wait for the disk (a restore that dies is discarded whole anyway).
    sqlx::raw_sql("SET maintenance_work_mem = '512MB'; SET work_mem = '256MB'; SET synchronous_commit = off; SET max_parallel_maintenance_workers = 0")
        .execute(&mut *conn)
        .await
        .map_err(q("prepare a restore worker"))?;
    // Long values are compressed with lz4 while loading, much faster than pglz (a server built
    // without lz4 keeps its own default). The data and the schema are the same.
    let _ = sqlx::raw_sql("SET default_toast_compression = lz4").execute(&mut *conn).await;
    Ok(())
}

/// One worker: takes the next step that can start, runs it, until the plan is done.
async fn work(conn: &mut PgConnection, shared: &Shared, chain: &Chain, jobs: usize, total_tables: u64, cancel: &CancelToken, progress: &ProgressSink) -> Result<()> {
    let lock = || shared.plan.lock().map_err(|_| Error::new(ErrorCode::Internal, "a restore worker failed"));
    loop {
        cancel.check()?;
        // Registered before looking at the plan, so a step finishing in between still wakes us.
        let woken = shared.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        // What a finished step made possible first; then a hand in a big table's load; then
        // the next table.
        let mut next = lock()?.next(false);
        if matches!(next, Next::Wait | Next::Finished) {
            let load = shared.loading.lock().map_err(|_| Error::new(ErrorCode::Internal, "a restore worker failed"))?.iter().find(|l| l.join()).cloned();
            if let Some(load) = load {
                let t0 = std::time::Instant::now();
                let result = load.take_part(conn, cancel).await;
                load.leave(*result.as_ref().unwrap_or(&0));
                let n = result?;
                tracing::debug!("restore at {:.2}s: helped load {} ({n} rows) in {:.2}s", shared.started.elapsed().as_secs_f64(), load.section, t0.elapsed().as_secs_f64());
                continue;
            }
            next = lock()?.next(true);
        }
        let (id, task, alone) = match next {
            Next::Finished => return Ok(()),
            Next::Wait => {
                woken.await;
                continue;
            }
            Next::Stuck => return Err(Error::new(ErrorCode::Internal, "the restore plan has steps that can never start")),
            Next::Run(id, task, alone) => (id, task, alone),
        };
        let t0 = std::time::Instant::now();
        match &task {
            Task::Load(t) => {
                progress(Progress { phase: "restore".into(), table: Some(t.section()), tables_done: shared.done.load(SeqCst), tables_total: total_tables, rows: shared.rows.load(SeqCst), bytes: 0 });
                let n = if shared.empty.contains(&t.section()) {
                    0
                } else if shared.split.contains(&t.section()) {
                    load_shared(conn, shared, chain, t, cancel).await?
                } else {
                    let mut tx = conn.begin().await.map_err(q("start a table's load"))?;
                    let n = load_frozen(&mut tx, chain, t, cancel).await?;
                    tx.commit().await.map_err(q("commit a table's load"))?;
                    n
                };
                let rows = shared.rows.fetch_add(n, SeqCst) + n;
                let done = shared.done.fetch_add(1, SeqCst) + 1;
                progress(Progress { phase: "restore".into(), table: Some(t.section()), tables_done: done, tables_total: total_tables, rows, bytes: 0 });
            }
            Task::Post(st) => {
                // The only step that can start now: its index build may use the idle cores.
                let widen = alone && jobs > 1 && builds_index(&st.sql);
                if widen {
                    sqlx::raw_sql(AssertSqlSafe(format!("SET max_parallel_maintenance_workers = {}", jobs - 1))).execute(&mut *conn).await.map_err(q("prepare an index build"))?;
                }
                let mut attempt = 0;
                let result = loop {
                    match sqlx::raw_sql(AssertSqlSafe(st.sql.clone())).execute(&mut *conn).await {
                        // Foreign keys lock two tables; a deadlock the server still finds is retried.
                        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("40P01") && attempt < 3 => attempt += 1,
                        other => break other,
                    }
                };
                result.map_err(|e| restore_error(&st.what, &e))?;
                if widen {
                    sqlx::raw_sql("SET max_parallel_maintenance_workers = 0").execute(&mut *conn).await.map_err(q("prepare an index build"))?;
                }
            }
        }
        tracing::debug!("restore at {:.2}s: {} in {:.2}s{}", shared.started.elapsed().as_secs_f64(), task.what(), t0.elapsed().as_secs_f64(), if alone { " (alone)" } else { "" });
        lock()?.finish(id);
        shared.wake.notify_waiters();
    }
}

/// Loads a big table with every worker that joins in: the rows (of the newest backup, or merged
/// from the chain by position) are read once, in order, and each worker COPYs the chunks it
/// takes in its own transaction. Returns the rows, checked against the index (or the chain's
/// positions) once every part is in.
async fn load_shared(conn: &mut PgConnection, shared: &Shared, chain: &Chain, t: &PgTable, cancel: &CancelToken) -> Result<u64> {
    let section = t.section();
    let (reader, index) = chain.last().ok_or_else(|| Error::new(ErrorCode::Internal, "an empty restore chain"))?;
    // The rows: the newest backup's whole copy, or the chain's versions chosen by position.
    let (input, expected) = if super::postgres::merges_by_position(chain, &section) {
        super::postgres::merged_rows(chain, &section).await?
    } else {
        (reader.section_lines(index, &section)?, index.section(&section).map(|e| e.rows).unwrap_or(0))
    };
    let cols: Vec<String> = t.columns.iter().map(|c| qi(c)).collect();
    let load = Arc::new(SharedLoad {
        section: section.clone(),
        target: format!("{}.{} ({}) FROM STDIN", qi(&t.schema), qi(&t.name), cols.join(", ")),
        input: tokio::sync::Mutex::new(input),
        state: Mutex::new(LoadState { open: true, helpers: 0, rows: 0, failed: None }),
        left: tokio::sync::Notify::new(),
    });
    let list = || shared.loading.lock().map_err(|_| Error::new(ErrorCode::Internal, "a restore worker failed"));
    list()?.push(load.clone());
    shared.wake.notify_waiters();
    let own = load.take_part(conn, cancel).await;
    list()?.retain(|l| !Arc::ptr_eq(l, &load));
    let own = own?;
    // Wait for the helpers still sending their last chunks.
    loop {
        let woken = load.left.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let (helpers, rows, failed) = {
            let mut s = load.state.lock().map_err(|_| Error::new(ErrorCode::Internal, "a restore worker failed"))?;
            s.open = false;
            (s.helpers, s.rows, s.failed.clone())
        };
        if helpers == 0 {
            // A helper's failure (a damaged chunk, say) is the reason, not the rows it left out.
            if let Some(e) = failed {
                return Err(e);
            }
            let total = own + rows;
            if total != expected {
                return Err(Error::validation(format!("{section}: the archive says {expected} rows but {total} were loaded")));
            }
            return Ok(total);
        }
        woken.await;
    }
}

/// A big table being loaded by several workers.
struct SharedLoad {
    section: String,
    /// `relation (columns) FROM STDIN`
    target: String,
    /// The section's rows, in chunks of whole lines.
    input: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Result<Vec<u8>>>>,
    state: Mutex<LoadState>,
    /// Signalled when a helper is done.
    left: tokio::sync::Notify,
}

struct LoadState {
    /// Helpers may still join (chunks are left to take).
    open: bool,
    helpers: usize,
    /// Rows the helpers loaded.
    rows: u64,
    /// The first error a part met.
    failed: Option<Error>,
}

impl SharedLoad {
    /// Joins as a helper, unless the load is over.
    fn join(&self) -> bool {
        let Ok(mut s) = self.state.lock() else { return false };
        if s.open {
            s.helpers += 1;
        }
        s.open
    }

    fn leave(&self, rows: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.helpers -= 1;
            s.rows += rows;
        }
        self.left.notify_waiters();
    }

    /// COPYs chunks until there are none left, in a transaction of its own; returns the rows
    /// (a helper's are also counted in the state, for the worker that started the load).
    async fn take_part(&self, conn: &mut PgConnection, cancel: &CancelToken) -> Result<u64> {
        let result = self.copy_part(conn, cancel).await;
        if let (Err(e), Ok(mut s)) = (&result, self.state.lock()) {
            s.failed.get_or_insert_with(|| e.clone());
        }
        result
    }

    async fn copy_part(&self, conn: &mut PgConnection, cancel: &CancelToken) -> Result<u64> {
        let fail = |e: sqlx::Error| restore_error(&format!("table {}", self.section), &e);
        let mut tx = conn.begin().await.map_err(q("start a table's load"))?;
        let mut copy = (*tx).copy_in_raw(&format!("COPY {}", self.target)).await.map_err(fail)?;
        loop {
            let next = self.input.lock().await.recv().await;
            match next {
                None => {
                    // Every chunk is taken: nobody else need join.
                    if let Ok(mut s) = self.state.lock() {
                        s.open = false;
                    }
                    break;
                }
                Some(Err(e)) => {
                    let _ = copy.abort("the archive is damaged").await;
                    return Err(e);
                }
                Some(Ok(lines)) => {
                    if cancel.is_cancelled() {
                        let _ = copy.abort("cancelled").await;
                        return Err(Error::new(ErrorCode::Cancelled, "restore cancelled; the target was left as it was"));
                    }
                    copy.send(lines).await.map_err(fail)?;
                }
            }
        }
        let n = copy.finish().await.map_err(fail)?;
        tx.commit().await.map_err(q("commit a table's load"))?;
        Ok(n)
    }
}

fn builds_index(sql: &str) -> bool {
    sql.starts_with("CREATE INDEX") || sql.starts_with("CREATE UNIQUE INDEX") || sql.contains(" PRIMARY KEY (") || sql.contains(" UNIQUE (") || sql.contains(" EXCLUDE ")
}

/// Loads a table that was emptied in this transaction with `COPY … FREEZE`: its rows are written
/// frozen and its pages all-visible, so building its indexes (and the first vacuum) does not
/// rewrite every page to set hint bits. Tables with deltas in the chain load as usual.
async fn load_frozen(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, chain: &Chain, t: &PgTable, cancel: &CancelToken) -> Result<u64> {
    let section = t.section();
    let relation = format!("{}.{}", qi(&t.schema), qi(&t.name));
    if !chain.iter().any(|(_, ix)| ix.section(&section).is_some_and(|e| e.mode.is_none())) {
        return Ok(0);
    }
    sqlx::raw_sql(AssertSqlSafe(format!("TRUNCATE ONLY {relation}"))).execute(&mut **tx).await.map_err(|e| restore_error(&format!("table {section}"), &e))?;
    // The whole copy frozen; a chain's later changes merged after it.
    super::postgres::load_chain(tx, chain, t, &relation, true, cancel).await
}

#[derive(Clone)]
enum Task {
    Load(PgTable),
    Post(Stmt),
}

impl Task {
    fn what(&self) -> String {
        match self {
            Task::Load(t) => format!("loaded {}", t.section()),
            Task::Post(st) => st.what.clone(),
        }
    }
}

/// A lock a step takes on a table: `Shared` steps (index builds, which take PostgreSQL's SHARE
/// lock) run side by side on one table; an `Alone` step (a load, an ALTER TABLE) has the table to
/// itself. Steps are only started when their locks are free, so no worker waits on the server.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Lock {
    Shared,
    Alone,
}

struct Step {
    task: Task,
    locks: Vec<(String, Lock)>,
    /// Steps that must be done first.
    after: Vec<usize>,
    /// Steps of a later phase start when every step of the earlier phases is done.
    phase: usize,
}

enum Next {
    Run(usize, Task, bool),
    Wait,
    Finished,
    Stuck,
}

/// The steps of a parallel restore and their state.
struct Plan {
    steps: Vec<Step>,
    /// Steps not yet started, in order of preference.
    pending: Vec<usize>,
    done: Vec<bool>,
    /// Steps not yet done, per phase.
    left: Vec<usize>,
    /// Tables locked by running steps: how many share it, or that one has it alone.
    held: HashMap<String, (usize, bool)>,
    loads_running: usize,
    running: usize,
}

impl Plan {
    /// The plan for `tables` (biggest first) and the schema's statements after the data; returns
    /// it and the statements left for the serial last step (triggers, sequence values, …).
    ///
    /// Phase 0: each table's load; then its index builds (a primary key or unique constraint is
    /// built as a unique index and attached as the constraint once the table's other index
    /// builds are done, so they need not wait for each other's locks); then its other
    /// constraints; a foreign key between two loaded tables once both are complete.
    /// Phase 1: indexes and keys of tables without rows of their own (partitioned parents,
    /// materialized views). Phase 2: partitions' indexes attached to their parents' (a
    /// partitioned table's key is valid once every partition's is attached). Phase 3: foreign
    /// keys that involve those, or that name no referenced table (archives before foreign keys
    /// named it).
    fn new(tables: Vec<PgTable>, post: Vec<Stmt>, not_analyzed: &HashSet<String>) -> (Plan, Vec<Stmt>) {
        let mut steps = Vec::new();
        let mut load_of = HashMap::new();
        let mut analyzed = Vec::new();
        for t in tables {
            if !not_analyzed.contains(&t.section()) {
                analyzed.push((t.section(), format!("{}.{}", qi(&t.schema), qi(&t.name))));
            }
            load_of.insert(t.section(), steps.len());
            steps.push(Step { locks: vec![(t.section(), Lock::Alone)], task: Task::Load(t), after: vec![], phase: 0 });
        }
        let loads: Vec<usize> = (0..steps.len()).collect();
        // What a statement does, whatever tablespace it makes its object in.
        let body = |st: &Stmt| super::postgres::without_tablespace(&st.sql).to_string();
        let is_fk = |st: &Stmt| st.sql.contains(" FOREIGN KEY ");
        let per_table = |st: &Stmt| body(st).starts_with("CREATE INDEX") || body(st).starts_with("CREATE UNIQUE INDEX") || (st.sql.contains(" ADD CONSTRAINT ") && !is_fk(st));
        let mut builds: HashMap<String, Vec<usize>> = HashMap::new();
        let mut complete: HashMap<String, Vec<usize>> = HashMap::new();
        let mut exclusive = Vec::new();
        let mut fks = Vec::new();
        let mut rest = Vec::new();
        let push = |steps: &mut Vec<Step>, st: Stmt, lock: Lock, after: Vec<usize>, phase: usize| {
            let locks = st.table.iter().chain(st.references.iter()).map(|t| (t.clone(), lock)).collect::<Vec<_>>();
            let mut locks_dedup: Vec<(String, Lock)> = Vec::new();
            for l in locks {
                if !locks_dedup.iter().any(|(t, _)| *t == l.0) {
                    locks_dedup.push(l);
                }
            }
            steps.push(Step { task: Task::Post(st), locks: locks_dedup, after, phase });
            steps.len() - 1
        };
        let lock_of = |sql: &str| if sql.starts_with("CREATE ") { Lock::Shared } else { Lock::Alone };
        for st in post {
            let loaded = st.table.as_ref().and_then(|t| load_of.get(t)).copied();
            match loaded {
                Some(load) if per_table(&st) => {
                    let table = st.table.clone().unwrap_or_default();
                    if let Some((build, attach)) = key_by_index(&st) {
                        let id = push(&mut steps, build, Lock::Shared, vec![load], 0);
                        builds.entry(table.clone()).or_default().push(id);
                        exclusive.push((table, attach));
                    } else if lock_of(&body(&st)) == Lock::Shared {
                        let id = push(&mut steps, st, Lock::Shared, vec![load], 0);
                        builds.entry(table).or_default().push(id);
                    } else {
                        exclusive.push((table, st));
                    }
                }
                _ if per_table(&st) => {
                    let lock = lock_of(&body(&st));
                    push(&mut steps, st, lock, vec![], 1);
                }
                // A partition's index attached to its parent's: once both are built.
                _ if st.sql.starts_with("ALTER INDEX ") && st.sql.contains(" ATTACH PARTITION ") => {
                    push(&mut steps, st, Lock::Alone, vec![], 2);
                }
                _ if is_fk(&st) && st.table.is_some() => fks.push(st),
                _ => rest.push(st),
            }
        }
        // A table's constraints after its index builds (they would wait for them anyway).
        for (table, st) in exclusive {
            let mut after = vec![load_of[&table]];
            after.extend(builds.get(&table).into_iter().flatten().copied());
            let id = push(&mut steps, st, Lock::Alone, after, 0);
            complete.entry(table).or_default().push(id);
        }
        for (table, ids) in &builds {
            complete.entry(table.clone()).or_default().extend(ids.iter().copied());
        }
        // The optimizer's statistics of each table once it is complete (its expression indexes
        // are analyzed with it), beside the other tables' work, holding the table alone meanwhile.
        for (section, name) in analyzed {
            let mut after = vec![load_of[&section]];
            after.extend(complete.get(&section).into_iter().flatten().copied());
            let st = Stmt { what: format!("statistics of {section} (ANALYZE)"), sql: format!("ANALYZE {name}"), table: Some(section), references: None };
            push(&mut steps, st, Lock::Alone, after, 0);
        }
        let posts_end = steps.len();
        for st in fks {
            let both = [st.table.clone(), st.references.clone()];
            if both.iter().all(|t| t.as_ref().is_some_and(|t| load_of.contains_key(t))) {
                let mut after = Vec::new();
                for t in both.iter().flatten() {
                    after.push(load_of[t]);
                    after.extend(complete.get(t).into_iter().flatten().copied());
                }
                push(&mut steps, st, Lock::Alone, after, 0);
            } else {
                push(&mut steps, st, Lock::Alone, vec![], 3);
            }
        }
        // Preference: whatever a finished load made possible, then the next load, then keys.
        let mut pending: Vec<usize> = (loads.len()..posts_end).collect();
        pending.extend(loads);
        pending.extend(posts_end..steps.len());
        let mut left = vec![0; 4];
        for s in &steps {
            left[s.phase] += 1;
        }
        let done = vec![false; steps.len()];
        (Plan { steps, pending, done, left, held: HashMap::new(), loads_running: 0, running: 0 }, rest)
    }

    fn ready(&self, id: usize) -> bool {
        let s = &self.steps[id];
        self.left[..s.phase].iter().all(|&n| n == 0)
            && s.after.iter().all(|&a| self.done[a])
            && s.locks.iter().all(|(t, lock)| match self.held.get(t) {
                None => true,
                Some(&(_, alone)) => !alone && *lock == Lock::Shared,
            })
    }

    /// The next step to start (a table's load only if `loads`), and whether it is alone: no
    /// other step could start now, and no load is running (which would make more steps ready
    /// when it ends).
    fn next(&mut self, loads: bool) -> Next {
        if self.pending.is_empty() {
            return Next::Finished;
        }
        let Some(pos) = self.pending.iter().position(|&id| (loads || !matches!(self.steps[id].task, Task::Load(_))) && self.ready(id)) else {
            return if self.running == 0 && loads { Next::Stuck } else { Next::Wait };
        };
        let id = self.pending.remove(pos);
        for (t, lock) in &self.steps[id].locks {
            let e = self.held.entry(t.clone()).or_insert((0, false));
            e.0 += 1;
            e.1 = *lock == Lock::Alone;
        }
        if matches!(self.steps[id].task, Task::Load(_)) {
            self.loads_running += 1;
        }
        self.running += 1;
        let alone = self.loads_running == 0 && !self.pending.iter().any(|&p| self.ready(p));
        Next::Run(id, self.steps[id].task.clone(), alone)
    }

    fn finish(&mut self, id: usize) {
        self.done[id] = true;
        self.running -= 1;
        self.left[self.steps[id].phase] -= 1;
        for (t, _) in &self.steps[id].locks {
            if let Some(e) = self.held.get_mut(t) {
                e.0 -= 1;
                if e.0 == 0 {
                    self.held.remove(t);
                }
            }
        }
        if matches!(self.steps[id].task, Task::Load(_)) {
            self.loads_running -= 1;
        }
    }
}

/// `ALTER TABLE t ADD CONSTRAINT c PRIMARY KEY (cols)` (or `UNIQUE (cols)`, with nothing more)
/// as two steps: the index build, which shares the table with its other index builds, and
/// `ADD CONSTRAINT … USING INDEX`, which makes that index the constraint (the catalog ends the
/// same). Anything else (INCLUDE, DEFERRABLE, NULLS NOT DISTINCT, storage options) stays as it is.
fn key_by_index(st: &Stmt) -> Option<(Stmt, Stmt)> {
    let rest = st.sql.strip_prefix("ALTER TABLE ")?;
    let (schema, rest) = ident(rest)?;
    let (name, rest) = ident(rest.strip_prefix('.')?)?;
    let table = format!("{schema}.{name}");
    let (constraint, rest) = ident(rest.strip_prefix(" ADD CONSTRAINT ")?)?;
    let rest = rest.strip_prefix(' ')?;
    let (kind, mut cols) = if let Some(c) = rest.strip_prefix("PRIMARY KEY (") { ("PRIMARY KEY", c) } else { ("UNIQUE", rest.strip_prefix("UNIQUE (")?) };
    let mut list = Vec::new();
    loop {
        let (col, after) = ident(cols)?;
        list.push(col);
        if after == ")" {
            break;
        }
        cols = after.strip_prefix(", ")?;
    }
    let build = Stmt {
        what: format!("{} (its index)", st.what),
        sql: format!("CREATE UNIQUE INDEX {constraint} ON {table} USING btree ({})", list.join(", ")),
        table: st.table.clone(),
        references: None,
    };
    let attach = Stmt { what: st.what.clone(), sql: format!("ALTER TABLE {table} ADD CONSTRAINT {constraint} {kind} USING INDEX {constraint}"), table: st.table.clone(), references: None };
    Some((build, attach))
}

/// One SQL identifier at the start of `s`, as written (quoted, or plain lower case), and the rest.
fn ident(s: &str) -> Option<(&str, &str)> {
    if let Some(body) = s.strip_prefix('"') {
        let mut i = 0;
        let bytes = body.as_bytes();
        while i < bytes.len() {
            if bytes[i] == b'"' {
                if bytes.get(i + 1) == Some(&b'"') {
                    i += 2;
                    continue;
                }
                return Some((&s[..i + 2], &s[i + 2..]));
            }
            i += 1;
        }
        None
    } else {
        let end = s.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$' || !c.is_ascii())).unwrap_or(s.len());
        (end > 0 && !s.as_bytes()[0].is_ascii_digit()).then(|| (&s[..end], &s[end..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::TableClass;

    fn table(name: &str) -> PgTable {
        PgTable { schema: "public".into(), name: name.into(), columns: vec!["id".into()], key_columns: vec!["id".into()], class: TableClass::System, root: None }
    }
    fn stmt(sql: &str, table: &str, references: Option<&str>) -> Stmt {
        Stmt { what: sql.into(), sql: sql.into(), table: Some(format!("public.{table}")), references: references.map(|r| format!("public.{r}")) }
    }
    /// The next step: its id (none when there is nothing to start), what it runs, and whether alone.
    fn take(plan: &mut Plan) -> (usize, String, bool) {
        match plan.next(true) {
            Next::Run(id, task, alone) => (id, match task {
                Task::Load(t) => format!("load {}", t.name),
                Task::Post(st) => st.sql,
            }, alone),
            Next::Wait => (usize::MAX, "wait".into(), false),
            Next::Finished => (usize::MAX, "finished".into(), false),
            Next::Stuck => (usize::MAX, "stuck".into(), false),
        }
    }

    #[test]
    fn a_key_becomes_an_index_build_and_an_attach_only_in_its_plain_form() {
        let st = stmt(r#"ALTER TABLE public."Odd ""name""" ADD CONSTRAINT "k" PRIMARY KEY (id, "Mixed Case")"#, "Odd \"name\"", None);
        let (build, attach) = key_by_index(&st).expect("a plain key");
        assert_eq!(build.sql, r#"CREATE UNIQUE INDEX "k" ON public."Odd ""name""" USING btree (id, "Mixed Case")"#);
        assert_eq!(attach.sql, r#"ALTER TABLE public."Odd ""name""" ADD CONSTRAINT "k" PRIMARY KEY USING INDEX "k""#);
        let st = stmt(r#"ALTER TABLE public.t ADD CONSTRAINT "u" UNIQUE (a)"#, "t", None);
        assert_eq!(key_by_index(&st).expect("unique").1.sql, r#"ALTER TABLE public.t ADD CONSTRAINT "u" UNIQUE USING INDEX "u""#);
        for other in [
            r#"ALTER TABLE public.t ADD CONSTRAINT "u" UNIQUE (a) DEFERRABLE INITIALLY DEFERRED"#,
            r#"ALTER TABLE public.t ADD CONSTRAINT "u" UNIQUE (a) INCLUDE (b)"#,
            r#"ALTER TABLE public.t ADD CONSTRAINT "u" UNIQUE NULLS NOT DISTINCT (a)"#,
            r#"ALTER TABLE public.t ADD CONSTRAINT "u" PRIMARY KEY (a) WITH (fillfactor='70')"#,
            r#"ALTER TABLE public.t ADD CONSTRAINT "c" CHECK ((a > 0))"#,
            r#"ALTER TABLE public.t ADD CONSTRAINT "x" EXCLUDE USING gist (r WITH &&)"#,
        ] {
            assert!(key_by_index(&stmt(other, "t", None)).is_none(), "{other} is kept as it is");
        }
    }

    #[test]
    fn index_builds_share_their_table_and_keys_wait_for_both_tables() {
        let post = vec![
            stmt(r#"ALTER TABLE public.big ADD CONSTRAINT "big_pkey" PRIMARY KEY (id)"#, "big", None),
            stmt(r#"ALTER TABLE public.big ADD CONSTRAINT "big_check" CHECK ((id > 0))"#, "big", None),
            stmt("CREATE INDEX big_idx ON public.big USING btree (id)", "big", None),
            stmt(r#"ALTER TABLE public.small ADD CONSTRAINT "small_pkey" PRIMARY KEY (id)"#, "small", None),
            stmt(r#"ALTER TABLE public.big ADD CONSTRAINT "big_fk" FOREIGN KEY (id) REFERENCES public.small(id)"#, "big", Some("small")),
            stmt("CREATE TRIGGER trg AFTER INSERT ON public.big FOR EACH ROW EXECUTE FUNCTION f()", "big", None),
        ];
        let (mut plan, rest) = Plan::new(vec![table("big"), table("small")], post, &HashSet::new());
        assert_eq!(rest.len(), 1, "the trigger is left for the last step");
        // Two workers: both start loading.
        let a = take(&mut plan);
        let b = take(&mut plan);
        assert_eq!((a.1, b.1), ("load big".into(), "load small".into()));
        assert_eq!(take(&mut plan).1, "wait", "nothing else can start while both load");
        plan.finish(b.0);
        let b = take(&mut plan);
        assert_eq!(b.1, r#"CREATE UNIQUE INDEX "small_pkey" ON public.small USING btree (id)"#);
        plan.finish(b.0);
        let b = take(&mut plan);
        assert_eq!(b.1, r#"ALTER TABLE public.small ADD CONSTRAINT "small_pkey" PRIMARY KEY USING INDEX "small_pkey""#);
        plan.finish(b.0);
        let b = take(&mut plan);
        assert_eq!(b.1, r#"ANALYZE "public"."small""#, "a complete table's statistics at once");
        plan.finish(b.0);
        assert_eq!(take(&mut plan).1, "wait", "the foreign key waits for the big table");
        plan.finish(a.0);
        // Both index builds of the big table run side by side; the second is alone (nothing
        // else can start), so it may use the idle cores.
        let a = take(&mut plan);
        let b = take(&mut plan);
        assert_eq!(a.1, r#"CREATE UNIQUE INDEX "big_pkey" ON public.big USING btree (id)"#);
        assert_eq!(b.1, "CREATE INDEX big_idx ON public.big USING btree (id)");
        assert!(b.2 && !a.2, "the second build is alone");
        assert_eq!(take(&mut plan).1, "wait", "the attach and the check wait for the builds");
        plan.finish(a.0);
        assert_eq!(take(&mut plan).1, "wait", "… for all of them");
        plan.finish(b.0);
        let a = take(&mut plan);
        assert!(a.1.contains("USING INDEX \"big_pkey\""));
        assert_eq!(take(&mut plan).1, "wait", "the table is locked alone");
        plan.finish(a.0);
        let a = take(&mut plan);
        assert!(a.1.contains("CHECK"));
        plan.finish(a.0);
        let a = take(&mut plan);
        assert_eq!(a.1, r#"ANALYZE "public"."big""#, "the statistics once every build and check of the table is done");
        assert_eq!(take(&mut plan).1, "wait", "the foreign key waits for the table alone");
        plan.finish(a.0);
        let a = take(&mut plan);
        assert!(a.1.contains("FOREIGN KEY"));
        assert_eq!(take(&mut plan).1, "finished", "nothing is left to start");
        plan.finish(a.0);
    }

    #[test]
    fn keys_of_tables_without_rows_come_after_every_load() {
        let post = vec![
            stmt("CREATE INDEX parent_idx ON public.parent USING btree (id)", "parent", None),
            stmt(r#"ALTER TABLE public.t ADD CONSTRAINT "t_fk" FOREIGN KEY (id) REFERENCES public.parent(id)"#, "t", Some("parent")),
        ];
        let (mut plan, _) = Plan::new(vec![table("t")], post, &HashSet::new());
        let a = take(&mut plan);
        assert_eq!(a.1, "load t");
        assert_eq!(take(&mut plan).1, "wait");
        plan.finish(a.0);
        let a = take(&mut plan);
        assert_eq!(a.1, r#"ANALYZE "public"."t""#);
        plan.finish(a.0);
        let a = take(&mut plan);
        assert_eq!(a.1, "CREATE INDEX parent_idx ON public.parent USING btree (id)");
        assert_eq!(take(&mut plan).1, "wait", "the key waits for the parent's index");
        plan.finish(a.0);
        let a = take(&mut plan);
        assert!(a.1.contains("FOREIGN KEY"));
        plan.finish(a.0);
        assert_eq!(take(&mut plan).1, "finished");
    }
}
