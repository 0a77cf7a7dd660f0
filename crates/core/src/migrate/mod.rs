//! Tenant migrations: copy a tenant under a new id (in the same database or into another), merge
//! one tenant into another, export tenants to a portable ZIP, import a portable export, a
//! Safehold archive or plain CSV / JSON Lines files into a tenant.
//!
//! Every migration runs the same way, in ONE transaction on the database written (for an export,
//! a transaction on the source that is rolled back):
//! 1. **read** the source into staging tables (text columns): a tenant's rows from a live
//!    database in one snapshot (tenant tables found by the tenant column and foreign keys), a
//!    backup, a checked portable export, or files named after their tables;
//! 2. **rules** change the staged rows, in order ([`rules`]);
//! 3. **mapping** casts each source table onto its target table (renamed and dropped columns,
//!    defaults), rows whose values do not fit the target's types set aside with the reason;
//! 4. **write** ([`write`]): new keys, rewritten foreign keys, the tenant column, unique conflicts
//!    resolved per table, rows breaking NOT NULL or lacking a parent set aside; inserted parents
//!    first; for a merge, the source tenant removed when asked.
//!
//! Validation is the same run rolled back: its report lists per table the rows read, written and
//! set aside, with samples. A real run that would set rows aside stops and keeps nothing, unless
//! the user accepted skipping them (`skip_rejected`).

pub mod portable;
pub mod records;
pub mod rules;
pub(crate) mod sqlite;
mod stage;
mod write;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Connection as _, Row};
use ts_rs::TS;

use crate::error::{Error, ErrorCode, Result};
use crate::source::pg_apply::{ApplyOutcome, Chain, TableChange};
use crate::source::tenancy::{read_target, rel, write_order, Reach, Target, TenantScope, Tenancy};
use crate::source::postgres::{connect, q, qi, ql};
use crate::source::{redact, CancelToken, Progress, ProgressSink};
use crate::keys::unlock::KeySources;
use rules::Rule;
use stage::{Staged, Tx};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, TS, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MigrationType {
    TenantCopy,
    TenantMerge,
    DataExport,
    DataImport,
}

impl MigrationType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TenantCopy => "tenant_copy",
            Self::TenantMerge => "tenant_merge",
            Self::DataExport => "data_export",
            Self::DataImport => "data_import",
        }
    }
}

/// What to do with a source row equal to a target row on a unique constraint.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, TS, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Report the conflict; the migration does not run.
    #[default]
    Stop,
    /// Keep the target's row; the source row is not written and references to it go to the
    /// target's row.
    KeepTarget,
    /// The target's row takes the source row's values (its key stays); references go to it.
    TakeSource,
    /// Write both: the source row's first text column of the constraint gets the suffix.
    KeepBoth,
}

/// Conflict rules as given on a command line: `TABLE=stop|keep-target|take-source|keep-both`
/// each (`*` for every table).
/// A statement of a migration that PostgreSQL refused: what it was doing, the server's words, and
/// that nothing was written (a migration writes in one transaction).
pub(crate) fn migration_error(what: &str, e: &sqlx::Error) -> Error {
    Error::new(ErrorCode::Database, format!("the migration failed at {what}: {e}; nothing was written")).caused_by(e)
}

pub fn parse_conflict_rules(given: &[String]) -> Result<BTreeMap<String, Resolution>> {
    let mut out = BTreeMap::new();
    for c in given {
        let (table, rule) = c.split_once('=').ok_or_else(|| Error::validation(format!("--on-conflict {c}: write TABLE=stop|keep-target|take-source|keep-both")))?;
        let rule = match rule.trim().replace('_', "-").as_str() {
            "stop" => Resolution::Stop,
            "keep-target" => Resolution::KeepTarget,
            "take-source" => Resolution::TakeSource,
            "keep-both" => Resolution::KeepBoth,
            other => return Err(Error::validation(format!("--on-conflict {table}={other}: the rule is stop, keep-target, take-source or keep-both"))),
        };
        out.insert(table.trim().to_string(), rule);
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, TS, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// A ZIP of JSON Lines and CSV files with schema.json and manifest.json.
    #[default]
    Portable,
    /// A Safehold archive (encrypted with a repository's key, restorable with the restore
    /// engine): the tenants' rows of every tenant table, the shared tables whole, the schema.
    Archive,
}

/// One source table onto one target table.
#[derive(Debug, Clone, Serialize, Deserialize, TS, Default, PartialEq, Eq)]
pub struct TableMapping {
    pub source: String,
    pub target: String,
    /// Source column → target column (a column not listed goes to the target column of the
    /// same name, when there is one).
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Source columns not written.
    #[serde(default)]
    pub drop: Vec<String>,
    /// Values for target columns the source does not fill.
    #[serde(default)]
    pub defaults: BTreeMap<String, String>,
}

/// A mapping file (`--mapping`): either the list of table mappings alone, or an object with the
/// `tables` and the `references` no foreign key declares (`CHILD.COLUMN=PARENT.COLUMN`, as
/// `--reference` takes them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingFile {
    pub tables: Vec<TableMapping>,
    pub references: Vec<String>,
}

impl MappingFile {
    /// Reads a mapping file's text; `name` says which file in an error.
    pub fn parse(text: &str, name: &str) -> Result<Self> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Whole {
            #[serde(default)]
            tables: Vec<TableMapping>,
            #[serde(default)]
            references: Vec<String>,
        }
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::validation(format!("the mapping file {name} is not valid JSON: {e}")).caused_by(&e))?;
        let hint = "write a list of table mappings, or an object with \"tables\" (that list) and \"references\" ([\"child.column=parent.column\", …])";
        let invalid = |e: serde_json::Error| Error::validation(format!("the mapping file {name} is not valid: {e}; {hint}"));
        let whole = match value {
            serde_json::Value::Array(_) => Whole { tables: serde_json::from_value(value).map_err(invalid)?, references: Vec::new() },
            serde_json::Value::Object(_) => serde_json::from_value(value).map_err(invalid)?,
            _ => return Err(Error::validation(format!("the mapping file {name} is not valid: {hint}"))),
        };
        if let Some(r) = whole.references.iter().find(|r| !r.contains('=')) {
            return Err(Error::validation(format!("the mapping file {name} declares the reference \"{r}\": write it as child_table.column=parent_table.column")));
        }
        Ok(Self { tables: whole.tables, references: whole.references })
    }
}

