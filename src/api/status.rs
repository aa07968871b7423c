//! The one mapping from `Error` to `tonic::Status`: every status carries
//! `google.rpc.ErrorInfo`; invalid input carries `BadRequest` field violations.
//! Internal causes are logged here and never returned.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicUsize, Ordering},
};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::{Error, ErrorReason};

/// `ErrorInfo.domain` of every error this service returns.
pub const ERROR_DOMAIN: &str = "customerknowledge.bank";

/// The pause RetryInfo suggests when the database is out of reach (a restart
/// or failover usually takes a few seconds).
const DATABASE_RETRY_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

fn status(code: Code, reason: ErrorReason, message: String, details: ErrorDetails) -> Status {
    status_with(code, reason, message, details, HashMap::new())
}

fn status_with(
    code: Code,
    reason: ErrorReason,
    message: String,
    mut details: ErrorDetails,
    metadata: HashMap<String, String>,
) -> Status {
    // The only place an ErrorInfo is built: every reason is a value of the
    // contract's ErrorReason enum, never free text.
    details.set_error_info(reason.as_str_name(), ERROR_DOMAIN, metadata);
    Status::with_error_details(code, message, details)
}

/// A status with ErrorInfo and, when the caller should come back after a
/// pause, RetryInfo: what the server answers outside any handler (a shed
/// call, a passed deadline, a caught panic) and for the database's absence
/// or saturation.
pub(crate) fn layer_status(
    code: Code,
    reason: ErrorReason,
    message: &str,
    retry_after: Option<std::time::Duration>,
) -> Status {
    let mut details = ErrorDetails::new();
    if let Some(delay) = retry_after {
        details.set_retry_info(Some(delay));
    }
    status(code, reason, message.to_string(), details)
}

/// Field violations an INVALID_ARGUMENT status lists at most
/// (`api.max_field_violations`); the total is in `ErrorInfo.metadata`.
static MAX_FIELD_VIOLATIONS: AtomicUsize = AtomicUsize::new(20);

/// The longest field path or description a violation carries, in characters.
const MAX_VIOLATION_TEXT: usize = 200;

/// Bytes of field paths and descriptions the BadRequest detail carries
/// (base64 in `grpc-status-details-bin`), and bytes of the message
/// (`grpc-message`, where each byte outside ASCII takes three): together
/// the trailers stay far below the 8 KiB a client must accept, whatever the
/// script of the text.
const DETAIL_BYTES: usize = 3 * 1024;
const MESSAGE_BYTES: usize = 512;

/// Sets how many field violations an INVALID_ARGUMENT status lists.
pub fn set_max_field_violations(max: usize) {
    MAX_FIELD_VIOLATIONS.store(max.max(1), Ordering::Relaxed);
}

