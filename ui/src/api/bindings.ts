// Generated from the Rust types by safehold-core (src/bindings.rs). Do not edit by hand:
// run `make bindings` after changing a type.

export type JsonValue = number | string | boolean | Array<JsonValue> | { [key in string]?: JsonValue } | null;

export type ErrorCode = "validation" | "not_found" | "conflict" | "unreachable" | "auth_failed" | "keychain" | "database" | "io" | "permission_denied" | "cancelled" | "internal";

export type EngineError = { code: ErrorCode, message: string, 
/**
 * For validation errors: which input field is wrong and why, for inline display.
 */
fields: Array<FieldError>, };

export type FieldError = { field: string, message: string, };

export type BackupType = "full" | "incremental" | "differential";

export type MissedRuns = "run_once" | "skip";

export type BackupConfiguration = { id: string, configuration_name: string, backup_type: BackupType, schedule_cron: string, schedule_description: string, retention_days: number, compression_enabled: boolean, encryption_enabled: boolean, storage_location: string, 
/**
 * A second storage every completed backup is copied to (3-2-1).
 */
secondary_storage: string | null, missed_runs: MissedRuns, 
/**
 * The time zone the schedule runs in (IANA name); `None`: the workstation's.
 */
time_zone: string | null, includes_tenant_data: boolean, includes_system_data: boolean, includes_logs: boolean, is_active: boolean, 
/**
 * Every committed change streamed into the storage between the scheduled backups, so the
 * database can be put back to any second (PostgreSQL; the segments go to the configuration's storage).
 */
continuous_protection: boolean, 
/**
 * Every database of the connection's server (those there when it runs, templates and
 * `exclude_databases` left out), with the roles and the databases' properties: one server
 * backup set per run.
 */
whole_server: boolean, 
/**
 * Database name patterns a server backup leaves out, comma-separated (`*` matches any run
 * of characters).
 */
exclude_databases: string | null, 
/**
 * With `whole_server`: the roles' password hashes too (sealed like the data).
 */
server_passwords: boolean, connection_id: string | null, created_by: string, created_at: string, updated_at: string, };

export type ConfigurationStatus = { configuration_id: string, next_run: string | null, last_status: JobStatus | null, last_started_at: string | null, last_error: string | null, };

export type ConfigurationInput = { configuration_name: string, backup_type: BackupType, schedule_cron: string, retention_days: number, compression_enabled: boolean, encryption_enabled: boolean, 
/**
 * The name of a registered storage (see the Storage tab).
 */
storage_location: string, 
/**
 * A second storage every completed backup is copied to and verified on (optional).
 */
secondary_storage: string | null, 
/**
 * Runs missed while Safehold was not running: one catch-up run, or none.
 */
missed_runs: MissedRuns, 
/**
 * The time zone the schedule runs in (IANA name, e.g. Europe/Berlin); empty: the workstation's.
 */
time_zone: string | null, includes_tenant_data: boolean, includes_system_data: boolean, includes_logs: boolean, is_active: boolean, 
/**
 * Continuous protection: every committed change streamed into the storage between the
 * scheduled backups (PostgreSQL with `wal_level = logical`; on any storage).
 */
continuous_protection: boolean, 
/**
 * Back up every database of the connection's server, and its roles (PostgreSQL; full).
 */
whole_server: boolean, 
/**
 * With `whole_server`: database name patterns to leave out, comma-separated (`*` matches
 * any run of characters), e.g. `scratch_*, old_reports`.
 */
exclude_databases: string | null, 
/**
 * With `whole_server`: keep the roles' password hashes, so that a restored server's users log
 * in as before (sealed like the data: encryption must be on; needs a superuser).
 */
server_passwords: boolean, 
/**
 * The connection (platform database) to back up.
 */
connection_id: string, };

export type CronPreview = { description: string, 
/**
 * The next run times (RFC 3339 with the workstation's offset).
 */
next_runs: Array<string>, 
/**
 * The time zone schedules are evaluated in: the workstation's (e.g. "Europe/Berlin, UTC+01:00").
 */
time_zone: string, };

