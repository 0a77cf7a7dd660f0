//! Errors of the engine. Every error says what failed, on what, and what to do about it, and maps
//! to a closed [`ErrorCode`] that the UI matches on (never on message text).

use serde::Serialize;
use ts_rs::TS;

/// The closed set of error kinds that cross to the UI and the CLI's `--json` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The input was rejected before anything was written.
    Validation,
    /// Something with that name or id does not exist.
    NotFound,
    /// A name that must be unique is already taken.
    Conflict,
    /// A server could not be reached (refused, timed out, unknown host).
    Unreachable,
    /// A server refused the credentials.
    AuthFailed,
    /// The OS keychain is missing, locked or refused the request.
    Keychain,
    /// A database answered with an error.
    Database,
    /// A file could not be read or written.
    Io,
    /// The operator is not allowed to do this.
    PermissionDenied,
    /// The operation was cancelled; nothing was kept.
    Cancelled,
    /// A bug: please report it.
    Internal,
}

/// An engine error: a code and a message for a person.
#[derive(Debug, Clone, thiserror::Error, Serialize, TS)]
#[error("{message}")]
#[ts(rename = "EngineError")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    /// For validation errors: which input field is wrong and why, for inline display.
    pub fields: Vec<FieldError>,
}

/// One invalid input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), fields: Vec::new() }
    }
    /// A validation error listing every invalid field; the message joins them.
    pub fn invalid_fields(fields: Vec<FieldError>) -> Self {
        let message = fields.iter().map(|f| f.message.as_str()).collect::<Vec<_>>().join("; ");
        Self { code: ErrorCode::Validation, message, fields }
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Validation, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub fn io(what: impl std::fmt::Display, err: &std::io::Error) -> Self {
        Self::new(ErrorCode::Io, format!("{what}: {err}"))
    }
    /// A catalog error: the app's own database failed, which is not the user's input.
    pub fn catalog(context: &str, err: &sqlx::Error) -> Self {
        Self::new(ErrorCode::Database, format!("the catalog could not {context}: {err}"))
    }
}

/// Whether a sqlx error is a UNIQUE constraint violation (used to report name conflicts).
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
