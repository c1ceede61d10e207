//! Who may do what: every route against every role, through the Lambda
//! handlers with the in-memory adapters (the authorizer's context is what
//! API Gateway would pass on). The same rules are exercised through the
//! local stack's authorizer in tests/auth.rs.

use hub::ports::Adapters;
use hub::subscription::DailyLimit;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_lambda_events::apigw::{ApiGatewayCustomAuthorizerRequest, ApiGatewayProxyRequest};
use aws_lambda_events::http::HeaderValue;
use e2e_tests::{fixture, subscription_resource};
use hub::EventType;
use hub::app::auth::HubSigner;
use hub::audit::{Action, AuditRecord};
use hub::auth::{Caller, Client, Role};
use hub::events::Retention;
use hub::lambda;
use hub::memory::{MemoryAuditLog, MemoryClientStore, MemoryEventStore, MemoryUsedAssertionIds};
use hub::memory::{MemoryPorts, PemSigningKey};
use hub::ports::{AuditLog, ClientStore};
use hub::subscriber::OdsCode;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

const VACCINATION_ID: &str = "85c8a1c5-a8a1-41c9-bb99-20956fa66218";
const PATIENT: &str = "9912003888";

fn key_file(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/tests/keys")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn client(client_id: &str, ods: &str, roles: &[Role]) -> Client {
    let key = EncodingKey::from_ec_pem(&key_file("client-ec.pem")).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some("key-1".into());
    Client {
        client_id: client_id.into(),
        ods_code: OdsCode::parse(ods).unwrap(),
        roles: roles.iter().copied().collect(),
        keys: JwkSet { keys: vec![jwk] },
        enabled: true,
        publish_event_types: BTreeSet::new(),
        publish_for_ods: BTreeSet::new(),
        subscriber_id: None,
        subscribe_explicit: false,
        subscribe_generic: BTreeMap::new(),
        sensitivity_authority: false,
        relationship_sources: Default::default(),
        pchr: None,
    }
}

/// The hub, in memory, with a publisher of vaccinations for A83627, two
/// onboarded subscribers and an operator.
struct World {
    stores: MemoryPorts,
    publisher: Caller,
    subscriber_a: Caller,
    subscriber_b: Caller,
    operator: Caller,
    /// The explicit subscriptions a subscriber may create a day.
    limit: DailyLimit,
}

/// The world's stores read as its own fields (`world.audit`).
impl std::ops::Deref for World {
    type Target = MemoryPorts;

    fn deref(&self) -> &MemoryPorts {
        &self.stores
    }
}

impl World {
    async fn new() -> World {
        let mut world = World {
            stores: MemoryPorts::default(),
            publisher: Caller::of(&client("unused", "RR8", &[])),
            subscriber_a: Caller::of(&client("unused", "RR8", &[])),
            subscriber_b: Caller::of(&client("unused", "RR8", &[])),
            operator: Caller::of(&client("operator", "X26", &[Role::Operator])),
            limit: DailyLimit::DEFAULT,
        };
        let mut publisher = client("publisher", "A83627", &[Role::Publisher]);
        publisher.publish_event_types = BTreeSet::from([EventType::Vaccinations]);
        publisher.publish_for_ods = BTreeSet::from(["A83627".to_owned()]);
        world.publisher = Caller::of(&publisher);
        world.subscriber_a = world.onboarded("subscriber-a", "A83627").await;
        world.subscriber_b = world.onboarded("subscriber-b", "B82001").await;
        world
    }

    /// The handlers' ports: the world's stores.
    fn ports(&self) -> &MemoryPorts {
        &self.stores
    }

    /// A subscriber client, onboarded by the operator through the handler.
    async fn onboarded(&self, client_id: &str, ods: &str) -> Caller {
        let mut registered = client(client_id, ods, &[Role::Subscriber]);
        registered.subscribe_explicit = true;
        self.clients.register(&registered).await.unwrap();
        let body = json!({"clientId": client_id, "odsCode": ods, "name": client_id, "eventTypes": ["vaccinations-1"]});
        let response = self.onboard(Some(&self.operator), &body.to_string()).await;
        assert_eq!(response.0, 201, "{}", response.1);
        let client = self.clients.get(client_id).await.unwrap().unwrap();
        assert!(client.subscriber_id.is_some());
        Caller::of(&client)
    }

    async fn publish(&self, caller: Option<&Caller>, event_type: EventType, body: &str) -> u16 {
        let request = request(caller, "application/fhir+xml", Some(body), &[]);
        status(&lambda::publish(self.ports(), event_type, &request, Retention::DEFAULT).await)
    }

    async fn onboard(&self, caller: Option<&Caller>, body: &str) -> (u16, Value) {
        let request = request(caller, "application/json", Some(body), &[]);
        answer(lambda::onboard(self.ports(), &request).await)
    }

    async fn subscribe(&self, caller: Option<&Caller>, subscriber_id: &str) -> (u16, Value) {
        let criteria = format!(
            "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{PATIENT}&MessageHeader.event=vaccinations-1"
        );
        let ods = self
            .subscribers_ods(subscriber_id)
            .unwrap_or_else(|| "A83627".into());
        let body = subscription_resource(subscriber_id, &ods, &criteria).to_string();
        let request = request(caller, "application/fhir+json", Some(&body), &[]);
        answer(lambda::create_subscription(self.ports(), &request, self.limit).await)
    }

    fn subscribers_ods(&self, subscriber_id: &str) -> Option<String> {
        [&self.subscriber_a, &self.subscriber_b]
            .into_iter()
            .find(|caller| caller.subscriber_id.as_deref() == Some(subscriber_id))
            .map(|caller| caller.ods_code.as_str().to_owned())
    }

    async fn read_subscription(&self, caller: Option<&Caller>, id: &str) -> u16 {
        let request = request(caller, "application/fhir+json", None, &[("id", id)]);
        status(&lambda::read_subscription(self.ports(), &request).await)
    }

    async fn delete_subscription(&self, caller: Option<&Caller>, id: &str) -> u16 {
        let request = request(caller, "application/fhir+json", None, &[("id", id)]);
        status(&lambda::delete_subscription(self.ports(), &request).await)
    }

    async fn list_subscriptions(&self, caller: Option<&Caller>) -> (u16, Value) {
        let request = request(caller, "application/fhir+json", None, &[]);
        answer(lambda::list_subscriptions(self.ports(), &request).await)
    }

    async fn read_event(&self, caller: Option<&Caller>) -> u16 {
        self.read_event_id(caller, VACCINATION_ID).await
    }

    async fn read_event_id(&self, caller: Option<&Caller>, id: &str) -> u16 {
        let request = request(caller, "application/fhir+json", None, &[("id", id)]);
        status(&lambda::read_event(self.ports(), &request).await)
    }

    async fn read_child_events(&self, caller: Option<&Caller>) -> (u16, Value) {
        let request = request(
            caller,
            "application/fhir+json",
            None,
            &[("nhsNumber", PATIENT)],
        );
        answer(lambda::read_child_events(self.ports(), &request, Retention::DEFAULT).await)
    }

    /// `POST /Subscription/{id}/$replay?since=2026-01-01`.
    async fn start_replay(&self, caller: Option<&Caller>, subscription_id: &str) -> (u16, Value) {
        let mut request = request(
            caller,
            "application/fhir+json",
            None,
            &[("id", subscription_id)],
        );
        request.query_string_parameters =
            HashMap::from([("since".to_owned(), "2026-01-01".to_owned())]).into();
        answer(lambda::start_replay(self.ports(), &request, Retention::DEFAULT).await)
    }

    async fn read_replay(&self, caller: Option<&Caller>, replay_id: &str) -> (u16, Value) {
        let request = request(caller, "application/json", None, &[("id", replay_id)]);
        answer(lambda::read_replay(self.ports(), &request).await)
    }

    async fn read_audit(&self, caller: Option<&Caller>, query: &[(&str, &str)]) -> (u16, Value) {
        let mut request = request(caller, "application/json", None, &[]);
        let query: HashMap<String, String> = query
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        request.query_string_parameters = query.into();
        answer(lambda::read_audit(self.ports(), &request).await)
    }