export type ConnectionKind = "postgres" | "sqlite";

export type TlsMode = "disable" | "prefer" | "require" | "verify-ca" | "verify-full";

export type Connection = { id: string, name: string, kind: ConnectionKind, host: string | null, port: number | null, database_name: string | null, username: string | null, tls_mode: TlsMode | null, sqlite_path: string | null, 
/**
 * Whether a password for it is kept in the OS keychain.
 */
has_password: boolean, tenant_column: string, tenants_table: string, 
/**
 * References no foreign key declares (`CHILD.COLUMN=PARENT.COLUMN`), declared once: tenant
 * operations on this connection follow them like foreign keys.
 */
references: Array<string>, created_at: string, updated_at: string, };

export type ConnectionInput = { name: string, kind: ConnectionKind | null, host: string | null, port: number | null, database_name: string | null, username: string | null, tls_mode: TlsMode | null, sqlite_path: string | null, 
/**
 * `None` keeps the stored password (or none); `Some("")` removes it; otherwise replaces it.
 */
password: string | null, tenant_column: string | null, tenants_table: string | null, };

export type ConnectionReport = { kind: ConnectionKind, address: string, server_version: string, size_bytes: number, table_count: number, 
/**
 * Tables with the tenant column (default `tenant_id`).
 */
tenant_tables: Array<TenantTable>, };

export type TenantTable = { schema: string | null, name: string, 
/**
 * Exact for SQLite; PostgreSQL's statistics estimate otherwise (`None` when never analysed).
 */
rows: number | null, };

export type StorageType = "local" | "s3" | "azure" | "gcp";

export type BackupStorage = { id: string, storage_name: string, storage_type: StorageType, 
/**
 * Non-secret settings (e.g. `{"path": "/backups"}`); secrets are in the keychain.
 */
storage_config: JsonValue, is_default: boolean, is_active: boolean, total_capacity: number | null, used_space: number, created_at: string, last_health_check: string | null, 
/**
 * The last probe's outcome (`None` before the first check).
 */
last_health_ok: boolean | null, last_health_latency_ms: number | null, last_health_message: string | null, };

export type StorageChange = { 
/**
 * Make it the default storage (another becomes the default by making it so).
 */
make_default: boolean, 
/**
 * `false`: backups into it are refused until it is active again (its archives stay readable).
 */
is_active: boolean | null, 
/**
 * Cloud: the capacity to measure usage against, in bytes; 0 clears it.
 */
quota_bytes: number | null, 
/**
 * Cloud: new credentials, replacing those in the keychain (rotated keys).
 */
credentials: StorageCredentials | null, };

export type KeyCustody = { storage_id: string, 
/**
 * Whether the storage holds a repository yet (the first backup into it makes one).
 */
has_repository: boolean, 
/**
 * The repository's secret is in this workstation's OS keychain: whoever uses Safehold here
 * can read its backups (so it is until the first super admin exists).
 */
in_keychain: boolean, 
/**
 * The repository has a password slot. With no super admin and nothing in the keychain, it
 * is a password given on the command line (`--password-file`), kept by whoever set it.
 */
password: boolean, 
/**
 * The super admins whose own key opens the repository, by name.
 */
super_admins: Array<string>, 
/**
 * Active super admins who do not hold it yet: they get it at the next sign-in of a super
 * admin while the storage is reachable.
 */
pending: Array<string>, 
/**
 * Keys of people who are no longer super admins that the repository still holds (removed at
 * the next sweep).
 */
former: Array<string>, 
/**
 * The recovery kit was exported (the repository keeps no copy of it any more).
 */
recovery_exported: boolean, 
/**
 * Why the storage could not be read, when it could not.
 */
problem: string | null, };

export type WriterInfo = { 
/**
 * The writer's Ed25519 public key (hex).
 */
public_key: string, name: string, 
/**
 * On the repository's list of approved writers (a restore still checks the list against the
 * master key before it trusts it).
 */
approved: boolean, approved_at: string | null, 
/**
 * Backups in the repository that this writer signed.
 */
backups: number, };

