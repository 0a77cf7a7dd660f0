-- Storage health (the last probe's outcome) and the used space over time, for the Storage tab.
ALTER TABLE backup_storage ADD COLUMN last_health_ok INTEGER;
ALTER TABLE backup_storage ADD COLUMN last_health_latency_ms INTEGER;
ALTER TABLE backup_storage ADD COLUMN last_health_message TEXT;
CREATE TABLE storage_usage_samples (
  storage_id     TEXT NOT NULL REFERENCES backup_storage(id) ON DELETE CASCADE,
  at             TEXT NOT NULL,
  used_space     INTEGER NOT NULL,
  total_capacity INTEGER,
  archives       INTEGER NOT NULL
);
CREATE INDEX idx_storage_usage_samples ON storage_usage_samples(storage_id, at);
