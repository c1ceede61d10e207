//! The one place that maps the domain's results to HTTP: the status and
//! the FHIR OperationOutcome of every refusal ([`HubError`], [`AuthError`],
//! the Lambda layer's own [`BodyError`]) and of every publish outcome
//! ([`PublishOutcome`]), and the answer built from a refusal. The domain
//! types say only what failed (the element, the kind of problem); they know
//! nothing of HTTP.

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use tracing::{error, warn};

use crate::app::relationship::RelationshipOutcome;
use crate::auth::AuthError;
use crate::error::HubError;
use crate::events::{OutOfOrder, PublishOutcome};
use crate::message::{Encoding, MessageError, ProblemKind};
use crate::outcome::{Issue, OperationOutcome, Severity};
use crate::ports::Recorded;
use crate::ports::StoreError;

use super::http::fhir_response;
use super::request_error::{BodyError, RequestError};

/// What the API answers for a result: its HTTP status and its FHIR
/// OperationOutcome.
pub trait Answer {
    fn status(&self) -> u16;
    fn outcome(&self) -> OperationOutcome;
}

/// An error issue without elements.
fn error_issue(
    code: &'static str,
    spine_code: &'static str,
    diagnostics: String,
) -> OperationOutcome {
    OperationOutcome::single(Issue {
        severity: Severity::Error,
        code,
        spine_code,
        diagnostics,
        expression: Vec::new(),
    })
}

impl Answer for HubError {
    fn status(&self) -> u16 {
        match self {
            HubError::BadRequest { .. } => 400,
            HubError::Message(MessageError::Unreadable(_) | MessageError::NotABundle { .. }) => 400,
            HubError::Message(MessageError::Invalid { .. })
            | HubError::EventTypeMismatch { .. }
            | HubError::Unprocessable { .. }
            | HubError::Criteria(_) => 422,
            HubError::DuplicateConflict { .. } | HubError::Conflict { .. } => 409,
            HubError::TooManyRequests { .. } => 429,
            HubError::NotFound(_) => 404,
            HubError::Unauthenticated(error) => error.status(),
            HubError::Forbidden { .. } => 403,
            HubError::Store(StoreError::Unavailable(_)) => 503,
            // Not worth the caller's retry: an operator must look.
            HubError::Store(StoreError::Corrupt(_) | StoreError::Configuration(_)) => 500,
            HubError::Store(StoreError::InvalidPageToken) => 400,
            HubError::Internal(_) => 500,
        }
    }

