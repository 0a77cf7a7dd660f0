//! The engine's integration tests: one binary, a module per domain. They use real parts: a real
//! PostgreSQL (127.0.0.1:5432 or `SAFEHOLD_TEST_PG`), real SQLite files, a real Secret Service
//! (when the harness started one; see scripts/test.sh).

mod backup;
mod bindings;
mod chains;
mod catalog;
mod configurations;
mod connections;
mod cron;
mod demo;
mod hardening;
mod keychain;
mod migrations;
mod migrations_sqlite;
mod objstore;
mod operators;
mod protect;
mod restores;
mod retention;
mod runs;
mod scheduler;
mod schemas;
mod shape;
mod storage;
mod support;
mod servers;
mod versions;
