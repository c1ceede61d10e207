//! The Lambda side: start-up (tracing, SDK configuration) and the handlers
//! that translate API Gateway and DynamoDB stream events to and from the
//! domain. Every HTTP answer is built here, errors in one place
//! ([`error_response`]).

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue};
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use time::OffsetDateTime;
use tracing::{error, info, warn};

use std::future::Future;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequest,
    ApiGatewayCustomAuthorizerResponse,
};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};

use crate::app::auth::HubSigner;
use crate::app::dispatch::Dispatcher;
use crate::audit::{self, Action, AuditQuery, AuditRecord};
use crate::auth::{self, AuthError, Caller, Client, HubKeys, Refusal, Role};
use crate::catalogue::EventType;
use crate::dispatch::Dispatched;
use crate::error::HubError;
use crate::events::{self, StoredEvent};
use crate::history;
use crate::message::Encoding;
use crate::metrics;
use crate::nhs_number::NhsNumber;
use crate::outcome::OperationOutcome;
use crate::ports::HubSigningKey;
use crate::ports::ReferenceData;
use crate::ports::{
    AuditLog, ClientStore, DeliveryPublisher, EventStore, QueueProvisioner, RegisterStore,
    ReplayGuard, ReplayStore, SubscriberStore, SubscriptionStore,
};
use crate::replay;
use crate::subscriber::{self, OnboardRequest};
use crate::subscription::{self, Subscription, SubscriptionRequest};
use crate::text;
use std::collections::BTreeSet;

pub use lambda_runtime::{Error, LambdaEvent, run, service_fn};

/// Libraries whose debug logs would carry message bodies, tokens or
/// patient identifiers.
const LIBRARIES_CAPPED_AT_INFO: [&str; 7] = [
    "lambda_runtime",
    "lambda_runtime_api_client",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "hyper",
    "hyper_util",
];

/// Logs go to stdout (CloudWatch); JSON when the function's log format is
/// JSON. Level from AWS_LAMBDA_LOG_LEVEL, else RUST_LOG, else info.
pub fn init_tracing() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let setting = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    let filter = log_filter(setting.as_deref());
    let layer = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT")
        .is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let registry = tracing_subscriber::registry();
    if json {
        let layer = layer.json().with_current_span(false).with_filter(filter);
        registry.with(layer).init();
    } else {
        registry
            .with(layer.with_ansi(false).with_filter(filter))
            .init();
    }
}

/// The log filter of a level setting (`debug`, or per target:
/// `info,hub=debug`); info when unset or unreadable. The libraries of
/// [`LIBRARIES_CAPPED_AT_INFO`] log at most at INFO, and no more than the
/// default level. A plain target filter, not `EnvFilter`: its regular
/// expressions would cost binary size and start-up time for syntax
/// (span and field filters) a Lambda log level never uses.
fn log_filter(setting: Option<&str>) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};

    // Lambda's log levels include FATAL, which tracing calls ERROR.
    let requested = setting
        .map(|setting| setting.to_ascii_lowercase().replace("fatal", "error"))
        .and_then(|setting| setting.parse::<Targets>().ok())
        .unwrap_or_default();
    let default = requested.default_level().unwrap_or(LevelFilter::INFO);
    let requested = requested.with_default(default);
    let capped = default.min(LevelFilter::INFO);
    LIBRARIES_CAPPED_AT_INFO
        .iter()
        .fold(requested, |targets, library| {
            targets.with_target(*library, capped)
        })
}

/// The SDK configuration, loaded once per container. AWS_ENDPOINT_URL, when
/// set, points every client at the local emulator.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

/// How long init waits for a warm-up call (Lambda allows 10 s of init).
const WARM_UP_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The DynamoDB client, its connection opened during init.
///
/// Every function's first invocation calls DynamoDB (at least the audit
/// record): without this its caller would wait for the TCP and TLS
/// handshakes and the credentials. `DescribeEndpoints` reads nothing of the
/// hub's; its answer is ignored.
pub async fn dynamodb_client(config: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    let client = aws_sdk_dynamodb::Client::new(config);
    let once = aws_sdk_dynamodb::config::Builder::default()
        .retry_config(aws_config::retry::RetryConfig::disabled());
    warm_up(
        "dynamodb",
        client
            .describe_endpoints()
            .customize()
            .config_override(once)
            .send(),
    )
    .await;
    client
}

/// The SNS client for these topics, its connection opened during init by
/// reading one topic's attributes (see [`dynamodb_client`]).
pub async fn sns_client(
    config: &aws_config::SdkConfig,
    topics: &std::collections::BTreeMap<EventType, String>,
) -> aws_sdk_sns::Client {
    let client = aws_sdk_sns::Client::new(config);
    if let Some(topic) = topics.values().next() {
        let once = aws_sdk_sns::config::Builder::default()
            .retry_config(aws_config::retry::RetryConfig::disabled());
        warm_up(
            "sns",
            client
                .get_topic_attributes()
                .topic_arn(topic)
                .customize()
                .config_override(once)
                .send(),
        )
        .await;
    }
    client
}

/// One call, not retried and bounded in time, whose only purpose is the
/// connection it leaves in the client's pool. A failure costs nothing but
/// the first invocation connecting itself.
async fn warm_up<T, E>(service: &'static str, call: impl Future<Output = Result<T, E>>) {
    match tokio::time::timeout(WARM_UP_LIMIT, call).await {
        Ok(Ok(_)) => tracing::debug!(service, "connection opened during init"),
        Ok(Err(_)) => info!(
            service,
            "warm-up call failed: the first invocation connects"
        ),
        Err(_) => info!(
            service,
            "warm-up call timed out: the first invocation connects"
        ),
    }
}

pub fn header<'a>(request: &'a ApiGatewayProxyRequest, name: &str) -> Option<&'a str> {
    request
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
}

/// The largest subscription or onboarding request the hub reads; a real one
/// is about 1 KB. Event messages have their own, larger limit.
const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// The body as text, refused (413) above `limit` bytes before it is read.
fn limited_text_body(request: &ApiGatewayProxyRequest, limit: usize) -> Result<String, HubError> {
    let body = body_bytes(request)?;
    if body.len() > limit {
        return Err(HubError::PayloadTooLarge {
            size: body.len(),
            limit,
        });
    }
    String::from_utf8(body).map_err(|_| HubError::NotText)
}

fn body_bytes(request: &ApiGatewayProxyRequest) -> Result<Vec<u8>, HubError> {
    let body = request.body.as_deref().unwrap_or_default();
    if request.is_base64_encoded {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| HubError::bad_request("body", "the body is marked base64 but is not"))
    } else {
        Ok(body.as_bytes().to_vec())
    }
}

/// The encoding of the answer: what Accept asks for, else the encoding of
/// the request, else JSON.
pub fn response_encoding(request: &ApiGatewayProxyRequest) -> Encoding {
    let wants = |text: &str, needles: &[&str]| needles.iter().any(|needle| text.contains(needle));
    let xml = ["fhir+xml", "xml+fhir", "application/xml"];
    let json = ["fhir+json", "json+fhir", "application/json"];
    if let Some(accept) = header(request, "accept").map(str::to_ascii_lowercase) {
        if wants(&accept, &xml) {
            return Encoding::Xml;
        }
        if wants(&accept, &json) {
            return Encoding::Json;
        }
    }
    match header(request, "content-type").and_then(Encoding::from_content_type) {
        Some(Encoding::Xml) => Encoding::Xml,
        _ => Encoding::Json,
    }
}

fn respond(
    status: u16,
    content_type: &str,
    body: String,
    extra_headers: &[(&'static str, String)],
) -> ApiGatewayProxyResponse {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&format!("{content_type}; charset=utf-8")) {
        headers.insert("content-type", value);
    }
    for (name, value) in extra_headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(*name, value);
        }
    }
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(status);
    response.headers = headers;
    response.body = Some(Body::Text(body));
    response
}