fn clip(text: &str, chars: usize) -> &str {
    match text.char_indices().nth(chars) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// The longest prefix of `text` within `bytes`, on a character boundary.
fn clip_bytes(text: &str, bytes: usize) -> &str {
    if text.len() <= bytes {
        return text;
    }
    let mut end = bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// INVALID_ARGUMENT with the first violations, bounded in number, length
/// and bytes (so that a batch with a thousand bad rows, or twenty long CJK
/// keys, still tells the caller what is wrong in trailers any client reads)
/// and the total count in `ErrorInfo.metadata["violations"]`.
fn invalid_argument(violations: &[crate::error::FieldViolation]) -> Status {
    let max = MAX_FIELD_VIOLATIONS.load(Ordering::Relaxed);
    let mut details = ErrorDetails::new();
    let (mut shown, mut detail_bytes) = (0, 0);
    let mut message = String::from("invalid request:");
    for v in violations.iter().take(max) {
        let (field, description) = (
            clip(&v.field, MAX_VIOLATION_TEXT),
            clip(&v.description, MAX_VIOLATION_TEXT),
        );
        detail_bytes += field.len() + description.len();
        if shown > 0 && detail_bytes > DETAIL_BYTES {
            break;
        }
        details.add_bad_request_violation(field, description);
        if message.len() < MESSAGE_BYTES {
            message.push_str(&format!(" {field} {description};"));
        }
        shown += 1;
    }
    let mut message = clip_bytes(message.trim_end_matches(';'), MESSAGE_BYTES).to_string();
    if shown < violations.len() {
        message.push_str(&format!(
            " (and {} more; {} in all)",
            violations.len() - shown,
            violations.len()
        ));
    }
    status_with(
        Code::InvalidArgument,
        ErrorReason::InvalidArgument,
        message,
        details,
        HashMap::from([("violations".to_string(), violations.len().to_string())]),
    )
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        let plain = ErrorDetails::new;
        match err {
            Error::InvalidArgument(violations) => invalid_argument(&violations),
            Error::NotFound { resource } => {
                let mut details = ErrorDetails::new();
                details.set_resource_info("", &resource, "", "not found");
                status(
                    Code::NotFound,
                    ErrorReason::ResourceNotFound,
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
                reason,
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
                    ErrorReason::RequestIdReused,
                    "invalid request: request_id was already used for a different request".into(),
                    details,
                )
            }
            Error::EtagMismatch { resource } => status(
                Code::Aborted,
                ErrorReason::EtagMismatch,
                format!(
                    "{resource} changed since it was read: read it again and retry with the new etag"
                ),
                plain(),
            ),
            Error::FailedPrecondition { reason, message } => {
                status(Code::FailedPrecondition, reason, message, plain())
            }
            Error::WrongState {
                reason,
                state,
                message,
            } => status_with(
                Code::FailedPrecondition,
                reason,
                message,
                plain(),
                HashMap::from([("state".to_string(), state)]),
            ),
            Error::Gone {
                reason,
                message,
                metadata,
            } => status_with(
                Code::NotFound,
                reason,
                message,
                plain(),
                metadata.into_iter().collect(),
            ),
            Error::Blocked {
                reason,
                message,
                metadata,
            } => status_with(
                Code::FailedPrecondition,
                reason,
                message,
                plain(),
                metadata.into_iter().collect(),
            ),
            Error::PermissionDenied { action } => status(
                Code::PermissionDenied,
                ErrorReason::PermissionDenied,
                format!("the caller may not {action}"),
                plain(),
            ),
            Error::Unauthenticated(message) => status(
                Code::Unauthenticated,
                ErrorReason::Unauthenticated,
                message,
                plain(),
            ),
            Error::DeadlineExceeded => status(
                Code::DeadlineExceeded,
                ErrorReason::DeadlineExceeded,
                "the operation did not finish in time".into(),
                plain(),
            ),
            Error::Aborted => status(
                Code::Aborted,
                ErrorReason::ConcurrentChange,
                "a concurrent change got in the way; retry the call".into(),
                plain(),
            ),
            Error::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                layer_status(
                    Code::Unavailable,
                    ErrorReason::DatabaseUnavailable,
                    "the service cannot reach its database; retry with backoff",
                    Some(DATABASE_RETRY_DELAY),
                )
            }
            Error::Busy => layer_status(
                Code::ResourceExhausted,
                ErrorReason::Overloaded,
                "every database connection of the service is busy; retry with backoff",
                Some(DATABASE_RETRY_DELAY),
            ),
            Error::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                status(
                    Code::Internal,
                    ErrorReason::Internal,
                    "internal error; it has been logged".into(),
                    plain(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every ErrorInfo is built by `status_with` from an `ErrorReason`, so a
    /// reason the contract does not declare cannot be sent; this keeps it so.
    #[test]
    fn error_info_is_built_in_one_place_from_the_enum() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut stack = vec![std::path::PathBuf::from(root)];
        let mut offenders = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("api/status.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap();
                    if text.contains("set_error_info(") || text.contains("with_error_details(") {
                        offenders.push(path.display().to_string());
                    }
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "ErrorInfo built outside api/status.rs: {offenders:?}"
        );
    }

    #[test]
    fn every_reason_is_sent_by_its_proto_name() {
        let status = layer_status(
            Code::ResourceExhausted,
            ErrorReason::Overloaded,
            "full",
            None,
        );
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.reason, "OVERLOADED");
        assert_eq!(info.domain, ERROR_DOMAIN);
        let reasons: Vec<_> = (1..).map_while(|v| ErrorReason::try_from(v).ok()).collect();
        assert!(reasons.len() > 30);
        for reason in reasons {
            assert_eq!(
                ErrorReason::from_str_name(reason.as_str_name()),
                Some(reason)
            );
        }
    }
}
