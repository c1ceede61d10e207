//! The local API: what API Gateway does for the deployed hub. Each request is
//! matched to a route of template.yaml, turned into the REST API proxy event
//! (aws_lambda_events' ApiGatewayProxyRequest), and the function's
//! ApiGatewayProxyResponse is turned back into HTTP.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::apigw::{
    ApiGatewayProxyRequest, ApiGatewayProxyRequestContext, ApiGatewayProxyResponse,
};
use aws_lambda_events::encodings::Body as LambdaBody;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, Request, Response, StatusCode, Uri};
use base64::Engine as _;
use hub::outcome::{Issue, OperationOutcome, Severity};

use crate::runtime::Function;

/// API Gateway's own limit on a request body.
const API_GATEWAY_BODY_LIMIT: usize = 10 * 1024 * 1024;

pub struct ApiRoute {
    pub method: Method,
    /// The template's path, e.g. /Subscription/{id}.
    pub resource: String,
    pub function: Function,
}

impl ApiRoute {
    fn matches(&self, method: &Method, path: &str) -> Option<HashMap<String, String>> {
        if method != self.method {
            return None;
        }
        let wanted: Vec<&str> = self.resource.trim_matches('/').split('/').collect();
        let given: Vec<&str> = path.trim_matches('/').split('/').collect();
        if wanted.len() != given.len() {
            return None;
        }
        let mut parameters = HashMap::new();
        for (pattern, segment) in wanted.iter().zip(&given) {
            match pattern.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) if !segment.is_empty() => {
                    parameters.insert(name.to_owned(), percent_decode(segment));
                }
                Some(_) => return None,
                None if pattern == segment => {}
                None => return None,
            }
        }
        Some(parameters)
    }
}

/// A path segment decoded; one that does not decode is passed on as it
/// came, for the function to refuse.
fn percent_decode(segment: &str) -> String {
    hub::text::percent_decode(segment).unwrap_or_else(|| segment.to_owned())
}

pub fn router(routes: Vec<ApiRoute>) -> Router {
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(API_GATEWAY_BODY_LIMIT))
        .with_state(Arc::new(routes))
}

fn outcome_response(
    status: StatusCode,
    code: &'static str,
    spine_code: &'static str,
    diagnostics: String,
) -> Response<Body> {
    let outcome = OperationOutcome::single(Issue {
        severity: Severity::Error,
        code,
        spine_code,
        diagnostics,
        expression: Vec::new(),
    });
    Response::builder()
        .status(status)
        .header("content-type", "application/fhir+json; charset=utf-8")
        .body(Body::from(outcome.to_json().to_string()))
        .unwrap_or_default()
}

async fn handle(
    State(routes): State<Arc<Vec<ApiRoute>>>,
    request: Request<Body>,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let Some((route, path_parameters)) = routes.iter().find_map(|route| {
        route
            .matches(&parts.method, &path)
            .map(|params| (route, params))
    }) else {
        return outcome_response(
            StatusCode::NOT_FOUND,
            "not-found",
            "NOT_FOUND",
            format!("no route for {} {path}", parts.method),
        );
    };
    let body = match axum::body::to_bytes(body, API_GATEWAY_BODY_LIMIT).await {
        Ok(body) => body,
        Err(_) => {
            return outcome_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-long",
                "MESSAGE_TOO_LARGE",
                "the request body exceeds API Gateway's 10 MB limit".into(),
            );
        }
    };
    let event = proxy_event(
        route,
        &parts.method,
        &parts.uri,
        &parts.headers,
        path_parameters,
        body,
    );
    let payload = match serde_json::to_vec(&event) {
        Ok(payload) => payload,
        Err(error) => return internal_error(format!("encoding the event: {error}")),
    };
    match route.function.invoke(payload).await {
        Ok(answer) => match serde_json::from_slice::<ApiGatewayProxyResponse>(&answer) {
            Ok(response) => http_response(response),
            Err(error) => internal_error(format!(
                "{} answered something that is not a proxy response: {error}",
                route.function.name()
            )),
        },
        Err(error) => {
            eprintln!("[hub] {} {path}: {error}", parts.method);
            // API Gateway answers 502 when the integration fails.
            outcome_response(
                StatusCode::BAD_GATEWAY,
                "exception",
                "INTERNAL_SERVER_ERROR",
                "the function failed".into(),
            )
        }
    }
}

fn internal_error(detail: String) -> Response<Body> {
    eprintln!("[hub] {detail}");
    outcome_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "exception",
        "INTERNAL_SERVER_ERROR",
        "internal error".into(),
    )
}

fn proxy_event(
    route: &ApiRoute,
    method: &Method,
    uri: &Uri,
    headers: &axum::http::HeaderMap,
    path_parameters: HashMap<String, String>,
    body: Bytes,
) -> ApiGatewayProxyRequest {
    let mut event = ApiGatewayProxyRequest::default();
    event.resource = Some(route.resource.clone());
    event.path = Some(uri.path().to_owned());
    event.http_method = method.clone();
    event.headers = headers.clone();
    event.multi_value_headers = headers.clone();
    if let Some(query) = uri.query() {
        event.query_string_parameters = query.parse().unwrap_or_default();
        event.multi_value_query_string_parameters = query.parse().unwrap_or_default();
    }
    event.path_parameters = path_parameters;
    if !body.is_empty() {
        // API Gateway passes text bodies as they are and binary ones in base64.
        match std::str::from_utf8(&body) {
            Ok(text) => event.body = Some(text.to_owned()),
            Err(_) => {
                event.body = Some(base64::engine::general_purpose::STANDARD.encode(&body));
                event.is_base64_encoded = true;
            }
        }
    }
    let mut context = ApiGatewayProxyRequestContext::default();
    context.request_id = Some(uuid::Uuid::new_v4().to_string());
    context.stage = Some("local".into());
    context.resource_path = Some(route.resource.clone());
    context.path = Some(uri.path().to_owned());
    context.http_method = method.clone();
    event.request_context = context;
    event
}

fn http_response(response: ApiGatewayProxyResponse) -> Response<Body> {
    let status = u16::try_from(response.status_code)
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let body = match response.body {
        Some(LambdaBody::Text(text)) if response.is_base64_encoded => {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap_or_default()
        }
        Some(LambdaBody::Text(text)) => text.into_bytes(),
        Some(LambdaBody::Binary(bytes)) => bytes,
        _ => Vec::new(),
    };
    let mut builder = Response::builder().status(status);
    for (name, value) in response
        .headers
        .iter()
        .chain(response.multi_value_headers.iter())
    {
        builder = builder.header(name, value);
    }
    builder.body(Body::from(body)).unwrap_or_default()
}