    async fn register_client(&self, caller: Option<&Caller>, client_id: &str) -> u16 {
        let registration = json!({
            "clientId": client_id,
            "odsCode": "A83627",
            "roles": ["publisher"],
            "keys": serde_json::to_value(&client(client_id, "A83627", &[]).keys).unwrap(),
            "publishEventTypes": ["vaccinations-1"],
            "publishForOds": ["A83627"],
        });
        let request = request(
            caller,
            "application/json",
            Some(&registration.to_string()),
            &[],
        );
        status(&lambda::register_client(self.ports(), &request).await)
    }

    async fn disable_client(&self, caller: Option<&Caller>, client_id: &str) -> u16 {
        let request = request(caller, "application/json", None, &[("id", client_id)]);
        status(&lambda::disable_client(self.ports(), &request).await)
    }

    async fn subscriber_status(
        &self,
        caller: Option<&Caller>,
        subscriber_id: &str,
    ) -> (u16, Value) {
        let request = request(caller, "application/json", None, &[("id", subscriber_id)]);
        answer(lambda::subscriber_status(self.ports(), &request).await)
    }

    async fn redrive(&self, caller: Option<&Caller>, subscriber_id: &str) -> (u16, Value) {
        let request = request(caller, "application/json", None, &[("id", subscriber_id)]);
        answer(lambda::redrive(self.ports(), &request).await)
    }

    async fn change_subscriber(
        &self,
        caller: Option<&Caller>,
        subscriber_id: &str,
        body: &str,
    ) -> u16 {
        let request = request(
            caller,
            "application/json",
            Some(body),
            &[("id", subscriber_id)],
        );
        status(&lambda::change_subscriber(self.ports(), &request).await)
    }

    async fn offboard(&self, caller: Option<&Caller>, subscriber_id: &str) -> u16 {
        let request = request(caller, "application/json", None, &[("id", subscriber_id)]);
        status(&lambda::offboard(self.ports(), &request).await)
    }
}

use e2e_tests::{api_answer as answer, api_request as request};

fn status(response: &aws_lambda_events::apigw::ApiGatewayProxyResponse) -> u16 {
    u16::try_from(response.status_code).unwrap()
}

fn vaccination() -> String {
    fixture("nems/vaccinations-1-new.xml")
}

/// The sample vaccination, by the test publisher, for an organisation it is
/// not registered to publish for.
async fn publish_for_another_organisation(world: &World) -> u16 {
    let body = vaccination().replace("A83627", "B82001");
    world
        .publish(Some(&world.publisher), EventType::Vaccinations, &body)
        .await
}

#[tokio::test]
async fn only_a_publisher_registered_for_the_type_and_organisation_publishes() {
    let world = World::new().await;
    assert_eq!(
        world
            .publish(None, EventType::Vaccinations, &vaccination())
            .await,
        401
    );
    for caller in [&world.subscriber_a, &world.operator] {
        assert_eq!(
            world
                .publish(Some(caller), EventType::Vaccinations, &vaccination())
                .await,
            403,
            "{}",
            caller.client_id
        );
    }
    // Another event type than it was registered for.
    let blood_spot = fixture("nems/blood-spot-test-outcome-1-new.xml");
    assert_eq!(
        world
            .publish(
                Some(&world.publisher),
                EventType::BloodSpotTestOutcome,
                &blood_spot
            )
            .await,
        403
    );
    // Its type, but for an organisation it does not publish for.
    assert_eq!(publish_for_another_organisation(&world).await, 403);
    assert!(world.events.is_empty(), "nothing refused was stored");
    assert_eq!(
        world
            .publish(
                Some(&world.publisher),
                EventType::Vaccinations,
                &vaccination()
            )
            .await,
        202
    );
}

#[tokio::test]
async fn a_refused_publish_names_the_element_at_fault() {
    let world = World::new().await;
    let other_responsible = vaccination().replace("A83627", "B82001");
    let request = request(
        Some(&world.publisher),
        "application/fhir+json",
        Some(&other_responsible),
        &[],
    );
    let mut request = request;
    request.headers.insert(
        "content-type",
        HeaderValue::from_static("application/fhir+xml"),
    );
    let (status, outcome) = answer(
        lambda::publish(
            world.ports(),
            EventType::Vaccinations,
            &request,
            Retention::DEFAULT,
        )
        .await,
    );
    assert_eq!(status, 403);
    assert_eq!(outcome["issue"][0]["code"], "forbidden");
    assert_eq!(
        outcome["issue"][0]["expression"],
        json!(["MessageHeader.responsible"])
    );
}

