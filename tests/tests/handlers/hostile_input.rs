//! Whatever a client sends, every API handler answers a success or a 4xx
//! OperationOutcome, never a 5xx: the in-memory stores never fail, so a 5xx
//! here could only be the hub mishandling input. Bodies, content types, path
//! and query values are generated (proptest), for each kind of caller; then
//! the classic hostile inputs (entity expansion, external entities, deep
//! nesting, huge attributes, invalid UTF-8, duplicate JSON keys, numbers out
//! of range) are sent by name, each beside the well-formed request it
//! spoils, so that the refusal is shown to be the hostile part's doing; last,
//! messages read one way by the hub and another by a subscriber (a second
//! patient, repeated singletons, XML subscribers' parsers refuse, active
//! narratives) are refused, each at the element at fault.

use hub::ports::Adapters;
use hub::subscription::DailyLimit;
use std::collections::HashMap;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequest, ApiGatewayProxyRequest, ApiGatewayProxyResponse,
};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::HeaderValue;
use e2e_tests::api_request;
use hub::EventType;
use hub::app::auth::HubSigner;
use hub::auth::{Caller, Client, Role};
use hub::events::Retention;
use hub::lambda;
use hub::memory::MemoryPorts;
use hub::memory::PemSigningKey;
use hub::subscriber::OdsCode;
use proptest::prelude::*;

const CONTENT_TYPES: &[&str] = &[
    "application/fhir+xml",
    "application/fhir+json",
    "application/xml+fhir",
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "",
    "application/fhir+json; charset=latin1",
];

/// Every in-memory port, and the hub's signer (its verifier checks the
/// tokens the token route issues).
struct Stores {
    ports: MemoryPorts,
    signer: HubSigner<PemSigningKey>,
}

/// The stores read as their own fields (`s.audit`).
impl std::ops::Deref for Stores {
    type Target = MemoryPorts;

    fn deref(&self) -> &MemoryPorts {
        &self.ports
    }
}

fn key_file(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/tests/keys")
            .join(name),
    )
    .unwrap()
}

impl Stores {
    /// The handlers' ports: these stores and the hub's signing key.
    fn ports(&self) -> &MemoryPorts {
        &self.ports
    }
}

fn stores() -> Stores {
    let (private, public) = (key_file("hub-ec.pem"), key_file("hub-ec.pub.pem"));
    Stores {
        ports: MemoryPorts {
            signing_key: Some(PemSigningKey::from_pem(&private, &public).unwrap()),
            ..MemoryPorts::default()
        },
        signer: HubSigner::from_pem(&private, &public).unwrap(),
    }
}

/// A client holding every role and permission, so that input reaches every
/// check past the role ones.
fn everything(subscriber_id: &str) -> Client {
    Client {
        client_id: "everything".into(),
        ods_code: OdsCode::parse("A83627").unwrap(),
        roles: [
            Role::Publisher,
            Role::Subscriber,
            Role::Operator,
            Role::RelationshipPublisher,
        ]
        .into(),
        keys: Default::default(),
        enabled: true,
        publish_event_types: EventType::ALL.iter().copied().collect(),
        publish_for_ods: ["A83627".to_owned(), "RR8".to_owned(), "X26".to_owned()].into(),
        subscriber_id: Some(subscriber_id.into()),
        subscribe_explicit: true,
        subscribe_generic: [("GP_GP_GP".to_owned(), ["A83627".to_owned()].into())].into(),
        sensitivity_authority: false,
        relationship_sources: ["uk.nhs.validated-relationships-service".to_owned()].into(),
        pchr: None,
    }
}

/// The client of every role; and no caller at all.
fn callers() -> Vec<Option<Caller>> {
    let everything = everything("9a830b79-90b0-4cd7-87fb-0862a75a6362");
    vec![Some(Caller::of(&everything)), None]
}

fn request(
    caller: Option<&Caller>,
    content_type: &str,
    body: &[u8],
    base64: bool,
    path: &str,
    query: &str,
) -> ApiGatewayProxyRequest {
    let text = String::from_utf8_lossy(body).into_owned();
    let mut request = api_request(
        caller,
        "application/fhir+json",
        Some(&text),
        &[("id", path), ("eventType", path), ("nhsNumber", path)],
    );
    request.headers.remove("content-type");
    if let Ok(value) = HeaderValue::from_str(content_type) {
        request.headers.insert("content-type", value);
    }
    if base64 {
        use base64::Engine as _;
        request.body = Some(base64::engine::general_purpose::STANDARD.encode(body));
        request.is_base64_encoded = true;
    }
    let parameters: HashMap<String, String> = ["patient", "client", "_count", "_page"]
        .iter()
        .map(|name| ((*name).to_owned(), query.to_owned()))
        .collect();
    request.query_string_parameters = parameters.into();
    request
}

fn body_text(response: &ApiGatewayProxyResponse) -> &str {
    match &response.body {
        Some(Body::Text(text)) => text,
        _ => "",
    }
}

/// A success, or a 4xx whose body is an OperationOutcome with an issue
/// (in JSON, or in XML when the request asked for XML).
fn assert_not_5xx(what: &str, response: &ApiGatewayProxyResponse) {
    let status = response.status_code;
    assert!(
        status < 500,
        "{what} answered {status}: {:?}",
        response.body
    );
    if status >= 400 {
        let text = body_text(response);
        let json_outcome = serde_json::from_str::<serde_json::Value>(text).is_ok_and(|outcome| {
            outcome["resourceType"] == "OperationOutcome"
                && outcome["issue"][0]["severity"].is_string()
                && outcome["issue"][0]["code"].is_string()
        });
        let xml_outcome = text.contains("<OperationOutcome") && text.contains("<issue>");
        assert!(
            json_outcome || xml_outcome,
            "{what} answered {status} without an OperationOutcome: {text:?}"
        );
    }
}

