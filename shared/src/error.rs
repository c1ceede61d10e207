//! Every way a request can fail, and the OperationOutcome of each. Its HTTP
//! status is the Lambda layer's (lambda/http_status.rs).

use crate::auth_error::AuthError;
use crate::catalogue::EventType;
use crate::criteria::CriteriaError;
use crate::message::{MessageError, ProblemKind};
use crate::outcome::{Issue, OperationOutcome, Severity};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{}", media_type_problem(found.as_deref(), expected))]
    UnsupportedMediaType {
        found: Option<String>,
        expected: &'static str,
    },
    #[error("the body is {size} bytes; the hub accepts at most {limit}")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("the body is not valid UTF-8 text")]
    NotText,
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
    /// No valid credentials: 401 (503 when the hub could not check them).
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

/// What an unsupported media type's diagnostics say: the type as it was
/// sent, or that none was.
fn media_type_problem(found: Option<&str>, expected: &str) -> String {
    match found {
        Some(found) => format!("the Content-Type {found} is not {expected}"),
        None => format!("the request has no Content-Type: send {expected}"),
    }
}

/// What the FHIR endpoints take.
pub const FHIR_MEDIA_TYPES: &str = "application/fhir+xml or application/fhir+json";

impl HubError {
    pub fn unsupported_media_type(found: Option<&str>, expected: &'static str) -> Self {
        HubError::UnsupportedMediaType {
            found: found.filter(|media| !media.is_empty()).map(str::to_owned),
            expected,
        }
    }

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

    pub fn outcome(&self) -> OperationOutcome {
        if let HubError::Unauthenticated(error) = self {
            return error.outcome();
        }
        let (code, spine_code, expression): (&'static str, &'static str, Vec<String>) = match self {
            HubError::Unauthenticated(_) => ("security", "ACCESS_DENIED", vec![]),
            HubError::Forbidden { expression, .. } => (
                "forbidden",
                "ACCESS_DENIED",
                expression.iter().cloned().collect(),
            ),
            HubError::UnsupportedMediaType { .. } => {
                ("not-supported", "UNSUPPORTED_MEDIA_TYPE", vec![])
            }
            HubError::PayloadTooLarge { .. } => ("too-long", "MESSAGE_TOO_LARGE", vec![]),
            HubError::NotText => ("structure", "MESSAGE_NOT_WELL_FORMED", vec![]),
            HubError::Message(MessageError::Unreadable(_)) => {
                ("structure", "MESSAGE_NOT_WELL_FORMED", vec![])
            }
            HubError::Message(MessageError::NotABundle { .. }) => {
                ("structure", "INVALID_RESOURCE", vec![])
            }
            HubError::Message(MessageError::Invalid {
                expression, kind, ..
            }) => {
                let (code, spine_code) = match kind {
                    ProblemKind::Missing => ("required", "MISSING_OR_INVALID_HEADER"),
                    ProblemKind::BadValue => ("value", "INVALID_VALUE"),
                    ProblemKind::BadNhsNumber => ("value", "INVALID_NHS_NUMBER"),
                };
                (code, spine_code, vec![expression.clone()])
            }
            HubError::EventTypeMismatch { .. } => (
                "value",
                "INVALID_VALUE",
                vec!["Bundle.entry[0].resource.ofType(MessageHeader).event.code".into()],
            ),
            HubError::DuplicateConflict { .. } => (
                "conflict",
                "DUPLICATE_REJECTED",
                vec!["Bundle.entry[0].resource.ofType(MessageHeader).id".into()],
            ),
            HubError::BadRequest { expression, .. } => {
                ("invalid", "BAD_REQUEST", vec![expression.clone()])
            }
            HubError::Unprocessable { expression, .. } => {
                ("value", "INVALID_VALUE", vec![expression.clone()])
            }
            HubError::Criteria(_) => (
                "value",
                "INVALID_PARAMETER",
                vec!["Subscription.criteria".into()],
            ),
            HubError::NotFound(_) => ("not-found", "NO_RECORD_FOUND", vec![]),
            HubError::Conflict { expression, .. } => {
                ("conflict", "DUPLICATE_REJECTED", vec![expression.clone()])
            }
            HubError::TooManyRequests { .. } => ("throttled", "TOO_MANY_REQUESTS", vec![]),
            HubError::Store(StoreError::InvalidPageToken) => {
                ("invalid", "INVALID_PARAMETER", vec!["_page".into()])
            }
            HubError::Store(StoreError::Unavailable(_)) => {
                ("transient", "SERVICE_UNAVAILABLE", vec![])
            }
            HubError::Store(StoreError::Corrupt(_) | StoreError::Configuration(_))
            | HubError::Internal(_) => ("exception", "INTERNAL_SERVER_ERROR", vec![]),
        };
        let diagnostics = match self {
            // The cause of a storage failure stays in the logs.
            HubError::Store(StoreError::Unavailable(_)) => {
                "the hub could not complete the request; try again later".to_owned()
            }
            HubError::Store(StoreError::Corrupt(_) | StoreError::Configuration(_))
            | HubError::Internal(_) => "the hub failed to answer the request".to_owned(),
            other => other.to_string(),
        };
        OperationOutcome::single(Issue {
            severity: Severity::Error,
            code,
            spine_code,
            diagnostics,
            expression,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Diagnostics are read by people: the media type as it was sent, not
    /// Rust's Debug text of an Option.
    #[test]
    fn an_unsupported_media_type_reads_as_sent() {
        let named = HubError::unsupported_media_type(Some("text/plain"), FHIR_MEDIA_TYPES);
        assert_eq!(
            named.outcome().issues[0].diagnostics,
            "the Content-Type text/plain is not application/fhir+xml or application/fhir+json"
        );
        let absent = HubError::unsupported_media_type(None, FHIR_MEDIA_TYPES);
        let diagnostics = &absent.outcome().issues[0].diagnostics;
        assert!(diagnostics.contains("no Content-Type"), "{diagnostics}");
        assert!(!diagnostics.contains("None"), "{diagnostics}");
    }

    /// A store that cannot be reached is worth a retry; a corrupt item or a
    /// misconfigured function is not (lambda/http_status.rs gives their
    /// statuses). Neither tells the client more than that.
    #[test]
    fn each_kind_of_store_failure_has_its_outcome() {
        let cases = [
            (
                StoreError::Unavailable("connection refused".into()),
                "SERVICE_UNAVAILABLE",
            ),
            (
                StoreError::Corrupt("the events item under eventKey e/1".into()),
                "INTERNAL_SERVER_ERROR",
            ),
            (
                StoreError::Configuration("environment variable EVENTS_TABLE is not set".into()),
                "INTERNAL_SERVER_ERROR",
            ),
        ];
        for (error, spine_code) in cases {
            let outcome = HubError::Store(error).outcome();
            assert_eq!(outcome.issues[0].spine_code, spine_code);
            let diagnostics = &outcome.issues[0].diagnostics;
            for detail in ["connection", "eventKey", "EVENTS_TABLE"] {
                assert!(!diagnostics.contains(detail), "{diagnostics}");
            }
        }
    }

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
