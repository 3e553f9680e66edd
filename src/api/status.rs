//! The one conversion from domain errors to gRPC statuses, and the log line for each.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{
    domain::{Error, FieldViolation},
    log_throttle::{LOG_INTERVAL, LogThrottle},
};

/// Most field violations sent in one status. Details travel in a header, and HTTP/2 peers
/// reject header lists over about 16 KiB.
const MAX_VIOLATIONS: usize = 20;
/// Longest violation description or status message sent, in bytes.
const MAX_MESSAGE_BYTES: usize = 512;

/// Converts a domain error into the status sent to the client and logs it once: client
/// mistakes at info level, server faults at error level with details kept out of the reply.
pub fn to_status(error: Error) -> Status {
    match error {
        Error::InvalidArgument(violations) => invalid_argument(violations),
        Error::Unauthenticated(message) => {
            // A worker with a bad secret retries fast, so the throttle logs one line per interval.
            static LOG: LogThrottle = LogThrottle::new(LOG_INTERVAL);
            if let Some(rejected) = LOG.admit() {
                tracing::info!(code = ?Code::Unauthenticated, reason = %message, rejected, "request rejected");
            }
            Status::new(Code::Unauthenticated, truncate(message))
        }
        Error::PermissionDenied(message) => client_error(Code::PermissionDenied, message),
        Error::NotFound(message) => client_error(Code::NotFound, message),
        Error::FailedPrecondition(message) => client_error(Code::FailedPrecondition, message),
        Error::Aborted(message) => client_error(Code::Aborted, message),
        Error::ResourceExhausted(message) => {
            tracing::warn!(reason = %message, "request rejected: resource exhausted");
            Status::resource_exhausted(truncate(message))
        }
        Error::Unavailable(message) => {
            tracing::warn!(reason = %message, "request failed: unavailable");
            Status::unavailable(truncate(message))
        }
        Error::Internal(message) => {
            tracing::error!(reason = %message, "request failed: internal error");
            Status::internal("internal error; the server log has the details")
        }
    }
}

/// Returns the gRPC code that [`to_status`] sends for an error.
pub fn code_of(error: &Error) -> Code {
    match error {
        Error::InvalidArgument(_) => Code::InvalidArgument,
        Error::Unauthenticated(_) => Code::Unauthenticated,
        Error::PermissionDenied(_) => Code::PermissionDenied,
        Error::NotFound(_) => Code::NotFound,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::Aborted(_) => Code::Aborted,
        Error::ResourceExhausted(_) => Code::ResourceExhausted,
        Error::Unavailable(_) => Code::Unavailable,
        Error::Internal(_) => Code::Internal,
    }
}

fn client_error(code: Code, message: String) -> Status {
    tracing::info!(code = ?code, reason = %message, "request rejected");
    Status::new(code, truncate(message))
}

fn invalid_argument(violations: Vec<FieldViolation>) -> Status {
    let message = truncate(Error::InvalidArgument(violations.clone()).to_string());
    tracing::info!(reason = %message, violations = violations.len(), "request rejected: invalid argument");

    let details: Vec<tonic_types::FieldViolation> = violations
        .into_iter()
        .take(MAX_VIOLATIONS)
        .map(|violation| tonic_types::FieldViolation::new(violation.field, truncate(violation.description)))
        .collect();
    Status::with_error_details(Code::InvalidArgument, message, ErrorDetails::with_bad_request(details))
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_are_capped_in_details() {
        let violations = (0..500).map(|index| FieldViolation::new(format!("user_ids[{index}]"), "x".repeat(2000))).collect();
        let status = to_status(Error::InvalidArgument(violations));
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad_request = status.get_details_bad_request().expect("bad request details");
        assert_eq!(bad_request.field_violations.len(), MAX_VIOLATIONS);
        assert!(status.details().len() < 16 * 1024, "{} bytes", status.details().len());
        assert!(status.message().contains("(and 499 more)") || status.message().len() <= MAX_MESSAGE_BYTES + 3);
    }

    #[test]
    fn internal_errors_hide_details() {
        let status = to_status(Error::Internal("sled exploded at /var/secret".into()));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("sled"));
    }
}
