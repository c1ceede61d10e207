//! Delivery status and DLQ redrive through the local stack: counts per
//! event type kept by dispatch, queue depths read from SQS, who may see
//! them, and a message parked in the DLQ by SQS itself moved back to the
//! queue with its body and attributes.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::types::MessageAttributeValue;
use e2e_tests::{DEMO_OPERATOR, DEMO_PUBLISHER, Hub, Subscriber, fixture, receive_all};
use reqwest::Method;
use serde_json::Value;
use time::OffsetDateTime;

const PATIENT: &str = "9912003888";
const VACCINATION_ID: &str = "85c8a1c5-a8a1-41c9-bb99-20956fa66218";
const CONTACT_ID: &str = "6e825372-9b0a-11e8-9eb6-529269fb1459";
/// The template's default QueueMaxReceiveCount.
const MAX_RECEIVE_COUNT: usize = 5;

/// A copy of a sample message under a new MessageHeader.id: another event.
fn message(fixture_path: &str, sample_id: &str, n: u32) -> String {
    fixture(fixture_path).replace(sample_id, &format!("00000000-0000-4000-8000-{n:012}"))
}

fn vaccination(n: u32) -> String {
    message("nems/vaccinations-1-new.xml", VACCINATION_ID, n)
}

fn professional_contact(n: u32) -> String {
    message("nems/Professional-Contacts-1-new.xml", CONTACT_ID, n)
}

async fn subscribe_to_patient(hub: &Hub, subscriber: &Subscriber, event_types: &[&str]) {
    let mut criteria = format!(
        "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{PATIENT}"
    );
    for event_type in event_types {
        criteria.push_str(&format!("&MessageHeader.event={event_type}"));
    }
    let (status, body) = hub.subscribe(subscriber, "A83627", &criteria).await;
    assert_eq!(status, 201, "{body}");
}

