//! The local API: what API Gateway (REST API) does for the deployed hub.
//! Each request is matched to a route of template.yaml, checked by the
//! route's Lambda authorizer (authorizer.rs), turned into the REST API proxy
//! event (aws_lambda_events' ApiGatewayProxyRequest), and the function's
//! ApiGatewayProxyResponse is turned back into HTTP. API Gateway's own
//! answers (a refusal, an unknown route, a failed function) are the
//! template's gateway responses (gateway.rs). When the API has an
//! AccessLogSetting, each request's line, in its Format, goes to stdout
//! (deployed, to the log group), refused requests included.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use aws_lambda_events::apigw::{
    ApiGatewayProxyRequest, ApiGatewayProxyRequestContext, ApiGatewayProxyResponse,
};
use aws_lambda_events::encodings::Body as LambdaBody;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use base64::Engine as _;

use crate::authorizer::{self, Decision};
use crate::gateway::{ContextVariables, GatewayResponses, Refusal, render_template};
use crate::runtime::Function;
use crate::template::{ACCOUNT_ID, API_ID, REGION};

/// API Gateway's own limit on a request body.
const API_GATEWAY_BODY_LIMIT: usize = 10 * 1024 * 1024;

pub struct ApiRoute {
    pub method: Method,
    /// The template's path, e.g. /Subscription/{id}.
    pub resource: String,
    pub function: Function,
    /// The Lambda authorizer in front of the route; None when it is open.
    pub authorizer: Option<RouteAuthorizer>,
}

#[derive(Clone)]
pub struct RouteAuthorizer {
    pub name: String,
    /// The header whose value is the token.
    pub header: String,
    pub function: Function,
}

pub struct Api {
    pub routes: Vec<ApiRoute>,
    pub gateway_responses: GatewayResponses,
    pub stage: String,
    /// The API's AccessLogSetting.Format: each request's line is printed in
    /// it, refused ones included.
    pub access_log_format: Option<String>,
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

pub fn router(api: Api) -> Router {
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(API_GATEWAY_BODY_LIMIT))
        .with_state(Arc::new(api))
}

/// What one request knows about itself: the `$context` of gateway
/// responses and the proxy event's requestContext.
struct RequestFacts {
    request_id: String,
    method: Method,
    path: String,
    /// The Host the client used, as API Gateway gives the domain name the
    /// request came in on. The token function does not take its URL (the
    /// client assertions' audience) from it here: the local stack sets
    /// TokenEndpointUrl (main.rs).
    domain_name: String,
    source_ip: String,
    epoch_ms: i64,
}

impl RequestFacts {
    fn variables(&self, stage: &str, resource: Option<&str>) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("requestId".into(), self.request_id.clone()),
            ("extendedRequestId".into(), self.request_id.clone()),
            ("apiId".into(), API_ID.into()),
            ("accountId".into(), ACCOUNT_ID.into()),
            ("stage".into(), stage.into()),
            ("httpMethod".into(), self.method.to_string()),
            ("path".into(), self.path.clone()),
            ("resourcePath".into(), resource.unwrap_or_default().into()),
            ("domainName".into(), self.domain_name.clone()),
            ("identity.sourceIp".into(), self.source_ip.clone()),
            ("requestTime".into(), self.request_time()),
            ("requestTimeEpoch".into(), self.epoch_ms.to_string()),
            ("protocol".into(), "HTTP/1.1".into()),
        ])
    }

    /// `$context.requestTime`: CLF, as API Gateway writes it
    /// (20/Feb/2026:10:15:30 +0000).
    fn request_time(&self) -> String {
        let format = time::macros::format_description!(
            "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
        );
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.epoch_ms) * 1_000_000)
            .ok()
            .and_then(|at| at.format(format).ok())
            .unwrap_or_default()
    }
}

async fn handle(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request<Body>,
) -> Response<Body> {
    let started = Instant::now();
    let facts = RequestFacts {
        request_id: uuid::Uuid::new_v4().to_string(),
        method: request.method().clone(),
        path: request.uri().path().to_owned(),
        domain_name: request
            .headers()
            .get("host")
            .and_then(|host| host.to_str().ok())
            .unwrap_or("127.0.0.1")
            .to_owned(),
        source_ip: peer.ip().to_string(),
        epoch_ms: time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000,
    };
    let response = answer(&api, &facts, request).await;
    if let Some(format) = &api.access_log_format {
        let latency = started.elapsed();
        println!(
            "{}",
            access_log_line(format, &api.stage, &facts, &response, latency)
        );
    }
    response
}

