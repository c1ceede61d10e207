//! Issue 20: a parent's app (PCHR) through the handlers. It attests the
//! people it acts for, lists their children, subscribes to a child only
//! through a relationship with such a person, sees the child's history
//! only from its subscription and only while the relationship and its
//! acting hold; stopping acting for the person ends the subscription.

use super::*;

pub(super) const MOTHER: &str = "9449305552";
const VRS: &str = "uk.nhs.validated-relationships-service";

fn vrs_event(name: &str) -> String {
    fixture(&format!("relationships/{name}.json"))
}

impl World {
    /// A parent's app, onboarded by the operator, requiring P9.
    async fn app(&self, client_id: &str, ods: &str) -> Caller {
        let mut registered = client(client_id, ods, &[Role::Subscriber]);
        registered.pchr = Some(hub::pchr::PchrRegistration {
            minimum_verification: hub::pchr::VerificationLevel::P9,
        });
        self.clients.register(&registered).await.unwrap();
        let body = json!({"clientId": client_id, "odsCode": ods, "name": client_id, "eventTypes": ["vaccinations-1"]});
        let (status, onboarded) = self.onboard(Some(&self.operator), &body.to_string()).await;
        assert_eq!(status, 201, "{onboarded}");
        Caller::of(&self.clients.get(client_id).await.unwrap().unwrap())
    }

    /// The app subscribes to the child's vaccinations.
    async fn app_subscribes(&self, app: &Caller) -> (u16, Value) {
        let criteria = format!(
            "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{PATIENT}&MessageHeader.event=vaccinations-1"
        );
        let body = subscription_resource(
            app.subscriber_id.as_deref().unwrap(),
            app.ods_code.as_str(),
            &criteria,
        )
        .to_string();
        let request = request(Some(app), "application/fhir+json", Some(&body), &[]);
        answer(lambda::create_subscription(self.ports(), &request, self.limit).await)
    }

    pub(super) async fn relationship_event(&self, name: &str) -> u16 {
        let mut vrs = client("vrs", "X26", &[Role::RelationshipPublisher]);
        vrs.relationship_sources = BTreeSet::from([VRS.to_owned()]);
        let caller = Caller::of(&vrs);
        let request = request(
            Some(&caller),
            "application/fhir+json",
            Some(&vrs_event(name)),
            &[],
        );
        status(&lambda::publish_relationship(self.ports(), &request).await)
    }

    pub(super) async fn person(
        &self,
        caller: &Caller,
        method: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        let subscriber = caller.subscriber_id.clone().unwrap();
        let request = request(
            Some(caller),
            "application/json",
            body,
            &[("id", &subscriber), ("nhsNumber", MOTHER)],
        );
        answer(match method {
            "PUT" => lambda::attest_person(self.ports(), &request).await,
            "DELETE" => lambda::stop_acting_for_person(self.ports(), &request).await,
            _ => lambda::person_children(self.ports(), &request).await,
        })
    }
}

pub(super) fn attestation(level: &str) -> String {
    json!({"verificationLevel": level, "method": "nhs-login", "verifiedAt": "2026-12-07T09:00:00Z"})
        .to_string()
}

