//! Migrations run from the catalog (the Migration tab, and `safehold tenant …` with a catalog):
//! connections named by id or name, a `migration_jobs` row going pending → running → completed |
//! failed | cancelled with its progress, counts, mapping, rules and validation results, and the
//! audit log.

use crate::catalog::{audit, now};
use crate::connections::{self, ConnectionKind};
use crate::context::{Counts, Ctx, Job};
use crate::error::{Error, ErrorCode, Result};
use crate::history::JobStatus;
use crate::source::{redact, CancelToken, Progress, ProgressSink, SourceSpec};
use crate::keys::unlock::KeySources;

use super::{execute, Endpoints, MigrationReport, MigrationSpec};

/// A connection's id or name, a PostgreSQL URL or `sqlite:///path` → (URL, tenant column,
/// tenants table, declared references); a SQLite connection as `sqlite://` and its file.
async fn endpoint(ctx: &Ctx, given: &str) -> Result<(String, Option<(String, String)>, Vec<String>)> {
    if given.starts_with("postgres://") || given.starts_with("postgresql://") {
        return Ok((given.to_string(), None, Vec::new()));
    }
    if let Ok(SourceSpec::Sqlite { path }) = SourceSpec::parse(given) {
        return Ok((format!("sqlite://{}", path.display()), None, Vec::new()));
    }
    let conn = connections::find(ctx, given).await?;
    let (spec, conn) = crate::connections::source_of(ctx, &conn.id).await?;
    let url = match spec {
        SourceSpec::Postgres { url } => url,
        SourceSpec::Sqlite { path } => format!("sqlite://{}", path.display()),
    };
    Ok((url, Some((conn.tenant_column, conn.tenants_table)), conn.references))
}

/// A tenant of a connection, for pickers.
#[derive(Debug, Clone, serde::Serialize, ts_rs::TS)]
pub struct TenantRow {
    pub id: String,
    /// The tenants table's `name` column, when it has one.
    pub name: Option<String>,
}

/// The tenants of a connection (its tenants table's keys and names), PostgreSQL or SQLite.
pub async fn tenants(ctx: &Ctx, connection: &str) -> Result<Vec<TenantRow>> {
    crate::context::require(ctx, crate::context::Permission::RestoreData, "migration.tenants", connection).await?;
    let found = connections::find(ctx, connection).await.ok();
    if let Some(c) = found.filter(|c| c.kind == ConnectionKind::Sqlite) {
        let path = c.sqlite_path.clone().unwrap_or_default();
        return sqlite_tenants(std::path::Path::new(&path), &c.tenants_table).await;
    }
    let (url, tenancy, _) = endpoint(ctx, connection).await?;
    let table = tenancy.map(|t| t.1).unwrap_or_else(|| "tenants".into());
    let mut conn = crate::source::postgres::connect(&url).await?;
    let target = crate::source::pg_apply::read_target(&mut conn).await?;
    let Some(t) = target.cols.keys().find(|t| super::stage::bare(t) == table).cloned() else {
        return Err(Error::not_found(format!("the connection has no tenants table \"{table}\": set it in the connection")));
    };
    let key = target.pks.get(&t).filter(|k| k.len() == 1).map(|k| k[0].clone()).ok_or_else(|| Error::validation(format!("{t} has no one-column primary key")))?;
    let has_name = target.cols[&t].iter().any(|c| c.name == "name");
    let sql = format!(
        "SELECT {k}::text, {name} FROM {rel} ORDER BY 2, 1 LIMIT 5000",
        k = crate::source::postgres::qi(&key),
        name = if has_name { "name::text" } else { "NULL::text" },
        rel = crate::source::pg_apply::rel(&t)
    );
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&mut conn).await.map_err(crate::source::postgres::q("list the tenants"))?;
    Ok(rows.into_iter().map(|(id, name)| TenantRow { id, name }).collect())
}

