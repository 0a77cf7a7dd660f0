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
pub mod demo;
pub mod error;
pub mod archive;
pub mod auth;
pub mod backup;
pub mod history;
pub mod keys;
pub mod jobs;
pub mod lease;
pub mod migrate;
pub mod private;
pub mod protect;
pub mod recovery;
pub mod remote;
pub mod repository;
pub mod restore;
pub mod retention;
pub mod runs;
pub mod scheduler;
pub mod secrets;
pub mod servers;
pub mod source;
pub mod storage;
pub mod verify;
pub mod writers;

pub use context::Ctx;
pub use error::{Error, ErrorCode, FieldError, Result};
