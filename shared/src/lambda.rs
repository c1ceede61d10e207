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

use crate::catalogue::EventType;
use crate::dispatch::{self, Dispatched};
use crate::error::HubError;
use crate::events::{self, StoredEvent};
use crate::message::Encoding;
use crate::ports::{
    DeliveryPublisher, EventStore, QueueProvisioner, SubscriberStore, SubscriptionStore,
};
use crate::subscriber::{self, OnboardRequest};
use crate::subscription::{self, SubscriptionRequest};

pub use lambda_runtime::{Error, LambdaEvent, run, service_fn};

/// Logs go to stdout (CloudWatch); JSON when the function's log format is
/// JSON. Level from AWS_LAMBDA_LOG_LEVEL, else RUST_LOG, else info.
pub fn init_tracing() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into())
        .to_ascii_lowercase();
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .without_time();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT")
        .is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    if json {
        builder.json().with_current_span(false).init();
    } else {
        builder.with_ansi(false).init();
    }
}

/// The SDK configuration, loaded once per container. AWS_ENDPOINT_URL, when
/// set, points every client at the local emulator.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
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
    fhir_response(status, encoding, outcome.render(encoding), &[])
}

/// `POST /events/{event-type}`: validate, then store once.
pub async fn publish<S: EventStore>(
    store: &S,
    event_type: EventType,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let encoding = response_encoding(request);
    let published = match body_bytes(request) {
        Ok(body) => {
            events::publish(
                store,
                event_type,
                header(request, "content-type"),
                &body,
                OffsetDateTime::now_utc(),
            )
            .await
        }
        Err(error) => Err(error),
    };
    match published {
        Ok(outcome) => {
            let (kind, event_id) = outcome_kind(&outcome);
            info!(status = outcome.status(), event_type = %event_type, event_id, outcome = kind, "publish");
            fhir_response(
                outcome.status(),
                encoding,
                outcome.outcome().render(encoding),
                &[],
            )
        }
        Err(error) => error_response(&error, encoding),
    }
}

fn outcome_kind(outcome: &events::PublishOutcome) -> (&'static str, &str) {
    match outcome {
        events::PublishOutcome::Accepted { event_id, .. } => ("accepted", event_id),
        events::PublishOutcome::Duplicate { event_id } => ("duplicate", event_id),
    }
}

/// The main of every publish function: one per event type.
pub async fn run_publish(event_type: EventType) -> Result<(), Error> {
    init_tracing();
    let config = sdk_config().await;
    let table = crate::aws::required_env("EVENTS_TABLE")?;
    let store = crate::aws::DynamoEventStore::new(aws_sdk_dynamodb::Client::new(&config), table);
    let store = &store;
    run(service_fn(
        move |event: LambdaEvent<ApiGatewayProxyRequest>| async move {
            Ok::<_, Error>(publish(store, event_type, &event.payload).await)
        },
    ))
    .await
}

/// `POST /subscribers`: onboard a subscriber (operators).
pub async fn onboard<S: SubscriberStore, Q: QueueProvisioner>(
    store: &S,
    provisioner: &Q,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let result = async {
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
        let body = limited_text_body(request, MAX_REQUEST_BYTES)?;
        let body = body.as_str();
        let onboard_request = OnboardRequest::parse(body)?;
        subscriber::onboard(
            store,
            provisioner,
            onboard_request,
            OffsetDateTime::now_utc(),
        )
        .await
    }
    .await;
    match result {
        Ok(subscriber) => {
            info!(subscriber_id = %subscriber.id, "subscriber onboarded");
            respond(
                201,
                "application/json",
                subscriber.to_json().to_string(),
                &[("location", format!("/subscribers/{}", subscriber.id))],
            )
        }
        Err(error) => error_response(&error, Encoding::Json),
    }
}

/// `POST /Subscription`: create a subscription (subscribers).
pub async fn create_subscription<S: SubscriptionStore, R: SubscriberStore>(
    subscriptions: &S,
    subscribers: &R,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let encoding = response_encoding(request);
    let now = OffsetDateTime::now_utc();
    let result = async {
        let content_type = header(request, "content-type");
        let request_encoding = content_type
            .and_then(Encoding::from_content_type)
            .ok_or_else(|| {
                HubError::unsupported_media_type(content_type, crate::error::FHIR_MEDIA_TYPES)
            })?;
        let body = limited_text_body(request, MAX_REQUEST_BYTES)?;
        let body = body.as_str();
        let subscription_request = SubscriptionRequest::read(body, request_encoding, now)?;
        subscription::create_subscription(subscriptions, subscribers, subscription_request, now)
            .await
    }
    .await;
    match result {
        Ok(subscription) => {
            info!(subscription_id = %subscription.id, subscriber_id = %subscription.subscriber_id, "subscription created");
            fhir_response(
                201,
                encoding,
                subscription.render(encoding, now),
                &[("location", format!("/Subscription/{}", subscription.id))],
            )
        }
        Err(error) => error_response(&error, encoding),
    }
}

/// The `{id}` of the path. Ids the hub issues are UUIDs: anything else
/// cannot exist, and must not reach DynamoDB, which refuses keys over 2 KB
/// with an error rather than a miss.
fn path_id<'a>(request: &'a ApiGatewayProxyRequest, what: &str) -> Result<&'a str, HubError> {
    request
        .path_parameters
        .get("id")
        .map(String::as_str)
        .filter(|id| uuid::Uuid::try_parse(id).is_ok())
        .ok_or_else(|| HubError::NotFound(format!("that {what}")))
}

