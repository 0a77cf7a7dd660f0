//! Restores: plan first, then execute, all or nothing.
//!
//! - `full`: the whole backup (its chain), into an empty or new database (`create`), or replacing
//!   the target's objects (`clean`) in the same transaction;
//! - `selective`: chosen tables of a backup replace the target's tables (`tables` /
//!   `exclude_tables`);
//! - `tenant_only`: one tenant's rows replace the tenant's current rows, no other tenant touched;
//!   with `preserve_ids: false` the tenant is restored as a copy under a new tenant id.
//!
//! A point in time (`at`) picks the newest backup whose snapshot is at or before it. Before a
//! destructive restore, a safety backup of what will be replaced is taken into the same
//! repository, so a mistaken restore can itself be undone.

pub mod records;
pub mod test;
pub use test::{restore_test, RestoreTestReport, RestoreTestTable, RowsDigest};
pub use crate::chain::{repository_of, Opened, PointInTime};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::archive::{ArchiveIndex, ArchiveReader, SecretKey, Unlock};
use crate::backup::{self, BackupOutcome, BackupRequest};
use crate::configurations::BackupType;
use crate::error::{Error, ErrorCode, Result};
use crate::repository::Repository;
use crate::migrate::CopyAs;
use crate::source::pg_apply::{self, Scope, TableChange, TenantScope};
use crate::source::{self, CancelToken, Include, ProgressSink, SourceSpec};
use crate::keys::unlock::KeySources;

/// The spec's `restore_type`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, TS, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum RestoreType {
    #[default]
    Full,
    Selective,
    #[cfg_attr(feature = "clap", value(name = "tenant_only", alias = "tenant-only"))]
    TenantOnly,
}

impl RestoreType {
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreType::Full => "full",
            RestoreType::Selective => "selective",
            RestoreType::TenantOnly => "tenant_only",
        }
    }
}

