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
    /// What it came from (an I/O or catalog error, …), for logs and for callers that walk
    /// `std::error::Error::source`; the UI sees the code and the message only.
    #[serde(skip)]
    #[ts(skip)]
    #[source]
    pub cause: Option<Cause>,
}

/// The chain of errors an [`Error`] came from, outermost first. The original errors are borrowed
/// where an engine error is made (and are seldom `Clone`), so each level keeps its text and the
/// level below it; `source()` walks the chain as the originals would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub message: String,
    pub next: Option<Box<Cause>>,
}

impl Cause {
    /// The chain of `err` and its sources.
    pub fn of(err: &(dyn std::error::Error + 'static)) -> Self {
        Self { message: err.to_string(), next: err.source().map(|s| Box::new(Self::of(s))) }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.next.as_deref().map(|c| c as &(dyn std::error::Error + 'static))
    }
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
        Self { code, message: message.into(), fields: Vec::new(), cause: None }
    }
    /// A validation error listing every invalid field; the message joins them.
    pub fn invalid_fields(fields: Vec<FieldError>) -> Self {
        let message = fields.iter().map(|f| f.message.as_str()).collect::<Vec<_>>().join("; ");
        Self { code: ErrorCode::Validation, message, fields, cause: None }
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
        Self::new(ErrorCode::Io, format!("{what}: {err}")).caused_by(err)
    }
    /// A catalog error: the app's own database failed, which is not the user's input.
    pub fn catalog(context: &str, err: &sqlx::Error) -> Self {
        Self::new(ErrorCode::Database, format!("the catalog could not {context}: {err}")).caused_by(err)
    }
    /// Keeps `err` (and its sources) as this error's cause.
    pub fn caused_by(mut self, err: &(dyn std::error::Error + 'static)) -> Self {
        self.cause = Some(Cause::of(err));
        self
    }
}

/// Whether a sqlx error is a UNIQUE constraint violation (used to report name conflicts).
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine error keeps what it came from: `source()` walks the chain of the original error,
    /// while the UI's JSON holds the code and the message only.
    #[test]
    fn an_error_keeps_its_cause_chain_out_of_the_ui() {
        #[derive(Debug, thiserror::Error)]
        #[error("the disk said no")]
        struct Inner;
        #[derive(Debug, thiserror::Error)]
        #[error("writing failed")]
        struct Outer(#[source] Inner);
        let io = std::io::Error::other(Outer(Inner));
        let e = Error::io("cannot write the archive", &io);
        let chain: Vec<String> = std::iter::successors(std::error::Error::source(&e), |s| s.source()).map(|s| s.to_string()).collect();
        assert_eq!(chain, ["writing failed", "the disk said no"], "the io::Error, then what its payload came from");
        let json = serde_json::to_value(&e).expect("json");
        assert_eq!(json, serde_json::json!({ "code": "io", "message": "cannot write the archive: writing failed", "fields": [] }));
        assert!(std::error::Error::source(&Error::validation("no")).is_none(), "an error made from nothing has no cause");
    }
}