export type JobStatus = "pending" | "running" | "completed" | "failed" | "cancelled";

export type BackupExecution = { id: string, configuration_id: string | null, configuration_name: string | null, backup_type: string, status: JobStatus, started_at: string, completed_at: string | null, file_path: string | null, file_size: number | null, compressed_size: number | null, tenant_count: number | null, table_count: number | null, record_count: number | null, checksum: string | null, error_message: string | null, metadata: JsonValue, 
/**
 * When retention deleted the archive (the row stays in the history).
 */
deleted_at: string | null, 
/**
 * Who started it (an operator's name; Safehold's own scheduler for scheduled runs).
 */
initiated_by: string | null, 
/**
 * The newest copy on the configuration's second storage, if any.
 */
second_copy: SecondCopy | null, };

export type SecondCopy = { storage_name: string, 
/**
 * completed | failed
 */
status: string, file_path: string | null, error_message: string | null, created_at: string, };

export type BackupCheck = { execution_id: string, deep: boolean, ok: boolean, 
/**
 * What was checked, or what is wrong (naming the archive and, inside it, the section).
 */
message: string, at: string, 
/**
 * Archives read: the backup's own, and for a deep check every backup it builds on.
 */
archives: number, 
/**
 * Rows counted (deep checks).
 */
rows: number, };

export type RestoreOperation = { id: string, backup_execution_id: string | null, restore_type: string, target_tenant_id: string | null, restore_point: string | null, status: JobStatus, progress_percentage: number, tables_to_restore: Array<string> | null, exclude_tables: Array<string> | null, preserve_ids: boolean, started_at: string, completed_at: string | null, 
/**
 * Who asked for it: the operator's name.
 */
initiated_by: string, error_message: string | null, restored_records: JsonValue, 
/**
 * Where it restored to (no password).
 */
target: string | null, source_archive: string | null, 
/**
 * The backup taken of what the restore replaced (a backup execution's id).
 */
safety_backup_id: string | null, new_tenant_id: string | null, current_table: string | null, };

export type MigrationJob = { id: string, migration_name: string, migration_type: string, source_tenant_id: string | null, target_tenant_id: string | null, source_file_path: string | null, target_file_path: string | null, status: JobStatus, progress_percentage: number, records_processed: number, records_total: number, started_at: string, completed_at: string | null, initiated_by: string, error_message: string | null, };

export type DemoReport = { 
/**
 * False when the demo was already there and nothing was created.
 */
created: boolean, database_path: string, tenants: number, rows: number, };

export type JobKind = "backup" | "restore" | "migration";

export type JobEvent = { kind: JobKind, id: string, 
/**
 * Set when the job ended: completed, failed or cancelled.
 */
status: JobStatus | null, table: string | null, tables_done: number, tables_total: number, rows: number, };

export type BackupOutcome = { id: string, archive: string, type: BackupType, parent: string | null, bytes: number, raw_bytes: number, tables: number, rows: number, tenant_count: number, sha256: string, seconds: number, snapshot_time: string, 
/**
 * Why the backup is not of the type asked for (e.g. the first incremental is a full).
 */
note: string | null, 
/**
 * What the administrator should know about the source, e.g. a session left idle in a
 * transaction that makes incrementals built on this backup carry everything written since.
 */
warnings: Array<string>, 
/**
 * The writer that signed the archive: its name and public key.
 */
writer: string, writer_key: string, };

export type RestoreType = "full" | "selective" | "tenant_only";

export type PlanBackup = { id: string, backup_type: string, snapshot_time: string, source_name: string, file: string, };

export type PointInTime = { requested: string, 
/**
 * The snapshot time of the backup restored: the exact point the target will reach.
 */
reached: string, 
/**
 * How far before the requested time that is.
 */
gap_seconds: number, };

