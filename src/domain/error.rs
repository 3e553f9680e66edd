//! The closed set of failures that the domain reports to the edge.

use std::fmt;

/// One invalid request field: the field path and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), description: description.into() }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// Failure of a domain operation. The edge maps each variant to one gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {}", summarize(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// Missing, unknown, expired or revoked credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// A known caller acting outside what it may do.
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// A conditional write lost against another write (stale etag).
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// The store cannot serve the request now; retrying later may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// A fault of the server; the message is for logs, not for clients.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}

fn summarize(violations: &[FieldViolation]) -> String {
    match violations {
        [] => "no details".to_owned(),
        [only] => only.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}
