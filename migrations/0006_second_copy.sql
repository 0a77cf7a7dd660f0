-- 3-2-1: a configuration may name a second storage; each completed backup is copied there,
-- verified, and the copy recorded.
ALTER TABLE backup_configurations ADD COLUMN secondary_storage TEXT;
CREATE TABLE backup_copies (
  id                  TEXT PRIMARY KEY NOT NULL,
  backup_execution_id TEXT NOT NULL REFERENCES backup_executions(id) ON DELETE CASCADE,
  storage_name        TEXT NOT NULL,
  file_path           TEXT,
  checksum            TEXT,
  status              TEXT NOT NULL CHECK (status IN ('completed', 'failed')),
  error_message       TEXT,
  created_at          TEXT NOT NULL
);
CREATE INDEX idx_backup_copies_execution ON backup_copies(backup_execution_id);
