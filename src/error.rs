//! The one error type that service code returns; `api::status` maps it to
//! `tonic::Status` in one place.

pub use crate::pb::v1::ErrorReason;

/// One invalid field of a request, named by its path
/// (`customer.external_ids[2].value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument")]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{resource} not found")]
    NotFound { resource: String },
    #[error("{resource} already exists")]
    AlreadyExists {
        resource: String,
        reason: ErrorReason,
        /// The name of the resource the request collided with, for
        /// `ErrorInfo.metadata["resource"]`, when the caller may know it.
        existing: Option<String>,
    },
    /// The `request_id` was used before for a different request.
    #[error("request_id reused")]
    RequestIdReused,
    #[error("the etag does not match the current version of {resource}")]
    EtagMismatch { resource: String },
    #[error("{message}")]
    FailedPrecondition {
        reason: ErrorReason,
        message: String,
    },
    /// FAILED_PRECONDITION because of the state a resource is in, which
    /// `ErrorInfo.metadata["state"]` names for callers to branch on.
    #[error("{message}")]
    WrongState {
        reason: ErrorReason,
        state: String,
        message: String,
    },
    /// NOT_FOUND for a resource gone from ordinary reads that says where
    /// to look instead (a voided or superseded interaction, a merged
    /// customer): `metadata` goes into ErrorInfo (e.g. the correction).
    #[error("{message}")]
    Gone {
        reason: ErrorReason,
        message: String,
        metadata: Vec<(String, String)>,
    },
    /// FAILED_PRECONDITION whose ErrorInfo names the state and the
    /// resources in the way.
    #[error("{message}")]
    Blocked {
        reason: ErrorReason,
        message: String,
        metadata: Vec<(String, String)>,
    },
    #[error("the caller may not {action}")]
    PermissionDenied { action: String },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("the database is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// The pool wait ran out while every connection the pool may open was
    /// in use: the service is saturated, the database is there.
    #[error("every database connection is busy")]
    Busy,
    #[error("the operation ran out of time")]
    DeadlineExceeded,
    /// A concurrent transaction won (serialization failure, deadlock).
    #[error("aborted by a concurrent change")]
    Aborted,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl Error {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    pub fn denied(action: impl Into<String>) -> Self {
        Error::PermissionDenied {
            action: action.into(),
        }
    }

    /// A request part that validation should have reported as missing but
    /// did not: a bug, answered INTERNAL rather than with a panic.
    pub fn unreported_missing_part() -> Self {
        Error::Internal(anyhow::anyhow!(
            "a request part was missing without a field violation"
        ))
    }

    pub fn not_found(resource: impl Into<String>) -> Self {
        Error::NotFound {
            resource: resource.into(),
        }
    }
}

/// Collects every field violation of a request so the caller hears of all of
/// them at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value, when nothing was found wrong and it was read (a part left
    /// unread adds a violation; one that did not is `unreported_missing_part`).
    pub fn into_value<T>(self, value: Option<T>) -> Result<T, Error> {
        self.into_result(value)?
            .ok_or_else(Error::unreported_missing_part)
    }

    /// `Ok(value)` when nothing was found wrong.
    pub fn into_result<T>(self, value: T) -> Result<T, Error> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(Error::InvalidArgument(self.0))
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Error::Unavailable(err.into())
            }
            sqlx::Error::Database(db) if db.code().as_deref() == Some("57014") => {
                // query_canceled: the statement timeout fired.
                Error::DeadlineExceeded
            }
            sqlx::Error::Database(db) => match db.code().as_deref().unwrap_or_default() {
                // The server is shutting down or restarting (57P01-57P03), or
                // the connection failed (class 08): a retry may succeed.
                code if code.starts_with("57P") || code.starts_with("08") => {
                    Error::Unavailable(err.into())
                }
                // Serialization failure or deadlock: the caller retries the call.
                "40001" | "40P01" => Error::Aborted,
                // Data exceptions (a NUL byte, a value out of range) come from
                // what the caller sent.
                code if code.starts_with("22") => Error::invalid(
                    "request",
                    "holds a value the database cannot store (a NUL character, or a number or time out of range)",
                ),
                _ => Error::Internal(err.into()),
            },
            _ => Error::Internal(err.into()),
        }
    }
}
