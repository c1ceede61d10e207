//! Every event type of the catalogue, end to end: every NEMS example message
//! (XML as published, and its JSON form under another MessageHeader.id) is
//! published through the local API and arrives unchanged at the subscriber.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e_tests::{Hub, deliveries_by_event, first_issue_expression, fixture};
use hub::EventType;

const PATIENT: &str = "9912003888";
const MOTHER: &str = "9449305552";

fn criteria(nhs_number: &str, event_types: &[EventType]) -> String {
    let mut criteria = format!(
        "/Bundle?type=message&Patient.identifier=http://fhir.nhs.net/Id/nhs-number|{nhs_number}"
    );
    for event_type in event_types {
        criteria.push_str(&format!("&MessageHeader.event={event_type}"));
    }
    criteria
}

/// (fixture path without extension, event type) for every accepted example.
fn examples() -> Vec<(String, String, EventType)> {
    let mut examples = Vec::new();
    for folder in ["nems", "derived"] {
        let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../events")
            .join(folder);
        let mut names: Vec<String> = std::fs::read_dir(directory)
            .unwrap()
            .filter_map(|entry| {
                entry
                    .ok()?
                    .file_name()
                    .into_string()
                    .ok()?
                    .strip_suffix(".xml")
                    .map(str::to_owned)
            })
            .filter(|name| name != "BirthNotificationWithMother")
            .collect();
        names.sort();
        for name in names {
            let xml = fixture(&format!("{folder}/{name}.xml"));
            let message = hub::EventMessage::read(&xml, hub::Encoding::Xml).unwrap();
            let json_folder = if folder == "nems" {
                "nems-json"
            } else {
                folder
            };
            examples.push((
                format!("{folder}/{name}.xml"),
                format!("{json_folder}/{name}.json"),
                message.event_type,
            ));
        }
    }
    examples
}