/// GET /subscribers/{id}/status with the token: the status and the body.
async fn status_of(hub: &Hub, subscriber_id: &str, token: &str) -> (u16, Value) {
    let response = hub
        .request(
            Method::GET,
            &format!("/subscribers/{subscriber_id}/status"),
            token,
        )
        .send()
        .await
        .expect("GET /subscribers/{id}/status");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// POST /subscribers/{id}/$redrive with the token: the status and the body.
async fn redrive(hub: &Hub, subscriber_id: &str, token: &str) -> (u16, Value) {
    let response = hub
        .request(
            Method::POST,
            &format!("/subscribers/{subscriber_id}/$redrive"),
            token,
        )
        .send()
        .await
        .expect("POST /subscribers/{id}/$redrive");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The status once `done` holds (dispatch runs from the stream, a moment
/// after the publish), or the last one read after 30 seconds.
async fn status_when(hub: &Hub, subscriber: &Subscriber, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = status_of(hub, &subscriber.id, &subscriber.token).await;
        assert_eq!(status, 200, "{body}");
        if done(&body) || tokio::time::Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn delivered(status: &Value, event_type: &str) -> (u64, Option<String>) {
    let entry = status["eventTypes"]
        .as_array()
        .and_then(|types| types.iter().find(|t| t["eventType"] == event_type))
        .unwrap_or_else(|| panic!("{event_type} missing from {status}"));
    (
        entry["delivered"].as_u64().expect("a count"),
        entry["lastDeliveryAt"].as_str().map(str::to_owned),
    )
}

fn total_delivered(status: &Value) -> u64 {
    status["eventTypes"]
        .as_array()
        .map(|types| types.iter().filter_map(|t| t["delivered"].as_u64()).sum())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn status_counts_deliveries_per_event_type_for_the_subscriber_and_operators_only() {
    let hub = Hub::start().await;
    let started = hub::audit::timestamp(OffsetDateTime::now_utc());
    let gp = hub
        .onboard("A83627", &["vaccinations-1", "professional-contacts-1"])
        .await;
    let other = hub.onboard("B82001", &["vaccinations-1"]).await;
    subscribe_to_patient(&hub, &gp, &["vaccinations-1", "professional-contacts-1"]).await;

    // Nothing sent yet: every permitted type at zero, empty queues.
    let (status, before) = status_of(&hub, &gp.id, &gp.token).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["subscriberId"], gp.id.as_str());
    assert_eq!(delivered(&before, "vaccinations-1"), (0, None));
    assert_eq!(delivered(&before, "professional-contacts-1"), (0, None));
    assert_eq!(before["lastDeliveryAt"], Value::Null);
    assert_eq!(before["queue"]["waiting"], 0);

    for n in 1..=3 {
        let (status, outcome) = hub
            .publish(
                "vaccinations-1",
                Some("application/fhir+xml"),
                &vaccination(n),
            )
            .await;
        assert_eq!(status, 202, "{outcome}");
    }
    for n in 1..=2 {
        let (status, outcome) = hub
            .publish(
                "professional-contacts-1",
                Some("application/fhir+xml"),
                &professional_contact(n),
            )
            .await;
        assert_eq!(status, 202, "{outcome}");
    }
    // A duplicate publish is not delivered, so not counted.
    let (status, _) = hub
        .publish(
            "vaccinations-1",
            Some("application/fhir+xml"),
            &vaccination(1),
        )
        .await;
    assert_eq!(status, 200);

    let after = status_when(&hub, &gp, |status| total_delivered(status) >= 5).await;
    let finished = hub::audit::timestamp(OffsetDateTime::now_utc());
    let (vaccinations, vaccinated_at) = delivered(&after, "vaccinations-1");
    let (contacts, contacted_at) = delivered(&after, "professional-contacts-1");
    assert_eq!((vaccinations, contacts), (3, 2), "{after}");
    let vaccinated_at = vaccinated_at.expect("a last vaccination delivery");
    let contacted_at = contacted_at.expect("a last contact delivery");
    for at in [&vaccinated_at, &contacted_at] {
        assert!(
            started <= *at && *at <= finished,
            "{at} is not within the test ({started} to {finished})"
        );
    }
    assert_eq!(
        after["lastDeliveryAt"].as_str(),
        Some(vaccinated_at.max(contacted_at).as_str())
    );
    // SNS delivers into the queue before dispatch counts: all five wait.
    assert_eq!(after["queue"]["waiting"], 5, "{after}");
    assert_eq!(after["queue"]["inFlight"], 0);
    assert_eq!(after["deadLetterQueue"]["waiting"], 0);

    // An operator sees the same; another subscriber, a publisher and an
    // unknown or malformed id are told there is no such subscriber.
    let operator = hub.token(DEMO_OPERATOR).await;
    let (status, seen) = status_of(&hub, &gp.id, &operator).await;
    assert_eq!(status, 200);
    assert_eq!(seen["eventTypes"], after["eventTypes"]);
    let publisher = hub.token(DEMO_PUBLISHER).await;
    for (token, who) in [
        (&other.token, "another subscriber"),
        (&publisher, "a publisher"),
    ] {
        let (status, body) = status_of(&hub, &gp.id, token).await;
        assert_eq!(status, 404, "{who}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
    }
    for id in ["0b7c3f61-2d7e-4f0a-8a55-0f7f7c9d1e22", "not-a-subscriber"] {
        assert_eq!(status_of(&hub, id, &operator).await.0, 404, "{id}");
    }
    // The other subscriber's own status: onboarded, nothing sent to it.
    let (status, own) = status_of(&hub, &other.id, &other.token).await;
    assert_eq!(status, 200);
    assert_eq!(delivered(&own, "vaccinations-1"), (0, None));

    // Read and deleted: the queue is empty, the counts stay.
    let received = hub.drain(&gp.queue_url, Duration::from_secs(2)).await;
    assert_eq!(received.len(), 5);
    let (_, drained) = status_of(&hub, &gp.id, &gp.token).await;
    assert_eq!(drained["queue"]["waiting"], 0);
    assert_eq!(total_delivered(&drained), 5);
}

/// A message's attributes as name -> (type, text).
fn attributes_of(message: &aws_sdk_sqs::types::Message) -> HashMap<String, (String, String)> {
    message
        .message_attributes()
        .map(|attributes| {
            attributes
                .iter()
                .map(|(name, value): (&String, &MessageAttributeValue)| {
                    (
                        name.clone(),
                        (
                            value.data_type().to_owned(),
                            value.string_value().unwrap_or_default().to_owned(),
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_sqs_parked_in_the_dlq_is_redriven_to_the_queue_unchanged() {
    let hub = Hub::start().await;
    let gp = hub.onboard("A83627", &["vaccinations-1"]).await;
    let other = hub.onboard("B82001", &["vaccinations-1"]).await;
    subscribe_to_patient(&hub, &gp, &["vaccinations-1"]).await;
    let body = vaccination(7);
    let (status, outcome) = hub
        .publish("vaccinations-1", Some("application/fhir+xml"), &body)
        .await;
    assert_eq!(status, 202, "{outcome}");
    status_when(&hub, &gp, |status| status["queue"]["waiting"] == 1).await;

    // A receiver that never deletes: each receive with no visibility
    // timeout counts, and past maxReceiveCount SQS moves the message to
    // the DLQ.
    let sqs = hub.sqs();
    let mut receipts = Vec::new();
    for _ in 0..(MAX_RECEIVE_COUNT * 3) {
        let received = sqs
            .receive_message()
            .queue_url(&gp.queue_url)
            .visibility_timeout(0)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receiving")
            .messages
            .unwrap_or_default();
        if received.is_empty() {
            break;
        }
        receipts.extend(received);
    }
    assert!(
        receipts.len() >= MAX_RECEIVE_COUNT,
        "received {} times",
        receipts.len()
    );
    let original = receipts.first().expect("the delivery").clone();
    assert_eq!(original.body(), Some(body.as_str()));
    let original_attributes = attributes_of(&original);
    assert_eq!(
        original_attributes
            .get("eventType")
            .map(|(_, v)| v.as_str()),
        Some("vaccinations-1")
    );

    let parked = status_when(&hub, &gp, |status| {
        status["deadLetterQueue"]["waiting"] == 1
    })
    .await;
    assert_eq!(parked["deadLetterQueue"]["waiting"], 1, "{parked}");
    assert_eq!(parked["queue"]["waiting"], 0);

    // Another subscriber may not move it.
    let (status, _) = redrive(&hub, &gp.id, &other.token).await;
    assert_eq!(status, 404);
    let (_, still) = status_of(&hub, &gp.id, &gp.token).await;
    assert_eq!(still["deadLetterQueue"]["waiting"], 1);

    // The subscriber itself moves it back.
    let (status, moved) = redrive(&hub, &gp.id, &gp.token).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(
        moved,
        serde_json::json!({"subscriberId": gp.id, "moved": 1, "remaining": false})
    );
    let (_, after) = status_of(&hub, &gp.id, &gp.token).await;
    assert_eq!(after["deadLetterQueue"]["waiting"], 0, "{after}");
    assert_eq!(after["queue"]["waiting"], 1);

    let back = receive_all(&sqs, &gp.queue_url, Duration::from_secs(2)).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].body(), Some(body.as_str()));
    assert_eq!(attributes_of(&back[0]), original_attributes);
    let dead_letter_queue = format!("{}-dlq", gp.queue_url);
    assert!(
        receive_all(&sqs, &dead_letter_queue, Duration::from_secs(1))
            .await
            .is_empty(),
        "the DLQ is empty"
    );

    // An operator may redrive too; with nothing parked, nothing moves.
    let operator = hub.token(DEMO_OPERATOR).await;
    let (status, nothing) = redrive(&hub, &gp.id, &operator).await;
    assert_eq!(status, 200);
    assert_eq!(nothing["moved"], 0);
    assert_eq!(nothing["remaining"], false);
}