/// `GET /Subscription/{id}`.
pub async fn read_subscription<S: SubscriptionStore>(
    subscriptions: &S,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let encoding = response_encoding(request);
    let found = async {
        let id = path_id(request, "Subscription")?;
        subscriptions
            .get(id)
            .await?
            .ok_or_else(|| HubError::NotFound(format!("Subscription/{id}")))
    }
    .await;
    match found {
        Ok(subscription) => fhir_response(
            200,
            encoding,
            subscription.render(encoding, OffsetDateTime::now_utc()),
            &[],
        ),
        Err(error) => error_response(&error, encoding),
    }
}

/// The events table's stream: dispatch every newly stored event. On the
/// first failure the rest of the batch is left for the retry, which restarts
/// at the failed record (the stream keeps order per shard).
pub async fn dispatch_batch<S: SubscriptionStore, P: DeliveryPublisher>(
    subscriptions: &S,
    publisher: &P,
    batch: StreamEvent,
) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    for record in batch.records {
        // Events are written once: only an INSERT is a new event.
        if record.event_name != "INSERT" {
            continue;
        }
        let sequence_number = record.change.sequence_number.clone();
        let dispatched = match serde_dynamo::from_item::<_, StoredEvent>(record.change.new_image) {
            Ok(event) => {
                dispatch::dispatch(subscriptions, publisher, &event, OffsetDateTime::now_utc())
                    .await
                    .map(|outcome| (event, outcome))
                    .map_err(|error| error.to_string())
            }
            Err(error) => Err(format!("the stream record is not a stored event: {error}")),
        };
        match dispatched {
            Ok((event, Dispatched::Delivered { recipients })) => {
                info!(event_id = %event.event_id, event_type = %event.event_type, recipients, "dispatched");
            }
            Ok((event, Dispatched::Withheld)) => {
                info!(event_id = %event.event_id, event_type = %event.event_type, "withheld: sensitive patient");
            }
            Err(error) => {
                error!(sequence_number = ?sequence_number, error = %error, "dispatch failed; the batch resumes here");
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = sequence_number;
                response.batch_item_failures.push(failure);
                break;
            }
        }
    }
    response
}

/// The caller's subscriber id for listing. Until authentication arrives it
/// is named by the `subscriber` search parameter.
fn subscriber_parameter(request: &ApiGatewayProxyRequest) -> Result<String, HubError> {
    request
        .query_string_parameters
        .first("subscriber")
        .filter(|id| uuid::Uuid::try_parse(id).is_ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            HubError::bad_request(
                "subscriber",
                "the subscriber search parameter (a subscriber id) is required",
            )
        })
}

/// `GET /Subscription?subscriber=..&_count=..&_page=..`: a searchset Bundle.
pub async fn list_subscriptions<S: SubscriptionStore>(
    subscriptions: &S,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let encoding = response_encoding(request);
    let listed = async {
        let subscriber_id = subscriber_parameter(request)?;
        let page_size = match request.query_string_parameters.first("_count") {
            None => subscription::DEFAULT_PAGE_SIZE,
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
                })?,
        };
        let token = request.query_string_parameters.first("_page");
        let page = subscriptions
            .list_by_subscriber(&subscriber_id, page_size, token)
            .await?;
        Ok::<_, HubError>(subscription::searchset(
            &page,
            &subscriber_id,
            page_size,
            encoding,
            OffsetDateTime::now_utc(),
        ))
    }
    .await;
    match listed {
        Ok(bundle) => fhir_response(200, encoding, bundle, &[]),
        Err(error) => error_response(&error, encoding),
    }
}

/// `DELETE /Subscription/{id}`: 204, and no delivery for it afterwards.
pub async fn delete_subscription<S: SubscriptionStore>(
    subscriptions: &S,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let encoding = response_encoding(request);
    let deleted = match path_id(request, "Subscription") {
        Ok(id) => subscription::delete_subscription(subscriptions, id).await,
        Err(error) => Err(error),
    };
    match deleted {
        Ok(subscription) => {
            info!(subscription_id = %subscription.id, subscriber_id = %subscription.subscriber_id, "subscription deleted");
            let mut response = ApiGatewayProxyResponse::default();
            response.status_code = 204;
            response
        }
        Err(error) => error_response(&error, encoding),
    }
}

/// `DELETE /subscribers/{id}`: offboard a subscriber (operators).
pub async fn offboard<R: SubscriberStore, S: SubscriptionStore, Q: QueueProvisioner>(
    subscribers: &R,
    subscriptions: &S,
    provisioner: &Q,
    request: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let offboarded = match path_id(request, "subscriber") {
        Ok(id) => {
            subscriber::offboard(
                subscribers,
                subscriptions,
                provisioner,
                id,
                OffsetDateTime::now_utc(),
            )
            .await
        }
        Err(error) => Err(error),
    };
    match offboarded {
        Ok(subscriber) => {
            info!(subscriber_id = %subscriber.id, "subscriber offboarded");
            let mut body = subscriber.to_json();
            body["queueKeptForDays"] = serde_json::json!(subscriber::QUEUE_GRACE_DAYS);
            respond(200, "application/json", body.to_string(), &[])
        }
        Err(error) => error_response(&error, Encoding::Json),
    }
}
