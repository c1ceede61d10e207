//! The parents' path through the local stack (issue 20): a birth
//! notification links the mother to the baby; a parent's app registered
//! with `pchr` attests the mother, finds the baby among her children,
//! subscribes to the baby and receives its next vaccination; when it stops
//! acting for her, its subscription is off and nothing more arrives. What
//! the handler tier cannot show: the template's functions, routes,
//! environment and permissions serve it.

use std::time::Duration;

use e2e_tests::{Hub, attribute, fixture, receive_all};
use hub::{Encoding, EventMessage};
use serde_json::{Value, json};

const MOTHER: &str = "9449305552";
const BABY: &str = "9912003888";

/// The example under a fresh MessageHeader.id, unique to this run.
fn fresh(relative: &str, tag: u32) -> (String, String) {
    let body = fixture(relative);
    let message = EventMessage::read(&body, Encoding::Xml).expect("the example reads");
    let id = format!("{:08x}-0000-4000-8000-{tag:012x}", std::process::id());
    (id.clone(), body.replace(&message.message_id, &id))
}

async fn people(
    hub: &Hub,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = hub.request(method, path, token);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("a people route");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mothers_app_follows_her_baby_from_the_birth_notification() {
    // A stack of its own: its births and vaccinations of the example child
    // would reach the shared stack's other subscribers of that child.
    let hub = Hub::start().await;
    let (_, birth) = fresh("derived/BirthNotificationWithMother-valid-mother.xml", 0xb1);
    let (status, outcome) = hub
        .publish(
            "pds-birth-notification-1",
            Some("application/fhir+xml"),
            &birth,
        )
        .await;
    assert_eq!(status, 202, "{outcome}");

    let app = hub
        .onboard_with(
            "Y05PCH",
            &["vaccinations-1"],
            json!({"pchr": {"minimumVerification": "P9"}}),
        )
        .await;
    let person = format!("/subscribers/{}/people/{MOTHER}", app.id);
    let (status, acted) = people(
        &hub,
        &app.token,
        reqwest::Method::PUT,
        &person,
        Some(json!({"verificationLevel": "P9", "method": "nhs-login", "verifiedAt": "2026-12-07T09:00:00Z"})),
    )
    .await;
    assert_eq!(status, 200, "{acted}");

    // The link is made when the birth is dispatched: wait for it.
    let children = format!("{person}/children");
    let mut listed = Value::Null;
    for _ in 0..60 {
        let (status, body) = people(&hub, &app.token, reqwest::Method::GET, &children, None).await;
        assert_eq!(status, 200, "{body}");
        if body["children"]
            .as_array()
            .is_some_and(|children| children.iter().any(|child| child["nhsNumber"] == BABY))
        {
            listed = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        listed != Value::Null,
        "the baby was never listed among the mother's children"
    );

    let criteria = format!(
        "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{BABY}&MessageHeader.event=vaccinations-1"
    );
    let (status, created) = hub.subscribe(&app, "Y05PCH", &criteria).await;
    assert_eq!(status, 201, "{created}");
    let subscription = created["id"].as_str().expect("an id").to_owned();
    // Another child, related to no one the app acts for: no basis.
    let other = criteria.replace(BABY, "9434765919");
    let (status, refused) = hub.subscribe(&app, "Y05PCH", &other).await;
    assert_eq!(status, 403, "{refused}");

    let (vaccination_id, vaccination) = fresh("nems/vaccinations-1-new.xml", 0xb2);
    let (status, outcome) = hub
        .publish("vaccinations-1", Some("application/fhir+xml"), &vaccination)
        .await;
    assert_eq!(status, 202, "{outcome}");
    let sqs = hub.sqs();
    let mut received = Vec::new();
    for _ in 0..20 {
        received.extend(receive_all(&sqs, &app.queue_url, Duration::from_secs(2)).await);
        if received
            .iter()
            .any(|message| attribute(message, "eventId") == Some(vaccination_id.as_str()))
        {
            break;
        }
    }
    assert!(
        received
            .iter()
            .any(|message| attribute(message, "eventId") == Some(vaccination_id.as_str())),
        "the app received its baby's vaccination"
    );

    // It stops acting for the mother: the subscription is off and says why.
    let (status, _) = people(&hub, &app.token, reqwest::Method::DELETE, &person, None).await;
    assert_eq!(status, 204);
    let response = hub
        .request(
            reqwest::Method::GET,
            &format!("/Subscription/{subscription}"),
            &app.token,
        )
        .send()
        .await
        .expect("GET /Subscription");
    let shown: Value = response.json().await.expect("JSON");
    assert_eq!(shown["status"], "off", "{shown}");
    assert!(
        shown["error"].as_str().unwrap_or_default().contains(MOTHER),
        "{shown}"
    );
    let (later_id, later) = fresh("nems/vaccinations-1-new.xml", 0xb3);
    let (status, _) = hub
        .publish("vaccinations-1", Some("application/fhir+xml"), &later)
        .await;
    assert_eq!(status, 202);
    let after = receive_all(&sqs, &app.queue_url, Duration::from_secs(6)).await;
    assert!(
        !after
            .iter()
            .any(|message| attribute(message, "eventId") == Some(later_id.as_str())),
        "nothing more reaches the app"
    );
}