/// The tenants of a SQLite database: its tenants table's one-column key, and names.
async fn sqlite_tenants(path: &std::path::Path, table: &str) -> Result<Vec<TenantRow>> {
    use sqlx::Connection as _;
    let fail = |e: sqlx::Error| Error::new(crate::error::ErrorCode::Database, format!("{}: cannot list the tenants: {e}", path.display())).caused_by(&e);
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(path).read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&opts).await.map_err(fail)?;
    let cols: Vec<(String, i64)> = sqlx::query_as("SELECT name, pk FROM pragma_table_info(?) ORDER BY cid").bind(table).fetch_all(&mut conn).await.map_err(fail)?;
    if cols.is_empty() {
        return Err(Error::not_found(format!("the connection has no tenants table \"{table}\": set it in the connection")));
    }
    let keys: Vec<&String> = cols.iter().filter(|c| c.1 > 0).map(|c| &c.0).collect();
    let [key] = keys.as_slice() else { return Err(Error::validation(format!("{table} has no one-column primary key"))) };
    let q = crate::source::quote_ident;
    let name = if cols.iter().any(|c| c.0 == "name") { "CAST(name AS TEXT)" } else { "NULL" };
    let sql = format!("SELECT CAST({} AS TEXT), {name} FROM {} ORDER BY 2, 1 LIMIT 5000", q(key), q(table));
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&mut conn).await.map_err(fail)?;
    let _ = conn.close().await;
    Ok(rows.into_iter().map(|(id, name)| TenantRow { id, name }).collect())
}

/// Resolves the spec's connections (their passwords from the keychain): only for an operator
/// who may read tenants' rows.
pub(crate) async fn resolve(ctx: &Ctx, spec: &MigrationSpec, keys: KeySources) -> Result<Endpoints> {
    let mut ends = Endpoints { keys, ..Default::default() };
    let mut tenancy = None;
    if let Some(s) = spec.source.as_deref().filter(|s| !s.trim().is_empty()) {
        let (url, t, refs) = endpoint(ctx, s.trim()).await?;
        ends.source_url = Some(url);
        tenancy = t;
        ends.references.extend(refs);
    }
    if let Some(s) = spec.target.as_deref().filter(|s| !s.trim().is_empty()) {
        let (url, t, refs) = endpoint(ctx, s.trim()).await?;
        ends.target_url = Some(url);
        tenancy = tenancy.or(t);
        ends.references.extend(refs.into_iter().filter(|r| !ends.references.contains(r)).collect::<Vec<_>>());
    }
    if spec.migration_type == Some(super::MigrationType::DataExport) && spec.export_format == super::ExportFormat::Archive {
        ends.archive_repository = Some(archive_repository(ctx, spec.archive_repository.as_deref()).await?);
        if let Some(s) = spec.source.as_deref().map(str::trim).filter(|s| !s.starts_with("postgres://") && !s.starts_with("postgresql://")) {
            ends.source_name = Some(connections::find(ctx, s).await?.name);
        }
    }
    let (col, table) = tenancy.unwrap_or_else(|| ("tenant_id".into(), "tenants".into()));
    ends.tenant_column = spec.tenant_column.clone().filter(|c| !c.trim().is_empty()).unwrap_or(col);
    ends.tenants_table = spec.tenants_table.clone().filter(|c| !c.trim().is_empty()).unwrap_or(table);
    Ok(ends)
}

/// The repository whose key encrypts an archive export: a storage location (by name or id) or a
/// repository directory; none given, the default storage location.
async fn archive_repository(ctx: &Ctx, given: Option<&str>) -> Result<std::path::PathBuf> {
    let store = match given.map(str::trim).filter(|g| !g.is_empty()) {
        Some(g) => match crate::storage::find(ctx, g).await {
            Ok(s) => s,
            Err(e) if e.code == ErrorCode::NotFound => return Ok(std::path::PathBuf::from(g)),
            Err(e) => return Err(e),
        },
        None => crate::storage::list(ctx).await?.into_iter().next().ok_or_else(|| {
            Error::validation("an archive export is encrypted with a repository's key: add a storage location first, or choose a repository (--repo)")
        })?,
    };
    crate::storage::location(ctx, &store).await
}

async fn keys(ctx: &Ctx) -> Result<KeySources> {
    crate::keys::custody::key_sources(ctx).await
}

fn quiet() -> ProgressSink {
    std::sync::Arc::new(|_| {})
}

/// Validation: the migration run in a transaction that is rolled back.
pub async fn validate(ctx: &Ctx, spec: &MigrationSpec) -> Result<MigrationReport> {
    validate_with(ctx, spec, None, &quiet()).await
}

