-- Operators sign in: failed attempts slow down and lock the operator for a while; who started a
-- backup is recorded.
ALTER TABLE operators ADD COLUMN failed_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE operators ADD COLUMN locked_until TEXT;
ALTER TABLE operators ADD COLUMN last_sign_in TEXT;
ALTER TABLE backup_executions ADD COLUMN initiated_by TEXT REFERENCES operators(id);
