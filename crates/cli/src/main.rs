//! `safehold`: the Safehold engine from a terminal, for servers and scripts.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use safehold_core::connections::{self, ConnectionInput};
use safehold_core::archive::ArchiveReader;
use safehold_core::backup::{self, BackupRequest, DEFAULT_ZSTD_LEVEL};
use safehold_core::configurations::BackupType;
use safehold_core::repository::Repository;
use safehold_core::secrets::{Keychain, SecretStore};
use safehold_core::source::{self, CancelToken, Progress, ProgressSink, SourceSpec};
use safehold_core::unlock::KeySources;
use safehold_core::migrate::{records, MigrationReport, ExportFormat, MigrationSpec, MigrationType, Resolution};
use safehold_core::operators::Permission;
use safehold_core::{auditlog, configurations, context, demo, operators, restore, restores, verify, Ctx, Error, ErrorCode};

#[derive(Parser)]
#[command(name = "safehold", version, about = "Back up, verify, restore and migrate a multi-tenant platform's data")]
struct Cli {
    /// Where Safehold keeps its catalog and files (default: the OS data directory).
    #[arg(long, global = true, env = context::HOME_ENV)]
    home: Option<std::path::PathBuf>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Object storage: a custom endpoint for s3:// (or az://) locations (MinIO, Ceph, Garage,
    /// R2, an emulator); credentials come from the provider's environment variables.
    #[arg(long, global = true)]
    endpoint: Option<String>,
    /// Object storage: the region.
    #[arg(long, global = true)]
    region: Option<String>,
    /// The operator acting on the catalog, once operators exist (the password is prompted, or
    /// read from SAFEHOLD_OPERATOR_PASSWORD_FILE).
    #[arg(long, global = true, env = "SAFEHOLD_OPERATOR")]
    operator: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The platform databases Safehold backs up.
    #[command(subcommand)]
    Connection(ConnectionCommand),
    /// Backup configurations.
    #[command(subcommand, name = "config")]
    Config(ConfigCommand),
    /// Create the embedded demo platform (a SQLite database) and register it, if it is not there.
    Demo {
        /// Also copy the demo into this empty PostgreSQL database and register it as the
        /// connection "Demo platform (PostgreSQL)" (tenant restores and migrations need PostgreSQL).
        #[arg(long)]
        postgres: Option<String>,
    },
    /// Back up a database into a repository (a directory), as one encrypted, compressed archive.
    Backup(BackupArgs),
    /// Restore a whole backup into an empty database.
    Restore(RestoreArgs),
    /// Check archives: quickly (checksums, no key) or deeply (decrypt and check every section).
    Verify(VerifyArgs),
    /// List the backups of a repository (no key needed).
    Ls { repo: PathBuf },
    /// Show an archive's metadata (and its tables, when a key is available).
    Inspect {
        archive: PathBuf,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Repository keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// The catalog.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Where backups are kept.
    #[command(subcommand)]
    Storage(StorageCommand),
    /// Scheduled backups without the app (for a server).
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Tenant migrations: copy, merge, export, import (recorded in the catalog).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Operators and their roles (super admins).
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// The backups recorded in the catalog, newest first (with `--check`: verify one of them,
    /// `--deep` with the key, the result kept on its record as in the app).
    History {
        /// Only backups with this status: pending, running, completed, failed or cancelled.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Check this backup (its id): the archive's SHA-256 against its trailer and the catalog.
        #[arg(long)]
        check: Option<String>,
        /// With --check: read the backup and every backup it builds on with the key.
        #[arg(long, requires = "check")]
        deep: bool,
    },
    /// The audit log: who did what, when, with what outcome.
    Audit {
        /// Only this operator's entries (name or id).
        #[arg(long = "by")]
        by: Option<String>,
        /// Only this action, or actions starting with it (e.g. `backup.`).
        #[arg(long)]
        action: Option<String>,
        /// success, failure or denied.
        #[arg(long)]
        outcome: Option<String>,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        limit: Option<i64>,
        /// Write the entries to this CSV file instead of printing them.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Create the first super admin of this catalog (the password is prompted, or read from
    /// --password-file). Until then the workstation's local administrator acts.
    Setup {
        name: String,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Add an operator with a role: super_admin, platform_operator or read_only_admin.
    Add {
        name: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// List operators.
    List,
    /// Change an operator's role.
    SetRole { name: String, role: String },
    /// Disable an operator (they can no longer sign in).
    Disable { name: String },
    /// Enable (and unlock) an operator.
    Enable { name: String },
    /// Remove an operator (kept, disabled, in the history when they did anything).
    Remove { name: String },
    /// Change your own password (act as yourself with --operator): the current one is checked,
    /// your key is kept.
    Password {
        #[arg(long)]
        current_password_file: Option<PathBuf>,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Set a new password for an operator who forgot theirs (super admins): they get a new key.
    Reset {
        name: String,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Set the idle time after which app sessions end.
    IdleTimeout { seconds: u64 },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Copy a tenant under a new id, in the same database or into another, with new keys.
    Copy {
        /// The database read: a connection's name or id, or a PostgreSQL URL.
        #[arg(long)]
        source: String,
        #[arg(long)]
        tenant: String,
        /// The database written (default: the source).
        #[arg(long)]
        target: Option<String>,
        /// The copy's tenant id (default: made by the tenants table's key default, or a UUID).
        #[arg(long)]
        new_tenant_id: Option<String>,
        #[arg(long)]
        new_tenant_name: Option<String>,
        #[command(flatten)]
        common: MigrationArgs,
    },
    /// Merge a tenant into an existing one: rows re-parented, unique conflicts resolved per table.
    Merge {
        #[arg(long)]
        source: String,
        /// The tenant merged.
        #[arg(long)]
        tenant: String,
        /// The existing tenant merged into.
        #[arg(long)]
        into: String,
        /// The database written (default: the source).
        #[arg(long)]
        target: Option<String>,
        /// Remove the merged tenant afterwards (same database only).
        #[arg(long)]
        remove_source: bool,
        #[command(flatten)]
        common: MigrationArgs,
    },
    /// Export tenants to a portable ZIP (JSON Lines and CSV per table, schema.json, manifest.json)
    /// or to an encrypted Safehold archive (restorable with `safehold restore`).
    Export {
        #[arg(long)]
        source: String,
        /// The tenants (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        tenant: Vec<String>,
        /// The file written.
        #[arg(long)]
        to: PathBuf,
        /// portable (a ZIP) or archive (default: archive when the file ends in .shar).
        #[arg(long)]
        format: Option<String>,
        /// An archive export: the repository whose key encrypts it (a storage location's name or a
        /// repository directory; default: the default storage location).
        #[arg(long)]
        repo: Option<String>,
        #[command(flatten)]
        keys: KeyArgs,
        #[command(flatten)]
        common: MigrationArgs,
    },
    /// Import a portable export, a Safehold archive, or CSV / JSON Lines files (named after their
    /// tables) into a tenant, new or existing.
    Import {
        /// The files read.
        #[arg(long, required = true, num_args = 1..)]
        from: Vec<PathBuf>,
        /// The database written.
        #[arg(long)]
        target: String,
        /// From an archive or a multi-tenant export: the tenant to import.
        #[arg(long)]
        tenant: Option<String>,
        /// The tenant written (existing: merged into; new: created from the import's tenants row).
        #[arg(long)]
        into: Option<String>,
        #[arg(long)]
        new_tenant_name: Option<String>,
        #[command(flatten)]
        keys: KeyArgs,
        #[command(flatten)]
        common: MigrationArgs,
    },
}

#[derive(clap::Args)]
struct MigrationArgs {
    /// Transformation rules: a JSON file holding a list of rules.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// The mapping: a JSON file holding a list of table mappings (default: proposed from names),
    /// or an object with that list as "tables" and "references" (as --reference takes them).
    #[arg(long)]
    mapping: Option<PathBuf>,
    /// Unique conflicts, per table: TABLE=stop|keep-target|take-source|keep-both (comma-separated;
    /// `*` for every table).
    #[arg(long, value_delimiter = ',')]
    on_conflict: Vec<String>,
    /// The suffix keep-both adds.
    #[arg(long)]
    suffix: Option<String>,
    /// A reference no foreign key declares, CHILD.COLUMN=PARENT.COLUMN (with ;TYPE_COLUMN=VALUE
    /// for a polymorphic one): followed like a foreign key. Repeat for each. Validation lists the
    /// columns that look like such references.
    #[arg(long)]
    reference: Vec<String>,
    /// Columns whose values must differ in the copy (API keys, tokens, slugs under a unique
    /// index): TABLE.COLUMN, each given a fresh value of the same form (comma-separated).
    #[arg(long, value_delimiter = ',')]
    regenerate: Vec<String>,
    /// Write what can be written and skip the rows validation sets aside.
    #[arg(long)]
    skip_rejected: bool,
    /// Validate only: run everything in a transaction that is rolled back and show the report.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    tenant_column: Option<String>,
    #[arg(long)]
    tenants_table: Option<String>,
}

#[derive(Subcommand)]
enum ScheduleCommand {
    /// Run every active configuration on its schedule, without a window; one line per job.
    /// Jobs left running by a stopped process are marked interrupted first. Ctrl-C stops it.
    Run {
        /// Backups running at the same time.
        #[arg(long, default_value_t = 1)]
        max_jobs: usize,
    },
    /// Configurations with their schedule and next run.
    List,
}

#[derive(Subcommand)]
enum StorageCommand {
    /// Register a storage: a local directory (created if missing), or s3://bucket/prefix,
    /// az://container/prefix, gs://bucket/prefix.
    Add {
        name: String,
        location: String,
        /// Make it the default storage.
        #[arg(long)]
        default: bool,
        /// Cloud: a custom endpoint (MinIO, Ceph, Garage, R2, an emulator).
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long)]
        region: Option<String>,
        /// Cloud: the capacity to measure usage against, in bytes.
        #[arg(long)]
        quota: Option<i64>,
        /// Cloud: an access key id (its secret is read from standard input; both kept in the OS
        /// keychain). Without it the provider's environment variables are used.
        #[arg(long)]
        access_key_id: Option<String>,
    },
    /// List storages with their used space and health.
    List,
    /// Write, read back and delete a probe object; exit code 1 when the storage fails.
    Check { name: String },
    /// Measure the used space (a real listing) and the capacity.
    Usage { name: String },
    /// Who can open the storage's backups: this workstation's keychain, which super admins, and
    /// whether the recovery kit was exported.
    Keys { name: String },
    /// Change a storage: make it the default, take it out of use or back, set a cloud storage's
    /// quota, or replace its credentials (the secret read from standard input; tried first).
    Set {
        name: String,
        #[arg(long)]
        default: bool,
        #[arg(long, conflicts_with = "activate")]
        deactivate: bool,
        #[arg(long)]
        activate: bool,
        /// Cloud: the capacity to measure usage against, in bytes (0 clears it).
        #[arg(long)]
        quota: Option<i64>,
        /// Cloud: a new access key id; its secret is read from standard input.
        #[arg(long)]
        access_key_id: Option<String>,
    },
    /// Remove a storage from the catalog (its files are kept).
    Remove { name: String },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Disaster recovery: record a repository's backups in this catalog from their plaintext
    /// headers (no key needed); restore them afterwards with --recovery-key-file.
    Rebuild {
        #[arg(long)]
        from: PathBuf,
    },
}

#[derive(clap::Args, Clone, Default)]
struct KeyArgs {
    /// A file holding the repository password (or SAFEHOLD_PASSWORD_FILE / SAFEHOLD_PASSWORD).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// A file holding the recovery key (the printed kit works as it is).
    #[arg(long)]
    recovery_key_file: Option<PathBuf>,
    /// Read archives whose writer no key holder approved, or that carry no signature (written
    /// by an older Safehold): only after checking where they came from.
    #[arg(long)]
    trust_unsigned: bool,
}

#[derive(clap::Args)]
struct BackupArgs {
    /// postgres://user@host:port/db or sqlite:///path/to.db
    #[arg(long)]
    source: String,
    /// The repository directory (created on first use).
    #[arg(long)]
    to: PathBuf,
    #[arg(long = "type", value_enum, default_value = "full")]
    backup_type: BackupType,
    /// zstd[:LEVEL] or none
    #[arg(long, default_value = "zstd:2")]
    compression: String,
    /// Store the archive unencrypted (it is still checksummed).
    #[arg(long)]
    no_encrypt: bool,
    /// Parallel workers (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    #[arg(long, default_value = "tenant_id")]
    tenant_column: String,
    #[arg(long, default_value = "tenants")]
    tenants_table: String,
    #[command(flatten)]
    keys: KeyArgs,
}

#[derive(clap::Args)]
struct RestoreArgs {
    /// A repository directory or an archive file.
    #[arg(long)]
    from: PathBuf,
    /// The backup's id (default: the newest in the repository).
    #[arg(long, conflicts_with = "at")]
    backup: Option<String>,
    /// Point in time (RFC 3339): the newest backup taken at or before it.
    #[arg(long)]
    at: Option<String>,
    /// With --at, when the repository holds backups of several databases: the source's name.
    #[arg(long)]
    source: Option<String>,
    /// The database to restore into: postgres://user@host:port/db or sqlite:///path/to.db
    #[arg(long)]
    target: String,
    #[arg(long = "type", value_enum, default_value = "full")]
    restore_type: RestoreTypeArg,
    /// Selective: the tables to restore (comma-separated; schema.table or table).
    #[arg(long, value_delimiter = ',')]
    tables: Vec<String>,
    /// Selective: tables to leave out.
    #[arg(long, value_delimiter = ',')]
    exclude_tables: Vec<String>,
    /// Tenant only: the tenant's id.
    #[arg(long)]
    tenant: Option<String>,
    /// Tenant only: restore the tenant as a copy under this new tenant id (new keys everywhere).
    #[arg(long, conflicts_with = "preserve_ids")]
    new_tenant_id: Option<String>,
    /// Tenant only: restore as a copy with a new id made by the tenants table's default.
    #[arg(long, conflicts_with = "preserve_ids")]
    as_copy: bool,
    /// Tenant only, as a copy: the new tenant's name (the tenants table's `name` column).
    #[arg(long)]
    new_tenant_name: Option<String>,
    /// Tenant only: replace the tenant's rows in place, keeping their ids (the default).
    #[arg(long)]
    preserve_ids: bool,
    /// Tenant only: a reference no foreign key declares, CHILD.COLUMN=PARENT.COLUMN (with
    /// ;TYPE_COLUMN=VALUE for a polymorphic one): the tenant's rows are found through it and a
    /// copy follows it like a foreign key. Repeat for each.
    #[arg(long)]
    reference: Vec<String>,
    /// Tenant only, as a copy: unique conflicts, per table: TABLE=stop|keep-target|take-source|keep-both.
    #[arg(long, value_delimiter = ',')]
    on_conflict: Vec<String>,
    /// Tenant only, as a copy: columns whose values must differ (TABLE.COLUMN, comma-separated),
    /// each given a fresh value of the same form.
    #[arg(long, value_delimiter = ',')]
    regenerate: Vec<String>,
    /// Create the target PostgreSQL database if it does not exist.
    #[arg(long)]
    create: bool,
    /// Full restore: drop the target's objects and restore in their place (one transaction).
    #[arg(long)]
    clean: bool,
    /// Do not back up what a destructive restore replaces first.
    #[arg(long)]
    no_safety_backup: bool,
    /// Show the plan (a rolled-back trial run for selective and tenant restores) and stop.
    #[arg(long)]
    dry_run: bool,
    /// Run a destructive plan without asking.
    #[arg(long)]
    yes: bool,
    #[arg(long)]
    jobs: Option<usize>,
    #[arg(long, default_value = "tenant_id")]
    tenant_column: String,
    #[arg(long, default_value = "tenants")]
    tenants_table: String,
    #[command(flatten)]
    keys: KeyArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RestoreTypeArg {
    Full,
    Selective,
    #[value(name = "tenant_only", alias = "tenant-only")]
    TenantOnly,
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// A repository directory or an archive file.
    target: PathBuf,
    /// Decrypt and check every section (needs the key).
    #[arg(long)]
    deep: bool,
    /// Restore the backup (a repository's newest) into a scratch database and compare every
    /// table's rows with the archive (and with --source).
    #[arg(long)]
    restore_test: bool,
    /// The PostgreSQL server for the scratch database (created and dropped), e.g.
    /// postgres://postgres@127.0.0.1:5432/postgres. Default: SAFEHOLD_SCRATCH_URL.
    #[arg(long, env = "SAFEHOLD_SCRATCH_URL")]
    scratch: Option<String>,
    /// With --restore-test: the live source to compare unchanged tables with.
    #[arg(long)]
    source: Option<String>,
    #[command(flatten)]
    keys: KeyArgs,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Print the repository's recovery kit, once.
    ExportRecovery {
        repo: PathBuf,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// The writers whose backups the repository accepts, and those seen in its archives that no
    /// key holder approved yet.
    Writers {
        repo: PathBuf,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Approve a writer (a workstation or server whose key signed backups in the repository), by
    /// the start of its public key as `key writers` shows it: its backups restore from then on.
    ApproveWriter {
        repo: PathBuf,
        writer: String,
        #[command(flatten)]
        keys: KeyArgs,
    },
}

#[derive(Subcommand)]
enum ConnectionCommand {
    /// Add a connection: `safehold connection add prod postgres://app@db:5432/app`.
    Add {
        name: String,
        /// postgres://user@host:port/db[?sslmode=require] or sqlite:///path/to.db
        url: String,
        /// Read the password from standard input (kept in the OS keychain).
        #[arg(long)]
        password_stdin: bool,
        /// The column that marks a tenant's rows.
        #[arg(long)]
        tenant_column: Option<String>,
        /// The table that lists the tenants.
        #[arg(long)]
        tenants_table: Option<String>,
    },
    /// List connections.
    List,
    /// Connect and report server version, size and tenant tables.
    Test { name: String },
    /// Remove a connection and its keychain entry.
    Remove { name: String },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// List backup configurations.
    List,
    /// Create a backup configuration (what the app's New configuration does).
    Add {
        name: String,
        /// The connection (platform database) to back up: its name or id.
        #[arg(long)]
        connection: String,
        /// When it runs: a cron line (minute hour day month weekday).
        #[arg(long)]
        schedule: String,
        #[command(flatten)]
        settings: ConfigSettings,
    },
    /// Change a backup configuration: only the settings given change.
    Set {
        name: String,
        #[arg(long)]
        connection: Option<String>,
        #[arg(long)]
        schedule: Option<String>,
        #[command(flatten)]
        settings: ConfigSettings,
        /// Rename it.
        #[arg(long)]
        rename: Option<String>,
    },
    /// Delete a backup configuration (its backups stay, with their history).
    Remove { name: String },
    /// Run a configuration's backup now and record it in the catalog.
    Run { name: String },
    /// Show what retention would delete now, and why (nothing is deleted).
    RetentionPreview { name: String },
    /// Apply retention now: delete the expired backups no kept backup depends on.
    RetentionApply {
        name: String,
        /// Delete without asking.
        #[arg(long)]
        yes: bool,
    },
}

/// A configuration's settings on the command line; each one given is set, the others keep
/// their value (or the default, for a new configuration).
#[derive(clap::Args)]
struct ConfigSettings {
    #[arg(long = "type", value_enum)]
    backup_type: Option<BackupType>,
    #[arg(long)]
    retention_days: Option<i64>,
    /// The storage's name (default for a new configuration: the default storage).
    #[arg(long)]
    storage: Option<String>,
    /// A second storage every backup is copied to and verified on; `none` removes it.
    #[arg(long)]
    second_storage: Option<String>,
    /// The time zone the schedule runs in (IANA name); `local` for the workstation's.
    #[arg(long)]
    time_zone: Option<String>,
    /// on or off.
    #[arg(long)]
    compression: Option<OnOff>,
    /// on or off.
    #[arg(long)]
    encryption: Option<OnOff>,
    /// on or off: the tenant tables.
    #[arg(long)]
    tenant_data: Option<OnOff>,
    /// on or off: the other tables.
    #[arg(long)]
    system_data: Option<OnOff>,
    /// on or off: log tables (`*_log`, `*_logs`, `audit_*`).
    #[arg(long)]
    logs: Option<OnOff>,
    /// Runs missed while Safehold was not running: one catch-up run, or none.
    #[arg(long, value_enum)]
    missed_runs: Option<MissedArg>,
    /// on or off.
    #[arg(long)]
    active: Option<OnOff>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum MissedArg {
    RunOnce,
    Skip,
}

impl ConfigSettings {
    /// Applies the settings given to `input`.
    async fn apply(&self, ctx: &Ctx, input: &mut configurations::ConfigurationInput) -> Result<(), Error> {
        let on = |v: OnOff| matches!(v, OnOff::On);
        if let Some(t) = self.backup_type {
            input.backup_type = t;
        }
        if let Some(d) = self.retention_days {
            input.retention_days = d;
        }
        if let Some(s) = &self.storage {
            input.storage_location = safehold_core::storage::find(ctx, s).await?.storage_name;
        }
        if let Some(s) = &self.second_storage {
            input.secondary_storage = if s == "none" { None } else { Some(safehold_core::storage::find(ctx, s).await?.storage_name) };
        }
        if let Some(tz) = &self.time_zone {
            input.time_zone = (tz != "local").then(|| tz.clone());
        }
        for (v, field) in [
            (self.compression, &mut input.compression_enabled),
            (self.encryption, &mut input.encryption_enabled),
            (self.tenant_data, &mut input.includes_tenant_data),
            (self.system_data, &mut input.includes_system_data),
            (self.logs, &mut input.includes_logs),
            (self.active, &mut input.is_active),
        ] {
            if let Some(v) = v {
                *field = on(v);
            }
        }
        if let Some(m) = self.missed_runs {
            input.missed_runs = match m {
                MissedArg::RunOnce => configurations::MissedRuns::RunOnce,
                MissedArg::Skip => configurations::MissedRuns::Skip,
            };
        }
        Ok(())
    }
}

/// A configuration by name or id.
async fn configuration(ctx: &Ctx, name: &str) -> Result<configurations::BackupConfiguration, Error> {
    configurations::list(ctx)
        .await?
        .into_iter()
        .find(|c| c.configuration_name == name || c.id == name)
        .ok_or_else(|| Error::not_found(format!("no configuration is named \"{name}\"; `safehold config list` shows them")))
}

fn show_configuration(json: bool, c: &configurations::BackupConfiguration, what: &str) {
    if json {
        print_json(c);
    } else {
        println!("configuration \"{}\" {what}: {} ({}), {} backups into {}, {}", c.configuration_name, c.schedule_cron, c.schedule_description, format!("{:?}", c.backup_type).to_lowercase(), c.storage_location, if c.is_active { "active" } else { "inactive" });
    }
}

/// A repository or archive location as given: a path, an object storage URL (connected with
/// --endpoint/--region if given), or `storage:NAME` — a storage registered in the catalog, with
/// its settings and keychain credentials, read from the catalog already open (one sign-in).
async fn location_in(cli: &Cli, ctx: &Ctx, given: &Path) -> Result<PathBuf, Error> {
    let text = given.to_string_lossy().to_string();
    if let Some(name) = text.strip_prefix("storage:") {
        let (name, rest) = name.split_once('/').unwrap_or((name, ""));
        let store = safehold_core::storage::find(ctx, name).await?;
        let base = safehold_core::storage::location(ctx, &store).await?;
        return Ok(if rest.is_empty() { base } else { base.join(rest) });
    }
    location_with(None, cli.endpoint.as_deref(), cli.region.as_deref(), None, given).await
}

async fn location_with(home: Option<&Path>, endpoint: Option<&str>, region: Option<&str>, operator: Option<&str>, given: &Path) -> Result<PathBuf, Error> {
    let text = given.to_string_lossy().to_string();
    if let Some(name) = text.strip_prefix("storage:") {
        let home = match home {
            Some(h) => h.to_path_buf(),
            None => context::default_home()?,
        };
        let ctx = Ctx::open(&home).await?;
        sign_in_if_needed(&ctx, operator).await?;
        let (name, rest) = name.split_once('/').unwrap_or((name, ""));
        let store = safehold_core::storage::find(&ctx, name).await?;
        let base = safehold_core::storage::location(&ctx, &store).await?;
        return Ok(if rest.is_empty() { base } else { base.join(rest) });
    }
    if safehold_core::remote::is_remote(given) && (endpoint.is_some() || region.is_some()) {
        let settings = safehold_core::remote::Settings {
            endpoint: endpoint.map(str::to_string),
            region: region.map(str::to_string),
            allow_http: endpoint.map(|e| e.starts_with("http://")),
            ..Default::default()
        };
        safehold_core::remote::connect(&text, &settings)?;
    }
    Ok(given.to_path_buf())
}

fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")));
}

fn key_sources(k: &KeyArgs) -> KeySources {
    let keychain: Arc<dyn SecretStore> = Arc::new(Keychain::default());
    KeySources { password_file: k.password_file.clone(), recovery_key_file: k.recovery_key_file.clone(), keychain: Some(keychain), trust_unsigned: k.trust_unsigned, ..Default::default() }
}

/// The keys given on the command line and — with `--operator` — the signed-in super admin's own
/// key (repositories whose key is held by the super admins) and the super admins' public keys (a
/// new repository is sealed to them).
/// Progress on a terminal (one updating line on stderr); plain lines when not a terminal.
fn progress_sink(json: bool) -> ProgressSink {
    if json {
        return source::no_progress();
    }
    let tty = std::io::stderr().is_terminal();
    Arc::new(move |p: Progress| {
        let table = p.table.unwrap_or_default();
        if tty {
            eprint!("\r\x1b[2K{} {} {}/{} tables, {} rows  {table}", p.phase, progress_bar(p.tables_done, p.tables_total, 24), p.tables_done, p.tables_total, p.rows);
        } else {
            eprintln!("{} {}/{} tables done, {} rows  {table}", p.phase, p.tables_done, p.tables_total, p.rows);
        }
    })
}

/// `[#########---------------]`: `done` of `total` in `width` cells.
fn progress_bar(done: u64, total: u64, width: usize) -> String {
    let cells = u64::try_from(width).unwrap_or(0);
    let filled = (done.min(total) * cells).checked_div(total).map_or(0, |f| usize::try_from(f).unwrap_or(width));
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

fn end_progress(json: bool) {
    if !json && std::io::stderr().is_terminal() {
        eprint!("\r\x1b[2K");
    }
}

/// Cancels on Ctrl-C: the partial archive or the open transaction is dropped.
fn cancel_on_ctrl_c() -> CancelToken {
    let token = CancelToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            t.cancel();
        }
    });
    token
}

fn parse_compression(s: &str) -> Result<Option<i32>, Error> {
    match s {
        "none" => Ok(None),
        "zstd" => Ok(Some(DEFAULT_ZSTD_LEVEL)),
        other => match other.strip_prefix("zstd:").and_then(|l| l.parse::<i32>().ok()) {
            Some(l) if (1..=22).contains(&l) => Ok(Some(l)),
            _ => Err(Error::validation(format!("invalid --compression \"{other}\"; use zstd, zstd:LEVEL (1-22) or none"))),
        },
    }
}

/// The archives a verify checks: one, or every one in a repository (those that cannot even be
/// opened included: they are reported as damaged, the others still checked).
fn archives_of(target: &Path) -> Result<(Vec<PathBuf>, Option<Repository>), Error> {
    if safehold_core::repository::is_repository_location(target) {
        let repo = Repository::open(target)?.ok_or_else(|| Error::not_found(format!("{} is not a Safehold repository", target.display())))?;
        let (ok, damaged) = repo.scan()?;
        let mut all: Vec<PathBuf> = ok.into_iter().map(|(p, _)| p).chain(damaged.into_iter().map(|(p, _)| p)).collect();
        all.sort();
        Ok((all, Some(repo)))
    } else {
        Ok((vec![target.to_path_buf()], None))
    }
}

/// Archive path → SHA-256 recorded in the catalog (empty when there is no catalog).
async fn recorded_checksums(home: Option<&Path>) -> std::collections::HashMap<PathBuf, String> {
    let Some(home) = home.map(Path::to_path_buf).or_else(|| context::default_home().ok()) else { return Default::default() };
    if !home.join(safehold_core::catalog::CATALOG_FILE).exists() {
        return Default::default();
    }
    let Ok(ctx) = Ctx::open(&home).await else { return Default::default() };
    safehold_core::history::executions(&ctx, i64::MAX)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| Some((std::fs::canonicalize(e.file_path?).ok()?, e.checksum?)))
        .collect()
}

fn print_plan(p: &restore::RestorePlan) {
    let newest = p.chain.last();
    eprintln!("Restore plan ({})", if p.exact { "from a trial run, rolled back" } else { "from the backup's index" });
    if let Some(b) = newest {
        eprintln!("  backup:  {} ({}, snapshot {}) of {}", b.id, b.backup_type, b.snapshot_time, b.source_name);
    }
    if p.chain.len() > 1 {
        eprintln!("  chain:   {}", p.chain.iter().map(|b| format!("{} ({})", &b.id[..8.min(b.id.len())], b.backup_type)).collect::<Vec<_>>().join(" → "));
    }
    if let Some(pit) = &p.point_in_time {
        eprintln!("  point:   requested {} → reaches {} ({:.0} s earlier)", pit.requested, pit.reached, pit.gap_seconds);
    }
    eprintln!("  target:  {}{}", p.target, if p.create { " (created if missing)" } else { "" });
    let what = match p.restore_type {
        restore::RestoreType::Full if p.clean => format!("full, replacing the target's {} tables and views", p.replaced_objects),
        restore::RestoreType::Full => "full, into an empty database".to_string(),
        restore::RestoreType::Selective => "selective: the tables below replace the target's".to_string(),
        restore::RestoreType::TenantOnly if p.preserve_ids => format!("tenant {}: its rows replace the tenant's current rows; no other tenant is touched", p.tenant_id.clone().unwrap_or_default()),
        restore::RestoreType::TenantOnly => format!(
            "tenant {} restored as a copy{}, with new ids",
            p.tenant_id.clone().unwrap_or_default(),
            p.new_tenant_id.as_ref().map(|n| format!(" under tenant id {n}")).unwrap_or_default()
        ),
    };
    eprintln!("  restore: {what}");
    for t in &p.tables {
        if p.exact {
            eprintln!("    {:<40} {:>9} rows   +{} inserted  ~{} updated  -{} deleted", t.table, t.rows_in_backup, t.inserted, t.updated, t.deleted);
        } else {
            eprintln!("    {:<40} {:>9} rows", t.table, t.rows_in_backup);
        }
    }
    eprintln!("  total:   {} rows, ~{} MB to read, ~{:.0} s", p.rows, p.estimated_bytes / 1_000_000, p.estimated_seconds);
    for w in &p.warnings {
        eprintln!("  warning: {w}");
    }
    if p.destructive {
        eprintln!("  safety backup first: {}", if p.safety_backup { "yes (into the backup's repository)" } else { "no (skipped)" });
    }
}

async fn restore_command(cli: &Cli, a: &RestoreArgs) -> Result<(), Error> {
    let ctx = open_catalog(cli).await?;
    let from = location_in(cli, &ctx, &a.from).await?;
    let action = if a.dry_run { "restore.plan" } else { "restore.start" };
    let (who, keys) = safehold_core::custody::adhoc(&ctx, Permission::RestoreData, action, &format!("{} → {}", from.display(), source::redact(&a.target)), &key_sources(&a.keys), Some(&from)).await?;
    let out = restore_as(cli, &ctx, a, from.clone(), keys).await;
    safehold_core::custody::adhoc_done(&ctx, &who, action, &format!("{} → {}", from.display(), source::redact(&a.target)), Some(&from), &out).await?;
    out
}

async fn restore_as(cli: &Cli, ctx: &Ctx, a: &RestoreArgs, from: PathBuf, keys: KeySources) -> Result<(), Error> {
    let json = cli.json;
    let mut req = restore::RestoreRequest::new(from, a.target.clone());
    req.backup_id = a.backup.clone();
    req.at = a.at.clone();
    req.source_name = a.source.clone();
    req.restore_type = match a.restore_type {
        RestoreTypeArg::Full => restore::RestoreType::Full,
        RestoreTypeArg::Selective => restore::RestoreType::Selective,
        RestoreTypeArg::TenantOnly => restore::RestoreType::TenantOnly,
    };
    req.tables = a.tables.clone();
    req.exclude_tables = a.exclude_tables.clone();
    req.tenant_id = a.tenant.clone();
    req.preserve_ids = !(a.as_copy || a.new_tenant_id.is_some());
    req.new_tenant_id = a.new_tenant_id.clone();
    req.new_tenant_name = a.new_tenant_name.clone();
    req.references = a.reference.clone();
    req.on_conflict = conflict_rules(&a.on_conflict)?;
    req.regenerate = a.regenerate.clone();
    req.create = a.create;
    req.clean = a.clean;
    req.safety_backup = !a.no_safety_backup;
    req.tenant_column = a.tenant_column.clone();
    req.tenants_table = a.tenants_table.clone();
    if let Some(j) = a.jobs {
        req.jobs = j.max(1);
    }
    let opened = restore::open(&req, &keys).await?;
    let cancel = cancel_on_ctrl_c();
    let plan = restore::plan(&req, &opened, a.dry_run, &cancel).await?;
    if a.dry_run {
        if json {
            print_json(&plan);
        } else {
            print_plan(&plan);
            eprintln!("dry run: nothing was changed");
        }
        return Ok(());
    }
    if !json {
        print_plan(&plan);
    }
    if plan.destructive && !a.yes {
        if !std::io::stdin().is_terminal() {
            return Err(Error::validation(format!(
                "this restore replaces data in {}; review the plan (--dry-run) and add --yes to run it without a prompt",
                plan.target
            )));
        }
        eprint!("This replaces data in {}. Type the database name ({}) to go on: ", plan.target, plan.target_database);
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| Error::io("cannot read the answer", &e))?;
        if line.trim() != plan.target_database {
            return Err(Error::new(safehold_core::ErrorCode::Cancelled, "not confirmed: nothing was changed"));
        }
    }
    // Recorded in the catalog as a restore operation, by the operator who ran it.
    let id = restores::insert(ctx, &req, None).await?;
    let out = restores::run(ctx, &id, &req, &keys, Some(opened), &cancel, Some(progress_sink(json))).await;
    end_progress(json);
    let out = out?;
    if json {
        print_json(&serde_json::json!({ "restore_id": id, "outcome": out }));
    } else {
        if let Some(b) = &out.safety_backup {
            println!("safety backup {} of what was replaced: {}", b.id, b.archive);
        }
        match out.restore_type {
            restore::RestoreType::Full => println!("restored backup {} into {}: {} tables, {} rows in {:.1} s", out.archive_id, out.target, out.tables, out.rows, out.seconds),
            _ => {
                for c in &out.changes {
                    println!("  {:<40} {:>9} rows   +{} inserted  ~{} updated  -{} deleted", c.table, c.rows_in_backup, c.inserted, c.updated, c.deleted);
                }
                println!(
                    "restored {} of backup {} into {}{}: {} tables, {} rows in {:.1} s",
                    out.restore_type.as_str(),
                    out.archive_id,
                    out.target,
                    out.new_tenant_id.as_ref().map(|n| format!(" as new tenant {n}")).unwrap_or_default(),
                    out.tables,
                    out.rows,
                    out.seconds
                );
            }
        }
    }
    Ok(())
}

async fn retention_command(ctx: &Ctx, json: bool, name: &str, apply: Option<bool>) -> Result<(), Error> {
    let config = configurations::list(ctx)
        .await?
        .into_iter()
        .find(|c| c.configuration_name == name || c.id == name)
        .ok_or_else(|| Error::not_found(format!("no configuration is named \"{name}\"; `safehold config list` shows them")))?;
    let plan = safehold_core::retention::preview(ctx, &config.id).await?;
    let print = |plan: &safehold_core::retention::RetentionPlan, done: bool| {
        if json {
            print_json(plan);
            return;
        }
        println!("retention of \"{}\": keep {} days (backups before {})", plan.configuration_name, plan.retention_days, plan.cutoff);
        for i in &plan.items {
            let verb = match i.action {
                safehold_core::retention::RetentionAction::Delete if done => "deleted",
                safehold_core::retention::RetentionAction::Delete => "delete ",
                safehold_core::retention::RetentionAction::Keep => "keep   ",
            };
            println!("  {verb} {:<12} {}  {}", i.backup_type, i.started_at, i.reason);
        }
        println!("{} backups, {} bytes {}", plan.delete_count, plan.bytes_freed, if done { "deleted" } else { "would be deleted" });
    };
    match apply {
        None => print(&plan, false),
        Some(yes) => {
            if plan.delete_count > 0 && !yes {
                if !json {
                    print(&plan, false);
                }
                return Err(Error::validation("add --yes to delete these backups (or run retention-preview to review them)"));
            }
            let done = safehold_core::retention::apply(ctx, &config.id).await?;
            print(&done, true);
        }
    }
    Ok(())
}

/// A cloud storage's credentials: this access key id, and its secret read from standard input.
fn credentials_from_stdin(access_key_id: String) -> Result<safehold_core::storage::StorageCredentials, Error> {
    let mut secret = String::new();
    std::io::stdin().read_to_string(&mut secret).map_err(|e| Error::io("cannot read the secret access key from standard input", &e))?;
    Ok(safehold_core::storage::StorageCredentials { access_key_id: Some(access_key_id), secret_access_key: Some(secret.trim().to_string()), service_account_key: None })
}

async fn storage_command(ctx: &Ctx, json: bool, cmd: StorageCommand) -> Result<(), Error> {
    use safehold_core::storage;
    match cmd {
        StorageCommand::Add { name, location, default, endpoint, region, quota, access_key_id } => {
            let s = if safehold_core::remote::is_remote(Path::new(&location)) {
                let credentials = access_key_id.map(credentials_from_stdin).transpose()?;
                storage::add_remote(ctx, storage::RemoteStorageInput { name, url: location.clone(), endpoint, region, quota_bytes: quota, credentials, is_default: default }).await?
            } else {
                let path = PathBuf::from(&location);
                let abs = if path.is_absolute() { path } else { std::env::current_dir().map_err(|e| Error::io("cannot read the current directory", &e))?.join(path) };
                storage::add_local(ctx, &name, &abs, default).await?
            };
            if json {
                print_json(&s);
            } else {
                println!("storage \"{}\" added ({location})", s.storage_name);
            }
        }
        StorageCommand::List => {
            let list = storage::list(ctx).await?;
            if json {
                print_json(&list);
            } else {
                for s in list {
                    let health = match s.last_health_ok {
                        Some(true) => format!("healthy ({} ms)", s.last_health_latency_ms.unwrap_or(0)),
                        Some(false) => format!("FAILING: {}", s.last_health_message.unwrap_or_default()),
                        None => "not checked yet".into(),
                    };
                    let path = s.storage_config.get("path").or_else(|| s.storage_config.get("url")).and_then(|p| p.as_str()).unwrap_or("").to_string();
                    println!("{:<24} {:<6} {}  {} used{}  {health}", s.storage_name, format!("{:?}", s.storage_type).to_lowercase(), path, s.used_space, s.total_capacity.map(|t| format!(" of {t}")).unwrap_or_default());
                }
            }
        }
        StorageCommand::Check { name } => {
            let h = storage::check(ctx, &name).await?;
            if json {
                print_json(&h);
            } else {
                println!("{}: {}", h.storage_name, h.message);
            }
            if !h.ok {
                return Err(Error::new(safehold_core::ErrorCode::Io, format!("the storage \"{}\" failed its health check: {}", h.storage_name, h.message)));
            }
        }
        StorageCommand::Set { name, default, deactivate, activate, quota, access_key_id } => {
            let credentials = access_key_id.map(credentials_from_stdin).transpose()?;
            let is_active = if deactivate { Some(false) } else if activate { Some(true) } else { None };
            let s = storage::update(ctx, &name, storage::StorageChange { make_default: default, is_active, quota_bytes: quota, credentials }).await?;
            if json {
                print_json(&s);
            } else {
                println!("storage \"{}\" changed{}{}", s.storage_name, if s.is_default { " (default)" } else { "" }, if s.is_active { "" } else { " (inactive)" });
            }
        }
        StorageCommand::Keys { name } => {
            let c = safehold_core::custody::custody(ctx, &name).await?;
            if json {
                print_json(&c);
            } else if let Some(problem) = &c.problem {
                println!("{name}: keys not known: {problem}");
            } else if !c.has_repository {
                println!("{name}: no backups yet (the first backup creates the repository and its key)");
            } else {
                let mut holders = Vec::new();
                if !c.super_admins.is_empty() {
                    holders.push(format!("the super admins {}", c.super_admins.join(", ")));
                }
                if c.in_keychain {
                    holders.push("this workstation's keychain (anyone using Safehold here can restore)".to_string());
                } else if c.password && c.super_admins.is_empty() {
                    holders.push("its repository password (given with --password-file; not kept on this workstation)".to_string());
                }
                println!("{name}: backups open with {}", if holders.is_empty() { "the recovery kit only".to_string() } else { holders.join("; ") });
                if !c.pending.is_empty() {
                    println!("  not yet sealed to {} (done at the next super admin sign-in while the storage is reachable)", c.pending.join(", "));
                }
                if !c.former.is_empty() {
                    println!("  still sealed to former super admins {} (removed at the next super admin sign-in)", c.former.join(", "));
                }
                println!("  recovery kit: {}", if c.recovery_exported { "exported" } else { "not exported yet: safehold key export-recovery <the storage's location>" });
            }
        }
        StorageCommand::Usage { name } => {
            let u = storage::refresh_usage(ctx, &name).await?;
            if json {
                print_json(&u);
            } else {
                println!("{}: {} bytes in {} archives{}", u.storage_name, u.used_space, u.archives, u.total_capacity.map(|t| format!(", filesystem {t} bytes ({} available)", u.available.unwrap_or(0))).unwrap_or_default());
            }
        }
        StorageCommand::Remove { name } => {
            storage::remove(ctx, &name).await?;
            if !json {
                println!("storage \"{name}\" removed from the catalog (its files were kept)");
            }
        }
    }
    Ok(())
}

async fn run_engine(cli: &Cli) -> Result<bool, Error> {
    let no_keys = KeyArgs::default();
    let (permission, action, place, keys) = match &cli.command {
        Command::Backup(a) => (Permission::TriggerManual, "backup.adhoc", &a.to, &a.keys),
        Command::Verify(a) if a.restore_test => (Permission::RestoreData, "backup.verify_restore", &a.target, &a.keys),
        Command::Verify(a) if a.deep => (Permission::RestoreData, "backup.verify_deep", &a.target, &a.keys),
        Command::Verify(a) => (Permission::TriggerManual, "backup.verify", &a.target, &a.keys),
        Command::Ls { repo } => (Permission::ViewHistory, "backup.list", repo, &no_keys),
        Command::Inspect { archive, keys } => (Permission::ViewHistory, "backup.inspect", archive, keys),
        Command::Key(KeyCommand::ExportRecovery { repo, keys }) => (Permission::RestoreData, "key.export_recovery", repo, keys),
        Command::Key(KeyCommand::Writers { repo, keys }) => (Permission::ViewHistory, "key.writers", repo, keys),
        Command::Key(KeyCommand::ApproveWriter { repo, keys, .. }) => (Permission::RestoreData, "key.approve_writer", repo, keys),
        Command::Restore(a) => {
            restore_command(cli, a).await?;
            return Ok(true);
        }
        _ => return Ok(false),
    };
    // Every one of them acts as the signed-in operator (once operators exist), with that
    // operator's permission checked and the outcome audited under their name.
    let ctx = open_catalog(cli).await?;
    let place = location_in(cli, &ctx, place).await?;
    let (who, keys) = safehold_core::custody::adhoc(&ctx, permission, action, &place.display().to_string(), &key_sources(keys), Some(&place)).await?;
    let out = engine_command(cli, &place, keys).await;
    if !matches!(cli.command, Command::Ls { .. } | Command::Inspect { .. }) || out.is_err() {
        safehold_core::custody::adhoc_done(&ctx, &who, action, &place.display().to_string(), Some(&place), &out).await?;
    }
    out.map(|()| true)
}

async fn engine_command(cli: &Cli, place: &Path, keys: KeySources) -> Result<(), Error> {
    let json = cli.json;
    match &cli.command {
        Command::Backup(a) => {
            let spec = SourceSpec::parse(&a.source)?;
            let mut req = BackupRequest::new(spec);
            req.signer = keys.writer.clone();
            req.backup_type = a.backup_type;
            req.zstd_level = parse_compression(&a.compression)?;
            req.encrypt = !a.no_encrypt;
            req.tenant_column = a.tenant_column.clone();
            req.tenants_table = a.tenants_table.clone();
            if let Some(j) = a.jobs {
                req.jobs = j.max(1);
            }
            // Sealed to the repository's public key: an existing repository needs no password.
            let (repo, mk) = keys.open_repository_for_sealed_backup(place).await?;
            let out = backup::run_with(&repo, mk.as_ref(), &req, &cancel_on_ctrl_c(), &progress_sink(json)).await;
            end_progress(json);
            let out = out?;
            if json {
                print_json(&out);
            } else {
                println!(
                    "{:?} backup {} of {}: {} tables, {} rows, {} bytes ({} raw) in {:.1} s\n  {}\n  sha256 {}",
                    out.backup_type, out.id, req.source_name, out.tables, out.rows, out.bytes, out.raw_bytes, out.seconds, out.archive, out.sha256
                );
                if let Some(note) = &out.note {
                    println!("  note: {note}");
                }
            }
        }
        Command::Verify(a) if a.restore_test => {
            let scratch = a.scratch.clone().ok_or_else(|| {
                Error::validation("a test restore needs a PostgreSQL server for its scratch database: give --scratch postgres://user@host:5432/postgres or set SAFEHOLD_SCRATCH_URL")
            })?;
            let req = restore::RestoreRequest::new(place.to_path_buf(), String::new());
            let opened = restore::open(&req, &keys).await?;
            let report = verify::restore_test(&opened, &scratch, a.source.as_deref(), &cancel_on_ctrl_c(), &progress_sink(json)).await;
            end_progress(json);
            let report = report?;
            if json {
                print_json(&report);
            } else {
                println!("test restore of backup {} ({} backups read) into scratch database {} (dropped):", report.archive_id, report.backups, report.scratch_database);
                for t in &report.tables {
                    println!("  {}  {:<40} rows {}/{}  archive {}  source {}", if t.ok { "ok  " } else { "FAIL" }, t.table, t.restored_rows, t.expected_rows, t.archive_checksum, t.source);
                }
            }
            if !report.ok {
                return Err(Error::validation(format!("the test restore of backup {} found differences (see the tables marked FAIL)", report.archive_id)));
            }
        }
        Command::Verify(a) => {
            let (paths, repo) = archives_of(place)?;
            // The checksums the catalog recorded when the archives were written, if it knows them.
            let recorded = recorded_checksums(cli.home.as_deref()).await;
            let mut reports = Vec::new();
            let mut failed: Vec<String> = Vec::new();
            for p in &paths {
                // Each archive on its own: a damaged one is reported and the others still checked.
                let checked = async {
                    if a.deep {
                        let mut reader = ArchiveReader::open(p)?;
                        keys.unlock_archive(&mut reader, repo.as_ref()).await?;
                        verify::deep_with(reader)
                    } else {
                        let canonical = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                        verify::quick_in(p, recorded.get(&canonical).map(String::as_str), repo.as_ref())
                    }
                }
                .await;
                match checked {
                    Ok(report) => {
                        if !json {
                            println!("ok  {}  {}  sha256 {}{}", report.archive_id, report.archive, report.sha256, if report.deep { format!("  {} sections, {} rows", report.sections, report.rows) } else { String::new() });
                        }
                        reports.push(serde_json::to_value(&report).unwrap_or_default());
                    }
                    Err(e) if paths.len() > 1 && e.code != ErrorCode::AuthFailed => {
                        if !json {
                            println!("FAIL  {}  {}", p.display(), e.message);
                        }
                        reports.push(serde_json::json!({ "archive": p.display().to_string(), "ok": false, "error": e.message }));
                        failed.push(p.display().to_string());
                    }
                    Err(e) => return Err(e),
                }
            }
            if json {
                print_json(&reports);
            }
            if !failed.is_empty() {
                return Err(Error::validation(format!("{} of {} archives failed verification: {}; the others are sound", failed.len(), paths.len(), failed.join(", "))));
            }
        }
        Command::Ls { .. } => {
            let repo = Repository::open(place)?.ok_or_else(|| Error::not_found(format!("{} is not a Safehold repository", place.display())))?;
            let (list, damaged) = repo.scan()?;
            for (p, e) in &damaged {
                eprintln!("warning: {} cannot be read and is skipped: {}", p.display(), e.message);
            }
            if json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|(p, h)| serde_json::json!({ "id": h.archive_id, "type": h.backup_type, "parent": h.parent_id, "source": h.source_name, "snapshot_time": h.snapshot_time, "archive": p.display().to_string(), "bytes": std::fs::metadata(p).map(|m| m.len()).unwrap_or(0), "encrypted": h.encrypted, "writer": h.writer.as_ref().map(|w| &w.name), "writer_key": h.writer.as_ref().map(|w| &w.public_key) }))
                    .collect();
                print_json(&rows);
            } else if list.is_empty() {
                println!("no backups in {}", repo.dir.display());
            } else {
                for (p, h) in list {
                    let by = h.writer.as_ref().map(|w| format!("by {}", w.name)).unwrap_or_else(|| "unsigned".into());
                    println!("{}  {:<12} {}  {}  {by}  {}", h.archive_id, h.backup_type, h.snapshot_time, h.source_name, p.display());
                }
            }
        }
        Command::Inspect { .. } => {
            let mut reader = ArchiveReader::open(place)?;
            let header = reader.header.clone();
            let index = match keys.unlock_archive_unchecked(&mut reader, None).await {
                Ok(()) => reader.index().ok(),
                Err(_) => None,
            };
            let provenance = safehold_core::unlock::provenance_in(&reader, None)?;
            if json {
                print_json(&serde_json::json!({ "header": {
                    "archive_id": header.archive_id, "repository_id": header.repository_id, "type": header.backup_type,
                    "parent": header.parent_id, "source_kind": header.source_kind, "source_name": header.source_name,
                    "source_fingerprint": header.source_fingerprint, "snapshot_time": header.snapshot_time,
                    "format_version": header.format_version, "compression": header.compression, "encrypted": header.encrypted },
                    "provenance": provenance,
                    "index": index }));
            } else {
                println!("archive {} (format {})\n  repository {}\n  {} backup of {} ({})\n  snapshot {}\n  {}, {}", header.archive_id, header.format_version, header.repository_id, header.backup_type, header.source_name, header.source_kind, header.snapshot_time, header.compression, if header.encrypted { "encrypted" } else { "not encrypted" });
                let by = match &provenance {
                    safehold_core::writers::Provenance::Approved { writer, .. } => format!("written by {writer} (signature checked, an approved writer)"),
                    safehold_core::writers::Provenance::Unapproved { writer, .. } => format!("written by {writer} (signature checked; no key holder approved this writer, or no key was given to tell)"),
                    safehold_core::writers::Provenance::Forged => "its signature does not match it: changed after it was written".into(),
                    safehold_core::writers::Provenance::Unsigned => "not signed".into(),
                };
                println!("  {by}");
                match index {
                    Some(i) => {
                        for s in i.sections.iter().filter(|s| s.kind == "table") {
                            println!("  {:<40} {:>10} rows {:>12} bytes", s.name, s.rows, s.plain_bytes);
                        }
                    }
                    None => println!("  (tables hidden: no key; give --password-file or --recovery-key-file)"),
                }
            }
        }
        Command::Key(KeyCommand::Writers { .. }) => {
            let repo = Repository::open(place)?.ok_or_else(|| Error::not_found(format!("{} is not a Safehold repository", place.display())))?;
            let listed = repo.config.writers.clone().unwrap_or_default().list;
            let mut seen: std::collections::BTreeMap<String, String> = Default::default();
            for (_, h) in repo.list()? {
                if let Some(w) = h.writer {
                    seen.insert(w.public_key, w.name);
                }
            }
            let rows: Vec<serde_json::Value> = listed
                .iter()
                .map(|w| serde_json::json!({ "public_key": w.public_key, "name": w.name, "approved": true, "approved_at": w.approved_at }))
                .chain(seen.iter().filter(|(k, _)| !listed.iter().any(|w| &w.public_key == *k)).map(|(k, n)| serde_json::json!({ "public_key": k, "name": n, "approved": false })))
                .collect();
            if json {
                print_json(&rows);
            } else {
                for r in &rows {
                    println!("{}  {:<32} {}", r["public_key"].as_str().unwrap_or_default(), r["name"].as_str().unwrap_or_default(), if r["approved"] == true { "approved" } else { "NOT approved: its backups do not restore" });
                }
            }
        }
        Command::Key(KeyCommand::ApproveWriter { writer, .. }) => {
            let mut repo = Repository::open(place)?.ok_or_else(|| Error::not_found(format!("{} is not a Safehold repository", place.display())))?;
            let prefix = writer.trim().to_ascii_lowercase();
            let mut found: Vec<(String, String)> = Vec::new();
            for (_, h) in repo.list()? {
                if let Some(w) = h.writer.filter(|w| prefix.len() >= 8 && w.public_key.starts_with(&prefix)) {
                    if !found.iter().any(|(k, _)| *k == w.public_key) {
                        found.push((w.public_key, w.name));
                    }
                }
            }
            let (key, name) = match found.as_slice() {
                [one] => one.clone(),
                [] => return Err(Error::not_found(format!("no archive in {} was written by a key starting {prefix} (give at least 8 characters, as `safehold key writers` shows)", place.display()))),
                _ => return Err(Error::validation(format!("{prefix} starts several writers' keys: give more of it"))),
            };
            let mk = keys.unlock_repository(&repo).await?;
            let added = repo.approve_writer(&mk, &key, &name)?;
            println!("{} {name} ({key})", if added { "approved" } else { "already approved:" });
        }
        Command::Key(KeyCommand::ExportRecovery { .. }) => {
            let mut repository = Repository::open(place)?.ok_or_else(|| Error::not_found(format!("{} is not a Safehold repository", place.display())))?;
            let mk = keys.unlock_repository(&repository).await?;
            // Printed (and the output flushed) before the repository forgets it: a kit that
            // could not be written out is not lost.
            let kit = repository.recovery_kit(&mk)?;
            let mut out = std::io::stdout().lock();
            out.write_all(kit.as_bytes()).and_then(|()| out.flush()).map_err(|e| Error::io("cannot write the recovery kit to the standard output (the repository still keeps it)", &e))?;
            repository.forget_recovery()?;
        }
        _ => {}
    }
    Ok(())
}

/// A password: from `file`, else prompted on the terminal (`confirm`: asked twice).
fn read_password(file: Option<&Path>, prompt: &str, confirm: bool) -> Result<String, Error> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).map_err(|e| Error::io(format!("cannot read the password file {}", f.display()), &e))?;
        return Ok(text.trim_end_matches(['\n', '\r']).to_string());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::validation(format!("{prompt}: no terminal to ask on; give the password in a file (--password-file, or SAFEHOLD_OPERATOR_PASSWORD_FILE)")));
    }
    let pw = rpassword::prompt_password(format!("{prompt}: ")).map_err(|e| Error::io("cannot read the password", &e))?;
    if confirm && rpassword::prompt_password("again: ").map_err(|e| Error::io("cannot read the password", &e))? != pw {
        return Err(Error::validation("the two passwords differ"));
    }
    Ok(pw)
}