/// Everything a restore needs to know. `from` and `target` are resolved by the host (a path and
/// a URL that may hold a password: never stored). With the `clap` feature it is also the
/// command line's `safehold restore` arguments (`help` gives the flag's text where the field's
/// documentation speaks of the engine).
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct RestoreRequest {
    /// A repository directory or an archive file.
    #[cfg_attr(feature = "clap", arg(long))]
    pub from: PathBuf,
    /// A backup of the repository (default: the newest, or the newest at `at`).
    #[cfg_attr(feature = "clap", arg(long = "backup", conflicts_with = "at", help = "The backup's id (default: the newest in the repository)"))]
    pub backup_id: Option<String>,
    /// Point in time (RFC 3339): the newest backup whose snapshot is at or before it.
    #[cfg_attr(feature = "clap", arg(long))]
    pub at: Option<String>,
    /// With `at`: only backups of this source (its name as listings show it).
    #[cfg_attr(feature = "clap", arg(long = "source", help = "With --at, when the repository holds backups of several databases: the source's name"))]
    pub source_name: Option<String>,
    /// The database to restore into: postgres://user@host:port/db or sqlite:///path/to.db
    #[cfg_attr(feature = "clap", arg(long))]
    pub target: String,
    #[cfg_attr(feature = "clap", arg(long = "type", value_enum, default_value = "full"))]
    pub restore_type: RestoreType,
    /// Selective: the tables to restore (comma-separated; schema.table or table).
    #[cfg_attr(feature = "clap", arg(long, value_delimiter = ','))]
    pub tables: Vec<String>,
    /// Selective: tables to leave out.
    #[cfg_attr(feature = "clap", arg(long, value_delimiter = ','))]
    pub exclude_tables: Vec<String>,
    /// Tenant only: the tenant's id.
    #[cfg_attr(feature = "clap", arg(long = "tenant"))]
    pub tenant_id: Option<String>,
    /// `false`: restore the tenant as a copy under a new tenant id (the command line: `--as-copy`
    /// or `--new-tenant-id`, see [`RestoreRequest::as_copy`]).
    #[cfg_attr(feature = "clap", arg(skip = true))]
    pub preserve_ids: bool,
    /// Tenant only: restore the tenant as a copy under this new tenant id (new keys everywhere).
    #[cfg_attr(feature = "clap", arg(long, conflicts_with = "preserve_ids"))]
    pub new_tenant_id: Option<String>,
    /// Tenant only, as a copy: the new tenant's name (the tenants table's `name` column).
    #[cfg_attr(feature = "clap", arg(long))]
    pub new_tenant_name: Option<String>,
    /// A tenant restored as a copy: how rows equal to a target row on a unique constraint are
    /// resolved, per table.
    /// (The command line gives them as `--on-conflict TABLE=RULE`, read by
    /// [`crate::migrate::parse_conflict_rules`].)
    #[cfg_attr(feature = "clap", arg(skip))]
    pub on_conflict: ConflictRules,
    /// Tenant only, as a copy: columns whose values must differ (TABLE.COLUMN, comma-separated),
    /// each given a fresh value of the same form.
    #[cfg_attr(feature = "clap", arg(long, value_delimiter = ','))]
    pub regenerate: Vec<String>,
    /// Tenant only: a reference no foreign key declares, CHILD.COLUMN=PARENT.COLUMN (with
    /// ;TYPE_COLUMN=VALUE for a polymorphic one): the tenant's rows are found through it and a
    /// copy follows it like a foreign key. Repeat for each.
    #[cfg_attr(feature = "clap", arg(long = "reference"))]
    pub references: Vec<String>,
    /// Create the target PostgreSQL database if it does not exist (a full or selective restore;
    /// a selective restore also creates the chosen tables a target lacks, with or without it).
    #[cfg_attr(feature = "clap", arg(long))]
    pub create: bool,
    /// Full restore: drop the target's objects and restore in their place (one transaction).
    #[cfg_attr(feature = "clap", arg(long))]
    pub clean: bool,
    /// Take a safety backup before a destructive restore (skippable only explicitly).
    #[cfg_attr(feature = "clap", arg(long = "no-safety-backup", action = clap::ArgAction::SetFalse, help = "Do not back up what a destructive restore replaces first"))]
    pub safety_backup: bool,
    #[cfg_attr(feature = "clap", arg(long, default_value = "tenant_id"))]
    pub tenant_column: String,
    #[cfg_attr(feature = "clap", arg(long, default_value = "tenants"))]
    pub tenants_table: String,
    /// Full restore into PostgreSQL: leave out what the target's version cannot hold, as the plan
    /// says for each (e.g. a virtual generated column made a stored one on a server before 18),
    /// instead of refusing.
    #[cfg_attr(feature = "clap", arg(long))]
    pub skip_unsupported: bool,
    /// Full restore into PostgreSQL: give every object its owner as in the source (the roles must
    /// exist on the target; the plan names those it lacks).
    #[cfg_attr(feature = "clap", arg(long))]
    pub owners: bool,
    /// Full restore into PostgreSQL: give every object its grants as in the source.
    #[cfg_attr(feature = "clap", arg(long))]
    pub privileges: bool,
    /// How many connections build a new database at once: tables load in parallel, and each
    /// table's indexes and foreign keys are built as soon as it is complete (default: one per
    /// core). Tenant and selective restores apply in one transaction on one connection.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = default_jobs(), value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u16).range(1..), usize::from)))]
    pub jobs: usize,
}

/// The conflict rules of a tenant copy: target table → what to do with a row that clashes.
pub type ConflictRules = std::collections::BTreeMap<String, crate::migrate::Resolution>;

/// One connection per core.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(2)
}

impl RestoreRequest {
    /// Which backup the request reaches.
    pub fn pick(&self) -> crate::chain::Pick<'_> {
        crate::chain::Pick { from: &self.from, at: self.at.as_deref(), backup_id: self.backup_id.as_deref(), source_name: self.source_name.as_deref() }
    }

    pub fn new(from: impl Into<PathBuf>, target: impl Into<String>) -> Self {
        Self {
            from: from.into(),
            target: target.into(),
            preserve_ids: true,
            safety_backup: true,
            tenant_column: "tenant_id".into(),
            tenants_table: "tenants".into(),
            jobs: default_jobs(),
            ..Default::default()
        }
    }

    /// A tenant restore as a copy (new ids) when asked (`--as-copy`) or when a new tenant id is
    /// given; in place otherwise.
    pub fn as_copy(&mut self, asked: bool) {
        self.preserve_ids = !(asked || self.new_tenant_id.is_some());
    }

    /// A copy of a tenant adds rows and replaces none: everything else here replaces something.
    pub fn destructive(&self) -> bool {
        match self.restore_type {
            RestoreType::Full => self.clean,
            RestoreType::Selective => true,
            RestoreType::TenantOnly => self.preserve_ids,
        }
    }
}

#[derive(Debug, Clone, Serialize, TS)]
pub struct PlanBackup {
    pub id: String,
    pub backup_type: String,
    pub snapshot_time: String,
    pub source_name: String,
    pub file: String,
}


