//! Every way the domain refuses or fails a request: what failed, and where
//! (the element at fault, the kind of problem). Its HTTP status and
//! OperationOutcome are the Lambda layer's (lambda/http_status.rs), as are
//! the refusals of a body it cannot read (lambda/request_error.rs).

use crate::auth_error::AuthError;
use crate::catalogue::EventType;
use crate::criteria::CriteriaError;
use crate::message::MessageError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error("this endpoint takes {expected} messages, but MessageHeader.event.code is {found}")]
    EventTypeMismatch {
        expected: EventType,
        found: EventType,
    },
    #[error("message {message_id} was already accepted with a different body")]
    DuplicateConflict { message_id: String },
    #[error("{expression}: {problem}")]
    BadRequest { expression: String, problem: String },
    #[error("{expression}: {problem}")]
    Unprocessable { expression: String, problem: String },
    #[error(transparent)]
    Criteria(#[from] CriteriaError),
    #[error("{0} was not found")]
    NotFound(String),
    /// The request clashes with what is under way (a replay already
    /// running for the subscription): 409.
    #[error("{expression}: {problem}")]
    Conflict { expression: String, problem: String },
    /// A quota is spent: 429, with the seconds until it renews.
    #[error("{problem}")]
    TooManyRequests {
        problem: String,
        retry_after_seconds: u64,
    },
    /// No valid credentials: 401 (a 5xx when the hub could not check them).
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// Authenticated, but not permitted: 403.
    #[error("{problem}")]
    Forbidden {
        expression: Option<String>,
        problem: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The hub's own fault (an operation that panicked): 500. The detail is
    /// for logs, never for clients.
    #[error("the hub failed: {0}")]
    Internal(String),
}

impl HubError {
    pub fn bad_request(expression: impl Into<String>, problem: impl Into<String>) -> Self {
        HubError::BadRequest {
            expression: expression.into(),
            problem: problem.into(),
        }
    }

    /// 403 for an operation the caller's role or registration does not allow.
    pub fn forbidden(problem: impl Into<String>) -> Self {
        HubError::Forbidden {
            expression: None,
            problem: problem.into(),
        }
    }

    /// 403 for a request whose `expression` the caller may not send.
    pub fn forbidden_element(expression: impl Into<String>, problem: impl Into<String>) -> Self {
        HubError::Forbidden {
            expression: Some(expression.into()),
            problem: problem.into(),
        }
    }

    pub fn unprocessable(expression: impl Into<String>, problem: impl Into<String>) -> Self {
        HubError::Unprocessable {
            expression: expression.into(),
            problem: problem.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unavailable store keeps the error it met as its source.
    #[test]
    fn an_unavailable_store_keeps_its_cause() {
        use std::error::Error as _;
        let cause = std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
        let error = StoreError::Unavailable(Box::new(cause));
        assert_eq!(error.to_string(), "a backing service failed: timed out");
        let source = error.source().expect("a source");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
    }
}