pub fn fhir_response(
    status: u16,
    encoding: Encoding,
    body: String,
    extra_headers: &[(&'static str, String)],
) -> ApiGatewayProxyResponse {
    respond(status, encoding.media_type(), body, extra_headers)
}

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

// ---------------------------------------------------------------------------
// Authentication and audit around every API operation
// ---------------------------------------------------------------------------

/// The caller the authorizer established. A request without one reached a
/// function that API Gateway should have protected: refused, never served.
pub fn caller_of(request: &ApiGatewayProxyRequest) -> Result<Caller, HubError> {
    Caller::from_context(&request.request_context.authorizer.fields)
        .ok_or(HubError::Unauthenticated(AuthError::NoToken))
}

/// Runs an API operation for its authenticated caller and records it in the
/// audit trail, refusals included. The operation gets the record to fill in
/// (patient, event, subscription) and returns it with its answer.
///
/// A success whose audit record cannot be written is answered 503: nothing
/// is returned that the trail does not show. A refusal is answered as it
/// is, and the failed write is logged.
///
/// `on_refusal` adds to a refusal's record what the request shows of the
/// patient, so that a refused attempt appears in the patient's trail too.
pub async fn audited<A, R, F, Fut>(
    audit: &A,
    request: &ApiGatewayProxyRequest,
    action: Action,
    encoding: Encoding,
    on_refusal: R,
    operation: F,
) -> ApiGatewayProxyResponse
where
    A: AuditLog,
    R: FnOnce(AuditRecord) -> AuditRecord,
    F: FnOnce(Caller, AuditRecord) -> Fut,
    Fut: Future<Output = Result<(ApiGatewayProxyResponse, AuditRecord), HubError>>,
{
    let caller = caller_of(request);
    let record = AuditRecord::new(caller.as_ref().ok(), action, 0, OffsetDateTime::now_utc());
    let authenticated = caller.is_ok();
    let outcome = match caller {
        // Boxed: the operations' futures nest deeply enough to overflow the
        // compiler's layout queries when inlined into the handler's future.
        Ok(caller) => unwinding(Box::pin(operation(caller, record.clone())))
            .await
            .unwrap_or_else(|| {
                Err(HubError::Internal(format!(
                    "the {action:?} operation panicked"
                )))
            }),
        Err(error) => Err(error),
    };
    let (response, record) = match outcome {
        Ok(answered) => answered,
        Err(error) => {
            let refused = record.detail(refusal_detail(&error));
            // The body of a request from no one is not read at all.
            let refused = if authenticated {
                on_refusal(refused)
            } else {
                refused
            };
            (error_response(&error, encoding), refused)
        }
    };
    finish_audited(audit, record, response, encoding).await
}

/// The future's output, or None when it panicked: an operation's bug still
/// leaves its audit record and a FHIR answer. (Where panics abort instead
/// of unwinding, as in the release profile, nothing is caught; API
/// Gateway's access log still names the client.)
async fn unwinding<F: Future + Unpin>(mut future: F) -> Option<F::Output> {
    std::future::poll_fn(|context| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::pin::Pin::new(&mut future).poll(context)
        })) {
            Ok(std::task::Poll::Ready(output)) => std::task::Poll::Ready(Some(output)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(_) => std::task::Poll::Ready(None),
        }
    })
    .await
}

/// What a refusal's audit record says of it: the authentication failure by
/// name, else the OperationOutcome's code.
fn refusal_detail(error: &HubError) -> String {
    match error {
        HubError::Unauthenticated(refusal) => refusal.name().to_owned(),
        other => other
            .outcome()
            .issues
            .first()
            .map_or_else(String::new, |issue| issue.spine_code.to_owned()),
    }
}

/// Writes the request's audit record, with the status answered, and returns
/// the answer, or a 503 for a success the trail could not record.
async fn finish_audited<A: AuditLog>(
    audit: &A,
    mut record: AuditRecord,
    response: ApiGatewayProxyResponse,
    encoding: Encoding,
) -> ApiGatewayProxyResponse {
    record.status = u16::try_from(response.status_code).unwrap_or_default();
    if let Err(error) = audit.record(&record).await {
        error!(error = %error, audit_id = %record.audit_id, "the audit record could not be written");
        if record.status < 400 {
            return error_response(&HubError::Store(error), encoding);
        }
    }
    response
}

/// The authorizer's policy: the whole API for an authenticated caller (the
/// functions decide what each role may do), nothing otherwise.
fn policy(effect: IamPolicyEffect, method_arn: &str) -> ApiGatewayCustomAuthorizerPolicy {
    // arn:aws:execute-api:region:account:api/stage/METHOD/path: every
    // method and path of the same API and stage.
    let resource = method_arn
        .splitn(3, '/')
        .take(2)
        .collect::<Vec<_>>()
        .join("/");
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".to_owned()];
    statement.effect = effect;
    statement.resource = vec![format!("{resource}/*/*")];
    let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
    policy.version = Some("2012-10-17".to_owned());
    policy.statement = vec![statement];
    policy
}

/// The API Gateway TOKEN authorizer. A valid token of an enabled client is
/// allowed, with the caller in the context; anything else is denied, with
/// the reason in the context for the gateway response (fixed texts only).
/// When the hub cannot decide (a store is down) it fails, which API Gateway
/// answers 503.
pub async fn authorize<K: HubKeys + ?Sized, C: ClientStore, A: AuditLog>(
    keys: &K,
    clients: &C,
    audit: &A,
    request: &ApiGatewayCustomAuthorizerRequest,
) -> Result<ApiGatewayCustomAuthorizerResponse, Error> {
    let method_arn = request.method_arn.as_deref().unwrap_or_default();
    let now = OffsetDateTime::now_utc();
    let authenticated =
        crate::app::auth::authenticate(request.authorization_token.as_deref(), keys, clients, now)
            .await;
    let mut response = ApiGatewayCustomAuthorizerResponse::default();
    match authenticated {
        Ok(caller) => {
            response.principal_id = Some(caller.client_id.clone());
            response.policy_document = policy(IamPolicyEffect::Allow, method_arn);
            response.context = serde_json::to_value(caller.to_context())?;
        }
        Err(Refusal {
            reason: AuthError::Unavailable(detail),
            ..
        }) => {
            error!(error = %detail, "authentication could not complete");
            return Err(detail.into());
        }
        Err(refusal) => {
            warn!(
                reason = refusal.reason.name(),
                "request refused by the authorizer"
            );
            let outcome = refusal.reason.outcome();
            let issue = outcome.issues.first();
            let route = method_arn.splitn(3, '/').nth(2).unwrap_or_default();
            let record = AuditRecord::new(None, Action::Authenticate, refusal.reason.status(), now)
                .detail(format!("{} {route}", refusal.reason.name()));
            audit.record(&naming_client(record, &refusal)).await?;
            response.principal_id = Some(audit::ANONYMOUS.to_owned());
            response.policy_document = policy(IamPolicyEffect::Deny, method_arn);
            response.context = serde_json::json!({
                "code": issue.map_or("security", |issue| issue.code),
                "diagnostics": issue.map_or_else(String::new, |issue| issue.diagnostics.clone()),
            });
        }
    }
    Ok(response)
}

/// A refusal's audit record filed under the client the token or assertion
/// names, so that an operator looking into that client sees the attempts
/// made in its name: marked as a claim unless the refusal came after the
/// signature was checked.
fn naming_client(mut record: AuditRecord, refusal: &Refusal) -> AuditRecord {
    if let Some(client_id) = &refusal.client_id {
        record.client_id = client_id.clone();
        if !refusal.verified {
            record.detail = record
                .detail
                .map(|detail| format!("{detail} (claimed, unverified)"));
        }
    }
    record
}

/// The URL of the token endpoint, which client assertions must name as
/// their audience: configured (a custom domain needs it), else the URL API
/// Gateway received the request on. Nothing here comes from a header the
/// caller could set.
fn token_endpoint_url(request: &ApiGatewayProxyRequest, configured: Option<&str>) -> String {
    if let Some(url) = configured.filter(|url| !url.is_empty()) {
        return url.to_owned();
    }
    let context = &request.request_context;
    format!(
        "https://{}{}",
        context.domain_name.as_deref().unwrap_or_default(),
        context.path.as_deref().unwrap_or("/oauth2/token")
    )
}