#[tokio::test(flavor = "multi_thread")]
async fn every_example_of_every_event_type_is_delivered_unchanged_in_both_encodings() {
    let hub = Hub::start().await;
    let all: Vec<&str> = EventType::ALL.iter().map(|t| t.code()).collect();
    let subscriber = hub.onboard("A83627", &all).await;
    let (status, _) = hub
        .subscribe(&subscriber, "A83627", &criteria(PATIENT, EventType::ALL))
        .await;
    assert_eq!(status, 201);
    let (status, _) = hub
        .subscribe(
            &subscriber,
            "A83627",
            &criteria(MOTHER, &[EventType::PdsBirthNotification]),
        )
        .await;
    assert_eq!(status, 201);

    let examples = examples();
    let covered: std::collections::BTreeSet<EventType> =
        examples.iter().map(|(_, _, t)| *t).collect();
    assert_eq!(
        covered.len(),
        EventType::ALL.len(),
        "every event type has an example"
    );

    // Expected deliveries by (event id, body).
    let mut expected: BTreeMap<(String, String), EventType> = BTreeMap::new();
    for (xml_path, json_path, event_type) in &examples {
        let xml = fixture(xml_path);
        let (status, outcome) = hub
            .publish(event_type.code(), Some("application/fhir+xml"), &xml)
            .await;
        assert_eq!(status, 202, "{xml_path}: {outcome}");
        let id = hub::EventMessage::read(&xml, hub::Encoding::Xml)
            .unwrap()
            .message_id;
        expected.insert((id.clone(), xml), *event_type);

        // The JSON form is the same message: published under a fresh id so it
        // is a new event and not a conflict.
        let fresh = format!("{}-0000-4000-8000-000000000001", &id[..8]);
        let json = fixture(json_path).replace(&format!("\"{id}\""), &format!("\"{fresh}\""));
        let (status, outcome) = hub
            .publish(event_type.code(), Some("application/fhir+json"), &json)
            .await;
        assert_eq!(status, 202, "{json_path}: {outcome}");
        expected.insert((fresh, json), *event_type);
    }

    let delivered = hub
        .drain_at_least(
            &subscriber.queue_url,
            expected.len(),
            Duration::from_secs(90),
            Duration::from_secs(3),
        )
        .await;
    let received = deliveries_by_event(&delivered);
    assert_eq!(
        received.len(),
        expected.len(),
        "one delivery per published message"
    );
    assert!(
        received == expected,
        "every message arrived unchanged, with its event type"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_published_birth_notification_is_refused_for_the_mothers_invalid_nhs_number() {
    let hub = Hub::shared().await;
    let xml = fixture("nems/BirthNotificationWithMother.xml");
    let (status, outcome) = hub
        .publish(
            "pds-birth-notification-1",
            Some("application/fhir+xml"),
            &xml,
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        outcome["issue"][0]["details"]["coding"][0]["code"],
        "INVALID_NHS_NUMBER"
    );
    assert!(first_issue_expression(&outcome).contains("nhsNumber"));
}

/// The specification's other examples (events/nems-spec) of catalogue event
/// types, each under a fresh MessageHeader.id (the specification reuses ids
/// across versions of a file), in both encodings: accepted, and delivered
/// unchanged to the subscriber of the patient they route on.
#[tokio::test(flavor = "multi_thread")]
async fn the_specifications_other_examples_are_delivered_unchanged() {
    let hub = Hub::start().await;
    let all: Vec<&str> = EventType::ALL.iter().map(|t| t.code()).collect();
    let subscriber = hub.onboard("A83627", &all).await;

    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/nems-spec");
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .filter_map(|entry| {
            entry
                .ok()?
                .file_name()
                .into_string()
                .ok()?
                .strip_suffix(".xml")
                .map(str::to_owned)
        })
        .collect();
    names.sort();

    let mut publications = Vec::new();
    let mut responsible = std::collections::BTreeSet::new();
    for (index, name) in names.iter().enumerate() {
        let xml = fixture(&format!("nems-spec/{name}.xml"));
        let Ok(message) = hub::EventMessage::read(&xml, hub::Encoding::Xml) else {
            continue; // not a catalogue event type: refused, as the domain tests show
        };
        responsible.extend(message.responsible_ods.clone());
        let json = fixture(&format!("nems-spec-json/{name}.json"));
        for (encoding, content_type, body) in [
            ("xml", "application/fhir+xml", xml),
            ("json", "application/fhir+json", json),
        ] {
            let fresh = format!(
                "00000000-0000-4000-8000-{:06}{:06}",
                index,
                if encoding == "xml" { 1 } else { 2 }
            );
            publications.push((
                format!("{name}.{encoding}"),
                message.event_type,
                message.responsible_ods.is_some(),
                message.nhs_number,
                content_type,
                body.replace(&message.message_id, &fresh),
                fresh,
            ));
        }
    }
    assert!(
        publications.len() >= 40,
        "{} publications",
        publications.len()
    );

    let patients: std::collections::BTreeSet<String> = publications
        .iter()
        .filter_map(|(_, _, _, nhs, ..)| nhs.map(|n| n.to_string()))
        .collect();
    for patient in &patients {
        let (status, _) = hub
            .subscribe(&subscriber, "A83627", &criteria(patient, EventType::ALL))
            .await;
        assert_eq!(status, 201);
    }

    // The specification's examples name organisations the demo publisher
    // is not registered for: a publisher registered for all of them.
    let publisher = hub
        .register_client(
            "publisher",
            "RR8",
            serde_json::json!({"publishEventTypes": all, "publishForOds": responsible}),
        )
        .await;
    let token = hub.token_for(&publisher).await;
    let mut expected = BTreeMap::new();
    let mut unattributed = 0;
    for (label, event_type, attributed, nhs_number, content_type, body, fresh) in publications {
        let (status, outcome) = hub
            .publish_as(&token, event_type.code(), Some(content_type), &body)
            .await;
        if !attributed {
            // MessageHeader.responsible names no organisation in the bundle:
            // the message cannot be attributed, whoever publishes it.
            assert_eq!(status, 422, "{label}: {outcome}");
            assert_eq!(
                first_issue_expression(&outcome),
                "MessageHeader.responsible"
            );
            unattributed += 1;
            continue;
        }
        assert_eq!(status, 202, "{label}: {outcome}");
        // Without a routing NHS number only generic subscriptions could match.
        if nhs_number.is_some() {
            expected.insert((fresh, body), event_type);
        }
    }

    eprintln!("{unattributed} examples name no responsible organisation");
    let delivered = hub
        .drain_at_least(
            &subscriber.queue_url,
            expected.len(),
            Duration::from_secs(90),
            Duration::from_secs(3),
        )
        .await;
    let received = deliveries_by_event(&delivered);
    assert_eq!(
        received.len(),
        expected.len(),
        "one delivery per routed message"
    );
    assert!(
        received == expected,
        "every message arrived unchanged, with its event type"
    );
}