/// Opens the catalog; once operators exist, signs in the one named by --operator.
async fn open_catalog(cli: &Cli) -> Result<Ctx, Error> {
    let home = match cli.home.clone() {
        Some(h) => h,
        None => context::default_home()?,
    };
    let ctx = Ctx::open(&home).await?;
    // A command killed earlier (kill -9, power loss) left its rows `running`: they are marked
    // interrupted now (never a job a live process runs), and the partial files it left removed.
    if !matches!(cli.command, Command::Schedule(ScheduleCommand::Run { .. })) {
        let r = safehold_core::scheduler::recover_dead(&ctx).await?;
        if r.backups + r.restores + r.migrations + r.partial_files > 0 {
            eprintln!(
                "note: found what an earlier run left when it was stopped: {} backups, {} restores and {} migrations marked interrupted; {} partial files removed",
                r.backups, r.restores, r.migrations, r.partial_files
            );
        }
    }
    if !matches!(cli.command, Command::Operator(OperatorCommand::Setup { .. })) {
        sign_in_if_needed(&ctx, cli.operator.as_deref()).await?;
    }
    Ok(ctx)
}

/// Once the catalog has operators, signs in `operator` (its password prompted, or read from
/// SAFEHOLD_OPERATOR_PASSWORD_FILE).
async fn sign_in_if_needed(ctx: &Ctx, operator: Option<&str>) -> Result<(), Error> {
    if !operators::set_up(&ctx.pool).await? {
        return Ok(());
    }
    let name = operator.filter(|n| !n.trim().is_empty()).ok_or_else(|| {
        Error::new(
            ErrorCode::PermissionDenied,
            "this catalog has operators: give --operator NAME (or SAFEHOLD_OPERATOR); the password is prompted, or read from SAFEHOLD_OPERATOR_PASSWORD_FILE",
        )
    })?;
    let file = std::env::var_os("SAFEHOLD_OPERATOR_PASSWORD_FILE").map(PathBuf::from);
    let pw = read_password(file.as_deref(), &format!("password of {name}"), false)?;
    operators::sign_in(ctx, name, &pw, false).await?;
    Ok(())
}

