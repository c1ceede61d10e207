//! A published body the Lambda layer cannot read as sent: a media type that
//! is no FHIR one (415), more bytes than the hub accepts (413), bytes that
//! are not UTF-8 (400). The publish use case takes the message as text; these
//! refusals come before it, after the publisher's event type is checked.

use aws_lambda_events::apigw::ApiGatewayProxyRequest;
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::HeaderValue;
use base64::Engine as _;
use e2e_tests::fixture;
use hub::EventType;
use hub::events::{MAX_PAYLOAD_BYTES, Retention};
use hub::lambda;
use hub::memory::{MemoryAuditLog, MemoryEventStore, MemoryRegisterStore};
use hub::ports::Adapters;
use serde_json::Value;

const FHIR_JSON: &str = "application/fhir+json";

/// The sample publish of vaccinations-1 in `encoding`, answered in JSON.
fn sample(encoding: &str) -> ApiGatewayProxyRequest {
    let name = format!("apigw/publish-vaccinations-1-{encoding}.json");
    let mut request: ApiGatewayProxyRequest =
        serde_json::from_str(&fixture(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    request
        .headers
        .insert("accept", HeaderValue::from_static(FHIR_JSON));
    request
}

fn with_content_type(
    mut request: ApiGatewayProxyRequest,
    content_type: Option<&str>,
) -> ApiGatewayProxyRequest {
    request.headers.remove("content-type");
    if let Some(content_type) = content_type {
        request
            .headers
            .insert("content-type", HeaderValue::from_str(content_type).unwrap());
    }
    request
}

/// The request with `body` as its bytes, sent base64 as API Gateway sends
/// a body it does not take for text.
fn with_bytes(mut request: ApiGatewayProxyRequest, body: &[u8]) -> ApiGatewayProxyRequest {
    request.body = Some(base64::engine::general_purpose::STANDARD.encode(body));
    request.is_base64_encoded = true;
    request
}

fn body_of(request: &ApiGatewayProxyRequest) -> String {
    request.body.clone().expect("the sample has a body")
}

/// Publishes into `store`: the status and the first issue of the answer.
async fn publish(store: &MemoryEventStore, request: &ApiGatewayProxyRequest) -> (i64, Value) {
    let (audit, register) = (MemoryAuditLog::default(), MemoryRegisterStore::default());
    let ports = Adapters::new()
        .events(store)
        .audit(&audit)
        .register(&register);
    let response =
        lambda::publish(&ports, EventType::Vaccinations, request, Retention::DEFAULT).await;
    let Some(Body::Text(text)) = &response.body else {
        panic!("a text body: {:?}", response.body);
    };
    let outcome: Value = serde_json::from_str(text).expect("an OperationOutcome");
    (response.status_code, outcome["issue"][0].clone())
}

fn spine_code(issue: &Value) -> &str {
    issue["details"]["coding"][0]["code"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn refuses_a_missing_or_wrong_content_type_with_415() {
    for content_type in [
        None,
        Some(""),
        Some("application/xml"),
        Some("text/xml"),
        Some("application/json"),
        Some("application/fhir+yaml"),
        Some("application/fhir"),
        Some("fhir+xml"),
    ] {
        let store = MemoryEventStore::default();
        let request = with_content_type(sample("xml"), content_type);
        let (status, issue) = publish(&store, &request).await;
        assert_eq!(status, 415, "{content_type:?}: {issue}");
        assert_eq!(spine_code(&issue), "UNSUPPORTED_MEDIA_TYPE", "{issue}");
        assert!(issue.get("expression").is_none(), "{issue}");
        let diagnostics = issue["diagnostics"].as_str().unwrap_or_default();
        match content_type.filter(|sent| !sent.is_empty()) {
            Some(sent) => assert!(diagnostics.contains(sent), "{diagnostics}"),
            None => assert!(diagnostics.contains("no Content-Type"), "{diagnostics}"),
        }
        assert!(store.is_empty());
    }
}

#[tokio::test]
async fn refuses_a_body_over_the_limit_with_413() {
    let mut request = sample("xml");
    let mut body = body_of(&request);
    body.push_str(&" ".repeat(MAX_PAYLOAD_BYTES + 1 - body.len()));
    request.body = Some(body);
    let store = MemoryEventStore::default();
    let (status, issue) = publish(&store, &request).await;
    assert_eq!(status, 413, "{issue}");
    assert_eq!(spine_code(&issue), "MESSAGE_TOO_LARGE");
    assert_eq!(
        issue["diagnostics"],
        format!(
            "the body is {} bytes; the hub accepts at most {MAX_PAYLOAD_BYTES}",
            MAX_PAYLOAD_BYTES + 1
        )
    );
    assert!(issue.get("expression").is_none(), "{issue}");
    assert!(store.is_empty());

    // The size is checked before the body is read: garbage is 413, not 400.
    let garbage = with_bytes(sample("json"), &vec![0xFFu8; MAX_PAYLOAD_BYTES * 2]);
    let (status, _) = publish(&store, &garbage).await;
    assert_eq!(status, 413);
    assert!(store.is_empty());
}

#[tokio::test]
async fn refuses_a_body_that_is_not_utf8_with_400() {
    let request = sample("xml");
    // DAWKINS with a Latin-1 byte in it.
    let mut body = body_of(&request).into_bytes();
    let at = body.windows(7).position(|w| w == b"DAWKINS").unwrap();
    body[at + 1] = 0xC1;
    let store = MemoryEventStore::default();
    let (status, issue) = publish(&store, &with_bytes(request, &body)).await;
    assert_eq!(status, 400, "{issue}");
    assert_eq!(spine_code(&issue), "MESSAGE_NOT_WELL_FORMED");
    assert_eq!(issue["diagnostics"], "the body is not valid UTF-8 text");

    let request = sample("json");
    let mut json = body_of(&request).into_bytes();
    json.push(0xFF);
    let (status, issue) = publish(&store, &with_bytes(request, &json)).await;
    assert_eq!(status, 400, "{issue}");
    assert_eq!(spine_code(&issue), "MESSAGE_NOT_WELL_FORMED");
    assert!(store.is_empty());
}

/// A publisher learns nothing of the body limits of an event type it may
/// not publish: its event type is checked first.
#[tokio::test]
async fn the_event_type_is_checked_before_the_body() {
    let mut request = with_content_type(sample("xml"), Some("text/plain"));
    request.body = Some(" ".repeat(MAX_PAYLOAD_BYTES + 1));
    let caller = request
        .request_context
        .authorizer
        .fields
        .get_mut("caller")
        .expect("the sample's caller");
    let mut publisher: Value = serde_json::from_str(caller.as_str().unwrap()).unwrap();
    publisher["publishEventTypes"] = serde_json::json!([]);
    *caller = Value::String(publisher.to_string());
    let store = MemoryEventStore::default();
    let (status, issue) = publish(&store, &request).await;
    assert_eq!(status, 403, "{issue}");
    assert!(store.is_empty());
}