/// `POST /oauth2/token`: client credentials with a signed JWT assertion
/// (RFC 7523). Answers `{access_token, expires_in, token_type}`.
pub async fn token<C: ClientStore, R: ReplayGuard, K: HubSigningKey, A: AuditLog>(
    clients: &C,
    replay_guard: &R,
    signer: &HubSigner<K>,
    audit: &A,
    configured_url: Option<&str>,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let now = OffsetDateTime::now_utc();
    let assertion = async {
        let media_type = header(request, "content-type").unwrap_or_default();
        if !media_type
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
        {
            return Err(HubError::unsupported_media_type(
                Some(media_type),
                "application/x-www-form-urlencoded",
            ));
        }
        let body = limited_text_body(request, MAX_REQUEST_BYTES)?;
        let fields = text::form_fields(&body)
            .ok_or_else(|| HubError::bad_request("$", "the form body is not URL-encoded"))?;
        let field = |name: &str| {
            fields
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        if field("grant_type").as_deref() != Some("client_credentials") {
            return Err(HubError::bad_request(
                "grant_type",
                "grant_type must be client_credentials",
            ));
        }
        if field("client_assertion_type").as_deref() != Some(CLIENT_ASSERTION_TYPE) {
            return Err(HubError::bad_request(
                "client_assertion_type",
                format!("client_assertion_type must be {CLIENT_ASSERTION_TYPE}"),
            ));
        }
        field("client_assertion").ok_or_else(|| {
            HubError::bad_request("client_assertion", "client_assertion is required")
        })
    }
    .await;
    let issued = match assertion {
        Ok(assertion) => {
            let url = token_endpoint_url(request, configured_url);
            crate::app::auth::exchange(&assertion, clients, replay_guard, &url, signer, now)
                .await
                .map_err(|refusal| (HubError::from(refusal.reason.clone()), Some(refusal)))
        }
        Err(error) => Err((error, None)),
    };
    let record = AuditRecord::new(None, Action::Token, 0, now);
    let (response, record) = match issued {
        Ok(access) => {
            info!(client_id = %access.client_id, "access token issued");
            let body = serde_json::json!({
                "access_token": access.token,
                // A string, as NHS England's token endpoints answer it.
                "expires_in": access.expires_in.to_string(),
                "token_type": "Bearer",
                "issued_at": (now.unix_timestamp() * 1000).to_string(),
            });
            let response = respond(
                200,
                "application/json",
                body.to_string(),
                &[("cache-control", "no-store".to_owned())],
            );
            let record = AuditRecord {
                client_id: access.client_id,
                ods_code: Some(access.ods_code.as_str().to_owned()),
                ..record
            };
            (response, record)
        }
        Err((error, refusal)) => {
            let record = record.detail(refusal_detail(&error));
            let record = match &refusal {
                Some(refusal) => naming_client(record, refusal),
                None => record,
            };
            (error_response(&error, Encoding::Json), record)
        }
    };
    finish_audited(audit, record, response, Encoding::Json).await
}

pub use crate::auth::CLIENT_ASSERTION_TYPE;

// ---------------------------------------------------------------------------
// Publishing
// ---------------------------------------------------------------------------

/// How long events are kept: EVENT_RETENTION_DAYS, read once per process.
pub static RETENTION: std::sync::LazyLock<events::Retention> =
    std::sync::LazyLock::new(events::Retention::from_env);

/// `POST /events/{event-type}`: validate, authorise, then store once.
pub async fn publish<S: EventStore, A: AuditLog, G: RegisterStore>(
    store: &S,
    audit: &A,
    register: &G,
    event_type: EventType,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let started = std::time::Instant::now();
    let encoding = response_encoding(request);
    let on_refusal = |record: AuditRecord| {
        let identified = body_bytes(request)
            .ok()
            .and_then(|body| events::identify(event_type, header(request, "content-type"), &body));
        match identified {
            Some((event_key, nhs_number)) => record.event(event_key).patient(nhs_number),
            None => record,
        }
    };
    let response = audited(audit, request, Action::Publish, encoding, on_refusal, |caller, record| async move {
        let body = body_bytes(request)?;
        let outcome = crate::app::events::publish(
            store,
            register,
            audit,
            &caller,
            event_type,
            header(request, "content-type"),
            &body,
            OffsetDateTime::now_utc(),
            *RETENTION,
        )
        .await?;
        let kind = match &outcome {
            events::PublishOutcome::Accepted { .. } => "accepted",
            events::PublishOutcome::Duplicate { .. } => "duplicate",
        };
        info!(status = outcome.status(), event_type = %event_type, event_id = outcome.event_id(), outcome = kind, "publish");
        let record = record
            .event(events::event_key(event_type, outcome.event_id()))
            .patient(outcome.nhs_number());
        let response = fhir_response(
            outcome.status(),
            encoding,
            outcome.outcome().render(encoding),
            &[],
        );
        Ok((response, record))
    })
    .await;
    publish_metrics(event_type, response.status_code, started.elapsed()).emit();
    response
}

/// What one publish counts for: its outcome, told by the status the
/// publisher was answered (202 stored, 200 duplicate, 4xx refused, 5xx
/// failed), and how long it took.
fn publish_metrics(
    event_type: EventType,
    status: i64,
    elapsed: std::time::Duration,
) -> metrics::MetricRecord {
    let outcome = match status {
        202 => metrics::PUBLISH_ACCEPTED,
        200 => metrics::PUBLISH_DUPLICATE,
        400..=499 => metrics::PUBLISH_REJECTED,
        _ => metrics::PUBLISH_FAILED,
    };
    metrics::MetricRecord::for_event_type(event_type)
        .count(outcome, 1)
        .milliseconds(metrics::PUBLISH_LATENCY, elapsed)
}

/// The main of every publish function: one per event type.
pub async fn run_publish(event_type: EventType) -> Result<(), Error> {
    init_tracing();
    let config = sdk_config().await;
    let dynamodb = dynamodb_client(&config).await;
    let store = crate::aws::DynamoEventStore::from_env(dynamodb.clone())?;
    let register = crate::aws::DynamoRegisterStore::from_env(dynamodb.clone())?;
    let audit = crate::aws::DynamoAuditLog::from_env(dynamodb)?;
    let (store, audit, register) = (&store, &audit, &register);
    run(service_fn(
        move |event: LambdaEvent<ApiGatewayProxyRequest>| async move {
            Ok::<_, Error>(publish(store, audit, register, event_type, &event.payload).await)
        },
    ))
    .await
}

/// `GET /events/{id}` (MessageHeader.id; `?eventType=` picks one type when
/// an id was published under several): the stored message exactly as
/// published, to the publishing organisation, the subscribers it was
/// delivered to, and operators. Anyone else is answered 404.
pub async fn read_event<E, S, G, A>(
    store: &E,
    subscriptions: &S,
    register: &G,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse
where
    E: EventStore,
    S: SubscriptionStore,
    G: RegisterStore,
    A: AuditLog,
{
    let encoding = response_encoding(request);
    // A refused read of a stored event names the event and its patient, so
    // that probing for a child's events shows in the child's trail.
    let found_event: std::sync::OnceLock<(String, Option<NhsNumber>)> = std::sync::OnceLock::new();
    let stored = &found_event;
    let on_refusal = |record: AuditRecord| {
        let record = refused_asking_for(request, "event", record);
        match stored.get() {
            Some((event_key, patient)) => record.event(event_key.clone()).patient(*patient),
            None => record,
        }
    };
    audited(
        audit,
        request,
        Action::EventRead,
        encoding,
        on_refusal,
        |caller, record| async move {
            let id = path_message_id(request)?;
            let event_types = match request.query_string_parameters.first("eventType") {
                None => EventType::ALL.to_vec(),
                Some(code) => vec![code.parse::<EventType>().map_err(|_| {
                    HubError::bad_request(
                        "eventType",
                        format!("'{code}' is not an event type of the hub"),
                    )
                })?],
            };
            let keys: Vec<String> = event_types
                .iter()
                .map(|&event_type| events::event_key(event_type, &id))
                .collect();
            let now = OffsetDateTime::now_utc();
            let mut found = store.get_many(&keys).await?;
            found.sort_by(|a, b| a.event_key.cmp(&b.event_key));
            if let Some(event) = found.first() {
                let _ = stored.set((event.event_key.clone(), event.nhs_number));
            }
            let mut readable = Vec::new();
            for event in found {
                if event.is_live(now)
                    && may_read_event(subscriptions, register, audit, &caller, &event, now).await?
                {
                    readable.push(event);
                }
            }
            // Refused as not found: whether an event exists for a patient is
            // itself patient information.
            let Some(event) = readable.first() else {
                return Err(HubError::NotFound(format!("event {id}")));
            };
            if readable.len() > 1 {
                let choices: Vec<&str> = readable
                    .iter()
                    .map(|event| event.event_type.code())
                    .collect();
                let outcome = OperationOutcome::information(
                    "MULTIPLE_MATCHES",
                    format!(
                        "event {id} was published as {}: name one with ?eventType=",
                        choices.join(" and ")
                    ),
                );
                let response = fhir_response(300, encoding, outcome.render(encoding), &[]);
                return Ok((
                    response,
                    record.detail(format!("event {id}: several types")),
                ));
            }
            let record = record
                .event(event.event_key.clone())
                .patient(event.nhs_number);
            let response = respond(200, &event.content_type, event.payload.clone(), &[]);
            Ok((response, record))
        },
    )
    .await
}

/// Operators; the publishing organisation's own systems; a subscriber the
/// event was delivered to (its delivery's audit record says so), or that
/// may see it in the child's history (an active explicit subscription for
/// the child and the event type, the child not sensitive).
async fn may_read_event<S, G, A>(
    subscriptions: &S,
    register: &G,
    audit: &A,
    caller: &Caller,
    event: &StoredEvent,
    now: OffsetDateTime,
) -> Result<bool, HubError>
where
    S: SubscriptionStore,
    G: RegisterStore,
    A: AuditLog,
{
    if caller.has_role(Role::Operator) {
        return Ok(true);
    }
    if caller.may_publish_type(event.event_type).is_ok()
        && caller
            .may_publish_for(event.responsible_ods.as_deref())
            .is_ok()
    {
        return Ok(true);
    }
    let Some(subscriber_id) = caller
        .subscriber_id
        .as_deref()
        .filter(|_| caller.has_role(Role::Subscriber))
    else {
        return Ok(false);
    };
    if audit
        .get(&audit::delivery_id(&event.event_key, subscriber_id))
        .await?
        .is_some()
    {
        return Ok(true);
    }
    let Some(nhs_number) = event.nhs_number.filter(|_| !event.sensitive) else {
        return Ok(false);
    };
    if !subscribed_types(subscriptions, caller, nhs_number, &[event.event_type], now)
        .await?
        .contains(&event.event_type)
    {
        return Ok(false);
    }
    Ok(!register
        .get(nhs_number)
        .await?
        .is_some_and(|record| record.value.is_sensitive()))
}

// ---------------------------------------------------------------------------
// Subscribers and clients (operators)
// ---------------------------------------------------------------------------

/// `POST /subscribers`: onboard a subscriber for a registered client.
pub async fn onboard<S: SubscriberStore, Q: QueueProvisioner, C: ClientStore, A: AuditLog>(
    store: &S,
    provisioner: &Q,
    clients: &C,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    audited(
        audit,
        request,
        Action::Onboard,
        Encoding::Json,
        std::convert::identity,
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let body = json_body(request)?;
            let onboard_request = OnboardRequest::parse(&body)?;
            let subscriber = crate::app::subscriber::onboard(
                store,
                provisioner,
                clients,
                onboard_request,
                OffsetDateTime::now_utc(),
            )
            .await?;
            info!(subscriber_id = %subscriber.id, "subscriber onboarded");
            let response = respond(
                201,
                "application/json",
                subscriber.to_json().to_string(),
                &[("location", format!("/subscribers/{}", subscriber.id))],
            );
            let record = record.subscriber(subscriber.id.clone()).detail(format!(
                "client {}",
                subscriber.client_id.unwrap_or_default()
            ));
            Ok((response, record))
        },
    )
    .await
}

/// A JSON request body (operators' APIs), within the request size limit.
fn json_body(request: &ApiGatewayProxyRequest) -> Result<String, HubError> {
    let media_type = header(request, "content-type").unwrap_or_default();
    if !media_type
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(HubError::unsupported_media_type(
            Some(media_type),
            "application/json",
        ));
    }
    limited_text_body(request, MAX_REQUEST_BYTES)
}

