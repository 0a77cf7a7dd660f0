-- Restore operations say where they restored to, from which archive, which safety backup was
-- taken before them (a backup_executions row, restorable like any other) and, for a tenant copy,
-- the new tenant's id. `target` is a display form: never a password.
ALTER TABLE restore_operations ADD COLUMN target TEXT;
ALTER TABLE restore_operations ADD COLUMN source_archive TEXT;
ALTER TABLE restore_operations ADD COLUMN safety_backup_id TEXT REFERENCES backup_executions(id) ON DELETE SET NULL;
ALTER TABLE restore_operations ADD COLUMN new_tenant_id TEXT;
ALTER TABLE restore_operations ADD COLUMN current_table TEXT;