/// What a restore will do, shown before anything is touched.
#[derive(Debug, Clone, Serialize, TS)]
pub struct RestorePlan {
    pub restore_type: RestoreType,
    /// The backups read, the full first.
    pub chain: Vec<PlanBackup>,
    pub point_in_time: Option<PointInTime>,
    pub target: String,
    /// The database (or file) name to type to confirm a destructive restore.
    pub target_database: String,
    pub create: bool,
    pub clean: bool,
    pub tenant_id: Option<String>,
    pub preserve_ids: bool,
    /// The copy's tenant id (known after a dry run, or when given).
    pub new_tenant_id: Option<String>,
    /// Per table: rows in the backup and — for a dry-run plan — inserted, updated, deleted.
    pub tables: Vec<TableChange>,
    pub rows: u64,
    /// Tables and views of the target a `clean` restore drops.
    pub replaced_objects: u64,
    pub destructive: bool,
    pub safety_backup: bool,
    pub warnings: Vec<String>,
    /// What the target's PostgreSQL cannot hold, each named with the reason and what
    /// `--skip-unsupported` does with it (a full restore refuses while this is not empty, unless
    /// asked to leave them out and each can be).
    pub unsupported: Vec<String>,
    /// The counts come from a rolled-back dry run against the target (not only from the index).
    pub exact: bool,
    pub estimated_bytes: u64,
    pub estimated_seconds: f64,
}

#[derive(Debug, Clone, Serialize, TS)]
pub struct RestoreOutcome {
    pub archive_id: String,
    pub target: String,
    pub restore_type: RestoreType,
    pub tables: u64,
    pub rows: u64,
    /// How many backups of the chain were read (1 for a full).
    pub backups: u64,
    pub seconds: f64,
    /// Per table, what changed (selective and tenant restores).
    pub changes: Vec<TableChange>,
    pub new_tenant_id: Option<String>,
    pub safety_backup: Option<BackupOutcome>,
    pub point_in_time: Option<PointInTime>,
}

/// A backup restores only into a database of its kind.
fn same_kind(reader: &ArchiveReader, target: &SourceSpec) -> Result<()> {
    if reader.header.source_kind != target.kind() {
        return Err(Error::validation(format!(
            "the backup {} is of a {} database and cannot be restored into {}; restore it into a {} target",
            reader.header.archive_id,
            reader.header.source_kind,
            target.display(),
            reader.header.source_kind
        )));
    }
    Ok(())
}

/// Opens and unlocks an archive: with the repository's master key, or on its own with a
/// password or the recovery key.
pub fn open_archive(path: &Path, master: Option<&SecretKey>, unlock: Option<&Unlock>) -> Result<ArchiveReader> {
    let mut reader = ArchiveReader::open(path)?;
    reader.unlock(master, unlock)?;
    Ok(reader)
}




/// The tables a selective restore names, resolved against the backup's tables (bare names match
/// when unambiguous).
fn resolve_tables(names: &[String], available: &[String]) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        // As the backup names it (`schema.table`, a part with a dot quoted), as typed without the
        // quotes (`my.schema.orders`), or the table alone.
        let hits: Vec<&String> = available
            .iter()
            .filter(|a| {
                let (s, t) = crate::source::tenancy::split_section(a);
                a.as_str() == n || t == n || format!("{s}.{t}") == n
            })
            .collect();
        match hits.as_slice() {
            [one] => {
                out.insert((*one).clone());
            }
            [] => {
                return Err(Error::not_found(format!(
                    "the backup has no table \"{n}\"; its tables are: {}",
                    available.iter().take(30).cloned().collect::<Vec<_>>().join(", ")
                )))
            }
            many => {
                return Err(Error::validation(format!(
                    "\"{n}\" names several tables ({}); give it with its schema",
                    many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )))
            }
        }
    }
    Ok(out)
}

/// Table sections of an index (not schema or key lists).
fn table_sections(index: &ArchiveIndex) -> Vec<String> {
    index.sections.iter().filter(|s| s.kind == "table" && s.name != "sqlite_sequence").map(|s| s.name.clone()).collect()
}

/// Rows a table will have after the chain.
fn final_rows(index: &ArchiveIndex, table: &str) -> u64 {
    index.rows_after_chain(table)
}

