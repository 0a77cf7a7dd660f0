//! The command line's arguments (clap).

use crate::prelude::*;

#[derive(Parser)]
#[command(name = "safehold", version, about = "Back up, verify, restore and migrate a multi-tenant platform's data")]
pub(crate) struct Cli {
    /// Where Safehold keeps its catalog and files (default: the OS data directory).
    #[arg(long, global = true, env = context::HOME_ENV)]
    pub(crate) home: Option<std::path::PathBuf>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Object storage: a custom endpoint for s3:// (or az://) locations (MinIO, Ceph, Garage,
    /// R2, an emulator); credentials come from the provider's environment variables.
    #[arg(long, global = true)]
    pub(crate) endpoint: Option<String>,
    /// Object storage: the region.
    #[arg(long, global = true)]
    pub(crate) region: Option<String>,
    /// The operator acting on the catalog, once operators exist (the password is prompted, or
    /// read from SAFEHOLD_OPERATOR_PASSWORD_FILE).
    #[arg(long, global = true, env = "SAFEHOLD_OPERATOR")]
    pub(crate) operator: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// The platform databases Safehold backs up.
    #[command(subcommand)]
    Connection(ConnectionCommand),
    /// Backup configurations.
    #[command(subcommand, name = "config")]
    Config(ConfigCommand),
    /// Create the embedded demo platform (a SQLite database) and register it, if it is not there.
    Demo {
        /// Also copy the demo into this empty PostgreSQL database and register it as the
        /// connection "Demo platform (PostgreSQL)" (every action can then be tried on PostgreSQL too).
        #[arg(long)]
        postgres: Option<String>,
    },
    /// Back up a database into a repository (a directory), as one encrypted, compressed archive.
    Backup(BackupArgs),
    /// Continuous protection of a PostgreSQL database (being built): every committed change sealed
    /// into the repository, so the database can be put back to any second.
    #[command(subcommand)]
    Protect(ProtectCommand),
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
    History(HistoryArgs),
    /// The audit log: who did what, when, with what outcome.
    Audit(AuditArgs),
}