/// A migration as the wizard and the CLI describe it.
#[derive(Debug, Clone, Serialize, Deserialize, TS, Default)]
pub struct MigrationSpec {
    pub migration_name: String,
    pub migration_type: Option<MigrationType>,
    /// The database read (copy, merge, export): a connection's id or name, or a PostgreSQL URL.
    pub source: Option<String>,
    /// The files read (import): a portable export (.zip), a Safehold archive or repository, or
    /// CSV / JSON Lines files named after their tables.
    #[serde(default)]
    pub source_files: Vec<String>,
    /// The tenants read (export: one or more; copy and merge: one).
    #[serde(default)]
    pub source_tenant_ids: Vec<String>,
    /// The database written (copy, merge, import).
    pub target: Option<String>,
    /// The file written (export).
    pub target_file: Option<String>,
    /// The tenant written: new for a copy (made from the tenants table's key when empty), the
    /// existing one for a merge, either for an import.
    pub target_tenant_id: Option<String>,
    /// The new tenant's name (copy, import into a new tenant).
    pub target_tenant_name: Option<String>,
    #[serde(default)]
    pub export_format: ExportFormat,
    /// An archive export: the repository whose key encrypts it (a storage location's name or
    /// id, or a repository directory); default: the default storage location.
    pub archive_repository: Option<String>,
    /// Empty: proposed from the names.
    #[serde(default)]
    pub mapping: Vec<TableMapping>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Per target table (`schema.table` or bare name); tables not listed: stop.
    #[serde(default)]
    pub conflicts: BTreeMap<String, Resolution>,
    /// The suffix `keep_both` adds (default `-copy`, `-merged` for a merge).
    pub suffix: Option<String>,
    /// Merge: remove the source tenant afterwards (same database only).
    #[serde(default)]
    pub remove_source_tenant: bool,
    /// Write what can be written and skip the rows validation sets aside.
    #[serde(default)]
    pub skip_rejected: bool,
    /// Override the connection's tenant column / tenants table.
    pub tenant_column: Option<String>,
    pub tenants_table: Option<String>,
    /// References that no foreign key declares, as `CHILD.COLUMN=PARENT.COLUMN` (with
    /// `;TYPE_COLUMN=VALUE` for a polymorphic one): followed like foreign keys (new keys of the
    /// parent rows reach the rows that refer to them; the rows are the tenant's through them).
    #[serde(default)]
    pub references: Vec<String>,
}

/// A problem found with some rows.
#[derive(Debug, Clone, Serialize, Deserialize, TS, PartialEq, Eq)]
pub struct Problem {
    /// `unique_conflict`, `duplicate_rows` (rows to write equal to each other under a unique
    /// index), `not_null`, `missing_parent`, `type_error`.
    pub kind: String,
    pub message: String,
    pub count: u64,
    pub samples: Vec<String>,
    /// The columns it is about (a unique constraint's, a foreign key's, the column).
    #[serde(default)]
    pub columns: Vec<String>,
}

impl Problem {
    pub(crate) fn new(kind: &str, message: String, count: i64, samples: Vec<String>) -> Self {
        Self { kind: kind.into(), message, count: u64::try_from(count).unwrap_or(0), samples, columns: Vec::new() }
    }
    pub(crate) fn on(mut self, columns: &[String]) -> Self {
        self.columns = columns.to_vec();
        self
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, TS, PartialEq, Eq, Default)]
pub struct TableReport {
    /// The target table (for an export, the source table).
    pub table: String,
    pub source_table: Option<String>,
    pub rows_read: u64,
    pub rows_written: u64,
    /// Target rows given the source's values (take source).
    pub rows_updated: u64,
    /// Source rows folded into existing target rows (keep target, the merged tenant's row).
    pub rows_merged: u64,
    /// Source rows written with the suffix (keep both).
    pub rows_renamed: u64,
    pub rows_rejected: u64,
    pub problems: Vec<Problem>,
    /// Rows left out because a row they belong to was set aside (the problem is reported there).
    pub notes: Vec<String>,
}

impl TableReport {
    pub(crate) fn new(table: &str) -> Self {
        Self { table: table.into(), ..Default::default() }
    }
}

/// What a migration did or, validated, would do.
#[derive(Debug, Clone, Serialize, Deserialize, TS, Default)]
pub struct MigrationReport {
    pub migration_type: Option<MigrationType>,
    /// False for a validation (rolled back).
    pub committed: bool,
    pub source_tenant_ids: Vec<String>,
    pub target_tenant_id: Option<String>,
    pub tables: Vec<TableReport>,
    pub warnings: Vec<String>,
    /// The mapping used (proposed when none was given).
    pub mapping: Vec<TableMapping>,
    pub target_file: Option<String>,
    pub files: Vec<portable::ExportedFile>,
    pub rows_read: u64,
    pub rows_written: u64,
    pub rows_rejected: u64,
    /// Source tenant rows removed (merge with removal).
    pub rows_removed: u64,
    /// The references no foreign key declares that it followed (given, and remembered with the
    /// connections).
    #[serde(default)]
    pub references: Vec<String>,
    /// References no foreign key declares that validation found (every value is found in the
    /// parent), to confirm: `child.col=parent.col`, each also said in `warnings`.
    #[serde(default)]
    pub inferred: Vec<String>,
}

impl MigrationReport {
    /// Problems of every table.
    pub fn problems(&self) -> impl Iterator<Item = (&str, &Problem)> {
        self.tables.iter().flat_map(|t| t.problems.iter().map(move |p| (t.table.as_str(), p)))
    }
    pub fn is_clean(&self) -> bool {
        self.problems().next().is_none()
    }
}

/// Where the migration reads and writes, resolved (URLs hold passwords: never recorded).
#[derive(Clone, Default)]
pub struct Endpoints {
    pub source_url: Option<String>,
    pub target_url: Option<String>,
    pub tenant_column: String,
    pub tenants_table: String,
    pub keys: KeySources,
    /// An archive export: the repository whose key encrypts the archive.
    pub archive_repository: Option<PathBuf>,
    /// The source's name in the archive (a connection's name).
    pub source_name: Option<String>,
    /// References declared on the connections (added to the spec's).
    pub references: Vec<String>,
}

fn kind(spec: &MigrationSpec) -> Result<MigrationType> {
    spec.migration_type.ok_or_else(|| Error::validation("choose what to do: tenant copy, tenant merge, export or import"))
}

