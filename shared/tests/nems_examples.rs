//! The NEMS specification's example messages, in XML as published and in the
//! JSON form produced by infra/tools/fhir_xml_to_json.py.

use std::path::PathBuf;

use hub::message::{EventMessage, MessageError, ProblemKind};
use hub::{Encoding, EventType, Lifecycle, NhsNumber};

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn examples() -> Vec<(String, String, String)> {
    let mut names: Vec<String> = std::fs::read_dir(events_dir().join("nems"))
        .expect("events/nems")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".xml").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let xml =
                std::fs::read_to_string(events_dir().join(format!("nems/{name}.xml"))).unwrap();
            let json = std::fs::read_to_string(events_dir().join(format!("nems-json/{name}.json")))
                .unwrap_or_else(|_| {
                    panic!("no JSON fixture for {name}: run infra/tools/make-json-fixtures.sh")
                });
            (name, xml, json)
        })
        .collect()
}

#[test]
fn every_example_is_read_alike_in_both_encodings() {
    let examples = examples();
    assert_eq!(examples.len(), 19);
    for (name, xml, json) in examples {
        let from_xml = EventMessage::read(&xml, Encoding::Xml);
        let from_json = EventMessage::read(&json, Encoding::Json);
        assert_eq!(from_xml, from_json, "{name}: XML and JSON disagree");
        if name == "BirthNotificationWithMother" {
            match from_xml {
                Err(MessageError::Invalid {
                    expression, kind, ..
                }) => {
                    assert_eq!(kind, ProblemKind::BadNhsNumber);
                    assert!(expression.contains("nhsNumber"), "{expression}");
                }
                other => panic!("the mother's invalid NHS number must be refused, got {other:?}"),
            }
        } else {
            let message = from_xml.unwrap_or_else(|error| panic!("{name}: {error}"));
            assert!(message.nhs_number.is_some(), "{name}");
        }
    }
}

#[test]
fn birth_notification_is_accepted_once_the_mothers_number_is_valid() {
    let xml =
        std::fs::read_to_string(events_dir().join("nems/BirthNotificationWithMother.xml")).unwrap();
    let fixed = xml.replace("1112223330", "9449305552");
    let message = EventMessage::read(&fixed, Encoding::Xml).unwrap();
    assert_eq!(message.event_type, EventType::PdsBirthNotification);
    assert_eq!(
        message.nhs_number,
        Some(NhsNumber::parse("9449305552").unwrap())
    );
}

#[test]
fn vaccination_routing_data() {
    let xml = std::fs::read_to_string(events_dir().join("nems/vaccinations-1-new.xml")).unwrap();
    let message = EventMessage::read(&xml, Encoding::Xml).unwrap();
    assert_eq!(message.message_id, "85c8a1c5-a8a1-41c9-bb99-20956fa66218");
    assert_eq!(message.event_type, EventType::Vaccinations);
    assert_eq!(message.lifecycle, Lifecycle::New);
    assert_eq!(
        message.nhs_number.map(|n| n.to_string()).as_deref(),
        Some("9912003888")
    );
    assert_eq!(
        message.birth_date.map(|d| d.to_string()).as_deref(),
        Some("2017-10-02")
    );
    assert_eq!(message.responsible_ods.as_deref(), Some("A83627"));
    assert_eq!(message.focus_type, "Immunization");
    assert_eq!(message.focus_identifiers.len(), 1);
    assert_eq!(message.focus_identifiers[0].value, "abc1111");
    assert_eq!(
        message.last_updated.map(|t| t.unix_timestamp()),
        Some(1_509_548_433)
    );
    assert_eq!(message.version_id, None);
    let patient = message.patient.unwrap();
    assert_eq!(patient.home_postcode.as_deref(), Some("DH1 2TF"));
    assert!(!message.sensitive);
}

#[test]
fn change_of_address_routing_data() {
    let xml =
        std::fs::read_to_string(events_dir().join("nems/PDS-Change-Of-Address-ems-example.xml"))
            .unwrap();
    let message = EventMessage::read(&xml, Encoding::Xml).unwrap();
    assert_eq!(message.event_type, EventType::PdsChangeOfAddress);
    assert_eq!(message.responsible_ods.as_deref(), Some("X26"));
    assert_eq!(message.version_id, Some(1));
    assert_eq!(message.focus_type, "Communication");
    let patient = message.patient.unwrap();
    assert_eq!(patient.home_postcode.as_deref(), Some("LS17 7DF"));
    assert_eq!(patient.previous_postcode.as_deref(), Some("WF14 0BQ"));
    assert_eq!(
        patient.birth_date.map(|d| d.to_string()).as_deref(),
        Some("2019-10-02")
    );
}

#[test]
fn change_of_gp_names_the_practice() {
    let xml = std::fs::read_to_string(events_dir().join("nems/PDS-Change-Of-GP-ems-example.xml"))
        .unwrap();
    let message = EventMessage::read(&xml, Encoding::Xml).unwrap();
    assert!(message.patient.unwrap().gp_ods.is_some());
}

/// The specification's other example messages (events/nems-spec): every one
/// of an event type in the catalogue is accepted in both encodings and read
/// alike; the others are refused, naming the element at fault.
#[test]
fn the_specifications_other_examples_behave() {
    let folder = events_dir().join("nems-spec");
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .expect("events/nems-spec")
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
    assert!(names.len() >= 40, "the spec examples are in the repository");
    let mut accepted = 0;
    for name in names {
        let xml = std::fs::read_to_string(folder.join(format!("{name}.xml"))).unwrap();
        let tree = hub::fhir::read_xml(&xml).unwrap_or_else(|e| panic!("{name}: {e}"));
        let code = hub::message::resources(&tree)
            .find(|resource| resource.name == "MessageHeader")
            .and_then(|header| header.child("event")?.value_of("code").map(str::to_owned))
            .unwrap_or_default();
        let from_xml = EventMessage::read(&xml, Encoding::Xml);
        if code.parse::<EventType>().is_ok() {
            let message = from_xml.unwrap_or_else(|error| panic!("{name}: {error}"));
            let json =
                std::fs::read_to_string(events_dir().join(format!("nems-spec-json/{name}.json")))
                    .unwrap_or_else(|_| panic!("no JSON form of {name}"));
            assert_eq!(
                EventMessage::read(&json, Encoding::Json),
                Ok(message),
                "{name}: XML and JSON disagree"
            );
            accepted += 1;
        } else {
            match from_xml {
                Err(MessageError::Invalid { expression, .. }) => assert!(
                    expression.ends_with("MessageHeader).event.code")
                        || expression.ends_with("MessageHeader).id"),
                    "{name}: refused at {expression}"
                ),
                other => {
                    panic!("{name} ('{code}' is not in the catalogue) must be refused: {other:?}")
                }
            }
        }
    }
    assert!(accepted >= 20, "only {accepted} accepted");
}