export type RestorePlan = { restore_type: RestoreType, 
/**
 * The backups read, the full first.
 */
chain: Array<PlanBackup>, point_in_time: PointInTime | null, target: string, 
/**
 * The database (or file) name to type to confirm a destructive restore.
 */
target_database: string, create: boolean, clean: boolean, tenant_id: string | null, preserve_ids: boolean, 
/**
 * The copy's tenant id (known after a dry run, or when given).
 */
new_tenant_id: string | null, 
/**
 * Per table: rows in the backup and — for a dry-run plan — inserted, updated, deleted.
 */
tables: Array<TableChange>, rows: number, 
/**
 * Tables and views of the target a `clean` restore drops.
 */
replaced_objects: number, destructive: boolean, safety_backup: boolean, warnings: Array<string>, 
/**
 * What the target's PostgreSQL cannot hold, each named with the reason and what
 * `--skip-unsupported` does with it (a full restore refuses while this is not empty, unless
 * asked to leave them out and each can be).
 */
unsupported: Array<string>, 
/**
 * The counts come from a rolled-back dry run against the target (not only from the index).
 */
exact: boolean, estimated_bytes: number, estimated_seconds: number, };

export type RestoreOutcome = { archive_id: string, target: string, restore_type: RestoreType, tables: number, rows: number, 
/**
 * How many backups of the chain were read (1 for a full).
 */
backups: number, seconds: number, 
/**
 * Per table, what changed (selective and tenant restores).
 */
changes: Array<TableChange>, new_tenant_id: string | null, safety_backup: BackupOutcome | null, point_in_time: PointInTime | null, };

export type AtPlan = { at: string, base_id: string, 
/**
 * The base's snapshot time (as its header records it).
 */
base_taken: string, segments: number, transactions: number, changes: number, 
/**
 * The last transaction replayed, and when it committed.
 */
last_commit: string | null, };

export type TimelineBackup = { execution_id: string, started_at: string, backup_type: string, 
/**
 * The base of a span of continuous protection.
 */
is_base: boolean, };

export type TimelineSpan = { from: string, until: string, base_id: string, 
/**
 * Why it ended (a schema change, protection stopped); empty for the current one.
 */
ended_by: string, };

export type Timeline = { configuration_id: string, configuration_name: string, continuous_protection: boolean, 
/**
 * starting | streaming | failed | dropped; `None`: not started.
 */
state: string | null, backups: Array<TimelineBackup>, spans: Array<TimelineSpan>, 
/**
 * The latest second that can be put back.
 */
recovery_point: string | null, segments: number, segment_bytes: number, last_warning: string | null, last_error: string | null, };

export type SecondRequest = { configuration_id: string, 
/**
 * RFC 3339, e.g. 2026-12-04T14:31:59Z.
 */
at: string, 
/**
 * Put this tenant back in place (the others keep what they did since).
 */
tenant_id: string | null, 
/**
 * Or: the whole database as it was, into a new database of this name.
 */
into_database: string | null, 
/**
 * The plan only: nothing is written.
 */
dry_run: boolean, };

export type SecondOutcome = { plan: AtPlan, 
/**
 * A tenant's restore: what changed (or would change) per table.
 */
tables: Array<TableChange>, committed: boolean, 
/**
 * The database made (whole restores).
 */
database: string | null, 
/**
 * The restore operation that records it (the Restore tab's list; none for a plan).
 */
operation_id: string | null, };

export type RestoreForm = { 
/**
 * The recorded backup to restore (a completed backup execution).
 */
backup_execution_id: string, 
/**
 * The connection to restore into.
 */
connection_id: string, 
/**
 * Instead of a connection: a new SQLite file (an absolute path, chosen in a save dialog)
 * that a SQLite backup is restored into whole.
 */
target_file?: string, restore_type: RestoreType, tables: Array<string>, exclude_tables: Array<string>, tenant_id: string | null, 
/**
 * `false` restores the tenant as a copy under a new tenant id.
 */
preserve_ids: boolean, new_tenant_id: string | null, new_tenant_name: string | null, 
/**
 * A tenant restored as a copy: what to do with a row equal to one the target has on a
 * unique value (a slug, a name), for every table; none given: stop and name them.
 */
on_conflict?: Resolution, 
/**
 * RFC 3339: restore, from the same repository and source, the newest backup at or before it.
 */
restore_point: string | null, 
/**
 * Take a safety backup before a destructive restore.
 */
safety_backup: boolean, 
/**
 * Replace the target's objects (full restore into a database that is not empty).
 */
clean: boolean, 
/**
 * Full restore into PostgreSQL: leave out what the target cannot hold, as the plan names
 * it (otherwise such a plan is refused).
 */
skip_unsupported?: boolean, 
/**
 * Full restore into PostgreSQL: objects owned and granted as in the source.
 */
owners_and_privileges?: boolean, };