/// Runs `spec`: validation (`commit: false`, rolled back) or the migration itself.
pub async fn execute(spec: &MigrationSpec, ends: &Endpoints, commit: bool, cancel: &CancelToken, progress: &ProgressSink) -> Result<MigrationReport> {
    if ends.references.iter().any(|r| !spec.references.contains(r)) {
        let mut spec = spec.clone();
        spec.references.extend(ends.references.iter().filter(|r| !spec.references.contains(r)).cloned().collect::<Vec<_>>());
        return run(&spec, ends, commit, cancel, progress, None).await;
    }
    run(spec, ends, commit, cancel, progress, None).await
}

/// A tenant of a backup restored as a copy: its new id and name, and how the copy treats rows
/// that clash with the target's.
#[derive(Debug, Clone, Default)]
pub struct CopyAs {
    /// The new tenant's id; when `None`, the tenants table's key default makes one.
    pub new_tenant_id: Option<String>,
    /// A new value for the tenants table's `name` column.
    pub new_tenant_name: Option<String>,
    /// How rows equal to a target row on a unique constraint are resolved, per table (as a
    /// migration's conflict rules); tables not listed: reported, nothing written.
    pub conflicts: std::collections::BTreeMap<String, Resolution>,
    /// Rules applied to the backup's rows first (e.g. `regenerate` for values that must differ).
    pub rules: Vec<Rule>,
}

/// A tenant of a backup restored as a new tenant (a tenant-only restore without its ids): the
/// migration writer reads the tenant's rows from the backup and writes them under a new id with
/// new keys. A dry run stops, as the real run would, at the problems it finds (a tenant name
/// already taken, a key value already used, …), naming each and what to do.
pub async fn restore_tenant_as_copy(chain: &Chain, url: &str, ts: &TenantScope, copy: &CopyAs, commit: bool, cancel: &CancelToken, progress: &ProgressSink) -> Result<ApplyOutcome> {
    let spec = MigrationSpec {
        migration_name: "tenant restore as a copy".into(),
        migration_type: Some(MigrationType::TenantCopy),
        source_tenant_ids: vec![ts.tenant_id.clone()],
        target_tenant_id: copy.new_tenant_id.clone(),
        target_tenant_name: copy.new_tenant_name.clone(),
        conflicts: copy.conflicts.clone(),
        rules: copy.rules.clone(),
        references: ts.references.clone(),
        ..Default::default()
    };
    let ends = Endpoints { target_url: Some(url.to_string()), tenant_column: ts.tenant_column.clone(), tenants_table: ts.tenants_table.clone(), ..Default::default() };
    let report = run(&spec, &ends, commit, cancel, progress, Some(chain)).await?;
    if !report.is_clean() {
        // The plan says what the restore would stop at, as the restore itself would.
        return Err(rejected_error(&report));
    }
    let mut out = ApplyOutcome { new_tenant_id: report.target_tenant_id.clone(), warnings: report.warnings.clone(), ..Default::default() };
    out.tables = report
        .tables
        .iter()
        .map(|t| TableChange { table: t.table.clone(), rows_in_backup: t.rows_read, inserted: t.rows_written, updated: t.rows_updated, deleted: 0 })
        .collect();
    Ok(out)
}

