//! Issue 20, client narrowing: an operator replaces a client's registration
//! (`POST /clients`) with one that no longer gives what some of its
//! subscriptions rested on; those end at once (status off, `error`, a
//! `BasisLost` record) and receive nothing more, and the others are left
//! as they were.

use super::parents::{MOTHER, attestation};
use super::*;
use hub::app::dispatch::Dispatcher;
use hub::ports::EventStore;
use hub::reference::{Postcode, PostcodeArea};

/// The area service's organisation.
const AREA_ODS: &str = "RR8";
const FIRST_ID: &str = "1a2b3c4d-0000-4000-8000-000000000001";
const NEXT_ID: &str = "1a2b3c4d-0000-4000-8000-000000000002";

/// A subscriber's registration as `POST /clients` takes it.
fn registration(client_id: &str, ods: &str, explicit: bool, grants: &[(&str, &str)]) -> Value {
    let mut generic: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (rule, code) in grants {
        generic.entry(rule).or_default().push(code);
    }
    json!({
        "clientId": client_id,
        "odsCode": ods,
        "roles": ["subscriber"],
        "keys": serde_json::to_value(&client(client_id, ods, &[]).keys).unwrap(),
        "subscribeExplicit": explicit,
        "subscribeGeneric": generic,
    })
}

fn vaccinations_of(patient: &str) -> String {
    format!(
        "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{patient}&MessageHeader.event=vaccinations-1"
    )
}

const GENERIC_LA: &str = "/Bundle?type=message&serviceType=UHV&subscriptionRuleType=UHV_POSTCODE_LACODE&Organization.identifier=E06000047&MessageHeader.event=vaccinations-1";
const GENERIC_SUB_ICB: &str = "/Bundle?type=message&serviceType=CHO&subscriptionRuleType=CHO_POSTCODE_CCG&Organization.identifier=84H&MessageHeader.event=vaccinations-1";

impl World {
    /// `POST /clients` as the operator: the status, and the client as the
    /// store now holds it.
    async fn register_as_operator(&self, registration: &Value) -> (u16, Caller) {
        let request = request(
            Some(&self.operator),
            "application/json",
            Some(&registration.to_string()),
            &[],
        );
        let (status, answer) = answer(lambda::register_client(self.ports(), &request).await);
        assert!(matches!(status, 200 | 201), "{answer}");
        let client_id = registration["clientId"].as_str().unwrap();
        let stored = self.clients.get(client_id).await.unwrap().unwrap();
        (status, Caller::of(&stored))
    }

    /// A client registered through the handler, then onboarded for
    /// vaccinations.
    async fn registered_and_onboarded(&self, registration: &Value) -> Caller {
        let (status, _) = self.register_as_operator(registration).await;
        assert_eq!(status, 201);
        let body = json!({
            "clientId": registration["clientId"],
            "odsCode": registration["odsCode"],
            "name": "area service",
            "eventTypes": ["vaccinations-1"],
        });
        let (status, onboarded) = self.onboard(Some(&self.operator), &body.to_string()).await;
        assert_eq!(status, 201, "{onboarded}");
        let client_id = registration["clientId"].as_str().unwrap();
        Caller::of(&self.clients.get(client_id).await.unwrap().unwrap())
    }

    /// The caller creates a subscription with these criteria: its id.
    async fn subscribes_to(&self, caller: &Caller, criteria: &str) -> String {
        let body = subscription_resource(
            caller.subscriber_id.as_deref().unwrap(),
            caller.ods_code.as_str(),
            criteria,
        )
        .to_string();
        let request = request(Some(caller), "application/fhir+json", Some(&body), &[]);
        let (status, created) =
            answer(lambda::create_subscription(self.ports(), &request, self.limit).await);
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().unwrap().to_owned()
    }

    /// `GET /Subscription/{id}` as its owner.
    async fn shown(&self, owner: &Caller, id: &str) -> Value {
        let request = request(Some(owner), "application/fhir+json", None, &[("id", id)]);
        let (status, shown) = answer(lambda::read_subscription(self.ports(), &request).await);
        assert_eq!(status, 200, "{shown}");
        shown
    }

