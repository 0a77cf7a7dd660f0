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

export type BackupConfiguration = { id: string, configuration_name: string, backup_type: BackupType, schedule_cron: string, schedule_description: string, retention_days: number, compression_enabled: boolean, encryption_enabled: boolean, storage_location: string, includes_tenant_data: boolean, includes_system_data: boolean, includes_logs: boolean, is_active: boolean, connection_id: string | null, created_by: string, created_at: string, updated_at: string, };

export type ConfigurationInput = { configuration_name: string, backup_type: BackupType, schedule_cron: string, retention_days: number, compression_enabled: boolean, encryption_enabled: boolean, 
/**
 * The name of a registered storage (see the Storage tab).
 */
storage_location: string, includes_tenant_data: boolean, includes_system_data: boolean, includes_logs: boolean, is_active: boolean, 
/**
 * The connection (platform database) to back up.
 */
connection_id: string, };

export type CronPreview = { description: string, 
/**
 * The next run times (RFC 3339 with the workstation's offset).
 */
next_runs: Array<string>, };

export type ConnectionKind = "postgres" | "sqlite";

export type TlsMode = "disable" | "prefer" | "require" | "verify-ca" | "verify-full";

export type Connection = { id: string, name: string, kind: ConnectionKind, host: string | null, port: number | null, database_name: string | null, username: string | null, tls_mode: TlsMode | null, sqlite_path: string | null, 
/**
 * Whether a password for it is kept in the OS keychain.
 */
has_password: boolean, tenant_column: string, tenants_table: string, created_at: string, updated_at: string, };

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
storage_config: JsonValue, is_default: boolean, is_active: boolean, total_capacity: number | null, used_space: number, created_at: string, last_health_check: string | null, };

export type JobStatus = "pending" | "running" | "completed" | "failed" | "cancelled";

export type BackupExecution = { id: string, configuration_id: string | null, configuration_name: string | null, backup_type: string, status: JobStatus, started_at: string, completed_at: string | null, file_path: string | null, file_size: number | null, compressed_size: number | null, tenant_count: number | null, table_count: number | null, record_count: number | null, checksum: string | null, error_message: string | null, metadata: JsonValue, };

export type RestoreOperation = { id: string, backup_execution_id: string | null, restore_type: string, target_tenant_id: string | null, restore_point: string | null, status: JobStatus, progress_percentage: number, tables_to_restore: Array<string> | null, exclude_tables: Array<string> | null, preserve_ids: boolean, started_at: string, completed_at: string | null, initiated_by: string, error_message: string | null, restored_records: JsonValue, };

export type MigrationJob = { id: string, migration_name: string, migration_type: string, source_tenant_id: string | null, target_tenant_id: string | null, source_file_path: string | null, target_file_path: string | null, status: JobStatus, progress_percentage: number, records_processed: number, records_total: number, started_at: string, completed_at: string | null, initiated_by: string, error_message: string | null, };

export type DemoReport = { 
/**
 * False when the demo was already there and nothing was created.
 */
created: boolean, database_path: string, tenants: number, rows: number, };
