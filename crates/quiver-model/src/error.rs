//! The one error vocabulary of the engine.
//!
//! Every engine crate returns [`Error`]; the HTTP layer maps each [`ErrorCode`] to a status
//! and the JSON envelope once, at the edge, and the CLI prints the message. Errors that are
//! the caller's fault carry the offending field so a client can point at it.

use std::fmt;

/// A stable, machine-readable code for each class of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Input failed validation (a field broke a rule).
    InvalidInput,
    /// The addressed entry, version or namespace does not exist (or is not visible).
    NotFound,
    /// The write conflicts with existing state (name taken, version already published).
    Conflict,
    /// The request carried credentials that are not valid.
    Unauthorized,
    /// The caller may not do this.
    Forbidden,
    /// Something failed inside quiver or its storage.
    Internal,
    /// Too many failed credential checks for this account or from this client (the
    /// credential throttle): retry after [`Error::retry_after`].
    TooManyAttempts,
    /// A delete the deletion policy refuses (outside the grace period, with dependents,
    /// with downloads): the message says why and what to do instead (yank, deprecate,
    /// archive).
    DeleteRefused,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Internal => "internal",
            ErrorCode::TooManyAttempts => "too_many_attempts",
            ErrorCode::DeleteRefused => "delete_refused",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An engine error: a code, a human message and, for input errors, the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
    /// When to try again, for errors that say (whole seconds).
    pub retry_after: Option<u64>,
}

impl Error {
    /// Refused by the credential throttle until `retry_after` seconds from now.
    pub fn too_many_attempts(message: impl Into<String>, retry_after: u64) -> Self {
        Error {
            code: ErrorCode::TooManyAttempts,
            message: message.into(),
            field: None,
            retry_after: Some(retry_after.max(1)),
        }
    }

    /// `field` broke a rule; `reason` says which.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        let field = field.into();
        let reason = reason.into();
        Error {
            code: ErrorCode::InvalidInput,
            message: format!("{field}: {reason}"),
            field: Some(field),
            retry_after: None,
        }
    }

    pub fn not_found(what: impl fmt::Display) -> Self {
        Error {
            code: ErrorCode::NotFound,
            message: format!("{what} not found"),
            field: None,
            retry_after: None,
        }
    }

    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error {
            code: ErrorCode::Conflict,
            message: message.into(),
            field: Some(field.into()),
            retry_after: None,
        }
    }

    /// A delete the deletion policy refuses; `message` says why and what to do instead.
    pub fn delete_refused(message: impl Into<String>) -> Self {
        Error {
            code: ErrorCode::DeleteRefused,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Error {
            code: ErrorCode::Unauthorized,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Error {
            code: ErrorCode::Forbidden,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// An internal failure; `context` says what quiver was doing.
    pub fn internal(context: impl fmt::Display, cause: impl fmt::Display) -> Self {
        Error {
            code: ErrorCode::Internal,
            message: format!("{context}: {cause}"),
            field: None,
            retry_after: None,
        }
    }

    /// Prefix the field path (used when a nested validator reports a relative field).
    pub fn in_field(mut self, prefix: &str) -> Self {
        if let Some(f) = self.field.take() {
            let full = if f.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{f}")
            };
            self.message = self.message.replacen(&f, &full, 1);
            self.field = Some(full);
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach context to foreign errors when turning them into internal engine errors.
pub trait Context<T> {
    fn context(self, context: impl fmt::Display) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::internal(context, e))
    }
}