fn scope_of(req: &RestoreRequest, available: &[String]) -> Result<Option<Scope>> {
    Ok(match req.restore_type {
        RestoreType::Full => None,
        RestoreType::Selective => {
            let mut set = if req.tables.is_empty() { available.iter().cloned().collect() } else { resolve_tables(&req.tables, available)? };
            for t in resolve_tables(&req.exclude_tables, available)? {
                set.remove(&t);
            }
            if set.is_empty() {
                return Err(Error::validation("a selective restore needs at least one table: give --tables (or fewer --exclude-tables)"));
            }
            Some(Scope::Tables(set))
        }
        RestoreType::TenantOnly => {
            let tenant = req.tenant_id.clone().filter(|t| !t.trim().is_empty()).ok_or_else(|| Error::validation("a tenant-only restore needs the tenant's id (--tenant)"))?;
            Some(Scope::Tenant(TenantScope {
                tenant_id: tenant,
                tenant_column: req.tenant_column.clone(),
                tenants_table: req.tenants_table.clone(),
                references: req.references.clone(),
            }))
        }
    })
}

/// Picks the archive to restore: a backup by id, the newest at a point in time, or the newest.
pub fn select_backup(req: &RestoreRequest) -> Result<(PathBuf, Option<Repository>, Option<PointInTime>)> {
    crate::chain::select(&req.pick())
}

/// Opens the chain of the backup a request restores.
pub async fn open(req: &RestoreRequest, keys: &KeySources) -> Result<Opened> {
    crate::chain::open(&req.pick(), keys).await
}

/// Applies a selective or tenant scope of the backup: a tenant restored without its ids goes
/// through the migration writer (new keys, a new tenant); anything else replaces rows in place.
async fn apply_scope(req: &RestoreRequest, chain: &pg_apply::Chain, url: &str, scope: &Scope, commit: bool, cancel: &CancelToken, progress: &ProgressSink) -> Result<pg_apply::ApplyOutcome> {
    match scope {
        Scope::Tenant(ts) if !req.preserve_ids => {
            let copy = CopyAs {
                new_tenant_id: req.new_tenant_id.clone(),
                new_tenant_name: req.new_tenant_name.clone(),
                conflicts: req.on_conflict.clone(),
                rules: req.regenerate.iter().filter_map(|c| c.trim().rsplit_once('.')).map(|(t, c)| crate::migrate::rules::Rule { table: t.into(), column: c.into(), action: crate::migrate::rules::Action::Regenerate { template: None } }).collect(),
            };
            crate::migrate::restore_tenant_as_copy(chain, url, ts, &copy, commit, cancel, progress).await
        }
        _ => pg_apply::apply(chain, url, scope, commit, cancel, progress).await,
    }
}




/// A SQLite file in the URL form the migration writer takes.
fn sqlite_url(path: &std::path::Path) -> String {
    format!("sqlite://{}", path.display())
}

fn database_name(target: &SourceSpec) -> String {
    match target {
        SourceSpec::Postgres { url } => url::Url::parse(url).map(|u| u.path().trim_start_matches('/').to_string()).unwrap_or_default(),
        SourceSpec::Sqlite { path } => path.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default(),
    }
}

