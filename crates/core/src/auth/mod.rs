//! The people: operators (set-up, sign-in, passwords, roles — `operators`) and the audit log
//! they read (`audit`). Who is acting and the permission check every engine entry point makes
//! sit lower, in `crate::context` (its `session`), because every module uses them.

pub mod audit;
pub mod operators;