/// Validation (a dry run) with the keys given (the CLI's `--password-file` …) and progress. A dry
/// run reads tenants' rows with the connections' stored passwords: it needs the permission a run
/// needs, and it is audited, as a refusal is.
pub async fn validate_with(ctx: &Ctx, spec: &MigrationSpec, keys: Option<KeySources>, progress: &ProgressSink) -> Result<MigrationReport> {
    let who = crate::context::require(ctx, crate::context::Permission::RestoreData, "migration.validate", &what(spec)).await?;
    let keys = match keys {
        Some(k) => k,
        None => self::keys(ctx).await?,
    };
    let ends = resolve(ctx, spec, keys).await?;
    let out = execute(spec, &ends, false, &CancelToken::new(), progress).await;
    let (outcome, detail) = match &out {
        Ok(r) if r.is_clean() => ("success", "dry run: nothing changed; no problems".to_string()),
        Ok(r) => ("success", format!("dry run: nothing changed; {} problems", r.problems().count())),
        Err(e) => ("failure", format!("dry run: {}", e.message)),
    };
    audit(&ctx.pool, &who.id, "migration.validate", &what(spec), outcome, Some(&detail)).await?;
    out
}

/// What a migration acts on, for the audit log (URLs without their passwords).
fn what(spec: &MigrationSpec) -> String {
    let kind = spec.migration_type.map(|k| k.as_str()).unwrap_or("migration");
    let from = if spec.source_files.is_empty() { spec.source.as_deref().map(redact).unwrap_or_default() } else { spec.source_files.join(", ") };
    let to = spec.target_file.clone().or_else(|| spec.target.as_deref().map(redact)).unwrap_or_default();
    format!("{kind} {} {from} → {to}", spec.source_tenant_ids.join(","))
}

/// The mapping proposed for the spec (the wizard's mapping step).
pub async fn propose_mapping(ctx: &Ctx, spec: &MigrationSpec) -> Result<MigrationReport> {
    crate::context::require(ctx, crate::context::Permission::RestoreData, "migration.propose", &spec.migration_name).await?;
    let ends = resolve(ctx, spec, keys(ctx).await?).await?;
    let (mapping, warnings) = super::propose_mapping(spec, &ends).await?;
    Ok(MigrationReport { migration_type: spec.migration_type, mapping, warnings, ..Default::default() })
}

/// Records a pending migration job; returns its id.
pub async fn start(ctx: &Ctx, spec: &MigrationSpec) -> Result<String> {
    crate::context::require(ctx, crate::context::Permission::RestoreData, "migration.start", &spec.migration_name).await?;
    let kind = super::kind(spec)?;
    let id = uuid::Uuid::new_v4().to_string();
    let name = if spec.migration_name.trim().is_empty() {
        format!("{} {}", kind.as_str().replace('_', " "), spec.source_tenant_ids.join(", "))
    } else {
        spec.migration_name.trim().to_string()
    };
    let source_file = if spec.source_files.is_empty() { spec.source.as_deref().map(redact) } else { Some(spec.source_files.join(", ")) };
    sqlx::query(
        "INSERT INTO migration_jobs (id, migration_name, migration_type, source_tenant_id, target_tenant_id, source_file_path, target_file_path, \
         mapping_configuration, transformation_rules, status, initiated_by, started_at, runner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
    )
    .bind(&id)
    .bind(&name)
    .bind(kind.as_str())
    .bind(Some(spec.source_tenant_ids.join(",")).filter(|s| !s.is_empty()))
    .bind(spec.target_tenant_id.clone().filter(|s| !s.is_empty()))
    .bind(source_file)
    .bind(spec.target_file.clone().or_else(|| spec.target.as_deref().map(redact)))
    .bind(serde_json::to_string(&spec.mapping).unwrap_or_else(|_| "[]".into()))
    .bind(serde_json::to_string(&spec.rules).unwrap_or_else(|_| "[]".into()))
    .bind(ctx.operator_id())
    .bind(now())
    .bind(crate::lease::runner(&ctx.home)?)
    .execute(&ctx.pool)
    .await
    .map_err(|e| Error::catalog("record the migration", &e))?;
    Ok(id)
}

/// A migration's record (see [`crate::context::Job`]).
pub(crate) struct MigrationRun;

impl crate::context::JobRecord for MigrationRun {
    const KIND: crate::jobs::JobKind = crate::jobs::JobKind::Migration;
    const ACTION: &'static str = "migration.run";

