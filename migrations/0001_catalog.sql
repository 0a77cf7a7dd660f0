-- Safehold catalog, version 1: the spec's tables (SPEC-125) translated to SQLite.
-- UUID -> TEXT, TIMESTAMPTZ -> RFC 3339 UTC TEXT, JSONB / TEXT[] -> JSON TEXT, BOOLEAN -> INTEGER 0/1.
-- users(id) and tenants(id) of the spec live in the platform database, not here: the spec's
-- `created_by`/`initiated_by` point at `operators`, tenant ids are kept as TEXT.

CREATE TABLE operators (
  id            TEXT PRIMARY KEY NOT NULL,
  name          TEXT UNIQUE NOT NULL CHECK (length(trim(name)) > 0),
  role          TEXT NOT NULL CHECK (role IN ('super_admin', 'platform_operator', 'read_only_admin')),
  password_hash TEXT,
  is_active     INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
  created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- The workstation's own operator until sign-in exists: every row written before then names it.
INSERT INTO operators (id, name, role) VALUES
  ('00000000-0000-4000-8000-000000000001', 'local administrator', 'super_admin');

CREATE TABLE role_permissions (
  role_name  TEXT NOT NULL CHECK (role_name IN ('super_admin', 'platform_operator', 'read_only_admin')),
  permission TEXT NOT NULL,
  PRIMARY KEY (role_name, permission)
);

INSERT INTO role_permissions (role_name, permission) VALUES
  ('super_admin', 'backup:manage_all'),
  ('super_admin', 'backup:trigger_manual'),
  ('super_admin', 'backup:restore_data'),
  ('super_admin', 'backup:manage_storage'),
  ('platform_operator', 'backup:trigger_manual'),
  ('platform_operator', 'backup:view_status'),
  ('read_only_admin', 'backup:view_history');

CREATE TABLE backup_storage (
  id                TEXT PRIMARY KEY NOT NULL,
  storage_name      TEXT UNIQUE NOT NULL,
  storage_type      TEXT NOT NULL CHECK (storage_type IN ('local', 's3', 'azure', 'gcp')),
  storage_config    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(storage_config)),
  is_default        INTEGER DEFAULT 0 CHECK (is_default IN (0, 1)),
  is_active         INTEGER DEFAULT 1 CHECK (is_active IN (0, 1)),
  total_capacity    INTEGER,
  used_space        INTEGER DEFAULT 0,
  created_at        TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  last_health_check TEXT
);

CREATE TABLE backup_configurations (
  id                   TEXT PRIMARY KEY NOT NULL,
  configuration_name   TEXT UNIQUE NOT NULL,
  backup_type          TEXT NOT NULL CHECK (backup_type IN ('full', 'incremental', 'differential')),
  schedule_cron        TEXT NOT NULL,
  retention_days       INTEGER NOT NULL DEFAULT 30,
  compression_enabled  INTEGER DEFAULT 1 CHECK (compression_enabled IN (0, 1)),
  encryption_enabled   INTEGER DEFAULT 1 CHECK (encryption_enabled IN (0, 1)),
  storage_location     TEXT NOT NULL,
  includes_tenant_data INTEGER DEFAULT 1 CHECK (includes_tenant_data IN (0, 1)),
  includes_system_data INTEGER DEFAULT 1 CHECK (includes_system_data IN (0, 1)),
  includes_logs        INTEGER DEFAULT 0 CHECK (includes_logs IN (0, 1)),
  is_active            INTEGER DEFAULT 1 CHECK (is_active IN (0, 1)),
  created_by           TEXT NOT NULL REFERENCES operators(id),
  created_at           TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  updated_at           TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE backup_executions (
  id               TEXT PRIMARY KEY NOT NULL,
  configuration_id TEXT REFERENCES backup_configurations(id) ON DELETE SET NULL,
  backup_type      TEXT NOT NULL,
  status           TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
  started_at       TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  completed_at     TEXT,
  file_path        TEXT,
  file_size        INTEGER,
  compressed_size  INTEGER,
  tenant_count     INTEGER,
  table_count      INTEGER,
  record_count     INTEGER,
  checksum         TEXT,
  error_message    TEXT,
  metadata         TEXT DEFAULT '{}' CHECK (json_valid(metadata))
);

CREATE TABLE restore_operations (
  id                  TEXT PRIMARY KEY NOT NULL,
  backup_execution_id TEXT REFERENCES backup_executions(id),
  restore_type        TEXT NOT NULL CHECK (restore_type IN ('full', 'selective', 'tenant_only')),
  target_tenant_id    TEXT,
  restore_point       TEXT,
  status              TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
  progress_percentage INTEGER DEFAULT 0,
  tables_to_restore   TEXT CHECK (tables_to_restore IS NULL OR json_valid(tables_to_restore)),
  exclude_tables      TEXT CHECK (exclude_tables IS NULL OR json_valid(exclude_tables)),
  preserve_ids        INTEGER DEFAULT 0 CHECK (preserve_ids IN (0, 1)),
  started_at          TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  completed_at        TEXT,
  initiated_by        TEXT NOT NULL REFERENCES operators(id),
  error_message       TEXT,
  restored_records    TEXT DEFAULT '{}' CHECK (json_valid(restored_records))
);

CREATE TABLE migration_jobs (
  id                    TEXT PRIMARY KEY NOT NULL,
  migration_name        TEXT NOT NULL,
  migration_type        TEXT NOT NULL CHECK (migration_type IN ('tenant_copy', 'data_import', 'data_export', 'tenant_merge')),
  source_tenant_id      TEXT,
  target_tenant_id      TEXT,
  source_file_path      TEXT,
  target_file_path      TEXT,
  mapping_configuration TEXT DEFAULT '{}' CHECK (json_valid(mapping_configuration)),
  transformation_rules  TEXT DEFAULT '[]' CHECK (json_valid(transformation_rules)),
  status                TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
  progress_percentage   INTEGER DEFAULT 0,
  records_processed     INTEGER DEFAULT 0,
  records_total         INTEGER DEFAULT 0,
  started_at            TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  completed_at          TEXT,
  initiated_by          TEXT NOT NULL REFERENCES operators(id),
  error_message         TEXT,
  validation_results    TEXT DEFAULT '{}' CHECK (json_valid(validation_results))
);

CREATE INDEX idx_backup_executions_config_status ON backup_executions(configuration_id, status);
CREATE INDEX idx_backup_executions_started_at ON backup_executions(started_at);
CREATE INDEX idx_restore_operations_status ON restore_operations(status);
CREATE INDEX idx_migration_jobs_status ON migration_jobs(status);