export type TableChange = { table: string, 
/**
 * Rows the backup holds for the restore (the tenant's rows, or the whole table).
 */
rows_in_backup: number, inserted: number, updated: number, deleted: number, };

export type RestoreTestTable = { table: string, expected_rows: number, restored_rows: number, 
/**
 * "match", "mismatch", or "n/a" (the table's newest copy is a delta: counts only).
 */
archive_checksum: string, 
/**
 * Against the live source: "match", "changed since the backup", or "n/a".
 */
source: string, ok: boolean, };

export type RestoreTestReport = { archive_id: string, backups: number, scratch_database: string, tables: Array<RestoreTestTable>, ok: boolean, seconds: number, };

export type RetentionAction = "keep" | "delete";

export type RetentionItem = { execution_id: string, archive_id: string | null, backup_type: string, started_at: string, file_path: string | null, bytes: number, action: RetentionAction, reason: string, };

export type RetentionPlan = { configuration_id: string, configuration_name: string, retention_days: number, 
/**
 * Backups taken before this are expired.
 */
cutoff: string, 
/**
 * Newest first.
 */
items: Array<RetentionItem>, delete_count: number, bytes_freed: number, };

export type RebuildReport = { repository: string, repository_id: string, 
/**
 * Archives found in the repository.
 */
archives: number, 
/**
 * Backups recorded in the catalog by this rebuild.
 */
added: number, 
/**
 * Backups the catalog already knew.
 */
already_known: number, 
/**
 * Files that are not readable archives (damaged or truncated), with why.
 */
unreadable: Array<string>, 
/**
 * The storage the repository is registered as.
 */
storage_name: string, storage_added: boolean, };

export type StorageUsage = { storage_name: string, 
/**
 * The sum of the archives' sizes, from a listing of the storage.
 */
used_space: number, archives: number, 
/**
 * The filesystem's size (local storage).
 */
total_capacity: number | null, available: number | null, at: string, };

export type UsageSample = { at: string, used_space: number, total_capacity: number | null, archives: number, };

export type HealthCheck = { storage_name: string, ok: boolean, latency_ms: number, message: string, at: string, };

export type KeychainWait = { 
/**
 * What the call is for ("read a secret").
 */
what: string, 
/**
 * When it started (RFC 3339).
 */
since: string, 
/**
 * How long it has waited so far, and how long it may wait in all.
 */
waited_seconds: number, deadline_seconds: number, };

export type PostgresOffer = { 
/**
 * The server, without credentials (`localhost:5432`).
 */
server: string, 
/**
 * The database the copy would go into.
 */
database: string, };

export type PostgresDemo = { 
/**
 * The database, without credentials.
 */
database: string, rows: number, 
/**
 * The connection and the backup configuration registered for it.
 */
connection: string, configuration: string, };

export type StorageCredentials = { 
/**
 * S3: the access key id; Azure: the storage account's name.
 */
access_key_id: string | null, 
/**
 * S3: the secret access key; Azure: the account key.
 */
secret_access_key: string | null, 
/**
 * Google Cloud Storage: the service account key (JSON).
 */
service_account_key: string | null, };

