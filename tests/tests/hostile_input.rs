//! Whatever a client sends, every API handler answers a success or a 4xx,
//! never a 5xx: the in-memory stores never fail, so a 5xx here could only be
//! the hub mishandling input. Bodies, content types, path and query values
//! are generated (proptest), for each kind of caller.

use std::collections::HashMap;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequest, ApiGatewayProxyRequest, ApiGatewayProxyResponse,
};
use aws_lambda_events::http::HeaderValue;
use e2e_tests::api_request;
use hub::EventType;
use hub::auth::{Caller, Client, HubSigner, Role};
use hub::lambda;
use hub::memory::{
    MemoryAuditLog, MemoryClientStore, MemoryEventStore, MemoryQueueProvisioner,
    MemoryRegisterStore, MemoryReplayGuard, MemorySubscriberStore, MemorySubscriptionStore,
};
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

struct Stores {
    events: MemoryEventStore,
    subscribers: MemorySubscriberStore,
    subscriptions: MemorySubscriptionStore,
    provisioner: MemoryQueueProvisioner,
    clients: MemoryClientStore,
    audit: MemoryAuditLog,
    register: MemoryRegisterStore,
    replay: MemoryReplayGuard,
    signer: HubSigner,
    stats: hub::memory::MemoryDeliveryStats,
    queues: hub::memory::MemoryQueues,
}

fn key_file(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/tests/keys")
            .join(name),
    )
    .unwrap()
}

fn stores() -> Stores {
    Stores {
        events: MemoryEventStore::default(),
        subscribers: MemorySubscriberStore::default(),
        subscriptions: MemorySubscriptionStore::default(),
        provisioner: MemoryQueueProvisioner::default(),
        clients: MemoryClientStore::default(),
        audit: MemoryAuditLog::default(),
        register: MemoryRegisterStore::default(),
        replay: MemoryReplayGuard::default(),
        signer: HubSigner::from_pem(&key_file("hub-ec.pem"), &key_file("hub-ec.pub.pem")).unwrap(),
        stats: hub::memory::MemoryDeliveryStats::default(),
        queues: hub::memory::MemoryQueues::default(),
    }
}

/// A caller holding every role and permission, so that input reaches every
/// check past the role ones; and no caller at all.
fn callers() -> Vec<Option<Caller>> {
    let everything = Client {
        client_id: "everything".into(),
        ods_code: OdsCode::parse("A83627").unwrap(),
        roles: [Role::Publisher, Role::Subscriber, Role::Operator].into(),
        keys: Default::default(),
        enabled: true,
        publish_event_types: EventType::ALL.iter().copied().collect(),
        publish_for_ods: ["A83627".to_owned(), "RR8".to_owned(), "X26".to_owned()].into(),
        subscriber_id: Some("9a830b79-90b0-4cd7-87fb-0862a75a6362".into()),
        subscribe_explicit: true,
        subscribe_generic: [("GP_GP_GP".to_owned(), ["A83627".to_owned()].into())].into(),
    };
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

fn assert_not_5xx(what: &str, response: &ApiGatewayProxyResponse) {
    assert!(
        response.status_code < 500,
        "{what} answered {}: {:?}",
        response.status_code,
        response.body
    );
}

/// Every API handler, fed one request.
async fn every_handler(stores: &Stores, request: &ApiGatewayProxyRequest) {
    let s = stores;
    for &event_type in EventType::ALL {
        let response = lambda::publish(&s.events, &s.audit, &s.register, event_type, request).await;
        assert_not_5xx(event_type.code(), &response);
    }
    let answers = [
        (
            "create subscription",
            lambda::create_subscription(&s.subscriptions, &s.subscribers, &s.audit, request).await,
        ),
        (
            "read subscription",
            lambda::read_subscription(&s.subscriptions, &s.audit, request).await,
        ),
        (
            "list subscriptions",
            lambda::list_subscriptions(&s.subscriptions, &s.audit, request).await,
        ),
        (
            "delete subscription",
            lambda::delete_subscription(&s.subscriptions, &s.audit, request).await,
        ),
        (
            "onboard",
            lambda::onboard(
                &s.subscribers,
                &s.provisioner,
                &s.clients,
                &s.audit,
                request,
            )
            .await,
        ),
        (
            "offboard",
            lambda::offboard(
                &s.subscribers,
                &s.subscriptions,
                &s.provisioner,
                &s.audit,
                request,
            )
            .await,
        ),
        (
            "change subscriber",
            lambda::change_subscriber(
                &s.subscribers,
                &s.subscriptions,
                &s.provisioner,
                &s.audit,
                request,
            )
            .await,
        ),
        (
            "register client",
            lambda::register_client(&s.clients, &s.audit, request).await,
        ),
        (
            "disable client",
            lambda::disable_client(&s.clients, &s.audit, request).await,
        ),
        ("read audit", lambda::read_audit(&s.audit, request).await),
        (
            "read event",
            lambda::read_event(&s.events, &s.subscriptions, &s.register, &s.audit, request).await,
        ),
        (
            "read child",
            lambda::read_child(&s.register, &s.audit, request).await,
        ),
        (
            "subscriber status",
            lambda::subscriber_status(&s.subscribers, &s.stats, &s.queues, &s.audit, request).await,
        ),
        (
            "redrive",
            lambda::redrive(&s.subscribers, &s.queues, &s.audit, request).await,
        ),
        (
            "token",
            lambda::token(
                &s.clients,
                &s.replay,
                &s.signer,
                &s.audit,
                Some("https://hub.example/oauth2/token"),
                request,
            )
            .await,
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
            let answer = lambda::authorize(&keys, &stores.clients, &stores.audit, &request).await;
            prop_assert!(answer.is_ok());
            Ok(())
        })?;
    }
}