async fn operator_command(ctx: &Ctx, cmd: &OperatorCommand, json: bool) -> Result<(), Error> {
    let show = |o: &operators::Operator| {
        let state = if !o.is_active { "disabled" } else if o.locked_until.as_deref().is_some_and(|u| u > safehold_core::catalog::now().as_str()) { "locked" } else { "active" };
        println!("{:<24} {:<18} {:<9} last sign-in {}", o.name, o.role, state, o.last_sign_in.as_deref().unwrap_or("never"));
    };
    match cmd {
        OperatorCommand::Setup { name, password_file } => {
            let pw = read_password(password_file.as_deref(), &format!("new password of {name}"), true)?;
            let a = operators::create_first(ctx, name, &pw).await?;
            println!("{} is the first super admin; catalog commands now need --operator", a.name);
        }
        OperatorCommand::Add { name, role, password_file } => {
            let role = operators::Role::parse(role)?;
            let pw = read_password(password_file.as_deref(), &format!("new password of {name}"), true)?;
            let o = operators::add(ctx, name, role, &pw).await?;
            if json { print_json(&o) } else { show(&o) }
        }
        OperatorCommand::List => {
            let list = operators::list(ctx).await?;
            if json { print_json(&list) } else { list.iter().for_each(show) }
        }
        OperatorCommand::SetRole { name, role } => show(&operators::set_role(ctx, name, operators::Role::parse(role)?).await?),
        OperatorCommand::Disable { name } => show(&operators::set_active(ctx, name, false).await?),
        OperatorCommand::Enable { name } => show(&operators::set_active(ctx, name, true).await?),
        OperatorCommand::Remove { name } => {
            operators::remove(ctx, name).await?;
            println!("removed {name}");
        }
        OperatorCommand::Password { current_password_file, password_file } => {
            let current = read_password(current_password_file.as_deref(), "current password", false)?;
            let pw = read_password(password_file.as_deref(), "new password", true)?;
            operators::change_password(ctx, &current, &pw).await?;
            println!("password changed");
        }
        OperatorCommand::Reset { name, password_file } => {
            let pw = read_password(password_file.as_deref(), &format!("new password of {name}"), true)?;
            let o = operators::reset_password(ctx, name, &pw).await?;
            if json { print_json(&o) } else { show(&o) }
        }
        OperatorCommand::IdleTimeout { seconds } => {
            operators::set_idle_timeout(ctx, *seconds).await?;
            println!("app sessions end after {seconds} s idle");
        }
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<(), Error> {
    if run_engine(&cli).await? {
        return Ok(());
    }
    let ctx = open_catalog(&cli).await?;
    let (given_home, endpoint, region, operator) = (cli.home.clone(), cli.endpoint.clone(), cli.region.clone(), cli.operator.clone());
    match cli.command {
        Command::Connection(ConnectionCommand::Add { name, url, password_stdin, tenant_column, tenants_table }) => {
            let mut input = ConnectionInput::from_url(&name, &url)?;
            if password_stdin {
                let mut pw = String::new();
                std::io::stdin()
                    .read_to_string(&mut pw)
                    .map_err(|e| Error::io("cannot read the password from standard input", &e))?;
                input.password = Some(pw.trim_end_matches(['\r', '\n']).to_string());
            }
            input.tenant_column = tenant_column;
            input.tenants_table = tenants_table;
            let c = connections::add(&ctx, input).await?;
            if cli.json {
                print_json(&c);
            } else {
                println!("added connection \"{}\" ({}){}", c.name, c.address(), if c.has_password { ", password in the OS keychain" } else { "" });
            }
        }
        Command::Connection(ConnectionCommand::List) => {
            let list = connections::list(&ctx).await?;
            if cli.json {
                print_json(&list);
            } else if list.is_empty() {
                println!("no connections; add one with `safehold connection add NAME URL`");
            } else {
                for c in list {
                    println!("{:<24} {:<8} {}", c.name, format!("{:?}", c.kind).to_lowercase(), c.address());
                }
            }
        }
        Command::Connection(ConnectionCommand::Test { name }) => {
            let c = connections::find(&ctx, &name).await?;
            let report = connections::test(&ctx, &c.id).await?;
            if cli.json {
                print_json(&report);
            } else {
                println!("{}: {} — {} bytes, {} tables", report.address, report.server_version, report.size_bytes, report.table_count);
                if report.tenant_tables.is_empty() {
                    println!("no tenant tables (no table has a {} column)", c.tenant_column);
                }
                for t in report.tenant_tables {
                    let name = match t.schema { Some(s) => format!("{s}.{}", t.name), None => t.name };
                    match t.rows {
                        Some(r) => println!("  tenant table {name}: {r} rows"),
                        None => println!("  tenant table {name}"),
                    }
                }
            }
        }
        Command::Connection(ConnectionCommand::Remove { name }) => {
            let c = connections::find(&ctx, &name).await?;
            connections::remove(&ctx, &c.id).await?;
            if !cli.json {
                println!("removed connection \"{}\"", c.name);
            }
        }
        Command::Config(ConfigCommand::List) => {
            let list = configurations::list(&ctx).await?;
            if cli.json {
                print_json(&list);
            } else {
                for c in list {
                    println!(
                        "{:<28} {:<12} {:<14} {} ({}), keep {} days, {}",
                        c.configuration_name,
                        format!("{:?}", c.backup_type).to_lowercase(),
                        c.schedule_cron,
                        c.schedule_description,
                        if c.is_active { "active" } else { "inactive" },
                        c.retention_days,
                        c.storage_location
                    );
                }
            }
        }
        Command::Config(ConfigCommand::Add { name, connection, schedule, settings }) => {
            let conn = connections::find(&ctx, &connection).await?;
            let default_storage = safehold_core::storage::list(&ctx).await?.into_iter().find(|s| s.is_default).map(|s| s.storage_name).unwrap_or_default();
            let mut input = configurations::ConfigurationInput {
                configuration_name: name,
                backup_type: BackupType::Full,
                schedule_cron: schedule,
                retention_days: 30,
                compression_enabled: true,
                encryption_enabled: true,
                storage_location: default_storage,
                secondary_storage: None,
                missed_runs: configurations::MissedRuns::RunOnce,
                time_zone: None,
                includes_tenant_data: true,
                includes_system_data: true,
                includes_logs: false,
                is_active: true,
                connection_id: conn.id,
            };
            settings.apply(&ctx, &mut input).await?;
            let c = configurations::create(&ctx, input).await?;
            show_configuration(cli.json, &c, "created");
        }
        Command::Config(ConfigCommand::Set { name, connection, schedule, settings, rename }) => {
            let current = configuration(&ctx, &name).await?;
            let mut input = current.to_input();
            if let Some(c) = connection {
                input.connection_id = connections::find(&ctx, &c).await?.id;
            }
            if let Some(s) = schedule {
                input.schedule_cron = s;
            }
            if let Some(n) = rename {
                input.configuration_name = n;
            }
            settings.apply(&ctx, &mut input).await?;
            let c = configurations::update(&ctx, &current.id, input).await?;
            show_configuration(cli.json, &c, "changed");
        }
        Command::Config(ConfigCommand::Remove { name }) => {
            let c = configuration(&ctx, &name).await?;
            configurations::delete(&ctx, &c.id).await?;
            println!("configuration \"{}\" deleted (its backups stay)", c.configuration_name);
        }
        Command::Config(ConfigCommand::Run { name }) => {
            let config = configurations::list(&ctx)
                .await?
                .into_iter()
                .find(|c| c.configuration_name == name || c.id == name)
                .ok_or_else(|| Error::not_found(format!("no configuration is named \"{name}\"; `safehold config list` shows them")))?;
            let id = safehold_core::runs::enqueue(&ctx, &config.id).await?;
            let done = safehold_core::runs::run(&ctx, &id, &cancel_on_ctrl_c()).await?;
            if cli.json {
                print_json(&done);
            } else {
                println!("{} backup of \"{}\": {:?}{}", done.backup_type, name, done.status, done.file_path.as_deref().map(|p| format!(" — {p}")).unwrap_or_default());
            }
            if let Some(e) = done.error_message {
                return Err(Error::new(safehold_core::ErrorCode::Database, e));
            }
        }
        Command::Storage(cmd) => storage_command(&ctx, cli.json, cmd).await?,
        Command::Schedule(ScheduleCommand::List) => {
            let list = safehold_core::scheduler::list(&ctx).await?;
            if cli.json {
                print_json(&list);
            } else {
                for s in list {
                    println!(
                        "{:<28} {:<16} {:<40} {}",
                        s.configuration_name,
                        s.schedule_cron,
                        s.description,
                        s.next_run.map(|n| format!("next {n} ({})", s.time_zone)).unwrap_or_else(|| "inactive".into())
                    );
                }
            }
        }
        Command::Schedule(ScheduleCommand::Run { max_jobs }) => {
            let stamp = || safehold_core::catalog::now();
            let r = safehold_core::scheduler::recover_interrupted(&ctx).await?;
            if r.backups + r.restores + r.migrations + r.partial_files + r.uploads as u64 > 0 {
                println!(
                    "{} {} backups, {} restores and {} migrations were interrupted by a stop; {} partial archives removed, {} unfinished uploads aborted",
                    stamp(),
                    r.backups,
                    r.restores,
                    r.migrations,
                    r.partial_files,
                    r.uploads
                );
            }
            let log: safehold_core::scheduler::LogSink = Arc::new(move |line| println!("{} {line}", safehold_core::catalog::now()));
            let scheduler = safehold_core::scheduler::Scheduler::new(ctx.clone(), max_jobs, log);
            let active = configurations::list(&ctx).await?.into_iter().filter(|c| c.is_active).count();
            println!("{} scheduler running: {active} active configurations, {max_jobs} job(s) at a time; Ctrl-C stops it", stamp());
            tokio::select! {
                _ = scheduler.clone().run() => {}
                _ = tokio::signal::ctrl_c() => println!("{} stopping", stamp()),
            }
        }
        Command::Catalog(CatalogCommand::Rebuild { from }) => {
            let report = safehold_core::recovery::rebuild_catalog(&ctx, &location_with(given_home.as_deref(), endpoint.as_deref(), region.as_deref(), operator.as_deref(), &from).await?).await?;
            if cli.json {
                print_json(&report);
            } else {
                println!(
                    "{} backups recorded from {} ({} already known){}; restore any of them with its repository's recovery key (--recovery-key-file)",
                    report.added,
                    report.repository,
                    report.already_known,
                    if report.storage_added { format!("; registered as the storage \"{}\"", report.storage_name) } else { String::new() }
                );
                for u in &report.unreadable {
                    eprintln!("warning: not a readable archive: {u}");
                }
            }
        }
        Command::Config(ConfigCommand::RetentionPreview { name }) => retention_command(&ctx, cli.json, &name, None).await?,
        Command::Config(ConfigCommand::RetentionApply { name, yes }) => retention_command(&ctx, cli.json, &name, Some(yes)).await?,
        Command::Tenant(t) => tenant_command(&ctx, cli.json, t).await?,
        Command::Operator(cmd) => operator_command(&ctx, &cmd, cli.json).await?,
        Command::History { check: Some(id), deep, .. } => {
            let c = safehold_core::checks::check_backup(&ctx, &id, deep).await?;
            if cli.json {
                print_json(&c);
            } else {
                println!("{} {} ({} check): {}", if c.ok { "ok  " } else { "FAIL" }, c.execution_id, if c.deep { "deep" } else { "quick" }, c.message);
            }
            if !c.ok {
                return Err(Error::validation(format!("backup {} failed its check: {}", c.execution_id, c.message)));
            }
        }
        Command::History { status, limit, check: None, .. } => {
            let status = match status.as_deref() {
                None => None,
                Some(s) => Some(serde_json::from_value::<safehold_core::history::JobStatus>(serde_json::Value::String(s.to_string())).map_err(|_| {
                    Error::validation(format!("unknown status \"{s}\"; use pending, running, completed, failed or cancelled"))
                })?),
            };
            let rows = safehold_core::history::executions_with(&ctx, limit, status).await?;
            if cli.json {
                print_json(&rows);
            } else if rows.is_empty() {
                println!("no backups{}", status.map(|_| " with that status").unwrap_or_default());
            } else {
                for b in &rows {
                    let check = b.metadata.get("last_check").and_then(|c| c.get("ok")).and_then(serde_json::Value::as_bool).map(|ok| if ok { "  verified" } else { "  CHECK FAILED" }).unwrap_or_default();
                    println!(
                        "{}  {:<9} {:<12} {:<24} {:>10} rows  {}{}{}",
                        b.started_at,
                        serde_json::to_value(b.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                        b.backup_type,
                        b.configuration_name.as_deref().unwrap_or("-"),
                        b.record_count.unwrap_or(0),
                        b.id,
                        check,
                        b.error_message.as_deref().map(|e| format!("  error: {e}")).unwrap_or_default()
                    );
                }
            }
        }
        Command::Audit { by, action, outcome, since, until, limit, csv } => {
            let filter = auditlog::AuditFilter { operator: by, action, outcome, since, until, limit };
            match csv {
                Some(path) => {
                    let n = auditlog::export_csv(&ctx, &filter, &path).await?;
                    println!("{n} entries written to {}", path.display());
                }
                None => {
                    let rows = auditlog::list(&ctx, &filter).await?;
                    if cli.json {
                        print_json(&rows);
                    } else {
                        for r in rows.iter().rev() {
                            println!(
                                "{}  {:<20} {:<28} {:<8} {}{}",
                                r.at,
                                r.operator.as_deref().unwrap_or("-"),
                                r.action,
                                r.outcome,
                                r.target.as_deref().unwrap_or(""),
                                r.detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
                            );
                        }
                    }
                }
            }
        }
        Command::Backup(_) | Command::Restore(_) | Command::Verify(_) | Command::Ls { .. } | Command::Inspect { .. } | Command::Key(_) => {}
        Command::Demo { postgres } => {
            let report = demo::ensure(&ctx, true).await?;
            let copied = match &postgres {
                Some(url) => {
                    let rows = demo::copy_to_postgres(&demo::database_path(&ctx.home), url).await?;
                    let mut input = ConnectionInput::from_url(demo::DEMO_POSTGRES_CONNECTION, url)?;
                    input.password = None;
                    connections::add(&ctx, input).await?;
                    Some(rows)
                }
                None => None,
            };
            if cli.json {
                let mut out = serde_json::to_value(&report).unwrap_or_default();
                if let (Some(rows), Some(map)) = (copied, out.as_object_mut()) {
                    map.insert("postgres_rows".into(), rows.into());
                }
                print_json(&out);
            } else {
                if report.created {
                    println!("demo platform ready at {} ({} tenants, {} rows)", report.database_path, report.tenants, report.rows);
                } else {
                    println!("the demo platform is already set up at {}", report.database_path);
                }
                if let Some(rows) = copied {
                    println!("copied into PostgreSQL ({rows} rows) and registered as the connection \"{}\"", demo::DEMO_POSTGRES_CONNECTION);
                }
            }
        }
    }
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("cannot read the {what} file {}", path.display()), &e))?;
    serde_json::from_str(&text).map_err(|e| Error::validation(format!("the {what} file {} is not valid: {e}", path.display())))
}

/// `TABLE=stop|keep-target|take-source|keep-both`, each.
fn conflict_rules(given: &[String]) -> Result<std::collections::BTreeMap<String, Resolution>, Error> {
    let mut out = std::collections::BTreeMap::new();
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

fn migration_spec(kind: MigrationType, common: &MigrationArgs) -> Result<MigrationSpec, Error> {
    let mut spec = MigrationSpec { migration_type: Some(kind), migration_name: common.name.clone().unwrap_or_default(), ..Default::default() };
    if let Some(r) = &common.rules {
        spec.rules = read_json(r, "rules")?;
    }
    spec.references = common.reference.clone();
    if let Some(m) = &common.mapping {
        let text = std::fs::read_to_string(m).map_err(|e| Error::io(format!("cannot read the mapping file {}", m.display()), &e))?;
        let file = safehold_core::migrate::MappingFile::parse(&text, &m.display().to_string())?;
        spec.mapping = file.tables;
        spec.references.extend(file.references.into_iter().filter(|r| !common.reference.contains(r)));
    }
    spec.conflicts = conflict_rules(&common.on_conflict)?;
    for c in &common.regenerate {
        let (table, column) = c.trim().rsplit_once('.').ok_or_else(|| Error::validation(format!("--regenerate {c}: write TABLE.COLUMN")))?;
        spec.rules.push(safehold_core::migrate::rules::Rule { table: table.into(), column: column.into(), action: safehold_core::migrate::rules::Action::Regenerate { template: None } });
    }
    spec.suffix = common.suffix.clone();
    spec.skip_rejected = common.skip_rejected;
    spec.tenant_column = common.tenant_column.clone();
    spec.tenants_table = common.tenants_table.clone();
    Ok(spec)
}

fn print_migration(r: &MigrationReport) {
    for t in &r.tables {
        let from = t.source_table.as_deref().filter(|s| *s != t.table).map(|s| format!(" (from {s})")).unwrap_or_default();
        println!(
            "  {:<34} {:>7} read {:>7} written{}{}{}{}",
            format!("{}{from}", t.table),
            t.rows_read,
            t.rows_written,
            if t.rows_updated > 0 { format!("  ~{} updated", t.rows_updated) } else { String::new() },
            if t.rows_merged > 0 { format!("  {} merged", t.rows_merged) } else { String::new() },
            if t.rows_renamed > 0 { format!("  {} with suffix", t.rows_renamed) } else { String::new() },
            if t.rows_rejected > 0 { format!("  {} set aside", t.rows_rejected) } else { String::new() },
        );
        for p in &t.problems {
            println!("    {}: {}", p.kind, p.message);
            for s in &p.samples {
                println!("      e.g. {s}");
            }
        }
        for n in &t.notes {
            println!("    note: {n}");
        }
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    for f in &r.files {
        println!("  {}  {} bytes  sha256 {}", f.path, f.bytes, f.sha256);
    }
}

async fn tenant_command(ctx: &Ctx, json: bool, cmd: TenantCommand) -> Result<(), Error> {
    let (spec, dry_run, keys) = match cmd {
        TenantCommand::Copy { source, tenant, target, new_tenant_id, new_tenant_name, common } => {
            let mut s = migration_spec(MigrationType::TenantCopy, &common)?;
            s.target = Some(target.unwrap_or_else(|| source.clone()));
            (s.source, s.source_tenant_ids, s.target_tenant_id, s.target_tenant_name) = (Some(source), vec![tenant], new_tenant_id, new_tenant_name);
            (s, common.dry_run, None)
        }
        TenantCommand::Merge { source, tenant, into, target, remove_source, common } => {
            let mut s = migration_spec(MigrationType::TenantMerge, &common)?;
            s.target = Some(target.unwrap_or_else(|| source.clone()));
            (s.source, s.source_tenant_ids, s.target_tenant_id, s.remove_source_tenant) = (Some(source), vec![tenant], Some(into), remove_source);
            (s, common.dry_run, None)
        }
        TenantCommand::Export { source, tenant, to, format, repo, keys, common } => {
            let mut s = migration_spec(MigrationType::DataExport, &common)?;
            let by_name = to.extension().is_some_and(|e| e == safehold_core::repository::ARCHIVE_EXT);
            s.export_format = match format.as_deref() {
                None if by_name => ExportFormat::Archive,
                None | Some("portable") | Some("zip") => ExportFormat::Portable,
                Some("archive") => ExportFormat::Archive,
                Some(other) => return Err(Error::validation(format!("unknown export format \"{other}\": use portable or archive"))),
            };
            (s.source, s.source_tenant_ids, s.target_file, s.archive_repository) = (Some(source), tenant, Some(to.display().to_string()), repo);
            (s, common.dry_run, Some(safehold_core::custody::keys_for(ctx, &key_sources(&keys)).await?))
        }
        TenantCommand::Import { from, target, tenant, into, new_tenant_name, keys, common } => {
            let mut s = migration_spec(MigrationType::DataImport, &common)?;
            s.source_files = from.iter().map(|f| f.display().to_string()).collect();
            (s.target, s.source_tenant_ids, s.target_tenant_id, s.target_tenant_name) = (Some(target), tenant.into_iter().collect(), into, new_tenant_name);
            (s, common.dry_run, Some(safehold_core::custody::keys_for(ctx, &key_sources(&keys)).await?))
        }
    };
    if dry_run {
        let report = records::validate_with(ctx, &spec, keys, &progress_sink(json)).await;
        end_progress(json);
        let report = report?;
        if json {
            print_json(&report);
        } else {
            print_migration(&report);
            if report.is_clean() {
                println!("validation passed: nothing was changed; run without --dry-run to migrate");
            } else {
                println!("validation found problems (above): nothing was changed; fix them, choose conflict rules, or run with --skip-rejected");
            }
        }
        return Ok(());
    }
    let id = records::start(ctx, &spec).await?;
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            c2.cancel();
        }
    });
    let out = records::run(ctx, &id, &spec, keys, &cancel).await;
    ctrl_c.abort();
    let report = out?;
    if json {
        print_json(&serde_json::json!({ "migration_id": id, "report": report }));
    } else {
        print_migration(&report);
        let kind = spec.migration_type.map(|k| k.as_str()).unwrap_or_default();
        match &report.target_file {
            Some(f) => println!("{kind}: {} rows written to {f}", report.rows_written),
            None => println!(
                "{kind}: {} rows written into tenant {}{}",
                report.rows_written,
                report.target_tenant_id.as_deref().unwrap_or("?"),
                if report.rows_removed > 0 { format!("; {} rows of the merged tenant removed", report.rows_removed) } else { String::new() }
            ),
        }
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    // Diagnostics on stderr only when asked for (`SAFEHOLD_LOG=debug`); they never carry secrets.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("SAFEHOLD_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    }
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                print_json(&serde_json::json!({ "error": e }));
            } else {
                eprintln!("error: {}", e.message);
            }
            ExitCode::FAILURE
        }
    }
}