async fn run(spec: &MigrationSpec, ends: &Endpoints, commit: bool, cancel: &CancelToken, progress: &ProgressSink, chain: Option<&Chain>) -> Result<MigrationReport> {
    let kind = kind(spec)?;
    let tenants: Vec<String> = spec.source_tenant_ids.iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
    let mut report = MigrationReport { migration_type: Some(kind), source_tenant_ids: tenants.clone(), references: spec.references.clone(), ..Default::default() };
    let step = |phase: &str, done: u64| progress(Progress { phase: phase.into(), table: None, tables_done: done, tables_total: 4, rows: 0, bytes: 0 });
    for r in &spec.rules {
        if r.table.trim().is_empty() || r.column.trim().is_empty() {
            return Err(Error::validation("every rule needs a table and a column"));
        }
    }
    // A SQLite database on either side: the SQLite writer (rows in memory, same report).
    let lite = |u: &Option<String>| u.as_deref().and_then(|u| u.strip_prefix("sqlite://")).map(PathBuf::from);
    let (lite_source, lite_target) = (lite(&ends.source_url), lite(&ends.target_url));
    if lite_source.is_some() || lite_target.is_some() {
        let crosses = match kind {
            MigrationType::DataExport | MigrationType::DataImport => false,
            _ => chain.is_none() && (lite_source.is_some() != lite_target.is_some()) && ends.source_url.is_some() && ends.target_url.is_some(),
        };
        if crosses || (kind == MigrationType::DataExport && lite_source.is_none()) {
            return Err(Error::validation(
                "a tenant is copied or merged between two SQLite databases or two PostgreSQL ones: to take it from one engine to the other, export it (portable format) and import the file",
            ));
        }
        if matches!(kind, MigrationType::TenantCopy | MigrationType::TenantMerge) && tenants.len() != 1 {
            return Err(Error::validation("choose the one tenant to copy or merge (--tenant)"));
        }
        let from = match (chain, kind) {
            (Some(c), _) => sqlite::Origin::Backup(c),
            (None, MigrationType::DataImport) => sqlite::Origin::Files,
            (None, _) => sqlite::Origin::Database(lite_source.ok_or_else(|| Error::validation("choose the database to read the tenant from (--source)"))?),
        };
        return sqlite::run(spec, ends, from, lite_target, &tenants, commit, cancel, progress).await;
    }
    if kind == MigrationType::DataExport {
        return export(spec, ends, &tenants, commit, cancel, progress, &step, report).await;
    }
    if matches!(kind, MigrationType::TenantCopy | MigrationType::TenantMerge) && tenants.len() != 1 {
        return Err(Error::validation("choose the one tenant to copy or merge (--tenant)"));
    }
    let target_url = ends.target_url.as_deref().ok_or_else(|| Error::validation("choose the database to write into (--target)"))?;
    let mut conn = connect(target_url).await?;
    let mut target = read_target(&mut conn).await?;
    for r in spec.references.iter().filter(|r| !r.trim().is_empty()) {
        let fk = crate::source::tenancy::parse_reference(r, &target)?;
        target.fks.push(fk);
    }
    let mut tx = conn.begin().await.map_err(q("start the migration's transaction"))?;
    sqlx::raw_sql("SET CONSTRAINTS ALL DEFERRED; SET LOCAL extra_float_digits = 3").execute(&mut *tx).await.map_err(q("defer constraints"))?;

    // 1. Read.
    step("reading the source", 0);
    let mut staged = Staged::default();
    let mut source_schema: Option<Target> = None;
    match (chain, kind) {
        (Some(chain), _) => {
            stage::from_archive(&mut tx, &mut staged, chain, &target, cancel).await?;
            stage::keep_tenants(&mut tx, &mut staged, &target, &tenants, &ends.tenant_column, &ends.tenants_table).await?;
        }
        (None, MigrationType::TenantCopy | MigrationType::TenantMerge) => {
            let url = ends.source_url.as_deref().ok_or_else(|| Error::validation("choose the database to read the tenant from (--source)"))?;
            source_schema = Some(stage::from_live(&mut tx, &mut staged, url, &tenants, &ends.tenant_column, &ends.tenants_table, &spec.references, &mut report.warnings, cancel).await?);
        }
        (None, MigrationType::DataImport) => read_files(&mut tx, &mut staged, spec, ends, &target, &tenants, cancel).await?,
        (None, MigrationType::DataExport) => unreachable!(),
    }
    report.rows_read = staged.tables.iter().map(|t| t.rows).sum();

    // 2. Rules.
    step("applying the rules", 1);
    apply_rules(&mut tx, &mut staged, &spec.rules, Some(&target)).await?;

    // 3. Mapping.
    let mapping = settle_mapping(spec, kind, &mut report, |lost| propose(&staged, &target, lost))?;
    let (finals, mut reports) = map_rows(&mut tx, &staged, &target, &mapping, &ends.tenant_column).await?;

    // The tenant written.
    let mut names: Vec<String> = finals.keys().cloned().collect();
    names.sort();
    let order = write_order(&names, &target.fks)?;
    let available: BTreeSet<String> = finals.keys().cloned().collect();
    let scope = TenantScope { tenant_id: String::new(), tenant_column: ends.tenant_column.clone(), tenants_table: ends.tenants_table.clone(), references: Vec::new() };
    let mut tenancy = Tenancy::find(&target, &scope, &target.cols.keys().cloned().collect())?;
    for t in &order.tables {
        if !tenancy.reach.contains_key(t) {
            return Err(Error::validation(format!(
                "{t} is not a tenant table of the target (it has no column {} and no foreign key to a tenant table): leave it out of the mapping",
                ends.tenant_column
            )));
        }
    }
    tenancy.reach.retain(|t, _| available.contains(t));
    // References that look declared-worthy: shown, for the administrator to confirm.
    let declared: Vec<&str> = spec.references.iter().map(|r| r.trim()).collect();
    // (Every table: one that no declared key links to the tenant is left out of the copy.)
    let mut all_tables: Vec<String> = target.cols.keys().cloned().collect();
    all_tables.sort();
    for r in crate::source::tenancy::inferred_references(&mut tx, &target, &all_tables, &ends.tenant_column).await? {
        if !declared.iter().any(|d| r.starts_with(d.split(';').next().unwrap_or(d))) {
            report.warnings.push(if r.contains(" is a polymorphic") {
                format!("inferred: {r}")
            } else {
                report.inferred.push(r.clone());
                format!("inferred: {r} looks like a reference that no foreign key declares (every value is found there): a copy keeps its values; confirm it with --reference {r}")
            });
        }
    }
    let (tenant, existing) = target_tenant(&mut tx, &target, &tenancy, kind, spec, &tenants, ends).await?;
    tenancy.tenant = tenant.clone();
    report.target_tenant_id = Some(tenant.clone());

    // 4. Write.
    step("writing", 2);
    let suffix = spec.suffix.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| if kind == MigrationType::TenantMerge { "-merged".into() } else { "-copy".into() });
    let writer = write::Writer { target: &target, tenancy: &tenancy, tenant: tenant.clone(), existing, new_name: spec.target_tenant_name.clone().filter(|n| !n.trim().is_empty()), conflicts: &spec.conflicts, suffix: &suffix };
    writer.write(&mut tx, &order, &finals, &mut reports, cancel).await?;
    if kind == MigrationType::TenantMerge && spec.remove_source_tenant {
        if ends.source_url.as_deref() != Some(target_url) {
            return Err(Error::validation("the source tenant can be removed only when it is in the database merged into"));
        }
        let schema = source_schema.as_ref().unwrap_or(&target);
        report.rows_removed = remove_tenant(&mut tx, schema, &tenants[0], ends, cancel).await?;
    }
    cancel.check()?;
    report.tables = order.tables.iter().filter_map(|t| reports.remove(t)).collect();
    report.rows_written = report.tables.iter().map(|t| t.rows_written + t.rows_updated).sum();
    report.rows_rejected = report.tables.iter().map(|t| t.rows_rejected).sum();
    step("finishing", 3);
    if commit && !report.is_clean() && !spec.skip_rejected {
        let _ = tx.rollback().await;
        return Err(rejected_error(&report));
    }
    if commit {
        tx.commit().await.map_err(q("commit the migration"))?;
    } else {
        tx.rollback().await.map_err(q("roll back the validation"))?;
    }
    report.committed = commit;
    Ok(report)
}

/// The mapping a run uses: the spec's, or one proposed from the names (what it cannot place said
/// in the report's warnings). An import writes every value it reads, or says what it would leave
/// out and stops: a file for a table the target lacks (or a renamed one) is not dropped silently.
pub(crate) fn settle_mapping(spec: &MigrationSpec, kind: MigrationType, report: &mut MigrationReport, propose: impl FnOnce(&mut Vec<String>) -> Vec<TableMapping>) -> Result<Vec<TableMapping>> {
    let mapping = if spec.mapping.is_empty() {
        let mut lost = Vec::new();
        let m = propose(&mut lost);
        if kind == MigrationType::DataImport && !spec.skip_rejected && !lost.is_empty() {
            return Err(Error::validation(format!(
                "the import would leave data out: {}. Map it onto the target's tables (--mapping), or pass --skip-rejected to leave it out; nothing was imported",
                lost.join("; ")
            )));
        }
        report.warnings.extend(lost);
        m
    } else {
        spec.mapping.clone()
    };
    report.mapping = mapping.clone();
    Ok(mapping)
}

/// The error of a run that would set rows aside.
pub fn rejected_error(report: &MigrationReport) -> Error {
    let lines: Vec<String> = report.problems().take(5).map(|(t, p)| format!("{t}: {}", p.message)).collect();
    // A problem on a table holding a column that looks like a reference no foreign key declares
    // is most often that: a copy keeps its values until it is declared.
    let inferred: Vec<&String> = report.inferred.iter().filter(|r| report.problems().any(|(t, _)| r.starts_with(&format!("{t}.")))).collect();
    let declare = if inferred.is_empty() {
        String::new()
    } else {
        let each: Vec<String> = inferred.iter().map(|r| format!("--reference {r}")).collect();
        format!("; where a column is a reference that no foreign key declares, declare it ({}, or in the mapping file's \"references\") and the copy's rows follow the copy's keys", each.join(" "))
    };
    Error::validation(format!(
        "validation found problems, so nothing was written: {}{declare}; resolve them (mapping, rules, conflict rules) or accept skipping the rows",
        lines.join("; ")
    ))
}