/// `DELETE /subscribers/{id}`: offboard a subscriber (operators).
pub async fn offboard<
    R: SubscriberStore,
    S: SubscriptionStore,
    Q: QueueProvisioner,
    A: AuditLog,
>(
    subscribers: &R,
    subscriptions: &S,
    provisioner: &Q,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    audited(
        audit,
        request,
        Action::Offboard,
        Encoding::Json,
        std::convert::identity,
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let id = path_id(request, "subscriber")?;
            let subscriber = crate::app::subscriber::offboard(
                subscribers,
                subscriptions,
                provisioner,
                audit,
                &caller,
                id,
                OffsetDateTime::now_utc(),
            )
            .await?;
            info!(subscriber_id = %subscriber.id, "subscriber offboarded");
            let mut body = subscriber.to_json();
            body["queueKeptForDays"] = serde_json::json!(subscriber::QUEUE_GRACE_DAYS);
            let response = respond(200, "application/json", body.to_string(), &[]);
            Ok((response, record.subscriber(subscriber.id)))
        },
    )
    .await
}

/// `PATCH /subscribers/{id}`: change the event types a subscriber may
/// receive or the AWS principal that reads its queue (operators). Its
/// queues, and what they hold, stay.
pub async fn change_subscriber<
    R: SubscriberStore,
    S: SubscriptionStore,
    Q: QueueProvisioner,
    A: AuditLog,
>(
    subscribers: &R,
    subscriptions: &S,
    provisioner: &Q,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    audited(
        audit,
        request,
        Action::SubscriberChange,
        Encoding::Json,
        std::convert::identity,
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let id = path_id(request, "subscriber")?;
            let change = subscriber::ChangeRequest::parse(&json_body(request)?)?;
            let detail = format!(
                "eventTypes {}, awsPrincipal {}",
                if change.event_types.is_some() {
                    "changed"
                } else {
                    "kept"
                },
                if change.aws_principal.is_some() {
                    "changed"
                } else {
                    "kept"
                },
            );
            let subscriber =
                crate::app::subscriber::change(subscribers, subscriptions, provisioner, id, change)
                    .await?;
            info!(subscriber_id = %subscriber.id, "subscriber changed");
            let response = respond(
                200,
                "application/json",
                subscriber.to_json().to_string(),
                &[],
            );
            Ok((response, record.subscriber(subscriber.id).detail(detail)))
        },
    )
    .await
}

/// `GET /subscribers/{id}/status`: messages sent per event type, the last
/// delivery, and what waits in the queue and its DLQ (operators, or the
/// subscriber itself; anyone else is told it does not exist).
pub async fn subscriber_status<
    S: SubscriberStore,
    D: crate::ports::DeliveryStats,
    Q: crate::ports::QueueMonitor,
    A: AuditLog,
>(
    subscribers: &S,
    stats: &D,
    queues: &Q,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    audited(
        audit,
        request,
        Action::SubscriberStatus,
        Encoding::Json,
        |record| refused_subscriber(request, record),
        |caller, record| async move {
            let id = path_id(request, "subscriber")?;
            let status =
                crate::app::status::status(subscribers, stats, queues, &caller, id).await?;
            info!(subscriber_id = %id, "delivery status read");
            let response = respond(200, "application/json", status.to_json().to_string(), &[]);
            Ok((response, record.subscriber(id)))
        },
    )
    .await
}

/// `POST /subscribers/{id}/$redrive`: moves the messages of the
/// subscriber's DLQ back to its queue, at most [`crate::status::REDRIVE_LIMITS`]
/// a request; the answer says how many moved and whether some remain
/// (operators, or the subscriber itself).
pub async fn redrive<S: SubscriberStore, Q: crate::ports::QueueMonitor, A: AuditLog>(
    subscribers: &S,
    queues: &Q,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    audited(
        audit,
        request,
        Action::Redrive,
        Encoding::Json,
        |record| refused_subscriber(request, record),
        |caller, record| async move {
            let id = path_id(request, "subscriber")?;
            let redriven = crate::app::status::redrive(
                subscribers,
                queues,
                &caller,
                id,
                crate::status::REDRIVE_LIMITS,
            )
            .await?;
            info!(subscriber_id = %id, moved = redriven.moved, remaining = redriven.remaining, "DLQ redriven");
            let response = respond(
                200,
                "application/json",
                redriven.to_json(id).to_string(),
                &[],
            );
            let record = record
                .subscriber(id)
                .detail(format!("moved {}", redriven.moved));
            Ok((response, record))
        },
    )
    .await
}

/// `POST /clients`: register a client system, or replace its registration
/// (operators). 201 when new, 200 when replaced.
pub async fn register_client<C: ClientStore, A: AuditLog>(
    clients: &C,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    audited(
        audit,
        request,
        Action::ClientRegister,
        Encoding::Json,
        std::convert::identity,
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let body = json_body(request)?;
            let client = Client::from_registration(&body)?;
            let created = clients.register(&client).await?;
            info!(client_id = %client.client_id, created, "client registered");
            let registered = clients.get(&client.client_id).await?.unwrap_or(client);
            let response = respond(
                if created { 201 } else { 200 },
                "application/json",
                registered.to_json().to_string(),
                &[("location", format!("/clients/{}", registered.client_id))],
            );
            Ok((
                response,
                record.detail(format!("client {}", registered.client_id)),
            ))
        },
    )
    .await
}