#[tokio::test]
async fn only_operators_onboard_offboard_register_disable_and_read_the_audit() {
    let world = World::new().await;
    let nobody: Option<&Caller> = None;
    let refused_callers = [
        (nobody, 401),
        (Some(&world.publisher), 403),
        (Some(&world.subscriber_a), 403),
    ];
    let mut newcomer = client("newcomer", "C81001", &[Role::Subscriber]);
    newcomer.subscribe_explicit = true;
    world.clients.register(&newcomer).await.unwrap();
    let onboarding = json!({"clientId": "newcomer", "odsCode": "C81001", "name": "newcomer", "eventTypes": ["vaccinations-1"]}).to_string();
    let subscriber_b = world.subscriber_b.subscriber_id.clone().unwrap();
    for (caller, expected) in refused_callers {
        let who = caller.map_or("nobody", |caller| caller.client_id.as_str());
        assert_eq!(
            world.onboard(caller, &onboarding).await.0,
            expected,
            "onboard by {who}"
        );
        assert_eq!(
            world.offboard(caller, &subscriber_b).await,
            expected,
            "offboard by {who}"
        );
        assert_eq!(
            world
                .change_subscriber(caller, &subscriber_b, r#"{"awsPrincipal": "111122223333"}"#)
                .await,
            expected,
            "change by {who}"
        );
        assert_eq!(
            world.register_client(caller, "another").await,
            expected,
            "register by {who}"
        );
        assert_eq!(
            world.disable_client(caller, "newcomer").await,
            expected,
            "disable by {who}"
        );
        assert_eq!(
            world.read_audit(caller, &[("patient", PATIENT)]).await.0,
            expected,
            "audit by {who}"
        );
    }
    let operator = Some(&world.operator);
    assert_eq!(world.onboard(operator, &onboarding).await.0, 201);
    assert_eq!(
        world
            .change_subscriber(
                operator,
                &subscriber_b,
                r#"{"awsPrincipal": "111122223333"}"#
            )
            .await,
        200
    );
    assert_eq!(world.offboard(operator, &subscriber_b).await, 200);
    assert_eq!(world.register_client(operator, "another").await, 201);
    assert_eq!(
        world.register_client(operator, "another").await,
        200,
        "a re-registration"
    );
    assert_eq!(world.disable_client(operator, "newcomer").await, 204);
    assert!(
        !world
            .clients
            .get("newcomer")
            .await
            .unwrap()
            .unwrap()
            .enabled
    );
    assert_eq!(world.disable_client(operator, "no-such-client").await, 404);
    assert_eq!(
        world.read_audit(operator, &[("patient", PATIENT)]).await.0,
        200
    );
}

#[tokio::test]
async fn onboarding_needs_a_subscriber_client_of_the_same_organisation_not_yet_linked() {
    let world = World::new().await;
    let operator = Some(&world.operator);
    let body = |client_id: &str, ods: &str| {
        json!({"clientId": client_id, "odsCode": ods, "name": "x", "eventTypes": ["vaccinations-1"]}).to_string()
    };
    // A publisher client cannot become a subscriber.
    let (status, outcome) = world.onboard(operator, &body("publisher", "A83627")).await;
    assert_eq!(status, 422);
    assert_eq!(outcome["issue"][0]["expression"], json!(["clientId"]));
    // Unknown client; another organisation; already acting as a subscriber.
    assert_eq!(
        world.onboard(operator, &body("nobody", "A83627")).await.0,
        422
    );
    assert_eq!(
        world
            .onboard(operator, &body("subscriber-a", "B82001"))
            .await
            .0,
        422
    );
    assert_eq!(
        world
            .onboard(operator, &body("subscriber-a", "A83627"))
            .await
            .0,
        422
    );
    // Without a client at all.
    let (status, outcome) = world
        .onboard(
            operator,
            r#"{"odsCode":"A83627","name":"x","eventTypes":["vaccinations-1"]}"#,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(outcome["issue"][0]["expression"], json!(["clientId"]));
}

#[tokio::test]
async fn subscribers_manage_only_their_own_subscriptions() {
    let world = World::new().await;
    let a = world.subscriber_a.subscriber_id.clone().unwrap();
    let b = world.subscriber_b.subscriber_id.clone().unwrap();

    // Creating: for itself only, and only with the subscriber role.
    assert_eq!(world.subscribe(None, &a).await.0, 401);
    assert_eq!(world.subscribe(Some(&world.publisher), &a).await.0, 403);
    assert_eq!(world.subscribe(Some(&world.operator), &a).await.0, 403);
    let (status, outcome) = world.subscribe(Some(&world.subscriber_a), &b).await;
    assert_eq!(status, 403);
    assert_eq!(
        outcome["issue"][0]["expression"],
        json!(["Subscription.channel.endpoint"])
    );
    let (status, created) = world.subscribe(Some(&world.subscriber_a), &a).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();

    // Reading and deleting: another subscriber's is not found; other roles
    // are refused.
    assert_eq!(
        world
            .read_subscription(Some(&world.subscriber_a), &id)
            .await,
        200
    );
    assert_eq!(
        world
            .read_subscription(Some(&world.subscriber_b), &id)
            .await,
        404
    );
    assert_eq!(
        world.read_subscription(Some(&world.publisher), &id).await,
        403
    );
    assert_eq!(
        world.read_subscription(Some(&world.operator), &id).await,
        403
    );
    assert_eq!(world.read_subscription(None, &id).await, 401);
    assert_eq!(
        world
            .delete_subscription(Some(&world.subscriber_b), &id)
            .await,
        404
    );
    assert_eq!(
        world.delete_subscription(Some(&world.operator), &id).await,
        403
    );

    // Listing: the caller's own, whatever it asks for.
    let (status, bundle) = world.list_subscriptions(Some(&world.subscriber_a)).await;
    assert_eq!(status, 200);
    assert_eq!(
        bundle["entry"].as_array().map_or(0, Vec::len),
        1,
        "{bundle}"
    );
    let (status, bundle) = world.list_subscriptions(Some(&world.subscriber_b)).await;
    assert_eq!(status, 200);
    assert_eq!(
        bundle["entry"].as_array().map_or(0, Vec::len),
        0,
        "{bundle}"
    );
    assert_eq!(
        world.list_subscriptions(Some(&world.publisher)).await.0,
        403
    );

    assert_eq!(
        world
            .delete_subscription(Some(&world.subscriber_a), &id)
            .await,
        204
    );
    assert_eq!(
        world
            .read_subscription(Some(&world.subscriber_a), &id)
            .await,
        404
    );
}

#[tokio::test]
async fn explicit_and_generic_subscriptions_need_their_own_permission() {
    let world = World::new().await;
    let a = world.subscriber_a.subscriber_id.clone().unwrap();
    let mut narrowed = world.subscriber_a.clone();
    narrowed.subscribe_explicit = false;
    let (status, outcome) = world.subscribe(Some(&narrowed), &a).await;
    assert_eq!(status, 403);
    assert_eq!(
        outcome["issue"][0]["expression"],
        json!(["Subscription.criteria"])
    );

    use hub::criteria::{RuleType, Target};
    let mut area = world.subscriber_a.clone();
    area.subscribe_generic =
        BTreeMap::from([("GP_GP_GP".to_owned(), BTreeSet::from(["A83627".to_owned()]))]);
    let practice = |code: &str| Target::Generic {
        rule: RuleType::GpGpGp,
        organisation: Some(code.to_owned()),
    };
    assert!(area.may_subscribe(&practice("A83627")).is_ok());
    assert!(
        area.may_subscribe(&practice("a83627")).is_ok(),
        "codes ignore case"
    );
    assert!(area.may_subscribe(&practice("B82001")).is_err());
    assert!(
        area.may_subscribe(&Target::Generic {
            rule: RuleType::GpGpGp,
            organisation: None
        })
        .is_err()
    );
    assert!(
        area.may_subscribe(&Target::Generic {
            rule: RuleType::CountryCode,
            organisation: Some("E92000001".into())
        })
        .is_err()
    );
}

#[tokio::test]
async fn an_event_is_read_only_by_its_recipients_its_publisher_and_operators() {
    let world = World::new().await;
    assert_eq!(
        world
            .publish(
                Some(&world.publisher),
                EventType::Vaccinations,
                &vaccination()
            )
            .await,
        202
    );
    let a = world.subscriber_a.subscriber_id.clone().unwrap();
    // The delivery to subscriber A, as dispatch records it.
    let event_key = format!("vaccinations-1/{VACCINATION_ID}");
    world
        .audit
        .record(&AuditRecord::delivery(
            &event_key,
            &a,
            hub::NhsNumber::parse(PATIENT).ok(),
            time::OffsetDateTime::now_utc(),
        ))
        .await
        .unwrap();
    assert_eq!(world.read_event(Some(&world.subscriber_a)).await, 200);
    assert_eq!(world.read_event(Some(&world.publisher)).await, 200);
    assert_eq!(world.read_event(Some(&world.subscriber_b)).await, 404);
    assert_eq!(world.read_event(Some(&world.operator)).await, 200);
    assert_eq!(world.read_event(None).await, 401);
}

#[tokio::test]
async fn a_childs_events_are_for_operators_and_subscribers_with_an_explicit_subscription() {
    let world = World::new().await;
    let a = world.subscriber_a.subscriber_id.clone().unwrap();
    // Subscriber A subscribes to the child's vaccinations; B does not.
    let (status, created) = world.subscribe(Some(&world.subscriber_a), &a).await;
    assert_eq!(status, 201, "{created}");
    a_moment_later().await;
    assert_eq!(
        world
            .publish(
                Some(&world.publisher),
                EventType::Vaccinations,
                &vaccination()
            )
            .await,
        202
    );
    let nobody: Option<&Caller> = None;
    for (caller, expected) in [
        (nobody, 401),
        (Some(&world.publisher), 403),
        (Some(&world.subscriber_b), 403),
        (Some(&world.subscriber_a), 200),
        (Some(&world.operator), 200),
    ] {
        let who = caller.map_or("nobody", |caller| caller.client_id.as_str());
        let (status, body) = world.read_child_events(caller).await;
        assert_eq!(status, expected, "history by {who}: {body}");
        if status == 200 {
            assert_eq!(body["resourceType"], "Bundle", "{who}");
            assert_eq!(body["total"], 1, "history by {who}: {body}");
        }
    }
    let (_, outcome) = world.read_child_events(Some(&world.subscriber_b)).await;
    assert_eq!(outcome["issue"][0]["code"], "forbidden");
    assert_eq!(outcome["issue"][0]["expression"], json!(["nhsNumber"]));
}

#[tokio::test]
async fn a_replay_is_started_by_its_subscriber_and_read_by_it_and_operators() {
    let world = World::new().await;
    let a = world.subscriber_a.subscriber_id.clone().unwrap();
    let (status, created) = world.subscribe(Some(&world.subscriber_a), &a).await;
    assert_eq!(status, 201, "{created}");
    let subscription = created["id"].as_str().unwrap().to_owned();
    let nobody: Option<&Caller> = None;
    // Starting one needs the subscriber role (the subscription is looked up
    // as the caller's own), and another subscriber's is not found.
    for (caller, expected) in [
        (nobody, 401),
        (Some(&world.publisher), 403),
        (Some(&world.operator), 403),
        (Some(&world.subscriber_b), 404),
    ] {
        let who = caller.map_or("nobody", |caller| caller.client_id.as_str());
        let (status, body) = world.start_replay(caller, &subscription).await;
        assert_eq!(status, expected, "replay by {who}: {body}");
    }
    let (status, job) = world
        .start_replay(Some(&world.subscriber_a), &subscription)
        .await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["status"], "running");
    let replay = job["id"].as_str().unwrap().to_owned();
    // Reading it: its subscriber and operators; anyone else is not found.
    for (caller, expected) in [
        (nobody, 401),
        (Some(&world.subscriber_b), 404),
        (Some(&world.publisher), 404),
        (Some(&world.subscriber_a), 200),
        (Some(&world.operator), 200),
    ] {
        let who = caller.map_or("nobody", |caller| caller.client_id.as_str());
        let (status, body) = world.read_replay(caller, &replay).await;
        assert_eq!(status, expected, "replay read by {who}: {body}");
        if status == 200 {
            assert_eq!(body["id"], replay.as_str(), "{who}");
        }
    }
    let records = world.audit.records();
    assert!(
        records.iter().any(|record| record.action == Action::Replay
            && record.status == 202
            && record.subscription_id.as_deref() == Some(subscription.as_str())),
        "the replay's start is audited with its subscription"
    );
    assert_eq!(
        records
            .iter()
            .filter(|record| record.action == Action::ReplayRead)
            .count(),
        5
    );
}

#[tokio::test]
async fn every_request_is_audited_with_who_what_which_patient_and_outcome() {
    let world = World::new().await;
    world
        .publish(
            Some(&world.publisher),
            EventType::Vaccinations,
            &vaccination(),
        )
        .await;
    world
        .publish(
            Some(&world.subscriber_a),
            EventType::Vaccinations,
            &vaccination(),
        )
        .await;
    world
        .publish(None, EventType::Vaccinations, &vaccination())
        .await;
    let publishes: Vec<AuditRecord> = world
        .audit
        .records()
        .into_iter()
        .filter(|record| record.action == Action::Publish)
        .collect();
    assert_eq!(publishes.len(), 3);
    assert_eq!(publishes[0].client_id, "publisher");
    assert_eq!(publishes[0].ods_code.as_deref(), Some("A83627"));
    assert_eq!(publishes[0].status, 202);
    assert_eq!(publishes[0].nhs_number.as_deref(), Some(PATIENT));
    assert_eq!(
        publishes[0].event_key.as_deref(),
        Some(format!("vaccinations-1/{VACCINATION_ID}").as_str())
    );
    assert_eq!(publishes[1].client_id, "subscriber-a");
    assert_eq!(
        (publishes[1].status, publishes[1].detail.as_deref()),
        (403, Some("ACCESS_DENIED"))
    );
    assert_eq!(publishes[2].client_id, hub::audit::ANONYMOUS);
    assert_eq!(publishes[2].status, 401);

    // Operators query the trail by patient and by client, newest first.
    let (status, trail) = world
        .read_audit(Some(&world.operator), &[("patient", PATIENT)])
        .await;
    assert_eq!(status, 200);
    // The accepted publish and the refused one by a known client; the
    // anonymous attempt's body was not read.
    let entries = trail["entries"].as_array().unwrap();
    let statuses: Vec<&Value> = entries.iter().map(|entry| &entry["status"]).collect();
    assert_eq!(statuses, [403, 202], "{trail}");
    assert!(entries.iter().all(|entry| entry["action"] == "publish"));
    let (_, trail) = world
        .read_audit(Some(&world.operator), &[("client", "subscriber-a")])
        .await;
    assert_eq!(trail["entries"][0]["status"], 403, "{trail}");
    // The operator's own reads are in the trail too.
    let (_, trail) = world
        .read_audit(Some(&world.operator), &[("client", "operator")])
        .await;
    assert!(
        trail["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["action"] == "audit-read" && entry["nhsNumber"] == PATIENT),
        "{trail}"
    );
    // A bad query is a 400 naming the parameter.
    let (status, outcome) = world
        .read_audit(Some(&world.operator), &[("patient", "1234567890")])
        .await;
    assert_eq!(status, 400);
    assert_eq!(outcome["issue"][0]["expression"], json!(["patient"]));
}

#[tokio::test]
async fn a_success_the_audit_cannot_record_is_not_returned() {
    struct BrokenAudit;
    impl AuditLog for BrokenAudit {
        async fn record(&self, _: &AuditRecord) -> Result<(), hub::ports::StoreError> {
            Err(hub::ports::StoreError::Unavailable(
                "audit table down".into(),
            ))
        }
        async fn record_all(&self, _: &[AuditRecord]) -> Result<(), hub::ports::StoreError> {
            Err(hub::ports::StoreError::Unavailable(
                "audit table down".into(),
            ))
        }
        async fn get(&self, _: &str) -> Result<Option<AuditRecord>, hub::ports::StoreError> {
            Ok(None)
        }
        async fn query(
            &self,
            _: &hub::audit::AuditQuery,
            _: usize,
            _: Option<&str>,
        ) -> Result<hub::ports::Page<AuditRecord>, hub::ports::StoreError> {
            Ok(hub::ports::Page {
                items: vec![],
                next: None,
            })
        }
    }
    let world = World::new().await;
    let request = request(Some(&world.operator), "application/json", None, &[]);
    let mut request = request;
    request.query_string_parameters =
        HashMap::from([("patient".to_owned(), PATIENT.to_owned())]).into();
    let (status, outcome) =
        answer(lambda::read_audit(&Adapters::new().audit(&BrokenAudit), &request).await);
    assert_eq!(status, 503);
    assert_eq!(outcome["issue"][0]["code"], "transient");
}

// ---------------------------------------------------------------------------
// The authorizer and the token endpoint, as handlers
// ---------------------------------------------------------------------------

fn hub_signer() -> HubSigner<PemSigningKey> {
    HubSigner::from_pem(&key_file("hub-ec.pem"), &key_file("hub-ec.pub.pem")).unwrap()
}

const TOKEN_URL: &str = "https://hub.example.nhs.uk/oauth2/token";

/// A token request with an assertion signed now by `client_id` with the
/// test client key (registered as `key-1`).
fn token_request_as(client_id: &str) -> ApiGatewayProxyRequest {
    let key = EncodingKey::from_ec_pem(&key_file("client-ec.pem")).unwrap();
    let assertion = hub::auth::sign_client_assertion(
        client_id,
        "key-1",
        &key,
        Algorithm::ES256,
        TOKEN_URL,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    token_request(&hub::auth::token_request_form(&assertion))
}

fn token_request(form: &str) -> ApiGatewayProxyRequest {
    let mut request = ApiGatewayProxyRequest::default();
    request.headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    request.body = Some(form.to_owned());
    request
}

#[tokio::test]
async fn a_token_from_the_endpoint_passes_the_authorizer_with_the_clients_permissions() {
    let clients = MemoryClientStore::default();
    let mut publisher = client("publisher", "A83627", &[Role::Publisher]);
    publisher.publish_event_types = BTreeSet::from([EventType::Vaccinations]);
    publisher.publish_for_ods = BTreeSet::from(["A83627".to_owned()]);
    clients.put(publisher.clone()).unwrap();
    let (replay, audit, signer) = (
        MemoryUsedAssertionIds::default(),
        MemoryAuditLog::default(),
        hub_signer(),
    );
    let request = token_request_as("publisher");
    let (status, body) = answer(
        lambda::token(
            &Adapters::new()
                .clients(&clients)
                .used_ids(&replay)
                .signing_key(signer.key())
                .audit(&audit),
            Some(TOKEN_URL),
            &request,
        )
        .await,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().unwrap().to_owned();

    // The same assertion again is a replay.
    let (status, outcome) = answer(
        lambda::token(
            &Adapters::new()
                .clients(&clients)
                .used_ids(&replay)
                .signing_key(signer.key())
                .audit(&audit),
            Some(TOKEN_URL),
            &request,
        )
        .await,
    );
    assert_eq!(status, 401);
    assert_eq!(outcome["issue"][0]["code"], "security");

    let authorize = |token: Option<String>| {
        let mut request = ApiGatewayCustomAuthorizerRequest::default();
        request.authorization_token = token;
        request.method_arn = Some(
            "arn:aws:execute-api:eu-west-2:123456789012:abc123/dev/POST/events/vaccinations-1"
                .into(),
        );
        request
    };
    let verifier = vec![signer.verifier().clone()];
    let allowed = lambda::authorize(
        &Adapters::new().clients(&clients).audit(&audit),
        &verifier,
        &authorize(Some(format!("Bearer {token}"))),
    )
    .await
    .unwrap();
    let policy = serde_json::to_value(&allowed.policy_document).unwrap();
    assert_eq!(policy["Statement"][0]["Effect"], "Allow");
    assert_eq!(
        policy["Statement"][0]["Resource"],
        json!(["arn:aws:execute-api:eu-west-2:123456789012:abc123/dev/*/*"])
    );
    let context: HashMap<String, Value> = serde_json::from_value(allowed.context).unwrap();
    assert_eq!(Caller::from_context(&context), Some(Caller::of(&publisher)));

    // No token, and a disabled client's token: denied with the reason.
    for (token, code) in [
        (None, "login"),
        (Some(format!("Bearer {token}")), "security"),
    ] {
        if token.is_some() {
            clients.disable("publisher").await.unwrap();
        }
        let denied = lambda::authorize(
            &Adapters::new().clients(&clients).audit(&audit),
            &verifier,
            &authorize(token),
        )
        .await
        .unwrap();
        let policy = serde_json::to_value(&denied.policy_document).unwrap();
        assert_eq!(policy["Statement"][0]["Effect"], "Deny");
        assert_eq!(denied.context["code"], code);
        assert!(
            denied.context["diagnostics"]
                .as_str()
                .is_some_and(|text| !text.is_empty())
        );
    }
    let refusals = audit
        .records()
        .into_iter()
        .filter(|record| record.action == Action::Authenticate)
        .count();
    assert_eq!(refusals, 2, "each refusal is audited");
}

#[tokio::test]
async fn the_token_endpoint_refuses_malformed_requests_naming_the_field() {
    let clients = MemoryClientStore::default();
    let (replay, audit, signer) = (
        MemoryUsedAssertionIds::default(),
        MemoryAuditLog::default(),
        hub_signer(),
    );
    for (form, field) in [
        ("grant_type=password&client_assertion=x", "grant_type"),
        (
            "grant_type=client_credentials&client_assertion=x",
            "client_assertion_type",
        ),
        (
            &format!(
                "grant_type=client_credentials&client_assertion_type={}",
                lambda::CLIENT_ASSERTION_TYPE
            ),
            "client_assertion",
        ),
    ] {
        let (status, outcome) = answer(
            lambda::token(
                &Adapters::new()
                    .clients(&clients)
                    .used_ids(&replay)
                    .signing_key(signer.key())
                    .audit(&audit),
                Some(TOKEN_URL),
                &token_request(form),
            )
            .await,
        );
        assert_eq!(status, 400, "{form}");
        assert_eq!(outcome["issue"][0]["expression"], json!([field]), "{form}");
    }
    let mut json_body = token_request("{}");
    json_body
        .headers
        .insert("content-type", HeaderValue::from_static("application/json"));
    let (status, _) = answer(
        lambda::token(
            &Adapters::new()
                .clients(&clients)
                .used_ids(&replay)
                .signing_key(signer.key())
                .audit(&audit),
            Some(TOKEN_URL),
            &json_body,
        )
        .await,
    );
    assert_eq!(status, 415);
    // An assertion of an unknown client.
    let request = token_request_as("stranger");
    let (status, _) = answer(
        lambda::token(
            &Adapters::new()
                .clients(&clients)
                .used_ids(&replay)
                .signing_key(signer.key())
                .audit(&audit),
            Some(TOKEN_URL),
            &request,
        )
        .await,
    );
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_disabled_client_stays_disabled_through_a_re_registration() {
    let world = World::new().await;
    let operator = Some(&world.operator);
    assert_eq!(world.register_client(operator, "rotating").await, 201);
    assert_eq!(world.disable_client(operator, "rotating").await, 204);
    // A key rotation must not undo the kill switch.
    assert_eq!(world.register_client(operator, "rotating").await, 200);
    assert!(
        !world
            .clients
            .get("rotating")
            .await
            .unwrap()
            .unwrap()
            .enabled
    );
}

#[tokio::test]
async fn refusals_name_the_patient_and_the_client_they_concern() {
    let world = World::new().await;
    // A publish refused for its organisation is in the patient's trail.
    assert_eq!(publish_for_another_organisation(&world).await, 403);
    let refused = world.audit.records().pop().unwrap();
    assert_eq!((refused.action, refused.status), (Action::Publish, 403));
    assert_eq!(refused.nhs_number.as_deref(), Some(PATIENT));
    assert_eq!(
        refused.event_key.as_deref(),
        Some(format!("vaccinations-1/{VACCINATION_ID}").as_str())
    );
    // So is a subscription refused for its subscriber.
    let b = world.subscriber_b.subscriber_id.clone().unwrap();
    assert_eq!(world.subscribe(Some(&world.subscriber_a), &b).await.0, 403);
    let refused = world.audit.records().pop().unwrap();
    assert_eq!(refused.action, Action::SubscriptionCreate);
    assert_eq!(refused.nhs_number.as_deref(), Some(PATIENT));
    assert_eq!(refused.client_id, "subscriber-a");

    // The authorizer's refusal of a disabled client's token names it.
    let (replay, audit, signer) = (
        MemoryUsedAssertionIds::default(),
        MemoryAuditLog::default(),
        hub_signer(),
    );
    let token = signer
        .issue(
            &client("publisher", "A83627", &[Role::Publisher]),
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap()
        .token;
    world
        .clients
        .register(&client("publisher", "A83627", &[Role::Publisher]))
        .await
        .unwrap();
    world.clients.disable("publisher").await.unwrap();
    let mut request = ApiGatewayCustomAuthorizerRequest::default();
    request.authorization_token = Some(format!("Bearer {token}"));
    request.method_arn = Some("arn:aws:execute-api:eu-west-2:1:api/dev/GET/audit".into());
    let keys = vec![signer.verifier().clone()];
    lambda::authorize(
        &Adapters::new().clients(&world.clients).audit(&audit),
        &keys,
        &request,
    )
    .await
    .unwrap();
    let record = audit.records().pop().unwrap();
    assert_eq!(record.action, Action::Authenticate);
    assert_eq!(record.client_id, "publisher");
    assert_eq!(record.detail.as_deref(), Some("DisabledClient GET/audit"));

    // A token request refused as a replay names the client it claims to be.
    let mut subscriber = client("sub-client", "A83627", &[Role::Subscriber]);
    subscriber.enabled = true;
    world.clients.register(&subscriber).await.unwrap();
    let request = token_request_as("sub-client");
    for expected in [200, 401] {
        let response = lambda::token(
            &Adapters::new()
                .clients(&world.clients)
                .used_ids(&replay)
                .signing_key(signer.key())
                .audit(&audit),
            Some(TOKEN_URL),
            &request,
        )
        .await;
        assert_eq!(status(&response), expected);
    }
    let records = audit.records();
    let (issued, replayed) = (&records[records.len() - 2], &records[records.len() - 1]);
    assert_eq!(issued.client_id, "sub-client");
    assert_eq!(issued.ods_code.as_deref(), Some("A83627"));
    assert_eq!(replayed.client_id, "sub-client");
    // Refused after its signature was checked: the client is no mere claim.
    assert_eq!(replayed.detail.as_deref(), Some("ReplayedJti"));

    // An unsigned assertion is filed under the client it claims, as a claim.
    let claims = serde_json::json!({
        "iss": "sub-client", "sub": "sub-client", "aud": TOKEN_URL, "jti": "unsigned-1",
        "exp": time::OffsetDateTime::now_utc().unix_timestamp() + 60,
    });
    let segment = |value: &serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        segment(&serde_json::json!({"alg": "none", "kid": "key-1"})),
        segment(&claims)
    );
    let request = token_request(&hub::auth::token_request_form(&unsigned));
    let response = lambda::token(
        &Adapters::new()
            .clients(&world.clients)
            .used_ids(&replay)
            .signing_key(signer.key())
            .audit(&audit),
        Some(TOKEN_URL),
        &request,
    )
    .await;
    assert_eq!(status(&response), 401);
    let refused = audit.records().pop().unwrap();
    assert_eq!(refused.client_id, "sub-client");
    assert_eq!(
        refused.detail.as_deref(),
        Some("UnsupportedAlgorithm (claimed, unverified)")
    );
}

#[tokio::test]
async fn offboarding_records_each_subscription_it_removes() {
    let world = World::new().await;
    let a = world.subscriber_a.subscriber_id.clone().unwrap();
    let (status, created) = world.subscribe(Some(&world.subscriber_a), &a).await;
    assert_eq!(status, 201);
    assert_eq!(world.offboard(Some(&world.operator), &a).await, 200);
    let removed: Vec<AuditRecord> = world
        .audit
        .records()
        .into_iter()
        .filter(|record| record.action == Action::SubscriptionDelete)
        .collect();
    assert_eq!(removed.len(), 1);
    assert_eq!(
        removed[0].subscription_id.as_deref(),
        created["id"].as_str()
    );
    assert_eq!(removed[0].nhs_number.as_deref(), Some(PATIENT));
    assert_eq!(removed[0].client_id, "operator");
}

#[tokio::test]
async fn ids_are_read_only_in_the_form_the_hub_issues_them() {
    let world = World::new().await;
    let a = world.subscriber_a.subscriber_id.clone().unwrap();
    let (_, created) = world.subscribe(Some(&world.subscriber_a), &a).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        world.read_subscription(Some(&world.subscriber_a), id).await,
        200
    );
    let upper = id.to_ascii_uppercase();
    assert_eq!(
        world
            .read_subscription(Some(&world.subscriber_a), &upper)
            .await,
        404
    );
    let braced = format!("{{{id}}}");
    assert_eq!(
        world
            .read_subscription(Some(&world.subscriber_a), &braced)
            .await,
        404
    );
}

#[tokio::test]
async fn a_publish_about_a_child_the_register_knows_to_be_sensitive_says_so() {
    let world = World::new().await;
    let mut update = hub::register::RegisterUpdate::new(
        hub::NhsNumber::parse(PATIENT).unwrap(),
        "pds-record-change-1/earlier",
        time::OffsetDateTime::now_utc(),
    );
    update.sensitive = Some(true);
    hub::app::register::record_event(
        &world.register,
        &world.audit,
        update,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let mut request = request(
        Some(&world.publisher),
        "application/fhir+xml",
        Some(&vaccination()),
        &[],
    );
    request
        .headers
        .insert("accept", HeaderValue::from_static("application/fhir+json"));
    let (status, outcome) = answer(
        lambda::publish(
            world.ports(),
            EventType::Vaccinations,
            &request,
            Retention::DEFAULT,
        )
        .await,
    );
    assert_eq!(status, 202);
    let codes: Vec<&Value> = outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|issue| &issue["details"]["coding"][0]["code"])
        .collect();
    assert!(codes.contains(&&json!("SENSITIVE_PATIENT")), "{outcome}");
}

#[tokio::test]
async fn delivery_status_and_redrive_are_for_operators_and_the_subscriber_itself() {
    let world = World::new().await;
    let a = world.subscriber_a.subscriber_id.clone().unwrap();
    let nobody: Option<&Caller> = None;
    // Anyone else is told the subscriber does not exist.
    for (caller, expected) in [
        (nobody, 401),
        (Some(&world.publisher), 404),
        (Some(&world.subscriber_b), 404),
        (Some(&world.subscriber_a), 200),
        (Some(&world.operator), 200),
    ] {
        let who = caller.map_or("nobody", |caller| caller.client_id.as_str());
        let (status, body) = world.subscriber_status(caller, &a).await;
        assert_eq!(status, expected, "status by {who}: {body}");
        let (status, body) = world.redrive(caller, &a).await;
        assert_eq!(status, expected, "redrive by {who}: {body}");
    }
    let (status, body) = world.subscriber_status(Some(&world.operator), &a).await;
    assert_eq!(status, 200);
    assert_eq!(body["subscriberId"], a.as_str());
    assert_eq!(body["eventTypes"][0]["eventType"], "vaccinations-1");
    let (status, body) = world.redrive(Some(&world.operator), &a).await;
    assert_eq!(status, 200);
    assert_eq!(body["moved"], 0);
    // An id the hub never issued, or one it did not, even to an operator.
    for id in ["not-a-uuid", "0b7c3f61-2d7e-4f0a-8a55-0f7f7c9d1e22"] {
        assert_eq!(
            world.subscriber_status(Some(&world.operator), id).await.0,
            404
        );
        assert_eq!(world.redrive(Some(&world.operator), id).await.0, 404);
    }
    let records = world.audit.records();
    let of = |action: Action| -> Vec<&AuditRecord> {
        records.iter().filter(|r| r.action == action).collect()
    };
    assert_eq!(of(Action::SubscriberStatus).len(), 8);
    assert_eq!(of(Action::Redrive).len(), 8);
    assert!(
        of(Action::Redrive).iter().any(|r| r.status == 200
            && r.subscriber_id.as_deref() == Some(a.as_str())
            && r.detail.as_deref() == Some("moved 0")),
        "a redrive's record names the subscriber and what moved"
    );
}

/// An event store that counts the reads of a child's events, and can be
/// made to panic on them (a bug in the function).
struct WatchedEvents<'a> {
    inner: &'a MemoryEventStore,
    reads: std::sync::atomic::AtomicUsize,
    panics: bool,
}

impl<'a> WatchedEvents<'a> {
    fn new(inner: &'a MemoryEventStore, panics: bool) -> Self {
        WatchedEvents {
            inner,
            reads: Default::default(),
            panics,
        }
    }

    fn read(&self) {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert!(!self.panics, "the event store's read panicked");
    }

    fn reads(&self) -> usize {
        self.reads.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl hub::ports::EventStore for WatchedEvents<'_> {
    async fn insert(
        &self,
        event: &hub::events::StoredEvent,
    ) -> Result<hub::ports::Insert, hub::ports::StoreError> {
        self.inner.insert(event).await
    }

    async fn set_withheld(
        &self,
        event_key: &str,
        withheld: bool,
    ) -> Result<(), hub::ports::StoreError> {
        self.inner.set_withheld(event_key, withheld).await
    }

    async fn get(
        &self,
        event_key: &str,
    ) -> Result<Option<hub::events::StoredEvent>, hub::ports::StoreError> {
        self.read();
        self.inner.get(event_key).await
    }

    async fn get_many(
        &self,
        event_keys: &[String],
    ) -> Result<Vec<hub::events::StoredEvent>, hub::ports::StoreError> {
        self.read();
        self.inner.get_many(event_keys).await
    }

    async fn patient_events(
        &self,
        nhs_number: hub::NhsNumber,
    ) -> Result<Vec<hub::events::EventSummary>, hub::ports::StoreError> {
        self.read();
        self.inner.patient_events(nhs_number).await
    }

    async fn received_on(
        &self,
        day: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<hub::ports::Page<String>, hub::ports::StoreError> {
        self.inner.received_on(day, after, limit).await
    }
}

/// The child's history as `caller` reads it, its events read through `events`.
async fn history_through(
    world: &World,
    events: &WatchedEvents<'_>,
    caller: &Caller,
) -> (u16, Value) {
    let request = request(
        Some(caller),
        "application/fhir+json",
        None,
        &[("nhsNumber", PATIENT)],
    );
    answer(
        lambda::read_child_events(
            &Adapters::new()
                .events(events)
                .subscriptions(&world.subscriptions)
                .register(&world.register)
                .audit(&world.audit)
                .embargoes(&world.embargoes),
            &request,
            Retention::DEFAULT,
        )
        .await,
    )
}

async fn flag_sensitive(world: &World) {
    let mut update = hub::register::RegisterUpdate::new(
        hub::NhsNumber::parse(PATIENT).unwrap(),
        "pds-record-change-1/earlier",
        time::OffsetDateTime::now_utc(),
    );
    update.sensitive = Some(true);
    record_in_register(world, update).await;
}

/// The register records what an event said of the child.
async fn record_in_register(world: &World, update: hub::register::RegisterUpdate) {
    hub::app::register::record_event(
        &world.register,
        &world.audit,
        update,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
}

/// Issue 18, item 3: the time a history takes must not tell a subscriber
/// that a sensitive child has events. The hub answers before reading them.
#[tokio::test]
async fn a_sensitive_childs_history_is_answered_without_reading_its_events() {
    let world = World::new().await;
    let a = world.subscriber_a.subscriber_id.clone().unwrap();
    assert_eq!(world.subscribe(Some(&world.subscriber_a), &a).await.0, 201);
    a_moment_later().await;
    assert_eq!(
        world
            .publish(
                Some(&world.publisher),
                EventType::Vaccinations,
                &vaccination()
            )
            .await,
        202
    );
    // Before the flag, the subscriber sees the event.
    let events = WatchedEvents::new(&world.events, false);
    let (status, seen) = history_through(&world, &events, &world.subscriber_a).await;
    assert_eq!((status, seen["total"].clone()), (200, json!(1)), "{seen}");

    flag_sensitive(&world).await;
    let events = WatchedEvents::new(&world.events, false);
    let (status, withheld) = history_through(&world, &events, &world.subscriber_a).await;
    assert_eq!(status, 200, "{withheld}");
    assert_eq!(withheld["total"], 0, "{withheld}");
    assert_eq!(events.reads(), 0, "no event of the child was read");
    let record = world.audit.records().pop().unwrap();
    assert_eq!(record.action, Action::HistoryRead);
    assert_eq!(record.nhs_number.as_deref(), Some(PATIENT));
    // Operators still see what the hub holds.
    let (status, held) = history_through(&world, &events, &world.operator).await;
    assert_eq!((status, held["total"].clone()), (200, json!(1)), "{held}");
}

/// Issue 18, item 8: a refused read names what it asked for, and a refused
/// read of a stored event names the event's patient, so that probing shows
/// in the patient's trail.
#[tokio::test]
async fn refused_reads_name_what_they_asked_for_and_the_events_patient() {
    let world = World::new().await;
    let a = world.subscriber_a.subscriber_id.clone().unwrap();
    assert_eq!(
        world
            .publish(
                Some(&world.publisher),
                EventType::Vaccinations,
                &vaccination()
            )
            .await,
        202
    );
    let (_, created) = world.subscribe(Some(&world.subscriber_a), &a).await;
    let subscription = created["id"].as_str().unwrap().to_owned();
    let (status, job) = world
        .start_replay(Some(&world.subscriber_a), &subscription)
        .await;
    assert_eq!(status, 202, "{job}");
    let replay = job["id"].as_str().unwrap().to_owned();
    let b = Some(&world.subscriber_b);
    let last = || world.audit.records().pop().unwrap();

    assert_eq!(world.read_event(b).await, 404);
    let refused = last();
    assert_eq!((refused.action, refused.status), (Action::EventRead, 404));
    assert_eq!(refused.nhs_number.as_deref(), Some(PATIENT));
    assert_eq!(
        refused.event_key.as_deref(),
        Some(format!("vaccinations-1/{VACCINATION_ID}").as_str())
    );
    assert_eq!(
        refused.detail.as_deref(),
        Some(format!("NO_RECORD_FOUND event {VACCINATION_ID}").as_str())
    );

    assert_eq!(world.read_subscription(b, &subscription).await, 404);
    let refused = last();
    assert_eq!(refused.action, Action::SubscriptionRead);
    assert_eq!(
        refused.subscription_id.as_deref(),
        Some(subscription.as_str())
    );
    assert_eq!(world.delete_subscription(b, &subscription).await, 404);
    let refused = last();
    assert_eq!(refused.action, Action::SubscriptionDelete);
    assert_eq!(
        refused.subscription_id.as_deref(),
        Some(subscription.as_str())
    );
    assert_eq!(world.start_replay(b, &subscription).await.0, 404);
    let refused = last();
    assert_eq!(refused.action, Action::Replay);
    assert_eq!(
        refused.subscription_id.as_deref(),
        Some(subscription.as_str())
    );

    assert_eq!(world.subscriber_status(b, &a).await.0, 404);
    let refused = last();
    assert_eq!(refused.action, Action::SubscriberStatus);
    assert_eq!(refused.subscriber_id.as_deref(), Some(a.as_str()));
    assert_eq!(world.redrive(b, &a).await.0, 404);
    let refused = last();
    assert_eq!(refused.action, Action::Redrive);
    assert_eq!(refused.subscriber_id.as_deref(), Some(a.as_str()));

    assert_eq!(world.read_replay(b, &replay).await.0, 404);
    let refused = last();
    assert_eq!(refused.action, Action::ReplayRead);
    assert_eq!(
        refused.detail.as_deref(),
        Some(format!("NO_RECORD_FOUND replay {replay}").as_str())
    );
    assert_eq!(
        refused.subscription_id.as_deref(),
        Some(subscription.as_str())
    );
    assert_eq!(refused.subscriber_id.as_deref(), Some(a.as_str()));
    // An id of nothing stored is named too.
    let unknown = "0b7c3f61-2d7e-4f0a-8a55-0f7f7c9d1e22";
    assert_eq!(world.read_replay(b, unknown).await.0, 404);
    assert_eq!(
        last().detail.as_deref(),
        Some(format!("NO_RECORD_FOUND replay {unknown}").as_str())
    );

    // The refused event read is in the patient's trail.
    let (status, trail) = world
        .read_audit(Some(&world.operator), &[("patient", PATIENT)])
        .await;
    assert_eq!(status, 200);
    assert!(
        trail["entries"].as_array().unwrap().iter().any(|entry| {
            entry["action"] == "event-read"
                && entry["status"] == 404
                && entry["clientId"] == "subscriber-b"
        }),
        "{trail}"
    );
}

/// Issue 18, item 8: a function that fails (here a store that panics) still
/// answers, and leaves its audit record naming the client and the patient.
#[tokio::test]
async fn a_request_whose_function_panics_is_answered_and_audited() {
    let world = World::new().await;
    let events = WatchedEvents::new(&world.events, true);
    let request = request(
        Some(&world.operator),
        "application/fhir+json",
        None,
        &[("nhsNumber", PATIENT)],
    );
    let (status, outcome) = answer(
        lambda::read_child_events(
            &Adapters::new()
                .events(&events)
                .subscriptions(&world.subscriptions)
                .register(&world.register)
                .audit(&world.audit),
            &request,
            Retention::DEFAULT,
        )
        .await,
    );
    assert_eq!(status, 500, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let record = world.audit.records().pop().unwrap();
    assert_eq!(
        (record.action, record.status, record.client_id.as_str()),
        (Action::HistoryRead, 500, "operator")
    );
    assert_eq!(record.nhs_number.as_deref(), Some(PATIENT));
}

/// Creation instants and arrival positions are compared to the millisecond
/// (a tie counts as before, never on doubt): steps a test orders are taken
/// apart.
async fn a_moment_later() {
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
}

/// Issue 20: an explicit subscription rests on the subscriber's declared
/// direct care, which the hub cannot check, so it opens nothing accepted
/// before its creation: no history, no event delivered only to others, no
/// replay.
mod disclosure_floor {
    use super::*;

    const LATER_ID: &str = "0d6c3f4e-5a7b-4c8d-9e0f-1a2b3c4d5e6f";

    pub(super) async fn publish_vaccination(world: &World, id: &str) {
        let body = vaccination().replace(VACCINATION_ID, id);
        let status = world
            .publish(Some(&world.publisher), EventType::Vaccinations, &body)
            .await;
        assert_eq!(status, 202);
    }

    /// Subscriber B subscribes to the child's vaccinations now.
    async fn b_subscribes(world: &World) -> Value {
        let b = world.subscriber_b.subscriber_id.clone().unwrap();
        let (status, created) = world.subscribe(Some(&world.subscriber_b), &b).await;
        assert_eq!(status, 201, "{created}");
        created
    }

    #[tokio::test]
    async fn a_new_explicit_subscription_sees_no_history_from_before_it() {
        let world = World::new().await;
        publish_vaccination(&world, VACCINATION_ID).await;
        a_moment_later().await;
        b_subscribes(&world).await;
        let (status, history) = world.read_child_events(Some(&world.subscriber_b)).await;
        assert_eq!(status, 200, "{history}");
        assert_eq!(history["total"], 0, "{history}");
        let (_, everything) = world.read_child_events(Some(&world.operator)).await;
        assert_eq!(everything["total"], 1, "operators see what the hub holds");

        // What arrives after it (the vaccination's next version), it sees.
        a_moment_later().await;
        let update = fixture("nems/vaccinations-1-update.xml");
        let status = world
            .publish(Some(&world.publisher), EventType::Vaccinations, &update)
            .await;
        assert_eq!(status, 202);
        let (_, history) = world.read_child_events(Some(&world.subscriber_b)).await;
        assert_eq!(history["total"], 1, "{history}");
        assert!(
            !history.to_string().contains(VACCINATION_ID),
            "only what arrived after it: {history}"
        );
    }

    /// The issue's reproduction: an event delivered only to A, then B
    /// subscribes to the child and asks for it.
    #[tokio::test]
    async fn an_event_delivered_only_to_another_is_not_read_through_a_later_subscription() {
        let world = World::new().await;
        publish_vaccination(&world, VACCINATION_ID).await;
        let a = world.subscriber_a.subscriber_id.clone().unwrap();
        world
            .audit
            .record(&AuditRecord::delivery(
                &format!("vaccinations-1/{VACCINATION_ID}"),
                &a,
                hub::NhsNumber::parse(PATIENT).ok(),
                time::OffsetDateTime::now_utc(),
            ))
            .await
            .unwrap();
        a_moment_later().await;
        b_subscribes(&world).await;
        assert_eq!(world.read_event(Some(&world.subscriber_a)).await, 200);
        assert_eq!(world.read_event(Some(&world.subscriber_b)).await, 404);

        // An event accepted since B subscribed is B's to read, delivered
        // or not yet.
        a_moment_later().await;
        publish_vaccination(&world, LATER_ID).await;
        let later = world
            .read_event_id(Some(&world.subscriber_b), LATER_ID)
            .await;
        assert_eq!(later, 200);
    }

    #[tokio::test]
    async fn a_new_explicit_subscriptions_replay_starts_at_its_creation() {
        let world = World::new().await;
        publish_vaccination(&world, VACCINATION_ID).await;
        a_moment_later().await;
        let created = b_subscribes(&world).await;
        let subscription = created["id"].as_str().unwrap();
        let (status, job) = world
            .start_replay(Some(&world.subscriber_b), subscription)
            .await;
        assert_eq!(status, 202, "{job}");
        let creation =
            hub::fhir_time::parse_instant(created["meta"]["lastUpdated"].as_str().unwrap())
                .unwrap();
        let since = hub::fhir_time::parse_instant(job["since"].as_str().unwrap()).unwrap();
        assert!(
            since >= creation && since < creation + time::Duration::milliseconds(1),
            "since {since} moved up from 2026-01-01 to the creation {creation}"
        );
        assert!(
            job["detail"]
                .as_str()
                .is_some_and(|detail| detail.contains("before the subscription's creation")),
            "{job}"
        );
    }

    /// The register places the child at `practice`, as a change of GP
    /// accepted `seconds` from now says.
    async fn registered_at(world: &World, practice: &str, seconds: i64) {
        let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds);
        let mut update = hub::register::RegisterUpdate::new(
            hub::NhsNumber::parse(PATIENT).unwrap(),
            format!("pds-change-of-gp-1/{practice}"),
            at,
        );
        update.gp_practice = Some(Some(practice.to_owned()));
        record_in_register(world, update).await;
    }

    /// The child's registered GP sees the whole record, whenever it
    /// subscribed; when the child moves, that passes to the new practice and
    /// the old one keeps only what arrived since its subscription.
    #[tokio::test]
    async fn the_registered_gp_sees_the_whole_history_until_the_child_moves() {
        let world = World::new().await;
        publish_vaccination(&world, VACCINATION_ID).await;
        registered_at(&world, "A83627", 0).await;
        a_moment_later().await;
        let a = world.subscriber_a.subscriber_id.clone().unwrap();
        assert_eq!(world.subscribe(Some(&world.subscriber_a), &a).await.0, 201);
        b_subscribes(&world).await;

        let (status, seen) = world.read_child_events(Some(&world.subscriber_a)).await;
        assert_eq!((status, seen["total"].clone()), (200, json!(1)), "{seen}");
        assert_eq!(world.read_event(Some(&world.subscriber_a)).await, 200);
        let (_, seen) = world.read_child_events(Some(&world.subscriber_b)).await;
        assert_eq!(seen["total"], 0, "B is not the child's practice: {seen}");
        assert_eq!(world.read_event(Some(&world.subscriber_b)).await, 404);
        let basis = world
            .audit
            .records()
            .into_iter()
            .filter(|record| record.action == Action::HistoryRead && record.status == 200)
            .filter_map(|record| record.detail)
            .collect::<Vec<_>>();
        assert!(basis[0].contains("registered GP"), "{basis:?}");
        assert!(basis[1].contains("declared direct care since"), "{basis:?}");

        // The child moves to B's practice.
        registered_at(&world, "B82001", 1).await;
        let (_, seen) = world.read_child_events(Some(&world.subscriber_a)).await;
        assert_eq!(
            seen["total"], 0,
            "A is no longer the child's practice: {seen}"
        );
        assert_eq!(world.read_event(Some(&world.subscriber_a)).await, 404);
        let (_, seen) = world.read_child_events(Some(&world.subscriber_b)).await;
        assert_eq!(seen["total"], 1, "{seen}");
        assert_eq!(world.read_event(Some(&world.subscriber_b)).await, 200);
    }
}

/// Issue 20: nothing limited how many children a subscriber took. Explicit
/// subscriptions are counted per subscriber and UTC day; past the limit the
/// answer is 429 with Retry-After, audited.
#[tokio::test]
async fn explicit_subscriptions_stop_at_the_subscribers_daily_limit() {
    let mut world = World::new().await;
    world.limit = DailyLimit { per_day: 2 };
    let a = world.subscriber_a.subscriber_id.clone().unwrap();
    for _ in 0..2 {
        let (status, created) = world.subscribe(Some(&world.subscriber_a), &a).await;
        assert_eq!(status, 201, "{created}");
    }
    let request = request(
        Some(&world.subscriber_a),
        "application/fhir+json",
        Some(
            &subscription_resource(
                &a,
                "A83627",
                &format!(
                    "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{PATIENT}&MessageHeader.event=vaccinations-1"
                ),
            )
            .to_string(),
        ),
        &[],
    );
    let response = lambda::create_subscription(world.ports(), &request, world.limit).await;
    assert_eq!(status(&response), 429);
    let retry_after: u64 = response
        .headers
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=86_400).contains(&retry_after), "{retry_after}");
    let (_, outcome) = answer(response);
    assert_eq!(outcome["issue"][0]["code"], "throttled", "{outcome}");
    assert!(
        world
            .audit
            .records()
            .iter()
            .any(|record| { record.action == Action::SubscriptionCreate && record.status == 429 }),
        "the refusal is audited"
    );
    // Another subscriber's count is its own.
    let b = world.subscriber_b.subscriber_id.clone().unwrap();
    let (status, created) = world.subscribe(Some(&world.subscriber_b), &b).await;
    assert_eq!(status, 201, "{created}");
}

mod backfill;
mod narrowing;
mod parents;