/// The spec's files to import, each there; `kinds` says what may be chosen when none is.
pub(crate) fn files_to_import(spec: &MigrationSpec, kinds: &str) -> Result<Vec<PathBuf>> {
    let files: Vec<PathBuf> = spec.source_files.iter().filter(|f| !f.trim().is_empty()).map(PathBuf::from).collect();
    if files.is_empty() {
        return Err(Error::validation(format!("choose the files to import: {kinds}")));
    }
    if let Some(f) = files.iter().find(|f| !f.exists()) {
        return Err(Error::not_found(format!("{} does not exist: choose the file to import", f.display())));
    }
    Ok(files)
}

async fn read_files(tx: &mut Tx<'_>, staged: &mut Staged, spec: &MigrationSpec, ends: &Endpoints, target: &Target, tenants: &[String], cancel: &CancelToken) -> Result<()> {
    let files = files_to_import(spec, "a portable export (.zip), a Safehold archive, or CSV / JSON Lines files")?;
    let first = &files[0];
    let is_zip = first.extension().is_some_and(|e| e.eq_ignore_ascii_case("zip"));
    if files.len() == 1 && is_zip {
        let mut export = portable::open(first)?;
        export.stage(tx, staged).await?;
        return stage::keep_tenants(tx, staged, target, tenants, &ends.tenant_column, &ends.tenants_table).await;
    }
    if files.len() == 1 && (first.is_dir() || crate::archive::ArchiveReader::open(first).is_ok()) {
        let pick = crate::chain::Pick { from: first, at: None, backup_id: None, source_name: None };
        let opened = crate::chain::open(&pick, &ends.keys).await?;
        stage::from_archive(tx, staged, &opened.chain, target, cancel).await?;
        if tenants.is_empty() {
            return Err(Error::validation("a backup holds every tenant: choose the tenant to import from it (--tenant)"));
        }
        return stage::keep_tenants(tx, staged, target, tenants, &ends.tenant_column, &ends.tenants_table).await;
    }
    for f in &files {
        cancel.check()?;
        let name = stage::table_of_file(f);
        let data = std::fs::read(f).map_err(|e| Error::io(format!("cannot read {}", f.display()), &e))?;
        let ext = f.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        match ext.as_str() {
            "csv" => {
                // No types: a plain file's values are all checked against the target's types.
                stage::csv_file(tx, staged, &name, data, &[]).await?
            }
            "jsonl" | "ndjson" | "json" => stage::jsonl_file(tx, staged, &name, data).await?,
            "zip" => return Err(Error::validation(format!("{}: import one portable export at a time", f.display()))),
            _ => {
                return Err(Error::validation(format!(
                    "{} is not something Safehold imports: choose a portable export (.zip), a Safehold archive, or .csv / .jsonl files named after their tables",
                    f.display()
                )))
            }
        }
    }
    Ok(())
}

/// The target table a source table name stands for: the same qualified name, or the one table
/// with the same bare name.
fn target_table(target: &Target, source: &str) -> Option<String> {
    if target.cols.contains_key(source) {
        return Some(source.to_string());
    }
    let bare = stage::bare(source);
    let matches: Vec<&String> = target.cols.keys().filter(|t| stage::bare(t) == bare).collect();
    match matches.as_slice() {
        [one] => Some((*one).clone()),
        _ => matches.iter().find(|t| t.starts_with("public.")).map(|t| (*t).clone()),
    }
}

/// The mapping proposed from names: same table, same columns; source columns without a target
/// column are dropped.
fn propose(staged: &Staged, target: &Target, warnings: &mut Vec<String>) -> Vec<TableMapping> {
    let mut out = Vec::new();
    for s in &staged.tables {
        let Some(t) = target_table(target, &s.name) else {
            warnings.push(format!("the target has no table {}: its {} rows are not written", s.name, s.rows));
            continue;
        };
        let tcols: BTreeSet<&str> = target.cols[&t].iter().filter(|c| !c.generated).map(|c| c.name.as_str()).collect();
        let mut m = TableMapping { source: s.name.clone(), target: t.clone(), ..Default::default() };
        for (c, _) in &s.cols {
            if tcols.contains(c.as_str()) {
                m.columns.insert(c.clone(), c.clone());
            } else {
                m.drop.push(c.clone());
                warnings.push(format!("{}.{c} has no column in {t}: not written", s.name));
            }
        }
        out.push(m);
    }
    out
}

/// Proposes the mapping of a migration without running it (the wizard's mapping step).
pub async fn propose_mapping(spec: &MigrationSpec, ends: &Endpoints) -> Result<(Vec<TableMapping>, Vec<String>)> {
    let mut s = spec.clone();
    s.mapping.clear();
    s.rules.clear();
    s.skip_rejected = true;
    let report = execute(&s, ends, false, &CancelToken::new(), &(std::sync::Arc::new(|_| {}) as ProgressSink)).await?;
    Ok((report.mapping, report.warnings))
}

/// Applies the rules to the staged rows. A comparison casts to the target's type of the column
/// when the target has it, else to the source's type as the server names it, else compares text.
async fn apply_rules(tx: &mut Tx<'_>, staged: &mut Staged, rules: &[Rule], target: Option<&Target>) -> Result<()> {
    for r in rules {
        let t = staged.get(&r.table).ok_or_else(|| {
            let names: Vec<&str> = staged.tables.iter().map(|t| t.name.as_str()).collect();
            Error::validation(format!("rule {} names the table {}, which the source does not have (it has {})", rules::name(&r.action), r.table, names.join(", ")))
        })?;
        rules::check(r, &rules::Columns { table: &t.name, cols: &t.cols })?;
        let (relation, name) = (t.relation.clone(), t.name.clone());
        // The type a comparison casts to, as the server names it (or none: compared as text).
        let of_target = target.and_then(|tg| target_table(tg, &t.name).and_then(|tt| tg.cols[&tt].iter().find(|c| c.name == r.column).map(|c| c.ty.clone())));
        let ty = match of_target.or_else(|| t.cols.iter().find(|(c, _)| *c == r.column).and_then(|(_, ty)| ty.clone())) {
            Some(ty) => stage::known_type(tx, &ty).await?,
            None => None,
        };
        let (stmt, binds) = rules::sql(r, &relation, ty.as_deref());
        // One statement, prepared: nothing bound can become SQL.
        let mut query = sqlx::query(AssertSqlSafe(stmt));
        for v in binds.0 {
            query = query.bind(v);
        }
        query
            .execute(&mut **tx)
            .await
            .map_err(|e| Error::validation(format!("rule {} on {}.{}: {}", rules::name(&r.action), name, r.column, stage::pg_message(&e))).caused_by(&e))?;
    }
    staged.recount(tx).await
}