/// `DELETE /clients/{id}`: disable a client (operators). Its tokens stop
/// working at once; its registration stays for the audit trail.
pub async fn disable_client<C: ClientStore, A: AuditLog>(
    clients: &C,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    audited(
        audit,
        request,
        Action::ClientDisable,
        Encoding::Json,
        std::convert::identity,
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let id = request
                .path_parameters
                .get("id")
                .map(String::as_str)
                .filter(|id| !id.is_empty() && id.len() <= auth::MAX_CLIENT_ID_LENGTH)
                .ok_or_else(|| HubError::NotFound("that client".into()))?;
            if !clients.disable(id).await? {
                return Err(HubError::NotFound(format!("client {id}")));
            }
            info!(client_id = %id, "client disabled");
            let mut response = ApiGatewayProxyResponse::default();
            response.status_code = 204;
            Ok((response, record.detail(format!("client {id}"))))
        },
    )
    .await
}

/// `GET /audit?patient=<NHS number>` or `GET /audit?client=<client id>`,
/// with `_count` and `_page`: the trail, newest first (operators).
pub async fn read_audit<A: AuditLog>(
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    audited(
        audit,
        request,
        Action::AuditRead,
        Encoding::Json,
        std::convert::identity,
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let parameters = &request.query_string_parameters;
            let query = match (parameters.first("patient"), parameters.first("client")) {
                (Some(patient), None) => {
                    AuditQuery::Patient(NhsNumber::parse(patient).map_err(|_| {
                        HubError::bad_request("patient", "patient is a valid 10-digit NHS number")
                    })?)
                }
                (None, Some(client))
                    if !client.is_empty() && client.len() <= auth::MAX_CLIENT_ID_LENGTH =>
                {
                    AuditQuery::Client(client.to_owned())
                }
                _ => {
                    return Err(HubError::bad_request(
                        "patient",
                        "name exactly one of patient (an NHS number) or client (a client id)",
                    ));
                }
            };
            let page_size = page_size(request)?;
            let page = audit
                .query(&query, page_size, parameters.first("_page"))
                .await?;
            let record = match &query {
                AuditQuery::Patient(nhs_number) => record.patient(Some(*nhs_number)),
                AuditQuery::Client(client_id) => record.detail(format!("client {client_id}")),
            };
            let body = serde_json::json!({
                "entries": page.items,
                "next": page.next,
            });
            Ok((
                respond(200, "application/json", body.to_string(), &[]),
                record,
            ))
        },
    )
    .await
}

/// `_count`: from 1 to the largest page, the default when absent.
fn page_size(request: &ApiGatewayProxyRequest) -> Result<usize, HubError> {
    match request.query_string_parameters.first("_count") {
        None => Ok(subscription::DEFAULT_PAGE_SIZE),
        Some(count) => count
            .parse::<usize>()
            .ok()
            .filter(|count| (1..=subscription::MAX_PAGE_SIZE).contains(count))
            .ok_or_else(|| {
                HubError::bad_request(
                    "_count",
                    format!(
                        "_count is a whole number from 1 to {}",
                        subscription::MAX_PAGE_SIZE
                    ),
                )
            }),
    }
}

// ---------------------------------------------------------------------------
// Subscriptions (subscribers)
// ---------------------------------------------------------------------------

/// `POST /Subscription`: create a subscription for the calling subscriber.
pub async fn create_subscription<S: SubscriptionStore, R: SubscriberStore, A: AuditLog>(
    subscriptions: &S,
    subscribers: &R,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let encoding = response_encoding(request);
    let on_refusal = |record: AuditRecord| {
        let patient = header(request, "content-type")
            .and_then(Encoding::from_content_type)
            .zip(limited_text_body(request, MAX_REQUEST_BYTES).ok())
            .and_then(|(encoding, body)| {
                SubscriptionRequest::read(&body, encoding, OffsetDateTime::now_utc()).ok()
            })
            .and_then(|request| request.criteria.target.patient());
        record.patient(patient)
    };
    audited(audit, request, Action::SubscriptionCreate, encoding, on_refusal, |caller, record| async move {
        let subscriber_id = caller.subscriber()?.to_owned();
        let now = OffsetDateTime::now_utc();
        let content_type = header(request, "content-type");
        let request_encoding = content_type
            .and_then(Encoding::from_content_type)
            .ok_or_else(|| {
                HubError::unsupported_media_type(content_type, crate::error::FHIR_MEDIA_TYPES)
            })?;
        let body = limited_text_body(request, MAX_REQUEST_BYTES)?;
        let subscription_request = SubscriptionRequest::read(&body, request_encoding, now)?;
        if subscription_request.subscriber_id != subscriber_id {
            return Err(HubError::forbidden_element(
                "Subscription.channel.endpoint",
                "a client may create subscriptions only for its own subscriber",
            ));
        }
        caller.may_subscribe(&subscription_request.criteria.target)?;
        let patient = subscription_request.criteria.target.patient();
        let subscription =
            crate::app::subscription::create_subscription(subscriptions, subscribers, subscription_request, now)
                .await?;
        info!(subscription_id = %subscription.id, subscriber_id = %subscription.subscriber_id, "subscription created");
        let response = fhir_response(
            201,
            encoding,
            subscription.render(encoding, now),
            &[("location", format!("/Subscription/{}", subscription.id))],
        );
        let record = record
            .subscription(subscription.id.clone())
            .subscriber(subscriber_id)
            .patient(patient);
        Ok((response, record))
    })
    .await
}

/// The `{id}` of the path. Ids the hub issues are UUIDs: anything else
/// cannot exist, and must not reach DynamoDB, which refuses keys over 2 KB
/// with an error rather than a miss.
fn path_id<'a>(request: &'a ApiGatewayProxyRequest, what: &str) -> Result<&'a str, HubError> {
    request
        .path_parameters
        .get("id")
        .map(String::as_str)
        // The hub's ids are lower-case hyphenated: another spelling of one
        // would read as a miss anyway.
        .filter(|id| {
            uuid::Uuid::try_parse(id).is_ok_and(|uuid| uuid.hyphenated().to_string() == *id)
        })
        .ok_or_else(|| HubError::NotFound(format!("that {what}")))
}

/// The `{id}` of the path as the caller sent it, for a refusal's audit
/// record: probing for ids shows in the trail. Capped: the hub's ids are 36
/// characters, and the record is not the place for a caller's essay.
fn asked_id(request: &ApiGatewayProxyRequest) -> Option<String> {
    const KEPT: usize = 64;
    request
        .path_parameters
        .get("id")
        .map(|id| id.chars().take(KEPT).collect())
}

/// A refused request's record, naming the subscription it asked for.
fn refused_subscription(request: &ApiGatewayProxyRequest, record: AuditRecord) -> AuditRecord {
    match asked_id(request) {
        Some(id) => record.subscription(id),
        None => record,
    }
}

/// A refused request's record, naming the subscriber it asked about.
fn refused_subscriber(request: &ApiGatewayProxyRequest, record: AuditRecord) -> AuditRecord {
    match asked_id(request) {
        Some(id) => record.subscriber(id),
        None => record,
    }
}

/// A refused request's record, its detail (the refusal's code) followed by
/// what it asked for: `<what> <id>`, for targets the record has no field
/// of (an event id of no known type, a replay).
fn refused_asking_for(
    request: &ApiGatewayProxyRequest,
    what: &str,
    record: AuditRecord,
) -> AuditRecord {
    let Some(id) = asked_id(request) else {
        return record;
    };
    let detail = match &record.detail {
        Some(code) => format!("{code} {what} {id}"),
        None => format!("{what} {id}"),
    };
    record.detail(detail)
}

/// The subscription of the path, if the caller's subscriber owns it.
/// Another subscriber's is refused as not found: its existence is not the
/// caller's business.
async fn own_subscription<S: SubscriptionStore>(
    subscriptions: &S,
    caller: &Caller,
    request: &ApiGatewayProxyRequest,
) -> Result<Subscription, HubError> {
    let subscriber_id = caller.subscriber()?;
    let id = path_id(request, "Subscription")?;
    subscriptions
        .get(id)
        .await?
        .filter(|subscription| subscription.subscriber_id == subscriber_id)
        .ok_or_else(|| HubError::NotFound(format!("Subscription/{id}")))
}

