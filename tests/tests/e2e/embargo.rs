//! A release embargo end to end through the local stack: a five-second
//! delay of blood spot outcomes for parents' records (EPCHR), the release
//! function run every second by hub-local's scheduler.

use std::time::{Duration, Instant};

use e2e_tests::{DEMO_OPERATOR, Hub, Subscriber, attribute, fixture};
use reqwest::Method;

const PATIENT: &str = "9912003888";
const EVENT_TYPE: &str = "blood-spot-test-outcome-1";

fn explicit() -> String {
    format!(
        "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{PATIENT}&MessageHeader.event={EVENT_TYPE}"
    )
}

/// A subscriber registered as `service_type` (None: none), subscribed to
/// the child's blood spot outcomes.
async fn subscriber(hub: &Hub, ods: &str, service_type: Option<&str>) -> Subscriber {
    let client = hub
        .register_client(
            "subscriber",
            ods,
            serde_json::json!({"subscribeExplicit": true}),
        )
        .await;
    let operator = hub.token(DEMO_OPERATOR).await;
    let mut body = serde_json::json!({
        "odsCode": ods,
        "name": format!("{ods} system"),
        "eventTypes": [EVENT_TYPE],
        "clientId": client.client_id,
    });
    if let Some(service_type) = service_type {
        body["serviceType"] = service_type.into();
    }
    let response = hub
        .request(Method::POST, "/subscribers", &operator)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("POST /subscribers");
    assert_eq!(response.status(), 201);
    let onboarded: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(onboarded["serviceType"].as_str(), service_type);
    let token = hub.token_for(&client).await;
    let subscriber = Subscriber {
        id: onboarded["id"].as_str().expect("id").to_owned(),
        queue_url: onboarded["queueUrl"].as_str().expect("queueUrl").to_owned(),
        client,
        token,
    };
    let (status, body) = hub.subscribe(&subscriber, ods, &explicit()).await;
    assert_eq!(status, 201, "{body}");
    subscriber
}

#[tokio::test(flavor = "multi_thread")]
async fn a_five_second_embargo_holds_a_parents_record_copy_and_the_schedule_releases_it() {
    let hub = Hub::start_with_env(&[("HUB_SCHEDULE_SECONDS", "1")]).await;
    let operator = hub.token(DEMO_OPERATOR).await;
    let set = hub
        .request(
            Method::PUT,
            &format!("/embargoes/{EVENT_TYPE}/EPCHR"),
            &operator,
        )
        .header("content-type", "application/json")
        .body(r#"{"delay": "PT5S", "reason": "end-to-end test of the release"}"#)
        .send()
        .await
        .expect("PUT /embargoes");
    assert_eq!(set.status(), 200);
    let listed: serde_json::Value = hub
        .request(Method::GET, "/embargoes", &operator)
        .send()
        .await
        .expect("GET /embargoes")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listed["embargoes"][0]["delay"], "PT5S");

    let gp = subscriber(&hub, "A83627", Some("GP")).await;
    let parent = subscriber(&hub, "EPCHR1", Some("EPCHR")).await;

    let published = Instant::now();
    let (status, outcome) = hub
        .publish(
            EVENT_TYPE,
            Some("application/fhir+xml"),
            &fixture("nems/blood-spot-test-outcome-1-new.xml"),
        )
        .await;
    assert_eq!(status, 202, "{outcome}");

    let to_gp = hub
        .drain_at_least(&gp.queue_url, 1, Duration::from_secs(30), Duration::ZERO)
        .await;
    assert_eq!(to_gp.len(), 1, "the GP has it at once");
    let event_id = attribute(&to_gp[0], "eventId").expect("eventId").to_owned();
    if published.elapsed() < Duration::from_secs(4) {
        let early = hub.drain(&parent.queue_url, Duration::from_secs(1)).await;
        assert!(early.is_empty(), "held from the parent's record");
        let read = hub
            .request(Method::GET, &format!("/events/{event_id}"), &parent.token)
            .send()
            .await
            .expect("GET /events/{id}");
        assert_eq!(read.status(), 404, "not readable while held");
    }

    let to_parent = hub
        .drain_at_least(
            &parent.queue_url,
            1,
            Duration::from_secs(60),
            Duration::from_secs(2),
        )
        .await;
    assert!(
        published.elapsed() >= Duration::from_secs(5),
        "released after the delay"
    );
    assert_eq!(to_parent.len(), 1, "released once");
    assert_eq!(attribute(&to_parent[0], "eventId"), Some(event_id.as_str()));
    let read = hub
        .request(Method::GET, &format!("/events/{event_id}"), &parent.token)
        .send()
        .await
        .expect("GET /events/{id}");
    assert_eq!(read.status(), 200, "readable once released");
}