/// The request's access log line: the format rendered with the `$context`
/// the response was made with (gateway.rs says what is rendered and how),
/// and the status, length and latency of the response.
fn access_log_line(
    format: &str,
    stage: &str,
    facts: &RequestFacts,
    response: &Response<Body>,
    latency: std::time::Duration,
) -> String {
    use axum::body::HttpBody as _;
    let mut variables = response
        .extensions()
        .get::<ContextVariables>()
        .map(|context| context.0.clone())
        .unwrap_or_else(|| facts.variables(stage, None));
    variables.insert("status".into(), response.status().as_u16().to_string());
    if let Some(length) = response.body().size_hint().exact() {
        variables.insert("responseLength".into(), length.to_string());
    }
    variables.insert("responseLatency".into(), latency.as_millis().to_string());
    render_template(format, &variables)
}

/// What API Gateway answers the request: a route's function's answer, or
/// its own (a gateway response).
async fn answer(api: &Api, facts: &RequestFacts, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let refuse =
        |refusal: Refusal, resource: Option<&str>, authorizer: &BTreeMap<String, String>| {
            let mut variables = facts.variables(&api.stage, resource);
            for (key, value) in authorizer {
                variables.insert(format!("authorizer.{key}"), value.clone());
            }
            api.gateway_responses
                .render(&refusal, &variables, &parts.headers)
        };
    let none = BTreeMap::new();

    let Some((route, path_parameters)) = api.routes.iter().find_map(|route| {
        route
            .matches(&parts.method, &facts.path)
            .map(|params| (route, params))
    }) else {
        // Deployed, API Gateway answers MISSING_AUTHENTICATION_TOKEN (403)
        // for a route it does not have; a 404 tells a developer more.
        let message = format!("no route for {} {}", parts.method, facts.path);
        return refuse(Refusal::new("RESOURCE_NOT_FOUND", message), None, &none);
    };
    let resource = Some(route.resource.as_str());
    let body = match axum::body::to_bytes(body, API_GATEWAY_BODY_LIMIT).await {
        Ok(body) => body,
        Err(_) => {
            let refusal = Refusal::new("REQUEST_TOO_LARGE", "Request Too Long");
            return refuse(refusal, resource, &none);
        }
    };

    let mut authorizer_fields = BTreeMap::new();
    if let Some(authorizer) = &route.authorizer {
        let token = parts
            .headers
            .get(authorizer.header.as_str())
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .unwrap_or_default();
        if token.trim().is_empty() {
            return refuse(
                Refusal::new("UNAUTHORIZED", "Unauthorized"),
                resource,
                &none,
            );
        }
        let method_arn = authorizer::method_arn(
            REGION,
            ACCOUNT_ID,
            API_ID,
            &api.stage,
            parts.method.as_str(),
            &facts.path,
        );
        let event = authorizer::token_event(&token, &method_arn);
        let started = Instant::now();
        let answer = authorizer
            .function
            .invoke(event.to_string().into_bytes())
            .await;
        let latency = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let decision = authorizer::decide(
            answer.as_ref().map(|bytes| bytes.as_ref()),
            &method_arn,
            latency,
        );
        let message = decision.message();
        match decision {
            Decision::Allow(fields) => authorizer_fields = fields,
            Decision::Deny { context, .. } => {
                let refusal = Refusal::new("ACCESS_DENIED", message.unwrap_or_default());
                return refuse(refusal, resource, &context);
            }
            Decision::Unauthorized => {
                return refuse(
                    Refusal::new("UNAUTHORIZED", "Unauthorized"),
                    resource,
                    &none,
                );
            }
            Decision::Failure(detail) => {
                eprintln!(
                    "{}",
                    failure_log_line(
                        facts,
                        &route.resource,
                        &format!("authorizer {}: {detail}", authorizer.name)
                    )
                );
                let refusal = Refusal {
                    kind: "AUTHORIZER_FAILURE",
                    message: None,
                    status: None,
                };
                return refuse(refusal, resource, &none);
            }
        }
    }

    // The access log's `$context.authorizer.<key>` of an allowed request,
    // whatever its function does: the client is named even when it fails.
    let allowed: BTreeMap<String, String> = authorizer_fields
        .iter()
        .map(|(key, value)| {
            let value = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (key.clone(), value)
        })
        .collect();
    let mut context = facts.variables(&api.stage, resource);
    for (key, value) in &allowed {
        context.insert(format!("authorizer.{key}"), value.clone());
    }
    let event = proxy_event(
        route,
        &api.stage,
        facts,
        &parts.uri,
        &parts.headers,
        path_parameters,
        authorizer_fields,
        body,
    );
    // Deployed, a function that fails or answers something that is not a
    // proxy response gets API Gateway's 502 "Internal server error".
    let internal_error = |detail: String| {
        eprintln!("{}", failure_log_line(facts, &route.resource, &detail));
        let refusal = Refusal {
            kind: "DEFAULT_5XX",
            message: Some("Internal server error".into()),
            status: Some(502),
        };
        refuse(refusal, resource, &allowed)
    };
    let payload = match serde_json::to_vec(&event) {
        Ok(payload) => payload,
        Err(error) => {
            return internal_error(format!("encoding the event: {}", json_problem(&error)));
        }
    };
    match route.function.invoke(payload).await {
        Ok(answer) => match serde_json::from_slice::<ApiGatewayProxyResponse>(&answer) {
            Ok(response) => {
                let mut response = http_response(response);
                response.extensions_mut().insert(ContextVariables(context));
                response
            }
            Err(error) => internal_error(format!(
                "{} answered something that is not a proxy response: {}",
                route.function.name(),
                json_problem(&error)
            )),
        },
        Err(error) => internal_error(error.to_string()),
    }
}