/// `GET /Subscription/{id}`.
pub async fn read_subscription<S: SubscriptionStore, A: AuditLog>(
    subscriptions: &S,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let encoding = response_encoding(request);
    audited(
        audit,
        request,
        Action::SubscriptionRead,
        encoding,
        |record| refused_subscription(request, record),
        |caller, record| async move {
            let subscription = own_subscription(subscriptions, &caller, request).await?;
            let response = fhir_response(
                200,
                encoding,
                subscription.render(encoding, OffsetDateTime::now_utc()),
                &[],
            );
            let record = record
                .subscription(subscription.id.clone())
                .subscriber(subscription.subscriber_id.clone())
                .patient(subscription.criteria.target.patient());
            Ok((response, record))
        },
    )
    .await
}

/// `GET /Subscription?_count=..&_page=..`: the caller's subscriptions, a
/// searchset Bundle.
pub async fn list_subscriptions<S: SubscriptionStore, A: AuditLog>(
    subscriptions: &S,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let encoding = response_encoding(request);
    audited(
        audit,
        request,
        Action::SubscriptionList,
        encoding,
        std::convert::identity,
        |caller, record| async move {
            let subscriber_id = caller.subscriber()?.to_owned();
            let page_size = page_size(request)?;
            let token = request.query_string_parameters.first("_page");
            let page = subscriptions
                .list_by_subscriber(&subscriber_id, page_size, token)
                .await?;
            let bundle =
                subscription::searchset(&page, page_size, encoding, OffsetDateTime::now_utc());
            Ok((
                fhir_response(200, encoding, bundle, &[]),
                record.subscriber(subscriber_id),
            ))
        },
    )
    .await
}

/// `DELETE /Subscription/{id}`: 204, and no delivery for it afterwards.
pub async fn delete_subscription<S: SubscriptionStore, A: AuditLog>(
    subscriptions: &S,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let encoding = response_encoding(request);
    let on_refusal = |record| refused_subscription(request, record);
    audited(audit, request, Action::SubscriptionDelete, encoding, on_refusal, |caller, record| async move {
        let subscription = own_subscription(subscriptions, &caller, request).await?;
        subscriptions.delete(&subscription).await?;
        let deleted = subscription;
        info!(subscription_id = %deleted.id, subscriber_id = %deleted.subscriber_id, "subscription deleted");
        let mut response = ApiGatewayProxyResponse::default();
        response.status_code = 204;
        let record = record
            .subscription(deleted.id.clone())
            .subscriber(deleted.subscriber_id.clone())
            .patient(deleted.criteria.target.patient());
        Ok((response, record))
    })
    .await
}

// ---------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------

/// The events table's stream: dispatch every newly stored event. On the
/// first failure the rest of the batch is left for the retry, which restarts
/// at the failed record (the stream keeps order per shard).
pub async fn dispatch_batch<S, P, A, G, R, D, E>(
    dispatcher: &Dispatcher<'_, S, P, A, G, R, D, E>,
    batch: StreamEvent,
) -> DynamoDbEventResponse
where
    S: SubscriptionStore,
    P: DeliveryPublisher,
    A: AuditLog,
    G: RegisterStore,
    R: ReferenceData,
    D: crate::ports::DeliveryStats,
    E: EventStore,
{
    let mut response = DynamoDbEventResponse::default();
    for record in batch.records {
        // Events are written once: only an INSERT is a new event.
        if record.event_name != "INSERT" {
            continue;
        }
        let sequence_number = record.change.sequence_number.clone();
        let dispatched = match serde_dynamo::from_item::<_, StoredEvent>(record.change.new_image) {
            Ok(event) => dispatcher
                .dispatch(&event, OffsetDateTime::now_utc())
                .await
                .map(|outcome| (event, outcome))
                .map_err(|error| error.to_string()),
            Err(error) => Err(format!("the stream record is not a stored event: {error}")),
        };
        match dispatched {
            Ok((event, Dispatched::Delivered { recipients })) => {
                info!(event_id = %event.event_id, event_type = %event.event_type, recipients, "dispatched");
                dispatch_metrics(&event, OffsetDateTime::now_utc())
                    .count(
                        metrics::DELIVERIES,
                        u64::try_from(recipients).unwrap_or(u64::MAX),
                    )
                    .emit();
            }
            Ok((event, Dispatched::Withheld)) => {
                info!(event_id = %event.event_id, event_type = %event.event_type, "withheld: sensitive patient");
                dispatch_metrics(&event, OffsetDateTime::now_utc())
                    .count(metrics::DISPATCH_WITHHELD, 1)
                    .emit();
            }
            Err(error) => {
                error!(sequence_number = ?sequence_number, error = %error, "dispatch failed; the batch resumes here");
                metrics::MetricRecord::new()
                    .count(metrics::DISPATCH_FAILURES, 1)
                    .emit();
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = sequence_number;
                response.batch_item_failures.push(failure);
                break;
            }
        }
    }
    response
}

/// The metrics of one dispatched event, with the delay since its acceptance
/// (none when the stored time cannot be read: the delivery still counts).
fn dispatch_metrics(event: &StoredEvent, now: OffsetDateTime) -> metrics::MetricRecord {
    let record = metrics::MetricRecord::for_event_type(event.event_type);
    record_dispatch_delay(record, &event.received_at, now)
}

fn record_dispatch_delay(
    record: metrics::MetricRecord,
    received_at: &str,
    now: OffsetDateTime,
) -> metrics::MetricRecord {
    let delay = crate::fhir_time::parse_instant(received_at)
        .ok()
        .and_then(|received| std::time::Duration::try_from(now - received).ok());
    match delay {
        Some(delay) => record.milliseconds(metrics::DISPATCH_DELAY, delay),
        None => record,
    }
}

// ---------------------------------------------------------------------------
// The child register (operators)
// ---------------------------------------------------------------------------

/// The NHS number of the path, for `GET /children/{nhsNumber}`.
fn path_nhs_number(request: &ApiGatewayProxyRequest) -> Result<NhsNumber, HubError> {
    request
        .path_parameters
        .get("nhsNumber")
        .and_then(|number| NhsNumber::parse(number).ok())
        .ok_or_else(|| {
            HubError::bad_request("nhsNumber", "nhsNumber is a valid 10-digit NHS number")
        })
}

/// `GET /children/{nhsNumber}`: what the register holds about a child, each
/// fact with when and by which event it was stated (operators). A child the
/// register has learnt nothing about is not found.
pub async fn read_child<R: crate::ports::RegisterStore, A: AuditLog>(
    register: &R,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    // A refused or unanswered look-up is in the child's trail too.
    let on_refusal = |record: AuditRecord| record.patient(path_nhs_number(request).ok());
    audited(
        audit,
        request,
        Action::RegisterRead,
        Encoding::Json,
        on_refusal,
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let nhs_number = path_nhs_number(request)?;
            let child = register.get(nhs_number).await?.ok_or_else(|| {
                HubError::NotFound("a register record for that NHS number".into())
            })?;
            let body = serde_json::to_string(&child.value).map_err(|error| {
                HubError::Store(crate::ports::StoreError::Unavailable(format!(
                    "rendering a register record: {error}"
                )))
            })?;
            Ok((
                respond(200, "application/json", body, &[]),
                record.patient(Some(nhs_number)),
            ))
        },
    )
    .await
}

/// The `{id}` of an `/events/{id}` path: a MessageHeader.id, lower case.
/// Anything else is "not found", as an id that was never published.
fn path_message_id(request: &ApiGatewayProxyRequest) -> Result<String, HubError> {
    request
        .path_parameters
        .get("id")
        .map(|id| id.to_ascii_lowercase())
        .filter(|id| events::is_message_id(id))
        .ok_or_else(|| HubError::NotFound("that event".into()))
}