export type RemoteStorageInput = { name: string, 
/**
 * `s3://bucket/prefix`, `az://container/prefix` or `gs://bucket/prefix`.
 */
url: string, 
/**
 * A custom endpoint (MinIO, Ceph, Garage, R2, an emulator).
 */
endpoint: string | null, region: string | null, 
/**
 * Capacity to measure usage against (cloud storage has no filesystem size).
 */
quota_bytes: number | null, credentials: StorageCredentials | null, is_default: boolean, };

export type BackupCopy = { id: string, backup_execution_id: string, storage_name: string, file_path: string | null, checksum: string | null, 
/**
 * completed | failed
 */
status: string, error_message: string | null, created_at: string, };

export type MigrationType = "tenant_copy" | "tenant_merge" | "data_export" | "data_import";

export type Resolution = "stop" | "keep_target" | "take_source" | "keep_both";

export type ExportFormat = "portable" | "archive";

export type Role = "super_admin" | "platform_operator" | "read_only_admin";

export type Permission = "backup:manage_all" | "backup:trigger_manual" | "backup:restore_data" | "backup:manage_storage" | "backup:view_status" | "backup:view_history";

export type Acting = { id: string, name: string, role: Role, permissions: Array<Permission>, };

export type Operator = { id: string, name: string, role: string, is_active: boolean, created_at: string, last_sign_in: string | null, locked_until: string | null, failed_attempts: number, };

export type SessionInfo = { needs_setup: boolean, operator: Acting | null, 
/**
 * Why the last session ended, when it ended by itself.
 */
ended: string | null, };

export type AuditEntry = { id: number, at: string, operator_id: string | null, 
/**
 * The operator's name (the id when the operator was removed).
 */
operator: string | null, action: string, target: string | null, 
/**
 * success, failure or denied.
 */
outcome: string, detail: string | null, };

export type AuditFilter = { 
/**
 * The operator's name or id.
 */
operator: string | null, 
/**
 * An action or its prefix (`backup.` for every backup action).
 */
action: string | null, outcome: string | null, 
/**
 * RFC 3339 bounds on `at`.
 */
since: string | null, until: string | null, 
/**
 * Newest first; default 500.
 */
limit: number | null, };

export type TableMapping = { source: string, target: string, 
/**
 * Source column → target column (a column not listed goes to the target column of the
 * same name, when there is one).
 */
columns: { [key in string]: string }, 
/**
 * Source columns not written.
 */
drop: Array<string>, 
/**
 * Values for target columns the source does not fill.
 */
defaults: { [key in string]: string }, };

export type MigrationSpec = { migration_name: string, migration_type: MigrationType | null, 
/**
 * The database read (copy, merge, export): a connection's id or name, or a PostgreSQL URL.
 */
source: string | null, 
/**
 * The files read (import): a portable export (.zip), a Safehold archive or repository, or
 * CSV / JSON Lines files named after their tables.
 */
source_files: Array<string>, 
/**
 * The tenants read (export: one or more; copy and merge: one).
 */
source_tenant_ids: Array<string>, 
/**
 * The database written (copy, merge, import).
 */
target: string | null, 
/**
 * The file written (export).
 */
target_file: string | null, 
/**
 * The tenant written: new for a copy (made from the tenants table's key when empty), the
 * existing one for a merge, either for an import.
 */
target_tenant_id: string | null, 
/**
 * The new tenant's name (copy, import into a new tenant).
 */
target_tenant_name: string | null, export_format: ExportFormat, 
/**
 * An archive export: the repository whose key encrypts it (a storage location's name or
 * id, or a repository directory); default: the default storage location.
 */
archive_repository: string | null, 
/**
 * Empty: proposed from the names.
 */
mapping: Array<TableMapping>, rules: Array<Rule>, 
/**
 * Per target table (`schema.table` or bare name); tables not listed: stop.
 */
conflicts: { [key in string]: Resolution }, 
/**
 * The suffix `keep_both` adds (default `-copy`, `-merged` for a merge).
 */
suffix: string | null, 
/**
 * Merge: remove the source tenant afterwards (same database only).
 */
remove_source_tenant: boolean, 
/**
 * Write what can be written and skip the rows validation sets aside.
 */
skip_rejected: boolean, 
/**
 * Override the connection's tenant column / tenants table.
 */
tenant_column: string | null, tenants_table: string | null, 
/**
 * References that no foreign key declares, as `CHILD.COLUMN=PARENT.COLUMN` (with
 * `;TYPE_COLUMN=VALUE` for a polymorphic one): followed like foreign keys (new keys of the
 * parent rows reach the rows that refer to them; the rows are the tenant's through them).
 */
references: Array<string>, };