#[derive(Subcommand)]
pub(crate) enum OperatorCommand {
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
pub(crate) enum TenantCommand {
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
pub(crate) struct MigrationArgs {
    /// Transformation rules: a JSON file holding a list of rules.
    #[arg(long)]
    pub(crate) rules: Option<PathBuf>,
    /// The mapping: a JSON file holding a list of table mappings (default: proposed from names),
    /// or an object with that list as "tables" and "references" (as --reference takes them).
    #[arg(long)]
    pub(crate) mapping: Option<PathBuf>,
    /// Unique conflicts, per table: TABLE=stop|keep-target|take-source|keep-both (comma-separated;
    /// `*` for every table).
    #[arg(long, value_delimiter = ',')]
    pub(crate) on_conflict: Vec<String>,
    /// The suffix keep-both adds.
    #[arg(long)]
    pub(crate) suffix: Option<String>,
    /// A reference no foreign key declares, CHILD.COLUMN=PARENT.COLUMN (with ;TYPE_COLUMN=VALUE
    /// for a polymorphic one): followed like a foreign key. Repeat for each. Validation lists the
    /// columns that look like such references.
    #[arg(long)]
    pub(crate) reference: Vec<String>,
    /// Columns whose values must differ in the copy (API keys, tokens, slugs under a unique
    /// index): TABLE.COLUMN, each given a fresh value of the same form (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub(crate) regenerate: Vec<String>,
    /// Write what can be written and skip the rows validation sets aside.
    #[arg(long)]
    pub(crate) skip_rejected: bool,
    /// Validate only: run everything in a transaction that is rolled back and show the report.
    #[arg(long)]
    pub(crate) dry_run: bool,
    #[arg(long)]
    pub(crate) name: Option<String>,
    #[arg(long)]
    pub(crate) tenant_column: Option<String>,
    #[arg(long)]
    pub(crate) tenants_table: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum ScheduleCommand {
    /// Run every active configuration on its schedule, without a window; one line per job.
    /// Jobs left running by a stopped process are marked interrupted first. Ctrl-C stops it.
    Run {
        /// Backups running at the same time.
        #[arg(long, default_value_t = 1)]
        max_jobs: usize,
        /// Continuous protection seals what committed this often (seconds).
        #[arg(long, default_value_t = 2)]
        protect_every: u64,
    },
    /// Configurations with their schedule and next run.
    List,
}

#[derive(Subcommand)]
pub(crate) enum StorageCommand {
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
pub(crate) enum CatalogCommand {
    /// Disaster recovery: record a repository's backups in this catalog from their plaintext
    /// headers (no key needed); restore them afterwards with --recovery-key-file.
    Rebuild {
        #[arg(long)]
        from: PathBuf,
    },
}

#[derive(clap::Args, Clone, Default)]
pub(crate) struct KeyArgs {
    /// A file holding the repository password (or SAFEHOLD_PASSWORD_FILE / SAFEHOLD_PASSWORD).
    #[arg(long)]
    pub(crate) password_file: Option<PathBuf>,
    /// A file holding the recovery key (the printed kit works as it is).
    #[arg(long)]
    pub(crate) recovery_key_file: Option<PathBuf>,
    /// Read archives whose writer no key holder approved, or that carry no signature (written
    /// by an older Safehold): only after checking where they came from.
    #[arg(long)]
    pub(crate) trust_unsigned: bool,
}

#[derive(clap::Args)]
pub(crate) struct BackupArgs {
    /// postgres://user@host:port/db or sqlite:///path/to.db
    #[arg(long)]
    pub(crate) source: String,
    /// The repository directory (created on first use).
    #[arg(long)]
    pub(crate) to: PathBuf,
    #[arg(long = "type", value_enum, default_value = "full")]
    pub(crate) backup_type: BackupType,
    /// zstd[:LEVEL] or none
    #[arg(long, default_value = "zstd:2")]
    pub(crate) compression: String,
    /// Store the archive unencrypted (it is still checksummed).
    #[arg(long)]
    pub(crate) no_encrypt: bool,
    /// How many connections read the database at once, on one snapshot: each reads whole tables,
    /// and the archive's sections are compressed and encrypted as they arrive (default: one per
    /// core).
    #[arg(long)]
    pub(crate) jobs: Option<usize>,
    #[arg(long, default_value = "tenant_id")]
    pub(crate) tenant_column: String,
    #[arg(long, default_value = "tenants")]
    pub(crate) tenants_table: String,
    /// Back up the whole server --source names (postgres://user@host:5432/): every database that
    /// accepts connections (templates left out), each in its own archive, and the server's roles,
    /// memberships, settings and databases' properties, as one server backup.
    #[arg(long)]
    pub(crate) all_databases: bool,
    /// With --all-databases: leave out the databases this names (`*` matches any run of
    /// characters). Repeat for each.
    #[arg(long = "exclude-database", requires = "all_databases")]
    pub(crate) exclude_databases: Vec<String>,
    /// With --all-databases: also the roles' password hashes, sealed like the data (needs a
    /// superuser).
    #[arg(long, requires = "all_databases")]
    pub(crate) with_passwords: bool,
    #[command(flatten)]
    pub(crate) keys: KeyArgs,
}

#[derive(clap::Subcommand, Clone)]
pub(crate) enum ProtectCommand {
    /// Make the replication slot, then the full backup the changes continue from.
    Start(ProtectArgs),
    /// Seal what committed since into a change segment, then advance the slot; with --every,
    /// again every SECONDS until Ctrl-C.
    Run {
        #[command(flatten)]
        p: ProtectArgs,
        #[arg(long, value_name = "SECONDS")]
        every: Option<u64>,
        /// Warn when the slot holds more WAL than this back on the server (bytes; default 1 GiB).
        #[arg(long, default_value_t = 1 << 30)]
        warn_held_bytes: u64,
        /// Drop the slot (and stop protection) when it holds more than this back, rather than
        /// let the server's disk fill (bytes; default: no limit but the server's
        /// max_slot_wal_keep_size).
        #[arg(long)]
        max_held_bytes: Option<u64>,
    },
    /// The slot's lag and the WAL it holds back on the server, and the segments kept.
    Status(ProtectArgs),
    /// Drop the slot and the publication (the server keeps no WAL for them); the segments stay.
    Stop(ProtectArgs),
    /// Put the database back to a second, into an empty database.
    Restore {
        #[command(flatten)]
        p: ProtectArgs,
        /// The second, e.g. 2026-12-04T14:31:59Z
        #[arg(long)]
        at: String,
        /// The empty database to restore into (with --tenant: the database the tenant is put
        /// back into, in place): postgres://user@host:port/db
        #[arg(long)]
        to: String,
        /// Put only this tenant back to the second, in place; the other tenants keep their rows.
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value = "tenant_id")]
        tenant_column: String,
        #[arg(long, default_value = "tenants")]
        tenants_table: String,
        /// Put only these tables back to the second, in place (schema.table, comma-separated).
        #[arg(long, value_delimiter = ',', conflicts_with = "tenant")]
        tables: Vec<String>,
        /// With --tenant: restore it as a copy beside the others (new ids, a new tenant) rather
        /// than in place.
        #[arg(long, requires = "tenant")]
        as_copy: bool,
        /// With --as-copy: the new tenant's id (default: the tenants table's default makes one).
        #[arg(long, requires = "as_copy")]
        new_tenant_id: Option<String>,
        /// Show the plan — the base backup, the segments, the transactions and changes replayed
        /// (and with --tenant or --tables what would change) — and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(clap::Args, Clone)]
pub(crate) struct ProtectArgs {
    /// The protected database: postgres://user@host:port/db (not needed to restore).
    #[arg(long)]
    pub(crate) source: Option<String>,
    /// The repository directory.
    #[arg(long)]
    pub(crate) repo: Option<PathBuf>,
    /// The protection's name, also its replication slot's: lower-case letters, digits and _.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// A backup configuration with continuous protection on (status and run only; without
    /// --repo, `status` shows every configuration's).
    #[arg(long, conflicts_with_all = ["source", "repo", "name"])]
    pub(crate) config: Option<String>,
    #[command(flatten)]
    pub(crate) keys: KeyArgs,
}

#[derive(clap::Args, Clone)]
pub(crate) struct RestoreArgs {
    #[command(flatten)]
    pub(crate) request: restore::RestoreRequest,
    /// Tenant only: restore as a copy with a new id made by the tenants table's default.
    #[arg(long, conflicts_with = "preserve_ids")]
    pub(crate) as_copy: bool,
    /// Tenant only: replace the tenant's rows in place, keeping their ids (the default).
    #[arg(long)]
    pub(crate) preserve_ids: bool,
    /// Tenant only, as a copy: unique conflicts, per table: TABLE=stop|keep-target|take-source|keep-both.
    #[arg(long, value_delimiter = ',')]
    pub(crate) on_conflict: Vec<String>,
    /// Show the plan (a rolled-back trial run for selective and tenant restores) and stop.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Run a destructive plan without asking.
    #[arg(long)]
    pub(crate) yes: bool,
    /// Restore a server backup (`backup --all-databases`; --backup picks one, default the newest)
    /// onto the server --target names: its roles, then each database, created with its properties.
    #[arg(long)]
    pub(crate) server: bool,
    /// With --server: only this database of the set. Repeat for each.
    #[arg(long = "database", requires = "server")]
    pub(crate) databases: Vec<String>,
    /// With --server: which roles to create (those that exist are left as they are).
    #[arg(long, value_enum, default_value = "needed", requires = "server")]
    pub(crate) roles: safehold_core::servers::RolesMode,
    #[command(flatten)]
    pub(crate) keys: KeyArgs,
}

#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    /// A repository directory or an archive file.
    pub(crate) target: PathBuf,
    /// Decrypt and check every section (needs the key).
    #[arg(long)]
    pub(crate) deep: bool,
    /// Restore the backup (a repository's newest) into a scratch database and compare every
    /// table's rows with the archive (and with --source).
    #[arg(long)]
    pub(crate) restore_test: bool,
    /// The PostgreSQL server for the scratch database (created and dropped), e.g.
    /// postgres://postgres@127.0.0.1:5432/postgres. Default: SAFEHOLD_SCRATCH_URL.
    #[arg(long, env = "SAFEHOLD_SCRATCH_URL")]
    pub(crate) scratch: Option<String>,
    /// With --restore-test: the live source to compare unchanged tables with.
    #[arg(long)]
    pub(crate) source: Option<String>,
    /// With --restore-test: put the database back to this second (continuous protection's base
    /// and segments) and check every table's rows against the base and the changes replayed.
    #[arg(long, requires = "restore_test")]
    pub(crate) at: Option<String>,
    #[command(flatten)]
    pub(crate) keys: KeyArgs,
}

#[derive(Subcommand)]
pub(crate) enum KeyCommand {
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
pub(crate) enum ConnectionCommand {
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
pub(crate) enum ConfigCommand {
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
    /// The safety backups' own retention (taken before restores, of no configuration; 14 days
    /// unless set): show what it would delete now; --days sets it; --apply deletes.
    SafetyRetention {
        /// Keep safety backups this many days from now on.
        #[arg(long)]
        days: Option<i64>,
        /// Delete the expired safety backups now.
        #[arg(long)]
        apply: bool,
        /// With --apply: delete without asking.
        #[arg(long, requires = "apply")]
        yes: bool,
    },
}

/// A configuration's settings on the command line; each one given is set, the others keep
/// their value (or the default, for a new configuration).
#[derive(clap::Args)]
pub(crate) struct ConfigSettings {
    #[arg(long = "type", value_enum)]
    pub(crate) backup_type: Option<BackupType>,
    #[arg(long)]
    pub(crate) retention_days: Option<i64>,
    /// The storage's name (default for a new configuration: the default storage).
    #[arg(long)]
    pub(crate) storage: Option<String>,
    /// A second storage every backup is copied to and verified on; `none` removes it.
    #[arg(long)]
    pub(crate) second_storage: Option<String>,
    /// The time zone the schedule runs in (IANA name); `local` for the workstation's.
    #[arg(long)]
    pub(crate) time_zone: Option<String>,
    /// on or off.
    #[arg(long)]
    pub(crate) compression: Option<OnOff>,
    /// on or off.
    #[arg(long)]
    pub(crate) encryption: Option<OnOff>,
    /// on or off: the tenant tables.
    #[arg(long)]
    pub(crate) tenant_data: Option<OnOff>,
    /// on or off: the other tables.
    #[arg(long)]
    pub(crate) system_data: Option<OnOff>,
    /// on or off: log tables (`*_log`, `*_logs`, `audit_*`).
    #[arg(long)]
    pub(crate) logs: Option<OnOff>,
    /// Runs missed while Safehold was not running: one catch-up run, or none.
    #[arg(long, value_enum)]
    pub(crate) missed_runs: Option<MissedArg>,
    /// on or off.
    #[arg(long)]
    pub(crate) active: Option<OnOff>,
    /// on or off: continuous protection — every committed change streamed into the storage
    /// between the scheduled backups (PostgreSQL with wal_level = logical, a local storage), run
    /// by the app and by `safehold schedule run`; off drops the replication slot.
    #[arg(long)]
    pub(crate) continuous: Option<OnOff>,
    /// on or off: back up every database of the connection's server (found when each run
    /// starts; templates left out) and its roles, as one server backup (PostgreSQL, full).
    #[arg(long)]
    pub(crate) whole_server: Option<OnOff>,
    /// With --whole-server on: databases left out, comma-separated name patterns (`*` matches any
    /// run of characters); `none` clears them.
    #[arg(long)]
    pub(crate) exclude_databases: Option<String>,
    /// on or off: with --whole-server on, keep the roles' password hashes too (sealed; needs
    /// encryption on and a superuser on the source).
    #[arg(long)]
    pub(crate) with_passwords: Option<OnOff>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum OnOff {
    On,
    Off,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum MissedArg {
    RunOnce,
    Skip,
}

impl ConfigSettings {
    /// Applies the settings given to `input`.
    pub(crate) async fn apply(&self, ctx: &Ctx, input: &mut configurations::ConfigurationInput) -> Result<(), Error> {
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
            (self.continuous, &mut input.continuous_protection),
            (self.whole_server, &mut input.whole_server),
            (self.with_passwords, &mut input.server_passwords),
        ] {
            if let Some(v) = v {
                *field = on(v);
            }
        }
        if let Some(x) = &self.exclude_databases {
            input.exclude_databases = (x != "none").then(|| x.clone());
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

#[derive(clap::Args)]
pub(crate) struct HistoryArgs {
    /// The restores recorded instead of the backups.
    #[arg(long, conflicts_with_all = ["check", "status"])]
    pub(crate) restores: bool,
    /// Only backups with this status: pending, running, completed, failed or cancelled.
    #[arg(long)]
    pub(crate) status: Option<String>,
    /// How many to show, newest first.
    #[arg(long, default_value_t = 20)]
    pub(crate) limit: i64,
    /// Skip this many of the newest first (the next page: --offset 20 after --limit 20).
    #[arg(long, default_value_t = 0)]
    pub(crate) offset: i64,
    /// Check this backup (its id): the archive's SHA-256 against its trailer and the catalog.
    #[arg(long)]
    pub(crate) check: Option<String>,
    /// With --check: read the backup and every backup it builds on with the key.
    #[arg(long, requires = "check")]
    pub(crate) deep: bool,
}

#[derive(clap::Args)]
pub(crate) struct AuditArgs {
    /// Only this operator's entries (name or id).
    #[arg(long = "by")]
    pub(crate) by: Option<String>,
    /// Only this action, or actions starting with it (e.g. `backup.`).
    #[arg(long)]
    pub(crate) action: Option<String>,
    /// success, failure or denied.
    #[arg(long)]
    pub(crate) outcome: Option<String>,
    #[arg(long)]
    pub(crate) since: Option<String>,
    #[arg(long)]
    pub(crate) until: Option<String>,
    #[arg(long)]
    pub(crate) limit: Option<i64>,
    /// Write the entries to this CSV file instead of printing them.
    #[arg(long)]
    pub(crate) csv: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn restore(flags: &[&str]) -> Result<RestoreArgs, clap::Error> {
        let cli = Cli::try_parse_from([&["safehold", "restore", "--from", "/r", "--target", "postgres://h/db"][..], flags].concat())?;
        match cli.command {
            Command::Restore(a) => Ok(a),
            _ => unreachable!("a restore parses as a restore"),
        }
    }

    /// `safehold restore`'s flags land in the engine's `RestoreRequest` itself (its clap
    /// attributes), with the engine's defaults where none is given.
    #[test]
    fn restore_flags_fill_the_engines_request() {
        let a = restore(&[]).expect("the minimal restore");
        let mut r = a.request.clone();
        r.as_copy(a.as_copy);
        assert_eq!((r.from.to_str(), r.target.as_str(), r.restore_type), (Some("/r"), "postgres://h/db", restore::RestoreType::Full));
        assert!(r.safety_backup && r.preserve_ids && !r.clean && !r.create, "the safe defaults: {r:?}");
        assert_eq!((r.tenant_column.as_str(), r.tenants_table.as_str(), r.jobs), ("tenant_id", "tenants", restore::default_jobs()));

        let a = restore(&["--type", "tenant-only", "--tenant", "acme", "--as-copy", "--no-safety-backup", "--tables", "a,b", "--reference", "x.y=z.id", "--jobs", "3", "--backup", "b1"]).expect("a tenant copy");
        let mut r = a.request.clone();
        r.as_copy(a.as_copy);
        assert_eq!(r.restore_type, restore::RestoreType::TenantOnly);
        assert!(!r.preserve_ids && !r.safety_backup, "{r:?}");
        assert_eq!((r.tenant_id.as_deref(), r.tables.clone(), r.references.clone(), r.jobs, r.backup_id.as_deref()), (Some("acme"), vec!["a".to_string(), "b".into()], vec!["x.y=z.id".to_string()], 3, Some("b1")));
        let mut r = restore(&["--new-tenant-id", "acme2"]).expect("a new tenant id").request;
        r.as_copy(false);
        assert!(!r.preserve_ids, "a new tenant id makes a copy");

        for bad in [&["--jobs", "0"][..], &["--as-copy", "--preserve-ids"], &["--backup", "b1", "--at", "2026-01-01T00:00:00Z"], &["--type", "partial"]] {
            assert!(restore(bad).is_err(), "{bad:?} is refused");
        }
    }
}