    fn outcome(&self) -> OperationOutcome {
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
            HubError::Store(StoreError::Unavailable(_)) => UNAVAILABLE.to_owned(),
            HubError::Store(StoreError::Corrupt(_) | StoreError::Configuration(_))
            | HubError::Internal(_) => FAILED.to_owned(),
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

/// What a client is told of an outage, worth its retry.
const UNAVAILABLE: &str = "the hub could not complete the request; try again later";
/// What a client is told of the hub's own fault.
const FAILED: &str = "the hub failed to answer the request";

/// 401 for every refusal of credentials; 503 when the hub could not reach
/// a store, 500 for its own fault, since telling a client its credentials
/// are wrong then would send it to fix what is not broken.
impl Answer for AuthError {
    fn status(&self) -> u16 {
        match self {
            AuthError::Unavailable(_) => 503,
            AuthError::Failed(_) => 500,
            _ => 401,
        }
    }

    fn outcome(&self) -> OperationOutcome {
        match self {
            AuthError::Unavailable(_) => error_issue(
                "transient",
                "SERVICE_UNAVAILABLE",
                "the hub could not complete authentication; try again later".to_owned(),
            ),
            AuthError::Failed(_) => {
                error_issue("exception", "INTERNAL_SERVER_ERROR", FAILED.to_owned())
            }
            // The client should authenticate (again): no token, or its
            // token ran out.
            AuthError::NoToken | AuthError::Expired => {
                error_issue("login", "ACCESS_DENIED", self.to_string())
            }
            refusal => error_issue("security", "ACCESS_DENIED", refusal.to_string()),
        }
    }
}

impl Answer for BodyError {
    fn status(&self) -> u16 {
        match self {
            BodyError::UnsupportedMediaType { .. } => 415,
            BodyError::PayloadTooLarge { .. } => 413,
            BodyError::NotText | BodyError::NotBase64 => 400,
        }
    }

    fn outcome(&self) -> OperationOutcome {
        let (code, spine_code, expression) = match self {
            BodyError::UnsupportedMediaType { .. } => {
                ("not-supported", "UNSUPPORTED_MEDIA_TYPE", vec![])
            }
            BodyError::PayloadTooLarge { .. } => ("too-long", "MESSAGE_TOO_LARGE", vec![]),
            BodyError::NotText => ("structure", "MESSAGE_NOT_WELL_FORMED", vec![]),
            BodyError::NotBase64 => ("invalid", "BAD_REQUEST", vec!["body".to_owned()]),
        };
        OperationOutcome::single(Issue {
            severity: Severity::Error,
            code,
            spine_code,
            diagnostics: self.to_string(),
            expression,
        })
    }
}

impl Answer for RequestError {
    fn status(&self) -> u16 {
        match self {
            RequestError::Body(error) => error.status(),
            RequestError::Hub(error) => error.status(),
        }
    }

    fn outcome(&self) -> OperationOutcome {
        match self {
            RequestError::Body(error) => error.outcome(),
            RequestError::Hub(error) => error.outcome(),
        }
    }
}

/// 202 for a message stored (its delivery is still to come), 200 for one
/// the hub already held.
impl Answer for PublishOutcome {
    fn status(&self) -> u16 {
        match self {
            PublishOutcome::Accepted { .. } => 202,
            PublishOutcome::Duplicate { .. } => 200,
        }
    }

    fn outcome(&self) -> OperationOutcome {
        match self {
            PublishOutcome::Accepted {
                event_id,
                sensitive,
                warnings,
                out_of_order,
                ..
            } => {
                let mut accepted = OperationOutcome::information(
                    "ACCEPTED",
                    format!("event {event_id} accepted for delivery"),
                );
                for warning in warnings {
                    accepted = accepted.with(Issue {
                        severity: Severity::Warning,
                        code: "value",
                        spine_code: "INVALID_VALUE",
                        diagnostics: warning.problem.clone(),
                        expression: vec![warning.expression.clone()],
                    });
                }
                if let Some(flag) = out_of_order {
                    accepted = accepted.with(Issue {
                        severity: Severity::Warning,
                        code: "informational",
                        spine_code: "OUT_OF_ORDER",
                        diagnostics: match flag {
                            OutOfOrder::OlderThanCurrent => "a newer version of the focus resource was accepted before this one: it is delivered flagged out of order (outOfOrder=older-than-current)".into(),
                            OutOfOrder::UnknownResource => "the hub holds no version of the resource this deletes: it is delivered flagged out of order (outOfOrder=unknown-resource)".into(),
                        },
                        expression: Vec::new(),
                    });
                }
                if *sensitive {
                    accepted.with(Issue {
                        severity: Severity::Warning,
                        code: "suppressed",
                        spine_code: "SENSITIVE_PATIENT",
                        diagnostics:
                            "the patient is flagged sensitive: the event is kept and audited \
                                      but delivered to no subscriber"
                                .into(),
                        expression: Vec::new(),
                    })
                } else {
                    accepted
                }
            }
            PublishOutcome::Duplicate { event_id, .. } => OperationOutcome::information(
                "DUPLICATE",
                format!("event {event_id} was already accepted; it is not delivered again"),
            ),
        }
    }
}

/// A relationship event recorded (202), or seen before or older than what
/// is held (200): `app::relationship` refuses a conflict before this.
impl Answer for RelationshipOutcome {
    fn status(&self) -> u16 {
        match self.recorded {
            Recorded::Created | Recorded::Updated => 202,
            Recorded::Duplicate | Recorded::OutOfOrder => 200,
            Recorded::Conflict => 409,
        }
    }

    fn outcome(&self) -> OperationOutcome {
        let event = format!(
            "relationship event {} from {}",
            self.change.bundle_id, self.change.event_source
        );
        match self.recorded {
            Recorded::Created | Recorded::Updated => {
                OperationOutcome::information("ACCEPTED", format!("{event} recorded"))
            }
            Recorded::Duplicate => OperationOutcome::information(
                "DUPLICATE",
                format!("{event} was already received; nothing changed"),
            ),
            Recorded::OutOfOrder => OperationOutcome::information(
                "OUT_OF_ORDER",
                format!(
                    "{event} is no newer (Consent.meta.lastUpdated) than the relationship the \
                     hub holds from this source: recorded as received, and ignored"
                ),
            ),
            Recorded::Conflict => OperationOutcome::single(Issue {
                severity: Severity::Error,
                code: "conflict",
                spine_code: "DUPLICATE_REJECTED",
                diagnostics: format!("{event} was already received with a different body"),
                expression: vec!["Bundle.id".into()],
            }),
        }
    }
}

/// The one mapping from a refusal to its HTTP answer.
pub fn error_response(error: &RequestError, encoding: Encoding) -> ApiGatewayProxyResponse {
    let status = error.status();
    let outcome = error.outcome();
    if status >= 500 {
        // Storage failures carry service detail, never request content.
        error!(status, error = %error, "request failed");
    } else {
        // A refusal's diagnostics may quote the value at fault (a birth date,
        // an NHS number in criteria): the logs get its code and element only.
        let issue = outcome.issues.first();
        warn!(
            status,
            code = issue.map(|issue| issue.spine_code).unwrap_or_default(),
            element = issue
                .and_then(|issue| issue.expression.first())
                .map(String::as_str)
                .unwrap_or_default(),
            "request refused"
        );
    }
    let retry_after = match error {
        RequestError::Hub(HubError::TooManyRequests {
            retry_after_seconds,
            ..
        }) => vec![("retry-after", retry_after_seconds.to_string())],
        _ => Vec::new(),
    };
    fhir_response(status, encoding, outcome.render(encoding), &retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::EventType;
    use crate::lambda::request_error::FHIR_MEDIA_TYPES;

    /// The statuses the API answers with, one case per kind of refusal: the
    /// domain's tests check the kind, these the status it is answered with.
    #[test]
    fn every_refusal_has_its_status() {
        let bodies = [
            (
                BodyError::unsupported_media_type(None, "application/json"),
                415,
            ),
            (BodyError::PayloadTooLarge { size: 2, limit: 1 }, 413),
            (BodyError::NotText, 400),
            (BodyError::NotBase64, 400),
        ];
        for (error, status) in bodies {
            assert_eq!(error.status(), status, "{error:?}");
            let response = error_response(&error.into(), Encoding::Json);
            assert_eq!(response.status_code, i64::from(status));
        }
        let invalid = |kind| {
            HubError::Message(MessageError::Invalid {
                expression: "Bundle".into(),
                problem: "bad".into(),
                kind,
            })
        };
        let cases = [
            (HubError::bad_request("$", "bad"), 400),
            (
                HubError::Message(MessageError::NotABundle {
                    found: "Patient".into(),
                }),
                400,
            ),
            (invalid(ProblemKind::Missing), 422),
            (invalid(ProblemKind::BadValue), 422),
            (invalid(ProblemKind::BadNhsNumber), 422),
            (
                HubError::EventTypeMismatch {
                    expected: EventType::Vaccinations,
                    found: EventType::NewbornHearing,
                },
                422,
            ),
            (HubError::unprocessable("Subscription", "bad"), 422),
            (
                HubError::DuplicateConflict {
                    message_id: "m".into(),
                },
                409,
            ),
            (
                HubError::Conflict {
                    expression: "Subscription.id".into(),
                    problem: "running".into(),
                },
                409,
            ),
            (
                HubError::TooManyRequests {
                    problem: "spent".into(),
                    retry_after_seconds: 1,
                },
                429,
            ),
            (HubError::NotFound("that".into()), 404),
            (HubError::Unauthenticated(AuthError::NoToken), 401),
            (HubError::Unauthenticated(AuthError::Expired), 401),
            (
                HubError::Unauthenticated(AuthError::Unavailable("down".into())),
                503,
            ),
            (
                HubError::Unauthenticated(AuthError::Failed("corrupt".into())),
                500,
            ),
            (HubError::forbidden("no"), 403),
            (HubError::forbidden_element("Subscription", "no"), 403),
            (HubError::Store(StoreError::Unavailable("down".into())), 503),
            (HubError::Store(StoreError::InvalidPageToken), 400),
            (HubError::Store(StoreError::Corrupt("an item".into())), 500),
            (
                HubError::Store(StoreError::Configuration("a setting".into())),
                500,
            ),
            (HubError::Internal("bug".into()), 500),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status, "{error:?}");
            let response = error_response(&error.into(), Encoding::Json);
            assert_eq!(response.status_code, i64::from(status));
        }
        assert_eq!(AuthError::BadSignature.status(), 401);
        assert_eq!(AuthError::Unavailable("down".into()).status(), 503);
    }

    /// A store that cannot be reached during authentication is worth the
    /// client's retry (503); a corrupt stored item or a misconfigured
    /// function is the hub's fault (500), as for any other request. Neither
    /// tells the client more.
    #[test]
    fn a_store_failure_during_authentication_is_answered_by_its_kind() {
        let cases = [
            (
                StoreError::Unavailable("connection refused".into()),
                503,
                "SERVICE_UNAVAILABLE",
            ),
            (
                StoreError::Corrupt("the clients item c".into()),
                500,
                "INTERNAL_SERVER_ERROR",
            ),
            (
                StoreError::Configuration("environment variable CLIENTS_TABLE is not set".into()),
                500,
                "INTERNAL_SERVER_ERROR",
            ),
        ];
        for (error, status, spine_code) in cases {
            let store_status = HubError::Store(error_like(&error)).status();
            let refusal = AuthError::from(error);
            assert_eq!(refusal.status(), status, "{refusal:?}");
            assert_eq!(store_status, status, "as HubError::Store: {refusal:?}");
            let outcome = HubError::Unauthenticated(refusal).outcome();
            assert_eq!(outcome.issues[0].spine_code, spine_code);
            let diagnostics = &outcome.issues[0].diagnostics;
            for detail in ["connection", "clients item", "CLIENTS_TABLE"] {
                assert!(!diagnostics.contains(detail), "{diagnostics}");
            }
        }
    }

    /// A copy of a store error of the same kind (the boxed cause is not
    /// Clone).
    fn error_like(error: &StoreError) -> StoreError {
        match error {
            StoreError::Unavailable(cause) => StoreError::Unavailable(cause.to_string().into()),
            StoreError::Corrupt(detail) => StoreError::Corrupt(detail.clone()),
            StoreError::Configuration(detail) => StoreError::Configuration(detail.clone()),
            StoreError::InvalidPageToken => StoreError::InvalidPageToken,
        }
    }

    /// Diagnostics are read by people: the media type as it was sent, not
    /// Rust's Debug text of an Option.
    #[test]
    fn an_unsupported_media_type_reads_as_sent() {
        let named = BodyError::unsupported_media_type(Some("text/plain"), FHIR_MEDIA_TYPES);
        assert_eq!(
            named.outcome().issues[0].diagnostics,
            "the Content-Type text/plain is not application/fhir+xml or application/fhir+json"
        );
        let absent = BodyError::unsupported_media_type(None, FHIR_MEDIA_TYPES);
        let diagnostics = &absent.outcome().issues[0].diagnostics;
        assert!(diagnostics.contains("no Content-Type"), "{diagnostics}");
        assert!(!diagnostics.contains("None"), "{diagnostics}");
    }

    /// A body marked base64 that is not is the bad request it always was.
    #[test]
    fn a_body_that_is_not_base64_names_the_body() {
        let issue = &BodyError::NotBase64.outcome().issues[0];
        assert_eq!(issue.spine_code, "BAD_REQUEST");
        assert_eq!(issue.code, "invalid");
        assert_eq!(issue.expression, ["body"]);
        assert_eq!(
            issue.diagnostics,
            "body: the body is marked base64 but is not"
        );
    }

    /// A store that cannot be reached is worth a retry; a corrupt item or a
    /// misconfigured function is not. Neither tells the client more than
    /// that.
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

    #[test]
    fn a_publish_is_answered_by_its_outcome() {
        let accepted = PublishOutcome::Accepted {
            event_id: "e".into(),
            nhs_number: None,
            sensitive: false,
            warnings: Vec::new(),
            out_of_order: None,
        };
        let duplicate = PublishOutcome::Duplicate {
            event_id: "e".into(),
            nhs_number: None,
        };
        assert_eq!(accepted.status(), 202);
        assert_eq!(duplicate.status(), 200);
    }
}