/// `POST /events/{id}/$release?eventType=CODE` (operators): releases an
/// event withheld while its child was flagged sensitive, once the flag is
/// cleared (events::release). The release is in the child's audit trail.
pub async fn release_event<E: EventStore, G: RegisterStore, A: AuditLog>(
    store: &E,
    register: &G,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let encoding = response_encoding(request);
    audited(
        audit,
        request,
        Action::Release,
        encoding,
        std::convert::identity,
        |caller, record| async move {
            caller.require(Role::Operator)?;
            let id = path_message_id(request)?;
            let code = request
                .query_string_parameters
                .first("eventType")
                .ok_or_else(|| {
                    HubError::bad_request(
                        "eventType",
                        "name the event type of the event to release",
                    )
                })?;
            let event_type = code.parse::<EventType>().map_err(|_| {
                HubError::bad_request(
                    "eventType",
                    format!("'{code}' is not an event type of the hub"),
                )
            })?;
            let event_key = events::event_key(event_type, &id);
            let record = record.event(event_key.clone());
            let child =
                crate::app::events::release(store, register, &event_key, OffsetDateTime::now_utc())
                    .await?;
            info!(event_id = %id, event_type = %event_type, "released");
            let outcome = OperationOutcome::information(
                "RELEASED",
                format!("event {id} is released: readable and replayable by those it concerns"),
            );
            Ok((
                fhir_response(200, encoding, outcome.render(encoding), &[]),
                record.patient(child),
            ))
        },
    )
    .await
}

/// `GET /children/{nhsNumber}/events`: the child's event history as a FHIR
/// searchset Bundle (history::HistoryQuery gives the parameters), for
/// operators, and for subscribers with an active explicit subscription for
/// the child, who see the event types those subscriptions name and nothing
/// of a child the hub knows to be sensitive.
pub async fn read_child_events<E, S, G, A>(
    events: &E,
    subscriptions: &S,
    register: &G,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse
where
    E: EventStore,
    S: SubscriptionStore,
    G: RegisterStore,
    A: AuditLog,
{
    let encoding = response_encoding(request);
    let on_refusal = |record: AuditRecord| record.patient(path_nhs_number(request).ok());
    audited(
        audit,
        request,
        Action::HistoryRead,
        encoding,
        on_refusal,
        |caller, record| async move {
            let nhs_number = path_nhs_number(request)?;
            let parameters = &request.query_string_parameters;
            let query = history::HistoryQuery::parse(
                parameters.first("versions"),
                repeated(request, "eventType").into_iter(),
                repeated(request, "date").into_iter(),
                parameters.first("_count"),
                parameters.first("_page"),
            )?;
            let now = OffsetDateTime::now_utc();
            let (visible_types, include_sensitive) = if caller.has_role(Role::Operator) {
                (None, true)
            } else {
                let types =
                    subscribed_types(subscriptions, &caller, nhs_number, EventType::ALL, now)
                        .await?;
                if types.is_empty() {
                    return Err(HubError::forbidden_element(
                        "nhsNumber",
                        "only operators, and subscribers with an active explicit subscription \
                         for this child, may read the child's events",
                    ));
                }
                // What is withheld from delivery is withheld from history,
                // and answered before any event is read: the empty history
                // of a child the hub holds nothing of, in no more time.
                let sensitive = register
                    .get(nhs_number)
                    .await?
                    .is_some_and(|record| record.value.is_sensitive());
                if sensitive {
                    let body =
                        history::searchset(nhs_number, &query, &[], 0, *RETENTION, now, encoding);
                    let record = record
                        .patient(Some(nhs_number))
                        .detail("withheld: the patient is flagged sensitive");
                    return Ok((fhir_response(200, encoding, body, &[]), record));
                }
                (Some(types), false)
            };
            let summaries = events.patient_events(nhs_number).await?;
            let selected = history::select(
                &summaries,
                &query,
                visible_types.as_ref(),
                include_sensitive,
                now,
            );
            let keys: Vec<String> = selected
                .iter()
                .skip(query.offset)
                .take(query.count)
                .map(|summary| summary.event_key.clone())
                .collect();
            let mut page = events.get_many(&keys).await?;
            page.sort_by_key(|event| {
                keys.iter()
                    .position(|key| *key == event.event_key)
                    .unwrap_or(usize::MAX)
            });
            let body = history::searchset(
                nhs_number,
                &query,
                &page,
                selected.len(),
                *RETENTION,
                now,
                encoding,
            );
            Ok((
                fhir_response(200, encoding, body, &[]),
                record.patient(Some(nhs_number)),
            ))
        },
    )
    .await
}

/// Every value of a query parameter that may be repeated: API Gateway keeps
/// only the last one in `queryStringParameters`.
fn repeated<'a>(request: &'a ApiGatewayProxyRequest, name: &str) -> Vec<&'a str> {
    request
        .multi_value_query_string_parameters
        .all(name)
        .or_else(|| request.query_string_parameters.all(name))
        .unwrap_or_default()
}

/// Which of these event types the caller's active explicit subscriptions
/// for the child name: one keyed read per event type, together.
async fn subscribed_types<S: SubscriptionStore>(
    subscriptions: &S,
    caller: &Caller,
    nhs_number: NhsNumber,
    event_types: &[EventType],
    now: OffsetDateTime,
) -> Result<BTreeSet<EventType>, HubError> {
    let subscriber_id = caller.subscriber()?;
    let found = futures_util::future::try_join_all(
        event_types
            .iter()
            .map(|&event_type| subscriptions.explicit_candidates(nhs_number, event_type)),
    )
    .await?;
    Ok(event_types
        .iter()
        .zip(found)
        .filter(|(event_type, candidates)| {
            candidates.iter().any(|subscription| {
                subscription.subscriber_id == subscriber_id
                    && subscription.is_active(now)
                    && subscription.criteria.target == crate::criteria::Target::Explicit(nhs_number)
                    && subscription.criteria.events.contains(event_type)
            })
        })
        .map(|(event_type, _)| *event_type)
        .collect())
}

// ---------------------------------------------------------------------------
// Replays
// ---------------------------------------------------------------------------

/// `since` and `until` of a replay request: query parameters, or a FHIR
/// Parameters body (valueInstant, valueDateTime or valueDate).
fn replay_window(
    request: &ApiGatewayProxyRequest,
) -> Result<(Option<String>, Option<String>), HubError> {
    let parameters = &request.query_string_parameters;
    let from_query = (
        parameters.first("since").map(str::to_owned),
        parameters.first("until").map(str::to_owned),
    );
    let body = body_bytes(request)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(from_query);
    }
    let media_type = header(request, "content-type").unwrap_or_default();
    let json = media_type.to_ascii_lowercase();
    if !(json.starts_with("application/fhir+json") || json.starts_with("application/json")) {
        return Err(HubError::unsupported_media_type(
            Some(media_type),
            "application/fhir+json (a Parameters resource)",
        ));
    }
    let body = limited_text_body(request, MAX_REQUEST_BYTES)?;
    if from_query != (None, None) {
        return Err(HubError::bad_request(
            "Parameters",
            "give since and until either as query parameters or in a Parameters body, not both",
        ));
    }
    let bad = |problem: &str| HubError::bad_request("Parameters", problem.to_owned());
    let value: serde_json::Value = crate::fhir::from_json_unique(&body).map_err(|error| {
        HubError::bad_request(
            "Parameters",
            format!("the body is not a FHIR Parameters resource in JSON: {error}"),
        )
    })?;
    if value["resourceType"] != "Parameters" {
        return Err(bad("the body is a FHIR Parameters resource in JSON"));
    }
    let named = |name: &str| -> Option<String> {
        value["parameter"].as_array()?.iter().find_map(|parameter| {
            (parameter["name"] == name).then(|| {
                ["valueInstant", "valueDateTime", "valueDate"]
                    .iter()
                    .find_map(|field| parameter[*field].as_str().map(str::to_owned))
            })?
        })
    };
    Ok((named("since"), named("until")))
}

