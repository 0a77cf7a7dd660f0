-- Server backups as a configuration (issue 25): the configuration's connection names a server, and
-- each run backs up every database it has then (templates and the excluded ones left out), with
-- the roles and the databases' properties, as one set (crates/core/src/servers.rs). The run's
-- history row names the set's archive; its metadata lists the databases' archives (retention
-- deletes them with the set).
ALTER TABLE backup_configurations ADD COLUMN whole_server INTEGER NOT NULL DEFAULT 0;
-- Database name patterns left out, comma-separated (`*` matches any run of characters).
ALTER TABLE backup_configurations ADD COLUMN exclude_databases TEXT;
-- With `whole_server`: keep the roles' password hashes in the set (sealed like the data; needs a
-- superuser on the source and encryption on).
ALTER TABLE backup_configurations ADD COLUMN server_passwords INTEGER NOT NULL DEFAULT 0;
