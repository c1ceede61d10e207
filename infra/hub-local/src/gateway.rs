//! API Gateway's own answers (gateway responses): a refusal by the
//! authorizer, an unknown route, a body over the limit, a failed function.
//! Each is read from the template's `GatewayResponses` when it names the
//! type, else from its DEFAULT_4XX / DEFAULT_5XX, else API Gateway's
//! built-in `{"message": ...}`.
//!
//! The body template is rendered by substituting `$context.<name>` (also
//! written `${context.<name>}`, `$!context.<name>` or `$!{context.<name>}`)
//! with the values API Gateway would give it; an unknown variable renders
//! empty. That is all: this is not Velocity, so `#if`, `#set`, `$input` and
//! `$util` pass through unrendered. Values are inserted as they are, as API
//! Gateway does; only `$context.error.messageString` is JSON-quoted.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use crate::template::{GatewayResponseSpec, HeaderSource};

/// API Gateway's default status of each gateway response type.
const DEFAULT_STATUS: &[(&str, u16)] = &[
    ("ACCESS_DENIED", 403),
    ("API_CONFIGURATION_ERROR", 500),
    ("AUTHORIZER_CONFIGURATION_ERROR", 500),
    ("AUTHORIZER_FAILURE", 500),
    ("BAD_REQUEST_BODY", 400),
    ("BAD_REQUEST_PARAMETERS", 400),
    ("EXPIRED_TOKEN", 403),
    ("INTEGRATION_FAILURE", 504),
    ("INTEGRATION_TIMEOUT", 504),
    ("INVALID_API_KEY", 403),
    ("INVALID_SIGNATURE", 403),
    ("MISSING_AUTHENTICATION_TOKEN", 403),
    ("QUOTA_EXCEEDED", 429),
    ("REQUEST_TOO_LARGE", 413),
    ("RESOURCE_NOT_FOUND", 404),
    ("THROTTLED", 429),
    ("UNAUTHORIZED", 401),
    ("UNSUPPORTED_MEDIA_TYPE", 415),
    ("WAF_FILTERED", 403),
    ("DEFAULT_4XX", 400),
    ("DEFAULT_5XX", 500),
];

/// API Gateway's body when no template applies.
const BUILT_IN_TEMPLATE: &str = r#"{"message":$context.error.messageString}"#;

/// The `$context` variables a response was made with, kept on it (as an
/// extension) for its access log line.
#[derive(Debug, Clone, Default)]
pub struct ContextVariables(pub BTreeMap<String, String>);

/// Why API Gateway answered itself.
pub struct Refusal {
    /// The gateway response type, e.g. UNAUTHORIZED.
    pub kind: &'static str,
    /// `$context.error.message`; None renders `messageString` as null, as
    /// API Gateway does for an authorizer failure.
    pub message: Option<String>,
    /// The status when the type is not one of API Gateway's (the local
    /// stack's own 502 for a function error is DEFAULT_5XX with 502).
    pub status: Option<u16>,
}

impl Refusal {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            kind,
            message: Some(message.into()),
            status: None,
        }
    }
}

#[derive(Debug, Default)]
pub struct GatewayResponses {
    configured: BTreeMap<String, GatewayResponseSpec>,
}

impl GatewayResponses {
    pub fn new(configured: BTreeMap<String, GatewayResponseSpec>) -> Self {
        GatewayResponses { configured }
    }

    /// The response for a refusal, with `context` holding the request's
    /// `$context` variables (requestId, authorizer.<key>, ...).
    pub fn render(
        &self,
        refusal: &Refusal,
        context: &BTreeMap<String, String>,
        request_headers: &HeaderMap,
    ) -> Response<Body> {
        let default_status = refusal
            .status
            .or_else(|| {
                DEFAULT_STATUS
                    .iter()
                    .find(|(kind, _)| *kind == refusal.kind)
                    .map(|(_, status)| *status)
            })
            .unwrap_or(500);
        let family = if default_status >= 500 {
            "DEFAULT_5XX"
        } else {
            "DEFAULT_4XX"
        };
        // A type's own entry sets its status; one inherited from DEFAULT_4XX
        // or DEFAULT_5XX keeps the type's status, so that an unknown route
        // stays a 404 whatever status the family default names.
        let (spec, status) = match self.configured.get(refusal.kind) {
            Some(spec) => (Some(spec), spec.status.unwrap_or(default_status)),
            None => (self.configured.get(family), default_status),
        };
        let mut variables = context.clone();
        variables.insert("error.responseType".into(), refusal.kind.into());
        variables.insert(
            "error.message".into(),
            refusal.message.clone().unwrap_or_default(),
        );
        variables.insert(
            "error.messageString".into(),
            match &refusal.message {
                Some(message) => serde_json::Value::from(message.as_str()).to_string(),
                None => "null".into(),
            },
        );
        let template = spec
            .and_then(|spec| {
                spec.templates
                    .get("application/json")
                    .or_else(|| spec.templates.values().next())
            })
            .map(String::as_str)
            .unwrap_or(BUILT_IN_TEMPLATE);
        let body = render_template(template, &variables);

        let mut response = Response::new(Body::from(body));
        response
            .extensions_mut()
            .insert(ContextVariables(variables));
        *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        let headers = response.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        for (name, source) in spec.map(|s| s.headers.as_slice()).unwrap_or_default() {
            let value = match source {
                HeaderSource::Static(text) => HeaderValue::from_str(text).ok(),
                HeaderSource::RequestHeader(header) => request_headers.get(header).cloned(),
            };
            if let (Ok(name), Some(value)) = (HeaderName::try_from(name.as_str()), value) {
                headers.insert(name, value);
            }
        }
        if let Some(id) = context
            .get("requestId")
            .and_then(|id| HeaderValue::from_str(id).ok())
        {
            headers.insert("x-amzn-requestid", id);
        }
        response
    }
}