export type Problem = { 
/**
 * `unique_conflict`, `duplicate_rows` (rows to write equal to each other under a unique
 * index), `not_null`, `missing_parent`, `type_error`.
 */
kind: string, message: string, count: number, samples: Array<string>, 
/**
 * The columns it is about (a unique constraint's, a foreign key's, the column).
 */
columns: Array<string>, };

export type TableReport = { 
/**
 * The target table (for an export, the source table).
 */
table: string, source_table: string | null, rows_read: number, rows_written: number, 
/**
 * Target rows given the source's values (take source).
 */
rows_updated: number, 
/**
 * Source rows folded into existing target rows (keep target, the merged tenant's row).
 */
rows_merged: number, 
/**
 * Source rows written with the suffix (keep both).
 */
rows_renamed: number, rows_rejected: number, problems: Array<Problem>, 
/**
 * Rows left out because a row they belong to was set aside (the problem is reported there).
 */
notes: Array<string>, };

export type MigrationReport = { migration_type: MigrationType | null, 
/**
 * False for a validation (rolled back).
 */
committed: boolean, source_tenant_ids: Array<string>, target_tenant_id: string | null, tables: Array<TableReport>, warnings: Array<string>, 
/**
 * The mapping used (proposed when none was given).
 */
mapping: Array<TableMapping>, target_file: string | null, files: Array<ExportedFile>, rows_read: number, rows_written: number, rows_rejected: number, 
/**
 * Source tenant rows removed (merge with removal).
 */
rows_removed: number, 
/**
 * The references no foreign key declares that it followed (given, and remembered with the
 * connections).
 */
references: Array<string>, 
/**
 * References no foreign key declares that validation found (every value is found in the
 * parent), to confirm: `child.col=parent.col`, each also said in `warnings`.
 */
inferred: Array<string>, };

export type ExportedFile = { path: string, bytes: number, sha256: string, };

export type Rule = { 
/**
 * The source table (`schema.table` or the bare name).
 */
table: string, 
/**
 * The column changed (for `drop_row`, the column tested).
 */
column: string, action: Action, };

export type Action = { "rule": "set", value: string | null, } | { "rule": "copy", from: string, } | { "rule": "lower" } | { "rule": "upper" } | { "rule": "trim" } | { "rule": "replace", pattern: string, replacement: string, } | { "rule": "hash", salt: string, } | { "rule": "mask" } | { "rule": "fake", kind: FakeKind, salt: string, } | { "rule": "null" } | { "rule": "regenerate", template: string | null, } | { "rule": "drop_row", op: Op, value: string | null, };

export type FakeKind = "email" | "name" | "first_name" | "last_name" | "phone";

export type Op = "eq" | "ne" | "lt" | "gt" | "contains" | "matches" | "is_null" | "not_null";

export type TenantRow = { id: string, 
/**
 * The tenants table's `name` column, when it has one.
 */
name: string | null, };

/** A new configuration's settings until someone changes them (`ConfigurationInput::default()`). */
export const DEFAULT_CONFIGURATION_INPUT: ConfigurationInput = {"configuration_name":"","backup_type":"full","schedule_cron":"0 2 * * *","retention_days":30,"compression_enabled":true,"encryption_enabled":true,"storage_location":"","secondary_storage":null,"missed_runs":"run_once","time_zone":null,"includes_tenant_data":true,"includes_system_data":true,"includes_logs":false,"is_active":true,"continuous_protection":false,"whole_server":false,"exclude_databases":null,"server_passwords":false,"connection_id":""};
