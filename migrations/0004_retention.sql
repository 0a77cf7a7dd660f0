-- Retention removes expired archives; the execution stays in the history, marked with when its
-- archive was deleted (and why, in the audit log).
ALTER TABLE backup_executions ADD COLUMN deleted_at TEXT;
