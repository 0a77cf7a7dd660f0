-- The lease (HOME/leases/<runner>.lock) of the process running each job: recovery at start-up
-- marks a job interrupted only when no live process holds it.
ALTER TABLE backup_executions ADD COLUMN runner TEXT;
ALTER TABLE restore_operations ADD COLUMN runner TEXT;
ALTER TABLE migration_jobs ADD COLUMN runner TEXT;
