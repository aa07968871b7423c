//! The one mapping from `Error` to `tonic::Status`: every status carries
//! `google.rpc.ErrorInfo`; invalid input carries `BadRequest` field violations.
//! Internal causes are logged here and never returned.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::Error;

/// `ErrorInfo.domain` of every error this service returns.
pub const ERROR_DOMAIN: &str = "customerknowledge.bank";

fn status(code: Code, reason: &str, message: String, details: ErrorDetails) -> Status {
    status_with(code, reason, message, details, HashMap::new())
}

fn status_with(
    code: Code,
    reason: &str,
    message: String,
    mut details: ErrorDetails,
    metadata: HashMap<String, String>,
) -> Status {
    details.set_error_info(reason, ERROR_DOMAIN, metadata);
    Status::with_error_details(code, message, details)
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        let plain = ErrorDetails::new;
        match err {
            Error::InvalidArgument(violations) => {
                let mut details = ErrorDetails::new();
                let mut message = String::from("invalid request:");
                for v in &violations {
                    details.add_bad_request_violation(&v.field, &v.description);
                    message.push_str(&format!(" {} {};", v.field, v.description));
                }
                message.pop();
                status(Code::InvalidArgument, "INVALID_ARGUMENT", message, details)
            }
            Error::NotFound { resource } => {
                let mut details = ErrorDetails::new();
                details.set_resource_info("", &resource, "", "not found");
                status(
                    Code::NotFound,
                    "RESOURCE_NOT_FOUND",
                    format!("{resource} not found"),
                    details,
                )
            }
            Error::AlreadyExists {
                resource,
                reason,
                existing,
            } => status_with(
                Code::AlreadyExists,
                &reason,
                format!("{resource} already exists"),
                plain(),
                existing
                    .map(|name| HashMap::from([("resource".to_string(), name)]))
                    .unwrap_or_default(),
            ),
            Error::RequestIdReused => {
                let mut details = ErrorDetails::new();
                details.add_bad_request_violation(
                    "request_id",
                    "was already used for a different request; use a new request_id for a new request",
                );
                status(
                    Code::InvalidArgument,
                    "REQUEST_ID_REUSED",
                    "invalid request: request_id was already used for a different request".into(),
                    details,
                )
            }
            Error::EtagMismatch { resource } => status(
                Code::Aborted,
                "ETAG_MISMATCH",
                format!(
                    "{resource} changed since it was read: read it again and retry with the new etag"
                ),
                plain(),
            ),
            Error::FailedPrecondition { reason, message } => {
                status(Code::FailedPrecondition, &reason, message, plain())
            }
            Error::PermissionDenied { action } => status(
                Code::PermissionDenied,
                "PERMISSION_DENIED",
                format!("the caller may not {action}"),
                plain(),
            ),
            Error::Unauthenticated(message) => {
                status(Code::Unauthenticated, "UNAUTHENTICATED", message, plain())
            }
            Error::DeadlineExceeded => status(
                Code::DeadlineExceeded,
                "DEADLINE_EXCEEDED",
                "the operation did not finish in time".into(),
                plain(),
            ),
            Error::Aborted => status(
                Code::Aborted,
                "CONCURRENT_CHANGE",
                "a concurrent change got in the way; retry the call".into(),
                plain(),
            ),
            Error::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                status(
                    Code::Unavailable,
                    "DATABASE_UNAVAILABLE",
                    "the service cannot reach its database; retry with backoff".into(),
                    plain(),
                )
            }
            Error::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                status(
                    Code::Internal,
                    "INTERNAL",
                    "internal error; it has been logged".into(),
                    plain(),
                )
            }
        }
    }
}
