//! A backfill grant end to end through the local stack: an operator opens a
//! declared subscription's view to the child's earlier record, and closes it.

use std::time::Duration;

use e2e_tests::{DEMO_OPERATOR, Hub, fixture};
use reqwest::Method;
use serde_json::{Value, json};

const PATIENT: &str = "9912003888";

async fn history_total(hub: &Hub, token: &str) -> Value {
    let response = hub
        .request(Method::GET, &format!("/children/{PATIENT}/events"), token)
        .header("accept", "application/fhir+json")
        .send()
        .await
        .expect("GET /children/{nhsNumber}/events");
    assert_eq!(response.status(), 200);
    let history: Value = response.json().await.expect("JSON");
    history["total"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operators_backfill_grant_opens_and_closes_the_earlier_record() {
    let hub = Hub::start().await;
    let (status, outcome) = hub
        .publish(
            "vaccinations-1",
            Some("application/fhir+xml"),
            &fixture("nems/vaccinations-1-new.xml"),
        )
        .await;
    assert_eq!(status, 202, "{outcome}");
    // The subscription is made a moment after the event was accepted.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let subscriber = hub.onboard("B82001", &["vaccinations-1"]).await;
    let criteria = format!(
        "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{PATIENT}&MessageHeader.event=vaccinations-1"
    );
    let (status, created) = hub.subscribe(&subscriber, "B82001", &criteria).await;
    assert_eq!(status, 201, "{created}");
    let subscription = created["id"].as_str().expect("id");
    assert_eq!(history_total(&hub, &subscriber.token).await, json!(0));

    let operator = hub.token(DEMO_OPERATOR).await;
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "reason", "valueString": "new to the caseload"},
        {"name": "since", "valueDate": "2026-01-01"},
        {"name": "expires", "valueDateTime": hub::audit::timestamp(
            time::OffsetDateTime::now_utc() + time::Duration::days(7))},
    ]});
    let response = hub
        .request(
            Method::POST,
            &format!("/Subscription/{subscription}/$backfill"),
            &operator,
        )
        .header("content-type", "application/fhir+json")
        .body(parameters.to_string())
        .send()
        .await
        .expect("POST /Subscription/{id}/$backfill");
    assert_eq!(response.status(), 201);
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .expect("Location")
        .to_owned();
    let grant: Value = response.json().await.expect("JSON");
    assert_eq!(grant["status"], "open");
    assert_eq!(
        location,
        format!(
            "/Subscription/{subscription}/backfill/{}",
            grant["id"].as_str().unwrap()
        )
    );
    assert_eq!(history_total(&hub, &subscriber.token).await, json!(1));

    let response = hub
        .request(Method::DELETE, &location, &operator)
        .send()
        .await
        .expect("DELETE the grant");
    assert_eq!(response.status(), 200);
    let revoked: Value = response.json().await.expect("JSON");
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(history_total(&hub, &subscriber.token).await, json!(0));
}
