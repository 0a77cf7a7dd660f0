-- The time zone a configuration's schedule is evaluated in (an IANA name such as Europe/Berlin);
-- NULL: the workstation's.
ALTER TABLE backup_configurations ADD COLUMN time_zone TEXT;