/// The log line of a request the gateway could not answer with its
/// function's response: the request id and the route's template, never the
/// path, whose parameters may be an NHS number, nor the query or the body.
fn failure_log_line(facts: &RequestFacts, resource: &str, detail: &str) -> String {
    format!(
        "[hub] request {} {} {resource}: {detail}",
        facts.request_id, facts.method
    )
}

/// Where a JSON document failed to read or write, without serde's text,
/// which can quote the document's values.
fn json_problem(error: &serde_json::Error) -> String {
    let kind = match error.classify() {
        serde_json::error::Category::Io => "an I/O error",
        serde_json::error::Category::Syntax => "a syntax error",
        serde_json::error::Category::Data => "a value of the wrong type",
        serde_json::error::Category::Eof => "an early end",
    };
    format!("{kind} at line {} column {}", error.line(), error.column())
}

#[allow(clippy::too_many_arguments)]
fn proxy_event(
    route: &ApiRoute,
    stage: &str,
    facts: &RequestFacts,
    uri: &Uri,
    headers: &HeaderMap,
    path_parameters: HashMap<String, String>,
    authorizer: BTreeMap<String, serde_json::Value>,
    body: Bytes,
) -> ApiGatewayProxyRequest {
    let mut headers = headers.clone();
    // API Gateway tells the function which port and address the client
    // came from. X-Forwarded-Proto is left out: locally it would say
    // "http" where API Gateway says "https", and nothing may decide on it
    // (the token endpoint's URL is configured, not read from headers).
    let port = facts
        .domain_name
        .rsplit_once(':')
        .map(|(_, port)| port)
        .unwrap_or("80");
    if let Ok(port) = HeaderValue::from_str(port) {
        headers.insert("x-forwarded-port", port);
    }
    if let Ok(source) = HeaderValue::from_str(&facts.source_ip) {
        headers.insert("x-forwarded-for", source);
    }
    let mut event = ApiGatewayProxyRequest::default();
    event.resource = Some(route.resource.clone());
    event.path = Some(facts.path.clone());
    event.http_method = facts.method.clone();
    event.multi_value_headers = headers.clone();
    event.headers = headers;
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
    context.account_id = Some(ACCOUNT_ID.into());
    context.apiid = Some(API_ID.into());
    context.request_id = Some(facts.request_id.clone());
    context.stage = Some(stage.into());
    context.resource_path = Some(route.resource.clone());
    // The path as the client sent it (as on a custom domain without a base
    // path): with domainName, the URL the client called.
    context.path = Some(facts.path.clone());
    context.domain_name = Some(facts.domain_name.clone());
    context.protocol = Some("HTTP/1.1".into());
    context.http_method = facts.method.clone();
    context.request_time_epoch = facts.epoch_ms;
    context.identity.source_ip = Some(facts.source_ip.clone());
    context.authorizer.fields = authorizer.into_iter().collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> RequestFacts {
        RequestFacts {
            request_id: "req-1".into(),
            method: Method::GET,
            path: "/Subscription".into(),
            domain_name: "127.0.0.1:3000".into(),
            source_ip: "127.0.0.1".into(),
            epoch_ms: 1_771_582_530_000,
        }
    }

    /// A request refused before any authorizer runs is logged with why.
    #[test]
    fn a_refusal_is_logged_with_its_context() {
        let facts = facts();
        let response = GatewayResponses::default().render(
            &Refusal::new("UNAUTHORIZED", "Unauthorized"),
            &facts.variables("dev", Some("/Subscription")),
            &HeaderMap::new(),
        );
        let line = access_log_line(
            r#"{"id":"$context.requestId","ip":"$context.identity.sourceIp","at":"$context.requestTime","route":"$context.httpMethod $context.resourcePath","status":$context.status,"length":$context.responseLength,"error":"$context.error.responseType","nothing":"$context.integrationLatency"}"#,
            "dev",
            &facts,
            &response,
            std::time::Duration::from_millis(7),
        );
        let logged: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            logged,
            serde_json::json!({
                "id": "req-1",
                "ip": "127.0.0.1",
                "at": "20/Feb/2026:10:15:30 +0000",
                "route": "GET /Subscription",
                "status": 401,
                "length": r#"{"message":"Unauthorized"}"#.len(),
                "error": "UNAUTHORIZED",
                "nothing": "",
            })
        );
    }

    /// The project's own format: a request refused for want of an
    /// Authorization header, which the audit trail never sees, gives a JSON
    /// line that says so.
    #[test]
    fn the_project_logs_a_request_without_a_token_as_json() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let template = crate::template::Template::load(&path, &BTreeMap::new()).unwrap();
        let resolved = crate::template::Resolved {
            parameters: template.parameters.clone(),
            ..Default::default()
        };
        let format = resolved
            .resolve(
                template
                    .api
                    .access_log_format
                    .as_ref()
                    .expect("AccessLogSetting"),
            )
            .unwrap();
        let facts = facts();
        let response = GatewayResponses::new(template.api.gateway_responses.clone()).render(
            &Refusal::new("UNAUTHORIZED", "Unauthorized"),
            &facts.variables("dev", Some("/Subscription")),
            &HeaderMap::new(),
        );
        let line = access_log_line(&format, "dev", &facts, &response, Default::default());
        let logged: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        let text = logged.to_string();
        assert!(
            text.contains("req-1") && text.contains("UNAUTHORIZED"),
            "{text}"
        );
        assert!(text.contains("401"), "{text}");
    }

    /// A request whose function failed is logged by its route's template
    /// and request id: its path can hold an NHS number, which belongs only
    /// in the audit trail.
    #[test]
    fn a_failed_request_is_logged_by_route_and_request_id_not_by_path() {
        let mut facts = facts();
        facts.path = "/children/9912003888/events".into();
        let line = failure_log_line(
            &facts,
            "/children/{nhsNumber}/events",
            "runtime error: child-events exited",
        );
        assert!(!line.contains("9912003888"), "{line}");
        assert!(line.contains("req-1"), "{line}");
        assert!(line.contains("GET /children/{nhsNumber}/events"), "{line}");
        // serde's own text quotes the values it could not read.
        let error =
            serde_json::from_str::<ApiGatewayProxyResponse>(r#"{"statusCode": "9912003888"}"#)
                .unwrap_err();
        assert!(error.to_string().contains("9912003888"));
        assert!(!json_problem(&error).contains("9912003888"));
    }

    /// A function's answer is logged with the authorizer's context.
    #[test]
    fn an_answer_is_logged_with_the_authorizers_context() {
        let facts = facts();
        let mut answer = ApiGatewayProxyResponse::default();
        answer.status_code = 200;
        answer.body = Some(LambdaBody::Text("[]".into()));
        let mut response = http_response(answer);
        let mut context = facts.variables("dev", Some("/Subscription"));
        context.insert("authorizer.principalId".into(), "demo-subscriber-1".into());
        response.extensions_mut().insert(ContextVariables(context));
        let line = access_log_line(
            "$context.status $context.responseLength $context.authorizer.principalId $context.responseLatency",
            "dev",
            &facts,
            &response,
            std::time::Duration::from_millis(7),
        );
        assert_eq!(line, "200 2 demo-subscriber-1 7");
    }
}
