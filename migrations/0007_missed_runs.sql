-- What the scheduler does at start-up about runs missed while Safehold was not running:
-- 'run_once' (one catch-up run, the default) or 'skip'.
ALTER TABLE backup_configurations ADD COLUMN missed_runs TEXT NOT NULL DEFAULT 'run_once' CHECK (missed_runs IN ('run_once', 'skip'));