const CASTABLE: &str = "CREATE OR REPLACE FUNCTION pg_temp.sh_castable(v text, t text) RETURNS boolean LANGUAGE plpgsql AS $f$ \
    BEGIN EXECUTE format('SELECT CAST(%L AS %s)', v, t); RETURN true; EXCEPTION WHEN others THEN RETURN false; END $f$";

/// Casts the staged rows onto their target tables (`pg_temp._sh_f*`), setting aside rows whose
/// values do not fit the target's types.
async fn map_rows(tx: &mut Tx<'_>, staged: &Staged, target: &Target, mapping: &[TableMapping], tenant_column: &str) -> Result<(HashMap<String, write::Final>, BTreeMap<String, TableReport>)> {
    let mut finals = HashMap::new();
    let mut reports: BTreeMap<String, TableReport> = BTreeMap::new();
    let mut seen_targets = BTreeSet::new();
    for (i, m) in mapping.iter().enumerate() {
        let s = staged.get(&m.source).ok_or_else(|| Error::validation(format!("the mapping names the source table {}, which the source does not have", m.source)))?;
        let t = target_table(target, &m.target).ok_or_else(|| Error::validation(format!("the mapping names the target table {}, which the target does not have", m.target)))?;
        if !seen_targets.insert(t.clone()) {
            return Err(Error::validation(format!("two source tables are mapped onto {t}: map each target table once")));
        }
        let tcols = &target.cols[&t];
        let find = |c: &str| tcols.iter().find(|x| x.name == c);
        let mut pairs: Vec<(String, String)> = Vec::new(); // target col → expression
        for (c, _) in &s.cols {
            if m.drop.contains(c) {
                continue;
            }
            let to = m.columns.get(c).cloned().unwrap_or_else(|| c.clone());
            match find(&to) {
                Some(col) if col.generated => return Err(Error::validation(format!("{t}.{to} is computed by the target: drop {}.{c} from the mapping", s.name))),
                Some(col) => pairs.push((to.clone(), format!("CAST(s.{} AS {})", qi(c), col.ty))),
                None if m.columns.contains_key(c) => return Err(Error::validation(format!("the mapping sends {}.{c} to {t}.{to}, which does not exist", s.name))),
                None => {}
            }
        }
        for k in m.columns.keys() {
            if !s.cols.iter().any(|(c, _)| c == k) {
                return Err(Error::validation(format!("the mapping names the column {}.{k}, which the source does not have", s.name)));
            }
        }
        for (c, v) in &m.defaults {
            let col = find(c).ok_or_else(|| Error::validation(format!("the mapping gives a default for {t}.{c}, which does not exist")))?;
            if !pairs.iter().any(|(p, _)| p == c) {
                pairs.push((c.clone(), format!("CAST({} AS {})", ql(v), col.ty)));
            }
        }
        let mut seen = BTreeSet::new();
        if let Some((dup, _)) = pairs.iter().find(|(p, _)| !seen.insert(p.clone())) {
            return Err(Error::validation(format!("two source columns are mapped onto {t}.{dup}")));
        }
        // The tenant column and a one-column key are always there: the write fills them.
        let single_key = target.pks.get(&t).filter(|k| k.len() == 1).map(|k| k[0].clone());
        for c in [Some(tenant_column.to_string()), single_key.clone()].into_iter().flatten() {
            if find(&c).is_some_and(|x| !x.generated) && !pairs.iter().any(|(p, _)| *p == c) {
                pairs.push((c, "NULL".into()));
            }
        }
        // Required columns the source does not fill.
        for col in tcols.iter().filter(|c| c.not_null && !c.generated && !c.identity && c.default.is_none()) {
            if !pairs.iter().any(|(p, _)| *p == col.name) {
                return Err(Error::validation(format!(
                    "{} has no column for {t}.{}, which the target requires (NOT NULL, no default): add the column, map one to it or give it a default",
                    s.name, col.name
                )));
            }
        }
        let rep = reports.entry(t.clone()).or_insert_with(|| TableReport::new(&t));
        rep.source_table = Some(s.name.clone());
        rep.rows_read = s.rows;
        // Values that do not fit the target's types.
        let rejected = type_errors(tx, s, &t, m, tcols, rep).await?;
        let f = format!("pg_temp._sh_f{i}");
        let names: Vec<String> = pairs.iter().map(|(c, _)| qi(c)).collect();
        let exprs: Vec<&str> = pairs.iter().map(|(_, e)| e.as_str()).collect();
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE TEMP TABLE {f} ON COMMIT DROP AS SELECT {cols} FROM {live} WITH NO DATA; ALTER TABLE {f} ADD COLUMN _sh_row bigint; \
             INSERT INTO {f} ({cols}, _sh_row) SELECT {exprs}, row_number() OVER () FROM {rel} s {skip};",
            cols = names.join(", "),
            live = rel(&t),
            exprs = exprs.join(", "),
            rel = s.relation,
            skip = if rejected.is_empty() { String::new() } else { format!("WHERE NOT ({})", rejected.join(" OR ")) }
        )))
        .execute(&mut **tx)
        .await
        .map_err(|e| Error::validation(format!("mapping {} onto {t}: {}", s.name, stage::pg_message(&e))).caused_by(&e))?;
        finals.insert(t.clone(), write::Final { relation: f, cols: pairs.into_iter().map(|(c, _)| c).collect() });
    }
    Ok((finals, reports))
}