/// Substitutes the `$context` variables of a body template.
pub fn render_template(template: &str, variables: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let quiet = after.strip_prefix('!');
        let after_quiet = quiet.unwrap_or(after);
        let (braced, reference) = match after_quiet.strip_prefix('{') {
            Some(inner) => (true, inner),
            None => (false, after_quiet),
        };
        let Some(name_start) = reference.strip_prefix("context.") else {
            // Not a $context reference: kept as written.
            out.push('$');
            rest = after;
            continue;
        };
        let length = name_start
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(name_start.len());
        // A sentence may end right after a variable: the full stop is text.
        let name = name_start[..length].trim_end_matches('.');
        let mut consumed = name.len();
        if braced {
            if !name_start[consumed..].starts_with('}') {
                out.push('$');
                rest = after;
                continue;
            }
            consumed += 1;
        }
        out.push_str(variables.get(name).map(String::as_str).unwrap_or_default());
        let prefix = (after.len() - after_quiet.len()) + usize::from(braced) + "context.".len();
        rest = &after[prefix + consumed..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(status: Option<u16>, template: &str) -> GatewayResponseSpec {
        GatewayResponseSpec {
            status,
            headers: vec![(
                "Content-Type".into(),
                HeaderSource::Static("application/fhir+json".into()),
            )],
            templates: BTreeMap::from([("application/json".into(), template.into())]),
        }
    }

    fn variables() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("requestId".into(), "req-1".into()),
            ("authorizer.code".into(), "security".into()),
            (
                "authorizer.diagnostics".into(),
                "the token has expired".into(),
            ),
        ])
    }

    async fn body(response: Response<Body>) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn every_spelling_of_a_context_variable_is_substituted() {
        let rendered = render_template(
            r#"{"a":"$context.authorizer.code","b":"${context.requestId}","c":"$!context.authorizer.nothing","d":"$!{context.authorizer.diagnostics}.","e":"$context.authorizer.diagnostics.","f":"$input.body","g":"${context.requestId"}"#,
            &variables(),
        );
        assert_eq!(
            rendered,
            r#"{"a":"security","b":"req-1","c":"","d":"the token has expired.","e":"the token has expired.","f":"$input.body","g":"${context.requestId"}"#
        );
    }

    #[tokio::test]
    async fn a_configured_type_sets_status_headers_and_body() {
        let responses = GatewayResponses::new(BTreeMap::from([(
            "ACCESS_DENIED".into(),
            spec(
                Some(401),
                r#"{"code":"$context.authorizer.code","message":$context.error.messageString}"#,
            ),
        )]));
        let response = responses.render(
            &Refusal::new("ACCESS_DENIED", "User is not \"authorized\""),
            &variables(),
            &HeaderMap::new(),
        );
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["content-type"], "application/fhir+json");
        assert_eq!(response.headers()["x-amzn-requestid"], "req-1");
        let body: serde_json::Value = serde_json::from_str(&body(response).await).unwrap();
        assert_eq!(body["code"], "security");
        assert_eq!(body["message"], "User is not \"authorized\"");
    }

    #[tokio::test]
    async fn an_unconfigured_type_inherits_its_familys_template_but_keeps_its_status() {
        let responses = GatewayResponses::new(BTreeMap::from([
            (
                "DEFAULT_4XX".into(),
                spec(Some(400), r#"{"m":$context.error.messageString}"#),
            ),
            (
                "DEFAULT_5XX".into(),
                spec(None, r#"{"five":$context.error.messageString}"#),
            ),
        ]));
        let not_found = responses.render(
            &Refusal::new("RESOURCE_NOT_FOUND", "no route"),
            &variables(),
            &HeaderMap::new(),
        );
        assert_eq!(not_found.status(), 404);
        assert_eq!(not_found.headers()["content-type"], "application/fhir+json");
        assert_eq!(body(not_found).await, r#"{"m":"no route"}"#);

        let failure = responses.render(
            &Refusal {
                kind: "AUTHORIZER_FAILURE",
                message: None,
                status: None,
            },
            &variables(),
            &HeaderMap::new(),
        );
        assert_eq!(failure.status(), 500);
        assert_eq!(body(failure).await, r#"{"five":null}"#);
    }

    #[tokio::test]
    async fn without_configuration_the_built_in_body_is_used() {
        let response = GatewayResponses::default().render(
            &Refusal::new("UNAUTHORIZED", "Unauthorized"),
            &BTreeMap::new(),
            &HeaderMap::new(),
        );
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(body(response).await, r#"{"message":"Unauthorized"}"#);
    }
}