    /// Publishes the sample vaccination under `id` and dispatches it.
    async fn vaccination_dispatched(&self, id: &str) {
        disclosure_floor::publish_vaccination(self, id).await;
        let event = self
            .events
            .get(&format!("vaccinations-1/{id}"))
            .await
            .unwrap()
            .expect("the stored vaccination");
        Dispatcher {
            ports: self.ports(),
        }
        .dispatch(&event, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    }

    /// The subscription ids the delivery of the event to the subscriber
    /// named (empty when it was not delivered to it).
    fn delivered_for(&self, id: &str, subscriber_id: &str) -> Vec<String> {
        self.stores
            .publisher
            .sent()
            .iter()
            .filter(|sent| {
                sent.attribute("eventId") == Some(id)
                    && sent.attribute("subscriber") == Some(subscriber_id)
            })
            .flat_map(|sent| {
                let named: Vec<Value> =
                    serde_json::from_str(sent.attribute("subscriptions").unwrap()).unwrap();
                named
                    .into_iter()
                    .map(|subscription| subscription["id"].as_str().unwrap().to_owned())
            })
            .collect()
    }

    fn basis_lost_records(&self) -> Vec<AuditRecord> {
        self.audit
            .records()
            .into_iter()
            .filter(|record| record.action == Action::BasisLost)
            .collect()
    }
}

/// A hub that places the child (the sample vaccination's, at DH1 2TF) in
/// County Durham (sub-ICB 84H, local authority E06000047), and an area
/// service granted that local authority and sub-ICB location with
/// subscriptions resting on each: an explicit one on the local authority
/// (made while it was its only grant), an explicit one on the sub-ICB
/// location, and a generic one on each.
struct AreaService {
    world: World,
    service: Caller,
    on_la: String,
    on_sub_icb: String,
    generic_la: String,
    generic_sub_icb: String,
}

async fn area_service() -> AreaService {
    let mut world = World::new().await;
    world.stores.reference.insert_postcode(
        Postcode::parse("DH1 2TF").unwrap(),
        PostcodeArea {
            local_authority: "E06000047".into(),
            icb_sub_location: Some("84H".into()),
            country: "E92000001".into(),
        },
    );
    // The child's first event puts it in the register, at DH1 2TF.
    world.vaccination_dispatched(FIRST_ID).await;
    let la_only = registration(
        "area-service",
        AREA_ODS,
        true,
        &[("UHV_POSTCODE_LACODE", "E06000047")],
    );
    let service = world.registered_and_onboarded(&la_only).await;
    let on_la = world
        .subscribes_to(&service, &vaccinations_of(PATIENT))
        .await;
    let (status, service) = world.register_as_operator(&both_grants()).await;
    assert_eq!(status, 200, "a replacement");
    let on_sub_icb = world
        .subscribes_to(&service, &vaccinations_of(PATIENT))
        .await;
    let generic_la = world.subscribes_to(&service, GENERIC_LA).await;
    let generic_sub_icb = world.subscribes_to(&service, GENERIC_SUB_ICB).await;
    for (id, basis) in [
        (&on_la, "basis: area UHV_POSTCODE_LACODE E06000047"),
        (&on_sub_icb, "basis: area CHO_POSTCODE_CCG 84H"),
    ] {
        assert!(
            world.audit.records().iter().any(|record| {
                record.action == Action::SubscriptionCreate
                    && record.subscription_id.as_deref() == Some(id.as_str())
                    && record.detail.as_deref() == Some(basis)
            }),
            "{id} rests on {basis}"
        );
    }
    AreaService {
        world,
        service,
        on_la,
        on_sub_icb,
        generic_la,
        generic_sub_icb,
    }
}

fn both_grants() -> Value {
    registration(
        "area-service",
        AREA_ODS,
        true,
        &[
            ("UHV_POSTCODE_LACODE", "E06000047"),
            ("CHO_POSTCODE_CCG", "84H"),
        ],
    )
}

#[tokio::test]
async fn removing_a_grant_ends_the_subscriptions_resting_on_it_and_no_other() {
    let AreaService {
        world,
        service,
        on_la,
        on_sub_icb,
        generic_la,
        generic_sub_icb,
    } = area_service().await;
    let subscriber = service.subscriber_id.clone().unwrap();

    let sub_icb_only = registration(
        "area-service",
        AREA_ODS,
        true,
        &[("CHO_POSTCODE_CCG", "84H")],
    );
    let (status, service) = world.register_as_operator(&sub_icb_only).await;
    assert_eq!(status, 200);

    for id in [&on_la, &generic_la] {
        let shown = world.shown(&service, id).await;
        assert_eq!(shown["status"], "off", "{shown}");
        assert_eq!(
            shown["error"],
            "registration narrowed: the client's registration no longer grants \
             UHV_POSTCODE_LACODE E06000047",
            "{shown}"
        );
    }
    for id in [&on_sub_icb, &generic_sub_icb] {
        let shown = world.shown(&service, id).await;
        assert_eq!(shown["status"], "active", "{shown}");
        assert!(shown.get("error").is_none(), "{shown}");
    }
    // One record per subscription ended, under the child for the explicit
    // one, naming the registration that ended it.
    let lost = world.basis_lost_records();
    let mut ended: Vec<&str> = lost
        .iter()
        .filter_map(|record| record.subscription_id.as_deref())
        .collect();
    ended.sort();
    let mut expected = vec![on_la.as_str(), generic_la.as_str()];
    expected.sort();
    assert_eq!(ended, expected, "{lost:?}");
    let explicit = lost
        .iter()
        .find(|record| record.subscription_id.as_deref() == Some(on_la.as_str()))
        .unwrap();
    assert_eq!(explicit.nhs_number.as_deref(), Some(PATIENT));
    assert_eq!(
        explicit.event_key.as_deref(),
        Some("client-registration/area-service")
    );
    assert!(
        world.audit.records().iter().any(|record| {
            record.action == Action::ClientRegister
                && record.detail.as_deref()
                    == Some("client area-service; registration narrowed: 2 subscriptions ended")
        }),
        "the registration's record says what it ended"
    );

    // The child's next event in the area reaches only what still holds.
    a_moment_later().await;
    world.vaccination_dispatched(NEXT_ID).await;
    let mut named = world.delivered_for(NEXT_ID, &subscriber);
    named.sort();
    let mut holding = vec![on_sub_icb.clone(), generic_sub_icb.clone()];
    holding.sort();
    assert_eq!(named, holding);
}

#[tokio::test]
async fn replacing_a_registration_with_the_same_ends_nothing() {
    let AreaService {
        world,
        service: _,
        on_la,
        on_sub_icb,
        generic_la,
        generic_sub_icb,
    } = area_service().await;
    let (status, service) = world.register_as_operator(&both_grants()).await;
    assert_eq!(status, 200);
    // Codes are compared without regard to case, as generic criteria are.
    let lower = registration(
        "area-service",
        AREA_ODS,
        true,
        &[
            ("uhv_postcode_lacode", "e06000047"),
            ("CHO_POSTCODE_CCG", "84h"),
        ],
    );
    world.register_as_operator(&lower).await;
    for id in [&on_la, &on_sub_icb, &generic_la, &generic_sub_icb] {
        let shown = world.shown(&service, id).await;
        assert_eq!(shown["status"], "active", "{shown}");
    }
    assert_eq!(world.basis_lost_records(), Vec::new());
    a_moment_later().await;
    world.vaccination_dispatched(NEXT_ID).await;
    assert_eq!(
        world
            .delivered_for(NEXT_ID, service.subscriber_id.as_deref().unwrap())
            .len(),
        4
    );
}

/// Taking away explicit subscriptions ends them whatever their basis; a
/// disabled client's subscriptions stay (it only stops getting tokens).
#[tokio::test]
async fn a_client_no_longer_registered_for_explicit_subscriptions_loses_them() {
    let world = World::new().await;
    let b = world.subscriber_b.clone();
    let declared = world.subscribes_to(&b, &vaccinations_of(PATIENT)).await;
    assert_eq!(
        world
            .disable_client(Some(&world.operator), "subscriber-b")
            .await,
        204
    );
    assert_eq!(world.shown(&b, &declared).await["status"], "active");
    let (status, _) = world
        .register_as_operator(&registration("subscriber-b", "B82001", false, &[]))
        .await;
    assert_eq!(status, 200);
    let shown = world.shown(&b, &declared).await;
    assert_eq!(shown["status"], "off", "{shown}");
    assert_eq!(
        shown["error"],
        "registration narrowed: the client is no longer registered for explicit subscriptions"
    );
}

#[tokio::test]
async fn raising_a_parents_apps_minimum_level_ends_what_rests_on_people_attested_below_it() {
    let world = World::new().await;
    let app_registration = |minimum: &str| {
        let mut body = registration("mothers-app", "Y05PCH", false, &[]);
        body["pchr"] = json!({"minimumVerification": minimum});
        body
    };
    let app = world
        .registered_and_onboarded(&app_registration("P5"))
        .await;
    assert_eq!(
        world.relationship_event("vrs-proxy-role-created-1").await,
        202
    );
    let (status, acted) = world.person(&app, "PUT", Some(&attestation("P5"))).await;
    assert_eq!(status, 200, "{acted}");
    let subscription = world.subscribes_to(&app, &vaccinations_of(PATIENT)).await;

    // The same level again changes nothing.
    let (_, app) = world.register_as_operator(&app_registration("P5")).await;
    assert_eq!(world.shown(&app, &subscription).await["status"], "active");
    assert_eq!(world.basis_lost_records(), Vec::new());

    let (status, app) = world.register_as_operator(&app_registration("P9")).await;
    assert_eq!(status, 200);
    let shown = world.shown(&app, &subscription).await;
    assert_eq!(shown["status"], "off", "{shown}");
    let error = shown["error"].as_str().unwrap();
    assert!(
        error.starts_with("registration narrowed:") && error.contains("P9") && error.contains("P5"),
        "{error}"
    );
    assert!(
        !error.contains(MOTHER) && !error.contains(PATIENT),
        "{error}"
    );
    let lost = world.basis_lost_records();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(
        lost[0].subscription_id.as_deref(),
        Some(subscription.as_str())
    );
}

/// A registration that narrows nothing (a key rotation, a wider grant)
/// reads no subscription: it succeeds with the subscriptions store
/// unreachable. One that narrows, and cannot end what it must, answers
/// with the error and puts the previous registration back, so that the
/// operator's retry narrows again and completes the ending.
#[tokio::test]
async fn a_failed_narrowing_puts_the_previous_registration_back() {
    let AreaService {
        world,
        service,
        on_la,
        ..
    } = area_service().await;
    let without_subscriptions = Adapters::new().clients(&world.clients).audit(&world.audit);
    let post = |registration: &Value| {
        request(
            Some(&world.operator),
            "application/json",
            Some(&registration.to_string()),
            &[],
        )
    };
    let mut wider = both_grants();
    wider["subscribeGeneric"]["CHO_POSTCODE_CCG"] = json!(["84H", "15F"]);
    let response = lambda::register_client(&without_subscriptions, &post(&wider)).await;
    assert_eq!(status(&response), 200, "no subscription read");

    let sub_icb_only = registration(
        "area-service",
        AREA_ODS,
        true,
        &[("CHO_POSTCODE_CCG", "84H")],
    );
    let response = lambda::register_client(&without_subscriptions, &post(&sub_icb_only)).await;
    assert_eq!(
        status(&response),
        500,
        "the subscriptions port is not connected"
    );
    let stored = world.clients.get("area-service").await.unwrap().unwrap();
    assert_eq!(
        stored.subscribe_generic,
        Client::from_registration(&wider.to_string())
            .unwrap()
            .subscribe_generic,
        "the previous registration is back"
    );
    assert_eq!(world.shown(&service, &on_la).await["status"], "active");

    // The retry, with the store back, completes it.
    let (status, service) = world.register_as_operator(&sub_icb_only).await;
    assert_eq!(status, 200);
    assert_eq!(world.shown(&service, &on_la).await["status"], "off");
}