#[tokio::test]
async fn a_mothers_app_reaches_her_child_only_through_their_relationship() {
    let world = World::new().await;
    let app = world.app("mothers-app", "Y05PCH").await;
    // A vaccination before anything: never the app's to see.
    super::disclosure_floor::publish_vaccination(&world, VACCINATION_ID).await;

    // No relationship, no acting: no subscription.
    let (status, refused) = world.app_subscribes(&app).await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(
        world.relationship_event("vrs-proxy-role-created-1").await,
        202
    );
    // Acting below the app's minimum is refused, naming the member.
    let (status, refused) = world.person(&app, "PUT", Some(&attestation("P5"))).await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused.to_string().contains("verificationLevel"),
        "{refused}"
    );
    let (status, acted) = world.person(&app, "PUT", Some(&attestation("P9"))).await;
    assert_eq!(
        (status, acted["status"].clone()),
        (200, json!("active")),
        "{acted}"
    );
    // Another app may not act through this one's path.
    let (status, _) = world
        .person(&world.subscriber_a, "PUT", Some(&attestation("P9")))
        .await;
    assert_eq!(status, 403, "not a parent's app");
    let (status, children) = world.person(&app, "GET", None).await;
    assert_eq!(status, 200, "{children}");
    assert_eq!(children["children"][0]["nhsNumber"], PATIENT, "{children}");

    a_moment_later().await;
    let (status, created) = world.app_subscribes(&app).await;
    assert_eq!(status, 201, "{created}");
    let subscription_id = created["id"].as_str().unwrap().to_owned();
    assert!(
        world.audit.records().iter().any(|record| {
            record.action == Action::SubscriptionCreate
                && record.status == 201
                && record.detail.as_deref() == Some("basis: relationship person=9449305552")
        }),
        "the creation names its basis"
    );
    // From its creation on: the earlier vaccination is not the app's.
    a_moment_later().await;
    let (status, seen) = world.read_child_events(Some(&app)).await;
    assert_eq!((status, seen["total"].clone()), (200, json!(0)), "{seen}");
    assert_eq!(world.read_event(Some(&app)).await, 404);
    // The vaccination's next version arrives after it: the app sees it.
    let update = fixture("nems/vaccinations-1-update.xml");
    let published = world
        .publish(Some(&world.publisher), EventType::Vaccinations, &update)
        .await;
    assert_eq!(published, 202);
    let (_, seen) = world.read_child_events(Some(&app)).await;
    assert_eq!(seen["total"], 1, "{seen}");

    // The app stops acting for the mother: its subscription ends, and the
    // child's history, events and replays are closed to it.
    let (status, _) = world.person(&app, "DELETE", None).await;
    assert_eq!(status, 204);
    let (status, _) = world.read_child_events(Some(&app)).await;
    assert_eq!(status, 403);
    let request = request(
        Some(&app),
        "application/fhir+json",
        None,
        &[("id", &subscription_id)],
    );
    let (status, shown) = answer(lambda::read_subscription(world.ports(), &request).await);
    assert_eq!(
        (status, shown["status"].clone()),
        (200, json!("off")),
        "{shown}"
    );
    assert!(shown["error"].as_str().unwrap().contains(MOTHER), "{shown}");
    let (status, refused) = world.start_replay(Some(&app), &subscription_id).await;
    assert_eq!(status, 422, "{refused}");
    let (status, _) = world.person(&app, "GET", None).await;
    assert_eq!(status, 404, "no longer acting for her");
}

/// A relationship the source ends ends the subscriptions resting on it at
/// once, without waiting for the child's next event.
#[tokio::test]
async fn a_relationship_the_source_ends_ends_the_apps_subscription() {
    let world = World::new().await;
    let app = world.app("mothers-app", "Y05PCH").await;
    assert_eq!(
        world.relationship_event("vrs-proxy-role-created-1").await,
        202
    );
    assert_eq!(
        world.person(&app, "PUT", Some(&attestation("P9"))).await.0,
        200
    );
    let (status, created) = world.app_subscribes(&app).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        world.relationship_event("vrs-proxy-role-deleted-1").await,
        202
    );
    let request = request(
        Some(&app),
        "application/fhir+json",
        None,
        &[("id", created["id"].as_str().unwrap())],
    );
    let (_, shown) = answer(lambda::read_subscription(world.ports(), &request).await);
    assert_eq!(shown["status"], "off", "{shown}");
    assert!(
        shown["error"].as_str().unwrap().contains("relationship"),
        "{shown}"
    );
    assert!(
        world
            .audit
            .records()
            .iter()
            .any(|record| record.action == Action::BasisLost)
    );
}
