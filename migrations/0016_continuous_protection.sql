-- Continuous protection (issue 24): a configuration's setting, and what the streamer made for it.
-- A row of `protections` says that Safehold made a replication slot for the configuration: turning
-- the setting off, deactivating or deleting the configuration drops that slot (the server must not
-- keep WAL for a streamer that no longer runs). No secret is kept here.
ALTER TABLE backup_configurations ADD COLUMN continuous_protection INTEGER NOT NULL DEFAULT 0;

CREATE TABLE protections (
    configuration_id TEXT PRIMARY KEY,
    -- The replication slot's and the publication's name on the source server.
    slot TEXT NOT NULL,
    -- The connection and the storage the slot was made for (a changed one starts a new base).
    connection_id TEXT NOT NULL,
    storage_location TEXT NOT NULL,
    -- starting | streaming | failed | dropped
    state TEXT NOT NULL,
    -- The backup execution whose archive the changes continue from (retention keeps it).
    base_execution_id TEXT,
    started_at TEXT NOT NULL,
    last_step_at TEXT,
    last_segment TEXT,
    last_sealed_commit TEXT,
    held_bytes INTEGER,
    last_warning TEXT,
    last_error TEXT,
    updated_at TEXT NOT NULL
);
