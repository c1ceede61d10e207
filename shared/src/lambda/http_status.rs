//! The one place that turns a refusal into its HTTP answer.

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use tracing::{error, warn};

use crate::error::HubError;
use crate::message::Encoding;

use super::http::fhir_response;

/// The one mapping from a refusal to its HTTP answer.
pub fn error_response(error: &HubError, encoding: Encoding) -> ApiGatewayProxyResponse {
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
        HubError::TooManyRequests {
            retry_after_seconds,
            ..
        } => vec![("retry-after", retry_after_seconds.to_string())],
        _ => Vec::new(),
    };
    fhir_response(status, encoding, outcome.render(encoding), &retry_after)
}