/// Plans a restore. With `exact`, selective and tenant restores run once against the target in
/// a transaction that is rolled back, which gives exact counts and finds an incompatible target
/// before anything is kept.
pub async fn plan(req: &RestoreRequest, opened: &Opened, exact: bool, cancel: &CancelToken) -> Result<RestorePlan> {
    let target = SourceSpec::parse(&req.target)?;
    let (reader, index) = opened.chain.last().ok_or_else(|| Error::validation("nothing to restore"))?;
    same_kind(reader, &target)?;
    let available = table_sections(index);
    let scope = scope_of(req, &available)?;
    let mut plan = RestorePlan {
        restore_type: req.restore_type,
        chain: opened
            .chain
            .iter()
            .map(|(r, _)| PlanBackup {
                id: r.header.archive_id.clone(),
                backup_type: r.header.backup_type.clone(),
                snapshot_time: r.header.snapshot_time.clone(),
                source_name: r.header.source_name.clone(),
                file: r.path().display().to_string(),
            })
            .collect(),
        point_in_time: opened.point_in_time.clone(),
        target: target.display(),
        target_database: database_name(&target),
        create: req.create,
        clean: req.clean,
        tenant_id: req.tenant_id.clone().filter(|_| req.restore_type == RestoreType::TenantOnly),
        preserve_ids: req.preserve_ids,
        new_tenant_id: req.new_tenant_id.clone().filter(|_| !req.preserve_ids && req.restore_type == RestoreType::TenantOnly),
        tables: Vec::new(),
        rows: 0,
        replaced_objects: 0,
        destructive: req.destructive(),
        safety_backup: req.safety_backup && req.destructive(),
        warnings: Vec::new(),
        unsupported: Vec::new(),
        exact: false,
        estimated_bytes: 0,
        estimated_seconds: 0.0,
    };
    let raw: u64 = opened.chain.iter().flat_map(|(_, ix)| ix.sections.iter()).map(|s| s.plain_bytes).sum();
    plan.estimated_bytes = raw;
    // ~60 MB/s of COPY text through load and index builds on a small machine: an estimate.
    plan.estimated_seconds = (raw as f64 / 60e6).max(0.5);
    match (&target, &scope) {
        (SourceSpec::Sqlite { path }, None) => {
            if req.clean {
                return Err(Error::validation("--clean is for PostgreSQL targets; restore a SQLite backup into a new file"));
            }
            if path.exists() && std::fs::metadata(path).map(|m| m.len() > 0).unwrap_or(false) {
                return Err(Error::conflict(format!("{} already exists; restore into a new file", path.display())));
            }
            plan.tables = available.iter().map(|t| TableChange { table: t.clone(), rows_in_backup: final_rows(index, t), inserted: final_rows(index, t), updated: 0, deleted: 0 }).collect();
        }
        (SourceSpec::Sqlite { path }, Some(Scope::Tables(set))) => {
            if req.clean {
                return Err(Error::validation("--clean is for PostgreSQL targets: a selective restore replaces only the chosen tables"));
            }
            if !path.exists() {
                plan.warnings.push(format!("{} does not exist: it is made with the chosen tables only", path.display()));
            }
            // Only an existing file has rows to replace (and to keep in a safety backup).
            plan.destructive = path.exists();
            plan.safety_backup = req.safety_backup && plan.destructive;
            if exact {
                let started = std::time::Instant::now();
                plan.tables = source::sqlite::restore_tables(&opened.chain, path, set, false, cancel, &source::no_progress()).await?;
                plan.exact = true;
                plan.estimated_seconds = started.elapsed().as_secs_f64();
            } else {
                plan.tables = set.iter().map(|t| TableChange { table: t.clone(), rows_in_backup: final_rows(index, t), inserted: 0, updated: 0, deleted: 0 }).collect();
            }
        }
        (SourceSpec::Sqlite { path }, Some(Scope::Tenant(ts))) => {
            if req.clean || req.create {
                return Err(Error::validation("--clean and --create are for full restores: a tenant restore writes into an existing database"));
            }
            if exact && req.preserve_ids {
                let started = std::time::Instant::now();
                plan.tables = source::sqlite::restore_tenant(&opened.chain, path, &ts.tenant_column, &ts.tenants_table, &ts.tenant_id, false, cancel, &source::no_progress()).await?;
                plan.exact = true;
                plan.estimated_seconds = started.elapsed().as_secs_f64();
            } else if exact {
                // As a copy: the migration writer, through the target's URL form.
                let started = std::time::Instant::now();
                let out = apply_scope(req, &opened.chain, &sqlite_url(path), &Scope::Tenant(ts.clone()), false, cancel, &source::no_progress()).await?;
                plan.exact = true;
                plan.tables = out.tables;
                plan.warnings.extend(out.warnings);
                plan.new_tenant_id = plan.new_tenant_id.or(out.new_tenant_id.map(|id| format!("{id} (drawn in the dry run; the restore draws its own)")));
                plan.estimated_seconds = started.elapsed().as_secs_f64();
            }
        }
        (SourceSpec::Postgres { url }, None) => {
            let exists = database_exists(url).await?;
            if !exists && !req.create {
                return Err(Error::not_found(format!("the target database {} does not exist; add --create to create it", plan.target_database)));
            }
            if exists {
                let mut conn = source::postgres::connect(url).await?;
                let n = source::postgres::count_user_relations(&mut conn).await?;
                let _ = sqlx::Connection::close(conn).await;
                if n > 0 && !req.clean {
                    return Err(Error::conflict(format!(
                        "the target {} already has {n} tables or views; restore into a new database (--create with a new name) or replace them with --clean",
                        plan.target
                    )));
                }
                plan.replaced_objects = u64::try_from(n).unwrap_or(0);
            }
            plan.destructive = plan.replaced_objects > 0;
            plan.safety_backup = req.safety_backup && plan.destructive;
            plan.tables = available.iter().map(|t| TableChange { table: t.clone(), rows_in_backup: final_rows(index, t), inserted: final_rows(index, t), updated: 0, deleted: 0 }).collect();
            let schema = source::postgres::archived_schema(reader, index)?;
            let on = source::postgres::Restoring::on(url, req.skip_unsupported, req.owners, req.privileges).await?;
            plan.unsupported = source::postgres::unsupported(&on, &schema).into_iter().map(|(what, _)| what).collect();
            let missing = on.missing_roles(&schema);
            if !missing.is_empty() {
                plan.warnings.push(format!(
                    "the target has no role {}: what they own is owned by the restoring user, what they were granted is not granted, and their user mappings are left out (make the roles first, e.g. with restore --server)",
                    missing.join(", ")
                ));
            }
        }
        (SourceSpec::Postgres { url }, Some(scope)) => {
            let tables = match scope {
                Scope::Tables(set) => Some(set),
                Scope::Tenant(_) => None,
            };
            if req.clean || (req.create && tables.is_none()) {
                return Err(Error::validation(
                    "--clean is for full restores, and --create for full and selective ones: a tenant restore writes into an existing database",
                ));
            }
            let exists = database_exists(url).await?;
            if !exists && !req.create {
                return Err(Error::not_found(format!(
                    "the target database {} does not exist; {}",
                    plan.target_database,
                    if tables.is_some() { "add --create to create it with the tables restored" } else { "a tenant restore writes into an existing database" }
                )));
            }
            // The chosen tables the target has (read once: the safety backup and the plan's words).
            let replaced = match tables {
                Some(set) if exists => pg_apply::existing_tables(url, set).await?,
                _ => BTreeSet::new(),
            };
            if tables.is_some() {
                // Nothing to replace where the tables are new: no safety backup of them.
                if replaced.is_empty() {
                    plan.destructive = false;
                    plan.safety_backup = false;
                }
                if !exists {
                    plan.warnings.push(format!("the database {} does not exist: it is created with the tables restored", plan.target_database));
                }
            }
            if exact {
                let started = std::time::Instant::now();
                // Into a database that does not exist yet: tried in one built for the plan and dropped.
                let building = if exists { None } else { source::postgres::start_building(url).await? };
                let into = building.as_ref().map(|b| b.url.clone()).unwrap_or_else(|| url.clone());
                let tried = apply_scope(req, &opened.chain, &into, scope, false, cancel, &source::no_progress()).await;
                if let Some(b) = building {
                    b.abandon().await;
                }
                let out = tried?;
                plan.exact = true;
                plan.tables = out.tables;
                plan.warnings.extend(out.warnings);
                plan.new_tenant_id = plan.new_tenant_id.or(out.new_tenant_id.map(|id| format!("{id} (drawn in the dry run; the restore draws its own)")));
                plan.estimated_seconds = started.elapsed().as_secs_f64();
            } else {
                if let (Scope::Tables(set), true) = (scope, exists) {
                    let fks = pg_apply::foreign_keys(url).await?;
                    plan.warnings.extend(set.difference(&replaced).map(|t| format!("{t} does not exist in the target: it is created as the backup has it")));
                    plan.warnings.extend(pg_apply::fk_warnings(set, &fks));
                    plan.tables = set.iter().map(|t| TableChange { table: t.clone(), rows_in_backup: final_rows(index, t), inserted: 0, updated: 0, deleted: 0 }).collect();
                }
            }
        }
    }
    plan.rows = plan.tables.iter().map(|t| t.rows_in_backup).sum();
    Ok(plan)
}