/// Every API handler, fed one request.
async fn every_handler(stores: &Stores, request: &ApiGatewayProxyRequest) {
    let s = stores;
    for &event_type in EventType::ALL {
        let response = lambda::publish(s.ports(), event_type, request, Retention::DEFAULT).await;
        assert_not_5xx(event_type.code(), &response);
    }
    let answers = [
        (
            "create subscription",
            lambda::create_subscription(s.ports(), request, DailyLimit::DEFAULT).await,
        ),
        (
            "read subscription",
            lambda::read_subscription(s.ports(), request).await,
        ),
        (
            "list subscriptions",
            lambda::list_subscriptions(s.ports(), request).await,
        ),
        (
            "delete subscription",
            lambda::delete_subscription(s.ports(), request).await,
        ),
        ("onboard", lambda::onboard(s.ports(), request).await),
        ("offboard", lambda::offboard(s.ports(), request).await),
        (
            "change subscriber",
            lambda::change_subscriber(s.ports(), request).await,
        ),
        (
            "register client",
            lambda::register_client(s.ports(), request).await,
        ),
        (
            "disable client",
            lambda::disable_client(s.ports(), request).await,
        ),
        ("read audit", lambda::read_audit(s.ports(), request).await),
        ("read event", lambda::read_event(s.ports(), request).await),
        ("read child", lambda::read_child(s.ports(), request).await),
        (
            "subscriber status",
            lambda::subscriber_status(s.ports(), request).await,
        ),
        ("redrive", lambda::redrive(s.ports(), request).await),
        (
            "read child events",
            lambda::read_child_events(s.ports(), request, Retention::DEFAULT).await,
        ),
        (
            "start replay",
            lambda::start_replay(s.ports(), request, Retention::DEFAULT).await,
        ),
        ("read replay", lambda::read_replay(s.ports(), request).await),
        (
            "publish relationship",
            lambda::publish_relationship(s.ports(), request).await,
        ),
        (
            "read child relationships",
            lambda::read_child_relationships(s.ports(), request).await,
        ),
        (
            "token",
            lambda::token(s.ports(), Some("https://hub.example/oauth2/token"), request).await,
        ),
    ];
    for (what, response) in &answers {
        assert_not_5xx(what, response);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Bodies that are near-misses of real ones: a real message or resource cut,
/// with bytes flipped, so that the readers get past their first checks.
fn near_miss_bodies() -> impl Strategy<Value = Vec<u8>> {
    let samples = [
        e2e_tests::fixture("nems/vaccinations-1-new.xml"),
        e2e_tests::fixture("nems-json/vaccinations-1-new.json"),
        e2e_tests::fixture("subscriptions/explicit-vaccinations.json"),
        e2e_tests::fixture("relationships/vrs-proxy-role-created-1.json"),
    ];
    (
        0..samples.len(),
        any::<prop::sample::Index>(),
        any::<u8>(),
        any::<bool>(),
    )
        .prop_map(move |(which, at, byte, cut)| {
            let mut body = samples[which].clone().into_bytes();
            let index = at.index(body.len());
            if cut {
                body.truncate(index);
            } else {
                body[index] = byte;
            }
            body
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_to_any_endpoint_are_never_a_server_error(
        body in prop::collection::vec(any::<u8>(), 0..512),
        content_type in prop::sample::select(CONTENT_TYPES),
        base64 in any::<bool>(),
        path in ".{0,80}",
        query in ".{0,80}",
    ) {
        let stores = stores();
        runtime().block_on(async {
            for caller in callers() {
                let request = request(caller.as_ref(), content_type, &body, base64, &path, &query);
                every_handler(&stores, &request).await;
            }
        });
    }

    #[test]
    fn near_misses_of_real_bodies_are_never_a_server_error(
        body in near_miss_bodies(),
        content_type in prop::sample::select(CONTENT_TYPES),
    ) {
        let stores = stores();
        runtime().block_on(async {
            for caller in callers() {
                let request = request(caller.as_ref(), content_type, &body, false, "", "");
                every_handler(&stores, &request).await;
            }
        });
    }

    #[test]
    fn any_authorization_header_is_allowed_denied_or_failed_never_a_panic(
        token in ".{0,600}",
    ) {
        let stores = stores();
        runtime().block_on(async {
            let mut request = ApiGatewayCustomAuthorizerRequest::default();
            request.authorization_token = Some(token);
            request.method_arn = Some("arn:aws:execute-api:eu-west-2:1:api/dev/GET/audit".into());
            let keys = vec![stores.signer.verifier().clone()];
            // A refusal is a Deny answer; only a store failure is an error,
            // and the in-memory stores do not fail.
            let answer = lambda::authorize(stores.ports(), &keys, &request).await;
            prop_assert!(answer.is_ok());
            Ok(())
        })?;
    }
}

// ---------------------------------------------------------------------------
// Named hostile inputs
// ---------------------------------------------------------------------------

/// The routes that read a body, each with a request the hub accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    PublishXml,
    PublishJson,
    RegisterClient,
    Onboard,
    ChangeSubscriber,
    CreateSubscription,
    StartReplay,
    RelationshipEvent,
}

const JSON_ROUTES: [Route; 7] = [
    Route::PublishJson,
    Route::RegisterClient,
    Route::Onboard,
    Route::ChangeSubscriber,
    Route::CreateSubscription,
    Route::StartReplay,
    Route::RelationshipEvent,
];

/// In-memory stores holding an onboarded subscriber with one subscription,
/// and a caller of every role that is that subscriber.
struct Bench {
    stores: Stores,
    caller: Caller,
    subscriber_id: String,
    subscription_id: String,
    /// Each registration and onboarding needs a client id of its own.
    next_client: std::cell::Cell<u32>,
}

impl Bench {
    async fn new() -> Self {
        let stores = stores();
        let operator = Caller::of(&everything("9a830b79-90b0-4cd7-87fb-0862a75a6362"));
        let mut bench = Bench {
            stores,
            caller: operator,
            subscriber_id: String::new(),
            subscription_id: String::new(),
            next_client: std::cell::Cell::new(0),
        };
        let onboarded = bench
            .send(Route::Onboard, bench.good_body(Route::Onboard))
            .await;
        assert_eq!(onboarded.status_code, 201, "{:?}", onboarded.body);
        let answer: serde_json::Value = serde_json::from_str(body_text(&onboarded)).unwrap();
        bench.subscriber_id = answer["id"].as_str().unwrap().to_owned();
        bench.caller = Caller::of(&everything(&bench.subscriber_id));
        let created = bench
            .send(
                Route::CreateSubscription,
                bench.good_body(Route::CreateSubscription),
            )
            .await;
        assert_eq!(created.status_code, 201, "{:?}", created.body);
        let resource: serde_json::Value = serde_json::from_str(body_text(&created)).unwrap();
        bench.subscription_id = resource["id"].as_str().unwrap().to_owned();
        bench
    }

    /// A client id not yet used, registered in the store unless the route
    /// is the registration itself.
    async fn fresh_client(&self, registered: bool) -> String {
        let number = self.next_client.get() + 1;
        self.next_client.set(number);
        let client_id = format!("hostile-{number}");
        if registered {
            let registration = registration(&client_id).into_bytes();
            let response = self.send_as_is(Route::RegisterClient, registration).await;
            assert_eq!(response.status_code, 201, "{:?}", response.body);
        }
        client_id
    }

    /// A well-formed body for the route: the one the hostile variants spoil.
    fn good_body(&self, route: Route) -> Vec<u8> {
        let text = match route {
            Route::PublishXml => e2e_tests::fixture("nems/vaccinations-1-new.xml"),
            // The XML message's, under another message id: the hub refuses
            // a second body under an id it has accepted.
            Route::PublishJson => e2e_tests::fixture("nems-json/vaccinations-1-new.json")
                .replace(MESSAGE_ID, "0d6b4a52-3b5e-4a8e-9f3c-7d2e1c9b8a01"),
            // The client id is filled in when sent (see `send`).
            Route::RegisterClient => registration("CLIENT-ID"),
            Route::Onboard => serde_json::json!({
                "clientId": "CLIENT-ID",
                "odsCode": "A83627",
                "name": "Silverdale Family Practice",
                "eventTypes": ["vaccinations-1"],
            })
            .to_string(),
            Route::ChangeSubscriber => {
                serde_json::json!({"eventTypes": ["vaccinations-1", "nipe-outcome-1"]}).to_string()
            }
            Route::CreateSubscription => {
                e2e_tests::fixture("subscriptions/explicit-vaccinations.json")
                    .replace("REPLACE-WITH-SUBSCRIBER-ID", &self.subscriber_id)
            }
            Route::StartReplay => serde_json::json!({
                "resourceType": "Parameters",
                "parameter": [{"name": "since", "valueDate": "2020-01-01"}],
            })
            .to_string(),
            // Accepted the first time, a duplicate (200) after.
            Route::RelationshipEvent => {
                e2e_tests::fixture("relationships/vrs-proxy-role-created-1.json")
            }
        };
        text.into_bytes()
    }

    /// Sends the body, with a fresh client id in place of CLIENT-ID.
    async fn send(&self, route: Route, body: Vec<u8>) -> ApiGatewayProxyResponse {
        const PLACEHOLDER: &[u8] = b"CLIENT-ID";
        // Bytes, not text: the body may be meant not to be UTF-8.
        let body = match body
            .windows(PLACEHOLDER.len())
            .position(|w| w == PLACEHOLDER)
        {
            Some(at) => {
                let client_id = self.fresh_client(route == Route::Onboard).await;
                let mut replaced = body;
                replaced.splice(at..at + PLACEHOLDER.len(), client_id.bytes());
                replaced
            }
            None => body,
        };
        self.send_as_is(route, body).await
    }

    async fn send_as_is(&self, route: Route, body: Vec<u8>) -> ApiGatewayProxyResponse {
        let content_type = match route {
            Route::PublishXml => "application/fhir+xml",
            Route::PublishJson
            | Route::CreateSubscription
            | Route::StartReplay
            | Route::RelationshipEvent => "application/fhir+json",
            Route::RegisterClient | Route::Onboard | Route::ChangeSubscriber => "application/json",
        };
        let path: &[(&str, &str)] = match route {
            Route::ChangeSubscriber => &[("id", &self.subscriber_id)],
            Route::StartReplay => &[("id", &self.subscription_id)],
            _ => &[],
        };
        let mut request = api_request(Some(&self.caller), content_type, None, path);
        // Refusals in JSON, whatever the body's encoding, to read them here.
        request
            .headers
            .insert("accept", HeaderValue::from_static("application/fhir+json"));
        match String::from_utf8(body) {
            Ok(text) => request.body = Some(text),
            Err(bytes) => {
                // Only base64 carries bytes that are not UTF-8 through API Gateway.
                use base64::Engine as _;
                request.body =
                    Some(base64::engine::general_purpose::STANDARD.encode(bytes.into_bytes()));
                request.is_base64_encoded = true;
            }
        }
        let s = &self.stores;
        match route {
            Route::PublishXml | Route::PublishJson => {
                lambda::publish(
                    s.ports(),
                    EventType::Vaccinations,
                    &request,
                    Retention::DEFAULT,
                )
                .await
            }
            Route::RegisterClient => lambda::register_client(s.ports(), &request).await,
            Route::Onboard => lambda::onboard(s.ports(), &request).await,
            Route::ChangeSubscriber => lambda::change_subscriber(s.ports(), &request).await,
            Route::RelationshipEvent => lambda::publish_relationship(s.ports(), &request).await,
            Route::CreateSubscription => {
                lambda::create_subscription(s.ports(), &request, DailyLimit::DEFAULT).await
            }
            // A store of its own each time: a well-formed start would
            // otherwise find the previous one still running (409).
            Route::StartReplay => {
                let replays = hub::memory::MemoryReplayStore::default();
                lambda::start_replay(
                    &Adapters::new()
                        .subscriptions(&s.subscriptions)
                        .replays(&replays)
                        .audit(&s.audit),
                    &request,
                    Retention::DEFAULT,
                )
                .await
            }
        }
    }

    /// The route accepts its well-formed body and refuses the hostile one
    /// with a 4xx OperationOutcome (`status` when given); the outcome's
    /// diagnostics are returned.
    async fn refuses(
        &self,
        route: Route,
        what: &str,
        hostile: Vec<u8>,
        status: Option<i64>,
    ) -> String {
        let good = self.send(route, self.good_body(route)).await;
        assert!(
            (200..300).contains(&good.status_code),
            "{route:?} refused its well-formed body: {} {:?}",
            good.status_code,
            good.body
        );
        let started = std::time::Instant::now();
        let answer = self.send(route, hostile).await;
        let what = format!("{route:?} with {what}");
        assert_not_5xx(&what, &answer);
        assert!(
            (400..500).contains(&answer.status_code),
            "{what} was accepted: {} {:?}",
            answer.status_code,
            answer.body
        );
        if let Some(status) = status {
            assert_eq!(answer.status_code, status, "{what}: {:?}", answer.body);
        }
        // Generous for a debug build on a busy machine; a body that makes a
        // reader do work out of proportion to its size takes far longer.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{what} took {:?}",
            started.elapsed()
        );
        let outcome: serde_json::Value = serde_json::from_str(body_text(&answer)).unwrap();
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// The MessageHeader id of events/nems/vaccinations-1-new.xml.
const MESSAGE_ID: &str = e2e_tests::VACCINATION_HEADER_ID;

fn registration(client_id: &str) -> String {
    serde_json::json!({
        "clientId": client_id,
        "odsCode": "A83627",
        "roles": ["subscriber"],
        "keys": {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]},
        "subscribeExplicit": true,
    })
    .to_string()
}

/// The well-formed XML message with text put right after its root's start tag.
fn xml_with(inside_root: &str) -> Vec<u8> {
    let message = e2e_tests::fixture("nems/vaccinations-1-new.xml");
    let root = message.find("<Bundle").unwrap();
    let end = root + message[root..].find('>').unwrap() + 1;
    format!("{}{inside_root}{}", &message[..end], &message[end..]).into_bytes()
}

/// The well-formed XML message with a document type declaration.
fn xml_with_doctype(doctype: &str) -> Vec<u8> {
    let message = e2e_tests::fixture("nems/vaccinations-1-new.xml");
    let root = message.find("<Bundle").unwrap();
    format!("{}{doctype}{}", &message[..root], &message[root..]).into_bytes()
}

/// The body with a member put first in its outermost JSON object.
fn json_with_member(body: &[u8], member: &str) -> Vec<u8> {
    let text = String::from_utf8(body.to_vec()).unwrap();
    let open = text.find('{').unwrap();
    format!("{}{{{member},{}", &text[..open], &text[open + 1..]).into_bytes()
}

#[tokio::test]
async fn xml_entity_expansion_and_external_entities_are_refused() {
    let bench = Bench::new().await;
    let laughs = (1..10)
        .map(|n| {
            format!(
                r#"<!ENTITY lol{n} "{}">"#,
                format!("&lol{};", n - 1).repeat(10)
            )
        })
        .collect::<String>();
    let billion_laughs = format!(r#"<!DOCTYPE Bundle [<!ENTITY lol0 "lol">{laughs}]>"#);
    let mut cases = vec![
        (
            "entity expansion (billion laughs)",
            xml_with_doctype(&billion_laughs),
        ),
        (
            "an external entity",
            xml_with_doctype(r#"<!DOCTYPE Bundle [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>"#),
        ),
        (
            "an external parameter entity",
            xml_with_doctype(
                r#"<!DOCTYPE Bundle [<!ENTITY % remote SYSTEM "http://127.0.0.1:1/x.dtd"> %remote;]>"#,
            ),
        ),
        (
            "an external DTD",
            xml_with_doctype(r#"<!DOCTYPE Bundle SYSTEM "http://127.0.0.1:1/x.dtd">"#),
        ),
    ];
    // Without a declaration, a reference to an entity is an unknown one.
    let message = String::from_utf8(xml_with("")).unwrap();
    let first_value = message.find("value=\"").unwrap() + "value=\"".len();
    let mut undeclared = message.clone();
    undeclared.insert_str(first_value, "&lol9;");
    cases.push(("an undeclared entity", undeclared.into_bytes()));
    for (what, body) in cases {
        let diagnostics = bench
            .refuses(Route::PublishXml, what, body, Some(400))
            .await;
        assert!(!diagnostics.is_empty(), "{what}");
    }
}

#[tokio::test]
async fn deep_nesting_is_refused_in_every_body() {
    let bench = Bench::new().await;
    let xml = xml_with(&format!(
        "{}{}",
        "<extension>".repeat(5_000),
        "</extension>".repeat(5_000)
    ));
    bench
        .refuses(Route::PublishXml, "XML 5 000 levels deep", xml, Some(400))
        .await;
    // Within the operator APIs' 16 KiB body limit.
    let deep = format!("{}1{}", r#"{"a":"#.repeat(1_000), "}".repeat(1_000));
    let arrays = format!("{}1{}", "[".repeat(2_000), "]".repeat(2_000));
    for route in JSON_ROUTES {
        let good = bench.good_body(route);
        for (what, member) in [
            ("an object 1 000 levels deep", format!(r#""deep":{deep}"#)),
            ("arrays 2 000 levels deep", format!(r#""deep":{arrays}"#)),
        ] {
            let body = json_with_member(&good, &member);
            bench.refuses(route, what, body, None).await;
        }
    }
}

#[tokio::test]
async fn huge_attributes_are_refused() {
    let bench = Bench::new().await;
    // In the message id, an attribute the hub reads: within the payload
    // limit it is refused by its format, beyond it by its size.
    let message = String::from_utf8(xml_with("")).unwrap();
    let id_value = message.find(MESSAGE_ID).unwrap();
    for (what, size, status) in [
        ("a 150 KiB attribute", 150 * 1024, None),
        ("a 1 MiB attribute", 1024 * 1024, Some(413)),
    ] {
        let mut body = message.clone();
        body.insert_str(id_value, &"a".repeat(size));
        bench
            .refuses(Route::PublishXml, what, body.into_bytes(), status)
            .await;
    }
    let mut many = String::new();
    for n in 0..10_000 {
        many.push_str(&format!(" a{n}=\"x\""));
    }
    let mut body = message.clone();
    body.insert_str(id_value - "value=\"".len() - 1, &many);
    bench
        .refuses(
            Route::PublishXml,
            "10 000 attributes",
            body.into_bytes(),
            None,
        )
        .await;
    let mut name = message.clone();
    name.insert_str(
        id_value - "value=\"".len() - 1,
        &format!(" {}=\"x\"", "n".repeat(100_000)),
    );
    bench
        .refuses(
            Route::PublishXml,
            "a 100 KB attribute name",
            name.into_bytes(),
            None,
        )
        .await;
}

#[tokio::test]
async fn invalid_utf8_is_refused_in_every_body() {
    let bench = Bench::new().await;
    let mut routes = vec![Route::PublishXml];
    routes.extend(JSON_ROUTES);
    for route in routes {
        let good = bench.good_body(route);
        let middle = good.len() / 2;
        for (what, bytes) in [
            ("a stray continuation byte", &[0x80][..]),
            ("a truncated sequence", &[0xC3, 0x28][..]),
            ("an overlong '<'", &[0xC0, 0xBC][..]),
            ("a UTF-16 surrogate", &[0xED, 0xA0, 0x80][..]),
            ("0xFF", &[0xFF][..]),
        ] {
            let mut body = good.clone();
            body.splice(middle..middle, bytes.iter().copied());
            bench.refuses(route, what, body, Some(400)).await;
        }
    }
}

#[tokio::test]
async fn duplicate_json_keys_are_refused_in_every_body() {
    let bench = Bench::new().await;
    for route in JSON_ROUTES {
        let good = String::from_utf8(bench.good_body(route)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&good).unwrap();
        // The outermost object's first key, given again with another value.
        let (key, _) = value.as_object().unwrap().iter().next().unwrap();
        let top = json_with_member(good.as_bytes(), &format!(r#""{key}":"other""#));
        let diagnostics = bench
            .refuses(route, "a duplicate top-level key", top, Some(400))
            .await;
        assert!(
            diagnostics.contains("duplicate"),
            "{route:?}: {diagnostics}"
        );
    }
    // A duplicate deeper down: in a Bundle entry, a JWK, a Parameters entry.
    let nested = [
        (
            Route::PublishJson,
            r#""fullUrl":"#,
            r#""fullUrl":"urn:uuid:1","#,
        ),
        (Route::RegisterClient, r#""kid":"#, r#""kid":"other","#),
        (
            Route::StartReplay,
            r#""valueDate":"#,
            r#""valueDate":"2021-01-01","#,
        ),
        (
            Route::CreateSubscription,
            r#""type":"#,
            r#""type":"rest-hook","#,
        ),
        (
            Route::RelationshipEvent,
            // The Consent's status.
            r#""status": "active","#,
            r#""status": "inactive","#,
        ),
    ];
    for (route, before, duplicate) in nested {
        let good = String::from_utf8(bench.good_body(route)).unwrap();
        let at = good
            .find(before)
            .unwrap_or_else(|| panic!("{route:?}: {before}"));
        let body = format!("{}{duplicate}{}", &good[..at], &good[at..]);
        let diagnostics = bench
            .refuses(
                route,
                "a duplicate nested key",
                body.into_bytes(),
                Some(400),
            )
            .await;
        assert!(
            diagnostics.contains("duplicate"),
            "{route:?}: {diagnostics}"
        );
    }
}

#[tokio::test]
async fn numbers_out_of_range_are_refused_in_every_body() {
    let bench = Bench::new().await;
    for route in JSON_ROUTES {
        let good = bench.good_body(route);
        for number in ["1e400", "-1e400", &format!("1{}", "0".repeat(400))] {
            let body = json_with_member(&good, &format!(r#""number":{number}"#));
            bench.refuses(route, number, body, Some(400)).await;
        }
    }
}

#[tokio::test]
async fn query_numbers_out_of_range_are_refused() {
    let stores = stores();
    let caller = Caller::of(&everything("9a830b79-90b0-4cd7-87fb-0862a75a6362"));
    for value in [
        "99999999999999999999999",
        "1e400",
        "-1",
        "18446744073709551616",
        "NaN",
    ] {
        for name in ["_count", "_page"] {
            let mut request = api_request(Some(&caller), "application/fhir+json", None, &[]);
            request.query_string_parameters =
                HashMap::from([(name.to_owned(), value.to_owned())]).into();
            for (what, response) in [
                (
                    "list subscriptions",
                    lambda::list_subscriptions(stores.ports(), &request).await,
                ),
                (
                    "read audit",
                    lambda::read_audit(stores.ports(), &request).await,
                ),
            ] {
                let what = format!("{what} with {name}={value}");
                assert_not_5xx(&what, &response);
                // A page token is opaque: one the hub never issued may be
                // refused or read as past the end, never a failure.
                if name == "_count" {
                    assert_eq!(response.status_code, 400, "{what}: {:?}", response.body);
                }
            }
        }
    }
}

/// The message (XML or JSON) with `insert` put right after the first `at`.
fn message_with(route: Route, at: &str, insert: &str) -> String {
    let message = match route {
        Route::PublishJson => e2e_tests::fixture("nems-json/vaccinations-1-new.json"),
        _ => e2e_tests::fixture("nems/vaccinations-1-new.xml"),
    };
    let position = message.find(at).unwrap_or_else(|| panic!("{at}")) + at.len();
    format!("{}{insert}{}", &message[..position], &message[position..])
}

/// Publishes a body under a fresh message id: its status and the first
/// issue of its OperationOutcome (Null when accepted without one).
async fn publish(bench: &Bench, route: Route, body: &str) -> (i64, serde_json::Value) {
    // Each variant gets a MessageHeader id of its own, so that its answer
    // is its content's doing, not a conflict with an id the hub accepted.
    let body = e2e_tests::as_new_message(body, MESSAGE_ID);
    let answer = bench.send(route, body.into_bytes()).await;
    assert_not_5xx("a publish", &answer);
    let outcome: serde_json::Value =
        serde_json::from_str(body_text(&answer)).unwrap_or(serde_json::Value::Null);
    (answer.status_code, outcome["issue"][0].clone())
}

/// A valid NHS number that is not the message's (9912003888).
const OTHER_CHILD: &str = "9449305552";

/// Issue 18, item 1: a message is about one patient. A second Patient
/// entry, or a second NHS number on the routed one, would be delivered to
/// the first child's subscribers past the second's confidentiality and
/// audit; each is refused at the element that carries it.
#[tokio::test]
async fn a_second_patient_riding_along_is_refused() {
    let bench = Bench::new().await;
    let other_patient = format!(
        r#"<entry><fullUrl value="urn:uuid:9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"/><resource><Patient>
        <id value="9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"/>
        <identifier><system value="https://fhir.nhs.uk/Id/nhs-number"/><value value="{OTHER_CHILD}"/></identifier>
        <name><use value="official"/><family value="SMITH"/><given value="Amy"/></name>
        <birthDate value="2016-03-01"/><address><use value="home"/><postalCode value="LS1 4AP"/></address>
        </Patient></resource></entry>"#
    );
    let unnumbered_patient = r#"<entry><resource><Patient>
        <name><use value="official"/><family value="SMITH"/><given value="Amy"/></name>
        <birthDate value="2016-03-01"/></Patient></resource></entry>"#;
    let second_identifier = format!(
        r#"<identifier><system value="https://fhir.nhs.uk/Id/nhs-number"/><value value="{OTHER_CHILD}"/></identifier>"#
    );
    let json_patient = serde_json::json!({
        "fullUrl": "urn:uuid:9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d",
        "resource": {
            "resourceType": "Patient",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": OTHER_CHILD}],
            "name": [{"use": "official", "family": "SMITH", "given": ["Amy"]}],
            "birthDate": "2016-03-01",
        },
    });
    let cases = [
        (
            "a second Patient entry with another child's NHS number",
            message_with(Route::PublishXml, "</entry>", &other_patient),
            Route::PublishXml,
            "Bundle.entry[1].resource.ofType(Patient)",
        ),
        (
            "a second Patient entry without an NHS number",
            message_with(Route::PublishXml, "</entry>", unnumbered_patient),
            Route::PublishXml,
            "Bundle.entry[1].resource.ofType(Patient)",
        ),
        (
            "the routed Patient with a second NHS number",
            message_with(
                Route::PublishXml,
                "<value value=\"9912003888\"/>\n\t\t\t\t</identifier>",
                &second_identifier,
            ),
            Route::PublishXml,
            "Bundle.entry[3].resource.ofType(Patient).identifier.value",
        ),
        (
            "another child's NHS number on the Immunization's patient reference",
            message_with(
                Route::PublishXml,
                "<patient>",
                &format!(
                    r#"<identifier><system value="https://fhir.nhs.uk/Id/nhs-number"/><value value="{OTHER_CHILD}"/></identifier>"#
                ),
            ),
            Route::PublishXml,
            "Bundle.entry[1].resource.ofType(Immunization).patient.identifier.value",
        ),
        (
            "a second Patient entry in JSON",
            {
                let mut message: serde_json::Value =
                    serde_json::from_str(&e2e_tests::fixture("nems-json/vaccinations-1-new.json"))
                        .unwrap();
                message["entry"].as_array_mut().unwrap().push(json_patient);
                message.to_string()
            },
            Route::PublishJson,
            "Bundle.entry[9].resource.ofType(Patient)",
        ),
    ];
    for (what, body, route, expression) in cases {
        let (status, issue) = publish(&bench, route, &body).await;
        assert_eq!(status, 422, "{what}: {issue}");
        assert_eq!(issue["expression"][0], expression, "{what}: {issue}");
    }
}

/// Issue 18, item 2: an element FHIR STU3 allows once, given twice (or as
/// a JSON array, or outside the FHIR namespace), is refused: the hub reads
/// the first, a subscriber's library may keep the last.
#[tokio::test]
async fn elements_fhir_allows_once_are_refused_when_repeated() {
    let bench = Bench::new().await;
    const HEADER: &str = "Bundle.entry[0].resource.ofType(MessageHeader)";
    let other_organisation = r#"<responsible><reference value="https://directory.spineservices.nhs.uk/STU3/Organization/X99999"/></responsible>"#;
    let json_message = e2e_tests::fixture("nems-json/vaccinations-1-new.json");
    let mut two_responsible: serde_json::Value = serde_json::from_str(&json_message).unwrap();
    let header = &mut two_responsible["entry"][0]["resource"];
    let own = header["responsible"].clone();
    header["responsible"] = serde_json::json!([own, {"reference": "https://directory.spineservices.nhs.uk/STU3/Organization/X99999"}]);
    let mut one_in_array: serde_json::Value = serde_json::from_str(&json_message).unwrap();
    let header = &mut one_in_array["entry"][0]["resource"];
    header["responsible"] = serde_json::json!([header["responsible"].clone()]);
    let cases = [
        (
            "two responsible organisations",
            message_with(Route::PublishXml, "</responsible>", other_organisation),
            Route::PublishXml,
            422,
            format!("{HEADER}.responsible"),
        ),
        (
            "a responsible outside the FHIR namespace before FHIR's",
            message_with(
                Route::PublishXml,
                "</source>",
                &other_organisation.replacen("<responsible>", r#"<responsible xmlns="urn:x">"#, 1),
            ),
            Route::PublishXml,
            400,
            String::new(),
        ),
        (
            "responsible as a JSON array of two",
            two_responsible.to_string(),
            Route::PublishJson,
            422,
            format!("{HEADER}.responsible"),
        ),
        (
            "responsible as a JSON array of one",
            one_in_array.to_string(),
            Route::PublishJson,
            422,
            format!("{HEADER}.responsible"),
        ),
        (
            "two event codes",
            message_with(
                Route::PublishXml,
                "</event>",
                r#"<event><system value="https://fhir.nhs.uk/STU3/CodeSystem/EventType-1"/><code value="pds-death-notification-1"/></event>"#,
            ),
            Route::PublishXml,
            422,
            format!("{HEADER}.event"),
        ),
        (
            "a second Patient.meta with a confidentiality label",
            message_with(
                Route::PublishXml,
                "CareConnect-Patient-1\"/>\n\t\t\t\t</meta>",
                r#"<meta><security><system value="http://hl7.org/fhir/v3/Confidentiality"/><code value="R"/></security></meta>"#,
            ),
            Route::PublishXml,
            422,
            "Bundle.entry[3].resource.ofType(Patient).meta".to_owned(),
        ),
        (
            "a second entry with the responsible Organization's fullUrl",
            message_with(
                Route::PublishXml,
                "</entry>",
                r#"<entry><fullUrl value="urn:uuid:3ff6d789-af64-4d9c-aa1d-0087d29e9e1c"/><resource><Organization>
                <identifier><system value="https://fhir.nhs.uk/Id/ods-organization-code"/><value value="X99999"/></identifier>
                </Organization></resource></entry>"#,
            ),
            Route::PublishXml,
            422,
            // The Organization's own entry, now after the inserted one.
            "Bundle.entry[3].fullUrl".to_owned(),
        ),
        (
            "an attribute in another namespace beside FHIR's",
            message_with(
                Route::PublishXml,
                "<code value=\"vaccinations-1\"",
                r#" xmlns:x="urn:x" x:value="pds-death-notification-1""#,
            ),
            Route::PublishXml,
            400,
            String::new(),
        ),
    ];
    for (what, body, route, expected_status, expression) in cases {
        let (status, issue) = publish(&bench, route, &body).await;
        assert_eq!(status, expected_status, "{what}: {issue}");
        if expected_status == 422 {
            assert_eq!(
                issue["expression"][0],
                expression.as_str(),
                "{what}: {issue}"
            );
        } else {
            let diagnostics = issue["diagnostics"].as_str().unwrap_or_default();
            assert!(
                diagnostics.contains("namespace") || diagnostics.contains("attribute"),
                "{what}: {issue}"
            );
        }
    }
}

/// Issue 18, item 2, for the Subscription reader: one channel, one endpoint.
#[tokio::test]
async fn subscription_elements_fhir_allows_once_are_refused_when_repeated() {
    let bench = Bench::new().await;
    let good: serde_json::Value =
        serde_json::from_slice(&bench.good_body(Route::CreateSubscription)).unwrap();
    let mut two_channels = good.clone();
    two_channels["channel"] = serde_json::json!([good["channel"].clone(), good["channel"].clone()]);
    let mut endpoint_array = good.clone();
    endpoint_array["channel"]["endpoint"] =
        serde_json::json!([good["channel"]["endpoint"].clone()]);
    for (what, body, expression) in [
        ("two channels", two_channels, "Subscription.channel"),
        (
            "endpoint as an array",
            endpoint_array,
            "Subscription.channel.endpoint",
        ),
    ] {
        let answer = bench
            .send(Route::CreateSubscription, body.to_string().into_bytes())
            .await;
        let outcome: serde_json::Value = serde_json::from_str(body_text(&answer)).unwrap();
        assert_eq!(answer.status_code, 422, "{what}: {outcome}");
        assert_eq!(
            outcome["issue"][0]["expression"][0], expression,
            "{what}: {outcome}"
        );
    }
}

/// Issue 18, item 5: XML a subscriber's parser would refuse is refused
/// before it is stored, and so is narrative XHTML that could run script.
#[tokio::test]
async fn xml_subscribers_cannot_read_and_active_narratives_are_refused() {
    let bench = Bench::new().await;
    let narrative = |xhtml: &str| {
        format!(
            r#"<text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml">{xhtml}</div></text>"#
        )
    };
    // A plain narrative is accepted: the refusals are the hostile parts' doing.
    let plain = message_with(
        Route::PublishXml,
        "<Patient>",
        &narrative("<p>Jack &amp; <b>Jill</b> &#233;</p>"),
    );
    let (status, issue) = publish(&bench, Route::PublishXml, &plain).await;
    assert_eq!(status, 202, "a plain narrative: {issue}");
    let json_narrative = |div: &str| {
        let mut message: serde_json::Value =
            serde_json::from_str(&e2e_tests::fixture("nems-json/vaccinations-1-new.json")).unwrap();
        message["entry"][3]["resource"]["text"] =
            serde_json::json!({"status": "generated", "div": div});
        assert_eq!(message["entry"][3]["resource"]["resourceType"], "Patient");
        message.to_string()
    };
    let cases = [
        (
            "a DOCTYPE inside the narrative",
            message_with(
                Route::PublishXml,
                "<Patient>",
                &narrative(r#"<!DOCTYPE p [<!ENTITY e "x">]><p>&e;</p>"#),
            ),
            Route::PublishXml,
        ),
        (
            "an undefined entity inside the narrative",
            message_with(Route::PublishXml, "<Patient>", &narrative("<p>&lol;</p>")),
            Route::PublishXml,
        ),
        (
            "an undefined entity between elements",
            message_with(Route::PublishXml, "<Patient>", "&lol;"),
            Route::PublishXml,
        ),
        (
            "U+0001 in an attribute value",
            message_with(Route::PublishXml, "<family value=\"DAWKINS", "\u{1}"),
            Route::PublishXml,
        ),
        (
            "a reference to U+0001 in an attribute value",
            message_with(Route::PublishXml, "<family value=\"DAWKINS", "&#1;"),
            Route::PublishXml,
        ),
        (
            "a script in the narrative",
            message_with(
                Route::PublishXml,
                "<Patient>",
                &narrative("<p>x</p><script>alert(1)</script>"),
            ),
            Route::PublishXml,
        ),
        (
            "an event handler attribute in the narrative",
            message_with(
                Route::PublishXml,
                "<Patient>",
                &narrative(r#"<img src="x.png" alt="x" onerror="alert(1)"/>"#),
            ),
            Route::PublishXml,
        ),
        (
            "a javascript link in the narrative",
            message_with(
                Route::PublishXml,
                "<Patient>",
                &narrative(r#"<a href=" JavaScript:alert(1)">x</a>"#),
            ),
            Route::PublishXml,
        ),
        (
            "a script in a JSON narrative",
            json_narrative(
                r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>x</p><script>alert(1)</script></div>"#,
            ),
            Route::PublishJson,
        ),
        (
            "an undefined entity in a JSON narrative",
            json_narrative(r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>&lol;</p></div>"#),
            Route::PublishJson,
        ),
    ];
    for (what, body, route) in cases {
        let (status, issue) = publish(&bench, route, &body).await;
        assert_eq!(status, 400, "{what}: {issue}");
    }
    let (status, issue) = publish(
        &bench,
        Route::PublishJson,
        &json_narrative(
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>Jack &amp; Jill</p></div>"#,
        ),
    )
    .await;
    assert_eq!(status, 202, "a plain JSON narrative: {issue}");
}