    async fn running(ctx: &Ctx, id: &str) -> Result<()> {
        sqlx::query("UPDATE migration_jobs SET status = 'running', started_at = ?, runner = ? WHERE id = ?")
            .bind(now())
            .bind(crate::lease::runner(&ctx.home)?)
            .bind(id)
            .execute(&ctx.pool)
            .await
            .map_err(|e| Error::catalog("start the migration", &e))?;
        Ok(())
    }

    async fn progress(ctx: &Ctx, id: &str, p: &Progress) {
        let pct = p.tables_done.saturating_mul(100).checked_div(p.tables_total).unwrap_or(0).min(99);
        let _ = sqlx::query("UPDATE migration_jobs SET progress_percentage = ? WHERE id = ? AND status = 'running'")
            .bind(i64::try_from(pct).unwrap_or(0))
            .bind(id)
            .execute(&ctx.pool)
            .await;
    }

    /// A migration writes in one transaction: ended any other way, nothing was written.
    async fn ended(ctx: &Ctx, id: &str, status: JobStatus, message: &str) -> Result<()> {
        sqlx::query("UPDATE migration_jobs SET status = ?, completed_at = ?, error_message = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(now())
            .bind(format!("{}; nothing was written", message.trim_end_matches("; nothing was written")))
            .bind(id)
            .execute(&ctx.pool)
            .await
            .map_err(|e| Error::catalog("record the failed migration", &e))?;
        Ok(())
    }
}

/// Runs a recorded migration job to its end and records the outcome (through the one job
/// lifecycle, [`Job`]).
pub async fn run(ctx: &Ctx, id: &str, spec: &MigrationSpec, extra_keys: Option<KeySources>, cancel: &CancelToken) -> Result<MigrationReport> {
    let kind = spec.migration_type.map(|k| k.as_str()).unwrap_or("migration");
    let what = format!("{kind} {}", spec.source_tenant_ids.join(","));
    let by = crate::history::initiated_by(ctx, "migration_jobs", id).await;
    let job = Job::<MigrationRun>::start(ctx, id, by, what, None).await?;
    let sink = job.progress();
    let result = async {
        let ends = resolve(ctx, spec, match extra_keys {
            Some(k) => k,
            None => keys(ctx).await?,
        }).await?;
        execute(spec, &ends, true, cancel, &sink).await
    }
    .await;
    drop(sink);
    let completed = async |report: &MigrationReport| -> Result<String> {
        sqlx::query(
            "UPDATE migration_jobs SET status = 'completed', completed_at = ?, progress_percentage = 100, records_processed = ?, records_total = ?, \
             target_tenant_id = coalesce(?, target_tenant_id), validation_results = ?, mapping_configuration = ? WHERE id = ?",
        )
        .bind(now())
        .bind(i64::try_from(report.rows_written).unwrap_or(0))
        .bind(i64::try_from(report.rows_read).unwrap_or(0))
        .bind(&report.target_tenant_id)
        .bind(serde_json::to_string(report).unwrap_or_else(|_| "{}".into()))
        .bind(serde_json::to_string(&report.mapping).unwrap_or_else(|_| "[]".into()))
        .bind(id)
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("record the finished migration", &e))?;
        // The references it ran with are remembered with its connections: asked once.
        for c in [spec.source.as_deref(), spec.target.as_deref()].into_iter().flatten().filter(|c| !c.starts_with("postgres")) {
            if let Ok(conn) = connections::find(ctx, c.trim()).await {
                connections::remember_references(ctx, &conn.id, &spec.references).await?;
            }
        }
        Ok(format!("{} rows written", report.rows_written))
    };
    job.end(result, completed, |r| Counts { tables: 0, rows: r.rows_written }).await?
}

/// Marks a queued migration cancelled.
pub async fn cancel_queued(ctx: &Ctx, id: &str) -> Result<()> {
    sqlx::query("UPDATE migration_jobs SET status = 'cancelled', completed_at = ?, error_message = 'cancelled while queued; nothing was written' WHERE id = ? AND status = 'pending'")
        .bind(now())
        .bind(id)
        .execute(&ctx.pool)
        .await
        .map_err(|e| Error::catalog("cancel the migration", &e))?;
    Ok(())
}

/// Marks the migrations a dead process left pending or running as failed, saying why.
pub(crate) async fn interrupt_dead(ctx: &Ctx) -> Result<u64> {
    crate::history::interrupt_dead(ctx, "migration_jobs", "interrupted: Safehold stopped during this migration; the target database rolled its transaction back and nothing was written").await
}
