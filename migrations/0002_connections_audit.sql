-- Catalog version 2: the platform databases Safehold backs up, which configuration backs up which,
-- an append-only audit log, and the app's own settings.

CREATE TABLE connections (
  id             TEXT PRIMARY KEY NOT NULL,
  name           TEXT UNIQUE NOT NULL CHECK (length(trim(name)) > 0),
  kind           TEXT NOT NULL CHECK (kind IN ('postgres', 'sqlite')),
  host           TEXT,
  port           INTEGER CHECK (port IS NULL OR (port > 0 AND port < 65536)),
  database_name  TEXT,
  username       TEXT,
  tls_mode       TEXT CHECK (tls_mode IS NULL OR tls_mode IN ('disable', 'prefer', 'require', 'verify-ca', 'verify-full')),
  sqlite_path    TEXT,
  -- whether a password for this connection is kept in the OS keychain (the password never is here)
  has_password   INTEGER NOT NULL DEFAULT 0 CHECK (has_password IN (0, 1)),
  tenant_column  TEXT NOT NULL DEFAULT 'tenant_id',
  tenants_table  TEXT NOT NULL DEFAULT 'tenants',
  created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  CHECK (
    (kind = 'postgres' AND host IS NOT NULL AND port IS NOT NULL AND database_name IS NOT NULL
       AND username IS NOT NULL AND tls_mode IS NOT NULL AND sqlite_path IS NULL)
    OR (kind = 'sqlite' AND sqlite_path IS NOT NULL AND host IS NULL)
  )
);

ALTER TABLE backup_configurations ADD COLUMN connection_id TEXT REFERENCES connections(id);

CREATE TABLE audit_log (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  operator_id TEXT REFERENCES operators(id),
  action      TEXT NOT NULL,
  target      TEXT,
  outcome     TEXT NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
  detail      TEXT
);
CREATE INDEX idx_audit_log_at ON audit_log(at);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

CREATE TABLE app_settings (
  key   TEXT PRIMARY KEY NOT NULL,
  value TEXT NOT NULL
);