/// Conditions matching the staged rows whose values do not fit their target columns' types;
/// each column with such rows becomes a `type_error` problem.
async fn type_errors(tx: &mut Tx<'_>, s: &stage::StagedTable, t: &str, m: &TableMapping, tcols: &[crate::source::pg_apply::Col], rep: &mut TableReport) -> Result<Vec<String>> {
    let mut conds = Vec::new();
    let mut created = false;
    for (c, sty) in &s.cols {
        if m.drop.contains(c) {
            continue;
        }
        let to = m.columns.get(c).cloned().unwrap_or_else(|| c.clone());
        let Some(col) = tcols.iter().find(|x| x.name == to) else { continue };
        if col.ty == "text" || sty.as_deref() == Some(col.ty.as_str()) {
            continue;
        }
        if !created {
            sqlx::raw_sql(AssertSqlSafe(CASTABLE.to_string())).execute(&mut **tx).await.map_err(q("prepare the type checks"))?;
            created = true;
        }
        let cond = format!("(s.{} IS NOT NULL AND NOT pg_temp.sh_castable(s.{0}, {}))", qi(c), ql(&col.ty));
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT count(*) OVER (), s.{}::text FROM {} s WHERE {cond} LIMIT 5", qi(c), s.relation)))
            .fetch_all(&mut **tx)
            .await
            .map_err(|e| migration_error(&format!("checking {}", s.name), &e))?;
        if let Some(r) = rows.first() {
            let n: i64 = r.get(0);
            rep.problems.push(Problem::new("type_error", format!("{n} values of {}.{c} are not valid {} for {t}.{to}", s.name, col.ty), n, rows.iter().map(|r| r.get(1)).collect()));
            rep.rows_rejected += u64::try_from(n).unwrap_or(0);
            conds.push(cond);
        }
    }
    if !conds.is_empty() {
        // Rows rejected for several columns are counted once.
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {} s WHERE {}", s.relation, conds.join(" OR "))))
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| migration_error(&format!("checking {}", s.name), &e))?;
        rep.rows_rejected = u64::try_from(n).unwrap_or(0);
    }
    Ok(conds)
}

/// The tenant written, and whether it exists already.
async fn target_tenant(tx: &mut Tx<'_>, target: &Target, tenancy: &Tenancy, kind: MigrationType, spec: &MigrationSpec, tenants: &[String], ends: &Endpoints) -> Result<(String, bool)> {
    let tenants_tbl = target.find_table(&ends.tenants_table).into_iter().next();
    let key = tenants_tbl.as_ref().and_then(|t| target.pks.get(t)).filter(|k| k.len() == 1).map(|k| k[0].clone());
    let given = spec.target_tenant_id.clone().map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    let id = match given {
        Some(id) => id,
        None if kind == MigrationType::TenantMerge => return Err(Error::validation("choose the tenant to merge into (--into)")),
        None => {
            let (Some(t), Some(k)) = (&tenants_tbl, &key) else {
                return Err(Error::validation("the target has no tenants table to make a new tenant id from: give the tenant id to write (--new-tenant-id)"));
            };
            let col = target.cols[t].iter().find(|c| &c.name == k).cloned().ok_or_else(|| Error::new(ErrorCode::Internal, "no key column"))?;
            let expr = if col.identity {
                format!("nextval(pg_get_serial_sequence({}, {}))", ql(&rel(t)), ql(k))
            } else if let Some(d) = col.default {
                d
            } else if col.ty == "uuid" || rules::is_text(&col.ty) {
                "gen_random_uuid()".into()
            } else {
                return Err(Error::validation(format!("{t}'s key has no default: give the new tenant's id (--new-tenant-id)")));
            };
            sqlx::query_scalar::<_, String>(AssertSqlSafe(format!("SELECT ({expr})::text"))).fetch_one(&mut **tx).await.map_err(q("make a new tenant id"))?
        }
    };
    let is_there = match (&tenants_tbl, &key) {
        (Some(t), Some(k)) => sqlx::query_scalar::<_, bool>(AssertSqlSafe(format!("SELECT EXISTS (SELECT 1 FROM {} WHERE {}::text = {})", rel(t), qi(k), ql(&id))))
            .fetch_one(&mut **tx)
            .await
            .map_err(q("look the tenant up"))?,
        _ => true,
    };
    let same_db = ends.source_url.is_some() && ends.source_url == ends.target_url;
    match kind {
        MigrationType::TenantCopy if is_there && tenancy.reach.values().any(|r| matches!(r, Reach::TenantsKey(_))) => {
            Err(Error::conflict(format!("tenant {id} already exists in the target: choose a new tenant id, or merge into it instead")))
        }
        MigrationType::TenantCopy if same_db && tenants.first() == Some(&id) => Err(Error::validation("a copy in the same database needs a tenant id other than the tenant's own")),
        MigrationType::TenantMerge if !is_there => Err(Error::not_found(format!("tenant {id} does not exist in the target: choose an existing tenant to merge into"))),
        MigrationType::TenantMerge if same_db && tenants.first() == Some(&id) => Err(Error::validation("a tenant cannot be merged into itself")),
        _ => {
            let has_tenants_rows = tenancy.reach.values().any(|r| matches!(r, Reach::TenantsKey(_)));
            if !is_there && !has_tenants_rows {
                return Err(Error::not_found(format!("tenant {id} does not exist in the target and the import has no {} table to create it from: import into an existing tenant", ends.tenants_table)));
            }
            Ok((id, is_there))
        }
    }
}

/// Deletes one tenant's rows from every tenant table of `schema`: the rows found first, then
/// deleted children first (a cycle's references that are not deferrable emptied before).
async fn remove_tenant(tx: &mut Tx<'_>, schema: &Target, tenant: &str, ends: &Endpoints, cancel: &CancelToken) -> Result<u64> {
    let scope = TenantScope { tenant_id: tenant.into(), tenant_column: ends.tenant_column.clone(), tenants_table: ends.tenants_table.clone(), references: Vec::new() };
    let mut ten = Tenancy::find(schema, &scope, &schema.cols.keys().cloned().collect())?;
    ten.param = "safehold.remove".into();
    ten.bind(tx).await?;
    let tables = ten.reach_order();
    let order = crate::source::tenancy::delete_order(&tables, &schema.fks)?;
    // Each table's own rows (`ONLY` a table others inherit from).
    let live = |t: &str| schema.own_rows(t);
    let found: HashMap<String, String> = tables.iter().enumerate().map(|(i, t)| (t.clone(), format!("pg_temp._sh_rm{i}"))).collect();
    for t in &tables {
        let id = crate::source::pg_apply::identity(schema, t);
        let pred = ten.reaching(t, "l", &live);
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} l WHERE {pred}", found[t], id.select("l"), live(t))))
            .execute(&mut **tx)
            .await
            .map_err(|e| migration_error(&format!("finding tenant {tenant} in {t}"), &e))?;
    }
    // The references that close a cycle are emptied first (NULL, or a stand-in for a NOT NULL
    // key checked at once).
    for fk in order.late.iter().filter(|fk| fk.nullable || crate::source::tenancy::WriteOrder::held(fk)) {
        let id = crate::source::pg_apply::identity(schema, &fk.child);
        let set: Vec<String> = fk.cols.iter().map(|(c, _)| format!("{} = {}", qi(c), crate::source::tenancy::stand_in(fk, c))).collect();
        sqlx::raw_sql(AssertSqlSafe(format!("UPDATE {} l SET {} WHERE {}", live(&fk.child), set.join(", "), id.among("l", &found[&fk.child]))))
            .execute(&mut **tx)
            .await
            .map_err(|e| migration_error(&format!("removing tenant {tenant} from {}", fk.child), &e))?;
    }
    let mut n = 0;
    for t in order.tables.iter().rev() {
        cancel.check()?;
        let id = crate::source::pg_apply::identity(schema, t);
        n += sqlx::raw_sql(AssertSqlSafe(format!("DELETE FROM {} l WHERE {}", live(t), id.among("l", &found[t]))))
            .execute(&mut **tx)
            .await
            .map_err(|e| migration_error(&format!("removing tenant {tenant} from {t}"), &e))?
            .rows_affected();
    }
    Ok(n)
}