async fn database_exists(url: &str) -> Result<bool> {
    let mut admin = url::Url::parse(url).map_err(|e| Error::validation(format!("invalid PostgreSQL URL: {e}")).caused_by(&e))?;
    let db = admin.path().trim_start_matches('/').to_string();
    if db.is_empty() {
        return Err(Error::validation("the target URL names no database"));
    }
    admin.set_path("/postgres");
    let mut conn = source::postgres::connect(admin.as_str()).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&db)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| Error::new(ErrorCode::Database, format!("PostgreSQL: cannot look for the database {db}: {e}")).caused_by(&e))?;
    let _ = sqlx::Connection::close(conn).await;
    Ok(exists)
}

/// Runs a restore: safety backup first when the restore is destructive (and not skipped), then
/// the restore itself in one transaction (or into a new database dropped again on failure).
pub async fn execute(req: &RestoreRequest, opened: Opened, keys: &KeySources, cancel: &CancelToken, progress: &ProgressSink) -> Result<RestoreOutcome> {
    let started = std::time::Instant::now();
    let plan = plan(req, &opened, false, cancel).await?;
    let target = SourceSpec::parse(&req.target)?;
    let (reader, index) = opened.chain.last().cloned().ok_or_else(|| Error::validation("nothing to restore"))?;
    let available = table_sections(&index);
    let scope = scope_of(req, &available)?;

    let safety_backup = if plan.safety_backup {
        cancel.check()?;
        Some(safety_backup(req, &opened, &scope, &target, keys, cancel, progress).await?)
    } else {
        None
    };
    let mut out = RestoreOutcome {
        archive_id: reader.header.archive_id.clone(),
        target: target.display(),
        restore_type: req.restore_type,
        tables: 0,
        rows: 0,
        backups: opened.chain.len() as u64,
        seconds: 0.0,
        changes: Vec::new(),
        new_tenant_id: None,
        safety_backup,
        point_in_time: opened.point_in_time.clone(),
    };
    match (&target, scope) {
        (SourceSpec::Sqlite { path }, None) => {
            out.rows = source::sqlite::restore(&opened.chain, path, cancel, progress).await?;
            out.tables = available.len() as u64;
        }
        (SourceSpec::Postgres { url }, None) => {
            // What the target's version cannot hold: refused before anything is written, unless
            // asked to leave it out and each thing can be.
            let how = source::postgres::Restoring::on(url, req.skip_unsupported, req.owners, req.privileges).await?;
            let unsupported = source::postgres::unsupported(&how, &source::postgres::archived_schema(&reader, &index)?);
            let blocking: Vec<&str> = unsupported.iter().filter(|(_, can)| !req.skip_unsupported || !can).map(|(w, _)| w.as_str()).collect();
            if !blocking.is_empty() {
                return Err(Error::validation(format!(
                    "the target cannot hold {} of what this backup has; nothing was written:\n  {}{}",
                    blocking.len(),
                    blocking.join("\n  "),
                    if unsupported.iter().all(|(_, can)| *can) { "\nadd --skip-unsupported to restore without them" } else { "" }
                )));
            }
            // A new database is built under a temporary name and renamed when complete: a crash
            // never leaves a half-made database under the target's name.
            let building = if req.create { source::postgres::start_building(url).await? } else { None };
            out.rows = source::postgres::restoring(how, async { Ok::<u64, Error>(match building {
                Some(b) => {
                    let r = if req.jobs > 1 {
                        source::postgres::restore_parallel(&opened.chain, &b.url, req.jobs, cancel, progress).await
                    } else {
                        source::postgres::restore(&opened.chain, &b.url, false, cancel, progress).await
                    };
                    match r {
                        Ok(rows) => {
                            b.finish().await?;
                            rows
                        }
                        Err(e) => {
                            b.abandon().await;
                            return Err(e);
                        }
                    }
                }
                None => source::postgres::restore(&opened.chain, url, req.clean, cancel, progress).await?,
            }) })
            .await?;
            out.tables = available.len() as u64;
        }
        (SourceSpec::Postgres { url }, Some(scope)) => {
            // A selective restore with --create into a database that does not exist builds it
            // under a temporary name, renamed when complete (as a full restore does).
            let building = if req.create && matches!(scope, Scope::Tables(_)) { source::postgres::start_building(url).await? } else { None };
            let applied = match building {
                Some(b) => match apply_scope(req, &opened.chain, &b.url, &scope, true, cancel, progress).await {
                    Ok(a) => {
                        b.finish().await?;
                        a
                    }
                    Err(e) => {
                        b.abandon().await;
                        return Err(e);
                    }
                },
                None => apply_scope(req, &opened.chain, url, &scope, true, cancel, progress).await?,
            };
            out.tables = applied.tables.len() as u64;
            out.rows = applied.tables.iter().map(|t| t.rows_in_backup).sum();
            out.changes = applied.tables;
            out.new_tenant_id = applied.new_tenant_id;
        }
        (SourceSpec::Sqlite { path }, Some(Scope::Tables(set))) => {
            let changes = source::sqlite::restore_tables(&opened.chain, path, &set, true, cancel, progress).await?;
            out.tables = changes.len() as u64;
            out.rows = changes.iter().map(|t| t.rows_in_backup).sum();
            out.changes = changes;
        }
        (SourceSpec::Sqlite { path }, Some(Scope::Tenant(ts))) if !req.preserve_ids => {
            let applied = apply_scope(req, &opened.chain, &sqlite_url(path), &Scope::Tenant(ts), true, cancel, progress).await?;
            out.tables = applied.tables.len() as u64;
            out.rows = applied.tables.iter().map(|t| t.rows_in_backup).sum();
            out.changes = applied.tables;
            out.new_tenant_id = applied.new_tenant_id;
        }
        (SourceSpec::Sqlite { path }, Some(Scope::Tenant(ts))) => {
            let changes = source::sqlite::restore_tenant(&opened.chain, path, &ts.tenant_column, &ts.tenants_table, &ts.tenant_id, true, cancel, progress).await?;
            out.tables = changes.len() as u64;
            out.rows = changes.iter().map(|t| t.rows_in_backup).sum();
            out.changes = changes;
        }
    }
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

/// A backup of what a restore will replace, into the repository the restore reads from: the
/// tenant's rows for a tenant restore of PostgreSQL (a tenant export of that one tenant: one
/// tenant costs one tenant; the tenant tables whole on SQLite), the chosen tables for a
/// selective one, the whole target for a `clean` full restore.
async fn safety_backup(req: &RestoreRequest, opened: &Opened, scope: &Option<Scope>, target: &SourceSpec, keys: &KeySources, cancel: &CancelToken, progress: &ProgressSink) -> Result<BackupOutcome> {
    let repo = opened.repo.as_ref().ok_or_else(|| {
        Error::validation(
            "a safety backup goes into the backup's repository, and this archive is not in one: restore from the repository directory, or skip the safety backup explicitly (--no-safety-backup)",
        )
    })?;
    let master = keys.unlock_repository(repo).await.map_err(|e| Error::new(e.code, format!("cannot take the safety backup: {}", e.message)).caused_by(&e))?;
    // (It goes into the repository: its writer is approved there, with the key at hand.)
    let mut repo = repo.clone();
    if let Ok(w) = keys.writer() {
        repo.approve_writer(&master, &w.public_hex(), &w.name)?;
    }
    let repo = &repo;
    let mut b = BackupRequest::new(target.clone());
    b.source_name = format!("{} (safety backup before a {} restore)", target.display(), req.restore_type.as_str());
    b.backup_type = BackupType::Full;
    b.safety = true;
    b.signer = keys.writer.clone();
    b.tenant_column = req.tenant_column.clone();
    b.tenants_table = req.tenants_table.clone();
    b.jobs = req.jobs.max(1);
    match scope {
        // The tables the restore replaces: those it creates have nothing to keep.
        Some(Scope::Tables(set)) => {
            b.tables = Some(match target {
                SourceSpec::Postgres { url } => pg_apply::existing_tables(url, set).await?,
                SourceSpec::Sqlite { .. } => set.clone(),
            })
        }
        Some(Scope::Tenant(ts)) => {
            b.include = Include { tenant_data: true, system_data: false, logs: true };
            if matches!(target, SourceSpec::Postgres { .. }) {
                b.tenants = vec![ts.tenant_id.clone()];
            }
        }
        None => {}
    }
    backup::run(repo, &master, &b, cancel, progress).await.map_err(|e| Error::new(e.code, format!("the safety backup failed, so nothing was restored: {}", e.message)).caused_by(&e))
}

/// Restores a full backup into `target`, which must be empty (a new SQLite file, or a PostgreSQL
/// database without tables). All or nothing. Incremental and differential backups need their
/// chain: see [`restore_chain`].
pub async fn restore_full(reader: ArchiveReader, target: &SourceSpec, jobs: usize, cancel: &CancelToken, progress: &ProgressSink) -> Result<RestoreOutcome> {
    restore_chain(vec![reader], target, jobs, false, cancel, progress).await
}

/// Restores the newest backup of `chain` (its full first, then each backup that builds on the
/// one before) into the empty `target`, exactly as its source was at that backup's snapshot.
/// Into an existing database the restore is one transaction. Into a PostgreSQL database that
/// this restore created (`created_target`), `jobs` connections load and index in parallel and a
/// failure drops the new database.
pub async fn restore_chain(chain: Vec<ArchiveReader>, target: &SourceSpec, jobs: usize, created_target: bool, cancel: &CancelToken, progress: &ProgressSink) -> Result<RestoreOutcome> {
    let started = std::time::Instant::now();
    let members = crate::chain::check_chain(chain)?;
    let (reader, index) = members.last().cloned().ok_or_else(|| Error::validation("nothing to restore"))?;
    same_kind(&reader, target)?;
    let rows = match target {
        SourceSpec::Sqlite { path } => source::sqlite::restore(&members, path, cancel, progress).await?,
        SourceSpec::Postgres { url } if created_target && jobs > 1 => source::postgres::restore_parallel(&members, url, jobs, cancel, progress).await?,
        SourceSpec::Postgres { url } => source::postgres::restore(&members, url, false, cancel, progress).await?,
    };
    Ok(RestoreOutcome {
        archive_id: reader.header.archive_id.clone(),
        target: target.display(),
        restore_type: RestoreType::Full,
        tables: table_sections(&index).len() as u64,
        backups: members.len() as u64,
        rows,
        seconds: started.elapsed().as_secs_f64(),
        changes: Vec::new(),
        new_tenant_id: None,
        safety_backup: None,
        point_in_time: None,
    })
}