/// `POST /Subscription/{id}/$replay`: starts re-delivering the window's
/// events the subscription matches now; answers at once with the replay.
pub async fn start_replay<S: SubscriptionStore, J: ReplayStore, A: AuditLog>(
    subscriptions: &S,
    jobs: &J,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let encoding = response_encoding(request);
    audited(
        audit,
        request,
        Action::Replay,
        encoding,
        |record| refused_subscription(request, record),
        |caller, record| async move {
            let subscription = own_subscription(subscriptions, &caller, request).await?;
            let now = OffsetDateTime::now_utc();
            if !subscription.is_active(now) {
                return Err(HubError::unprocessable(
                    "Subscription.status",
                    "the subscription is off: it matches nothing to replay",
                ));
            }
            let (since, until) = replay_window(request)?;
            let window =
                replay::ReplayRequest::parse(since.as_deref(), until.as_deref(), *RETENTION, now)?;
            let job = window.job(&subscription, now);
            match jobs.start(&job, &replay::Admission::of(&job, now)).await? {
                Ok(()) => {}
                Err(replay::NotStarted::AlreadyRunning) => {
                    return Err(HubError::Conflict {
                        expression: "Subscription.id".into(),
                        problem: "a replay of this subscription is running: wait for it to \
                                  complete (GET its Content-Location) before starting another"
                            .into(),
                    });
                }
                Err(replay::NotStarted::QuotaSpent) => {
                    return Err(HubError::TooManyRequests {
                        problem: format!(
                            "the subscriber has started its {} replays of the day (UTC): \
                             try again after midnight UTC",
                            replay::REPLAYS_PER_SUBSCRIBER_PER_DAY
                        ),
                        retry_after_seconds: replay::quota_renews_in(now),
                    });
                }
            }
            info!(replay_id = %job.replay_id, subscription_id = %subscription.id, "replay started");
            let record = record
                .subscription(subscription.id.clone())
                .subscriber(subscription.subscriber_id.clone())
                .detail(format!("replay {}", job.replay_id));
            let response = respond(
                202,
                "application/json",
                job.to_json().to_string(),
                &[("content-location", format!("/replays/{}", job.replay_id))],
            );
            Ok((response, record))
        },
    )
    .await
}

/// `GET /replays/{id}`: a replay's progress, to its subscriber and operators.
pub async fn read_replay<J: ReplayStore, A: AuditLog>(
    jobs: &J,
    audit: &A,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    // A refused read of an existing replay names its subscription and
    // subscriber too.
    let found_job: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    let stored = &found_job;
    let on_refusal = |record: AuditRecord| {
        let record = refused_asking_for(request, "replay", record);
        match stored.get() {
            Some((subscription_id, subscriber_id)) => record
                .subscription(subscription_id.clone())
                .subscriber(subscriber_id.clone()),
            None => record,
        }
    };
    audited(
        audit,
        request,
        Action::ReplayRead,
        Encoding::Json,
        on_refusal,
        |caller, record| async move {
            let id = path_id(request, "replay")?;
            let job = jobs.get(id).await?;
            if let Some(job) = &job {
                let _ = stored.set((job.subscription_id.clone(), job.subscriber_id.clone()));
            }
            let job = job
                .filter(|job| replay::may_see(&caller, job))
                .ok_or_else(|| HubError::NotFound(format!("replay {id}")))?;
            let record = record
                .subscription(job.subscription_id.clone())
                .subscriber(job.subscriber_id.clone());
            Ok((
                respond(200, "application/json", job.to_json().to_string(), &[]),
                record,
            ))
        },
    )
    .await
}

/// The replay worker: each change to a running replay's record (its
/// creation, then each save) prompts one bounded step of it. A step that
/// fails is reported, so that the stream retries from it; the job resumes
/// from its last save.
pub async fn replay_batch<E, S, P, A, G, R, J, D>(
    replayer: &crate::app::replay::Replayer<'_, E, S, P, A, G, R, J, D>,
    batch: StreamEvent,
) -> DynamoDbEventResponse
where
    E: EventStore,
    S: SubscriptionStore,
    P: DeliveryPublisher,
    A: AuditLog,
    G: RegisterStore,
    R: ReferenceData,
    J: ReplayStore,
    D: crate::ports::DeliveryStats,
{
    let mut response = DynamoDbEventResponse::default();
    let mut stepped = BTreeSet::new();
    for record in batch.records {
        let sequence_number = record.change.sequence_number.clone();
        let Ok(job) = serde_dynamo::from_item::<_, replay::ReplayJob>(record.change.new_image)
        else {
            // A removal (TTL), or a subscription's hold or a subscriber's
            // count (replay::Admission), not a job: nothing to advance.
            continue;
        };
        if job.status != replay::ReplayStatus::Running {
            // A finished job's hold on its subscription is released by the
            // step that finished it; again here in case that step failed
            // after its save.
            if let Err(error) = replayer.jobs.release(&job).await {
                error!(replay_id = %job.replay_id, error = %error, "a finished replay's subscription could not be released");
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = sequence_number;
                response.batch_item_failures.push(failure);
                break;
            }
            continue;
        }
        // The records of one batch are of the same few jobs: one step each.
        if !stepped.insert(job.replay_id.clone()) {
            continue;
        }
        match replayer
            .step(&job.replay_id, OffsetDateTime::now_utc())
            .await
        {
            Ok(Some(job)) => {
                info!(replay_id = %job.replay_id, scanned = job.scanned, delivered = job.delivered, status = ?job.status, "replay step");
            }
            Ok(None) => {}
            Err(error) => {
                error!(replay_id = %job.replay_id, error = %error, "replay step failed; it resumes from its last save");
                metrics::MetricRecord::new()
                    .count(metrics::REPLAY_FAILURES, 1)
                    .emit();
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = sequence_number;
                response.batch_item_failures.push(failure);
                break;
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_counts_for_the_outcome_its_status_tells() {
        for (status, metric) in [
            (202, metrics::PUBLISH_ACCEPTED),
            (200, metrics::PUBLISH_DUPLICATE),
            (400, metrics::PUBLISH_REJECTED),
            (413, metrics::PUBLISH_REJECTED),
            (500, metrics::PUBLISH_FAILED),
            (503, metrics::PUBLISH_FAILED),
        ] {
            let emf = publish_metrics(
                EventType::NewbornHearing,
                status,
                std::time::Duration::from_millis(7),
            )
            .to_emf("ns", 0);
            assert_eq!(emf[metric], 1.0, "status {status}: {emf}");
            assert_eq!(emf[metrics::PUBLISH_LATENCY], 7.0, "status {status}");
            assert_eq!(emf[metrics::EVENT_TYPE_DIMENSION], "newborn-hearing-1");
            let counted = [
                metrics::PUBLISH_ACCEPTED,
                metrics::PUBLISH_DUPLICATE,
                metrics::PUBLISH_REJECTED,
                metrics::PUBLISH_FAILED,
            ]
            .iter()
            .filter(|name| emf.get(**name).is_some())
            .count();
            assert_eq!(counted, 1, "status {status}: one outcome only");
        }
    }

    #[test]
    fn dispatch_delay_runs_from_acceptance() {
        let received = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let record = metrics::MetricRecord::for_event_type(EventType::Vaccinations);
        let emf = record_dispatch_delay(
            record.clone(),
            &crate::fhir_time::format_instant(received),
            received + time::Duration::milliseconds(1_500),
        )
        .to_emf("ns", 0);
        assert_eq!(emf[metrics::DISPATCH_DELAY], 1500.0);
        // An unreadable time leaves the delay out, not the record.
        let emf =
            record_dispatch_delay(record.count(metrics::DELIVERIES, 2), "yesterday", received)
                .to_emf("ns", 0);
        assert!(emf.get(metrics::DISPATCH_DELAY).is_none());
        assert_eq!(emf[metrics::DELIVERIES], 2.0);
    }

    #[test]
    fn the_log_level_comes_from_the_setting_and_libraries_stay_at_info() {
        use tracing::Level;
        let hub = "hub::dispatch";
        let sdk = "aws_smithy_runtime::client::orchestrator";
        for (setting, hub_level, sdk_level) in [
            (None, Level::INFO, Level::INFO),
            (Some("DEBUG"), Level::DEBUG, Level::INFO),
            (Some("trace"), Level::TRACE, Level::INFO),
            (Some("WARN"), Level::WARN, Level::WARN),
            (Some("FATAL"), Level::ERROR, Level::ERROR),
            (Some("info,hub=debug"), Level::DEBUG, Level::INFO),
            (Some("aws_smithy_runtime=trace"), Level::INFO, Level::INFO),
            (Some("not a level!"), Level::INFO, Level::INFO),
        ] {
            let filter = log_filter(setting);
            for (target, wanted) in [(hub, hub_level), (sdk, sdk_level)] {
                assert!(
                    filter.would_enable(target, &wanted),
                    "{setting:?}: {target} at {wanted}"
                );
                let finer = match wanted {
                    Level::ERROR => Level::WARN,
                    Level::WARN => Level::INFO,
                    Level::INFO => Level::DEBUG,
                    _ => Level::TRACE,
                };
                if wanted != Level::TRACE {
                    assert!(
                        !filter.would_enable(target, &finer),
                        "{setting:?}: {target} not at {finer}"
                    );
                }
            }
        }
    }
}
