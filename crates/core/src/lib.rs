//! Safehold's engine: everything the desktop app, the CLI and the tests call. Nothing here
//! depends on Tauri; each domain is a module with its types, its logic and its errors.

pub mod bindings;
pub mod catalog;
pub mod chain;
pub mod checks;
pub mod configurations;
pub mod connections;
pub mod copies;
pub mod context;
pub mod cron;
pub mod custody;
pub mod demo;
pub mod error;
pub mod archive;
pub mod auditlog;
pub mod backup;
pub mod history;
pub mod jobs;
pub mod lease;
pub mod migrate;
pub mod operators;
pub mod private;
pub mod recovery;
pub mod remote;
pub mod repository;
pub mod restore;
pub mod restores;
pub mod retention;
pub mod runs;
pub mod scheduler;
pub mod secrets;
pub mod source;
pub mod storage;
pub mod unlock;
pub mod verify;
pub mod writers;

pub use context::Ctx;
pub use error::{Error, ErrorCode, FieldError, Result};
