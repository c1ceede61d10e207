//! The one place that maps the domain's results to HTTP: the status of
//! every refusal ([`HubError`], [`AuthError`]) and of every publish outcome
//! ([`PublishOutcome`]), and the answer built from a refusal. The domain
//! types know nothing of HTTP; each gives its FHIR OperationOutcome.

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use tracing::{error, warn};

use crate::auth::AuthError;
use crate::error::HubError;
use crate::events::PublishOutcome;
use crate::message::{Encoding, MessageError};
use crate::ports::StoreError;

use super::http::fhir_response;

/// The HTTP status of a refusal.
pub fn error_status(error: &HubError) -> u16 {
    match error {
        HubError::UnsupportedMediaType { .. } => 415,
        HubError::PayloadTooLarge { .. } => 413,
        HubError::NotText | HubError::BadRequest { .. } => 400,
        HubError::Message(MessageError::Unreadable(_) | MessageError::NotABundle { .. }) => 400,
        HubError::Message(MessageError::Invalid { .. })
        | HubError::EventTypeMismatch { .. }
        | HubError::Unprocessable { .. }
        | HubError::Criteria(_) => 422,
        HubError::DuplicateConflict { .. } | HubError::Conflict { .. } => 409,
        HubError::TooManyRequests { .. } => 429,
        HubError::NotFound(_) => 404,
        HubError::Unauthenticated(error) => auth_status(error),
        HubError::Forbidden { .. } => 403,
        HubError::Store(StoreError::Unavailable(_)) => 503,
        // Not worth the caller's retry: an operator must look.
        HubError::Store(StoreError::Corrupt(_) | StoreError::Configuration(_)) => 500,
        HubError::Store(StoreError::InvalidPageToken) => 400,
        HubError::Internal(_) => 500,
    }
}

/// 401 for every refusal of credentials; 503 when the hub itself failed,
/// since telling a client its credentials are wrong during an outage would
/// send it to fix what is not broken.
pub fn auth_status(error: &AuthError) -> u16 {
    match error {
        AuthError::Unavailable(_) => 503,
        _ => 401,
    }
}

/// 202 for a message stored (its delivery is still to come), 200 for one
/// the hub already held.
pub fn publish_status(outcome: &PublishOutcome) -> u16 {
    match outcome {
        PublishOutcome::Accepted { .. } => 202,
        PublishOutcome::Duplicate { .. } => 200,
    }
}

/// The one mapping from a refusal to its HTTP answer.
pub fn error_response(error: &HubError, encoding: Encoding) -> ApiGatewayProxyResponse {
    let status = error_status(error);
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
        HubError::TooManyRequests {
            retry_after_seconds,
            ..
        } => vec![("retry-after", retry_after_seconds.to_string())],
        _ => Vec::new(),
    };
    fhir_response(status, encoding, outcome.render(encoding), &retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::EventType;
    use crate::message::ProblemKind;

    /// The statuses the API answers with, one case per kind of refusal: the
    /// domain's tests check the kind, these the status it is answered with.
    #[test]
    fn every_refusal_has_its_status() {
        let invalid = |kind| {
            HubError::Message(MessageError::Invalid {
                expression: "Bundle".into(),
                problem: "bad".into(),
                kind,
            })
        };
        let cases = [
            (
                HubError::unsupported_media_type(None, "application/json"),
                415,
            ),
            (HubError::PayloadTooLarge { size: 2, limit: 1 }, 413),
            (HubError::NotText, 400),
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
            assert_eq!(error_status(&error), status, "{error:?}");
            let response = error_response(&error, Encoding::Json);
            assert_eq!(response.status_code, i64::from(status), "{error:?}");
        }
        assert_eq!(auth_status(&AuthError::BadSignature), 401);
        assert_eq!(auth_status(&AuthError::Unavailable("down".into())), 503);
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
        assert_eq!(publish_status(&accepted), 202);
        assert_eq!(publish_status(&duplicate), 200);
    }
}