#[allow(clippy::too_many_arguments)]
async fn export(
    spec: &MigrationSpec,
    ends: &Endpoints,
    tenants: &[String],
    commit: bool,
    cancel: &CancelToken,
    progress: &ProgressSink,
    step: &(dyn Fn(&str, u64) + Sync),
    mut report: MigrationReport,
) -> Result<MigrationReport> {
    let url = ends.source_url.as_deref().ok_or_else(|| Error::validation("choose the database to export from (--source)"))?;
    let path = spec.target_file.as_deref().filter(|p| !p.trim().is_empty()).map(PathBuf::from).ok_or_else(|| Error::validation("choose the file to save the export to (--to)"))?;
    if path.is_dir() {
        return Err(Error::validation(format!("{} is a folder: choose a file name for the export", path.display())));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
        return Err(Error::validation(format!("the folder {} does not exist: choose where to save the export", dir.display())));
    }
    let archive = spec.export_format == ExportFormat::Archive;
    if archive && !spec.rules.is_empty() {
        return Err(Error::validation(
            "an archive export holds the tenants' rows as they are: transformation rules apply to portable exports (or restore the archive, then copy the tenant with rules)",
        ));
    }
    let repository = if archive {
        Some(ends.archive_repository.clone().ok_or_else(|| Error::validation("choose the repository whose key encrypts the archive (--repo, or a default storage location)"))?)
    } else {
        None
    };
    let mut conn = connect(url).await?;
    let mut tx = conn.begin().await.map_err(q("start the export"))?;
    step("reading the source", 0);
    let mut staged = Staged::default();
    let schema = stage::from_live(&mut tx, &mut staged, url, tenants, &ends.tenant_column, &ends.tenants_table, &spec.references, &mut report.warnings, cancel).await?;
    report.rows_read = staged.tables.iter().map(|t| t.rows).sum();
    step("applying the rules", 1);
    apply_rules(&mut tx, &mut staged, &spec.rules, None).await?;
    report.tables = staged.tables.iter().map(|t| TableReport { table: t.name.clone(), source_table: Some(t.name.clone()), rows_read: t.rows, rows_written: if commit { t.rows } else { 0 }, ..Default::default() }).collect();
    if commit {
        step("writing the export", 2);
        match &repository {
            None => {
                let meta = portable::ExportMeta { source: redact(url), tenants, tenant_column: &ends.tenant_column, tenants_table: &ends.tenants_table };
                report.files = portable::write(&mut tx, &path, &staged, &schema, &meta).await?;
                report.rows_written = report.rows_read;
            }
            Some(repo_dir) => {
                let _ = tx.rollback().await;
                export_archive(ends, url, tenants, &path, repo_dir, cancel, progress, &mut report).await?;
                report.target_file = Some(path.display().to_string());
                report.committed = true;
                step("finished", 4);
                return Ok(report);
            }
        }
    }
    let _ = tx.rollback().await;
    report.target_file = Some(path.display().to_string());
    report.committed = commit;
    step("finished", 4);
    Ok(report)
}

/// Writes the tenants' archive: a full backup of the source limited to the tenants' rows of the
/// tenant tables (the shared tables whole), encrypted with the repository's key, saved at `path`.
#[allow(clippy::too_many_arguments)]
async fn export_archive(
    ends: &Endpoints,
    url: &str,
    tenants: &[String],
    path: &Path,
    repo_dir: &Path,
    cancel: &CancelToken,
    progress: &ProgressSink,
    report: &mut MigrationReport,
) -> Result<()> {
    let (repo, master) = ends.keys.open_repository_for_backup(repo_dir).await?;
    let mut req = crate::backup::BackupRequest::new(crate::source::SourceSpec::Postgres { url: url.to_string() });
    req.source_name = ends.source_name.clone().unwrap_or_else(|| redact(url));
    req.tenant_column = ends.tenant_column.clone();
    req.tenants_table = ends.tenants_table.clone();
    req.tenants = tenants.to_vec();
    req.dest = Some(path.to_path_buf());
    req.signer = ends.keys.writer.clone();
    let out = crate::backup::run(&repo, &master, &req, cancel, progress).await?;
    let mut reader = crate::archive::ArchiveReader::open(path)?;
    tokio::task::block_in_place(|| reader.unlock(Some(&master), None))?;
    let index = reader.index()?;
    let tenant_tables: BTreeSet<String> = report.tables.iter().map(|t| t.table.clone()).collect();
    report.tables = index
        .sections
        .iter()
        .filter(|s| s.kind == "table")
        .map(|s| TableReport { table: s.name.clone(), source_table: Some(s.name.clone()), rows_read: s.rows, rows_written: s.rows, ..Default::default() })
        .collect();
    let shared: Vec<&str> = report.tables.iter().filter(|t| !tenant_tables.contains(&t.table)).map(|t| t.table.as_str()).collect();
    if !shared.is_empty() {
        report.warnings.push(format!("shared tables saved whole (no tenant column; tenant rows refer to them): {}", shared.join(", ")));
    }
    report.warnings.push(format!(
        "archive {} is encrypted with the key of the repository {}: restore it with that repository's password or its recovery kit",
        out.id,
        repo_dir.display()
    ));
    report.rows_read = out.rows;
    report.rows_written = out.rows;
    report.files = vec![portable::ExportedFile { path: out.archive.clone(), bytes: out.bytes, sha256: out.sha256.clone() }];
    Ok(())
}

